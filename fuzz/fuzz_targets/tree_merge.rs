//! Merging an arbitrary partial tree into QEMU's live tree (the CAS update,
//! `Tree::merge`), with firmware- and client-made nodes and properties in
//! the live tree first.  Invariants: no panic; a failed merge leaves the
//! live tree untouched; a successful one gives a tree that flattens to a
//! fixed point, where every node's path finds it, phandles are unique and
//! `/chosen` and the firmware's own nodes and properties survive; merging
//! the same partial tree again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::devtree::Tree;

const LIVE: [&[u8]; 2] = [
    include_bytes!("../../qemu-tests/trees/qemu-7.2-kernel.dtb"),
    include_bytes!("../../qemu-tests/trees/qemu-10.0-devices.dtb"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, blob)) = data.split_first() else {
        return;
    };
    let Ok(partial) = Tree::from_fdt(blob) else {
        return;
    };
    let mut live = Tree::from_fdt(LIVE[sel as usize % 2]).unwrap();
    // What the firmware and a client add before CAS.
    let root = live.root();
    let chosen = live.find("/chosen").unwrap();
    live.set_prop(chosen, "stdout", &0x1000u32.to_be_bytes())
        .unwrap();
    live.set_prop(chosen, "linux,stdout-path", b"/vdevice/vty@71000000\0")
        .unwrap();
    let mine = live.add_node(root, "papr-fw-test").unwrap();
    live.set_prop(mine, "x", b"y").unwrap();
    if let Some(rtas) = live.find("/rtas") {
        live.set_prop(rtas, "linux,rtas-base", &0x1000_0000u32.to_be_bytes())
            .unwrap();
    }
    let before = live.to_fdt();
    let chosen_ph = live.phandle(chosen);
    match live.merge(&partial) {
        Err(_) => assert_eq!(live.to_fdt(), before, "a failed merge changed the tree"),
        Ok(_) => {
            let flat = live.to_fdt();
            let again = Tree::from_fdt(&flat).expect("merged tree flattens to a valid blob");
            assert_eq!(again.to_fdt(), flat, "flatten is not a fixed point");
            let mut phs = Vec::new();
            for n in live.nodes() {
                let path = live.path(n).expect("path");
                assert_eq!(live.find(&path), Some(n), "find({path})");
                let ph = live.phandle(n).expect("phandle");
                assert!(!phs.contains(&ph), "phandle {ph:#x} twice");
                phs.push(ph);
            }
            let c = live.find("/chosen").expect("/chosen survives");
            let p_chosen = partial.find("/chosen");
            if p_chosen.is_none_or(|pc| {
                partial.prop(pc, "phandle").is_none() && partial.prop(pc, "linux,phandle").is_none()
            }) {
                assert_eq!(live.phandle(c), chosen_ph, "/chosen keeps its phandle");
            }
            if p_chosen.is_none_or(|pc| partial.prop(pc, "stdout").is_none()) {
                assert_eq!(
                    live.prop(c, "stdout"),
                    Some(&0x1000u32.to_be_bytes()[..]),
                    "stdout survives"
                );
            }
            let m = live
                .find("/papr-fw-test")
                .expect("the firmware's node survives");
            if partial.find("/papr-fw-test").is_none() {
                assert_eq!(live.prop(m, "x"), Some(&b"y"[..]));
            }
            if let Some(r) = live.find("/rtas") {
                if partial.find("/rtas").is_some() {
                    assert!(
                        live.prop(r, "linux,rtas-base").is_some(),
                        "linux,* survives"
                    );
                }
            }
            let once = live.to_fdt();
            live.merge(&partial).expect("merging again");
            assert_eq!(
                live.to_fdt(),
                once,
                "merging the same tree twice changed it"
            );
        }
    }
});
