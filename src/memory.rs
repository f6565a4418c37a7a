//! Guest physical memory as the firmware's logic sees it.
//!
//! The firmware runs in real mode, so a physical address is also the address it
//! loads from.  Everything that the platform, a device or a client reads or writes
//! (RTAS argument blocks, TCE lists, NVMe queues, client-interface buffers) is
//! reached through [`Memory`], never through raw pointers: on the target the
//! implementation is `arch::RealMemory` (bounds-checked against RAM), in host tests
//! [`FakeMemory`].  All multi-byte accessors are big-endian, as every PAPR and
//! IEEE 1275 wire structure is.

use core::fmt;

/// A physical access that cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError {
    pub addr: u64,
    pub len: u64,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad physical access {:#x}+{:#x}", self.addr, self.len)
    }
}

/// Physical memory.  Implementations refuse (never wrap or truncate) accesses
/// outside what they back.
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError>;

    /// Fill `len` bytes at `addr` with `byte`.
    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), MemError> {
        let chunk = [byte; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len() as u64);
            self.write(addr + done, &chunk[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    fn read_u8(&self, addr: u64) -> Result<u8, MemError> {
        let mut b = [0; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
    fn read_be16(&self, addr: u64) -> Result<u16, MemError> {
        let mut b = [0; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_be_bytes(b))
    }
    fn read_be32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn read_be64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_be_bytes(b))
    }
    fn write_u8(&mut self, addr: u64, v: u8) -> Result<(), MemError> {
        self.write(addr, &[v])
    }
    fn write_be16(&mut self, addr: u64, v: u16) -> Result<(), MemError> {
        self.write(addr, &v.to_be_bytes())
    }
    fn write_be32(&mut self, addr: u64, v: u32) -> Result<(), MemError> {
        self.write(addr, &v.to_be_bytes())
    }
    fn write_be64(&mut self, addr: u64, v: u64) -> Result<(), MemError> {
        self.write(addr, &v.to_be_bytes())
    }

    /// Read a NUL-terminated string of at most `max` bytes (terminator excluded)
    /// into `buf`; returns its length.  No terminator within `max` is an error.
    fn read_cstr(&self, addr: u64, buf: &mut [u8], max: usize) -> Result<usize, MemError> {
        let max = max.min(buf.len());
        let err = MemError {
            addr,
            len: max as u64 + 1,
        };
        // In chunks: one bounds-checked copy per 64 bytes rather than per byte
        // (client-interface names and paths are read on every call).  A
        // chunk that runs off the end of memory is retried byte by byte, so
        // a string ending right before the end is still read.
        let mut done = 0usize;
        while done <= max {
            let want = (max + 1 - done).min(64);
            let mut chunk = [0u8; 64];
            let at = addr.checked_add(done as u64).ok_or(err)?;
            let got = if self.read(at, &mut chunk[..want]).is_ok() {
                want
            } else {
                chunk[0] = self.read_u8(at)?;
                1
            };
            for (i, &b) in chunk[..got].iter().enumerate() {
                if b == 0 {
                    return Ok(done + i);
                }
                if done + i == max {
                    return Err(err);
                }
                buf[done + i] = b;
            }
            done += got;
        }
        Err(err)
    }
}

impl<M: Memory + ?Sized> Memory for &mut M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        (**self).write(addr, data)
    }
}

/// A physical range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Range { base, size }
    }
    /// One past the last byte (saturating, so a range ending at 2^64 stays ordered).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.base && end <= self.end(),
            None => false,
        }
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// Host-side physical memory for tests: a sparse set of backed ranges.
#[cfg(any(test, feature = "fake"))]
pub struct FakeMemory {
    regions: alloc::vec::Vec<(u64, alloc::vec::Vec<u8>)>,
}

