//! `ibm,client-architecture-support` (LoPAPR §B.5 "Client Architecture Support";
//! QEMU pseries contract §2.1; Linux prom_init `prom_send_capabilities`).
//!
//! The client passes the IBM architecture vector: BE32 `(pvr_mask, pvr)` pairs
//! ended by a pair with `~mask & pvr != 0` (at most 512 pairs, as QEMU scans),
//! then a byte "number of option vectors − 1", then each option vector as a
//! byte "length − 1" and its bytes.  papr-fw parses it (bounded, from client
//! memory that may be garbage), refuses requests QEMU would answer by exiting
//! (hash *and* radix, both interrupt modes, a mode the platform's
//! `ibm,arch-vec-5-platform-support` does not offer), and otherwise passes the
//! vector to the platform with H_CAS.  Option-vector bytes are numbered from 1
//! (byte 0 is the length), as LoPAPR, QEMU (`OV_BIT`) and Linux (`OV5_INDX`) do.

use crate::memory::{MemError, Memory};
use alloc::vec::Vec;
use core::fmt;

/// QEMU scans at most this many PVR pairs.
pub const MAX_PVR_PAIRS: usize = 512;

/// OV5 byte 23: interrupt controller.  0x80 = both (invalid), 0x40 = XIVE exploitation.
pub const OV5_INTC: usize = 23;
/// OV5 byte 24: MMU.  0x80 = both (invalid), 0x40 = radix (else hash).
pub const OV5_MMU: usize = 24;
pub const OV5_BOTH: u8 = 0x80;
pub const OV5_SECOND: u8 = 0x40;

/// A parsed architecture vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchVector {
    pub pvrs: Vec<(u32, u32)>,
    /// Option vectors 1..=n (index 0 is OV1), without their length bytes.
    pub vectors: Vec<Vec<u8>>,
    /// Bytes the vector occupies from its start.
    pub len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasError {
    /// The vector is not readable client memory.
    BadAddress(MemError),
    /// OV1 or OV5 is missing (QEMU answers H_PARAMETER).
    MissingVector(u8),
    /// A request QEMU would exit on, or the platform does not support.
    Refused(&'static str),
    /// The platform's H_CAS failed.
    Hcall(i64),
    /// The tree the platform returned could not be used.
    BadReply(&'static str),
}

impl fmt::Display for CasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CasError::BadAddress(e) => write!(f, "architecture vector unreadable: {e}"),
            CasError::MissingVector(n) => write!(f, "option vector {n} missing"),
            CasError::Refused(why) => write!(f, "refused: {why}"),
            CasError::Hcall(rc) => {
                write!(f, "H_CAS returned {rc} ({})", crate::hcall::rc_name(*rc))
            }
            CasError::BadReply(why) => write!(f, "bad CAS reply: {why}"),
        }
    }
}

impl ArchVector {
    /// Parse the vector at `addr` in client memory.
    pub fn parse<M: Memory + ?Sized>(mem: &M, addr: u64) -> Result<Self, CasError> {
        let rd8 = |a: u64| mem.read_u8(a).map_err(CasError::BadAddress);
        let mut at = addr;
        let mut pvrs = Vec::new();
        for _ in 0..MAX_PVR_PAIRS {
            let mask = mem.read_be32(at).map_err(CasError::BadAddress)?;
            let pvr = mem.read_be32(at + 4).map_err(CasError::BadAddress)?;
            at += 8;
            if !mask & pvr != 0 {
                break;
            }
            pvrs.push((mask, pvr));
        }
        let count = rd8(at)? as usize + 1;
        at += 1;
        let mut vectors = Vec::with_capacity(count);
        for _ in 0..count {
            let len = rd8(at)? as usize + 1;
            let mut v = alloc::vec![0u8; len];
            mem.read(at + 1, &mut v).map_err(CasError::BadAddress)?;
            vectors.push(v);
            at += 1 + len as u64;
        }
        Ok(ArchVector {
            pvrs,
            vectors,
            len: at - addr,
        })
    }

    /// Byte `n` (1-based) of option vector `v` (1-based), 0 when absent.
    pub fn byte(&self, v: usize, n: usize) -> u8 {
        self.vectors
            .get(v.wrapping_sub(1))
            .and_then(|ov| ov.get(n.wrapping_sub(1)))
            .copied()
            .unwrap_or(0)
    }

    /// Whether the client asks for the radix MMU.
    pub fn wants_radix(&self) -> bool {
        self.byte(5, OV5_MMU) & OV5_SECOND != 0
    }

    /// Whether the client asks for XIVE exploitation mode.
    pub fn wants_xive(&self) -> bool {
        self.byte(5, OV5_INTC) & OV5_SECOND != 0
    }

