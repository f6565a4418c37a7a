//! Partition tables, as IEEE 1275's "disk-label" support package reads them
//! (IEEE 1275 §3.8.1 and the PowerPC binding's PReP boot partition; MBR as
//! IBM PC and Linux define it; GPT per UEFI 2.x §5.3; PReP rules in
//! disk-boot-and-nested.md: MBR type 0x41 *with* the active flag, or GPT type
//! 9E1A2D38-C612-4316-AA26-8B49521E5A8B).
//!
//! Everything here works on sectors a caller reads; a corrupt or hostile
//! table gives an error or no partitions, never a panic or a huge allocation.

use alloc::vec::Vec;
use core::fmt;

/// Most partitions read from one table (GPT allows 128 by default).
pub const MAX_PARTITIONS: usize = 128;
/// MBR partition type of a PReP boot partition.
pub const MBR_PREP: u8 = 0x41;
/// MBR partition type of a GPT protective entry.
pub const MBR_GPT_PROTECTIVE: u8 = 0xee;

/// A GUID as stored on disk (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// From the usual text form's fields.
    pub const fn new(a: u32, b: u16, c: u16, d: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            g[8],
            g[9]
        )?;
        for b in &g[10..] {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// The GPT PReP boot partition type.
pub const GPT_PREP: Guid = Guid::new(
    0x9E1A_2D38,
    0xC612,
    0x4316,
    [0xAA, 0x26, 0x8B, 0x49, 0x52, 0x1E, 0x5A, 0x8B],
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mbr { ty: u8, active: bool },
    Gpt { ty: Guid },
}

/// One partition, in 512-byte-or-larger logical blocks of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as IEEE 1275 device arguments (`disk:2`) and Linux number them.
    pub number: u32,
    pub first_lba: u64,
    pub blocks: u64,
    pub kind: Kind,
}

impl Partition {
    /// A PReP boot partition (MBR 0x41 only when marked active, as SLOF requires).
    pub fn is_prep(&self) -> bool {
        match self.kind {
            Kind::Mbr { ty, active } => ty == MBR_PREP && active,
            Kind::Gpt { ty } => ty == GPT_PREP,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// The block could not be read (the caller's error).
    Read,
    BadBlockSize,
    BadGptHeader(&'static str),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::Read => write!(f, "cannot read the disk"),
            LabelError::BadBlockSize => write!(f, "unsupported block size"),
            LabelError::BadGptHeader(w) => write!(f, "bad GPT header: {w}"),
        }
    }
}

/// A block device could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadError;

/// Reads `buf.len()` bytes (a multiple of the block size) from block `lba`.
pub trait BlockRead {
    fn block_size(&self) -> u32;
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    (le32(b, at) as u64) | ((le32(b, at + 4) as u64) << 32)
}

/// The partitions of a disk: GPT if the MBR is protective and the GPT header
/// is valid, else the MBR's primary partitions; no table gives an empty list.
pub fn read_partitions<D: BlockRead + ?Sized>(d: &mut D) -> Result<Vec<Partition>, LabelError> {
    let bs = d.block_size() as usize;
    if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
        return Err(LabelError::BadBlockSize);
    }
    let mut mbr = alloc::vec![0u8; bs];
    d.read_blocks(0, &mut mbr).map_err(|_| LabelError::Read)?;
    if mbr[510] != 0x55 || mbr[511] != 0xaa {
        return Ok(Vec::new());
    }
    let entries: Vec<(u8, bool, u64, u64)> = (0..4)
        .map(|i| {
            let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], e[0] == 0x80, le32(e, 8) as u64, le32(e, 12) as u64)
        })
        .collect();
    if entries.iter().any(|e| e.0 == MBR_GPT_PROTECTIVE) {
        return read_gpt(d, bs);
    }
    Ok(entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.0 != 0 && e.3 != 0)
        .map(|(i, e)| Partition {
            number: i as u32 + 1,
            first_lba: e.2,
            blocks: e.3,
            kind: Kind::Mbr {
                ty: e.0,
                active: e.1,
            },
        })
        .collect())
}

