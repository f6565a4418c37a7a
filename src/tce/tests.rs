//! Host tests of the TCE layer against the fake platform, whose TCE tables
//! follow QEMU 7.2 (hw/ppc/spapr_iommu.c): indirect lists ≤ 512 entries from a
//! 4 KiB-aligned page, out-of-window entries refused with H_PARAMETER, multi-
//! entry calls stopping at the first failing entry.

use super::*;
use crate::fake::{Call, FakePhb, FakePlatform};
use crate::hcall::{op, rc};
use crate::memory::Memory;
use crate::rtas;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

const DEF: u32 = 0x8000_0000;
const GIB: u64 = 1 << 30;
const PUT: u64 = op::H_PUT_TCE;
const IND: u64 = op::H_PUT_TCE_INDIRECT;
const STUFF: u64 = op::H_STUFF_TCE;

/// 64 MiB machine, one PHB, the manager knowing its default 1 GiB window.
fn setup() -> (FakePlatform, TceManager) {
    let p = FakePlatform::new(64 << 20);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(DEF, 0, GIB, 12).unwrap())
        .unwrap();
    (p, m)
}

/// The TCE hypercalls made since the last call, as (opcode, args, rc).
fn log(p: &mut FakePlatform) -> Vec<(u64, Vec<u64>, i64)> {
    let v = p
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Hcall { opcode, args, rc } if [PUT, IND, STUFF].contains(opcode) => {
                Some((*opcode, args.clone(), *rc))
            }
            _ => None,
        })
        .collect();
    p.calls.clear();
    v
}

/// Opcode and entry count of each call (1 for H_PUT_TCE).
fn shape(calls: &[(u64, Vec<u64>, i64)]) -> Vec<(u64, u64)> {
    calls
        .iter()
        .map(|(o, a, _)| (*o, if *o == PUT { 1 } else { a[3] }))
        .collect()
}

fn mapped(p: &mut FakePlatform, liobn: u32) -> usize {
    p.tce_table(liobn).unwrap().mapped()
}

fn tce_at(p: &mut FakePlatform, liobn: u32, ioba: u64) -> u64 {
    p.tce_table(liobn).unwrap().get(ioba).unwrap()
}

/// `ibm,create-pe-dma-window` on PHB 0; returns (liobn, bus address).
fn create_ddw(p: &mut FakePlatform, page_shift: u32, window_shift: u32) -> (u32, u64) {
    let token = p.rtas_tokens["ibm,create-pe-dma-window"];
    let block = p.scratch();
    let mut rets = [0u32; 4];
    let args = [0, 0x0800_0000, 0x2000_0000, page_shift, window_shift];
    rtas::call(p, block, token, &args, &mut rets).unwrap();
    assert_eq!(rets[0], 0, "create-pe-dma-window");
    (rets[1], ((rets[2] as u64) << 32) | rets[3] as u64)
}

// ---------------------------------------------------------------- allocator

#[test]
fn window_at_bus_zero_never_hands_out_address_zero() {
    let (mut p, mut m) = setup();
    let w = m.window(DEF).unwrap();
    assert_eq!(w.entries(), 262144);
    assert_eq!(w.free_pages(), 262143);
    assert_eq!(w.reserved_pages(), 1);
    let a = m
        .map(&mut p, DEF, 0x20_0000, 0x1000, Perm::ReadWrite)
        .unwrap();
    assert_eq!(a.ioba, 0x1000);
    // A window elsewhere starts handing out at its base.
    let mut w = TceWindow::new(7, 0x1000_0000, 1 << 20, 12).unwrap();
    assert_eq!(w.reserved_pages(), 0);
    assert_eq!(w.alloc(1), Ok(0));
    assert_eq!(w.ioba_of(0), 0x1000_0000);
}

#[test]
fn window_geometry_is_checked() {
    let bad = |base, size, shift| TceWindow::new(1, base, size, shift).unwrap_err();
    assert!(matches!(bad(0, GIB, 11), TceError::BadWindow { .. }));
    assert!(matches!(bad(0, GIB, 64), TceError::BadWindow { .. }));
    assert!(matches!(bad(0, 0, 12), TceError::BadWindow { .. }));
    assert!(matches!(bad(0, 0x1800, 12), TceError::BadWindow { .. }));
    assert!(matches!(
        bad(0x8000, 1 << 20, 16),
        TceError::BadWindow { .. }
    ));
    assert!(matches!(
        bad(u64::MAX - 0xfff, 0x2000, 12),
        TceError::BadWindow { .. }
    ));
    // A window ending exactly at 2^64 is fine, and so is its last page.
    let mut w = TceWindow::new(1, 0u64.wrapping_sub(GIB), GIB, 12).unwrap();
    assert!(w.contains(u64::MAX));
    w.reserve(0, u64::MAX - 0xfff).unwrap();
    assert_eq!(w.free_pages(), 1);
    let first = w.alloc(1).unwrap();
    assert_eq!(w.ioba_of(first), u64::MAX - 0xfff);
    let e = format!("{}", bad(0, GIB, 11));
    assert_eq!(
        e,
        "DMA window LIOBN 0x1 unusable: page size below 4 KiB or above 2^63"
    );
}

