//! Booting from disks on QEMU's own device tree (qemu-7.2-devices: an NVMe
//! at 00:00.0, virtio-blk at 00:01.0, virtio-net at 00:02.0, virtio-scsi at
//! 00:03.0) with the fake devices behind it: probing, the tree
//! presentation, boot order and fall-through, ELF loading, and the client
//! interface as GRUB drives it.

use super::*;
use crate::cif::ClientImage;
use crate::disklabel::tests::{gpt_disk, mbr_disk};
use crate::disklabel::{Guid, GPT_PREP};
use crate::elf::tests::elf;
use crate::fake::nvme::FakeNvme;
use crate::fake::pci::FakeFunction;
use crate::fake::virtio::{lun, FakeVirtio};
use crate::fake::FakePlatform;
use crate::firmware::Layout;
use crate::memory::Memory;
use crate::pci::Bdf;
use alloc::string::ToString;

const RAM: usize = 64 << 20;
const DISK_BLOCKS: u64 = 16384;
const BLOCK: u64 = 0x0100_0000;
const STR: u64 = 0x0100_1000;
const BUF: u64 = 0x0100_4000;
const NVME: &str = "/pci@800000020000000/mass-storage@0";
const BLK: &str = "/pci@800000020000000/scsi@1";
const SCSI: &str = "/pci@800000020000000/scsi@3";
const LINUX_FS: Guid = Guid::new(
    0x0FC6_3DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

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

/// GRUB's core image in miniature: ELF32 big-endian at 0x200000.
fn grub_like() -> (Vec<u8>, Vec<u8>) {
    let code: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    (
        elf(false, false, 0x20_0000, 0x20_0000, &code, 0x3000, 0),
        code,
    )
}

/// A disk of [`DISK_BLOCKS`] blocks: GPT with partition 1 (PReP, 1 MiB at
/// LBA 2048) holding `image`, partition 2 a Linux filesystem.
fn gpt_with(image: Option<&[u8]>, prep_type: Guid) -> Vec<u8> {
    let mut d = gpt_disk(&[(prep_type, 2048, 4095), (LINUX_FS, 4096, 16000)]).data;
    d.resize((DISK_BLOCKS * 512) as usize, 0);
    if let Some(img) = image {
        d[2048 * 512..2048 * 512 + img.len()].copy_from_slice(img);
    }
    // Something recognisable in the filesystem partition.
    for (i, b) in d[4096 * 512..4100 * 512].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    d
}

fn blank() -> Vec<u8> {
    alloc::vec![0u8; (DISK_BLOCKS * 512) as usize]
}

struct Rig {
    p: FakePlatform,
    fw: Firmware,
}

fn rig(nvme: Vec<u8>, blk: Vec<u8>, scsi: Vec<u8>, iommu: bool, boot_list: Option<&str>) -> Rig {
    let mut fdt = golden("qemu-7.2-devices");
    if let Some(list) = boot_list {
        let mut t = crate::devtree::Tree::from_fdt(&fdt).unwrap();
        let c = t.find("/chosen").unwrap();
        t.set_prop_str(c, "qemu,boot-list", list).unwrap();
        fdt = t.to_fdt();
    }
    let tree = crate::devtree::Tree::from_fdt(&fdt).unwrap();
    let (phbs, _) = crate::pci::tree::phbs(&tree);
    let mut p = FakePlatform::new(RAM);
    p.plug_qemu_tree(&phbs);
    let mut n = FakeNvme::new(DISK_BLOCKS, 512);
    n.disk = nvme;
    p.add_function(0, FakeFunction::qemu_nvme(Bdf::new(0, 0, 0), n));
    let mut vb = FakeVirtio::blk(DISK_BLOCKS, 512, iommu);
    vb.blk_mut().unwrap().disk = blk;
    p.add_function(0, FakeFunction::qemu_virtio_blk_with(Bdf::new(0, 1, 0), vb));
    let mut l = lun(0, 0, 0, DISK_BLOCKS, 512);
    l.disk = scsi;
    p.add_function(
        0,
        FakeFunction::qemu_virtio_scsi_with(
            Bdf::new(0, 3, 0),
            FakeVirtio::scsi(alloc::vec![l], iommu),
        ),
    );
    let mut fw = Firmware::start(&mut p, &fdt, layout()).unwrap();
    fw.prepare_client(&ClientImage {
        entry: 0,
        image: Range::default(),
        initrd: Range::default(),
    });
    Rig { p, fw }
}

enum Arg<'a> {
    N(u32),
    S(&'a str),
}
use Arg::{N, S};

impl Rig {
    fn call(&mut self, service: &str, args: &[Arg], nret: u32) -> (i64, Vec<u32>) {
        let mut at = STR;
        let mut put = |p: &mut FakePlatform, s: &str| {
            let a = at;
            p.mem.write(a, s.as_bytes()).unwrap();
            p.mem.write_u8(a + s.len() as u64, 0).unwrap();
            at += s.len() as u64 + 1;
            a as u32
        };
        let svc = put(&mut self.p, service);
        let cells: Vec<u32> = args
            .iter()
            .map(|a| match a {
                N(n) => *n,
                S(s) => put(&mut self.p, s),
            })
            .collect();
        let m = &mut self.p.mem;
        m.write_be32(BLOCK, svc).unwrap();
        m.write_be32(BLOCK + 4, cells.len() as u32).unwrap();
        m.write_be32(BLOCK + 8, nret).unwrap();
        for (i, c) in cells.iter().enumerate() {
            m.write_be32(BLOCK + 12 + 4 * i as u64, *c).unwrap();
        }
        let rets_at = BLOCK + 12 + 4 * cells.len() as u64;
        let r3 = self.fw.cif_call(&mut self.p, BLOCK);
        let rets = (0..nret as u64)
            .map(|i| self.p.mem.read_be32(rets_at + 4 * i).unwrap())
            .collect();
        (r3, rets)
    }

    fn one(&mut self, service: &str, args: &[Arg]) -> u32 {
        let (r3, r) = self.call(service, args, 1);
        assert_eq!(r3, 0, "{service}");
        r[0]
    }

    fn buf(&self, len: usize) -> Vec<u8> {
        let mut b = alloc::vec![0u8; len];
        self.p.mem.read(BUF, &mut b).unwrap();
        b
    }

    fn chosen_str(&self, name: &str) -> Option<String> {
        let c = self.fw.tree.find("/chosen")?;
        self.fw.tree.prop_str(c, name).map(String::from)
    }
}

#[test]
fn probes_presents_and_boots_the_prep_elf() {
    let (img, code) = grub_like();
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        blank(),
        false,
        None,
    );
    // The bss of the image is cleared even if memory held something.
    r.p.mem.fill(0x20_0000, 0x3000, 0xee).unwrap();
    let b = r.fw.boot_from_disks(&mut r.p).unwrap();
    let st = &r.fw.storage;
    let paths: Vec<&str> = st.disks.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/pci@800000020000000/mass-storage@0/namespace@1",
            BLK,
            "/pci@800000020000000/scsi@3/disk@100000000000000"
        ]
    );
    assert!(st
        .disks
        .iter()
        .all(|d| d.blocks == DISK_BLOCKS && d.block_size == 512));
    assert_eq!(b.disk, 0);
    assert_eq!(b.partition, 1);
    assert_eq!(b.entry, 0x20_0000);
    assert_eq!(
        b.mode,
        EntryMode {
            sf: false,
            le: false,
            toc: None
        }
    );
    assert_eq!(b.image, Range::new(0x20_0000, 0x3000));
    assert_eq!(b.bootpath, format!("{NVME}/namespace@1:1"));
    let mut got = alloc::vec![0u8; 0x3000];
    r.p.mem.read(0x20_0000, &mut got).unwrap();
    assert_eq!(&got[..code.len()], &code[..]);
    assert!(got[code.len()..].iter().all(|x| *x == 0), "bss cleared");
    // /chosen, the tree and the aliases.
    assert_eq!(r.chosen_str("bootpath").unwrap(), b.bootpath);
    assert_eq!(r.chosen_str("bootargs").as_deref(), Some(""));
    let t = &r.fw.tree;
    let ns = t.find(&format!("{NVME}/namespace@1")).unwrap();
    assert_eq!(t.prop_str(ns, "device_type"), Some("block"));
    assert_eq!(t.prop_u32(ns, "reg"), Some(1));
    assert_eq!(
        t.prop_str(t.find(BLK).unwrap(), "device_type"),
        Some("block")
    );
    let sd = t.find(&format!("{SCSI}/disk@100000000000000")).unwrap();
    assert_eq!(t.prop_str(sd, "device_type"), Some("block"));
    assert_eq!(t.prop_u32(t.find(SCSI).unwrap(), "#address-cells"), Some(2));
    let aliases = t.find("/aliases").unwrap();
    assert_eq!(t.prop_str(aliases, "disk"), Some(paths[0]));
    assert_eq!(t.prop_str(aliases, "disk0"), Some(paths[0]));
    assert_eq!(t.prop_str(aliases, "disk2"), Some(paths[2]));
    assert_eq!(t.find("disk:0"), Some(ns), "finddevice resolves the alias");
    // The image is claimed for the client: not in /memory available.
    assert!(r
        .fw
        .client
        .claims
        .claimed()
        .contains(&Range::new(0x20_0000, 0x3000)));
    assert!(!r
        .fw
        .client
        .claims
        .available()
        .iter()
        .any(|a| a.overlaps(&b.image)));
}

