// SPDX-License-Identifier: GPL-2.0-or-later
//! The PCIe DVSEC for CXL Devices (CXL r3.1 §8.1.3, DVSEC ID 0) and the
//! rules for guest writes to it.
//!
//! Offsets are relative to the start of the DVSEC (its extended capability
//! header). The device owns the headers (placing the capability in config
//! space is the emulator's job); this model owns everything from
//! [`CAPABILITY`] to the end of the structure.

use crate::register;

/// PCI vendor ID of the CXL consortium (DVSEC Vendor ID of every CXL DVSEC).
pub const CXL_VENDOR_ID: u16 = 0x1e98;
/// DVSEC ID of the PCIe DVSEC for CXL Devices (CXL r3.1 §8.1.3).
pub const DVSEC_ID_CXL_DEVICE: u16 = 0;
/// DVSEC Revision of the layout modelled here (with Capability3).
pub const DVSEC_REVISION: u8 = 2;
/// Length of the structure for [`DVSEC_REVISION`] (CXL r3.1 §8.1.3).
pub const DVSEC_LENGTH: u16 = 0x3c;

/// DVSEC Header 1 (PCIe r6 §7.9.6.2): vendor, revision, length.
pub fn header1(vendor: u16, revision: u8, length: u16) -> u32 {
    u32::from(vendor) | u32::from(revision & 0xf) << 16 | u32::from(length & 0xfff) << 20
}

/// DVSEC Header 2 (PCIe r6 §7.9.6.3): the DVSEC ID.
pub fn header2(id: u16) -> u16 {
    id
}

/// DVSEC CXL Capability (CXL r3.1 §8.1.3.1), offset 0x0a.
pub const CAPABILITY: u16 = 0x0a;
/// DVSEC CXL Control (§8.1.3.2), offset 0x0c.
pub const CONTROL: u16 = 0x0c;
/// DVSEC CXL Status (§8.1.3.3), offset 0x0e.
pub const STATUS: u16 = 0x0e;
/// DVSEC CXL Control2 (§8.1.3.4), offset 0x10.
pub const CONTROL2: u16 = 0x10;
/// DVSEC CXL Status2 (§8.1.3.5), offset 0x12.
pub const STATUS2: u16 = 0x12;
/// DVSEC CXL Lock (§8.1.3.6), offset 0x14.
pub const LOCK: u16 = 0x14;
/// DVSEC CXL Capability2 (§8.1.3.7), offset 0x16.
pub const CAPABILITY2: u16 = 0x16;
/// DVSEC CXL Range n Size High (§8.1.3.8), n = 0 or 1.
pub const fn range_size_high(n: u16) -> u16 {
    0x18 + 0x10 * n
}
/// DVSEC CXL Range n Size Low (§8.1.3.9).
pub const fn range_size_low(n: u16) -> u16 {
    0x1c + 0x10 * n
}
/// DVSEC CXL Range n Base High (§8.1.3.10).
pub const fn range_base_high(n: u16) -> u16 {
    0x20 + 0x10 * n
}
/// DVSEC CXL Range n Base Low (§8.1.3.11).
pub const fn range_base_low(n: u16) -> u16 {
    0x24 + 0x10 * n
}
/// DVSEC CXL Capability3 (§8.1.3.12), offset 0x38.
pub const CAPABILITY3: u16 = 0x38;
/// Number of DVSEC memory ranges.
pub const RANGES: usize = 2;

register! {
    /// DVSEC CXL Capability (CXL r3.1 §8.1.3.1). HwInit.
    pub Capability: u16 {
        /// Cache_Capable.
        CACHE_CAPABLE = 0, 1;
        /// IO_Capable (always 1).
        IO_CAPABLE = 1, 1;
        /// Mem_Capable.
        MEM_CAPABLE = 2, 1;
        /// Mem_HwInit_Mode.
        MEM_HWINIT_MODE = 3, 1;
        /// HDM_Count: number of DVSEC ranges (1 or 2).
        HDM_COUNT = 4, 2;
        /// Cache Writeback and Invalidate Capable.
        CACHE_WB_INV_CAPABLE = 6, 1;
        /// CXL Reset Capable.
        CXL_RESET_CAPABLE = 7, 1;
        /// CXL Reset Timeout (encoded).
        CXL_RESET_TIMEOUT = 8, 3;
        /// CXL Reset Mem Clr Capable.
        CXL_RESET_MEM_CLR_CAPABLE = 11, 1;
        /// TSP Capable.
        TSP_CAPABLE = 12, 1;
        /// Multiple Logical Device.
        MLD = 13, 1;
        /// Viral Capable.
        VIRAL_CAPABLE = 14, 1;
        /// PM Init Completion Reporting Capable.
        PM_INIT_COMPLETION_REPORTING = 15, 1;
    }
}

