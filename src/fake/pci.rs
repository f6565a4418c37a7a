//! Fake PCI functions behind the fake PHBs: config space with QEMU's
//! write-mask semantics (BAR sizing, bridge base/limit registers), RTAS
//! `ibm,read-pci-config`/`ibm,write-pci-config`, MMIO through
//! `H_LOGICAL_CI_LOAD`/`H_LOGICAL_CI_STORE` routed by BAR and bridge window,
//! and device DMA translated through the PHB's TCE tables (QEMU pseries
//! contract §3.3, §3.4, §4.6, §5.3; QEMU 7.2 hw/pci/pci.c `pci_register_bar`,
//! `pci_init_mask_bridge`, `pci_bar_address`, hw/pci/pci_bridge.c windows,
//! hw/ppc/spapr_pci.c `finish_read_pci_config`, `spapr_phb_placement`,
//! hw/ppc/spapr_iommu.c `spapr_tce_translate_iommu`, hw/ppc/spapr_hcall.c
//! `h_logical_load`).
//!
//! Device models that QEMU users put on pseries are described from QEMU's own
//! definitions ([`FakeFunction::qemu_nvme`], `qemu_virtio_*`,
//! [`FakeFunction::qemu_pci_bridge`]); only the NVMe controller
//! ([`super::nvme::FakeNvme`]) does anything behind its BAR.

use super::nvme::FakeNvme;
use super::phb::FakeTceTable;
use super::virtio::FakeVirtio;
use super::FakePlatform;
use crate::hcall::{op, rc};
use crate::memory::{FakeMemory, Memory};
use crate::pci::{command, reg, Bdf};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// `SPAPR_PCI_BASE` (32 TiB) and the window sizes of `spapr_phb_placement`.
pub const SPAPR_PCI_BASE: u64 = 1 << 45;
pub const SPAPR_PCI_IO_WIN_SIZE: u64 = 0x10000;
pub const SPAPR_PCI_MEM32_WIN_SIZE: u64 = 0x8000_0000;
pub const SPAPR_PCI_MEM64_WIN_SIZE: u64 = 1 << 40;
/// Bus address of the 32-bit MMIO window (`SPAPR_PCI_MEM_WIN_BUS_OFFSET`).
pub const SPAPR_PCI_MEM32_BUS: u64 = 0x8000_0000;

/// One window of a PHB: bus addresses `[bus, bus + size)` at CPU `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeWindow {
    pub bus: u64,
    pub cpu: u64,
    pub size: u64,
}

impl FakeWindow {
    fn cpu_to_bus(&self, cpu: u64, len: u64) -> Option<u64> {
        let off = cpu.checked_sub(self.cpu)?;
        (off.checked_add(len)? <= self.size).then_some(self.bus + off)
    }
}

/// BAR type bits (PCI 3.0 §6.2.5.1).
pub mod bar_type {
    pub const IO: u32 = 0x1;
    pub const MEM32: u32 = 0x0;
    pub const MEM64: u32 = 0x4;
    pub const PREFETCH: u32 = 0x8;
}

/// What sits behind a function's BARs.
#[derive(Debug)]
pub enum Model {
    /// Registers read 0, writes are dropped.
    Inert,
    Bridge,
    Nvme(Box<FakeNvme>),
    /// A modern virtio-pci device behind BAR4 ([`super::virtio`]).
    Virtio(Box<FakeVirtio>),
}

/// One PCI function.
#[derive(Debug)]
pub struct FakeFunction {
    pub bdf: Bdf,
    pub config: Vec<u8>,
    wmask: Vec<u8>,
    w1cmask: Vec<u8>,
    /// Sizes of BAR 0–5 and the ROM (index 6); 0 = not implemented.
    pub bar_size: [u64; 7],
    pub model: Model,
    /// Config accesses that reached this function.
    pub config_reads: u64,
    pub config_writes: u64,
}