#[test]
fn allocator_exhausts_fragments_and_merges() {
    // 16 pages at bus 0: 15 usable.
    let mut p = FakePlatform::new(64 << 20);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(DEF, 0, 16 << 12, 12).unwrap())
        .unwrap();
    let maps: Vec<Mapping> = (0..3)
        .map(|i| {
            m.map(&mut p, DEF, 0x10_0000 * i, 5 << 12, Perm::Read)
                .unwrap()
        })
        .collect();
    assert_eq!(
        maps.iter().map(|m| m.ioba).collect::<Vec<_>>(),
        [0x1000, 0x6000, 0xb000]
    );
    log(&mut p);
    assert_eq!(
        m.map(&mut p, DEF, 0, 1, Perm::Read),
        Err(TceError::NoSpace {
            liobn: DEF,
            pages: 1
        })
    );
    assert!(log(&mut p).is_empty(), "no hypercall without bus space");
    m.unmap_mapping(&mut p, &maps[1]).unwrap();
    assert_eq!(m.window(DEF).unwrap().free_pages(), 5);
    assert!(matches!(
        m.map(&mut p, DEF, 0, 6 << 12, Perm::Read),
        Err(TceError::NoSpace { pages: 6, .. })
    ));
    // Unaligned: 5 pages of bytes spanning 6 pages do not fit either.
    assert!(matches!(
        m.map(&mut p, DEF, 0x800, 5 << 12, Perm::Read),
        Err(TceError::NoSpace { pages: 6, .. })
    ));
    let again = m.map(&mut p, DEF, 0x80_0000, 5 << 12, Perm::Read).unwrap();
    assert_eq!(again.ioba, 0x6000, "the hole is reused");
    for a in [maps[0], maps[2], again] {
        m.unmap_mapping(&mut p, &a).unwrap();
    }
    let w = m.window(DEF).unwrap();
    assert_eq!(
        (w.free_pages(), w.free_extents(), w.live_mappings()),
        (15, 1, 0)
    );
    assert_eq!(mapped(&mut p, DEF), 0);
}

#[test]
fn reserved_bus_ranges_are_skipped_and_clipped() {
    let (mut p, mut m) = setup();
    let w = m.window_mut(DEF).unwrap();
    // Clipped at both ends of the window; below it, nothing.
    w.reserve(0, 0x10_0000).unwrap();
    w.reserve(GIB - 0x2000, 0x10_0000).unwrap();
    w.reserve(GIB, 0x1000).unwrap();
    w.reserve(5, 0).unwrap();
    assert_eq!(w.reserved_pages(), 256 + 2);
    let a = m.map(&mut p, DEF, 0x5000, 0x1000, Perm::Write).unwrap();
    assert_eq!(a.ioba, 0x10_0000);
    assert!(matches!(
        m.window_mut(DEF).unwrap().reserve(0x10_0000, 1),
        Err(TceError::InUse { .. })
    ));
}

#[test]
fn huge_ddw_costs_extents_not_pages() {
    let mut p = FakePlatform::new(64 << 20);
    // 2^40 bytes of 64 KiB pages at 1<<59 (default window still active).
    let (liobn, bus) = create_ddw(&mut p, 16, 40);
    assert_eq!((liobn, bus), (0x8000_0001, 1 << 59));
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(liobn, bus, 1 << 40, 16).unwrap())
        .unwrap();
    let w = m.window(liobn).unwrap();
    assert_eq!(
        (w.entries(), w.free_pages(), w.free_extents()),
        (1 << 24, 1 << 24, 1)
    );
    let a = m.map(&mut p, liobn, 0, GIB, Perm::ReadWrite).unwrap();
    assert_eq!((a.ioba, a.pages), (1 << 59, 16384));
    assert_eq!(shape(&log(&mut p)), vec![(IND, 512); 32]);
    assert_eq!(m.window(liobn).unwrap().free_extents(), 1);
    assert_eq!(mapped(&mut p, liobn), 16384);
    assert_eq!(
        tce_at(&mut p, liobn, (1 << 59) + GIB - 1),
        (GIB - 0x10000) | 3
    );
}

// ---------------------------------------------------------------- batching

