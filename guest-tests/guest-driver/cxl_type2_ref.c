// SPDX-License-Identifier: GPL-2.0-only
/*
 * cxl-type2-ref: a reference CXL Type-2 driver for the guest side of the
 * vfio-cxl tests (docs/guest-driver.md).
 *
 * It binds a PCIe device with a Mem_Capable CXL Device DVSEC, attaches it
 * to the Linux CXL core through the mainline Type-2 API (device state,
 * component registers, capacity, devm_cxl_probe_mem()), claims the host
 * physical range of the region the CXL core assembled from the
 * firmware-committed decoders, and lets user space map that range
 * write-back through /dev/cxl-type2-refN.
 */
#include <linux/bitfield.h>
#include <linux/cleanup.h>
#include <linux/compat.h>
#include <linux/delay.h>
#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/ioport.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/sched/mm.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <cxl/cxl.h>
#include <cxl/pci.h>

#include "cxl_type2_ref.h"

#define T2REF_NAME	"cxl-type2-ref"

static DEFINE_IDA(t2ref_ida);

/*
 * What the character device needs. It outlives the PCI binding while files
 * are open: after remove, @live is false, every user mapping is zapped and
 * new mmaps and ioctls fail. @inserted counts the mappings the fault
 * handlers inserted, by size (sysfs inserted_pte/_pmd/_pud: how the tests
 * see that huge mappings are used).
 */
struct t2ref_mem {
	struct kref ref;
	struct mutex lock;		/* @live, @files */
	bool live;
	struct list_head files;
	phys_addr_t start;
	u64 size;
	int id;
	char name[32];
	struct miscdevice misc;
	atomic64_t inserted[3];		/* T2REF_PTE, _PMD, _PUD */
};

enum { T2REF_PTE, T2REF_PMD, T2REF_PUD };

struct t2ref_file {
	struct list_head node;
	struct file *file;
	struct t2ref_mem *mem;
};

/* The driver's device state: the CXL core's state must come first. */
struct t2ref_dev {
	struct cxl_dev_state cxlds;
	struct cxl_memdev *cxlmd;
	struct range hpa;
	struct t2ref_mem *mem;
};

static void t2ref_mem_free(struct kref *ref)
{
	struct t2ref_mem *mem = container_of(ref, struct t2ref_mem, ref);

	ida_free(&t2ref_ida, mem->id);
	mutex_destroy(&mem->lock);
	kfree(mem);
}

static struct t2ref_mem *t2ref_mem_of(struct file *file)
{
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct t2ref_mem, misc);
}

static int t2ref_open(struct inode *inode, struct file *file)
{
	struct t2ref_mem *mem = t2ref_mem_of(file);
	struct t2ref_file *tf;

	tf = kzalloc_obj(*tf);
	if (!tf)
		return -ENOMEM;

	guard(mutex)(&mem->lock);
	if (!mem->live) {
		kfree(tf);
		return -ENODEV;
	}
	kref_get(&mem->ref);
	tf->file = file;
	tf->mem = mem;
	list_add(&tf->node, &mem->files);
	file->private_data = tf;
	return 0;
}

static int t2ref_release(struct inode *inode, struct file *file)
{
	struct t2ref_file *tf = file->private_data;
	struct t2ref_mem *mem = tf->mem;

	scoped_guard(mutex, &mem->lock)
		list_del(&tf->node);
	kfree(tf);
	kref_put(&mem->ref, t2ref_mem_free);
	return 0;
}

/*
 * User mappings are populated on fault, under @lock, and only while the
 * device is bound: an unbind zaps what was inserted, and a later fault
 * gets SIGBUS, even for a VMA that mmap() created concurrently with the
 * unbind. Where the virtual and physical addresses are aligned, a fault
 * inserts one PUD (1 GiB) or PMD (2 MiB) mapping: fewer faults, and under
 * KVM fewer TLB misses. Elsewhere it inserts the 4 KiB PTEs of the whole
 * 2 MiB-aligned window around the address (within the VMA). The mappings
 * are write-back: the range is memremap()ed WB while bound, which records
 * WB as its PAT type on x86.
 */
