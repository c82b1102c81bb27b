// SPDX-License-Identifier: GPL-2.0-or-later

//! # cxl_firmware: platform firmware and the memory path of CXL endpoints
//!
//! What the devices with CXL memory (`cxl-accel`, `vfio-cxl`,
//! `vfio-user-cxl`) share: [`HdmMemory`], firmware's pre-commit of the
//! host bridge's and the device's HDM decoder 0 at reset, the direct
//! mapping of the device memory into the CXL Fixed Memory Window, and the
//! route (mapped memory answers only while the decode path routes it).
//!
//! The decisions (which window, whether the host bridge's decoder fits
//! or routes, which claims conflict) are the `cxl_regs` crate's
//! `firmware` module, unit-tested there. [`platform`] reads the machine
//! for them through the C helpers of hw/cxl/cxl-firmware.c, which walk
//! QEMU's C structures (declared by the `pci` crate's bindgen). [`memory`] has the `MemoryRegion` methods the
//! devices need.

pub mod hdm_memory;
pub mod memory;
pub mod platform;

pub use hdm_memory::{Endpoint, HdmMemory, MemoryTrace};
pub use memory::MemoryRegionExt;
pub use platform::{unwatch_routes, watch_routes, RoutesChanged};