#[test]
fn one_page_is_one_put_tce_and_one_stuff() {
    let (mut p, mut m) = setup();
    let a = m
        .map(&mut p, DEF, 0x20_0000, 0x1000, Perm::ReadWrite)
        .unwrap();
    assert_eq!(log(&mut p), [(PUT, vec![DEF as u64, 0x1000, 0x20_0003], 0)]);
    assert_eq!(m.list_page(), None, "no list page for single pages");
    m.unmap(&mut p, DEF, a.ioba, a.len).unwrap();
    assert_eq!(log(&mut p), [(STUFF, vec![DEF as u64, 0x1000, 0, 1], 0)]);
    assert_eq!(mapped(&mut p, DEF), 0);
}

#[test]
fn full_batch_of_512_is_one_indirect_call_from_an_aligned_be_list() {
    let (mut p, mut m) = setup();
    let a = m
        .map(&mut p, DEF, 0x40_0000, 512 << 12, Perm::Read)
        .unwrap();
    let calls = log(&mut p);
    let list = m.list_page().unwrap();
    assert_eq!(list & 0xfff, 0);
    assert_eq!(calls, [(IND, vec![DEF as u64, 0x1000, list, 512], 0)]);
    // The list holds big-endian TCEs: byte 7 of entry 1 is the permission.
    assert_eq!(p.mem.read_be64(list + 8).unwrap(), 0x40_1001);
    assert_eq!(p.mem.read_u8(list + 15).unwrap(), 0x01);
    assert_eq!(mapped(&mut p, DEF), 512);
    assert_eq!(tce_at(&mut p, DEF, 0x1000 + (511 << 12)), 0x5f_f001);
    m.unmap_mapping(&mut p, &a).unwrap();
    assert_eq!(log(&mut p), [(STUFF, vec![DEF as u64, 0x1000, 0, 512], 0)]);
    let c = m.counters();
    assert_eq!(
        (
            c.put_tce_indirect,
            c.stuff_tce,
            c.tces_mapped,
            c.tces_cleared
        ),
        (1, 1, 512, 512)
    );
}

#[test]
fn batches_split_at_512_and_a_single_tail_uses_put_tce() {
    let (mut p, mut m) = setup();
    type Shape = &'static [(u64, u64)];
    let cases: [(u64, Shape, Shape); 4] = [
        (2, &[(IND, 2)], &[(STUFF, 2)]),
        (513, &[(IND, 512), (PUT, 1)], &[(STUFF, 512), (STUFF, 1)]),
        (
            1025,
            &[(IND, 512), (IND, 512), (PUT, 1)],
            &[(STUFF, 512), (STUFF, 512), (STUFF, 1)],
        ),
        (
            1030,
            &[(IND, 512), (IND, 512), (IND, 6)],
            &[(STUFF, 512), (STUFF, 512), (STUFF, 6)],
        ),
    ];
    let mut list = None;
    for (pages, map_shape, unmap_shape) in cases {
        let a = m
            .map(&mut p, DEF, 0x100_0000, pages << 12, Perm::ReadWrite)
            .unwrap();
        let calls = log(&mut p);
        assert_eq!(shape(&calls), map_shape, "map of {pages} pages");
        // Consecutive, page-aligned bus addresses; the one list page reused.
        let mut at = a.ioba;
        for (o, args, rc) in &calls {
            assert_eq!((args[0], args[1], *rc), (DEF as u64, at, 0));
            if *o == IND {
                assert_eq!(*list.get_or_insert(args[2]), args[2]);
                at += args[3] << 12;
            } else {
                assert_eq!(args[2], (0x100_0000 + (at - a.ioba)) | 3);
                at += 0x1000;
            }
        }
        assert_eq!(at, a.ioba + (pages << 12));
        assert_eq!(mapped(&mut p, DEF), pages as usize);
        m.unmap_mapping(&mut p, &a).unwrap();
        assert_eq!(shape(&log(&mut p)), unmap_shape, "unmap of {pages} pages");
        assert_eq!(mapped(&mut p, DEF), 0);
    }
}

