# papr.run=nested (sourced by the test guest's /init after its disk checks;
# the nested initramfs, qemu-tests/src/guest/nested.rs, installs it as
# /etc/papr/run/nested).  This is L1: it checks that it runs radix with
# /dev/kvm, hands the NVMe (0000:00:00.0, the only device of the only host
# bridge under -nodefaults, so its IOMMU group is complete) to vfio-pci and
# runs L2 under KVM with it: QEMU (ppc64el, in /usr/bin), L2's firmware
# (/l2/papr-fw.bin, or /l2/slof.bin with papr.l2fw=slof), L2's kernel and
# initramfs (/l2/vmlinux, /l2/initrd.gz: the standard test guest, whose
# NVMe checks then run on the passed-through device).  L2's console (and its
# QEMU's messages) go to L1's second console, /dev/hvc1 — a second spapr-vty
# the outer QEMU writes to a file of its own — so they never mix with L1's
# console and papr-fw's traces there; without /dev/hvc1 they come out on
# L1's console, each line prefixed with $L2_PREFIX.
#
# L1 command-line options:
#   papr.l2fw=papr|slof     L2's firmware
#   papr.l2env=KEY=VALUE    a -prom-env option for L2's firmware (repeatable)
#   papr.l2mach=OPT         a -M pseries option for L2 (repeatable)
#   papr.l2arg=WORD         a word for L2's kernel command line (repeatable)
#   papr.l2global=D.P=V     a -global option for L2's QEMU (repeatable), e.g.
#                           spapr-pci-host-bridge.ddw=off
bdf=0000:00:00.0
sysdev=/sys/bus/pci/devices/$bdf
l2fw=papr
l2env=""
l2mach=""
l2args=""
l2global=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        papr.l2fw=*) l2fw=${arg#papr.l2fw=} ;;
        papr.l2env=*) l2env="$l2env -prom-env ${arg#papr.l2env=}" ;;
        papr.l2mach=*) l2mach="$l2mach,${arg#papr.l2mach=}" ;;
        papr.l2arg=*) l2args="$l2args ${arg#papr.l2arg=}" ;;
        papr.l2global=*) l2global="$l2global -global ${arg#papr.l2global=}" ;;
    esac
done
case "$l2fw" in
    slof) bios=/l2/slof.bin ;;
    *) bios=/l2/papr-fw.bin ;;
esac

say "nested: mmu $(grep -m1 '^MMU' /proc/cpuinfo | sed 's/^MMU[[:space:]]*:[[:space:]]*//')"
if [ -c /dev/kvm ]; then say "nested: /dev/kvm present"; else fail "nested:no-kvm"; fi

[ -e "$sysdev/driver" ] && echo "$bdf" > "$sysdev/driver/unbind"
echo vfio-pci > "$sysdev/driver_override"
echo "$bdf" > /sys/bus/pci/drivers_probe
drv=$(basename "$(readlink "$sysdev/driver" 2>/dev/null)" 2>/dev/null)
say "nested: $bdf driver $drv, iommu group $(basename "$(readlink "$sysdev/iommu_group")")"
[ "$drv" = vfio-pci ] || fail "nested:bind"

if [ -c /dev/kvm ] && [ "$drv" = vfio-pci ]; then
    if [ -c /dev/hvc1 ]; then l2con=/dev/hvc1; else l2con=""; fi
    say "nested: starting L2 (firmware $l2fw, console ${l2con:-prefixed})"
    {
        LD_LIBRARY_PATH=$LIB_DIR /usr/bin/qemu-system-ppc64 -accel kvm -M "pseries$l2mach" \
            -cpu host -m 512M -smp 1 -display none -nodefaults -serial stdio -monitor none \
            -no-reboot -action panic=exit-failure -bios "$bios" \
            -kernel /l2/vmlinux -initrd /l2/initrd.gz \
            -append "console=hvc0 panic=-1 quiet$l2args" \
            -device "vfio-pci,host=$bdf" $l2global $l2env < /dev/null
        echo $? > /tmp/l2.rc
    } 2>&1 | tee /tmp/l2.log | if [ -n "$l2con" ]; then cat > "$l2con"; else sed "s/^/$L2_PREFIX/"; fi
    rc=$(cat /tmp/l2.rc)
    say "nested: L2 exited $rc"
    [ "$rc" = 0 ] || fail "nested:l2-exit-$rc"
    grep -q '^papr-guest: PASS' /tmp/l2.log || fail "nested:l2-verdict"
fi
