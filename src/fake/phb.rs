//! Fake PCI host bridges: TCE tables and dynamic DMA windows with QEMU's
//! semantics (QEMU pseries contract §3.3 TCE hcalls, §4.3–4.5 LIOBNs and window
//! lifecycle, §5.2 `ibm,*-pe-dma-window`; hw/ppc/spapr_iommu.c and
//! spapr_rtas_ddw.c of QEMU 7.2).

use super::FakePlatform;
use crate::hcall::{op, rc};
use crate::memory::Memory;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// QEMU's BUID of PHB `index` (`spapr_phb_placement`).
pub const fn qemu_buid(index: u32) -> u64 {
    0x0800_0000_2000_0000 + index as u64
}

/// QEMU's LIOBN of window `n` of PHB `index` (`SPAPR_PCI_LIOBN`).
pub const fn qemu_liobn(index: u32, n: u32) -> u32 {
    0x8000_0000 | (index << 8) | n
}

/// One TCE table (a QEMU `SpaprTceTable`); `nb_table == 0` means disabled.
/// Entries are sparse so that huge windows cost nothing until written.
#[derive(Clone, Debug, Default)]
pub struct FakeTceTable {
    pub liobn: u32,
    pub page_shift: u32,
    pub bus_offset: u64,
    pub nb_table: u64,
    pub entries: BTreeMap<u64, u64>,
    /// QEMU's `def_win`: set on window 0 by the first PHB reset, never cleared.
    pub def_win: bool,
    /// Test-only fault: the next matching multi-entry call stops early.
    pub partial_fault: Option<PartialFault>,
}

/// A multi-entry TCE call (`H_PUT_TCE_INDIRECT` or `H_STUFF_TCE`) that writes
/// its first `after` entries, then fails with `rc` — as QEMU leaves a table
/// when an entry in the middle of a call is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialFault {
    pub opcode: u64,
    pub after: u64,
    pub rc: i64,
}

impl FakePlatform {
    /// Make the next `opcode` (`H_PUT_TCE_INDIRECT` or `H_STUFF_TCE`) on
    /// `liobn` write only its first `after` entries and return `rc`.  Returns
    /// false if no table has that LIOBN.
    pub fn inject_partial_tce(&mut self, liobn: u32, opcode: u64, after: u64, rc: i64) -> bool {
        match self.tce_table(liobn) {
            Some(t) => {
                t.partial_fault = Some(PartialFault { opcode, after, rc });
                true
            }
            None => false,
        }
    }
}

impl FakeTceTable {
    pub fn enabled(&self) -> bool {
        self.nb_table != 0
    }

    /// The TCE at bus address `ioba` (0 when unset).
    pub fn get(&self, ioba: u64) -> Option<u64> {
        let idx = ioba.wrapping_sub(self.bus_offset) >> self.page_shift;
        (idx < self.nb_table).then(|| self.entries.get(&idx).copied().unwrap_or(0))
    }

    /// Entries that are not 0.
    pub fn mapped(&self) -> usize {
        self.entries.values().filter(|v| **v != 0).count()
    }

    fn put(&mut self, ioba: u64, tce: u64) -> i64 {
        let idx = ioba.wrapping_sub(self.bus_offset) >> self.page_shift;
        if idx >= self.nb_table {
            return rc::H_PARAMETER;
        }
        if tce == 0 {
            self.entries.remove(&idx);
        } else {
            self.entries.insert(idx, tce);
        }
        rc::H_SUCCESS
    }

    fn enable(&mut self, page_shift: u32, bus_offset: u64, nb_table: u64) {
        self.page_shift = page_shift;
        self.bus_offset = bus_offset;
        self.nb_table = nb_table;
        self.entries.clear();
    }

    fn disable(&mut self) {
        self.nb_table = 0;
        self.entries.clear();
    }
}

