//! Booting an installed-style disk (the issue "Boot from disks the way SLOF
//! does"): GRUB for powerpc-ieee1275 in a GPT PReP partition, an ext4
//! `/boot` with Debian's 6.1 kernel, the test initramfs and grub.cfg
//! (`qemu_tests::guest::grub`), booted without `-kernel`:
//!
//! * on papr-fw from NVMe (the disk is also the guest's checked disk: data
//!   written and read back, verified again on the host), virtio-blk
//!   (QEMU's transitional device, guest-physical DMA), virtio-blk with
//!   `disable-legacy=on,iommu_platform=on` (DMA through TCEs) and
//!   virtio-scsi (`scsi-hd`), each to the guest's /init with its checks
//!   passing (virtio boots check a second, NVMe, disk);
//! * boot order: a blank disk with `bootindex=1` is tried first and fallen
//!   through; nothing bootable ends with papr-fw's message and a power-off;
//! * the differential: the same disk boots on SLOF from virtio-blk and
//!   virtio-scsi, and SLOF fails on NVMe (it has no NVMe driver);
//! * a little-endian ELF64 in the PReP partition (Debian's ppc64el vmlinux
//!   itself, linked at physical 0, so papr-fw moves it) is entered in
//!   little-endian mode and runs prom_init to the kernel's first printk.
//!
//! QEMU is `PAPR_QEMU` (7.2 default, or 10.0); timings go to stderr
//! (`--nocapture`).

use qemu_tests::guest::grub::{self, Bus, GrubDisk};
use qemu_tests::guest::{self, Disk, GuestRun, Kernel};
use qemu_tests::qemu::{Config, Firmware};
use std::time::Duration;

/// Per-step limit: generous, as several QEMUs may share the two cores.
const STEP_SECS: u64 = 180;
const KERNEL: Kernel = Kernel::V6_1;

fn grub_disk() -> GrubDisk {
    grub::ensure(KERNEL).unwrap_or_else(|e| panic!("{e}"))
}

fn machine(fw: Firmware, args: &[String]) -> Config {
    Config::new()
        .firmware(fw)
        .memory("2G")
        .args(args)
        .arg("-no-reboot")
}

fn fw_name(fw: &Firmware) -> &'static str {
    match fw {
        Firmware::PaprFw => "papr-fw",
        Firmware::Slof => "SLOF",
        Firmware::Vof => "VOF",
        Firmware::Image(_) => "image",
    }
}

/// Boot to the guest's power-off; GRUB's marker, the kernel and /init must
/// appear in order.  Prints the timings.
fn run(name: &str, cfg: &Config) -> (GuestRun, Duration) {
    let mut m = cfg.start();
    let grub_at = m.wait_for(grub::MARK_GRUB, STEP_SECS);
    m.wait_for(grub::MARK_GRUB_LINUX, STEP_SECS);
    let run = guest::run_to_poweroff(&mut m, STEP_SECS);
    eprintln!(
        "{name}: QEMU {}, {}: GRUB {:.2}s, {}",
        cfg.qemu.label,
        fw_name(&cfg.firmware),
        grub_at.as_secs_f64(),
        run.times
    );
    assert!(
        run.report.pass,
        "{name}: guest failed: {:?}\n{}",
        run.report.fail, run.log
    );
    assert!(run.report.seed_ok && run.report.write_ok, "{}", run.log);
    (run, grub_at)
}

