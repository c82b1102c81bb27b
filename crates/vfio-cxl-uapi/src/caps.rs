// SPDX-License-Identifier: GPL-2.0-or-later
//! Reading and writing capability chains of VFIO info buffers.
//!
//! `VFIO_DEVICE_GET_INFO` and `VFIO_DEVICE_GET_REGION_INFO` return a struct
//! followed by a chain of capabilities linked by byte offsets from the start
//! of the buffer. The buffer comes from another party (a kernel, a vfio-user
//! server), so every offset is checked; a malformed chain is an error, never
//! an out-of-bounds read or an endless walk.

use core::mem::size_of;

use crate::{
    VfioDeviceInfoCapCxl, VfioInfoCapHeader, VfioRegionInfoCapCxlCompRegs, VfioRegionInfoCapType,
    VFIO_DEVICE_INFO_CAP_CXL, VFIO_REGION_INFO_CAP_CXL_COMP_REGS, VFIO_REGION_INFO_CAP_TYPE,
};

/// Why a capability chain could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// A capability at this offset does not fit in the buffer.
    OutOfBounds { offset: usize },
    /// A link points back into the chain already walked (a loop).
    Loop { offset: usize },
    /// A capability overlaps the fixed info struct in front of the chain.
    Overlap { offset: usize },
}

impl core::fmt::Display for CapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::OutOfBounds { offset } => {
                write!(f, "capability at {offset:#x} runs past the info buffer")
            }
            Self::Loop { offset } => write!(f, "capability chain loops back to {offset:#x}"),
            Self::Overlap { offset } => {
                write!(f, "capability at {offset:#x} overlaps the info struct")
            }
        }
    }
}

/// One capability found in a chain: its header and where its bytes start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub header: VfioInfoCapHeader,
    pub offset: usize,
}

/// Walks the chain starting at `first` (the info struct's `cap_offset`).
///
/// `fixed` is the size of the info struct in front of the chain; no
/// capability may start inside it. Links must move strictly forward, which
/// is how the kernel builds chains and rules out loops.
pub fn walk(
    buf: &[u8],
    fixed: usize,
    first: u32,
) -> impl Iterator<Item = Result<Cap, CapError>> + '_ {
    let mut next = first as usize;
    let mut floor = fixed;
    let mut done = false;
    core::iter::from_fn(move || {
        if done || next == 0 {
            return None;
        }
        let offset = next;
        let result = read_header(buf, fixed, floor, offset);
        match result {
            Ok(header) => {
                floor = offset + size_of::<VfioInfoCapHeader>();
                next = header.next as usize;
            }
            Err(_) => done = true,
        }
        Some(result.map(|header| Cap { header, offset }))
    })
}

fn read_header(
    buf: &[u8],
    fixed: usize,
    floor: usize,
    offset: usize,
) -> Result<VfioInfoCapHeader, CapError> {
    if offset < fixed {
        return Err(CapError::Overlap { offset });
    }
    if offset < floor {
        return Err(CapError::Loop { offset });
    }
    let bytes = field(buf, offset, size_of::<VfioInfoCapHeader>())
        .ok_or(CapError::OutOfBounds { offset })?;
    Ok(VfioInfoCapHeader {
        id: u16::from_ne_bytes([bytes[0], bytes[1]]),
        version: u16::from_ne_bytes([bytes[2], bytes[3]]),
        next: u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    })
}

