//! Reporting unexpected interrupts (Power ISA 3.x Book III §7: interrupt
//! vectors, SRR0/SRR1, DAR/DSISR).  `boot/vectors.S` saves the machine state in
//! an [`ExceptionFrame`]; [`report`] turns it into console lines, including a
//! walk of the ELFv2 back chain (each frame's word 0 points to its caller's
//! frame, whose LR save doubleword at +16 is a return address).

use crate::memory::{Memory, Range};
use core::fmt::{self, Write};

/// Register state saved by `exc_common` (layout shared with boot/vectors.S).
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct ExceptionFrame {
    pub gpr: [u64; 32],
    pub vector: u64,
    pub srr0: u64,
    pub srr1: u64,
    pub dar: u64,
    pub dsisr: u64,
    pub lr: u64,
    pub ctr: u64,
    pub cr: u64,
    pub xer: u64,
    pub msr: u64,
}

/// The architected name of an interrupt vector.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        0x100 => "System Reset",
        0x200 => "Machine Check",
        0x300 => "Data Storage",
        0x380 => "Data Segment",
        0x400 => "Instruction Storage",
        0x480 => "Instruction Segment",
        0x500 => "External",
        0x600 => "Alignment",
        0x700 => "Program",
        0x800 => "Floating-Point Unavailable",
        0x900 => "Decrementer",
        0x980 => "Hypervisor Decrementer",
        0xa00 => "Directed Privileged Doorbell",
        0xc00 => "System Call",
        0xd00 => "Trace",
        0xe00 => "Hypervisor Data Storage",
        0xe20 => "Hypervisor Instruction Storage",
        0xe40 => "Hypervisor Emulation Assistance",
        0xe60 => "Hypervisor Maintenance",
        0xe80 => "Directed Hypervisor Doorbell",
        0xea0 => "Hypervisor Virtualization",
        0xf00 => "Performance Monitor",
        0xf20 => "Vector Unavailable",
        0xf40 => "VSX Unavailable",
        0xf60 => "Facility Unavailable",
        0xf80 => "Hypervisor Facility Unavailable",
        0x1500 => "Soft Patch",
        0x1600 => "Denormalisation",
        0x1700 => "Vector Assist",
        _ => "Reserved",
    }
}

/// Most frames a backtrace prints.
pub const MAX_FRAMES: usize = 16;

/// Return addresses found by walking the back chain from `sp`, staying inside
/// `stack` (so a corrupt chain ends the walk instead of faulting again).
pub fn backtrace<M: Memory + ?Sized>(mem: &M, stack: Range, sp: u64, out: &mut [u64]) -> usize {
    let mut n = 0;
    let mut sp = sp;
    while n < out.len() {
        if !sp.is_multiple_of(16) || !stack.contains(sp, 8) {
            break;
        }
        let Ok(caller) = mem.read_be64(sp) else { break };
        if caller <= sp || !stack.contains(caller, 24) {
            break;
        }
        let Ok(lr) = mem.read_be64(caller + 16) else {
            break;
        };
        if lr == 0 {
            break;
        }
        out[n] = lr;
        n += 1;
        sp = caller;
    }
    n
}

/// Write the report for `f` to `w`.
pub fn report<W: Write, M: Memory + ?Sized>(
    w: &mut W,
    f: &ExceptionFrame,
    mem: &M,
    stack: Range,
) -> fmt::Result {
    writeln!(
        w,
        "papr-fw: unexpected interrupt {:#x} ({})",
        f.vector,
        vector_name(f.vector)
    )?;
    writeln!(
        w,
        "  SRR0 {:016x}  SRR1 {:016x}  DAR {:016x}  DSISR {:08x}",
        f.srr0, f.srr1, f.dar, f.dsisr
    )?;
    writeln!(
        w,
        "  LR   {:016x}  CTR  {:016x}  CR  {:08x}  XER {:08x}  MSR {:016x}",
        f.lr, f.ctr, f.cr, f.xer, f.msr
    )?;
    for row in 0..8 {
        write!(w, " ")?;
        for col in 0..4 {
            let r = row * 4 + col;
            write!(w, " r{:<2} {:016x}", r, f.gpr[r])?;
        }
        writeln!(w)?;
    }
    let mut frames = [0u64; MAX_FRAMES];
    let n = backtrace(mem, stack, f.gpr[1], &mut frames);
    write!(w, "  call chain: {:x} {:x}", f.srr0, f.lr)?;
    for lr in &frames[..n] {
        write!(w, " {lr:x}")?;
    }
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use alloc::string::String;

    #[test]
    fn report_names_vector_and_walks_chain() {
        let mut m = FakeMemory::new().with_region(0x10000, 0x1000);
        // Three frames: 0x10100 -> 0x10200 -> 0x10300 -> 0 (end).
        m.write_be64(0x10100, 0x10200).unwrap();
        m.write_be64(0x10200 + 16, 0x2abc).unwrap();
        m.write_be64(0x10200, 0x10300).unwrap();
        m.write_be64(0x10300 + 16, 0x2def).unwrap();
        m.write_be64(0x10300, 0).unwrap();
        let mut f = ExceptionFrame {
            vector: 0x300,
            srr0: 0x2100,
            dar: 0xdead0000,
            ..Default::default()
        };
        f.gpr[1] = 0x10100;
        f.lr = 0x2200;
        let mut s = String::new();
        report(&mut s, &f, &m, Range::new(0x10000, 0x1000)).unwrap();
        assert!(
            s.starts_with("papr-fw: unexpected interrupt 0x300 (Data Storage)\n"),
            "{s}"
        );
        assert!(s.contains("DAR 00000000dead0000"), "{s}");
        assert!(s.contains("call chain: 2100 2200 2abc 2def\n"), "{s}");
    }

    #[test]
    fn corrupt_chains_stop() {
        let mut m = FakeMemory::new().with_region(0x10000, 0x1000);
        // Points backwards (a loop): must stop at once.
        m.write_be64(0x10100, 0x10100).unwrap();
        let mut out = [0; 4];
        assert_eq!(
            backtrace(&m, Range::new(0x10000, 0x1000), 0x10100, &mut out),
            0
        );
        // Points outside the stack.
        m.write_be64(0x10100, 0x90000).unwrap();
        assert_eq!(
            backtrace(&m, Range::new(0x10000, 0x1000), 0x10100, &mut out),
            0
        );
        // Misaligned or outside.
        assert_eq!(
            backtrace(&m, Range::new(0x10000, 0x1000), 0x10104, &mut out),
            0
        );
        assert_eq!(backtrace(&m, Range::new(0x10000, 0x1000), 0, &mut out), 0);
        assert_eq!(vector_name(0xb00), "Reserved");
    }
}
