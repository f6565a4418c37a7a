//! Virtio over PCI, the modern (virtio 1.x) interface: the transport the
//! virtio-blk and virtio-scsi drivers share (Virtio 1.1 §4.1.2 PCI device
//! IDs, §4.1.4 virtio structure PCI capabilities, §4.1.4.3 common
//! configuration, §4.1.4.4 notification, §4.1.4.6 device configuration,
//! §3.1.1 driver initialisation, §2.6 split virtqueues, §6 reserved feature
//! bits VERSION_1 and ACCESS_PLATFORM; QEMU pseries contract §4.5 and S6).
//!
//! * The capabilities are found by walking the function's config-space
//!   capability list through RTAS ([`ConfigAccess`]); each names a BAR, an
//!   offset and a length.  QEMU's virtio-pci devices on pseries are
//!   transitional (legacy I/O BAR0 plus the modern BAR4) unless
//!   `disable-legacy=on`; only the modern interface is used, and a device
//!   without it (or without `VIRTIO_F_VERSION_1`) is refused.
//! * Registers go through [`Mmio`]: virtio registers are little-endian, the
//!   `H_LOGICAL_CI_*` accesses big-endian, so the `_le` accessors swap.
//! * `VIRTIO_F_ACCESS_PLATFORM` is accepted whenever the device offers it
//!   (QEMU's `iommu_platform=on`, which then refuses a driver that does not
//!   accept it); then every ring and buffer is mapped through the PHB's TCE
//!   window ([`VirtioDma::Map`]), as for any other PCI device.  Without it
//!   the device uses guest-physical addresses ([`VirtioDma::Physical`]), as
//!   virtio requires and QEMU implements (its virtio devices then bypass the
//!   IOMMU).
//! * Split virtqueues live in firmware memory from
//!   [`Platform::alloc_phys`]: descriptor table and available ring on one
//!   page the device only reads, the used ring on a page it only writes.
//!   One request is in flight at a time; completion is polled on the used
//!   ring (interrupts are suppressed with `VIRTQ_AVAIL_F_NO_INTERRUPT`) with
//!   a timeout on the timebase, and `DEVICE_NEEDS_RESET` ends the wait.
//! * Errors are values ([`VirtioError`]); a timeout or a device that needs a
//!   reset marks the device failed, and later requests are refused.

use crate::memory::MemError;
use crate::mmio::{Mmio, MmioError};
use crate::pci::{Bdf, ConfigAccess, ConfigError};
use crate::platform::Platform;
use crate::tce::{Mapping, Perm, TceError, TceManager};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{fence, Ordering};

/// The virtio PCI vendor ID.
pub const VENDOR_ID: u16 = 0x1af4;

/// Virtio device types (§5).
pub mod device_type {
    pub const NET: u16 = 1;
    pub const BLOCK: u16 = 2;
    pub const SCSI: u16 = 8;
}

/// The virtio device type of a PCI device ID: modern IDs are 0x1040 +
/// type, transitional ones 0x1000–0x103f with a fixed table (§4.1.2.1).
pub fn device_type_of(device_id: u16) -> Option<u16> {
    match device_id {
        0x1040..=0x107f => Some(device_id - 0x1040),
        0x1000 => Some(device_type::NET),
        0x1001 => Some(device_type::BLOCK),
        0x1002 => Some(5),
        0x1003 => Some(3),
        0x1004 => Some(device_type::SCSI),
        0x1005 => Some(4),
        0x1009 => Some(9),
        _ => None,
    }
}

/// Device status bits (§2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Reserved feature bits (§6).
pub mod feature {
    pub const VERSION_1: u64 = 1 << 32;
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
}

/// `cfg_type` of a virtio PCI capability (§4.1.4).
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI: u8 = 5;
}

/// Common configuration registers (§4.1.4.3).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const MSIX_CONFIG: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
    /// Bytes the driver needs.
    pub const SIZE: u32 = 0x38;
}

