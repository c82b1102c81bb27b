// SPDX-License-Identifier: GPL-2.0-only
/*
 * dma-buf export (VFIO_DEVICE_FEATURE_DMA_BUF) of the CXL memory region and
 * of the BARs.
 *
 * vfio-pci core owns the exporter: it creates the dma-buf, hands it to the
 * importer and revokes it on its own events under vfio-pci's memory_lock
 * (VFIO_DEVICE_RESET, hot reset, an FLR or a Memory Space or PMCSR write
 * through config space, low-power entry) and for good at close. It knows
 * nothing of this driver's reasons to refuse the memory (a blocker from
 * error handling or removal, a decoder lost or not yet re-validated after
 * a reset): the memory region is exported only while a fault would be
 * served, and an existing dma-buf is not revoked for those (see
 * docs/host-driver.md, "dma-buf export"). This file only says what a
 * request stands for, through
 * vfio_pci_device_ops.get_dmabuf_phys: the host physical range of the CXL
 * region for the memory region, vfio-pci core's answer for a BAR, and a
 * refusal for any range of the component-register BAR that covers the HDM
 * decoder registers, which user space never reaches.
 *
 * Linux 7.3.4's vfio-pci core refuses every index that is not a BAR before
 * it asks get_dmabuf_phys(); the memory region is exported only by a kernel
 * with "vfio/pci: Let get_dmabuf_phys() decide which regions it exports"
 * (the first patch of the vfio-cxl series). Without it the export of the
 * memory region fails with vfio-pci core's -ENODEV, and BARs are exported
 * as before.
 */
#include <linux/overflow.h>
#include <linux/pci-p2pdma.h>

#include "vfio_cxl_priv.h"

/* Does any range touch the pages of the HDM Decoder Capability structure? */
static bool vfio_cxl_ranges_hit_hdm(struct vfio_cxl *cxl,
				    struct vfio_region_dma_range *dma_ranges,
				    size_t nr_ranges)
{
	u64 first = round_down(cxl->hdm_bar_off, PAGE_SIZE);
	u64 last = round_up(cxl->hdm_bar_off + cxl->hdm_size, PAGE_SIZE);
	size_t i;

	for (i = 0; i < nr_ranges; i++) {
		u64 end;

		/* An overflowing range covers everything above its offset. */
		if (check_add_overflow(dma_ranges[i].offset,
				       dma_ranges[i].length, &end))
			end = U64_MAX;
		if (dma_ranges[i].offset < last && end > first)
			return true;
	}
	return false;
}

/**
 * vfio_cxl_core_get_dmabuf_phys() - vfio_pci_device_ops.get_dmabuf_phys
 * @vdev: the vfio-pci core device (of a vfio_cxl_core_device)
 * @provider: set to the P2P provider of the exported memory
 * @region_index: the region the dma-buf is asked for
 * @phys_vec: filled with the host physical ranges, one per @dma_ranges entry
 * @dma_ranges: the requested ranges (offset and length within the region,
 *	page aligned and non-empty: vfio-pci core checked)
 * @nr_ranges: number of ranges
 *
 * The CXL memory region: the ranges must lie inside it and are translated
 * to the region's host physical range. The P2P provider is that of the
 * component-register BAR. A provider stands for the exporting PCI function
 * (pci_p2pdma_map_type() decides from its owner, the same device for every
 * BAR) plus the bus offset of one BAR, which only matters for a
 * PCI_P2PDMA_MAP_BUS_ADDR mapping; memory behind an HDM decoder is not
 * behind any BAR, so no BAR's offset is more right than another's, and the
 * component-register BAR is the one memory BAR every device this driver
 * binds has (nvgrace-gpu uses BAR 0 for its cacheable memory in the same
 * way).
 *
 * A BAR: vfio-pci core's answer, except that no range of the
 * component-register BAR may cover a page of the HDM decoder registers
 * (-EPERM): a peer must never reach the real decoders, which user space
 * only sees virtualized. vfio-pci core refuses that BAR anyway when it
 * did not reserve it (-ENODEV: the CXL core holds part of it, or core
 * patch 0002 left it to this driver); the check does not rely on that.
 *
 * The memory region is refused (-EIO) while a fault on it would be: see
 * vfio_cxl_mem_usable(). Unlike a BAR, whose export in D3 or with Memory
 * Space off succeeds already revoked, the region is then not exported at
 * all. The test is made before vfio-pci core lists the dma-buf under
 * memory_lock, and holding memory_lock across it would deadlock with
 * core's down_write: a low-power entry, reset or error in between leaves
 * the new dma-buf un-revoked (vfio-pci core itself does not consult
 * pm_runtime_engaged at export, for BARs either).
 *
 * Context: process context, may sleep (may validate the decoder with
 * memory_lock held for write); memory_lock must not be held.
 *
 * Return: 0, -EIO while the memory is not usable, -EPERM for the decoder
 * registers, -EINVAL or -EOVERFLOW for ranges outside the region, or
 * vfio-pci core's error for other regions (-ENODEV for anything that is
 * not a claimed BAR).
 */
int vfio_cxl_core_get_dmabuf_phys(struct vfio_pci_core_device *vdev,
				  struct p2pdma_provider **provider,
				  unsigned int region_index,
				  struct phys_vec *phys_vec,
				  struct vfio_region_dma_range *dma_ranges,
				  size_t nr_ranges)
{
	struct vfio_cxl *cxl = container_of(vdev, struct vfio_cxl_core_device,
					    pci_core)->cxl;

	if (cxl->mem_index >= 0 && region_index == cxl->mem_index) {
		/*
		 * What a fault would refuse is not exported either: vfio-pci
		 * core revokes on its own events only, not on a blocker, a
		 * lost decoder or a pending re-validation of ours.
		 */
		if (!vfio_cxl_mem_usable(cxl))
			return -EIO;
		*provider = pcim_p2pdma_provider(vdev->pdev, cxl->comp_bar);
		if (!*provider)
			return -EINVAL;
		return vfio_pci_core_fill_phys_vec(phys_vec, dma_ranges,
						   nr_ranges, cxl->hpa.start,
						   range_len(&cxl->hpa));
	}

	if (vfio_cxl_is_comp_bar(cxl, region_index) &&
	    vfio_cxl_ranges_hit_hdm(cxl, dma_ranges, nr_ranges))
		return -EPERM;

	return vfio_pci_core_get_dmabuf_phys(vdev, provider, region_index,
					     phys_vec, dma_ranges, nr_ranges);
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_get_dmabuf_phys, "VFIO_CXL");
