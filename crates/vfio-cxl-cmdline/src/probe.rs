//! Reads a device's facts: its driver from sysfs, then the uAPI through
//! kernel VFIO (the opener shared with uapi-check, `vfio_cxl_uapi::vfio`).
//! The device is only read: no region is mapped or written.

use std::path::Path;

use cxl_regs::hdm;
use vfio_cxl_uapi::vfio::{Device, RegionInfo, REGION_INFO_LEN};
use vfio_cxl_uapi::{
    caps, VFIO_DEVICE_INFO_CAP_CXL, VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
    VFIO_REGION_SUBTYPE_CXL_COMP_REGS, VFIO_REGION_SUBTYPE_CXL_MEM,
};

use crate::device::{DeviceError, DeviceFacts, HdmFacts};
use crate::layout::Iommu;

/// The host driver a device must be bound to.
pub const HOST_DRIVER: &str = "vfio-cxl-pci";

/// `sizeof(struct vfio_device_info)`: where its capability chain may start.
const DEVICE_INFO_LEN: usize = 24;

/// The driver `bdf` is bound to under `sys` (normally `/sys`), `None`
/// when unbound; an error when there is no such device.
pub fn driver(sys: &Path, bdf: &str) -> Result<Option<String>, DeviceError> {
    let dev = sys.join("bus/pci/devices").join(bdf);
    if !dev.exists() {
        return Err(DeviceError::NoSuchDevice { bdf: bdf.into() });
    }
    Ok(std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|l| l.file_name().and_then(|n| n.to_str()).map(str::to_string)))
}

/// Refuses a device that is missing or bound to another driver.
pub fn check_bound(sys: &Path, bdf: &str) -> Result<(), DeviceError> {
    match driver(sys, bdf)? {
        Some(d) if d == HOST_DRIVER => Ok(()),
        driver => Err(DeviceError::WrongDriver {
            bdf: bdf.into(),
            driver,
        }),
    }
}

/// Refuses `--iommufd` where QEMU could not use it: no `/dev/iommu`
/// under `dev`, or `bdf` without a VFIO cdev under `sys`
/// (`.../vfio-dev/vfioN`, which QEMU opens instead of the group).
pub fn check_iommufd(sys: &Path, dev: &Path, bdf: &str) -> Result<(), DeviceError> {
    if !dev.join("iommu").exists() {
        return Err(DeviceError::NoIommufd);
    }
    let cdevs = sys.join("bus/pci/devices").join(bdf).join("vfio-dev");
    let has_cdev = std::fs::read_dir(cdevs).is_ok_and(|mut d| {
        d.any(|e| {
            e.is_ok_and(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("vfio"))
            })
        })
    });
    if !has_cdev {
        return Err(DeviceError::NoCdev { bdf: bdf.into() });
    }
    Ok(())
}

/// Opens `bdf` through VFIO the way QEMU will (`iommu`: the group and
/// container, or the cdev and an iommufd) and reads what
/// [`crate::device::validate`] checks.
pub fn read(bdf: &str, iommu: Iommu) -> Result<DeviceFacts, DeviceError> {
    let vfio = |e: &dyn std::fmt::Display| DeviceError::Vfio {
        bdf: bdf.into(),
        error: e.to_string(),
    };
    let dev = match iommu {
        Iommu::Container => Device::open(bdf),
        Iommu::Iommufd => Device::open_iommufd(bdf),
    }
    .map_err(|e| vfio(&e))?;
    let info = dev.info().map_err(|e| vfio(&e))?;
    let cxl_flags = caps::find(
        &info.raw,
        DEVICE_INFO_LEN,
        info.cap_offset,
        VFIO_DEVICE_INFO_CAP_CXL,
    )
    .map_err(|e| vfio(&e))?
    .map(|cap| caps::device_cxl(&info.raw, cap).map(|c| c.flags))
    .transpose()
    .map_err(|e| vfio(&e))?;
    let mem = dev
        .find_cxl_region(&info, VFIO_REGION_SUBTYPE_CXL_MEM)
        .map_err(|e| vfio(&e))?
        .map(|r| (r.size, r.flags));
    let hdm = match dev
        .find_cxl_region(&info, VFIO_REGION_SUBTYPE_CXL_COMP_REGS)
        .map_err(|e| vfio(&e))?
    {
        Some(r) => read_hdm(&dev, &r).map_err(|e| vfio(&e))?,
        None => None,
    };
    Ok(DeviceFacts {
        bdf: bdf.into(),
        device_flags: info.flags,
        cxl_flags,
        mem,
        hdm,
    })
}

