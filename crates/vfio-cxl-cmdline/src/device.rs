//! What one device must show through the uAPI (docs/uapi.md) before QEMU's
//! `-device vfio-cxl` accepts it, checked on facts already read
//! (`probe.rs` reads them), so that every refusal is tested without a
//! device.

use cxl_regs::hdm::{self, DecoderControl};
use cxl_regs::window::HDM_ALIGN;
use vfio_cxl_uapi::{VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED, VFIO_DEVICE_FLAGS_CXL};

use crate::size;

/// `VFIO_REGION_INFO_FLAG_MMAP` of `<linux/vfio.h>`.
pub const REGION_FLAG_MMAP: u32 = 1 << 2;

/// The component-register region's view of the HDM decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HdmFacts {
    /// From `VFIO_REGION_INFO_CAP_CXL_COMP_REGS`: the BAR and the
    /// decoder block's offset in it, and the block's length.
    pub bar: u32,
    pub offset: u64,
    pub len: u64,
    /// HDM Decoder Capability register and decoder 0's control and size
    /// as the host shows them.
    pub capability: u32,
    pub decoder0_control: u32,
    pub decoder0_size: u64,
}

/// Everything read about one device through VFIO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub bdf: String,
    /// `vfio_device_info.flags`.
    pub device_flags: u32,
    /// `VFIO_DEVICE_INFO_CAP_CXL`'s flags; `None` without that capability.
    pub cxl_flags: Option<u32>,
    /// The CXL_MEM region: (size, flags); `None` without one.
    pub mem: Option<(u64, u32)>,
    /// `None` without a CXL_COMP_REGS region with its geometry capability.
    pub hdm: Option<HdmFacts>,
}

/// A device QEMU can pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CxlDevice {
    pub bdf: String,
    /// Bytes of CXL memory (a non-zero multiple of 256 MiB).
    pub mem_size: u64,
    pub hdm: HdmFacts,
}

impl CxlDevice {
    /// One line for people: size and decoder geometry.
    pub fn describe(&self) -> String {
        let h = &self.hdm;
        let count = hdm::decoder_count_decode(h.capability & 0xf)
            .map_or_else(|| "? decoders".into(), |n| format!("{n} decoder(s)"));
        format!(
            "{}: {} of CXL memory; HDM decoder block at BAR {} + {:#x} ({:#x} bytes, {count}); decoder 0 committed{}, {}",
            self.bdf,
            size::human(self.mem_size),
            h.bar,
            h.offset,
            h.len,
            if DecoderControl(h.decoder0_control).is_set(DecoderControl::LOCK_ON_COMMIT) {
                " and locked"
            } else {
                ""
            },
            size::human(h.decoder0_size),
        )
    }
}

