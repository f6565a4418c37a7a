//! The DMA-window RTAS calls through papr-fw's resident RTAS
//! (`ibm,query-pe-dma-window`, `ibm,create-pe-dma-window`,
//! `ibm,remove-pe-dma-window`, `ibm,reset-pe-dma-window`; LoPAPR "DMA
//! Window Manipulation Calls"; QEMU pseries contract §5.2;
//! linux-expectations.md §2.4–2.5), with the personality given by the
//! `ddw-*` firmware options (read back from NVRAM) and checked against the
//! platform: QEMU's own answer to query (made with H_RTAS directly), and
//! the windows themselves through H_PUT_TCE/H_GET_TCE.

use crate::{arena, check, check_eq, Machine, Mode, Phb, Suite};
use alloc::string::String;
use alloc::vec::Vec;

const PARAM: i32 = -3;
const H_PUT_TCE: u64 = 0x20;
const H_GET_TCE: u64 = 0x1c;
const H_PARAMETER: i64 = -4;

/// LoPAPR query-mask bits and their page shifts.
pub const PAGE_SIZES: [(u32, u32); 9] = [
    (0x001, 12),
    (0x002, 16),
    (0x004, 24),
    (0x008, 25),
    (0x010, 26),
    (0x020, 27),
    (0x040, 28),
    (0x080, 34),
    (0x100, 21),
];

/// The DMA-window personality from the firmware options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Personality {
    pub max_windows: Option<u32>,
    pub page_sizes: Option<u32>,
    pub max_shift: Option<u32>,
    /// (call, status, count; None = always).
    pub inject: Vec<(String, i32, Option<u32>)>,
    /// `ddw-lam=on`: reset takes a fourth argument.
    pub lam: bool,
}

fn num(v: &str) -> Option<u32> {
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

impl Personality {
    /// The personality the `ddw-*` options describe.  As papr-fw documents
    /// (`rtas::policy`), one bad value makes it ignore every DMA-window
    /// option: the result is then the default.
    pub fn from_options(opts: &[(String, String)]) -> Self {
        Self::parse(opts).unwrap_or_default()
    }

    fn parse(opts: &[(String, String)]) -> Option<Self> {
        let mut p = Personality::default();
        for (k, v) in opts {
            match k.as_str() {
                "ddw-max-windows" => p.max_windows = Some(num(v).filter(|n| *n >= 1)?),
                "ddw-page-sizes" => {
                    p.page_sizes = Some(num(v).filter(|m| *m != 0 && m & !0x1ff == 0)?)
                }
                "ddw-max-window-shift" => {
                    p.max_shift = Some(num(v).filter(|n| (12..=63).contains(n))?)
                }
                "ddw-lam" | "rtas-trace" => {
                    let on = match v.trim() {
                        "on" | "true" | "yes" | "1" => true,
                        "off" | "false" | "no" | "0" => false,
                        _ => return None,
                    };
                    if k == "ddw-lam" {
                        p.lam = on;
                    }
                }
                "ddw-inject" => {
                    for e in v.split(',').filter(|e| !e.trim().is_empty()) {
                        let f: Vec<&str> = e.trim().split(':').collect();
                        if f.len() < 2
                            || f.len() > 3
                            || !["query", "create", "remove", "reset"].contains(&f[0])
                        {
                            return None;
                        }
                        let st = match (f[1], f[0]) {
                            ("busy", "create") => 9900,
                            ("busy", "reset") => -2,
                            ("fail", _) => -1,
                            ("param", _) => -3,
                            _ => return None,
                        };
                        let count = match f.get(2) {
                            None => Some(1),
                            Some(&"always") if f[1] != "busy" => None,
                            Some(n) => Some(num(n).filter(|n| *n >= 1)?),
                        };
                        p.inject.push((String::from(f[0]), st, count));
                    }
                }
                _ => {}
            }
        }
        Some(p)
    }

    /// The query mask papr-fw offers for the platform's `mask`.
    pub fn mask(&self, mut m: u32) -> u32 {
        if let Some(ps) = self.page_sizes {
            m &= ps;
        }
        if let Some(cap) = self.max_shift {
            m &= PAGE_SIZES
                .iter()
                .filter(|(_, s)| *s <= cap)
                .fold(0, |a, (b, _)| a | b);
        }
        m
    }

    pub fn avail(&self, raw: u32, active: u32) -> u32 {
        match self.max_windows {
            Some(n) => raw.min(n.saturating_sub(active)),
            None => raw,
        }
    }

    pub fn block(&self, raw: u64, mask: u32) -> u64 {
        let mut b = raw.min(1 << 31);
        if let Some(cap) = self.max_shift {
            let ps = largest_shift(mask);
            if ps != 0 && ps <= cap {
                b = b.min(1 << (cap - ps));
            }
        }
        b
    }
}

pub fn largest_shift(mask: u32) -> u32 {
    PAGE_SIZES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0)
}

