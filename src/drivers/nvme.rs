//! NVMe driver (NVM Express Base Specification 1.4: §3.1 controller
//! registers, §4.2–4.6 queue entries, §4.3 PRPs, §5.3/5.4/5.5/5.6 queue
//! creation and deletion, §5.15 Identify, §5.21.1.7 Number of Queues, §7.6.1
//! initialisation, §7.6.2 shutdown; NVM Command Set §3.2.4/§3.2.6 Read and
//! Write).  The firmware's first device that moves data by DMA.
//!
//! * Registers through [`Mmio`] (little-endian, `H_LOGICAL_CI_*`).
//! * Every byte the controller reads or writes — admin and I/O queues, the
//!   Identify buffer, the PRP list page, data buffers — is firmware memory
//!   from [`Platform::alloc_phys`] mapped through the TCE API
//!   ([`TceManager::map`]) with the least permission that works: queues the
//!   device reads are [`Perm::Read`], completion queues and buffers it fills
//!   [`Perm::Write`].  The controller only ever sees bus addresses.
//!   Data buffers are mapped for each transfer and unmapped after it, or —
//!   [`DataDma::Direct`] — used through a window that already maps RAM
//!   linearly (the DMA self-test's dynamic window).
//! * One admin and one I/O queue pair, one command in flight, completions
//!   polled (phase bit) with timeouts measured on the timebase; while
//!   polling CSTS is read so a controller fatal status ends the wait.
//! * Transfers of more than two memory pages use a PRP list (one 4 KiB page
//!   = 512 entries); a request larger than MDTS or 2 MiB is split.
//! * Errors are values ([`NvmeError`]): a controller that does not respond,
//!   never becomes ready, reports fatal status or completes a command with an
//!   error status ends that operation with a message; a timeout or fatal
//!   status marks the controller failed (later commands are refused), and
//!   [`Nvme::shutdown`] still disables it and returns its memory.

use super::block::in_pieces;
use crate::memory::MemError;
use crate::mmio::{Mmio, MmioError};
use crate::platform::Platform;
use crate::tce::{Mapping, Perm, TceError, TceManager};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{fence, Ordering};

/// Controller registers.
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

/// Admin opcodes.
pub mod admin {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
}

/// NVM command set opcodes.
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// The memory page size the driver programs (CC.MPS = 0).
pub const PAGE: u64 = 4096;
const SQE: u64 = 64;
const CQE: u64 = 16;
/// Entries of one PRP list page.
const PRP_PER_PAGE: u64 = PAGE / 8;
/// Largest transfer per command: PRP1 plus one list page.
pub const MAX_CMD_BYTES: u64 = PRP_PER_PAGE * PAGE;

const CC_EN: u32 = 1;
const CC_IOSQES: u32 = 6 << 16;
const CC_IOCQES: u32 = 4 << 20;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeConfig {
    /// Timebase ticks per second (`timebase-frequency` of the CPU node).
    pub tb_freq: u64,
    /// Longest wait for one command.
    pub command_timeout_ms: u64,
    /// Longest wait for CSTS.RDY to change; `None`: what CAP.TO says.
    pub ready_timeout_ms: Option<u64>,
    pub admin_entries: u16,
    pub io_entries: u16,
}

impl NvmeConfig {
    pub const fn new(tb_freq: u64) -> Self {
        NvmeConfig {
            tb_freq,
            command_timeout_ms: 5000,
            ready_timeout_ms: None,
            admin_entries: 16,
            io_entries: 64,
        }
    }
}

/// How data buffers reach the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDma {
    /// Map each buffer for the transfer through window `liobn`, unmap after.
    Map { liobn: u32 },
    /// Physical memory `[start, end)` is mapped already, linearly: bus
    /// address = phys + `offset` (wrapping).
    Direct { offset: u64, start: u64, end: u64 },
}

