//! The functions under a PHB as the tree lists them, checked against config
//! space, with their BARs sized (PCI Bus Binding to IEEE 1275 §2.2.1.1 and
//! §4.1.1 `reg`, §3.1.1 host bridge `ranges`; PCI 3.0 §6.2.5.1 BAR sizing;
//! QEMU pseries contract §4.6).
//!
//! The tree is the inventory (QEMU lists every function with a node whose
//! first `reg` entry is its config space and whose other entries name its
//! BARs and their sizes); config space is the truth: a node whose function
//! does not answer, or answers with other IDs or another header type, is
//! reported and left alone, and BAR sizes come from config space (a
//! disagreement with `reg` is reported).

use super::config::{ConfigAccess, ConfigError};
use super::{command, reg, Bdf};
use crate::devtree::{RangeEntry, RegEntry};
use crate::platform::Platform;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The `ss` field of a PCI `phys.hi` cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    Config,
    Io,
    Mem32,
    Mem64,
}

impl Space {
    pub const fn from_phys_hi(hi: u32) -> Self {
        match (hi >> 24) & 3 {
            0 => Space::Config,
            1 => Space::Io,
            2 => Space::Mem32,
            _ => Space::Mem64,
        }
    }
    pub const fn ss(self) -> u32 {
        match self {
            Space::Config => 0,
            Space::Io => 1,
            Space::Mem32 => 2,
            Space::Mem64 => 3,
        }
    }
}

/// `phys.hi` prefetchable bit.
pub const PHYS_HI_P: u32 = 1 << 30;
/// `phys.hi` non-relocatable bit.
pub const PHYS_HI_N: u32 = 1 << 31;

/// One entry of a host bridge's `ranges`: bus addresses `[bus, bus + size)`
/// of `space` appear at CPU address `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub space: Space,
    pub prefetch: bool,
    pub bus: u64,
    pub cpu: u64,
    pub size: u64,
}

impl Range {
    pub fn contains_bus(&self, bus: u64, len: u64) -> bool {
        bus >= self.bus && len <= self.size && bus - self.bus <= self.size - len
    }
}

/// One 5-cell entry of a PCI node's `reg` (or `assigned-addresses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciReg {
    pub phys_hi: u32,
    pub addr: u64,
    pub size: u64,
}

impl PciReg {
    pub fn space(&self) -> Space {
        Space::from_phys_hi(self.phys_hi)
    }
    /// The config register the entry describes (0 for config space itself).
    pub fn register(&self) -> u16 {
        (self.phys_hi & 0xff) as u16
    }
    pub fn bdf(&self) -> Bdf {
        Bdf::from_phys_hi(self.phys_hi)
    }
}

impl Range {
    /// A host bridge `ranges` entry as the tree decodes it (`None` for
    /// config space or an empty range, which are not windows).
    pub fn from_entry(e: &RangeEntry) -> Option<Self> {
        let space = Space::from_phys_hi(e.child_hi);
        if space == Space::Config || e.size == 0 {
            return None;
        }
        Some(Range {
            space,
            prefetch: e.child_hi & PHYS_HI_P != 0,
            bus: e.child,
            cpu: e.parent,
            size: e.size,
        })
    }
}

impl From<&RegEntry> for PciReg {
    fn from(e: &RegEntry) -> Self {
        PciReg {
            phys_hi: e.hi,
            addr: e.addr,
            size: e.size,
        }
    }
}

/// What the tree says about one PCI function node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevNode {
    pub path: String,
    /// `reg` (the first entry is config space and gives bus/device/function).
    pub reg: Vec<PciReg>,
    pub vendor_id: Option<u32>,
    pub device_id: Option<u32>,
    pub class_code: Option<u32>,
    /// Child nodes (functions behind a bridge).
    pub children: Vec<DevNode>,
}

/// What the tree says about one PHB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhbNode {
    pub path: String,
    /// The first cell pair of `reg`.
    pub buid: u64,
    pub ranges: Vec<Range>,
    pub children: Vec<DevNode>,
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32 {
        prefetch: bool,
    },
    /// Occupies this register and the next.
    Mem64 {
        prefetch: bool,
    },
    /// Expansion ROM (32-bit memory, enable bit 0).
    Rom,
}

