//! Where the harness finds the repository, build outputs, QEMU binaries and its
//! download cache.

use std::path::PathBuf;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Downloads and extracted packages (QEMU 10.0, guest kernels, busybox):
/// `$PAPR_CACHE`, else `$XDG_CACHE_HOME/papr-fw`, else `~/.cache/papr-fw`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PAPR_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("papr-fw");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/papr-fw")
}

/// The firmware ELF and flat image `cargo fw` produces.
pub fn firmware_elf() -> PathBuf {
    target_dir().join("powerpc64-papr-none/release/papr-fw")
}

pub fn firmware_bin() -> PathBuf {
    target_dir().join("powerpc64-papr-none/release/papr-fw.bin")
}