#[test]
fn boot_list_order_and_fall_through() {
    let (img, _) = grub_like();
    // virtio-blk first (blank), then the SCSI disk (MBR 0x41 not active:
    // not PReP), then NVMe (bootable).
    let list = format!("{BLK}/disk@0,0 {SCSI}/disk@100000000000000 {NVME}/namespace@1,0");
    let mut mbr = mbr_disk(&[(0x41, false, 2048, 2048)]).data;
    mbr.resize((DISK_BLOCKS * 512) as usize, 0);
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        mbr,
        false,
        Some(&list),
    );
    let (order, strict, notes) = boot_order(&r.fw.storage, Some(&list));
    assert!(
        order.is_empty() && !strict && notes.len() == 3,
        "not probed yet"
    );
    let b = r.fw.boot_from_disks(&mut r.p).unwrap();
    assert_eq!(b.disk, 0);
    let (order, strict, notes) = boot_order(&r.fw.storage, Some(&list));
    assert_eq!((order, strict), (alloc::vec![1, 2, 0], false));
    assert!(notes.is_empty(), "{notes:?}");
    // What each disk says.
    assert_eq!(
        r.fw.load_from_disk(&mut r.p, 1).unwrap_err(),
        "no partition table"
    );
    assert_eq!(
        r.fw.load_from_disk(&mut r.p, 2).unwrap_err(),
        "no PReP boot partition among its 1 partition"
    );
    // An active 0x41 partition without an ELF.
    let mut mbr = mbr_disk(&[(0x41, true, 2048, 2048)]).data;
    mbr.resize((DISK_BLOCKS * 512) as usize, 0);
    let mut r = rig(blank(), blank(), mbr, false, None);
    r.fw.probe_storage(&mut r.p);
    assert_eq!(
        r.fw.load_from_disk(&mut r.p, 2).unwrap_err(),
        "PReP partition 1: not an ELF image"
    );
}

