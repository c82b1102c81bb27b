// SPDX-License-Identifier: GPL-2.0-or-later

//! [`CxlPart`]: the guest-visible CXL state of a passed-through Type-2
//! device, shared by `vfio-cxl` and `vfio-user-cxl`.
//!
//! The host's decoder is committed and locked by its firmware and never
//! reachable by the guest (docs/uapi.md). The guest programs an emulated
//! decoder block instead ([`HdmDecoderBlock`] of `cxl_regs`), overlaid on
//! the component register BAR where the host's block sits. When its
//! decoder 0 commits, the device memory (an alias of the mmap'd CXL_MEM
//! region, owned by the device) is mapped into the CFMW's MemoryRegion at
//! the committed base, so guest accesses go straight to the mapping.

use std::ffi::CString;

use cxl_regs::{
    hdm::{FirmwareDecoder, GlobalControl, HdmConfig, HdmDecoderBlock, HdmEvent},
    window::HpaRange,
};
use system::MemoryRegion;
use util::{log::Log, log_mask_ln, Error, Result};

use crate::{bindings, memory::MemoryRegionExt, trace};

/// The CFMW firmware commits the device into (found at creation).
#[derive(Clone, Copy, Debug)]
struct Window {
    range: HpaRange,
    enc_granularity: u8,
    index: i32,
}

/// Where device memory is mapped while decoder 0 is committed.
#[derive(Clone, Copy)]
struct Mapping {
    /// The window's MemoryRegion, which lives as long as the machine.
    window: &'static MemoryRegion,
    hpa: HpaRange,
}

/// The CXL part of one vfio-cxl / vfio-user-cxl device, created at
/// realize and dropped at exit (after [`CxlPart::release`]). Only used
/// under the BQL. Methods that map or route take the device's alias of
/// the CXL_MEM region, `mem`: the part maps nothing else.
pub struct CxlPart {
    /// The device, for the host bridge commit and the route.
    pci: *mut pci::bindings::PCIDevice,
    /// The VFIO device's name (host BDF or vfio-user socket), for traces.
    name: CString,
    mem_size: u64,
    precommit: bool,
    window: Option<Window>,
    hdm: HdmDecoderBlock,
    mapping: Option<Mapping>,
    /// DVSEC Mem_Enable as the device (host driver or server) last
    /// reported it.
    mem_enabled: bool,
}

// SAFETY: `pci` is the realized device that owns the part, only passed to
// C calls made under the BQL; `Mapping::window` is the machine's window
// region. The part lives in a BqlRefCell, so it is only used under the
// BQL.
unsafe impl Send for CxlPart {}

