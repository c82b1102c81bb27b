// SPDX-License-Identifier: GPL-2.0-or-later

//! [`CxlPart`]: the guest-visible CXL state of a passed-through Type-2
//! device, behind a small `extern "C"` API (`include/hw/vfio/vfio-cxl.h`).
//!
//! The host's decoder is committed and locked by its firmware and never
//! reachable by the guest (docs/uapi.md). The guest programs an emulated
//! decoder block instead ([`HdmDecoderBlock`] of `cxl_regs`), overlaid on
//! the component register BAR where the host's block sits. When its
//! decoder 0 commits, the device memory (the mmap'd CXL_MEM region) is
//! mapped into the CFMW's MemoryRegion at the committed base, so guest
//! accesses go straight to the mapping.

use std::ffi::{c_char, c_void, CStr, CString};

use cxl_regs::{
    hdm::{FirmwareDecoder, GlobalControl, HdmConfig, HdmDecoderBlock, HdmEvent},
    window::HpaRange,
};
use pci::bindings::PCIDevice;
use system::bindings::MemoryRegion;
use util::{log::Log, log_mask_ln, Error, Result};

use crate::bindings;

::trace::include_trace!("hw_vfio");


/// The CFMW firmware commits the device into (found at creation).
#[derive(Clone, Copy, Debug)]
struct Window {
    range: HpaRange,
    enc_granularity: u8,
    index: i32,
}


/// Where device memory is mapped while decoder 0 is committed.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    window: *mut MemoryRegion,
    hpa: HpaRange,
}

/// The CXL part of one vfio-cxl / vfio-user-cxl device. Only used under
/// the BQL (MMIO callbacks, reset, realize, unrealize).
#[derive(Debug)]
pub struct CxlPart {
    /// The device, for the host bridge commit.
    pci: *mut PCIDevice,
    /// The VFIO device's name (host BDF or vfio-user socket), for traces.
    name: CString,
    /// Alias of the CXL_MEM region (owned by the C side, not mapped
    /// anywhere else); offset and size are set at each mapping.
    mem: *mut MemoryRegion,
    mem_size: u64,
    precommit: bool,
    window: Option<Window>,
    hdm: HdmDecoderBlock,
    mapping: Option<Mapping>,
    /// DVSEC Mem_Enable as the device (host driver or server) last
    /// reported it; the C side tracks config space.
    mem_enabled: bool,
}

