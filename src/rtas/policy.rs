//! DMA-window personalities and fault injection for papr-fw's own
//! `ibm,*-pe-dma-window` RTAS calls (LoPAPR, RTAS chapter, "DMA Window
//! Manipulation Calls" and "Extensions to Dynamic DMA Windows"; Linux side:
//! linux-expectations §2.4, §2.5, §2.10, §3.3; QEMU side: QEMU pseries contract
//! §4.2, §4.4, §5.2).
//!
//! The options come from `-prom-env KEY=VALUE` (NVRAM "system" partition,
//! contract §11) and are applied by [`crate::rtas::ddw`].  With no option set,
//! every call behaves as QEMU's own RTAS does, except where QEMU would break
//! (see "Always on" below).  Each option and the kernel path it exercises:
//!
//! | option | default | effect | Linux path it drives |
//! |---|---|---|---|
//! | `ddw-max-windows=N` (N ≥ 1) | QEMU's 2 windows per PHB | query reports `windows_available = min(QEMU's, N − active windows)`; a create when N windows are active is refused with −3 although QEMU could | N=1 is an SR-IOV VF on PowerVM: `enable_ddw` sees 0 windows, clears and removes the default window ("Removed default DMA window for …"), queries again and creates the DDW, which QEMU places at bus 0; VFIO sees `max_dynamic_windows_supported = 1` |
//! | `ddw-page-sizes=MASK` (LoPAPR query mask: 0x1 4K, 0x2 64K, 0x4 16M, 0x8 32M, 0x10 64M, 0x20 128M, 0x40 256M, 0x80 16G, 0x100 2M) | QEMU's mask, 0x107 (4K 64K 2M 16M) | query reports QEMU's mask ∩ MASK; a create with a page size outside MASK is −3 | the kernel takes the largest offered size: 0x1 forces 4K TCEs (VFIO-like, many TCEs); a mask QEMU cannot serve (0x8) leaves an empty mask: "no supported page size in mask" and the device stays on the 32-bit window |
//! | `ddw-max-window-shift=N` (12..=63) | none | page sizes above 2^N are not offered; query's largest block becomes 2^(N − largest offered page shift) TCEs; a create with window shift > N is −3 | RAM above 2^N: "can't map partition max …", dynamic (non-direct) mapping with `linux,dma64-ddr-window-info` and on-demand TCEs.  Combine it with `ddw-page-sizes` to keep enough TCEs: with N=30 and QEMU's 16M pages the window has 64 TCEs, and Linux 6.12's NVMe I/O then livelocks (every 4K request page takes a whole 16M TCE; measured in qemu-tests/tests/rtas_personalities.rs); `ddw-page-sizes=0x3` (4K, 64K) gives 16384 64K TCEs and works |
//! | `ddw-lam=on` | off (QEMU has no limited-address mode) | `ibm,ddw-extensions` gets its 4th entry (value 1); reset accepts 4 arguments (4th: 1 enters LAM, 0 leaves it); in LAM a DDW must start at or below 4 GiB, else create is −3 | ≥6.15 (and 6.12.y) kernels with 33–63-bit DMA masks: `limited_dma_window()` then `enable_ddw`; "lsa_required: 1, lsa_enabled: 1" |
//! | `ddw-inject=CALL:KIND[:COUNT][,…]` | none | the next COUNT (default 1, or `always`) well-formed calls CALL (query, create, remove, reset) to a known PE return KIND without reaching QEMU | see [`FaultKind`] |
//! | `rtas-trace=on` | off | one console line per RTAS call the runtime handles, with arguments, results and what was forwarded | – |
//!
//! How each personality maps onto what QEMU can do:
//! * **Windows.**  QEMU has two TCE tables per PHB and answers
//!   `windows_available = 2 − active`.  papr-fw keeps its own count of active
//!   windows (the model in [`crate::rtas::ddw`]) and reports the smaller of the
//!   two.  QEMU itself refuses a third window with −1; a personality limit
//!   is refused with −3, as LoPAPR's note on create says ("more DMA windows
//!   than is possible" is a parameter error).  With N = 1 the kernel removes
//!   the default window; QEMU then places the new DDW at the default window's
//!   bus address (0), exactly the VF layout.
//! * **Page sizes.**  The mask is intersected with QEMU's at every query.  A
//!   page size QEMU lacks is refused by QEMU (−3) anyway; one QEMU has but the
//!   personality hides is refused by papr-fw (−3) before reaching QEMU.
//! * **Largest block.**  LoPAPR counts it in TCEs; Linux computes
//!   `ddw_sz = min(order_base_2(block << page_shift), fls64(dma_mask))` with the
//!   largest offered page shift.  So a byte cap 2^N is reported as
//!   2^(N − largest offered shift) TCEs; sizes larger than 2^N are dropped from
//!   the mask so the block is never 0.  Create checks the byte size
//!   (window shift ≤ N), which every window the query promised satisfies
//!   (LoPAPR: what query reports must be creatable).
//! * **LAM.**  QEMU's reset takes exactly 3 arguments and QEMU always places a
//!   DDW at the PHB's `dma_win_addr` (0) when no window is active, otherwise at
//!   `dma64_win_addr` (1<<59, a `spapr-pci-host-bridge` property, not in the
//!   tree).  papr-fw cannot move a window: TCE hypercalls go straight to QEMU.
//!   So in LAM papr-fw forwards reset with 3 arguments, remembers the mode,
//!   and accepts a DDW only where a limited-mask device can reach it (start at
//!   or below 4 GiB, where PowerVM puts the LAM window).  That holds when the
//!   default window was removed first (DDW at 0: combine with
//!   `ddw-max-windows=1`), or when QEMU runs with
//!   `-global spapr-pci-host-bridge.dma64_win_addr=0x100000000` (DDW at exactly
//!   4 GiB, PowerVM's layout).  Otherwise the create is refused with −3 (a
//!   window QEMU already made is removed again, it was never the OS's) and the
//!   kernel falls back to the 32-bit window after a 3-argument reset; once the
//!   high placement is known, query in LAM reports 0 windows available.
//!   papr-fw never removes the OS's default window on its own.
//!
//! Always on, whatever the options (QEMU 7.2 defects papr-fw shields):
//! * QEMU's TCE count per window is a `uint32_t` (`nb_table`): a window of
//!   2^32 TCEs or more is truncated to 0, create returns −1 and leaves the
//!   table's memory region mapped, so the next enable of that table trips an
//!   assertion and QEMU aborts.  papr-fw refuses such creates with −3 and
//!   reports a largest block of at most 2^31 TCEs (QEMU's own 5-output
//!   answer; its 6-output answer, 2^37, is not creatable).
//! * Page shifts of 64 or more make QEMU shift by more than the width of
//!   the type; LoPAPR says shifts 0–11 are invalid.  Both are −3.
//! * remove with a LIOBN that is not an active PHB window (e.g. a VIO
//!   device's) would make QEMU treat the VIO device as a PHB; papr-fw answers
//!   −3 itself.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The four DMA-window calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdwCall {
    Query,
    Create,
    Remove,
    Reset,
}

