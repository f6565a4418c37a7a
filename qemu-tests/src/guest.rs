//! Real Linux guests for the QEMU tests, built from pinned Debian ppc64el
//! packages (see `shared/reference/guest-linux.md` for the facts behind it).
//!
//! [`ensure`] fetches a kernel (`linux-image-*-powerpc64le`, 6.1 from
//! bookworm, 6.12 and its 64k-page flavour from bookworm-backports) and
//! `busybox-static` through a private apt configuration ([`debs`]), and builds
//! a gzip'd newc initramfs ([`cpio`]) whose `/init` (`qemu-tests/guest/init`)
//! loads the NVMe modules in `.modinfo` dependency order ([`modules`]), checks
//! a seeded disk ([`Disk`]), prints the kernel's DMA-window lines, MMU,
//! interrupt controller, CPU count and memory, then a verdict
//! (`papr-guest: PASS` / `papr-guest: FAIL <reasons>`) and powers off.
//! Everything is cached under `<cache>/guest` and rebuilt only when its inputs
//! change; a lock file makes concurrent callers (tests in parallel, several
//! test binaries) safe.
//!
//! A typical test:
//! ```no_run
//! use qemu_tests::{guest, qemu::Firmware};
//! let img = guest::ensure(guest::Kernel::V6_1).unwrap();
//! let disk = guest::Disk::temp("example").unwrap();
//! let mut m = img.config(Firmware::Slof, Some(&disk), "").start();
//! let run = guest::run_to_poweroff(&mut m, 120);
//! assert!(run.report.pass, "{}", run.log);
//! disk.verify_after_guest().unwrap();
//! ```

pub mod cpio;
pub mod debs;
pub mod grub;
pub mod modules;
pub mod nested;
pub mod rtas_trace;
pub mod vfio;

use crate::qemu::{Config, Firmware, Machine};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The guest's first line from /init.
pub const MARK_INIT: &str = "papr-guest: init started";
/// The verdict lines.
pub const MARK_PASS: &str = "papr-guest: PASS";
pub const MARK_FAIL: &str = "papr-guest: FAIL";
/// Printed after the verdict, right before `poweroff -f`.
pub const MARK_POWEROFF: &str = "papr-guest: powering off";

/// Kernel command line every guest gets: the hypervisor console, and reboot
/// (which `-no-reboot` turns into QEMU exiting) at once on a panic.
pub const DEFAULT_CMDLINE: &str = "console=hvc0 panic=-1";

/// The seeded regions of a test disk (see [`Disk`]).
pub const SEED_OFFSET: u64 = 1 << 20;
pub const SEED_LEN: usize = 1 << 20;
pub const DATA_OFFSET: u64 = 8 << 20;
pub const DATA_LEN: usize = 4 << 20;
/// Size of [`Disk::temp`] images (sparse).
pub const DEFAULT_DISK_SIZE: u64 = 64 << 20;

/// The modules the standard initramfs loads (with their dependencies).
pub const STANDARD_MODULES: &[&str] = &["nvme"];

/// The guest kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Debian bookworm's 6.1 (64K pages; no VFIO-on-pSeries).
    V6_1,
    /// bookworm-backports' 6.12, default flavour (4K pages).
    V6_12,
    /// bookworm-backports' 6.12 `-64k` flavour (64K pages; the L1 for nested
    /// KVM with VFIO passthrough).
    V6_12_64k,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::V6_1, Kernel::V6_12, Kernel::V6_12_64k];

    /// "6.1", "6.12", "6.12-64k".
    pub fn label(self) -> &'static str {
        match self {
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
            Kernel::V6_12_64k => "6.12-64k",
        }
    }

    pub fn from_label(s: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.label() == s)
    }

    /// Its line in `qemu-tests/guest/packages.lock`.
    pub fn role(self) -> String {
        format!("kernel-{}", self.label())
    }

    /// The kernel's page size.
    pub fn page_size(self) -> u32 {
        match self {
            Kernel::V6_12 => 4096,
            Kernel::V6_1 | Kernel::V6_12_64k => 65536,
        }
    }
}

