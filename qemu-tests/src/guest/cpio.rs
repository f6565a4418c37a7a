//! Writing an initramfs: the "newc" cpio format (`070701` headers) as the
//! kernel's `init/initramfs.c` unpacks it, so no host `cpio` is needed.
//!
//! Each entry is a 110-byte ASCII header (magic and thirteen 8-digit hex
//! fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize, check), the NUL-terminated name padded to a
//! multiple of 4, then the data padded to a multiple of 4.  The archive ends
//! with an entry named `TRAILER!!!`.  Everything is owned by root with mtime 0,
//! so the same inputs give the same bytes.

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being written; parent directories are added on demand.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let fields = [
            self.next_ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Archive names have no leading slash.
    fn clean(path: &str) -> String {
        path.trim_start_matches('/')
            .trim_end_matches('/')
            .to_string()
    }

    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            if !self.dirs.contains(&acc) {
                let d = acc.clone();
                self.dir_entry(&d, 0o755);
            }
        }
    }

    fn dir_entry(&mut self, path: &str, perm: u32) {
        self.dirs.insert(path.to_string());
        self.entry(path, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: &str, perm: u32) {
        let path = Self::clean(path);
        self.parents(&path);
        if !self.dirs.contains(&path) {
            self.dir_entry(&path, perm);
        }
    }

    /// A regular file with `perm` (e.g. 0o755).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        let path = Self::clean(path);
        self.parents(&path);
        self.entry(&path, S_IFREG | perm, 1, (0, 0), data);
    }

    /// A symbolic link `path -> target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = Self::clean(path);
        self.parents(&path);
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        let path = Self::clean(path);
        self.parents(&path);
        self.entry(&path, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.buf
    }
}

/// One entry read back from an archive (for tests and diagnostics).
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Read a newc archive back (up to the trailer).
pub fn parse(mut b: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let total = b.len();
    let hex = |s: &[u8]| -> Result<u32, String> {
        let s = std::str::from_utf8(s).map_err(|e| e.to_string())?;
        u32::from_str_radix(s, 16).map_err(|e| format!("bad hex field {s:?}: {e}"))
    };
    let align = |off: usize| (off + 3) & !3;
    loop {
        let at = total - b.len();
        if b.len() < 110 || &b[..6] != b"070701" {
            return Err(format!("no newc header at offset {at}"));
        }
        let field = |i: usize| hex(&b[6 + 8 * i..14 + 8 * i]);
        let mode = field(1)?;
        let size = field(6)? as usize;
        let rdev = (field(9)?, field(10)?);
        let namesize = field(11)? as usize;
        let name_end = 110 + namesize;
        if namesize == 0 || b.len() < name_end {
            return Err(format!("truncated name at offset {at}"));
        }
        let name = String::from_utf8_lossy(&b[110..name_end - 1]).into_owned();
        let data_start = align(at + name_end) - at;
        let data_end = data_start + size;
        if b.len() < data_end {
            return Err(format!("truncated data of {name} at offset {at}"));
        }
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(Entry {
            name,
            mode,
            rdev,
            data: b[data_start..data_end].to_vec(),
        });
        b = &b[(align(at + data_end) - at).min(b.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_parents_and_alignment() {
        let mut c = Cpio::new();
        c.file("/bin/busybox", 0o755, b"ELF!x");
        c.symlink("bin/sh", "busybox");
        c.char_dev("/dev/console", 0o600, 5, 1);
        c.dir("/proc", 0o755);
        c.file("etc/papr/config", 0o644, b"A=1\n");
        let a = c.finish();
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "proc",
                "etc",
                "etc/papr",
                "etc/papr/config"
            ]
        );
        assert_eq!(e[1].mode, 0o100755);
        assert_eq!(e[1].data, b"ELF!x");
        assert_eq!(e[2].mode, 0o120777);
        assert_eq!(e[2].data, b"busybox");
        assert_eq!(e[4].mode, 0o020600);
        assert_eq!(e[4].rdev, (5, 1));
        assert_eq!(e[0].mode, 0o040755);
        assert_eq!(e[8].data, b"A=1\n");
    }

    #[test]
    fn header_is_exact() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"xy");
        let a = c.finish();
        let h = std::str::from_utf8(&a[..110]).unwrap();
        let want = [
            "070701",   // magic
            "00000001", // ino
            "000081a4", // mode: regular file, 0644
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000002", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000002", // namesize, with the NUL
            "00000000", // check
        ]
        .concat();
        assert_eq!(h, want);
        // name "a\0" ends at 112 (aligned), data "xy" + 2 bytes of padding.
        assert_eq!(&a[110..116], b"a\0xy\0\0");
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"0123456789");
        let a = c.finish();
        assert!(parse(&a[..115]).is_err());
        assert!(parse(b"garbage").is_err());
    }
}
