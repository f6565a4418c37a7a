//! A fake pseries platform for host tests and fuzz targets (feature `fake`).
//!
//! It models what QEMU's pseries machine does for the calls the firmware makes,
//! following the QEMU pseries contract: the vty (§3.2), RTAS through H_RTAS with
//! QEMU's token numbering (§5.1), NVRAM with `-prom-env` contents (§11), PHBs with
//! their TCE tables and dynamic DMA windows (§3.3, §4, §5.2).  Every hypercall and
//! RTAS call can be made to fail ([`FakePlatform::inject_hcall`],
//! [`FakePlatform::inject_rtas`]) so error paths are tested too.  Each call is
//! recorded in [`FakePlatform::calls`].

pub mod nvme;
pub mod pci;
pub mod phb;
pub mod virtio;

use crate::hcall::{op, rc, HcallReturn, Hypervisor};
use crate::memory::{FakeMemory, MemError, Memory};
use crate::platform::{Platform, SCRATCH_SIZE};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

pub use phb::{FakePhb, FakeTceTable};

/// QEMU 7.2's RTAS token table (`RTAS_TOKEN_BASE` 0x2000 + index); 10.0 is identical.
pub const QEMU_RTAS_TOKENS: &[(&str, u32)] = &[
    ("display-character", 0x2000),
    ("get-time-of-day", 0x2001),
    ("set-time-of-day", 0x2002),
    ("power-off", 0x2003),
    ("system-reboot", 0x2004),
    ("query-cpu-stopped-state", 0x2005),
    ("start-cpu", 0x2006),
    ("stop-self", 0x2007),
    ("ibm,get-system-parameter", 0x2008),
    ("ibm,set-system-parameter", 0x2009),
    ("ibm,set-xive", 0x200a),
    ("ibm,get-xive", 0x200b),
    ("ibm,int-off", 0x200c),
    ("ibm,int-on", 0x200d),
    ("check-exception", 0x200e),
    ("event-scan", 0x200f),
    ("ibm,set-tce-bypass", 0x2010),
    ("quiesce", 0x2011),
    ("nvram-fetch", 0x2012),
    ("nvram-store", 0x2013),
    ("read-pci-config", 0x2014),
    ("write-pci-config", 0x2015),
    ("ibm,read-pci-config", 0x2016),
    ("ibm,write-pci-config", 0x2017),
    ("ibm,query-interrupt-source-number", 0x2018),
    ("ibm,change-msi", 0x2019),
    ("set-indicator", 0x201a),
    ("set-power-level", 0x201b),
    ("get-power-level", 0x201c),
    ("get-sensor-state", 0x201d),
    ("ibm,configure-connector", 0x201e),
    ("ibm,os-term", 0x201f),
    ("ibm,set-eeh-option", 0x2020),
    ("ibm,get-config-addr-info2", 0x2021),
    ("ibm,read-slot-reset-state2", 0x2022),
    ("ibm,set-slot-reset", 0x2023),
    ("ibm,configure-pe", 0x2024),
    ("ibm,slot-error-detail", 0x2025),
    ("ibm,query-pe-dma-window", 0x2026),
    ("ibm,create-pe-dma-window", 0x2027),
    ("ibm,remove-pe-dma-window", 0x2028),
    ("ibm,reset-pe-dma-window", 0x2029),
    ("ibm,suspend-me", 0x202a),
    ("ibm,nmi-register", 0x202b),
    ("ibm,nmi-interlock", 0x202c),
];

/// QEMU's vty reg for the first `-serial`.
pub const VTY_REG: u64 = 0x7100_0000;

/// One call the firmware made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Hcall {
        opcode: u64,
        args: Vec<u64>,
        rc: i64,
    },
    Rtas {
        name: String,
        args: Vec<u32>,
        rets: Vec<u32>,
    },
}

/// How the machine ended, if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    PowerOff,
    Reboot,
    OsTerm(String),
}

/// A queued failure: the next `count` calls matching get this result.
#[derive(Clone, Debug)]
struct Injection {
    count: u32,
    value: i64,
}

