//! Client-interface services with valid arguments (IEEE 1275 §6.3.2):
//! instances (`open`, `close`, `instance-to-package`, `instance-to-path`,
//! `canon`), the console (`write`, `read`, `seek`), `test`, `milliseconds`,
//! `interpret`, `setprop`, and memory (`claim`, `release`, `/memory`
//! `available`) the way Linux (`alloc_up`/`alloc_down`, exact claims with
//! align 0) and boot loaders (aligned claims) use it.

use crate::{arena, check, check_eq, Machine, Suite, A, ERR, N, S};
use alloc::string::String;
use alloc::vec::Vec;

/// The services papr-fw documents (`test` must know each).
pub const SERVICES: &[&str] = &[
    "test",
    "finddevice",
    "getprop",
    "getproplen",
    "nextprop",
    "setprop",
    "peer",
    "child",
    "parent",
    "instance-to-package",
    "instance-to-path",
    "package-to-path",
    "canon",
    "open",
    "close",
    "read",
    "write",
    "seek",
    "claim",
    "release",
    "call-method",
    "interpret",
    "milliseconds",
    "quiesce",
    "exit",
    "start-cpu",
];

fn path_of_instance<M: Machine + ?Sized>(s: &mut Suite<M>, ih: u32) -> Option<String> {
    let buf = s.at(arena::BUF);
    let n = s.one("instance-to-path", &[N(ih), N(buf as u32), N(1024)]);
    (n != ERR && n < 1024).then(|| s.cstr(buf, n as usize + 1))
}

pub fn instances<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let root = s.info.root;
    let ih = s.one("open", &[S("/")]);
    check!(s, ih != 0 && ih != ERR, "open(/) gives an ihandle: {ih:#x}");
    check_eq!(
        s,
        s.one("instance-to-package", &[N(ih)]),
        root,
        "instance-to-package(open(/))"
    );
    check_eq!(
        s,
        path_of_instance(s, ih).as_deref(),
        Some("/"),
        "instance-to-path(open(/))"
    );
    let ih2 = s.one("open", &[S("/")]);
    check!(
        s,
        ih2 != 0 && ih2 != ih,
        "a second open(/) is another instance: {ih2:#x}"
    );
    s.none("close", &[N(ih)]);
    check_eq!(
        s,
        s.one("instance-to-package", &[N(ih)]),
        ERR,
        "instance-to-package of a closed instance"
    );
    check_eq!(
        s,
        s.one("instance-to-package", &[N(ih2)]),
        root,
        "the other instance stays open"
    );
    s.none("close", &[N(ih2)]);
    s.none("close", &[N(ih2)]);
    check_eq!(
        s,
        s.one("instance-to-package", &[N(ih2)]),
        ERR,
        "double close leaves it closed"
    );

    let rtas = s.info.rtas;
    let ih = s.one("open", &[S("/rtas")]);
    check!(s, ih != 0, "open(/rtas)");
    check_eq!(
        s,
        s.one("instance-to-package", &[N(ih)]),
        rtas,
        "instance-to-package(open(/rtas))"
    );
    s.none("close", &[N(ih)]);

    // The console by path, with and without arguments.
    let out_pkg = s.one("instance-to-package", &[N(s.stdout)]);
    let Some(path) = s.package_to_path(out_pkg) else {
        check!(s, false, "package-to-path(stdout's package)");
        return;
    };
    check_eq!(
        s,
        path_of_instance(s, s.stdout),
        Some(path.clone()),
        "instance-to-path(stdout)"
    );
    let con = s.one("open", &[S(&path)]);
    check!(s, con != 0, "open({path})");
    let msg = "conformance: a line through a console instance of our own\r\n";
    check_eq!(
        s,
        s.one("write", &[N(con), S(msg), N(msg.len() as u32)]),
        msg.len() as u32,
        "write on it"
    );
    s.none("close", &[N(con)]);
    let with_args = alloc::format!("{path}:conformance");
    let con = s.one("open", &[S(&with_args)]);
    check!(s, con != 0, "open({with_args})");
    check_eq!(
        s,
        s.one("instance-to-package", &[N(con)]),
        out_pkg,
        "its package"
    );
    s.none("close", &[N(con)]);
    check_eq!(
        s,
        s.one("open", &[S("/no-such-node")]),
        0,
        "open of a missing node"
    );
    check_eq!(s, s.one("open", &[S("")]), 0, "open of an empty path");

    // canon: the canonical path; with a short buffer the length and a prefix.
    let buf = s.at(arena::BUF);
    let n = s.one("canon", &[S(&path), N(buf as u32), N(1024)]);
    check_eq!(s, n, path.len() as u32, "canon({path}) length");
    check_eq!(s, s.cstr(buf, 1024), path, "canon({path})");
    s.fill(buf, 16, 0xa5);
    let n = s.one("canon", &[S(&path), N(buf as u32), N(4)]);
    check_eq!(s, n, path.len() as u32, "canon with a 4-byte buffer");
    let v = s.rd(buf, 16).unwrap_or_default();
    check!(
        s,
        v[4..].iter().all(|b| *b == 0xa5),
        "canon wrote past a 4-byte buffer"
    );
    check_eq!(
        s,
        s.one("canon", &[S("/no-such-node"), N(buf as u32), N(64)]),
        ERR,
        "canon of a missing node"
    );
}

