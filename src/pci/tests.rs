//! Host tests: config access through the fake platform's RTAS, BAR sizing,
//! assignment against QEMU's own trees (qemu-tests/trees), programming and
//! MMIO reachability through PHB and bridge windows.

use super::assign::{self, probe_only_after, Class, Plan};
use super::*;
use crate::devtree::Tree;
use crate::fake::nvme::FakeNvme;
use crate::fake::pci::{bar_type, FakeFunction};
use crate::fake::phb::qemu_buid;
use crate::fake::FakePlatform;
use crate::hcall::{op, Hypervisor};
use alloc::string::String;
use alloc::vec::Vec;

const BUID0: u64 = 0x0800_0000_2000_0000;
const CFG: ConfigAccess = ConfigAccess::QEMU;

fn tree_of(name: &str) -> Tree {
    let path = alloc::format!("{}/qemu-tests/trees/{name}.dtb", env!("CARGO_MANIFEST_DIR"));
    let blob = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Tree::from_fdt(&blob).unwrap()
}

/// Plug the QEMU device model of every node of `phbs` into `p`.
fn populate(p: &mut FakePlatform, phbs: &[PhbNode]) {
    assert_eq!(p.plug_qemu_tree(phbs), Vec::<String>::new());
}

fn ci_load(p: &mut FakePlatform, addr: u64, size: u64) -> u64 {
    let r = p.hcall(op::H_LOGICAL_CI_LOAD, &[size, addr]);
    assert_eq!(r.rc, 0);
    r.ret[0]
}

#[test]
fn config_address_format() {
    let b = Bdf::new(1, 2, 3);
    assert_eq!(b.devfn(), 0x13);
    assert_eq!(b.config_base(), 0x0001_1300);
    assert_eq!(b.config_addr(0x10), 0x0001_1310);
    // Extended config: register bits 11..8 go to bits 31..28.
    assert_eq!(b.config_addr(0x104), 0x1001_1304);
    assert_eq!(Bdf::from_phys_hi(0x8301_0810), Bdf::new(1, 1, 0));
    assert_eq!(alloc::format!("{}", Bdf::new(0, 0x1f, 7)), "00:1f.7");
}

#[test]
fn config_access_through_rtas() {
    let mut p = FakePlatform::new(1 << 20);
    let nvme = Bdf::new(0, 1, 0);
    p.add_function(0, FakeFunction::qemu_nvme(nvme, FakeNvme::new(16, 512)));
    assert_eq!(CFG.read32(&mut p, BUID0, nvme, 0).unwrap(), 0x0010_1b36);
    assert_eq!(CFG.read16(&mut p, BUID0, nvme, 2).unwrap(), 0x0010);
    assert_eq!(CFG.read8(&mut p, BUID0, nvme, 0x0b).unwrap(), 0x01);
    // The exact arguments QEMU sees.
    let last = p
        .calls
        .iter()
        .rev()
        .find(|c| matches!(c, crate::fake::Call::Rtas { .. }))
        .unwrap()
        .clone();
    assert_eq!(
        last,
        crate::fake::Call::Rtas {
            name: String::from("ibm,read-pci-config"),
            args: alloc::vec![0x0000_080b, 0x0800_0000, 0x2000_0000, 1],
            rets: alloc::vec![0, 1],
        }
    );
    // Extended config space (the NVMe is PCIe) is reachable and writable.
    CFG.write32(&mut p, BUID0, nvme, 0x104, 0xdead_beef)
        .unwrap();
    assert_eq!(CFG.read32(&mut p, BUID0, nvme, 0x104).unwrap(), 0xdead_beef);
    // Refused before the call: bad size, misalignment.
    let n = p.calls.len();
    assert_eq!(
        CFG.read(&mut p, BUID0, nvme, 0, 3),
        Err(ConfigError::BadAccess { reg: 0, size: 3 })
    );
    assert!(matches!(
        CFG.read32(&mut p, BUID0, nvme, 2),
        Err(ConfigError::BadAccess { .. })
    ));
    assert_eq!(p.calls.len(), n);
    // No function there, or another PHB: the platform's -1.
    let e = CFG.read32(&mut p, BUID0, Bdf::new(0, 5, 0), 0).unwrap_err();
    assert!(matches!(e, ConfigError::Status { status: -1, .. }), "{e:?}");
    assert!(CFG.read32(&mut p, BUID0 + 1, nvme, 0).is_err());
    assert_eq!(
        alloc::format!("{e}"),
        "ibm,read-pci-config(0x800000020000000 00:05.0 reg 0x0) returned -1"
    );
    // Read-only IDs, writable COMMAND bits only.
    CFG.write16(&mut p, BUID0, nvme, 0, 0x1234).unwrap();
    assert_eq!(CFG.read16(&mut p, BUID0, nvme, 0).unwrap(), 0x1b36);
    CFG.write16(&mut p, BUID0, nvme, reg::COMMAND, 0xffff)
        .unwrap();
    assert_eq!(
        CFG.read16(&mut p, BUID0, nvme, reg::COMMAND).unwrap(),
        0x0507
    );
    // An RTAS failure reaches the caller as a status.
    p.inject_rtas("ibm,write-pci-config", -1, 1);
    assert!(CFG.write16(&mut p, BUID0, nvme, reg::COMMAND, 0).is_err());
}