register! {
    /// DVSEC CXL Control (CXL r3.1 §8.1.3.2). RWL: locked by CONFIG_LOCK.
    pub Control: u16 {
        /// Cache_Enable.
        CACHE_ENABLE = 0, 1;
        /// IO_Enable (RO, reads 1).
        IO_ENABLE = 1, 1;
        /// Mem_Enable.
        MEM_ENABLE = 2, 1;
        /// Cache_SF_Coverage.
        CACHE_SF_COVERAGE = 3, 5;
        /// Cache_SF_Granularity.
        CACHE_SF_GRANULARITY = 8, 3;
        /// Cache_Clean_Eviction.
        CACHE_CLEAN_EVICTION = 11, 1;
        /// Direct P2P Mem Enable.
        P2P_MEM_ENABLE = 12, 1;
        /// Viral_Enable.
        VIRAL_ENABLE = 14, 1;
    }
}

register! {
    /// DVSEC CXL Status (CXL r3.1 §8.1.3.3).
    pub Status: u16 {
        /// Viral_Status (RW1CS).
        VIRAL_STATUS = 14, 1;
    }
}

register! {
    /// DVSEC CXL Control2 (CXL r3.1 §8.1.3.4).
    pub Control2: u16 {
        /// Disable Caching.
        DISABLE_CACHING = 0, 1;
        /// Initiate Cache Write Back and Invalidation (doorbell, reads 0).
        INITIATE_CACHE_WB_INV = 1, 1;
        /// Initiate CXL Reset (doorbell, reads 0).
        INITIATE_CXL_RESET = 2, 1;
        /// CXL Reset Mem Clr Enable.
        CXL_RESET_MEM_CLR_ENABLE = 3, 1;
        /// Desired Volatile HDM State after Hot Reset (RWS).
        DESIRED_VOLATILE_HDM_STATE = 4, 1;
        /// Modified Completion Enable.
        MODIFIED_COMPLETION_ENABLE = 5, 1;
    }
}

register! {
    /// DVSEC CXL Status2 (CXL r3.1 §8.1.3.5).
    pub Status2: u16 {
        /// Cache Invalid.
        CACHE_INVALID = 0, 1;
        /// CXL Reset Complete.
        CXL_RESET_COMPLETE = 1, 1;
        /// CXL Reset Error.
        CXL_RESET_ERROR = 2, 1;
        /// Volatile HDM Preservation Error (RW1CS).
        VOLATILE_HDM_PRESERVATION_ERROR = 3, 1;
        /// Power Management Initialization Complete.
        PM_INIT_COMPLETE = 15, 1;
    }
}

register! {
    /// DVSEC CXL Lock (CXL r3.1 §8.1.3.6).
    pub Lock: u16 {
        /// CONFIG_LOCK (RWO): freezes every RWL field until reset.
        CONFIG_LOCK = 0, 1;
    }
}

register! {
    /// DVSEC CXL Range n Size Low (CXL r3.1 §8.1.3.9). RO.
    pub RangeSizeLow: u32 {
        /// Memory_Info_Valid.
        MEMORY_INFO_VALID = 0, 1;
        /// Memory_Active.
        MEMORY_ACTIVE = 1, 1;
        /// Media_Type.
        MEDIA_TYPE = 2, 3;
        /// Memory_Class.
        MEMORY_CLASS = 5, 3;
        /// Desired_Interleave.
        DESIRED_INTERLEAVE = 8, 5;
        /// Memory_Active_Timeout.
        MEMORY_ACTIVE_TIMEOUT = 13, 3;
        /// Memory_Size_Low: size bits [31:28].
        MEMORY_SIZE_LOW = 28, 4;
    }
}

