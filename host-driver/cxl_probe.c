// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-cxl-core: discovery of a CXL Type-2 device at bind.
 *
 * The device is brought up through the mainline Type-2 API, the way
 * drivers/net/ethernet/sfc/efx_cxl.c does it: CXL device state, component
 * registers (Register Locator DVSEC), capacity, then devm_cxl_probe_mem(),
 * which attaches the memdev to the region that platform firmware committed
 * and returns its host physical range. Linux 7.3 cannot create a region for
 * a Type-2 device, so a device without a committed decoder is refused.
 */
#include <linux/bitfield.h>
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/jiffies.h>
#include <linux/pci.h>
#include <linux/unaligned.h>
#include <cxl/pci.h>

#include "vfio_cxl_priv.h"

/* CXL r3.1 8.1.3.8.2: Memory_Info_Valid must be set within 1 s of reset. */
#define VFIO_CXL_INFO_VALID_TIMEOUT_MS	1000
/* Longest wait for Memory_Active accepted at bind (encodings 0..2). */
#define VFIO_CXL_ACTIVE_TIMEOUT_MAX	2
#define VFIO_CXL_POLL_MS		20

/*
 * CXL r3.1 8.1.3.8.2: Memory_Active_Timeout, 0 = 1 s, 1 = 4 s, 2 = 16 s,
 * 3 = 64 s, 4 = 256 s. Binding waits at most 16 s; a device that needs more
 * can be bound again once its memory is active.
 */
static unsigned int vfio_cxl_active_timeout_ms(u32 size_low)
{
	u32 enc = FIELD_GET(PCI_DVSEC_CXL_MEM_ACTIVE_TIMEOUT, size_low);

	return MSEC_PER_SEC << (2 * min(enc, VFIO_CXL_ACTIVE_TIMEOUT_MAX));
}

/**
 * vfio_cxl_wait_mem_active() - wait for DVSEC Range 1 Memory_Active
 * @pdev: PCI device
 * @dvsec: config offset of its CXL Device DVSEC
 *
 * Return: 0, -ENODEV when the device does not answer, -ETIMEDOUT.
 */
int vfio_cxl_wait_mem_active(struct pci_dev *pdev, u16 dvsec)
{
	unsigned long deadline;
	bool valid = false;
	u32 val;

	deadline = jiffies + msecs_to_jiffies(VFIO_CXL_INFO_VALID_TIMEOUT_MS);
	for (;;) {
		pci_read_config_dword(pdev, dvsec + PCI_DVSEC_CXL_RANGE_SIZE_LOW(0),
				      &val);
		if (PCI_POSSIBLE_ERROR(val))
			return -ENODEV;
		if (!valid && (val & PCI_DVSEC_CXL_MEM_INFO_VALID)) {
			valid = true;
			deadline = jiffies +
				msecs_to_jiffies(vfio_cxl_active_timeout_ms(val));
		}
		if (valid && (val & PCI_DVSEC_CXL_MEM_ACTIVE))
			return 0;
		if (time_after(jiffies, deadline))
			break;
		msleep(VFIO_CXL_POLL_MS);
	}

	pci_err(pdev, "CXL memory not active (DVSEC Range 1 Size Low %#x: Memory_Info_Valid=%d Memory_Active=%d)\n",
		val, !!(val & PCI_DVSEC_CXL_MEM_INFO_VALID),
		!!(val & PCI_DVSEC_CXL_MEM_ACTIVE));
	return -ETIMEDOUT;
}

/* Every CXL DVSEC is read-only for the guest (docs/uapi.md). */
static int vfio_cxl_find_ro_dvsecs(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u16 pos = 0;
	u32 hdr1;

	while ((pos = pci_find_next_ext_capability(pdev, pos,
						   PCI_EXT_CAP_ID_DVSEC))) {
		pci_read_config_dword(pdev, pos + PCI_DVSEC_HEADER1, &hdr1);
		if (PCI_DVSEC_HEADER1_VID(hdr1) != PCI_VENDOR_ID_CXL)
			continue;
		if (cxl->nr_ro == ARRAY_SIZE(cxl->ro)) {
			pci_err(pdev, "more than %zu CXL DVSECs\n",
				ARRAY_SIZE(cxl->ro));
			return -EOPNOTSUPP;
		}
		cxl->ro[cxl->nr_ro].start = pos;
		cxl->ro[cxl->nr_ro].len = PCI_DVSEC_HEADER1_LEN(hdr1);
		cxl->nr_ro++;
		if (pos == cxl->dvsec)
			cxl->dvsec_len = PCI_DVSEC_HEADER1_LEN(hdr1);
	}

	if (cxl->dvsec_len < VFIO_CXL_DVSEC_CAP3) {
		pci_err(pdev, "CXL Device DVSEC too short (%u bytes)\n",
			cxl->dvsec_len);
		return -EINVAL;
	}
	return 0;
}

