/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vfio-cxl-core internals: register layouts, the per-device state and the
 * interfaces between the files of the module.
 */
#ifndef __VFIO_CXL_PRIV_H
#define __VFIO_CXL_PRIV_H

#include <linux/bits.h>
#include <linux/memremap.h>
#include <linux/mutex.h>
#include <linux/range.h>
#include <linux/sizes.h>
#include <linux/vfio_cxl_core.h>
#include <linux/xarray.h>
#include <cxl/cxl.h>

/*
 * CXL r3.1 8.1.3: PCIe DVSEC for CXL Devices (DVSEC ID 0). Offsets from the
 * start of the extended capability. <uapi/linux/pci_regs.h> provides
 * PCI_DVSEC_CXL_CAP, _CTRL, the range registers and their fields; the rest
 * is named here.
 */
#define VFIO_CXL_DVSEC_BODY		0x0a	/* first byte after DVSEC Header 2 */
/* CXL r3.1 8.1.3.1 DVSEC CXL Capability */
#define VFIO_CXL_DVSEC_CAP		PCI_DVSEC_CXL_CAP
/* CXL r3.1 8.1.3.1 DVSEC CXL Capability bits not in <uapi/linux/pci_regs.h> */
#define  VFIO_CXL_DVSEC_CAP_CACHE		BIT(0)
#define  VFIO_CXL_DVSEC_CAP_CACHE_WBI		BIT(6)
#define  VFIO_CXL_DVSEC_CAP_RESET		BIT(7)
#define  VFIO_CXL_DVSEC_CAP_RESET_TIMEOUT	GENMASK(10, 8)
#define  VFIO_CXL_DVSEC_CAP_RESET_MEM_CLR	BIT(11)
/* CXL r3.1 8.1.3.2 DVSEC CXL Control (RWL: locked by CONFIG_LOCK) */
#define VFIO_CXL_DVSEC_CTRL		PCI_DVSEC_CXL_CTRL
#define  VFIO_CXL_DVSEC_CTRL_CACHE_EN	BIT(0)
#define  VFIO_CXL_DVSEC_CTRL_IO_EN	BIT(1)	/* RO, reads 1 */
#define  VFIO_CXL_DVSEC_CTRL_MEM_EN	PCI_DVSEC_CXL_MEM_ENABLE
#define  VFIO_CXL_DVSEC_CTRL_SF_COV	GENMASK(7, 3)
#define  VFIO_CXL_DVSEC_CTRL_SF_GRAN	GENMASK(10, 8)
#define  VFIO_CXL_DVSEC_CTRL_CLEAN_EVICT BIT(11)
#define  VFIO_CXL_DVSEC_CTRL_P2P_MEM_EN	BIT(12)
#define  VFIO_CXL_DVSEC_CTRL_VIRAL_EN	BIT(14)
/* CXL r3.1 8.1.3.3 DVSEC CXL Status */
#define VFIO_CXL_DVSEC_STATUS		0x0e
#define  VFIO_CXL_DVSEC_STATUS_VIRAL	BIT(14)	/* RW1CS */
/* CXL r3.1 8.1.3.4 DVSEC CXL Control2 */
#define VFIO_CXL_DVSEC_CTRL2		0x10
#define  VFIO_CXL_DVSEC_CTRL2_DIS_CACHING	BIT(0)
#define  VFIO_CXL_DVSEC_CTRL2_CACHE_WBI		BIT(1)	/* doorbell */
#define  VFIO_CXL_DVSEC_CTRL2_CXL_RESET		BIT(2)	/* doorbell */
#define  VFIO_CXL_DVSEC_CTRL2_RST_MEM_CLR_EN	BIT(3)
#define  VFIO_CXL_DVSEC_CTRL2_DESIRED_VOL_HDM	BIT(4)
#define  VFIO_CXL_DVSEC_CTRL2_MOD_COMPL_EN	BIT(5)
/* CXL r3.1 8.1.3.5 DVSEC CXL Status2 */
#define VFIO_CXL_DVSEC_STATUS2		0x12
#define  VFIO_CXL_DVSEC_STATUS2_CACHE_INV	BIT(0)
#define  VFIO_CXL_DVSEC_STATUS2_RST_DONE	BIT(1)
#define  VFIO_CXL_DVSEC_STATUS2_RST_ERR		BIT(2)
#define  VFIO_CXL_DVSEC_STATUS2_VOL_HDM_ERR	BIT(3)	/* RW1CS */
/* CXL r3.1 8.1.3.6 DVSEC CXL Lock */
#define VFIO_CXL_DVSEC_LOCK		0x14
#define  VFIO_CXL_DVSEC_LOCK_CONFIG	BIT(0)	/* RWO */
/* CXL r3.1 8.1.3.7 DVSEC CXL Capability2 */
#define VFIO_CXL_DVSEC_CAP2		0x16
/* CXL r3.1 8.1.3.8 DVSEC CXL Range 1/2 Size and Base registers */
#define VFIO_CXL_DVSEC_RANGE_BASE_LOW_RSVD	GENMASK(27, 0)
/* CXL r3.1 8.1.3.9 DVSEC CXL Capability3 */
#define VFIO_CXL_DVSEC_CAP3		0x38
/* Length of the Device DVSEC (revision 2 and later): through Capability3. */
#define VFIO_CXL_DVSEC_LEN		0x3c

