// SPDX-License-Identifier: GPL-2.0-or-later
//! The server side of the vfio-user protocol for one [`CxlDevice`]: reads
//! commands from a connected client, answers them in order, and keeps the
//! per-connection state (DMA maps, interrupt eventfds) that the
//! specification says to drop when the client goes away.
//!
//! Malformed input never panics and never stalls the loop: a message whose
//! header is impossible (size below 16 or above [`MAX_MSG_LEN`]) gets an
//! error reply and ends the connection, since the stream cannot be trusted
//! past it; a well-framed message with a bad payload gets an error reply
//! and the connection goes on.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::device::{CxlDevice, Errno};
use crate::protocol::{
    cmd, flags, server_capabilities, vfio, Header, Payload, PutNe, HEADER_LEN, MAX_DATA_XFER,
    MAX_MSG_LEN, VERSION_MAJOR, VERSION_MINOR,
};
use crate::socket::{recv_exact, send_all, Received};

/// Most DMA maps a client may hold (the spec's default `max_dma_maps`).
const MAX_DMA_MAPS: usize = 65535;

/// Why a connection ended.
#[derive(Debug)]
pub enum ConnEnd {
    /// The client closed the socket between messages.
    Closed,
    /// The client sent something the stream cannot recover from.
    Protocol(String),
    /// The socket failed (including end of stream inside a message).
    Io(io::Error),
    /// The memory could not be cleared for this client, so it was not
    /// served (the previous client's data may still be there).
    NotCleared(io::Error),
}

impl std::fmt::Display for ConnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("client disconnected"),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::NotCleared(e) => write!(
                f,
                "refused the client: clearing the previous client's memory failed: {e}"
            ),
        }
    }
}

/// One DMA window the client registered.
#[derive(Debug)]
struct DmaMap {
    size: u64,
    #[allow(dead_code)] // kept for a future DMA-capable device
    flags: u32,
    #[allow(dead_code)]
    offset: u64,
    /// Held so the window stays valid while mapped; closed on unmap.
    _fd: Option<OwnedFd>,
}

/// State that lives as long as one client connection.
#[derive(Debug, Default)]
struct Session {
    negotiated: bool,
    dma: BTreeMap<u64, DmaMap>,
    /// Eventfds by (irq index, action flag, sub-index).
    irqs: HashMap<(u32, u32, u32), OwnedFd>,
}

/// What a handler answers.
struct Reply<'a> {
    payload: Vec<u8>,
    fd: Option<BorrowedFd<'a>>,
}

impl Reply<'_> {
    fn empty() -> Self {
        Self::data(Vec::new())
    }

    fn data(payload: Vec<u8>) -> Self {
        Self { payload, fd: None }
    }
}

type Handled<'a> = Result<Reply<'a>, Errno>;

/// The vfio-user server for one device.
#[derive(Debug)]
pub struct Server {
    device: CxlDevice,
    verbose: bool,
    /// Clear the memory before every client after the first.
    clear_between_clients: bool,
    clients: u64,
}

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("vfio-user-cxl: {}", format_args!($($arg)*)) };
}

impl Server {
    pub fn new(device: CxlDevice) -> Self {
        Self {
            device,
            verbose: false,
            clear_between_clients: false,
            clients: 0,
        }
    }

    /// Clears the device memory before serving a client that follows
    /// another, so one user never sees the previous user's data (the CLI
    /// turns this on unless `--keep-memory`, and clears once at start-up).
    pub fn set_clear_between_clients(&mut self, clear: bool) {
        self.clear_between_clients = clear;
    }

    /// Logs every message to stderr.
    pub fn set_verbose(&mut self, verbose: bool) {
        self.verbose = verbose;
    }

    pub fn device(&self) -> &CxlDevice {
        &self.device
    }

