// SPDX-License-Identifier: GPL-2.0-or-later

//! The VFIO info the devices read: `VFIO_DEVICE_GET_INFO` with its
//! capability chain, and the capabilities of a region's info.
//!
//! Neither the host nor a vfio-user server is trusted: replies are read
//! as bytes, every capability header must lie inside the reply after the
//! fixed struct, and a chain must ascend, so a malformed reply walked
//! here can neither make QEMU read outside it nor loop. (Finding the
//! regions by type goes through QEMU's own
//! `vfio_device_get_region_info_type()`, whose `vfio_get_cap()` walk has
//! neither check; that is QEMU's, for every VFIO device, and not fixed
//! here.)

use std::mem::size_of;

use util::{ensure, Error, Result};

use crate::bindings;

/// uAPI additions of the CXL Type-2 series (docs/uapi.md of vfio-cxl).
pub const DEVICE_FLAGS_CXL: u32 = 1 << 9;
pub const DEVICE_INFO_CAP_CXL: u16 = 6;
pub const CAP_HOST_FIRMWARE_COMMITTED: u32 = 1 << 0;
pub const REGION_TYPE_CXL: u32 = 0x8000_0000 | 0x1e98;
pub const REGION_SUBTYPE_CXL_MEM: u32 = 1;
pub const REGION_SUBTYPE_CXL_COMP_REGS: u32 = 2;
pub const REGION_INFO_CAP_CXL_COMP_REGS: u16 = 0x1e98;

/// `struct vfio_info_cap_header`: id (u16), version (u16), next (u32).
const CAP_HEADER_LEN: usize = 8;
/// `struct vfio_device_info_cap_cxl`: header, flags (u32), reserved.
const DEVICE_CAP_CXL_LEN: usize = CAP_HEADER_LEN + 8;
/// `struct vfio_region_info_cap_comp_regs`: header, bar (u32), reserved,
/// offset (u64), size (u64).
const REGION_CAP_COMP_REGS_LEN: usize = CAP_HEADER_LEN + 24;

/// More than a device-info reply ever needs: a server cannot make it grow.
const INFO_MAX: u32 = 64 * 1024;

/// The fixed part of `struct vfio_device_info`.
const DEVICE_INFO_LEN: usize = size_of::<bindings::vfio_device_info>();
/// The fixed part of `struct vfio_region_info`.
const REGION_INFO_LEN: usize = size_of::<bindings::vfio_region_info>();

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(buf[at..at + 2].try_into().unwrap())
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap())
}

/// The offset in `buf` (a reply of `buf.len()` bytes whose first `fixed`
/// bytes are the fixed struct) of capability `id`, at least `cap_size`
/// bytes long, in the chain that starts at `offset`.
pub fn find_cap(buf: &[u8], fixed: usize, offset: u32, id: u16, cap_size: usize) -> Result<usize> {
    let size = buf.len();
    let mut offset = offset;
    while offset != 0 {
        let at = offset as usize;
        if at < fixed || at > size || size - at < CAP_HEADER_LEN {
            return Err(Error::format(format_args!(
                "malformed capability chain: header at 0x{offset:x} outside the {size} bytes of \
                 the reply"
            )));
        }
        if u16_at(buf, at) == id {
            ensure!(
                size - at >= cap_size,
                "capability {id} at 0x{offset:x} is cut short"
            );
            return Ok(at);
        }
        let next = u32_at(buf, at + 4);
        ensure!(
            next == 0 || next > offset,
            "malformed capability chain: 0x{offset:x} points back to 0x{next:x}"
        );
        offset = next;
    }
    Err(Error::format(format_args!("capability {id} is missing")))
}

/// A buffer for `VFIO_DEVICE_GET_INFO`: `argsz` bytes, aligned for
/// `struct vfio_device_info`, with `argsz` in its first field.
pub struct DeviceInfoBuf {
    words: Vec<u64>,
    argsz: u32,
}

impl DeviceInfoBuf {
    fn new(argsz: u32) -> Self {
        let mut words = vec![0u64; (argsz as usize).div_ceil(8)];
        let bytes = argsz.to_ne_bytes();
        let mut first = words[0].to_ne_bytes();
        first[..4].copy_from_slice(&bytes);
        words[0] = u64::from_ne_bytes(first);
        Self { words, argsz }
    }

    /// The buffer as the C calls take it; `argsz` bytes are writable.
    pub fn as_mut_ptr(&mut self) -> *mut bindings::vfio_device_info {
        self.words.as_mut_ptr().cast()
    }

    /// The `argsz` bytes.
    fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `argsz` initialized bytes, and
        // u8 has no alignment or validity requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.argsz as usize) }
    }
}

/// A `VFIO_DEVICE_GET_INFO` reply: the buffer (at least the fixed
/// struct) and the `argsz` the reply reports, which bounds the chain.
pub struct DeviceInfo {
    buf: DeviceInfoBuf,
    argsz: u32,
}

