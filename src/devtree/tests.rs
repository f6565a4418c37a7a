//! Host tests of the device tree on QEMU's real trees
//! (`qemu-tests/trees/*.dtb`, dumped by `qemu-tests/trees/dump.sh` from QEMU
//! 7.2 and 10.0 in several machine configurations) and on hand-built bad
//! blobs.  The round-trip tests compare `dtc -I dtb -O dts` of the original
//! and of the re-flattened tree (dtc comes from qemu-tests/setup.sh; the
//! tests fail without it).

use super::dma::{self, DdwExtensions, DmaModel, DmaNodeKind, DmaWarning, DmaWindow, WindowProp};
use super::fdt::{Fdt, FdtError, MAX_DEPTH};
use super::{NodeId, Tree, TreeError};
use std::collections::BTreeSet;
use std::format;
use std::path::PathBuf;
use std::process::Command;
use std::string::{String, ToString};
use std::vec::Vec;

macro_rules! golden {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../qemu-tests/trees/", $name, ".dtb")))),*]
    };
}

/// Every golden tree: (name, blob).
pub(super) const GOLDEN: &[(&str, &[u8])] = golden![
    "qemu-7.2-default",
    "qemu-7.2-smp4",
    "qemu-7.2-mem4g",
    "qemu-7.2-phb2",
    "qemu-7.2-devices",
    "qemu-7.2-ddw-off",
    "qemu-7.2-power8",
    "qemu-7.2-power10",
    "qemu-7.2-xive",
    "qemu-7.2-kernel",
    "qemu-7.2-large",
    "qemu-10.0-default",
    "qemu-10.0-smp4",
    "qemu-10.0-mem4g",
    "qemu-10.0-phb2",
    "qemu-10.0-devices",
    "qemu-10.0-ddw-off",
    "qemu-10.0-power8",
    "qemu-10.0-power10",
    "qemu-10.0-xive",
    "qemu-10.0-kernel",
    "qemu-10.0-large",
];

fn golden(name: &str) -> &'static [u8] {
    GOLDEN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no golden tree {name}"))
}

