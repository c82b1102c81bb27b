// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI devices in Rust: [`PCIDevice`] and the [`PCIDeviceImpl`] trait that
//! fills in a `PCIDeviceClass`.

pub mod bindings;

mod device;
pub use device::*;