/// The geometry capability and decoder 0 of the component-register
/// region; `None` without the capability.
fn read_hdm(dev: &Device, r: &RegionInfo) -> Result<Option<HdmFacts>, String> {
    let Some(cap) = caps::find(
        &r.raw,
        REGION_INFO_LEN,
        r.cap_offset,
        VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
    )
    .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let geo = caps::cxl_comp_regs(&r.raw, cap).map_err(|e| e.to_string())?;
    // Only aligned dwords inside the region may be read (docs/uapi.md).
    let dword = |off: u32| -> Result<u32, String> {
        if u64::from(off) + 4 > r.size {
            return Ok(0);
        }
        let mut b = [0u8; 4];
        dev.pread(&mut b, r.offset + u64::from(off))
            .map_err(|e| format!("reading the HDM decoder register at {off:#x}: {e}"))?;
        Ok(u32::from_le_bytes(b))
    };
    let size = u64::from(dword(hdm::size_low(0))? & 0xf000_0000)
        | u64::from(dword(hdm::size_high(0))?) << 32;
    Ok(Some(HdmFacts {
        bar: geo.bar,
        offset: geo.offset,
        len: geo.size,
        capability: dword(hdm::CAPABILITY)?,
        decoder0_control: dword(hdm::control(0))?,
        decoder0_size: size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree with one device bound to `driver` (or none).
    fn sysfs(bdf: &str, driver: Option<&str>) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("bus/pci/devices").join(bdf);
        std::fs::create_dir_all(&dev).unwrap();
        if let Some(d) = driver {
            let target = t.path().join("bus/pci/drivers").join(d);
            std::fs::create_dir_all(&target).unwrap();
            symlink(&target, dev.join("driver")).unwrap();
        }
        t
    }

    #[test]
    fn iommufd_needs_dev_iommu_and_the_device_cdev() {
        let bdf = "0000:0d:00.0";
        let sys = sysfs(bdf, Some(HOST_DRIVER));
        let dev = tempfile::tempdir().unwrap();
        assert_eq!(
            check_iommufd(sys.path(), dev.path(), bdf),
            Err(DeviceError::NoIommufd)
        );
        std::fs::write(dev.path().join("iommu"), b"").unwrap();
        assert_eq!(
            check_iommufd(sys.path(), dev.path(), bdf),
            Err(DeviceError::NoCdev { bdf: bdf.into() })
        );
        let cdev = sys
            .path()
            .join("bus/pci/devices")
            .join(bdf)
            .join("vfio-dev");
        std::fs::create_dir_all(&cdev).unwrap();
        assert_eq!(
            check_iommufd(sys.path(), dev.path(), bdf),
            Err(DeviceError::NoCdev { bdf: bdf.into() })
        );
        std::fs::create_dir(cdev.join("vfio0")).unwrap();
        assert_eq!(check_iommufd(sys.path(), dev.path(), bdf), Ok(()));
    }

    #[test]
    fn the_binding_is_read_from_sysfs() {
        let bdf = "0000:0d:00.0";
        let t = sysfs(bdf, Some(HOST_DRIVER));
        assert_eq!(check_bound(t.path(), bdf), Ok(()));
        assert_eq!(
            check_bound(t.path(), "0000:0e:00.0"),
            Err(DeviceError::NoSuchDevice {
                bdf: "0000:0e:00.0".into()
            })
        );
        let t = sysfs(bdf, Some("pcieport"));
        assert_eq!(
            check_bound(t.path(), bdf),
            Err(DeviceError::WrongDriver {
                bdf: bdf.into(),
                driver: Some("pcieport".into())
            })
        );
        let t = sysfs(bdf, None);
        assert_eq!(
            check_bound(t.path(), bdf),
            Err(DeviceError::WrongDriver {
                bdf: bdf.into(),
                driver: None
            })
        );
    }
}
