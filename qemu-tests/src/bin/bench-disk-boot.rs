//! `cargo run --release -p qemu-tests --bin bench-disk-boot -- [options]`:
//! boot the GRUB disk (`qemu_tests::guest::grub`) without `-kernel` on
//! papr-fw and SLOF, alternating, and print the medians of the milestones
//! side by side: QEMU start → GRUB running (its grub.cfg's first `echo`) →
//! the kernel's first printk → the guest's /init → power-off.  SLOF boots
//! from virtio-blk (it has no NVMe driver); papr-fw from virtio-blk and
//! from NVMe.  Run it on an otherwise idle machine; QEMU is `PAPR_QEMU`
//! (7.2 default, or 10.0), the papr-fw image `PAPR_FW` or the `cargo fw`
//! output.
//!
//! Options:
//!   --runs N       runs per setup (default 3, at least 1)
//!   --kernel K     6.1 (default), 6.12 or 6.12-64k
//!   --build-only   build (or find) the GRUB disk, print its path and
//!                  SHA-256, and stop
use qemu_tests::bench::{self, MARK_FIRST_PRINTK};
use qemu_tests::guest::grub::{self, Bus};
use qemu_tests::guest::{self, Disk, Kernel};
use qemu_tests::qemu::{Config, QemuBin};
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: bench-disk-boot [--runs N] [--kernel 6.1|6.12|6.12-64k] [--build-only]");
    std::process::exit(2);
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("bench-disk-boot: {e}");
    std::process::exit(1);
}

/// One firmware/bus combination.
#[derive(Clone, Copy)]
struct Setup {
    fw: bench::Fw,
    bus: Bus,
}

impl Setup {
    fn label(&self) -> String {
        format!("{} ({})", self.fw.label(), self.bus.label())
    }
}

#[derive(Clone, Copy, Default)]
struct Milestones {
    grub: Duration,
    printk: Duration,
    init: Duration,
    poweroff: Duration,
}

fn run_once(g: &grub::GrubDisk, s: Setup, step: Duration) -> Result<Milestones, String> {
    let mut args = Vec::new();
    let _copy;
    let _data;
    if s.bus == Bus::Nvme {
        let c = g.temp_copy("bench").map_err(|e| e.to_string())?;
        args.extend(grub::drive(&c.disk.path, "boot", false));
        _copy = Some(c);
    } else {
        args.extend(g.drive_ro("boot"));
        let d = Disk::temp("bench-data").map_err(|e| e.to_string())?;
        args.extend(d.nvme_args());
        _data = Some(d);
    }
    args.extend(s.bus.device_args("boot", Some(1)));
    let cfg = Config::new()
        .firmware(s.fw.firmware())
        .memory("2G")
        .args(&args)
        .arg("-no-reboot");
    let mut m = cfg.start();
    let e = |f: qemu_tests::qemu::Failure| f.to_string();
    let grub = m.expect(grub::MARK_GRUB, step).map_err(e)?;
    let printk = m.expect(MARK_FIRST_PRINTK, step).map_err(e)?;
    let end = bench::guest_end(&mut m, step)?;
    Ok(Milestones {
        grub,
        printk,
        init: end.init,
        poweroff: end.poweroff,
    })
}

fn main() {
    let mut args = bench::Args::new(usage);
    let mut runs = 3usize;
    let mut kernel = Kernel::V6_1;
    let mut build_only = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.runs(),
            "--kernel" => kernel = args.kernel(),
            "--build-only" => build_only = true,
            _ => usage(),
        }
    }
    let g = grub::ensure(kernel).unwrap_or_else(|e| fail(e));
    if build_only {
        let sum = guest::debs::sha256_file(&g.path).unwrap_or_else(|e| fail(e));
        println!(
            "{} {sum} ({})",
            g.path.display(),
            if g.built { "built" } else { "cached" }
        );
        return;
    }
    let setups = [
        Setup {
            fw: bench::Fw::PaprFw,
            bus: Bus::VirtioBlk,
        },
        Setup {
            fw: bench::Fw::Slof,
            bus: Bus::VirtioBlk,
        },
        Setup {
            fw: bench::Fw::PaprFw,
            bus: Bus::Nvme,
        },
    ];
    let qemu = QemuBin::selected();
    println!(
        "bench-disk-boot: {runs} runs each, alternating; GRUB disk with Linux {}; {}; -m 2G, 1 CPU",
        kernel.label(),
        qemu.version()
    );
    let mut results: Vec<Vec<Milestones>> = vec![Vec::new(); setups.len()];
    let step = Duration::from_secs(240);
    for i in 0..runs {
        for (s, out) in setups.iter().zip(results.iter_mut()) {
            let m = run_once(&g, *s, step)
                .unwrap_or_else(|e| fail(format!("run {} {}: {e}", i + 1, s.label())));
            eprintln!(
                "run {}/{runs} {:<24}: GRUB {:.3} s, printk {:.3} s, init {:.3} s, power-off {:.3} s",
                i + 1,
                s.label(),
                m.grub.as_secs_f64(),
                m.printk.as_secs_f64(),
                m.init.as_secs_f64(),
                m.poweroff.as_secs_f64()
            );
            out.push(m);
        }
    }
    let med = |v: &[Milestones], f: fn(&Milestones) -> Duration| {
        bench::median_of(v, f).unwrap_or_default()
    };
    println!();
    print!("{:<34}", "median, seconds from QEMU start");
    for s in &setups {
        print!("{:>26}", s.label());
    }
    println!();
    type Get = fn(&Milestones) -> Duration;
    let rows: [(&str, Get); 4] = [
        ("GRUB running (grub.cfg read)", |m| m.grub),
        ("kernel's first printk", |m| m.printk),
        ("guest /init", |m| m.init),
        ("power-off (checks done)", |m| m.poweroff),
    ];
    for (name, f) in rows {
        print!("{name:<34}");
        for r in &results {
            print!("{:>26.3}", med(r, f).as_secs_f64());
        }
        println!();
    }
    let (p, s) = (
        med(&results[0], |m| m.printk),
        med(&results[1], |m| m.printk),
    );
    println!(
        "\npapr-fw reaches the kernel's first printk from the same virtio-blk disk {:.1}x as fast as SLOF ({:.2} s vs {:.2} s)",
        s.as_secs_f64() / p.as_secs_f64().max(1e-3),
        p.as_secs_f64(),
        s.as_secs_f64()
    );
}
