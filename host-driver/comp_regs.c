// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: the HDM decoder block and the component-register BAR.
 *
 * The comp-regs region (VFIO_REGION_SUBTYPE_CXL_COMP_REGS) shows the HDM
 * Decoder Capability structure (CXL r3.1 8.2.4.20) as the host committed
 * and locked it, with base 0, and absorbs every write. The host decoders
 * are never written.
 *
 * The BAR holding the component registers stays a normal BAR except for the
 * decoder block: its pages are left out of the sparse-mmap capability and
 * refused by mmap(), and read()/write() there return all-ones / drop the
 * data. vfio-cxl-core maps and serves this BAR itself, because while the
 * CXL core's endpoint port holds the HDM registers (request_mem_region),
 * vfio-pci core cannot reserve the whole BAR and leaves it unmapped.
 */
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "vfio_cxl_priv.h"

#define VFIO_CXL_PGOFF_MASK	((1UL << (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT)) - 1)

/**
 * vfio_cxl_comp_build_view() - compute what the comp-regs region shows
 * @cxl: device state with @hdm_bind read
 *
 * Capability and global control as the hardware has them; decoder 0 as
 * committed, with COMMIT, COMMITTED and Lock On Commit set and base 0 (host
 * physical addresses are not exposed); every other decoder zero.
 */
void vfio_cxl_comp_build_view(struct vfio_cxl *cxl)
{
	u32 *v = cxl->hdm_view;

	memset(cxl->hdm_view, 0, sizeof(cxl->hdm_view));
	v[VFIO_CXL_HDM_CAP / 4] = cxl->hdm_bind[VFIO_CXL_HDM_CAP / 4];
	v[VFIO_CXL_HDM_GLOBAL_CTRL / 4] =
		cxl->hdm_bind[VFIO_CXL_HDM_GLOBAL_CTRL / 4];
	memcpy(&v[VFIO_CXL_HDM_DEC(0) / 4], &cxl->hdm_bind[VFIO_CXL_HDM_DEC(0) / 4],
	       VFIO_CXL_HDM_DEC_STRIDE);
	v[VFIO_CXL_HDM_DEC_BASE_LOW(0) / 4] = 0;
	v[VFIO_CXL_HDM_DEC_BASE_HIGH(0) / 4] = 0;
	v[VFIO_CXL_HDM_DEC_CTRL(0) / 4] |= VFIO_CXL_HDM_DEC_CTRL_COMMIT |
					   VFIO_CXL_HDM_DEC_CTRL_COMMITTED |
					   VFIO_CXL_HDM_DEC_CTRL_LOCK;
	v[VFIO_CXL_HDM_DEC_CTRL(0) / 4] &= ~VFIO_CXL_HDM_DEC_CTRL_COMMIT_ERR;
}

/* Aligned dword accesses only; writes are absorbed. */
static ssize_t vfio_cxl_comp_rw(struct vfio_pci_core_device *vdev,
				char __user *buf, size_t count, loff_t *ppos,
				bool iswrite)
{
	struct vfio_cxl *cxl = container_of(vdev, struct vfio_cxl_core_device,
					    pci_core)->cxl;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	__le32 val;

	if (count != sizeof(val) || !IS_ALIGNED(pos, sizeof(val)) ||
	    pos >= cxl->hdm_size)
		return -EINVAL;

	if (!iswrite) {
		val = cpu_to_le32(cxl->hdm_view[pos / sizeof(val)]);
		if (copy_to_user(buf, &val, sizeof(val)))
			return -EFAULT;
	}

	*ppos += sizeof(val);
	return sizeof(val);
}

static int vfio_cxl_comp_add_cap(struct vfio_pci_core_device *vdev,
				 struct vfio_pci_region *region,
				 struct vfio_info_cap *caps)
{
	struct vfio_cxl *cxl = region->data;
	struct vfio_region_info_cap_cxl_comp_regs cap = {
		.header.id = VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
		.header.version = 1,
		.bar = cxl->comp_bar,
		.offset = cxl->hdm_bar_off,
		.size = cxl->hdm_size,
	};

	return vfio_info_add_capability(caps, &cap.header, sizeof(cap));
}

/* vfio-pci core calls ->release unconditionally; the BAR stays mapped. */
static void vfio_cxl_comp_release(struct vfio_pci_core_device *vdev,
				  struct vfio_pci_region *region)
{
}

