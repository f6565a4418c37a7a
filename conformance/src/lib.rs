//! The conformance client: a program that plays the operating system against
//! papr-fw (IEEE 1275 client interface, PowerPC binding; LoPAPR RTAS and the
//! DMA-window calls; linux-expectations.md §1 for the ABI, the QEMU pseries
//! contract §5 for RTAS).
//!
//! It calls every client-interface service and method and every RTAS call
//! papr-fw implements, first with valid arguments (checking the results
//! against the tree and against the platform itself: hypercalls and RTAS
//! calls made directly to QEMU), then with hostile ones (wrong counts,
//! pointers outside RAM or into the firmware, unterminated strings, zero and
//! huge lengths, bad handles, bad claims, unknown services, methods and
//! tokens, bad DMA-window arguments), checking each gets the specified error
//! and that the firmware still answers valid calls correctly afterwards.
//!
//! The logic is plain Rust over [`Machine`]: on the target
//! (`src/main.rs`, booted by papr-fw as `-kernel`) the machine is real memory,
//! `sc 1` and calls through the client-interface and RTAS entries in 32- and
//! 64-bit mode; in host tests it is papr-fw's `Firmware` on the fake platform.
//! Every failed check prints one line (`conformance: FAIL [section] …`); the
//! run ends with `conformance: N checks, M failed` and RTAS `power-off` (all
//! passed) or `ibm,os-term` (something failed).

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod cas;
pub mod cpu;
pub mod ddw;
pub mod hostile;
pub mod rtas;
pub mod services;
pub mod tree;

/// The suite against papr-fw on its fake platform (host only).
#[cfg(test)]
mod host_tests;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// How a call into the firmware is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MSR[SF] = 0, as Linux calls the client interface and RTAS.
    Bits32,
    /// MSR[SF] = 1.
    Bits64,
}

/// What the suite runs on.
pub trait Machine {
    /// Call the client interface at `entry` with the argument block at
    /// `args`; the low 32 bits of r3.
    fn cif(&mut self, entry: u64, args: u64, mode: Mode) -> u32;
    /// Call RTAS at `entry` (instantiated at `base`) with the block at `args`.
    fn rtas(&mut self, entry: u64, base: u64, args: u64, mode: Mode);
    /// A hypercall straight to the platform: (r3, r4..r7).
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> (i64, [u64; 4]);
    /// Read physical memory; false if the address is not RAM.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, addr: u64, data: &[u8]) -> bool;
    fn timebase(&mut self) -> u64;
    /// Memory the suite owns (inside its own image) for argument blocks,
    /// strings and buffers: (base, size), below 4 GiB.
    fn arena(&self) -> (u64, u64);
    /// The client's image as loaded (code, data, .bss).
    fn image(&self) -> (u64, u64);
    /// Tell the machine where RAM ends (reads and writes above it are
    /// refused from then on).
    fn set_ram_top(&mut self, _top: u64) {}
    /// Where RTAS `start-cpu` may start a second CPU, if this machine can.
    fn secondary_entry(&self) -> Option<u64> {
        None
    }
}

/// The register state papr-fw started the client with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub r3: u64,
    pub r4: u64,
    /// r5: the client-interface entry.
    pub cif: u64,
    /// r1.
    pub stack: u64,
    pub msr: u64,
}

/// An argument of a client-interface call.
#[derive(Clone, Copy, Debug)]
pub enum A<'s> {
    /// A cell.
    N(u32),
    /// A NUL-terminated string (its address).
    S(&'s str),
    /// Bytes (their address).
    B(&'s [u8]),
}
pub use A::{B, N, S};

/// What a call returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ret {
    /// r3 (0, or -1 for a refused call).
    pub r3: i32,
    pub rets: Vec<u32>,
}

impl Ret {
    pub fn get(&self, i: usize) -> u32 {
        self.rets.get(i).copied().unwrap_or(0xdead_beef)
    }
}

