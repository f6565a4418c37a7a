//! Client-interface tests: a fake client writes argument blocks into fake
//! memory and calls [`Firmware::cif_call`], on QEMU's own trees.

use super::*;
use crate::fake::FakePlatform;
use crate::firmware::{Firmware, Layout};

const RAM: usize = 64 << 20;
/// Where the fake client keeps its argument block, strings and buffers.
const BLOCK: u64 = 0x0100_0000;
const STR: u64 = 0x0100_1000;
const BUF: u64 = 0x0100_2000;

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/qemu-tests/trees/{name}.dtb",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn layout() -> Layout {
    Layout {
        firmware: Range::new(0, 0x10_0000),
        heap: Range::new(0x300_0000, 0x80_0000),
        fdt: Range::new(0x3e0_0000, 0x20_0000),
        client_stack: Range::new(0x8_0000, 0x4_0000),
    }
}

struct Client {
    p: FakePlatform,
    fw: Firmware,
}

enum Arg<'a> {
    N(u32),
    S(&'a str),
}
use Arg::{N, S};

impl Client {
    fn new(tree: &str) -> Self {
        let mut p = FakePlatform::new(RAM);
        let fw_tree = golden(tree);
        let mut fw = Firmware::start(&mut p, &fw_tree, layout()).unwrap();
        fw.prepare_client(&ClientImage {
            entry: 0x40_0000,
            image: Range::new(0x40_0000, 0x10_0000),
            initrd: Range::default(),
        });
        Client { p, fw }
    }

    /// Call `service` with `args`; returns (r3, results).
    fn call(&mut self, service: &str, args: &[Arg], nret: u32) -> (i64, Vec<u32>) {
        let mut str_at = STR;
        let mut put_str = |p: &mut FakePlatform, s: &str| {
            let a = str_at;
            p.mem.write(a, s.as_bytes()).unwrap();
            p.mem.write_u8(a + s.len() as u64, 0).unwrap();
            str_at += s.len() as u64 + 1;
            a as u32
        };
        let svc = put_str(&mut self.p, service);
        let cells: Vec<u32> = args
            .iter()
            .map(|a| match a {
                N(n) => *n,
                S(s) => put_str(&mut self.p, s),
            })
            .collect();
        self.raw(svc, &cells, nret)
    }

    fn raw(&mut self, svc: u32, cells: &[u32], nret: u32) -> (i64, Vec<u32>) {
        let m = &mut self.p.mem;
        m.write_be32(BLOCK, svc).unwrap();
        m.write_be32(BLOCK + 4, cells.len() as u32).unwrap();
        m.write_be32(BLOCK + 8, nret).unwrap();
        for (i, c) in cells.iter().enumerate() {
            m.write_be32(BLOCK + 12 + 4 * i as u64, *c).unwrap();
        }
        let rets_at = BLOCK + 12 + 4 * cells.len() as u64;
        for i in 0..nret as u64 {
            m.write_be32(rets_at + 4 * i, 0xdead_beef).unwrap();
        }
        let r3 = self.fw.cif_call(&mut self.p, BLOCK);
        let rets = (0..nret as u64)
            .map(|i| self.p.mem.read_be32(rets_at + 4 * i).unwrap())
            .collect();
        (r3, rets)
    }

    fn one(&mut self, service: &str, args: &[Arg]) -> u32 {
        let (r3, rets) = self.call(service, args, 1);
        assert_eq!(r3, 0, "{service}");
        rets[0]
    }

    fn buf_str(&self, len: usize) -> String {
        let mut b = vec![0u8; len];
        self.p.mem.read(BUF, &mut b).unwrap();
        String::from_utf8_lossy(&b).into_owned()
    }
}

