//! Host tests of the NVMe driver and the DMA self-test against the fake
//! NVMe controller behind the fake PHB (registers through H_LOGICAL_CI_*,
//! DMA through the PHB's TCE tables).

use super::dma_selftest::{self, dma_selftest, fill_pattern, pattern_seed, Params, Target};
use super::nvme::{DataDma, Nvme, NvmeConfig, NvmeError, Status};
use crate::devtree::dma::{DdwExtensions, DdwInfo};
use crate::fake::nvme::{status, FailOpcode, FakeNvme};
use crate::fake::pci::FakeFunction;
use crate::fake::phb::{qemu_buid, qemu_liobn};
use crate::fake::{Call, FakePlatform};
use crate::hcall::{op, Hypervisor};
use crate::memory::{Memory, Range};
use crate::mmio::Mmio;
use crate::pci::{command, reg, Bdf, ConfigAccess};
use crate::platform::Platform;
use crate::tce::{Perm, TceManager, TceWindow};
use alloc::string::String;
use alloc::vec::Vec;

const CFG: ConfigAccess = ConfigAccess::QEMU;
/// 1 timebase tick per millisecond; the fake advances one tick per call.
const TB: u64 = 1000;

struct Rig {
    p: FakePlatform,
    tces: TceManager,
    mmio: Mmio,
    buid: u64,
    bdf: Bdf,
    liobn: u32,
}

impl Rig {
    fn nvme(&mut self) -> &mut FakeNvme {
        self.p.nvme_mut(self.buid, self.bdf).unwrap()
    }
    fn free(&self) -> Vec<Range> {
        self.p.phys.free_ranges().to_vec()
    }
    fn tces_mapped(&mut self) -> usize {
        let l = self.liobn;
        self.p.tce_table(l).unwrap().mapped()
    }
    fn tce_at(&mut self, bus: u64) -> u64 {
        let l = self.liobn;
        self.p.tce_table(l).unwrap().get(bus).unwrap()
    }
    fn init(&mut self) -> Result<Nvme, NvmeError> {
        Nvme::init(&mut self.p, &mut self.tces, self.mmio, self.liobn, config())
    }
}

fn config() -> NvmeConfig {
    NvmeConfig {
        command_timeout_ms: 200,
        ..NvmeConfig::new(TB)
    }
}

/// An NVMe at 00:00.0 of PHB `index`, BAR0 placed in the PHB's 64-bit
/// window and decoding, bus master on (what PCI assignment and the probe
/// do), the PHB's default window known to the TCE manager.
fn rig_on(index: u32, ram: usize, blocks: u64, bs: u32) -> Rig {
    let mut p = FakePlatform::new(ram);
    let bdf = Bdf::new(0, 0, 0);
    p.add_function(
        index,
        FakeFunction::qemu_nvme(bdf, FakeNvme::new(blocks, bs)),
    );
    let buid = qemu_buid(index);
    let bar = (1u64 << 45) + ((index as u64 + 1) << 40);
    CFG.write32(&mut p, buid, bdf, reg::BAR0, bar as u32)
        .unwrap();
    CFG.write32(&mut p, buid, bdf, reg::BAR0 + 4, (bar >> 32) as u32)
        .unwrap();
    CFG.write16(
        &mut p,
        buid,
        bdf,
        reg::COMMAND,
        command::MEMORY | command::MASTER,
    )
    .unwrap();
    let liobn = qemu_liobn(index, 0);
    let mut tces = TceManager::new();
    tces.add_window(TceWindow::new(liobn, 0, 1 << 30, 12).unwrap())
        .unwrap();
    Rig {
        p,
        tces,
        mmio: Mmio::new(bar, 0x4000),
        buid,
        bdf,
        liobn,
    }
}

fn rig() -> Rig {
    rig_on(0, 64 << 20, 0x10000, 512)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = alloc::vec![0u8; len];
    fill_pattern(seed, 0, &mut v);
    v
}

