//! Installing the firmware-resident RTAS (LoPAPR §7.2.1; Linux
//! `prom_instantiate_rtas`; QEMU pseries contract §2.2, §5.1).
//!
//! The runtime (`src/bin/rtas-runtime.rs`) is built as a position-independent
//! image; `cargo fw` packs it into a [`Blob`]: the image bytes, its size in
//! memory, its entry offset, the offset of its configuration block and its
//! R_PPC64_RELATIVE relocations.  `instantiate-rtas` installs it in the area the
//! OS allocated from `/rtas/rtas-size`:
//!
//! ```text
//! base + 0       a branch to the runtime's entry: the RTAS entry point
//!                (QEMU writes its FWNMI error log from base + 0x30)
//! base + 0x30..  QEMU's: machine-check log, then per-CPU system-reset areas at
//!                base + 2048 + 16 * cpu (QEMU's own rtas-size covers them)
//! base + off     the runtime image, off = QEMU's rtas-size rounded up to 4 KiB
//! ```
//!
//! so `rtas-size` = off + the runtime's memory size.  Installing copies the
//! image, zeroes its .bss, adds `base + off` to every relocated doubleword,
//! writes the configuration and makes the instruction cache coherent.

use crate::memory::{MemError, Memory};
use alloc::vec::Vec;
use core::fmt;

pub const BLOB_MAGIC: u32 = 0x5052_5453; // "PRTS"
pub const BLOB_VERSION: u32 = 1;
const HEADER: usize = 32;

/// A packed runtime (format documented in qemu-tests/src/image.rs, which writes it).
#[derive(Debug, PartialEq, Eq)]
pub struct Blob<'a> {
    pub entry: u32,
    pub mem_len: u32,
    pub config_off: u32,
    pub config_len: u32,
    pub relocs: Vec<(u32, u64)>,
    pub image: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResidentError {
    BadBlob(&'static str),
    AreaTooSmall { need: u64, have: u64 },
    Memory(MemError),
    ConfigTooLarge,
}

impl fmt::Display for ResidentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResidentError::BadBlob(w) => write!(f, "resident RTAS image: {w}"),
            ResidentError::AreaTooSmall { need, have } => {
                write!(f, "RTAS area of {have:#x} bytes, need {need:#x}")
            }
            ResidentError::Memory(e) => write!(f, "installing RTAS: {e}"),
            ResidentError::ConfigTooLarge => write!(f, "RTAS configuration too large"),
        }
    }
}

