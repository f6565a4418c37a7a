//! `ibm,client-architecture-support` on the root instance
//! (linux-expectations.md §1.4, §1.7; QEMU pseries contract §2.1): requests
//! QEMU would answer by exiting or failing are refused and reported, a
//! Linux-shaped vector succeeds and the tree afterwards carries the
//! negotiated `/chosen/ibm,architecture-vec-5` with everything papr-fw
//! presents still in place.

use crate::{arena, check, check_eq, Machine, Suite, ERR, N, S};
use alloc::vec::Vec;

/// OV5 byte numbers (1-based, as LoPAPR, QEMU and Linux count them).
pub const OV5_INTC: usize = 23;
pub const OV5_MMU: usize = 24;
pub const OV5_RADIX_EXT: usize = 26;

/// What the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub mmu: u8,
    pub intc: u8,
    pub gtse: bool,
}

/// An architecture vector: PVR pairs, the terminator, the vector count
/// byte, then each option vector with its length byte.
pub fn vector(pvrs: &[(u32, u32)], terminate: bool, count: u8, ovs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for (m, p) in pvrs {
        v.extend_from_slice(&m.to_be_bytes());
        v.extend_from_slice(&p.to_be_bytes());
    }
    if terminate {
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&0xffff_ffffu32.to_be_bytes());
    }
    v.push(count);
    for ov in ovs {
        v.push((ov.len() - 1) as u8);
        v.extend_from_slice(ov);
    }
    v
}

/// Linux's option vectors 1–6 with `req` in OV5.
pub fn linux_ovs(req: Request) -> Vec<Vec<u8>> {
    let mut ov2 = alloc::vec![0u8; 33];
    ov2[0] = 0x20; // real mode
    ov2[23..27].copy_from_slice(&512u32.to_be_bytes());
    let mut ov5 = alloc::vec![0u8; 26];
    ov5[1] = 0xc0; // LPAR, SPLPAR
    ov5[OV5_INTC - 1] = req.intc;
    ov5[OV5_MMU - 1] = req.mmu;
    if req.gtse {
        ov5[OV5_RADIX_EXT - 1] = 0x40;
    }
    alloc::vec![
        alloc::vec![0xff, 0xc0],
        ov2,
        alloc::vec![0, 0xe0],
        alloc::vec![0, 10],
        ov5,
        alloc::vec![0, 0, 2],
    ]
}

/// Choose as Linux does from `/chosen/ibm,arch-vec-5-platform-support`.
pub fn choose(support: &[u8]) -> Request {
    let get = |i: u8| support.chunks_exact(2).find(|p| p[0] == i).map(|p| p[1]);
    let mmu = match get(OV5_MMU as u8).map(|v| v & 0xc0) {
        Some(0x40) | Some(0x80) | Some(0xc0) => 0x40,
        _ => 0,
    };
    let intc = match get(OV5_INTC as u8).map(|v| v & 0xc0) {
        Some(0x40) | Some(0x80) => 0x40,
        _ => 0,
    };
    let gtse = mmu == 0x40 && get(OV5_RADIX_EXT as u8).is_some_and(|v| v & 0x40 != 0);
    Request { mmu, intc, gtse }
}

fn cas_call<M: Machine + ?Sized>(s: &mut Suite<M>, ih: u32, vec_at: u32) -> crate::Ret {
    s.call(
        "call-method",
        &[S("ibm,client-architecture-support"), N(ih), N(vec_at)],
        2,
    )
}

/// Whether a CAS call was refused (by the method or its status).
fn refused(r: &crate::Ret) -> bool {
    r.r3 != 0 || r.get(0) != 0 || r.get(1) != 0
}

