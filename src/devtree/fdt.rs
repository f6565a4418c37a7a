//! Flattened device tree reader: validated, zero-copy and allocation-free
//! (Devicetree Specification v0.4 ch. 5 "Flattened Devicetree (DTB) Format";
//! QEMU pseries contract §1.4: QEMU passes its tree in r3).
//!
//! [`Fdt::new`] checks the header and then walks the whole structure block
//! once, so every later walk over a blob it accepted only meets checked data:
//!
//! * header: magic, `version` ≥ 16 and `last_comp_version` ≤ 17, `totalsize`
//!   within the slice, every block inside `totalsize`, after the header, not
//!   overlapping another block, `off_mem_rsvmap` 8-aligned and
//!   `off_dt_struct` 4-aligned;
//! * reserve map: terminated by a (0, 0) entry inside its region;
//! * structure block: every token, name and value bounds-checked; node names
//!   NUL-terminated printable ASCII without `/` or `:` (root: empty); property
//!   names resolved in the strings block and NUL-terminated there; names at
//!   most [`MAX_NAME_LEN`] bytes; nesting at most [`MAX_DEPTH`]; exactly one
//!   root node, then `FDT_END`.
//!
//! A v17 header whose `size_dt_struct` is 0 (Linux's prom_init leaves it so,
//! linux-expectations.md §1.9) and a v16 header (which has no such field) are
//! read as "the structure block runs to the next block or to `totalsize`".
//!
//! Besides the generic walker ([`Fdt::walk`]) there are the few helpers the
//! start-up code needs *before its heap exists* — find a node by path, read
//! a property, its `#address-cells`/`#size-cells` and `reg` — so it can size
//! RAM and place the heap before unflattening the tree into a
//! [`super::Tree`].

use super::path::{self, Component};
use core::fmt;

/// The FDT magic number.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of a v17 header.
pub const HEADER_SIZE: usize = 40;
/// Size of a v16 header (no `size_dt_struct`).
const HEADER_SIZE_V16: usize = 36;
/// Deepest node nesting accepted (the root is depth 1).
pub const MAX_DEPTH: usize = 64;
/// Longest node or property name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// The blocks of a blob, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    ReserveMap,
    Struct,
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::ReserveMap => "memory reserve map",
            Block::Struct => "structure block",
            Block::Strings => "strings block",
        })
    }
}

