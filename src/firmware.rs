//! The firmware's start-up sequence and state (the order SLOF and QEMU expect,
//! QEMU pseries contract §1; the developers' guide "what it does, end to end"):
//! live tree from QEMU's flattened tree → console → RTAS tokens → options from
//! NVRAM → the DMA-window model → TCE tables cleared → the properties papr-fw
//! decides → the platform summary.  Everything here is plain Rust run against
//! [`Platform`], so host tests drive it with the fake platform and QEMU's own
//! trees; `src/main.rs` only adds the target's memory layout and heap.

use crate::cif::Client;
use crate::console::VTY;
use crate::devtree::dma::{self, DmaModel, DmaNodeKind};
use crate::devtree::{FdtError, Tree};
use crate::memory::Range;
use crate::options::Options;
use crate::platform::{Platform, TOKENS};
use crate::rtas::ddw::{DdwConfig, DdwPlatform, DdwTokens, DefaultWindow, PeConfig};
use crate::rtas::policy::DdwPolicy;
use crate::summary::{self, Summary};
use crate::tce::{TceManager, TceWindow};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering;
use log::{info, warn};

/// TCEs per H_STUFF_TCE in the boot-time clear of each window.
pub const BOOT_CLEAR_CHUNK: u64 = 16384;

/// The firmware's own memory, as the target's linker script and start-up
/// code laid it out (host tests make one up).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Image, .bss and stacks, from address 0.
    pub firmware: Range,
    /// The heap (tree, buffers, DMA memory).
    pub heap: Range,
    /// Where QEMU put its flattened tree (free once unflattened).
    pub fdt: Range,
    /// The stack a client program starts on.
    pub client_stack: Range,
}

#[derive(Debug)]
pub enum StartError {
    /// QEMU's tree could not be read.
    Tree(FdtError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Tree(e) => write!(f, "malformed device tree from QEMU: {e}"),
        }
    }
}

/// Everything the firmware knows once started.
pub struct Firmware {
    pub tree: Tree,
    pub options: Options,
    pub dma: DmaModel,
    pub tce: TceManager,
    pub layout: Layout,
    /// RAM (all memory nodes) and the RMA.
    pub ram: Vec<Range>,
    pub rma: Range,
    pub timebase_hz: u64,
    /// Lines of the platform summary, as printed.
    pub summary: Vec<String>,
    /// The DMA-window personality (`ddw-*` options).
    pub policy: DdwPolicy,
    /// The client interface.
    pub client: Client,
    /// PCI set-up results per host bridge.
    pub pci: Vec<crate::pci::tree::PhbResult>,
    /// The packed resident RTAS runtime (`rtas::resident::Blob`); empty when
    /// the image was built without one.
    pub rtas_blob: &'static [u8],
    /// The disks (probed only when booting from disk, `src/diskboot.rs`).
    pub storage: crate::storage::Storage,
    /// What `tce-audit=on` found before the start-up clear.
    pub tce_audit: Option<TceAudit>,
}

/// The DMA state a boot finds before clearing it (`tce-audit=on`): what a
/// previous OS may have left behind if the platform did not reset it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TceAudit {
    /// TCEs read with H_GET_TCE (every entry of every window).
    pub entries: u64,
    /// Of those, entries that were not 0.
    pub mapped: u64,
    /// Entries H_GET_TCE refused.
    pub unreadable: u64,
    /// Per PE with dynamic windows, `windows available` from the platform's
    /// `ibm,query-pe-dma-window` (None if the query failed).
    pub ddw_available: Vec<Option<u32>>,
}

/// The RTAS token of `name` in `/rtas`.
pub fn token(tree: &Tree, name: &str) -> Option<u32> {
    dma::rtas_token(tree, name)
}