/// What Identify said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub vendor_id: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// VS register.
    pub version: u32,
    /// Largest transfer (MDTS), 0 = no limit.
    pub mdts_bytes: u64,
    pub nsid: u32,
    pub block_size: u32,
    /// Namespace size in blocks.
    pub blocks: u64,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmeStats {
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// TCEs written for data buffers (mapped mode).
    pub data_tces: u64,
    /// Timebase ticks spent in read/write transfers.
    pub transfer_ticks: u64,
}

/// A command status that was not success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Status code type.
    pub sct: u8,
    /// Status code.
    pub sc: u8,
    /// Do not retry.
    pub dnr: bool,
}

impl Status {
    fn from_field(sf: u16) -> Self {
        Status {
            sc: sf as u8,
            sct: ((sf >> 8) & 7) as u8,
            dnr: sf & 0x4000 != 0,
        }
    }

    /// The specification's name of the status.
    pub fn name(&self) -> &'static str {
        match (self.sct, self.sc) {
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x03) => "Command ID Conflict",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x05) => "Commands Aborted due to Power Loss",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x0b) => "Invalid Namespace or Format",
            (0, 0x13) => "PRP Offset Invalid",
            (0, 0x80) => "LBA Out of Range",
            (0, 0x81) => "Capacity Exceeded",
            (0, 0x82) => "Namespace Not Ready",
            (1, 0x00) => "Completion Queue Invalid",
            (1, 0x01) => "Invalid Queue Identifier",
            (1, 0x02) => "Invalid Queue Size",
            (1, 0x0c) => "Invalid Queue Deletion",
            (2, 0x80) => "Write Fault",
            (2, 0x81) => "Unrecovered Read Error",
            (2, 0x86) => "Access Denied",
            _ => "status",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SCT {} SC {:#04x}", self.name(), self.sct, self.sc)?;
        if self.dnr {
            f.write_str(", DNR")?;
        }
        f.write_str(")")
    }
}

/// The name of a command for messages.
fn command_name(admin_queue: bool, opcode: u8) -> &'static str {
    match (admin_queue, opcode) {
        (true, admin::DELETE_IO_SQ) => "Delete I/O Submission Queue",
        (true, admin::CREATE_IO_SQ) => "Create I/O Submission Queue",
        (true, admin::DELETE_IO_CQ) => "Delete I/O Completion Queue",
        (true, admin::CREATE_IO_CQ) => "Create I/O Completion Queue",
        (true, admin::IDENTIFY) => "Identify",
        (true, admin::SET_FEATURES) => "Set Features",
        (false, io::READ) => "Read",
        (false, io::WRITE) => "Write",
        (false, io::FLUSH) => "Flush",
        _ => "command",
    }
}

/// Why an NVMe operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// CAP reads as all zeroes or all ones: nothing answers at the BAR.
    NotResponding {
        cap: u64,
    },
    /// The controller lacks something this driver needs.
    Unsupported(&'static str),
    /// CSTS.RDY did not reach `want` in time.
    NotReady {
        want: bool,
        ms: u64,
        csts: u32,
    },
    /// CSTS.CFS: the controller reported a fatal error.
    Fatal {
        during: &'static str,
        csts: u32,
    },
    /// No completion in time.
    Timeout {
        command: &'static str,
        ms: u64,
    },
    /// A command completed with an error status.
    Command {
        command: &'static str,
        status: Status,
    },
    /// A completion for a command that was not outstanding.
    BadCompletion {
        expected: u16,
        got: u16,
    },
    /// The namespace list or namespace data was unusable.
    NoNamespace,
    /// Refused request (range, alignment, size).
    BadRequest(&'static str),
    /// An earlier timeout or fatal status left the controller unusable.
    Failed,
    NoMemory,
    Mmio(MmioError),
    Tce(TceError),
    Memory(MemError),
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::NotResponding { cap } => {
                write!(f, "controller does not respond (CAP reads {cap:#x})")
            }
            NvmeError::Unsupported(what) => write!(f, "unsupported controller: {what}"),
            NvmeError::NotReady { want, ms, csts } => write!(
                f,
                "controller did not {} within {ms} ms (CSTS {csts:#x})",
                if *want { "become ready" } else { "stop" }
            ),
            NvmeError::Fatal { during, csts } => {
                write!(
                    f,
                    "controller fatal status during {during} (CSTS {csts:#x})"
                )
            }
            NvmeError::Timeout { command, ms } => {
                write!(f, "{command}: no completion within {ms} ms")
            }
            NvmeError::Command { command, status } => write!(f, "{command} failed: {status}"),
            NvmeError::BadCompletion { expected, got } => {
                write!(f, "completion for command {got}, expected {expected}")
            }
            NvmeError::NoNamespace => write!(f, "no usable namespace"),
            NvmeError::BadRequest(why) => write!(f, "bad request: {why}"),
            NvmeError::Failed => write!(f, "controller failed earlier; not used"),
            NvmeError::NoMemory => write!(f, "out of firmware memory for queues"),
            NvmeError::Mmio(e) => write!(f, "register access: {e}"),
            NvmeError::Tce(e) => write!(f, "DMA mapping: {e}"),
            NvmeError::Memory(e) => write!(f, "queue memory: {e}"),
        }
    }
}

