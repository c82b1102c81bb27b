/*
 * CXL Type-2 devices through VFIO: the part shared by vfio-cxl (kernel
 * VFIO) and vfio-user-cxl (vfio-user)
 *
 * The host driver (or vfio-user server) exposes the device memory and a
 * view of the host's HDM decoders as device-specific regions, and the
 * decoder geometry as a region-info capability.  The CXL logic proper (the
 * guest's emulated HDM decoder, firmware-style pre-commit, mapping the
 * memory into a CXL Fixed Memory Window) is written in Rust
 * (rust/hw/cxl/vfio); this is the C glue to the VFIO layer.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_VFIO_CXL_H
#define HW_VFIO_VFIO_CXL_H

#include "hw/vfio/pci.h"

/* uAPI additions of the CXL Type-2 series (docs/uapi.md of vfio-cxl). */
#define VFIO_CXL_DEVICE_FLAGS_CXL               (1 << 9)
#define VFIO_CXL_DEVICE_INFO_CAP_CXL            6
#define VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED    (1 << 0)
#define VFIO_CXL_REGION_TYPE_CXL                (0x80000000 | 0x1e98)
#define VFIO_CXL_REGION_SUBTYPE_CXL_MEM         1
#define VFIO_CXL_REGION_SUBTYPE_CXL_COMP_REGS   2
#define VFIO_CXL_REGION_INFO_CAP_CXL_COMP_REGS  0x1e98

/* The CXL Device DVSEC (CXL r3.1 8.1.3): ID, Control, Mem_Enable. */
#define VFIO_CXL_DVSEC_VENDOR                   0x1e98
#define VFIO_CXL_DVSEC_DEVICE                   0
#define VFIO_CXL_DVSEC_CONTROL                  0x0c
#define VFIO_CXL_DVSEC_MEM_ENABLE               (1 << 2)

struct vfio_cxl_device_info_cap_cxl {
    struct vfio_info_cap_header header;
    uint32_t flags;
    uint32_t reserved;
};

struct vfio_cxl_region_info_cap_comp_regs {
    struct vfio_info_cap_header header;
    uint32_t bar;
    uint32_t reserved;
    uint64_t offset;
    uint64_t size;
};

/* The Rust CXL part (rust/hw/cxl/vfio/src/part.rs). */
typedef struct CxlPart CxlPart;
CxlPart *vfio_cxl_part_new(PCIDevice *pci, const char *name,
                           MemoryRegion *mem, uint64_t mem_size,
                           bool precommit, Error **errp);
uint32_t vfio_cxl_part_hdm_len(const CxlPart *part);
uint64_t vfio_cxl_part_hdm_read(const CxlPart *part, uint64_t offset,
                                uint32_t size);
void vfio_cxl_part_hdm_write(CxlPart *part, uint64_t offset, uint64_t value,
                             uint32_t size);
void vfio_cxl_part_reset_hold(CxlPart *part);
bool vfio_cxl_part_reset_exit(CxlPart *part);
void vfio_cxl_part_set_mem_enabled(CxlPart *part, bool on);
void vfio_cxl_part_route(const CxlPart *part);
void vfio_cxl_part_free(CxlPart *part);

/* Fetches VFIO_DEVICE_GET_INFO with the caller's argsz (and cap chain). */
typedef bool (*VFIOCXLGetInfo)(VFIOPCIDevice *vdev,
                               struct vfio_device_info *info, Error **errp);

typedef struct VFIOCXL {
    bool precommit;
    VFIORegion mem;             /* CXL_MEM, mmap'd: RAM-device regions */
    MemoryRegion mem_alias;     /* mapped into the CFMW on commit */
    MemoryRegion hdm;           /* emulated decoders over the component BAR */
    MemoryRegion *bar_mr;
    uint32_t comp_bar;
    uint64_t comp_offset;
    uint64_t comp_size;         /* the host's decoder block, overlaid */
    uint16_t dvsec;             /* the CXL Device DVSEC in config space */
    CxlPart *part;
    Error *migration_blocker;
} VFIOCXL;

/* "<type> <id> (<host device>): " before a realize error. */
void vfio_cxl_error_prepend(VFIOPCIDevice *vdev, Error **errp);
bool vfio_cxl_realize(VFIOPCIDevice *vdev, VFIOCXL *cxl,
                      VFIOCXLGetInfo get_info, Error **errp);
void vfio_cxl_exit(VFIOCXL *cxl);
void vfio_cxl_finalize(VFIOCXL *cxl);
void vfio_cxl_reset_hold(VFIOCXL *cxl);
void vfio_cxl_reset_exit(VFIOPCIDevice *vdev, VFIOCXL *cxl);
void vfio_cxl_config_write(VFIOPCIDevice *vdev, VFIOCXL *cxl, uint32_t addr,
                           uint32_t val, int len);

#endif