impl Firmware {
    /// Bring the firmware up on QEMU's flattened tree `fdt`.
    pub fn start<P: Platform + ?Sized>(
        p: &mut P,
        fdt: &[u8],
        layout: Layout,
    ) -> Result<Self, StartError> {
        let tree = Tree::from_fdt(fdt).map_err(StartError::Tree)?;

        let con = summary::find_console(&tree);
        VTY.set_vtermno(con.vtermno);

        for (name, slot) in [
            ("power-off", &TOKENS.power_off),
            ("ibm,os-term", &TOKENS.os_term),
            ("system-reboot", &TOKENS.system_reboot),
        ] {
            match token(&tree, name) {
                Some(t) => slot.store(t, Ordering::Relaxed),
                None => warn!(
                    "/rtas has no {name}; using QEMU's token {:#x}",
                    slot.load(Ordering::Relaxed)
                ),
            }
        }

        let options = read_options(p, &tree);
        if let Ok(Some(level)) = options.get("log-level").map(parse_level).transpose() {
            log::set_max_level(level);
        }

        let (ram, rma) = summary::memory_ranges(&tree);
        let rma = rma.unwrap_or(Range::new(0, 128 << 20));
        let timebase_hz = summary::timebase_hz(&tree).unwrap_or(512_000_000);
        let dma = DmaModel::from_tree(&tree);
        let policy = DdwPolicy::from_options(options.iter()).unwrap_or_else(|e| {
            warn!("{e}; DMA-window options ignored");
            DdwPolicy::default()
        });

        let mut fw = Firmware {
            tree,
            options,
            dma,
            tce: TceManager::new(),
            layout,
            ram,
            rma,
            timebase_hz,
            summary: Vec::new(),
            policy,
            client: Client::default(),
            pci: Vec::new(),
            rtas_blob: &[],
            storage: Default::default(),
            tce_audit: None,
        };
        fw.present();
        fw.summary = Summary::new(&fw.tree, &fw.dma).lines;
        for l in &fw.summary {
            info!("papr-fw: {l}");
        }
        info!("papr-fw: options: {}", fw.options);
        for k in fw.options.unknown() {
            warn!("unknown firmware option '{k}' (ignored)");
        }
        fw.init_tce(p);
        fw.init_pci(p);
        Ok(fw)
    }

    /// PCI: check QEMU's device nodes against config space, assign BARs and
    /// bridge windows from each host bridge's `ranges`, enable decoding and
    /// publish `assigned-addresses` (QEMU assigns none).
    fn init_pci<P: Platform + ?Sized>(&mut self, p: &mut P) {
        let (results, lines) = crate::pci::tree::setup(p, &mut self.tree);
        for l in &lines {
            info!("papr-fw: {l}");
        }
        self.pci = results;
    }

    /// Boot-time self-tests the options ask for: `dma-selftest=on` (NVMe DMA
    /// through the default and a dynamic window) and `tce-bench=on` (TCE
    /// mapping throughput).  Both leave every window as QEMU set it up.
    pub fn run_selftests<P: Platform + ?Sized>(&mut self, p: &mut P) {
        if self.options.flag("dma-selftest").unwrap_or(false) {
            self.dma_selftest(p);
        }
        if self.options.flag("tce-bench").unwrap_or(false) {
            self.tce_bench(p);
        }
    }

    fn dma_selftest<P: Platform + ?Sized>(&mut self, p: &mut P) {
        use crate::drivers::dma_selftest::{self, Params};
        let Some(cfg) = crate::pci::tree::config_access(&self.tree) else {
            info!("dma-selftest: FAIL no PCI config-space access in /rtas");
            return;
        };
        let (targets, lines) = dma_selftest::nvme_targets(p, &cfg, &self.pci, &self.dma);
        for l in &lines {
            info!("{l}");
        }
        let lba = match self.options.number("dma-selftest-lba") {
            Ok(v) => v.unwrap_or(2048),
            Err(e) => {
                warn!("{e}; using LBA 2048");
                2048
            }
        };
        let params = Params {
            lba,
            bytes: 1 << 20,
            ram_top: self.ram.iter().map(|r| r.end()).max().unwrap_or(0),
            nvme: crate::drivers::nvme::NvmeConfig::new(self.timebase_hz),
        };
        let report = dma_selftest::dma_selftest(p, &mut self.tce, &targets, &params);
        for l in &report.lines {
            info!("{l}");
        }
    }

