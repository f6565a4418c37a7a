//! IEEE 1275 device paths (IEEE Std 1275-1994 §4.3.1 "Path resolution",
//! §3.2.1.1 node names): splitting a path into components and matching one
//! component against a node name.  Used by both the allocation-free FDT
//! reader ([`super::fdt`]) and the live tree ([`super::Tree::find`]).
//!
//! A node name is `node-name@unit-address` (the unit address is optional), a
//! path component may add `:arguments`.  A component matches a child node when
//! * it equals the child's full name exactly (checked first, over all
//!   siblings, so that [`super::Tree::path`] and [`super::Tree::find`] are
//!   inverse whatever the names are); otherwise
//! * its node-name equals the child's node-name and, if the component has a
//!   unit address, the unit addresses are equal — compared as comma-separated
//!   hexadecimal numbers when both parse (`memory@00` matches `memory@0`),
//!   textually otherwise.  Without a unit address the first child with that
//!   node-name matches (`/vdevice/vty` finds `vty@71000000`); a component
//!   with an empty node-name (`@2`) matches on the unit address alone.
//!
//! The tree stores the unit-address text it was given (QEMU's), which is what
//! `package-to-path` returns and what Linux's prom_init copies into the
//! kernel's tree (linux-expectations.md §1.9), so no encode-unit step is
//! needed.
//!
//! [`Tree::find`] is `finddevice`: an absolute path, or an alias from
//! `/aliases` as first component (its value must be an absolute path;
//! aliases are not expanded recursively, so alias loops cannot hang).
//! [`Tree::find_relative`] also accepts `.` and `..`.  [`Tree::path`] is
//! `package-to-path`.

use super::tree::{NodeId, Tree};
use alloc::string::String;
use alloc::vec::Vec;

/// One path component, split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component<'a> {
    /// The component without its arguments (`name@unit`).
    pub full: &'a str,
    /// The node-name part (before `@`), possibly empty.
    pub name: &'a str,
    /// The unit address (after the first `@`), if any.
    pub unit: Option<&'a str>,
    /// The arguments (after the first `:`), if any.
    pub args: Option<&'a str>,
}

impl<'a> Component<'a> {
    /// Split `s` (one component, no `/`) into its parts.
    pub fn parse(s: &'a str) -> Self {
        let (full, args) = match s.split_once(':') {
            Some((f, a)) => (f, Some(a)),
            None => (s, None),
        };
        let (name, unit) = split_name(full);
        Component {
            full,
            name,
            unit,
            args,
        }
    }

    /// Does this component match the node called `node_name` by the
    /// non-exact rule (node-name, then unit address)?
    pub fn matches(&self, node_name: &str) -> bool {
        let (name, unit) = split_name(node_name);
        if !self.name.is_empty() && self.name != name {
            return false;
        }
        match (self.unit, unit) {
            (None, _) => !self.name.is_empty(),
            (Some(a), Some(b)) => unit_eq(a, b),
            (Some(_), None) => false,
        }
    }
}

/// Split a node name into node-name and unit address.
pub fn split_name(node_name: &str) -> (&str, Option<&str>) {
    match node_name.split_once('@') {
        Some((n, u)) => (n, Some(u)),
        None => (node_name, None),
    }
}

/// The non-empty components of `path` (split at `/`).
pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Are two unit addresses equal?  Comma-separated fields are compared as
/// hexadecimal numbers (case and leading zeros do not matter) when every
/// field of both parses; otherwise the texts must be identical.
pub fn unit_eq(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let mut fa = a.split(',');
    let mut fb = b.split(',');
    loop {
        match (fa.next(), fb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => match (parse_hex(x), parse_hex(y)) {
                (Some(x), Some(y)) if x == y => {}
                _ => return false,
            },
            _ => return false,
        }
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    // Leading zeros beyond 16 digits must not make a valid number fail.
    let s = s.trim_start_matches('0');
    if s.is_empty() {
        return Some(0);
    }
    if s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Is `name` acceptable as a node name (`root` = the root node, whose name
/// is empty)?  Names are printable ASCII without `/` (the path separator) and
/// `:` (the argument separator), so that every node has a path that finds it.
pub fn valid_node_name(name: &[u8], root: bool) -> bool {
    if root {
        return name.is_empty();
    }
    !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_graphic() && c != b'/' && c != b':')
}

/// Is `name` acceptable as a property name?  Non-empty printable ASCII (the
/// empty name is the IEEE 1275 `nextprop` "first property" marker).
pub fn valid_prop_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|c| c.is_ascii_graphic())
}