register! {
    /// DVSEC CXL Range n Base Low (CXL r3.1 §8.1.3.11). RWL.
    pub RangeBaseLow: u32 {
        /// Memory_Base_Low: base bits [31:28].
        MEMORY_BASE_LOW = 28, 4;
    }
}

register! {
    /// DVSEC CXL Capability3 (CXL r3.1 §8.1.3.12). HwInit.
    pub Capability3: u16 {
        /// Default Volatile HDM State after Cold Reset.
        VOLATILE_HDM_COLD = 0, 1;
        /// Default Volatile HDM State after Warm Reset.
        VOLATILE_HDM_WARM = 1, 1;
        /// Default Volatile HDM State after Hot Reset.
        VOLATILE_HDM_HOT = 2, 1;
        /// Volatile HDM State after Hot Reset - Configurability.
        VOLATILE_HDM_HOT_CONFIGURABLE = 3, 1;
        /// Direct P2P Mem Capable.
        P2P_MEM_CAPABLE = 4, 1;
    }
}

/// Granularity of DVSEC range base and size (CXL r3.1 §8.1.3.9): 256 MiB.
pub const RANGE_ALIGN: u64 = 256 << 20;

/// What the device reports for one DVSEC memory range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeInfo {
    /// Size in bytes, a multiple of [`RANGE_ALIGN`].
    pub size: u64,
    /// Memory_Active: the media is ready.
    pub active: bool,
    /// Media_Type / Memory_Class encodings (§8.1.3.9).
    pub media_type: u8,
    pub memory_class: u8,
}

/// The device-defined (HwInit) part of the DVSEC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DvsecConfig {
    pub capability: Capability,
    pub capability2: u16,
    pub capability3: Capability3,
    pub ranges: [Option<RangeInfo>; RANGES],
}

/// A side effect a guest write asks the emulator to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DvsecEvent {
    /// Initiate CXL Reset was written on a CXL Reset capable device.
    /// CXL_Reset_Complete and CXL_Reset_Error now read 0 until the emulator
    /// has carried the reset out and reports it with
    /// [`CxlDeviceDvsec::cxl_reset_done`]. `clear_memory`: Mem_Clr was
    /// enabled (and the device is Mem_Clr capable).
    CxlResetRequested { clear_memory: bool },
    /// Initiate Cache Write Back and Invalidation was written.
    CacheWbInvRequested,
    /// Mem_Enable changed.
    MemEnable(bool),
}

/// Write behaviour of one register (attribute names of CXL r3.1 §8.1.3).
#[derive(Clone, Copy, Debug)]
struct Rule {
    offset: u16,
    bytes: u16,
    /// RW bits (RWL included).
    rw: u32,
    /// RW1C(S) bits.
    rw1c: u32,
    /// Bits of `rw` that CONFIG_LOCK freezes (RWL).
    locked_by_config_lock: u32,
    /// Bits that survive a conventional reset (the "S" attributes).
    sticky: u32,
}

const fn mask16<R: crate::bits::Register>(fields: &[crate::bits::Field<R>]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < fields.len() {
        m |= fields[i].mask();
        i += 1;
    }
    m as u32
}

const CONTROL_RWL: u32 = mask16(&[
    Control::CACHE_ENABLE,
    Control::MEM_ENABLE,
    Control::CACHE_SF_COVERAGE,
    Control::CACHE_SF_GRANULARITY,
    Control::CACHE_CLEAN_EVICTION,
    Control::P2P_MEM_ENABLE,
    Control::VIRAL_ENABLE,
]);
const CONTROL2_RW: u32 = mask16(&[
    Control2::DISABLE_CACHING,
    Control2::CXL_RESET_MEM_CLR_ENABLE,
    Control2::DESIRED_VOLATILE_HDM_STATE,
    Control2::MODIFIED_COMPLETION_ENABLE,
]);
const BASE_LOW_RWL: u32 = mask16(&[RangeBaseLow::MEMORY_BASE_LOW]);

