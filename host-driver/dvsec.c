// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: config-space virtualization of the CXL DVSECs.
 *
 * The body of the CXL Device DVSEC (CXL r3.1 8.1.3) is served from a
 * per-open shadow; no guest write reaches the device's DVSEC. Each register
 * has one entry in vfio_cxl_dvsec_regs[] saying where reads come from and
 * which bits a write may change (RW, RW1C, write-once, lockable by
 * CONFIG_LOCK). The Range Base registers start at 0: firmware put host
 * physical addresses there. The Control2 doorbells are carried out by the
 * host on the device, and only when the device advertises them: Initiate
 * CXL Reset runs a real CXL Reset (reset.c; Mem_Clr if the user asked and
 * the device can), Initiate Cache Write Back and Invalidation a real one.
 * Status2 then reports completion or error. A function reset (FLR) leaves
 * the shadow alone, as it leaves a device's DVSEC (CXL r3.1 9.5). Every
 * other CXL DVSEC (Register Locator, GPF, ...) reads from the device and
 * drops writes. The rest of config space is vfio-pci core's.
 *
 * cfg_lock is never held across a user copy or while memory_lock is taken:
 * a user buffer may be a mapping of this device, whose fault takes
 * memory_lock, and resets take cfg_lock under memory_lock.
 */
#include <linux/pci.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>

#include "vfio_cxl_priv.h"

/**
 * struct vfio_cxl_dvsec_reg - guest semantics of one CXL Device DVSEC register
 * @off: offset in the DVSEC
 * @width: bytes (2 or 4)
 * @live: reads come from the device (read-only registers)
 * @lockable: @rw bits are read-only while CONFIG_LOCK is set
 * @rwo: @rw bits can only be set, once (write-once)
 * @rw: bits a write stores in the shadow
 * @rw1c: bits a write of 1 clears in the shadow
 * @doorbell: bits whose write of 1 triggers an emulated action; read 0
 * @set: bits that always read 1
 * @clear: bits that always read 0
 */
struct vfio_cxl_dvsec_reg {
	u8 off;
	u8 width;
	bool live;
	bool lockable;
	bool rwo;
	u32 rw;
	u32 rw1c;
	u32 doorbell;
	u32 set;
	u32 clear;
};

/* CXL r3.1 8.1.3.2: RW(L) fields of DVSEC CXL Control (IO_Enable is RO 1) */
#define VFIO_CXL_CTRL_RW	(VFIO_CXL_DVSEC_CTRL_CACHE_EN |		\
				 VFIO_CXL_DVSEC_CTRL_MEM_EN |		\
				 VFIO_CXL_DVSEC_CTRL_SF_COV |		\
				 VFIO_CXL_DVSEC_CTRL_SF_GRAN |		\
				 VFIO_CXL_DVSEC_CTRL_CLEAN_EVICT |	\
				 VFIO_CXL_DVSEC_CTRL_P2P_MEM_EN |	\
				 VFIO_CXL_DVSEC_CTRL_VIRAL_EN)
/* CXL r3.1 8.1.3.4: RW fields of DVSEC CXL Control2 */
#define VFIO_CXL_CTRL2_RW	(VFIO_CXL_DVSEC_CTRL2_DIS_CACHING |	\
				 VFIO_CXL_DVSEC_CTRL2_RST_MEM_CLR_EN |	\
				 VFIO_CXL_DVSEC_CTRL2_DESIRED_VOL_HDM |	\
				 VFIO_CXL_DVSEC_CTRL2_MOD_COMPL_EN)
#define VFIO_CXL_CTRL2_DOORBELLS (VFIO_CXL_DVSEC_CTRL2_CACHE_WBI |	\
				  VFIO_CXL_DVSEC_CTRL2_CXL_RESET)

