/*
 * Input to bindgen for the PCI bindings of Rust devices, and the CXL
 * firmware helpers endpoints use (hw/cxl/cxl-firmware.c).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef __CLANG_STDATOMIC_H
#define __CLANG_STDATOMIC_H
/*
 * bindgen may not find libclang's stdatomic.h; QEMU code does not use its
 * symbols, so dummy declarations do.
 */
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

#include "hw/pci/pci.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pcie.h"
#include "hw/cxl/cxl_pci.h"
#include "hw/cxl/cxl_firmware.h"