impl Tree {
    /// The child of slot `parent` that path component `comp` names.
    fn match_child(&self, parent: u32, comp: &str) -> Option<u32> {
        let c = Component::parse(comp);
        if c.full.is_empty() {
            return None;
        }
        let children = || {
            let mut next = self.n(parent).first_child;
            core::iter::from_fn(move || {
                let i = next?;
                next = self.n(i).next;
                Some(i)
            })
        };
        // Exact names first (a plain comparison), then the IEEE 1275 rule.
        children()
            .find(|&i| self.n(i).name == c.full)
            .or_else(|| children().find(|&i| c.matches(&self.n(i).name)))
    }

    /// Resolve a path (IEEE 1275 `finddevice`): absolute, or starting with
    /// an alias.  Arguments (`:args`) are ignored.
    pub fn find(&self, path: &str) -> Option<NodeId> {
        if path.starts_with('/') {
            return self.find_relative(self.root(), path);
        }
        let (first, rest) = path.split_once('/').unwrap_or((path, ""));
        let alias = first.split_once(':').map_or(first, |(a, _)| a);
        let target = self.resolve_alias(alias)?;
        let node = self.find_relative(self.root(), target)?;
        self.find_relative(node, rest)
    }

    /// The value of alias `name` in `/aliases`, if it is an absolute path.
    pub fn resolve_alias(&self, name: &str) -> Option<&str> {
        let aliases = self.child(self.root(), "aliases")?;
        self.prop_str(aliases, name).filter(|v| v.starts_with('/'))
    }

    /// Resolve `path` from `from`: an absolute path starts at the root;
    /// `.` stays, `..` goes to the parent.
    pub fn find_relative(&self, from: NodeId, path: &str) -> Option<NodeId> {
        let mut at = if path.starts_with('/') {
            self.root
        } else {
            self.idx(from)?
        };
        for comp in components(path) {
            at = match comp {
                "." => at,
                ".." => self.n(at).parent?,
                _ => self.match_child(at, comp)?,
            };
        }
        Some(self.id(at))
    }

    /// The full path of `node` (IEEE 1275 `package-to-path`): "/" for the
    /// root, else `/` followed by the full node names joined with `/`.
    pub fn path(&self, node: NodeId) -> Option<String> {
        let mut names: Vec<&str> = Vec::new();
        let mut at = self.idx(node)?;
        while let Some(parent) = self.n(at).parent {
            names.push(&self.n(at).name);
            at = parent;
        }
        if names.is_empty() {
            return Some("/".into());
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_component() {
        let c = Component::parse("disk@1,0:3,\\boot");
        assert_eq!(c.full, "disk@1,0");
        assert_eq!(c.name, "disk");
        assert_eq!(c.unit, Some("1,0"));
        assert_eq!(c.args, Some("3,\\boot"));
        let c = Component::parse("vty");
        assert_eq!((c.name, c.unit, c.args), ("vty", None, None));
        let c = Component::parse("@2");
        assert_eq!((c.name, c.unit), ("", Some("2")));
    }

    #[test]
    fn matching() {
        assert!(Component::parse("vty").matches("vty@71000000"));
        assert!(Component::parse("vty@71000000").matches("vty@71000000"));
        assert!(!Component::parse("vty@71000001").matches("vty@71000000"));
        assert!(Component::parse("memory@00000000").matches("memory@0"));
        assert!(Component::parse("@2").matches("mass-storage@2"));
        assert!(Component::parse("pci@800000020000000").matches("pci@800000020000000"));
        assert!(Component::parse("ethernet@1,1").matches("ethernet@1,01"));
        assert!(!Component::parse("ethernet@1,1").matches("ethernet@1"));
        assert!(!Component::parse("cpus").matches("cpu"));
        assert!(!Component::parse("cpus@0").matches("cpus"));
        assert!(!Component::parse("@").matches("cpus"));
    }

    #[test]
    fn unit_addresses() {
        assert!(unit_eq("0", "0000"));
        assert!(unit_eq("a", "A"));
        assert!(unit_eq("0x10", "10"));
        assert!(!unit_eq("1", "2"));
        assert!(unit_eq("zz", "zz"));
        assert!(!unit_eq("zz", "zy"));
        assert!(unit_eq("000000000000000000001", "1"));
        assert!(!unit_eq("10000000000000000", "0"));
    }

    #[test]
    fn names() {
        assert!(valid_node_name(b"", true));
        assert!(!valid_node_name(b"x", true));
        assert!(valid_node_name(b"PowerPC,POWER9@0", false));
        assert!(!valid_node_name(b"", false));
        assert!(!valid_node_name(b"a/b", false));
        assert!(!valid_node_name(b"a:b", false));
        assert!(!valid_node_name(b"a b", false));
        assert!(valid_prop_name(b"ibm,ppc-interrupt-server#s"));
        assert!(!valid_prop_name(b""));
        assert!(!valid_prop_name(b"a\x01"));
    }
}
