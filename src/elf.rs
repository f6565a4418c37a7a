//! Loading ELF images the firmware boots itself (a boot loader from a PReP
//! partition, e.g. GRUB's powerpc-ieee1275 core, a 32-bit big-endian ELF; or a
//! kernel): ELF-32 and ELF-64, either byte order (System V gABI; 64-bit
//! PowerPC ELF ABI v1 and v2).  Parsing produces a [`LoadPlan`] — where each
//! PT_LOAD segment goes and where to enter — checked against the file's size
//! and address overflow; the caller claims the memory and copies.
//!
//! Entry: ELF-64 big-endian images with ABI version 0 or 1 (ELFv1) give the
//! address of a function descriptor, whose first doubleword is the code
//! address and second the TOC; ELFv2 and 32-bit images give the code address.

use alloc::vec::Vec;
use core::fmt;

/// Most program headers read.
pub const MAX_PHDRS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    Truncated,
    Unsupported(&'static str),
    BadSegment(&'static str),
    NoSegments,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF image"),
            ElfError::Truncated => write!(f, "truncated ELF image"),
            ElfError::Unsupported(w) => write!(f, "unsupported ELF: {w}"),
            ElfError::BadSegment(w) => write!(f, "bad ELF segment: {w}"),
            ElfError::NoSegments => write!(f, "ELF image has nothing to load"),
        }
    }
}

/// One segment to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical destination.
    pub dest: u64,
    /// Offset and length of the bytes in the file.
    pub offset: u64,
    pub filesz: u64,
    /// Bytes in memory (the rest, after `filesz`, is zeroed).
    pub memsz: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub class64: bool,
    pub little_endian: bool,
    /// ELF-64 big-endian ABI v1: `entry` is a function descriptor.
    pub descriptor_entry: bool,
    /// The ELF entry (translated to a physical address like the segments).
    pub entry: u64,
    pub segments: Vec<Segment>,
}

impl LoadPlan {
    /// Lowest and one-past-highest physical address the image occupies.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.dest).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.dest + s.memsz)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }

    /// Move the whole image so it starts at `base` (for relocatable kernels
    /// whose physical addresses start at 0, as QEMU does with `-kernel`).
    pub fn relocate_to(&mut self, base: u64) {
        let (lo, _) = self.span();
        for s in &mut self.segments {
            s.dest = s.dest - lo + base;
        }
        self.entry = self.entry.wrapping_sub(lo).wrapping_add(base);
    }
}

struct Rd<'a> {
    b: &'a [u8],
    le: bool,
}

impl Rd<'_> {
    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let s = self.b.get(at..at + 2).ok_or(ElfError::Truncated)?;
        let a = [s[0], s[1]];
        Ok(if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }
    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let s = self.b.get(at..at + 4).ok_or(ElfError::Truncated)?;
        let a = [s[0], s[1], s[2], s[3]];
        Ok(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let s = self.b.get(at..at + 8).ok_or(ElfError::Truncated)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
}

const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const PT_LOAD: u32 = 1;

