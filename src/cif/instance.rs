//! Open instances and their ihandles (IEEE 1275 §4.1 "instances", §6.3.2.3
//! `open`/`close`/`read`/`write`/`seek`, `instance-to-package`).
//!
//! An instance is an opened package: the node, what kind of device it drives,
//! the arguments it was opened with and, for block devices, a position.
//! ihandles are small non-zero numbers unrelated to phandles (Linux and GRUB
//! only require them to be neither 0 nor -1).

use crate::devtree::NodeId;
use alloc::string::String;
use alloc::vec::Vec;

/// First ihandle handed out.
pub const IHANDLE_BASE: u32 = 0x1000;
/// Most instances open at once (a client that leaks instances gets an error
/// rather than exhausting the firmware's memory).
pub const MAX_INSTANCES: usize = 256;

/// What an instance can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The vty: `write` prints, `read` takes pending input.
    Console { vtermno: u64 },
    /// The root node: method `ibm,client-architecture-support`.
    Root,
    /// `/rtas`: method `instantiate-rtas`.
    Rtas,
    /// Any other package opened for its properties (CPUs, memory).
    Package,
    /// A disk or one of its partitions: bytes `base..base+size` of disk
    /// `disk` of [`crate::storage::Storage`] (`src/cif/block.rs`).
    Block { disk: u32, base: u64, size: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub node: NodeId,
    pub kind: Kind,
    /// The `:args` part of the path it was opened with.
    pub args: String,
    /// Byte position (seek/read/write on block devices).
    pub position: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Instances {
    slots: Vec<Option<Instance>>,
}

impl Instances {
    pub fn open(&mut self, inst: Instance) -> Option<u32> {
        let idx = match self.slots.iter().position(|s| s.is_none()) {
            Some(i) => i,
            None if self.slots.len() < MAX_INSTANCES => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return None,
        };
        self.slots[idx] = Some(inst);
        Some(IHANDLE_BASE + idx as u32)
    }

    fn index(ih: u32) -> Option<usize> {
        ih.checked_sub(IHANDLE_BASE).map(|i| i as usize)
    }

    pub fn get(&self, ih: u32) -> Option<&Instance> {
        self.slots.get(Self::index(ih)?)?.as_ref()
    }

    pub fn get_mut(&mut self, ih: u32) -> Option<&mut Instance> {
        self.slots.get_mut(Self::index(ih)?)?.as_mut()
    }

    pub fn close(&mut self, ih: u32) -> bool {
        match Self::index(ih).and_then(|i| self.slots.get_mut(i)) {
            Some(s @ Some(_)) => {
                *s = None;
                true
            }
            _ => false,
        }
    }

    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtree::Tree;

    #[test]
    fn ihandles_are_reused_and_bounded() {
        let t = Tree::new();
        let inst = Instance {
            node: t.root(),
            kind: Kind::Root,
            args: String::new(),
            position: 0,
        };
        let mut i = Instances::default();
        let a = i.open(inst.clone()).unwrap();
        let b = i.open(inst.clone()).unwrap();
        assert_eq!((a, b), (IHANDLE_BASE, IHANDLE_BASE + 1));
        assert!(i.close(a));
        assert!(!i.close(a), "double close");
        assert!(!i.close(0) && !i.close(u32::MAX));
        assert_eq!(i.open(inst.clone()), Some(a));
        assert!(i.get(0).is_none() && i.get(0xffff_ffff).is_none());
        for _ in 0..MAX_INSTANCES - 2 {
            i.open(inst.clone()).unwrap();
        }
        assert_eq!(i.open(inst), None);
        assert_eq!(i.open_count(), MAX_INSTANCES);
    }
}
