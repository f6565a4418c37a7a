//! PCI and the live device tree: the PHBs and function nodes as
//! [`discover`](super::discover) takes them, and the results written back —
//! `assigned-addresses` on every function node (PCI Bus Binding to IEEE 1275
//! §4.1.3), `device_type`, `bus-range` and `ranges` on bridge nodes, and
//! `/chosen/linux,pci-probe-only` (QEMU pseries contract §4.6).
//!
//! A PHB is a child of the root with `device_type = "pci"` (as in
//! [`crate::devtree::dma`]); its BUID is the address of its first `reg`
//! entry, its windows its `ranges`.  Function nodes are the PHB's children,
//! and the children of a function whose `#address-cells` is 3 (a bridge).

use super::assign::{probe_only_after, Plan};
use super::discover::{DevNode, PciReg, PhbNode, Range};
use crate::devtree::{NodeId, Tree, TreeError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Whether `node` is a PHB.
pub fn is_phb(tree: &Tree, node: NodeId) -> bool {
    tree.parent(node) == Some(tree.root()) && tree.prop_str(node, "device_type") == Some("pci")
}

fn dev_node(tree: &Tree, node: NodeId, warnings: &mut Vec<String>, depth: u32) -> DevNode {
    let path = tree.path(node).unwrap_or_default();
    let reg = match tree.reg(node) {
        Ok(r) => r.iter().map(PciReg::from).collect(),
        Err(e) => {
            warnings.push(format!("{path}: reg: {e}"));
            Vec::new()
        }
    };
    let mut children = Vec::new();
    if depth < 8 && tree.address_cells(node).ok() == Some(3) {
        for c in tree.children(node) {
            children.push(dev_node(tree, c, warnings, depth + 1));
        }
    }
    DevNode {
        path,
        reg,
        vendor_id: tree.prop_u32(node, "vendor-id"),
        device_id: tree.prop_u32(node, "device-id"),
        class_code: tree.prop_u32(node, "class-code"),
        children,
    }
}

/// Every PHB of the tree with its function nodes; malformed properties are
/// reported in the second list (the PHB or node is still returned, with
/// what could be read).
pub fn phbs(tree: &Tree) -> (Vec<PhbNode>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for node in tree.children(tree.root()) {
        if !is_phb(tree, node) {
            continue;
        }
        let path = tree.path(node).unwrap_or_default();
        let buid = match tree.reg(node) {
            Ok(r) if !r.is_empty() => r[0].addr,
            Ok(_) => {
                warnings.push(format!("{path}: no reg (BUID); skipped"));
                continue;
            }
            Err(e) => {
                warnings.push(format!("{path}: reg: {e}; skipped"));
                continue;
            }
        };
        let ranges = match tree.ranges(node) {
            Ok(Some(r)) => r.iter().filter_map(Range::from_entry).collect(),
            Ok(None) => {
                warnings.push(format!("{path}: no ranges"));
                Vec::new()
            }
            Err(e) => {
                warnings.push(format!("{path}: ranges: {e}"));
                Vec::new()
            }
        };
        let children = tree
            .children(node)
            .map(|c| dev_node(tree, c, &mut warnings, 1))
            .collect();
        out.push(PhbNode {
            path,
            buid,
            ranges,
            children,
        });
    }
    (out, warnings)
}

/// Write `assigned-addresses` on every node the plan gave addresses to;
/// returns how many nodes got one.
pub fn write_assigned_addresses(tree: &mut Tree, plan: &Plan) -> Result<usize, TreeError> {
    let mut n = 0;
    for path in plan.nodes() {
        let Some(node) = tree.find(path) else {
            continue;
        };
        tree.set_prop(node, "assigned-addresses", &plan.assigned_addresses(path))?;
        n += 1;
    }
    Ok(n)
}

/// `device_type = "pci"`, `bus-range` (secondary and subordinate bus) and
/// `ranges` (its windows, bus addresses mapped 1:1) on every bridge node
/// (PCI Bus Binding to IEEE 1275 §3.1 and the PCI-to-PCI bridge binding):
/// QEMU writes none of them, and Linux (`of_create_pci_dev`,
/// `of_scan_pci_bridge`) treats a node as a bridge and looks behind it only
/// with all three.  Returns how many bridge nodes were written.
pub fn write_bridge_properties(
    tree: &mut Tree,
    top: &super::PhbTopology,
    plan: &Plan,
) -> Result<usize, TreeError> {
    use super::assign::Class;
    let mut n = 0;
    for f in top.all() {
        let Some(br) = &f.bridge else { continue };
        let Some(node) = tree.find(&f.path) else {
            continue;
        };
        // Linux makes a pci_dev a bridge (and scans behind it) only for
        // device_type "pci" or "pciex"; QEMU writes none on bridge nodes.
        if tree.prop(node, "device_type").is_none() {
            tree.set_prop_str(node, "device_type", "pci")?;
        }
        tree.set_prop_cells(
            node,
            "bus-range",
            &[br.secondary as u32, br.subordinate as u32],
        )?;
        let mut cells = Vec::new();
        for w in plan.windows.iter().filter(|w| w.bdf == f.bdf) {
            let size = w.limit - w.base + 1;
            let hi = match w.class {
                Class::Io => 0x0100_0000,
                Class::Mem32 => 0x0200_0000,
                Class::Mem64 if w.limit >> 32 != 0 => 0x4300_0000,
                Class::Mem64 => 0x4200_0000,
            };
            let (bh, bl) = ((w.base >> 32) as u32, w.base as u32);
            cells.extend_from_slice(&[hi, bh, bl, hi, bh, bl, (size >> 32) as u32, size as u32]);
        }
        tree.set_prop_cells(node, "ranges", &cells)?;
        n += 1;
    }
    Ok(n)
}

/// Make `/chosen/linux,pci-probe-only` agree with what the firmware did
/// ([`probe_only_after`]); returns the value written, if any.
pub fn update_probe_only(tree: &mut Tree, complete: bool) -> Result<Option<u32>, TreeError> {
    let Some(chosen) = tree.find("/chosen") else {
        return Ok(None);
    };
    let current = tree.prop_u32(chosen, "linux,pci-probe-only");
    let new = probe_only_after(current, complete);
    if let Some(v) = new {
        tree.set_prop_u32(chosen, "linux,pci-probe-only", v)?;
    }
    Ok(new)
}

/// One PHB after [`setup`].
#[derive(Clone, Debug)]
pub struct PhbResult {
    pub top: super::PhbTopology,
    pub plan: Plan,
    pub report: super::assign::ApplyReport,
}

/// The config-space tokens of `/rtas`, if the platform has both.
pub fn config_access(tree: &Tree) -> Option<super::ConfigAccess> {
    let read = crate::devtree::dma::rtas_token(tree, "ibm,read-pci-config")?;
    let write = crate::devtree::dma::rtas_token(tree, "ibm,write-pci-config")?;
    Some(super::ConfigAccess::new(read, write))
}

/// Everything PCI at boot: for every PHB of `tree`, check its functions
/// against config space, size and assign their BARs and bridge windows,
/// program them, write `assigned-addresses`, then make
/// `/chosen/linux,pci-probe-only` agree.  Returns the per-PHB results and
/// the lines to print (problems, unassigned BARs, failed writes, a summary
/// per PHB).  Never stops at a bad node or PHB.
pub fn setup<P: crate::platform::Platform + ?Sized>(
    p: &mut P,
    tree: &mut Tree,
) -> (Vec<PhbResult>, Vec<String>) {
    let mut lines = Vec::new();
    let (phbs, warnings) = phbs(tree);
    lines.extend(warnings.into_iter().map(|w| format!("pci: {w}")));
    if phbs.is_empty() {
        return (Vec::new(), lines);
    }
    let Some(cfg) = config_access(tree) else {
        lines.push(String::from(
            "pci: /rtas lacks ibm,read-pci-config or ibm,write-pci-config; BARs left unassigned",
        ));
        let _ = update_probe_only(tree, false);
        return (Vec::new(), lines);
    };
    let mut out = Vec::new();
    let mut complete = true;
    for phb in &phbs {
        let top = super::discover(p, &cfg, phb);
        for pr in &top.problems {
            lines.push(format!("pci: {pr}"));
        }
        let plan = super::assign::plan(&top);
        for u in &plan.unassigned {
            lines.push(format!("pci: {u}"));
        }
        let report = super::assign::apply(p, &cfg, &plan);
        for (path, e) in &report.config_errors {
            lines.push(format!("pci: {path}: {e}"));
        }
        for m in &report.mismatches {
            lines.push(format!(
                "pci: {}: register {:#x} reads {:#x} after writing {:#x}",
                m.path, m.reg, m.read, m.wrote
            ));
        }
        if let Err(e) = write_assigned_addresses(tree, &plan) {
            lines.push(format!("pci: {}: assigned-addresses: {e}", top.path));
        }
        if let Err(e) = write_bridge_properties(tree, &top, &plan) {
            lines.push(format!("pci: {}: bridge properties: {e}", top.path));
        }
        complete &= plan.complete() && report.ok();
        lines.push(format!(
            "pci: {}: {} functions, {} BARs and {} bridge windows assigned{}",
            top.path,
            top.all().len(),
            report.bars,
            report.windows,
            if plan.complete() { "" } else { " (incomplete)" }
        ));
        out.push(PhbResult { top, plan, report });
    }
    match update_probe_only(tree, complete) {
        Ok(Some(v)) => lines.push(format!("pci: /chosen/linux,pci-probe-only set to {v}")),
        Ok(None) => {}
        Err(e) => lines.push(format!("pci: /chosen/linux,pci-probe-only: {e}")),
    }
    (out, lines)
}
