//! Nested KVM with papr-fw at both levels and an NVMe passed through VFIO to
//! L2 — the set-up the VFIO-on-pSeries series was made for (see
//! `qemu_tests::guest::nested` for the images and the L1 step).
//!
//! L0 is the selected QEMU (`PAPR_QEMU`, 7.2 or 10.0) under TCG with
//! `-M pseries,cap-nested-hv=on -cpu power9`, papr-fw and Linux 6.12-64k as
//! L1; L1 loads kvm_hv, binds the NVMe to vfio-pci and runs
//! `qemu-system-ppc64 -accel kvm` (Debian's 10.0, ppc64el) with papr-fw
//! (the image just built) and the standard 6.12-64k test guest as L2.  Both
//! firmwares trace their RTAS calls (`rtas-trace=on`).
//!
//! What the DMA-window traces show (both levels' papr-fw see only their own
//! partition's calls):
//! * L2 (its kernel and nvme driver, against L1's QEMU): the probe query, then
//!   query and create `18 1d` (16M pages, 512 MiB = L2's RAM, direct
//!   mapped) — on the emulated PHB QEMU makes for the passed-through device;
//! * L1 (its kernel's VFIO-on-pSeries ops, driven by L1's QEMU through
//!   the SPAPR TCE v2 container): the probe query; reset-pe when QEMU creates
//!   L2's 32-bit default window (`spapr_tce_create_table`, a default-window
//!   request: the container took the PE's windows away from the kernel, so
//!   reset-pe brings the default back); query and create `10 1d` for each DDW
//!   L2 makes (QEMU uses 64K pages, the backing page size of L2's RAM in a
//!   64k L1) — first the one of L2's papr-fw DMA self-test, removed again
//!   (remove-pe) and followed by its reset-pe (QEMU in L1 remakes L2's
//!   default window: reset-pe), then the one of L2's kernel; remove-pe and
//!   reset-pe when L2's QEMU exits (the container's windows go,
//!   `release_ownership` restores the default).
//!
//! L2's papr-fw also runs its NVMe DMA self-test (`dma-selftest=on`): its own
//! NVMe driver under KVM reaches the registers only through
//! H_LOGICAL_CI_LOAD/STORE, which QEMU in L1 forwards to the VFIO device, and
//! moves data through TCEs in the default window and in a DDW.
//!
//! `ddw-max-windows=1` on L1's papr-fw (a single-window PE, as an SR-IOV VF
//! on PowerVM): L2's QEMU stops with a hardware error as soon as L2 asks for
//! a DDW, whether L2 keeps its default window ([`nested_single_window_l1`])
//! or removes it first ([`nested_single_window_both_levels`]); L2 limited to
//! its 32-bit window works ([`nested_single_window_l1_l2_without_ddw`]).

use qemu_tests::guest::nested::{self, L2Options, NestedRun};
use qemu_tests::guest::Disk;
use qemu_tests::qemu::{papr_fw_image, Firmware};

const STEP_SECS: u64 = 240;
/// Where L2's papr-fw runs its DMA self-test (32 MiB into the 64 MiB disk,
/// clear of the guest's seed and data regions).
const SELFTEST_LBA: u64 = 65536;

/// Run the scenario with these options on L1's papr-fw and these for L2;
/// `l2_verdict`: whether L2 is expected to reach its verdict.
fn run(l1_env: &[&str], l2: L2Options, l2_verdict: bool, disk: &Disk) -> NestedRun {
    let img = nested::ensure().unwrap_or_else(|e| panic!("{e}"));
    let initrd = img.initrd_with(&papr_fw_image(), "test").unwrap();
    let con = nested::TempFile::temp("l2con");
    let mut cfg = img.config(Firmware::PaprFw, &initrd, disk, &l2, &con);
    for e in l1_env {
        cfg = cfg.prom_env(e);
    }
    let qemu = cfg.qemu.label.clone();
    let (mut m, mut l2con) = nested::start(&cfg, &con);
    let run = if l2_verdict {
        NestedRun::finish(&mut m, &mut l2con, STEP_SECS)
    } else {
        NestedRun::finish_without_l2_verdict(&mut m, &mut l2con, STEP_SECS)
    };
    if std::env::var_os("PAPR_NESTED_LOG").is_some() {
        eprintln!("{}", run.log);
    }
    eprintln!("nested: L0 QEMU {qemu}, L1 {l1_env:?}: {}", run.times);
    for l in run.l1_ddw() {
        eprintln!("nested:   L1 {l}");
    }
    for l in run.l2_ddw() {
        eprintln!("nested:   L2 {l}");
    }
    run
}

