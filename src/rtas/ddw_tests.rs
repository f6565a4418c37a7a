//! Host tests of [`super::Ddw`] against the fake platform's QEMU 7.2 DDW
//! model (`fake/phb.rs`): after every call the model's windows must equal
//! the fake's TCE tables.

use super::*;
use crate::fake::phb::{qemu_buid, qemu_liobn};
use crate::fake::{Call, FakePhb, FakePlatform};
use crate::platform::Platform;
use crate::rtas::policy::DdwPolicy;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

const P: i32 = status::PARAMETER_ERROR;
const HW: i32 = status::HARDWARE_ERROR;
const HI: u32 = 0x0800_0000;
const LO: u32 = 0x2000_0000;
const DEF: u32 = 0x8000_0000;
const DDW1: u32 = 0x8000_0001;
const GIB: u64 = 1 << 30;

fn pe_config(index: u32) -> PeConfig {
    PeConfig {
        buid: qemu_buid(index),
        default_window: DefaultWindow {
            liobn: qemu_liobn(index, 0),
            bus_addr: 0,
            size: GIB,
        },
        config_addrs: None,
        dma64_addr: None,
    }
}

struct Env {
    fake: FakePlatform,
    ddw: Ddw,
}

impl Env {
    fn new(policy: DdwPolicy) -> Self {
        Env::with(policy, 1, |_| {})
    }

    fn with(policy: DdwPolicy, phbs: u32, tweak: impl FnOnce(&mut DdwPlatform)) -> Self {
        let mut fake = FakePlatform::new(1 << 20);
        fake.phbs = (0..phbs).map(FakePhb::qemu_default).collect();
        let mut plat = DdwPlatform {
            tokens: DdwTokens::QEMU,
            pes: (0..phbs).map(pe_config).collect(),
        };
        tweak(&mut plat);
        let env = Env {
            fake,
            ddw: Ddw::new(plat, policy),
        };
        env.check();
        env
    }

    fn policy(opts: &[(&str, &str)]) -> DdwPolicy {
        DdwPolicy::from_options(opts.iter().copied()).unwrap()
    }

    /// Make the OS's call; returns the results and the report; checks the model.
    fn raw(&mut self, token: u32, nargs: u32, nret: u32, args: &[u32], rets: &mut [u32]) -> Report {
        let block = self.fake.scratch();
        let out = self
            .ddw
            .handle(&mut self.fake, block, token, nargs, nret, args, rets);
        self.check();
        match out {
            Outcome::Handled(r) => r,
            Outcome::NotMine => panic!("token {token:#x} not handled"),
        }
    }

    fn call(&mut self, call: DdwCall, args: &[u32], nret: usize) -> Vec<u32> {
        self.report(call, args, nret).0
    }

    fn report(&mut self, call: DdwCall, args: &[u32], nret: usize) -> (Vec<u32>, Report) {
        let token = DdwTokens::QEMU.token(call).unwrap();
        let mut rets = vec![0xdead_beef; nret];
        let r = self.raw(token, args.len() as u32, nret as u32, args, &mut rets);
        assert_eq!(r.status, rets.first().map_or(r.status, |s| *s as i32));
        (rets, r)
    }

    fn query(&mut self, nret: usize) -> Vec<u32> {
        self.call(DdwCall::Query, &[0, HI, LO], nret)
    }

    fn create(&mut self, ps: u32, ws: u32) -> Vec<u32> {
        self.call(DdwCall::Create, &[0, HI, LO, ps, ws], 4)
    }

    fn remove(&mut self, liobn: u32) -> i32 {
        self.call(DdwCall::Remove, &[liobn], 1)[0] as i32
    }

    fn reset(&mut self) -> i32 {
        self.call(DdwCall::Reset, &[0, HI, LO], 1)[0] as i32
    }

    /// The model of every PE equals the fake's enabled tables.
    fn check(&self) {
        for (pe, phb) in self.ddw.pes().iter().zip(&self.fake.phbs) {
            assert_eq!(pe.buid(), phb.buid);
            let mut model: Vec<(u32, u64, u32, u64)> = pe
                .windows()
                .map(|w| (w.liobn, w.bus_addr, w.page_shift, w.size))
                .collect();
            let mut platform: Vec<(u32, u64, u32, u64)> = phb
                .tables
                .iter()
                .filter(|t| t.enabled())
                .map(|t| {
                    (
                        t.liobn,
                        t.bus_offset,
                        t.page_shift,
                        t.nb_table << t.page_shift,
                    )
                })
                .collect();
            model.sort();
            platform.sort();
            assert_eq!(
                model,
                platform,
                "model and platform differ for {:#x}",
                pe.buid()
            );
        }
    }

    fn windows(&self) -> Vec<(u32, u64, u32, u64, WindowKind)> {
        let mut v: Vec<_> = self.ddw.pes()[0]
            .windows()
            .map(|w| (w.liobn, w.bus_addr, w.page_shift, w.size, w.kind))
            .collect();
        v.sort_by_key(|w| w.0);
        v
    }

    /// Platform RTAS calls made so far, as (name, args).
    fn platform_calls(&self) -> Vec<(String, Vec<u32>)> {
        self.fake
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Rtas { name, args, .. } => Some((name.clone(), args.clone())),
                _ => None,
            })
            .collect()
    }

    fn forget_calls(&mut self) {
        self.fake.calls.clear();
    }
}

fn s(v: i32) -> u32 {
    v as u32
}