    /// Serves one client until it disconnects or breaks the protocol. The
    /// device keeps its state for the next client; DMA maps and eventfds
    /// of this one are released.
    pub fn serve(&mut self, sock: &UnixStream) -> ConnEnd {
        if self.clear_between_clients && self.clients > 0 {
            let start = std::time::Instant::now();
            if let Err(e) = self.device.clear_memory() {
                return ConnEnd::NotCleared(e);
            }
            log!(
                "device memory cleared for the new client ({} MiB in {:.3} ms)",
                self.device.mem_size() >> 20,
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        self.clients += 1;
        let mut session = Session::default();
        loop {
            match self.one_message(sock, &mut session) {
                Ok(true) => {}
                Ok(false) => return ConnEnd::Closed,
                Err(end) => return end,
            }
        }
    }

    /// Reads and answers one message; `Ok(false)` on a clean end of stream.
    fn one_message(&mut self, sock: &UnixStream, session: &mut Session) -> Result<bool, ConnEnd> {
        let mut got = Received::default();
        let mut hb = [0u8; HEADER_LEN];
        match recv_exact(sock, &mut hb, &mut got) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(ConnEnd::Io(e)),
        }
        let hdr = Header::parse(&hb);
        if self.verbose {
            log!(
                "<- id {} {} ({}) size {} flags {:#x}",
                hdr.id,
                cmd::name(hdr.command),
                hdr.command,
                hdr.size,
                hdr.flags
            );
        }
        if hdr.size < HEADER_LEN as u32 || hdr.size > MAX_MSG_LEN {
            let errno = if hdr.size > MAX_MSG_LEN {
                libc::E2BIG
            } else {
                libc::EINVAL
            };
            // Best effort: the connection ends either way.
            let _ = send_error(sock, &hdr, errno);
            return Err(ConnEnd::Protocol(format!(
                "message {} ({}) claims {} bytes (allowed {HEADER_LEN}..={MAX_MSG_LEN})",
                hdr.id,
                cmd::name(hdr.command),
                hdr.size
            )));
        }
        let mut body = vec![0u8; hdr.size as usize - HEADER_LEN];
        match recv_exact(sock, &mut body, &mut got) {
            Ok(_) if body.is_empty() => {}
            Ok(true) => {}
            Ok(false) => {
                return Err(ConnEnd::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended after a message header",
                )))
            }
            Err(e) => return Err(ConnEnd::Io(e)),
        }