const RULES: [Rule; 9] = [
    Rule {
        offset: CONTROL,
        bytes: 2,
        rw: CONTROL_RWL,
        rw1c: 0,
        locked_by_config_lock: CONTROL_RWL,
        sticky: 0,
    },
    Rule {
        offset: STATUS,
        bytes: 2,
        rw: 0,
        rw1c: mask16(&[Status::VIRAL_STATUS]),
        locked_by_config_lock: 0,
        sticky: mask16(&[Status::VIRAL_STATUS]),
    },
    Rule {
        offset: CONTROL2,
        bytes: 2,
        rw: CONTROL2_RW,
        rw1c: 0,
        locked_by_config_lock: 0,
        sticky: mask16(&[Control2::DESIRED_VOLATILE_HDM_STATE]),
    },
    Rule {
        offset: STATUS2,
        bytes: 2,
        rw: 0,
        rw1c: mask16(&[Status2::VOLATILE_HDM_PRESERVATION_ERROR]),
        locked_by_config_lock: 0,
        sticky: mask16(&[Status2::VOLATILE_HDM_PRESERVATION_ERROR]),
    },
    Rule {
        offset: LOCK,
        bytes: 2,
        rw: mask16(&[Lock::CONFIG_LOCK]),
        rw1c: 0,
        locked_by_config_lock: mask16(&[Lock::CONFIG_LOCK]),
        sticky: 0,
    },
    Rule {
        offset: range_base_high(0),
        bytes: 4,
        rw: u32::MAX,
        rw1c: 0,
        locked_by_config_lock: u32::MAX,
        sticky: 0,
    },
    Rule {
        offset: range_base_low(0),
        bytes: 4,
        rw: BASE_LOW_RWL,
        rw1c: 0,
        locked_by_config_lock: BASE_LOW_RWL,
        sticky: 0,
    },
    Rule {
        offset: range_base_high(1),
        bytes: 4,
        rw: u32::MAX,
        rw1c: 0,
        locked_by_config_lock: u32::MAX,
        sticky: 0,
    },
    Rule {
        offset: range_base_low(1),
        bytes: 4,
        rw: BASE_LOW_RWL,
        rw1c: 0,
        locked_by_config_lock: BASE_LOW_RWL,
        sticky: 0,
    },
];

/// The CXL Device DVSEC as a guest sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CxlDeviceDvsec {
    config: DvsecConfig,
    /// The structure's bytes, little-endian as in config space.
    bytes: [u8; DVSEC_LENGTH as usize],
}

impl CxlDeviceDvsec {
    /// The DVSEC after power-on, reporting `config`.
    pub fn new(config: DvsecConfig) -> Self {
        let mut dvsec = Self {
            config,
            bytes: [0; DVSEC_LENGTH as usize],
        };
        dvsec.defaults();
        dvsec
    }

    /// The configuration the DVSEC was built from.
    pub fn config(&self) -> &DvsecConfig {
        &self.config
    }

    /// Conventional reset: defaults everywhere except the sticky bits.
    pub fn reset(&mut self) {
        let mut keep = [0u32; RULES.len()];
        for (k, rule) in keep.iter_mut().zip(RULES.iter()) {
            *k = self.load(rule.offset, rule.bytes.into()) & rule.sticky;
        }
        self.defaults();
        for (k, rule) in keep.iter().zip(RULES.iter()) {
            let v = self.load(rule.offset, rule.bytes.into()) | k;
            self.store(rule.offset, rule.bytes.into(), v);
        }
    }

    /// Power-on (cold) reset: everything back to defaults, sticky bits too.
    pub fn power_on(&mut self) {
        self.defaults();
    }

    /// Power-on values of every register.
    fn defaults(&mut self) {
        self.bytes = [0; DVSEC_LENGTH as usize];
        let c = self.config;
        self.store16(CAPABILITY, c.capability.with(Capability::IO_CAPABLE, 1).0);
        self.store16(CONTROL, Control::default().with(Control::IO_ENABLE, 1).0);
        self.store16(CAPABILITY2, c.capability2);
        self.store16(CAPABILITY3, c.capability3.0);
        self.store16(
            STATUS2,
            Status2::default().with(Status2::PM_INIT_COMPLETE, 1).0,
        );
        for (n, range) in c.ranges.iter().enumerate() {
            let Some(r) = range else { continue };
            let n = n as u16;
            let low = RangeSizeLow::default()
                .with(RangeSizeLow::MEMORY_INFO_VALID, 1)
                .with(RangeSizeLow::MEMORY_ACTIVE, r.active.into())
                .with(RangeSizeLow::MEDIA_TYPE, r.media_type.into())
                .with(RangeSizeLow::MEMORY_CLASS, r.memory_class.into())
                .with(RangeSizeLow::MEMORY_SIZE_LOW, (r.size >> 28) & 0xf);
            self.store(range_size_high(n), 4, (r.size >> 32) as u32);
            self.store(range_size_low(n), 4, low.0);
        }
    }

