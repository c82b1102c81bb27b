//! The start-up benchmark (`guest-harness bench-startup`, `cargo xtask
//! bench-startup`): what `-device vfio-user-cxl` adds to QEMU's start
//! against QEMU's plain `-device vfio-user-pci` on the same server, at
//! 256 MiB and at 128 GiB, and whether either grows with the device.
//!
//! One sample: start the software Type-2 server on a new sparse file,
//! start QEMU with `-S` and QMP, and time until `query-status` answers.
//! By then QEMU has realized every device and reset the machine, which
//! for vfio-user-cxl includes mapping the device memory into QEMU (a RAM
//! device region) and firmware's pre-commit of the HDM decoders:
//! everything before the guest's first instruction. A vfio-user-cxl
//! sample counts only if `info mtree` then shows that RAM device region.
//! (The window's alias of it is enabled later, once the guest's firmware
//! turns Memory Space on and the decode path routes the range.) QEMU's peak RSS
//! (`VmHWM`) is read then too.
//! The four cases run in turn within each round, so machine noise hits
//! them alike; medians over the rounds are compared as ratios. A
//! documented command, not a VM test: it asserts nothing about times.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::qemu::{Endpoint, Topology};
use crate::qmp::{self, Qmp};

/// The sizes compared: the end-to-end tests' 256 MiB and a real device's.
pub const SIZES_MIB: [u64; 2] = [256, 128 << 10];
/// Rounds by default.
pub const DEFAULT_ROUNDS: usize = 7;
/// The two front ends on the same server.
const DEVICES: [&str; 2] = ["vfio-user-pci", "vfio-user-cxl"];

/// One case's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub device: &'static str,
    pub mib: u64,
    pub ready: Vec<Duration>,
    pub rss_kib: Vec<u64>,
}

fn median<T: Copy + Ord>(v: &[T]) -> T {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[s.len() / 2]
}

impl Samples {
    pub fn ready_median(&self) -> Duration {
        median(&self.ready)
    }
    pub fn rss_median(&self) -> u64 {
        median(&self.rss_kib)
    }
}

/// The CXL topology both devices sit in (the window is sized for
/// vfio-user-cxl's 1 GiB-aligned pre-commit); only the device differs.
fn topology(device: &str, mib: u64, socket: &Path) -> Topology {
    let mut t = crate::hostdriver::accel_topology(mib, mib + (4 << 10));
    let extra = if device == "vfio-user-cxl" {
        r#","precommit":true"#
    } else {
        ""
    };
    t.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: format!(
            r#"{{"driver":"{device}","bus":"{{bus}}","id":"vu0"{extra},"socket":{{"type":"unix","path":"{}"}}}}"#,
            socket.display()
        ),
    });
    t
}

