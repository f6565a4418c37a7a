//! Real Debian Linux guests on papr-fw (the issue "Open Firmware client
//! interface, CAS, and booting real Linux guests"): each test boots a kernel
//! through prom_init and papr-fw's client interface to the guest's /init,
//! which checks what the kernel saw and powers off.
//!
//! * 6.1, 6.12 and 6.12-64k reach /init with an NVMe disk, pass the data
//!   checks (again on the host after power-off), and the kernel's
//!   `ibm,query-pe-dma-windows` / `ibm,create-pe-dma-window` lines say
//!   `returned 0`;
//! * 6.12 at `-m 2G` without `maxmem` gets its dynamic window from papr-fw
//!   (which presents `/rtas/ibm,lrdr-capacity` with the top of RAM), next to
//!   the same run on SLOF, where QEMU's maximum address of 0 makes the kernel
//!   ask for a window of 2^0 bytes and fail (`18 0 returned -3`);
//! * POWER9 (default) and POWER10 negotiate radix and XIVE, POWER8 and
//!   `disable_radix` hash (POWER8 with XICS), seen in `/proc/cpuinfo`,
//!   `/proc/interrupts`, the kernel log and papr-fw's quiesce line;
//! * `-smp 4` brings 4 CPUs online, 4 GiB of RAM are all there and the DDW
//!   covers them;
//! * a second host bridge gets its own dynamic window, and I/O works on both;
//! * `-global spapr-pci-host-bridge.ddw=off` boots and does I/O through the
//!   default 32-bit window;
//! * the README's main command (`boot`) reaches an interactive shell with
//!   the NVMe disk.
//!
//! Boots that do not need I/O use `papr.disk=none` and the fastest kernel
//! (6.1).  QEMU is `PAPR_QEMU` (7.2 default, or 10.0); timings go to stderr
//! (`--nocapture`).

use qemu_tests::guest::{self, Disk, GuestImage, GuestRun, Kernel};
use qemu_tests::qemu::{Config, Firmware, Machine, QemuBin};

/// Per-step limit: generous, as several QEMUs may share the two cores.
const STEP_SECS: u64 = 180;

fn ensure(k: Kernel) -> GuestImage {
    guest::ensure(k).unwrap_or_else(|e| panic!("{e}"))
}

/// Start a machine, naming it for the timing line.
fn start(name: &str, cfg: &Config) -> (String, Machine) {
    let label = format!(
        "{name}: QEMU {}, {}",
        cfg.qemu.label,
        match cfg.firmware {
            Firmware::PaprFw => "papr-fw",
            Firmware::Slof => "SLOF",
            Firmware::Vof => "VOF",
            Firmware::Image(_) => "image",
        }
    );
    (label, cfg.start())
}

/// Run a started machine to the guest's power-off and print its timings.
fn finish(label: &str, m: &mut Machine) -> GuestRun {
    let run = guest::run_to_poweroff(m, STEP_SECS);
    eprintln!("{label}: {}", run.times);
    for l in &run.report.dma {
        if l.contains("-pe-dma-window") {
            eprintln!("{label}:   {l}");
        }
    }
    run
}

/// Boot `k` on papr-fw; with a fresh seeded NVMe disk unless `disk` is false.
fn boot(
    name: &str,
    k: Kernel,
    disk: bool,
    cmdline: &str,
    tweak: impl FnOnce(Config) -> Config,
) -> (GuestRun, Option<Disk>) {
    let img = ensure(k);
    let disk = disk.then(|| Disk::temp(name).unwrap());
    let cfg = tweak(img.config(Firmware::PaprFw, disk.as_ref(), cmdline));
    let (label, mut m) = start(name, &cfg);
    (finish(&label, &mut m), disk)
}

/// The guest's verdict is PASS, and the disk holds what the guest wrote.
#[track_caller]
fn assert_pass(run: &GuestRun, disk: Option<&Disk>) {
    let r = &run.report;
    assert!(
        r.pass,
        "guest verdict not PASS (fail: {:?})\n{}",
        r.fail, run.log
    );
    if let Some(d) = disk {
        assert!(r.seed_ok && r.write_ok, "no disk checks\n{}", run.log);
        d.verify_after_guest()
            .unwrap_or_else(|e| panic!("{e}\n{}", run.log));
    }
    assert_no_firmware_warnings(run);
}

