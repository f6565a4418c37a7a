//! The firmware-resident dynamic DMA window calls: `ibm,query-pe-dma-window`,
//! `ibm,create-pe-dma-window`, `ibm,remove-pe-dma-window` and
//! `ibm,reset-pe-dma-window` (LoPAPR, RTAS chapter, "DMA Window Manipulation
//! Calls" and "Extensions to Dynamic DMA Windows"; QEMU pseries contract §5.2;
//! linux-expectations §2.4, §2.5, §3.3).
//!
//! [`Ddw::handle`] takes an RTAS call the OS made to papr-fw, answers the
//! four DMA-window tokens and returns [`Outcome::NotMine`] for every other
//! token.  For its calls it
//! 1. checks the argument counts (query: 3 in, 5 or 6 out; create: 5 in, 4
//!    out; remove: 1 in, 1 out; reset: 3 in — or 4 with `ddw-lam=on` — 1 out);
//! 2. resolves the PE ([`PeConfig`]): on QEMU a PE is a whole PHB, found by
//!    its BUID (arguments 2 and 3).  The config address (argument 1) is read
//!    but QEMU ignores it; papr-fw checks it, with the register bits masked
//!    off, against the devices known under that PHB when the caller gave them
//!    (`config_addrs: Some`), and accepts any otherwise.  remove finds the PE
//!    through its LIOBN, which must be an active window of a known PE;
//! 3. applies fault injection, then the personality ([`DdwPolicy`], the
//!    options and their mapping onto QEMU are documented in
//!    [`crate::rtas::policy`]), answering itself what the personality or
//!    argument checks refuse;
//! 4. forwards to the platform's RTAS ([`crate::rtas::call`], QEMU through
//!    H_RTAS) only what the hypervisor must do, and adjusts the answer;
//! 5. keeps a model of every PE's windows (LIOBN, bus address, page shift,
//!    size) that matches the platform after every call: it changes only when
//!    the platform said 0.
//!
//! Status codes (LoPAPR): 0 success; −1 hardware error (the platform's, or the
//! H_RTAS call itself failed); −2 busy and 990x extended delay (only injected,
//! or passed through from the platform); −3 parameter error: wrong argument
//! counts, unknown BUID or config address, a page size not offered, a window
//! shift below the page shift or above the bounds, more windows than the
//! personality offers, a LIOBN that is not an active window.
//!
//! LoPAPR restores the default window when the last window of a PE is removed
//! and it is not the default window.  QEMU decides this by LIOBN (its
//! `def_win` flag stays on the default window's table), so a DDW created
//! after the default was removed — which QEMU puts on the default's LIOBN —
//! does not bring the default back when removed.  papr-fw follows LoPAPR: in
//! that case it forwards a reset, which restores the default window exactly
//! as the tree describes it.  It never removes the OS's default window itself.
//!
//! Limits: the model starts from the platform's reset state (each PE has only
//! its default window), so papr-fw must own these tokens from the first DDW
//! call on.  PHBs added later (hotplug) are unknown PEs (−3).  [`Ddw::handle`]
//! does not allocate: the runtime may call it with the OS in control.

use super::policy::{self, Count, DdwCall, DdwPolicy};
use super::status;
use crate::hcall::Hypervisor;
use crate::memory::Memory;
use alloc::vec::Vec;
use core::fmt;

/// Windows papr-fw can track per PE (QEMU has 2).
pub const MAX_PE_WINDOWS: usize = 8;
/// log2 of the most TCEs a window may have: QEMU keeps the count in a
/// `uint32_t`, so 2^32 and more truncate (policy module, "Always on").
pub const MAX_WINDOW_TCES_LOG2: u32 = 31;
/// In limited-address mode a DDW must start at or below this bus address
/// (PowerVM puts it at 4 GiB).
pub const LAM_MAX_BUS_ADDR: u64 = 1 << 32;
/// The bus/device/function bits of a PCI config address (LoPAPR: the PE
/// config address has its register fields 0).
pub const CFG_ADDR_PE_MASK: u32 = 0x00ff_ff00;

/// The platform's tokens of the four calls (the OS uses the same numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DdwTokens {
    pub query: u32,
    pub create: u32,
    pub remove: u32,
    /// `ibm,reset-pe-dma-window` (the first `ibm,ddw-extensions` entry).  If
    /// the platform has it, it must be given, or resets bypass the model.
    pub reset: Option<u32>,
}