#define T2REF_FAULT_WINDOW	SZ_2M

static vm_fault_t t2ref_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct t2ref_mem *mem = vma->vm_private_data;
	unsigned long start, end, addr;
	vm_fault_t ret = VM_FAULT_NOPAGE;
	u64 base;

	start = max(ALIGN_DOWN(vmf->address, T2REF_FAULT_WINDOW), vma->vm_start);
	end = min(ALIGN_DOWN(vmf->address, T2REF_FAULT_WINDOW) +
		  T2REF_FAULT_WINDOW, vma->vm_end);
	base = mem->start + ((u64)vma->vm_pgoff << PAGE_SHIFT) - vma->vm_start;

	guard(mutex)(&mem->lock);
	if (!mem->live)
		return VM_FAULT_SIGBUS;
	for (addr = start; addr < end; addr += PAGE_SIZE) {
		ret = vmf_insert_pfn(vma, addr, PHYS_PFN(base + addr));
		if (ret & VM_FAULT_ERROR)
			break;
		atomic64_inc(&mem->inserted[T2REF_PTE]);
	}
	return ret;
}

#ifdef CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP
static vm_fault_t t2ref_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct t2ref_mem *mem = vma->vm_private_data;
	unsigned long size = PAGE_SIZE << order;
	unsigned long addr = ALIGN_DOWN(vmf->address, size);
	unsigned long pfn;
	vm_fault_t ret;

	if (addr < vma->vm_start || addr + size > vma->vm_end)
		return VM_FAULT_FALLBACK;
	pfn = PHYS_PFN(mem->start) + vma->vm_pgoff +
	      ((addr - vma->vm_start) >> PAGE_SHIFT);
	if (!IS_ALIGNED(pfn, 1UL << order))
		return VM_FAULT_FALLBACK;

	guard(mutex)(&mem->lock);
	if (!mem->live)
		return VM_FAULT_SIGBUS;
	if (IS_ENABLED(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP) && order == PMD_ORDER)
		ret = vmf_insert_pfn_pmd(vmf, pfn, false);
	else if (IS_ENABLED(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP) &&
		 order == PUD_ORDER)
		ret = vmf_insert_pfn_pud(vmf, pfn, false);
	else
		return VM_FAULT_FALLBACK;
	if (ret == VM_FAULT_NOPAGE)
		atomic64_inc(&mem->inserted[order == PMD_ORDER ? T2REF_PMD :
							      T2REF_PUD]);
	return ret;
}
#endif

static const struct vm_operations_struct t2ref_vm_ops = {
	.fault = t2ref_fault,
#ifdef CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP
	.huge_fault = t2ref_huge_fault,
#endif
};

static int t2ref_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct t2ref_file *tf = file->private_data;
	struct t2ref_mem *mem = tf->mem;
	unsigned long len = vma->vm_end - vma->vm_start;
	u64 off;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (check_shl_overflow((u64)vma->vm_pgoff, PAGE_SHIFT, &off))
		return -EINVAL;

	guard(mutex)(&mem->lock);
	if (!mem->live)
		return -ENODEV;
	if (off >= mem->size || len > mem->size - off)
		return -EINVAL;

	vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &t2ref_vm_ops;
	/* The file, which holds a reference on @mem, outlives the VMA. */
	vma->vm_private_data = mem;
	return 0;
}