/// A query's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub avail: u32,
    pub block: u64,
    pub mask: u32,
    pub migration: u32,
}

struct Ctx {
    phb: Phb,
    query: u32,
    create: u32,
    remove: u32,
    reset: Option<u32>,
    q64: bool,
    pers: Personality,
}

impl Ctx {
    fn bu(&self) -> (u32, u32) {
        ((self.phb.buid >> 32) as u32, self.phb.buid as u32)
    }
}

fn ctx<M: Machine + ?Sized>(s: &mut Suite<M>) -> Option<Ctx> {
    let phb = s.info.phbs.iter().find(|p| p.ddw.is_some()).cloned()?;
    let [query, create, remove] = phb.ddw?;
    let reset = (phb.ext.first().copied().unwrap_or(0) >= 1).then(|| phb.ext[1]);
    let q64 = phb.ext.len() >= 3 && phb.ext[0] >= 2 && phb.ext[2] == 1;
    let opts = crate::rtas::nvram_options(s);
    Some(Ctx {
        phb,
        query,
        create,
        remove,
        reset,
        q64,
        pers: Personality::from_options(&opts),
    })
}

fn query<M: Machine + ?Sized>(s: &mut Suite<M>, c: &Ctx) -> (i32, Query) {
    let (hi, lo) = c.bu();
    let (st, r) = s.rtas_call(c.query, &[0, hi, lo], 5);
    (
        st,
        Query {
            avail: r[1],
            block: r[2] as u64,
            mask: r[3],
            migration: r[4],
        },
    )
}

fn create<M: Machine + ?Sized>(s: &mut Suite<M>, c: &Ctx, ps: u32, ws: u32) -> (i32, u32, u64) {
    let (hi, lo) = c.bu();
    let (st, r) = s.rtas_call(c.create, &[0, hi, lo, ps, ws], 4);
    (st, r[1], ((r[2] as u64) << 32) | r[3] as u64)
}

fn remove<M: Machine + ?Sized>(s: &mut Suite<M>, c: &Ctx, liobn: u32) -> i32 {
    s.rtas_call(c.remove, &[liobn], 1).0
}

fn reset<M: Machine + ?Sized>(s: &mut Suite<M>, c: &Ctx) -> Option<i32> {
    let (hi, lo) = c.bu();
    let t = c.reset?;
    Some(s.rtas_call(t, &[0, hi, lo], 1).0)
}

/// H_GET_TCE: (rc, entry).
fn get_tce<M: Machine + ?Sized>(s: &mut Suite<M>, liobn: u32, ioba: u64) -> (i64, u64) {
    let (rc, r) = s.m.hcall(H_GET_TCE, &[liobn as u64, ioba]);
    (rc, r[0])
}

/// A window the platform really has: map, read back, refuse beyond its end, unmap.
fn window_works<M: Machine + ?Sized>(
    s: &mut Suite<M>,
    liobn: u32,
    bus: u64,
    size: u64,
    what: &str,
) {
    let tce = (s.at(arena::SCRATCH) & !0xffff) | 3;
    let (rc, _) = s.m.hcall(H_PUT_TCE, &[liobn as u64, bus, tce]);
    check_eq!(
        s,
        rc,
        0,
        "H_PUT_TCE into {what} (liobn {liobn:#x} at {bus:#x})"
    );
    check_eq!(
        s,
        get_tce(s, liobn, bus),
        (0, tce),
        "H_GET_TCE reads it back in {what}"
    );
    let (rc, _) = s.m.hcall(H_PUT_TCE, &[liobn as u64, bus + size, tce]);
    check_eq!(s, rc, H_PARAMETER, "H_PUT_TCE just past the end of {what}");
    let (rc, _) = s.m.hcall(H_PUT_TCE, &[liobn as u64, bus, 0]);
    check_eq!(s, rc, 0, "H_PUT_TCE clears the entry in {what}");
}

fn gone<M: Machine + ?Sized>(s: &mut Suite<M>, liobn: u32, bus: u64, what: &str) {
    let (rc, _) = get_tce(s, liobn, bus);
    check_eq!(
        s,
        rc,
        H_PARAMETER,
        "{what}: the platform has no window {liobn:#x} any more"
    );
}