static const struct vfio_pci_regops vfio_cxl_comp_regops = {
	.rw = vfio_cxl_comp_rw,
	.add_capability = vfio_cxl_comp_add_cap,
	.release = vfio_cxl_comp_release,
};

/**
 * vfio_cxl_comp_register() - register the comp-regs region for this open
 * @cxl: device state
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_comp_register(struct vfio_cxl *cxl)
{
	return vfio_pci_core_register_dev_region(&cxl->cdev->pci_core,
						 VFIO_REGION_TYPE_CXL,
						 VFIO_REGION_SUBTYPE_CXL_COMP_REGS,
						 &vfio_cxl_comp_regops,
						 cxl->hdm_size,
						 VFIO_REGION_INFO_FLAG_READ |
						 VFIO_REGION_INFO_FLAG_WRITE,
						 cxl);
}

/**
 * vfio_cxl_is_comp_bar() - is this region index the component BAR?
 * @cxl: device state
 * @index: vfio region index
 *
 * Return: true for the BAR holding the HDM decoder block.
 */
bool vfio_cxl_is_comp_bar(struct vfio_cxl *cxl, unsigned int index)
{
	return index == VFIO_PCI_BAR0_REGION_INDEX + cxl->comp_bar;
}

/* Pages of the BAR that overlap the decoder block: never mmapped. */
static void vfio_cxl_hdm_pages(struct vfio_cxl *cxl, u64 *start, u64 *end)
{
	*start = ALIGN_DOWN(cxl->hdm_bar_off, PAGE_SIZE);
	*end = ALIGN(cxl->hdm_bar_off + cxl->hdm_size, PAGE_SIZE);
}

/**
 * vfio_cxl_comp_bar_info() - region info of the component BAR
 * @cxl: device state
 * @info: filled by vfio-pci core, amended here
 * @caps: capability chain
 *
 * Adds a sparse-mmap capability listing the BAR minus the decoder pages.
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_comp_bar_info(struct vfio_cxl *cxl, struct vfio_region_info *info,
			   struct vfio_info_cap *caps)
{
	struct vfio_region_info_cap_sparse_mmap *sparse;
	u64 size = info->size, hole_start, hole_end;
	unsigned int nr = 0;
	size_t len;
	int ret;

	if (!(info->flags & VFIO_REGION_INFO_FLAG_MMAP))
		return 0;

	vfio_cxl_hdm_pages(cxl, &hole_start, &hole_end);
	len = struct_size(sparse, areas, 2);
	sparse = kzalloc(len, GFP_KERNEL);
	if (!sparse)
		return -ENOMEM;

	if (hole_start) {
		sparse->areas[nr].offset = 0;
		sparse->areas[nr].size = hole_start;
		nr++;
	}
	if (hole_end < size) {
		sparse->areas[nr].offset = hole_end;
		sparse->areas[nr].size = size - hole_end;
		nr++;
	}
	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = nr;

	ret = vfio_info_add_capability(caps, &sparse->header,
				       struct_size(sparse, areas, nr));
	kfree(sparse);
	return ret;
}

/*
 * Faults of the component BAR, as vfio-pci core handles BAR faults (its
 * handler is private): uncached PFNs of the BAR, Memory Space checked by
 * vfio_pci_vmf_insert_pfn(). These mappings live at the BAR's file offsets,
 * which vfio-pci core zaps itself.
 */
static vm_fault_t vfio_cxl_bar_huge_fault(struct vm_fault *vmf,
					  unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vfio_cxl *cxl = vma->vm_private_data;
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	unsigned long addr = ALIGN_DOWN(vmf->address, PAGE_SIZE << order);
	unsigned long pfn;
	vm_fault_t ret = VM_FAULT_FALLBACK;

	pfn = PHYS_PFN(pci_resource_start(vdev->pdev, cxl->comp_bar)) +
	      (vma->vm_pgoff & VFIO_CXL_PGOFF_MASK) +
	      linear_page_delta(vma, addr);

	if (is_aligned_for_order(vma, addr, pfn, order)) {
		scoped_guard(rwsem_read, &vdev->memory_lock)
			ret = vfio_pci_vmf_insert_pfn(vdev, vmf, pfn, order);
	}
	return ret;
}

static vm_fault_t vfio_cxl_bar_fault(struct vm_fault *vmf)
{
	return vfio_cxl_bar_huge_fault(vmf, 0);
}

