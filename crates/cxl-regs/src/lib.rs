// SPDX-License-Identifier: GPL-2.0-or-later
//! A plain-Rust model of the registers of a CXL device, shared by every
//! emulator of the vfio-cxl project (the QEMU devices, the vfio-user
//! software device, tests), so the rules of the spec live in one place.
//!
//! No QEMU, no kernel, no I/O: callers feed register accesses in and get
//! register values and events (a decoder committed, a reset requested) out.
//! Guest input never panics; what the spec makes read-only, reserved or
//! locked keeps its value.
//!
//! Spec references are to the CXL Specification, Revision 3.1.
//!
//! - [`dvsec`]: the PCIe DVSEC for CXL Devices (§8.1.3).
//! - [`reg_locator`]: the Register Locator DVSEC (§8.1.9).
//! - [`component`]: the component register block (§8.2.3), with
//!   [`ras`] (§8.2.4.17) and [`hdm`] (§8.2.4.20) in it.
//! - [`window`]: HPA ranges, fixed memory windows, interleave encodings,
//!   HPA/DPA translation.
//! - [`firmware`]: what platform firmware decides for an endpoint below a
//!   host bridge (window, host bridge decoder 0, routes, mapping claims).
//! - [`type2`]: the layout the project's emulated Type-2 devices share.

pub mod bits;
pub mod component;
pub mod dvsec;
pub mod firmware;
pub mod hdm;
pub mod ras;
pub mod reg_locator;
pub mod type2;
pub mod window;
