//! The live device tree: an arena of nodes with generation-checked handles
//! ([`NodeId`]), parent/child/peer links, properties as raw bytes with typed
//! accessors, phandles, and `reg`/`ranges` decoding (IEEE Std 1275-1994
//! §3.2.2 "Device tree", §3.3.3 standard properties; PAPR/LoPAPR
//! appendix B for the PCI address format).
//!
//! Handles stay valid until their node is removed; afterwards every method
//! given the stale handle returns `None` or [`TreeError::StaleNode`] (the
//! slot's generation no longer matches), never panics and never reaches a
//! node that reused the slot.

use super::fdt::{read_cells, ReserveEntry, MAX_DEPTH, MAX_NAME_LEN};
use super::{path, TreeError};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// Most nodes a tree may hold.
pub const MAX_NODES: usize = 1 << 16;
/// Largest property value, in bytes (QEMU's largest, `ibm,dynamic-memory`,
/// is 24 bytes per 256 MiB of RAM: 1.5 MiB for 16 TiB).
pub const MAX_PROP_LEN: usize = 4 << 20;
/// Largest tree, counted as its flattened size (node and property headers,
/// names and values).
pub const MAX_TREE_BYTES: usize = 32 << 20;
/// First phandle the tree assigns to nodes that have none of their own.
/// QEMU's own phandles are 0x1111 and, with NVLink2 pass-through,
/// 0x0013xxxx, 0x11xxxxxx and 0x12xxxxxx, so assigned ones do not meet them.
pub const FIRST_ASSIGNED_PHANDLE: u32 = 0x1000_0000;

/// Properties that carry a node's phandle, in order of precedence.
pub(super) const PHANDLE_PROPS: [&str; 3] = ["phandle", "linux,phandle", "ibm,phandle"];

/// A handle to a node.  Copy, cheap, and safe to keep after the node is
/// removed (it then refers to nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    index: u32,
    gen: u32,
}

/// Who put a node or property into the tree: the platform (QEMU's blob, or
/// a tree merged from it) or the firmware/client (`add_node`, `set_prop`).
/// [`Tree::merge`] only drops what the platform owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Platform,
    Firmware,
}

#[derive(Clone, Debug)]
pub(super) struct Prop {
    pub name: String,
    pub value: Vec<u8>,
    pub origin: Origin,
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub name: String,
    pub parent: Option<u32>,
    pub first_child: Option<u32>,
    pub last_child: Option<u32>,
    pub prev: Option<u32>,
    pub next: Option<u32>,
    pub props: Vec<Prop>,
    pub phandle: u32,
    pub origin: Origin,
    /// Root = 1.
    pub depth: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub gen: u32,
    pub node: Option<Node>,
}

/// One `reg` entry.  Addresses of up to 2 cells are in `addr` (`hi` = 0);
/// a 3-cell address (PCI, IEEE 1275 PCI binding §2.2.1.1) keeps its first
/// cell, phys.hi (`npt000ss bbbbbbbb dddddfff rrrrrrrr`), in `hi` and
/// phys.mid:phys.lo in `addr`.  Sizes are up to 2 cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegEntry {
    pub hi: u32,
    pub addr: u64,
    pub size: u64,
}

/// One `ranges` entry: a child-bus address range and where it appears on
/// the parent bus.  Addresses use the [`RegEntry`] representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeEntry {
    pub child_hi: u32,
    pub child: u64,
    pub parent_hi: u32,
    pub parent: u64,
    pub size: u64,
}

/// Most address cells [`Tree::reg`] and [`Tree::ranges`] decode.
pub const MAX_ADDRESS_CELLS: u32 = 3;
/// Most size cells they decode.
pub const MAX_SIZE_CELLS: u32 = 2;

/// The live device tree.
#[derive(Clone, Debug)]
pub struct Tree {
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<u32>,
    pub(super) root: u32,
    /// phandle → slot index.
    pub(super) phandles: BTreeMap<u32, u32>,
    pub(super) next_phandle: u32,
    pub(super) reserve: Vec<ReserveEntry>,
    pub(super) boot_cpuid_phys: u32,
    pub(super) nodes: usize,
    /// Flattened-size estimate, see [`MAX_TREE_BYTES`].
    pub(super) bytes: usize,
}

/// What a node costs against [`MAX_TREE_BYTES`]: FDT_BEGIN_NODE, name,
/// padding, FDT_END_NODE.
pub(super) fn node_cost(name: &str) -> usize {
    12 + name.len() + 4
}

/// What a property costs: FDT_PROP header, value, padding, its name.
pub(super) fn prop_cost(name: &str, len: usize) -> usize {
    12 + len + 3 + name.len() + 1
}