impl DdwCall {
    pub const ALL: [DdwCall; 4] = [
        DdwCall::Query,
        DdwCall::Create,
        DdwCall::Remove,
        DdwCall::Reset,
    ];

    /// The `/rtas` property (token) name, as QEMU registers it.
    pub fn rtas_name(self) -> &'static str {
        match self {
            DdwCall::Query => "ibm,query-pe-dma-window",
            DdwCall::Create => "ibm,create-pe-dma-window",
            DdwCall::Remove => "ibm,remove-pe-dma-window",
            DdwCall::Reset => "ibm,reset-pe-dma-window",
        }
    }

    /// The short name used in `ddw-inject`.
    pub fn short(self) -> &'static str {
        match self {
            DdwCall::Query => "query",
            DdwCall::Create => "create",
            DdwCall::Remove => "remove",
            DdwCall::Reset => "reset",
        }
    }
}

/// What an injected fault returns.
///
/// | kind | query | create | remove | reset |
/// |---|---|---|---|---|
/// | `busy` | – | 9900 (extended delay, 1 ms) | – | −2 |
/// | `fail` | −1 | −1 | −1 | −1 |
/// | `param` | −3 | −3 | −3 | −3 |
///
/// LoPAPR lists busy statuses only for create (−2, 990x) and reset (−2);
/// query and remove cannot be busy, so `query:busy` is refused.  Linux
/// (`create_ddw`) retries create while `rtas_busy_delay()` says so, and does
/// not retry anything else: `create:fail` → "ibm,create-pe-dma-window(…)
/// returned -1", the PE goes on the failed list and the device keeps the
/// 32-bit window; `query:fail` → at probe "spapr_tce_init_table_group:
/// query_ddw failed" (VFIO max windows −1), in `enable_ddw` DDW is not
/// attempted; `remove:fail` → "failed to remove DMA window: rtas returned -1";
/// `reset:fail` → "ibm,reset-pe-dma-windows(…) returned -1".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Busy,
    Fail,
    Param,
}