/// A DMA-window trace line without what papr-fw forwarded (`[...]`).
fn call(line: &str) -> &str {
    line.split(" [").next().unwrap_or(line)
}

fn calls<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines.iter().map(|l| call(l)).collect()
}

const QUERY_2: &str = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0";
const QUERY_1: &str = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 0 0 80000000 107 0";
const RESET: &str = "rtas: ibm,reset-pe-dma-window(0 8000000 20000000) = 0";
const REMOVE_DDW: &str = "rtas: ibm,remove-pe-dma-window(80000001) = 0";

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim_end() == line)
}

#[test]
fn nested_papr_fw_l1_and_l2_vfio_nvme() {
    let disk = Disk::temp("nested").unwrap();
    let l2 = L2Options {
        prom_env: vec![
            "rtas-trace=on".into(),
            // papr-fw's own NVMe driver in L2: registers only through
            // H_LOGICAL_CI_LOAD/STORE (QEMU in L1 forwards them to the VFIO
            // device), DMA through TCEs in the default window and a DDW.
            "dma-selftest=on".into(),
            format!("dma-selftest-lba={SELFTEST_LBA}"),
        ],
        ..Default::default()
    };
    let run = run(&["rtas-trace=on"], l2, true, &disk);
    let log = &run.log;

    // L1: papr-fw negotiated radix, KVM is there, the NVMe went to vfio-pci,
    // L2 ran to its end.
    assert!(
        run.l1
            .lines()
            .any(|l| l.starts_with("papr-fw: quiesce after") && l.contains("cas radix MMU")),
        "L1's papr-fw summary\n{log}"
    );
    let r1 = &run.l1_report;
    for line in [
        "nested: mmu Radix",
        "nested: /dev/kvm present",
        "nested: 0000:00:00.0 driver vfio-pci, iommu group 0",
        "nested: starting L2 (firmware papr, console /dev/hvc1)",
        "nested: L2 exited 0",
    ] {
        assert!(
            r1.lines.iter().any(|l| l == line),
            "no L1 line {line:?}\n{log}"
        );
    }
    assert!(r1.pass, "L1 verdict: {:?}\n{log}", r1.fail);

    // L2: papr-fw ran under KVM (its banner, summary and hand-over), Linux
    // negotiated radix with it, and the passed-through NVMe read and wrote.
    let l2 = &run.l2;
    assert!(l2.lines().any(|l| l.starts_with("papr-fw 0.1.0")), "{log}");
    assert!(
        l2.lines()
            .any(|l| l.starts_with("papr-fw: quiesce after") && l.contains("cas radix MMU, XIVE")),
        "L2's papr-fw summary\n{log}"
    );
    assert!(
        has_line(
            l2,
            &format!(
                "papr-fw: options: rtas-trace=on dma-selftest=on dma-selftest-lba={SELFTEST_LBA}"
            )
        ),
        "{log}"
    );
    // papr-fw's NVMe driver under KVM, through VFIO in L1.
    for needle in [
        "default window LIOBN 0x80000000: wrote and read back 1.00 MiB at LBA 65536: match",
        "dma-selftest: ibm,create-pe-dma-window(page shift 24, window shift 29) = 0: LIOBN 0x80000001 at bus 0x800000000000000",
        "dynamic window LIOBN 0x80000001: wrote and read back 1.00 MiB at LBA 67584: match",
    ] {
        assert!(l2.contains(needle), "no L2 self-test line {needle:?}\n{log}");
    }
    assert!(has_line(l2, "dma-selftest: PASS"), "{log}");
    let r2 = &run.l2_report;
    assert!(
        r2.pass && r2.seed_ok && r2.write_ok,
        "L2 verdict: {:?}\n{log}",
        r2.fail
    );
    assert_eq!(r2.mmu.as_deref(), Some("Radix"), "{log}");
    assert!(
        r2.dma_line(&[
            "nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 18 1d returned 0",
            "liobn = 0x80000001"
        ])
        .is_some(),
        "L2's DDW\n{log}"
    );
    disk.verify_after_guest()
        .unwrap_or_else(|e| panic!("{e}\n{log}"));

    // Both levels' DMA-window calls through their papr-fw.
    assert_eq!(
        calls(&run.l2_ddw()),
        [
            QUERY_2,
            QUERY_2,
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 18 1d) = 0 80000001 8000000 0",
        ],
        "L2's trace\n{log}"
    );
    let create_l1 =
        "rtas: ibm,create-pe-dma-window(0 8000000 20000000 10 1d) = 0 80000001 8000000 0";
    assert_eq!(
        calls(&run.l1_ddw()),
        [
            QUERY_2, // L1's probe
            RESET,   // L2's default window (L2's QEMU starts)
            QUERY_2, // L2's papr-fw self-test: its DDW
            create_l1, REMOVE_DDW, // ... removed
            RESET,      // ... and its reset-pe (QEMU in L1 remakes L2's default window)
            QUERY_2,    // L2's kernel: its DDW
            create_l1, REMOVE_DDW, // L2's QEMU exits
            RESET,
        ],
        "L1's trace\n{log}"
    );
    // The L1 kernel's side of VFIO_IOMMU_SPAPR_TCE_CREATE.
    assert!(
        r1.dma_line(&[
            "vfio-pci 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 10 1d returned 0"
        ])
        .is_some(),
        "{log}"
    );
}