pub fn console<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let out = s.stdout;
    let msg = "conformance: console write\r\n";
    check_eq!(
        s,
        s.one("write", &[N(out), S(msg), N(msg.len() as u32)]),
        msg.len() as u32,
        "write(stdout)"
    );
    check_eq!(
        s,
        s.one("write", &[N(out), S("x"), N(0)]),
        0,
        "write of 0 bytes"
    );
    let chosen = s.info.chosen;
    let stdin = s.getprop_u32(chosen, "stdin").unwrap_or(out);
    let buf = s.at(arena::BUF);
    s.fill(buf, 32, 0xa5);
    let n = s.one("read", &[N(stdin), N(buf as u32), N(16)]);
    check!(
        s,
        n == 0 || n == 0xffff_fffe || n <= 16,
        "read(stdin) with no input: {n:#x}"
    );
    let v = s.rd(buf + 16, 16).unwrap_or_default();
    check!(
        s,
        v.iter().all(|b| *b == 0xa5),
        "read wrote past its 16-byte buffer"
    );
    let r = s.call("seek", &[N(out), N(0), N(0)], 1);
    check!(
        s,
        r.r3 == 0 && r.get(0) == ERR,
        "seek on the console fails: {r:x?}"
    );
}

pub fn misc<M: Machine + ?Sized>(s: &mut Suite<M>) {
    for svc in SERVICES {
        check_eq!(s, s.one("test", &[S(svc)]), 0, "test({svc})");
    }
    check_eq!(
        s,
        s.one("test", &[S("frobnicate")]),
        ERR,
        "test(frobnicate)"
    );
    check_eq!(s, s.one("test", &[S("")]), ERR, "test(\"\")");
    // milliseconds follows the timebase.
    let hz = s.info.timebase_hz.max(1);
    let t0 = s.one("milliseconds", &[]);
    let tb0 = s.m.timebase();
    while s.m.timebase().wrapping_sub(tb0) < hz / 20 {
        core::hint::spin_loop();
    }
    let t1 = s.one("milliseconds", &[]);
    let d = t1.wrapping_sub(t0);
    check!(
        s,
        (40..5000).contains(&d),
        "milliseconds advanced {d} ms over 50 ms of timebase"
    );
    let r = s.call("interpret", &[S("output-device output")], 1);
    check!(
        s,
        r.r3 == 0 && r.get(0) == 0,
        "interpret of GRUB's no-op: {r:x?}"
    );
    let r = s.call("interpret", &[S("1 2 + frobnicate")], 1);
    check!(
        s,
        r.r3 == 0 && r.get(0) != 0,
        "interpret of unknown Forth throws: {r:x?}"
    );
    check_eq!(s, s.one("peer", &[N(0)]), s.info.root, "peer(0)");
    let cpu = s.info.cpus.first().map(|c| c.0).unwrap_or(0);
    check_eq!(s, s.one("child", &[N(cpu)]), 0, "child of a cpu node");
}

