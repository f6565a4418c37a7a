//! The tree through the client interface (IEEE 1275 §6.3.2.2 "Device tree"
//! services; what Linux's prom_init reads, linux-expectations.md §1.3–1.9):
//! the facts the rest of the suite needs, the entry state, a full walk with
//! `child`/`peer`/`parent`, `package-to-path`/`finddevice` round trips and
//! every property through `nextprop`/`getproplen`/`getprop`, and the nodes
//! a pseries OS depends on.

use crate::{arena, cells, check, check_eq, decode_ranges, Machine, Phb, Suite, ERR, N, S};
use alloc::string::String;
use alloc::vec::Vec;

/// Most nodes and properties per node the walk visits.
pub const MAX_NODES: usize = 512;
pub const MAX_PROPS: usize = 256;

/// Every node, depth first (child/peer).
pub fn nodes<M: Machine + ?Sized>(s: &mut Suite<M>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = alloc::vec![s.info.root];
    while let Some(n) = stack.pop() {
        if out.len() >= MAX_NODES {
            break;
        }
        out.push(n);
        let mut kids = Vec::new();
        let mut c = s.one("child", &[N(n)]);
        while c != 0 && c != ERR && kids.len() < MAX_NODES {
            kids.push(c);
            c = s.one("peer", &[N(c)]);
        }
        stack.extend(kids.into_iter().rev());
    }
    out
}

/// Property names of `ph` in `nextprop` order.
pub fn prop_names<M: Machine + ?Sized>(s: &mut Suite<M>, ph: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut prev = String::new();
    let buf = s.at(arena::BUF + 0x8000);
    loop {
        let r = s.one("nextprop", &[N(ph), S(&prev), N(buf as u32)]);
        if r != 1 || names.len() >= MAX_PROPS {
            break;
        }
        prev = s.cstr(buf, 64);
        names.push(prev.clone());
    }
    names
}

/// Learn what the suite needs: root, /chosen, stdout, /rtas and its tokens,
/// memory, CPUs, PHBs, the command line.
pub fn basics<M: Machine + ?Sized>(s: &mut Suite<M>) {
    s.info.root = s.one("peer", &[N(0)]);
    s.info.chosen = s.finddevice("/chosen").unwrap_or(0);
    let chosen = s.info.chosen;
    if let Some(ih) = s.getprop_u32(chosen, "stdout") {
        s.stdout = ih;
        let pkg = s.one("instance-to-package", &[N(ih)]);
        if pkg != ERR {
            s.vtermno = s.getprop_u32(pkg, "reg").unwrap_or(0) as u64;
        }
    }
    s.info.bootargs = s.getprop_str(chosen, "bootargs").unwrap_or_default();
    let root = s.info.root;
    s.info.cells = (
        s.getprop_u32(root, "#address-cells").unwrap_or(2),
        s.getprop_u32(root, "#size-cells").unwrap_or(1),
    );
    if let Some(rtas) = s.finddevice("/rtas") {
        s.info.rtas = rtas;
        for name in prop_names(s, rtas) {
            if let Some(v) = s.getprop(rtas, &name) {
                if v.len() == 4 {
                    s.info
                        .tokens
                        .push((name, u32::from_be_bytes([v[0], v[1], v[2], v[3]])));
                }
            }
        }
    }
    let all = nodes(s);
    s.info.nodes = all.len() as u32;
    for ph in all {
        let dt = s.getprop_str(ph, "device_type").unwrap_or_default();
        match dt.as_str() {
            "memory" => {
                let path = s.package_to_path(ph).unwrap_or_default();
                if let Some(reg) = s.getprop(ph, "reg") {
                    let (ac, sc) = s.info.cells;
                    s.info.ram.extend(decode_ranges(&reg, ac, sc));
                }
                s.info.memory_nodes.push((ph, path));
            }
            "cpu" => {
                let server = s
                    .getprop_u32(ph, "ibm,ppc-interrupt-server#s")
                    .or_else(|| s.getprop_u32(ph, "reg"))
                    .unwrap_or(0);
                s.info.cpus.push((ph, server));
                if s.info.timebase_hz == 0 {
                    s.info.timebase_hz =
                        s.getprop_u32(ph, "timebase-frequency").unwrap_or(0) as u64;
                }
            }
            "pci" => {
                if let Some(phb) = phb(s, ph) {
                    s.info.phbs.push(phb);
                }
            }
            _ => {}
        }
    }
    s.info.ram.sort();
    s.info.ram_top = s.info.ram.iter().map(|(b, sz)| b + sz).max().unwrap_or(0);
    let top = s.info.ram_top;
    s.m.set_ram_top(top);
}

