//! virtio-blk (Virtio 1.1 §5.2 "Block Device": §5.2.3 feature bits,
//! §5.2.4 device configuration layout, §5.2.6 device operation) over the
//! modern virtio-pci transport ([`super::virtio`]).
//!
//! One request queue (queue 0).  A request is three descriptors: the
//! 16-byte header `{type, reserved, sector}` the device reads, the data
//! buffer (written by the device for a read), and the one-byte status the
//! device writes.  Sectors are always 512 bytes on the wire whatever the
//! logical block size (`blk_size`, with VIRTIO_BLK_F_BLK_SIZE) is; this
//! driver presents the logical block size and converts.  Header and status
//! live on their own pages with the least permission (read / write).

use super::block::{in_pieces, BlockDevice, BlockError};
use super::virtio::{
    bring_up, data_bus, default_data_path, setup_queue, shutdown, unmap_data, DataPath, DmaBuf,
    DmaBufs, Segment, Transport, VirtioConfig, VirtioDma, VirtioError, Virtqueue,
};
use crate::platform::Platform;
use crate::tce::{Perm, TceManager};

/// Feature bits (§5.2.3).
pub mod feature {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
}

/// Device configuration offsets (§5.2.4).
pub mod config {
    pub const CAPACITY: u64 = 0;
    pub const SIZE_MAX: u64 = 8;
    pub const SEG_MAX: u64 = 12;
    pub const BLK_SIZE: u64 = 20;
}

/// Request types and status values (§5.2.6).
pub mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const S_OK: u8 = 0;
    pub const S_IOERR: u8 = 1;
    pub const S_UNSUPP: u8 = 2;
}

/// The wire sector.
pub const SECTOR: u64 = 512;
/// Largest transfer per request this driver issues.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// An initialised virtio-blk device.
pub struct VirtioBlk {
    t: Transport,
    cfg: VirtioConfig,
    vq: Virtqueue,
    hdr: DmaBuf,
    status: DmaBuf,
    bufs: DmaBufs,
    dma: VirtioDma,
    data: DataPath,
    features: u64,
    sectors: u64,
    block_size: u32,
    max_bytes: u64,
    failed: bool,
    /// Requests completed.
    pub requests: u64,
}