fn default_only() -> Vec<(u32, u64, u32, u64, WindowKind)> {
    vec![(DEF, 0, 12, GIB, WindowKind::Default)]
}

#[test]
fn other_tokens_are_not_mine() {
    let mut e = Env::new(DdwPolicy::default());
    let block = e.fake.scratch();
    for token in [0, 0x2016, 0x2025, 0x202a, 0xffff_ffff] {
        let mut rets = [7u32; 2];
        let out = e
            .ddw
            .handle(&mut e.fake, block, token, 1, 2, &[0], &mut rets);
        assert_eq!(out, Outcome::NotMine);
        assert_eq!(rets, [7, 7], "results untouched");
    }
    assert!(e.fake.calls.is_empty());
    // Without a reset token the reset call is not papr-fw's either.
    let mut e = Env::with(DdwPolicy::default(), 1, |p| p.tokens.reset = None);
    let mut rets = [0u32; 1];
    let out = e
        .ddw
        .handle(&mut e.fake, block, 0x2029, 3, 1, &[0, HI, LO], &mut rets);
    assert_eq!(out, Outcome::NotMine);
    assert_eq!(e.ddw.ddw_extensions(), None);
}

#[test]
fn query_answers_as_qemu_with_the_block_qemu_can_create() {
    let mut e = Env::new(DdwPolicy::default());
    // 5 outputs: exactly QEMU's answer.
    assert_eq!(e.query(5), [0, 1, 0x8000_0000, 0x107, 0]);
    // 6 outputs: QEMU says 2^37 TCEs, which it cannot create; papr-fw says 2^31.
    assert_eq!(e.query(6), [0, 1, 0, 0x8000_0000, 0x107, 0]);
    assert_eq!(
        e.platform_calls(),
        [
            ("ibm,query-pe-dma-window".to_string(), vec![0, HI, LO]),
            ("ibm,query-pe-dma-window".to_string(), vec![0, HI, LO]),
        ]
    );
    assert_eq!(e.ddw.ddw_extensions(), Some(vec![2, 0x2029, 1]));
}

/// enable_ddw with QEMU's defaults on a 64-bit device, 2 GiB of RAM.
#[test]
fn linux_enable_ddw_default() {
    let mut e = Env::new(DdwPolicy::default());
    let q = e.query(6);
    assert_eq!((q[0], q[1], q[4]), (0, 1, 0x107));
    // Largest page offered: 16M (bit 2); window = RAM (2^31).
    assert_eq!(e.create(24, 31), [0, DDW1, 0x0800_0000, 0]);
    assert_eq!(
        e.windows(),
        [
            (DEF, 0, 12, GIB, WindowKind::Default),
            (DDW1, 1 << 59, 24, 1 << 31, WindowKind::Dynamic)
        ]
    );
    assert_eq!(e.query(6)[1], 0);
    // A third window: QEMU's own refusal (-1) is passed through.
    assert_eq!(e.create(16, 30)[0], s(HW));
    assert_eq!(e.windows().len(), 2);
}

#[test]
fn every_argument_count_error_is_minus_3_and_not_forwarded() {
    let mut e = Env::with(Env::policy(&[("ddw-lam", "on")]), 1, |_| {});
    let good: [(DdwCall, u32, &[u32]); 4] = [
        (DdwCall::Query, 5, &[0, HI, LO]),
        (DdwCall::Create, 4, &[0, HI, LO, 16, 30]),
        (DdwCall::Remove, 1, &[DEF]),
        (DdwCall::Reset, 1, &[0, HI, LO]),
    ];
    for (call, _, base) in good {
        let token = DdwTokens::QEMU.token(call).unwrap();
        for nargs in 0..=7u32 {
            for nret in 0..=7u32 {
                let ok = match call {
                    DdwCall::Query => nargs == 3 && (nret == 5 || nret == 6),
                    DdwCall::Create => nargs == 5 && nret == 4,
                    DdwCall::Remove => nargs == 1 && nret == 1,
                    DdwCall::Reset => (nargs == 3 || nargs == 4) && nret == 1,
                };
                if ok {
                    continue;
                }
                let mut args = base.to_vec();
                args.resize(nargs as usize, 0);
                let mut rets = vec![0x5555_5555; nret as usize];
                e.forget_calls();
                let r = e.raw(token, nargs, nret, &args, &mut rets);
                assert_eq!(r.status, P, "{call:?} nargs {nargs} nret {nret}");
                if let Some(st) = rets.first() {
                    assert_eq!(*st, s(P));
                    assert!(rets[1..].iter().all(|v| *v == 0));
                }
                assert!(e.fake.calls.is_empty(), "{call:?} {nargs}/{nret} forwarded");
                assert!(matches!(r.answer, Answer::Firmware(_)));
            }
        }
    }
    assert_eq!(e.windows(), default_only());
    // Slices shorter than nargs/nret.
    let mut rets = [0u32; 1];
    let r = e.raw(0x2027, 5, 4, &[0, HI], &mut rets);
    assert_eq!((r.status, rets[0]), (P, s(P)));
    let mut rets = [0u32; 2];
    let r = e.raw(0x2026, 3, 5, &[0, HI, LO], &mut rets);
    assert_eq!((r.status, rets), (P, [s(P), 0]));
    let r = e.raw(0x2026, 3, 5, &[0, HI, LO], &mut []);
    assert_eq!(r.status, P);
    // Huge counts.
    let mut rets = [0u32; 4];
    let r = e.raw(0x2027, u32::MAX, u32::MAX, &[0; 5], &mut rets);
    assert_eq!(r.status, P);
    assert!(e.fake.calls.is_empty());
}

