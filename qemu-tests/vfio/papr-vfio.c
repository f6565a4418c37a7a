/*
 * papr-vfio: drive the SPAPR TCE v2 VFIO interface of a pseries Linux guest
 * (>= 6.11, the "VFIO-on-pSeries" table_group_ops; linux-expectations §2.10
 * and §3) on one PCI function already bound to vfio-pci, so that the guest
 * kernel makes the DMA-window RTAS calls papr-fw's resident RTAS handles.
 * What Linux 6.12 does at each step:
 *
 *   GROUP_SET_CONTAINER    take_ownership: remove-pe of the DDW the host
 *                          driver had; the default window's property goes
 *   TCE_GET_INFO           what the kernel learnt from query-pe at probe
 *   first MAP_DMA          VFIO's pending default window: reset-pe brings
 *                          the default window back (4K pages, at
 *                          dma32_window_start)
 *   TCE_CREATE A           64K pages: query-pe + create-pe (a DDW)
 *   TCE_REMOVE A           remove-pe
 *   TCE_CREATE B           4K pages, twice the 32-bit window: query-pe +
 *                          create-pe (a DDW too, being larger)
 *   TCE_REMOVE B           remove-pe
 *   TCE_REMOVE default     the kernel drops the default window's property
 *   GROUP_UNSET_CONTAINER  release_ownership: reset-pe, default window back
 *
 * Each window gets the 2 MiB buffer mapped (H_PUT_TCE) and unmapped.
 * Every line starts with "papr-guest: vfio: " (the test guest's marker);
 * the last is "papr-guest: vfio: PASS" or "papr-guest: vfio: FAIL <step>".
 * Exit status 0 only on PASS.
 *
 * Usage: papr-vfio [BDF]   (default 0000:00:00.0, the first device of the
 * first PHB under QEMU -nodefaults).  Built static with Debian's ppc64el
 * cross compiler by qemu-tests/src/guest/vfio.rs, which is the same as
 *   powerpc64le-linux-gnu-gcc -static -O2 -s -Wall -Wextra -Werror \
 *       -o papr-vfio papr-vfio.c
 * (packages gcc-powerpc64le-linux-gnu and libc6-dev-ppc64el-cross).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>
#include <linux/vfio.h>

#define SZ_64K (64UL << 10)
#define SZ_2M (2UL << 20)
#define SZ_1G (1UL << 30)

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("papr-guest: vfio: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	/*
	 * Let the console send the whole line before the next ioctl makes
	 * RTAS calls: papr-fw's trace lines would otherwise land in the middle
	 * of it (the hvc driver sends a tty's output in pieces).
	 */
	tcdrain(STDOUT_FILENO);
}

static int fail(const char *step)
{
	say("FAIL %s (%s)", step, strerror(errno));
	return 1;
}

/* The IOMMU group number of a PCI function, from its sysfs link. */
static int group_of(const char *bdf)
{
	char path[PATH_MAX], target[PATH_MAX];
	const char *slash;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = 0;
	slash = strrchr(target, '/');
	return atoi(slash ? slash + 1 : target);
}

static int create_window(int container, uint32_t page_shift, uint64_t size, uint64_t *start)
{
	struct vfio_iommu_spapr_tce_create c = {
		.argsz = sizeof(c),
		.page_shift = page_shift,
		.window_size = size,
		.levels = 1,
	};

	if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_CREATE, &c))
		return -1;
	*start = c.start_addr;
	return 0;
}

static int remove_window(int container, uint64_t start)
{
	struct vfio_iommu_spapr_tce_remove r = {
		.argsz = sizeof(r),
		.start_addr = start,
	};

	return ioctl(container, VFIO_IOMMU_SPAPR_TCE_REMOVE, &r);
}

