// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: bringing the device memory back to a known state.
 *
 * - Validation: after any reset or power transition the decoder is checked
 *   before the next access (vfio_cxl_validate()). A decoder that lost its
 *   committed range is re-programmed and re-locked from the values read at
 *   bind, as platform firmware programmed it; if that fails, accesses fail
 *   until the next reset.
 * - CXL Reset (CXL r3.1 9.7): used to clear the memory between users when
 *   the device can clear it (CXL_Reset_Mem_Clr_Capable), and to carry out
 *   a guest's own CXL Reset request. It resets the device's HDM decoders,
 *   which are then restored as above.
 * - Clearing between users (vfio_cxl_clear_memory()): by CXL Reset with
 *   Mem_Clr, otherwise through a host mapping followed by a cache write-back
 *   and invalidation of the range.
 */
#include <linux/bitfield.h>
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/libnvdimm.h>
#include <linux/memregion.h>
#include <linux/pci.h>
#include <linux/pm_runtime.h>
#include <linux/sched.h>
#include <linux/sizes.h>
#include <linux/unaligned.h>

#include "vfio_cxl_priv.h"

/* CXL r3.1 8.2.4.20.7: software waits up to 10 ms for Committed. */
#define VFIO_CXL_COMMIT_TIMEOUT_MS	50
/* No timeout is defined for Cache_Invalid; a device that needs longer fails. */
#define VFIO_CXL_WBI_TIMEOUT_MS		1000
#define VFIO_CXL_POLL_MS		1
/* Host-side clear: bytes per step between reschedules. */
#define VFIO_CXL_CLEAR_CHUNK		SZ_2M

static struct pci_dev *cxl_pdev(struct vfio_cxl *cxl)
{
	return cxl->cdev->pci_core.pdev;
}

static u16 vfio_cxl_hw_read16(struct vfio_cxl *cxl, unsigned int off)
{
	u16 val = 0;

	pci_read_config_word(cxl_pdev(cxl), cxl->dvsec + off, &val);
	return val;
}

static void vfio_cxl_hw_write16(struct vfio_cxl *cxl, unsigned int off, u16 val)
{
	pci_write_config_word(cxl_pdev(cxl), cxl->dvsec + off, val);
}

/* Poll a DVSEC register until (val & mask) != 0; false on timeout. */
static bool vfio_cxl_poll16(struct vfio_cxl *cxl, unsigned int off, u16 mask,
			    unsigned int timeout_ms, u16 *val)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(timeout_ms);

	for (;;) {
		*val = vfio_cxl_hw_read16(cxl, off);
		if (PCI_POSSIBLE_ERROR(*val))
			return false;
		if (*val & mask)
			return true;
		if (time_after(jiffies, deadline))
			return false;
		msleep(VFIO_CXL_POLL_MS);
	}
}

/*
 * The component BAR still holds its address. The link reset of a fatal
 * error's recovery (pci_bus_error_reset()) saves and restores no config
 * space, and vfio-pci core has no slot_reset: the BARs are left as the
 * reset made them. Then the decoder is out of reach and Memory Space must
 * not be turned on until the driver's resume callback restored the config
 * space (vfio_cxl_restore_after_link_reset()).
 */
bool vfio_cxl_comp_bar_assigned(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl_pdev(cxl);
	int reg = PCI_BASE_ADDRESS_0 + 4 * cxl->comp_bar;
	u32 lo = 0, hi = 0;

	pci_read_config_dword(pdev, reg, &lo);
	if (PCI_POSSIBLE_ERROR(lo))
		return false;
	if (pci_resource_flags(pdev, cxl->comp_bar) & IORESOURCE_MEM_64)
		pci_read_config_dword(pdev, reg + 4, &hi);
	return (((u64)hi << 32) | (lo & PCI_BASE_ADDRESS_MEM_MASK)) ==
	       pci_bus_address(pdev, cxl->comp_bar);
}

/*
 * Memory Space on for the host's own access to the decoder (in a BAR) or
 * the memory; the previous command register in @cmd for
 * vfio_cxl_decode_restore(). The caller holds memory_lock for write, so no
 * vfio command write interleaves. -EIO, touching nothing, while the
 * component BAR has lost its address:
 * Memory Space would then decode BAR 0 at address 0 and the decoder's
 * registers would be accessed where nothing answers.
 */
