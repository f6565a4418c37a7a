//! Host tests of the virtio-pci transport, virtio-blk and virtio-scsi
//! against the fake devices (src/fake/virtio.rs) behind the fake PHB:
//! capabilities from config space, registers through H_LOGICAL_CI_*, rings
//! and buffers at guest-physical addresses or through the TCE window.

use super::block::{BlockDevice, BlockError};
use super::virtio::{self, read_caps, DataPath, Transport, VirtioConfig, VirtioDma, VirtioError};
use super::virtio_blk::VirtioBlk;
use super::virtio_scsi::{ScsiError, VirtioScsi};
use crate::fake::pci::FakeFunction;
use crate::fake::phb::{qemu_buid, qemu_liobn};
use crate::fake::virtio::{lun, FakeVirtio};
use crate::fake::FakePlatform;
use crate::memory::{Memory, Range};
use crate::pci::{command, reg, Bdf, ConfigAccess};
use crate::platform::Platform;
use crate::tce::{Perm, TceManager, TceWindow};
use alloc::vec::Vec;

const CFG: ConfigAccess = ConfigAccess::QEMU;
const TB: u64 = 1000;
const BAR4: u64 = (1 << 45) + (1 << 40) + 0x10_0000;

struct Rig {
    p: FakePlatform,
    tces: TceManager,
    t: Transport,
    buid: u64,
    bdf: Bdf,
    liobn: u32,
}

fn vcfg() -> VirtioConfig {
    VirtioConfig {
        request_timeout_ms: 200,
        reset_timeout_ms: 50,
        ..VirtioConfig::new(TB)
    }
}

fn rig(f: FakeFunction) -> Rig {
    let mut p = FakePlatform::new(64 << 20);
    let bdf = f.bdf;
    p.add_function(0, f);
    let buid = qemu_buid(0);
    CFG.write32(&mut p, buid, bdf, reg::BAR0 + 16, BAR4 as u32 | 0xc)
        .unwrap();
    CFG.write32(&mut p, buid, bdf, reg::BAR0 + 20, (BAR4 >> 32) as u32)
        .unwrap();
    CFG.write16(
        &mut p,
        buid,
        bdf,
        reg::COMMAND,
        command::MEMORY | command::MASTER,
    )
    .unwrap();
    let caps = read_caps(&mut p, &CFG, buid, bdf).unwrap();
    let t = Transport::new(&caps, |b| (b == 4).then_some((BAR4, 0x4000))).unwrap();
    let liobn = qemu_liobn(0, 0);
    let mut tces = TceManager::new();
    tces.add_window(TceWindow::new(liobn, 0, 1 << 30, 12).unwrap())
        .unwrap();
    Rig {
        p,
        tces,
        t,
        buid,
        bdf,
        liobn,
    }
}

fn blk_rig(iommu: bool) -> Rig {
    let mut dev = FakeVirtio::blk(4096, 512, iommu);
    let b = dev.blk_mut().unwrap();
    for (i, x) in b.disk.iter_mut().enumerate() {
        *x = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
    }
    rig(FakeFunction::qemu_virtio_blk_with(Bdf::new(0, 1, 0), dev))
}

impl Rig {
    fn dev(&mut self) -> &mut FakeVirtio {
        self.p.virtio_mut(self.buid, self.bdf).unwrap()
    }
    fn mapped(&mut self) -> usize {
        let l = self.liobn;
        self.p.tce_table(l).unwrap().mapped()
    }
    fn free(&self) -> Vec<Range> {
        self.p.phys.free_ranges().to_vec()
    }
    fn blk(&mut self) -> Result<VirtioBlk, VirtioError> {
        VirtioBlk::init(
            &mut self.p,
            &mut self.tces,
            self.t,
            Some(self.liobn),
            vcfg(),
        )
    }
}

#[test]
fn caps_are_found_in_config_space() {
    let mut r = blk_rig(false);
    let caps = read_caps(&mut r.p, &CFG, r.buid, r.bdf).unwrap();
    assert_eq!((caps.common.bar, caps.common.offset), (4, 0));
    assert_eq!(
        (caps.notify.offset, caps.notify_off_multiplier),
        (0x3000, 4)
    );
    assert_eq!(caps.device.unwrap().offset, 0x2000);
    assert_eq!(caps.isr.unwrap().offset, 0x1000);
    // A capability naming a BAR without an address is refused.
    assert_eq!(
        Transport::new(&caps, |_| None),
        Err(VirtioError::BadCapability("common configuration"))
    );
    // A function without a capability list (a legacy-only device).
    let mut f = FakeFunction::qemu_virtio_blk(Bdf::new(0, 2, 0));
    f.config[6] &= !0x10;
    r.p.add_function(0, f);
    assert_eq!(
        read_caps(&mut r.p, &CFG, r.buid, Bdf::new(0, 2, 0)),
        Err(VirtioError::MissingCapability("common configuration"))
    );
    assert_eq!(virtio::device_type_of(0x1001), Some(2));
    assert_eq!(virtio::device_type_of(0x1048), Some(8));
    assert_eq!(virtio::device_type_of(0x1234), None);
}