/* Which BAR holds the component register block, and where. */
static int vfio_cxl_locate_hdm(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	struct cxl_register_map *map = &cxl->cxlds.reg_map;
	resource_size_t phys = map->resource;
	int bar;

	for (bar = 0; bar < PCI_STD_NUM_BARS; bar++) {
		resource_size_t start = pci_resource_start(pdev, bar);
		resource_size_t len = pci_resource_len(pdev, bar);

		if (!len || !(pci_resource_flags(pdev, bar) & IORESOURCE_MEM))
			continue;
		if (phys < start || phys - start >= len)
			continue;
		if (phys - start + map->component_map.hdm_decoder.offset +
		    map->component_map.hdm_decoder.size > len)
			break;
		cxl->comp_bar = bar;
		cxl->hdm_bar_off = phys - start +
				   map->component_map.hdm_decoder.offset;
		cxl->hdm_size = map->component_map.hdm_decoder.size;
#ifdef VFIO_CXL_HAVE_VARIANT_BARS
		/* The CXL core holds part of it: vfio-pci core leaves it to us. */
		cxl->cdev->pci_core.variant_bars |= BIT(bar);
#endif /* VFIO_CXL_HAVE_VARIANT_BARS */
		return 0;
	}

	pci_err(pdev, "component register block %pa is not inside a memory BAR\n",
		&phys);
	return -ENODEV;
}

/* CXL r3.1 8.2.4.20.1: Decoder Count 0 = 1, 1..8 = 2n, 9..12 = 4(n - 4). */
static unsigned int vfio_cxl_hdm_count(u32 cap)
{
	unsigned int n = FIELD_GET(VFIO_CXL_HDM_CAP_COUNT, cap);

	if (!n)
		return 1;
	if (n <= 8)
		return n * 2;
	return (n - 4) * 4;
}

/**
 * vfio_cxl_hdm_read_live() - read the HDM Decoder Capability structure
 * @cxl: device state
 * @hdm: mapping of the structure
 * @regs: array of hdm_size / 4 dwords to fill
 *
 * Return: 0, or -EIO when the device answers all-ones (not decoding).
 */
int vfio_cxl_hdm_read_live(struct vfio_cxl *cxl, void __iomem *hdm, u32 *regs)
{
	unsigned int i;

	for (i = 0; i < cxl->hdm_size / 4; i++)
		regs[i] = readl(hdm + i * 4);

	return PCI_POSSIBLE_ERROR(regs[0]) ? -EIO : 0;
}

static u64 vfio_cxl_reg64(const u32 *regs, unsigned int low, unsigned int high,
			  u32 low_mask)
{
	return ((u64)regs[high / 4] << 32) | (regs[low / 4] & low_mask);
}

