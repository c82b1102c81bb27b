// SPDX-License-Identifier: GPL-2.0-or-later
//! PCI configuration space of the software device: a type-0 header, a PCI
//! Express endpoint capability, and two extended capabilities, the CXL
//! Device DVSEC (virtualized by `cxl_regs::dvsec`, as docs/uapi.md says the
//! host driver does) and the Register Locator DVSEC (read-only).
//!
//! The numbers follow qemu-device's `cxl-accel` (vendor 0x1b36, device
//! 0x0015, class 0x1200, PCIe capability at 0x80, DVSECs at 0x100 and
//! 0x13c, component registers at BAR 0 offset 0), so the two emulated
//! Type-2 devices look alike to a guest.

use cxl_regs::dvsec::{
    self, CxlDeviceDvsec, DvsecConfig, DvsecEvent, CAPABILITY, DVSEC_ID_CXL_DEVICE, DVSEC_LENGTH,
    DVSEC_REVISION,
};
use cxl_regs::reg_locator;
use cxl_regs::type2::{self, OptionalCaps};
pub use cxl_regs::type2::{COMPONENT_BAR, COMPONENT_BAR_OFFSET, EXT_CAP_ID_DVSEC, REGISTER_BLOCKS};

/// Size of PCIe configuration space.
pub const CONFIG_SIZE: usize = 4096;

/// PCI vendor ID (Red Hat, QEMU's ID space) and device ID of `cxl-accel`.
pub const VENDOR_ID: u16 = 0x1b36;
pub const DEVICE_ID: u16 = 0x0015;
/// Class code: processing accelerator (0x12), subclass 0, prog-if 0.
pub const CLASS_CODE: u32 = (type2::CLASS_PROCESSING_ACCELERATOR as u32) << 8;
/// Subsystem IDs QEMU gives its own devices.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
pub const SUBSYSTEM_ID: u16 = 0x1100;

pub const PCI_COMMAND: usize = 0x04;
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_WMASK: u16 = 0x0546; // memory, master, parity, SERR, INTx disable
const PCI_STATUS: usize = 0x06;
const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
const PCI_STATUS_W1C: u16 = 0xf900;
const PCI_BAR0: usize = 0x10;
const PCI_CAPABILITY_LIST: usize = 0x34;
const PCI_INTERRUPT_LINE: usize = 0x3c;

/// PCI Express capability (endpoint, version 2).
pub const PCIE_CAP_OFFSET: usize = type2::PCIE_CAP_OFFSET as usize;
/// Length of a version 2 PCI Express capability.
const PCIE_CAP_LEN: usize = 0x3c;
const PCI_CAP_ID_EXP: u8 = 0x10;
/// Version of a DVSEC extended capability header.
const DVSEC_CAP_VERSION: u32 = 1;
/// The CXL Device DVSEC and the Register Locator right after it.
pub const DEVICE_DVSEC_OFFSET: usize = type2::DEVICE_DVSEC_OFFSET as usize;
pub const REG_LOCATOR_OFFSET: usize = type2::REG_LOCATOR_OFFSET as usize;
/// BAR 0 flags: memory, 64-bit, not prefetchable.
const BAR_MEM_TYPE_64: u32 = 0x4;

/// Config-space bytes owned by the DVSEC model: `[start, end)`.
pub const DVSEC_MODEL_RANGE: (usize, usize) = (
    DEVICE_DVSEC_OFFSET + CAPABILITY as usize,
    DEVICE_DVSEC_OFFSET + DVSEC_LENGTH as usize,
);

/// The HwInit part of the CXL Device DVSEC for `mem_size` bytes: the
/// shared Type-2 layout, plus CXL Reset (with Mem_Clr) and Cache
/// Write-Back and Invalidate capable: both doorbells can be rung; the
/// device carries a CXL Reset out (`CxlDevice`), the write-back is
/// synthesized.
pub fn dvsec_config(mem_size: u64) -> DvsecConfig {
    type2::dvsec_config(
        mem_size,
        OptionalCaps {
            cxl_reset: true,
            cxl_reset_mem_clr: true,
            cache_wb_inv: true,
        },
    )
}