pub fn setprop<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let chosen = s.info.chosen;
    let name = "conformance,test";
    check_eq!(
        s,
        s.one("setprop", &[N(chosen), S(name), A::B(b"abc\0"), N(4)]),
        4,
        "setprop 4 bytes"
    );
    check_eq!(
        s,
        s.getprop(chosen, name),
        Some(b"abc\0".to_vec()),
        "getprop after setprop"
    );
    let eight = [1u8, 2, 3, 4, 5, 6, 7, 8];
    check_eq!(
        s,
        s.one("setprop", &[N(chosen), S(name), A::B(&eight), N(8)]),
        8,
        "setprop replaces"
    );
    check_eq!(
        s,
        s.getprop(chosen, name),
        Some(eight.to_vec()),
        "the new value"
    );
    check_eq!(
        s,
        s.one("setprop", &[N(chosen), S(name), A::B(b"z"), N(0)]),
        0,
        "setprop of an empty value"
    );
    check_eq!(
        s,
        s.one("getproplen", &[N(chosen), S(name)]),
        0,
        "an empty property has length 0"
    );
    let names = crate::tree::prop_names(s, chosen);
    check_eq!(
        s,
        names.iter().filter(|n| *n == name).count(),
        1,
        "the new property is listed once"
    );
    // A property as Linux sets it on /chosen (linux,stdout-path).
    let path = "/vdevice/vty@71000000";
    let n = path.len() as u32 + 1;
    check_eq!(
        s,
        s.one(
            "setprop",
            &[N(chosen), S("linux,conformance-path"), S(path), N(n)]
        ),
        n,
        "setprop of a string"
    );
    check_eq!(
        s,
        s.getprop_str(chosen, "linux,conformance-path").as_deref(),
        Some(path),
        "and back"
    );
}

