//! Fake virtio-pci devices (modern interface) for host tests: virtio-blk and
//! virtio-scsi with QEMU 7.2's register layout (hw/virtio/virtio-pci.c: the
//! modern BAR4 holds the common configuration at 0x0000, ISR at 0x1000,
//! device configuration at 0x2000 and notifications at 0x3000 with
//! `notify_off_multiplier` 4; hw/block/virtio-blk.c; hw/scsi/virtio-scsi.c
//! with hw/scsi/scsi-bus.c and scsi-disk.c for the SCSI answers), following
//! the Virtio 1.1 specification where QEMU has no choice to make.
//!
//! Every ring and buffer access goes through [`DmaCtx`]: translated by the
//! PHB's TCE tables when `VIRTIO_F_ACCESS_PLATFORM` was negotiated, straight
//! to guest-physical memory otherwise (QEMU's virtio devices bypass the
//! IOMMU then, contract §4.5).  With `iommu_platform` the device, like QEMU,
//! refuses FEATURES_OK unless the driver accepted ACCESS_PLATFORM.  A failed
//! access sets DEVICE_NEEDS_RESET (QEMU's `virtio_error`).  Requests are
//! processed when the queue is notified.
//!
//! Fault hooks: requests never completed, a device that never finishes a
//! reset, refused features, a virtio-blk status to answer with.

use super::pci::DmaCtx;
use crate::drivers::virtio::{common, feature, status};
use alloc::string::String;
use alloc::vec::Vec;

/// Offsets inside the modern BAR.
pub const COMMON_OFF: u64 = 0x0000;
pub const ISR_OFF: u64 = 0x1000;
pub const DEVICE_OFF: u64 = 0x2000;
pub const NOTIFY_OFF: u64 = 0x3000;
pub const NOTIFY_MULT: u32 = 4;
/// Queue size QEMU offers (`queue-size` / `virtqueue_size` default 256).
pub const QUEUE_MAX: u16 = 256;

/// Fault hooks.
#[derive(Clone, Debug, Default)]
pub struct VirtioFaults {
    /// Buffers are taken but never returned.
    pub swallow: bool,
    /// Writing 0 to the status does not reset the device.
    pub never_reset: bool,
    /// FEATURES_OK is never accepted.
    pub refuse_features: bool,
    /// virtio-blk answers every request with this status.
    pub blk_status: Option<u8>,
}

/// One queue as the device sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeVq {
    pub size: u16,
    pub enable: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    last_avail: u16,
    used_idx: u16,
}

/// A virtio-blk request as seen: type, sector, data bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkSeen {
    pub ty: u32,
    pub sector: u64,
    pub len: u32,
}

/// The virtio-blk backend.
#[derive(Debug)]
pub struct FakeBlk {
    pub disk: Vec<u8>,
    /// `logical_block_size` (VIRTIO_BLK_F_BLK_SIZE).
    pub blk_size: u32,
    pub read_only: bool,
    pub seen: Vec<BlkSeen>,
}

/// One SCSI logical unit.
#[derive(Debug)]
pub struct FakeLun {
    pub target: u16,
    pub lun: u32,
    /// 0 disk, 5 CD-ROM.
    pub peripheral: u8,
    pub disk: Vec<u8>,
    pub block_size: u32,
    /// A UNIT ATTENTION is pending (set by reset, as QEMU's power-on).
    pub unit_attention: bool,
}

/// A SCSI command as seen: target, LUN, opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScsiSeen {
    pub target: u16,
    pub lun: u32,
    pub opcode: u8,
}

/// The virtio-scsi backend.
#[derive(Debug)]
pub struct FakeScsi {
    pub luns: Vec<FakeLun>,
    pub max_target: u16,
    pub seen: Vec<ScsiSeen>,
}

#[derive(Debug)]
pub enum FakeDevice {
    Blk(FakeBlk),
    Scsi(FakeScsi),
}

/// A modern virtio-pci device.
#[derive(Debug)]
pub struct FakeVirtio {
    pub offered: u64,
    pub driver_features: u64,
    dfsel: u32,
    drfsel: u32,
    pub status: u8,
    qsel: u16,
    pub queues: Vec<FakeVq>,
    /// `iommu_platform=on`.
    pub iommu_platform: bool,
    pub device: FakeDevice,
    pub faults: VirtioFaults,
    pub notifies: u64,
    pub resets: u32,
    /// DMA failures (each set DEVICE_NEEDS_RESET).
    pub dma_faults: u32,
}