/* Refuse what this driver cannot pass through (docs/host-driver.md). */
static int vfio_cxl_check_decoders(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	const u32 *r = cxl->hdm_bind;
	unsigned int i, committed = 0;
	u32 ctrl;

	for (i = 0; i < cxl->hdm_count; i++)
		if (r[VFIO_CXL_HDM_DEC_CTRL(i) / 4] &
		    VFIO_CXL_HDM_DEC_CTRL_COMMITTED)
			committed++;

	ctrl = r[VFIO_CXL_HDM_DEC_CTRL(0) / 4];
	if (!(ctrl & VFIO_CXL_HDM_DEC_CTRL_COMMITTED)) {
		pci_err(pdev, "no firmware-committed HDM decoder/region: HDM decoder 0 is not committed (control %#x)\n",
			ctrl);
		return -ENXIO;
	}
	if (committed > 1) {
		pci_err(pdev, "%u HDM decoders committed: only one decoder/region per device is supported\n",
			committed);
		return -EOPNOTSUPP;
	}
	if (FIELD_GET(VFIO_CXL_HDM_DEC_CTRL_IW, ctrl)) {
		pci_err(pdev, "HDM decoder 0 is interleaved (IW encoding %lu): not supported\n",
			FIELD_GET(VFIO_CXL_HDM_DEC_CTRL_IW, ctrl));
		return -EOPNOTSUPP;
	}
	if (!(ctrl & VFIO_CXL_HDM_DEC_CTRL_LOCK)) {
		if (!vfio_cxl_allow_unlocked) {
			pci_err(pdev, "HDM decoder 0 is committed but not locked (Lock On Commit clear): refusing, see vfio_cxl_core.allow_unlocked_decoder\n");
			return -EPERM;
		}
		pci_warn(pdev, "HDM decoder 0 is not locked: the host must not decommit it while the device is assigned\n");
	}
	if (!vfio_cxl_reg64(r, VFIO_CXL_HDM_DEC_SIZE_LOW(0),
			    VFIO_CXL_HDM_DEC_SIZE_HIGH(0),
			    VFIO_CXL_HDM_DEC_ADDR_LOW)) {
		pci_err(pdev, "HDM decoder 0 is committed with size 0\n");
		return -EINVAL;
	}
	return 0;
}

static int vfio_cxl_read_hdm(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	void __iomem *hdm;
	int rc;

	if (cxl->hdm_size < VFIO_CXL_HDM_SIZE(1) || cxl->hdm_size % 4 ||
	    cxl->hdm_size > sizeof(cxl->hdm_bind)) {
		pci_err(pdev, "unsupported HDM Decoder Capability size %#llx\n",
			cxl->hdm_size);
		return -EOPNOTSUPP;
	}

	hdm = pci_iomap_range(pdev, cxl->comp_bar, cxl->hdm_bar_off,
			      cxl->hdm_size);
	if (!hdm)
		return -ENOMEM;
	rc = vfio_cxl_hdm_read_live(cxl, hdm, cxl->hdm_bind);
	pci_iounmap(pdev, hdm);
	if (rc) {
		pci_err(pdev, "HDM decoder registers read as all-ones\n");
		return rc;
	}

	cxl->hdm_count = vfio_cxl_hdm_count(cxl->hdm_bind[VFIO_CXL_HDM_CAP / 4]);
	if (VFIO_CXL_HDM_SIZE(cxl->hdm_count) > cxl->hdm_size) {
		pci_err(pdev, "%u HDM decoders do not fit in %#llx bytes\n",
			cxl->hdm_count, cxl->hdm_size);
		return -EINVAL;
	}
	cxl->hdm_size = VFIO_CXL_HDM_SIZE(cxl->hdm_count);

	return vfio_cxl_check_decoders(cxl);
}

/**
 * vfio_cxl_hdm_decodes_bind() - does decoder 0 still decode what it did?
 * @cxl: device state; the component BAR must be decoding
 *
 * Return: true if decoder 0 is committed with the bind-time base, size and
 * DPA skip.
 */
bool vfio_cxl_hdm_decodes_bind(struct vfio_cxl *cxl)
{
	static const unsigned int regs[] = VFIO_CXL_HDM_DEC0_RANGE_REGS;
	void __iomem *hdm = cxl->comp_io + cxl->hdm_bar_off;
	unsigned int i;
	u32 ctrl;

	ctrl = readl(hdm + VFIO_CXL_HDM_DEC_CTRL(0));
	if (PCI_POSSIBLE_ERROR(ctrl) ||
	    !(ctrl & VFIO_CXL_HDM_DEC_CTRL_COMMITTED))
		return false;
	for (i = 0; i < ARRAY_SIZE(regs); i++)
		if (readl(hdm + regs[i]) != cxl->hdm_bind[regs[i] / 4])
			return false;
	return true;
}

static void vfio_cxl_release_hpa(void *data)
{
	struct vfio_cxl *cxl = data;

	release_mem_region(cxl->hpa.start, range_len(&cxl->hpa));
}

/*
 * A devres action on the PCI device: it runs after remove() dropped the
 * vfio device (and @cdev with it), so it reaches the PCI device through the
 * CXL device state, which devres frees after this.
 */