impl FakeFunction {
    /// A function with a type 0 (`header_type` 0) or type 1 header, as QEMU's
    /// `do_pci_register_device` initialises it.
    pub fn new(
        bdf: Bdf,
        vendor: u16,
        device: u16,
        class_rev: u32,
        header_type: u8,
        config_size: usize,
    ) -> Self {
        let mut f = FakeFunction {
            bdf,
            config: alloc::vec![0; config_size],
            wmask: alloc::vec![0; config_size],
            w1cmask: alloc::vec![0; config_size],
            bar_size: [0; 7],
            model: Model::Inert,
            config_reads: 0,
            config_writes: 0,
        };
        f.set16(reg::VENDOR_ID, vendor);
        f.set16(reg::DEVICE_ID, device);
        f.set32(reg::CLASS_REVISION, class_rev);
        f.config[reg::HEADER_TYPE as usize] = header_type;
        // pci_init_wmask / pci_init_w1cmask.
        f.config[0x0c] = 0;
        f.wmask[0x0c] = 0xff; // cache line size
        f.wmask[0x3c] = 0xff; // interrupt line
        let cmd = command::IO | command::MEMORY | command::MASTER | 0x0100 | 0x0400;
        f.wmask[4..6].copy_from_slice(&cmd.to_le_bytes());
        f.w1cmask[6..8].copy_from_slice(&0xf900u16.to_le_bytes());
        for b in &mut f.wmask[0x40..] {
            *b = 0xff;
        }
        if header_type & 0x7f == 1 {
            // pci_init_mask_bridge.
            for b in &mut f.wmask[0x18..0x1c] {
                *b = 0xff;
            }
            f.wmask[0x1c] = 0xf0;
            f.wmask[0x1d] = 0xf0;
            f.wmask[0x20..0x22].copy_from_slice(&0xfff0u16.to_le_bytes());
            f.wmask[0x22..0x24].copy_from_slice(&0xfff0u16.to_le_bytes());
            f.wmask[0x24..0x26].copy_from_slice(&0xfff0u16.to_le_bytes());
            f.wmask[0x26..0x28].copy_from_slice(&0xfff0u16.to_le_bytes());
            for b in &mut f.wmask[0x28..0x30] {
                *b = 0xff;
            }
            // 16-bit I/O decode, 64-bit prefetchable decode.
            f.config[0x24] |= 1;
            f.config[0x26] |= 1;
            f.wmask[0x3e..0x40].copy_from_slice(&0x0fffu16.to_le_bytes());
            f.model = Model::Bridge;
        }
        f
    }

    /// `pci_register_bar`: BAR `idx` (0–5, or 6 for the ROM) of `size` bytes.
    pub fn with_bar(mut self, idx: usize, size: u64, ty: u32) -> Self {
        assert!(size.is_power_of_two() && idx < 7);
        self.bar_size[idx] = size;
        let off = self.bar_offset(idx);
        let mut wmask = !(size - 1);
        if idx == 6 {
            wmask |= 1;
        }
        self.set32(off, ty);
        if ty & bar_type::IO == 0 && ty & bar_type::MEM64 != 0 {
            self.wmask[off as usize..off as usize + 8].copy_from_slice(&wmask.to_le_bytes());
        } else {
            self.wmask[off as usize..off as usize + 4]
                .copy_from_slice(&(wmask as u32).to_le_bytes());
        }
        self
    }

    pub fn with_model(mut self, m: Model) -> Self {
        self.model = m;
        self
    }

    fn bar_offset(&self, idx: usize) -> u16 {
        if idx == 6 {
            if self.is_bridge() {
                reg::BRIDGE_ROM
            } else {
                reg::ROM
            }
        } else {
            reg::BAR0 + 4 * idx as u16
        }
    }

    pub fn is_bridge(&self) -> bool {
        self.config[reg::HEADER_TYPE as usize] & 0x7f == 1
    }

    /// QEMU's NVMe controller (hw/nvme/ctrl.c, 7.2): 1b36:0010 class 010802
    /// rev 2, BAR0 64-bit non-prefetchable 16 KiB (registers, MSI-X table
    /// and PBA), extended config space.
    pub fn qemu_nvme(bdf: Bdf, nvme: FakeNvme) -> Self {
        FakeFunction::new(bdf, 0x1b36, 0x0010, 0x0108_0202, 0, 4096)
            .with_bar(0, 0x4000, bar_type::MEM64)
            .with_model(Model::Nvme(Box::new(nvme)))
    }