pub struct FakePlatform {
    pub mem: FakeMemory,
    scratch: u64,
    /// Timebase; advances by `tb_step` on every read.
    pub tb: u64,
    pub tb_step: u64,
    /// Bytes written to the vty.
    pub console: Vec<u8>,
    /// Bytes waiting to be read from the vty.
    pub console_input: Vec<u8>,
    pub vty_regs: Vec<u64>,
    /// NVRAM contents (64 KiB as QEMU makes it).
    pub nvram: Vec<u8>,
    pub rtas_tokens: BTreeMap<String, u32>,
    pub phbs: Vec<FakePhb>,
    /// PCI functions behind the PHBs (config space, BARs, device models);
    /// none until a test plugs some in ([`FakePlatform::add_function`]).
    pub pci: pci::FakePci,
    pub calls: Vec<Call>,
    pub ended: Option<Ended>,
    /// Firmware-owned memory for `alloc_phys` (the top quarter of RAM).
    pub phys: crate::memory::RangeAllocator,
    hcall_faults: BTreeMap<u64, Injection>,
    rtas_faults: BTreeMap<String, Injection>,
}

impl FakePlatform {
    /// A machine with `ram` bytes of RAM at 0 (as `-m`), one vty, QEMU's RTAS
    /// tokens, empty NVRAM and one PHB (index 0) with QEMU's default DMA setup.
    pub fn new(ram: usize) -> Self {
        let scratch = 0x10000;
        FakePlatform {
            mem: FakeMemory::new().with_region(0, ram),
            scratch,
            tb: 0,
            tb_step: 1,
            console: Vec::new(),
            console_input: Vec::new(),
            vty_regs: alloc::vec![VTY_REG],
            nvram: alloc::vec![0; 0x10000],
            rtas_tokens: QEMU_RTAS_TOKENS
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect(),
            phbs: alloc::vec![FakePhb::qemu_default(0)],
            pci: pci::FakePci::default(),
            calls: Vec::new(),
            ended: None,
            phys: {
                let mut a = crate::memory::RangeAllocator::new();
                let quarter = (ram as u64 / 4) & !0xfff;
                a.add(crate::memory::Range::new(ram as u64 - quarter, quarter));
                a
            },
            hcall_faults: BTreeMap::new(),
            rtas_faults: BTreeMap::new(),
        }
    }

    /// Make the next `count` hypercalls `opcode` return `rc` without effect.
    pub fn inject_hcall(&mut self, opcode: u64, rc: i64, count: u32) {
        self.hcall_faults
            .insert(opcode, Injection { count, value: rc });
    }

    /// Make the next `count` RTAS calls `name` return `status` without effect.
    pub fn inject_rtas(&mut self, name: &str, status: i32, count: u32) {
        self.rtas_faults.insert(
            name.to_string(),
            Injection {
                count,
                value: status as i64,
            },
        );
    }

    /// The name of RTAS `token`.
    pub fn rtas_name(&self, token: u32) -> Option<&str> {
        self.rtas_tokens
            .iter()
            .find(|(_, t)| **t == token)
            .map(|(n, _)| n.as_str())
    }

    pub fn phb_by_buid(&mut self, buid: u64) -> Option<&mut FakePhb> {
        self.phbs.iter_mut().find(|p| p.buid == buid)
    }

    /// The TCE table of `liobn`, on whichever PHB owns it.
    pub fn tce_table(&mut self, liobn: u32) -> Option<&mut FakeTceTable> {
        self.phbs.iter_mut().find_map(|p| p.table_mut(liobn))
    }

    /// Console output as text.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }

