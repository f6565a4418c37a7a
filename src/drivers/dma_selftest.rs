//! The DMA self-test (`-prom-env dma-selftest=on`): real device DMA through
//! the default window and through a dynamic DMA window, checked end to end
//! (QEMU pseries contract §3.3 TCE hcalls, §4 windows, §5.2 DDW RTAS calls,
//! §10 S6/S8).
//!
//! For each NVMe controller:
//! 1. initialise it ([`Nvme::init`]) with its queues mapped through the
//!    PHB's default window;
//! 2. **default window**: fill a buffer with a pseudo-random pattern, write
//!    it to the scratch region at LBA `lba` (`dma-selftest-lba=`), read it
//!    back into a poisoned buffer, compare; data buffers are mapped per
//!    transfer through the TCE API;
//! 3. **dynamic window** (when the PHB has `ibm,ddw-applicable`):
//!    `ibm,query-pe-dma-window`, `ibm,create-pe-dma-window` with the largest
//!    offered page size not above RAM and a window covering RAM, map all of
//!    RAM with indirect TCEs, repeat the transfer with a second pattern at
//!    the next region (`lba + blocks`) through the 64-bit window, unmap,
//!    `ibm,remove-pe-dma-window`;
//! 4. shut the controller down (its queue mappings go), then
//!    `ibm,reset-pe-dma-window` (the PE's default window as at boot).
//!
//! Every RTAS call's result is a report line; the last line is
//! `dma-selftest: PASS` or `dma-selftest: FAIL <reason>` (the first failure).
//! A failing controller does not stop the others.
//!
//! The pattern of pass `n` (1 or 2) over a region starting at `lba` is
//! [`pattern_word`]`(`[`pattern_seed`]`(n, lba), i)` for the i-th 8-byte
//! word, stored big-endian — so the host can check the disk image after
//! QEMU exits.

use super::nvme::{DataDma, Nvme, NvmeConfig};
use crate::devtree::dma::DdwInfo;
use crate::memory::Memory;
use crate::mmio::Mmio;
use crate::pci::Bdf;
use crate::platform::Platform;
use crate::rtas;
use crate::tce::{Perm, TceManager, TceWindow};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One controller to test.
#[derive(Clone, Debug)]
pub struct Target {
    /// For messages (e.g. the node path).
    pub name: String,
    /// BAR0 as assigned.
    pub mmio: Mmio,
    /// The PHB's BUID and the function's address (the PE config address).
    pub buid: u64,
    pub bdf: Bdf,
    /// The PHB's default window (`ibm,dma-window`).
    pub default_liobn: u32,
    /// The PHB's DDW tokens, if it has `ibm,ddw-applicable`.
    pub ddw: Option<DdwInfo>,
}

/// Test settings.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// First LBA of the scratch region (two regions of `bytes` are written).
    pub lba: u64,
    /// Bytes per transfer (rounded up to whole blocks).
    pub bytes: u64,
    /// End of RAM: the dynamic window maps `[0, ram_top)`.
    pub ram_top: u64,
    pub nvme: NvmeConfig,
}

/// The outcome: report lines, ending with the verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    /// The first failure, `None` if all passed.
    pub failure: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
    fn line(&mut self, s: String) {
        self.lines.push(format!("dma-selftest: {s}"));
    }
    fn fail(&mut self, s: String) {
        self.line(format!("error: {s}"));
        if self.failure.is_none() {
            self.failure = Some(s);
        }
    }
}

/// Seed of pass `pass` over the region starting at `lba`.
pub fn pattern_seed(pass: u32, lba: u64) -> u64 {
    0x5041_5052_2d66_7700 ^ (pass as u64) << 56 ^ lba
}