static int vfio_cxl_decode_on(struct vfio_cxl *cxl, u16 *cmd)
{
	struct pci_dev *pdev = cxl_pdev(cxl);

	*cmd = 0;
	if (!vfio_cxl_comp_bar_assigned(cxl))
		return -EIO;
	pci_read_config_word(pdev, PCI_COMMAND, cmd);
	if (!PCI_POSSIBLE_ERROR(*cmd) && !(*cmd & PCI_COMMAND_MEMORY))
		pci_write_config_word(pdev, PCI_COMMAND, *cmd | PCI_COMMAND_MEMORY);
	return 0;
}

static void vfio_cxl_decode_restore(struct vfio_cxl *cxl, u16 cmd)
{
	if (!PCI_POSSIBLE_ERROR(cmd) && !(cmd & PCI_COMMAND_MEMORY))
		pci_write_config_word(cxl_pdev(cxl), PCI_COMMAND, cmd);
}

/*
 * Mem_Enable and HDM Decoder Enable as at bind: a committed decoder routes
 * nothing without them (CXL r3.1 8.1.3.2, 8.2.4.20.2).
 */
static bool vfio_cxl_enables_as_bind(struct vfio_cxl *cxl)
{
	u16 bind_ctrl = get_unaligned_le16(&cxl->dvsec_bind[VFIO_CXL_DVSEC_CTRL]);
	u32 bind_global = cxl->hdm_bind[VFIO_CXL_HDM_GLOBAL_CTRL / 4];
	void __iomem *hdm = cxl->comp_io + cxl->hdm_bar_off;
	u16 ctrl = vfio_cxl_hw_read16(cxl, VFIO_CXL_DVSEC_CTRL);
	u32 global = readl(hdm + VFIO_CXL_HDM_GLOBAL_CTRL);

	if (PCI_POSSIBLE_ERROR(ctrl) || PCI_POSSIBLE_ERROR(global))
		return false;
	if ((bind_ctrl & VFIO_CXL_DVSEC_CTRL_MEM_EN) &&
	    !(ctrl & VFIO_CXL_DVSEC_CTRL_MEM_EN))
		return false;
	return !(bind_global & VFIO_CXL_HDM_GLOBAL_CTRL_ENABLE) ||
	       (global & VFIO_CXL_HDM_GLOBAL_CTRL_ENABLE);
}

/* Decoder 0 decodes the bind-time range and the enables are back. */
static bool vfio_cxl_decodes_as_bind(struct vfio_cxl *cxl)
{
	return vfio_cxl_hdm_decodes_bind(cxl) && vfio_cxl_enables_as_bind(cxl);
}

/*
 * Program decoder 0 again with what firmware committed (CXL r3.1
 * 8.2.4.20.12: base, size and DPA skip first, then Commit with Lock On
 * Commit), and DVSEC Mem_Enable if it was set at bind.
 */
static int vfio_cxl_hdm_restore(struct vfio_cxl *cxl)
{
	static const unsigned int regs[] = VFIO_CXL_HDM_DEC0_RANGE_REGS;
	void __iomem *hdm = cxl->comp_io + cxl->hdm_bar_off;
	u32 ctrl, want = cxl->hdm_bind[VFIO_CXL_HDM_DEC_CTRL(0) / 4];
	u16 dvsec_ctrl, bind_ctrl;
	unsigned long deadline;
	unsigned int i;

	ctrl = readl(hdm + VFIO_CXL_HDM_DEC_CTRL(0));
	if (PCI_POSSIBLE_ERROR(ctrl))
		return -ENODEV;

	bind_ctrl = get_unaligned_le16(&cxl->dvsec_bind[VFIO_CXL_DVSEC_CTRL]);
	dvsec_ctrl = vfio_cxl_hw_read16(cxl, VFIO_CXL_DVSEC_CTRL);
	if ((bind_ctrl & VFIO_CXL_DVSEC_CTRL_MEM_EN) &&
	    !(dvsec_ctrl & VFIO_CXL_DVSEC_CTRL_MEM_EN))
		vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL,
				    dvsec_ctrl | VFIO_CXL_DVSEC_CTRL_MEM_EN);
	writel(cxl->hdm_bind[VFIO_CXL_HDM_GLOBAL_CTRL / 4],
	       hdm + VFIO_CXL_HDM_GLOBAL_CTRL);
	if (vfio_cxl_hdm_decodes_bind(cxl))
		return 0;	/* only the enables were lost */
	if (ctrl & VFIO_CXL_HDM_DEC_CTRL_LOCK)
		return -EPERM;	/* committed elsewhere and locked: hands off */

	if (ctrl & VFIO_CXL_HDM_DEC_CTRL_COMMIT)
		writel(ctrl & ~VFIO_CXL_HDM_DEC_CTRL_COMMIT,
		       hdm + VFIO_CXL_HDM_DEC_CTRL(0));
	for (i = 0; i < ARRAY_SIZE(regs); i++)
		writel(cxl->hdm_bind[regs[i] / 4], hdm + regs[i]);

	want &= ~(VFIO_CXL_HDM_DEC_CTRL_COMMITTED |
		  VFIO_CXL_HDM_DEC_CTRL_COMMIT_ERR);
	writel(want | VFIO_CXL_HDM_DEC_CTRL_COMMIT, hdm + VFIO_CXL_HDM_DEC_CTRL(0));

	deadline = jiffies + msecs_to_jiffies(VFIO_CXL_COMMIT_TIMEOUT_MS);
	for (;;) {
		ctrl = readl(hdm + VFIO_CXL_HDM_DEC_CTRL(0));
		if (PCI_POSSIBLE_ERROR(ctrl) ||
		    (ctrl & VFIO_CXL_HDM_DEC_CTRL_COMMIT_ERR))
			return -EIO;
		if (ctrl & VFIO_CXL_HDM_DEC_CTRL_COMMITTED)
			return 0;
		if (time_after(jiffies, deadline))
			return -ETIMEDOUT;
		msleep(VFIO_CXL_POLL_MS);
	}
}

