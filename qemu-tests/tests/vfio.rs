//! VFIO inside a Linux 6.12 guest on papr-fw: the guest binds its NVMe to
//! vfio-pci and a small static program (`qemu-tests/vfio/papr-vfio.c`)
//! drives the SPAPR TCE v2 ioctls, so the kernel's VFIO-on-pSeries code
//! (linux-expectations §2.10, §3) makes its DMA-window RTAS calls to
//! papr-fw's resident RTAS; `rtas-trace=on` shows each one, and QEMU's trace
//! shows the TCEs each window got.  6.1 has no VFIO-on-pSeries support and is
//! not tested.  The machine has no `maxmem`: papr-fw's `ibm,lrdr-capacity`
//! lets 6.12 make its boot DDW (`18 1f`), which SLOF would not (see
//! tests/linux.rs).
//!
//! What the kernel does, step by step, as the trace shows it:
//! 1. probe (`spapr_tce_init_table_group`) and the nvme driver: query,
//!    query, create `18 1f` (the direct-mapped DDW on LIOBN 0x80000001);
//! 2. `VFIO_GROUP_SET_CONTAINER` (`take_ownership`): remove-pe of the DDW.
//!    The default window loses its `ibm,dma-window` property but no RTAS
//!    call is made for it: `remove_dma_window_named` only calls remove-pe for
//!    properties at least `sizeof(struct dynamic_dma_window_prop)` long, 24
//!    bytes with its padding, and `ibm,dma-window` has 20;
//! 3. the first `VFIO_IOMMU_MAP_DMA` makes VFIO create its pending default
//!    window: a default-window request (4K pages, ≤ the 32-bit size), which
//!    the kernel serves with reset-pe and the saved property;
//! 4. window A (64K pages, 1 GiB): query, create `10 1e` → LIOBN 0x80000001
//!    at 1<<59, the default window being active; then remove-pe;
//! 5. window B (4K pages, 2 GiB — a DDW, being larger than the 32-bit
//!    window): query, create `c 1f`, remove-pe;
//! 6. removing the default window: property only (as in 2);
//! 7. `VFIO_GROUP_UNSET_CONTAINER` (`release_ownership`, no default table):
//!    reset-pe;
//! 8. back on nvme: query, create `18 1f` again, and the disk reads back.
//!
//! QEMU is `PAPR_QEMU` (7.2 by default, or 10.0); timings go to stderr
//! (`--nocapture`).

use qemu_tests::guest::rtas_trace::{self, TraceFile, TracedRun};
use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::Firmware;

const RUN_SECS: u64 = 240;

