//! papr-fw's firmware-resident DMA-window RTAS calls under real Linux (the
//! issue "Firmware-resident RTAS: DMA-window calls implemented in papr-fw,
//! platform personalities, fault injection"): each boot runs a Debian kernel
//! with an NVMe disk through the guest's data checks (verified again on the
//! host), with papr-fw's trace of the RTAS calls (`-prom-env rtas-trace=on`)
//! and QEMU's trace of every DMA translation the NVMe made (which window —
//! LIOBN — and which IOMMU page size), and checks what the kernel did
//! against what `arch/powerpc/platforms/pseries/iommu.c` (`enable_ddw`,
//! `query_ddw`, `create_ddw`, `remove_dma_window`, `reset_dma_window`,
//! `spapr_tce_init_table_group`) is designed to do.  On QEMU the PE is the
//! host bridge /pci@800000020000000 (BUID 0x800000020000000); its default
//! window is LIOBN 0x80000000 (4K TCEs, 1 GiB at bus 0), a DDW gets LIOBN
//! 0x80000001 at 1<<59 — or the default's LIOBN at bus 0 when the default
//! window was removed first.
//!
//! | test | kernel | options | what the kernel shows |
//! |---|---|---|---|
//! | `default_options_same_ddw_as_slof_6_1` | 6.1 | `rtas-trace=on` (and SLOF) | query `wn=1`, create `18 1f returned 0 (liobn = 0x80000001 starting addr = 8000000 0)`, the same as on SLOF; DMA through the direct-mapped DDW with 16M TCEs |
//! | `default_options_same_ddw_as_slof_6_12_maxmem` | 6.12, `maxmem=4G` | `rtas-trace=on` (and SLOF) | the same with `18 20` (window = maxmem) |
//! | `max_windows_1_removes_default_window_busy_create_retried` | 6.1 | `ddw-max-windows=1`, `ddw-inject=create:busy:3` | `wn=0`, remove-pe of 0x80000000, `wn=1`, three creates answered 9900 and retried by `rtas_busy_delay`, the fourth `returned 0 (liobn = 0x80000000 starting addr = 0 0)`, `Removed default DMA window for /pci@800000020000000`; DMA through LIOBN 0x80000000 with 16M TCEs |
//! | `max_windows_1_remove_fail_keeps_default_window` | 6.1 | `ddw-max-windows=1`, `ddw-inject=remove:fail` | `failed to remove DMA window: rtas returned -1 to ibm,remove-pe-dma-window(2028) 80000000`, query again `wn=0` ("no free dynamic windows"), reset-pe; no create; DMA through the 4K default window |
//! | `create_fail_keeps_default_window` | 6.1 | `ddw-inject=create:fail` | `18 1f returned -1`, not retried, no remove or reset; DMA through the 4K default window |
//! | `query_fail_keeps_default_window_6_12` | 6.12 | `ddw-inject=query:fail:always` | at probe `returned -1, lb=0 ps=0 wn=0` and `spapr_tce_init_table_group: query_ddw failed`; at the driver's 64-bit mask the same query line, `direct mapping: 0`; no create; DMA through the 4K default window |
//! | `max_window_shift_forces_dynamic_window_6_12` | 6.12 | `ddw-max-window-shift=30`, `ddw-page-sizes=0x3` | query `lb=4000 ps=3`, create `10 1e returned 0`, `direct mapping: 0`, `linux,dma64-ddr-window-info`; DMA through the DDW with 64K TCEs mapped on demand |
//!
//! Where papr-fw's answers differ from QEMU's own, by design: the query's
//! largest block is at most 2^31 TCEs (`lb=80000000`; QEMU's 6-output answer
//! is 2^37, `lb=2000000000`, which QEMU could not create: its TCE count is a
//! 32-bit number).  The kernel's outcome (page size, window size, LIOBN,
//! address, mapping) is the same.
//!
//! `ddw-max-window-shift=30` alone offers 16M pages and a largest block of
//! 64 TCEs.  6.1 (64K pages) does its I/O in those (seen: the data checks
//! pass).  6.12 (4K pages) does not: after the seed check its 4 MiB O_DIRECT
//! write never completes — QEMU's trace shows H_PUT_TCE/H_STUFF_TCE on 59
//! entries of the DDW repeated hundreds of thousands of times, all
//! succeeding — the kernel's dynamic table is too small for a request whose
//! 4K pages each need their own 16M TCE, and `enable_ddw` does not check the
//! window is usable.  So the 6.12 test restricts the page sizes to 4K/64K
//! as well.
//!
//! The VFIO path (6.12) is in `tests/vfio.rs`.  QEMU is `PAPR_QEMU` (7.2 by
//! default, or 10.0); timings go to stderr (`--nocapture`).

