// SPDX-License-Identifier: GPL-2.0-or-later

//! Where cxl-accel puts things in its configuration space and BAR, and how
//! config-space accesses map onto the CXL Device DVSEC model.  No QEMU
//! calls here: the device (device.rs) does the dispatch.

// The layout both emulated Type-2 devices share (cxl-regs' type2).
pub use cxl_regs::type2::{
    CLASS_PROCESSING_ACCELERATOR, COMPONENT_BAR, DEVICE_DVSEC_OFFSET, EXT_CAP_ID_DVSEC,
    REGISTER_BLOCKS, REG_LOCATOR_OFFSET,
};
use cxl_regs::{
    dvsec::{self, DvsecConfig, CAPABILITY, DVSEC_ID_CXL_DEVICE, DVSEC_LENGTH, DVSEC_REVISION},
    reg_locator,
    type2::{self, OptionalCaps},
};

/// PCI Express capability (endpoint), as QEMU's capability API takes it.
pub const PCIE_CAP_OFFSET: u8 = type2::PCIE_CAP_OFFSET as u8;
/// PCI Power Management capability (property `pm`), before the PCI
/// Express capability in the capability list.
pub const PM_CAP_OFFSET: u8 = 0x40;
/// Advanced Error Reporting (property `aer`), after the two DVSECs in
/// the extended capability list.
pub const AER_CAP_OFFSET: u16 = 0x200;
/// DVSEC extended capability version.
pub const DVSEC_CAP_VERSION: u8 = 1;

/// The HwInit part of the CXL Device DVSEC for `mem_size` bytes of
/// device memory; `cxl_reset`: CXL Reset and Mem_Clr capable (timeout
/// 10 ms), else neither.
pub fn dvsec_config(mem_size: u64, cxl_reset: bool) -> DvsecConfig {
    type2::dvsec_config(
        mem_size,
        OptionalCaps {
            cxl_reset,
            cxl_reset_mem_clr: cxl_reset,
            cache_wb_inv: false,
        },
    )
}

/// DVSEC Header 1 and 2 of the CXL Device DVSEC, as bytes at offset 4.
pub fn device_dvsec_headers() -> [u8; 6] {
    let h1 = dvsec::header1(dvsec::CXL_VENDOR_ID, DVSEC_REVISION, DVSEC_LENGTH).to_le_bytes();
    let h2 = dvsec::header2(DVSEC_ID_CXL_DEVICE).to_le_bytes();
    [h1[0], h1[1], h1[2], h1[3], h2[0], h2[1]]
}

/// Length of the Register Locator DVSEC.
pub fn reg_locator_len() -> u16 {
    reg_locator::length(REGISTER_BLOCKS.len())
}

/// The Register Locator's bytes from offset 4.
pub fn reg_locator_bytes() -> Vec<u8> {
    reg_locator::encode(&REGISTER_BLOCKS)
}

/// The config-space range the DVSEC model owns (its registers after the
/// headers): `[start, end)`.
pub const DVSEC_MODEL_RANGE: (u32, u32) = (
    DEVICE_DVSEC_OFFSET as u32 + CAPABILITY as u32,
    DEVICE_DVSEC_OFFSET as u32 + DVSEC_LENGTH as u32,
);

/// The part of a config write of `len` bytes of `val` at `addr` that
/// falls into the DVSEC model: (offset in the DVSEC, size, value).
pub fn dvsec_part(addr: u32, len: u32, val: u32) -> Option<(u16, u8, u32)> {
    let (lo, hi) = DVSEC_MODEL_RANGE;
    let start = addr.max(lo);
    let end = (addr + len).min(hi);
    if start >= end {
        return None;
    }
    let shift = 8 * (start - addr);
    let size = end - start;
    let mask = if size >= 4 {
        u32::MAX
    } else {
        (1 << (8 * size)) - 1
    };
    Some((
        (start - u32::from(DEVICE_DVSEC_OFFSET)) as u16,
        size as u8,
        (val >> shift) & mask,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dvsec_part_clips_to_the_model() {
        // Dword at 0x108: header 2 (not ours), then Capability (RO in the model).
        assert_eq!(dvsec_part(0x108, 4, 0xaabb_ccdd), Some((0x0a, 2, 0xaabb)));
        assert_eq!(dvsec_part(0x10c, 2, 0x1234), Some((0x0c, 2, 0x1234)));
        assert_eq!(dvsec_part(0x104, 4, 0), None);
        assert_eq!(dvsec_part(0x13c, 4, 0), None);
    }
}