    /// Map and unmap 256 MiB of RAM through the first PHB's default window,
    /// one TCE per H_PUT_TCE and then 512 per H_PUT_TCE_INDIRECT.
    fn tce_bench<P: Platform + ?Sized>(&mut self, p: &mut P) {
        let Some(liobn) = self
            .dma
            .nodes
            .iter()
            .find(|n| n.kind == DmaNodeKind::Phb)
            .and_then(|n| n.window)
            .map(|w| w.liobn)
        else {
            info!("tce-bench: no PHB window");
            return;
        };
        let bytes = (256u64 << 20).min(self.rma.size / 2);
        match crate::tce::bench(p, &mut self.tce, liobn, 0, bytes, self.timebase_hz) {
            Ok(r) => info!("tce-bench: {r}"),
            Err(e) => warn!("tce-bench: {e}"),
        }
    }

    /// The DMA windows QEMU set up, registered with the TCE layer and cleared
    /// once (QEMU zeroes them at reset, but a firmware must not rely on what
    /// was in them: e.g. after a `system-reboot` that QEMU did not reset).
    fn init_tce<P: Platform + ?Sized>(&mut self, p: &mut P) {
        let multi = self
            .tree
            .find("/rtas")
            .and_then(|r| self.tree.prop_strings(r, "ibm,hypertas-functions"))
            .is_some_and(|mut f| f.any(|s| s == "hcall-multi-tce"));
        self.tce.set_multi_tce(multi);
        for n in &self.dma.nodes {
            let Some(w) = n.window else { continue };
            if !matches!(n.kind, DmaNodeKind::Phb | DmaNodeKind::Vio) {
                continue;
            }
            match TceWindow::new(w.liobn, w.bus_addr, w.size, 12) {
                Ok(tw) => {
                    if let Err(e) = self.tce.add_window(tw) {
                        warn!("tce: {}: {e}", n.path);
                    }
                }
                Err(e) => warn!("tce: {}: {e}", n.path),
            }
        }
        if self.options.flag("tce-audit").unwrap_or(false) {
            self.tce_audit = Some(self.audit_tce(p));
        }
        let start = p.timebase();
        let (mut entries, mut calls, mut windows) = (0u64, 0u64, 0u32);
        // One clear of whole windows: H_STUFF_TCE takes any count inside the
        // window (QEMU and KVM check only the bounds), and every call is a
        // round trip to the hypervisor — under nested KVM about 0.8 ms — so
        // this uses bigger chunks than the 512 of ordinary unmaps.
        self.tce.set_stuff_limit(BOOT_CLEAR_CHUNK);
        let cleared = self.tce.clear_all(p);
        self.tce.set_stuff_limit(crate::tce::STUFF_LIMIT);
        for r in cleared {
            match r {
                Ok(s) => {
                    log::debug!("tce: {s}");
                    entries += s.entries;
                    calls += s.hcalls;
                    windows += 1;
                }
                Err(e) => warn!("tce: clearing a window failed: {e}"),
            }
        }
        let us = p.timebase().wrapping_sub(start) * 1_000_000 / self.timebase_hz.max(1);
        info!(
            "papr-fw: tce: cleared {windows} windows, {entries} entries in {calls} calls, {us} us"
        );
    }

    /// `tce-audit=on`: read every entry of every window and ask the platform
    /// how many dynamic windows each PE has free, before the start-up clear
    /// (a reboot soak shows with it that nothing survives the previous OS).
    fn audit_tce<P: Platform + ?Sized>(&self, p: &mut P) -> TceAudit {
        let start = p.timebase();
        let mut a = TceAudit::default();
        for w in self.tce.windows() {
            for i in 0..w.entries() {
                let ioba = w.bus_base() + (i << w.page_shift());
                let r = p.hcall(crate::hcall::op::H_GET_TCE, &[w.liobn() as u64, ioba]);
                a.entries += 1;
                if r.rc != crate::hcall::rc::H_SUCCESS {
                    a.unreadable += 1;
                } else if r.ret[0] != 0 {
                    a.mapped += 1;
                }
            }
        }
        if let Some(c) = self.ddw_config() {
            for pe in &c.platform.pes {
                let mut rets = [0u32; 5];
                let args = [0, (pe.buid >> 32) as u32, pe.buid as u32];
                let st =
                    crate::rtas::call(p, p.scratch(), c.platform.tokens.query, &args, &mut rets);
                a.ddw_available.push((st == Ok(0)).then_some(rets[1]));
            }
        }
        let us = p.timebase().wrapping_sub(start) * 1_000_000 / self.timebase_hz.max(1);
        let avail: Vec<String> = a
            .ddw_available
            .iter()
            .map(|v| v.map_or_else(|| String::from("?"), |n| alloc::format!("{n}")))
            .collect();
        info!(
            "papr-fw: tce: audit: {} of {} entries mapped, {} unreadable; dynamic windows available per PE: [{}]; {us} us",
            a.mapped,
            a.entries,
            a.unreadable,
            avail.join(" ")
        );
        a
    }