impl FaultKind {
    /// The status returned for `call`, `None` if LoPAPR does not allow it.
    pub fn status(self, call: DdwCall) -> Option<i32> {
        match (self, call) {
            (FaultKind::Busy, DdwCall::Create) => Some(super::status::EXTENDED_DELAY_FIRST),
            (FaultKind::Busy, DdwCall::Reset) => Some(super::status::BUSY),
            (FaultKind::Busy, _) => None,
            (FaultKind::Fail, _) => Some(super::status::HARDWARE_ERROR),
            (FaultKind::Param, _) => Some(super::status::PARAMETER_ERROR),
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::Busy => "busy",
            FaultKind::Fail => "fail",
            FaultKind::Param => "param",
        }
    }
}

/// How many calls an injection affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Times(u32),
    Always,
}

/// One `ddw-inject` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub call: DdwCall,
    pub kind: FaultKind,
    pub count: Count,
}

impl fmt::Display for Injection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.call.short(), self.kind.name())?;
        match self.count {
            Count::Times(n) => write!(f, ":{n}"),
            Count::Always => write!(f, ":always"),
        }
    }
}

/// The DMA-window personality; `Default` is QEMU's plain behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DdwPolicy {
    /// `ddw-max-windows`: at most this many windows per PE.
    pub max_windows: Option<u32>,
    /// `ddw-page-sizes`: LoPAPR query mask of the page sizes offered.
    pub page_sizes: Option<u32>,
    /// `ddw-max-window-shift`: largest window, log2 bytes.
    pub max_window_shift: Option<u32>,
    /// `ddw-lam`: limited-address-mode extension.
    pub lam: bool,
    /// `ddw-inject`.
    pub inject: Vec<Injection>,
    /// `rtas-trace`.
    pub trace: bool,
}

/// All page sizes LoPAPR defines, as (query-mask bit, page shift), LSB first.
pub const PAGE_SIZES: [(u32, u32); 9] = [
    (0x001, 12),
    (0x002, 16),
    (0x004, 24),
    (0x008, 25),
    (0x010, 26),
    (0x020, 27),
    (0x040, 28),
    (0x080, 34),
    (0x100, 21),
];

/// Every LoPAPR page-size bit.
pub const ALL_PAGE_SIZES: u32 = 0x1ff;

/// Most `ddw-inject` entries.  The policy travels to the resident RTAS in
/// its fixed-size configuration block (`rtas::runtime::CONFIG_SIZE`, with
/// the token names and the PEs): a list the block cannot hold would make
/// `instantiate-rtas` fail and leave the OS without RTAS (the prom_env fuzz
/// target's invariant).
pub const MAX_INJECTIONS: usize = 16;