/**
 * vfio_cxl_validate() - check decoder 0 and Memory_Active before an access
 * @cxl: device state; memory_lock held for write
 *
 * Clears @recheck when the memory can be used again. A decoder that no
 * longer decodes the bind-time range is restored; when that fails the
 * memory stays unusable (@hdm_lost) until the next reset. Memory that is
 * not active yet, or a component BAR that lost its address, leaves
 * @recheck set: the access fails and the next one looks again.
 */
void vfio_cxl_validate(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl_pdev(cxl);
	u32 size_low = 0;
	bool ok;
	u16 cmd;
	int rc;

	lockdep_assert_held_write(&cxl->cdev->pci_core.memory_lock);

	if (vfio_cxl_decode_on(cxl, &cmd)) {
		if (cxl->comp_bar_lost)
			return;
		if (pci_dev_is_disconnected(pdev))
			pci_warn(pdev, "the device is gone: memory accesses fail\n");
		else
			pci_warn(pdev, "component BAR %d lost its address (a reset without config restore, e.g. a fatal error's link reset): memory accesses fail until its config space is restored\n",
				 cxl->comp_bar);
		cxl->comp_bar_lost = true;
		return;
	}
	cxl->comp_bar_lost = false;

	ok = vfio_cxl_decodes_as_bind(cxl);
	if (!ok) {
		rc = vfio_cxl_hdm_restore(cxl);
		ok = !rc && vfio_cxl_decodes_as_bind(cxl);
		if (ok)
			pci_info(pdev, "HDM decoder 0 or its enables lost their bind-time state: restored, decoder locked as at bind\n");
		else
			pci_err(pdev, "HDM decoder 0 or its enables lost their bind-time state and could not be restored (%d): memory accesses fail until the next reset\n",
				rc);
	}
	pci_read_config_dword(pdev, cxl->dvsec + PCI_DVSEC_CXL_RANGE_SIZE_LOW(0),
			      &size_low);
	vfio_cxl_decode_restore(cxl, cmd);

	WRITE_ONCE(cxl->hdm_lost, !ok);
	if (ok && !(size_low & PCI_DVSEC_CXL_MEM_ACTIVE)) {
		dev_warn_ratelimited(&pdev->dev, "CXL memory not active (DVSEC Range 1 Size Low %#x): access refused\n",
				     size_low);
		return;
	}
	WRITE_ONCE(cxl->recheck, false);
}

/* CXL r3.1 8.1.3.1: CXL_Reset_Timeout, 0 = 10 ms ... 4 = 100 s. */
static unsigned int vfio_cxl_reset_timeout_ms(u16 cap)
{
	unsigned int enc = min_t(unsigned int, 4,
				 FIELD_GET(VFIO_CXL_DVSEC_CAP_RESET_TIMEOUT, cap));
	unsigned int ms = 10;

	while (enc--)
		ms *= 10;
	return ms;
}