pub fn claims<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let before = s.available();
    let (ib, isz) = s.m.image();
    let Some(f) = s.free_range(4 << 20, ib + isz) else {
        check!(s, false, "4 MiB of available memory above the client");
        return;
    };
    check_eq!(
        s,
        s.claim(f, 0x10000, 0),
        Some(f),
        "claim at an exact free address"
    );
    check!(
        s,
        !s.any_available(f, 0x10000),
        "a claimed range leaves available"
    );
    check_eq!(s, s.claim(f, 0x10000, 0), None, "claiming it again");
    check_eq!(
        s,
        s.claim(f + 0x8000, 0x10000, 0),
        None,
        "a claim overlapping its end"
    );
    check_eq!(
        s,
        s.claim(f - 0x1000, 0x2000, 0),
        None,
        "a claim overlapping its start"
    );
    check_eq!(s, s.claim(f + 0x1000, 0x100, 0), None, "a claim inside it");
    check_eq!(
        s,
        s.claim(f + 0x10000, 0x1000, 0),
        Some(f + 0x10000),
        "the adjacent page"
    );
    s.none("release", &[N(f as u32), N(0x10000)]);
    check!(
        s,
        s.is_available(f, 0x10000),
        "released memory is available again"
    );
    s.none("release", &[N(f as u32), N(0x10000)]);
    check_eq!(
        s,
        s.claim(f, 0x10000, 0),
        Some(f),
        "claim after a double release"
    );
    s.none("release", &[N(f as u32), N(0x11000)]);
    check!(
        s,
        !s.any_available(f, 0x11000),
        "a release spanning two claims is refused"
    );
    s.none("release", &[N(f as u32), N(0x10000)]);
    s.none("release", &[N(f as u32 + 0x10000), N(0x1000)]);
    check!(
        s,
        s.is_available(f, 0x11000),
        "both claims released one by one"
    );
    // Unaligned exact claims: exactly there, or refused.
    let odd = f + 0x123;
    match s.claim(odd, 0x10, 0) {
        Some(a) => {
            check_eq!(s, a, odd, "an unaligned claim lands where asked");
            s.none("release", &[N(odd as u32), N(0x10)]);
        }
        None => {
            check!(s, true, "an unaligned claim refused");
        }
    }
    // Aligned claims (virt ignored): aligned, in memory that was available.
    for align in [0x1000u64, 0x10000, 0x100000] {
        match s.claim(0, 0x3000, align) {
            Some(a) => {
                check!(
                    s,
                    a % align == 0,
                    "claim(align {align:#x}) = {a:#x} is aligned"
                );
                let was_free = before.iter().any(|(b, sz)| a >= *b && a + 0x3000 <= b + sz);
                check!(
                    s,
                    was_free,
                    "claim(align {align:#x}) = {a:#x} was available"
                );
                s.none("release", &[N(a as u32), N(0x3000)]);
            }
            None => {
                check!(s, false, "claim with align {align:#x}");
            }
        }
    }
    check_eq!(
        s,
        s.claim(0, 0x1000, 0x3000),
        None,
        "an alignment that is not a power of two"
    );
    check_eq!(s, s.claim(f, 0, 0), None, "a claim of 0 bytes");
    check_eq!(s, s.claim(f, 0xffff_f000, 0), None, "a claim of ~4 GiB");
    check_eq!(
        s,
        s.claim(0xffff_f000, 0x2000, 0),
        None,
        "a claim wrapping at 4 GiB"
    );
    let top = s.info.ram_top;
    if top < 1 << 32 {
        check_eq!(s, s.claim(top, 0x1000, 0), None, "a claim above RAM");
        check_eq!(
            s,
            s.claim(top - 0x1000, 0x2000, 0),
            None,
            "a claim across the top of RAM"
        );
    }
    check_eq!(s, s.claim(0, 0x1000, 0), None, "a claim of page 0");
    check_eq!(s, s.claim(0x100, 0x100, 0), None, "a claim inside page 0");
    // Releasing what the firmware keeps must not give it away.
    let fw = s.entry.cif & !0xfff;
    s.none("release", &[N(fw as u32), N(0x1000)]);
    check_eq!(
        s,
        s.claim(fw, 0x1000, 0),
        None,
        "firmware memory stays refused after a release of it"
    );
    // Linux's alloc_down: exact claims from the top of the RMO in 1 MiB steps.
    let rmo_top = s
        .info
        .ram
        .first()
        .map(|(b, sz)| b + sz)
        .unwrap_or(0)
        .min(0x3000_0000);
    let mut at = rmo_top.saturating_sub(1 << 20);
    let mut tries = 0;
    let got = loop {
        if at < ib + isz || tries > 256 {
            break None;
        }
        tries += 1;
        if let Some(a) = s.claim(at, 1 << 20, 0) {
            break Some(a);
        }
        at -= 1 << 20;
    };
    match got {
        Some(a) => {
            let was_free = before
                .iter()
                .any(|(b, sz)| a >= *b && a + (1 << 20) <= b + sz);
            check!(
                s,
                was_free,
                "alloc_down's claim at {a:#x} after {tries} tries was available"
            );
            s.none("release", &[N(a as u32), N(1 << 20)]);
        }
        None => {
            check!(s, false, "alloc_down found no 1 MiB below {rmo_top:#x}");
        }
    }
    // Linux's alloc_up: exact claims from above the client.
    let mut up = (ib + isz + 0x4000 + 0xfffff) & !0xfffff;
    let mut got_up = None;
    for _ in 0..64 {
        if let Some(a) = s.claim(up, 1 << 20, 0) {
            got_up = Some(a);
            break;
        }
        up += 1 << 20;
    }
    check!(s, got_up.is_some(), "alloc_up found 1 MiB above the client");
    if let Some(a) = got_up {
        s.none("release", &[N(a as u32), N(1 << 20)]);
    }
    let after = s.available();
    check_eq!(
        s,
        after,
        before,
        "available after claims and releases is as before"
    );
}

/// A snapshot of `available` other parts compare with.
pub fn snapshot<M: Machine + ?Sized>(s: &mut Suite<M>) -> Vec<(u64, u64)> {
    s.available()
}