impl CxlPart {
    fn new(
        pci: *mut PCIDevice,
        name: CString,
        mem: *mut MemoryRegion,
        mem_size: u64,
        precommit: bool,
    ) -> Result<Self> {
        let mut fw = bindings::CXLFirmwareWindow::default();
        // SAFETY: the device is realized below its bus; `fw` is written
        // only on success.
        let found = unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_find_window(pci, mem_size, &mut fw, errp)
            })
        };
        let window = match found {
            Ok(true) => Some(Window {
                range: HpaRange::new(fw.base, fw.size),
                enc_granularity: fw.enc_granularity,
                index: fw.index,
            }),
            Ok(false) => None,
            Err(e) if precommit => {
                return Err(Error::msg(format!(
                    "precommit=on needs a CXL window for this device (or set precommit=off): {e}"
                )));
            }
            Err(_) => None,
        };
        if let Some(w) = window.filter(|_| precommit) {
            // Here, not at reset: reset cannot report an error, and at
            // hot-plug a failure there would end the running VM.
            let range = w.range.precommit_range(mem_size);
            // SAFETY: as for cxl_firmware_find_window above; released by
            // vfio_cxl_part_free.
            unsafe {
                Error::with_errp(|errp| {
                    bindings::cxl_firmware_claim_hb(pci, range.base, range.size, errp)
                })
            }
            .map_err(|e| Error::msg(format!("precommit=on: {e}")))?;
        }
        // Without a window of our own, the guest may commit anywhere; the
        // mapping step looks the window up.
        let hdm_window = window.map_or(HpaRange::new(0, u64::MAX), |w| w.range);
        Ok(Self {
            pci,
            name,
            mem,
            mem_size,
            precommit,
            window,
            hdm: HdmDecoderBlock::new(HdmConfig::single_device_decoder(hdm_window, mem_size)),
            mapping: None,
            mem_enabled: false,
        })
    }

    fn read(&self, offset: u64, size: u32) -> u64 {
        let Ok(off) = u32::try_from(offset) else {
            return 0;
        };
        let value = match size {
            8 => u64::from(self.hdm.read(off)) | (u64::from(self.hdm.read(off + 4)) << 32),
            _ => u64::from(self.hdm.read(off)),
        };
        trace::trace_vfio_cxl_hdm_read(&self.name, offset, size, value);
        value
    }

    fn write(&mut self, offset: u64, value: u64, size: u32) {
        trace::trace_vfio_cxl_hdm_write(&self.name, offset, size, value);
        let Ok(off) = u32::try_from(offset) else {
            return;
        };
        let mut events = vec![self.hdm.write(off, value as u32)];
        if size == 8 {
            events.push(self.hdm.write(off + 4, (value >> 32) as u32));
        }
        for event in events.into_iter().flatten() {
            self.hdm_event(event);
        }
        // HDM Decoder Enable may have changed.
        self.route();
    }

    /// Enables the mapping only while the whole decode path routes the
    /// committed range to this device (cxl_firmware_routes: host bridge
    /// decoder, HDM Decoder Enable, DVSEC Mem_Enable, Memory Space);
    /// meanwhile the window's own MMIO answers (reads 0, writes dropped).
    fn route(&self) {
        let Some(m) = self.mapping else { return };
        let hdm_enabled = self
            .hdm
            .global_control()
            .is_set(GlobalControl::HDM_DECODER_ENABLE);
        // SAFETY: the device is realized; a lookup of its decode path.
        let routed = unsafe {
            bindings::cxl_firmware_routes(
                self.pci,
                m.hpa.base,
                m.hpa.size,
                hdm_enabled,
                self.mem_enabled,
            )
        };
        // SAFETY: the alias is initialized (the caller's promise at new).
        unsafe { system::bindings::memory_region_set_enabled(self.mem, routed) };
        trace::trace_vfio_cxl_route(&self.name, m.hpa.base, m.hpa.size, routed);
    }

    /// Carries out what a decoder change means for the memory map.
    fn hdm_event(&mut self, event: HdmEvent) {
        match event {
            HdmEvent::Committed {
                decoder,
                hpa,
                dpa_base,
                ways,
                ..
            } => {
                let mapped = match ways {
                    1 => self.map(hpa, dpa_base),
                    _ => Err(format!("{ways}-way interleave is not mapped")),
                };
                if let Err(why) = mapped {
                    log_mask_ln!(
                        Log::GuestError,
                        "vfio-cxl {}: HDM decoder {decoder} at {:#x}+{:#x} not committed: {why}",
                        self.name.to_string_lossy(),
                        hpa.base,
                        hpa.size
                    );
                    self.hdm.revoke_commit(decoder);
                }
            }
            HdmEvent::Decommitted { .. } => self.unmap(),
            HdmEvent::CommitFailed { decoder, error } => {
                log_mask_ln!(
                    Log::GuestError,
                    "vfio-cxl: HDM decoder {decoder} commit refused: {error}"
                );
                let d = self.hdm.decoder(decoder).copied().unwrap_or_default();
                trace::trace_vfio_cxl_commit_failed(&self.name, decoder, d.base, d.size);
            }
        }
    }

    /// Maps `hpa` (inside a non-interleaved window) to device memory from
    /// `dpa_base`: the alias of CXL_MEM becomes a subregion of the window's
    /// MemoryRegion, so guest accesses reach the mmap'd region directly.
    /// Why not, when no such window holds `hpa`, the device is too small,
    /// or another device's memory is mapped there.
    fn map(&mut self, hpa: HpaRange, dpa_base: u64) -> std::result::Result<(), String> {
        self.unmap();
        let fits = dpa_base
            .checked_add(hpa.size)
            .is_some_and(|end| end <= self.mem_size);
        let mut fw = bindings::CXLFirmwareWindow::default();
        // SAFETY: plain lookup in the machine's window list.
        let found = unsafe { bindings::cxl_firmware_window_at(hpa.base, hpa.size, &mut fw) };
        if !fits || !found || fw.ways != 1 {
            trace::trace_vfio_cxl_no_window(&self.name, hpa.base, hpa.size);
            return Err(if fits {
                "it is in no non-interleaved CXL window".into()
            } else {
                format!("DPA {dpa_base:#x} + size runs past the device memory")
            });
        }
        // SAFETY: bookkeeping keyed by the alias, released by unmap.
        unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_claim_map(self.mem.cast(), hpa.base, hpa.size, errp)
            })
        }
        .map_err(|e| e.to_string())?;
        let window: *mut MemoryRegion = fw.mr.cast();
        self.mapping = Some(Mapping { window, hpa });
        // Enabled only if routed, before it appears in the window.
        self.route();
        // SAFETY: the alias is initialized and not mapped (unmap above);
        // the window region lives as long as the machine.
        unsafe {
            system::bindings::memory_region_set_alias_offset(self.mem, dpa_base);
            system::bindings::memory_region_set_size(self.mem, hpa.size);
            system::bindings::memory_region_add_subregion(window, hpa.base - fw.base, self.mem);
        }
        trace::trace_vfio_cxl_map(&self.name, hpa.base, hpa.size, dpa_base);
        Ok(())
    }

    fn unmap(&mut self) {
        if let Some(m) = self.mapping.take() {
            // SAFETY: the alias is a subregion of m.window (set by map);
            // the claim is keyed by the alias.
            unsafe {
                system::bindings::memory_region_del_subregion(m.window, self.mem);
                bindings::cxl_firmware_release_map(self.mem.cast());
            }
            trace::trace_vfio_cxl_unmap(&self.name, m.hpa.base, m.hpa.size);
        }
    }

    fn reset_hold(&mut self) {
        self.unmap();
        self.hdm.reset();
    }

    /// Firmware's part of reset, after every device (the host bridge
    /// included) has reset its registers: commit the host bridge's and our
    /// decoder 0 in the window, 1 GiB-aligned when it fits. A guest can
    /// make this fail (it owns the host bridge's registers), so a failure
    /// is the guest's error: decoder 0 stays uncommitted with Error Not
    /// Committed, the device has no memory, and the VM runs on.
    /// Whether decoder 0 is committed afterwards (firmware then enables
    /// CXL.mem in the DVSEC, which the C side owns).
    fn reset_exit(&mut self) -> bool {
        if !self.precommit {
            return false;
        }
        let Some(window) = self.window else {
            return false;
        };
        let range = window.range.precommit_range(self.mem_size);
        let program = FirmwareDecoder {
            range,
            eiw: 0,
            eig: window.enc_granularity,
            target_or_skip: 0,
            host_only: false,
            lock: true,
        };
        // SAFETY: the device is realized below a pxb-cxl host bridge
        // (cxl_firmware_find_window checked it at creation).
        let hb = unsafe {
            Error::with_errp(|errp| {
                bindings::cxl_firmware_commit_hb_decoder(
                    self.pci,
                    range.base,
                    range.size,
                    window.enc_granularity,
                    errp,
                )
            })
        };
        if let Err(e) = hb {
            log_mask_ln!(
                Log::GuestError,
                "vfio-cxl {}: firmware commit of the host bridge failed, the device has no memory: {e}",
                self.name.to_string_lossy()
            );
            self.hdm.firmware_not_committed(0, program);
            return false;
        }
        match self.hdm.firmware_commit(0, program) {
            Ok(event) => {
                trace::trace_vfio_cxl_precommit(&self.name, range.base, range.size, window.index);
                self.hdm_event(event);
                self.mapping.is_some()
            }
            Err(e) => {
                log_mask_ln!(
                    Log::GuestError,
                    "vfio-cxl {}: firmware commit of decoder 0 failed: {e}",
                    self.name.to_string_lossy()
                );
                false
            }
        }
    }

    /// A decoder of some CXL component (our host bridge's, perhaps)
    /// changed: re-evaluate the route.
    unsafe extern "C" fn routes_changed(opaque: *mut c_void) {
        // SAFETY: `opaque` is the part that registered the watch (in
        // vfio_cxl_part_new) and dropped it in vfio_cxl_part_free; the
        // BQL is held, and no other reference to the part is live (the
        // part never writes a component's HDM decoder registers, so this
        // never runs inside one of its own calls).
        unsafe { (*opaque.cast::<CxlPart>()).route() };
    }
}