#[test]
fn every_argument_value_error() {
    let mut e = Env::with(DdwPolicy::default(), 1, |p| {
        p.pes[0].config_addrs = Some(vec![0x0000_0800, 0x0000_1000, 0x0001_0000]);
    });
    let cases: &[(DdwCall, &[u32], &str)] = &[
        (
            DdwCall::Query,
            &[0x800, HI, 7],
            "BUID is not a PHB with DMA windows",
        ),
        (
            DdwCall::Query,
            &[0x1800, HI, LO],
            "config address is not a device under this PHB",
        ),
        (
            DdwCall::Create,
            &[0x800, 0, LO, 16, 30],
            "BUID is not a PHB with DMA windows",
        ),
        (
            DdwCall::Create,
            &[0x2000, HI, LO, 16, 30],
            "config address is not a device under this PHB",
        ),
        (
            DdwCall::Reset,
            &[0x0002_0000, HI, LO],
            "config address is not a device under this PHB",
        ),
        (
            DdwCall::Reset,
            &[0x800, HI, LO + 1],
            "BUID is not a PHB with DMA windows",
        ),
        (
            DdwCall::Reset,
            &[0x800, HI, LO, 1],
            "reset takes 3 arguments (4 with ddw-lam=on) and 1 result",
        ),
        (
            DdwCall::Remove,
            &[DDW1],
            "LIOBN is not an active window of a known PE",
        ),
        (
            DdwCall::Remove,
            &[0x7100_0003],
            "LIOBN is not an active window of a known PE",
        ),
        (
            DdwCall::Remove,
            &[0],
            "LIOBN is not an active window of a known PE",
        ),
    ];
    let mut bad_pages: Vec<u32> = (0..12).collect();
    bad_pages.extend([
        13,
        17,
        20,
        22,
        29,
        33,
        35,
        63,
        64,
        65,
        76,
        0x8000_0000,
        u32::MAX,
    ]);
    let page_cases: Vec<(DdwCall, Vec<u32>, &str)> = bad_pages
        .iter()
        .map(|ps| {
            (
                DdwCall::Create,
                vec![0x800, HI, LO, *ps, 40],
                "page shift is not a LoPAPR I/O page size",
            )
        })
        .chain([
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 16, 15],
                "window shift below the page shift or above 63",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 12, 0],
                "window shift below the page shift or above 63",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 34, 64],
                "window shift below the page shift or above 63",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 12, u32::MAX],
                "window shift below the page shift or above 63",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 12, 44],
                "window needs more than 2^31 TCEs",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 24, 56],
                "window needs more than 2^31 TCEs",
            ),
            (
                DdwCall::Create,
                vec![0x800, HI, LO, 16, 48],
                "window needs more than 2^31 TCEs",
            ),
        ])
        .collect();
    let all = cases
        .iter()
        .map(|(c, a, w)| (*c, a.to_vec(), *w))
        .chain(page_cases);
    for (call, args, why) in all {
        e.forget_calls();
        let nret = match call {
            DdwCall::Query => 5,
            DdwCall::Create => 4,
            _ => 1,
        };
        let (rets, r) = e.report(call, &args, nret);
        assert_eq!(rets[0], s(P), "{call:?} {args:x?}");
        assert_eq!(r.answer, Answer::Firmware(why), "{call:?} {args:x?}");
        assert!(e.fake.calls.is_empty(), "{call:?} {args:x?} was forwarded");
    }
    assert_eq!(e.windows(), default_only());
    // The register bits of the config address are ignored; known devices pass.
    assert_eq!(e.call(DdwCall::Query, &[0x0000_0810, HI, LO], 5)[0], 0);
    assert_eq!(e.call(DdwCall::Query, &[0x1000_1000, HI, LO], 5)[0], 0);
    assert_eq!(
        e.call(DdwCall::Create, &[0x0001_0000, HI, LO, 16, 30], 4)[0],
        0
    );
    // The largest creatable window: 2^31 TCEs.
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.call(DdwCall::Create, &[0x800, HI, LO, 12, 43], 4)[0], 0);
    assert_eq!(e.fake.tce_table(DDW1).unwrap().nb_table, 1 << 31);
}

/// Page sizes QEMU lacks (pgsz = 4K|64K|2M|16M) are refused by QEMU itself.
#[test]
fn page_sizes_qemu_lacks_are_its_refusal() {
    let mut e = Env::new(DdwPolicy::default());
    for ps in [25, 26, 27, 28, 34] {
        e.forget_calls();
        let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, ps, 40], 4);
        assert_eq!(rets[0], s(P));
        assert_eq!(r.answer, Answer::Platform);
        assert_eq!(e.platform_calls().len(), 1);
    }
    for ps in [12, 16, 21, 24] {
        assert_eq!(e.create(ps, 36)[0], 0, "page shift {ps}");
        assert_eq!(e.remove(DDW1), 0);
    }
}

#[test]
fn remove_default_then_ddw_at_bus_0_and_lopapr_restore() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.windows(), []);
    assert_eq!(e.query(5)[1], 2);
    // No window active: QEMU puts the DDW at the default's bus address and on
    // the default's LIOBN.
    assert_eq!(e.create(24, 32), [0, DEF, 0, 0]);
    assert_eq!(e.windows(), [(DEF, 0, 24, 1 << 32, WindowKind::Dynamic)]);
    // Removing it: LoPAPR restores the default window; QEMU does not (its
    // def_win flag is on that LIOBN), so papr-fw resets.
    e.forget_calls();
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.windows(), default_only());
    assert_eq!(
        e.platform_calls(),
        [
            ("ibm,remove-pe-dma-window".to_string(), vec![DEF]),
            ("ibm,reset-pe-dma-window".to_string(), vec![0, HI, LO]),
        ]
    );
}