/* The write-virtualization table (docs/uapi.md, "Config space"). */
static const struct vfio_cxl_dvsec_reg vfio_cxl_dvsec_regs[] = {
	{ .off = VFIO_CXL_DVSEC_CAP, .width = 2, .live = true },
	{ .off = VFIO_CXL_DVSEC_CTRL, .width = 2, .lockable = true,
	  .rw = VFIO_CXL_CTRL_RW, .set = VFIO_CXL_DVSEC_CTRL_IO_EN },
	{ .off = VFIO_CXL_DVSEC_STATUS, .width = 2,
	  .rw1c = VFIO_CXL_DVSEC_STATUS_VIRAL },
	{ .off = VFIO_CXL_DVSEC_CTRL2, .width = 2, .rw = VFIO_CXL_CTRL2_RW,
	  .doorbell = VFIO_CXL_CTRL2_DOORBELLS },
	{ .off = VFIO_CXL_DVSEC_STATUS2, .width = 2,
	  .rw1c = VFIO_CXL_DVSEC_STATUS2_VOL_HDM_ERR },
	{ .off = VFIO_CXL_DVSEC_LOCK, .width = 2, .rwo = true,
	  .rw = VFIO_CXL_DVSEC_LOCK_CONFIG },
	{ .off = VFIO_CXL_DVSEC_CAP2, .width = 2, .live = true },
	{ .off = PCI_DVSEC_CXL_RANGE_SIZE_HIGH(0), .width = 4, .live = true },
	{ .off = PCI_DVSEC_CXL_RANGE_SIZE_LOW(0), .width = 4, .live = true },
	{ .off = PCI_DVSEC_CXL_RANGE_BASE_HIGH(0), .width = 4, .lockable = true,
	  .rw = GENMASK(31, 0) },
	{ .off = PCI_DVSEC_CXL_RANGE_BASE_LOW(0), .width = 4, .lockable = true,
	  .rw = PCI_DVSEC_CXL_MEM_BASE_LOW,
	  .clear = VFIO_CXL_DVSEC_RANGE_BASE_LOW_RSVD },
	{ .off = PCI_DVSEC_CXL_RANGE_SIZE_HIGH(1), .width = 4, .live = true },
	{ .off = PCI_DVSEC_CXL_RANGE_SIZE_LOW(1), .width = 4, .live = true },
	{ .off = PCI_DVSEC_CXL_RANGE_BASE_HIGH(1), .width = 4, .lockable = true,
	  .rw = GENMASK(31, 0) },
	{ .off = PCI_DVSEC_CXL_RANGE_BASE_LOW(1), .width = 4, .lockable = true,
	  .rw = PCI_DVSEC_CXL_MEM_BASE_LOW,
	  .clear = VFIO_CXL_DVSEC_RANGE_BASE_LOW_RSVD },
	{ .off = VFIO_CXL_DVSEC_CAP3, .width = 2, .live = true },
};

static u32 vfio_cxl_shadow_get(struct vfio_cxl *cxl, unsigned int off,
			       unsigned int width)
{
	return width == 4 ? get_unaligned_le32(&cxl->dvsec_shadow[off]) :
			    get_unaligned_le16(&cxl->dvsec_shadow[off]);
}

static void vfio_cxl_shadow_set(struct vfio_cxl *cxl, unsigned int off,
				unsigned int width, u32 val)
{
	if (width == 4)
		put_unaligned_le32(val, &cxl->dvsec_shadow[off]);
	else
		put_unaligned_le16(val, &cxl->dvsec_shadow[off]);
}

/**
 * vfio_cxl_dvsec_init() - start a new open with the bind-time DVSEC
 * @cxl: device state
 */
void vfio_cxl_dvsec_init(struct vfio_cxl *cxl)
{
	guard(mutex)(&cxl->cfg_lock);
	memcpy(cxl->dvsec_shadow, cxl->dvsec_bind, sizeof(cxl->dvsec_shadow));
}

static const struct vfio_cxl_dvsec_reg *vfio_cxl_dvsec_reg(unsigned int off)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vfio_cxl_dvsec_regs); i++) {
		const struct vfio_cxl_dvsec_reg *r = &vfio_cxl_dvsec_regs[i];

		if (off >= r->off && off < r->off + r->width)
			return r;
	}
	return NULL;
}

