//! Reading and comparing flattened device trees (devicetree specification
//! v0.4 §5, "Flattened devicetree (DTB) format") on the host: what a guest
//! kernel was given (`/sys/firmware/fdt`, which the test guest writes to its
//! disk with `papr.fdt=MIB`) under papr-fw against the same under QEMU's VOF.
//!
//! The reader here is deliberately independent of papr-fw's own `devtree`
//! module: it is the oracle the firmware's output is judged by.  It keeps
//! every node by full path and every property's raw bytes; [`compare`]
//! lists the differences, treating two cells as equal when both are phandles
//! of the same node (each firmware numbers its nodes its own way).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A parsed flattened tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlatTree {
    pub version: u32,
    pub boot_cpuid_phys: u32,
    /// The memory reservation block, in order.
    pub reserve: Vec<(u64, u64)>,
    /// Node path ("/", "/cpus/PowerPC,POWER9@0", ...) → property → value.
    pub nodes: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("truncated at {at:#x}"))
}

fn be64(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("truncated at {at:#x}"))
}

fn cstr(b: &[u8], at: usize) -> Result<&str, String> {
    let rest = b
        .get(at..)
        .ok_or_else(|| format!("string at {at:#x} out of range"))?;
    let n = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| format!("unterminated string at {at:#x}"))?;
    std::str::from_utf8(&rest[..n]).map_err(|_| format!("string at {at:#x} is not UTF-8"))
}

impl FlatTree {
    /// Parse a blob (at least `totalsize` bytes; more is ignored).
    pub fn parse(blob: &[u8]) -> Result<FlatTree, String> {
        if be32(blob, 0)? != FDT_MAGIC {
            return Err(format!("bad magic {:#x}", be32(blob, 0)?));
        }
        let total = be32(blob, 4)? as usize;
        if total > blob.len() || total < 40 {
            return Err(format!("totalsize {total:#x}, blob {:#x}", blob.len()));
        }
        let b = &blob[..total];
        let off_struct = be32(b, 8)? as usize;
        let off_strings = be32(b, 12)? as usize;
        let off_rsv = be32(b, 16)? as usize;
        let version = be32(b, 20)?;
        let boot_cpuid_phys = be32(b, 28)?;
        let strings = b.get(off_strings..).ok_or("strings block out of range")?;

        let mut reserve = Vec::new();
        let mut at = off_rsv;
        loop {
            let (addr, size) = (be64(b, at)?, be64(b, at + 8)?);
            at += 16;
            if addr == 0 && size == 0 {
                break;
            }
            reserve.push((addr, size));
        }

        let mut nodes: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        let mut stack: Vec<String> = Vec::new();
        let mut at = off_struct;
        loop {
            let token = be32(b, at)?;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let name = cstr(b, at)?;
                    at += (name.len() + 1).next_multiple_of(4);
                    let path = match stack.last() {
                        None => "/".to_string(),
                        Some(p) if p == "/" => format!("/{name}"),
                        Some(p) => format!("{p}/{name}"),
                    };
                    if nodes.insert(path.clone(), BTreeMap::new()).is_some() {
                        return Err(format!("node {path} appears twice"));
                    }
                    stack.push(path);
                }
                FDT_END_NODE => {
                    stack.pop().ok_or("unbalanced FDT_END_NODE")?;
                }
                FDT_PROP => {
                    let len = be32(b, at)? as usize;
                    let nameoff = be32(b, at + 4)? as usize;
                    at += 8;
                    let value = b
                        .get(at..at + len)
                        .ok_or_else(|| format!("property value at {at:#x} out of range"))?;
                    at += len.next_multiple_of(4);
                    let name = cstr(strings, nameoff)?.to_string();
                    let path = stack.last().ok_or("property outside a node")?;
                    let props = nodes.get_mut(path).unwrap();
                    if props.insert(name.clone(), value.to_vec()).is_some() {
                        return Err(format!("{path}: property {name} appears twice"));
                    }
                }
                FDT_NOP => {}
                FDT_END => break,
                t => return Err(format!("bad token {t:#x} at {:#x}", at - 4)),
            }
        }
        if !stack.is_empty() {
            return Err("FDT_END inside a node".into());
        }
        Ok(FlatTree {
            version,
            boot_cpuid_phys,
            reserve,
            nodes,
        })
    }

    /// A tree written at `offset` of a disk image (its header gives the size).
    pub fn read_from_image(path: &Path, offset: u64) -> Result<FlatTree, String> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut f = std::fs::File::open(path).map_err(err)?;
        f.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut header = [0u8; 8];
        f.read_exact(&mut header).map_err(err)?;
        if be32(&header, 0)? != FDT_MAGIC {
            return Err(format!(
                "{}: no device tree at {offset:#x} (magic {:#x})",
                path.display(),
                be32(&header, 0)?
            ));
        }
        let total = be32(&header, 4)? as usize;
        if total > 16 << 20 {
            return Err(format!("{}: tree of {total} bytes?", path.display()));
        }
        let mut blob = vec![0u8; total];
        f.seek(SeekFrom::Start(offset)).map_err(err)?;
        f.read_exact(&mut blob).map_err(err)?;
        FlatTree::parse(&blob).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn prop(&self, path: &str, name: &str) -> Option<&[u8]> {
        self.nodes.get(path)?.get(name).map(Vec::as_slice)
    }

    /// phandle → node path, from `phandle` and `linux,phandle`.
    pub fn phandles(&self) -> BTreeMap<u32, String> {
        let mut m = BTreeMap::new();
        for (path, props) in &self.nodes {
            for name in ["phandle", "linux,phandle"] {
                if let Some(v) = props.get(name) {
                    if let Ok(ph) = be32(v, 0) {
                        m.insert(ph, path.clone());
                    }
                }
            }
        }
        m
    }
}

