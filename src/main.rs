//! papr-fw start-up on the target: the memory layout, the heap and the console
//! logger, then `papr_fw::firmware` does the rest.  On the host this binary
//! does nothing; the logic is tested through the library.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("papr-fw is firmware for qemu-system-ppc64 -M pseries; build it with `cargo fw`");
}

#[cfg(target_os = "none")]
mod firmware {
    use papr_fw::arch::{self, RealHypervisor, RealMemory, RealPlatform};
    use papr_fw::console::{VtyLogger, VtyWriter, VTY};
    use papr_fw::devtree::fdt::Fdt;
    use papr_fw::firmware::{Firmware, Layout};
    use papr_fw::memory::{Memory, Range};

    #[global_allocator]
    static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    static LOGGER: VtyLogger<RealHypervisor> = VtyLogger::new(&VTY);

    /// The firmware's state once started; the client interface works on it.
    static FIRMWARE: spin::Mutex<Option<Firmware>> = spin::Mutex::new(None);

    /// The packed resident RTAS runtime `cargo fw` built (empty without it).
    static RTAS_BLOB: &[u8] = include_bytes!(env!("PAPR_RTAS_BLOB"));

    /// QEMU puts its tree in the top 2 MiB below min(RMA, 2 GiB) and keeps the
    /// 40 MiB below that free for firmware (FW_OVERHEAD, contract §1.4–1.6).
    const FDT_SLOT: u64 = 2 << 20;
    const HEAP_SIZE: u64 = 32 << 20;
    const FDT_MAX_ADDR: u64 = 2 << 30;

    fn fatal(msg: core::fmt::Arguments) -> ! {
        use core::fmt::Write;
        let mut w = VtyWriter {
            vty: &VTY,
            hv: &mut RealPlatform,
        };
        let _ = writeln!(w, "papr-fw: {msg}");
        papr_fw::terminate(&mut RealPlatform, "papr-fw: fatal error at boot")
    }

    #[no_mangle]
    extern "C" fn rust_start(fdt_addr: u64) -> ! {
        let tb_entry = arch::timebase();
        arch::mark_started();
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Info);
        log::info!(
            "papr-fw {} — partition firmware for pseries",
            env!("CARGO_PKG_VERSION")
        );

        // QEMU's tree, validated before anything depends on it (no heap yet).
        // QEMU always places it below 2 GiB inside the RMA; until /memory is
        // read that is all the firmware assumes about RAM.
        RealMemory::set_limit(FDT_MAX_ADDR);
        let Some(header) = arch::phys_bytes(fdt_addr, 8) else {
            fatal(format_args!(
                "no device tree: r3 = {fdt_addr:#x} is not in RAM"
            ))
        };
        let total = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as u64;
        let Some(blob) = arch::phys_bytes(fdt_addr, total.clamp(8, FDT_SLOT)) else {
            fatal(format_args!(
                "device tree at {fdt_addr:#x}: size {total:#x} runs past RAM"
            ))
        };
        let fdt = match Fdt::new(blob) {
            Ok(f) => f,
            Err(e) => fatal(format_args!(
                "malformed device tree from QEMU at {fdt_addr:#x}: {e}"
            )),
        };

        // The RMA (real mode area): all the firmware may touch in real mode.
        let rma = fdt
            .find_node("/memory@0")
            .ok()
            .flatten()
            .and_then(|m| fdt.reg(&m).ok())
            .and_then(|mut r| r.find(|(a, s)| *a == 0 && *s != 0))
            .map(|(_, s)| s);
        let Some(rma) = rma else {
            fatal(format_args!(
                "the device tree has no /memory@0 at address 0"
            ))
        };
        RealMemory::set_limit(rma);

        let top = rma.min(FDT_MAX_ADDR);
        let heap = Range::new(top - FDT_SLOT - HEAP_SIZE, HEAP_SIZE);
        let l = arch::layout();
        if heap.base < l.firmware.end() {
            fatal(format_args!("RMA of {rma:#x} bytes is too small"));
        }
        // SAFETY: [heap.base, heap.end()) is RAM inside the RMA that nothing
        // else uses (below QEMU's tree slot, above any initrd QEMU loads), and
        // it is given to the allocator once, before any allocation.
        unsafe {
            HEAP.lock()
                .init(heap.base as usize as *mut u8, heap.size as usize)
        };