#[test]
fn unaligned_buffers_cover_every_touched_page() {
    let (mut p, mut m) = setup();
    // 0x2000 bytes from 0x123456 touch pages 0x123000..0x125fff.
    let a = m.map(&mut p, DEF, 0x12_3456, 0x2000, Perm::Write).unwrap();
    assert_eq!((a.ioba, a.pages, a.len), (0x1456, 3, 0x2000));
    assert_eq!(shape(&log(&mut p)), [(IND, 3)]);
    let list = m.list_page().unwrap();
    let tces: Vec<u64> = (0..3)
        .map(|i| p.mem.read_be64(list + 8 * i).unwrap())
        .collect();
    assert_eq!(tces, [0x12_3002, 0x12_4002, 0x12_5002]);
    // Two bytes straddling a page boundary need two pages; one byte one.
    let b = m.map(&mut p, DEF, 0xfff, 2, Perm::Read).unwrap();
    assert_eq!((b.ioba, b.pages), (0x4fff, 2));
    let c = m.map(&mut p, DEF, 0x1fff, 1, Perm::Read).unwrap();
    assert_eq!((c.ioba, c.pages), (0x6fff, 1));
    assert_eq!(tce_at(&mut p, DEF, 0x6000), 0x1001);
    log(&mut p);
    // Unmap wants the mapping as returned.
    assert_eq!(
        m.unmap(&mut p, DEF, 0x1000, 0x2000),
        Err(TceError::NotMapped {
            liobn: DEF,
            ioba: 0x1000,
            len: 0x2000
        })
    );
    assert!(matches!(
        m.unmap(&mut p, DEF, a.ioba, 0x3000),
        Err(TceError::NotMapped { .. })
    ));
    assert!(matches!(
        m.unmap(&mut p, DEF, GIB + 0x456, 1),
        Err(TceError::NotMapped { .. })
    ));
    assert!(matches!(
        m.unmap(&mut p, DEF, a.ioba, 0),
        Err(TceError::NotMapped { .. })
    ));
    assert!(log(&mut p).is_empty());
    for x in [a, b, c] {
        m.unmap_mapping(&mut p, &x).unwrap();
    }
    assert_eq!(mapped(&mut p, DEF), 0);
}

#[test]
fn ddw_with_64k_and_16m_pages_at_1_shl_59() {
    let mut p = FakePlatform::new(64 << 20);
    let (l64, bus) = create_ddw(&mut p, 16, 40);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(l64, bus, 1 << 40, 16).unwrap())
        .unwrap();
    // 0x20000 bytes at 0x12345 touch the 64 KiB pages at 0x10000..0x3ffff;
    // no page of a window away from 0 is withheld.
    let a = m
        .map(&mut p, l64, 0x1_2345, 0x2_0000, Perm::ReadWrite)
        .unwrap();
    assert_eq!((a.ioba, a.pages), ((1 << 59) + 0x2345, 3));
    let calls = log(&mut p);
    assert_eq!(shape(&calls), [(IND, 3)]);
    assert_eq!(calls[0].1[1], 1 << 59);
    for i in 0..3u64 {
        assert_eq!(
            tce_at(&mut p, l64, (1 << 59) + (i << 16)),
            ((i + 1) << 16) | 3
        );
    }
    m.unmap_mapping(&mut p, &a).unwrap();
    assert_eq!(log(&mut p), [(STUFF, vec![l64 as u64, 1 << 59, 0, 3], 0)]);

    // 16 MiB pages: a 5-byte buffer in the fourth page is one H_PUT_TCE.
    let mut p = FakePlatform::new(64 << 20);
    let (l16, bus) = create_ddw(&mut p, 24, 36);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(l16, bus, 1 << 36, 24).unwrap())
        .unwrap();
    let b = m.map(&mut p, l16, (3 << 24) + 5, 5, Perm::Read).unwrap();
    assert_eq!(b.ioba, (1 << 59) + 5);
    assert_eq!(
        log(&mut p),
        [(PUT, vec![l16 as u64, 1 << 59, (3 << 24) | 1], 0)]
    );
    let c = m.map(&mut p, l16, 0, 3 << 24, Perm::Read).unwrap();
    assert_eq!((c.ioba, c.pages), ((1 << 59) + (1 << 24), 3));
    assert_eq!(m.unmap_all(&mut p).entries, 4);
    assert_eq!(mapped(&mut p, l16), 0);
}

#[test]
fn window_filled_to_its_last_page() {
    let (mut p, mut m) = setup();
    // 262143 pages: 511 full batches and one of 511.
    let a = m
        .map(&mut p, DEF, 0, GIB - 0x1000, Perm::ReadWrite)
        .unwrap();
    assert_eq!((a.ioba, a.pages), (0x1000, 262143));
    let s = shape(&log(&mut p));
    assert_eq!(s.len(), 512);
    assert_eq!(s[511], (IND, 511));
    assert_eq!(mapped(&mut p, DEF), 262143);
    assert_eq!(tce_at(&mut p, DEF, GIB - 0x1000), (GIB - 0x2000) | 3);
    assert!(matches!(
        m.map(&mut p, DEF, 0, 1, Perm::Read),
        Err(TceError::NoSpace { .. })
    ));
    let s = m.unmap_all(&mut p);
    assert_eq!(
        (s.mappings, s.entries, s.hcalls, s.failures),
        (1, 262143, 512, 0)
    );
    assert_eq!(mapped(&mut p, DEF), 0);
}