static u32 vfio_cxl_dvsec_read_reg(struct vfio_cxl *cxl,
				   const struct vfio_cxl_dvsec_reg *r)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u32 val = 0;

	if (r->live) {
		if (r->width == 4) {
			pci_read_config_dword(pdev, cxl->dvsec + r->off, &val);
		} else {
			u16 v16 = 0;

			pci_read_config_word(pdev, cxl->dvsec + r->off, &v16);
			val = v16;
		}
	} else {
		val = vfio_cxl_shadow_get(cxl, r->off, r->width);
	}

	return (val | r->set) & ~(r->clear | r->doorbell);
}

/* Store a write in the shadow; return the doorbell bits it rang. */
static u32 vfio_cxl_dvsec_write_reg(struct vfio_cxl *cxl,
				    const struct vfio_cxl_dvsec_reg *r,
				    u32 val, u32 wmask)
{
	u32 old, new, rw = r->rw;
	u32 locked;

	if (r->live)
		return 0;

	locked = vfio_cxl_shadow_get(cxl, VFIO_CXL_DVSEC_LOCK, 2) &
		 VFIO_CXL_DVSEC_LOCK_CONFIG;
	old = vfio_cxl_shadow_get(cxl, r->off, r->width);
	if (r->lockable && locked)
		rw = 0;

	if (r->rwo)
		new = old | (val & rw & wmask);
	else
		new = (old & ~(rw & wmask)) | (val & rw & wmask);
	new &= ~(val & r->rw1c & wmask);
	vfio_cxl_shadow_set(cxl, r->off, r->width, new);

	/* CXL r3.1 8.1.3.5: Cache_Invalid reads 0 while caching is enabled. */
	if (r->off == VFIO_CXL_DVSEC_CTRL2 &&
	    !(new & VFIO_CXL_DVSEC_CTRL2_DIS_CACHING))
		vfio_cxl_shadow_set(cxl, VFIO_CXL_DVSEC_STATUS2, 2,
				    vfio_cxl_shadow_get(cxl, VFIO_CXL_DVSEC_STATUS2, 2) &
				    ~VFIO_CXL_DVSEC_STATUS2_CACHE_INV);

	return val & r->doorbell & wmask;
}

static void vfio_cxl_shadow_status2(struct vfio_cxl *cxl, u16 set, u16 clear)
{
	guard(mutex)(&cxl->cfg_lock);
	vfio_cxl_shadow_set(cxl, VFIO_CXL_DVSEC_STATUS2, 2,
			    (vfio_cxl_shadow_get(cxl, VFIO_CXL_DVSEC_STATUS2, 2) &
			     ~clear) | set);
}

/*
 * Carry out the doorbells a write rang, with no lock held: a CXL Reset
 * takes memory_lock. A doorbell the device does not advertise is ignored
 * (its capability bit, which the user reads, is 0).
 */
static void vfio_cxl_dvsec_doorbells(struct vfio_cxl *cxl, u32 rung)
{
	u16 ctrl2;

	if ((rung & VFIO_CXL_DVSEC_CTRL2_CXL_RESET) &&
	    (cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_RESET)) {
		scoped_guard(mutex, &cxl->cfg_lock)
			ctrl2 = vfio_cxl_shadow_get(cxl, VFIO_CXL_DVSEC_CTRL2, 2);
		vfio_cxl_shadow_status2(cxl, 0, VFIO_CXL_DVSEC_STATUS2_RST_DONE |
					VFIO_CXL_DVSEC_STATUS2_RST_ERR);
		if (vfio_cxl_guest_cxl_reset(cxl, ctrl2 &
					     VFIO_CXL_DVSEC_CTRL2_RST_MEM_CLR_EN))
			vfio_cxl_shadow_status2(cxl, VFIO_CXL_DVSEC_STATUS2_RST_ERR, 0);
		else
			vfio_cxl_shadow_status2(cxl, VFIO_CXL_DVSEC_STATUS2_RST_DONE, 0);
	}

	if ((rung & VFIO_CXL_DVSEC_CTRL2_CACHE_WBI) &&
	    (cxl->dvsec_cap & VFIO_CXL_DVSEC_CAP_CACHE_WBI) &&
	    !vfio_cxl_cache_wbi(cxl)) {
		scoped_guard(mutex, &cxl->cfg_lock)
			ctrl2 = vfio_cxl_shadow_get(cxl, VFIO_CXL_DVSEC_CTRL2, 2);
		if (ctrl2 & VFIO_CXL_DVSEC_CTRL2_DIS_CACHING)
			vfio_cxl_shadow_status2(cxl, VFIO_CXL_DVSEC_STATUS2_CACHE_INV, 0);
	}
}

