// SPDX-License-Identifier: GPL-2.0-or-later
#![allow(
    dead_code,
    improper_ctypes_definitions,
    improper_ctypes,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unnecessary_transmutes,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    clippy::pedantic,
    clippy::restriction,
    clippy::style,
    clippy::missing_const_for_fn,
    clippy::ptr_offset_with_cast,
    clippy::useless_transmute,
    clippy::missing_safety_doc,
    clippy::too_many_arguments
)]

//! `bindgen`-generated declarations of `hw/pci/pci_device.h` and friends,
//! and of the CXL firmware helpers (`hw/cxl/cxl_firmware.h`).

use chardev::bindings::Chardev;
use glib_sys::{
    gboolean, guint, GArray, GByteArray, GHashTable, GHashTableIter, GIOCondition, GList,
    GMainContext, GPollFD, GPtrArray, GSList, GSource, GSourceFunc, GString,
};
use hwcore::bindings::{DeviceClass, DeviceState};
use migration::bindings::VMStateDescription;
use qom::bindings::ObjectClass;
use system::bindings::MemoryRegion;
use util::bindings::Error;

#[cfg(MESON)]
include!("bindings.inc.rs");

#[cfg(not(MESON))]
include!(concat!(env!("OUT_DIR"), "/bindings.inc.rs"));
