//! TCE (translation control entry) tables: the PAPR IOMMU (LoPAPR §14.5.4.2
//! "Translation Control Entry Access"; QEMU pseries contract §3.3 TCE hcalls,
//! §4 DMA windows, §6 how SLOF uses TCEs; linux-expectations §2.5–2.6).
//!
//! A DMA window (`ibm,dma-window` of a PHB, `ibm,my-dma-window` of a VIO
//! device, or a dynamic DMA window) is a range of bus addresses translated by
//! a table of TCEs that only the hypervisor holds; the firmware writes it with
//! hypercalls, one TCE per IOMMU page:
//!
//! * `H_PUT_TCE(liobn, ioba, tce)` — one entry; used for one-page mappings (and
//!   for everything when the platform lacks `hcall-multi-tce`).
//! * `H_PUT_TCE_INDIRECT(liobn, ioba, list, n)` — `n ≤ 512` entries read
//!   big-endian from a 4 KiB-aligned list page; used for longer mappings.
//! * `H_STUFF_TCE(liobn, ioba, 0, n)` — clears `n` entries; used to unmap, to
//!   roll back and to clear whole windows.  QEMU accepts up to the window's
//!   entry count per call and KVM has no limit beyond the window, but Linux
//!   issues at most 512 per call and KVM (with VFIO) undoes each entry in the
//!   kernel within the one call, so [`STUFF_LIMIT`] = 512 bounds the time any
//!   call runs; a 1 GiB window is cleared in 512 calls.
//!
//! A TCE is `real page address | permission`: bit 0 lets the device read
//! memory, bit 1 lets it write ([`Perm`]).  Bus addresses passed to the
//! hypervisor are always absolute and page aligned (KVM refuses unaligned
//! ones; QEMU truncates them).
//!
//! [`TceWindow`] holds one window's geometry and a bus-address allocator in
//! page units whose size depends on the number of live mappings, not on the
//! window (a 2^40-byte DDW costs as little as a 1 GiB window); when the window
//! starts at bus address 0 its first page is never handed out, so no device
//! sees bus address 0.  [`TceManager`] holds every window by LIOBN, the one
//! TCE list page, counters, and implements map/unmap with rollback, the boot
//! clear of each window and the unmap of everything before the OS runs.

mod bench;
mod window;

#[cfg(test)]
mod tests;

pub use bench::{bench, BenchPhase, BenchResult};
pub use window::TceWindow;

use crate::hcall::{op, rc, rc_name, Hypervisor};
use crate::memory::MemError;
use crate::platform::Platform;
use alloc::vec::Vec;
use core::fmt;

/// Most entries one `H_PUT_TCE_INDIRECT` takes: one 4 KiB page of TCEs (PAPR).
pub const MAX_INDIRECT: u64 = 512;
/// Most entries the firmware clears with one `H_STUFF_TCE` (see module doc).
pub const STUFF_LIMIT: u64 = 512;
/// Size and alignment of the TCE list page.
pub const LIST_PAGE: u64 = 4096;
/// The smallest IOMMU page (4 KiB): the page size of every default window.
pub const MIN_PAGE_SHIFT: u32 = 12;

/// TCE permission bit: the device may read memory (Linux `TCE_PCI_READ`).
pub const TCE_READ: u64 = 1;
/// TCE permission bit: the device may write memory (Linux `TCE_PCI_WRITE`).
pub const TCE_WRITE: u64 = 2;

/// What the device may do with a mapping, as TCE permission bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// The device reads memory (data to the device).
    Read = 1,
    /// The device writes memory (data from the device).
    Write = 2,
    /// Both.
    ReadWrite = 3,
}

impl Perm {
    pub const fn bits(self) -> u64 {
        self as u64
    }
}

/// The PAPR name of a TCE hypercall, for messages.
pub fn op_name(opcode: u64) -> &'static str {
    match opcode {
        op::H_PUT_TCE => "H_PUT_TCE",
        op::H_GET_TCE => "H_GET_TCE",
        op::H_STUFF_TCE => "H_STUFF_TCE",
        op::H_PUT_TCE_INDIRECT => "H_PUT_TCE_INDIRECT",
        _ => "hcall",
    }
}

