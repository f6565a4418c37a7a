//! The conformance suite against papr-fw's logic on the host (unit tests of
//! this crate, so `cargo test --workspace --lib` runs them): papr-fw's
//! `Firmware` started on QEMU's own trees over the fake platform, the
//! resident RTAS `Runtime` behind the instantiated entry, and a thin layer
//! that answers what the fake platform does not model as QEMU does (H_CAS
//! with QEMU's whole-tree reply, H_UPDATE_DT, get-time-of-day,
//! query-cpu-stopped-state, start-cpu).

use crate::{arena, Entry, Machine, Mode, Suite, Verdict};
use papr_fw::cif::cas::ArchVector;
use papr_fw::cif::ClientImage;
use papr_fw::devtree::Tree;
use papr_fw::fake::{Ended, FakePlatform};
use papr_fw::firmware::{Firmware, Layout};
use papr_fw::hcall::{HcallReturn, Hypervisor};
use papr_fw::memory::{MemError, Memory, Range, RangeAllocator};
use papr_fw::platform::Platform;
use papr_fw::rtas::runtime::Runtime;

const RAM: usize = 512 << 20;
const IMAGE: Range = Range {
    base: 0x40_0000,
    size: 0x20_0000,
};
const ARENA: u64 = 0x50_0000;
const CIF_ENTRY: u64 = 0x2000;

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../qemu-tests/trees/{name}.dtb",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn layout() -> Layout {
    Layout {
        firmware: Range::new(0, 0x10_0000),
        heap: Range::new(0x1c00_0000, 0x200_0000),
        fdt: Range::new(0x1fe0_0000, 0x20_0000),
        client_stack: Range::new(0x8_0000, 0x4_0000),
    }
}

/// The fake platform plus QEMU's answers to what the fake does not model.
struct Qemu {
    fake: FakePlatform,
    /// The reset-time tree (QEMU rebuilds it for the CAS reply).
    tree: Vec<u8>,
    pvr: u32,
    cas_calls: u32,
}

impl Memory for Qemu {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.fake.read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.fake.write(addr, data)
    }
}

impl Qemu {
    /// H_CAS: QEMU's checks (a PVR it can run, OV1 and OV5 present), then
    /// its whole tree with `/chosen` holding only the negotiated OV5.
    fn cas(&mut self, vec: u64, buf: u64, size: u64) -> i64 {
        self.cas_calls += 1;
        let Ok(v) = ArchVector::parse(&self.fake, vec) else {
            return -4;
        };
        let ok_pvr = v
            .pvrs
            .iter()
            .any(|(m, p)| p & m == self.pvr & m || (0x0f00_0003..=0x0f00_0006).contains(p));
        if !ok_pvr {
            return -1;
        }
        if v.vectors.len() < 5 {
            return -4;
        }
        let mut t = Tree::from_fdt(&self.tree).unwrap();
        let chosen = t.find("/chosen").unwrap();
        let names: Vec<String> = t.props(chosen).map(|(n, _)| n.to_string()).collect();
        for n in names {
            t.remove_prop(chosen, &n).unwrap();
        }
        let mut ov5 = vec![v.vectors[4].len() as u8 - 1];
        ov5.extend_from_slice(&v.vectors[4]);
        t.set_prop(chosen, "ibm,architecture-vec-5", &ov5).unwrap();
        let fdt = t.to_fdt();
        if 4 + fdt.len() as u64 > size {
            return -4;
        }
        self.fake.write(buf, &1u32.to_be_bytes()).unwrap();
        self.fake.write(buf + 4, &fdt).unwrap();
        0
    }

