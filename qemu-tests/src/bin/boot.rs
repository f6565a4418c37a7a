//! `qemu-tests/boot.sh`: run papr-fw interactively, console on this terminal.
//! Until papr-fw boots Linux this shows the firmware's platform summary.
use qemu_tests::qemu::QemuBin;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut firmware = qemu_tests::paths::firmware_bin().display().to_string();
    if let Some(i) = args.iter().position(|a| a == "--firmware") {
        if i + 1 < args.len() {
            firmware = args.remove(i + 1);
        }
        args.remove(i);
    }
    let qemu = QemuBin::selected();
    let mut cmd = Command::new(&qemu.binary);
    cmd.args([
        "-M",
        "pseries",
        "-m",
        "2G",
        "-display",
        "none",
        "-nodefaults",
    ])
    .args(["-serial", "mon:stdio", "-action", "panic=exit-failure"])
    .args(["-bios", &firmware])
    .args(&args);
    eprintln!("boot: {} ({})", qemu.binary.display(), qemu.version());
    let err = cmd.exec();
    eprintln!("boot: cannot run {}: {err}", qemu.binary.display());
    std::process::exit(1);
}
