//! RTAS as an OS uses it (LoPAPR §7; QEMU pseries contract §5;
//! linux-expectations.md §1.8): `instantiate-rtas` on `/rtas` with an area
//! claimed like Linux's `alloc_down`, then calls through the returned entry
//! in 32-bit real mode (and once from 64-bit mode), compared with what the
//! platform answers to the same call made directly with H_RTAS; hostile
//! argument blocks; and the end of the client interface (`quiesce`), after
//! which the resident RTAS must still work.

use crate::{arena, check, check_eq, Machine, Mode, RtasArea, Suite, ERR, N, S};
use alloc::string::String;
use alloc::vec::Vec;

/// RTAS statuses.
pub const PARAM: i32 = -3;

/// Firmware options from the NVRAM "system" partition (QEMU's -prom-env).
pub fn nvram_options<M: Machine + ?Sized>(s: &mut Suite<M>) -> Vec<(String, String)> {
    let Some(fetch) = s.info.token("nvram-fetch") else {
        return Vec::new();
    };
    let buf = s.at(arena::BUF);
    let (st, r) = s.rtas_call(fetch, &[0, buf as u32, 16], 2);
    if st != 0 || r.get(1) != Some(&16) {
        return Vec::new();
    }
    let h = s.rd(buf, 16).unwrap_or_default();
    let len = (u16::from_be_bytes([h[2], h[3]]) as u64 * 16).min(arena::BUF_SIZE);
    if h[0] != 0x70 || &h[4..10] != b"system" || len <= 16 {
        return Vec::new();
    }
    let (st, _) = s.rtas_call(fetch, &[16, buf as u32, (len - 16) as u32], 2);
    if st != 0 {
        return Vec::new();
    }
    let body = s.rd(buf, (len - 16) as usize).unwrap_or_default();
    body.split(|b| *b == 0)
        .take_while(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = core::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            Some((String::from(k), String::from(v)))
        })
        .collect()
}

pub fn instantiate<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let rtas = s.info.rtas;
    let size = s.getprop_u32(rtas, "rtas-size").unwrap_or(0) as u64;
    let ih = s.one("open", &[S("/rtas")]);
    check!(s, ih != 0 && ih != ERR, "open(/rtas)");
    let pages = (size + 0xfff) & !0xfff;
    // Areas that are not the client's to give.
    let fw = s.entry.cif & !0xfff;
    let mut bad: Vec<(&str, u64)> = alloc::vec![("firmware code", fw), ("page 0", 0)];
    let top = s.info.ram_top;
    if top < 1 << 32 {
        bad.push(("above RAM", top + 0x10000));
        bad.push(("across the top of RAM", top - 0x10));
    }
    for (what, base) in bad {
        let r = s.call(
            "call-method",
            &[S("instantiate-rtas"), N(ih), N(base as u32)],
            2,
        );
        check!(
            s,
            r.r3 == 0 && r.get(0) != 0,
            "instantiate-rtas at {what} ({base:#x}) is refused: {r:x?}"
        );
    }
    let r = s.call("call-method", &[S("instantiate-rtas"), N(ih)], 2);
    check!(
        s,
        r.r3 != 0 || r.get(0) != 0,
        "instantiate-rtas without a base: {r:x?}"
    );
    let r = s.call(
        "call-method",
        &[S("instantiate-rtas"), N(ih), N(0x100_0000), N(5)],
        2,
    );
    check!(
        s,
        r.r3 != 0 || r.get(0) != 0,
        "instantiate-rtas with 2 arguments: {r:x?}"
    );
    check_eq!(
        s,
        firmware_intact(s),
        true,
        "firmware code intact after refused instantiate-rtas"
    );

    // Linux: alloc_down(rtas-size, PAGE_SIZE) from the top of the RMO (768 MiB at most).
    let rmo_top = s
        .info
        .ram
        .first()
        .map(|(b, sz)| b + sz)
        .unwrap_or(0)
        .min(0x3000_0000);
    let mut at = (rmo_top - pages) & !0xfff;
    let (ib, isz) = s.m.image();
    let mut base = None;
    for _ in 0..1024 {
        if at < ib + isz {
            break;
        }
        if let Some(a) = s.claim(at, pages, 0) {
            base = Some(a);
            break;
        }
        at -= 1 << 20;
    }
    let Some(base) = base else {
        check!(
            s,
            false,
            "no memory for RTAS ({pages:#x} bytes) below {rmo_top:#x}"
        );
        return;
    };
    let r = s.call(
        "call-method",
        &[S("instantiate-rtas"), N(ih), N(base as u32)],
        2,
    );
    check!(
        s,
        r.r3 == 0 && r.get(0) == 0,
        "instantiate-rtas at {base:#x}: {r:x?}"
    );
    let entry = r.get(1) as u64;
    check!(
        s,
        entry >= base && entry < base + size,
        "RTAS entry {entry:#x} inside {base:#x}+{size:#x}"
    );
    if r.r3 != 0 || r.get(0) != 0 || entry < base || entry >= base + size {
        return;
    }
    s.none("close", &[N(ih)]);
    s.rtas = Some(RtasArea { base, size, entry });
    // As prom_init does.
    let b = (base as u32).to_be_bytes();
    check_eq!(
        s,
        s.one(
            "setprop",
            &[N(rtas), S("linux,rtas-base"), crate::B(&b), N(4)]
        ),
        4,
        "setprop linux,rtas-base"
    );
    let e = (entry as u32).to_be_bytes();
    check_eq!(
        s,
        s.one(
            "setprop",
            &[N(rtas), S("linux,rtas-entry"), crate::B(&e), N(4)]
        ),
        4,
        "setprop linux,rtas-entry"
    );
}