/// Word `i` of the pattern with `seed` (SplitMix64 of the word index).
pub fn pattern_word(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes `[offset, offset + buf.len())` of the pattern (offset 8-aligned).
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (k, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(seed, offset / 8 + k as u64).to_be_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The NVMe controllers (class 01:08:02) PCI setup gave a BAR0, as
/// self-test targets, with bus mastering turned on; `dma` gives each PHB's
/// default window and DDW tokens.  Controllers whose PHB has no default
/// window, or whose COMMAND cannot be written, are left out with a line in
/// the second list.
pub fn nvme_targets<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &crate::pci::ConfigAccess,
    phbs: &[crate::pci::tree::PhbResult],
    dma: &crate::devtree::dma::DmaModel,
) -> (Vec<Target>, Vec<String>) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for phb in phbs {
        let node = dma.nodes.iter().find(|n| n.buid == Some(phb.top.buid));
        let Some((window, ddw)) = node.and_then(|n| Some((n.window?, n.ddw))) else {
            lines.push(format!(
                "dma-selftest: {}: no default DMA window",
                phb.top.path
            ));
            continue;
        };
        for f in phb.top.all() {
            if f.class_code != 0x01_08_02 {
                continue;
            }
            let Some(bar) = phb
                .plan
                .bars_of(&f.path)
                .find(|a| a.bar.reg == crate::pci::reg::BAR0)
            else {
                lines.push(format!("dma-selftest: {}: BAR0 has no address", f.path));
                continue;
            };
            let master = crate::pci::command::MASTER;
            if let Err(e) = cfg.update_command(p, phb.top.buid, f.bdf, master, 0) {
                lines.push(format!("dma-selftest: {}: bus mastering: {e}", f.path));
                continue;
            }
            out.push(Target {
                name: f.path.clone(),
                mmio: Mmio::new(bar.cpu_addr, bar.bar.size),
                buid: phb.top.buid,
                bdf: f.bdf,
                default_liobn: window.liobn,
                ddw,
            });
        }
    }
    (out, lines)
}

const CHUNK: usize = 4096;

fn mib(bytes: u64) -> String {
    let whole = bytes / (1 << 20);
    let frac = (bytes % (1 << 20)) * 100 / (1 << 20);
    format!("{whole}.{frac:02} MiB")
}

/// The LoPAPR query page-size bits and the page shifts they stand for.
const PAGE_BITS: [(u32, u32); 9] = [
    (0x01, 12),
    (0x02, 16),
    (0x04, 24),
    (0x08, 25),
    (0x10, 26),
    (0x20, 27),
    (0x40, 28),
    (0x80, 34),
    (0x100, 21),
];

/// The largest page shift the query mask offers that is not above `ram`.
pub fn page_shift_for(mask: u32, ram: u64) -> Option<u32> {
    PAGE_BITS
        .iter()
        .filter(|(bit, shift)| mask & bit != 0 && (1u64 << shift) <= ram)
        .map(|(_, s)| *s)
        .max()
}

fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

struct PassOut {
    tces: u64,
    commands: u64,
    ticks: u64,
}

/// Write the pattern to `blocks` blocks at `lba`, read them back, compare.
#[allow(clippy::too_many_arguments)]
fn pass<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    nvme: &mut Nvme,
    seed: u64,
    lba: u64,
    blocks: u64,
    wbuf: u64,
    rbuf: u64,
) -> Result<PassOut, String> {
    let len = blocks * nvme.block_size() as u64;
    let mut chunk = [0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        fill_pattern(seed, off, &mut chunk[..n]);
        p.write(wbuf + off, &chunk[..n])
            .map_err(|e| format!("{e}"))?;
        off += n as u64;
    }
    p.fill(rbuf, len, 0xa5).map_err(|e| format!("{e}"))?;
    let before = nvme.stats();
    nvme.write_blocks(p, tces, lba, blocks, wbuf)
        .map_err(|e| format!("write of {blocks} blocks at LBA {lba}: {e}"))?;
    nvme.read_blocks(p, tces, lba, blocks, rbuf)
        .map_err(|e| format!("read of {blocks} blocks at LBA {lba}: {e}"))?;
    let mut a = [0u8; CHUNK];
    let mut b = [0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        p.read(wbuf + off, &mut a[..n])
            .map_err(|e| format!("{e}"))?;
        p.read(rbuf + off, &mut b[..n])
            .map_err(|e| format!("{e}"))?;
        if let Some(i) = (0..n).find(|i| a[*i] != b[*i]) {
            return Err(format!(
                "data read back differs at byte {:#x} (wrote {:#04x}, read {:#04x})",
                off + i as u64,
                a[i],
                b[i]
            ));
        }
        off += n as u64;
    }
    let after = nvme.stats();
    Ok(PassOut {
        tces: after.data_tces - before.data_tces,
        commands: after.commands - before.commands,
        ticks: after.transfer_ticks - before.transfer_ticks,
    })
}

