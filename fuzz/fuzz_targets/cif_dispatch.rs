//! The client interface (`Firmware::cif_call`) on QEMU's own trees over the
//! fake platform: a sequence of calls whose services, counts and cells come
//! from the input — cells are raw numbers, real phandles and ihandles,
//! strings (terminated or not) the input writes into client memory, buffers,
//! and pointers into the firmware or past RAM — plus raw argument blocks and
//! writes to client memory.  Invariants: no panic; r3 is 0 or -1; the
//! firmware's own memory (a canary area) is never written; claims never
//! hand out firmware memory; the tree still flattens and unflattens; and the
//! firmware still answers `finddevice("/")` and `peer(0)` correctly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::cif::ClientImage;
use papr_fw::fake::FakePlatform;
use papr_fw::firmware::{Firmware, Layout};
use papr_fw::memory::{Memory, Range};

/// Fake RAM (the tree says more; what lies beyond is unreadable).  Small,
/// because the sanitizer zeroes all of it on every run.
const RAM: usize = 4 << 20;
const BLOCK: u64 = 0x20_0000;
const STR: u64 = 0x20_1000;
const BUF: u64 = 0x22_0000;
/// Firmware memory the firmware itself never writes on the fake platform.
const CANARY: Range = Range {
    base: 0x2_0000,
    size: 0x4_0000,
};

const TREES: [&[u8]; 3] = [
    include_bytes!("../../qemu-tests/trees/qemu-7.2-kernel.dtb"),
    include_bytes!("../../qemu-tests/trees/qemu-10.0-devices.dtb"),
    include_bytes!("../../qemu-tests/trees/qemu-7.2-phb2.dtb"),
];

/// Services with their usual counts; the input may change the counts.
const SERVICES: [(&str, u32, u32); 30] = [
    ("test", 1, 1),
    ("finddevice", 1, 1),
    ("getprop", 4, 1),
    ("getproplen", 2, 1),
    ("nextprop", 3, 1),
    ("setprop", 4, 1),
    ("peer", 1, 1),
    ("child", 1, 1),
    ("parent", 1, 1),
    ("instance-to-package", 1, 1),
    ("instance-to-path", 3, 1),
    ("package-to-path", 3, 1),
    ("canon", 3, 1),
    ("open", 1, 1),
    ("close", 1, 0),
    ("read", 3, 1),
    ("write", 3, 1),
    ("seek", 3, 1),
    ("claim", 3, 1),
    ("release", 2, 0),
    ("call-method", 3, 2),
    ("call-method", 4, 2),
    ("interpret", 1, 1),
    ("milliseconds", 0, 1),
    ("quiesce", 0, 0),
    ("exit", 0, 0),
    ("start-cpu", 3, 0),
    ("frobnicate", 1, 1),
    ("", 0, 1),
    ("getprop\u{1}", 4, 1),
];
const STRINGS: [&str; 16] = [
    "/",
    "/chosen",
    "/rtas",
    "/vdevice/vty@71000000",
    "/pci@800000020000000",
    "/memory@0",
    "name",
    "reg",
    "ibm,dma-window",
    "stdout",
    "instantiate-rtas",
    "ibm,client-architecture-support",
    "available",
    "/cpus/PowerPC,POWER9@0",
    "output-device output",
    "",
];

