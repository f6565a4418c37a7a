//! A fake NVMe controller: the part of NVM Express 1.4 (base spec §3.1
//! controller registers, §4 data structures, §5 admin commands, §6/NVM
//! command set read and write, §7.6 initialisation) that a firmware driver
//! uses, with the behaviour of QEMU 7.2's `nvme` device where the spec leaves
//! a choice (hw/nvme/ctrl.c: `nvme_start_ctrl` checks, `nvme_map_prp`,
//! `nvme_process_sq` / `nvme_post_cqes` setting CSTS.CFS when a queue entry
//! cannot be transferred, status codes with DNR).
//!
//! Registers are little-endian bytes in BAR0 (reached through
//! `H_LOGICAL_CI_*` by [`super::pci`]); every queue entry, PRP list and data
//! buffer is reached through [`DmaCtx`], i.e. through the PHB's TCE tables,
//! so a mapping without the right permission fails the transfer.  QEMU
//! answers such a failure with Data Transfer Error for PRP lists and admin
//! data (`nvme_tx`), but on its block path (`dma_blk_io`) a denied page is
//! silently dropped; this model reports Data Transfer Error for both, which
//! a driver must treat as the stricter case.
//!
//! Commands are executed when the submission queue doorbell is written;
//! completions are posted at once or, with [`NvmeFaults::latency`], after
//! that many further register accesses (so a polling driver sees its queue
//! empty first).  Fault hooks: controller never ready, commands never
//! completed, a status for a given opcode, controller fatal status, silently
//! corrupted read data.

use super::pci::DmaCtx;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

/// Register offsets.
pub mod regs {
    pub const CAP: u64 = 0x00;
    pub const VS: u64 = 0x08;
    pub const CC: u64 = 0x14;
    pub const CSTS: u64 = 0x1c;
    pub const AQA: u64 = 0x24;
    pub const ASQ: u64 = 0x28;
    pub const ACQ: u64 = 0x30;
    pub const DOORBELLS: u64 = 0x1000;
}

/// Status values as QEMU writes them (`sct << 8 | sc`, DNR = 0x4000).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const INVALID_OPCODE: u16 = 0x0001;
    pub const INVALID_FIELD: u16 = 0x0002;
    pub const DATA_TRANSFER_ERROR: u16 = 0x0004;
    pub const INTERNAL_ERROR: u16 = 0x0006;
    pub const INVALID_NSID: u16 = 0x000b;
    pub const INVALID_PRP_OFFSET: u16 = 0x0013;
    pub const LBA_RANGE: u16 = 0x0080;
    pub const INVALID_CQID: u16 = 0x0100;
    pub const INVALID_QID: u16 = 0x0101;
    pub const MAX_QSIZE_EXCEEDED: u16 = 0x0102;
    pub const INVALID_QUEUE_DELETION: u16 = 0x010c;
    pub const UNRECOVERED_READ: u16 = 0x0281;
    pub const DNR: u16 = 0x4000;
}

const PAGE: u64 = 4096;
/// CAP.MQES (0-based): 2048 entries as QEMU.
const MQES: u16 = 0x7ff;
/// `max_ioqpairs` default.
const MAX_IOQPAIRS: u16 = 64;
/// `mdts` default: 2^7 pages.
pub const MDTS: u8 = 7;

/// A fault to inject on one opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailOpcode {
    /// Admin (true) or I/O queue command.
    pub admin: bool,
    pub opcode: u8,
    /// Status to complete with (`sct << 8 | sc`, DNR 0x4000).
    pub status: u16,
    /// How many matching commands fail.
    pub count: u32,
}

/// Fault hooks.
#[derive(Clone, Debug, Default)]
pub struct NvmeFaults {
    /// CC.EN never brings CSTS.RDY up.
    pub never_ready: bool,
    /// Commands are fetched but never completed.
    pub swallow: bool,
    /// Complete matching commands with an error status.
    pub fail: Vec<FailOpcode>,
    /// Set CSTS.CFS when this (admin, opcode) is fetched.
    pub fatal_on: Option<(bool, u8)>,
    /// Register accesses before a completion is posted.
    pub latency: u64,
    /// Invert this byte of the data every Read returns (silent corruption).
    pub corrupt_read_byte: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    cqid: u16,
}

