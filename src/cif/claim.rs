//! Physical memory for client programs: IEEE 1275 `claim` / `release` (§6.3.2.4
//! "Memory", real-mode binding: virt = phys) and the `/memory` `available`
//! property that reflects them.
//!
//! The free set starts as RAM (below 4 GiB: claim's cells are 32-bit in the
//! 32-bit client interface) minus everything the firmware needs to keep: its
//! image, .bss and stacks (including the stack the client runs on), its heap,
//! and what QEMU preloaded (kernel, initrd).  Linux claims at exact addresses
//! with align 0 (`alloc_up`/`alloc_down`), stepping 1 MiB on failure, so a
//! refused claim must simply fail; GRUB claims with and without alignment.

use crate::memory::{Range, RangeAllocator};
use alloc::vec::Vec;

/// Claims beyond this cannot be expressed in 32-bit cells.
pub const CLAIM_LIMIT: u64 = 1 << 32;
/// Most separate claims a client may hold.  Each claim costs firmware memory
/// and makes every later claim re-encode `/memory` `available`: without a
/// bound a client making tiny claims exhausts the heap or stalls the firmware
/// (20000 one-byte claims took two minutes under TCG).  Linux makes a few
/// dozen, boot loaders a few hundred at most.
pub const MAX_CLAIMS: usize = 1024;

#[derive(Clone, Debug, Default)]
pub struct Claims {
    free: RangeAllocator,
    /// What clients claimed (only these may be released).
    claimed: Vec<Range>,
    /// Memory the firmware keeps; never given out.
    protected: Vec<Range>,
}

impl Claims {
    /// Start from `ram` ranges, withholding `protected` ones.
    pub fn new(ram: &[Range], protected: &[Range]) -> Self {
        let mut free = RangeAllocator::new();
        for r in ram {
            let end = r.end().min(CLAIM_LIMIT);
            if r.base < end {
                free.add(Range::new(r.base, end - r.base));
            }
        }
        for p in protected {
            free.reserve(*p);
        }
        Claims {
            free,
            claimed: Vec::new(),
            protected: protected.to_vec(),
        }
    }

    /// Withhold another range (e.g. one the firmware allocates later).
    pub fn protect(&mut self, r: Range) {
        self.free.reserve(r);
        self.protected.push(r);
    }

    /// Give a protected range back to the free pool (e.g. QEMU's FDT once it is
    /// unflattened).
    pub fn unprotect(&mut self, r: Range) {
        if let Some(i) = self.protected.iter().position(|p| *p == r) {
            self.protected.remove(i);
            self.free.add(r);
            for p in &self.protected {
                self.free.reserve(*p);
            }
            for c in &self.claimed {
                self.free.reserve(*c);
            }
        }
    }

    /// `claim(virt, size, align)`: with `align == 0` exactly at `virt`,
    /// otherwise anywhere aligned to `align` (a power of two).  Returns the base.
    pub fn claim(&mut self, virt: u64, size: u64, align: u64) -> Option<u64> {
        if size == 0 || self.claimed.len() >= MAX_CLAIMS {
            return None;
        }
        let base = if align == 0 {
            let r = Range::new(virt, size);
            if r.base.checked_add(size)? > CLAIM_LIMIT || !self.free.claim_exact(r) {
                return None;
            }
            virt
        } else {
            if !align.is_power_of_two() {
                return None;
            }
            self.free.alloc(size, align, false)?
        };
        self.claimed.push(Range::new(base, size));
        Some(base)
    }

    /// `release(virt, size)`: only exactly what a client claimed (or a part of
    /// one claim) can be released; anything else is refused.
    pub fn release(&mut self, virt: u64, size: u64) -> bool {
        let r = Range::new(virt, size);
        if size == 0 {
            return false;
        }
        let Some(i) = self.claimed.iter().position(|c| c.contains(r.base, r.size)) else {
            return false;
        };
        let c = self.claimed[i];
        if c.base < r.base && c.end() > r.end() && self.claimed.len() >= MAX_CLAIMS {
            // Releasing the middle would make a claim more than the bound.
            return false;
        }
        self.claimed.remove(i);
        if c.base < r.base {
            self.claimed.push(Range::new(c.base, r.base - c.base));
        }
        if c.end() > r.end() {
            self.claimed.push(Range::new(r.end(), c.end() - r.end()));
        }
        self.free.add(r);
        true
    }

    /// Free memory for `/memory` `available`.
    pub fn available(&self) -> &[Range] {
        self.free.free_ranges()
    }

    /// Whether `r` is memory a client may hand the firmware as a buffer:
    /// not the firmware's own.
    pub fn is_client_memory(&self, r: Range) -> bool {
        !self.protected.iter().any(|p| p.overlaps(&r))
    }

    pub fn claimed(&self) -> &[Range] {
        &self.claimed
    }
}