/// An error of the guest pipeline; `Debug` shows the message as is so
/// `unwrap()` failures read well.
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A kernel and initramfs ready to boot.
#[derive(Clone, Debug)]
pub struct GuestImage {
    pub kernel: Kernel,
    /// `uname -r`, e.g. "6.1.0-50-powerpc64le".
    pub release: String,
    /// The unstripped ELF vmlinux (QEMU's `-kernel`).
    pub vmlinux: PathBuf,
    /// The gzip'd newc initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// The unpacked kernel package (for more modules: `lib/modules/<release>`).
    pub root: PathBuf,
}

impl GuestImage {
    /// `-kernel`, `-initrd`, `-append` ([`DEFAULT_CMDLINE`] then `extra`) and
    /// `-no-reboot`.
    pub fn qemu_args(&self, extra_cmdline: &str) -> Vec<String> {
        let mut cmdline = DEFAULT_CMDLINE.to_string();
        if !extra_cmdline.trim().is_empty() {
            cmdline.push(' ');
            cmdline.push_str(extra_cmdline.trim());
        }
        vec![
            "-kernel".into(),
            self.vmlinux.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            cmdline,
            "-no-reboot".into(),
        ]
    }

    /// The standard guest machine: 2 GiB, one CPU, this kernel, and the disk
    /// on NVMe (or `papr.disk=none` without one).  Change memory etc. on the
    /// returned [`Config`].
    pub fn config(&self, firmware: Firmware, disk: Option<&Disk>, extra_cmdline: &str) -> Config {
        let mut extra = extra_cmdline.to_string();
        if disk.is_none() && !extra.contains("papr.disk=") {
            extra.push_str(" papr.disk=none");
        }
        let mut c = Config::new()
            .firmware(firmware)
            .memory("2G")
            .args(self.qemu_args(&extra));
        if let Some(d) = disk {
            c = c.args(d.nvme_args());
        }
        c
    }
}

/// What [`ensure_with_stats`] did.
#[derive(Clone, Debug, Default)]
pub struct EnsureStats {
    pub fetch: debs::FetchStats,
    /// Whether the initramfs was (re)built.
    pub built_initrd: bool,
    pub initrd_bytes: u64,
}

/// Fetch, unpack and build what `kernel` needs, or reuse the cache.
pub fn ensure(kernel: Kernel) -> Result<GuestImage, Error> {
    ensure_with_stats(kernel).map(|(g, _)| g)
}

/// [`ensure`], also saying what had to be done.
pub fn ensure_with_stats(kernel: Kernel) -> Result<(GuestImage, EnsureStats), Error> {
    let mut stats = EnsureStats::default();
    let img = ensure_inner(kernel, &mut stats)
        .map_err(|e| Error(format!("guest {}: {e}", kernel.label())))?;
    Ok((img, stats))
}

