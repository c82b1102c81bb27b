// SPDX-License-Identifier: GPL-2.0-or-later

//! [`HdmMemory`]: what cxl-accel, vfio-cxl and vfio-user-cxl do with their
//! device memory, in one place: firmware's pre-commit at reset, the
//! direct mapping into the CXL Fixed Memory Window while HDM decoder 0 is
//! committed, and the route (the mapping answers only while the whole
//! decode path routes the range to the device).
//!
//! The device keeps its HDM decoder model (a `cxl_regs`
//! [`HdmDecoderBlock`]) and an alias of its memory, and lends both, with
//! its DVSEC Mem_Enable, to every call ([`Endpoint`]).

use std::ffi::{CStr, CString};

use cxl_regs::{
    firmware,
    hdm::{FirmwareDecoder, GlobalControl, HdmDecoderBlock, HdmEvent},
    window::HpaRange,
};
use hwcore::DeviceState;
use pci::PCIDevice;
use qom::prelude::*;
use system::MemoryRegion;
use util::{log::Log, log_mask_ln, Error, Result};

use crate::{memory::MemoryRegionExt, platform};

/// The trace events of the device that owns an [`HdmMemory`]; `name` is
/// [`HdmMemory::new`]'s.
pub trait MemoryTrace: Sync {
    fn precommit(&self, name: &CStr, range: HpaRange, window: i32);
    fn commit_failed(&self, name: &CStr, decoder: u32, range: HpaRange);
    fn map(&self, name: &CStr, hpa: HpaRange, dpa: u64);
    fn unmap(&self, name: &CStr, hpa: HpaRange);
    fn route(&self, name: &CStr, hpa: HpaRange, routed: bool);
    fn no_window(&self, name: &CStr, hpa: HpaRange);
}

/// What the device lends its [`HdmMemory`] for one call.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub pci: &'a PCIDevice,
    /// The alias of the device memory mapped into the window (owned by
    /// the device, initialized at realize).
    pub alias: &'a MemoryRegion,
    /// Mem_Enable of the device's CXL Device DVSEC.
    pub mem_enabled: bool,
}

/// The window firmware commits the device into (found at realize).
#[derive(Clone, Copy, Debug)]
struct FwWindow {
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

/// The device memory path of one device, created at realize, released at
/// exit. Only used under the BQL (the device keeps it in a BqlRefCell).
pub struct HdmMemory {
    /// For traces (vfio-cxl: the host device).
    name: CString,
    /// Starts every guest error message, e.g. "cxl-accel".
    prefix: String,
    /// The device in claims ("overlaps the memory of ...").
    owner: String,
    trace: &'static dyn MemoryTrace,
    mem_size: u64,
    precommit: bool,
    window: Option<FwWindow>,
    mapping: Option<Mapping>,
}

impl HdmMemory {
    /// The memory path of device `pci` with `mem_size` bytes of memory:
    /// finds its window and, with `precommit`, claims HDM decoder 0 of
    /// its host bridge for it (here, at realize, not at reset: reset
    /// cannot report an error, and at hot-plug a failure there would end
    /// the running VM). [`HdmMemory::release`] releases the claim.
    pub fn new(
        pci: &PCIDevice,
        name: CString,
        prefix: String,
        trace: &'static dyn MemoryTrace,
        mem_size: u64,
        precommit: bool,
    ) -> Result<Self> {
        let window = match Self::find_window(pci, mem_size) {
            Ok(w) => Some(w),
            Err(e) if precommit => {
                return Err(Error::format(format_args!(
                    "precommit=on needs a CXL window for this device (or set precommit=off): {e}"
                )));
            }
            Err(_) => None,
        };
        let owner = platform::device_name(pci.upcast::<DeviceState>());
        if let Some(w) = window.filter(|_| precommit) {
            let range = w.range.precommit_range(mem_size);
            platform::claim_hb(pci, &owner, range)
                .map_err(|e| Error::format(format_args!("precommit=on: {e}")))?;
        }
        Ok(Self {
            name,
            prefix,
            owner,
            trace,
            mem_size,
            precommit,
            window,
            mapping: None,
        })
    }

    /// The first window that targets only the device's host bridge and
    /// holds its memory ([`firmware::find_window`]).
    fn find_window(pci: &PCIDevice, size: u64) -> Result<FwWindow> {
        let path = platform::Path::of(pci)?;
        let windows = path.windows();
        let w = firmware::find_window(path.hb_id(), path.hdm_for_passthrough, windows.as_slice(), size)
            .map_err(|e| Error::msg(e.to_string()))?;
        Ok(FwWindow {
            range: w.window.range,
            enc_granularity: w.window.enc_granularity,
            index: w.window.index,
        })
    }

    /// Where the device's decoders may commit: its window, or (without
    /// one) the whole address space, where the mapping step looks the
    /// window up (Linux commits decoders anywhere in a window that
    /// targets the host bridge).
    pub fn decoder_window(&self) -> HpaRange {
        self.window.map_or(HpaRange::new(0, u64::MAX), |w| w.range)
    }

    /// Unmaps the memory and releases the host bridge claim (exit).
    pub fn release(&mut self, ep: &Endpoint) {
        self.unmap(ep.alias);
        platform::release_hb(ep.pci);
    }