#[test]
fn without_multi_tce_every_entry_is_a_put_tce() {
    let (mut p, mut m) = setup();
    m.set_multi_tce(false);
    let a = m
        .map(&mut p, DEF, 0x20_0000, 0x3000, Perm::ReadWrite)
        .unwrap();
    assert_eq!(
        log(&mut p),
        [
            (PUT, vec![DEF as u64, 0x1000, 0x20_0003], 0),
            (PUT, vec![DEF as u64, 0x2000, 0x20_1003], 0),
            (PUT, vec![DEF as u64, 0x3000, 0x20_2003], 0),
        ]
    );
    m.unmap_mapping(&mut p, &a).unwrap();
    assert_eq!(shape(&log(&mut p)), [(PUT, 1); 3]);
    assert_eq!(mapped(&mut p, DEF), 0);
    assert_eq!(m.list_page(), None);
}

#[test]
fn one_list_page_per_manager_and_its_absence() {
    let (mut p, mut m) = setup();
    let before: u64 = p.phys.free_ranges().iter().map(|r| r.size).sum();
    for _ in 0..3 {
        let a = m.map(&mut p, DEF, 0, 0x4000, Perm::Read).unwrap();
        m.unmap_mapping(&mut p, &a).unwrap();
    }
    let after: u64 = p.phys.free_ranges().iter().map(|r| r.size).sum();
    assert_eq!(before - after, 4096);
    m.release_list_page(&mut p);
    assert_eq!(m.list_page(), None);
    let back: u64 = p.phys.free_ranges().iter().map(|r| r.size).sum();
    assert_eq!(back, before);
    // No memory for a list page: multi-page maps fail cleanly, single pages work.
    p.phys = crate::memory::RangeAllocator::new();
    log(&mut p);
    assert_eq!(
        m.map(&mut p, DEF, 0, 0x2000, Perm::Read),
        Err(TceError::NoListPage)
    );
    assert!(log(&mut p).is_empty(), "no hypercall, no bus space taken");
    assert_eq!(m.window(DEF).unwrap().free_pages(), 262143);
    assert_eq!(
        m.map(&mut p, DEF, 0, 0x1000, Perm::Read).unwrap().ioba,
        0x1000
    );
}

// ---------------------------------------------------------------- rollback

#[test]
fn failed_single_put_is_rolled_back() {
    let (mut p, mut m) = setup();
    p.inject_hcall(PUT, rc::H_PARAMETER, 1);
    let e = m
        .map(&mut p, DEF, 0x20_0000, 8, Perm::ReadWrite)
        .unwrap_err();
    assert_eq!(
        e,
        TceError::Hcall {
            liobn: DEF,
            ioba: 0x1000,
            opcode: PUT,
            rc: rc::H_PARAMETER,
            after: After::RolledBack
        }
    );
    assert_eq!(
        format!("{e}"),
        "H_PUT_TCE(LIOBN 0x80000000, ioba 0x1000) returned -4 (H_PARAMETER); mapping rolled back"
    );
    assert_eq!(
        shape(&log(&mut p)),
        [(PUT, 1), (STUFF, 1)],
        "the failed entry is cleared too"
    );
    let w = m.window(DEF).unwrap();
    assert_eq!((w.live_mappings(), w.free_pages()), (0, 262143));
    assert_eq!(m.counters().failed, 1);
    assert_eq!(m.map(&mut p, DEF, 0, 1, Perm::Read).unwrap().ioba, 0x1000);
}

#[test]
fn failed_first_indirect_is_rolled_back() {
    let (mut p, mut m) = setup();
    p.inject_hcall(IND, rc::H_HARDWARE, 1);
    let e = m
        .map(&mut p, DEF, 0, 1030 << 12, Perm::ReadWrite)
        .unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            opcode: IND,
            rc: rc::H_HARDWARE,
            ioba: 0x1000,
            after: After::RolledBack,
            ..
        }
    ));
    assert_eq!(shape(&log(&mut p)), [(IND, 512), (STUFF, 512)]);
    assert_eq!(m.window(DEF).unwrap().free_pages(), 262143);
}

#[test]
fn failure_after_earlier_batches_clears_them_all() {
    let (mut p, mut m) = setup();
    // The tail H_PUT_TCE of a 513-page map fails after a full indirect batch.
    p.inject_hcall(PUT, rc::H_HARDWARE, 1);
    let e = m.map(&mut p, DEF, 0, 513 << 12, Perm::Read).unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            opcode: PUT,
            ioba: 0x201000,
            ..
        }
    ));
    let calls = log(&mut p);
    assert_eq!(
        shape(&calls),
        [(IND, 512), (PUT, 1), (STUFF, 512), (STUFF, 1)]
    );
    assert_eq!(calls[3].1[1], 0x201000);
    assert_eq!(mapped(&mut p, DEF), 0);
    assert_eq!(m.window(DEF).unwrap().free_pages(), 262143);
}