impl From<MemError> for ResidentError {
    fn from(e: MemError) -> Self {
        ResidentError::Memory(e)
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> Blob<'a> {
    /// Header: magic, version, entry, image_len, mem_len, config_off,
    /// config_len, nrelocs (BE32 each); then nrelocs × (offset BE32, pad,
    /// addend BE64) = 16 bytes; then the image.
    pub fn parse(b: &'a [u8]) -> Result<Self, ResidentError> {
        let bad = ResidentError::BadBlob;
        if be32(b, 0) != Some(BLOB_MAGIC) {
            return Err(bad("bad magic"));
        }
        if be32(b, 4) != Some(BLOB_VERSION) {
            return Err(bad("unknown version"));
        }
        let f = |i: usize| be32(b, 4 * i).ok_or(bad("truncated header"));
        let (entry, image_len, mem_len) = (f(2)?, f(3)?, f(4)?);
        let (config_off, config_len, nrelocs) = (f(5)?, f(6)?, f(7)? as usize);
        let rel_end = nrelocs
            .checked_mul(16)
            .and_then(|n| n.checked_add(HEADER))
            .ok_or(bad("too many relocations"))?;
        let image = b
            .get(
                rel_end
                    ..rel_end
                        .checked_add(image_len as usize)
                        .ok_or(bad("image length"))?,
            )
            .ok_or(bad("truncated image"))?;
        let mut relocs = Vec::with_capacity(nrelocs);
        for i in 0..nrelocs {
            let at = HEADER + 16 * i;
            let off = be32(b, at).ok_or(bad("truncated relocations"))?;
            let addend = be64(b, at + 8).ok_or(bad("truncated relocations"))?;
            if off as u64 + 8 > image_len as u64 || off % 8 != 0 {
                return Err(bad("relocation outside the image"));
            }
            relocs.push((off, addend));
        }
        if image_len > mem_len
            || entry >= image_len
            || config_off as u64 + config_len as u64 > mem_len as u64
        {
            return Err(bad("inconsistent sizes"));
        }
        Ok(Blob {
            entry,
            mem_len,
            config_off,
            config_len,
            relocs,
            image,
        })
    }
}

/// The minimal RTAS entry used when no resident runtime is built in: the OS
/// calls it with r3 = argument block and QEMU runs the call (QEMU pseries
/// contract §2.2): `mr r4,r3; lis r3,0; ori r3,r3,0xf000; sc 1; blr` — 20
/// bytes, inside the 48 bytes before QEMU's FWNMI log.
pub const RTAS_STUB: [u32; 5] = [
    0x7c64_1b78,
    0x3c60_0000,
    0x6063_f000,
    0x4400_0022,
    0x4e80_0020,
];

/// Offset of the runtime inside the RTAS area, given QEMU's `rtas-size`
/// (which covers the FWNMI areas QEMU writes).
pub fn runtime_offset(qemu_rtas_size: u32) -> u64 {
    (qemu_rtas_size as u64).max(0x30).next_multiple_of(0x1000)
}

/// The `rtas-size` papr-fw publishes.
pub fn area_size(blob: &Blob, qemu_rtas_size: u32) -> u64 {
    runtime_offset(qemu_rtas_size) + (blob.mem_len as u64).next_multiple_of(0x1000)
}

/// `b` from `base` to `base + disp` (Power ISA I-form, AA = LK = 0).
pub fn branch(disp: u64) -> u32 {
    0x4800_0000 | (disp as u32 & 0x03ff_fffc)
}

/// Install `blob` at `base` (an area of `size` bytes) with `config` as its
/// configuration block.  Returns the RTAS entry address (= base).
pub fn install<M: Memory + ?Sized>(
    mem: &mut M,
    blob: &Blob,
    base: u64,
    size: u64,
    qemu_rtas_size: u32,
    config: &[u8],
) -> Result<u64, ResidentError> {
    let need = area_size(blob, qemu_rtas_size);
    if size < need {
        return Err(ResidentError::AreaTooSmall { need, have: size });
    }
    if config.len() > blob.config_len as usize {
        return Err(ResidentError::ConfigTooLarge);
    }
    let off = runtime_offset(qemu_rtas_size);
    let rt = base + off;
    mem.write(rt, blob.image)?;
    mem.fill(
        rt + blob.image.len() as u64,
        blob.mem_len as u64 - blob.image.len() as u64,
        0,
    )?;
    for (at, addend) in &blob.relocs {
        mem.write_be64(rt + *at as u64, rt + addend)?;
    }
    mem.write(rt + blob.config_off as u64, config)?;
    mem.write_be32(base, branch(off + blob.entry as u64))?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    pub fn blob_bytes(image: &[u8], mem_len: u32, entry: u32, relocs: &[(u32, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [
            BLOB_MAGIC,
            BLOB_VERSION,
            entry,
            image.len() as u32,
            mem_len,
            0x20,
            0x10,
            relocs.len() as u32,
        ] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for (o, a) in relocs {
            v.extend_from_slice(&o.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(&a.to_be_bytes());
        }
        v.extend_from_slice(image);
        v
    }

    #[test]
    fn installs_relocates_and_branches() {
        let mut image = alloc::vec![0x11u8; 0x100];
        image[0x40..0x48].copy_from_slice(&0x99u64.to_be_bytes());
        let bytes = blob_bytes(&image, 0x3000, 0x80, &[(0x40, 0x90), (0x48, 0)]);
        let blob = Blob::parse(&bytes).unwrap();
        assert_eq!(area_size(&blob, 0x82c), 0x1000 + 0x3000);
        let mut m = FakeMemory::new().with_region(0x100000, 0x10000);
        m.fill(0x100000, 0x10000, 0xee).unwrap();
        let entry = install(&mut m, &blob, 0x100000, 0x4000, 0x82c, b"cfg").unwrap();
        assert_eq!(entry, 0x100000);
        // A branch of 0x1080 forward at the entry: 0x48001080.
        assert_eq!(m.read_be32(0x100000).unwrap(), 0x4800_1080);
        assert_eq!(m.read_be64(0x101040).unwrap(), 0x101090);
        assert_eq!(m.read_be64(0x101048).unwrap(), 0x101000);
        assert_eq!(
            &{
                let mut b = [0; 3];
                m.read(0x101020, &mut b).unwrap();
                b
            },
            b"cfg"
        );
        assert_eq!(m.read_u8(0x101100).unwrap(), 0, ".bss zeroed");
        assert_eq!(m.read_u8(0x103fff).unwrap(), 0);
        assert_eq!(
            m.read_u8(0x100030).unwrap(),
            0xee,
            "QEMU's FWNMI area untouched"
        );
        assert_eq!(
            install(&mut m, &blob, 0x100000, 0x3fff, 0x82c, b""),
            Err(ResidentError::AreaTooSmall {
                need: 0x4000,
                have: 0x3fff
            })
        );
        assert_eq!(
            install(&mut m, &blob, 0x100000, 0x4000, 0x82c, &[0; 17]),
            Err(ResidentError::ConfigTooLarge)
        );
    }

    #[test]
    fn rejects_bad_blobs() {
        let good = blob_bytes(&[0; 0x100], 0x100, 0, &[(8, 0)]);
        assert!(Blob::parse(&good).is_ok());
        for cut in [0, 4, 31, 40, good.len() - 1] {
            assert!(Blob::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Blob::parse(&blob_bytes(&[0; 0x100], 0x100, 0, &[(0xfc, 0)])).is_err());
        assert!(Blob::parse(&blob_bytes(&[0; 0x100], 0x100, 0, &[(4, 0)])).is_err());
        assert!(Blob::parse(&blob_bytes(&[0; 0x100], 0x80, 0, &[])).is_err());
        assert!(Blob::parse(&blob_bytes(&[0; 0x100], 0x100, 0x100, &[])).is_err());
        let mut huge = good.clone();
        huge[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Blob::parse(&huge).is_err());
    }
}
