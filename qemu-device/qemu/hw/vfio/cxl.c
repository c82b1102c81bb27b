/*
 * CXL Type-2 devices through VFIO: the shared VFIO glue and the vfio-cxl
 * device (kernel VFIO)
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/range.h"
#include "qemu/units.h"
#include "hw/qdev-properties.h"
#include "migration/blocker.h"
#include "vfio-cxl.h"
#include "hw/vfio/vfio-region.h"
#include "vfio-helpers.h"
#include "types.h"
#include "trace.h"

/*
 * After unplug (vfio_cxl_exit freed the part) a vCPU that looked the
 * overlay up in an older flat view may still call these: both run under
 * the BQL, as exit does, so a NULL part is seen and nothing is touched.
 */
static uint64_t vfio_cxl_hdm_read(void *opaque, hwaddr addr, unsigned size)
{
    VFIOCXL *cxl = opaque;

    return cxl->part ? vfio_cxl_part_hdm_read(cxl->part, addr, size) : 0;
}

static void vfio_cxl_hdm_write(void *opaque, hwaddr addr, uint64_t data,
                               unsigned size)
{
    VFIOCXL *cxl = opaque;

    if (cxl->part) {
        vfio_cxl_part_hdm_write(cxl->part, addr, data, size);
    }
}

static const MemoryRegionOps vfio_cxl_hdm_ops = {
    .read = vfio_cxl_hdm_read,
    .write = vfio_cxl_hdm_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 4,
        .max_access_size = 8,
    },
    .impl = {
        .min_access_size = 4,
        .max_access_size = 8,
    },
};

/*
 * The capability @id of @cap_size bytes in the chain that starts at
 * @offset of @buf (@size bytes, of which the first @fixed are the fixed
 * struct).  The host or vfio-user server is not trusted: every header
 * must lie inside @buf after the fixed struct and the chain must ascend,
 * so a malformed reply can neither make us read outside @buf nor loop.
 */
static struct vfio_info_cap_header *
vfio_cxl_find_cap(void *buf, uint32_t size, uint32_t fixed, uint32_t offset,
                  uint16_t id, size_t cap_size, Error **errp)
{
    struct vfio_info_cap_header *hdr;

    while (offset) {
        if (offset < fixed || offset > size || size - offset < sizeof(*hdr)) {
            error_setg(errp, "malformed capability chain: header at 0x%x "
                       "outside the %u bytes of the reply", offset, size);
            return NULL;
        }
        hdr = buf + offset;
        if (hdr->id == id) {
            if (size - offset < cap_size) {
                error_setg(errp, "capability %u at 0x%x is cut short", id,
                           offset);
                return NULL;
            }
            return hdr;
        }
        if (hdr->next && hdr->next <= offset) {
            error_setg(errp, "malformed capability chain: 0x%x points back "
                       "to 0x%x", offset, hdr->next);
            return NULL;
        }
        offset = hdr->next;
    }
    error_setg(errp, "capability %u is missing", id);
    return NULL;
}

/* More than a device-info reply ever needs: a server cannot make it grow. */
#define VFIO_CXL_INFO_MAX (64 * KiB)

/*
 * VFIO_DEVICE_GET_INFO with its capability chain: asks again with the
 * argsz the first reply says it needs.
 */
static struct vfio_device_info *vfio_cxl_get_info(VFIOPCIDevice *vdev,
                                                  VFIOCXLGetInfo get_info,
                                                  Error **errp)
{
    g_autofree struct vfio_device_info *info = NULL;
    uint32_t argsz = sizeof(*info);
    int tries;

    for (tries = 0; tries < 2; tries++) {
        info = g_realloc(info, argsz);
        memset(info, 0, argsz);
        info->argsz = argsz;
        if (!get_info(vdev, info, errp)) {
            return NULL;
        }
        if (info->argsz <= argsz) {
            return g_steal_pointer(&info);
        }
        if (info->argsz > VFIO_CXL_INFO_MAX) {
            break;
        }
        argsz = info->argsz;
    }
    error_setg(errp, "device info needs %u bytes after asking with %u",
               info->argsz, argsz);
    return NULL;
}

