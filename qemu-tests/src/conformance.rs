//! The conformance client (`conformance/` at the repository root): building
//! it for the target and running it under papr-fw as QEMU's `-kernel`.
//!
//! QEMU loads the ELF itself (segments at `(p_paddr & 0x0fffffff) +
//! 0x400000`; the client is linked to run there), papr-fw enters it at the
//! load base, and the client prints one line per failed check, then
//! `conformance: N checks, M failed`, and ends the machine with RTAS
//! `power-off` (exit 0) or `ibm,os-term` (exit 1 with
//! `-action panic=exit-failure`).

use crate::paths;
use crate::qemu::{Config, Machine};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The marker of the verdict line.
pub const SUMMARY: &str = "conformance: ";

/// Build the client for `.cargo/powerpc64-papr-none.json`; the ELF's path.
pub fn build() -> Result<PathBuf, String> {
    let root = paths::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "conformance",
            "--bin",
            "conformance",
            "--target",
            ".cargo/powerpc64-papr-none.json",
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-Zjson-target-spec",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building the conformance client failed".into());
    }
    let elf = paths::target_dir().join("powerpc64-papr-none/release/conformance");
    if !elf.exists() {
        return Err(format!("{} was not built", elf.display()));
    }
    Ok(elf)
}

/// The client, built once per test process.
pub fn client() -> PathBuf {
    static ELF: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    ELF.get_or_init(build)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A machine that boots the client under papr-fw (2 CPUs, so `start-cpu`
/// has a CPU to start); `cmdline` reaches the client as `/chosen/bootargs`.
pub fn config(cmdline: &str) -> Config {
    let mut c = Config::new()
        .smp(2)
        .args(["-kernel".to_string(), client().display().to_string()]);
    if !cmdline.is_empty() {
        c = c.args(["-append", cmdline]);
    }
    c
}

/// What a run printed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub checks: u32,
    pub failed: u32,
    /// `conformance: FAIL …` lines.
    pub failures: Vec<String>,
    /// QEMU's exit code.
    pub exit: Option<i32>,
    pub seconds: f64,
}

/// Parse `conformance: N checks, M failed` and the failure lines.
pub fn parse(log: &str) -> Option<(u32, u32, Vec<String>)> {
    let failures = log
        .lines()
        .filter(|l| l.contains("conformance: FAIL ["))
        .map(String::from)
        .collect();
    let line = log
        .lines()
        .rev()
        .filter(|l| l.starts_with(SUMMARY) && l.ends_with(" failed") && !l.contains('['))
        .find(|l| l.matches(": ").count() == 1)?;
    let rest = line.strip_prefix(SUMMARY)?;
    let (n, rest) = rest.split_once(" checks, ")?;
    let m = rest.strip_suffix(" failed")?;
    Some((n.parse().ok()?, m.parse().ok()?, failures))
}

/// Run to the end: the verdict and QEMU's exit status.
pub fn run(m: &mut Machine, timeout_secs: u64) -> Result<Outcome, String> {
    let t = std::time::Instant::now();
    let exit = m
        .expect_exit(Duration::from_secs(timeout_secs))
        .map_err(|f| f.to_string())?;
    let log = m.log();
    let (checks, failed, failures) =
        parse(&log).ok_or_else(|| format!("no conformance summary (exit {exit:?})\n{log}"))?;
    Ok(Outcome {
        checks,
        failed,
        failures,
        exit,
        seconds: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed() {
        let log = "conformance: tree: 12 checks, 0 failed\nconformance: FAIL [ddw] x: got 1, expected 2\nconformance: 640 checks, 1 failed\n";
        let (n, m, f) = parse(log).unwrap();
        assert_eq!((n, m), (640, 1));
        assert_eq!(
            f,
            vec!["conformance: FAIL [ddw] x: got 1, expected 2".to_string()]
        );
        assert_eq!(parse("conformance: tree: 12 checks, 0 failed\n"), None);
    }
}
