//! The nested-KVM variant of the test guest: an L1 that runs KVM and boots
//! its own L2 with an NVMe passed through VFIO — the set-up the
//! VFIO-on-pSeries series was made and tested for (linux-expectations §3;
//! disk-boot-and-nested.md, "Nested KVM for pseries under pure emulation").
//!
//! The outer QEMU (L0, TCG, `-M pseries,cap-nested-hv=on -cpu power9`) boots
//! the 6.12 `-64k` kernel as L1 with this initramfs, which carries:
//! * busybox, the test guest's `/init` and the modules `kvm_hv` (with `kvm`)
//!   and the VFIO stack (`vfio_pci`, `vfio_iommu_spapr_tce`), in `.modinfo`
//!   dependency order;
//! * a ppc64el `qemu-system-ppc64` from Debian (bookworm-backports' 10.0:
//!   QEMU 7.2 inside a 64k L1 makes each NVMe admin command of L2 time out
//!   once, 60 s), the shared libraries it needs — the closure of its ELF
//!   `DT_NEEDED` entries, found in the packages a simulated
//!   `apt-get install --no-install-recommends` of it lists — and the dynamic
//!   loader `/lib64/ld64.so.2`; the packages are pinned with their SHA-256 in
//!   `qemu-tests/guest/packages.lock` (roles `nested:<package>`, see
//!   [`resolve_pins`]);
//! * L2's kernel (the same 6.12-64k vmlinux) and initramfs (the standard one:
//!   NVMe checks, verdict, power-off), and QEMU's `slof.bin` (from the
//!   ppc64el `qemu-system-data`) for runs with SLOF as L2's firmware;
//! * the `papr.run=nested` step (`qemu-tests/guest/nested/run-nested.sh`,
//!   installed as `/etc/papr/run/nested`): check radix and `/dev/kvm`, hand
//!   the NVMe to vfio-pci and run L2 with it under `-accel kvm`, L2's console
//!   on L1's second console (`/dev/hvc1`), which L0 writes to a file of its
//!   own ([`L2Console`] follows it) so L1's console and its papr-fw's RTAS
//!   trace never cut into L2's lines.
//!
//! All of that is one cached gzip'd cpio ([`ensure`]); papr-fw's image — the
//! one just built, so the test runs the current firmware in L2 — is appended
//! at run time as a second small archive ([`NestedImage::initrd_with`]; the
//! kernel unpacks concatenated archives in order).
//!
//! ```no_run
//! use qemu_tests::guest::{nested, Disk};
//! use qemu_tests::qemu::{papr_fw_image, Firmware};
//! let img = nested::ensure().unwrap();
//! let disk = Disk::temp("nested").unwrap();
//! let initrd = img.initrd_with(&papr_fw_image(), "doc").unwrap();
//! let con = nested::TempFile::temp("doc-l2con");
//! let cfg = img.config(Firmware::PaprFw, &initrd, &disk, &nested::L2Options::default(), &con);
//! let (mut m, mut l2) = nested::start(&cfg, &con);
//! let run = nested::NestedRun::finish(&mut m, &mut l2, 300);
//! assert!(run.l2_report.pass);
//! ```