/// A PHB's DMA window and DDW properties.
fn phb<M: Machine + ?Sized>(s: &mut Suite<M>, ph: u32) -> Option<Phb> {
    let win = s.getprop(ph, "ibm,dma-window")?;
    let ac = s.getprop_u32(ph, "ibm,#dma-address-cells").unwrap_or(2) as usize;
    let sc = s.getprop_u32(ph, "ibm,#dma-size-cells").unwrap_or(2) as usize;
    let c = cells(&win);
    if c.len() < 1 + ac + sc {
        return None;
    }
    let num = |v: &[u32]| v.iter().fold(0u64, |a, x| (a << 32) | *x as u64);
    let reg = s.getprop(ph, "reg").map(|r| cells(&r)).unwrap_or_default();
    let ddw = s.getprop(ph, "ibm,ddw-applicable").map(|v| cells(&v));
    Some(Phb {
        path: s.package_to_path(ph).unwrap_or_default(),
        ph,
        buid: if reg.len() >= 2 { num(&reg[..2]) } else { 0 },
        liobn: c[0],
        win_addr: num(&c[1..1 + ac]),
        win_size: num(&c[1 + ac..1 + ac + sc]),
        ddw: ddw.filter(|d| d.len() >= 3).map(|d| [d[0], d[1], d[2]]),
        ext: s
            .getprop(ph, "ibm,ddw-extensions")
            .map(|v| cells(&v))
            .unwrap_or_default(),
    })
}

/// The register state at entry (linux-expectations.md §1.1–1.2) and the
/// memory the client was given.
pub fn entry_state<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let e = s.entry;
    check!(
        s,
        e.cif != 0 && e.cif.is_multiple_of(4),
        "r5 (client-interface entry) is {:#x}",
        e.cif
    );
    check!(
        s,
        e.msr & (1 << 63) == 0,
        "entered in 32-bit mode (MSR {:#x})",
        e.msr
    );
    check!(s, e.msr & 1 == 0, "entered big-endian (MSR {:#x})", e.msr);
    check!(
        s,
        e.msr & 0x30 == 0,
        "entered in real mode (MSR {:#x})",
        e.msr
    );
    check!(
        s,
        e.msr & 0x8000 == 0,
        "entered with external interrupts off (MSR {:#x})",
        e.msr
    );
    check!(
        s,
        e.stack > 0x1000 && e.stack < 1 << 32,
        "r1 is a stack: {:#x}",
        e.stack
    );
    check!(s, e.stack <= s.info.ram_top, "r1 {:#x} is in RAM", e.stack);
    // The stack (16 KiB below r1) is not free memory, and a claim of it fails.
    let sp = e.stack & !0xfff;
    let stack_free = s.any_available(sp.saturating_sub(0x4000), 0x4000);
    check!(
        s,
        !stack_free,
        "the stack below r1 {:#x} is listed as available",
        e.stack
    );
    check!(
        s,
        s.claim(sp - 0x1000, 0x1000, 0).is_none(),
        "claim of the client's stack refused"
    );
    check!(
        s,
        !s.any_available(e.cif & !0xfff, 0x1000),
        "the client-interface entry is not available memory"
    );
    check!(
        s,
        s.claim(e.cif & !0xfff, 0x1000, 0).is_none(),
        "claim of the client-interface entry refused"
    );
    let (ib, isz) = s.m.image();
    check!(
        s,
        !s.any_available(ib, isz),
        "the client's image {ib:#x}+{isz:#x} is not available memory"
    );
    check!(
        s,
        s.claim(ib, 0x1000, 0).is_none(),
        "claim of the client's own image refused"
    );
    check!(
        s,
        (e.r3 == 0) == (e.r4 == 0),
        "r3/r4 (initrd) {:#x}/{:#x} both set or both 0",
        e.r3,
        e.r4
    );
    // QEMU's own record of what it loaded (`qemu,boot-kernel`) is where we run.
    let chosen = s.info.chosen;
    if let Some(k) = s.getprop(chosen, "qemu,boot-kernel") {
        let base = if k.len() >= 8 {
            u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]))
        } else {
            0
        };
        check_eq!(s, base, ib, "/chosen/qemu,boot-kernel base");
    }
    check!(
        s,
        !s.info.ram.is_empty() && s.info.ram[0].0 == 0,
        "the first memory range starts at 0 (RMA): {:x?}",
        s.info.ram
    );
}

