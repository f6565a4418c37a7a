//! The foundation in QEMU: papr-fw boots, prints a platform summary that
//! matches QEMU's configuration, reads its options from NVRAM, reports
//! unexpected interrupts with a failing exit status, and powers off cleanly.
//! Runs on the QEMU `PAPR_QEMU` selects (7.2 or 10.0).

use qemu_tests::qemu::Config;

const BOOT: u64 = 30;

fn boot(cfg: Config) -> qemu_tests::qemu::Machine {
    let mut m = cfg.start();
    m.wait_for("papr-fw 0.1.0", BOOT);
    m
}

#[test]
fn default_machine_summary_and_power_off() {
    let mut m = boot(Config::new());
    m.wait_for(
        "papr-fw: platform: IBM pSeries (emulated by qemu), 1 CPU",
        BOOT,
    );
    m.wait_for("papr-fw: memory: 512 MiB in 1 range, RMA 512 MiB", BOOT);
    m.wait_for("papr-fw: pci: 1 host bridge", BOOT);
    m.wait_for(
        "papr-fw: phb /pci@800000020000000: buid 0x800000020000000, dma window liobn 0x80000000 bus 0x0 size 1 GiB page 4 KiB, ddw query 0x2026 create 0x2027 remove 0x2028, extensions: reset 0x2029, 64-bit query",
        BOOT,
    );
    m.wait_for(
        "papr-fw: console: /vdevice/vty@71000000 (vtermno 0x71000000",
        BOOT,
    );
    m.wait_for("papr-fw: rtas: 45 tokens", BOOT);
    m.wait_for("papr-fw: options: (none: plain QEMU behaviour)", BOOT);
    m.wait_for(
        "papr-fw: tce: cleared 1 windows, 262144 entries in 16 calls",
        BOOT,
    );
    m.wait_for("papr-fw: nothing to boot (no -kernel); powering off", BOOT);
    m.wait_exit(0, BOOT);
    m.assert_absent("WARNING");
}

#[test]
fn four_cpus() {
    let mut m = boot(Config::new().smp(4));
    m.wait_for(", 4 CPUs (4 cores of PowerPC,", BOOT);
    m.wait_exit(0, BOOT);
}

#[test]
fn four_gib_of_memory() {
    let mut m = boot(Config::new().memory("4G"));
    m.wait_for("papr-fw: memory: 4 GiB in 1 range, RMA 4 GiB", BOOT);
    m.wait_exit(0, BOOT);
}

#[test]
fn second_host_bridge_has_its_own_window() {
    let mut m = boot(Config::new().args(["-device", "spapr-pci-host-bridge,index=1"]));
    m.wait_for("papr-fw: pci: 2 host bridges", BOOT);
    m.wait_for(
        "phb /pci@800000020000000: buid 0x800000020000000, dma window liobn 0x80000000 ",
        BOOT,
    );
    m.wait_for(
        "phb /pci@800000020000001: buid 0x800000020000001, dma window liobn 0x80000100 ",
        BOOT,
    );
    m.wait_for(
        "papr-fw: tce: cleared 2 windows, 524288 entries in 32 calls",
        BOOT,
    );
    m.wait_exit(0, BOOT);
}

#[test]
fn cpu_models() {
    for (cpu, name) in [
        ("power8", "POWER8"),
        ("power9", "POWER9"),
        ("power10", "POWER10"),
    ] {
        let mut m = boot(Config::new().args(["-cpu", cpu]));
        m.wait_for(&format!("(1 core of PowerPC,{name}"), BOOT);
        m.wait_exit(0, BOOT);
    }
}

#[test]
fn ddw_off_is_reported() {
    let mut m = boot(Config::new().args(["-global", "spapr-pci-host-bridge.ddw=off"]));
    m.wait_for("size 1 GiB page 4 KiB, no ddw", BOOT);
    m.wait_exit(0, BOOT);
}

#[test]
fn options_from_prom_env() {
    let mut m = boot(
        Config::new()
            .prom_env("rtas-trace=on")
            .prom_env("no-such-option=3"),
    );
    m.wait_for("papr-fw: options: rtas-trace=on no-such-option=3", BOOT);
    m.wait_for(
        "WARNING: unknown firmware option 'no-such-option' (ignored)",
        BOOT,
    );
    m.wait_exit(0, BOOT);
}

#[test]
fn unexpected_interrupt_is_reported_and_fails() {
    for (kind, vector) in [
        ("program", "0x700 (Program)"),
        ("fp", "0x800 (Floating-Point Unavailable)"),
    ] {
        let mut m = boot(Config::new().prom_env(&format!("debug-exception={kind}")));
        m.wait_for(&format!("papr-fw: unexpected interrupt {vector}"), BOOT);
        m.wait_for("  SRR0 ", BOOT);
        m.wait_for(" DAR ", BOOT);
        m.wait_for("DSISR ", BOOT);
        m.wait_for("  call chain: ", BOOT);
        m.wait_exit(1, BOOT);
    }
}
