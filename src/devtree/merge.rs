//! Merging a partial tree into the live tree: what the firmware does with
//! the tree H_CAS returns (QEMU pseries contract §2.1, §2.2).
//!
//! # What QEMU returns
//! At CAS QEMU rebuilds its *whole* tree with `spapr_build_fdt(reset =
//! false)` (hw/ppc/spapr.c): every node is there again — with the
//! interrupt controller possibly switched between XICS (`interrupt-controller`)
//! and XIVE (`interrupt-controller@…`), `ibm,dynamic-reconfiguration-memory`
//! possibly new, unplugged devices gone — except that `/chosen` only holds
//! `rng-seed` and `ibm,architecture-vec-5` (no `bootargs`, `linux,initrd-*`,
//! `stdout-path`, `qemu,boot-kernel`…), and there is no reserve map.  QEMU
//! reuses its phandles (the interrupt controller is 0x1111 in both trees).
//!
//! # The rule [`Tree::merge`] applies
//! Nodes are matched by full name, level by level from the root.
//! 1. A live node with no counterpart in the partial tree is removed with
//!    its subtree if the platform created it (it came from QEMU's blob or an
//!    earlier merge); nodes the firmware or the client added (`add_node`)
//!    are kept, and so is `/chosen`.  This pass runs first, so a removed
//!    node's phandle (0x1111 of the old interrupt controller) is free for
//!    its replacement.
//! 2. A partial node with no live counterpart is added (with its subtree).
//! 3. On matched nodes, every property of the partial node is set: new
//!    ones are appended, changed ones replaced in place, equal ones left
//!    alone ("the platform wins" — a firmware decision stored in a platform
//!    property, such as a re-sized `ibm,dma-window`, must be re-applied
//!    after the merge).  A live property missing from the partial node is
//!    removed only if the platform set it, it is not a `linux,*` property
//!    (those belong to the OS: `/rtas` `linux,rtas-base`, …) and the node is
//!    not `/chosen` (whose other properties QEMU leaves out at CAS).
//!    Properties the firmware or client set are kept.
//! 4. Phandles: matched nodes keep their [`NodeId`](super::NodeId) and, unless
//!    the partial tree gives them a different phandle property, their
//!    phandle — so a client's `/chosen` or root phandle survives CAS.  If a
//!    phandle the partial tree gives is held by another live node (only
//!    possible with a firmware-assigned or firmware-set phandle), that node
//!    moves to a fresh phandle and its phandle properties are rewritten.
//!    New nodes without a phandle property get a fresh one.
//! 5. The live reserve map and `boot_cpuid_phys` are kept.
//!
//! Before changing anything the merge checks that the result cannot exceed
//! the tree limits (counting live plus partial sizes), so it either fails
//! untouched or completes.

use super::tree::{explicit_phandle, Origin, Tree, MAX_NODES, MAX_TREE_BYTES};
use super::TreeError;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// What a merge changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub nodes_added: usize,
    pub nodes_removed: usize,
    /// Properties added or given a new value.
    pub props_set: usize,
    pub props_removed: usize,
    /// Live nodes moved to a fresh phandle to make room for the partial
    /// tree's.
    pub phandles_renumbered: usize,
}

/// Slot indices of `t`'s children of `idx`, by name.
fn children_by_name(t: &Tree, idx: u32) -> BTreeMap<&str, u32> {
    let mut map = BTreeMap::new();
    let mut c = t.n(idx).first_child;
    while let Some(i) = c {
        map.insert(t.n(i).name.as_str(), i);
        c = t.n(i).next;
    }
    map
}

impl Tree {
    /// Merge `partial` into this tree by the rule in the module
    /// documentation.
    pub fn merge(&mut self, partial: &Tree) -> Result<MergeStats, TreeError> {
        if self.nodes + partial.nodes > MAX_NODES {
            return Err(TreeError::TooManyNodes);
        }
        if self.bytes + partial.bytes > MAX_TREE_BYTES {
            return Err(TreeError::TreeFull);
        }
        let mut stats = MergeStats::default();
        let chosen = self.child_idx(self.root, "chosen");

        // Pass 1: drop platform nodes the partial tree no longer has.
        let mut stack = alloc::vec![(self.root, partial.root)];
        while let Some((live, part)) = stack.pop() {
            let wanted = children_by_name(partial, part);
            let mut c = self.n(live).first_child;
            while let Some(i) = c {
                c = self.n(i).next;
                match wanted.get(self.n(i).name.as_str()) {
                    Some(&p) => stack.push((i, p)),
                    None if self.n(i).origin == Origin::Platform && Some(i) != chosen => {
                        stats.nodes_removed += self.remove_idx(i);
                    }
                    None => {}
                }
            }
        }

        // Pass 2: add nodes, set and drop properties.
        let mut stack = alloc::vec![(self.root, partial.root)];
        while let Some((live, part)) = stack.pop() {
            self.merge_props(live, partial, part, Some(live) == chosen, &mut stats)?;
            if self.n(live).phandle == 0 {
                let ph = self.fresh_phandle();
                self.set_phandle(live, ph);
            }
            let mut c = partial.n(part).first_child;
            while let Some(p) = c {
                c = partial.n(p).next;
                let name = partial.n(p).name.as_str();
                let l = match self.child_idx(live, name) {
                    Some(l) => l,
                    None => {
                        stats.nodes_added += 1;
                        self.alloc_node(live, name.into(), Origin::Platform)
                    }
                };
                stack.push((l, p));
            }
        }
        Ok(stats)
    }

    /// Step 3 and 4 of the rule for one matched (or new) node.
    fn merge_props(
        &mut self,
        live: u32,
        partial: &Tree,
        part: u32,
        is_chosen: bool,
        stats: &mut MergeStats,
    ) -> Result<(), TreeError> {
        let pnode = partial.n(part);
        // Make room for the phandle the partial node brings.
        if let Some(ph) = explicit_phandle(&pnode.props, None) {
            if let Some(&holder) = self.phandles.get(&ph) {
                if holder != live {
                    self.renumber_phandle(holder);
                    stats.phandles_renumbered += 1;
                }
            }
        }
        for p in &pnode.props {
            let same = self
                .n(live)
                .props
                .iter()
                .any(|q| q.name == p.name && q.value == p.value);
            if same {
                continue;
            }
            // A phandle property weaker than one already set can still name
            // another node's phandle: move that node and retry once.
            match self.set_prop_idx(live, &p.name, &p.value, Origin::Platform) {
                Err(TreeError::PhandleInUse(ph)) => {
                    if let Some(&holder) = self.phandles.get(&ph) {
                        self.renumber_phandle(holder);
                        stats.phandles_renumbered += 1;
                    }
                    self.set_prop_idx(live, &p.name, &p.value, Origin::Platform)?;
                }
                r => r?,
            }
            stats.props_set += 1;
        }
        if !is_chosen {
            let gone: Vec<alloc::string::String> = self
                .n(live)
                .props
                .iter()
                .filter(|q| {
                    q.origin == Origin::Platform
                        && !q.name.starts_with("linux,")
                        && !pnode.props.iter().any(|p| p.name == q.name)
                })
                .map(|q| q.name.clone())
                .collect();
            for name in gone {
                self.remove_prop_idx(live, &name);
                stats.props_removed += 1;
            }
        }
        Ok(())
    }
}