impl BarKind {
    pub fn space(self) -> Space {
        match self {
            BarKind::Io => Space::Io,
            BarKind::Mem32 { .. } | BarKind::Rom => Space::Mem32,
            BarKind::Mem64 { .. } => Space::Mem64,
        }
    }
    pub fn prefetch(self) -> bool {
        matches!(
            self,
            BarKind::Mem32 { prefetch: true } | BarKind::Mem64 { prefetch: true }
        )
    }
    pub fn is_memory(self) -> bool {
        self != BarKind::Io
    }
}

/// A BAR as config space reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Config offset of the (low) register.
    pub reg: u16,
    pub kind: BarKind,
    /// A power of two.
    pub size: u64,
}

/// A PCI-to-PCI bridge's bus numbers and window capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    pub secondary: u8,
    pub subordinate: u8,
    /// The I/O window decodes 32 bits (else 16).
    pub io32: bool,
    /// The prefetchable window decodes 64 bits.
    pub pref64: bool,
    pub children: Vec<Function>,
}

/// A function found in the tree and confirmed by config space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub path: String,
    pub bdf: Bdf,
    pub vendor_id: u16,
    pub device_id: u16,
    /// Class code (base class, subclass, programming interface).
    pub class_code: u32,
    pub bars: Vec<Bar>,
    pub bridge: Option<Bridge>,
}

impl Function {
    /// This function and everything behind it, depth first.
    pub fn walk(&self) -> Vec<&Function> {
        let mut v = alloc::vec![self];
        if let Some(b) = &self.bridge {
            for c in &b.children {
                v.extend(c.walk());
            }
        }
        v
    }
}

/// Why a node was left alone (or what looked odd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// No usable `reg` (missing, malformed, or its first entry is not config space).
    NoReg,
    /// Config space does not answer for the node's address.
    Absent(ConfigError),
    /// The IDs in config space differ from the node's properties.
    IdMismatch {
        tree: (u32, u32),
        config: (u16, u16),
    },
    /// Header type 1 without child buses in the tree or the other way round,
    /// or a header type this code does not know.
    HeaderType(u8),
    /// A bridge whose secondary bus number is 0 (not enumerated).
    NotNumbered,
    /// A node behind a bridge whose bus is not the bridge's secondary bus.
    WrongBus { expected: u8, found: u8 },
    /// A BAR whose size (config space) differs from `reg` (tree), or that
    /// `reg` does not list (`tree` 0).
    BarSize { reg: u16, tree: u64, config: u64 },
    /// A BAR that reads back as no valid type or size.
    BadBar { reg: u16, value: u32 },
    /// A config access failed while sizing.
    Config(ConfigError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            ProblemKind::NoReg => write!(f, "no usable reg property; skipped"),
            ProblemKind::Absent(e) => write!(f, "no function answers in config space ({e}); skipped"),
            ProblemKind::IdMismatch { tree, config } => write!(
                f,
                "tree says {:04x}:{:04x}, config space {:04x}:{:04x}; skipped",
                tree.0, tree.1, config.0, config.1
            ),
            ProblemKind::HeaderType(t) => write!(f, "header type {t:#x} does not match the tree; skipped"),
            ProblemKind::NotNumbered => write!(f, "bridge has no secondary bus number; devices behind it skipped"),
            ProblemKind::WrongBus { expected, found } => {
                write!(f, "on bus {found:#x}, expected {expected:#x}; skipped")
            }
            ProblemKind::BarSize { reg, tree, config } => write!(
                f,
                "BAR {reg:#x}: config space size {config:#x}, reg says {tree:#x} (using config space)"
            ),
            ProblemKind::BadBar { reg, value } => {
                write!(f, "BAR {reg:#x} reads {value:#010x} after sizing; ignored")
            }
            ProblemKind::Config(e) => write!(f, "{e}; skipped"),
        }
    }
}

/// A PHB's functions and what went wrong finding them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhbTopology {
    pub path: String,
    pub buid: u64,
    pub ranges: Vec<Range>,
    /// Functions on the root bus (bridges hold theirs).
    pub functions: Vec<Function>,
    pub problems: Vec<Problem>,
}

impl PhbTopology {
    /// Every function, depth first.
    pub fn all(&self) -> Vec<&Function> {
        self.functions.iter().flat_map(|f| f.walk()).collect()
    }
}