/// What state a failed hypercall left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// A map failed and was undone: its entries are cleared, its bus space free.
    RolledBack,
    /// A map failed and clearing it failed too: its bus space is kept out of
    /// use and [`TceManager::unmap_all`] clears it again.
    Quarantined,
    /// An unmap failed: the mapping stays registered (and may be partly
    /// cleared); unmap it again or leave it to [`TceManager::unmap_all`].
    StillMapped,
    /// A window clear stopped part-way.
    NotCleared,
    /// The call changes no state (`H_GET_TCE`).
    NoChange,
}

/// Errors of the TCE layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TceError {
    /// No window with this LIOBN is known.
    UnknownLiobn(u32),
    /// A window with this LIOBN is already known.
    DuplicateLiobn(u32),
    /// A window's geometry is unusable.
    BadWindow { liobn: u32, why: &'static str },
    /// Zero length, or `phys + len` overflows.
    BadLength { phys: u64, len: u64 },
    /// Not enough free contiguous bus space.
    NoSpace { liobn: u32, pages: u64 },
    /// `ioba`/`len` do not name a mapping made by [`TceManager::map`].
    NotMapped { liobn: u32, ioba: u64, len: u64 },
    /// The window still has live mappings.
    InUse { liobn: u32, mappings: usize },
    /// No memory for the TCE list page.
    NoListPage,
    /// Writing the TCE list page failed (the map was undone as far as possible).
    Memory(MemError),
    /// A TCE hypercall failed.
    Hcall {
        liobn: u32,
        /// Bus address the failing call started at.
        ioba: u64,
        opcode: u64,
        rc: i64,
        after: After,
    },
}

impl fmt::Display for TceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TceError::UnknownLiobn(l) => write!(f, "no DMA window with LIOBN {l:#x}"),
            TceError::DuplicateLiobn(l) => write!(f, "DMA window LIOBN {l:#x} already known"),
            TceError::BadWindow { liobn, why } => {
                write!(f, "DMA window LIOBN {liobn:#x} unusable: {why}")
            }
            TceError::BadLength { phys, len } => {
                write!(f, "cannot map {len:#x} bytes at {phys:#x}")
            }
            TceError::NoSpace { liobn, pages } => {
                write!(f, "LIOBN {liobn:#x}: no room for {pages} TCEs")
            }
            TceError::NotMapped { liobn, ioba, len } => {
                write!(f, "LIOBN {liobn:#x}: {ioba:#x}+{len:#x} is not a mapping")
            }
            TceError::InUse { liobn, mappings } => {
                write!(f, "LIOBN {liobn:#x} has {mappings} live mappings")
            }
            TceError::NoListPage => write!(f, "no memory for the TCE list page"),
            TceError::Memory(e) => write!(f, "TCE list page: {e}"),
            TceError::Hcall {
                liobn,
                ioba,
                opcode,
                rc,
                after,
            } => {
                write!(
                    f,
                    "{}(LIOBN {liobn:#x}, ioba {ioba:#x}) returned {rc} ({})",
                    op_name(opcode),
                    rc_name(rc)
                )?;
                f.write_str(match after {
                    After::RolledBack => "; mapping rolled back",
                    After::Quarantined => "; rollback failed, bus range quarantined",
                    After::StillMapped => "; mapping kept",
                    After::NotCleared => "; window not fully cleared",
                    After::NoChange => "",
                })
            }
        }
    }
}

/// Hypercalls made and entries written, for the summary and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TceCounters {
    pub put_tce: u64,
    pub put_tce_indirect: u64,
    pub stuff_tce: u64,
    /// Calls that returned anything but H_SUCCESS.
    pub failed: u64,
    /// Entries set by successful map calls.
    pub tces_mapped: u64,
    /// Entries cleared by successful clear calls.
    pub tces_cleared: u64,
}