static void vfio_cxl_unmap_comp(void *data)
{
	struct vfio_cxl *cxl = data;

	pci_iounmap(to_pci_dev(cxl->cxlds.dev), cxl->comp_io);
	cxl->comp_io = NULL;
}

static void vfio_cxl_read_dvsec(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	unsigned int off;
	u32 val;

	for (off = 0; off < sizeof(cxl->dvsec_bind); off += 4) {
		val = 0;
		if (off < cxl->dvsec_len)
			pci_read_config_dword(pdev, cxl->dvsec + off, &val);
		put_unaligned_le32(val, &cxl->dvsec_bind[off]);
	}
	cxl->dvsec_cap = get_unaligned_le16(&cxl->dvsec_bind[VFIO_CXL_DVSEC_CAP]);

	/*
	 * Firmware programs the Range Base registers with the host physical
	 * address; the user's view starts at 0 like the comp-regs view.
	 */
	for (off = 0; off < CXL_DVSEC_RANGE_MAX; off++) {
		put_unaligned_le32(0, &cxl->dvsec_bind[PCI_DVSEC_CXL_RANGE_BASE_HIGH(off)]);
		put_unaligned_le32(0, &cxl->dvsec_bind[PCI_DVSEC_CXL_RANGE_BASE_LOW(off)]);
	}
}

static int vfio_cxl_bring_up(struct vfio_cxl *cxl)
{
	struct pci_dev *pdev = cxl->cdev->pci_core.pdev;
	u64 dec_size, dec_skip, capacity;
	struct cxl_memdev *cxlmd;
	u32 hi, lo;
	int rc;

	rc = vfio_cxl_find_ro_dvsecs(cxl);
	if (rc)
		return rc;

	rc = vfio_cxl_wait_mem_active(pdev, cxl->dvsec);
	if (rc)
		return rc;

	rc = cxl_pci_setup_regs(pdev, CXL_REGLOC_RBI_COMPONENT,
				&cxl->cxlds.reg_map);
	if (rc) {
		pci_err(pdev, "no CXL component registers (Register Locator DVSEC): %d\n",
			rc);
		return rc;
	}
	if (!cxl->cxlds.reg_map.component_map.hdm_decoder.valid) {
		pci_err(pdev, "component registers lack the HDM Decoder Capability\n");
		return -ENODEV;
	}

	rc = vfio_cxl_locate_hdm(cxl);
	if (rc)
		return rc;
	rc = vfio_cxl_read_hdm(cxl);
	if (rc)
		return rc;

	dec_size = vfio_cxl_reg64(cxl->hdm_bind, VFIO_CXL_HDM_DEC_SIZE_LOW(0),
				  VFIO_CXL_HDM_DEC_SIZE_HIGH(0),
				  VFIO_CXL_HDM_DEC_ADDR_LOW);
	dec_skip = vfio_cxl_reg64(cxl->hdm_bind, VFIO_CXL_HDM_DEC_SKIP_LOW(0),
				  VFIO_CXL_HDM_DEC_SKIP_HIGH(0),
				  VFIO_CXL_HDM_DEC_ADDR_LOW);

	/* CXL r3.1 8.1.3.8: the device memory size, in 256 MiB units. */
	pci_read_config_dword(pdev, cxl->dvsec + PCI_DVSEC_CXL_RANGE_SIZE_HIGH(0),
			      &hi);
	pci_read_config_dword(pdev, cxl->dvsec + PCI_DVSEC_CXL_RANGE_SIZE_LOW(0),
			      &lo);
	capacity = ((u64)hi << 32) | (lo & PCI_DVSEC_CXL_MEM_SIZE_LOW);
	if (dec_skip + dec_size < dec_skip || dec_skip + dec_size > capacity) {
		pci_err(pdev, "HDM decoder 0 (DPA skip %#llx, size %#llx) exceeds the DVSEC memory size %#llx\n",
			dec_skip, dec_size, capacity);
		return -EINVAL;
	}

	/* No mailbox and no memdev registers on this device: nothing to poll. */
	cxl->cxlds.media_ready = true;
	rc = cxl_set_capacity(&cxl->cxlds, capacity);
	if (rc) {
		pci_err(pdev, "cxl_set_capacity(%#llx) failed: %d\n", capacity,
			rc);
		return rc;
	}

	cxlmd = devm_cxl_probe_mem(&cxl->cxlds, &cxl->hpa);
	if (IS_ERR(cxlmd)) {
		rc = PTR_ERR(cxlmd);
		pci_err(pdev, "no firmware-committed HDM decoder/region: devm_cxl_probe_mem() failed: %pe (are cxl_acpi and cxl_mem loaded, and did firmware commit the host bridge and endpoint decoders?)\n",
			cxlmd);
		return rc;
	}
	if (range_len(&cxl->hpa) != dec_size) {
		pci_err(pdev, "region %pra does not match HDM decoder 0 size %#llx\n",
			&cxl->hpa, dec_size);
		return -EOPNOTSUPP;
	}

	if (range_len(&cxl->hpa) > VFIO_CXL_MAX_REGION_SIZE) {
		pci_err(pdev, "region %pra is larger than a VFIO region can be (%llu GiB)\n",
			&cxl->hpa, VFIO_CXL_MAX_REGION_SIZE >> 30);
		return -EOPNOTSUPP;
	}

	if (!request_mem_region_exclusive(cxl->hpa.start, range_len(&cxl->hpa),
					  "vfio-cxl")) {
		pci_err(pdev, "region %pra is busy (claimed by another driver, e.g. dax/kmem)\n",
			&cxl->hpa);
		return -EBUSY;
	}
	rc = devm_add_action_or_reset(&pdev->dev, vfio_cxl_release_hpa, cxl);
	if (rc)
		return rc;
	rc = vfio_cxl_pages_init(cxl);
	if (rc)
		return rc;

	/* Decoder validation and restore need the registers at any time. */
	cxl->comp_io = pci_iomap(pdev, cxl->comp_bar, 0);
	if (!cxl->comp_io)
		return -ENOMEM;
	rc = devm_add_action_or_reset(&pdev->dev, vfio_cxl_unmap_comp, cxl);
	if (rc)
		return rc;

	vfio_cxl_read_dvsec(cxl);
	vfio_cxl_comp_build_view(cxl);
	cxl->needs_clear = true;	/* a previous owner may have left data */
	return 0;
}