        let verbose = self.verbose;
        let result = if !hdr.is_command() || got.truncated {
            Err(libc::EINVAL)
        } else {
            self.dispatch(&hdr, Payload(&body), got.fds, session)
        };
        if let Err(errno) = result {
            log!(
                "{} (id {}) failed: {}",
                cmd::name(hdr.command),
                hdr.id,
                io::Error::from_raw_os_error(errno)
            );
        } else if verbose {
            log!("-> id {} ok", hdr.id);
        }
        if !hdr.wants_reply() {
            return Ok(true);
        }
        let sent = match result {
            Ok(reply) => send_reply(sock, &hdr, &reply.payload, reply.fd),
            Err(errno) => send_error(sock, &hdr, errno),
        };
        sent.map(|()| true).map_err(ConnEnd::Io)
    }

    fn dispatch<'a>(
        &'a mut self,
        hdr: &Header,
        p: Payload<'_>,
        fds: Vec<OwnedFd>,
        s: &mut Session,
    ) -> Handled<'a> {
        let takes_fds = matches!(hdr.command, cmd::DMA_MAP | cmd::DEVICE_SET_IRQS);
        if !fds.is_empty() && !takes_fds {
            return Err(libc::EINVAL);
        }
        if hdr.command == cmd::VERSION {
            return self.version(p, s);
        }
        if !s.negotiated {
            return Err(libc::EINVAL);
        }
        match hdr.command {
            cmd::DMA_MAP => dma_map(p, fds, s),
            cmd::DMA_UNMAP => dma_unmap(p, s),
            cmd::DEVICE_GET_INFO => {
                if p.len() != vfio::DEVICE_INFO_BASE_LEN && p.len() != vfio::DEVICE_INFO_LEN {
                    return Err(libc::EINVAL);
                }
                let argsz = p.u32(0).ok_or(libc::EINVAL)?;
                self.device.device_info(argsz).map(Reply::data)
            }
            cmd::DEVICE_GET_REGION_INFO => {
                if p.len() != vfio::REGION_INFO_LEN {
                    return Err(libc::EINVAL);
                }
                let (argsz, index) = (p.u32(0), p.u32(8));
                let r = self
                    .device
                    .region_info(index.ok_or(libc::EINVAL)?, argsz.ok_or(libc::EINVAL)?)?;
                Ok(Reply {
                    payload: r.payload,
                    fd: r.fd,
                })
            }
            cmd::DEVICE_GET_REGION_IO_FDS => Err(libc::ENOTSUP),
            cmd::DEVICE_GET_IRQ_INFO => {
                if p.len() != vfio::IRQ_INFO_LEN {
                    return Err(libc::EINVAL);
                }
                let argsz = p.u32(0).ok_or(libc::EINVAL)?;
                let index = p.u32(8).ok_or(libc::EINVAL)?;
                if (argsz as usize) < vfio::IRQ_INFO_LEN {
                    return Err(libc::EINVAL);
                }
                let (flags, count) = self.device.irq_info(index).ok_or(libc::EINVAL)?;
                let mut out = Vec::new();
                out.put_u32(vfio::IRQ_INFO_LEN as u32);
                out.put_u32(flags);
                out.put_u32(index);
                out.put_u32(count);
                Ok(Reply::data(out))
            }
            cmd::DEVICE_SET_IRQS => self.set_irqs(p, fds, s),
            cmd::REGION_READ => {
                if p.len() != 16 {
                    return Err(libc::EINVAL);
                }
                let offset = p.u64(0).ok_or(libc::EINVAL)?;
                let region = p.u32(8).ok_or(libc::EINVAL)?;
                let count = p.u32(12).ok_or(libc::EINVAL)?;
                if count > MAX_DATA_XFER {
                    return Err(libc::EINVAL);
                }
                let data = self.device.region_read(region, offset, count)?;
                let mut out = Vec::with_capacity(16 + data.len());
                out.put_u64(offset);
                out.put_u32(region);
                out.put_u32(data.len() as u32);
                out.extend_from_slice(&data);
                Ok(Reply::data(out))
            }
            cmd::REGION_WRITE => {
                let offset = p.u64(0).ok_or(libc::EINVAL)?;
                let region = p.u32(8).ok_or(libc::EINVAL)?;
                let count = p.u32(12).ok_or(libc::EINVAL)?;
                if count > MAX_DATA_XFER || p.len() - 16 != count as usize {
                    return Err(libc::EINVAL);
                }
                let (n, events) = self.device.region_write(region, offset, &p.0[16..])?;
                for e in events {
                    log!("DVSEC: {e:?} (completed in the shadow, not forwarded)");
                }
                let mut out = Vec::new();
                out.put_u64(offset);
                out.put_u32(region);
                out.put_u32(n);
                Ok(Reply::data(out))
            }
            cmd::DEVICE_RESET => {
                if !p.is_empty() {
                    return Err(libc::EINVAL);
                }
                self.device.reset();
                log!(
                    "device reset: PCI state restored, DVSEC shadow back to bind time, memory kept"
                );
                Ok(Reply::empty())
            }
            _ => Err(libc::ENOSYS),
        }
    }

    fn version<'a>(&self, p: Payload<'_>, s: &mut Session) -> Handled<'a> {
        if s.negotiated {
            return Err(libc::EINVAL);
        }
        let major = p.u16(0).ok_or(libc::EINVAL)?;
        let minor = p.u16(2).ok_or(libc::EINVAL)?;
        if major != VERSION_MAJOR {
            return Err(libc::ENOTSUP);
        }
        let data = &p.0[4..];
        let json = match data.iter().position(|&b| b == 0) {
            Some(nul) => &data[..nul],
            None => data,
        };
        if !json.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| libc::EINVAL)?;
            let obj = v.as_object().ok_or(libc::EINVAL)?;
            if obj.get("capabilities").is_some_and(|c| !c.is_object()) {
                return Err(libc::EINVAL);
            }
        }
        s.negotiated = true;
        let mut out = Vec::new();
        out.put_u16(VERSION_MAJOR);
        // The reply's minor is at most the proposed one; ours, 0, always is.
        out.put_u16(VERSION_MINOR);
        out.extend_from_slice(server_capabilities().as_bytes());
        out.push(0);
        log!("client speaks vfio-user {major}.{minor}: negotiated {VERSION_MAJOR}.{VERSION_MINOR}");
        Ok(Reply::data(out))
    }

    fn set_irqs<'a>(&self, p: Payload<'_>, fds: Vec<OwnedFd>, s: &mut Session) -> Handled<'a> {
        let field = |at| p.u32(at).ok_or(libc::EINVAL);
        let (argsz, flags, index, start, count) =
            (field(0)?, field(4)?, field(8)?, field(12)?, field(16)?);
        if (argsz as usize) < vfio::IRQ_SET_LEN {
            return Err(libc::EINVAL);
        }
        let data = flags & vfio::IRQ_SET_DATA_TYPE_MASK;
        let action = flags & vfio::IRQ_SET_ACTION_TYPE_MASK;
        let known = vfio::IRQ_SET_DATA_TYPE_MASK | vfio::IRQ_SET_ACTION_TYPE_MASK;
        if flags & !known != 0 || data.count_ones() != 1 || action.count_ones() != 1 {
            return Err(libc::EINVAL);
        }
        let (_, max) = self.device.irq_info(index).ok_or(libc::EINVAL)?;
        if data != vfio::IRQ_SET_DATA_EVENTFD && !fds.is_empty() {
            return Err(libc::EINVAL);
        }
        if count == 0 {
            // Disable every interrupt of the index.
            if data != vfio::IRQ_SET_DATA_NONE {
                return Err(libc::EINVAL);
            }
            s.irqs.retain(|k, _| k.0 != index || k.1 != action);
            return Ok(Reply::empty());
        }
        let end = start.checked_add(count).ok_or(libc::EINVAL)?;
        if end > max {
            return Err(libc::EINVAL);
        }
        match data {
            vfio::IRQ_SET_DATA_BOOL if p.len() < vfio::IRQ_SET_LEN + count as usize => {
                return Err(libc::EINVAL)
            }
            vfio::IRQ_SET_DATA_EVENTFD => {
                if fds.is_empty() {
                    for sub in start..end {
                        s.irqs.remove(&(index, action, sub));
                    }
                } else if fds.len() == count as usize {
                    for (sub, fd) in (start..end).zip(fds) {
                        s.irqs.insert((index, action, sub), fd);
                    }
                } else {
                    return Err(libc::EINVAL);
                }
            }
            // Triggering, masking and unmasking by the client: this device
            // raises no interrupts, so there is nothing to change.
            _ => {}
        }
        Ok(Reply::empty())
    }
}

