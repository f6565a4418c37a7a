//! The VFIO variant of the test guest (linux-expectations §2.10 and §3): the
//! standard initramfs plus the VFIO modules, `/bin/papr-vfio` (a static
//! ppc64el program, `qemu-tests/vfio/papr-vfio.c`, built here with Debian's
//! cross compiler) and the `papr.run=vfio` step (`qemu-tests/vfio/run-vfio.sh`,
//! installed as `/etc/papr/run/vfio`): after its disk checks the guest hands
//! the NVMe to vfio-pci, creates, maps and removes DMA windows through the
//! SPAPR TCE v2 ioctls, gives the device back to nvme and reads the disk again.
//!
//! Only kernels with the VFIO-on-pSeries table_group_ops (≥ 6.11: the 6.12
//! kernels here) can do this; 6.1 lacks them.  The image is cached next to the
//! standard one (`<cache>/guest/<kernel>/initrd-vfio.gz`) and rebuilt when the
//! program, the step, the compiler or anything the standard image depends on
//! changes.
//!
//! ```no_run
//! use qemu_tests::{guest, qemu::Firmware};
//! let img = guest::vfio::ensure(guest::Kernel::V6_12).unwrap();
//! let disk = guest::Disk::temp("vfio").unwrap();
//! let mut m = img.config(Firmware::PaprFw, Some(&disk), guest::vfio::CMDLINE).start();
//! let run = guest::run_to_poweroff(&mut m, 180);
//! assert!(run.log.contains("papr-guest: vfio: PASS"), "{}", run.log);
//! ```

use super::{debs, Error, ExtraFile, GuestImage, Kernel};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// The modules the variant loads (with their dependencies): the standard
/// NVMe stack, vfio-pci and the SPAPR TCE IOMMU driver (VFIO would ask
/// modprobe for it, which the guest does not have).
pub const MODULES: &[&str] = &["nvme", "vfio_pci", "vfio_iommu_spapr_tce"];

/// The test program's source.
pub const PROGRAM_SOURCE: &str = include_str!("../../vfio/papr-vfio.c");
/// The `papr.run=vfio` step.
pub const RUN_STEP: &str = include_str!("../../vfio/run-vfio.sh");
/// Debian's ppc64el cross compiler (`gcc-powerpc64le-linux-gnu` with
/// `libc6-dev-ppc64el-cross`, installed by `qemu-tests/setup.sh`).
pub const CROSS_CC: &str = "powerpc64le-linux-gnu-gcc";
/// The kernel command-line option that runs the step.
pub const CMDLINE: &str = "papr.run=vfio";
/// The program's verdict lines.
pub const MARK_PASS: &str = "papr-guest: vfio: PASS";
pub const MARK_FAIL: &str = "papr-guest: vfio: FAIL";

/// `powerpc64le-linux-gnu-gcc --version`'s first line.
pub fn compiler_version() -> Result<String, String> {
    let out = Command::new(CROSS_CC)
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "{CROSS_CC}: {e} (run qemu-tests/setup.sh: it installs gcc-powerpc64le-linux-gnu \
             and libc6-dev-ppc64el-cross)"
            )
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Compile [`PROGRAM_SOURCE`] static and stripped in `dir`; the binary's bytes.
pub fn build_program(dir: &Path) -> Result<Vec<u8>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("papr-vfio.c");
    let bin = dir.join(format!("papr-vfio.tmp-{}", std::process::id()));
    std::fs::write(&src, PROGRAM_SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = Command::new(CROSS_CC)
        .args(["-static", "-O2", "-s", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| format!("{CROSS_CC}: {e} (run qemu-tests/setup.sh)"))?;
    if !out.status.success() {
        return Err(format!(
            "{CROSS_CC} failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bytes = std::fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let _ = std::fs::remove_file(&bin);
    Ok(bytes)
}

/// The standard image of `kernel` with the VFIO initramfs instead.
pub fn ensure(kernel: Kernel) -> Result<GuestImage, Error> {
    let base = super::ensure(kernel)?;
    ensure_inner(base).map_err(|e| Error(format!("guest {} (vfio): {e}", kernel.label())))
}

fn ensure_inner(base: GuestImage) -> Result<GuestImage, String> {
    let _lock = super::lock_cache()?;
    let kpin = debs::pin(&base.kernel.role())?;
    let bpin = debs::pin("busybox")?;
    let cc = compiler_version()?;
    let mut h = Sha256::new();
    for part in [
        super::input_stamp(&kpin, &bpin, MODULES).as_str(),
        PROGRAM_SOURCE,
        RUN_STEP,
        include_str!("vfio.rs"),
        cc.as_str(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let stamp = debs::hex(&h.finalize());
    let out = debs::guest_cache().join(base.kernel.label());
    let initrd = out.join("initrd-vfio.gz");
    let stamp_path = out.join("initrd-vfio.stamp");
    let current = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    if !initrd.is_file() || current.trim() != stamp {
        let program = build_program(&out.join("vfio-build"))?;
        let extra = [
            ExtraFile {
                path: "bin/papr-vfio".into(),
                mode: 0o755,
                data: program,
            },
            ExtraFile {
                path: "etc/papr/run/vfio".into(),
                mode: 0o644,
                data: RUN_STEP.as_bytes().to_vec(),
            },
        ];
        let gz =
            super::build_initramfs_with(&base.root, &base.release, &bpin.root(), MODULES, &extra)?;
        let tmp = out.join(format!("initrd-vfio.gz.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &gz).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &initrd).map_err(|e| format!("{}: {e}", initrd.display()))?;
        std::fs::write(&stamp_path, format!("{stamp}\n"))
            .map_err(|e| format!("{}: {e}", stamp_path.display()))?;
    }
    Ok(GuestImage { initrd, ..base })
}