#[test]
fn blk_without_access_platform_uses_physical_addresses() {
    let mut r = blk_rig(false);
    let free0 = r.free();
    let mut d = r.blk().unwrap();
    assert_eq!(d.dma(), VirtioDma::Physical);
    assert_eq!(d.data_path(), DataPath::Physical);
    assert_eq!((d.block_size(), d.blocks()), (512, 4096));
    assert_ne!(d.features() & virtio::feature::VERSION_1, 0);
    assert_eq!(d.features() & virtio::feature::ACCESS_PLATFORM, 0);
    // Interrupt-suppressing features QEMU offers were not taken.
    assert_eq!(d.features() & (1 << 28 | 1 << 29), 0);
    assert_eq!(r.mapped(), 0, "no TCE for a device that bypasses the IOMMU");
    let buf = r.p.alloc_phys(8192, 4096).unwrap();
    d.read_blocks(&mut r.p, &mut r.tces, 3, 16, buf).unwrap();
    let mut got = alloc::vec![0u8; 8192];
    r.p.read(buf, &mut got).unwrap();
    let want = r.dev().blk_mut().unwrap().disk[3 * 512..19 * 512].to_vec();
    assert_eq!(got, want);
    // Write, and the device has the bytes.
    r.p.fill(buf, 1024, 0x5a).unwrap();
    d.write_blocks(&mut r.p, &mut r.tces, 100, 2, buf).unwrap();
    assert!(r.dev().blk_mut().unwrap().disk[100 * 512..102 * 512]
        .iter()
        .all(|b| *b == 0x5a));
    let seen = r.dev().blk_mut().unwrap().seen.clone();
    assert_eq!((seen[0].ty, seen[0].sector, seen[0].len), (0, 3, 8192));
    assert_eq!((seen[1].ty, seen[1].sector, seen[1].len), (1, 100, 1024));
    d.flush(&mut r.p, &mut r.tces).unwrap();
    // Out of range, and a device status error.
    assert!(matches!(
        d.read_blocks(&mut r.p, &mut r.tces, 4095, 2, buf),
        Err(BlockError::OutOfRange { .. })
    ));
    r.dev().faults.blk_status = Some(1);
    assert_eq!(
        d.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(BlockError::Virtio(VirtioError::Device(
            "virtio-blk: I/O error"
        )))
    );
    r.dev().faults.blk_status = None;
    r.p.free_phys(buf, 8192, 4096);
    d.shutdown(&mut r.p, &mut r.tces).unwrap();
    assert_eq!(r.dev().status, 0, "reset at shutdown");
    assert_eq!(r.free(), free0, "all memory returned");
}

#[test]
fn blk_with_iommu_platform_maps_everything_through_tces() {
    let mut r = blk_rig(true);
    let free0 = r.free();
    let mut d = r.blk().unwrap();
    assert_eq!(d.dma(), VirtioDma::Map { liobn: r.liobn });
    assert_ne!(d.features() & virtio::feature::ACCESS_PLATFORM, 0);
    // Ring page, used page (×1 queue), header page, status page.
    assert_eq!(r.mapped(), 4);
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    d.read_blocks(&mut r.p, &mut r.tces, 8, 8, buf).unwrap();
    let mut got = alloc::vec![0u8; 4096];
    r.p.read(buf, &mut got).unwrap();
    assert_eq!(got, r.dev().blk_mut().unwrap().disk[8 * 512..16 * 512]);
    assert_eq!(r.mapped(), 4, "the data mapping is gone after the transfer");
    // A permanently mapped range (what storage sets up for its bounce buffer).
    let m = r
        .tces
        .map(&mut r.p, r.liobn, buf, 4096, Perm::ReadWrite)
        .unwrap();
    d.set_data_path(DataPath::Direct {
        offset: m.ioba.wrapping_sub(buf),
        start: buf,
        end: buf + 4096,
    });
    r.p.fill(buf, 4096, 0).unwrap();
    d.read_blocks(&mut r.p, &mut r.tces, 8, 8, buf).unwrap();
    r.p.read(buf, &mut got).unwrap();
    assert_eq!(got, r.dev().blk_mut().unwrap().disk[8 * 512..16 * 512]);
    assert!(matches!(
        d.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf + 8192),
        Err(BlockError::Virtio(VirtioError::BadRequest(_)))
    ));
    r.tces.unmap_mapping(&mut r.p, &m).unwrap();
    r.p.free_phys(buf, 4096, 4096);
    d.shutdown(&mut r.p, &mut r.tces).unwrap();
    assert_eq!(r.mapped(), 0);
    assert_eq!(r.free(), free0);
}