impl FakeVirtio {
    fn new(device: FakeDevice, device_bits: u64, queues: usize, iommu_platform: bool) -> Self {
        let mut offered = feature::VERSION_1 | device_bits | 1 << 28 | 1 << 29;
        if iommu_platform {
            offered |= feature::ACCESS_PLATFORM;
        }
        FakeVirtio {
            offered,
            driver_features: 0,
            dfsel: 0,
            drfsel: 0,
            status: 0,
            qsel: 0,
            queues: alloc::vec![FakeVq::default(); queues],
            iommu_platform,
            device,
            faults: VirtioFaults::default(),
            notifies: 0,
            resets: 0,
            dma_faults: 0,
        }
    }

    /// virtio-blk with `sectors` 512-byte sectors and logical blocks of
    /// `blk_size`: QEMU offers SEG_MAX, GEOMETRY, BLK_SIZE, TOPOLOGY,
    /// FLUSH, CONFIG_WCE, DISCARD, WRITE_ZEROES.
    pub fn blk(sectors: u64, blk_size: u32, iommu_platform: bool) -> Self {
        let bits = 1 << 2 | 1 << 4 | 1 << 6 | 1 << 10 | 1 << 9 | 1 << 11 | 1 << 13 | 1 << 14;
        Self::new(
            FakeDevice::Blk(FakeBlk {
                disk: alloc::vec![0; (sectors * 512) as usize],
                blk_size,
                read_only: false,
                seen: Vec::new(),
            }),
            bits,
            1,
            iommu_platform,
        )
    }

    /// virtio-scsi with the given LUNs (QEMU offers HOTPLUG and CHANGE).
    pub fn scsi(luns: Vec<FakeLun>, iommu_platform: bool) -> Self {
        Self::new(
            FakeDevice::Scsi(FakeScsi {
                luns,
                max_target: 255,
                seen: Vec::new(),
            }),
            1 << 1 | 1 << 2,
            3,
            iommu_platform,
        )
    }

    pub fn blk_mut(&mut self) -> Option<&mut FakeBlk> {
        match &mut self.device {
            FakeDevice::Blk(b) => Some(b),
            _ => None,
        }
    }
    pub fn scsi_mut(&mut self) -> Option<&mut FakeScsi> {
        match &mut self.device {
            FakeDevice::Scsi(s) => Some(s),
            _ => None,
        }
    }

    fn negotiated_platform(&self) -> bool {
        self.driver_features & feature::ACCESS_PLATFORM != 0
    }

    fn reset(&mut self) {
        if self.faults.never_reset {
            return;
        }
        self.status = 0;
        self.driver_features = 0;
        self.qsel = 0;
        self.resets += 1;
        for q in &mut self.queues {
            *q = FakeVq::default();
        }
        if let FakeDevice::Scsi(s) = &mut self.device {
            for l in &mut s.luns {
                l.unit_attention = true;
            }
        }
    }

    fn device_config(&self) -> Vec<u8> {
        let mut c = alloc::vec![0u8; 64];
        match &self.device {
            FakeDevice::Blk(b) => {
                c[0..8].copy_from_slice(&(b.disk.len() as u64 / 512).to_le_bytes());
                c[12..16].copy_from_slice(&(QUEUE_MAX as u32 - 2).to_le_bytes());
                c[20..24].copy_from_slice(&b.blk_size.to_le_bytes());
            }
            FakeDevice::Scsi(s) => {
                c[0..4].copy_from_slice(&1u32.to_le_bytes());
                c[4..8].copy_from_slice(&(QUEUE_MAX as u32 - 2).to_le_bytes());
                c[8..12].copy_from_slice(&0xffffu32.to_le_bytes());
                c[12..16].copy_from_slice(&128u32.to_le_bytes());
                c[20..24].copy_from_slice(&96u32.to_le_bytes());
                c[24..28].copy_from_slice(&32u32.to_le_bytes());
                c[30..32].copy_from_slice(&s.max_target.to_le_bytes());
                c[32..36].copy_from_slice(&16383u32.to_le_bytes());
            }
        }
        c
    }

