// SPDX-License-Identifier: GPL-2.0-or-later
//! `--broken KIND`: a device that breaks the uAPI contract (docs/uapi.md)
//! in one named way, so a VMM's refusal of malformed devices can be
//! tested. Everything else about the device stays as in the contract.

/// The one way the device is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The host decoder is not firmware-committed: the device-info
    /// capability's `flags` lack `HOST_FIRMWARE_COMMITTED`.
    NotCommitted,
    /// `VFIO_DEVICE_FLAGS_CXL` set, but no `VFIO_DEVICE_INFO_CAP_CXL`.
    NoCxlCap,
    /// No `CXL_MEM` region: its index reports an empty region without a
    /// type capability.
    NoCxlMem,
    /// `CXL_MEM` 4 KiB short of the memory size: not a multiple of 256 MiB.
    MemUnaligned,
    /// The component-register geometry capability places the decoder
    /// block past the end of its BAR.
    BadGeometry,
    /// The device-info capability chain loops: a capability before the
    /// CXL one names itself as the next (a client that trusts `next`
    /// walks forever).
    CapLoop,
}

impl Broken {
    /// Every kind, with its command-line name.
    pub const ALL: [(&'static str, Broken); 6] = [
        ("not-committed", Broken::NotCommitted),
        ("no-cxl-cap", Broken::NoCxlCap),
        ("no-cxl-mem", Broken::NoCxlMem),
        ("mem-unaligned", Broken::MemUnaligned),
        ("bad-geometry", Broken::BadGeometry),
        ("cap-loop", Broken::CapLoop),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, b)| b)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(n, _)| n)
    }

    /// The names, for usage and error texts.
    pub fn names() -> String {
        Self::ALL.map(|(n, _)| n).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, b) in Broken::ALL {
            assert_eq!(Broken::parse(n), Some(b));
            assert_eq!(b.name(), n);
        }
        assert_eq!(Broken::parse("fine"), None);
        assert!(Broken::names().contains("bad-geometry"));
    }
}