/// Walk every node and property.
pub fn walk<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let root = s.info.root;
    check!(
        s,
        root != 0 && root != ERR,
        "peer(0) gives the root: {root:#x}"
    );
    check_eq!(s, s.one("finddevice", &[S("/")]), root, "finddevice(/)");
    check_eq!(s, s.one("parent", &[N(root)]), 0, "parent(root)");
    check_eq!(s, s.one("peer", &[N(root)]), 0, "peer(root)");
    check_eq!(
        s,
        s.package_to_path(root).as_deref(),
        Some("/"),
        "package-to-path(root)"
    );
    let all = nodes(s);
    check!(
        s,
        all.len() >= 5 && all.len() < MAX_NODES,
        "{} nodes reached with child/peer",
        all.len()
    );
    let mut seen = Vec::new();
    let mut props = 0;
    for (i, &ph) in all.iter().enumerate() {
        check!(s, !seen.contains(&ph), "phandle {ph:#x} reached twice");
        seen.push(ph);
        let mut c = s.one("child", &[N(ph)]);
        let mut kids = 0;
        while c != 0 && c != ERR && kids < 8 {
            check_eq!(s, s.one("parent", &[N(c)]), ph, "parent(child({ph:#x}))");
            c = s.one("peer", &[N(c)]);
            kids += 1;
        }
        let Some(path) = s.package_to_path(ph) else {
            check!(s, false, "package-to-path({ph:#x})");
            continue;
        };
        check!(s, path.starts_with('/'), "path {path:?} is absolute");
        check_eq!(
            s,
            s.one("finddevice", &[S(&path)]),
            ph,
            "finddevice({path})"
        );
        if i < 6 {
            short_buffers(s, ph, &path);
        }
        let names = prop_names(s, ph);
        check!(
            s,
            names.iter().any(|n| n == "name"),
            "{path} has a name property"
        );
        if i < 4 {
            check_eq!(
                s,
                prop_names(s, ph),
                names,
                "nextprop gives the same list twice on {}",
                path
            );
        }
        for name in &names {
            props += 1;
            let len = s.one("getproplen", &[N(ph), S(name)]);
            check!(
                s,
                len != ERR && (len as u64) < arena::BUF_SIZE,
                "getproplen({path}, {name}) = {len:#x}"
            );
            if len == ERR || len as u64 >= arena::BUF_SIZE {
                continue;
            }
            let buf = s.at(arena::BUF);
            s.fill(buf, len as usize + 8, 0xa5);
            let got = s.one("getprop", &[N(ph), S(name), N(buf as u32), N(len + 8)]);
            check_eq!(s, got, len, "getprop({path}, {name}) length");
            let tail = s.rd(buf + len as u64, 8).unwrap_or_default();
            check!(
                s,
                tail.iter().all(|b| *b == 0xa5),
                "getprop({path}, {name}) wrote past the value"
            );
            if name == "name" {
                let v = s.cstr(buf, len as usize);
                let last = path.rsplit('/').next().unwrap_or("");
                let unit = last.split('@').next().unwrap_or("");
                check!(
                    s,
                    ph == root || v == unit,
                    "{path}: name {v:?} matches the path"
                );
            }
        }
    }
    s.info.props = props;
    check!(s, props > 50, "{props} properties read");
}

/// Buffers shorter than the value: the full length is returned, nothing is
/// written past the buffer (linux-expectations.md §1.3 package-to-path).
fn short_buffers<M: Machine + ?Sized>(s: &mut Suite<M>, ph: u32, path: &str) {
    let buf = s.at(arena::BUF);
    s.fill(buf, 64, 0xa5);
    let n = s.one("package-to-path", &[N(ph), N(buf as u32), N(1)]);
    check_eq!(
        s,
        n,
        path.len() as u32,
        "package-to-path({path}) with a 1-byte buffer"
    );
    let v = s.rd(buf, 64).unwrap_or_default();
    check!(
        s,
        v[1..].iter().all(|b| *b == 0xa5),
        "package-to-path({path}) wrote past a 1-byte buffer"
    );
    s.fill(buf, 64, 0xa5);
    let got = s.one("getprop", &[N(ph), S("name"), N(buf as u32), N(2)]);
    let len = s.one("getproplen", &[N(ph), S("name")]);
    check_eq!(
        s,
        got,
        len,
        "getprop({path}, name) with a 2-byte buffer returns the full length"
    );
    let v = s.rd(buf, 64).unwrap_or_default();
    check!(
        s,
        v[2..].iter().all(|b| *b == 0xa5),
        "getprop({path}, name) wrote past a 2-byte buffer"
    );
    let zero = s.one("getprop", &[N(ph), S("name"), N(buf as u32), N(0)]);
    check_eq!(s, zero, len, "getprop({path}, name) with a 0-byte buffer");
}

