//! The firmware-resident RTAS at run time (LoPAPR §7): what happens when the OS
//! calls RTAS after papr-fw has handed over.  The DMA-window calls are handled
//! by papr-fw (`crate::rtas::ddw`); every other token goes to the platform
//! unchanged — the OS's own argument block is passed to KVMPPC_H_RTAS, so QEMU
//! sees exactly what the OS wrote.  With `rtas-trace=on` every call handled is
//! printed on the console.
//!
//! The runtime's configuration is written by the firmware into the runtime
//! image when it installs it ([`RuntimeConfig`], big-endian, versioned).

use crate::console::{Vty, VtyWriter};
use crate::hcall::{op, rc};
use crate::memory::Memory;
use crate::platform::Platform;
use crate::rtas::ddw::{Ddw, DdwConfig, Outcome, TraceLine};
use crate::rtas::status;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

pub const CONFIG_MAGIC: u32 = 0x5243_4647; // "RCFG"
pub const CONFIG_VERSION: u32 = 1;
/// Bytes reserved for the configuration block in the runtime image.
pub const CONFIG_SIZE: usize = 4096;

/// What the firmware tells the runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The console's vtermno (for traces).
    pub vtermno: u64,
    /// Highest physical address the runtime may touch.
    pub ram_limit: u64,
    /// `rtas-trace=on`.
    pub trace: bool,
    /// RTAS token → name, for the trace (only the tokens the OS may call).
    pub token_names: Vec<(u32, String)>,
    /// Encoded DMA-window model and policy (`crate::rtas::ddw`), opaque here.
    pub ddw: Vec<u8>,
}

struct Writer(Vec<u8>);
impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes())
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes())
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

impl RuntimeConfig {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.u32(CONFIG_MAGIC);
        w.u32(CONFIG_VERSION);
        w.u64(self.vtermno);
        w.u64(self.ram_limit);
        w.u32(self.trace as u32);
        w.u32(self.token_names.len() as u32);
        for (t, n) in &self.token_names {
            w.u32(*t);
            w.bytes(n.as_bytes());
        }
        w.bytes(&self.ddw);
        w.0
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        if r.u32()? != CONFIG_MAGIC || r.u32()? != CONFIG_VERSION {
            return None;
        }
        let vtermno = r.u64()?;
        let ram_limit = r.u64()?;
        let trace = r.u32()? != 0;
        let n = r.u32()? as usize;
        let mut token_names = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let t = r.u32()?;
            let name = core::str::from_utf8(r.bytes()?).ok()?;
            token_names.push((t, String::from(name)));
        }
        let ddw = r.bytes()?.to_vec();
        Some(RuntimeConfig {
            vtermno,
            ram_limit,
            trace,
            token_names,
            ddw,
        })
    }

    pub fn token_name(&self, token: u32) -> Option<&str> {
        self.token_names
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, n)| n.as_str())
    }
}

/// The runtime's state.
pub struct Runtime {
    pub config: RuntimeConfig,
    vty: Vty,
    /// The DMA-window model, when the firmware configured one.
    pub ddw: Option<Ddw>,
    /// Calls handled so far.
    pub calls: u64,
}