#[test]
fn init_identifies_and_maps_queues_with_least_permission() {
    let mut r = rig();
    let before = r.free();
    let n = r.init().unwrap();
    let id = n.identity().clone();
    assert_eq!(
        (id.serial.as_str(), id.model.as_str(), id.firmware.as_str()),
        ("papr0", "QEMU NVMe Ctrl", "7.2.0")
    );
    assert_eq!(
        (id.vendor_id, id.version, id.mdts_bytes),
        (0x1b36, 0x0001_0400, 512 << 10)
    );
    assert_eq!((id.nsid, id.block_size, id.blocks), (1, 512, 0x10000));
    assert_eq!((n.block_size(), n.capacity()), (512, 0x10000));
    let f = r.nvme();
    assert_eq!(f.io_queues(), 1);
    assert_eq!(
        f.cc(),
        0x0046_0001,
        "EN, IOSQES 6, IOCQES 4, MPS 0, CSS NVM"
    );
    assert_eq!(f.csts(), 1);
    let seen = f.seen.clone();
    // Identify controller, active namespaces, namespace 1, Number of
    // Queues, Create I/O CQ, Create I/O SQ.
    let ops: Vec<(u8, u32)> = seen.iter().map(|s| (s.opcode, s.cdw10 & 0xff)).collect();
    assert_eq!(ops, [(6, 1), (6, 2), (6, 0), (9, 7), (5, 1), (1, 1)]);
    // Six pages of queue memory, each with the one permission it needs.
    assert_eq!(r.tces_mapped(), 6);
    assert_eq!(
        r.tce_at(seen[0].prp1) & 3,
        Perm::Write.bits(),
        "Identify buffer"
    );
    assert_eq!(
        r.tce_at(seen[4].prp1) & 3,
        Perm::Write.bits(),
        "I/O completion queue"
    );
    assert_eq!(
        r.tce_at(seen[5].prp1) & 3,
        Perm::Read.bits(),
        "I/O submission queue"
    );
    // The device saw bus addresses, never bus address 0.
    assert!(seen.iter().all(|s| s.opcode == 9 || s.prp1 != 0));
    // CC was written as a big-endian store of the byte-swapped value.
    let cc_store = r.p.calls.iter().find_map(|c| match c {
        Call::Hcall { opcode, args, .. }
            if *opcode == op::H_LOGICAL_CI_STORE && args[1] == r.mmio.base() + 0x14 =>
        {
            Some(args.clone())
        }
        _ => None,
    });
    assert_eq!(cc_store.unwrap(), [4, r.mmio.base() + 0x14, 0x0100_4600]);
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
    let f = r.nvme();
    assert_eq!((f.io_queues(), f.cc() & 1, f.csts() & 1), (0, 0, 0));
    let last: Vec<u8> = f.seen.iter().rev().take(2).map(|s| s.opcode).collect();
    assert_eq!(last, [4, 0], "SQ deleted, then CQ");
    assert_eq!(r.tces_mapped(), 0);
    assert_eq!(r.free(), before, "all queue memory returned");
    assert_eq!(r.tces.window(r.liobn).unwrap().live_mappings(), 0);
}

