//! Target-only code for 64-bit big-endian POWER in a PAPR partition: the entry
//! and interrupt-vector assembly (`boot/`), the `sc 1` hypercall primitive, raw
//! physical memory, the timebase and the linker-defined memory layout.  This is
//! one of the few modules with `unsafe`; everything it exports is safe.
//!
//! With the `rtas-runtime` feature (the position-independent resident RTAS,
//! `src/bin/rtas-runtime.rs`) only the primitives are built, not the
//! firmware's boot code and memory layout.

use crate::hcall::{HcallReturn, Hypervisor};
use crate::memory::{MemError, Memory};
use core::arch::asm;
use core::sync::atomic::{compiler_fence, AtomicU64, Ordering};

#[cfg(not(feature = "rtas-runtime"))]
mod firmware;
#[cfg(not(feature = "rtas-runtime"))]
pub use firmware::*;

/// The hypervisor reached with `sc 1` (LoPAPR §14.5.3): r3 = opcode, r4..r12 =
/// arguments and outputs; r0, r3..r12, CTR, XER and CR are clobbered.
#[derive(Clone, Copy, Default)]
pub struct RealHypervisor;

impl Hypervisor for RealHypervisor {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        let mut a = [0u64; 9];
        let n = args.len().min(9);
        a[..n].copy_from_slice(&args[..n]);
        let rc: u64;
        // SAFETY: `sc 1` transfers to the hypervisor, which reads and writes only
        // the registers declared here (and memory named by the arguments, which
        // the callers own); it returns to the next instruction.
        unsafe {
            asm!(
                "sc 1",
                inlateout("r3") opcode => rc,
                inlateout("r4") a[0] => a[0],
                inlateout("r5") a[1] => a[1],
                inlateout("r6") a[2] => a[2],
                inlateout("r7") a[3] => a[3],
                inlateout("r8") a[4] => a[4],
                inlateout("r9") a[5] => a[5],
                inlateout("r10") a[6] => a[6],
                inlateout("r11") a[7] => a[7],
                inlateout("r12") a[8] => a[8],
                lateout("r0") _,
                lateout("ctr") _,
                lateout("xer") _,
                lateout("cr0") _, lateout("cr1") _, lateout("cr5") _,
                lateout("cr6") _, lateout("cr7") _,
                options(nostack),
            );
        }
        HcallReturn {
            rc: rc as i64,
            ret: a,
        }
    }
}

/// Top of RAM the firmware may touch; starts at QEMU's minimum RMA (128 MiB)
/// and is raised once the tree's `/memory` is read.
static RAM_LIMIT: AtomicU64 = AtomicU64::new(128 << 20);

/// Physical memory in real mode.  Addresses below 0x100 are refused: that page
/// is never the firmware's business, and address 0 would be a null pointer.
#[derive(Clone, Copy, Default)]
pub struct RealMemory;

impl RealMemory {
    pub fn set_limit(limit: u64) {
        RAM_LIMIT.store(limit, Ordering::Relaxed);
    }

    fn check(addr: u64, len: usize) -> Result<(), MemError> {
        let limit = RAM_LIMIT.load(Ordering::Relaxed);
        match addr.checked_add(len as u64) {
            Some(end) if addr >= 0x100 && end <= limit => Ok(()),
            _ => Err(MemError {
                addr,
                len: len as u64,
            }),
        }
    }
}

impl Memory for RealMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Self::check(addr, buf.len())?;
        // The fences keep the compiler from caching or reordering accesses to
        // memory a device or the hypervisor writes behind its back (polled
        // completion queues, RTAS return cells).
        compiler_fence(Ordering::SeqCst);
        // SAFETY: real mode, EA = physical address; the range was checked to lie
        // in RAM above the null page, and `buf` is firmware memory that does not
        // overlap it (a Rust slice the caller owns).
        unsafe {
            core::ptr::copy_nonoverlapping(addr as usize as *const u8, buf.as_mut_ptr(), buf.len())
        };
        compiler_fence(Ordering::SeqCst);
        Ok(())
    }

    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), MemError> {
        let n = usize::try_from(len).map_err(|_| MemError { addr, len })?;
        Self::check(addr, n)?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(addr as usize as *mut u8, byte, n) };
        compiler_fence(Ordering::SeqCst);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        Self::check(addr, data.len())?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as in `read`; callers only write memory they own or that a
        // client handed them.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), addr as usize as *mut u8, data.len())
        };
        compiler_fence(Ordering::SeqCst);
        Ok(())
    }
}

