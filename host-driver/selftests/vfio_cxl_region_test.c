// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VFIO uAPI of CXL Type-2 devices (vfio-cxl-pci): the CXL device-info
 * capability, the memory and comp-regs region sub-types, the component
 * BAR's sparse mmap and the CXL Device DVSEC shadow.
 *
 * Run with the BDF of a device bound to vfio-cxl-pci as the last argument
 * or in $VFIO_SELFTESTS_BDF.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <linux/pci_regs.h>
#include <linux/sizes.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"

static const char *device_bdf;

/* The CXL consortium's vendor id, which DVSECs of CXL structures carry. */
#define PCI_VENDOR_ID_CXL		0x1e98

/* CXL r3.1 8.1.3: CXL Device DVSEC registers the test uses. */
#define CXL_DVSEC_CTRL2			0x10
#define  CXL_DVSEC_CTRL2_DESIRED_VOL_HDM	0x0010
#define CXL_DVSEC_RANGE_SIZE_LOW0	PCI_DVSEC_CXL_RANGE_SIZE_LOW(0)

/* CXL r3.1 8.2.4.20: HDM decoder 0 in the comp-regs region. */
#define HDM_DEC0_BASE_LOW		0x10
#define HDM_DEC0_BASE_HIGH		0x14
#define HDM_DEC0_SIZE_LOW		0x18
#define HDM_DEC0_SIZE_HIGH		0x1c
#define HDM_DEC0_CTRL			0x20
#define  HDM_CTRL_LOCK_ON_COMMIT	0x0100
#define  HDM_CTRL_COMMIT		0x0200
#define  HDM_CTRL_COMMITTED		0x0400

/* HDM decoders decode 256 MiB multiples. */
#define CXL_HDM_ALIGN			SZ_256M

FIXTURE(vfio_cxl_region_test) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
	struct vfio_region_info *mem;
	struct vfio_region_info *comp;
	struct vfio_region_info_cap_cxl_comp_regs geometry;
	u16 dvsec;
};

FIXTURE_VARIANT(vfio_cxl_region_test) {
	const char *iommu_mode;
};

/* Every mode of FIXTURE_VARIANT_ADD_ALL_IOMMU_MODES(). */
FIXTURE_VARIANT_ADD(vfio_cxl_region_test, vfio_type1_iommu) {
	.iommu_mode = MODE_VFIO_TYPE1_IOMMU,
};

FIXTURE_VARIANT_ADD(vfio_cxl_region_test, vfio_type1v2_iommu) {
	.iommu_mode = MODE_VFIO_TYPE1V2_IOMMU,
};

FIXTURE_VARIANT_ADD(vfio_cxl_region_test, iommufd_compat_type1) {
	.iommu_mode = MODE_IOMMUFD_COMPAT_TYPE1,
};

FIXTURE_VARIANT_ADD(vfio_cxl_region_test, iommufd_compat_type1v2) {
	.iommu_mode = MODE_IOMMUFD_COMPAT_TYPE1V2,
};

FIXTURE_VARIANT_ADD(vfio_cxl_region_test, iommufd) {
	.iommu_mode = MODE_IOMMUFD,
};

/* VFIO_DEVICE_GET_REGION_INFO with its capability chain; caller frees. */
static struct vfio_region_info *region_info(struct vfio_pci_device *device,
					    u32 index)
{
	struct vfio_region_info *info;
	u32 argsz = sizeof(*info);

	for (;;) {
		info = calloc_assert(1, argsz);
		info->argsz = argsz;
		info->index = index;
		ioctl_assert(device->fd, VFIO_DEVICE_GET_REGION_INFO, info);
		if (info->argsz <= argsz)
			return info;
		argsz = info->argsz;
		free(info);
	}
}