/*
 * CXL r3.1 9.6: write back and invalidate the device's cache, with caching
 * disabled (Cache_Invalid is only defined then). Caching stays disabled
 * when @keep_disabled, for a CXL Reset that follows.
 */
static int vfio_cxl_hw_cache_wbi(struct vfio_cxl *cxl, bool keep_disabled)
{
	u16 ctrl2 = vfio_cxl_hw_read16(cxl, VFIO_CXL_DVSEC_CTRL2);
	u16 st2;
	int rc = 0;

	vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2,
			    ctrl2 | VFIO_CXL_DVSEC_CTRL2_DIS_CACHING);
	vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2,
			    ctrl2 | VFIO_CXL_DVSEC_CTRL2_DIS_CACHING |
			    VFIO_CXL_DVSEC_CTRL2_CACHE_WBI);
	if (!vfio_cxl_poll16(cxl, VFIO_CXL_DVSEC_STATUS2,
			     VFIO_CXL_DVSEC_STATUS2_CACHE_INV,
			     VFIO_CXL_WBI_TIMEOUT_MS, &st2)) {
		pci_err(cxl_pdev(cxl), "cache write-back and invalidation did not complete (Status2 %#x)\n",
			st2);
		rc = -ETIMEDOUT;
	}
	if (!keep_disabled)
		vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2,
				    ctrl2 & ~VFIO_CXL_DVSEC_CTRL2_CACHE_WBI);
	return rc;
}

/**
 * vfio_cxl_cache_wbi() - carry out a Cache Write Back and Invalidate request
 * @cxl: device state
 *
 * Return: 0, -EOPNOTSUPP when the device does not offer it, or the error.
 */
int vfio_cxl_cache_wbi(struct vfio_cxl *cxl)
{
	if (!(cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_CACHE_WBI))
		return -EOPNOTSUPP;
	return vfio_cxl_hw_cache_wbi(cxl, false);
}

/*
 * CXL r3.1 9.7: no host cache may hold a line of the memory across a CXL
 * Reset: a dirty line written back after Mem_Clr would restore old data,
 * one written back while the decoder is down goes nowhere, and a clean
 * stale line would be read by the next user. Written back and invalidated
 * before the reset and invalidated after it.
 */
static int vfio_cxl_flush_host_caches(struct vfio_cxl *cxl)
{
	if (!cpu_cache_has_invalidate_memregion())
		return -EOPNOTSUPP;
	return cpu_cache_invalidate_memregion(cxl->hpa.start,
					      range_len(&cxl->hpa));
}

/*
 * CXL r3.1 9.7: CXL Reset, optionally clearing the memory, then the decoder
 * restored and Memory_Active awaited. memory_lock held for write, user
 * mappings zapped.
 */