/// `VFIO_DEVICE_GET_INFO` with its capability chain: asks again with the
/// `argsz` the first reply says it needs, as QEMU's own
/// `vfio_get_device_info` does, up to [`INFO_MAX`].
pub fn get_device_info(get: impl Fn(&mut DeviceInfoBuf) -> Result<()>) -> Result<DeviceInfo> {
    let mut argsz = DEVICE_INFO_LEN as u32;
    let mut replied = argsz;
    for _ in 0..2 {
        let mut buf = DeviceInfoBuf::new(argsz);
        get(&mut buf)?;
        replied = u32_at(buf.bytes(), 0);
        if replied <= argsz {
            return Ok(DeviceInfo {
                buf,
                argsz: replied,
            });
        }
        if replied > INFO_MAX {
            break;
        }
        argsz = replied;
    }
    Err(Error::format(format_args!(
        "device info needs {replied} bytes after asking with {argsz}"
    )))
}

impl DeviceInfo {
    /// Refuses device info the contract does not cover: the device must
    /// be CXL, with the CXL capability, its host decoder
    /// firmware-committed.
    pub fn check(&self) -> Result<()> {
        let bytes = self.buf.bytes();
        let flags = u32_at(bytes, 4);
        let cap_offset = u32_at(bytes, 16);
        let argsz = self.argsz;
        ensure!(
            flags & DEVICE_FLAGS_CXL != 0,
            "not a CXL device (VFIO_DEVICE_FLAGS_CXL is clear)"
        );
        ensure!(
            flags & bindings::VFIO_DEVICE_FLAGS_CAPS != 0 && cap_offset != 0,
            "device info has no capability chain (argsz {argsz})"
        );
        let reply = &bytes[..argsz as usize];
        let at = find_cap(
            reply,
            DEVICE_INFO_LEN,
            cap_offset,
            DEVICE_INFO_CAP_CXL,
            DEVICE_CAP_CXL_LEN,
        )
        .map_err(|e| Error::format(format_args!("device info lacks the CXL capability: {e}")))?;
        let cap_flags = u32_at(reply, at + CAP_HEADER_LEN);
        ensure!(
            cap_flags & CAP_HOST_FIRMWARE_COMMITTED != 0,
            "the host HDM decoder is not firmware-committed (flags 0x{cap_flags:x}): not supported"
        );
        Ok(())
    }
}

/// Where the host's HDM decoder block is: the geometry capability of the
/// `CXL_COMP_REGS` region.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub bar: u32,
    pub offset: u64,
    pub size: u64,
}

/// A region's info as QEMU's VFIO layer caches it.
#[derive(Clone, Copy, Debug)]
pub struct RegionInfo<'a> {
    /// At least the fixed struct.
    bytes: &'a [u8],
    /// The reply's `argsz`, which bounds the chain.
    argsz: usize,
}

impl<'a> RegionInfo<'a> {
    /// The info at `info`, `argsz` bytes as it says.
    ///
    /// # Safety
    ///
    /// `info` is a reply of `vfio_device_get_region_info()`, whose buffer
    /// holds at least the `argsz` the reply reports, and outlives `'a`.
    pub unsafe fn from_raw(info: *const bindings::vfio_region_info) -> Self {
        // SAFETY: the caller's promise; argsz is the first field.
        let argsz = unsafe { (*info).argsz } as usize;
        let len = argsz.max(REGION_INFO_LEN);
        // SAFETY: as above; a reply is never shorter than the fixed
        // struct (QEMU allocates that much before it asks).
        let bytes = unsafe { std::slice::from_raw_parts(info.cast::<u8>(), len) };
        Self { bytes, argsz }
    }

    pub fn flags(&self) -> u32 {
        u32_at(self.bytes, 4)
    }

    pub fn index(&self) -> u32 {
        u32_at(self.bytes, 8)
    }

    pub fn size(&self) -> u64 {
        u64_at(self.bytes, 16)
    }

    /// The geometry capability, refused unless the chain is sound.
    pub fn geometry(&self) -> Result<Geometry> {
        ensure!(
            self.flags() & bindings::VFIO_REGION_INFO_FLAG_CAPS != 0,
            "the CXL component register region has no capability chain"
        );
        let reply = &self.bytes[..self.argsz];
        let at = find_cap(
            reply,
            REGION_INFO_LEN,
            u32_at(self.bytes, 12),
            REGION_INFO_CAP_CXL_COMP_REGS,
            REGION_CAP_COMP_REGS_LEN,
        )
        .map_err(|e| {
            Error::format(format_args!(
                "the CXL component register region lacks its geometry capability: {e}"
            ))
        })?;
        Ok(Geometry {
            bar: u32_at(reply, at + CAP_HEADER_LEN),
            offset: u64_at(reply, at + CAP_HEADER_LEN + 8),
            size: u64_at(reply, at + CAP_HEADER_LEN + 16),
        })
    }
}
