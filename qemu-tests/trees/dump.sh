#!/usr/bin/env bash
# Dump QEMU's reset-time pseries device trees (the tree papr-fw receives in r3)
# for both QEMU versions in several machine configurations, as golden data for
# the host tests of src/devtree/ (which load them with include_bytes!) and as
# the seed corpus of fuzz/.
#
#   qemu-tests/trees/dump.sh            # (re)writes qemu-tests/trees/*.dtb
#   qemu-tests/trees/dump.sh bridge     # only the named configurations
#   qemu-tests/trees/dump.sh --huge F   # QEMU 7.2's largest tree to F (not
#                                       # committed; for the benchmark)
#
# QEMU 7.2 dumps with `-M pseries,dumpdtb=FILE`.  QEMU 10.0 moved `dumpdtb=` to
# generic code that runs before the spapr machine builds its tree at reset
# ("This machine doesn't have an FDT"), so for 10.0 the tree is dumped with the
# HMP `dumpdtb` command while the machine is stopped (-S) right after reset;
# that is the same tree.
# The trees contain a random /chosen/rng-seed, so re-dumping changes the files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PAPR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/papr-fw}
q72=/usr/bin/qemu-system-ppc64
q10=$cache/qemu-10.0/root/usr/bin/qemu-system-ppc64
q10_data=$cache/qemu-10.0/root/usr/share/qemu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A dummy "kernel" (a minimal big-endian ppc64 ELF with one 4 KiB PT_LOAD
# segment) and "initrd", so that QEMU writes the -kernel/-initrd/-append
# properties into /chosen and the reserve map.
python3 - "$tmp/kernel" <<'PY'
import struct, sys
ehdr = struct.pack(">4sBBBB8xHHIQQQIHHHHHH", b"\x7fELF", 2, 2, 1, 0,
                   2, 21, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
phdr = struct.pack(">IIQQQQQQ", 1, 5, 0, 0, 0, 4096, 4096, 4096)
open(sys.argv[1], "wb").write((ehdr + phdr).ljust(4096, b"\0"))
PY
head -c 8192 /dev/zero > "$tmp/initrd"

# Common to all but the "default" configuration: no default devices, the
# console on a spapr-vty (as the qemu-tests runner does).
base=(-nodefaults -serial null)
blk() { echo "-blockdev driver=null-co,node-name=$1,size=67108864"; }

declare -A configs
configs[default]=""
configs[smp4]="${base[*]} -smp 4"
configs[mem4g]="${base[*]} -m 4G"
configs[phb2]="${base[*]} -device spapr-pci-host-bridge,index=1"
configs[devices]="${base[*]} $(blk d0) $(blk d1) -device nvme,drive=d0,serial=papr0
  -device virtio-blk-pci,drive=d1 -device virtio-net-pci -device virtio-scsi-pci
  -device spapr-vscsi -device spapr-vlan"
configs[ddw-off]="${base[*]} -global spapr-pci-host-bridge.ddw=off"
configs[power8]="${base[*]} -cpu POWER8"
configs[power10]="${base[*]} -cpu POWER10"
configs[xive]="${base[*]} -M ic-mode=xive"
configs[kernel]="${base[*]} -kernel $tmp/kernel -initrd $tmp/initrd
  -append console=hvc0,root=/dev/sda"
# The largest tree: 64 CPUs, 4 PHBs, many devices, lots of memory.
large="${base[*]} -smp 64 -m 16G"
for i in 1 2 3; do large+=" -device spapr-pci-host-bridge,index=$i,id=phb$i"; done
for i in 0 1 2 3; do
    bus=pci.0; [ $i -gt 0 ] && bus=phb$i.0
    large+=" $(blk n$i) -device nvme,drive=n$i,serial=n$i,bus=$bus"
    large+=" -device virtio-net-pci,bus=$bus -device virtio-scsi-pci,bus=$bus"
    large+=" $(blk v$i) -device virtio-blk-pci,drive=v$i,bus=$bus"
done
for i in 0 1 2 3; do large+=" -device spapr-vscsi -device spapr-vlan"; done
configs[large]="$large"
# A PCI-to-PCI bridge with an NVMe and a virtio-net behind it, and an NVMe on
# the root bus (BAR assignment through bridge windows, src/pci/).
configs[bridge]="${base[*]} $(blk d0) $(blk d1) -device pci-bridge,chassis_nr=1,id=b1
  -device nvme,drive=d0,serial=papr0,bus=b1 -device virtio-net-pci,bus=b1
  -device nvme,drive=d1,serial=papr1"

dump() { # dump <version> <name> <args...>
    local ver=$1 name=$2 out="$here/qemu-$1-$2.dtb"; shift 2
    rm -f "$out"
    if [ "$ver" = 7.2 ]; then
        # QEMU stops on its own after dumping ("dtb dumped to ... Exiting.").
        "$q72" -M "pseries,dumpdtb=$out" -display none "$@" >"$tmp/log" 2>&1 || true
    else
        # `-audio none`: the extracted 10.0 has no loadable modules, and probing
        # an audio backend makes it load (and abort on) 7.2's under /usr/lib.
        printf 'dumpdtb %s\nquit\n' "$out" |
            "$q10" -audio none -M pseries -L "$q10_data" -display none -S -monitor stdio "$@" \
                >"$tmp/log" 2>&1 || true
    fi
    if [ ! -s "$out" ] || ! dtc -I dtb -O dts "$out" >/dev/null 2>&1; then
        echo "dump.sh: QEMU $ver $name failed:" >&2
        cat "$tmp/log" >&2
        exit 1
    fi
    printf '%-28s %6d bytes\n' "$(basename "$out")" "$(stat -c %s "$out")"
}

if [ "${1:-}" = --huge ]; then
    # 1024 CPUs (pseries' maximum), 8 PHBs, 1 TiB of hot-pluggable memory:
    # about 0.8 MB, near QEMU's 1 MiB FDT_MAX_SIZE.
    huge="${base[*]} -smp 1024 -m 4G,maxmem=1T,slots=4"
    for i in 1 2 3 4 5 6 7; do huge+=" -device spapr-pci-host-bridge,index=$i"; done
    # shellcheck disable=SC2086
    "$q72" -M "pseries,dumpdtb=$2" -display none $huge >"$tmp/log" 2>&1 || true
    dtc -I dtb -O dts "$2" >/dev/null 2>&1 || { cat "$tmp/log" >&2; exit 1; }
    printf '%s %d bytes\n' "$2" "$(stat -c %s "$2")"
    exit 0
fi

# `dump.sh NAME...` dumps only those configurations.
names=${*:-default smp4 mem4g phb2 devices ddw-off power8 power10 xive kernel large bridge}
for name in $names; do
    # shellcheck disable=SC2086  # the configurations are word lists
    dump 7.2 "$name" ${configs[$name]}
    # shellcheck disable=SC2086
    [ -x "$q10" ] && dump 10.0 "$name" ${configs[$name]}
done