    /// Store `-prom-env` pairs in NVRAM the way QEMU 7.2 does
    /// (hw/nvram/spapr_nvram.c, chrp_nvram.c): a CHRP "system" partition at 0
    /// of at least 2 KiB, then a "free" partition at 2 KiB to the end.
    pub fn set_prom_env(&mut self, pairs: &[&str]) {
        let mut body = Vec::new();
        for p in pairs {
            body.extend_from_slice(p.as_bytes());
            body.push(0);
        }
        body.push(0);
        let len = (16 + body.len()).div_ceil(16) * 16;
        let len = len.max(2048);
        self.nvram.iter_mut().for_each(|b| *b = 0);
        self.nvram[0] = 0x70;
        self.nvram[2..4].copy_from_slice(&((len / 16) as u16).to_be_bytes());
        self.nvram[4..10].copy_from_slice(b"system");
        self.nvram[1] = chrp_header_checksum(&self.nvram[..16]);
        self.nvram[16..16 + body.len()].copy_from_slice(&body);
        let free = 2048;
        let free_len = (self.nvram.len() - free) / 16;
        self.nvram[free] = 0x7f;
        self.nvram[free + 2..free + 4].copy_from_slice(&(free_len as u16).to_be_bytes());
        self.nvram[free + 4..free + 8].copy_from_slice(b"free");
        let ck = chrp_header_checksum(&self.nvram[free..free + 16]);
        self.nvram[free + 1] = ck;
    }

    fn rtas(&mut self, block: u64) -> i64 {
        let Ok(token) = self.mem.read_be32(block) else {
            return rc::H_PARAMETER;
        };
        let nargs = self.mem.read_be32(block + 4).unwrap_or(0) as u64;
        let nret = self.mem.read_be32(block + 8).unwrap_or(0) as u64;
        if nargs + nret > 64 {
            return rc::H_PARAMETER;
        }
        let args: Vec<u32> = (0..nargs)
            .map(|i| self.mem.read_be32(block + 12 + 4 * i).unwrap_or(0))
            .collect();
        let rets_at = block + 12 + 4 * nargs;
        let Some(name) = self.rtas_name(token).map(String::from) else {
            let _ = self.mem.write_be32(rets_at, (-3i32) as u32);
            return rc::H_PARAMETER;
        };
        let mut rets = alloc::vec![0u32; nret as usize];
        let injected = match self.rtas_faults.get_mut(&name) {
            Some(inj) if inj.count > 0 => {
                inj.count -= 1;
                Some(inj.value as i32)
            }
            _ => None,
        };
        let status = match injected {
            Some(s) => s,
            None => self.rtas_call(&name, &args, &mut rets),
        };
        if let Some(r0) = rets.first_mut() {
            *r0 = status as u32;
        }
        for (i, r) in rets.iter().enumerate() {
            let _ = self.mem.write_be32(rets_at + 4 * i as u64, *r);
        }
        self.calls.push(Call::Rtas { name, args, rets });
        rc::H_SUCCESS
    }