/// Most argument and result cells the runtime reads from the OS's block.
const MAX_CELLS: u32 = 32;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Self {
        let vty = Vty::new();
        vty.set_vtermno(config.vtermno);
        let ddw = DdwConfig::decode(&config.ddw).map(Ddw::from_config);
        Runtime {
            config,
            vty,
            ddw,
            calls: 0,
        }
    }

    /// Handle the RTAS call whose argument block is at `args` (the OS's).
    pub fn handle<P: Platform + ?Sized>(&mut self, p: &mut P, args: u64) {
        self.calls += 1;
        let (Ok(token), Ok(nargs), Ok(nret)) = (
            p.read_be32(args),
            p.read_be32(args + 4),
            p.read_be32(args + 8),
        ) else {
            return;
        };
        if let Some(ddw) = self.ddw.as_mut() {
            if ddw.tokens().call_of(token).is_some() {
                let mut a = [0u32; MAX_CELLS as usize];
                let mut r = [0u32; MAX_CELLS as usize];
                let (na, nr) = (nargs.min(MAX_CELLS), nret.min(MAX_CELLS));
                for i in 0..na {
                    a[i as usize] = p.read_be32(args + 12 + 4 * i as u64).unwrap_or(0);
                }
                let block = p.scratch();
                if let Outcome::Handled(report) = ddw.handle(
                    p,
                    block,
                    token,
                    nargs,
                    nret,
                    &a[..na as usize],
                    &mut r[..nr as usize],
                ) {
                    let rets_at = args + 12 + 4 * nargs as u64;
                    for i in 0..nr {
                        let _ = p.write_be32(rets_at + 4 * i as u64, r[i as usize]);
                    }
                    if self.config.trace {
                        self.print(p, format_args!("{report}\n"));
                    }
                }
                return;
            }
        }
        // Not a DMA-window call: QEMU reads the OS's block itself.
        let r = p.hcall(op::KVMPPC_H_RTAS, &[args]);
        if r.rc != rc::H_SUCCESS && nret >= 1 {
            // The platform did not run the call.  QEMU answers an unknown
            // token with H_PARAMETER after storing "not supported" (-3); for
            // anything else the OS's status cell would keep whatever the OS
            // left there (Linux zeroes it: "success"), so say "hardware error".
            let st = if r.rc == rc::H_PARAMETER {
                status::PARAMETER_ERROR
            } else {
                status::HARDWARE_ERROR
            };
            let _ = p.write_be32(args + 12 + 4 * nargs as u64, st as u32);
        }
        if self.config.trace {
            self.trace_forwarded(p, token, args, nargs, nret);
        }
    }

    fn print<P: Platform + ?Sized>(&self, p: &mut P, args: core::fmt::Arguments) {
        let mut w = VtyWriter {
            vty: &self.vty,
            hv: p,
        };
        let _ = w.write_fmt(args);
    }

    /// A forwarded call, in the same format as the DMA-window calls' reports.
    fn trace_forwarded<P: Platform + ?Sized>(
        &self,
        p: &mut P,
        token: u32,
        args: u64,
        nargs: u32,
        nret: u32,
    ) {
        let (na, nr) = (nargs.min(MAX_CELLS), nret.min(MAX_CELLS));
        let cell = |p: &P, i: u32| p.read_be32(args + 12 + 4 * i as u64).unwrap_or(0);
        let a: Vec<u32> = (0..na).map(|i| cell(p, i)).collect();
        let r: Vec<u32> = (0..nr).map(|i| cell(p, nargs + i)).collect();
        let unnamed;
        let name = match self.config.token_name(token) {
            Some(n) => n,
            None => {
                unnamed = alloc::format!("token {token:#x}");
                unnamed.as_str()
            }
        };
        let line = TraceLine {
            name,
            args: &a,
            rets: &r,
        };
        self.print(p, format_args!("{line} [platform]\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;

    #[test]
    fn config_round_trip_and_rejects_garbage() {
        let c = RuntimeConfig {
            vtermno: 0x7100_0000,
            ram_limit: 2 << 30,
            trace: true,
            token_names: alloc::vec![(0x2027, "ibm,create-pe-dma-window".into())],
            ddw: alloc::vec![1, 2, 3],
        };
        let b = c.encode();
        assert_eq!(RuntimeConfig::decode(&b), Some(c));
        for cut in 0..b.len() {
            assert_eq!(RuntimeConfig::decode(&b[..cut]), None);
        }
        assert_eq!(RuntimeConfig::decode(&[0xff; 64]), None);
    }

    #[test]
    fn forwards_unchanged_and_traces() {
        let mut p = FakePlatform::new(1 << 20);
        let mut rt = Runtime::new(RuntimeConfig {
            vtermno: 0x7100_0000,
            trace: true,
            token_names: alloc::vec![(0x2016, "ibm,read-pci-config".into())],
            ..Default::default()
        });
        // The OS's block: ibm,read-pci-config is not a fake-modelled call, so the
        // fake answers -3 — what matters is that the block went through as is.
        let a = 0x8000;
        for (i, v) in [0x2016u32, 4, 2, 0x1000, 0x0800_0000, 0x2000_0000, 4, 0, 0]
            .iter()
            .enumerate()
        {
            p.mem.write_be32(a + 4 * i as u64, *v).unwrap();
        }
        rt.handle(&mut p, a);
        assert!(
            matches!(&p.calls[0], crate::fake::Call::Rtas { name, args, .. }
            if name == "ibm,read-pci-config" && args == &[0x1000, 0x0800_0000, 0x2000_0000, 4])
        );
        assert_eq!(
            p.console_text(),
            "rtas: ibm,read-pci-config(1000 8000000 20000000 4) = -3 0 [platform]\r\n"
        );
    }

    #[test]
    fn a_forwarded_call_the_platform_refuses_reports_an_error() {
        let mut p = FakePlatform::new(1 << 20);
        let mut rt = Runtime::new(RuntimeConfig {
            vtermno: 0x7100_0000,
            ..Default::default()
        });
        // get-time-of-day with the status cell as Linux leaves it (0).
        for (fault, want) in [
            (rc::H_HARDWARE, status::HARDWARE_ERROR),
            (rc::H_FUNCTION, status::HARDWARE_ERROR),
            (rc::H_PARAMETER, status::PARAMETER_ERROR),
        ] {
            p.inject_hcall(op::KVMPPC_H_RTAS, fault, 1);
            assert_eq!(
                os_call(&mut p, &mut rt, 0x2001, &[], 8)[0],
                want as u32,
                "H_RTAS {fault}"
            );
        }
        // The platform is fine again: the call goes through (the fake does
        // not model get-time-of-day: -3, written by the platform).
        assert_eq!(os_call(&mut p, &mut rt, 0x2001, &[], 8)[0], (-3i32) as u32);
        p.inject_hcall(op::KVMPPC_H_RTAS, rc::H_HARDWARE, 1);
        assert!(
            os_call(&mut p, &mut rt, 0x2001, &[], 0).is_empty(),
            "no result cells: none written"
        );
        // A DMA-window call whose H_RTAS fails: -1 and the model unchanged.
        let ddw = one_phb_ddw(crate::rtas::policy::DdwPolicy::default());
        let mut rt = Runtime::new(RuntimeConfig {
            ddw: ddw.encode(),
            ..Default::default()
        });
        let create = [0x1000, 0x0800_0000, 0x2000_0000, 16, 30];
        p.inject_hcall(op::KVMPPC_H_RTAS, rc::H_HARDWARE, 1);
        assert_eq!(
            os_call(&mut p, &mut rt, 0x2027, &create, 4),
            [(-1i32) as u32, 0, 0, 0]
        );
        let pe = rt.ddw.as_ref().unwrap().pe(0x0800_0000_2000_0000).unwrap();
        assert_eq!(pe.active(), 1, "no window recorded");
        assert_eq!(p.phbs[0].active_windows(), 1, "none at the platform either");
        assert_eq!(
            os_call(&mut p, &mut rt, 0x2027, &create, 4)[0],
            0,
            "the next create works"
        );
    }

    /// The DMA-window model of QEMU's tokens and one PHB, QEMU's first, with
    /// its 1 GiB default window at bus address 0.
    fn one_phb_ddw(policy: crate::rtas::policy::DdwPolicy) -> DdwConfig {
        use crate::rtas::ddw::{DdwPlatform, DdwTokens, DefaultWindow, PeConfig};
        DdwConfig {
            platform: DdwPlatform {
                tokens: DdwTokens::QEMU,
                pes: alloc::vec![PeConfig {
                    buid: 0x0800_0000_2000_0000,
                    default_window: DefaultWindow {
                        liobn: 0x8000_0000,
                        bus_addr: 0,
                        size: 1 << 30
                    },
                    config_addrs: None,
                    dma64_addr: None,
                }],
            },
            policy,
        }
    }

    fn os_call(
        p: &mut FakePlatform,
        rt: &mut Runtime,
        token: u32,
        args: &[u32],
        nret: usize,
    ) -> Vec<u32> {
        let a = 0x9000;
        p.mem.write_be32(a, token).unwrap();
        p.mem.write_be32(a + 4, args.len() as u32).unwrap();
        p.mem.write_be32(a + 8, nret as u32).unwrap();
        for (i, v) in args.iter().enumerate() {
            p.mem.write_be32(a + 12 + 4 * i as u64, *v).unwrap();
        }
        rt.handle(p, a);
        let at = a + 12 + 4 * args.len() as u64;
        (0..nret)
            .map(|i| p.mem.read_be32(at + 4 * i as u64).unwrap())
            .collect()
    }

    #[test]
    fn dma_window_calls_go_through_the_model() {
        use crate::rtas::policy::DdwPolicy;
        let mut p = FakePlatform::new(1 << 20);
        let mut policy = DdwPolicy::default();
        policy.parse_option("ddw-max-windows", "1").unwrap();
        let ddw = one_phb_ddw(policy);
        let mut rt = Runtime::new(RuntimeConfig {
            vtermno: 0x7100_0000,
            trace: true,
            ddw: ddw.encode(),
            ..Default::default()
        });
        assert!(rt.ddw.is_some());
        let (hi, lo) = (0x0800_0000, 0x2000_0000);
        // A single-window PE: none available while the default window exists.
        assert_eq!(
            os_call(&mut p, &mut rt, 0x2026, &[0x1000, hi, lo], 5)[..2],
            [0, 0]
        );
        assert_eq!(os_call(&mut p, &mut rt, 0x2028, &[0x8000_0000], 1), [0]);
        assert_eq!(
            os_call(&mut p, &mut rt, 0x2026, &[0x1000, hi, lo], 5)[..2],
            [0, 1]
        );
        let created = os_call(&mut p, &mut rt, 0x2027, &[0x1000, hi, lo, 16, 30], 4);
        assert_eq!(
            created,
            [0, 0x8000_0000, 0, 0],
            "window at bus 0 on the freed LIOBN"
        );
        assert_eq!(p.phbs[0].tables[0].page_shift, 16);
        let text = p.console_text();
        assert!(
            text.contains("rtas: ibm,query-pe-dma-window(1000 8000000 20000000) = 0 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "rtas: ibm,create-pe-dma-window(1000 8000000 20000000 10 1e) = 0 80000000 0 0"
            ),
            "{text}"
        );
    }
}
