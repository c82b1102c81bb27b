// SPDX-License-Identifier: GPL-2.0-or-later

//! The cxl-accel device: QOM type, PCI config space, component register
//! BAR, reset-time firmware commit and the direct mapping of device memory
//! into the CXL Fixed Memory Window while HDM decoder 0 is committed.

use std::ffi::{c_char, CStr};

use bql::BqlRefCell;
use common::uninit_field_mut;
use cxl_firmware::{
    platform::{unwatch_routes, watch_routes, RoutesChanged},
    Endpoint, HdmMemory, MemoryRegionExt, MemoryTrace,
};
use cxl_regs::{
    component::{self, ComponentRegisters},
    dvsec::{self, Control, CxlDeviceDvsec, DvsecEvent, DVSEC_LENGTH, RANGE_ALIGN},
    hdm::HdmConfig,
    window::HpaRange,
};
use hwcore::{DeviceImpl, DeviceState, QDevProp, ResetType, ResettablePhasesImpl};
use migration::{VMStateDescription, VMStateDescriptionBuilder};
use pci::{
    PCIDevice, PCIDeviceClass, PCIDeviceImpl, PCIDeviceMethods, PciIds, BAR_MEM_TYPE_64,
    INTERFACE_CXL_DEVICE, INTERFACE_PCIE_DEVICE,
};
use qom::{prelude::*, InterfaceList, ObjectImpl, ParentField, ParentInit};
use system::{bindings::hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{ensure, Result};

use crate::{bindings, config, mem_clear};

::trace::include_trace!("hw_mem");

/// Device ID allocated in QEMU's PCI ID space (docs/specs/pci-ids.rst).
const DEVICE_ID: u16 = pci::bindings::PCI_DEVICE_ID_REDHAT_CXL_ACCEL as u16;

/// Register state: everything the guest can change, and the memory path
/// that follows it.
struct AccelRegs {
    dvsec: CxlDeviceDvsec,
    component: ComponentRegisters,
    memory: HdmMemory,
}

/// State of a cxl-accel device.
#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct CxlAccelState {
    parent_obj: ParentField<PCIDevice>,
    /// BAR 0: the component register block.
    component_bar: MemoryRegion,
    /// Alias of the memory backend, mapped into a CFMW on commit.
    hdm_alias: MemoryRegion,
    /// Property `memdev`: link to the memory backend.
    #[property(rename = "memdev")]
    memdev: BackendLink,
    /// Property `precommit`: firmware commits the decoders at reset.
    #[property(default = true)]
    precommit: bool,
    /// Property `cxl-reset`: CXL Reset and Mem_Clr capable.
    #[property(rename = "cxl-reset", default = true)]
    cxl_reset_capable: bool,
    /// Property `pm`: a PCI Power Management capability (D0, D3hot).
    #[property(rename = "pm", default = false)]
    pm_capable: bool,
    /// Property `aer`: an Advanced Error Reporting capability and
    /// writable error-reporting enables, so that `pcie_aer_inject_error`
    /// (HMP) reaches the guest's AER recovery.
    #[property(default = false)]
    aer: bool,
    regs: BqlRefCell<Option<AccelRegs>>,
}

qom_isa!(CxlAccelState: PCIDevice, DeviceState, Object);

/// Storage of the `memdev` link property (a strong link: the backend
/// lives at least as long as the device). QOM's link setter writes it, only
/// before realize; the device reads it.
#[repr(transparent)]
#[derive(Debug)]
struct BackendLink(*mut bindings::HostMemoryBackend);

// SAFETY: the pointer is written by the property setter and read by the
// device, both with the BQL held (QOM property access and every device
// callback run under it), and the backend is only used through C calls
// made under the BQL. Nothing else makes CxlAccelState !Sync: the compiler
// checks the other fields.
unsafe impl Sync for BackendLink {}
// SAFETY: as for Sync; no thread-local state is attached to the pointer.
unsafe impl Send for BackendLink {}