use super::{cpio, debs, modules, rtas_trace, Disk, Error, GuestImage, Kernel, Report};
use crate::qemu::{Config, Firmware, Machine};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Roles of the nested packages in `packages.lock`: `nested:<package>`.
pub const ROLE_PREFIX: &str = "nested:";
/// The L1's emulator and the suite it comes from.
pub const QEMU_PACKAGE: &str = "qemu-system-ppc";
pub const QEMU_SUITE: &str = "bookworm-backports";
/// Ships `slof.bin` (architecture all).
pub const DATA_PACKAGE: &str = "qemu-system-data";
/// The emulator binary inside its package (and the initramfs).
pub const QEMU_BINARY: &str = "usr/bin/qemu-system-ppc64";
/// Where the libraries go in the initramfs (the loader's default path on
/// Debian ppc64el; the step also sets `LD_LIBRARY_PATH` to it).
pub const LIB_DIR: &str = "lib/powerpc64le-linux-gnu";
/// The program interpreter of ppc64el binaries.
pub const LOADER: &str = "lib64/ld64.so.2";
/// Directories of a package searched for a `DT_NEEDED` name.
const SEARCH_DIRS: &[&str] = &[
    "lib/powerpc64le-linux-gnu",
    "usr/lib/powerpc64le-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

/// L1's and L2's kernel: the 64k-page 6.12 (with a 4k-page L1, QEMU refuses
/// 64 KiB guest pages; VFIO-on-pSeries needs ≥ 6.11).
pub const KERNEL: Kernel = Kernel::V6_12_64k;
/// The modules L1 loads (with their dependencies).
pub const L1_MODULES: &[&str] = &["kvm_hv", "vfio_pci", "vfio_iommu_spapr_tce"];
/// The `papr.run=nested` step.
pub const RUN_STEP: &str = include_str!("../../guest/nested/run-nested.sh");
/// L1's command line (after [`super::DEFAULT_CMDLINE`]): no disk checks of
/// its own, the nested step, and a quiet console (the step and /init print
/// what the test needs).
pub const L1_CMDLINE: &str = "quiet papr.disk=none papr.run=nested";

/// Without a second console in L1 (a manual run), the step prints L2's
/// lines on L1's console with this prefix.
pub const L2_PREFIX: &str = "L2| ";
/// L1 markers.
pub const MARK_L1_INIT: &str = super::MARK_INIT;
pub const MARK_KVM: &str = "papr-guest: nested: /dev/kvm ";
pub const MARK_L2_START: &str = "papr-guest: nested: starting L2";
pub const MARK_L2_EXIT: &str = "papr-guest: nested: L2 exited";
/// L2 markers (on L2's console, [`L2Console`]).
pub const MARK_L2_INIT: &str = super::MARK_INIT;
pub const MARK_L2_PASS: &str = super::MARK_PASS;

/// How L1 runs L2 (kernel command-line options of L1, read by the step).
#[derive(Clone, Debug, Default)]
pub struct L2Options {
    /// SLOF (QEMU's `slof.bin` from `qemu-system-data`) instead of papr-fw.
    pub slof: bool,
    /// `-prom-env` options for L2's firmware (`papr.l2env=KEY=VALUE`).
    pub prom_env: Vec<String>,
    /// Extra `-M pseries,...` options for L2 (`papr.l2mach=OPT`).
    pub machine_opts: Vec<String>,
    /// Extra words for L2's kernel command line (`papr.l2arg=WORD`).
    pub cmdline: Vec<String>,
    /// `-global` options for L2's QEMU (`papr.l2global=DRIVER.PROP=VALUE`).
    pub globals: Vec<String>,
}

impl L2Options {
    /// The L1 command-line words that say this.
    pub fn l1_cmdline(&self) -> String {
        let mut w = vec![format!(
            "papr.l2fw={}",
            if self.slof { "slof" } else { "papr" }
        )];
        w.extend(self.prom_env.iter().map(|e| format!("papr.l2env={e}")));
        w.extend(self.machine_opts.iter().map(|o| format!("papr.l2mach={o}")));
        w.extend(self.cmdline.iter().map(|o| format!("papr.l2arg={o}")));
        w.extend(self.globals.iter().map(|o| format!("papr.l2global={o}")));
        w.join(" ")
    }
}

/// The L1 image: its kernel and the cached part of its initramfs.
#[derive(Clone, Debug)]
pub struct NestedImage {
    /// L1's kernel (also L2's).
    pub l1: GuestImage,
    /// The gzip'd cpio with everything but papr-fw.
    pub parts: PathBuf,
    /// The emulator's version as packaged, e.g. "1:10.0.2+ds-2+deb13u1~bpo12+1".
    pub qemu_version: String,
    /// The files of the emulator's library closure (initramfs paths).
    pub libraries: Vec<String>,
}

/// The committed nested pins.
pub fn pins() -> Result<Vec<debs::Pin>, String> {
    let pins: Vec<debs::Pin> = debs::parse_lock(debs::LOCK_TEXT)?
        .into_iter()
        .filter(|p| p.role.starts_with(ROLE_PREFIX))
        .collect();
    for need in [QEMU_PACKAGE, DATA_PACKAGE] {
        if !pins.iter().any(|p| p.package == need) {
            return Err(format!(
                "qemu-tests/guest/packages.lock has no `{ROLE_PREFIX}{need}` line: run \
                 `cargo run -p qemu-tests --bin guest -- update-nested-pins`"
            ));
        }
    }
    Ok(pins)
}

/// `DT_NEEDED` names and the program interpreter (`PT_INTERP`) of a 64-bit
/// ELF file of either byte order.
pub fn elf_deps(data: &[u8]) -> Result<(Vec<String>, Option<String>), String> {
    type Hdr = object::elf::FileHeader64<object::Endianness>;
    let hdr = Hdr::parse(data).map_err(|e| format!("not a 64-bit ELF: {e}"))?;
    let endian = hdr.endian().map_err(|e| e.to_string())?;
    let mut interp = None;
    for ph in hdr
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?
    {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            let bytes = ph
                .data(endian, data)
                .map_err(|_| "bad PT_INTERP".to_string())?;
            let s = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
            interp = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    let sections = hdr.sections(endian, data).map_err(|e| e.to_string())?;
    let mut needed = Vec::new();
    if let Some((dyns, link)) = sections.dynamic(endian, data).map_err(|e| e.to_string())? {
        let strings = sections
            .strings(endian, data, link)
            .map_err(|e| e.to_string())?;
        for d in dyns {
            if d.tag32(endian) == Some(object::elf::DT_NEEDED) {
                let s = d.string(endian, strings).map_err(|e| e.to_string())?;
                needed.push(String::from_utf8_lossy(s).into_owned());
            }
        }
    }
    Ok((needed, interp))
}

/// A file of the closure: where it goes, where it is, who ships it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosureFile {
    /// Path in the initramfs (no leading `/`).
    pub dest: String,
    /// The real file (symbolic links followed).
    pub source: PathBuf,
    pub package: String,
}

/// Follow `rel` (a path inside a package) through symbolic links, which may
/// point into another of the unpacked packages (absolute targets are taken
/// relative to the packages' common root, as dpkg would install them).
fn resolve_file(roots: &[(String, PathBuf)], rel: &str) -> Option<(String, PathBuf)> {
    let mut rel = rel.trim_start_matches('/').to_string();
    for _ in 0..16 {
        let mut next = None;
        for (pkg, root) in roots {
            let p = root.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).ok()?;
                let t = target.to_string_lossy();
                next = Some(if t.starts_with('/') {
                    t.trim_start_matches('/').to_string()
                } else {
                    let parent = Path::new(&rel).parent().unwrap_or(Path::new(""));
                    normalize(&parent.join(&*t))
                });
                break;
            }
            if meta.is_file() {
                return Some((pkg.clone(), p));
            }
        }
        rel = next?;
    }
    None
}

