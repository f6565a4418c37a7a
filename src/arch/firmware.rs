//! The firmware image's own boot code and memory layout (not part of the
//! resident RTAS runtime): entry, interrupt vectors and client-interface
//! assembly, and the linker-defined ranges.

use crate::memory::Range;
use core::arch::global_asm;

global_asm!(include_str!("../../boot/entry.S"));
global_asm!(include_str!("../../boot/vectors.S"));
global_asm!(include_str!("../../boot/client.S"));

mod exception;
pub use exception::mark_started;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __bss_end: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
    static __exc_stack_bottom: u8;
    static __exc_stack_top: u8;
    static __firmware_end: u8;
}

fn sym(s: &'static u8) -> u64 {
    s as *const u8 as u64
}

/// The firmware's own memory, from the linker script.
pub struct Layout {
    /// Code and initialised data as loaded by QEMU.
    pub image: Range,
    /// Everything the firmware occupies from 0 (image, .bss, stacks).
    pub firmware: Range,
    pub stack: Range,
    pub exception_stack: Range,
}

pub fn layout() -> Layout {
    // SAFETY: only the addresses of linker-defined symbols are taken.
    unsafe {
        Layout {
            image: Range::new(sym(&__image_start), sym(&__image_end) - sym(&__image_start)),
            firmware: Range::new(0, sym(&__firmware_end)),
            stack: Range::new(
                sym(&__stack_bottom),
                sym(&__stack_top) - sym(&__stack_bottom),
            ),
            exception_stack: Range::new(
                sym(&__exc_stack_bottom),
                sym(&__exc_stack_top) - sym(&__exc_stack_bottom),
            ),
        }
    }
}

/// Raise a Program interrupt (a trap), for `debug-exception=program`.
pub fn force_program_interrupt() {
    // SAFETY: deliberately traps into the firmware's own vector 0x700, which
    // reports and ends the machine.
    unsafe { core::arch::asm!("trap", options(nostack)) };
}

/// Raise a Floating-Point Unavailable interrupt (MSR[FP] is off), for
/// `debug-exception=fp`.
pub fn force_fp_unavailable() {
    // SAFETY: as above, vector 0x800.
    unsafe { core::arch::asm!("fmr 0, 0", options(nostack)) };
}

extern "C" {
    static __client_stack_bottom: u8;
    static __client_stack_top: u8;
}

/// The stack a client program starts on.
pub fn client_stack() -> Range {
    // SAFETY: only the addresses of linker-defined symbols are taken.
    unsafe {
        Range::new(
            sym(&__client_stack_bottom),
            sym(&__client_stack_top) - sym(&__client_stack_bottom),
        )
    }
}

extern "C" {
    fn cif_entry();
    fn enter_client(entry: u64, r3: u64, r4: u64, cif: u64, stack: u64, msr: u64) -> !;
    fn enter_client_toc(
        entry: u64,
        r3: u64,
        r4: u64,
        cif: u64,
        stack: u64,
        msr: u64,
        toc: u64,
    ) -> !;
}

/// The client-interface entry address clients get in r5.
pub fn cif_entry_address() -> u64 {
    cif_entry as *const () as u64
}

/// Start a client program at `entry` in real mode with the MSR SLOF gives
/// (the current one with SF cleared, i.e. 32-bit mode, and FP on), r3/r4 =
/// `r3`/`r4`, r5 = the client-interface entry, r1 = `stack`.
pub fn start_client(entry: u64, r3: u64, r4: u64, stack: u64) -> ! {
    let msr: u64;
    // SAFETY: reading the MSR has no side effects.
    unsafe { core::arch::asm!("mfmsr {0}", out(reg) msr, options(nomem, nostack)) };
    let msr = (msr & !(1u64 << 63)) | 0x2000;
    // SAFETY: enter_client (boot/client.S) loads the registers and rfid's to
    // `entry`, which the caller checked is a loaded image in RAM; the firmware
    // keeps serving the client through cif_entry.
    unsafe { enter_client(entry, r3, r4, cif_entry_address(), stack, msr) }
}

/// MSR[SF]: 64-bit mode.
const MSR_SF: u64 = 1 << 63;
/// MSR[FP].
const MSR_FP: u64 = 0x2000;
/// MSR[LE]: little-endian.
const MSR_LE: u64 = 1;

/// Start a client program papr-fw loaded itself (an ELF from a PReP
/// partition), as SLOF enters such images: r3 = `r3`, r4 = `r4`, r5 = the
/// client-interface entry, r1 = `stack`, FP on, 64-bit mode when `sf`
/// (64-bit images), MSR[LE] when `le` (little-endian images; the rfid
/// switches the byte order at the first instruction), r2 = `toc` when given
/// (ELFv1 images, from the function descriptor).
pub fn start_client_mode(
    entry: u64,
    r3: u64,
    r4: u64,
    stack: u64,
    sf: bool,
    le: bool,
    toc: Option<u64>,
) -> ! {
    let msr: u64;
    // SAFETY: reading the MSR has no side effects.
    unsafe { core::arch::asm!("mfmsr {0}", out(reg) msr, options(nomem, nostack)) };
    let mut msr = (msr & !(MSR_SF | MSR_LE)) | MSR_FP;
    if sf {
        msr |= MSR_SF;
    }
    if le {
        msr |= MSR_LE;
    }
    // SAFETY: as in `start_client`: the caller loaded the image at `entry`
    // and claimed its memory; the client-interface entry stays valid.
    unsafe {
        match toc {
            Some(t) => enter_client_toc(entry, r3, r4, cif_entry_address(), stack, msr, t),
            None => enter_client(entry, r3, r4, cif_entry_address(), stack, msr),
        }
    }
}