#[test]
fn partial_indirect_write_is_rolled_back() {
    let (mut p, mut m) = setup();
    // QEMU-style partial write: the first indirect call sets 100 entries, fails.
    assert!(p.inject_partial_tce(DEF, IND, 100, rc::H_PARAMETER));
    let e = m
        .map(&mut p, DEF, 0x100_0000, 1100 << 12, Perm::Write)
        .unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            opcode: IND,
            rc: rc::H_PARAMETER,
            after: After::RolledBack,
            ..
        }
    ));
    let calls = log(&mut p);
    assert_eq!(shape(&calls), [(IND, 512), (STUFF, 512)]);
    assert_eq!(mapped(&mut p, DEF), 0, "the 100 written entries are gone");
    assert_eq!(m.window(DEF).unwrap().live_mappings(), 0);
}

#[test]
fn running_off_the_platforms_table_fails_and_quarantines() {
    // The firmware believes in a 1 GiB + 1 MiB window; QEMU's table has 1 GiB.
    let mut p = FakePlatform::new(64 << 20);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(DEF, 0, GIB + (1 << 20), 12).unwrap())
        .unwrap();
    m.window_mut(DEF).unwrap().reserve(0, GIB - 0x8000).unwrap();
    let e = m
        .map(&mut p, DEF, 0, 16 << 12, Perm::ReadWrite)
        .unwrap_err();
    // QEMU wrote 8 entries and refused the ninth; the rollback stuff clears
    // those 8 and is refused at the ninth too: the range is quarantined.
    assert!(matches!(
        e,
        TceError::Hcall {
            opcode: IND,
            rc: rc::H_PARAMETER,
            ioba: 0x3fff_8000,
            after: After::Quarantined,
            ..
        }
    ));
    assert_eq!(shape(&log(&mut p)), [(IND, 16), (STUFF, 16)]);
    assert_eq!(mapped(&mut p, DEF), 0);
    let w = m.window(DEF).unwrap();
    assert_eq!((w.quarantined_pages(), w.live_mappings()), (16, 0));
    // Hand-over retries it and reports the failure.
    let s = m.unmap_all(&mut p);
    assert_eq!((s.mappings, s.failures), (0, 1));
    assert!(format!("{s}").contains("rollback failed, bus range quarantined"));
}

#[test]
fn failed_rollback_quarantines_until_unmap_all() {
    let (mut p, mut m) = setup();
    assert!(p.inject_partial_tce(DEF, IND, 10, rc::H_HARDWARE));
    p.inject_hcall(STUFF, rc::H_HARDWARE, 1);
    let e = m
        .map(&mut p, DEF, 0, 20 << 12, Perm::ReadWrite)
        .unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            after: After::Quarantined,
            ..
        }
    ));
    assert_eq!(mapped(&mut p, DEF), 10, "the hypervisor kept 10 entries");
    let w = m.window(DEF).unwrap();
    assert_eq!((w.quarantined_pages(), w.free_pages()), (20, 262123));
    // The quarantined bus range is not handed out again.
    assert_eq!(m.map(&mut p, DEF, 0, 1, Perm::Read).unwrap().ioba, 0x15000);
    log(&mut p);
    let s = m.unmap_all(&mut p);
    assert_eq!((s.mappings, s.entries, s.hcalls, s.failures), (2, 21, 2, 0));
    assert_eq!(mapped(&mut p, DEF), 0);
    let w = m.window(DEF).unwrap();
    assert_eq!(
        (w.quarantined_pages(), w.free_pages(), w.free_extents()),
        (0, 262143, 1)
    );
}

#[test]
fn failed_unmap_keeps_the_mapping() {
    let (mut p, mut m) = setup();
    let a = m.map(&mut p, DEF, 0, 600 << 12, Perm::ReadWrite).unwrap();
    assert!(p.inject_partial_tce(DEF, STUFF, 7, rc::H_HARDWARE));
    let e = m.unmap_mapping(&mut p, &a).unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            opcode: STUFF,
            rc: rc::H_HARDWARE,
            ioba: 0x1000,
            after: After::StillMapped,
            ..
        }
    ));
    assert_eq!(mapped(&mut p, DEF), 593);
    assert_eq!(m.window(DEF).unwrap().live_mappings(), 1);
    m.unmap_mapping(&mut p, &a).unwrap();
    assert_eq!(mapped(&mut p, DEF), 0);
    assert_eq!(m.window(DEF).unwrap().free_pages(), 262143);
}

// ---------------------------------------------------------------- clear, hand-over

