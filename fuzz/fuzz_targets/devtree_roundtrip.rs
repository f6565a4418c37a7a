//! Unflatten → flatten → unflatten → flatten on arbitrary blobs: accepted
//! blobs must give a tree whose flattened form unflattens again and is a
//! fixed point; paths and `find` must be inverse; the DMA model, `reg`,
//! `ranges` and a merge of the tree into its own copy must not panic (and
//! the merge must change nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::devtree::dma::DmaModel;
use papr_fw::devtree::Tree;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = Tree::from_fdt(data) else {
        return;
    };
    let flat = tree.to_fdt();
    let tree2 = match Tree::from_fdt(&flat) {
        Ok(t) => t,
        Err(e) => panic!("flattened tree does not unflatten: {e}"),
    };
    let flat2 = tree2.to_fdt();
    assert_eq!(flat, flat2, "flatten is not a fixed point");
    assert_eq!(tree.node_count(), tree2.node_count());
    for n in tree2.nodes() {
        let path = tree2.path(n).expect("live node has a path");
        assert_eq!(tree2.find(&path), Some(n), "find(path) of {path}");
        let _ = tree2.reg(n);
        let _ = tree2.ranges(n);
        assert_eq!(tree2.by_phandle(tree2.phandle(n).unwrap()), Some(n));
    }
    let model = DmaModel::from_tree(&tree2);
    for w in &model.warnings {
        let _ = w.to_string();
    }
    let mut merged = tree2.clone();
    match merged.merge(&tree) {
        Ok(stats) => {
            assert_eq!(stats, Default::default(), "self-merge changed something");
            assert_eq!(merged.to_fdt(), flat, "self-merge changed the tree");
        }
        Err(e) => panic!("self-merge failed: {e}"),
    }
});
