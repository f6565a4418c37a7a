//! Boot-time benchmark of papr-fw against QEMU's SLOF and VOF (the
//! `bench-boot` program): the same kernel, initramfs, QEMU and machine, runs
//! alternating between the firmwares, medians of the console milestones.
//!
//! Milestones, from QEMU's start (arrival times of console bytes, see
//! [`Machine::expect`]):
//! * prom_init's first line, `Preparing to boot Linux` — VOF's `write` has no
//!   console backend, so VOF shows none;
//! * the kernel's first printk (`[    0.000000] `);
//! * the guest's /init ([`guest::MARK_INIT`]);
//! * power-off: QEMU exited after the guest's checks and `poweroff -f`.
//!
//! And papr-fw's own start-up time, entry to hand-over to the client, which
//! it measures with the timebase and prints (`papr-fw: handing over after N us`).

use crate::guest::{self, Disk, GuestImage, Kernel};
use crate::qemu::{Firmware, Machine};
use std::time::Duration;

/// The firmwares in the order the runs alternate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fw {
    PaprFw,
    Slof,
    Vof,
}

impl Fw {
    pub const ALL: [Fw; 3] = [Fw::PaprFw, Fw::Slof, Fw::Vof];

    pub fn label(self) -> &'static str {
        match self {
            Fw::PaprFw => "papr-fw",
            Fw::Slof => "SLOF",
            Fw::Vof => "VOF",
        }
    }

    pub fn from_label(s: &str) -> Option<Fw> {
        match s.to_ascii_lowercase().as_str() {
            "papr-fw" | "papr" => Some(Fw::PaprFw),
            "slof" => Some(Fw::Slof),
            "vof" => Some(Fw::Vof),
            _ => None,
        }
    }

    pub fn firmware(self) -> Firmware {
        match self {
            Fw::PaprFw => Firmware::PaprFw,
            Fw::Slof => Firmware::Slof,
            Fw::Vof => Firmware::Vof,
        }
    }

    /// Whether prom_init's output reaches the console with this firmware.
    pub fn prints_prom_init(self) -> bool {
        self != Fw::Vof
    }
}

/// The console line prom_init prints first.
pub const MARK_PROM_INIT: &str = "Preparing to boot Linux";
/// The kernel's first printk: every line before the clock runs says 0.
pub const MARK_FIRST_PRINTK: &str = "[    0.000000] ";
/// papr-fw's hand-over line, followed by the microseconds and " us".
pub const MARK_HANDOVER: &str = "papr-fw: handing over after ";

/// One boot's milestones.
#[derive(Clone, Copy, Debug, Default)]
pub struct Milestones {
    pub prom_init: Option<Duration>,
    pub first_printk: Duration,
    pub init: Duration,
    pub poweroff: Duration,
    /// papr-fw's entry → hand-over, from its own timebase.
    pub handover: Option<Duration>,
}

/// Boot `img` once on `fw` with `disk` and collect the milestones; the guest
/// must pass its checks.  Each step may take `step_secs`.
pub fn run_once(
    img: &GuestImage,
    fw: Fw,
    disk: &Disk,
    extra_cmdline: &str,
    qemu_args: &[String],
    step_secs: u64,
) -> Result<Milestones, String> {
    let cfg = img
        .config(fw.firmware(), Some(disk), extra_cmdline)
        .args(qemu_args);
    let mut m = cfg.start();
    measure(&mut m, fw, Duration::from_secs(step_secs)).map_err(|e| format!("{}: {e}", fw.label()))
}

fn measure(m: &mut Machine, fw: Fw, step: Duration) -> Result<Milestones, String> {
    let e = |f: crate::qemu::Failure| f.to_string();
    let prom_init = if fw.prints_prom_init() {
        Some(m.expect(MARK_PROM_INIT, step).map_err(e)?)
    } else {
        None
    };
    let first_printk = m.expect(MARK_FIRST_PRINTK, step).map_err(e)?;
    let end = guest_end(m, step)?;
    let handover = handover_time(&end.log);
    if fw == Fw::PaprFw && handover.is_none() {
        return Err(format!("no {MARK_HANDOVER:?} line\n{}", end.log));
    }
    Ok(Milestones {
        prom_init,
        first_printk,
        init: end.init,
        poweroff: end.poweroff,
        handover,
    })
}

/// The end of a guest's boot, from QEMU's start.
#[derive(Clone, Debug)]
pub struct GuestEnd {
    /// The guest's /init ([`guest::MARK_INIT`]).
    pub init: Duration,
    /// QEMU's exit after the guest's power-off.
    pub poweroff: Duration,
    /// The console.
    pub log: String,
}

/// Wait (each step at most `step`) for the guest's /init, its power-off and
/// QEMU's exit with 0; the guest's verdict must be PASS.
pub fn guest_end(m: &mut Machine, step: Duration) -> Result<GuestEnd, String> {
    let e = |f: crate::qemu::Failure| f.to_string();
    let init = m.expect(guest::MARK_INIT, step).map_err(e)?;
    m.expect(guest::MARK_POWEROFF, step).map_err(e)?;
    match m.expect_exit(step).map_err(e)? {
        Some(0) => {}
        c => return Err(format!("QEMU exited with {c:?}\n{}", m.log())),
    }
    let poweroff = m.elapsed();
    let log = m.log();
    let report = guest::Report::parse(&log);
    if !report.pass {
        return Err(format!("guest verdict not PASS: {:?}\n{log}", report.fail));
    }
    Ok(GuestEnd {
        init,
        poweroff,
        log,
    })
}