use qemu_tests::guest::rtas_trace::{self, TraceFile, TracedRun};
use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::Firmware;

/// Per-run limit: generous, as several QEMUs may share the two cores.
const RUN_SECS: u64 = 240;
const PHB: &str = "/pci@800000020000000";
const DEFAULT_LIOBN: u64 = 0x8000_0000;
const DDW_LIOBN: u64 = 0x8000_0001;
const SZ_4K: u64 = 1 << 12;
const SZ_64K: u64 = 1 << 16;
const SZ_16M: u64 = 1 << 24;

struct Boot {
    run: TracedRun,
    disk: Disk,
}

/// Boot `kernel` on `fw` with a fresh seeded NVMe disk, the papr-fw options
/// `opts` (`-prom-env`), and QEMU's TCE trace, to the guest's power-off.
fn boot(name: &str, kernel: Kernel, fw: Firmware, memory: &str, opts: &[&str]) -> Boot {
    let img = guest::ensure(kernel).unwrap_or_else(|e| panic!("{e}"));
    let disk = Disk::temp(name).unwrap();
    let tf = TraceFile::temp(name);
    let mut cfg = img
        .config(fw.clone(), Some(&disk), "")
        .memory(memory)
        .args(rtas_trace::qemu_args(&tf.0));
    for o in opts {
        cfg = cfg.prom_env(o);
    }
    let qemu = cfg.qemu.label.clone();
    let mut m = cfg.start();
    let run = TracedRun::finish(&mut m, &tf, RUN_SECS);
    eprintln!(
        "{name}: QEMU {qemu}, {}, Linux {}, -m {memory} {}: exit {:.2}s; DMA {} translations via {}",
        match fw {
            Firmware::PaprFw => "papr-fw",
            Firmware::Slof => "SLOF",
            _ => "other",
        },
        img.release,
        opts.join(" "),
        run.exit.as_secs_f64(),
        run.iommu.translations(),
        windows(&run),
    );
    for l in run.ddw_trace() {
        eprintln!("{name}:   {l}");
    }
    Boot { run, disk }
}

fn papr(name: &str, kernel: Kernel, memory: &str, opts: &[&str]) -> Boot {
    boot(name, kernel, Firmware::PaprFw, memory, opts)
}