/// A `spapr-pci-host-bridge`.
#[derive(Clone, Debug)]
pub struct FakePhb {
    pub index: u32,
    pub buid: u64,
    pub ddw: bool,
    /// Page sizes as a mask of `1 << shift` (QEMU's `pgsz`).
    pub page_size_mask: u64,
    pub dma_win_addr: u64,
    pub dma_win_size: u64,
    pub dma64_win_addr: u64,
    /// Window 0 (default) and 1 (DDW).
    pub tables: Vec<FakeTceTable>,
}

impl FakePhb {
    /// A PHB as `-device spapr-pci-host-bridge,index=N` makes it on pseries-7.2+.
    pub fn qemu_default(index: u32) -> Self {
        let mut phb = FakePhb {
            index,
            buid: qemu_buid(index),
            ddw: true,
            page_size_mask: (1 << 12) | (1 << 16) | (1 << 21) | (1 << 24),
            dma_win_addr: 0,
            dma_win_size: 0x4000_0000,
            dma64_win_addr: 1 << 59,
            tables: (0..2)
                .map(|n| FakeTceTable {
                    liobn: qemu_liobn(index, n),
                    ..Default::default()
                })
                .collect(),
        };
        phb.reset();
        phb
    }

    /// `spapr_phb_dma_reset`: disable every window, enable the default one.
    pub fn reset(&mut self) {
        for t in &mut self.tables {
            t.disable();
        }
        let (addr, size) = (self.dma_win_addr, self.dma_win_size);
        self.tables[0].enable(12, addr, size >> 12);
        self.tables[0].def_win = true;
    }

    pub fn table_mut(&mut self, liobn: u32) -> Option<&mut FakeTceTable> {
        self.tables.iter_mut().find(|t| t.liobn == liobn)
    }

    pub fn active_windows(&self) -> u32 {
        self.tables.iter().filter(|t| t.enabled()).count() as u32
    }

    /// The LoPAPR query page-size mask for `page_size_mask`.
    pub fn query_mask(&self) -> u32 {
        const BITS: [(u32, u32); 9] = [
            (12, 0x01),
            (16, 0x02),
            (24, 0x04),
            (25, 0x08),
            (26, 0x10),
            (27, 0x20),
            (28, 0x40),
            (34, 0x80),
            (21, 0x100),
        ];
        BITS.iter()
            .filter(|(s, _)| self.page_size_mask & (1 << s) != 0)
            .fold(0, |m, (_, b)| m | b)
    }
}

pub(super) fn tce_hcall(
    p: &mut FakePlatform,
    opcode: u64,
    a: &[u64; 9],
    ret: &mut [u64; 9],
) -> i64 {
    let liobn = a[0];
    if liobn > u32::MAX as u64 {
        return rc::H_PARAMETER;
    }
    // TCE lists are read before the table is borrowed.
    let list: Vec<u64> = if opcode == op::H_PUT_TCE_INDIRECT {
        let (list, n) = (a[2], a[3]);
        if n > 512 || list & 0xfff != 0 {
            return rc::H_PARAMETER;
        }
        let mut v = Vec::with_capacity(n as usize);
        for i in 0..n {
            match p.mem.read_be64(list + 8 * i) {
                Ok(x) => v.push(x),
                Err(_) => return rc::H_PARAMETER,
            }
        }
        v
    } else {
        Vec::new()
    };
    let Some(t) = p.tce_table(liobn as u32) else {
        return rc::H_PARAMETER;
    };
    let page = 1u64 << t.page_shift;
    let ioba = a[1] & !(page.wrapping_sub(1));
    // An injected partial fault caps the entries a multi-entry call writes.
    let mut cap: Option<(u64, i64)> = None;
    if let Some(f) = t.partial_fault {
        if f.opcode == opcode && (opcode == op::H_PUT_TCE_INDIRECT || opcode == op::H_STUFF_TCE) {
            t.partial_fault = None;
            cap = Some((f.after, f.rc));
        }
    }
    match opcode {
        op::H_PUT_TCE => t.put(ioba, a[2]),
        op::H_GET_TCE => match t.get(ioba) {
            Some(v) => {
                ret[0] = v;
                rc::H_SUCCESS
            }
            None => rc::H_PARAMETER,
        },
        op::H_STUFF_TCE => {
            if a[3] > t.nb_table {
                return rc::H_PARAMETER;
            }
            for i in 0..a[3] {
                if let Some((after, r)) = cap {
                    if i == after {
                        return r;
                    }
                }
                let r = t.put(ioba.wrapping_add(i << t.page_shift), a[2]);
                if r != rc::H_SUCCESS {
                    return r;
                }
            }
            cap.map_or(rc::H_SUCCESS, |(_, r)| r)
        }
        _ => {
            for (i, tce) in list.iter().enumerate() {
                if let Some((after, r)) = cap {
                    if i as u64 == after {
                        return r;
                    }
                }
                let r = t.put(ioba.wrapping_add((i as u64) << t.page_shift), *tce);
                if r != rc::H_SUCCESS {
                    return r;
                }
            }
            cap.map_or(rc::H_SUCCESS, |(_, r)| r)
        }
    }
}