    /// RTAS calls the fake answers with -3 but QEMU implements.
    fn rtas(&mut self, block: u64) -> Option<i64> {
        let token = self.fake.read_be32(block).ok()?;
        let name = self.fake.rtas_name(token)?.to_string();
        let nargs = self.fake.read_be32(block + 4).ok()? as u64;
        let nret = self.fake.read_be32(block + 8).ok()? as u64;
        let arg = |i: u64| self.fake.read_be32(block + 12 + 4 * i).unwrap_or(0);
        let rets: Vec<u32> = match name.as_str() {
            "get-time-of-day" if nargs == 0 && nret == 8 => vec![0, 2026, 11, 25, 12, 30, 15, 0],
            "get-time-of-day" => vec![(-3i32) as u32],
            "query-cpu-stopped-state" if nargs == 1 && nret == 2 => match arg(0) {
                0 => vec![0, 2],
                _ => vec![(-3i32) as u32, 0],
            },
            "start-cpu" if nargs == 3 && nret == 1 => match arg(0) {
                0 => vec![(-1i32) as u32],
                _ => vec![(-3i32) as u32],
            },
            _ => return None,
        };
        let at = block + 12 + 4 * nargs;
        for (i, r) in rets.iter().enumerate().take(nret as usize) {
            let _ = self.fake.write_be32(at + 4 * i as u64, *r);
        }
        Some(0)
    }
}

impl Hypervisor for Qemu {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        let rc = match opcode {
            0xf002 => self.cas(a(0), a(1), a(2)),
            0xf003 => 0,
            0xf000 => match self.rtas(a(0)) {
                Some(rc) => rc,
                None => return self.fake.hcall(opcode, args),
            },
            _ => return self.fake.hcall(opcode, args),
        };
        HcallReturn { rc, ret: [0; 9] }
    }
}

impl Platform for Qemu {
    fn scratch(&self) -> u64 {
        self.fake.scratch()
    }
    fn timebase(&self) -> u64 {
        self.fake.timebase()
    }
    fn alloc_phys(&mut self, size: u64, align: u64) -> Option<u64> {
        self.fake.alloc_phys(size, align)
    }
    fn free_phys(&mut self, addr: u64, size: u64, align: u64) {
        self.fake.free_phys(addr, size, align)
    }
}

/// The host machine: the firmware behind the client interface, the
/// resident runtime behind the RTAS entry.
struct Host {
    p: Qemu,
    fw: Firmware,
    runtime: Option<Runtime>,
    ram_top: u64,
}

impl Machine for Host {
    fn cif(&mut self, entry: u64, args: u64, _mode: Mode) -> u32 {
        assert_eq!(entry, CIF_ENTRY);
        self.fw.cif_call(&mut self.p, args) as u32
    }

    fn rtas(&mut self, entry: u64, _base: u64, args: u64, _mode: Mode) {
        let area = self
            .fw
            .client
            .rtas
            .expect("RTAS called before instantiate-rtas");
        assert_eq!(entry, area.entry);
        let fw = &self.fw;
        let rt = self
            .runtime
            .get_or_insert_with(|| Runtime::new(fw.runtime_config()));
        rt.handle(&mut self.p, args);
    }

    fn hcall(&mut self, opcode: u64, args: &[u64]) -> (i64, [u64; 4]) {
        let r = self.p.hcall(opcode, args);
        (r.rc, [r.ret[0], r.ret[1], r.ret[2], r.ret[3]])
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        addr + buf.len() as u64 <= self.ram_top && self.p.read(addr, buf).is_ok()
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        addr + data.len() as u64 <= self.ram_top && self.p.write(addr, data).is_ok()
    }

    fn timebase(&mut self) -> u64 {
        // The fake's clock advances per call; a busy wait moves it 1 ms per read.
        self.p.fake.tb += 512_000;
        self.p.fake.timebase()
    }

    fn arena(&self) -> (u64, u64) {
        (ARENA, arena::SIZE)
    }

    fn image(&self) -> (u64, u64) {
        (IMAGE.base, IMAGE.size)
    }

    fn set_ram_top(&mut self, top: u64) {
        self.ram_top = top.min(RAM as u64);
    }
}

