//! Reboot soak: a Linux guest (6.1, NVMe disk, so every boot maps TCEs and
//! creates a dynamic DMA window) runs its checks and reboots with `reboot
//! -f` (RTAS `system-reboot` through papr-fw's resident RTAS), N times in a
//! row; the last boot powers off.  QEMU resets the machine and re-copies
//! `-bios`/`-kernel`/`-initrd` each time, and papr-fw must start cleanly
//! every time:
//! * with `tce-audit=on` papr-fw reads every TCE of every window and asks
//!   the platform how many dynamic windows are free before its start-up
//!   clear: nothing mapped, and the PE has its full count of free windows
//!   (no window left from the previous OS);
//! * papr-fw's own lines (platform summary, options, TCE clear, the quiesce
//!   line with the number of client calls and the size of the tree it
//!   hands to QEMU) are the same every boot, apart from times;
//! * every boot's guest passes its disk checks and gets its dynamic window.
//!
//! N is `PAPR_SOAK_BOOTS` (default 5).  Prints boots completed and the
//! time per boot.  QEMU is `PAPR_QEMU`.

use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::Firmware;
use std::time::Duration;

const BANNER: &str = "papr-fw 0.1.0 — partition firmware for pseries";
const STEP: u64 = 240;

/// papr-fw's lines of one boot with times (`NNN us`) taken out.
fn firmware_lines(boot: &str) -> Vec<String> {
    boot.lines()
        .filter(|l| l.starts_with("papr-fw: ") && !l.contains("handing over after"))
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            let mut out = Vec::new();
            for (i, w) in words.iter().enumerate() {
                let next = words.get(i + 1).copied().unwrap_or("");
                if (next == "us" || next == "us,") && w.parse::<u64>().is_ok() {
                    out.push("N");
                } else {
                    out.push(w);
                }
            }
            out.join(" ")
        })
        .collect()
}

#[test]
fn reboot_soak() {
    let boots: u32 = std::env::var("PAPR_SOAK_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    assert!(boots >= 2, "PAPR_SOAK_BOOTS must be at least 2");
    let img = guest::ensure(Kernel::V6_1).unwrap_or_else(|e| panic!("{e}"));
    let disk = Disk::temp("reboot-soak").unwrap();
    let mut cfg = img
        .config(Firmware::PaprFw, Some(&disk), "papr.mode=reboot")
        .prom_env("tce-audit=on");
    cfg.args.retain(|a| a != "-no-reboot");
    let mut m = cfg.start();
    let mut starts = Vec::new();
    let mut ready = Vec::new();
    let mut kernel = Vec::new();
    for i in 1..=boots {
        starts.push(m.wait_for(BANNER, STEP));
        m.wait_for("papr-fw: tce: audit: ", STEP);
        kernel.push(m.wait_for("papr-fw: booting the kernel", STEP));
        m.wait_for("papr-fw: quiesce after ", STEP);
        m.wait_for("papr-guest: init started", STEP);
        ready.push(m.wait_for("papr-guest: reboot?", STEP));
        m.send(if i < boots { "r\n" } else { "p\n" });
        if i < boots {
            m.wait_for("papr-guest: rebooting", 30);
        }
    }
    m.wait_for("papr-guest: powering off", 60);
    match m.expect_exit(Duration::from_secs(60)) {
        Ok(Some(0)) => {}
        other => panic!("QEMU did not power off cleanly: {other:?}\n{}", m.log()),
    }

    let log = m.log();
    let segments: Vec<&str> = log.split(BANNER).skip(1).collect();
    assert_eq!(
        segments.len() as u32,
        boots,
        "papr-fw started {} times, expected {boots}",
        segments.len()
    );
    let first = firmware_lines(segments[0]);
    for (i, seg) in segments.iter().enumerate() {
        let n = i + 1;
        let audit = seg
            .lines()
            .find(|l| l.contains("papr-fw: tce: audit: "))
            .unwrap_or("");
        assert!(
            audit.contains("audit: 0 of ")
                && audit.contains(" 0 unreadable")
                && audit.contains("per PE: [1]"),
            "boot {n}: papr-fw found state from the previous OS: {audit}"
        );
        assert!(
            seg.contains("papr-guest: PASS"),
            "boot {n}: the guest failed\n{seg}"
        );
        let ddw = seg
            .lines()
            .find(|l| l.contains("papr-guest: dma:") && l.contains("ibm,create-pe-dma-window"))
            .unwrap_or("");
        assert!(
            ddw.contains("returned 0"),
            "boot {n}: no dynamic window: {ddw:?}\n{seg}"
        );
        assert!(
            !seg.contains("WARNING") && !seg.contains("papr-fw: panic"),
            "boot {n}:\n{seg}"
        );
        let lines = firmware_lines(seg);
        assert_eq!(lines, first, "boot {n}: papr-fw's lines differ from boot 1");
    }
    disk.verify_after_guest().unwrap();

    let per_boot: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let to_ready: Vec<f64> = starts
        .iter()
        .zip(&ready)
        .map(|(s, r)| (*r - *s).as_secs_f64())
        .collect();
    let firmware: Vec<f64> = starts
        .iter()
        .zip(&kernel)
        .map(|(s, k)| (*k - *s).as_secs_f64())
        .collect();
    let mean = per_boot.iter().sum::<f64>() / per_boot.len() as f64;
    let (min, max) = per_boot
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    eprintln!(
        "reboot soak: {boots} boots completed (QEMU {}), {:.1} s in all; reboot to reboot {mean:.2} s mean ({min:.2}–{max:.2}); papr-fw banner to kernel entry {:.0} ms mean (with the TCE audit); banner to guest ready {:.2} s mean",
        cfg.qemu.label,
        m.elapsed().as_secs_f64(),
        firmware.iter().sum::<f64>() * 1000.0 / firmware.len() as f64,
        to_ready.iter().sum::<f64>() / to_ready.len() as f64
    );
}