/// The phandle the phandle properties in `props` give, if any.  `over`
/// replaces (Some(Some)) or removes (Some(None)) one property by name first.
pub(super) fn explicit_phandle(props: &[Prop], over: Option<(&str, Option<&[u8]>)>) -> Option<u32> {
    for name in PHANDLE_PROPS {
        let value = match over {
            Some((n, v)) if n == name => v,
            _ => props
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.value.as_slice()),
        };
        if let Some(&[a, b, c, d]) = value {
            let ph = u32::from_be_bytes([a, b, c, d]);
            if ph != 0 && ph != u32::MAX {
                return Some(ph);
            }
        }
    }
    None
}

pub(super) fn check_prop_name(name: &str) -> Result<(), TreeError> {
    if !path::valid_prop_name(name.as_bytes()) {
        return Err(TreeError::BadName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(TreeError::NameTooLong);
    }
    Ok(())
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A tree with only a root node.
    pub fn new() -> Self {
        let root = Node {
            name: String::new(),
            parent: None,
            first_child: None,
            last_child: None,
            prev: None,
            next: None,
            props: Vec::new(),
            phandle: FIRST_ASSIGNED_PHANDLE,
            origin: Origin::Platform,
            depth: 1,
        };
        let mut phandles = BTreeMap::new();
        phandles.insert(FIRST_ASSIGNED_PHANDLE, 0);
        Tree {
            slots: alloc::vec![Slot {
                gen: 0,
                node: Some(root),
            }],
            free: Vec::new(),
            root: 0,
            phandles,
            next_phandle: FIRST_ASSIGNED_PHANDLE + 1,
            reserve: Vec::new(),
            boot_cpuid_phys: 0,
            nodes: 1,
            bytes: node_cost(""),
        }
    }

    // --- internal access ---------------------------------------------------

    pub(super) fn idx(&self, id: NodeId) -> Option<u32> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.gen == id.gen && slot.node.is_some()).then_some(id.index)
    }

    /// The handle of a live slot.
    pub(super) fn id(&self, idx: u32) -> NodeId {
        NodeId {
            index: idx,
            gen: self.slots[idx as usize].gen,
        }
    }

    /// A live node by index.  Indices come from links of live nodes, which
    /// are kept consistent, so a dead slot here is a bug in this module.
    pub(super) fn n(&self, idx: u32) -> &Node {
        self.slots[idx as usize]
            .node
            .as_ref()
            .expect("devtree: link to a removed node")
    }

    pub(super) fn n_mut(&mut self, idx: u32) -> &mut Node {
        self.slots[idx as usize]
            .node
            .as_mut()
            .expect("devtree: link to a removed node")
    }

    fn get(&self, id: NodeId) -> Option<&Node> {
        self.idx(id).map(|i| self.n(i))
    }

    /// A new unlinked-slot node as the last child of `parent` (no checks
    /// except the caller's).
    pub(super) fn alloc_node(&mut self, parent: u32, name: String, origin: Origin) -> u32 {
        let depth = self.n(parent).depth + 1;
        self.bytes += node_cost(&name);
        self.nodes += 1;
        let node = Node {
            name,
            parent: Some(parent),
            first_child: None,
            last_child: None,
            prev: self.n(parent).last_child,
            next: None,
            props: Vec::new(),
            phandle: 0,
            origin,
            depth,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].node = Some(node);
                i
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    node: Some(node),
                });
                (self.slots.len() - 1) as u32
            }
        };
        match self.n(parent).last_child {
            Some(last) => self.n_mut(last).next = Some(idx),
            None => self.n_mut(parent).first_child = Some(idx),
        }
        self.n_mut(parent).last_child = Some(idx);
        idx
    }

    /// A fresh phandle not used by any node.
    pub(super) fn fresh_phandle(&mut self) -> u32 {
        loop {
            let ph = self.next_phandle;
            self.next_phandle = ph.wrapping_add(1);
            if ph != 0 && ph != u32::MAX && !self.phandles.contains_key(&ph) {
                return ph;
            }
        }
    }

    /// Give node `idx` phandle `ph` (which must be free or already its own).
    pub(super) fn set_phandle(&mut self, idx: u32, ph: u32) {
        let old = self.n(idx).phandle;
        if old == ph {
            return;
        }
        if self.phandles.get(&old) == Some(&idx) {
            self.phandles.remove(&old);
        }
        self.phandles.insert(ph, idx);
        self.n_mut(idx).phandle = ph;
    }

    /// Move node `idx` to a fresh phandle, rewriting its phandle properties
    /// so they stay consistent.
    pub(super) fn renumber_phandle(&mut self, idx: u32) {
        let ph = self.fresh_phandle();
        self.set_phandle(idx, ph);
        for p in self.n_mut(idx).props.iter_mut() {
            if PHANDLE_PROPS.contains(&p.name.as_str()) && p.value.len() == 4 {
                p.value.copy_from_slice(&ph.to_be_bytes());
            }
        }
    }

    /// Find a child of `parent` by exact name.
    pub(super) fn child_idx(&self, parent: u32, name: &str) -> Option<u32> {
        let mut c = self.n(parent).first_child;
        while let Some(i) = c {
            if self.n(i).name == name {
                return Some(i);
            }
            c = self.n(i).next;
        }
        None
    }

    /// Set (add or replace) a property of node `idx`, with all checks.
    pub(super) fn set_prop_idx(
        &mut self,
        idx: u32,
        name: &str,
        value: &[u8],
        origin: Origin,
    ) -> Result<(), TreeError> {
        check_prop_name(name)?;
        if value.len() > MAX_PROP_LEN {
            return Err(TreeError::PropTooLarge { len: value.len() });
        }
        let node = self.n(idx);
        let pos = node.props.iter().position(|p| p.name == name);
        let old_cost = pos.map_or(0, |i| prop_cost(name, node.props[i].value.len()));
        let bytes = self.bytes - old_cost + prop_cost(name, value.len());
        if bytes > MAX_TREE_BYTES {
            return Err(TreeError::TreeFull);
        }
        let new_ph = if PHANDLE_PROPS.contains(&name) {
            explicit_phandle(&node.props, Some((name, Some(value))))
        } else {
            None
        };
        if let Some(ph) = new_ph {
            if self.phandles.get(&ph).is_some_and(|&o| o != idx) {
                return Err(TreeError::PhandleInUse(ph));
            }
        }
        self.bytes = bytes;
        let node = self.n_mut(idx);
        match pos {
            Some(i) => {
                let p = &mut node.props[i];
                p.value.clear();
                p.value.extend_from_slice(value);
                p.origin = origin;
            }
            None => node.props.push(Prop {
                name: name.into(),
                value: value.into(),
                origin,
            }),
        }
        if let Some(ph) = new_ph {
            self.set_phandle(idx, ph);
        }
        Ok(())
    }

    /// Remove a property of node `idx`; true if it existed.
    pub(super) fn remove_prop_idx(&mut self, idx: u32, name: &str) -> bool {
        let node = self.n_mut(idx);
        let Some(pos) = node.props.iter().position(|p| p.name == name) else {
            return false;
        };
        let p = node.props.remove(pos);
        self.bytes -= prop_cost(&p.name, p.value.len());
        // A node keeps its phandle when its phandle properties go (clients
        // may hold it); another phandle property may now take precedence.
        if PHANDLE_PROPS.contains(&name) {
            if let Some(ph) = explicit_phandle(&self.n(idx).props, None) {
                if !self.phandles.get(&ph).is_some_and(|&o| o != idx) {
                    self.set_phandle(idx, ph);
                }
            }
        }
        true
    }

    /// Remove node `idx` and its subtree; returns the number of nodes removed.
    pub(super) fn remove_idx(&mut self, idx: u32) -> usize {
        // Unlink from the parent and siblings.
        let (parent, prev, next) = {
            let n = self.n(idx);
            (n.parent, n.prev, n.next)
        };
        match prev {
            Some(p) => self.n_mut(p).next = next,
            None => {
                if let Some(par) = parent {
                    self.n_mut(par).first_child = next;
                }
            }
        }
        match next {
            Some(nx) => self.n_mut(nx).prev = prev,
            None => {
                if let Some(par) = parent {
                    self.n_mut(par).last_child = prev;
                }
            }
        }
        // Free the subtree (collected first: freeing breaks the links).
        let doomed: Vec<u32> = self.descendants_idx(idx).collect();
        for &i in &doomed {
            let slot = &mut self.slots[i as usize];
            if let Some(node) = slot.node.take() {
                slot.gen = slot.gen.wrapping_add(1);
                self.nodes -= 1;
                self.bytes -= node_cost(&node.name)
                    + node
                        .props
                        .iter()
                        .map(|p| prop_cost(&p.name, p.value.len()))
                        .sum::<usize>();
                if self.phandles.get(&node.phandle) == Some(&i) {
                    self.phandles.remove(&node.phandle);
                }
                self.free.push(i);
            }
        }
        doomed.len()
    }

    /// Pre-order indices of the subtree at `idx` (including it).
    pub(super) fn descendants_idx(&self, idx: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = Some(idx);
        core::iter::from_fn(move || {
            let cur = next?;
            let n = self.n(cur);
            next = if let Some(c) = n.first_child {
                Some(c)
            } else {
                // Climb until a node (below `idx`) has a next sibling.
                let mut at = cur;
                loop {
                    if at == idx {
                        break None;
                    }
                    let a = self.n(at);
                    if let Some(s) = a.next {
                        break Some(s);
                    }
                    match a.parent {
                        Some(p) => at = p,
                        None => break None,
                    }
                }
            };
            Some(cur)
        })
    }

    // --- whole tree --------------------------------------------------------

    /// The root node.
    pub fn root(&self) -> NodeId {
        self.id(self.root)
    }

    /// Does `node` refer to a node of this tree?
    pub fn contains(&self, node: NodeId) -> bool {
        self.idx(node).is_some()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The memory reserve map (without the terminating entry).
    pub fn reserve_map(&self) -> &[ReserveEntry] {
        &self.reserve
    }

    pub fn set_reserve_map(&mut self, entries: Vec<ReserveEntry>) {
        self.reserve = entries;
    }

    pub fn add_reserve(&mut self, address: u64, size: u64) {
        self.reserve.push(ReserveEntry { address, size });
    }

    /// The header's `boot_cpuid_phys`.
    pub fn boot_cpuid_phys(&self) -> u32 {
        self.boot_cpuid_phys
    }

    pub fn set_boot_cpuid_phys(&mut self, id: u32) {
        self.boot_cpuid_phys = id;
    }

    /// Every node in pre-order (the order of the flattened tree).
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.descendants(self.root())
    }

    /// `node` and its subtree in pre-order (nothing for a stale handle).
    pub fn descendants(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.idx(node)
            .into_iter()
            .flat_map(move |i| self.descendants_idx(i))
            .map(move |i| self.id(i))
    }

    // --- nodes -------------------------------------------------------------

    /// The full node name (`name@unit`; "" for the root).
    pub fn name(&self, node: NodeId) -> Option<&str> {
        self.get(node).map(|n| n.name.as_str())
    }

    /// The node-name part (before `@`), what the IEEE 1275 `name` property
    /// holds.
    pub fn node_name(&self, node: NodeId) -> Option<&str> {
        self.name(node).map(|n| path::split_name(n).0)
    }

    /// The unit address text (after `@`), if the name has one.
    pub fn unit_address(&self, node: NodeId) -> Option<&str> {
        self.name(node).and_then(|n| path::split_name(n).1)
    }

    pub fn parent(&self, node: NodeId) -> Option<NodeId> {
        self.get(node)?.parent.map(|p| self.id(p))
    }

    pub fn first_child(&self, node: NodeId) -> Option<NodeId> {
        self.get(node)?.first_child.map(|c| self.id(c))
    }

    /// The next sibling (IEEE 1275 `peer` of a non-root node).
    pub fn next_sibling(&self, node: NodeId) -> Option<NodeId> {
        self.get(node)?.next.map(|c| self.id(c))
    }

    /// The children of `node`, in order.
    pub fn children(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut next = self.first_child(node);
        core::iter::from_fn(move || {
            let cur = next?;
            next = self.next_sibling(cur);
            Some(cur)
        })
    }

    /// The child of `node` whose full name is exactly `name`.
    pub fn child(&self, node: NodeId, name: &str) -> Option<NodeId> {
        self.child_idx(self.idx(node)?, name).map(|i| self.id(i))
    }

    /// The node's phandle: its `phandle` (else `linux,phandle`, else
    /// `ibm,phandle`) property when it has a valid one, otherwise one the
    /// tree assigned (from [`FIRST_ASSIGNED_PHANDLE`] up).
    pub fn phandle(&self, node: NodeId) -> Option<u32> {
        self.get(node).map(|n| n.phandle)
    }

    /// The node with phandle `ph`.
    pub fn by_phandle(&self, ph: u32) -> Option<NodeId> {
        self.phandles.get(&ph).map(|&i| self.id(i))
    }

    /// Add a child called `name` (`node-name@unit`) at the end of
    /// `parent`'s children; it gets a fresh phandle.
    pub fn add_node(&mut self, parent: NodeId, name: &str) -> Result<NodeId, TreeError> {
        let p = self.idx(parent).ok_or(TreeError::StaleNode)?;
        if !path::valid_node_name(name.as_bytes(), false) {
            return Err(TreeError::BadName);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(TreeError::NameTooLong);
        }
        if self.child_idx(p, name).is_some() {
            return Err(TreeError::NodeExists);
        }
        if self.n(p).depth >= MAX_DEPTH {
            return Err(TreeError::TooDeep);
        }
        if self.nodes >= MAX_NODES {
            return Err(TreeError::TooManyNodes);
        }
        if self.bytes + node_cost(name) > MAX_TREE_BYTES {
            return Err(TreeError::TreeFull);
        }
        let idx = self.alloc_node(p, name.into(), Origin::Firmware);
        let ph = self.fresh_phandle();
        self.set_phandle(idx, ph);
        Ok(self.id(idx))
    }

    /// Remove `node` and its subtree; returns how many nodes went.  Handles
    /// to them become stale.  The root cannot be removed.
    pub fn remove_node(&mut self, node: NodeId) -> Result<usize, TreeError> {
        let idx = self.idx(node).ok_or(TreeError::StaleNode)?;
        if idx == self.root {
            return Err(TreeError::RootNode);
        }
        Ok(self.remove_idx(idx))
    }

    // --- properties --------------------------------------------------------

    /// The properties of `node` as (name, value), in order.
    pub fn props(&self, node: NodeId) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.get(node)
            .into_iter()
            .flat_map(|n| n.props.iter())
            .map(|p| (p.name.as_str(), p.value.as_slice()))
    }

    /// The value of property `name`.
    pub fn prop(&self, node: NodeId, name: &str) -> Option<&[u8]> {
        self.get(node)?
            .props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_slice())
    }

    /// A one-cell property (exactly 4 bytes).
    pub fn prop_u32(&self, node: NodeId, name: &str) -> Option<u32> {
        match *self.prop(node, name)? {
            [a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// A two-cell property (exactly 8 bytes).
    pub fn prop_u64(&self, node: NodeId, name: &str) -> Option<u64> {
        let v = self.prop(node, name)?;
        (v.len() == 8).then(|| read_cells(v))
    }

    /// A string property: the first NUL-terminated UTF-8 string.
    pub fn prop_str(&self, node: NodeId, name: &str) -> Option<&str> {
        let v = self.prop(node, name)?;
        let end = v.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&v[..end]).ok()
    }

    /// A string-list property (NUL-terminated strings back to back).  None
    /// unless the value is UTF-8 ending in NUL (or empty: no strings).
    pub fn prop_strings(&self, node: NodeId, name: &str) -> Option<impl Iterator<Item = &str>> {
        let v = self.prop(node, name)?;
        let body = if v.is_empty() {
            None
        } else {
            Some(core::str::from_utf8(v).ok()?.strip_suffix('\0')?)
        };
        Some(body.into_iter().flat_map(|s| s.split('\0')))
    }

    /// A property as 32-bit cells; None unless its length is a multiple of 4.
    pub fn prop_cells(&self, node: NodeId, name: &str) -> Option<impl Iterator<Item = u32> + '_> {
        let v = self.prop(node, name)?;
        (v.len() % 4 == 0).then(|| {
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The property after `prev` in `node`'s order (IEEE 1275 `nextprop`):
    /// `prev` = "" gives the first.  None at the end, when `prev` does not
    /// exist, or for a stale node.  The order is insertion order and only
    /// changes when properties are added or removed.
    pub fn next_prop(&self, node: NodeId, prev: &str) -> Option<&str> {
        let props = &self.get(node)?.props;
        let i = if prev.is_empty() {
            0
        } else {
            props.iter().position(|p| p.name == prev)? + 1
        };
        props.get(i).map(|p| p.name.as_str())
    }

    /// Add or replace property `name` (the position of a replaced property
    /// is kept).  Setting `phandle`/`linux,phandle`/`ibm,phandle` to a valid
    /// value changes the node's phandle, refused if another node has it.
    pub fn set_prop(&mut self, node: NodeId, name: &str, value: &[u8]) -> Result<(), TreeError> {
        let idx = self.idx(node).ok_or(TreeError::StaleNode)?;
        self.set_prop_idx(idx, name, value, Origin::Firmware)
    }

    pub fn set_prop_u32(&mut self, node: NodeId, name: &str, v: u32) -> Result<(), TreeError> {
        self.set_prop(node, name, &v.to_be_bytes())
    }

    pub fn set_prop_u64(&mut self, node: NodeId, name: &str, v: u64) -> Result<(), TreeError> {
        self.set_prop(node, name, &v.to_be_bytes())
    }

    pub fn set_prop_cells(
        &mut self,
        node: NodeId,
        name: &str,
        cells: &[u32],
    ) -> Result<(), TreeError> {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.set_prop(node, name, &bytes)
    }

    /// A string property (NUL added).
    pub fn set_prop_str(&mut self, node: NodeId, name: &str, s: &str) -> Result<(), TreeError> {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.set_prop(node, name, &v)
    }

    /// Remove property `name`; Ok(false) if the node has none.  Removing a
    /// phandle property does not change the node's phandle.
    pub fn remove_prop(&mut self, node: NodeId, name: &str) -> Result<bool, TreeError> {
        let idx = self.idx(node).ok_or(TreeError::StaleNode)?;
        Ok(self.remove_prop_idx(idx, name))
    }

    // --- addresses ---------------------------------------------------------

    fn cells_prop(&self, node: NodeId, name: &'static str, default: u32) -> Result<u32, TreeError> {
        if !self.contains(node) {
            return Err(TreeError::StaleNode);
        }
        match self.prop(node, name) {
            None => Ok(default),
            Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
            Some(_) => Err(TreeError::BadProperty {
                name,
                reason: "not one cell",
            }),
        }
    }

    /// `#address-cells` of `node`: the address cells of its *children's*
    /// `reg` (IEEE 1275 default 2; not inherited).
    pub fn address_cells(&self, node: NodeId) -> Result<u32, TreeError> {
        self.cells_prop(node, "#address-cells", 2)
    }

    /// `#size-cells` of `node`: the size cells of its children's `reg`
    /// (IEEE 1275 default 1; not inherited).
    pub fn size_cells(&self, node: NodeId) -> Result<u32, TreeError> {
        self.cells_prop(node, "#size-cells", 1)
    }

    /// The cell counts `node`'s own `reg` uses (its parent's; the defaults
    /// for the root).
    fn parent_cells(&self, node: NodeId) -> Result<(u32, u32), TreeError> {
        match self.parent(node) {
            Some(p) => Ok((self.address_cells(p)?, self.size_cells(p)?)),
            None if self.contains(node) => Ok((2, 1)),
            None => Err(TreeError::StaleNode),
        }
    }

    /// `node`'s `reg`, decoded with its parent's `#address-cells` (≤ 3, see
    /// [`RegEntry`] for 3) and `#size-cells` (≤ 2).  No `reg`: no entries.
    pub fn reg(&self, node: NodeId) -> Result<Vec<RegEntry>, TreeError> {
        let (ac, sc) = self.parent_cells(node)?;
        let Some(v) = self.prop(node, "reg") else {
            return Ok(Vec::new());
        };
        let widths = [ac, sc];
        check_cells(ac, sc)?;
        Ok(entries(v, &widths, "reg")?
            .map(|e| {
                let (hi, addr) = split_addr(e[0]);
                RegEntry {
                    hi,
                    addr,
                    size: read_cells(e[1]),
                }
            })
            .collect())
    }

    /// `node`'s `ranges`: None if absent, an empty list for an empty
    /// (identity) `ranges`.  Child addresses use `node`'s `#address-cells`,
    /// parent addresses its parent's, sizes `node`'s `#size-cells`.
    pub fn ranges(&self, node: NodeId) -> Result<Option<Vec<RangeEntry>>, TreeError> {
        let (pac, _) = self.parent_cells(node)?;
        let cac = self.address_cells(node)?;
        let sc = self.size_cells(node)?;
        let Some(v) = self.prop(node, "ranges") else {
            return Ok(None);
        };
        check_cells(cac, sc)?;
        check_cells(pac, sc)?;
        Ok(Some(
            entries(v, &[cac, pac, sc], "ranges")?
                .map(|e| {
                    let (child_hi, child) = split_addr(e[0]);
                    let (parent_hi, parent) = split_addr(e[1]);
                    RangeEntry {
                        child_hi,
                        child,
                        parent_hi,
                        parent,
                        size: read_cells(e[2]),
                    }
                })
                .collect(),
        ))
    }
}

fn check_cells(ac: u32, sc: u32) -> Result<(), TreeError> {
    if ac > MAX_ADDRESS_CELLS || sc > MAX_SIZE_CELLS {
        return Err(TreeError::UnsupportedCells {
            address_cells: ac,
            size_cells: sc,
        });
    }
    Ok(())
}

/// Split an address of up to 3 cells into (phys.hi, low 64 bits).
fn split_addr(cells: &[u8]) -> (u32, u64) {
    if cells.len() == 12 {
        let hi = u32::from_be_bytes([cells[0], cells[1], cells[2], cells[3]]);
        (hi, read_cells(&cells[4..]))
    } else {
        (0, read_cells(cells))
    }
}

/// Cut `v` into entries of fields `widths` cells wide (each ≤ 3 cells).
fn entries<'a>(
    v: &'a [u8],
    widths: &[u32],
    name: &'static str,
) -> Result<impl Iterator<Item = [&'a [u8]; 3]> + 'a, TreeError> {
    let total: usize = widths.iter().map(|&w| w as usize * 4).sum();
    if total == 0 || !v.len().is_multiple_of(total) {
        return Err(TreeError::BadProperty {
            name,
            reason: "length is not a whole number of entries",
        });
    }
    let mut w = [0usize; 3];
    for (d, s) in w.iter_mut().zip(widths) {
        *d = *s as usize * 4;
    }
    Ok(v.chunks_exact(total).map(move |e| {
        let (a, rest) = e.split_at(w[0]);
        let (b, c) = rest.split_at(w[1]);
        [a, b, c]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Tree, NodeId, NodeId) {
        let mut t = Tree::new();
        let root = t.root();
        t.set_prop_u32(root, "#address-cells", 2).unwrap();
        t.set_prop_u32(root, "#size-cells", 2).unwrap();
        let pci = t.add_node(root, "pci@800000020000000").unwrap();
        t.set_prop_u32(pci, "#address-cells", 3).unwrap();
        t.set_prop_u32(pci, "#size-cells", 2).unwrap();
        t.set_prop_cells(pci, "reg", &[0x0800_0000, 0x2000_0000, 0, 0])
            .unwrap();
        let disk = t.add_node(pci, "mass-storage@2").unwrap();
        (t, pci, disk)
    }

    #[test]
    fn links_and_handles() {
        let (mut t, pci, disk) = sample();
        let root = t.root();
        assert_eq!(t.parent(disk), Some(pci));
        assert_eq!(t.parent(root), None);
        assert_eq!(t.first_child(root), Some(pci));
        assert_eq!(t.first_child(pci), Some(disk));
        let b = t.add_node(root, "b").unwrap();
        let c = t.add_node(root, "c").unwrap();
        assert_eq!(t.next_sibling(pci), Some(b));
        assert_eq!(t.next_sibling(b), Some(c));
        assert_eq!(t.next_sibling(c), None);
        assert_eq!(t.children(root).collect::<Vec<_>>(), [pci, b, c]);
        assert_eq!(t.add_node(root, "b"), Err(TreeError::NodeExists));
        assert_eq!(t.node_count(), 5);

        // Remove the middle sibling: links are repaired, handle is stale.
        assert_eq!(t.remove_node(b), Ok(1));
        assert_eq!(t.next_sibling(pci), Some(c));
        assert_eq!(t.name(b), None);
        assert_eq!(t.remove_node(b), Err(TreeError::StaleNode));
        assert_eq!(t.set_prop(b, "x", b""), Err(TreeError::StaleNode));
        // The slot is reused by a new node; the stale handle stays stale.
        let d = t.add_node(root, "d").unwrap();
        assert_ne!(d, b);
        assert_eq!(t.name(b), None);
        assert_eq!(t.name(d), Some("d"));

        // Subtree removal.
        let ph = t.phandle(disk).unwrap();
        assert_eq!(t.remove_node(pci), Ok(2));
        assert!(!t.contains(disk));
        assert_eq!(t.by_phandle(ph), None);
        assert_eq!(t.remove_node(root), Err(TreeError::RootNode));
        assert_eq!(t.children(root).collect::<Vec<_>>(), [c, d]);
        assert_eq!(t.node_count(), 3);
    }

    #[test]
    fn properties() {
        let (mut t, pci, _) = sample();
        let long = "ibm,associativity-reference-points-and-more-than-31";
        t.set_prop(pci, long, &[1, 2, 3, 4]).unwrap();
        t.set_prop(pci, "used-by-rtas", &[]).unwrap();
        t.set_prop_str(pci, "compatible", "IBM,Logical_PHB")
            .unwrap();
        t.set_prop(pci, "strs", b"a\0bc\0").unwrap();
        assert_eq!(t.prop_u32(pci, long), Some(0x0102_0304));
        assert_eq!(t.prop(pci, "used-by-rtas"), Some(&[][..]));
        assert_eq!(t.prop_str(pci, "compatible"), Some("IBM,Logical_PHB"));
        assert_eq!(
            t.prop_strings(pci, "strs").unwrap().collect::<Vec<_>>(),
            ["a", "bc"]
        );
        assert_eq!(t.prop_strings(pci, "used-by-rtas").unwrap().count(), 0);
        assert!(t.prop_strings(pci, long).is_none());
        assert_eq!(t.prop_u64(pci, "reg"), None);
        assert_eq!(t.prop_cells(pci, "reg").unwrap().count(), 4);
        assert_eq!(t.prop_u32(pci, "nothing"), None);

        // nextprop order: insertion order, replacement keeps the place.
        let mut names = Vec::new();
        let mut prev = "";
        while let Some(n) = t.next_prop(pci, prev) {
            names.push(n);
            prev = n;
        }
        assert_eq!(
            names,
            [
                "#address-cells",
                "#size-cells",
                "reg",
                long,
                "used-by-rtas",
                "compatible",
                "strs"
            ]
        );
        let mut t2 = t.clone();
        t2.set_prop_u32(pci, "#size-cells", 1).unwrap();
        assert_eq!(t2.next_prop(pci, "#address-cells"), Some("#size-cells"));
        assert_eq!(t2.next_prop(pci, "no-such"), None);
        assert_eq!(t2.remove_prop(pci, "reg"), Ok(true));
        assert_eq!(t2.remove_prop(pci, "reg"), Ok(false));
        assert_eq!(t2.next_prop(pci, "#size-cells"), Some(long));

        assert_eq!(t.set_prop(pci, "", b""), Err(TreeError::BadName));
        assert_eq!(t.set_prop(pci, "a b", b""), Err(TreeError::BadName));
        let too_long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(t.set_prop(pci, &too_long, b""), Err(TreeError::NameTooLong));
        let big = alloc::vec![0u8; MAX_PROP_LEN + 1];
        assert!(matches!(
            t.set_prop(pci, "big", &big),
            Err(TreeError::PropTooLarge { .. })
        ));
        assert_eq!(t.add_node(pci, "a/b"), Err(TreeError::BadName));
        assert_eq!(t.add_node(pci, ""), Err(TreeError::BadName));
    }

    #[test]
    fn phandles() {
        let (mut t, pci, disk) = sample();
        let root = t.root();
        // Assigned phandles are unique and found again.
        let (p1, p2) = (t.phandle(pci).unwrap(), t.phandle(disk).unwrap());
        assert_ne!(p1, p2);
        assert_eq!(t.by_phandle(p1), Some(pci));
        // A phandle property sets it; taking another node's is refused.
        t.set_prop_u32(pci, "phandle", 0x1111).unwrap();
        assert_eq!(t.phandle(pci), Some(0x1111));
        assert_eq!(t.by_phandle(0x1111), Some(pci));
        assert_eq!(t.by_phandle(p1), None);
        assert_eq!(
            t.set_prop_u32(disk, "linux,phandle", 0x1111),
            Err(TreeError::PhandleInUse(0x1111))
        );
        assert_eq!(t.prop(disk, "linux,phandle"), None);
        // linux,phandle equal to phandle on the same node is fine.
        t.set_prop_u32(pci, "linux,phandle", 0x1111).unwrap();
        // Removing the properties keeps the phandle.
        t.remove_prop(pci, "phandle").unwrap();
        t.remove_prop(pci, "linux,phandle").unwrap();
        assert_eq!(t.phandle(pci), Some(0x1111));
        // 0 and 0xffffffff are not phandles.
        t.set_prop_u32(disk, "phandle", 0).unwrap();
        assert_eq!(t.phandle(disk), Some(p2));
        // New nodes never get a phandle in use.
        t.next_phandle = 0x1111;
        let n = t.add_node(root, "n").unwrap();
        assert_ne!(t.phandle(n), Some(0x1111));
    }

    #[test]
    fn reg_and_ranges() {
        let (mut t, pci, disk) = sample();
        assert_eq!(
            t.reg(pci).unwrap(),
            [RegEntry {
                hi: 0,
                addr: 0x0800_0000_2000_0000,
                size: 0
            }]
        );
        // PCI: 3 address cells, phys.hi kept apart.
        t.set_prop_cells(
            disk,
            "reg",
            &[0x1000, 0, 0, 0, 0, 0x0200_1010, 0, 0, 0, 0x4000],
        )
        .unwrap();
        assert_eq!(
            t.reg(disk).unwrap(),
            [
                RegEntry {
                    hi: 0x1000,
                    addr: 0,
                    size: 0
                },
                RegEntry {
                    hi: 0x0200_1010,
                    addr: 0,
                    size: 0x4000
                }
            ]
        );
        // QEMU's PHB ranges: PIO and MMIO32.
        t.set_prop_cells(
            pci,
            "ranges",
            &[
                0x0100_0000,
                0,
                0,
                0x2000,
                0,
                0,
                0x10000, //
                0x0200_0000,
                0,
                0x8000_0000,
                0x2000,
                0x8000_0000,
                0,
                0x8000_0000,
            ],
        )
        .unwrap();
        let r = t.ranges(pci).unwrap().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[1],
            RangeEntry {
                child_hi: 0x0200_0000,
                child: 0x8000_0000,
                parent_hi: 0,
                parent: 0x2000_8000_0000,
                size: 0x8000_0000
            }
        );
        assert_eq!(t.ranges(disk).unwrap(), None);
        t.set_prop(disk, "ranges", &[]).unwrap();
        assert_eq!(t.ranges(disk).unwrap(), Some(Vec::new()));

        // Bad lengths and absurd cell counts are errors.
        t.set_prop(disk, "reg", &[0; 12]).unwrap();
        assert!(matches!(t.reg(disk), Err(TreeError::BadProperty { .. })));
        t.set_prop_u32(pci, "#address-cells", 0xffff_ffff).unwrap();
        assert!(matches!(
            t.reg(disk),
            Err(TreeError::UnsupportedCells { .. })
        ));
        t.set_prop_u32(pci, "#address-cells", 0).unwrap();
        t.set_prop_u32(pci, "#size-cells", 0).unwrap();
        assert!(matches!(t.reg(disk), Err(TreeError::BadProperty { .. })));
        t.set_prop(pci, "#size-cells", &[0, 0]).unwrap();
        assert!(matches!(
            t.size_cells(pci),
            Err(TreeError::BadProperty { .. })
        ));
        let stale = t.add_node(pci, "gone").unwrap();
        t.remove_node(stale).unwrap();
        assert_eq!(t.reg(stale), Err(TreeError::StaleNode));
        assert_eq!(t.address_cells(stale), Err(TreeError::StaleNode));
    }

    #[test]
    fn limits() {
        let mut t = Tree::new();
        let root = t.root();
        let mut n = root;
        for i in 1..MAX_DEPTH {
            n = t.add_node(n, &alloc::format!("d{i}")).unwrap();
        }
        assert_eq!(t.add_node(n, "deeper"), Err(TreeError::TooDeep));
        // Tree size: a few maximal properties fill it.
        let big = alloc::vec![0u8; MAX_PROP_LEN];
        let mut i = 0;
        let err = loop {
            match t.set_prop(root, &alloc::format!("p{i}"), &big) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, TreeError::TreeFull);
        assert!(i >= MAX_TREE_BYTES / MAX_PROP_LEN - 1);
    }
}