impl TceCounters {
    pub fn hcalls(&self) -> u64 {
        self.put_tce + self.put_tce_indirect + self.stuff_tce
    }
}

/// A mapping made by [`TceManager::map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub liobn: u32,
    /// The bus address of the first byte (page base plus the offset of `phys`).
    pub ioba: u64,
    pub len: u64,
    /// IOMMU pages (TCEs) the mapping uses.
    pub pages: u64,
}

/// Result of clearing one whole window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClearStats {
    pub liobn: u32,
    pub entries: u64,
    pub hcalls: u64,
    /// Timebase ticks the clear took.
    pub ticks: u64,
}

impl fmt::Display for ClearStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cleared {} entries of LIOBN {:#x} in {} calls",
            self.entries, self.liobn, self.hcalls
        )
    }
}

/// Result of [`TceManager::unmap_all`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnmapAllStats {
    /// Mappings (and quarantined ranges) removed.
    pub mappings: u64,
    pub entries: u64,
    pub hcalls: u64,
    /// Mappings that could not be cleared (still registered).
    pub failures: u64,
    pub first_error: Option<TceError>,
}

impl fmt::Display for UnmapAllStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unmapped {} mappings ({} entries) in {} calls",
            self.mappings, self.entries, self.hcalls
        )?;
        if let Some(e) = self.first_error {
            write!(f, "; {} failed: {e}", self.failures)?;
        }
        Ok(())
    }
}

/// Why a sequence of TCE writes stopped.
#[derive(Clone, Copy, Debug)]
struct Stop {
    /// Entries `[0, upto)` of the sequence may have been written.
    upto: u64,
    ioba: u64,
    cause: Cause,
}

#[derive(Clone, Copy, Debug)]
enum Cause {
    Hcall { opcode: u64, rc: i64 },
    Memory(MemError),
}

/// The hypercall side: list page, strategy and counters.
struct Io {
    list_page: Option<u64>,
    /// TCEs of one indirect call, big-endian, before they go to the list page.
    buf: Vec<u8>,
    multi_tce: bool,
    stuff_limit: u64,
    counters: TceCounters,
}

impl Io {
    fn call<P: Platform + ?Sized>(&mut self, p: &mut P, opcode: u64, args: &[u64]) -> i64 {
        match opcode {
            op::H_PUT_TCE => self.counters.put_tce += 1,
            op::H_PUT_TCE_INDIRECT => self.counters.put_tce_indirect += 1,
            _ => self.counters.stuff_tce += 1,
        }
        let r = p.hcall(opcode, args).rc;
        if r != rc::H_SUCCESS {
            self.counters.failed += 1;
        }
        r
    }

    fn ensure_list_page<P: Platform + ?Sized>(&mut self, p: &mut P) -> Result<u64, TceError> {
        if let Some(a) = self.list_page {
            return Ok(a);
        }
        let a = p
            .alloc_phys(LIST_PAGE, LIST_PAGE)
            .ok_or(TceError::NoListPage)?;
        if a & (LIST_PAGE - 1) != 0 {
            p.free_phys(a, LIST_PAGE, LIST_PAGE);
            return Err(TceError::NoListPage);
        }
        self.list_page = Some(a);
        Ok(a)
    }

