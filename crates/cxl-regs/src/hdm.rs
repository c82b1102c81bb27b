// SPDX-License-Identifier: GPL-2.0-or-later
//! The HDM Decoder Capability Structure (CXL r3.1 §8.2.4.20) and its
//! commit state machine.
//!
//! Offsets are relative to the start of the structure. Registers are
//! accessed as aligned dwords; 64-bit registers are two dwords (the
//! component-block dispatch splits qword accesses). Guest writes never
//! fail: what the spec makes read-only, reserved or locked keeps its value.

use crate::register;
use crate::window::{eig_to_granularity, eiw_to_ways, HpaRange, HDM_ALIGN};

/// HDM Decoder Capability register (§8.2.4.20.1).
pub const CAPABILITY: u32 = 0x00;
/// HDM Decoder Global Control register (§8.2.4.20.2).
pub const GLOBAL_CONTROL: u32 = 0x04;
/// First decoder's registers.
const DECODER0: u32 = 0x10;
/// Distance between two decoders' registers.
const DECODER_STRIDE: u32 = 0x20;

/// Decoder n Base Low (§8.2.4.20.5).
pub const fn base_low(n: u32) -> u32 {
    DECODER0 + DECODER_STRIDE * n
}
/// Decoder n Base High (§8.2.4.20.6).
pub const fn base_high(n: u32) -> u32 {
    base_low(n) + 0x4
}
/// Decoder n Size Low (§8.2.4.20.7).
pub const fn size_low(n: u32) -> u32 {
    base_low(n) + 0x8
}
/// Decoder n Size High (§8.2.4.20.8).
pub const fn size_high(n: u32) -> u32 {
    base_low(n) + 0xc
}
/// Decoder n Control (§8.2.4.20.9).
pub const fn control(n: u32) -> u32 {
    base_low(n) + 0x10
}
/// Decoder n Target List Low (§8.2.4.20.10) or, on a device, DPA Skip Low (§8.2.4.20.12).
pub const fn target_or_skip_low(n: u32) -> u32 {
    base_low(n) + 0x14
}
/// Decoder n Target List High (§8.2.4.20.11) or DPA Skip High (§8.2.4.20.13).
pub const fn target_or_skip_high(n: u32) -> u32 {
    base_low(n) + 0x18
}
/// Length of the structure for `count` decoders.
pub const fn block_len(count: u32) -> u32 {
    DECODER0 + DECODER_STRIDE * count
}

register! {
    /// HDM Decoder Capability (CXL r3.1 §8.2.4.20.1). HwInit.
    pub HdmCapability: u32 {
        /// Decoder Count (encoded, see [`decoder_count_encode`]).
        DECODER_COUNT = 0, 4;
        /// Target Count (switches and host bridges).
        TARGET_COUNT = 4, 4;
        /// A11to8 Interleave Capable.
        A11TO8_INTERLEAVE = 8, 1;
        /// A14to12 Interleave Capable.
        A14TO12_INTERLEAVE = 9, 1;
        /// Poison On Decode Error Capability.
        POISON_ON_DECODE_ERROR = 10, 1;
        /// 3, 6, 12 Way Interleave Capable.
        INTERLEAVE_3_6_12 = 11, 1;
        /// 16 Way Interleave Capable.
        INTERLEAVE_16 = 12, 1;
        /// UIO Capable.
        UIO = 13, 1;
    }
}

register! {
    /// HDM Decoder Global Control (CXL r3.1 §8.2.4.20.2).
    pub GlobalControl: u32 {
        /// Poison On Decode Error Enable (RW if capable, else RsvdP).
        POISON_ON_DECODE_ERROR_ENABLE = 0, 1;
        /// HDM Decoder Enable.
        HDM_DECODER_ENABLE = 1, 1;
    }
}

register! {
    /// HDM Decoder n Control (CXL r3.1 §8.2.4.20.9).
    pub DecoderControl: u32 {
        /// Interleave Granularity (IG), encoded.
        IG = 0, 4;
        /// Interleave Ways (IW), encoded.
        IW = 4, 4;
        /// Lock On Commit.
        LOCK_ON_COMMIT = 8, 1;
        /// Commit.
        COMMIT = 9, 1;
        /// Committed (RO).
        COMMITTED = 10, 1;
        /// Error Not Committed (RO).
        ERROR_NOT_COMMITTED = 11, 1;
        /// Target Device Type: 0 device-coherent (HDM-D/DB), 1 host-only (HDM-H).
        TARGET_TYPE = 12, 1;
        /// BI.
        BI = 13, 1;
        /// UIO.
        UIO = 14, 1;
    }
}

register! {
    /// Low dword of a 256 MiB-granular address or size (§8.2.4.20.5/.7/.12).
    pub Low256M: u32 {
        /// Bits [31:28] of the 64-bit value; [27:0] are RsvdZ.
        BITS_31_28 = 28, 4;
    }
}