fn node(path: &str, bdf: Bdf, ids: (u32, u32), bars: &[(u32, u64)]) -> DevNode {
    let mut reg = alloc::vec![PciReg {
        phys_hi: bdf.config_base(),
        addr: 0,
        size: 0
    }];
    for (hi, size) in bars {
        reg.push(PciReg {
            phys_hi: bdf.config_base() | hi,
            addr: 0,
            size: *size,
        });
    }
    DevNode {
        path: path.into(),
        reg,
        vendor_id: Some(ids.0),
        device_id: Some(ids.1),
        class_code: None,
        children: Vec::new(),
    }
}

fn qemu_ranges(index: u32) -> Vec<PciRange> {
    let h = crate::fake::pci::FakePciHost::qemu(index);
    alloc::vec![
        PciRange {
            space: Space::Io,
            prefetch: false,
            bus: h.io.bus,
            cpu: h.io.cpu,
            size: h.io.size
        },
        PciRange {
            space: Space::Mem32,
            prefetch: false,
            bus: h.mmio32.bus,
            cpu: h.mmio32.cpu,
            size: h.mmio32.size
        },
        PciRange {
            space: Space::Mem64,
            prefetch: false,
            bus: h.mmio64.bus,
            cpu: h.mmio64.cpu,
            size: h.mmio64.size
        },
    ]
}

#[test]
fn bar_sizing_all_types_and_restore() {
    let mut p = FakePlatform::new(1 << 20);
    let bdf = Bdf::new(0, 3, 0);
    let f = FakeFunction::new(bdf, 0x1af4, 0x1000, 0x0200_0000, 0, 256)
        .with_bar(0, 0x20, bar_type::IO)
        .with_bar(1, 0x1000, bar_type::MEM32)
        .with_bar(2, 0x1_0000_0000, bar_type::MEM64 | bar_type::PREFETCH)
        .with_bar(4, 0x4000, bar_type::MEM64)
        .with_bar(6, 0x40000, 0);
    p.add_function(0, f);
    // Pretend something was programmed: sizing must leave it as it was.
    CFG.write32(&mut p, BUID0, bdf, 0x14, 0x8000_1000).unwrap();
    CFG.write16(
        &mut p,
        BUID0,
        bdf,
        reg::COMMAND,
        command::MEMORY | command::MASTER,
    )
    .unwrap();
    let phb = PhbNode {
        path: "/pci@800000020000000".into(),
        buid: BUID0,
        ranges: qemu_ranges(0),
        children: alloc::vec![node(
            "/pci@800000020000000/ethernet@3",
            bdf,
            (0x1af4, 0x1000),
            &[
                (0x0100_0010, 0x20),
                (0x0200_0014, 0x1000),
                (0x4300_0018, 0x1_0000_0000),
                (0x0300_0020, 0x4000),
                (0x0200_0030, 0x40000)
            ]
        )],
    };
    let top = discover(&mut p, &CFG, &phb);
    assert_eq!(top.problems, []);
    let f = &top.functions[0];
    assert_eq!(
        (f.vendor_id, f.device_id, f.class_code),
        (0x1af4, 0x1000, 0x020000)
    );
    assert_eq!(
        f.bars,
        [
            Bar {
                reg: 0x10,
                kind: BarKind::Io,
                size: 0x20
            },
            Bar {
                reg: 0x14,
                kind: BarKind::Mem32 { prefetch: false },
                size: 0x1000
            },
            Bar {
                reg: 0x18,
                kind: BarKind::Mem64 { prefetch: true },
                size: 0x1_0000_0000
            },
            Bar {
                reg: 0x20,
                kind: BarKind::Mem64 { prefetch: false },
                size: 0x4000
            },
            Bar {
                reg: 0x30,
                kind: BarKind::Rom,
                size: 0x40000
            },
        ]
    );
    let host = p.pci.host(BUID0).unwrap().function(bdf).unwrap();
    assert_eq!(host.get32(0x14), 0x8000_1000, "BAR restored");
    assert_eq!(host.get32(0x18), 0xc, "type bits intact");
    assert_eq!(
        host.command(),
        command::MEMORY | command::MASTER,
        "COMMAND restored"
    );
    // A BAR the tree disagrees with is reported, config space wins.
    let mut phb2 = phb.clone();
    phb2.children[0].reg[2].size = 0x2000;
    let top = discover(&mut p, &CFG, &phb2);
    assert_eq!(top.functions[0].bars[1].size, 0x1000);
    assert_eq!(
        alloc::format!("{}", top.problems[0]),
        "/pci@800000020000000/ethernet@3: BAR 0x14: config space size 0x1000, reg says 0x2000 (using config space)"
    );
}