static int vfio_cxl_do_cxl_reset(struct vfio_cxl *cxl, bool mem_clr)
{
	struct pci_dev *pdev = cxl_pdev(cxl);
	u16 cap = cxl->dvsec_cap, ctrl2, st2, req;
	u16 cmd;
	int rc = 0;

	lockdep_assert_held_write(&cxl->cdev->pci_core.memory_lock);
	if (!(cap & VFIO_CXL_DVSEC_CAP_RESET) ||
	    (mem_clr && !(cap & VFIO_CXL_DVSEC_CAP_RESET_MEM_CLR)))
		return -EOPNOTSUPP;

	rc = vfio_cxl_flush_host_caches(cxl);
	if (rc) {
		pci_warn(pdev, "cannot flush host caches of %pra before a CXL Reset: %d\n",
			 &cxl->hpa, rc);
		return rc;
	}
	rc = vfio_cxl_decode_on(cxl, &cmd);
	if (rc)
		return rc;
	ctrl2 = vfio_cxl_hw_read16(cxl, VFIO_CXL_DVSEC_CTRL2);
	if ((cap & VFIO_CXL_DVSEC_CAP_CACHE) &&
	    (cap & VFIO_CXL_DVSEC_CAP_CACHE_WBI)) {
		rc = vfio_cxl_hw_cache_wbi(cxl, true);
		if (rc) {
			/* Resetting now would drop the device's dirty lines. */
			vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2, ctrl2);
			vfio_cxl_decode_restore(cxl, cmd);
			return rc;
		}
	}

	req = vfio_cxl_hw_read16(cxl, VFIO_CXL_DVSEC_CTRL2) &
	      ~(VFIO_CXL_DVSEC_CTRL2_CACHE_WBI | VFIO_CXL_DVSEC_CTRL2_CXL_RESET |
		VFIO_CXL_DVSEC_CTRL2_RST_MEM_CLR_EN);
	if (mem_clr)
		req |= VFIO_CXL_DVSEC_CTRL2_RST_MEM_CLR_EN;
	vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2, req);
	vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2,
			    req | VFIO_CXL_DVSEC_CTRL2_CXL_RESET);
	if (!vfio_cxl_poll16(cxl, VFIO_CXL_DVSEC_STATUS2,
			     VFIO_CXL_DVSEC_STATUS2_RST_DONE |
			     VFIO_CXL_DVSEC_STATUS2_RST_ERR,
			     vfio_cxl_reset_timeout_ms(cap), &st2) ||
	    (st2 & VFIO_CXL_DVSEC_STATUS2_RST_ERR)) {
		pci_err(pdev, "CXL Reset%s failed (Status2 %#x)\n",
			mem_clr ? " with memory clear" : "", st2);
		rc = -EIO;
	}
	vfio_cxl_hw_write16(cxl, VFIO_CXL_DVSEC_CTRL2,
			    ctrl2 & ~(VFIO_CXL_DVSEC_CTRL2_CACHE_WBI |
				      VFIO_CXL_DVSEC_CTRL2_CXL_RESET));

	/* The reset returned the HDM decoders to their defaults. */
	if (!vfio_cxl_hdm_decodes_bind(cxl)) {
		int err = vfio_cxl_hdm_restore(cxl);

		if (err) {
			pci_err(pdev, "HDM decoder 0 could not be restored after CXL Reset: %d\n",
				err);
			rc = rc ?: err;
		}
	}
	vfio_cxl_decode_restore(cxl, cmd);
	vfio_cxl_flush_host_caches(cxl);
	if (!rc)
		rc = vfio_cxl_wait_mem_active(pdev, cxl->dvsec);

	WRITE_ONCE(cxl->recheck, true);
	return rc;
}

/**
 * vfio_cxl_guest_cxl_reset() - carry out a user's Initiate CXL Reset
 * @cxl: device state
 * @mem_clr: the user asked for the memory to be cleared
 *
 * Takes memory_lock for write: faults wait until the device is back.
 *
 * Refused while a dma-buf of the device exists: a CXL Reset takes the
 * memory away (and clears it with Mem_Clr), but only vfio-pci core can
 * revoke its dma-bufs (on its own resets, Memory Space and power changes
 * and close), and an importer such as an iommufd IOAS would keep DMA
 * access to memory that is being reset. The user releases its dma-bufs
 * first (every fd and every importer's reference), or resets the function
 * with VFIO_DEVICE_RESET, which revokes them.
 *
 * Return: 0 or a negative errno (-EOPNOTSUPP: the device cannot do it;
 * -EBUSY: a dma-buf exists).
 */
int vfio_cxl_guest_cxl_reset(struct vfio_cxl *cxl, bool mem_clr)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	int rc;

	if (!(cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_RESET))
		return -EOPNOTSUPP;
	if (!(cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_RESET_MEM_CLR))
		mem_clr = false;

	rc = pm_runtime_resume_and_get(&vdev->pdev->dev);
	if (rc)
		return rc;
	down_write(&vdev->memory_lock);
	if (cxl->mem_blockers || vdev->pm_runtime_engaged ||
	    vdev->pdev->current_state != PCI_D0) {
		rc = -EIO;	/* powered down or blocked: not now */
	} else if (!list_empty(&vdev->dmabufs)) {
		/* vdev->dmabufs: vfio-pci core's, under memory_lock */
		dev_warn_ratelimited(&vdev->pdev->dev, "CXL Reset refused: a dma-buf of the device exists (close it, or use VFIO_DEVICE_RESET)\n");
		rc = -EBUSY;
	} else {
		vfio_cxl_mem_zap(cxl);
		rc = vfio_cxl_do_cxl_reset(cxl, mem_clr);
	}
	up_write(&vdev->memory_lock);
	pm_runtime_put(&vdev->pdev->dev);
	return rc;
}

/*
 * Zero @len bytes at @kva, write the zeros back to the device, then drop
 * the lines (arm64's and riscv's invalidate alone would discard them).
 */
static void vfio_cxl_zero_flush(void *kva, size_t len)
{
	memset(kva, 0, len);
	arch_wb_cache_pmem(kva, len);
	arch_invalidate_pmem(kva, len);
}

