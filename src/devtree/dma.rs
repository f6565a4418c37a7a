//! The DMA-window model of the tree: a typed view of every DMA-capable
//! node, checks of its consistency, and writers (QEMU pseries contract §4.1–
//! 4.3; linux-expectations.md §2.2 `ibm,dma-window` and Linux's
//! `of_parse_dma_window`, §2.3 DDW properties, §2.9 QEMU's tree).
//!
//! # Decoding
//! `ibm,dma-window` (PHBs) and `ibm,my-dma-window` (VIO devices) are
//! `<liobn  bus-address  size>`: the LIOBN is one cell, the address
//! `ibm,#dma-address-cells` cells — falling back, as Linux does, to the
//! node's own `#address-cells`, then to the first `#address-cells` of its
//! ancestors (default 1) — and the size `ibm,#dma-size-cells` cells, falling
//! back to the first ancestor `#size-cells` (default 1).  Linux keeps the
//! low 64 bits of longer values; here more than [`MAX_DMA_CELLS`] cells, or
//! non-zero bits beyond 64, are errors.
//!
//! `ibm,ddw-applicable` is `<query create remove>` RTAS tokens;
//! `ibm,ddw-extensions` is `<count ext1 ext2 ext3…>` with ext1 = the token
//! of `ibm,reset-pe-dma-window`, ext2 = 1 if `ibm,query-pe-dma-window` has
//! 6 outputs (64-bit largest block), ext3 = limited-address-mode support
//! (Linux's `ddw_read_ext`: an extension counts only if `count` reaches it
//! and the property holds it).  A reset token of 0xffffffff
//! (`RTAS_UNKNOWN_SERVICE`, which Linux's `rtas_call` refuses) means none.
//!
//! A PHB's BUID is the address of its first `reg` entry (PHBs are children
//! of the root on pseries, so no translation applies); Linux uses it in
//! every DDW call, and uses 0 instead when `/rtas` lacks
//! `ibm,read-pci-config`.
//!
//! The kernel's own DDW properties (`linux,direct64-ddr-window-info`,
//! `linux,dma64-ddr-window-info`, 20 bytes: liobn, u64 base, tce shift,
//! window shift), present in trees from kexec, are decoded as
//! [`DmaNode::dynamic`] windows.
//!
//! # Warnings
//! [`DmaModel::from_tree`] never fails; inconsistencies become
//! [`DmaWarning`]s: undecodable properties, windows decoded only through
//! Linux's fallbacks, sizes that are not a power of two, windows wrapping
//! past 2^64, overlapping windows in one bus address space (a PHB and the
//! nodes below it, or one node), LIOBNs used twice, DDW tokens that `/rtas`
//! does not define or defines differently, PHBs without a window or a BUID.
//!
//! # Writers
//! [`set_dma_window`] always writes `ibm,#dma-address-cells` and
//! `ibm,#dma-size-cells` (2 and 2, as QEMU) next to the window and encodes
//! the full 64-bit size (QEMU's 32-bit size cannot describe ≥ 4 GiB).

use super::tree::{NodeId, Tree};
use super::TreeError;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub const DMA_WINDOW: &str = "ibm,dma-window";
pub const MY_DMA_WINDOW: &str = "ibm,my-dma-window";
pub const DMA_ADDRESS_CELLS: &str = "ibm,#dma-address-cells";
pub const DMA_SIZE_CELLS: &str = "ibm,#dma-size-cells";
pub const DDW_APPLICABLE: &str = "ibm,ddw-applicable";
pub const DDW_EXTENSIONS: &str = "ibm,ddw-extensions";
/// The kernel's DDW properties (asm/iommu.h `DIRECT64_PROPNAME`,
/// `DMA64_PROPNAME`).
pub const DIRECT64_WINDOW_INFO: &str = "linux,direct64-ddr-window-info";
pub const DMA64_WINDOW_INFO: &str = "linux,dma64-ddr-window-info";

pub const RTAS_QUERY_PE_DMA_WINDOW: &str = "ibm,query-pe-dma-window";
pub const RTAS_CREATE_PE_DMA_WINDOW: &str = "ibm,create-pe-dma-window";
pub const RTAS_REMOVE_PE_DMA_WINDOW: &str = "ibm,remove-pe-dma-window";
pub const RTAS_RESET_PE_DMA_WINDOW: &str = "ibm,reset-pe-dma-window";
pub const RTAS_READ_PCI_CONFIG: &str = "ibm,read-pci-config";
/// The token value meaning "no such service".
pub const RTAS_UNKNOWN_SERVICE: u32 = 0xffff_ffff;

