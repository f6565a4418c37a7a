//! BAR and bridge-window assignment (PCI 3.0 §6.2.5.1; PCI-to-PCI Bridge
//! Architecture 1.2 §3.2.5.6–3.2.5.10 base/limit registers; PCI Bus Binding
//! to IEEE 1275 §4.1.3 `assigned-addresses`; QEMU pseries contract §4.6).
//!
//! Three classes of address space are packed per bus:
//!
//! * **I/O** — I/O BARs and bridges' I/O windows (4 KiB granules, 16-bit on
//!   QEMU's `pci-bridge`), from the PHB's I/O range; bus addresses below
//!   4 KiB are never used (Linux takes a resource at bus address 0 for
//!   unassigned).
//! * **32-bit memory** — 32-bit BARs, ROM BARs, bridges' (non-prefetchable,
//!   32-bit) memory windows, and behind a bridge also 64-bit BARs that are
//!   not prefetchable (a bridge forwards 64-bit addresses only through its
//!   prefetchable window); from the PHB's 32-bit MMIO range.
//! * **64-bit** — on the root bus every 64-bit BAR (the PHB does not care
//!   about prefetchability), behind a bridge the 64-bit prefetchable BARs;
//!   bridges' prefetchable windows; from the PHB's 64-bit MMIO range (or the
//!   32-bit one if the PHB has none, or behind a bridge whose prefetchable
//!   window decodes only 32 bits).
//!
//! Each bus is laid out bottom-up: its requests sorted by alignment (then
//! size), largest first, each at the next naturally aligned offset; a
//! bridge window is the size of its layout rounded to the window granule
//! (4 KiB I/O, 1 MiB memory), aligned to its largest member.  The root
//! bus's requests are then placed in the PHB ranges; what does not fit is
//! reported and left unassigned (its decode type stays off on that
//! function).  Memory BARs smaller than 4 KiB get a 4 KiB slot so no two
//! functions share a page.
//!
//! `/chosen/linux,pci-probe-only`: QEMU writes 0 (the OS may reassign); the
//! firmware's assignment does not change that when it is complete, and when
//! it is not ([`Plan::complete`] false) the OS must be allowed to assign
//! what is missing — [`probe_only_after`].

use super::config::{ConfigAccess, ConfigError};
use super::discover::{Bar, BarKind, Function, PhbTopology, Range, Space, PHYS_HI_N, PHYS_HI_P};
use super::{command, reg, Bdf};
use crate::platform::Platform;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Granule of a bridge I/O window.
pub const IO_GRANULE: u64 = 0x1000;
/// Granule of a bridge memory window.
pub const MEM_GRANULE: u64 = 0x10_0000;
/// Smallest slot a memory BAR gets.
pub const MIN_MEM_SLOT: u64 = 0x1000;
/// I/O bus addresses below this are not handed out.
pub const IO_START: u64 = 0x1000;

/// The address-space class a request is packed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Io,
    Mem32,
    Mem64,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Io => "I/O",
            Class::Mem32 => "32-bit memory",
            Class::Mem64 => "64-bit memory",
        })
    }
}

/// A BAR given an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BarAssignment {
    pub path: String,
    pub bdf: Bdf,
    pub bar: Bar,
    /// PCI bus address (what the BAR register holds).
    pub bus_addr: u64,
    /// Where the CPU reaches it (through the PHB range).
    pub cpu_addr: u64,
}

impl BarAssignment {
    /// The `phys.hi` cell of this BAR in `assigned-addresses`: the
    /// non-relocatable bit `n` set (the address is absolute), `p` for
    /// prefetchable memory, `ss` from the BAR type, bus/device/function and
    /// the BAR's register.
    pub fn phys_hi(&self) -> u32 {
        let k = self.bar.kind;
        PHYS_HI_N
            | if k.prefetch() { PHYS_HI_P } else { 0 }
            | k.space().ss() << 24
            | self.bdf.config_base()
            | self.bar.reg as u32
    }

    /// The five `assigned-addresses` cells.
    pub fn cells(&self) -> [u32; 5] {
        [
            self.phys_hi(),
            (self.bus_addr >> 32) as u32,
            self.bus_addr as u32,
            (self.bar.size >> 32) as u32,
            self.bar.size as u32,
        ]
    }
}

/// A bridge window given addresses (`limit` inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowAssignment {
    pub path: String,
    pub bdf: Bdf,
    pub class: Class,
    /// Programmed into the prefetchable window (else the I/O or memory one).
    pub prefetchable: bool,
    pub base: u64,
    pub limit: u64,
}

