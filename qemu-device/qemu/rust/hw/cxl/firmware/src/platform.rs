// SPDX-License-Identifier: GPL-2.0-or-later

//! The machine as firmware sees it, read through the C helpers of
//! hw/cxl/cxl-firmware.c: the host bridge and root port above an
//! endpoint, the host bridge's HDM decoder registers and the CXL Fixed
//! Memory Windows. The decisions are `cxl_regs::firmware`'s; the claims
//! they keep are here, one set for every device of the machine.

use std::{
    ffi::{c_void, CStr},
    ptr::NonNull,
};

use bql::BqlRefCell;
use cxl_regs::{
    firmware::{self, HbClaims, HdmRegisters, HostBridgePath, MapClaims, Window},
    hdm,
    window::HpaRange,
};
use hwcore::DeviceState;
use pci::{PCIDevice, PCIDeviceMethods};
use qom::prelude::*;
use system::MemoryRegion;
use util::{Error, Result};

use pci::bindings;

/// A device's id, if it has one.
pub fn device_id(dev: &DeviceState) -> Option<String> {
    // SAFETY: a device's id is NULL or a C string it owns, set before
    // realize; read under the BQL.
    let id = unsafe { (*dev.as_mut_ptr()).id };
    // SAFETY: see above.
    (!id.is_null()).then(|| unsafe { CStr::from_ptr(id) }.to_string_lossy().into_owned())
}

/// The name of a device in messages: its id, else its type name.
pub fn device_name(dev: &DeviceState) -> String {
    device_id(dev).unwrap_or_else(|| dev.typename().to_string())
}

/// A host bridge's HDM Decoder Capability Structure: QEMU's registers of
/// it, which firmware reads and writes directly (as the platform does).
pub struct HbRegisters {
    regs: NonNull<u32>,
    count: u32,
}

impl HbRegisters {
    fn at(&self, offset: u32) -> *mut u32 {
        assert!(
            offset % 4 == 0 && offset < hdm::block_len(self.count),
            "HDM register {offset:#x} outside the host bridge's structure"
        );
        // SAFETY: `regs` points to the structure, which holds
        // block_len(count) bytes (cxl_firmware_path), and `offset` is
        // inside it (checked above).
        unsafe { self.regs.as_ptr().add((offset / 4) as usize) }
    }
}

impl HdmRegisters for HbRegisters {
    fn decoder_count(&self) -> u32 {
        self.count
    }

    fn read(&self, offset: u32) -> u32 {
        assert!(bql::is_locked());
        // SAFETY: a dword of the host bridge's registers (see `at`),
        // which only change under the BQL.
        u32::from_le(unsafe { self.at(offset).read() })
    }

    fn write(&mut self, offset: u32, value: u32) {
        assert!(bql::is_locked());
        // SAFETY: as for read.
        unsafe { self.at(offset).write(value.to_le()) }
    }
}

/// The host bridge above an endpoint and the endpoint's root port.
pub struct Path {
    /// The host bridge's address: what identifies it in the claims.
    hb: *mut bindings::Object,
    hb_id: Option<String>,
    /// The root port's port number.
    pub port: u8,
    pub hdm_for_passthrough: bool,
    /// One root port and no HDM decoders.
    pub passthrough: bool,
    regs: HbRegisters,
}

impl Path {
    /// The host bridge and root port above `ep`, which must sit directly
    /// below a root port of a pxb-cxl host bridge.
    pub fn of(ep: &PCIDevice) -> Result<Self> {
        let mut out = bindings::CXLFirmwarePath::default();
        // SAFETY: a realized (or realizing) device below its bus, under
        // the BQL; `out` is written on success.
        let found = unsafe {
            Error::with_errp(|errp| bindings::cxl_firmware_path(ep.as_pci_ptr(), &mut out, errp))
        }?;
        let regs = NonNull::new(out.hdm).filter(|_| found);
        let Some(regs) = regs else {
            return Err(Error::msg("no CXL host bridge above the device"));
        };
        let hb_id = (!out.hb_id.is_null()).then(|| {
            // SAFETY: the host bridge's id, a C string it owns.
            unsafe { CStr::from_ptr(out.hb_id) }
                .to_string_lossy()
                .into_owned()
        });
        Ok(Self {
            hb: out.hb,
            hb_id,
            port: out.port,
            hdm_for_passthrough: out.hdm_for_passthrough,
            passthrough: out.passthrough,
            regs: HbRegisters {
                regs,
                count: out.hdm_count,
            },
        })
    }