#[test]
fn tree_services_on_qemu_tree() {
    let mut c = Client::new("qemu-7.2-kernel");
    let root = c.one("peer", &[N(0)]);
    assert_ne!(root, 0);
    assert_eq!(c.one("finddevice", &[S("/")]), root);
    let chosen = c.one("finddevice", &[S("/chosen")]);
    assert_ne!(chosen, ERR);
    assert_eq!(c.one("finddevice", &[S("/no/such/node")]), ERR);
    assert_eq!(c.one("parent", &[N(chosen)]), root);
    assert_eq!(c.one("parent", &[N(root)]), 0);
    // getprop / getproplen, including the synthesised "name".
    let pci = c.one("finddevice", &[S("/pci@800000020000000")]);
    assert_eq!(c.one("getproplen", &[N(pci), S("ibm,dma-window")]), 20);
    assert_eq!(
        c.one(
            "getprop",
            &[N(pci), S("ibm,dma-window"), N(BUF as u32), N(64)]
        ),
        20
    );
    assert_eq!(c.p.mem.read_be32(BUF).unwrap(), 0x8000_0000);
    assert_eq!(
        c.one("getprop", &[N(pci), S("name"), N(BUF as u32), N(64)]),
        4
    );
    assert_eq!(c.buf_str(4), "pci\0");
    assert_eq!(
        c.one(
            "getprop",
            &[N(pci), S("no-such-prop"), N(BUF as u32), N(64)]
        ),
        ERR
    );
    // A short buffer gets a prefix; the result is still the full length.
    assert_eq!(
        c.one("getprop", &[N(root), S("model"), N(BUF as u32), N(3)]),
        31
    );
    assert_eq!(c.buf_str(3), "IBM");
    // package-to-path, and the kernel's second call with a bigger buffer.
    assert_eq!(c.one("package-to-path", &[N(pci), N(BUF as u32), N(4)]), 20);
    assert_eq!(
        c.one("package-to-path", &[N(pci), N(BUF as u32), N(64)]),
        20
    );
    assert_eq!(c.buf_str(21), "/pci@800000020000000\0");
    // Walking: every node is reachable with child/peer, nextprop lists them all.
    let mut seen = 0;
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        seen += 1;
        let mut ch = c.one("child", &[N(n)]);
        while ch != 0 {
            assert_ne!(ch, ERR);
            stack.push(ch);
            ch = c.one("peer", &[N(ch)]);
        }
    }
    assert_eq!(seen, c.fw.tree.node_count());
    let mut names = Vec::new();
    let mut prev = String::new();
    loop {
        let (_, r) = c.call("nextprop", &[N(pci), S(&prev), N(BUF as u32)], 1);
        if r[0] == 0 {
            break;
        }
        assert_eq!(r[0], 1);
        let mut b = vec![0u8; 80];
        c.p.mem.read(BUF, &mut b).unwrap();
        prev = String::from_utf8(b[..b.iter().position(|x| *x == 0).unwrap()].to_vec()).unwrap();
        names.push(prev.clone());
    }
    assert_eq!(names[0], "name");
    assert_eq!(
        names.len(),
        c.fw.tree
            .props(c.fw.tree.find("/pci@800000020000000").unwrap())
            .count()
            + 1
    );
    assert!(names.contains(&"ibm,ddw-applicable".to_string()));
    // setprop shows in getprop.
    assert_eq!(
        c.one("setprop", &[N(chosen), S("linux,test"), S("abc"), N(4)]),
        4
    );
    assert_eq!(
        c.one(
            "getprop",
            &[N(chosen), S("linux,test"), N(BUF as u32), N(8)]
        ),
        4
    );
    assert_eq!(c.buf_str(4), "abc\0");
    assert_eq!(c.one("test", &[S("getprop")]), 0);
    assert_eq!(c.one("test", &[S("frobnicate")]), ERR);
}

#[test]
fn chosen_instances_like_prom_init() {
    let mut c = Client::new("qemu-7.2-kernel");
    let chosen = c.one("finddevice", &[S("/chosen")]);
    assert_eq!(
        c.one("getprop", &[N(chosen), S("stdout"), N(BUF as u32), N(4)]),
        4
    );
    let stdout = c.p.mem.read_be32(BUF).unwrap();
    let vty = c.one("instance-to-package", &[N(stdout)]);
    assert_eq!(c.one("finddevice", &[S("/vdevice/vty@71000000")]), vty);
    assert_eq!(
        c.one("instance-to-path", &[N(stdout), N(BUF as u32), N(255)]),
        21
    );
    assert_eq!(c.buf_str(22), "/vdevice/vty@71000000\0");
    // write goes to the vty as is.
    c.p.console.clear();
    assert_eq!(
        c.one(
            "write",
            &[N(stdout), S("Preparing to boot Linux\r\n"), N(25)]
        ),
        25
    );
    assert_eq!(c.p.console_text(), "Preparing to boot Linux\r\n");
    // /chosen/cpu is an instance of the boot CPU.
    assert_eq!(
        c.one("getprop", &[N(chosen), S("cpu"), N(BUF as u32), N(4)]),
        4
    );
    let cpu = c.one("instance-to-package", &[N(c.p.mem.read_be32(BUF).unwrap())]);
    assert_eq!(
        c.one("getprop", &[N(cpu), S("reg"), N(BUF as u32), N(4)]),
        4
    );
    // open/close and what cannot be opened.
    let root_ih = c.one("open", &[S("/")]);
    assert_ne!(root_ih, 0);
    c.call("close", &[N(root_ih)], 0);
    assert_eq!(c.one("instance-to-package", &[N(root_ih)]), ERR);
    assert_eq!(
        c.one("open", &[S("/pci@800000020000000")]),
        0,
        "no driver for the PHB"
    );
    assert_eq!(c.one("open", &[S("/nowhere")]), 0);
    assert!(c.one("milliseconds", &[]) < 1000);
}