/// A BAR (or a whole bridge window with everything behind it) left without
/// an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unassigned {
    pub path: String,
    pub bdf: Bdf,
    /// The BAR, or `None` for a bridge window.
    pub bar: Option<Bar>,
    pub size: u64,
    pub class: Class,
}

impl fmt::Display for Unassigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bar {
            Some(b) => write!(
                f,
                "{} BAR {:#x}: no room for {:#x} bytes of {} space",
                self.path, b.reg, self.size, self.class
            ),
            None => write!(
                f,
                "{} bridge window: no room for {:#x} bytes of {} space",
                self.path, self.size, self.class
            ),
        }
    }
}

/// COMMAND bits the plan turns on for a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decode {
    pub path: String,
    pub bdf: Bdf,
    pub set: u16,
}

/// The assignment for one PHB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub buid: u64,
    pub bars: Vec<BarAssignment>,
    pub windows: Vec<WindowAssignment>,
    /// Bridges (by path and address) in the plan, so windows of classes
    /// they do not need are programmed closed.
    pub bridges: Vec<(String, Bdf)>,
    pub decode: Vec<Decode>,
    pub unassigned: Vec<Unassigned>,
}

impl Plan {
    /// Whether every BAR found got an address.
    pub fn complete(&self) -> bool {
        self.unassigned.is_empty()
    }

    /// The assignments of the node at `path`, in register order.
    pub fn bars_of<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a BarAssignment> + 'a {
        self.bars.iter().filter(move |b| b.path == path)
    }

    /// The `assigned-addresses` value of the node at `path` (big-endian
    /// cells; empty if nothing was assigned).
    pub fn assigned_addresses(&self, path: &str) -> Vec<u8> {
        self.bars_of(path)
            .flat_map(|b| b.cells())
            .flat_map(|c| c.to_be_bytes())
            .collect()
    }

    /// Paths of every node that gets `assigned-addresses`.
    pub fn nodes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.bars.iter().map(|b| b.path.as_str()).collect();
        v.dedup();
        v
    }
}

/// The value `/chosen/linux,pci-probe-only` should get after the firmware
/// assigned resources, given its current value: `None` to leave it, `Some(0)`
/// when the assignment is incomplete and the OS must be allowed to finish it.
pub fn probe_only_after(current: Option<u32>, complete: bool) -> Option<u32> {
    match (current, complete) {
        (Some(0), _) => None,
        (_, false) => Some(0),
        (_, true) => None,
    }
}

// ---------------------------------------------------------------------------
// Layout

#[derive(Clone, Debug)]
enum What {
    Bar {
        path: String,
        bdf: Bdf,
        bar: Bar,
    },
    Window {
        path: String,
        bdf: Bdf,
        class: Class,
        prefetchable: bool,
        /// Members at offsets from the window base.
        members: Box<Packed>,
    },
}

#[derive(Clone, Debug)]
struct Req {
    size: u64,
    align: u64,
    what: What,
}

#[derive(Clone, Debug, Default)]
struct Packed {
    size: u64,
    align: u64,
    items: Vec<(u64, Req)>,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v & !(a - 1))
}

fn sort_reqs(reqs: &mut [Req]) {
    reqs.sort_by(|a, b| b.align.cmp(&a.align).then(b.size.cmp(&a.size)));
}

/// Pack `reqs` at increasing offsets from 0; the window is rounded to `granule`.
fn pack(mut reqs: Vec<Req>, granule: u64) -> Packed {
    sort_reqs(&mut reqs);
    let mut cursor = 0u64;
    let mut align = granule;
    let mut items = Vec::with_capacity(reqs.len());
    for r in reqs {
        // Sizes are bounded by the BAR width; 2^64 overflow is impossible
        // for anything a bus can decode, but stay saturating.
        let off = align_up(cursor, r.align).unwrap_or(u64::MAX);
        cursor = off.saturating_add(r.size);
        align = align.max(r.align);
        items.push((off, r));
    }
    Packed {
        size: align_up(cursor, granule).unwrap_or(u64::MAX),
        align,
        items,
    }
}

