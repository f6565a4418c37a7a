//! Pinned Debian ppc64el packages, fetched with a private apt configuration.
//!
//! `qemu-tests/guest/packages.lock` names each package the guests use, with
//! its exact version, SHA-256 and size.  A missing package is downloaded with
//! `apt-get download` using apt state of its own under
//! `<cache>/apt-ppc64el` (own sources list, lists, archives and status;
//! `APT::Architecture=ppc64el`), checked against the pin, and unpacked with
//! `dpkg-deb -x` into `<cache>/guest/pkgs/<package>_<version>`.  Nothing is
//! installed on the host, and once unpacked nothing is downloaded again.
//! An index that fails to download (bookworm-security has been seen to) is
//! tolerated: apt then uses the others.

use crate::paths;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The pins, as committed.
pub const LOCK_TEXT: &str = include_str!("../../guest/packages.lock");

/// The lock file in the source tree (for `guest update-pins`).
pub fn lock_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("guest/packages.lock")
}

/// The suites the private apt configuration reads.
pub const SOURCES: &[(&str, &str)] = &[
    ("http://deb.debian.org/debian", "bookworm"),
    ("http://deb.debian.org/debian", "bookworm-updates"),
    ("http://deb.debian.org/debian-security", "bookworm-security"),
    ("http://deb.debian.org/debian", "bookworm-backports"),
];

/// One line of the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// What the project uses it for: `kernel-6.1`, `kernel-6.12`,
    /// `kernel-6.12-64k`, `busybox`.
    pub role: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

impl Pin {
    /// The directory the package is unpacked into.
    pub fn root(&self) -> PathBuf {
        guest_cache().join("pkgs").join(self.stem())
    }

    fn stem(&self) -> String {
        format!("{}_{}", self.package, self.version.replace(':', "%3a"))
    }

    fn deb(&self) -> PathBuf {
        guest_cache()
            .join("debs")
            .join(format!("{}_ppc64el.deb", self.stem()))
    }

    pub fn line(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.role, self.package, self.version, self.sha256, self.size
        )
    }
}

/// `<cache>/guest`.
pub fn guest_cache() -> PathBuf {
    paths::cache_dir().join("guest")
}

/// Parse the lock file: `role package version sha256 size` per line, `#`
/// comments and blank lines ignored.
pub fn parse_lock(text: &str) -> Result<Vec<Pin>, String> {
    let mut pins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| format!("packages.lock line {}: {why}: {line:?}", n + 1);
        if f.len() != 5 {
            return Err(bad("expected `role package version sha256 size`"));
        }
        if f[3].len() != 64 || !f[3].bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("bad SHA-256"));
        }
        let size = f[4].parse().map_err(|_| bad("bad size"))?;
        pins.push(Pin {
            role: f[0].into(),
            package: f[1].into(),
            version: f[2].into(),
            sha256: f[3].to_ascii_lowercase(),
            size,
        });
    }
    Ok(pins)
}