#[test]
fn claims_follow_prom_init() {
    let mut c = Client::new("qemu-7.2-default");
    // alloc_down from the top: the firmware heap is refused, below it works.
    assert_eq!(
        c.one("claim", &[N(0x300_0000), N(0x10_0000), N(0)]),
        ERR,
        "heap"
    );
    assert_eq!(
        c.one("claim", &[N(0x200_0000), N(0x10_0000), N(0)]),
        0x200_0000
    );
    assert_eq!(
        c.one("claim", &[N(0x200_0000), N(0x1000), N(0)]),
        ERR,
        "twice"
    );
    assert_eq!(
        c.one("claim", &[N(0x4_0000), N(0x1000), N(0)]),
        ERR,
        "firmware image"
    );
    assert_eq!(
        c.one("claim", &[N(0x40_0000), N(0x1000), N(0)]),
        ERR,
        "the kernel's own image"
    );
    let a = c.one("claim", &[N(0), N(0x1_0000), N(0x1_0000)]);
    assert!(a != ERR && a.is_multiple_of(0x1_0000));
    c.call("release", &[N(0x200_0000), N(0x10_0000)], 0);
    assert_eq!(
        c.one("claim", &[N(0x200_0000), N(0x10_0000), N(0)]),
        0x200_0000
    );
    // /memory@0 available reflects the claims.
    let mem = c.fw.tree.find("/memory@0").unwrap();
    let avail = c.fw.tree.prop(mem, "available").unwrap().to_vec();
    let ranges: Vec<(u64, u64)> = avail
        .chunks(16)
        .map(|e| {
            (
                u64::from_be_bytes(e[..8].try_into().unwrap()),
                u64::from_be_bytes(e[8..].try_into().unwrap()),
            )
        })
        .collect();
    assert!(
        ranges.iter().all(|(b, s)| *b + *s <= 512 << 20),
        "QEMU's tree says 512 MiB"
    );
    assert!(!ranges
        .iter()
        .any(|(b, s)| *b < 0x210_0000 && b + s > 0x200_0000));
}

