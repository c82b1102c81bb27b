// SPDX-License-Identifier: GPL-2.0-or-later

//! [`CxlPart`]: the guest-visible CXL state of a passed-through Type-2
//! device, shared by `vfio-cxl` and `vfio-user-cxl`.
//!
//! The host's decoder is committed and locked by its firmware and never
//! reachable by the guest (docs/uapi.md). The guest programs an emulated
//! decoder block instead ([`HdmDecoderBlock`] of `cxl_regs`), overlaid on
//! the component register BAR where the host's block sits. Pre-commit,
//! mapping and route are `cxl-accel`'s ([`HdmMemory`]): when decoder 0
//! commits, the device memory (an alias of the mmap'd CXL_MEM region,
//! owned by the device) is mapped into the CFMW's MemoryRegion at the
//! committed base, so guest accesses go straight to the mapping.

use std::ffi::{CStr, CString};

use cxl_firmware::{Endpoint, HdmMemory, MemoryTrace};
use cxl_regs::{
    hdm::{HdmConfig, HdmDecoderBlock},
    window::HpaRange,
};
use pci::PCIDevice;
use system::MemoryRegion;
use util::Result;

use crate::trace;

/// vfio-cxl's trace events for the shared memory path.
struct VfioTrace;

impl MemoryTrace for VfioTrace {
    fn precommit(&self, name: &CStr, range: HpaRange, window: i32) {
        trace::trace_vfio_cxl_precommit(name, range.base, range.size, window);
    }
    fn commit_failed(&self, name: &CStr, decoder: u32, range: HpaRange) {
        trace::trace_vfio_cxl_commit_failed(name, decoder, range.base, range.size);
    }
    fn map(&self, name: &CStr, hpa: HpaRange, dpa: u64) {
        trace::trace_vfio_cxl_map(name, hpa.base, hpa.size, dpa);
    }
    fn unmap(&self, name: &CStr, hpa: HpaRange) {
        trace::trace_vfio_cxl_unmap(name, hpa.base, hpa.size);
    }
    fn route(&self, name: &CStr, hpa: HpaRange, routed: bool) {
        trace::trace_vfio_cxl_route(name, hpa.base, hpa.size, routed);
    }
    fn no_window(&self, name: &CStr, hpa: HpaRange) {
        trace::trace_vfio_cxl_no_window(name, hpa.base, hpa.size);
    }
}

/// The CXL part of one vfio-cxl / vfio-user-cxl device, created at
/// realize and dropped at exit (after [`CxlPart::release`]). Only used
/// under the BQL. Methods that map or route take the device and its alias
/// of the CXL_MEM region, `mem`: the part maps nothing else.
pub struct CxlPart {
    /// The VFIO device's name (host BDF or vfio-user socket), for traces.
    name: CString,
    hdm: HdmDecoderBlock,
    memory: HdmMemory,
    /// DVSEC Mem_Enable as the device (host driver or server) last
    /// reported it.
    mem_enabled: bool,
}

impl CxlPart {
    /// The part of realized device `pci` with `mem_size` bytes of memory
    /// ([`HdmMemory::new`]: its window and, with `precommit`, the claim of
    /// its host bridge's decoder 0, released by [`CxlPart::release`]).
    pub fn new(pci: &PCIDevice, name: CString, mem_size: u64, precommit: bool) -> Result<Self> {
        let prefix = format!("vfio-cxl {}", name.to_string_lossy());
        let memory = HdmMemory::new(pci, name.clone(), prefix, &VfioTrace, mem_size, precommit)?;
        Ok(Self {
            name,
            hdm: HdmDecoderBlock::new(HdmConfig::single_device_decoder(
                memory.decoder_window(),
                mem_size,
            )),
            memory,
            mem_enabled: false,
        })
    }

    fn endpoint<'a>(&self, pci: &'a PCIDevice, mem: &'a MemoryRegion) -> Endpoint<'a> {
        Endpoint {
            pci,
            alias: mem,
            mem_enabled: self.mem_enabled,
        }
    }

    /// Unmaps the memory and releases the host bridge claim.
    pub fn release(mut self, pci: &PCIDevice, mem: &MemoryRegion) {
        let ep = self.endpoint(pci, mem);
        self.memory.release(&ep);
    }

    /// Length in bytes of the emulated HDM Decoder Capability structure.
    pub fn hdm_len(&self) -> u32 {
        self.hdm.len()
    }

    /// The device's DVSEC Mem_Enable is now `on`: re-evaluates the route.
    pub fn set_mem_enabled(&mut self, pci: &PCIDevice, mem: &MemoryRegion, on: bool) {
        self.mem_enabled = on;
        self.route(pci, mem);
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
    pub fn write(
        &mut self,
        pci: &PCIDevice,
        mem: &MemoryRegion,
        offset: u64,
        value: u64,
        size: u32,
    ) {
        trace::trace_vfio_cxl_hdm_write(&self.name, offset, size, value);
        let Ok(off) = u32::try_from(offset) else {
            return;
        };
        let mut events = vec![self.hdm.write(off, value as u32)];
        if size == 8 {
            events.push(self.hdm.write(off + 4, (value >> 32) as u32));
        }
        let ep = self.endpoint(pci, mem);
        for event in events.into_iter().flatten() {
            self.memory.hdm_event(&ep, &mut self.hdm, event);
        }
        // HDM Decoder Enable may have changed.
        self.memory.route(&ep, &self.hdm);
    }

    /// Re-evaluates whether the mapping answers ([`HdmMemory::route`]).
    pub fn route(&self, pci: &PCIDevice, mem: &MemoryRegion) {
        self.memory.route(&self.endpoint(pci, mem), &self.hdm);
    }

    /// Reset, hold phase: unmap, decoders to their reset values.
    pub fn reset_hold(&mut self, mem: &MemoryRegion) {
        self.memory.unmap(mem);
        self.hdm.reset();
    }

    /// Firmware's part of reset ([`HdmMemory::precommit`]): whether
    /// decoder 0 is committed and mapped afterwards (firmware then enables
    /// CXL.mem in the DVSEC, which the device owns).
    pub fn reset_exit(&mut self, pci: &PCIDevice, mem: &MemoryRegion) -> bool {
        let ep = self.endpoint(pci, mem);
        self.memory.precommit(&ep, &mut self.hdm)
    }
}