#[test]
fn removing_the_last_ddw_after_the_default_restores_it() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.create(16, 40)[0], 0);
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(
        e.windows(),
        [(DDW1, 1 << 59, 16, 1 << 40, WindowKind::Dynamic)]
    );
    // QEMU restores on its own here; the reset papr-fw adds changes nothing.
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.windows(), default_only());
    // Removing the default when it is the last window does not restore it.
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.windows(), []);
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
}

#[test]
fn double_remove_and_create_when_none_available() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.create(16, 40)[0], 0);
    assert_eq!(e.remove(DDW1), 0);
    e.forget_calls();
    let (rets, r) = e.report(DdwCall::Remove, &[DDW1], 1);
    assert_eq!(rets, [s(P)]);
    assert_eq!(
        r.answer,
        Answer::Firmware("LIOBN is not an active window of a known PE")
    );
    assert!(e.fake.calls.is_empty());
    assert_eq!(e.windows(), default_only());
    // Two windows active, none available: QEMU answers -1, nothing changes.
    assert_eq!(e.create(16, 40)[0], 0);
    let before = e.windows();
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 36], 4);
    assert_eq!(rets, [s(HW), 0, 0, 0]);
    assert_eq!(r.answer, Answer::Platform);
    assert_eq!(e.windows(), before);
}

#[test]
fn reset_restores_the_default_and_destroys_ddws() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.create(24, 34)[0], 0);
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.create(21, 33), [0, DEF, 0, 0]);
    assert_eq!(e.create(16, 33), [0, DDW1, 0x0800_0000, 0]);
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
    assert_eq!(e.reset(), 0, "reset of a reset PE");
    assert_eq!(e.windows(), default_only());
    assert_eq!(e.query(6)[1], 1);
}

/// An SR-IOV VF on PowerVM: one window; Linux removes the default window.
#[test]
fn linux_single_window_pe() {
    let mut e = Env::new(Env::policy(&[("ddw-max-windows", "1")]));
    let q = e.query(6);
    assert_eq!(q, [0, 0, 0, 0x8000_0000, 0x107, 0]);
    // A create now is refused by papr-fw although QEMU could.
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 31], 4);
    assert_eq!(rets[0], s(P));
    assert_eq!(
        r.answer,
        Answer::Firmware("no window available (ddw-max-windows)")
    );
    // enable_ddw: clear + remove the default window, query again, create.
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.query(6)[1], 1);
    assert_eq!(e.create(24, 31), [0, DEF, 0, 0]);
    assert_eq!(e.query(6)[1], 0);
    assert_eq!(e.windows(), [(DEF, 0, 24, 1 << 31, WindowKind::Dynamic)]);
    // VFIO release: reset brings the default back.
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
    assert_eq!(e.query(5)[1], 0);
}

/// VFIO take_ownership / create_table / release_ownership on a 2-window PE.
#[test]
fn vfio_style_sequence() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.create(24, 31)[0], 0, "host driver's DDW");
    // take_ownership: remove the DDW, then the default window.
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.windows(), default_only());
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.windows(), []);
    // Userspace asks for a 1 GiB 4K window and a 64-bit 64K window.
    assert_eq!(e.query(6)[1], 2);
    assert_eq!(e.create(12, 30), [0, DEF, 0, 0]);
    assert_eq!(e.create(16, 40), [0, DDW1, 0x0800_0000, 0]);
    assert_eq!(e.query(6)[1], 0);
    // Userspace drops the 4K window, then release_ownership resets.
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(
        e.windows(),
        [(DDW1, 1 << 59, 16, 1 << 40, WindowKind::Dynamic)]
    );
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
}

#[test]
fn page_size_personality() {
    let mut e = Env::new(Env::policy(&[("ddw-page-sizes", "0x1")]));
    assert_eq!(e.query(6), [0, 1, 0, 0x8000_0000, 0x1, 0]);
    e.forget_calls();
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 31], 4);
    assert_eq!(rets[0], s(P));
    assert_eq!(
        r.answer,
        Answer::Firmware("page size not offered (ddw-page-sizes)")
    );
    assert!(e.fake.calls.is_empty());
    assert_eq!(e.create(12, 31)[0], 0);
    // A size QEMU lacks: the mask is empty; the create is QEMU's -3.
    let mut e = Env::new(Env::policy(&[("ddw-page-sizes", "0x8")]));
    assert_eq!(e.query(5), [0, 1, 0x8000_0000, 0, 0]);
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 25, 31], 4);
    assert_eq!((rets[0], r.answer), (s(P), Answer::Platform));
}

