//! Firmware options: the `-prom-env KEY=VALUE` pairs QEMU stores in the NVRAM
//! "system" partition (CHRP NVRAM partition format, as written by QEMU's
//! hw/nvram/chrp_nvram.c; QEMU pseries contract §11), read with RTAS
//! `nvram-fetch`.
//!
//! Partition header (16 bytes): signature, header checksum, big-endian length
//! in 16-byte units (header included), 12-byte NUL-padded name.  The system
//! partition (signature 0x70) holds NUL-terminated `KEY=VALUE` strings ended by
//! an empty string.  Every known key is listed in [`KNOWN`] with its meaning;
//! unknown keys are kept and reported so a typo is visible on the console.

use crate::platform::Platform;
use crate::rtas;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// CHRP partition signatures.
pub const SIG_SYSTEM: u8 = 0x70;
pub const SIG_FREE: u8 = 0x7f;

/// An option papr-fw understands: key, default shown in the summary, meaning.
pub struct KnownOption {
    pub key: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every option papr-fw reads.  Standard IEEE 1275 configuration variables that
/// SLOF users pass (boot-device, …) are accepted too.
pub const KNOWN: &[KnownOption] = &[
    KnownOption {
        key: "log-level",
        default: "info",
        help: "console verbosity: error, warn, info, debug, trace",
    },
    KnownOption {
        key: "debug-exception",
        default: "off",
        help: "force an exception at boot (tests the interrupt report): program, dsi, or off",
    },
    KnownOption {
        key: "dma-selftest",
        default: "off",
        help: "run the NVMe DMA self-test through the default and a dynamic window",
    },
    KnownOption {
        key: "dma-selftest-lba",
        default: "2048",
        help: "first LBA of the scratch region the DMA self-test overwrites",
    },
    KnownOption {
        key: "tce-audit",
        default: "off",
        help: "before the boot-time TCE clear, count the entries and windows left mapped (reboot soak)",
    },
    KnownOption {
        key: "tce-bench",
        default: "off",
        help: "measure TCE mapping throughput at boot",
    },
    KnownOption {
        key: "ddw-max-windows",
        default: "platform",
        help: "most DMA windows a PE offers (1 = an SR-IOV VF on PowerVM)",
    },
    KnownOption {
        key: "ddw-page-sizes",
        default: "platform",
        help: "mask of DDW page sizes offered (LoPAPR query bits)",
    },
    KnownOption {
        key: "ddw-max-window-shift",
        default: "platform",
        help: "cap the largest DDW block (log2 of bytes)",
    },
    KnownOption {
        key: "ddw-lam",
        default: "off",
        help: "advertise and implement the limited-address-mode DDW extension",
    },
    KnownOption {
        key: "ddw-inject",
        default: "none",
        help: "inject DDW failures: CALL:KIND[:COUNT], e.g. create:busy:3",
    },
    KnownOption {
        key: "rtas-trace",
        default: "off",
        help: "print every RTAS call the resident RTAS handles",
    },
    KnownOption {
        key: "boot-device",
        default: "",
        help: "IEEE 1275: devices to boot from",
    },
    KnownOption {
        key: "boot-file",
        default: "",
        help: "IEEE 1275: file or arguments to boot",
    },
    KnownOption {
        key: "boot-command",
        default: "",
        help: "IEEE 1275: accepted for compatibility with SLOF, ignored",
    },
    KnownOption {
        key: "auto-boot?",
        default: "true",
        help: "IEEE 1275: accepted for compatibility with SLOF",
    },
    KnownOption {
        key: "diag-switch?",
        default: "false",
        help: "IEEE 1275: accepted for compatibility with SLOF, ignored",
    },
];

/// The options in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pairs: Vec<(String, String)>,
}

/// Why the NVRAM could not be read; options then keep their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvramError {
    Rtas(rtas::RtasError),
    /// nvram-fetch returned a failing status.
    Status(i32),
    NoMemory,
}

impl fmt::Display for NvramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvramError::Rtas(e) => write!(f, "{e}"),
            NvramError::Status(s) => write!(f, "nvram-fetch returned {s}"),
            NvramError::NoMemory => write!(f, "no memory for the NVRAM buffer"),
        }
    }
}

impl Options {
    /// Options from `KEY=VALUE` strings (later pairs override earlier ones).
    pub fn from_pairs<'a, I: IntoIterator<Item = &'a str>>(pairs: I) -> Self {
        let mut o = Options::default();
        for p in pairs {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            o.set(k.trim(), v.trim());
        }
        o
    }

