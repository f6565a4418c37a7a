//! Benchmark of the firmware's device tree on the host: validate, unflatten,
//! flatten, DMA-window scan and a CAS-style self-merge of QEMU's trees.
//!
//!   cargo run --release --example devtree_bench [FILE.dtb ...]
//!
//! Without arguments it measures the largest golden tree in
//! `qemu-tests/trees/` (QEMU with 64 CPUs, 4 PHBs and many devices);
//! `qemu-tests/trees/dump.sh --huge FILE` dumps a larger one (1024 CPUs,
//! 8 PHBs, 1 TiB of hot-pluggable memory) to pass here.  Each operation
//! runs for about half a second; the minimum and mean per run are printed.

use papr_fw::devtree::dma::DmaModel;
use papr_fw::devtree::{Fdt, Tree};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Run `f` repeatedly for about `budget`; (iterations, min, mean).
fn measure<T>(budget: Duration, mut f: impl FnMut() -> T) -> (u32, Duration, Duration) {
    let start = Instant::now();
    let (mut n, mut min) = (0u32, Duration::MAX);
    while n < 3 || (start.elapsed() < budget && n < 1_000_000) {
        let t = Instant::now();
        black_box(f());
        min = min.min(t.elapsed());
        n += 1;
    }
    (n, min, start.elapsed() / n)
}

fn largest_golden() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/qemu-tests/trees"));
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dtb"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("no golden trees")
}

fn main() {
    let mut files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        files.push(largest_golden());
    }
    let budget = Duration::from_millis(500);
    for file in files {
        let blob = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let tree = Tree::from_fdt(&blob).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let props: usize = tree.nodes().map(|n| tree.props(n).count()).sum();
        let flat = tree.to_fdt();
        println!(
            "{}: {} bytes, {} nodes, {} properties (flattened: {} bytes)",
            file.display(),
            blob.len(),
            tree.node_count(),
            props,
            flat.len()
        );
        let report = |what: &str, (n, min, mean): (u32, Duration, Duration)| {
            println!("  {what:<26} min {min:>10.1?}  mean {mean:>10.1?}  ({n} runs)");
        };
        report(
            "validate (Fdt::new)",
            measure(budget, || Fdt::new(&blob).is_ok()),
        );
        report(
            "unflatten (Tree::from_fdt)",
            measure(budget, || Tree::from_fdt(&blob)),
        );
        report("flatten (Tree::to_fdt)", measure(budget, || tree.to_fdt()));
        report(
            "DmaModel::from_tree",
            measure(budget, || DmaModel::from_tree(&tree)),
        );
        report(
            "path + find of every node",
            measure(budget, || {
                tree.nodes()
                    .filter(|&n| tree.find(&tree.path(n).unwrap_or_default()) == Some(n))
                    .count()
            }),
        );
        report(
            "merge (self, incl. clone)",
            measure(budget, || {
                let mut t = tree.clone();
                t.merge(&tree).map(|s| s.props_set)
            }),
        );
    }
}
