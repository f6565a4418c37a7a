//! Device registers through `H_LOGICAL_CI_LOAD` / `H_LOGICAL_CI_STORE`
//! (LoPAPR §14.5.4.10 "Logical Cache-Inhibited Load/Store"; QEMU pseries
//! contract §3.4, pitfall S12).
//!
//! The firmware runs in real mode, where a plain load from a PCI MMIO address
//! is not reachable under KVM (contract S15), so every register access is a
//! hypercall: `H_LOGICAL_CI_LOAD(size, addr)` returns the value in r4,
//! `H_LOGICAL_CI_STORE(size, addr, value)` stores it; size is 1, 2, 4 or 8.
//! The hypervisor performs a *big-endian* access of that width (QEMU uses
//! `ld*_phys`/`st*_phys`, target-endian), so a little-endian device register —
//! every PCI device defined by PCI-SIG or NVM Express — comes back
//! byte-swapped.  [`Mmio`] is the one place that knows: drivers call
//! `read32_le`/`write32_le`/… (or the `_be` forms for big-endian registers)
//! on an offset inside a BAR and never see a hypercall.

use crate::hcall::{op, rc, rc_name, Hypervisor};
use core::fmt;

/// A register access that could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// `offset + size` lies outside the region.
    OutOfRange { offset: u64, size: u64 },
    /// The offset is not a multiple of the access size.
    Unaligned { offset: u64, size: u64 },
    /// The hypervisor refused the access.
    Hcall { addr: u64, opcode: u64, rc: i64 },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmioError::OutOfRange { offset, size } => {
                write!(f, "MMIO access {offset:#x}+{size} outside the region")
            }
            MmioError::Unaligned { offset, size } => {
                write!(f, "MMIO access {offset:#x}+{size} not naturally aligned")
            }
            MmioError::Hcall { addr, opcode, rc } => write!(
                f,
                "{}({addr:#x}) returned {rc} ({})",
                if opcode == op::H_LOGICAL_CI_LOAD {
                    "H_LOGICAL_CI_LOAD"
                } else {
                    "H_LOGICAL_CI_STORE"
                },
                rc_name(rc)
            ),
        }
    }
}

/// A window of device registers: the CPU (logical real) address where a BAR
/// was placed and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    base: u64,
    size: u64,
}

impl Mmio {
    /// The registers at CPU address `base`, `size` bytes.
    pub const fn new(base: u64, size: u64) -> Self {
        Mmio { base, size }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn addr(&self, offset: u64, size: u64) -> Result<u64, MmioError> {
        if !offset.is_multiple_of(size) {
            return Err(MmioError::Unaligned { offset, size });
        }
        match offset.checked_add(size) {
            Some(end) if end <= self.size => Ok(self.base + offset),
            _ => Err(MmioError::OutOfRange { offset, size }),
        }
    }

    /// The value of a big-endian access of `size` bytes at `offset`.
    fn load<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        size: u64,
    ) -> Result<u64, MmioError> {
        let addr = self.addr(offset, size)?;
        let r = h.hcall(op::H_LOGICAL_CI_LOAD, &[size, addr]);
        if r.rc != rc::H_SUCCESS {
            return Err(MmioError::Hcall {
                addr,
                opcode: op::H_LOGICAL_CI_LOAD,
                rc: r.rc,
            });
        }
        // Only the low `size` bytes are the value.
        Ok(if size == 8 {
            r.ret[0]
        } else {
            r.ret[0] & ((1u64 << (8 * size)) - 1)
        })
    }