#[test]
fn nodes_that_config_space_contradicts_are_skipped() {
    let mut p = FakePlatform::new(1 << 20);
    p.add_function(0, FakeFunction::qemu_virtio_net(Bdf::new(0, 1, 0)));
    // A bridge QEMU did not number.
    p.add_function(0, FakeFunction::qemu_pci_bridge(Bdf::new(0, 2, 0), 0, 0));
    let mut bridge = node(
        "/p/pci@2",
        Bdf::new(0, 2, 0),
        (0x1b36, 1),
        &[(0x0300_0010, 0x100)],
    );
    bridge.children.push(node(
        "/p/pci@2/x@0",
        Bdf::new(1, 0, 0),
        (0x1af4, 0x1000),
        &[],
    ));
    let phb = PhbNode {
        path: "/p".into(),
        buid: BUID0,
        ranges: qemu_ranges(0),
        children: alloc::vec![
            node("/p/absent@4", Bdf::new(0, 4, 0), (0x1af4, 0x1000), &[]),
            node("/p/other@1", Bdf::new(0, 1, 0), (0x1af4, 0x1001), &[]),
            DevNode {
                path: "/p/noreg".into(),
                ..DevNode::default()
            },
            bridge,
        ],
    };
    let top = discover(&mut p, &CFG, &phb);
    let kinds: Vec<_> = top
        .problems
        .iter()
        .map(|pr| (pr.path.as_str(), pr.kind.clone()))
        .collect();
    assert!(matches!(kinds[0], ("/p/absent@4", ProblemKind::Absent(_))));
    assert_eq!(
        kinds[1],
        (
            "/p/other@1",
            ProblemKind::IdMismatch {
                tree: (0x1af4, 0x1001),
                config: (0x1af4, 0x1000)
            }
        )
    );
    assert_eq!(kinds[2], ("/p/noreg", ProblemKind::NoReg));
    assert_eq!(kinds[3], ("/p/pci@2", ProblemKind::NotNumbered));
    assert_eq!(top.functions.len(), 1, "only the bridge itself remains");
    assert_eq!(top.functions[0].bridge.as_ref().unwrap().children, []);
}