/// Boot the GRUB disk on `bus` with papr-fw; virtio boots get a seeded NVMe
/// disk for the guest's checks.
fn papr_fw_boot(name: &str, bus: Bus) -> GuestRun {
    let g = grub_disk();
    let mut args = Vec::new();
    let mut copy = None;
    let mut data = None;
    if bus == Bus::Nvme {
        let c = g.temp_copy(name).unwrap();
        args.extend(grub::drive(&c.disk.path, "boot", false));
        copy = Some(c);
    } else {
        args.extend(g.drive_ro("boot"));
        let d = Disk::temp(name).unwrap();
        args.extend(d.nvme_args());
        data = Some(d);
    }
    args.extend(bus.device_args("boot", None));
    let (run, _) = run(name, &machine(Firmware::PaprFw, &args));
    let log = &run.log;
    assert!(
        log.contains("papr-fw: boot: ")
            && log.contains(": PReP partition 1 holds an ELF32 big-endian image: 0x200000-"),
        "{log}"
    );
    assert!(
        log.contains("papr-fw: booting /pci@800000020000000/"),
        "{log}"
    );
    assert!(log.contains("papr-fw: quiesce after "), "{log}");
    match (copy, data) {
        (Some(c), _) => c.disk.verify_after_guest().unwrap(),
        (_, Some(d)) => d.verify_after_guest().unwrap(),
        _ => unreachable!(),
    }
    run
}

#[test]
fn papr_fw_boots_grub_from_nvme() {
    let run = papr_fw_boot("grub-nvme", Bus::Nvme);
    assert!(run.log.contains("/mass-storage@"), "{}", run.log);
    assert!(
        run.log.contains("/namespace@1:1 at 0x200000"),
        "{}",
        run.log
    );
}

#[test]
fn papr_fw_boots_grub_from_virtio_blk() {
    let run = papr_fw_boot("grub-virtio-blk", Bus::VirtioBlk);
    assert!(
        run.log.contains("virtio-blk (guest-physical DMA)"),
        "{}",
        run.log
    );
}

#[test]
fn papr_fw_boots_grub_from_virtio_blk_with_iommu_platform() {
    let run = papr_fw_boot("grub-virtio-blk-iommu", Bus::VirtioBlkIommu);
    assert!(
        run.log.contains("virtio-blk (DMA through TCEs)"),
        "{}",
        run.log
    );
}

#[test]
fn papr_fw_boots_grub_from_virtio_scsi() {
    let run = papr_fw_boot("grub-virtio-scsi", Bus::VirtioScsi);
    assert!(
        run.log
            .contains("/disk@100000000000000: virtio-scsi (guest-physical DMA) target 0 lun 0: QEMU QEMU HARDDISK"),
        "{}",
        run.log
    );
}

/// A blank disk first in the boot order (bootindex=1) is fallen through;
/// the GRUB disk (bootindex=2) boots.
#[test]
fn boot_order_falls_through_to_the_next_disk() {
    let g = grub_disk();
    let c = g.temp_copy("grub-order").unwrap();
    let blank = Disk::temp("grub-order-blank").unwrap();
    let mut args = grub::drive(&blank.path, "blank", false);
    args.extend(Bus::VirtioBlk.device_args("blank", Some(1)));
    args.extend(grub::drive(&c.disk.path, "boot", false));
    args.extend(Bus::Nvme.device_args("boot", Some(2)));
    let cfg = machine(Firmware::PaprFw, &args);
    let mut m = cfg.start();
    m.wait_for(
        "papr-fw: boot: trying /pci@800000020000000/scsi@",
        STEP_SECS,
    );
    m.wait_for(": no partition table; trying the next device", STEP_SECS);
    m.wait_for(
        "papr-fw: boot: trying /pci@800000020000000/mass-storage@",
        STEP_SECS,
    );
    m.wait_for(grub::MARK_GRUB, STEP_SECS);
    let run = guest::run_to_poweroff(&mut m, STEP_SECS);
    eprintln!("grub-order: QEMU {}: {}", cfg.qemu.label, run.times);
    assert!(run.report.pass, "{}", run.log);
    c.disk.verify_after_guest().unwrap();
}

