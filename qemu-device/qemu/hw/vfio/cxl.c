/*
 * vfio-cxl: the C the Rust devices need (rust/hw/cxl/vfio)
 *
 * Everything else of -device vfio-cxl and -device vfio-user-cxl is Rust.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include "qapi/error.h"
#include "hw/vfio/vfio-cxl.h"

/*
 * VFIO_DEVICE_GET_INFO on the device fd, with the caller's argsz (the
 * capability chain follows the fixed struct).  In C because the request
 * number is an _IO() macro: bindgen cannot expand it, and its encoding
 * depends on the host architecture.
 */
bool vfio_cxl_kernel_get_device_info(VFIODevice *vbasedev,
                                     struct vfio_device_info *info,
                                     Error **errp)
{
    if (ioctl(vbasedev->fd, VFIO_DEVICE_GET_INFO, info) < 0) {
        error_setg_errno(errp, errno, "VFIO_DEVICE_GET_INFO failed");
        return false;
    }
    return true;
}
