//! PCI: configuration space through RTAS, the devices QEMU put in the tree
//! checked against config space, BAR sizing and assignment from each host
//! bridge's `ranges` (PCI Bus Binding to IEEE 1275 §2.2.1 address
//! representation, §3 `reg`/`assigned-addresses`/`ranges`; PCI Local Bus
//! Specification 3.0 §6.2.5 BARs; PCI-to-PCI Bridge Architecture
//! Specification 1.2 §3.2.5 base/limit registers; LoPAPR §7.3.4
//! `ibm,read-pci-config`/`ibm,write-pci-config`; QEMU pseries contract §4.6,
//! §5.3).
//!
//! On pseries config space is reached only through the platform's RTAS: the
//! config address is `bus << 16 | devfn << 8 | reg[7:0] | reg[11:8] << 28`
//! together with the PHB's BUID.  QEMU enumerates the buses (bridges carry
//! their secondary bus numbers) and writes a node for every function with
//! `reg` listing its BARs and their sizes, but assigns no BAR
//! (`qemu,phb-enumerated`, no `assigned-addresses`), so the firmware does:
//!
//! 1. [`discover`]: walk the tree's nodes under a PHB ([`PhbNode`]), check
//!    each against config space (vendor/device ID, header type, bridge bus
//!    numbers) and size every BAR by writing all-ones (decode disabled
//!    meanwhile, original values restored);
//! 2. [`assign::plan`]: pack the BARs and bridge windows into the PHB's I/O,
//!    32-bit and 64-bit memory windows, naturally aligned;
//! 3. [`assign::apply`]: program BARs, bridge base/limit registers and the
//!    COMMAND decode bits; the plan gives each node's `assigned-addresses`.

pub mod assign;
mod config;
mod discover;
pub mod tree;

#[cfg(test)]
mod tests;

pub use config::{ConfigAccess, ConfigError};
pub use discover::{
    discover, Bar, BarKind, Bridge, DevNode, Function, PciReg, PhbNode, PhbTopology, Problem,
    ProblemKind, Range as PciRange, Space,
};

/// Config space registers (PCI 3.0 §6.1, PCI-to-PCI bridge 1.2 §3.2).
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    /// Revision ID (byte 8) and class code (bytes 9..12).
    pub const CLASS_REVISION: u16 = 0x08;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    /// Expansion ROM BAR of a type 0 header.
    pub const ROM: u16 = 0x30;
    pub const PRIMARY_BUS: u16 = 0x18;
    pub const SECONDARY_BUS: u16 = 0x19;
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    pub const IO_BASE: u16 = 0x1c;
    pub const IO_LIMIT: u16 = 0x1d;
    pub const MEMORY_BASE: u16 = 0x20;
    pub const MEMORY_LIMIT: u16 = 0x22;
    pub const PREF_MEMORY_BASE: u16 = 0x24;
    pub const PREF_MEMORY_LIMIT: u16 = 0x26;
    pub const PREF_BASE_UPPER32: u16 = 0x28;
    pub const PREF_LIMIT_UPPER32: u16 = 0x2c;
    pub const IO_BASE_UPPER16: u16 = 0x30;
    pub const IO_LIMIT_UPPER16: u16 = 0x32;
    /// Expansion ROM BAR of a type 1 (bridge) header.
    pub const BRIDGE_ROM: u16 = 0x38;
    pub const BRIDGE_CONTROL: u16 = 0x3e;
}

/// COMMAND register bits.
pub mod command {
    pub const IO: u16 = 1 << 0;
    pub const MEMORY: u16 = 1 << 1;
    pub const MASTER: u16 = 1 << 2;
}

/// A function's address on its PHB: bus, device (0–31), function (0–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf {
            bus,
            dev: dev & 0x1f,
            func: func & 7,
        }
    }

    pub const fn devfn(&self) -> u8 {
        (self.dev << 3) | self.func
    }

    /// The bus/device/function fields of a PCI `phys.hi` cell
    /// (`npt000ss bbbbbbbb dddddfff rrrrrrrr`).
    pub const fn from_phys_hi(hi: u32) -> Self {
        Bdf::new(
            (hi >> 16) as u8,
            ((hi >> 11) & 0x1f) as u8,
            ((hi >> 8) & 7) as u8,
        )
    }

    /// `bus << 16 | devfn << 8`: the `phys.hi` bits of this function, and the
    /// PE config address the DDW RTAS calls take.
    pub const fn config_base(&self) -> u32 {
        (self.bus as u32) << 16 | (self.devfn() as u32) << 8
    }

    /// The RTAS config address of register `reg` (0–0xfff): low 8 bits in
    /// bits 0–7, the extended-config bits 8–11 in bits 28–31.
    pub const fn config_addr(&self, reg: u16) -> u32 {
        self.config_base() | (reg as u32 & 0xff) | ((reg as u32 >> 8) & 0xf) << 28
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}