// SAFETY: BackendLink is a transparent `HostMemoryBackend *`, the storage
// qdev_prop_link expects (an `Object *` of type LINK_TYPE, which a
// HostMemoryBackend starts with).
unsafe impl QDevProp for BackendLink {
    const BASE_INFO: *const hwcore::bindings::PropertyInfo =
        std::ptr::addr_of!(hwcore::bindings::qdev_prop_link);
    const LINK_TYPE: *const c_char = c"memory-backend".as_ptr();
}

impl BackendLink {
    /// Whether the property was set.
    fn is_set(&self) -> bool {
        !self.0.is_null()
    }

    /// The backend's memory.
    ///
    /// # Panics
    /// If the property was not set (realize checks it first), or the
    /// backend has no memory region.
    fn memory(&self) -> &MemoryRegion {
        assert!(self.is_set());
        // SAFETY: a backend kept by the link.
        let mr = unsafe { bindings::host_memory_backend_get_memory(self.0) };
        assert!(!mr.is_null(), "memory backend without a memory region");
        // SAFETY: not null (checked above); the link keeps a reference to
        // the backend, whose region exists once the backend is complete
        // and lives as long as it.
        unsafe { MemoryRegion::from_raw(mr.cast()) }
    }

    /// Whether a device maps the backend (`host_memory_backend_is_mapped`).
    fn is_mapped(&self) -> bool {
        // SAFETY: a backend kept by the link (is_set checked by callers).
        self.is_set() && unsafe { bindings::host_memory_backend_is_mapped(self.0) }
    }

    /// `host_memory_backend_set_mapped`: a mapped backend cannot be
    /// deleted by object-del.
    fn set_mapped(&self, mapped: bool) {
        if self.is_set() {
            // SAFETY: a backend kept by the link.
            unsafe { bindings::host_memory_backend_set_mapped(self.0, mapped) };
        }
    }
}

/// cxl-accel's trace events for the shared memory path.
struct AccelTrace;

impl MemoryTrace for AccelTrace {
    fn precommit(&self, _name: &CStr, range: HpaRange, window: i32) {
        trace::trace_cxl_accel_precommit(range.base, range.size, window);
    }
    fn commit_failed(&self, _name: &CStr, decoder: u32, range: HpaRange) {
        trace::trace_cxl_accel_commit_failed(decoder, range.base, range.size);
    }
    fn map(&self, _name: &CStr, hpa: HpaRange, dpa: u64) {
        trace::trace_cxl_accel_map(hpa.base, hpa.size, dpa);
    }
    fn unmap(&self, _name: &CStr, hpa: HpaRange) {
        trace::trace_cxl_accel_unmap(hpa.base, hpa.size);
    }
    fn route(&self, _name: &CStr, hpa: HpaRange, routed: bool) {
        trace::trace_cxl_accel_route(hpa.base, hpa.size, routed);
    }
    fn no_window(&self, _name: &CStr, hpa: HpaRange) {
        trace::trace_cxl_accel_no_window(hpa.base, hpa.size);
    }
}

// SAFETY: the type is a PCIDevice subclass without its own class struct,
// and its TYPE_NAME is unique.
unsafe impl ObjectType for CxlAccelState {
    type Class = <PCIDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = crate::TYPE_CXL_ACCEL;
}

impl ObjectImpl for CxlAccelState {
    type ParentType = PCIDevice;

    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = Self::class_init;
    const INTERFACES: InterfaceList = qom::interfaces![INTERFACE_CXL_DEVICE, INTERFACE_PCIE_DEVICE];
}

const VMSTATE_CXL_ACCEL: VMStateDescription<CxlAccelState> =
    VMStateDescriptionBuilder::<CxlAccelState>::new()
        .name(c"cxl-accel")
        .unmigratable()
        .build();

impl DeviceImpl for CxlAccelState {
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_CXL_ACCEL);
}

impl ResettablePhasesImpl for CxlAccelState {
    const HOLD: Option<fn(&Self, ResetType)> = Some(Self::reset_hold);
    const EXIT: Option<fn(&Self, ResetType)> = Some(Self::reset_exit);
}

