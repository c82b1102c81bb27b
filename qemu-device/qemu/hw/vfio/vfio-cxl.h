/*
 * vfio-cxl: the C the Rust devices need
 *
 * -device vfio-cxl and -device vfio-user-cxl are Rust QOM types
 * (rust/hw/cxl/vfio).  What they cannot do from Rust is here, in
 * hw/vfio/cxl.c; each function says why.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_VFIO_VFIO_CXL_H
#define HW_VFIO_VFIO_CXL_H

#include "hw/vfio/vfio-device.h"

bool vfio_cxl_kernel_get_device_info(VFIODevice *vbasedev,
                                     struct vfio_device_info *info,
                                     Error **errp);

#endif
