//! The disks papr-fw boots from and gives to clients as IEEE 1275 "block"
//! devices (IEEE 1275 §3.8 and Annex; the PowerPC binding's disk boot; the
//! device-tree presentation SLOF uses for virtio, and QEMU's boot-device
//! paths, hw/ppc/spapr.c `spapr_get_fw_dev_path`).
//!
//! [`Storage::probe`] walks the PCI functions PCI set-up assigned
//! ([`crate::pci::tree::PhbResult`]) and brings up every storage
//! controller it has a driver for: NVMe (class 01:08:02), virtio-blk and
//! virtio-scsi (vendor 0x1af4, modern interface).  A controller that fails
//! is reported and skipped.  Each controller gets a 256 KiB *bounce buffer*
//! that stays reachable by the device for as long as the firmware runs
//! (mapped once through the PHB's default TCE window for NVMe and for virtio
//! with ACCESS_PLATFORM; guest-physical for virtio without), so a transfer
//! costs no TCE hypercalls; client buffers are never given to a device —
//! data is copied between the bounce buffer and client memory, which also
//! gives byte-granular `read`/`write` at any position and alignment.
//!
//! How disks appear in the tree ([`Storage::present`]), decided to match
//! SLOF where SLOF has an answer and QEMU's boot paths everywhere:
//! * virtio-blk: the PCI function node itself (`scsi@N`, QEMU's
//!   class-based name) gets `device_type = "block"` (as SLOF);
//! * virtio-scsi: a child per LUN, `disk@<lun64>` (`cdrom@…` for CD/DVD)
//!   with QEMU's SRP-style 64-bit LUN as unit address and `reg`, the
//!   controller node getting `#address-cells = 2`, `#size-cells = 0` (as
//!   SLOF, and the same names QEMU's `qemu,boot-list` uses);
//! * NVMe (SLOF has no driver): a child `namespace@<nsid>` with
//!   `device_type = "block"` and `reg = <nsid>`, the controller node getting
//!   `#address-cells = 1`, `#size-cells = 0`.
//!
//! `/aliases` gets `disk`, `disk0`…`diskN` (and `cdrom`, `cdrom0`… for
//! CD/DVD units), in PCI order, without replacing aliases that exist.  The
//! added nodes and properties reach the OS (Linux's prom_init copies the
//! whole tree, so they show in /proc/device-tree, as SLOF's do); nothing is
//! added when papr-fw boots a `-kernel`, since it then probes no disks.

use crate::devtree::{NodeId, Tree};
use crate::disklabel::{BlockRead, ReadError};
use crate::drivers::block::{BlockDevice, BlockError};
use crate::drivers::nvme::{DataDma, Nvme, NvmeConfig};
use crate::drivers::virtio::{self, DataPath, Transport, VirtioConfig, VirtioDma};
use crate::drivers::virtio_blk::VirtioBlk;
use crate::drivers::virtio_scsi::{peripheral, VirtioScsi};
use crate::mmio::Mmio;
use crate::pci::tree::PhbResult;
use crate::pci::ConfigAccess;
use crate::platform::Platform;
use crate::tce::{Mapping, Perm, TceManager};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Size of each controller's bounce buffer.
pub const BOUNCE_SIZE: u64 = 256 << 10;

/// A storage controller with its driver.
pub enum Controller {
    Nvme(Nvme),
    VirtioBlk(VirtioBlk),
    VirtioScsi(VirtioScsi),
}

impl Controller {
    pub fn kind(&self) -> &'static str {
        match self {
            Controller::Nvme(_) => "NVMe",
            Controller::VirtioBlk(_) => "virtio-blk",
            Controller::VirtioScsi(_) => "virtio-scsi",
        }
    }
}

/// What kind of unit a disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    Nvme {
        nsid: u32,
    },
    VirtioBlk,
    Scsi {
        index: usize,
        target: u16,
        lun: u32,
        cdrom: bool,
    },
}

/// One disk (a namespace, a virtio-blk device, a SCSI LUN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Index into the controllers.
    pub controller: usize,
    pub kind: DiskKind,
    /// The PCI function node.
    pub ctrl_path: String,
    /// The node clients open (after [`Storage::present`]).
    pub path: String,
    pub block_size: u32,
    pub blocks: u64,
    pub read_only: bool,
    /// For messages, e.g. "NVMe QEMU NVMe Ctrl (papr0)".
    pub label: String,
}