/// Neither papr-fw nor prom_init printed a warning or error (their lines
/// start with `WARNING: ` / `ERROR: `; the kernel's have a timestamp).
#[track_caller]
fn assert_no_firmware_warnings(run: &GuestRun) {
    for l in run.log.lines() {
        assert!(
            !l.starts_with("WARNING")
                && !l.starts_with("ERROR")
                && !l.starts_with("papr-fw: panic"),
            "firmware warning: {l}\n{}",
            run.log
        );
    }
}

#[track_caller]
fn dma_line<'a>(run: &'a GuestRun, needles: &[&str]) -> &'a str {
    run.report
        .dma_line(needles)
        .unwrap_or_else(|| panic!("no DMA line with {needles:?}\n{}", run.log))
}

/// The NVMe driver's dynamic window was queried and created, with `shift`
/// (page shift, window shift, e.g. "18 1f"), and no window call failed.
#[track_caller]
fn assert_ddw_created(run: &GuestRun, shift: &str) -> String {
    dma_line(run, &["nvme", "ibm,query-pe-dma-windows(", "returned 0"]);
    let create = dma_line(
        run,
        &[
            "nvme",
            "ibm,create-pe-dma-window(",
            &format!(" {shift} returned 0"),
        ],
    );
    assert!(
        run.report
            .dma_line(&["-pe-dma-window", "returned -"])
            .is_none(),
        "a DMA-window call failed\n{}",
        run.log
    );
    create.to_string()
}

/// The `liobn = 0x...` of a create line.
fn liobn(create_line: &str) -> &str {
    let at = create_line
        .find("liobn = ")
        .expect("liobn in the create line")
        + 8;
    create_line[at..].split([' ', ')']).next().unwrap()
}

#[derive(Debug, PartialEq)]
enum Mmu {
    Radix,
    Hash,
}

#[derive(Debug, PartialEq)]
enum Irq {
    Xive,
    Xics,
}

/// What was negotiated, in every place it shows: papr-fw's quiesce line
/// (its record of CAS), `/proc/cpuinfo`, the interrupt chips, the kernel log.
#[track_caller]
fn assert_negotiated(run: &GuestRun, mmu: Mmu, irq: Irq) {
    let log = &run.log;
    let cas = format!(
        "cas {} MMU, {};",
        if mmu == Mmu::Radix { "radix" } else { "hash" },
        if irq == Irq::Xive { "XIVE" } else { "XICS" }
    );
    assert!(
        log.contains(&cas),
        "no {cas:?} in papr-fw's quiesce line\n{log}"
    );
    match mmu {
        Mmu::Radix => {
            assert_eq!(run.report.mmu.as_deref(), Some("Radix"), "{log}");
            assert!(
                log.contains("lpar: Using radix MMU under hypervisor"),
                "{log}"
            );
            assert!(!log.contains("hash-mmu: Initializing hash mmu"), "{log}");
        }
        Mmu::Hash => {
            assert_eq!(run.report.mmu.as_deref(), Some("Hash"), "{log}");
            assert!(log.contains("hash-mmu: Initializing hash mmu"), "{log}");
            assert!(!log.contains("Using radix MMU"), "{log}");
        }
    }
    let chip = run.report.irq.as_deref().unwrap_or("");
    match irq {
        Irq::Xive => {
            assert!(chip.starts_with("XIVE"), "irq: {chip}\n{log}");
            assert!(
                log.contains("xive: Interrupt handling initialized with spapr backend"),
                "{log}"
            );
        }
        Irq::Xics => {
            assert!(chip.starts_with("XICS"), "irq: {chip}\n{log}");
            assert!(
                !log.contains("xive: Interrupt handling initialized"),
                "{log}"
            );
        }
    }
}

/// 6.1 (64K pages) on the default machine (POWER9, 2 GiB, 1 CPU): NVMe data
/// checks, a 2 GiB DDW of 16 MiB pages, radix and XIVE.
#[test]
fn linux_6_1_nvme_ddw_radix_xive() {
    let (run, disk) = boot("6.1", Kernel::V6_1, true, "", |c| c);
    assert_pass(&run, disk.as_ref());
    assert_ddw_created(&run, "18 1f");
    assert_negotiated(&run, Mmu::Radix, Irq::Xive);
    assert_eq!(run.report.cpus, Some(1), "{}", run.log);
    // prom_init's output is on the console (papr-fw's `write`).
    for l in [
        "Preparing to boot Linux version 6.1",
        "Calling ibm,client-architecture-support... done",
    ] {
        assert!(run.log.contains(l), "no {l:?}\n{}", run.log);
    }
}