/* The capability @id of a region or device info, or NULL. */
static struct vfio_info_cap_header *find_cap(void *info, u32 argsz,
					     u32 cap_offset, u16 id)
{
	struct vfio_info_cap_header *hdr;
	u32 off;

	for (off = cap_offset; off; off = hdr->next) {
		VFIO_ASSERT_LE(off + sizeof(*hdr), argsz);
		hdr = info + off;
		if (hdr->id == id)
			return hdr;
	}
	return NULL;
}

static u16 find_cxl_device_dvsec(struct vfio_pci_device *device)
{
	u16 pos = PCI_CFG_SPACE_SIZE;
	int i;

	for (i = 0; i < 64 && pos >= PCI_CFG_SPACE_SIZE; i++) {
		u32 hdr = vfio_pci_config_readl(device, pos);

		if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_DVSEC &&
		    (vfio_pci_config_readl(device, pos + PCI_DVSEC_HEADER1) &
		     0xffff) == PCI_VENDOR_ID_CXL &&
		    vfio_pci_config_readw(device, pos + PCI_DVSEC_HEADER2) ==
		    PCI_DVSEC_CXL_DEVICE)
			return pos;
		pos = PCI_EXT_CAP_NEXT(hdr);
	}
	return 0;
}

FIXTURE_SETUP(vfio_cxl_region_test)
{
	const char *node = strstr(variant->iommu_mode, "iommufd") ?
			   "/dev/iommu" : "/dev/vfio/vfio";
	struct vfio_info_cap_header *hdr;
	u32 i;

	if (access(node, F_OK))
		SKIP(return, "%s: no %s\n", variant->iommu_mode, node);

	self->iommu = iommu_init(variant->iommu_mode);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	if (!(self->device->info.flags & VFIO_DEVICE_FLAGS_CXL))
		SKIP(return, "%s is not a VFIO CXL device\n", device_bdf);

	for (i = VFIO_PCI_NUM_REGIONS; i < self->device->info.num_regions; i++) {
		struct vfio_region_info *info = region_info(self->device, i);
		struct vfio_region_info_cap_type *type;

		hdr = find_cap(info, info->argsz, info->cap_offset,
			       VFIO_REGION_INFO_CAP_TYPE);
		type = (void *)hdr;
		if (type && type->type == VFIO_REGION_TYPE_CXL &&
		    type->subtype == VFIO_REGION_SUBTYPE_CXL_MEM && !self->mem)
			self->mem = info;
		else if (type && type->type == VFIO_REGION_TYPE_CXL &&
			 type->subtype == VFIO_REGION_SUBTYPE_CXL_COMP_REGS &&
			 !self->comp)
			self->comp = info;
		else
			free(info);
	}
	ASSERT_NE(NULL, self->mem);
	ASSERT_NE(NULL, self->comp);

	hdr = find_cap(self->comp, self->comp->argsz, self->comp->cap_offset,
		       VFIO_REGION_INFO_CAP_CXL_COMP_REGS);
	ASSERT_NE(NULL, hdr);
	memcpy(&self->geometry, hdr, sizeof(self->geometry));

	self->dvsec = find_cxl_device_dvsec(self->device);
	ASSERT_NE(0, self->dvsec);

	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
}

FIXTURE_TEARDOWN(vfio_cxl_region_test)
{
	free(self->mem);
	free(self->comp);
	if (self->device)
		vfio_pci_device_cleanup(self->device);
	if (self->iommu)
		iommu_cleanup(self->iommu);
}

static u32 comp_read(struct vfio_pci_device *device,
		     struct vfio_region_info *comp, u32 off)
{
	u32 val;

	VFIO_ASSERT_EQ(pread(device->fd, &val, sizeof(val), comp->offset + off),
		       sizeof(val));
	return val;
}

/* Does reading the u64 at @addr kill a child process with SIGBUS? */
static bool read_raises_sigbus(u64 *addr)
{
	int status;
	pid_t pid;

	pid = fork();
	VFIO_ASSERT_GE(pid, 0);
	if (!pid) {
		(void)READ_ONCE(*addr);
		_exit(0);
	}
	VFIO_ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS)
		return true;
	VFIO_ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status),
			 "reader child status %#x\n", status);
	return false;
}