/// The query-mask bit of page `shift`, if LoPAPR defines that size.
pub fn page_size_bit(shift: u32) -> Option<u32> {
    PAGE_SIZES
        .iter()
        .find(|(_, s)| *s == shift)
        .map(|(b, _)| *b)
}

/// The largest page shift in query `mask` (0 if none), as Linux picks it.
pub fn largest_page_shift(mask: u32) -> u32 {
    PAGE_SIZES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0)
}

/// The keys [`DdwPolicy::parse_option`] understands.
pub const KEYS: [&str; 6] = [
    "ddw-max-windows",
    "ddw-page-sizes",
    "ddw-max-window-shift",
    "ddw-lam",
    "ddw-inject",
    "rtas-trace",
];

fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn parse_injection(entry: &str) -> Result<Injection, String> {
    let mut parts = entry.split(':');
    let call_s = parts.next().unwrap_or("").trim();
    let call = DdwCall::ALL
        .into_iter()
        .find(|c| c.short() == call_s)
        .ok_or_else(|| {
            format!("unknown call '{call_s}' (expected query, create, remove or reset)")
        })?;
    let kind_s = parts
        .next()
        .ok_or_else(|| format!("'{entry}' lacks a fault kind (CALL:KIND[:COUNT])"))?
        .trim();
    let kind = match kind_s {
        "busy" => FaultKind::Busy,
        "fail" => FaultKind::Fail,
        "param" => FaultKind::Param,
        _ => {
            return Err(format!(
                "unknown fault kind '{kind_s}' (expected busy, fail or param)"
            ))
        }
    };
    if kind.status(call).is_none() {
        return Err(format!(
            "{} cannot be busy (LoPAPR gives it only 0, -1 or -3)",
            call.short()
        ));
    }
    let count = match parts.next().map(str::trim) {
        None => Count::Times(1),
        Some("always") => Count::Always,
        Some(n) => match parse_u32(n) {
            Some(n) if n >= 1 => Count::Times(n),
            _ => {
                return Err(format!(
                    "bad count '{n}' (a number of calls, at least 1, or 'always')"
                ))
            }
        },
    };
    if parts.next().is_some() {
        return Err(format!("'{entry}' has too many fields (CALL:KIND[:COUNT])"));
    }
    if kind == FaultKind::Busy && count == Count::Always {
        return Err(format!(
            "{}:busy:always would make Linux retry forever",
            call.short()
        ));
    }
    Ok(Injection { call, kind, count })
}

