//! papr-fw start-up on the target: console, tree, platform summary, boot.
//! On the host this binary does nothing; the logic is tested through the library.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("papr-fw is firmware for qemu-system-ppc64 -M pseries; build it with `cargo fw`");
}

#[cfg(target_os = "none")]
mod firmware {
    use papr_fw::arch::{self, RealPlatform};
    use papr_fw::console::VTY;

    #[global_allocator]
    static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    #[no_mangle]
    extern "C" fn rust_start(fdt: u64) -> ! {
        arch::mark_started();
        let mut p = RealPlatform;
        VTY.write_text(&mut p, b"papr-fw: hello\n");
        let _ = fdt;
        let _ = papr_fw::platform::power_off(&mut p);
        papr_fw::terminate(&mut p, "power-off failed")
    }

    /// Client-interface calls (boot/client.S); the dispatcher comes with the
    /// client-interface module.
    #[no_mangle]
    extern "C" fn rust_cif_entry(_args: u64) -> i64 {
        -1
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        use core::fmt::Write;
        let mut p = RealPlatform;
        VTY.set_muted(false);
        let mut w = papr_fw::console::VtyWriter {
            vty: &VTY,
            hv: &mut RealPlatform,
        };
        let _ = writeln!(w, "papr-fw: panic: {info}");
        papr_fw::terminate(&mut p, "papr-fw: panic")
    }
}
