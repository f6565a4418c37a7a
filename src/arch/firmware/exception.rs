//! Glue between boot/vectors.S and `crate::exception`: mark the firmware as
//! started (so a later entry at 0x100 is reported as a system reset) and turn
//! an unexpected interrupt into a report and `ibm,os-term`.

use super::layout;
use crate::arch::{RealMemory, RealPlatform};
use crate::console::VtyWriter;
use crate::exception::{report, ExceptionFrame};
use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    static mut __fw_started: u32;
}

/// Record that Rust code runs (see boot/entry.S).
pub fn mark_started() {
    // SAFETY: a word in .data that only this function and the 0x100 entry path
    // touch; single CPU at this point.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(__fw_started), 1) };
}

static IN_EXCEPTION: AtomicBool = AtomicBool::new(false);

#[no_mangle]
extern "C" fn rust_exception(frame: *const ExceptionFrame) -> ! {
    // SAFETY: exc_common passes a pointer to the frame it just filled on the
    // exception stack; it stays valid because this function never returns.
    let frame = unsafe { &*frame };
    let mut p = RealPlatform;
    if IN_EXCEPTION.swap(true, Ordering::SeqCst) {
        // An interrupt while reporting one: say so as simply as possible and end.
        crate::console::VTY.write_raw(
            &mut p,
            b"\r\npapr-fw: interrupt while reporting an interrupt\r\n",
        );
        crate::terminate(&mut p, "papr-fw: nested interrupt");
    }
    crate::console::VTY.set_muted(false);
    let mut w = VtyWriter {
        vty: &crate::console::VTY,
        hv: &mut RealPlatform,
    };
    let _ = report(&mut w, frame, &RealMemory, layout().stack);
    crate::terminate(&mut p, "papr-fw: unexpected interrupt")
}