/// Parse `image` (at least its headers; segment bytes are checked against
/// `file_len`, the size of the whole file).
pub fn parse(image: &[u8], file_len: u64) -> Result<LoadPlan, ElfError> {
    if image.len() < 52 || &image[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let class64 = match image[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::Unsupported("class")),
    };
    let le = match image[5] {
        1 => true,
        2 => false,
        _ => return Err(ElfError::Unsupported("byte order")),
    };
    let r = Rd { b: image, le };
    let machine = r.u16(18)?;
    if machine != EM_PPC && machine != EM_PPC64 {
        return Err(ElfError::Unsupported("not a PowerPC image"));
    }
    let (entry, phoff, flags, phentsize, phnum) = if class64 {
        (r.u64(24)?, r.u64(32)?, r.u32(48)?, r.u16(54)?, r.u16(56)?)
    } else {
        (
            r.u32(24)? as u64,
            r.u32(28)? as u64,
            r.u32(36)?,
            r.u16(42)?,
            r.u16(44)?,
        )
    };
    let want = if class64 { 56 } else { 32 };
    if phentsize as usize != want {
        return Err(ElfError::Unsupported("program header size"));
    }
    if phnum as usize > MAX_PHDRS {
        return Err(ElfError::Unsupported("too many program headers"));
    }
    let mut segments = Vec::new();
    let mut entry_phys = None;
    for i in 0..phnum as u64 {
        let at = phoff
            .checked_add(i * want as u64)
            .ok_or(ElfError::Truncated)? as usize;
        if r.u32(at)? != PT_LOAD {
            continue;
        }
        let (offset, vaddr, paddr, filesz, memsz) = if class64 {
            (
                r.u64(at + 8)?,
                r.u64(at + 16)?,
                r.u64(at + 24)?,
                r.u64(at + 32)?,
                r.u64(at + 40)?,
            )
        } else {
            (
                r.u32(at + 4)? as u64,
                r.u32(at + 8)? as u64,
                r.u32(at + 12)? as u64,
                r.u32(at + 16)? as u64,
                r.u32(at + 20)? as u64,
            )
        };
        if filesz > memsz {
            return Err(ElfError::BadSegment("file size larger than memory size"));
        }
        if offset.checked_add(filesz).is_none_or(|e| e > file_len) {
            return Err(ElfError::BadSegment("bytes beyond the end of the file"));
        }
        if paddr.checked_add(memsz).is_none() || vaddr.checked_add(memsz).is_none() {
            return Err(ElfError::BadSegment("address overflow"));
        }
        if memsz == 0 {
            continue;
        }
        if entry_phys.is_none() && entry >= vaddr && entry - vaddr < memsz {
            entry_phys = Some(entry - vaddr + paddr);
        }
        segments.push(Segment {
            dest: paddr,
            offset,
            filesz,
            memsz,
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    // Overlapping segments would make the load order matter: refuse.
    let mut sorted: Vec<_> = segments
        .iter()
        .map(|s| (s.dest, s.dest + s.memsz))
        .collect();
    sorted.sort();
    if sorted.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(ElfError::BadSegment("segments overlap"));
    }
    let descriptor_entry = class64 && !le && (flags & 3) != 2;
    Ok(LoadPlan {
        class64,
        little_endian: le,
        descriptor_entry,
        entry: entry_phys.unwrap_or(entry),
        segments,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF with one PT_LOAD of `code` at `addr`.
    pub fn elf(
        class64: bool,
        le: bool,
        vaddr: u64,
        paddr: u64,
        code: &[u8],
        memsz: u64,
        flags: u32,
    ) -> Vec<u8> {
        let mut v = alloc::vec![0u8; if class64 { 64 + 56 } else { 52 + 32 }];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = if class64 { 2 } else { 1 };
        v[5] = if le { 1 } else { 2 };
        v[6] = 1;
        let w16 = |v: &mut Vec<u8>, at: usize, x: u16| {
            let b = if le { x.to_le_bytes() } else { x.to_be_bytes() };
            v[at..at + 2].copy_from_slice(&b)
        };
        let w32 = |v: &mut Vec<u8>, at: usize, x: u32| {
            let b = if le { x.to_le_bytes() } else { x.to_be_bytes() };
            v[at..at + 4].copy_from_slice(&b)
        };
        let w64 = |v: &mut Vec<u8>, at: usize, x: u64| {
            let b = if le { x.to_le_bytes() } else { x.to_be_bytes() };
            v[at..at + 8].copy_from_slice(&b)
        };
        let off = v.len() as u64;
        w16(&mut v, 16, 2);
        w16(&mut v, 18, if class64 { 21 } else { 20 });
        if class64 {
            w64(&mut v, 24, vaddr);
            w64(&mut v, 32, 64);
            w32(&mut v, 48, flags);
            w16(&mut v, 54, 56);
            w16(&mut v, 56, 1);
            w32(&mut v, 64, 1);
            w64(&mut v, 72, off);
            w64(&mut v, 80, vaddr);
            w64(&mut v, 88, paddr);
            w64(&mut v, 96, code.len() as u64);
            w64(&mut v, 104, memsz);
        } else {
            w32(&mut v, 24, vaddr as u32);
            w32(&mut v, 28, 52);
            w16(&mut v, 42, 32);
            w16(&mut v, 44, 1);
            w32(&mut v, 52, 1);
            w32(&mut v, 56, off as u32);
            w32(&mut v, 60, vaddr as u32);
            w32(&mut v, 64, paddr as u32);
            w32(&mut v, 68, code.len() as u32);
            w32(&mut v, 72, memsz as u32);
        }
        v.extend_from_slice(code);
        v
    }

    #[test]
    fn grub_core_shape_32bit_be() {
        let e = elf(
            false,
            false,
            0x20_0000,
            0x20_0000,
            &[0x48, 0, 0, 0],
            0x1000,
            0,
        );
        let p = parse(&e, e.len() as u64).unwrap();
        assert!(!p.class64 && !p.little_endian && !p.descriptor_entry);
        assert_eq!(p.entry, 0x20_0000);
        assert_eq!(
            p.segments[0],
            Segment {
                dest: 0x20_0000,
                offset: 84,
                filesz: 4,
                memsz: 0x1000
            }
        );
        assert_eq!(p.span(), (0x20_0000, 0x20_1000));
    }

    #[test]
    fn linux_vmlinux_shape_relocates() {
        // ELFv2 LE: vaddr 0xc000000000000000, paddr 0, entry at the start.
        let e = elf(true, true, 0xc000_0000_0000_0000, 0, &[0; 16], 0x2000, 2);
        let mut p = parse(&e, e.len() as u64).unwrap();
        assert!(p.little_endian && !p.descriptor_entry);
        assert_eq!(p.entry, 0);
        p.relocate_to(0x40_0000);
        assert_eq!((p.entry, p.segments[0].dest), (0x40_0000, 0x40_0000));
        // BE ELFv1: descriptor entry.
        let e = elf(true, false, 0x1000, 0x1000, &[0; 16], 16, 1);
        assert!(parse(&e, e.len() as u64).unwrap().descriptor_entry);
    }

    #[test]
    fn bad_images() {
        assert_eq!(parse(b"MZ", 2), Err(ElfError::NotElf));
        let good = elf(false, false, 0x1000, 0x1000, &[1, 2, 3, 4], 4, 0);
        for cut in [10, 52, 60] {
            assert!(parse(&good[..cut], cut as u64).is_err(), "{cut}");
        }
        assert!(
            matches!(parse(&good, 10), Err(ElfError::BadSegment(_))),
            "bytes past the file"
        );
        let mut bad = good.clone();
        bad[18..20].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            parse(&bad, bad.len() as u64),
            Err(ElfError::Unsupported("not a PowerPC image"))
        );
        let big = elf(false, false, 0x1000, 0xffff_f000, &[0; 4], 4, 0);
        assert!(
            parse(&big, big.len() as u64).is_ok(),
            "32-bit top of memory fits"
        );
        let over = elf(true, false, 0x1000, u64::MAX - 2, &[0; 4], 16, 2);
        assert!(matches!(
            parse(&over, over.len() as u64),
            Err(ElfError::BadSegment(_))
        ));
        let shrink = elf(false, false, 0x1000, 0x1000, &[0; 8], 4, 0);
        assert!(matches!(
            parse(&shrink, shrink.len() as u64),
            Err(ElfError::BadSegment(_))
        ));
        let mut many = good.clone();
        many[44..46].copy_from_slice(&1000u16.to_be_bytes());
        assert!(parse(&many, many.len() as u64).is_err());
    }
}