/// `ddw-max-windows=1` on L1's papr-fw: the PE has one DMA window, as an
/// SR-IOV VF on PowerVM.  What the code says must happen (Linux 6.12
/// `arch/powerpc/platforms/pseries/iommu.c`, QEMU 10.0 `hw/vfio`):
/// 1. L1's probe query sees no free window: `spapr_tce_init_table_group`
///    sets `max_dynamic_windows_supported = 1` (VFIO_IOMMU_SPAPR_TCE_GET_INFO
///    reports it; QEMU does not use it: the PHB it emulates for L2 still
///    offers two windows);
/// 2. `spapr_tce_take_ownership` drops the default window's property only —
///    `remove_dma_window_named` calls remove-pe only for properties at least
///    `sizeof(struct dynamic_dma_window_prop)` (24) long and `ibm,dma-window`
///    has 20 — so the platform still has the default window; QEMU's default
///    window for L2 is then a default-window request: reset-pe;
/// 3. L2 sees a free window (QEMU's emulated PHB), creates its DDW; L1's QEMU
///    asks for a second window (`VFIO_IOMMU_SPAPR_TCE_CREATE`, table 1):
///    `spapr_tce_create_table` queries (no window free, but it only checks
///    the largest block) and calls create-pe, which the single-window PE
///    refuses (-3); the PE goes on the kernel's failed list; QEMU retries with
///    2 levels (-EINVAL at once: one level only), gives up, and since the
///    window is added at run time it stops with `hw_error("vfio: DMA mapping
///    failed, unable to continue")` — L2's QEMU aborts.
///
/// Nothing in L1 can avoid it while L2 asks for a second window: the kernel
/// never removes the default window from the platform on the VFIO path (only
/// `enable_ddw`, for a host driver, does), and QEMU always keeps L2's 32-bit
/// window.  [`nested_single_window_l1_l2_without_ddw`] is the set-up that
/// works.
#[test]
fn nested_single_window_l1() {
    let disk = Disk::temp("nested-1w").unwrap();
    let run = run(
        &["rtas-trace=on", "ddw-max-windows=1"],
        L2Options {
            prom_env: vec!["rtas-trace=on".into()],
            ..Default::default()
        },
        false,
        &disk,
    );
    let log = &run.log;
    // L1: probe query (no window free), reset-pe for L2's default window,
    // the refused second window, and reset-pe when the dead QEMU's container
    // is released.
    assert_eq!(
        calls(&run.l1_ddw()),
        [
            QUERY_1,
            RESET,
            QUERY_1,
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 10 1d) = -3 0 0 0",
            RESET,
        ],
        "L1's trace\n{log}"
    );
    assert!(
        run.l1_ddw()[3].ends_with("[papr-fw: no window available (ddw-max-windows)]"),
        "{log}"
    );
    // (The kernel line comes twice: on the console, and in the dmesg tail
    // L1's /init prints after its FAIL verdict.)
    assert!(
        !qemu_tests::guest::rtas_trace::kernel_lines(
            &run.l1,
            "spapr_tce_create_table: Create ddw failed /pci@800000020000000"
        )
        .is_empty(),
        "{log}"
    );
    // L2's QEMU: both levels tried, then the hardware error.
    for line in [
        "qemu-system-ppc64: Failed to create a window, ret = -1 (Invalid argument)",
        "qemu: hardware error: vfio: DMA mapping failed, unable to continue",
    ] {
        assert!(has_line(&run.l2, line), "no L2 line {line:?}\n{log}");
    }
    // L2's papr-fw saw its kernel's query and the create it forwarded
    // (whose trace line L2 never got to print).
    assert_eq!(calls(&run.l2_ddw()), [QUERY_2, QUERY_2], "{log}");
    assert!(
        run.l1_report
            .lines
            .iter()
            .any(|l| l == "nested: L2 exited 134"),
        "{log}"
    );
    assert_eq!(
        run.l1_report.fail.as_deref(),
        Some("nested:l2-exit-134 nested:l2-verdict"),
        "{log}"
    );
    assert!(!run.l2_report.pass, "{log}");
}

