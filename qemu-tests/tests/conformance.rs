//! The conformance client (`conformance/`) booted by papr-fw as `-kernel`:
//! every client-interface service and RTAS call papr-fw implements, valid
//! and hostile, on the QEMU `PAPR_QEMU` selects; once plain and once for
//! each DMA-window personality, with bad personality options, on 4 GiB, and
//! ending with the client-interface `exit` service.

use qemu_tests::conformance::{self, Outcome};
use qemu_tests::qemu::Config;

const TIMEOUT: u64 = 120;

fn pass(cfg: Config, what: &str) -> Outcome {
    let mut m = cfg.start();
    m.wait_for("papr-fw: booting the kernel at 0x400000", 30);
    let out = conformance::run(&mut m, TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.failed == 0 && out.exit == Some(0),
        "{what}: {} of {} checks failed, exit {:?}\n{}\n--- console ---\n{}",
        out.failed,
        out.checks,
        out.exit,
        out.failures.join("\n"),
        m.log()
    );
    m.assert_absent("papr-fw: panic");
    eprintln!(
        "conformance [{what}]: {} checks passed in {:.1} s",
        out.checks, out.seconds
    );
    out
}

#[test]
fn conformance_plain() {
    let out = pass(conformance::config(""), "plain");
    assert!(out.checks > 1000, "only {} checks", out.checks);
}

#[test]
fn conformance_one_window_per_pe() {
    pass(
        conformance::config("").prom_env("ddw-max-windows=1"),
        "ddw-max-windows=1",
    );
}

#[test]
fn conformance_4k_pages_and_window_cap() {
    pass(
        conformance::config("")
            .prom_env("ddw-page-sizes=0x1")
            .prom_env("ddw-max-window-shift=30"),
        "ddw-page-sizes=0x1 ddw-max-window-shift=30",
    );
}

#[test]
fn conformance_injected_faults() {
    pass(
        conformance::config("").prom_env(
            "ddw-inject=create:fail:2,query:fail,remove:param,create:busy:1,reset:busy:2",
        ),
        "ddw-inject",
    );
}

#[test]
fn conformance_bad_personality_is_ignored() {
    // One bad value: papr-fw warns and keeps QEMU's behaviour for all of them.
    let out = pass(
        conformance::config("")
            .prom_env("ddw-max-windows=1")
            .prom_env("ddw-inject=query:busy"),
        "bad ddw-inject",
    );
    assert!(out.checks > 1000);
}

#[test]
fn conformance_four_gib_four_cpus() {
    pass(conformance::config("").memory("4G").smp(4), "4G, 4 CPUs");
}

#[test]
fn conformance_exit_service() {
    let mut m = conformance::config("conformance.end=exit").start();
    m.wait_for("conformance: calling exit", TIMEOUT);
    m.wait_for("papr-fw: the client called exit", 10);
    m.wait_exit(1, 10);
    let (checks, failed, failures) = conformance::parse(&m.log()).expect("summary");
    assert_eq!(failed, 0, "{}", failures.join("\n"));
    assert!(checks > 1000);
}