/// Requests of one bus.  `bridge` is the bridge the bus is behind (None for
/// the root bus).
fn bus_requests(
    functions: &[Function],
    behind: Option<&super::discover::Bridge>,
) -> Vec<(Class, Req)> {
    let mut out = Vec::new();
    for f in functions {
        for b in &f.bars {
            let class = match (b.kind, behind) {
                (BarKind::Io, _) => Class::Io,
                (BarKind::Mem32 { .. } | BarKind::Rom, _) => Class::Mem32,
                (BarKind::Mem64 { .. }, None) => Class::Mem64,
                (BarKind::Mem64 { prefetch: true }, Some(br)) if br.pref64 => Class::Mem64,
                (BarKind::Mem64 { .. }, Some(_)) => Class::Mem32,
            };
            let slot = if b.kind.is_memory() {
                b.size.max(MIN_MEM_SLOT)
            } else {
                b.size
            };
            out.push((
                class,
                Req {
                    size: slot,
                    align: slot,
                    what: What::Bar {
                        path: f.path.clone(),
                        bdf: f.bdf,
                        bar: *b,
                    },
                },
            ));
        }
        if let Some(br) = &f.bridge {
            let inner = bus_requests(&br.children, Some(br));
            for class in [Class::Io, Class::Mem32, Class::Mem64] {
                let reqs: Vec<Req> = inner
                    .iter()
                    .filter(|(c, _)| *c == class)
                    .map(|(_, r)| r.clone())
                    .collect();
                if reqs.is_empty() {
                    continue;
                }
                let granule = if class == Class::Io {
                    IO_GRANULE
                } else {
                    MEM_GRANULE
                };
                let packed = pack(reqs, granule);
                // The window's class on the parent bus: a prefetchable
                // window behind a bridge without a 64-bit prefetchable
                // window must stay below 4 GiB.
                let outer = match (class, behind) {
                    (Class::Mem64, Some(parent)) if !parent.pref64 => Class::Mem32,
                    (c, _) => c,
                };
                out.push((
                    outer,
                    Req {
                        size: packed.size,
                        align: packed.align,
                        what: What::Window {
                            path: f.path.clone(),
                            bdf: f.bdf,
                            class,
                            prefetchable: class == Class::Mem64,
                            members: Box::new(packed),
                        },
                    },
                ));
            }
        }
    }
    out
}

struct Out {
    bars: Vec<BarAssignment>,
    windows: Vec<WindowAssignment>,
}

/// Give `req` (placed at bus address `at` in `range`) and its members addresses.
fn emit(req: &Req, at: u64, range: &Range, out: &mut Out) {
    match &req.what {
        What::Bar { path, bdf, bar } => out.bars.push(BarAssignment {
            path: path.clone(),
            bdf: *bdf,
            bar: *bar,
            bus_addr: at,
            cpu_addr: range.cpu + (at - range.bus),
        }),
        What::Window {
            path,
            bdf,
            class,
            prefetchable,
            members,
        } => {
            out.windows.push(WindowAssignment {
                path: path.clone(),
                bdf: *bdf,
                class: *class,
                prefetchable: *prefetchable,
                base: at,
                limit: at + req.size - 1,
            });
            for (off, m) in &members.items {
                emit(m, at + off, range, out);
            }
        }
    }
}

fn unassigned_of(req: &Req, class: Class, out: &mut Vec<Unassigned>) {
    match &req.what {
        What::Bar { path, bdf, bar } => out.push(Unassigned {
            path: path.clone(),
            bdf: *bdf,
            bar: Some(*bar),
            size: bar.size,
            class,
        }),
        What::Window {
            path, bdf, members, ..
        } => {
            out.push(Unassigned {
                path: path.clone(),
                bdf: *bdf,
                bar: None,
                size: req.size,
                class,
            });
            for (_, m) in &members.items {
                unassigned_of(m, class, out);
            }
        }
    }
}

fn range_for(ranges: &[Range], space: Space) -> Option<Range> {
    // The largest range of the space (QEMU has one of each).
    ranges
        .iter()
        .filter(|r| r.space == space)
        .max_by_key(|r| r.size)
        .copied()
}

fn collect_bridges(functions: &[Function], out: &mut Vec<(String, Bdf)>) {
    for f in functions {
        if let Some(b) = &f.bridge {
            out.push((f.path.clone(), f.bdf));
            collect_bridges(&b.children, out);
        }
    }
}

