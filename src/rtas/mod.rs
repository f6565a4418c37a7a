//! RTAS (Run-Time Abstraction Services, LoPAPR §7).
//!
//! [`call`] invokes the *platform's* RTAS, which QEMU implements behind the
//! private `KVMPPC_H_RTAS` hypercall (QEMU pseries contract §2, §5.1): the
//! argument block — big-endian 32-bit cells `token, nargs, nret, args…, rets…` —
//! is written to physical memory and its address passed in r4.

use crate::hcall::{self, Hypervisor};
use crate::memory::{MemError, Memory};

pub mod ddw;
pub mod policy;
pub mod resident;
pub mod runtime;

/// Largest argument block the firmware builds: 3 header cells + 16 cells.
pub const MAX_CELLS: usize = 16;
/// Bytes an argument block needs.
pub const BLOCK_SIZE: u64 = (3 + MAX_CELLS as u64) * 4;

/// RTAS status codes (LoPAPR §7.2.8 Table 12).
pub mod status {
    pub const SUCCESS: i32 = 0;
    pub const HARDWARE_ERROR: i32 = -1;
    pub const BUSY: i32 = -2;
    pub const PARAMETER_ERROR: i32 = -3;
    /// 9900..9905: "extended delay", retry after 10^(n-9900) ms.
    pub const EXTENDED_DELAY_FIRST: i32 = 9900;
    pub const EXTENDED_DELAY_LAST: i32 = 9905;
}

/// Why an RTAS call could not return a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtasError {
    /// nargs + nret is more than [`MAX_CELLS`].
    TooManyCells,
    /// The argument block could not be written or read back.
    Memory(MemError),
    /// The platform rejected the call itself (QEMU: unknown token gives H_PARAMETER).
    Hcall(hcall::HcallError),
}

impl core::fmt::Display for RtasError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RtasError::TooManyCells => write!(f, "too many RTAS argument cells"),
            RtasError::Memory(e) => write!(f, "RTAS argument block: {e}"),
            RtasError::Hcall(e) => write!(f, "H_RTAS: {e}"),
        }
    }
}

impl From<MemError> for RtasError {
    fn from(e: MemError) -> Self {
        RtasError::Memory(e)
    }
}

/// Call platform RTAS `token` with `args`, using the block at physical `block`.
/// `rets` receives all return cells (`rets[0]` is the status, also returned).
pub fn call<P: Hypervisor + Memory + ?Sized>(
    p: &mut P,
    block: u64,
    token: u32,
    args: &[u32],
    rets: &mut [u32],
) -> Result<i32, RtasError> {
    if args.len() + rets.len() > MAX_CELLS || rets.is_empty() {
        return Err(RtasError::TooManyCells);
    }
    p.write_be32(block, token)?;
    p.write_be32(block + 4, args.len() as u32)?;
    p.write_be32(block + 8, rets.len() as u32)?;
    for (i, a) in args.iter().enumerate() {
        p.write_be32(block + 12 + 4 * i as u64, *a)?;
    }
    let rets_at = block + 12 + 4 * args.len() as u64;
    for i in 0..rets.len() {
        p.write_be32(rets_at + 4 * i as u64, 0)?;
    }
    p.hcall_ok(hcall::op::KVMPPC_H_RTAS, &[block])
        .map_err(RtasError::Hcall)?;
    for (i, r) in rets.iter_mut().enumerate() {
        *r = p.read_be32(rets_at + 4 * i as u64)?;
    }
    Ok(rets[0] as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcall::HcallReturn;
    use crate::memory::FakeMemory;

    struct Plat {
        mem: FakeMemory,
        seen: Option<(u32, u32, u32, u32)>,
    }
    impl Memory for Plat {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), MemError> {
            self.mem.read(a, b)
        }
        fn write(&mut self, a: u64, d: &[u8]) -> Result<(), MemError> {
            self.mem.write(a, d)
        }
    }
    impl Hypervisor for Plat {
        fn hcall(&mut self, op: u64, args: &[u64]) -> HcallReturn {
            assert_eq!(op, 0xf000);
            let b = args[0];
            let token = self.mem.read_be32(b).unwrap();
            if token != 0x2016 {
                self.mem.write_be32(b + 12 + 16, (-3i32) as u32).unwrap();
                return HcallReturn {
                    rc: -4,
                    ret: [0; 9],
                };
            }
            let nargs = self.mem.read_be32(b + 4).unwrap();
            let nret = self.mem.read_be32(b + 8).unwrap();
            let a0 = self.mem.read_be32(b + 12).unwrap();
            let size = self.mem.read_be32(b + 24).unwrap();
            self.seen = Some((nargs, nret, a0, size));
            let r = b + 12 + 4 * nargs as u64;
            self.mem.write_be32(r, 0).unwrap();
            self.mem.write_be32(r + 4, 0x1af41000).unwrap();
            HcallReturn::default()
        }
    }

    #[test]
    fn block_layout_matches_qemu() {
        let mut p = Plat {
            mem: FakeMemory::new().with_region(0x4000, 0x100),
            seen: None,
        };
        let mut rets = [0; 2];
        // ibm,read-pci-config(cfg 0x1000, BUID hi/lo, size 4): the vendor/device of 00:02.0.
        let st = call(
            &mut p,
            0x4000,
            0x2016,
            &[0x1000, 0x0800_0000, 0x2000_0000, 4],
            &mut rets,
        )
        .unwrap();
        assert_eq!(st, 0);
        assert_eq!(rets, [0, 0x1af41000]);
        assert_eq!(p.seen, Some((4, 2, 0x1000, 4)));
        assert_eq!(
            call(&mut p, 0x4000, 0x1234, &[], &mut rets),
            Err(RtasError::Hcall(hcall::HcallError {
                opcode: 0xf000,
                rc: -4
            }))
        );
        assert_eq!(
            call(&mut p, 0x4000, 1, &[0; 16], &mut rets),
            Err(RtasError::TooManyCells)
        );
        assert!(matches!(
            call(&mut p, 0x40f0, 0x2016, &[0; 4], &mut rets),
            Err(RtasError::Memory(_))
        ));
    }
}