    /// A big-endian store of the low `size` bytes of `value` at `offset`.
    fn store<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        size: u64,
        value: u64,
    ) -> Result<(), MmioError> {
        let addr = self.addr(offset, size)?;
        let r = h.hcall(op::H_LOGICAL_CI_STORE, &[size, addr, value]);
        if r.rc != rc::H_SUCCESS {
            return Err(MmioError::Hcall {
                addr,
                opcode: op::H_LOGICAL_CI_STORE,
                rc: r.rc,
            });
        }
        Ok(())
    }

    pub fn read8<H: Hypervisor + ?Sized>(&self, h: &mut H, offset: u64) -> Result<u8, MmioError> {
        Ok(self.load(h, offset, 1)? as u8)
    }
    pub fn write8<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u8,
    ) -> Result<(), MmioError> {
        self.store(h, offset, 1, v as u64)
    }

    /// A little-endian 16-bit register.
    pub fn read16_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
    ) -> Result<u16, MmioError> {
        Ok((self.load(h, offset, 2)? as u16).swap_bytes())
    }
    pub fn write16_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u16,
    ) -> Result<(), MmioError> {
        self.store(h, offset, 2, v.swap_bytes() as u64)
    }

    /// A little-endian 32-bit register.
    pub fn read32_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
    ) -> Result<u32, MmioError> {
        Ok((self.load(h, offset, 4)? as u32).swap_bytes())
    }
    pub fn write32_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u32,
    ) -> Result<(), MmioError> {
        self.store(h, offset, 4, v.swap_bytes() as u64)
    }

    /// A little-endian 64-bit register, one 8-byte access.
    pub fn read64_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
    ) -> Result<u64, MmioError> {
        Ok(self.load(h, offset, 8)?.swap_bytes())
    }
    pub fn write64_le<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u64,
    ) -> Result<(), MmioError> {
        self.store(h, offset, 8, v.swap_bytes())
    }

    /// A little-endian 64-bit register as two 32-bit accesses, low half
    /// first (the order NVMe and most PCI devices require when 64-bit
    /// accesses are not guaranteed).
    pub fn read64_le_split<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
    ) -> Result<u64, MmioError> {
        let lo = self.read32_le(h, offset)? as u64;
        let hi = self.read32_le(h, offset + 4)? as u64;
        Ok(hi << 32 | lo)
    }
    pub fn write64_le_split<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u64,
    ) -> Result<(), MmioError> {
        self.write32_le(h, offset, v as u32)?;
        self.write32_le(h, offset + 4, (v >> 32) as u32)
    }

    /// A big-endian 32-bit register (no swap).
    pub fn read32_be<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
    ) -> Result<u32, MmioError> {
        Ok(self.load(h, offset, 4)? as u32)
    }
    pub fn write32_be<H: Hypervisor + ?Sized>(
        &self,
        h: &mut H,
        offset: u64,
        v: u32,
    ) -> Result<(), MmioError> {
        self.store(h, offset, 4, v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcall::HcallReturn;
    use alloc::vec::Vec;

    /// Registers as bytes in device order, accessed the way QEMU's
    /// `ld*_phys`/`st*_phys` do on a big-endian target.
    struct Regs {
        base: u64,
        bytes: [u8; 16],
        log: Vec<(u64, u64, u64)>,
    }

    impl Hypervisor for Regs {
        fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
            let (size, addr) = (args[0] as usize, args[1]);
            let mut ret = [0; 9];
            if ![1, 2, 4, 8].contains(&size) {
                return HcallReturn {
                    rc: rc::H_PARAMETER,
                    ret,
                };
            }
            self.log.push((opcode, size as u64, addr));
            let off = (addr - self.base) as usize;
            match opcode {
                op::H_LOGICAL_CI_LOAD => {
                    let mut v = 0u64;
                    for b in &self.bytes[off..off + size] {
                        v = v << 8 | *b as u64;
                    }
                    ret[0] = v;
                }
                op::H_LOGICAL_CI_STORE => {
                    let v = args[2];
                    for i in 0..size {
                        self.bytes[off + i] = (v >> (8 * (size - 1 - i))) as u8;
                    }
                }
                _ => {
                    return HcallReturn {
                        rc: rc::H_FUNCTION,
                        ret,
                    }
                }
            }
            HcallReturn {
                rc: rc::H_SUCCESS,
                ret,
            }
        }
    }

    fn regs() -> Regs {
        // A little-endian device: register 0 (32-bit) = 0x12345678, register 8
        // (64-bit) = 0x0102030405060708.
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        bytes[8..].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        Regs {
            base: 0x2000_8000_0000,
            bytes,
            log: Vec::new(),
        }
    }

    #[test]
    fn little_endian_registers_are_swapped() {
        let mut h = regs();
        let m = Mmio::new(h.base, 16);
        assert_eq!(m.read32_le(&mut h, 0).unwrap(), 0x1234_5678);
        // The raw big-endian view is what the hypervisor returns.
        assert_eq!(m.read32_be(&mut h, 0).unwrap(), 0x7856_3412);
        assert_eq!(m.read16_le(&mut h, 2).unwrap(), 0x1234);
        assert_eq!(m.read8(&mut h, 0).unwrap(), 0x78);
        assert_eq!(m.read64_le(&mut h, 8).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(m.read64_le_split(&mut h, 8).unwrap(), 0x0102_0304_0506_0708);
        m.write32_le(&mut h, 4, 0xdead_beef).unwrap();
        assert_eq!(&h.bytes[4..8], &[0xef, 0xbe, 0xad, 0xde]);
        let n = h.log.len();
        m.write64_le_split(&mut h, 8, 0x1122_3344_5566_7788)
            .unwrap();
        assert_eq!(h.bytes[8..], 0x1122_3344_5566_7788u64.to_le_bytes());
        // Split accesses: two 4-byte stores, low half first.
        let split: Vec<_> = h.log[n..].iter().map(|e| (e.1, e.2 - h.base)).collect();
        assert_eq!(split, [(4, 8), (4, 12)]);
        m.write16_le(&mut h, 0, 0xabcd).unwrap();
        assert_eq!(&h.bytes[..2], &[0xcd, 0xab]);
        m.write8(&mut h, 3, 0x5a).unwrap();
        assert_eq!(h.bytes[3], 0x5a);
        m.write64_le(&mut h, 8, 0x8877_6655_4433_2211).unwrap();
        assert_eq!(h.bytes[8..], 0x8877_6655_4433_2211u64.to_le_bytes());
    }

    #[test]
    fn bounds_alignment_and_refusals() {
        let mut h = regs();
        let m = Mmio::new(h.base, 16);
        assert_eq!(
            m.read32_le(&mut h, 14),
            Err(MmioError::Unaligned {
                offset: 14,
                size: 4
            })
        );
        assert_eq!(
            m.read32_le(&mut h, 16),
            Err(MmioError::OutOfRange {
                offset: 16,
                size: 4
            })
        );
        assert_eq!(
            m.read64_le(&mut h, u64::MAX - 7),
            Err(MmioError::OutOfRange {
                offset: u64::MAX - 7,
                size: 8
            })
        );
        assert!(h.log.is_empty(), "refused before any hypercall");
        struct No;
        impl Hypervisor for No {
            fn hcall(&mut self, _: u64, _: &[u64]) -> HcallReturn {
                HcallReturn {
                    rc: rc::H_PARAMETER,
                    ret: [0; 9],
                }
            }
        }
        let e = m.write32_le(&mut No, 4, 1).unwrap_err();
        assert_eq!(
            e,
            MmioError::Hcall {
                addr: 0x2000_8000_0004,
                opcode: op::H_LOGICAL_CI_STORE,
                rc: -4
            }
        );
        assert_eq!(
            alloc::format!("{e}"),
            "H_LOGICAL_CI_STORE(0x200080000004) returned -4 (H_PARAMETER)"
        );
    }
}
