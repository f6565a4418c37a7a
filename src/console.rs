//! The firmware console: a PAPR virtual terminal (LoPAPR §14.14.2,
//! H_PUT_TERM_CHAR / H_GET_TERM_CHAR; QEMU pseries contract §1.7, §3.2) behind
//! the `log` facade.
//!
//! Until the tree names the vty, the vtermno is 0, which QEMU accepts as "the
//! lowest vty" (`vty_lookup`).  `\n` goes out as `\r\n`.

use crate::hcall::{self, Hypervisor};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Where console output goes.
pub struct Vty {
    vtermno: AtomicU64,
    /// Output suppressed (after hand-over the OS owns the terminal).
    muted: AtomicBool,
}

impl Vty {
    pub const fn new() -> Self {
        Vty {
            vtermno: AtomicU64::new(0),
            muted: AtomicBool::new(false),
        }
    }

    pub fn vtermno(&self) -> u64 {
        self.vtermno.load(Ordering::Relaxed)
    }

    pub fn set_vtermno(&self, v: u64) {
        self.vtermno.store(v, Ordering::Relaxed)
    }

    pub fn set_muted(&self, m: bool) {
        self.muted.store(m, Ordering::Relaxed)
    }

    /// Write raw bytes (no newline translation), 16 per hypercall.  A busy
    /// terminal is retried a bounded number of times; a failing one drops output
    /// rather than hanging the firmware: the first chunk it refuses (an error,
    /// or still busy after the retries) ends the write.  Returns the bytes the
    /// terminal took (all of them when muted: dropping is the point).
    pub fn write_raw<H: Hypervisor + ?Sized>(&self, hv: &mut H, bytes: &[u8]) -> usize {
        if self.muted.load(Ordering::Relaxed) {
            return bytes.len();
        }
        let v = self.vtermno();
        let mut done = 0;
        for chunk in bytes.chunks(16) {
            let mut taken = false;
            for _ in 0..1000 {
                match hcall::put_term_chars(hv, v, chunk) {
                    Ok(()) => {
                        taken = true;
                        break;
                    }
                    Err(e) if e.rc == hcall::rc::H_BUSY => continue,
                    Err(_) => break,
                }
            }
            if !taken {
                break;
            }
            done += chunk.len();
        }
        done
    }

    /// Write text, turning `\n` into `\r\n`.
    pub fn write_text<H: Hypervisor + ?Sized>(&self, hv: &mut H, text: &[u8]) {
        let mut buf = [0u8; 16];
        let mut n = 0;
        for &b in text {
            if b == b'\n' {
                if n + 2 > buf.len() {
                    self.write_raw(hv, &buf[..n]);
                    n = 0;
                }
                buf[n] = b'\r';
                buf[n + 1] = b'\n';
                n += 2;
            } else {
                if n == buf.len() {
                    self.write_raw(hv, &buf[..n]);
                    n = 0;
                }
                buf[n] = b;
                n += 1;
            }
        }
        if n > 0 {
            self.write_raw(hv, &buf[..n]);
        }
    }
}

impl Default for Vty {
    fn default() -> Self {
        Self::new()
    }
}

/// `fmt::Write` adapter over a [`Vty`] and a hypervisor.
pub struct VtyWriter<'a, H: Hypervisor + ?Sized> {
    pub vty: &'a Vty,
    pub hv: &'a mut H,
}

impl<H: Hypervisor + ?Sized> fmt::Write for VtyWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.vty.write_text(self.hv, s.as_bytes());
        Ok(())
    }
}

/// The firmware's logger: every record goes to the vty, prefixed by its level
/// (info lines carry no prefix so console markers stay readable).
pub struct VtyLogger<H> {
    pub vty: &'static Vty,
    level: AtomicUsize,
    _hv: core::marker::PhantomData<fn() -> H>,
}

impl<H> VtyLogger<H> {
    pub const fn new(vty: &'static Vty) -> Self {
        VtyLogger {
            vty,
            level: AtomicUsize::new(log::LevelFilter::Info as usize),
            _hv: core::marker::PhantomData,
        }
    }

    pub fn set_level(&self, level: log::LevelFilter) {
        self.level.store(level as usize, Ordering::Relaxed);
        log::set_max_level(level);
    }
}

/// The prefix a log line carries.
pub fn level_prefix(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR: ",
        log::Level::Warn => "WARNING: ",
        log::Level::Info => "",
        log::Level::Debug => "debug: ",
        log::Level::Trace => "trace: ",
    }
}

impl<H: Hypervisor + Default> log::Log for VtyLogger<H> {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        (metadata.level() as usize) <= self.level.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        use fmt::Write;
        let mut hv = H::default();
        let mut w = VtyWriter {
            vty: self.vty,
            hv: &mut hv,
        };
        let _ = writeln!(w, "{}{}", level_prefix(record.level()), record.args());
    }

    fn flush(&self) {}
}

/// The firmware's console.
pub static VTY: Vty = Vty::new();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcall::HcallReturn;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct Term {
        out: Vec<u8>,
        calls: usize,
        busy: usize,
    }
    impl Hypervisor for Term {
        fn hcall(&mut self, op: u64, a: &[u64]) -> HcallReturn {
            assert_eq!(op, hcall::op::H_PUT_TERM_CHAR);
            assert_eq!(a[0], 0x71000000);
            if self.busy > 0 {
                self.busy -= 1;
                return HcallReturn {
                    rc: hcall::rc::H_BUSY,
                    ret: [0; 9],
                };
            }
            self.calls += 1;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&a[2].to_be_bytes());
            b[8..].copy_from_slice(&a[3].to_be_bytes());
            self.out.extend_from_slice(&b[..a[1] as usize]);
            HcallReturn::default()
        }
    }

    #[test]
    fn newlines_become_crlf_and_chunks_fill_16() {
        let vty = Vty::new();
        vty.set_vtermno(0x71000000);
        let mut t = Term::default();
        vty.write_text(&mut t, b"papr-fw\nline two is a little longer\n");
        assert_eq!(t.out, b"papr-fw\r\nline two is a little longer\r\n");
        assert_eq!(t.calls, 3);
        let mut t = Term {
            busy: 2,
            ..Default::default()
        };
        vty.write_text(&mut t, b"x");
        assert_eq!(t.out, b"x");
        vty.set_muted(true);
        vty.write_text(&mut t, b"gone");
        assert_eq!(t.out, b"x");
    }

    #[test]
    fn a_terminal_that_stays_busy_ends_the_write_and_says_how_much_went_out() {
        let vty = Vty::new();
        vty.set_vtermno(0x71000000);
        let mut t = Term::default();
        assert_eq!(vty.write_raw(&mut t, &[b'a'; 40]), 40);
        // Busy beyond the retries on the first chunk: nothing taken, and the
        // other chunks are not tried (no 1000 retries per 16 bytes).
        let mut t = Term {
            busy: 5000,
            ..Default::default()
        };
        assert_eq!(vty.write_raw(&mut t, &[b'b'; 4096]), 0);
        assert_eq!(t.busy, 4000, "one chunk's worth of retries");
        // Busy for a while: the write goes through.
        let mut t = Term {
            busy: 999,
            ..Default::default()
        };
        assert_eq!(vty.write_raw(&mut t, &[b'c'; 20]), 20);
        assert_eq!(t.out.len(), 20);
    }
}
