//! Booting from disks the way SLOF does (IEEE 1275 §7.4.3 `boot`/`load`;
//! the PowerPC binding's PReP boot partition; CHRP `bootpath`; QEMU pseries
//! contract §1.6 `qemu,boot-list`; disk-boot-and-nested.md for what GRUB
//! needs).
//!
//! When QEMU preloaded no kernel, [`Firmware::boot_from_disks`]:
//! 1. probes the storage controllers ([`Storage::probe`]) and presents the
//!    disks in the tree and `/aliases` ([`Storage::present`]);
//! 2. orders the disks ([`boot_order`]): the entries of
//!    `/chosen/qemu,boot-list` (QEMU's `bootindex` order; paths such as
//!    `/pci@800000020000000/scsi@2/disk@100000000000000` are mapped onto
//!    papr-fw's disks, a controller path standing for all its disks), then —
//!    unless the list ends with `HALT` (`-boot strict=on`) — every other
//!    disk in PCI order;
//! 3. for each disk in turn: reads its partition table (MBR or GPT), takes
//!    the first PReP boot partition (MBR type 0x41 marked active, or the GPT
//!    PReP GUID) that holds a loadable ELF image (32- or 64-bit, either byte
//!    order), claims the memory its segments occupy (exact addresses; a
//!    64-bit image whose addresses are not free is moved to free memory, as
//!    a relocatable kernel allows), copies them from disk, zeroes the rest
//!    of each segment and makes the code executable.  A disk that cannot be
//!    booted is reported with the reason and the next one is tried;
//! 4. sets `/chosen/bootpath` to `<disk node>:<partition>` (GRUB derives its
//!    boot device from it) and, if absent, an empty `/chosen/bootargs`.
//!
//! The image is started like SLOF starts an ELF it loaded itself: r3 = r4 =
//! 0, r5 = the client-interface entry, r1 = the client stack; 32-bit images
//! in 32-bit mode, 64-bit images in 64-bit mode (ELFv1 images through their
//! function descriptor, r2 = its TOC); little-endian images with MSR[LE] set.
//!
//! Nothing bootable: the caller prints [`NothingBootable`]'s message and
//! powers the machine off (as papr-fw does without `-kernel` and disks):
//! a machine that cannot boot is not a firmware failure, and QEMU exits.

use crate::disklabel::{self, Partition};
use crate::elf::{self, LoadPlan};
use crate::firmware::Firmware;
use crate::memory::Range;
use crate::platform::Platform;
use crate::storage::{DiskKind, DiskReader, ProbeConfig, Storage};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use log::info;

/// Bytes read first from a PReP partition to find the ELF headers.
const HEADER_BYTES: u64 = 64 << 10;
/// Where a 64-bit image is moved when its own addresses are not free.
const RELOCATE_ALIGN: u64 = 1 << 16;

/// How to enter a loaded image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMode {
    /// 64-bit mode (MSR[SF]).
    pub sf: bool,
    /// Little-endian (MSR[LE]).
    pub le: bool,
    /// r2 for ELFv1 images (from the function descriptor).
    pub toc: Option<u64>,
}

/// A boot image loaded from a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImage {
    pub entry: u64,
    pub mode: EntryMode,
    /// Memory the image occupies (claimed for the client).
    pub image: Range,
    /// Index of the disk in [`Storage::disks`].
    pub disk: usize,
    pub partition: u32,
    /// What `/chosen/bootpath` says.
    pub bootpath: String,
}

/// Why nothing was booted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NothingBootable {
    /// Disks found.
    pub disks: usize,
    /// Each disk tried and why it could not be booted.
    pub tried: Vec<(String, String)>,
}

impl core::fmt::Display for NothingBootable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.disks == 0 {
            return write!(f, "nothing to boot (no -kernel)");
        }
        write!(
            f,
            "nothing to boot: no -kernel, and none of {} disk{} has a bootable PReP partition",
            self.disks,
            if self.disks == 1 { "" } else { "s" }
        )?;
        for (path, why) in &self.tried {
            write!(f, "; {path}: {why}")?;
        }
        Ok(())
    }
}