/// Split-virtqueue descriptor flags (§2.6.5).
pub mod desc_flags {
    pub const NEXT: u16 = 1;
    pub const WRITE: u16 = 2;
}
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`.
pub const AVAIL_NO_INTERRUPT: u16 = 1;
/// MSI-X "no vector".
pub const NO_VECTOR: u16 = 0xffff;

/// The PCI capability ID of vendor-specific capabilities.
const CAP_VENDOR: u8 = 0x09;
/// STATUS bit: the function has a capability list.
const STATUS_CAP_LIST: u16 = 0x10;
const CAP_POINTER: u16 = 0x34;
/// Page size of ring and buffer memory.
const PAGE: u64 = 4096;
/// Largest queue the driver sets up (one request is in flight at a time).
pub const MAX_QUEUE_SIZE: u16 = 64;

/// Why a virtio operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtioError {
    Config(ConfigError),
    Mmio(MmioError),
    Tce(TceError),
    Memory(MemError),
    /// No vendor capability of this type (e.g. a legacy-only device).
    MissingCapability(&'static str),
    /// A capability names a BAR without an address, or lies outside it.
    BadCapability(&'static str),
    /// The device does not offer VIRTIO_F_VERSION_1.
    NotVersion1,
    /// The device did not accept the features (FEATURES_OK stayed clear).
    FeaturesRefused {
        offered: u64,
        accepted: u64,
    },
    /// The device needs VIRTIO_F_ACCESS_PLATFORM but its PHB has no window.
    NoDmaWindow,
    /// The device status did not return to 0 after a reset.
    ResetTimeout {
        ms: u64,
    },
    /// A queue the driver needs is missing or has size 0.
    NoQueue(u16),
    /// No used-ring entry in time.
    Timeout {
        what: &'static str,
        ms: u64,
    },
    /// The device set DEVICE_NEEDS_RESET (or FAILED).
    NeedsReset {
        status: u8,
    },
    /// A used entry for a descriptor chain that was not submitted.
    BadUsed {
        id: u32,
    },
    /// An earlier timeout or reset request left the device unusable.
    Failed,
    NoMemory,
    /// A device-specific status.
    Device(&'static str),
    /// Refused request (size, alignment).
    BadRequest(&'static str),
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtioError::Config(e) => write!(f, "config space: {e}"),
            VirtioError::Mmio(e) => write!(f, "register access: {e}"),
            VirtioError::Tce(e) => write!(f, "DMA mapping: {e}"),
            VirtioError::Memory(e) => write!(f, "ring memory: {e}"),
            VirtioError::MissingCapability(w) => {
                write!(
                    f,
                    "no virtio {w} capability (not a modern virtio-pci device)"
                )
            }
            VirtioError::BadCapability(w) => write!(f, "unusable virtio {w} capability"),
            VirtioError::NotVersion1 => write!(f, "device does not offer VIRTIO_F_VERSION_1"),
            VirtioError::FeaturesRefused { offered, accepted } => write!(
                f,
                "device refused features {accepted:#x} (offered {offered:#x})"
            ),
            VirtioError::NoDmaWindow => write!(
                f,
                "device requires VIRTIO_F_ACCESS_PLATFORM but its host bridge has no DMA window"
            ),
            VirtioError::ResetTimeout { ms } => write!(f, "device did not reset within {ms} ms"),
            VirtioError::NoQueue(q) => write!(f, "device has no virtqueue {q}"),
            VirtioError::Timeout { what, ms } => write!(f, "{what}: no completion within {ms} ms"),
            VirtioError::NeedsReset { status } => {
                write!(f, "device needs a reset (status {status:#x})")
            }
            VirtioError::BadUsed { id } => write!(f, "used entry for unknown chain {id}"),
            VirtioError::Failed => write!(f, "device failed earlier; not used"),
            VirtioError::NoMemory => write!(f, "out of firmware memory for rings"),
            VirtioError::Device(w) => write!(f, "{w}"),
            VirtioError::BadRequest(w) => write!(f, "bad request: {w}"),
        }
    }
}

impl From<ConfigError> for VirtioError {
    fn from(e: ConfigError) -> Self {
        VirtioError::Config(e)
    }
}
impl From<MmioError> for VirtioError {
    fn from(e: MmioError) -> Self {
        VirtioError::Mmio(e)
    }
}
impl From<TceError> for VirtioError {
    fn from(e: TceError) -> Self {
        VirtioError::Tce(e)
    }
}
impl From<MemError> for VirtioError {
    fn from(e: MemError) -> Self {
        VirtioError::Memory(e)
    }
}

impl VirtioError {
    /// Whether the error leaves the device unusable (no completion in time,
    /// a reset request, a used entry for a chain that was not submitted):
    /// the driver refuses later requests.
    pub fn fails_device(&self) -> bool {
        matches!(
            self,
            VirtioError::Timeout { .. }
                | VirtioError::NeedsReset { .. }
                | VirtioError::BadUsed { .. }
        )
    }
}

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioConfig {
    /// Timebase ticks per second.
    pub tb_freq: u64,
    /// Longest wait for one request.
    pub request_timeout_ms: u64,
    /// Longest wait for a reset to complete.
    pub reset_timeout_ms: u64,
    /// Entries per virtqueue (at most [`MAX_QUEUE_SIZE`] and the device's).
    pub queue_size: u16,
}

impl VirtioConfig {
    pub const fn new(tb_freq: u64) -> Self {
        VirtioConfig {
            tb_freq,
            request_timeout_ms: 10_000,
            reset_timeout_ms: 1000,
            queue_size: 16,
        }
    }

    fn ticks(&self, ms: u64) -> u64 {
        (ms as u128 * self.tb_freq as u128 / 1000).min(u64::MAX as u128) as u64
    }
}

/// One structure a capability points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapRegion {
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

/// The virtio capabilities of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCaps {
    pub common: CapRegion,
    pub notify: CapRegion,
    pub notify_off_multiplier: u32,
    pub isr: Option<CapRegion>,
    pub device: Option<CapRegion>,
}

/// Walk the capability list of `bdf` under PHB `buid` for the virtio
/// structures (the first capability of each type, §4.1.4).
pub fn read_caps<P: Platform + ?Sized>(
    p: &mut P,
    cfg: &ConfigAccess,
    buid: u64,
    bdf: Bdf,
) -> Result<VirtioCaps, VirtioError> {
    let st = cfg.read16(p, buid, bdf, crate::pci::reg::STATUS)?;
    if st & STATUS_CAP_LIST == 0 {
        return Err(VirtioError::MissingCapability("common configuration"));
    }
    let mut ptr = cfg.read8(p, buid, bdf, CAP_POINTER)? as u16 & 0xfc;
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut mult = 0;
    // A malformed (looping) list ends after the most capabilities that fit.
    for _ in 0..48 {
        if ptr < 0x40 {
            break;
        }
        let id = cfg.read8(p, buid, bdf, ptr)?;
        let next = cfg.read8(p, buid, bdf, ptr + 1)? as u16 & 0xfc;
        if id == CAP_VENDOR {
            let len = cfg.read8(p, buid, bdf, ptr + 2)?;
            let ty = cfg.read8(p, buid, bdf, ptr + 3)?;
            if len >= 16 {
                let r = CapRegion {
                    bar: cfg.read8(p, buid, bdf, ptr + 4)?,
                    offset: cfg.read32(p, buid, bdf, ptr + 8)?,
                    length: cfg.read32(p, buid, bdf, ptr + 12)?,
                };
                match ty {
                    cfg_type::COMMON if common.is_none() && r.bar < 6 => common = Some(r),
                    cfg_type::NOTIFY if notify.is_none() && r.bar < 6 && len >= 20 => {
                        mult = cfg.read32(p, buid, bdf, ptr + 16)?;
                        notify = Some(r);
                    }
                    cfg_type::ISR if isr.is_none() && r.bar < 6 => isr = Some(r),
                    cfg_type::DEVICE if device.is_none() && r.bar < 6 => device = Some(r),
                    _ => {}
                }
            }
        }
        ptr = next;
    }
    Ok(VirtioCaps {
        common: common.ok_or(VirtioError::MissingCapability("common configuration"))?,
        notify: notify.ok_or(VirtioError::MissingCapability("notification"))?,
        notify_off_multiplier: mult,
        isr,
        device,
    })
}

/// The modern interface's register windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    pub common: Mmio,
    pub notify: Mmio,
    pub notify_off_multiplier: u32,
    pub device: Option<Mmio>,
}

impl Transport {
    /// Register windows for `caps`; `bar(i)` gives BAR `i`'s CPU address and
    /// size as PCI set-up assigned it.
    pub fn new(
        caps: &VirtioCaps,
        bar: impl Fn(u8) -> Option<(u64, u64)>,
    ) -> Result<Transport, VirtioError> {
        let window = |r: CapRegion, what: &'static str| -> Result<Mmio, VirtioError> {
            let (base, size) = bar(r.bar).ok_or(VirtioError::BadCapability(what))?;
            let end = r.offset as u64 + r.length as u64;
            if r.length == 0 || end > size {
                return Err(VirtioError::BadCapability(what));
            }
            Ok(Mmio::new(base + r.offset as u64, r.length as u64))
        };
        if caps.common.length < common::SIZE {
            return Err(VirtioError::BadCapability("common configuration"));
        }
        Ok(Transport {
            common: window(caps.common, "common configuration")?,
            notify: window(caps.notify, "notification")?,
            notify_off_multiplier: caps.notify_off_multiplier,
            device: match caps.device {
                Some(d) => Some(window(d, "device configuration")?),
                None => None,
            },
        })
    }

    pub fn status<P: Platform + ?Sized>(&self, p: &mut P) -> Result<u8, VirtioError> {
        Ok(self.common.read8(p, common::DEVICE_STATUS)?)
    }

    fn set_status<P: Platform + ?Sized>(&self, p: &mut P, s: u8) -> Result<(), VirtioError> {
        Ok(self.common.write8(p, common::DEVICE_STATUS, s)?)
    }

    fn add_status<P: Platform + ?Sized>(&self, p: &mut P, bits: u8) -> Result<u8, VirtioError> {
        let s = self.status(p)? | bits;
        self.set_status(p, s)?;
        Ok(s)
    }

    /// Reset: write 0 to the status and wait until it reads 0 (§4.1.4.3.2).
    pub fn reset<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        cfg: &VirtioConfig,
    ) -> Result<(), VirtioError> {
        self.set_status(p, 0)?;
        let start = p.timebase();
        let limit = cfg.ticks(cfg.reset_timeout_ms);
        loop {
            if self.status(p)? == 0 {
                return Ok(());
            }
            if p.timebase().wrapping_sub(start) > limit {
                return Err(VirtioError::ResetTimeout {
                    ms: cfg.reset_timeout_ms,
                });
            }
            core::hint::spin_loop();
        }
    }

    /// Mark the device FAILED (the driver gave up on it).
    pub fn fail<P: Platform + ?Sized>(&self, p: &mut P) {
        let _ = self.add_status(p, status::FAILED);
    }

    pub fn device_features<P: Platform + ?Sized>(&self, p: &mut P) -> Result<u64, VirtioError> {
        self.common
            .write32_le(p, common::DEVICE_FEATURE_SELECT, 0)?;
        let lo = self.common.read32_le(p, common::DEVICE_FEATURE)? as u64;
        self.common
            .write32_le(p, common::DEVICE_FEATURE_SELECT, 1)?;
        let hi = self.common.read32_le(p, common::DEVICE_FEATURE)? as u64;
        Ok(hi << 32 | lo)
    }

    fn set_driver_features<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        f: u64,
    ) -> Result<(), VirtioError> {
        self.common
            .write32_le(p, common::DRIVER_FEATURE_SELECT, 0)?;
        self.common
            .write32_le(p, common::DRIVER_FEATURE, f as u32)?;
        self.common
            .write32_le(p, common::DRIVER_FEATURE_SELECT, 1)?;
        self.common
            .write32_le(p, common::DRIVER_FEATURE, (f >> 32) as u32)?;
        Ok(())
    }

    /// §3.1.1 steps 1–6: reset, ACKNOWLEDGE, DRIVER, negotiate features
    /// (VERSION_1 required; ACCESS_PLATFORM accepted when offered; of the
    /// device-specific ones those in `wanted`), FEATURES_OK.  Returns the
    /// accepted features.
    pub fn negotiate<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        cfg: &VirtioConfig,
        wanted: u64,
    ) -> Result<u64, VirtioError> {
        self.reset(p, cfg)?;
        self.set_status(p, status::ACKNOWLEDGE)?;
        self.add_status(p, status::DRIVER)?;
        let offered = self.device_features(p)?;
        if offered & feature::VERSION_1 == 0 {
            return Err(VirtioError::NotVersion1);
        }
        let accepted = offered & (wanted | feature::VERSION_1 | feature::ACCESS_PLATFORM);
        self.set_driver_features(p, accepted)?;
        self.add_status(p, status::FEATURES_OK)?;
        if self.status(p)? & status::FEATURES_OK == 0 {
            return Err(VirtioError::FeaturesRefused { offered, accepted });
        }
        Ok(accepted)
    }

    pub fn num_queues<P: Platform + ?Sized>(&self, p: &mut P) -> Result<u16, VirtioError> {
        Ok(self.common.read16_le(p, common::NUM_QUEUES)?)
    }

    /// The largest size queue `index` may have (0: no such queue).
    pub fn queue_max<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        index: u16,
    ) -> Result<u16, VirtioError> {
        self.common.write16_le(p, common::QUEUE_SELECT, index)?;
        Ok(self.common.read16_le(p, common::QUEUE_SIZE)?)
    }

    /// Tell the device where queue `q` lives and enable it.
    pub fn enable_queue<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        q: &mut Virtqueue,
    ) -> Result<(), VirtioError> {
        let c = &self.common;
        c.write16_le(p, common::QUEUE_SELECT, q.index)?;
        c.write16_le(p, common::QUEUE_SIZE, q.size)?;
        c.write16_le(p, common::QUEUE_MSIX_VECTOR, NO_VECTOR)?;
        c.write64_le_split(p, common::QUEUE_DESC, q.desc_bus())?;
        c.write64_le_split(p, common::QUEUE_DRIVER, q.avail_bus())?;
        c.write64_le_split(p, common::QUEUE_DEVICE, q.used_bus())?;
        q.notify_off = c.read16_le(p, common::QUEUE_NOTIFY_OFF)?;
        c.write16_le(p, common::QUEUE_ENABLE, 1)?;
        Ok(())
    }

    /// §3.1.1 step 8.
    pub fn driver_ok<P: Platform + ?Sized>(&self, p: &mut P) -> Result<(), VirtioError> {
        self.common.write16_le(p, common::MSIX_CONFIG, NO_VECTOR)?;
        self.add_status(p, status::DRIVER_OK)?;
        let s = self.status(p)?;
        if s & (status::DEVICE_NEEDS_RESET | status::FAILED) != 0 {
            return Err(VirtioError::NeedsReset { status: s });
        }
        Ok(())
    }

    /// Notify the device of new buffers in queue `q` (§4.1.4.4).
    pub fn notify<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        q: &Virtqueue,
    ) -> Result<(), VirtioError> {
        let off = q.notify_off as u64 * self.notify_off_multiplier as u64;
        Ok(self.notify.write16_le(p, off, q.index)?)
    }

    fn device_window(&self) -> Result<&Mmio, VirtioError> {
        self.device
            .as_ref()
            .ok_or(VirtioError::MissingCapability("device configuration"))
    }

    /// A device-configuration field of `size` (1, 2, 4 or 8) bytes, read
    /// until `config_generation` is stable (§4.1.4.3.1).
    pub fn device_config<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        offset: u64,
        size: u64,
    ) -> Result<u64, VirtioError> {
        let d = *self.device_window()?;
        for _ in 0..16 {
            let g0 = self.common.read8(p, common::CONFIG_GENERATION)?;
            let v = match size {
                1 => d.read8(p, offset)? as u64,
                2 => d.read16_le(p, offset)? as u64,
                4 => d.read32_le(p, offset)? as u64,
                _ => d.read64_le_split(p, offset)?,
            };
            if self.common.read8(p, common::CONFIG_GENERATION)? == g0 {
                return Ok(v);
            }
        }
        Err(VirtioError::Device("device configuration keeps changing"))
    }

    /// Write a device-configuration field of 4 bytes.
    pub fn set_device_config32<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        offset: u64,
        v: u32,
    ) -> Result<(), VirtioError> {
        Ok(self.device_window()?.write32_le(p, offset, v)?)
    }
}

/// How firmware memory reaches the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioDma {
    /// Guest-physical addresses (no VIRTIO_F_ACCESS_PLATFORM).
    Physical,
    /// Through the TCE window `liobn` (VIRTIO_F_ACCESS_PLATFORM).
    Map { liobn: u32 },
}

/// How data buffers reach the device (rings and request headers always
/// follow [`VirtioDma`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPath {
    /// Guest-physical addresses.
    Physical,
    /// Map each buffer for the transfer through `liobn`, unmap after.
    Map { liobn: u32 },
    /// Physical `[start, end)` is mapped already: bus = phys + `offset`.
    Direct { offset: u64, start: u64, end: u64 },
}

/// Firmware memory the device reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    pub phys: u64,
    pub bus: u64,
    pub size: u64,
    pub map: Option<Mapping>,
}

/// Allocate `size` bytes (whole pages) and make them reachable with `perm`.
pub fn alloc_dma<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    dma: VirtioDma,
    size: u64,
    perm: Perm,
) -> Result<DmaBuf, VirtioError> {
    let size = size.div_ceil(PAGE).max(1) * PAGE;
    let phys = p.alloc_phys(size, PAGE).ok_or(VirtioError::NoMemory)?;
    match dma {
        VirtioDma::Physical => Ok(DmaBuf {
            phys,
            bus: phys,
            size,
            map: None,
        }),
        VirtioDma::Map { liobn } => match tces.map(p, liobn, phys, size, perm) {
            Ok(m) => Ok(DmaBuf {
                phys,
                bus: m.ioba,
                size,
                map: Some(m),
            }),
            Err(e) => {
                p.free_phys(phys, size, PAGE);
                Err(e.into())
            }
        },
    }
}

/// Undo [`alloc_dma`]; memory that cannot be unmapped is kept out of use.
pub fn free_dma<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    b: &DmaBuf,
) -> Result<(), VirtioError> {
    if let Some(m) = &b.map {
        tces.unmap_mapping(p, m)?;
    }
    p.free_phys(b.phys, b.size, PAGE);
    Ok(())
}

/// Everything a driver allocated, so a failed init or a shutdown can give
/// it back.
#[derive(Clone, Debug, Default)]
pub struct DmaBufs {
    pub all: Vec<DmaBuf>,
}

impl DmaBufs {
    pub fn alloc<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
        dma: VirtioDma,
        size: u64,
        perm: Perm,
    ) -> Result<DmaBuf, VirtioError> {
        let b = alloc_dma(p, tces, dma, size, perm)?;
        self.all.push(b);
        Ok(b)
    }

    /// Free everything; returns the first error (unmappable memory stays
    /// allocated).
    pub fn release<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        tces: &mut TceManager,
    ) -> Result<(), VirtioError> {
        let mut first = Ok(());
        for b in self.all.drain(..).rev() {
            if let Err(e) = free_dma(p, tces, &b) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// One buffer of a request: bus address, length, and whether the device
/// writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub bus: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// A split virtqueue (§2.6) driven one request at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Virtqueue {
    pub index: u16,
    pub size: u16,
    /// Descriptor table and available ring (device reads).
    ring: DmaBuf,
    /// Used ring (device writes).
    used: DmaBuf,
    pub notify_off: u16,
    avail_idx: u16,
    last_used: u16,
}

impl Virtqueue {
    const AVAIL_OFF: u64 = 0;

    /// Allocate queue `index` of `size` entries (a power of two).
    pub fn new<P: Platform + ?Sized>(
        p: &mut P,
        tces: &mut TceManager,
        bufs: &mut DmaBufs,
        dma: VirtioDma,
        index: u16,
        size: u16,
    ) -> Result<Virtqueue, VirtioError> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return Err(VirtioError::BadRequest("queue size"));
        }
        let ring_bytes = 16 * size as u64 + 6 + 2 * size as u64;
        let ring = bufs.alloc(p, tces, dma, ring_bytes, Perm::Read)?;
        let used = bufs.alloc(p, tces, dma, 6 + 8 * size as u64, Perm::Write)?;
        let q = Virtqueue {
            index,
            size,
            ring,
            used,
            notify_off: 0,
            avail_idx: 0,
            last_used: 0,
        };
        // Polled: no interrupts wanted.
        p.write(
            q.avail_phys() + Self::AVAIL_OFF,
            &AVAIL_NO_INTERRUPT.to_le_bytes(),
        )?;
        Ok(q)
    }

    fn avail_phys(&self) -> u64 {
        self.ring.phys + 16 * self.size as u64
    }
    pub fn desc_bus(&self) -> u64 {
        self.ring.bus
    }
    pub fn avail_bus(&self) -> u64 {
        self.ring.bus + 16 * self.size as u64
    }
    pub fn used_bus(&self) -> u64 {
        self.used.bus
    }

    /// Put `segs` as one descriptor chain, notify, and wait for the device
    /// to return it.  Returns the number of bytes the device wrote.
    pub fn submit<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        t: &Transport,
        cfg: &VirtioConfig,
        segs: &[Segment],
        what: &'static str,
    ) -> Result<u32, VirtioError> {
        let n = segs.len();
        if n == 0 || n > self.size as usize {
            return Err(VirtioError::BadRequest("descriptor count"));
        }
        let mut table = Vec::with_capacity(16 * n);
        for (i, s) in segs.iter().enumerate() {
            let mut flags = 0;
            if i + 1 < n {
                flags |= desc_flags::NEXT;
            }
            if s.device_writes {
                flags |= desc_flags::WRITE;
            }
            table.extend_from_slice(&s.bus.to_le_bytes());
            table.extend_from_slice(&s.len.to_le_bytes());
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&((i as u16 + 1) % self.size).to_le_bytes());
        }
        p.write(self.ring.phys, &table)?;
        let slot = (self.avail_idx % self.size) as u64;
        let avail = self.avail_phys();
        p.write(avail + 4 + 2 * slot, &0u16.to_le_bytes())?;
        // The descriptors and ring entry are in memory before the index moves,
        // and the index before the device hears of it.
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        p.write(avail + 2, &self.avail_idx.to_le_bytes())?;
        fence(Ordering::SeqCst);
        t.notify(p, self)?;
        let start = p.timebase();
        let limit = cfg.ticks(cfg.request_timeout_ms);
        let mut idx = [0u8; 2];
        loop {
            p.read(self.used.phys + 2, &mut idx)?;
            if u16::from_le_bytes(idx) != self.last_used {
                fence(Ordering::SeqCst);
                let slot = (self.last_used % self.size) as u64;
                let mut e = [0u8; 8];
                p.read(self.used.phys + 4 + 8 * slot, &mut e)?;
                self.last_used = self.last_used.wrapping_add(1);
                let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                if id != 0 {
                    return Err(VirtioError::BadUsed { id });
                }
                return Ok(u32::from_le_bytes([e[4], e[5], e[6], e[7]]));
            }
            let s = t.status(p)?;
            if s & (status::DEVICE_NEEDS_RESET | status::FAILED) != 0 {
                return Err(VirtioError::NeedsReset { status: s });
            }
            if p.timebase().wrapping_sub(start) > limit {
                return Err(VirtioError::Timeout {
                    what,
                    ms: cfg.request_timeout_ms,
                });
            }
            core::hint::spin_loop();
        }
    }
}

/// Set up queue `index` with at most `cfg.queue_size` entries.
pub fn setup_queue<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    bufs: &mut DmaBufs,
    t: &Transport,
    dma: VirtioDma,
    cfg: &VirtioConfig,
    index: u16,
) -> Result<Virtqueue, VirtioError> {
    let max = t.queue_max(p, index)?;
    if max == 0 {
        return Err(VirtioError::NoQueue(index));
    }
    let want = cfg.queue_size.clamp(1, MAX_QUEUE_SIZE).min(max);
    // The largest power of two not above both.
    let size = 1u16 << (15 - want.leading_zeros() as u16);
    let mut q = Virtqueue::new(p, tces, bufs, dma, index, size)?;
    t.enable_queue(p, &mut q)?;
    Ok(q)
}

/// Device initialisation (§3.1.1) around a driver's own `setup`: negotiate
/// (`wanted`: the device-specific features the driver takes), choose the
/// DMA mode for the PHB's default DMA window `window`, and run `setup`
/// (queues, device configuration, `DRIVER_OK`) with the [`DmaBufs`] it
/// allocates from, the transport, the settings, the accepted features and
/// the DMA mode.  Returns the driver and the memory it allocated.  A device
/// the driver gives up on is told so: FAILED when negotiation fails; reset
/// (FAILED if it does not reset), its memory freed, when `setup` fails.
pub fn bring_up<P: Platform + ?Sized, D>(
    p: &mut P,
    tces: &mut TceManager,
    t: Transport,
    window: Option<u32>,
    cfg: VirtioConfig,
    wanted: u64,
    setup: impl FnOnce(
        &mut P,
        &mut TceManager,
        &mut DmaBufs,
        Transport,
        VirtioConfig,
        u64,
        VirtioDma,
    ) -> Result<D, VirtioError>,
) -> Result<(D, DmaBufs), VirtioError> {
    let negotiated = t
        .negotiate(p, &cfg, wanted)
        .and_then(|features| dma_for(features, window).map(|dma| (features, dma)));
    let (features, dma) = match negotiated {
        Ok(n) => n,
        Err(e) => {
            t.fail(p);
            return Err(e);
        }
    };
    let mut bufs = DmaBufs::default();
    match setup(p, tces, &mut bufs, t, cfg, features, dma) {
        Ok(d) => Ok((d, bufs)),
        Err(e) => {
            let _ = shutdown(p, tces, &t, &cfg, &mut bufs);
            Err(e)
        }
    }
}

/// Reset the device so it stops using its rings (FAILED if it does not
/// reset) and free `bufs`; returns the first error.
pub fn shutdown<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    t: &Transport,
    cfg: &VirtioConfig,
    bufs: &mut DmaBufs,
) -> Result<(), VirtioError> {
    let r = t.reset(p, cfg);
    if r.is_err() {
        t.fail(p);
    }
    let f = bufs.release(p, tces);
    r.and(f)
}

/// The DMA mode the negotiated features call for, given the PHB's default
/// window.
pub fn dma_for(features: u64, window: Option<u32>) -> Result<VirtioDma, VirtioError> {
    if features & feature::ACCESS_PLATFORM == 0 {
        return Ok(VirtioDma::Physical);
    }
    match window {
        Some(liobn) => Ok(VirtioDma::Map { liobn }),
        None => Err(VirtioError::NoDmaWindow),
    }
}

/// Make a data buffer reachable for one transfer; returns its bus address
/// and the mapping to undo afterwards.
pub fn data_bus<P: Platform + ?Sized>(
    p: &mut P,
    tces: &mut TceManager,
    path: DataPath,
    phys: u64,
    len: u64,
    device_writes: bool,
) -> Result<(u64, Option<Mapping>), VirtioError> {
    match path {
        DataPath::Physical => Ok((phys, None)),
        DataPath::Map { liobn } => {
            let perm = if device_writes {
                Perm::Write
            } else {
                Perm::Read
            };
            let m = tces.map(p, liobn, phys, len, perm)?;
            Ok((m.ioba, Some(m)))
        }
        DataPath::Direct { offset, start, end } => {
            if phys < start || phys.checked_add(len).is_none_or(|e| e > end) {
                return Err(VirtioError::BadRequest(
                    "buffer outside the directly mapped memory",
                ));
            }
            Ok((phys.wrapping_add(offset), None))
        }
    }
}

/// Undo the mapping [`data_bus`] made, after the transfer whose result is
/// `r`; a failed unmap is the result only when the transfer succeeded.
pub fn unmap_data<P: Platform + ?Sized, T, E: From<VirtioError>>(
    p: &mut P,
    tces: &mut TceManager,
    mapping: Option<Mapping>,
    r: Result<T, E>,
) -> Result<T, E> {
    if let Some(m) = mapping {
        let u = tces.unmap_mapping(p, &m);
        if r.is_ok() {
            u.map_err(VirtioError::from)?;
        }
    }
    r
}

/// The default data path for a DMA mode.
pub fn default_data_path(dma: VirtioDma) -> DataPath {
    match dma {
        VirtioDma::Physical => DataPath::Physical,
        VirtioDma::Map { liobn } => DataPath::Map { liobn },
    }
}
