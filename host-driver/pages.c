// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: struct pages for the device memory, and its poisoned pages.
 *
 * At bind the region gets a ZONE_DEVICE memmap (MEMORY_DEVICE_GENERIC), as
 * device-dax memory does. Two consumers need it:
 *
 * - KVM on Intel VT-x. __kvm_is_mmio_pfn() counts a PFN without a struct
 *   page as host MMIO unless it lies in E820 RAM, and vmx_get_mt_mask()
 *   gives host MMIO the UC EPT memory type: the guest's CXL window would be
 *   uncached. A reserved page whose host PAT type is write-back is not MMIO
 *   to KVM, and memremap_pages() tracks the range as write-back, so the
 *   window is mapped WB.
 * - memory_failure(). For a PFN with a struct page it calls the pagemap's
 *   ->memory_failure() (pfn_address_space users are only asked for PFNs
 *   without one). vfio_cxl_memory_failure() records the page and zaps its
 *   mappings: a later access faults and gets SIGBUS (BUS_MCEERR_AR), which
 *   a VMM turns into a machine check for its guest; read() and write()
 *   return -EIO; the host-side clear skips it. The record lasts until the
 *   driver is unbound.
 *
 * The memmap costs little: compound pages of 1 GiB (or 2 MiB) share their
 * tail struct pages (Documentation/mm/vmemmap_dedup.rst), 8 KiB of memmap
 * per compound page instead of 1/64 of the memory, and memremap_pages()
 * initializes only the struct pages that are not shared.
 */
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/xarray.h>

#include "vfio_cxl_priv.h"

#if !IS_ENABLED(CONFIG_ZONE_DEVICE)
#error "vfio-cxl needs CONFIG_ZONE_DEVICE (struct pages for the device memory)"
#endif

/* Largest compound page order the range is aligned to (0: none). */
static unsigned int vfio_cxl_folio_order(const struct range *range)
{
	static const unsigned int orders[] = { PUD_ORDER, PMD_ORDER };
	u64 align = range->start | range_len(range);
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(orders); i++)
		if (orders[i] <= MAX_FOLIO_ORDER &&
		    IS_ALIGNED(align, PAGE_SIZE << orders[i]))
			return orders[i];
	return 0;
}

/**
 * vfio_cxl_poisoned() - whether pages of the region are poisoned
 * @cxl: device state
 * @first: first page, counted from the start of the region
 * @nr: number of pages
 *
 * Return: true if any of the @nr pages from @first is poisoned.
 */
bool vfio_cxl_poisoned(struct vfio_cxl *cxl, unsigned long first,
		       unsigned long nr)
{
	unsigned long index = first;

	return nr && xa_find(&cxl->poison, &index, first + nr - 1, XA_PRESENT);
}

static int vfio_cxl_memory_failure(struct dev_pagemap *pgmap,
				   unsigned long pfn, unsigned long nr_pages,
				   int mf_flags)
{
	struct vfio_cxl *cxl = container_of(pgmap, struct vfio_cxl, pgmap);
	unsigned long first = pfn - PHYS_PFN(cxl->hpa.start);
	struct vfio_pci_core_device *vdev;
	unsigned long i;
	int rc;

	for (i = 0; i < nr_pages; i++) {
		rc = xa_err(xa_store(&cxl->poison, first + i, xa_mk_value(1),
				     GFP_KERNEL));
		if (rc)
			return rc;
	}

	/*
	 * A fault that looked before the store may still be inserting the
	 * page: memory_lock for write waits for it, then the zap removes it.
	 * @mf_lock keeps the region (and the vfio device) open meanwhile.
	 */
	mutex_lock(&cxl->mf_lock);
	if (cxl->mem_index >= 0) {
		vdev = &cxl->cdev->pci_core;
		down_write(&vdev->memory_lock);
		unmap_mapping_range(vdev->vdev.inode->i_mapping,
				    VFIO_PCI_INDEX_TO_OFFSET(cxl->mem_index) +
				    ((u64)first << PAGE_SHIFT),
				    (u64)nr_pages << PAGE_SHIFT, true);
		up_write(&vdev->memory_lock);
	}
	mutex_unlock(&cxl->mf_lock);

	dev_warn(cxl->cxlds.dev,
		 "memory error at %#llx: %lu page(s) withdrawn until the driver is unbound\n",
		 PFN_PHYS(pfn), nr_pages);
	return 0;
}

static const struct dev_pagemap_ops vfio_cxl_pgmap_ops = {
	.memory_failure = vfio_cxl_memory_failure,
};

static void vfio_cxl_poison_destroy(void *data)
{
	struct vfio_cxl *cxl = data;

	xa_destroy(&cxl->poison);
}

/**
 * vfio_cxl_pages_init() - give the region struct pages and a kernel mapping
 * @cxl: device state, @hpa claimed
 *
 * Device-managed on the PCI device: the pages go after remove(), when no
 * user mapping can be left (the vfio device is gone).
 *
 * Return: 0 or a negative errno, with the reason logged.
 */
int vfio_cxl_pages_init(struct vfio_cxl *cxl)
{
	struct device *dev = cxl->cxlds.dev;
	void *kva;
	int rc;

	xa_init(&cxl->poison);
	rc = devm_add_action_or_reset(dev, vfio_cxl_poison_destroy, cxl);
	if (rc)
		return rc;

	cxl->pgmap.type = MEMORY_DEVICE_GENERIC;
	cxl->pgmap.range = cxl->hpa;
	cxl->pgmap.nr_range = 1;
	cxl->pgmap.ops = &vfio_cxl_pgmap_ops;
	cxl->pgmap.vmemmap_shift = vfio_cxl_folio_order(&cxl->hpa);
	kva = devm_memremap_pages(dev, &cxl->pgmap);
	if (IS_ERR(kva)) {
		dev_err(dev, "cannot create struct pages for %pra: %pe\n",
			&cxl->hpa, kva);
		return PTR_ERR(kva);
	}
	cxl->mem_kva = kva;
	return 0;
}
