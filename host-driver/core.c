// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: VFIO support for CXL Type-2 devices, as a library for
 * vfio-pci variant drivers (vfio-cxl-pci is the generic one).
 *
 * A variant driver allocates a struct vfio_cxl_core_device, calls
 * vfio_cxl_core_probe() before vfio_pci_core_register_device(), and plugs
 * the vfio_cxl_core_* callbacks and vfio_cxl_core_err_handlers into its
 * vfio_device_ops and pci_driver. What user space sees is described in the
 * vfio-cxl project's docs/uapi.md.
 */
#include <linux/bitfield.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pm_runtime.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "vfio_cxl_priv.h"

bool vfio_cxl_host_access = true;
module_param_named(host_access, vfio_cxl_host_access, bool, 0644);
MODULE_PARM_DESC(host_access,
		 "Serve read()/write() of the CXL memory region through a host mapping (default: true; false: -EIO, mmap unaffected)");

bool vfio_cxl_allow_unlocked;
module_param_named(allow_unlocked_decoder, vfio_cxl_allow_unlocked, bool, 0644);
MODULE_PARM_DESC(allow_unlocked_decoder,
		 "Bind devices whose committed HDM decoder is not locked (default: false)");

bool vfio_cxl_clear_memory_param = true;
module_param_named(clear_memory, vfio_cxl_clear_memory_param, bool, 0644);
MODULE_PARM_DESC(clear_memory,
		 "Clear the device memory before each new user: by CXL Reset with Mem_Clr when the device can, else from the host (default: true; false leaks one user's data to the next)");

bool vfio_cxl_ignore_memory_space;
module_param_named(ignore_memory_space, vfio_cxl_ignore_memory_space, bool, 0644);
MODULE_PARM_DESC(ignore_memory_space,
		 "Let the memory region be accessed while the command register's Memory Space is off (default: false; only for devices known to tolerate HDM accesses then)");

static struct vfio_cxl_core_device *
to_cxl_core(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct vfio_cxl_core_device,
			    pci_core.vdev);
}

/**
 * vfio_cxl_core_check_device() - is this a device vfio-cxl-core can drive?
 * @pdev: PCI device
 *
 * A CXL Type-2 device for this library has a CXL Device DVSEC that is
 * Mem_Capable with at least one HDM decoder (CXL r3.1 8.1.3.1). Whether its
 * decoder is committed is checked by vfio_cxl_core_probe().
 *
 * Return: 0, or -ENODEV with the reason logged at info level.
 */
int vfio_cxl_core_check_device(struct pci_dev *pdev)
{
	u16 dvsec, cap = 0;

	dvsec = pci_find_dvsec_capability(pdev, PCI_VENDOR_ID_CXL,
					  PCI_DVSEC_CXL_DEVICE);
	if (!dvsec) {
		pci_info(pdev, "no CXL Device DVSEC: not a CXL device, not binding\n");
		return -ENODEV;
	}

	pci_read_config_word(pdev, dvsec + PCI_DVSEC_CXL_CAP, &cap);
	if (!(cap & PCI_DVSEC_CXL_MEM_CAPABLE) ||
	    !FIELD_GET(PCI_DVSEC_CXL_HDM_COUNT, cap)) {
		pci_info(pdev, "CXL device without HDM memory (DVSEC capability %#x: Mem_Capable=%d HDM_Count=%lu): not binding\n",
			 cap, !!(cap & PCI_DVSEC_CXL_MEM_CAPABLE),
			 FIELD_GET(PCI_DVSEC_CXL_HDM_COUNT, cap));
		return -ENODEV;
	}
	return 0;
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_check_device, "VFIO_CXL");

/**
 * vfio_cxl_core_probe() - set up the CXL side of a device at bind
 * @cdev: allocated with vfio_alloc_device(), not registered yet
 *
 * Attaches the device to the CXL core (mainline Type-2 API), finds the
 * region platform firmware committed and claims it exclusively. Everything
 * is device-managed on the PCI device: it is released if the probe fails
 * and after the driver's remove callback. Call it with the PCI device's
 * drvdata already set to &cdev->pci_core.
 *
 * Return: 0 or a negative errno, the reason logged. -ENXIO: no committed
 * region (the CXL core may then unbind the driver asynchronously, which is
 * harmless once probe has failed).
 */