/// PCI configuration space: raw bytes with a write mask and a
/// write-one-to-clear mask (as QEMU's PCI core keeps them), plus the DVSEC
/// model for the bytes it owns.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: Box<[u8; CONFIG_SIZE]>,
    wmask: Box<[u8; CONFIG_SIZE]>,
    w1c: Box<[u8; CONFIG_SIZE]>,
    dvsec: CxlDeviceDvsec,
    mem_size: u64,
    bar_size: u64,
}

impl ConfigSpace {
    /// Power-on state for a device with `mem_size` bytes of memory and a
    /// component BAR of `bar_size` bytes (a power of two >= 16).
    pub fn new(mem_size: u64, bar_size: u64) -> Self {
        let mut c = Self {
            bytes: Box::new([0; CONFIG_SIZE]),
            wmask: Box::new([0; CONFIG_SIZE]),
            w1c: Box::new([0; CONFIG_SIZE]),
            dvsec: CxlDeviceDvsec::new(dvsec_config(mem_size)),
            mem_size,
            bar_size,
        };
        c.set16(0x00, VENDOR_ID);
        c.set16(0x02, DEVICE_ID);
        c.set16(PCI_STATUS, PCI_STATUS_CAP_LIST);
        c.set32(0x08, CLASS_CODE << 8); // revision 0
        c.set16(0x2c, SUBSYSTEM_VENDOR_ID);
        c.set16(0x2e, SUBSYSTEM_ID);
        c.bytes[PCI_CAPABILITY_LIST] = PCIE_CAP_OFFSET as u8;
        c.mask16(PCI_COMMAND, PCI_COMMAND_WMASK, 0);
        c.mask16(PCI_STATUS, 0, PCI_STATUS_W1C);
        c.wmask[0x0c] = 0xff; // cache line size
        c.wmask[PCI_INTERRUPT_LINE] = 0xff;

        // BAR 0/1: a 64-bit memory BAR of bar_size bytes; address bits
        // below the size read as zero, so sizing works through the mask.
        c.set32(PCI_BAR0, BAR_MEM_TYPE_64);
        let low_mask = !(bar_size.max(16) - 1) as u32;
        c.wmask[PCI_BAR0..PCI_BAR0 + 4].copy_from_slice(&low_mask.to_le_bytes());
        c.wmask[PCI_BAR0 + 4..PCI_BAR0 + 8].copy_from_slice(&[0xff; 4]);

        // PCI Express capability v2, endpoint.
        let p = PCIE_CAP_OFFSET;
        c.bytes[p] = PCI_CAP_ID_EXP;
        c.bytes[p + 1] = 0; // end of the list
        c.set16(p + 0x02, 0x0002); // version 2, type 0: PCIe endpoint
        c.set32(p + 0x04, 1 << 15); // DevCap: role-based error reporting
        c.set16(p + 0x08, 0x2810); // DevCtl: MRRS 512, no snoop, relaxed ordering
        c.mask16(p + 0x08, 0x7fff, 0);
        c.mask16(p + 0x0a, 0, 0x000f); // DevSta error bits RW1C
        c.set32(p + 0x0c, 0x0000_0011); // LinkCap: 2.5 GT/s, x1
        c.mask16(p + 0x10, 0x0003, 0); // LinkCtl: ASPM control
        c.set16(p + 0x12, 0x0011); // LinkSta: 2.5 GT/s, x1

        // CXL Device DVSEC, then the Register Locator (end of the list).
        let reg_locator = reg_locator::encode(&REGISTER_BLOCKS);
        c.set32(
            DEVICE_DVSEC_OFFSET,
            ext_cap_header(EXT_CAP_ID_DVSEC, REG_LOCATOR_OFFSET),
        );
        c.set32(
            DEVICE_DVSEC_OFFSET + 4,
            dvsec::header1(dvsec::CXL_VENDOR_ID, DVSEC_REVISION, DVSEC_LENGTH),
        );
        c.set16(DEVICE_DVSEC_OFFSET + 8, dvsec::header2(DVSEC_ID_CXL_DEVICE));
        c.set32(REG_LOCATOR_OFFSET, ext_cap_header(EXT_CAP_ID_DVSEC, 0));
        c.bytes[REG_LOCATOR_OFFSET + 4..REG_LOCATOR_OFFSET + 4 + reg_locator.len()]
            .copy_from_slice(&reg_locator);
        c
    }

