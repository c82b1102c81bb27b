// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: the memory region (VFIO_REGION_SUBTYPE_CXL_MEM).
 *
 * The device memory behind the firmware-committed HDM decoder, exposed as a
 * device-specific vfio region. mmap() inserts write-back PFN mappings on
 * fault (PMD/PUD where aligned) under the vfio-pci memory_lock. The pages
 * have struct pages (pages.c). The mappings are tracked (@vmas) so that
 * memory_failure() can signal their owners.
 *
 * Memory Space: by default the memory follows the Memory Space Enable bit
 * of the command register like a BAR: faults and read()/write() fail while
 * it is off, and clearing it zaps the mappings first. CXL.mem decode is
 * governed by the HDM decoder and DVSEC Mem_Enable (CXL r3.1 8.1.3.2,
 * 8.2.4.20), but some devices raise a fatal host error when their HDM
 * range is accessed with Memory Space off. vfio_cxl_core.ignore_memory_space
 * restores the bare CXL behaviour for devices known to be safe.
 *
 * Blocking: every path that takes the memory away (a config write that may
 * change power state or Memory Space, low-power entry, a CXL Reset, an AER
 * error, removal) holds a counted blocker while it runs: faults fail and the
 * mappings are zapped first. Any reset (reset_prepare: FLR, bus reset,
 * whoever starts it) sets @resetting and zaps, without memory_lock, which
 * vfio-pci holds for write around the resets it starts. After a reset or
 * power transition the decoder is validated before the next access
 * (reset.c).
 *
 * Zapping: vfio-pci core zaps only the file offsets of BAR0..BAR5. Our region
 * lives at a device-region index in the same address_space (the vfio device
 * inode), so vfio-cxl-core zaps its own range.
 */
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "vfio_cxl_priv.h"

/* Page offset inside a region: vm_pgoff minus the region index bits. */
#define VFIO_CXL_PGOFF_MASK	((1UL << (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT)) - 1)
/* read()/write() bounce through the kernel in pieces of this size. */
#define VFIO_CXL_RW_CHUNK	SZ_64K

/*
 * D3hot, D3cold or an unknown state: the function does not serve CXL.mem.
 * pci_power_t is __bitwise, so only equality is allowed on it (sparse).
 */
static bool vfio_cxl_powered_down(pci_power_t state)
{
	return state == PCI_D3hot || state == PCI_D3cold ||
	       state == PCI_UNKNOWN;
}

/* Power, Memory Space and blockers allow an access. memory_lock held. */
static bool vfio_cxl_mem_reachable(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;

	lockdep_assert_held(&vdev->memory_lock);

	if (READ_ONCE(cxl->resetting) || cxl->mem_blockers ||
	    vdev->pm_runtime_engaged ||
	    vfio_cxl_powered_down(vdev->pdev->current_state))
		return false;
	return vfio_cxl_ignore_memory_space || __vfio_pci_memory_enabled(vdev);
}

/*
 * Take memory_lock for read with the memory usable, validating the decoder
 * first if a reset or power transition happened (under the lock for write:
 * validation may enable Memory Space for the register reads and re-program
 * the decoder). Return: true with memory_lock held for read.
 */
static bool vfio_cxl_mem_get(struct vfio_cxl *cxl)
{
	struct rw_semaphore *lock = &cxl->cdev->pci_core.memory_lock;

	if (READ_ONCE(cxl->recheck)) {
		down_write(lock);
		if (cxl->recheck && vfio_cxl_mem_reachable(cxl))
			vfio_cxl_validate(cxl);
		downgrade_write(lock);
	} else {
		down_read(lock);
	}

	if (vfio_cxl_mem_reachable(cxl) && !READ_ONCE(cxl->recheck) &&
	    !READ_ONCE(cxl->hdm_lost))
		return true;
	up_read(lock);
	return false;
}

static void vfio_cxl_mem_put(struct vfio_cxl *cxl)
{
	up_read(&cxl->cdev->pci_core.memory_lock);
}

/*
 * vfio_pci_vmf_insert_pfn() without its Memory Space test, which reads the
 * BAR state: vfio_cxl_mem_get() has checked what applies to the memory.
 */