/// Creates the CXL part of a realized device.
///
/// `name` names the device in traces (copied). `mem` is an alias
/// MemoryRegion of the mmap'd CXL_MEM region, `mem_size` bytes, owned by
/// the caller and mapped only by this part. Returns NULL and sets `errp`
/// on error.
///
/// # Safety
///
/// `pci` and `mem` must stay valid until [`vfio_cxl_part_free`]; `name` is
/// a C string; `errp` is a valid `Error **`. Call with the BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_new(
    pci: *mut PCIDevice,
    name: *const c_char,
    mem: *mut MemoryRegion,
    mem_size: u64,
    precommit: bool,
    errp: *mut *mut util::bindings::Error,
) -> *mut CxlPart {
    // SAFETY: a C string from the caller, copied here.
    let name = unsafe { CStr::from_ptr(name) }.to_owned();
    let part = CxlPart::new(pci, name, mem, mem_size, precommit);
    // SAFETY: errp comes from C.
    match unsafe { Error::ok_or_propagate(part, errp) } {
        Some(part) => {
            let part = Box::into_raw(Box::new(part));
            // SAFETY: the part lives until vfio_cxl_part_free, which
            // drops the watch first.
            unsafe {
                bindings::cxl_firmware_watch_routes(Some(CxlPart::routes_changed), part.cast())
            };
            part
        }
        None => std::ptr::null_mut(),
    }
}