/// Assign addresses to everything in `top`.
pub fn plan(top: &PhbTopology) -> Plan {
    let reqs = bus_requests(&top.functions, None);
    let io = range_for(&top.ranges, Space::Io);
    let m32 = range_for(&top.ranges, Space::Mem32);
    let m64 = range_for(&top.ranges, Space::Mem64);
    let mut out = Out {
        bars: Vec::new(),
        windows: Vec::new(),
    };
    let mut unassigned = Vec::new();
    let mut groups: [(Option<Range>, Vec<Req>); 3] =
        [(io, Vec::new()), (m32, Vec::new()), (m64, Vec::new())];
    for (class, r) in reqs {
        let idx = match class {
            Class::Io => 0,
            Class::Mem32 => 1,
            // Without a 64-bit range everything goes below 4 GiB.
            Class::Mem64 if m64.is_none() => 1,
            Class::Mem64 => 2,
        };
        groups[idx].1.push(r);
    }
    for (idx, (range, mut reqs)) in groups.into_iter().enumerate() {
        let class = [Class::Io, Class::Mem32, Class::Mem64][idx];
        sort_reqs(&mut reqs);
        let Some(range) = range else {
            for r in &reqs {
                unassigned_of(r, class, &mut unassigned);
            }
            continue;
        };
        let mut cursor = range.bus;
        if class == Class::Io {
            cursor = cursor.max(IO_START);
        }
        let end = range.bus.saturating_add(range.size);
        for r in &reqs {
            match align_up(cursor, r.align) {
                Some(at) if at.checked_add(r.size).is_some_and(|e| e <= end) => {
                    emit(r, at, &range, &mut out);
                    cursor = at + r.size;
                }
                _ => unassigned_of(r, class, &mut unassigned),
            }
        }
    }
    out.bars
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.bar.reg.cmp(&b.bar.reg)));
    out.windows
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.class.cmp(&b.class)));

    // Decode: a type is enabled only if every BAR of that type has an address.
    let mut decode = Vec::new();
    for f in top.all() {
        let mut set = 0u16;
        let assigned = |b: &Bar| {
            out.bars
                .iter()
                .any(|a| a.bdf == f.bdf && a.bar.reg == b.reg)
        };
        let io: Vec<&Bar> = f.bars.iter().filter(|b| b.kind == BarKind::Io).collect();
        let mem: Vec<&Bar> = f
            .bars
            .iter()
            .filter(|b| b.kind.is_memory() && b.kind != BarKind::Rom)
            .collect();
        if !io.is_empty() && io.iter().all(|b| assigned(b)) {
            set |= command::IO;
        }
        if !mem.is_empty() && mem.iter().all(|b| assigned(b)) {
            set |= command::MEMORY;
        }
        if f.bridge.is_some() {
            let has = |c: Class| out.windows.iter().any(|w| w.bdf == f.bdf && w.class == c);
            if has(Class::Io) && (io.is_empty() || set & command::IO != 0) {
                set |= command::IO;
            }
            if (has(Class::Mem32) || has(Class::Mem64))
                && (mem.is_empty() || set & command::MEMORY != 0)
            {
                set |= command::MEMORY;
            }
            // A bridge forwards its devices' DMA upstream only as a master.
            set |= command::MASTER;
        }
        if set != 0 {
            decode.push(Decode {
                path: f.path.clone(),
                bdf: f.bdf,
                set,
            });
        }
    }
    let mut bridges = Vec::new();
    collect_bridges(&top.functions, &mut bridges);
    Plan {
        buid: top.buid,
        bars: out.bars,
        windows: out.windows,
        bridges,
        decode,
        unassigned,
    }
}

// ---------------------------------------------------------------------------
// Programming

/// A register that did not take the value written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub reg: u16,
    pub wrote: u64,
    pub read: u64,
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub bars: usize,
    pub windows: usize,
    pub decode: usize,
    pub config_errors: Vec<(String, ConfigError)>,
    pub mismatches: Vec<Mismatch>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.config_errors.is_empty() && self.mismatches.is_empty()
    }
}

fn write_bar<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    a: &BarAssignment,
    rep: &mut ApplyReport,
) -> Result<(), ConfigError> {
    let (bdf, r) = (a.bdf, a.bar.reg);
    match a.bar.kind {
        BarKind::Mem64 { .. } => {
            cfg.write32(p, buid, bdf, r, a.bus_addr as u32)?;
            cfg.write32(p, buid, bdf, r + 4, (a.bus_addr >> 32) as u32)?;
            let lo = cfg.read32(p, buid, bdf, r)? & !0xf;
            let hi = cfg.read32(p, buid, bdf, r + 4)?;
            let got = (hi as u64) << 32 | lo as u64;
            if got != a.bus_addr {
                rep.mismatches.push(Mismatch {
                    path: a.path.clone(),
                    reg: r,
                    wrote: a.bus_addr,
                    read: got,
                });
            }
        }
        kind => {
            // ROM: address only, enable bit (0) left clear.
            cfg.write32(p, buid, bdf, r, a.bus_addr as u32)?;
            let mask = match kind {
                BarKind::Io => !3u32,
                BarKind::Rom => 0xffff_f800,
                _ => !0xfu32,
            };
            let got = cfg.read32(p, buid, bdf, r)? & mask;
            if got as u64 != a.bus_addr {
                rep.mismatches.push(Mismatch {
                    path: a.path.clone(),
                    reg: r,
                    wrote: a.bus_addr,
                    read: got as u64,
                });
            }
        }
    }
    rep.bars += 1;
    Ok(())
}