int vfio_cxl_core_probe(struct vfio_cxl_core_device *cdev)
{
	return vfio_cxl_probe_cxl(cdev);
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_probe, "VFIO_CXL");

/**
 * vfio_cxl_core_open_device() - vfio_device_ops.open_device
 * @core_vdev: the vfio device
 *
 * Enables the device, registers the CXL memory and comp-regs regions and
 * starts the DVSEC shadow from its bind-time state.
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_core_open_device(struct vfio_device *core_vdev)
{
	struct vfio_cxl_core_device *cdev = to_cxl_core(core_vdev);
	struct vfio_pci_core_device *vdev = &cdev->pci_core;
	struct vfio_cxl *cxl = cdev->cxl;
	int ret;

	ret = vfio_pci_core_enable(vdev);
	if (ret)
		return ret;

	/* Memory a previous user (or owner before bind) left is erased. */
	if (vfio_cxl_clear_memory_param && cxl->needs_clear) {
		ret = vfio_cxl_clear_memory(cxl);
		if (ret) {
			if (ret == -EBUSY)
				dev_warn_ratelimited(&vdev->pdev->dev, "open refused: the CXL memory is blocked by error recovery or removal and not cleared yet\n");
			vfio_pci_core_disable(vdev);
			return -EIO;
		}
	}

	vfio_cxl_dvsec_init(cxl);
	ret = vfio_cxl_mem_register(cxl);
	if (!ret)
		ret = vfio_cxl_comp_register(cxl);
	if (ret) {
		/* Releases the regions registered so far. */
		vfio_pci_core_disable(vdev);
		return ret;
	}

	WRITE_ONCE(cxl->resetting, false);
	vfio_pci_core_finish_enable(vdev);
	return 0;
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_open_device, "VFIO_CXL");

/**
 * vfio_cxl_core_close_device() - vfio_device_ops.close_device
 * @core_vdev: the vfio device
 *
 * No user mapping exists any more (each one holds the device file). The
 * regions, their kernel mappings and the shadows are released, then the
 * memory is cleared for the next user (module parameter clear_memory); if
 * that fails the next open tries again and fails rather than hand the data
 * over. The host region stays claimed until unbind.
 */
void vfio_cxl_core_close_device(struct vfio_device *core_vdev)
{
	struct vfio_cxl *cxl = to_cxl_core(core_vdev)->cxl;

	vfio_pci_core_close_device(core_vdev);

	cxl->needs_clear = true;
	if (vfio_cxl_clear_memory_param &&
	    vfio_cxl_clear_memory(cxl) == -EBUSY)
		pci_info(to_cxl_core(core_vdev)->pci_core.pdev,
			 "CXL memory not cleared at close: blocked by error recovery or removal\n");
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_close_device, "VFIO_CXL");

/* As vfio-pci core reports AtomicOps completion (its helper is private). */
static int vfio_cxl_info_atomic_cap(struct vfio_pci_core_device *vdev,
				    struct vfio_info_cap *caps)
{
	struct vfio_device_info_cap_pci_atomic_comp cap = {
		.header.id = VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP,
		.header.version = 1,
	};
	static const struct {
		u32 devcap2;
		u32 flag;
	} ops[] = {
		{ PCI_EXP_DEVCAP2_ATOMIC_COMP32, VFIO_PCI_ATOMIC_COMP32 },
		{ PCI_EXP_DEVCAP2_ATOMIC_COMP64, VFIO_PCI_ATOMIC_COMP64 },
		{ PCI_EXP_DEVCAP2_ATOMIC_COMP128, VFIO_PCI_ATOMIC_COMP128 },
	};
	struct pci_dev *pdev = pci_physfn(vdev->pdev);
	u32 devcap2 = 0;
	unsigned int i;

