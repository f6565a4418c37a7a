//! The platform as the firmware's logic sees it: hypercalls ([`Hypervisor`]),
//! physical memory ([`Memory`]), a scratch area for argument blocks and the
//! timebase.  The real implementation lives in `arch` (target only); host tests
//! use `fake::FakePlatform`.  Also the machine-ending calls every part of the
//! firmware needs: RTAS `power-off` and `ibm,os-term` (QEMU pseries contract §5.3,
//! rust-ppc64-build "Clean pass/fail from QEMU").

use crate::hcall::Hypervisor;
use crate::memory::Memory;
use crate::rtas;
use core::sync::atomic::{AtomicU32, Ordering};

/// Bytes of scratch memory a platform provides at [`Platform::scratch`].
pub const SCRATCH_SIZE: u64 = 4096;

pub trait Platform: Hypervisor + Memory {
    /// Physical address of [`SCRATCH_SIZE`] bytes the firmware owns, for RTAS
    /// argument blocks and strings passed to the platform.
    fn scratch(&self) -> u64;
    /// The timebase register.
    fn timebase(&self) -> u64;
    /// Allocate `size` zeroed bytes of firmware-owned physical memory aligned to
    /// `align` (a power of two) for buffers devices or the platform access (TCE
    /// lists, device queues, DMA buffers).  `None` when exhausted.
    fn alloc_phys(&mut self, size: u64, align: u64) -> Option<u64>;
    /// Like [`alloc_phys`](Self::alloc_phys) but the contents are
    /// unspecified: for buffers the platform or a device fills before the
    /// firmware reads them (zeroing 2 MiB costs milliseconds under TCG).
    fn alloc_phys_uninit(&mut self, size: u64, align: u64) -> Option<u64> {
        self.alloc_phys(size, align)
    }
    /// Return memory from [`alloc_phys`](Self::alloc_phys) (same size and align).
    fn free_phys(&mut self, addr: u64, size: u64, align: u64);
    /// Make code the firmware wrote at `addr..addr+len` executable (instruction
    /// cache coherence; a no-op where there is no cache to keep coherent).
    fn sync_icache(&mut self, _addr: u64, _len: u64) {}
}

/// RTAS tokens the firmware itself needs before and after the tree is read.
/// Until the tree is parsed they hold QEMU's numbering (RTAS_TOKEN_BASE + index,
/// identical in QEMU 7.2 and 10.0) so that a malformed tree can still end the
/// machine cleanly; after parsing they hold what `/rtas` says.
pub struct EssentialTokens {
    pub power_off: AtomicU32,
    pub os_term: AtomicU32,
    pub system_reboot: AtomicU32,
}

/// QEMU's fixed token numbers for the calls in [`EssentialTokens`].
pub const QEMU_POWER_OFF: u32 = 0x2003;
pub const QEMU_SYSTEM_REBOOT: u32 = 0x2004;
pub const QEMU_OS_TERM: u32 = 0x201f;

pub static TOKENS: EssentialTokens = EssentialTokens {
    power_off: AtomicU32::new(QEMU_POWER_OFF),
    os_term: AtomicU32::new(QEMU_OS_TERM),
    system_reboot: AtomicU32::new(QEMU_SYSTEM_REBOOT),
};

/// RTAS `power-off` (nargs 2: power-on mask hi/lo; nret 1).  QEMU exits 0.
/// Returns only if the platform refused.
pub fn power_off<P: Platform + ?Sized>(p: &mut P) -> Result<i32, rtas::RtasError> {
    let token = TOKENS.power_off.load(Ordering::Relaxed);
    let mut rets = [0u32; 1];
    rtas::call(p, p.scratch(), token, &[0, 0], &mut rets)
}

/// RTAS `system-reboot` (nargs 0, nret 1).
pub fn system_reboot<P: Platform + ?Sized>(p: &mut P) -> Result<i32, rtas::RtasError> {
    let token = TOKENS.system_reboot.load(Ordering::Relaxed);
    let mut rets = [0u32; 1];
    rtas::call(p, p.scratch(), token, &[], &mut rets)
}

/// RTAS `ibm,os-term` with `msg` (nargs 1: string address; nret 1).  With
/// `-action panic=exit-failure` QEMU exits 1.  Returns only if the platform
/// refused or continued.
pub fn os_term<P: Platform + ?Sized>(p: &mut P, msg: &str) -> Result<i32, rtas::RtasError> {
    let token = TOKENS.os_term.load(Ordering::Relaxed);
    let text = p.scratch() + 256;
    let max = (SCRATCH_SIZE - 256 - 1) as usize;
    let bytes = &msg.as_bytes()[..msg.len().min(max)];
    p.write(text, bytes)?;
    p.write_u8(text + bytes.len() as u64, 0)?;
    let mut rets = [0u32; 1];
    rtas::call(p, p.scratch(), token, &[text as u32], &mut rets)
}