#[test]
fn blk_failures_are_errors_and_leave_nothing_behind() {
    // The device insists on ACCESS_PLATFORM but the host bridge has no window.
    let mut r = blk_rig(true);
    let free0 = r.free();
    assert_eq!(
        VirtioBlk::init(&mut r.p, &mut r.tces, r.t, None, vcfg()).err(),
        Some(VirtioError::NoDmaWindow)
    );
    assert_ne!(r.dev().status & virtio::status::FAILED, 0);
    // Features refused.
    r.dev().faults.refuse_features = true;
    assert!(matches!(r.blk(), Err(VirtioError::FeaturesRefused { .. })));
    r.dev().faults.refuse_features = false;
    // A device that does not finish its reset.
    r.dev().faults.never_reset = true;
    r.dev().status = 1;
    assert_eq!(r.blk().err(), Some(VirtioError::ResetTimeout { ms: 50 }));
    r.dev().faults.never_reset = false;
    // Not a virtio 1.x device.
    r.dev().offered &= !virtio::feature::VERSION_1;
    assert_eq!(r.blk().err(), Some(VirtioError::NotVersion1));
    r.dev().offered |= virtio::feature::VERSION_1;
    assert_eq!(r.free(), free0);
    // Requests that never complete: a timeout, then the device is failed.
    let mut d = r.blk().unwrap();
    r.dev().faults.swallow = true;
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    assert_eq!(
        d.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(BlockError::Virtio(VirtioError::Timeout {
            what: "virtio-blk read",
            ms: 200
        }))
    );
    assert!(d.failed());
    assert_eq!(
        d.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
        Err(BlockError::Virtio(VirtioError::Failed))
    );
    r.p.free_phys(buf, 4096, 4096);
    d.shutdown(&mut r.p, &mut r.tces).unwrap();
    assert_eq!(r.mapped(), 0);
    assert_eq!(r.free(), free0);
}

#[test]
fn blk_buffer_outside_the_window_makes_the_device_need_a_reset() {
    let mut r = blk_rig(true);
    let mut d = r.blk().unwrap();
    // The data path claims a direct mapping that does not exist.
    let buf = r.p.alloc_phys(4096, 4096).unwrap();
    d.set_data_path(DataPath::Direct {
        offset: 0x3000_0000,
        start: buf,
        end: buf + 4096,
    });
    let e = d.read_blocks(&mut r.p, &mut r.tces, 0, 1, buf).unwrap_err();
    assert!(
        matches!(e, BlockError::Virtio(VirtioError::NeedsReset { .. })),
        "{e:?}"
    );
    assert_eq!(r.dev().dma_faults, 1);
    assert!(d.failed());
}

fn scsi_rig(iommu: bool) -> Rig {
    let mut a = lun(0, 0, 0, 2048, 512);
    for (i, x) in a.disk.iter_mut().enumerate() {
        *x = (i / 512) as u8;
    }
    let b = lun(2, 3, 0, 64, 4096);
    let cd = lun(1, 0, 5, 16, 2048);
    let dev = FakeVirtio::scsi(alloc::vec![a, b, cd], iommu);
    rig(FakeFunction::qemu_virtio_scsi_with(Bdf::new(0, 2, 0), dev))
}