#[test]
fn reads_and_writes_of_every_prp_shape() {
    let mut r = rig();
    let mut n = r.init().unwrap();
    // (lba, blocks, offset of the buffer in its page, expected commands)
    let cases: [(u64, u64, u64, u64); 7] = [
        (0, 1, 0, 1),           // 512 bytes: PRP1 only
        (7, 8, 0, 1),           // one page
        (100, 8, 0x200, 1),     // two pages: PRP2 is the second page
        (200, 24, 0, 1),        // three pages: PRP list
        (300, 3, 0xe00, 1),     // 1.5 KiB crossing a page: PRP2 page
        (1000, 2048, 0x100, 2), // 1 MiB, unaligned: split at MDTS (512 KiB)
        (5000, 5000, 0, 5),     // 2.4 MiB: five commands
    ];
    for (i, (lba, blocks, off, cmds)) in cases.into_iter().enumerate() {
        let len = (blocks * 512) as usize;
        let data = pattern(i as u64, len);
        let wbuf = r.p.alloc_phys(len as u64 + 4096, 4096).unwrap();
        let rbuf = r.p.alloc_phys(len as u64 + 4096, 4096).unwrap();
        r.p.write(wbuf + off, &data).unwrap();
        r.p.fill(rbuf, len as u64 + 4096, 0xa5).unwrap();
        let seen0 = r.nvme().seen.len();
        n.write_blocks(&mut r.p, &mut r.tces, lba, blocks, wbuf + off)
            .unwrap();
        let w: Vec<_> = r.nvme().seen[seen0..].to_vec();
        assert_eq!(w.len() as u64, cmds, "case {i}: write commands");
        assert!(w.iter().all(|s| s.opcode == 1 && s.status == Some(0)));
        assert!(
            w.iter().all(|s| (s.cdw12 & 0xffff) < 1024),
            "case {i}: at most MDTS per command"
        );
        let disk = &r.nvme().disk[(lba * 512) as usize..(lba * 512) as usize + len];
        assert!(
            disk == data.as_slice(),
            "case {i}: disk holds what was written"
        );
        n.read_blocks(&mut r.p, &mut r.tces, lba, blocks, rbuf + off)
            .unwrap();
        let mut back = alloc::vec![0u8; len];
        r.p.read(rbuf + off, &mut back).unwrap();
        assert!(back == data, "case {i}: read back what was written");
        // Nothing beyond the buffer was touched.
        assert_eq!(r.p.read_u8(rbuf + off + len as u64).unwrap(), 0xa5);
        if off > 0 {
            assert_eq!(r.p.read_u8(rbuf + off - 1).unwrap(), 0xa5);
        }
        // PRP shape of the first command of the write.
        let s = w[0];
        let first = 4096 - (s.prp1 & 0xfff);
        let clen = (s.cdw12 as u64 + 1) * 512;
        if clen <= first {
            assert_eq!(s.prp2, 0, "case {i}");
        } else if clen - first <= 4096 {
            assert_eq!(s.prp2, (s.prp1 & !0xfff) + 4096, "case {i}");
        } else {
            // A list page the device may only read, holding page addresses.
            assert_eq!(s.prp2 & 0xfff, 0);
            assert_eq!(r.tce_at(s.prp2) & 3, Perm::Read.bits(), "case {i}");
        }
        r.p.free_phys(wbuf, len as u64 + 4096, 4096);
        r.p.free_phys(rbuf, len as u64 + 4096, 4096);
    }
    // Data mappings are gone after each transfer; queue memory stays.
    assert_eq!(r.tces_mapped(), 6);
    let st = n.stats();
    let total: u64 = cases.iter().map(|c| c.1 * 512).sum();
    assert_eq!((st.bytes_read, st.bytes_written), (total, total));
    assert_eq!(r.nvme().data_bytes, 2 * total);
    assert!(st.data_tces > 2 * total / 4096);
    n.flush(&mut r.p).unwrap();
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
}

#[test]
fn four_kib_blocks() {
    let mut r = rig_on(0, 64 << 20, 256, 4096);
    let mut n = r.init().unwrap();
    assert_eq!(
        (n.block_size(), n.capacity(), n.max_blocks_per_command()),
        (4096, 256, 128)
    );
    let data = pattern(9, 3 * 4096);
    let buf = r.p.alloc_phys(3 * 4096, 4096).unwrap();
    r.p.write(buf, &data).unwrap();
    n.write_blocks(&mut r.p, &mut r.tces, 253, 3, buf).unwrap();
    r.p.fill(buf, 3 * 4096, 0).unwrap();
    n.read_blocks(&mut r.p, &mut r.tces, 253, 3, buf).unwrap();
    let mut back = alloc::vec![0u8; 3 * 4096];
    r.p.read(buf, &mut back).unwrap();
    assert!(back == data);
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
}