/* Highest number of CXL DVSECs of one function tracked as read-only. */
#define VFIO_CXL_MAX_RO_DVSECS		8

/*
 * CXL r3.1 8.2.3: component register block. The CXL.cache/CXL.mem
 * registers start 4 KiB into the 64 KiB block (8.2.3, Table 8-21) and begin
 * with the CXL Capability Header array (8.2.4.1, 8.2.4.2).
 */
#define VFIO_CXL_COMP_BLOCK_SIZE	SZ_64K

/*
 * CXL r3.1 8.2.4.20: CXL HDM Decoder Capability Structure. Offsets from the
 * start of the structure; decoder n at 0x10 + 0x20 * n.
 */
#define VFIO_CXL_HDM_CAP		0x00	/* HDM Decoder Capability */
#define  VFIO_CXL_HDM_CAP_COUNT		GENMASK(3, 0)
#define VFIO_CXL_HDM_GLOBAL_CTRL	0x04	/* HDM Decoder Global Control */
#define  VFIO_CXL_HDM_GLOBAL_CTRL_ENABLE	BIT(1)
#define VFIO_CXL_HDM_DEC_FIRST		0x10
#define VFIO_CXL_HDM_DEC_STRIDE		0x20
#define VFIO_CXL_HDM_DEC(n)		(VFIO_CXL_HDM_DEC_FIRST + \
					 VFIO_CXL_HDM_DEC_STRIDE * (n))
#define VFIO_CXL_HDM_DEC_BASE_LOW(n)	(VFIO_CXL_HDM_DEC(n) + 0x00)
#define VFIO_CXL_HDM_DEC_BASE_HIGH(n)	(VFIO_CXL_HDM_DEC(n) + 0x04)
#define VFIO_CXL_HDM_DEC_SIZE_LOW(n)	(VFIO_CXL_HDM_DEC(n) + 0x08)
#define VFIO_CXL_HDM_DEC_SIZE_HIGH(n)	(VFIO_CXL_HDM_DEC(n) + 0x0c)
#define VFIO_CXL_HDM_DEC_CTRL(n)	(VFIO_CXL_HDM_DEC(n) + 0x10)
#define  VFIO_CXL_HDM_DEC_CTRL_IG	GENMASK(3, 0)
#define  VFIO_CXL_HDM_DEC_CTRL_IW	GENMASK(7, 4)
#define  VFIO_CXL_HDM_DEC_CTRL_LOCK	BIT(8)	/* Lock On Commit */
#define  VFIO_CXL_HDM_DEC_CTRL_COMMIT	BIT(9)
#define  VFIO_CXL_HDM_DEC_CTRL_COMMITTED BIT(10)
#define  VFIO_CXL_HDM_DEC_CTRL_COMMIT_ERR BIT(11)
#define VFIO_CXL_HDM_DEC_SKIP_LOW(n)	(VFIO_CXL_HDM_DEC(n) + 0x14)
#define VFIO_CXL_HDM_DEC_SKIP_HIGH(n)	(VFIO_CXL_HDM_DEC(n) + 0x18)
/* What firmware programs in decoder 0 before Commit (CXL r3.1 8.2.4.20.12). */
#define VFIO_CXL_HDM_DEC0_RANGE_REGS {					\
	VFIO_CXL_HDM_DEC_BASE_LOW(0), VFIO_CXL_HDM_DEC_BASE_HIGH(0),	\
	VFIO_CXL_HDM_DEC_SIZE_LOW(0), VFIO_CXL_HDM_DEC_SIZE_HIGH(0),	\
	VFIO_CXL_HDM_DEC_SKIP_LOW(0), VFIO_CXL_HDM_DEC_SKIP_HIGH(0),	\
}