    /// RTAS semantics; returns the status (rets[0]); other outputs in `rets[1..]`.
    fn rtas_call(&mut self, name: &str, args: &[u32], rets: &mut [u32]) -> i32 {
        match name {
            "power-off" => {
                self.ended = Some(Ended::PowerOff);
                0
            }
            "system-reboot" => {
                self.ended = Some(Ended::Reboot);
                0
            }
            "ibm,os-term" => {
                let mut buf = [0u8; 1024];
                let n = args
                    .first()
                    .and_then(|a| self.mem.read_cstr(*a as u64, &mut buf, 1023).ok())
                    .unwrap_or(0);
                self.ended = Some(Ended::OsTerm(
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
                0
            }
            "nvram-fetch" | "nvram-store" => {
                if args.len() != 3 || rets.len() != 2 {
                    return -3;
                }
                let (off, buf, len) = (args[0] as usize, args[1] as u64, args[2] as usize);
                if off.checked_add(len).is_none_or(|e| e > self.nvram.len()) {
                    return -3;
                }
                let ok = if name == "nvram-fetch" {
                    let data = self.nvram[off..off + len].to_vec();
                    self.mem.write(buf, &data).is_ok()
                } else {
                    let mut data = alloc::vec![0; len];
                    let ok = self.mem.read(buf, &mut data).is_ok();
                    if ok {
                        self.nvram[off..off + len].copy_from_slice(&data);
                    }
                    ok
                };
                if !ok {
                    return -1;
                }
                rets[1] = len as u32;
                0
            }
            n if n.contains("pe-dma-window") => phb::ddw_rtas(self, n, args, rets),
            "ibm,read-pci-config" | "ibm,write-pci-config" => {
                pci::config_rtas(self, name, args, rets)
            }
            _ => -3,
        }
    }
}

/// The CHRP NVRAM header checksum (hw/nvram/chrp_nvram.c): sum of bytes 0 and
/// 2..16 with end-around carry, stored in byte 1.
pub fn chrp_header_checksum(h: &[u8]) -> u8 {
    let mut sum: u32 = h[0] as u32;
    for b in &h[2..16] {
        sum += *b as u32;
        if sum > 0xff {
            sum = (sum + 1) & 0xff;
        }
    }
    sum as u8
}

impl Memory for FakePlatform {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.mem.write(addr, data)
    }
}

impl Hypervisor for FakePlatform {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        let mut a = [0u64; 9];
        a[..args.len().min(9)].copy_from_slice(&args[..args.len().min(9)]);
        let injected = match self.hcall_faults.get_mut(&opcode) {
            Some(inj) if inj.count > 0 => {
                inj.count -= 1;
                Some(inj.value)
            }
            _ => None,
        };
        let mut ret = [0u64; 9];
        let rc = match injected {
            Some(rc) => rc,
            None => match opcode {
                op::H_PUT_TERM_CHAR => {
                    let (v, len) = (a[0], a[1] as usize);
                    if len > 16 || !(v == 0 || self.vty_regs.contains(&v)) {
                        rc::H_PARAMETER
                    } else {
                        let mut b = [0u8; 16];
                        b[..8].copy_from_slice(&a[2].to_be_bytes());
                        b[8..].copy_from_slice(&a[3].to_be_bytes());
                        self.console.extend_from_slice(&b[..len]);
                        rc::H_SUCCESS
                    }
                }
                op::H_GET_TERM_CHAR => {
                    let n = self.console_input.len().min(16);
                    let mut b = [0u8; 16];
                    b[..n].copy_from_slice(&self.console_input[..n]);
                    self.console_input.drain(..n);
                    ret[0] = n as u64;
                    ret[1] = u64::from_be_bytes(b[..8].try_into().unwrap());
                    ret[2] = u64::from_be_bytes(b[8..].try_into().unwrap());
                    rc::H_SUCCESS
                }
                op::KVMPPC_H_RTAS => self.rtas(a[0]),
                op::H_PUT_TCE | op::H_GET_TCE | op::H_STUFF_TCE | op::H_PUT_TCE_INDIRECT => {
                    phb::tce_hcall(self, opcode, &a, &mut ret)
                }
                op::H_LOGICAL_CI_LOAD | op::H_LOGICAL_CI_STORE => {
                    pci::ci_hcall(self, opcode, &a, &mut ret)
                }
                _ => rc::H_FUNCTION,
            },
        };
        self.calls.push(Call::Hcall {
            opcode,
            args: args.to_vec(),
            rc,
        });
        HcallReturn { rc, ret }
    }
}

impl Platform for FakePlatform {
    fn scratch(&self) -> u64 {
        self.scratch
    }
    fn timebase(&self) -> u64 {
        // Interior progress without &mut: the fake's clock is derived from the
        // number of calls made so far plus an explicit offset.
        self.tb + self.tb_step * self.calls.len() as u64
    }
    fn alloc_phys(&mut self, size: u64, align: u64) -> Option<u64> {
        let a = self.phys.alloc(size, align, false)?;
        self.mem.fill(a, size, 0).ok()?;
        Some(a)
    }
    fn free_phys(&mut self, addr: u64, size: u64, _align: u64) {
        self.phys.add(crate::memory::Range::new(addr, size));
    }
}

const _: () = assert!(SCRATCH_SIZE <= 0x10000);