fn dma_map<'a>(p: Payload<'_>, mut fds: Vec<OwnedFd>, s: &mut Session) -> Handled<'a> {
    if p.len() != 32 || fds.len() > 1 {
        return Err(libc::EINVAL);
    }
    let field = |at| p.u64(at).ok_or(libc::EINVAL);
    let flags = p.u32(4).ok_or(libc::EINVAL)?;
    let (offset, iova, size) = (field(8)?, field(16)?, field(24)?);
    let known = vfio::DMA_MAP_FLAG_READ | vfio::DMA_MAP_FLAG_WRITE;
    if flags & !known != 0 || size == 0 {
        return Err(libc::EINVAL);
    }
    let end = iova.checked_add(size).ok_or(libc::EINVAL)?;
    let below = s.dma.range(..end).next_back();
    if below.is_some_and(|(&base, m)| base + m.size > iova) {
        return Err(libc::EEXIST);
    }
    if s.dma.len() >= MAX_DMA_MAPS {
        return Err(libc::ENOSPC);
    }
    s.dma.insert(
        iova,
        DmaMap {
            size,
            flags,
            offset,
            _fd: fds.pop(),
        },
    );
    Ok(Reply::empty())
}

fn dma_unmap<'a>(p: Payload<'_>, s: &mut Session) -> Handled<'a> {
    if p.len() != 24 {
        return Err(libc::EINVAL);
    }
    let flags = p.u32(4).ok_or(libc::EINVAL)?;
    let iova = p.u64(8).ok_or(libc::EINVAL)?;
    let size = p.u64(16).ok_or(libc::EINVAL)?;
    if flags & vfio::DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0 {
        return Err(libc::ENOTSUP);
    }
    if flags & !vfio::DMA_UNMAP_FLAG_ALL != 0 {
        return Err(libc::EINVAL);
    }
    if flags & vfio::DMA_UNMAP_FLAG_ALL != 0 {
        if iova != 0 || size != 0 {
            return Err(libc::EINVAL);
        }
        s.dma.clear();
    } else {
        unmap_range(&mut s.dma, iova, size)?;
    }
    Ok(Reply::data(p.0.to_vec()))
}

/// Drops every map inside `[iova, iova + size)` with the kernel's type1
/// (v2) rules, which QEMU's vIOMMU code relies on: a range that holds no
/// map succeeds with nothing unmapped (QEMU unmaps whole address spaces in
/// chunks), several maps go at once, and a range that cuts a map in two is
/// `EINVAL`, changing nothing. Ranges are inclusive of their last byte:
/// QEMU's last chunk ends at 2^64.
fn unmap_range(dma: &mut BTreeMap<u64, DmaMap>, iova: u64, size: u64) -> Result<(), Errno> {
    let last = size
        .checked_sub(1)
        .and_then(|s| iova.checked_add(s))
        .ok_or(libc::EINVAL)?;
    let cut_at_start = dma
        .range(..iova)
        .next_back()
        .is_some_and(|(&base, m)| base + (m.size - 1) >= iova);
    let cut_at_end = dma
        .range(iova..=last)
        .next_back()
        .is_some_and(|(&base, m)| base + (m.size - 1) > last);
    if cut_at_start || cut_at_end {
        return Err(libc::EINVAL);
    }
    let inside: Vec<u64> = dma.range(iova..=last).map(|(&base, _)| base).collect();
    for base in inside {
        dma.remove(&base);
    }
    Ok(())
}

