/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * VFIO user API for CXL Type-2 devices (accelerators with coherent device
 * memory), as the vfio-cxl project adds it to <linux/vfio.h>.
 *
 * Out of tree this header is included after <linux/vfio.h>. The in-tree
 * patch series (patches/linux/) inserts the block between the BEGIN/END
 * markers into include/uapi/linux/vfio.h verbatim; keep the markers.
 *
 * The contract (what every region holds, errno for each bad input, reset
 * behaviour) is documented in docs/uapi.md of the vfio-cxl project.
 */
#ifndef _UAPI_LINUX_VFIO_CXL_H
#define _UAPI_LINUX_VFIO_CXL_H

#include <linux/types.h>
#include <linux/vfio.h>

/* BEGIN vfio.h CXL additions */

/*
 * CXL devices.
 *
 * VFIO_DEVICE_FLAGS_CXL in vfio_device_info.flags marks a CXL Type-2 device
 * whose host driver exposes the two regions below. It is set together with
 * VFIO_DEVICE_FLAGS_PCI: everything vfio-pci offers keeps working.
 */
#define VFIO_DEVICE_FLAGS_CXL	(1 << 9)	/* vfio-cxl Type-2 device */

/*
 * Device-info capability for CXL devices. It only carries flags; the regions
 * describe themselves (region type, sub-type and region-info capabilities).
 */
#define VFIO_DEVICE_INFO_CAP_CXL		6

struct vfio_device_info_cap_cxl {
	struct vfio_info_cap_header header;
	__u32 flags;
/* Platform firmware committed (and locked) the HDM decoder of the device. */
#define VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED	(1 << 0)
	__u32 __reserved;	/* zero */
};

/*
 * CXL regions are device-specific regions with a VFIO_REGION_INFO_CAP_TYPE
 * capability. Their type is the PCI vendor type of the CXL consortium's
 * vendor ID (0x1e98); the sub-types below are defined for that vendor type.
 *
 * VFIO_REGION_SUBTYPE_CXL_MEM: the device memory (HDM) behind the committed
 * host decoder. READ | WRITE | MMAP. mmap is shared, cacheable and faulted on
 * demand; offset 0 is the first byte the decoder maps (DPA skip applied).
 *
 * VFIO_REGION_SUBTYPE_CXL_COMP_REGS: the HDM Decoder Capability structure of
 * the device (CXL r3.1 8.2.4.20) as the host virtualizes it. READ | WRITE,
 * aligned dword accesses only. Offset 0 is the HDM Decoder Capability
 * register. Decoders read as the host committed and locked them, with base
 * 0; every write is absorbed.
 */
#define VFIO_REGION_TYPE_CXL	(VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x1e98)
#define VFIO_REGION_SUBTYPE_CXL_MEM		(1)
#define VFIO_REGION_SUBTYPE_CXL_COMP_REGS	(2)

/*
 * Region-info capability of the VFIO_REGION_SUBTYPE_CXL_COMP_REGS region:
 * where the block it shadows sits in the device's component-register BAR.
 * The BAR's sparse-mmap capability leaves out every page that overlaps
 * [offset, offset + size); reads there return all-ones, writes are dropped.
 */
#define VFIO_REGION_INFO_CAP_CXL_COMP_REGS	0x1e98

struct vfio_region_info_cap_cxl_comp_regs {
	struct vfio_info_cap_header header;
	__u32 bar;		/* BAR index (VFIO_PCI_BAR0_REGION_INDEX..5) */
	__u32 __reserved;	/* zero */
	__u64 offset;		/* HDM Decoder Capability offset within the BAR */
	__u64 size;		/* bytes shadowed, equal to the region's size */
};

/* END vfio.h CXL additions */

#endif /* _UAPI_LINUX_VFIO_CXL_H */
