// SPDX-License-Identifier: GPL-2.0-or-later

//! The cxl-accel device: QOM type, PCI config space, component register
//! BAR, reset-time firmware commit and the direct mapping of device memory
//! into the CXL Fixed Memory Window while HDM decoder 0 is committed.

use std::{
    ffi::{c_void, CStr},
    ptr::addr_of,
};

use bql::BqlRefCell;
use common::{uninit_field_mut, Zeroable};
use cxl_regs::{
    component::{self, ComponentRegisters},
    dvsec::{self, Control, CxlDeviceDvsec, DvsecEvent, DVSEC_LENGTH, RANGE_ALIGN},
    hdm::{FirmwareDecoder, GlobalControl, HdmConfig, HdmEvent},
    window::HpaRange,
};
use hwcore::{
    bindings::{qdev_prop_bool, qdev_prop_link, Property, Property__bindgen_ty_1},
    DeviceImpl, DevicePropertiesImpl, DeviceState, ResetType, ResettablePhasesImpl,
};
use migration::{VMStateDescription, VMStateDescriptionBuilder};
use pci::{
    PCIDevice, PCIDeviceClass, PCIDeviceImpl, PCIDeviceMethods, PciIds, BAR_MEM_TYPE_64,
    INTERFACE_CXL_DEVICE, INTERFACE_PCIE_DEVICE,
};
use qom::{prelude::*, InterfaceList, ObjectImpl, ParentField, ParentInit};
use system::{bindings::hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{ensure, log::Log, log_mask_ln, Error, Result};

use crate::{bindings, config, mem_clear};

::trace::include_trace!("hw_mem");

/// Device ID allocated in QEMU's PCI ID space (docs/specs/pci-ids.rst).
const DEVICE_ID: u16 = pci::bindings::PCI_DEVICE_ID_REDHAT_CXL_ACCEL as u16;

/// Where device memory is mapped while decoder 0 is committed.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    window: *mut system::bindings::MemoryRegion,
    hpa: HpaRange,
}

/// The CFMW firmware commits the device into (found at realize).
#[derive(Clone, Copy, Debug)]
struct Window {
    range: HpaRange,
    enc_granularity: u8,
    index: i32,
}

/// Register state: everything the guest can change.
#[derive(Debug)]
struct AccelRegs {
    dvsec: CxlDeviceDvsec,
    component: ComponentRegisters,
    mapping: Option<Mapping>,
}

