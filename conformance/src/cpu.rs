//! The `start-cpu` service (IEEE 1275 PowerPC binding; papr-fw starts the
//! CPU with RTAS `start-cpu`, QEMU pseries contract §5.4): a second CPU runs
//! the client's code with the argument it was given and stops itself; RTAS `query-cpu-stopped-state` follows it.  Hostile calls
//! (no CPU node, the running boot CPU, wrong counts) change nothing.

use crate::{arena, check, check_eq, Machine, Suite, N};

/// Wait up to `ms` for `cond`.
fn wait<M: Machine + ?Sized>(
    s: &mut Suite<M>,
    ms: u64,
    mut cond: impl FnMut(&mut Suite<M>) -> bool,
) -> bool {
    let hz = s.info.timebase_hz.max(1);
    let start = s.m.timebase();
    loop {
        if cond(s) {
            return true;
        }
        if s.m.timebase().wrapping_sub(start) > hz / 1000 * ms {
            return false;
        }
    }
}

pub fn run<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let r = s.call("start-cpu", &[N(s.info.root), N(0x6000)], 0);
    check_eq!(s, r.r3, -1, "start-cpu with 2 arguments");
    let boot = s.info.cpus.first().copied();
    if let Some((ph, _)) = boot {
        let r = s.call("start-cpu", &[N(ph), N(0x6000), N(0)], 0);
        check_eq!(
            s,
            r.r3,
            0,
            "start-cpu on the running boot CPU is refused quietly"
        );
    }
    let stopped = s.info.token("query-cpu-stopped-state");
    let stop_self = s.info.token("stop-self");
    let (Some(entry), Some((ph, server)), Some(query), Some(stop_self)) = (
        s.m.secondary_entry(),
        s.info.cpus.get(1).copied(),
        stopped,
        stop_self,
    ) else {
        return;
    };
    if s.rtas.is_none() {
        return;
    }
    let mb = s.at(arena::MAILBOX);
    s.fill(mb, 64, 0);
    for (i, v) in [stop_self, 0, 1, 0].iter().enumerate() {
        s.wr32(mb + 16 + 4 * i as u64, *v);
    }
    let (st, r) = s.rtas_call(query, &[server], 2);
    check!(
        s,
        st == 0 && r[1] == 0,
        "CPU {server} is stopped before start-cpu: {r:?}"
    );
    let r = s.call("start-cpu", &[N(ph), N(entry as u32), N(mb as u32)], 0);
    check_eq!(s, r.r3, 0, "start-cpu of CPU {server}");
    let ran = wait(s, 10_000, |s| s.rd32(mb) == 1);
    check!(
        s,
        ran,
        "CPU {server} ran the client's code with its argument"
    );
    if ran {
        check_eq!(
            s,
            s.rd32(mb + 8),
            mb as u32,
            "the started CPU got the argument in r3"
        );
    }
    let back = wait(s, 10_000, |s| {
        s.rtas_call(query, &[server], 2).1.get(1) == Some(&0)
    });
    check!(s, back, "CPU {server} stopped itself (stop-self)");
}