#[test]
fn hostile_calls_get_errors() {
    let mut c = Client::new("qemu-7.2-kernel");
    // Unknown service, wrong counts, unreadable service name, too many cells.
    assert_eq!(c.call("frobnicate", &[], 1).0, -1);
    assert_eq!(c.call("getprop", &[N(1), N(2)], 1).0, -1);
    assert_eq!(c.call("finddevice", &[S("/")], 2).0, -1);
    assert_eq!(c.raw(0xffff_ff00, &[], 1).0, -1);
    assert_eq!(c.raw(STR as u32, &[0; 21], 0).0, -1);
    // Unterminated strings and pointers outside RAM.
    c.p.mem.fill(STR, 0x1000, b'x').unwrap();
    assert_eq!(c.raw(STR as u32, &[], 1).0, -1);
    assert_eq!(c.one("finddevice", &[N(0xfff0_0000)]), ERR);
    // Bad phandles and ihandles.
    for ph in [0, 1, 0xffff_ffff, 0x1234_5678] {
        assert_eq!(c.one("getproplen", &[N(ph), S("name")]), ERR);
        assert_eq!(c.one("child", &[N(ph)]), ERR);
        assert_eq!(c.one("instance-to-package", &[N(ph)]), ERR);
        assert_eq!(c.one("write", &[N(ph), S("x"), N(1)]), ERR);
    }
    // Writing into the firmware: getprop's buffer, claim results, rets.
    let root = c.one("peer", &[N(0)]);
    assert_eq!(
        c.one("getprop", &[N(root), S("model"), N(0x2000), N(64)]),
        ERR
    );
    assert_eq!(
        c.one("getprop", &[N(root), S("model"), N(0xffff_0000), N(64)]),
        ERR
    );
    // A huge setprop is refused, not allocated.
    assert_eq!(
        c.one(
            "setprop",
            &[N(root), S("big"), N(BUF as u32), N(0xffff_ffff)]
        ),
        ERR
    );
    // Unknown methods and methods on the wrong instance.
    let root_ih = c.one("open", &[S("/")]);
    let (r3, r) = c.call("call-method", &[S("frobnicate"), N(root_ih)], 1);
    assert_eq!((r3, r[0]), (0, ERR));
    let (_, r) = c.call(
        "call-method",
        &[S("instantiate-rtas"), N(root_ih), N(0x200_0000)],
        2,
    );
    assert_eq!(r[0], ERR);
    let (_, r) = c.call(
        "call-method",
        &[S("color!"), N(c.fw.client.stdout), N(1), N(2), N(3), N(4)],
        1,
    );
    assert_eq!(r[0], ERR);
    let (_, r) = c.call("interpret", &[S("output-device output")], 1);
    assert_eq!(r[0], 0);
    let (_, r) = c.call("interpret", &[S("0 0 do-something")], 1);
    assert_eq!(r[0], ERR);
    // The firmware still answers valid calls.
    assert_eq!(
        c.one("finddevice", &[S("/rtas")]),
        c.fw.tree.phandle(c.fw.tree.find("/rtas").unwrap()).unwrap()
    );
}

#[test]
fn instantiate_rtas_installs_the_stub_or_runtime() {
    let mut c = Client::new("qemu-7.2-kernel");
    let rtas_ih = c.one("open", &[S("/rtas")]);
    let (r3, r) = c.call(
        "call-method",
        &[S("instantiate-rtas"), N(rtas_ih), N(0x200_0000)],
        2,
    );
    assert_eq!((r3, r[0], r[1]), (0, 0, 0x200_0000));
    assert_eq!(
        c.p.mem.read_be32(0x200_0000).unwrap(),
        resident::RTAS_STUB[0]
    );
    assert_eq!(c.p.mem.read_be32(0x200_0010).unwrap(), 0x4e80_0020);
    assert!(!c.fw.client.rtas.unwrap().resident);
}

#[test]
fn cas_merges_the_platform_tree_and_refuses_what_qemu_would_exit_on() {
    let mut c = Client::new("qemu-7.2-kernel");
    let root_ih = c.one("open", &[S("/")]);
    let vec_at = 0x0180_0000u64;
    // Both MMUs: refused without a hypercall.
    c.p.mem
        .write(vec_at, &super::cas::tests::linux_like(0xc0, 0))
        .unwrap();
    let (r3, r) = c.call(
        "call-method",
        &[
            S("ibm,client-architecture-support"),
            N(root_ih),
            N(vec_at as u32),
        ],
        2,
    );
    assert_eq!((r3, r[0], r[1]), (0, 0, ERR));
    assert!(!c
        .p
        .calls
        .iter()
        .any(|x| matches!(x, crate::fake::Call::Hcall { opcode: 0xf002, .. })));
}

// --- faults from the platform: every call the client interface makes ----

use crate::firmware::test_log;
use crate::hcall::{op as hop, rc as hrc, HcallReturn};

/// The fake platform with an H_CAS that "succeeds" and writes `reply`.
struct CasReply<'a> {
    p: &'a mut FakePlatform,
    reply: Vec<u8>,
}

impl Memory for CasReply<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), crate::memory::MemError> {
        self.p.read(addr, buf)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), crate::memory::MemError> {
        self.p.write(addr, data)
    }
}

impl Hypervisor for CasReply<'_> {
    fn hcall(&mut self, opcode: u64, args: &[u64]) -> HcallReturn {
        if opcode == hop::KVMPPC_H_CAS {
            let _ = self.p.write(args[1], &self.reply);
            return HcallReturn::default();
        }
        self.p.hcall(opcode, args)
    }
}

impl Platform for CasReply<'_> {
    fn scratch(&self) -> u64 {
        self.p.scratch()
    }
    fn timebase(&self) -> u64 {
        self.p.timebase()
    }
    fn alloc_phys(&mut self, size: u64, align: u64) -> Option<u64> {
        self.p.alloc_phys(size, align)
    }
    fn free_phys(&mut self, addr: u64, size: u64, align: u64) {
        self.p.free_phys(addr, size, align)
    }
}