/// The `ibm,lrdr-capacity` fix, side by side with SLOF: 6.12 at `-m 2G`
/// without `maxmem` creates its 2 GiB window on papr-fw; on SLOF the same
/// run asks for a window of shift 0 and QEMU refuses it.
#[test]
fn linux_6_12_ddw_created_where_slof_fails_without_maxmem() {
    let img = ensure(Kernel::V6_12);
    let (disk, slof_disk) = (
        Disk::temp("6.12").unwrap(),
        Disk::temp("6.12-slof").unwrap(),
    );
    let cfg = img.config(Firmware::PaprFw, Some(&disk), "");
    let slof_cfg = img.config(Firmware::Slof, Some(&slof_disk), "");
    assert_eq!(cfg.memory, "2G");
    // Both at once: the SLOF run is the slow one.
    let (label, mut m) = start("6.12", &cfg);
    let (slof_label, mut slof) = start("6.12", &slof_cfg);
    let run = finish(&label, &mut m);
    let slof_run = finish(&slof_label, &mut slof);

    assert_pass(&run, Some(&disk));
    assert!(
        run.log.contains("papr-fw: /rtas/ibm,lrdr-capacity: QEMU's maximum address 0x0 is below the top of RAM; presenting 0x80000000"),
        "{}",
        run.log
    );
    assert_ddw_created(&run, "18 1f");
    assert_negotiated(&run, Mmu::Radix, Irq::Xive);

    dma_line(
        &slof_run,
        &["nvme", "ibm,create-pe-dma-window(", " 18 0 returned -3"],
    );
    // ... and SLOF's guest still does its I/O through the default window.
    assert!(slof_run.report.pass, "{}", slof_run.log);
}

/// The 64K-page flavour of 6.12 (the nested-KVM L1): NVMe and DDW.
#[test]
fn linux_6_12_64k_nvme_ddw() {
    let (run, disk) = boot("6.12-64k", Kernel::V6_12_64k, true, "", |c| c);
    assert_pass(&run, disk.as_ref());
    assert_ddw_created(&run, "18 1f");
    assert_negotiated(&run, Mmu::Radix, Irq::Xive);
}

