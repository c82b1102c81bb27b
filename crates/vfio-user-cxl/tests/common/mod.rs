// SPDX-License-Identifier: GPL-2.0-or-later
//! Shared test harness: a server thread on one end of a socketpair and a
//! client on the other, with a sparse temporary file as device memory.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use vfio_user_cxl::client::Client;
use vfio_user_cxl::device::CxlDevice;
use vfio_user_cxl::server::{ConnEnd, Server};

/// The capabilities QEMU 10.2.2 proposes (hw/vfio-user/proxy.c caps_json).
pub const QEMU_CAPS: &str = r#"{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":268435456},"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}"#;

pub const MEM_SIZE: u64 = 256 << 20;

/// No test may wait longer than this for the server.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Harness {
    pub client: Client,
    pub mem: File,
    done: mpsc::Receiver<(Server, ConnEnd)>,
}

impl Harness {
    /// A server without a negotiated client.
    pub fn raw() -> Self {
        let mem = tempfile::tempfile().unwrap();
        mem.set_len(MEM_SIZE).unwrap();
        let dev = CxlDevice::new(mem.try_clone().unwrap(), MEM_SIZE).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let mut s = Server::new(dev);
            let end = s.serve(&b);
            let _ = tx.send((s, end));
        });
        Self {
            client: Client::new(a),
            mem,
            done,
        }
    }

    /// A server with a client that negotiated as QEMU does.
    pub fn new() -> Self {
        let mut h = Self::raw();
        h.client.version(QEMU_CAPS).unwrap();
        h
    }

    /// Closes the client side and returns how the server ended.
    pub fn finish(self) -> (Server, ConnEnd) {
        drop(self.client);
        self.done
            .recv_timeout(TIMEOUT)
            .expect("the server did not end after the client closed")
    }

    /// Waits for the server to end with the client still open.
    pub fn wait_end(&self) -> ConnEnd {
        self.done
            .recv_timeout(TIMEOUT)
            .expect("the server did not end")
            .1
    }
}