#[test]
fn scsi_scan_finds_disks_and_reads_them() {
    for iommu in [false, true] {
        let mut r = scsi_rig(iommu);
        let free0 = r.free();
        let mut s = VirtioScsi::init(&mut r.p, &mut r.tces, r.t, Some(r.liobn), vcfg()).unwrap();
        assert_eq!(s.max_target(), 255);
        let notes = s.scan(&mut r.p);
        assert!(notes.is_empty(), "{notes:?}");
        let found: Vec<(u16, u32, u8, u32, u64)> = s
            .luns
            .iter()
            .map(|l| (l.target, l.lun, l.peripheral, l.block_size, l.blocks))
            .collect();
        assert_eq!(
            found,
            [
                (0, 0, 0, 512, 2048),
                (1, 0, 5, 2048, 16),
                (2, 3, 0, 4096, 64)
            ]
        );
        assert_eq!(s.luns[0].product, "QEMU HARDDISK");
        assert_eq!(s.luns[0].unit_address(), 0x0100_0000_0000_0000);
        assert_eq!(s.luns[0].node_name(), "disk@100000000000000");
        assert_eq!(s.luns[2].node_name(), "disk@102000300000000");
        assert_eq!(s.luns[1].node_name(), "cdrom@101000000000000");
        // Read through the block-device view.
        let buf = r.p.alloc_phys(8192, 4096).unwrap();
        let mut d = s.disk(0).unwrap();
        assert_eq!((d.block_size(), d.blocks()), (512, 2048));
        d.read_blocks(&mut r.p, &mut r.tces, 5, 16, buf).unwrap();
        let mut got = alloc::vec![0u8; 8192];
        r.p.read(buf, &mut got).unwrap();
        assert!(got
            .chunks(512)
            .enumerate()
            .all(|(i, c)| c.iter().all(|x| *x == (5 + i) as u8)));
        // Write to the 4K-block disk at target 2, LUN 3.
        r.p.fill(buf, 8192, 0xa5).unwrap();
        let mut d = s.disk(2).unwrap();
        d.write_blocks(&mut r.p, &mut r.tces, 10, 2, buf).unwrap();
        assert!(matches!(
            d.read_blocks(&mut r.p, &mut r.tces, 63, 2, buf),
            Err(BlockError::OutOfRange { .. })
        ));
        // The CD is read-only.
        let mut cd = s.disk(1).unwrap();
        assert!(cd.read_only());
        assert_eq!(
            cd.write_blocks(&mut r.p, &mut r.tces, 0, 1, buf),
            Err(BlockError::ReadOnly)
        );
        let dev = r.dev();
        let sc = dev.scsi_mut().unwrap();
        assert!(sc.luns[1].disk[10 * 4096..12 * 4096]
            .iter()
            .all(|x| *x == 0xa5));
        // Every command went to targets that exist, after one INQUIRY each.
        let ops: Vec<u8> = sc
            .seen
            .iter()
            .filter(|c| c.target == 0)
            .map(|c| c.opcode)
            .collect();
        // INQUIRY, REPORT LUNS, INQUIRY, TUR (unit attention), TUR,
        // READ CAPACITY, READ(10).
        assert_eq!(ops, [0x12, 0xa0, 0x12, 0x00, 0x00, 0x25, 0x28]);
        assert_eq!(r.mapped() > 0, iommu);
        r.p.free_phys(buf, 8192, 4096);
        s.shutdown(&mut r.p, &mut r.tces).unwrap();
        assert_eq!(r.mapped(), 0);
        r.tces.release_list_page(&mut r.p);
        assert_eq!(r.free(), free0);
    }
}

#[test]
fn scsi_errors_carry_the_sense() {
    let mut r = scsi_rig(false);
    let mut s = VirtioScsi::init(&mut r.p, &mut r.tces, r.t, Some(r.liobn), vcfg()).unwrap();
    // An unknown opcode to an existing LUN: ILLEGAL REQUEST / INVALID COMMAND
    // (after the pending unit attention is retried away).
    let e = s
        .command_retry(&mut r.p, 0, 0, &[0xee, 0, 0, 0, 0, 0], None)
        .unwrap_err();
    assert_eq!(
        e,
        BlockError::Scsi(ScsiError::Check {
            key: 5,
            asc: 0x20,
            ascq: 0
        })
    );
    assert_eq!(
        s.command(&mut r.p, 9, 0, &[0, 0, 0, 0, 0, 0], None),
        Err(BlockError::Scsi(ScsiError::Response(3)))
    );
    assert_eq!(
        s.command(&mut r.p, 0, 7, &[0, 0, 0, 0, 0, 0], None),
        Err(BlockError::Scsi(ScsiError::Check {
            key: 5,
            asc: 0x25,
            ascq: 0
        }))
    );
    assert_eq!(
        super::virtio_scsi::parse_sense(&[0x72, 0x06, 0x29, 0x01]),
        (6, 0x29, 1)
    );
    assert_eq!(super::virtio_scsi::parse_sense(&[]), (0, 0, 0));
}