fn firmware_intact<M: Machine + ?Sized>(s: &mut Suite<M>) -> bool {
    crate::hostile::firmware_hash(s).is_some()
}

pub fn calls<M: Machine + ?Sized>(s: &mut Suite<M>) {
    // get-time-of-day, through papr-fw and straight from the platform.
    if let Some(t) = s.info.token("get-time-of-day") {
        let (st, r) = s.rtas_call(t, &[], 8);
        check_eq!(s, st, 0, "get-time-of-day");
        let (y, mo, d, h, mi, se) = (r[1], r[2], r[3], r[4], r[5], r[6]);
        check!(
            s,
            (2000..2200).contains(&y)
                && (1..=12).contains(&mo)
                && (1..=31).contains(&d)
                && h < 24
                && mi < 60
                && se < 60,
            "get-time-of-day gives a date: {y}-{mo}-{d} {h}:{mi}:{se}"
        );
        let (rc, p) = s.platform_rtas(t, &[], 8);
        check!(
            s,
            rc == 0 && p[0] == 0 && p[1] == y && p[2] == mo,
            "the platform's own get-time-of-day agrees: {p:?}"
        );
        let (st, _) = s.rtas_call_mode(t, &[], 8, Mode::Bits64);
        check_eq!(s, st, 0, "get-time-of-day called from 64-bit mode");
        let (st, _) = s.rtas_call(t, &[], 2);
        check_eq!(s, st, PARAM, "get-time-of-day with 2 results");
    }
    // Read-only calls papr-fw forwards: the same answer as the platform's.
    if let (Some(t), Some(phb)) = (
        s.info.token("ibm,read-pci-config"),
        s.info.phbs.first().cloned(),
    ) {
        let args = [0, (phb.buid >> 32) as u32, phb.buid as u32, 4];
        let (st, r) = s.rtas_call(t, &args, 2);
        let (rc, p) = s.platform_rtas(t, &args, 2);
        check!(
            s,
            rc == 0 && st == p[0] as i32 && (st != 0 || r[1] == p[1]),
            "ibm,read-pci-config agrees with the platform: {r:x?} {p:x?}"
        );
        let (st, _) = s.rtas_call(t, &[0, 0, 0, 4], 2);
        check!(s, st != 0, "ibm,read-pci-config of BUID 0 fails: {st}");
    }
    if let Some(t) = s.info.token("ibm,get-system-parameter") {
        // SPLPAR characteristics (20): a length-prefixed string.
        let (ours, theirs) = (s.at(arena::BUF), s.at(arena::BUF + 0x800));
        s.fill(ours, 0x400, 0);
        s.fill(theirs, 0x400, 0);
        let (st, _) = s.rtas_call(t, &[20, ours as u32, 0x400], 1);
        let (rc, p) = s.platform_rtas(t, &[20, theirs as u32, 0x400], 1);
        let (a, b) = (s.rd(ours, 0x400), s.rd(theirs, 0x400));
        check!(
            s,
            rc == 0 && st == p[0] as i32 && (st != 0 || a == b),
            "ibm,get-system-parameter(20) agrees with the platform ({st}, {})",
            p[0] as i32
        );
    }

    // Unknown tokens.
    let known: Vec<u32> = s.info.tokens.iter().map(|(_, t)| *t).collect();
    for t in [0x1234u32, 0, 0xffff_ffff, 0x7fff_ffff] {
        if known.contains(&t) {
            continue;
        }
        let (st, _) = s.rtas_call(t, &[1, 2], 1);
        check_eq!(s, st, PARAM, "unknown RTAS token {t:#x}");
    }
    // query-cpu-stopped-state of the running boot CPU, and of no CPU.
    if let Some(t) = s.info.token("query-cpu-stopped-state") {
        let boot = s.info.cpus.first().map(|c| c.1).unwrap_or(0);
        let (st, r) = s.rtas_call(t, &[boot], 2);
        check!(
            s,
            st == 0 && r[1] == 2,
            "query-cpu-stopped-state(boot CPU {boot}) = running: {r:?}"
        );
        let (st, _) = s.rtas_call(t, &[0x7fff], 2);
        check_eq!(s, st, PARAM, "query-cpu-stopped-state of CPU 0x7fff");
    }
    // NVRAM: the system partition QEMU wrote, same bytes as the platform reads.
    if let Some(t) = s.info.token("nvram-fetch") {
        let buf = s.at(arena::BUF);
        let (st, r) = s.rtas_call(t, &[0, buf as u32, 16], 2);
        check!(
            s,
            st == 0 && r[1] == 16,
            "nvram-fetch of the first header: {r:?}"
        );
        let ours = s.rd(buf, 16).unwrap_or_default();
        let blank = ours.iter().all(|b| *b == 0);
        check!(
            s,
            blank || (ours[0] == 0x70 && &ours[4..10] == b"system"),
            "NVRAM starts with the system partition (QEMU writes one for -prom-env) or is blank: {ours:x?}"
        );
        let pbuf = s.at(arena::BUF + 0x100);
        let (rc, _) = s.platform_rtas(t, &[0, pbuf as u32, 16], 2);
        let theirs = s.rd(pbuf, 16).unwrap_or_default();
        check!(
            s,
            rc == 0 && theirs == ours,
            "the platform's nvram-fetch gives the same bytes"
        );
        for (off, len) in [
            (0xffff_ff00u32, 16u32),
            (0, 0x1000_0000),
            (0xffff_fff0, 0x20),
        ] {
            let (st, _) = s.rtas_call(t, &[off, buf as u32, len], 2);
            check_eq!(s, st, PARAM, "nvram-fetch of {len:#x} bytes at {off:#x}");
        }
        let (st, _) = s.rtas_call(t, &[0, buf as u32], 2);
        check_eq!(s, st, PARAM, "nvram-fetch with 2 arguments");
    }
}

