//! Unflatten an FDT into a [`Tree`] and flatten a tree back into an FDT
//! (Devicetree Specification v0.4 ch. 5).  The flattened form is what QEMU
//! gets with H_UPDATE_DT (contract §2.3: must pass libfdt's `fdt_check_full`)
//! and what a kernel booted without prom_init receives.
//!
//! Output layout (as dtc writes it): v17 header (`last_comp_version` 16),
//! memory reserve map at 0x28, structure block, strings block; property
//! names are stored once each in the strings block; `totalsize`,
//! `size_dt_struct` and `size_dt_strings` are exact.

use super::fdt::{Fdt, FdtError, Token, FDT_MAGIC, HEADER_SIZE};
use super::tree::{
    node_cost, prop_cost, Origin, Prop, Tree, MAX_NODES, MAX_PROP_LEN, MAX_TREE_BYTES,
    PHANDLE_PROPS,
};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

/// The names seen so far in one node (children or properties): a short
/// array scanned linearly (no allocation for ordinary nodes), a set once a
/// node has many, so a hostile blob cannot make the duplicate check
/// quadratic.
#[derive(Default)]
struct Names<'a> {
    few: [&'a str; 16],
    len: usize,
    many: BTreeSet<&'a str>,
}

impl<'a> Names<'a> {
    /// False if `name` was seen before.
    fn insert(&mut self, name: &'a str) -> bool {
        if self.len < self.few.len() {
            if self.few[..self.len].contains(&name) {
                return false;
            }
            self.few[self.len] = name;
            self.len += 1;
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().copied());
        }
        self.many.insert(name)
    }
}

impl Tree {
    /// Unflatten a blob.  Everything [`Fdt::new`] checks, plus the tree
    /// limits ([`MAX_NODES`], [`MAX_PROP_LEN`], [`MAX_TREE_BYTES`]), unique
    /// child names, unique property names per node and unique phandles.
    /// Nodes without a valid phandle property get a fresh phandle.
    pub fn from_fdt(blob: &[u8]) -> Result<Tree, FdtError> {
        let fdt = Fdt::new(blob)?;
        let mut tree = Tree::new();
        tree.boot_cpuid_phys = fdt.boot_cpuid_phys();
        for e in fdt.reserve_map() {
            tree.reserve.push(e?);
        }
        // Blob offset of each node, by slot index (slots are handed out in
        // order in a new tree), for error messages.
        let mut offsets: Vec<usize> = Vec::new();
        // Open nodes: (slot index, names of its children, names of its props).
        let mut stack: Vec<(u32, Names, Names)> = Vec::new();
        for token in fdt.walk() {
            match token? {
                Token::BeginNode { offset, name } => {
                    let Some((parent, child_names, _)) = stack.last_mut() else {
                        // The root (the walker guarantees exactly one).
                        offsets.push(offset);
                        stack.push((tree.root, Names::default(), Names::default()));
                        continue;
                    };
                    if !child_names.insert(name) {
                        return Err(FdtError::DuplicateNode { offset });
                    }
                    if tree.nodes >= MAX_NODES {
                        return Err(FdtError::TooManyNodes { limit: MAX_NODES });
                    }
                    if tree.bytes + node_cost(name) > MAX_TREE_BYTES {
                        return Err(FdtError::TreeTooLarge {
                            limit: MAX_TREE_BYTES,
                        });
                    }
                    let parent = *parent;
                    let idx = tree.alloc_node(parent, name.into(), Origin::Platform);
                    offsets.push(offset);
                    stack.push((idx, Names::default(), Names::default()));
                }
                Token::Prop {
                    offset,
                    name,
                    value,
                } => {
                    // The walker only yields properties inside a node.
                    let Some((idx, _, prop_names)) = stack.last_mut() else {
                        return Err(FdtError::PropOutsideNode { offset });
                    };
                    if !prop_names.insert(name) {
                        return Err(FdtError::DuplicateProp { offset });
                    }
                    if value.len() > MAX_PROP_LEN {
                        return Err(FdtError::PropTooLarge {
                            offset,
                            len: value.len(),
                        });
                    }
                    let cost = prop_cost(name, value.len());
                    if tree.bytes + cost > MAX_TREE_BYTES {
                        return Err(FdtError::TreeTooLarge {
                            limit: MAX_TREE_BYTES,
                        });
                    }
                    tree.bytes += cost;
                    let idx = *idx;
                    tree.n_mut(idx).props.push(Prop {
                        name: name.into(),
                        value: value.into(),
                        origin: Origin::Platform,
                    });
                }
                Token::EndNode { .. } => {
                    stack.pop();
                }
            }
        }
        tree.assign_phandles(&offsets)?;
        Ok(tree)
    }

