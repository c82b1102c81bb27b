// SPDX-License-Identifier: GPL-2.0-or-later
//! The protocol layer: version negotiation, DMA and IRQ bookkeeping, and
//! malformed input (bad sizes, unknown commands, truncated headers, huge
//! lengths, random messages), which must get error replies and never crash
//! or stall the server.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsFd;

use common::{Harness, QEMU_CAPS};
use proptest::prelude::*;
use vfio_user_cxl::protocol::{cmd, flags, vfio, Header, PutNe, HEADER_LEN, MAX_MSG_LEN};
use vfio_user_cxl::server::ConnEnd;

fn header(id: u16, command: u16, size: u32, flags: u32) -> Vec<u8> {
    Header {
        id,
        command,
        size,
        flags,
        error: 0,
    }
    .encode()
    .to_vec()
}

fn errno<T: std::fmt::Debug>(r: vfio_user_cxl::client::Result<T>) -> i32 {
    match r {
        Err(e) => e.errno().unwrap_or_else(|| panic!("not an errno: {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn version_negotiation() {
    let mut h = Harness::raw();
    let (major, minor, json) = h.client.version(QEMU_CAPS).unwrap();
    assert_eq!((major, minor), (0, 0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let caps = &v["capabilities"];
    assert_eq!(caps["max_msg_fds"], 16);
    assert_eq!(caps["max_data_xfer_size"], 1 << 20);
    assert!(caps.get("write_multiple").is_none(), "not offered");
    assert!(json.len() < QEMU_CAPS.len(), "fits QEMU's receive buffer");
    assert_eq!(errno(h.client.version(QEMU_CAPS)), libc::EINVAL, "twice");
}

#[test]
fn version_without_json_and_bad_versions() {
    let mut h = Harness::raw();
    let mut p = Vec::new();
    p.put_u16(1);
    p.put_u16(0);
    let r = h.client.request(cmd::VERSION, &p, &[]).unwrap();
    assert_eq!(r.errno(), Some(libc::ENOTSUP), "major 1");
    let r = h.client.request(cmd::VERSION, &[0, 0], &[]).unwrap();
    assert_eq!(r.errno(), Some(libc::EINVAL), "short");
    let mut bad = vec![0, 0, 0, 0];
    bad.extend_from_slice(b"{not json\0");
    let r = h.client.request(cmd::VERSION, &bad, &[]).unwrap();
    assert_eq!(r.errno(), Some(libc::EINVAL), "bad JSON");
    let r = h.client.request(cmd::VERSION, &[0, 0, 0, 0], &[]).unwrap();
    assert_eq!(r.errno(), None, "no JSON at all is fine");
    let json = r.payload[4..].split(|&b| b == 0).next().unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(json).is_ok());
    assert_eq!(*r.payload.last().unwrap(), 0, "NUL-terminated");
}

#[test]
fn commands_before_version_are_refused() {
    let mut h = Harness::raw();
    assert_eq!(errno(h.client.device_info(16)), libc::EINVAL);
    h.client.version("{}").unwrap();
    assert!(h.client.device_info(16).is_ok());
}

#[test]
fn dma_map_and_unmap_are_tracked() {
    let mut h = Harness::new();
    let rw = vfio::DMA_MAP_FLAG_READ | vfio::DMA_MAP_FLAG_WRITE;
    let backing = tempfile::tempfile().unwrap();
    backing.set_len(1 << 20).unwrap();
    h.client
        .dma_map(rw, 0, 0x10_0000, 0x10_0000, Some(backing.as_fd()))
        .unwrap();
    h.client.dma_map(rw, 0, 0x40_0000, 0x1000, None).unwrap();
    assert_eq!(
        errno(h.client.dma_map(rw, 0, 0x18_0000, 0x1000, None)),
        libc::EEXIST
    );
    assert_eq!(
        errno(h.client.dma_map(rw, 0, 0xf_f000, 0x2000, None)),
        libc::EEXIST
    );
    assert_eq!(errno(h.client.dma_map(rw, 0, 0, 0, None)), libc::EINVAL);
    assert_eq!(
        errno(h.client.dma_map(rw, 0, u64::MAX, 2, None)),
        libc::EINVAL
    );
    // Type1 rules: cutting a map is refused, unmapping nothing succeeds.
    assert_eq!(
        errno(h.client.dma_unmap(0, 0x10_0000, 0x1000)),
        libc::EINVAL
    );
    h.client.dma_unmap(0, 0xfef0_0000, 0x10_0000).unwrap();
    h.client.dma_unmap(0, 0x10_0000, 0x10_0000).unwrap();
    h.client.dma_map(rw, 0, 0x18_0000, 0x1000, None).unwrap();
    h.client.dma_unmap(vfio::DMA_UNMAP_FLAG_ALL, 0, 0).unwrap();
    h.client.dma_unmap(0, 0x40_0000, 0x1000).unwrap();
    // Both maps are gone: their ranges map again.
    h.client.dma_map(rw, 0, 0x40_0000, 0x1000, None).unwrap();
    h.client.dma_map(rw, 0, 0x18_0000, 0x1000, None).unwrap();
    assert_eq!(
        errno(
            h.client
                .dma_unmap(vfio::DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 0, 0)
        ),
        libc::ENOTSUP
    );
}

#[test]
fn set_irqs() {
    let mut h = Harness::new();
    let efd = tempfile::tempfile().unwrap(); // any fd stands in for an eventfd
    let trigger = vfio::IRQ_SET_ACTION_TRIGGER;
    let ev = vfio::IRQ_SET_DATA_EVENTFD | trigger;
    h.client
        .set_irqs(ev, vfio::PCI_ERR_IRQ_INDEX, 0, 1, &[efd.as_fd()])
        .unwrap();
    h.client
        .set_irqs(ev, vfio::PCI_ERR_IRQ_INDEX, 0, 1, &[])
        .unwrap();
    h.client
        .set_irqs(
            vfio::IRQ_SET_DATA_NONE | trigger,
            vfio::PCI_INTX_IRQ_INDEX,
            0,
            0,
            &[],
        )
        .unwrap();
    let bad = [
        (ev, vfio::PCI_ERR_IRQ_INDEX, 0, 2),
        (ev, vfio::PCI_MSIX_IRQ_INDEX, 0, 1),
        (ev, 9, 0, 1),
        (
            vfio::IRQ_SET_DATA_NONE | vfio::IRQ_SET_DATA_BOOL | trigger,
            3,
            0,
            1,
        ),
        (vfio::IRQ_SET_DATA_NONE, 3, 0, 1),
        (ev, vfio::PCI_ERR_IRQ_INDEX, u32::MAX, 2),
    ];
    for (f, index, start, count) in bad {
        assert_eq!(
            errno(h.client.set_irqs(f, index, start, count, &[])),
            libc::EINVAL,
            "{f:#x} {index} {start} {count}"
        );
    }
    // Two fds for one interrupt.
    assert_eq!(
        errno(h.client.set_irqs(
            ev,
            vfio::PCI_ERR_IRQ_INDEX,
            0,
            1,
            &[efd.as_fd(), efd.as_fd()]
        )),
        libc::EINVAL
    );
}

#[test]
fn unknown_and_unsupported_commands() {
    let mut h = Harness::new();
    for c in [0, 11, 12, 14, cmd::REGION_WRITE_MULTI, 16, 99, u16::MAX] {
        let r = h.client.request(c, &[0; 8], &[]).unwrap();
        assert_eq!(r.errno(), Some(libc::ENOSYS), "command {c}");
        assert_eq!(
            r.header.size, HEADER_LEN as u32,
            "error replies carry no payload"
        );
    }
    let r = h
        .client
        .request(cmd::DEVICE_GET_REGION_IO_FDS, &[0; 16], &[])
        .unwrap();
    assert_eq!(r.errno(), Some(libc::ENOTSUP));
}

#[test]
fn bad_payload_sizes() {
    let mut h = Harness::new();
    let cases: &[(u16, usize)] = &[
        (cmd::DEVICE_GET_INFO, 4),
        (cmd::DEVICE_GET_INFO, 20),
        (cmd::DEVICE_GET_REGION_INFO, 16),
        (cmd::DEVICE_GET_REGION_INFO, 40),
        (cmd::DEVICE_GET_IRQ_INFO, 8),
        (cmd::DEVICE_SET_IRQS, 12),
        (cmd::REGION_READ, 8),
        (cmd::REGION_READ, 24),
        (cmd::REGION_WRITE, 8),
        (cmd::DMA_MAP, 24),
        (cmd::DMA_UNMAP, 16),
        (cmd::DEVICE_RESET, 4),
    ];
    for &(c, len) in cases {
        let r = h.client.request(c, &vec![0; len], &[]).unwrap();
        assert_eq!(
            r.errno(),
            Some(libc::EINVAL),
            "{} with {len} bytes",
            cmd::name(c)
        );
    }
    // A region write whose count disagrees with the data it carries.
    let mut p = Vec::new();
    p.put_u64(0);
    p.put_u32(vfio::PCI_CONFIG_REGION_INDEX);
    p.put_u32(8);
    p.extend_from_slice(&[0; 4]);
    let r = h.client.request(cmd::REGION_WRITE, &p, &[]).unwrap();
    assert_eq!(r.errno(), Some(libc::EINVAL));
    // Descriptors where none belong.
    let f = tempfile::tempfile().unwrap();
    let mut p = Vec::new();
    p.put_u32(16);
    p.extend_from_slice(&[0; 12]);
    let r = h
        .client
        .request(cmd::DEVICE_GET_INFO, &p, &[f.as_fd()])
        .unwrap();
    assert_eq!(r.errno(), Some(libc::EINVAL));
    // Still in sync afterwards.
    assert!(h.client.device_info(16).is_ok());
}

#[test]
fn a_reply_from_the_client_is_an_error() {
    let mut h = Harness::new();
    let r = h
        .client
        .request_flags(cmd::DEVICE_GET_INFO, flags::TYPE_REPLY, &[0; 16], &[])
        .unwrap();
    assert_eq!(r.errno(), Some(libc::EINVAL));
}

#[test]
fn no_reply_commands_are_processed_silently() {
    let mut h = Harness::new();
    let mut p = Vec::new();
    p.put_u64(0x04);
    p.put_u32(vfio::PCI_CONFIG_REGION_INDEX);
    p.put_u32(2);
    p.extend_from_slice(&2u16.to_le_bytes());
    let mut msg = header(
        500,
        cmd::REGION_WRITE,
        (HEADER_LEN + p.len()) as u32,
        flags::NO_REPLY,
    );
    msg.extend_from_slice(&p);
    h.client.send_raw(&msg, &[]).unwrap();
    // A posted bad command gets no reply either.
    h.client
        .send_raw(&header(501, 99, HEADER_LEN as u32, flags::NO_REPLY), &[])
        .unwrap();
    // The next reply is for the next request, and the write took effect.
    let cmdreg = h
        .client
        .region_read(vfio::PCI_CONFIG_REGION_INDEX, 0x04, 2)
        .unwrap();
    assert_eq!(cmdreg, [2, 0]);
}

#[test]
fn huge_length_is_refused_and_ends_the_connection() {
    let h = Harness::new();
    h.client
        .send_raw(&header(7, cmd::REGION_WRITE, u32::MAX, 0), &[])
        .unwrap();
    let r = h.client.recv().unwrap().expect("an error reply");
    assert_eq!(r.header.id, 7);
    assert_eq!(r.header.flags & flags::ERROR, flags::ERROR);
    assert_eq!(r.header.error as i32, libc::E2BIG);
    assert!(matches!(h.wait_end(), ConnEnd::Protocol(_)));
    assert!(h.client.recv().unwrap().is_none(), "socket closed");
}

#[test]
fn just_over_the_limit_is_refused() {
    let h = Harness::new();
    h.client
        .send_raw(&header(8, cmd::REGION_WRITE, MAX_MSG_LEN + 1, 0), &[])
        .unwrap();
    let r = h.client.recv().unwrap().unwrap();
    assert_eq!(r.header.error as i32, libc::E2BIG);
}

#[test]
fn size_below_the_header_is_refused() {
    let h = Harness::new();
    h.client
        .send_raw(&header(9, cmd::DEVICE_GET_INFO, 8, 0), &[])
        .unwrap();
    let r = h.client.recv().unwrap().unwrap();
    assert_eq!(r.header.error as i32, libc::EINVAL);
    assert!(matches!(h.wait_end(), ConnEnd::Protocol(_)));
}

#[test]
fn truncated_header_ends_the_connection() {
    let h = Harness::new();
    let mut s = h.client.socket();
    s.write_all(&header(1, cmd::DEVICE_GET_INFO, 32, 0)[..7])
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(matches!(h.wait_end(), ConnEnd::Io(_)));
}

#[test]
fn truncated_body_ends_the_connection() {
    let h = Harness::new();
    let mut s = h.client.socket();
    s.write_all(&header(1, cmd::DEVICE_GET_INFO, 32, 0))
        .unwrap();
    s.write_all(&[16, 0, 0]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(matches!(h.wait_end(), ConnEnd::Io(_)));
}

#[test]
fn clean_disconnect() {
    let h = Harness::new();
    let (_, end) = h.finish();
    assert!(matches!(end, ConnEnd::Closed));
}

/// One random, well-framed command.
fn message() -> impl Strategy<Value = (u16, u32, Vec<u8>)> {
    let command = prop_oneof![0u16..20, any::<u16>()];
    let flags = prop_oneof![Just(0u32), Just(flags::NO_REPLY), any::<u32>()];
    let payload = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..48),
        // Plausible region accesses: small offsets, regions 0..12, counts
        // that are sometimes huge.
        (0u64..0x2000, 0u32..12, prop_oneof![0u32..16, any::<u32>()]).prop_map(
            |(off, region, count)| {
                let mut p = Vec::new();
                p.put_u64(off);
                p.put_u32(region);
                p.put_u32(count);
                p
            }
        ),
    ];
    // Well-formed region writes anywhere (config, BAR 0, the decoder view,
    // memory), so the device state really changes.
    let write = (
        0u64..0x2000,
        0u32..12,
        proptest::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(off, region, data)| {
            let mut p = Vec::new();
            p.put_u64(off);
            p.put_u32(region);
            p.put_u32(data.len() as u32);
            p.extend_from_slice(&data);
            (cmd::REGION_WRITE, 0, p)
        });
    prop_oneof![3 => (command, flags, payload), 2 => write]
}

/// The decoder view, dword by dword.
fn comp_view(h: &mut Harness) -> Vec<u32> {
    (0..0x30)
        .step_by(4)
        .map(|o| {
            let b = h.client.region_read(10, o, 4).unwrap();
            u32::from_ne_bytes(b.try_into().unwrap())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random commands after the handshake: each gets a reply (or none when
    /// posted), and the server still answers a normal request afterwards.
    #[test]
    fn random_messages_never_break_the_server(msgs in proptest::collection::vec(message(), 1..24)) {
        let mut h = Harness::new();
        let view = comp_view(&mut h);
        for (i, (command, fl, payload)) in msgs.into_iter().enumerate() {
            // A client reset would disable Memory Space; harmless here.
            let id = 1000 + i as u16;
            let mut m = header(id, command, (HEADER_LEN + payload.len()) as u32, fl);
            m.extend_from_slice(&payload);
            h.client.send_raw(&m, &[]).unwrap();
            let posted = fl & flags::NO_REPLY != 0;
            if !posted {
                let r = h.client.recv().unwrap().expect("a reply");
                prop_assert_eq!(r.header.id, id);
                prop_assert_eq!(r.header.command, command);
                prop_assert_eq!(r.header.flags & flags::TYPE_MASK, flags::TYPE_REPLY);
                prop_assert_eq!(r.header.size as usize, HEADER_LEN + r.payload.len());
            }
        }
        prop_assert!(h.client.device_info(16).is_ok());
        // Whatever was written, the decoder view is what firmware committed.
        prop_assert_eq!(comp_view(&mut h), view);
        let (_, end) = h.finish();
        prop_assert!(matches!(end, ConnEnd::Closed));
    }

    /// Arbitrary bytes on the wire: the server ends the connection or keeps
    /// answering, but never panics or waits forever once the client closes.
    #[test]
    fn random_bytes_end_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let h = Harness::raw();
        let mut s = h.client.socket();
        // The server may close early and make the write fail: that is fine.
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        // Drain replies until the server closes its end.
        while let Ok(Some(_)) = h.client.recv() {}
        // wait_end panics if the server is still running.
        let _ = h.wait_end();
    }
}