/// Why a device cannot be passed through; each a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    BadAddress { text: String },
    NoSuchDevice { bdf: String },
    WrongDriver { bdf: String, driver: Option<String> },
    Vfio { bdf: String, error: String },
    NotCxl { bdf: String, flags: u32 },
    NoCxlCapability { bdf: String },
    NotCommitted { bdf: String, flags: u32 },
    Decoder0NotCommitted { bdf: String, control: u32 },
    NoMemory { bdf: String },
    MemoryNotUsable { bdf: String, size: u64, flags: u32 },
    NoGeometry { bdf: String },
    GeometryTooShort { bdf: String, len: u64 },
    NoIommufd,
    NoCdev { bdf: String },
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadAddress { text } => write!(
                f,
                "{text:?} is not a PCI address (DDDD:BB:SS.F, e.g. 0000:0d:00.0)"
            ),
            Self::NoSuchDevice { bdf } => {
                write!(f, "{bdf}: no such PCI device (no /sys/bus/pci/devices/{bdf})")
            }
            Self::WrongDriver {
                bdf,
                driver: Some(d),
            } => write!(
                f,
                "{bdf} is bound to {d}, not vfio-cxl-pci (docs/install.md, \"Binding a device\")"
            ),
            Self::WrongDriver { bdf, driver: None } => write!(
                f,
                "{bdf} is bound to no driver, not vfio-cxl-pci (docs/install.md, \"Binding a device\")"
            ),
            Self::Vfio { bdf, error } => write!(f, "{bdf}: cannot open it through VFIO: {error}"),
            Self::NotCxl { bdf, flags } => write!(
                f,
                "{bdf}: VFIO does not flag it CXL (device flags {flags:#x}, no VFIO_DEVICE_FLAGS_CXL)"
            ),
            Self::NoCxlCapability { bdf } => {
                write!(f, "{bdf}: its device info has no VFIO_DEVICE_INFO_CAP_CXL")
            }
            Self::NotCommitted { bdf, flags } => write!(
                f,
                "{bdf}: the host HDM decoder is not firmware-committed (VFIO_DEVICE_INFO_CAP_CXL flags {flags:#x}); vfio-cxl refuses such devices"
            ),
            Self::Decoder0NotCommitted { bdf, control } => write!(
                f,
                "{bdf}: the host HDM decoder 0 reads not committed (control {control:#010x}); vfio-cxl refuses such devices"
            ),
            Self::NoMemory { bdf } => write!(f, "{bdf}: no CXL memory region"),
            Self::MemoryNotUsable { bdf, size, flags } => write!(
                f,
                "{bdf}: the CXL memory region (size {size:#x}, flags {flags:#x}) is not a mappable multiple of 256 MiB"
            ),
            Self::NoGeometry { bdf } => write!(
                f,
                "{bdf}: no CXL component-register region with its decoder geometry (VFIO_REGION_INFO_CAP_CXL_COMP_REGS)"
            ),
            Self::GeometryTooShort { bdf, len } => write!(
                f,
                "{bdf}: the HDM decoder block is {len:#x} bytes, shorter than one decoder's ({:#x})",
                hdm::block_len(1)
            ),
            Self::NoIommufd => write!(
                f,
                "--iommufd: there is no /dev/iommu (a kernel without CONFIG_IOMMUFD, or iommufd not loaded)"
            ),
            Self::NoCdev { bdf } => write!(
                f,
                "--iommufd: {bdf} has no VFIO device cdev (no /sys/bus/pci/devices/{bdf}/vfio-dev: a kernel without CONFIG_VFIO_DEVICE_CDEV)"
            ),
        }
    }
}

/// `0d:00.0` -> `0000:0d:00.0`, lower case; anything that is not
/// `DDDD:BB:SS.F` (hex, slot < 32, function 0-7) is refused.
pub fn normalize_bdf(text: &str) -> Result<String, DeviceError> {
    let full = if text.matches(':').count() == 1 {
        format!("0000:{text}")
    } else {
        text.to_string()
    };
    let bad = || DeviceError::BadAddress { text: text.into() };
    let (dom, rest) = full.split_once(':').ok_or_else(bad)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (slot, func) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |v: &str, n: usize| v.len() == n && v.bytes().all(|c| c.is_ascii_hexdigit());
    let slot_ok = hex(slot, 2) && u8::from_str_radix(slot, 16).is_ok_and(|v| v < 32);
    let func_ok = func.len() == 1 && func.as_bytes()[0].is_ascii_digit() && func < "8";
    if !(hex(dom, 4) && hex(bus, 2) && slot_ok && func_ok) {
        return Err(bad());
    }
    Ok(full.to_ascii_lowercase())
}