/* Map `len` bytes of `buf` at bus address `iova`, then unmap them. */
static int map_unmap(int container, void *buf, uint64_t iova, uint64_t len)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf,
		.iova = iova,
		.size = len,
	};
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u),
		.iova = iova,
		.size = len,
	};

	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &m))
		return -1;
	say("mapped %#" PRIx64 " bytes at %#" PRIx64, len, iova);
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u))
		return -1;
	if (u.size != len) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : "0000:00:00.0";
	struct vfio_group_status status = { .argsz = sizeof(status) };
	struct vfio_iommu_spapr_tce_info info = { .argsz = sizeof(info) };
	struct vfio_iommu_spapr_register_memory reg = { .argsz = sizeof(reg) };
	uint64_t default_start, start, size, len, ddw_size;
	uint32_t ddw_shift;
	int container, group, n, huge = 1;
	char path[64];
	void *buf;

	n = group_of(bdf);
	if (n < 0)
		return fail("iommu_group");
	say("device %s in iommu group %d", bdf, n);

	container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail("open /dev/vfio/vfio");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail("api version");
	if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) != 1) {
		errno = ENOTSUP;
		return fail("VFIO_SPAPR_TCE_v2_IOMMU");
	}
	snprintf(path, sizeof(path), "/dev/vfio/%d", n);
	group = open(path, O_RDWR);
	if (group < 0)
		return fail("open group");
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status))
		return fail("GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		return fail("group not viable");
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		return fail("GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU))
		return fail("SET_IOMMU v2");
	say("container set, SPAPR TCE v2");

	if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info))
		return fail("TCE_GET_INFO");
	say("info: flags %#x dma32 %#x+%#x ddw pgsizes %#" PRIx64 " max_dynamic_windows_supported %u levels %u",
	    info.flags, info.dma32_window_start, info.dma32_window_size, info.ddw.pgsizes,
	    info.ddw.max_dynamic_windows_supported, info.ddw.levels);
	if (!(info.flags & VFIO_IOMMU_SPAPR_INFO_DDW)) {
		errno = ENOTSUP;
		return fail("no DDW in TCE_GET_INFO");
	}

	/*
	 * A DDW with 64K IOMMU pages maps only memory registered in pieces of
	 * at least 64K: a 2M huge page (the init script reserves some).
	 * Without one, fall back to 4K pages, with a window larger than the
	 * 32-bit one so that the kernel still treats it as a DDW.
	 */
	len = SZ_2M;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (buf == MAP_FAILED) {
		huge = 0;
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf == MAP_FAILED)
			return fail("mmap");
	}
	memset(buf, 0x5a, len);
	if (huge && (info.ddw.pgsizes & SZ_64K)) {
		ddw_shift = 16;
		ddw_size = SZ_1G;
	} else {
		ddw_shift = 12;
		ddw_size = 2 * (uint64_t)info.dma32_window_size;
	}
	say("buffer %s, DDW page shift %u, window %#" PRIx64, huge ? "2M huge page" : "4K pages",
	    ddw_shift, ddw_size);

	reg.vaddr = (uintptr_t)buf;
	reg.size = len;
	if (ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg))
		return fail("REGISTER_MEMORY");

	/* The default window VFIO sets up itself, at the first mapping. */
	default_start = info.dma32_window_start;
	if (map_unmap(container, buf, default_start, len))
		return fail("MAP/UNMAP default window");

	/* Window A: a DDW with the large page size. */
	if (create_window(container, ddw_shift, ddw_size, &start))
		return fail("TCE_CREATE A");
	say("window A: page shift %u size %#" PRIx64 " start_addr %#" PRIx64, ddw_shift, ddw_size,
	    start);
	if (map_unmap(container, buf, start, len))
		return fail("MAP/UNMAP A");
	if (remove_window(container, start))
		return fail("TCE_REMOVE A");
	say("window A removed");

	/* Window B: 4K pages, larger than the 32-bit window. */
	size = 2 * (uint64_t)info.dma32_window_size;
	if (create_window(container, 12, size, &start))
		return fail("TCE_CREATE B");
	say("window B: page shift 12 size %#" PRIx64 " start_addr %#" PRIx64, size, start);
	if (map_unmap(container, buf, start, len))
		return fail("MAP/UNMAP B");
	if (remove_window(container, start))
		return fail("TCE_REMOVE B");
	say("window B removed");

	if (remove_window(container, default_start))
		return fail("TCE_REMOVE default window");
	say("default window removed");

	if (ioctl(container, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &reg))
		return fail("UNREGISTER_MEMORY");
	if (ioctl(group, VFIO_GROUP_UNSET_CONTAINER))
		return fail("GROUP_UNSET_CONTAINER");
	close(group);
	close(container);
	munmap(buf, len);
	say("released");
	say("PASS");
	return 0;
}