static vm_fault_t vfio_cxl_mem_insert_pfn(struct vm_fault *vmf,
					  unsigned long pfn, unsigned int order)
{
	if (!order)
		return vmf_insert_pfn(vmf->vma, vmf->address, pfn);
	if (IS_ENABLED(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP) && order == PMD_ORDER)
		return vmf_insert_pfn_pmd(vmf, pfn, false);
	if (IS_ENABLED(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP) && order == PUD_ORDER)
		return vmf_insert_pfn_pud(vmf, pfn, false);
	return VM_FAULT_FALLBACK;
}

static vm_fault_t vfio_cxl_mem_huge_fault(struct vm_fault *vmf,
					  unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vfio_cxl *cxl = vma->vm_private_data;
	unsigned long addr = ALIGN_DOWN(vmf->address, PAGE_SIZE << order);
	unsigned long npages = range_len(&cxl->hpa) >> PAGE_SHIFT;
	unsigned long pgoff, pfn;
	vm_fault_t ret;

	pgoff = (vma->vm_pgoff & VFIO_CXL_PGOFF_MASK) +
		linear_page_delta(vma, addr);
	pfn = PHYS_PFN(cxl->hpa.start) + pgoff;

	if (pgoff >= npages || npages - pgoff < (1UL << order))
		return order ? VM_FAULT_FALLBACK : VM_FAULT_SIGBUS;
	if (!is_aligned_for_order(vma, addr, pfn, order))
		return VM_FAULT_FALLBACK;

	if (!vfio_cxl_mem_get(cxl))
		return VM_FAULT_SIGBUS;
	ret = vfio_cxl_mem_insert_pfn(vmf, pfn, order);
	vfio_cxl_mem_put(cxl);
	return ret;
}

/**
 * vfio_cxl_vma_addr() - where a mapping maps a page of the region
 * @vma: a mapping of the memory region
 * @page: page index from the start of the region
 * @addr: the user address, on success
 *
 * Return: 0, or -EFAULT if @vma does not map @page.
 */
int vfio_cxl_vma_addr(struct vm_area_struct *vma, unsigned long page,
		      unsigned long *addr)
{
	unsigned long first = vma->vm_pgoff & VFIO_CXL_PGOFF_MASK;

	if (page < first || page - first >= vma_pages(vma))
		return -EFAULT;
	*addr = vma->vm_start + ((page - first) << PAGE_SHIFT);
	return 0;
}

static int vfio_cxl_vma_track(struct vfio_cxl *cxl, struct vm_area_struct *vma)
{
	struct vfio_cxl_vma *v = kmalloc_obj(*v);

	if (!v)
		return -ENOMEM;
	v->vma = vma;
	mutex_lock(&cxl->mf_lock);
	list_add(&v->node, &cxl->vmas);
	mutex_unlock(&cxl->mf_lock);
	return 0;
}

/* A split or fork made a copy of a mapping: track it too. */
static void vfio_cxl_mem_vm_open(struct vm_area_struct *vma)
{
	if (vfio_cxl_vma_track(vma->vm_private_data, vma))
		pr_warn_ratelimited("vfio-cxl: no memory to track a mapping: memory errors in it will not be signalled\n");
}

static void vfio_cxl_mem_vm_close(struct vm_area_struct *vma)
{
	struct vfio_cxl *cxl = vma->vm_private_data;
	struct vfio_cxl_vma *v;

	mutex_lock(&cxl->mf_lock);
	list_for_each_entry(v, &cxl->vmas, node) {
		if (v->vma == vma) {
			list_del(&v->node);
			kfree(v);
			break;
		}
	}
	mutex_unlock(&cxl->mf_lock);
}

static vm_fault_t vfio_cxl_mem_fault(struct vm_fault *vmf)
{
	return vfio_cxl_mem_huge_fault(vmf, 0);
}

static const struct vm_operations_struct vfio_cxl_mem_vm_ops = {
	.open = vfio_cxl_mem_vm_open,
	.close = vfio_cxl_mem_vm_close,
	.fault = vfio_cxl_mem_fault,
#ifdef CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP
	.huge_fault = vfio_cxl_mem_huge_fault,
#endif
};

