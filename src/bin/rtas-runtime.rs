//! The firmware-resident RTAS runtime image (see `papr_fw::rtas::resident` for
//! how it is packed and installed, `papr_fw::rtas::runtime` for what it does).
//! Built position-independent for `.cargo/powerpc64-papr-pie.json` with the
//! `rtas-runtime` feature; `cargo fw` embeds it in the firmware.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("rtas-runtime is part of the papr-fw image; build it with `cargo fw`");
}

#[cfg(target_os = "none")]
mod runtime {
    use core::arch::global_asm;
    use papr_fw::arch::{RealMemory, RealPlatform};
    use papr_fw::rtas::runtime::{Runtime, RuntimeConfig, CONFIG_SIZE};

    global_asm!(include_str!("../../boot/rtas_entry.S"));

    /// Written by the firmware when it installs the runtime (its offset in the
    /// image is recorded in the blob by `cargo fw`).
    #[no_mangle]
    #[used]
    static mut RTAS_CONFIG: [u8; CONFIG_SIZE] = [0; CONFIG_SIZE];

    #[repr(C, align(16))]
    struct Heap([u8; 64 << 10]);
    static mut HEAP_SPACE: Heap = Heap([0; 64 << 10]);

    #[global_allocator]
    static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    static STATE: spin::Mutex<Option<Runtime>> = spin::Mutex::new(None);

    /// Called by boot/rtas_entry.S (serialised, 64-bit mode, own stack).
    #[no_mangle]
    extern "C" fn rtas_runtime_main(args: u64) -> u64 {
        let mut state = STATE.lock();
        if state.is_none() {
            // SAFETY: first call, serialised by the entry lock; the heap space
            // is this image's own .bss and is handed to the allocator once.
            unsafe {
                HEAP.lock()
                    .init(core::ptr::addr_of_mut!(HEAP_SPACE) as *mut u8, 64 << 10);
            }
            // SAFETY: the firmware wrote the configuration before the first call
            // and nothing writes it afterwards.
            let raw = unsafe { &*core::ptr::addr_of!(RTAS_CONFIG) };
            let config = RuntimeConfig::decode(raw).unwrap_or_default();
            if config.ram_limit != 0 {
                RealMemory::set_limit(config.ram_limit);
            }
            *state = Some(Runtime::new(config));
        }
        if let Some(rt) = state.as_mut() {
            rt.handle(&mut RealPlatform, args);
        }
        0
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        // A panic here would be a papr-fw bug inside the OS's RTAS call: end the
        // partition rather than return garbage.
        let _ = papr_fw::platform::os_term(&mut RealPlatform, "papr-fw: resident RTAS panic");
        loop {
            core::hint::spin_loop();
        }
    }
}