impl DdwTokens {
    /// QEMU's numbering (contract §5.1: 0x2026–0x2029).
    pub const QEMU: DdwTokens = DdwTokens {
        query: 0x2026,
        create: 0x2027,
        remove: 0x2028,
        reset: Some(0x2029),
    };

    pub fn call_of(&self, token: u32) -> Option<DdwCall> {
        DdwCall::ALL
            .into_iter()
            .find(|c| self.token(*c) == Some(token))
    }

    pub fn token(&self, call: DdwCall) -> Option<u32> {
        match call {
            DdwCall::Query => Some(self.query),
            DdwCall::Create => Some(self.create),
            DdwCall::Remove => Some(self.remove),
            DdwCall::Reset => self.reset,
        }
    }
}

/// A PE's default window as `ibm,dma-window` gives it (4 KiB pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultWindow {
    pub liobn: u32,
    pub bus_addr: u64,
    pub size: u64,
}

/// One PE (on QEMU: one PHB carrying `ibm,ddw-applicable`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeConfig {
    /// The PHB's BUID (its `reg` address).
    pub buid: u64,
    pub default_window: DefaultWindow,
    /// Config addresses (`bus << 16 | devfn << 8`) of the devices under the
    /// PHB, or `None` to accept any (e.g. when devices can be hot-plugged).
    pub config_addrs: Option<Vec<u32>>,
    /// Where the platform puts a DDW created while another window is active,
    /// if known (QEMU: the PHB's `dma64_win_addr`, 1<<59 unless changed; not
    /// in the tree).  papr-fw also learns it from such creates.  Used only in
    /// limited-address mode.
    pub dma64_addr: Option<u64>,
}

/// What the caller reads from the device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdwPlatform {
    pub tokens: DdwTokens,
    pub pes: Vec<PeConfig>,
}

/// What a window is to papr-fw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// The default window (at boot, or restored by reset).
    Default,
    /// Created by the OS with create.
    Dynamic,
    /// Created by the platform for papr-fw, refused to the OS, and not
    /// removable (a remove failed); it goes with the next reset.
    Stray,
}

/// One active window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub liobn: u32,
    pub bus_addr: u64,
    pub page_shift: u32,
    pub size: u64,
    pub kind: WindowKind,
}

/// A PE and its windows as papr-fw models them.
#[derive(Clone, Debug)]
pub struct Pe {
    config: PeConfig,
    windows: [Option<Window>; MAX_PE_WINDOWS],
    lam: bool,
    dma64_addr: Option<u64>,
}

impl Pe {
    fn new(config: PeConfig) -> Self {
        let mut pe = Pe {
            dma64_addr: config.dma64_addr,
            config,
            windows: [None; MAX_PE_WINDOWS],
            lam: false,
        };
        pe.reset_windows();
        pe
    }

    pub fn buid(&self) -> u64 {
        self.config.buid
    }

    pub fn config(&self) -> &PeConfig {
        &self.config
    }

    /// The active windows.
    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter().flatten()
    }

    pub fn active(&self) -> u32 {
        self.windows().count() as u32
    }

    /// In limited-address mode.
    pub fn lam(&self) -> bool {
        self.lam
    }

    fn reset_windows(&mut self) {
        let d = self.config.default_window;
        self.windows = [None; MAX_PE_WINDOWS];
        self.windows[0] = Some(Window {
            liobn: d.liobn,
            bus_addr: d.bus_addr,
            page_shift: 12,
            size: d.size,
            kind: WindowKind::Default,
        });
    }

    fn slot_of(&self, liobn: u32) -> Option<usize> {
        self.windows
            .iter()
            .position(|w| w.is_some_and(|w| w.liobn == liobn))
    }

    fn has_room(&self) -> bool {
        self.windows.iter().any(Option::is_none)
    }

    /// Record `w`, replacing a window with the same LIOBN (the platform is
    /// authoritative).  Callers check [`has_room`](Self::has_room) first.
    fn insert(&mut self, w: Window) {
        let slot = self
            .slot_of(w.liobn)
            .or_else(|| self.windows.iter().position(Option::is_none));
        if let Some(s) = slot {
            self.windows[s] = Some(w);
        }
    }

    /// Where the platform will put the next DDW, if known: QEMU uses the
    /// default window's address when no window is active.
    fn next_placement(&self) -> Option<u64> {
        if self.active() == 0 {
            Some(self.config.default_window.bus_addr)
        } else {
            self.dma64_addr
        }
    }

    fn accepts_cfg(&self, cfg: u32) -> bool {
        match &self.config.config_addrs {
            None => true,
            Some(list) => list
                .iter()
                .any(|a| a & CFG_ADDR_PE_MASK == cfg & CFG_ADDR_PE_MASK),
        }
    }

    /// The config address papr-fw uses for its own calls for this PE.
    fn own_cfg(&self) -> u32 {
        self.config
            .config_addrs
            .as_ref()
            .and_then(|l| l.first().copied())
            .unwrap_or(0)
    }
}