    /// Write `n` entries `tce0 + i * page` from `ioba` on.
    fn put<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        liobn: u32,
        shift: u32,
        ioba: u64,
        tce0: u64,
        n: u64,
    ) -> Result<u64, Stop> {
        let mut calls = 0;
        let mut done = 0;
        while done < n {
            let at = ioba + (done << shift);
            let chunk = if self.multi_tce {
                (n - done).min(MAX_INDIRECT)
            } else {
                1
            };
            let first = tce0 + (done << shift);
            let r = if chunk == 1 {
                (
                    op::H_PUT_TCE,
                    self.call(p, op::H_PUT_TCE, &[liobn as u64, at, first]),
                )
            } else {
                // `ensure_list_page` ran before the bus space was taken.
                let list = self.list_page.unwrap_or(0);
                self.buf.clear();
                for i in 0..chunk {
                    self.buf
                        .extend_from_slice(&(first + (i << shift)).to_be_bytes());
                }
                if let Err(e) = p.write(list, &self.buf) {
                    return Err(Stop {
                        upto: done,
                        ioba: at,
                        cause: Cause::Memory(e),
                    });
                }
                (
                    op::H_PUT_TCE_INDIRECT,
                    self.call(p, op::H_PUT_TCE_INDIRECT, &[liobn as u64, at, list, chunk]),
                )
            };
            calls += 1;
            if r.1 != rc::H_SUCCESS {
                return Err(Stop {
                    upto: done + chunk,
                    ioba: at,
                    cause: Cause::Hcall {
                        opcode: r.0,
                        rc: r.1,
                    },
                });
            }
            self.counters.tces_mapped += chunk;
            done += chunk;
        }
        Ok(calls)
    }

    /// Clear `n` entries from `ioba` on; returns the calls made.
    fn clear<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        liobn: u32,
        shift: u32,
        ioba: u64,
        n: u64,
    ) -> Result<u64, Stop> {
        let mut calls = 0;
        let mut done = 0;
        while done < n {
            let at = ioba + (done << shift);
            let (opcode, chunk, r) = if self.multi_tce {
                let chunk = (n - done).min(self.stuff_limit.max(1));
                let r = self.call(p, op::H_STUFF_TCE, &[liobn as u64, at, 0, chunk]);
                (op::H_STUFF_TCE, chunk, r)
            } else {
                let r = self.call(p, op::H_PUT_TCE, &[liobn as u64, at, 0]);
                (op::H_PUT_TCE, 1, r)
            };
            calls += 1;
            if r != rc::H_SUCCESS {
                return Err(Stop {
                    upto: done,
                    ioba: at,
                    cause: Cause::Hcall { opcode, rc: r },
                });
            }
            self.counters.tces_cleared += chunk;
            done += chunk;
        }
        Ok(calls)
    }
}

fn hcall_error(liobn: u32, stop: Stop, after: After) -> TceError {
    match stop.cause {
        Cause::Hcall { opcode, rc } => TceError::Hcall {
            liobn,
            ioba: stop.ioba,
            opcode,
            rc,
            after,
        },
        Cause::Memory(e) => TceError::Memory(e),
    }
}

/// Every DMA window the firmware knows, by LIOBN, and the means to write them.
pub struct TceManager {
    windows: Vec<TceWindow>,
    io: Io,
}

impl Default for TceManager {
    fn default() -> Self {
        Self::new()
    }
}

impl TceManager {
    /// No windows; multi-TCE hypercalls enabled, [`STUFF_LIMIT`] per stuff.
    pub fn new() -> Self {
        TceManager {
            windows: Vec::new(),
            io: Io {
                list_page: None,
                buf: Vec::new(),
                multi_tce: true,
                stuff_limit: STUFF_LIMIT,
                counters: TceCounters::default(),
            },
        }
    }

    /// Whether `H_PUT_TCE_INDIRECT` and `H_STUFF_TCE` may be used: true when
    /// `/rtas/ibm,hypertas-functions` lists `hcall-multi-tce` (QEMU omits it
    /// under KVM without the multi-TCE capability).  When false every entry is
    /// written and cleared with `H_PUT_TCE`.
    pub fn set_multi_tce(&mut self, on: bool) {
        self.io.multi_tce = on;
    }

    pub fn multi_tce(&self) -> bool {
        self.io.multi_tce
    }

    /// Entries per `H_STUFF_TCE` (default [`STUFF_LIMIT`]; at least 1).
    pub fn set_stuff_limit(&mut self, n: u64) {
        self.io.stuff_limit = n.max(1);
    }

    pub fn counters(&self) -> TceCounters {
        self.io.counters
    }

    /// Physical address of the TCE list page, once one was needed.
    pub fn list_page(&self) -> Option<u64> {
        self.io.list_page
    }

