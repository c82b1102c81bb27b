// SPDX-License-Identifier: GPL-2.0-or-later

//! `-device vfio-cxl` and `-device vfio-user-cxl`: CXL Type-2 devices
//! passed through with VFIO, as Rust QOM subclasses of the C types
//! `vfio-pci` and `vfio-user-pci`.
//!
//! The host (the `vfio-cxl-pci` driver, or a vfio-user server with the
//! same uAPI) exposes the device memory and a view of its own HDM decoders
//! as device-specific regions (docs/uapi.md of vfio-cxl). Both devices let
//! the parent realize the PCI function, then check the device-info CXL
//! capability ([`info`]), map the memory region and overlay an emulated
//! HDM decoder block on the host's ([`device`]); the guest's decoders,
//! the firmware-style pre-commit and the mapping of the memory into the
//! CXL window are [`part`], on the memory path it shares with `cxl-accel`
//! (crate `cxl_firmware`). This crate defines `vfio-cxl`
//! ([`vfio_cxl`]); `vfio-user-cxl` is the crate in `user/`, linked only
//! with QEMU's vfio-user client.
//!
//! C is left only for what Rust cannot reach: hw/vfio/cxl.c.

pub mod bindings;
pub mod device;
pub mod info;
mod part;
pub mod vfio_cxl;

::trace::include_trace!("hw_vfio");