	pcie_capability_read_dword(pdev, PCI_EXP_DEVCAP2, &devcap2);
	for (i = 0; i < ARRAY_SIZE(ops); i++)
		if ((devcap2 & ops[i].devcap2) &&
		    !pci_enable_atomic_ops_to_root(pdev, ops[i].devcap2))
			cap.flags |= ops[i].flag;

	if (!cap.flags)
		return 0;
	return vfio_info_add_capability(caps, &cap.header, sizeof(cap));
}

/*
 * VFIO_DEVICE_GET_INFO. vfio-pci core builds its answer in a private
 * function with no hook for more capabilities (Linux 7.3), so the variant
 * answers itself: the same fields and AtomicOps capability (zPCI ones are
 * s390-only), plus VFIO_DEVICE_FLAGS_CXL and the CXL capability. Every byte
 * copied out is initialized, the padding included.
 */
static long vfio_cxl_ioctl_get_info(struct vfio_cxl_core_device *cdev,
				    struct vfio_device_info __user *arg)
{
	unsigned long minsz = offsetofend(struct vfio_device_info, num_irqs);
	struct vfio_pci_core_device *vdev = &cdev->pci_core;
	struct vfio_info_cap caps = { .buf = NULL, .size = 0 };
	struct vfio_device_info_cap_cxl cxl_cap = {
		.header.id = VFIO_DEVICE_INFO_CAP_CXL,
		.header.version = 1,
		.flags = VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED,
	};
	struct vfio_device_info info = {};
	long ret;

	if (copy_from_user(&info, arg, minsz))
		return -EFAULT;
	if (info.argsz < minsz)
		return -EINVAL;
	minsz = min_t(size_t, info.argsz, sizeof(info));

	info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_CXL |
		     VFIO_DEVICE_FLAGS_CAPS;
	if (vdev->reset_works)
		info.flags |= VFIO_DEVICE_FLAGS_RESET;
	info.num_regions = VFIO_PCI_NUM_REGIONS + vdev->num_regions;
	info.num_irqs = VFIO_PCI_NUM_IRQS;
	info.cap_offset = 0;

	ret = vfio_cxl_info_atomic_cap(vdev, &caps);
	if (!ret)
		ret = vfio_info_add_capability(&caps, &cxl_cap.header,
					       sizeof(cxl_cap));
	if (ret)
		goto out;

	if (info.argsz < sizeof(info) + caps.size) {
		info.argsz = sizeof(info) + caps.size;
	} else {
		vfio_info_cap_shift(&caps, sizeof(info));
		if (copy_to_user(arg + 1, caps.buf, caps.size)) {
			ret = -EFAULT;
			goto out;
		}
		info.cap_offset = sizeof(info);
	}

	ret = copy_to_user(arg, &info, minsz) ? -EFAULT : 0;
out:
	kfree(caps.buf);
	return ret;
}

/**
 * vfio_cxl_core_ioctl() - vfio_device_ops.ioctl
 * @core_vdev: the vfio device
 * @cmd: ioctl number
 * @arg: user argument
 *
 * Answers VFIO_DEVICE_GET_INFO with the CXL flag and capability and refuses
 * VFIO_DEVICE_IOEVENTFD, as nvgrace-gpu does: an ioeventfd writes the BAR
 * directly, bypassing the decoder-block filter, and vfio-pci core reads its
 * argument from user memory again, so a filter in front of it could be
 * raced. A VMM then traps those writes. The rest is vfio-pci core's (resets
 * reach vfio-cxl-core through the PCI reset callbacks in
 * vfio_cxl_core_err_handlers).
 *
 * Return: as for vfio_pci_core_ioctl().
 */
long vfio_cxl_core_ioctl(struct vfio_device *core_vdev, unsigned int cmd,
			 unsigned long arg)
{
	switch (cmd) {
	case VFIO_DEVICE_GET_INFO:
		return vfio_cxl_ioctl_get_info(to_cxl_core(core_vdev),
					       (void __user *)arg);
	case VFIO_DEVICE_IOEVENTFD:
		return -ENOTTY;
	default:
		return vfio_pci_core_ioctl(core_vdev, cmd, arg);
	}
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_ioctl, "VFIO_CXL");

