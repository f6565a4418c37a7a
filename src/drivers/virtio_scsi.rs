//! virtio-scsi (Virtio 1.1 §5.6 "SCSI Host Device": §5.6.2 virtqueues,
//! §5.6.4 device configuration layout, §5.6.6.1 device operation: request
//! queues) over the modern virtio-pci transport ([`super::virtio`]), and the
//! SCSI commands a firmware needs to find and read disks (SPC-4 INQUIRY,
//! REPORT LUNS, TEST UNIT READY, REQUEST SENSE data formats; SBC-3 READ
//! CAPACITY (10)/(16), READ (10)/(16), WRITE (10)/(16)).
//!
//! Queues 0 (control) and 1 (event) are set up but never used; commands go
//! to queue 2, one at a time.  A command is a chain: the request header
//! with the CDB (device reads), data-out if any, the response with the sense
//! buffer (device writes), data-in if any.  LUNs are addressed in the
//! single-level format virtio-scsi defines: `01 target 40|lun>>8 lun 0 0 0 0`.
//!
//! [`VirtioScsi::scan`] sends INQUIRY to LUN 0 of every target up to the
//! device's `max_target` (QEMU answers `VIRTIO_SCSI_S_BAD_TARGET` for
//! targets with no device), REPORT LUNS to each target that answers, and
//! INQUIRY, TEST UNIT READY and READ CAPACITY to each LUN; direct-access
//! (type 0) and CD/DVD (type 5) units with a medium become [`ScsiLun`]s.
//! A UNIT ATTENTION (the reset QEMU reports first) is retried.

use super::block::{in_pieces, BlockDevice, BlockError};
use super::virtio::{
    bring_up, data_bus, default_data_path, setup_queue, shutdown, unmap_data, DataPath, DmaBuf,
    DmaBufs, Segment, Transport, VirtioConfig, VirtioDma, VirtioError, Virtqueue,
};
use crate::platform::Platform;
use crate::tce::{Perm, TceManager};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Device configuration offsets (§5.6.4).
pub mod config {
    pub const NUM_QUEUES: u64 = 0;
    pub const SEG_MAX: u64 = 4;
    pub const MAX_SECTORS: u64 = 8;
    pub const SENSE_SIZE: u64 = 20;
    pub const CDB_SIZE: u64 = 24;
    pub const MAX_CHANNEL: u64 = 28;
    pub const MAX_TARGET: u64 = 30;
    pub const MAX_LUN: u64 = 32;
}

/// `response` values of a command (§5.6.6.1).
pub mod response {
    pub const OK: u8 = 0;
    pub const OVERRUN: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const BAD_TARGET: u8 = 3;
    pub const RESET: u8 = 4;
    pub const BUSY: u8 = 5;
    pub const TRANSPORT_FAILURE: u8 = 6;
    pub const TARGET_FAILURE: u8 = 7;
    pub const NEXUS_FAILURE: u8 = 8;
    pub const FAILURE: u8 = 9;
}

/// SCSI opcodes used here.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const INQUIRY: u8 = 0x12;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const READ_CAPACITY_16_SA: u8 = 0x10;
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// SCSI status byte values.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const BUSY: u8 = 0x08;
}

/// Sense keys.
pub mod sense_key {
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
}

/// Peripheral device types (INQUIRY byte 0, bits 0–4).
pub mod peripheral {
    pub const DISK: u8 = 0x00;
    pub const CDROM: u8 = 0x05;
}

/// The largest CDB and sense buffer this driver lays out.
const MAX_CDB: usize = 32;
const MAX_SENSE: usize = 96;
/// Request header before the CDB: lun[8], id, task_attr, prio, crn.
const REQ_HEAD: usize = 19;
/// Response before the sense data: sense_len, resid, status_qualifier,
/// status, response.
const RESP_HEAD: usize = 12;
/// Largest transfer per command.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// Retries for UNIT ATTENTION and BUSY.
const RETRIES: u32 = 4;
/// Most LUNs taken from one REPORT LUNS.
const MAX_REPORTED: usize = 64;