/// Run the suite on `tree` with `-prom-env` options `env`; `edit` may change
/// the tree QEMU hands over first.
fn run(tree: &str, env: &[&str], edit: impl FnOnce(&mut Tree)) -> (Verdict, Option<Ended>, String) {
    let mut fake = FakePlatform::new(RAM);
    fake.set_prom_env(env);
    // The firmware's heap is where alloc_phys hands out memory.
    fake.phys = RangeAllocator::new();
    fake.phys.add(layout().heap);
    // Time moves fast enough for milliseconds and busy waits.
    fake.tb_step = 100_000;
    let mut t = Tree::from_fdt(&golden(tree)).unwrap();
    edit(&mut t);
    let fdt = t.to_fdt();
    let cpu = t
        .nodes()
        .find(|n| t.prop_str(*n, "device_type") == Some("cpu"))
        .unwrap();
    let pvr = t.prop_u32(cpu, "cpu-version").unwrap();
    let mut p = Qemu {
        fake,
        tree: fdt.clone(),
        pvr,
        cas_calls: 0,
    };
    let mut fw = Firmware::start(&mut p, &fdt, layout()).unwrap();
    fw.prepare_client(&ClientImage {
        entry: IMAGE.base,
        image: IMAGE,
        initrd: Range::default(),
    });
    let stack = layout().client_stack.end() - 256;
    let mut host = Host {
        p,
        fw,
        runtime: None,
        ram_top: 128 << 20,
    };
    let entry = Entry {
        r3: 0,
        r4: 0,
        cif: CIF_ENTRY,
        stack,
        msr: 0x2000,
    };
    let mut s = Suite::new(&mut host, entry);
    let v = s.run();
    s.finish();
    let ended = host.p.fake.ended.clone();
    assert!(host.p.cas_calls >= 1, "the firmware never called H_CAS");
    (v, ended, host.p.fake.console_text())
}

fn assert_pass(tree: &str, env: &[&str]) -> Verdict {
    let (v, ended, console) = run(tree, env, |_| {});
    assert!(
        v.failed == 0,
        "{tree} {env:?}: {} of {} checks failed:\n{}\n--- console ---\n{console}",
        v.failed,
        v.checks,
        v.failures.join("\n")
    );
    assert_eq!(ended, Some(Ended::PowerOff), "{console}");
    assert!(
        console.contains(&format!("conformance: {} checks, 0 failed", v.checks)),
        "{console}"
    );
    v
}

#[test]
fn passes_on_qemu_72_kernel_tree() {
    let v = assert_pass("qemu-7.2-kernel", &[]);
    assert!(v.checks > 500, "only {} checks", v.checks);
}

#[test]
fn passes_on_qemu_10_kernel_tree() {
    assert_pass("qemu-10.0-kernel", &[]);
}

#[test]
fn passes_with_one_window_per_pe() {
    assert_pass("qemu-7.2-kernel", &["ddw-max-windows=1"]);
}

#[test]
fn passes_with_4k_pages_and_a_window_cap() {
    assert_pass(
        "qemu-7.2-kernel",
        &["ddw-page-sizes=0x1", "ddw-max-window-shift=30"],
    );
}

#[test]
fn passes_with_injected_faults() {
    assert_pass(
        "qemu-7.2-kernel",
        &["ddw-inject=create:fail:2,query:busy,remove:param"],
    );
}

#[test]
fn a_broken_tree_fails_and_ends_with_os_term() {
    let (v, ended, console) = run("qemu-7.2-kernel", &[], |t| {
        let root = t.root();
        t.set_prop(root, "device_type", b"foo\0").unwrap();
    });
    assert!(v.failed >= 1, "{console}");
    assert!(
        v.failures.iter().any(|f| f.contains("root device_type")),
        "{:?}",
        v.failures
    );
    assert!(
        matches!(ended, Some(Ended::OsTerm(ref m)) if m.contains("checks failed")),
        "{ended:?}"
    );
    assert!(
        console.contains("conformance: FAIL [tree] root device_type"),
        "{console}"
    );
}