/// An exclusive lock on `<cache>/guest/lock` for as long as it lives.
struct CacheLock(#[allow(dead_code)] std::fs::File);

fn lock_cache() -> Result<CacheLock, String> {
    let dir = debs::guest_cache();
    for d in ["debs", "pkgs"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.lock()
        .map_err(|e| format!("locking {}: {e}", path.display()))?;
    Ok(CacheLock(f))
}

fn ensure_inner(kernel: Kernel, stats: &mut EnsureStats) -> Result<GuestImage, String> {
    let _lock = lock_cache()?;
    let kpin = debs::pin(&kernel.role())?;
    let bpin = debs::pin("busybox")?;
    let mut apt = None;
    let root = debs::ensure_unpacked(&kpin, &mut apt, &mut stats.fetch)?;
    let broot = debs::ensure_unpacked(&bpin, &mut apt, &mut stats.fetch)?;
    let release = kernel_release(&root)?;
    let vmlinux = root.join("boot").join(format!("vmlinux-{release}"));
    if !vmlinux.is_file() {
        return Err(format!("{} is missing", vmlinux.display()));
    }
    let out = debs::guest_cache().join(kernel.label());
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let initrd = out.join("initrd.gz");
    let stamp_path = out.join("initrd.stamp");
    let stamp = input_stamp(&kpin, &bpin, STANDARD_MODULES);
    let current = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    if !initrd.is_file() || current.trim() != stamp {
        let gz = build_initramfs(&root, &release, &broot, STANDARD_MODULES)?;
        let tmp = out.join(format!("initrd.gz.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &gz).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &initrd).map_err(|e| format!("{}: {e}", initrd.display()))?;
        std::fs::write(&stamp_path, format!("{stamp}\n"))
            .map_err(|e| format!("{}: {e}", stamp_path.display()))?;
        stats.built_initrd = true;
    }
    stats.initrd_bytes = std::fs::metadata(&initrd).map(|m| m.len()).unwrap_or(0);
    Ok(GuestImage {
        kernel,
        release,
        vmlinux,
        initrd,
        root,
    })
}

/// The one directory under `lib/modules` of an unpacked kernel package.
fn kernel_release(root: &Path) -> Result<String, String> {
    let dir = root.join("lib/modules");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "expected one kernel release in {}, found {names:?}",
            dir.display()
        )),
    }
}

/// The init script.
pub const INIT_SCRIPT: &str = include_str!("../guest/init");

/// A digest of everything an initramfs is made from: the pins, the init
/// script, the module list and this code itself.
fn input_stamp(kpin: &debs::Pin, bpin: &debs::Pin, modules: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in [
        kpin.line().as_str(),
        bpin.line().as_str(),
        INIT_SCRIPT,
        &modules.join(","),
        include_str!("guest.rs"),
        include_str!("guest/cpio.rs"),
        include_str!("guest/modules.rs"),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    debs::hex(&h.finalize())
}

/// `/etc/papr/config`, sourced by /init.
pub fn guest_config() -> String {
    format!(
        "PAPR_DISK=nvme0n1\nSEED_OFFSET_MIB={}\nSEED_SHA256={}\nDATA_OFFSET_MIB={}\nDATA_MIB={}\nDATA_SHA256={}\n",
        SEED_OFFSET >> 20,
        debs::hex(&Sha256::digest(seed_pattern())),
        DATA_OFFSET >> 20,
        DATA_LEN >> 20,
        debs::hex(&Sha256::digest(data_pattern())),
    )
}

/// Build the gzip'd initramfs: busybox, /init, the modules `modules` need in
/// load order (decompressed), the check configuration and data.
pub fn build_initramfs(
    root: &Path,
    release: &str,
    busybox_root: &Path,
    modules: &[&str],
) -> Result<Vec<u8>, String> {
    build_initramfs_with(root, release, busybox_root, modules, &[])
}

/// A file an initramfs variant adds (parent directories come with it).
#[derive(Clone, Debug)]
pub struct ExtraFile {
    /// Path inside the initramfs, without a leading `/`.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// [`build_initramfs`] plus `extra` files (e.g. a test program and a
/// `/etc/papr/run/NAME` step for `papr.run=NAME`).
pub fn build_initramfs_with(
    root: &Path,
    release: &str,
    busybox_root: &Path,
    modules: &[&str],
    extra: &[ExtraFile],
) -> Result<Vec<u8>, String> {
    let mut c = cpio::Cpio::new();
    for d in ["dev", "proc", "sys", "root", "bin", "etc/papr"] {
        c.dir(d, 0o755);
    }
    c.dir("tmp", 0o1777);
    c.char_dev("dev/console", 0o600, 5, 1);
    let bb_path = busybox_root.join("bin/busybox");
    let bb = std::fs::read(&bb_path).map_err(|e| format!("{}: {e}", bb_path.display()))?;
    c.file("bin/busybox", 0o755, &bb);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, INIT_SCRIPT.as_bytes());

    let index = modules::ModuleIndex::scan(&root.join("lib/modules").join(release))?;
    let mut list = String::new();
    for (name, path) in index.load_order(modules)? {
        let bytes = modules::read_module(&path)?;
        let dest = format!("lib/modules/{release}/{name}.ko");
        c.file(&dest, 0o644, &bytes);
        list.push('/');
        list.push_str(&dest);
        list.push('\n');
    }
    c.file("etc/papr/modules", 0o644, list.as_bytes());
    c.file("etc/papr/config", 0o644, guest_config().as_bytes());
    c.file("etc/papr/data.bin", 0o644, &data_pattern());
    for f in extra {
        c.file(&f.path, f.mode, &f.data);
    }
    let archive = c.finish();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&archive).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// splitmix64: a small, well-mixed generator; the same seed gives the same
/// bytes on the host and in the images it writes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The 1 MiB the host writes at [`SEED_OFFSET`] and the guest reads back.
pub fn seed_pattern() -> Vec<u8> {
    pattern(u64::from_be_bytes(*b"papr-see"), SEED_LEN)
}

/// The 4 MiB the guest writes at [`DATA_OFFSET`] (with O_DIRECT).
pub fn data_pattern() -> Vec<u8> {
    pattern(u64::from_be_bytes(*b"papr-dat"), DATA_LEN)
}

/// A raw disk image seeded for the guest's checks: [`seed_pattern`] at
/// [`SEED_OFFSET`], zeros elsewhere (sparse).
#[derive(Debug)]
pub struct Disk {
    pub path: PathBuf,
    pub size: u64,
    temporary: bool,
}

static DISK_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Disk {
    /// Create (or overwrite) a seeded image of `size` bytes at `path`.
    pub fn create(path: &Path, size: u64) -> std::io::Result<Disk> {
        if size < DATA_OFFSET + DATA_LEN as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a test disk needs at least {} bytes",
                    DATA_OFFSET + DATA_LEN as u64
                ),
            ));
        }
        let mut f = std::fs::File::create(path)?;
        f.set_len(size)?;
        f.seek(SeekFrom::Start(SEED_OFFSET))?;
        f.write_all(&seed_pattern())?;
        f.sync_all()?;
        Ok(Disk {
            path: path.to_path_buf(),
            size,
            temporary: false,
        })
    }

    /// An image that exists already (no seeding; kept when dropped).
    pub fn open(path: &Path) -> std::io::Result<Disk> {
        let size = std::fs::metadata(path)?.len();
        Ok(Disk {
            path: path.to_path_buf(),
            size,
            temporary: false,
        })
    }

    /// A seeded image of [`DEFAULT_DISK_SIZE`] in the temporary directory,
    /// removed when dropped.
    pub fn temp(name: &str) -> std::io::Result<Disk> {
        let n = DISK_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("papr-guest-{name}-{}-{n}.img", std::process::id()));
        let mut d = Disk::create(&path, DEFAULT_DISK_SIZE)?;
        d.temporary = true;
        Ok(d)
    }

    /// `-drive file=...,if=none,id=d0,format=raw -device nvme,drive=d0,serial=papr0`.
    pub fn nvme_args(&self) -> Vec<String> {
        vec![
            "-drive".into(),
            format!("file={},if=none,id=d0,format=raw", self.path.display()),
            "-device".into(),
            "nvme,drive=d0,serial=papr0".into(),
        ]
    }

    fn read_region(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// After a guest ran the checks and powered off: the seed is intact and
    /// the guest's data is at [`DATA_OFFSET`].
    pub fn verify_after_guest(&self) -> Result<(), String> {
        self.verify_region("seed", SEED_OFFSET, &seed_pattern())?;
        self.verify_region("guest data", DATA_OFFSET, &data_pattern())
    }

    /// Only the seed is checked (for runs that do not write).
    pub fn verify_seed(&self) -> Result<(), String> {
        self.verify_region("seed", SEED_OFFSET, &seed_pattern())
    }

    fn verify_region(&self, what: &str, offset: u64, want: &[u8]) -> Result<(), String> {
        let got = self
            .read_region(offset, want.len())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if got == want {
            return Ok(());
        }
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        let bad_blocks = got
            .chunks(4096)
            .zip(want.chunks(4096))
            .filter(|(a, b)| a != b)
            .count();
        Err(format!(
            "{}: {what} region at {offset:#x} differs: first at {:#x}, {bad_blocks} of {} 4K blocks wrong",
            self.path.display(),
            offset + first as u64,
            want.len() / 4096
        ))
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the guest printed, parsed from the console log.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every `papr-guest: ` line, without the prefix.
    pub lines: Vec<String>,
    pub pass: bool,
    /// The reasons after `FAIL`, if it failed.
    pub fail: Option<String>,
    /// The kernel's DMA lines (`papr-guest: dma: ...`, without the prefix).
    pub dma: Vec<String>,
    pub mmu: Option<String>,
    /// "XIVE", "XICS" or "unknown", then the dmesg line in parentheses.
    pub irq: Option<String>,
    pub cpus: Option<u32>,
    /// e.g. "2015424 kB".
    pub memtotal: Option<String>,
    pub seed_ok: bool,
    pub write_ok: bool,
    pub modules_loaded: Option<u32>,
}

impl Report {
    pub fn parse(log: &str) -> Report {
        let mut r = Report::default();
        for line in log.lines() {
            let Some(pos) = line.find("papr-guest: ") else {
                continue;
            };
            let l = line[pos + "papr-guest: ".len()..].trim_end().to_string();
            if l == "PASS" {
                r.pass = true;
            } else if let Some(rest) = l.strip_prefix("FAIL") {
                r.fail = Some(rest.trim().to_string());
            } else if let Some(d) = l.strip_prefix("dma: ") {
                r.dma.push(d.to_string());
            } else if let Some(v) = l.strip_prefix("mmu: ") {
                r.mmu = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("irq: ") {
                r.irq = Some(v.to_string());
            } else if let Some(v) = l.strip_prefix("cpus: ") {
                r.cpus = v.trim().parse().ok();
            } else if let Some(v) = l.strip_prefix("memtotal: ") {
                r.memtotal = Some(v.to_string());
            } else if l == "disk seed OK" {
                r.seed_ok = true;
            } else if l == "disk write OK" {
                r.write_ok = true;
            } else if let Some(v) = l.strip_prefix("modules loaded (") {
                r.modules_loaded = v.trim_end_matches(')').parse().ok();
            }
            r.lines.push(l);
        }
        if r.fail.is_some() {
            r.pass = false;
        }
        r
    }

    /// The first DMA line containing all of `needles`.
    pub fn dma_line(&self, needles: &[&str]) -> Option<&str> {
        self.dma
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(String::as_str)
    }
}

/// When things happened, from QEMU's start.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub init: Duration,
    /// The verdict line (`powering off` follows it at once).
    pub verdict: Duration,
    pub exit: Duration,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "init {:.2}s, verdict {:.2}s, exit {:.2}s",
            self.init.as_secs_f64(),
            self.verdict.as_secs_f64(),
            self.exit.as_secs_f64()
        )
    }
}

