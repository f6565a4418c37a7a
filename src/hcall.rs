//! PAPR hypercalls (LoPAPR §14; QEMU pseries contract §2, §3).
//!
//! The firmware talks to the hypervisor only through the [`Hypervisor`] trait:
//! on the target it is `sc 1` (`arch::hcall`), in host tests a fake platform.
//! This module holds the opcodes and return codes as PAPR and QEMU name them,
//! and typed wrappers that turn register conventions into Rust values.

/// Hypercall opcodes (LoPAPR Table 244 and QEMU's private KVMPPC range).
pub mod op {
    pub const H_GET_TCE: u64 = 0x1c;
    pub const H_PUT_TCE: u64 = 0x20;
    pub const H_LOGICAL_CI_LOAD: u64 = 0x3c;
    pub const H_LOGICAL_CI_STORE: u64 = 0x40;
    pub const H_GET_TERM_CHAR: u64 = 0x54;
    pub const H_PUT_TERM_CHAR: u64 = 0x58;
    pub const H_CEDE: u64 = 0xe0;
    pub const H_STUFF_TCE: u64 = 0x138;
    pub const H_PUT_TCE_INDIRECT: u64 = 0x13c;
    pub const H_RANDOM: u64 = 0x300;
    pub const H_SET_MODE: u64 = 0x31c;
    /// QEMU: run an RTAS call whose argument block is at r4 (physical).
    pub const KVMPPC_H_RTAS: u64 = 0xf000;
    pub const KVMPPC_H_LOGICAL_MEMOP: u64 = 0xf001;
    /// QEMU: client-architecture-support (vector, buffer, buffer size).
    pub const KVMPPC_H_CAS: u64 = 0xf002;
    /// QEMU: replace the platform's copy of the device tree (physical address of an FDT).
    pub const KVMPPC_H_UPDATE_DT: u64 = 0xf003;
}

/// Hypercall return codes (LoPAPR §14.5.3; include/hw/ppc/spapr.h).
pub mod rc {
    pub const H_SUCCESS: i64 = 0;
    pub const H_BUSY: i64 = 1;
    pub const H_HARDWARE: i64 = -1;
    pub const H_FUNCTION: i64 = -2;
    pub const H_PRIVILEGE: i64 = -3;
    pub const H_PARAMETER: i64 = -4;
    pub const H_CONSTRAINED: i64 = -39;
    pub const H_NOT_ENOUGH_RESOURCES: i64 = -44;
    pub const H_MULTI_THREADS_ACTIVE: i64 = -9005;
    pub const H_LONG_BUSY_START: i64 = 9900;
    pub const H_LONG_BUSY_END: i64 = 9905;
}

/// The name PAPR gives a return code, for messages.
pub fn rc_name(rc: i64) -> &'static str {
    match rc {
        rc::H_SUCCESS => "H_SUCCESS",
        rc::H_BUSY => "H_BUSY",
        rc::H_HARDWARE => "H_HARDWARE",
        rc::H_FUNCTION => "H_FUNCTION",
        rc::H_PRIVILEGE => "H_PRIVILEGE",
        rc::H_PARAMETER => "H_PARAMETER",
        rc::H_CONSTRAINED => "H_CONSTRAINED",
        rc::H_NOT_ENOUGH_RESOURCES => "H_NOT_ENOUGH_RESOURCES",
        rc::H_MULTI_THREADS_ACTIVE => "H_MULTI_THREADS_ACTIVE",
        -62..=-55 => "H_Pn",
        rc::H_LONG_BUSY_START..=rc::H_LONG_BUSY_END => "H_LONG_BUSY",
        _ => "H_?",
    }
}

/// Register state after `sc 1`: r3 and the output registers r4..r12.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcallReturn {
    pub rc: i64,
    pub ret: [u64; 9],
}

/// A failed hypercall: the opcode and the PAPR return code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HcallError {
    pub opcode: u64,
    pub rc: i64,
}

impl core::fmt::Display for HcallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "hcall {:#x} returned {} ({})",
            self.opcode,
            self.rc,
            rc_name(self.rc)
        )
    }
}

