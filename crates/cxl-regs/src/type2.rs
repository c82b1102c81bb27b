// SPDX-License-Identifier: GPL-2.0-or-later
//! The layout the project's emulated Type-2 devices share (QEMU's
//! `cxl-accel` and the vfio-user software device), so that both look alike
//! to a guest: where the DVSECs sit in config space, where the component
//! register block sits, and the HwInit part of the CXL Device DVSEC.

use crate::dvsec::{Capability, Capability3, DvsecConfig, RangeInfo, DVSEC_LENGTH};
use crate::reg_locator::{BlockId, RegisterBlock};

/// PCI Express capability (endpoint) in config space.
pub const PCIE_CAP_OFFSET: u16 = 0x80;
/// Extended capability ID of a DVSEC (PCIe r6 7.9.6).
pub const EXT_CAP_ID_DVSEC: u16 = 0x23;
/// The CXL Device DVSEC (CXL r3.1 8.1.3): first extended capability.
pub const DEVICE_DVSEC_OFFSET: u16 = 0x100;
/// The Register Locator DVSEC (CXL r3.1 8.1.9), right after it.
pub const REG_LOCATOR_OFFSET: u16 = DEVICE_DVSEC_OFFSET + DVSEC_LENGTH;
/// BAR holding the component register block (64-bit: BARs 0 and 1).
pub const COMPONENT_BAR: u8 = 0;
/// Offset of the component register block in that BAR.
pub const COMPONENT_BAR_OFFSET: u64 = 0;
/// PCI class code (base class and subclass): processing accelerator.
pub const CLASS_PROCESSING_ACCELERATOR: u16 = 0x1200;

/// The register blocks the Register Locator lists.
pub const REGISTER_BLOCKS: [RegisterBlock; 1] = [RegisterBlock {
    id: BlockId::Component as u8,
    bar: COMPONENT_BAR,
    offset: COMPONENT_BAR_OFFSET,
}];

/// Optional DVSEC capabilities a device model may advertise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalCaps {
    /// CXL Reset Capable, CXL_Reset_Timeout 0 (10 ms).
    pub cxl_reset: bool,
    /// CXL Reset Mem Clr Capable (meaningful with `cxl_reset`).
    pub cxl_reset_mem_clr: bool,
    /// Cache Writeback and Invalidate Capable.
    pub cache_wb_inv: bool,
}

/// The HwInit part of the CXL Device DVSEC for `mem_size` bytes of device
/// memory: a cache- and memory-capable Type-2 device with one HDM range
/// whose memory is active from the start.
pub fn dvsec_config(mem_size: u64, optional: OptionalCaps) -> DvsecConfig {
    let capability = Capability::default()
        .with(Capability::CACHE_CAPABLE, 1)
        .with(Capability::MEM_CAPABLE, 1)
        .with(Capability::HDM_COUNT, 1)
        .with(Capability::CXL_RESET_CAPABLE, optional.cxl_reset.into())
        .with(Capability::CXL_RESET_TIMEOUT, 0)
        .with(
            Capability::CXL_RESET_MEM_CLR_CAPABLE,
            (optional.cxl_reset && optional.cxl_reset_mem_clr).into(),
        )
        .with(
            Capability::CACHE_WB_INV_CAPABLE,
            optional.cache_wb_inv.into(),
        );
    DvsecConfig {
        capability,
        capability2: 0,
        capability3: Capability3::default().with(Capability3::VOLATILE_HDM_COLD, 1),
        ranges: [
            Some(RangeInfo {
                size: mem_size,
                active: true,
                media_type: 0,
                memory_class: 0,
            }),
            None,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvsec::CxlDeviceDvsec;

    #[test]
    fn layout_fits_and_caps_follow_the_options() {
        assert_eq!(REG_LOCATOR_OFFSET, 0x13c);
        let plain = dvsec_config(1 << 28, OptionalCaps::default());
        assert!(!plain.capability.is_set(Capability::CXL_RESET_CAPABLE));
        let all = dvsec_config(
            1 << 28,
            OptionalCaps {
                cxl_reset: true,
                cxl_reset_mem_clr: true,
                cache_wb_inv: true,
            },
        );
        assert!(all.capability.is_set(Capability::CXL_RESET_CAPABLE));
        assert!(all.capability.is_set(Capability::CXL_RESET_MEM_CLR_CAPABLE));
        assert_eq!(all.capability.get(Capability::CXL_RESET_TIMEOUT), 0);
        assert!(all.capability.is_set(Capability::CACHE_WB_INV_CAPABLE));
        let d = CxlDeviceDvsec::new(all);
        assert_eq!(d.config().ranges[0].unwrap().size, 1 << 28);
    }
}