impl DdwPolicy {
    /// Apply one firmware option.  `Ok(true)` if `key` is one of [`KEYS`] and
    /// `value` is good, `Ok(false)` if `key` is not a DMA-window option, and
    /// `Err` (a message naming the option) for a bad value, which leaves the
    /// policy as it was.  `ddw-inject` adds to earlier injections.
    pub fn parse_option(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let err = |why: String| Err(format!("{key}={value}: {why}"));
        match key {
            "ddw-max-windows" => match parse_u32(value) {
                Some(n) if n >= 1 => self.max_windows = Some(n),
                _ => return err("expected a number of windows, at least 1".to_string()),
            },
            "ddw-page-sizes" => match parse_u32(value) {
                Some(m) if m != 0 && m & !ALL_PAGE_SIZES == 0 => self.page_sizes = Some(m),
                _ => {
                    return err("expected a non-zero LoPAPR page-size mask within 0x1ff \
                         (0x1 4K, 0x2 64K, 0x4 16M, 0x8 32M, 0x10 64M, 0x20 128M, \
                         0x40 256M, 0x80 16G, 0x100 2M)"
                        .to_string())
                }
            },
            "ddw-max-window-shift" => match parse_u32(value) {
                Some(n) if (12..=63).contains(&n) => self.max_window_shift = Some(n),
                _ => return err("expected log2 of the window size, 12 to 63".to_string()),
            },
            "ddw-lam" => match parse_bool(value) {
                Some(b) => self.lam = b,
                None => return err("expected on or off".to_string()),
            },
            "rtas-trace" => match parse_bool(value) {
                Some(b) => self.trace = b,
                None => return err("expected on or off".to_string()),
            },
            "ddw-inject" => {
                let mut new = Vec::new();
                for entry in value.split(',').filter(|e| !e.trim().is_empty()) {
                    match parse_injection(entry.trim()) {
                        Ok(i) => new.push(i),
                        Err(why) => return err(why),
                    }
                }
                if new.is_empty() {
                    return err("expected CALL:KIND[:COUNT][,...]".to_string());
                }
                if self.inject.len() + new.len() > MAX_INJECTIONS {
                    return err(format!("at most {MAX_INJECTIONS} injections"));
                }
                self.inject.extend(new);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Build a policy from `(key, value)` options, ignoring keys that are not
    /// DMA-window options.  The first bad value is an error.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut p = DdwPolicy::default();
        for (k, v) in options {
            p.parse_option(k, v)?;
        }
        Ok(p)
    }

    /// True when every option has its default (QEMU's behaviour).
    pub fn is_default(&self) -> bool {
        *self == DdwPolicy::default()
    }

    /// The `ibm,ddw-extensions` cells for a PHB whose reset call has token
    /// `reset_token`: QEMU's `<2 reset 1>` (reset call; query may return 6
    /// outputs), plus the limited-address-mode entry `1` with `ddw-lam=on`.
    pub fn ddw_extensions(&self, reset_token: u32) -> Vec<u32> {
        let mut v = alloc::vec![2, reset_token, 1];
        if self.lam {
            v[0] = 3;
            v.push(1);
        }
        v
    }
}

impl DdwPolicy {
    /// The options that differ from the default, `-prom-env` style
    /// (`KEY=VALUE` separated by spaces; empty for the default), which
    /// [`parse_option`](Self::parse_option) reads back.
    pub fn to_options(&self) -> String {
        use core::fmt::Write;
        let mut o = String::new();
        let mut item = |a: fmt::Arguments<'_>| {
            let sep = if o.is_empty() { "" } else { " " };
            let _ = write!(o, "{sep}{a}");
        };
        if let Some(n) = self.max_windows {
            item(format_args!("ddw-max-windows={n}"));
        }
        if let Some(m) = self.page_sizes {
            item(format_args!("ddw-page-sizes={m:#x}"));
        }
        if let Some(n) = self.max_window_shift {
            item(format_args!("ddw-max-window-shift={n}"));
        }
        if self.lam {
            item(format_args!("ddw-lam=on"));
        }
        if !self.inject.is_empty() {
            let mut list = String::new();
            for (i, inj) in self.inject.iter().enumerate() {
                let _ = write!(list, "{}{inj}", if i == 0 { "" } else { "," });
            }
            item(format_args!("ddw-inject={list}"));
        }
        if self.trace {
            item(format_args!("rtas-trace=on"));
        }
        o
    }
}

impl fmt::Display for DdwPolicy {
    /// [`to_options`](DdwPolicy::to_options), or "qemu defaults".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            write!(f, "qemu defaults")
        } else {
            write!(f, "{}", self.to_options())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_qemu() {
        let p = DdwPolicy::default();
        assert!(p.is_default());
        assert_eq!(p.to_string(), "qemu defaults");
        assert_eq!(p.ddw_extensions(0x2029), [2, 0x2029, 1]);
    }

    #[test]
    fn parses_every_option() {
        let p = DdwPolicy::from_options([
            ("ddw-max-windows", "1"),
            ("ddw-page-sizes", "0x1"),
            ("ddw-max-window-shift", "30"),
            ("ddw-lam", "on"),
            ("ddw-inject", "create:busy:3,query:fail"),
            ("ddw-inject", "remove:param:always"),
            ("rtas-trace", "on"),
            ("boot-device", "disk"),
        ])
        .unwrap();
        assert_eq!(p.max_windows, Some(1));
        assert_eq!(p.page_sizes, Some(1));
        assert_eq!(p.max_window_shift, Some(30));
        assert!(p.lam && p.trace);
        assert_eq!(
            p.inject,
            [
                Injection {
                    call: DdwCall::Create,
                    kind: FaultKind::Busy,
                    count: Count::Times(3)
                },
                Injection {
                    call: DdwCall::Query,
                    kind: FaultKind::Fail,
                    count: Count::Times(1)
                },
                Injection {
                    call: DdwCall::Remove,
                    kind: FaultKind::Param,
                    count: Count::Always
                },
            ]
        );
        assert_eq!(p.ddw_extensions(0x2029), [3, 0x2029, 1, 1]);
        assert_eq!(
            p.to_string(),
            "ddw-max-windows=1 ddw-page-sizes=0x1 ddw-max-window-shift=30 ddw-lam=on \
             ddw-inject=create:busy:3,query:fail:1,remove:param:always rtas-trace=on"
        );
        let mut q = DdwPolicy::default();
        assert_eq!(q.parse_option("ddw-page-sizes", "263"), Ok(true));
        assert_eq!(q.page_sizes, Some(0x107));
        assert_eq!(q.parse_option("ddw-lam", "off"), Ok(true));
        assert_eq!(q.parse_option("rtas-trace", "false"), Ok(true));
        assert_eq!(q.parse_option("auto-boot?", "true"), Ok(false));
    }

    #[test]
    fn bad_values_are_explained_and_change_nothing() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "ddw-inject",
                "create:explode",
                "ddw-inject=create:explode: unknown fault kind 'explode' (expected busy, fail or param)",
            ),
            (
                "ddw-inject",
                "destroy:fail",
                "ddw-inject=destroy:fail: unknown call 'destroy' (expected query, create, remove or reset)",
            ),
            (
                "ddw-inject",
                "query:busy",
                "ddw-inject=query:busy: query cannot be busy (LoPAPR gives it only 0, -1 or -3)",
            ),
            (
                "ddw-inject",
                "remove:busy:2",
                "ddw-inject=remove:busy:2: remove cannot be busy (LoPAPR gives it only 0, -1 or -3)",
            ),
            (
                "ddw-inject",
                "create:busy:always",
                "ddw-inject=create:busy:always: create:busy:always would make Linux retry forever",
            ),
            (
                "ddw-inject",
                "create:fail:0",
                "ddw-inject=create:fail:0: bad count '0' (a number of calls, at least 1, or 'always')",
            ),
            (
                "ddw-inject",
                "create:fail:x",
                "ddw-inject=create:fail:x: bad count 'x' (a number of calls, at least 1, or 'always')",
            ),
            (
                "ddw-inject",
                "create",
                "ddw-inject=create: 'create' lacks a fault kind (CALL:KIND[:COUNT])",
            ),
            (
                "ddw-inject",
                "create:fail:1:2",
                "ddw-inject=create:fail:1:2: 'create:fail:1:2' has too many fields (CALL:KIND[:COUNT])",
            ),
            ("ddw-inject", "", "ddw-inject=: expected CALL:KIND[:COUNT][,...]"),
            (
                "ddw-max-windows",
                "0",
                "ddw-max-windows=0: expected a number of windows, at least 1",
            ),
            (
                "ddw-max-windows",
                "-1",
                "ddw-max-windows=-1: expected a number of windows, at least 1",
            ),
            (
                "ddw-max-window-shift",
                "64",
                "ddw-max-window-shift=64: expected log2 of the window size, 12 to 63",
            ),
            (
                "ddw-max-window-shift",
                "11",
                "ddw-max-window-shift=11: expected log2 of the window size, 12 to 63",
            ),
            ("ddw-lam", "maybe", "ddw-lam=maybe: expected on or off"),
            ("rtas-trace", "", "rtas-trace=: expected on or off"),
        ];
        for (k, v, msg) in cases {
            let mut p = DdwPolicy::default();
            assert_eq!(p.parse_option(k, v), Err(msg.to_string()), "{k}={v}");
            assert!(p.is_default(), "{k}={v} changed the policy");
        }
        for bad in ["0", "0x200", "0x3ff", "zz", "0x"] {
            let mut p = DdwPolicy::default();
            let e = p.parse_option("ddw-page-sizes", bad).unwrap_err();
            assert!(e.starts_with(&format!("ddw-page-sizes={bad}: expected a non-zero")));
        }
        // A bad entry anywhere in a list rejects the whole value.
        let mut p = DdwPolicy::default();
        assert!(p
            .parse_option("ddw-inject", "create:fail,query:busy")
            .is_err());
        assert!(p.inject.is_empty());
    }

    #[test]
    fn injections_are_bounded_so_the_resident_rtas_config_fits() {
        // The prom_env fuzz target's invariant: 250 injections were accepted
        // and made a runtime configuration larger than the runtime's block.
        let many = alloc::vec!["create:fail:4294967295"; 250].join(",");
        let mut p = DdwPolicy::default();
        let e = p.parse_option("ddw-inject", &many).unwrap_err();
        assert!(e.contains("at most 16 injections"), "{e}");
        assert!(p.inject.is_empty());
        let most = alloc::vec!["create:fail:4294967295"; MAX_INJECTIONS].join(",");
        assert_eq!(p.parse_option("ddw-inject", &most), Ok(true));
        assert!(
            p.parse_option("ddw-inject", "query:fail").is_err(),
            "the bound counts earlier ones"
        );
        // The largest policy still fits next to QEMU's token names.
        p.parse_option("ddw-max-windows", "4294967295").unwrap();
        p.parse_option("ddw-page-sizes", "0x1ff").unwrap();
        p.parse_option("ddw-max-window-shift", "63").unwrap();
        p.parse_option("ddw-lam", "on").unwrap();
        p.parse_option("rtas-trace", "on").unwrap();
        use crate::rtas::ddw::{DdwConfig, DdwPlatform, DdwTokens, DefaultWindow, PeConfig};
        use crate::rtas::runtime::{RuntimeConfig, CONFIG_SIZE};
        let ddw = DdwConfig {
            platform: DdwPlatform {
                tokens: DdwTokens::QEMU,
                pes: alloc::vec![
                    PeConfig {
                        buid: 0x0800_0000_2000_0000,
                        default_window: DefaultWindow { liobn: 0x8000_0000, bus_addr: 0, size: 1 << 30 },
                        config_addrs: None,
                        dma64_addr: None,
                    };
                    4
                ],
            },
            policy: p,
        };
        let rc = RuntimeConfig {
            vtermno: 0x7100_0000,
            ram_limit: 1 << 31,
            trace: true,
            token_names: crate::fake::QEMU_RTAS_TOKENS
                .iter()
                .map(|(n, t)| (*t, String::from(*n)))
                .collect(),
            ddw: ddw.encode(),
        };
        assert!(
            rc.encode().len() <= CONFIG_SIZE,
            "{} bytes",
            rc.encode().len()
        );
    }

    #[test]
    fn page_size_tables() {
        assert_eq!(largest_page_shift(0x107), 24);
        assert_eq!(largest_page_shift(0x103), 21);
        assert_eq!(largest_page_shift(0x1ff), 34);
        assert_eq!(largest_page_shift(0), 0);
        assert_eq!(page_size_bit(21), Some(0x100));
        assert_eq!(page_size_bit(13), None);
        assert_eq!(FaultKind::Busy.status(DdwCall::Create), Some(9900));
        assert_eq!(FaultKind::Busy.status(DdwCall::Reset), Some(-2));
        assert_eq!(FaultKind::Busy.status(DdwCall::Query), None);
        assert_eq!(FaultKind::Fail.status(DdwCall::Remove), Some(-1));
        assert_eq!(FaultKind::Param.status(DdwCall::Query), Some(-3));
    }
}