    /// After unflattening: index the nodes' own phandles (refusing
    /// duplicates), then give the others fresh ones.
    fn assign_phandles(&mut self, offsets: &[usize]) -> Result<(), FdtError> {
        self.phandles.clear();
        let all: Vec<u32> = self.descendants_idx(self.root).collect();
        for &i in &all {
            self.n_mut(i).phandle = 0;
            let props = &self.n(i).props;
            let own = PHANDLE_PROPS.iter().find_map(|&name| {
                let p = props.iter().find(|p| p.name == name)?;
                match *p.value.as_slice() {
                    [a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
                    _ => None,
                }
                .filter(|&ph| ph != 0 && ph != u32::MAX)
            });
            if let Some(ph) = own {
                if self.phandles.insert(ph, i).is_some() {
                    return Err(FdtError::DuplicatePhandle {
                        offset: offsets.get(i as usize).copied().unwrap_or(0),
                        phandle: ph,
                    });
                }
                self.n_mut(i).phandle = ph;
            }
        }
        for &i in &all {
            if self.n(i).phandle == 0 {
                let ph = self.fresh_phandle();
                self.set_phandle(i, ph);
            }
        }
        Ok(())
    }

    /// The strings block and each property name's offset in it.  Every
    /// name is stored once, and a name that is the tail of another
    /// (`phandle` of `linux,phandle`) points into that one, as libfdt also
    /// does.  Names appear in order of first use.
    fn strings_block(&self) -> (Vec<u8>, BTreeMap<&str, u32>) {
        let mut names: Vec<&str> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for i in self.descendants_idx(self.root) {
            for p in &self.n(i).props {
                if seen.insert(p.name.as_str()) {
                    names.push(&p.name);
                }
            }
        }
        // Sorted by reversed bytes, a name is followed by the names that end
        // with it; the last of such a run holds all the others.
        let mut by_tail: Vec<usize> = (0..names.len()).collect();
        by_tail.sort_by(|&a, &b| names[a].bytes().rev().cmp(names[b].bytes().rev()));
        let mut host: Vec<usize> = (0..names.len()).collect();
        for k in (0..by_tail.len().saturating_sub(1)).rev() {
            let (this, next) = (by_tail[k], by_tail[k + 1]);
            if names[next].ends_with(names[this]) {
                host[this] = host[next];
            }
        }
        let mut block = Vec::new();
        let mut host_off = alloc::vec![0u32; names.len()];
        for (i, name) in names.iter().enumerate() {
            if host[i] == i {
                host_off[i] = block.len() as u32;
                block.extend_from_slice(name.as_bytes());
                block.push(0);
            }
        }
        let offsets = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let h = host[i];
                (*name, host_off[h] + (names[h].len() - name.len()) as u32)
            })
            .collect();
        (block, offsets)
    }

    /// Flatten into a v17 blob.
    pub fn to_fdt(&self) -> Vec<u8> {
        let (strings, string_off) = self.strings_block();
        let mut structs: Vec<u8> = Vec::with_capacity(self.bytes);
        let put = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_be_bytes());
        let pad = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(4), 0);

        // Pre-order walk that also emits FDT_END_NODE when climbing.
        let mut next = Some(self.root);
        while let Some(cur) = next {
            let n = self.n(cur);
            put(&mut structs, 1); // FDT_BEGIN_NODE
            structs.extend_from_slice(n.name.as_bytes());
            structs.push(0);
            pad(&mut structs);
            for p in &n.props {
                let off = string_off.get(p.name.as_str()).copied().unwrap_or(0);
                put(&mut structs, 3); // FDT_PROP
                put(&mut structs, p.value.len() as u32);
                put(&mut structs, off);
                structs.extend_from_slice(&p.value);
                pad(&mut structs);
            }
            next = match n.first_child {
                Some(c) => Some(c),
                None => {
                    let mut at = cur;
                    loop {
                        put(&mut structs, 2); // FDT_END_NODE
                        let a = self.n(at);
                        if let Some(s) = a.next {
                            break Some(s);
                        }
                        match a.parent {
                            Some(p) => at = p,
                            None => break None,
                        }
                    }
                }
            };
        }
        put(&mut structs, 9); // FDT_END

        // A zero-sized entry would read back as the map's terminator.
        let reserve: Vec<_> = self.reserve.iter().filter(|e| e.size != 0).collect();
        let off_rsvmap = HEADER_SIZE;
        let off_struct = off_rsvmap + (reserve.len() + 1) * 16;
        let off_strings = off_struct + structs.len();
        let total = off_strings + strings.len();
        let mut out = Vec::with_capacity(total);
        for field in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsvmap as u32,
            17, // version
            16, // last_comp_version
            self.boot_cpuid_phys,
            strings.len() as u32,
            structs.len() as u32,
        ] {
            put(&mut out, field);
        }
        for e in reserve {
            out.extend_from_slice(&e.address.to_be_bytes());
            out.extend_from_slice(&e.size.to_be_bytes());
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&structs);
        out.extend_from_slice(&strings);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_round_trip() {
        let t = Tree::new();
        let blob = t.to_fdt();
        assert_eq!(blob.len(), 40 + 16 + 4 * 4);
        let t2 = Tree::from_fdt(&blob).unwrap();
        assert_eq!(t2.node_count(), 1);
        assert_eq!(t2.to_fdt(), blob);
    }

    #[test]
    fn header_fields() {
        let mut t = Tree::new();
        let root = t.root();
        t.set_prop_str(root, "compatible", "qemu,pseries").unwrap();
        let c = t.add_node(root, "chosen").unwrap();
        t.set_prop_str(c, "compatible", "x").unwrap();
        t.add_reserve(0x40_0000, 0x1000);
        t.set_boot_cpuid_phys(8);
        let blob = t.to_fdt();
        let fdt = Fdt::new(&blob).unwrap();
        let h = fdt.header();
        assert_eq!((h.version, h.last_comp_version), (17, 16));
        assert_eq!(h.totalsize as usize, blob.len());
        assert_eq!(h.boot_cpuid_phys, 8);
        assert_eq!(h.off_mem_rsvmap, 40);
        // "compatible" is stored once.
        assert_eq!(h.size_dt_strings as usize, "compatible\0".len());
        // Tails share: "phandle" lives inside "linux,phandle".
        t.set_prop_u32(c, "linux,phandle", 0x77).unwrap();
        t.set_prop_u32(c, "phandle", 0x77).unwrap();
        t.set_prop_u32(c, "ibm,phandle", 0x77).unwrap();
        let b2 = t.to_fdt();
        let f2 = Fdt::new(&b2).unwrap();
        assert_eq!(
            f2.header().size_dt_strings as usize,
            "compatible\0linux,phandle\0ibm,phandle\0".len()
        );
        let chosen = f2.find_node("/chosen").unwrap().unwrap();
        let names: Vec<_> = f2.props(&chosen).map(|p| p.unwrap().0).collect();
        assert_eq!(
            names,
            ["compatible", "linux,phandle", "phandle", "ibm,phandle"]
        );
        assert_eq!(h.off_dt_strings, h.off_dt_struct + h.size_dt_struct);
        let t2 = Tree::from_fdt(&blob).unwrap();
        assert_eq!(t2.reserve_map(), t.reserve_map());
        assert_eq!(t2.boot_cpuid_phys(), 8);
        // Empty reservations are not written (one would end the map).
        t.add_reserve(0, 0);
        t.add_reserve(0x80_0000, 0x1000);
        let t3 = Tree::from_fdt(&t.to_fdt()).unwrap();
        assert_eq!(t3.reserve_map().len(), 2);
        assert_eq!(t3.reserve_map()[1].address, 0x80_0000);
    }
}