/**
 * vfio_cxl_core_ioctl_feature() - vfio_device_ops.device_feature
 * @core_vdev: the vfio device
 * @flags: VFIO_DEVICE_FEATURE flags
 * @arg: user argument
 * @argsz: its size
 *
 * Low-power entry and exit are bracketed by a blocker: the memory region's
 * mappings are zapped as vfio-pci core zaps BAR mappings, and the decoder
 * is validated again before the first access in D0. Everything else is
 * vfio-pci core's.
 *
 * Return: as for vfio_pci_core_ioctl_feature().
 */
int vfio_cxl_core_ioctl_feature(struct vfio_device *core_vdev, u32 flags,
				void __user *arg, size_t argsz)
{
	struct vfio_cxl *cxl = to_cxl_core(core_vdev)->cxl;
	u32 feature = flags & VFIO_DEVICE_FEATURE_MASK;
	int ret;

	if (!(flags & VFIO_DEVICE_FEATURE_SET) ||
	    (feature != VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY &&
	     feature != VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP &&
	     feature != VFIO_DEVICE_FEATURE_LOW_POWER_EXIT))
		return vfio_pci_core_ioctl_feature(core_vdev, flags, arg, argsz);

	vfio_cxl_mem_block(cxl);
	ret = vfio_pci_core_ioctl_feature(core_vdev, flags, arg, argsz);
	vfio_cxl_mem_unblock(cxl);
	return ret;
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_ioctl_feature, "VFIO_CXL");

/**
 * vfio_cxl_core_get_region_info_caps() - vfio_device_ops.get_region_info_caps
 * @core_vdev: the vfio device
 * @info: region info being answered
 * @caps: capability chain
 *
 * vfio-pci core answers; for the component-register BAR a sparse-mmap
 * capability without the HDM decoder pages is added.
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_core_get_region_info_caps(struct vfio_device *core_vdev,
				       struct vfio_region_info *info,
				       struct vfio_info_cap *caps)
{
	struct vfio_cxl *cxl = to_cxl_core(core_vdev)->cxl;
	int ret;

	ret = vfio_pci_ioctl_get_region_info(core_vdev, info, caps);
	if (ret)
		return ret;
	if (vfio_cxl_is_comp_bar(cxl, info->index))
		return vfio_cxl_comp_bar_info(cxl, info, caps);
	return 0;
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_get_region_info_caps, "VFIO_CXL");

static ssize_t vfio_cxl_rw(struct vfio_device *core_vdev, char __user *buf,
			   size_t count, loff_t *ppos, bool iswrite)
{
	struct vfio_cxl_core_device *cdev = to_cxl_core(core_vdev);
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	struct pci_dev *pdev = cdev->pci_core.pdev;
	ssize_t ret;

	if (!count)
		return 0;

	if (index == VFIO_PCI_CONFIG_REGION_INDEX)
		return vfio_cxl_config_rw(cdev->cxl, buf, count, ppos, iswrite);

	if (!vfio_cxl_is_comp_bar(cdev->cxl, index))
		return iswrite ? vfio_pci_core_write(core_vdev, buf, count, ppos) :
				 vfio_pci_core_read(core_vdev, buf, count, ppos);

	if (pm_runtime_resume_and_get(&pdev->dev))
		return -EIO;
	ret = vfio_cxl_comp_bar_rw(cdev->cxl, buf, count, ppos, iswrite);
	pm_runtime_put(&pdev->dev);
	return ret;
}

/**
 * vfio_cxl_core_read() - vfio_device_ops.read
 * @core_vdev: the vfio device
 * @buf: user buffer
 * @count: bytes
 * @ppos: region index and offset
 *
 * Config space goes through the CXL DVSEC virtualization, the component
 * BAR through the decoder-block filter, the rest to vfio-pci core (which
 * dispatches the CXL regions to their handlers).
 *
 * Return: bytes read or a negative errno.
 */