static long t2ref_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct t2ref_file *tf = file->private_data;
	struct t2ref_mem *mem = tf->mem;
	struct cxl_t2ref_info info = {};

	if (cmd != CXL_T2REF_GET_INFO)
		return -ENOTTY;

	scoped_guard(mutex, &mem->lock) {
		if (!mem->live)
			return -ENODEV;
		info.size = mem->size;
	}
	if (copy_to_user((void __user *)arg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

/*
 * A mapping of 1 GiB or more gets an address whose offset within 1 GiB is
 * the memory's (CXL regions are 256 MiB-aligned, and firmware's pre-commit
 * puts them on a 1 GiB boundary), so the first touch of each GiB inserts
 * one PUD. thp_get_unmapped_area() aligns for PMDs only; it serves the
 * rest.
 */
static unsigned long t2ref_get_unmapped_area(struct file *file,
					     unsigned long addr,
					     unsigned long len,
					     unsigned long pgoff,
					     unsigned long flags)
{
	struct t2ref_file *tf = file->private_data;
	unsigned long padded, ret;
	phys_addr_t phys;

	/* As __thp_get_unmapped_area(): no padding for 32-bit callers. */
	if (!IS_ENABLED(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP) || len < PUD_SIZE ||
	    addr || (flags & MAP_FIXED) || in_compat_syscall() ||
	    check_add_overflow(len, PUD_SIZE, &padded))
		return thp_get_unmapped_area(file, addr, len, pgoff, flags);
	/* @start never changes while a file holds a reference. */
	phys = tf->mem->start + ((phys_addr_t)pgoff << PAGE_SHIFT);
	ret = mm_get_unmapped_area(file, 0, padded, pgoff, flags);
	if (IS_ERR_VALUE(ret))
		return thp_get_unmapped_area(file, addr, len, pgoff, flags);
	return ret + ((phys - ret) & (PUD_SIZE - 1));
}

static const struct file_operations t2ref_fops = {
	.owner = THIS_MODULE,
	.open = t2ref_open,
	.release = t2ref_release,
	.mmap = t2ref_mmap,
	/* Addresses aligned as the memory is, so that huge mappings fit. */
	.get_unmapped_area = t2ref_get_unmapped_area,
	.unlocked_ioctl = t2ref_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static ssize_t size_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct miscdevice *misc = dev_get_drvdata(dev);
	struct t2ref_mem *mem = container_of(misc, struct t2ref_mem, misc);

	return sysfs_emit(buf, "%llu\n", mem->size);
}
static DEVICE_ATTR_RO(size);

static struct t2ref_mem *t2ref_mem_of_dev(struct device *dev)
{
	struct miscdevice *misc = dev_get_drvdata(dev);

	return container_of(misc, struct t2ref_mem, misc);
}

#define T2REF_INSERTED_ATTR(name, which)				\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n",				\
			  atomic64_read(&t2ref_mem_of_dev(dev)->inserted[which])); \
}									\
static DEVICE_ATTR_RO(name)

T2REF_INSERTED_ATTR(inserted_pte, T2REF_PTE);
T2REF_INSERTED_ATTR(inserted_pmd, T2REF_PMD);
T2REF_INSERTED_ATTR(inserted_pud, T2REF_PUD);

static struct attribute *t2ref_attrs[] = {
	&dev_attr_size.attr,
	&dev_attr_inserted_pte.attr,
	&dev_attr_inserted_pmd.attr,
	&dev_attr_inserted_pud.attr,
	NULL
};
ATTRIBUTE_GROUPS(t2ref);

/* Unbind: no new opens, no new mappings, every existing mapping zapped. */
static void t2ref_unpublish(void *data)
{
	struct t2ref_mem *mem = data;
	struct t2ref_file *tf;

	dev_info(mem->misc.parent, "removing /dev/%s\n", mem->name);
	misc_deregister(&mem->misc);
	scoped_guard(mutex, &mem->lock) {
		mem->live = false;
		list_for_each_entry(tf, &mem->files, node)
			unmap_mapping_range(tf->file->f_mapping, 0, 0, true);
	}
	kref_put(&mem->ref, t2ref_mem_free);
}