    /// A transitional virtio-pci device (hw/virtio/virtio-pci.c): legacy I/O
    /// BAR0, MSI-X BAR1 (32-bit, 4 KiB), modern BAR4 (64-bit prefetchable,
    /// 16 KiB); virtio-net also has a 256 KiB option ROM.
    pub fn qemu_virtio(bdf: Bdf, device: u16, class_rev: u32, io_size: u64, rom: bool) -> Self {
        let f = FakeFunction::new(bdf, 0x1af4, device, class_rev, 0, 256)
            .with_bar(0, io_size, bar_type::IO)
            .with_bar(1, 0x1000, bar_type::MEM32)
            .with_bar(4, 0x4000, bar_type::MEM64 | bar_type::PREFETCH)
            .with_virtio_caps();
        if rom {
            f.with_bar(6, 0x40000, 0)
        } else {
            f
        }
    }

    /// The vendor capabilities QEMU's virtio-pci puts in config space for
    /// the modern interface (hw/virtio/virtio-pci.c
    /// `virtio_pci_modern_regions_init` / `virtio_pci_modern_region_map`),
    /// all in BAR4: common configuration, ISR, device configuration,
    /// notifications (multiplier 4), then the PCI configuration access
    /// capability; the list is linked from 0x34 and STATUS says it exists.
    pub fn with_virtio_caps(mut self) -> Self {
        use super::virtio::{COMMON_OFF, DEVICE_OFF, ISR_OFF, NOTIFY_MULT, NOTIFY_OFF};
        let caps: [(u8, u8, u32, u32, u8); 5] = [
            (0x40, 1, COMMON_OFF as u32, 0x1000, 16),
            (0x50, 3, ISR_OFF as u32, 0x1000, 16),
            (0x60, 4, DEVICE_OFF as u32, 0x1000, 16),
            (0x70, 2, NOTIFY_OFF as u32, 0x1000, 20),
            (0x84, 5, 0, 0, 20),
        ];
        for (i, (at, ty, off, len, clen)) in caps.iter().enumerate() {
            let a = *at as usize;
            let next = caps.get(i + 1).map_or(0, |c| c.0);
            self.config[a] = 0x09;
            self.config[a + 1] = next;
            self.config[a + 2] = *clen;
            self.config[a + 3] = *ty;
            self.config[a + 4] = if *ty == 5 { 0 } else { 4 };
            self.config[a + 8..a + 12].copy_from_slice(&off.to_le_bytes());
            self.config[a + 12..a + 16].copy_from_slice(&len.to_le_bytes());
            if *ty == 2 {
                self.config[a + 16..a + 20].copy_from_slice(&NOTIFY_MULT.to_le_bytes());
            }
            for b in &mut self.wmask[a..a + *clen as usize] {
                *b = 0;
            }
        }
        self.config[0x34] = 0x40;
        self.wmask[0x34] = 0;
        let st = self.get16(reg::STATUS) | 0x10;
        self.set16(reg::STATUS, st);
        self
    }

    /// virtio-blk with a device model behind its modern BAR.
    pub fn qemu_virtio_blk_with(bdf: Bdf, dev: FakeVirtio) -> Self {
        Self::qemu_virtio_blk(bdf).with_model(Model::Virtio(Box::new(dev)))
    }

    /// virtio-scsi with a device model behind its modern BAR.
    pub fn qemu_virtio_scsi_with(bdf: Bdf, dev: FakeVirtio) -> Self {
        Self::qemu_virtio_scsi(bdf).with_model(Model::Virtio(Box::new(dev)))
    }

    pub fn qemu_virtio_net(bdf: Bdf) -> Self {
        Self::qemu_virtio(bdf, 0x1000, 0x0200_0000, 0x20, true)
    }
    pub fn qemu_virtio_blk(bdf: Bdf) -> Self {
        Self::qemu_virtio(bdf, 0x1001, 0x0100_0000, 0x80, false)
    }
    pub fn qemu_virtio_scsi(bdf: Bdf) -> Self {
        Self::qemu_virtio(bdf, 0x1004, 0x0100_0000, 0x40, false)
    }