/*
 * Zero the memory through the kernel's write-back mapping. Pages a memory
 * error withdrew are skipped: they are never handed out again.
 */
static void vfio_cxl_host_clear(struct vfio_cxl *cxl)
{
	u64 len = range_len(&cxl->hpa), off, page;

	for (off = 0; off < len; off += VFIO_CXL_CLEAR_CHUNK) {
		size_t n = min_t(u64, VFIO_CXL_CLEAR_CHUNK, len - off);

		if (vfio_cxl_first_poisoned(cxl, off >> PAGE_SHIFT,
					    n >> PAGE_SHIFT) == ULONG_MAX) {
			vfio_cxl_zero_flush(cxl->mem_kva + off, n);
		} else {
			for (page = off; page < off + n; page += PAGE_SIZE)
				if (vfio_cxl_first_poisoned(cxl, page >> PAGE_SHIFT,
							    1) == ULONG_MAX)
					vfio_cxl_zero_flush(cxl->mem_kva + page,
							    PAGE_SIZE);
		}
		cond_resched();
	}
}

/**
 * vfio_cxl_clear_memory() - erase the memory before another user sees it
 * @cxl: device state; no user mapping of the memory exists
 *
 * CXL Reset with Mem_Clr where the device offers it (the device clears,
 * whatever its size), else a host-side clear. Clears @needs_clear on
 * success.
 *
 * Return: 0; -EBUSY, not logged, while the memory is blocked (removal,
 * AER): the caller says what follows; or another negative errno. The
 * memory must not be handed out unless 0.
 */
int vfio_cxl_clear_memory(struct vfio_cxl *cxl)
{
	struct vfio_pci_core_device *vdev = &cxl->cdev->pci_core;
	struct pci_dev *pdev = vdev->pdev;
	unsigned long start = jiffies;
	bool by_reset = false;
	int rc;
	u16 cmd;

	rc = pm_runtime_resume_and_get(&pdev->dev);
	if (rc)
		return rc;

	down_write(&vdev->memory_lock);
	vfio_cxl_mem_zap(cxl);
	/*
	 * vfio-pci core puts the function in D0 on open and on close. A
	 * blocked device (removal, AER) is not touched: its memory may be
	 * gone. It stays marked for clearing: the removal clears it once
	 * it has dropped its blockers, an open clears it or refuses.
	 */
	if (pdev->current_state != PCI_D0 || pci_dev_is_disconnected(pdev)) {
		rc = -ENODEV;
	} else if (cxl->mem_blockers ||
		   pdev->error_state != pci_channel_io_normal) {
		/* Blocked, or frozen by an error recovery in progress. */
		rc = -EBUSY;
	} else {
		if (cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_RESET_MEM_CLR) {
			rc = vfio_cxl_do_cxl_reset(cxl, true);
			by_reset = !rc;
			if (rc)
				pci_warn(pdev, "CXL Reset with Mem_Clr failed (%d): clearing from the host\n",
					 rc);
		}
		if (!by_reset)
			rc = vfio_cxl_decode_on(cxl, &cmd);
		if (!by_reset && !rc) {
			if (!vfio_cxl_hdm_decodes_bind(cxl))
				vfio_cxl_hdm_restore(cxl);
			rc = vfio_cxl_hdm_decodes_bind(cxl) ? 0 : -EIO;
			/* A reset at close or open may have just happened. */
			if (!rc)
				rc = vfio_cxl_wait_mem_active(pdev, cxl->dvsec);
			if (!rc)
				vfio_cxl_host_clear(cxl);
			vfio_cxl_decode_restore(cxl, cmd);
		}
		/*
		 * An error contained meanwhile (AER and DPC do not take
		 * memory_lock) may have dropped the clear's writes.
		 */
		if (!rc && pdev->error_state != pci_channel_io_normal)
			rc = -EIO;
	}
	if (!rc)
		cxl->needs_clear = false;
	up_write(&vdev->memory_lock);
	pm_runtime_put(&pdev->dev);

	if (rc && rc != -EBUSY)
		pci_err(pdev, "could not clear the CXL memory: %d; it will not be handed to another user\n",
			rc);
	else if (!rc)
		pci_info(pdev, "cleared %llu MiB by %s in %u ms\n",
			 range_len(&cxl->hpa) >> 20,
			 by_reset ? "CXL Reset with Mem_Clr" : "the host",
			 jiffies_to_msecs(jiffies - start));
	return rc;
}
