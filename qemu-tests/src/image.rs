//! Building `papr-fw.bin`: cargo builds the ELF for the bare-metal target
//! (`.cargo/powerpc64-papr-none.json`, `-Zbuild-std`), then every loadable
//! segment is placed at its physical address in a flat file whose byte N is
//! guest address N — what QEMU's `-bios` loads at 0 (contract §1.2).

use crate::paths;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{elf, Endianness};
use std::path::PathBuf;
use std::process::Command;

/// QEMU refuses a `-bios` image over 4 MiB (FW_MAX_SIZE).
pub const QEMU_LIMIT: u64 = 4 << 20;

/// The budget CI holds the image to: well under QEMU's limit, and the image
/// plus its .bss and stacks must stay below 1.5 MiB, where GRUB's claims start
/// (disk-boot reference) — see `FOOTPRINT_BUDGET`.
pub const IMAGE_BUDGET: u64 = 768 << 10;
pub const FOOTPRINT_BUDGET: u64 = 0x18_0000;

/// Lay the PT_LOAD segments of a big-endian ELF64 out at their physical
/// addresses.  Returns the flat image and the end of the highest segment in
/// memory (including .bss).
pub fn elf_to_flat(data: &[u8]) -> Result<(Vec<u8>, u64), String> {
    let file = ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not an ELF64: {e}"))?;
    let endian = file.endian();
    let mut out = Vec::new();
    let mut mem_end = 0u64;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let paddr = ph.p_paddr(endian);
        let filesz = ph.p_filesz(endian);
        mem_end = mem_end.max(paddr + ph.p_memsz(endian));
        if filesz == 0 {
            continue;
        }
        let bytes = ph
            .data(endian, data)
            .map_err(|_| "segment outside the file".to_string())?;
        let end = (paddr + filesz) as usize;
        if end as u64 > QEMU_LIMIT {
            return Err(format!(
                "segment at {paddr:#x} ends beyond QEMU's 4 MiB limit"
            ));
        }
        if out.len() < end {
            out.resize(end, 0);
        }
        out[paddr as usize..end].copy_from_slice(bytes);
    }
    if out.is_empty() {
        return Err("no loadable segments".into());
    }
    Ok((out, mem_end))
}

/// What [`build`] produced.
pub struct Built {
    pub elf: PathBuf,
    pub bin: PathBuf,
    pub image_size: u64,
    pub footprint: u64,
}

/// Build the release firmware and write `papr-fw.bin`; fails if the build
/// fails or the image is over budget.
pub fn build() -> Result<Built, String> {
    let root = paths::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "papr-fw",
            "--bin",
            "papr-fw",
            "--target",
            ".cargo/powerpc64-papr-none.json",
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-Zjson-target-spec",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("firmware build failed".into());
    }
    let elf = paths::firmware_elf();
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let (flat, footprint) = elf_to_flat(&data)?;
    let bin = paths::firmware_bin();
    std::fs::write(&bin, &flat).map_err(|e| format!("{}: {e}", bin.display()))?;
    let image_size = flat.len() as u64;
    if image_size > IMAGE_BUDGET {
        return Err(format!(
            "image is {image_size} bytes, over the {IMAGE_BUDGET}-byte budget"
        ));
    }
    if footprint > FOOTPRINT_BUDGET {
        return Err(format!(
            "image + .bss + stacks end at {footprint:#x}, over the {FOOTPRINT_BUDGET:#x} budget"
        ));
    }
    Ok(Built {
        elf,
        bin,
        image_size,
        footprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(segments: &[(u64, &[u8], u64)]) -> Vec<u8> {
        // A minimal ELF64 big-endian header + program headers.
        let phoff = 64u64;
        let mut v = vec![0u8; 64];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4] = 2; // ELFCLASS64
        v[5] = 2; // big endian
        v[6] = 1;
        v[16..18].copy_from_slice(&2u16.to_be_bytes()); // ET_EXEC
        v[18..20].copy_from_slice(&21u16.to_be_bytes()); // EM_PPC64
        v[20..24].copy_from_slice(&1u32.to_be_bytes());
        v[32..40].copy_from_slice(&phoff.to_be_bytes());
        v[52..54].copy_from_slice(&64u16.to_be_bytes());
        v[54..56].copy_from_slice(&56u16.to_be_bytes());
        v[56..58].copy_from_slice(&(segments.len() as u16).to_be_bytes());
        let mut data_off = 64 + 56 * segments.len() as u64;
        let mut phs = Vec::new();
        let mut datas = Vec::new();
        for (paddr, bytes, memsz) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&1u32.to_be_bytes());
            ph[8..16].copy_from_slice(&data_off.to_be_bytes());
            ph[16..24].copy_from_slice(&paddr.to_be_bytes());
            ph[24..32].copy_from_slice(&paddr.to_be_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
            ph[40..48].copy_from_slice(&memsz.to_be_bytes());
            phs.extend(ph);
            datas.extend_from_slice(bytes);
            data_off += bytes.len() as u64;
        }
        v.extend(phs);
        v.extend(datas);
        v
    }

    #[test]
    fn segments_land_at_physical_addresses() {
        let e = elf(&[(0x100, b"\x48\x00\x1f\x00", 4), (0x2000, b"abc", 0x3000)]);
        let (flat, end) = elf_to_flat(&e).unwrap();
        assert_eq!(flat.len(), 0x2003);
        assert_eq!(&flat[0x100..0x104], b"\x48\x00\x1f\x00");
        assert!(flat[..0x100].iter().all(|b| *b == 0));
        assert_eq!(&flat[0x2000..], b"abc");
        assert_eq!(end, 0x5000);
        assert!(elf_to_flat(b"not an elf").is_err());
        assert!(elf_to_flat(&elf(&[(0x3ff_fff0, b"0123456789abcdef0123", 20)])).is_err());
    }
}
