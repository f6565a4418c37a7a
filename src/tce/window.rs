//! One DMA window: geometry (LIOBN, bus base, size, IOMMU page size) and the
//! bus-address allocator (QEMU pseries contract §4.1 window properties, §4.5
//! table geometry, §6 SLOF's first-page reservation).
//!
//! The allocator works in IOMMU pages over `[0, entries)` and keeps free
//! extents ([`RangeAllocator`], first fit), so its memory grows with the
//! number of live mappings, never with the size of the window.

use super::{TceError, MIN_PAGE_SHIFT};
use crate::memory::{Range, RangeAllocator};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A DMA window and the firmware's use of it.
#[derive(Clone, Debug)]
pub struct TceWindow {
    liobn: u32,
    bus_base: u64,
    size: u64,
    page_shift: u32,
    /// Free page extents.
    free: RangeAllocator,
    /// Live mappings: first page → page count.
    live: BTreeMap<u64, u64>,
    /// Failed maps whose rollback failed too: first page → page count.  Kept
    /// out of the allocator until a clear succeeds.
    stale: BTreeMap<u64, u64>,
    /// Pages withheld from allocation ([`reserve`](Self::reserve), page 0 of
    /// a window at bus address 0).
    reserved: u64,
}

impl TceWindow {
    /// A window of `size` bytes at bus address `bus_base` translated in pages
    /// of `1 << page_shift` bytes (12 for default windows; DDWs may use 16,
    /// 21, 24, …).  Base and size must be multiples of the page size.
    pub fn new(liobn: u32, bus_base: u64, size: u64, page_shift: u32) -> Result<Self, TceError> {
        let bad = |why| Err(TceError::BadWindow { liobn, why });
        if !(MIN_PAGE_SHIFT..64).contains(&page_shift) {
            return bad("page size below 4 KiB or above 2^63");
        }
        let page = 1u64 << page_shift;
        if size == 0 || size & (page - 1) != 0 {
            return bad("size is not a non-zero multiple of the page size");
        }
        if bus_base & (page - 1) != 0 {
            return bad("bus address is not page aligned");
        }
        if bus_base.checked_add(size - 1).is_none() {
            return bad("window extends past 2^64");
        }
        let entries = size >> page_shift;
        let mut free = RangeAllocator::new();
        free.add(Range::new(0, entries));
        let mut w = TceWindow {
            liobn,
            bus_base,
            size,
            page_shift,
            free,
            live: BTreeMap::new(),
            stale: BTreeMap::new(),
            reserved: 0,
        };
        if bus_base == 0 {
            // No device is ever given bus address 0.
            w.free.reserve(Range::new(0, 1));
            w.reserved = 1;
        }
        Ok(w)
    }

    pub fn liobn(&self) -> u32 {
        self.liobn
    }
    pub fn bus_base(&self) -> u64 {
        self.bus_base
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn page_shift(&self) -> u32 {
        self.page_shift
    }
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }
    /// Number of TCEs in the table.
    pub fn entries(&self) -> u64 {
        self.size >> self.page_shift
    }
    /// Whether bus address `ioba` lies in the window.
    pub fn contains(&self, ioba: u64) -> bool {
        ioba >= self.bus_base && ioba - self.bus_base < self.size
    }

    /// Keep the bus range `[bus, bus + len)` (clipped to the window) from
    /// ever being allocated, e.g. an MSI or MMIO range overlapping the window.
    /// Refused if it overlaps a mapping.
    pub fn reserve(&mut self, bus: u64, len: u64) -> Result<(), TceError> {
        if len == 0 {
            return Ok(());
        }
        // Inclusive bounds, so a window ending at 2^64 needs no special case.
        let start = bus.max(self.bus_base);
        let end_incl = bus
            .saturating_add(len - 1)
            .min(self.bus_base + (self.size - 1));
        if start > end_incl {
            return Ok(());
        }
        let first = (start - self.bus_base) >> self.page_shift;
        let last = (end_incl - self.bus_base) >> self.page_shift;
        let r = Range::new(first, last - first + 1);
        let busy = self
            .live
            .iter()
            .chain(self.stale.iter())
            .any(|(f, n)| r.overlaps(&Range::new(*f, *n)));
        if busy {
            return Err(TceError::InUse {
                liobn: self.liobn,
                mappings: self.live.len(),
            });
        }
        let before = self.free_pages();
        self.free.reserve(r);
        self.reserved += before - self.free_pages();
        Ok(())
    }