    /// A function reset as the host performs it for `VFIO_DEVICE_RESET`
    /// (`pci_try_reset_function`): the function returns to its power-on
    /// state, then the PCI core restores the writable bits of the header
    /// and of the PCI Express capability it saved before (command
    /// register, BARs, cache line size, interrupt line, device and link
    /// control), while the DVSEC shadow goes back to its bind-time state,
    /// as docs/uapi.md says the driver does.
    pub fn function_reset(&mut self) {
        let saved = self.bytes.clone();
        let mut fresh = Self::new(self.mem_size, self.bar_size);
        let restored = (0..0x40).chain(PCIE_CAP_OFFSET..PCIE_CAP_OFFSET + PCIE_CAP_LEN);
        for i in restored {
            let w = fresh.wmask[i];
            fresh.bytes[i] = (fresh.bytes[i] & !w) | (saved[i] & w);
        }
        *self = fresh;
    }

    fn set16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn mask16(&mut self, at: usize, wmask: u16, w1c: u16) {
        self.wmask[at..at + 2].copy_from_slice(&wmask.to_le_bytes());
        self.w1c[at..at + 2].copy_from_slice(&w1c.to_le_bytes());
    }

    /// The DVSEC model (the guest-visible shadow).
    pub fn dvsec(&self) -> &CxlDeviceDvsec {
        &self.dvsec
    }

    /// Reports the end of a CXL Reset a write asked for
    /// ([`CxlDeviceDvsec::cxl_reset_done`]).
    pub fn cxl_reset_done(&mut self, ok: bool) {
        self.dvsec.cxl_reset_done(ok);
    }

    /// Whether Memory Space is enabled in the command register.
    pub fn memory_enabled(&self) -> bool {
        self.read16(PCI_COMMAND) & PCI_COMMAND_MEMORY != 0
    }

    pub fn read16(&self, at: usize) -> u16 {
        let mut b = [0u8; 2];
        self.read(at, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn read32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(at, &mut b);
        u32::from_le_bytes(b)
    }

    fn byte(&self, at: usize) -> u8 {
        let (lo, hi) = DVSEC_MODEL_RANGE;
        if (lo..hi).contains(&at) {
            self.dvsec.read((at - DEVICE_DVSEC_OFFSET) as u16, 1) as u8
        } else {
            self.bytes.get(at).copied().unwrap_or(0)
        }
    }

    /// Reads `buf.len()` bytes at `at`; bytes past the end read as zero
    /// (the caller clips accesses to the region).
    pub fn read(&self, at: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = at.checked_add(i).map_or(0, |a| self.byte(a));
        }
    }

    /// Writes `data` at `at`, dword by dword, and returns what the DVSEC
    /// model asked the device to do (logged by the caller; docs/uapi.md:
    /// doorbells complete in the shadow and are never forwarded).
    pub fn write(&mut self, at: usize, data: &[u8]) -> Vec<DvsecEvent> {
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let addr = at + pos;
            let chunk = (4 - addr % 4).min(data.len() - pos);
            events.extend(self.write_chunk(addr, &data[pos..pos + chunk]));
            pos += chunk;
        }
        events
    }

    /// A write inside one dword.
    fn write_chunk(&mut self, addr: usize, data: &[u8]) -> Vec<DvsecEvent> {
        let (lo, hi) = DVSEC_MODEL_RANGE;
        let mut model: Option<(usize, u32, usize)> = None; // (start, value, len)
        for (i, &v) in data.iter().enumerate() {
            let a = addr + i;
            if a >= CONFIG_SIZE {
                break;
            }
            if (lo..hi).contains(&a) {
                let m = model.get_or_insert((a, 0, 0));
                m.1 |= u32::from(v) << (8 * m.2);
                m.2 += 1;
            } else {
                let old = self.bytes[a];
                let w = self.wmask[a];
                self.bytes[a] = ((old & !w) | (v & w)) & !(v & self.w1c[a]);
            }
        }
        match model {
            Some((start, value, len)) => {
                self.dvsec
                    .write((start - DEVICE_DVSEC_OFFSET) as u16, len as u8, value)
            }
            None => Vec::new(),
        }
    }
}