/// A remaining injected fault.
#[derive(Clone, Copy, Debug)]
struct Fault {
    call: DdwCall,
    status: i32,
    /// `None`: every call.
    remaining: Option<u32>,
}

/// Up to [`Cells::SHOWN`] cells of a call, and how many there were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cells {
    len: u32,
    v: [u32; Cells::SHOWN],
}

impl Cells {
    pub const SHOWN: usize = 8;

    pub fn new(cells: &[u32]) -> Self {
        let mut c = Cells {
            len: cells.len() as u32,
            v: [0; Cells::SHOWN],
        };
        let n = cells.len().min(Cells::SHOWN);
        c.v[..n].copy_from_slice(&cells[..n]);
        c
    }

    /// The cells kept (all of them when there were at most [`Cells::SHOWN`]).
    pub fn as_slice(&self) -> &[u32] {
        &self.v[..(self.len as usize).min(Cells::SHOWN)]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn more(&self) -> bool {
        self.len as usize > Cells::SHOWN
    }
}

/// Who produced the answer the OS got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The platform's answer (possibly adjusted by the personality).
    Platform,
    /// papr-fw refused or answered itself, for this reason.
    Firmware(&'static str),
    /// A `ddw-inject` fault.
    Injected,
}

/// A call papr-fw made to the platform while handling the OS's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub call: DdwCall,
    pub args: Cells,
    pub rets: Cells,
    /// Set when the platform call itself failed (status then −1).
    pub error: Option<super::RtasError>,
}

/// What happened to one DDW call: enough to trace it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub call: DdwCall,
    pub status: i32,
    pub args: Cells,
    pub rets: Cells,
    pub answer: Answer,
    forwarded: [Option<Forwarded>; 3],
}

impl Report {
    fn new(call: DdwCall, args: &[u32]) -> Self {
        Report {
            call,
            status: 0,
            args: Cells::new(args),
            rets: Cells::default(),
            answer: Answer::Platform,
            forwarded: [None; 3],
        }
    }

    /// The platform calls made, in order.
    pub fn forwarded(&self) -> impl Iterator<Item = &Forwarded> {
        self.forwarded.iter().flatten()
    }

    fn push(&mut self, f: Forwarded) {
        if let Some(slot) = self.forwarded.iter_mut().find(|s| s.is_none()) {
            *slot = Some(f);
        }
    }

    fn refuse(&mut self, status: i32, why: &'static str) -> i32 {
        self.answer = Answer::Firmware(why);
        status
    }
}

/// The result of [`Ddw::handle`].  Not boxed: `handle` does not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a DMA-window token: forward it unchanged.
    NotMine,
    /// Answered; the results are in `rets`.
    Handled(Report),
}

/// One RTAS call as a trace line: `rtas: NAME(ARGS) = STATUS RETS`, arguments
/// and results in hex without `0x`, the status in signed decimal.  Usable by
/// the runtime for the calls it forwards unchanged.
pub struct TraceLine<'a> {
    pub name: &'a str,
    pub args: &'a [u32],
    pub rets: &'a [u32],
}

fn write_call(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    args: &[u32],
    args_more: bool,
    rets: &[u32],
    rets_more: bool,
) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, a) in args.iter().enumerate() {
        write!(f, "{}{a:x}", if i == 0 { "" } else { " " })?;
    }
    if args_more {
        write!(f, " ...")?;
    }
    write!(f, ") =")?;
    match rets.split_first() {
        None => write!(f, " (no results)")?,
        Some((st, rest)) => {
            write!(f, " {}", *st as i32)?;
            for r in rest {
                write!(f, " {r:x}")?;
            }
        }
    }
    if rets_more {
        write!(f, " ...")?;
    }
    Ok(())
}

impl fmt::Display for TraceLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtas: ")?;
        write_call(f, self.name, self.args, false, self.rets, false)
    }
}

