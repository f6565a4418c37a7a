//! What a guest run shows of the DMA-window path, from both ends:
//! * papr-fw's RTAS trace (`-prom-env rtas-trace=on`, `crate`'s
//!   `rtas::runtime`): one console line per RTAS call the resident RTAS
//!   handles, `rtas: NAME(ARGS) = STATUS RETS [SOURCE]`.  Those lines are
//!   written while the OS waits in RTAS, so one can land in the middle of a
//!   line the guest's user space was printing (the hvc driver sends tty output
//!   in pieces); [`split_rtas_trace`] takes them out and joins such lines again.
//! * QEMU's own trace of the TCE tables (`-trace spapr_iommu_xlate` — every
//!   DMA translation a device makes — and `-trace spapr_iommu_pci_put`, every
//!   H_PUT_TCE), written to a file with `-D` ([`IommuTrace`]): which window
//!   (LIOBN) and which IOMMU page size the device really used.

use super::Report;
use crate::qemu::Machine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `(log without the trace lines, the trace lines)`.  A trace line starts at
/// `rtas: NAME(` (NAME without spaces) anywhere in a line and runs to the end
/// of that line; what followed it on the next line is joined to what preceded
/// it.
pub fn split_rtas_trace(log: &str) -> (String, Vec<String>) {
    let mut clean = String::with_capacity(log.len());
    let mut trace = Vec::new();
    let mut rest = log;
    while let Some(pos) = trace_start(rest) {
        clean.push_str(&rest[..pos]);
        let line = &rest[pos..];
        let end = line.find('\n').map_or(line.len(), |e| e + 1);
        trace.push(line[..end].trim_end().to_string());
        rest = &line[end..];
    }
    clean.push_str(rest);
    (clean, trace)
}

fn trace_start(s: &str) -> Option<usize> {
    s.match_indices("rtas: ").map(|(i, _)| i).find(|&i| {
        let after = &s[i + "rtas: ".len()..];
        match after.find('(') {
            Some(open) => {
                open > 0
                    && !after[..open].contains(char::is_whitespace)
                    && after[open..]
                        .split('\n')
                        .next()
                        .unwrap_or("")
                        .contains(") =")
            }
            None => false,
        }
    })
}

