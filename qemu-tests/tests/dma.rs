//! Real device DMA from the firmware (issue "PCI resources, TCE tables, and
//! real device DMA"): `-prom-env dma-selftest=on` makes papr-fw drive each
//! NVMe controller through the default TCE window and through a dynamic
//! window it creates, removes and resets; the host then checks the pattern
//! the firmware wrote in the disk image.  Runs on the QEMU `PAPR_QEMU` selects.

use papr_fw::drivers::dma_selftest::{fill_pattern, pattern_seed};
use qemu_tests::guest::Disk;
use qemu_tests::qemu::{Config, Machine};
use std::io::{Read, Seek, SeekFrom};

const T: u64 = 60;

fn nvme(disk: &Disk, id: &str, bus: Option<&str>) -> Vec<String> {
    let bus = bus.map(|b| format!(",bus={b}")).unwrap_or_default();
    vec![
        "-drive".into(),
        format!("file={},if=none,id={id},format=raw", disk.path.display()),
        "-device".into(),
        format!("nvme,drive={id},serial={id}{bus}"),
    ]
}

/// The firmware's data: pass 1 at `lba`, pass 2 at `lba + 2048`, 1 MiB each.
fn check_pattern(disk: &Disk, lba: u64) {
    for (pass, at) in [(1, lba), (2, lba + 2048)] {
        let mut want = vec![0u8; 1 << 20];
        fill_pattern(pattern_seed(pass, at), 0, &mut want);
        let mut got = vec![0u8; 1 << 20];
        let mut f = std::fs::File::open(&disk.path).unwrap();
        f.seek(SeekFrom::Start(at * 512)).unwrap();
        f.read_exact(&mut got).unwrap();
        assert!(
            got == want,
            "pass {pass}: the disk image does not hold the pattern at LBA {at}"
        );
    }
}

fn selftest(m: &mut Machine, liobn: &str) {
    m.wait_for(
        &format!("default window LIOBN {liobn}: wrote and read back 1.00 MiB"),
        T,
    );
    m.wait_for("ibm,query-pe-dma-window(", T);
    m.wait_for("ibm,create-pe-dma-window(page shift 24", T);
    m.wait_for("mapped RAM 0x0..", T);
    m.wait_for("dynamic window LIOBN", T);
    m.wait_for(": match;", T);
    m.wait_for("ibm,remove-pe-dma-window(", T);
    m.wait_for("ibm,reset-pe-dma-window(", T);
    m.wait_for("dma-selftest: PASS", T);
    m.wait_exit(0, T);
    m.assert_absent("dma-selftest: FAIL");
}

#[test]
fn one_nvme_default_and_dynamic_window() {
    let disk = Disk::temp("dma1").unwrap();
    let mut m = Config::new()
        .memory("1G")
        .prom_env("dma-selftest=on")
        .args(nvme(&disk, "d0", None))
        .start();
    m.wait_for("papr-fw: pci: /pci@800000020000000: 1 functions, 1 BARs", T);
    m.wait_for("QEMU NVMe Ctrl serial d0", T);
    selftest(&mut m, "0x80000000");
    check_pattern(&disk, 2048);
}

#[test]
fn nvme_on_a_second_host_bridge() {
    let disk = Disk::temp("dma2").unwrap();
    let mut m = Config::new()
        .memory("1G")
        .prom_env("dma-selftest=on")
        .args(["-device", "spapr-pci-host-bridge,index=1,id=phb1"])
        .args(nvme(&disk, "d1", Some("phb1.0")))
        .start();
    m.wait_for("/pci@800000020000001/", T);
    selftest(&mut m, "0x80000100");
    check_pattern(&disk, 2048);
}

#[test]
fn four_gib_of_ram_and_another_lba() {
    let disk = Disk::temp("dma3").unwrap();
    let mut m = Config::new()
        .memory("4G")
        .prom_env("dma-selftest=on")
        .prom_env("dma-selftest-lba=8192")
        .args(nvme(&disk, "d0", None))
        .start();
    selftest(&mut m, "0x80000000");
    assert!(
        m.log().contains("mapped RAM 0x0..0x100000000"),
        "{}",
        m.log()
    );
    check_pattern(&disk, 8192);
}

#[test]
fn without_ddw_the_default_window_still_works() {
    let disk = Disk::temp("dma4").unwrap();
    let mut m = Config::new()
        .memory("1G")
        .prom_env("dma-selftest=on")
        .args(["-global", "spapr-pci-host-bridge.ddw=off"])
        .args(nvme(&disk, "d0", None))
        .start();
    m.wait_for(
        "default window LIOBN 0x80000000: wrote and read back 1.00 MiB",
        T,
    );
    m.wait_for("no dynamic DMA window", T);
    m.wait_for("dma-selftest: PASS", T);
    m.wait_exit(0, T);
    m.assert_absent("ibm,create-pe-dma-window(");
    let mut want = vec![0u8; 1 << 20];
    fill_pattern(pattern_seed(1, 2048), 0, &mut want);
    let mut got = vec![0u8; 1 << 20];
    let mut f = std::fs::File::open(&disk.path).unwrap();
    f.seek(SeekFrom::Start(2048 * 512)).unwrap();
    f.read_exact(&mut got).unwrap();
    assert!(got == want, "pass 1 pattern missing");
}

/// Not a timed assertion: the figures are printed for the record.
#[test]
fn tce_mapping_benchmark_prints_throughput() {
    let mut m = Config::new().memory("1G").prom_env("tce-bench=on").start();
    m.wait_for(
        "tce-bench: LIOBN 0x80000000, 65536 pages of 4 KiB (256 MiB): H_PUT_TCE map ",
        T,
    );
    m.wait_for("H_PUT_TCE_INDIRECT map ", T);
    m.wait_exit(0, T);
    let log = m.log();
    if let Some(line) = log.lines().find(|l| l.starts_with("tce-bench:")) {
        eprintln!("{line}");
    }
    if let Some(line) = log.lines().find(|l| l.contains("papr-fw: tce: cleared")) {
        eprintln!("{line}");
    }
}