fn rate(bytes: u64, ticks: u64, tb_freq: u64) -> String {
    if ticks == 0 || tb_freq == 0 {
        return String::from("-");
    }
    let kib_s = bytes as u128 * tb_freq as u128 / ticks as u128 / 1024;
    format!("{}.{:01} MiB/s", kib_s / 1024, (kib_s % 1024) * 10 / 1024)
}

/// Run the self-test on every target.
pub fn dma_selftest<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    targets: &[Target],
    params: &Params,
) -> Report {
    let mut r = Report::default();
    if targets.is_empty() {
        r.fail(String::from("no NVMe controller found"));
    }
    for t in targets {
        one(p, tces, t, params, &mut r);
    }
    match &r.failure {
        None => r.lines.push(String::from("dma-selftest: PASS")),
        Some(f) => {
            let l = format!("dma-selftest: FAIL {f}");
            r.lines.push(l);
        }
    }
    r
}

fn rtas_call<P: Platform + ?Sized>(
    p: &mut P,
    token: u32,
    args: &[u32],
    rets: &mut [u32],
) -> Result<i32, String> {
    let block = p.scratch();
    rtas::call(p, block, token, args, rets).map_err(|e| format!("{e}"))
}

fn one<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    t: &Target,
    params: &Params,
    r: &mut Report,
) {
    let name = t.name.as_str();
    let mut nvme = match Nvme::init(p, tces, t.mmio, t.default_liobn, params.nvme) {
        Ok(n) => n,
        Err(e) => {
            r.fail(format!("{name}: {e}"));
            return;
        }
    };
    let id = nvme.identity().clone();
    r.line(format!(
        "{name}: {} serial {} fw {}, namespace {}: {} blocks of {} bytes",
        id.model, id.serial, id.firmware, id.nsid, id.blocks, id.block_size
    ));
    let bs = id.block_size as u64;
    let blocks = params.bytes.div_ceil(bs).max(1);
    let len = blocks * bs;
    let bufs = if params
        .lba
        .checked_add(blocks.saturating_mul(2))
        .is_none_or(|e| e > id.blocks)
    {
        r.fail(format!(
            "{name}: scratch region LBA {}+{} beyond the namespace ({} blocks)",
            params.lba,
            2 * blocks,
            id.blocks
        ));
        None
    } else {
        match (p.alloc_phys(len, 4096), p.alloc_phys(len, 4096)) {
            (Some(w), Some(rb)) => Some((w, rb)),
            (w, rb) => {
                for a in [w, rb].into_iter().flatten() {
                    p.free_phys(a, len, 4096);
                }
                r.fail(format!("{name}: no memory for two {} buffers", mib(len)));
                None
            }
        }
    };
    let cfg_addr = t.bdf.config_base();
    let (hi, lo) = ((t.buid >> 32) as u32, t.buid as u32);
    if let Some((wbuf, rbuf)) = bufs {
        // Default window.
        match pass(p, tces, &mut nvme, pattern_seed(1, params.lba), params.lba, blocks, wbuf, rbuf) {
            Ok(o) => r.line(format!(
                "{name}: default window LIOBN {:#x}: wrote and read back {} at LBA {}: match; {} moved, {} TCEs, {} commands, {}",
                t.default_liobn,
                mib(len),
                params.lba,
                mib(2 * len),
                o.tces,
                o.commands,
                rate(2 * len, o.ticks, params.nvme.tb_freq)
            )),
            Err(e) => r.fail(format!("{name}: default window: {e}")),
        }
        match &t.ddw {
            None => r.line(format!(
                "{name}: no dynamic DMA window on this PHB (no ibm,ddw-applicable); default window only"
            )),
            Some(ddw) => ddw_pass(p, tces, &mut nvme, t, ddw, params, blocks, (wbuf, rbuf), r),
        }
        p.free_phys(wbuf, len, 4096);
        p.free_phys(rbuf, len, 4096);
    }
    let stats = nvme.stats();
    match nvme.shutdown(p, tces) {
        Ok(()) => r.line(format!(
            "{name}: controller shut down; {} commands, {} read, {} written",
            stats.commands,
            mib(stats.bytes_read),
            mib(stats.bytes_written)
        )),
        Err(e) => r.fail(format!("{name}: shutdown: {e}")),
    }
    if let Some(reset) = t.ddw.as_ref().and_then(|d| d.ext.reset) {
        let mut rets = [0u32; 1];
        match rtas_call(p, reset, &[cfg_addr, hi, lo], &mut rets) {
            Ok(0) => r.line(format!(
                "ibm,reset-pe-dma-window({cfg_addr:#x}, {:#x}) = 0",
                t.buid
            )),
            Ok(s) => r.fail(format!(
                "ibm,reset-pe-dma-window({cfg_addr:#x}, {:#x}) = {s}",
                t.buid
            )),
            Err(e) => r.fail(format!("ibm,reset-pe-dma-window: {e}")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn ddw_pass<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    nvme: &mut Nvme,
    t: &Target,
    ddw: &DdwInfo,
    params: &Params,
    blocks: u64,
    (wbuf, rbuf): (u64, u64),
    r: &mut Report,
) {
    let name = t.name.as_str();
    let cfg_addr = t.bdf.config_base();
    let (hi, lo) = ((t.buid >> 32) as u32, t.buid as u32);
    // Query.
    let nret = if ddw.ext.query_out_64 { 6 } else { 5 };
    let mut q = [0u32; 6];
    let st = match rtas_call(p, ddw.query, &[cfg_addr, hi, lo], &mut q[..nret]) {
        Ok(s) => s,
        Err(e) => return r.fail(format!("ibm,query-pe-dma-window: {e}")),
    };
    let (avail, largest, mask) = if nret == 6 {
        (q[1], (q[2] as u64) << 32 | q[3] as u64, q[4])
    } else {
        (q[1], q[2] as u64, q[3])
    };
    let text = format!(
        "ibm,query-pe-dma-window({cfg_addr:#x}, {:#x}) = {st}: {avail} window(s) available, largest block {largest:#x} TCEs, page sizes {mask:#x}",
        t.buid
    );
    if st != 0 {
        return r.fail(text);
    }
    r.line(text);
    if avail == 0 {
        return r.fail(String::from("no dynamic DMA window available"));
    }
    let ram = params.ram_top;
    let Some(page_shift) = page_shift_for(mask, ram) else {
        return r.fail(format!("no offered page size fits {} of RAM", mib(ram)));
    };
    let window_shift = ceil_log2(ram).max(page_shift);
    if window_shift >= 64 {
        return r.fail(format!("no window can cover {ram:#x} bytes of RAM"));
    }
    if window_shift - page_shift > 63 || 1u64 << (window_shift - page_shift) > largest {
        return r.fail(format!(
            "a window of 2^{window_shift} bytes in 2^{page_shift}-byte pages exceeds the largest block"
        ));
    }
    // Create.
    let mut c = [0u32; 4];
    let st = match rtas_call(
        p,
        ddw.create,
        &[cfg_addr, hi, lo, page_shift, window_shift],
        &mut c,
    ) {
        Ok(s) => s,
        Err(e) => return r.fail(format!("ibm,create-pe-dma-window: {e}")),
    };
    let (liobn, bus) = (c[1], (c[2] as u64) << 32 | c[3] as u64);
    let text = format!(
        "ibm,create-pe-dma-window(page shift {page_shift}, window shift {window_shift}) = {st}: LIOBN {liobn:#x} at bus {bus:#x}"
    );
    if st != 0 {
        return r.fail(text);
    }
    r.line(text);
    match TceWindow::new(liobn, bus, 1 << window_shift, page_shift).and_then(|w| tces.add_window(w))
    {
        Ok(()) => ddw_transfer(
            p,
            tces,
            nvme,
            t,
            liobn,
            bus,
            page_shift,
            params,
            blocks,
            (wbuf, rbuf),
            r,
        ),
        Err(e) => r.fail(format!("{name}: dynamic window: {e}")),
    }
    let mut rets = [0u32; 1];
    match rtas_call(p, ddw.remove, &[liobn], &mut rets) {
        Ok(0) => r.line(format!("ibm,remove-pe-dma-window({liobn:#x}) = 0")),
        Ok(s) => r.fail(format!("ibm,remove-pe-dma-window({liobn:#x}) = {s}")),
        Err(e) => r.fail(format!("ibm,remove-pe-dma-window: {e}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn ddw_transfer<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    nvme: &mut Nvme,
    t: &Target,
    liobn: u32,
    bus: u64,
    page_shift: u32,
    params: &Params,
    blocks: u64,
    (wbuf, rbuf): (u64, u64),
    r: &mut Report,
) {
    let name = t.name.as_str();
    let page = 1u64 << page_shift;
    // A window at bus address 0 never hands out its first page; RAM's first
    // page then stays out of the window.
    let start = if bus == 0 { page } else { 0 };
    let end = params.ram_top & !(page - 1);
    let before = tces.counters();
    let m = match tces.map(p, liobn, start, end - start, Perm::ReadWrite) {
        Ok(m) => m,
        Err(e) => {
            r.fail(format!("{name}: mapping RAM into LIOBN {liobn:#x}: {e}"));
            let _ = tces.remove_window(liobn);
            return;
        }
    };
    let after = tces.counters();
    r.line(format!(
        "{name}: mapped RAM {start:#x}..{end:#x} into LIOBN {liobn:#x} at bus {:#x}: {} TCEs of {} KiB in {} H_PUT_TCE_INDIRECT and {} H_PUT_TCE calls",
        m.ioba,
        m.pages,
        page >> 10,
        after.put_tce_indirect - before.put_tce_indirect,
        after.put_tce - before.put_tce
    ));
    let saved = nvme.data_dma();
    nvme.set_data_dma(DataDma::Direct {
        offset: m.ioba.wrapping_sub(start),
        start,
        end,
    });
    let lba = params.lba + blocks;
    let len = blocks * nvme.block_size() as u64;
    match pass(p, tces, nvme, pattern_seed(2, lba), lba, blocks, wbuf, rbuf) {
        Ok(o) => r.line(format!(
            "{name}: dynamic window LIOBN {liobn:#x}: wrote and read back {} at LBA {lba}: match; {} moved, {} new TCEs, {} commands, {}",
            mib(len),
            mib(2 * len),
            o.tces,
            o.commands,
            rate(2 * len, o.ticks, params.nvme.tb_freq)
        )),
        Err(e) => r.fail(format!("{name}: dynamic window: {e}")),
    }
    nvme.set_data_dma(saved);
    if let Err(e) = tces.unmap_mapping(p, &m) {
        r.fail(format!("{name}: unmapping RAM from LIOBN {liobn:#x}: {e}"));
    }
    if let Err(e) = tces.remove_window(liobn) {
        r.fail(format!("{name}: forgetting LIOBN {liobn:#x}: {e}"));
    }
}
