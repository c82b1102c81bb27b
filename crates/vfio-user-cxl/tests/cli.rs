// SPDX-License-Identifier: GPL-2.0-or-later
//! The `vfio-user-cxl` binary: bad input gives a clear message and exit
//! status 2; a good run serves one client on a real socket path and exits
//! 0 when it disconnects, removing the socket.

mod common;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use vfio_user_cxl::client::Client;
use vfio_user_cxl::protocol::Payload;

const BIN: &str = env!("CARGO_BIN_EXE_vfio-user-cxl");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < common::TIMEOUT, "server did not exit");
        sleep(Duration::from_millis(10));
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < common::TIMEOUT, "no socket appeared");
        sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let sock = sock.to_str().unwrap();
    let mem = dir.path().join("mem");
    let mem = mem.to_str().unwrap();
    std::fs::write(mem, [0u8; 4096]).unwrap();

    let cases: &[(&[&str], &str)] = &[
        (&[], "--socket <PATH>"),
        (&["--socket", sock, "--memory", mem], "--size <BYTES>"),
        (
            &["--socket", sock, "--memory", mem, "--size", "100M"],
            "multiple of 256 MiB",
        ),
        (
            &["--socket", sock, "--memory", mem, "--size", "lots"],
            "not a size",
        ),
        (
            &["--socket", sock, "--memory", mem, "--size", "256M"],
            "fewer than --size",
        ),
        (
            &[
                "--socket",
                sock,
                "--memory",
                "/nonexistent/x",
                "--size",
                "256M",
            ],
            "use --create",
        ),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
    ];
    for (args, want) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // An existing socket path is refused, and left alone.
    std::fs::write(sock, b"").unwrap();
    let o = run(&[
        "--socket", sock, "--memory", mem, "--size", "256M", "--create",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert!(Path::new(sock).exists());
    let o = run(&["--help"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--socket <PATH>"));
}

#[test]
fn serves_one_client_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("cxl.sock");
    let mem = dir.path().join("mem");
    let mut child = Command::new(BIN)
        .args(["--socket", sock.to_str().unwrap()])
        .args(["--memory", mem.to_str().unwrap()])
        .args(["--size", "256M", "--create"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&sock);
    assert_eq!(std::fs::metadata(&mem).unwrap().len(), 256 << 20);
    let stream = UnixStream::connect(&sock).unwrap();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut c = Client::new(stream);
    c.version(common::QEMU_CAPS).unwrap();
    let info = c.device_info(16).unwrap();
    assert_eq!(Payload(&info).u32(8), Some(11));
    let id = c.region_read(7, 0, 4).unwrap();
    assert_eq!(id, [0x36, 0x1b, 0x15, 0x00]);
    drop(c);
    let status = wait_exit(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("client disconnected"), "{err}");
    assert!(!sock.exists(), "socket removed on exit");
}

#[test]
fn sigterm_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("cxl.sock");
    let mem = dir.path().join("mem");
    let mut child = Command::new(BIN)
        .args(["--socket", sock.to_str().unwrap()])
        .args(["--memory", mem.to_str().unwrap()])
        .args(["--size", "256M", "--create", "--persist"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sock);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert!(!sock.exists());
}

/// What the memory file holds at 1 MiB once the server's socket exists,
/// after the file held a word there before the start.
fn word_after_start(extra: &[&str]) -> u64 {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("cxl.sock");
    let mem = dir.path().join("mem");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&mem)
        .unwrap();
    f.set_len(256 << 20).unwrap();
    f.write_all_at(&0x5eed_u64.to_ne_bytes(), 1 << 20).unwrap();
    let mut child = Command::new(BIN)
        .args(["--socket", sock.to_str().unwrap()])
        .args(["--memory", mem.to_str().unwrap(), "--size", "256M"])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sock);
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 1 << 20).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    u64::from_ne_bytes(b)
}

#[test]
fn memory_is_cleared_at_start_unless_kept() {
    assert_eq!(word_after_start(&[]), 0, "cleared before the socket exists");
    assert_eq!(word_after_start(&["--keep-memory"]), 0x5eed);
}
