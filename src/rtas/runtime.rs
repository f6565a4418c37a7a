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
use crate::hcall::op;
use crate::memory::Memory;
use crate::platform::Platform;
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
    /// Calls handled so far.
    pub calls: u64,
}

/// Most argument cells a trace line shows.
const TRACE_CELLS: u32 = 16;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Self {
        let vty = Vty::new();
        vty.set_vtermno(config.vtermno);
        Runtime {
            config,
            vty,
            calls: 0,
        }
    }

    /// Handle the RTAS call whose argument block is at `args`.
    pub fn handle<P: Platform + ?Sized>(&mut self, p: &mut P, args: u64) {
        self.calls += 1;
        let Ok(token) = p.read_be32(args) else { return };
        // Everything is forwarded for now; the DMA-window calls join here.
        p.hcall(op::KVMPPC_H_RTAS, &[args]);
        if self.config.trace {
            self.trace(p, token, args);
        }
    }

    /// `rtas: NAME(arg arg ...) = ret ret ...` (hex, as Linux prints RTAS values).
    fn trace<P: Platform + ?Sized>(&self, p: &mut P, token: u32, args: u64) {
        let nargs = p.read_be32(args + 4).unwrap_or(0).min(TRACE_CELLS);
        let nret = p.read_be32(args + 8).unwrap_or(0).min(TRACE_CELLS);
        let mut line = String::new();
        let _ = match self.config.token_name(token) {
            Some(n) => write!(line, "rtas: {n}("),
            None => write!(line, "rtas: token {token:#x}("),
        };
        for i in 0..nargs {
            let v = p.read_be32(args + 12 + 4 * i as u64).unwrap_or(0);
            let _ = write!(line, "{}{v:x}", if i > 0 { " " } else { "" });
        }
        line.push_str(") =");
        for i in 0..nret {
            let v = p.read_be32(args + 12 + 4 * (nargs + i) as u64).unwrap_or(0);
            let _ = write!(line, " {}", v as i32);
        }
        line.push('\n');
        let mut w = VtyWriter {
            vty: &self.vty,
            hv: p,
        };
        let _ = w.write_str(&line);
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
            "rtas: ibm,read-pci-config(1000 8000000 20000000 4) = -3 0\r\n"
        );
    }
}
