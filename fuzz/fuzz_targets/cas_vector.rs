//! `ibm,client-architecture-support` handling: the architecture vector
//! parsed from arbitrary client memory (anywhere, including against the end
//! of RAM), checked against an arbitrary `ibm,arch-vec-5-platform-support`,
//! and an arbitrary platform reply (header + tree) unflattened and merged
//! into QEMU's live tree, as the firmware does after H_CAS.  Invariants: no
//! panic; a parsed vector's length covers what was read; a refused request
//! is one QEMU would exit on or the platform does not support; a merged
//! tree flattens, unflattens and keeps the phandle of `/chosen` and the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::cif::cas::{
    reply_fdt, ArchVector, CasError, PlatformSupport, OV5_BOTH, OV5_INTC, OV5_MMU,
};
use papr_fw::devtree::Tree;
use papr_fw::memory::{FakeMemory, Memory};

const LIVE: &[u8] = include_bytes!("../../qemu-tests/trees/qemu-7.2-kernel.dtb");

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let split = u16::from_be_bytes([data[0], data[1]]) as usize % data.len().max(1);
    let support_len = (data[2] % 16) as usize;
    let place = data[3];
    let rest = &data[4..];
    let (vec_bytes, tail) = rest.split_at(split.min(rest.len()));
    let (support, reply) = tail.split_at(support_len.min(tail.len()));

    // The vector in client memory: at the start of a region, or ending
    // exactly at the end of RAM.
    let region = 0x1000u64;
    let size = 0x2000usize;
    let mut mem = FakeMemory::new().with_region(region, size);
    let at = if place & 1 == 0 {
        region
    } else {
        region + (size - vec_bytes.len().min(size)) as u64
    };
    let _ = mem.write(at, &vec_bytes[..vec_bytes.len().min(size)]);
    let sup = PlatformSupport::from_property(support);
    match ArchVector::parse(&mem, at) {
        Ok(v) => {
            assert!(
                at + v.len <= region + size as u64,
                "parsed past the end of memory"
            );
            assert!(v.pvrs.len() <= papr_fw::cif::cas::MAX_PVR_PAIRS);
            let _ = (
                v.wants_radix(),
                v.wants_xive(),
                v.byte(5, 0),
                v.byte(usize::MAX, usize::MAX),
            );
            match v.check(&sup) {
                Ok(()) => {
                    assert!(v.vectors.len() >= 5);
                    assert_eq!(v.byte(5, OV5_MMU) & OV5_BOTH, 0);
                    assert_eq!(v.byte(5, OV5_INTC) & OV5_BOTH, 0);
                }
                Err(CasError::Refused(_)) | Err(CasError::MissingVector(_)) => {}
                Err(e) => panic!("check gave {e:?}"),
            }
        }
        Err(CasError::BadAddress(_)) => {}
        Err(e) => panic!("parse gave {e:?}"),
    }

    // The platform's reply, merged into the live tree.
    let Ok(fdt) = reply_fdt(reply) else { return };
    let Ok(partial) = Tree::from_fdt(fdt) else {
        return;
    };
    let mut live = Tree::from_fdt(LIVE).unwrap();
    let chosen = live.find("/chosen").unwrap();
    let (chosen_ph, root_ph) = (live.phandle(chosen), live.phandle(live.root()));
    if live.merge(&partial).is_ok() {
        let explicit = partial.find("/chosen").is_some_and(|c| {
            partial.prop(c, "phandle").is_some() || partial.prop(c, "linux,phandle").is_some()
        });
        if !explicit {
            assert_eq!(
                live.find("/chosen").and_then(|c| live.phandle(c)),
                chosen_ph,
                "/chosen lost its phandle"
            );
        }
        if partial.prop(partial.root(), "phandle").is_none()
            && partial.prop(partial.root(), "linux,phandle").is_none()
        {
            assert_eq!(live.phandle(live.root()), root_ph);
        }
        let flat = live.to_fdt();
        let again = Tree::from_fdt(&flat).expect("merged tree flattens to a valid blob");
        assert_eq!(again.to_fdt(), flat);
        let _ = papr_fw::devtree::dma::DmaModel::from_tree(&live);
    }
});
