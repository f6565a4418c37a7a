//! The IEEE 1275 client interface (IEEE 1275-1994 §6.3 "Client interface";
//! PowerPC binding §8; Linux prom_init's use in linux-expectations.md §1,
//! GRUB's in disk-boot-and-nested.md).
//!
//! A client (Linux's prom_init, a boot loader) calls `cif_entry`
//! (boot/client.S) with the address of an argument block of big-endian
//! 32-bit cells: `service` (address of its name), `nargs`, `nret`, the
//! arguments, then room for the results.  [`Firmware::cif_call`] reads the
//! block through [`Memory`] (client pointers are never trusted: a bad one
//! gives an error, never a fault), runs the service and writes the results.
//! The call itself returns 0, or -1 for an unknown service, a wrong
//! `nargs`/`nret` or an unreadable block; service-level failures are the
//! documented result values (-1 phandles, 0 ihandles, …).
//!
//! Services: test, finddevice, getprop, getproplen, nextprop, setprop, peer,
//! child, parent, instance-to-package, instance-to-path, package-to-path,
//! canon, open, close, read, write, seek, claim, release, call-method,
//! interpret, milliseconds, quiesce, exit, start-cpu.  Methods:
//! `ibm,client-architecture-support` on `/`, `instantiate-rtas` on `/rtas`.
//! `interpret` understands the no-op strings GRUB sends (`output-device
//! output`, `cursor-on`, `cursor-off`) and throws for anything else.
//! Disks papr-fw drives (after it probed them to boot from disk) open as
//! block instances: `read`/`write`/`seek` and the methods `block-size`,
//! `#blocks`, `read-blocks`, `write-blocks`, `max-transfer` ([`block`]).

pub mod block;
pub mod cas;
pub mod claim;
pub mod instance;

use crate::devtree::{NodeId, Tree};
use crate::firmware::Firmware;
use crate::hcall::{self, op, Hypervisor};
use crate::memory::{Memory, Range};
use crate::platform::Platform;
use crate::rtas;
use crate::rtas::resident::{self, Blob};
use crate::rtas::runtime::RuntimeConfig;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use claim::Claims;
use instance::{Instance, Instances, Kind};
use log::{info, warn};

/// Most cells (arguments + results) a call may have.
pub const MAX_CELLS: u32 = 20;
/// Longest service, method or property name read from a client.
pub const MAX_NAME: usize = 256;
/// Longest path read from a client.
pub const MAX_PATH: usize = 1024;
/// Most bytes one `write` to the console takes.
pub const MAX_WRITE: u32 = 64 << 10;
/// The CAS reply buffer (QEMU needs room for its whole tree; SLOF uses 2 MiB).
pub const CAS_BUFFER: u64 = 2 << 20;
/// Most bytes (values and names) clients may add to the tree with `setprop`:
/// the tree lives in the firmware's heap, which must keep room for CAS, the
/// flattened tree at quiesce and the drivers.  prom_init and GRUB set a few
/// hundred bytes.
pub const CLIENT_PROP_BUDGET: usize = 4 << 20;

const ERR: u32 = u32::MAX;

/// The services [`Firmware::cif_call`] knows (`test` answers from this list).
pub const SERVICES: &[&str] = &[
    "test",
    "finddevice",
    "getprop",
    "getproplen",
    "nextprop",
    "setprop",
    "peer",
    "child",
    "parent",
    "instance-to-package",
    "instance-to-path",
    "package-to-path",
    "canon",
    "open",
    "close",
    "read",
    "write",
    "seek",
    "claim",
    "release",
    "call-method",
    "interpret",
    "milliseconds",
    "quiesce",
    "exit",
    "start-cpu",
];

/// Why a call returns -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifError {
    UnknownService,
    /// nargs/nret do not match the service.
    Arguments,
    /// The argument block or a string it points to is unreadable.
    BadBlock,
}

/// Where RTAS was instantiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtasArea {
    pub base: u64,
    pub size: u64,
    pub entry: u64,
    /// papr-fw's resident runtime (else the forwarding stub).
    pub resident: bool,
}

