//! Nested KVM with papr-fw at both levels and an NVMe passed through VFIO
//! to L2 (see `qemu_tests::guest::nested`).

use qemu_tests::guest::nested::{self, L2Options, NestedRun};
use qemu_tests::guest::Disk;
use qemu_tests::qemu::{papr_fw_image, Firmware};

const STEP_SECS: u64 = 240;

#[test]
fn nested_papr_fw_l1_and_l2_vfio_nvme() {
    let img = nested::ensure().unwrap_or_else(|e| panic!("{e}"));
    let disk = Disk::temp("nested").unwrap();
    let initrd = img.initrd_with(&papr_fw_image(), "t").unwrap();
    let l2 = L2Options {
        prom_env: vec!["rtas-trace=on".into()],
        ..Default::default()
    };
    let cfg = img
        .config(Firmware::PaprFw, &initrd, &disk, &l2)
        .prom_env("rtas-trace=on");
    let mut m = cfg.start();
    let run = NestedRun::finish(&mut m, STEP_SECS);
    if std::env::var_os("PAPR_NESTED_LOG").is_some() {
        eprintln!("{}", run.log);
    }
    eprintln!("nested: {}", run.times);
    assert!(run.l2_report.pass, "{}", run.log);
}