    /// Register a window.  Its table is assumed to hold nothing the firmware
    /// mapped; call [`clear_window`](Self::clear_window) to make sure.
    pub fn add_window(&mut self, w: TceWindow) -> Result<(), TceError> {
        if self.window(w.liobn()).is_some() {
            return Err(TceError::DuplicateLiobn(w.liobn()));
        }
        self.windows.push(w);
        Ok(())
    }

    /// Forget a window (e.g. one removed with `ibm,remove-pe-dma-window`).
    /// Refused while it has live mappings.
    pub fn remove_window(&mut self, liobn: u32) -> Result<TceWindow, TceError> {
        let i = self
            .windows
            .iter()
            .position(|w| w.liobn() == liobn)
            .ok_or(TceError::UnknownLiobn(liobn))?;
        let n = self.windows[i].live_mappings();
        if n != 0 {
            return Err(TceError::InUse { liobn, mappings: n });
        }
        Ok(self.windows.remove(i))
    }

    pub fn window(&self, liobn: u32) -> Option<&TceWindow> {
        self.windows.iter().find(|w| w.liobn() == liobn)
    }

    /// The window, e.g. to [`reserve`](TceWindow::reserve) bus ranges.
    pub fn window_mut(&mut self, liobn: u32) -> Option<&mut TceWindow> {
        self.windows.iter_mut().find(|w| w.liobn() == liobn)
    }

    pub fn windows(&self) -> &[TceWindow] {
        &self.windows
    }

