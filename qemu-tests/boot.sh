#!/usr/bin/env bash
# Boot a real Linux guest on papr-fw in QEMU (idempotent set-up included):
# Debian's ppc64el kernel with a busybox initramfs and an NVMe disk, console on
# this terminal: the guest checks the disk, then gives an interactive busybox
# shell (quit with `poweroff -f`, or Ctrl-A x).  Extra arguments go to
# qemu-tests/src/bin/boot.rs (--kernel, --disk, --no-disk, --append) or QEMU.
# Environment: PAPR_QEMU (7.2 default, or 10.0), PAPR_KERNEL (6.12 default,
# 6.1 or 6.12-64k).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"
"$here/setup.sh"
fw=$(cargo fw | tail -1)
exec cargo run -q -p qemu-tests --bin boot -- --firmware "$fw" "$@"