    pub fn set(&mut self, key: &str, value: &str) {
        if key.is_empty() {
            return;
        }
        match self.pairs.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value.to_string(),
            None => self.pairs.push((key.to_string(), value.to_string())),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean option: on/true/yes/1 or off/false/no/0; anything else is an error.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_flag(v).ok_or_else(|| alloc::format!("{key}={v}: expected on or off")),
        }
    }

    /// A number (decimal, or hex with 0x).
    pub fn number(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_number(v)
                .map(Some)
                .ok_or_else(|| alloc::format!("{key}={v}: expected a number")),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Keys papr-fw does not know.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !KNOWN.iter().any(|o| o.key == *k))
    }

    /// Parse the CHRP partitions of an NVRAM image and return the options of
    /// its system partition.  Garbage (bad lengths, no system partition) gives
    /// no options rather than an error: an NVRAM backed by a user's drive may
    /// hold anything.
    pub fn from_nvram(nvram: &[u8]) -> Self {
        let mut off = 0usize;
        while off + 16 <= nvram.len() {
            let h = &nvram[off..off + 16];
            let len = u16::from_be_bytes([h[2], h[3]]) as usize * 16;
            if len < 16 || off + len > nvram.len() {
                break;
            }
            if h[0] == SIG_SYSTEM && &h[4..10] == b"system" && h[10..16].iter().all(|b| *b == 0) {
                let body = &nvram[off + 16..off + len];
                let strings = body
                    .split(|b| *b == 0)
                    .take_while(|s| !s.is_empty())
                    .filter_map(|s| core::str::from_utf8(s).ok());
                return Options::from_pairs(strings);
            }
            off += len;
        }
        Options::default()
    }

    /// Read the options with RTAS `nvram-fetch` (token `token`, NVRAM of
    /// `nvram_size` bytes; at most 64 KiB are read).
    pub fn fetch<P: Platform + ?Sized>(
        p: &mut P,
        token: u32,
        nvram_size: u32,
    ) -> Result<Self, NvramError> {
        Ok(Options::from_nvram(&fetch_image(p, token, nvram_size)?))
    }
}

/// The NVRAM's contents (at most 64 KiB), read with RTAS `nvram-fetch`.
pub fn fetch_image<P: Platform + ?Sized>(
    p: &mut P,
    token: u32,
    nvram_size: u32,
) -> Result<Vec<u8>, NvramError> {
    transfer(p, token, nvram_size, None)
}

/// Write `image` to the start of the NVRAM with RTAS `nvram-store`.
pub fn store_image<P: Platform + ?Sized>(
    p: &mut P,
    token: u32,
    image: &[u8],
) -> Result<(), NvramError> {
    transfer(p, token, image.len() as u32, Some(image)).map(|_| ())
}

/// One nvram-fetch or nvram-store of the first `size` bytes (max 64 KiB)
/// through a firmware buffer.
fn transfer<P: Platform + ?Sized>(
    p: &mut P,
    token: u32,
    size: u32,
    data: Option<&[u8]>,
) -> Result<Vec<u8>, NvramError> {
    let size = (size as u64).min(0x10000);
    if size < 16 {
        return Ok(Vec::new());
    }
    let buf = p.alloc_phys(size, 4096).ok_or(NvramError::NoMemory)?;
    let result = (|| {
        if let Some(d) = data {
            p.write(buf, &d[..size as usize])
                .map_err(|e| NvramError::Rtas(rtas::RtasError::Memory(e)))?;
        }
        let mut rets = [0u32; 2];
        let block = p.scratch();
        let st = rtas::call(p, block, token, &[0, buf as u32, size as u32], &mut rets)
            .map_err(NvramError::Rtas)?;
        if st != 0 {
            return Err(NvramError::Status(st));
        }
        let mut image = alloc::vec![0u8; size as usize];
        if data.is_none() {
            p.read(buf, &mut image)
                .map_err(|e| NvramError::Rtas(rtas::RtasError::Memory(e)))?;
        }
        Ok(image)
    })();
    p.free_phys(buf, size, 4096);
    result
}

/// The CHRP NVRAM partition header checksum: bytes 0 and 2..16 summed with
/// end-around carry (byte 1 holds it).
pub fn header_checksum(h: &[u8]) -> u8 {
    let mut sum: u32 = h[0] as u32;
    for b in &h[2..16] {
        sum += *b as u32;
        sum = (sum + (sum >> 8)) & 0xff;
    }
    sum as u8
}

/// Whether the NVRAM starts with a valid partition header (a blank NVRAM —
/// QEMU's without `-prom-env` or a backing drive — does not).
pub fn has_partitions(nvram: &[u8]) -> bool {
    if nvram.len() < 16 {
        return false;
    }
    let h = &nvram[..16];
    let len = u16::from_be_bytes([h[2], h[3]]) as usize * 16;
    len >= 16 && len <= nvram.len() && h[1] == header_checksum(h)
}