        let layout = Layout {
            firmware: l.firmware,
            heap,
            fdt: Range::new(fdt_addr, FDT_SLOT.min(top - fdt_addr)),
            client_stack: arch::client_stack(),
        };
        let mut p = RealPlatform;
        let mut fw = match Firmware::start(&mut p, blob, layout) {
            Ok(fw) => fw,
            Err(e) => fatal(format_args!("{e}")),
        };
        fw.rtas_blob = RTAS_BLOB;
        fw.run_selftests(&mut p);
        match fw.options.get("debug-exception") {
            Some("program") => arch::force_program_interrupt(),
            Some("fp") => arch::force_fp_unavailable(),
            Some("off") | None => {}
            Some(other) => log::warn!("debug-exception={other}: expected program, fp or off"),
        }
        match papr_fw::boot::preloaded_kernel(&fw.tree, &fw.ram) {
            Ok(image) => {
                fw.prepare_client(&image);
                let stack = layout.client_stack.end() - 256;
                let _ = p.write_be64(stack, 0);
                log::info!(
                    "papr-fw: booting the kernel at {:#x} ({} bytes{}), client interface at {:#x}",
                    image.entry,
                    image.image.size,
                    if image.initrd.size != 0 {
                        ", with initrd"
                    } else {
                        ""
                    },
                    arch::cif_entry_address()
                );
                // papr-fw's own start-up time, from the timebase (bench-boot reads it).
                let us =
                    arch::timebase().wrapping_sub(tb_entry) * 1_000_000 / fw.timebase_hz.max(1);
                log::info!("papr-fw: handing over after {us} us");
                *FIRMWARE.lock() = Some(fw);
                arch::start_client(image.entry, image.initrd.base, image.initrd.size, stack)
            }
            Err(papr_fw::boot::NoKernel::NotGiven) => {
                // No -kernel: boot from a disk (src/diskboot.rs).
                fw.prepare_client(&papr_fw::cif::ClientImage {
                    entry: 0,
                    image: Range::default(),
                    initrd: Range::default(),
                });
                match fw.boot_from_disks(&mut p) {
                    Ok(img) => {
                        let stack = layout.client_stack.end() - 256;
                        let _ = p.write_be64(stack, 0);
                        log::info!(
                            "papr-fw: booting {} at {:#x}, client interface at {:#x}",
                            img.bootpath,
                            img.entry,
                            arch::cif_entry_address()
                        );
                        let us = arch::timebase().wrapping_sub(tb_entry) * 1_000_000
                            / fw.timebase_hz.max(1);
                        log::info!("papr-fw: handing over after {us} us");
                        let (entry, mode) = (img.entry, img.mode);
                        *FIRMWARE.lock() = Some(fw);
                        arch::start_client_mode(entry, 0, 0, stack, mode.sf, mode.le, mode.toc)
                    }
                    Err(why) => log::info!("papr-fw: {why}; powering off"),
                }
            }
            Err(papr_fw::boot::NoKernel::Bad(why)) => {
                log::error!("papr-fw: cannot boot the kernel QEMU loaded: {why}; powering off");
            }
        }
        let _ = papr_fw::platform::power_off(&mut p);
        papr_fw::terminate(&mut p, "papr-fw: power-off failed")
    }

    /// Client-interface calls (boot/client.S).
    #[no_mangle]
    extern "C" fn rust_cif_entry(args: u64) -> i64 {
        let mut p = RealPlatform;
        let mut guard = FIRMWARE.lock();
        let Some(fw) = guard.as_mut() else { return -1 };
        let r = fw.cif_call(&mut p, args);
        if fw.client.exited {
            drop(guard);
            log::error!("papr-fw: the client called exit");
            papr_fw::terminate(&mut p, "papr-fw: client exit");
        }
        r
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        use core::fmt::Write;
        VTY.set_muted(false);
        let mut w = VtyWriter {
            vty: &VTY,
            hv: &mut RealPlatform,
        };
        let _ = writeln!(w, "papr-fw: panic: {info}");
        papr_fw::terminate(&mut RealPlatform, "papr-fw: panic")
    }
}