static int vfio_cxl_mem_mmap(struct vfio_pci_core_device *vdev,
			     struct vfio_pci_region *region,
			     struct vm_area_struct *vma)
{
	struct vfio_cxl *cxl = region->data;
	u64 pgoff = vma->vm_pgoff & VFIO_CXL_PGOFF_MASK;
	u64 start, len, end;
	int ret;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if ((vma->vm_flags & VM_READ) &&
	    !(region->flags & VFIO_REGION_INFO_FLAG_READ))
		return -EINVAL;
	if ((vma->vm_flags & VM_WRITE) &&
	    !(region->flags & VFIO_REGION_INFO_FLAG_WRITE))
		return -EINVAL;
	if (check_sub_overflow(vma->vm_end, vma->vm_start, &len) ||
	    check_shl_overflow(pgoff, PAGE_SHIFT, &start) ||
	    check_add_overflow(start, len, &end) || end > region->size)
		return -EINVAL;
	ret = vfio_cxl_vma_track(cxl, vma);
	if (ret)
		return ret;

	/*
	 * Write-back: the memory is coherent, a non-cached mapping would
	 * break the coherence the guest relies on. Same flags as
	 * io_remap_pfn_range() would set; the fault handler inserts PFNs.
	 */
	vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_private_data = cxl;
	vma->vm_ops = &vfio_cxl_mem_vm_ops;
	return 0;
}

/* How many of the @len bytes at @pos come before a page memory_failure() reported. */
static size_t vfio_cxl_healthy_len(struct vfio_cxl *cxl, u64 pos, size_t len)
{
	unsigned long first = pos >> PAGE_SHIFT;
	unsigned long bad;

	bad = vfio_cxl_first_poisoned(cxl, first,
				      ((pos + len - 1) >> PAGE_SHIFT) - first + 1);
	if (bad == ULONG_MAX)
		return len;
	return bad == first ? 0 : ((u64)bad << PAGE_SHIFT) - pos;
}

/*
 * read()/write() exist for tools that do not map the region: debuggers,
 * inspection and migration tools, pread()-based tests. A VMM maps it.
 * They bounce through a kernel buffer so that no user page fault is taken
 * with memory_lock held (the user buffer may itself be a mapping of this
 * device).
 */