#[test]
fn clearing_a_default_window_takes_512_stuffs() {
    let (mut p, mut m) = setup();
    // Leftovers from a previous owner.
    for ioba in [0u64, 0x1000, GIB - 0x1000] {
        assert_eq!(p.hcall(PUT, &[DEF as u64, ioba, 0x5003]).rc, 0);
    }
    log(&mut p);
    let s = m.clear_window(&mut p, DEF).unwrap();
    assert_eq!((s.liobn, s.entries, s.hcalls), (DEF, 262144, 512));
    assert_eq!(s.ticks, 512, "the fake's clock ticks once per call");
    assert_eq!(
        format!("{s}"),
        "cleared 262144 entries of LIOBN 0x80000000 in 512 calls"
    );
    let calls = log(&mut p);
    assert_eq!(calls.len(), 512);
    for (i, (o, a, _)) in calls.iter().enumerate() {
        assert_eq!(
            (*o, a.clone()),
            (STUFF, vec![DEF as u64, (i as u64) << 21, 0, 512])
        );
    }
    assert_eq!(mapped(&mut p, DEF), 0);
    // A larger stuff limit: one call for the whole table (QEMU allows nb_table).
    m.set_stuff_limit(1 << 20);
    assert_eq!(m.clear_window(&mut p, DEF).unwrap().hcalls, 1);
    // Not with live mappings, and a failure mid-way is reported.
    let a = m.map(&mut p, DEF, 0, 1, Perm::Read).unwrap();
    assert_eq!(
        m.clear_window(&mut p, DEF),
        Err(TceError::InUse {
            liobn: DEF,
            mappings: 1
        })
    );
    m.unmap_mapping(&mut p, &a).unwrap();
    m.set_stuff_limit(STUFF_LIMIT);
    assert!(p.inject_partial_tce(DEF, STUFF, 3, rc::H_HARDWARE));
    let e = m.clear_window(&mut p, DEF).unwrap_err();
    assert!(matches!(
        e,
        TceError::Hcall {
            after: After::NotCleared,
            ioba: 0,
            ..
        }
    ));
    assert!(format!("{e}").ends_with("window not fully cleared"));
}

#[test]
fn clear_all_covers_every_window() {
    let (mut p, mut m) = setup();
    p.phbs.push(FakePhb::qemu_default(1));
    m.add_window(TceWindow::new(0x8000_0100, 0, GIB, 12).unwrap())
        .unwrap();
    assert_eq!(
        m.add_window(TceWindow::new(0x8000_0100, 0, GIB, 12).unwrap()),
        Err(TceError::DuplicateLiobn(0x8000_0100))
    );
    let r = m.clear_all(&mut p);
    let ok: Vec<(u32, u64, u64)> = r
        .iter()
        .map(|s| {
            let s = s.unwrap();
            (s.liobn, s.entries, s.hcalls)
        })
        .collect();
    assert_eq!(ok, [(DEF, 262144, 512), (0x8000_0100, 262144, 512)]);
    // A window the platform does not know fails on its first call.
    m.add_window(TceWindow::new(0x7100_0002, 0, 1 << 28, 12).unwrap())
        .unwrap();
    let r = m.clear_all(&mut p);
    assert!(matches!(
        r[2],
        Err(TceError::Hcall {
            liobn: 0x7100_0002,
            rc: rc::H_PARAMETER,
            ..
        })
    ));
}

#[test]
fn unmap_all_leaves_every_table_empty() {
    let mut p = FakePlatform::new(64 << 20);
    let (ddw, bus) = create_ddw(&mut p, 16, 40);
    let mut m = TceManager::new();
    m.add_window(TceWindow::new(DEF, 0, GIB, 12).unwrap())
        .unwrap();
    m.add_window(TceWindow::new(ddw, bus, 1 << 40, 16).unwrap())
        .unwrap();
    let mut pages = 0;
    for (i, len) in [1u64, 0x5000, 513 << 12, 0x20_0000].into_iter().enumerate() {
        let phys = 0x40_0000 * i as u64 + 0x10;
        pages += m
            .map(&mut p, DEF, phys, len, Perm::ReadWrite)
            .unwrap()
            .pages;
        pages += m.map(&mut p, ddw, phys, len, Perm::Read).unwrap().pages;
    }
    assert_eq!(mapped(&mut p, DEF) + mapped(&mut p, ddw), pages as usize);
    assert_eq!(
        m.remove_window(ddw).unwrap_err(),
        TceError::InUse {
            liobn: ddw,
            mappings: 4
        }
    );
    log(&mut p);
    let s = m.unmap_all(&mut p);
    assert_eq!((s.mappings, s.entries, s.failures), (8, pages, 0));
    assert_eq!(s.hcalls, log(&mut p).len() as u64);
    assert_eq!(
        format!("{s}"),
        format!(
            "unmapped 8 mappings ({pages} entries) in {} calls",
            s.hcalls
        )
    );
    assert_eq!((mapped(&mut p, DEF), mapped(&mut p, ddw)), (0, 0));
    for w in m.windows() {
        assert_eq!(w.live_mappings(), 0);
        assert_eq!(w.free_extents(), 1);
    }
    assert_eq!(m.remove_window(ddw).unwrap().liobn(), ddw);
    assert_eq!(m.unmap_all(&mut p), UnmapAllStats::default());
}

// ---------------------------------------------------------------- API edges

