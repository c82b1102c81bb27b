// SPDX-License-Identifier: GPL-2.0-or-later
//! A vfio-user server presenting a software CXL Type-2 device with the
//! same user API as the project's host driver (docs/uapi.md), so that QEMU
//! (`-device vfio-user-pci`, later `-device vfio-user-cxl`) can consume a
//! CXL device without a host kernel module, with one level of TCG.
//!
//! - [`protocol`]: the vfio-user wire format (QEMU 10.2.2,
//!   docs/interop/vfio-user.rst).
//! - [`socket`]: stream I/O with `SCM_RIGHTS` descriptor passing.
//! - [`config`]: PCI configuration space with the CXL DVSECs.
//! - [`device`]: regions, capabilities and the register views.
//! - [`fault`]: `--broken`, the contract violations a device can present.
//! - [`server`]: the message loop for one client at a time.
//! - [`client`]: a small client for tests and tools.
//! - [`cli`]: the `vfio-user-cxl` command line.
//!
//! Every CXL register rule comes from `cxl-regs`; every uAPI number from
//! `vfio-cxl-uapi`. docs/vfio-user-device.md describes the device and
//! where it differs from the kernel driver.

pub mod cli;
pub mod client;
pub mod config;
pub mod device;
pub mod fault;
pub mod protocol;
pub mod server;
pub mod socket;