/// Every invariant an assignment must satisfy.
fn check_plan(top: &PhbTopology, plan: &Plan) {
    let range = |class: Class| {
        let space = match class {
            Class::Io => Space::Io,
            Class::Mem32 => Space::Mem32,
            Class::Mem64 => Space::Mem64,
        };
        top.ranges
            .iter()
            .find(|r| r.space == space)
            .copied()
            .unwrap()
    };
    let mut spans: Vec<(bool, u64, u64, String)> = Vec::new();
    for a in &plan.bars {
        let b = a.bar;
        assert_eq!(
            a.bus_addr % b.size,
            0,
            "{} {:#x} not naturally aligned",
            a.path,
            b.reg
        );
        let in_range = |c: Class| range(c).contains_bus(a.bus_addr, b.size);
        let ok = match b.kind {
            BarKind::Io => in_range(Class::Io) && a.bus_addr >= assign::IO_START,
            BarKind::Mem32 { .. } | BarKind::Rom => {
                in_range(Class::Mem32) && a.bus_addr + b.size <= 1 << 32
            }
            BarKind::Mem64 { .. } => in_range(Class::Mem32) || in_range(Class::Mem64),
        };
        assert!(
            ok,
            "{} BAR {:#x} at {:#x} outside its window",
            a.path, b.reg, a.bus_addr
        );
        let r = top
            .ranges
            .iter()
            .find(|r| {
                r.contains_bus(a.bus_addr, b.size)
                    && (r.space == Space::Io) == (b.kind == BarKind::Io)
            })
            .unwrap();
        assert_eq!(a.cpu_addr, r.cpu + (a.bus_addr - r.bus));
        spans.push((
            b.kind == BarKind::Io,
            a.bus_addr,
            a.bus_addr + b.size,
            a.path.clone(),
        ));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].0 != w[1].0 || w[0].2 <= w[1].1,
            "{} and {} overlap",
            w[0].3,
            w[1].3
        );
    }
    // Bridge windows: granular, and hold exactly what is behind them.
    for f in top.all() {
        let Some(br) = &f.bridge else { continue };
        for a in plan.bars.iter().filter(|a| {
            br.children
                .iter()
                .flat_map(|c| c.walk())
                .any(|c| c.bdf == a.bdf)
        }) {
            let w = plan
                .windows
                .iter()
                .find(|w| {
                    w.bdf == f.bdf
                        && (w.class == Class::Io) == (a.bar.kind == BarKind::Io)
                        && w.base <= a.bus_addr
                        && a.bus_addr + a.bar.size - 1 <= w.limit
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{} BAR {:#x} outside {}'s windows",
                        a.path, a.bar.reg, f.path
                    )
                });
            let g = if w.class == Class::Io {
                assign::IO_GRANULE
            } else {
                assign::MEM_GRANULE
            };
            assert_eq!((w.base % g, (w.limit + 1) % g), (0, 0));
            if w.class == Class::Mem32 {
                assert!(w.limit < 1 << 32);
            }
        }
    }
}

/// Discover, plan, apply and check one golden tree; returns the plans.
fn golden(name: &str) -> (FakePlatform, Tree, Vec<(PhbTopology, Plan)>) {
    let mut tree = tree_of(name);
    let (phbs, warnings) = super::tree::phbs(&tree);
    assert_eq!(warnings, Vec::<String>::new(), "{name}");
    let mut p = FakePlatform::new(1 << 20);
    populate(&mut p, &phbs);
    let mut out = Vec::new();
    for phb in &phbs {
        let top = discover(&mut p, &CFG, phb);
        assert_eq!(top.problems, [], "{name}");
        assert_eq!(
            top.all().len(),
            p.pci.host(phb.buid).unwrap().functions.len(),
            "{name}"
        );
        let plan = assign::plan(&top);
        assert!(plan.complete(), "{name}: {:?}", plan.unassigned);
        check_plan(&top, &plan);
        let rep = assign::apply(&mut p, &CFG, &plan);
        assert!(rep.ok(), "{name}: {rep:?}");
        assert_eq!(rep.bars, plan.bars.len());
        // Every memory BAR now decodes where the plan says: a load through
        // the PHB window reaches the function (the NVMe answers with CAP).
        for a in &plan.bars {
            let f = p.pci.host(phb.buid).unwrap().function(a.bdf).unwrap();
            let idx = if a.bar.kind == BarKind::Rom {
                6
            } else {
                ((a.bar.reg - 0x10) / 4) as usize
            };
            if a.bar.kind == BarKind::Rom {
                assert_eq!(f.bar_address(idx), None, "ROM stays disabled");
            } else {
                assert_eq!(
                    f.bar_address(idx),
                    Some(a.bus_addr),
                    "{name} {} {:#x}",
                    a.path,
                    a.bar.reg
                );
            }
            if f.vendor_id_is(0x1b36, 0x0010) {
                let cap = (ci_load(&mut p, a.cpu_addr, 4) as u32).swap_bytes();
                assert_eq!(
                    cap & 0xffff,
                    0x7ff,
                    "{name}: NVMe CAP.MQES via {:#x}",
                    a.cpu_addr
                );
            }
        }
        assert_eq!(
            super::tree::write_assigned_addresses(&mut tree, &plan).unwrap(),
            plan.nodes().len()
        );
        out.push((top, plan));
    }
    (p, tree, out)
}

