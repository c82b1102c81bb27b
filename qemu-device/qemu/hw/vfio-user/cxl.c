/*
 * vfio-user-cxl: a CXL Type-2 device served over vfio-user
 *
 * A vfio-user-pci device whose server exposes the CXL regions of the
 * vfio-cxl uAPI; the CXL part is shared with vfio-cxl (hw/vfio/cxl.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/qdev-properties.h"
#include "hw/vfio-user/pci.h"
#include "hw/vfio-user/device.h"
#include "hw/vfio/vfio-cxl.h"

#define TYPE_VFIO_USER_CXL "vfio-user-cxl"
OBJECT_DECLARE_SIMPLE_TYPE(VFIOUserCXLDevice, VFIO_USER_CXL)

struct VFIOUserCXLDevice {
    VFIOUserPCIDevice parent_obj;
    VFIOCXL cxl;
};

static void (*vfio_user_cxl_parent_realize)(PCIDevice *pdev, Error **errp);
static void (*vfio_user_cxl_parent_exit)(PCIDevice *pdev);
static ResettablePhases vfio_user_cxl_parent_phases;

static bool vfio_user_cxl_get_info(VFIOPCIDevice *vdev,
                                   struct vfio_device_info *info,
                                   Error **errp)
{
    return vfio_user_get_device_info(vdev->vbasedev.proxy, info, errp);
}

static void vfio_user_cxl_realize(PCIDevice *pdev, Error **errp)
{
    VFIOUserCXLDevice *d = VFIO_USER_CXL(pdev);
    VFIOPCIDevice *vdev = &d->parent_obj.parent_obj;
    ERRP_GUARD();

    vfio_user_cxl_parent_realize(pdev, errp);
    if (*errp) {
        vfio_cxl_error_prepend(vdev, errp);
        return;
    }
    if (!vfio_cxl_realize(vdev, &d->cxl, vfio_user_cxl_get_info, errp)) {
        vfio_cxl_error_prepend(vdev, errp);
        vfio_user_cxl_parent_exit(pdev);
    }
}

static void vfio_user_cxl_exit(PCIDevice *pdev)
{
    vfio_cxl_exit(&VFIO_USER_CXL(pdev)->cxl);
    vfio_user_cxl_parent_exit(pdev);
}

static void vfio_user_cxl_finalize(Object *obj)
{
    vfio_cxl_finalize(&VFIO_USER_CXL(obj)->cxl);
}

static void vfio_user_cxl_reset_hold(Object *obj, ResetType type)
{
    if (vfio_user_cxl_parent_phases.hold) {
        vfio_user_cxl_parent_phases.hold(obj, type);
    }
    vfio_cxl_reset_hold(&VFIO_USER_CXL(obj)->cxl);
}

static void vfio_user_cxl_reset_exit(Object *obj, ResetType type)
{
    VFIOUserCXLDevice *d = VFIO_USER_CXL(obj);

    if (vfio_user_cxl_parent_phases.exit) {
        vfio_user_cxl_parent_phases.exit(obj, type);
    }
    vfio_cxl_reset_exit(&d->parent_obj.parent_obj, &d->cxl);
}

static void vfio_user_cxl_write_config(PCIDevice *pdev, uint32_t addr,
                                       uint32_t val, int len)
{
    VFIOUserCXLDevice *d = VFIO_USER_CXL(pdev);

    vfio_cxl_config_write(&d->parent_obj.parent_obj, &d->cxl, addr, val, len);
}

static const Property vfio_user_cxl_properties[] = {
    DEFINE_PROP_BOOL("precommit", VFIOUserCXLDevice, cxl.precommit, true),
};

static void vfio_user_cxl_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *pdc = PCI_DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    device_class_set_props(dc, vfio_user_cxl_properties);
    object_class_property_set_description(klass, "precommit",
        "commit HDM decoder 0 of the device and of its host bridge at "
        "reset, like platform firmware (needs pxb-cxl,hdm_for_passthrough=on "
        "and a cxl-fmw targeting only that host bridge)");
    dc->desc = "vfio-user assignment of a CXL Type-2 device";
    vfio_user_cxl_parent_realize = pdc->realize;
    pdc->realize = vfio_user_cxl_realize;
    vfio_user_cxl_parent_exit = pdc->exit;
    pdc->exit = vfio_user_cxl_exit;
    pdc->config_write = vfio_user_cxl_write_config;
    resettable_class_set_parent_phases(rc, NULL, vfio_user_cxl_reset_hold,
                                       vfio_user_cxl_reset_exit,
                                       &vfio_user_cxl_parent_phases);
}

static const TypeInfo vfio_user_cxl_info = {
    .name = TYPE_VFIO_USER_CXL,
    .parent = TYPE_VFIO_USER_PCI,
    .instance_size = sizeof(VFIOUserCXLDevice),
    .instance_finalize = vfio_user_cxl_finalize,
    .class_init = vfio_user_cxl_class_init,
    .interfaces = (const InterfaceInfo[]) {
        { INTERFACE_CXL_DEVICE },
        { }
    },
};

static void register_vfio_user_cxl_type(void)
{
    type_register_static(&vfio_user_cxl_info);
}

type_init(register_vfio_user_cxl_type)