/// "LIOBN/page size" of every window the device's DMA went through.
fn windows(run: &TracedRun) -> String {
    run.iommu
        .windows()
        .iter()
        .map(|(l, p)| format!("{l:#x}/{}K", p >> 10))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The guest's checks passed (in the guest and on the host).
#[track_caller]
fn assert_data_ok(b: &Boot) {
    let r = &b.run.report;
    assert!(
        r.pass && r.seed_ok && r.write_ok,
        "guest verdict not PASS (fail: {:?})\n{}",
        r.fail,
        b.run.log
    );
    assert!(r.lines.iter().any(|l| l == "powering off"), "{}", b.run.log);
    b.disk
        .verify_after_guest()
        .unwrap_or_else(|e| panic!("{e}\n{}", b.run.log));
}

/// All of the NVMe's DMA (a few hundred translations at least: the data
/// checks move 6 MiB) went through window `liobn` with `page`-sized TCEs.
#[track_caller]
fn assert_dma_only_through(b: &Boot, liobn: u64, page: u64) {
    assert_eq!(
        b.run.iommu.windows(),
        [(liobn, page)],
        "DMA windows used\n{}",
        b.run.log
    );
    assert!(b.run.iommu.translations() >= 100, "{:?}", b.run.iommu);
}

/// The papr-fw trace of the DMA-window calls is exactly `want`.
#[track_caller]
fn assert_ddw_trace(b: &Boot, want: &[&str]) {
    assert_eq!(b.run.ddw_trace(), want, "\n{}", b.run.log);
}

/// Exactly one kernel line contains all of `needles`; it is returned.
#[track_caller]
fn one_kernel_line<'a>(b: &'a Boot, needles: &[&str]) -> &'a str {
    let lines: Vec<&str> = b
        .run
        .kernel(needles[0])
        .into_iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "kernel lines with {needles:?}\n{}",
        b.run.log
    );
    lines[0]
}

#[track_caller]
fn no_kernel_line(b: &Boot, needle: &str) {
    assert!(
        b.run.kernel(needle).is_empty(),
        "kernel line with {needle:?}\n{}",
        b.run.log
    );
}

/// The DMA-window properties /init found on the PHB node.
#[track_caller]
fn dt_props(b: &Boot) -> Vec<String> {
    let prefix = format!("dt: {PHB}:");
    let line = b
        .run
        .report
        .lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} line\n{}", b.run.log));
    line.split_whitespace().map(String::from).collect()
}