#[test]
fn tce_permissions_are_enforced() {
    let mut r = rig();
    let mut n = r.init().unwrap();
    let len = 8 * 512;
    let buf = r.p.alloc_phys(len, 4096).unwrap();
    r.p.fill(buf, len, 0x5a).unwrap();
    r.nvme().disk[..len as usize].fill(0x11);
    let direct = |m: crate::tce::Mapping| DataDma::Direct {
        offset: m.ioba.wrapping_sub(buf),
        start: buf,
        end: buf + len,
    };
    // The device may only read the buffer, but a Read must write it.
    let m = r.tces.map(&mut r.p, r.liobn, buf, len, Perm::Read).unwrap();
    n.set_data_dma(direct(m));
    let e = n.read_blocks(&mut r.p, &mut r.tces, 0, 8, buf).unwrap_err();
    assert_eq!(
        e,
        NvmeError::Command {
            command: "Read",
            status: Status {
                sct: 0,
                sc: 4,
                dnr: false
            }
        }
    );
    assert_eq!(
        alloc::format!("{e}"),
        "Read failed: Data Transfer Error (SCT 0 SC 0x04)"
    );
    assert_eq!(r.p.read_u8(buf).unwrap(), 0x5a, "nothing reached memory");
    r.tces.unmap_mapping(&mut r.p, &m).unwrap();
    // The device may only write it, but a Write must read it.
    let m = r
        .tces
        .map(&mut r.p, r.liobn, buf, len, Perm::Write)
        .unwrap();
    n.set_data_dma(direct(m));
    assert!(matches!(
        n.write_blocks(&mut r.p, &mut r.tces, 0, 8, buf),
        Err(NvmeError::Command {
            status: Status { sc: 4, .. },
            ..
        })
    ));
    assert!(
        r.nvme().disk[..len as usize].iter().all(|b| *b == 0x11),
        "disk unchanged"
    );
    r.tces.unmap_mapping(&mut r.p, &m).unwrap();
    // Not mapped at all.
    n.set_data_dma(direct(m));
    assert!(n.read_blocks(&mut r.p, &mut r.tces, 0, 8, buf).is_err());
    // The controller is still fine: per-transfer mapping works.
    n.set_data_dma(DataDma::Map { liobn: r.liobn });
    n.read_blocks(&mut r.p, &mut r.tces, 0, 8, buf).unwrap();
    assert_eq!(r.p.read_u8(buf).unwrap(), 0x11);

    // A submission queue the device may not read: it cannot fetch the
    // command and reports a fatal status, which ends the wait.
    let sq = r
        .nvme()
        .seen
        .iter()
        .find(|s| s.opcode == 1 && s.sqid == 0)
        .unwrap()
        .prp1;
    let tce = r.tce_at(sq);
    let l = r.liobn as u64;
    assert_eq!(r.p.hcall(op::H_PUT_TCE, &[l, sq, (tce & !3) | 2]).rc, 0);
    let e = n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf).unwrap_err();
    assert!(
        matches!(e, NvmeError::Fatal { during: "Read", csts } if csts & 2 != 0),
        "{e:?}"
    );
    assert!(n.failed());
    assert_eq!(
        n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(NvmeError::Failed)
    );
    // Shutting down a failed controller still disables it and unmaps.
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
    assert_eq!(r.tces_mapped(), 0);
    assert_eq!(r.nvme().cc() & 1, 0);
}

#[test]
fn controller_never_ready_times_out_and_returns_everything() {
    let mut r = rig();
    r.nvme().faults.never_ready = true;
    let before = r.free();
    let e = r.init().err().unwrap();
    assert_eq!(
        e,
        NvmeError::NotReady {
            want: true,
            ms: 7500,
            csts: 0
        }
    );
    assert_eq!(
        alloc::format!("{e}"),
        "controller did not become ready within 7500 ms (CSTS 0x0)"
    );
    assert_eq!(r.free(), before);
    assert_eq!(r.tces_mapped(), 0);
    assert_eq!(r.nvme().cc() & 1, 0, "left disabled");
}

#[test]
fn a_hung_command_times_out() {
    let mut r = rig();
    let before = r.free();
    let mut n = r.init().unwrap();
    r.nvme().faults.swallow = true;
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    let t0 = r.p.timebase();
    let e = n.read_blocks(&mut r.p, &mut r.tces, 0, 8, buf).unwrap_err();
    assert_eq!(
        e,
        NvmeError::Timeout {
            command: "Read",
            ms: 200
        }
    );
    let waited = r.p.timebase() - t0;
    assert!((200..260).contains(&waited), "waited {waited} ms");
    assert!(n.failed());
    assert_eq!(r.tces_mapped(), 6, "the data buffer was unmapped");
    r.p.free_phys(buf, 4096, 4096);
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
    assert_eq!(r.free(), before);
}

