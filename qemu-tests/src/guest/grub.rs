//! A bootable disk like the one Debian's installer makes for a pseries
//! guest (disk-boot-and-nested.md "Booting an installed-style disk"): GPT
//! with a PReP boot partition holding GRUB's powerpc-ieee1275 core image
//! and an ext4 filesystem with `/boot/vmlinux`, `/boot/initrd.gz` and
//! `/boot/grub` (`grub.cfg` and GRUB's modules, as `grub-install` copies
//! them).  Built without root or loop devices, bit-for-bit reproducibly,
//! and cached under `<cache>/guest/grub-<kernel>/`:
//!
//! * GRUB's modules come from the pinned `grub-ieee1275-bin:ppc64el`
//!   (`qemu-tests/guest/packages.lock`, role `grub-ieee1275`, fetched like
//!   the kernels); the host's `grub-mkimage` (Debian `grub-common`,
//!   installed by `qemu-tests/setup.sh`) builds the core image from them,
//!   with an embedded `load.cfg` that finds the filesystem by UUID
//!   (`search.fs_uuid`) and sets the prefix to its `/boot/grub`, as
//!   `grub-install` does;
//! * `mke2fs -t ext4 -d <staging>` makes the filesystem from a staging
//!   directory (fixed UUID, hash seed and timestamps; `debugfs` then sets
//!   the inode change times, which mke2fs copies from the staging files);
//! * `sgdisk` writes the GPT (fixed GUIDs); the core image and the
//!   filesystem are copied into their partitions.
//!
//! Layout ([`layout`]): the first 16 MiB carry no partition, so the guest's
//! disk checks (the seed at 1 MiB, its 4 MiB write at 8 MiB, see
//! [`super::Disk`]) run on the boot disk itself when it is the guest's NVMe
//! disk; partition 1 (PReP, 8 MiB) starts at 16 MiB, partition 2 (ext4)
//! at 24 MiB.
//!
//! `grub.cfg` prints [`MARK_GRUB`] first (the benchmark's "GRUB is running"
//! milestone), then boots the one entry at once: `linux /boot/vmlinux
//! console=hvc0 panic=-1`, `initrd /boot/initrd.gz`.

use super::{debs, GuestImage, Kernel};
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Printed by grub.cfg as soon as GRUB reads it.
pub const MARK_GRUB: &str = "papr-grub: grub.cfg";
/// Printed by GRUB right before it loads the kernel.
pub const MARK_GRUB_LINUX: &str = "papr-grub: loading Linux";

/// The pin of GRUB's powerpc-ieee1275 modules.
pub const GRUB_ROLE: &str = "grub-ieee1275";

/// Byte layout of the disk.
pub mod layout {
    /// Whole disk.
    pub const DISK_SIZE: u64 = 128 << 20;
    /// Partition 1: PReP boot partition.
    pub const PREP_START: u64 = 16 << 20;
    pub const PREP_SIZE: u64 = 8 << 20;
    /// Partition 2: ext4 with /boot.
    pub const FS_START: u64 = 24 << 20;
    pub const FS_SIZE: u64 = 100 << 20;
    pub const SECTOR: u64 = 512;
}

/// Fixed identities, so the image is reproducible.
pub const FS_UUID: &str = "0fc63daf-8483-4772-8e79-000070617072";
pub const DISK_GUID: &str = "50415052-2d66-7700-0000-000000000001";
pub const PREP_GUID: &str = "50415052-2d66-7700-0000-000000000002";
pub const FS_PART_GUID: &str = "50415052-2d66-7700-0000-000000000003";
/// Timestamps inside the filesystem (2023-11-14).
const FAKE_TIME: u64 = 1_700_000_000;

/// The modules baked into the core image (those `grub-install` puts in for
/// a GPT disk with ext4 `/boot`).
pub const CORE_MODULES: &[&str] = &["part_gpt", "part_msdos", "ext2", "search_fs_uuid"];

/// A cached GRUB disk.
#[derive(Clone, Debug)]
pub struct GrubDisk {
    pub kernel: Kernel,
    /// The raw image (never written by tests: use [`GrubDisk::copy_to`] or
    /// attach it read-only).
    pub path: PathBuf,
    /// GRUB's core image as written to the PReP partition.
    pub core: PathBuf,
    /// Whether this call built it (else it came from the cache).
    pub built: bool,
}

/// The grub.cfg written to the filesystem.
pub fn grub_cfg() -> String {
    format!(
        "echo \"{MARK_GRUB} (root $root, prefix $prefix)\"\n\
         set timeout=0\n\
         set default=0\n\
         menuentry \"Debian GNU/Linux (papr-fw test guest)\" {{\n\
         \x20   echo \"{MARK_GRUB_LINUX}\"\n\
         \x20   linux /boot/vmlinux console=hvc0 panic=-1\n\
         \x20   initrd /boot/initrd.gz\n\
         }}\n"
    )
}