/// The disks of `st` that the boot path `entry` (a `qemu,boot-list` entry)
/// names: the disk node itself, QEMU's name for it (`.../disk@0,0` of a
/// virtio-blk device, `.../namespace@1,0` of an NVMe namespace,
/// `.../disk@<lun64>` of a SCSI LUN), or its controller (all its disks).
pub fn map_boot_path(st: &Storage, entry: &str) -> Vec<usize> {
    let entry = entry
        .split(':')
        .next()
        .unwrap_or(entry)
        .trim_end_matches('/');
    let unit = |s: &str| -> Option<Vec<u64>> {
        let (_, u) = s.split_once('@')?;
        u.split(',')
            .map(|f| u64::from_str_radix(f, 16).ok())
            .collect()
    };
    let mut out = Vec::new();
    for (i, d) in st.disks.iter().enumerate() {
        if entry == d.path || entry == d.ctrl_path {
            out.push(i);
            continue;
        }
        let Some(rest) = entry
            .strip_prefix(d.ctrl_path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        if rest.contains('/') {
            continue;
        }
        let u = unit(rest).unwrap_or_default();
        let hit = match d.kind {
            DiskKind::VirtioBlk => rest.starts_with("disk"),
            DiskKind::Nvme { nsid } => {
                rest.starts_with("namespace") && u.first() == Some(&(nsid as u64))
            }
            DiskKind::Scsi { .. } => {
                let mine = d.path.rsplit('/').next().and_then(unit).unwrap_or_default();
                !u.is_empty() && u.first() == mine.first()
            }
        };
        if hit {
            out.push(i);
        }
    }
    out
}

/// The order disks are tried in, whether the list is strict (`HALT`), and
/// notes about boot-list entries that name nothing papr-fw can boot.
pub fn boot_order(st: &Storage, boot_list: Option<&str>) -> (Vec<usize>, bool, Vec<String>) {
    let mut order = Vec::new();
    let mut notes = Vec::new();
    let mut strict = false;
    for e in boot_list.unwrap_or("").split_whitespace() {
        if e == "HALT" {
            strict = true;
            break;
        }
        let hits = map_boot_path(st, e);
        if hits.is_empty() {
            notes.push(format!(
                "boot-list entry {e}: not a disk papr-fw drives; skipped"
            ));
        }
        for h in hits {
            if !order.contains(&h) {
                order.push(h);
            }
        }
    }
    if !strict {
        for i in 0..st.disks.len() {
            if !order.contains(&i) {
                order.push(i);
            }
        }
    }
    (order, strict, notes)
}

/// The PReP partitions of a partition table, in table order.
pub fn prep_partitions(parts: &[Partition]) -> Vec<Partition> {
    parts.iter().filter(|p| p.is_prep()).copied().collect()
}

impl Firmware {
    /// Probe the disks (once) and present them in the tree.
    pub fn probe_storage<P: Platform + ?Sized>(&mut self, p: &mut P) {
        if self.storage.controller_count() != 0 || !self.storage.lines.is_empty() {
            return;
        }
        let Some(cfg) = crate::pci::tree::config_access(&self.tree) else {
            return;
        };
        let dma = &self.dma;
        let window = |buid: u64| {
            dma.nodes
                .iter()
                .find(|n| n.buid == Some(buid))
                .and_then(|n| n.window)
                .map(|w| w.liobn)
        };
        let pc = ProbeConfig::new(self.timebase_hz);
        let st = Storage::probe(p, &mut self.tce, &cfg, &self.pci, window, &pc);
        self.storage = st;
        for l in &self.storage.lines {
            info!("papr-fw: {l}");
        }
        for l in self.storage.present(&mut self.tree) {
            info!("papr-fw: {l}");
        }
    }

    /// Find, load and claim a boot image (see the module documentation).
    /// The client interface must be prepared already (its claims decide
    /// where the image may go).
    pub fn boot_from_disks<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
    ) -> Result<BootImage, NothingBootable> {
        self.probe_storage(p);
        let list = self
            .tree
            .find("/chosen")
            .and_then(|c| self.tree.prop_str(c, "qemu,boot-list"))
            .map(String::from);
        let (order, strict, notes) = boot_order(&self.storage, list.as_deref());
        for n in &notes {
            info!("papr-fw: boot: {n}");
        }
        if strict && order.len() < self.storage.disks.len() {
            info!(
                "papr-fw: boot: qemu,boot-list ends with HALT: only the listed devices are tried"
            );
        }
        let mut tried = Vec::new();
        for disk in order {
            let path = self.storage.disks[disk].path.clone();
            info!(
                "papr-fw: boot: trying {path} ({})",
                self.storage.disks[disk].label
            );
            match self.load_from_disk(p, disk) {
                Ok(img) => {
                    self.set_boot_properties(&img);
                    self.present_client();
                    return Ok(img);
                }
                Err(why) => {
                    info!("papr-fw: boot: {path}: {why}; trying the next device");
                    tried.push((path, why));
                }
            }
        }
        Err(NothingBootable {
            disks: self.storage.disks.len(),
            tried,
        })
    }

    fn set_boot_properties(&mut self, img: &BootImage) {
        let chosen = match self.tree.find("/chosen") {
            Some(c) => c,
            None => {
                let root = self.tree.root();
                match self.tree.add_node(root, "chosen") {
                    Ok(c) => c,
                    Err(_) => return,
                }
            }
        };
        let _ = self.tree.set_prop_str(chosen, "bootpath", &img.bootpath);
        if self.tree.prop(chosen, "bootargs").is_none() {
            let _ = self.tree.set_prop_str(chosen, "bootargs", "");
        }
    }

    /// Load the boot image of disk `disk`, or say why there is none.
    pub fn load_from_disk<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        disk: usize,
    ) -> Result<BootImage, String> {
        let parts = {
            let mut r = DiskReader {
                storage: &mut self.storage,
                p: &mut *p,
                tces: &mut self.tce,
                disk,
            };
            disklabel::read_partitions(&mut r).map_err(|e| format!("partition table: {e}"))?
        };
        if parts.is_empty() {
            return Err(String::from("no partition table"));
        }
        let preps = prep_partitions(&parts);
        if preps.is_empty() {
            return Err(format!(
                "no PReP boot partition among its {} partition{}",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ));
        }
        let mut why = Vec::new();
        for part in preps {
            match self.load_partition(p, disk, &part) {
                Ok(img) => return Ok(img),
                Err(e) => why.push(format!("PReP partition {}: {e}", part.number)),
            }
        }
        Err(why.join("; "))
    }

    fn load_partition<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        disk: usize,
        part: &Partition,
    ) -> Result<BootImage, String> {
        let d = &self.storage.disks[disk];
        let bs = d.block_size as u64;
        let start = part
            .first_lba
            .checked_mul(bs)
            .filter(|s| *s < d.bytes())
            .ok_or("lies beyond the end of the disk")?;
        let len = part.blocks.saturating_mul(bs).min(d.bytes() - start);
        let path = d.path.clone();
        // The headers.
        let head_len = len.min(HEADER_BYTES);
        let mut head = alloc::vec![0u8; head_len as usize];
        self.storage
            .read_with(p, &mut self.tce, disk, start, head_len, |p, src, n, at| {
                p.read(src, &mut head[at as usize..(at + n) as usize])
                    .map_err(|_| crate::drivers::block::BlockError::NoMemory)
            })
            .map_err(|e| format!("reading: {e}"))?;
        let mut plan = elf::parse(&head, len).map_err(|e| e.to_string())?;
        let image = self.claim_image(&mut plan)?;
        // The segments, from disk to their place.
        for s in &plan.segments {
            if s.filesz != 0 {
                let got = self.storage.read_to(
                    p,
                    &mut self.tce,
                    disk,
                    start + s.offset,
                    s.dest,
                    s.filesz,
                );
                match got {
                    Ok(n) if n == s.filesz => {}
                    Ok(_) => {
                        self.release_image(image);
                        return Err(String::from("segment runs past the end of the disk"));
                    }
                    Err(e) => {
                        self.release_image(image);
                        return Err(format!("reading a segment: {e}"));
                    }
                }
            }
            if s.memsz > s.filesz && p.fill(s.dest + s.filesz, s.memsz - s.filesz, 0).is_err() {
                self.release_image(image);
                return Err(String::from("cannot clear the segment's memory"));
            }
        }
        p.sync_icache(image.base, image.size);
        let mut entry = plan.entry;
        let mut toc = None;
        if plan.descriptor_entry {
            if !image.contains(entry, 16) {
                self.release_image(image);
                return Err(String::from("function descriptor outside the image"));
            }
            let code = p.read_be64(entry).unwrap_or(0);
            toc = p.read_be64(entry + 8).ok();
            entry = code;
        }
        if !image.contains(entry, 4) {
            self.release_image(image);
            return Err(format!("entry point {entry:#x} outside the image"));
        }
        info!(
            "papr-fw: boot: {path}: PReP partition {} holds an ELF{} {}-endian image: {:#x}-{:#x}, entry {entry:#x}",
            part.number,
            if plan.class64 { "64" } else { "32" },
            if plan.little_endian { "little" } else { "big" },
            image.base,
            image.end()
        );
        Ok(BootImage {
            entry,
            mode: EntryMode {
                sf: plan.class64,
                le: plan.little_endian,
                toc,
            },
            image,
            disk,
            partition: part.number,
            bootpath: format!("{path}:{}", part.number),
        })
    }

    /// Claim the memory the image occupies for the client: at its own
    /// addresses, or — 64-bit images only — wherever there is room.
    fn claim_image(&mut self, plan: &mut LoadPlan) -> Result<Range, String> {
        let (lo, hi) = plan.span();
        let size = hi - lo;
        if size == 0 {
            return Err(String::from("empty image"));
        }
        if self.client.claims.claim(lo, size, 0).is_some() {
            return Ok(Range::new(lo, size));
        }
        if !plan.class64 {
            return Err(format!(
                "its memory {lo:#x}-{hi:#x} is not free (firmware memory or beyond RAM)"
            ));
        }
        let base = self
            .client
            .claims
            .claim(0, size, RELOCATE_ALIGN)
            .ok_or_else(|| format!("no free memory for its {size:#x} bytes"))?;
        plan.relocate_to(base);
        Ok(Range::new(base, size))
    }

    fn release_image(&mut self, r: Range) {
        self.client.claims.release(r.base, r.size);
    }
}

#[cfg(test)]
mod tests;
