//! papr-fw: a partition firmware for IBM POWER `pseries` virtual machines.
//!
//! The logic lives in this library so that it runs as ordinary host unit tests
//! against a fake platform (`fake`); only `arch` (entry, vectors, `sc 1`, raw
//! memory) is target-only.  `src/main.rs` is the start-up sequence on the target.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod cif;
pub mod console;
pub mod devtree;
pub mod diskboot;
pub mod disklabel;
pub mod drivers;
pub mod elf;
pub mod exception;
pub mod firmware;
pub mod hcall;
pub mod memory;
pub mod mmio;
pub mod options;
pub mod pci;
pub mod platform;
pub mod rtas;
pub mod storage;
pub mod summary;
pub mod tce;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

#[cfg(target_arch = "powerpc64")]
pub mod arch;

use platform::Platform;

/// End the machine after a fatal error: RTAS `ibm,os-term` (QEMU exits 1 with
/// `-action panic=exit-failure`), then `power-off` if the platform carried on,
/// then stop this CPU.
pub fn terminate<P: Platform + ?Sized>(p: &mut P, msg: &str) -> ! {
    let _ = platform::os_term(p, msg);
    console::VTY.write_text(p, b"papr-fw: ibm,os-term returned; powering off\n");
    let _ = platform::power_off(p);
    console::VTY.write_text(p, b"papr-fw: power-off failed; stopping\n");
    loop {
        core::hint::spin_loop();
    }
}