/// The trace lines of the DMA-window calls (`ibm,query-pe-dma-window`,
/// `ibm,create-pe-dma-window`, `ibm,remove-pe-dma-window`,
/// `ibm,reset-pe-dma-window`), in order.
pub fn ddw_lines(trace: &[String]) -> Vec<&str> {
    trace
        .iter()
        .map(String::as_str)
        .filter(|l| {
            [
                "rtas: ibm,query-pe-dma-window(",
                "rtas: ibm,create-pe-dma-window(",
                "rtas: ibm,remove-pe-dma-window(",
                "rtas: ibm,reset-pe-dma-window(",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect()
}

/// QEMU's TCE trace of one run, read from its `-D` file.
#[derive(Clone, Debug, Default)]
pub struct IommuTrace {
    /// DMA translations the devices made: `(liobn, IOMMU page mask)` → count.
    pub xlate: BTreeMap<(u64, u64), u64>,
    /// H_PUT_TCE calls that succeeded: `(liobn, ioba, tce)`.
    pub puts: Vec<(u64, u64, u64)>,
}

/// The QEMU arguments that write the trace [`IommuTrace::read`] reads to `path`.
pub fn qemu_args(path: &Path) -> Vec<String> {
    vec![
        "-trace".into(),
        "spapr_iommu_xlate".into(),
        "-trace".into(),
        "spapr_iommu_pci_put".into(),
        "-D".into(),
        path.display().to_string(),
    ]
}

/// A trace file in the temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TraceFile(pub PathBuf);

impl TraceFile {
    pub fn temp(name: &str) -> TraceFile {
        TraceFile(
            std::env::temp_dir().join(format!("papr-iommu-{name}-{}.log", std::process::id())),
        )
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn hex_field(line: &str, key: &str) -> Option<u64> {
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(key))?;
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

impl IommuTrace {
    /// Parse QEMU's trace lines (7.2 and 10.0 print the same):
    /// `spapr_iommu_xlate liobn=0x80000001 0x2160000 -> 0x2000000 perm=3 mask=0xffffff`,
    /// `spapr_iommu_pci_put liobn=0x80000000 ioba=0x0 tce=0x2203 ret=0`.
    pub fn parse(text: &str) -> IommuTrace {
        let mut t = IommuTrace::default();
        for line in text.lines() {
            if line.contains("spapr_iommu_xlate ") {
                if let (Some(liobn), Some(mask)) =
                    (hex_field(line, "liobn="), hex_field(line, "mask="))
                {
                    *t.xlate.entry((liobn, mask)).or_default() += 1;
                }
            } else if line.contains("spapr_iommu_pci_put ") {
                let ret = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("ret="))
                    .and_then(|r| r.parse::<i64>().ok());
                if let (Some(liobn), Some(ioba), Some(tce), Some(0)) = (
                    hex_field(line, "liobn="),
                    hex_field(line, "ioba="),
                    hex_field(line, "tce="),
                    ret,
                ) {
                    t.puts.push((liobn, ioba, tce));
                }
            }
        }
        t
    }

    pub fn read(path: &Path) -> Result<IommuTrace, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(IommuTrace::parse(&text))
    }

    /// The windows the devices' DMA went through, as `(liobn, page size)`.
    pub fn windows(&self) -> Vec<(u64, u64)> {
        self.xlate.keys().map(|&(l, m)| (l, m + 1)).collect()
    }

    /// Translations in all.
    pub fn translations(&self) -> u64 {
        self.xlate.values().sum()
    }

    /// The H_PUT_TCE calls on `liobn` that set a TCE (not a clear).
    pub fn mappings(&self, liobn: u64) -> Vec<(u64, u64)> {
        self.puts
            .iter()
            .filter(|(l, _, tce)| *l == liobn && *tce != 0)
            .map(|&(_, ioba, tce)| (ioba, tce))
            .collect()
    }
}

/// The kernel's console lines (`[  time] text`) that contain `needle`,
/// without the time stamp, in order.
pub fn kernel_lines<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_once("] ").map(|(_, t)| t))
        .filter(|t| t.contains(needle))
        .collect()
}

/// A guest run watched from both ends.
#[derive(Debug)]
pub struct TracedRun {
    /// The console as QEMU printed it.
    pub log: String,
    /// The console without papr-fw's trace lines ([`split_rtas_trace`]).
    pub clean: String,
    /// papr-fw's trace lines.
    pub trace: Vec<String>,
    /// The guest's report, parsed from `clean`.
    pub report: Report,
    /// QEMU's TCE trace.
    pub iommu: IommuTrace,
    /// When QEMU exited, from its start.
    pub exit: Duration,
}

impl TracedRun {
    /// Wait (at most `timeout_secs`) for the guest to power off and QEMU to
    /// exit with 0 — panicking with the console log otherwise — then read
    /// everything.  The machine must have been started with
    /// [`qemu_args`]`(&trace_file.0)`.
    #[track_caller]
    pub fn finish(m: &mut Machine, trace_file: &TraceFile, timeout_secs: u64) -> TracedRun {
        m.wait_exit(0, timeout_secs);
        let exit = m.elapsed();
        let log = m.log();
        let (clean, trace) = split_rtas_trace(&log);
        let report = Report::parse(&clean);
        let iommu = IommuTrace::read(&trace_file.0).unwrap_or_else(|e| panic!("{e}\n{log}"));
        TracedRun {
            log,
            clean,
            trace,
            report,
            iommu,
            exit,
        }
    }

    /// [`ddw_lines`] of this run.
    pub fn ddw_trace(&self) -> Vec<&str> {
        ddw_lines(&self.trace)
    }

    /// [`kernel_lines`] of this run.
    pub fn kernel(&self, needle: &str) -> Vec<&str> {
        kernel_lines(&self.clean, needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_come_out_and_split_lines_join() {
        let log = "papr-fw: rtas: 45 tokens\n\
            [    1.0] nvme 0000:00:00.0: ibm,query-pe-dma-windows(2026) 0 8000000 20000000 returned 0\n\
            papr-guest: vfio: windrtas: ibm,remove-pe-dma-window(80000001) = 0 [platform]\n\
            ow A removed\n\
            Lrtas: display-character(4c) = 0 [platform]\n\
            inux\n\
            rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 [platform: x]\n";
        let (clean, trace) = split_rtas_trace(log);
        assert_eq!(
            clean,
            "papr-fw: rtas: 45 tokens\n\
             [    1.0] nvme 0000:00:00.0: ibm,query-pe-dma-windows(2026) 0 8000000 20000000 returned 0\n\
             papr-guest: vfio: window A removed\n\
             Linux\n"
        );
        assert_eq!(trace.len(), 3);
        assert_eq!(
            trace[0],
            "rtas: ibm,remove-pe-dma-window(80000001) = 0 [platform]"
        );
        assert_eq!(
            ddw_lines(&trace),
            [
                "rtas: ibm,remove-pe-dma-window(80000001) = 0 [platform]",
                "rtas: ibm,query-pe-dma-window(0 8000000 20000000) = 0 1 0 80000000 107 0 [platform: x]"
            ]
        );
    }

    #[test]
    fn kernel_lines_are_the_time_stamped_ones() {
        let log = "[    2.9] nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 returned 0\n\
            papr-guest: dma: [    2.9] nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 returned 0\n\
            [    3.0] other\n";
        assert_eq!(
            kernel_lines(log, "create-pe"),
            ["nvme 0000:00:00.0: ibm,create-pe-dma-window(2027) 0 returned 0"]
        );
    }

    #[test]
    fn qemu_trace_parsing() {
        let t = IommuTrace::parse(
            "spapr_iommu_xlate liobn=0x80000001 0x2160000 -> 0x2000000 perm=3 mask=0xffffff\n\
             spapr_iommu_xlate liobn=0x80000001 0x319c000 -> 0x3000000 perm=3 mask=0xffffff\n\
             1234@1.5:spapr_iommu_xlate liobn=0x80000000 0x1000 -> 0x31c4000 perm=3 mask=0xfff\n\
             spapr_iommu_pci_put liobn=0x80000000 ioba=0x1000 tce=0x2203 ret=0\n\
             spapr_iommu_pci_put liobn=0x80000000 ioba=0x1000 tce=0x0 ret=0\n\
             spapr_iommu_pci_put liobn=0x80000002 ioba=0x0 tce=0x3 ret=-2\n\
             garbage\n",
        );
        assert_eq!(t.windows(), [(0x8000_0000, 0x1000), (0x8000_0001, 1 << 24)]);
        assert_eq!(t.translations(), 3);
        assert_eq!(t.mappings(0x8000_0000), [(0x1000, 0x2203)]);
        assert_eq!(t.puts.len(), 2);
    }
}