TEST_F(vfio_cxl_region_test, device_info_cxl_cap)
{
	struct vfio_device_info_cap_cxl *cap;
	struct vfio_device_info *info;
	u32 argsz = sizeof(*info);

	for (;;) {
		info = calloc_assert(1, argsz);
		info->argsz = argsz;
		ioctl_assert(self->device->fd, VFIO_DEVICE_GET_INFO, info);
		if (info->argsz <= argsz)
			break;
		argsz = info->argsz;
		free(info);
	}

	ASSERT_TRUE(info->flags & VFIO_DEVICE_FLAGS_PCI);
	ASSERT_TRUE(info->flags & VFIO_DEVICE_FLAGS_CAPS);
	cap = (void *)find_cap(info, argsz, info->cap_offset,
			       VFIO_DEVICE_INFO_CAP_CXL);
	ASSERT_NE(NULL, cap);
	ASSERT_EQ(1, cap->header.version);
	ASSERT_TRUE(cap->flags & VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED);
	ASSERT_EQ(0, cap->__reserved);
	free(info);
}

TEST_F(vfio_cxl_region_test, region_geometry)
{
	u32 rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

	ASSERT_EQ(rw | VFIO_REGION_INFO_FLAG_MMAP,
		  self->mem->flags & (rw | VFIO_REGION_INFO_FLAG_MMAP));
	ASSERT_NE(0, self->mem->size);
	ASSERT_EQ(0, self->mem->size % CXL_HDM_ALIGN);

	ASSERT_EQ(rw, self->comp->flags & rw);
	ASSERT_FALSE(self->comp->flags & VFIO_REGION_INFO_FLAG_MMAP);
	ASSERT_LT(self->geometry.bar, PCI_STD_NUM_BARS);
	ASSERT_EQ(self->comp->size, self->geometry.size);
	ASSERT_EQ(0, self->geometry.__reserved);
	/* Capability and global control, then 0x20 bytes per decoder. */
	ASSERT_EQ(0, (self->comp->size - 0x10) % 0x20);
	printf("memory: %llu MiB; HDM decoders: BAR %u + 0x%llx, %llu bytes\n",
	       self->mem->size >> 20, self->geometry.bar,
	       self->geometry.offset, self->geometry.size);
}

TEST_F(vfio_cxl_region_test, mem_mmap_read_write)
{
	size_t len = min_t(size_t, self->mem->size, SZ_2M);
	int fd = self->device->fd;
	u64 val, i, *map;

	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		   self->mem->offset);
	ASSERT_NE(MAP_FAILED, map);

	for (i = 0; i < len / sizeof(u64); i += 512)
		map[i] = 0x5e1f7e57ULL << 32 | i;
	for (i = 0; i < len / sizeof(u64); i += 512) {
		ASSERT_EQ(sizeof(val), pread(fd, &val, sizeof(val),
					     self->mem->offset + i * 8));
		ASSERT_EQ(0x5e1f7e57ULL << 32 | i, val);
	}

	val = 0xfeedf00d;
	ASSERT_EQ(sizeof(val), pwrite(fd, &val, sizeof(val),
				      self->mem->offset + 8));
	ASSERT_EQ(0xfeedf00d, map[1]);

	/* A read crossing the end stops there, as for BARs. */
	ASSERT_EQ(4, pread(fd, &val, sizeof(val),
			   self->mem->offset + self->mem->size - 4));
	ASSERT_EQ(-1, pread(fd, &val, sizeof(val),
			    self->mem->offset + self->mem->size));
	ASSERT_EQ(EINVAL, errno);

	ASSERT_EQ(MAP_FAILED, mmap(NULL, getpagesize(), PROT_READ, MAP_PRIVATE,
				   fd, self->mem->offset));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(MAP_FAILED, mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED,
				   fd, self->mem->offset + self->mem->size));
	ASSERT_EQ(EINVAL, errno);

	ASSERT_EQ(0, munmap(map, len));
}