/* The device-info capability: refuse what the contract does not cover. */
static bool vfio_cxl_check_info(VFIOPCIDevice *vdev, VFIOCXLGetInfo get_info,
                                Error **errp)
{
    g_autofree struct vfio_device_info *info = NULL;
    struct vfio_info_cap_header *hdr;
    struct vfio_cxl_device_info_cap_cxl *cap;

    info = vfio_cxl_get_info(vdev, get_info, errp);
    if (!info) {
        return false;
    }
    if (!(info->flags & VFIO_CXL_DEVICE_FLAGS_CXL)) {
        error_setg(errp, "not a CXL device (VFIO_DEVICE_FLAGS_CXL is clear)");
        return false;
    }
    if (!(info->flags & VFIO_DEVICE_FLAGS_CAPS) || !info->cap_offset) {
        error_setg(errp, "device info has no capability chain (argsz %u)",
                   info->argsz);
        return false;
    }
    hdr = vfio_cxl_find_cap(info, info->argsz, sizeof(*info),
                            info->cap_offset, VFIO_CXL_DEVICE_INFO_CAP_CXL,
                            sizeof(*cap), errp);
    if (!hdr) {
        error_prepend(errp, "device info lacks the CXL capability: ");
        return false;
    }
    cap = container_of(hdr, struct vfio_cxl_device_info_cap_cxl, header);
    if (!(cap->flags & VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED)) {
        error_setg(errp, "the host HDM decoder is not firmware-committed "
                   "(flags 0x%x): not supported", cap->flags);
        return false;
    }
    return true;
}

/* The CXL Device DVSEC (CXL r3.1 8.1.3) in @pdev's config space, or 0. */
static uint16_t vfio_cxl_find_dvsec(PCIDevice *pdev)
{
    uint16_t pos = PCI_CONFIG_SPACE_SIZE;
    int n;

    /* A chain of more than the space's dwords loops. */
    for (n = 0; pos >= PCI_CONFIG_SPACE_SIZE &&
         pos <= PCIE_CONFIG_SPACE_SIZE - VFIO_CXL_DVSEC_CONTROL - 2 &&
         n < PCIE_CONFIG_SPACE_SIZE / 4; n++) {
        uint32_t hdr = pci_get_long(pdev->config + pos);

        if (PCI_EXT_CAP_ID(hdr) == PCI_EXT_CAP_ID_DVSEC &&
            pci_get_word(pdev->config + pos + PCI_DVSEC_HEADER1) ==
            VFIO_CXL_DVSEC_VENDOR &&
            pci_get_word(pdev->config + pos + PCI_DVSEC_HEADER2) ==
            VFIO_CXL_DVSEC_DEVICE) {
            return pos;
        }
        pos = PCI_EXT_CAP_NEXT(hdr);
    }
    return 0;
}

/* Mem_Enable as the device (host driver or server) reports it. */
static void vfio_cxl_sync_mem_enable(VFIOPCIDevice *vdev, VFIOCXL *cxl)
{
    uint32_t ctrl = vfio_pci_read_config(&vdev->parent_obj,
                                         cxl->dvsec + VFIO_CXL_DVSEC_CONTROL,
                                         2);
    bool on = ctrl & VFIO_CXL_DVSEC_MEM_ENABLE;

    trace_vfio_cxl_mem_enable(vdev->vbasedev.name, on);
    vfio_cxl_part_set_mem_enabled(cxl->part, on);
}

void vfio_cxl_error_prepend(VFIOPCIDevice *vdev, Error **errp)
{
    DeviceState *dev = DEVICE(vdev);
    const char *type = object_get_typename(OBJECT(vdev));

    if (dev->id) {
        error_prepend(errp, "%s %s (%s): ", type, dev->id,
                      vdev->vbasedev.name ? vdev->vbasedev.name : "?");
    } else {
        error_prepend(errp, "%s %s: ", type,
                      vdev->vbasedev.name ? vdev->vbasedev.name : "?");
    }
}