/// `a/b/../c` → `a/c` (no file system access).
fn normalize(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// The files `binary` (a path inside one of `roots`) needs to run: itself,
/// its interpreter (at the interpreter's own path) and the transitive
/// closure of its `DT_NEEDED` libraries (each under [`LIB_DIR`] by its
/// needed name).  Names no package provides are an error.
pub fn library_closure(
    roots: &[(String, PathBuf)],
    binary: &str,
) -> Result<Vec<ClosureFile>, String> {
    let (pkg, src) =
        resolve_file(roots, binary).ok_or_else(|| format!("{binary} is in no package"))?;
    let mut files = vec![ClosureFile {
        dest: binary.to_string(),
        source: src.clone(),
        package: pkg,
    }];
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([src]);
    let mut missing = Vec::new();
    let mut interp_done = false;
    while let Some(path) = queue.pop_front() {
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (needed, interp) = elf_deps(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        if let (Some(i), false) = (interp, interp_done) {
            interp_done = true;
            let (pkg, src) = resolve_file(roots, &i)
                .ok_or_else(|| format!("the interpreter {i} is in no package"))?;
            files.push(ClosureFile {
                dest: i.trim_start_matches('/').to_string(),
                source: src,
                package: pkg,
            });
        }
        for n in needed {
            if !seen.insert(n.clone()) {
                continue;
            }
            let found = SEARCH_DIRS
                .iter()
                .find_map(|d| resolve_file(roots, &format!("{d}/{n}")));
            match found {
                Some((pkg, src)) => {
                    queue.push_back(src.clone());
                    files.push(ClosureFile {
                        dest: format!("{LIB_DIR}/{n}"),
                        source: src,
                        package: pkg,
                    });
                }
                None => missing.push(n),
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no package provides {missing:?} (needed by {binary}); run \
             `cargo run -p qemu-tests --bin guest -- update-nested-pins`"
        ));
    }
    Ok(files)
}

/// Read the archive for the newest [`QEMU_PACKAGE`] of [`QEMU_SUITE`]: list
/// what installing it (without recommends) on an empty system takes, download
/// all of that, work out the library closure and return pins for the packages
/// that contribute a file, plus [`DATA_PACKAGE`].  For
/// `guest update-nested-pins`.
pub fn resolve_pins() -> Result<Vec<debs::Pin>, String> {
    let apt = debs::Apt::new()?;
    apt.update()?;
    let work = debs::guest_cache().join(format!("nested-resolve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let out = apt.get(
        &[
            "-s",
            "-q",
            "install",
            "--no-install-recommends",
            "-t",
            QEMU_SUITE,
            QEMU_PACKAGE,
        ],
        &work,
    )?;
    if !out.status.success() {
        return Err(format!(
            "simulated install of {QEMU_PACKAGE} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // "Inst NAME (VERSION SUITE [ARCH])".
    let list: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("Inst ")?.split_whitespace();
            let name = w.next()?.to_string();
            let version = w.next()?.trim_start_matches('(').to_string();
            Some((name, version))
        })
        .collect();
    if !list.iter().any(|(n, _)| n == QEMU_PACKAGE) {
        return Err(format!(
            "the simulated install does not list {QEMU_PACKAGE}"
        ));
    }
    let specs: Vec<String> = list.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut args = vec!["download", "-q"];
    args.extend(specs.iter().map(String::as_str));
    let out = apt.get(&args, &work)?;
    if !out.status.success() {
        return Err(format!(
            "apt-get download failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _lock = super::lock_cache()?;
    let mut pins = Vec::new();
    let mut roots = Vec::new();
    let mut stats = debs::FetchStats::default();
    for ent in std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let path = ent.path();
        let file = ent.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".deb") else {
            continue;
        };
        let name = stem.split('_').next().unwrap_or("");
        let Some((_, version)) = list.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let pin = debs::Pin {
            role: format!("{ROLE_PREFIX}{name}"),
            package: name.to_string(),
            version: version.clone(),
            sha256: debs::sha256_file(&path)?,
            size: std::fs::metadata(&path).map_err(|e| e.to_string())?.len(),
        };
        let root = pin.root();
        if !root.is_dir() {
            let deb = debs::guest_cache().join("debs").join(format!(
                "{}_{}_ppc64el.deb",
                pin.package,
                pin.version.replace(':', "%3a")
            ));
            std::fs::rename(&path, &deb).map_err(|e| format!("{}: {e}", deb.display()))?;
        }
        let mut none = None;
        roots.push((
            name.to_string(),
            debs::ensure_unpacked(&pin, &mut none, &mut stats)?,
        ));
        pins.push(pin);
    }
    let _ = std::fs::remove_dir_all(&work);
    let closure = library_closure(&roots, QEMU_BINARY)?;
    let used: BTreeSet<&str> = closure.iter().map(|f| f.package.as_str()).collect();
    pins.retain(|p| used.contains(p.package.as_str()) || p.package == DATA_PACKAGE);
    pins.sort_by(|a, b| a.role.cmp(&b.role));
    Ok(pins)
}

/// The L1 image, built or from the cache.
pub fn ensure() -> Result<NestedImage, Error> {
    let l1 = super::ensure(KERNEL)?;
    ensure_inner(l1).map_err(|e| Error(format!("nested guest: {e}")))
}

fn ensure_inner(l1: GuestImage) -> Result<NestedImage, String> {
    let _lock = super::lock_cache()?;
    let pins = pins()?;
    let kpin = debs::pin(&KERNEL.role())?;
    let bpin = debs::pin("busybox")?;
    let mut apt = None;
    let mut stats = debs::FetchStats::default();
    let mut roots = Vec::new();
    for p in &pins {
        roots.push((
            p.package.clone(),
            debs::ensure_unpacked(p, &mut apt, &mut stats)?,
        ));
    }
    let broot = debs::ensure_unpacked(&bpin, &mut apt, &mut stats)?;
    let qemu_version = pins
        .iter()
        .find(|p| p.package == QEMU_PACKAGE)
        .map(|p| p.version.clone())
        .unwrap_or_default();

    let mut h = Sha256::new();
    let pin_lines: Vec<String> = pins.iter().map(|p| p.line()).collect();
    let l2_initrd_stamp =
        std::fs::read_to_string(l1.initrd.with_file_name("initrd.stamp")).unwrap_or_default();
    for part in [
        kpin.line().as_str(),
        bpin.line().as_str(),
        &pin_lines.join("\n"),
        &L1_MODULES.join(","),
        super::INIT_SCRIPT,
        RUN_STEP,
        l2_initrd_stamp.trim(),
        include_str!("nested.rs"),
        include_str!("cpio.rs"),
        include_str!("modules.rs"),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let stamp = debs::hex(&h.finalize());
    let out = debs::guest_cache().join("nested");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let parts = out.join("l1-parts.gz");
    let stamp_path = out.join("l1-parts.stamp");
    let libs_path = out.join("l1-parts.files");
    let current = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    if !parts.is_file() || current.trim() != stamp || !libs_path.is_file() {
        let (gz, files) = build_parts(&l1, &broot, &roots)?;
        let tmp = out.join(format!("l1-parts.gz.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &gz).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &parts).map_err(|e| format!("{}: {e}", parts.display()))?;
        std::fs::write(&libs_path, files.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", libs_path.display()))?;
        std::fs::write(&stamp_path, format!("{stamp}\n"))
            .map_err(|e| format!("{}: {e}", stamp_path.display()))?;
    }
    let libraries = std::fs::read_to_string(&libs_path)
        .map_err(|e| format!("{}: {e}", libs_path.display()))?
        .lines()
        .map(str::to_string)
        .collect();
    Ok(NestedImage {
        l1,
        parts,
        qemu_version,
        libraries,
    })
}

/// The cached archive: see the module documentation.  Also returns the
/// closure's initramfs paths.
fn build_parts(
    l1: &GuestImage,
    busybox_root: &Path,
    roots: &[(String, PathBuf)],
) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut c = cpio::Cpio::new();
    for d in ["dev", "proc", "sys", "root", "bin", "etc/papr/run", "l2"] {
        c.dir(d, 0o755);
    }
    c.dir("tmp", 0o1777);
    c.char_dev("dev/console", 0o600, 5, 1);
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    c.file(
        "bin/busybox",
        0o755,
        &read(&busybox_root.join("bin/busybox"))?,
    );
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, super::INIT_SCRIPT.as_bytes());

    let index = modules::ModuleIndex::scan(&l1.root.join("lib/modules").join(&l1.release))?;
    let mut list = String::new();
    for (name, path) in index.load_order(L1_MODULES)? {
        let dest = format!("lib/modules/{}/{name}.ko", l1.release);
        c.file(&dest, 0o644, &modules::read_module(&path)?);
        list.push_str(&format!("/{dest}\n"));
    }
    c.file("etc/papr/modules", 0o644, list.as_bytes());
    // No disk of L1's own; the step's settings.
    c.file(
        "etc/papr/config",
        0o644,
        format!("PAPR_DISK=none\nL2_PREFIX='{L2_PREFIX}'\nLIB_DIR=/{LIB_DIR}\n").as_bytes(),
    );
    c.file("etc/papr/run/nested", 0o644, RUN_STEP.as_bytes());

    let closure = library_closure(roots, QEMU_BINARY)?;
    let mut dests = Vec::new();
    let mut done = BTreeMap::new();
    for f in &closure {
        if done.insert(f.dest.clone(), ()).is_some() {
            continue;
        }
        c.file(&f.dest, 0o755, &read(&f.source)?);
        dests.push(f.dest.clone());
    }
    // SLOF for L2 (the package is architecture-independent).
    let slof = roots
        .iter()
        .find(|(p, _)| p == DATA_PACKAGE)
        .map(|(_, r)| r.join("usr/share/qemu/slof.bin"))
        .ok_or("no qemu-system-data")?;
    c.file("l2/slof.bin", 0o644, &read(&slof)?);
    // L2's kernel and initramfs.
    c.file("l2/vmlinux", 0o644, &read(&l1.vmlinux)?);
    c.file("l2/initrd.gz", 0o644, &read(&l1.initrd)?);
    let archive = c.finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&archive).map_err(|e| e.to_string())?;
    Ok((gz.finish().map_err(|e| e.to_string())?, dests))
}

impl NestedImage {
    /// L1's initramfs with `firmware` as L2's papr-fw (`/l2/papr-fw.bin`):
    /// the cached archive followed by a small one, written to a temporary
    /// file named after `name` (removed when the returned value drops).
    pub fn initrd_with(&self, firmware: &Path, name: &str) -> Result<TempFile, Error> {
        let err = |e: String| Error(format!("nested initramfs: {e}"));
        let fw =
            std::fs::read(firmware).map_err(|e| err(format!("{}: {e}", firmware.display())))?;
        let mut c = cpio::Cpio::new();
        c.dir("l2", 0o755);
        c.file("l2/papr-fw.bin", 0o644, &fw);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&c.finish()).map_err(|e| err(e.to_string()))?;
        let small = gz.finish().map_err(|e| err(e.to_string()))?;
        let path = std::env::temp_dir().join(format!(
            "papr-nested-{name}-{}-{}.gz",
            std::process::id(),
            super::DISK_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let mut f =
            std::fs::File::create(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let mut src = std::fs::File::open(&self.parts)
            .map_err(|e| err(format!("{}: {e}", self.parts.display())))?;
        std::io::copy(&mut src, &mut f).map_err(|e| err(e.to_string()))?;
        f.write_all(&small).map_err(|e| err(e.to_string()))?;
        Ok(TempFile(path))
    }

    /// The outer machine: L0 is `-M pseries,cap-nested-hv=on -cpu power9`
    /// with 2 GiB, `l1_firmware`, L1's kernel with `initrd` and the command
    /// line for `l2`, `disk` on an NVMe (L1 gives it to L2) and a second
    /// console (L1's /dev/hvc1, L2's console) written to `l2_console`'s file.
    pub fn config(
        &self,
        l1_firmware: Firmware,
        initrd: &TempFile,
        disk: &Disk,
        l2: &L2Options,
        l2_console: &TempFile,
    ) -> Config {
        let extra = format!("{L1_CMDLINE} {}", l2.l1_cmdline());
        let mut cmdline = super::DEFAULT_CMDLINE.to_string();
        cmdline.push(' ');
        cmdline.push_str(&extra);
        Config::new()
            .firmware(l1_firmware)
            .machine_opt("cap-nested-hv=on")
            .memory("2G")
            .args([
                "-cpu",
                "power9",
                "-kernel",
                &self.l1.vmlinux.display().to_string(),
                "-initrd",
                &initrd.0.display().to_string(),
                "-append",
                &cmdline,
                "-no-reboot",
                "-chardev",
                &format!("file,id=l2con,path={}", l2_console.0.display()),
                "-device",
                "spapr-vty,chardev=l2con",
            ])
            .args(disk.nvme_args())
    }
}

impl TempFile {
    /// A path in the temporary directory for `name` (nothing created).
    pub fn temp(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "papr-nested-{name}-{}-{}",
            std::process::id(),
            super::DISK_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        )))
    }
}

/// Start L0 with `cfg` (from [`NestedImage::config`] with `l2_console`) and
/// follow L2's console.
pub fn start(cfg: &Config, l2_console: &TempFile) -> (Machine, L2Console) {
    let m = cfg.start();
    let started = Instant::now()
        .checked_sub(m.elapsed())
        .unwrap_or_else(Instant::now);
    let con = L2Console::follow(&l2_console.0, started);
    (m, con)
}

/// The bytes so far and, per piece, when it arrived and where it ends.
type Arrivals = (Vec<u8>, Vec<(Duration, usize)>);

/// L2's console as L0 writes it to a file (L1's second console): a thread
/// follows the file and notes when each piece arrived, so L2's milestones are
/// timed like L1's on L0's own console.
pub struct L2Console {
    shared: Arc<(Mutex<Arrivals>, Condvar)>,
    stop: Arc<AtomicBool>,
    cursor: usize,
}

impl L2Console {
    /// Follow `file`; times count from `started` (L0's start).
    pub fn follow(file: &Path, started: Instant) -> L2Console {
        let shared = Arc::new((Mutex::new((Vec::new(), Vec::new())), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, path) = (shared.clone(), stop.clone(), file.to_path_buf());
        std::thread::spawn(move || {
            let mut f = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let stopping = st.load(Ordering::SeqCst);
                if f.is_none() {
                    f = std::fs::File::open(&path).ok();
                }
                let n = f.as_mut().and_then(|f| f.read(&mut buf).ok()).unwrap_or(0);
                if n > 0 {
                    let (lock, cv) = &*s;
                    let mut g = lock.lock().unwrap();
                    g.0.extend_from_slice(&buf[..n]);
                    let end = g.0.len();
                    g.1.push((started.elapsed(), end));
                    cv.notify_all();
                    continue;
                }
                if stopping {
                    return;
                }
                // Following a file that another process appends to: poll it.
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        L2Console {
            shared,
            stop,
            cursor: 0,
        }
    }

    /// Wait until `needle` appears after what was matched before; the time
    /// (from L0's start) its first byte arrived.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap();
        loop {
            let hay = &g.0[self.cursor..];
            if let Some(pos) = hay
                .windows(needle.len().max(1))
                .position(|w| w == needle.as_bytes())
            {
                let start = self.cursor + pos;
                self.cursor = start + needle.len();
                return g.1.iter().find(|(_, end)| *end > start).map(|(t, _)| *t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Everything so far, `\r` removed.
    pub fn text(&self) -> String {
        let g = self.shared.0.lock().unwrap();
        String::from_utf8_lossy(&g.0).replace('\r', "")
    }
}

impl Drop for L2Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A file removed when dropped.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// When a nested run got where, from L0's start.
#[derive(Clone, Copy, Debug)]
pub struct NestedTimes {
    /// L1's /init.
    pub l1_init: Duration,
    /// L1 starts L2's QEMU.
    pub l2_start: Duration,
    /// L2's /init.
    pub l2_init: Duration,
    /// L2's verdict.
    pub l2_verdict: Duration,
    /// L0's QEMU exited.
    pub exit: Duration,
}

impl NestedTimes {
    /// L2's QEMU start to L2's /init.
    pub fn l2_to_init(&self) -> Duration {
        self.l2_init.saturating_sub(self.l2_start)
    }
}

impl std::fmt::Display for NestedTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "L1 init {:.2}s, L2 start {:.2}s, L2 init {:.2}s (L2 to init {:.2}s), L2 verdict {:.2}s, exit {:.2}s",
            self.l1_init.as_secs_f64(),
            self.l2_start.as_secs_f64(),
            self.l2_init.as_secs_f64(),
            self.l2_to_init().as_secs_f64(),
            self.l2_verdict.as_secs_f64(),
            self.exit.as_secs_f64()
        )
    }
}

/// A nested run to its end, split by level.
#[derive(Debug)]
pub struct NestedRun {
    /// Both consoles as L0 printed them (L1's, then L2's after a marker
    /// line), for failure messages.
    pub log: String,
    /// L1's console without papr-fw's trace lines, and those lines.
    pub l1: String,
    pub l1_trace: Vec<String>,
    /// L2's console without its papr-fw's trace lines, and those.
    pub l2: String,
    pub l2_trace: Vec<String>,
    pub l1_report: Report,
    pub l2_report: Report,
    pub times: NestedTimes,
}

impl NestedRun {
    /// Wait (each step at most `timeout_secs`) for L1's init, L2's start,
    /// init and verdict (on `l2`), L1's power-off and L0 exiting with 0;
    /// panics with both consoles if a step does not come.
    #[track_caller]
    pub fn finish(m: &mut Machine, l2: &mut L2Console, timeout_secs: u64) -> NestedRun {
        Self::finish_inner(m, l2, timeout_secs, true)
    }

    /// [`finish`](Self::finish) for a run in which L2 is expected to die
    /// before its verdict: only L1's steps are waited for (L2's times are
    /// then zero).
    #[track_caller]
    pub fn finish_without_l2_verdict(
        m: &mut Machine,
        l2: &mut L2Console,
        timeout_secs: u64,
    ) -> NestedRun {
        Self::finish_inner(m, l2, timeout_secs, false)
    }

    #[track_caller]
    fn finish_inner(
        m: &mut Machine,
        l2: &mut L2Console,
        timeout_secs: u64,
        l2_verdict: bool,
    ) -> NestedRun {
        let l1_init = m.wait_for(MARK_L1_INIT, timeout_secs);
        let l2_start = m.wait_for(MARK_L2_START, timeout_secs);
        let (l2_init, l2_verdict) = if l2_verdict {
            let secs = Duration::from_secs(timeout_secs);
            let mut step = |needle: &str| {
                l2.expect(needle, secs).unwrap_or_else(|| {
                    panic!(
                        "timed out after {timeout_secs}s waiting for {needle:?} on L2's console\n\
                         --- L1 ---\n{}\n--- L2 ---\n{}",
                        m.log(),
                        l2.text()
                    )
                })
            };
            (step(MARK_L2_INIT), step(super::MARK_POWEROFF))
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let l1_step = |m: &mut Machine, needle: &str| {
            if let Err(f) = m.expect(needle, Duration::from_secs(timeout_secs)) {
                panic!("{f}\n--- L2 ---\n{}", l2.text());
            }
        };
        l1_step(m, MARK_L2_EXIT);
        l1_step(m, super::MARK_POWEROFF);
        if let Err(f) = m.expect_exit(Duration::from_secs(timeout_secs.min(60))) {
            panic!("{f}\n--- L2 ---\n{}", l2.text());
        }
        let exit = m.elapsed();
        let l1_all = m.log();
        let l2_all = l2.text();
        let (l1, l1_trace) = rtas_trace::split_rtas_trace(&l1_all);
        let (l2c, l2_trace) = rtas_trace::split_rtas_trace(&l2_all);
        NestedRun {
            l1_report: Report::parse(&l1),
            l2_report: Report::parse(&l2c),
            log: format!("{l1_all}\n--- L2's console ---\n{l2_all}"),
            l1,
            l1_trace,
            l2: l2c,
            l2_trace,
            times: NestedTimes {
                l1_init,
                l2_start,
                l2_init,
                l2_verdict,
                exit,
            },
        }
    }

    /// L1's DMA-window trace lines.
    pub fn l1_ddw(&self) -> Vec<&str> {
        rtas_trace::ddw_lines(&self.l1_trace)
    }

    /// L2's DMA-window trace lines.
    pub fn l2_ddw(&self) -> Vec<&str> {
        rtas_trace::ddw_lines(&self.l2_trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_options_on_the_l1_command_line() {
        let o = L2Options {
            slof: false,
            prom_env: vec!["rtas-trace=on".into()],
            machine_opts: vec!["cap-sbbc=broken".into()],
            cmdline: vec![],
            globals: vec!["spapr-pci-host-bridge.ddw=off".into()],
        };
        assert_eq!(
            o.l1_cmdline(),
            "papr.l2fw=papr papr.l2env=rtas-trace=on papr.l2mach=cap-sbbc=broken \
             papr.l2global=spapr-pci-host-bridge.ddw=off"
        );
        assert_eq!(L2Options::default().l1_cmdline(), "papr.l2fw=papr");
    }

    #[test]
    fn elf_deps_of_garbage_is_an_error() {
        assert!(elf_deps(b"nope").is_err());
        assert!(elf_deps(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).is_err());
    }

    #[test]
    fn path_normalisation() {
        assert_eq!(normalize(Path::new("lib/x/../y/./z.so")), "lib/y/z.so");
    }

    #[test]
    fn nested_pins_are_committed() {
        let p = pins().unwrap();
        assert!(p.iter().any(|p| p.package == QEMU_PACKAGE));
        assert!(p.iter().any(|p| p.package == "libc6"));
    }
}