#[test]
fn error_statuses_are_reported_and_the_controller_goes_on() {
    let mut r = rig();
    let mut n = r.init().unwrap();
    r.nvme().faults.fail.push(FailOpcode {
        admin: false,
        opcode: 0x02,
        status: status::UNRECOVERED_READ,
        count: 1,
    });
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    let e = n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf).unwrap_err();
    assert_eq!(
        alloc::format!("{e}"),
        "Read failed: Unrecovered Read Error (SCT 2 SC 0x81)"
    );
    assert!(!n.failed());
    n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf).unwrap();
    // The controller's own range check (DNR).
    r.nvme().faults.fail.push(FailOpcode {
        admin: false,
        opcode: 0x01,
        status: status::LBA_RANGE | status::DNR,
        count: 1,
    });
    let e = n
        .write_blocks(&mut r.p, &mut r.tces, 0, 1, buf)
        .unwrap_err();
    assert_eq!(
        alloc::format!("{e}"),
        "Write failed: LBA Out of Range (SCT 0 SC 0x80, DNR)"
    );
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
    // Failures during initialisation free everything.
    for (admin, opcode, what) in [
        (true, 0x06, "Identify"),
        (true, 0x05, "Create I/O Completion Queue"),
        (true, 0x01, "Create I/O Submission Queue"),
    ] {
        let mut r = rig();
        let before = r.free();
        r.nvme().faults.fail.push(FailOpcode {
            admin,
            opcode,
            status: status::INTERNAL_ERROR,
            count: 1,
        });
        let e = r.init().err().unwrap();
        assert_eq!(
            alloc::format!("{e}"),
            alloc::format!("{what} failed: Internal Error (SCT 0 SC 0x06)")
        );
        assert_eq!(r.free(), before);
        assert_eq!(r.tces_mapped(), 0);
    }
}