/// One way in which tree `b` differs from tree `a`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// A node only `a` (`in_a`) or only `b` has.
    Node { path: String, in_a: bool },
    /// A property that differs: `None` where a tree lacks it.
    Prop {
        path: String,
        name: String,
        a: Option<Vec<u8>>,
        b: Option<Vec<u8>>,
    },
    /// Reservation-map entries only in `a` and only in `b`.
    Reserve {
        only_a: Vec<(u64, u64)>,
        only_b: Vec<(u64, u64)>,
    },
    /// A header field.
    Header { field: &'static str, a: u32, b: u32 },
}

/// A property value for humans: a string list if it looks like one, else
/// cells (or bytes).
pub fn show(v: &[u8]) -> String {
    let printable = |s: &[u8]| !s.is_empty() && s.iter().all(|&c| (0x20..0x7f).contains(&c));
    if v.last() == Some(&0) && v[..v.len() - 1].split(|&c| c == 0).all(printable) {
        let parts: Vec<String> = v[..v.len() - 1]
            .split(|&c| c == 0)
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect();
        return parts.join(", ");
    }
    if v.len().is_multiple_of(4) {
        let cells: Vec<String> = v
            .chunks(4)
            .map(|c| format!("{:#x}", u32::from_be_bytes(c.try_into().unwrap())))
            .collect();
        return format!("<{}>", cells.join(" "));
    }
    let bytes: Vec<String> = v.iter().map(|b| format!("{b:02x}")).collect();
    format!("[{}]", bytes.join(" "))
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: &Option<Vec<u8>>| v.as_deref().map(show).unwrap_or_else(|| "(absent)".into());
        match self {
            Difference::Node { path, in_a } => {
                write!(f, "node {path} only in {}", if *in_a { "a" } else { "b" })
            }
            Difference::Prop { path, name, a, b } => {
                write!(f, "{path}:{name}: {} vs {}", opt(a), opt(b))
            }
            Difference::Reserve { only_a, only_b } => {
                write!(f, "reserve map: {only_a:x?} vs {only_b:x?}")
            }
            Difference::Header { field, a, b } => write!(f, "header {field}: {a:#x} vs {b:#x}"),
        }
    }
}

impl Difference {
    /// The node path and property name, for allow-lists ("" for the
    /// reservation map and header).
    pub fn key(&self) -> (&str, &str) {
        match self {
            Difference::Node { path, .. } => (path, ""),
            Difference::Prop { path, name, .. } => (path, name),
            Difference::Reserve { .. } => ("/memreserve/", ""),
            Difference::Header { field, .. } => ("/header/", field),
        }
    }
}

