// SPDX-License-Identifier: GPL-2.0-or-later
//! The CXL component register block (CXL r3.1 §8.2.3) of an emulated
//! device: the CXL.cache/mem capability header array followed by the RAS
//! and HDM Decoder capabilities, laid out byte-exact as Linux parses it
//! (drivers/cxl/core/regs.c).

use crate::hdm::{HdmConfig, HdmDecoderBlock, HdmEvent};
use crate::ras::{self, Ras};
use crate::register;

/// Size of a component register block (§8.2.3).
pub const BLOCK_SIZE: u64 = 64 << 10;
/// Start of the CXL.cache and CXL.mem registers in the block (§8.2.3, Table 8-21).
pub const CACHE_MEM_OFFSET: u64 = 0x1000;
/// RAS Capability Structure, relative to the block.
pub const RAS_OFFSET: u64 = CACHE_MEM_OFFSET + 0x80;
/// HDM Decoder Capability Structure, relative to the block.
pub const HDM_OFFSET: u64 = CACHE_MEM_OFFSET + 0x100;

/// CXL_Capability_ID of the capability header itself (§8.2.4.1).
pub const CAP_ID_CXL: u16 = 1;
/// CXL_Capability_ID of the RAS Capability (§8.2.4, Table 8-22).
pub const CAP_ID_RAS: u16 = 2;
/// CXL_Capability_ID of the HDM Decoder Capability.
pub const CAP_ID_HDM: u16 = 5;
/// Versions this model implements: header 1, cache/mem 1, RAS 2, HDM 3.
const CAP_VERSION: u8 = 1;
const CACHE_MEM_VERSION: u8 = 1;
const RAS_VERSION: u8 = 2;
const HDM_VERSION: u8 = 3;

register! {
    /// CXL Capability Header (CXL r3.1 §8.2.4.1), at the cache/mem base.
    pub CapabilityHeader: u32 {
        /// CXL_Capability_ID (1).
        ID = 0, 16;
        /// CXL_Capability_Version.
        VERSION = 16, 4;
        /// CXL_Cache_Mem_Version.
        CACHE_MEM_VERSION = 20, 4;
        /// Array_Size: number of capability headers that follow.
        ARRAY_SIZE = 24, 8;
    }
}

register! {
    /// A capability header array element (CXL r3.1 §8.2.4.2 ff.).
    pub CapabilityPointer: u32 {
        /// CXL_Capability_ID.
        ID = 0, 16;
        /// CXL_Capability_Version.
        VERSION = 16, 4;
        /// Pointer: offset of the capability from the cache/mem base.
        POINTER = 20, 12;
    }
}

/// The capability header array: the header, then RAS and HDM.
fn capability_array() -> [u32; 3] {
    let pointer = |id: u16, version: u8, offset: u64| {
        CapabilityPointer::default()
            .with(CapabilityPointer::ID, id.into())
            .with(CapabilityPointer::VERSION, version.into())
            .with(CapabilityPointer::POINTER, offset - CACHE_MEM_OFFSET)
            .0
    };
    [
        CapabilityHeader::default()
            .with(CapabilityHeader::ID, CAP_ID_CXL.into())
            .with(CapabilityHeader::VERSION, CAP_VERSION.into())
            .with(
                CapabilityHeader::CACHE_MEM_VERSION,
                CACHE_MEM_VERSION.into(),
            )
            .with(CapabilityHeader::ARRAY_SIZE, 2)
            .0,
        pointer(CAP_ID_RAS, RAS_VERSION, RAS_OFFSET),
        pointer(CAP_ID_HDM, HDM_VERSION, HDM_OFFSET),
    ]
}

/// The component register block of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentRegisters {
    ras: Ras,
    hdm: HdmDecoderBlock,
}

/// Which part of the block an aligned dword belongs to.
enum Target {
    CapArray(usize),
    Ras(u32),
    Hdm(u32),
    None,
}

impl ComponentRegisters {
    pub fn new(hdm: HdmConfig) -> Self {
        Self {
            ras: Ras::default(),
            hdm: HdmDecoderBlock::new(hdm),
        }
    }