/// A formatted NVRAM of `size` bytes as QEMU lays out `-prom-env` (and SLOF
/// formats a blank one): an empty "system" partition of 2 KiB at 0, then a
/// "free" partition to the end, where the OS creates its own partitions
/// (Linux: `ibm,rtas-log`).
pub fn blank_layout(size: usize) -> Vec<u8> {
    let mut v = alloc::vec![0u8; size];
    if size < 2048 + 16 {
        return v;
    }
    let mut header = |at: usize, sig: u8, len: usize, name: &[u8]| {
        v[at] = sig;
        v[at + 2..at + 4].copy_from_slice(&((len / 16) as u16).to_be_bytes());
        v[at + 4..at + 4 + name.len()].copy_from_slice(name);
        v[at + 1] = header_checksum(&v[at..at + 16]);
    };
    header(0, SIG_SYSTEM, 2048, b"system");
    header(2048, SIG_FREE, (size - 2048) & !15, b"free");
    v
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pairs.is_empty() {
            return write!(f, "(none: plain QEMU behaviour)");
        }
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

pub fn parse_flag(v: &str) -> Option<bool> {
    match v {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakePlatform;

    #[test]
    fn qemu_prom_env_layout_is_parsed() {
        let mut p = FakePlatform::new(64 << 20);
        p.set_prom_env(&[
            "dma-selftest=on",
            "ddw-max-windows=1",
            "bogus-key=3",
            "dma-selftest=off",
        ]);
        let tok = p.rtas_tokens["nvram-fetch"];
        let o = Options::fetch(&mut p, tok, 0x10000).unwrap();
        assert_eq!(o.get("dma-selftest"), Some("off"), "later pairs win");
        assert_eq!(o.number("ddw-max-windows"), Ok(Some(1)));
        assert_eq!(o.unknown().collect::<Vec<_>>(), ["bogus-key"]);
        assert_eq!(
            alloc::format!("{o}"),
            "dma-selftest=off ddw-max-windows=1 bogus-key=3"
        );
        assert_eq!(o.flag("dma-selftest"), Ok(false));
        assert!(o.flag("bogus-key").is_err());
    }

    #[test]
    fn empty_and_garbage_nvram() {
        let mut p = FakePlatform::new(64 << 20);
        let tok = p.rtas_tokens["nvram-fetch"];
        // QEMU without -prom-env still writes an empty system partition; all-zero
        // NVRAM (no partitions) gives no options either.
        assert!(Options::fetch(&mut p, tok, 0x10000).unwrap().is_empty());
        p.set_prom_env(&[]);
        assert!(Options::fetch(&mut p, tok, 0x10000).unwrap().is_empty());
        let mut junk = alloc::vec![0xffu8; 4096];
        assert!(Options::from_nvram(&junk).is_empty());
        junk[2] = 0;
        junk[3] = 1;
        assert!(Options::from_nvram(&junk).is_empty());
        assert!(Options::from_nvram(&[0x70, 0, 0]).is_empty());
        // A failing nvram-fetch is an error the caller reports.
        p.inject_rtas("nvram-fetch", -1, 1);
        assert_eq!(
            Options::fetch(&mut p, tok, 0x10000),
            Err(NvramError::Status(-1))
        );
        // An NVRAM smaller than asked: QEMU answers -3 for reads beyond its size.
        assert_eq!(
            Options::fetch(&mut p, tok, 0x20000).map(|o| o.is_empty()),
            Ok(true)
        );
    }

    #[test]
    fn blank_nvram_is_formatted_like_qemu_does() {
        let v = blank_layout(0x10000);
        assert!(has_partitions(&v));
        assert!(!has_partitions(&[0u8; 0x10000]));
        // The same bytes QEMU writes for -prom-env with no pairs (fake: QEMU 7.2's layout).
        let mut p = FakePlatform::new(64 << 20);
        p.set_prom_env(&[]);
        assert_eq!(&v[..16], &p.nvram[..16]);
        assert_eq!(&v[2048..2052], &p.nvram[2048..2052]);
        assert_eq!(&v[2052..2056], b"free");
        assert!(Options::from_nvram(&v).is_empty());
        // Round trip through nvram-store and nvram-fetch.
        let mut p = FakePlatform::new(64 << 20);
        let (store, fetch) = (p.rtas_tokens["nvram-store"], p.rtas_tokens["nvram-fetch"]);
        store_image(&mut p, store, &v).unwrap();
        assert_eq!(p.nvram, v);
        assert_eq!(fetch_image(&mut p, fetch, 0x10000).unwrap(), v);
    }

    #[test]
    fn values() {
        let o = Options::from_pairs(["a=0x10", "b=12", "c", "d=on", " e = yes "]);
        assert_eq!(o.number("a"), Ok(Some(16)));
        assert_eq!(o.number("b"), Ok(Some(12)));
        assert_eq!(o.get("c"), Some(""));
        assert_eq!(o.flag("d"), Ok(true));
        assert_eq!(o.flag("e"), Ok(true));
        assert_eq!(o.flag("zz"), Ok(false));
        assert!(o.number("d").is_err());
    }
}