    /// Check the request against what the platform offers; `Err(Refused)` for
    /// anything that would make QEMU exit.
    pub fn check(&self, support: &PlatformSupport) -> Result<(), CasError> {
        if self.vectors.is_empty() {
            return Err(CasError::MissingVector(1));
        }
        if self.vectors.len() < 5 {
            return Err(CasError::MissingVector(5));
        }
        let mmu = self.byte(5, OV5_MMU);
        if mmu & OV5_BOTH != 0 {
            return Err(CasError::Refused("hash and radix MMU both requested"));
        }
        let intc = self.byte(5, OV5_INTC);
        if intc & OV5_BOTH != 0 {
            return Err(CasError::Refused("both interrupt modes requested"));
        }
        if let Some(s) = support.mmu {
            match (s & 0xc0, self.wants_radix()) {
                (0x00, true) => {
                    return Err(CasError::Refused(
                        "radix MMU requested, platform offers hash only",
                    ))
                }
                (0x40, false) => {
                    return Err(CasError::Refused(
                        "hash MMU requested, platform offers radix only",
                    ))
                }
                _ => {}
            }
        }
        if let Some(s) = support.intc {
            match (s & 0xc0, self.wants_xive()) {
                (0x00, true) => {
                    return Err(CasError::Refused(
                        "XIVE requested, platform offers XICS only",
                    ))
                }
                (0x40, false) => {
                    return Err(CasError::Refused(
                        "XICS requested, platform offers XIVE only",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What `/chosen/ibm,arch-vec-5-platform-support` says the platform offers:
/// (OV5 byte index, value) pairs (Linux `prom_check_platform_support`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlatformSupport {
    /// Byte 24: 0x00 hash only, 0x40 radix only, 0x80 either, 0xC0 either, switchable.
    pub mmu: Option<u8>,
    /// Byte 23: 0x00 XICS only, 0x40 XIVE only, 0x80 either.
    pub intc: Option<u8>,
}

impl PlatformSupport {
    pub fn from_property(prop: &[u8]) -> Self {
        let mut s = PlatformSupport::default();
        for pair in prop.chunks_exact(2) {
            match pair[0] as usize {
                OV5_MMU => s.mmu = Some(pair[1]),
                OV5_INTC => s.intc = Some(pair[1]),
                _ => {}
            }
        }
        s
    }
}

/// How much of a reply buffer of `buf_size` bytes to read, from its first 12
/// bytes (update header, the tree's magic and totalsize): the header and the
/// tree, never less than those 12 bytes nor more than the buffer (so
/// [`reply_fdt`] still sees a tree that claims to be larger than the buffer).
pub fn reply_len(head: &[u8; 12], buf_size: u64) -> u64 {
    let total = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as u64;
    (4 + total).clamp(head.len() as u64, buf_size)
}

/// The reply QEMU writes at the CAS buffer: a 4-byte header whose
/// `version_id` (1) is in the *host's* byte order (contract S3), then a packed
/// FDT.  Returns the FDT bytes.
pub fn reply_fdt(buf: &[u8]) -> Result<&[u8], CasError> {
    if buf.len() < 4 + 40 {
        return Err(CasError::BadReply("shorter than a header"));
    }
    let v = [buf[0], buf[1], buf[2], buf[3]];
    if u32::from_be_bytes(v) != 1 && u32::from_le_bytes(v) != 1 {
        return Err(CasError::BadReply("unknown update header version"));
    }
    let fdt = &buf[4..];
    if fdt[..4] != [0xd0, 0x0d, 0xfe, 0xed] {
        return Err(CasError::BadReply("no device tree after the header"));
    }
    let total = u32::from_be_bytes([fdt[4], fdt[5], fdt[6], fdt[7]]) as usize;
    fdt.get(..total)
        .ok_or(CasError::BadReply("tree larger than the buffer"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    /// An architecture vector shaped like Linux's (`struct ibm_arch_vec`):
    /// PVR pairs, terminator, "6 vectors" and 7 present, OV5 of 26 bytes.
    pub fn linux_like(mmu: u8, intc: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for (m, p) in [
            (0xffff0000u32, 0x004e0000u32),
            (0xffffffff, 0x0f000005),
            (0, 0xffffffff),
        ] {
            v.extend_from_slice(&m.to_be_bytes());
            v.extend_from_slice(&p.to_be_bytes());
        }
        v.push(6 - 1);
        let vecs: [Vec<u8>; 7] = [
            alloc::vec![0xff, 0xff, 0x80], // OV1
            alloc::vec![0; 20],
            alloc::vec![0xe0, 0],
            alloc::vec![0; 4],
            {
                let mut ov5 = alloc::vec![0u8; 26];
                ov5[OV5_INTC - 1] = intc;
                ov5[OV5_MMU - 1] = mmu;
                ov5
            },
            alloc::vec![0, 0, 0],
            alloc::vec![b'L'; 256],
        ];
        for ov in &vecs {
            v.push((ov.len() - 1) as u8);
            v.extend_from_slice(ov);
        }
        v
    }

    #[test]
    fn parses_linux_shape_and_trusts_the_count() {
        let bytes = linux_like(0x40, 0x40);
        let mut m = FakeMemory::new().with_region(0x1000, 0x1000);
        m.write(0x1000, &bytes).unwrap();
        let v = ArchVector::parse(&m, 0x1000).unwrap();
        assert_eq!(v.pvrs.len(), 2);
        assert_eq!(v.vectors.len(), 6, "the 7th (OS id) vector is not counted");
        assert!(v.wants_radix() && v.wants_xive());
        assert_eq!(v.len, bytes.len() as u64 - 257);
        // POWER9 under TCG: either MMU, either interrupt controller.
        let qemu =
            PlatformSupport::from_property(&[0x17, 0x80, 0x18, 0xc0, 0x19, 0x00, 0x1a, 0x40]);
        assert_eq!(
            qemu,
            PlatformSupport {
                mmu: Some(0xc0),
                intc: Some(0x80)
            }
        );
        assert_eq!(v.check(&qemu), Ok(()));
    }

    #[test]
    fn refuses_what_qemu_would_exit_on() {
        let support = PlatformSupport {
            mmu: Some(0x00),
            intc: Some(0x00),
        };
        let check = |mmu, intc, s: &PlatformSupport| {
            let mut m = FakeMemory::new().with_region(0, 0x1000);
            m.write(0, &linux_like(mmu, intc)).unwrap();
            ArchVector::parse(&m, 0).unwrap().check(s)
        };
        assert!(matches!(
            check(0xc0, 0, &PlatformSupport::default()),
            Err(CasError::Refused(_))
        ));
        assert!(matches!(
            check(0, 0xc0, &PlatformSupport::default()),
            Err(CasError::Refused(_))
        ));
        assert!(
            matches!(check(0x40, 0, &support), Err(CasError::Refused(_))),
            "POWER8: hash only"
        );
        assert!(matches!(
            check(0, 0x40, &support),
            Err(CasError::Refused(_))
        ));
        assert_eq!(check(0, 0, &support), Ok(()));
        let radix_only = PlatformSupport {
            mmu: Some(0x40),
            intc: Some(0x40),
        };
        assert!(matches!(
            check(0, 0x40, &radix_only),
            Err(CasError::Refused(_))
        ));
        assert!(matches!(
            check(0x40, 0, &radix_only),
            Err(CasError::Refused(_))
        ));
    }

    #[test]
    fn hostile_vectors_are_bounded() {
        // No terminator anywhere: 512 pairs are read, then garbage counts; the
        // memory ends before the vectors do.
        let m = FakeMemory::new().with_region(0, 4096 + 2);
        assert!(matches!(
            ArchVector::parse(&m, 0),
            Err(CasError::BadAddress(_))
        ));
        let mut m = FakeMemory::new().with_region(0, 64);
        m.write(0, &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0])
            .unwrap(); // one vector, length byte 0
        let v = ArchVector::parse(&m, 0).unwrap();
        assert_eq!(v.vectors.len(), 1);
        assert_eq!(
            v.check(&PlatformSupport::default()),
            Err(CasError::MissingVector(5))
        );
        assert_eq!(v.byte(0, 0), 0);
        assert_eq!(v.byte(9, 300), 0);
        assert!(ArchVector::parse(&m, 1 << 40).is_err());
    }

    #[test]
    fn reply_header_either_byte_order() {
        let mut buf = alloc::vec![0u8; 4 + 64];
        buf[..4].copy_from_slice(&[1, 0, 0, 0]);
        buf[4..8].copy_from_slice(&[0xd0, 0x0d, 0xfe, 0xed]);
        buf[8..12].copy_from_slice(&48u32.to_be_bytes());
        assert_eq!(reply_fdt(&buf).unwrap().len(), 48);
        buf[..4].copy_from_slice(&[0, 0, 0, 1]);
        assert!(reply_fdt(&buf).is_ok());
        buf[..4].copy_from_slice(&[0, 0, 0, 2]);
        assert!(reply_fdt(&buf).is_err());
        buf[..4].copy_from_slice(&[1, 0, 0, 0]);
        buf[8..12].copy_from_slice(&4096u32.to_be_bytes());
        assert!(reply_fdt(&buf).is_err());
    }

    #[test]
    fn reply_len_is_header_and_tree_within_the_buffer() {
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&[1, 0, 0, 0]);
        head[4..8].copy_from_slice(&[0xd0, 0x0d, 0xfe, 0xed]);
        head[8..12].copy_from_slice(&14544u32.to_be_bytes());
        assert_eq!(reply_len(&head, 2 << 20), 4 + 14544);
        // A tree claiming more than the buffer: read the buffer, and
        // reply_fdt refuses it as before.
        head[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(reply_len(&head, 2 << 20), 2 << 20);
        // Nonsense sizes never read less than the 12 bytes already seen.
        head[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(reply_len(&head, 2 << 20), 12);
        let mut buf = alloc::vec![0u8; 12];
        buf.copy_from_slice(&head);
        assert!(reply_fdt(&buf).is_err());
    }
}