trait Ids {
    fn vendor_id_is(&self, v: u16, d: u16) -> bool;
}
impl Ids for FakeFunction {
    fn vendor_id_is(&self, v: u16, d: u16) -> bool {
        self.get16(0) == v && self.get16(2) == d
    }
}

#[test]
fn golden_trees_assign_completely() {
    for v in ["7.2", "10.0"] {
        for cfg in [
            "default", "devices", "phb2", "large", "bridge", "ddw-off", "mem4g",
        ] {
            let name = alloc::format!("qemu-{v}-{cfg}");
            let (_, _, plans) = golden(&name);
            let phbs = match cfg {
                "phb2" => 2,
                "large" => 4,
                _ => 1,
            };
            assert_eq!(plans.len(), phbs, "{name}");
        }
    }
}

#[test]
fn devices_tree_golden_addresses() {
    for v in ["7.2", "10.0"] {
        let (_, tree, plans) = golden(&alloc::format!("qemu-{v}-devices"));
        let plan = &plans[0].1;
        let at = |path: &str, r: u16| {
            plan.bars
                .iter()
                .find(|a| a.path == path && a.bar.reg == r)
                .map(|a| (a.bus_addr, a.cpu_addr))
                .unwrap()
        };
        let phb = "/pci@800000020000000";
        // 64-bit BARs in the 1 TiB window (identity), in slot order.
        assert_eq!(
            at(&alloc::format!("{phb}/mass-storage@0"), 0x10),
            (0x2100_0000_0000, 0x2100_0000_0000)
        );
        assert_eq!(
            at(&alloc::format!("{phb}/scsi@1"), 0x20).0,
            0x2100_0000_4000
        );
        assert_eq!(
            at(&alloc::format!("{phb}/ethernet@2"), 0x20).0,
            0x2100_0000_8000
        );
        // 32-bit: the ROM (largest) first, bus 0x8000_0000 = CPU 0x2000_8000_0000.
        assert_eq!(
            at(&alloc::format!("{phb}/ethernet@2"), 0x30),
            (0x8000_0000, 0x2000_8000_0000)
        );
        assert_eq!(at(&alloc::format!("{phb}/scsi@1"), 0x14).0, 0x8004_0000);
        // I/O from 0x1000, largest first.
        assert_eq!(
            at(&alloc::format!("{phb}/scsi@1"), 0x10),
            (0x1000, 0x2000_0000_1000)
        );
        assert_eq!(at(&alloc::format!("{phb}/scsi@3"), 0x10).0, 0x1080);
        assert_eq!(at(&alloc::format!("{phb}/ethernet@2"), 0x10).0, 0x10c0);
        // assigned-addresses in the tree: n bit, ss, bus/dev/fn, register.
        let nvme = tree.find(&alloc::format!("{phb}/mass-storage@0")).unwrap();
        let cells: Vec<u32> = tree
            .prop_cells(nvme, "assigned-addresses")
            .unwrap()
            .collect();
        assert_eq!(cells, [0x8300_0010, 0x2100, 0, 0, 0x4000]);
        let net = tree.find(&alloc::format!("{phb}/ethernet@2")).unwrap();
        let cells: Vec<u32> = tree
            .prop_cells(net, "assigned-addresses")
            .unwrap()
            .collect();
        assert_eq!(
            cells,
            [
                0x8100_1010,
                0,
                0x10c0,
                0,
                0x20, //
                0x8200_1014,
                0,
                0x8004_1000,
                0,
                0x1000, //
                0xc300_1020,
                0x2100,
                0x8000,
                0,
                0x4000, //
                0x8200_1030,
                0,
                0x8000_0000,
                0,
                0x4_0000,
            ]
        );
    }
}

