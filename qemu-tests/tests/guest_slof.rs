//! The guest pipeline proven on stock SLOF, the differential oracle for
//! papr-fw: real Debian kernels boot from the fetched material, load the NVMe
//! stack, pass the disk checks (verified again on the host after power-off),
//! and print the DMA-window lines Linux is known to print on QEMU
//! (`shared/reference/guest-linux.md`):
//! * 6.1 sizes its DDW to RAM and creates it (`18 1f returned 0`);
//! * 6.12 without `maxmem` reads a maximum address of 0 from QEMU's
//!   `ibm,lrdr-capacity`, asks for a window of shift 0 and gets `returned -3`,
//!   then stays on the 1 GiB default window (the disk still works);
//! * 6.12 with `-m 2G,slots=2,maxmem=4G` creates a 4 GiB window (`18 20`);
//! * with `spapr-pci-host-bridge.ddw=off` no window is queried or created.
//!
//! QEMU is `PAPR_QEMU` (7.2 by default, or 10.0).  Timings go to stderr
//! (`--nocapture`).

use qemu_tests::guest::{self, cpio, modules::ModuleIndex, Disk, GuestRun, Kernel};
use qemu_tests::qemu::Firmware;
use std::io::Read;

/// Per-step limit: generous, as several QEMUs may share the two cores.
const STEP_SECS: u64 = 180;

fn ensure(k: Kernel) -> guest::GuestImage {
    guest::ensure(k).unwrap_or_else(|e| panic!("{e}"))
}

/// Boot `k` on SLOF with a fresh seeded NVMe disk; checks the run reached
/// the verdict and QEMU exited 0, and returns the run and the disk.
fn boot_slof(name: &str, k: Kernel, memory: &str, extra: &[&str]) -> (GuestRun, Disk) {
    let img = ensure(k);
    let disk = Disk::temp(name).unwrap();
    let cfg = img
        .config(Firmware::Slof, Some(&disk), "")
        .memory(memory)
        .args(extra);
    let qemu = cfg.qemu.label.clone();
    let mut m = cfg.start();
    let run = guest::run_to_poweroff(&mut m, STEP_SECS);
    eprintln!(
        "{name}: QEMU {qemu}, SLOF, Linux {}, -m {memory}: {}",
        img.release, run.times
    );
    for l in &run.report.dma {
        eprintln!("{name}:   {l}");
    }
    (run, disk)
}

/// The data checks passed in the guest and on the host.
#[track_caller]
fn assert_data_ok(run: &GuestRun, disk: &Disk) {
    let r = &run.report;
    assert!(
        r.pass && r.seed_ok && r.write_ok,
        "guest verdict not PASS (fail: {:?})\n{}",
        r.fail,
        run.log
    );
    disk.verify_after_guest()
        .unwrap_or_else(|e| panic!("{e}\n{}", run.log));
    assert_eq!(r.cpus, Some(1), "{}", run.log);
    assert!(r.mmu.is_some() && r.irq.is_some(), "{}", run.log);
}

#[track_caller]
fn dma_line<'a>(run: &'a GuestRun, needles: &[&str]) -> &'a str {
    run.report
        .dma_line(needles)
        .unwrap_or_else(|| panic!("no DMA line with {needles:?}\n{}", run.log))
}

#[test]
fn slof_linux_6_1_nvme_ddw() {
    let (run, disk) = boot_slof("6.1", Kernel::V6_1, "2G", &[]);
    assert_data_ok(&run, &disk);
    // Query: windows available, 16 MiB pages offered; create: 16 MiB pages
    // (0x18), 2 GiB window (0x1f) = all RAM.
    dma_line(
        &run,
        &["nvme", "ibm,query-pe-dma-windows(", "returned 0", "wn=1"],
    );
    dma_line(
        &run,
        &["nvme", "ibm,create-pe-dma-window(", " 18 1f returned 0"],
    );
    assert_eq!(run.report.mmu.as_deref(), Some("Radix"));
    assert!(
        run.report.irq.as_deref().unwrap().starts_with("XIVE"),
        "{}",
        run.log
    );
}

#[test]
fn slof_linux_6_12_nvme_ddw_with_maxmem() {
    let (run, disk) = boot_slof("6.12-maxmem", Kernel::V6_12, "2G,slots=2,maxmem=4G", &[]);
    assert_data_ok(&run, &disk);
    // The window covers maxmem: 4 GiB (shift 0x20).
    dma_line(
        &run,
        &["nvme", "ibm,create-pe-dma-window(", " 18 20 returned 0"],
    );
    assert!(
        run.report.dma_line(&["returned -3"]).is_none(),
        "{}",
        run.log
    );
}

#[test]
fn slof_linux_6_12_nvme_ddw_fails_without_maxmem() {
    let (run, disk) = boot_slof("6.12", Kernel::V6_12, "2G", &[]);
    // The known failure: QEMU's ibm,lrdr-capacity says 0 without maxmem, so
    // 6.12 asks for a window of shift 0, which QEMU refuses.
    dma_line(
        &run,
        &["nvme", "ibm,create-pe-dma-window(", " 18 0 returned -3"],
    );
    // ... and the disk still works through the default 32-bit window.
    assert_data_ok(&run, &disk);
}