/// Most cells accepted for a window address or size.
pub const MAX_DMA_CELLS: u32 = 4;

/// A DMA window: `size` bytes of bus addresses from `bus_addr`, translated
/// by the TCE table `liobn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    pub liobn: u32,
    pub bus_addr: u64,
    pub size: u64,
}

impl DmaWindow {
    /// The first bus address after the window (None if it wraps).
    pub fn end(&self) -> Option<u64> {
        self.bus_addr.checked_add(self.size)
    }
}

/// Which window property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowProp {
    /// `ibm,dma-window` (PHBs; any node for Linux's `pci_dma_find`).
    DmaWindow,
    /// `ibm,my-dma-window` (VIO devices).
    MyDmaWindow,
}

impl WindowProp {
    pub fn name(self) -> &'static str {
        match self {
            WindowProp::DmaWindow => DMA_WINDOW,
            WindowProp::MyDmaWindow => MY_DMA_WINDOW,
        }
    }
}

/// Why a DMA property could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    StaleNode,
    /// A cell-count property is malformed or larger than [`MAX_DMA_CELLS`].
    BadCells {
        prop: &'static str,
        cells: u32,
    },
    /// The property is shorter than its format needs.
    Truncated {
        prop: &'static str,
        len: usize,
        need: usize,
    },
    /// A value does not fit in 64 bits.
    TooWide {
        prop: &'static str,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaError::StaleNode => write!(f, "stale node handle"),
            DmaError::BadCells { prop, cells } => write!(f, "{prop}: bad cell count {cells:#x}"),
            DmaError::Truncated { prop, len, need } => {
                write!(f, "{prop}: {len} bytes, need {need}")
            }
            DmaError::TooWide { prop } => write!(f, "{prop}: value wider than 64 bits"),
        }
    }
}

/// The cell counts a window on a node is decoded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaCells {
    pub address: u32,
    pub size: u32,
    /// Both came from `ibm,#dma-*-cells` (no Linux fallback needed).
    pub explicit: bool,
}

/// A one-cell property: None if absent, an error if not 4 bytes.
fn cell_prop(tree: &Tree, node: NodeId, name: &'static str) -> Result<Option<u32>, DmaError> {
    match tree.prop(node, name) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(v) => Err(DmaError::BadCells {
            prop: name,
            cells: v.len() as u32,
        }),
    }
}

/// The first `name` property on the ancestors of `node` (Linux's
/// `of_n_addr_cells`/`of_n_size_cells`: parent first), else `default`.
fn inherited(tree: &Tree, node: NodeId, name: &'static str, default: u32) -> Result<u32, DmaError> {
    let mut at = tree.parent(node).unwrap_or(node);
    loop {
        if let Some(v) = cell_prop(tree, at, name)? {
            return Ok(v);
        }
        match tree.parent(at) {
            Some(p) => at = p,
            None => return Ok(default),
        }
    }
}

/// The cell counts Linux's `of_parse_dma_window` would use on `node`.
pub fn dma_cells(tree: &Tree, node: NodeId) -> Result<DmaCells, DmaError> {
    if !tree.contains(node) {
        return Err(DmaError::StaleNode);
    }
    let own_ac = cell_prop(tree, node, DMA_ADDRESS_CELLS)?;
    let own_sc = cell_prop(tree, node, DMA_SIZE_CELLS)?;
    let address = match own_ac {
        Some(v) => v,
        None => match cell_prop(tree, node, "#address-cells")? {
            Some(v) => v,
            None => inherited(tree, node, "#address-cells", 1)?,
        },
    };
    let size = match own_sc {
        Some(v) => v,
        None => inherited(tree, node, "#size-cells", 1)?,
    };
    for (prop, cells) in [(DMA_ADDRESS_CELLS, address), (DMA_SIZE_CELLS, size)] {
        if cells > MAX_DMA_CELLS {
            return Err(DmaError::BadCells { prop, cells });
        }
    }
    Ok(DmaCells {
        address,
        size,
        explicit: own_ac.is_some() && own_sc.is_some(),
    })
}

