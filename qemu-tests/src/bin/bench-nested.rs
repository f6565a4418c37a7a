//! `cargo run --release -p qemu-tests --bin bench-nested -- [options]`: the
//! nested-KVM scenario (`qemu_tests::guest::nested`: L1 under TCG runs L2
//! under KVM with the NVMe passed through VFIO) with papr-fw and SLOF as the
//! firmware of L1 and of L2, all four pairs alternating, and the medians of
//! L1 to its init (from L0's start), L2 to its init (from L1 starting L2's
//! QEMU) and the whole run (L0's start to its exit).  No traces, quiet
//! consoles.  QEMU (the outer one) is `PAPR_QEMU`; the papr-fw image is
//! `PAPR_FW` or the `cargo fw` output, used at both levels.
//!
//! Options:
//!   --runs N       runs per pair (default 3, at least 1)
//!   --pairs LIST   comma-separated L1/L2 pairs from papr/papr, papr/slof,
//!                  slof/papr, slof/slof (default all)
use qemu_tests::bench::{median_of, Args};
use qemu_tests::guest::nested::{self, L2Options, NestedRun};
use qemu_tests::guest::Disk;
use qemu_tests::qemu::{papr_fw_image, Firmware, QemuBin};
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: bench-nested [--runs N] [--pairs papr/papr,papr/slof,slof/papr,slof/slof]");
    std::process::exit(2);
}

#[derive(Clone, Copy, PartialEq)]
struct Pair {
    l1_slof: bool,
    l2_slof: bool,
}

impl Pair {
    const ALL: [Pair; 4] = [
        Pair {
            l1_slof: false,
            l2_slof: false,
        },
        Pair {
            l1_slof: false,
            l2_slof: true,
        },
        Pair {
            l1_slof: true,
            l2_slof: false,
        },
        Pair {
            l1_slof: true,
            l2_slof: true,
        },
    ];

    fn label(self) -> String {
        let n = |s: bool| if s { "SLOF" } else { "papr-fw" };
        format!("L1 {} / L2 {}", n(self.l1_slof), n(self.l2_slof))
    }

    fn parse(s: &str) -> Option<Pair> {
        let (a, b) = s.split_once('/')?;
        let f = |x: &str| match x {
            "papr" | "papr-fw" => Some(false),
            "slof" => Some(true),
            _ => None,
        };
        Some(Pair {
            l1_slof: f(a)?,
            l2_slof: f(b)?,
        })
    }
}

fn main() {
    let mut args = Args::new(usage);
    let mut runs = 3usize;
    let mut pairs = Pair::ALL.to_vec();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.runs(),
            "--pairs" => pairs = args.list(Pair::parse),
            _ => usage(),
        }
    }
    let img = nested::ensure().unwrap_or_else(|e| {
        eprintln!("bench-nested: {e}");
        std::process::exit(1)
    });
    let fw = papr_fw_image();
    let qemu = QemuBin::selected();
    println!(
        "bench-nested: {runs} runs per pair, alternating; L0 {}; L1 and L2 Linux {} (L1 2 GiB, \
         L2 512 MiB under KVM, NVMe through VFIO); QEMU {} in L1",
        qemu.version(),
        img.l1.release,
        img.qemu_version
    );
    let mut results: Vec<Vec<(Duration, Duration, Duration)>> = vec![Vec::new(); pairs.len()];
    for r in 0..runs {
        for (i, pair) in pairs.iter().enumerate() {
            let disk = Disk::temp("bench-nested").unwrap();
            let initrd = img.initrd_with(&fw, "bench").unwrap();
            let l2 = L2Options {
                slof: pair.l2_slof,
                ..Default::default()
            };
            let l1fw = if pair.l1_slof {
                Firmware::Slof
            } else {
                Firmware::PaprFw
            };
            let con = nested::TempFile::temp("bench-l2con");
            let cfg = img.config(l1fw, &initrd, &disk, &l2, &con);
            let (mut m, mut l2con) = nested::start(&cfg, &con);
            let run = NestedRun::finish(&mut m, &mut l2con, 300);
            if !run.l2_report.pass || !run.l1_report.pass {
                eprintln!(
                    "bench-nested: {} run {}: not PASS\n{}",
                    pair.label(),
                    r + 1,
                    run.log
                );
                std::process::exit(1);
            }
            let t = run.times;
            eprintln!("bench-nested: {} run {}: {t}", pair.label(), r + 1);
            results[i].push((t.l1_init, t.l2_to_init(), t.exit));
        }
    }
    println!(
        "{:<26} {:>12} {:>12} {:>10}",
        "pair (medians)", "L1 to init", "L2 to init", "total"
    );
    for (pair, res) in pairs.iter().zip(&results) {
        let m = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
            median_of(res, f).map_or("-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
        };
        println!(
            "{:<26} {:>12} {:>12} {:>10}",
            pair.label(),
            m(|t| t.0),
            m(|t| t.1),
            m(|t| t.2)
        );
    }
}