impl CxlPart {
    /// The part of realized device `pci`: finds its window and, with
    /// `precommit`, claims HDM decoder 0 of its host bridge for it (here,
    /// not at reset: reset cannot report an error, and at hot-plug a
    /// failure there would end the running VM). The claim is released by
    /// [`CxlPart::release`].
    pub fn new(
        pci: *mut pci::bindings::PCIDevice,
        name: CString,
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
                return Err(Error::format(format_args!(
                    "precommit=on needs a CXL window for this device (or set precommit=off): {e}"
                )));
            }
            Err(_) => None,
        };
        if let Some(w) = window.filter(|_| precommit) {
            let range = w.range.precommit_range(mem_size);
            // SAFETY: as for cxl_firmware_find_window above.
            unsafe {
                Error::with_errp(|errp| {
                    bindings::cxl_firmware_claim_hb(pci, range.base, range.size, errp)
                })
            }
            .map_err(|e| Error::format(format_args!("precommit=on: {e}")))?;
        }
        // Without a window of our own, the guest may commit anywhere; the
        // mapping step looks the window up.
        let hdm_window = window.map_or(HpaRange::new(0, u64::MAX), |w| w.range);
        Ok(Self {
            pci,
            name,
            mem_size,
            precommit,
            window,
            hdm: HdmDecoderBlock::new(HdmConfig::single_device_decoder(hdm_window, mem_size)),
            mapping: None,
            mem_enabled: false,
        })
    }

    /// Unmaps the memory and releases the host bridge claim.
    pub fn release(mut self, mem: &MemoryRegion) {
        self.unmap(mem);
        // SAFETY: the device is still realized; a no-op without a claim.
        unsafe { bindings::cxl_firmware_release_hb(self.pci) };
    }

    /// Length in bytes of the emulated HDM Decoder Capability structure.
    pub fn hdm_len(&self) -> u32 {
        self.hdm.len()
    }

    /// The device's DVSEC Mem_Enable is now `on`: re-evaluates the route.
    pub fn set_mem_enabled(&mut self, mem: &MemoryRegion, on: bool) {
        self.mem_enabled = on;
        self.route(mem);
    }

    /// Guest read of the emulated decoder block (`offset` from its start).
    pub fn read(&self, offset: u64, size: u32) -> u64 {
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

    /// Guest write of the emulated decoder block; a commit maps the memory.
    pub fn write(&mut self, mem: &MemoryRegion, offset: u64, value: u64, size: u32) {
        trace::trace_vfio_cxl_hdm_write(&self.name, offset, size, value);
        let Ok(off) = u32::try_from(offset) else {
            return;
        };
        let mut events = vec![self.hdm.write(off, value as u32)];
        if size == 8 {
            events.push(self.hdm.write(off + 4, (value >> 32) as u32));
        }
        for event in events.into_iter().flatten() {
            self.hdm_event(mem, event);
        }
        // HDM Decoder Enable may have changed.
        self.route(mem);
    }

    /// Enables the mapping only while the whole decode path routes the
    /// committed range to this device (cxl_firmware_routes: host bridge
    /// decoder, HDM Decoder Enable, DVSEC Mem_Enable, Memory Space);
    /// meanwhile the window's own MMIO answers (reads 0, writes dropped).
    pub fn route(&self, mem: &MemoryRegion) {
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
        mem.set_enabled(routed);
        trace::trace_vfio_cxl_route(&self.name, m.hpa.base, m.hpa.size, routed);
    }

    /// Carries out what a decoder change means for the memory map.
    fn hdm_event(&mut self, mem: &MemoryRegion, event: HdmEvent) {
        match event {
            HdmEvent::Committed {
                decoder,
                hpa,
                dpa_base,
                ways,
                ..
            } => {
                let mapped = match ways {
                    1 => self.map(mem, hpa, dpa_base),
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
            HdmEvent::Decommitted { .. } => self.unmap(mem),
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
    fn map(
        &mut self,
        mem: &MemoryRegion,
        hpa: HpaRange,
        dpa_base: u64,
    ) -> std::result::Result<(), String> {
        self.unmap(mem);
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
                bindings::cxl_firmware_claim_map(mem.as_mut_ptr().cast(), hpa.base, hpa.size, errp)
            })
        }
        .map_err(|e| e.to_string())?;
        // SAFETY: the window's MemoryRegion, which lives as long as the
        // machine.
        let window = unsafe { MemoryRegion::from_raw(fw.mr.cast()) };
        self.mapping = Some(Mapping { window, hpa });
        // Enabled only if routed, before it appears in the window.
        self.route(mem);
        mem.set_alias_offset(dpa_base);
        mem.set_size(hpa.size);
        window.add_subregion(hpa.base - fw.base, mem);
        trace::trace_vfio_cxl_map(&self.name, hpa.base, hpa.size, dpa_base);
        Ok(())
    }

    fn unmap(&mut self, mem: &MemoryRegion) {
        if let Some(m) = self.mapping.take() {
            m.window.del_subregion(mem);
            // SAFETY: the claim map() made is keyed by the alias.
            unsafe { bindings::cxl_firmware_release_map(mem.as_mut_ptr().cast()) };
            trace::trace_vfio_cxl_unmap(&self.name, m.hpa.base, m.hpa.size);
        }
    }

    /// Reset, hold phase: unmap, decoders to their reset values.
    pub fn reset_hold(&mut self, mem: &MemoryRegion) {
        self.unmap(mem);
        self.hdm.reset();
    }

    /// Firmware's part of reset, after every device (the host bridge
    /// included) has reset its registers: commit the host bridge's and our
    /// decoder 0 in the window, 1 GiB-aligned when it fits. A guest can
    /// make this fail (it owns the host bridge's registers), so a failure
    /// is the guest's error: decoder 0 stays uncommitted with Error Not
    /// Committed, the device has no memory, and the VM runs on.
    /// Whether decoder 0 is committed and mapped afterwards (firmware then
    /// enables CXL.mem in the DVSEC, which the device owns).
    pub fn reset_exit(&mut self, mem: &MemoryRegion) -> bool {
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
                "vfio-cxl {}: firmware commit of the host bridge failed, the device has no \
                 memory: {e}",
                self.name.to_string_lossy()
            );
            self.hdm.firmware_not_committed(0, program);
            return false;
        }
        match self.hdm.firmware_commit(0, program) {
            Ok(event) => {
                trace::trace_vfio_cxl_precommit(&self.name, range.base, range.size, window.index);
                self.hdm_event(mem, event);
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
}