    /// Enables the mapping only while the whole decode path routes the
    /// committed range to the device: HDM Decoder Enable, DVSEC
    /// Mem_Enable and [`platform::routes`] (Memory Space, D0, the host
    /// bridge's decoders); meanwhile the window's own MMIO answers
    /// (reads 0, writes dropped).
    pub fn route(&self, ep: &Endpoint, hdm: &HdmDecoderBlock) {
        let Some(m) = self.mapping else { return };
        let routed = hdm
            .global_control()
            .is_set(GlobalControl::HDM_DECODER_ENABLE)
            && ep.mem_enabled
            && platform::routes(ep.pci, m.hpa);
        ep.alias.set_enabled(routed);
        self.trace.route(&self.name, m.hpa, routed);
    }

    /// Carries out what a decoder change means for the memory map: a
    /// commit the device cannot map is undone (Error Not Committed).
    pub fn hdm_event(&mut self, ep: &Endpoint, hdm: &mut HdmDecoderBlock, event: HdmEvent) {
        match event {
            HdmEvent::Committed {
                decoder,
                hpa,
                dpa_base,
                ways,
                ..
            } => {
                let mapped = match ways {
                    1 => self.map(ep, hdm, hpa, dpa_base),
                    _ => Err(format!("{ways}-way interleave is not mapped")),
                };
                if let Err(why) = mapped {
                    log_mask_ln!(
                        Log::GuestError,
                        "{}: HDM decoder {decoder} at {:#x}+{:#x} not committed: {why}",
                        self.prefix,
                        hpa.base,
                        hpa.size
                    );
                    hdm.revoke_commit(decoder);
                }
            }
            HdmEvent::Decommitted { .. } => self.unmap(ep.alias),
            HdmEvent::CommitFailed { decoder, error } => {
                log_mask_ln!(
                    Log::GuestError,
                    "{}: HDM decoder {decoder} commit refused: {error}",
                    self.prefix
                );
                let d = hdm.decoder(decoder).copied().unwrap_or_default();
                self.trace
                    .commit_failed(&self.name, decoder, HpaRange::new(d.base, d.size));
            }
        }
    }

    /// Maps `hpa` (inside a non-interleaved window) to device memory from
    /// `dpa_base`: the alias becomes a subregion of the window's
    /// MemoryRegion, so guest accesses reach the memory directly. Why
    /// not, when no such window holds `hpa`, the device is too small, or
    /// another device's memory is mapped there.
    fn map(
        &mut self,
        ep: &Endpoint,
        hdm: &HdmDecoderBlock,
        hpa: HpaRange,
        dpa_base: u64,
    ) -> std::result::Result<(), String> {
        self.unmap(ep.alias);
        let fits = dpa_base
            .checked_add(hpa.size)
            .is_some_and(|end| end <= self.mem_size);
        let windows = platform::all_windows();
        let window = firmware::window_at(windows.as_slice(), hpa).filter(|w| w.window.ways == 1);
        let Some(window) = window.filter(|_| fits) else {
            self.trace.no_window(&self.name, hpa);
            return Err(if fits {
                "it is in no non-interleaved CXL window".into()
            } else {
                format!("DPA {dpa_base:#x} + size runs past the device memory")
            });
        };
        platform::claim_map(ep.alias, &self.owner, hpa).map_err(|e| e.to_string())?;
        self.mapping = Some(Mapping {
            window: window.mr,
            hpa,
        });
        // Enabled only if routed, before it appears in the window.
        self.route(ep, hdm);
        ep.alias.set_alias_offset(dpa_base);
        ep.alias.set_size(hpa.size);
        window
            .mr
            .add_subregion(hpa.base - window.window.range.base, ep.alias);
        self.trace.map(&self.name, hpa, dpa_base);
        Ok(())
    }

    /// Removes the mapping, if any (decommit, reset, CXL Reset, exit).
    pub fn unmap(&mut self, alias: &MemoryRegion) {
        if let Some(m) = self.mapping.take() {
            m.window.del_subregion(alias);
            platform::release_map(alias);
            self.trace.unmap(&self.name, m.hpa);
        }
    }

    /// Firmware's part of reset, after every device (the host bridge
    /// included) has reset its registers: with `precommit`, commit the
    /// host bridge's and the device's decoder 0 (`hdm`) in the window,
    /// 1 GiB-aligned when it fits, and map the memory. A guest can make
    /// this fail (it owns the host bridge's registers), so a failure is
    /// the guest's error: decoder 0 stays uncommitted with Error Not
    /// Committed, the device has no memory, and the VM runs on.
    ///
    /// Whether decoder 0 is committed and mapped afterwards: firmware
    /// then enables CXL.mem (DVSEC Mem_Enable), which is the device's.
    pub fn precommit(&mut self, ep: &Endpoint, hdm: &mut HdmDecoderBlock) -> bool {
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
        if let Err(e) = platform::commit_hb_decoder0(ep.pci, range, window.enc_granularity) {
            log_mask_ln!(
                Log::GuestError,
                "{}: firmware commit of the host bridge failed, the device has no memory: {e}",
                self.prefix
            );
            hdm.firmware_not_committed(0, program);
            return false;
        }
        match hdm.firmware_commit(0, program) {
            Ok(event) => {
                self.trace.precommit(&self.name, range, window.index);
                self.hdm_event(ep, hdm, event);
                self.mapping.is_some()
            }
            Err(e) => {
                log_mask_ln!(
                    Log::GuestError,
                    "{}: firmware commit of decoder 0 failed: {e}",
                    self.prefix
                );
                false
            }
        }
    }
}