#[test]
fn bridge_tree_windows_and_mmio_behind_the_bridge() {
    for v in ["7.2", "10.0"] {
        let name = alloc::format!("qemu-{v}-bridge");
        // Before assignment nothing behind the bridge answers.
        let tree = tree_of(&name);
        let (phbs, _) = super::tree::phbs(&tree);
        let mut p = FakePlatform::new(1 << 20);
        populate(&mut p, &phbs);
        assert_eq!(ci_load(&mut p, 0x2000_8004_0000, 4), 0);

        let (mut p, _, plans) = golden(&name);
        let (top, plan) = &plans[0];
        let br = &top.functions[0];
        assert_eq!(br.bdf, Bdf::new(0, 0, 0));
        let b = br.bridge.as_ref().unwrap();
        assert_eq!((b.secondary, b.io32, b.pref64), (1, false, true));
        assert_eq!(b.children.len(), 2);
        let win = |c: Class| {
            plan.windows
                .iter()
                .find(|w| w.bdf == br.bdf && w.class == c)
                .map(|w| (w.base, w.limit))
                .unwrap()
        };
        assert_eq!(win(Class::Io), (0x1000, 0x1fff));
        assert_eq!(win(Class::Mem32), (0x8000_0000, 0x800f_ffff));
        assert_eq!(win(Class::Mem64), (0x2100_0000_0000, 0x2100_000f_ffff));
        let at = |path: &str, r: u16| {
            plan.bars
                .iter()
                .find(|a| a.path.ends_with(path) && a.bar.reg == r)
                .unwrap()
        };
        // The NVMe behind the bridge is non-prefetchable: 32-bit window.
        let nvme1 = at("pci@0/mass-storage@0", 0x10);
        assert_eq!(
            (nvme1.bus_addr, nvme1.cpu_addr),
            (0x8004_0000, 0x2000_8004_0000)
        );
        assert_eq!(at("pci@0/ethernet@1", 0x20).bus_addr, 0x2100_0000_0000);
        assert_eq!(at("pci@0/ethernet@1", 0x30).bus_addr, 0x8000_0000);
        assert_eq!(at("pci@0/ethernet@1", 0x10).bus_addr, 0x1000);
        // The root-bus NVMe and the bridge's own BAR after the bridge window.
        assert_eq!(at("/mass-storage@1", 0x10).bus_addr, 0x2100_0010_0000);
        assert_eq!(
            at("pci@800000020000000/pci@0", 0x10).bus_addr,
            0x2100_0010_4000
        );
        // The bridge's registers as programmed.
        let f = p.pci.host(BUID0).unwrap().function(br.bdf).unwrap();
        assert_eq!((f.config[0x1c], f.config[0x1d]), (0x10, 0x10));
        assert_eq!((f.get16(0x20), f.get16(0x22)), (0x8000, 0x8000));
        assert_eq!((f.get16(0x24), f.get16(0x26)), (0x0001, 0x0001));
        assert_eq!((f.get32(0x28), f.get32(0x2c)), (0x2100, 0x2100));
        assert_eq!(f.command(), command::IO | command::MEMORY | command::MASTER);
        // The NVMe behind the bridge answers at its CPU address.
        let cap = ci_load(&mut p, nvme1.cpu_addr, 4) as u32;
        assert_eq!(cap.swap_bytes() & 0xffff, 0x7ff);
        // Close the bridge's memory decode: it stops forwarding.
        CFG.update_command(&mut p, BUID0, br.bdf, 0, command::MEMORY)
            .unwrap();
        assert_eq!(ci_load(&mut p, nvme1.cpu_addr, 4), 0);
    }
}

#[test]
fn second_phb_uses_its_own_windows() {
    for v in ["7.2", "10.0"] {
        let (_, _, plans) = golden(&alloc::format!("qemu-{v}-large"));
        for (i, (top, plan)) in plans.iter().enumerate() {
            assert_eq!(top.buid, qemu_buid(i as u32));
            let nvme = plan
                .bars
                .iter()
                .find(|a| a.path.ends_with("mass-storage@0"))
                .unwrap();
            // MMIO64 window of PHB i: 32 TiB + (i + 1) TiB.
            assert_eq!(nvme.cpu_addr, (1 << 45) + ((i as u64 + 1) << 40));
        }
    }
}

