//! The `-device vfio-user-cxl` VM test: the software Type-2 server
//! (`crates/vfio-user-cxl`) started on the host, consumed by the project's
//! QEMU device `vfio-user-cxl` (qemu-device/, docs/devices/vfio-cxl.md),
//! and inside the guest the same checks as `host-driver-uapi`: the device
//! bound to `vfio-cxl-pci`, the region the guest's CXL core assembles from
//! QEMU's firmware-style pre-commit, and `vfio-cxl-uapi-check`'s patterns
//! crossing guest VFIO mmap -> QEMU's direct mapping -> the server's
//! memory file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::env::{repo_root, RunSpec};
use crate::error::{Error, Result};
use crate::hostdriver::{
    self, accel_topology, count_pattern, write_pattern, ACCEL_MIB, GUEST_SEED, OUTSIDE_SEED,
};
use crate::qemu::Endpoint;
use crate::runner::HostFacts;

/// Overrides where the `vfio-user-cxl` server binary is taken from.
pub const SERVER_ENV: &str = "VFIO_USER_CXL_SERVER";
/// The server's socket: QEMU's `-device` arguments are fixed strings, so
/// the path cannot be the run directory; one run at a time.
pub const SOCKET: &str = "/tmp/vfio-cxl-vm-test-vucxl.sock";
const MEMORY: &str = "vucxl-mem.raw";
const PID: &str = "vucxl-server.pid";
const LOG: &str = "vucxl-server.log";

/// `$VFIO_USER_CXL_SERVER`, else `target/release/vfio-user-cxl` (built by
/// the test's `before_boot`).
pub fn server_binary() -> PathBuf {
    std::env::var_os(SERVER_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/vfio-user-cxl"))
}

pub fn coherence_spec() -> RunSpec {
    let mut payload = hostdriver::uapi_spec().payload;
    payload.name = "vfio-user-cxl-coherence".into();
    let mut topology = accel_topology(ACCEL_MIB, 4096);
    topology.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: format!(
            r#"{{"driver":"vfio-user-cxl","bus":"{{bus}}","id":"vuc0","socket":{{"type":"unix","path":"{SOCKET}"}}}}"#
        ),
    });
    let mut spec = RunSpec::new(topology, payload);
    spec.machine.iommu = true;
    spec.timeout = Duration::from_secs(120);
    // vfio-user passes guest RAM to the server as fds: share it.
    let ram = spec.machine.memory_mib;
    spec.extra_args = vec![
        "-object".into(),
        format!("memory-backend-memfd,id=vucxl-ram,size={ram}M,share=on"),
        "-machine".into(),
        "memory-backend=vucxl-ram".into(),
        // A VFIO device behind the guest's IOMMU needs caching mode (the
        // guest's map requests reach QEMU); kernel VFIO in the guest too.
        "-global".into(),
        "intel-iommu.caching-mode=on".into(),
        "-trace".into(),
        "vfio_cxl_precommit".into(),
        "-trace".into(),
        "vfio_cxl_map".into(),
    ];
    spec.before_boot = Some(start_server);
    spec.after_exit = Some(stop_server);
    spec
}

/// Fills the memory file with the outside pattern and starts the server
/// on it; returns once its socket exists.
fn start_server(dir: &Path) -> Result<()> {
    if std::env::var_os(SERVER_ENV).is_none() {
        // Incremental (about 1 s when up to date); cargo xtask vm-test
        // builds QEMU, the drivers and uapi-check, not this server.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "--release", "-q", "-p", "vfio-user-cxl"])
            .status()
            .map_err(|e| Error::io("cannot run cargo build -p vfio-user-cxl", e))?;
        if !status.success() {
            return Err(Error::msg(format!(
                "cargo build --release -p vfio-user-cxl failed ({status})"
            )));
        }
    }
    let bin = server_binary();
    if !bin.is_file() {
        return Err(Error::msg(format!(
            "{} is missing: cargo build --release -p vfio-user-cxl (or set {SERVER_ENV})",
            bin.display()
        )));
    }
    let mem = dir.join(MEMORY);
    write_pattern(&mem, ACCEL_MIB << 20, OUTSIDE_SEED)?;
    let _ = fs::remove_file(SOCKET);
    let log = fs::File::create(dir.join(LOG))
        .map_err(|e| Error::io(format!("cannot create {LOG}"), e))?;
    let child = Command::new(&bin)
        .args(["--socket", SOCKET, "--memory"])
        .arg(&mem)
        .args(["--size", &format!("{ACCEL_MIB}M")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", bin.display()), e))?;
    fs::write(dir.join(PID), child.id().to_string())
        .map_err(|e| Error::io(format!("cannot write {PID}"), e))?;
    let start = Instant::now();
    while !Path::new(SOCKET).exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(Error::msg(format!("{SOCKET} did not appear in 10 s")));
        }
        sleep(Duration::from_millis(20));
    }
    // The child is reaped by the harness process's exit; the server exits
    // by itself when QEMU disconnects (stop_server ends it otherwise).
    std::mem::forget(child);
    Ok(())
}

/// Ends the server if QEMU never connected, reads the guest's pattern
/// from the memory file and the server's log.
fn stop_server(dir: &Path) -> HostFacts {
    let mut f = HostFacts::new();
    if let Ok(pid) = fs::read_to_string(dir.join(PID)) {
        let pid = pid.trim().to_string();
        // The server exits 0 when its client disconnects; give it a moment.
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let start = Instant::now();
        while proc_dir.exists() && start.elapsed() < Duration::from_secs(5) {
            let zombie = fs::read_to_string(proc_dir.join("stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
            if zombie {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").arg(&pid).status();
    }
    let _ = fs::remove_file(SOCKET);
    match count_pattern(&dir.join(MEMORY), GUEST_SEED) {
        Ok((found, total, first_bad)) => {
            f.push(("pattern.found".into(), found.to_string()));
            f.push(("pattern.total".into(), total.to_string()));
            if let Some(o) = first_bad {
                f.push(("pattern.first_bad".into(), format!("{o:#x}")));
            }
        }
        Err(e) => f.push(("pattern.error".into(), e.to_string())),
    }
    if let Ok(log) = fs::read_to_string(dir.join(LOG)) {
        for l in log.lines() {
            f.push(("server.log".into(), l.to_string()));
        }
    }
    f
}