static int t2ref_publish(struct pci_dev *pdev, struct t2ref_dev *t2)
{
	struct t2ref_mem *mem;
	int rc;

	mem = kzalloc_obj(*mem);
	if (!mem)
		return -ENOMEM;
	mem->id = ida_alloc(&t2ref_ida, GFP_KERNEL);
	if (mem->id < 0) {
		rc = mem->id;
		kfree(mem);
		return rc;
	}
	kref_init(&mem->ref);
	mutex_init(&mem->lock);
	INIT_LIST_HEAD(&mem->files);
	mem->live = true;
	mem->start = t2->hpa.start;
	mem->size = range_len(&t2->hpa);
	snprintf(mem->name, sizeof(mem->name), T2REF_NAME "%d", mem->id);
	mem->misc.minor = MISC_DYNAMIC_MINOR;
	mem->misc.name = mem->name;
	mem->misc.fops = &t2ref_fops;
	mem->misc.parent = &pdev->dev;
	mem->misc.groups = t2ref_groups;
	mem->misc.mode = 0600;

	rc = misc_register(&mem->misc);
	if (rc) {
		pci_err(pdev, "cannot register /dev/%s: %d\n", mem->name, rc);
		kref_put(&mem->ref, t2ref_mem_free);
		return rc;
	}
	t2->mem = mem;
	return devm_add_action_or_reset(&pdev->dev, t2ref_unpublish, mem);
}

/*
 * CXL r3.1 8.1.3.8.2: Memory_Info_Valid within 1 s of reset, then
 * Memory_Active within Memory_Active_Timeout (0: 1 s, 1: 4 s, 2: 16 s,
 * ...). Probe waits at most 16 s for it.
 */
#define T2REF_INFO_VALID_MS	1000
#define T2REF_ACTIVE_ENC_MAX	2
#define T2REF_POLL_MS		20

static u32 t2ref_wait_mem_active(struct pci_dev *pdev, u16 dvsec)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(T2REF_INFO_VALID_MS);
	bool valid = false;
	u32 lo, enc;

	for (;;) {
		pci_read_config_dword(pdev,
				      dvsec + PCI_DVSEC_CXL_RANGE_SIZE_LOW(0),
				      &lo);
		if (PCI_POSSIBLE_ERROR(lo))
			return lo;
		if (!valid && (lo & PCI_DVSEC_CXL_MEM_INFO_VALID)) {
			valid = true;
			enc = min(FIELD_GET(PCI_DVSEC_CXL_MEM_ACTIVE_TIMEOUT, lo),
				  T2REF_ACTIVE_ENC_MAX);
			deadline = jiffies +
				   msecs_to_jiffies(MSEC_PER_SEC << (2 * enc));
		}
		if (valid && (lo & PCI_DVSEC_CXL_MEM_ACTIVE))
			return lo;
		if (time_after(jiffies, deadline))
			return lo;
		msleep(T2REF_POLL_MS);
	}
}

/* The device memory size from DVSEC Range 1, once it is valid and active. */
static int t2ref_dvsec_capacity(struct pci_dev *pdev, u16 dvsec, u64 *size)
{
	u32 hi, lo;
	u16 cap;

	pci_read_config_word(pdev, dvsec + PCI_DVSEC_CXL_CAP, &cap);
	if (!(cap & PCI_DVSEC_CXL_MEM_CAPABLE)) {
		pci_err(pdev, "CXL Device DVSEC: not Mem_Capable (capability %#x)\n",
			cap);
		return -ENODEV;
	}
	lo = t2ref_wait_mem_active(pdev, dvsec);
	if (PCI_POSSIBLE_ERROR(lo) || !(lo & PCI_DVSEC_CXL_MEM_INFO_VALID) ||
	    !(lo & PCI_DVSEC_CXL_MEM_ACTIVE)) {
		pci_err(pdev, "CXL memory not valid and active (DVSEC Range 1 Size Low %#x)\n",
			lo);
		return -ENXIO;
	}
	pci_read_config_dword(pdev, dvsec + PCI_DVSEC_CXL_RANGE_SIZE_HIGH(0),
			      &hi);
	*size = ((u64)hi << 32) | (lo & PCI_DVSEC_CXL_MEM_SIZE_LOW);
	if (!*size) {
		pci_err(pdev, "CXL Device DVSEC Range 1 has size 0\n");
		return -ENXIO;
	}
	return 0;
}