#[test]
fn nothing_bootable_and_strict_lists() {
    let mut r = rig(blank(), blank(), blank(), false, None);
    let e = r.fw.boot_from_disks(&mut r.p).unwrap_err();
    assert_eq!(e.disks, 3);
    assert_eq!(e.tried.len(), 3);
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "nothing to boot: no -kernel, and none of 3 disks has a bootable PReP partition; "
        ),
        "{msg}"
    );
    assert!(msg.contains(&format!("{BLK}: no partition table")), "{msg}");
    assert_eq!(r.chosen_str("bootpath"), None);
    // HALT: only the listed device is tried, even though NVMe would boot.
    let (img, _) = grub_like();
    let list = format!("{BLK} HALT");
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        blank(),
        false,
        Some(&list),
    );
    let e = r.fw.boot_from_disks(&mut r.p).unwrap_err();
    assert_eq!(e.tried.len(), 1);
    assert_eq!(e.tried[0].0, BLK);
    // A boot-list entry for something that is not a disk.
    let (_, _, notes) = boot_order(
        &r.fw.storage,
        Some("/pci@800000020000000/ethernet@2 /vdevice/v-scsi@71000002"),
    );
    assert_eq!(notes.len(), 2);
    assert_eq!(
        NothingBootable {
            disks: 0,
            tried: Vec::new()
        }
        .to_string(),
        "nothing to boot (no -kernel)"
    );
}

#[test]
fn boots_from_virtio_with_and_without_iommu_platform() {
    let (img, code) = grub_like();
    for iommu in [false, true] {
        for (blk, scsi, want) in [
            (gpt_with(Some(&img), GPT_PREP), blank(), 1),
            (blank(), gpt_with(Some(&img), GPT_PREP), 2),
        ] {
            let mut r = rig(blank(), blk, scsi, iommu, None);
            let b = r.fw.boot_from_disks(&mut r.p).unwrap();
            assert_eq!(b.disk, want, "iommu {iommu}");
            let mut got = alloc::vec![0u8; code.len()];
            r.p.mem.read(0x20_0000, &mut got).unwrap();
            assert_eq!(got, code);
            let label = &r.fw.storage.disks[want].label;
            assert!(
                label.contains(if iommu {
                    "through TCEs"
                } else {
                    "guest-physical"
                }),
                "{label}"
            );
        }
    }
}