#[test]
fn exhausted_windows_are_reported_and_decode_stays_off() {
    let mut p = FakePlatform::new(1 << 20);
    let a = Bdf::new(0, 1, 0);
    let b = Bdf::new(0, 2, 0);
    p.add_function(0, FakeFunction::qemu_vga(a));
    p.add_function(0, FakeFunction::qemu_vga(b));
    // A PHB with a 20 MiB 32-bit window and no 64-bit window: the second
    // 16 MiB VRAM BAR does not fit.
    let mut ranges = qemu_ranges(0);
    ranges.retain(|r| r.space != Space::Mem64);
    ranges[1].size = 20 << 20;
    let vga = |path: &str, bdf| {
        node(
            path,
            bdf,
            (0x1234, 0x1111),
            &[
                (0x4200_0010, 0x100_0000),
                (0x0200_0018, 0x1000),
                (0x0200_0030, 0x10000),
            ],
        )
    };
    let phb = PhbNode {
        path: "/p".into(),
        buid: BUID0,
        ranges,
        children: alloc::vec![vga("/p/vga@1", a), vga("/p/vga@2", b)],
    };
    let top = discover(&mut p, &CFG, &phb);
    let plan = assign::plan(&top);
    assert!(!plan.complete());
    assert_eq!(plan.unassigned.len(), 1);
    assert_eq!(
        alloc::format!("{}", plan.unassigned[0]),
        "/p/vga@2 BAR 0x10: no room for 0x1000000 bytes of 32-bit memory space"
    );
    let rep = assign::apply(&mut p, &CFG, &plan);
    assert!(rep.ok());
    let host = p.pci.host(BUID0).unwrap();
    assert_eq!(host.function(a).unwrap().command(), command::MEMORY);
    assert_eq!(
        host.function(b).unwrap().command() & command::MEMORY,
        0,
        "half-assigned: no decode"
    );
    // The OS must be allowed to finish the job.
    assert_eq!(probe_only_after(None, false), Some(0));
    assert_eq!(probe_only_after(Some(1), false), Some(0));
    assert_eq!(probe_only_after(Some(0), false), None);
    assert_eq!(probe_only_after(None, true), None);
    assert_eq!(probe_only_after(Some(1), true), None);
}

#[test]
fn no_64bit_window_puts_64bit_bars_low() {
    let mut p = FakePlatform::new(1 << 20);
    let bdf = Bdf::new(0, 0, 0);
    p.add_function(0, FakeFunction::qemu_nvme(bdf, FakeNvme::new(16, 512)));
    let mut ranges = qemu_ranges(0);
    ranges.retain(|r| r.space != Space::Mem64);
    let phb = PhbNode {
        path: "/p".into(),
        buid: BUID0,
        ranges,
        children: alloc::vec![node(
            "/p/nvme@0",
            bdf,
            (0x1b36, 0x10),
            &[(0x0300_0010, 0x4000)]
        )],
    };
    let top = discover(&mut p, &CFG, &phb);
    let plan = assign::plan(&top);
    assert!(plan.complete());
    assert_eq!(plan.bars[0].bus_addr, 0x8000_0000);
    let rep = assign::apply(&mut p, &CFG, &plan);
    assert!(rep.ok());
    let f = p.pci.host(BUID0).unwrap().function(bdf).unwrap();
    assert_eq!((f.get32(0x10), f.get32(0x14)), (0x8000_0004, 0));
}

#[test]
fn probe_only_in_the_tree() {
    let mut tree = tree_of("qemu-7.2-devices");
    let chosen = tree.find("/chosen").unwrap();
    assert_eq!(tree.prop_u32(chosen, "linux,pci-probe-only"), Some(0));
    assert_eq!(
        super::tree::update_probe_only(&mut tree, true).unwrap(),
        None
    );
    tree.remove_prop(chosen, "linux,pci-probe-only").unwrap();
    assert_eq!(
        super::tree::update_probe_only(&mut tree, true).unwrap(),
        None
    );
    assert_eq!(
        super::tree::update_probe_only(&mut tree, false).unwrap(),
        Some(0)
    );
    assert_eq!(tree.prop_u32(chosen, "linux,pci-probe-only"), Some(0));
}

#[test]
fn config_errors_during_apply_are_collected() {
    let (_, _, plans) = golden("qemu-7.2-devices");
    let plan = &plans[0].1;
    let mut p = FakePlatform::new(1 << 20);
    // No functions behind the PHB now: every write fails, nothing panics.
    let rep = assign::apply(&mut p, &CFG, plan);
    assert!(!rep.ok());
    assert_eq!(rep.bars, 0);
    assert!(rep.config_errors.len() >= plan.bars.len());
}

