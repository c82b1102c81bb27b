// SPDX-License-Identifier: GPL-2.0-or-later
//! A minimal CXL RAS Capability Structure (CXL r3.1 §8.2.4.17): status
//! registers that clear on write-one, masks and severities software can
//! set, and an empty header log. It reports no errors by itself; an
//! emulator may raise status bits with [`Ras::raise_uncorrectable`].

/// Uncorrectable Error Status (§8.2.4.17.1), RW1CS.
pub const UNCORRECTABLE_STATUS: u32 = 0x00;
/// Uncorrectable Error Mask (§8.2.4.17.2), RWS.
pub const UNCORRECTABLE_MASK: u32 = 0x04;
/// Uncorrectable Error Severity (§8.2.4.17.3), RWS.
pub const UNCORRECTABLE_SEVERITY: u32 = 0x08;
/// Correctable Error Status (§8.2.4.17.4), RW1CS.
pub const CORRECTABLE_STATUS: u32 = 0x0c;
/// Correctable Error Mask (§8.2.4.17.5), RWS.
pub const CORRECTABLE_MASK: u32 = 0x10;
/// Error Capabilities and Control (§8.2.4.17.6).
pub const CAPABILITY_CONTROL: u32 = 0x14;
/// Header Log (§8.2.4.17.7), 16 dwords, ROS.
pub const HEADER_LOG: u32 = 0x18;
/// Length of the structure (Linux: CXL_RAS_CAPABILITY_LENGTH).
pub const LENGTH: u32 = 0x58;

/// Defined bits of the uncorrectable registers ([16:14] and [11:0]).
pub const UNCORRECTABLE_BITS: u32 = 0x0001_cfff;
/// Defined bits of the correctable registers ([6:0]).
pub const CORRECTABLE_BITS: u32 = 0x0000_007f;

/// The RAS capability's registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ras {
    uncorrectable_status: u32,
    uncorrectable_mask: u32,
    uncorrectable_severity: u32,
    correctable_status: u32,
    correctable_mask: u32,
}

impl Default for Ras {
    fn default() -> Self {
        // Severity defaults to fatal for every defined error.
        Self {
            uncorrectable_status: 0,
            uncorrectable_mask: 0,
            uncorrectable_severity: UNCORRECTABLE_BITS,
            correctable_status: 0,
            correctable_mask: 0,
        }
    }
}

impl Ras {
    pub fn read(&self, offset: u32) -> u32 {
        match offset {
            UNCORRECTABLE_STATUS => self.uncorrectable_status,
            UNCORRECTABLE_MASK => self.uncorrectable_mask,
            UNCORRECTABLE_SEVERITY => self.uncorrectable_severity,
            CORRECTABLE_STATUS => self.correctable_status,
            CORRECTABLE_MASK => self.correctable_mask,
            _ => 0,
        }
    }

    pub fn write(&mut self, offset: u32, value: u32) {
        match offset {
            UNCORRECTABLE_STATUS => self.uncorrectable_status &= !value,
            UNCORRECTABLE_MASK => self.uncorrectable_mask = value & UNCORRECTABLE_BITS,
            UNCORRECTABLE_SEVERITY => self.uncorrectable_severity = value & UNCORRECTABLE_BITS,
            CORRECTABLE_STATUS => self.correctable_status &= !value,
            CORRECTABLE_MASK => self.correctable_mask = value & CORRECTABLE_BITS,
            _ => {}
        }
    }

    /// Records uncorrectable error `bit` (for error-injection tests).
    pub fn raise_uncorrectable(&mut self, bit: u32) {
        self.uncorrectable_status |= (1 << (bit & 31)) & UNCORRECTABLE_BITS;
    }

    /// Conventional reset: the registers are sticky, so nothing changes.
    pub fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_write_one_to_clear_and_masks_keep_defined_bits() {
        let mut r = Ras::default();
        r.raise_uncorrectable(3);
        r.raise_uncorrectable(12); // undefined bit
        assert_eq!(r.read(UNCORRECTABLE_STATUS), 1 << 3);
        r.write(UNCORRECTABLE_STATUS, 0);
        assert_eq!(r.read(UNCORRECTABLE_STATUS), 1 << 3);
        r.write(UNCORRECTABLE_STATUS, 1 << 3);
        assert_eq!(r.read(UNCORRECTABLE_STATUS), 0);
        r.write(CORRECTABLE_MASK, u32::MAX);
        assert_eq!(r.read(CORRECTABLE_MASK), CORRECTABLE_BITS);
        r.write(HEADER_LOG, u32::MAX);
        assert_eq!(r.read(HEADER_LOG), 0);
    }
}
