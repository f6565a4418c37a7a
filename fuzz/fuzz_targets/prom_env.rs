//! Firmware options from NVRAM (`-prom-env`): arbitrary NVRAM images through
//! `Options::from_nvram`, every option through the typed getters, the
//! DMA-window personality (`DdwPolicy::from_options`, `parse_option`), its
//! round trip through `to_options`, and the configuration the firmware hands
//! the resident RTAS (`DdwConfig`, `RuntimeConfig`), which must decode to
//! what was encoded and fit the runtime's configuration block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use papr_fw::options::Options;
use papr_fw::rtas::ddw::{DdwConfig, DdwPlatform, DdwTokens, DefaultWindow, PeConfig};
use papr_fw::rtas::policy::{DdwPolicy, KEYS};
use papr_fw::rtas::runtime::{RuntimeConfig, CONFIG_SIZE};

fuzz_target!(|data: &[u8]| {
    // An NVRAM image whose first partition header may be forced valid, so
    // the fuzzer reaches the KEY=VALUE strings quickly.
    let mut nvram = data.to_vec();
    if nvram.len() >= 16 && nvram[0] & 1 == 1 {
        nvram[0] = 0x70;
        nvram[4..16].copy_from_slice(b"system\0\0\0\0\0\0");
        let len = (nvram.len() / 16) as u16;
        nvram[2..4].copy_from_slice(&len.to_be_bytes());
    }
    let opts = Options::from_nvram(&nvram);
    let _ = opts.to_string();
    for (k, _) in opts.iter() {
        let _ = (opts.flag(k), opts.number(k), opts.get(k));
    }
    let _ = opts.unknown().count();

    match DdwPolicy::from_options(opts.iter()) {
        Ok(policy) => {
            // The options a policy prints read back to the same policy.
            let text = policy.to_options();
            let mut again = DdwPolicy::default();
            for o in text.split_whitespace() {
                let (k, v) = o.split_once('=').expect("KEY=VALUE");
                assert_eq!(again.parse_option(k, v), Ok(true), "{o}");
            }
            assert_eq!(again, policy, "to_options round trip: {text}");
            // What the firmware writes into the resident RTAS.
            let ddw = DdwConfig {
                platform: DdwPlatform {
                    tokens: DdwTokens::QEMU,
                    pes: vec![PeConfig {
                        buid: 0x0800_0000_2000_0000,
                        default_window: DefaultWindow {
                            liobn: 0x8000_0000,
                            bus_addr: 0,
                            size: 1 << 30,
                        },
                        config_addrs: None,
                        dma64_addr: None,
                    }],
                },
                policy: policy.clone(),
            };
            let enc = ddw.encode();
            assert_eq!(
                DdwConfig::decode(&enc).as_ref(),
                Some(&ddw),
                "DdwConfig round trip"
            );
            let rc = RuntimeConfig {
                vtermno: 0x7100_0000,
                ram_limit: 1 << 31,
                trace: policy.trace,
                token_names: papr_fw::fake::QEMU_RTAS_TOKENS
                    .iter()
                    .map(|(n, t)| (*t, n.to_string()))
                    .collect(),
                ddw: enc,
            };
            let raw = rc.encode();
            assert_eq!(
                RuntimeConfig::decode(&raw).as_ref(),
                Some(&rc),
                "RuntimeConfig round trip"
            );
            assert!(
                raw.len() <= CONFIG_SIZE,
                "an accepted personality does not fit the resident RTAS configuration ({} bytes)",
                raw.len()
            );
        }
        Err(e) => assert!(!e.is_empty()),
    }
    // Single options straight to the parser.
    if let Ok(s) = core::str::from_utf8(data) {
        let mut p = DdwPolicy::default();
        for line in s.split('\n').take(8) {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            let key = KEYS.iter().find(|x| **x == k).copied().unwrap_or(k);
            let before = p.clone();
            match p.parse_option(key, v) {
                Ok(_) => {}
                Err(msg) => {
                    assert!(msg.starts_with(&format!("{key}=")), "{msg}");
                    assert_eq!(p, before, "a refused value changed the policy");
                }
            }
        }
    }
});
