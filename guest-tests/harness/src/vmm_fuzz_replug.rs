//! The host side of `vfio-user-cxl-guest-fuzz`'s hot-unplug/replug
//! operation: each time the guest asks (fact `fuzz.replug.req`), a host
//! thread unplugs `vuc0` over QMP (`device_del`, then DEVICE_DELETED once
//! the guest let it go), plugs the same device into the same root port
//! again (`device_add`; the server keeps serving and keeps its memory) and
//! answers the guest on its ttyS2: `go`, or what failed.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::host_thread::HostThread;
use crate::qmp::{self, Qmp};
use crate::runner::{results_path, HostFacts};
use crate::vucxl;

/// The fact the guest reports to ask for one replug.
pub const REQUEST: &str = "fuzz.replug.req";
/// The plugged device's id and root port.
const ID: &str = "vuc0";
const BUS: &str = "rp0";

static DRIVER: HostThread = HostThread::new("replug.error");

fn qmp_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-fuzz-{}-qmp.sock", std::process::id())
}

/// QEMU's end of the host -> guest line (the guest's ttyS2).
fn go_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-fuzz-{}-go.sock", std::process::id())
}

/// QEMU arguments: the QMP server and the guest's ttyS2.
pub fn qemu_args() -> Vec<String> {
    let mut a = qmp::qemu_args(&qmp_socket());
    a.extend([
        "-chardev".into(),
        format!("socket,id=fuzz-go,path={},server=on,wait=off", go_socket()),
        "-serial".into(),
        "chardev:fuzz-go".into(),
    ]);
    a
}

/// Starts the host thread (after the server: QEMU is not up yet).
pub fn start(dir: &Path, precommit: bool) {
    for s in [qmp_socket(), go_socket()] {
        let _ = fs::remove_file(s);
    }
    let results = results_path(dir);
    DRIVER.start(move || drive(&results, precommit));
}

/// Stops the host thread: facts `replug.done` (how many) and
/// `replug.error` (what failed, if anything).
pub fn stop() -> HostFacts {
    let f = DRIVER.stop();
    for s in [qmp_socket(), go_socket()] {
        let _ = fs::remove_file(s);
    }
    f
}

fn drive(results: &PathBuf, precommit: bool) -> HostFacts {
    let mut f = HostFacts::new();
    let mut qmp = None;
    let mut done = 0usize;
    let needle = format!(r#""key":"{REQUEST}""#);
    while !DRIVER.stopping() {
        let asked = fs::read_to_string(results).map_or(0, |t| t.matches(&needle).count());
        if asked <= done {
            sleep(Duration::from_millis(100));
            continue;
        }
        let word = match replug(&mut qmp, precommit) {
            Ok(()) => "go".to_string(),
            Err(e) => {
                f.push(("replug.error".into(), e.to_string()));
                format!("host-failed: {e}")
            }
        };
        done += 1;
        // QEMU's chardev server takes one connection at a time; this one
        // ends when the stream drops.
        if let Err(e) = UnixStream::connect(go_socket()).and_then(|mut s| writeln!(s, "{word}")) {
            f.push(("replug.error".into(), format!("{}: {e}", go_socket())));
            break;
        }
    }
    f.push(("replug.done".into(), done.to_string()));
    f
}

/// One `device_del` and `device_add` of vuc0.
fn replug(qmp: &mut Option<Qmp>, precommit: bool) -> Result<()> {
    let q = match qmp {
        Some(q) => q,
        None => qmp.insert(Qmp::connect(&qmp_socket())?),
    };
    q.execute("device_del", json!({ "id": ID }))?
        .map_err(|e| Error::msg(format!("device_del: {e}")))?;
    q.wait_event("DEVICE_DELETED", "device", ID)?;
    let args: serde_json::Value =
        serde_json::from_str(&vucxl::device_json(0, ID, precommit).replace("{bus}", BUS))
            .map_err(|e| Error::msg(format!("device JSON: {e}")))?;
    q.execute("device_add", args)?
        .map_err(|e| Error::msg(format!("device_add: {e}")))?;
    Ok(())
}