    pub fn hdm(&self) -> &HdmDecoderBlock {
        &self.hdm
    }

    /// For firmware-style programming ([`HdmDecoderBlock::firmware_commit`]).
    pub fn hdm_mut(&mut self) -> &mut HdmDecoderBlock {
        &mut self.hdm
    }

    pub fn ras_mut(&mut self) -> &mut Ras {
        &mut self.ras
    }

    /// Conventional reset of everything in the block.
    pub fn reset(&mut self) {
        self.ras.reset();
        self.hdm.reset();
    }

    /// What a CXL Reset (CXL r3.1 9.7) does to the block: every HDM
    /// decoder and the HDM Decoder Global Control back to their power-on
    /// values (uncommitted, unlocked, zero, decoding disabled), so the OS
    /// can commit again. The RAS registers are sticky error logs and keep
    /// their values. The caller unmaps what the decoders mapped.
    pub fn cxl_reset(&mut self) {
        self.hdm.reset();
    }

    fn target(&self, offset: u64) -> Target {
        let within = |base: u64, len: u64| offset.checked_sub(base).filter(|&rel| rel < len);
        if let Some(rel) = within(CACHE_MEM_OFFSET, 4 * capability_array().len() as u64) {
            Target::CapArray((rel / 4) as usize)
        } else if let Some(rel) = within(RAS_OFFSET, ras::LENGTH.into()) {
            Target::Ras(rel as u32)
        } else if let Some(rel) = within(HDM_OFFSET, self.hdm.len().into()) {
            Target::Hdm(rel as u32)
        } else {
            Target::None
        }
    }

    fn read32(&self, offset: u64) -> u32 {
        match self.target(offset) {
            Target::CapArray(i) => capability_array()[i],
            Target::Ras(rel) => self.ras.read(rel),
            Target::Hdm(rel) => self.hdm.read(rel),
            Target::None => 0,
        }
    }

    fn write32(&mut self, offset: u64, value: u32) -> Option<HdmEvent> {
        match self.target(offset) {
            Target::Ras(rel) => {
                self.ras.write(rel, value);
                None
            }
            Target::Hdm(rel) => self.hdm.write(rel, value),
            Target::CapArray(_) | Target::None => None,
        }
    }

    /// Reads `size` bytes (4 or 8, naturally aligned) at `offset` in the
    /// block. Other sizes and misaligned accesses read as zero: the spec
    /// allows only 32- and 64-bit accesses here (§8.2.2).
    pub fn read(&self, offset: u64, size: u32) -> u64 {
        match size {
            4 if offset % 4 == 0 => self.read32(offset).into(),
            8 if offset % 8 == 0 => {
                u64::from(self.read32(offset)) | u64::from(self.read32(offset + 4)) << 32
            }
            _ => 0,
        }
    }

