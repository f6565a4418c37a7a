//! Hostile client-interface calls: every one must get the specified error
//! (r3 = -1 for an unusable call; the service's failure value otherwise),
//! leave the firmware's memory alone and leave the firmware answering valid
//! calls correctly.

use crate::{arena, check, check_eq, Machine, Mode, Suite, A, ERR, N, POISON, S};
use alloc::vec::Vec;

/// Bytes of firmware code hashed before and after the hostile calls.
pub const HASHED: u64 = 0x10000;

/// A checksum of the firmware's code around the client-interface entry.
pub fn firmware_hash<M: Machine + ?Sized>(s: &mut Suite<M>) -> Option<u64> {
    let base = s.entry.cif & !(HASHED - 1);
    s.hash(base, HASHED)
}

/// Addresses that are not RAM (below 4 GiB, for 32-bit cells); none when
/// RAM reaches 4 GiB.
pub fn outside_ram<M: Machine + ?Sized>(s: &Suite<M>) -> Vec<u32> {
    let top = s.info.ram_top;
    if top + 0x10000 >= 1 << 32 {
        return Vec::new();
    }
    alloc::vec![0xffff_f000u32, (top + 0x1000) as u32]
}

/// The first range above the client's image that is neither available nor
/// the client's: firmware memory (its heap) with client memory right below.
fn firmware_above<M: Machine + ?Sized>(s: &mut Suite<M>) -> Option<u64> {
    let (ib, isz) = s.m.image();
    let avail = s.available();
    avail.windows(2).find_map(|w| {
        let gap = w[0].0 + w[0].1;
        (gap > ib + isz && gap < w[1].0 && w[0].1 >= 0x2000).then_some(gap)
    })
}