/// Read `cells` cells from `v` at cell `at` as a 64-bit value.
fn read_wide(v: &[u8], at: usize, cells: u32, prop: &'static str) -> Result<u64, DmaError> {
    let bytes = v
        .get(at * 4..(at + cells as usize) * 4)
        .ok_or(DmaError::Truncated {
            prop,
            len: v.len(),
            need: (at + cells as usize) * 4,
        })?;
    let (high, low) = bytes.split_at(bytes.len().saturating_sub(8));
    if high.iter().any(|&b| b != 0) {
        return Err(DmaError::TooWide { prop });
    }
    Ok(super::fdt::read_cells(low))
}

fn be32_at(v: &[u8], cell: usize) -> Option<u32> {
    let b = v.get(cell * 4..cell * 4 + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decode `prop` on `node` (None if absent).
pub fn decode_window(
    tree: &Tree,
    node: NodeId,
    prop: WindowProp,
) -> Result<Option<DmaWindow>, DmaError> {
    let name = prop.name();
    let Some(v) = tree.prop(node, name) else {
        return if tree.contains(node) {
            Ok(None)
        } else {
            Err(DmaError::StaleNode)
        };
    };
    let cells = dma_cells(tree, node)?;
    let n = 1 + cells.address as usize + cells.size as usize;
    if v.len() < n * 4 {
        return Err(DmaError::Truncated {
            prop: name,
            len: v.len(),
            need: n * 4,
        });
    }
    Ok(Some(DmaWindow {
        liobn: be32_at(v, 0).unwrap_or(0),
        bus_addr: read_wide(v, 1, cells.address, name)?,
        size: read_wide(v, 1 + cells.address as usize, cells.size, name)?,
    }))
}

/// `ibm,ddw-extensions`, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DdwExtensions {
    /// The count cell (0 when the property is absent).
    pub count: u32,
    /// ext1: token of `ibm,reset-pe-dma-window`.
    pub reset: Option<u32>,
    /// ext2 = 1: `ibm,query-pe-dma-window` returns a 64-bit largest block.
    pub query_out_64: bool,
    /// ext3: limited-address-mode support (non-zero = supported).
    pub lam: Option<u32>,
}

impl DdwExtensions {
    /// The property value [`set_ddw_extensions`] writes: the count is that
    /// of the last extension present; a missing reset token before a later
    /// extension is written as `RTAS_UNKNOWN_SERVICE`.
    pub fn encode(&self) -> Vec<u32> {
        let count = if self.lam.is_some() {
            3
        } else if self.query_out_64 {
            2
        } else if self.reset.is_some() {
            1
        } else {
            0
        };
        let all = [
            count,
            self.reset.unwrap_or(RTAS_UNKNOWN_SERVICE),
            u32::from(self.query_out_64),
            self.lam.unwrap_or(0),
        ];
        all[..=count as usize].to_vec()
    }
}

/// A node's dynamic-DMA-window interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DdwInfo {
    pub query: u32,
    pub create: u32,
    pub remove: u32,
    pub ext: DdwExtensions,
}

/// Decode `ibm,ddw-applicable` and `ibm,ddw-extensions` (None without
/// `ibm,ddw-applicable`, as Linux then does not attempt DDW).
pub fn decode_ddw(tree: &Tree, node: NodeId) -> Result<Option<DdwInfo>, DmaError> {
    let Some(app) = tree.prop(node, DDW_APPLICABLE) else {
        return if tree.contains(node) {
            Ok(None)
        } else {
            Err(DmaError::StaleNode)
        };
    };
    let (Some(query), Some(create), Some(remove)) =
        (be32_at(app, 0), be32_at(app, 1), be32_at(app, 2))
    else {
        return Err(DmaError::Truncated {
            prop: DDW_APPLICABLE,
            len: app.len(),
            need: 12,
        });
    };
    let mut ext = DdwExtensions::default();
    if let Some(v) = tree.prop(node, DDW_EXTENSIONS) {
        ext.count = be32_at(v, 0).ok_or(DmaError::Truncated {
            prop: DDW_EXTENSIONS,
            len: v.len(),
            need: 4,
        })?;
        let get = |i: u32| (ext.count >= i).then(|| be32_at(v, i as usize)).flatten();
        ext.reset = get(1).filter(|&t| t != RTAS_UNKNOWN_SERVICE);
        ext.query_out_64 = get(2) == Some(1);
        ext.lam = get(3);
    }
    Ok(Some(DdwInfo {
        query,
        create,
        remove,
        ext,
    }))
}