/// Length in bytes of the emulated HDM Decoder Capability structure.
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`].
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_hdm_len(part: *const CxlPart) -> u32 {
    // SAFETY: see above.
    unsafe { (*part).hdm.len() }
}

/// Guest read of the emulated decoder block (`offset` from its start).
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_hdm_read(
    part: *const CxlPart,
    offset: u64,
    size: u32,
) -> u64 {
    // SAFETY: see above.
    unsafe { (*part).read(offset, size) }
}

/// Guest write of the emulated decoder block; a commit maps the memory.
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_hdm_write(
    part: *mut CxlPart,
    offset: u64,
    value: u64,
    size: u32,
) {
    // SAFETY: see above.
    unsafe { (*part).write(offset, value, size) }
}

/// Reset, hold phase: unmap, decoders to their reset values.
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_reset_hold(part: *mut CxlPart) {
    // SAFETY: see above.
    unsafe { (*part).reset_hold() }
}

/// Reset, exit phase: the firmware pre-commit (precommit=on). Never
/// fails: what the guest broke leaves the device without memory. Returns
/// whether decoder 0 is committed and mapped (firmware then sets the
/// DVSEC's Mem_Enable).
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_reset_exit(part: *mut CxlPart) -> bool {
    // SAFETY: see above.
    unsafe { (*part).reset_exit() }
}

/// The device's DVSEC Mem_Enable is now `on`: re-evaluates the route.
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_set_mem_enabled(part: *mut CxlPart, on: bool) {
    // SAFETY: see above.
    let part = unsafe { &mut *part };
    part.mem_enabled = on;
    part.route();
}

/// Re-evaluates the route (e.g. after a PCI Command write).
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`]; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_route(part: *const CxlPart) {
    // SAFETY: see above.
    unsafe { (*part).route() }
}

/// Unmaps the memory and frees the part.
///
/// # Safety
///
/// `part` comes from [`vfio_cxl_part_new`] (or is NULL) and is not used
/// afterwards; BQL held.
#[no_mangle]
pub unsafe extern "C" fn vfio_cxl_part_free(part: *mut CxlPart) {
    if part.is_null() {
        return;
    }
    // SAFETY: the watch vfio_cxl_part_new registered goes first.
    unsafe { bindings::cxl_firmware_unwatch_routes(part.cast()) };
    // SAFETY: see above.
    let mut part = unsafe { Box::from_raw(part) };
    part.unmap();
    // SAFETY: the device is still valid; a no-op without a claim.
    unsafe { bindings::cxl_firmware_release_hb(part.pci) };
}