/// The hypervisor as the firmware sees it.
pub trait Hypervisor {
    /// Issue hypercall `opcode` with `args` in r4.. (at most 9); return r3 and r4..r12.
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn;

    /// `hcall` that maps any code other than H_SUCCESS to an error.
    fn hcall_ok(&mut self, opcode: u64, args: &[u64]) -> Result<[u64; 9], HcallError> {
        let r = self.hcall(opcode, args);
        if r.rc == rc::H_SUCCESS {
            Ok(r.ret)
        } else {
            Err(HcallError { opcode, rc: r.rc })
        }
    }
}

impl<H: Hypervisor + ?Sized> Hypervisor for &mut H {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        (**self).hcall(opcode, args)
    }
}

/// H_PUT_TERM_CHAR: write up to 16 bytes to virtual terminal `vtermno`.
/// The bytes travel in r6/r7, first byte in the most significant byte of r6.
pub fn put_term_chars<H: Hypervisor + ?Sized>(
    hv: &mut H,
    vtermno: u64,
    bytes: &[u8],
) -> Result<(), HcallError> {
    debug_assert!(bytes.len() <= 16);
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    let hi = u64::from_be_bytes(buf[..8].try_into().unwrap());
    let lo = u64::from_be_bytes(buf[8..].try_into().unwrap());
    hv.hcall_ok(op::H_PUT_TERM_CHAR, &[vtermno, bytes.len() as u64, hi, lo])
        .map(|_| ())
}

/// H_GET_TERM_CHAR: read up to 16 pending bytes from `vtermno` into `out`;
/// returns how many arrived (0 when none is pending).
pub fn get_term_chars<H: Hypervisor + ?Sized>(
    hv: &mut H,
    vtermno: u64,
    out: &mut [u8; 16],
) -> Result<usize, HcallError> {
    let r = hv.hcall_ok(op::H_GET_TERM_CHAR, &[vtermno])?;
    let n = (r[0] as usize).min(16);
    out[..8].copy_from_slice(&r[1].to_be_bytes());
    out[8..].copy_from_slice(&r[2].to_be_bytes());
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    struct Recorder(Vec<(u64, Vec<u64>)>);
    impl Hypervisor for Recorder {
        fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
            self.0.push((opcode, args.to_vec()));
            let mut ret = [0; 9];
            if opcode == op::H_GET_TERM_CHAR {
                ret[0] = 3;
                ret[1] = 0x6f6b0a0000000000;
            }
            HcallReturn { rc: 0, ret }
        }
    }

    #[test]
    fn term_chars_are_packed_big_endian_first() {
        let mut r = Recorder(Vec::new());
        put_term_chars(&mut r, 0x71000000, b"Hello, pseries!!").unwrap();
        put_term_chars(&mut r, 0, b"Hi\n").unwrap();
        assert_eq!(
            r.0[0],
            (
                op::H_PUT_TERM_CHAR,
                alloc::vec![0x71000000, 16, 0x48656c6c6f2c2070, 0x7365726965732121]
            )
        );
        // The exact register value QEMU 7.2 was seen to print as "Hi\n".
        assert_eq!(r.0[1].1, alloc::vec![0, 3, 0x48690a0000000000, 0]);
        let mut buf = [0; 16];
        assert_eq!(get_term_chars(&mut r, 0, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"ok\n");
    }

    #[test]
    fn errors_carry_opcode_and_name() {
        struct Fail;
        impl Hypervisor for Fail {
            fn hcall(&mut self, _: u64, _: &[u64]) -> HcallReturn {
                HcallReturn {
                    rc: rc::H_PARAMETER,
                    ret: [0; 9],
                }
            }
        }
        let e = put_term_chars(&mut Fail, 5, b"x").unwrap_err();
        assert_eq!(
            e,
            HcallError {
                opcode: 0x58,
                rc: -4
            }
        );
        assert_eq!(
            alloc::format!("{e}"),
            "hcall 0x58 returned -4 (H_PARAMETER)"
        );
    }
}