/// `ibm,query/create/remove/reset-pe-dma-window` as QEMU 7.2 implements them.
pub(super) fn ddw_rtas(p: &mut FakePlatform, name: &str, args: &[u32], rets: &mut [u32]) -> i32 {
    let buid_of = |args: &[u32]| ((args[1] as u64) << 32) | args[2] as u64;
    match name {
        "ibm,query-pe-dma-window" => {
            if args.len() != 3 || !(rets.len() == 5 || rets.len() == 6) {
                return -3;
            }
            let Some(phb) = p.phb_by_buid(buid_of(args)) else {
                return -3;
            };
            if !phb.ddw {
                return -3;
            }
            let avail = 2 - phb.active_windows();
            let mask = phb.query_mask();
            rets[1] = avail;
            if rets.len() == 5 {
                rets[2] = 0x8000_0000;
                rets[3] = mask;
                rets[4] = 0;
            } else {
                rets[2] = 0x20;
                rets[3] = 0;
                rets[4] = mask;
                rets[5] = 0;
            }
            0
        }
        "ibm,create-pe-dma-window" => {
            if args.len() != 5 || rets.len() != 4 {
                return -3;
            }
            let Some(phb) = p.phb_by_buid(buid_of(args)) else {
                return -3;
            };
            let (page_shift, window_shift) = (args[3], args[4]);
            if !phb.ddw
                || page_shift >= 64
                || phb.page_size_mask & (1u64 << page_shift) == 0
                || window_shift < page_shift
                || window_shift >= 64
            {
                return -3;
            }
            let windows = phb.active_windows();
            let addr = if windows == 0 {
                phb.dma_win_addr
            } else {
                phb.dma64_win_addr
            };
            let Some(t) = phb.tables.iter_mut().find(|t| !t.enabled()) else {
                return -1;
            };
            t.enable(page_shift, addr, 1u64 << (window_shift - page_shift));
            rets[1] = t.liobn;
            rets[2] = (addr >> 32) as u32;
            rets[3] = addr as u32;
            0
        }
        "ibm,remove-pe-dma-window" => {
            if args.len() != 1 || rets.len() != 1 {
                return -3;
            }
            let liobn = args[0];
            let Some(phb) = p
                .phbs
                .iter_mut()
                .find(|ph| ph.tables.iter().any(|t| t.liobn == liobn))
            else {
                return -3;
            };
            if !phb.ddw {
                return -3;
            }
            let t = phb.table_mut(liobn).unwrap();
            if !t.enabled() {
                return -3;
            }
            let def_win = t.def_win;
            t.disable();
            // LoPAPR (as QEMU applies it): removing the last window, when it is
            // not the default one, restores the default window.
            if phb.active_windows() == 0 && !def_win {
                phb.reset();
            }
            0
        }
        "ibm,reset-pe-dma-window" => {
            if args.len() != 3 || rets.len() != 1 {
                return -3;
            }
            let Some(phb) = p.phb_by_buid(buid_of(args)) else {
                return -3;
            };
            if !phb.ddw {
                return -3;
            }
            phb.reset();
            0
        }
        _ => -3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcall::Hypervisor;
    use crate::platform::Platform;
    use crate::rtas;

    fn call(p: &mut FakePlatform, name: &str, args: &[u32], nret: usize) -> Vec<u32> {
        let token = p.rtas_tokens[name];
        let mut rets = alloc::vec![0; nret];
        let block = p.scratch();
        rtas::call(p, block, token, args, &mut rets).unwrap();
        rets
    }

    /// The sequence measured on QEMU 7.2 (contract §9).
    #[test]
    fn ddw_matches_qemu_measurements() {
        let mut p = FakePlatform::new(1 << 20);
        let (hi, lo) = (0x0800_0000, 0x2000_0000);
        assert_eq!(
            call(&mut p, "ibm,query-pe-dma-window", &[0x1000, hi, lo], 6),
            [0, 1, 0x20, 0, 0x107, 0]
        );
        assert_eq!(
            call(
                &mut p,
                "ibm,create-pe-dma-window",
                &[0x1000, hi, lo, 16, 40],
                4
            ),
            [0, 0x8000_0001, 0x0800_0000, 0]
        );
        assert_eq!(
            call(&mut p, "ibm,query-pe-dma-window", &[0x1000, hi, lo], 5),
            [0, 0, 0x8000_0000, 0x107, 0]
        );
        // Third window: none left.
        assert_eq!(
            call(
                &mut p,
                "ibm,create-pe-dma-window",
                &[0x1000, hi, lo, 16, 30],
                4
            )[0],
            (-1i32) as u32
        );
        // Bad page shift, window smaller than page, wrong nret.
        assert_eq!(
            call(&mut p, "ibm,create-pe-dma-window", &[0, hi, lo, 13, 40], 4)[0],
            (-3i32) as u32
        );
        assert_eq!(
            call(&mut p, "ibm,query-pe-dma-window", &[0, hi, lo], 4)[0],
            (-3i32) as u32
        );
        assert_eq!(
            call(&mut p, "ibm,query-pe-dma-window", &[0, hi, 7], 5)[0],
            (-3i32) as u32
        );
        // H_PUT_TCE/H_GET_TCE on the DDW at 1<<59.
        assert_eq!(
            p.hcall(op::H_PUT_TCE, &[0x8000_0001, 1 << 59, 0x7003]).rc,
            0
        );
        assert_eq!(
            p.hcall(op::H_GET_TCE, &[0x8000_0001, 1 << 59]).ret[0],
            0x7003
        );
        // Remove both, then the PHB has no window; reset restores the default.
        assert_eq!(
            call(&mut p, "ibm,remove-pe-dma-window", &[0x8000_0001], 1),
            [0]
        );
        assert_eq!(
            call(&mut p, "ibm,remove-pe-dma-window", &[0x8000_0001], 1),
            [(-3i32) as u32]
        );
        assert_eq!(
            call(&mut p, "ibm,remove-pe-dma-window", &[0x8000_0000], 1),
            [0]
        );
        assert_eq!(p.phbs[0].active_windows(), 0);
        // With no window active, a new DDW starts at bus address 0.
        assert_eq!(
            call(&mut p, "ibm,create-pe-dma-window", &[0, hi, lo, 24, 31], 4),
            [0, 0x8000_0000, 0, 0]
        );
        assert_eq!(
            call(&mut p, "ibm,reset-pe-dma-window", &[0, hi, lo], 1),
            [0]
        );
        let t = p.tce_table(0x8000_0000).unwrap();
        assert_eq!((t.page_shift, t.bus_offset, t.nb_table), (12, 0, 0x40000));
    }

    #[test]
    fn tce_hcalls_follow_qemu() {
        let mut p = FakePlatform::new(1 << 20);
        assert_eq!(p.hcall(op::H_PUT_TCE, &[0x8000_0000, 0x3000, 0x5003]).rc, 0);
        assert_eq!(
            p.hcall(op::H_GET_TCE, &[0x8000_0000, 0x3abc]).ret[0],
            0x5003
        );
        assert_eq!(
            p.hcall(op::H_GET_TCE, &[0x8000_0000, 1 << 30]).rc,
            rc::H_PARAMETER
        );
        assert_eq!(p.hcall(op::H_PUT_TCE, &[0x1234, 0, 1]).rc, rc::H_PARAMETER);
        // Indirect: 4 KiB aligned list, at most 512, stops at the first bad entry.
        for i in 0..4u64 {
            p.mem
                .write_be64(0x2000 + 8 * i, 0x10003 + (i << 12))
                .unwrap();
        }
        assert_eq!(
            p.hcall(op::H_PUT_TCE_INDIRECT, &[0x8000_0000, 0x10000, 0x2000, 4])
                .rc,
            0
        );
        assert_eq!(p.tce_table(0x8000_0000).unwrap().mapped(), 5);
        assert_eq!(
            p.hcall(op::H_PUT_TCE_INDIRECT, &[0x8000_0000, 0, 0x2008, 1])
                .rc,
            rc::H_PARAMETER
        );
        assert_eq!(
            p.hcall(op::H_PUT_TCE_INDIRECT, &[0x8000_0000, 0, 0x2000, 513])
                .rc,
            rc::H_PARAMETER
        );
        let last = (1u64 << 30) - 0x2000;
        assert_eq!(
            p.hcall(op::H_PUT_TCE_INDIRECT, &[0x8000_0000, last, 0x2000, 4])
                .rc,
            rc::H_PARAMETER
        );
        assert_eq!(
            p.tce_table(0x8000_0000).unwrap().mapped(),
            7,
            "entries before the failure stay written"
        );
        assert_eq!(
            p.hcall(op::H_STUFF_TCE, &[0x8000_0000, 0, 0, 0x40000]).rc,
            0
        );
        assert_eq!(p.tce_table(0x8000_0000).unwrap().mapped(), 0);
        // Injected failure.
        p.inject_hcall(op::H_PUT_TCE, rc::H_HARDWARE, 1);
        assert_eq!(
            p.hcall(op::H_PUT_TCE, &[0x8000_0000, 0, 3]).rc,
            rc::H_HARDWARE
        );
        assert_eq!(p.hcall(op::H_PUT_TCE, &[0x8000_0000, 0, 3]).rc, 0);
    }

    #[test]
    fn machine_end_and_nvram() {
        let mut p = FakePlatform::new(1 << 20);
        p.set_prom_env(&["dma-selftest=on"]);
        assert_eq!(&p.nvram[4..10], b"system");
        assert_eq!(&p.nvram[16..32], b"dma-selftest=on\0");
        let block = p.scratch();
        let mut rets = [0; 2];
        let tok = p.rtas_tokens["nvram-fetch"];
        rtas::call(&mut p, block, tok, &[16, 0x8000, 16], &mut rets).unwrap();
        assert_eq!(rets, [0, 16]);
        assert_eq!(
            p.mem.read_be32(0x8000).unwrap(),
            u32::from_be_bytes(*b"dma-")
        );
        rtas::call(&mut p, block, tok, &[0xfff0, 0x8000, 32], &mut rets).unwrap();
        assert_eq!(rets[0], (-3i32) as u32);
        crate::platform::os_term(&mut p, "bye").unwrap();
        assert_eq!(p.ended, Some(super::super::Ended::OsTerm("bye".into())));
    }
}