/// Whether two property values say the same: equal bytes, or equal cell by
/// cell where each differing pair is a phandle of the same node in its tree.
fn same_value(a: &[u8], b: &[u8], pa: &BTreeMap<u32, String>, pb: &BTreeMap<u32, String>) -> bool {
    if a == b {
        return true;
    }
    if a.len() != b.len() || !a.len().is_multiple_of(4) {
        return false;
    }
    a.chunks(4).zip(b.chunks(4)).all(|(x, y)| {
        let (x, y) = (
            u32::from_be_bytes(x.try_into().unwrap()),
            u32::from_be_bytes(y.try_into().unwrap()),
        );
        x == y || matches!((pa.get(&x), pb.get(&y)), (Some(p), Some(q)) if p == q)
    })
}

/// Every difference between `a` and `b` (phandle numbering aside).
pub fn compare(a: &FlatTree, b: &FlatTree) -> Vec<Difference> {
    let mut out = Vec::new();
    for (field, x, y) in [
        ("version", a.version, b.version),
        ("boot_cpuid_phys", a.boot_cpuid_phys, b.boot_cpuid_phys),
    ] {
        if x != y {
            out.push(Difference::Header { field, a: x, b: y });
        }
    }
    let ra: BTreeSet<_> = a.reserve.iter().copied().collect();
    let rb: BTreeSet<_> = b.reserve.iter().copied().collect();
    if ra != rb {
        out.push(Difference::Reserve {
            only_a: ra.difference(&rb).copied().collect(),
            only_b: rb.difference(&ra).copied().collect(),
        });
    }
    let (pa, pb) = (a.phandles(), b.phandles());
    let empty = BTreeMap::new();
    let paths: BTreeSet<&String> = a.nodes.keys().chain(b.nodes.keys()).collect();
    for path in paths {
        let (na, nb) = (a.nodes.get(path), b.nodes.get(path));
        if na.is_none() || nb.is_none() {
            out.push(Difference::Node {
                path: path.clone(),
                in_a: na.is_some(),
            });
            continue;
        }
        let (na, nb) = (na.unwrap_or(&empty), nb.unwrap_or(&empty));
        let names: BTreeSet<&String> = na.keys().chain(nb.keys()).collect();
        for name in names {
            let (va, vb) = (na.get(name), nb.get(name));
            let same = match (va, vb) {
                (Some(x), Some(y)) => same_value(x, y, &pa, &pb),
                _ => false,
            };
            if !same {
                out.push(Difference::Prop {
                    path: path.clone(),
                    name: name.clone(),
                    a: va.cloned(),
                    b: vb.cloned(),
                });
            }
        }
    }
    out
}