impl From<MmioError> for NvmeError {
    fn from(e: MmioError) -> Self {
        NvmeError::Mmio(e)
    }
}
impl From<TceError> for NvmeError {
    fn from(e: TceError) -> Self {
        NvmeError::Tce(e)
    }
}
impl From<MemError> for NvmeError {
    fn from(e: MemError) -> Self {
        NvmeError::Memory(e)
    }
}

/// Firmware memory mapped for the controller.
#[derive(Clone, Copy, Debug)]
struct Buf {
    phys: u64,
    map: Mapping,
}

impl Buf {
    fn bus(&self) -> u64 {
        self.map.ioba
    }
}

#[derive(Clone, Copy, Debug)]
struct Queue {
    qid: u16,
    entries: u16,
    sq: Buf,
    cq: Buf,
    tail: u16,
    head: u16,
    phase: bool,
}

/// A submission queue entry under construction.
#[derive(Clone, Copy)]
struct Cmd([u8; 64]);

impl Cmd {
    fn new(opcode: u8, nsid: u32) -> Self {
        let mut c = [0u8; 64];
        c[0] = opcode;
        c[4..8].copy_from_slice(&nsid.to_le_bytes());
        Cmd(c)
    }
    fn prp(mut self, prp1: u64, prp2: u64) -> Self {
        self.0[24..32].copy_from_slice(&prp1.to_le_bytes());
        self.0[32..40].copy_from_slice(&prp2.to_le_bytes());
        self
    }
    fn cdw(mut self, n: usize, v: u32) -> Self {
        let o = 4 * n;
        self.0[o..o + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    le32(b, o) as u64 | (le32(b, o + 4) as u64) << 32
}

fn ascii(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|c| {
            if c.is_ascii_graphic() || *c == b' ' {
                *c as char
            } else {
                ' '
            }
        })
        .collect();
    String::from(s.trim())
}

/// Everything allocated so far, so a failed init can give it back.
#[derive(Default)]
struct Bufs {
    all: Vec<(Buf, u64)>,
}

fn alloc_buf<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    bufs: &mut Bufs,
    liobn: u32,
    len: u64,
    perm: Perm,
) -> Result<Buf, NvmeError> {
    let size = len.div_ceil(PAGE) * PAGE;
    let phys = p.alloc_phys(size, PAGE).ok_or(NvmeError::NoMemory)?;
    match tces.map(p, liobn, phys, size, perm) {
        Ok(map) => {
            let b = Buf { phys, map };
            bufs.all.push((b, size));
            Ok(b)
        }
        Err(e) => {
            p.free_phys(phys, size, PAGE);
            Err(e.into())
        }
    }
}

fn release_bufs<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    bufs: &mut Bufs,
) -> Result<(), NvmeError> {
    let mut first = Ok(());
    for (b, size) in bufs.all.drain(..).rev() {
        match tces.unmap_mapping(p, &b.map) {
            Ok(()) => p.free_phys(b.phys, size, PAGE),
            // Still mapped: keep the memory out of use rather than free it.
            Err(e) => {
                if first.is_ok() {
                    first = Err(e.into());
                }
            }
        }
    }
    first
}