static const struct vm_operations_struct vfio_cxl_bar_vm_ops = {
	.fault = vfio_cxl_bar_fault,
#ifdef CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP
	.huge_fault = vfio_cxl_bar_huge_fault,
#endif
};

/**
 * vfio_cxl_comp_bar_mmap() - mmap of the component BAR
 * @cxl: device state
 * @vma: the mapping; its range must not touch the decoder pages
 *
 * Return: 0 or a negative errno (-EINVAL for the decoder pages).
 */
int vfio_cxl_comp_bar_mmap(struct vfio_cxl *cxl, struct vm_area_struct *vma)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	u64 pgoff = vma->vm_pgoff & VFIO_CXL_PGOFF_MASK;
	u64 start, len, end, hole_start, hole_end;

	if (!(vma->vm_flags & VM_SHARED) || !cxl->comp_io ||
	    !vdev->bar_mmap_supported[cxl->comp_bar])
		return -EINVAL;
	if (check_sub_overflow(vma->vm_end, vma->vm_start, &len) ||
	    check_shl_overflow(pgoff, PAGE_SHIFT, &start) ||
	    check_add_overflow(start, len, &end) ||
	    end > PAGE_ALIGN(pci_resource_len(vdev->pdev, cxl->comp_bar)))
		return -EINVAL;

	vfio_cxl_hdm_pages(cxl, &hole_start, &hole_end);
	if (start < hole_end && end > hole_start)
		return -EINVAL;

	vma->vm_private_data = cxl;
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_page_prot = pgprot_decrypted(vma->vm_page_prot);
	vm_flags_set(vma, VM_ALLOW_ANY_UNCACHED | VM_IO | VM_PFNMAP |
		     VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &vfio_cxl_bar_vm_ops;
	return 0;
}

static ssize_t vfio_cxl_bar_io(struct vfio_cxl *cxl, char __user *buf,
			       u64 pos, size_t count, bool iswrite)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	size_t x_start = 0, x_end = 0;

	if (cxl->comp_bar == vdev->msix_bar) {
		x_start = vdev->msix_offset;
		x_end = vdev->msix_offset + vdev->msix_size;
	}
	return vfio_pci_core_do_io_rw(vdev, true, cxl->comp_io, buf, pos, count,
				      x_start, x_end, iswrite,
				      VFIO_PCI_IO_WIDTH_8);
}

/**
 * vfio_cxl_comp_bar_rw() - read()/write() of the component BAR
 * @cxl: device state
 * @buf: user buffer
 * @count: bytes
 * @ppos: file position (region index and offset), advanced by the result
 * @iswrite: direction
 *
 * Outside the decoder block accesses reach the device (the MSI-X table, if
 * in this BAR, stays excluded as vfio-pci core does); inside, reads return
 * all-ones and writes are dropped.
 *
 * Return: bytes transferred or a negative errno.
 */
ssize_t vfio_cxl_comp_bar_rw(struct vfio_cxl *cxl, char __user *buf,
			     size_t count, loff_t *ppos, bool iswrite)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	u64 bar_len = pci_resource_len(pdev, cxl->comp_bar);
	u64 x_start = cxl->hdm_bar_off, x_end = x_start + cxl->hdm_size;
	size_t done = 0;
	ssize_t ret;

	if (!cxl->comp_io)
		return -EIO;
	if (pos >= bar_len)
		return -EINVAL;
	count = min_t(u64, count, bar_len - pos);

	while (done < count) {
		u64 off = pos + done;
		size_t n = count - done;

		if (off < x_start) {
			n = min_t(u64, n, x_start - off);
			ret = vfio_cxl_bar_io(cxl, buf + done, off, n, iswrite);
		} else if (off < x_end) {
			n = min_t(u64, n, x_end - off);
			ret = n;
			if (!iswrite) {
				size_t i;
				u8 ones = 0xff;

				for (i = 0; i < n && ret >= 0; i++)
					if (copy_to_user(buf + done + i, &ones, 1))
						ret = -EFAULT;
			}
		} else {
			ret = vfio_cxl_bar_io(cxl, buf + done, off, n, iswrite);
		}
		if (ret < 0) {
			if (!done)
				return ret;
			break;
		}
		done += ret;
	}

	*ppos += done;
	return done;
}