/// What kind of node carries DMA properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaNodeKind {
    /// A PCI host bridge: `device_type = "pci"`, child of the root.
    Phb,
    /// A VIO device: child of a `device_type = "vdevice"` node.
    Vio,
    Other,
}

/// One DMA-capable node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaNode {
    pub node: NodeId,
    pub path: String,
    pub kind: DmaNodeKind,
    /// The default window (`ibm,dma-window`, else `ibm,my-dma-window`).
    pub window: Option<DmaWindow>,
    /// Which property `window` came from.
    pub window_prop: Option<WindowProp>,
    /// Windows the kernel recorded (`linux,*-ddr-window-info`).
    pub dynamic: Vec<DmaWindow>,
    pub ddw: Option<DdwInfo>,
    /// PHBs: the BUID (first `reg` address).
    pub buid: Option<u64>,
}

/// An inconsistency in the DMA properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmaWarning {
    /// A window, DDW or kernel-window property could not be decoded.
    BadProperty {
        path: String,
        prop: &'static str,
        error: DmaError,
    },
    /// The window was decoded with Linux's fallback cell counts (no
    /// `ibm,#dma-address-cells`/`ibm,#dma-size-cells` on the node).
    ImplicitCells {
        path: String,
        cells: DmaCells,
    },
    SizeNotPowerOfTwo {
        path: String,
        window: DmaWindow,
    },
    /// `bus_addr + size` is beyond 2^64.
    WindowWraps {
        path: String,
        window: DmaWindow,
    },
    /// Two windows in one bus address space overlap.
    Overlap {
        a: String,
        a_window: DmaWindow,
        b: String,
        b_window: DmaWindow,
    },
    /// Two windows use one LIOBN.
    DuplicateLiobn {
        liobn: u32,
        a: String,
        b: String,
    },
    /// `ibm,ddw-extensions` counts more extensions than it holds.
    ExtensionCount {
        path: String,
        count: u32,
        present: u32,
    },
    /// A DDW token whose RTAS call `/rtas` does not define.
    UndefinedToken {
        path: String,
        call: &'static str,
        token: u32,
    },
    /// A DDW token that differs from `/rtas`'s token for that call.
    TokenMismatch {
        path: String,
        call: &'static str,
        token: u32,
        rtas: u32,
    },
    /// DDW on a PHB while `/rtas` has no `ibm,read-pci-config`: Linux then
    /// uses BUID 0 in every DDW call.
    NoReadPciConfig {
        path: String,
    },
    /// A PHB whose `reg` gives no BUID.
    NoBuid {
        path: String,
    },
    /// A PHB without `ibm,dma-window` (Linux warns and has no DMA for it).
    PhbWithoutWindow {
        path: String,
    },
}

impl fmt::Display for DmaWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |w: &DmaWindow| (w.liobn, w.bus_addr, w.size);
        match self {
            DmaWarning::BadProperty { path, prop, error } => {
                write!(f, "{path}: cannot decode {prop}: {error}")
            }
            DmaWarning::ImplicitCells { path, cells } => write!(
                f,
                "{path}: no {DMA_ADDRESS_CELLS}/{DMA_SIZE_CELLS}; window decoded with {}/{} cells as Linux would",
                cells.address, cells.size
            ),
            DmaWarning::SizeNotPowerOfTwo { path, window } => {
                let (l, a, s) = w(window);
                write!(f, "{path}: window liobn {l:#x} at {a:#x} has size {s:#x}, not a power of two")
            }
            DmaWarning::WindowWraps { path, window } => {
                let (l, a, s) = w(window);
                write!(f, "{path}: window liobn {l:#x} at {a:#x} size {s:#x} wraps past 2^64")
            }
            DmaWarning::Overlap {
                a,
                a_window,
                b,
                b_window,
            } => {
                let (la, aa, sa) = w(a_window);
                let (lb, ab, sb) = w(b_window);
                write!(
                    f,
                    "overlapping windows: {a} liobn {la:#x} {aa:#x}+{sa:#x} and {b} liobn {lb:#x} {ab:#x}+{sb:#x}"
                )
            }
            DmaWarning::DuplicateLiobn { liobn, a, b } => {
                write!(f, "liobn {liobn:#x} used by {a} and {b}")
            }
            DmaWarning::ExtensionCount {
                path,
                count,
                present,
            } => write!(
                f,
                "{path}: {DDW_EXTENSIONS} counts {count} extensions but holds {present}"
            ),
            DmaWarning::UndefinedToken { path, call, token } => write!(
                f,
                "{path}: DDW token {token:#x} for {call}, which /rtas does not define"
            ),
            DmaWarning::TokenMismatch {
                path,
                call,
                token,
                rtas,
            } => write!(
                f,
                "{path}: DDW token {token:#x} for {call}, but /rtas has {rtas:#x}"
            ),
            DmaWarning::NoReadPciConfig { path } => write!(
                f,
                "{path}: DDW without /rtas {RTAS_READ_PCI_CONFIG}: Linux will use BUID 0"
            ),
            DmaWarning::NoBuid { path } => write!(f, "{path}: PHB without a BUID in reg"),
            DmaWarning::PhbWithoutWindow { path } => write!(f, "{path}: PHB without {DMA_WINDOW}"),
        }
    }
}

