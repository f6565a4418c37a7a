//! The firmware's live device tree (IEEE Std 1275-1994 §3.2 "Device tree";
//! Devicetree Specification v0.4 ch. 5 for the flattened form; QEMU pseries
//! contract §1.4, §2.1–2.3; linux-expectations.md §1.9, §2.2, §2.3, §2.9).
//!
//! Everything later — the client interface, RTAS, PCI, CAS, H_UPDATE_DT and
//! the hand-over to Linux — works on one mutable, phandle-addressed [`Tree`]
//! that starts as QEMU's flattened tree:
//!
//! * [`fdt`]: a validated, zero-copy, allocation-free FDT reader, with the
//!   path/property helpers start-up needs before the heap exists.
//! * [`Tree`] ([`tree`]): arena of nodes with [`NodeId`] handles (stale
//!   handles are detected, never followed), properties as raw bytes with
//!   typed accessors, `reg`/`ranges` decoding, phandles.
//! * [`path`]: IEEE 1275 path lookup (`finddevice`, aliases, relative
//!   paths) and `package-to-path`.
//! * `flatten`: [`Tree::from_fdt`] / [`Tree::to_fdt`].
//! * `merge`: [`Tree::merge`], folding a partial tree (what H_CAS returns)
//!   into the live tree.
//! * [`dma`]: the typed DMA-window model (`ibm,dma-window`, DDW properties,
//!   BUIDs, RTAS tokens), its consistency warnings and its writers.
//!
//! # Phandles
//! A node's phandle is its `phandle` property (else `linux,phandle`, else
//! `ibm,phandle`) when that holds a valid value (not 0 or 0xffffffff); QEMU
//! gives one to its interrupt controller (0x1111), which PHB `interrupt-map`s
//! reference.  papr-fw keeps QEMU's phandles so that the tree it hands back
//! (H_UPDATE_DT) and QEMU's later additions (hot-plugged PHBs take 0x1111
//! from QEMU's copy, contract §2.3) agree.  Nodes without one get a fresh
//! value from [`tree::FIRST_ASSIGNED_PHANDLE`] up, never reused while the
//! node lives; the assigned value is not written as a property (the
//! flattened tree is QEMU's plus what the firmware set).  Duplicate phandle
//! properties in a blob are refused.
//!
//! # Limits
//! A hostile blob cannot exhaust memory or the stack: at most
//! [`tree::MAX_NODES`] nodes, [`fdt::MAX_DEPTH`] levels, names of
//! [`fdt::MAX_NAME_LEN`] bytes, property values of [`tree::MAX_PROP_LEN`]
//! bytes and a flattened size of [`tree::MAX_TREE_BYTES`]; the same limits
//! apply to `add_node`/`set_prop`.  No walk recurses.
//!
//! # Names
//! Node names are kept exactly as given (`pci@800000020000000`); the IEEE
//! 1275 `name` property (the part before `@`, [`Tree::node_name`]) is not
//! stored, as in QEMU's tree — the client interface presents it.

pub mod dma;
pub mod fdt;
mod flatten;
mod merge;
pub mod path;
pub mod tree;

#[cfg(test)]
mod tests;

pub use fdt::{Fdt, FdtError, ReserveEntry};
pub use merge::MergeStats;
pub use tree::{NodeId, RangeEntry, RegEntry, Tree};

use core::fmt;

/// Why a tree operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// The handle refers to a removed node.  (Handles are only meaningful
    /// for the tree that issued them.)
    StaleNode,
    /// Empty, non-printable, or (for nodes) containing `/` or `:`.
    BadName,
    NameTooLong,
    /// A sibling already has this name.
    NodeExists,
    /// The root node cannot be removed.
    RootNode,
    TooManyNodes,
    TooDeep,
    PropTooLarge {
        len: usize,
    },
    /// The tree would exceed [`tree::MAX_TREE_BYTES`].
    TreeFull,
    /// Another node has this phandle.
    PhandleInUse(u32),
    /// A property does not have the format its name implies.
    BadProperty {
        name: &'static str,
        reason: &'static str,
    },
    /// Cell counts beyond what `reg`/`ranges` decoding supports.
    UnsupportedCells {
        address_cells: u32,
        size_cells: u32,
    },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TreeError::StaleNode => write!(f, "stale node handle"),
            TreeError::BadName => write!(f, "invalid name"),
            TreeError::NameTooLong => write!(f, "name longer than {} bytes", fdt::MAX_NAME_LEN),
            TreeError::NodeExists => write!(f, "a node with that name exists"),
            TreeError::RootNode => write!(f, "the root node cannot be removed"),
            TreeError::TooManyNodes => write!(f, "more than {} nodes", tree::MAX_NODES),
            TreeError::TooDeep => write!(f, "nesting deeper than {}", fdt::MAX_DEPTH),
            TreeError::PropTooLarge { len } => write!(
                f,
                "property of {len:#x} bytes exceeds {:#x}",
                tree::MAX_PROP_LEN
            ),
            TreeError::TreeFull => write!(f, "tree larger than {:#x} bytes", tree::MAX_TREE_BYTES),
            TreeError::PhandleInUse(ph) => write!(f, "phandle {ph:#x} is in use"),
            TreeError::BadProperty { name, reason } => write!(f, "bad {name}: {reason}"),
            TreeError::UnsupportedCells {
                address_cells,
                size_cells,
            } => write!(
                f,
                "unsupported cell counts #address-cells={address_cells} #size-cells={size_cells}"
            ),
        }
    }
}