/// papr-fw's `handing over after N us`, if printed.
pub fn handover_time(log: &str) -> Option<Duration> {
    let rest = &log[log.find(MARK_HANDOVER)? + MARK_HANDOVER.len()..];
    let us: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_micros(us))
}

/// The median (mean of the middle two for an even count); None if empty.
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut v = values.to_vec();
    v.sort();
    let n = v.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// The median of `get` over `runs`.
pub fn median_of<T>(runs: &[T], get: impl Fn(&T) -> Duration) -> Option<Duration> {
    median(&runs.iter().map(get).collect::<Vec<_>>())
}

/// The command line of a benchmark program, read an option at a time: a
/// missing or bad value prints the program's `usage` (which exits).
pub struct Args {
    args: std::iter::Skip<std::env::Args>,
    usage: fn() -> !,
}

impl Args {
    pub fn new(usage: fn() -> !) -> Args {
        Args {
            args: std::env::args().skip(1),
            usage,
        }
    }

    /// The value of the option just read.
    pub fn value(&mut self) -> String {
        self.args.next().unwrap_or_else(|| (self.usage)())
    }

    /// `--runs N`: at least 1.
    pub fn runs(&mut self) -> usize {
        let usage = self.usage;
        self.value()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| usage())
    }

    /// `--kernel K` ([`Kernel::from_label`]).
    pub fn kernel(&mut self) -> Kernel {
        let usage = self.usage;
        Kernel::from_label(&self.value()).unwrap_or_else(|| usage())
    }

    /// A comma-separated list, each item read by `item`.
    pub fn list<T>(&mut self, item: impl Fn(&str) -> Option<T>) -> Vec<T> {
        let usage = self.usage;
        self.value()
            .split(',')
            .map(|s| item(s.trim()).unwrap_or_else(|| usage()))
            .collect()
    }
}

impl Iterator for Args {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.args.next()
    }
}

/// All runs of one firmware.
#[derive(Clone, Debug)]
pub struct Series {
    pub fw: Fw,
    pub runs: Vec<Milestones>,
}

/// The rows of the table: label and how to read the milestone.
type Row = (&'static str, fn(&Milestones) -> Option<Duration>);

const ROWS: [Row; 5] = [
    ("QEMU start -> prom_init's first line", |m| m.prom_init),
    ("QEMU start -> first kernel printk", |m| {
        Some(m.first_printk)
    }),
    ("QEMU start -> /init", |m| Some(m.init)),
    ("QEMU start -> power-off (QEMU exit)", |m| Some(m.poweroff)),
    ("firmware entry -> hand-over (timebase)", |m| m.handover),
];

impl Series {
    /// Median of one row over the runs that have it.
    pub fn median_of(&self, get: fn(&Milestones) -> Option<Duration>) -> Option<Duration> {
        let v: Vec<Duration> = self.runs.iter().filter_map(get).collect();
        median(&v)
    }

    pub fn first_printk(&self) -> Option<Duration> {
        self.median_of(ROWS[1].1)
    }
}

fn cell(d: Option<Duration>, ms: bool) -> String {
    match d {
        None => "-".into(),
        Some(d) if ms => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.3} s", d.as_secs_f64()),
    }
}

/// The results as a text table (medians; min–max beneath each in brackets).
pub fn table(series: &[Series]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec![String::from("median of runs")];
    head.extend(
        series
            .iter()
            .map(|s| format!("{} (n={})", s.fw.label(), s.runs.len())),
    );
    rows.push(head);
    for (i, (label, get)) in ROWS.iter().enumerate() {
        let ms = i == ROWS.len() - 1;
        let mut r = vec![label.to_string()];
        for s in series {
            let v: Vec<Duration> = s.runs.iter().filter_map(get).collect();
            let (lo, hi) = (v.iter().min().copied(), v.iter().max().copied());
            r.push(match median(&v) {
                None => "-".into(),
                m => format!("{} [{}..{}]", cell(m, ms), cell(lo, ms), cell(hi, ms)),
            });
        }
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&sep.join("-+-"));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let d = Duration::from_millis;
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[d(5), d(1), d(3)]), Some(d(3)));
        assert_eq!(median(&[d(4), d(1), d(3), d(10)]), Some(d(3500) / 1000));
    }

    #[test]
    fn handover_line() {
        let log = "papr-fw: tce: ...\npapr-fw: handing over after 27520 us\nOF stdout";
        assert_eq!(handover_time(log), Some(Duration::from_micros(27520)));
        assert_eq!(handover_time("nothing"), None);
    }

    #[test]
    fn table_shape() {
        let m = Milestones {
            prom_init: None,
            first_printk: Duration::from_millis(340),
            init: Duration::from_secs(2),
            poweroff: Duration::from_secs(3),
            handover: None,
        };
        let t = table(&[Series {
            fw: Fw::Vof,
            runs: vec![m, m],
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 7, "{t}");
        assert!(lines[0].contains("VOF (n=2)"), "{t}");
        assert!(lines[2].ends_with("| -"), "{t}");
        assert!(lines[3].contains("0.340 s [0.340 s..0.340 s]"), "{t}");
        assert_eq!(Fw::from_label("papr"), Some(Fw::PaprFw));
    }
}