fn send_reply(
    sock: &UnixStream,
    req: &Header,
    payload: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let hdr = Header {
        id: req.id,
        command: req.command,
        size: (HEADER_LEN + payload.len()) as u32,
        flags: flags::TYPE_REPLY,
        error: 0,
    };
    let mut msg = Vec::with_capacity(HEADER_LEN + payload.len());
    msg.extend_from_slice(&hdr.encode());
    msg.extend_from_slice(payload);
    send_all(sock, &msg, fd.as_slice())
}

fn send_error(sock: &UnixStream, req: &Header, errno: Errno) -> io::Result<()> {
    let hdr = Header {
        id: req.id,
        command: req.command,
        size: HEADER_LEN as u32,
        flags: flags::TYPE_REPLY | flags::ERROR,
        error: errno as u32,
    };
    send_all(sock, &hdr.encode(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(ranges: &[(u64, u64)]) -> BTreeMap<u64, DmaMap> {
        ranges
            .iter()
            .map(|&(base, size)| {
                let m = DmaMap {
                    size,
                    flags: 0,
                    offset: 0,
                    _fd: None,
                };
                (base, m)
            })
            .collect()
    }

    fn bases(dma: &BTreeMap<u64, DmaMap>) -> Vec<u64> {
        dma.keys().copied().collect()
    }

    #[test]
    fn unmapping_nothing_succeeds_and_changes_nothing() {
        let mut dma = maps(&[(0x10_0000, 0x10_0000)]);
        assert_eq!(unmap_range(&mut dma, 0xfef0_0000, 0x10_0000), Ok(()));
        assert_eq!(unmap_range(&mut dma, 0, 0x10_0000), Ok(()), "ends at a map");
        assert_eq!(
            unmap_range(&mut dma, 0x20_0000, 0x1000),
            Ok(()),
            "starts at its end"
        );
        assert_eq!(bases(&dma), [0x10_0000]);
        let mut empty = maps(&[]);
        assert_eq!(unmap_range(&mut empty, 0, u64::MAX), Ok(()));
    }

    #[test]
    fn a_range_may_end_at_the_top_of_the_address_space() {
        // QEMU's vIOMMU replay: the last chunk is [0xfef00000, 2^64).
        let mut dma = maps(&[(0x1_0000_0000, 0x1000), (0x10_0000, 0x1000)]);
        assert_eq!(
            unmap_range(&mut dma, 0xfef0_0000, 0xffff_ffff_0110_0000),
            Ok(())
        );
        assert_eq!(bases(&dma), [0x10_0000]);
        assert_eq!(
            unmap_range(&mut dma, 0x20_0000, u64::MAX - 0x1f_ffff),
            Ok(()),
            "to 2^64"
        );
        assert_eq!(bases(&dma), [0x10_0000]);
    }

    #[test]
    fn a_range_drops_every_map_it_covers() {
        let mut dma = maps(&[(0x1000, 0x1000), (0x3000, 0x2000), (0x8000, 0x1000)]);
        assert_eq!(unmap_range(&mut dma, 0, 0x6000), Ok(()));
        assert_eq!(bases(&dma), [0x8000]);
        assert_eq!(unmap_range(&mut dma, 0x8000, 0x1000), Ok(()), "exact");
        assert!(dma.is_empty());
    }

    #[test]
    fn a_range_that_cuts_a_map_is_refused_whole() {
        let mut dma = maps(&[(0x1000, 0x1000), (0x3000, 0x2000)]);
        let cut_end = unmap_range(&mut dma, 0, 0x4000);
        let cut_start = unmap_range(&mut dma, 0x4000, 0x4000);
        let inside = unmap_range(&mut dma, 0x3800, 0x100);
        assert_eq!([cut_end, cut_start, inside], [Err(libc::EINVAL); 3]);
        assert_eq!(bases(&dma), [0x1000, 0x3000], "nothing unmapped");
    }

    #[test]
    fn empty_and_wrapping_ranges_are_invalid() {
        let mut dma = maps(&[(0x1000, 0x1000)]);
        assert_eq!(unmap_range(&mut dma, 0x1000, 0), Err(libc::EINVAL));
        assert_eq!(
            unmap_range(&mut dma, u64::MAX, 2),
            Err(libc::EINVAL),
            "past 2^64"
        );
        assert_eq!(bases(&dma), [0x1000]);
    }
}