    /// QEMU's `pci-bridge` (hw/pci-bridge/pci_bridge_dev.c): 1b36:0001,
    /// type 1 header, SHPC/MSI BAR0 64-bit 256 bytes; bus numbers as
    /// QEMU's spapr enumeration leaves them.
    pub fn qemu_pci_bridge(bdf: Bdf, secondary: u8, subordinate: u8) -> Self {
        let mut f = FakeFunction::new(bdf, 0x1b36, 0x0001, 0x0604_0000, 1, 256).with_bar(
            0,
            0x100,
            bar_type::MEM64,
        );
        f.config[reg::PRIMARY_BUS as usize] = bdf.bus;
        f.config[reg::SECONDARY_BUS as usize] = secondary;
        f.config[reg::SUBORDINATE_BUS as usize] = subordinate;
        f
    }

    /// QEMU's standard VGA (hw/display/vga-pci.c): 1234:1111, 16 MiB
    /// prefetchable 32-bit VRAM BAR0, 4 KiB MMIO BAR2, 64 KiB option ROM.
    pub fn qemu_vga(bdf: Bdf) -> Self {
        FakeFunction::new(bdf, 0x1234, 0x1111, 0x0300_0002, 0, 256)
            .with_bar(0, 0x100_0000, bar_type::MEM32 | bar_type::PREFETCH)
            .with_bar(2, 0x1000, bar_type::MEM32)
            .with_bar(6, 0x10000, 0)
    }

    /// QEMU's `nec-usb-xhci` (hw/usb/hcd-xhci-pci.c): 1033:0194, 64-bit
    /// BAR0 of 16 KiB.
    pub fn qemu_xhci(bdf: Bdf) -> Self {
        FakeFunction::new(bdf, 0x1033, 0x0194, 0x0c03_3003, 0, 256).with_bar(
            0,
            0x4000,
            bar_type::MEM64,
        )
    }

    /// The QEMU device model for IDs found in a tree, if this fake has one.
    pub fn qemu_model(bdf: Bdf, vendor: u32, device: u32, secondary: u8) -> Option<Self> {
        Some(match (vendor, device) {
            (0x1b36, 0x0010) => Self::qemu_nvme(bdf, FakeNvme::new(0x8000, 512)),
            (0x1b36, 0x0001) => Self::qemu_pci_bridge(bdf, secondary, secondary),
            (0x1af4, 0x1000) => Self::qemu_virtio_net(bdf),
            (0x1af4, 0x1001) => Self::qemu_virtio_blk(bdf),
            (0x1af4, 0x1004) => Self::qemu_virtio_scsi(bdf),
            (0x1234, 0x1111) => Self::qemu_vga(bdf),
            (0x1033, 0x0194) => Self::qemu_xhci(bdf),
            _ => return None,
        })
    }