pub fn cif<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let root = s.info.root;
    let block = s.at(arena::BLOCK);
    let name_at = s.at(arena::SCRATCH);
    s.wr(name_at, b"finddevice\0");
    let path_at = s.at(arena::SCRATCH + 0x100);
    s.wr(path_at, b"/\0");
    let svc = name_at as u32;

    // Unknown services and wrong counts: r3 = -1.
    check_eq!(s, s.call("frobnicate", &[], 1).r3, -1, "an unknown service");
    check_eq!(
        s,
        s.call("getprop", &[N(root), S("name")], 1).r3,
        -1,
        "getprop with 2 arguments"
    );
    check_eq!(
        s,
        s.call("finddevice", &[S("/")], 2).r3,
        -1,
        "finddevice with 2 results"
    );
    check_eq!(
        s,
        s.call("finddevice", &[S("/")], 0).r3,
        -1,
        "finddevice with 0 results"
    );
    check_eq!(
        s,
        s.call("quiesce", &[N(1)], 0).r3,
        -1,
        "quiesce with an argument"
    );
    check_eq!(
        s,
        s.call("exit", &[N(1)], 0).r3,
        -1,
        "exit with an argument"
    );
    check_eq!(
        s,
        s.call("interpret", &[], 1).r3,
        -1,
        "interpret without arguments"
    );
    check_eq!(
        s,
        s.call("call-method", &[S("x")], 1).r3,
        -1,
        "call-method with 1 argument"
    );
    check_eq!(
        s,
        s.call("call-method", &[S("x"), N(s.stdout)], 0).r3,
        -1,
        "call-method with 0 results"
    );
    for (nargs, nret) in [
        (11, 10),
        (0xffff_ffff, 1),
        (1, 0xffff_ffff),
        (0x8000_0000, 0x8000_0000),
        (21, 0),
    ] {
        let r = s.call_block(block, svc, &[path_at as u32], nargs, nret);
        check_eq!(
            s,
            r.r3,
            -1,
            "finddevice with nargs {nargs:#x} nret {nret:#x}"
        );
    }
    // The service name: outside RAM, at 0, unterminated, in firmware code.
    for bad in outside_ram(s).into_iter().chain([0, 0x80]) {
        let r = s.call_block(block, bad, &[path_at as u32], 1, 1);
        check_eq!(s, r.r3, -1, "service name at {bad:#x}");
    }
    let long = s.at(arena::SCRATCH + 0x1000);
    s.fill(long, 4096, b'x');
    check_eq!(
        s,
        s.call_block(block, long as u32, &[], 0, 1).r3,
        -1,
        "an unterminated service name"
    );
    let code = s.entry.cif as u32;
    check_eq!(
        s,
        s.call_block(block, code, &[], 0, 1).r3,
        -1,
        "service name pointing at firmware code"
    );
    // The argument block itself outside RAM or at 0.
    for bad in outside_ram(s).into_iter().chain([0]) {
        let mode = s.mode.unwrap_or(Mode::Bits32);
        let r3 = s.m.cif(s.entry.cif, bad as u64, mode) as i32;
        check_eq!(s, r3, -1, "argument block at {bad:#x}");
    }
    // Result cells that would land in firmware memory.
    match firmware_above(s) {
        Some(fw) => {
            let page = fw - 0x1000;
            if s.claim(page, 0x1000, 0) == Some(page) {
                let b = fw - 16;
                let r = s.call_block(b, svc, &[path_at as u32], 1, 1);
                check_eq!(
                    s,
                    r.r3,
                    -1,
                    "finddevice whose result cell is firmware memory at {fw:#x}"
                );
                let r = s.call_block(b - 4, svc, &[path_at as u32], 1, 2);
                check_eq!(
                    s,
                    r.r3,
                    -1,
                    "a call whose second result cell is firmware memory"
                );
                s.none("release", &[N(page as u32), N(0x1000)]);
            } else {
                check!(
                    s,
                    false,
                    "claim of the page below firmware memory at {fw:#x}"
                );
            }
        }
        None => {
            check!(s, false, "found firmware memory above the client");
        }
    }

    // Strings: unterminated, outside RAM, too long.
    let bad_ptrs = outside_ram(s);
    let buf = s.at(arena::BUF);
    for p in &bad_ptrs {
        check_eq!(
            s,
            s.one("finddevice", &[N(*p)]),
            ERR,
            "finddevice with a path at {p:#x}"
        );
        check_eq!(
            s,
            s.one("getproplen", &[N(root), N(*p)]),
            ERR,
            "getproplen with a name at {p:#x}"
        );
        check_eq!(
            s,
            s.one("getprop", &[N(root), S("model"), N(*p), N(64)]),
            ERR,
            "getprop into {p:#x}"
        );
        check_eq!(
            s,
            s.one("package-to-path", &[N(root), N(*p), N(64)]),
            ERR,
            "package-to-path into {p:#x}"
        );
        check_eq!(
            s,
            s.one("instance-to-path", &[N(s.stdout), N(*p), N(64)]),
            ERR,
            "instance-to-path into {p:#x}"
        );
        check_eq!(
            s,
            s.one("canon", &[S("/"), N(*p), N(64)]),
            ERR,
            "canon into {p:#x}"
        );
        let r = s.one("nextprop", &[N(root), S(""), N(*p)]);
        check!(s, r != 1, "nextprop into {p:#x}: {r:#x}");
        let r = s.one("nextprop", &[N(root), N(*p), N(buf as u32)]);
        check!(
            s,
            r != 1,
            "nextprop with the previous name at {p:#x}: {r:#x}"
        );
        check_eq!(
            s,
            s.one(
                "setprop",
                &[N(s.info.chosen), S("conformance,bad"), N(*p), N(16)]
            ),
            ERR,
            "setprop from {p:#x}"
        );
        check_eq!(
            s,
            s.one("write", &[N(s.stdout), N(*p), N(16)]),
            ERR,
            "write from {p:#x}"
        );
        check_eq!(s, s.one("open", &[N(*p)]), 0, "open with a path at {p:#x}");
        check_eq!(
            s,
            s.one("test", &[N(*p)]),
            ERR,
            "test with a name at {p:#x}"
        );
        let r = s.call("call-method", &[N(*p), N(s.stdout)], 1);
        check!(
            s,
            r.r3 != 0 || r.get(0) != 0,
            "call-method with the method name at {p:#x}: {r:x?}"
        );
    }
    // (Not in the string area, which every call fills.)
    let unterminated = s.at(arena::SCRATCH + 0x1000);
    s.fill(unterminated, 4096, b'/');
    check_eq!(
        s,
        s.one("finddevice", &[N(unterminated as u32)]),
        ERR,
        "finddevice with an unterminated path"
    );
    s.fill(unterminated, 4096, b'n');
    check_eq!(
        s,
        s.one("getproplen", &[N(root), N(unterminated as u32)]),
        ERR,
        "getproplen with an unterminated name"
    );
    s.fill(unterminated, 4096, b'n');
    check_eq!(
        s,
        s.one(
            "setprop",
            &[N(s.info.chosen), N(unterminated as u32), A::B(b"x"), N(1)]
        ),
        ERR,
        "setprop with an unterminated name"
    );
    let long_path: alloc::string::String = "/node".repeat(300);
    check_eq!(
        s,
        s.one("finddevice", &[S(&long_path)]),
        ERR,
        "finddevice with a 1500-byte path"
    );
    check_eq!(
        s,
        s.one("getproplen", &[N(root), S("no-such-property")]),
        ERR,
        "getproplen of a missing property"
    );
    let r = s.one("nextprop", &[N(root), S("no-such-property"), N(buf as u32)]);
    check!(s, r != 1, "nextprop after a missing property: {r:#x}");
    // Lengths: huge, and a write that would run off the end of RAM.
    let top = s.info.ram_top.min(1 << 32);
    let chosen = s.info.chosen;
    check_eq!(
        s,
        s.one(
            "setprop",
            &[
                N(chosen),
                S("conformance,big"),
                N(buf as u32),
                N(0xffff_ffff)
            ]
        ),
        ERR,
        "setprop of 4 GiB"
    );
    check_eq!(
        s,
        s.one(
            "setprop",
            &[
                N(chosen),
                S("conformance,big"),
                N(buf as u32),
                N(0x1000_0000)
            ]
        ),
        ERR,
        "setprop of 256 MiB"
    );
    check_eq!(
        s,
        s.one("getproplen", &[N(chosen), S("conformance,big")]),
        ERR,
        "no property from refused setprops"
    );
    if s.info.ram_top < 1 << 32 {
        let r = s.one(
            "write",
            &[N(s.stdout), N((top - 16) as u32), N(0xffff_ffff)],
        );
        check_eq!(s, r, ERR, "write of 4 GiB from the end of RAM");
    }
    s.fill(buf, 0x100, 0xa5);
    let len = s.one("getproplen", &[N(root), S("name")]);
    let got = s.one(
        "getprop",
        &[N(root), S("name"), N(buf as u32), N(0xffff_ffff)],
    );
    check_eq!(
        s,
        got,
        len,
        "getprop with a 4 GiB buffer returns the length"
    );
    let tail = s.rd(buf + len as u64, 16).unwrap_or_default();
    check!(
        s,
        tail.iter().all(|b| *b == 0xa5),
        "getprop with a 4 GiB buffer wrote past the value"
    );

    // Buffers in firmware memory.
    let fw = s.entry.cif & !0xfff;
    check_eq!(
        s,
        s.one("getprop", &[N(root), S("name"), N(fw as u32), N(64)]),
        ERR,
        "getprop into firmware code"
    );
    check_eq!(
        s,
        s.one("package-to-path", &[N(root), N(fw as u32), N(64)]),
        ERR,
        "package-to-path into firmware code"
    );
    check_eq!(
        s,
        s.one("instance-to-path", &[N(s.stdout), N(fw as u32), N(64)]),
        ERR,
        "instance-to-path into firmware code"
    );
    check_eq!(
        s,
        s.one("canon", &[S("/"), N(fw as u32), N(64)]),
        ERR,
        "canon into firmware code"
    );
    let r = s.one("nextprop", &[N(root), S(""), N(fw as u32)]);
    check!(s, r != 1, "nextprop into firmware code: {r:#x}");
    check_eq!(
        s,
        s.one("getprop", &[N(root), S("name"), N(0x100), N(64)]),
        ERR,
        "getprop into the vectors"
    );
    let stack = s.entry.stack;
    if stack > 0x1000 && s.any_available(stack, 0x10) {
        check!(s, false, "the client stack {stack:#x} is available memory");
    }

    // Bad phandles and ihandles.
    let valid: Vec<u32> = crate::tree::nodes(s);
    let bad_ph: Vec<u32> = [0u32, 1, 0xffff_ffff, 0x1234_5678, 0x8000_0000, s.stdout]
        .into_iter()
        .filter(|p| !valid.contains(p))
        .collect();
    for ph in &bad_ph {
        let ph = *ph;
        check_eq!(
            s,
            s.one("getproplen", &[N(ph), S("name")]),
            ERR,
            "getproplen on phandle {ph:#x}"
        );
        check_eq!(
            s,
            s.one("getprop", &[N(ph), S("name"), N(buf as u32), N(64)]),
            ERR,
            "getprop on phandle {ph:#x}"
        );
        let r = s.one("nextprop", &[N(ph), S(""), N(buf as u32)]);
        check!(s, r != 1, "nextprop on phandle {ph:#x}: {r:#x}");
        check_eq!(
            s,
            s.one("setprop", &[N(ph), S("x"), A::B(b"x"), N(1)]),
            ERR,
            "setprop on phandle {ph:#x}"
        );
        check_eq!(
            s,
            s.one("package-to-path", &[N(ph), N(buf as u32), N(64)]),
            ERR,
            "package-to-path({ph:#x})"
        );
        for rel in ["child", "parent"] {
            let r = s.one(rel, &[N(ph)]);
            check!(s, r == ERR || r == 0, "{rel}({ph:#x}) = {r:#x}");
        }
        if ph != 0 {
            let r = s.one("peer", &[N(ph)]);
            check!(s, r == ERR || r == 0, "peer({ph:#x}) = {r:#x}");
        }
        let r = s.call("start-cpu", &[N(ph), N(0x6000), N(0)], 0);
        check_eq!(s, r.r3, 0, "start-cpu on phandle {ph:#x} is a no-op");
    }
    let closed = s.one("open", &[S("/")]);
    s.none("close", &[N(closed)]);
    let chosen_ihs: Vec<u32> = ["stdout", "stdin", "cpu"]
        .iter()
        .filter_map(|p| s.getprop_u32(chosen, p))
        .collect();
    for ih in [0u32, 1, 0xffff_ffff, 0x7fff_ffff, closed, root] {
        if chosen_ihs.contains(&ih) {
            continue;
        }
        check_eq!(
            s,
            s.one("instance-to-package", &[N(ih)]),
            ERR,
            "instance-to-package({ih:#x})"
        );
        check_eq!(
            s,
            s.one("instance-to-path", &[N(ih), N(buf as u32), N(64)]),
            ERR,
            "instance-to-path({ih:#x})"
        );
        check_eq!(
            s,
            s.one("write", &[N(ih), S("x"), N(1)]),
            ERR,
            "write on ihandle {ih:#x}"
        );
        check_eq!(
            s,
            s.one("read", &[N(ih), N(buf as u32), N(1)]),
            ERR,
            "read on ihandle {ih:#x}"
        );
        let r = s.call("seek", &[N(ih), N(0), N(0)], 1);
        check!(
            s,
            r.r3 == 0 && r.get(0) == ERR,
            "seek on ihandle {ih:#x}: {r:x?}"
        );
        let r = s.call(
            "call-method",
            &[S("ibm,client-architecture-support"), N(ih), N(0)],
            2,
        );
        check!(
            s,
            r.r3 == 0 && r.get(0) != 0,
            "call-method on ihandle {ih:#x}: {r:x?}"
        );
        check_eq!(
            s,
            s.call("close", &[N(ih)], 0).r3,
            0,
            "close({ih:#x}) is harmless"
        );
    }
    // Methods that do not exist, or not on that instance.
    let root_ih = s.one("open", &[S("/")]);
    let r = s.call("call-method", &[S("frobnicate"), N(root_ih)], 1);
    check!(s, r.r3 == 0 && r.get(0) != 0, "an unknown method: {r:x?}");
    let r = s.call(
        "call-method",
        &[S("instantiate-rtas"), N(root_ih), N(0x100_0000)],
        2,
    );
    check!(
        s,
        r.r3 == 0 && r.get(0) != 0,
        "instantiate-rtas on the root: {r:x?}"
    );
    let r = s.call(
        "call-method",
        &[S("ibm,client-architecture-support"), N(s.stdout), N(0)],
        2,
    );
    check!(s, r.r3 == 0 && r.get(0) != 0, "CAS on the console: {r:x?}");
    let r = s.call(
        "call-method",
        &[S("color!"), N(s.stdout), N(1), N(2), N(3), N(4)],
        1,
    );
    check!(
        s,
        r.r3 == 0 && r.get(0) != 0,
        "color! on the console: {r:x?}"
    );
    let r = s.call(
        "call-method",
        &[S("ibm,client-architecture-support"), N(root_ih)],
        2,
    );
    check!(
        s,
        r.r3 != 0 || r.get(0) != 0,
        "CAS without its vector: {r:x?}"
    );
    s.none("close", &[N(root_ih)]);

    // A client-set phandle that belongs to another node must not make two
    // nodes answer to it.
    let rph = root.to_be_bytes();
    let r = s.one("setprop", &[N(chosen), S("phandle"), A::B(&rph), N(4)]);
    check!(
        s,
        r == ERR || r == 4,
        "setprop of another node's phandle: {r:#x}"
    );
    check_eq!(
        s,
        s.finddevice("/"),
        Some(root),
        "finddevice(/) after a phandle clash"
    );
    check_eq!(
        s,
        s.finddevice("/chosen").map(|c| c != root),
        Some(true),
        "/chosen keeps a phandle of its own"
    );
    check_eq!(
        s,
        s.one("peer", &[N(0)]),
        root,
        "peer(0) after a phandle clash"
    );

    // Growing the tree without bound: 1 MiB properties under new names until
    // papr-fw refuses, which it must do before its own memory runs out;
    // emptied again afterwards, and the firmware still works (CAS, which
    // needs 2 MiB of firmware memory, comes later).
    let (ib, _) = s.m.image();
    let mut grown = 0;
    for i in 0..96 {
        let name = alloc::format!("conformance,fill-{i}");
        let r = s.one("setprop", &[N(chosen), S(&name), N(ib as u32), N(1 << 20)]);
        if r == ERR {
            break;
        }
        grown += 1;
    }
    check!(
        s,
        grown < 96,
        "setprop refuses to grow the tree without bound ({grown} MiB taken)"
    );
    for i in 0..grown {
        let name = alloc::format!("conformance,fill-{i}");
        check_eq!(
            s,
            s.one("setprop", &[N(chosen), S(&name), N(ib as u32), N(0)]),
            0,
            "emptying {name}"
        );
    }
    check_eq!(
        s,
        s.finddevice("/chosen"),
        Some(chosen),
        "finddevice after filling the tree"
    );

    // Many tiny claims (a fragmenting client): refused at some point, in
    // bounded time, and all released again.
    if let Some(base) = s.free_range(0x10_0000, s.m.image().0 + s.m.image().1) {
        let t0 = s.now_ms();
        let mut got = Vec::new();
        for i in 0..20_000u64 {
            match s.claim(base + 2 * i, 1, 0) {
                Some(a) => got.push(a),
                None => break,
            }
        }
        let took = s.now_ms() - t0;
        check!(
            s,
            got.len() < 20_000,
            "claims of 1 byte are refused at some point ({} taken)",
            got.len()
        );
        check!(s, took < 10_000, "{} tiny claims took {took} ms", got.len());
        for a in &got {
            s.none("release", &[N(*a as u32), N(1)]);
        }
        check!(
            s,
            s.is_available(base, 0x10_0000),
            "all tiny claims released"
        );
    }

    // Running out of instances: refused, then fine again after closing.
    let mut opened = Vec::new();
    let mut refused = false;
    for _ in 0..1024 {
        let ih = s.one("open", &[S("/")]);
        if ih == 0 || ih == ERR {
            refused = true;
            break;
        }
        opened.push(ih);
    }
    check!(
        s,
        refused,
        "open refuses once instances run out ({} opened)",
        opened.len()
    );
    for ih in opened {
        s.none("close", &[N(ih)]);
    }
    let ih = s.one("open", &[S("/")]);
    check!(
        s,
        ih != 0 && ih != ERR,
        "open works again after closing them"
    );
    s.none("close", &[N(ih)]);

    // Still correct.
    still_answers(s);
}

