#!/usr/bin/env bash
# Idempotent set-up for papr-fw on a fresh Debian bookworm machine (x86_64):
#  * Debian packages: QEMU 7.2 (qemu-system-ppc), dtc, gdb-multiarch, tools to
#    build guest disks (grub-common's grub-mkimage for the GRUB disk), the
#    ppc64el cross compiler for the guest's VFIO test;
#  * the nightly rust-src component (for -Zbuild-std);
#  * QEMU 10.0 from bookworm-backports, downloaded with a private apt
#    configuration and extracted into the cache (never installed), checksummed.
# Everything downloaded is cached under $PAPR_CACHE (default ~/.cache/papr-fw).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${PAPR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/papr-fw}
mkdir -p "$cache"
log() { echo "setup: $*" >&2; }

SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# --- Debian packages --------------------------------------------------------
packages=(qemu-system-ppc qemu-utils device-tree-compiler gdb-multiarch
          gdisk e2fsprogs dosfstools cpio xz-utils zstd python3 ca-certificates
          # the guest's VFIO test program (qemu-tests/vfio), built -static
          gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
          # grub-mkimage for the GRUB boot disk (qemu-tests/src/guest/grub.rs)
          grub-common)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust -------------------------------------------------------------------
# rust-toolchain.toml selects nightly; make sure rust-src (for -Zbuild-std) is there.
(cd "$root" && rustup component list --installed 2>/dev/null | grep -q '^rust-src') || {
    log "adding the rust-src component"
    (cd "$root" && rustup component add rust-src)
}

# --- Private apt configuration for foreign/backport packages ------------------
# apt_private <name> <arch> <suite...>: prints the apt options for a private apt
# state under $cache/apt-<name>, updating its lists once a day.
apt_private() {
    local name=$1 arch=$2; shift 2
    local dir=$cache/apt-$name
    mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/etc"
    : > "$dir/etc/sources.list"
    for suite in "$@"; do
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >> "$dir/etc/sources.list"
    done
    : > "$dir/status"
    local opts="-o Dir::Etc::SourceList=$dir/etc/sources.list -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir -o Dir::Cache::archives=$dir/archives
      -o Dir::State::status=$dir/status -o APT::Architecture=$arch -o APT::Architectures=$arch
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o Acquire::Languages=none"
    if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        # Tolerate a failing index (bookworm-security has been seen to fail).
        apt-get $opts update -qq >/dev/null 2>&1 || log "warning: apt update for $name reported errors"
    fi
    echo "$opts"
}
export -f apt_private

# --- QEMU 10.0 (bookworm-backports), extracted -------------------------------
q10=$cache/qemu-10.0
if [ ! -x "$q10/root/usr/bin/qemu-system-ppc64" ]; then
    log "fetching QEMU 10.0 from bookworm-backports"
    opts=$(apt_private bpo amd64 bookworm-backports)
    mkdir -p "$q10/debs" && rm -rf "$q10/root.tmp"
    (cd "$q10/debs" && apt-get $opts download -qq \
        qemu-system-ppc/bookworm-backports qemu-system-data/bookworm-backports >/dev/null)
    (cd "$q10/debs" && sha256sum ./*.deb > SHA256SUMS)
    mkdir -p "$q10/root.tmp"
    for d in "$q10"/debs/*.deb; do dpkg-deb -x "$d" "$q10/root.tmp"; done
    rm -rf "$q10/root" && mv "$q10/root.tmp" "$q10/root"
fi
"$q10/root/usr/bin/qemu-system-ppc64" --version | head -1 | grep -q 'version 10\.0' || {
    log "QEMU 10.0 in $q10 does not run"; exit 1; }

# --- Guest material (Debian ppc64el kernels 6.1/6.12/6.12-64k, busybox) ------
# Pinned in qemu-tests/guest/packages.lock, fetched with a private apt state
# ($cache/apt-ppc64el), unpacked and built into initramfs images under
# $cache/guest (see qemu-tests/src/guest.rs).  Cached: a no-op when done.
# Tests call guest::ensure themselves too; this only does the work up front.
# `nested`: the nested-KVM L1 material (ppc64el QEMU and its libraries, also
# pinned there; qemu-tests/src/guest/nested.rs).
log "guest kernels and initramfs images"
(cd "$root" && cargo run -q -p qemu-tests --bin guest -- all nested >/dev/null)

log "ready (QEMU: $(/usr/bin/qemu-system-ppc64 --version | head -1 | awk '{print $4}') and $("$q10/root/usr/bin/qemu-system-ppc64" --version | head -1 | awk '{print $4}'); cache $cache)"