/// The kernel's DMA-window lines with the largest block (`lb=`) masked:
/// what must be equal on SLOF and papr-fw.
fn ddw_outcome(run: &TracedRun) -> Vec<String> {
    let mut v = Vec::new();
    for l in run.clean.lines().filter(|l| l.starts_with('[')) {
        let Some((_, t)) = l.split_once("] ") else {
            continue;
        };
        if [
            "ibm,query-pe-dma-windows(",
            "ibm,create-pe-dma-window(",
            "ibm,reset-pe-dma-windows(",
            "Removed default DMA window",
            "failed to remove DMA window",
            "lsa_required",
            "query_ddw failed",
        ]
        .iter()
        .any(|n| t.contains(n))
        {
            let masked: Vec<String> = t
                .split(' ')
                .map(|w| {
                    if w.starts_with("lb=") {
                        "lb=*".into()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            v.push(masked.join(" "));
        }
    }
    v
}

/// Default options: the kernel's DDW outcome on papr-fw is SLOF's, and the
/// trace shows the calls reaching papr-fw and going on to QEMU.
fn same_as_slof(name: &str, kernel: Kernel, memory: &str, create: &str) {
    let p = papr(name, kernel, memory, &["rtas-trace=on"]);
    let s = boot(&format!("{name}-slof"), kernel, Firmware::Slof, memory, &[]);
    assert_data_ok(&p);
    assert_data_ok(&s);
    assert!(
        p.run.log.contains("papr-fw: options: rtas-trace=on"),
        "{}",
        p.run.log
    );

    let (po, so) = (ddw_outcome(&p.run), ddw_outcome(&s.run));
    assert_eq!(po, so, "papr-fw:\n{}\nSLOF:\n{}", p.run.log, s.run.log);
    let create_line = format!(
        "nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 {create} returned 0 \
         (liobn = 0x80000001 starting addr = 8000000 0)"
    );
    assert!(po.contains(&create_line), "{po:#?}");
    // The largest block: papr-fw's cap (2^31 TCEs) against QEMU's 2^37.
    for (run, lb) in [
        (&p.run, "lb=80000000 ps=107 wn=1"),
        (&s.run, "lb=2000000000 ps=107 wn=1"),
    ] {
        let queries = run.kernel("ibm,query-pe-dma-windows(2026)");
        assert!(
            !queries.is_empty() && queries.iter().all(|q| q.ends_with(lb)),
            "{queries:#?}"
        );
    }
    // The device's DMA used the same window the same way: the DDW,
    // direct-mapped with 16M TCEs.
    assert_dma_only_through(&p, DDW_LIOBN, SZ_16M);
    assert_dma_only_through(&s, DDW_LIOBN, SZ_16M);
    assert!(p.run.iommu.mappings(DDW_LIOBN).is_empty(), "{}", p.run.log);
    assert!(dt_props(&p).contains(&"linux,direct64-ddr-window-info".to_string()));
    assert_eq!(dt_props(&p), dt_props(&s));

    // Every query the kernel made went through papr-fw to QEMU, the create
    // went through unchanged; the trace line comes before the kernel's.
    let query = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 \
                 [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]";
    let create_trace = format!(
        "rtas: ibm,create-pe-dma-window(0 8000000 20000000 {create}) = 0 80000001 8000000 0 [platform]"
    );
    let queries = p.run.kernel("ibm,query-pe-dma-windows(").len();
    let mut want = vec![query; queries];
    want.push(&create_trace);
    assert_ddw_trace(&p, &want);
    let t = p.run.log.find(&create_trace).unwrap();
    let k = p.run.log.find("ibm,create-pe-dma-window(2027)").unwrap();
    assert!(t < k, "{}", p.run.log);
    // Other calls are forwarded and traced too.
    assert!(
        p.run
            .trace
            .iter()
            .any(|l| l.starts_with("rtas: ibm,read-pci-config(") && l.ends_with("[platform]")),
        "{}",
        p.run.log
    );
    // SLOF has no such trace.
    assert!(s.run.trace.is_empty(), "{}", s.run.log);
}

#[test]
fn default_options_same_ddw_as_slof_6_1() {
    // 6.1 sizes the DDW to RAM: 2 GiB (0x1f) of 16M pages (0x18).
    same_as_slof("default-6.1", Kernel::V6_1, "2G", "18 1f");
}

#[test]
fn default_options_same_ddw_as_slof_6_12_maxmem() {
    // SLOF passes QEMU's ibm,lrdr-capacity through, which is right only with
    // maxmem; 6.12 sizes the DDW to it: 4 GiB (0x20).  (Without maxmem
    // papr-fw presents the top of RAM and 6.12 gets 0x1f, where SLOF fails
    // with `18 0 returned -3`: tests/linux.rs and tests/vfio.rs.)
    same_as_slof(
        "default-6.12",
        Kernel::V6_12,
        "2G,slots=2,maxmem=4G",
        "18 20",
    );
}

/// `ddw-max-windows=1`: a single-window PE (an SR-IOV VF's layout).  The
/// kernel sees `wn=0`, checks the default table is unused, clears and removes
/// the default window, queries again (`wn=1`) and creates the DDW, which QEMU
/// puts on the freed LIOBN at bus 0.  With `create:busy:3` the first three
/// creates answer 9900 (extended delay, 1 ms): `create_ddw` retries while
/// `rtas_busy_delay()` says so and prints only the final answer.
#[test]
fn max_windows_1_removes_default_window_busy_create_retried() {
    let b = papr(
        "max-windows-1",
        Kernel::V6_1,
        "2G",
        &[
            "ddw-max-windows=1",
            "ddw-inject=create:busy:3",
            "rtas-trace=on",
        ],
    );
    assert_data_ok(&b);
    let query0 = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 0 0 80000000 107 0 \
                  [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]";
    let query1 = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 \
                  [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 2 20 0 107 0]";
    let busy = "rtas: ibm,create-pe-dma-window(0 8000000 20000000 18 1f) = 9900 0 0 0 [injected]";
    assert_ddw_trace(
        &b,
        &[
            query0,
            "rtas: ibm,remove-pe-dma-window(80000000) = 0 [platform]",
            query1,
            busy,
            busy,
            busy,
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 18 1f) = 0 80000000 0 0 [platform]",
        ],
    );
    one_kernel_line(&b, &["ibm,query-pe-dma-windows(2026)", "wn=0"]);
    one_kernel_line(&b, &["ibm,query-pe-dma-windows(2026)", "wn=1"]);
    one_kernel_line(
        &b,
        &[
            "ibm,create-pe-dma-window(2027)",
            "18 1f returned 0 (liobn = 0x80000000 starting addr = 0 0)",
        ],
    );
    assert_eq!(b.run.kernel("ibm,create-pe-dma-window(").len(), 1);
    one_kernel_line(
        &b,
        &["nvme 0000:00:00.0: Removed default DMA window for /pci@800000020000000"],
    );
    // The default window's property is gone (6.1 keeps no -saved copy).
    assert_eq!(dt_props(&b), ["linux,direct64-ddr-window-info"]);
    // The NVMe's DMA: the new window on the default's LIOBN, 16M TCEs.
    assert_dma_only_through(&b, DEFAULT_LIOBN, SZ_16M);
}

/// `ddw-max-windows=1` with `remove:fail`: the kernel cannot remove the
/// default window (`__remove_dma_window` warns), queries again, still sees
/// `wn=0` ("no free dynamic windows", a debug message), and on its failure
/// path calls reset-pe because it had tried to remove the default window;
/// the PE goes on the failed list and the device keeps the 32-bit window.
#[test]
fn max_windows_1_remove_fail_keeps_default_window() {
    let b = papr(
        "remove-fail",
        Kernel::V6_1,
        "2G",
        &[
            "ddw-max-windows=1",
            "ddw-inject=remove:fail",
            "rtas-trace=on",
        ],
    );
    assert_data_ok(&b);
    let query0 = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 0 0 80000000 107 0 \
                  [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]";
    assert_ddw_trace(
        &b,
        &[
            query0,
            "rtas: ibm,remove-pe-dma-window(80000000) = -1 [injected]",
            query0,
            "rtas: ibm,reset-pe-dma-window(0 8000000 20000000) = 0 [platform]",
        ],
    );
    one_kernel_line(
        &b,
        &["/pci@800000020000000: failed to remove DMA window: rtas returned -1 to ibm,remove-pe-dma-window(2028) 80000000"],
    );
    assert_eq!(
        b.run.kernel("returned 0, lb=80000000 ps=107 wn=0").len(),
        2,
        "{}",
        b.run.log
    );
    no_kernel_line(&b, "ibm,create-pe-dma-window(");
    no_kernel_line(&b, "Removed default DMA window");
    // reset-pe succeeded, so the kernel printed nothing about it.
    no_kernel_line(&b, "ibm,reset-pe-dma-windows(");
    assert_eq!(dt_props(&b), ["ibm,dma-window"]);
    assert_dma_only_through(&b, DEFAULT_LIOBN, SZ_4K);
}

/// `create:fail`: `create_ddw` does not retry -1; the kernel prints the
/// failure, puts the PE on the failed list and the device keeps the 32-bit
/// window (nothing was removed, so no reset).
#[test]
fn create_fail_keeps_default_window() {
    let b = papr(
        "create-fail",
        Kernel::V6_1,
        "2G",
        &["ddw-inject=create:fail", "rtas-trace=on"],
    );
    assert_data_ok(&b);
    assert_ddw_trace(
        &b,
        &[
            "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 \
             [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]",
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 18 1f) = -1 0 0 0 [injected]",
        ],
    );
    one_kernel_line(
        &b,
        &[
            "nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 18 1f returned -1 \
             (liobn = 0x0 starting addr = 0 0)",
        ],
    );
    no_kernel_line(&b, "Removed default DMA window");
    assert_eq!(dt_props(&b), ["ibm,dma-window"]);
    assert_dma_only_through(&b, DEFAULT_LIOBN, SZ_4K);
}

/// `query:fail:always` on 6.12: the probe-time query of the VFIO-on-pSeries
/// code fails (`spapr_tce_init_table_group: query_ddw failed`, VFIO's
/// `max_dynamic_windows_supported` becomes -1), then the driver's 64-bit mask
/// brings `enable_ddw`, whose query fails as well: no create, the PE on the
/// failed list, the 32-bit window.
#[test]
fn query_fail_keeps_default_window_6_12() {
    let b = papr(
        "query-fail",
        Kernel::V6_12,
        "2G",
        &["ddw-inject=query:fail:always", "rtas-trace=on"],
    );
    assert_data_ok(&b);
    let q = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = -1 0 0 0 0 0 [injected]";
    assert_ddw_trace(&b, &[q, q]);
    one_kernel_line(
        &b,
        &["pci 0000:00:00.0: ibm,query-pe-dma-windows(2026) 0 8000000 20000000 returned -1, lb=0 ps=0 wn=0"],
    );
    one_kernel_line(
        &b,
        &["pci 0000:00:00.0: spapr_tce_init_table_group: query_ddw failed"],
    );
    one_kernel_line(
        &b,
        &["nvme 0000:00:00.0: ibm,query-pe-dma-windows(2026) 0 8000000 20000000 returned -1, lb=0 ps=0 wn=0"],
    );
    assert!(
        !b.run
            .kernel("lsa_required: 0, lsa_enabled: 0, direct mapping: 0")
            .is_empty(),
        "{}",
        b.run.log
    );
    no_kernel_line(&b, "ibm,create-pe-dma-window(");
    assert_eq!(dt_props(&b), ["ibm,dma-window"]);
    assert_dma_only_through(&b, DEFAULT_LIOBN, SZ_4K);
}

/// `ddw-max-window-shift=30` (with 4K/64K pages, see the module doc) on
/// 6.12 and 2 GiB of RAM: query offers 64K pages and 2^14 of them (1 GiB),
/// less than RAM, so `enable_ddw` takes the dynamic path — a 1 GiB window
/// (`10 1e`), `linux,dma64-ddr-window-info`, an IOMMU table over it — and
/// maps each I/O on demand with 64K TCEs.
#[test]
fn max_window_shift_forces_dynamic_window_6_12() {
    let b = papr(
        "max-window-shift",
        Kernel::V6_12,
        "2G",
        &[
            "ddw-max-window-shift=30",
            "ddw-page-sizes=0x3",
            "rtas-trace=on",
        ],
    );
    assert_data_ok(&b);
    let query = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 4000 3 0 \
                 [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]";
    assert_ddw_trace(
        &b,
        &[
            query,
            query,
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 10 1e) = 0 80000001 8000000 0 [platform]",
        ],
    );
    one_kernel_line(
        &b,
        &["nvme 0000:00:00.0: ibm,query-pe-dma-windows(2026) 0 8000000 20000000 returned 0, lb=4000 ps=3 wn=1"],
    );
    one_kernel_line(
        &b,
        &[
            "nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 10 1e returned 0 \
             (liobn = 0x80000001 starting addr = 8000000 0)",
        ],
    );
    assert!(
        !b.run
            .kernel("lsa_required: 0, lsa_enabled: 0, direct mapping: 0")
            .is_empty(),
        "{}",
        b.run.log
    );
    assert_eq!(
        dt_props(&b),
        ["ibm,dma-window", "linux,dma64-ddr-window-info"]
    );
    assert_dma_only_through(&b, DDW_LIOBN, SZ_64K);
    // On demand: single TCEs (H_PUT_TCE) go into the DDW while the NVMe
    // works; a direct mapping is made once, 512 TCEs per H_PUT_TCE_INDIRECT.
    assert!(b.run.iommu.mappings(DDW_LIOBN).len() >= 10, "{}", b.run.log);
}
