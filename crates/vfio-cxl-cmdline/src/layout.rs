//! The QEMU options for a set of devices: per device a CXL fixed memory
//! window targeting only its own `pxb-cxl` host bridge (with HDM decoders
//! for the firmware pre-commit), one `cxl-rp` root port, and the device
//! (docs/devices/vfio-cxl.md, "Several devices in one VM"). Pure: the
//! devices' facts come in, options go out.

use crate::size;
use crate::sizing::{self, SizingError, Window};

/// Bus numbers between two devices' host bridges (each uses two: its
/// root bus and the root port's secondary bus).
pub const BUS_STEP: u32 = 10;
/// The first host bridge's bus number unless told otherwise, as in
/// docs/install.md: above the buses q35's own root ports use.
pub const DEFAULT_FIRST_BUS: u32 = 12;

/// One device to place: its address and memory size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub bdf: String,
    pub mem_size: u64,
}

/// Where a device goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub bdf: String,
    pub mem_size: u64,
    pub window: Window,
    /// `cxl-fmw.<index>`, the host bridge `cxl.<index + 1>`, `rp<index>`.
    pub index: usize,
    pub bus_nr: u32,
}

impl Placement {
    pub fn host_bridge(&self) -> String {
        format!("cxl.{}", self.index + 1)
    }

    pub fn root_port(&self) -> String {
        format!("rp{}", self.index)
    }

    pub fn device_id(&self) -> String {
        format!("vcxl{}", self.index)
    }
}

/// Why no layout could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    Window { bdf: String, error: SizingError },
    Duplicate { bdf: String },
    TooManyBuses { first: u32, devices: usize },
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Window { bdf, error } => write!(f, "{bdf}: {error}"),
            Self::Duplicate { bdf } => write!(f, "{bdf} is given twice"),
            Self::TooManyBuses { first, devices } => write!(
                f,
                "{devices} host bridges from bus {first} in steps of {BUS_STEP} pass bus 255: give a lower --bus-nr or fewer devices"
            ),
        }
    }
}

/// Places `devices` in order, each with its own window (`forced` or the
/// default size for it) and host bridge from bus `first_bus` on.
pub fn place(
    devices: &[Input],
    forced: Option<u64>,
    first_bus: u32,
) -> Result<Vec<Placement>, LayoutError> {
    let mut out: Vec<Placement> = Vec::new();
    for (index, d) in devices.iter().enumerate() {
        if out.iter().any(|p| p.bdf == d.bdf) {
            return Err(LayoutError::Duplicate { bdf: d.bdf.clone() });
        }
        let window =
            sizing::window_for(d.mem_size, forced).map_err(|error| LayoutError::Window {
                bdf: d.bdf.clone(),
                error,
            })?;
        // The last host bridge's root port takes bus_nr + 1.
        let bus_nr = u32::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(BUS_STEP))
            .and_then(|o| o.checked_add(first_bus))
            .filter(|&b| b < 255)
            .ok_or(LayoutError::TooManyBuses {
                first: first_bus,
                devices: devices.len(),
            })?;
        out.push(Placement {
            bdf: d.bdf.clone(),
            mem_size: d.mem_size,
            window,
            index,
            bus_nr,
        });
    }
    Ok(out)
}

/// How QEMU reaches the devices' IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iommu {
    /// The legacy VFIO group and container (`/dev/vfio/vfio`): QEMU's default.
    Container,
    /// One iommufd (`-object iommufd`) that every device's cdev binds to.
    Iommufd,
}

/// The id of the `-object iommufd` that [`Iommu::Iommufd`] adds.
pub const IOMMUFD_ID: &str = "iommufd0";

