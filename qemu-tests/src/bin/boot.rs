//! `qemu-tests/boot.sh`: boot the default Linux guest on papr-fw, console on
//! this terminal: Debian's 6.12 kernel (`PAPR_KERNEL` or `--kernel` picks
//! 6.1 or 6.12-64k) with the test initramfs in `papr.mode=shell`, which runs
//! the NVMe disk checks and then gives an interactive busybox shell.
//! `poweroff -f` (or leaving the shell) ends QEMU; Ctrl-A x quits at once.
//!
//! Options (the rest goes to QEMU):
//!   --firmware PATH   the -bios image (default: the `cargo fw` output)
//!   --kernel K        6.1, 6.12 or 6.12-64k
//!   --disk PATH       the NVMe disk image (default `<cache>/guest/boot-disk.img`,
//!                     created seeded if missing)
//!   --append TEXT     more kernel command line
//!   --no-disk         no NVMe disk
use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::Firmware;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("boot: {msg}");
    std::process::exit(1);
}

fn main() {
    let mut firmware = qemu_tests::paths::firmware_bin();
    let mut kernel = std::env::var("PAPR_KERNEL")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| Kernel::from_label(&s).unwrap_or_else(|| fail(format!("PAPR_KERNEL={s}?"))))
        .unwrap_or(Kernel::V6_12);
    let mut disk_path = Some(guest::debs::guest_cache().join("boot-disk.img"));
    let mut append = String::from("papr.mode=shell");
    let mut qemu_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--firmware" => firmware = PathBuf::from(value()),
            "--kernel" => {
                let k = value();
                kernel = Kernel::from_label(&k).unwrap_or_else(|| fail(format!("no kernel {k}")))
            }
            "--disk" => disk_path = Some(PathBuf::from(value())),
            "--no-disk" => disk_path = None,
            "--append" => {
                append.push(' ');
                append.push_str(&value());
            }
            _ => qemu_args.push(a),
        }
    }
    if !firmware.exists() {
        fail(format!("{} is missing: run `cargo fw`", firmware.display()));
    }
    let img = guest::ensure(kernel).unwrap_or_else(|e| fail(e));
    let disk = disk_path.map(|p| {
        if p.exists() {
            Disk::open(&p)
        } else {
            Disk::create(&p, guest::DEFAULT_DISK_SIZE)
        }
        .unwrap_or_else(|e| fail(format!("{}: {e}", p.display())))
    });

    let cfg = img
        .config(Firmware::Image(firmware.clone()), disk.as_ref(), &append)
        .args(&qemu_args);
    // The console is this terminal, with QEMU's monitor on Ctrl-A c.
    let mut line = cfg.command_line();
    if let Some(i) = line.iter().position(|a| a == "-monitor") {
        line.drain(i..i + 2);
    }
    if let Some(i) = line.iter().position(|a| a == "-serial") {
        line[i + 1] = "mon:stdio".into();
    }
    eprintln!(
        "boot: {} ({})\nboot: papr-fw {}, Linux {}{}; quit with `poweroff -f` or Ctrl-A x",
        cfg.qemu.binary.display(),
        cfg.qemu.version(),
        firmware.display(),
        img.release,
        disk.as_ref()
            .map(|d| format!(", NVMe disk {}", d.path.display()))
            .unwrap_or_default(),
    );
    let err = Command::new(&cfg.qemu.binary).args(&line).exec();
    fail(format!("cannot run {}: {err}", cfg.qemu.binary.display()));
}