/*
 * CXL.mem decode follows the HDM decoder and DVSEC Mem_Enable, not the
 * Memory Space Enable bit, which covers BARs: the memory stays mapped and
 * usable with Memory Space off, while BAR mappings fault as in vfio-pci.
 */
/*
 * The memory follows Memory Space like a BAR (some devices fault the host
 * on an HDM access with it off): mappings SIGBUS, read() fails with EIO,
 * and the data is there again once it is back on.
 */
TEST_F(vfio_cxl_region_test, mem_follows_memory_space)
{
	struct vfio_pci_bar *bar = &self->device->bars[self->geometry.bar];
	size_t page = getpagesize();
	u64 *map, *regs = NULL, val;
	u32 i;

	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED,
		   self->device->fd, self->mem->offset);
	ASSERT_NE(MAP_FAILED, map);
	WRITE_ONCE(map[0], 0xc0ffee01);

	/* A page of the component BAR the library mapped (sparse areas). */
	for (i = 0; bar->vaddr && i < bar->info.size / page; i++) {
		u64 off = (u64)i * page;

		if (off + page <= self->geometry.offset ||
		    off >= self->geometry.offset + self->geometry.size) {
			regs = bar->vaddr + off;
			break;
		}
	}
	ASSERT_NE(NULL, regs);
	ASSERT_FALSE(read_raises_sigbus(regs));

	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	ASSERT_FALSE(vfio_pci_config_readw(self->device, PCI_COMMAND) &
		     PCI_COMMAND_MEMORY);

	/* The page mapped before, and one first touched now. */
	ASSERT_TRUE(read_raises_sigbus(map));
	ASSERT_TRUE(read_raises_sigbus(map + page / 8));
	ASSERT_EQ(-1, pread(self->device->fd, &val, sizeof(val),
			    self->mem->offset));
	ASSERT_EQ(EIO, errno);
	ASSERT_TRUE(read_raises_sigbus(regs));

	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
	ASSERT_FALSE(read_raises_sigbus(regs));
	ASSERT_EQ(0xc0ffee01, READ_ONCE(map[0]));
	ASSERT_EQ(0, munmap(map, 2 * page));
}

/*
 * After a reset the driver validates the decoder again, through the
 * component BAR, before the next access to the memory; with Memory Space
 * off meanwhile, the access fails until it is back on.
 */
TEST_F(vfio_cxl_region_test, reset_then_memory_space_off)
{
	u64 *map;

	if (!(self->device->info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "device cannot be reset\n");

	map = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED,
		   self->device->fd, self->mem->offset);
	ASSERT_NE(MAP_FAILED, map);

	vfio_pci_device_reset(self->device);
	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	ASSERT_TRUE(read_raises_sigbus(map));

	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
	WRITE_ONCE(map[0], 0xc0ffee03);
	ASSERT_EQ(0xc0ffee03, READ_ONCE(map[0]));
	ASSERT_TRUE(comp_read(self->device, self->comp, HDM_DEC0_CTRL) &
		    HDM_CTRL_COMMITTED);
	ASSERT_EQ(0, munmap(map, getpagesize()));
}