    /// Write the properties whose values papr-fw decides rather than takes
    /// from QEMU.  Called at start and again after every merge of a platform
    /// tree (CAS), since a merge restores the platform's values.
    pub fn present(&mut self) {
        self.fix_lrdr_capacity();
        self.present_ddw_extensions();
    }

    /// With `ddw-lam=on`, advertise the limited-address-mode extension on
    /// every PHB that has the reset extension.
    fn present_ddw_extensions(&mut self) {
        if !self.policy.lam {
            return;
        }
        let phbs: Vec<_> = self
            .dma
            .nodes
            .iter()
            .filter_map(|n| Some((n.node, n.ddw?.ext.reset?)))
            .collect();
        for (node, reset) in phbs {
            let cells: Vec<u8> = self
                .policy
                .ddw_extensions(reset)
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            let _ = self.tree.set_prop(node, dma::DDW_EXTENSIONS, &cells);
        }
    }

    /// The DMA-window model the resident RTAS starts from: every PHB with
    /// `ibm,ddw-applicable` is a PE with its default window, and the policy.
    /// None when no PHB offers dynamic windows (every call is forwarded).
    pub fn ddw_config(&self) -> Option<DdwConfig> {
        let mut tokens = None;
        let mut pes = Vec::new();
        for n in &self.dma.nodes {
            let (Some(ddw), Some(buid), Some(w)) = (n.ddw, n.buid, n.window) else {
                continue;
            };
            tokens.get_or_insert(DdwTokens {
                query: ddw.query,
                create: ddw.create,
                remove: ddw.remove,
                reset: ddw.ext.reset,
            });
            pes.push(PeConfig {
                buid,
                default_window: DefaultWindow {
                    liobn: w.liobn,
                    bus_addr: w.bus_addr,
                    size: w.size,
                },
                // QEMU's PHBs take hot-plugged devices: any config address.
                config_addrs: None,
                dma64_addr: None,
            });
        }
        Some(DdwConfig {
            platform: DdwPlatform {
                tokens: tokens?,
                pes,
            },
            policy: self.policy.clone(),
        })
    }

    /// QEMU writes `/rtas/ibm,lrdr-capacity` with a maximum address of 0 when
    /// the machine has no hot-pluggable memory; Linux ≥ 6.x sizes its dynamic
    /// DMA window from it and asks for a window of 2^0 bytes.  Present the top
    /// of RAM (including any hot-pluggable range) instead.
    fn fix_lrdr_capacity(&mut self) {
        let Some(rtas) = self.tree.find("/rtas") else {
            return;
        };
        let Some(v) = self.tree.prop(rtas, "ibm,lrdr-capacity") else {
            return;
        };
        if v.len() < 8 {
            return;
        }
        let max = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
        let ram_top = self.ram.iter().map(|r| r.end()).max().unwrap_or(0);
        if max >= ram_top {
            return;
        }
        let mut fixed = v.to_vec();
        fixed[..8].copy_from_slice(&ram_top.to_be_bytes());
        if self
            .tree
            .set_prop(rtas, "ibm,lrdr-capacity", &fixed)
            .is_ok()
            && self.client.calls == 0
        {
            info!(
                "papr-fw: /rtas/ibm,lrdr-capacity: QEMU's maximum address {max:#x} is below the top of RAM; presenting {ram_top:#x}"
            );
        }
    }
}