/// Encode ranges as `reg`-style cells (`#address-cells`, `#size-cells` of the
/// root, 1 or 2 each) for the `available` property.
pub fn encode_ranges(ranges: &[Range], addr_cells: u32, size_cells: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut put = |x: u64, cells: u32| {
        if cells >= 2 {
            v.extend_from_slice(&((x >> 32) as u32).to_be_bytes());
        }
        v.extend_from_slice(&(x as u32).to_be_bytes());
    };
    for r in ranges {
        put(r.base, addr_cells);
        put(r.size, size_cells);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_like() -> Claims {
        // 512 MiB RAM; firmware 0..1 MiB; heap near the top; kernel at 4 MiB.
        Claims::new(
            &[Range::new(0, 512 << 20)],
            &[
                Range::new(0, 1 << 20),
                Range::new(478 << 20, 32 << 20),
                Range::new(4 << 20, 40 << 20),
            ],
        )
    }

    #[test]
    fn exact_claims_like_prom_init() {
        let mut c = linux_like();
        // alloc_down from 768 MiB-ish: above RAM fails, inside the heap fails.
        assert_eq!(c.claim(511 << 20, 1 << 20, 0), Some(511 << 20));
        assert_eq!(c.claim(510 << 20, 1 << 20, 0), Some(510 << 20));
        assert_eq!(c.claim(509 << 20, 1 << 20, 0), None, "firmware heap");
        assert_eq!(c.claim(600 << 20, 1 << 20, 0), None, "beyond RAM");
        assert_eq!(c.claim(0x8000, 0x1000, 0), None, "firmware image");
        assert_eq!(
            c.claim(44 << 20, 1 << 20, 0),
            Some(44 << 20),
            "right above the kernel"
        );
        assert_eq!(c.claim(44 << 20, 1 << 20, 0), None, "already claimed");
        assert!(c.release(44 << 20, 1 << 20));
        assert!(!c.release(44 << 20, 1 << 20), "double release");
        assert!(!c.release(0, 0x1000), "firmware memory is never released");
        assert_eq!(c.claim(u64::MAX - 10, 100, 0), None);
        assert_eq!(c.claim(0, 0, 0), None);
    }

    #[test]
    fn aligned_claims_and_available() {
        let mut c = Claims::new(&[Range::new(0, 64 << 20)], &[Range::new(0, 0x180000)]);
        let a = c.claim(0, 0x10000, 0x10000).unwrap();
        assert_eq!(a, 0x180000);
        assert_eq!(c.claim(0, 0x100, 3), None);
        assert_eq!(
            c.available(),
            &[Range::new(0x190000, (64 << 20) - 0x190000)]
        );
        assert_eq!(
            encode_ranges(c.available(), 2, 2),
            [0, 0x0019_0000u32, 0, (64 << 20) - 0x190000]
                .iter()
                .flat_map(|x: &u32| x.to_be_bytes())
                .collect::<Vec<_>>()
        );
        assert!(c.release(a + 0x1000, 0x1000), "part of a claim");
        assert_eq!(c.claimed().len(), 2);
        assert!(!c.is_client_memory(Range::new(0x17ff00, 0x200)));
        assert!(c.is_client_memory(Range::new(0x200000, 0x200)));
        // Protect and unprotect (QEMU's FDT after unflattening).
        c.protect(Range::new(0x800000, 0x200000));
        assert_eq!(c.claim(0x800000, 0x1000, 0), None);
        c.unprotect(Range::new(0x800000, 0x200000));
        assert_eq!(c.claim(0x800000, 0x1000, 0), Some(0x800000));
    }

    #[test]
    fn claims_are_bounded() {
        let mut c = Claims::new(&[Range::new(0, 64 << 20)], &[]);
        for i in 0..MAX_CLAIMS as u64 {
            assert_eq!(c.claim(0x10_0000 + 2 * i, 1, 0), Some(0x10_0000 + 2 * i));
        }
        assert_eq!(c.claim(0x20_0000, 0x1000, 0), None, "one claim too many");
        assert_eq!(c.claim(0, 0x1000, 0x1000), None, "aligned ones too");
        // A release that would split a claim in two is refused at the bound;
        // releasing whole claims makes room again.
        c.release(0x10_0000, 1);
        assert_eq!(c.claim(0x30_0000, 0x3000, 0), Some(0x30_0000));
        assert!(!c.release(0x30_1000, 0x1000), "splitting at the bound");
        assert!(c.release(0x30_0000, 0x1000), "the start of it is fine");
        assert!(c.release(0x10_0002, 1));
        assert_eq!(c.claim(0x40_0000, 0x1000, 0), Some(0x40_0000));
    }

    #[test]
    fn ram_above_4g_is_not_claimable() {
        let mut c = Claims::new(&[Range::new(0, 8 << 30)], &[]);
        assert_eq!(c.available(), &[Range::new(0, 1 << 32)]);
        assert_eq!(c.claim(0xffff_f000, 0x2000, 0), None);
    }
}