/// Why a blob (or, for the variants after `NoRoot`, the tree it describes)
/// was refused.  Offsets are from the start of the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// The slice cannot even hold a header.
    TooShort {
        len: usize,
    },
    BadMagic(u32),
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// `totalsize` is larger than the slice.
    Truncated {
        totalsize: u32,
        len: usize,
    },
    /// `totalsize` is smaller than the header.
    TotalsizeTooSmall(u32),
    /// A block does not lie inside `totalsize`.
    BlockOutOfRange {
        block: Block,
        offset: u32,
        size: u32,
    },
    BlockOverlapsHeader {
        block: Block,
        offset: u32,
    },
    BlocksOverlap {
        a: Block,
        b: Block,
    },
    Misaligned {
        block: Block,
        offset: u32,
    },
    /// No (0, 0) entry before the end of the reserve map's region.
    UnterminatedReserveMap,
    /// The structure block ends inside a token.
    TruncatedToken {
        offset: usize,
    },
    BadToken {
        offset: usize,
        token: u32,
    },
    UnterminatedNodeName {
        offset: usize,
    },
    BadNodeName {
        offset: usize,
    },
    NameTooLong {
        offset: usize,
    },
    PropNameOutOfRange {
        nameoff: u32,
    },
    UnterminatedPropName {
        nameoff: u32,
    },
    BadPropName {
        nameoff: u32,
    },
    PropValueOutOfRange {
        offset: usize,
        len: u32,
    },
    TooDeep {
        limit: usize,
    },
    /// `FDT_END_NODE` with no node open.
    UnexpectedEndNode {
        offset: usize,
    },
    /// `FDT_PROP` before the root node or after it ended.
    PropOutsideNode {
        offset: usize,
    },
    /// A second top-level node.
    DataAfterRoot {
        offset: usize,
    },
    /// `FDT_END` while nodes are still open.
    UnexpectedEnd {
        offset: usize,
        depth: usize,
    },
    NoRoot,
    /// A cell-count property holds a count this reader does not decode.
    UnsupportedCells {
        address_cells: u32,
        size_cells: u32,
    },
    /// A property's length does not fit its format.
    BadPropLen {
        offset: usize,
        len: usize,
    },
    // --- refused while unflattening into a `Tree` -------------------------
    TooManyNodes {
        limit: usize,
    },
    PropTooLarge {
        offset: usize,
        len: usize,
    },
    TreeTooLarge {
        limit: usize,
    },
    DuplicateNode {
        offset: usize,
    },
    DuplicateProp {
        offset: usize,
    },
    DuplicatePhandle {
        offset: usize,
        phandle: u32,
    },
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FdtError::*;
        match *self {
            TooShort { len } => write!(f, "blob of {len:#x} bytes is shorter than an FDT header"),
            BadMagic(m) => write!(f, "bad magic {m:#010x} (expected {FDT_MAGIC:#010x})"),
            UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported FDT version {version} (last compatible {last_comp_version}; need 16..17)"
            ),
            Truncated { totalsize, len } => {
                write!(f, "truncated: totalsize {totalsize:#x} > blob {len:#x}")
            }
            TotalsizeTooSmall(t) => write!(f, "totalsize {t:#x} is smaller than the header"),
            BlockOutOfRange {
                block,
                offset,
                size,
            } => write!(
                f,
                "{block} offset out of range ({offset:#x}+{size:#x} beyond totalsize)"
            ),
            BlockOverlapsHeader { block, offset } => {
                write!(f, "{block} at {offset:#x} overlaps the header")
            }
            BlocksOverlap { a, b } => write!(f, "{a} overlaps {b}"),
            Misaligned { block, offset } => write!(f, "{block} offset {offset:#x} is misaligned"),
            UnterminatedReserveMap => write!(f, "memory reserve map has no terminating entry"),
            TruncatedToken { offset } => {
                write!(f, "structure block ends inside the token at {offset:#x}")
            }
            BadToken { offset, token } => write!(f, "bad token {token:#x} at {offset:#x}"),
            UnterminatedNodeName { offset } => write!(f, "unterminated node name at {offset:#x}"),
            BadNodeName { offset } => write!(f, "invalid node name at {offset:#x}"),
            NameTooLong { offset } => write!(
                f,
                "name longer than {MAX_NAME_LEN} bytes (token at {offset:#x})"
            ),
            PropNameOutOfRange { nameoff } => write!(
                f,
                "property name offset {nameoff:#x} outside strings block"
            ),
            UnterminatedPropName { nameoff } => write!(
                f,
                "property name at strings offset {nameoff:#x} is not NUL-terminated"
            ),
            BadPropName { nameoff } => {
                write!(f, "invalid property name at strings offset {nameoff:#x}")
            }
            PropValueOutOfRange { offset, len } => write!(
                f,
                "property at {offset:#x}: value of {len:#x} bytes runs past the structure block"
            ),
            TooDeep { limit } => write!(f, "nesting deeper than {limit}"),
            UnexpectedEndNode { offset } => write!(f, "FDT_END_NODE at {offset:#x} closes no node"),
            PropOutsideNode { offset } => write!(f, "property at {offset:#x} outside any node"),
            DataAfterRoot { offset } => write!(f, "second top-level node at {offset:#x}"),
            UnexpectedEnd { offset, depth } => {
                write!(f, "FDT_END at {offset:#x} with {depth} node(s) still open")
            }
            NoRoot => write!(f, "no root node"),
            UnsupportedCells {
                address_cells,
                size_cells,
            } => write!(
                f,
                "unsupported cell counts #address-cells={address_cells} #size-cells={size_cells}"
            ),
            BadPropLen { offset, len } => {
                write!(f, "property at {offset:#x} has a bad length {len:#x}")
            }
            TooManyNodes { limit } => write!(f, "more than {limit} nodes"),
            PropTooLarge { offset, len } => {
                write!(f, "property at {offset:#x} is too large ({len:#x} bytes)")
            }
            TreeTooLarge { limit } => write!(f, "tree larger than {limit:#x} bytes"),
            DuplicateNode { offset } => write!(f, "duplicate node name at {offset:#x}"),
            DuplicateProp { offset } => write!(f, "duplicate property at {offset:#x}"),
            DuplicatePhandle { offset, phandle } => {
                write!(f, "duplicate phandle {phandle:#x} (node at {offset:#x})")
            }
        }
    }
}