/// The client interface's state.
#[derive(Debug, Default)]
pub struct Client {
    pub claims: Claims,
    pub instances: Instances,
    /// The ihandle in `/chosen/stdout`.
    pub stdout: u32,
    pub rtas: Option<RtasArea>,
    pub quiesced: bool,
    /// `cif-trace=on`: log every call.
    pub trace: bool,
    pub calls: u64,
    /// The client called `exit`.
    pub exited: bool,
    /// QEMU's own `rtas-size` (covers its FWNMI areas).
    pub qemu_rtas_size: u32,
    /// What CAS negotiated.
    pub cas: Option<CasOutcome>,
    /// Bytes `setprop` added to the tree (net), against [`CLIENT_PROP_BUDGET`].
    pub setprop_bytes: usize,
}

/// The outcome of `ibm,client-architecture-support`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    pub radix: bool,
    pub xive: bool,
}

/// The programme papr-fw starts: where it is and what it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientImage {
    pub entry: u64,
    /// The loaded image (claimed for the client).
    pub image: Range,
    /// The initrd (claimed for the client), or empty.
    pub initrd: Range,
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

impl Firmware {
    /// Set up the client interface for a client loaded at `image`: the
    /// claim allocator (firmware memory withheld, the client's image, initrd
    /// and stack claimed for it), the console instances in `/chosen`
    /// (`stdout`, `stdin`), the boot CPU (`/chosen/cpu`), `/rtas/rtas-size`
    /// and `/memory` `available`.
    pub fn prepare_client(&mut self, image: &ClientImage) {
        let l = self.layout;
        let mut protected = Vec::new();
        // The firmware's low memory except the client's stack.
        let fw = l.firmware;
        let cs = l.client_stack;
        if cs.size != 0 && fw.contains(cs.base, cs.size) {
            protected.push(Range::new(fw.base, cs.base - fw.base));
            protected.push(Range::new(cs.end(), fw.end() - cs.end()));
        } else if fw.size != 0 {
            protected.push(fw);
        }
        if l.heap.size != 0 {
            protected.push(l.heap);
        }
        // Physical page 0 is never given out (Linux copies its first 256
        // bytes there itself).
        protected.push(Range::new(0, 0x1000));
        let mut claims = Claims::new(&self.ram, &protected);
        for r in [image.image, image.initrd, cs] {
            if r.size != 0 && claims.claim(r.base, r.size, 0).is_none() {
                warn!(
                    "cif: {:#x}+{:#x} overlaps firmware memory; not claimed for the client",
                    r.base, r.size
                );
            }
        }
        self.client.claims = claims;
        self.client.trace = self.options.flag("cif-trace").unwrap_or(false);

        let con = crate::summary::find_console(&self.tree);
        let con_node = con
            .path
            .as_deref()
            .and_then(|p| self.tree.find(p))
            .unwrap_or(self.tree.root());
        let kind = Kind::Console {
            vtermno: con.vtermno,
        };
        let stdout = self.open_instance(con_node, kind, "");
        let stdin = self.open_instance(con_node, kind, "");
        let cpu = crate::summary::cpus(&self.tree)
            .first()
            .and_then(|(c, _)| self.open_instance(*c, Kind::Package, ""));
        if let Some(chosen) = self.chosen() {
            if let Some(ih) = stdout {
                self.client.stdout = ih;
                let _ = self.tree.set_prop(chosen, "stdout", &be(ih));
            }
            if let Some(ih) = stdin {
                let _ = self.tree.set_prop(chosen, "stdin", &be(ih));
            }
            if let Some(ih) = cpu {
                let _ = self.tree.set_prop(chosen, "cpu", &be(ih));
            }
        }
        if let Some(rtas) = self.tree.find("/rtas") {
            self.client.qemu_rtas_size = self.tree.prop_u32(rtas, "rtas-size").unwrap_or(0);
        }
        self.present_client();
    }

    /// The client-interface properties papr-fw decides (re-applied after CAS).
    pub fn present_client(&mut self) {
        if let (Some(rtas), Ok(blob)) = (self.tree.find("/rtas"), Blob::parse(self.rtas_blob)) {
            let size = resident::area_size(&blob, self.client.qemu_rtas_size);
            let _ = self.tree.set_prop_u32(rtas, "rtas-size", size as u32);
        }
        self.update_available();
    }

    fn chosen(&mut self) -> Option<NodeId> {
        match self.tree.find("/chosen") {
            Some(c) => Some(c),
            None => {
                let root = self.tree.root();
                self.tree.add_node(root, "chosen").ok()
            }
        }
    }