/// A failed SCSI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScsiError {
    /// The transport's `response` was not OK.
    Response(u8),
    /// CHECK CONDITION with this sense.
    Check { key: u8, asc: u8, ascq: u8 },
    /// Another status byte.
    Status(u8),
    /// The data returned was too short or malformed.
    BadData(&'static str),
    /// The LUN is not a disk papr-fw can use.
    NotUsable(&'static str),
}

fn response_name(r: u8) -> &'static str {
    match r {
        response::OVERRUN => "OVERRUN",
        response::ABORTED => "ABORTED",
        response::BAD_TARGET => "BAD_TARGET",
        response::RESET => "RESET",
        response::BUSY => "BUSY",
        response::TRANSPORT_FAILURE => "TRANSPORT_FAILURE",
        response::TARGET_FAILURE => "TARGET_FAILURE",
        response::NEXUS_FAILURE => "NEXUS_FAILURE",
        response::FAILURE => "FAILURE",
        _ => "unknown response",
    }
}

impl fmt::Display for ScsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScsiError::Response(r) => write!(f, "virtio-scsi response {r} ({})", response_name(r)),
            ScsiError::Check { key, asc, ascq } => write!(
                f,
                "CHECK CONDITION, sense key {key:#x} ASC {asc:#04x} ASCQ {ascq:#04x}"
            ),
            ScsiError::Status(s) => write!(f, "SCSI status {s:#04x}"),
            ScsiError::BadData(w) => write!(f, "bad data: {w}"),
            ScsiError::NotUsable(w) => write!(f, "{w}"),
        }
    }
}

/// A logical unit found by [`VirtioScsi::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiLun {
    pub target: u16,
    pub lun: u32,
    /// INQUIRY peripheral device type.
    pub peripheral: u8,
    pub removable: bool,
    pub vendor: String,
    pub product: String,
    pub block_size: u32,
    pub blocks: u64,
}

impl ScsiLun {
    /// The unit address QEMU's boot paths use for a device on a virtio-scsi
    /// bus (hw/ppc/spapr.c `spapr_get_fw_dev_path`): the SRP-style LUN
    /// `0x01000000 | target << 16 | lun` (flat addressing 0x4000 for LUNs
    /// of 256 and up) in the top 32 bits of a 64-bit number.
    pub fn unit_address(&self) -> u64 {
        let mut id = 0x0100_0000u64 | (self.target as u64) << 16 | self.lun as u64;
        if self.lun >= 256 {
            id |= 0x4000;
        }
        id << 32
    }

    /// The node name for the device tree: `disk@<unit address in hex>`.
    pub fn node_name(&self) -> String {
        alloc::format!(
            "{}@{:x}",
            if self.peripheral == peripheral::CDROM {
                "cdrom"
            } else {
                "disk"
            },
            self.unit_address()
        )
    }
}

/// The 8-byte virtio-scsi LUN field.
pub fn lun_field(target: u16, lun: u32) -> [u8; 8] {
    [
        1,
        target as u8,
        0x40 | ((lun >> 8) & 0x3f) as u8,
        lun as u8,
        0,
        0,
        0,
        0,
    ]
}

/// What one command returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes of data-in the device did not fill.
    pub resid: u32,
}

fn ascii(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|c| {
            if c.is_ascii_graphic() {
                *c as char
            } else {
                ' '
            }
        })
        .collect();
    String::from(s.trim())
}

/// An initialised virtio-scsi host adapter.
pub struct VirtioScsi {
    t: Transport,
    cfg: VirtioConfig,
    vq: Virtqueue,
    req: DmaBuf,
    resp: DmaBuf,
    scratch: DmaBuf,
    bufs: DmaBufs,
    dma: VirtioDma,
    data: DataPath,
    features: u64,
    cdb_size: usize,
    sense_size: usize,
    max_target: u16,
    max_lun: u32,
    max_bytes: u64,
    tag: u64,
    failed: bool,
    pub luns: Vec<ScsiLun>,
    /// Commands sent.
    pub commands: u64,
}