static int t2ref_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct t2ref_dev *t2;
	void *kva;
	u64 capacity;
	u16 dvsec;
	int rc;

	dvsec = pci_find_dvsec_capability(pdev, PCI_VENDOR_ID_CXL,
					  PCI_DVSEC_CXL_DEVICE);
	if (!dvsec) {
		pci_err(pdev, "no CXL Device DVSEC: not a CXL device\n");
		return -ENODEV;
	}
	rc = t2ref_dvsec_capacity(pdev, dvsec, &capacity);
	if (rc)
		return rc;

	rc = pcim_enable_device(pdev);
	if (rc)
		return rc;

	t2 = devm_cxl_dev_state_create(&pdev->dev, CXL_DEVTYPE_DEVMEM,
				       pci_get_dsn(pdev), dvsec,
				       struct t2ref_dev, cxlds, false);
	if (!t2)
		return -ENOMEM;

	rc = cxl_pci_setup_regs(pdev, CXL_REGLOC_RBI_COMPONENT,
				&t2->cxlds.reg_map);
	if (rc) {
		pci_err(pdev, "no CXL component registers (Register Locator DVSEC): %d\n",
			rc);
		return rc;
	}
	if (!t2->cxlds.reg_map.component_map.hdm_decoder.valid) {
		pci_err(pdev, "component registers lack the HDM Decoder Capability\n");
		return -ENODEV;
	}

	/* Neither a mailbox nor memdev registers: the media is ready. */
	t2->cxlds.media_ready = true;
	rc = cxl_set_capacity(&t2->cxlds, capacity);
	if (rc) {
		pci_err(pdev, "cxl_set_capacity(%#llx) failed: %d\n", capacity,
			rc);
		return rc;
	}

	t2->cxlmd = devm_cxl_probe_mem(&t2->cxlds, &t2->hpa);
	if (IS_ERR(t2->cxlmd)) {
		rc = PTR_ERR(t2->cxlmd);
		pci_err(pdev, "no auto-assembled CXL region: devm_cxl_probe_mem() failed: %pe (cxl_acpi and cxl_mem loaded? decoders committed by firmware?)\n",
			t2->cxlmd);
		return rc;
	}
	/* devm_cxl_probe_mem() starts from { 0, -1 }: length 0, no region. */
	if (!range_len(&t2->hpa) || t2->hpa.end < t2->hpa.start) {
		pci_err(pdev, "devm_cxl_probe_mem() returned no region range\n");
		return -ENXIO;
	}

	if (!devm_request_mem_region(&pdev->dev, t2->hpa.start,
				     range_len(&t2->hpa), T2REF_NAME)) {
		pci_err(pdev, "region %pra is busy (claimed by another driver, e.g. dax/kmem)\n",
			&t2->hpa);
		return -EBUSY;
	}

	/* Records WB as the range's memory type for the user mappings. */
	kva = devm_memremap(&pdev->dev, t2->hpa.start, range_len(&t2->hpa),
			    MEMREMAP_WB);
	if (IS_ERR(kva)) {
		pci_err(pdev, "memremap(WB) of %pra failed: %pe\n", &t2->hpa,
			kva);
		return PTR_ERR(kva);
	}

	rc = t2ref_publish(pdev, t2);
	if (rc)
		return rc;

	pci_set_drvdata(pdev, t2);
	pci_info(pdev, "CXL Type-2 region %pra (%llu MiB) as /dev/%s\n",
		 &t2->hpa, range_len(&t2->hpa) >> 20, t2->mem->name);
	return 0;
}

static const struct pci_device_id t2ref_ids[] = {
	/* QEMU's cxl-accel (docs/devices/cxl-accel.md); others via new_id. */
	{
		.vendor = PCI_VENDOR_ID_REDHAT,
		.device = 0x0015,
		.subvendor = PCI_ANY_ID,
		.subdevice = PCI_ANY_ID,
		.class = PCI_CLASS_ACCELERATOR_PROCESSING << 8,
		.class_mask = 0xffff00,
	},
	{ }
};
MODULE_DEVICE_TABLE(pci, t2ref_ids);

static struct pci_driver t2ref_driver = {
	.name = T2REF_NAME,
	.id_table = t2ref_ids,
	.probe = t2ref_probe,
};
module_pci_driver(t2ref_driver);

MODULE_DESCRIPTION("Reference guest driver for CXL Type-2 device memory");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS("CXL");