/// A guest run to its end.
#[derive(Debug)]
pub struct GuestRun {
    pub report: Report,
    pub times: Timings,
    pub log: String,
}

/// Wait (each step at most `timeout_secs`) for /init, the verdict and QEMU
/// exiting with 0 after the guest's power-off; panics with the console log if
/// any step fails.  The verdict itself is in `report.pass`; the caller checks it.
#[track_caller]
pub fn run_to_poweroff(m: &mut Machine, timeout_secs: u64) -> GuestRun {
    let init = m.wait_for(MARK_INIT, timeout_secs);
    let verdict = m.wait_for(MARK_POWEROFF, timeout_secs);
    m.wait_exit(0, timeout_secs.min(60));
    let exit = m.elapsed();
    let log = m.log();
    GuestRun {
        report: Report::parse(&log),
        times: Timings {
            init,
            verdict,
            exit,
        },
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_fixed_and_distinct() {
        let s = seed_pattern();
        let d = data_pattern();
        assert_eq!(s.len(), SEED_LEN);
        assert_eq!(d.len(), DATA_LEN);
        assert_ne!(&s[..4096], &d[..4096]);
        // The guest compares against these digests, so they must not drift.
        assert_eq!(s, seed_pattern());
        // No two 4K blocks alike: a misplaced block would be seen.
        let mut blocks: Vec<&[u8]> = d.chunks(4096).collect();
        blocks.sort();
        blocks.dedup();
        assert_eq!(blocks.len(), DATA_LEN / 4096);
    }

    #[test]
    fn disk_verification_catches_a_wrong_byte() {
        let disk = Disk::temp("unit").unwrap();
        assert!(disk.verify_seed().is_ok());
        // Nothing written by a guest yet.
        assert!(disk
            .verify_after_guest()
            .unwrap_err()
            .contains("guest data"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .unwrap();
        f.seek(SeekFrom::Start(DATA_OFFSET)).unwrap();
        f.write_all(&data_pattern()).unwrap();
        assert!(disk.verify_after_guest().is_ok());
        f.seek(SeekFrom::Start(DATA_OFFSET + 5000)).unwrap();
        f.write_all(&[0]).unwrap();
        let e = disk.verify_after_guest().unwrap_err();
        assert!(e.contains("first at 0x801388"), "{e}");
        assert!(e.contains("1 of 1024"), "{e}");
        let path = disk.path.clone();
        drop(disk);
        assert!(!path.exists());
    }

    #[test]
    fn small_disk_is_refused() {
        let p = std::env::temp_dir().join(format!("papr-guest-small-{}.img", std::process::id()));
        assert!(Disk::create(&p, 1 << 20).is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn report_parsing() {
        let log = "[    1.0] hello\n\
            papr-guest: init started (6.1.0-50-powerpc64le)\n\
            papr-guest: modules loaded (7)\n\
            papr-guest: disk seed OK\n\
            [    2.0] nvme nvme0: 1/0/0 queues\npapr-guest: disk write OK\n\
            papr-guest: dma: [    1.5] nvme 0000:00:02.0: ibm,create-pe-dma-window(2027) 1000 8000000 20000000 18 1f returned 0\n\
            papr-guest: mmu: Radix\n\
            papr-guest: irq: XIVE (xive: Using IRQ range)\n\
            papr-guest: cpus: 2\n\
            papr-guest: memtotal: 2015424 kB\n\
            papr-guest: PASS\n\
            papr-guest: powering off\n";
        let r = Report::parse(log);
        assert!(r.pass && r.seed_ok && r.write_ok);
        assert_eq!(r.modules_loaded, Some(7));
        assert_eq!(r.mmu.as_deref(), Some("Radix"));
        assert_eq!(r.cpus, Some(2));
        assert!(r
            .dma_line(&["create-pe-dma-window", "returned 0"])
            .is_some());
        assert!(r.dma_line(&["returned -3"]).is_none());
        let r = Report::parse("papr-guest: FAIL disk:write\npapr-guest: PASS\n");
        assert!(!r.pass);
        assert_eq!(r.fail.as_deref(), Some("disk:write"));
    }

    #[test]
    fn args() {
        let img = GuestImage {
            kernel: Kernel::V6_1,
            release: "r".into(),
            vmlinux: "/v".into(),
            initrd: "/i".into(),
            root: "/".into(),
        };
        let a = img.qemu_args(" papr.mode=shell ");
        assert_eq!(a[5], "console=hvc0 panic=-1 papr.mode=shell");
        assert!(a.contains(&"-no-reboot".to_string()));
        assert_eq!(Kernel::from_label("6.12-64k"), Some(Kernel::V6_12_64k));
        assert_eq!(Kernel::V6_12.role(), "kernel-6.12");
    }
}