#[test]
fn elf64_images_little_endian_relocated_and_descriptors() {
    // ELFv2 little-endian at physical 0 (a kernel): 0 is firmware memory,
    // so it moves to free memory.
    let code = [0x11u8; 64];
    let img = elf(true, true, 0xc000_0000_0000_0000, 0, &code, 0x1000, 2);
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        blank(),
        false,
        None,
    );
    let b = r.fw.boot_from_disks(&mut r.p).unwrap();
    assert!(b.mode.sf && b.mode.le && b.mode.toc.is_none());
    assert!(b.image.base >= 0x10_0000 && b.image.base.is_multiple_of(0x1_0000));
    assert_eq!(b.entry, b.image.base);
    let mut got = [0u8; 64];
    r.p.mem.read(b.image.base, &mut got).unwrap();
    assert_eq!(got, code);
    // ELFv1 big-endian: the entry is a descriptor (code, TOC).
    let mut code = alloc::vec![0u8; 32];
    code[0..8].copy_from_slice(&0x40_0010u64.to_be_bytes());
    code[8..16].copy_from_slice(&0x40_8000u64.to_be_bytes());
    let img = elf(true, false, 0x40_0000, 0x40_0000, &code, 0x100, 1);
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        blank(),
        false,
        None,
    );
    let b = r.fw.boot_from_disks(&mut r.p).unwrap();
    assert_eq!(
        (b.entry, b.mode.toc, b.mode.sf),
        (0x40_0010, Some(0x40_8000), true)
    );
    // A 32-bit image in firmware memory cannot move.
    let img = elf(false, false, 0x8000, 0x8000, &[0; 16], 16, 0);
    let mut r = rig(
        gpt_with(Some(&img), GPT_PREP),
        blank(),
        blank(),
        false,
        None,
    );
    let e = r.fw.boot_from_disks(&mut r.p).unwrap_err();
    assert!(e.tried[0].1.contains("is not free"), "{e}");
}

#[test]
fn boot_paths_map_to_disks() {
    let mut r = rig(blank(), blank(), blank(), false, None);
    r.fw.probe_storage(&mut r.p);
    let st = &r.fw.storage;
    for (path, want) in [
        (format!("{NVME}/namespace@1,0"), alloc::vec![0]),
        (format!("{NVME}/namespace@2,0"), alloc::vec![]),
        (NVME.to_string(), alloc::vec![0]),
        (format!("{BLK}/disk@0,0"), alloc::vec![1]),
        (BLK.to_string(), alloc::vec![1]),
        (format!("{SCSI}/disk@100000000000000"), alloc::vec![2]),
        (format!("{SCSI}/disk@100000000000000:1"), alloc::vec![2]),
        (format!("{SCSI}/disk@101000000000000"), alloc::vec![]),
        (SCSI.to_string(), alloc::vec![2]),
        (
            String::from("/pci@800000020000000/ethernet@2"),
            alloc::vec![],
        ),
    ] {
        assert_eq!(map_boot_path(st, &path), want, "{path}");
    }
}