/// The checks QEMU's `vfio-cxl` makes at realize (docs/devices/vfio-cxl.md,
/// "Realize"), plus decoder 0 as the host shows it.
pub fn validate(f: DeviceFacts) -> Result<CxlDevice, DeviceError> {
    let bdf = f.bdf;
    if f.device_flags & VFIO_DEVICE_FLAGS_CXL == 0 {
        return Err(DeviceError::NotCxl {
            bdf,
            flags: f.device_flags,
        });
    }
    let Some(cxl_flags) = f.cxl_flags else {
        return Err(DeviceError::NoCxlCapability { bdf });
    };
    if cxl_flags & VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED == 0 {
        return Err(DeviceError::NotCommitted {
            bdf,
            flags: cxl_flags,
        });
    }
    let Some((mem_size, mem_flags)) = f.mem else {
        return Err(DeviceError::NoMemory { bdf });
    };
    if mem_size == 0 || mem_size % HDM_ALIGN != 0 || mem_flags & REGION_FLAG_MMAP == 0 {
        return Err(DeviceError::MemoryNotUsable {
            bdf,
            size: mem_size,
            flags: mem_flags,
        });
    }
    let Some(hdm) = f.hdm else {
        return Err(DeviceError::NoGeometry { bdf });
    };
    if hdm.len < u64::from(hdm::block_len(1)) {
        return Err(DeviceError::GeometryTooShort { bdf, len: hdm.len });
    }
    if !DecoderControl(hdm.decoder0_control).is_set(DecoderControl::COMMITTED) {
        return Err(DeviceError::Decoder0NotCommitted {
            bdf,
            control: hdm.decoder0_control,
        });
    }
    Ok(CxlDevice { bdf, mem_size, hdm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::MIB;

    const BDF: &str = "0000:0d:00.0";

    /// What vfio-cxl-pci shows for the chain's cxl-accel (256 MiB, one
    /// decoder committed and locked: control 0x700... with IG 0).
    pub(crate) fn good() -> DeviceFacts {
        DeviceFacts {
            bdf: BDF.into(),
            device_flags: VFIO_DEVICE_FLAGS_CXL | 0x2 | 0x8,
            cxl_flags: Some(VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED),
            mem: Some((256 * MIB, 0x7)),
            hdm: Some(HdmFacts {
                bar: 0,
                offset: 0x1000,
                len: 0x30,
                capability: 0,
                decoder0_control: 0x700,
                decoder0_size: 256 * MIB,
            }),
        }
    }

    #[test]
    fn a_committed_device_is_accepted_and_described() {
        let d = validate(good()).unwrap();
        assert_eq!(d.mem_size, 256 * MIB);
        assert_eq!(
            d.describe(),
            "0000:0d:00.0: 256 MiB of CXL memory; HDM decoder block at BAR 0 + 0x1000 (0x30 bytes, 1 decoder(s)); decoder 0 committed and locked, 256 MiB"
        );
    }

    #[test]
    fn each_refusal_is_one_line_naming_the_device() {
        let with = |change: fn(&mut DeviceFacts)| {
            let mut f = good();
            change(&mut f);
            validate(f).unwrap_err()
        };
        let cases: Vec<(DeviceError, &str)> = vec![
            (
                with(|f| f.device_flags &= !VFIO_DEVICE_FLAGS_CXL),
                "VFIO does not flag it CXL",
            ),
            (
                with(|f| f.cxl_flags = None),
                "no VFIO_DEVICE_INFO_CAP_CXL",
            ),
            (
                with(|f| f.cxl_flags = Some(0)),
                "the host HDM decoder is not firmware-committed (VFIO_DEVICE_INFO_CAP_CXL flags 0x0)",
            ),
            (with(|f| f.mem = None), "no CXL memory region"),
            (
                with(|f| f.mem = Some((0xfff_f000, 0x7))),
                "is not a mappable multiple of 256 MiB",
            ),
            (
                with(|f| f.mem = Some((256 * MIB, 0x3))),
                "flags 0x3) is not a mappable",
            ),
            (with(|f| f.hdm = None), "no CXL component-register region"),
            (
                with(|f| f.hdm.as_mut().unwrap().len = 0x10),
                "is 0x10 bytes, shorter than one decoder's (0x30)",
            ),
            (
                with(|f| f.hdm.as_mut().unwrap().decoder0_control = 0x800),
                "decoder 0 reads not committed (control 0x00000800)",
            ),
        ];
        for (e, want) in cases {
            let line = e.to_string();
            assert!(line.contains(want), "{line:?} lacks {want:?}");
            assert!(line.starts_with(BDF), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn wrong_drivers_are_named() {
        let e = DeviceError::WrongDriver {
            bdf: BDF.into(),
            driver: Some("pcieport".into()),
        };
        assert!(e
            .to_string()
            .starts_with("0000:0d:00.0 is bound to pcieport, not vfio-cxl-pci"));
        let e = DeviceError::WrongDriver {
            bdf: BDF.into(),
            driver: None,
        };
        assert!(e.to_string().contains("bound to no driver"));
    }

    #[test]
    fn addresses_are_normalized_or_refused() {
        assert_eq!(normalize_bdf("0d:00.0").unwrap(), BDF);
        assert_eq!(normalize_bdf("0001:3B:1f.7").unwrap(), "0001:3b:1f.7");
        for bad in [
            "",
            "0d:00",
            "0d.00.0",
            "0000:0d:20.0",
            "0000:0d:00.8",
            "zz:00.0",
            "0000:0d:00.0x",
        ] {
            let e = normalize_bdf(bad).unwrap_err().to_string();
            assert!(e.contains("not a PCI address"), "{bad}: {e}");
        }
    }
}