    pub fn get16(&self, off: u16) -> u16 {
        let o = off as usize;
        u16::from_le_bytes([self.config[o], self.config[o + 1]])
    }
    pub fn get32(&self, off: u16) -> u32 {
        let o = off as usize;
        u32::from_le_bytes(self.config[o..o + 4].try_into().unwrap())
    }
    fn set16(&mut self, off: u16, v: u16) {
        let o = off as usize;
        self.config[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set32(&mut self, off: u16, v: u32) {
        let o = off as usize;
        self.config[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn command(&self) -> u16 {
        self.get16(reg::COMMAND)
    }

    /// `pci_default_read_config` (little-endian value).
    pub fn cfg_read(&mut self, addr: usize, size: usize) -> u32 {
        self.config_reads += 1;
        let mut v = 0u32;
        for i in (0..size).rev() {
            v = v << 8 | self.config[addr + i] as u32;
        }
        v
    }

    /// `pci_default_write_config`: writable bits take the value, W1C bits
    /// are cleared by ones.
    pub fn cfg_write(&mut self, addr: usize, size: usize, val: u32) {
        self.config_writes += 1;
        for i in 0..size {
            let b = (val >> (8 * i)) as u8;
            let (w, c) = (self.wmask[addr + i], self.w1cmask[addr + i]);
            self.config[addr + i] = (self.config[addr + i] & !w) | (b & w);
            self.config[addr + i] &= !(b & c);
        }
    }

    /// `pci_bar_address`: where BAR `idx` decodes now, if it does.
    pub fn bar_address(&self, idx: usize) -> Option<u64> {
        let size = self.bar_size[idx];
        if size == 0 {
            return None;
        }
        let off = self.bar_offset(idx);
        let ty = self.get32(off);
        let cmd = self.command();
        if idx != 6 && ty & bar_type::IO != 0 {
            if cmd & command::IO == 0 {
                return None;
            }
            let a = (ty & !3) as u64 & !(size - 1);
            let last = a + size - 1;
            return (last < u32::MAX as u64).then_some(a);
        }
        if cmd & command::MEMORY == 0 {
            return None;
        }
        let a = if idx != 6 && ty & bar_type::MEM64 != 0 {
            (self.get32(off + 4) as u64) << 32 | (ty & !0xf) as u64
        } else {
            if idx == 6 && ty & 1 == 0 {
                return None;
            }
            (ty & !0xf) as u64
        };
        let a = a & !(size - 1);
        let last = a.checked_add(size - 1)?;
        let is64 = idx != 6 && ty & bar_type::MEM64 != 0;
        if !is64 && last >= u32::MAX as u64 {
            return None;
        }
        Some(a)
    }

    /// Whether this bridge forwards bus address `addr` of the given space.
    fn forwards(&self, addr: u64, io: bool) -> bool {
        let cmd = self.command();
        if io {
            if cmd & command::IO == 0 {
                return false;
            }
            let base = ((self.config[0x1c] & 0xf0) as u64) << 8;
            let limit = ((self.config[0x1d] & 0xf0) as u64) << 8 | 0xfff;
            return base <= addr && addr <= limit;
        }
        if cmd & command::MEMORY == 0 {
            return false;
        }
        let base = ((self.get16(0x20) & 0xfff0) as u64) << 16;
        let limit = ((self.get16(0x22) & 0xfff0) as u64) << 16 | 0xfffff;
        if base <= addr && addr <= limit {
            return true;
        }
        let pbase = ((self.get16(0x24) & 0xfff0) as u64) << 16 | (self.get32(0x28) as u64) << 32;
        let plimit =
            ((self.get16(0x26) & 0xfff0) as u64) << 16 | 0xfffff | (self.get32(0x2c) as u64) << 32;
        pbase <= addr && addr <= plimit
    }
}

/// The functions under one PHB and its address windows.
#[derive(Debug)]
pub struct FakePciHost {
    pub index: u32,
    pub buid: u64,
    pub io: FakeWindow,
    pub mmio32: FakeWindow,
    pub mmio64: FakeWindow,
    pub functions: Vec<FakeFunction>,
}

impl FakePciHost {
    /// The windows `spapr_phb_placement` gives PHB `index`.
    pub fn qemu(index: u32) -> Self {
        let i = index as u64;
        FakePciHost {
            index,
            buid: super::phb::qemu_buid(index),
            io: FakeWindow {
                bus: 0,
                cpu: SPAPR_PCI_BASE + i * SPAPR_PCI_IO_WIN_SIZE,
                size: SPAPR_PCI_IO_WIN_SIZE,
            },
            mmio32: FakeWindow {
                bus: SPAPR_PCI_MEM32_BUS,
                cpu: SPAPR_PCI_BASE + (i + 1) * SPAPR_PCI_MEM32_WIN_SIZE,
                size: SPAPR_PCI_MEM32_WIN_SIZE,
            },
            mmio64: FakeWindow {
                bus: SPAPR_PCI_BASE + (i + 1) * SPAPR_PCI_MEM64_WIN_SIZE,
                cpu: SPAPR_PCI_BASE + (i + 1) * SPAPR_PCI_MEM64_WIN_SIZE,
                size: SPAPR_PCI_MEM64_WIN_SIZE,
            },
            functions: Vec::new(),
        }
    }

    pub fn function(&self, bdf: Bdf) -> Option<&FakeFunction> {
        self.functions.iter().find(|f| f.bdf == bdf)
    }
    pub fn function_mut(&mut self, bdf: Bdf) -> Option<&mut FakeFunction> {
        self.functions.iter_mut().find(|f| f.bdf == bdf)
    }

    /// The function and BAR decoding bus address `addr` (`len` bytes) on
    /// `bus`, following bridges' windows.
    fn route(
        &self,
        bus: u8,
        addr: u64,
        len: u64,
        io: bool,
        depth: u32,
    ) -> Option<(usize, usize, u64)> {
        if depth > 8 {
            return None;
        }
        for (i, f) in self
            .functions
            .iter()
            .enumerate()
            .filter(|(_, f)| f.bdf.bus == bus)
        {
            for idx in 0..7 {
                let is_io = idx != 6 && f.bar_size[idx] != 0 && f.get32(f.bar_offset(idx)) & 1 != 0;
                if is_io != io {
                    continue;
                }
                if let Some(a) = f.bar_address(idx) {
                    if addr >= a && addr - a + len <= f.bar_size[idx] {
                        return Some((i, idx, addr - a));
                    }
                }
            }
            if f.is_bridge() && f.forwards(addr, io) {
                let sec = f.config[reg::SECONDARY_BUS as usize];
                if sec > bus {
                    if let Some(hit) = self.route(sec, addr, len, io, depth + 1) {
                        return Some(hit);
                    }
                }
            }
        }
        None
    }
}

/// All fake PCI hosts.
#[derive(Debug, Default)]
pub struct FakePci {
    pub hosts: Vec<FakePciHost>,
}

impl FakePci {
    pub fn host(&self, buid: u64) -> Option<&FakePciHost> {
        self.hosts.iter().find(|h| h.buid == buid)
    }
    pub fn host_mut(&mut self, buid: u64) -> Option<&mut FakePciHost> {
        self.hosts.iter_mut().find(|h| h.buid == buid)
    }
}

/// A device's view of memory: bus addresses through the PHB's TCE tables
/// (`spapr_tce_translate_iommu`), only while the function is bus master.
pub struct DmaCtx<'a> {
    pub mem: &'a mut FakeMemory,
    pub tables: &'a [FakeTceTable],
    pub master: bool,
    /// Bytes moved, for the caller's statistics.
    pub bytes: u64,
}

/// Why a device access to memory failed (QEMU: `MEMTX_DECODE_ERROR` /
/// `MEMTX_ACCESS_ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaFault {
    /// Bus mastering is off.
    NotMaster,
    /// No enabled window covers the address, or its TCE lacks the permission.
    Translation { bus: u64, tce: u64 },
    /// The TCE points outside RAM.
    Memory { bus: u64, phys: u64 },
}

impl DmaCtx<'_> {
    /// Translate `bus` for an access that reads memory (`write` false) or
    /// writes it; returns the physical address and the bytes left in the page.
    fn translate(&self, bus: u64, write: bool) -> Result<(u64, u64), DmaFault> {
        if !self.master {
            return Err(DmaFault::NotMaster);
        }
        for t in self.tables.iter().filter(|t| t.enabled()) {
            let Some(rel) = bus.checked_sub(t.bus_offset) else {
                continue;
            };
            if rel >> t.page_shift >= t.nb_table {
                continue;
            }
            let tce = t.get(bus).unwrap_or(0);
            let need = if write { 2 } else { 1 };
            if tce & need == 0 {
                return Err(DmaFault::Translation { bus, tce });
            }
            let page = 1u64 << t.page_shift;
            let phys = (tce & !(page - 1)) | (bus & (page - 1));
            return Ok((phys, page - (bus & (page - 1))));
        }
        Err(DmaFault::Translation { bus, tce: 0 })
    }

    /// Device reads `buf.len()` bytes at bus address `bus`.
    pub fn read(&mut self, bus: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = bus.wrapping_add(done as u64);
            let (phys, room) = self.translate(at, false)?;
            let n = (buf.len() - done).min(room as usize);
            self.mem
                .read(phys, &mut buf[done..done + n])
                .map_err(|_| DmaFault::Memory { bus: at, phys })?;
            done += n;
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Device writes `data` at bus address `bus`.  Translation is checked for
    /// every page before anything is written.
    pub fn write(&mut self, bus: u64, data: &[u8]) -> Result<(), DmaFault> {
        let mut pieces = Vec::new();
        let mut done = 0usize;
        while done < data.len() {
            let at = bus.wrapping_add(done as u64);
            let (phys, room) = self.translate(at, true)?;
            let n = (data.len() - done).min(room as usize);
            pieces.push((at, phys, done, n));
            done += n;
        }
        for (at, phys, off, n) in pieces {
            self.mem
                .write(phys, &data[off..off + n])
                .map_err(|_| DmaFault::Memory { bus: at, phys })?;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }
}

impl FakePlatform {
    /// Add PHB `index` with QEMU's windows, TCE tables and no functions
    /// (`-device spapr-pci-host-bridge,index=N`); PHB 0 exists already.
    pub fn add_phb(&mut self, index: u32) {
        if self.phbs.iter().all(|p| p.index != index) {
            self.phbs.push(super::phb::FakePhb::qemu_default(index));
        }
        if self.pci.hosts.iter().all(|h| h.index != index) {
            self.pci.hosts.push(FakePciHost::qemu(index));
        }
    }

    /// Plug `f` into PHB `index` (created if needed).
    pub fn add_function(&mut self, index: u32, f: FakeFunction) {
        self.add_phb(index);
        let host = self
            .pci
            .hosts
            .iter_mut()
            .find(|h| h.index == index)
            .unwrap();
        host.functions.retain(|g| g.bdf != f.bdf);
        host.functions.push(f);
    }

    /// Plug in the QEMU device model of every function node of `phbs` (as
    /// [`crate::pci::tree::phbs`] reads them from one of QEMU's trees), on
    /// the PHB whose BUID the tree gives.  Bridges get the secondary bus of
    /// their children.  Returns the nodes this fake has no model for.
    pub fn plug_qemu_tree(&mut self, phbs: &[crate::pci::PhbNode]) -> Vec<alloc::string::String> {
        fn walk(
            p: &mut FakePlatform,
            index: u32,
            nodes: &[crate::pci::DevNode],
            missing: &mut Vec<alloc::string::String>,
        ) {
            for n in nodes {
                let Some(r0) = n.reg.first() else {
                    missing.push(n.path.clone());
                    continue;
                };
                let bdf = Bdf::from_phys_hi(r0.phys_hi);
                let secondary = n
                    .children
                    .iter()
                    .find_map(|c| c.reg.first())
                    .map_or(0, |r| Bdf::from_phys_hi(r.phys_hi).bus);
                let ids = (n.vendor_id.unwrap_or(0), n.device_id.unwrap_or(0));
                match FakeFunction::qemu_model(bdf, ids.0, ids.1, secondary) {
                    Some(f) => p.add_function(index, f),
                    None => missing.push(n.path.clone()),
                }
                walk(p, index, &n.children, missing);
            }
        }
        let mut missing = Vec::new();
        for phb in phbs {
            let index = phb.buid.wrapping_sub(super::phb::qemu_buid(0)) as u32;
            self.add_phb(index);
            walk(self, index, &phb.children, &mut missing);
        }
        missing
    }

    /// The NVMe model at `bdf` of PHB `buid`.
    pub fn nvme_mut(&mut self, buid: u64, bdf: Bdf) -> Option<&mut FakeNvme> {
        match &mut self.pci.host_mut(buid)?.function_mut(bdf)?.model {
            Model::Nvme(n) => Some(n),
            _ => None,
        }
    }

    /// The virtio model at `bdf` of PHB `buid`.
    pub fn virtio_mut(&mut self, buid: u64, bdf: Bdf) -> Option<&mut FakeVirtio> {
        match &mut self.pci.host_mut(buid)?.function_mut(bdf)?.model {
            Model::Virtio(v) => Some(v),
            _ => None,
        }
    }

    pub fn nvme(&self, buid: u64, bdf: Bdf) -> Option<&FakeNvme> {
        match &self.pci.host(buid)?.function(bdf)?.model {
            Model::Nvme(n) => Some(n),
            _ => None,
        }
    }
}

/// `ibm,read-pci-config` / `ibm,write-pci-config` as QEMU 7.2 answers them,
/// once a test has plugged in a PCI host ([`FakePlatform::add_phb`],
/// [`FakePlatform::add_function`]); before that config space is not
/// modelled and the calls answer −3 like every call this fake lacks.
pub(super) fn config_rtas(p: &mut FakePlatform, name: &str, args: &[u32], rets: &mut [u32]) -> i32 {
    if p.pci.hosts.is_empty() {
        return -3;
    }
    let write = name == "ibm,write-pci-config";
    let (nargs, nret) = if write { (5, 1) } else { (4, 2) };
    if args.len() != nargs || rets.len() != nret {
        return -1;
    }
    let (cfg, buid, size) = (args[0], (args[1] as u64) << 32 | args[2] as u64, args[3]);
    if !matches!(size, 1 | 2 | 4) {
        return -1;
    }
    let bdf = Bdf::from_phys_hi(cfg);
    let addr = (((cfg >> 20) & 0xf00) | (cfg & 0xff)) as usize;
    let Some(f) = p.pci.host_mut(buid).and_then(|h| h.function_mut(bdf)) else {
        return -1;
    };
    if !addr.is_multiple_of(size as usize) || addr >= f.config.len() {
        return -1;
    }
    if write {
        f.cfg_write(addr, size as usize, args[4]);
    } else {
        rets[1] = f.cfg_read(addr, size as usize);
    }
    0
}

/// `H_LOGICAL_CI_LOAD` / `H_LOGICAL_CI_STORE`: a big-endian access of
/// `size` bytes at a logical address — RAM, or a BAR behind a PHB window.
/// Unbacked addresses read 0 and drop writes (QEMU's unassigned memory).
pub(super) fn ci_hcall(p: &mut FakePlatform, opcode: u64, a: &[u64; 9], ret: &mut [u64; 9]) -> i64 {
    let (size, addr) = (a[0], a[1]);
    if !matches!(size, 1 | 2 | 4 | 8) {
        return rc::H_PARAMETER;
    }
    let store = opcode == op::H_LOGICAL_CI_STORE;
    let n = size as usize;
    // RAM.
    let mut buf = [0u8; 8];
    if p.mem.read(addr, &mut buf[..n]).is_ok() {
        if store {
            let bytes = a[2].to_be_bytes();
            let _ = p.mem.write(addr, &bytes[8 - n..]);
        } else {
            ret[0] = buf[..n].iter().fold(0u64, |v, b| v << 8 | *b as u64);
        }
        return rc::H_SUCCESS;
    }
    let FakePlatform { pci, phbs, mem, .. } = p;
    for host in &mut pci.hosts {
        let (bus, io) = if let Some(b) = host.mmio32.cpu_to_bus(addr, size) {
            (b, false)
        } else if let Some(b) = host.mmio64.cpu_to_bus(addr, size) {
            (b, false)
        } else if let Some(b) = host.io.cpu_to_bus(addr, size) {
            (b, true)
        } else {
            continue;
        };
        let Some((i, bar, off)) = host.route(0, bus, size, io, 0) else {
            break;
        };
        let tables: &[FakeTceTable] = phbs
            .iter()
            .find(|ph| ph.buid == host.buid)
            .map_or(&[], |ph| ph.tables.as_slice());
        let f = &mut host.functions[i];
        let master = f.command() & command::MASTER != 0;
        if let Model::Virtio(dev) = &mut f.model {
            if bar == 4 {
                let mut dma = DmaCtx {
                    mem,
                    tables,
                    master,
                    bytes: 0,
                };
                if store {
                    dev.mmio_write(off, n, swap(a[2], n), &mut dma);
                } else {
                    ret[0] = swap(dev.mmio_read(off, n), n);
                }
            }
            return rc::H_SUCCESS;
        }
        if let Model::Nvme(nvme) = &mut f.model {
            let mut dma = DmaCtx {
                mem,
                tables,
                master,
                bytes: 0,
            };
            if bar == 0 {
                // The device is little-endian; the access is big-endian.
                if store {
                    let v = swap(a[2], n);
                    nvme.mmio_write(off, n, v, &mut dma);
                } else {
                    let v = nvme.mmio_read(off, n, &mut dma);
                    ret[0] = swap(v, n);
                }
            }
        }
        return rc::H_SUCCESS;
    }
    if !store {
        ret[0] = 0;
    }
    rc::H_SUCCESS
}

/// Reverse the low `n` bytes of `v`.
fn swap(v: u64, n: usize) -> u64 {
    v.swap_bytes() >> (64 - 8 * n)
}