    fn open_instance(&mut self, node: NodeId, kind: Kind, args: &str) -> Option<u32> {
        self.client.instances.open(Instance {
            node,
            kind,
            args: String::from(args),
            position: 0,
        })
    }

    /// `/memory` `available`: the free ranges inside each memory node.
    fn update_available(&mut self) {
        let mem_nodes: Vec<NodeId> = self
            .tree
            .nodes()
            .filter(|n| self.tree.prop_str(*n, "device_type") == Some("memory"))
            .collect();
        let root = self.tree.root();
        let ac = self.tree.prop_u32(root, "#address-cells").unwrap_or(2);
        let sc = self.tree.prop_u32(root, "#size-cells").unwrap_or(1);
        for node in mem_nodes {
            let Ok(regs) = self.tree.reg(node) else {
                continue;
            };
            let mut avail = Vec::new();
            for f in self.client.claims.available() {
                for r in &regs {
                    let base = f.base.max(r.addr);
                    let end = f.end().min(r.addr.saturating_add(r.size));
                    if base < end {
                        avail.push(Range::new(base, end - base));
                    }
                }
            }
            let v = claim::encode_ranges(&avail, ac, sc);
            let _ = self.tree.set_prop(node, "available", &v);
        }
    }

    /// Serve the client-interface call whose argument block is at `args`.
    /// Returns the value for r3: 0, or -1 (see the module documentation).
    pub fn cif_call<P: Platform + ?Sized>(&mut self, p: &mut P, args: u64) -> i64 {
        self.client.calls += 1;
        let r = self.cif_call_inner(p, args);
        match r {
            Ok(()) => 0,
            Err(e) => {
                if self.client.trace {
                    info!("cif: call at {args:#x} failed: {e:?}");
                }
                -1
            }
        }
    }

