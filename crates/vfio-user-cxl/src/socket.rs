// SPDX-License-Identifier: GPL-2.0-or-later
//! Byte-stream I/O over a UNIX socket with file descriptors passed as
//! `SCM_RIGHTS` ancillary data, which vfio-user uses for DMA-map fds,
//! eventfds and the fds of mmap-able regions.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::protocol::MAX_MSG_FDS;

/// Control-message buffer for up to [`MAX_MSG_FDS`] descriptors, aligned
/// for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 256]);

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((fds * size_of::<RawFd>()) as u32) as usize }
}

/// What one `recv_exact` found besides the bytes.
#[derive(Debug, Default)]
pub struct Received {
    pub fds: Vec<OwnedFd>,
    /// The sender passed more descriptors than fit; the kernel closed the
    /// rest. The message must be refused.
    pub truncated: bool,
}

/// Reads exactly `buf.len()` bytes. Returns `Ok(false)` on end of stream
/// before the first byte, an `UnexpectedEof` error on end of stream in the
/// middle.
pub fn recv_exact(sock: &UnixStream, buf: &mut [u8], got: &mut Received) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let n = recv_some(sock, &mut buf[done..], got)?;
        if n == 0 {
            if done == 0 {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ended after {done} of {} bytes", buf.len()),
            ));
        }
        done += n;
    }
    Ok(true)
}

fn recv_some(sock: &UnixStream, buf: &mut [u8], got: &mut Received) -> io::Result<usize> {
    let mut cmsg = CmsgBuf([0; 256]);
    debug_assert!(cmsg_space(MAX_MSG_FDS) <= cmsg.0.len());
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(MAX_MSG_FDS) as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (valid for writes of buf.len()
        // bytes) and at `cmsg` (valid for msg_controllen bytes); both
        // outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        got.truncated = true;
    }
    // SAFETY: the kernel filled `msg`'s control buffer; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within msg_controllen, and each SCM_RIGHTS payload
    // holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors that are now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    let fd = data.add(i).read_unaligned();
                    got.fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(n)
}

/// Sends `bytes` in full, with `fds` (at most [`MAX_MSG_FDS`]) attached
/// to the first byte.
pub fn send_all(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_MSG_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let mut done = 0;
    let mut fds = fds;
    loop {
        let mut cmsg = CmsgBuf([0; 256]);
        let rest = &bytes[done..];
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = cmsg_space(fds.len()) as _;
            // SAFETY: the control buffer is aligned and holds
            // CMSG_SPACE(4 * fds.len()) <= 256 bytes, so the first header
            // and its fds.len() descriptors fit.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN((fds.len() * size_of::<RawFd>()) as u32) as _;
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for (i, f) in fds.iter().enumerate() {
                    data.add(i).write_unaligned(f.as_raw_fd());
                }
            }
        }
        // SAFETY: `msg` points at `iov` (valid for reads of rest.len()
        // bytes) and, with fds, at the control buffer built above.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        fds = &[];
        done += n as usize;
        if done >= bytes.len() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bytes_and_fds_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_all(&a, b"hello world", &[file.as_fd()]).unwrap();
        let mut got = Received::default();
        let mut buf = [0u8; 5];
        assert!(recv_exact(&b, &mut buf, &mut got).unwrap());
        let mut rest = [0u8; 6];
        assert!(recv_exact(&b, &mut rest, &mut got).unwrap());
        assert_eq!(&buf, b"hello");
        assert_eq!(&rest, b" world");
        assert_eq!(got.fds.len(), 1);
        assert!(!got.truncated);
        drop(a);
        assert!(!recv_exact(&b, &mut buf, &mut got).unwrap(), "EOF");
    }
}
