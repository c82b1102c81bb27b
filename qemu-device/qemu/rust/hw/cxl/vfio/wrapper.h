/*
 * Input to bindgen for vfio-cxl and vfio-user-cxl: the VFIO device
 * types they subclass (hw/vfio/pci.h, hw/vfio-user/pci.h), the VFIO
 * calls they make and the uAPI (linux/vfio.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef __CLANG_STDATOMIC_H
#define __CLANG_STDATOMIC_H
/* See rust/hw/pci/wrapper.h. */
typedef enum memory_order {
  memory_order_relaxed,
  memory_order_consume,
  memory_order_acquire,
  memory_order_release,
  memory_order_acq_rel,
  memory_order_seq_cst,
} memory_order;
#endif /* __CLANG_STDATOMIC_H */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "migration/blocker.h"
#include "hw/vfio/pci.h"
#include "hw/vfio/vfio-region.h"
#include "hw/vfio/vfio-cxl.h"
#include "hw/vfio-user/pci.h"
#include "hw/vfio-user/device.h"