/**
 * vfio_cxl_probe_cxl() - bring up the CXL side of a device at bind
 * @cdev: vfio-cxl core device, allocated but not registered
 *
 * All resources are device-managed on the PCI device: they are released
 * when probe fails or after the driver's remove callback.
 *
 * Return: 0 or a negative errno, with the reason logged.
 */
int vfio_cxl_probe_cxl(struct vfio_cxl_core_device *cdev)
{
	struct pci_dev *pdev = cdev->pci_core.pdev;
	struct vfio_cxl *cxl;
	u16 dvsec;
	int rc;

	dvsec = pci_find_dvsec_capability(pdev, PCI_VENDOR_ID_CXL,
					  PCI_DVSEC_CXL_DEVICE);
	if (!dvsec)
		return -ENODEV;

	cxl = devm_cxl_dev_state_create(&pdev->dev, CXL_DEVTYPE_DEVMEM,
					pci_get_dsn(pdev), dvsec,
					struct vfio_cxl, cxlds, false);
	if (!cxl)
		return -ENOMEM;

	cxl->cdev = cdev;
	cxl->dvsec = dvsec;
	cxl->mem_index = -1;
	rc = devm_mutex_init(&pdev->dev, &cxl->cfg_lock);
	if (rc)
		return rc;
	rc = devm_mutex_init(&pdev->dev, &cxl->mf_lock);
	if (rc)
		return rc;
	INIT_LIST_HEAD(&cxl->vmas);

	/* The registers are read through a BAR nobody has enabled yet. */
	rc = pci_enable_device_mem(pdev);
	if (rc)
		return rc;
	rc = vfio_cxl_bring_up(cxl);
	pci_disable_device(pdev);
	if (rc)
		return rc;

	cdev->cxl = cxl;
	pci_info(pdev, "CXL Type-2 memory %pra (%llu MiB) behind HDM decoder 0; component registers in BAR %d at %#llx\n",
		 &cxl->hpa, range_len(&cxl->hpa) >> 20, cxl->comp_bar,
		 cxl->hdm_bar_off);
	return 0;
}