#[test]
fn grub_drives_the_disk_through_the_client_interface() {
    let (img, _) = grub_like();
    let disk = gpt_with(Some(&img), GPT_PREP);
    let mut r = rig(blank(), disk.clone(), blank(), true, None);
    r.fw.boot_from_disks(&mut r.p).unwrap();
    // What ofdisk.c does: finddevice, device_type, open, block-size, close.
    let dev = r.one("finddevice", &[S("disk1")]);
    assert_ne!(dev, u32::MAX);
    assert_eq!(
        r.one("getprop", &[N(dev), S("device_type"), N(BUF as u32), N(64)]),
        6
    );
    assert_eq!(&r.buf(6), b"block\0");
    let ih = r.one("open", &[S(BLK)]);
    assert_ne!(ih, 0);
    let (r3, rets) = r.call("call-method", &[S("block-size"), N(ih)], 2);
    assert_eq!((r3, rets[0], rets[1]), (0, 0, 512));
    let (_, rets) = r.call("call-method", &[S("#blocks"), N(ih)], 2);
    assert_eq!(rets[1], DISK_BLOCKS as u32);
    r.call("close", &[N(ih)], 0);
    // Then the whole disk as ":0", seek/read pairs of 32 KiB.
    let ih = r.one("open", &[S(&format!("{BLK}:0"))]);
    assert_ne!(ih, 0);
    for pos in [0u64, 4096 * 512, 17 * 512 + 3, DISK_BLOCKS * 512 - 32768] {
        assert_eq!(
            r.one("seek", &[N(ih), N((pos >> 32) as u32), N(pos as u32)]),
            0
        );
        assert_eq!(r.one("read", &[N(ih), N(BUF as u32), N(32768)]), 32768);
        assert_eq!(
            r.buf(32768),
            disk[pos as usize..pos as usize + 32768],
            "at {pos:#x}"
        );
    }
    // At the end: a short read, then nothing; beyond the end: seek fails.
    let end = DISK_BLOCKS * 512;
    assert_eq!(r.one("seek", &[N(ih), N(0), N((end - 100) as u32)]), 0);
    assert_eq!(r.one("read", &[N(ih), N(BUF as u32), N(32768)]), 100);
    assert_eq!(r.one("read", &[N(ih), N(BUF as u32), N(32768)]), 0);
    assert_eq!(r.one("seek", &[N(ih), N(0), N((end + 1) as u32)]), u32::MAX);
    // A buffer in firmware memory is refused.
    assert_eq!(r.one("seek", &[N(ih), N(0), N(0)]), 0);
    assert_eq!(r.one("read", &[N(ih), N(0x8000), N(512)]), u32::MAX);
    // Write at an odd position and read it back (read-modify-write).
    r.p.mem.fill(BUF, 1000, 0x3c).unwrap();
    assert_eq!(r.one("seek", &[N(ih), N(0), N(6 << 20 | 7)]), 0);
    assert_eq!(r.one("write", &[N(ih), N(BUF as u32), N(1000)]), 1000);
    let dev_disk =
        r.p.virtio_mut(0x800000020000000, Bdf::new(0, 1, 0))
            .unwrap()
            .blk_mut()
            .unwrap()
            .disk
            .clone();
    let at = (6 << 20) + 7;
    assert!(dev_disk[at..at + 1000].iter().all(|x| *x == 0x3c));
    assert_eq!(dev_disk[at - 1], disk[at - 1]);
    assert_eq!(dev_disk[at + 1000], disk[at + 1000]);
    // read-blocks / write-blocks / max-transfer.
    let (_, rets) = r.call(
        "call-method",
        &[S("read-blocks"), N(ih), N(BUF as u32), N(4096), N(2)],
        2,
    );
    assert_eq!((rets[0], rets[1]), (0, 2));
    assert_eq!(r.buf(1024), disk[4096 * 512..4098 * 512]);
    let (_, rets) = r.call("call-method", &[S("max-transfer"), N(ih)], 2);
    assert_eq!(rets[1], 256 << 10);
    let (_, rets) = r.call("call-method", &[S("no-such-method"), N(ih)], 2);
    assert_eq!(rets[0], u32::MAX);
    r.call("close", &[N(ih)], 0);
    // A partition: offsets are relative to its start.
    let ih = r.one("open", &[S("disk1:2")]);
    assert_ne!(ih, 0);
    assert_eq!(r.one("read", &[N(ih), N(BUF as u32), N(512)]), 512);
    assert_eq!(r.buf(512), disk[4096 * 512..4097 * 512]);
    let (_, rets) = r.call("call-method", &[S("#blocks"), N(ih)], 2);
    assert_eq!(rets[1], 16000 - 4096 + 1);
    // What cannot be opened: a file, a partition that does not exist, junk.
    for bad in [
        "disk1:2,\\boot\\vmlinux",
        "disk1:9",
        "disk1:x1",
        "disk1:,grub.cfg",
    ] {
        assert_eq!(r.one("open", &[S(bad)]), 0, "{bad}");
    }
    // Quiesce stops the devices and leaves no mapping behind.
    r.call("quiesce", &[], 0);
    let dev =
        r.p.virtio_mut(0x800000020000000, Bdf::new(0, 1, 0))
            .unwrap();
    assert_eq!(dev.status, 0);
    assert_eq!(r.p.tce_table(0x8000_0000).unwrap().mapped(), 0);
    assert_eq!(r.one("read", &[N(ih), N(BUF as u32), N(512)]), u32::MAX);
}

