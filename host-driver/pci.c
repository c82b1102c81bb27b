// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-pci: generic VFIO PCI variant driver for CXL Type-2 devices.
 *
 * It binds, only through driver_override or new_id, any device with a CXL
 * Device DVSEC that is Mem_Capable with at least one HDM decoder, and whose
 * platform firmware committed (and locked) one HDM decoder and its region.
 * Everything CXL-specific is in vfio-cxl-core.
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/vfio_cxl_core.h>

static const struct vfio_device_ops vfio_cxl_pci_ops = {
	.name		= "vfio-cxl-pci",
	.init		= vfio_pci_core_init_dev,
	.release	= vfio_pci_core_release_dev,
	.open_device	= vfio_cxl_core_open_device,
	.close_device	= vfio_cxl_core_close_device,
	.ioctl		= vfio_cxl_core_ioctl,
	.get_region_info_caps = vfio_cxl_core_get_region_info_caps,
	.device_feature	= vfio_cxl_core_ioctl_feature,
	.read		= vfio_cxl_core_read,
	.write		= vfio_cxl_core_write,
	.mmap		= vfio_cxl_core_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
	.match_token_uuid = vfio_pci_core_match_token_uuid,
	.bind_iommufd	= vfio_iommufd_physical_bind,
	.unbind_iommufd	= vfio_iommufd_physical_unbind,
	.attach_ioas	= vfio_iommufd_physical_attach_ioas,
	.detach_ioas	= vfio_iommufd_physical_detach_ioas,
};

/* dma-buf export of the CXL memory region and the BARs (vfio-cxl-core). */
static const struct vfio_pci_device_ops vfio_cxl_pci_dev_ops = {
	.get_dmabuf_phys = vfio_cxl_core_get_dmabuf_phys,
};

static int vfio_cxl_pci_probe(struct pci_dev *pdev,
			      const struct pci_device_id *id)
{
	struct vfio_cxl_core_device *cdev;
	int ret;

	ret = vfio_cxl_core_check_device(pdev);
	if (ret)
		return ret;

	cdev = vfio_alloc_device(vfio_cxl_core_device, pci_core.vdev,
				 &pdev->dev, &vfio_cxl_pci_ops);
	if (IS_ERR(cdev))
		return PTR_ERR(cdev);

	cdev->pci_core.pci_ops = &vfio_cxl_pci_dev_ops;
	dev_set_drvdata(&pdev->dev, &cdev->pci_core);
	ret = vfio_cxl_core_probe(cdev);
	if (ret)
		goto out_put;

	ret = vfio_pci_core_register_device(&cdev->pci_core);
	if (ret)
		goto out_put;
	return 0;

out_put:
	dev_set_drvdata(&pdev->dev, NULL);
	vfio_put_device(&cdev->pci_core.vdev);
	return ret;
}

/*
 * Also runs when the CXL core tears the memdev down (cxl_acpi unbind,
 * region removal) and releases this driver: the memory is blocked at once,
 * then, like any vfio-pci unbind, it waits until user space has closed the
 * device.
 */
static void vfio_cxl_pci_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *vdev = dev_get_drvdata(&pdev->dev);

	vfio_cxl_core_unregister_device(container_of(vdev,
						     struct vfio_cxl_core_device,
						     pci_core));
	vfio_put_device(&vdev->vdev);
}

/* Bound only on request: driver_override or new_id. */
static const struct pci_device_id vfio_cxl_pci_table[] = {
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, vfio_cxl_pci_table);

static struct pci_driver vfio_cxl_pci_driver = {
	.name = "vfio-cxl-pci",
	.id_table = vfio_cxl_pci_table,
	.probe = vfio_cxl_pci_probe,
	.remove = vfio_cxl_pci_remove,
	.err_handler = &vfio_cxl_core_err_handlers,
	.driver_managed_dma = true,
};
module_pci_driver(vfio_cxl_pci_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("VFIO PCI variant driver for CXL Type-2 devices");
MODULE_IMPORT_NS("VFIO_CXL");