/// The options, each as (option, value): one `-M` with every window
/// (QEMU refuses `cxl-fmw.*` spread over several), the iommufd object when
/// asked for, then per device its host bridge, root port and `vfio-cxl`.
pub fn qemu_options(placements: &[Placement], iommu: Iommu) -> Vec<(String, String)> {
    let mut machine = vec!["cxl=on".to_string()];
    for p in placements {
        machine.push(format!("cxl-fmw.{}.targets.0={}", p.index, p.host_bridge()));
        machine.push(format!(
            "cxl-fmw.{}.size={}",
            p.index,
            size::qemu(p.window.size)
        ));
    }
    let mut out = vec![("-M".to_string(), machine.join(","))];
    let backend = match iommu {
        Iommu::Container => String::new(),
        Iommu::Iommufd => {
            out.push(("-object".into(), format!("iommufd,id={IOMMUFD_ID}")));
            format!(",iommufd={IOMMUFD_ID}")
        }
    };
    for p in placements {
        let hb = p.host_bridge();
        let rp = p.root_port();
        out.push((
            "-device".into(),
            format!(
                "pxb-cxl,bus_nr={},bus=pcie.0,id={hb},hdm_for_passthrough=on",
                p.bus_nr
            ),
        ));
        // chassis 0: libvirt numbers its own root ports' chassis from 1.
        out.push((
            "-device".into(),
            format!(
                "cxl-rp,port=0,bus={hb},id={rp},chassis=0,slot={}",
                2 + p.index
            ),
        ));
        out.push((
            "-device".into(),
            format!(
                "vfio-cxl,host={},bus={rp},id={}{backend}",
                p.bdf,
                p.device_id()
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::{GIB, MIB};

    fn input(bdf: &str, mem_size: u64) -> Input {
        Input {
            bdf: bdf.into(),
            mem_size,
        }
    }

    #[test]
    fn one_device_gets_the_four_options_of_docs_install() {
        let p = place(&[input("0000:0d:00.0", 256 * MIB)], None, DEFAULT_FIRST_BUS).unwrap();
        let opts = qemu_options(&p, Iommu::Container);
        let flat: Vec<String> = opts.iter().map(|(o, v)| format!("{o} {v}")).collect();
        assert_eq!(
            flat,
            [
                "-M cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G",
                "-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on",
                "-device cxl-rp,port=0,bus=cxl.1,id=rp0,chassis=0,slot=2",
                "-device vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0",
            ]
        );
    }

    #[test]
    fn several_devices_get_their_own_bridge_port_and_window() {
        let p = place(
            &[
                input("0000:0d:00.0", 256 * MIB),
                input("0000:17:00.0", 16 * GIB),
            ],
            None,
            DEFAULT_FIRST_BUS,
        )
        .unwrap();
        let opts = qemu_options(&p, Iommu::Container);
        assert_eq!(opts.len(), 7);
        assert_eq!(
            opts[0].1,
            "cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G,cxl-fmw.1.targets.0=cxl.2,cxl-fmw.1.size=17G"
        );
        assert_eq!(
            opts[4].1,
            "pxb-cxl,bus_nr=22,bus=pcie.0,id=cxl.2,hdm_for_passthrough=on"
        );
        assert_eq!(opts[5].1, "cxl-rp,port=0,bus=cxl.2,id=rp1,chassis=0,slot=3");
        assert_eq!(opts[6].1, "vfio-cxl,host=0000:17:00.0,bus=rp1,id=vcxl1");
    }

    #[test]
    fn iommufd_adds_one_object_that_every_device_binds_to() {
        let p = place(
            &[
                input("0000:0d:00.0", 256 * MIB),
                input("0000:17:00.0", 256 * MIB),
            ],
            None,
            DEFAULT_FIRST_BUS,
        )
        .unwrap();
        let opts = qemu_options(&p, Iommu::Iommufd);
        let objects: Vec<_> = opts.iter().filter(|(o, _)| o == "-object").collect();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].1, "iommufd,id=iommufd0");
        let vfio: Vec<_> = opts
            .iter()
            .filter(|(_, v)| v.starts_with("vfio-cxl,"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            vfio,
            [
                "vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0,iommufd=iommufd0",
                "vfio-cxl,host=0000:17:00.0,bus=rp1,id=vcxl1,iommufd=iommufd0",
            ]
        );
    }

    #[test]
    fn a_forced_window_applies_to_every_device_and_is_checked_per_device() {
        let p = place(&[input("0000:0d:00.0", 256 * MIB)], Some(4 * GIB), 12).unwrap();
        assert_eq!(
            qemu_options(&p, Iommu::Container)[0].1,
            "cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"
        );
        let e = place(
            &[
                input("0000:0d:00.0", 256 * MIB),
                input("0000:17:00.0", 2 * GIB),
            ],
            Some(GIB),
            12,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "0000:17:00.0: window size 1G is too small for 2 GiB of CXL memory: at least 2G (the device size rounded up to 1 GiB)"
        );
    }

    #[test]
    fn duplicates_and_bus_exhaustion_are_refused() {
        let d = input("0000:0d:00.0", 256 * MIB);
        assert_eq!(
            place(&[d.clone(), d.clone()], None, 12),
            Err(LayoutError::Duplicate {
                bdf: "0000:0d:00.0".into()
            })
        );
        let many: Vec<Input> = (0..3)
            .map(|i| input(&format!("0000:0{i}:00.0"), GIB))
            .collect();
        assert!(place(&many, None, 234).is_ok(), "254 is the last bus_nr");
        assert!(matches!(
            place(&many, None, 235),
            Err(LayoutError::TooManyBuses { .. })
        ));
    }
}