bool vfio_cxl_realize(VFIOPCIDevice *vdev, VFIOCXL *cxl,
                      VFIOCXLGetInfo get_info, Error **errp)
{
    VFIODevice *vbasedev = &vdev->vbasedev;
    struct vfio_region_info *info;
    struct vfio_info_cap_header *hdr;
    struct vfio_cxl_region_info_cap_comp_regs *geo;
    g_autofree char *mem_name = NULL;
    uint64_t mem_size;
    uint32_t hdm_len;
    VFIOBAR *bar;

    if (!vfio_cxl_check_info(vdev, get_info, errp)) {
        return false;
    }

    if (vfio_device_get_region_info_type(vbasedev, VFIO_CXL_REGION_TYPE_CXL,
                                         VFIO_CXL_REGION_SUBTYPE_CXL_COMP_REGS,
                                         &info)) {
        error_setg(errp, "no CXL component register region");
        return false;
    }
    if (!(info->flags & VFIO_REGION_INFO_FLAG_CAPS)) {
        error_setg(errp, "the CXL component register region has no "
                   "capability chain");
        return false;
    }
    hdr = vfio_cxl_find_cap(info, info->argsz, sizeof(*info),
                            info->cap_offset,
                            VFIO_CXL_REGION_INFO_CAP_CXL_COMP_REGS,
                            sizeof(*geo), errp);
    if (!hdr) {
        error_prepend(errp, "the CXL component register region lacks its "
                      "geometry capability: ");
        return false;
    }
    geo = container_of(hdr, struct vfio_cxl_region_info_cap_comp_regs, header);
    if (geo->bar > VFIO_PCI_BAR5_REGION_INDEX ||
        !vdev->bars[geo->bar].region.size ||
        vdev->bars[geo->bar].ioport ||
        geo->offset >= vdev->bars[geo->bar].region.size ||
        geo->size > vdev->bars[geo->bar].region.size - geo->offset) {
        error_setg(errp, "bad CXL decoder geometry: BAR %u offset 0x%" PRIx64
                   " size 0x%" PRIx64, geo->bar, geo->offset, geo->size);
        return false;
    }
    cxl->comp_bar = geo->bar;
    cxl->comp_offset = geo->offset;
    cxl->comp_size = geo->size;

    if (vfio_device_get_region_info_type(vbasedev, VFIO_CXL_REGION_TYPE_CXL,
                                         VFIO_CXL_REGION_SUBTYPE_CXL_MEM,
                                         &info)) {
        error_setg(errp, "no CXL memory region");
        return false;
    }
    if (!(info->flags & VFIO_REGION_INFO_FLAG_MMAP) || !info->size ||
        info->size % (256 * MiB)) {
        error_setg(errp, "CXL memory region (index %u, size 0x%llx, flags 0x%x) "
                   "is not a mappable multiple of 256 MiB", info->index,
                   (unsigned long long)info->size, info->flags);
        return false;
    }
    mem_size = info->size;
    mem_name = g_strdup_printf("%s cxl-mem", vbasedev->name);
    if (vfio_region_setup(OBJECT(vdev), vbasedev, &cxl->mem, info->index,
                          mem_name)) {
        error_setg(errp, "cannot set up the CXL memory region");
        return false;
    }
    memory_region_init_alias(&cxl->mem_alias, OBJECT(vdev), "vfio-cxl-hdm-mem",
                             cxl->mem.mem, 0, mem_size);
    if (vfio_region_mmap(&cxl->mem) || !cxl->mem.nr_mmaps) {
        error_setg(errp, "cannot mmap the CXL memory region");
        goto fail;
    }

    cxl->dvsec = vfio_cxl_find_dvsec(&vdev->parent_obj);
    if (!cxl->dvsec) {
        error_setg(errp, "no CXL Device DVSEC in config space");
        goto fail;
    }
    cxl->part = vfio_cxl_part_new(&vdev->parent_obj, vbasedev->name,
                                  &cxl->mem_alias, mem_size, cxl->precommit,
                                  errp);
    if (!cxl->part) {
        goto fail;
    }
    vfio_cxl_sync_mem_enable(vdev, cxl);

    /*
     * Guest accesses to the host's whole decoder block never reach the
     * host: the guest's block (one decoder) and, past it, zeroes.
     */
    bar = &vdev->bars[cxl->comp_bar];
    hdm_len = vfio_cxl_part_hdm_len(cxl->part);
    if (cxl->comp_size < hdm_len) {
        error_setg(errp, "the host's CXL decoder block (0x%" PRIx64 " bytes) "
                   "is smaller than one decoder block (0x%x)",
                   cxl->comp_size, hdm_len);
        goto fail;
    }
    memory_region_init_io(&cxl->hdm, OBJECT(vdev), &vfio_cxl_hdm_ops, cxl,
                          "vfio-cxl-hdm-decoders", cxl->comp_size);
    cxl->bar_mr = bar->region.mem;
    memory_region_add_subregion_overlap(cxl->bar_mr, cxl->comp_offset,
                                        &cxl->hdm, 1);

    error_setg(&cxl->migration_blocker,
               "%s: CXL Type-2 passthrough (vfio-cxl) does not support "
               "migration", vbasedev->name);
    if (migrate_add_blocker(&cxl->migration_blocker, errp) < 0) {
        goto fail_hdm;
    }
    trace_vfio_cxl_realize(vbasedev->name, cxl->comp_bar, cxl->comp_offset,
                           cxl->comp_size, cxl->mem.nr, mem_size);
    return true;

fail_hdm:
    memory_region_del_subregion(cxl->bar_mr, &cxl->hdm);
    cxl->bar_mr = NULL;
fail:
    vfio_cxl_part_free(cxl->part);
    cxl->part = NULL;
    vfio_region_exit(&cxl->mem);
    return false;
}

