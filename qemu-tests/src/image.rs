//! Building `papr-fw.bin`: cargo builds the ELF for the bare-metal target
//! (`.cargo/powerpc64-papr-none.json`, `-Zbuild-std`), then every loadable
//! segment is placed at its physical address in a flat file whose byte N is
//! guest address N — what QEMU's `-bios` loads at 0 (contract §1.2).

use crate::paths;
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{elf, Endianness, Object, ObjectSection, ObjectSymbol};
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

/// Pack the position-independent resident RTAS runtime ELF into the blob
/// `papr_fw::rtas::resident::Blob::parse` reads: a header of BE32 words
/// (magic "PRTS", version 1, entry, image length, memory length, config
/// offset, config length, relocation count), then per relocation (BE32
/// offset, 4 bytes of padding, BE64 addend), then the image.  Only
/// R_PPC64_RELATIVE relocations are allowed.
pub fn pack_runtime(data: &[u8]) -> Result<Vec<u8>, String> {
    let (image, mem_end) = elf_to_flat(data)?;
    let file = ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not an ELF64: {e}"))?;
    let sym = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| (s.address(), s.size()))
            .ok_or(format!("runtime has no symbol {name}"))
    };
    let (entry, _) = sym("rtas_runtime_entry")?;
    let (config_off, config_len) = sym("RTAS_CONFIG")?;
    let mut relocs = Vec::new();
    if let Some(rela) = file.section_by_name(".rela.dyn") {
        let bytes = rela.data().map_err(|e| e.to_string())?;
        for r in bytes.chunks_exact(24) {
            let offset = u64::from_be_bytes(r[..8].try_into().unwrap());
            let info = u64::from_be_bytes(r[8..16].try_into().unwrap());
            let addend = u64::from_be_bytes(r[16..24].try_into().unwrap());
            if info & 0xffff_ffff != elf::R_PPC64_RELATIVE as u64 {
                return Err(format!(
                    "runtime relocation type {} at {offset:#x} is not R_PPC64_RELATIVE",
                    info & 0xffff_ffff
                ));
            }
            relocs.push((offset as u32, addend));
        }
    }
    let mut v = Vec::new();
    for w in [
        0x5052_5453u32,
        1,
        entry as u32,
        image.len() as u32,
        mem_end as u32,
        config_off as u32,
        config_len as u32,
        relocs.len() as u32,
    ] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    for (o, a) in &relocs {
        v.extend_from_slice(&o.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&a.to_be_bytes());
    }
    v.extend_from_slice(&image);
    Ok(v)
}

fn cargo_build(
    target: &str,
    bin: &str,
    features: &[&str],
    env: &[(&str, String)],
) -> Result<(), String> {
    let root = paths::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "papr-fw",
        "--bin",
        bin,
        "--target",
        target,
        "-Zbuild-std=core,alloc",
        "-Zbuild-std-features=compiler-builtins-mem",
        "-Zjson-target-spec",
    ]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {bin} failed"));
    }
    Ok(())
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
    // 1. The resident RTAS runtime, position independent, packed.
    cargo_build(
        ".cargo/powerpc64-papr-pie.json",
        "rtas-runtime",
        &["rtas-runtime"],
        &[],
    )?;
    let rt_elf = paths::target_dir().join("powerpc64-papr-pie/release/rtas-runtime");
    let rt = std::fs::read(&rt_elf).map_err(|e| format!("{}: {e}", rt_elf.display()))?;
    let blob = pack_runtime(&rt)?;
    let blob_path = paths::target_dir().join("powerpc64-papr-pie/release/rtas-runtime.blob");
    if std::fs::read(&blob_path).ok().as_deref() != Some(&blob[..]) {
        std::fs::write(&blob_path, &blob).map_err(|e| format!("{}: {e}", blob_path.display()))?;
    }
    // 2. The firmware, with the runtime embedded.
    cargo_build(
        ".cargo/powerpc64-papr-none.json",
        "papr-fw",
        &[],
        &[("PAPR_RTAS_BLOB", blob_path.display().to_string())],
    )?;
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