/// State of a cxl-accel device.
#[repr(C)]
#[derive(qom::Object)]
pub struct CxlAccelState {
    parent_obj: ParentField<PCIDevice>,
    /// BAR 0: the component register block.
    component_bar: MemoryRegion,
    /// Alias of the memory backend, mapped into a CFMW on commit.
    hdm_alias: MemoryRegion,
    /// Property `memdev`: link to the memory backend.
    memdev: BackendLink,
    /// Property `precommit`: firmware commits the decoders at reset.
    precommit: bool,
    /// Property `cxl-reset`: CXL Reset and Mem_Clr capable.
    cxl_reset_capable: bool,
    /// Property `pm`: a PCI Power Management capability (D0, D3hot).
    pm_capable: bool,
    mem_size: BqlRefCell<u64>,
    window: BqlRefCell<Option<Window>>,
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
// SAFETY: `window` is the machine's CFMW MemoryRegion, which lives as long
// as QEMU; Mapping lives in a BqlRefCell, so it is only used under the BQL.
unsafe impl Send for Mapping {}

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

// SAFETY: the array describes fields of CxlAccelState with matching
// property types: a HostMemoryBackend pointer for the link and bools.
unsafe impl DevicePropertiesImpl for CxlAccelState {
    const PROPERTIES: &'static [Property] = &[
        Property {
            name: c"memdev".as_ptr(),
            info: addr_of!(qdev_prop_link),
            offset: std::mem::offset_of!(CxlAccelState, memdev) as isize,
            link_type: c"memory-backend".as_ptr(),
            ..Zeroable::ZERO
        },
        Property {
            name: c"precommit".as_ptr(),
            info: addr_of!(qdev_prop_bool),
            offset: std::mem::offset_of!(CxlAccelState, precommit) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 1 },
            ..Zeroable::ZERO
        },
        Property {
            name: c"cxl-reset".as_ptr(),
            info: addr_of!(qdev_prop_bool),
            offset: std::mem::offset_of!(CxlAccelState, cxl_reset_capable) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 1 },
            ..Zeroable::ZERO
        },
        Property {
            name: c"pm".as_ptr(),
            info: addr_of!(qdev_prop_bool),
            offset: std::mem::offset_of!(CxlAccelState, pm_capable) as isize,
            set_default: true,
            defval: Property__bindgen_ty_1 { u: 0 },
            ..Zeroable::ZERO
        },
    ];
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
        uninit_field_mut!(*this, mem_size).write(BqlRefCell::new(0));
        uninit_field_mut!(*this, window).write(BqlRefCell::new(None));
        uninit_field_mut!(*this, regs).write(BqlRefCell::new(None));
    }

    fn pci_ptr(&self) -> *mut pci::bindings::PCIDevice {
        self.as_pci_ptr()
    }

    fn backend_mr(&self) -> *mut system::bindings::MemoryRegion {
        // SAFETY: realize checked that memdev is set; the link keeps a
        // reference to the backend while the device exists.
        unsafe { bindings::host_memory_backend_get_memory(self.memdev.0).cast() }
    }

    fn realize(&self) -> Result<()> {
        ensure!(
            !self.memdev.0.is_null(),
            "property 'memdev' is required, e.g. -object memory-backend-ram,id=accmem,size=256M \
             -device cxl-accel,memdev=accmem"
        );
        // SAFETY: memdev is a valid backend (checked above, kept by the link).
        let in_use = unsafe { bindings::host_memory_backend_is_mapped(self.memdev.0) };
        ensure!(!in_use, "memdev is already in use by another device");
        // SAFETY: the backend's region exists once the backend is complete.
        let size = unsafe { system::bindings::memory_region_size(self.backend_mr()) };
        ensure!(
            size > 0 && size % RANGE_ALIGN == 0,
            "memdev size {:#x} is not a non-zero multiple of 256 MiB",
            size
        );

        let mut fw = bindings::CXLFirmwareWindow::default();
        // SAFETY: the device is being realized below its bus; `fw` is
        // written only on success.
        let found = unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_find_window(self.pci_ptr(), size, &mut fw, errp)
            })
        };
        let window = match found {
            Ok(true) => Some(Window {
                range: HpaRange::new(fw.base, fw.size),
                enc_granularity: fw.enc_granularity,
                index: fw.index,
            }),
            Ok(false) => None,
            Err(e) if self.precommit => {
                return Err(Error::msg(format!(
                    "precommit=on needs a CXL window for this device (or set precommit=off): {e}"
                )));
            }
            Err(_) => None,
        };
        self.pcie_endpoint_cap_init(config::PCIE_CAP_OFFSET)?;
        if self.pm_capable {
            self.pm_init(config::PM_CAP_OFFSET)?;
        }
        // Last of the fallible steps: exit() (which releases the claim)
        // does not run when realize fails.
        if let Some(w) = window.filter(|_| self.precommit) {
            // At realize, where an error can be reported (not at reset).
            let range = w.range.precommit_range(size);
            // SAFETY: as above; released in exit().
            unsafe {
                Error::with_errp(|errp| {
                    bindings::cxl_firmware_claim_hb(self.pci_ptr(), range.base, range.size, errp)
                })
            }
            .map_err(|e| Error::msg(format!("precommit=on: {e}")))?;
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
        self.register_bar(config::COMPONENT_BAR, BAR_MEM_TYPE_64, &self.component_bar);

        // SAFETY: hdm_alias is zeroed storage owned by this device and
        // finalized with it. The alias takes no reference to the backend's
        // region: the strong memdev link keeps the backend alive until the
        // device is finalized, and a mapped backend (set_mapped below,
        // cleared at exit) cannot be deleted by object-del.
        unsafe {
            system::bindings::memory_region_init_alias(
                self.hdm_alias.as_mut_ptr(),
                self.as_object_mut_ptr().cast(),
                c"cxl-accel-hdm".as_ptr(),
                self.backend_mr(),
                0,
                size,
            );
            bindings::host_memory_backend_set_mapped(self.memdev.0, true);
        }

        // Linux commits decoders anywhere in a window that targets the
        // host bridge; without one, use the whole address space and let
        // the mapping step look the window up.
        let hdm_window = window.map_or(HpaRange::new(0, u64::MAX), |w| w.range);
        let regs = AccelRegs {
            dvsec: CxlDeviceDvsec::new(config::dvsec_config(size, self.cxl_reset_capable)),
            component: ComponentRegisters::new(HdmConfig::single_device_decoder(hdm_window, size)),
            mapping: None,
        };
        *self.mem_size.borrow_mut() = size;
        *self.window.borrow_mut() = window;
        *self.regs.borrow_mut() = Some(regs);
        self.sync_dvsec();
        // SAFETY: the device outlives the watch, which exit() drops; the
        // callback runs under the BQL, as every device callback does.
        unsafe {
            bindings::cxl_firmware_watch_routes(
                Some(Self::routes_changed),
                std::ptr::from_ref(self).cast_mut().cast(),
            );
        }
        Ok(())
    }

    /// A decoder of some CXL component (our host bridge's, perhaps)
    /// changed: re-evaluate our route.
    unsafe extern "C" fn routes_changed(opaque: *mut c_void) {
        // SAFETY: `opaque` is the device that registered the watch
        // (realize) and dropped it at exit, and the BQL is held. `regs`
        // is not borrowed meanwhile: the device never writes another
        // component's HDM decoder registers, the only caller.
        let this = unsafe { &*opaque.cast::<CxlAccelState>() };
        this.reroute();
    }

    /// Enables the mapping only while the whole decode path routes the
    /// committed range to this device (cxl_firmware_routes: host bridge
    /// decoder, HDM Decoder Enable, DVSEC Mem_Enable, Memory Space);
    /// meanwhile the window's own MMIO answers (reads 0, writes dropped).
    fn reroute(&self) {
        if let Some(regs) = self.regs.borrow().as_ref() {
            Self::route(self.pci_ptr(), &self.hdm_alias, regs);
        }
    }

    fn route(pci: *mut pci::bindings::PCIDevice, alias: &MemoryRegion, regs: &AccelRegs) {
        let Some(m) = regs.mapping else { return };
        let hdm_enabled = regs
            .component
            .hdm()
            .global_control()
            .is_set(GlobalControl::HDM_DECODER_ENABLE);
        let mem_enabled = regs.dvsec.control().is_set(Control::MEM_ENABLE);
        // SAFETY: the device is realized; a lookup of its decode path.
        let routed = unsafe {
            bindings::cxl_firmware_routes(pci, m.hpa.base, m.hpa.size, hdm_enabled, mem_enabled)
        };
        // SAFETY: the alias was initialized at realize.
        unsafe { system::bindings::memory_region_set_enabled(alias.as_mut_ptr(), routed) };
        trace::trace_cxl_accel_route(m.hpa.base, m.hpa.size, routed);
    }

    fn exit(&self) {
        // SAFETY: drops the watch realize registered (none if it failed).
        unsafe {
            bindings::cxl_firmware_unwatch_routes(std::ptr::from_ref(self).cast_mut().cast())
        };
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            Self::unmap(&self.hdm_alias, regs);
        }
        // SAFETY: the device is still realized; a no-op without a claim.
        unsafe { bindings::cxl_firmware_release_hb(self.pci_ptr()) };
        if !self.memdev.0.is_null() {
            // SAFETY: the backend is still linked.
            unsafe { bindings::host_memory_backend_set_mapped(self.memdev.0, false) };
        }
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
        let Some((offset, size, value)) = config::dvsec_part(addr, len, val) else {
            // Memory Space may have changed.
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
            Self::unmap(&self.hdm_alias, regs);
            regs.component.cxl_reset();
            let cleared = !clear_memory || Self::clear_memory(self.backend_mr());
            regs.dvsec.cxl_reset_done(cleared);
        }
        self.sync_dvsec();
    }

    fn clear_memory(mr: *mut system::bindings::MemoryRegion) -> bool {
        let start = std::time::Instant::now();
        let result = mem_clear::discard_all(mr);
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: the backend's region, alive while the device is.
        let size = unsafe { system::bindings::memory_region_size(mr) };
        trace::trace_cxl_accel_mem_clear(size, ns, result.is_ok());
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
        if let Some(event) = regs.component.write(offset, size, value) {
            Self::hdm_event(self.pci_ptr(), &self.hdm_alias, regs, event);
        }
        // HDM Decoder Enable may have changed.
        Self::route(self.pci_ptr(), &self.hdm_alias, regs);
    }

    /// Carries out what an HDM decoder change means for the memory map.
    fn hdm_event(
        pci: *mut pci::bindings::PCIDevice,
        alias: &MemoryRegion,
        regs: &mut AccelRegs,
        event: HdmEvent,
    ) {
        match event {
            HdmEvent::Committed {
                decoder,
                hpa,
                dpa_base,
                ways,
                ..
            } => {
                let mapped = match ways {
                    1 => Self::map(pci, alias, regs, hpa, dpa_base),
                    _ => Err(format!("{ways}-way interleave is not mapped")),
                };
                if let Err(why) = mapped {
                    log_mask_ln!(
                        Log::GuestError,
                        "cxl-accel: HDM decoder {decoder} at {:#x}+{:#x} not committed: {why}",
                        hpa.base,
                        hpa.size
                    );
                    regs.component.hdm_mut().revoke_commit(decoder);
                }
            }
            HdmEvent::Decommitted { .. } => Self::unmap(alias, regs),
            HdmEvent::CommitFailed { decoder, error } => {
                log_mask_ln!(
                    Log::GuestError,
                    "cxl-accel: HDM decoder {decoder} commit refused: {error}"
                );
            }
        }
        if let HdmEvent::CommitFailed { decoder, .. } = event {
            let d = regs
                .component
                .hdm()
                .decoder(decoder)
                .copied()
                .unwrap_or_default();
            trace::trace_cxl_accel_commit_failed(decoder, d.base, d.size);
        }
    }

    /// Maps `hpa` (inside a non-interleaved window) to device memory from
    /// `dpa_base`: an alias of the backend becomes a subregion of the
    /// window's MemoryRegion, so guest accesses are plain RAM accesses.
    /// Why not, when no such window holds `hpa` or another device's
    /// memory is mapped there.
    fn map(
        pci: *mut pci::bindings::PCIDevice,
        alias: &MemoryRegion,
        regs: &mut AccelRegs,
        hpa: HpaRange,
        dpa_base: u64,
    ) -> std::result::Result<(), String> {
        Self::unmap(alias, regs);
        let mut fw = bindings::CXLFirmwareWindow::default();
        // SAFETY: plain lookup in the machine's window list.
        let found = unsafe { bindings::cxl_firmware_window_at(hpa.base, hpa.size, &mut fw) };
        if !found || fw.ways != 1 {
            trace::trace_cxl_accel_no_window(hpa.base, hpa.size);
            return Err("it is in no non-interleaved CXL window".into());
        }
        // SAFETY: bookkeeping keyed by the alias, released by unmap.
        unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_claim_map(
                    alias.as_mut_ptr().cast(),
                    hpa.base,
                    hpa.size,
                    errp,
                )
            })
        }
        .map_err(|e| e.to_string())?;
        let window: *mut system::bindings::MemoryRegion = fw.mr.cast();
        regs.mapping = Some(Mapping { window, hpa });
        // Enabled only if routed, before it appears in the window.
        Self::route(pci, alias, regs);
        // SAFETY: the alias was initialized at realize and is not mapped
        // (unmap above); the window region lives as long as the machine.
        unsafe {
            system::bindings::memory_region_set_alias_offset(alias.as_mut_ptr(), dpa_base);
            system::bindings::memory_region_set_size(alias.as_mut_ptr(), hpa.size);
            system::bindings::memory_region_add_subregion(
                window,
                hpa.base - fw.base,
                alias.as_mut_ptr(),
            );
        }
        trace::trace_cxl_accel_map(hpa.base, hpa.size, dpa_base);
        Ok(())
    }

    fn unmap(alias: &MemoryRegion, regs: &mut AccelRegs) {
        if let Some(m) = regs.mapping.take() {
            // SAFETY: the alias is a subregion of m.window (set by map);
            // the claim is keyed by the alias.
            unsafe {
                system::bindings::memory_region_del_subregion(m.window, alias.as_mut_ptr());
                bindings::cxl_firmware_release_map(alias.as_mut_ptr().cast());
            }
            trace::trace_cxl_accel_unmap(m.hpa.base, m.hpa.size);
        }
    }

    fn reset_hold(&self, _type: ResetType) {
        if let Some(regs) = self.regs.borrow_mut().as_mut() {
            Self::unmap(&self.hdm_alias, regs);
            regs.dvsec.reset();
            regs.component.reset();
        }
        self.sync_dvsec();
    }

    /// Firmware's part of reset, after every device (the host bridge
    /// included) has reset its registers: commit the host bridge's and
    /// our decoder 0 in the window (1 GiB-aligned when it fits). A guest
    /// can make this fail (it owns the host bridge's registers), so a
    /// failure is the guest's error: decoder 0 stays uncommitted with
    /// Error Not Committed, the device has no memory, and the VM runs on.
    fn reset_exit(&self, _type: ResetType) {
        if !self.precommit {
            return;
        }
        let Some(window) = *self.window.borrow() else {
            return;
        };
        let size = *self.mem_size.borrow();
        let range = window.range.precommit_range(size);
        // SAFETY: the device is realized and below a pxb-cxl host bridge
        // (checked at realize).
        let hb = unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_commit_hb_decoder(
                    self.pci_ptr(),
                    range.base,
                    range.size,
                    window.enc_granularity,
                    errp,
                )
            })
        };
        self.firmware_commit(range, window, hb);
        self.sync_dvsec();
    }

    /// Decoder 0 committed as the host bridge's commit (`hb`) allows.
    fn firmware_commit(&self, range: HpaRange, window: Window, hb: Result<bool>) {
        let mut regs = self.regs.borrow_mut();
        let Some(regs) = regs.as_mut() else { return };
        let program = FirmwareDecoder {
            range,
            eiw: 0,
            eig: window.enc_granularity,
            target_or_skip: 0,
            host_only: false,
            lock: true,
        };
        if let Err(e) = hb {
            log_mask_ln!(
                Log::GuestError,
                "cxl-accel: firmware commit of the host bridge failed, the device has no memory: \
                 {e}"
            );
            regs.component.hdm_mut().firmware_not_committed(0, program);
            return;
        }
        match regs.component.hdm_mut().firmware_commit(0, program) {
            Ok(event) => {
                trace::trace_cxl_accel_precommit(range.base, range.size, window.index);
                // Firmware enables CXL.mem of what it committed.
                let on = regs.dvsec.control().with(Control::MEM_ENABLE, 1);
                regs.dvsec.write(dvsec::CONTROL, 2, u32::from(on.0));
                Self::hdm_event(self.pci_ptr(), &self.hdm_alias, regs, event);
            }
            Err(e) => log_mask_ln!(
                Log::GuestError,
                "cxl-accel: firmware commit of decoder 0 failed: {e}"
            ),
        }
    }
}
