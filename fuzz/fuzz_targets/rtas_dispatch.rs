//! The resident RTAS runtime (`Runtime::handle`) with papr-fw's DMA-window
//! model, over the fake platform (QEMU's PHB and DDW semantics): a fuzzed
//! personality (`ddw-*` options), then a sequence of OS calls — the four
//! DMA-window tokens and forwarded ones, with counts, BUIDs, LIOBNs, page
//! and window shifts drawn from the input, argument blocks anywhere.
//! Invariants: no panic; after every call papr-fw's model of each PE's
//! windows equals the platform's active tables (LIOBNs and bus addresses),
//! and no more than 32 result cells are written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::fake::FakePlatform;
use papr_fw::memory::Memory;
use papr_fw::rtas::ddw::{DdwConfig, DdwPlatform, DdwTokens, DefaultWindow, PeConfig};
use papr_fw::rtas::policy::{DdwPolicy, KEYS};
use papr_fw::rtas::runtime::{Runtime, RuntimeConfig};

/// Small: the sanitizer zeroes all of the fake RAM on every run.
const RAM: usize = 1 << 20;
const BLOCK: u64 = 0x4_0000;
const BUID: u64 = 0x0800_0000_2000_0000;

struct In<'a>(&'a [u8]);
impl In<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    fn str(&mut self, max: usize) -> Option<&str> {
        let n = (self.u8()? as usize).min(max).min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        core::str::from_utf8(s).ok()
    }
}

const SHIFTS: [u32; 12] = [12, 16, 21, 24, 25, 34, 0, 13, 31, 43, 63, 64];

fuzz_target!(|data: &[u8]| {
    let mut r = In(data);
    // The personality.
    let mut policy = DdwPolicy::default();
    let nopts = r.u8().unwrap_or(0) % 4;
    for _ in 0..nopts {
        let Some(k) = r.u8() else { return };
        let Some(v) = r.str(40) else { return };
        let _ = policy.parse_option(KEYS[k as usize % KEYS.len()], v);
    }
    let flags = r.u8().unwrap_or(0);
    let config_addrs = (flags & 1 != 0).then(|| vec![0x0000, 0x0800, 0x1000]);
    let ddw = DdwConfig {
        platform: DdwPlatform {
            tokens: DdwTokens::QEMU,
            pes: vec![PeConfig {
                buid: BUID,
                default_window: DefaultWindow {
                    liobn: 0x8000_0000,
                    bus_addr: 0,
                    size: 1 << 30,
                },
                config_addrs,
                dma64_addr: None,
            }],
        },
        policy,
    };
    let config = RuntimeConfig {
        vtermno: 0x7100_0000,
        ram_limit: RAM as u64,
        trace: flags & 2 != 0,
        token_names: vec![(0x2026, "ibm,query-pe-dma-window".into())],
        ddw: ddw.encode(),
    };
    assert_eq!(
        DdwConfig::decode(&config.ddw).as_ref(),
        Some(&ddw),
        "config round trip"
    );
    let mut rt = Runtime::new(config);
    let mut p = FakePlatform::new(RAM);
    let mut liobns = vec![0x8000_0000u32, 0x8000_0001, 0, 0xffff_ffff];

    for _ in 0..48 {
        let Some(op) = r.u8() else { break };
        let (token, want_in, want_out) = match op % 8 {
            0 => (0x2026, 3, 5 + (op >> 7) as u32),
            1 | 2 => (0x2027, 5, 4),
            3 => (0x2028, 1, 1),
            4 => (0x2029, 3, 1),
            5 => (0x2001, 0, 8),
            6 => (0x2003 + (op as u32 >> 3) % 0x30, 2, 1),
            _ => (r.u32().unwrap_or(0), 3, 1),
        };
        let sel = r.u8().unwrap_or(0);
        let nargs = if sel & 0x0f == 0 {
            r.u32().unwrap_or(0) % 40
        } else {
            want_in
        };
        let nret = if sel & 0xf0 == 0 {
            r.u32().unwrap_or(0)
        } else {
            want_out
        };
        let mut args = Vec::new();
        for i in 0..nargs.min(16) {
            let k = r.u8().unwrap_or(0);
            let v = match (token, i, k % 4) {
                (_, _, 3) => r.u32().unwrap_or(0),
                (0x2028, 0, _) => liobns[k as usize / 4 % liobns.len()],
                (_, 1, _) => (BUID >> 32) as u32,
                (_, 2, _) => BUID as u32 ^ (k as u32 >> 6),
                (0x2027, 3, _) | (0x2027, 4, _) => {
                    SHIFTS[k as usize / 4 % SHIFTS.len()] + (i - 3) * (k as u32 % 5) * 4
                }
                _ => k as u32 >> 2,
            };
            args.push(v);
        }
        let block = if sel == 0xff {
            (r.u32().unwrap_or(0) as u64) & 0x1f_ffff
        } else {
            BLOCK
        };
        let mut bytes = Vec::new();
        for c in [token, nargs, nret].iter().chain(&args) {
            bytes.extend_from_slice(&c.to_be_bytes());
        }
        let _ = p.mem.write(block, &bytes);
        // A guard after the 32 result cells the runtime may write.
        let guard = block + 12 + 4 * nargs as u64 + 128;
        let _ = p.mem.fill(guard, 64, 0xa5);
        rt.handle(&mut p, block);
        let mut g = [0u8; 64];
        if block == BLOCK && p.mem.read(guard, &mut g).is_ok() && token >= 0x2026 && token <= 0x2029
        {
            assert!(
                g.iter().all(|b| *b == 0xa5),
                "more than 32 result cells written"
            );
        }
        if token == 0x2027 {
            if let Ok(l) = p.mem.read_be32(block + 12 + 4 * nargs as u64 + 4) {
                if liobns.len() < 16 {
                    liobns.push(l);
                }
            }
        }
        // The model and the platform agree.
        if let Some(ddw) = rt.ddw.as_ref() {
            let pe = ddw.pe(BUID).expect("the PE");
            let mut model: Vec<(u32, u64)> = pe.windows().map(|w| (w.liobn, w.bus_addr)).collect();
            model.sort();
            let phb = &p.phbs[0];
            let mut platform: Vec<(u32, u64)> = phb
                .tables
                .iter()
                .filter(|t| t.enabled())
                .map(|t| (t.liobn, t.bus_offset))
                .collect();
            platform.sort();
            assert_eq!(
                model, platform,
                "papr-fw's window model differs from the platform"
            );
        }
    }
});
