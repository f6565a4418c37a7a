//! Block-device instances of the client interface (IEEE 1275 §6.3.2.3
//! `open`/`read`/`write`/`seek`/`close` on a device; the disk package
//! methods of IEEE 1275 Annex / the "block" device type: `block-size`,
//! `#blocks`, `read-blocks`, `write-blocks`, `max-transfer`, `seek`, `read`,
//! `write`; the disk-label support package's argument syntax; GRUB's use in
//! disk-boot-and-nested.md and grub-core/disk/ieee1275/ofdisk.c).
//!
//! `open("<disk>:<args>")` on a node [`crate::storage`] presented:
//! * no arguments, `:0` or `:` — the whole disk (what GRUB opens);
//! * `:N` (decimal, or a letter `a`… for 1…) — partition N of the MBR or
//!   GPT label; `:N,` is the same;
//! * `:N,<file>` or `:,<file>` — a file in a filesystem: papr-fw has no
//!   filesystem packages, so the open fails (0).
//!
//! An instance covers a byte range of the disk (the whole disk or the
//! partition) and keeps a byte position: `seek(hi, lo)` sets it (failing
//! beyond the end), `read`/`write` move any number of bytes at any
//! position and return the count actually moved (short only at the end of
//! the range; -1 on a device error), advancing the position.  The data goes
//! through the controller's bounce buffer ([`crate::storage`]), so client
//! buffers need no alignment and are never handed to a device.

use super::instance::{Instance, Kind};
use super::ERR;
use crate::disklabel;
use crate::drivers::block::BlockError;
use crate::firmware::Firmware;
use crate::platform::Platform;
use crate::storage::DiskReader;
use alloc::string::String;

/// What the `:args` of a disk path select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskArgs {
    Whole,
    Partition(u32),
}

/// Parse the arguments of a disk open; `Err` for what papr-fw cannot open
/// (a file, malformed text).
pub fn parse_disk_args(args: &str) -> Result<DiskArgs, &'static str> {
    let (part, file) = match args.split_once(',') {
        Some((p, f)) => (p, f),
        None => (args, ""),
    };
    if !file.is_empty() {
        return Err("files need a filesystem package papr-fw does not have");
    }
    let part = part.trim();
    if part.is_empty() || part == "0" {
        return Ok(DiskArgs::Whole);
    }
    if part.len() == 1 && part.as_bytes()[0].is_ascii_lowercase() {
        return Ok(DiskArgs::Partition((part.as_bytes()[0] - b'a') as u32 + 1));
    }
    match part.parse::<u32>() {
        Ok(0) => Ok(DiskArgs::Whole),
        Ok(n) => Ok(DiskArgs::Partition(n)),
        Err(_) => Err("not a partition number"),
    }
}