    /// A register read in the modern BAR (little-endian value).
    pub fn mmio_read(&mut self, off: u64, size: usize) -> u64 {
        if (DEVICE_OFF..DEVICE_OFF + 0x1000).contains(&off) {
            let c = self.device_config();
            let o = (off - DEVICE_OFF) as usize;
            return (0..size)
                .rev()
                .map(|i| c.get(o + i).copied().unwrap_or(0) as u64)
                .fold(0, |v, b| v << 8 | b);
        }
        if (ISR_OFF..ISR_OFF + 0x1000).contains(&off) {
            return 0;
        }
        if off >= 0x1000 {
            return 0;
        }
        let q = self
            .queues
            .get(self.qsel as usize)
            .copied()
            .unwrap_or_default();
        match off {
            common::DEVICE_FEATURE_SELECT => self.dfsel as u64,
            common::DEVICE_FEATURE => match self.dfsel {
                0 => self.offered & 0xffff_ffff,
                1 => self.offered >> 32,
                _ => 0,
            },
            common::DRIVER_FEATURE_SELECT => self.drfsel as u64,
            common::DRIVER_FEATURE => match self.drfsel {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            common::MSIX_CONFIG => 0xffff,
            common::NUM_QUEUES => self.queues.len() as u64,
            common::DEVICE_STATUS => self.status as u64,
            common::CONFIG_GENERATION => 0,
            common::QUEUE_SELECT => self.qsel as u64,
            common::QUEUE_SIZE => {
                if (self.qsel as usize) < self.queues.len() {
                    if q.size == 0 {
                        QUEUE_MAX as u64
                    } else {
                        q.size as u64
                    }
                } else {
                    0
                }
            }
            common::QUEUE_MSIX_VECTOR => 0xffff,
            common::QUEUE_ENABLE => q.enable as u64,
            common::QUEUE_NOTIFY_OFF => self.qsel as u64,
            0x20 => q.desc & 0xffff_ffff,
            0x24 => q.desc >> 32,
            0x28 => q.avail & 0xffff_ffff,
            0x2c => q.avail >> 32,
            0x30 => q.used & 0xffff_ffff,
            0x34 => q.used >> 32,
            _ => 0,
        }
    }

    /// A register write in the modern BAR; notifications run the queue.
    pub fn mmio_write(&mut self, off: u64, size: usize, v: u64, dma: &mut DmaCtx) {
        if (NOTIFY_OFF..NOTIFY_OFF + 0x1000).contains(&off) {
            self.notifies += 1;
            let q = v as u16;
            if (off - NOTIFY_OFF) / NOTIFY_MULT as u64 == q as u64 {
                self.process(q, dma);
            }
            return;
        }
        if off >= 0x1000 {
            return;
        }
        let _ = size;
        let qsel = self.qsel as usize;
        let set_q = |me: &mut Self, f: &dyn Fn(&mut FakeVq)| {
            if let Some(q) = me.queues.get_mut(qsel) {
                f(q)
            }
        };
        let lo = |old: u64| (old & !0xffff_ffff) | (v & 0xffff_ffff);
        let hi = |old: u64| (old & 0xffff_ffff) | (v & 0xffff_ffff) << 32;
        match off {
            common::DEVICE_FEATURE_SELECT => self.dfsel = v as u32,
            common::DRIVER_FEATURE_SELECT => self.drfsel = v as u32,
            common::DRIVER_FEATURE => {
                if self.status & status::FEATURES_OK == 0 {
                    match self.drfsel {
                        0 => self.driver_features = lo(self.driver_features),
                        1 => self.driver_features = hi(self.driver_features),
                        _ => {}
                    }
                }
            }
            common::DEVICE_STATUS => {
                let new = v as u8;
                if new == 0 {
                    self.reset();
                    return;
                }
                let mut s = new;
                if new & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
                    let ok = !self.faults.refuse_features
                        && self.driver_features & !self.offered == 0
                        && self.driver_features & feature::VERSION_1 != 0
                        && (!self.iommu_platform || self.negotiated_platform());
                    if !ok {
                        s &= !status::FEATURES_OK;
                    }
                }
                self.status = s | (self.status & status::DEVICE_NEEDS_RESET);
            }
            common::QUEUE_SELECT => self.qsel = v as u16,
            common::QUEUE_SIZE => set_q(self, &|q| q.size = v as u16),
            common::QUEUE_ENABLE => set_q(self, &|q| q.enable = v & 1 != 0),
            0x20 => set_q(self, &|q| q.desc = lo(q.desc)),
            0x24 => set_q(self, &|q| q.desc = hi(q.desc)),
            0x28 => set_q(self, &|q| q.avail = lo(q.avail)),
            0x2c => set_q(self, &|q| q.avail = hi(q.avail)),
            0x30 => set_q(self, &|q| q.used = lo(q.used)),
            0x34 => set_q(self, &|q| q.used = hi(q.used)),
            _ => {}
        }
    }

