//! Kernel modules for the initramfs without kmod: finding a module by name in
//! an extracted `lib/modules/<release>` tree, reading its `.modinfo` section
//! (NUL-separated `key=value` strings; `depends=` lists the modules it needs,
//! comma-separated), and ordering a set of modules so each comes after what it
//! depends on.  Debian's packages ship no `modules.dep`, so this replaces
//! depmod.  Compressed modules (`.ko.xz`, `.ko.gz`) are decompressed here, on
//! the host, because busybox's `insmod` passes the file to the kernel as is.

use object::{Object, ObjectSection};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Module names treat `-` and `_` alike; this is the `_` spelling.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// All module files below a `lib/modules/<release>` directory, by
/// normalized module name.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    pub dir: PathBuf,
    pub by_name: BTreeMap<String, PathBuf>,
}

/// The module name of a file name: `nvme-core.ko.xz` -> `nvme_core`.
fn module_name(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.gz"))
        .or_else(|| file.strip_suffix(".ko.zst"))?;
    Some(normalize(stem))
}

impl ModuleIndex {
    pub fn scan(dir: &Path) -> Result<ModuleIndex, String> {
        let mut idx = ModuleIndex {
            dir: dir.to_path_buf(),
            by_name: BTreeMap::new(),
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            for ent in rd {
                let ent = ent.map_err(|e| format!("{}: {e}", d.display()))?;
                let ft = ent.file_type().map_err(|e| e.to_string())?;
                let p = ent.path();
                if ft.is_dir() {
                    stack.push(p);
                } else if let Some(n) = ent.file_name().to_str().and_then(module_name) {
                    idx.by_name.insert(n, p);
                }
            }
        }
        if idx.by_name.is_empty() {
            return Err(format!("no kernel modules below {}", dir.display()));
        }
        Ok(idx)
    }

    pub fn path(&self, name: &str) -> Option<&PathBuf> {
        self.by_name.get(&normalize(name))
    }

    /// `names` and everything they depend on, dependencies first.
    pub fn load_order(&self, names: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        let mut visiting = Vec::new();
        for n in names {
            self.visit(&normalize(n), &mut order, &mut done, &mut visiting)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<(String, PathBuf)>,
        done: &mut HashSet<String>,
        visiting: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(format!(
                "module dependency cycle: {} -> {name}",
                visiting.join(" -> ")
            ));
        }
        let path = self.path(name).ok_or_else(|| {
            let via = if visiting.is_empty() {
                String::new()
            } else {
                format!(" (needed by {})", visiting.join(" -> "))
            };
            format!("module {name} not found in {}{via}", self.dir.display())
        })?;
        let bytes = read_module(path)?;
        visiting.push(name.to_string());
        for dep in depends(&bytes)? {
            self.visit(&normalize(&dep), order, done, visiting)?;
        }
        visiting.pop();
        done.insert(name.to_string());
        order.push((name.to_string(), path.clone()));
        Ok(())
    }
}

/// A module's bytes, decompressed according to its file name.
pub fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let raw = std::fs::read(path).map_err(|e| err(&e))?;
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        Ok(raw)
    } else if name.ends_with(".ko.xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| err(&format!("xz: {e:?}")))?;
        Ok(out)
    } else if name.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| err(&e))?;
        Ok(out)
    } else {
        Err(err(
            &"unsupported module compression (only .ko, .ko.xz, .ko.gz)",
        ))
    }
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn modinfo(module: &[u8]) -> Result<Vec<(String, String)>, String> {
    let file = object::File::parse(module).map_err(|e| format!("not an ELF module: {e}"))?;
    let sec = file
        .section_by_name(".modinfo")
        .ok_or("module has no .modinfo section")?;
    let data = sec.data().map_err(|e| format!(".modinfo: {e}"))?;
    Ok(data
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

/// The modules named by `depends=` (empty when it is empty or absent).
pub fn depends(module: &[u8]) -> Result<Vec<String>, String> {
    Ok(modinfo(module)?
        .into_iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("nvme-core.ko.xz").as_deref(), Some("nvme_core"));
        assert_eq!(module_name("crc64.ko").as_deref(), Some("crc64"));
        assert_eq!(module_name("Makefile"), None);
        assert_eq!(normalize("crc-t10dif"), "crc_t10dif");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(modinfo(b"not an elf").is_err());
        assert!(depends(&[0x7f, b'E', b'L', b'F', 2, 1, 1]).is_err());
    }
}