/// The IEEE 1275 failure value.
pub const ERR: u32 = u32::MAX;
/// What the suite writes into result cells before a call.
pub const POISON: u32 = 0xdead_beef;

/// Offsets in the arena.
pub mod arena {
    /// The client-interface argument block.
    pub const BLOCK: u64 = 0x0;
    /// The RTAS argument block.
    pub const RTAS_BLOCK: u64 = 0x200;
    /// Strings of the current call.
    pub const STRINGS: u64 = 0x1000;
    pub const STRINGS_SIZE: u64 = 0x10000;
    /// Output buffers (with a guard area after them).
    pub const BUF: u64 = 0x11000;
    pub const BUF_SIZE: u64 = 0x10000;
    /// The CAS vector.
    pub const CAS: u64 = 0x22000;
    /// The second CPU's mailbox.
    pub const MAILBOX: u64 = 0x23000;
    /// General scratch for tests (64 KiB).
    pub const SCRATCH: u64 = 0x30000;
    pub const SCRATCH_SIZE: u64 = 0x10000;
    /// Bytes the suite needs.
    pub const SIZE: u64 = 0x40000;
}

/// A window of the platform: what `/rtas` and a PHB say.
#[derive(Clone, Debug, Default)]
pub struct Phb {
    pub path: String,
    pub ph: u32,
    pub buid: u64,
    pub liobn: u32,
    pub win_addr: u64,
    pub win_size: u64,
    /// query, create, remove tokens (`ibm,ddw-applicable`).
    pub ddw: Option<[u32; 3]>,
    /// `ibm,ddw-extensions` cells.
    pub ext: Vec<u32>,
}

/// What the suite learnt about the machine from the tree.
#[derive(Clone, Debug, Default)]
pub struct Info {
    pub root: u32,
    pub chosen: u32,
    pub rtas: u32,
    /// RAM ranges from the memory nodes' `reg`.
    pub ram: Vec<(u64, u64)>,
    pub ram_top: u64,
    /// Root `#address-cells`, `#size-cells`.
    pub cells: (u32, u32),
    /// Memory nodes (phandle, path).
    pub memory_nodes: Vec<(u32, String)>,
    /// RTAS token of each name in `/rtas`.
    pub tokens: Vec<(String, u32)>,
    /// CPU nodes: phandle, first interrupt server number.
    pub cpus: Vec<(u32, u32)>,
    pub timebase_hz: u64,
    pub phbs: Vec<Phb>,
    pub bootargs: String,
    pub nodes: u32,
    pub props: u32,
}

impl Info {
    pub fn token(&self, name: &str) -> Option<u32> {
        self.tokens.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
    pub fn option(&self, key: &str) -> Option<&str> {
        self.bootargs
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
    pub fn flag(&self, key: &str) -> bool {
        self.bootargs.split_whitespace().any(|w| w == key)
    }
}

/// Where RTAS was instantiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtasArea {
    pub base: u64,
    pub size: u64,
    pub entry: u64,
}

/// The result of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub checks: u32,
    pub failed: u32,
    /// Failure lines, as printed.
    pub failures: Vec<String>,
}

/// The suite's state.
pub struct Suite<'a, M: Machine + ?Sized> {
    pub m: &'a mut M,
    pub entry: Entry,
    pub checks: u32,
    pub failed: u32,
    pub failures: Vec<String>,
    section: &'static str,
    section_checks: u32,
    section_failed: u32,
    arena: u64,
    /// CIF calls so far (the mode alternates).
    pub calls: u64,
    /// Force one mode (None: alternate).
    pub mode: Option<Mode>,
    pub stdout: u32,
    pub vtermno: u64,
    pub quiesced: bool,
    pub info: Info,
    pub rtas: Option<RtasArea>,
    pub verbose: bool,
    /// Claims the suite holds (base, size).
    pub claims: Vec<(u64, u64)>,
}