static ssize_t vfio_cxl_mem_rw(struct vfio_pci_core_device *vdev,
			       char __user *buf, size_t count, loff_t *ppos,
			       bool iswrite)
{
	struct vfio_cxl *cxl = container_of(vdev, struct vfio_cxl_core_device,
					    pci_core)->cxl;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	u64 size = range_len(&cxl->hpa);
	size_t done = 0;
	ssize_t ret = 0;
	u64 end;
	void *bounce;

	if (check_add_overflow(pos, (u64)count, &end) || pos >= size)
		return -EINVAL;
	if (!vfio_cxl_host_access)
		return -EIO;

	count = min_t(u64, count, size - pos);
	bounce = kmalloc(min_t(size_t, count, VFIO_CXL_RW_CHUNK), GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;

	while (done < count) {
		size_t n = vfio_cxl_healthy_len(cxl, pos + done,
						min_t(size_t, count - done,
						      VFIO_CXL_RW_CHUNK));
		void *kva = cxl->mem_kva + pos + done;

		if (!n) {
			ret = -EIO;	/* a memory error was reported here */
			break;
		}
		if (iswrite && copy_from_user(bounce, buf + done, n)) {
			ret = -EFAULT;
			break;
		}
		if (!vfio_cxl_mem_get(cxl)) {
			ret = -EIO;
			break;
		}
		if (iswrite)
			memcpy(kva, bounce, n);
		else if (copy_mc_to_kernel(bounce, kva, n))
			ret = -EIO;	/* poisoned line: no machine check */
		vfio_cxl_mem_put(cxl);
		if (ret)
			break;
		if (!iswrite && copy_to_user(buf + done, bounce, n)) {
			ret = -EFAULT;
			break;
		}
		done += n;
	}
	kfree(bounce);

	if (!done)
		return ret;
	*ppos += done;
	return done;
}

static void vfio_cxl_mem_release(struct vfio_pci_core_device *vdev,
				 struct vfio_pci_region *region)
{
	struct vfio_cxl *cxl = region->data;

	cxl->mem_index = -1;
}

static const struct vfio_pci_regops vfio_cxl_mem_regops = {
	.rw = vfio_cxl_mem_rw,
	.mmap = vfio_cxl_mem_mmap,
	.release = vfio_cxl_mem_release,
};

/**
 * vfio_cxl_mem_register() - register the memory region for this open
 * @cxl: device state
 *
 * Called between vfio_pci_core_enable() and vfio_pci_core_finish_enable();
 * vfio_pci_core_disable() releases the region.
 *
 * Return: 0 or a negative errno.
 */
int vfio_cxl_mem_register(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	int index = VFIO_PCI_NUM_REGIONS + vdev->num_regions;
	int ret;

	ret = vfio_pci_core_register_dev_region(vdev, VFIO_REGION_TYPE_CXL,
						VFIO_REGION_SUBTYPE_CXL_MEM,
						&vfio_cxl_mem_regops,
						range_len(&cxl->hpa),
						VFIO_REGION_INFO_FLAG_READ |
						VFIO_REGION_INFO_FLAG_WRITE |
						VFIO_REGION_INFO_FLAG_MMAP,
						cxl);
	if (ret)
		return ret;

	cxl->mem_index = index;
	WRITE_ONCE(cxl->hdm_lost, false);
	WRITE_ONCE(cxl->recheck, true);
	return 0;
}

/**
 * vfio_cxl_mem_usable() - whether the memory may be handed out now
 * @cxl: device state
 *
 * The test a fault, read or write makes (power, Memory Space, blockers,
 * reset, decoder validated and not lost), for paths that hand out the
 * memory's address instead of accessing it: a dma-buf export.
 *
 * Context: process context, may sleep; memory_lock must not be held.
 *
 * Return: true when the memory is usable at the time of the call.
 */
bool vfio_cxl_mem_usable(struct vfio_cxl *cxl)
{
	if (!vfio_cxl_mem_get(cxl))
		return false;
	vfio_cxl_mem_put(cxl);
	return true;
}

/**
 * vfio_cxl_mem_zap() - remove every user mapping of the memory region
 * @cxl: device state
 *
 * The next access faults again and goes through the power, reset and
 * decoder checks.
 */
void vfio_cxl_mem_zap(struct vfio_cxl *cxl)
{
	struct vfio_device *core_vdev = &cxl->cdev->pci_core.vdev;

	if (cxl->mem_index < 0)
		return;
	unmap_mapping_range(core_vdev->inode->i_mapping,
			    VFIO_PCI_INDEX_TO_OFFSET(cxl->mem_index),
			    range_len(&cxl->hpa), true);
}

/**
 * vfio_cxl_mem_block() - fail accesses and zap mappings until unblocked
 * @cxl: device state
 *
 * Around operations that take the memory away (power state or Memory Space
 * changes, low-power entry, errors, removal). Blockers are counted, so two
 * paths cannot unblock each other. The decoder is validated again before
 * the first access after the last unblock.
 */
void vfio_cxl_mem_block(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;

	down_write(&vdev->memory_lock);
	cxl->mem_blockers++;
	WRITE_ONCE(cxl->recheck, true);
	vfio_cxl_mem_zap(cxl);
	up_write(&vdev->memory_lock);
}

/**
 * vfio_cxl_mem_follow_command() - zap the mappings if Memory Space is off
 * @cxl: device state
 *
 * After a command-register write: catches a write whose value changed
 * between our look at it and vfio-pci core's.
 */
void vfio_cxl_mem_follow_command(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;

	down_write(&vdev->memory_lock);
	if (!__vfio_pci_memory_enabled(vdev))
		vfio_cxl_mem_zap(cxl);
	up_write(&vdev->memory_lock);
}

/**
 * vfio_cxl_mem_unblock() - drop a blocker taken by vfio_cxl_mem_block()
 * @cxl: device state
 *
 * Faults still fail while the device is in D3hot, in low power or has
 * Memory Space off: those checks are made at each access. The mappings are
 * zapped once more if the device did not come back to D0, so that nothing
 * installed around the transition survives it.
 */
void vfio_cxl_mem_unblock(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;

	down_write(&vdev->memory_lock);
	if (!WARN_ON_ONCE(!cxl->mem_blockers))
		cxl->mem_blockers--;
	if (vdev->pdev->current_state != PCI_D0)
		vfio_cxl_mem_zap(cxl);
	up_write(&vdev->memory_lock);
}
