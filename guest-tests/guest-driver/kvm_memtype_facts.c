// SPDX-License-Identifier: GPL-2.0
/*
 * kvm-memtype-facts: a test module for VM test host-driver-ept-memtype.
 *
 * For each page frame number it is given, it logs the facts that KVM's
 * __kvm_is_mmio_pfn() (arch/x86/kvm/mmu/spte.c) reads and user space
 * cannot see: pfn_valid(), is_zero_pfn(), PageReserved() and
 * pat_enabled(). The test's host evaluates KVM's predicate from these, the
 * host PAT type of the page (debugfs x86/pat_memtype_list) and the
 * firmware E820 table (/sys/firmware/memmap). Loading it changes nothing.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <asm/memtype.h>

#define KVM_MEMTYPE_FACTS_MAX	64

static unsigned long pfns[KVM_MEMTYPE_FACTS_MAX];
static int nr_pfns;
module_param_array(pfns, ulong, &nr_pfns, 0444);
MODULE_PARM_DESC(pfns, "page frame numbers to report (at most 64)");

static int __init kvm_memtype_facts_init(void)
{
	int i;

	pr_info("pat_enabled %d\n", pat_enabled());
	for (i = 0; i < nr_pfns; i++) {
		unsigned long pfn = pfns[i];
		bool valid = pfn_valid(pfn);

		pr_info("pfn %#lx valid %d zero %d reserved %d\n", pfn, valid,
			is_zero_pfn(pfn),
			valid && PageReserved(pfn_to_page(pfn)));
	}
	return 0;
}
module_init(kvm_memtype_facts_init);

static void __exit kvm_memtype_facts_exit(void)
{
}
module_exit(kvm_memtype_facts_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test module: the struct page facts KVM's host MMIO test reads");