TEST_F(vfio_cxl_region_test, comp_regs_virtualized)
{
	u64 size, base;
	u32 before, ctrl, val, off;

	ctrl = comp_read(self->device, self->comp, HDM_DEC0_CTRL);
	ASSERT_TRUE(ctrl & HDM_CTRL_COMMITTED);
	ASSERT_TRUE(ctrl & HDM_CTRL_LOCK_ON_COMMIT);
	ASSERT_TRUE(ctrl & HDM_CTRL_COMMIT);

	/* The host physical address never shows. */
	base = (u64)comp_read(self->device, self->comp, HDM_DEC0_BASE_HIGH) << 32 |
	       comp_read(self->device, self->comp, HDM_DEC0_BASE_LOW);
	ASSERT_EQ(0, base);
	size = (u64)comp_read(self->device, self->comp, HDM_DEC0_SIZE_HIGH) << 32 |
	       comp_read(self->device, self->comp, HDM_DEC0_SIZE_LOW);
	ASSERT_EQ(self->mem->size, size);

	/* Writes are absorbed: decommit, rebase, all-ones. */
	for (off = 0; off < self->comp->size; off += 4) {
		before = comp_read(self->device, self->comp, off);
		val = off == HDM_DEC0_CTRL ? 0 : ~0U;
		ASSERT_EQ(4, pwrite(self->device->fd, &val, 4,
				    self->comp->offset + off));
		ASSERT_EQ(before, comp_read(self->device, self->comp, off));
	}

	/* Only aligned dwords; no mmap. */
	ASSERT_EQ(-1, pread(self->device->fd, &val, 2, self->comp->offset));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, pread(self->device->fd, &val, 4, self->comp->offset + 1));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(MAP_FAILED, mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED,
				   self->device->fd, self->comp->offset));
	ASSERT_EQ(EINVAL, errno);
}

TEST_F(vfio_cxl_region_test, comp_bar_sparse_mmap)
{
	struct vfio_pci_bar *bar = &self->device->bars[self->geometry.bar];
	u64 hole = self->geometry.offset & ~(u64)(getpagesize() - 1);
	u32 val;

	/* vfio_pci_device_init() mapped the sparse areas, not the hole. */
	ASSERT_NE(NULL, bar->vaddr);
	ASSERT_EQ(MAP_FAILED, mmap(NULL, bar->info.size, PROT_READ, MAP_SHARED,
				   self->device->fd, bar->info.offset));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(MAP_FAILED, mmap(NULL, getpagesize(), PROT_READ, MAP_SHARED,
				   self->device->fd, bar->info.offset + hole));
	ASSERT_EQ(EINVAL, errno);

	/* read() of the decoder block through the BAR: all-ones. */
	ASSERT_EQ(4, pread(self->device->fd, &val, 4, bar->info.offset +
			   self->geometry.offset + HDM_DEC0_CTRL));
	ASSERT_EQ(~0U, val);
}

TEST_F(vfio_cxl_region_test, dvsec_shadow)
{
	u16 ctrl2, pos = self->dvsec;
	u32 size;

	/* Read-only fields stay. */
	size = vfio_pci_config_readl(self->device, pos + CXL_DVSEC_RANGE_SIZE_LOW0);
	vfio_pci_config_writel(self->device, pos + CXL_DVSEC_RANGE_SIZE_LOW0, 0);
	ASSERT_EQ(size, vfio_pci_config_readl(self->device,
					      pos + CXL_DVSEC_RANGE_SIZE_LOW0));

	/* A read-write field is kept in the shadow... */
	ctrl2 = vfio_pci_config_readw(self->device, pos + CXL_DVSEC_CTRL2);
	vfio_pci_config_writew(self->device, pos + CXL_DVSEC_CTRL2,
			       ctrl2 ^ CXL_DVSEC_CTRL2_DESIRED_VOL_HDM);
	ASSERT_EQ(ctrl2 ^ CXL_DVSEC_CTRL2_DESIRED_VOL_HDM,
		  vfio_pci_config_readw(self->device, pos + CXL_DVSEC_CTRL2));

	/* ...and survives a function reset (an FLR leaves the DVSEC alone). */
	if (!(self->device->info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "device cannot be reset\n");
	vfio_pci_device_reset(self->device);
	ASSERT_EQ(ctrl2 ^ CXL_DVSEC_CTRL2_DESIRED_VOL_HDM,
		  vfio_pci_config_readw(self->device, pos + CXL_DVSEC_CTRL2));
	vfio_pci_config_writew(self->device, pos + CXL_DVSEC_CTRL2, ctrl2);
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