/// Argument blocks no OS should pass; the runtime must stay alive and correct.
pub fn hostile<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let Some(area) = s.rtas else { return };
    let tod = s.info.token("get-time-of-day").unwrap_or(0x2001);
    let top = s.info.ram_top;
    // Blocks outside RAM.
    let mut bad: Vec<u64> = crate::hostile::outside_ram(s)
        .into_iter()
        .map(u64::from)
        .collect();
    bad.push(top.min(1 << 32) - 4);
    for bad in bad {
        s.m.rtas(area.entry, area.base, bad, Mode::Bits32);
        let (st, _) = s.rtas_call(tod, &[], 8);
        check_eq!(s, st, 0, "RTAS still works after a block at {bad:#x}");
    }
    let Some(phb) = s.info.phbs.iter().find(|p| p.ddw.is_some()).cloned() else {
        return;
    };
    let Some([query, _, remove]) = phb.ddw else {
        return;
    };
    let block = s.at(arena::RTAS_BLOCK);
    let (hi, lo) = ((phb.buid >> 32) as u32, phb.buid as u32);
    // Enormous counts: nothing written where the OS did not ask.
    let guard = s.at(arena::SCRATCH);
    s.fill(guard, 0x400, 0xa5);
    let rets = s.rtas_block(guard, query, &[0, hi, lo], 3, 0xffff_ffff, Mode::Bits32);
    check_eq!(
        s,
        rets.first().map(|r| *r as i32),
        Some(PARAM),
        "query with nret 0xffffffff"
    );
    let past = s.rd(guard + 12 + 12 + 4 * 32, 0x100).unwrap_or_default();
    check!(
        s,
        past.iter().all(|b| *b == 0xa5),
        "no more than 32 result cells written for nret 0xffffffff"
    );
    s.fill(guard, 0x400, 0xa5);
    let _ = s.rtas_block(guard, query, &[0, hi, lo], 0xffff_ffff, 5, Mode::Bits32);
    let near = s.rd(guard + 12, 0x300).unwrap_or_default();
    check!(
        s,
        near[12..].iter().all(|b| *b == 0xa5),
        "nargs 0xffffffff: nothing written near the block"
    );
    let rets = s.rtas_block(block, remove, &[], 0, 1, Mode::Bits32);
    check_eq!(
        s,
        rets.first().map(|r| *r as i32),
        Some(PARAM),
        "remove with no arguments"
    );
    s.fill(guard, 0x100, 0xa5);
    let _ = s.rtas_block(guard, query, &[0, hi, lo], 3, 0, Mode::Bits32);
    let past = s.rd(guard + 24, 0x40).unwrap_or_default();
    check!(
        s,
        past.iter().all(|b| *b == 0xa5),
        "query with no result cells writes none"
    );
    let (st, _) = s.rtas_call(tod, &[], 8);
    check_eq!(
        s,
        st,
        0,
        "RTAS still answers after hostile DMA-window blocks"
    );
}

/// `quiesce`, then RTAS without the client interface.
pub fn quiesce<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let r = s.call("quiesce", &[], 0);
    check_eq!(s, r.r3, 0, "quiesce");
    s.quiesced = true;
    s.say("conformance: quiesced; RTAS from here on");
    if s.rtas.is_none() {
        return;
    }
    if let Some(t) = s.info.token("get-time-of-day") {
        let (st, _) = s.rtas_call(t, &[], 8);
        check_eq!(s, st, 0, "get-time-of-day after quiesce");
    }
    crate::ddw::after_quiesce(s);
}