#[test]
fn window_shift_cap() {
    let mut e = Env::new(Env::policy(&[("ddw-max-window-shift", "30")]));
    // 16M pages: 2^(30-24) TCEs.
    assert_eq!(e.query(6), [0, 1, 0, 64, 0x107, 0]);
    assert_eq!(e.query(5), [0, 1, 64, 0x107, 0]);
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 31], 4);
    assert_eq!(rets[0], s(P));
    assert_eq!(
        r.answer,
        Answer::Firmware("window above ddw-max-window-shift")
    );
    // What the query promised (64 TCEs of any offered size) is creatable.
    assert_eq!(e.create(24, 30)[0], 0);
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.create(12, 18)[0], 0);
    // Below the largest page: larger pages are not offered.
    let mut e = Env::new(Env::policy(&[("ddw-max-window-shift", "20")]));
    assert_eq!(e.query(6), [0, 1, 0, 16, 0x3, 0]);
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 21, 21], 4);
    assert_eq!(rets[0], s(P));
    assert_eq!(
        r.answer,
        Answer::Firmware("page size above ddw-max-window-shift")
    );
    assert_eq!(e.create(16, 20)[0], 0);
    // Combined with a page mask: 2^(30-12).
    let mut e = Env::new(Env::policy(&[
        ("ddw-max-window-shift", "30"),
        ("ddw-page-sizes", "0x1"),
    ]));
    assert_eq!(e.query(6), [0, 1, 0, 1 << 18, 0x1, 0]);
}

/// Linux's limited_dma_window() then enable_ddw on stock QEMU: the DDW
/// would land at 1<<59, so papr-fw withdraws it.
#[test]
fn lam_on_stock_qemu_refuses_unreachable_windows() {
    let mut e = Env::new(Env::policy(&[("ddw-lam", "on")]));
    assert_eq!(e.ddw.ddw_extensions(), Some(vec![3, 0x2029, 1, 1]));
    assert_eq!(e.query(6)[1], 1);
    e.forget_calls();
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 1], 1), [0]);
    assert!(e.ddw.pes()[0].lam());
    assert_eq!(
        e.platform_calls(),
        [("ibm,reset-pe-dma-window".to_string(), vec![0, HI, LO])]
    );
    e.forget_calls();
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 40], 4);
    assert_eq!(rets, [s(P), 0, 0, 0]);
    assert_eq!(
        r.answer,
        Answer::Firmware("limited-address mode: window placed above 4 GiB, withdrawn")
    );
    assert_eq!(
        e.platform_calls(),
        [
            (
                "ibm,create-pe-dma-window".to_string(),
                vec![0, HI, LO, 24, 40]
            ),
            ("ibm,remove-pe-dma-window".to_string(), vec![DDW1]),
        ]
    );
    assert_eq!(e.windows(), default_only());
    // The placement is now known: query says no window, create is refused
    // without asking QEMU.
    assert_eq!(e.query(6)[1], 0);
    e.forget_calls();
    let (_, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 40], 4);
    assert_eq!(
        r.answer,
        Answer::Firmware("limited-address mode: the platform would place the window above 4 GiB")
    );
    assert!(e.fake.calls.is_empty());
    // Linux's failure path: a 3-argument reset leaves LAM.
    assert_eq!(e.reset(), 0);
    assert!(!e.ddw.pes()[0].lam());
    assert_eq!(e.query(6)[1], 1);
    assert_eq!(e.create(24, 40)[0], 0, "64-bit devices are not limited");
}

/// LAM with one window per PE: Linux removes the default window and QEMU
/// places the DDW at 0, which any mask reaches.
#[test]
fn lam_with_single_window_pe_works_on_qemu() {
    let mut e = Env::new(Env::policy(&[("ddw-lam", "on"), ("ddw-max-windows", "1")]));
    assert_eq!(e.query(6)[1], 0);
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 1], 1), [0]);
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.query(6)[1], 1);
    assert_eq!(e.create(24, 40), [0, DEF, 0, 0]);
    assert_eq!(e.windows(), [(DEF, 0, 24, 1 << 40, WindowKind::Dynamic)]);
    assert!(e.ddw.pes()[0].lam());
    // 4th argument values.
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 0], 1), [0]);
    assert!(!e.ddw.pes()[0].lam());
    let (rets, r) = e.report(DdwCall::Reset, &[0, HI, LO, 2], 1);
    assert_eq!(rets, [s(P)]);
    assert_eq!(
        r.answer,
        Answer::Firmware("limited-address-mode argument is not 0 or 1")
    );
}

/// QEMU run with dma64_win_addr=4 GiB gives PowerVM's LAM layout.
#[test]
fn lam_with_dma64_at_4g() {
    let mut e = Env::with(Env::policy(&[("ddw-lam", "on")]), 1, |_| {});
    e.fake.phbs[0].dma64_win_addr = 1 << 32;
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 1], 1), [0]);
    assert_eq!(e.create(24, 40), [0, DDW1, 1, 0]);
    assert_eq!(
        e.windows()[1],
        (DDW1, 1 << 32, 24, 1 << 40, WindowKind::Dynamic)
    );
    // A known high placement is refused without a platform call.
    let mut e = Env::with(Env::policy(&[("ddw-lam", "on")]), 1, |p| {
        p.pes[0].dma64_addr = Some(1 << 59)
    });
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 1], 1), [0]);
    assert_eq!(e.query(5)[1], 0);
    e.forget_calls();
    assert_eq!(e.create(24, 40)[0], s(P));
    assert!(e.fake.calls.is_empty());
}