ssize_t vfio_cxl_core_read(struct vfio_device *core_vdev, char __user *buf,
			   size_t count, loff_t *ppos)
{
	return vfio_cxl_rw(core_vdev, buf, count, ppos, false);
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_read, "VFIO_CXL");

/**
 * vfio_cxl_core_write() - vfio_device_ops.write
 * @core_vdev: the vfio device
 * @buf: user buffer
 * @count: bytes
 * @ppos: region index and offset
 *
 * See vfio_cxl_core_read().
 *
 * Return: bytes written (or absorbed) or a negative errno.
 */
ssize_t vfio_cxl_core_write(struct vfio_device *core_vdev,
			    const char __user *buf, size_t count, loff_t *ppos)
{
	return vfio_cxl_rw(core_vdev, (char __user *)buf, count, ppos, true);
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_write, "VFIO_CXL");

/**
 * vfio_cxl_core_mmap() - vfio_device_ops.mmap
 * @core_vdev: the vfio device
 * @vma: the mapping
 *
 * The component BAR is mapped here (never over the HDM decoder pages); the
 * rest, including the CXL memory region, by vfio-pci core.
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_core_mmap(struct vfio_device *core_vdev,
		       struct vm_area_struct *vma)
{
	struct vfio_cxl *cxl = to_cxl_core(core_vdev)->cxl;
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);

	if (vfio_cxl_is_comp_bar(cxl, index))
		return vfio_cxl_comp_bar_mmap(cxl, vma);
	return vfio_pci_core_mmap(core_vdev, vma);
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_mmap, "VFIO_CXL");

static struct vfio_cxl *pdev_to_cxl(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *vdev = dev_get_drvdata(&pdev->dev);

	if (!vdev)
		return NULL;
	return container_of(vdev, struct vfio_cxl_core_device, pci_core)->cxl;
}

/*
 * Any reset of the function (VFIO_DEVICE_RESET, a guest FLR virtualized by
 * vfio-pci, hot reset, sysfs): no access to the memory while it runs.
 * vfio-pci initiated resets call this with memory_lock held for write, a
 * sysfs reset without it, hence a flag rather than a blocker.
 */
static void vfio_cxl_core_reset_prepare(struct pci_dev *pdev)
{
	struct vfio_cxl *cxl = pdev_to_cxl(pdev);

	if (!cxl)
		return;
	WRITE_ONCE(cxl->resetting, true);
	WRITE_ONCE(cxl->recheck, true);
	vfio_cxl_mem_zap(cxl);
}

/*
 * The decoder and Memory_Active are validated before the next access. The
 * DVSEC shadow is kept: an FLR does not touch a device's DVSEC (CXL r3.1
 * 9.5), and a bus reset that loses the decoder is caught by validation.
 */
static void vfio_cxl_core_reset_done(struct pci_dev *pdev)
{
	struct vfio_cxl *cxl = pdev_to_cxl(pdev);

	if (!cxl)
		return;
	WRITE_ONCE(cxl->recheck, true);
	WRITE_ONCE(cxl->resetting, false);
	/*
	 * A sysfs reset runs without memory_lock: a fault that checked the
	 * state before reset_prepare may have inserted a PFN since its zap.
	 */
	vfio_cxl_mem_zap(cxl);
}

/*
 * AER: the link or device failed. The memory is zapped and blocked before
 * user space is told (vfio-pci core signals its error eventfd), and stays
 * blocked for good on a permanent failure; otherwise until recovery resumes
 * the device.
 */
static pci_ers_result_t
vfio_cxl_core_error_detected(struct pci_dev *pdev, pci_channel_state_t state)
{
	struct vfio_cxl *cxl = pdev_to_cxl(pdev);

	if (cxl) {
		if (!cxl->err_blocked)
			vfio_cxl_mem_block(cxl);
		/*
		 * A permanent failure, first or after a recovery that failed,
		 * keeps the blocker for good: no resume will drop it.
		 */
		cxl->err_blocked = state != pci_channel_io_perm_failure;
	}
	return vfio_pci_core_aer_err_detected(pdev, state);
}