#[test]
fn fatal_status_and_slow_completions_while_polling() {
    let mut r = rig();
    let mut n = r.init().unwrap();
    // Completions that arrive after a few register accesses are waited for.
    r.nvme().faults.latency = 20;
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    let polls0 = r.p.calls.len();
    n.read_blocks(&mut r.p, &mut r.tces, 0, 8, buf).unwrap();
    assert!(r.p.calls.len() - polls0 > 20, "CSTS polled while waiting");
    r.nvme().faults.fatal_on = Some((false, 0x01));
    let e = n
        .write_blocks(&mut r.p, &mut r.tces, 0, 8, buf)
        .unwrap_err();
    assert!(
        matches!(
            e,
            NvmeError::Fatal {
                during: "Write",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        alloc::format!("{e}"),
        "controller fatal status during Write (CSTS 0x3)"
    );
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
}

#[test]
fn silent_corruption_is_not_hidden_by_the_driver() {
    let mut r = rig();
    let mut n = r.init().unwrap();
    r.nvme().faults.corrupt_read_byte = Some(5);
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    r.nvme().disk[5] = 0x0f;
    n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf).unwrap();
    assert_eq!(r.p.read_u8(buf + 5).unwrap(), 0xf0);
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
}

#[test]
fn nothing_at_the_bar_and_bad_requests() {
    // BAR not decoding: the registers read 0.
    let mut r = rig();
    CFG.write16(&mut r.p, r.buid, r.bdf, reg::COMMAND, command::MASTER)
        .unwrap();
    let e = r.init().err().unwrap();
    assert_eq!(e, NvmeError::NotResponding { cap: 0 });
    assert_eq!(
        alloc::format!("{e}"),
        "controller does not respond (CAP reads 0x0)"
    );
    // Requests the driver refuses without a command.
    let mut r = rig();
    let mut n = r.init().unwrap();
    let cmds = r.nvme().seen.len();
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    for (lba, count, at) in [
        (0x10000, 1, buf),
        (0xffff, 2, buf),
        (0, 0, buf),
        (0, 1, buf + 2),
        (u64::MAX, 1, buf),
    ] {
        assert!(matches!(
            n.read_blocks(&mut r.p, &mut r.tces, lba, count, at),
            Err(NvmeError::BadRequest(_))
        ));
    }
    n.set_data_dma(DataDma::Direct {
        offset: 0,
        start: 0,
        end: 0x1000,
    });
    assert!(matches!(
        n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(NvmeError::BadRequest(_))
    ));
    assert_eq!(r.nvme().seen.len(), cmds);
    // Bus mastering off: the device cannot fetch commands.
    n.set_data_dma(DataDma::Map { liobn: r.liobn });
    CFG.write16(&mut r.p, r.buid, r.bdf, reg::COMMAND, command::MEMORY)
        .unwrap();
    assert!(matches!(
        n.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(NvmeError::Fatal { .. })
    ));
    n.shutdown(&mut r.p, &mut r.tces).unwrap();
}

// ---------------------------------------------------------------------------
// DMA self-test

fn qemu_ddw() -> DdwInfo {
    DdwInfo {
        query: 0x2026,
        create: 0x2027,
        remove: 0x2028,
        ext: DdwExtensions {
            count: 2,
            reset: Some(0x2029),
            query_out_64: true,
            lam: None,
        },
    }
}

fn target(r: &Rig, ddw: Option<DdwInfo>) -> Target {
    Target {
        name: String::from("nvme0"),
        mmio: r.mmio,
        buid: r.buid,
        bdf: r.bdf,
        default_liobn: r.liobn,
        ddw,
    }
}

fn params(ram: u64) -> Params {
    Params {
        lba: 2048,
        bytes: 1 << 20,
        ram_top: ram,
        nvme: config(),
    }
}

/// The disk holds pass 1's pattern at `lba` and pass 2's right after.
fn disk_has_patterns(r: &mut Rig, lba: u64, passes: u32) {
    let len = 1usize << 20;
    for pass in 1..=passes {
        let at = lba + (pass as u64 - 1) * 2048;
        let want = pattern(pattern_seed(pass, at), len);
        let got = &r.nvme().disk[(at * 512) as usize..(at * 512) as usize + len];
        assert!(got == want.as_slice(), "pass {pass} pattern at LBA {at}");
    }
}

fn rtas_calls(p: &FakePlatform) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    p.calls
        .iter()
        .filter_map(|c| match c {
            Call::Rtas { name, args, rets } if name.contains("pe-dma-window") => {
                Some((name.clone(), args.clone(), rets.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn selftest_passes_through_default_and_dynamic_window() {
    let ram = 256u64 << 20;
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    let before = r.free();
    let t = target(&r, Some(qemu_ddw()));
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[t], &params(ram));
    for l in &rep.lines {
        std::println!("{l}");
    }
    assert!(rep.passed(), "{:?}", rep.failure);
    assert_eq!(rep.lines.last().unwrap(), "dma-selftest: PASS");
    disk_has_patterns(&mut r, 2048, 2);
    let calls = rtas_calls(&r.p);
    let names: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "ibm,query-pe-dma-window",
            "ibm,create-pe-dma-window",
            "ibm,remove-pe-dma-window",
            "ibm,reset-pe-dma-window"
        ]
    );
    // 16 MiB pages (the largest offered that fits 256 MiB), a 256 MiB window.
    assert_eq!(calls[1].1, [0, 0x0800_0000, 0x2000_0000, 24, 28]);
    assert_eq!(
        calls[1].2,
        [0, 0x8000_0001, 0x0800_0000, 0],
        "LIOBN 0x80000001 at 1<<59"
    );
    assert_eq!(calls[2].1, [0x8000_0001]);
    // RAM went in with one indirect call of 16 TCEs.
    let ind: Vec<&Vec<u64>> =
        r.p.calls
            .iter()
            .filter_map(|c| match c {
                Call::Hcall { opcode, args, .. }
                    if *opcode == op::H_PUT_TCE_INDIRECT && args[0] == 0x8000_0001 =>
                {
                    Some(args)
                }
                _ => None,
            })
            .collect();
    assert_eq!(ind.len(), 1);
    assert_eq!((ind[0][1], ind[0][3]), (1 << 59, 16));
    let text = rep.lines.join("\n");
    for want in [
        "ibm,query-pe-dma-window(0x0, 0x800000020000000) = 0: 1 window(s) available, largest block 0x2000000000 TCEs, page sizes 0x107",
        "ibm,create-pe-dma-window(page shift 24, window shift 28) = 0: LIOBN 0x80000001 at bus 0x800000000000000",
        "16 TCEs of 16384 KiB in 1 H_PUT_TCE_INDIRECT and 0 H_PUT_TCE calls",
        "default window LIOBN 0x80000000: wrote and read back 1.00 MiB at LBA 2048: match; 2.00 MiB moved, 512 TCEs",
        "dynamic window LIOBN 0x80000001: wrote and read back 1.00 MiB at LBA 4096: match; 2.00 MiB moved, 0 new TCEs",
        "ibm,remove-pe-dma-window(0x80000001) = 0",
        "ibm,reset-pe-dma-window(0x0, 0x800000020000000) = 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The platform and the firmware agree: only the default window, empty.
    let phb = &r.p.phbs[0];
    assert_eq!(phb.active_windows(), 1);
    assert_eq!(phb.tables[0].mapped(), 0);
    assert_eq!(r.tces.windows().len(), 1);
    assert_eq!(r.tces.window(r.liobn).unwrap().live_mappings(), 0);
    r.tces.release_list_page(&mut r.p);
    assert_eq!(r.free(), before);
}

#[test]
fn selftest_without_ddw_uses_the_default_window() {
    let ram = 64u64 << 20;
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    r.p.phbs[0].ddw = false;
    let t = target(&r, None);
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[t], &params(ram));
    assert!(rep.passed(), "{:?}", rep.failure);
    assert!(rep
        .lines
        .iter()
        .any(|l| l.contains("no dynamic DMA window on this PHB")));
    assert_eq!(rep.lines.last().unwrap(), "dma-selftest: PASS");
    assert!(rtas_calls(&r.p).is_empty());
    disk_has_patterns(&mut r, 2048, 1);
}

#[test]
fn selftest_with_4_gib_of_ram() {
    let ram = 4u64 << 30;
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    let t = target(&r, Some(qemu_ddw()));
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[t], &params(ram));
    assert!(rep.passed(), "{:?}", rep.failure);
    let text = rep.lines.join("\n");
    assert!(
        text.contains("(page shift 24, window shift 32) = 0"),
        "{text}"
    );
    assert!(
        text.contains("256 TCEs of 16384 KiB in 1 H_PUT_TCE_INDIRECT"),
        "{text}"
    );
    disk_has_patterns(&mut r, 2048, 2);
}

#[test]
fn selftest_on_a_second_phb() {
    let ram = 64u64 << 20;
    let mut r = rig_on(1, ram as usize, 0x10000, 512);
    let t = target(&r, Some(qemu_ddw()));
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[t], &params(ram));
    assert!(rep.passed(), "{:?}", rep.failure);
    let calls = rtas_calls(&r.p);
    assert_eq!(calls[1].1, [0, 0x0800_0000, 0x2000_0001, 24, 26]);
    assert_eq!(calls[1].2[1], 0x8000_0101);
    assert!(rep
        .lines
        .iter()
        .any(|l| l.contains("default window LIOBN 0x80000100")));
    disk_has_patterns(&mut r, 2048, 2);
}

#[test]
fn selftest_failures_are_reported_and_cleaned_up() {
    let ram = 64u64 << 20;
    // The platform refuses the dynamic window.
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    r.p.inject_rtas("ibm,create-pe-dma-window", -1, 1);
    let t = target(&r, Some(qemu_ddw()));
    let rep = dma_selftest(
        &mut r.p,
        &mut r.tces,
        core::slice::from_ref(&t),
        &params(ram),
    );
    assert_eq!(
        rep.lines.last().unwrap(),
        "dma-selftest: FAIL ibm,create-pe-dma-window(page shift 24, window shift 26) = -1: LIOBN 0x0 at bus 0x0"
    );
    // The controller was still shut down and the PE reset.
    assert_eq!(
        rtas_calls(&r.p).last().unwrap().0,
        "ibm,reset-pe-dma-window"
    );
    assert_eq!(r.nvme().cc() & 1, 0);
    assert_eq!(r.tces_mapped(), 0);

    // Data that comes back different.
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    r.nvme().faults.corrupt_read_byte = Some(0x123);
    let rep = dma_selftest(
        &mut r.p,
        &mut r.tces,
        core::slice::from_ref(&t),
        &params(ram),
    );
    let last = rep.lines.last().unwrap();
    assert!(
        last.starts_with(
            "dma-selftest: FAIL nvme0: default window: data read back differs at byte 0x123"
        ),
        "{last}"
    );

    // A controller that never becomes ready: a clear message, and the
    // other controllers are still tested.
    let mut r = rig_on(0, ram as usize, 0x10000, 512);
    r.nvme().faults.never_ready = true;
    let mut bad = t.clone();
    bad.name = String::from("nvme-bad");
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[bad], &params(ram));
    assert_eq!(
        rep.lines.last().unwrap(),
        "dma-selftest: FAIL nvme-bad: controller did not become ready within 7500 ms (CSTS 0x0)"
    );

    // A scratch region beyond the namespace.
    let mut r = rig_on(0, ram as usize, 0x1000, 512);
    let rep = dma_selftest(
        &mut r.p,
        &mut r.tces,
        core::slice::from_ref(&t),
        &params(ram),
    );
    assert!(rep.failure.unwrap().contains("beyond the namespace"));

    // Nothing to test.
    let rep = dma_selftest(&mut r.p, &mut r.tces, &[], &params(ram));
    assert_eq!(
        rep.lines.last().unwrap(),
        "dma-selftest: FAIL no NVMe controller found"
    );
}