/// Valid calls whose answers are known, after hostile ones.
pub fn still_answers<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let root = s.info.root;
    check_eq!(s, s.one("peer", &[N(0)]), root, "peer(0) still the root");
    let chosen = s.info.chosen;
    check_eq!(
        s,
        s.finddevice("/chosen"),
        Some(chosen),
        "finddevice(/chosen) still"
    );
    check_eq!(
        s,
        s.getprop_u32(chosen, "stdout"),
        Some(s.stdout),
        "/chosen/stdout still"
    );
    check_eq!(
        s,
        s.package_to_path(chosen).as_deref(),
        Some("/chosen"),
        "package-to-path(/chosen) still"
    );
    check_eq!(s, s.one("test", &[S("claim")]), 0, "test(claim) still");
    let r = s.call(
        "getprop",
        &[N(root), S("device_type"), N(s.at(arena::BUF) as u32), N(64)],
        1,
    );
    check!(
        s,
        r.r3 == 0 && r.get(0) == 5 && s.cstr(s.at(arena::BUF), 8) == "chrp",
        "getprop(device_type) still: {r:x?}"
    );
    let msg = "conformance: still answering\r\n";
    let out = s.stdout;
    check_eq!(
        s,
        s.one("write", &[N(out), S(msg), N(msg.len() as u32)]),
        msg.len() as u32,
        "write still"
    );
    let ih = s.one("open", &[S("/rtas")]);
    check!(s, ih != 0 && ih != ERR, "open(/rtas) still");
    s.none("close", &[N(ih)]);
    let _ = POISON;
}

/// The end of the run: the firmware's code is unchanged, calls still work.
pub fn after<M: Machine + ?Sized>(s: &mut Suite<M>, before: Option<u64>) {
    let now = firmware_hash(s);
    check!(
        s,
        before.is_some() && now == before,
        "firmware code unchanged: {before:x?} -> {now:x?}"
    );
    still_answers(s);
    if s.rtas.is_some() {
        if let Some(t) = s.info.token("get-time-of-day") {
            let (st, _) = s.rtas_call(t, &[], 8);
            check_eq!(s, st, 0, "get-time-of-day still");
        }
    }
}