/*
 * A frozen recovery's link reset (pci_bus_error_reset()) restores no
 * config space and vfio-pci core has no slot_reset: the function comes
 * back with its BARs unassigned. Put back the state last saved (at open,
 * before the last reset or at runtime suspend; MSI and MSI-X from the
 * kernel's own records), so that the memory works again after the
 * recovery, for the user who had it open and for the next open, which
 * would otherwise save and serve the unassigned BARs. The recovery holds
 * a runtime PM reference and device_lock.
 */
static void vfio_cxl_restore_after_link_reset(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	struct pci_dev *pdev = vdev->pdev;

	down_write(&vdev->memory_lock);
	if (!pci_dev_is_disconnected(pdev) &&
	    !vfio_cxl_comp_bar_assigned(cxl)) {
		pci_restore_state(pdev);
		pci_info(pdev, "config space restored after a link reset: component BAR %s\n",
			 vfio_cxl_comp_bar_assigned(cxl) ? "back" : "still unassigned");
		WRITE_ONCE(cxl->recheck, true);
	}
	up_write(&vdev->memory_lock);
}

static void vfio_cxl_core_error_resume(struct pci_dev *pdev)
{
	struct vfio_cxl *cxl = pdev_to_cxl(pdev);

	if (!cxl)
		return;
	vfio_cxl_restore_after_link_reset(cxl);
	if (cxl->err_blocked) {
		cxl->err_blocked = false;
		vfio_cxl_mem_unblock(cxl);
	}
}

/**
 * vfio_cxl_core_unregister_device() - remove() of a vfio-cxl variant driver
 * @cdev: the device
 *
 * Zaps and blocks the memory, then unregisters the vfio device, which
 * waits for user space to close it: a user that keeps its mapping of a
 * device being removed (surprise removal, the CXL core tearing the region
 * down) gets SIGBUS instead of a write-back mapping of memory that is gone.
 * A device that is still there is then cleared before it leaves.
 */
void vfio_cxl_core_unregister_device(struct vfio_cxl_core_device *cdev)
{
	struct vfio_cxl *cxl = cdev->cxl;
	struct pci_dev *pdev = cdev->pci_core.pdev;

	vfio_cxl_mem_block(cxl);
	vfio_pci_core_unregister_device(&cdev->pci_core);

	/*
	 * An AER recovery the removal cut short never calls resume here:
	 * its blocker goes with the driver. The last close could not clear
	 * (blocked). A device still there goes back to the host, or to
	 * another driver, cleared; a permanent failure's blocker stays, and
	 * that is said.
	 */
	if (cxl->err_blocked) {
		cxl->err_blocked = false;
		vfio_cxl_mem_unblock(cxl);
	}
	vfio_cxl_mem_unblock(cxl);
	if (!vfio_cxl_clear_memory_param || !cxl->needs_clear)
		return;
	if (pci_dev_is_disconnected(pdev))
		pci_err(pdev, "the CXL memory leaves the driver uncleared: the device failed or is gone\n");
	else if (vfio_cxl_clear_memory(cxl))
		pci_err(pdev, "the CXL memory leaves the driver uncleared\n");
}
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_unregister_device, "VFIO_CXL");

/*
 * vfio_cxl_core_err_handlers - PCI error and reset callbacks
 *
 * For the pci_driver of a vfio-cxl variant driver: vfio-pci core's AER
 * handling with the memory blocked first, plus the reset callbacks that
 * keep the memory region's mappings consistent across any function reset.
 */
const struct pci_error_handlers vfio_cxl_core_err_handlers = {
	.error_detected = vfio_cxl_core_error_detected,
	.resume = vfio_cxl_core_error_resume,
	.reset_prepare = vfio_cxl_core_reset_prepare,
	.reset_done = vfio_cxl_core_reset_done,
};
EXPORT_SYMBOL_NS_GPL(vfio_cxl_core_err_handlers, "VFIO_CXL");

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("VFIO support for CXL Type-2 devices (library for vfio-pci variant drivers)");
MODULE_IMPORT_NS("CXL");
MODULE_IMPORT_NS("DEVMEM");
MODULE_SOFTDEP("pre: cxl_acpi cxl_mem");