/// The header fields (all versions' fields; `size_dt_struct` is 0 for v16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub totalsize: u32,
    pub off_dt_struct: u32,
    pub off_dt_strings: u32,
    pub off_mem_rsvmap: u32,
    pub version: u32,
    pub last_comp_version: u32,
    pub boot_cpuid_phys: u32,
    pub size_dt_strings: u32,
    pub size_dt_struct: u32,
}

/// A memory reserve map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveEntry {
    pub address: u64,
    pub size: u64,
}

/// A validated blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    header: Header,
    /// From `off_mem_rsvmap` to the end of the reserve map's region.
    rsvmap: &'a [u8],
    structs: &'a [u8],
    struct_off: usize,
    strings: &'a [u8],
}

/// One structure-block token.  `offset` is the token's offset in the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    BeginNode {
        offset: usize,
        name: &'a str,
    },
    Prop {
        offset: usize,
        name: &'a str,
        value: &'a [u8],
    },
    EndNode {
        offset: usize,
    },
}

/// A node found in a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdtNode<'a> {
    /// The full node name (`name@unit`); empty for the root.
    pub name: &'a str,
    /// Offset of the node's `FDT_BEGIN_NODE` token in the blob.
    pub offset: usize,
    /// Offset (in the structure block) of the first token after the name.
    body: usize,
    /// Depth of the node (root = 1).
    depth: usize,
    /// The parent's `#address-cells` and `#size-cells`, or why they could
    /// not be read.
    parent_cells: Result<(u32, u32), FdtError>,
}

impl FdtNode<'_> {
    /// The parent's `#address-cells` and `#size-cells` (IEEE 1275 defaults
    /// 2 and 1; the defaults for the root), which `reg` is decoded with.
    pub fn parent_cells(&self) -> Result<(u32, u32), FdtError> {
        self.parent_cells
    }
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some((u64::from(be32(b, off)?) << 32) | u64::from(be32(b, off + 4)?))
}

const fn align4(x: usize) -> usize {
    (x + 3) & !3
}