#[derive(Clone, Copy, Debug)]
struct Cq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    phase: bool,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    due: u64,
    cqid: u16,
    sqid: u16,
    sqhd: u16,
    cid: u16,
    status: u16,
    result: u32,
}

/// One command as the controller saw it, for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub sqid: u16,
    pub opcode: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub status: Option<u16>,
}

/// The controller.
#[derive(Debug)]
pub struct FakeNvme {
    regs: [u8; 0x40],
    /// Namespace 1's blocks.
    pub disk: Vec<u8>,
    pub block_size: u32,
    pub serial: String,
    pub faults: NvmeFaults,
    sqs: BTreeMap<u16, Sq>,
    cqs: BTreeMap<u16, Cq>,
    pending: VecDeque<Pending>,
    clock: u64,
    pub seen: Vec<Seen>,
    /// Bytes of data moved by read/write commands.
    pub data_bytes: u64,
    /// Times CSTS.CFS was set.
    pub fatal_events: u32,
    /// Doorbell writes for queues that do not exist.
    pub bad_doorbells: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The status a Create I/O Completion or Submission Queue command with valid
/// queue IDs gets for its size (`qsize`, 0's based), PRP1 and CDW11 (bit 0:
/// physically contiguous, required); None when they are fine.
fn new_queue_fault(qsize: u16, prp1: u64, cdw11: u32) -> Option<u16> {
    if qsize == 0 || qsize > MQES {
        return Some(status::MAX_QSIZE_EXCEEDED | status::DNR);
    }
    if prp1 & (PAGE - 1) != 0 {
        return Some(status::INVALID_PRP_OFFSET | status::DNR);
    }
    if cdw11 & 1 == 0 {
        return Some(status::INVALID_FIELD | status::DNR);
    }
    None
}

impl FakeNvme {
    /// A controller whose namespace 1 has `blocks` blocks of `block_size`.
    pub fn new(blocks: u64, block_size: u32) -> Self {
        let mut regs = [0u8; 0x40];
        // CAP: MQES, CQR, TO = 0xf (7.5 s), CSS = NVM | CSI | admin-only,
        // MPSMIN 0, MPSMAX 4 (as QEMU).
        let cap: u64 = MQES as u64 | 1 << 16 | 0xf << 24 | (1 | 1 << 6 | 1 << 7) << 37 | 4u64 << 52;
        regs[0..8].copy_from_slice(&cap.to_le_bytes());
        regs[8..12].copy_from_slice(&0x0001_0400u32.to_le_bytes());
        FakeNvme {
            regs,
            disk: alloc::vec![0; (blocks * block_size as u64) as usize],
            block_size,
            serial: String::from("papr0"),
            faults: NvmeFaults::default(),
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            pending: VecDeque::new(),
            clock: 0,
            seen: Vec::new(),
            data_bytes: 0,
            fatal_events: 0,
            bad_doorbells: 0,
        }
    }

    pub fn blocks(&self) -> u64 {
        self.disk.len() as u64 / self.block_size as u64
    }