/// The committed pin for `role`.
pub fn pin(role: &str) -> Result<Pin, String> {
    parse_lock(LOCK_TEXT)?
        .into_iter()
        .find(|p| p.role == role)
        .ok_or_else(|| format!("qemu-tests/guest/packages.lock has no `{role}` line"))
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The private apt state.
pub struct Apt {
    dir: PathBuf,
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

impl Apt {
    pub fn new() -> Result<Apt, String> {
        let dir = paths::cache_dir().join("apt-ppc64el");
        for d in ["lists/partial", "archives/partial", "etc"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let sources: String = SOURCES
            .iter()
            .map(|(url, suite)| {
                format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {url} {suite} main\n")
            })
            .collect();
        let write = |p: PathBuf, s: &str| {
            std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
        };
        write(dir.join("etc/sources.list"), &sources)?;
        write(dir.join("status"), "")?;
        Ok(Apt { dir })
    }

    fn opts(&self) -> Vec<String> {
        let d = self.dir.display();
        [
            format!("Dir::Etc::SourceList={d}/etc/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".into(),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}"),
            format!("Dir::Cache::archives={d}/archives"),
            format!("Dir::State::status={d}/status"),
            "APT::Architecture=ppc64el".into(),
            "APT::Architectures=ppc64el".into(),
            "Debug::NoLocking=1".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::Languages=none".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn run(&self, tool: &str, args: &[&str], cwd: &Path) -> Result<std::process::Output, String> {
        Command::new(tool)
            .args(self.opts())
            .args(args)
            .current_dir(cwd)
            .output()
            .map_err(|e| format!("cannot run {tool} (a Debian host with apt is needed): {e}"))
    }

    /// `apt-get update` once per process.  Failing indexes only warn: the
    /// packages come from bookworm and bookworm-backports.
    pub fn update(&self) -> Result<(), String> {
        if APT_UPDATED.load(Ordering::SeqCst) {
            return Ok(());
        }
        let out = self.run("apt-get", &["update", "-q"], &self.dir)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let any_list = std::fs::read_dir(self.dir.join("lists"))
                .map(|rd| {
                    rd.flatten()
                        .any(|e| e.file_name().to_string_lossy().contains("Packages"))
                })
                .unwrap_or(false);
            if !any_list {
                return Err(format!(
                    "apt-get update (private, ppc64el) failed:\n{stderr}"
                ));
            }
            let first = stderr
                .lines()
                .find(|l| l.starts_with("E:"))
                .unwrap_or("")
                .trim();
            eprintln!("guest: warning: apt-get update: an index failed, using the others: {first}");
        }
        APT_UPDATED.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// `apt-get download package=version` into `dir`; the downloaded file.
    pub fn download(&self, pin: &Pin, dir: &Path) -> Result<PathBuf, String> {
        let spec = format!("{}={}", pin.package, pin.version);
        let out = self.run("apt-get", &["download", "-q", &spec], dir)?;
        if !out.status.success() {
            return Err(format!(
                "cannot download the pinned package {spec} (role {role}): Debian may have removed that \
                 version from the archive.\nUpdate qemu-tests/guest/packages.lock: run \
                 `cargo run -p qemu-tests --bin guest -- update-pins`, check the diff and commit it.\n\
                 apt-get said:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                role = pin.role,
            ));
        }
        let deb = std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| format!("apt-get download {spec} left no .deb in {}", dir.display()))?;
        Ok(deb)
    }

    /// `apt-get ARGS` with the private configuration, run in `cwd` (e.g. a
    /// simulated install, or downloading several packages at once).
    pub fn get(&self, args: &[&str], cwd: &Path) -> Result<std::process::Output, String> {
        self.run("apt-get", args, cwd)
    }

    /// `apt-cache` output for a query, as text.
    pub fn cache(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run("apt-cache", args, &self.dir)?;
        if !out.status.success() {
            return Err(format!(
                "apt-cache {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What a fetch did, for the report.
#[derive(Clone, Debug, Default)]
pub struct FetchStats {
    pub downloaded_bytes: u64,
    pub unpacked: Vec<String>,
}

/// Make sure `pin` is unpacked; returns its root.  Call with the guest lock
/// held.
pub fn ensure_unpacked(
    pin: &Pin,
    apt: &mut Option<Apt>,
    stats: &mut FetchStats,
) -> Result<PathBuf, String> {
    let root = pin.root();
    if root.is_dir() {
        return Ok(root);
    }
    let deb = pin.deb();
    let deb_ok = deb.is_file() && sha256_file(&deb)? == pin.sha256;
    if !deb_ok {
        if apt.is_none() {
            *apt = Some(Apt::new()?);
        }
        let apt = apt.as_ref().unwrap();
        apt.update()?;
        let tmp = guest_cache()
            .join("debs")
            .join(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let got = apt.download(pin, &tmp)?;
        let size = std::fs::metadata(&got).map_err(|e| e.to_string())?.len();
        let sum = sha256_file(&got)?;
        if sum != pin.sha256 || size != pin.size {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(format!(
                "{} {}: downloaded file has SHA-256 {sum} and {size} bytes, but \
                 qemu-tests/guest/packages.lock pins {} and {} bytes",
                pin.package, pin.version, pin.sha256, pin.size
            ));
        }
        std::fs::rename(&got, &deb).map_err(|e| format!("{}: {e}", deb.display()))?;
        let _ = std::fs::remove_dir_all(&tmp);
        stats.downloaded_bytes += size;
    }
    let tmp = root.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tmp)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    stats.unpacked.push(pin.stem());
    Ok(root)
}

/// The newest candidates for each role, read from the archive: the package
/// the metapackage of each line depends on (bookworm's
/// `linux-image-powerpc64le` for 6.1, bookworm-backports' for 6.12 and its
/// `-64k`), and `busybox-static` and `grub-ieee1275-bin` from bookworm.
pub fn resolve_latest() -> Result<Vec<Pin>, String> {
    let apt = Apt::new()?;
    apt.update()?;
    let wanted = [
        ("kernel-6.1", "linux-image-powerpc64le", "bookworm", true),
        (
            "kernel-6.12",
            "linux-image-powerpc64le",
            "bookworm-backports",
            true,
        ),
        (
            "kernel-6.12-64k",
            "linux-image-powerpc64le-64k",
            "bookworm-backports",
            true,
        ),
        ("busybox", "busybox-static", "bookworm", false),
        // GRUB's powerpc-ieee1275 modules for the boot disk (guest/grub.rs);
        // bookworm's, like the host's grub-mkimage.
        ("grub-ieee1275", "grub-ieee1275-bin", "bookworm", false),
    ];
    let mut pins = Vec::new();
    for (role, pkg, suite, meta) in wanted {
        let version = candidate_in(&apt, pkg, suite)?;
        let (package, version) = if meta {
            let rec = record(&apt, pkg, &version)?;
            let dep = field(&rec, "Depends")
                .and_then(|d| {
                    d.split(',')
                        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                        .find(|s| s.starts_with("linux-image-"))
                })
                .ok_or_else(|| format!("{pkg} {version}: no linux-image dependency"))?;
            let v = candidate_in(&apt, &dep, suite)?;
            (dep, v)
        } else {
            (pkg.to_string(), version)
        };
        let rec = record(&apt, &package, &version)?;
        pins.push(Pin {
            role: role.into(),
            sha256: field(&rec, "SHA256").ok_or("no SHA256 field")?,
            size: field(&rec, "Size")
                .and_then(|s| s.parse().ok())
                .ok_or("no Size field")?,
            package,
            version,
        });
    }
    Ok(pins)
}

/// The highest version of `pkg` that `suite` offers (from `apt-cache madison`).
fn candidate_in(apt: &Apt, pkg: &str, suite: &str) -> Result<String, String> {
    let out = apt.cache(&["madison", pkg])?;
    // Lines: "pkg | version | url suite/main ppc64el Packages", newest first.
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.len() == 3
                && f[2]
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|s| s.starts_with(&format!("{suite}/"))))
            .then(|| f[1].to_string())
        })
        .next()
        .ok_or_else(|| format!("{pkg} is not in {suite} (ppc64el)"))
}

fn record(apt: &Apt, pkg: &str, version: &str) -> Result<String, String> {
    let all = apt.cache(&["show", &format!("{pkg}={version}")])?;
    Ok(all.split("\n\n").next().unwrap_or("").to_string())
}

fn field(record: &str, name: &str) -> Option<String> {
    record
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_lock_parses_and_has_every_role() {
        let pins = parse_lock(LOCK_TEXT).unwrap();
        for role in [
            "kernel-6.1",
            "kernel-6.12",
            "kernel-6.12-64k",
            "busybox",
            "grub-ieee1275",
        ] {
            assert!(pins.iter().any(|p| p.role == role), "{role}");
        }
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse_lock("a b c").is_err());
        assert!(parse_lock("r p 1 nothex 5").is_err());
        let ok = format!("r p 1:2 {} 5 # note\n\n# c\n", "a".repeat(64));
        let p = parse_lock(&ok).unwrap();
        assert_eq!(p[0].version, "1:2");
        assert_eq!(p[0].stem(), "p_1%3a2");
        assert_eq!(parse_lock(&p[0].line()).unwrap(), p);
    }
}