/* Base and size low registers: bits [27:0] are reserved (256 MiB units). */
#define VFIO_CXL_HDM_DEC_ADDR_LOW	GENMASK(31, 28)
#define VFIO_CXL_HDM_MAX_DECODERS	32
#define VFIO_CXL_HDM_SIZE(count)	VFIO_CXL_HDM_DEC(count)

/*
 * VFIO encodes the region index above bit VFIO_PCI_OFFSET_SHIFT of the file
 * offset: a region can be at most this large.
 */
#define VFIO_CXL_MAX_REGION_SIZE	BIT_ULL(VFIO_PCI_OFFSET_SHIFT)

/**
 * struct vfio_cxl_ro_range - a config-space range guest writes never reach
 * @start: config-space offset
 * @len: length in bytes
 */
struct vfio_cxl_ro_range {
	u16 start;
	u16 len;
};

/**
 * struct vfio_cxl - CXL state of a bound device (devm on the PCI device)
 * @cxlds: CXL core device state; must stay first (devm_cxl_dev_state_create)
 * @cdev: back pointer to the vfio-cxl core device
 * @hpa: host physical range of the firmware-committed region
 * @dvsec: config offset of the CXL Device DVSEC
 * @dvsec_len: its length (header included)
 * @dvsec_bind: the DVSEC as read at bind, Range Base registers zeroed (they
 *	hold host addresses): the start of every open's shadow
 * @ro: CXL DVSECs (all of them) that guest writes never reach
 * @nr_ro: number of entries in @ro
 * @comp_bar: BAR holding the component register block
 * @hdm_bar_off: offset of the HDM Decoder Capability structure in @comp_bar
 * @hdm_size: bytes of the HDM Decoder Capability structure
 * @hdm_count: number of HDM decoders
 * @hdm_bind: the HDM structure as read at bind (host view, with HPA)
 * @hdm_view: the HDM structure as the comp-regs region shows it (base 0)
 * @dvsec_cap: the device's DVSEC CXL Capability, read at bind
 * @cfg_lock: protects @dvsec_shadow; never held across a user copy
 * @dvsec_shadow: per-open guest view of the DVSEC
 * @mem_kva: write-back kernel mapping of @hpa, from memremap_pages()
 *	(read()/write() and the host side clear)
 * @comp_io: uncached mapping of @comp_bar (the core may not own that BAR)
 * @mem_index: vfio region index of the memory region, -1 when not open
 * @mf_lock: protects @vmas
 * @vmas: the user mappings of the memory region (&struct vfio_cxl_vma), for
 *	memory_failure()
 * @mem_blockers: paths that currently forbid access to the memory (power
 *	or Memory Space changes, errors, removal); memory_lock protects it
 * @resetting: a function reset runs (reset_prepare to reset_done)
 * @err_blocked: an AER error holds a blocker until the device resumes
 *	(the error handlers and remove use it, all under device_lock)
 * @needs_clear: the memory may hold a previous user's data (set at bind and
 *	at every close until a clear succeeds); open and close, which the vfio
 *	device set serializes, and the clear use it
 * @recheck: decoder and Memory_Active must be validated before the next
 *	access (after any reset or power transition)
 * @hdm_lost: the decoder could not be validated or restored: accesses fail
 *	until the next successful validation
 * @comp_bar_lost: validation found the component BAR without its address
 *	(said once until it is back); memory_lock held for write
 * @poison: pages (index from the start of @hpa) that memory_failure()
 *	reported; the host never reads, writes or clears them again while
 *	bound
 * @pgmap: the ZONE_DEVICE pages of @hpa (pages.c); last: it ends in a
 *	flexible array
 */
struct vfio_cxl {
	struct cxl_dev_state cxlds;
	struct vfio_cxl_core_device *cdev;
	struct range hpa;

	u16 dvsec;
	u16 dvsec_len;
	u8 dvsec_bind[VFIO_CXL_DVSEC_LEN];
	struct vfio_cxl_ro_range ro[VFIO_CXL_MAX_RO_DVSECS];
	unsigned int nr_ro;