/// Decode `cells.len() / 4` big-endian cells as one number, keeping the low
/// 64 bits (Linux's `of_read_number`).  Callers bound the cell count.
pub fn read_cells(cells: &[u8]) -> u64 {
    cells.chunks_exact(4).fold(0u64, |acc, c| {
        (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    })
}

impl<'a> Fdt<'a> {
    /// Validate `blob` (header, reserve map, the whole structure block).
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let fdt = Self::from_header(blob)?;
        for e in fdt.reserve_map() {
            e?;
        }
        for t in fdt.walk() {
            t?;
        }
        Ok(fdt)
    }

    /// Check the header and locate the blocks (no structure walk).
    fn from_header(blob: &'a [u8]) -> Result<Self, FdtError> {
        use FdtError::*;
        let magic = be32(blob, 0).ok_or(TooShort { len: blob.len() })?;
        if magic != FDT_MAGIC {
            return Err(BadMagic(magic));
        }
        if blob.len() < HEADER_SIZE_V16 {
            return Err(TooShort { len: blob.len() });
        }
        let f = |i: usize| be32(blob, i * 4).unwrap_or(0);
        let mut h = Header {
            totalsize: f(1),
            off_dt_struct: f(2),
            off_dt_strings: f(3),
            off_mem_rsvmap: f(4),
            version: f(5),
            last_comp_version: f(6),
            boot_cpuid_phys: f(7),
            size_dt_strings: f(8),
            size_dt_struct: 0,
        };
        if h.totalsize as usize > blob.len() {
            return Err(Truncated {
                totalsize: h.totalsize,
                len: blob.len(),
            });
        }
        if h.version < 16 || h.last_comp_version > 17 {
            return Err(UnsupportedVersion {
                version: h.version,
                last_comp_version: h.last_comp_version,
            });
        }
        let header_size = if h.version >= 17 {
            HEADER_SIZE
        } else {
            HEADER_SIZE_V16
        };
        if (h.totalsize as usize) < header_size {
            return Err(TotalsizeTooSmall(h.totalsize));
        }
        if h.version >= 17 {
            h.size_dt_struct = f(9);
        }
        let total = h.totalsize as usize;
        let blob = &blob[..total];

        // Each block: start, end (exclusive), inside [header_size, total].
        let check = |block, off: u32, size: u32| -> Result<(usize, usize), FdtError> {
            let (o, s) = (off as usize, size as usize);
            let end = o
                .checked_add(s)
                .filter(|&e| e <= total)
                .ok_or(BlockOutOfRange {
                    block,
                    offset: off,
                    size,
                })?;
            if o < header_size {
                return Err(BlockOverlapsHeader { block, offset: off });
            }
            Ok((o, end))
        };
        if !h.off_mem_rsvmap.is_multiple_of(8) {
            return Err(Misaligned {
                block: Block::ReserveMap,
                offset: h.off_mem_rsvmap,
            });
        }
        if !h.off_dt_struct.is_multiple_of(4) {
            return Err(Misaligned {
                block: Block::Struct,
                offset: h.off_dt_struct,
            });
        }
        let strings = check(Block::Strings, h.off_dt_strings, h.size_dt_strings)?;
        let struct_size = if h.size_dt_struct != 0 {
            h.size_dt_struct
        } else {
            // Unknown: up to the strings block if it follows, else totalsize.
            let end = if strings.0 > h.off_dt_struct as usize {
                strings.0
            } else {
                total
            };
            end.saturating_sub(h.off_dt_struct as usize) as u32
        };
        let structs = check(Block::Struct, h.off_dt_struct, struct_size)?;
        // The reserve map needs room for at least its terminator.
        let rsv = check(Block::ReserveMap, h.off_mem_rsvmap, 16)?;
        let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
        if overlaps(structs, strings) {
            return Err(BlocksOverlap {
                a: Block::Struct,
                b: Block::Strings,
            });
        }
        // The reserve map region runs to the next block (or totalsize).
        let mut rsv_end = total;
        for (block, (s, e)) in [(Block::Struct, structs), (Block::Strings, strings)] {
            if s < e && overlaps(rsv, (s, e)) {
                return Err(BlocksOverlap {
                    a: Block::ReserveMap,
                    b: block,
                });
            }
            if s >= rsv.1 && s < rsv_end {
                rsv_end = s;
            }
        }
        Ok(Fdt {
            header: h,
            rsvmap: &blob[rsv.0..rsv_end],
            structs: &blob[structs.0..structs.1],
            struct_off: structs.0,
            strings: &blob[strings.0..strings.1],
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn totalsize(&self) -> usize {
        self.header.totalsize as usize
    }

    pub fn boot_cpuid_phys(&self) -> u32 {
        self.header.boot_cpuid_phys
    }

    /// The memory reserve map, without its terminator.
    pub fn reserve_map(&self) -> ReserveMap<'a> {
        ReserveMap {
            region: self.rsvmap,
            pos: 0,
            done: false,
        }
    }

    /// Walk the whole structure block.
    pub fn walk(&self) -> Walker<'a> {
        Walker {
            structs: self.structs,
            strings: self.strings,
            base: self.struct_off,
            pos: 0,
            depth: 0,
            stop_depth: None,
            root_closed: false,
            done: false,
        }
    }

    /// A walker over the inside of `node` (its properties and subtree); it
    /// ends after the node's `FDT_END_NODE`.
    fn walk_node(&self, node: &FdtNode<'a>) -> Walker<'a> {
        Walker {
            pos: node.body,
            depth: node.depth,
            stop_depth: Some(node.depth),
            ..self.walk()
        }
    }

    /// The root node.
    pub fn root(&self) -> Result<FdtNode<'a>, FdtError> {
        let mut w = self.walk();
        match w.next() {
            Some(Ok(Token::BeginNode { offset, name })) => Ok(FdtNode {
                name,
                offset,
                body: w.pos,
                depth: 1,
                parent_cells: Ok((2, 1)),
            }),
            Some(Err(e)) => Err(e),
            _ => Err(FdtError::NoRoot),
        }
    }

    /// The properties of `node`, in blob order.
    pub fn props(&self, node: &FdtNode<'a>) -> Props<'a> {
        Props {
            walker: self.walk_node(node),
            level: node.depth,
        }
    }

    /// The value of property `name` of `node`.
    pub fn prop(&self, node: &FdtNode<'a>, name: &str) -> Result<Option<&'a [u8]>, FdtError> {
        for p in self.props(node) {
            let (n, v) = p?;
            if n == name {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A one-cell property of `node` (exactly 4 bytes).
    pub fn prop_u32(&self, node: &FdtNode<'a>, name: &str) -> Result<Option<u32>, FdtError> {
        match self.prop(node, name)? {
            None => Ok(None),
            Some(v) => be32(v, 0)
                .filter(|_| v.len() == 4)
                .map(Some)
                .ok_or(FdtError::BadPropLen {
                    offset: node.offset,
                    len: v.len(),
                }),
        }
    }

    /// `#address-cells` and `#size-cells` of `node` — the cell counts of its
    /// children's `reg` (IEEE 1275 defaults 2 and 1).
    pub fn cells(&self, node: &FdtNode<'a>) -> Result<(u32, u32), FdtError> {
        Ok((
            self.prop_u32(node, "#address-cells")?.unwrap_or(2),
            self.prop_u32(node, "#size-cells")?.unwrap_or(1),
        ))
    }

    /// The children of `node`, in blob order.
    pub fn children(&self, node: &FdtNode<'a>) -> Children<'a> {
        Children {
            walker: self.walk_node(node),
            level: node.depth,
            cells: self.cells(node),
        }
    }

    /// Find a node by absolute path (IEEE 1275 matching, see
    /// [`super::path`]; arguments are ignored, aliases are not resolved).
    pub fn find_node(&self, path: &str) -> Result<Option<FdtNode<'a>>, FdtError> {
        if !path.starts_with('/') {
            return Ok(None);
        }
        let mut node = self.root()?;
        for comp in path::components(path) {
            let comp = Component::parse(comp);
            // Exact names first, then the IEEE 1275 rule.
            let mut exact = None;
            for child in self.children(&node) {
                let child = child?;
                if child.name == comp.full {
                    exact = Some(child);
                    break;
                }
            }
            let mut fuzzy = None;
            if exact.is_none() {
                for child in self.children(&node) {
                    let child = child?;
                    if comp.matches(child.name) {
                        fuzzy = Some(child);
                        break;
                    }
                }
            }
            match exact.or(fuzzy) {
                Some(c) => node = c,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// Property `name` of the node at `path`.
    pub fn prop_at(&self, path: &str, name: &str) -> Result<Option<&'a [u8]>, FdtError> {
        match self.find_node(path)? {
            Some(n) => self.prop(&n, name),
            None => Ok(None),
        }
    }

    /// The `reg` entries of `node` as (address, size), decoded with its
    /// parent's cell counts; only counts up to 2 cells are supported here
    /// (enough for `/memory` and the other root children).  An absent `reg`
    /// gives no entries.  A malformed `#address-cells`/`#size-cells` on the
    /// parent is reported here (finding nodes does not need them).
    pub fn reg(&self, node: &FdtNode<'a>) -> Result<RegIter<'a>, FdtError> {
        let (ac, sc) = node.parent_cells?;
        if ac > 2 || sc > 2 || ac + sc == 0 {
            return Err(FdtError::UnsupportedCells {
                address_cells: ac,
                size_cells: sc,
            });
        }
        let value = self.prop(node, "reg")?.unwrap_or(&[]);
        let entry = (ac + sc) as usize * 4;
        if value.len() % entry != 0 {
            return Err(FdtError::BadPropLen {
                offset: node.offset,
                len: value.len(),
            });
        }
        Ok(RegIter {
            value,
            ac: ac as usize,
            entry,
        })
    }
}

/// Iterator over the reserve map (see [`Fdt::reserve_map`]).
#[derive(Clone, Debug)]
pub struct ReserveMap<'a> {
    region: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for ReserveMap<'_> {
    type Item = Result<ReserveEntry, FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let entry = be64(self.region, self.pos).zip(be64(self.region, self.pos + 8));
        self.pos += 16;
        match entry {
            None => {
                self.done = true;
                Some(Err(FdtError::UnterminatedReserveMap))
            }
            Some((0, 0)) => {
                self.done = true;
                None
            }
            Some((address, size)) => Some(Ok(ReserveEntry { address, size })),
        }
    }
}

/// Iterator over structure-block tokens (`FDT_NOP` skipped, `FDT_END`
/// ends it).  After an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Walker<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
    /// Blob offset of the structure block.
    base: usize,
    /// Next token, relative to the structure block.
    pos: usize,
    /// Number of open nodes.
    depth: usize,
    /// For a node walk: end when the depth drops below this.
    stop_depth: Option<usize>,
    root_closed: bool,
    done: bool,
}

impl<'a> Walker<'a> {
    /// Current nesting depth (number of open nodes).
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn prop_name(&self, nameoff: u32) -> Result<&'a str, FdtError> {
        let rest = self
            .strings
            .get(nameoff as usize..)
            .filter(|r| !r.is_empty())
            .ok_or(FdtError::PropNameOutOfRange { nameoff })?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(FdtError::UnterminatedPropName { nameoff })?;
        let name = &rest[..len];
        if !path::valid_prop_name(name) {
            return Err(FdtError::BadPropName { nameoff });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(FdtError::NameTooLong {
                offset: nameoff as usize,
            });
        }
        core::str::from_utf8(name).map_err(|_| FdtError::BadPropName { nameoff })
    }

    fn step(&mut self) -> Result<Option<Token<'a>>, FdtError> {
        use FdtError::*;
        loop {
            let rel = self.pos;
            let offset = self.base + rel;
            let token = be32(self.structs, rel).ok_or(TruncatedToken { offset })?;
            self.pos = rel + 4;
            match token {
                FDT_BEGIN_NODE => {
                    if self.root_closed {
                        return Err(DataAfterRoot { offset });
                    }
                    let rest = &self.structs[self.pos..];
                    let len = rest
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or(UnterminatedNodeName { offset })?;
                    let name = &rest[..len];
                    if len > MAX_NAME_LEN {
                        return Err(NameTooLong { offset });
                    }
                    if !path::valid_node_name(name, self.depth == 0) {
                        return Err(BadNodeName { offset });
                    }
                    let name = core::str::from_utf8(name).map_err(|_| BadNodeName { offset })?;
                    if self.depth >= MAX_DEPTH {
                        return Err(TooDeep { limit: MAX_DEPTH });
                    }
                    self.depth += 1;
                    self.pos = align4(self.pos + len + 1);
                    return Ok(Some(Token::BeginNode { offset, name }));
                }
                FDT_END_NODE => {
                    if self.depth == 0 {
                        return Err(UnexpectedEndNode { offset });
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.root_closed = true;
                    }
                    if self.stop_depth.is_some_and(|s| self.depth < s) {
                        self.done = true;
                    }
                    return Ok(Some(Token::EndNode { offset }));
                }
                FDT_PROP => {
                    if self.depth == 0 {
                        return Err(PropOutsideNode { offset });
                    }
                    let len = be32(self.structs, self.pos).ok_or(TruncatedToken { offset })?;
                    let nameoff =
                        be32(self.structs, self.pos + 4).ok_or(TruncatedToken { offset })?;
                    let start = self.pos + 8;
                    let value = start
                        .checked_add(len as usize)
                        .and_then(|end| self.structs.get(start..end))
                        .ok_or(PropValueOutOfRange { offset, len })?;
                    let name = self.prop_name(nameoff)?;
                    self.pos = align4(start + value.len());
                    return Ok(Some(Token::Prop {
                        offset,
                        name,
                        value,
                    }));
                }
                FDT_NOP => continue,
                FDT_END => {
                    if self.depth != 0 {
                        return Err(UnexpectedEnd {
                            offset,
                            depth: self.depth,
                        });
                    }
                    if !self.root_closed {
                        return Err(NoRoot);
                    }
                    return Ok(None);
                }
                _ => return Err(BadToken { offset, token }),
            }
        }
    }
}

impl<'a> Iterator for Walker<'a> {
    type Item = Result<Token<'a>, FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator over one node's properties as (name, value).
#[derive(Clone, Debug)]
pub struct Props<'a> {
    walker: Walker<'a>,
    level: usize,
}

impl<'a> Iterator for Props<'a> {
    type Item = Result<(&'a str, &'a [u8]), FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let depth = self.walker.depth();
            match self.walker.next()? {
                Ok(Token::Prop { name, value, .. }) if depth == self.level => {
                    return Some(Ok((name, value)))
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Iterator over one node's children.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    walker: Walker<'a>,
    level: usize,
    cells: Result<(u32, u32), FdtError>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<FdtNode<'a>, FdtError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let depth = self.walker.depth();
            match self.walker.next()? {
                Ok(Token::BeginNode { offset, name }) if depth == self.level => {
                    return Some(Ok(FdtNode {
                        name,
                        offset,
                        body: self.walker.pos,
                        depth: depth + 1,
                        parent_cells: self.cells,
                    }))
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Iterator over decoded `reg` entries (see [`Fdt::reg`]).
#[derive(Clone, Debug)]
pub struct RegIter<'a> {
    value: &'a [u8],
    ac: usize,
    entry: usize,
}

impl Iterator for RegIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.value.len() < self.entry {
            return None;
        }
        let (e, rest) = self.value.split_at(self.entry);
        self.value = rest;
        let (a, s) = e.split_at(self.ac * 4);
        Some((read_cells(a), read_cells(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_72: &[u8] = include_bytes!("../../qemu-tests/trees/qemu-7.2-default.dtb");
    const MEM4G_10: &[u8] = include_bytes!("../../qemu-tests/trees/qemu-10.0-mem4g.dtb");
    const KERNEL_72: &[u8] = include_bytes!("../../qemu-tests/trees/qemu-7.2-kernel.dtb");

    #[test]
    fn header_of_qemu_tree() {
        let fdt = Fdt::new(DEFAULT_72).unwrap();
        let h = fdt.header();
        assert_eq!(h.version, 17);
        assert_eq!(h.last_comp_version, 16);
        assert_eq!(h.totalsize as usize, DEFAULT_72.len());
        assert_eq!(fdt.reserve_map().count(), 0);
    }

    #[test]
    fn pre_heap_helpers() {
        let fdt = Fdt::new(MEM4G_10).unwrap();
        let root = fdt.root().unwrap();
        assert_eq!(root.name, "");
        assert_eq!(fdt.cells(&root).unwrap(), (2, 2));
        let mem = fdt.find_node("/memory@0").unwrap().unwrap();
        assert_eq!(mem.parent_cells(), Ok((2, 2)));
        let reg: Vec<_> = fdt.reg(&mem).unwrap().collect();
        // QEMU describes the first (RMA-sized) block as memory@0 ...
        assert_eq!(reg[0].0, 0);
        assert!(reg[0].1 > 0);
        // ... and the rest in ibm,dynamic-reconfiguration-memory or further
        // memory nodes; /memory without a unit address finds memory@0 too.
        assert_eq!(
            fdt.find_node("/memory").unwrap().unwrap().offset,
            mem.offset
        );
        assert_eq!(
            fdt.prop_at("/chosen", "stdout-path").unwrap(),
            Some(&b"/vdevice/vty@71000000\0"[..])
        );
        assert_eq!(
            fdt.prop_u32(
                &fdt.find_node("/rtas").unwrap().unwrap(),
                "ibm,read-pci-config"
            )
            .unwrap(),
            Some(0x2016)
        );
        assert!(fdt.find_node("/vdevice/vty").unwrap().is_some());
        assert!(fdt.find_node("/vdevice/nothing").unwrap().is_none());
        assert!(fdt.find_node("relative").unwrap().is_none());
        assert_eq!(fdt.find_node("/").unwrap().unwrap().offset, root.offset);
    }

    #[test]
    fn reserve_map_of_kernel_tree() {
        let fdt = Fdt::new(KERNEL_72).unwrap();
        let rsv: Vec<_> = fdt.reserve_map().map(|e| e.unwrap()).collect();
        assert_eq!(
            rsv,
            [
                ReserveEntry {
                    address: 0x40_0000,
                    size: 0x1000
                },
                ReserveEntry {
                    address: 0x42_0000,
                    size: 0x2000
                }
            ]
        );
        let bootargs = fdt.prop_at("/chosen", "bootargs").unwrap().unwrap();
        assert_eq!(bootargs, b"console=hvc0,root=/dev/sda\0");
    }

    #[test]
    fn walker_balances() {
        let fdt = Fdt::new(DEFAULT_72).unwrap();
        let (mut begin, mut end, mut props) = (0, 0, 0);
        for t in fdt.walk() {
            match t.unwrap() {
                Token::BeginNode { .. } => begin += 1,
                Token::EndNode { .. } => end += 1,
                Token::Prop { .. } => props += 1,
            }
        }
        assert_eq!(begin, end);
        assert!(begin > 10 && props > 100);
    }

    #[test]
    fn read_cells_keeps_low_64_bits() {
        assert_eq!(read_cells(&[]), 0);
        assert_eq!(read_cells(&[0, 0, 0, 5]), 5);
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2]), 0x1_0000_0002);
        assert_eq!(
            read_cells(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2]),
            0x1_0000_0002
        );
    }
}