impl Disk {
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.block_size as u64)
    }
    pub fn is_cdrom(&self) -> bool {
        matches!(self.kind, DiskKind::Scsi { cdrom: true, .. })
    }
}

/// Memory every transfer goes through.
#[derive(Clone, Copy, Debug)]
struct Bounce {
    phys: u64,
    size: u64,
    map: Option<Mapping>,
}

/// What one bounce-buffer transfer of a byte range covers: blocks
/// `lba..lba + blocks`, of which bytes `skip..skip + n` are the range's.
struct Piece {
    lba: u64,
    blocks: u64,
    skip: u64,
    n: u64,
}

impl Piece {
    /// The piece at byte `pos` with `left` bytes to go, on a disk of `bs`
    /// byte blocks, at most `chunk` blocks at once.
    fn at(pos: u64, left: u64, bs: u64, chunk: u64) -> Piece {
        let skip = pos % bs;
        let blocks = (skip + left).div_ceil(bs).min(chunk);
        Piece {
            lba: pos / bs,
            blocks,
            skip,
            n: (blocks * bs - skip).min(left),
        }
    }
}

/// The storage controllers and their disks.
#[derive(Default)]
pub struct Storage {
    controllers: Vec<(Controller, Bounce)>,
    pub disks: Vec<Disk>,
    /// What probing found and skipped, as printed.
    pub lines: Vec<String>,
    /// Set by [`shutdown`](Self::shutdown): no more I/O.
    pub shut_down: bool,
}

/// Settings for [`Storage::probe`].
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    pub nvme: NvmeConfig,
    pub virtio: VirtioConfig,
}

impl ProbeConfig {
    pub fn new(tb_freq: u64) -> Self {
        ProbeConfig {
            nvme: NvmeConfig::new(tb_freq),
            virtio: VirtioConfig::new(tb_freq),
        }
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// How a virtio device reaches memory, for messages.
fn dma_text(dma: VirtioDma) -> &'static str {
    match dma {
        VirtioDma::Physical => "guest-physical DMA",
        VirtioDma::Map { .. } => "DMA through TCEs",
    }
}

impl Storage {
    /// Find and initialise the storage controllers of every PHB (see the
    /// module documentation).  `window(buid)` is the PHB's default DMA
    /// window LIOBN.
    pub fn probe<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        cfg: &ConfigAccess,
        phbs: &[PhbResult],
        window: impl Fn(u64) -> Option<u32>,
        pc: &ProbeConfig,
    ) -> Storage {
        let mut st = Storage::default();
        for phb in phbs {
            let buid = phb.top.buid;
            let liobn = window(buid);
            for f in phb.top.all() {
                let bar_of = |i: u8| {
                    let reg = crate::pci::reg::BAR0 + 4 * i as u16;
                    phb.plan
                        .bars_of(&f.path)
                        .find(|a| a.bar.reg == reg)
                        .map(|a| (a.cpu_addr, a.bar.size))
                };
                let is_nvme = f.class_code == 0x01_08_02;
                let vtype = (f.vendor_id == virtio::VENDOR_ID)
                    .then(|| virtio::device_type_of(f.device_id))
                    .flatten()
                    .filter(|t| {
                        matches!(*t, virtio::device_type::BLOCK | virtio::device_type::SCSI)
                    });
                if !is_nvme && vtype.is_none() {
                    continue;
                }
                let what = if is_nvme {
                    "NVMe"
                } else if vtype == Some(virtio::device_type::BLOCK) {
                    "virtio-blk"
                } else {
                    "virtio-scsi"
                };
                if let Err(e) = cfg.update_command(p, buid, f.bdf, crate::pci::command::MASTER, 0) {
                    st.lines.push(format!(
                        "storage: {}: {what}: bus mastering: {e}; skipped",
                        f.path
                    ));
                    continue;
                }
                let r = if is_nvme {
                    st.add_nvme(p, tces, &f.path, bar_of(0), liobn, pc)
                } else {
                    st.add_virtio(p, tces, cfg, buid, f.bdf, &f.path, vtype, bar_of, liobn, pc)
                };
                if let Err(e) = r {
                    st.lines
                        .push(format!("storage: {}: {what}: {e}; skipped", f.path));
                }
            }
        }
        for d in &st.disks {
            st.lines.push(format!(
                "storage: {}: {}, {} blocks of {} bytes ({}){}",
                d.path,
                d.label,
                d.blocks,
                d.block_size,
                size_text(d.bytes()),
                if d.read_only { ", read-only" } else { "" }
            ));
        }
        st
    }