/// Fields of Decoder Control software may write when the decoder is idle.
const CONTROL_WRITABLE: u32 = (DecoderControl::IG.mask()
    | DecoderControl::IW.mask()
    | DecoderControl::LOCK_ON_COMMIT.mask()
    | DecoderControl::COMMIT.mask()
    | DecoderControl::TARGET_TYPE.mask()) as u32;

/// Decoder Count field for `count` decoders (§8.2.4.20.1), if encodable.
pub fn decoder_count_encode(count: u32) -> Option<u32> {
    (0..=12).find(|&enc| decoder_count_decode(enc) == Some(count))
}

/// Number of decoders for a Decoder Count field.
pub fn decoder_count_decode(enc: u32) -> Option<u32> {
    match enc {
        0 => Some(1),
        1..=8 => Some(enc * 2),
        9..=12 => Some(4 * (enc - 4)),
        _ => None,
    }
}

/// Where the structure lives, which decides what the Target List / DPA
/// Skip registers mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderKind {
    /// A CXL device: decoders map HPA to its `dpa_capacity` bytes of DPA.
    Device { dpa_capacity: u64 },
    /// A host bridge or switch port: decoders route to `target_count` ports.
    Port { target_count: u8 },
}

/// What the platform and the device fix about a decoder structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdmConfig {
    pub kind: DecoderKind,
    /// Number of decoders (an encodable count: 1, 2, 4, 6, 8, ..., 32).
    pub decoder_count: u32,
    /// The HPA window committed decoders must lie in (the CFMW the platform
    /// gave this device).
    pub window: HpaRange,
    /// Most interleave ways a commit may request (1: no interleave).
    pub max_ways: u32,
    pub interleave_3_6_12: bool,
    pub interleave_16: bool,
    pub poison_on_decode_error: bool,
}

impl HdmConfig {
    /// A device with one decoder and no interleave: the Type-2 case.
    pub fn single_device_decoder(window: HpaRange, dpa_capacity: u64) -> Self {
        Self {
            kind: DecoderKind::Device { dpa_capacity },
            decoder_count: 1,
            window,
            max_ways: 1,
            interleave_3_6_12: false,
            interleave_16: false,
            poison_on_decode_error: false,
        }
    }

    /// The HDM Decoder Capability register this configuration reports.
    pub fn capability(&self) -> HdmCapability {
        let target_count = match self.kind {
            DecoderKind::Port { target_count } => target_count.into(),
            DecoderKind::Device { .. } => 0,
        };
        HdmCapability::default()
            .with(
                HdmCapability::DECODER_COUNT,
                decoder_count_encode(self.decoder_count).unwrap_or(0).into(),
            )
            .with(HdmCapability::TARGET_COUNT, target_count)
            .with(HdmCapability::A11TO8_INTERLEAVE, 1)
            .with(
                HdmCapability::POISON_ON_DECODE_ERROR,
                self.poison_on_decode_error.into(),
            )
            .with(
                HdmCapability::INTERLEAVE_3_6_12,
                self.interleave_3_6_12.into(),
            )
            .with(HdmCapability::INTERLEAVE_16, self.interleave_16.into())
    }
}

/// Why a commit set Error Not Committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// Size is zero.
    EmptyRange,
    /// Base + size wraps, or the range is not inside the platform window.
    OutsideWindow { range: HpaRange, window: HpaRange },
    /// The encoded interleave ways are invalid or not supported.
    UnsupportedWays { eiw: u8 },
    /// The encoded interleave granularity is invalid.
    UnsupportedGranularity { eig: u8 },
    /// Size is not a multiple of ways x 256 MiB.
    SizeNotMultipleOfWays { size: u64, ways: u32 },
    /// A lower decoder is not committed, a higher one is, or the range
    /// starts below the end of the decoder under it.
    OutOfOrder,
    /// The decoder would map DPA beyond the device's capacity.
    DpaExhausted { end: u64, capacity: u64 },
}

impl core::fmt::Display for CommitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::EmptyRange => write!(f, "decoder size is zero"),
            Self::OutsideWindow { range, window } => write!(
                f,
                "range {:#x}+{:#x} is outside the window {:#x}+{:#x}",
                range.base, range.size, window.base, window.size
            ),
            Self::UnsupportedWays { eiw } => {
                write!(f, "interleave ways encoding {eiw} is not supported")
            }
            Self::UnsupportedGranularity { eig } => {
                write!(f, "interleave granularity encoding {eig} is not supported")
            }
            Self::SizeNotMultipleOfWays { size, ways } => {
                write!(f, "size {size:#x} is not a multiple of {ways} x 256 MiB")
            }
            Self::OutOfOrder => write!(
                f,
                "decoders must be committed in order, at ascending addresses"
            ),
            Self::DpaExhausted { end, capacity } => {
                write!(f, "DPA end {end:#x} exceeds the capacity {capacity:#x}")
            }
        }
    }
}

