//! The platform summary printed at boot: what QEMU's tree describes, read from
//! the live tree (QEMU pseries contract §1.4–1.7, §4; LoPAPR §C "Device tree
//! properties" for the nodes named here).  Every line is plain text so tests
//! and people can grep it.

use crate::devtree::dma::{DmaModel, DmaNodeKind};
use crate::devtree::{NodeId, Tree};
use crate::memory::Range;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Where the console is and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleInfo {
    pub path: Option<String>,
    pub vtermno: u64,
    pub how: &'static str,
}

/// The console: `/chosen/stdout-path` (or `linux,stdout-path`), else the first
/// node compatible with "hvterm1", else vtermno 0 (which QEMU takes as the
/// first vty).
pub fn find_console(tree: &Tree) -> ConsoleInfo {
    let chosen = tree.find("/chosen");
    for prop in ["stdout-path", "linux,stdout-path"] {
        let Some(path) = chosen.and_then(|c| tree.prop_str(c, prop)) else {
            continue;
        };
        let path = path.split(':').next().unwrap_or(path);
        if let Some(node) = tree.find(path) {
            if let Some(reg) = tree.prop_u32(node, "reg") {
                return ConsoleInfo {
                    path: tree.path(node),
                    vtermno: reg as u64,
                    how: "/chosen/stdout-path",
                };
            }
        }
    }
    for node in tree.nodes() {
        let hvterm = tree
            .prop_strings(node, "compatible")
            .is_some_and(|mut c| c.any(|s| s == "hvterm1"));
        if hvterm {
            if let Some(reg) = tree.prop_u32(node, "reg") {
                return ConsoleInfo {
                    path: tree.path(node),
                    vtermno: reg as u64,
                    how: "first hvterm1",
                };
            }
        }
    }
    ConsoleInfo {
        path: None,
        vtermno: 0,
        how: "no vty in the tree",
    }
}

/// RAM from every `device_type = "memory"` node, and the RMA (the `reg` entry
/// of the node at address 0, LoPAPR's real mode area).
pub fn memory_ranges(tree: &Tree) -> (Vec<Range>, Option<Range>) {
    let mut ram = Vec::new();
    let mut rma = None;
    for node in tree.nodes() {
        if tree.prop_str(node, "device_type") != Some("memory") {
            continue;
        }
        if let Ok(regs) = tree.reg(node) {
            for r in regs {
                if r.size == 0 {
                    continue;
                }
                if r.addr == 0 && rma.is_none() {
                    rma = Some(Range::new(0, r.size));
                }
                ram.push(Range::new(r.addr, r.size));
            }
        }
    }
    ram.sort();
    (ram, rma)
}

/// The CPU cores: `device_type = "cpu"` nodes under `/cpus`, with their
/// threads (`ibm,ppc-interrupt-server#s` entries).
pub fn cpus(tree: &Tree) -> Vec<(NodeId, u32)> {
    let Some(cpus) = tree.find("/cpus") else {
        return Vec::new();
    };
    tree.children(cpus)
        .filter(|c| tree.prop_str(*c, "device_type") == Some("cpu"))
        .map(|c| {
            let threads = tree
                .prop(c, "ibm,ppc-interrupt-server#s")
                .map(|v| (v.len() / 4) as u32)
                .unwrap_or(1)
                .max(1);
            (c, threads)
        })
        .collect()
}

/// The timebase frequency of the first CPU (512 MHz on QEMU).
pub fn timebase_hz(tree: &Tree) -> Option<u64> {
    let (cpu, _) = *cpus(tree).first()?;
    tree.prop_u32(cpu, "timebase-frequency").map(u64::from)
}

pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes:#x} bytes")
    }
}

/// Everything the summary shows.
pub struct Summary {
    pub lines: Vec<String>,
}