#[test]
fn vfio_spapr_tce_v2_windows_6_12() {
    let img = guest::vfio::ensure(Kernel::V6_12).unwrap_or_else(|e| panic!("{e}"));
    let disk = Disk::temp("vfio").unwrap();
    let tf = TraceFile::temp("vfio");
    let cfg = img
        .config(Firmware::PaprFw, Some(&disk), guest::vfio::CMDLINE)
        .prom_env("rtas-trace=on")
        .args(rtas_trace::qemu_args(&tf.0));
    let qemu = cfg.qemu.label.clone();
    let mut m = cfg.start();
    let run = TracedRun::finish(&mut m, &tf, RUN_SECS);
    eprintln!(
        "vfio: QEMU {qemu}, papr-fw, Linux {}: exit {:.2}s",
        img.release,
        run.exit.as_secs_f64()
    );
    for l in run.report.lines.iter().filter(|l| l.starts_with("vfio: ")) {
        eprintln!("vfio:   {l}");
    }
    for l in run.ddw_trace() {
        eprintln!("vfio:   {l}");
    }
    let log = &run.log;

    // The guest's own checks, before and after VFIO had the device.
    let r = &run.report;
    assert!(
        r.pass && r.seed_ok && r.write_ok,
        "guest verdict not PASS (fail: {:?})\n{log}",
        r.fail
    );
    disk.verify_after_guest()
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
    let has = |line: &str| r.lines.iter().any(|l| l == line);
    for line in [
        "vfio: 0000:00:00.0 driver vfio-pci, iommu group 0",
        "vfio: container set, SPAPR TCE v2",
        // pgsizes = 4K | the query's mask (4K 64K 2M 16M); two windows.
        "vfio: info: flags 0x1 dma32 0+0x40000000 ddw pgsizes 0x1211000 \
         max_dynamic_windows_supported 2 levels 1",
        "vfio: buffer 2M huge page, DDW page shift 16, window 0x40000000",
        "vfio: mapped 0x200000 bytes at 0",
        "vfio: window A: page shift 16 size 0x40000000 start_addr 0x800000000000000",
        "vfio: window B: page shift 12 size 0x80000000 start_addr 0x800000000000000",
        "vfio: mapped 0x200000 bytes at 0x800000000000000",
        "vfio: default window removed",
        "vfio: released",
        "vfio: PASS",
        "vfio: 0000:00:00.0 driver nvme again",
        "vfio: seed OK after rebind (/dev/nvme0n1)",
        "vfio: data OK after rebind",
    ] {
        assert!(has(line), "no guest line {line:?}\n{log}");
    }

    // Every DMA-window call, in order.
    let query = "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 \
                 [platform: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 20 0 107 0]";
    let create = |shifts: &str| {
        format!(
            "rtas: ibm,create-pe-dma-window(0 8000000 20000000 {shifts}) = 0 80000001 8000000 0 [platform]"
        )
    };
    let remove_ddw = "rtas: ibm,remove-pe-dma-window(80000001) = 0 [platform]";
    let reset = "rtas: ibm,reset-pe-dma-window(0 8000000 20000000) = 0 [platform]";
    let (c_boot, c_a, c_b) = (create("18 1f"), create("10 1e"), create("c 1f"));
    let want: Vec<&str> = vec![
        query, query, &c_boot,    // 1
        remove_ddw, // 2
        reset,      // 3
        query, &c_a, remove_ddw, // 4
        query, &c_b, remove_ddw, // 5
        reset,      // 7
        query, &c_boot, // 8
    ];
    assert_eq!(run.ddw_trace(), want, "\n{log}");

    // The kernel's side of 4 and 5.
    for shifts in ["10 1e", "c 1f"] {
        let l = format!(
            "vfio-pci 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 8000000 20000000 {shifts} \
             returned 0 (liobn = 0x80000001 starting addr = 8000000 0)"
        );
        assert_eq!(run.kernel(&l).len(), 1, "{l}\n{log}");
    }
    assert_eq!(
        run.kernel("spapr_tce_create_table: Calling query /pci@800000020000000")
            .len(),
        2,
        "{log}"
    );
    // After the release the PHB has its default window and, from nvme, a
    // direct-mapped DDW again.
    assert!(
        r.lines.iter().any(|l| l
            == "dt: /pci@800000020000000: ibm,dma-window ibm,dma-window-saved \
                linux,direct64-ddr-window-info"),
        "{log}"
    );

    // The TCEs the program's mappings made (H_PUT_TCE): the 2 MiB huge page,
    // 512 4K TCEs in the default window, then 32 64K TCEs (window A) and
    // 512 4K TCEs (window B) on LIOBN 0x80000001, all within that page.
    let default = run.iommu.mappings(0x8000_0000);
    let ddw = run.iommu.mappings(0x8000_0001);
    assert_eq!(default.len(), 512, "{:?}", &default[..default.len().min(8)]);
    assert_eq!(ddw.len(), 32 + 512, "{:?}", &ddw[..ddw.len().min(8)]);
    let page = default[0].1 & !((2 << 20) - 1);
    for (ioba, tce) in default.iter().chain(ddw.iter()) {
        assert_eq!(tce & !((2 << 20) - 1), page, "TCE {tce:#x} at {ioba:#x}");
        assert_eq!(tce & 3, 3, "TCE {tce:#x} at {ioba:#x} not read/write");
    }
    assert!(default.iter().all(|(ioba, _)| *ioba < 2 << 20));
    assert!(ddw
        .iter()
        .all(|(ioba, _)| *ioba >= 1 << 59 && *ioba < (1 << 59) + (2 << 20)));
}

/// The VFIO image (no boot): the VFIO modules in `.modinfo` dependency
/// order after the NVMe stack, the program as a static ppc64le executable
/// (no interpreter: the guest has no libc), and the `papr.run=vfio` step.
#[test]
fn vfio_image_contents() {
    use qemu_tests::guest::cpio;
    use std::io::Read;
    let img = guest::vfio::ensure(Kernel::V6_12).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&img.initrd).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let entries = cpio::parse(&bytes).unwrap();
    let get = |n: &str| {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} missing from {}", img.initrd.display()))
    };
    let list = String::from_utf8(get("etc/papr/modules").data.clone()).unwrap();
    let order: Vec<&str> = list
        .lines()
        .map(|l| l.rsplit('/').next().unwrap().trim_end_matches(".ko"))
        .collect();
    assert_eq!(
        order,
        [
            "nvme_auth",
            "nvme_core",
            "nvme",
            "vfio",
            "vfio_pci_core",
            "vfio_pci",
            "vfio_iommu_spapr_tce"
        ]
    );
    let prog = &get("bin/papr-vfio").data;
    // ELF64, little-endian, ET_EXEC, EM_PPC64, no PT_INTERP.
    assert_eq!(&prog[..6], b"\x7fELF\x02\x01");
    assert_eq!(u16::from_le_bytes([prog[16], prog[17]]), 2);
    assert_eq!(u16::from_le_bytes([prog[18], prog[19]]), 21);
    let phoff = u64::from_le_bytes(prog[32..40].try_into().unwrap()) as usize;
    let phentsize = u16::from_le_bytes([prog[54], prog[55]]) as usize;
    let phnum = u16::from_le_bytes([prog[56], prog[57]]) as usize;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(prog[at..at + 4].try_into().unwrap());
        assert_ne!(p_type, 3, "papr-vfio has an interpreter (not static)");
    }
    assert_eq!(get("bin/papr-vfio").mode & 0o111, 0o111);
    assert_eq!(
        get("etc/papr/run/vfio").data,
        guest::vfio::RUN_STEP.as_bytes()
    );
    assert_eq!(get("init").data, guest::INIT_SCRIPT.as_bytes());
}