    fn bounce<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        liobn: Option<u32>,
    ) -> Result<Bounce, String> {
        let phys = p
            .alloc_phys(BOUNCE_SIZE, 4096)
            .ok_or_else(|| String::from("no memory for the bounce buffer"))?;
        let map = match liobn {
            Some(l) => match tces.map(p, l, phys, BOUNCE_SIZE, Perm::ReadWrite) {
                Ok(m) => Some(m),
                Err(e) => {
                    p.free_phys(phys, BOUNCE_SIZE, 4096);
                    return Err(format!("mapping the bounce buffer: {e}"));
                }
            },
            None => None,
        };
        Ok(Bounce {
            phys,
            size: BOUNCE_SIZE,
            map,
        })
    }

    /// A bounce buffer for a virtio device that reaches memory as `dma` says
    /// (mapped through the window with ACCESS_PLATFORM, guest-physical
    /// without), and the data path to it.
    fn virtio_bounce<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        dma: VirtioDma,
    ) -> Result<(Bounce, DataPath), String> {
        let window = match dma {
            VirtioDma::Physical => None,
            VirtioDma::Map { liobn } => Some(liobn),
        };
        let b = Self::bounce(p, tces, window)?;
        let data = match b.map {
            Some(m) => DataPath::Direct {
                offset: m.ioba.wrapping_sub(b.phys),
                start: b.phys,
                end: b.phys + b.size,
            },
            None => DataPath::Physical,
        };
        Ok((b, data))
    }

    fn free_bounce<P: Platform + ?Sized>(p: &mut P, tces: &mut TceManager, b: &Bounce) {
        match &b.map {
            Some(m) => {
                if tces.unmap_mapping(p, m).is_ok() {
                    p.free_phys(b.phys, b.size, 4096);
                }
            }
            None => p.free_phys(b.phys, b.size, 4096),
        }
    }

    fn add_nvme<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        path: &str,
        bar0: Option<(u64, u64)>,
        liobn: Option<u32>,
        pc: &ProbeConfig,
    ) -> Result<(), String> {
        let (base, size) = bar0.ok_or("BAR0 has no address")?;
        let liobn = liobn.ok_or("no DMA window on its host bridge")?;
        let mut n = Nvme::init(p, tces, Mmio::new(base, size), liobn, pc.nvme)
            .map_err(|e| e.to_string())?;
        let b = match Self::bounce(p, tces, Some(liobn)) {
            Ok(b) => b,
            Err(e) => {
                let _ = n.shutdown(p, tces);
                return Err(e);
            }
        };
        let ioba = b.map.map_or(b.phys, |m| m.ioba);
        n.set_data_dma(DataDma::Direct {
            offset: ioba.wrapping_sub(b.phys),
            start: b.phys,
            end: b.phys + b.size,
        });
        let id = n.identity().clone();
        let nsid = id.nsid;
        self.disks.push(Disk {
            controller: self.controllers.len(),
            kind: DiskKind::Nvme { nsid },
            ctrl_path: String::from(path),
            path: format!("{path}/namespace@{nsid:x}"),
            block_size: id.block_size,
            blocks: id.blocks,
            read_only: false,
            label: format!("NVMe {} ({}) namespace {nsid}", id.model, id.serial),
        });
        self.controllers.push((Controller::Nvme(n), b));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_virtio<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        cfg: &ConfigAccess,
        buid: u64,
        bdf: crate::pci::Bdf,
        path: &str,
        vtype: Option<u16>,
        bar: impl Fn(u8) -> Option<(u64, u64)>,
        liobn: Option<u32>,
        pc: &ProbeConfig,
    ) -> Result<(), String> {
        let caps = virtio::read_caps(p, cfg, buid, bdf).map_err(|e| e.to_string())?;
        let t = Transport::new(&caps, bar).map_err(|e| e.to_string())?;
        let index = self.controllers.len();
        if vtype == Some(virtio::device_type::BLOCK) {
            let mut d = VirtioBlk::init(p, tces, t, liobn, pc.virtio).map_err(|e| e.to_string())?;
            let (b, data) = match Self::virtio_bounce(p, tces, d.dma()) {
                Ok(b) => b,
                Err(e) => {
                    let _ = d.shutdown(p, tces);
                    return Err(e);
                }
            };
            d.set_data_path(data);
            let iommu = dma_text(d.dma());
            self.disks.push(Disk {
                controller: index,
                kind: DiskKind::VirtioBlk,
                ctrl_path: String::from(path),
                path: String::from(path),
                block_size: d.block_size(),
                blocks: d.blocks(),
                read_only: d.read_only(),
                label: format!("virtio-blk ({iommu})"),
            });
            self.controllers.push((Controller::VirtioBlk(d), b));
        } else {
            let mut s =
                VirtioScsi::init(p, tces, t, liobn, pc.virtio).map_err(|e| e.to_string())?;
            let (b, data) = match Self::virtio_bounce(p, tces, s.dma()) {
                Ok(b) => b,
                Err(e) => {
                    let _ = s.shutdown(p, tces);
                    return Err(e);
                }
            };
            s.set_data_path(data);
            for n in s.scan(p) {
                self.lines
                    .push(format!("storage: {path}: virtio-scsi: {n}"));
            }
            let iommu = dma_text(s.dma());
            for (i, l) in s.luns.iter().enumerate() {
                self.disks.push(Disk {
                    controller: index,
                    kind: DiskKind::Scsi {
                        index: i,
                        target: l.target,
                        lun: l.lun,
                        cdrom: l.peripheral == peripheral::CDROM,
                    },
                    ctrl_path: String::from(path),
                    path: format!("{path}/{}", l.node_name()),
                    block_size: l.block_size,
                    blocks: l.blocks,
                    read_only: l.peripheral == peripheral::CDROM,
                    label: format!(
                        "virtio-scsi ({iommu}) target {} lun {}: {} {}",
                        l.target, l.lun, l.vendor, l.product
                    ),
                });
            }
            self.controllers.push((Controller::VirtioScsi(s), b));
        }
        Ok(())
    }

    pub fn controller_count(&self) -> usize {
        self.controllers.len()
    }

    /// The disk whose node is `node` in `tree`.
    pub fn disk_of_node(&self, tree: &Tree, node: NodeId) -> Option<usize> {
        self.disks
            .iter()
            .position(|d| tree.find(&d.path) == Some(node))
    }

    /// Write the nodes, properties and aliases described in the module
    /// documentation.  Returns problems (a node that could not be added).
    pub fn present(&self, tree: &mut Tree) -> Vec<String> {
        let mut problems = Vec::new();
        fn put(problems: &mut Vec<String>, r: Result<(), crate::devtree::TreeError>, what: &str) {
            if let Err(e) = r {
                problems.push(format!("storage: {what}: {e}"));
            }
        }
        for d in &self.disks {
            let Some(ctrl) = tree.find(&d.ctrl_path) else {
                problems.push(format!("storage: {}: node not found", d.ctrl_path));
                continue;
            };
            match d.kind {
                DiskKind::VirtioBlk => {
                    put(
                        &mut problems,
                        tree.set_prop_str(ctrl, "device_type", "block"),
                        &d.path,
                    );
                }
                DiskKind::Nvme { nsid } => {
                    put(
                        &mut problems,
                        tree.set_prop_u32(ctrl, "#address-cells", 1),
                        &d.ctrl_path,
                    );
                    put(
                        &mut problems,
                        tree.set_prop_u32(ctrl, "#size-cells", 0),
                        &d.ctrl_path,
                    );
                    let name = format!("namespace@{nsid:x}");
                    let node = match tree.child(ctrl, &name) {
                        Some(n) => Ok(n),
                        None => tree.add_node(ctrl, &name),
                    };
                    match node {
                        Ok(n) => {
                            put(
                                &mut problems,
                                tree.set_prop_str(n, "device_type", "block"),
                                &d.path,
                            );
                            put(&mut problems, tree.set_prop_u32(n, "reg", nsid), &d.path);
                        }
                        Err(e) => problems.push(format!("storage: {}: {e}", d.path)),
                    }
                }
                DiskKind::Scsi { cdrom, .. } => {
                    put(
                        &mut problems,
                        tree.set_prop_u32(ctrl, "#address-cells", 2),
                        &d.ctrl_path,
                    );
                    put(
                        &mut problems,
                        tree.set_prop_u32(ctrl, "#size-cells", 0),
                        &d.ctrl_path,
                    );
                    let name = d.path.rsplit('/').next().unwrap_or("disk");
                    let unit = name
                        .split_once('@')
                        .and_then(|(_, u)| u64::from_str_radix(u, 16).ok())
                        .unwrap_or(0);
                    let node = match tree.child(ctrl, name) {
                        Some(n) => Ok(n),
                        None => tree.add_node(ctrl, name),
                    };
                    match node {
                        Ok(n) => {
                            put(
                                &mut problems,
                                tree.set_prop_str(n, "device_type", "block"),
                                &d.path,
                            );
                            put(
                                &mut problems,
                                tree.set_prop_cells(n, "reg", &[(unit >> 32) as u32, unit as u32]),
                                &d.path,
                            );
                            if cdrom {
                                put(&mut problems, tree.set_prop(n, "removable", &[]), &d.path);
                            }
                        }
                        Err(e) => problems.push(format!("storage: {}: {e}", d.path)),
                    }
                }
            }
        }
        // Aliases.
        let root = tree.root();
        let aliases = match tree.find("/aliases") {
            Some(a) => Some(a),
            None => tree.add_node(root, "aliases").ok(),
        };
        if let Some(a) = aliases {
            let (mut nd, mut nc) = (0, 0);
            for d in &self.disks {
                let (base, n) = if d.is_cdrom() {
                    ("cdrom", &mut nc)
                } else {
                    ("disk", &mut nd)
                };
                let mut names = alloc::vec![format!("{base}{n}")];
                if *n == 0 {
                    names.push(String::from(base));
                }
                *n += 1;
                for name in names {
                    if tree.prop(a, &name).is_none() {
                        put(
                            &mut problems,
                            tree.set_prop_str(a, &name, &d.path),
                            "/aliases",
                        );
                    }
                }
            }
        }
        problems
    }

    /// Read or write `count` blocks of disk `disk` at `lba` through its
    /// controller's bounce buffer.
    fn blocks_io<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        disk: usize,
        write: bool,
        lba: u64,
        count: u64,
    ) -> Result<u64, BlockError> {
        if self.shut_down {
            return Err(BlockError::NoMemory);
        }
        let d = self.disks.get(disk).ok_or(BlockError::OutOfRange {
            lba,
            count,
            blocks: 0,
        })?;
        let kind = d.kind;
        let (ctrl, b) = self
            .controllers
            .get_mut(d.controller)
            .ok_or(BlockError::NoMemory)?;
        let phys = b.phys;
        match (ctrl, kind) {
            (Controller::Nvme(n), _) => n.rw_blocks(p, tces, write, lba, count, phys)?,
            (Controller::VirtioBlk(v), _) => v.rw_blocks(p, tces, write, lba, count, phys)?,
            (Controller::VirtioScsi(s), DiskKind::Scsi { index, .. }) => {
                let mut dev = s.disk(index).ok_or(BlockError::NoMemory)?;
                dev.rw_blocks(p, tces, write, lba, count, phys)?
            }
            _ => return Err(BlockError::NoMemory),
        }
        Ok(phys)
    }

    /// Blocks one bounce-buffer transfer of `disk` moves.
    fn chunk_blocks(&self, disk: usize) -> u64 {
        let Some(d) = self.disks.get(disk) else {
            return 1;
        };
        let max = match self.controllers.get(d.controller) {
            Some((Controller::Nvme(n), _)) => n.max_blocks_per_command(),
            Some((Controller::VirtioBlk(v), _)) => v.max_blocks(),
            _ => u64::MAX,
        };
        (BOUNCE_SIZE / d.block_size as u64).min(max).max(1)
    }

    /// Read `len` bytes of disk `disk` at byte `offset`, handing each piece
    /// (its bounce-buffer address, length, and offset into the request) to
    /// `sink`.  Returns the bytes read: fewer than `len` only at the end of
    /// the disk.
    pub fn read_with<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        disk: usize,
        offset: u64,
        len: u64,
        mut sink: impl FnMut(&mut P, u64, u64, u64) -> Result<(), BlockError>,
    ) -> Result<u64, BlockError> {
        let d = self.disks.get(disk).ok_or(BlockError::NoMemory)?;
        let (bs, size) = (d.block_size as u64, d.bytes());
        let len = len.min(size.saturating_sub(offset));
        let chunk = self.chunk_blocks(disk);
        let mut done = 0u64;
        while done < len {
            let c = Piece::at(offset + done, len - done, bs, chunk);
            let bounce = self.blocks_io(p, tces, disk, false, c.lba, c.blocks)?;
            sink(p, bounce + c.skip, c.n, done)?;
            done += c.n;
        }
        Ok(len)
    }

    /// Read into physical memory at `dest` (see [`read_with`](Self::read_with)).
    pub fn read_to<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        disk: usize,
        offset: u64,
        dest: u64,
        len: u64,
    ) -> Result<u64, BlockError> {
        let mut tmp = Vec::new();
        self.read_with(p, tces, disk, offset, len, |p, src, n, at| {
            tmp.resize(n as usize, 0);
            p.read(src, &mut tmp)
                .and_then(|_| p.write(dest + at, &tmp))
                .map_err(|_| BlockError::NoMemory)
        })
    }

    /// Write `len` bytes from physical memory at `src` to disk `disk` at byte
    /// `offset` (partial blocks are read, modified and written).  Returns
    /// the bytes written: fewer than `len` only at the end of the disk.
    pub fn write_from<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        disk: usize,
        offset: u64,
        src: u64,
        len: u64,
    ) -> Result<u64, BlockError> {
        let d = self.disks.get(disk).ok_or(BlockError::NoMemory)?;
        if d.read_only {
            return Err(BlockError::ReadOnly);
        }
        let (bs, size, ci) = (d.block_size as u64, d.bytes(), d.controller);
        let bounce = self.controllers.get(ci).ok_or(BlockError::NoMemory)?.1.phys;
        let len = len.min(size.saturating_sub(offset));
        let chunk = self.chunk_blocks(disk);
        let mut tmp = Vec::new();
        let mut done = 0u64;
        while done < len {
            let c = Piece::at(offset + done, len - done, bs, chunk);
            let partial = c.skip != 0 || !c.n.is_multiple_of(bs);
            if partial {
                self.blocks_io(p, tces, disk, false, c.lba, c.blocks)?;
            }
            tmp.resize(c.n as usize, 0);
            p.read(src + done, &mut tmp)
                .and_then(|_| p.write(bounce + c.skip, &tmp))
                .map_err(|_| BlockError::NoMemory)?;
            self.blocks_io(p, tces, disk, true, c.lba, c.blocks)?;
            done += c.n;
        }
        Ok(len)
    }

    /// Stop every controller (before the OS takes over): NVMe is disabled,
    /// virtio devices are reset; bounce buffers are unmapped and freed.
    /// Returns one line per problem.
    pub fn shutdown<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for (c, b) in self.controllers.drain(..) {
            let kind = c.kind();
            let r = match c {
                Controller::Nvme(n) => n.shutdown(p, tces).map_err(|e| e.to_string()),
                Controller::VirtioBlk(v) => v.shutdown(p, tces).map_err(|e| e.to_string()),
                Controller::VirtioScsi(s) => s.shutdown(p, tces).map_err(|e| e.to_string()),
            };
            if let Err(e) = r {
                lines.push(format!("storage: {kind} shutdown: {e}"));
            }
            Self::free_bounce(p, tces, &b);
        }
        self.shut_down = true;
        lines
    }
}

/// Disk `disk` of a [`Storage`] as [`BlockRead`] for the partition-table
/// reader.
pub struct DiskReader<'a, P: Platform + ?Sized> {
    pub storage: &'a mut Storage,
    pub p: &'a mut P,
    pub tces: &'a mut TceManager,
    pub disk: usize,
}

impl<P: Platform + ?Sized> BlockRead for DiskReader<'_, P> {
    fn block_size(&self) -> u32 {
        self.storage
            .disks
            .get(self.disk)
            .map_or(512, |d| d.block_size)
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let bs = self.block_size() as u64;
        let len = buf.len() as u64;
        let got = self
            .storage
            .read_with(
                self.p,
                self.tces,
                self.disk,
                lba * bs,
                len,
                |p, src, n, at| {
                    p.read(src, &mut buf[at as usize..(at + n) as usize])
                        .map_err(|_| BlockError::NoMemory)
                },
            )
            .map_err(|_| ReadError)?;
        if got != len {
            return Err(ReadError);
        }
        Ok(())
    }
}
