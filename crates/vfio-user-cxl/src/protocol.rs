// SPDX-License-Identifier: GPL-2.0-or-later
//! The vfio-user wire format: message header, command numbers and the
//! fixed structs this server handles (QEMU 10.2.2,
//! docs/interop/vfio-user.rst, protocol version 0.0).
//!
//! All integers are in host byte order, as the specification says. Parsing
//! never trusts a length: every field is read through a bounds-checked
//! accessor, and a short payload is an error, not a panic.

/// Size of the header in front of every message.
pub const HEADER_LEN: usize = 16;

/// Protocol version this server speaks (QEMU 10.2.2 proposes 0.0).
pub const VERSION_MAJOR: u16 = 0;
pub const VERSION_MINOR: u16 = 0;

/// Largest `count` of a region read or write (the spec's default
/// `max_data_xfer_size`, announced in the version reply).
pub const MAX_DATA_XFER: u32 = 1 << 20;
/// Largest number of file descriptors one message may carry to us.
pub const MAX_MSG_FDS: usize = 16;
/// Largest message accepted: a region write of [`MAX_DATA_XFER`] bytes
/// plus its headers, with room for a version message's JSON.
pub const MAX_MSG_LEN: u32 = HEADER_LEN as u32 + 16 + MAX_DATA_XFER;

/// Command numbers (spec table "Commands").
pub mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    pub const DEVICE_GET_IRQ_INFO: u16 = 7;
    pub const DEVICE_SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
    pub const DMA_READ: u16 = 11;
    pub const DMA_WRITE: u16 = 12;
    pub const DEVICE_RESET: u16 = 13;
    pub const REGION_WRITE_MULTI: u16 = 15;

    /// Name of a command, for logs.
    pub fn name(command: u16) -> &'static str {
        match command {
            VERSION => "VERSION",
            DMA_MAP => "DMA_MAP",
            DMA_UNMAP => "DMA_UNMAP",
            DEVICE_GET_INFO => "DEVICE_GET_INFO",
            DEVICE_GET_REGION_INFO => "DEVICE_GET_REGION_INFO",
            DEVICE_GET_REGION_IO_FDS => "DEVICE_GET_REGION_IO_FDS",
            DEVICE_GET_IRQ_INFO => "DEVICE_GET_IRQ_INFO",
            DEVICE_SET_IRQS => "DEVICE_SET_IRQS",
            REGION_READ => "REGION_READ",
            REGION_WRITE => "REGION_WRITE",
            DMA_READ => "DMA_READ",
            DMA_WRITE => "DMA_WRITE",
            DEVICE_RESET => "DEVICE_RESET",
            REGION_WRITE_MULTI => "REGION_WRITE_MULTI",
            _ => "unknown",
        }
    }
}

/// Header flags.
pub mod flags {
    /// Mask of the message type.
    pub const TYPE_MASK: u32 = 0xf;
    pub const TYPE_COMMAND: u32 = 0x0;
    pub const TYPE_REPLY: u32 = 0x1;
    /// The sender wants no reply.
    pub const NO_REPLY: u32 = 1 << 4;
    /// The reply reports an error in the header's error field.
    pub const ERROR: u32 = 1 << 5;
}

/// `<linux/vfio.h>` values used on the wire.
pub mod vfio {
    pub const DEVICE_FLAGS_RESET: u32 = 1 << 0;
    pub const DEVICE_FLAGS_PCI: u32 = 1 << 1;
    pub const DEVICE_FLAGS_CAPS: u32 = 1 << 7;

    pub const REGION_INFO_FLAG_READ: u32 = 1 << 0;
    pub const REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
    pub const REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
    pub const REGION_INFO_FLAG_CAPS: u32 = 1 << 3;

    /// vfio-pci region indices.
    pub const PCI_BAR0_REGION_INDEX: u32 = 0;
    pub const PCI_ROM_REGION_INDEX: u32 = 6;
    pub const PCI_CONFIG_REGION_INDEX: u32 = 7;
    pub const PCI_VGA_REGION_INDEX: u32 = 8;
    pub const PCI_NUM_REGIONS: u32 = 9;

    /// vfio-pci interrupt indices.
    pub const PCI_INTX_IRQ_INDEX: u32 = 0;
    pub const PCI_MSI_IRQ_INDEX: u32 = 1;
    pub const PCI_MSIX_IRQ_INDEX: u32 = 2;
    pub const PCI_ERR_IRQ_INDEX: u32 = 3;
    pub const PCI_REQ_IRQ_INDEX: u32 = 4;
    pub const PCI_NUM_IRQS: u32 = 5;