fn field(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

fn u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    field(buf, offset, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn u64_at(buf: &[u8], offset: usize) -> Option<u64> {
    field(buf, offset, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
}

/// Finds the first capability with `id`, or `Ok(None)` if the chain has none.
pub fn find(buf: &[u8], fixed: usize, first: u32, id: u16) -> Result<Option<Cap>, CapError> {
    for cap in walk(buf, fixed, first) {
        let cap = cap?;
        if cap.header.id == id {
            return Ok(Some(cap));
        }
    }
    Ok(None)
}

fn decode<T>(buf: &[u8], cap: Cap, build: impl FnOnce(&[u8]) -> T) -> Result<T, CapError> {
    field(buf, cap.offset, size_of::<T>())
        .map(build)
        .ok_or(CapError::OutOfBounds { offset: cap.offset })
}

/// Decodes a [`VfioRegionInfoCapType`] found by [`find`].
pub fn region_type(buf: &[u8], cap: Cap) -> Result<VfioRegionInfoCapType, CapError> {
    debug_assert_eq!(cap.header.id, VFIO_REGION_INFO_CAP_TYPE);
    decode(buf, cap, |b| VfioRegionInfoCapType {
        header: cap.header,
        type_: u32_at(b, 8).unwrap_or_default(),
        subtype: u32_at(b, 12).unwrap_or_default(),
    })
}

/// Decodes a [`VfioRegionInfoCapCxlCompRegs`] found by [`find`].
pub fn cxl_comp_regs(buf: &[u8], cap: Cap) -> Result<VfioRegionInfoCapCxlCompRegs, CapError> {
    debug_assert_eq!(cap.header.id, VFIO_REGION_INFO_CAP_CXL_COMP_REGS);
    decode(buf, cap, |b| VfioRegionInfoCapCxlCompRegs {
        header: cap.header,
        bar: u32_at(b, 8).unwrap_or_default(),
        reserved: u32_at(b, 12).unwrap_or_default(),
        offset: u64_at(b, 16).unwrap_or_default(),
        size: u64_at(b, 24).unwrap_or_default(),
    })
}

/// Decodes a [`VfioDeviceInfoCapCxl`] found by [`find`].
pub fn device_cxl(buf: &[u8], cap: Cap) -> Result<VfioDeviceInfoCapCxl, CapError> {
    debug_assert_eq!(cap.header.id, VFIO_DEVICE_INFO_CAP_CXL);
    decode(buf, cap, |b| VfioDeviceInfoCapCxl {
        header: cap.header,
        flags: u32_at(b, 8).unwrap_or_default(),
        reserved: u32_at(b, 12).unwrap_or_default(),
    })
}

/// Appends capabilities to an info buffer, linking each to the next.
///
/// Used by servers (the vfio-user software device) and by tests. Each
/// capability is placed at an 8-byte aligned offset, as the kernel does.
#[derive(Debug)]
pub struct ChainWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    last: Option<usize>,
}

impl<'a> ChainWriter<'a> {
    /// Starts a chain after the fixed info struct of `fixed` bytes.
    pub fn new(buf: &'a mut [u8], fixed: usize) -> Self {
        Self {
            buf,
            len: fixed,
            last: None,
        }
    }

    /// Appends one capability; `body` is everything after its header.
    /// Returns the capability's offset, or `None` if `buf` is too small
    /// (the caller reports the size it needs through `argsz`).
    pub fn push(&mut self, id: u16, version: u16, body: &[u8]) -> Option<usize> {
        let offset = self.len.checked_next_multiple_of(8)?;
        let end = offset
            .checked_add(size_of::<VfioInfoCapHeader>())?
            .checked_add(body.len())?;
        self.len = end;
        let dst = self.buf.get_mut(offset..end)?;
        dst[0..2].copy_from_slice(&id.to_ne_bytes());
        dst[2..4].copy_from_slice(&version.to_ne_bytes());
        dst[4..8].copy_from_slice(&0u32.to_ne_bytes());
        dst[8..].copy_from_slice(body);
        if let Some(prev) = self.last.replace(offset) {
            let link = u32::try_from(offset).ok()?;
            self.buf[prev + 4..prev + 8].copy_from_slice(&link.to_ne_bytes());
        }
        Some(offset)
    }

    /// Offset of the first capability (for the info struct's `cap_offset`).
    pub fn first(&self, fixed: usize) -> Option<usize> {
        self.last.map(|_| fixed.next_multiple_of(8))
    }

    /// Bytes the whole info buffer needs, even if `buf` was too small.
    pub fn needed(&self) -> usize {
        self.len
    }
}

/// The body bytes (after the header) of a [`VfioRegionInfoCapCxlCompRegs`].
pub fn cxl_comp_regs_body(bar: u32, offset: u64, size: u64) -> [u8; 24] {
    let mut body = [0u8; 24];
    body[0..4].copy_from_slice(&bar.to_ne_bytes());
    body[8..16].copy_from_slice(&offset.to_ne_bytes());
    body[16..24].copy_from_slice(&size.to_ne_bytes());
    body
}

/// The body bytes (after the header) of a [`VfioDeviceInfoCapCxl`].
pub fn device_cxl_body(flags: u32) -> [u8; 8] {
    let mut body = [0u8; 8];
    body[0..4].copy_from_slice(&flags.to_ne_bytes());
    body
}

/// The body bytes (after the header) of a [`VfioRegionInfoCapType`].
pub fn region_type_body(type_: u32, subtype: u32) -> [u8; 8] {
    let mut body = [0u8; 8];
    body[0..4].copy_from_slice(&type_.to_ne_bytes());
    body[4..8].copy_from_slice(&subtype.to_ne_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{VFIO_REGION_SUBTYPE_CXL_COMP_REGS, VFIO_REGION_TYPE_CXL};

    const FIXED: usize = 32; // sizeof(struct vfio_region_info)

    #[test]
    fn written_chain_reads_back() {
        let mut buf = [0u8; 128];
        let mut w = ChainWriter::new(&mut buf, FIXED);
        let t = w
            .push(
                VFIO_REGION_INFO_CAP_TYPE,
                1,
                &region_type_body(VFIO_REGION_TYPE_CXL, 2),
            )
            .unwrap();
        let c = w
            .push(
                VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
                1,
                &cxl_comp_regs_body(2, 0x1010, 0x30),
            )
            .unwrap();
        let first = w.first(FIXED).unwrap() as u32;
        assert_eq!((t, c, w.needed()), (32, 48, 80));

        let ty = find(&buf, FIXED, first, VFIO_REGION_INFO_CAP_TYPE)
            .unwrap()
            .unwrap();
        let ty = region_type(&buf, ty).unwrap();
        assert_eq!(
            (ty.type_, ty.subtype),
            (VFIO_REGION_TYPE_CXL, VFIO_REGION_SUBTYPE_CXL_COMP_REGS)
        );
        let geo = find(&buf, FIXED, first, VFIO_REGION_INFO_CAP_CXL_COMP_REGS)
            .unwrap()
            .unwrap();
        let geo = cxl_comp_regs(&buf, geo).unwrap();
        assert_eq!(
            (geo.bar, geo.offset, geo.size, geo.header.next),
            (2, 0x1010, 0x30, 0)
        );
        assert_eq!(find(&buf, FIXED, first, 77), Ok(None));
    }

    #[test]
    fn too_small_buffer_reports_needed_size() {
        let mut buf = [0u8; 40];
        let mut w = ChainWriter::new(&mut buf, FIXED);
        assert_eq!(
            w.push(VFIO_DEVICE_INFO_CAP_CXL, 1, &device_cxl_body(1)),
            None
        );
        assert_eq!(w.needed(), 48);
    }

    #[test]
    fn malformed_chains_are_errors() {
        let mut buf = [0u8; 64];
        // A cap at 32 that links to itself.
        buf[32..34].copy_from_slice(&1u16.to_ne_bytes());
        buf[36..40].copy_from_slice(&32u32.to_ne_bytes());
        assert_eq!(find(&buf, FIXED, 32, 9), Err(CapError::Loop { offset: 32 }));
        // A chain that starts inside the fixed struct.
        assert_eq!(
            find(&buf, FIXED, 8, 9),
            Err(CapError::Overlap { offset: 8 })
        );
        // A link past the end.
        buf[36..40].copy_from_slice(&60u32.to_ne_bytes());
        assert_eq!(
            find(&buf, FIXED, 32, 9),
            Err(CapError::OutOfBounds { offset: 60 })
        );
        // A header that fits but a body that does not.
        let cap = Cap {
            header: VfioInfoCapHeader {
                id: VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
                version: 1,
                next: 0,
            },
            offset: 48,
        };
        assert_eq!(
            cxl_comp_regs(&buf, cap),
            Err(CapError::OutOfBounds { offset: 48 })
        );
    }
}