impl fmt::Display for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.error {
            write!(f, "{}(", self.call.rtas_name())?;
            for (i, a) in self.args.as_slice().iter().enumerate() {
                write!(f, "{}{a:x}", if i == 0 { "" } else { " " })?;
            }
            return write!(f, ") failed: {e}");
        }
        write_call(
            f,
            self.call.rtas_name(),
            self.args.as_slice(),
            self.args.more(),
            self.rets.as_slice(),
            self.rets.more(),
        )
    }
}

impl fmt::Display for Report {
    /// `rtas: NAME(ARGS) = STATUS RETS [SOURCE]` where SOURCE is
    /// `platform` (forwarded as is), `platform: CALL; …` (the platform calls
    /// made, when they differ from the OS's), `papr-fw: REASON[; CALL…]` or
    /// `injected`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtas: ")?;
        write_call(
            f,
            self.call.rtas_name(),
            self.args.as_slice(),
            self.args.more(),
            self.rets.as_slice(),
            self.rets.more(),
        )?;
        let mut fwd = self.forwarded().peekable();
        match self.answer {
            Answer::Injected => return write!(f, " [injected]"),
            Answer::Firmware(why) => write!(f, " [papr-fw: {why}")?,
            Answer::Platform => {
                let only = self.forwarded().count() == 1;
                if let Some(first) = fwd.peek() {
                    if only
                        && first.error.is_none()
                        && first.call == self.call
                        && first.args == self.args
                        && first.rets == self.rets
                    {
                        return write!(f, " [platform]");
                    }
                }
                write!(f, " [platform:")?;
                if let Some(first) = fwd.next() {
                    write!(f, " {first}")?;
                }
            }
        }
        for c in fwd {
            write!(f, "; {c}")?;
        }
        write!(f, "]")
    }
}

/// What the boot firmware hands the runtime (`RuntimeConfig::ddw`): the
/// platform description and the personality.  Encoded big-endian:
///
/// ```text
/// u32 magic "DDWC", u32 version 1
/// u32 query, create, remove tokens; u32 has-reset (0/1); u32 reset token
/// u32 PE count, then per PE:
///   u64 buid; u32 default liobn; u64 default bus address; u64 default size
///   u32 has-config-addresses (0/1); u32 count; count × u32
///   u32 has-dma64 (0/1); u64 dma64 address
/// u32 length; the policy as `-prom-env` options ("KEY=VALUE KEY=VALUE")
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdwConfig {
    pub platform: DdwPlatform,
    pub policy: DdwPolicy,
}

const CONFIG_MAGIC: u32 = 0x4444_5743; // "DDWC"
const CONFIG_VERSION: u32 = 1;

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_first_chunk::<N>()?;
        self.0 = b;
        Some(*a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u32()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl DdwConfig {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let u32_ = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_be_bytes());
        let u64_ = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_be_bytes());
        let t = &self.platform.tokens;
        for x in [CONFIG_MAGIC, CONFIG_VERSION, t.query, t.create, t.remove] {
            u32_(&mut v, x);
        }
        u32_(&mut v, t.reset.is_some() as u32);
        u32_(&mut v, t.reset.unwrap_or(0));
        u32_(&mut v, self.platform.pes.len() as u32);
        for pe in &self.platform.pes {
            u64_(&mut v, pe.buid);
            u32_(&mut v, pe.default_window.liobn);
            u64_(&mut v, pe.default_window.bus_addr);
            u64_(&mut v, pe.default_window.size);
            let cfg = pe.config_addrs.as_deref();
            u32_(&mut v, cfg.is_some() as u32);
            u32_(&mut v, cfg.map_or(0, |c| c.len() as u32));
            for a in cfg.unwrap_or(&[]) {
                u32_(&mut v, *a);
            }
            u32_(&mut v, pe.dma64_addr.is_some() as u32);
            u64_(&mut v, pe.dma64_addr.unwrap_or(0));
        }
        let opts = self.policy.to_options();
        u32_(&mut v, opts.len() as u32);
        v.extend_from_slice(opts.as_bytes());
        v
    }

    /// `None` for anything [`encode`](Self::encode) did not write, including
    /// trailing bytes and option values the policy parser refuses.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Rd(bytes);
        if r.u32()? != CONFIG_MAGIC || r.u32()? != CONFIG_VERSION {
            return None;
        }
        let (query, create, remove) = (r.u32()?, r.u32()?, r.u32()?);
        let has_reset = r.flag()?;
        let reset = r.u32()?;
        let tokens = DdwTokens {
            query,
            create,
            remove,
            reset: has_reset.then_some(reset),
        };
        let n = r.u32()? as usize;
        // Each PE takes at least 48 bytes: no allocation beyond the input.
        if n > r.0.len() / 48 {
            return None;
        }
        let mut pes = Vec::with_capacity(n);
        for _ in 0..n {
            let buid = r.u64()?;
            let default_window = DefaultWindow {
                liobn: r.u32()?,
                bus_addr: r.u64()?,
                size: r.u64()?,
            };
            let has_cfg = r.flag()?;
            let ncfg = r.u32()? as usize;
            if ncfg > r.0.len() / 4 || (!has_cfg && ncfg != 0) {
                return None;
            }
            let mut cfg = Vec::with_capacity(ncfg);
            for _ in 0..ncfg {
                cfg.push(r.u32()?);
            }
            let has_dma64 = r.flag()?;
            let dma64 = r.u64()?;
            pes.push(PeConfig {
                buid,
                default_window,
                config_addrs: has_cfg.then_some(cfg),
                dma64_addr: has_dma64.then_some(dma64),
            });
        }
        let len = r.u32()? as usize;
        if len != r.0.len() {
            return None;
        }
        let opts = core::str::from_utf8(r.0).ok()?;
        let mut policy = DdwPolicy::default();
        for o in opts.split_whitespace() {
            let (k, v) = o.split_once('=')?;
            if policy.parse_option(k, v) != Ok(true) {
                return None;
            }
        }
        Some(DdwConfig {
            platform: DdwPlatform { tokens, pes },
            policy,
        })
    }
}