impl Summary {
    pub fn new(tree: &Tree, dma: &DmaModel) -> Self {
        let mut lines = Vec::new();
        let root = tree.root();
        let model = tree.prop_str(root, "model").unwrap_or("(no model)");
        let cores = cpus(tree);
        let threads: u32 = cores.iter().map(|(_, t)| t).sum();
        let cpu_name = cores
            .first()
            .and_then(|(c, _)| tree.node_name(*c))
            .unwrap_or("(none)");
        lines.push(format!(
            "platform: {model}, {threads} CPU{} ({} core{} of {cpu_name}), timebase {} MHz",
            if threads == 1 { "" } else { "s" },
            cores.len(),
            if cores.len() == 1 { "" } else { "s" },
            timebase_hz(tree).unwrap_or(0) / 1_000_000
        ));
        let (ram, rma) = memory_ranges(tree);
        let total: u64 = ram.iter().map(|r| r.size).sum();
        lines.push(format!(
            "memory: {} in {} range{}, RMA {}",
            size(total),
            ram.len(),
            if ram.len() == 1 { "" } else { "s" },
            rma.map(|r| size(r.size))
                .unwrap_or_else(|| "missing".into())
        ));
        let phbs: Vec<_> = dma
            .nodes
            .iter()
            .filter(|n| n.kind == DmaNodeKind::Phb)
            .collect();
        lines.push(format!(
            "pci: {} host bridge{}",
            phbs.len(),
            if phbs.len() == 1 { "" } else { "s" }
        ));
        for n in &phbs {
            let mut l = format!("phb {}: buid {:#x}", n.path, n.buid.unwrap_or(0));
            match n.window {
                Some(w) => l.push_str(&format!(
                    ", dma window liobn {:#x} bus {:#x} size {} page 4 KiB",
                    w.liobn,
                    w.bus_addr,
                    size(w.size)
                )),
                None => l.push_str(", no dma window"),
            }
            match n.ddw {
                Some(d) => {
                    l.push_str(&format!(
                        ", ddw query {:#x} create {:#x} remove {:#x}",
                        d.query, d.create, d.remove
                    ));
                    let mut ext = Vec::new();
                    if let Some(r) = d.ext.reset {
                        ext.push(format!("reset {r:#x}"));
                    }
                    if d.ext.query_out_64 {
                        ext.push("64-bit query".into());
                    }
                    if let Some(lam) = d.ext.lam {
                        ext.push(format!("limited-address-mode {lam}"));
                    }
                    if ext.is_empty() {
                        l.push_str(", no extensions");
                    } else {
                        l.push_str(&format!(", extensions: {}", ext.join(", ")));
                    }
                }
                None => l.push_str(", no ddw"),
            }
            lines.push(l);
        }
        for n in dma.nodes.iter().filter(|n| n.kind == DmaNodeKind::Vio) {
            if let Some(w) = n.window {
                lines.push(format!(
                    "vio {}: dma window liobn {:#x} size {}",
                    n.path,
                    w.liobn,
                    size(w.size)
                ));
            }
        }
        let con = find_console(tree);
        lines.push(format!(
            "console: {} (vtermno {:#x}, {})",
            con.path.as_deref().unwrap_or("vty 0"),
            con.vtermno,
            con.how
        ));
        let ntok = crate::devtree::dma::rtas_tokens(tree).len();
        lines.push(format!("rtas: {ntok} tokens"));
        for w in &dma.warnings {
            lines.push(format!("warning: {w}"));
        }
        Summary { lines }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> Tree {
        let path = format!("{}/qemu-tests/trees/{name}.dtb", env!("CARGO_MANIFEST_DIR"));
        Tree::from_fdt(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn summary(name: &str) -> String {
        let t = tree(name);
        let dma = DmaModel::from_tree(&t);
        Summary::new(&t, &dma).to_string()
    }

    #[test]
    fn default_machine() {
        for v in ["7.2", "10.0"] {
            let s = summary(&format!("qemu-{v}-default"));
            let cpu = if v == "7.2" { "POWER9" } else { "POWER10" };
            assert!(s.contains(&format!("platform: IBM pSeries (emulated by qemu), 1 CPU (1 core of PowerPC,{cpu}), timebase 512 MHz")), "{s}");
            assert!(s.contains("memory: 512 MiB in 1 range, RMA 512 MiB"), "{s}");
            assert!(s.contains("pci: 1 host bridge\n"), "{s}");
            assert!(s.contains("phb /pci@800000020000000: buid 0x800000020000000, dma window liobn 0x80000000 bus 0x0 size 1 GiB page 4 KiB, ddw query 0x2026 create 0x2027 remove 0x2028, extensions: reset 0x2029, 64-bit query"), "{s}");
            assert!(s.contains("rtas: 45 tokens"), "{s}");
        }
    }

    #[test]
    fn configurations() {
        assert!(summary("qemu-7.2-smp4").contains(", 4 CPUs (4 cores of"));
        assert!(summary("qemu-10.0-mem4g").contains("memory: 4 GiB in 1 range, RMA 4 GiB"));
        let s = summary("qemu-7.2-phb2");
        assert!(s.contains("pci: 2 host bridges"), "{s}");
        assert!(
            s.contains(
                "phb /pci@800000020000001: buid 0x800000020000001, dma window liobn 0x80000100"
            ),
            "{s}"
        );
        assert!(summary("qemu-7.2-ddw-off").contains(", no ddw"));
        let s = summary("qemu-7.2-kernel");
        assert!(
            s.contains("console: /vdevice/vty@71000000 (vtermno 0x71000000, /chosen/stdout-path)"),
            "{s}"
        );
        // The default machine has a VGA, so QEMU writes no stdout-path.
        assert!(summary("qemu-7.2-default")
            .contains("console: /vdevice/vty@71000000 (vtermno 0x71000000, first hvterm1)"));
        assert!(summary("qemu-7.2-power8").contains("POWER8"));
    }

    #[test]
    fn console_fallbacks() {
        let mut t = tree("qemu-7.2-kernel");
        let chosen = t.find("/chosen").unwrap();
        t.remove_prop(chosen, "stdout-path").unwrap();
        t.remove_prop(chosen, "linux,stdout-path").unwrap();
        let c = find_console(&t);
        assert_eq!((c.vtermno, c.how), (0x7100_0000, "first hvterm1"));
        t.set_prop_str(chosen, "stdout-path", "/nowhere").unwrap();
        assert_eq!(find_console(&t).how, "first hvterm1");
        let vty = t.find("/vdevice/vty@71000000").unwrap();
        t.remove_node(vty).unwrap();
        assert_eq!(
            find_console(&t),
            ConsoleInfo {
                path: None,
                vtermno: 0,
                how: "no vty in the tree"
            }
        );
        assert_eq!(size(0x82c), "0x82c bytes");
        assert_eq!(size(1 << 40), "1024 GiB");
    }
}