/// Program a bridge's three windows (closed where the plan has none).
fn write_windows<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    bdf: Bdf,
    ws: &[&WindowAssignment],
) -> Result<usize, ConfigError> {
    let find = |c: Class| ws.iter().find(|w| w.class == c);
    // I/O: base/limit bits 15..12 in the upper nibble; 32-bit decoders keep
    // bits 31..16 in the upper16 registers.
    let (io_base, io_limit) = find(Class::Io).map_or((0xffff_f000u64, 0), |w| (w.base, w.limit));
    cfg.write8(p, buid, bdf, reg::IO_BASE, ((io_base >> 8) & 0xf0) as u8)?;
    cfg.write8(p, buid, bdf, reg::IO_LIMIT, ((io_limit >> 8) & 0xf0) as u8)?;
    cfg.write16(p, buid, bdf, reg::IO_BASE_UPPER16, (io_base >> 16) as u16)?;
    cfg.write16(p, buid, bdf, reg::IO_LIMIT_UPPER16, (io_limit >> 16) as u16)?;
    // Memory: bits 31..20 in bits 15..4.
    let (m_base, m_limit) = find(Class::Mem32).map_or((0xfff0_0000u64, 0), |w| (w.base, w.limit));
    cfg.write16(
        p,
        buid,
        bdf,
        reg::MEMORY_BASE,
        ((m_base >> 16) & 0xfff0) as u16,
    )?;
    cfg.write16(
        p,
        buid,
        bdf,
        reg::MEMORY_LIMIT,
        ((m_limit >> 16) & 0xfff0) as u16,
    )?;
    // Prefetchable: same, plus bits 63..32 in the upper32 registers.
    let (p_base, p_limit) = find(Class::Mem64).map_or((0xfff0_0000u64, 0), |w| (w.base, w.limit));
    cfg.write16(
        p,
        buid,
        bdf,
        reg::PREF_MEMORY_BASE,
        ((p_base >> 16) & 0xfff0) as u16,
    )?;
    cfg.write16(
        p,
        buid,
        bdf,
        reg::PREF_MEMORY_LIMIT,
        ((p_limit >> 16) & 0xfff0) as u16,
    )?;
    cfg.write32(p, buid, bdf, reg::PREF_BASE_UPPER32, (p_base >> 32) as u32)?;
    cfg.write32(
        p,
        buid,
        bdf,
        reg::PREF_LIMIT_UPPER32,
        (p_limit >> 32) as u32,
    )?;
    Ok(ws.len())
}

/// Program `plan`: BARs, bridge windows, then the COMMAND decode bits.
/// Every register is read back; failures are collected, never fatal.
pub fn apply<P: Platform + ?Sized>(p: &mut P, cfg: &ConfigAccess, plan: &Plan) -> ApplyReport {
    let mut rep = ApplyReport::default();
    let buid = plan.buid;
    for a in &plan.bars {
        if let Err(e) = write_bar(p, cfg, buid, a, &mut rep) {
            rep.config_errors.push((a.path.clone(), e));
        }
    }
    for (path, bdf) in &plan.bridges {
        let ws: Vec<&WindowAssignment> = plan.windows.iter().filter(|w| w.bdf == *bdf).collect();
        match write_windows(p, cfg, buid, *bdf, &ws) {
            Ok(n) => rep.windows += n,
            Err(e) => rep.config_errors.push((path.clone(), e)),
        }
    }
    for d in &plan.decode {
        let r = cfg
            .update_command(p, buid, d.bdf, d.set, 0)
            .and_then(|_| cfg.read16(p, buid, d.bdf, reg::COMMAND));
        match r {
            Ok(v) if v & d.set == d.set => rep.decode += 1,
            Ok(v) => rep.mismatches.push(Mismatch {
                path: d.path.clone(),
                reg: reg::COMMAND,
                wrote: d.set as u64,
                read: v as u64,
            }),
            Err(e) => rep.config_errors.push((d.path.clone(), e)),
        }
    }
    rep
}