fn parse_level(v: &str) -> Result<log::LevelFilter, ()> {
    match v {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(()),
    }
}

/// The `-prom-env` options, from the NVRAM device QEMU puts under `/vdevice`.
/// A blank NVRAM (QEMU without `-prom-env` or a backing drive) is formatted
/// as SLOF does, so the OS finds free space for its partitions.
fn read_options<P: Platform + ?Sized>(p: &mut P, tree: &Tree) -> Options {
    let nvram = tree
        .nodes()
        .find(|n| tree.prop_str(*n, "device_type") == Some("nvram"));
    let (Some(node), Some(fetch)) = (nvram, token(tree, "nvram-fetch")) else {
        info!("papr-fw: no NVRAM; options keep their defaults");
        return Options::default();
    };
    let size = tree.prop_u32(node, "#bytes").unwrap_or(0);
    let image = match crate::options::fetch_image(p, fetch, size) {
        Ok(i) => i,
        Err(e) => {
            warn!("reading options from NVRAM: {e}");
            return Options::default();
        }
    };
    if !image.is_empty() && !crate::options::has_partitions(&image) {
        match token(tree, "nvram-store") {
            Some(store) => {
                let layout = crate::options::blank_layout(image.len());
                match crate::options::store_image(p, store, &layout) {
                    Ok(()) => {
                        info!("papr-fw: nvram: blank; formatted with a system and a free partition")
                    }
                    Err(e) => warn!("formatting the blank NVRAM: {e}"),
                }
            }
            None => warn!("the NVRAM is blank and /rtas has no nvram-store"),
        }
    }
    Options::from_nvram(&image)
}