fn wait_for(path: &Path, what: &str) -> Result<()> {
    let t = Instant::now();
    while !path.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(Error::msg(format!(
                "{what}: {} did not appear",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn start_server(bin: &Path, dir: &Path, mib: u64) -> Result<Child> {
    let mem = dir.join("mem.raw");
    fs::File::create(&mem)
        .and_then(|f| f.set_len(mib << 20))
        .map_err(|e| Error::io(format!("cannot create {}", mem.display()), e))?;
    let sock = dir.join("vu.sock");
    let child = Command::new(bin)
        .args(["--socket"])
        .arg(&sock)
        .arg("--memory")
        .arg(&mem)
        .args(["--size", &format!("{mib}M")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", bin.display()), e))?;
    wait_for(&sock, "the vfio-user-cxl server")?;
    Ok(child)
}

/// `VmHWM` of `/proc/<pid>/status`, KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::io("cannot read QEMU's /proc status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::msg("no VmHWM in QEMU's /proc status"))
}

/// One sample of `device` at `mib`: (time to QMP's answer, peak RSS).
fn sample(env: &Env, server: &Path, device: &str, mib: u64) -> Result<(Duration, u64)> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("cannot create a scratch directory", e))?;
    let mut srv = start_server(server, dir.path(), mib)?;
    let qmp_path = dir.path().join("qmp.sock").display().to_string();
    let mut devices = Vec::new();
    let mut machine_opts = Vec::new();
    topology(device, mib, &dir.path().join("vu.sock")).args(
        dir.path(),
        &mut devices,
        &mut machine_opts,
    );
    let mut cmd = Command::new(&env.qemu);
    for d in &env.firmware_dirs {
        cmd.arg("-L").arg(d);
    }
    cmd.args(["-M", "q35,cxl=on", "-M"])
        .arg(machine_opts.join(","))
        .args([
            "-accel",
            "tcg",
            "-m",
            "1G",
            "-nodefaults",
            "-display",
            "none",
            "-S",
        ])
        // vfio-user hands guest RAM to the server as file descriptors.
        .args(["-object", "memory-backend-memfd,id=ram,size=1G,share=on"])
        .args(["-machine", "memory-backend=ram"])
        .args(devices)
        .args(qmp::qemu_args(&qmp_path))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut qemu = cmd
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", env.qemu.display()), e))?;
    let result = (|| {
        let mut q = loop {
            match Qmp::connect(&qmp_path) {
                Ok(q) => break q,
                Err(_) if t0.elapsed() < Duration::from_secs(60) => {
                    if let Ok(Some(st)) = qemu.try_wait() {
                        return Err(Error::msg(format!(
                            "{device} {mib} MiB: QEMU exited ({st})"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        };
        let status = q
            .execute("query-status", json!({}))?
            .map_err(|e| Error::msg(format!("query-status: {e}")))?;
        let ready = t0.elapsed();
        if status["status"] != "prelaunch" {
            return Err(Error::msg(format!(
                "{device} {mib} MiB: QEMU is {status}, not prelaunch"
            )));
        }
        let rss = peak_rss_kib(qemu.id())?;
        if device == "vfio-user-cxl" {
            // The sample counts only if the device memory is mapped into
            // QEMU (a RAM device region: the RAMBlock whose bookkeeping
            // grows with the size). The window's alias of it appears only
            // once the guest's firmware enables Memory Space.
            let mtree = q.hmp("info mtree")?;
            let text = mtree.as_str();
            let mapped = text
                .lines()
                .any(|l| l.contains("(prio 0, ramd)") && l.contains("cxl-mem mmaps[0]"));
            if !mapped {
                let cxl: Vec<&str> = text.lines().filter(|l| l.contains("cxl")).collect();
                return Err(Error::msg(format!(
                    "{device} {mib} MiB: the device memory is not mapped into QEMU: {cxl:?}"
                )));
            }
        }
        let _ = q.execute("quit", json!({}));
        Ok((ready, rss))
    })();
    let t = Instant::now();
    while matches!(qemu.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = qemu.kill();
    let out = qemu.wait_with_output().ok();
    let t = Instant::now();
    while matches!(srv.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = srv.kill();
    let _ = srv.wait();
    result.map_err(|e| {
        let stderr = out
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_default();
        Error::msg(format!("{e}; QEMU's stderr: {stderr}"))
    })
}

/// `rounds` rounds of the four cases; returns them in case order.
pub fn run(env: &Env, rounds: usize) -> Result<Vec<Samples>> {
    let server = crate::vucxl::build_server()?;
    let mut all: Vec<Samples> = SIZES_MIB
        .iter()
        .flat_map(|&mib| {
            DEVICES.iter().map(move |&device| Samples {
                device,
                mib,
                ready: Vec::new(),
                rss_kib: Vec::new(),
            })
        })
        .collect();
    for round in 0..rounds.max(1) {
        for s in all.iter_mut() {
            let (ready, rss) = sample(env, &server, s.device, s.mib)?;
            s.ready.push(ready);
            s.rss_kib.push(rss);
        }
        println!("bench-startup: round {} of {rounds} done", round + 1);
    }
    Ok(all)
}

/// The report: medians, then the ratios the goals are stated on.
pub fn describe(all: &[Samples]) -> Vec<String> {
    let find = |device: &str, mib: u64| all.iter().find(|s| s.device == device && s.mib == mib);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut out: Vec<String> = all
        .iter()
        .map(|s| {
            format!(
                "bench-startup {} {} MiB: start to first instruction (QMP ready, -S) median {:.1} ms of {} ({:.1}..{:.1}); peak RSS median {} MiB",
                s.device,
                s.mib,
                ms(s.ready_median()),
                s.ready.len(),
                ms(*s.ready.iter().min().expect("a sample")),
                ms(*s.ready.iter().max().expect("a sample")),
                s.rss_median() >> 10
            )
        })
        .collect();
    for mib in SIZES_MIB {
        if let (Some(p), Some(c)) = (find("vfio-user-pci", mib), find("vfio-user-cxl", mib)) {
            out.push(format!(
                "bench-startup ratio vfio-user-cxl/vfio-user-pci at {mib} MiB: {:.3} (goal <= 1.05); RSS {:.3}",
                ms(c.ready_median()) / ms(p.ready_median()),
                c.rss_median() as f64 / p.rss_median().max(1) as f64
            ));
        }
    }
    for device in DEVICES {
        if let (Some(a), Some(b)) = (find(device, SIZES_MIB[0]), find(device, SIZES_MIB[1])) {
            out.push(format!(
                "bench-startup ratio {}/{} MiB, {device}: {:.3}; RSS {:.3}",
                SIZES_MIB[1],
                SIZES_MIB[0],
                ms(b.ready_median()) / ms(a.ready_median()),
                b.rss_median() as f64 / a.rss_median().max(1) as f64
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let s = |device, mib, ms: &[u64], rss| Samples {
            device,
            mib,
            ready: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            rss_kib: vec![rss; ms.len()],
        };
        let all = vec![
            s("vfio-user-pci", 256, &[100, 300, 200], 100 << 10),
            s("vfio-user-cxl", 256, &[210, 205, 900], 110 << 10),
            s("vfio-user-pci", 128 << 10, &[200, 200, 200], 100 << 10),
            s("vfio-user-cxl", 128 << 10, &[220, 220, 220], 120 << 10),
        ];
        assert_eq!(all[0].ready_median(), Duration::from_millis(200));
        let lines = describe(&all);
        assert!(
            lines[0].contains("median 200.0 ms of 3 (100.0..300.0)"),
            "{}",
            lines[0]
        );
        assert!(lines
            .iter()
            .any(|l| l.contains("at 256 MiB: 1.050 (goal <= 1.05); RSS 1.100")));
        assert!(lines
            .iter()
            .any(|l| l.contains("131072/256 MiB, vfio-user-cxl: 1.048; RSS 1.091")));
    }

    #[test]
    fn both_devices_share_the_topology_but_the_device() {
        let a = topology("vfio-user-pci", 256, Path::new("/s"));
        let b = topology("vfio-user-cxl", 256, Path::new("/s"));
        assert_eq!(a.windows, b.windows);
        assert_ne!(a, b);
    }
}