/// `ddw-max-windows=1` at both levels: L2's kernel now sees a single-window
/// PE too and removes its default window first (`enable_ddw`: remove-pe of
/// LIOBN 0x80000000, which L2's papr-fw forwards to QEMU in L1).  QEMU in L1
/// removes that VFIO window (`VFIO_IOMMU_SPAPR_TCE_REMOVE`), but L1's kernel
/// (`spapr_tce_unset_window` → `remove_dma_window_named`) again drops only the
/// property — no remove-pe reaches L1's papr-fw — so L1's PE still holds its
/// default window, and the 64-bit window (now table 0) is refused exactly as
/// in [`nested_single_window_l1`].
#[test]
fn nested_single_window_both_levels() {
    let disk = Disk::temp("nested-1w-both").unwrap();
    let run = run(
        &["rtas-trace=on", "ddw-max-windows=1"],
        L2Options {
            prom_env: vec!["rtas-trace=on".into(), "ddw-max-windows=1".into()],
            ..Default::default()
        },
        false,
        &disk,
    );
    let log = &run.log;
    // L2: probe query (none free), its kernel's query, removal of the
    // default window, query again (one free now).
    assert_eq!(
        calls(&run.l2_ddw()),
        [
            QUERY_1,
            QUERY_1,
            "rtas: ibm,remove-pe-dma-window(80000000) = 0",
            QUERY_2,
        ],
        "L2's trace\n{log}"
    );
    // L1: no remove-pe for that default window; the create is refused.
    assert_eq!(
        calls(&run.l1_ddw()),
        [
            QUERY_1,
            RESET,
            QUERY_1,
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 10 1d) = -3 0 0 0",
            RESET,
        ],
        "L1's trace\n{log}"
    );
    assert!(
        has_line(
            &run.l2,
            "qemu: hardware error: vfio: DMA mapping failed, unable to continue"
        ),
        "{log}"
    );
    assert!(
        run.l1_report
            .lines
            .iter()
            .any(|l| l == "nested: L2 exited 134"),
        "{log}"
    );
}

/// `ddw-max-windows=1` on L1 with L2's host bridge offering no DDW
/// (`-global spapr-pci-host-bridge.ddw=off`): L2 keeps to its 32-bit
/// default window, which is the PE's one window in L1, and the passthrough
/// works.
#[test]
fn nested_single_window_l1_l2_without_ddw() {
    let disk = Disk::temp("nested-1w-noddw").unwrap();
    let run = run(
        &["rtas-trace=on", "ddw-max-windows=1"],
        L2Options {
            prom_env: vec!["rtas-trace=on".into()],
            globals: vec!["spapr-pci-host-bridge.ddw=off".into()],
            ..Default::default()
        },
        true,
        &disk,
    );
    let log = &run.log;
    let r2 = &run.l2_report;
    assert!(
        r2.pass && r2.seed_ok && r2.write_ok,
        "L2 verdict: {:?}\n{log}",
        r2.fail
    );
    assert!(run.l1_report.pass, "{log}");
    disk.verify_after_guest()
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(run.l2_ddw().is_empty(), "{log}");
    assert_eq!(calls(&run.l1_ddw()), [QUERY_1, RESET, RESET], "{log}");
}