    /// The host bridge in messages: its id, else "(no id)" (as the C
    /// helpers said before; a window's targets name host bridges by id).
    pub fn hb_id(&self) -> &str {
        self.hb_id.as_deref().unwrap_or("(no id)")
    }

    /// The host bridge's HDM decoders, if firmware uses them
    /// ([`firmware::hb_decoders`]).
    pub fn hdm(&mut self) -> Option<&mut HbRegisters> {
        firmware::hb_decoders(self)
    }

    /// The machine's windows, each saying whether it targets this host
    /// bridge.
    pub fn windows(&self) -> Vec<MachineWindow> {
        windows(self.hb)
    }
}

impl HostBridgePath for Path {
    type Regs = HbRegisters;
    type Window = MachineWindow;

    fn hdm_for_passthrough(&self) -> bool {
        self.hdm_for_passthrough
    }

    fn passthrough(&self) -> bool {
        self.passthrough
    }

    fn port(&self) -> u8 {
        self.port
    }

    fn regs(&self) -> &HbRegisters {
        &self.regs
    }

    fn regs_mut(&mut self) -> &mut HbRegisters {
        &mut self.regs
    }

    fn windows(&self) -> Vec<MachineWindow> {
        windows(self.hb)
    }
}

/// A CXL Fixed Memory Window and its MemoryRegion.
#[derive(Clone, Copy)]
pub struct MachineWindow {
    pub window: Window,
    /// The window's container region, which lives as long as the machine.
    pub mr: &'static MemoryRegion,
}

impl AsRef<Window> for MachineWindow {
    fn as_ref(&self) -> &Window {
        &self.window
    }
}

/// The machine's windows in cxl-fmw order, `targets_hb` for `hb` (none
/// if null).
fn windows(hb: *mut bindings::Object) -> Vec<MachineWindow> {
    assert!(bql::is_locked());
    // SAFETY: counts the windows; nothing is written with `max` 0.
    let count = unsafe { bindings::cxl_firmware_windows(hb, std::ptr::null_mut(), 0) };
    let mut raw = vec![bindings::CXLFirmwareWindow::default(); count];
    // SAFETY: `raw` has room for `count` windows, and the list cannot
    // change in between (it changes only at machine creation, under the
    // BQL, which we hold).
    let filled = unsafe { bindings::cxl_firmware_windows(hb, raw.as_mut_ptr(), count) };
    raw.truncate(filled.min(count));
    raw.iter()
        .filter_map(|w| {
            let mr = NonNull::new(w.mr)?;
            Some(MachineWindow {
                window: Window {
                    index: w.index,
                    range: HpaRange::new(w.base, w.size),
                    ways: w.ways.into(),
                    enc_granularity: w.enc_granularity,
                    targets_hb: w.targets_hb,
                },
                // SAFETY: the window object's MemoryRegion; windows are
                // created with the machine and never freed.
                mr: unsafe { MemoryRegion::from_raw(mr.as_ptr()) },
            })
        })
        .collect()
}

/// The machine's windows, none of them "targeting" a host bridge.
pub fn all_windows() -> Vec<MachineWindow> {
    windows(std::ptr::null_mut())
}

/// Endpoint -> host bridge decoder 0 it pre-commits (keys: addresses).
/// Used only under the BQL (device realize, reset and exit).
static HB_CLAIMS: BqlRefCell<HbClaims<usize, usize>> = BqlRefCell::new(HbClaims::new());
/// Mapped memory (key: the address of the mapped region). Used only
/// under the BQL (reset, guest register writes, exit).
static MAP_CLAIMS: BqlRefCell<MapClaims<usize>> = BqlRefCell::new(MapClaims::new());

fn ep_key(ep: &PCIDevice) -> usize {
    ep.as_pci_ptr() as usize
}