/// Warnings the code under test logs, captured per test thread (host tests
/// check that a platform fault is reported, not only survived).
#[cfg(test)]
pub(crate) mod test_log {
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    std::thread_local! {
        static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                LINES.with(|l| l.borrow_mut().push(alloc::format!("{}", r.args())));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture;

    /// Capture this thread's warnings from now on (earlier ones dropped).
    pub fn start() {
        let _ = log::set_logger(&CAPTURE);
        if log::max_level() < log::LevelFilter::Warn {
            log::set_max_level(log::LevelFilter::Warn);
        }
        LINES.with(|l| l.borrow_mut().clear());
    }

    /// The warnings captured since [`start`].
    pub fn take() -> Vec<String> {
        LINES.with(|l| core::mem::take(&mut *l.borrow_mut()))
    }

    /// Whether one of the warnings since [`start`] contains `text`.
    pub fn warned(text: &str) -> bool {
        LINES.with(|l| l.borrow().iter().any(|w| w.contains(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;

    pub fn golden(name: &str) -> Vec<u8> {
        let path = alloc::format!("{}/qemu-tests/trees/{name}.dtb", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn starts_on_qemu_trees_and_clears_windows() {
        for name in ["qemu-7.2-default", "qemu-10.0-phb2", "qemu-7.2-devices"] {
            let mut p = FakePlatform::new(64 << 20);
            p.set_prom_env(&["dma-selftest=on", "no-such-option=1"]);
            // Something left in the default window (as after a reboot QEMU did
            // not reset): the start-up clear must remove it.
            let liobn = 0x8000_0000;
            p.tce_table(liobn).unwrap().entries.insert(5, 0x1003);
            let fw = Firmware::start(&mut p, &golden(name), Layout::default()).unwrap();
            assert_eq!(fw.options.get("dma-selftest"), Some("on"));
            assert_eq!(p.tce_table(liobn).unwrap().mapped(), 0, "{name}");
            assert!(
                fw.summary.iter().any(|l| l.starts_with("platform: ")),
                "{name}"
            );
            assert!(!fw.tce.windows().is_empty(), "{name}");
        }
    }

    #[test]
    fn tce_audit_counts_what_a_previous_os_left() {
        let mut p = FakePlatform::new(64 << 20);
        p.set_prom_env(&["tce-audit=on"]);
        // As if the platform had not reset after the previous OS: two TCEs
        // in the default window and a dynamic window.
        let liobn = 0x8000_0000;
        p.tce_table(liobn).unwrap().entries.insert(5, 0x1003);
        p.tce_table(liobn).unwrap().entries.insert(77, 0x2003);
        let mut rets = [0u32; 4];
        let create = [0, 0x0800_0000, 0x2000_0000, 16, 30];
        assert_eq!(
            crate::rtas::call(&mut p, 0x8000, 0x2027, &create, &mut rets),
            Ok(0)
        );
        let fw = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        let a = fw.tce_audit.clone().unwrap();
        // Every entry of every window is read (the fake has no tables for
        // the VIO windows: those are unreadable).
        let all: u64 = fw.tce.windows().iter().map(|w| w.entries()).sum();
        assert_eq!((a.entries, a.mapped), (all, 2));
        assert_eq!(a.unreadable, all - 262144);
        assert_eq!(a.ddw_available, vec![Some(0)], "the stale window is seen");
        assert_eq!(
            p.tce_table(liobn).unwrap().mapped(),
            0,
            "and the default window cleared"
        );
        // A clean platform: nothing mapped, one window free; off by default.
        let mut p = FakePlatform::new(64 << 20);
        p.set_prom_env(&["tce-audit=on"]);
        let fw = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        let a = fw.tce_audit.unwrap();
        assert_eq!((a.mapped, a.ddw_available), (0, vec![Some(1)]));
        let mut p = FakePlatform::new(64 << 20);
        let fw = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        assert_eq!(fw.tce_audit, None);
    }

    #[test]
    fn startup_reports_and_survives_platform_faults() {
        use crate::hcall::{op, rc};
        type Setup = fn(&mut FakePlatform);
        let cases: [(&str, &str, Setup, &str); 7] = [
            (
                "nvram-fetch fails",
                "qemu-7.2-default",
                |p| {
                    p.set_prom_env(&["ddw-max-windows=1"]);
                    p.inject_rtas("nvram-fetch", -1, 1);
                },
                "reading options from NVRAM",
            ),
            (
                "H_RTAS fails",
                "qemu-7.2-default",
                |p| {
                    p.set_prom_env(&["ddw-max-windows=1"]);
                    p.inject_hcall(op::KVMPPC_H_RTAS, rc::H_HARDWARE, 1);
                },
                "reading options from NVRAM",
            ),
            (
                "H_STUFF_TCE fails",
                "qemu-7.2-default",
                |p| {
                    p.inject_hcall(op::H_STUFF_TCE, rc::H_HARDWARE, 10_000);
                },
                "tce: clearing a window failed",
            ),
            (
                "H_PUT_TCE and H_STUFF_TCE fail",
                "qemu-7.2-phb2",
                |p| {
                    p.inject_hcall(op::H_STUFF_TCE, rc::H_PARAMETER, 10_000);
                    p.inject_hcall(op::H_PUT_TCE, rc::H_PARAMETER, 10_000);
                },
                "tce: clearing a window failed",
            ),
            (
                "H_GET_TCE fails in the audit",
                "qemu-7.2-default",
                |p| {
                    p.set_prom_env(&["tce-audit=on"]);
                    p.inject_hcall(op::H_GET_TCE, rc::H_HARDWARE, u32::MAX);
                },
                "",
            ),
            (
                "query fails in the audit",
                "qemu-7.2-default",
                |p| {
                    p.set_prom_env(&["tce-audit=on"]);
                    p.inject_rtas("ibm,query-pe-dma-window", -1, 1);
                },
                "",
            ),
            (
                "PCI config space fails",
                "qemu-7.2-devices",
                |p| {
                    p.inject_rtas("ibm,read-pci-config", -1, u32::MAX);
                    p.inject_rtas("ibm,write-pci-config", -1, u32::MAX);
                },
                "",
            ),
        ];
        for (what, tree, setup, warning) in cases {
            let mut p = FakePlatform::new(64 << 20);
            setup(&mut p);
            test_log::start();
            let fw = Firmware::start(&mut p, &golden(tree), Layout::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                warning.is_empty() || test_log::warned(warning),
                "{what}: no warning {warning:?}: {:?}",
                test_log::take()
            );
            // Survived with sensible state: a summary, a tree that flattens,
            // every window still known.
            assert!(
                fw.summary.iter().any(|l| l.starts_with("platform: ")),
                "{what}"
            );
            Tree::from_fdt(&fw.tree.to_fdt()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!fw.tce.windows().is_empty(), "{what}");
            match what {
                "nvram-fetch fails" | "H_RTAS fails" => {
                    assert!(fw.options.is_empty(), "{what}: options from a failed fetch");
                    assert!(fw.policy.is_default(), "{what}");
                }
                "H_GET_TCE fails in the audit" => {
                    let a = fw.tce_audit.clone().unwrap();
                    assert_eq!((a.unreadable, a.mapped), (a.entries, 0), "{what}");
                }
                "query fails in the audit" => {
                    assert_eq!(
                        fw.tce_audit.clone().unwrap().ddw_available,
                        vec![None],
                        "{what}"
                    );
                }
                _ => {}
            }
        }
    }

    #[test]
    fn a_blank_nvram_is_formatted_and_prom_env_is_left_alone() {
        let mut p = FakePlatform::new(64 << 20);
        assert!(!crate::options::has_partitions(&p.nvram));
        let _ = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        assert_eq!(p.nvram, crate::options::blank_layout(0x10000));
        let mut p = FakePlatform::new(64 << 20);
        p.set_prom_env(&["rtas-trace=on"]);
        let before = p.nvram.clone();
        let fw = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        assert_eq!(p.nvram, before);
        assert_eq!(fw.options.get("rtas-trace"), Some("on"));
    }

    #[test]
    fn the_boot_clear_takes_big_chunks() {
        let mut p = FakePlatform::new(64 << 20);
        let _ = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        // The PHB's 1 GiB default window: 262144 entries in 16 calls.
        let stuffs = p
            .calls
            .iter()
            .filter(|c| matches!(c, crate::fake::Call::Hcall { opcode: 0x138, args, rc: 0 } if args[0] == 0x8000_0000))
            .count() as u64;
        assert_eq!(stuffs, (1 << 30 >> 12) / BOOT_CLEAR_CHUNK);
        assert_eq!(p.tce_table(0x8000_0000).unwrap().mapped(), 0);
    }

    #[test]
    fn lrdr_capacity_is_the_top_of_ram() {
        let mut p = FakePlatform::new(64 << 20);
        let fw = Firmware::start(&mut p, &golden("qemu-7.2-default"), Layout::default()).unwrap();
        let rtas = fw.tree.find("/rtas").unwrap();
        let v = fw.tree.prop(rtas, "ibm,lrdr-capacity").unwrap();
        assert_eq!(&v[..8], &(512u64 << 20).to_be_bytes());
        assert_eq!(
            &v[8..],
            &[0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 1],
            "the rest is QEMU's"
        );
    }

    #[test]
    fn tokens_and_console_come_from_the_tree() {
        let mut p = FakePlatform::new(64 << 20);
        let mut t = Tree::from_fdt(&golden("qemu-7.2-kernel")).unwrap();
        let rtas = t.find("/rtas").unwrap();
        t.set_prop_u32(rtas, "power-off", 0x2222).unwrap();
        let _ = Firmware::start(&mut p, &t.to_fdt(), Layout::default()).unwrap();
        assert_eq!(TOKENS.power_off.load(Ordering::Relaxed), 0x2222);
        assert_eq!(VTY.vtermno(), 0x7100_0000);
        TOKENS
            .power_off
            .store(crate::platform::QEMU_POWER_OFF, Ordering::Relaxed);
    }

    #[test]
    fn malformed_trees_are_errors() {
        let mut p = FakePlatform::new(64 << 20);
        let good = golden("qemu-7.2-default");
        let mut bad = good.clone();
        bad[0] = 0;
        let Err(e) = Firmware::start(&mut p, &bad, Layout::default()) else {
            panic!("bad magic accepted")
        };
        assert!(e.to_string().contains("magic"), "{e}");
        assert!(Firmware::start(&mut p, &good[..100], Layout::default()).is_err());
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&0xffff_fff0u32.to_be_bytes()); // off_dt_struct
        assert!(Firmware::start(&mut p, &bad, Layout::default()).is_err());
    }
}
