// SPDX-License-Identifier: GPL-2.0-or-later
//! Rust mirror of the vfio-cxl user API.
//!
//! The C original is `host-driver/include/uapi/linux/vfio_cxl.h`; the test
//! `tests/c_header.rs` compiles it and checks that every constant, size and
//! field offset here agrees with it byte for byte. The standard VFIO structs
//! come from rust-vmm's `vfio-bindings`, which predates CXL; the one struct
//! this crate needs from there, the capability header, is mirrored here so
//! the crate has no dependencies (QEMU's meson build links it as is).
//!
//! The semantics behind the numbers are in `docs/uapi.md`.
//!
//! With the `vfio` feature, [`vfio`] opens a device through kernel VFIO
//! (std, libc): the one opener uapi-check and vfio-cxl-cmdline share.

#![no_std]

#[cfg(feature = "vfio")]
extern crate std;

pub mod caps;
#[cfg(feature = "vfio")]
pub mod vfio;

/// `vfio_device_info.flags` bit: a CXL Type-2 device with the regions below.
pub const VFIO_DEVICE_FLAGS_CXL: u32 = 1 << 9;

/// Device-info capability id of [`VfioDeviceInfoCapCxl`].
pub const VFIO_DEVICE_INFO_CAP_CXL: u16 = 6;

/// [`VfioDeviceInfoCapCxl::flags`]: platform firmware committed the HDM decoder.
pub const VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED: u32 = 1 << 0;

/// `VFIO_REGION_TYPE_PCI_VENDOR_TYPE` of `<linux/vfio.h>`.
pub const VFIO_REGION_TYPE_PCI_VENDOR_TYPE: u32 = 1 << 31;

/// PCI vendor ID of the CXL consortium, used for DVSECs and the region type.
pub const PCI_VENDOR_ID_CXL: u16 = 0x1e98;

/// Region type of both CXL regions (PCI vendor type of the CXL vendor ID).
pub const VFIO_REGION_TYPE_CXL: u32 = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | PCI_VENDOR_ID_CXL as u32;

/// Region sub-type: the device memory behind the committed HDM decoder.
pub const VFIO_REGION_SUBTYPE_CXL_MEM: u32 = 1;

/// Region sub-type: the host-virtualized HDM Decoder Capability structure.
pub const VFIO_REGION_SUBTYPE_CXL_COMP_REGS: u32 = 2;

/// `VFIO_REGION_INFO_CAP_TYPE` of `<linux/vfio.h>`.
pub const VFIO_REGION_INFO_CAP_TYPE: u16 = 2;

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP` of `<linux/vfio.h>`.
pub const VFIO_REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;

/// Region-info capability id of [`VfioRegionInfoCapCxlCompRegs`].
///
/// Chosen by this project (see docs/uapi.md): the sequentially allocated
/// upstream ids are small, the CXL vendor ID is not.
pub const VFIO_REGION_INFO_CAP_CXL_COMP_REGS: u16 = 0x1e98;

/// `struct vfio_info_cap_header`: links the capabilities of an info buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioInfoCapHeader {
    pub id: u16,
    pub version: u16,
    /// Offset of the next capability from the start of the info buffer, 0 ends.
    pub next: u32,
}

/// `struct vfio_device_info_cap_cxl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioDeviceInfoCapCxl {
    pub header: VfioInfoCapHeader,
    pub flags: u32,
    pub reserved: u32,
}

/// `struct vfio_region_info_cap_cxl_comp_regs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioRegionInfoCapCxlCompRegs {
    pub header: VfioInfoCapHeader,
    /// BAR index holding the component register block.
    pub bar: u32,
    pub reserved: u32,
    /// Offset of the HDM Decoder Capability structure within that BAR.
    pub offset: u64,
    /// Bytes the region shadows (equal to the region size).
    pub size: u64,
}

/// `struct vfio_region_info_cap_type`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioRegionInfoCapType {
    pub header: VfioInfoCapHeader,
    pub type_: u32,
    pub subtype: u32,
}