/// What a write did that the emulator must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HdmEvent {
    /// The decoder now decodes `hpa`; on a device, starting at `dpa_base`.
    Committed {
        decoder: u32,
        hpa: HpaRange,
        dpa_base: u64,
        ways: u32,
        granularity: u64,
    },
    /// The decoder stopped decoding `hpa`.
    Decommitted { decoder: u32, hpa: HpaRange },
    /// A commit was refused: the decoder shows Error Not Committed.
    CommitFailed { decoder: u32, error: CommitError },
}

/// One decoder's registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoder {
    pub base: u64,
    pub size: u64,
    pub control: DecoderControl,
    /// Target List (ports) or DPA Skip (devices).
    pub target_or_skip: u64,
    /// DPA of the first decoded byte, fixed at commit (devices).
    pub dpa_base: u64,
}

impl Decoder {
    pub fn committed(&self) -> bool {
        self.control.is_set(DecoderControl::COMMITTED)
    }

    /// Committed with Lock On Commit: read-only until reset.
    pub fn locked(&self) -> bool {
        self.committed() && self.control.is_set(DecoderControl::LOCK_ON_COMMIT)
    }

    pub fn range(&self) -> HpaRange {
        HpaRange::new(self.base, self.size)
    }

    fn ways(&self) -> Option<u32> {
        eiw_to_ways(self.control.get(DecoderControl::IW) as u8)
    }
}

/// The HDM Decoder Capability Structure of one device or port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HdmDecoderBlock {
    config: HdmConfig,
    global: GlobalControl,
    decoders: Vec<Decoder>,
}

impl HdmDecoderBlock {
    /// The structure after reset.
    ///
    /// # Panics
    /// If `config.decoder_count` is not an encodable count.
    pub fn new(config: HdmConfig) -> Self {
        assert!(
            decoder_count_encode(config.decoder_count).is_some(),
            "unencodable HDM decoder count"
        );
        Self {
            config,
            global: GlobalControl::default(),
            decoders: vec![Decoder::default(); config.decoder_count as usize],
        }
    }

    pub fn config(&self) -> &HdmConfig {
        &self.config
    }

    /// Length of the structure in bytes.
    pub fn len(&self) -> u32 {
        block_len(self.config.decoder_count)
    }

