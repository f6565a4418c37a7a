//! Running QEMU with a firmware and watching its console.
//!
//! [`Machine::start`] launches `qemu-system-ppc64` with the console on stdio,
//! a reader thread collects the output with the time each byte arrived, and
//! [`Machine::expect`] waits for text with a per-step timeout — no fixed sleeps.
//! On failure the whole console log is part of the error.  Dropping a
//! `Machine` kills QEMU.
//!
//! The QEMU binary is chosen by `PAPR_QEMU`: `7.2` (Debian bookworm's
//! `/usr/bin/qemu-system-ppc64`, the default), `10.0` (bookworm-backports,
//! extracted by `qemu-tests/setup.sh` into the cache), or a path.

use crate::paths;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A QEMU to run: its binary and the directory with its own firmware blobs
/// (slof.bin, vof.bin) for the differential runs.
#[derive(Clone, Debug)]
pub struct QemuBin {
    pub label: String,
    pub binary: PathBuf,
    pub datadir: PathBuf,
}

/// Where setup.sh puts QEMU 10.0 from bookworm-backports.
pub fn qemu10_root() -> PathBuf {
    paths::cache_dir().join("qemu-10.0/root")
}

impl QemuBin {
    pub fn qemu72() -> Self {
        QemuBin {
            label: "7.2".into(),
            binary: "/usr/bin/qemu-system-ppc64".into(),
            datadir: "/usr/share/qemu".into(),
        }
    }

    pub fn qemu10() -> Self {
        let root = qemu10_root();
        QemuBin {
            label: "10.0".into(),
            binary: root.join("usr/bin/qemu-system-ppc64"),
            datadir: root.join("usr/share/qemu"),
        }
    }

    /// The QEMU selected by `PAPR_QEMU` (see the module documentation).
    pub fn selected() -> Self {
        match std::env::var("PAPR_QEMU").as_deref() {
            Err(_) | Ok("") | Ok("7.2") => Self::qemu72(),
            Ok("10.0") | Ok("10") => Self::qemu10(),
            Ok(path) => {
                let binary = PathBuf::from(path);
                let datadir = binary
                    .parent()
                    .and_then(|b| b.parent())
                    .map(|p| p.join("share/qemu"))
                    .unwrap_or_default();
                QemuBin {
                    label: path.into(),
                    binary,
                    datadir,
                }
            }
        }
    }

    /// QEMU's own version line, e.g. "QEMU emulator version 7.2.22 (...)".
    pub fn version(&self) -> String {
        Command::new(&self.binary)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_else(|e| format!("{}: {e}", self.binary.display()))
    }

    /// Major.minor of this QEMU, from `--version`.
    pub fn major_minor(&self) -> (u32, u32) {
        let v = self.version();
        let num = v.split_whitespace().nth(3).unwrap_or("0.0");
        let mut it = num.split('.').map(|x| x.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    pub fn slof(&self) -> PathBuf {
        self.datadir.join("slof.bin")
    }

    pub fn vof(&self) -> PathBuf {
        self.datadir.join("vof.bin")
    }
}

/// Which firmware a machine runs.
#[derive(Clone, Debug)]
pub enum Firmware {
    /// papr-fw (`cargo fw` output, or `PAPR_FW`).
    PaprFw,
    /// QEMU's SLOF.
    Slof,
    /// QEMU's VOF (adds `x-vof=on` to the machine).
    Vof,
    /// Any other image.
    Image(PathBuf),
}

/// The papr-fw image the tests use: `PAPR_FW`, else the `cargo fw` output.
pub fn papr_fw_image() -> PathBuf {
    let p = std::env::var_os("PAPR_FW")
        .map(PathBuf::from)
        .unwrap_or_else(paths::firmware_bin);
    assert!(
        p.exists(),
        "{} is missing: run `cargo fw` first",
        p.display()
    );
    p
}

/// A machine description: everything but the firmware and the console.
#[derive(Clone, Debug)]
pub struct Config {
    pub qemu: QemuBin,
    pub firmware: Firmware,
    /// Extra `-M pseries,...` options.
    pub machine_opts: Vec<String>,
    pub memory: String,
    pub smp: u32,
    pub args: Vec<String>,
}

impl Config {
    pub fn new() -> Self {
        Config {
            qemu: QemuBin::selected(),
            firmware: Firmware::PaprFw,
            machine_opts: Vec::new(),
            memory: "512M".into(),
            smp: 1,
            args: Vec::new(),
        }
    }

    pub fn firmware(mut self, f: Firmware) -> Self {
        self.firmware = f;
        self
    }
    pub fn memory(mut self, m: &str) -> Self {
        self.memory = m.into();
        self
    }
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }
    pub fn machine_opt(mut self, o: &str) -> Self {
        self.machine_opts.push(o.into());
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, a: I) -> Self {
        self.args
            .extend(a.into_iter().map(|s| s.as_ref().to_string()));
        self
    }
    /// `-prom-env key=value`.
    pub fn prom_env(self, kv: &str) -> Self {
        self.arg("-prom-env").arg(kv)
    }

    /// The full QEMU command line.
    pub fn command_line(&self) -> Vec<String> {
        let mut m = String::from("pseries");
        let mut opts = self.machine_opts.clone();
        let bios = match &self.firmware {
            Firmware::PaprFw => papr_fw_image(),
            Firmware::Slof => self.qemu.slof(),
            Firmware::Vof => {
                opts.push("x-vof=on".into());
                self.qemu.vof()
            }
            Firmware::Image(p) => p.clone(),
        };
        for o in &opts {
            m.push(',');
            m.push_str(o);
        }
        let mut v: Vec<String> = vec![
            "-M".into(),
            m,
            "-m".into(),
            self.memory.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-display".into(),
            "none".into(),
            "-nodefaults".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
            "-action".into(),
            "panic=exit-failure".into(),
            "-bios".into(),
            bios.display().to_string(),
        ];
        v.extend(self.args.iter().cloned());
        v
    }

    pub fn start(&self) -> Machine {
        Machine::start(&self.qemu, self.command_line())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

struct Shared {
    /// Console bytes and, for each chunk, the time it arrived and its end offset.
    bytes: Vec<u8>,
    arrivals: Vec<(Duration, usize)>,
    eof: bool,
}

/// A running QEMU.
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    started: Instant,
    cursor: usize,
    command: String,
    status: Option<ExitStatus>,
}

/// A console expectation that failed; `Display` includes the whole log.
#[derive(Debug)]
pub struct Failure {
    pub what: String,
    pub log: String,
    pub command: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- QEMU command ---\n{}\n--- console log ---\n{}\n--- end of console log ---",
            self.what, self.command, self.log
        )
    }
}