/// Record a check: `check!(suite, condition, "what {}", detail)`.  The
/// message is formatted before the suite is borrowed (it may read the suite).
#[macro_export]
macro_rules! check {
    ($s:expr, $cond:expr, $($fmt:tt)+) => {{
        let ok: bool = $cond;
        let msg = if ok && !$s.verbose { alloc::string::String::new() } else { alloc::format!($($fmt)+) };
        $s.record_msg(ok, msg);
        ok
    }};
}

/// `check!` that two values are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($s:expr, $got:expr, $want:expr, $($fmt:tt)+) => {{
        match (&$got, &$want) {
            (got, want) => {
                let ok = *got == *want;
                let msg = if ok && !$s.verbose {
                    alloc::string::String::new()
                } else {
                    alloc::format!("{}: got {:x?}, expected {:x?}", alloc::format!($($fmt)+), got, want)
                };
                $s.record_msg(ok, msg);
                ok
            }
        }
    }};
}

impl<'a, M: Machine + ?Sized> Suite<'a, M> {
    pub fn new(m: &'a mut M, entry: Entry) -> Self {
        let (arena, size) = m.arena();
        assert!(size >= arena::SIZE, "the arena is too small");
        Suite {
            m,
            entry,
            checks: 0,
            failed: 0,
            failures: Vec::new(),
            section: "start",
            section_checks: 0,
            section_failed: 0,
            arena,
            calls: 0,
            mode: None,
            stdout: 0,
            vtermno: 0,
            quiesced: false,
            info: Info::default(),
            rtas: None,
            verbose: false,
            claims: Vec::new(),
        }
    }

    /// Physical address of arena offset `off`.
    pub fn at(&self, off: u64) -> u64 {
        self.arena + off
    }

    pub fn record(&mut self, ok: bool, what: impl FnOnce() -> String) {
        let msg = if ok && !self.verbose {
            String::new()
        } else {
            what()
        };
        self.record_msg(ok, msg);
    }

    pub fn record_msg(&mut self, ok: bool, what: String) {
        self.checks += 1;
        self.section_checks += 1;
        if !ok {
            self.failed += 1;
            self.section_failed += 1;
            let line = format!("conformance: FAIL [{}] {}", self.section, what);
            self.say(&line);
            self.failures.push(line);
        } else if self.verbose {
            let line = format!("conformance: ok [{}] {}", self.section, what);
            self.say(&line);
        }
    }

    /// Start a section (a progress line for the previous one is printed).
    pub fn section(&mut self, name: &'static str) {
        self.end_section();
        self.section = name;
    }

    fn end_section(&mut self) {
        if self.section_checks != 0 {
            let line = format!(
                "conformance: {}: {} checks, {} failed",
                self.section, self.section_checks, self.section_failed
            );
            self.say(&line);
        }
        self.section_checks = 0;
        self.section_failed = 0;
    }

    /// Print a line on the console: through the client interface's `write`
    /// until quiesce, then with H_PUT_TERM_CHAR.
    pub fn say(&mut self, line: &str) {
        let mut text = String::with_capacity(line.len() + 2);
        for c in line.chars() {
            if c == '\n' {
                text.push('\r');
            }
            text.push(c);
        }
        text.push_str("\r\n");
        if !self.quiesced && self.stdout != 0 && self.entry.cif != 0 {
            let buf = self.at(arena::SCRATCH + arena::SCRATCH_SIZE - 0x2000);
            for chunk in text.as_bytes().chunks(0x1000) {
                self.m.write(buf, chunk);
                let stdout = self.stdout;
                self.raw_call("write", &[stdout, buf as u32, chunk.len() as u32], 1);
            }
        } else {
            self.put_term(text.as_bytes());
        }
    }