    fn reg32(&self, off: u64) -> u32 {
        le32(&self.regs, off as usize)
    }
    fn set_reg32(&mut self, off: u64, v: u32) {
        self.regs[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn cc(&self) -> u32 {
        self.reg32(regs::CC)
    }
    pub fn csts(&self) -> u32 {
        self.reg32(regs::CSTS)
    }
    /// Number of I/O submission queues that exist.
    pub fn io_queues(&self) -> usize {
        self.sqs.keys().filter(|q| **q != 0).count()
    }

    fn fatal(&mut self) {
        let c = self.csts() | 2;
        self.set_reg32(regs::CSTS, c);
        self.fatal_events += 1;
    }

    /// A register read of `n` bytes (little-endian value).
    pub fn mmio_read(&mut self, off: u64, n: usize, dma: &mut DmaCtx) -> u64 {
        self.tick(dma);
        if off + n as u64 <= self.regs.len() as u64 {
            let mut v = 0u64;
            for i in (0..n).rev() {
                v = v << 8 | self.regs[off as usize + i] as u64;
            }
            v
        } else {
            0
        }
    }

    /// A register write of `n` bytes (little-endian value).
    pub fn mmio_write(&mut self, off: u64, n: usize, v: u64, dma: &mut DmaCtx) {
        self.tick(dma);
        if off >= regs::DOORBELLS {
            let idx = (off - regs::DOORBELLS) / 4;
            let (qid, is_cq) = ((idx / 2) as u16, idx % 2 == 1);
            self.doorbell(qid, is_cq, v as u16, dma);
            return;
        }
        if off + n as u64 > self.regs.len() as u64 {
            return;
        }
        let old_cc = self.cc();
        for i in 0..n {
            let at = off as usize + i;
            // CAP, VS, CSTS are read-only; INTMS/INTMC ignored.
            if at < 0x14 || (0x1c..0x24).contains(&at) {
                continue;
            }
            self.regs[at] = (v >> (8 * i)) as u8;
        }
        if (off..off + n as u64).contains(&regs::CC) {
            self.cc_written(old_cc);
        }
    }

    fn cc_written(&mut self, old: u32) {
        let cc = self.cc();
        let mut csts = self.csts();
        let (shn, old_shn) = ((cc >> 14) & 3, (old >> 14) & 3);
        if shn != 0 && old_shn == 0 {
            csts = (csts & !(3 << 2)) | 2 << 2;
        } else if shn == 0 && old_shn != 0 {
            csts &= !(3 << 2);
        }
        if cc & 1 == 1 && old & 1 == 0 {
            if self.faults.never_ready {
                // Stays not ready.
            } else if self.start() {
                csts = 1;
            } else {
                csts = 2;
                self.fatal_events += 1;
            }
        } else if cc & 1 == 0 && old & 1 == 1 {
            self.sqs.clear();
            self.cqs.clear();
            self.pending.clear();
            csts = 0;
        }
        self.set_reg32(regs::CSTS, csts);
    }

    /// `nvme_start_ctrl`: the checks QEMU makes when CC.EN goes to 1.
    fn start(&mut self) -> bool {
        let cc = self.cc();
        let aqa = self.reg32(regs::AQA);
        let asq = le64(&self.regs, regs::ASQ as usize);
        let acq = le64(&self.regs, regs::ACQ as usize);
        let mps = (cc >> 7) & 0xf;
        let css = (cc >> 4) & 7;
        let (iosqes, iocqes) = ((cc >> 16) & 0xf, (cc >> 20) & 0xf);
        let (asqs, acqs) = ((aqa & 0xfff) as u16, ((aqa >> 16) & 0xfff) as u16);
        let page = 1u64 << (12 + mps);
        let ok = self.sqs.is_empty()
            && self.cqs.is_empty()
            && asq & (page - 1) == 0
            && acq & (page - 1) == 0
            && css == 0
            && mps <= 4
            && iosqes == 6
            && iocqes == 4
            && asqs != 0
            && acqs != 0;
        if ok && mps == 0 {
            self.cqs.insert(
                0,
                Cq {
                    base: acq,
                    size: acqs + 1,
                    head: 0,
                    tail: 0,
                    phase: true,
                },
            );
            self.sqs.insert(
                0,
                Sq {
                    base: asq,
                    size: asqs + 1,
                    head: 0,
                    tail: 0,
                    cqid: 0,
                },
            );
            return true;
        }
        false
    }

    fn ready(&self) -> bool {
        self.csts() & 3 == 1
    }

    fn doorbell(&mut self, qid: u16, is_cq: bool, v: u16, dma: &mut DmaCtx) {
        if !self.ready() {
            return;
        }
        if is_cq {
            match self.cqs.get_mut(&qid) {
                Some(cq) if v < cq.size => cq.head = v,
                _ => {
                    self.bad_doorbells += 1;
                    return;
                }
            }
            self.post(dma);
        } else {
            match self.sqs.get_mut(&qid) {
                Some(sq) if v < sq.size => sq.tail = v,
                _ => {
                    self.bad_doorbells += 1;
                    return;
                }
            }
            self.process(qid, dma);
        }
    }

    fn tick(&mut self, dma: &mut DmaCtx) {
        self.clock += 1;
        if !self.pending.is_empty() {
            self.post(dma);
        }
    }

    /// Fetch and execute every new command of submission queue `qid`.
    fn process(&mut self, qid: u16, dma: &mut DmaCtx) {
        loop {
            let Some(sq) = self.sqs.get(&qid).copied() else {
                return;
            };
            if sq.head == sq.tail || !self.ready() {
                break;
            }
            let mut cmd = [0u8; 64];
            if dma.read(sq.base + sq.head as u64 * 64, &mut cmd).is_err() {
                self.fatal();
                break;
            }
            let head = (sq.head + 1) % sq.size;
            if let Some(s) = self.sqs.get_mut(&qid) {
                s.head = head;
            }
            let opcode = cmd[0];
            let cid = le16(&cmd, 2);
            let admin = qid == 0;
            if self.faults.fatal_on == Some((admin, opcode)) {
                self.fatal();
                break;
            }
            let mut seen = Seen {
                sqid: qid,
                opcode,
                cid,
                nsid: le32(&cmd, 4),
                prp1: le64(&cmd, 24),
                prp2: le64(&cmd, 32),
                cdw10: le32(&cmd, 40),
                cdw11: le32(&cmd, 44),
                cdw12: le32(&cmd, 48),
                status: None,
            };
            if self.faults.swallow {
                self.seen.push(seen);
                continue;
            }
            let injected = self
                .faults
                .fail
                .iter_mut()
                .find(|f| f.admin == admin && f.opcode == opcode && f.count > 0);
            let (st, result) = match injected {
                Some(f) => {
                    f.count -= 1;
                    (f.status, 0)
                }
                None if admin => self.admin(&cmd, dma),
                None => self.io(&cmd, dma),
            };
            seen.status = Some(st);
            self.seen.push(seen);
            // The queue may have been deleted by the command itself.
            let cqid = if admin { 0 } else { sq.cqid };
            self.pending.push_back(Pending {
                due: self.clock + self.faults.latency,
                cqid,
                sqid: qid,
                sqhd: head,
                cid,
                status: st,
                result,
            });
        }
        self.post(dma);
    }

    /// `nvme_post_cqes`: write due completions while their queue has room.
    fn post(&mut self, dma: &mut DmaCtx) {
        while let Some(pe) = self.pending.front().copied() {
            if pe.due > self.clock {
                break;
            }
            let Some(cq) = self.cqs.get(&pe.cqid).copied() else {
                self.pending.pop_front();
                continue;
            };
            if (cq.tail + 1) % cq.size == cq.head {
                break;
            }
            let mut e = [0u8; 16];
            e[0..4].copy_from_slice(&pe.result.to_le_bytes());
            e[8..10].copy_from_slice(&pe.sqhd.to_le_bytes());
            e[10..12].copy_from_slice(&pe.sqid.to_le_bytes());
            e[12..14].copy_from_slice(&pe.cid.to_le_bytes());
            let sf = pe.status << 1 | cq.phase as u16;
            e[14..16].copy_from_slice(&sf.to_le_bytes());
            if dma.write(cq.base + cq.tail as u64 * 16, &e).is_err() {
                self.fatal();
                break;
            }
            self.pending.pop_front();
            let c = self.cqs.get_mut(&pe.cqid).unwrap();
            c.tail = (c.tail + 1) % c.size;
            if c.tail == 0 {
                c.phase = !c.phase;
            }
        }
    }

    /// The bus segments a PRP pair describes for `len` bytes
    /// (`nvme_map_prp` with a 4 KiB memory page).
    fn prps(
        &self,
        prp1: u64,
        prp2: u64,
        len: u64,
        dma: &mut DmaCtx,
    ) -> Result<Vec<(u64, u64)>, u16> {
        let mut segs = Vec::new();
        let first = (PAGE - (prp1 & (PAGE - 1))).min(len);
        segs.push((prp1, first));
        let mut left = len - first;
        if left == 0 {
            return Ok(segs);
        }
        if left <= PAGE {
            if prp2 & (PAGE - 1) != 0 {
                return Err(status::INVALID_PRP_OFFSET | status::DNR);
            }
            segs.push((prp2, left));
            return Ok(segs);
        }
        let mut list = prp2;
        let mut nents = (PAGE - (list & (PAGE - 1))) / 8;
        let mut i = 0;
        while left > 0 {
            let mut b = [0u8; 8];
            if i == nents - 1 && left > PAGE {
                dma.read(list + 8 * i, &mut b)
                    .map_err(|_| status::DATA_TRANSFER_ERROR)?;
                let next = u64::from_le_bytes(b);
                if next & (PAGE - 1) != 0 {
                    return Err(status::INVALID_PRP_OFFSET | status::DNR);
                }
                list = next;
                nents = PAGE / 8;
                i = 0;
            }
            dma.read(list + 8 * i, &mut b)
                .map_err(|_| status::DATA_TRANSFER_ERROR)?;
            let ent = u64::from_le_bytes(b);
            if ent & (PAGE - 1) != 0 {
                return Err(status::INVALID_PRP_OFFSET | status::DNR);
            }
            let n = left.min(PAGE);
            segs.push((ent, n));
            left -= n;
            i += 1;
        }
        Ok(segs)
    }

    /// Move `data` to the host through PRPs (controller to host).
    fn ctrl_to_host(&self, cmd: &[u8], data: &[u8], dma: &mut DmaCtx) -> u16 {
        let segs = match self.prps(le64(cmd, 24), le64(cmd, 32), data.len() as u64, dma) {
            Ok(s) => s,
            Err(s) => return s,
        };
        let mut off = 0usize;
        for (bus, n) in segs {
            if dma.write(bus, &data[off..off + n as usize]).is_err() {
                return status::DATA_TRANSFER_ERROR;
            }
            off += n as usize;
        }
        status::SUCCESS
    }

    /// Fill `data` from the host through PRPs (host to controller).
    fn host_to_ctrl(&self, cmd: &[u8], data: &mut [u8], dma: &mut DmaCtx) -> u16 {
        let segs = match self.prps(le64(cmd, 24), le64(cmd, 32), data.len() as u64, dma) {
            Ok(s) => s,
            Err(s) => return s,
        };
        let mut off = 0usize;
        for (bus, n) in segs {
            if dma.read(bus, &mut data[off..off + n as usize]).is_err() {
                return status::DATA_TRANSFER_ERROR;
            }
            off += n as usize;
        }
        status::SUCCESS
    }

    fn identify_controller(&self) -> Vec<u8> {
        let mut d = alloc::vec![0u8; 4096];
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        d[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
        let pad = |dst: &mut [u8], s: &str| {
            for (i, b) in dst.iter_mut().enumerate() {
                *b = s.as_bytes().get(i).copied().unwrap_or(b' ');
            }
        };
        pad(&mut d[4..24], &self.serial);
        pad(&mut d[24..64], "QEMU NVMe Ctrl");
        pad(&mut d[64..72], "7.2.0");
        d[77] = MDTS;
        d[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
        d[512] = 0x66;
        d[513] = 0x44;
        d[516..520].copy_from_slice(&256u32.to_le_bytes());
        d
    }

    fn identify_namespace(&self) -> Vec<u8> {
        let mut d = alloc::vec![0u8; 4096];
        let n = self.blocks();
        d[0..8].copy_from_slice(&n.to_le_bytes());
        d[8..16].copy_from_slice(&n.to_le_bytes());
        d[16..24].copy_from_slice(&n.to_le_bytes());
        d[25] = 0; // NLBAF (0-based)
        d[26] = 0; // FLBAS: format 0
        let lbads = self.block_size.trailing_zeros();
        d[128..132].copy_from_slice(&(lbads << 16).to_le_bytes());
        d
    }

    fn admin(&mut self, cmd: &[u8], dma: &mut DmaCtx) -> (u16, u32) {
        let (opcode, nsid) = (cmd[0], le32(cmd, 4));
        let (cdw10, cdw11) = (le32(cmd, 40), le32(cmd, 44));
        let qid = cdw10 as u16;
        let qsize = (cdw10 >> 16) as u16;
        match opcode {
            // Identify.
            0x06 => {
                let data = match cdw10 & 0xff {
                    0x00 if nsid == 1 => self.identify_namespace(),
                    0x00 => return (status::INVALID_NSID | status::DNR, 0),
                    0x01 => self.identify_controller(),
                    0x02 => {
                        let mut d = alloc::vec![0u8; 4096];
                        if nsid < 1 {
                            d[0..4].copy_from_slice(&1u32.to_le_bytes());
                        }
                        d
                    }
                    _ => return (status::INVALID_FIELD | status::DNR, 0),
                };
                (self.ctrl_to_host(cmd, &data, dma), 0)
            }
            // Create I/O completion queue.
            0x05 => {
                let prp1 = le64(cmd, 24);
                if qid == 0 || qid > MAX_IOQPAIRS || self.cqs.contains_key(&qid) {
                    return (status::INVALID_QID | status::DNR, 0);
                }
                if let Some(st) = new_queue_fault(qsize, prp1, cdw11) {
                    return (st, 0);
                }
                self.cqs.insert(
                    qid,
                    Cq {
                        base: prp1,
                        size: qsize + 1,
                        head: 0,
                        tail: 0,
                        phase: true,
                    },
                );
                (status::SUCCESS, 0)
            }
            // Create I/O submission queue.
            0x01 => {
                let prp1 = le64(cmd, 24);
                let cqid = (cdw11 >> 16) as u16;
                if qid == 0 || qid > MAX_IOQPAIRS || self.sqs.contains_key(&qid) {
                    return (status::INVALID_QID | status::DNR, 0);
                }
                if cqid == 0 || !self.cqs.contains_key(&cqid) {
                    return (status::INVALID_CQID | status::DNR, 0);
                }
                if let Some(st) = new_queue_fault(qsize, prp1, cdw11) {
                    return (st, 0);
                }
                self.sqs.insert(
                    qid,
                    Sq {
                        base: prp1,
                        size: qsize + 1,
                        head: 0,
                        tail: 0,
                        cqid,
                    },
                );
                (status::SUCCESS, 0)
            }
            // Delete I/O submission queue.
            0x00 => {
                if qid == 0 || self.sqs.remove(&qid).is_none() {
                    return (status::INVALID_QID | status::DNR, 0);
                }
                (status::SUCCESS, 0)
            }
            // Delete I/O completion queue.
            0x04 => {
                if qid == 0 || !self.cqs.contains_key(&qid) {
                    return (status::INVALID_QID | status::DNR, 0);
                }
                if self.sqs.values().any(|s| s.cqid == qid) {
                    return (status::INVALID_QUEUE_DELETION | status::DNR, 0);
                }
                self.cqs.remove(&qid);
                (status::SUCCESS, 0)
            }
            // Set Features: only Number of Queues.
            0x09 if cdw10 & 0xff == 0x07 => {
                let n = (MAX_IOQPAIRS - 1) as u32;
                (status::SUCCESS, n << 16 | n)
            }
            0x09 => (status::INVALID_FIELD | status::DNR, 0),
            _ => (status::INVALID_OPCODE | status::DNR, 0),
        }
    }

    fn io(&mut self, cmd: &[u8], dma: &mut DmaCtx) -> (u16, u32) {
        let (opcode, nsid) = (cmd[0], le32(cmd, 4));
        match opcode {
            0x00 => (status::SUCCESS, 0),
            0x01 | 0x02 => {
                if nsid != 1 {
                    return (status::INVALID_NSID | status::DNR, 0);
                }
                let slba = le64(cmd, 40);
                let nlb = (le32(cmd, 48) & 0xffff) as u64 + 1;
                let bs = self.block_size as u64;
                let len = nlb * bs;
                if len > PAGE << MDTS {
                    return (status::INVALID_FIELD | status::DNR, 0);
                }
                if slba.checked_add(nlb).is_none_or(|e| e > self.blocks()) {
                    return (status::LBA_RANGE | status::DNR, 0);
                }
                let at = (slba * bs) as usize;
                let st = if opcode == 0x02 {
                    let mut data = self.disk[at..at + len as usize].to_vec();
                    if let Some(b) = self.faults.corrupt_read_byte.and_then(|i| data.get_mut(i)) {
                        *b = !*b;
                    }
                    self.ctrl_to_host(cmd, &data, dma)
                } else {
                    let mut data = alloc::vec![0u8; len as usize];
                    let st = self.host_to_ctrl(cmd, &mut data, dma);
                    if st == status::SUCCESS {
                        self.disk[at..at + len as usize].copy_from_slice(&data);
                    }
                    st
                };
                if st == status::SUCCESS {
                    self.data_bytes += len;
                }
                (st, 0)
            }
            _ => (status::INVALID_OPCODE | status::DNR, 0),
        }
    }
}
