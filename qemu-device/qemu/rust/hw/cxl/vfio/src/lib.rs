// SPDX-License-Identifier: GPL-2.0-or-later

//! The CXL part of `-device vfio-cxl` and `-device vfio-user-cxl`.
//!
//! Both devices are vfio-pci devices (kernel VFIO or vfio-user) whose
//! host exposes the CXL regions of docs/uapi.md. The C side (hw/vfio/cxl.c)
//! finds and maps the regions; everything CXL about the guest's view is
//! here: the emulated HDM decoder block the guest programs, the
//! firmware-style pre-commit at reset and the direct mapping of the device
//! memory into the CXL Fixed Memory Window while decoder 0 is committed.
//! C calls it through the `extern "C"` functions of [`part`].

mod bindings;
pub mod part;