    fn read_mem(&mut self, dma: &mut DmaCtx, at: u64, buf: &mut [u8]) -> bool {
        let ok = if self.negotiated_platform() {
            dma.read(at, buf).is_ok()
        } else {
            use crate::memory::Memory;
            dma.mem.read(at, buf).is_ok()
        };
        if !ok {
            self.fault();
        }
        ok
    }

    fn write_mem(&mut self, dma: &mut DmaCtx, at: u64, data: &[u8]) -> bool {
        let ok = if self.negotiated_platform() {
            dma.write(at, data).is_ok()
        } else {
            use crate::memory::Memory;
            dma.mem.write(at, data).is_ok()
        };
        if !ok {
            self.fault();
        }
        ok
    }

    fn fault(&mut self) {
        self.dma_faults += 1;
        self.status |= status::DEVICE_NEEDS_RESET;
    }

    /// Run every available chain of queue `qi`.
    fn process(&mut self, qi: u16, dma: &mut DmaCtx) {
        if self.status & status::DRIVER_OK == 0 || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        let Some(q) = self.queues.get(qi as usize).copied() else {
            return;
        };
        if !q.enable || q.size == 0 {
            return;
        }
        let mut q = q;
        for _ in 0..q.size {
            let mut b = [0u8; 2];
            if !self.read_mem(dma, q.avail + 2, &mut b) {
                return;
            }
            let avail_idx = u16::from_le_bytes(b);
            if avail_idx == q.last_avail {
                break;
            }
            let slot = (q.last_avail % q.size) as u64;
            if !self.read_mem(dma, q.avail + 4 + 2 * slot, &mut b) {
                return;
            }
            let head = u16::from_le_bytes(b);
            q.last_avail = q.last_avail.wrapping_add(1);
            // Walk the chain.
            let mut chain = Vec::new();
            let mut i = head;
            for _ in 0..q.size {
                let mut d = [0u8; 16];
                if i >= q.size || !self.read_mem(dma, q.desc + 16 * i as u64, &mut d) {
                    self.fault();
                    return;
                }
                let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
                let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
                let flags = u16::from_le_bytes([d[12], d[13]]);
                let next = u16::from_le_bytes([d[14], d[15]]);
                chain.push((addr, len, flags & 2 != 0));
                if flags & 1 == 0 {
                    break;
                }
                i = next;
            }
            if self.faults.swallow {
                if let Some(sq) = self.queues.get_mut(qi as usize) {
                    sq.last_avail = q.last_avail;
                }
                return;
            }
            // Readable part, in order.
            let mut out = Vec::new();
            for (addr, len, w) in &chain {
                if !*w {
                    let mut v = alloc::vec![0u8; *len as usize];
                    if !self.read_mem(dma, *addr, &mut v) {
                        return;
                    }
                    out.extend_from_slice(&v);
                }
            }
            let writable: Vec<(u64, u32)> =
                chain.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
            let room: usize = writable.iter().map(|w| w.1 as usize).sum();
            let reply = match qi {
                _ if matches!(self.device, FakeDevice::Blk(_)) => self.blk_request(&out, room),
                2 => self.scsi_request(&out, room),
                _ => Vec::new(),
            };
            // Scatter the reply.
            let mut done = 0usize;
            for (addr, len) in &writable {
                if done >= reply.len() {
                    break;
                }
                let n = (*len as usize).min(reply.len() - done);
                if !self.write_mem(dma, *addr, &reply[done..done + n]) {
                    return;
                }
                done += n;
            }
            let used_slot = (q.used_idx % q.size) as u64;
            let mut e = [0u8; 8];
            e[0..4].copy_from_slice(&(head as u32).to_le_bytes());
            e[4..8].copy_from_slice(&(done as u32).to_le_bytes());
            if !self.write_mem(dma, q.used + 4 + 8 * used_slot, &e) {
                return;
            }
            q.used_idx = q.used_idx.wrapping_add(1);
            if !self.write_mem(dma, q.used + 2, &q.used_idx.to_le_bytes()) {
                return;
            }
            if let Some(sq) = self.queues.get_mut(qi as usize) {
                sq.last_avail = q.last_avail;
                sq.used_idx = q.used_idx;
            }
        }
    }