/// The nodes and properties a pseries OS needs (linux-expectations.md §1.5,
/// §1.8; QEMU pseries contract §1.4).
pub fn platform_nodes<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let root = s.info.root;
    check_eq!(
        s,
        s.getprop_str(root, "device_type").as_deref(),
        Some("chrp"),
        "root device_type"
    );
    let chosen = s.info.chosen;
    check!(s, chosen != 0, "/chosen exists");
    check!(
        s,
        s.stdout != 0 && s.stdout != ERR,
        "/chosen/stdout is an ihandle: {:#x}",
        s.stdout
    );
    check!(
        s,
        s.vtermno != 0,
        "stdout's package has a vty reg: {:#x}",
        s.vtermno
    );
    let out_pkg = s.one("instance-to-package", &[N(s.stdout)]);
    if let Some(stdin) = s.getprop_u32(chosen, "stdin") {
        check_eq!(
            s,
            s.one("instance-to-package", &[N(stdin)]),
            out_pkg,
            "stdin and stdout are the same vty"
        );
    } else {
        check!(s, false, "/chosen/stdin exists");
    }
    match s.getprop_u32(chosen, "cpu") {
        Some(cpu) => {
            let pkg = s.one("instance-to-package", &[N(cpu)]);
            check!(s, pkg != ERR, "/chosen/cpu is an ihandle");
            check_eq!(
                s,
                s.getprop_str(pkg, "device_type").as_deref(),
                Some("cpu"),
                "/chosen/cpu's package"
            );
        }
        None => {
            check!(s, false, "/chosen/cpu exists");
        }
    }
    let rtas = s.info.rtas;
    check!(s, rtas != 0, "/rtas exists");
    let size = s.getprop_u32(rtas, "rtas-size").unwrap_or(0);
    check!(
        s,
        (20..1 << 24).contains(&size),
        "/rtas/rtas-size = {size:#x}"
    );
    for t in [
        "power-off",
        "ibm,os-term",
        "nvram-fetch",
        "get-time-of-day",
        "system-reboot",
    ] {
        check!(s, s.info.token(t).is_some(), "/rtas has the {t} token");
    }
    let funcs = s
        .getprop(rtas, "ibm,hypertas-functions")
        .unwrap_or_default();
    check!(
        s,
        funcs.split(|b| *b == 0).any(|f| f == b"hcall-tce"),
        "ibm,hypertas-functions lists hcall-tce"
    );
    check!(s, !s.info.cpus.is_empty(), "at least one cpu node");
    check!(
        s,
        s.info.timebase_hz > 1_000_000,
        "timebase-frequency {}",
        s.info.timebase_hz
    );
    check!(s, !s.info.memory_nodes.is_empty(), "memory nodes exist");
    let avail = s.available();
    check!(s, !avail.is_empty(), "/memory available is present");
    let (ram, top) = (s.info.ram.clone(), s.info.ram_top);
    for (b, sz) in &avail {
        let inside = ram.iter().any(|(rb, rs)| *b >= *rb && b + sz <= rb + rs);
        check!(s, inside, "available {b:#x}+{sz:#x} lies in RAM");
    }
    check!(s, !s.any_available(0, 0x100), "page 0 is not available");
    check!(s, top >= 64 << 20, "RAM top {top:#x}");
    for p in s.info.phbs.clone() {
        check!(
            s,
            p.liobn != 0 && p.win_size != 0,
            "{}: ibm,dma-window liobn {:#x} size {:#x}",
            p.path,
            p.liobn,
            p.win_size
        );
        check!(s, p.buid != 0, "{}: BUID from reg", p.path);
    }
}
