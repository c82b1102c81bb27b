// SPDX-License-Identifier: GPL-2.0-or-later

//! # cxl-accel: an emulated CXL Type-2 accelerator
//!
//! A PCI Express endpoint with a CXL Device DVSEC (Cache_Capable,
//! Mem_Capable, one HDM range), a Register Locator DVSEC and a component
//! register block (RAS and HDM decoder capabilities) in BAR 0, backed by a
//! host memory backend.  Firmware-style, it commits its HDM decoder and its
//! host bridge's decoder at reset, so the guest finds a ready region.
//! Every register rule comes from the `cxl_regs` crate.

mod bindings;
pub mod config;
pub mod device;
mod mem_clear;

pub const TYPE_CXL_ACCEL: &::std::ffi::CStr = c"cxl-accel";