/// A minimal FDT writer for tests of this module (and of its users).
#[derive(Default)]
pub struct Builder {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reserve: Vec<(u64, u64)>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn reserve(mut self, addr: u64, size: u64) -> Self {
        self.reserve.push((addr, size));
        self
    }
    pub fn begin(mut self, name: &str) -> Self {
        self.structure
            .extend_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
        self
    }
    pub fn end(mut self) -> Self {
        self.structure
            .extend_from_slice(&FDT_END_NODE.to_be_bytes());
        self
    }
    pub fn prop(mut self, name: &str, value: &[u8]) -> Self {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.structure.extend_from_slice(&FDT_PROP.to_be_bytes());
        self.structure
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.structure.extend_from_slice(&off.to_be_bytes());
        self.structure.extend_from_slice(value);
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
        self
    }
    pub fn prop_u32(self, name: &str, v: u32) -> Self {
        self.prop(name, &v.to_be_bytes())
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.structure.extend_from_slice(&FDT_END.to_be_bytes());
        let off_rsv = 40usize;
        let rsv_len = 16 * (self.reserve.len() + 1);
        let off_struct = off_rsv + rsv_len;
        let off_strings = off_struct + self.structure.len();
        let total = off_strings + self.strings.len();
        let mut b = Vec::with_capacity(total);
        for v in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structure.len() as u32,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for (a, s) in self.reserve.iter().chain([(0, 0)].iter()) {
            b.extend_from_slice(&a.to_be_bytes());
            b.extend_from_slice(&s.to_be_bytes());
        }
        b.extend_from_slice(&self.structure);
        b.extend_from_slice(&self.strings);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(intc_phandle: u32, stdout: u32, extra: bool) -> Vec<u8> {
        let mut b = Builder::new()
            .reserve(0x2fff_0000, 0x1_0000)
            .begin("")
            .prop_u32("#address-cells", 2)
            .begin("chosen")
            .prop_u32("stdout", stdout)
            .prop("bootargs", b"console=hvc0\0")
            .end()
            .begin("interrupt-controller")
            .prop_u32("phandle", intc_phandle)
            .end()
            .begin("pci@800000020000000")
            .prop_u32("interrupt-parent", intc_phandle)
            // An interrupt-map entry: child address, pin, parent, parent irq.
            .prop(
                "interrupt-map",
                &[0u32, 0, 0, 1, intc_phandle, 0x1000, 1]
                    .iter()
                    .flat_map(|c| c.to_be_bytes())
                    .collect::<Vec<u8>>(),
            )
            .end();
        if extra {
            b = b.begin("extra").end();
        }
        b.end().finish()
    }

    #[test]
    fn parses_what_it_builds() {
        let t = FlatTree::parse(&tree(0x1111, 3, false)).unwrap();
        assert_eq!(t.version, 17);
        assert_eq!(t.reserve, vec![(0x2fff_0000, 0x1_0000)]);
        assert_eq!(t.prop("/chosen", "bootargs"), Some(&b"console=hvc0\0"[..]));
        assert_eq!(
            t.phandles().get(&0x1111).map(String::as_str),
            Some("/interrupt-controller")
        );
        assert_eq!(
            show(t.prop("/chosen", "bootargs").unwrap()),
            "\"console=hvc0\""
        );
        assert_eq!(show(&[0, 0, 0, 3]), "<0x3>");
    }

    #[test]
    fn phandle_numbering_is_not_a_difference_but_values_are() {
        let a = FlatTree::parse(&tree(0x1111, 3, false)).unwrap();
        let b = FlatTree::parse(&tree(0x1000_0005, 3, false)).unwrap();
        assert_eq!(compare(&a, &b), vec![]);
        let c = FlatTree::parse(&tree(0x1111, 0x1000, true)).unwrap();
        let d = compare(&a, &c);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].key(), ("/chosen", "stdout"));
        assert_eq!(
            d[1],
            Difference::Node {
                path: "/extra".into(),
                in_a: false
            }
        );
    }

    /// QEMU's own trees (qemu-tests/trees) parse, equal themselves, and the
    /// 7.2 and 10.0 defaults differ where QEMU changed (the CPU model).
    #[test]
    fn qemu_trees() {
        let dir = crate::paths::repo_root().join("qemu-tests/trees");
        let read = |n: &str| FlatTree::parse(&std::fs::read(dir.join(n)).unwrap()).unwrap();
        let (old, new) = (read("qemu-7.2-default.dtb"), read("qemu-10.0-default.dtb"));
        for t in [&old, &new] {
            assert!(t.nodes.contains_key("/rtas") && t.nodes.contains_key("/chosen"));
            assert!(t.prop("/rtas", "ibm,lrdr-capacity").is_some());
            assert_eq!(compare(t, t), vec![]);
        }
        assert!(old
            .phandles()
            .values()
            .any(|p| p == "/interrupt-controller"));
        let d = compare(&old, &new);
        assert!(d.iter().any(|d| d.key().0.starts_with("/cpus/")), "{d:#?}");
    }

    #[test]
    fn bad_blobs_are_errors() {
        let good = tree(1, 2, false);
        assert!(FlatTree::parse(&good[..20]).is_err());
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(FlatTree::parse(&bad).unwrap_err().contains("magic"));
        let mut bad = good.clone();
        // off_dt_struct past the end.
        bad[8..12].copy_from_slice(&0xffff_0000u32.to_be_bytes());
        assert!(FlatTree::parse(&bad).is_err());
        let dup = Builder::new()
            .begin("")
            .prop_u32("a", 1)
            .prop_u32("a", 2)
            .end()
            .finish();
        assert!(FlatTree::parse(&dup).unwrap_err().contains("twice"));
    }
}