impl VirtioScsi {
    /// Negotiate, set up the three queues and read the configuration (no
    /// commands yet: see [`scan`](Self::scan)).
    pub fn init<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        t: Transport,
        window: Option<u32>,
        cfg: VirtioConfig,
    ) -> Result<VirtioScsi, VirtioError> {
        let (mut d, bufs) = bring_up(p, tces, t, window, cfg, 0, Self::setup)?;
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
    ) -> Result<VirtioScsi, VirtioError> {
        // Control and event queues exist on every virtio-scsi device; the
        // request queue is the third.
        setup_queue(p, tces, bufs, &t, dma, &cfg, 0)?;
        setup_queue(p, tces, bufs, &t, dma, &cfg, 1)?;
        let vq = setup_queue(p, tces, bufs, &t, dma, &cfg, 2)?;
        let cdb_size = t.device_config(p, config::CDB_SIZE, 4)? as usize;
        let sense_size = t.device_config(p, config::SENSE_SIZE, 4)? as usize;
        if !(16..=MAX_CDB).contains(&cdb_size) || sense_size > MAX_SENSE {
            return Err(VirtioError::Device(
                "virtio-scsi: CDB or sense size this driver does not lay out",
            ));
        }
        let max_target = t.device_config(p, config::MAX_TARGET, 2)? as u16;
        let max_lun = t.device_config(p, config::MAX_LUN, 4)? as u32;
        let max_sectors = t.device_config(p, config::MAX_SECTORS, 4)?;
        let mut max_bytes = MAX_REQUEST_BYTES;
        if max_sectors != 0 {
            max_bytes = max_bytes.min(max_sectors * 512);
        }
        let req = bufs.alloc(p, tces, dma, (REQ_HEAD + MAX_CDB) as u64, Perm::Read)?;
        let resp = bufs.alloc(p, tces, dma, (RESP_HEAD + MAX_SENSE) as u64, Perm::Write)?;
        let scratch = bufs.alloc(p, tces, dma, 4096, Perm::Write)?;
        t.driver_ok(p)?;
        Ok(VirtioScsi {
            t,
            cfg,
            vq,
            req,
            resp,
            scratch,
            bufs: DmaBufs::default(),
            dma,
            data: default_data_path(dma),
            features,
            cdb_size,
            sense_size,
            max_target,
            max_lun,
            max_bytes,
            tag: 0,
            failed: false,
            luns: Vec::new(),
            commands: 0,
        })
    }

    pub fn features(&self) -> u64 {
        self.features
    }
    pub fn dma(&self) -> VirtioDma {
        self.dma
    }
    pub fn data_path(&self) -> DataPath {
        self.data
    }
    pub fn set_data_path(&mut self, d: DataPath) {
        self.data = d;
    }
    pub fn max_target(&self) -> u16 {
        self.max_target
    }
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Send `cdb` to `target`/`lun`; `data` is the data buffer (bus
    /// address, length, whether the device writes it).  CHECK CONDITION and
    /// other statuses are errors carrying the sense.
    pub fn command<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
        cdb: &[u8],
        data: Option<Segment>,
    ) -> Result<Outcome, BlockError> {
        if self.failed {
            return Err(VirtioError::Failed.into());
        }
        if cdb.len() > self.cdb_size {
            return Err(VirtioError::BadRequest("CDB longer than the device takes").into());
        }
        self.tag = self.tag.wrapping_add(1);
        let mut r = alloc::vec![0u8; REQ_HEAD + self.cdb_size];
        r[0..8].copy_from_slice(&lun_field(target, lun));
        r[8..16].copy_from_slice(&self.tag.to_le_bytes());
        r[REQ_HEAD..REQ_HEAD + cdb.len()].copy_from_slice(cdb);
        p.write(self.req.phys, &r).map_err(VirtioError::from)?;
        let resp_len = RESP_HEAD + self.sense_size;
        // A response the device never writes must not look like success.
        let mut poison = alloc::vec![0u8; resp_len];
        poison[11] = 0xff;
        p.write(self.resp.phys, &poison)
            .map_err(VirtioError::from)?;
        let mut segs = alloc::vec![Segment {
            bus: self.req.bus,
            len: r.len() as u32,
            device_writes: false,
        }];
        let resp = Segment {
            bus: self.resp.bus,
            len: resp_len as u32,
            device_writes: true,
        };
        // Request, data-out, response, data-in (§5.6.6.1).
        match data {
            Some(d) if !d.device_writes => segs.extend([d, resp]),
            Some(d) => segs.extend([resp, d]),
            None => segs.push(resp),
        }
        self.commands += 1;
        if let Err(e) = self
            .vq
            .submit(p, &self.t, &self.cfg, &segs, "virtio-scsi command")
        {
            if e.fails_device() {
                self.failed = true;
            }
            return Err(e.into());
        }
        let mut out = alloc::vec![0u8; resp_len];
        p.read(self.resp.phys, &mut out)
            .map_err(VirtioError::from)?;
        let resid = u32::from_le_bytes([out[4], out[5], out[6], out[7]]);
        let (st, rsp) = (out[10], out[11]);
        if rsp != response::OK {
            return Err(ScsiError::Response(rsp).into());
        }
        match st {
            status::GOOD => Ok(Outcome { resid }),
            status::CHECK_CONDITION => {
                let sense_len = (u32::from_le_bytes([out[0], out[1], out[2], out[3]]) as usize)
                    .min(self.sense_size);
                let s = &out[RESP_HEAD..RESP_HEAD + sense_len];
                let (key, asc, ascq) = parse_sense(s);
                Err(ScsiError::Check { key, asc, ascq }.into())
            }
            s => Err(ScsiError::Status(s).into()),
        }
    }

    /// [`command`](Self::command) retried on UNIT ATTENTION and BUSY.
    pub fn command_retry<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
        cdb: &[u8],
        data: Option<Segment>,
    ) -> Result<Outcome, BlockError> {
        let mut tries = 0;
        loop {
            let r = self.command(p, target, lun, cdb, data);
            let again = matches!(
                r,
                Err(BlockError::Scsi(
                    ScsiError::Check {
                        key: sense_key::UNIT_ATTENTION,
                        ..
                    } | ScsiError::Status(status::BUSY)
                        | ScsiError::Response(response::BUSY)
                ))
            );
            tries += 1;
            if !again || tries > RETRIES {
                return r;
            }
        }
    }

    /// A command whose data-in lands in the scratch page; returns the bytes.
    fn scratch_in<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
        cdb: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, BlockError> {
        let len = len.min(self.scratch.size as usize);
        p.fill(self.scratch.phys, len as u64, 0)
            .map_err(VirtioError::from)?;
        let seg = Segment {
            bus: self.scratch.bus,
            len: len as u32,
            device_writes: true,
        };
        let o = self.command_retry(p, target, lun, cdb, Some(seg))?;
        let got = len.saturating_sub(o.resid as usize);
        let mut v = alloc::vec![0u8; got];
        p.read(self.scratch.phys, &mut v)
            .map_err(VirtioError::from)?;
        Ok(v)
    }

    fn inquiry<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
    ) -> Result<Vec<u8>, BlockError> {
        let cdb = [op::INQUIRY, 0, 0, 0, 36, 0];
        let d = self.scratch_in(p, target, lun, &cdb, 36)?;
        if d.len() < 5 {
            return Err(ScsiError::BadData("short INQUIRY data").into());
        }
        Ok(d)
    }

    fn report_luns<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
    ) -> Result<Vec<u32>, BlockError> {
        let alloc = (8 + 8 * MAX_REPORTED) as u32;
        let mut cdb = [0u8; 12];
        cdb[0] = op::REPORT_LUNS;
        cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
        let d = self.scratch_in(p, target, 0, &cdb, alloc as usize)?;
        if d.len() < 8 {
            return Err(ScsiError::BadData("short REPORT LUNS data").into());
        }
        let list_len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let mut luns = Vec::new();
        for e in d[8..].chunks_exact(8).take(list_len / 8) {
            let lun = match e[0] >> 6 {
                0 => e[1] as u32,
                1 => ((e[0] as u32 & 0x3f) << 8) | e[1] as u32,
                _ => continue,
            };
            if !luns.contains(&lun) {
                luns.push(lun);
            }
        }
        Ok(luns)
    }

    /// READ CAPACITY (10), then (16) when the disk is too large for it:
    /// (block size, blocks).
    fn capacity<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
    ) -> Result<(u32, u64), BlockError> {
        let mut cdb = [0u8; 10];
        cdb[0] = op::READ_CAPACITY_10;
        let d = self.scratch_in(p, target, lun, &cdb, 8)?;
        if d.len() < 8 {
            return Err(ScsiError::BadData("short READ CAPACITY data").into());
        }
        let last = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let mut bs = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        let blocks = if last == u32::MAX {
            let mut cdb = [0u8; 16];
            cdb[0] = op::SERVICE_ACTION_IN_16;
            cdb[1] = op::READ_CAPACITY_16_SA;
            cdb[10..14].copy_from_slice(&32u32.to_be_bytes());
            let d = self.scratch_in(p, target, lun, &cdb, 32)?;
            if d.len() < 12 {
                return Err(ScsiError::BadData("short READ CAPACITY (16) data").into());
            }
            let mut l = [0u8; 8];
            l.copy_from_slice(&d[..8]);
            bs = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
            u64::from_be_bytes(l).saturating_add(1)
        } else {
            last as u64 + 1
        };
        if !bs.is_power_of_two() || !(512..=65536).contains(&bs) {
            return Err(ScsiError::NotUsable("block size papr-fw does not support").into());
        }
        Ok((bs, blocks))
    }

    /// Find the LUNs (see the module documentation).  Returns lines
    /// describing what was skipped and why.
    pub fn scan<P: Platform + ?Sized>(&mut self, p: &mut P) -> Vec<String> {
        let mut notes = Vec::new();
        self.luns.clear();
        let top = self.max_target.min(255);
        for target in 0..=top {
            if self.failed {
                notes.push(String::from("adapter failed; scan stopped"));
                break;
            }
            match self.inquiry(p, target, 0) {
                Err(BlockError::Scsi(ScsiError::Response(response::BAD_TARGET))) => continue,
                Err(e) => {
                    notes.push(alloc::format!("target {target}: INQUIRY: {e}"));
                    continue;
                }
                Ok(_) => {}
            }
            let luns = match self.report_luns(p, target) {
                Ok(l) if !l.is_empty() => l,
                Ok(_) => alloc::vec![0],
                Err(e) => {
                    notes.push(alloc::format!(
                        "target {target}: REPORT LUNS: {e}; trying LUN 0"
                    ));
                    alloc::vec![0]
                }
            };
            for lun in luns {
                if lun > self.max_lun {
                    continue;
                }
                match self.probe_lun(p, target, lun) {
                    Ok(Some(l)) => self.luns.push(l),
                    Ok(None) => {}
                    Err(e) => notes.push(alloc::format!("target {target} lun {lun}: {e}")),
                }
            }
        }
        notes
    }

    fn probe_lun<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        target: u16,
        lun: u32,
    ) -> Result<Option<ScsiLun>, BlockError> {
        let inq = self.inquiry(p, target, lun)?;
        let (qualifier, ty) = (inq[0] >> 5, inq[0] & 0x1f);
        if qualifier != 0 {
            return Ok(None);
        }
        if ty != peripheral::DISK && ty != peripheral::CDROM {
            return Ok(None);
        }
        let removable = inq[1] & 0x80 != 0;
        let vendor = inq.get(8..16).map(ascii).unwrap_or_default();
        let product = inq.get(16..32).map(ascii).unwrap_or_default();
        let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
        if let Err(e) = self.command_retry(p, target, lun, &tur, None) {
            if ty == peripheral::CDROM {
                // No medium: nothing to boot from.
                return Ok(None);
            }
            return Err(e);
        }
        let (block_size, blocks) = self.capacity(p, target, lun)?;
        Ok(Some(ScsiLun {
            target,
            lun,
            peripheral: ty,
            removable,
            vendor,
            product,
            block_size,
            blocks,
        }))
    }

    /// A view of LUN `index` of [`luns`](Self::luns) as a block device.
    pub fn disk(&mut self, index: usize) -> Option<ScsiDisk<'_>> {
        (index < self.luns.len()).then_some(ScsiDisk { ctrl: self, index })
    }

    #[allow(clippy::too_many_arguments)]
    fn rw<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        index: usize,
        write: bool,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError> {
        let l = self
            .luns
            .get(index)
            .cloned()
            .ok_or(BlockError::OutOfRange {
                lba,
                count,
                blocks: 0,
            })?;
        let bs = l.block_size as u64;
        let per = self.blocks_per_command(l.block_size);
        in_pieces(lba, count, phys, bs, per, |at, n, buf| {
            let cdb: Vec<u8> = if at + n <= u32::MAX as u64 {
                let mut c = alloc::vec![0u8; 10];
                c[0] = if write { op::WRITE_10 } else { op::READ_10 };
                c[2..6].copy_from_slice(&(at as u32).to_be_bytes());
                c[7..9].copy_from_slice(&(n as u16).to_be_bytes());
                c
            } else {
                let mut c = alloc::vec![0u8; 16];
                c[0] = if write { op::WRITE_16 } else { op::READ_16 };
                c[2..10].copy_from_slice(&at.to_be_bytes());
                c[10..14].copy_from_slice(&(n as u32).to_be_bytes());
                c
            };
            let len = n * bs;
            let (bus, m) = data_bus(p, tces, self.data, buf, len, !write)?;
            let seg = Segment {
                bus,
                len: len as u32,
                device_writes: !write,
            };
            let r = self.command_retry(p, l.target, l.lun, &cdb, Some(seg));
            let o = unmap_data(p, tces, m, r)?;
            if o.resid != 0 {
                return Err(ScsiError::BadData("short transfer").into());
            }
            Ok(())
        })
    }

    /// Blocks of `block_size` bytes one READ or WRITE moves at most (the
    /// device's `max_sectors`, and what READ (10) can count).
    fn blocks_per_command(&self, block_size: u32) -> u64 {
        (self.max_bytes / block_size as u64).clamp(1, 0xffff)
    }

    /// Reset the adapter and free its memory.
    pub fn shutdown<P: Platform + ?Sized>(
        mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Result<(), VirtioError> {
        shutdown(p, tces, &self.t, &self.cfg, &mut self.bufs)
    }
}