impl VirtioBlk {
    /// Negotiate, set up the request queue and read the geometry.  `window`
    /// is the PHB's default DMA window (used with ACCESS_PLATFORM).  On
    /// failure the device is reset (or marked FAILED) and its memory freed.
    pub fn init<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        t: Transport,
        window: Option<u32>,
        cfg: VirtioConfig,
    ) -> Result<VirtioBlk, VirtioError> {
        let wanted =
            feature::SIZE_MAX | feature::SEG_MAX | feature::RO | feature::BLK_SIZE | feature::FLUSH;
        let (mut d, bufs) = bring_up(p, tces, t, window, cfg, wanted, Self::setup)?;
        d.bufs = bufs;
        Ok(d)
    }

    fn setup<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        bufs: &mut DmaBufs,
        t: Transport,
        cfg: VirtioConfig,
        features: u64,
        dma: VirtioDma,
    ) -> Result<VirtioBlk, VirtioError> {
        let vq = setup_queue(p, tces, bufs, &t, dma, &cfg, 0)?;
        let hdr = bufs.alloc(p, tces, dma, 16, Perm::Read)?;
        let status = bufs.alloc(p, tces, dma, 1, Perm::Write)?;
        let sectors = t.device_config(p, config::CAPACITY, 8)?;
        let mut block_size = SECTOR as u32;
        if features & feature::BLK_SIZE != 0 {
            let bs = t.device_config(p, config::BLK_SIZE, 4)? as u32;
            if bs.is_power_of_two() && (512..=65536).contains(&bs) {
                block_size = bs;
            }
        }
        let mut max_bytes = MAX_REQUEST_BYTES;
        if features & feature::SIZE_MAX != 0 {
            let sm = t.device_config(p, config::SIZE_MAX, 4)?;
            if sm >= block_size as u64 {
                max_bytes = max_bytes.min(sm);
            }
        }
        t.driver_ok(p)?;
        Ok(VirtioBlk {
            t,
            cfg,
            vq,
            hdr,
            status,
            bufs: DmaBufs::default(),
            dma,
            data: default_data_path(dma),
            features,
            sectors,
            block_size,
            max_bytes,
            failed: false,
            requests: 0,
        })
    }

    pub fn features(&self) -> u64 {
        self.features
    }
    /// Whether rings and buffers go through TCEs (ACCESS_PLATFORM).
    pub fn dma(&self) -> VirtioDma {
        self.dma
    }
    pub fn data_path(&self) -> DataPath {
        self.data
    }
    pub fn set_data_path(&mut self, d: DataPath) {
        self.data = d;
    }
    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn request<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        ty: u32,
        sector: u64,
        data: Option<(u64, u64)>,
    ) -> Result<(), VirtioError> {
        if self.failed {
            return Err(VirtioError::Failed);
        }
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        p.write(self.hdr.phys, &h)?;
        p.write(self.status.phys, &[0xff])?;
        let device_writes = ty == req::IN || ty == req::GET_ID;
        let mut segs = alloc::vec![Segment {
            bus: self.hdr.bus,
            len: 16,
            device_writes: false,
        }];
        let mut mapping = None;
        if let Some((phys, len)) = data {
            let (bus, m) = data_bus(p, tces, self.data, phys, len, device_writes)?;
            mapping = m;
            segs.push(Segment {
                bus,
                len: len as u32,
                device_writes,
            });
        }
        segs.push(Segment {
            bus: self.status.bus,
            len: 1,
            device_writes: true,
        });
        let what = match ty {
            req::IN => "virtio-blk read",
            req::OUT => "virtio-blk write",
            req::FLUSH => "virtio-blk flush",
            _ => "virtio-blk request",
        };
        let r = self.vq.submit(p, &self.t, &self.cfg, &segs, what);
        if let Err(e) = unmap_data(p, tces, mapping, r) {
            if e.fails_device() {
                self.failed = true;
            }
            return Err(e);
        }
        self.requests += 1;
        let mut st = [0u8; 1];
        p.read(self.status.phys, &mut st)?;
        match st[0] {
            req::S_OK => Ok(()),
            req::S_IOERR => Err(VirtioError::Device("virtio-blk: I/O error")),
            req::S_UNSUPP => Err(VirtioError::Device("virtio-blk: request not supported")),
            _ => Err(VirtioError::Device("virtio-blk: no status written")),
        }
    }

    /// Flush the volatile write cache (when the device has one).
    pub fn flush<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Result<(), VirtioError> {
        if self.features & feature::FLUSH == 0 {
            return Ok(());
        }
        self.request(p, tces, req::FLUSH, 0, None)
    }

    /// Reset the device (it stops using its rings) and free its memory.
    pub fn shutdown<P: Platform + ?Sized>(
        mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Result<(), VirtioError> {
        shutdown(p, tces, &self.t, &self.cfg, &mut self.bufs)
    }
}

impl BlockDevice for VirtioBlk {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn blocks(&self) -> u64 {
        self.sectors / (self.block_size as u64 / SECTOR)
    }
    fn max_blocks(&self) -> u64 {
        (self.max_bytes / self.block_size as u64).max(1)
    }
    fn read_only(&self) -> bool {
        self.features & feature::RO != 0
    }
    fn transfer_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        write: bool,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError> {
        let bs = self.block_size as u64;
        let spb = bs / SECTOR;
        let ty = if write { req::OUT } else { req::IN };
        in_pieces(lba, count, phys, bs, self.max_blocks(), |lba, n, buf| {
            self.request(p, tces, ty, lba * spb, Some((buf, n * bs)))
                .map_err(BlockError::from)
        })
    }
}