    fn blk_request(&mut self, out: &[u8], room: usize) -> Vec<u8> {
        let forced = self.faults.blk_status;
        let FakeDevice::Blk(b) = &mut self.device else {
            return Vec::new();
        };
        if out.len() < 16 || room == 0 {
            return Vec::new();
        }
        let ty = u32::from_le_bytes(out[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(out[8..16].try_into().unwrap());
        let data_in = room - 1;
        let data_out = &out[16..];
        let start = sector.checked_mul(512).map(|s| s as usize);
        let mut reply = Vec::new();
        let st = match ty {
            0 => {
                b.seen.push(BlkSeen {
                    ty,
                    sector,
                    len: data_in as u32,
                });
                match start {
                    Some(s) if s + data_in <= b.disk.len() => {
                        reply.extend_from_slice(&b.disk[s..s + data_in]);
                        0
                    }
                    _ => {
                        reply.resize(data_in, 0);
                        1
                    }
                }
            }
            1 => {
                b.seen.push(BlkSeen {
                    ty,
                    sector,
                    len: data_out.len() as u32,
                });
                match start {
                    _ if b.read_only => 1,
                    Some(s) if s + data_out.len() <= b.disk.len() => {
                        b.disk[s..s + data_out.len()].copy_from_slice(data_out);
                        0
                    }
                    _ => 1,
                }
            }
            4 => 0,
            8 => {
                let mut id = alloc::vec![0u8; data_in];
                let serial = b"papr-virtio";
                let n = serial.len().min(data_in);
                id[..n].copy_from_slice(&serial[..n]);
                reply = id;
                0
            }
            _ => {
                reply.resize(data_in, 0);
                2
            }
        };
        reply.push(forced.unwrap_or(st));
        reply
    }

    fn scsi_request(&mut self, out: &[u8], room: usize) -> Vec<u8> {
        const RESP: usize = 12 + 96;
        let FakeDevice::Scsi(s) = &mut self.device else {
            return Vec::new();
        };
        let mut resp = alloc::vec![0u8; RESP];
        if out.len() < 19 + 32 || room < RESP {
            resp[11] = 9; // FAILURE
            return resp;
        }
        let lunf = &out[0..8];
        let cdb = &out[19..19 + 32];
        let data_out = &out[19 + 32..];
        let din_room = room - RESP;
        let target = lunf[1] as u16;
        let lun = (((lunf[2] as u32) << 8) | lunf[3] as u32) & 0x3fff;
        let valid_lun_field = lunf[0] == 1 && (lunf[2] == 0 || (0x40..0x80).contains(&lunf[2]));
        if !valid_lun_field || !s.luns.iter().any(|l| l.target == target) {
            resp[11] = 3; // BAD_TARGET
            return resp;
        }
        s.seen.push(ScsiSeen {
            target,
            lun,
            opcode: cdb[0],
        });
        let mut din: Vec<u8> = Vec::new();
        let check = |resp: &mut Vec<u8>, key: u8, asc: u8, ascq: u8| {
            resp[10] = 2; // CHECK CONDITION
            resp[0..4].copy_from_slice(&18u32.to_le_bytes());
            resp[12] = 0x70;
            resp[12 + 2] = key;
            resp[12 + 7] = 10;
            resp[12 + 12] = asc;
            resp[12 + 13] = ascq;
        };
        let unit = s
            .luns
            .iter_mut()
            .find(|l| l.target == target && l.lun == lun);
        match (cdb[0], unit) {
            (0x12, None) => {
                // INQUIRY of a LUN that does not exist: qualifier 3.
                din = alloc::vec![0u8; 36];
                din[0] = 0x7f;
            }
            (0x12, Some(l)) => {
                din = alloc::vec![0u8; 36];
                din[0] = l.peripheral;
                din[1] = if l.peripheral == 5 { 0x80 } else { 0 };
                din[2] = 5;
                din[3] = 2;
                din[4] = 31;
                din[8..16].copy_from_slice(b"QEMU    ");
                let prod: &[u8; 16] = if l.peripheral == 5 {
                    b"QEMU CD-ROM     "
                } else {
                    b"QEMU HARDDISK   "
                };
                din[16..32].copy_from_slice(prod);
                din[32..36].copy_from_slice(b"2.5+");
            }
            (0xa0, _) => {
                let mut list: Vec<u32> = s
                    .luns
                    .iter()
                    .filter(|l| l.target == target)
                    .map(|l| l.lun)
                    .collect();
                list.sort();
                din.extend_from_slice(&((8 * list.len()) as u32).to_be_bytes());
                din.extend_from_slice(&[0; 4]);
                for l in list {
                    let mut e = [0u8; 8];
                    if l < 256 {
                        e[1] = l as u8;
                    } else {
                        e[0] = 0x40 | (l >> 8) as u8;
                        e[1] = l as u8;
                    }
                    din.extend_from_slice(&e);
                }
            }
            (_, None) => check(&mut resp, 5, 0x25, 0),
            (_, Some(l)) if l.unit_attention => {
                l.unit_attention = false;
                check(&mut resp, 6, 0x29, 0);
            }
            (0x00, Some(_)) => {}
            (0x25, Some(l)) => {
                let blocks = l.disk.len() as u64 / l.block_size as u64;
                let last = (blocks - 1).min(u32::MAX as u64) as u32;
                din.extend_from_slice(&last.to_be_bytes());
                din.extend_from_slice(&l.block_size.to_be_bytes());
            }
            (0x9e, Some(l)) if cdb[1] & 0x1f == 0x10 => {
                let blocks = l.disk.len() as u64 / l.block_size as u64;
                din.extend_from_slice(&(blocks - 1).to_be_bytes());
                din.extend_from_slice(&l.block_size.to_be_bytes());
                din.resize(32, 0);
            }
            (op @ (0x28 | 0x88 | 0x2a | 0x8a), Some(l)) => {
                let (lba, n) = if op == 0x28 || op == 0x2a {
                    (
                        u32::from_be_bytes(cdb[2..6].try_into().unwrap()) as u64,
                        u16::from_be_bytes([cdb[7], cdb[8]]) as u64,
                    )
                } else {
                    (
                        u64::from_be_bytes(cdb[2..10].try_into().unwrap()),
                        u32::from_be_bytes(cdb[10..14].try_into().unwrap()) as u64,
                    )
                };
                let bs = l.block_size as u64;
                let start = (lba * bs) as usize;
                let len = (n * bs) as usize;
                if start + len > l.disk.len() {
                    check(&mut resp, 5, 0x21, 0);
                } else if op == 0x28 || op == 0x88 {
                    din.extend_from_slice(&l.disk[start..start + len]);
                } else if data_out.len() < len || l.peripheral == 5 {
                    check(&mut resp, 5, 0x24, 0);
                } else {
                    l.disk[start..start + len].copy_from_slice(&data_out[..len]);
                }
            }
            _ => check(&mut resp, 5, 0x20, 0),
        }
        let resid = din_room.saturating_sub(din.len());
        din.truncate(din_room);
        resp[4..8].copy_from_slice(&(resid as u32).to_le_bytes());
        resp.extend_from_slice(&din);
        resp
    }
}

/// A LUN of `blocks` blocks of `block_size` bytes.
pub fn lun(target: u16, lun: u32, peripheral: u8, blocks: u64, block_size: u32) -> FakeLun {
    FakeLun {
        target,
        lun,
        peripheral,
        disk: alloc::vec![0; (blocks * block_size as u64) as usize],
        block_size,
        unit_attention: true,
    }
}

/// The serial the fake virtio-blk reports.
pub fn serial() -> String {
    String::from("papr-virtio")
}