/// An initialised controller with one I/O queue pair.
pub struct Nvme {
    mmio: Mmio,
    liobn: u32,
    cfg: NvmeConfig,
    dstrd: u32,
    ready_ms: u64,
    admin: Queue,
    io: Queue,
    /// Identify data page (device writes).
    page: Buf,
    /// PRP list page (device reads).
    prp: Buf,
    bufs: Bufs,
    ident: Identity,
    data: DataDma,
    cid: u16,
    failed: bool,
    stats: NvmeStats,
}

impl Nvme {
    /// Reset and enable the controller whose registers are `mmio`, with all
    /// its memory mapped through window `liobn`; identify it and its first
    /// active namespace and create one I/O queue pair.  The function must be
    /// bus master already.  On failure everything allocated is returned and
    /// the controller is left disabled.
    pub fn init<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        mmio: Mmio,
        liobn: u32,
        cfg: NvmeConfig,
    ) -> Result<Nvme, NvmeError> {
        let cap = mmio.read64_le_split(p, regs::CAP)?;
        if cap == 0 || cap == u64::MAX {
            return Err(NvmeError::NotResponding { cap });
        }
        if (cap >> 37) & 1 == 0 {
            return Err(NvmeError::Unsupported("no NVM command set (CAP.CSS)"));
        }
        if (cap >> 48) & 0xf != 0 {
            return Err(NvmeError::Unsupported(
                "smallest memory page above 4 KiB (CAP.MPSMIN)",
            ));
        }
        let mqes = (cap & 0xffff) as u32 + 1;
        if mqes < 2 {
            return Err(NvmeError::Unsupported(
                "queues of fewer than 2 entries (CAP.MQES)",
            ));
        }
        let dstrd = ((cap >> 32) & 0xf) as u32;
        let to_ms = ((cap >> 24) & 0xff).max(1) * 500;
        let ready_ms = cfg.ready_timeout_ms.unwrap_or(to_ms);
        let version = mmio.read32_le(p, regs::VS)?;

        // §7.6.1: disable, wait for not ready.
        let cc = mmio.read32_le(p, regs::CC)?;
        if cc & CC_EN != 0 {
            mmio.write32_le(p, regs::CC, cc & !CC_EN)?;
        }
        wait_ready(p, &mmio, false, ready_ms, cfg.tb_freq)?;

        let mut bufs = Bufs::default();
        let r = Self::setup(
            p, tces, &mut bufs, mmio, liobn, cfg, dstrd, mqes, ready_ms, version,
        );
        match r {
            Ok(mut n) => {
                n.bufs = bufs;
                Ok(n)
            }
            Err(e) => {
                // Stop the controller before its memory goes away.
                if let Ok(cc) = mmio.read32_le(p, regs::CC) {
                    if cc & CC_EN != 0 && mmio.write32_le(p, regs::CC, cc & !CC_EN).is_ok() {
                        let _ = wait_ready(p, &mmio, false, ready_ms, cfg.tb_freq);
                    }
                }
                let _ = release_bufs(p, tces, &mut bufs);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setup<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        bufs: &mut Bufs,
        mmio: Mmio,
        liobn: u32,
        cfg: NvmeConfig,
        dstrd: u32,
        mqes: u32,
        ready_ms: u64,
        version: u32,
    ) -> Result<Nvme, NvmeError> {
        let a_entries = (cfg.admin_entries as u32).clamp(2, mqes.min(4096)) as u16;
        let io_entries = (cfg.io_entries as u32).clamp(2, mqes.min(65536)) as u16;
        let asq = alloc_buf(p, tces, bufs, liobn, a_entries as u64 * SQE, Perm::Read)?;
        let acq = alloc_buf(p, tces, bufs, liobn, a_entries as u64 * CQE, Perm::Write)?;
        let page = alloc_buf(p, tces, bufs, liobn, PAGE, Perm::Write)?;
        let prp = alloc_buf(p, tces, bufs, liobn, PAGE, Perm::Read)?;
        let isq = alloc_buf(p, tces, bufs, liobn, io_entries as u64 * SQE, Perm::Read)?;
        let icq = alloc_buf(p, tces, bufs, liobn, io_entries as u64 * CQE, Perm::Write)?;

        let aqa = (a_entries as u32 - 1) << 16 | (a_entries as u32 - 1);
        mmio.write32_le(p, regs::AQA, aqa)?;
        mmio.write64_le_split(p, regs::ASQ, asq.bus())?;
        mmio.write64_le_split(p, regs::ACQ, acq.bus())?;
        mmio.write32_le(p, regs::CC, CC_EN | CC_IOSQES | CC_IOCQES)?;
        wait_ready(p, &mmio, true, ready_ms, cfg.tb_freq)?;

        let mut n = Nvme {
            mmio,
            liobn,
            cfg,
            dstrd,
            ready_ms,
            admin: Queue {
                qid: 0,
                entries: a_entries,
                sq: asq,
                cq: acq,
                tail: 0,
                head: 0,
                phase: true,
            },
            io: Queue {
                qid: 1,
                entries: io_entries,
                sq: isq,
                cq: icq,
                tail: 0,
                head: 0,
                phase: true,
            },
            page,
            prp,
            bufs: Bufs::default(),
            ident: Identity {
                version,
                ..Identity::default()
            },
            data: DataDma::Map { liobn },
            cid: 0,
            failed: false,
            stats: NvmeStats::default(),
        };
        n.identify(p)?;
        // Number of Queues: one submission and one completion queue.
        n.admin_cmd(p, Cmd::new(admin::SET_FEATURES, 0).cdw(10, 0x07).cdw(11, 0))?;
        let q = n.io;
        let qsize = (q.entries as u32 - 1) << 16 | q.qid as u32;
        n.admin_cmd(
            p,
            Cmd::new(admin::CREATE_IO_CQ, 0)
                .prp(q.cq.bus(), 0)
                .cdw(10, qsize)
                .cdw(11, 1),
        )?;
        n.admin_cmd(
            p,
            Cmd::new(admin::CREATE_IO_SQ, 0)
                .prp(q.sq.bus(), 0)
                .cdw(10, qsize)
                .cdw(11, (q.qid as u32) << 16 | 1),
        )?;
        Ok(n)
    }

    fn identify<P: Platform + ?Sized>(&mut self, p: &mut P) -> Result<(), NvmeError> {
        let mut d = alloc::vec![0u8; PAGE as usize];
        // Controller.
        self.admin_cmd(
            p,
            Cmd::new(admin::IDENTIFY, 0)
                .prp(self.page.bus(), 0)
                .cdw(10, 1),
        )?;
        p.read(self.page.phys, &mut d)?;
        self.ident.vendor_id = le16(&d, 0);
        self.ident.serial = ascii(&d[4..24]);
        self.ident.model = ascii(&d[24..64]);
        self.ident.firmware = ascii(&d[64..72]);
        let mdts = d[77];
        self.ident.mdts_bytes = if mdts == 0 || mdts >= 40 {
            0
        } else {
            PAGE << mdts
        };
        let nn = le32(&d, 516);
        // The first active namespace (CNS 2); controllers before NVMe 1.1
        // lack the list: then namespace 1 if there is one.
        p.fill(self.page.phys, PAGE, 0)?;
        let nsid = match self.admin_cmd(
            p,
            Cmd::new(admin::IDENTIFY, 0)
                .prp(self.page.bus(), 0)
                .cdw(10, 2),
        ) {
            Ok(_) => {
                p.read(self.page.phys, &mut d)?;
                le32(&d, 0)
            }
            Err(NvmeError::Command { .. }) if nn >= 1 => 1,
            Err(e) => return Err(e),
        };
        if nsid == 0 || nsid == u32::MAX {
            return Err(NvmeError::NoNamespace);
        }
        self.admin_cmd(
            p,
            Cmd::new(admin::IDENTIFY, nsid)
                .prp(self.page.bus(), 0)
                .cdw(10, 0),
        )?;
        p.read(self.page.phys, &mut d)?;
        let nsze = le64(&d, 0);
        let flbas = d[26];
        let fmt = (flbas & 0xf) as usize;
        if fmt > d[25] as usize {
            return Err(NvmeError::NoNamespace);
        }
        let lbaf = le32(&d, 128 + 4 * fmt);
        let (ms, lbads) = (lbaf & 0xffff, (lbaf >> 16) & 0xff);
        if ms != 0 {
            return Err(NvmeError::Unsupported("namespace formatted with metadata"));
        }
        if !(9..=16).contains(&lbads) || nsze == 0 {
            return Err(NvmeError::NoNamespace);
        }
        self.ident.nsid = nsid;
        self.ident.block_size = 1 << lbads;
        self.ident.blocks = nsze;
        Ok(())
    }

    pub fn identity(&self) -> &Identity {
        &self.ident
    }
    pub fn block_size(&self) -> u32 {
        self.ident.block_size
    }
    /// Capacity in blocks.
    pub fn capacity(&self) -> u64 {
        self.ident.blocks
    }
    pub fn stats(&self) -> NvmeStats {
        self.stats
    }
    pub fn failed(&self) -> bool {
        self.failed
    }
    /// The window queue memory is mapped through.
    pub fn liobn(&self) -> u32 {
        self.liobn
    }
    pub fn data_dma(&self) -> DataDma {
        self.data
    }
    /// Choose how later transfers reach their buffers.
    pub fn set_data_dma(&mut self, d: DataDma) {
        self.data = d;
    }

    fn ticks(&self, ms: u64) -> u64 {
        (ms as u128 * self.cfg.tb_freq as u128 / 1000).min(u64::MAX as u128) as u64
    }

    fn doorbell(&self, qid: u16, cq: bool) -> u64 {
        regs::DOORBELLS + (2 * qid as u64 + cq as u64) * (4 << self.dstrd)
    }

    fn admin_cmd<P: Platform + ?Sized>(&mut self, p: &mut P, c: Cmd) -> Result<u32, NvmeError> {
        self.submit(p, true, c)
    }

    /// Submit one command and wait for its completion; returns DW0.
    fn submit<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        on_admin: bool,
        mut c: Cmd,
    ) -> Result<u32, NvmeError> {
        if self.failed {
            return Err(NvmeError::Failed);
        }
        let opcode = c.0[0];
        let name = command_name(on_admin, opcode);
        self.cid = self.cid.wrapping_add(1);
        let cid = self.cid;
        c.0[2..4].copy_from_slice(&cid.to_le_bytes());
        let mut q = if on_admin { self.admin } else { self.io };
        p.write(q.sq.phys + q.tail as u64 * SQE, &c.0)?;
        q.tail = (q.tail + 1) % q.entries;
        // The entry is in memory before the controller hears of it.
        fence(Ordering::SeqCst);
        let r = self
            .mmio
            .write32_le(p, self.doorbell(q.qid, false), q.tail as u32);
        self.stats.commands += 1;
        let r = r
            .map_err(NvmeError::from)
            .and_then(|_| self.wait(p, &mut q, cid, name));
        if on_admin {
            self.admin = q;
        } else {
            self.io = q;
        }
        if matches!(
            r,
            Err(NvmeError::Timeout { .. }
                | NvmeError::Fatal { .. }
                | NvmeError::BadCompletion { .. })
        ) {
            self.failed = true;
        }
        r
    }

    fn wait<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        q: &mut Queue,
        cid: u16,
        name: &'static str,
    ) -> Result<u32, NvmeError> {
        let start = p.timebase();
        let limit = self.ticks(self.cfg.command_timeout_ms);
        let mut e = [0u8; 16];
        loop {
            p.read(q.cq.phys + q.head as u64 * CQE, &mut e)?;
            let sf = le16(&e, 14);
            if (sf & 1 == 1) == q.phase {
                fence(Ordering::SeqCst);
                q.head = (q.head + 1) % q.entries;
                if q.head == 0 {
                    q.phase = !q.phase;
                }
                self.mmio
                    .write32_le(p, self.doorbell(q.qid, true), q.head as u32)?;
                let got = le16(&e, 12);
                if got != cid {
                    return Err(NvmeError::BadCompletion { expected: cid, got });
                }
                let st = sf >> 1;
                if st & 0x7ff != 0 {
                    return Err(NvmeError::Command {
                        command: name,
                        status: Status::from_field(st),
                    });
                }
                return Ok(le32(&e, 0));
            }
            let csts = self.mmio.read32_le(p, regs::CSTS)?;
            if csts == u32::MAX {
                return Err(NvmeError::NotResponding { cap: u64::MAX });
            }
            if csts & CSTS_CFS != 0 {
                return Err(NvmeError::Fatal { during: name, csts });
            }
            if p.timebase().wrapping_sub(start) > limit {
                return Err(NvmeError::Timeout {
                    command: name,
                    ms: self.cfg.command_timeout_ms,
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Read `count` blocks from `lba` into physical memory at `phys`
    /// (4-byte aligned, `count * block_size` bytes).
    pub fn read_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), NvmeError> {
        self.transfer(p, tces, io::READ, lba, count, phys)
    }

    /// Write `count` blocks at `lba` from physical memory at `phys`.
    pub fn write_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), NvmeError> {
        self.transfer(p, tces, io::WRITE, lba, count, phys)
    }

    /// Flush the volatile write cache.
    pub fn flush<P: Platform + ?Sized>(&mut self, p: &mut P) -> Result<(), NvmeError> {
        let nsid = self.ident.nsid;
        self.submit(p, false, Cmd::new(io::FLUSH, nsid)).map(|_| ())
    }

    /// Blocks one command moves at most.
    pub fn max_blocks_per_command(&self) -> u64 {
        let mut max = MAX_CMD_BYTES;
        if self.ident.mdts_bytes != 0 {
            max = max.min(self.ident.mdts_bytes);
        }
        (max / self.ident.block_size as u64).clamp(1, 1 << 16)
    }

    fn transfer<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        opcode: u8,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), NvmeError> {
        if self.failed {
            return Err(NvmeError::Failed);
        }
        if count == 0 {
            return Err(NvmeError::BadRequest("zero blocks"));
        }
        if lba.checked_add(count).is_none_or(|e| e > self.ident.blocks) {
            return Err(NvmeError::BadRequest("beyond the end of the namespace"));
        }
        if !phys.is_multiple_of(4) {
            return Err(NvmeError::BadRequest("buffer not 4-byte aligned"));
        }
        let bs = self.ident.block_size as u64;
        let len = count
            .checked_mul(bs)
            .ok_or(NvmeError::BadRequest("too large"))?;
        if phys.checked_add(len).is_none() {
            return Err(NvmeError::BadRequest("buffer wraps"));
        }
        let t0 = p.timebase();
        let (bus, mapping) = match self.data {
            DataDma::Map { liobn } => {
                // The device writes memory on a read and reads it on a write.
                let perm = if opcode == io::READ {
                    Perm::Write
                } else {
                    Perm::Read
                };
                let m = tces.map(p, liobn, phys, len, perm)?;
                self.stats.data_tces += m.pages;
                (m.ioba, Some(m))
            }
            DataDma::Direct { offset, start, end } => {
                if phys < start || phys + len > end {
                    return Err(NvmeError::BadRequest(
                        "buffer outside the directly mapped memory",
                    ));
                }
                (phys.wrapping_add(offset), None)
            }
        };
        let per = self.max_blocks_per_command();
        let r = in_pieces(lba, count, bus, bs, per, |lba, n, at| {
            self.rw(p, opcode, lba, n, at, n * bs)
        });
        if let Some(m) = mapping {
            let u = tces.unmap_mapping(p, &m);
            if r.is_ok() {
                u?;
            }
        }
        r?;
        if opcode == io::READ {
            self.stats.bytes_read += len;
        } else {
            self.stats.bytes_written += len;
        }
        self.stats.transfer_ticks += p.timebase().wrapping_sub(t0);
        Ok(())
    }

    /// One Read or Write of `n` blocks whose buffer is at bus address `bus`.
    fn rw<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        opcode: u8,
        lba: u64,
        n: u64,
        bus: u64,
        len: u64,
    ) -> Result<(), NvmeError> {
        let first = PAGE - (bus & (PAGE - 1));
        let prp2 = if len <= first {
            0
        } else if len - first <= PAGE {
            (bus & !(PAGE - 1)).wrapping_add(PAGE)
        } else {
            // PRP list: the bus address of every further page.
            let pages = (len - first).div_ceil(PAGE);
            if pages > PRP_PER_PAGE {
                return Err(NvmeError::BadRequest(
                    "transfer needs more than one PRP list page",
                ));
            }
            let mut list = Vec::with_capacity(pages as usize * 8);
            let base = (bus & !(PAGE - 1)).wrapping_add(PAGE);
            for i in 0..pages {
                list.extend_from_slice(&base.wrapping_add(i * PAGE).to_le_bytes());
            }
            p.write(self.prp.phys, &list)?;
            self.prp.bus()
        };
        let nsid = self.ident.nsid;
        let c = Cmd::new(opcode, nsid)
            .prp(bus, prp2)
            .cdw(10, lba as u32)
            .cdw(11, (lba >> 32) as u32)
            .cdw(12, (n - 1) as u32);
        self.submit(p, false, c).map(|_| ())
    }

    /// Delete the I/O queues, disable the controller and return its memory
    /// and mappings.  Works on a failed controller too (it is disabled
    /// without the queue deletions); returns the first error met.
    pub fn shutdown<P: Platform + ?Sized>(
        mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Result<(), NvmeError> {
        let mut first: Result<(), NvmeError> = Ok(());
        let keep = |r: Result<(), NvmeError>, first: &mut Result<(), NvmeError>| {
            if let Err(e) = r {
                if first.is_ok() {
                    *first = Err(e);
                }
            }
        };
        if !self.failed {
            let qid = self.io.qid as u32;
            let r = self
                .admin_cmd(p, Cmd::new(admin::DELETE_IO_SQ, 0).cdw(10, qid))
                .map(|_| ());
            keep(r, &mut first);
            let r = self
                .admin_cmd(p, Cmd::new(admin::DELETE_IO_CQ, 0).cdw(10, qid))
                .map(|_| ());
            keep(r, &mut first);
        }
        let r = (|| {
            let cc = self.mmio.read32_le(p, regs::CC)?;
            self.mmio.write32_le(p, regs::CC, cc & !CC_EN)?;
            wait_ready(p, &self.mmio, false, self.ready_ms, self.cfg.tb_freq)
        })();
        keep(r, &mut first);
        // Unmapped even if the controller did not stop: its DMA then faults
        // instead of reaching memory that is reused.
        let r = release_bufs(p, tces, &mut self.bufs);
        keep(r, &mut first);
        first
    }
}

/// Wait for CSTS.RDY to become `want`.
fn wait_ready<P: Platform + ?Sized>(
    p: &mut P,
    mmio: &Mmio,
    want: bool,
    ms: u64,
    tb_freq: u64,
) -> Result<(), NvmeError> {
    let limit = (ms as u128 * tb_freq as u128 / 1000).min(u64::MAX as u128) as u64;
    let start = p.timebase();
    loop {
        let csts = mmio.read32_le(p, regs::CSTS)?;
        if csts == u32::MAX {
            return Err(NvmeError::NotResponding { cap: u64::MAX });
        }
        if want && csts & CSTS_CFS != 0 {
            return Err(NvmeError::Fatal {
                during: "enable",
                csts,
            });
        }
        if (csts & CSTS_RDY != 0) == want {
            return Ok(());
        }
        if p.timebase().wrapping_sub(start) > limit {
            return Err(NvmeError::NotReady { want, ms, csts });
        }
        core::hint::spin_loop();
    }
}