    /// Writes `size` bytes at `offset`; a qword is two dwords, low first.
    /// Misaligned or odd-sized writes are ignored.
    pub fn write(&mut self, offset: u64, size: u32, value: u64) -> Option<HdmEvent> {
        match size {
            4 if offset % 4 == 0 => self.write32(offset, value as u32),
            8 if offset % 8 == 0 => {
                let low = self.write32(offset, value as u32);
                let high = self.write32(offset + 4, (value >> 32) as u32);
                low.or(high)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hdm::{self, DecoderControl};
    use crate::window::HpaRange;

    fn regs() -> ComponentRegisters {
        ComponentRegisters::new(HdmConfig::single_device_decoder(
            HpaRange::new(1 << 32, 1 << 32),
            1 << 30,
        ))
    }

    /// Walks the array the way Linux's cxl_probe_component_regs() does.
    fn find_capability(r: &ComponentRegisters, id: u16) -> Option<u64> {
        let header = CapabilityHeader(r.read(CACHE_MEM_OFFSET, 4) as u32);
        assert_eq!(header.get(CapabilityHeader::ID), u64::from(CAP_ID_CXL));
        (1..=header.get(CapabilityHeader::ARRAY_SIZE)).find_map(|i| {
            let entry = CapabilityPointer(r.read(CACHE_MEM_OFFSET + 4 * i, 4) as u32);
            (entry.get(CapabilityPointer::ID) == u64::from(id))
                .then(|| CACHE_MEM_OFFSET + entry.get(CapabilityPointer::POINTER))
        })
    }

    #[test]
    fn capability_array_points_at_ras_and_hdm() {
        let r = regs();
        assert_eq!(find_capability(&r, CAP_ID_RAS), Some(RAS_OFFSET));
        assert_eq!(find_capability(&r, CAP_ID_HDM), Some(HDM_OFFSET));
        assert_eq!(
            r.read(HDM_OFFSET, 4),
            u64::from(r.hdm().config().capability().0)
        );
        // Byte-exact first dword: ID 1, version 1, cache/mem version 1, two entries.
        assert_eq!(r.read(CACHE_MEM_OFFSET, 4), 0x0211_0001);
    }

    #[test]
    fn qword_write_commits_and_reads_back() {
        let mut r = regs();
        r.write(HDM_OFFSET + u64::from(hdm::base_low(0)), 8, 1 << 32);
        r.write(HDM_OFFSET + u64::from(hdm::size_low(0)), 8, 256 << 20);
        let commit = DecoderControl::default().with(DecoderControl::COMMIT, 1).0;
        let ev = r.write(HDM_OFFSET + u64::from(hdm::control(0)), 8, commit.into());
        assert!(matches!(ev, Some(HdmEvent::Committed { .. })));
        assert_eq!(r.read(HDM_OFFSET + u64::from(hdm::base_low(0)), 8), 1 << 32);
    }

    #[test]
    fn cxl_reset_returns_a_locked_decoder_to_power_on_and_allows_a_new_commit() {
        use crate::hdm::{FirmwareDecoder, GlobalControl};
        let mut r = regs();
        let power_on = r.clone();
        let program = FirmwareDecoder {
            range: HpaRange::new(1 << 32, 256 << 20),
            eiw: 0,
            eig: 0,
            target_or_skip: 0,
            host_only: false,
            lock: true,
        };
        assert!(r.hdm_mut().firmware_commit(0, program).is_ok());
        r.ras_mut().raise_uncorrectable(3);
        let ras_before = r.read(RAS_OFFSET, 4);
        r.cxl_reset();
        assert_eq!(
            r.hdm(),
            power_on.hdm(),
            "decoders and global control at power-on"
        );
        assert!(!r.hdm().decoder(0).unwrap().committed());
        assert!(!r.hdm().decoder(0).unwrap().locked());
        assert!(!r
            .hdm()
            .global_control()
            .is_set(GlobalControl::HDM_DECODER_ENABLE));
        assert_eq!(r.read(RAS_OFFSET, 4), ras_before, "RAS status is sticky");
        // The OS programs decoder 0 again, as firmware did, with Lock On Commit.
        r.write(HDM_OFFSET + u64::from(hdm::base_low(0)), 8, 1 << 32);
        r.write(HDM_OFFSET + u64::from(hdm::size_low(0)), 8, 256 << 20);
        let commit = DecoderControl::default()
            .with(DecoderControl::COMMIT, 1)
            .with(DecoderControl::LOCK_ON_COMMIT, 1)
            .0;
        let ev = r.write(HDM_OFFSET + u64::from(hdm::control(0)), 4, commit.into());
        assert!(matches!(ev, Some(HdmEvent::Committed { .. })), "{ev:?}");
        assert!(r.hdm().decoder(0).unwrap().locked());
    }

    #[test]
    fn the_capability_array_is_read_only_and_odd_accesses_are_ignored() {
        let mut r = regs();
        let before = r.clone();
        r.write(CACHE_MEM_OFFSET, 4, 0);
        r.write(HDM_OFFSET + 2, 4, u64::MAX);
        r.write(HDM_OFFSET + 4, 8, u64::MAX);
        r.write(HDM_OFFSET + 4, 2, u64::MAX);
        r.write(BLOCK_SIZE + 0x1000, 4, u64::MAX);
        assert_eq!(r, before);
        assert_eq!(r.read(HDM_OFFSET + 4, 8), 0);
        assert_eq!(r.read(u64::MAX - 3, 4), 0);
    }
}