/// Sense key, ASC and ASCQ of fixed (0x70/0x71) or descriptor (0x72/0x73)
/// format sense data; zeros when there is none.
pub fn parse_sense(s: &[u8]) -> (u8, u8, u8) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    match at(0) & 0x7f {
        0x70 | 0x71 => (at(2) & 0xf, at(12), at(13)),
        0x72 | 0x73 => (at(1) & 0xf, at(2), at(3)),
        _ => (0, 0, 0),
    }
}

/// One LUN of a [`VirtioScsi`] as a block device.
pub struct ScsiDisk<'a> {
    ctrl: &'a mut VirtioScsi,
    index: usize,
}

impl ScsiDisk<'_> {
    pub fn lun(&self) -> &ScsiLun {
        &self.ctrl.luns[self.index]
    }
}

impl BlockDevice for ScsiDisk<'_> {
    fn block_size(&self) -> u32 {
        self.lun().block_size
    }
    fn blocks(&self) -> u64 {
        self.lun().blocks
    }
    fn max_blocks(&self) -> u64 {
        self.ctrl.blocks_per_command(self.lun().block_size)
    }
    fn read_only(&self) -> bool {
        self.lun().peripheral == peripheral::CDROM
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
        self.ctrl.rw(p, tces, self.index, write, lba, count, phys)
    }
}