    /// Live mappings.
    pub fn live_mappings(&self) -> usize {
        self.live.len()
    }
    /// Pages used by live mappings.
    pub fn mapped_pages(&self) -> u64 {
        self.live.values().sum()
    }
    /// Pages quarantined after a failed rollback.
    pub fn quarantined_pages(&self) -> u64 {
        self.stale.values().sum()
    }
    /// Pages withheld from allocation.
    pub fn reserved_pages(&self) -> u64 {
        self.reserved
    }
    /// Pages available for mappings.
    pub fn free_pages(&self) -> u64 {
        self.free.free_ranges().iter().map(|r| r.size).sum()
    }
    /// Free extents (in pages), for tests and diagnostics.
    pub fn free_extents(&self) -> usize {
        self.free.free_ranges().len()
    }
    /// Live mappings as (bus address of the first page, pages).
    pub fn mappings(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.live.iter().map(|(f, n)| (self.ioba_of(*f), *n))
    }

    /// IOMMU pages needed to map `len` bytes at `phys`.
    pub(super) fn pages_for(&self, phys: u64, len: u64) -> Result<u64, TceError> {
        if len == 0 || phys.checked_add(len).is_none() {
            return Err(TceError::BadLength { phys, len });
        }
        // phys + len did not overflow and off <= phys, so off + len cannot.
        let span = (phys & (self.page_size() - 1)) + len;
        Ok((span >> self.page_shift) + u64::from(span & (self.page_size() - 1) != 0))
    }

    pub(super) fn alloc(&mut self, pages: u64) -> Result<u64, TceError> {
        self.free.alloc(pages, 1, false).ok_or(TceError::NoSpace {
            liobn: self.liobn,
            pages,
        })
    }

    pub(super) fn free(&mut self, first: u64, pages: u64) {
        self.free.add(Range::new(first, pages));
    }

    pub(super) fn ioba_of(&self, page: u64) -> u64 {
        self.bus_base + (page << self.page_shift)
    }

    /// The live mapping that `ioba`/`len` describe, as (first page, pages).
    pub(super) fn live_at(&self, ioba: u64, len: u64) -> Option<(u64, u64)> {
        if !self.contains(ioba) {
            return None;
        }
        let first = (ioba - self.bus_base) >> self.page_shift;
        let pages = self.pages_for(ioba, len).ok()?;
        (self.live.get(&first) == Some(&pages)).then_some((first, pages))
    }

    pub(super) fn insert_live(&mut self, first: u64, pages: u64) {
        self.live.insert(first, pages);
    }
    pub(super) fn remove_live(&mut self, first: u64) {
        self.live.remove(&first);
    }
    pub(super) fn insert_stale(&mut self, first: u64, pages: u64) {
        self.stale.insert(first, pages);
    }
    pub(super) fn remove_stale(&mut self, first: u64) {
        self.stale.remove(&first);
    }

    /// After the whole table was cleared: quarantined ranges are usable again.
    pub(super) fn release_stale(&mut self) {
        for (f, n) in core::mem::take(&mut self.stale) {
            self.free.add(Range::new(f, n));
        }
    }

    /// Every live and quarantined range as (first page, pages, quarantined).
    pub(super) fn all_ranges(&self) -> Vec<(u64, u64, bool)> {
        self.live
            .iter()
            .map(|(f, n)| (*f, *n, false))
            .chain(self.stale.iter().map(|(f, n)| (*f, *n, true)))
            .collect()
    }
}