impl PCIDeviceImpl for CxlAccelState {
    const PCI_REALIZE: Option<fn(&Self) -> Result<()>> = Some(Self::realize);
    const PCI_EXIT: Option<fn(&Self)> = Some(Self::exit);
    const CONFIG_WRITE: Option<fn(&Self, u32, u32, u32)> = Some(Self::config_write);
    const IDS: Option<PciIds> = Some(PciIds {
        vendor_id: pci::bindings::PCI_VENDOR_ID_REDHAT as u16,
        device_id: DEVICE_ID,
        revision: 0,
        class_id: config::CLASS_PROCESSING_ACCELERATOR,
        subsystem_vendor_id: 0,
        subsystem_id: 0,
    });
}

/// Help text of the properties (`-device cxl-accel,help`).
const PROPERTY_HELP: [(&CStr, &CStr); 4] = [
    (
        c"memdev",
        c"memory backend holding the device memory (HDM), a non-zero multiple of 256 MiB",
    ),
    (
        c"precommit",
        c"commit HDM decoder 0 of the device and of its host bridge at reset, like \
          platform firmware (needs pxb-cxl,hdm_for_passthrough=on and a cxl-fmw \
          targeting only that host bridge)",
    ),
    (
        c"cxl-reset",
        c"advertise CXL Reset and its Mem_Clr (the memory backend's pages are \
          discarded) in the CXL Device DVSEC",
    ),
    (
        c"pm",
        c"offer a PCI Power Management capability: in D3hot the BAR and the \
          device memory do not decode",
    ),
];

impl CxlAccelState {
    fn class_init(klass: &mut PCIDeviceClass) {
        klass.class_init::<Self>();
        klass.parent_class.desc = c"CXL Type-2 accelerator (emulated)".as_ptr();
        let oc: *mut qom::bindings::ObjectClass = (klass as *mut PCIDeviceClass).cast();
        for (name, help) in PROPERTY_HELP {
            // SAFETY: the class is being initialized and has these
            // properties (class_init::<Self> added them); both strings are
            // static.
            unsafe {
                qom::bindings::object_class_property_set_description(
                    oc,
                    name.as_ptr(),
                    help.as_ptr(),
                );
            }
        }
    }

    unsafe fn init(mut this: ParentInit<Self>) {
        static COMPONENT_OPS: MemoryRegionOps<CxlAccelState> =
            MemoryRegionOpsBuilder::<CxlAccelState>::new()
                .read(&CxlAccelState::component_read)
                .write(&CxlAccelState::component_write)
                .little_endian()
                .valid_sizes(4, 8)
                .impl_sizes(4, 8)
                .build();

        MemoryRegion::init_io(
            &mut uninit_field_mut!(*this, component_bar),
            &COMPONENT_OPS,
            "cxl-accel-component",
            component::BLOCK_SIZE,
        );
        uninit_field_mut!(*this, regs).write(BqlRefCell::new(None));
    }