/// A read-only view of `len` bytes of physical memory at `addr` (QEMU's
/// flattened tree, a preloaded image), if that lies in RAM.
pub fn phys_bytes(addr: u64, len: u64) -> Option<&'static [u8]> {
    RealMemory::check(addr, usize::try_from(len).ok()?).ok()?;
    // SAFETY: the range is RAM the firmware does not write while the slice
    // lives (callers take views of data QEMU loaded and nothing else owns).
    Some(unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len as usize) })
}

/// Make instructions the firmware wrote at `addr..addr+len` visible to
/// instruction fetch (Power ISA Book II §1.8: dcbst, sync, icbi, isync).
pub fn sync_icache(addr: u64, len: u64) {
    const LINE: u64 = 128;
    let start = addr & !(LINE - 1);
    let end = addr.saturating_add(len);
    let mut a = start;
    while a < end {
        // SAFETY: cache-block operations on RAM the caller just wrote; they do
        // not change memory contents.
        unsafe { asm!("dcbst 0, {0}", in(reg) a, options(nostack)) };
        a += LINE;
    }
    // SAFETY: ordering barrier only.
    unsafe { asm!("sync", options(nostack)) };
    let mut a = start;
    while a < end {
        // SAFETY: as above.
        unsafe { asm!("icbi 0, {0}", in(reg) a, options(nostack)) };
        a += LINE;
    }
    // SAFETY: context synchronisation only.
    unsafe { asm!("sync", "isync", options(nostack)) };
}

/// Read the timebase (mftb).
pub fn timebase() -> u64 {
    let tb: u64;
    // SAFETY: reading the timebase has no side effects.
    unsafe { asm!("mftb {0}", out(reg) tb, options(nomem, nostack)) };
    tb
}

/// The `Platform` of the real machine.
#[derive(Clone, Copy, Default)]
pub struct RealPlatform;

/// Scratch page for RTAS argument blocks (see `platform::Platform::scratch`).
#[repr(C, align(4096))]
struct Scratch([u8; crate::platform::SCRATCH_SIZE as usize]);
static mut SCRATCH: Scratch = Scratch([0; crate::platform::SCRATCH_SIZE as usize]);

impl Hypervisor for RealPlatform {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        RealHypervisor.hcall(opcode, args)
    }
}

impl Memory for RealPlatform {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        RealMemory.read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        RealMemory.write(addr, data)
    }
    fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<(), MemError> {
        RealMemory.fill(addr, len, byte)
    }
}

impl crate::platform::Platform for RealPlatform {
    fn scratch(&self) -> u64 {
        core::ptr::addr_of!(SCRATCH) as u64
    }
    fn timebase(&self) -> u64 {
        timebase()
    }
    fn alloc_phys(&mut self, size: u64, align: u64) -> Option<u64> {
        let layout = core::alloc::Layout::from_size_align(size as usize, align as usize).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: the layout has a non-zero size; in real mode the heap pointer
        // is the physical address.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!p.is_null()).then_some(p as u64)
    }
    fn alloc_phys_uninit(&mut self, size: u64, align: u64) -> Option<u64> {
        let layout = core::alloc::Layout::from_size_align(size as usize, align as usize).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: as in `alloc_phys`; the memory is only reached through
        // `Memory` (never as a Rust value), so its contents may be anything.
        let p = unsafe { alloc::alloc::alloc(layout) };
        (!p.is_null()).then_some(p as u64)
    }
    fn sync_icache(&mut self, addr: u64, len: u64) {
        sync_icache(addr, len)
    }
    fn free_phys(&mut self, addr: u64, size: u64, align: u64) {
        if let Ok(layout) = core::alloc::Layout::from_size_align(size as usize, align as usize) {
            // SAFETY: `addr` came from `alloc_phys` with this size and alignment.
            unsafe { alloc::alloc::dealloc(addr as *mut u8, layout) };
        }
    }
}