/// Call the platform's RTAS and record it.  A failed H_RTAS is −1.
fn forward<P: Hypervisor + Memory + ?Sized>(
    p: &mut P,
    block: u64,
    token: u32,
    call: DdwCall,
    args: &[u32],
    rets: &mut [u32],
    rep: &mut Report,
) -> i32 {
    let r = super::call(p, block, token, args, rets);
    let st = match r {
        Ok(st) => st,
        Err(_) => {
            rets.fill(0);
            if let Some(r0) = rets.first_mut() {
                *r0 = status::HARDWARE_ERROR as u32;
            }
            status::HARDWARE_ERROR
        }
    };
    rep.push(Forwarded {
        call,
        args: Cells::new(args),
        rets: Cells::new(rets),
        error: r.err(),
    });
    st
}

/// papr-fw's DMA-window calls: tokens, PE models, personality, faults.
#[derive(Clone, Debug)]
pub struct Ddw {
    tokens: DdwTokens,
    pes: Vec<Pe>,
    policy: DdwPolicy,
    faults: Vec<Fault>,
}

impl Ddw {
    /// PEs start in the platform's reset state: only their default window.
    /// A BUID given twice keeps its first entry.
    pub fn new(platform: DdwPlatform, policy: DdwPolicy) -> Self {
        let mut pes: Vec<Pe> = Vec::with_capacity(platform.pes.len());
        for c in platform.pes {
            if !pes.iter().any(|p| p.buid() == c.buid) {
                pes.push(Pe::new(c));
            }
        }
        let faults = policy
            .inject
            .iter()
            .filter_map(|i| {
                Some(Fault {
                    call: i.call,
                    status: i.kind.status(i.call)?,
                    remaining: match i.count {
                        Count::Times(n) => Some(n),
                        Count::Always => None,
                    },
                })
            })
            .collect();
        Ddw {
            tokens: platform.tokens,
            pes,
            policy,
            faults,
        }
    }

    pub fn from_config(c: DdwConfig) -> Self {
        Ddw::new(c.platform, c.policy)
    }

    pub fn tokens(&self) -> &DdwTokens {
        &self.tokens
    }

    pub fn policy(&self) -> &DdwPolicy {
        &self.policy
    }

    pub fn pes(&self) -> &[Pe] {
        &self.pes
    }

    pub fn pe(&self, buid: u64) -> Option<&Pe> {
        self.pes.iter().find(|p| p.buid() == buid)
    }

    /// The `ibm,ddw-extensions` cells to put next to `ibm,ddw-applicable`,
    /// or `None` without a reset call (then the property is left out and
    /// limited-address mode cannot be offered).
    pub fn ddw_extensions(&self) -> Option<Vec<u32>> {
        self.tokens.reset.map(|t| self.policy.ddw_extensions(t))
    }