struct In<'a>(&'a [u8]);
impl In<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = (self.u8() as usize).min(max).min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        s
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = In(data);
    let tree = TREES[r.u8() as usize % TREES.len()];
    let mut p = FakePlatform::new(RAM);
    // No PHBs: the start-up clear of 2^18 TCEs would dominate every run
    // (the DMA windows are rtas_dispatch's business).
    p.phbs.clear();
    let layout = Layout {
        firmware: Range::new(0, 0x10_0000),
        // The fake's alloc_phys hands out the top quarter of RAM.
        heap: Range::new(0x30_0000, 0x10_0000),
        fdt: Range::new(0x2c_0000, 0x4_0000),
        client_stack: Range::new(0x8_0000, 0x4_0000),
    };
    let Ok(mut fw) = Firmware::start(&mut p, tree, layout) else {
        return;
    };
    fw.prepare_client(&ClientImage {
        entry: 0x40_0000,
        image: Range::new(0x40_0000, 0x10_0000),
        initrd: Range::default(),
    });
    p.mem.fill(CANARY.base, CANARY.size, 0x5a).unwrap();
    let expected = vec![0x5au8; CANARY.size as usize];
    let mut canary = vec![0u8; CANARY.size as usize];
    let root = fw.tree.phandle(fw.tree.root()).unwrap();
    let mut phandles: Vec<u32> = fw.tree.nodes().filter_map(|n| fw.tree.phandle(n)).collect();
    phandles.truncate(64);
    let mut ihandles = vec![fw.client.stdout, 0x1001, 0x1002, 0x1003];
    let bad_ptrs = [
        0u32,
        0x100,
        0x2000,
        0x8_0000 - 8,
        0x30_0000,
        0x3f_fffc,
        0x40_0000,
        0xffff_f000,
    ];

    for _ in 0..64 {
        if r.0.is_empty() {
            break;
        }
        let op = r.u8();
        match op % 16 {
            // A structured call.
            0..=12 => {
                let (svc, na, nr) = SERVICES[r.u8() as usize % SERVICES.len()];
                let sel = r.u8();
                let nargs = if sel & 7 == 0 { r.u8() as u32 % 24 } else { na };
                let nret = if sel & 0x38 == 0 {
                    r.u8() as u32 % 24
                } else {
                    nr
                };
                let mut at = STR;
                let mut put = |p: &mut FakePlatform, b: &[u8], nul: bool| {
                    let a = at;
                    p.mem.write(a, b).unwrap();
                    if nul {
                        p.mem.write_u8(a + b.len() as u64, 0).unwrap();
                    }
                    at += b.len() as u64 + 1;
                    a as u32
                };
                let svc_at = put(&mut p, svc.as_bytes(), true);
                let mut cells = Vec::new();
                for _ in 0..nargs.min(24) {
                    let k = r.u8();
                    cells.push(match k % 10 {
                        0 => r.u32(),
                        1 => phandles[k as usize / 10 % phandles.len()],
                        2 => ihandles[k as usize / 10 % ihandles.len()],
                        3 => put(
                            &mut p,
                            STRINGS[k as usize / 10 % STRINGS.len()].as_bytes(),
                            true,
                        ),
                        4 => {
                            let b = r.bytes(200).to_vec();
                            put(&mut p, &b, k & 0x80 == 0)
                        }
                        5 => BUF as u32 + (k as u32 >> 4) * 0x100,
                        6 => bad_ptrs[k as usize / 10 % bad_ptrs.len()],
                        7 => (k as u32 >> 4) * 0x1000,
                        8 => 0x40_0000 + (r.u8() as u32) * 0x10_0000,
                        _ => k as u32 >> 3,
                    });
                }
                let block = if sel & 0xc0 == 0xc0 {
                    bad_ptrs[(sel as usize) % bad_ptrs.len()] as u64
                } else {
                    BLOCK
                };
                let mut v = Vec::new();
                for c in [svc_at, nargs, nret].iter().chain(&cells) {
                    v.extend_from_slice(&c.to_be_bytes());
                }
                if block == BLOCK {
                    p.mem.write(block, &v).unwrap();
                }
                let r3 = fw.cif_call(&mut p, block);
                assert!(r3 == 0 || r3 == -1, "r3 = {r3}");
                if r3 == 0 && svc == "open" && nret >= 1 {
                    let ih = p.mem.read_be32(BLOCK + 12 + 4 * nargs as u64).unwrap_or(0);
                    if ih != 0 && ihandles.len() < 16 {
                        ihandles.push(ih);
                    }
                }
                if r3 == 0 && svc == "claim" && nret == 1 && nargs == 3 {
                    let base = p.mem.read_be32(BLOCK + 24).unwrap_or(u32::MAX);
                    if base != u32::MAX {
                        let got = Range::new(base as u64, cells[1] as u64);
                        // The client stack, inside the firmware's range, is the client's.
                        let cs = layout.client_stack;
                        let below = Range::new(0, cs.base);
                        let above = Range::new(cs.end(), layout.firmware.end() - cs.end());
                        assert!(
                            !got.overlaps(&below) && !got.overlaps(&above),
                            "claimed firmware memory: {got:x?}"
                        );
                        assert!(!got.overlaps(&layout.heap), "claimed the heap: {got:x?}");
                        assert!(base != 0 && got.end() <= 1 << 32);
                    }
                }
            }
            // A raw argument block.
            13 => {
                let b = r.bytes(96).to_vec();
                p.mem.write(BLOCK, &b).unwrap();
                let r3 = fw.cif_call(&mut p, BLOCK);
                assert!(r3 == 0 || r3 == -1);
            }
            // Client memory changes under the firmware.
            _ => {
                let off = r.u8() as u64 * 16;
                let b = r.bytes(64).to_vec();
                p.mem.write(STR + off, &b).unwrap();
            }
        }
        // (Slice equality is one memcmp, not an instrumented loop.)
        p.mem.read(CANARY.base, &mut canary).unwrap();
        assert!(canary == expected, "firmware memory written");
    }
    // Still the same firmware.
    let flat = fw.tree.to_fdt();
    papr_fw::devtree::Tree::from_fdt(&flat).expect("the tree still flattens to a valid blob");
    let svc = STR + 0x8000;
    p.mem.write(svc, b"peer\0").unwrap();
    for (i, c) in [svc as u32, 1, 1, 0, 0xdead_beef].iter().enumerate() {
        p.mem.write_be32(BLOCK + 4 * i as u64, *c).unwrap();
    }
    assert_eq!(fw.cif_call(&mut p, BLOCK), 0);
    assert_eq!(
        p.mem.read_be32(BLOCK + 16).unwrap(),
        root,
        "peer(0) is the root"
    );
});