    fn cif_call_inner<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        args: u64,
    ) -> Result<(), CifError> {
        let cell = |p: &P, i: u64| p.read_be32(args + 4 * i).map_err(|_| CifError::BadBlock);
        let (service, nargs, nret) = (cell(p, 0)?, cell(p, 1)?, cell(p, 2)?);
        if nargs > MAX_CELLS || nret > MAX_CELLS || nargs + nret > MAX_CELLS {
            return Err(CifError::Arguments);
        }
        let name = read_str(p, service as u64, MAX_NAME).ok_or(CifError::BadBlock)?;
        let mut a = [0u32; MAX_CELLS as usize];
        for (i, slot) in a.iter_mut().enumerate().take(nargs as usize) {
            *slot = cell(p, 3 + i as u64)?;
        }
        let mut r = [0u32; MAX_CELLS as usize];
        let (a, rs) = (&a[..nargs as usize], &mut r[..nret as usize]);
        self.service(p, &name, a, rs)?;
        let rets_at = args + 12 + 4 * nargs as u64;
        if !self.client_writable(rets_at, 4 * nret as u64) {
            return Err(CifError::BadBlock);
        }
        for (i, v) in rs.iter().enumerate() {
            p.write_be32(rets_at + 4 * i as u64, *v)
                .map_err(|_| CifError::BadBlock)?;
        }
        if self.client.trace {
            info!("cif: {name}{a:x?} = {rs:x?}");
        }
        Ok(())
    }

    /// Whether the client may have the firmware write `len` bytes at `addr`
    /// (not the firmware's own memory).
    fn client_writable(&self, addr: u64, len: u64) -> bool {
        len == 0 || self.client.claims.is_client_memory(Range::new(addr, len))
    }

    /// Copy `data` (up to `buflen` bytes) into the client's buffer.
    fn put<P: Platform + ?Sized>(&self, p: &mut P, buf: u32, buflen: u32, data: &[u8]) -> bool {
        let n = data.len().min(buflen as usize);
        if n == 0 {
            return true;
        }
        self.client_writable(buf as u64, n as u64) && p.write(buf as u64, &data[..n]).is_ok()
    }

    fn node(&self, ph: u32) -> Option<NodeId> {
        if ph == 0 || ph == ERR {
            return None;
        }
        self.tree.by_phandle(ph)
    }

    fn ph(&self, node: Option<NodeId>) -> u32 {
        node.and_then(|n| self.tree.phandle(n)).unwrap_or(0)
    }

    /// A property as the client sees it: the tree's, plus `name` (the part of
    /// the node name before `@`) for every node that does not store one.
    fn client_prop(&self, node: NodeId, name: &str) -> Option<alloc::borrow::Cow<'_, [u8]>> {
        if let Some(v) = self.tree.prop(node, name) {
            return Some(alloc::borrow::Cow::Borrowed(v));
        }
        if name == "name" {
            let mut v = Vec::from(self.tree.node_name(node).unwrap_or("").as_bytes());
            v.push(0);
            return Some(alloc::borrow::Cow::Owned(v));
        }
        None
    }

    /// `nextprop` order: a synthesised `name` first, then the tree's order.
    fn client_next_prop(&self, node: NodeId, prev: &str) -> Option<String> {
        let synth = self.tree.prop(node, "name").is_none();
        if prev.is_empty() && synth {
            return Some("name".into());
        }
        let after = if prev == "name" && synth { "" } else { prev };
        if !after.is_empty() && self.tree.prop(node, after).is_none() {
            return None;
        }
        self.tree.next_prop(node, after).map(String::from)
    }

    fn service<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        name: &str,
        a: &[u32],
        r: &mut [u32],
    ) -> Result<(), CifError> {
        let need = |na: usize, nr: usize| {
            if a.len() == na && r.len() == nr {
                Ok(())
            } else {
                Err(CifError::Arguments)
            }
        };
        match name {
            "test" => {
                need(1, 1)?;
                let s = read_str(p, a[0] as u64, MAX_NAME);
                r[0] = if s.is_some_and(|s| SERVICES.contains(&s.as_str())) {
                    0
                } else {
                    ERR
                };
            }
            "finddevice" => {
                need(1, 1)?;
                r[0] = match read_str(p, a[0] as u64, MAX_PATH).and_then(|s| self.tree.find(&s)) {
                    Some(n) => self.ph(Some(n)),
                    None => ERR,
                };
            }
            "getprop" => {
                need(4, 1)?;
                let (node, pname) = (self.node(a[0]), read_str(p, a[1] as u64, MAX_NAME));
                r[0] = match (node, pname) {
                    (Some(n), Some(pn)) => match self.client_prop(n, &pn) {
                        Some(v) if self.put(p, a[2], a[3], &v) => v.len() as u32,
                        _ => ERR,
                    },
                    _ => ERR,
                };
            }
            "getproplen" => {
                need(2, 1)?;
                r[0] = match (self.node(a[0]), read_str(p, a[1] as u64, MAX_NAME)) {
                    (Some(n), Some(pn)) => self.client_prop(n, &pn).map_or(ERR, |v| v.len() as u32),
                    _ => ERR,
                };
            }
            "nextprop" => {
                need(3, 1)?;
                let prev = if a[1] == 0 {
                    Some(String::new())
                } else {
                    read_str(p, a[1] as u64, MAX_NAME)
                };
                r[0] = match (self.node(a[0]), prev) {
                    (Some(n), Some(prev)) => match self.client_next_prop(n, &prev) {
                        Some(next) => {
                            let mut v = Vec::from(next.as_bytes());
                            v.push(0);
                            if self.put(p, a[2], v.len() as u32, &v) {
                                1
                            } else {
                                ERR
                            }
                        }
                        None => 0,
                    },
                    _ => ERR,
                };
            }
            "setprop" => {
                need(4, 1)?;
                let len = a[3] as usize;
                r[0] = match (self.node(a[0]), read_str(p, a[1] as u64, MAX_NAME)) {
                    (Some(n), Some(pn)) if len <= crate::devtree::tree::MAX_PROP_LEN => {
                        // The tree lives in the firmware's heap: what clients
                        // add is budgeted (net of what they replace), and the
                        // value is copied into memory that may be refused.
                        let old = self.tree.prop(n, &pn).map_or(0, |v| v.len() + pn.len());
                        let grown =
                            (self.client.setprop_bytes + len + pn.len()).saturating_sub(old);
                        let mut v = Vec::new();
                        if grown > CLIENT_PROP_BUDGET || v.try_reserve_exact(len).is_err() {
                            ERR
                        } else {
                            v.resize(len, 0);
                            if p.read(a[2] as u64, &mut v).is_ok()
                                && self.tree.set_prop(n, &pn, &v).is_ok()
                            {
                                self.client.setprop_bytes = grown;
                                a[3]
                            } else {
                                ERR
                            }
                        }
                    }
                    _ => ERR,
                };
            }
            "peer" | "child" | "parent" => {
                need(1, 1)?;
                r[0] = if name == "peer" && a[0] == 0 {
                    self.ph(Some(self.tree.root()))
                } else {
                    match self.node(a[0]) {
                        None => ERR,
                        Some(n) => self.ph(match name {
                            "peer" => self.tree.next_sibling(n),
                            "child" => self.tree.first_child(n),
                            _ => self.tree.parent(n),
                        }),
                    }
                };
            }
            "instance-to-package" => {
                need(1, 1)?;
                r[0] = self
                    .client
                    .instances
                    .get(a[0])
                    .map_or(ERR, |i| self.ph(Some(i.node)));
            }
            "instance-to-path" | "package-to-path" => {
                need(3, 1)?;
                let node = if name == "package-to-path" {
                    self.node(a[0])
                } else {
                    self.client.instances.get(a[0]).map(|i| i.node)
                };
                r[0] = match node.and_then(|n| self.tree.path(n)) {
                    Some(path) => self.put_string(p, a[1], a[2], &path),
                    None => ERR,
                };
            }
            "canon" => {
                need(3, 1)?;
                let found = read_str(p, a[0] as u64, MAX_PATH).and_then(|s| {
                    let node = self.tree.find(&s)?;
                    let path = self.tree.path(node)?;
                    Some(
                        match s
                            .rsplit_once('/')
                            .and_then(|(_, last)| last.split_once(':'))
                        {
                            Some((_, args)) => format!("{path}:{args}"),
                            None => path,
                        },
                    )
                });
                r[0] = match found {
                    Some(path) => self.put_string(p, a[1], a[2], &path),
                    None => ERR,
                };
            }
            "open" => {
                need(1, 1)?;
                r[0] = match read_str(p, a[0] as u64, MAX_PATH) {
                    Some(path) => match self.open_block(p, &path) {
                        Some(ih) => ih,
                        None => self.open(&path).unwrap_or(0),
                    },
                    None => 0,
                };
            }
            "close" => {
                need(1, 0)?;
                self.client.instances.close(a[0]);
            }
            "write" => {
                need(3, 1)?;
                r[0] = match self.client.instances.get(a[0]).map(|i| i.kind) {
                    Some(Kind::Console { vtermno }) => {
                        let len = a[2].min(MAX_WRITE);
                        let mut buf = alloc::vec![0u8; len as usize];
                        if p.read(a[1] as u64, &mut buf).is_ok() {
                            // IEEE 1275: the bytes actually written; -1 when
                            // the terminal took none of them.
                            match write_vty(p, vtermno, &buf) {
                                0 if len != 0 => ERR,
                                n => n as u32,
                            }
                        } else {
                            ERR
                        }
                    }
                    Some(Kind::Block { .. }) => self.block_write(p, a[0], a[1], a[2]),
                    _ => ERR,
                };
            }
            "read" => {
                need(3, 1)?;
                r[0] = match self.client.instances.get(a[0]).map(|i| i.kind) {
                    Some(Kind::Console { vtermno }) => {
                        let mut chunk = [0u8; 16];
                        let n = hcall::get_term_chars(p, vtermno, &mut chunk)
                            .unwrap_or(0)
                            .min(a[2] as usize);
                        if self.put(p, a[1], n as u32, &chunk[..n]) {
                            n as u32
                        } else {
                            ERR
                        }
                    }
                    Some(Kind::Block { .. }) => self.block_read(p, a[0], a[1], a[2]),
                    _ => ERR,
                };
            }
            "seek" => {
                need(3, 1)?;
                r[0] = self.block_seek(a[0], a[1], a[2]);
            }
            "claim" => {
                need(3, 1)?;
                r[0] = match self
                    .client
                    .claims
                    .claim(a[0] as u64, a[1] as u64, a[2] as u64)
                {
                    Some(base) => {
                        self.update_available();
                        base as u32
                    }
                    None => ERR,
                };
            }
            "release" => {
                need(2, 0)?;
                if self.client.claims.release(a[0] as u64, a[1] as u64) {
                    self.update_available();
                }
            }
            "milliseconds" => {
                need(0, 1)?;
                let tb = p.timebase() as u128;
                r[0] = (tb * 1000 / self.timebase_hz.max(1) as u128) as u32;
            }
            "call-method" => {
                if a.len() < 2 || r.is_empty() {
                    return Err(CifError::Arguments);
                }
                let method = read_str(p, a[0] as u64, MAX_NAME);
                r[0] = match method {
                    Some(m) => self.call_method(p, &m, a[1], &a[2..], &mut r[1..]),
                    None => ERR,
                };
            }
            "interpret" => {
                if a.is_empty() || r.is_empty() {
                    return Err(CifError::Arguments);
                }
                let cmd = read_str(p, a[0] as u64, MAX_PATH).unwrap_or_default();
                r[0] = match cmd.trim() {
                    "output-device output" | "cursor-on" | "cursor-off" | "" => 0,
                    _ => ERR,
                };
            }
            "quiesce" => {
                need(0, 0)?;
                self.quiesce(p);
            }
            "exit" => {
                need(0, 0)?;
                self.client.exited = true;
            }
            "start-cpu" => {
                need(3, 0)?;
                if let Some(n) = self.node(a[0]) {
                    let server = self
                        .tree
                        .prop_cells(n, "ibm,ppc-interrupt-server#s")
                        .and_then(|mut c| c.next())
                        .or_else(|| self.tree.prop_u32(n, "reg"));
                    if let (Some(id), Some(tok)) =
                        (server, crate::firmware::token(&self.tree, "start-cpu"))
                    {
                        let mut rets = [0u32; 1];
                        let st = rtas::call(p, p.scratch(), tok, &[id, a[1], a[2]], &mut rets);
                        if st != Ok(0) {
                            warn!("cif: start-cpu {id}: {st:?}");
                        }
                    }
                }
            }
            _ => return Err(CifError::UnknownService),
        }
        Ok(())
    }

    /// Copy a NUL-terminated string into a client buffer; returns the
    /// string's length (without NUL) as IEEE 1275's *-to-path services do.
    fn put_string<P: Platform + ?Sized>(&self, p: &mut P, buf: u32, buflen: u32, s: &str) -> u32 {
        let mut v = Vec::from(s.as_bytes());
        v.push(0);
        if self.put(p, buf, buflen, &v) {
            s.len() as u32
        } else {
            ERR
        }
    }

    /// `open`: what kind of instance the node gives, or None when the
    /// package cannot be opened (no driver).
    fn open(&mut self, path: &str) -> Option<u32> {
        let node = self.tree.find(path)?;
        let args = path
            .rsplit('/')
            .next()
            .and_then(|l| l.split_once(':'))
            .map_or("", |(_, a)| a);
        let root = self.tree.root();
        let kind = if node == root {
            Kind::Root
        } else if Some(node) == self.tree.find("/rtas") {
            Kind::Rtas
        } else if self
            .tree
            .prop_strings(node, "compatible")
            .is_some_and(|mut c| c.any(|s| s == "hvterm1"))
        {
            Kind::Console {
                vtermno: self.tree.prop_u32(node, "reg").unwrap_or(0) as u64,
            }
        } else if matches!(
            self.tree.prop_str(node, "device_type"),
            Some("cpu") | Some("memory")
        ) {
            Kind::Package
        } else {
            return None;
        };
        self.open_instance(node, kind, args)
    }

    /// `call-method`: returns the catch result (0, or -1 when the method does
    /// not exist or its arguments do not fit) and fills the method's results.
    fn call_method<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        method: &str,
        ih: u32,
        args: &[u32],
        rets: &mut [u32],
    ) -> u32 {
        let Some(kind) = self.client.instances.get(ih).map(|i| i.kind) else {
            return ERR;
        };
        match (kind, method) {
            (Kind::Root, "ibm,client-architecture-support")
                if args.len() == 1 && rets.len() == 1 =>
            {
                rets[0] = self.client_architecture_support(p, args[0] as u64) as u32;
                0
            }
            (Kind::Rtas, "instantiate-rtas") if args.len() == 1 && rets.len() == 1 => {
                match self.instantiate_rtas(p, args[0] as u64) {
                    Some(entry) => {
                        rets[0] = entry as u32;
                        0
                    }
                    None => ERR,
                }
            }
            (Kind::Block { .. }, _) => self.block_method(p, ih, method, args, rets),
            _ => ERR,
        }
    }

    /// `ibm,client-architecture-support`: check the vector, pass it to QEMU
    /// (H_CAS), fold the tree QEMU returns into the live tree and re-apply
    /// papr-fw's own properties.  Returns 0, or -1 (the call failed; the
    /// client continues with the defaults: hash MMU, XICS).
    pub fn client_architecture_support<P: Platform + ?Sized>(
        &mut self,
        p: &mut P,
        vec: u64,
    ) -> i32 {
        let v = match cas::ArchVector::parse(p, vec) {
            Ok(v) => v,
            Err(e) => {
                warn!("cas: {e}");
                return -1;
            }
        };
        let support = self
            .tree
            .find("/chosen")
            .and_then(|c| self.tree.prop(c, "ibm,arch-vec-5-platform-support"))
            .map(cas::PlatformSupport::from_property)
            .unwrap_or_default();
        if let Err(e) = v.check(&support) {
            warn!("cas: {e}; not passed to the platform");
            return -1;
        }
        let Some(buf) = p.alloc_phys_uninit(CAS_BUFFER, 4096) else {
            warn!("cas: no memory for the reply");
            return -1;
        };
        let result = (|| {
            let r = p.hcall(op::KVMPPC_H_CAS, &[vec, buf, CAS_BUFFER]);
            if r.rc != hcall::rc::H_SUCCESS {
                return Err(cas::CasError::Hcall(r.rc));
            }
            // Copy only what QEMU wrote (update header, then the tree's
            // totalsize), not the whole buffer: 2 MiB cost ~12 ms under TCG.
            let mut head = [0u8; 12];
            p.read(buf, &mut head).map_err(cas::CasError::BadAddress)?;
            let mut reply = alloc::vec![0u8; cas::reply_len(&head, CAS_BUFFER) as usize];
            p.read(buf, &mut reply).map_err(cas::CasError::BadAddress)?;
            let fdt = cas::reply_fdt(&reply)?;
            let partial =
                Tree::from_fdt(fdt).map_err(|_| cas::CasError::BadReply("malformed tree"))?;
            self.tree
                .merge(&partial)
                .map_err(|_| cas::CasError::BadReply("merge failed"))
        })();
        p.free_phys(buf, CAS_BUFFER, 4096);
        match result {
            Ok(stats) => {
                self.present();
                self.present_client();
                self.dma = crate::devtree::dma::DmaModel::from_tree(&self.tree);
                self.client.cas = Some(CasOutcome {
                    radix: v.wants_radix(),
                    xive: v.wants_xive(),
                });
                // The client is printing a line of its own: details wait for quiesce.
                log::debug!(
                    "papr-fw: cas: {} MMU, {} interrupts; tree: {} nodes added, {} removed, {} properties set",
                    if v.wants_radix() { "radix" } else { "hash" },
                    if v.wants_xive() { "XIVE" } else { "XICS" },
                    stats.nodes_added,
                    stats.nodes_removed,
                    stats.props_set
                );
                0
            }
            Err(e) => {
                warn!("cas: {e}");
                -1
            }
        }
    }

    /// `instantiate-rtas`: install papr-fw's resident RTAS (or the
    /// forwarding stub) at `base`, an area the client allocated from
    /// `/rtas/rtas-size`.  Returns the entry.
    pub fn instantiate_rtas<P: Platform + ?Sized>(&mut self, p: &mut P, base: u64) -> Option<u64> {
        let rtas_node = self.tree.find("/rtas")?;
        let size = self.tree.prop_u32(rtas_node, "rtas-size")? as u64;
        if !self.client_writable(base, size) {
            warn!("instantiate-rtas: {base:#x}+{size:#x} is firmware memory");
            return None;
        }
        let area = match Blob::parse(self.rtas_blob) {
            Ok(blob) => {
                let config = self.runtime_config().encode();
                match resident::install(p, &blob, base, size, self.client.qemu_rtas_size, &config) {
                    Ok(entry) => RtasArea {
                        base,
                        size,
                        entry,
                        resident: true,
                    },
                    Err(e) => {
                        warn!("instantiate-rtas: {e}");
                        return None;
                    }
                }
            }
            Err(_) => {
                let mut stub = Vec::new();
                for w in resident::RTAS_STUB {
                    stub.extend_from_slice(&w.to_be_bytes());
                }
                p.write(base, &stub).ok()?;
                RtasArea {
                    base,
                    size,
                    entry: base,
                    resident: false,
                }
            }
        };
        p.sync_icache(base, size);
        log::debug!(
            "papr-fw: rtas: instantiated at {base:#x} ({} bytes, {})",
            size,
            if area.resident {
                "papr-fw resident RTAS"
            } else {
                "forwarding stub"
            }
        );
        self.client.rtas = Some(area);
        Some(area.entry)
    }

    /// What the resident RTAS needs to know.
    pub fn runtime_config(&self) -> RuntimeConfig {
        let names = crate::devtree::dma::rtas_tokens(&self.tree)
            .into_iter()
            .map(|t| (t.token, String::from(t.name)))
            .collect();
        RuntimeConfig {
            vtermno: crate::console::VTY.vtermno(),
            ram_limit: self.rma.end(),
            trace: self.options.flag("rtas-trace").unwrap_or(false),
            token_names: names,
            ddw: self.ddw_config().map(|c| c.encode()).unwrap_or_default(),
        }
    }

    /// `quiesce`: the last call before the client takes over the machine.
    /// Unmap what the firmware mapped, send the final tree to QEMU
    /// (H_UPDATE_DT: QEMU reads `/rtas/linux,rtas-base` from it for FWNMI and
    /// takes phandles from it for hot-plugged PHBs), and quiesce the
    /// platform's RTAS (QEMU resets VIO TCE tables and CRQs).
    pub fn quiesce<P: Platform + ?Sized>(&mut self, p: &mut P) {
        if self.client.quiesced {
            return;
        }
        self.client.quiesced = true;
        // Disks stop before their DMA mappings go.
        for l in self.storage.shutdown(p, &mut self.tce) {
            warn!("quiesce: {l}");
        }
        let st = self.tce.unmap_all(p);
        if st.failures != 0 {
            warn!("quiesce: {} TCE unmaps failed", st.failures);
        }
        self.tce.release_list_page(p);
        let fdt = self.tree.to_fdt();
        let mut update = "not sent";
        match p.alloc_phys(fdt.len() as u64, 8) {
            Some(buf) => {
                if p.write(buf, &fdt).is_ok() {
                    let r = p.hcall(op::KVMPPC_H_UPDATE_DT, &[buf]);
                    match r.rc {
                        hcall::rc::H_SUCCESS => update = "sent to the platform",
                        hcall::rc::H_FUNCTION => update = "not taken by the platform",
                        rc => warn!(
                            "quiesce: H_UPDATE_DT returned {rc} ({})",
                            hcall::rc_name(rc)
                        ),
                    }
                }
                // QEMU copied the tree; the buffer is ours again.
                p.free_phys(buf, fdt.len() as u64, 8);
            }
            None => warn!("quiesce: no memory to flatten the tree"),
        }
        if let Some(tok) = crate::firmware::token(&self.tree, "quiesce") {
            let mut rets = [0u32; 1];
            if let Err(e) = rtas::call(p, p.scratch(), tok, &[], &mut rets) {
                warn!("quiesce: RTAS quiesce: {e}");
            }
        }
        let cas = match self.client.cas {
            Some(c) => format!(
                "{} MMU, {}",
                if c.radix { "radix" } else { "hash" },
                if c.xive { "XIVE" } else { "XICS" }
            ),
            None => String::from("not called"),
        };
        let rtas = match self.client.rtas {
            Some(a) => format!(
                "{} at {:#x}",
                if a.resident { "resident" } else { "stub" },
                a.base
            ),
            None => String::from("not instantiated"),
        };
        info!(
            "papr-fw: quiesce after {} client calls: cas {cas}; rtas {rtas}; tree of {} bytes {update}; {} TCE mappings removed",
            self.client.calls,
            fdt.len(),
            st.mappings
        );
    }
}

/// Read a NUL-terminated client string (at most `max` bytes), as UTF-8.
fn read_str<M: Memory + ?Sized>(m: &M, addr: u64, max: usize) -> Option<String> {
    let mut buf = [0u8; MAX_PATH];
    let max = max.min(MAX_PATH);
    let n = m.read_cstr(addr, &mut buf, max).ok()?;
    core::str::from_utf8(&buf[..n]).ok().map(String::from)
}

/// Raw bytes to a vty (the client translates its own newlines); the bytes
/// the terminal took.
fn write_vty<H: Hypervisor + ?Sized>(hv: &mut H, vtermno: u64, bytes: &[u8]) -> usize {
    let vty = crate::console::Vty::new();
    vty.set_vtermno(vtermno);
    vty.write_raw(hv, bytes)
}

#[cfg(test)]
mod tests;