fn read_gpt<D: BlockRead + ?Sized>(d: &mut D, bs: usize) -> Result<Vec<Partition>, LabelError> {
    let bad = LabelError::BadGptHeader;
    let mut h = alloc::vec![0u8; bs];
    d.read_blocks(1, &mut h).map_err(|_| LabelError::Read)?;
    if &h[..8] != b"EFI PART" {
        return Err(bad("no signature"));
    }
    let header_size = le32(&h, 12) as usize;
    if !(92..=bs).contains(&header_size) {
        return Err(bad("header size"));
    }
    let stored = le32(&h, 16);
    let mut copy = h[..header_size].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != stored {
        return Err(bad("header CRC"));
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80) as usize;
    let entry_size = le32(&h, 84) as usize;
    if !(128..=4096).contains(&entry_size) || !entry_size.is_multiple_of(8) {
        return Err(bad("entry size"));
    }
    let count = count.min(MAX_PARTITIONS);
    let bytes = count * entry_size;
    let blocks = bytes.div_ceil(bs);
    let mut table = alloc::vec![0u8; blocks * bs];
    d.read_blocks(entries_lba, &mut table)
        .map_err(|_| LabelError::Read)?;
    let mut parts = Vec::new();
    for i in 0..count {
        let e = &table[i * entry_size..(i + 1) * entry_size];
        let mut ty = [0u8; 16];
        ty.copy_from_slice(&e[..16]);
        let ty = Guid(ty);
        let (first, last) = (le64(e, 32), le64(e, 40));
        if ty.is_zero() || last < first {
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            first_lba: first,
            blocks: last - first + 1,
            kind: Kind::Gpt { ty },
        });
    }
    Ok(parts)
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub struct MemDisk {
        pub bs: u32,
        pub data: Vec<u8>,
    }

    impl BlockRead for MemDisk {
        fn block_size(&self) -> u32 {
            self.bs
        }
        fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            let at = (lba as usize)
                .checked_mul(self.bs as usize)
                .ok_or(ReadError)?;
            let end = at.checked_add(buf.len()).ok_or(ReadError)?;
            let src = self.data.get(at..end).ok_or(ReadError)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    pub fn mbr_disk(parts: &[(u8, bool, u32, u32)]) -> MemDisk {
        let mut data = alloc::vec![0u8; 1 << 20];
        for (i, (ty, active, first, n)) in parts.iter().enumerate() {
            let e = &mut data[446 + 16 * i..446 + 16 * (i + 1)];
            e[0] = if *active { 0x80 } else { 0 };
            e[4] = *ty;
            e[8..12].copy_from_slice(&first.to_le_bytes());
            e[12..16].copy_from_slice(&n.to_le_bytes());
        }
        data[510] = 0x55;
        data[511] = 0xaa;
        MemDisk { bs: 512, data }
    }

    /// A GPT disk with the given (type, first, last) entries, as sgdisk makes it.
    pub fn gpt_disk(parts: &[(Guid, u64, u64)]) -> MemDisk {
        let mut d = mbr_disk(&[(MBR_GPT_PROTECTIVE, false, 1, 2047)]);
        let mut table = alloc::vec![0u8; 128 * 128];
        for (i, (ty, first, last)) in parts.iter().enumerate() {
            let e = &mut table[i * 128..(i + 1) * 128];
            e[..16].copy_from_slice(&ty.0);
            e[16] = i as u8 + 1;
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        d.data[1024..1024 + table.len()].copy_from_slice(&table);
        let h = &mut d.data[512..1024];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&table).to_le_bytes());
        let c = crc32(&h[..92]);
        h[16..20].copy_from_slice(&c.to_le_bytes());
        d
    }

    #[test]
    fn crc_and_guid() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            alloc::format!("{GPT_PREP:?}"),
            "9E1A2D38-C612-4316-AA26-8B49521E5A8B"
        );
    }

    #[test]
    fn mbr_prep_needs_the_active_flag() {
        let mut d = mbr_disk(&[(0x41, true, 2048, 16384), (0x83, false, 18432, 1000)]);
        let p = read_partitions(&mut d).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_prep());
        assert_eq!((p[1].number, p[1].first_lba, p[1].blocks), (2, 18432, 1000));
        let mut d = mbr_disk(&[(0x41, false, 2048, 16384)]);
        assert!(!read_partitions(&mut d).unwrap()[0].is_prep());
        let mut blank = MemDisk {
            bs: 512,
            data: alloc::vec![0; 4096],
        };
        assert_eq!(read_partitions(&mut blank).unwrap(), alloc::vec![]);
    }

    #[test]
    fn gpt_like_sgdisk() {
        let linux = Guid::new(
            0x0FC6_3DAF,
            0x8483,
            0x4772,
            [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
        );
        let mut d = gpt_disk(&[(GPT_PREP, 2048, 18431), (linux, 18432, 262103)]);
        let p = read_partitions(&mut d).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_prep() && !p[1].is_prep());
        assert_eq!((p[0].first_lba, p[0].blocks), (2048, 16384));
        // A corrupted header is an error, not a guess.
        d.data[512 + 80] ^= 1;
        assert!(matches!(
            read_partitions(&mut d),
            Err(LabelError::BadGptHeader("header CRC"))
        ));
    }

    #[test]
    fn hostile_tables() {
        let mut d = gpt_disk(&[(GPT_PREP, 2048, 18431)]);
        // Entry LBA far outside the disk: a read error, not a panic.
        d.data[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        let c = {
            let h = &mut d.data[512..604];
            h[16..20].fill(0);
            crc32(h)
        };
        d.data[528..532].copy_from_slice(&c.to_le_bytes());
        assert_eq!(read_partitions(&mut d), Err(LabelError::Read));
        assert_eq!(
            read_partitions(&mut MemDisk {
                bs: 100,
                data: alloc::vec![]
            }),
            Err(LabelError::BadBlockSize)
        );
        let mut short = MemDisk {
            bs: 512,
            data: alloc::vec![0; 10],
        };
        assert_eq!(read_partitions(&mut short), Err(LabelError::Read));
    }
}