/// The `/rtas` node.
pub fn rtas_node(tree: &Tree) -> Option<NodeId> {
    tree.child(tree.root(), "rtas")
}

/// The token of RTAS call `name` (a one-cell `/rtas` property).
pub fn rtas_token(tree: &Tree, name: &str) -> Option<u32> {
    tree.prop_u32(rtas_node(tree)?, name)
}

/// One-cell `/rtas` properties that are not call tokens.
const NOT_TOKENS: [&str; 13] = [
    "rtas-version",
    "rtas-size",
    "rtas-error-log-max",
    "rtas-event-scan-rate",
    "rtas-display-device",
    "ibm,associativity-reference-points",
    "ibm,max-associativity-domains",
    "ibm,current-associativity-domains",
    "ibm,lrdr-capacity",
    "phandle",
    "ibm,phandle",
    "#address-cells",
    "#size-cells",
];

/// An RTAS call and its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtasToken<'a> {
    pub name: &'a str,
    pub token: u32,
}

/// Every `/rtas` property that is a call token: one cell, not one of the
/// known non-token properties, not `linux,*`/`slof,*`/`qemu,*`.
pub fn rtas_tokens(tree: &Tree) -> Vec<RtasToken<'_>> {
    let Some(rtas) = rtas_node(tree) else {
        return Vec::new();
    };
    tree.props(rtas)
        .filter(|(name, _)| {
            !NOT_TOKENS.contains(name)
                && !["linux,", "slof,", "qemu,"]
                    .iter()
                    .any(|p| name.starts_with(p))
        })
        .filter_map(|(name, v)| match *v {
            [a, b, c, d] => Some(RtasToken {
                name,
                token: u32::from_be_bytes([a, b, c, d]),
            }),
            _ => None,
        })
        .collect()
}

/// The typed DMA view of a whole tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaModel {
    /// Every PHB and every node with DMA-window or DDW properties, in tree
    /// order.
    pub nodes: Vec<DmaNode>,
    pub warnings: Vec<DmaWarning>,
}

fn is_phb(tree: &Tree, node: NodeId) -> bool {
    tree.parent(node) == Some(tree.root()) && tree.prop_str(node, "device_type") == Some("pci")
}

fn kind_of(tree: &Tree, node: NodeId) -> DmaNodeKind {
    if is_phb(tree, node) {
        DmaNodeKind::Phb
    } else if tree
        .parent(node)
        .and_then(|p| tree.prop_str(p, "device_type"))
        == Some("vdevice")
    {
        DmaNodeKind::Vio
    } else {
        DmaNodeKind::Other
    }
}

const DMA_PROPS: [&str; 6] = [
    DMA_WINDOW,
    MY_DMA_WINDOW,
    DDW_APPLICABLE,
    DDW_EXTENSIONS,
    DIRECT64_WINDOW_INFO,
    DMA64_WINDOW_INFO,
];

impl DmaModel {
    /// Scan the whole tree.
    pub fn from_tree(tree: &Tree) -> DmaModel {
        let mut m = DmaModel::default();
        let read_pci_config = rtas_token(tree, RTAS_READ_PCI_CONFIG).is_some();
        for node in tree.nodes() {
            let phb = is_phb(tree, node);
            if !phb && !DMA_PROPS.iter().any(|p| tree.prop(node, p).is_some()) {
                continue;
            }
            let path = tree.path(node).unwrap_or_default();
            let dn = m.scan_node(tree, node, path, read_pci_config);
            m.nodes.push(dn);
        }
        m.check_windows(tree);
        m
    }

    fn warn(&mut self, w: DmaWarning) {
        self.warnings.push(w);
    }

