// SPDX-License-Identifier: GPL-2.0-or-later
//! A minimal, blocking vfio-user client: what the tests use to drive the
//! server the way QEMU's `vfio-user-pci` does (same message layouts as
//! hw/vfio-user/device.c), and a base for tools that want to inspect a
//! running server.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::protocol::{cmd, flags, vfio, Header, Payload, PutNe, HEADER_LEN};
use crate::socket::{recv_exact, send_all, Received};

/// A reply from the server.
#[derive(Debug)]
pub struct Response {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Response {
    /// The errno of an error reply.
    pub fn errno(&self) -> Option<i32> {
        (self.header.flags & flags::ERROR != 0).then_some(self.header.error as i32)
    }

    fn ok(self) -> std::result::Result<Self, i32> {
        match self.errno() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// `struct vfio_region_info` and its capability chain.
#[derive(Debug)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
    /// The whole payload, for capability lookups.
    pub raw: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

/// Errors of the typed helpers: the socket failed, or the server replied
/// with an errno.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Errno(i32),
    /// A reply too short for its fixed part.
    Malformed(&'static str),
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl ClientError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Errno(e) => Some(*e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to a vfio-user server.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    next_id: u16,
}

impl Client {
    pub fn new(sock: UnixStream) -> Self {
        Self { sock, next_id: 1 }
    }

    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Sends raw bytes (for malformed-message tests).
    pub fn send_raw(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        send_all(&self.sock, bytes, fds)
    }

    /// Receives one message; `Ok(None)` at end of stream.
    pub fn recv(&self) -> io::Result<Option<Response>> {
        let mut got = Received::default();
        let mut hb = [0u8; HEADER_LEN];
        if !recv_exact(&self.sock, &mut hb, &mut got)? {
            return Ok(None);
        }
        let header = Header::parse(&hb);
        let len = (header.size as usize).saturating_sub(HEADER_LEN);
        if len > (64 << 20) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply too large",
            ));
        }
        let mut payload = vec![0u8; len];
        recv_exact(&self.sock, &mut payload, &mut got)?;
        Ok(Some(Response {
            header,
            payload,
            fds: got.fds,
        }))
    }