void vfio_cxl_exit(VFIOCXL *cxl)
{
    if (!cxl->part) {
        return;
    }
    migrate_del_blocker(&cxl->migration_blocker);
    vfio_cxl_part_free(cxl->part);
    cxl->part = NULL;
    memory_region_del_subregion(cxl->bar_mr, &cxl->hdm);
    cxl->bar_mr = NULL;
    vfio_region_exit(&cxl->mem);
}

/* instance_finalize: the regions die with the device, as BARs do. */
void vfio_cxl_finalize(VFIOCXL *cxl)
{
    if (memory_region_size(&cxl->hdm)) {
        object_unparent(OBJECT(&cxl->hdm));
    }
    if (cxl->mem.mem) {
        object_unparent(OBJECT(&cxl->mem_alias));
    }
    vfio_region_finalize(&cxl->mem);
}

void vfio_cxl_reset_hold(VFIOCXL *cxl)
{
    if (cxl->part) {
        vfio_cxl_part_reset_hold(cxl->part);
    }
}

/*
 * Firmware's part of reset: the pre-commit, then CXL.mem enabled in the
 * DVSEC for what it committed, as platform firmware leaves it for the OS.
 */
void vfio_cxl_reset_exit(VFIOPCIDevice *vdev, VFIOCXL *cxl)
{
    PCIDevice *pdev = &vdev->parent_obj;
    uint32_t addr = cxl->dvsec + VFIO_CXL_DVSEC_CONTROL;

    if (!cxl->part) {
        return;
    }
    if (vfio_cxl_part_reset_exit(cxl->part)) {
        vfio_pci_write_config(pdev, addr,
                              vfio_pci_read_config(pdev, addr, 2) |
                              VFIO_CXL_DVSEC_MEM_ENABLE, 2);
    }
    vfio_cxl_sync_mem_enable(vdev, cxl);
}

/*
 * Config writes that can change the route: PCI Command (Memory Space),
 * PMCSR (the power state) and the DVSEC's Control (Mem_Enable, read back
 * from the device, which owns the register and may ignore the write, e.g.
 * under CONFIG_LOCK).
 *
 * The host driver fails accesses to the CXL memory while the function's
 * Memory Space is off or it is out of D0 (some devices fault the host
 * then: docs/uapi.md of vfio-cxl), so the guest's window must not reach
 * the mmap'd region meanwhile, or a guest touching its window while it
 * sizes BARs or after it entered D3hot would get this process killed by
 * SIGBUS: the alias is disabled before a write that turns Memory Space off
 * or leaves D0 reaches the host, and re-evaluated after.
 */
void vfio_cxl_config_write(VFIOPCIDevice *vdev, VFIOCXL *cxl, uint32_t addr,
                           uint32_t val, int len)
{
    PCIDevice *pdev = &vdev->parent_obj;
    bool command = cxl->part && ranges_overlap(addr, len, PCI_COMMAND, 1);
    bool dvsec = cxl->part &&
        ranges_overlap(addr, len, cxl->dvsec + VFIO_CXL_DVSEC_CONTROL, 2);
    uint32_t pmcsr = pdev->pm_cap + PCI_PM_CTRL;
    bool power = cxl->part && (pdev->cap_present & QEMU_PCI_CAP_PM) &&
        ranges_overlap(addr, len, pmcsr, 1);

    if ((command && !((val >> (8 * (PCI_COMMAND - addr))) &
                      PCI_COMMAND_MEMORY)) ||
        (power && ((val >> (8 * (pmcsr - addr))) & PCI_PM_CTRL_STATE_MASK))) {
        memory_region_set_enabled(&cxl->mem_alias, false);
    }
    vfio_pci_write_config(pdev, addr, val, len);
    if (dvsec) {
        vfio_cxl_sync_mem_enable(vdev, cxl);
    } else if (command || power) {
        vfio_cxl_part_route(cxl->part);
    }
}

/* -device vfio-cxl: kernel VFIO (vfio-cxl-pci on the host). */