/// QEMU's CAS reply: header, then its whole tree with `/chosen` holding only
/// the negotiated OV5.
fn qemu_cas_reply(tree: &str) -> Vec<u8> {
    let mut t = Tree::from_fdt(&golden(tree)).unwrap();
    let chosen = t.find("/chosen").unwrap();
    let names: Vec<String> = t.props(chosen).map(|(n, _)| String::from(n)).collect();
    for n in names {
        t.remove_prop(chosen, &n).unwrap();
    }
    let mut ov5 = alloc::vec![0u8; 27];
    ov5[0] = 25;
    ov5[24] = 0x40;
    t.set_prop(chosen, "ibm,architecture-vec-5", &ov5).unwrap();
    let mut v = alloc::vec![0, 0, 0, 1];
    v.extend_from_slice(&t.to_fdt());
    v
}

const VEC: u64 = 0x0180_0000;

#[test]
fn cas_reports_platform_failures_and_leaves_the_tree() {
    let vector = super::cas::tests::linux_like(0x40, 0x40);
    // H_CAS itself fails.
    for rc in [
        hrc::H_HARDWARE,
        hrc::H_PARAMETER,
        hrc::H_FUNCTION,
        hrc::H_MULTI_THREADS_ACTIVE,
    ] {
        let mut c = Client::new("qemu-7.2-kernel");
        let before = c.fw.tree.to_fdt();
        let root_ih = c.one("open", &[S("/")]);
        c.p.mem.write(VEC, &vector).unwrap();
        c.p.inject_hcall(hop::KVMPPC_H_CAS, rc, 1);
        test_log::start();
        let (r3, r) = c.call(
            "call-method",
            &[
                S("ibm,client-architecture-support"),
                N(root_ih),
                N(VEC as u32),
            ],
            2,
        );
        assert_eq!((r3, r[0], r[1]), (0, 0, ERR), "H_CAS {rc}");
        assert!(
            test_log::warned("H_CAS returned"),
            "{rc}: {:?}",
            test_log::take()
        );
        assert_eq!(c.fw.tree.to_fdt(), before, "H_CAS {rc} changed the tree");
        assert_eq!(c.fw.client.cas, None);
        assert_eq!(
            c.one("finddevice", &[S("/chosen")]),
            c.fw.tree
                .phandle(c.fw.tree.find("/chosen").unwrap())
                .unwrap()
        );
    }
    // No memory for the reply.
    let mut c = Client::new("qemu-7.2-kernel");
    c.p.mem.write(VEC, &vector).unwrap();
    c.p.phys = crate::memory::RangeAllocator::new();
    test_log::start();
    assert_eq!(c.fw.client_architecture_support(&mut c.p, VEC), -1);
    assert!(
        test_log::warned("no memory for the reply"),
        "{:?}",
        test_log::take()
    );
    // H_CAS succeeds but its reply is unusable.
    let good = qemu_cas_reply("qemu-7.2-kernel");
    let mut bad_version = good.clone();
    bad_version[3] = 7;
    let mut no_magic = good.clone();
    no_magic[4] = 0;
    let mut too_big = good.clone();
    too_big[8..12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let mut bad_struct = good.clone();
    bad_struct[12..16].copy_from_slice(&0x00ff_fff0u32.to_be_bytes());
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let cases: [(&str, Vec<u8>); 6] = [
        ("unknown header version", bad_version),
        ("no tree after the header", no_magic),
        ("a tree larger than the buffer", too_big),
        ("a malformed tree", bad_struct),
        ("nothing written", Vec::new()),
        ("half a tree", truncated),
    ];
    for (what, reply) in cases {
        let mut c = Client::new("qemu-7.2-kernel");
        c.p.mem.write(VEC, &vector).unwrap();
        let before = c.fw.tree.to_fdt();
        test_log::start();
        let st =
            c.fw.client_architecture_support(&mut CasReply { p: &mut c.p, reply }, VEC);
        assert_eq!(st, -1, "{what}");
        assert!(test_log::warned("cas: "), "{what}: {:?}", test_log::take());
        assert_eq!(c.fw.tree.to_fdt(), before, "{what} changed the tree");
        assert_eq!(c.fw.client.cas, None, "{what}");
        assert_eq!(
            c.one("peer", &[N(0)]),
            c.fw.tree.phandle(c.fw.tree.root()).unwrap(),
            "{what}"
        );
    }
    // And QEMU's real shape works, keeping what papr-fw presents.
    let mut c = Client::new("qemu-7.2-kernel");
    c.p.mem.write(VEC, &vector).unwrap();
    let stdout = c.fw.client.stdout;
    let st = c.fw.client_architecture_support(
        &mut CasReply {
            p: &mut c.p,
            reply: good,
        },
        VEC,
    );
    assert_eq!(st, 0);
    assert_eq!(
        c.fw.client.cas,
        Some(CasOutcome {
            radix: true,
            xive: true
        })
    );
    let chosen = c.fw.tree.find("/chosen").unwrap();
    assert_eq!(c.fw.tree.prop_u32(chosen, "stdout"), Some(stdout));
    assert!(c.fw.tree.prop(chosen, "ibm,architecture-vec-5").is_some());
    let rtas = c.fw.tree.find("/rtas").unwrap();
    assert!(c.fw.tree.prop_u32(rtas, "rtas-size").is_some());
}

#[test]
fn quiesce_reports_platform_failures_and_completes() {
    type Setup = fn(&mut Client);
    let cases: [(&str, Setup, &str); 5] = [
        (
            "H_UPDATE_DT refuses the tree",
            |c| {
                c.p.inject_hcall(hop::KVMPPC_H_UPDATE_DT, hrc::H_PARAMETER, 1)
            },
            "H_UPDATE_DT returned",
        ),
        (
            "H_UPDATE_DT fails",
            |c| {
                c.p.inject_hcall(hop::KVMPPC_H_UPDATE_DT, hrc::H_HARDWARE, 1)
            },
            "H_UPDATE_DT returned",
        ),
        (
            "RTAS quiesce cannot be called",
            |c| c.p.inject_hcall(hop::KVMPPC_H_RTAS, hrc::H_HARDWARE, 1),
            "RTAS quiesce",
        ),
        (
            "no memory to flatten the tree",
            |c| c.p.phys = crate::memory::RangeAllocator::new(),
            "no memory to flatten",
        ),
        (
            "the firmware's TCEs cannot be unmapped",
            |c| {
                let liobn = 0x8000_0000;
                c.fw.tce
                    .map(
                        &mut c.p,
                        liobn,
                        0x20_0000,
                        0x4000,
                        crate::tce::Perm::ReadWrite,
                    )
                    .unwrap();
                c.p.inject_hcall(hop::H_STUFF_TCE, hrc::H_HARDWARE, 100);
                c.p.inject_hcall(hop::H_PUT_TCE, hrc::H_HARDWARE, 100);
            },
            "TCE unmaps failed",
        ),
    ];
    for (what, setup, warning) in cases {
        let mut c = Client::new("qemu-7.2-kernel");
        setup(&mut c);
        test_log::start();
        let (r3, _) = c.call("quiesce", &[], 0);
        assert_eq!(r3, 0, "{what}");
        assert!(c.fw.client.quiesced, "{what}");
        assert!(test_log::warned(warning), "{what}: {:?}", test_log::take());
        // The client interface still answers (Linux makes no more calls, a
        // boot loader might).
        assert_eq!(
            c.one("peer", &[N(0)]),
            c.fw.tree.phandle(c.fw.tree.root()).unwrap(),
            "{what}"
        );
        let (r3, _) = c.call("quiesce", &[], 0);
        assert_eq!(r3, 0, "{what}: a second quiesce");
    }
}

#[test]
fn start_cpu_and_the_console_report_platform_failures() {
    let mut c = Client::new("qemu-7.2-smp4");
    let cpus: Vec<u32> = crate::summary::cpus(&c.fw.tree)
        .iter()
        .filter_map(|(n, _)| c.fw.tree.phandle(*n))
        .collect();
    assert!(cpus.len() >= 2);
    // start-cpu: the platform refuses, or cannot be called.
    c.p.inject_rtas("start-cpu", -1, 1);
    test_log::start();
    let (r3, _) = c.call("start-cpu", &[N(cpus[1]), N(0x6000), N(0)], 0);
    assert_eq!(r3, 0);
    assert!(test_log::warned("start-cpu"), "{:?}", test_log::take());
    c.p.inject_hcall(hop::KVMPPC_H_RTAS, hrc::H_HARDWARE, 1);
    test_log::start();
    let (r3, _) = c.call("start-cpu", &[N(cpus[1]), N(0x6000), N(0)], 0);
    assert_eq!(r3, 0);
    assert!(test_log::warned("start-cpu"), "{:?}", test_log::take());
    // write: a failing terminal is -1, a busy one is retried, then given up
    // on without trying every chunk.
    let out = c.fw.client.stdout;
    let text = "x".repeat(100);
    c.p.inject_hcall(hop::H_PUT_TERM_CHAR, hrc::H_HARDWARE, 1);
    assert_eq!(c.one("write", &[N(out), S(&text), N(100)]), ERR);
    c.p.inject_hcall(hop::H_PUT_TERM_CHAR, hrc::H_BUSY, 500);
    assert_eq!(c.one("write", &[N(out), S(&text), N(100)]), 100);
    c.p.inject_hcall(hop::H_PUT_TERM_CHAR, hrc::H_BUSY, 1_000_000);
    let calls = c.p.calls.len();
    assert_eq!(c.one("write", &[N(out), S(&text), N(100)]), ERR);
    assert!(
        c.p.calls.len() - calls <= 1001,
        "a busy terminal is given up on"
    );
    c.p.inject_hcall(hop::H_PUT_TERM_CHAR, hrc::H_BUSY, 0);
    c.p.console.clear();
    assert_eq!(c.one("write", &[N(out), S(&text), N(100)]), 100);
    assert_eq!(c.p.console_text(), text, "the terminal works again");
    // read: a failing terminal gives no bytes.
    c.p.inject_hcall(hop::H_GET_TERM_CHAR, hrc::H_HARDWARE, 1);
    c.p.console_input.extend_from_slice(b"abc");
    assert_eq!(c.one("read", &[N(out), N(BUF as u32), N(16)]), 0);
    assert_eq!(c.one("read", &[N(out), N(BUF as u32), N(16)]), 3);
}

// --- hostile clients and the firmware's own memory ----------------------

#[test]
fn setprop_cannot_exhaust_the_firmware_heap() {
    // The conformance client found this: 1 MiB properties under new names
    // grew the tree until the heap ran out and papr-fw panicked.
    let mut c = Client::new("qemu-7.2-kernel");
    let chosen = c.one("finddevice", &[S("/chosen")]);
    let src = 0x40_0000;
    let mut n = 0;
    loop {
        let name = format!("fill-{n}");
        if c.one("setprop", &[N(chosen), S(&name), N(src), N(1 << 20)]) == ERR {
            break;
        }
        n += 1;
        assert!(n < 64, "setprop never refuses");
    }
    assert_eq!(n, (CLIENT_PROP_BUDGET >> 20) as u32 - 1);
    // Emptying a property gives its bytes back; replacing one costs only the difference.
    assert_eq!(c.one("setprop", &[N(chosen), S("fill-0"), N(src), N(0)]), 0);
    assert_eq!(
        c.one("setprop", &[N(chosen), S("fill-again"), N(src), N(1 << 20)]),
        1 << 20
    );
    assert_eq!(
        c.one("setprop", &[N(chosen), S("fill-1"), N(src), N(1 << 20)]),
        1 << 20
    );
    assert_eq!(
        c.one("setprop", &[N(chosen), S("fill-1"), N(src), N(2 << 20)]),
        ERR,
        "growing one by 1 MiB"
    );
    // Small properties as prom_init sets them still work.
    assert_eq!(
        c.one("setprop", &[N(chosen), S("linux,x"), S("abc"), N(4)]),
        4
    );
}

#[test]
fn tiny_claims_are_bounded() {
    // Also found by the conformance client: 20000 one-byte claims took two
    // minutes under TCG (every claim re-encodes /memory available).
    let mut c = Client::new("qemu-7.2-kernel");
    let base = 0x200_0000u32;
    let mut got = 0;
    for i in 0..5000 {
        if c.one("claim", &[N(base + 2 * i), N(1), N(0)]) == ERR {
            break;
        }
        got += 1;
    }
    assert!(
        got < 5000 && got + 3 >= claim::MAX_CLAIMS as u32,
        "{got} claims"
    );
    for i in 0..got {
        c.call("release", &[N(base + 2 * i), N(1)], 0);
    }
    assert_eq!(
        c.one("claim", &[N(base), N(0x10_0000), N(0)]),
        base,
        "all released"
    );
}