    /// Handle RTAS call `token` with `nargs` arguments in `args` and `nret`
    /// results to put in `rets` (`rets[0]` = status).  `block` is a physical
    /// area of at least [`super::BLOCK_SIZE`] bytes for the calls papr-fw
    /// makes to the platform (not the OS's own argument block: papr-fw's
    /// calls can need more cells).  Any input gives a status; `args` or
    /// `rets` shorter than `nargs`/`nret` give −3.
    #[allow(clippy::too_many_arguments)]
    pub fn handle<P: Hypervisor + Memory + ?Sized>(
        &mut self,
        p: &mut P,
        block: u64,
        token: u32,
        nargs: u32,
        nret: u32,
        args: &[u32],
        rets: &mut [u32],
    ) -> Outcome {
        let Some(call) = self.tokens.call_of(token) else {
            return Outcome::NotMine;
        };
        let (n_in, n_out) = (nargs as usize, nret as usize);
        let mut rep = Report::new(call, &args[..n_in.min(args.len())]);
        let n_out_avail = n_out.min(rets.len());
        let st = if args.len() < n_in || rets.len() < n_out {
            rep.refuse(
                status::PARAMETER_ERROR,
                "argument block shorter than nargs/nret",
            )
        } else {
            let (a, r) = (&args[..n_in], &mut rets[..n_out]);
            match call {
                DdwCall::Query => self.query(p, block, a, r, &mut rep),
                DdwCall::Create => self.create(p, block, a, r, &mut rep),
                DdwCall::Remove => self.remove(p, block, a, r, &mut rep),
                DdwCall::Reset => self.reset(p, block, a, r, &mut rep),
            }
        };
        let r = &mut rets[..n_out_avail];
        if rep.answer != Answer::Platform {
            r.fill(0);
        }
        if let Some(r0) = r.first_mut() {
            *r0 = st as u32;
        }
        rep.status = st;
        rep.rets = Cells::new(r);
        Outcome::Handled(rep)
    }

