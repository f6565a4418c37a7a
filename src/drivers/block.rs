//! Block devices the firmware drives itself (IEEE 1275 §3.8 / Annex:
//! device type "block"; what the `read-blocks`/`write-blocks`/`block-size`/
//! `#blocks` methods of a disk package need): a device is a number of
//! equally sized logical blocks, read and written in whole blocks into
//! firmware memory the device can reach by DMA.
//!
//! [`BlockDevice`] is implemented by the NVMe namespace driver
//! ([`super::nvme::Nvme`]), virtio-blk ([`super::virtio_blk::VirtioBlk`]) and a
//! LUN of a virtio-scsi controller ([`super::virtio_scsi::ScsiDisk`]).  Where
//! the buffer may lie depends on the driver's DMA set-up (TCE-mapped per
//! transfer, a permanently mapped range, or guest-physical addresses for
//! virtio without `VIRTIO_F_ACCESS_PLATFORM`); [`crate::storage`] gives each
//! controller a bounce buffer that is always reachable and copies between it
//! and client memory.

use super::nvme::{Nvme, NvmeError};
use super::virtio::VirtioError;
use super::virtio_scsi::ScsiError;
use crate::platform::Platform;
use crate::tce::TceManager;
use core::fmt;

/// Why a block transfer failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockError {
    Nvme(NvmeError),
    Virtio(VirtioError),
    Scsi(ScsiError),
    /// The request lies (partly) beyond the device.
    OutOfRange {
        lba: u64,
        count: u64,
        blocks: u64,
    },
    /// The device is read-only.
    ReadOnly,
    /// No memory for a buffer.
    NoMemory,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Nvme(e) => write!(f, "NVMe: {e}"),
            BlockError::Virtio(e) => write!(f, "virtio: {e}"),
            BlockError::Scsi(e) => write!(f, "SCSI: {e}"),
            BlockError::OutOfRange { lba, count, blocks } => write!(
                f,
                "blocks {lba}+{count} lie beyond the end of the device ({blocks} blocks)"
            ),
            BlockError::ReadOnly => write!(f, "the device is read-only"),
            BlockError::NoMemory => write!(f, "out of firmware memory"),
        }
    }
}

impl From<NvmeError> for BlockError {
    fn from(e: NvmeError) -> Self {
        BlockError::Nvme(e)
    }
}
impl From<VirtioError> for BlockError {
    fn from(e: VirtioError) -> Self {
        BlockError::Virtio(e)
    }
}
impl From<ScsiError> for BlockError {
    fn from(e: ScsiError) -> Self {
        BlockError::Scsi(e)
    }
}

/// Check `lba + count` against a device of `blocks` blocks.
pub fn check_range(lba: u64, count: u64, blocks: u64) -> Result<(), BlockError> {
    match lba.checked_add(count) {
        Some(end) if count != 0 && end <= blocks => Ok(()),
        _ => Err(BlockError::OutOfRange { lba, count, blocks }),
    }
}

/// Run a transfer of `count` blocks of `block_size` bytes at `lba`, buffer
/// at `addr`, in pieces of at most `per` blocks: `piece(lba, blocks, addr)`
/// for each in order, up to the first error.
pub fn in_pieces<E>(
    lba: u64,
    count: u64,
    addr: u64,
    block_size: u64,
    per: u64,
    mut piece: impl FnMut(u64, u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let per = per.max(1);
    let mut done = 0;
    while done < count {
        let n = (count - done).min(per);
        piece(lba + done, n, addr.wrapping_add(done * block_size))?;
        done += n;
    }
    Ok(())
}

/// A device of logical blocks.
pub trait BlockDevice {
    /// Bytes per logical block (a power of two, 512–65536).
    fn block_size(&self) -> u32;
    /// Number of logical blocks.
    fn blocks(&self) -> u64;
    /// Most blocks one [`read_blocks`](Self::read_blocks) or
    /// [`write_blocks`](Self::write_blocks) call should move.
    fn max_blocks(&self) -> u64;
    /// Writes are refused.
    fn read_only(&self) -> bool {
        false
    }
    /// Move `count` blocks between the device at `lba` and firmware memory
    /// at `phys` (`write`: to the device).  The request lies within the
    /// device and, for a write, the device is writable: see
    /// [`rw_blocks`](Self::rw_blocks).
    fn transfer_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        write: bool,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError>;
    /// Read (`write` false) or write `count` blocks at `lba`, firmware memory
    /// at `phys`, once the request is checked: within the device, and a
    /// write only to a writable device.
    fn rw_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        write: bool,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError> {
        check_range(lba, count, self.blocks())?;
        if write && self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        self.transfer_blocks(p, tces, write, lba, count, phys)
    }
    /// Read `count` blocks from `lba` into firmware memory at `phys`.
    fn read_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError> {
        self.rw_blocks(p, tces, false, lba, count, phys)
    }
    /// Write `count` blocks at `lba` from firmware memory at `phys`.
    fn write_blocks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        lba: u64,
        count: u64,
        phys: u64,
    ) -> Result<(), BlockError> {
        self.rw_blocks(p, tces, true, lba, count, phys)
    }
}

impl BlockDevice for Nvme {
    fn block_size(&self) -> u32 {
        Nvme::block_size(self)
    }
    fn blocks(&self) -> u64 {
        self.capacity()
    }
    fn max_blocks(&self) -> u64 {
        self.max_blocks_per_command()
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
        let r = if write {
            Nvme::write_blocks(self, p, tces, lba, count, phys)
        } else {
            Nvme::read_blocks(self, p, tces, lba, count, phys)
        };
        r.map_err(BlockError::from)
    }
}