#[cfg(any(test, feature = "fake"))]
impl FakeMemory {
    pub fn new() -> Self {
        FakeMemory {
            regions: alloc::vec::Vec::new(),
        }
    }
    /// Back `[base, base + size)` with zeroed bytes.
    pub fn with_region(mut self, base: u64, size: usize) -> Self {
        self.regions.push((base, alloc::vec![0; size]));
        self
    }
    fn locate(&self, addr: u64, len: usize) -> Option<(usize, usize)> {
        self.regions
            .iter()
            .enumerate()
            .find_map(|(i, (base, bytes))| {
                let off = addr.checked_sub(*base)? as usize;
                (off.checked_add(len)? <= bytes.len()).then_some((i, off))
            })
    }
}

#[cfg(any(test, feature = "fake"))]
impl Default for FakeMemory {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(any(test, feature = "fake"))]
impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let (i, off) = self.locate(addr, buf.len()).ok_or(MemError {
            addr,
            len: buf.len() as u64,
        })?;
        buf.copy_from_slice(&self.regions[i].1[off..off + buf.len()]);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let (i, off) = self.locate(addr, data.len()).ok_or(MemError {
            addr,
            len: data.len() as u64,
        })?;
        self.regions[i].1[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_accessors_and_bounds() {
        let mut m = FakeMemory::new().with_region(0x1000, 0x100);
        m.write_be32(0x1000, 0xd00dfeed).unwrap();
        assert_eq!(m.read_be16(0x1000).unwrap(), 0xd00d);
        assert_eq!(m.read_u8(0x1003).unwrap(), 0xed);
        m.write_be64(0x10f8, 0x0102030405060708).unwrap();
        assert_eq!(m.read_be64(0x10f8).unwrap(), 0x0102030405060708);
        assert_eq!(
            m.read_be32(0x10fe),
            Err(MemError {
                addr: 0x10fe,
                len: 4
            })
        );
        assert!(m.write(u64::MAX, &[1, 2]).is_err());
        assert!(m.read_be32(0xffc).is_err());
    }

    #[test]
    fn cstr_needs_a_terminator_within_max() {
        let mut m = FakeMemory::new().with_region(0, 64);
        m.write(0, b"/chosen\0").unwrap();
        let mut buf = [0; 32];
        assert_eq!(m.read_cstr(0, &mut buf, 31).unwrap(), 7);
        assert_eq!(&buf[..7], b"/chosen");
        assert!(m.read_cstr(0, &mut buf, 3).is_err());
        m.fill(8, 56, b'x').unwrap();
        assert!(m.read_cstr(8, &mut buf, 31).is_err());
    }

    #[test]
    fn ranges() {
        let r = Range::new(0x100, 0x100);
        assert!(r.contains(0x100, 0x100));
        assert!(!r.contains(0x1ff, 2));
        assert!(!r.contains(u64::MAX, 2));
        assert!(r.overlaps(&Range::new(0x1ff, 1)));
        assert!(!r.overlaps(&Range::new(0x200, 1)));
        assert_eq!(Range::new(u64::MAX, 10).end(), u64::MAX);
    }
}

/// A set of free physical ranges with first-fit allocation: the firmware's
/// allocator for memory it hands to devices and the platform, and the basis of
/// the client interface's `claim`/`release` (IEEE 1275 §6.3.2.4).
#[derive(Clone, Debug, Default)]
pub struct RangeAllocator {
    /// Free ranges, sorted by base, never adjacent or overlapping.
    free: alloc::vec::Vec<Range>,
}