/// If the withdrawing remove fails, the window stays as papr-fw's own.
#[test]
fn lam_withdraw_failure_leaves_a_stray_window_until_reset() {
    let mut e = Env::new(Env::policy(&[("ddw-lam", "on")]));
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, LO, 1], 1), [0]);
    e.fake.inject_rtas("ibm,remove-pe-dma-window", HW, 1);
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 40], 4);
    assert_eq!(rets, [s(HW), 0, 0, 0]);
    assert_eq!(
        r.answer,
        Answer::Firmware("limited-address mode: window placed above 4 GiB, not removable")
    );
    assert_eq!(e.windows()[1].4, WindowKind::Stray);
    // The OS cannot remove what it never got.
    assert_eq!(e.remove(DDW1), P);
    assert_eq!(e.query(5)[1], 0);
    assert_eq!(e.reset(), 0);
    assert_eq!(e.windows(), default_only());
}

#[test]
fn injected_faults() {
    let mut e = Env::new(Env::policy(&[(
        "ddw-inject",
        "create:busy:3,query:fail,remove:fail,reset:busy:2,reset:param",
    )]));
    e.forget_calls();
    // Linux's create_ddw loop: retried while rtas_busy_delay() says so.
    let mut tries = 0;
    let rets = loop {
        tries += 1;
        let r = e.create(24, 31);
        if r[0] != 9900 {
            break r;
        }
        assert_eq!(e.windows(), default_only());
    };
    assert_eq!((tries, rets[0]), (4, 0));
    assert_eq!(e.platform_calls().len(), 1, "busy answers never reach QEMU");
    let (rets, r) = e.report(DdwCall::Query, &[0, HI, LO], 6);
    assert_eq!(
        (rets, r.answer),
        (vec![s(HW), 0, 0, 0, 0, 0], Answer::Injected)
    );
    assert_eq!(e.query(6)[0], 0, "count 1 by default");
    assert_eq!(e.remove(DDW1), HW);
    assert_eq!(e.windows().len(), 2, "failed remove changes nothing");
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.reset(), status::BUSY);
    assert_eq!(e.reset(), status::BUSY);
    assert_eq!(e.reset(), P);
    assert_eq!(e.reset(), 0);
    // Malformed calls are refused before injection and use no count.
    let mut e = Env::new(Env::policy(&[(
        "ddw-inject",
        "query:fail:always,create:param",
    )]));
    assert_eq!(e.call(DdwCall::Query, &[0, HI, 9], 5)[0], s(P));
    for _ in 0..5 {
        assert_eq!(e.query(5)[0], s(HW));
    }
    assert_eq!(e.call(DdwCall::Create, &[0, HI, LO, 24], 4)[0], s(P));
    let (rets, r) = e.report(DdwCall::Create, &[0, HI, LO, 24, 31], 4);
    assert_eq!((rets[0], r.answer), (s(P), Answer::Injected));
    assert_eq!(e.create(24, 31)[0], 0);
}

#[test]
fn platform_failures_change_nothing() {
    let mut e = Env::new(DdwPolicy::default());
    for (name, st) in [
        ("ibm,create-pe-dma-window", HW),
        ("ibm,create-pe-dma-window", 9902),
        ("ibm,create-pe-dma-window", status::BUSY),
    ] {
        e.fake.inject_rtas(name, st, 1);
        assert_eq!(e.create(24, 31)[0], s(st));
        assert_eq!(e.windows(), default_only());
    }
    e.fake.inject_rtas("ibm,query-pe-dma-window", HW, 1);
    assert_eq!(e.query(6)[0], s(HW));
    assert_eq!(e.create(24, 31)[0], 0);
    e.fake.inject_rtas("ibm,remove-pe-dma-window", HW, 1);
    assert_eq!(e.remove(DDW1), HW);
    assert_eq!(e.windows().len(), 2);
    e.fake.inject_rtas("ibm,reset-pe-dma-window", HW, 1);
    assert_eq!(e.reset(), HW);
    assert_eq!(e.windows().len(), 2);
    // The H_RTAS call itself fails (block outside RAM): -1, nothing changes.
    let mut rets = [0u32; 4];
    let out = e.ddw.handle(
        &mut e.fake,
        1 << 40,
        0x2027,
        5,
        4,
        &[0, HI, LO, 16, 30],
        &mut rets,
    );
    let Outcome::Handled(r) = out else { panic!() };
    assert_eq!((r.status, rets), (HW, [s(HW), 0, 0, 0]));
    assert!(r.forwarded().next().unwrap().error.is_some());
    e.check();
    assert!(r.to_string().contains("failed: RTAS argument block"), "{r}");
}

/// The restoring reset after a remove fails: the model follows QEMU's rule.
#[test]
fn failed_restore_follows_qemu() {
    let mut e = Env::new(DdwPolicy::default());
    assert_eq!(e.remove(DEF), 0);
    assert_eq!(e.create(24, 32)[1], DEF);
    e.fake.inject_rtas("ibm,reset-pe-dma-window", HW, 1);
    assert_eq!(e.remove(DEF), 0, "the remove itself worked");
    assert_eq!(e.windows(), [], "QEMU did not restore, the reset failed");
    assert_eq!(e.reset(), 0);
    // And when QEMU restores by itself.
    assert_eq!(e.create(16, 40)[0], 0);
    assert_eq!(e.remove(DEF), 0);
    e.fake.inject_rtas("ibm,reset-pe-dma-window", HW, 1);
    assert_eq!(e.remove(DDW1), 0);
    assert_eq!(e.windows(), default_only());
}

