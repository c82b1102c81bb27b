//! How large each device's CXL fixed memory window must be.
//!
//! QEMU lays the windows out one after another from a 256 MiB-aligned
//! address it picks (after RAM and the CXL host registers), so a window's
//! base is only known to be 256 MiB aligned. The device's firmware
//! pre-commit (`precommit=on`, `cxl_regs::window::HpaRange::precommit_range`)
//! puts the memory at the first 1 GiB-aligned place in the window where
//! it fits, else at the window's start. For 1 GiB mappings the window
//! must hold a 1 GiB-aligned copy of the memory wherever its base lands.

use cxl_regs::window::{HDM_ALIGN, PRECOMMIT_ALIGN};

use crate::size;

/// Why a window size cannot be used for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizingError {
    /// QEMU wants window sizes in multiples of 256 MiB.
    NotAligned { window: u64 },
    /// Smaller than the device memory rounded up to 1 GiB.
    TooSmall { window: u64, device: u64, min: u64 },
    /// No u64 holds the window.
    Overflow { device: u64 },
}

impl std::fmt::Display for SizingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::NotAligned { window } => write!(
                f,
                "window size {} is not a multiple of 256 MiB (QEMU's cxl-fmw granularity)",
                size::qemu(window)
            ),
            Self::TooSmall {
                window,
                device,
                min,
            } => write!(
                f,
                "window size {} is too small for {} of CXL memory: at least {} (the device size rounded up to 1 GiB)",
                size::qemu(window),
                size::human(device),
                size::qemu(min)
            ),
            Self::Overflow { device } => {
                write!(f, "no window can hold {device:#x} bytes of CXL memory")
            }
        }
    }
}

/// The smallest window accepted: the device memory rounded up to 1 GiB.
pub fn min_window(device: u64) -> Result<u64, SizingError> {
    device
        .checked_next_multiple_of(PRECOMMIT_ALIGN)
        .ok_or(SizingError::Overflow { device })
}

/// The window printed by default: the smallest multiple of 1 GiB that
/// holds a 1 GiB-aligned copy of the device memory whatever the window's
/// 256 MiB-aligned base (at most 768 MiB are skipped to align).
pub fn default_window(device: u64) -> Result<u64, SizingError> {
    device
        .checked_add(PRECOMMIT_ALIGN - HDM_ALIGN)
        .and_then(|s| s.checked_next_multiple_of(PRECOMMIT_ALIGN))
        .ok_or(SizingError::Overflow { device })
}

/// The window for a device: `forced` if the device fits it, else the
/// default. Also says whether a 1 GiB-aligned placement is guaranteed.
pub fn window_for(device: u64, forced: Option<u64>) -> Result<Window, SizingError> {
    let default = default_window(device)?;
    let Some(window) = forced else {
        return Ok(Window {
            size: default,
            aligned_anywhere: true,
        });
    };
    if window % HDM_ALIGN != 0 || window == 0 {
        return Err(SizingError::NotAligned { window });
    }
    let min = min_window(device)?;
    if window < min {
        return Err(SizingError::TooSmall {
            window,
            device,
            min,
        });
    }
    Ok(Window {
        size: window,
        aligned_anywhere: window >= default,
    })
}

/// A chosen window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub size: u64,
    /// Whether the pre-commit lands 1 GiB-aligned whatever the window's
    /// base; a smaller forced window depends on where QEMU puts it.
    pub aligned_anywhere: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::{GIB, MIB};
    use cxl_regs::window::HpaRange;

    /// Every 256 MiB-aligned base a window can get, modulo 1 GiB, around
    /// the place QEMU puts the first window (4 GiB + 256 MiB for a guest
    /// with all RAM below 4 GiB).
    fn bases() -> impl Iterator<Item = u64> {
        (0..4).map(|phase| 0x1_0000_0000 + phase * HDM_ALIGN)
    }

    /// Where QEMU's pre-commit (the same function) puts the memory.
    fn placed(base: u64, window: u64, device: u64) -> HpaRange {
        HpaRange::new(base, window).precommit_range(device)
    }

    #[test]
    fn the_default_window_gives_a_1g_aligned_placement_wherever_it_lands() {
        for device in (1..=64).map(|n| n * HDM_ALIGN) {
            let w = default_window(device).unwrap();
            assert_eq!(w % GIB, 0, "{device:#x}: a whole number of GiB");
            assert!(w >= min_window(device).unwrap());
            for base in bases() {
                let r = placed(base, w, device);
                assert_eq!(
                    r.base % GIB,
                    0,
                    "device {device:#x} window {w:#x} at {base:#x}"
                );
                assert!(HpaRange::new(base, w).contains_range(&r));
            }
        }
    }

    #[test]
    fn the_default_window_is_the_smallest_that_does() {
        for device in (1..=64).map(|n| n * HDM_ALIGN) {
            let smaller = default_window(device).unwrap() - GIB;
            if smaller < device {
                continue;
            }
            assert!(
                bases().any(|b| placed(b, smaller, device).base % GIB != 0),
                "device {device:#x}: {smaller:#x} would have done"
            );
        }
    }

    #[test]
    fn known_sizes() {
        for (device, default, min) in [
            (256 * MIB, GIB, GIB),
            (512 * MIB, 2 * GIB, GIB),
            (GIB, 2 * GIB, GIB),
            (1280 * MIB, 2 * GIB, 2 * GIB),
            (16 * GIB, 17 * GIB, 16 * GIB),
        ] {
            assert_eq!(default_window(device), Ok(default), "{device:#x}");
            assert_eq!(min_window(device), Ok(min), "{device:#x}");
        }
    }

    #[test]
    fn forced_windows_are_checked() {
        let d = 256 * MIB;
        assert_eq!(
            window_for(d, None),
            Ok(Window {
                size: GIB,
                aligned_anywhere: true
            })
        );
        assert_eq!(
            window_for(d, Some(4 * GIB)),
            Ok(Window {
                size: 4 * GIB,
                aligned_anywhere: true
            })
        );
        let e = window_for(d, Some(256 * MIB)).unwrap_err();
        assert_eq!(
            e,
            SizingError::TooSmall {
                window: 256 * MIB,
                device: d,
                min: GIB
            }
        );
        assert_eq!(
            e.to_string(),
            "window size 256M is too small for 256 MiB of CXL memory: at least 1G (the device size rounded up to 1 GiB)"
        );
        assert_eq!(
            window_for(d, Some(300 * MIB)),
            Err(SizingError::NotAligned { window: 300 * MIB })
        );
        assert_eq!(
            window_for(d, Some(0)),
            Err(SizingError::NotAligned { window: 0 })
        );
        // 1 GiB for 1 GiB of memory: accepted, 1 GiB-aligned only if
        // QEMU happens to place the window so.
        assert_eq!(
            window_for(GIB, Some(GIB)),
            Ok(Window {
                size: GIB,
                aligned_anywhere: false
            })
        );
        assert!(matches!(
            window_for(u64::MAX - 5, None),
            Err(SizingError::Overflow { .. })
        ));
    }
}