#[test]
fn bad_requests_are_errors_without_hypercalls() {
    let (mut p, mut m) = setup();
    assert_eq!(
        m.map(&mut p, 0x1234, 0, 1, Perm::Read),
        Err(TceError::UnknownLiobn(0x1234))
    );
    assert_eq!(
        m.map(&mut p, DEF, 0, 0, Perm::Read),
        Err(TceError::BadLength { phys: 0, len: 0 })
    );
    assert!(matches!(
        m.map(&mut p, DEF, u64::MAX - 5, 10, Perm::Read),
        Err(TceError::BadLength { .. })
    ));
    assert!(matches!(
        m.map(&mut p, DEF, 0, 2 * GIB, Perm::Read),
        Err(TceError::NoSpace { .. })
    ));
    assert_eq!(m.unmap(&mut p, 5, 0, 1), Err(TceError::UnknownLiobn(5)));
    assert_eq!(m.clear_window(&mut p, 5), Err(TceError::UnknownLiobn(5)));
    assert_eq!(m.remove_window(5).unwrap_err(), TceError::UnknownLiobn(5));
    assert!(log(&mut p).is_empty());
    assert_eq!(m.counters(), TceCounters::default());
    assert_eq!(
        format!("{}", TceError::NoSpace { liobn: 1, pages: 3 }),
        "LIOBN 0x1: no room for 3 TCEs"
    );
}

#[test]
fn get_tce_reads_back_entries() {
    let (mut p, mut m) = setup();
    let a = m.map(&mut p, DEF, 0x7_7000, 0x10, Perm::Write).unwrap();
    assert_eq!(m.get_tce(&mut p, DEF, a.ioba), Ok(0x7_7002));
    m.unmap_mapping(&mut p, &a).unwrap();
    assert_eq!(m.get_tce(&mut p, DEF, a.ioba), Ok(0));
    assert!(matches!(
        m.get_tce(&mut p, DEF, 0x5000_0000),
        Err(TceError::Hcall {
            opcode: op::H_GET_TCE,
            after: After::NoChange,
            ..
        })
    ));
}

#[test]
fn every_hypercall_result_is_an_error_not_a_panic() {
    for r in [
        rc::H_BUSY,
        rc::H_FUNCTION,
        rc::H_PRIVILEGE,
        rc::H_LONG_BUSY_START,
        -9999,
        i64::MIN,
    ] {
        for opcode in [PUT, IND, STUFF] {
            let (mut p, mut m) = setup();
            p.inject_hcall(opcode, r, u32::MAX);
            for pages in [1u64, 2, 513] {
                let res = m.map(&mut p, DEF, 0, pages << 12, Perm::Read);
                if let Ok(a) = res {
                    let _ = m.unmap_mapping(&mut p, &a);
                }
            }
            let _ = m.clear_window(&mut p, DEF);
            let _ = m.unmap_all(&mut p);
            let _ = format!("{:?}", m.counters());
        }
    }
}

// ---------------------------------------------------------------- benchmark

#[test]
fn bench_counts_calls_and_rates() {
    let (mut p, mut m) = setup();
    let r = bench(&mut p, &mut m, DEF, 0x100_0000, 4 << 20, 512_000_000).unwrap();
    assert_eq!((r.pages, r.page_size), (1024, 4096));
    assert_eq!(
        r.single,
        BenchPhase {
            map_ticks: 1024,
            unmap_ticks: 1024,
            map_calls: 1024,
            unmap_calls: 1024
        }
    );
    assert_eq!((r.indirect.map_calls, r.indirect.unmap_calls), (2, 2));
    assert_eq!(r.pages_per_sec(r.single.map_ticks), Some(512_000_000));
    assert_eq!(r.pages_per_sec(0), None);
    assert_eq!(r.micros(512_000_000), 1_000_000);
    let text = format!("{r}");
    assert!(text.starts_with("LIOBN 0x80000000, 1024 pages of 4 KiB (4 MiB): H_PUT_TCE map 512000000 pages/s (1024 calls, 0.002 ms)"), "{text}");
    assert!(
        text.contains("H_PUT_TCE_INDIRECT map 262144000000 pages/s (2 calls"),
        "{text}"
    );
    assert!(m.multi_tce(), "setting restored");
    assert_eq!(mapped(&mut p, DEF), 0);
    assert_eq!(m.window(DEF).unwrap().live_mappings(), 0);
    // Errors come back, the setting is still restored.
    m.set_multi_tce(false);
    p.inject_hcall(PUT, rc::H_HARDWARE, 1);
    assert!(bench(&mut p, &mut m, DEF, 0, 1 << 20, 1).is_err());
    assert!(!m.multi_tce());
    assert_eq!(
        bench(&mut p, &mut m, 9, 0, 1, 1),
        Err(TceError::UnknownLiobn(9))
    );
}