	int comp_bar;
	u64 hdm_bar_off;
	u64 hdm_size;
	unsigned int hdm_count;
	u32 hdm_bind[VFIO_CXL_HDM_SIZE(VFIO_CXL_HDM_MAX_DECODERS) / 4];
	u32 hdm_view[VFIO_CXL_HDM_SIZE(VFIO_CXL_HDM_MAX_DECODERS) / 4];

	u16 dvsec_cap;
	struct mutex cfg_lock;		/* protects dvsec_shadow */
	u8 dvsec_shadow[VFIO_CXL_DVSEC_LEN];

	void *mem_kva;
	void __iomem *comp_io;
	int mem_index;
	struct mutex mf_lock;		/* see @mf_lock */
	struct list_head vmas;

	unsigned int mem_blockers;
	bool resetting;
	bool err_blocked;
	bool needs_clear;
	bool recheck;
	bool hdm_lost;
	bool comp_bar_lost;

	struct xarray poison;
	struct dev_pagemap pgmap;
};

/**
 * struct vfio_cxl_vma - a user mapping of the memory region
 * @node: in &vfio_cxl.vmas
 * @vma: the mapping
 */
struct vfio_cxl_vma {
	struct list_head node;
	struct vm_area_struct *vma;
};

static inline struct vfio_cxl *vdev_to_cxl(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct vfio_cxl_core_device,
			    pci_core.vdev)->cxl;
}

/* module parameters (core.c) */
extern bool vfio_cxl_host_access;
extern bool vfio_cxl_allow_unlocked;
extern bool vfio_cxl_clear_memory_param;
extern bool vfio_cxl_ignore_memory_space;

/* cxl_probe.c */
int vfio_cxl_probe_cxl(struct vfio_cxl_core_device *cdev);
int vfio_cxl_hdm_read_live(struct vfio_cxl *cxl, void __iomem *hdm,
			   u32 *regs);
int vfio_cxl_wait_mem_active(struct pci_dev *pdev, u16 dvsec);
bool vfio_cxl_hdm_decodes_bind(struct vfio_cxl *cxl);

/* reset.c */
bool vfio_cxl_comp_bar_assigned(struct vfio_cxl *cxl);
void vfio_cxl_validate(struct vfio_cxl *cxl);
int vfio_cxl_cache_wbi(struct vfio_cxl *cxl);
int vfio_cxl_guest_cxl_reset(struct vfio_cxl *cxl, bool mem_clr);
int vfio_cxl_clear_memory(struct vfio_cxl *cxl);

/* pages.c */
int vfio_cxl_pages_init(struct vfio_cxl *cxl);
unsigned long vfio_cxl_first_poisoned(struct vfio_cxl *cxl,
				      unsigned long first, unsigned long nr);

/* mem_region.c */
int vfio_cxl_mem_register(struct vfio_cxl *cxl);
bool vfio_cxl_mem_usable(struct vfio_cxl *cxl);
void vfio_cxl_mem_zap(struct vfio_cxl *cxl);
void vfio_cxl_mem_block(struct vfio_cxl *cxl);
void vfio_cxl_mem_unblock(struct vfio_cxl *cxl);
void vfio_cxl_mem_follow_command(struct vfio_cxl *cxl);
int vfio_cxl_vma_addr(struct vm_area_struct *vma, unsigned long page,
		      unsigned long *addr);

/* comp_regs.c */
int vfio_cxl_comp_register(struct vfio_cxl *cxl);
void vfio_cxl_comp_build_view(struct vfio_cxl *cxl);
bool vfio_cxl_is_comp_bar(struct vfio_cxl *cxl, unsigned int index);
ssize_t vfio_cxl_comp_bar_rw(struct vfio_cxl *cxl, char __user *buf,
			     size_t count, loff_t *ppos, bool iswrite);
int vfio_cxl_comp_bar_mmap(struct vfio_cxl *cxl, struct vm_area_struct *vma);
int vfio_cxl_comp_bar_info(struct vfio_cxl *cxl, struct vfio_region_info *info,
			   struct vfio_info_cap *caps);

/* dvsec.c */
void vfio_cxl_dvsec_init(struct vfio_cxl *cxl);
ssize_t vfio_cxl_config_rw(struct vfio_cxl *cxl, char __user *buf,
			   size_t count, loff_t *ppos, bool iswrite);

#endif /* __VFIO_CXL_PRIV_H */
