// SPDX-License-Identifier: GPL-2.0-or-later

//! `-device vfio-user-cxl`: a CXL Type-2 device served over vfio-user by
//! a server with the uAPI of `vfio-cxl-pci`, a subclass of
//! `vfio-user-pci`. Everything but the transport's `VFIO_DEVICE_GET_INFO`
//! is shared with `vfio-cxl` (crate `vfio_cxl`); this crate is linked only
//! when QEMU has the vfio-user client.

use std::{ffi::CStr, sync::OnceLock};

use common::uninit_field_mut;
use hwcore::{DeviceImpl, DeviceState, ResetType, ResettablePhasesImpl};
use pci::{PCIDevice, PCIDeviceClass, PCIDeviceImpl, PciIds, INTERFACE_CXL_DEVICE};
use qom::{prelude::*, InterfaceList, ObjectImpl, ParentField, ParentInit};
use system::{MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{Error, Result};
use vfio_cxl::{
    bindings,
    device::{self, CxlVfio, CxlVfioImpl, ParentMethods, VfioPciDeviceBase, VfioUserPciDevice},
    info::DeviceInfoBuf,
};

pub const TYPE_VFIO_USER_CXL: &CStr = c"vfio-user-cxl";

/// State of a `vfio-user-cxl` device.
#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct VfioUserCxlDevice {
    parent_obj: ParentField<VfioUserPciDevice>,
    /// Property `precommit`: firmware commits the decoders at reset.
    #[property(default = true)]
    precommit: bool,
    /// The overlay of the emulated decoders (device::CxlVfioImpl::hdm).
    hdm: MemoryRegion,
    cxl: CxlVfio,
}

qom_isa!(
    VfioUserCxlDevice: VfioUserPciDevice,
    VfioPciDeviceBase,
    PCIDevice,
    DeviceState,
    Object
);

// SAFETY: the type is a vfio-user-pci subclass without its own class
// struct, and its TYPE_NAME is unique.
unsafe impl ObjectType for VfioUserCxlDevice {
    type Class = <VfioUserPciDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = TYPE_VFIO_USER_CXL;
}

impl ObjectImpl for VfioUserCxlDevice {
    type ParentType = VfioUserPciDevice;

    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
    const INTERFACES: InterfaceList = qom::interfaces![INTERFACE_CXL_DEVICE];
}

/// The parent's VMState (vfio-user-pci's) stays; realize adds a migration
/// blocker.
impl DeviceImpl for VfioUserCxlDevice {}

impl ResettablePhasesImpl for VfioUserCxlDevice {
    const HOLD: Option<fn(&Self, ResetType)> = Some(device::reset_hold::<Self>);
    const EXIT: Option<fn(&Self, ResetType)> = Some(device::reset_exit::<Self>);
}

impl PCIDeviceImpl for VfioUserCxlDevice {
    const PCI_REALIZE: Option<fn(&Self) -> Result<()>> = Some(device::realize::<Self>);
    const PCI_EXIT: Option<fn(&Self)> = Some(device::exit::<Self>);
    const CONFIG_WRITE: Option<fn(&Self, u32, u32, u32)> = Some(device::config_write::<Self>);
    /// vfio-user-pci's: the function's IDs come from the server.
    const IDS: Option<PciIds> = None;
}

static PARENT: OnceLock<ParentMethods> = OnceLock::new();

impl cxl_firmware::RoutesChanged for VfioUserCxlDevice {
    fn routes_changed(&self) {
        device::routes_changed(self);
    }
}

impl CxlVfioImpl for VfioUserCxlDevice {
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

    /// QEMU's generic vfio-user client, which honours the caller's argsz.
    fn get_device_info(&self, buf: &mut DeviceInfoBuf) -> Result<()> {
        let vdev = self.upcast::<VfioPciDeviceBase>().as_mut_ptr();
        // SAFETY: the parent realized the device (connected to the
        // server); `buf` holds the argsz it says.
        unsafe {
            Error::with_errp(|errp| {
                bindings::vfio_user_get_device_info((*vdev).vbasedev.proxy, buf.as_mut_ptr(), errp)
            })
        }
        .and_then(|ok| {
            util::ensure!(ok, "VFIO_DEVICE_GET_INFO failed");
            Ok(())
        })
    }
}

impl VfioUserCxlDevice {
    fn class_init(klass: &mut PCIDeviceClass) {
        device::class_init::<Self>(klass, c"vfio-user assignment of a CXL Type-2 device");
    }

    unsafe fn init(mut this: ParentInit<Self>) {
        static HDM_OPS: MemoryRegionOps<VfioUserCxlDevice> =
            MemoryRegionOpsBuilder::<VfioUserCxlDevice>::new()
                .read(&device::hdm_read::<VfioUserCxlDevice>)
                .write(&device::hdm_write::<VfioUserCxlDevice>)
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