#[test]
fn slof_linux_6_1_without_ddw_negative_control() {
    let (run, disk) = boot_slof(
        "6.1-ddw-off",
        Kernel::V6_1,
        "2G",
        &["-global", "spapr-pci-host-bridge.ddw=off"],
    );
    assert_data_ok(&run, &disk);
    assert!(
        run.report.dma_line(&["-pe-dma-window"]).is_none(),
        "DMA-window lines with ddw=off:\n{}",
        run.log
    );
}

#[test]
fn slof_linux_6_12_64k_nvme_ddw() {
    let (run, disk) = boot_slof("6.12-64k", Kernel::V6_12_64k, "2G,slots=2,maxmem=4G", &[]);
    assert_data_ok(&run, &disk);
    dma_line(&run, &["nvme", "ibm,create-pe-dma-window(", "returned 0"]);
}

/// The guest's own check is not vacuous: a disk whose seed was altered on
/// the host gives `FAIL disk:seed` (the write check still passes).
#[test]
fn slof_linux_6_1_detects_a_corrupted_seed() {
    let img = ensure(Kernel::V6_1);
    let disk = Disk::temp("corrupt").unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .unwrap();
        f.seek(SeekFrom::Start(guest::SEED_OFFSET + 12345)).unwrap();
        f.write_all(&[!guest::seed_pattern()[12345]]).unwrap();
    }
    let mut m = img.config(Firmware::Slof, Some(&disk), "").start();
    let run = guest::run_to_poweroff(&mut m, STEP_SECS);
    let r = &run.report;
    assert!(!r.pass && !r.seed_ok && r.write_ok, "{}", run.log);
    assert!(
        r.fail.as_deref().unwrap_or("").contains("disk:seed"),
        "{}",
        run.log
    );
    assert!(disk.verify_seed().is_err());
}

/// The shell mode reaches an interactive prompt and powers off on request.
#[test]
fn slof_linux_6_1_shell_mode() {
    let img = ensure(Kernel::V6_1);
    let mut m = img.config(Firmware::Slof, None, "papr.mode=shell").start();
    m.wait_for(guest::MARK_INIT, STEP_SECS);
    m.wait_for("papr-guest: shell", STEP_SECS);
    m.send("echo shell-$((6 * 7))-ok\n");
    m.wait_for("shell-42-ok", 60);
    m.send("poweroff -f\n");
    m.wait_exit(0, 60);
    m.assert_absent(guest::MARK_FAIL);
}

/// Load order from `.modinfo` `depends=` matches what was found by hand, and
/// the built initramfs holds /init, busybox and the modules in that order.
#[test]
fn module_order_and_initramfs_contents() {
    for (k, want) in [
        (
            Kernel::V6_1,
            &[
                "crct10dif_common",
                "crc_t10dif",
                "crc64",
                "crc64_rocksoft",
                "t10_pi",
                "nvme_core",
                "nvme",
            ][..],
        ),
        (Kernel::V6_12, &["nvme_auth", "nvme_core", "nvme"][..]),
        (Kernel::V6_12_64k, &["nvme_auth", "nvme_core", "nvme"][..]),
    ] {
        let img = ensure(k);
        let idx = ModuleIndex::scan(&img.root.join("lib/modules").join(&img.release)).unwrap();
        let order: Vec<String> = idx
            .load_order(guest::STANDARD_MODULES)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(order, want, "{}", k.label());
        assert!(idx.load_order(&["no_such_module"]).is_err());

        let mut cpio_bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&img.initrd).unwrap())
            .read_to_end(&mut cpio_bytes)
            .unwrap();
        let entries = cpio::parse(&cpio_bytes).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n);
        assert_eq!(get("init").unwrap().data, guest::INIT_SCRIPT.as_bytes());
        let bb = &get("bin/busybox").unwrap().data;
        // ELF64, little-endian, EM_PPC64.
        assert_eq!(&bb[..6], b"\x7fELF\x02\x01");
        assert_eq!(u16::from_le_bytes([bb[18], bb[19]]), 21);
        assert_eq!(get("dev/console").unwrap().rdev, (5, 1));
        let list = String::from_utf8(get("etc/papr/modules").unwrap().data.clone()).unwrap();
        let listed: Vec<&str> = list
            .lines()
            .map(|l| l.rsplit('/').next().unwrap().trim_end_matches(".ko"))
            .collect();
        assert_eq!(listed, want);
        for l in list.lines() {
            let m = &get(l.trim_start_matches('/')).unwrap().data;
            assert_eq!(&m[..4], b"\x7fELF", "{l} is not a decompressed module");
        }
        assert_eq!(
            get("etc/papr/data.bin").unwrap().data,
            guest::data_pattern()
        );

        let v = std::fs::read(&img.vmlinux).unwrap();
        assert_eq!(&v[..6], b"\x7fELF\x02\x01", "{}", img.vmlinux.display());
        let config = std::fs::read_to_string(
            img.root
                .join("boot")
                .join(format!("config-{}", img.release)),
        )
        .unwrap();
        let page_64k = config.contains("CONFIG_PPC_64K_PAGES=y");
        assert_eq!(page_64k, k.page_size() == 65536, "{}", k.label());
    }
}