/// Check each node under `phb` against config space and size its BARs.
/// Config accesses that fail skip the node (reported in `problems`); this
/// never stops at the first bad node.
pub fn discover<P: Platform + ?Sized>(p: &mut P, cfg: &ConfigAccess, phb: &PhbNode) -> PhbTopology {
    let mut problems = Vec::new();
    let functions = discover_bus(p, cfg, phb.buid, &phb.children, None, &mut problems);
    PhbTopology {
        path: phb.path.clone(),
        buid: phb.buid,
        ranges: phb.ranges.clone(),
        functions,
        problems,
    }
}

fn discover_bus<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    nodes: &[DevNode],
    bus: Option<u8>,
    problems: &mut Vec<Problem>,
) -> Vec<Function> {
    let mut out = Vec::new();
    for node in nodes {
        let problem = |kind| Problem {
            path: node.path.clone(),
            kind,
        };
        let Some(first) = node
            .reg
            .first()
            .filter(|r| r.space() == Space::Config && r.register() == 0)
        else {
            problems.push(problem(ProblemKind::NoReg));
            continue;
        };
        let bdf = first.bdf();
        if let Some(expected) = bus {
            if bdf.bus != expected {
                problems.push(problem(ProblemKind::WrongBus {
                    expected,
                    found: bdf.bus,
                }));
                continue;
            }
        }
        match probe(p, cfg, buid, node, bdf, problems) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => {}
            Err(kind) => problems.push(problem(kind)),
        }
    }
    out.sort_by_key(|f| f.bdf);
    out
}

fn probe<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    node: &DevNode,
    bdf: Bdf,
    problems: &mut Vec<Problem>,
) -> Result<Option<Function>, ProblemKind> {
    let ids = cfg
        .read32(p, buid, bdf, reg::VENDOR_ID)
        .map_err(ProblemKind::Absent)?;
    let (vendor, device) = (ids as u16, (ids >> 16) as u16);
    if vendor == 0xffff || vendor == 0 {
        return Err(ProblemKind::Absent(ConfigError::Status {
            write: false,
            buid,
            bdf,
            reg: 0,
            status: 0,
        }));
    }
    if let (Some(tv), Some(td)) = (node.vendor_id, node.device_id) {
        if tv != vendor as u32 || td != device as u32 {
            return Err(ProblemKind::IdMismatch {
                tree: (tv, td),
                config: (vendor, device),
            });
        }
    }
    let class_rev = cfg
        .read32(p, buid, bdf, reg::CLASS_REVISION)
        .map_err(ProblemKind::Config)?;
    let header = cfg
        .read8(p, buid, bdf, reg::HEADER_TYPE)
        .map_err(ProblemKind::Config)?
        & 0x7f;
    let is_bridge = match header {
        0 => false,
        1 => true,
        t => return Err(ProblemKind::HeaderType(t)),
    };
    if !is_bridge && !node.children.is_empty() {
        return Err(ProblemKind::HeaderType(header));
    }
    let bars = size_bars(p, cfg, buid, bdf, is_bridge, &node.path, problems)
        .map_err(ProblemKind::Config)?;
    for b in &bars {
        let tree = node
            .reg
            .iter()
            .skip(1)
            .find(|r| r.register() == b.reg)
            .map_or(0, |r| r.size);
        if tree != b.size {
            problems.push(Problem {
                path: node.path.clone(),
                kind: ProblemKind::BarSize {
                    reg: b.reg,
                    tree,
                    config: b.size,
                },
            });
        }
    }
    let bridge = if is_bridge {
        let secondary = cfg
            .read8(p, buid, bdf, reg::SECONDARY_BUS)
            .map_err(ProblemKind::Config)?;
        let subordinate = cfg
            .read8(p, buid, bdf, reg::SUBORDINATE_BUS)
            .map_err(ProblemKind::Config)?;
        let io32 = cfg
            .read8(p, buid, bdf, reg::IO_BASE)
            .map_err(ProblemKind::Config)?
            & 0xf
            == 1;
        let pref64 = cfg
            .read16(p, buid, bdf, reg::PREF_MEMORY_BASE)
            .map_err(ProblemKind::Config)?
            & 0xf
            == 1;
        let children = if secondary == 0 || secondary <= bdf.bus {
            problems.push(Problem {
                path: node.path.clone(),
                kind: ProblemKind::NotNumbered,
            });
            Vec::new()
        } else {
            discover_bus(p, cfg, buid, &node.children, Some(secondary), problems)
        };
        Some(Bridge {
            secondary,
            subordinate,
            io32,
            pref64,
            children,
        })
    } else {
        None
    };
    Ok(Some(Function {
        path: node.path.clone(),
        bdf,
        vendor_id: vendor,
        device_id: device,
        class_code: class_rev >> 8,
        bars,
        bridge,
    }))
}