/*
 * Access [off, off + n) of the Device DVSEC body, register by register.
 * Unlisted (reserved) bytes read from the device and ignore writes. The
 * user copies happen outside cfg_lock.
 */
static ssize_t vfio_cxl_dvsec_rw(struct vfio_cxl *cxl, char __user *buf,
				 unsigned int off, size_t n, bool iswrite)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u8 bytes[VFIO_CXL_DVSEC_LEN];
	u32 rung = 0;
	unsigned int i;

	if (iswrite && copy_from_user(bytes, buf, n))
		return -EFAULT;

	scoped_guard(mutex, &cxl->cfg_lock) {
		for (i = 0; i < n; ) {
			const struct vfio_cxl_dvsec_reg *r =
				vfio_cxl_dvsec_reg(off + i);
			unsigned int first, last, b;
			u32 val, wmask = 0;

			if (!r) {
				if (!iswrite)
					pci_read_config_byte(pdev,
							     cxl->dvsec + off + i,
							     &bytes[i]);
				i++;
				continue;
			}

			first = off + i - r->off;
			last = min_t(unsigned int, r->width, off + n - r->off);
			if (iswrite) {
				val = 0;
				for (b = first; b < last; b++) {
					val |= (u32)bytes[i + b - first] << (8 * b);
					wmask |= 0xffU << (8 * b);
				}
				rung |= vfio_cxl_dvsec_write_reg(cxl, r, val,
								 wmask);
			} else {
				val = vfio_cxl_dvsec_read_reg(cxl, r);
				for (b = first; b < last; b++)
					bytes[i + b - first] = val >> (8 * b);
			}
			i += last - first;
		}
	}

	if (rung)
		vfio_cxl_dvsec_doorbells(cxl, rung);
	if (!iswrite && copy_to_user(buf, bytes, n))
		return -EFAULT;
	return n;
}

static bool vfio_cxl_cfg_touches(unsigned int pos, size_t count,
				 unsigned int reg, unsigned int width)
{
	return pos < reg + width && pos + count > reg;
}

/*
 * May this write take the memory away? vfio-pci core zaps only BAR
 * mappings when a write puts the function in D3hot or turns Memory Space
 * off. A write that touches PMCSR is bracketed by a blocker whatever its
 * value. A write to the command register is bracketed when it clears
 * Memory Space as read here; one that keeps it on (INTx Disable, Bus
 * Master) must not fail the accesses running beside it, or a VMM dies of
 * SIGBUS. vfio-pci core reads the value from user memory again, so a
 * value changed in between is caught after the write: the mappings are
 * zapped once Memory Space reads off (vfio_cxl_mem_follow_command()).
 */
static bool vfio_cxl_cfg_write_may_unmap(struct vfio_cxl *cxl,
					 const char __user *buf,
					 unsigned int pos, size_t count)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u8 cmd;

	if (pdev->pm_cap &&
	    vfio_cxl_cfg_touches(pos, count, pdev->pm_cap + PCI_PM_CTRL, 2))
		return true;
	if (vfio_cxl_ignore_memory_space ||
	    !vfio_cxl_cfg_touches(pos, count, PCI_COMMAND, 1))
		return false;
	if (get_user(cmd, buf + PCI_COMMAND - pos))
		return true;
	return !(cmd & PCI_COMMAND_MEMORY);
}