impl RangeAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Free ranges, in address order.
    pub fn free_ranges(&self) -> &[Range] {
        &self.free
    }

    /// Make `r` available (merging with neighbours).  Parts already free stay free.
    pub fn add(&mut self, r: Range) {
        if r.size == 0 {
            return;
        }
        let mut base = r.base;
        let mut end = r.end();
        let mut out = alloc::vec::Vec::with_capacity(self.free.len() + 1);
        let mut placed = false;
        for f in self.free.drain(..) {
            if f.end() < base {
                out.push(f);
            } else if f.base > end {
                if !placed {
                    out.push(Range::new(base, end - base));
                    placed = true;
                }
                out.push(f);
            } else {
                base = base.min(f.base);
                end = end.max(f.end());
            }
        }
        if !placed {
            out.push(Range::new(base, end - base));
        }
        self.free = out;
    }

    /// Take exactly `r` if all of it is free.
    pub fn claim_exact(&mut self, r: Range) -> bool {
        if r.size == 0 || r.base.checked_add(r.size).is_none() {
            return false;
        }
        let Some(i) = self.free.iter().position(|f| f.contains(r.base, r.size)) else {
            return false;
        };
        let f = self.free.remove(i);
        let mut at = i;
        if r.base > f.base {
            self.free.insert(at, Range::new(f.base, r.base - f.base));
            at += 1;
        }
        if f.end() > r.end() {
            self.free.insert(at, Range::new(r.end(), f.end() - r.end()));
        }
        true
    }

    /// Remove `r` from the free set wherever it overlaps (reserve memory that
    /// may be partly free).
    pub fn reserve(&mut self, r: Range) {
        if r.size == 0 {
            return;
        }
        let mut out = alloc::vec::Vec::with_capacity(self.free.len() + 1);
        for f in self.free.drain(..) {
            if !f.overlaps(&r) {
                out.push(f);
                continue;
            }
            if f.base < r.base {
                out.push(Range::new(f.base, r.base - f.base));
            }
            if f.end() > r.end() {
                out.push(Range::new(r.end(), f.end() - r.end()));
            }
        }
        self.free = out;
    }

    /// Allocate `size` bytes aligned to `align` (a power of two), lowest
    /// address first, or highest first when `top_down`.
    pub fn alloc(&mut self, size: u64, align: u64, top_down: bool) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let fit = |f: &Range| -> Option<u64> {
            if top_down {
                let last = f.end().checked_sub(size)?;
                let a = last & !(align - 1);
                (a >= f.base).then_some(a)
            } else {
                let a = f.base.checked_add(align - 1)? & !(align - 1);
                (a.checked_add(size)? <= f.end()).then_some(a)
            }
        };
        let found = if top_down {
            self.free.iter().rev().find_map(fit)
        } else {
            self.free.iter().find_map(fit)
        }?;
        let ok = self.claim_exact(Range::new(found, size));
        debug_assert!(ok);
        Some(found)
    }

    /// Whether all of `r` is free.
    pub fn is_free(&self, r: Range) -> bool {
        self.free.iter().any(|f| f.contains(r.base, r.size))
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::*;

    #[test]
    fn add_merges_and_claims_split() {
        let mut a = RangeAllocator::new();
        a.add(Range::new(0x1000, 0x1000));
        a.add(Range::new(0x3000, 0x1000));
        a.add(Range::new(0x2000, 0x1000));
        assert_eq!(a.free_ranges(), &[Range::new(0x1000, 0x3000)]);
        assert!(a.claim_exact(Range::new(0x1800, 0x800)));
        assert_eq!(
            a.free_ranges(),
            &[Range::new(0x1000, 0x800), Range::new(0x2000, 0x2000)]
        );
        assert!(!a.claim_exact(Range::new(0x1800, 0x10)), "already taken");
        assert!(
            !a.claim_exact(Range::new(0x1f00, 0x200)),
            "straddles a hole"
        );
        assert!(!a.claim_exact(Range::new(u64::MAX, 2)));
        a.add(Range::new(0x1800, 0x800));
        assert_eq!(a.free_ranges(), &[Range::new(0x1000, 0x3000)]);
    }

    #[test]
    fn aligned_alloc_both_directions() {
        let mut a = RangeAllocator::new();
        a.add(Range::new(0x1100, 0x10000));
        assert_eq!(a.alloc(0x100, 0x1000, false), Some(0x2000));
        assert_eq!(a.alloc(0x1000, 0x1000, true), Some(0x10000));
        assert_eq!(a.alloc(0, 8, false), None);
        assert_eq!(a.alloc(8, 3, false), None);
        assert_eq!(a.alloc(0x100000, 8, false), None);
        a.reserve(Range::new(0, 0x8000));
        assert_eq!(a.free_ranges()[0].base, 0x8000);
        assert!(a.is_free(Range::new(0x8000, 0x100)));
        assert!(!a.is_free(Range::new(0x7000, 0x100)));
    }
}