    /// The PE of (config address, BUID hi, BUID lo).
    fn resolve(&self, args: &[u32]) -> Result<usize, &'static str> {
        let buid = ((args[1] as u64) << 32) | args[2] as u64;
        let i = self
            .pes
            .iter()
            .position(|pe| pe.buid() == buid)
            .ok_or("BUID is not a PHB with DMA windows")?;
        if !self.pes[i].accepts_cfg(args[0]) {
            return Err("config address is not a device under this PHB");
        }
        Ok(i)
    }

    /// The status of the next injected fault for `call`, if any; the report
    /// then says the answer was injected.
    fn inject(&mut self, call: DdwCall, rep: &mut Report) -> Option<i32> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.call == call && f.remaining != Some(0))?;
        if let Some(n) = &mut f.remaining {
            *n -= 1;
        }
        rep.answer = Answer::Injected;
        Some(f.status)
    }

    /// Query mask `m` as the personality offers it.
    fn offered_mask(&self, mut m: u32) -> u32 {
        if let Some(ps) = self.policy.page_sizes {
            m &= ps;
        }
        if let Some(cap) = self.policy.max_window_shift {
            m &= policy::PAGE_SIZES
                .iter()
                .filter(|(_, s)| *s <= cap)
                .fold(0, |acc, (b, _)| acc | b);
        }
        m
    }

    /// Largest block (TCEs) as offered, given the offered `mask`.
    fn offered_block(&self, block: u64, mask: u32) -> u64 {
        let mut b = block.min(1 << MAX_WINDOW_TCES_LOG2);
        if let Some(cap) = self.policy.max_window_shift {
            let ps = policy::largest_page_shift(mask);
            if ps != 0 && ps <= cap {
                b = b.min(1 << (cap - ps));
            }
        }
        b
    }

    fn offered_windows(&self, pe: &Pe, avail: u32) -> u32 {
        let mut a = avail;
        if let Some(n) = self.policy.max_windows {
            a = a.min(n.saturating_sub(pe.active()));
        }
        if pe.lam && pe.next_placement().is_some_and(|b| b > LAM_MAX_BUS_ADDR) {
            a = 0;
        }
        a
    }

    fn query<P: Hypervisor + Memory + ?Sized>(
        &mut self,
        p: &mut P,
        block: u64,
        args: &[u32],
        rets: &mut [u32],
        rep: &mut Report,
    ) -> i32 {
        if args.len() != 3 || !(rets.len() == 5 || rets.len() == 6) {
            return rep.refuse(
                status::PARAMETER_ERROR,
                "query takes 3 arguments and 5 or 6 results",
            );
        }
        let i = match self.resolve(args) {
            Ok(i) => i,
            Err(why) => return rep.refuse(status::PARAMETER_ERROR, why),
        };
        if let Some(st) = self.inject(DdwCall::Query, rep) {
            return st;
        }
        let n = rets.len();
        let mut pr = [0u32; 6];
        let st = forward(
            p,
            block,
            self.tokens.query,
            DdwCall::Query,
            args,
            &mut pr[..n],
            rep,
        );
        rets[1..].copy_from_slice(&pr[1..n]);
        if st != status::SUCCESS {
            return st;
        }
        let (avail, lb, mask, migr) = if n == 6 {
            (pr[1], ((pr[2] as u64) << 32) | pr[3] as u64, pr[4], pr[5])
        } else {
            (pr[1], pr[2] as u64, pr[3], pr[4])
        };
        let mask = self.offered_mask(mask);
        let avail = self.offered_windows(&self.pes[i], avail);
        let lb = self.offered_block(lb, mask);
        rets[1] = avail;
        if n == 6 {
            rets[2] = (lb >> 32) as u32;
            rets[3] = lb as u32;
            rets[4] = mask;
            rets[5] = migr & mask;
        } else {
            rets[2] = lb.min(u32::MAX as u64) as u32;
            rets[3] = mask;
            rets[4] = migr & mask;
        }
        st
    }

    fn create<P: Hypervisor + Memory + ?Sized>(
        &mut self,
        p: &mut P,
        block: u64,
        args: &[u32],
        rets: &mut [u32],
        rep: &mut Report,
    ) -> i32 {
        const PARAM: i32 = status::PARAMETER_ERROR;
        if args.len() != 5 || rets.len() != 4 {
            return rep.refuse(PARAM, "create takes 5 arguments and 4 results");
        }
        let i = match self.resolve(args) {
            Ok(i) => i,
            Err(why) => return rep.refuse(PARAM, why),
        };
        if let Some(st) = self.inject(DdwCall::Create, rep) {
            return st;
        }
        let (ps, ws) = (args[3], args[4]);
        let cap = self.policy.max_window_shift;
        let Some(bit) = policy::page_size_bit(ps) else {
            return rep.refuse(PARAM, "page shift is not a LoPAPR I/O page size");
        };
        if self.policy.page_sizes.is_some_and(|m| m & bit == 0) {
            return rep.refuse(PARAM, "page size not offered (ddw-page-sizes)");
        }
        if cap.is_some_and(|c| ps > c) {
            return rep.refuse(PARAM, "page size above ddw-max-window-shift");
        }
        if ws < ps || ws >= 64 {
            return rep.refuse(PARAM, "window shift below the page shift or above 63");
        }
        if ws - ps > MAX_WINDOW_TCES_LOG2 {
            return rep.refuse(PARAM, "window needs more than 2^31 TCEs");
        }
        if cap.is_some_and(|c| ws > c) {
            return rep.refuse(PARAM, "window above ddw-max-window-shift");
        }
        let pe = &self.pes[i];
        let active = pe.active();
        if self.policy.max_windows.is_some_and(|n| active >= n) {
            return rep.refuse(PARAM, "no window available (ddw-max-windows)");
        }
        if !pe.has_room() {
            return rep.refuse(status::HARDWARE_ERROR, "no room to track another window");
        }
        if pe.lam && pe.next_placement().is_some_and(|b| b > LAM_MAX_BUS_ADDR) {
            return rep.refuse(
                PARAM,
                "limited-address mode: the platform would place the window above 4 GiB",
            );
        }
        let mut pr = [0u32; 4];
        let st = forward(
            p,
            block,
            self.tokens.create,
            DdwCall::Create,
            args,
            &mut pr,
            rep,
        );
        rets[1..].copy_from_slice(&pr[1..]);
        if st != status::SUCCESS {
            return st;
        }
        let liobn = pr[1];
        let bus_addr = ((pr[2] as u64) << 32) | pr[3] as u64;
        let w = Window {
            liobn,
            bus_addr,
            page_shift: ps,
            size: 1u64 << ws,
            kind: WindowKind::Dynamic,
        };
        let remove_token = self.tokens.remove;
        let pe = &mut self.pes[i];
        if active >= 1 {
            pe.dma64_addr = Some(bus_addr);
        }
        if pe.lam && bus_addr > LAM_MAX_BUS_ADDR {
            // Out of a limited mask's reach: withdraw it.  Only when another
            // window stays, so the platform has nothing to restore.
            if active >= 1 {
                let mut r = [0u32; 1];
                let st = forward(
                    p,
                    block,
                    remove_token,
                    DdwCall::Remove,
                    &[liobn],
                    &mut r,
                    rep,
                );
                if st == status::SUCCESS {
                    return rep.refuse(
                        PARAM,
                        "limited-address mode: window placed above 4 GiB, withdrawn",
                    );
                }
            }
            pe.insert(Window {
                kind: WindowKind::Stray,
                ..w
            });
            return rep.refuse(
                status::HARDWARE_ERROR,
                "limited-address mode: window placed above 4 GiB, not removable",
            );
        }
        pe.insert(w);
        st
    }

    fn remove<P: Hypervisor + Memory + ?Sized>(
        &mut self,
        p: &mut P,
        block: u64,
        args: &[u32],
        rets: &mut [u32],
        rep: &mut Report,
    ) -> i32 {
        if args.len() != 1 || rets.len() != 1 {
            return rep.refuse(
                status::PARAMETER_ERROR,
                "remove takes 1 argument and 1 result",
            );
        }
        let liobn = args[0];
        let found = self.pes.iter().enumerate().find_map(|(i, pe)| {
            let s = pe.slot_of(liobn)?;
            (pe.windows[s]?.kind != WindowKind::Stray).then_some((i, s))
        });
        let Some((i, slot)) = found else {
            return rep.refuse(
                status::PARAMETER_ERROR,
                "LIOBN is not an active window of a known PE",
            );
        };
        if let Some(st) = self.inject(DdwCall::Remove, rep) {
            return st;
        }
        let st = forward(
            p,
            block,
            self.tokens.remove,
            DdwCall::Remove,
            args,
            rets,
            rep,
        );
        if st != status::SUCCESS {
            return st;
        }
        let reset_token = self.tokens.reset;
        let pe = &mut self.pes[i];
        let Some(removed) = pe.windows[slot].take() else {
            return st;
        };
        if pe.active() == 0 && removed.kind != WindowKind::Default {
            // LoPAPR: removing the last window, not the default one, restores
            // the default.  QEMU did so unless the window had the default's
            // LIOBN; a reset makes it so either way.
            let default_liobn = pe.config.default_window.liobn;
            let restored = match reset_token {
                Some(t) => {
                    let buid = pe.buid();
                    let a = [pe.own_cfg(), (buid >> 32) as u32, buid as u32];
                    let mut r = [0u32; 1];
                    forward(p, block, t, DdwCall::Reset, &a, &mut r, rep) == status::SUCCESS
                }
                None => false,
            };
            if restored || removed.liobn != default_liobn {
                pe.reset_windows();
            }
        }
        st
    }

    fn reset<P: Hypervisor + Memory + ?Sized>(
        &mut self,
        p: &mut P,
        block: u64,
        args: &[u32],
        rets: &mut [u32],
        rep: &mut Report,
    ) -> i32 {
        let Some(token) = self.tokens.reset else {
            return rep.refuse(status::PARAMETER_ERROR, "no reset call");
        };
        let nargs_ok = args.len() == 3 || (args.len() == 4 && self.policy.lam);
        if !nargs_ok || rets.len() != 1 {
            return rep.refuse(
                status::PARAMETER_ERROR,
                "reset takes 3 arguments (4 with ddw-lam=on) and 1 result",
            );
        }
        let i = match self.resolve(args) {
            Ok(i) => i,
            Err(why) => return rep.refuse(status::PARAMETER_ERROR, why),
        };
        let lam = match args.get(3) {
            None | Some(0) => false,
            Some(1) => true,
            Some(_) => {
                return rep.refuse(
                    status::PARAMETER_ERROR,
                    "limited-address-mode argument is not 0 or 1",
                )
            }
        };
        if let Some(st) = self.inject(DdwCall::Reset, rep) {
            return st;
        }
        let st = forward(p, block, token, DdwCall::Reset, &args[..3], rets, rep);
        if st != status::SUCCESS {
            return st;
        }
        let pe = &mut self.pes[i];
        pe.reset_windows();
        pe.lam = lam;
        st
    }
}

#[cfg(test)]
#[path = "ddw_tests.rs"]
mod tests;