#[test]
fn liobns_belong_to_their_pe() {
    let mut e = Env::with(DdwPolicy::default(), 2, |_| {});
    let lo1 = LO + 1;
    assert_eq!(
        e.call(DdwCall::Create, &[0, HI, lo1, 16, 40], 4),
        [0, 0x8000_0101, 0x0800_0000, 0]
    );
    assert_eq!(e.create(24, 32)[1], DDW1);
    e.forget_calls();
    assert_eq!(e.remove(0x8000_0101), 0);
    assert_eq!(e.ddw.pes()[1].active(), 1);
    assert_eq!(e.ddw.pes()[0].active(), 2);
    assert_eq!(e.remove(0x8000_0101), P);
    assert_eq!(e.call(DdwCall::Reset, &[0, HI, lo1], 1), [0]);
    assert_eq!(e.ddw.pes()[0].active(), 2, "reset touches only its PE");
    assert!(e.ddw.pe(qemu_buid(1)).is_some());
    assert!(e.ddw.pe(qemu_buid(2)).is_none());
}

#[test]
fn trace_lines() {
    let mut e = Env::new(Env::policy(&[
        ("ddw-max-windows", "1"),
        ("ddw-inject", "create:busy:1"),
    ]));
    let (_, r) = e.report(DdwCall::Query, &[0x1000, HI, LO], 6);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,query-pe-dma-window(1000 8000000 20000000) = 0 0 0 80000000 107 0 \
         [platform: ibm,query-pe-dma-window(1000 8000000 20000000) = 0 1 20 0 107 0]"
    );
    let (_, r) = e.report(DdwCall::Remove, &[DEF], 1);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,remove-pe-dma-window(80000000) = 0 [platform]"
    );
    let (_, r) = e.report(DdwCall::Create, &[0x1000, HI, LO, 24, 31], 4);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,create-pe-dma-window(1000 8000000 20000000 18 1f) = 9900 0 0 0 [injected]"
    );
    let (_, r) = e.report(DdwCall::Create, &[0x1000, HI, LO, 24, 31], 4);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,create-pe-dma-window(1000 8000000 20000000 18 1f) = 0 80000000 0 0 [platform]"
    );
    let (_, r) = e.report(DdwCall::Create, &[0x1000, HI, LO, 24, 31], 4);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,create-pe-dma-window(1000 8000000 20000000 18 1f) = -3 0 0 0 \
         [papr-fw: no window available (ddw-max-windows)]"
    );
    let (_, r) = e.report(DdwCall::Remove, &[DEF], 1);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,remove-pe-dma-window(80000000) = 0 [platform: \
         ibm,remove-pe-dma-window(80000000) = 0; ibm,reset-pe-dma-window(0 8000000 20000000) = 0]"
    );
    let mut rets = [];
    let r = e.raw(0x2028, 9, 0, &[1, 2, 3, 4, 5, 6, 7, 8, 9], &mut rets);
    assert_eq!(
        r.to_string(),
        "rtas: ibm,remove-pe-dma-window(1 2 3 4 5 6 7 8 ...) = (no results) \
         [papr-fw: remove takes 1 argument and 1 result]"
    );
    let t = TraceLine {
        name: "ibm,read-pci-config",
        args: &[0x1000, HI, LO, 4],
        rets: &[0, 0x1af4_1000],
    };
    assert_eq!(
        t.to_string(),
        "rtas: ibm,read-pci-config(1000 8000000 20000000 4) = 0 1af41000"
    );
}

