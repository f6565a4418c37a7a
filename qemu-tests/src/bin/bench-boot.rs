//! `cargo run --release -p qemu-tests --bin bench-boot -- [options]`: boot the
//! same Linux guest on papr-fw, SLOF and VOF, alternating, and print the
//! medians of the boot milestones (see `qemu_tests::bench`).  Run it on an
//! otherwise idle machine; QEMU is `PAPR_QEMU` (7.2 default, or 10.0), the
//! papr-fw image `PAPR_FW` or the `cargo fw` output.
//!
//! Options:
//!   --runs N          runs per firmware (default 5, at least 1)
//!   --kernel K        6.1, 6.12 (default) or 6.12-64k
//!   --firmwares LIST  comma-separated, from papr-fw,slof,vof (default all)
//!   --append TEXT     extra kernel command line
//!   -- ARGS...        extra QEMU arguments (the same for every firmware)
use qemu_tests::bench::{self, Fw, Series};
use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::QemuBin;

fn usage() -> ! {
    eprintln!(
        "usage: bench-boot [--runs N] [--kernel 6.1|6.12|6.12-64k] [--firmwares papr-fw,slof,vof] \
         [--append TEXT] [-- QEMU ARGS...]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = bench::Args::new(usage);
    let mut runs = 5usize;
    let mut kernel = Kernel::V6_12;
    let mut fws = Fw::ALL.to_vec();
    let mut append = String::new();
    let mut qemu_args = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.runs(),
            "--kernel" => kernel = args.kernel(),
            "--firmwares" => fws = args.list(Fw::from_label),
            "--append" => append = args.value(),
            "--" => {
                qemu_args.extend(args.by_ref());
            }
            _ => usage(),
        }
    }

    let img = guest::ensure(kernel).unwrap_or_else(|e| {
        eprintln!("bench-boot: {e}");
        std::process::exit(1)
    });
    let qemu = QemuBin::selected();
    println!(
        "bench-boot: {} runs each, alternating {}; Linux {}; {}; -m 2G, 1 CPU, NVMe disk{}{}",
        runs,
        fws.iter().map(|f| f.label()).collect::<Vec<_>>().join(", "),
        img.release,
        qemu.version(),
        if append.is_empty() {
            String::new()
        } else {
            format!("; append {append:?}")
        },
        if qemu_args.is_empty() {
            String::new()
        } else {
            format!("; {}", qemu_args.join(" "))
        },
    );
    let disks: Vec<Disk> = fws
        .iter()
        .map(|f| Disk::temp(&format!("bench-{}", f.label())).expect("temporary disk"))
        .collect();
    let mut series: Vec<Series> = fws
        .iter()
        .map(|&fw| Series {
            fw,
            runs: Vec::new(),
        })
        .collect();
    for i in 0..runs {
        for (s, disk) in series.iter_mut().zip(&disks) {
            match bench::run_once(&img, s.fw, disk, &append, &qemu_args, 180) {
                Ok(m) => {
                    eprintln!(
                        "run {}/{runs} {:<7}: prom_init {}, printk {:.3} s, init {:.3} s, power-off {:.3} s{}",
                        i + 1,
                        s.fw.label(),
                        m.prom_init
                            .map(|d| format!("{:.3} s", d.as_secs_f64()))
                            .unwrap_or_else(|| "-".into()),
                        m.first_printk.as_secs_f64(),
                        m.init.as_secs_f64(),
                        m.poweroff.as_secs_f64(),
                        m.handover
                            .map(|d| format!(", hand-over {:.1} ms", d.as_secs_f64() * 1e3))
                            .unwrap_or_default(),
                    );
                    s.runs.push(m);
                }
                Err(e) => {
                    eprintln!("bench-boot: run {} failed: {e}", i + 1);
                    std::process::exit(1);
                }
            }
        }
    }
    println!();
    print!("{}", bench::table(&series));
    let of = |fw| series.iter().find(|s| s.fw == fw);
    if let (Some(p), Some(v)) = (of(Fw::PaprFw), of(Fw::Vof)) {
        // Run i of each firmware ran back to back with the other's: their
        // differences suffer less from other load on the machine than the
        // medians do.
        let mut paired: Vec<f64> = p
            .runs
            .iter()
            .zip(&v.runs)
            .map(|(a, b)| a.first_printk.as_secs_f64() - b.first_printk.as_secs_f64())
            .collect();
        paired.sort_by(f64::total_cmp);
        let paired_median = paired[paired.len() / 2];
        let (pm, vm) = (
            p.first_printk().unwrap_or_default(),
            v.first_printk().unwrap_or_default(),
        );
        println!(
            "\npapr-fw reaches the first kernel printk {} than VOF (medians {:+.1} ms, median of paired runs {:+.1} ms), \
             with prom_init's output on the console",
            if pm < vm { "faster" } else { "NOT faster" },
            (pm.as_secs_f64() - vm.as_secs_f64()) * 1e3,
            paired_median * 1e3,
        );
    }
}