/// A PCIe extended capability header: ID, version 1, next pointer.
fn ext_cap_header(id: u16, next: usize) -> u32 {
    u32::from(id) | DVSEC_CAP_VERSION << 16 | (next as u32) << 20
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxl_regs::dvsec::{Control2, Status2, CONTROL2, STATUS2};

    fn cfg() -> ConfigSpace {
        ConfigSpace::new(256 << 20, 64 << 10)
    }

    #[test]
    fn ids_and_class() {
        let c = cfg();
        assert_eq!(c.read32(0), 0x0015_1b36);
        assert_eq!(c.read32(0x08) >> 8, 0x12_0000);
        assert_eq!(
            c.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST,
            PCI_STATUS_CAP_LIST
        );
        assert_eq!(c.bytes[PCI_CAPABILITY_LIST], 0x80);
    }

    #[test]
    fn bar_sizing() {
        let mut c = cfg();
        c.write(PCI_BAR0, &u32::MAX.to_le_bytes());
        c.write(PCI_BAR0 + 4, &u32::MAX.to_le_bytes());
        assert_eq!(c.read32(PCI_BAR0), 0xffff_0004);
        assert_eq!(c.read32(PCI_BAR0 + 4), u32::MAX);
        c.write(PCI_BAR0 + 8, &u32::MAX.to_le_bytes());
        assert_eq!(c.read32(PCI_BAR0 + 8), 0, "BAR 2 unimplemented");
    }

    #[test]
    fn command_memory_bit_and_read_only_ids() {
        let mut c = cfg();
        assert!(!c.memory_enabled());
        c.write(PCI_COMMAND, &0xffffu16.to_le_bytes());
        assert!(c.memory_enabled());
        assert_eq!(c.read16(PCI_COMMAND), PCI_COMMAND_WMASK);
        c.write(0, &0u32.to_le_bytes());
        assert_eq!(c.read16(0), VENDOR_ID);
    }

    #[test]
    fn ext_caps_chain_to_both_dvsecs() {
        let c = cfg();
        let h = c.read32(DEVICE_DVSEC_OFFSET);
        assert_eq!(h & 0xffff, 0x23);
        assert_eq!((h >> 20) as usize, REG_LOCATOR_OFFSET);
        assert_eq!(c.read32(REG_LOCATOR_OFFSET) >> 20, 0);
        let mut rl = [0u8; 16];
        c.read(REG_LOCATOR_OFFSET + 4, &mut rl);
        assert_eq!(reg_locator::decode(&rl).unwrap(), REGISTER_BLOCKS.to_vec());
    }

    #[test]
    fn function_reset_restores_the_pci_state_and_resets_the_dvsec() {
        let mut c = cfg();
        c.write(PCI_COMMAND, &0x0006u16.to_le_bytes());
        c.write(PCI_BAR0, &0xfe60_0000u32.to_le_bytes());
        c.write(PCIE_CAP_OFFSET + 0x08, &0x2830u16.to_le_bytes());
        c.write(DEVICE_DVSEC_OFFSET + 0x14, &1u16.to_le_bytes()); // CONFIG_LOCK
        assert!(c.dvsec().config_locked());
        c.function_reset();
        assert_eq!(c.read16(PCI_COMMAND), 0x0006);
        assert_eq!(c.read32(PCI_BAR0), 0xfe60_0004);
        assert_eq!(c.read16(PCIE_CAP_OFFSET + 0x08), 0x2830);
        assert!(!c.dvsec().config_locked());
        assert_eq!(c.read32(0), 0x0015_1b36);
    }

    #[test]
    fn dvsec_doorbell_spanning_a_dword_write() {
        let mut c = cfg();
        // A dword write at 0x110 covers Control2 and Status2.
        let v = Control2::INITIATE_CXL_RESET.mask() as u32;
        let ev = c.write(DEVICE_DVSEC_OFFSET + CONTROL2 as usize, &v.to_le_bytes());
        assert!(matches!(ev[..], [DvsecEvent::CxlResetRequested { .. }]));
        c.cxl_reset_done(true);
        let s2 = Status2(c.read16(DEVICE_DVSEC_OFFSET + STATUS2 as usize));
        assert!(s2.is_set(Status2::CXL_RESET_COMPLETE));
        assert_eq!(c.read16(DEVICE_DVSEC_OFFSET + CONTROL2 as usize), 0);
    }
}