    /// Whether CONFIG_LOCK is set.
    pub fn config_locked(&self) -> bool {
        Lock(self.load16(LOCK)).is_set(Lock::CONFIG_LOCK)
    }

    /// The Control register.
    pub fn control(&self) -> Control {
        Control(self.load16(CONTROL))
    }

    /// The Status2 register.
    pub fn status2(&self) -> Status2 {
        Status2(self.load16(STATUS2))
    }

    /// The base of DVSEC range `n` as programmed.
    pub fn range_base(&self, n: usize) -> u64 {
        let n = n as u16;
        u64::from(self.load(range_base_high(n), 4)) << 32
            | u64::from(self.load(range_base_low(n), 4))
    }

    /// Reads `size` (1, 2 or 4) bytes at `offset`; bytes outside the
    /// structure, or the headers this model does not own, read as zero.
    pub fn read(&self, offset: u16, size: u8) -> u32 {
        (0..u16::from(size.min(4)))
            .map(|i| match offset.checked_add(i) {
                Some(o) if (CAPABILITY..DVSEC_LENGTH).contains(&o) => {
                    u32::from(self.bytes[usize::from(o)]) << (8 * i)
                }
                _ => 0,
            })
            .fold(0, |acc, b| acc | b)
    }

    /// A guest write of `size` (1, 2 or 4) bytes at `offset`. Read-only
    /// and locked bits keep their value; bytes outside the structure are
    /// ignored. Returns the side effects the emulator must carry out.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) -> Vec<DvsecEvent> {
        let mut events = Vec::new();
        let size = u16::from(size.min(4));
        let locked = self.config_locked();
        let mem_enable_before = self.control().is_set(Control::MEM_ENABLE);
        for rule in &RULES {
            let (lo, hi) = (rule.offset, rule.offset + rule.bytes);
            let Some(end) = offset.checked_add(size) else {
                return events;
            };
            if end <= lo || offset >= hi {
                continue;
            }
            // Byte lanes of the access that fall into this register.
            let (mut data, mut enable) = (0u32, 0u32);
            for i in 0..size {
                let o = offset + i;
                if (lo..hi).contains(&o) {
                    let lane = 8 * u32::from(o - lo);
                    data |= ((value >> (8 * i)) & 0xff) << lane;
                    enable |= 0xff << lane;
                }
            }
            let old = self.load(rule.offset, rule.bytes.into());
            let writable = if locked {
                rule.rw & !rule.locked_by_config_lock
            } else {
                rule.rw
            };
            let written = enable & writable;
            let mut new = (old & !written) | (data & written);
            new &= !(data & enable & rule.rw1c);
            self.store(rule.offset, rule.bytes.into(), new);
            if rule.offset == CONTROL2 {
                self.doorbells(Control2(data as u16), enable, &mut events);
            }
        }
        let mem_enable = self.control().is_set(Control::MEM_ENABLE);
        if mem_enable != mem_enable_before {
            events.push(DvsecEvent::MemEnable(mem_enable));
        }
        events
    }

    /// Reports the end of the CXL Reset the last [`DvsecEvent::CxlResetRequested`]
    /// asked for (CXL r3.1 8.1.3.5): `ok` sets CXL_Reset_Complete, otherwise
    /// CXL_Reset_Error is set and Complete stays 0. Control, Lock and the
    /// Range registers are not part of a CXL Reset and keep their values.
    pub fn cxl_reset_done(&mut self, ok: bool) {
        let status2 = self
            .status2()
            .with(Status2::CXL_RESET_COMPLETE, ok.into())
            .with(Status2::CXL_RESET_ERROR, (!ok).into());
        self.store16(STATUS2, status2.0);
    }

    /// Doorbells: the bits read 0. Cache write-back completes at once; a
    /// CXL Reset clears its status bits and completes when the emulator
    /// calls [`Self::cxl_reset_done`].
    fn doorbells(&mut self, written: Control2, enable: u32, events: &mut Vec<DvsecEvent>) {
        let cap = self.config.capability;
        let rang =
            |f: crate::bits::Field<Control2>| written.is_set(f) && enable as u64 & f.mask() != 0;
        let mut status2 = self.status2();
        if rang(Control2::INITIATE_CXL_RESET) && cap.is_set(Capability::CXL_RESET_CAPABLE) {
            let clear_memory = cap.is_set(Capability::CXL_RESET_MEM_CLR_CAPABLE)
                && Control2(self.load16(CONTROL2)).is_set(Control2::CXL_RESET_MEM_CLR_ENABLE);
            status2 = status2
                .with(Status2::CXL_RESET_COMPLETE, 0)
                .with(Status2::CXL_RESET_ERROR, 0);
            events.push(DvsecEvent::CxlResetRequested { clear_memory });
        }
        if rang(Control2::INITIATE_CACHE_WB_INV) && cap.is_set(Capability::CACHE_WB_INV_CAPABLE) {
            status2 = status2.with(Status2::CACHE_INVALID, 1);
            events.push(DvsecEvent::CacheWbInvRequested);
        }
        self.store16(STATUS2, status2.0);
    }

    fn load(&self, offset: u16, bytes: usize) -> u32 {
        let o = usize::from(offset);
        self.bytes[o..o + bytes]
            .iter()
            .rev()
            .fold(0, |acc, b| acc << 8 | u32::from(*b))
    }

    fn store(&mut self, offset: u16, bytes: usize, value: u32) {
        let o = usize::from(offset);
        self.bytes[o..o + bytes].copy_from_slice(&value.to_le_bytes()[..bytes]);
    }

    fn load16(&self, offset: u16) -> u16 {
        self.load(offset, 2) as u16
    }

    fn store16(&mut self, offset: u16, value: u16) {
        self.store(offset, 2, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type2() -> CxlDeviceDvsec {
        let capability = Capability::default()
            .with(Capability::CACHE_CAPABLE, 1)
            .with(Capability::MEM_CAPABLE, 1)
            .with(Capability::HDM_COUNT, 1)
            .with(Capability::CXL_RESET_CAPABLE, 1)
            .with(Capability::CACHE_WB_INV_CAPABLE, 1);
        let range = RangeInfo {
            size: 1 << 30,
            active: true,
            media_type: 2,
            memory_class: 2,
        };
        CxlDeviceDvsec::new(DvsecConfig {
            capability,
            ranges: [Some(range), None],
            ..Default::default()
        })
    }

    #[test]
    fn capability_and_ranges_read_as_configured() {
        let d = type2();
        let cap = Capability(d.read(CAPABILITY, 2) as u16);
        assert!(cap.is_set(Capability::MEM_CAPABLE) && cap.is_set(Capability::IO_CAPABLE));
        assert_eq!(cap.get(Capability::HDM_COUNT), 1);
        assert_eq!(d.read(range_size_high(0), 4), 0);
        let low = RangeSizeLow(d.read(range_size_low(0), 4));
        assert_eq!(
            low.get(RangeSizeLow::MEMORY_SIZE_LOW),
            4,
            "1 GiB = 4 x 256 MiB"
        );
        assert!(
            low.is_set(RangeSizeLow::MEMORY_INFO_VALID) && low.is_set(RangeSizeLow::MEMORY_ACTIVE)
        );
        assert_eq!(d.read(range_size_low(1), 4), 0);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut d = type2();
        let before = d.clone();
        for off in [
            CAPABILITY,
            CAPABILITY2,
            range_size_high(0),
            range_size_low(0),
            CAPABILITY3,
        ] {
            assert!(d.write(off, 4, 0xffff_ffff).is_empty() || off == CAPABILITY);
        }
        // Writing 4 bytes at CAPABILITY also covers CONTROL: compare the RO bytes only.
        assert_eq!(d.read(CAPABILITY, 2), before.read(CAPABILITY, 2));
        assert_eq!(
            d.read(range_size_low(0), 4),
            before.read(range_size_low(0), 4)
        );
    }

    #[test]
    fn io_enable_reads_one_and_mem_enable_reports_an_event() {
        let mut d = type2();
        assert_eq!(d.write(CONTROL, 2, 0), vec![]);
        assert!(d.control().is_set(Control::IO_ENABLE));
        assert_eq!(
            d.write(CONTROL, 2, Control::MEM_ENABLE.mask() as u32),
            vec![DvsecEvent::MemEnable(true)]
        );
    }

    #[test]
    fn config_lock_freezes_rwl_fields_until_reset() {
        let mut d = type2();
        d.write(range_base_low(0), 4, 0x3000_0000);
        d.write(range_base_high(0), 4, 0x3);
        d.write(LOCK, 2, 1);
        assert!(d.config_locked());
        d.write(LOCK, 2, 0);
        assert!(d.config_locked(), "CONFIG_LOCK is write-once");
        d.write(range_base_low(0), 4, 0x5000_0000);
        d.write(CONTROL, 2, Control::MEM_ENABLE.mask() as u32);
        assert_eq!(d.range_base(0), 0x3_3000_0000);
        assert!(!d.control().is_set(Control::MEM_ENABLE));
        d.reset();
        assert!(!d.config_locked());
        assert_eq!(d.range_base(0), 0);
    }

    #[test]
    fn base_low_keeps_only_256mib_granular_bits() {
        let mut d = type2();
        d.write(range_base_low(0), 4, 0x1234_5678);
        assert_eq!(d.read(range_base_low(0), 4), 0x1000_0000);
    }

    #[test]
    fn byte_writes_touch_only_their_lane() {
        let mut d = type2();
        d.write(range_base_low(0) + 3, 1, 0x70);
        assert_eq!(d.read(range_base_low(0), 4), 0x7000_0000);
        d.write(range_base_high(0) + 1, 1, 0xab);
        assert_eq!(d.read(range_base_high(0), 4), 0xab00);
    }

    #[test]
    fn cxl_reset_doorbell_completes_in_place() {
        let mut d = type2();
        d.write(
            CONTROL2,
            2,
            Control2::CXL_RESET_MEM_CLR_ENABLE.mask() as u32,
        );
        let ev = d.write(
            CONTROL2,
            2,
            (Control2::INITIATE_CXL_RESET.mask() | Control2::CXL_RESET_MEM_CLR_ENABLE.mask())
                as u32,
        );
        // Mem clear needs the capability too.
        assert_eq!(
            ev,
            vec![DvsecEvent::CxlResetRequested {
                clear_memory: false
            }]
        );
        assert!(
            !Control2(d.read(CONTROL2, 2) as u16).is_set(Control2::INITIATE_CXL_RESET),
            "self-clearing"
        );
        assert!(
            !d.status2().is_set(Status2::CXL_RESET_COMPLETE),
            "not complete before the emulator says so"
        );
        d.cxl_reset_done(true);
        assert!(d.status2().is_set(Status2::CXL_RESET_COMPLETE));
        assert!(!d.status2().is_set(Status2::CXL_RESET_ERROR));
    }

    fn reset_and_mem_clr_capable() -> CxlDeviceDvsec {
        let mut config = type2().config;
        config.capability = config
            .capability
            .with(Capability::CXL_RESET_MEM_CLR_CAPABLE, 1);
        CxlDeviceDvsec::new(config)
    }

    const INITIATE: u32 = Control2::INITIATE_CXL_RESET.mask() as u32;
    const MEM_CLR: u32 = Control2::CXL_RESET_MEM_CLR_ENABLE.mask() as u32;

    #[test]
    fn cxl_reset_clears_memory_only_with_mem_clr_enable() {
        let mut d = reset_and_mem_clr_capable();
        assert_eq!(
            d.write(CONTROL2, 2, INITIATE),
            vec![DvsecEvent::CxlResetRequested {
                clear_memory: false
            }]
        );
        d.cxl_reset_done(true);
        // Mem_Clr_Enable set in the same write as Initiate counts.
        assert_eq!(
            d.write(CONTROL2, 2, INITIATE | MEM_CLR),
            vec![DvsecEvent::CxlResetRequested { clear_memory: true }]
        );
        assert_eq!(
            d.read(CONTROL2, 2),
            MEM_CLR,
            "Initiate reads 0, Mem_Clr_Enable stays"
        );
    }

    #[test]
    fn a_new_cxl_reset_clears_complete_and_error_first() {
        let mut d = reset_and_mem_clr_capable();
        d.write(CONTROL2, 2, INITIATE | MEM_CLR);
        d.cxl_reset_done(false);
        let s2 = d.status2();
        assert!(s2.is_set(Status2::CXL_RESET_ERROR) && !s2.is_set(Status2::CXL_RESET_COMPLETE));
        d.write(CONTROL2, 2, INITIATE);
        let s2 = d.status2();
        assert!(!s2.is_set(Status2::CXL_RESET_ERROR) && !s2.is_set(Status2::CXL_RESET_COMPLETE));
        assert!(
            s2.is_set(Status2::PM_INIT_COMPLETE),
            "other Status2 bits kept"
        );
        d.cxl_reset_done(true);
        let s2 = d.status2();
        assert!(!s2.is_set(Status2::CXL_RESET_ERROR) && s2.is_set(Status2::CXL_RESET_COMPLETE));
    }

    #[test]
    fn cxl_reset_leaves_control_lock_and_ranges_alone() {
        let mut d = reset_and_mem_clr_capable();
        d.write(range_base_low(0), 4, 0x3000_0000);
        d.write(CONTROL, 2, Control::MEM_ENABLE.mask() as u32);
        d.write(LOCK, 2, 1);
        let before = [CONTROL, LOCK, range_base_low(0), range_base_high(0)].map(|o| d.read(o, 4));
        d.write(CONTROL2, 2, INITIATE | MEM_CLR);
        d.cxl_reset_done(true);
        let after = [CONTROL, LOCK, range_base_low(0), range_base_high(0)].map(|o| d.read(o, 4));
        // The dword at CONTROL also covers STATUS: compare Control only.
        assert_eq!(before[0] & 0xffff, after[0] & 0xffff);
        assert_eq!(before[1..], after[1..]);
    }

    #[test]
    fn cxl_reset_without_capability_is_ignored() {
        let mut config = type2().config;
        config.capability = config.capability.with(Capability::CXL_RESET_CAPABLE, 0);
        let mut d = CxlDeviceDvsec::new(config);
        assert_eq!(d.write(CONTROL2, 2, INITIATE | MEM_CLR), vec![]);
        assert_eq!(d.status2(), CxlDeviceDvsec::new(config).status2());
        assert_eq!(d.read(CONTROL2, 2), MEM_CLR, "Mem_Clr_Enable itself is RW");
    }

    #[test]
    fn doorbells_without_capability_do_nothing() {
        let mut d = CxlDeviceDvsec::new(DvsecConfig::default());
        assert_eq!(d.write(CONTROL2, 2, 0x6), vec![]);
        assert!(!d.status2().is_set(Status2::CXL_RESET_COMPLETE));
    }

    #[test]
    fn sticky_bits_survive_conventional_reset_only() {
        let mut d = type2();
        d.store16(STATUS, Status::VIRAL_STATUS.mask() as u16);
        d.reset();
        assert_eq!(d.read(STATUS, 2), Status::VIRAL_STATUS.mask() as u32);
        d.write(STATUS, 2, Status::VIRAL_STATUS.mask() as u32);
        assert_eq!(d.read(STATUS, 2), 0, "RW1C");
        d.store16(STATUS, Status::VIRAL_STATUS.mask() as u16);
        d.power_on();
        assert_eq!(d.read(STATUS, 2), 0);
    }

    #[test]
    fn accesses_outside_the_structure_are_harmless() {
        let mut d = type2();
        assert_eq!(d.read(DVSEC_LENGTH, 4), 0);
        assert_eq!(d.read(u16::MAX, 4), 0);
        assert!(d.write(u16::MAX - 1, 4, u32::MAX).is_empty());
        assert_eq!(d.read(0, 4), 0, "headers belong to the device");
    }
}