/// Random calls with random arguments and random platform faults, under
/// random personalities: never a panic, and the model always equals QEMU's.
#[test]
fn random_sequences_keep_model_and_platform_equal() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let policies: [&[(&str, &str)]; 6] = [
        &[],
        &[("ddw-max-windows", "1")],
        &[("ddw-lam", "on")],
        &[("ddw-lam", "on"), ("ddw-max-windows", "1")],
        &[("ddw-page-sizes", "0x101"), ("ddw-max-window-shift", "33")],
        &[(
            "ddw-inject",
            "create:busy:5,remove:fail:2,query:param:3,reset:busy:1",
        )],
    ];
    let mut calls = 0;
    let mut seen = alloc::collections::BTreeMap::<String, u32>::new();
    let pe_has_stray = |e: &Env| {
        e.ddw
            .pes()
            .iter()
            .any(|pe| pe.windows().any(|w| w.kind == WindowKind::Stray))
    };
    for (pi, pol) in policies.iter().enumerate() {
        for run in 0..20 {
            let mut e = Env::with(Env::policy(pol), 2, |_| {});
            if run % 3 == 1 {
                e.fake.phbs[0].dma64_win_addr = 1 << 32;
            }
            for _ in 0..150 {
                let x = rnd();
                let token = 0x2026 + (x % 5) as u32; // 0x202a: not mine
                let liobns = [
                    DEF,
                    DDW1,
                    0x8000_0100,
                    0x8000_0101,
                    0x8000_0002,
                    0x7100_0000,
                ];
                let buid_lo = if x & 0x70 == 0 {
                    0x1234
                } else {
                    LO + ((x >> 8) & 1) as u32
                };
                let ps: u32 =
                    [12, 16, 21, 24, 12, 16, 21, 24, 25, 34, 11, 64, 0][(x >> 10) as usize % 13];
                let ws = ps
                    .wrapping_add((x >> 20) as u32 % if x & 0x800 != 0 { 24 } else { 48 })
                    .wrapping_sub(2);
                let mut args = match token {
                    0x2028 => vec![liobns[(x >> 12) as usize % liobns.len()]],
                    0x2027 => vec![0, HI, buid_lo, ps, ws],
                    0x2029 if x & 0x100_0000 != 0 => vec![0, HI, buid_lo, ((x >> 30) % 3) as u32],
                    _ => vec![0, HI, buid_lo],
                };
                if x % 41 == 0 {
                    args.push(1);
                }
                let nret = match token {
                    0x2026 => 5 + (x >> 40) as u32 % 2,
                    0x2027 => 4,
                    _ => 1,
                } + u32::from(x % 37 == 0);
                if x % 7 == 0 {
                    let names = [
                        "ibm,query-pe-dma-window",
                        "ibm,create-pe-dma-window",
                        "ibm,remove-pe-dma-window",
                        "ibm,reset-pe-dma-window",
                    ];
                    let st = [HW, P, status::BUSY][(x >> 50) as usize % 3];
                    e.fake.inject_rtas(names[(x >> 45) as usize % 4], st, 1);
                }
                let mut rets = vec![0u32; nret as usize];
                let block = e.fake.scratch();
                let out = e.ddw.handle(
                    &mut e.fake,
                    block,
                    token,
                    args.len() as u32,
                    nret,
                    &args,
                    &mut rets,
                );
                e.check();
                match out {
                    Outcome::NotMine => assert_eq!(token, 0x202a),
                    Outcome::Handled(r) => {
                        assert_eq!(rets[0] as i32, r.status);
                        let line = r.to_string();
                        assert!(line.starts_with("rtas: ibm,"), "{line}");
                        let key = (
                            r.call,
                            r.status == 0,
                            matches!(r.answer, Answer::Firmware(_)),
                        );
                        *seen.entry(alloc::format!("{key:?}")).or_insert(0u32) += 1;
                        if line.contains("withdrawn") {
                            *seen.entry("withdrawn".into()).or_insert(0) += 1;
                        }
                        if pe_has_stray(&e) {
                            *seen.entry("stray".into()).or_insert(0) += 1;
                        }
                        calls += 1;
                    }
                }
                for pe in e.ddw.pes() {
                    if let Some(n) = e.ddw.policy().max_windows {
                        let os = pe.windows().filter(|w| w.kind != WindowKind::Stray).count();
                        assert!(os as u32 <= n, "policy {pi}: {os} windows");
                    }
                    if pe.lam() {
                        assert!(pe
                            .windows()
                            .filter(|w| w.kind == WindowKind::Dynamic)
                            .all(|w| w.bus_addr <= LAM_MAX_BUS_ADDR));
                    }
                }
            }
        }
    }
    assert!(calls > 8000, "{calls}");
    for (k, min) in [
        ("(Create, true, false)", 300),
        ("(Remove, true, false)", 300),
        ("(Reset, true, false)", 300),
        ("(Query, true, false)", 300),
        ("withdrawn", 1),
        ("stray", 5),
    ] {
        assert!(seen.get(k).copied().unwrap_or(0) >= min, "{k}: {seen:#?}");
    }
}

#[test]
fn config_round_trip_and_rejects_garbage() {
    let mut pe1 = pe_config(1);
    pe1.config_addrs = Some(vec![0x800, 0x1_0000]);
    pe1.dma64_addr = Some(1 << 32);
    let c = DdwConfig {
        platform: DdwPlatform {
            tokens: DdwTokens::QEMU,
            pes: vec![pe_config(0), pe1],
        },
        policy: Env::policy(&[
            ("ddw-max-windows", "1"),
            ("ddw-page-sizes", "0x101"),
            ("ddw-max-window-shift", "40"),
            ("ddw-lam", "on"),
            ("ddw-inject", "create:busy:3,query:fail:always"),
            ("rtas-trace", "on"),
        ]),
    };
    let b = c.encode();
    assert_eq!(DdwConfig::decode(&b), Some(c.clone()));
    for cut in 0..b.len() {
        assert_eq!(DdwConfig::decode(&b[..cut]), None, "cut at {cut}");
    }
    let mut longer = b.clone();
    longer.push(0);
    assert_eq!(DdwConfig::decode(&longer), None);
    // A flag that is not 0/1, a PE count beyond the input, a bad option.
    let mut bad = b.clone();
    bad[20..24].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(DdwConfig::decode(&bad), None);
    let mut bad = b.clone();
    bad[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(DdwConfig::decode(&bad), None);
    let mut plain = c.clone();
    plain.policy = DdwPolicy::default();
    plain.platform.tokens.reset = None;
    let b = plain.encode();
    assert_eq!(DdwConfig::decode(&b), Some(plain));
    let mut bad = b.clone();
    let n = bad.len();
    bad.truncate(n - 4);
    bad.extend_from_slice(&7u32.to_be_bytes());
    bad.extend_from_slice(b"ddw-x=1");
    assert_eq!(DdwConfig::decode(&bad), None);
    assert_eq!(DdwConfig::decode(&[0xff; 64]), None);
    // The decoded configuration drives a working Ddw.
    let mut e = Env::with(DdwPolicy::default(), 2, |_| {});
    e.ddw = Ddw::from_config(DdwConfig::decode(&c.encode()).unwrap());
    assert_eq!(e.query(6), [s(HW), 0, 0, 0, 0, 0]);
    assert_eq!(e.create(21, 40)[0], 9900);
    let mut e = Env::with(DdwPolicy::default(), 2, |_| {});
    let mut c = DdwConfig::decode(&c.encode()).unwrap();
    c.policy.inject.clear();
    e.ddw = Ddw::from_config(c);
    assert_eq!(e.query(6), [0, 0, 0, 1 << 19, 0x101, 0]);
    assert!(e.ddw.policy().trace);
}