    /// Map `len` bytes of physical memory at `phys` for DMA through window
    /// `liobn` with permission `perm`.  Returns the bus address of `phys`.
    /// On any failure nothing stays mapped (or the range is quarantined, see
    /// [`After`]) and the bus space is free again.
    pub fn map<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        liobn: u32,
        phys: u64,
        len: u64,
        perm: Perm,
    ) -> Result<Mapping, TceError> {
        let w = self
            .windows
            .iter()
            .find(|w| w.liobn() == liobn)
            .ok_or(TceError::UnknownLiobn(liobn))?;
        let pages = w.pages_for(phys, len)?;
        if self.io.multi_tce && pages > 1 {
            self.io.ensure_list_page(p)?;
        }
        let w = self
            .windows
            .iter_mut()
            .find(|w| w.liobn() == liobn)
            .ok_or(TceError::UnknownLiobn(liobn))?;
        let shift = w.page_shift();
        let first = w.alloc(pages)?;
        let ioba_page = w.ioba_of(first);
        let tce0 = (phys & !(w.page_size() - 1)) | perm.bits();
        match self.io.put(p, liobn, shift, ioba_page, tce0, pages) {
            Ok(_) => {
                w.insert_live(first, pages);
                Ok(Mapping {
                    liobn,
                    ioba: ioba_page + (phys & (w.page_size() - 1)),
                    len,
                    pages,
                })
            }
            Err(stop) => {
                let after = match self.io.clear(p, liobn, shift, ioba_page, stop.upto) {
                    Ok(_) => {
                        w.free(first, pages);
                        After::RolledBack
                    }
                    Err(_) => {
                        w.insert_stale(first, pages);
                        After::Quarantined
                    }
                };
                Err(hcall_error(liobn, stop, after))
            }
        }
    }

    /// Undo [`map`](Self::map): `ioba` and `len` as the mapping returned them.
    pub fn unmap<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        liobn: u32,
        ioba: u64,
        len: u64,
    ) -> Result<(), TceError> {
        let w = self
            .windows
            .iter_mut()
            .find(|w| w.liobn() == liobn)
            .ok_or(TceError::UnknownLiobn(liobn))?;
        let (first, pages) =
            w.live_at(ioba, len)
                .ok_or(TceError::NotMapped { liobn, ioba, len })?;
        let shift = w.page_shift();
        match self.io.clear(p, liobn, shift, w.ioba_of(first), pages) {
            Ok(_) => {
                w.remove_live(first);
                w.free(first, pages);
                Ok(())
            }
            Err(stop) => Err(hcall_error(liobn, stop, After::StillMapped)),
        }
    }

    /// [`unmap`](Self::unmap) a [`Mapping`].
    pub fn unmap_mapping<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        m: &Mapping,
    ) -> Result<(), TceError> {
        self.unmap(p, m.liobn, m.ioba, m.len)
    }

    /// Clear every entry of window `liobn` (boot time: the firmware starts
    /// from a table it knows is empty).  Refused while the firmware has live
    /// mappings in it; quarantined ranges are released by a full clear.
    pub fn clear_window<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        liobn: u32,
    ) -> Result<ClearStats, TceError> {
        let w = self
            .windows
            .iter_mut()
            .find(|w| w.liobn() == liobn)
            .ok_or(TceError::UnknownLiobn(liobn))?;
        let n = w.live_mappings();
        if n != 0 {
            return Err(TceError::InUse { liobn, mappings: n });
        }
        let t0 = p.timebase();
        let (base, shift, entries) = (w.bus_base(), w.page_shift(), w.entries());
        let calls = self
            .io
            .clear(p, liobn, shift, base, entries)
            .map_err(|stop| hcall_error(liobn, stop, After::NotCleared))?;
        w.release_stale();
        Ok(ClearStats {
            liobn,
            entries,
            hcalls: calls,
            ticks: p.timebase().wrapping_sub(t0),
        })
    }

    /// [`clear_window`](Self::clear_window) for every window, in order.
    pub fn clear_all<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Vec<Result<ClearStats, TceError>> {
        let liobns: Vec<u32> = self.windows.iter().map(|w| w.liobn()).collect();
        liobns
            .into_iter()
            .map(|l| self.clear_window(p, l))
            .collect()
    }

    /// Before the OS runs: clear every mapping (and quarantined range) the
    /// firmware made, so the OS finds the tables as the platform left them.
    /// Mappings whose clear fails stay registered and are counted.
    pub fn unmap_all<P: Platform + ?Sized>(&mut self, p: &mut P) -> UnmapAllStats {
        let mut s = UnmapAllStats::default();
        for w in &mut self.windows {
            let (liobn, shift) = (w.liobn(), w.page_shift());
            for (first, pages, stale) in w.all_ranges() {
                let before = self.io.counters.hcalls();
                let r = self.io.clear(p, liobn, shift, w.ioba_of(first), pages);
                s.hcalls += self.io.counters.hcalls() - before;
                match r {
                    Ok(_) => {
                        if stale {
                            w.remove_stale(first);
                        } else {
                            w.remove_live(first);
                        }
                        w.free(first, pages);
                        s.mappings += 1;
                        s.entries += pages;
                    }
                    Err(stop) => {
                        s.failures += 1;
                        let after = if stale {
                            After::Quarantined
                        } else {
                            After::StillMapped
                        };
                        s.first_error.get_or_insert(hcall_error(liobn, stop, after));
                    }
                }
            }
        }
        s
    }

    /// Return the TCE list page (after [`unmap_all`](Self::unmap_all), when
    /// the firmware maps nothing more).  A later map allocates a new one.
    pub fn release_list_page<P: Platform + ?Sized>(&mut self, p: &mut P) {
        if let Some(a) = self.io.list_page.take() {
            p.free_phys(a, LIST_PAGE, LIST_PAGE);
        }
    }

    /// `H_GET_TCE`: the entry translating bus address `ioba` of window `liobn`.
    pub fn get_tce<P: Hypervisor + ?Sized>(
        &self,
        p: &mut P,
        liobn: u32,
        ioba: u64,
    ) -> Result<u64, TceError> {
        let w = self.window(liobn).ok_or(TceError::UnknownLiobn(liobn))?;
        let ioba = ioba & !(w.page_size() - 1);
        let r = p.hcall(op::H_GET_TCE, &[liobn as u64, ioba]);
        if r.rc == rc::H_SUCCESS {
            Ok(r.ret[0])
        } else {
            Err(TceError::Hcall {
                liobn,
                ioba,
                opcode: op::H_GET_TCE,
                rc: r.rc,
                after: After::NoChange,
            })
        }
    }
}
