//! Config space access with RTAS `ibm,read-pci-config` (nargs 4: config
//! address, BUID hi, BUID lo, size; nret 2: status, value) and
//! `ibm,write-pci-config` (nargs 5: config address, BUID hi, BUID lo, size,
//! value; nret 1) — LoPAPR §7.3.4, QEMU pseries contract §5.3.
//!
//! QEMU answers −1 (hardware error) for a size other than 1, 2 or 4, an
//! access that is not naturally aligned or lies beyond the function's config
//! space, and for a function that does not exist; the same call goes to
//! −1/−3 on PowerVM.  The argument block lives in [`Platform::scratch`].

use super::Bdf;
use crate::platform::Platform;
use crate::rtas::{self, RtasError};
use core::fmt;

/// A config access that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Size not 1, 2 or 4, or register not naturally aligned (refused
    /// before calling the platform).
    BadAccess { reg: u16, size: u32 },
    /// The RTAS call could not be made.
    Rtas(RtasError),
    /// The platform answered a status other than 0.
    Status {
        write: bool,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        status: i32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::BadAccess { reg, size } => {
                write!(f, "bad config access: {size} bytes at {reg:#x}")
            }
            ConfigError::Rtas(e) => write!(f, "config access: {e}"),
            ConfigError::Status {
                write,
                buid,
                bdf,
                reg,
                status,
            } => write!(
                f,
                "ibm,{}-pci-config({buid:#x} {bdf} reg {reg:#x}) returned {status}",
                if write { "write" } else { "read" }
            ),
        }
    }
}

impl From<RtasError> for ConfigError {
    fn from(e: RtasError) -> Self {
        ConfigError::Rtas(e)
    }
}

/// The platform's config-space RTAS calls, by token (from `/rtas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigAccess {
    pub read_token: u32,
    pub write_token: u32,
}

fn check(reg: u16, size: u32) -> Result<(), ConfigError> {
    if !matches!(size, 1 | 2 | 4) || !(reg as u32).is_multiple_of(size) || reg > 0xfff {
        return Err(ConfigError::BadAccess { reg, size });
    }
    Ok(())
}

impl ConfigAccess {
    pub const fn new(read_token: u32, write_token: u32) -> Self {
        ConfigAccess {
            read_token,
            write_token,
        }
    }

    /// QEMU's tokens (contract §5.1; identical in 7.2 and 10.0).
    pub const QEMU: ConfigAccess = ConfigAccess::new(0x2016, 0x2017);

    /// Read `size` (1, 2 or 4) bytes at `reg` of function `bdf` under the
    /// PHB `buid`.
    pub fn read<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        size: u32,
    ) -> Result<u32, ConfigError> {
        check(reg, size)?;
        let mut rets = [0u32; 2];
        let args = [bdf.config_addr(reg), (buid >> 32) as u32, buid as u32, size];
        let status = rtas::call(p, p.scratch(), self.read_token, &args, &mut rets)?;
        if status != rtas::status::SUCCESS {
            return Err(ConfigError::Status {
                write: false,
                buid,
                bdf,
                reg,
                status,
            });
        }
        Ok(rets[1])
    }

    /// Write the low `size` (1, 2 or 4) bytes of `value` at `reg`.
    pub fn write<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        size: u32,
        value: u32,
    ) -> Result<(), ConfigError> {
        check(reg, size)?;
        let mut rets = [0u32; 1];
        let args = [
            bdf.config_addr(reg),
            (buid >> 32) as u32,
            buid as u32,
            size,
            value,
        ];
        let status = rtas::call(p, p.scratch(), self.write_token, &args, &mut rets)?;
        if status != rtas::status::SUCCESS {
            return Err(ConfigError::Status {
                write: true,
                buid,
                bdf,
                reg,
                status,
            });
        }
        Ok(())
    }

    pub fn read8<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
    ) -> Result<u8, ConfigError> {
        Ok(self.read(p, buid, bdf, reg, 1)? as u8)
    }
    pub fn read16<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
    ) -> Result<u16, ConfigError> {
        Ok(self.read(p, buid, bdf, reg, 2)? as u16)
    }
    pub fn read32<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
    ) -> Result<u32, ConfigError> {
        self.read(p, buid, bdf, reg, 4)
    }
    pub fn write8<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        v: u8,
    ) -> Result<(), ConfigError> {
        self.write(p, buid, bdf, reg, 1, v as u32)
    }
    pub fn write16<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        v: u16,
    ) -> Result<(), ConfigError> {
        self.write(p, buid, bdf, reg, 2, v as u32)
    }
    pub fn write32<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        reg: u16,
        v: u32,
    ) -> Result<(), ConfigError> {
        self.write(p, buid, bdf, reg, 4, v)
    }

    /// Set and clear COMMAND bits; returns the new value.
    pub fn update_command<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        buid: u64,
        bdf: Bdf,
        set: u16,
        clear: u16,
    ) -> Result<u16, ConfigError> {
        let cmd = self.read16(p, buid, bdf, super::reg::COMMAND)?;
        let new = (cmd & !clear) | set;
        if new != cmd {
            self.write16(p, buid, bdf, super::reg::COMMAND, new)?;
        }
        Ok(new)
    }
}
