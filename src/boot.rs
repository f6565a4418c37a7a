//! What to boot and how to start it (QEMU pseries contract §1.6; Linux
//! head_64.S `__start` with r5 = client-interface entry, linux-expectations.md
//! §1.1).  For now: the kernel QEMU preloaded with `-kernel` (and its
//! `-initrd`), found in `/chosen`.

use crate::cif::ClientImage;
use crate::devtree::Tree;
use crate::memory::Range;

/// Why there is nothing to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoKernel {
    /// No `-kernel`: `/chosen/qemu,boot-kernel` is absent.
    NotGiven,
    /// The property exists but does not describe a loaded image.
    Bad(&'static str),
}

fn cells(v: &[u8]) -> Option<u64> {
    match v.len() {
        4 => Some(u32::from_be_bytes(v.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// The kernel QEMU loaded: `/chosen/qemu,boot-kernel` = `<base(u64) size(u64)>`
/// (QEMU enters a kernel at its load base, not at the ELF entry), plus the
/// initrd from `linux,initrd-start`/`-end` (1 or 2 cells each).
pub fn preloaded_kernel(tree: &Tree, ram: &[Range]) -> Result<ClientImage, NoKernel> {
    let chosen = tree.find("/chosen").ok_or(NoKernel::NotGiven)?;
    let k = tree
        .prop(chosen, "qemu,boot-kernel")
        .ok_or(NoKernel::NotGiven)?;
    if k.len() != 16 {
        return Err(NoKernel::Bad("qemu,boot-kernel is not two 64-bit cells"));
    }
    let base = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
    let size = u64::from_be_bytes(k[8..].try_into().unwrap_or_default());
    let in_ram = |r: Range| ram.iter().any(|m| m.contains(r.base, r.size));
    let image = Range::new(base, size);
    if size == 0 || !in_ram(image) {
        return Err(NoKernel::Bad("qemu,boot-kernel is not a range in RAM"));
    }
    let start = tree.prop(chosen, "linux,initrd-start").and_then(cells);
    let end = tree.prop(chosen, "linux,initrd-end").and_then(cells);
    let initrd = match (start, end) {
        (Some(s), Some(e)) if e > s && in_ram(Range::new(s, e - s)) => Range::new(s, e - s),
        _ => Range::default(),
    };
    Ok(ClientImage {
        entry: base,
        image,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_kernel_tree() {
        let path = alloc::format!(
            "{}/qemu-tests/trees/qemu-7.2-kernel.dtb",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut t = Tree::from_fdt(&std::fs::read(path).unwrap()).unwrap();
        let ram = [Range::new(0, 512 << 20)];
        let img = preloaded_kernel(&t, &ram).unwrap();
        assert_eq!(img.entry, 0x40_0000);
        assert_eq!(img.image, Range::new(0x40_0000, 0x1000));
        assert_eq!(img.initrd, Range::new(0x42_0000, 0x2000));
        let chosen = t.find("/chosen").unwrap();
        t.set_prop(chosen, "qemu,boot-kernel", &[0; 8]).unwrap();
        assert!(matches!(preloaded_kernel(&t, &ram), Err(NoKernel::Bad(_))));
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&(1u64 << 40).to_be_bytes());
        k[8..].copy_from_slice(&0x1000u64.to_be_bytes());
        t.set_prop(chosen, "qemu,boot-kernel", &k).unwrap();
        assert!(matches!(preloaded_kernel(&t, &ram), Err(NoKernel::Bad(_))));
        t.remove_prop(chosen, "qemu,boot-kernel").unwrap();
        assert_eq!(preloaded_kernel(&t, &ram), Err(NoKernel::NotGiven));
    }
}