impl Firmware {
    /// `open` of a disk node: `None` when `path` is not a disk papr-fw
    /// drives (the caller tries other packages), `Some(0)` when it is but
    /// cannot be opened with those arguments, else `Some(ihandle)`.
    pub(crate) fn open_block<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        path: &str,
    ) -> Option<u32> {
        if self.storage.disks.is_empty() {
            return None;
        }
        let node = self.tree.find(path)?;
        let disk = self.storage.disk_of_node(&self.tree, node)?;
        let args = path
            .rsplit('/')
            .next()
            .and_then(|l| l.split_once(':'))
            .map_or("", |(_, a)| a);
        let d = &self.storage.disks[disk];
        let (bs, size) = (d.block_size as u64, d.bytes());
        let range = match parse_disk_args(args) {
            Ok(DiskArgs::Whole) => Some((0, size)),
            Ok(DiskArgs::Partition(n)) => {
                let mut r = DiskReader {
                    storage: &mut self.storage,
                    p: &mut *p,
                    tces: &mut self.tce,
                    disk,
                };
                disklabel::read_partitions(&mut r)
                    .ok()
                    .and_then(|parts| parts.into_iter().find(|q| q.number == n))
                    .and_then(|q| {
                        let base = q.first_lba.checked_mul(bs)?;
                        let len = q.blocks.checked_mul(bs)?;
                        (base < size).then(|| (base, len.min(size - base)))
                    })
            }
            Err(_) => None,
        };
        let Some((base, size)) = range else {
            return Some(0);
        };
        let ih = self.client.instances.open(Instance {
            node,
            kind: Kind::Block {
                disk: disk as u32,
                base,
                size,
            },
            args: String::from(args),
            position: 0,
        });
        Some(ih.unwrap_or(0))
    }

    fn block_of(&self, ih: u32) -> Option<(usize, u64, u64, u64)> {
        let i = self.client.instances.get(ih)?;
        match i.kind {
            Kind::Block { disk, base, size } => Some((disk as usize, base, size, i.position)),
            _ => None,
        }
    }

    /// `read(ihandle, addr, len)` on a block instance: the bytes read.
    pub(crate) fn block_read<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        ih: u32,
        addr: u32,
        len: u32,
    ) -> u32 {
        let Some((disk, base, size, pos)) = self.block_of(ih) else {
            return ERR;
        };
        let n = (len as u64).min(size.saturating_sub(pos));
        if n == 0 {
            return 0;
        }
        if !self.client_writable(addr as u64, n) {
            return ERR;
        }
        let r = self
            .storage
            .read_to(p, &mut self.tce, disk, base + pos, addr as u64, n);
        self.block_moved(ih, pos, r, "read", base + pos)
    }

    /// `write(ihandle, addr, len)` on a block instance: the bytes written.
    pub(crate) fn block_write<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        ih: u32,
        addr: u32,
        len: u32,
    ) -> u32 {
        let Some((disk, base, size, pos)) = self.block_of(ih) else {
            return ERR;
        };
        let n = (len as u64).min(size.saturating_sub(pos));
        if n == 0 {
            return 0;
        }
        let r = self
            .storage
            .write_from(p, &mut self.tce, disk, base + pos, addr as u64, n);
        self.block_moved(ih, pos, r, "write", base + pos)
    }

    /// The answer to a `read` or `write` (`what`) of instance `ih` from
    /// position `pos` (disk byte `at`): the bytes moved, the position
    /// advanced past them; -1, logged, on a device error.
    fn block_moved(
        &mut self,
        ih: u32,
        pos: u64,
        r: Result<u64, BlockError>,
        what: &str,
        at: u64,
    ) -> u32 {
        match r {
            Ok(moved) => {
                if let Some(i) = self.client.instances.get_mut(ih) {
                    i.position = pos + moved;
                }
                moved as u32
            }
            Err(e) => {
                log::warn!("papr-fw: disk {what} at {at:#x}: {e}");
                ERR
            }
        }
    }

    /// `seek(ihandle, pos.hi, pos.lo)`: 0, or -1 beyond the end (or for an
    /// instance that cannot seek).
    pub(crate) fn block_seek(&mut self, ih: u32, hi: u32, lo: u32) -> u32 {
        let Some((_, _, size, _)) = self.block_of(ih) else {
            return ERR;
        };
        let pos = (hi as u64) << 32 | lo as u64;
        if pos > size {
            return ERR;
        }
        if let Some(i) = self.client.instances.get_mut(ih) {
            i.position = pos;
        }
        0
    }

    /// The disk methods (see the module documentation); the catch result
    /// is 0 when the method ran, -1 when it does not exist or its arguments
    /// do not fit.
    pub(crate) fn block_method<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        ih: u32,
        method: &str,
        args: &[u32],
        rets: &mut [u32],
    ) -> u32 {
        let Some((disk, _, size, _)) = self.block_of(ih) else {
            return ERR;
        };
        let bs = self.storage.disks.get(disk).map_or(512, |d| d.block_size) as u64;
        let fits = |na: usize, nr: usize| args.len() == na && rets.len() == nr;
        match method {
            "block-size" if fits(0, 1) => rets[0] = bs as u32,
            "#blocks" if fits(0, 1) => rets[0] = (size / bs).min(u32::MAX as u64) as u32,
            "max-transfer" if fits(0, 1) => rets[0] = crate::storage::BOUNCE_SIZE as u32,
            "seek" if fits(2, 1) => rets[0] = self.block_seek(ih, args[1], args[0]),
            "read" if fits(2, 1) => rets[0] = self.block_read(p, ih, args[0], args[1]),
            "write" if fits(2, 1) => rets[0] = self.block_write(p, ih, args[0], args[1]),
            "read-blocks" | "write-blocks" if fits(3, 1) => {
                let (addr, block, count) = (args[0], args[1] as u64, args[2] as u64);
                let Some(bytes) = count.checked_mul(bs).filter(|b| *b <= u32::MAX as u64) else {
                    return ERR;
                };
                let Some(at) = block.checked_mul(bs) else {
                    return ERR;
                };
                if self.block_seek(ih, (at >> 32) as u32, at as u32) != 0 {
                    rets[0] = 0;
                    return 0;
                }
                let done = if method == "read-blocks" {
                    self.block_read(p, ih, addr, bytes as u32)
                } else {
                    self.block_write(p, ih, addr, bytes as u32)
                };
                rets[0] = if done == ERR { 0 } else { done / bs as u32 };
            }
            _ => return ERR,
        }
        0
    }
}
