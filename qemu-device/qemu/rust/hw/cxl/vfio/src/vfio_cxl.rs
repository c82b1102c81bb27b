// SPDX-License-Identifier: GPL-2.0-or-later

//! `-device vfio-cxl`: a CXL Type-2 device bound to `vfio-cxl-pci` on the
//! host (kernel VFIO), a subclass of `vfio-pci`.

use std::{ffi::CStr, sync::OnceLock};

use common::uninit_field_mut;
use hwcore::{DeviceImpl, DeviceState, ResetType, ResettablePhasesImpl};
use pci::{PCIDevice, PCIDeviceClass, PCIDeviceImpl, PciIds, INTERFACE_CXL_DEVICE};
use qom::{prelude::*, InterfaceList, ObjectImpl, ParentField, ParentInit};
use system::{MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{Error, Result};

use crate::{
    bindings,
    device::{self, CxlVfio, CxlVfioImpl, ParentMethods, VfioPciDevice, VfioPciDeviceBase},
    info::DeviceInfoBuf,
};

pub const TYPE_VFIO_CXL: &CStr = c"vfio-cxl";

/// State of a `vfio-cxl` device.
#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct VfioCxlDevice {
    parent_obj: ParentField<VfioPciDevice>,
    /// Property `precommit`: firmware commits the decoders at reset.
    #[property(default = true)]
    precommit: bool,
    /// The overlay of the emulated decoders (device::CxlVfioImpl::hdm).
    hdm: MemoryRegion,
    cxl: CxlVfio,
}

qom_isa!(VfioCxlDevice: VfioPciDevice, VfioPciDeviceBase, PCIDevice, DeviceState, Object);

// SAFETY: the type is a vfio-pci subclass without its own class struct,
// and its TYPE_NAME is unique.
unsafe impl ObjectType for VfioCxlDevice {
    type Class = <VfioPciDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = TYPE_VFIO_CXL;
}

impl ObjectImpl for VfioCxlDevice {
    type ParentType = VfioPciDevice;

    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
    const INTERFACES: InterfaceList = qom::interfaces![INTERFACE_CXL_DEVICE];
}

/// The parent's VMState (vfio-pci's) stays; realize adds a migration
/// blocker.
impl DeviceImpl for VfioCxlDevice {}

impl ResettablePhasesImpl for VfioCxlDevice {
    const HOLD: Option<fn(&Self, ResetType)> = Some(device::reset_hold::<Self>);
    const EXIT: Option<fn(&Self, ResetType)> = Some(device::reset_exit::<Self>);
}

impl PCIDeviceImpl for VfioCxlDevice {
    const PCI_REALIZE: Option<fn(&Self) -> Result<()>> = Some(device::realize::<Self>);
    const PCI_EXIT: Option<fn(&Self)> = Some(device::exit::<Self>);
    const CONFIG_WRITE: Option<fn(&Self, u32, u32, u32)> = Some(device::config_write::<Self>);
    /// vfio-pci's: the function's IDs come from the host device.
    const IDS: Option<PciIds> = None;
}

static PARENT: OnceLock<ParentMethods> = OnceLock::new();

impl cxl_firmware::RoutesChanged for VfioCxlDevice {
    fn routes_changed(&self) {
        device::routes_changed(self);
    }
}

impl CxlVfioImpl for VfioCxlDevice {
    fn parent_methods() -> &'static OnceLock<ParentMethods> {
        &PARENT
    }

    fn cxl(&self) -> &CxlVfio {
        &self.cxl
    }

    fn hdm(&self) -> &MemoryRegion {
        &self.hdm
    }

    fn precommit(&self) -> bool {
        self.precommit
    }

    /// An ioctl on the device fd (hw/vfio/cxl.c).
    fn get_device_info(&self, buf: &mut DeviceInfoBuf) -> Result<()> {
        let vdev = self.upcast::<VfioPciDeviceBase>().as_mut_ptr();
        // SAFETY: the parent realized the device (its fd is open); `buf`
        // holds the argsz it says.
        unsafe {
            Error::with_errp(|errp| {
                bindings::vfio_cxl_kernel_get_device_info(
                    std::ptr::addr_of_mut!((*vdev).vbasedev),
                    buf.as_mut_ptr(),
                    errp,
                )
            })
        }
        .and_then(|ok| {
            util::ensure!(ok, "VFIO_DEVICE_GET_INFO failed");
            Ok(())
        })
    }
}

impl VfioCxlDevice {
    fn class_init(klass: &mut PCIDeviceClass) {
        device::class_init::<Self>(
            klass,
            c"VFIO-based PCI device assignment of a CXL Type-2 device",
        );
    }

    unsafe fn init(mut this: ParentInit<Self>) {
        static HDM_OPS: MemoryRegionOps<VfioCxlDevice> =
            MemoryRegionOpsBuilder::<VfioCxlDevice>::new()
                .read(&device::hdm_read::<VfioCxlDevice>)
                .write(&device::hdm_write::<VfioCxlDevice>)
                .little_endian()
                .valid_sizes(4, 8)
                .impl_sizes(4, 8)
                .build();

        MemoryRegion::init_io(
            &mut uninit_field_mut!(*this, hdm),
            &HDM_OPS,
            "vfio-cxl-hdm-decoders",
            0,
        );
        CxlVfio::init(&mut uninit_field_mut!(*this, cxl));
    }
}