#define TYPE_VFIO_CXL "vfio-cxl"
OBJECT_DECLARE_SIMPLE_TYPE(VFIOCXLDevice, VFIO_CXL)

struct VFIOCXLDevice {
    VFIOPCIDevice parent_obj;
    VFIOCXL cxl;
};

static void (*vfio_cxl_parent_realize)(PCIDevice *pdev, Error **errp);
static void (*vfio_cxl_parent_exit)(PCIDevice *pdev);
static ResettablePhases vfio_cxl_parent_phases;

static bool vfio_cxl_kernel_get_info(VFIOPCIDevice *vdev,
                                     struct vfio_device_info *info,
                                     Error **errp)
{
    if (ioctl(vdev->vbasedev.fd, VFIO_DEVICE_GET_INFO, info) < 0) {
        error_setg_errno(errp, errno, "VFIO_DEVICE_GET_INFO failed");
        return false;
    }
    return true;
}

static void vfio_cxl_pci_realize(PCIDevice *pdev, Error **errp)
{
    VFIOCXLDevice *d = VFIO_CXL(pdev);
    ERRP_GUARD();

    vfio_cxl_parent_realize(pdev, errp);
    if (*errp) {
        vfio_cxl_error_prepend(&d->parent_obj, errp);
        return;
    }
    if (!vfio_cxl_realize(&d->parent_obj, &d->cxl, vfio_cxl_kernel_get_info,
                          errp)) {
        vfio_cxl_error_prepend(&d->parent_obj, errp);
        vfio_cxl_parent_exit(pdev);
    }
}

static void vfio_cxl_pci_exit(PCIDevice *pdev)
{
    vfio_cxl_exit(&VFIO_CXL(pdev)->cxl);
    vfio_cxl_parent_exit(pdev);
}

static void vfio_cxl_pci_write_config(PCIDevice *pdev, uint32_t addr,
                                      uint32_t val, int len)
{
    VFIOCXLDevice *d = VFIO_CXL(pdev);

    vfio_cxl_config_write(&d->parent_obj, &d->cxl, addr, val, len);
}

static void vfio_cxl_pci_reset_hold(Object *obj, ResetType type)
{
    VFIOCXLDevice *d = VFIO_CXL(obj);

    if (vfio_cxl_parent_phases.hold) {
        vfio_cxl_parent_phases.hold(obj, type);
    }
    vfio_cxl_reset_hold(&d->cxl);
}

static void vfio_cxl_pci_reset_exit(Object *obj, ResetType type)
{
    if (vfio_cxl_parent_phases.exit) {
        vfio_cxl_parent_phases.exit(obj, type);
    }
    vfio_cxl_reset_exit(&VFIO_CXL(obj)->parent_obj, &VFIO_CXL(obj)->cxl);
}

static void vfio_cxl_pci_finalize(Object *obj)
{
    vfio_cxl_finalize(&VFIO_CXL(obj)->cxl);
}

static const Property vfio_cxl_properties[] = {
    DEFINE_PROP_BOOL("precommit", VFIOCXLDevice, cxl.precommit, true),
};

static void vfio_cxl_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *pdc = PCI_DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    device_class_set_props(dc, vfio_cxl_properties);
    object_class_property_set_description(klass, "precommit",
        "commit HDM decoder 0 of the device and of its host bridge at "
        "reset, like platform firmware (needs pxb-cxl,hdm_for_passthrough=on "
        "and a cxl-fmw targeting only that host bridge)");
    dc->desc = "VFIO-based PCI device assignment of a CXL Type-2 device";
    vfio_cxl_parent_realize = pdc->realize;
    pdc->realize = vfio_cxl_pci_realize;
    vfio_cxl_parent_exit = pdc->exit;
    pdc->exit = vfio_cxl_pci_exit;
    pdc->config_write = vfio_cxl_pci_write_config;
    resettable_class_set_parent_phases(rc, NULL, vfio_cxl_pci_reset_hold,
                                       vfio_cxl_pci_reset_exit,
                                       &vfio_cxl_parent_phases);
}

static const TypeInfo vfio_cxl_info = {
    .name = TYPE_VFIO_CXL,
    .parent = TYPE_VFIO_PCI,
    .instance_size = sizeof(VFIOCXLDevice),
    .instance_finalize = vfio_cxl_pci_finalize,
    .class_init = vfio_cxl_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { INTERFACE_CXL_DEVICE },
        { }
    },
};

static void register_vfio_cxl_type(void)
{
    type_register_static(&vfio_cxl_info);
}

type_init(register_vfio_cxl_type)