#[test]
fn disk_arguments() {
    use crate::cif::block::{parse_disk_args, DiskArgs};
    assert_eq!(parse_disk_args(""), Ok(DiskArgs::Whole));
    assert_eq!(parse_disk_args("0"), Ok(DiskArgs::Whole));
    assert_eq!(parse_disk_args("3"), Ok(DiskArgs::Partition(3)));
    assert_eq!(parse_disk_args("3,"), Ok(DiskArgs::Partition(3)));
    assert_eq!(parse_disk_args("b"), Ok(DiskArgs::Partition(2)));
    assert!(parse_disk_args("1,\\ppc\\bootinfo.txt").is_err());
    assert!(parse_disk_args("-1").is_err());
}

#[test]
fn broken_controllers_are_reported_and_skipped() {
    let (img, _) = grub_like();
    let mut r = rig(
        blank(),
        blank(),
        gpt_with(Some(&img), GPT_PREP),
        false,
        None,
    );
    let buid = 0x800000020000000;
    r.p.nvme_mut(buid, Bdf::new(0, 0, 0))
        .unwrap()
        .faults
        .never_ready = true;
    r.p.virtio_mut(buid, Bdf::new(0, 1, 0))
        .unwrap()
        .faults
        .refuse_features = true;
    // Let time pass quickly: the NVMe's 7.5 s ready timeout runs out.
    r.p.tb_step = 1 << 20;
    let b = r.fw.boot_from_disks(&mut r.p).unwrap();
    let st = &r.fw.storage;
    assert_eq!(st.disks.len(), 1);
    assert_eq!(b.bootpath, format!("{SCSI}/disk@100000000000000:1"));
    let lines = st.lines.join("\n");
    assert!(
        lines.contains(&format!(
            "storage: {NVME}: NVMe: controller did not become ready within 7500 ms"
        )) && lines.contains("; skipped"),
        "{lines}"
    );
    assert!(
        lines.contains(&format!(
            "storage: {BLK}: virtio-blk: device refused features"
        )),
        "{lines}"
    );
    // The failed virtio device is marked FAILED; nothing of theirs stays mapped.
    let dev = r.p.virtio_mut(buid, Bdf::new(0, 1, 0)).unwrap();
    assert_ne!(dev.status & crate::drivers::virtio::status::FAILED, 0);
}

#[test]
fn aliases_name_disks_and_cdroms_without_replacing_existing_ones() {
    use crate::storage::{Disk, DiskKind, Storage};
    let mut t = crate::devtree::Tree::from_fdt(&golden("qemu-7.2-devices")).unwrap();
    let root = t.root();
    let a = t.add_node(root, "aliases").unwrap();
    t.set_prop_str(a, "disk", "/somewhere/else").unwrap();
    let mut st = Storage::default();
    let disk = |kind, ctrl: &str, path: &str| Disk {
        controller: 0,
        kind,
        ctrl_path: String::from(ctrl),
        path: String::from(path),
        block_size: 512,
        blocks: 1,
        read_only: false,
        label: String::new(),
    };
    let cd = format!("{SCSI}/cdrom@101000000000000");
    st.disks.push(disk(
        DiskKind::Scsi {
            index: 0,
            target: 1,
            lun: 0,
            cdrom: true,
        },
        SCSI,
        &cd,
    ));
    st.disks.push(disk(DiskKind::VirtioBlk, BLK, BLK));
    st.disks.push(disk(
        DiskKind::Nvme { nsid: 1 },
        NVME,
        &format!("{NVME}/namespace@1"),
    ));
    assert!(st.present(&mut t).is_empty());
    let a = t.find("/aliases").unwrap();
    assert_eq!(t.prop_str(a, "disk"), Some("/somewhere/else"), "kept");
    assert_eq!(t.prop_str(a, "disk0"), Some(BLK));
    assert_eq!(
        t.prop_str(a, "disk1"),
        Some(format!("{NVME}/namespace@1").as_str())
    );
    assert_eq!(t.prop_str(a, "cdrom"), Some(cd.as_str()));
    assert_eq!(t.prop_str(a, "cdrom0"), Some(cd.as_str()));
    let n = t.find(&cd).unwrap();
    assert!(t.prop(n, "removable").is_some());
    assert_eq!(
        t.prop_cells(n, "reg").unwrap().collect::<Vec<_>>(),
        [0x0101_0000, 0]
    );
    assert_eq!(st.disk_of_node(&t, n), Some(0));
}
