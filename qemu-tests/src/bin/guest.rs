//! `cargo run -p qemu-tests --bin guest -- [6.1|6.12|6.12-64k|all|nested]...`:
//! fetch and build the test guests (cached; see `qemu_tests::guest`) and print
//! one line per kernel, `<label> <vmlinux> <initrd>`, for scripts (`nested`:
//! the nested-KVM L1 material, `nested <vmlinux> <cached initramfs part>`).
//!
//! Other commands:
//! * `update-pins` — read the newest versions from the archive and rewrite
//!   `qemu-tests/guest/packages.lock` (when Debian dropped a pinned version);
//! * `update-nested-pins` — resolve the nested L1's ppc64el QEMU and the
//!   packages of its library closure anew (`qemu_tests::guest::nested`) and
//!   rewrite their lines of the lock;
//! * `disk <path> [MiB]` — create a seeded NVMe test disk;
//! * `verify-disk <path>` — check a disk after a guest ran its checks.
use qemu_tests::guest::{self, Kernel};
use std::time::Instant;

fn usage() -> ! {
    eprintln!(
        "usage: guest [6.1|6.12|6.12-64k|all|nested]...   (default: all)\n\
         \x20      guest update-pins\n\
         \x20      guest update-nested-pins\n\
         \x20      guest disk <path> [size in MiB]\n\
         \x20      guest verify-disk <path>"
    );
    std::process::exit(2);
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("{e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("update-pins") => update_pins(),
        Some("update-nested-pins") => update_nested_pins(),
        Some("disk") => {
            let path = args.get(1).unwrap_or_else(|| usage());
            let mib: u64 = match args.get(2) {
                Some(s) => s.parse().unwrap_or_else(|_| usage()),
                None => guest::DEFAULT_DISK_SIZE >> 20,
            };
            let d = guest::Disk::create(path.as_ref(), mib << 20)
                .unwrap_or_else(|e| fail(format!("guest: {e}")));
            println!("{}", d.path.display());
        }
        Some("verify-disk") => {
            let path = args.get(1).unwrap_or_else(|| usage());
            let d = guest::Disk::open(path.as_ref())
                .unwrap_or_else(|e| fail(format!("guest: {path}: {e}")));
            match d.verify_after_guest() {
                Ok(()) => println!("{path}: seed and guest data OK"),
                Err(e) => fail(format!("guest: {e}")),
            }
        }
        _ => ensure_all(&args),
    }
}

fn ensure_all(args: &[String]) {
    let mut kernels = Vec::new();
    let mut nested = false;
    for a in args {
        match a.as_str() {
            "all" => kernels.extend(Kernel::ALL),
            "nested" => nested = true,
            "-h" | "--help" => usage(),
            l => kernels.push(Kernel::from_label(l).unwrap_or_else(|| usage())),
        }
    }
    if kernels.is_empty() && !nested {
        kernels.extend(Kernel::ALL);
    }
    for k in kernels {
        let t = Instant::now();
        let (img, st) = guest::ensure_with_stats(k).unwrap_or_else(|e| fail(e));
        eprintln!(
            "guest {}: {} in {:.1}s (downloaded {:.1} MB, unpacked {:?}, initramfs {} ({} bytes))",
            k.label(),
            img.release,
            t.elapsed().as_secs_f64(),
            st.fetch.downloaded_bytes as f64 / 1e6,
            st.fetch.unpacked,
            if st.built_initrd { "built" } else { "cached" },
            st.initrd_bytes,
        );
        println!(
            "{} {} {}",
            k.label(),
            img.vmlinux.display(),
            img.initrd.display()
        );
    }
    if nested {
        let t = Instant::now();
        let img = guest::nested::ensure().unwrap_or_else(|e| fail(e));
        eprintln!(
            "guest nested: L1 parts {} ({} bytes; QEMU {}, {} files with its libraries) in {:.1}s",
            img.parts.display(),
            std::fs::metadata(&img.parts).map(|m| m.len()).unwrap_or(0),
            img.qemu_version,
            img.libraries.len(),
            t.elapsed().as_secs_f64()
        );
        println!(
            "nested {} {}",
            img.l1.vmlinux.display(),
            img.parts.display()
        );
    }
}

fn update_pins() {
    let old = guest::debs::parse_lock(guest::debs::LOCK_TEXT)
        .unwrap_or_else(|e| fail(format!("guest: {e}")));
    let new = guest::debs::resolve_latest().unwrap_or_else(|e| fail(format!("guest: {e}")));
    let header: String = guest::debs::LOCK_TEXT
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut body: String = new.iter().map(|p| format!("{}\n", p.line())).collect();
    // The nested set (`update-nested-pins`) is kept as it is.
    let kept = nested_lines(&old);
    if !kept.is_empty() {
        body.push_str(NESTED_COMMENT);
        body.push('\n');
        body.extend(kept);
    }
    for p in &new {
        match old.iter().find(|o| o.role == p.role) {
            Some(o) if o == p => eprintln!("{}: unchanged ({} {})", p.role, p.package, p.version),
            Some(o) => eprintln!(
                "{}: {} {} -> {} {}",
                p.role, o.package, o.version, p.package, p.version
            ),
            None => eprintln!("{}: new {} {}", p.role, p.package, p.version),
        }
    }
    let path = guest::debs::lock_path();
    std::fs::write(&path, header + &body).unwrap_or_else(|e| fail(format!("guest: {e}")));
    println!("{}", path.display());
}

fn nested_lines(pins: &[guest::debs::Pin]) -> Vec<String> {
    pins.iter()
        .filter(|p| p.role.starts_with(guest::nested::ROLE_PREFIX))
        .map(|p| format!("{}\n", p.line()))
        .collect()
}

fn update_nested_pins() {
    let old = guest::debs::parse_lock(guest::debs::LOCK_TEXT)
        .unwrap_or_else(|e| fail(format!("guest: {e}")));
    let new = guest::nested::resolve_pins().unwrap_or_else(|e| fail(format!("guest: {e}")));
    let mut text: String = guest::debs::LOCK_TEXT
        .lines()
        .filter(|l| {
            !guest::debs::parse_lock(l)
                .map(|p| {
                    p.iter()
                        .any(|p| p.role.starts_with(guest::nested::ROLE_PREFIX))
                })
                .unwrap_or(false)
                && !l.starts_with(NESTED_COMMENT)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(NESTED_COMMENT);
    text.push('\n');
    text.extend(nested_lines(&new));
    let before: Vec<String> = nested_lines(&old);
    let after: Vec<String> = nested_lines(&new);
    eprintln!(
        "nested: {} packages ({} lines changed)",
        new.len(),
        after.iter().filter(|l| !before.contains(l)).count()
    );
    let path = guest::debs::lock_path();
    std::fs::write(&path, text).unwrap_or_else(|e| fail(format!("guest: {e}")));
    println!("{}", path.display());
}

const NESTED_COMMENT: &str = "# nested: the L1's ppc64el QEMU and its library closure (guest/nested.rs; `guest update-nested-pins`)";
