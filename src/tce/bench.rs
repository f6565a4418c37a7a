//! TCE mapping throughput: one `H_PUT_TCE` per page (as SLOF maps, contract
//! §6) against `H_PUT_TCE_INDIRECT` batches of 512 with `H_STUFF_TCE` clears
//! (as Linux maps, linux-expectations §2.5 step 9, §2.6).  Runs in the
//! firmware on the real platform; timed with the timebase.

use super::{Perm, TceError, TceManager};
use crate::platform::Platform;
use core::fmt;

/// One strategy's numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchPhase {
    pub map_ticks: u64,
    pub unmap_ticks: u64,
    pub map_calls: u64,
    pub unmap_calls: u64,
}

/// Result of [`bench`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchResult {
    pub liobn: u32,
    pub pages: u64,
    pub page_size: u64,
    /// Timebase frequency (Hz) the ticks count in.
    pub tb_hz: u64,
    /// Every entry written and cleared with `H_PUT_TCE`.
    pub single: BenchPhase,
    /// `H_PUT_TCE_INDIRECT` (512 per call) and `H_STUFF_TCE`.
    pub indirect: BenchPhase,
}

impl BenchResult {
    /// Pages per second for `ticks` (`None` if no time passed or no frequency).
    pub fn pages_per_sec(&self, ticks: u64) -> Option<u64> {
        if ticks == 0 || self.tb_hz == 0 {
            return None;
        }
        let r = self.pages as u128 * self.tb_hz as u128 / ticks as u128;
        Some(r.min(u64::MAX as u128) as u64)
    }

    /// Microseconds for `ticks`.
    pub fn micros(&self, ticks: u64) -> u64 {
        if self.tb_hz == 0 {
            return 0;
        }
        (ticks as u128 * 1_000_000 / self.tb_hz as u128).min(u64::MAX as u128) as u64
    }
}

struct Rate<'a>(&'a BenchResult, u64, u64);

impl fmt::Display for Rate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, ticks, calls) = (self.0, self.1, self.2);
        match r.pages_per_sec(ticks) {
            Some(pps) => write!(f, "{pps} pages/s")?,
            None => write!(f, "? pages/s")?,
        }
        let us = r.micros(ticks);
        write!(f, " ({calls} calls, {}.{:03} ms)", us / 1000, us % 1000)
    }
}

impl fmt::Display for BenchResult {
    /// Integer arithmetic only: the firmware may run with floating point off.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.pages.saturating_mul(self.page_size);
        write!(
            f,
            "LIOBN {:#x}, {} pages of {} KiB ({} MiB): \
             H_PUT_TCE map {}, unmap {}; \
             H_PUT_TCE_INDIRECT map {}, H_STUFF_TCE unmap {}",
            self.liobn,
            self.pages,
            self.page_size >> 10,
            bytes >> 20,
            Rate(self, self.single.map_ticks, self.single.map_calls),
            Rate(self, self.single.unmap_ticks, self.single.unmap_calls),
            Rate(self, self.indirect.map_ticks, self.indirect.map_calls),
            Rate(self, self.indirect.unmap_ticks, self.indirect.unmap_calls),
        )
    }
}

/// Map and unmap `bytes` of memory at `phys` through window `liobn` twice:
/// first one `H_PUT_TCE` per page (map and clear), then with indirect
/// batches and `H_STUFF_TCE`.  `tb_hz` is the timebase frequency from the
/// tree (`timebase-frequency`, 512 MHz on QEMU).  The window must have room
/// for the whole range; under KVM `phys..phys+bytes` must be guest RAM.
/// The manager's multi-TCE setting is restored afterwards.
pub fn bench<P: Platform + ?Sized>(
    p: &mut P,
    m: &mut TceManager,
    liobn: u32,
    phys: u64,
    bytes: u64,
    tb_hz: u64,
) -> Result<BenchResult, TceError> {
    let page_size = m
        .window(liobn)
        .ok_or(TceError::UnknownLiobn(liobn))?
        .page_size();
    let saved = m.multi_tce();
    let mut result = BenchResult {
        liobn,
        page_size,
        tb_hz,
        ..Default::default()
    };
    for multi in [false, true] {
        m.set_multi_tce(multi);
        let r = phase(p, m, liobn, phys, bytes);
        m.set_multi_tce(saved);
        let (pages, ph) = r?;
        result.pages = pages;
        if multi {
            result.indirect = ph;
        } else {
            result.single = ph;
        }
    }
    Ok(result)
}

fn phase<P: Platform + ?Sized>(
    p: &mut P,
    m: &mut TceManager,
    liobn: u32,
    phys: u64,
    bytes: u64,
) -> Result<(u64, BenchPhase), TceError> {
    let c0 = m.counters().hcalls();
    let t0 = p.timebase();
    let map = m.map(p, liobn, phys, bytes, Perm::ReadWrite)?;
    let t1 = p.timebase();
    let c1 = m.counters().hcalls();
    m.unmap_mapping(p, &map)?;
    let t2 = p.timebase();
    let c2 = m.counters().hcalls();
    Ok((
        map.pages,
        BenchPhase {
            map_ticks: t1.wrapping_sub(t0),
            unmap_ticks: t2.wrapping_sub(t1),
            map_calls: c1 - c0,
            unmap_calls: c2 - c1,
        },
    ))
}