    fn scan_node(
        &mut self,
        tree: &Tree,
        node: NodeId,
        path: String,
        read_pci_config: bool,
    ) -> DmaNode {
        let kind = kind_of(tree, node);
        let mut dn = DmaNode {
            node,
            path,
            kind,
            window: None,
            window_prop: None,
            dynamic: Vec::new(),
            ddw: None,
            buid: None,
        };
        for prop in [WindowProp::DmaWindow, WindowProp::MyDmaWindow] {
            if dn.window.is_some() {
                break;
            }
            match decode_window(tree, node, prop) {
                Ok(Some(w)) => {
                    dn.window = Some(w);
                    dn.window_prop = Some(prop);
                    if let Ok(cells) = dma_cells(tree, node) {
                        if !cells.explicit {
                            self.warn(DmaWarning::ImplicitCells {
                                path: dn.path.clone(),
                                cells,
                            });
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => self.warn(DmaWarning::BadProperty {
                    path: dn.path.clone(),
                    prop: prop.name(),
                    error,
                }),
            }
        }
        for prop in [DIRECT64_WINDOW_INFO, DMA64_WINDOW_INFO] {
            let Some(v) = tree.prop(node, prop) else {
                continue;
            };
            let fields = (be32_at(v, 0), be32_at(v, 1), be32_at(v, 2), be32_at(v, 4));
            match fields {
                (Some(liobn), Some(hi), Some(lo), Some(shift)) if v.len() == 20 && shift < 64 => {
                    dn.dynamic.push(DmaWindow {
                        liobn,
                        bus_addr: (u64::from(hi) << 32) | u64::from(lo),
                        size: 1 << shift,
                    })
                }
                _ => self.warn(DmaWarning::BadProperty {
                    path: dn.path.clone(),
                    prop,
                    error: DmaError::Truncated {
                        prop,
                        len: v.len(),
                        need: 20,
                    },
                }),
            }
        }
        match decode_ddw(tree, node) {
            Ok(ddw) => dn.ddw = ddw,
            Err(error) => self.warn(DmaWarning::BadProperty {
                path: dn.path.clone(),
                prop: DDW_APPLICABLE,
                error,
            }),
        }
        if let (Some(ddw), Some(v)) = (dn.ddw, tree.prop(node, DDW_EXTENSIONS)) {
            let present = (v.len() / 4).saturating_sub(1) as u32;
            if ddw.ext.count > present {
                self.warn(DmaWarning::ExtensionCount {
                    path: dn.path.clone(),
                    count: ddw.ext.count,
                    present,
                });
            }
        }
        if let Some(ddw) = dn.ddw {
            self.check_tokens(tree, &dn.path, &ddw);
        }
        if kind == DmaNodeKind::Phb {
            dn.buid = match tree.reg(node).as_deref() {
                Ok([first, ..]) if first.hi == 0 => Some(first.addr),
                _ => None,
            };
            if dn.buid.is_none() {
                self.warn(DmaWarning::NoBuid {
                    path: dn.path.clone(),
                });
            }
            if dn.ddw.is_some() && !read_pci_config {
                self.warn(DmaWarning::NoReadPciConfig {
                    path: dn.path.clone(),
                });
            }
            if tree.prop(node, DMA_WINDOW).is_none() {
                self.warn(DmaWarning::PhbWithoutWindow {
                    path: dn.path.clone(),
                });
            }
        }
        dn
    }

    fn check_tokens(&mut self, tree: &Tree, path: &str, ddw: &DdwInfo) {
        let calls = [
            (RTAS_QUERY_PE_DMA_WINDOW, Some(ddw.query)),
            (RTAS_CREATE_PE_DMA_WINDOW, Some(ddw.create)),
            (RTAS_REMOVE_PE_DMA_WINDOW, Some(ddw.remove)),
            (RTAS_RESET_PE_DMA_WINDOW, ddw.ext.reset),
        ];
        for (call, token) in calls {
            let Some(token) = token else { continue };
            match rtas_token(tree, call) {
                None => self.warn(DmaWarning::UndefinedToken {
                    path: path.into(),
                    call,
                    token,
                }),
                Some(rtas) if rtas != token => self.warn(DmaWarning::TokenMismatch {
                    path: path.into(),
                    call,
                    token,
                    rtas,
                }),
                Some(_) => {}
            }
        }
    }

    /// Size, wrap, overlap and LIOBN checks over all windows.
    fn check_windows(&mut self, tree: &Tree) {
        // (bus address space, node index in self.nodes, window)
        let mut all: Vec<(NodeId, usize, DmaWindow)> = Vec::new();
        for (i, dn) in self.nodes.iter().enumerate() {
            // A PHB and everything below it share the PHB's bus addresses.
            let space = core::iter::successors(Some(dn.node), |&n| tree.parent(n))
                .find(|&n| is_phb(tree, n))
                .unwrap_or(dn.node);
            for w in dn.window.iter().chain(dn.dynamic.iter()) {
                all.push((space, i, *w));
            }
        }
        let mut warnings = Vec::new();
        let mut liobns: BTreeMap<u32, usize> = BTreeMap::new();
        for &(_, i, w) in &all {
            let path = &self.nodes[i].path;
            if !w.size.is_power_of_two() {
                warnings.push(DmaWarning::SizeNotPowerOfTwo {
                    path: path.clone(),
                    window: w,
                });
            }
            if w.end().is_none() {
                warnings.push(DmaWarning::WindowWraps {
                    path: path.clone(),
                    window: w,
                });
            }
            if let Some(&j) = liobns.get(&w.liobn) {
                warnings.push(DmaWarning::DuplicateLiobn {
                    liobn: w.liobn,
                    a: self.nodes[j].path.clone(),
                    b: path.clone(),
                });
            } else {
                liobns.insert(w.liobn, i);
            }
        }
        // Overlaps: sort each space by address and compare with the window
        // reaching furthest so far.
        all.retain(|(_, _, w)| w.size != 0);
        all.sort_by_key(|&(space, _, w)| (space, w.bus_addr));
        let mut reach: Option<(NodeId, usize, DmaWindow, u128)> = None;
        for &(space, i, w) in &all {
            let end = u128::from(w.bus_addr) + u128::from(w.size);
            match reach {
                Some((s, j, rw, rend)) if s == space => {
                    if u128::from(w.bus_addr) < rend {
                        warnings.push(DmaWarning::Overlap {
                            a: self.nodes[j].path.clone(),
                            a_window: rw,
                            b: self.nodes[i].path.clone(),
                            b_window: w,
                        });
                    }
                    if end > rend {
                        reach = Some((space, i, w, end));
                    }
                }
                _ => reach = Some((space, i, w, end)),
            }
        }
        self.warnings.extend(warnings);
    }

    /// The entry for `node`.
    pub fn node(&self, node: NodeId) -> Option<&DmaNode> {
        self.nodes.iter().find(|d| d.node == node)
    }

    /// The node whose default or recorded window uses `liobn`.
    pub fn by_liobn(&self, liobn: u32) -> Option<&DmaNode> {
        self.nodes.iter().find(|d| {
            d.window
                .iter()
                .chain(d.dynamic.iter())
                .any(|w| w.liobn == liobn)
        })
    }
}

/// Write a window as `prop` on `node`, with `ibm,#dma-address-cells` and
/// `ibm,#dma-size-cells` = 2 next to it: `<liobn addr-hi addr-lo size-hi
/// size-lo>`.
pub fn set_dma_window(
    tree: &mut Tree,
    node: NodeId,
    prop: WindowProp,
    w: &DmaWindow,
) -> Result<(), TreeError> {
    tree.set_prop_u32(node, DMA_ADDRESS_CELLS, 2)?;
    tree.set_prop_u32(node, DMA_SIZE_CELLS, 2)?;
    tree.set_prop_cells(
        node,
        prop.name(),
        &[
            w.liobn,
            (w.bus_addr >> 32) as u32,
            w.bus_addr as u32,
            (w.size >> 32) as u32,
            w.size as u32,
        ],
    )
}

/// Write `ibm,ddw-applicable = <query create remove>`.
pub fn set_ddw_applicable(
    tree: &mut Tree,
    node: NodeId,
    query: u32,
    create: u32,
    remove: u32,
) -> Result<(), TreeError> {
    tree.set_prop_cells(node, DDW_APPLICABLE, &[query, create, remove])
}

/// Write `ibm,ddw-extensions` (see [`DdwExtensions::encode`]).
pub fn set_ddw_extensions(
    tree: &mut Tree,
    node: NodeId,
    ext: &DdwExtensions,
) -> Result<(), TreeError> {
    tree.set_prop_cells(node, DDW_EXTENSIONS, &ext.encode())
}