    /// Never empty: a structure has at least one decoder.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reset: every decoder uncommitted and zero, decoding disabled.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    pub fn decoder(&self, n: u32) -> Option<&Decoder> {
        self.decoders.get(n as usize)
    }

    pub fn decoders(&self) -> &[Decoder] {
        &self.decoders
    }

    pub fn global_control(&self) -> GlobalControl {
        self.global
    }

    /// Reads the dword at `offset` (unaligned or out-of-range reads give 0).
    pub fn read(&self, offset: u32) -> u32 {
        if offset % 4 != 0 {
            return 0;
        }
        match offset {
            CAPABILITY => self.config.capability().0,
            GLOBAL_CONTROL => self.global.0,
            _ => match self.locate(offset) {
                Some((d, reg)) => reg.read(&self.decoders[d as usize]),
                None => 0,
            },
        }
    }

    /// A software write of the dword at `offset`.
    pub fn write(&mut self, offset: u32, value: u32) -> Option<HdmEvent> {
        if offset % 4 != 0 {
            return None;
        }
        if offset == GLOBAL_CONTROL {
            let mut writable = GlobalControl::HDM_DECODER_ENABLE.mask();
            if self.config.poison_on_decode_error {
                writable |= GlobalControl::POISON_ON_DECODE_ERROR_ENABLE.mask();
            }
            self.global = GlobalControl(value & writable as u32);
            return None;
        }
        let (n, reg) = self.locate(offset)?;
        let decoder = self.decoders[n as usize];
        if decoder.locked() {
            return None;
        }
        if reg != DecoderReg::Control {
            // Base, size and targets/skip hold still while committed, so a
            // committed range can only change by decommit and a new commit.
            if !decoder.committed() {
                let skip_mask = self.skip_mask();
                let d = &mut self.decoders[n as usize];
                reg.write(d, value);
                d.target_or_skip &= skip_mask;
            }
            return None;
        }
        self.write_control(n, DecoderControl(value))
    }

    fn write_control(&mut self, n: u32, value: DecoderControl) -> Option<HdmEvent> {
        let decoder = &mut self.decoders[n as usize];
        let commit = value.is_set(DecoderControl::COMMIT);
        if decoder.committed() {
            if commit {
                return None;
            }
            let hpa = decoder.range();
            decoder.control = decoder
                .control
                .with(DecoderControl::COMMIT, 0)
                .with(DecoderControl::COMMITTED, 0);
            return Some(HdmEvent::Decommitted { decoder: n, hpa });
        }
        let status = decoder.control.0 & !CONTROL_WRITABLE;
        decoder.control = DecoderControl((value.0 & CONTROL_WRITABLE) | status)
            .with(DecoderControl::ERROR_NOT_COMMITTED, 0);
        if !commit {
            return None;
        }
        Some(self.commit(n))
    }

    /// Validates and commits decoder `n` as currently programmed.
    fn commit(&mut self, n: u32) -> HdmEvent {
        let result = self.validate(n);
        let decoder = &mut self.decoders[n as usize];
        match result {
            Ok((dpa_base, ways, granularity)) => {
                decoder.control = decoder.control.with(DecoderControl::COMMITTED, 1);
                decoder.dpa_base = dpa_base;
                HdmEvent::Committed {
                    decoder: n,
                    hpa: decoder.range(),
                    dpa_base,
                    ways,
                    granularity,
                }
            }
            Err(error) => {
                decoder.control = decoder.control.with(DecoderControl::ERROR_NOT_COMMITTED, 1);
                HdmEvent::CommitFailed { decoder: n, error }
            }
        }
    }

    /// Checks decoder `n` for commit; returns its DPA base, ways and granularity.
    fn validate(&self, n: u32) -> Result<(u64, u32, u64), CommitError> {
        let d = &self.decoders[n as usize];
        let range = d.range();
        if d.size == 0 {
            return Err(CommitError::EmptyRange);
        }
        if !self.config.window.contains_range(&range) {
            return Err(CommitError::OutsideWindow {
                range,
                window: self.config.window,
            });
        }
        let eiw = d.control.get(DecoderControl::IW) as u8;
        let ways = d
            .ways()
            .filter(|&w| w <= self.config.max_ways)
            .filter(|&w| w % 3 != 0 || self.config.interleave_3_6_12)
            .filter(|&w| w != 16 || self.config.interleave_16)
            .ok_or(CommitError::UnsupportedWays { eiw })?;
        let eig = d.control.get(DecoderControl::IG) as u8;
        let granularity =
            eig_to_granularity(eig).ok_or(CommitError::UnsupportedGranularity { eig })?;
        if d.size % (HDM_ALIGN * u64::from(ways)) != 0 {
            return Err(CommitError::SizeNotMultipleOfWays { size: d.size, ways });
        }
        // In order (§8.2.4.20.13 and Linux's cxl_decoder_commit): every
        // lower decoder committed below this one, no higher one committed.
        // That also keeps the DPA of committed decoders consistent.
        let lower = &self.decoders[..n as usize];
        let higher = &self.decoders[n as usize + 1..];
        let floor = match lower.last() {
            None => 0,
            Some(p) if p.committed() => p.base + p.size,
            Some(_) => return Err(CommitError::OutOfOrder),
        };
        if range.base < floor || higher.iter().any(Decoder::committed) {
            return Err(CommitError::OutOfOrder);
        }
        let dpa_base = match self.config.kind {
            DecoderKind::Device { dpa_capacity } => {
                // DPA is consumed in decoder order: each decoder's skip, then its share.
                let used = lower.iter().fold(0u64, |acc, p| {
                    acc.saturating_add(p.target_or_skip)
                        .saturating_add(p.size / u64::from(p.ways().unwrap_or(1)))
                });
                let base = used.saturating_add(d.target_or_skip);
                let end = base.saturating_add(d.size / u64::from(ways));
                if end > dpa_capacity {
                    return Err(CommitError::DpaExhausted {
                        end,
                        capacity: dpa_capacity,
                    });
                }
                base
            }
            DecoderKind::Port { .. } => 0,
        };
        Ok((dpa_base, ways, granularity))
    }

    /// Commits decoder `n` the way platform firmware does before the OS
    /// boots: programs it, commits it (with Lock On Commit if `lock`) and
    /// enables HDM decoding. Goes through the same checks as a guest commit.
    pub fn firmware_commit(
        &mut self,
        n: u32,
        program: FirmwareDecoder,
    ) -> Result<HdmEvent, CommitError> {
        let skip_mask = self.skip_mask();
        let Some(decoder) = self.decoders.get_mut(n as usize) else {
            return Err(CommitError::OutOfOrder);
        };
        *decoder = Decoder {
            dpa_base: 0,
            base: program.range.base,
            size: program.range.size,
            target_or_skip: program.target_or_skip & skip_mask,
            control: DecoderControl::default()
                .with(DecoderControl::IW, program.eiw.into())
                .with(DecoderControl::IG, program.eig.into())
                .with(DecoderControl::TARGET_TYPE, program.host_only.into())
                .with(DecoderControl::LOCK_ON_COMMIT, program.lock.into())
                .with(DecoderControl::COMMIT, 1),
        };
        self.global = self.global.with(GlobalControl::HDM_DECODER_ENABLE, 1);
        match self.commit(n) {
            HdmEvent::CommitFailed { error, .. } => Err(error),
            event => Ok(event),
        }
    }

    /// The emulator cannot route committed decoder `n` (its range is in
    /// no window it can map, e.g. an interleaved one): the commit is
    /// undone and the decoder shows Error Not Committed, rather than
    /// looking committed while decoding nothing.
    pub fn revoke_commit(&mut self, n: u32) {
        if let Some(d) = self.decoders.get_mut(n as usize) {
            d.control = d
                .control
                .with(DecoderControl::COMMITTED, 0)
                .with(DecoderControl::ERROR_NOT_COMMITTED, 1);
        }
    }

    /// Firmware programmed decoder `n` but could not commit it (e.g. the
    /// host bridge above refused the range): the decoder holds the range,
    /// stays uncommitted and unlocked, and shows Error Not Committed, so
    /// software sees why the device has no memory.
    pub fn firmware_not_committed(&mut self, n: u32, program: FirmwareDecoder) {
        let skip_mask = self.skip_mask();
        let Some(decoder) = self.decoders.get_mut(n as usize) else {
            return;
        };
        *decoder = Decoder {
            dpa_base: 0,
            base: program.range.base,
            size: program.range.size,
            target_or_skip: program.target_or_skip & skip_mask,
            control: DecoderControl::default()
                .with(DecoderControl::IW, program.eiw.into())
                .with(DecoderControl::IG, program.eig.into())
                .with(DecoderControl::TARGET_TYPE, program.host_only.into())
                .with(DecoderControl::ERROR_NOT_COMMITTED, 1),
        };
    }

    /// A device's DPA skip is 256 MiB granular (RsvdZ [27:0]); a port's
    /// target list keeps every bit.
    fn skip_mask(&self) -> u64 {
        match self.config.kind {
            DecoderKind::Device { .. } => !(HDM_ALIGN - 1),
            DecoderKind::Port { .. } => u64::MAX,
        }
    }

    fn locate(&self, offset: u32) -> Option<(u32, DecoderReg)> {
        let rel = offset.checked_sub(DECODER0)?;
        let n = rel / DECODER_STRIDE;
        if n >= self.config.decoder_count {
            return None;
        }
        let reg = match rel % DECODER_STRIDE {
            0x00 => DecoderReg::BaseLow,
            0x04 => DecoderReg::BaseHigh,
            0x08 => DecoderReg::SizeLow,
            0x0c => DecoderReg::SizeHigh,
            0x10 => DecoderReg::Control,
            0x14 => DecoderReg::TargetOrSkipLow,
            0x18 => DecoderReg::TargetOrSkipHigh,
            _ => return None,
        };
        Some((n, reg))
    }
}

