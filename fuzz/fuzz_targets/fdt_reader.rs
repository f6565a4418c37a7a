//! The allocation-free reader on arbitrary blobs: validation, walks, the
//! pre-heap helpers; and agreement with the tree: a blob the reader accepts
//! is refused by `Tree::from_fdt` only for tree-level reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::devtree::{Fdt, FdtError, Tree};

fuzz_target!(|data: &[u8]| {
    let fdt = Fdt::new(data);
    let tree = Tree::from_fdt(data);
    match (&fdt, &tree) {
        (Ok(_), Err(e)) => assert!(
            matches!(
                e,
                FdtError::TooManyNodes { .. }
                    | FdtError::PropTooLarge { .. }
                    | FdtError::TreeTooLarge { .. }
                    | FdtError::DuplicateNode { .. }
                    | FdtError::DuplicateProp { .. }
                    | FdtError::DuplicatePhandle { .. }
            ),
            "reader accepted what unflatten refused with {e:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("unflatten accepted what the reader refused: {e:?}"),
        (Ok(_), Ok(_)) => {}
    }
    let Ok(fdt) = fdt else {
        return;
    };
    for t in fdt.walk() {
        t.expect("validated blob walks");
    }
    for e in fdt.reserve_map() {
        e.expect("validated reserve map");
    }
    for path in [
        "/",
        "/memory@0",
        "/memory",
        "/chosen",
        "/cpus/cpu",
        "/vdevice/vty",
        "/pci/@0",
    ] {
        if let Ok(Some(n)) = fdt.find_node(path) {
            let _ = fdt.reg(&n).map(|r| r.count());
            let _ = fdt.cells(&n);
            let _ = fdt.prop_u32(&n, "#address-cells");
            for c in fdt.children(&n) {
                let c = c.expect("validated children");
                let _ = fdt.reg(&c).map(|r| r.count());
            }
        }
    }
    if let Ok(tree) = tree {
        // Every node the tree has, the reader finds by path.
        for n in tree.nodes() {
            let path = tree.path(n).unwrap();
            let found = fdt
                .find_node(&path)
                .expect("validated blob")
                .expect("path found");
            assert_eq!(found.name, tree.name(n).unwrap());
        }
    }
});
