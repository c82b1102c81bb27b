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
 *   without one). vfio_cxl_memory_failure() signals the processes that map
 *   the page, as memory_failure_pfn() would, and records it: read() and
 *   write() return -EIO and the host-side clear skips it until the driver
 *   is unbound.
 *
 * The memmap costs little: compound pages of 1 GiB (or 2 MiB) share their
 * tail struct pages (Documentation/mm/vmemmap_dedup.rst, on x86), and
 * memremap_pages() initializes only the struct pages that are not shared.
 */
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/fs.h>
#include <linux/sched/signal.h>
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
 * vfio_cxl_first_poisoned() - the first poisoned page of a range
 * @cxl: device state
 * @first: first page, counted from the start of the region
 * @nr: number of pages
 *
 * Return: the index of the first poisoned page among the @nr pages from
 * @first, or ULONG_MAX if none is.
 */
unsigned long vfio_cxl_first_poisoned(struct vfio_cxl *cxl,
				      unsigned long first, unsigned long nr)
{
	unsigned long index = first;

	if (nr && xa_find(&cxl->poison, &index, first + nr - 1, XA_PRESENT))
		return index;
	return ULONG_MAX;
}

/*
 * BUS_MCEERR_AO at @addr to the processes whose address space is @mm, as
 * memory_failure()'s task_early_kill(tsk, true) picks them: the current
 * thread in the current process, elsewhere a thread that asked for early
 * kills (PR_MCE_KILL_EARLY, as QEMU's main thread does).
 */
static void vfio_cxl_signal_mm(struct mm_struct *mm, unsigned long addr)
{
	const unsigned int early = PF_MCE_PROCESS | PF_MCE_EARLY;
	struct task_struct *p, *t, *to;

	rcu_read_lock();
	for_each_process(p) {
		if (READ_ONCE(p->mm) != mm)
			continue;
		to = NULL;
		if (mm == current->mm) {
			to = current;
		} else {
			for_each_thread(p, t) {
				if ((READ_ONCE(t->flags) & early) == early) {
					to = t;
					break;
				}
			}
		}
		if (to)
			send_sig_mceerr(BUS_MCEERR_AO, (void __user *)addr,
					PAGE_SHIFT, to);
	}
	rcu_read_unlock();
}

/*
 * The current thread blocks or ignores SIGBUS (QEMU's threads other than
 * its vCPUs read it through a signalfd): an AR sent without force (the
 * forcing helper is not exported) would wait or vanish while the load that
 * consumed the poison runs again.
 */
static bool vfio_cxl_sigbus_unwanted(void)
{
	struct sighand_struct *sighand = rcu_dereference_protected(current->sighand, true);
	bool unwanted;

	spin_lock_irq(&sighand->siglock);
	unwanted = sigismember(&current->blocked, SIGBUS) ||
		   sighand->action[SIGBUS - 1].sa.sa_handler == SIG_IGN;
	spin_unlock_irq(&sighand->siglock);
	return unwanted;
}

/*
 * What memory_failure_pfn() does for PFNs without struct pages, which
 * nvgrace-gpu relies on: the thread that consumed the poison gets
 * BUS_MCEERR_AR at its address, the other processes mapping the page
 * BUS_MCEERR_AO (see vfio_cxl_signal_mm()). Mappings stay: a VMM injects a
 * machine check into its guest and the guest retires the page (a fault
 * refused with VM_FAULT_HWPOISON would reach KVM as -EFAULT and stop the
 * VM). The page is recorded so that the host itself (read(), write(), the
 * clear) never touches it again while bound.
 *
 * Return: -EFAULT for a consumption (MF_ACTION_REQUIRED) whose consumer
 * cannot be told (it does not map the page, or blocks or ignores SIGBUS):
 * the machine-check code then kills it. Otherwise -EHWPOISON: on 0,
 * kill_me_maybe(), kill_me_never() and uc_decode_notifier() take the page
 * out of the direct map (set_mce_nospec()), through which KVM kmap()s
 * guest pages, so a guest using it as, say, its kvmclock page would oops
 * the host. 0 only for the software injector, which does not do that.
 */
static int vfio_cxl_memory_failure(struct dev_pagemap *pgmap,
				   unsigned long pfn, unsigned long nr_pages,
				   int mf_flags)
{
	struct vfio_cxl *cxl = container_of(pgmap, struct vfio_cxl, pgmap);
	unsigned long first = pfn - PHYS_PFN(cxl->hpa.start);
	bool required = mf_flags & MF_ACTION_REQUIRED;
	struct address_space *mapping = NULL;
	bool consumer_told = false;
	struct vfio_cxl_vma *v;
	unsigned long addr, i;
	int rc;

	rc = xa_err(xa_store_range(&cxl->poison, first, first + nr_pages - 1,
				   xa_mk_value(1), GFP_KERNEL));
	if (rc)
		return rc;

	mutex_lock(&cxl->mf_lock);
	/* A split changes vm_start and vm_pgoff under i_mmap_rwsem. */
	v = list_first_entry_or_null(&cxl->vmas, struct vfio_cxl_vma, node);
	if (v) {
		mapping = v->vma->vm_file->f_mapping;
		i_mmap_lock_read(mapping);
	}
	list_for_each_entry(v, &cxl->vmas, node) {
		for (i = 0; i < nr_pages; i++) {
			if (vfio_cxl_vma_addr(v->vma, first + i, &addr))
				continue;
			if (required && v->vma->vm_mm == current->mm) {
				if (vfio_cxl_sigbus_unwanted())
					continue;
				send_sig_mceerr(BUS_MCEERR_AR,
						(void __user *)addr, PAGE_SHIFT,
						current);
				consumer_told = true;
			} else {
				vfio_cxl_signal_mm(v->vma->vm_mm, addr);
			}
		}
	}
	if (mapping)
		i_mmap_unlock_read(mapping);
	mutex_unlock(&cxl->mf_lock);

	dev_warn(cxl->cxlds.dev,
		 "memory error at %#llx: users of %lu page(s) signalled; the host will not touch them until the driver is unbound\n",
		 PFN_PHYS(pfn), nr_pages);
	if (required && !consumer_told)
		return -EFAULT;
	return mf_flags & MF_SW_SIMULATED ? 0 : -EHWPOISON;
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