static ssize_t vfio_cxl_cfg_core_rw(struct vfio_cxl *cxl, char __user *buf,
				    unsigned int pos, size_t n, bool iswrite)
{
	struct vfio_device *core_vdev = &cxl->cdev->pci_core.vdev;
	loff_t p = VFIO_PCI_INDEX_TO_OFFSET(VFIO_PCI_CONFIG_REGION_INDEX) + pos;
	bool block;
	ssize_t ret;

	if (!iswrite)
		return vfio_pci_core_read(core_vdev, buf, n, &p);

	block = vfio_cxl_cfg_write_may_unmap(cxl, buf, pos, n);
	if (block)
		vfio_cxl_mem_block(cxl);
	ret = vfio_pci_core_write(core_vdev, buf, n, &p);
	if (!vfio_cxl_ignore_memory_space &&
	    vfio_cxl_cfg_touches(pos, n, PCI_COMMAND, 1))
		vfio_cxl_mem_follow_command(cxl);
	if (block)
		vfio_cxl_mem_unblock(cxl);
	return ret;
}

/**
 * vfio_cxl_config_rw() - read()/write() of the config-space region
 * @cxl: device state
 * @buf: user buffer
 * @count: bytes
 * @ppos: file position, advanced by the result
 * @iswrite: direction
 *
 * Splits the access at the CXL DVSEC boundaries: the Device DVSEC body is
 * emulated, CXL DVSECs drop writes, everything else goes to vfio-pci core.
 *
 * Return: bytes transferred or a negative errno.
 */
ssize_t vfio_cxl_config_rw(struct vfio_cxl *cxl, char __user *buf,
			   size_t count, loff_t *ppos, bool iswrite)
{
	struct vfio_device *core_vdev = &cxl->cdev->pci_core.vdev;
	unsigned int cfg_size = cxl->cdev->pci_core.pdev->cfg_size;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	unsigned int body = cxl->dvsec + VFIO_CXL_DVSEC_BODY;
	unsigned int body_end = cxl->dvsec +
				min_t(unsigned int, cxl->dvsec_len,
				      VFIO_CXL_DVSEC_LEN);
	size_t done = 0;
	ssize_t ret = 0;

	/* Out of range: let vfio-pci core answer as it always does. */
	if (pos >= cfg_size)
		return iswrite ? vfio_pci_core_write(core_vdev, buf, count, ppos) :
				 vfio_pci_core_read(core_vdev, buf, count, ppos);
	count = min_t(u64, count, cfg_size - pos);

	while (done < count) {
		unsigned int off = pos + done, next = cfg_size;
		size_t n = count - done;
		bool in_ro = false;
		unsigned int i;

		for (i = 0; i < cxl->nr_ro; i++) {
			unsigned int s = cxl->ro[i].start;
			unsigned int e = s + cxl->ro[i].len;

			if (off >= s && off < e) {
				in_ro = true;
				next = e;
				break;
			}
			if (s > off && s < next)
				next = s;
		}
		if (off >= body && off < body_end) {
			n = min_t(size_t, n, body_end - off);
			ret = vfio_cxl_dvsec_rw(cxl, buf + done, off - cxl->dvsec,
						n, iswrite);
		} else if (in_ro && iswrite) {
			/* Dropped, up to the emulated body (header writes). */
			if (off < body && body < next)
				next = body;
			n = min_t(size_t, n, next - off);
			ret = n;
		} else {
			if (off < body && body < next)
				next = body;
			n = min_t(size_t, n, next - off);
			ret = vfio_cxl_cfg_core_rw(cxl, buf + done, off, n,
						   iswrite);
		}
		if (ret <= 0)
			break;
		done += ret;
		if (ret < n)
			break;
	}

	if (!done)
		return ret;
	*ppos += done;
	return done;
}