/// The offered page shifts, smallest window first.
fn shifts(mask: u32) -> Vec<u32> {
    let mut v: Vec<u32> = PAGE_SIZES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, s)| *s)
        .collect();
    v.sort();
    v
}

/// A window shift for page shift `ps`: 256 pages, within the personality's cap.
fn small_ws(c: &Ctx, ps: u32) -> u32 {
    let ws = ps + 8;
    c.pers.max_shift.map_or(ws, |cap| ws.min(cap).max(ps))
}

pub fn run<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let Some(c) = ctx(s) else {
        check!(
            s,
            s.info.phbs.is_empty(),
            "a PHB with ibm,dma-window but no ibm,ddw-applicable"
        );
        return;
    };
    let (hi, lo) = c.bu();
    let def = (c.phb.liobn, c.phb.win_addr, c.phb.win_size);
    s.say(&alloc::format!(
        "conformance: ddw on {} (buid {:#x}), personality {:?}",
        c.phb.path,
        c.phb.buid,
        c.pers
    ));

    // Injected faults first: each valid call returns the injected status.
    for (call, st, count) in c.pers.inject.clone() {
        let n = count.unwrap_or(2);
        for i in 0..n {
            let ps = largest_shift(c.pers.mask(0x3)).max(12);
            let got = match call.as_str() {
                "query" => query(s, &c).0,
                "create" => create(s, &c, ps, small_ws(&c, ps)).0,
                "remove" => remove(s, &c, def.0),
                "reset" => reset(s, &c).unwrap_or(st),
                _ => st,
            };
            check_eq!(s, got, st, "injected {call} fault {}/{n}", i + 1);
        }
        if count.is_none() {
            return;
        }
    }

    // query: papr-fw's answer is the platform's, shaped by the personality.
    let (st, base) = query(s, &c);
    check_eq!(s, st, 0, "query");
    let (rc, raw) = s.platform_rtas(c.query, &[0, hi, lo], 5);
    check!(
        s,
        rc == 0 && raw[0] == 0,
        "the platform's own query: {raw:x?}"
    );
    let want_mask = c.pers.mask(raw[3]);
    check_eq!(
        s,
        base.mask,
        want_mask,
        "query page-size mask (platform {:#x})",
        raw[3]
    );
    check_eq!(
        s,
        base.avail,
        c.pers.avail(raw[1], 1),
        "query windows available (platform {})",
        raw[1]
    );
    check_eq!(
        s,
        base.block,
        c.pers.block(raw[2] as u64, want_mask),
        "query largest block (platform {:#x})",
        raw[2]
    );
    check_eq!(s, base.migration, 0, "query migration mask");
    if c.q64 {
        let (st, r) = s.rtas_call(c.query, &[0, hi, lo], 6);
        check_eq!(s, st, 0, "query with 6 results");
        check!(
            s,
            r[1] == base.avail
                && r[4] == base.mask
                && (((r[2] as u64) << 32) | r[3] as u64) >= base.block,
            "6-result query agrees with the 5-result one: {r:x?} vs {base:x?}"
        );
    }
    for (what, args, nret) in [
        ("2 arguments", alloc::vec![0, hi], 5),
        ("4 results", alloc::vec![0, hi, lo], 4),
        ("7 results", alloc::vec![0, hi, lo], 7),
        ("an unknown BUID", alloc::vec![0, hi, lo ^ 0x100], 5),
        ("BUID 0", alloc::vec![0, 0, 0], 5),
        ("BUID ~0", alloc::vec![0, !0, !0], 5),
    ] {
        let (st, _) = s.rtas_call(c.query, &args, nret);
        check_eq!(s, st, PARAM, "query with {what}");
    }

    // The default window: cleared at boot, bounded.
    for ioba in [0, 0x1000, def.2 / 2, def.2 - 0x1000] {
        check_eq!(
            s,
            get_tce(s, def.0, def.1 + ioba),
            (0, 0),
            "default window entry at {ioba:#x} is clear"
        );
    }
    check_eq!(
        s,
        get_tce(s, def.0, def.1 + def.2).0,
        H_PARAMETER,
        "H_GET_TCE past the default window"
    );
    window_works(s, def.0, def.1, def.2, "the default window");

    // create with hostile arguments: refused, nothing changes.
    let ps = shifts(base.mask)
        .into_iter()
        .filter(|p| *p <= 16)
        .max()
        .unwrap_or(12);
    let ws = small_ws(&c, ps);
    let not_offered = PAGE_SIZES
        .iter()
        .find(|(b, _)| base.mask & b == 0)
        .map(|(_, s)| *s);
    let mut bad: Vec<(String, Vec<u32>, usize)> = alloc::vec![
        (
            "an unknown BUID".into(),
            alloc::vec![0, hi, lo ^ 0x100, ps, ws],
            4
        ),
        ("page shift 13".into(), alloc::vec![0, hi, lo, 13, ws], 4),
        ("page shift 0".into(), alloc::vec![0, hi, lo, 0, ws], 4),
        ("page shift ~0".into(), alloc::vec![0, hi, lo, !0, ws], 4),
        (
            "window shift below the page shift".into(),
            alloc::vec![0, hi, lo, ps, ps - 1],
            4
        ),
        ("window shift 64".into(), alloc::vec![0, hi, lo, ps, 64], 4),
        ("window shift ~0".into(), alloc::vec![0, hi, lo, ps, !0], 4),
        ("2^32 TCEs".into(), alloc::vec![0, hi, lo, 12, 44], 4),
        ("4 arguments".into(), alloc::vec![0, hi, lo, ps], 4),
        ("3 results".into(), alloc::vec![0, hi, lo, ps, ws], 3),
        ("5 results".into(), alloc::vec![0, hi, lo, ps, ws], 5),
    ];
    if let Some(p) = not_offered {
        bad.push((
            alloc::format!("page shift {p}, not offered"),
            alloc::vec![0, hi, lo, p, p + 8],
            4,
        ));
    }
    if let Some(cap) = c.pers.max_shift {
        bad.push((
            alloc::format!("window shift {} above the cap", cap + 1),
            alloc::vec![0, hi, lo, ps, cap + 1],
            4,
        ));
    }
    for (what, args, nret) in bad {
        let (st, _) = s.rtas_call(c.create, &args, nret);
        check_eq!(s, st, PARAM, "create with {what}");
    }
    check_eq!(s, query(s, &c), (0, base), "refused creates change nothing");

    // Valid creates, one per offered page size.
    if base.avail > 0 {
        for p in shifts(base.mask) {
            let w = small_ws(&c, p);
            let (st, liobn, bus) = create(s, &c, p, w);
            check_eq!(s, st, 0, "create with page shift {p}, window shift {w}");
            if st != 0 {
                continue;
            }
            check!(
                s,
                liobn != 0 && liobn != def.0,
                "a new LIOBN {liobn:#x} (default {:#x})",
                def.0
            );
            check!(
                s,
                bus >= def.1 + def.2 || bus + (1 << w) <= def.1,
                "window at {bus:#x} clear of the default window"
            );
            check!(
                s,
                bus % (1u64 << w.min(59)) == 0,
                "window at {bus:#x} aligned to its size"
            );
            window_works(s, liobn, bus, 1 << w, "a new window");
            let (st, q) = query(s, &c);
            check!(
                s,
                st == 0 && q.avail + 1 == base.avail,
                "query counts the new window: {q:x?}"
            );
            check_eq!(s, remove(s, &c, liobn), 0, "remove the new window");
            gone(s, liobn, bus, "after remove");
            check_eq!(s, remove(s, &c, liobn), PARAM, "remove it again");
            check_eq!(s, query(s, &c), (0, base), "back to the start after remove");
        }
    } else {
        let (st, _, _) = create(s, &c, ps, ws);
        check_eq!(s, st, PARAM, "create with no window available");
    }

    // Create until refused: as many as query said, then an error.
    let mut made = Vec::new();
    for _ in 0..=base.avail + 1 {
        let (st, liobn, bus) = create(s, &c, ps, ws);
        if st != 0 {
            let active = made.len() as u32 + 1;
            let want = if c.pers.max_windows.is_some_and(|n| active >= n) {
                alloc::vec![PARAM]
            } else {
                alloc::vec![-1, PARAM]
            };
            check!(s, want.contains(&st), "create beyond the limit: {st}");
            break;
        }
        made.push((liobn, bus));
    }
    check_eq!(
        s,
        made.len() as u32,
        base.avail,
        "windows created before the limit"
    );
    let (st, q) = query(s, &c);
    check!(
        s,
        st == 0 && q.avail == 0,
        "query with every window in use: {q:x?}"
    );
    for (liobn, bus) in made.iter().rev() {
        check_eq!(s, remove(s, &c, *liobn), 0, "remove window {liobn:#x}");
        gone(s, *liobn, *bus, "after removing all");
    }
    check_eq!(s, query(s, &c), (0, base), "back to the start");

    // remove with hostile arguments.
    for (what, args) in [
        ("LIOBN 0", alloc::vec![0u32]),
        ("LIOBN 0xdeadbeef", alloc::vec![0xdead_beef]),
        ("the default LIOBN + 1", alloc::vec![def.0 + 1]),
        ("2 arguments", alloc::vec![def.0, 0]),
    ] {
        let (st, _) = s.rtas_call(c.remove, &args, 1);
        check_eq!(s, st, PARAM, "remove with {what}");
    }
    let (st, _) = s.rtas_call(c.remove, &[def.0], 2);
    check_eq!(s, st, PARAM, "remove with 2 results");
    check_eq!(
        s,
        get_tce(s, def.0, def.1).0,
        0,
        "the default window survives refused removes"
    );

    // Linux's big-window flow: remove the default window, create one at bus
    // address 0, remove that: the default window comes back (LoPAPR).
    check_eq!(s, remove(s, &c, def.0), 0, "remove the default window");
    gone(s, def.0, def.1, "after removing the default window");
    let (st, q) = query(s, &c);
    check!(
        s,
        st == 0 && q.avail == c.pers.avail(raw[1] + 1, 0),
        "query without the default window: {q:x?}"
    );
    let (st, liobn, bus) = create(s, &c, ps, ws);
    check_eq!(s, st, 0, "create with no other window");
    if st == 0 {
        check_eq!(s, bus, 0, "the only window starts at bus address 0");
        window_works(s, liobn, bus, 1 << ws, "the only window");
        check_eq!(s, remove(s, &c, liobn), 0, "remove the only window");
    }
    check_eq!(
        s,
        get_tce(s, def.0, def.1),
        (0, 0),
        "the default window is back, clear"
    );
    check_eq!(
        s,
        query(s, &c),
        (0, base),
        "back to the start after the big-window flow"
    );

    // reset: every window goes, the default comes back.
    if c.reset.is_some() {
        let (st, liobn, bus) = if base.avail > 0 {
            create(s, &c, ps, ws)
        } else {
            let _ = remove(s, &c, def.0);
            create(s, &c, ps, ws)
        };
        check_eq!(s, st, 0, "create before reset");
        check_eq!(s, reset(s, &c), Some(0), "reset");
        if st == 0 && liobn != def.0 {
            gone(s, liobn, bus, "after reset");
        }
        check_eq!(
            s,
            get_tce(s, def.0, def.1),
            (0, 0),
            "the default window after reset"
        );
        check_eq!(s, query(s, &c), (0, base), "back to the start after reset");
        let t = c.reset.unwrap_or(0);
        for (what, args, nret) in [
            ("an unknown BUID", alloc::vec![0, hi, lo ^ 0x100], 1),
            ("2 arguments", alloc::vec![0, hi], 1),
            ("2 results", alloc::vec![0, hi, lo], 2),
            ("4 arguments (no ddw-lam)", alloc::vec![0, hi, lo, 1], 1),
        ] {
            if c.pers.lam && args.len() == 4 {
                continue;
            }
            let (st, _) = s.rtas_call(t, &args, nret);
            check_eq!(s, st, PARAM, "reset with {what}");
        }
    }
    // From 64-bit mode too.
    let (st, r) = s.rtas_call_mode(c.query, &[0, hi, lo], 5, Mode::Bits64);
    check!(
        s,
        st == 0 && r[1] == base.avail,
        "query from 64-bit mode: {r:x?}"
    );
}

/// After quiesce: the resident RTAS still manages windows.
pub fn after_quiesce<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let Some(c) = ctx(s) else { return };
    if c.pers.inject.iter().any(|i| i.2.is_none()) {
        return;
    }
    let (st, q) = query(s, &c);
    check_eq!(s, st, 0, "query after quiesce");
    if st != 0 || q.avail == 0 {
        return;
    }
    let ps = shifts(q.mask)
        .into_iter()
        .filter(|p| *p <= 16)
        .max()
        .unwrap_or(12);
    let ws = small_ws(&c, ps);
    let (st, liobn, bus) = create(s, &c, ps, ws);
    check_eq!(s, st, 0, "create after quiesce");
    if st == 0 {
        window_works(s, liobn, bus, 1 << ws, "a window created after quiesce");
        check_eq!(s, remove(s, &c, liobn), 0, "remove after quiesce");
    }
    check_eq!(s, query(s, &c), (0, q), "query after quiesce unchanged");
}