pub fn run<M: Machine + ?Sized>(s: &mut Suite<M>) {
    let chosen = s.info.chosen;
    let support = s
        .getprop(chosen, "ibm,arch-vec-5-platform-support")
        .unwrap_or_default();
    check!(
        s,
        !support.is_empty(),
        "/chosen/ibm,arch-vec-5-platform-support is present"
    );
    let req = choose(&support);
    let cpu = s.info.cpus.first().map(|c| c.0).unwrap_or(0);
    let pvr = s.getprop_u32(cpu, "cpu-version").unwrap_or(0);
    check!(s, pvr != 0, "the boot CPU has a cpu-version (PVR)");
    let pvrs = [
        (0xffff_ffff, pvr),
        (0xffff_ffff, 0x0f00_0006),
        (0xffff_ffff, 0x0f00_0005),
        (0xffff_ffff, 0x0f00_0004),
    ];
    let root_ih = s.one("open", &[S("/")]);
    check!(s, root_ih != 0 && root_ih != ERR, "open(/) for CAS");
    let vec_at = s.at(arena::CAS);

    // Requests papr-fw must refuse (QEMU would exit on some of them), and
    // vectors that are not there.
    let mut hostile: Vec<(&str, Vec<u8>)> = alloc::vec![
        (
            "hash and radix both",
            vector(&pvrs, true, 5, &linux_ovs(Request { mmu: 0x80, ..req }))
        ),
        (
            "both interrupt modes",
            vector(&pvrs, true, 5, &linux_ovs(Request { intc: 0x80, ..req }))
        ),
        (
            "only option vector 1",
            vector(&pvrs, true, 0, &linux_ovs(req)[..1])
        ),
        (
            "4 option vectors",
            vector(&pvrs, true, 3, &linux_ovs(req)[..4])
        ),
        (
            "no PVR the CPU matches",
            vector(&[(0xffff_ffff, 0x1234_5678)], true, 5, &linux_ovs(req))
        ),
    ];
    let endless: Vec<(u32, u32)> = (0..600).map(|_| (0xffff_ffff, 0x1234_5678)).collect();
    hostile.push((
        "600 PVR pairs, no terminator",
        vector(&endless, false, 5, &linux_ovs(req)),
    ));
    let get = |i: u8| {
        support
            .chunks_exact(2)
            .find(|p| p[0] == i)
            .map(|p| p[1] & 0xc0)
    };
    if get(OV5_MMU as u8) == Some(0x00) {
        hostile.push((
            "radix on a hash-only platform",
            vector(&pvrs, true, 5, &linux_ovs(Request { mmu: 0x40, ..req })),
        ));
    }
    if get(OV5_INTC as u8) == Some(0x00) {
        hostile.push((
            "XIVE on a XICS-only platform",
            vector(&pvrs, true, 5, &linux_ovs(Request { intc: 0x40, ..req })),
        ));
    }
    for (what, v) in hostile {
        s.wr(vec_at, &v);
        let r = cas_call(s, root_ih, vec_at as u32);
        check!(s, refused(&r), "CAS with {what} is refused: {r:x?}");
    }
    let mut bad = crate::hostile::outside_ram(s);
    bad.push((s.info.ram_top.min(1 << 32) - 8) as u32);
    for p in bad {
        let r = cas_call(s, root_ih, p);
        check!(
            s,
            refused(&r),
            "CAS with the vector at {p:#x} is refused: {r:x?}"
        );
    }
    check_eq!(
        s,
        s.one("peer", &[N(0)]),
        s.info.root,
        "the firmware answers after refused CAS calls"
    );

    // Linux's request.
    s.wr(vec_at, &vector(&pvrs, true, 5, &linux_ovs(req)));
    let r = cas_call(s, root_ih, vec_at as u32);
    check!(
        s,
        r.r3 == 0 && r.get(0) == 0 && r.get(1) == 0,
        "CAS with Linux's vector ({req:x?}): {r:x?}"
    );
    s.none("close", &[N(root_ih)]);
    let chosen = s.finddevice("/chosen").unwrap_or(0);
    check_eq!(
        s,
        chosen,
        s.info.chosen,
        "/chosen keeps its phandle across CAS"
    );
    match s.getprop(chosen, "ibm,architecture-vec-5") {
        Some(v) => {
            let radix = v.get(OV5_MMU).is_some_and(|b| b & 0x40 != 0);
            check_eq!(
                s,
                radix,
                req.mmu == 0x40,
                "the negotiated MMU in ibm,architecture-vec-5"
            );
            let xive = v.get(OV5_INTC).is_some_and(|b| b & 0x40 != 0);
            check_eq!(
                s,
                xive,
                req.intc == 0x40,
                "the negotiated interrupt mode in ibm,architecture-vec-5"
            );
        }
        None => {
            check!(s, false, "/chosen/ibm,architecture-vec-5 after CAS");
        }
    }
    // What papr-fw presents survives the merge of QEMU's tree.
    check_eq!(
        s,
        s.getprop_u32(chosen, "stdout"),
        Some(s.stdout),
        "/chosen/stdout after CAS"
    );
    let bootargs = s.getprop_str(chosen, "bootargs").unwrap_or_default();
    check_eq!(
        s,
        bootargs,
        s.info.bootargs.clone(),
        "/chosen/bootargs after CAS"
    );
    let rtas = s.info.rtas;
    let size = s.getprop_u32(rtas, "rtas-size").unwrap_or(0);
    check!(s, size >= 20, "/rtas/rtas-size after CAS: {size:#x}");
    check!(
        s,
        !s.any_available(s.entry.cif & !0xfff, 0x1000),
        "firmware memory still not available after CAS"
    );
    let (ib, isz) = s.m.image();
    check!(
        s,
        !s.any_available(ib, isz),
        "the client's image still not available after CAS"
    );
    let nodes = crate::tree::nodes(s);
    let mut ok = 0;
    for ph in nodes.iter().take(64) {
        if let Some(p) = s.package_to_path(*ph) {
            if s.one("finddevice", &[S(&p)]) == *ph {
                ok += 1;
            }
        }
    }
    check_eq!(s, ok, nodes.len().min(64), "paths round-trip after CAS");
    crate::hostile::still_answers(s);
}