    /// What the memory path borrows for a call: the device, the alias of
    /// its memory and its DVSEC Mem_Enable.
    fn endpoint<'a>(&'a self, dvsec: &CxlDeviceDvsec) -> Endpoint<'a> {
        Endpoint {
            pci: self.upcast::<PCIDevice>(),
            alias: &self.hdm_alias,
            mem_enabled: dvsec.control().is_set(Control::MEM_ENABLE),
        }
    }

    fn realize(&self) -> Result<()> {
        ensure!(
            self.memdev.is_set(),
            "property 'memdev' is required, e.g. -object memory-backend-ram,id=accmem,size=256M \
             -device cxl-accel,memdev=accmem"
        );
        ensure!(
            !self.memdev.is_mapped(),
            "memdev is already in use by another device"
        );
        let backend = self.memdev.memory();
        let size = backend.size();
        ensure!(
            size > 0 && size % RANGE_ALIGN == 0,
            "memdev size {:#x} is not a non-zero multiple of 256 MiB",
            size
        );
        self.pcie_endpoint_cap_init(config::PCIE_CAP_OFFSET)?;
        if self.pm_capable {
            self.pm_init(config::PM_CAP_OFFSET)?;
        }
        self.pcie_add_capability(
            config::EXT_CAP_ID_DVSEC,
            config::DVSEC_CAP_VERSION,
            config::DEVICE_DVSEC_OFFSET,
            DVSEC_LENGTH,
        );
        self.set_config_ro(
            u32::from(config::DEVICE_DVSEC_OFFSET) + 4,
            &config::device_dvsec_headers(),
        );
        self.pcie_add_capability(
            config::EXT_CAP_ID_DVSEC,
            config::DVSEC_CAP_VERSION,
            config::REG_LOCATOR_OFFSET,
            config::reg_locator_len(),
        );
        self.set_config_ro(
            u32::from(config::REG_LOCATOR_OFFSET) + 4,
            &config::reg_locator_bytes(),
        );
        if self.aer {
            // Error reporting the guest can enable, then AER after the
            // DVSECs (the extended capability list starts at 0x100).
            self.pcie_cap_deverr_init();
            self.pcie_aer_init(config::AER_CAP_OFFSET)?;
        }
        // Last of the fallible steps: exit() (which releases the host
        // bridge claim and the AER log) does not run when realize fails,
        // so the AER log is freed here then.
        let memory = HdmMemory::new(
            self.upcast::<PCIDevice>(),
            c"cxl-accel".to_owned(),
            "cxl-accel".to_owned(),
            &AccelTrace,
            size,
            self.precommit,
        )
        .inspect_err(|_| self.pcie_aer_exit())?;

        self.register_bar(config::COMPONENT_BAR, BAR_MEM_TYPE_64, &self.component_bar);

        // SAFETY: hdm_alias is zeroed storage owned by this device and
        // finalized with it (realize runs once per device). The alias takes
        // no reference to the backend's region: the strong memdev link
        // keeps the backend alive until the device is finalized, and a
        // mapped backend (set_mapped below, cleared at exit) cannot be
        // deleted by object-del.
        unsafe {
            self.hdm_alias
                .init_alias(self, c"cxl-accel-hdm", backend, 0, size)
        };
        self.memdev.set_mapped(true);

        let regs = AccelRegs {
            dvsec: CxlDeviceDvsec::new(config::dvsec_config(size, self.cxl_reset_capable)),
            component: ComponentRegisters::new(HdmConfig::single_device_decoder(
                memory.decoder_window(),
                size,
            )),
            memory,
        };
        *self.regs.borrow_mut() = Some(regs);
        self.sync_dvsec();
        // SAFETY: a QOM device does not move; exit() drops the watch.
        unsafe { watch_routes(self) };
        Ok(())
    }

    /// Enables the mapping only while the whole decode path routes the
    /// committed range to this device (HdmMemory::route).
    fn reroute(&self) {
        if let Some(regs) = self.regs.borrow().as_ref() {
            regs.memory
                .route(&self.endpoint(&regs.dvsec), regs.component.hdm());
        }
    }

    fn exit(&self) {
        unwatch_routes(self);
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            let ep = self.endpoint(&regs.dvsec);
            regs.memory.release(&ep);
        }
        self.memdev.set_mapped(false);
        self.pcie_aer_exit();
    }

    /// Copies the DVSEC model's registers into config space, where
    /// `pci_default_read_config` finds them.
    fn sync_dvsec(&self) {
        let regs = self.regs.borrow();
        let Some(regs) = regs.as_ref() else { return };
        let (lo, hi) = config::DVSEC_MODEL_RANGE;
        let base = u32::from(config::DEVICE_DVSEC_OFFSET);
        let bytes: Vec<u8> = (lo..hi)
            .map(|a| regs.dvsec.read((a - base) as u16, 1) as u8)
            .collect();
        self.set_config_ro(lo, &bytes);
    }

    fn config_write(&self, addr: u32, val: u32, len: u32) {
        self.default_config_write(addr, val, len);
        self.pcie_aer_write_config(addr, val, len);
        let Some((offset, size, value)) = config::dvsec_part(addr, len, val) else {
            // Memory Space or the power state may have changed.
            self.reroute();
            return;
        };
        trace::trace_cxl_accel_dvsec_write(offset.into(), size.into(), value);
        let events = match self.regs.borrow_mut().as_mut() {
            Some(regs) => regs.dvsec.write(offset, size, value),
            None => return,
        };
        self.sync_dvsec();
        for event in events {
            match event {
                DvsecEvent::MemEnable(on) => trace::trace_cxl_accel_mem_enable(on),
                DvsecEvent::CacheWbInvRequested => {}
                DvsecEvent::CxlResetRequested { clear_memory } => self.cxl_reset(clear_memory),
            }
        }
        self.reroute();
    }

    /// CXL Reset (CXL r3.1 9.7; docs/devices/cxl-accel.md): the memory
    /// unmapped, the HDM decoders at their power-on values, the memory
    /// discarded if Mem_Clr was enabled, then Status2 tells the result.
    fn cxl_reset(&self, clear_memory: bool) {
        trace::trace_cxl_accel_cxl_reset(clear_memory);
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            regs.memory.unmap(&self.hdm_alias);
            regs.component.cxl_reset();
            let cleared = !clear_memory || Self::clear_memory(self.memdev.memory());
            regs.dvsec.cxl_reset_done(cleared);
        }
        self.sync_dvsec();
    }

    fn clear_memory(mr: &MemoryRegion) -> bool {
        let start = std::time::Instant::now();
        let result = mem_clear::discard_all(mr.as_mut_ptr());
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        trace::trace_cxl_accel_mem_clear(mr.size(), ns, result.is_ok());
        if let Err(e) = &result {
            mem_clear::report_once(&format!(
                "cxl-accel: CXL Reset Mem_Clr: {e}; reporting CXL_Reset_Error"
            ));
        }
        result.is_ok()
    }

    fn component_read(&self, offset: hwaddr, size: u32) -> u64 {
        let value = self
            .regs
            .borrow()
            .as_ref()
            .map_or(0, |r| r.component.read(offset, size));
        trace::trace_cxl_accel_component_read(offset, size, value);
        value
    }

    fn component_write(&self, offset: hwaddr, value: u64, size: u32) {
        trace::trace_cxl_accel_component_write(offset, size, value);
        let mut regs = self.regs.borrow_mut();
        let Some(regs) = regs.as_mut() else { return };
        let ep = self.endpoint(&regs.dvsec);
        if let Some(event) = regs.component.write(offset, size, value) {
            regs.memory.hdm_event(&ep, regs.component.hdm_mut(), event);
        }
        // HDM Decoder Enable may have changed.
        regs.memory.route(&ep, regs.component.hdm());
    }

    fn reset_hold(&self, _type: ResetType) {
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            regs.memory.unmap(&self.hdm_alias);
            regs.dvsec.reset();
            regs.component.reset();
        }
        self.sync_dvsec();
        if self.aer {
            self.pcie_cap_deverr_reset();
        }
    }

    /// Firmware's part of reset, after every device (the host bridge
    /// included) has reset its registers (HdmMemory::precommit); then
    /// firmware enables CXL.mem of what it committed.
    fn reset_exit(&self, _type: ResetType) {
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            let ep = self.endpoint(&regs.dvsec);
            if regs.memory.precommit(&ep, regs.component.hdm_mut()) {
                let on = regs.dvsec.control().with(Control::MEM_ENABLE, 1);
                regs.dvsec.write(dvsec::CONTROL, 2, u32::from(on.0));
                regs.memory
                    .route(&self.endpoint(&regs.dvsec), regs.component.hdm());
            }
        }
        self.sync_dvsec();
    }
}

impl RoutesChanged for CxlAccelState {
    /// The device never writes another component's HDM decoder registers
    /// through the guest path (the only caller), so `regs` is not
    /// borrowed meanwhile.
    fn routes_changed(&self) {
        self.reroute();
    }
}
