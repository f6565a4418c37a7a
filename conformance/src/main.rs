//! The conformance client as a program papr-fw boots (`-kernel`): the
//! target's [`Machine`](conformance::Machine) — real memory, `sc 1`, and
//! calls into the firmware through `src/entry.S` — then the suite, then
//! `power-off` or `ibm,os-term`.  On the host this binary does nothing; the
//! suite runs against papr-fw's fake platform in `tests/host.rs`.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("conformance is a client program for papr-fw; qemu-tests builds it for the target");
}

#[cfg(target_os = "none")]
mod target {
    use conformance::{Entry, Machine, Mode, Suite};
    use core::arch::{asm, global_asm};
    use core::sync::atomic::{compiler_fence, Ordering};

    global_asm!(include_str!("entry.S"));

    extern "C" {
        fn conf_call(entry: u64, a0: u64, a1: u64, mode32: u64) -> u64;
        fn conf_secondary();
        static __image_start: u8;
        static __image_end: u8;
    }

    #[global_allocator]
    static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    const HEAP_SIZE: usize = 4 << 20;
    #[repr(C, align(4096))]
    struct Space<const N: usize>([u8; N]);
    static mut HEAP_SPACE: Space<HEAP_SIZE> = Space([0; HEAP_SIZE]);
    const ARENA_SIZE: usize = conformance::arena::SIZE as usize;
    #[repr(C, align(65536))]
    struct Arena([u8; ARENA_SIZE]);
    static mut ARENA: Arena = Arena([0; ARENA_SIZE]);

    struct Target {
        ram_top: u64,
    }

    impl Target {
        fn ok(&self, addr: u64, len: usize) -> bool {
            addr.checked_add(len as u64)
                .is_some_and(|end| end <= self.ram_top && end <= 1 << 32)
        }
    }

    impl Machine for Target {
        fn cif(&mut self, entry: u64, args: u64, mode: Mode) -> u32 {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: `entry` is the client-interface entry papr-fw passed in
            // r5; conf_call saves and restores everything the ABI preserves.
            let r = unsafe { conf_call(entry, args, 0, (mode == Mode::Bits32) as u64) };
            compiler_fence(Ordering::SeqCst);
            r as u32
        }

        fn rtas(&mut self, entry: u64, base: u64, args: u64, mode: Mode) {
            compiler_fence(Ordering::SeqCst);
            // SAFETY: `entry` is what instantiate-rtas returned; called as
            // Linux's enter_rtas does (r3 = block, r4 = base).
            unsafe { conf_call(entry, args, base, (mode == Mode::Bits32) as u64) };
            compiler_fence(Ordering::SeqCst);
        }

        fn hcall(&mut self, opcode: u64, args: &[u64]) -> (i64, [u64; 4]) {
            let mut a = [0u64; 6];
            let n = args.len().min(6);
            a[..n].copy_from_slice(&args[..n]);
            let rc: u64;
            // SAFETY: `sc 1` enters the hypervisor, which reads and writes
            // only the registers named here and memory the arguments name.
            unsafe {
                asm!(
                    "sc 1",
                    inlateout("r3") opcode => rc,
                    inlateout("r4") a[0] => a[0],
                    inlateout("r5") a[1] => a[1],
                    inlateout("r6") a[2] => a[2],
                    inlateout("r7") a[3] => a[3],
                    inlateout("r8") a[4] => _,
                    inlateout("r9") a[5] => _,
                    lateout("r10") _, lateout("r11") _, lateout("r12") _,
                    lateout("r0") _, lateout("ctr") _, lateout("xer") _,
                    lateout("cr0") _, lateout("cr1") _, lateout("cr5") _,
                    lateout("cr6") _, lateout("cr7") _,
                    options(nostack),
                );
            }
            (rc as i64, [a[0], a[1], a[2], a[3]])
        }

        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            if !self.ok(addr, buf.len()) {
                return false;
            }
            compiler_fence(Ordering::SeqCst);
            for (i, b) in buf.iter_mut().enumerate() {
                // SAFETY: real mode, EA = physical address, checked to be RAM.
                *b = unsafe { core::ptr::read_volatile((addr as usize + i) as *const u8) };
            }
            true
        }

        fn write(&mut self, addr: u64, data: &[u8]) -> bool {
            if !self.ok(addr, data.len()) {
                return false;
            }
            for (i, b) in data.iter().enumerate() {
                // SAFETY: as in `read`; the suite writes only its own memory
                // (its arena, memory it claimed, the RTAS area it was given).
                unsafe { core::ptr::write_volatile((addr as usize + i) as *mut u8, *b) };
            }
            compiler_fence(Ordering::SeqCst);
            true
        }

        fn timebase(&mut self) -> u64 {
            let tb: u64;
            // SAFETY: reading the timebase has no side effects.
            unsafe { asm!("mftb {0}", out(reg) tb, options(nomem, nostack)) };
            tb
        }

        fn arena(&self) -> (u64, u64) {
            (core::ptr::addr_of!(ARENA) as u64, ARENA_SIZE as u64)
        }

        fn image(&self) -> (u64, u64) {
            // Only the addresses of the linker-defined symbols are taken.
            let (s, e) = (
                core::ptr::addr_of!(__image_start) as u64,
                core::ptr::addr_of!(__image_end) as u64,
            );
            (s, e - s)
        }

        fn set_ram_top(&mut self, top: u64) {
            if top != 0 {
                self.ram_top = top;
            }
        }

        fn secondary_entry(&self) -> Option<u64> {
            Some(conf_secondary as *const () as u64)
        }
    }

    #[no_mangle]
    extern "C" fn conformance_main(r3: u64, r4: u64, r5: u64, r1: u64, msr: u64) -> ! {
        // SAFETY: the heap space is this image's own .bss, handed over once
        // before any allocation.
        unsafe {
            HEAP.lock()
                .init(core::ptr::addr_of_mut!(HEAP_SPACE) as *mut u8, HEAP_SIZE)
        };
        let mut t = Target { ram_top: 128 << 20 };
        let entry = Entry {
            r3,
            r4,
            cif: r5,
            stack: r1,
            msr,
        };
        let mut s = Suite::new(&mut t, entry);
        s.run();
        s.finish();
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        use core::fmt::Write;
        struct Out(Target);
        impl core::fmt::Write for Out {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                for chunk in s.as_bytes().chunks(8) {
                    let mut b = [0u8; 8];
                    b[..chunk.len()].copy_from_slice(chunk);
                    self.0
                        .hcall(0x58, &[0, chunk.len() as u64, u64::from_be_bytes(b), 0]);
                }
                Ok(())
            }
        }
        let mut o = Out(Target { ram_top: 128 << 20 });
        let _ = write!(o, "\r\nconformance: panic: {info}\r\n");
        // ibm,os-term with QEMU's token (the tree may not have been read).
        let block = [0x201fu32, 1, 1, 0, 0];
        let mut bytes = [0u8; 20];
        for (i, w) in block.iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        let (base, _) = o.0.arena();
        o.0.write(base, &bytes);
        o.0.hcall(0xf000, &[base]);
        loop {
            core::hint::spin_loop();
        }
    }
}