/// The `load.cfg` embedded in the core image.
pub fn load_cfg() -> String {
    format!("search.fs_uuid {FS_UUID} root\nset prefix=($root)'/boot/grub'\n")
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what} (qemu-tests/setup.sh installs it): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `grub-mkimage --version`, e.g. "grub-mkimage (GRUB) 2.06-13+deb12u2".
pub fn mkimage_version() -> Result<String, String> {
    let out = Command::new("grub-mkimage")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("cannot run grub-mkimage (Debian grub-common; qemu-tests/setup.sh installs it): {e}")
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn set_mtime(path: &Path) -> Result<(), String> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(FAKE_TIME);
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    set_mtime(to)
}

/// A digest of everything the disk is made from.
fn stamp(img: &GuestImage, grub: &debs::Pin, mkimage: &str) -> Result<String, String> {
    let mut h = Sha256::new();
    let initrd_stamp = std::fs::read(img.initrd.with_extension("stamp")).unwrap_or_default();
    let kpin = debs::pin(&img.kernel.role())?;
    for part in [
        kpin.line().as_bytes(),
        &initrd_stamp,
        grub.line().as_bytes(),
        mkimage.as_bytes(),
        grub_cfg().as_bytes(),
        load_cfg().as_bytes(),
        include_str!("grub.rs").as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Ok(debs::hex(&h.finalize()))
}

/// Build (or reuse) the GRUB disk for `kernel`.
pub fn ensure(kernel: Kernel) -> Result<GrubDisk, super::Error> {
    ensure_inner(kernel).map_err(|e| super::Error(format!("GRUB disk ({}): {e}", kernel.label())))
}

fn ensure_inner(kernel: Kernel) -> Result<GrubDisk, String> {
    // The kernel and initramfs first (that takes the cache lock itself).
    let img = super::ensure(kernel).map_err(|e| e.0)?;
    let _lock = super::lock_cache()?;
    let gpin = debs::pin(GRUB_ROLE)?;
    let mut apt = None;
    let mut fetch = debs::FetchStats::default();
    let groot = debs::ensure_unpacked(&gpin, &mut apt, &mut fetch)?;
    let mods = groot.join("usr/lib/grub/powerpc-ieee1275");
    if !mods.join("kernel.img").is_file() {
        return Err(format!("{} has no kernel.img", mods.display()));
    }
    let mkimage = mkimage_version()?;
    let upstream = gpin.version.split('-').next().unwrap_or("");
    if !mkimage.contains(upstream) {
        return Err(format!(
            "the host's {mkimage} does not match the pinned modules {} {}",
            gpin.package, gpin.version
        ));
    }
    let dir = debs::guest_cache().join(format!("grub-{}", kernel.label()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let disk = dir.join("disk.img");
    let core = dir.join("core.elf");
    let stamp_path = dir.join("disk.stamp");
    let want = stamp(&img, &gpin, &mkimage)?;
    if disk.is_file()
        && core.is_file()
        && std::fs::read_to_string(&stamp_path)
            .unwrap_or_default()
            .trim()
            == want
    {
        return Ok(GrubDisk {
            kernel,
            path: disk,
            core,
            built: false,
        });
    }
    build(&img, &mods, &dir, &disk, &core)?;
    std::fs::write(&stamp_path, format!("{want}\n"))
        .map_err(|e| format!("{}: {e}", stamp_path.display()))?;
    Ok(GrubDisk {
        kernel,
        path: disk,
        core,
        built: true,
    })
}

fn build(
    img: &GuestImage,
    mods: &Path,
    dir: &Path,
    disk: &Path,
    core: &Path,
) -> Result<(), String> {
    use layout::*;
    let work = dir.join(format!("work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let staging = work.join("root");
    let gdir = staging.join("boot/grub/powerpc-ieee1275");
    std::fs::create_dir_all(&gdir).map_err(|e| format!("{}: {e}", gdir.display()))?;
    // /boot: kernel, initramfs, grub.cfg, GRUB's modules.
    copy_file(&img.vmlinux, &staging.join("boot/vmlinux"))?;
    copy_file(&img.initrd, &staging.join("boot/initrd.gz"))?;
    let cfg = staging.join("boot/grub/grub.cfg");
    std::fs::write(&cfg, grub_cfg()).map_err(|e| format!("{}: {e}", cfg.display()))?;
    set_mtime(&cfg)?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(mods)
        .map_err(|e| format!("{}: {e}", mods.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "mod" || x == "lst"))
        .collect();
    names.sort();
    for p in &names {
        copy_file(p, &gdir.join(p.file_name().unwrap_or_default()))?;
    }
    for d in [
        gdir.as_path(),
        &staging.join("boot/grub"),
        &staging.join("boot"),
        &staging,
    ] {
        set_mtime(d)?;
    }
    // The core image.
    let load = work.join("load.cfg");
    std::fs::write(&load, load_cfg()).map_err(|e| format!("{}: {e}", load.display()))?;
    let core_tmp = work.join("core.elf");
    run(
        Command::new("grub-mkimage")
            .args(["-O", "powerpc-ieee1275", "-d"])
            .arg(mods)
            .arg("-o")
            .arg(&core_tmp)
            .arg("-c")
            .arg(&load)
            .args(["-p", "/boot/grub"])
            .args(CORE_MODULES),
        "grub-mkimage",
    )?;
    let core_bytes = std::fs::read(&core_tmp).map_err(|e| e.to_string())?;
    if core_bytes.len() as u64 > PREP_SIZE {
        return Err(format!(
            "core image of {} bytes does not fit",
            core_bytes.len()
        ));
    }
    // The filesystem.
    let fs = work.join("fs.img");
    run(
        Command::new("mke2fs")
            .env("E2FSPROGS_FAKE_TIME", FAKE_TIME.to_string())
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-L",
                "papr-boot",
                "-U",
                FS_UUID,
            ])
            .arg("-E")
            .arg(format!("hash_seed={FS_UUID},root_owner=0:0"))
            .arg("-d")
            .arg(&staging)
            .arg(&fs)
            .arg(format!("{}k", FS_SIZE >> 10)),
        "mke2fs",
    )?;
    // mke2fs -d copies each file's ctime, which no one can set: fix them.
    let mut script = String::new();
    let mut stack = vec![staging.clone()];
    while let Some(d) = stack.pop() {
        let rel = d.strip_prefix(&staging).unwrap_or(Path::new(""));
        script.push_str(&format!("sif \"/{}\" ctime @{FAKE_TIME}\n", rel.display()));
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&staging).unwrap_or(&p);
                script.push_str(&format!("sif \"/{}\" ctime @{FAKE_TIME}\n", rel.display()));
            }
        }
    }
    let script_path = work.join("ctime.debugfs");
    std::fs::write(&script_path, script).map_err(|e| e.to_string())?;
    run(
        Command::new("debugfs")
            .env("E2FSPROGS_FAKE_TIME", FAKE_TIME.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(&fs),
        "debugfs",
    )?;
    // The disk: GPT, then the partitions' contents, then the guest's seed.
    let tmp = work.join("disk.img");
    {
        let f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        f.set_len(DISK_SIZE).map_err(|e| e.to_string())?;
    }
    let s = |b: u64| b / SECTOR;
    run(
        Command::new("sgdisk")
            .arg("-U")
            .arg(DISK_GUID)
            .arg(format!(
                "--new=1:{}:{}",
                s(PREP_START),
                s(PREP_START + PREP_SIZE) - 1
            ))
            .args(["--typecode=1:4100", "--change-name=1:PReP"])
            .arg(format!("--partition-guid=1:{PREP_GUID}"))
            .arg(format!(
                "--new=2:{}:{}",
                s(FS_START),
                s(FS_START + FS_SIZE) - 1
            ))
            .args(["--typecode=2:8300", "--change-name=2:boot"])
            .arg(format!("--partition-guid=2:{FS_PART_GUID}"))
            .arg(&tmp),
        "sgdisk",
    )?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    let put = |f: &mut std::fs::File, at: u64, data: &[u8]| -> Result<(), String> {
        f.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        f.write_all(data).map_err(|e| e.to_string())
    };
    put(&mut f, PREP_START, &core_bytes)?;
    let fs_bytes = std::fs::read(&fs).map_err(|e| e.to_string())?;
    put(&mut f, FS_START, &fs_bytes)?;
    put(&mut f, super::SEED_OFFSET, &super::seed_pattern())?;
    f.sync_all().map_err(|e| e.to_string())?;
    drop(f);
    std::fs::write(core, &core_bytes).map_err(|e| format!("{}: {e}", core.display()))?;
    std::fs::rename(&tmp, disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A GPT disk at `dest` whose only partition, a PReP boot partition at
/// 1 MiB, holds the file `image` (e.g. a vmlinux: firmware loads any ELF
/// from there).  No root needed, like [`ensure`].
pub fn prep_only_disk(image: &Path, dest: &Path) -> Result<(), String> {
    use layout::SECTOR;
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let start = 1u64 << 20;
    let part = (bytes.len() as u64).div_ceil(1 << 20) << 20;
    let size = start + part + (1 << 20);
    {
        let f = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        f.set_len(size).map_err(|e| e.to_string())?;
    }
    run(
        Command::new("sgdisk")
            .arg("-U")
            .arg(DISK_GUID)
            .arg(format!(
                "--new=1:{}:{}",
                start / SECTOR,
                (start + part) / SECTOR - 1
            ))
            .args(["--typecode=1:4100", "--change-name=1:PReP"])
            .arg(format!("--partition-guid=1:{PREP_GUID}"))
            .arg(dest),
        "sgdisk",
    )?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dest)
        .map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    f.write_all(&bytes).map_err(|e| e.to_string())
}

impl GrubDisk {
    /// A writable copy at `dest` (the guest's checks write the data region
    /// when it boots from its NVMe disk); a [`super::Disk`] for the checks.
    pub fn copy_to(&self, dest: &Path) -> std::io::Result<super::Disk> {
        std::fs::copy(&self.path, dest)?;
        super::Disk::open(dest)
    }

    /// A writable copy in the temporary directory, removed with the
    /// returned guard.
    pub fn temp_copy(&self, name: &str) -> std::io::Result<TempCopy> {
        let path = std::env::temp_dir().join(format!(
            "papr-grub-{name}-{}-{}.img",
            std::process::id(),
            COPIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let disk = self.copy_to(&path)?;
        Ok(TempCopy { disk })
    }

    /// `-drive` for this image, read-only (virtio boots: the guest checks
    /// its NVMe disk, not this one).
    pub fn drive_ro(&self, id: &str) -> Vec<String> {
        vec![
            "-drive".into(),
            format!(
                "file={},if=none,id={id},format=raw,readonly=on",
                self.path.display()
            ),
        ]
    }
}

static COPIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A temporary writable copy of a GRUB disk.
pub struct TempCopy {
    pub disk: super::Disk,
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.disk.path);
    }
}

/// `-drive file=PATH,if=none,id=ID,format=raw[,readonly=on]`.
pub fn drive(path: &Path, id: &str, readonly: bool) -> Vec<String> {
    vec![
        "-drive".into(),
        format!(
            "file={},if=none,id={id},format=raw{}",
            path.display(),
            if readonly { ",readonly=on" } else { "" }
        ),
    ]
}

/// How a disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    Nvme,
    /// virtio-blk-pci (transitional, QEMU's default).
    VirtioBlk,
    /// virtio-blk-pci with `disable-legacy=on,iommu_platform=on`.
    VirtioBlkIommu,
    /// virtio-scsi-pci with a scsi-hd on it.
    VirtioScsi,
}

impl Bus {
    pub fn label(self) -> &'static str {
        match self {
            Bus::Nvme => "nvme",
            Bus::VirtioBlk => "virtio-blk",
            Bus::VirtioBlkIommu => "virtio-blk+iommu_platform",
            Bus::VirtioScsi => "virtio-scsi",
        }
    }

    /// `-device` arguments for drive `id` (`bootindex` if given).
    pub fn device_args(self, id: &str, bootindex: Option<u32>) -> Vec<String> {
        let bi = bootindex.map_or(String::new(), |b| format!(",bootindex={b}"));
        match self {
            Bus::Nvme => vec![
                "-device".into(),
                format!("nvme,drive={id},serial=boot-{id}{bi}"),
            ],
            Bus::VirtioBlk => vec!["-device".into(), format!("virtio-blk-pci,drive={id}{bi}")],
            Bus::VirtioBlkIommu => vec![
                "-device".into(),
                format!("virtio-blk-pci,drive={id},disable-legacy=on,iommu_platform=on{bi}"),
            ],
            Bus::VirtioScsi => vec![
                "-device".into(),
                format!("virtio-scsi-pci,id=scsi-{id}"),
                "-device".into(),
                format!("scsi-hd,drive={id},bus=scsi-{id}.0{bi}"),
            ],
        }
    }
}

/// The layout in sectors as sgdisk is told, for tests.
pub fn partition_sectors() -> [(u64, u64); 2] {
    use layout::*;
    [
        (PREP_START / SECTOR, (PREP_START + PREP_SIZE) / SECTOR - 1),
        (FS_START / SECTOR, (FS_START + FS_SIZE) / SECTOR - 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_the_check_regions_free() {
        use layout::*;
        let data_end = super::super::DATA_OFFSET + super::super::DATA_LEN as u64;
        assert!(data_end <= PREP_START);
        const { assert!(FS_START >= PREP_START + PREP_SIZE) };
        // Room for the backup GPT (33 sectors) after the filesystem.
        const { assert!(FS_START + FS_SIZE + 33 * SECTOR <= DISK_SIZE) };
        assert_eq!(partition_sectors(), [(32768, 49151), (49152, 253951)]);
        assert!(grub_cfg().starts_with(&format!("echo \"{MARK_GRUB}")));
        assert!(load_cfg().contains(FS_UUID));
        let a = Bus::VirtioScsi.device_args("d1", Some(2));
        assert_eq!(a[3], "scsi-hd,drive=d1,bus=scsi-d1.0,bootindex=2");
    }
}