fn tree(name: &str) -> Tree {
    Tree::from_fdt(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `dtc -I dtb -O dts` of `blob` (written to a temporary file).
fn dtc(blob: &[u8], tag: &str) -> String {
    let path: PathBuf =
        std::env::temp_dir().join(format!("papr-devtree-{}-{tag}.dtb", std::process::id()));
    std::fs::write(&path, blob).unwrap();
    let out = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.expect("dtc (device-tree-compiler) is missing: run qemu-tests/setup.sh");
    assert!(
        out.status.success(),
        "dtc failed on {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// --- round trips -------------------------------------------------------------

#[test]
fn golden_trees_round_trip_through_dtc() {
    for (name, blob) in GOLDEN {
        let t = Tree::from_fdt(blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        let flat = t.to_fdt();
        assert_eq!(
            dtc(blob, &format!("{name}-orig")),
            dtc(&flat, &format!("{name}-flat")),
            "{name}: dtc output differs after unflatten/flatten"
        );
        // Header fields dtc does not print.
        let (a, b) = (Fdt::new(blob).unwrap(), Fdt::new(&flat).unwrap());
        assert_eq!(a.boot_cpuid_phys(), b.boot_cpuid_phys(), "{name}");
        assert!(a.reserve_map().eq(b.reserve_map()), "{name}");
        assert_eq!(b.totalsize(), flat.len(), "{name}");
        // Flattening is a fixed point.
        assert_eq!(Tree::from_fdt(&flat).unwrap().to_fdt(), flat, "{name}");
        // Same layout as libfdt's; strings shared at least as much.
        assert!(
            flat.len() <= blob.len(),
            "{name}: {} > {}",
            flat.len(),
            blob.len()
        );
    }
}

/// `dtc -I dtb -O dtb <args>` of `blob`.
fn dtc_dtb(blob: &[u8], args: &[&str], tag: &str) -> Vec<u8> {
    let dir = std::env::temp_dir();
    let (src, dst) = (
        dir.join(format!("papr-devtree-{}-{tag}-in.dtb", std::process::id())),
        dir.join(format!("papr-devtree-{}-{tag}-out.dtb", std::process::id())),
    );
    std::fs::write(&src, blob).unwrap();
    let st = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dtb"])
        .args(args)
        .arg("-o")
        .arg(&dst)
        .arg(&src)
        .status()
        .expect("dtc (device-tree-compiler) is missing: run qemu-tests/setup.sh");
    assert!(st.success(), "dtc {args:?} failed");
    let out = std::fs::read(&dst).unwrap();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    out
}

#[test]
fn v16_and_padded_blobs_from_dtc() {
    let blob = golden("qemu-7.2-phb2");
    let want = Tree::from_fdt(blob).unwrap().to_fdt();
    // dtc's own v16 output (36-byte header, no size_dt_struct) and blobs
    // with free space after the strings or a bigger reserve map.
    for (args, tag) in [
        (&["-V", "16"][..], "v16"),
        (&["-p", "4096"][..], "padded"),
        (&["-R", "4"][..], "reserve"),
    ] {
        let b = dtc_dtb(blob, args, tag);
        let fdt = Fdt::new(&b).unwrap_or_else(|e| panic!("{tag}: {e}"));
        if tag == "v16" {
            assert_eq!(fdt.header().version, 16);
        }
        let t = Tree::from_fdt(&b).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(t.to_fdt(), want, "{tag}");
    }
}

#[test]
fn unknown_struct_size_is_accepted() {
    // prom_init leaves size_dt_struct 0 in a v17 header; a v16 header has
    // no such field.  Both read as "up to the strings block".
    let blob = golden("qemu-10.0-default");
    let want = Tree::from_fdt(blob).unwrap().to_fdt();
    let mut b = blob.to_vec();
    b[36..40].copy_from_slice(&[0; 4]);
    assert_eq!(Tree::from_fdt(&b).unwrap().to_fdt(), want);
    b[20..24].copy_from_slice(&16u32.to_be_bytes());
    b[24..28].copy_from_slice(&16u32.to_be_bytes());
    assert_eq!(Tree::from_fdt(&b).unwrap().to_fdt(), want);
}

#[test]
fn golden_trees_have_long_and_empty_properties() {
    let t = tree("qemu-7.2-default");
    let rtas = t.find("/rtas").unwrap();
    let long = "ibm,associativity-reference-points";
    assert!(long.len() > 31);
    assert_eq!(
        t.prop_cells(rtas, long).unwrap().collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(t.prop(rtas, "ibm,extended-os-term"), Some(&[][..]));
    let flat = Tree::from_fdt(&t.to_fdt()).unwrap();
    let rtas2 = flat.find("/rtas").unwrap();
    assert_eq!(flat.prop(rtas2, long), t.prop(rtas, long));
    assert_eq!(flat.prop(rtas2, "ibm,extended-os-term"), Some(&[][..]));
}

#[test]
fn modified_tree_round_trips() {
    let mut t = tree("qemu-10.0-devices");
    let root = t.root();
    let opts = t.add_node(root, "options").unwrap();
    t.set_prop_str(opts, "boot-device", "disk").unwrap();
    t.set_prop(opts, "an-empty-property-with-a-name-longer-than-31", &[])
        .unwrap();
    let vty = t.find("/vdevice/vty").unwrap();
    t.remove_node(vty).unwrap();
    t.add_reserve(0x1000_0000, 0x20_0000);
    t.set_boot_cpuid_phys(3);
    let flat = t.to_fdt();
    let t2 = Tree::from_fdt(&flat).unwrap();
    assert_eq!(t2.to_fdt(), flat);
    assert_eq!(t2.find("/vdevice/vty"), None);
    assert_eq!(
        t2.prop_str(t2.find("/options").unwrap(), "boot-device"),
        Some("disk")
    );
    assert_eq!(t2.boot_cpuid_phys(), 3);
    assert_eq!(t2.reserve_map().len(), 1);
    // dtc accepts it and shows the reservation.
    assert!(dtc(&flat, "modified").contains("/memreserve/\t0x0000000010000000 0x0000000000200000;"));
}

// --- paths -------------------------------------------------------------------

#[test]
fn path_lookups_on_qemu_trees() {
    let t = tree("qemu-7.2-devices");
    let pci = t.find("/pci@800000020000000").unwrap();
    assert_eq!(t.name(pci), Some("pci@800000020000000"));
    assert_eq!(t.node_name(pci), Some("pci"));
    assert_eq!(t.unit_address(pci), Some("800000020000000"));
    let nvme = t.find("/pci@800000020000000/mass-storage@0").unwrap();
    assert_eq!(t.parent(nvme), Some(pci));
    assert_eq!(t.find("/pci/mass-storage"), Some(nvme));
    assert_eq!(t.find("/pci@0800000020000000/@0"), Some(nvme));
    assert_eq!(
        t.find("/pci@800000020000000/mass-storage@0:1,\\boot"),
        Some(nvme)
    );
    assert_eq!(t.find_relative(pci, "mass-storage@0"), Some(nvme));
    assert_eq!(t.find_relative(nvme, ".."), Some(pci));
    assert_eq!(t.find_relative(nvme, "../scsi@1"), t.find("/pci/scsi@1"));
    assert_eq!(t.find_relative(nvme, "./../../vdevice"), t.find("/vdevice"));
    assert_eq!(t.find_relative(t.root(), ".."), None);
    assert_eq!(t.find_relative(nvme, "/cpus"), t.find("/cpus"));
    let vty = t.find("/vdevice/vty").unwrap();
    assert_eq!(t.path(vty).unwrap(), "/vdevice/vty@71000000");
    assert_eq!(t.find("/"), Some(t.root()));
    assert_eq!(t.path(t.root()).unwrap(), "/");
    assert_eq!(t.find("/memory"), t.find("/memory@0"));
    assert_eq!(t.find("/memory@00000000"), t.find("/memory@0"));
    assert_eq!(
        t.find("/cpus/PowerPC,POWER9"),
        t.find("/cpus/PowerPC,POWER9@0")
    );
    for missing in [
        "/nothing",
        "/pci@800000020000001",
        "/vdevice/vty@1",
        "",
        "nothing",
        "/:x",
    ] {
        assert_eq!(t.find(missing), None, "{missing}");
    }
}

#[test]
fn package_to_path_matches_qemu_and_find() {
    for (name, _) in GOLDEN {
        let t = tree(name);
        // QEMU's own idea of the console path is what package-to-path gives.
        let chosen = t.find("/chosen").unwrap();
        if let Some(stdout) = t.prop_str(chosen, "stdout-path") {
            let vty = t.find(stdout).unwrap();
            assert_eq!(t.path(vty).unwrap(), stdout, "{name}");
        }
        // find ∘ path is the identity, and the no-alloc reader agrees.
        let fdt = Fdt::new(golden(name)).unwrap();
        let mut count = 0;
        for n in t.nodes() {
            let p = t.path(n).unwrap();
            assert_eq!(t.find(&p), Some(n), "{name}: {p}");
            let f = fdt.find_node(&p).unwrap().unwrap();
            assert_eq!(f.name, t.name(n).unwrap());
            let props: Vec<_> = fdt.props(&f).map(|p| p.unwrap()).collect();
            assert!(props.iter().copied().eq(t.props(n)), "{name}: {p}");
            count += 1;
        }
        assert_eq!(count, t.node_count());
    }
}

#[test]
fn aliases() {
    let mut t = tree("qemu-7.2-devices");
    let root = t.root();
    let a = t.add_node(root, "aliases").unwrap();
    t.set_prop_str(a, "disk", "/pci@800000020000000/mass-storage@0")
        .unwrap();
    t.set_prop_str(a, "hvterm", "/vdevice/vty").unwrap();
    t.set_prop_str(a, "vdev", "/vdevice").unwrap();
    // Alias loops and relative values resolve to nothing, without hanging.
    t.set_prop_str(a, "loop1", "loop2").unwrap();
    t.set_prop_str(a, "loop2", "loop1").unwrap();
    t.set_prop_str(a, "self", "self/x").unwrap();
    let nvme = t.find("/pci@800000020000000/mass-storage@0");
    assert!(nvme.is_some());
    assert_eq!(t.find("disk"), nvme);
    assert_eq!(t.find("disk:3,\\boot\\vmlinux"), nvme);
    assert_eq!(t.find("hvterm"), t.find("/vdevice/vty@71000000"));
    assert_eq!(t.find("vdev/vty"), t.find("/vdevice/vty@71000000"));
    assert_eq!(
        t.resolve_alias("disk"),
        Some("/pci@800000020000000/mass-storage@0")
    );
    for bad in [
        "loop1",
        "loop2",
        "self",
        "self/x",
        "nothing",
        "disk/nothing",
    ] {
        assert_eq!(t.find(bad), None, "{bad}");
    }
}

// --- merge (CAS) ---------------------------------------------------------------

/// What QEMU's CAS-time tree looks like for `name`: the same tree with
/// `/chosen` reduced to a new `rng-seed` and `ibm,architecture-vec-5`, and
/// no reserve map (spapr_build_fdt with reset=false).
fn cas_tree(name: &str) -> Tree {
    let mut t = tree(name);
    let chosen = t.find("/chosen").unwrap();
    let names: Vec<String> = t.props(chosen).map(|(n, _)| n.to_string()).collect();
    for n in names {
        if n != "rng-seed" && n != "ibm,architecture-vec-5" {
            t.remove_prop(chosen, &n).unwrap();
        }
    }
    t.set_prop(chosen, "rng-seed", &[0x5a; 32]).unwrap();
    t.set_prop(chosen, "ibm,architecture-vec-5", &[0, 0, 0x80, 0, 0x40])
        .unwrap();
    t.set_reserve_map(Vec::new());
    // Back through a blob, so everything in it is "platform".
    Tree::from_fdt(&t.to_fdt()).unwrap()
}

/// Every node of `partial` is in `live` with the same properties (for
/// `/chosen`: a superset with the partial values), and every live node not
/// in `partial` is in `extra`.
fn assert_merged(live: &Tree, partial: &Tree, extra: &[&str], ctx: &str) {
    for pn in partial.nodes() {
        let path = partial.path(pn).unwrap();
        let ln = live
            .find(&path)
            .unwrap_or_else(|| panic!("{ctx}: {path} missing"));
        if path == "/chosen" {
            for (k, v) in partial.props(pn) {
                assert_eq!(live.prop(ln, k), Some(v), "{ctx}: /chosen {k}");
            }
        } else {
            let lp: BTreeSet<_> = live
                .props(ln)
                .filter(|(k, _)| !k.starts_with("linux,rtas") && !k.starts_with("papr-fw,"))
                .collect();
            let pp: BTreeSet<_> = partial.props(pn).collect();
            assert_eq!(lp, pp, "{ctx}: properties of {path}");
        }
        assert!(live.phandle(ln).is_some());
    }
    for ln in live.nodes() {
        let path = live.path(ln).unwrap();
        if partial.find(&path).is_none() {
            assert!(
                extra.iter().any(|e| path.starts_with(e)),
                "{ctx}: {path} should have been removed"
            );
        }
    }
}

#[test]
fn merge_identical_tree_changes_nothing() {
    for name in ["qemu-7.2-default", "qemu-10.0-large"] {
        let mut t = tree(name);
        let before = t.to_fdt();
        let stats = t.merge(&tree(name)).unwrap();
        assert_eq!(stats, super::MergeStats::default(), "{name}");
        assert_eq!(t.to_fdt(), before, "{name}");
    }
}

#[test]
fn merge_cas_tree_keeps_chosen_and_client_additions() {
    let mut live = tree("qemu-7.2-kernel");
    let root = live.root();
    let chosen = live.find("/chosen").unwrap();
    let chosen_ph = live.phandle(chosen).unwrap();
    let rtas = live.find("/rtas").unwrap();
    // What the firmware and a client did before CAS.
    let aliases = live.add_node(root, "aliases").unwrap();
    live.set_prop_str(aliases, "disk", "/vdevice/v-scsi")
        .unwrap();
    live.set_prop_u32(rtas, "linux,rtas-base", 0x1000).unwrap();
    live.set_prop_u32(rtas, "papr-fw,rtas-blob", 1).unwrap();
    let pci = live.find("/pci@800000020000000").unwrap();
    let fw_disk = live.add_node(pci, "disk@0").unwrap();

    let mut partial = cas_tree("qemu-7.2-kernel");
    // CAS also drops a device and a platform property, and adds a node.
    let pcas = partial.find("/vdevice/nvram").unwrap();
    partial.remove_node(pcas).unwrap();
    let pcpus = partial.find("/cpus").unwrap();
    let first = partial.next_prop(pcpus, "").unwrap().to_string();
    partial.remove_prop(pcpus, &first).unwrap();
    let drm = partial
        .add_node(partial.root(), "ibm,dynamic-reconfiguration-memory")
        .unwrap();
    partial
        .set_prop_u32(drm, "ibm,lmb-size", 0x1000_0000)
        .unwrap();
    let partial = Tree::from_fdt(&partial.to_fdt()).unwrap();

    let stats = live.merge(&partial).unwrap();
    assert_eq!(stats.nodes_added, 1);
    assert_eq!(stats.nodes_removed, 1);
    assert_eq!(stats.props_removed, 1);
    assert_eq!(stats.props_set, 2 + 1); // rng-seed, arch-vec-5, lmb-size
    assert_merged(
        &live,
        &partial,
        &["/aliases", "/pci@800000020000000/disk@0"],
        "cas",
    );

    // Handles and phandles of matched nodes survive.
    assert_eq!(live.find("/chosen"), Some(chosen));
    assert_eq!(live.phandle(chosen), Some(chosen_ph));
    assert!(live.contains(fw_disk) && live.contains(aliases));
    assert_eq!(live.find("disk"), live.find("/vdevice/v-scsi"));
    // /chosen keeps what QEMU left out at CAS, takes what it sent.
    assert_eq!(
        live.prop_str(chosen, "bootargs"),
        Some("console=hvc0,root=/dev/sda")
    );
    assert!(live.prop(chosen, "linux,initrd-start").is_some());
    assert_eq!(live.prop(chosen, "rng-seed"), Some(&[0x5a; 32][..]));
    // /rtas: the client's and the firmware's properties stay.
    assert_eq!(live.prop_u32(rtas, "linux,rtas-base"), Some(0x1000));
    assert_eq!(live.prop_u32(rtas, "papr-fw,rtas-blob"), Some(1));
    // The reserve map is the live one.
    assert_eq!(live.reserve_map().len(), 2);
    assert_eq!(live.find("/vdevice/nvram"), None);
}

#[test]
fn merge_switches_interrupt_controller() {
    // XICS at reset, XIVE after CAS: the old node goes, the new one takes
    // QEMU's phandle 0x1111 that the PHB interrupt-maps reference.
    let mut live = tree("qemu-7.2-smp4");
    let old = live.by_phandle(0x1111).unwrap();
    assert_eq!(live.name(old), Some("interrupt-controller"));
    let partial = cas_tree("qemu-7.2-xive");
    live.merge(&partial).unwrap();
    assert!(!live.contains(old));
    let new = live.by_phandle(0x1111).unwrap();
    assert!(live.name(new).unwrap().starts_with("interrupt-controller@"));
    assert_eq!(live.prop_str(new, "compatible"), Some("ibm,power-ivpe"));
    assert_merged(&live, &partial, &[], "xive");
}

#[test]
fn merge_between_configurations_and_versions() {
    let pairs = [
        ("qemu-7.2-default", "qemu-7.2-large"),
        ("qemu-7.2-large", "qemu-7.2-default"),
        ("qemu-7.2-default", "qemu-10.0-devices"),
        ("qemu-10.0-phb2", "qemu-10.0-ddw-off"),
        ("qemu-7.2-power8", "qemu-10.0-power10"),
    ];
    for (a, b) in pairs {
        let mut live = tree(a);
        let partial = cas_tree(b);
        live.merge(&partial).unwrap();
        assert_merged(&live, &partial, &[], &format!("{a} <- {b}"));
        // Still a valid tree that flattens and unflattens.
        let flat = live.to_fdt();
        assert_eq!(Tree::from_fdt(&flat).unwrap().to_fdt(), flat);
        assert!(DmaModel::from_tree(&live).warnings.is_empty(), "{a} <- {b}");
    }
}

#[test]
fn merge_renumbers_colliding_firmware_phandle() {
    let mut live = tree("qemu-7.2-default");
    let root = live.root();
    let fw = live.add_node(root, "firmware-node").unwrap();
    let taken = live.phandle(fw).unwrap();
    // The platform now brings a node with that phandle.
    let mut partial = cas_tree("qemu-7.2-default");
    let p = partial
        .add_node(partial.root(), "new-platform-node")
        .unwrap();
    partial.set_prop_u32(p, "phandle", taken).unwrap();
    let partial = Tree::from_fdt(&partial.to_fdt()).unwrap();
    let stats = live.merge(&partial).unwrap();
    assert_eq!(stats.phandles_renumbered, 1);
    let newp = live.find("/new-platform-node").unwrap();
    assert_eq!(live.by_phandle(taken), Some(newp));
    assert!(live.contains(fw));
    assert_ne!(live.phandle(fw), Some(taken));
    assert_eq!(live.by_phandle(live.phandle(fw).unwrap()), Some(fw));
    // A firmware phandle *property* follows the renumbering.
    let mut live2 = tree("qemu-7.2-default");
    let fw2 = live2.add_node(live2.root(), "fw2").unwrap();
    live2.set_prop_u32(fw2, "phandle", taken).unwrap();
    live2.merge(&partial).unwrap();
    let ph2 = live2.phandle(fw2).unwrap();
    assert_ne!(ph2, taken);
    assert_eq!(live2.prop_u32(fw2, "phandle"), Some(ph2));
}

#[test]
fn merge_refuses_oversized_result_untouched() {
    let mut live = Tree::new();
    let mut big = Tree::new();
    let r = big.root();
    for i in 0..9 {
        big.set_prop(r, &format!("p{i}"), &vec![0; super::tree::MAX_PROP_LEN])
            .unwrap_or(());
    }
    let r2 = live.root();
    for i in 0..4 {
        live.set_prop(r2, &format!("q{i}"), &vec![0; super::tree::MAX_PROP_LEN])
            .unwrap();
    }
    let before = live.to_fdt();
    assert_eq!(live.merge(&big), Err(TreeError::TreeFull));
    assert_eq!(live.to_fdt(), before);
}

// --- DMA windows ---------------------------------------------------------------

#[test]
fn dma_model_of_qemu_default_tree() {
    let t = tree("qemu-7.2-default");
    let m = DmaModel::from_tree(&t);
    assert_eq!(m.warnings, []);
    let phb = m.by_liobn(0x8000_0000).unwrap();
    assert_eq!(phb.kind, DmaNodeKind::Phb);
    assert_eq!(phb.path, "/pci@800000020000000");
    assert_eq!(
        phb.window,
        Some(DmaWindow {
            liobn: 0x8000_0000,
            bus_addr: 0,
            size: 0x4000_0000
        })
    );
    assert_eq!(phb.window_prop, Some(WindowProp::DmaWindow));
    assert_eq!(phb.buid, Some(0x0800_0000_2000_0000));
    let ddw = phb.ddw.unwrap();
    assert_eq!(
        (ddw.query, ddw.create, ddw.remove),
        (0x2026, 0x2027, 0x2028)
    );
    assert_eq!(
        ddw.ext,
        DdwExtensions {
            count: 2,
            reset: Some(0x2029),
            query_out_64: true,
            lam: None
        }
    );
    let llan = m.by_liobn(0x7100_0002).unwrap();
    assert_eq!(llan.kind, DmaNodeKind::Vio);
    assert_eq!(llan.path, "/vdevice/l-lan@71000002");
    assert_eq!(llan.window_prop, Some(WindowProp::MyDmaWindow));
    assert_eq!(llan.window.unwrap().size, 0x1000_0000);
    assert_eq!(llan.ddw, None);
    assert_eq!(m.nodes.len(), 3); // PHB, l-lan, v-scsi
                                  // RTAS tokens.
    assert_eq!(dma::rtas_token(&t, "ibm,reset-pe-dma-window"), Some(0x2029));
    let tokens = dma::rtas_tokens(&t);
    assert!(tokens
        .iter()
        .any(|k| k.name == "ibm,read-pci-config" && k.token == 0x2016));
    assert!(
        tokens.iter().all(|k| k.token >= 0x2000 && k.token < 0x2100),
        "{tokens:?}"
    );
    assert!(!tokens.iter().any(|k| k.name == "rtas-size"));
}

#[test]
fn dma_model_of_all_qemu_trees() {
    for (name, _) in GOLDEN {
        let t = tree(name);
        let m = DmaModel::from_tree(&t);
        assert_eq!(m.warnings, [], "{name}");
        let phbs: Vec<_> = m
            .nodes
            .iter()
            .filter(|d| d.kind == DmaNodeKind::Phb)
            .collect();
        assert!(!phbs.is_empty(), "{name}");
        for phb in &phbs {
            // QEMU: BUID 0x800000020000000 + index, LIOBN 0x80000000 | index << 8.
            let index = phb.buid.unwrap() - 0x0800_0000_2000_0000;
            assert!(index < 256, "{name}");
            let w = phb.window.unwrap();
            assert_eq!(w.liobn, 0x8000_0000 | ((index as u32) << 8), "{name}");
            assert_eq!((w.bus_addr, w.size), (0, 0x4000_0000), "{name}");
            assert_eq!(phb.ddw.is_some(), !name.contains("ddw-off"), "{name}");
        }
        let want_phbs = match *name {
            n if n.contains("large") => 4,
            n if n.contains("phb2") => 2,
            _ => 1,
        };
        assert_eq!(phbs.len(), want_phbs, "{name}");
        for vio in m.nodes.iter().filter(|d| d.kind == DmaNodeKind::Vio) {
            // VIO LIOBN = reg.
            let reg = t.reg(vio.node).unwrap()[0].addr;
            assert_eq!(u64::from(vio.window.unwrap().liobn), reg, "{name}");
        }
    }
}

/// A small tree with one PHB-like node whose DMA properties the test sets.
fn hand_tree() -> (Tree, NodeId) {
    let mut t = Tree::new();
    let root = t.root();
    t.set_prop_u32(root, "#address-cells", 2).unwrap();
    t.set_prop_u32(root, "#size-cells", 2).unwrap();
    let rtas = t.add_node(root, "rtas").unwrap();
    for (n, v) in [
        ("ibm,query-pe-dma-window", 0x10),
        ("ibm,create-pe-dma-window", 0x11),
        ("ibm,remove-pe-dma-window", 0x12),
        ("ibm,reset-pe-dma-window", 0x13),
        ("ibm,read-pci-config", 0x14),
    ] {
        t.set_prop_u32(rtas, n, v).unwrap();
    }
    let phb = t.add_node(root, "pci@1000").unwrap();
    t.set_prop_str(phb, "device_type", "pci").unwrap();
    t.set_prop_u32(phb, "#address-cells", 3).unwrap();
    t.set_prop_u32(phb, "#size-cells", 2).unwrap();
    t.set_prop_cells(phb, "reg", &[0, 0x1000, 0, 0x1000])
        .unwrap();
    (t, phb)
}

#[test]
fn dma_windows_with_other_cell_counts() {
    let (mut t, phb) = hand_tree();
    // 1 + 1 cells.
    t.set_prop_u32(phb, "ibm,#dma-address-cells", 1).unwrap();
    t.set_prop_u32(phb, "ibm,#dma-size-cells", 1).unwrap();
    t.set_prop_cells(phb, "ibm,dma-window", &[7, 0x1000, 0x10_0000])
        .unwrap();
    let w = dma::decode_window(&t, phb, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    assert_eq!((w.liobn, w.bus_addr, w.size), (7, 0x1000, 0x10_0000));
    // 0 address cells: window at 0.
    t.set_prop_u32(phb, "ibm,#dma-address-cells", 0).unwrap();
    t.set_prop_cells(phb, "ibm,dma-window", &[7, 0x10_0000])
        .unwrap();
    let w = dma::decode_window(&t, phb, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    assert_eq!((w.bus_addr, w.size), (0, 0x10_0000));
    // 4 address cells with zero high cells.
    t.set_prop_u32(phb, "ibm,#dma-address-cells", 4).unwrap();
    t.set_prop_cells(phb, "ibm,dma-window", &[7, 0, 0, 1, 2, 0x10_0000])
        .unwrap();
    let w = dma::decode_window(&t, phb, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    assert_eq!((w.bus_addr, w.size), (0x1_0000_0002, 0x10_0000));
    // ... but a value beyond 64 bits is an error.
    t.set_prop_cells(phb, "ibm,dma-window", &[7, 0, 9, 1, 2, 0x10_0000])
        .unwrap();
    assert!(matches!(
        dma::decode_window(&t, phb, WindowProp::DmaWindow),
        Err(dma::DmaError::TooWide { .. })
    ));

    // Linux's fallbacks: no ibm,#dma-*: the node's own #address-cells (3 on
    // a PCI bus node!) and the parent's #size-cells (2).
    t.remove_prop(phb, "ibm,#dma-address-cells").unwrap();
    t.remove_prop(phb, "ibm,#dma-size-cells").unwrap();
    let cells = dma::dma_cells(&t, phb).unwrap();
    assert_eq!((cells.address, cells.size, cells.explicit), (3, 2, false));
    t.set_prop_cells(phb, "ibm,dma-window", &[7, 0, 0, 0x2000, 0, 0x4000_0000])
        .unwrap();
    let m = DmaModel::from_tree(&t);
    assert_eq!(m.nodes[0].window.unwrap().bus_addr, 0x2000);
    assert!(
        matches!(m.warnings[..], [DmaWarning::ImplicitCells { .. }]),
        "{:?}",
        m.warnings
    );
    // Without #address-cells anywhere: Linux's default of 1 and 1.
    let mut t2 = Tree::new();
    let n = t2.add_node(t2.root(), "dev").unwrap();
    t2.set_prop_cells(n, "ibm,dma-window", &[1, 2, 3]).unwrap();
    let w = dma::decode_window(&t2, n, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    assert_eq!((w.liobn, w.bus_addr, w.size), (1, 2, 3));
    // Inherited from an ancestor further up.
    t2.set_prop_u32(t2.root(), "#size-cells", 2).unwrap();
    t2.set_prop_cells(n, "ibm,dma-window", &[1, 2, 0, 3])
        .unwrap();
    let w = dma::decode_window(&t2, n, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    assert_eq!(w.size, 3);
}

#[test]
fn dma_bad_properties_are_warnings() {
    let (mut t, phb) = hand_tree();
    // Absurd cell count.
    t.set_prop_u32(phb, "ibm,#dma-address-cells", 0xffff_ffff)
        .unwrap();
    t.set_prop_u32(phb, "ibm,#dma-size-cells", 2).unwrap();
    t.set_prop_cells(phb, "ibm,dma-window", &[1, 0, 0, 0, 0x1000])
        .unwrap();
    let m = DmaModel::from_tree(&t);
    assert!(m.warnings.iter().any(|w| matches!(
        w,
        DmaWarning::BadProperty {
            error: dma::DmaError::BadCells { .. },
            ..
        }
    )));
    // Truncated window.
    t.set_prop_u32(phb, "ibm,#dma-address-cells", 2).unwrap();
    t.set_prop_cells(phb, "ibm,dma-window", &[1, 0, 0, 0])
        .unwrap();
    assert!(matches!(
        dma::decode_window(&t, phb, WindowProp::DmaWindow),
        Err(dma::DmaError::Truncated {
            len: 16,
            need: 20,
            ..
        })
    ));
    // Malformed cell-count property.
    t.set_prop(phb, "ibm,#dma-size-cells", &[0, 2]).unwrap();
    assert!(matches!(
        dma::dma_cells(&t, phb),
        Err(dma::DmaError::BadCells { .. })
    ));
    // Truncated ddw-applicable, extensions counting more than they hold.
    let (mut t, phb) = hand_tree();
    dma::set_dma_window(
        &mut t,
        phb,
        WindowProp::DmaWindow,
        &DmaWindow {
            liobn: 1,
            bus_addr: 0,
            size: 1 << 30,
        },
    )
    .unwrap();
    t.set_prop_cells(phb, "ibm,ddw-applicable", &[0x10, 0x11])
        .unwrap();
    let m = DmaModel::from_tree(&t);
    assert!(
        matches!(
            m.warnings[..],
            [DmaWarning::BadProperty {
                prop: "ibm,ddw-applicable",
                ..
            }]
        ),
        "{:?}",
        m.warnings
    );
    t.set_prop_cells(phb, "ibm,ddw-applicable", &[0x10, 0x11, 0x12])
        .unwrap();
    t.set_prop_cells(phb, "ibm,ddw-extensions", &[3, 0x13])
        .unwrap();
    let m = DmaModel::from_tree(&t);
    assert_eq!(
        m.warnings,
        [DmaWarning::ExtensionCount {
            path: "/pci@1000".into(),
            count: 3,
            present: 1
        }]
    );
    let ext = m.nodes[0].ddw.unwrap().ext;
    assert_eq!(
        (ext.reset, ext.query_out_64, ext.lam),
        (Some(0x13), false, None)
    );
}

#[test]
fn dma_inconsistencies_are_reported() {
    let (mut t, phb) = hand_tree();
    let win = DmaWindow {
        liobn: 0x8000_0000,
        bus_addr: 0,
        size: 0x3000_0000, // not a power of two
    };
    dma::set_dma_window(&mut t, phb, WindowProp::DmaWindow, &win).unwrap();
    dma::set_ddw_applicable(&mut t, phb, 0x10, 0x99, 0x12).unwrap(); // create: wrong
    dma::set_ddw_extensions(
        &mut t,
        phb,
        &DdwExtensions {
            count: 0,
            reset: Some(0x13),
            query_out_64: true,
            lam: None,
        },
    )
    .unwrap();
    // A kernel-recorded DDW overlapping the default window.
    let mut info = Vec::new();
    info.extend_from_slice(&0x8000_0001u32.to_be_bytes());
    info.extend_from_slice(&0x1000_0000u64.to_be_bytes());
    info.extend_from_slice(&12u32.to_be_bytes());
    info.extend_from_slice(&30u32.to_be_bytes());
    t.set_prop(phb, "linux,direct64-ddr-window-info", &info)
        .unwrap();
    // A device below the PHB with its own window reusing the PHB's LIOBN.
    let dev = t.add_node(phb, "ethernet@1").unwrap();
    dma::set_dma_window(
        &mut t,
        dev,
        WindowProp::DmaWindow,
        &DmaWindow {
            liobn: 0x8000_0000,
            bus_addr: 0x8000_0000,
            size: 0x1000,
        },
    )
    .unwrap();
    // A wrapping window elsewhere.
    let other = t.add_node(t.root(), "other").unwrap();
    dma::set_dma_window(
        &mut t,
        other,
        WindowProp::MyDmaWindow,
        &DmaWindow {
            liobn: 5,
            bus_addr: u64::MAX - 0xfff,
            size: 0x2000,
        },
    )
    .unwrap();
    // /rtas loses reset and read-pci-config.
    let rtas = t.find("/rtas").unwrap();
    t.remove_prop(rtas, "ibm,reset-pe-dma-window").unwrap();
    t.remove_prop(rtas, "ibm,read-pci-config").unwrap();

    let m = DmaModel::from_tree(&t);
    let text: Vec<String> = m.warnings.iter().map(|w| w.to_string()).collect();
    let has = |f: &dyn Fn(&DmaWarning) -> bool| m.warnings.iter().any(f);
    assert!(
        has(
            &|w| matches!(w, DmaWarning::SizeNotPowerOfTwo { window, .. } if window.size == 0x3000_0000)
        ),
        "{text:#?}"
    );
    assert!(
        has(&|w| matches!(
            w,
            DmaWarning::TokenMismatch {
                call: "ibm,create-pe-dma-window",
                token: 0x99,
                rtas: 0x11,
                ..
            }
        )),
        "{text:#?}"
    );
    assert!(
        has(&|w| matches!(
            w,
            DmaWarning::UndefinedToken {
                call: "ibm,reset-pe-dma-window",
                token: 0x13,
                ..
            }
        )),
        "{text:#?}"
    );
    assert!(
        has(&|w| matches!(w, DmaWarning::NoReadPciConfig { .. })),
        "{text:#?}"
    );
    assert!(
        has(
            &|w| matches!(w, DmaWarning::Overlap { a_window, b_window, .. } if a_window.liobn == 0x8000_0000 && b_window.liobn == 0x8000_0001)
        ),
        "{text:#?}"
    );
    assert!(
        has(&|w| matches!(
            w,
            DmaWarning::DuplicateLiobn {
                liobn: 0x8000_0000,
                ..
            }
        )),
        "{text:#?}"
    );
    assert!(
        has(&|w| matches!(w, DmaWarning::WindowWraps { .. })),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|s| s.contains(
            "/pci@1000: DDW token 0x99 for ibm,create-pe-dma-window, but /rtas has 0x11"
        )),
        "{text:#?}"
    );
    // The dynamic window is part of the model.
    let phb_dn = m.node(phb).unwrap();
    assert_eq!(
        phb_dn.dynamic,
        [DmaWindow {
            liobn: 0x8000_0001,
            bus_addr: 0x1000_0000,
            size: 1 << 30
        }]
    );
    assert_eq!(m.node(dev).unwrap().kind, DmaNodeKind::Other);
    assert_eq!(m.node(other).unwrap().kind, DmaNodeKind::Other);
}

#[test]
fn dma_writers_round_trip() {
    let (mut t, phb) = hand_tree();
    let big = DmaWindow {
        liobn: 0x8000_0001,
        bus_addr: 0x0800_0000_0000_0000,
        size: 1 << 40, // ≥ 4 GiB: needs the 64-bit size QEMU cannot write
    };
    dma::set_dma_window(&mut t, phb, WindowProp::DmaWindow, &big).unwrap();
    assert_eq!(t.prop_u32(phb, "ibm,#dma-address-cells"), Some(2));
    assert_eq!(t.prop_u32(phb, "ibm,#dma-size-cells"), Some(2));
    assert_eq!(
        t.prop_cells(phb, "ibm,dma-window")
            .unwrap()
            .collect::<Vec<_>>(),
        [0x8000_0001, 0x0800_0000, 0, 0x100, 0]
    );
    assert_eq!(
        dma::decode_window(&t, phb, WindowProp::DmaWindow),
        Ok(Some(big))
    );
    for ext in [
        DdwExtensions::default(),
        DdwExtensions {
            count: 1,
            reset: Some(0x13),
            query_out_64: false,
            lam: None,
        },
        DdwExtensions {
            count: 2,
            reset: Some(0x13),
            query_out_64: true,
            lam: None,
        },
        DdwExtensions {
            count: 3,
            reset: Some(0x13),
            query_out_64: true,
            lam: Some(1),
        },
    ] {
        dma::set_ddw_applicable(&mut t, phb, 0x10, 0x11, 0x12).unwrap();
        dma::set_ddw_extensions(&mut t, phb, &ext).unwrap();
        assert_eq!(dma::decode_ddw(&t, phb).unwrap().unwrap().ext, ext);
    }
    // QEMU's exact encoding.
    let qemu = DdwExtensions {
        count: 2,
        reset: Some(0x2029),
        query_out_64: true,
        lam: None,
    };
    assert_eq!(qemu.encode(), [2, 0x2029, 1]);
    // No reset token before a later extension: RTAS_UNKNOWN_SERVICE.
    let no_reset = DdwExtensions {
        count: 3,
        reset: None,
        query_out_64: false,
        lam: Some(1),
    };
    assert_eq!(no_reset.encode(), [3, 0xffff_ffff, 0, 1]);
    dma::set_ddw_extensions(&mut t, phb, &no_reset).unwrap();
    assert_eq!(dma::decode_ddw(&t, phb).unwrap().unwrap().ext, no_reset);
    // A QEMU tree rewritten by the writer: same window, no warnings, and
    // the property bytes are QEMU's when the size fits in 32 bits.
    let mut q = tree("qemu-10.0-default");
    let pci = q.find("/pci@800000020000000").unwrap();
    let before = q.prop(pci, "ibm,dma-window").unwrap().to_vec();
    let w = dma::decode_window(&q, pci, WindowProp::DmaWindow)
        .unwrap()
        .unwrap();
    dma::set_dma_window(&mut q, pci, WindowProp::DmaWindow, &w).unwrap();
    assert_eq!(q.prop(pci, "ibm,dma-window").unwrap(), &before[..]);
    let stale = q.add_node(pci, "x").unwrap();
    q.remove_node(stale).unwrap();
    assert_eq!(
        dma::decode_window(&q, stale, WindowProp::DmaWindow),
        Err(dma::DmaError::StaleNode)
    );
    assert_eq!(
        dma::set_dma_window(&mut q, stale, WindowProp::DmaWindow, &w),
        Err(TreeError::StaleNode)
    );
}

// --- bad input ---------------------------------------------------------------

/// Builds blobs token by token, with header fields the test can spoil.
struct Raw {
    structs: Vec<u8>,
    strings: Vec<u8>,
    rsv: Vec<(u64, u64)>,
    rsv_terminated: bool,
}

impl Raw {
    fn new() -> Self {
        Raw {
            structs: Vec::new(),
            strings: Vec::new(),
            rsv: Vec::new(),
            rsv_terminated: true,
        }
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.structs.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn begin(&mut self, name: &[u8]) -> &mut Self {
        self.u32(1);
        self.structs.extend_from_slice(name);
        self.structs.push(0);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn end(&mut self) -> &mut Self {
        self.u32(2)
    }
    fn fdt_end(&mut self) -> &mut Self {
        self.u32(9)
    }
    fn string(&mut self, name: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }
    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = self.string(name);
        self.prop_raw(value.len() as u32, off, value)
    }
    fn prop_raw(&mut self, len: u32, nameoff: u32, value: &[u8]) -> &mut Self {
        self.u32(3).u32(len).u32(nameoff);
        self.structs.extend_from_slice(value);
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
        self
    }
    fn build(&self) -> Vec<u8> {
        let rsv_len = (self.rsv.len() + usize::from(self.rsv_terminated)) * 16;
        let off_struct = 40 + rsv_len;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut b = Vec::new();
        for f in [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            40,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            b.extend_from_slice(&f.to_be_bytes());
        }
        for (a, s) in &self.rsv {
            b.extend_from_slice(&a.to_be_bytes());
            b.extend_from_slice(&s.to_be_bytes());
        }
        if self.rsv_terminated {
            b.extend_from_slice(&[0; 16]);
        }
        b.extend_from_slice(&self.structs);
        b.extend_from_slice(&self.strings);
        b
    }
}

fn minimal() -> Raw {
    let mut r = Raw::new();
    r.begin(b"")
        .prop("compatible", b"x\0")
        .begin(b"chosen")
        .end()
        .end()
        .fdt_end();
    r
}

fn set_field(b: &mut [u8], index: usize, v: u32) {
    b[index * 4..index * 4 + 4].copy_from_slice(&v.to_be_bytes());
}

fn err(b: &[u8]) -> FdtError {
    let e = Tree::from_fdt(b).expect_err("blob should be refused");
    // Every error has a description.
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn minimal_blob_is_accepted() {
    let b = minimal().build();
    let t = Tree::from_fdt(&b).unwrap();
    assert_eq!(t.node_count(), 2);
    assert_eq!(t.to_fdt(), b);
}

#[test]
fn bad_headers() {
    use super::fdt::Block;
    let good = minimal().build();
    assert_eq!(err(&[]), FdtError::TooShort { len: 0 });
    assert_eq!(err(&good[..3]), FdtError::TooShort { len: 3 });
    assert_eq!(err(&good[..20]), FdtError::TooShort { len: 20 });
    let mut b = good.clone();
    b[0] = 0;
    assert_eq!(err(&b), FdtError::BadMagic(0x000d_feed));
    assert_eq!(
        err(&b).to_string(),
        "bad magic 0x000dfeed (expected 0xd00dfeed)"
    );
    assert_eq!(
        err(&good[..good.len() - 1]),
        FdtError::Truncated {
            totalsize: good.len() as u32,
            len: good.len() - 1
        }
    );
    assert!(err(&good[..good.len() - 1])
        .to_string()
        .starts_with("truncated: totalsize 0x"));
    let spoil = |i: usize, v: u32| {
        let mut b = good.clone();
        set_field(&mut b, i, v);
        Tree::from_fdt(&b).expect_err("spoilt header accepted")
    };
    assert_eq!(spoil(1, 20), FdtError::TotalsizeTooSmall(20));
    assert!(matches!(
        spoil(5, 15),
        FdtError::UnsupportedVersion { version: 15, .. }
    ));
    assert!(matches!(
        spoil(6, 18),
        FdtError::UnsupportedVersion {
            last_comp_version: 18,
            ..
        }
    ));
    // Structure block offset/size out of range, overflowing, over the header.
    assert!(matches!(
        spoil(2, 0x10_0000),
        FdtError::BlockOutOfRange {
            block: Block::Struct,
            ..
        }
    ));
    assert_eq!(
        spoil(2, 0x10_0000).to_string().split(" (").next(),
        Some("structure block offset out of range")
    );
    assert!(matches!(
        spoil(9, u32::MAX),
        FdtError::BlockOutOfRange {
            block: Block::Struct,
            ..
        }
    ));
    assert!(matches!(
        spoil(3, u32::MAX),
        FdtError::BlockOutOfRange {
            block: Block::Strings,
            ..
        }
    ));
    assert!(matches!(
        spoil(8, u32::MAX),
        FdtError::BlockOutOfRange {
            block: Block::Strings,
            ..
        }
    ));
    assert!(matches!(
        spoil(2, 8),
        FdtError::BlockOverlapsHeader {
            block: Block::Struct,
            ..
        }
    ));
    assert!(matches!(
        spoil(4, 0),
        FdtError::BlockOverlapsHeader {
            block: Block::ReserveMap,
            ..
        }
    ));
    assert!(matches!(
        spoil(2, 58),
        FdtError::Misaligned {
            block: Block::Struct,
            ..
        }
    ));
    assert!(matches!(
        spoil(4, 44),
        FdtError::Misaligned {
            block: Block::ReserveMap,
            ..
        }
    ));
    assert!(matches!(
        spoil(4, 0xffff_fff8),
        FdtError::BlockOutOfRange {
            block: Block::ReserveMap,
            ..
        }
    ));
    // Strings inside the structure block.
    let off_struct = u32::from_be_bytes(good[8..12].try_into().unwrap());
    assert!(matches!(
        spoil(3, off_struct + 4),
        FdtError::BlocksOverlap { .. }
    ));
    // Reserve map inside the structure block.
    assert!(matches!(
        spoil(4, off_struct),
        FdtError::BlocksOverlap {
            a: Block::ReserveMap,
            ..
        }
    ));
}

#[test]
fn bad_reserve_map() {
    let mut r = minimal();
    r.rsv = vec![(0x1000, 0x1000), (0x4000, 0x10)];
    let t = Tree::from_fdt(&r.build()).unwrap();
    assert_eq!(t.reserve_map().len(), 2);
    // Without its terminator the map runs into the structure block.
    r.rsv_terminated = false;
    let b = r.build();
    assert!(matches!(
        err(&b),
        FdtError::BadToken { .. } | FdtError::UnterminatedReserveMap
    ));
    // Unterminated at the end of the blob.
    let mut b = minimal().build();
    let total = b.len() as u32;
    b.extend_from_slice(&[0x11; 24]);
    set_field(&mut b, 1, total + 24);
    set_field(&mut b, 4, total.next_multiple_of(8));
    assert_eq!(err(&b), FdtError::UnterminatedReserveMap);
}

/// A bad-input case: what it is, the blob, and a check of the error.
type Case = (&'static str, Raw, fn(&FdtError) -> bool);

#[test]
fn bad_structure_blocks() {
    // Each case: a spoilt structure block and the error it must give.
    let cases: Vec<Case> = vec![
        ("empty", Raw::new(), |e| {
            matches!(e, FdtError::TruncatedToken { .. })
        }),
        (
            "only end",
            {
                let mut r = Raw::new();
                r.fdt_end();
                r
            },
            |e| *e == FdtError::NoRoot,
        ),
        (
            "bad token",
            {
                let mut r = Raw::new();
                r.begin(b"").u32(7);
                r
            },
            |e| matches!(e, FdtError::BadToken { token: 7, .. }),
        ),
        (
            "no FDT_END",
            {
                let mut r = Raw::new();
                r.begin(b"").end();
                r
            },
            |e| matches!(e, FdtError::TruncatedToken { .. }),
        ),
        (
            "NOP flood",
            {
                let mut r = Raw::new();
                r.begin(b"").end();
                for _ in 0..1000 {
                    r.u32(4);
                }
                r
            },
            |e| matches!(e, FdtError::TruncatedToken { .. }),
        ),
        (
            "end inside node",
            {
                let mut r = Raw::new();
                r.begin(b"").begin(b"a").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::UnexpectedEnd { depth: 1, .. }),
        ),
        (
            "extra end node",
            {
                let mut r = Raw::new();
                r.begin(b"").end().end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::UnexpectedEndNode { .. }),
        ),
        (
            "prop before root",
            {
                let mut r = Raw::new();
                r.prop("a", b"").begin(b"").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::PropOutsideNode { .. }),
        ),
        (
            "second root",
            {
                let mut r = Raw::new();
                r.begin(b"").end().begin(b"").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::DataAfterRoot { .. }),
        ),
        (
            "named root",
            {
                let mut r = Raw::new();
                r.begin(b"root").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::BadNodeName { .. }),
        ),
        (
            "slash in name",
            {
                let mut r = Raw::new();
                r.begin(b"").begin(b"a/b").end().end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::BadNodeName { .. }),
        ),
        (
            "empty child name",
            {
                let mut r = Raw::new();
                r.begin(b"").begin(b"").end().end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::BadNodeName { .. }),
        ),
        (
            "non-ASCII name",
            {
                let mut r = Raw::new();
                r.begin(b"")
                    .begin("n\u{e9}".as_bytes())
                    .end()
                    .end()
                    .fdt_end();
                r
            },
            |e| matches!(e, FdtError::BadNodeName { .. }),
        ),
        (
            "name without NUL",
            {
                let mut r = Raw::new();
                r.begin(b"");
                r.u32(1);
                r.structs.extend_from_slice(b"abcdefgh");
                r
            },
            |e| matches!(e, FdtError::UnterminatedNodeName { .. }),
        ),
        (
            "name too long",
            {
                let mut r = Raw::new();
                r.begin(b"").begin(&[b'n'; 300]).end().end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::NameTooLong { .. }),
        ),
        (
            "prop name offset outside strings",
            {
                let mut r = Raw::new();
                r.begin(b"").prop_raw(0, 0x1000, b"").end().fdt_end();
                r
            },
            |e| *e == FdtError::PropNameOutOfRange { nameoff: 0x1000 },
        ),
        (
            "prop name offset at end of strings",
            {
                let mut r = Raw::new();
                let o = r.string("x");
                r.begin(b"").prop_raw(0, o + 2, b"").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::PropNameOutOfRange { .. }),
        ),
        (
            "prop name without NUL",
            {
                let mut r = Raw::new();
                r.strings.extend_from_slice(b"abc");
                r.begin(b"").prop_raw(0, 0, b"").end().fdt_end();
                r
            },
            |e| *e == FdtError::UnterminatedPropName { nameoff: 0 },
        ),
        (
            "empty prop name",
            {
                let mut r = Raw::new();
                r.strings.push(0);
                r.begin(b"").prop_raw(0, 0, b"").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::BadPropName { .. }),
        ),
        (
            "prop value past the block",
            {
                let mut r = Raw::new();
                let o = r.string("x");
                r.begin(b"").prop_raw(0xffff_fff0, o, b"").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::PropValueOutOfRange { .. }),
        ),
        (
            "prop header truncated",
            {
                let mut r = Raw::new();
                r.begin(b"").u32(3).u32(0);
                r
            },
            |e| matches!(e, FdtError::TruncatedToken { .. }),
        ),
        (
            "duplicate node",
            {
                let mut r = Raw::new();
                r.begin(b"")
                    .begin(b"a@1")
                    .end()
                    .begin(b"a@1")
                    .end()
                    .end()
                    .fdt_end();
                r
            },
            |e| matches!(e, FdtError::DuplicateNode { .. }),
        ),
        (
            "duplicate prop",
            {
                let mut r = Raw::new();
                r.begin(b"").prop("p", b"1").prop("p", b"2").end().fdt_end();
                r
            },
            |e| matches!(e, FdtError::DuplicateProp { .. }),
        ),
        (
            "duplicate phandle",
            {
                let mut r = Raw::new();
                r.begin(b"")
                    .begin(b"a")
                    .prop("phandle", &[0, 0, 0x11, 0x11])
                    .end()
                    .begin(b"b")
                    .prop("linux,phandle", &[0, 0, 0x11, 0x11])
                    .end()
                    .end()
                    .fdt_end();
                r
            },
            |e| {
                matches!(
                    e,
                    FdtError::DuplicatePhandle {
                        phandle: 0x1111,
                        ..
                    }
                )
            },
        ),
        (
            "too deep",
            {
                let mut r = Raw::new();
                r.begin(b"");
                for _ in 0..MAX_DEPTH {
                    r.begin(b"d");
                }
                r
            },
            |e| *e == FdtError::TooDeep { limit: MAX_DEPTH },
        ),
    ];
    for (what, raw, check) in cases {
        let b = raw.build();
        let e = Tree::from_fdt(&b).expect_err(what);
        assert!(check(&e), "{what}: got {e:?}");
        assert!(!e.to_string().is_empty());
        // The no-alloc reader refuses the same blobs (except tree-level
        // checks, which only unflattening makes).
        if !matches!(
            e,
            FdtError::DuplicateNode { .. }
                | FdtError::DuplicateProp { .. }
                | FdtError::DuplicatePhandle { .. }
        ) {
            assert_eq!(Fdt::new(&b).err(), Some(e), "{what}");
        }
    }
    assert_eq!(
        FdtError::UnterminatedNodeName { offset: 0x48 }.to_string(),
        "unterminated node name at 0x48"
    );
    assert_eq!(
        FdtError::TooDeep { limit: 64 }.to_string(),
        "nesting deeper than 64"
    );
    assert_eq!(
        FdtError::PropNameOutOfRange { nameoff: 0x1000 }.to_string(),
        "property name offset 0x1000 outside strings block"
    );
    // Exactly MAX_DEPTH levels are fine.
    let mut r = Raw::new();
    r.begin(b"");
    for _ in 1..MAX_DEPTH {
        r.begin(b"d");
    }
    for _ in 0..MAX_DEPTH {
        r.end();
    }
    r.fdt_end();
    assert!(Tree::from_fdt(&r.build()).is_ok());
}

#[test]
fn tree_limits_on_unflatten() {
    // Too many nodes.
    let mut r = Raw::new();
    r.begin(b"");
    for i in 0..super::tree::MAX_NODES {
        r.begin(format!("n{i}").as_bytes()).end();
    }
    r.end().fdt_end();
    assert_eq!(
        err(&r.build()),
        FdtError::TooManyNodes {
            limit: super::tree::MAX_NODES
        }
    );
    // A property larger than the limit.
    let mut r = Raw::new();
    r.begin(b"")
        .prop("big", &vec![0; super::tree::MAX_PROP_LEN + 1])
        .end()
        .fdt_end();
    assert!(matches!(err(&r.build()), FdtError::PropTooLarge { .. }));
}

#[test]
fn absurd_cell_counts_in_pre_heap_reader() {
    let mut r = Raw::new();
    r.begin(b"")
        .prop("#address-cells", &0xffff_ffffu32.to_be_bytes())
        .prop("#size-cells", &[0, 0, 0, 1])
        .begin(b"memory@0")
        .prop("reg", &[0; 8])
        .end()
        .begin(b"bad-cells")
        .prop("#address-cells", &[0, 1])
        .begin(b"child@0")
        .prop("reg", &[0; 8])
        .end()
        .end()
        .end()
        .fdt_end();
    let b = r.build();
    let fdt = Fdt::new(&b).unwrap();
    let mem = fdt.find_node("/memory@0").unwrap().unwrap();
    assert!(matches!(
        fdt.reg(&mem),
        Err(FdtError::UnsupportedCells {
            address_cells: 0xffff_ffff,
            ..
        })
    ));
    let bad = fdt.find_node("/bad-cells").unwrap().unwrap();
    assert!(matches!(fdt.cells(&bad), Err(FdtError::BadPropLen { .. })));
    // Its child is still found by path; only its reg cannot be decoded.
    let child = fdt.find_node("/bad-cells/child@0").unwrap().unwrap();
    assert_eq!(fdt.children(&bad).next(), Some(Ok(child)));
    assert!(matches!(fdt.reg(&child), Err(FdtError::BadPropLen { .. })));
    // The same tree unflattened: reg decoding refuses, nothing panics.
    let t = Tree::from_fdt(&b).unwrap();
    let m = t.find("/memory@0").unwrap();
    assert!(matches!(t.reg(m), Err(TreeError::UnsupportedCells { .. })));
    let bad = t.find("/bad-cells").unwrap();
    assert!(matches!(
        t.address_cells(bad),
        Err(TreeError::BadProperty { .. })
    ));
    assert_eq!(DmaModel::from_tree(&t).warnings, []);
}

/// Deterministic corruption sweep over a real tree: truncations and byte
/// changes at many positions.  Every result is an error or a tree that
/// flattens to a fixed point; nothing panics.
#[test]
fn corrupted_qemu_trees_never_panic() {
    let blob = golden("qemu-7.2-default");
    let mut accepted = 0;
    let mut check = |b: &[u8]| {
        if let Ok(t) = Tree::from_fdt(b) {
            accepted += 1;
            let flat = t.to_fdt();
            let t2 = Tree::from_fdt(&flat).expect("a flattened tree must unflatten");
            assert_eq!(t2.to_fdt(), flat);
            let _ = DmaModel::from_tree(&t2);
            for n in t2.nodes() {
                assert_eq!(t2.find(&t2.path(n).unwrap()), Some(n));
            }
        }
        let _ = Fdt::new(b).map(|f| {
            f.find_node("/vdevice/vty")
                .map(|n| n.map(|n| f.reg(&n).map(|r| r.count())))
        });
    };
    for len in (0..blob.len()).step_by(7) {
        let mut b = blob[..len].to_vec();
        if len >= 8 {
            set_field(&mut b, 1, len as u32);
        }
        check(&b);
    }
    let mut x = 0x2545_f491_u32;
    for pos in (0..blob.len()).step_by(5) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut b = blob.to_vec();
        b[pos] ^= (x as u8) | 1;
        check(&b);
    }
    // Many byte changes hit property values and still unflatten.
    assert!(accepted > 100, "{accepted}");
}