#[test]
fn pattern_is_stable() {
    // The host checks disk images with these exact values.
    assert_eq!(pattern_seed(1, 2048), 0x5141_5052_2d66_7f00);
    let mut b = [0u8; 16];
    fill_pattern(pattern_seed(1, 2048), 0, &mut b);
    assert_eq!(
        b[..8],
        dma_selftest::pattern_word(pattern_seed(1, 2048), 0).to_be_bytes()
    );
    assert_ne!(b[..8], b[8..]);
    assert_eq!(dma_selftest::page_shift_for(0x107, 256 << 20), Some(24));
    assert_eq!(dma_selftest::page_shift_for(0x107, 8 << 20), Some(21));
    assert_eq!(dma_selftest::page_shift_for(0x3, 1 << 30), Some(16));
    assert_eq!(dma_selftest::page_shift_for(0x4, 1 << 20), None);
}

/// From QEMU's tree to PASS: PCI setup assigns the BARs (one NVMe behind a
/// pci-bridge, one on the root bus), the targets come from the plans and the
/// DMA model, the self-test runs on both.
#[test]
fn selftest_end_to_end_on_qemu_bridge_tree() {
    for v in ["7.2", "10.0"] {
        let path = alloc::format!(
            "{}/qemu-tests/trees/qemu-{v}-bridge.dtb",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut tree = crate::devtree::Tree::from_fdt(&std::fs::read(path).unwrap()).unwrap();
        let ram = 256u64 << 20;
        let mut p = FakePlatform::new(ram as usize);
        let (phbs, _) = crate::pci::tree::phbs(&tree);
        assert_eq!(p.plug_qemu_tree(&phbs), Vec::<String>::new());
        let (res, lines) = crate::pci::tree::setup(&mut p, &mut tree);
        assert_eq!(
            lines,
            ["pci: /pci@800000020000000: 4 functions, 7 BARs and 3 bridge windows assigned"]
        );
        let dma = crate::devtree::dma::DmaModel::from_tree(&tree);
        let mut tces = TceManager::new();
        tces.add_window(TceWindow::new(0x8000_0000, 0, 1 << 30, 12).unwrap())
            .unwrap();
        let cfg = crate::pci::tree::config_access(&tree).unwrap();
        let (targets, l) = super::dma_selftest::nvme_targets(&mut p, &cfg, &res, &dma);
        assert!(l.is_empty(), "{l:?}");
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "/pci@800000020000000/pci@0/mass-storage@0",
                "/pci@800000020000000/mass-storage@1"
            ]
        );
        assert_eq!(targets[0].bdf, Bdf::new(1, 0, 0));
        assert_eq!(targets[0].mmio.base(), 0x2000_8004_0000);
        let rep = dma_selftest(&mut p, &mut tces, &targets, &params(ram));
        assert!(rep.passed(), "{:#?}", rep.lines);
        for t in &targets {
            let n = p.nvme(t.buid, t.bdf).unwrap();
            let want = pattern(pattern_seed(2, 4096), 1 << 20);
            assert!(
                n.disk[4096 * 512..4096 * 512 + (1 << 20)] == want[..],
                "{}",
                t.name
            );
        }
    }
}
