# papr.run=vfio (sourced by the test guest's /init after its disk checks; the
# VFIO initramfs variant installs it as /etc/papr/run/vfio, see
# qemu-tests/src/guest/vfio.rs).
#
# Hands the NVMe (0000:00:00.0, the only device of the only host bridge under
# -nodefaults, so its IOMMU group is complete) from nvme to vfio-pci, runs
# /bin/papr-vfio (qemu-tests/vfio/papr-vfio.c) on it, gives it back to nvme
# and reads the seed and the data written before with O_DIRECT again — the
# kernel has then restored the default window and made a new DDW.
bdf=0000:00:00.0
sysdev=/sys/bus/pci/devices/$bdf

driver_of() { basename "$(readlink "$sysdev/driver" 2>/dev/null)" 2>/dev/null; }
# rebind DRIVER: unbind whatever has the device, let DRIVER (or, with "",
# the normal match) probe it.
rebind() {
    [ -e "$sysdev/driver" ] && echo "$bdf" > "$sysdev/driver/unbind"
    echo "$1" > "$sysdev/driver_override"
    echo "$bdf" > /sys/bus/pci/drivers_probe
}

# papr-vfio maps a 2M huge page into 64K-page windows.
echo 4 > /proc/sys/vm/nr_hugepages
say "vfio: $(cat /proc/sys/vm/nr_hugepages) huge pages of $(grep Hugepagesize /proc/meminfo | sed 's/.*:[[:space:]]*//')"

rebind vfio-pci
say "vfio: $bdf driver $(driver_of), iommu group $(basename "$(readlink "$sysdev/iommu_group")")"
if [ "$(driver_of)" != vfio-pci ]; then
    fail "vfio:bind"
elif ! /bin/papr-vfio "$bdf"; then
    fail "vfio:program"
fi

rebind ""
say "vfio: $bdf driver $(driver_of) again"
i=0
until nvdev=$(ls /dev/nvme*n1 2>/dev/null | head -n 1) && [ -b "$nvdev" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then fail "vfio:no-disk-after"; break; fi
    sleep 0.1
done
if [ -b "$nvdev" ]; then
    got=$(hash_of "$nvdev" "$SEED_OFFSET_MIB" 1)
    if [ "$got" = "$SEED_SHA256" ]; then say "vfio: seed OK after rebind ($nvdev)"; else fail "vfio:seed-after got=$got"; fi
    got=$(hash_of "$nvdev" "$DATA_OFFSET_MIB" "$DATA_MIB")
    if [ "$got" = "$DATA_SHA256" ]; then say "vfio: data OK after rebind"; else fail "vfio:data-after got=$got"; fi
fi
