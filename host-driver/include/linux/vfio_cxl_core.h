/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio-cxl-core: helpers for VFIO PCI variant drivers of CXL Type-2 devices
 * (accelerators with coherent device memory behind a firmware-committed HDM
 * decoder). The user API is described in <linux/vfio.h> (CXL additions).
 */
#ifndef __LINUX_VFIO_CXL_CORE_H
#define __LINUX_VFIO_CXL_CORE_H

#include <linux/pci.h>
#include <linux/vfio_pci_core.h>

struct vfio_cxl;

/**
 * struct vfio_cxl_core_device - vfio-pci core device of a CXL Type-2 device
 * @pci_core: the vfio-pci core device; a variant driver allocates this
 *	structure with vfio_alloc_device(vfio_cxl_core_device, pci_core.vdev,
 *	...) or embeds it in its own
 * @cxl: CXL state, set by vfio_cxl_core_probe() and private to vfio-cxl-core
 */
struct vfio_cxl_core_device {
	struct vfio_pci_core_device pci_core;
	struct vfio_cxl *cxl;
};

int vfio_cxl_core_check_device(struct pci_dev *pdev);
int vfio_cxl_core_probe(struct vfio_cxl_core_device *cdev);
void vfio_cxl_core_unregister_device(struct vfio_cxl_core_device *cdev);
int vfio_cxl_core_open_device(struct vfio_device *core_vdev);
void vfio_cxl_core_close_device(struct vfio_device *core_vdev);
long vfio_cxl_core_ioctl(struct vfio_device *core_vdev, unsigned int cmd,
			 unsigned long arg);
int vfio_cxl_core_ioctl_feature(struct vfio_device *core_vdev, u32 flags,
				void __user *arg, size_t argsz);
int vfio_cxl_core_get_region_info_caps(struct vfio_device *core_vdev,
				       struct vfio_region_info *info,
				       struct vfio_info_cap *caps);
ssize_t vfio_cxl_core_read(struct vfio_device *core_vdev, char __user *buf,
			   size_t count, loff_t *ppos);
ssize_t vfio_cxl_core_write(struct vfio_device *core_vdev,
			    const char __user *buf, size_t count, loff_t *ppos);
int vfio_cxl_core_mmap(struct vfio_device *core_vdev,
		       struct vm_area_struct *vma);
int vfio_cxl_core_get_dmabuf_phys(struct vfio_pci_core_device *vdev,
				  struct p2pdma_provider **provider,
				  unsigned int region_index,
				  struct phys_vec *phys_vec,
				  struct vfio_region_dma_range *dma_ranges,
				  size_t nr_ranges);

extern const struct pci_error_handlers vfio_cxl_core_err_handlers;

#endif /* __LINUX_VFIO_CXL_CORE_H */