impl std::error::Error for Failure {}

impl Machine {
    pub fn start(qemu: &QemuBin, args: Vec<String>) -> Machine {
        let command = format!("{} {}", qemu.binary.display(), args.join(" "));
        let mut child = Command::new(&qemu.binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", qemu.binary.display()));
        let started = Instant::now();
        let shared = Arc::new((
            Mutex::new(Shared {
                bytes: Vec::new(),
                arrivals: Vec::new(),
                eof: false,
            }),
            Condvar::new(),
        ));
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.eof = true;
                    cv.notify_all();
                    return;
                }
                g.bytes.extend_from_slice(&buf[..n]);
                let end = g.bytes.len();
                g.arrivals.push((started.elapsed(), end));
                cv.notify_all();
            }
        });
        // QEMU's own messages (stderr) go into the same log, marked.
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let (lock, cv) = &*s;
            let mut g = lock.lock().unwrap();
            for line in text.lines() {
                if line.contains("TCG doesn't support requested feature") {
                    continue;
                }
                g.bytes
                    .extend_from_slice(format!("\n[qemu stderr] {line}\n").as_bytes());
            }
            cv.notify_all();
        });
        let stdin = child.stdin.take();
        Machine {
            child,
            stdin,
            shared,
            started,
            cursor: 0,
            command,
            status: None,
        }
    }

    /// The console so far, as text (control characters other than newlines kept).
    pub fn log(&self) -> String {
        let g = self.shared.0.lock().unwrap();
        String::from_utf8_lossy(&g.bytes).replace("\r\n", "\n")
    }

    fn failure(&self, what: String) -> Failure {
        Failure {
            what,
            log: self.log(),
            command: self.command.clone(),
        }
    }

    /// Wait until `needle` appears after everything already matched; returns
    /// the time since QEMU started at which the text began to arrive.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<Duration, Failure> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(pos) = find(&g.bytes[self.cursor..], needle.as_bytes()) {
                let start = self.cursor + pos;
                self.cursor = start + needle.len();
                let at = g
                    .arrivals
                    .iter()
                    .find(|(_, end)| *end > start)
                    .map(|(t, _)| *t)
                    .unwrap_or_else(|| self.started.elapsed());
                return Ok(at);
            }
            if g.eof {
                drop(g);
                let st = self.wait_status(Duration::from_secs(5));
                return Err(
                    self.failure(format!("QEMU exited ({st:?}) before printing {needle:?}"))
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                return Err(self.failure(format!(
                    "timed out after {:.1}s waiting for {needle:?}",
                    timeout.as_secs_f64()
                )));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// [`expect`](Self::expect) that panics with the log on failure.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, secs: u64) -> Duration {
        match self.expect(needle, Duration::from_secs(secs)) {
            Ok(t) => t,
            Err(f) => panic!("{f}"),
        }
    }

    /// Fail if `needle` appears anywhere in the log so far.
    #[track_caller]
    pub fn assert_absent(&self, needle: &str) {
        let log = self.log();
        if log.contains(needle) {
            panic!(
                "{}",
                self.failure(format!("console shows {needle:?}, which it must not"))
            );
        }
    }

    /// Wait for QEMU to exit; its exit code (None if killed by a signal).
    pub fn expect_exit(&mut self, timeout: Duration) -> Result<Option<i32>, Failure> {
        match self.wait_status(timeout) {
            Some(st) => {
                // Let the reader threads drain what is left.
                let (lock, cv) = &*self.shared;
                let g = lock.lock().unwrap();
                let _ = cv
                    .wait_timeout_while(g, Duration::from_secs(2), |g| !g.eof)
                    .unwrap();
                Ok(st.code())
            }
            None => Err(self.failure(format!(
                "QEMU still running after {:.1}s",
                timeout.as_secs_f64()
            ))),
        }
    }

    /// Wait for QEMU to exit with `code`, panicking with the log otherwise.
    #[track_caller]
    pub fn wait_exit(&mut self, code: i32, secs: u64) {
        match self.expect_exit(Duration::from_secs(secs)) {
            Ok(Some(c)) if c == code => {}
            Ok(c) => panic!(
                "{}",
                self.failure(format!("QEMU exited with {c:?}, expected {code}"))
            ),
            Err(f) => panic!("{f}"),
        }
    }

    fn wait_status(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling the child's state (not a fixed wait for an event).
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type `text` on the console.
    pub fn send(&mut self, text: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(text.as_bytes());
            let _ = s.flush();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