fn region_key(mr: &MemoryRegion) -> usize {
    mr.as_ptr() as usize
}

/// Reserves decoder 0 of `ep`'s host bridge for `ep` (named `name`),
/// whose reset will commit `want` there ([`firmware::HbClaims::claim`]).
pub fn claim_hb(ep: &PCIDevice, name: &str, want: HpaRange) -> Result<()> {
    let path = Path::of(ep)?;
    let mut claims = HB_CLAIMS.borrow_mut();
    claims
        .claim(
            path.hb as usize,
            path.hb_id(),
            &path.regs,
            ep_key(ep),
            name,
            want,
            path.port,
        )
        .map_err(|e| Error::msg(e.to_string()))
}

/// Drops `ep`'s host bridge claim; a no-op without one.
pub fn release_hb(ep: &PCIDevice) {
    let mut claims = HB_CLAIMS.borrow_mut();
    claims.release(ep_key(ep));
}

/// Reserves `range` for mapping `mr` (of the device named `owner`).
pub fn claim_map(mr: &MemoryRegion, owner: &str, range: HpaRange) -> Result<()> {
    let mut maps = MAP_CLAIMS.borrow_mut();
    maps.claim(region_key(mr), owner, range)
        .map_err(|e| Error::msg(e.to_string()))
}

/// Drops `mr`'s range; a no-op without one.
pub fn release_map(mr: &MemoryRegion) {
    let mut maps = MAP_CLAIMS.borrow_mut();
    maps.release(region_key(mr));
}

/// Commits decoder 0 of `ep`'s host bridge over `range` with granularity
/// `eig`, as firmware leaves it ([`firmware::commit_hb_decoder0`]).
pub fn commit_hb_decoder0(ep: &PCIDevice, range: HpaRange, eig: u8) -> Result<()> {
    let mut path = Path::of(ep)?;
    let (hb, port) = (path.hb_id().to_owned(), path.port);
    firmware::commit_hb_decoder0(path.hdm(), &hb, range, port, eig)
        .map_err(|e| Error::msg(e.to_string()))
}

/// Whether the decode path above `ep` routes `range` to it
/// ([`firmware::routes`]: `ep` decodes memory, Memory Space on and in D0,
/// and its host bridge routes the range to its root port). The
/// endpoint's own links (HDM Decoder Enable, DVSEC Mem_Enable) are the
/// caller's.
pub fn routes(ep: &PCIDevice, range: HpaRange) -> bool {
    firmware::routes(range, ep.decodes_memory(), || Path::of(ep).ok())
}

/// A device that re-evaluates its route when a decoder changes.
pub trait RoutesChanged {
    /// An HDM decoder of some CXL component (its host bridge's, perhaps)
    /// changed. Called under the BQL, never while the device itself
    /// writes decoder registers of another component.
    fn routes_changed(&self);
}

unsafe extern "C" fn routes_changed<T: RoutesChanged>(opaque: *mut c_void) {
    // SAFETY: `opaque` is the device that registered the watch
    // (watch_routes) and drops it before it is freed (unwatch_routes);
    // the BQL is held.
    let dev = unsafe { &*opaque.cast::<T>() };
    dev.routes_changed();
}

/// Calls `dev.routes_changed()` after every guest write to the HDM
/// decoder registers of a CXL component.
///
/// # Safety
///
/// `dev` stays at its address until [`unwatch_routes`] drops the watch
/// (a QOM device: call it from its exit).
pub unsafe fn watch_routes<T: RoutesChanged>(dev: &T) {
    // SAFETY: the caller keeps `dev` alive and in place meanwhile.
    unsafe {
        bindings::cxl_firmware_watch_routes(
            Some(routes_changed::<T>),
            std::ptr::from_ref(dev).cast_mut().cast(),
        );
    }
}

/// Drops every watch of `dev`; a no-op without one.
pub fn unwatch_routes<T>(dev: &T) {
    // SAFETY: only compares the pointer with those of the watches.
    unsafe { bindings::cxl_firmware_unwatch_routes(std::ptr::from_ref(dev).cast_mut().cast()) }
}