    /// Sends a command with `flags` and waits for its reply.
    pub fn request_flags(
        &mut self,
        command: u16,
        flags: u32,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<Response> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let hdr = Header {
            id,
            command,
            size: (HEADER_LEN + payload.len()) as u32,
            flags,
            error: 0,
        };
        let mut msg = hdr.encode().to_vec();
        msg.extend_from_slice(payload);
        self.send_raw(&msg, fds)?;
        let r = self.recv()?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the socket")
        })?;
        if r.header.id != id || r.header.command != command {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply {:?} does not match request {id}", r.header),
            ));
        }
        Ok(r)
    }

    /// Sends a command and waits for its reply.
    pub fn request(
        &mut self,
        command: u16,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<Response> {
        self.request_flags(command, flags::TYPE_COMMAND, payload, fds)
    }

    fn call(&mut self, command: u16, payload: &[u8]) -> Result<Response> {
        self.request(command, payload, &[])?
            .ok()
            .map_err(ClientError::Errno)
    }

    /// `VFIO_USER_VERSION` 0.0 with `caps` JSON; returns (major, minor, json).
    pub fn version(&mut self, caps: &str) -> Result<(u16, u16, String)> {
        let mut p = Vec::new();
        p.put_u16(0);
        p.put_u16(0);
        p.extend_from_slice(caps.as_bytes());
        p.push(0);
        let r = self.call(cmd::VERSION, &p)?;
        let pl = Payload(&r.payload);
        let (major, minor) = (
            pl.u16(0).ok_or(ClientError::Malformed("version"))?,
            pl.u16(2).ok_or(ClientError::Malformed("version"))?,
        );
        let json = r.payload[4..].split(|&b| b == 0).next().unwrap_or(&[]);
        Ok((major, minor, String::from_utf8_lossy(json).into_owned()))
    }

    /// `VFIO_USER_DEVICE_GET_INFO`: the raw `vfio_device_info` payload.
    pub fn device_info(&mut self, argsz: u32) -> Result<Vec<u8>> {
        let mut p = Vec::new();
        p.put_u32(argsz);
        p.put_u32(0);
        p.put_u32(0);
        p.put_u32(0);
        Ok(self.call(cmd::DEVICE_GET_INFO, &p)?.payload)
    }

    /// `VFIO_USER_DEVICE_GET_REGION_INFO` with `argsz`.
    pub fn region_info_argsz(&mut self, index: u32, argsz: u32) -> Result<RegionInfo> {
        let mut p = Vec::new();
        p.put_u32(argsz);
        p.put_u32(0);
        p.put_u32(index);
        p.put_u32(0);
        p.put_u64(0);
        p.put_u64(0);
        let mut r = self.call(cmd::DEVICE_GET_REGION_INFO, &p)?;
        let pl = Payload(&r.payload);
        let bad = ClientError::Malformed("region info");
        if pl.len() < vfio::REGION_INFO_LEN {
            return Err(bad);
        }
        Ok(RegionInfo {
            argsz: pl.u32(0).unwrap_or(0),
            flags: pl.u32(4).unwrap_or(0),
            index: pl.u32(8).unwrap_or(0),
            cap_offset: pl.u32(12).unwrap_or(0),
            size: pl.u64(16).unwrap_or(0),
            offset: pl.u64(24).unwrap_or(0),
            fd: r.fds.pop(),
            raw: r.payload,
        })
    }

    /// `VFIO_USER_DEVICE_GET_REGION_INFO`, retried with the size the
    /// server asks for, as QEMU does.
    pub fn region_info(&mut self, index: u32) -> Result<RegionInfo> {
        let mut argsz = vfio::REGION_INFO_LEN as u32;
        loop {
            let info = self.region_info_argsz(index, argsz)?;
            if info.argsz <= argsz {
                return Ok(info);
            }
            argsz = info.argsz;
        }
    }

    /// `VFIO_USER_DEVICE_GET_IRQ_INFO`: (flags, count).
    pub fn irq_info(&mut self, index: u32) -> Result<(u32, u32)> {
        let mut p = Vec::new();
        p.put_u32(vfio::IRQ_INFO_LEN as u32);
        p.put_u32(0);
        p.put_u32(index);
        p.put_u32(0);
        let r = self.call(cmd::DEVICE_GET_IRQ_INFO, &p)?;
        let pl = Payload(&r.payload);
        Ok((
            pl.u32(4).ok_or(ClientError::Malformed("irq info"))?,
            pl.u32(12).ok_or(ClientError::Malformed("irq info"))?,
        ))
    }

    /// `VFIO_USER_DEVICE_SET_IRQS` with eventfds (or none).
    pub fn set_irqs(
        &mut self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        let mut p = Vec::new();
        p.put_u32(vfio::IRQ_SET_LEN as u32);
        p.put_u32(flags);
        p.put_u32(index);
        p.put_u32(start);
        p.put_u32(count);
        self.request(cmd::DEVICE_SET_IRQS, &p, fds)?
            .ok()
            .map(|_| ())
            .map_err(ClientError::Errno)
    }

    /// `VFIO_USER_REGION_READ`: the bytes the server returned.
    pub fn region_read(&mut self, index: u32, offset: u64, count: u32) -> Result<Vec<u8>> {
        let mut p = Vec::new();
        p.put_u64(offset);
        p.put_u32(index);
        p.put_u32(count);
        let r = self.call(cmd::REGION_READ, &p)?;
        let n = Payload(&r.payload)
            .u32(12)
            .ok_or(ClientError::Malformed("region read"))? as usize;
        r.payload
            .get(16..16 + n)
            .map(<[u8]>::to_vec)
            .ok_or(ClientError::Malformed("region read count"))
    }

    /// `VFIO_USER_REGION_WRITE`: the count the server wrote.
    pub fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<u32> {
        let mut p = Vec::new();
        p.put_u64(offset);
        p.put_u32(index);
        p.put_u32(data.len() as u32);
        p.extend_from_slice(data);
        let r = self.call(cmd::REGION_WRITE, &p)?;
        Payload(&r.payload)
            .u32(12)
            .ok_or(ClientError::Malformed("region write"))
    }

    /// `VFIO_USER_DEVICE_RESET`.
    pub fn reset(&mut self) -> Result<()> {
        self.call(cmd::DEVICE_RESET, &[]).map(|_| ())
    }

    /// `VFIO_USER_DMA_MAP`.
    pub fn dma_map(
        &mut self,
        flags: u32,
        offset: u64,
        iova: u64,
        size: u64,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let mut p = Vec::new();
        p.put_u32(32);
        p.put_u32(flags);
        p.put_u64(offset);
        p.put_u64(iova);
        p.put_u64(size);
        self.request(cmd::DMA_MAP, &p, fd.as_slice())?
            .ok()
            .map(|_| ())
            .map_err(ClientError::Errno)
    }

    /// `VFIO_USER_DMA_UNMAP`.
    pub fn dma_unmap(&mut self, flags: u32, iova: u64, size: u64) -> Result<()> {
        let mut p = Vec::new();
        p.put_u32(24);
        p.put_u32(flags);
        p.put_u64(iova);
        p.put_u64(size);
        self.call(cmd::DMA_UNMAP, &p).map(|_| ())
    }
}