/// Two disks, neither bootable: the reasons, then a clean power-off.
#[test]
fn nothing_bootable_is_reported_and_powers_off() {
    let a = Disk::temp("grub-none-a").unwrap();
    let b = Disk::temp("grub-none-b").unwrap();
    let mut args = grub::drive(&a.path, "a", true);
    args.extend(Bus::VirtioScsi.device_args("a", None));
    args.extend(grub::drive(&b.path, "b", true));
    args.extend(Bus::Nvme.device_args("b", None));
    let cfg = machine(Firmware::PaprFw, &args);
    let mut m = cfg.start();
    m.wait_for(
        "papr-fw: nothing to boot: no -kernel, and none of 2 disks has a bootable PReP partition; ",
        STEP_SECS,
    );
    m.wait_for("; powering off", STEP_SECS);
    m.wait_exit(0, STEP_SECS);
}

/// The differential: SLOF boots the same disk from virtio-blk and from
/// virtio-scsi.
#[test]
fn slof_boots_the_same_disk_from_virtio() {
    let g = grub_disk();
    for bus in [Bus::VirtioBlk, Bus::VirtioScsi] {
        let name = format!("slof-{}", bus.label());
        let d = Disk::temp(&name).unwrap();
        let mut args = g.drive_ro("boot");
        args.extend(bus.device_args("boot", Some(1)));
        args.extend(d.nvme_args());
        let (run, _) = run(&name, &machine(Firmware::Slof, &args));
        assert!(!run.log.contains("papr-fw: "), "{}", run.log);
        d.verify_after_guest().unwrap();
    }
}

/// SLOF cannot boot the disk from NVMe (no driver); papr-fw can (above).
#[test]
fn slof_cannot_boot_from_nvme() {
    let g = grub_disk();
    let c = g.temp_copy("slof-nvme").unwrap();
    let mut args = grub::drive(&c.disk.path, "boot", false);
    args.extend(Bus::Nvme.device_args("boot", Some(1)));
    let cfg = machine(Firmware::Slof, &args);
    let mut m = cfg.start();
    m.wait_for("Trying to load:", STEP_SECS);
    let failed = m.expect("E3405", Duration::from_secs(STEP_SECS));
    let log = m.log();
    assert!(
        failed.is_ok() || log.contains("E3404") || log.contains("No bootable"),
        "SLOF did not fail as expected:\n{log}"
    );
    assert!(!log.contains(grub::MARK_GRUB), "{log}");
    eprintln!(
        "slof-nvme: QEMU {}: SLOF gave up: {}",
        cfg.qemu.label,
        log.lines()
            .filter(|l| l.contains("E34") || l.contains("No "))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// The PReP partition holds the ppc64el vmlinux itself: ELF64 little-endian,
/// physical address 0 (firmware memory), so papr-fw loads it elsewhere and
/// enters it with MSR[LE]; the kernel's prom_init then talks to papr-fw.
#[test]
fn papr_fw_starts_a_little_endian_elf64_from_prep() {
    let img = guest::ensure(KERNEL).unwrap_or_else(|e| panic!("{e}"));
    let path = std::env::temp_dir().join(format!("papr-prep-vmlinux-{}.img", std::process::id()));
    grub::prep_only_disk(&img.vmlinux, &path).unwrap();
    let mut args = grub::drive(&path, "boot", true);
    args.extend(Bus::VirtioBlk.device_args("boot", None));
    let cfg = machine(Firmware::PaprFw, &args);
    let mut m = cfg.start();
    let t = m.wait_for(
        ": PReP partition 1 holds an ELF64 little-endian image: ",
        STEP_SECS,
    );
    m.wait_for("Preparing to boot Linux version", STEP_SECS);
    m.wait_for("papr-fw: quiesce after ", STEP_SECS);
    let printk = m.wait_for(qemu_tests::bench::MARK_FIRST_PRINTK, STEP_SECS);
    eprintln!(
        "prep-vmlinux: QEMU {}: loaded at {:.2}s, first printk {:.2}s",
        cfg.qemu.label,
        t.as_secs_f64(),
        printk.as_secs_f64()
    );
    drop(m);
    let _ = std::fs::remove_file(&path);
}