    /// Console output with H_PUT_TERM_CHAR (16 bytes a call).
    pub fn put_term(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            let hi = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
            let lo = u64::from_be_bytes(b[8..].try_into().unwrap_or([0; 8]));
            let vt = self.vtermno;
            for _ in 0..1000 {
                let (rc, _) = self.m.hcall(0x58, &[vt, chunk.len() as u64, hi, lo]);
                if rc != 1 && rc != -3 {
                    break;
                }
            }
        }
    }

    // --- memory -----------------------------------------------------------

    pub fn rd(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut v = alloc::vec![0u8; len];
        self.m.read(addr, &mut v).then_some(v)
    }

    pub fn rd32(&self, addr: u64) -> u32 {
        let mut b = [0u8; 4];
        if self.m.read(addr, &mut b) {
            u32::from_be_bytes(b)
        } else {
            POISON
        }
    }

    pub fn wr(&mut self, addr: u64, data: &[u8]) {
        self.m.write(addr, data);
    }

    pub fn wr32(&mut self, addr: u64, v: u32) {
        self.m.write(addr, &v.to_be_bytes());
    }

    /// A C string at `addr` (at most `max` bytes).
    pub fn cstr(&self, addr: u64, max: usize) -> String {
        let v = self.rd(addr, max).unwrap_or_default();
        let n = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..n]).into_owned()
    }

    /// Fill `len` bytes at `addr` with `b`.
    pub fn fill(&mut self, addr: u64, len: usize, b: u8) {
        let v = alloc::vec![b; len];
        self.m.write(addr, &v);
    }

    /// A simple checksum of physical memory (FNV-1a), None if unreadable.
    pub fn hash(&self, addr: u64, len: u64) -> Option<u64> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut chunk = alloc::vec![0u8; 4096];
        let mut at = addr;
        while at < addr + len {
            let n = (addr + len - at).min(4096) as usize;
            if !self.m.read(at, &mut chunk[..n]) {
                return None;
            }
            for b in &chunk[..n] {
                h ^= *b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            at += n as u64;
        }
        Some(h)
    }

    // --- client-interface calls -------------------------------------------

    fn next_mode(&mut self) -> Mode {
        self.calls += 1;
        match self.mode {
            Some(m) => m,
            None if self.calls.is_multiple_of(2) => Mode::Bits64,
            None => Mode::Bits32,
        }
    }

    /// Place `args` (strings and byte arrays in the string area) and call
    /// `service` with `nret` results.
    pub fn call(&mut self, service: &str, args: &[A], nret: usize) -> Ret {
        let mut at = self.at(arena::STRINGS);
        let end = at + arena::STRINGS_SIZE;
        let mut place = |s: &mut Self, bytes: &[u8], nul: bool| -> u32 {
            let a = at;
            if a + bytes.len() as u64 + 1 > end {
                return 0;
            }
            s.m.write(a, bytes);
            if nul {
                s.m.write(a + bytes.len() as u64, &[0]);
            }
            at = (a + bytes.len() as u64 + 8) & !7;
            a as u32
        };
        let svc = place(self, service.as_bytes(), true);
        let mut cells = Vec::with_capacity(args.len());
        for a in args {
            cells.push(match a {
                N(n) => *n,
                S(s) => place(self, s.as_bytes(), true),
                B(b) => place(self, b, false),
            });
        }
        let block = self.at(arena::BLOCK);
        self.call_block(block, svc, &cells, cells.len() as u32, nret as u32)
    }

    /// Call with a service name already in memory (`svc` is its address)
    /// and cells as given.
    pub fn raw_call(&mut self, service: &str, cells: &[u32], nret: u32) -> Ret {
        let svc = self.at(arena::STRINGS + arena::STRINGS_SIZE - 0x100);
        self.m.write(svc, service.as_bytes());
        self.m.write(svc + service.len() as u64, &[0]);
        let block = self.at(arena::BLOCK);
        self.call_block(block, svc as u32, cells, cells.len() as u32, nret)
    }

    /// The most general call: a block at `block` with `nargs`/`nret` as given
    /// (they may disagree with `cells`, for hostile calls).  Result cells
    /// start poisoned; at most 32 are read back.
    pub fn call_block(
        &mut self,
        block: u64,
        svc: u32,
        cells: &[u32],
        nargs: u32,
        nret: u32,
    ) -> Ret {
        let mode = self.next_mode();
        self.call_block_mode(block, svc, cells, nargs, nret, mode)
    }

    pub fn call_block_mode(
        &mut self,
        block: u64,
        svc: u32,
        cells: &[u32],
        nargs: u32,
        nret: u32,
        mode: Mode,
    ) -> Ret {
        let mut v = Vec::with_capacity(12 + 4 * (cells.len() + 32));
        v.extend_from_slice(&svc.to_be_bytes());
        v.extend_from_slice(&nargs.to_be_bytes());
        v.extend_from_slice(&nret.to_be_bytes());
        for c in cells {
            v.extend_from_slice(&c.to_be_bytes());
        }
        let shown = (nret as usize).min(32);
        let rets_at = block.wrapping_add(12 + 4 * nargs as u64);
        self.m.write(block, &v);
        if nargs as usize == cells.len() {
            for i in 0..shown {
                self.m.write(rets_at + 4 * i as u64, &POISON.to_be_bytes());
            }
        }
        let r3 = self.m.cif(self.entry.cif, block, mode) as i32;
        let rets = (0..shown)
            .map(|i| self.rd32(rets_at + 4 * i as u64))
            .collect();
        Ret { r3, rets }
    }

    /// A call expected to succeed with one result (failures recorded).
    pub fn one(&mut self, service: &str, args: &[A]) -> u32 {
        let r = self.call(service, args, 1);
        if r.r3 != 0 {
            self.record(false, || format!("{service}{args:?}: r3 = {}", r.r3));
        }
        r.get(0)
    }

    /// A call expected to succeed with no results.
    pub fn none(&mut self, service: &str, args: &[A]) {
        let r = self.call(service, args, 0);
        if r.r3 != 0 {
            self.record(false, || format!("{service}{args:?}: r3 = {}", r.r3));
        }
    }

    /// `getprop` into the buffer: the value, or None.
    pub fn getprop(&mut self, ph: u32, name: &str) -> Option<Vec<u8>> {
        let len = self.one("getproplen", &[N(ph), S(name)]);
        if len == ERR || len as u64 > arena::BUF_SIZE {
            return None;
        }
        let buf = self.at(arena::BUF);
        let got = self.one("getprop", &[N(ph), S(name), N(buf as u32), N(len)]);
        if got != len {
            self.record(false, || {
                format!("getprop {name}: {got:#x}, getproplen said {len:#x}")
            });
            return None;
        }
        self.rd(buf, len as usize)
    }

    pub fn getprop_u32(&mut self, ph: u32, name: &str) -> Option<u32> {
        let v = self.getprop(ph, name)?;
        (v.len() >= 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub fn getprop_str(&mut self, ph: u32, name: &str) -> Option<String> {
        let v = self.getprop(ph, name)?;
        let n = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        Some(String::from_utf8_lossy(&v[..n]).into_owned())
    }

    pub fn finddevice(&mut self, path: &str) -> Option<u32> {
        let ph = self.one("finddevice", &[S(path)]);
        (ph != ERR && ph != 0).then_some(ph)
    }

    pub fn package_to_path(&mut self, ph: u32) -> Option<String> {
        let buf = self.at(arena::BUF);
        let n = self.one("package-to-path", &[N(ph), N(buf as u32), N(1024)]);
        if n == ERR || n >= 1024 {
            return None;
        }
        Some(self.cstr(buf, n as usize + 1))
    }

    /// `claim`; the base or None.
    pub fn claim(&mut self, virt: u64, size: u64, align: u64) -> Option<u64> {
        let r = self.one("claim", &[N(virt as u32), N(size as u32), N(align as u32)]);
        (r != ERR).then_some(r as u64)
    }

    /// The `available` ranges of every memory node.
    pub fn available(&mut self) -> Vec<(u64, u64)> {
        let (ac, sc) = self.info.cells;
        let nodes: Vec<u32> = self.info.memory_nodes.iter().map(|(p, _)| *p).collect();
        let mut out = Vec::new();
        for ph in nodes {
            if let Some(v) = self.getprop(ph, "available") {
                out.extend(decode_ranges(&v, ac, sc));
            }
        }
        out.sort();
        out
    }

    /// Whether `[base, base+size)` lies inside one `available` range.
    pub fn is_available(&mut self, base: u64, size: u64) -> bool {
        self.available()
            .iter()
            .any(|(b, s)| base >= *b && base + size <= b + s)
    }

    /// Whether any byte of `[base, base+size)` is `available`.
    pub fn any_available(&mut self, base: u64, size: u64) -> bool {
        self.available()
            .iter()
            .any(|(b, s)| base < b + s && *b < base + size)
    }

    /// A free range of `size` bytes (page aligned) above `above`, from `available`.
    pub fn free_range(&mut self, size: u64, above: u64) -> Option<u64> {
        self.available().into_iter().find_map(|(b, s)| {
            let start = (b.max(above) + 0xfff) & !0xfff;
            (start + size <= b + s && start + size <= 1 << 32).then_some(start)
        })
    }

    // --- RTAS -------------------------------------------------------------

    /// Call RTAS through the instantiated entry: (status, results).
    pub fn rtas_call(&mut self, token: u32, args: &[u32], nret: usize) -> (i32, Vec<u32>) {
        self.rtas_call_mode(token, args, nret, Mode::Bits32)
    }

    pub fn rtas_call_mode(
        &mut self,
        token: u32,
        args: &[u32],
        nret: usize,
        mode: Mode,
    ) -> (i32, Vec<u32>) {
        let block = self.at(arena::RTAS_BLOCK);
        let rets = self.rtas_block(block, token, args, args.len() as u32, nret as u32, mode);
        (rets.first().copied().unwrap_or(POISON) as i32, rets)
    }

    /// An RTAS call with a block at `block` and counts as given (results
    /// poisoned first when the counts match `args`).
    pub fn rtas_block(
        &mut self,
        block: u64,
        token: u32,
        args: &[u32],
        nargs: u32,
        nret: u32,
        mode: Mode,
    ) -> Vec<u32> {
        let Some(area) = self.rtas else {
            self.record(false, || {
                String::from("RTAS called before it was instantiated")
            });
            return Vec::new();
        };
        let mut v = Vec::new();
        for c in [token, nargs, nret].iter().chain(args) {
            v.extend_from_slice(&c.to_be_bytes());
        }
        self.m.write(block, &v);
        let shown = (nret as usize).min(32);
        let rets_at = block.wrapping_add(12 + 4 * nargs as u64);
        if nargs as usize == args.len() {
            for i in 0..shown {
                self.m.write(rets_at + 4 * i as u64, &POISON.to_be_bytes());
            }
        }
        self.m.rtas(area.entry, area.base, block, mode);
        (0..shown)
            .map(|i| self.rd32(rets_at + 4 * i as u64))
            .collect()
    }

    /// An RTAS call straight to the platform (H_RTAS), bypassing papr-fw.
    pub fn platform_rtas(&mut self, token: u32, args: &[u32], nret: usize) -> (i64, Vec<u32>) {
        let block = self.at(arena::RTAS_BLOCK + 0x100);
        let mut v = Vec::new();
        for c in [token, args.len() as u32, nret as u32].iter().chain(args) {
            v.extend_from_slice(&c.to_be_bytes());
        }
        self.m.write(block, &v);
        let rets_at = block + 12 + 4 * args.len() as u64;
        let (rc, _) = self.m.hcall(0xf000, &[block]);
        (
            rc,
            (0..nret)
                .map(|i| self.rd32(rets_at + 4 * i as u64))
                .collect(),
        )
    }

    /// Milliseconds from the timebase.
    pub fn now_ms(&mut self) -> u64 {
        self.m.timebase() / (self.info.timebase_hz.max(1) / 1000).max(1)
    }

    // --- the run ----------------------------------------------------------

    /// Run everything; returns the verdict (the caller ends the machine
    /// with [`Suite::finish`]).
    pub fn run(&mut self) -> Verdict {
        tree::basics(self);
        self.say(&format!(
            "conformance: papr-fw conformance client; entry r3={:#x} r4={:#x} r5={:#x} r1={:#x} msr={:#x}",
            self.entry.r3, self.entry.r4, self.entry.cif, self.entry.stack, self.entry.msr
        ));
        self.verbose = self.info.flag("conformance.verbose");
        self.section("entry");
        tree::entry_state(self);
        self.section("tree");
        tree::walk(self);
        tree::platform_nodes(self);
        self.section("instances");
        services::instances(self);
        self.section("console");
        services::console(self);
        self.section("misc");
        services::misc(self);
        self.section("setprop");
        services::setprop(self);
        self.section("claim");
        services::claims(self);
        self.section("hostile-cif");
        let fw_hash = hostile::firmware_hash(self);
        hostile::cif(self);
        self.section("cas");
        cas::run(self);
        self.section("instantiate-rtas");
        rtas::instantiate(self);
        if self.rtas.is_some() {
            self.section("rtas");
            rtas::calls(self);
            self.section("hostile-rtas");
            rtas::hostile(self);
            self.section("ddw");
            ddw::run(self);
        }
        self.section("start-cpu");
        cpu::run(self);
        self.section("after");
        hostile::after(self, fw_hash);
        if self.info.option("conformance.end") != Some("exit") {
            self.section("quiesce");
            rtas::quiesce(self);
        }
        self.end_section();
        Verdict {
            checks: self.checks,
            failed: self.failed,
            failures: self.failures.clone(),
        }
    }

    /// Print the summary and end the machine: `power-off` when every check
    /// passed, `ibm,os-term` otherwise; with `conformance.end=exit` on the
    /// command line, the client-interface `exit` service instead.
    pub fn finish(&mut self) {
        let line = format!(
            "conformance: {} checks, {} failed",
            self.checks, self.failed
        );
        self.say(&line);
        if self.info.option("conformance.end") == Some("exit") {
            self.say("conformance: calling exit");
            self.raw_call("exit", &[], 0);
            self.say("conformance: exit returned");
        }
        let pass = self.failed == 0;
        if pass {
            self.say("conformance: PASS; powering off");
        } else {
            self.say("conformance: FAIL; ibm,os-term");
        }
        let (name, args): (&str, Vec<u32>) = if pass {
            ("power-off", alloc::vec![0, 0])
        } else {
            let msg = self.at(arena::SCRATCH);
            let text = format!(
                "conformance: {} of {} checks failed",
                self.failed, self.checks
            );
            self.m.write(msg, text.as_bytes());
            self.m.write(msg + text.len() as u64, &[0]);
            ("ibm,os-term", alloc::vec![msg as u32])
        };
        let token = self
            .info
            .token(name)
            .unwrap_or(if pass { 0x2003 } else { 0x201f });
        if self.rtas.is_some() {
            self.rtas_call(token, &args, 1);
        }
        // The resident RTAS did not end the machine: go to the platform.
        self.platform_rtas(token, &args, 1);
    }
}

/// Decode `reg`-style (address, size) pairs.
pub fn decode_ranges(v: &[u8], ac: u32, sc: u32) -> Vec<(u64, u64)> {
    let cell = |c: &[u8]| {
        c.chunks(4).fold(0u64, |acc, w| {
            (acc << 32) | u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64
        })
    };
    let (ab, sb) = (4 * ac as usize, 4 * sc as usize);
    if ab + sb == 0 {
        return Vec::new();
    }
    v.chunks_exact(ab + sb)
        .map(|e| (cell(&e[..ab]), cell(&e[ab..])))
        .collect()
}

/// Big-endian cells of a property.
pub fn cells(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