/// Write all-ones to `r`, read back, restore.
fn probe_reg<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    bdf: Bdf,
    r: u16,
    ones: u32,
) -> Result<u32, ConfigError> {
    let orig = cfg.read32(p, buid, bdf, r)?;
    cfg.write32(p, buid, bdf, r, ones)?;
    let v = cfg.read32(p, buid, bdf, r);
    cfg.write32(p, buid, bdf, r, orig)?;
    v
}

/// Size every BAR (PCI 3.0 §6.2.5.1) with I/O and memory decode disabled,
/// then restore COMMAND.
fn size_bars<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    bdf: Bdf,
    is_bridge: bool,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Bar>, ConfigError> {
    let cmd = cfg.read16(p, buid, bdf, reg::COMMAND)?;
    if cmd & (command::IO | command::MEMORY) != 0 {
        cfg.write16(
            p,
            buid,
            bdf,
            reg::COMMAND,
            cmd & !(command::IO | command::MEMORY),
        )?;
    }
    let r = size_bars_decode_off(p, cfg, buid, bdf, is_bridge, path, problems);
    if cmd & (command::IO | command::MEMORY) != 0 {
        cfg.write16(p, buid, bdf, reg::COMMAND, cmd)?;
    }
    r
}

fn size_bars_decode_off<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    bdf: Bdf,
    is_bridge: bool,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Bar>, ConfigError> {
    let (nbars, rom) = if is_bridge {
        (2u16, reg::BRIDGE_ROM)
    } else {
        (6, reg::ROM)
    };
    let mut bars = Vec::new();
    let mut bad = |reg: u16, value: u32| {
        problems.push(Problem {
            path: path.into(),
            kind: ProblemKind::BadBar { reg, value },
        })
    };
    let mut i = 0;
    while i < nbars {
        let r = reg::BAR0 + 4 * i;
        let v = probe_reg(p, cfg, buid, bdf, r, 0xffff_ffff)?;
        if v == 0 {
            i += 1;
            continue;
        }
        if v & 1 == 1 {
            // I/O: a decoder of only 16 bits reads back 0 in the upper half.
            let mut mask = v & !3;
            if mask >> 16 == 0 {
                mask |= 0xffff_0000;
            }
            let size = (!mask).wrapping_add(1) as u64;
            if size.is_power_of_two() {
                bars.push(Bar {
                    reg: r,
                    kind: BarKind::Io,
                    size,
                });
            } else {
                bad(r, v);
            }
            i += 1;
            continue;
        }
        let prefetch = v & 8 != 0;
        match (v >> 1) & 3 {
            // 32-bit (type 1, "below 1 MiB", is obsolete: treated as 32-bit).
            0 | 1 => {
                let size = (!(v & !0xf)).wrapping_add(1) as u64;
                if size.is_power_of_two() && v & !0xf != 0 {
                    bars.push(Bar {
                        reg: r,
                        kind: BarKind::Mem32 { prefetch },
                        size,
                    });
                } else {
                    bad(r, v);
                }
                i += 1;
            }
            2 if i + 1 < nbars => {
                let hi = probe_reg(p, cfg, buid, bdf, r + 4, 0xffff_ffff)?;
                // The upper half must be writable for sizes below 4 GiB; a
                // device that hard-wires it is sized by the lower half.
                let hi = if hi == 0 { 0xffff_ffff } else { hi };
                let mask = (hi as u64) << 32 | (v & !0xf) as u64;
                let size = (!mask).wrapping_add(1);
                if size.is_power_of_two() && mask != 0 {
                    bars.push(Bar {
                        reg: r,
                        kind: BarKind::Mem64 { prefetch },
                        size,
                    });
                } else {
                    bad(r, v);
                }
                i += 2;
            }
            _ => {
                bad(r, v);
                i += 1;
            }
        }
    }
    // Expansion ROM: address bits 31..11, enable bit 0 (left clear).
    let v = probe_reg(p, cfg, buid, bdf, rom, 0xffff_f800)?;
    let mask = v & 0xffff_f800;
    if mask != 0 {
        let size = (!mask).wrapping_add(1) as u64;
        if size.is_power_of_two() {
            bars.push(Bar {
                reg: rom,
                kind: BarKind::Rom,
                size,
            });
        } else {
            bad(rom, v);
        }
    }
    Ok(bars)
}