/// POWER10 with 4 CPUs and 4 GiB: radix and XIVE, every CPU online, all
/// memory there, and the dynamic window covers all of it (2^32 bytes).
#[test]
fn linux_power10_smp4_4g_nvme_ddw() {
    let (run, disk) = boot("power10-smp4-4G", Kernel::V6_1, true, "", |c| {
        c.memory("4G").smp(4).args(["-cpu", "power10"])
    });
    assert_pass(&run, disk.as_ref());
    assert!(run.log.contains("POWER10 (architected)"), "{}", run.log);
    assert_negotiated(&run, Mmu::Radix, Irq::Xive);
    assert_eq!(run.report.cpus, Some(4), "{}", run.log);
    assert!(
        run.log.contains("smp: Brought up 1 node, 4 CPUs"),
        "{}",
        run.log
    );
    let kb: u64 = run
        .report
        .memtotal
        .as_deref()
        .and_then(|m| m.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // MemTotal excludes the kernel image and early reservations.
    assert!(
        kb > 3_900_000 && kb <= 4 << 20,
        "MemTotal {kb} kB\n{}",
        run.log
    );
    assert_ddw_created(&run, "18 20");
}

/// POWER8 has neither radix nor XIVE: hash MMU and XICS.
#[test]
fn linux_power8_hash_xics() {
    let (run, _) = boot("power8", Kernel::V6_1, false, "", |c| {
        c.args(["-cpu", "power8"])
    });
    assert_pass(&run, None);
    assert!(run.log.contains("POWER8 (architected)"), "{}", run.log);
    assert_negotiated(&run, Mmu::Hash, Irq::Xics);
}

/// `disable_radix` on POWER9: prom_init asks for hash; XIVE stays.
#[test]
fn linux_power9_disable_radix_hash() {
    let (run, _) = boot("disable_radix", Kernel::V6_1, false, "disable_radix", |c| c);
    assert_pass(&run, None);
    assert_negotiated(&run, Mmu::Hash, Irq::Xive);
}

/// NVMe disks on two host bridges: each bridge (PE) gets its own dynamic
/// window (its BUID, its LIOBN), and both disks pass the data checks.
#[test]
fn linux_second_host_bridge_own_window() {
    let img = ensure(Kernel::V6_1);
    let (d0, d1) = (Disk::temp("phb0").unwrap(), Disk::temp("phb1").unwrap());
    // Without bus=, QEMU would put both on the last bridge created.
    let nvme = |d: &Disk, id: &str, bus: &str| {
        [
            "-drive".to_string(),
            format!("file={},if=none,id={id},format=raw", d.path.display()),
            "-device".to_string(),
            format!("nvme,drive={id},serial=papr-{id},bus={bus}"),
        ]
    };
    let cfg = img
        .config(Firmware::PaprFw, None, "papr.disk=nvme0n1,nvme1n1")
        .args(["-device", "spapr-pci-host-bridge,index=1,id=phb1"])
        .args(nvme(&d0, "d0", "pci.0"))
        .args(nvme(&d1, "d1", "phb1.0"));
    let (label, mut m) = start("2-phb", &cfg);
    let run = finish(&label, &mut m);
    assert_pass(&run, None);
    let oks = |what: &str| run.report.lines.iter().filter(|l| *l == what).count();
    assert_eq!(
        (oks("disk seed OK"), oks("disk write OK")),
        (2, 2),
        "{}",
        run.log
    );
    for d in [&d0, &d1] {
        d.verify_after_guest()
            .unwrap_or_else(|e| panic!("{e}\n{}", run.log));
    }
    assert!(
        run.log.contains("papr-fw: pci: 2 host bridges"),
        "{}",
        run.log
    );
    // BUID hi/lo in the kernel's lines: 8000000 20000000 and 8000000 20000001.
    let c0 = dma_line(
        &run,
        &[
            "ibm,create-pe-dma-window(",
            "8000000 20000000 ",
            "returned 0",
        ],
    );
    let c1 = dma_line(
        &run,
        &[
            "ibm,create-pe-dma-window(",
            "8000000 20000001 ",
            "returned 0",
        ],
    );
    assert_ne!(liobn(c0), liobn(c1), "{c0}\n{c1}");
    assert!(
        run.report
            .dma_line(&["-pe-dma-window", "returned -"])
            .is_none(),
        "{}",
        run.log
    );
}

/// Without dynamic windows (`ddw=off`) papr-fw still boots the guest and the
/// disk works through the default 32-bit window; no window is queried.
#[test]
fn linux_ddw_off_default_window_io() {
    let (run, disk) = boot("ddw-off", Kernel::V6_1, true, "", |c| {
        c.args(["-global", "spapr-pci-host-bridge.ddw=off"])
    });
    assert_pass(&run, disk.as_ref());
    assert!(
        run.log.contains("size 1 GiB page 4 KiB, no ddw"),
        "{}",
        run.log
    );
    assert!(
        run.report.dma_line(&["-pe-dma-window"]).is_none(),
        "DMA-window lines with ddw=off:\n{}",
        run.log
    );
}

/// The README's main command: `boot` (what `qemu-tests/boot.sh` runs) brings
/// the default guest (6.12) up to an interactive busybox shell on the
/// console, with the NVMe disk.
#[test]
fn boot_command_reaches_a_shell_with_the_disk() {
    let disk = Disk::temp("boot-cmd").unwrap();
    // `boot` execs QEMU, so it can stand in for the QEMU binary.
    let boot = QemuBin {
        label: "boot".into(),
        binary: env!("CARGO_BIN_EXE_boot").into(),
        datadir: Default::default(),
    };
    let fw = qemu_tests::qemu::papr_fw_image();
    let mut m = Machine::start(
        &boot,
        vec![
            "--firmware".into(),
            fw.display().to_string(),
            "--disk".into(),
            disk.path.display().to_string(),
        ],
    );
    m.wait_for("Preparing to boot Linux version 6.12", STEP_SECS);
    m.wait_for(guest::MARK_INIT, STEP_SECS);
    m.wait_for("papr-guest: disk seed OK", STEP_SECS);
    m.wait_for("papr-guest: shell", STEP_SECS);
    m.send("echo sectors=$(cat /sys/block/nvme0n1/size) shell-$((6 * 7))-ok\n");
    m.wait_for("sectors=131072 shell-42-ok", 60);
    m.send("poweroff -f\n");
    m.wait_exit(0, 60);
    m.assert_absent(guest::MARK_FAIL);
    disk.verify_after_guest().unwrap();
}