/// How firmware programs a decoder (see [`HdmDecoderBlock::firmware_commit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareDecoder {
    pub range: HpaRange,
    /// Encoded interleave ways and granularity.
    pub eiw: u8,
    pub eig: u8,
    /// DPA skip (devices) or target list (ports).
    pub target_or_skip: u64,
    /// Target Device Type: host-only (HDM-H) rather than device-coherent.
    pub host_only: bool,
    pub lock: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecoderReg {
    BaseLow,
    BaseHigh,
    SizeLow,
    SizeHigh,
    Control,
    TargetOrSkipLow,
    TargetOrSkipHigh,
}

const LOW_256M: u64 = Low256M::BITS_31_28.mask();

impl DecoderReg {
    fn read(self, d: &Decoder) -> u32 {
        match self {
            Self::BaseLow => d.base as u32,
            Self::BaseHigh => (d.base >> 32) as u32,
            Self::SizeLow => d.size as u32,
            Self::SizeHigh => (d.size >> 32) as u32,
            Self::Control => d.control.0,
            Self::TargetOrSkipLow => d.target_or_skip as u32,
            Self::TargetOrSkipHigh => (d.target_or_skip >> 32) as u32,
        }
    }

    /// Stores a base, size or target/skip dword. Low dwords of 256 MiB
    /// granular values keep bits [31:28] only (the rest is RsvdZ).
    fn write(self, d: &mut Decoder, value: u32) {
        let value = u64::from(value);
        let set_low =
            |field: &mut u64, mask: u64| *field = (*field & !0xffff_ffff) | (value & mask);
        let set_high = |field: &mut u64| *field = (*field & 0xffff_ffff) | value << 32;
        match self {
            Self::BaseLow => set_low(&mut d.base, LOW_256M),
            Self::BaseHigh => set_high(&mut d.base),
            Self::SizeLow => set_low(&mut d.size, LOW_256M),
            Self::SizeHigh => set_high(&mut d.size),
            Self::TargetOrSkipLow => set_low(&mut d.target_or_skip, 0xffff_ffff),
            Self::TargetOrSkipHigh => set_high(&mut d.target_or_skip),
            Self::Control => unreachable!("control writes go through write_control"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const WINDOW: HpaRange = HpaRange::new(0x3_9000_0000, 4 * GIB);

    fn device(count: u32, capacity: u64) -> HdmDecoderBlock {
        HdmDecoderBlock::new(HdmConfig {
            decoder_count: count,
            ..HdmConfig::single_device_decoder(WINDOW, capacity)
        })
    }

    /// Programs decoder n the way Linux does (hdm.c: base, size, skip, then control).
    fn program(
        b: &mut HdmDecoderBlock,
        n: u32,
        range: HpaRange,
        ctl: DecoderControl,
    ) -> Option<HdmEvent> {
        b.write(base_high(n), (range.base >> 32) as u32);
        b.write(base_low(n), range.base as u32);
        b.write(size_high(n), (range.size >> 32) as u32);
        b.write(size_low(n), range.size as u32);
        b.write(control(n), ctl.0)
    }

    fn commit() -> DecoderControl {
        DecoderControl::default().with(DecoderControl::COMMIT, 1)
    }

    fn ctrl(b: &HdmDecoderBlock, n: u32) -> DecoderControl {
        DecoderControl(b.read(control(n)))
    }

    #[test]
    fn capability_encodes_count_and_kind() {
        for (count, enc) in [(1, 0), (2, 1), (4, 2), (8, 4), (16, 8), (20, 9), (32, 12)] {
            assert_eq!(decoder_count_encode(count), Some(enc));
        }
        assert_eq!(decoder_count_encode(3), None);
        let b = device(2, GIB);
        let cap = HdmCapability(b.read(CAPABILITY));
        assert_eq!(cap.get(HdmCapability::DECODER_COUNT), 1);
        assert_eq!(cap.get(HdmCapability::TARGET_COUNT), 0);
        assert_eq!(b.len(), 0x50);
    }

    #[test]
    fn commit_in_window_sets_committed_and_reports_the_range() {
        let mut b = device(1, GIB);
        let range = HpaRange::new(WINDOW.base, 256 << 20);
        let ev = program(&mut b, 0, range, commit());
        assert_eq!(
            ev,
            Some(HdmEvent::Committed {
                decoder: 0,
                hpa: range,
                dpa_base: 0,
                ways: 1,
                granularity: 256
            })
        );
        let c = ctrl(&b, 0);
        assert!(
            c.is_set(DecoderControl::COMMITTED) && !c.is_set(DecoderControl::ERROR_NOT_COMMITTED)
        );
    }

    #[test]
    fn commit_outside_window_is_refused() {
        let mut b = device(1, 8 * GIB);
        for range in [
            HpaRange::new(WINDOW.base - (256 << 20), 256 << 20),
            HpaRange::new(WINDOW.base, 5 * GIB),
            HpaRange::new(WINDOW.base + 4 * GIB, 256 << 20),
        ] {
            let ev = program(&mut b, 0, range, commit());
            assert!(
                matches!(
                    ev,
                    Some(HdmEvent::CommitFailed {
                        error: CommitError::OutsideWindow { .. },
                        ..
                    })
                ),
                "{range:x?}"
            );
            let c = ctrl(&b, 0);
            assert!(
                !c.is_set(DecoderControl::COMMITTED)
                    && c.is_set(DecoderControl::ERROR_NOT_COMMITTED)
            );
            // Clearing COMMIT clears the error.
            b.write(control(0), 0);
            assert!(!ctrl(&b, 0).is_set(DecoderControl::ERROR_NOT_COMMITTED));
        }
    }

    #[test]
    fn reserved_low_bits_read_zero() {
        let mut b = device(1, GIB);
        b.write(base_low(0), 0xffff_ffff);
        b.write(size_low(0), 0x1234_5678);
        b.write(target_or_skip_low(0), 0x1fff_ffff);
        assert_eq!(b.read(base_low(0)), 0xf000_0000);
        assert_eq!(b.read(size_low(0)), 0x1000_0000);
        assert_eq!(b.read(target_or_skip_low(0)), 0x1000_0000);
    }

    #[test]
    fn committed_decoder_ignores_base_and_size_until_decommit() {
        let mut b = device(1, GIB);
        let range = HpaRange::new(WINDOW.base, 256 << 20);
        program(&mut b, 0, range, commit());
        b.write(base_high(0), 0xffff);
        b.write(size_low(0), 0);
        assert_eq!(b.decoder(0).unwrap().range(), range);
        assert_eq!(
            b.write(control(0), 0),
            Some(HdmEvent::Decommitted {
                decoder: 0,
                hpa: range
            })
        );
        assert!(!ctrl(&b, 0).is_set(DecoderControl::COMMITTED));
        b.write(size_low(0), 0);
        assert_eq!(b.decoder(0).unwrap().size, 0);
    }

    #[test]
    fn lock_on_commit_freezes_the_decoder_until_reset() {
        let mut b = device(1, GIB);
        let range = HpaRange::new(WINDOW.base, 256 << 20);
        program(
            &mut b,
            0,
            range,
            commit().with(DecoderControl::LOCK_ON_COMMIT, 1),
        );
        let before = b.clone();
        for off in (0..b.len()).step_by(4) {
            if off != GLOBAL_CONTROL {
                assert_eq!(b.write(off, 0), None);
            }
        }
        assert_eq!(b, before);
        b.reset();
        assert_eq!(b.decoder(0), Some(&Decoder::default()));
    }

    #[test]
    fn decoders_commit_in_order_at_ascending_addresses() {
        let mut b = device(2, 2 * GIB);
        let r0 = HpaRange::new(WINDOW.base + GIB, 256 << 20);
        let r1 = HpaRange::new(WINDOW.base, 256 << 20);
        let ev = program(&mut b, 1, r1, commit());
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::OutOfOrder,
                ..
            })
        ));
        program(&mut b, 0, r0, commit());
        let ev = program(&mut b, 1, r1, commit());
        assert!(
            matches!(
                ev,
                Some(HdmEvent::CommitFailed {
                    error: CommitError::OutOfOrder,
                    ..
                })
            ),
            "below decoder 0"
        );
        let r1 = HpaRange::new(WINDOW.base + 2 * GIB, 256 << 20);
        b.write(control(1), 0);
        assert!(
            matches!(program(&mut b, 1, r1, commit()), Some(HdmEvent::Committed { dpa_base, .. }) if dpa_base == 256 << 20)
        );
        // Decoder 0 may be decommitted out of order, but not recommitted under a committed decoder 1.
        assert!(matches!(
            b.write(control(0), 0),
            Some(HdmEvent::Decommitted { .. })
        ));
        let ev = b.write(control(0), commit().0);
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::OutOfOrder,
                ..
            })
        ));
    }

    #[test]
    fn dpa_skip_and_capacity_are_enforced() {
        let mut b = device(1, GIB);
        b.write(target_or_skip_low(0), 0x4000_0000);
        let ev = program(&mut b, 0, HpaRange::new(WINDOW.base, 256 << 20), commit());
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::DpaExhausted { .. },
                ..
            })
        ));
        b.write(control(0), 0);
        b.write(target_or_skip_low(0), 0x3000_0000);
        let ev = program(&mut b, 0, HpaRange::new(WINDOW.base, 256 << 20), commit());
        assert!(matches!(
            ev,
            Some(HdmEvent::Committed {
                dpa_base: 0x3000_0000,
                ..
            })
        ));
    }

    #[test]
    fn interleave_beyond_the_device_is_refused() {
        let mut b = device(1, 4 * GIB);
        let two_way = commit().with(DecoderControl::IW, 1);
        let ev = program(&mut b, 0, HpaRange::new(WINDOW.base, 512 << 20), two_way);
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::UnsupportedWays { eiw: 1 },
                ..
            })
        ));
        let bad_ig = commit().with(DecoderControl::IG, 7);
        b.write(control(0), 0);
        let ev = program(&mut b, 0, HpaRange::new(WINDOW.base, 512 << 20), bad_ig);
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::UnsupportedGranularity { eig: 7 },
                ..
            })
        ));
    }

    #[test]
    fn ported_interleave_needs_capability_and_size_multiple() {
        let mut b = HdmDecoderBlock::new(HdmConfig {
            kind: DecoderKind::Port { target_count: 4 },
            decoder_count: 1,
            window: WINDOW,
            max_ways: 16,
            interleave_3_6_12: false,
            interleave_16: false,
            poison_on_decode_error: false,
        });
        let three = commit().with(DecoderControl::IW, 8);
        let ev = program(
            &mut b,
            0,
            HpaRange::new(WINDOW.base, 3 * (256 << 20)),
            three,
        );
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::UnsupportedWays { eiw: 8 },
                ..
            })
        ));
        b.write(control(0), 0);
        let four = commit().with(DecoderControl::IW, 2);
        let ev = program(&mut b, 0, HpaRange::new(WINDOW.base, 512 << 20), four);
        assert!(matches!(
            ev,
            Some(HdmEvent::CommitFailed {
                error: CommitError::SizeNotMultipleOfWays { .. },
                ..
            })
        ));
        b.write(control(0), 0);
        b.write(target_or_skip_low(0), 0x0302_0100);
        assert!(matches!(
            program(&mut b, 0, HpaRange::new(WINDOW.base, GIB), four),
            Some(HdmEvent::Committed { ways: 4, .. })
        ));
        assert_eq!(
            b.read(target_or_skip_low(0)),
            0x0302_0100,
            "port target lists keep every bit"
        );
    }

    #[test]
    fn read_only_status_bits_ignore_writes() {
        let mut b = device(1, GIB);
        b.write(
            control(0),
            (DecoderControl::COMMITTED.mask() | DecoderControl::ERROR_NOT_COMMITTED.mask()) as u32,
        );
        assert_eq!(ctrl(&b, 0).0, 0);
        b.write(CAPABILITY, 0);
        assert_eq!(b.read(CAPABILITY), b.config().capability().0);
        b.write(GLOBAL_CONTROL, 0xffff_ffff);
        assert_eq!(
            b.read(GLOBAL_CONTROL),
            GlobalControl::HDM_DECODER_ENABLE.mask() as u32,
            "poison enable needs the capability"
        );
    }

    #[test]
    fn firmware_commit_programs_locks_and_enables() {
        let mut b = device(1, GIB);
        let program = FirmwareDecoder {
            range: HpaRange::new(WINDOW.base, GIB),
            eiw: 0,
            eig: 0,
            target_or_skip: 0,
            host_only: false,
            lock: true,
        };
        assert!(matches!(
            b.firmware_commit(0, program),
            Ok(HdmEvent::Committed { .. })
        ));
        assert!(b.decoder(0).unwrap().locked());
        assert!(b.global_control().is_set(GlobalControl::HDM_DECODER_ENABLE));
        let outside = FirmwareDecoder {
            range: HpaRange::new(0, GIB),
            ..program
        };
        let mut fresh = device(1, GIB);
        assert!(matches!(
            fresh.firmware_commit(0, outside),
            Err(CommitError::OutsideWindow { .. })
        ));
        assert!(fresh.firmware_commit(3, program).is_err());
    }

    #[test]
    fn a_revoked_commit_shows_the_error_and_can_be_retried() {
        let mut b = device(1, GIB);
        let range = HpaRange::new(WINDOW.base, GIB);
        assert!(matches!(
            program(&mut b, 0, range, commit()),
            Some(HdmEvent::Committed { .. })
        ));
        b.revoke_commit(0);
        assert!(!b.decoder(0).unwrap().committed());
        assert!(ctrl(&b, 0).is_set(DecoderControl::ERROR_NOT_COMMITTED));
        // Unlocked and uncommitted: software can move it and commit again.
        b.write(control(0), 0);
        assert_eq!(b.decoder(0).unwrap().range(), range);
        assert!(matches!(
            b.write(control(0), commit().0),
            Some(HdmEvent::Committed { .. })
        ));
        assert!(!ctrl(&b, 0).is_set(DecoderControl::ERROR_NOT_COMMITTED));
        b.revoke_commit(7);
    }

    #[test]
    fn firmware_not_committed_shows_the_error_and_stays_writable() {
        let mut b = device(1, GIB);
        let range = HpaRange::new(WINDOW.base, GIB);
        let program = FirmwareDecoder {
            range,
            eiw: 0,
            eig: 0,
            target_or_skip: 0,
            host_only: false,
            lock: true,
        };
        b.firmware_not_committed(0, program);
        let d = *b.decoder(0).unwrap();
        assert_eq!(d.range(), range);
        assert!(!d.committed() && !d.locked());
        assert!(ctrl(&b, 0).is_set(DecoderControl::ERROR_NOT_COMMITTED));
        assert!(!ctrl(&b, 0).is_set(DecoderControl::COMMIT));
        // Software may still commit it (the error clears).
        assert!(matches!(
            b.write(control(0), commit().0),
            Some(HdmEvent::Committed { .. })
        ));
        assert!(!ctrl(&b, 0).is_set(DecoderControl::ERROR_NOT_COMMITTED));
        // A decoder the block does not have: nothing changes.
        let before = b.clone();
        b.firmware_not_committed(3, program);
        assert_eq!(b, before);
    }

    #[test]
    fn unaligned_and_unknown_offsets_are_harmless() {
        let mut b = device(1, GIB);
        assert_eq!(b.read(0x2), 0);
        assert_eq!(b.write(control(0) + 1, u32::MAX), None);
        assert_eq!(b.read(0x8), 0);
        assert_eq!(b.read(block_len(1)), 0);
        assert_eq!(b.write(u32::MAX - 3, u32::MAX), None);
        assert_eq!(b, device(1, GIB));
    }
}
