// SPDX-License-Identifier: GPL-2.0-or-later
//! The Register Locator DVSEC (CXL r3.1 §8.1.9, DVSEC ID 8): where a
//! function's register blocks live in its BARs. All fields are read-only.

use crate::dvsec::{header1, CXL_VENDOR_ID};
use crate::register;

/// DVSEC ID of the Register Locator DVSEC.
pub const DVSEC_ID_REGISTER_LOCATOR: u16 = 8;
/// DVSEC revision of the layout modelled here.
pub const REVISION: u8 = 0;
/// Offset of the first Register Block entry (§8.1.9.1).
pub const FIRST_ENTRY: u16 = 0x0c;
/// Size of one entry: Register Offset Low and High.
pub const ENTRY_LEN: u16 = 8;
/// Register blocks are 64 KiB aligned in their BAR (§8.1.9.1).
pub const BLOCK_ALIGN: u64 = 64 << 10;

register! {
    /// Register Offset Low (CXL r3.1 §8.1.9.1).
    pub RegisterOffsetLow: u32 {
        /// Register BIR: BAR index (0-5).
        BIR = 0, 3;
        /// Register Block Identifier.
        BLOCK_ID = 8, 8;
        /// Register Block Offset Low: offset bits [31:16].
        OFFSET_LOW = 16, 16;
    }
}

/// Register Block Identifiers (§8.1.9.1, Table 8-22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockId {
    Empty = 0,
    /// Component registers (§8.2.3).
    Component = 1,
    /// BAR Virtualization ACL registers.
    BarVirtualization = 2,
    /// CXL Memory Device registers.
    MemoryDevice = 3,
    /// CPMU registers.
    Cpmu = 4,
}

/// One register block: BAR `bar` at `offset` (64 KiB aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterBlock {
    pub id: u8,
    pub bar: u8,
    pub offset: u64,
}

/// DVSEC length for `entries` register blocks.
pub fn length(entries: usize) -> u16 {
    FIRST_ENTRY + ENTRY_LEN * entries as u16
}

/// The DVSEC's bytes from offset 4 (DVSEC Header 1) to its end, for the
/// emulator to place after the extended capability header.
///
/// # Panics
/// If a block is not 64 KiB aligned or names a BAR above 5: both are
/// programming errors of the emulator, not guest input.
pub fn encode(blocks: &[RegisterBlock]) -> Vec<u8> {
    let len = length(blocks.len());
    let mut out = Vec::with_capacity(usize::from(len) - 4);
    out.extend_from_slice(&header1(CXL_VENDOR_ID, REVISION, len).to_le_bytes());
    out.extend_from_slice(&DVSEC_ID_REGISTER_LOCATOR.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for b in blocks {
        assert!(
            b.offset % BLOCK_ALIGN == 0 && b.bar <= 5,
            "invalid register block {b:?}"
        );
        let low = RegisterOffsetLow::default()
            .with(RegisterOffsetLow::BIR, b.bar.into())
            .with(RegisterOffsetLow::BLOCK_ID, b.id.into())
            .with(RegisterOffsetLow::OFFSET_LOW, (b.offset >> 16) & 0xffff);
        out.extend_from_slice(&low.0.to_le_bytes());
        out.extend_from_slice(&((b.offset >> 32) as u32).to_le_bytes());
    }
    out
}

/// Why a Register Locator could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Header 1 names another vendor or the header 2 another DVSEC.
    NotRegisterLocator,
    /// The length field is shorter than the header or longer than the bytes.
    BadLength { length: u16 },
}

/// Decodes the DVSEC from its bytes starting at DVSEC Header 1 (as read
/// from a device's config space). Entries with a BIR above 5 are skipped.
pub fn decode(bytes: &[u8]) -> Result<Vec<RegisterBlock>, DecodeError> {
    let dword = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let h1 = dword(0).ok_or(DecodeError::NotRegisterLocator)?;
    let h2 = dword(4).ok_or(DecodeError::NotRegisterLocator)?;
    if h1 & 0xffff != u32::from(CXL_VENDOR_ID)
        || h2 & 0xffff != u32::from(DVSEC_ID_REGISTER_LOCATOR)
    {
        return Err(DecodeError::NotRegisterLocator);
    }
    let length = (h1 >> 20) as u16;
    let body = usize::from(length)
        .checked_sub(4)
        .filter(|&b| b >= 8 && b <= bytes.len());
    let body = body.ok_or(DecodeError::BadLength { length })?;
    let entries = (body - 8) / usize::from(ENTRY_LEN);
    Ok((0..entries)
        .filter_map(|i| {
            let at = 8 + i * usize::from(ENTRY_LEN);
            let low = RegisterOffsetLow(dword(at)?);
            let high = u64::from(dword(at + 4)?);
            let bar = low.get(RegisterOffsetLow::BIR) as u8;
            (bar <= 5).then(|| RegisterBlock {
                id: low.get(RegisterOffsetLow::BLOCK_ID) as u8,
                bar,
                offset: high << 32 | low.get(RegisterOffsetLow::OFFSET_LOW) << 16,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let blocks = [
            RegisterBlock {
                id: BlockId::Component as u8,
                bar: 2,
                offset: 0x1_0000,
            },
            RegisterBlock {
                id: BlockId::MemoryDevice as u8,
                bar: 4,
                offset: 0x2_0000_0000,
            },
        ];
        let bytes = encode(&blocks);
        assert_eq!(bytes.len(), usize::from(length(2)) - 4);
        // Header 1: vendor 0x1e98, length 0x1c.
        assert_eq!(&bytes[0..4], &(0x1e98u32 | 0x1c << 20).to_le_bytes());
        assert_eq!(&bytes[8..12], &(2u32 | 1 << 8 | 1 << 16).to_le_bytes());
        assert_eq!(decode(&bytes), Ok(blocks.to_vec()));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(decode(&[0; 3]), Err(DecodeError::NotRegisterLocator));
        let mut bytes = encode(&[RegisterBlock {
            id: 1,
            bar: 0,
            offset: 0,
        }]);
        bytes[2] = 0; // length nibble bits cleared: length 0x10 -> 0x0
        bytes[3] = 0;
        assert_eq!(decode(&bytes), Err(DecodeError::BadLength { length: 0 }));
        let mut other = encode(&[]);
        other[4] = 0;
        assert_eq!(decode(&other), Err(DecodeError::NotRegisterLocator));
    }
}