    pub const IRQ_INFO_EVENTFD: u32 = 1 << 0;
    pub const IRQ_INFO_MASKABLE: u32 = 1 << 1;
    pub const IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
    pub const IRQ_INFO_NORESIZE: u32 = 1 << 3;

    pub const IRQ_SET_DATA_NONE: u32 = 1 << 0;
    pub const IRQ_SET_DATA_BOOL: u32 = 1 << 1;
    pub const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
    pub const IRQ_SET_DATA_TYPE_MASK: u32 = 0x7;
    pub const IRQ_SET_ACTION_MASK: u32 = 1 << 3;
    pub const IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
    pub const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
    pub const IRQ_SET_ACTION_TYPE_MASK: u32 = 0x38;

    pub const DMA_MAP_FLAG_READ: u32 = 1 << 0;
    pub const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
    pub const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
    pub const DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;

    /// `sizeof(struct vfio_device_info)` with `cap_offset` (the vfio-user
    /// spec shows the first 16 bytes; the tail carries capabilities).
    pub const DEVICE_INFO_LEN: usize = 24;
    /// The part of `vfio_device_info` the vfio-user spec defines.
    pub const DEVICE_INFO_BASE_LEN: usize = 16;
    /// `sizeof(struct vfio_region_info)`.
    pub const REGION_INFO_LEN: usize = 32;
    /// `sizeof(struct vfio_irq_info)`.
    pub const IRQ_INFO_LEN: usize = 16;
    /// `sizeof(struct vfio_irq_set)` without data.
    pub const IRQ_SET_LEN: usize = 20;
}

/// The 16-byte header of every message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub command: u16,
    /// Size of the whole message, header included.
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            id: u16::from_ne_bytes([b[0], b[1]]),
            command: u16::from_ne_bytes([b[2], b[3]]),
            size: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            flags: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            error: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&self.id.to_ne_bytes());
        b[2..4].copy_from_slice(&self.command.to_ne_bytes());
        b[4..8].copy_from_slice(&self.size.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.error.to_ne_bytes());
        b
    }

    pub fn is_command(&self) -> bool {
        self.flags & flags::TYPE_MASK == flags::TYPE_COMMAND
    }

    pub fn wants_reply(&self) -> bool {
        self.flags & flags::NO_REPLY == 0
    }
}

/// A bounds-checked little reader over a message payload.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a>(pub &'a [u8]);

impl Payload<'_> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u16(&self, at: usize) -> Option<u16> {
        let b = self.0.get(at..at.checked_add(2)?)?;
        Some(u16::from_ne_bytes([b[0], b[1]]))
    }

    pub fn u32(&self, at: usize) -> Option<u32> {
        let b = self.0.get(at..at.checked_add(4)?)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    }

    pub fn u64(&self, at: usize) -> Option<u64> {
        let b = self.0.get(at..at.checked_add(8)?)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}

/// Appends native-endian integers to a reply payload.
pub trait PutNe {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
}

impl PutNe for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
}

/// The JSON this server puts in its version reply. Short on purpose: QEMU
/// receives the reply into a buffer the size of its own proposal.
pub fn server_capabilities() -> String {
    serde_json::json!({
        "capabilities": {
            "max_msg_fds": MAX_MSG_FDS,
            "max_data_xfer_size": MAX_DATA_XFER,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            id: 7,
            command: cmd::REGION_READ,
            size: 48,
            flags: flags::TYPE_REPLY | flags::ERROR,
            error: 22,
        };
        assert_eq!(Header::parse(&h.encode()), h);
        assert!(!h.is_command());
    }

    #[test]
    fn payload_reads_are_bounds_checked() {
        let p = Payload(&[1, 0, 0, 0, 2]);
        assert_eq!(p.u32(0), Some(1));
        assert_eq!(p.u32(1), Some(2 << 24));
        assert_eq!(p.u32(2), None);
        assert_eq!(p.u64(usize::MAX - 2), None);
    }

    #[test]
    fn capabilities_fit_in_a_small_reply() {
        let caps = server_capabilities();
        assert!(caps.len() < 100, "{caps}");
        let v: serde_json::Value = serde_json::from_str(&caps).unwrap();
        assert_eq!(v["capabilities"]["max_msg_fds"], 16);
    }
}