#[test]
fn setup_without_config_tokens_leaves_bars_to_the_os() {
    let mut tree = tree_of("qemu-7.2-devices");
    let rtas = tree.find("/rtas").unwrap();
    tree.remove_prop(rtas, "ibm,write-pci-config").unwrap();
    let chosen = tree.find("/chosen").unwrap();
    tree.remove_prop(chosen, "linux,pci-probe-only").unwrap();
    let mut p = FakePlatform::new(1 << 20);
    let (res, lines) = super::tree::setup(&mut p, &mut tree);
    assert!(res.is_empty());
    assert_eq!(
        lines,
        ["pci: /rtas lacks ibm,read-pci-config or ibm,write-pci-config; BARs left unassigned"]
    );
    assert_eq!(tree.prop_u32(chosen, "linux,pci-probe-only"), Some(0));
    assert!(p.calls.is_empty());
}

#[test]
fn setup_reports_problems_and_incomplete_phbs() {
    let mut tree = tree_of("qemu-10.0-devices");
    let (phbs, _) = super::tree::phbs(&tree);
    let mut p = FakePlatform::new(1 << 20);
    populate(&mut p, &phbs);
    // The virtio-net is gone from config space (e.g. unplugged).
    p.pci
        .host_mut(BUID0)
        .unwrap()
        .functions
        .retain(|f| f.bdf != Bdf::new(0, 2, 0));
    let chosen = tree.find("/chosen").unwrap();
    tree.set_prop_u32(chosen, "linux,pci-probe-only", 1)
        .unwrap();
    let (res, lines) = super::tree::setup(&mut p, &mut tree);
    assert_eq!(res.len(), 1);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]
        .starts_with("pci: /pci@800000020000000/ethernet@2: no function answers in config space"));
    assert_eq!(
        lines[1],
        "pci: /pci@800000020000000: 3 functions, 7 BARs and 0 bridge windows assigned"
    );
    // Everything found was assigned: the platform's value stays.
    assert_eq!(tree.prop_u32(chosen, "linux,pci-probe-only"), Some(1));
    let net = tree.find("/pci@800000020000000/ethernet@2").unwrap();
    assert!(tree.prop(net, "assigned-addresses").is_none());
}

#[test]
fn bridge_nodes_get_bus_range_and_ranges() {
    for v in ["7.2", "10.0"] {
        let mut tree = tree_of(&alloc::format!("qemu-{v}-bridge"));
        let (phbs, _) = super::tree::phbs(&tree);
        let mut p = FakePlatform::new(1 << 20);
        populate(&mut p, &phbs);
        let br = tree.find("/pci@800000020000000/pci@0").unwrap();
        assert!(tree.prop(br, "bus-range").is_none() && tree.prop(br, "ranges").is_none());
        let (_, lines) = super::tree::setup(&mut p, &mut tree);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let cells = |name| tree.prop_cells(br, name).unwrap().collect::<Vec<u32>>();
        assert_eq!(tree.prop_str(br, "device_type"), Some("pci"));
        assert_eq!(cells("bus-range"), [1, 1]);
        assert_eq!(
            cells("ranges"),
            [
                0x0100_0000,
                0,
                0x1000,
                0x0100_0000,
                0,
                0x1000,
                0,
                0x1000, //
                0x0200_0000,
                0,
                0x8000_0000,
                0x0200_0000,
                0,
                0x8000_0000,
                0,
                0x10_0000, //
                0x4300_0000,
                0x2100,
                0,
                0x4300_0000,
                0x2100,
                0,
                0,
                0x10_0000,
            ]
        );
        // The tree decodes them as 1:1 windows.
        let r = tree.ranges(br).unwrap().unwrap();
        assert!(r
            .iter()
            .all(|e| e.child == e.parent && e.child_hi == e.parent_hi));
        // Devices behind the bridge carry their assignments too.
        let nvme = tree
            .find("/pci@800000020000000/pci@0/mass-storage@0")
            .unwrap();
        let a: Vec<u32> = tree
            .prop_cells(nvme, "assigned-addresses")
            .unwrap()
            .collect();
        assert_eq!(a, [0x8301_0010, 0, 0x8004_0000, 0, 0x4000]);
    }
}
