//! `vfio-user-pci-smoke`: the software Type-2 server (crates/vfio-user-cxl)
//! behind QEMU's own, CXL-unaware `-device vfio-user-pci`, in a plain
//! PCIe root port: what any vfio-user client sees of it.
//!
//! - QEMU's monitor, over QMP while the guest runs: the device enumerated
//!   as 1b36:0015 class 0x1200 with a 64-bit BAR 0, the BAR's two sparse
//!   mmaps around the trapped decoder page.
//! - The guest, with busybox: the DVSECs in config space, the component
//!   register block through BAR 0, the decoder block hidden (all-ones,
//!   writes dropped), the mmapped part of the BAR read/write, and the
//!   DVSEC doorbell (Initiate CXL Reset) completed in the server's shadow.
//! - The server's log: protocol negotiated, the doorbell synthesized, the
//!   client gone at the end.
//!
//! (Until 2026-12-05 this was `cargo xtask vfio-user-smoke`, with its own
//! cpio writer and QEMU runner.)

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::env::RunSpec;
use crate::error::{Error, Result};
use crate::host_thread::HostThread;
use crate::payload::Payload;
use crate::qemu::Topology;
use crate::qmp::{self, Qmp};
use crate::runner::{HostFacts, RunOutcome};
use crate::vucxl;

pub const NAME: &str = "vfio-user-pci-smoke";
const MEM_MIB: u64 = 256;

fn socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-smoke-{}.sock", std::process::id())
}

fn qmp_socket() -> String {
    format!(
        "/tmp/vfio-cxl-vm-test-smoke-{}-qmp.sock",
        std::process::id()
    )
}

/// The guest's checks: `smoke.*` facts the host compares.
const SMOKE_SH: &str = r#"find_accels || { echo "no 1b36:0015 on PCI"; exit 1; }
d=/sys/bus/pci/devices/$dev
cfg() { hexdump -s $(($1)) -n $2 -e "1/$2 \"%0$(($2 * 2))x\"" $d/config; }
read -r class <$d/class; vfiocxl_fact smoke.class "$class"
vfiocxl_fact smoke.ext100 "$(cfg 0x100 4)"
vfiocxl_fact smoke.dvsec_h1 "$(cfg 0x104 4)"
vfiocxl_fact smoke.dvsec_cap "$(cfg 0x10a 2)"
vfiocxl_fact smoke.ext13c "$(cfg 0x13c 4)"
vfiocxl_fact smoke.regloc "$(cfg 0x148 4)"
vfiocxl_fact smoke.range1_size_low "$(cfg 0x11c 4)"
echo 1 >$d/enable
read -r base _ <$d/resource
bar() { devmem $(printf 0x%x $((base + $1))) 32 $2; }
vfiocxl_fact smoke.cap_array "$(bar 0x1000)"
vfiocxl_fact smoke.hdm_ptr "$(bar 0x1008)"
vfiocxl_fact smoke.hdm_cap "$(bar 0x1100)"
bar 0x1120 0
vfiocxl_fact smoke.dec0_ctrl_after_write "$(bar 0x1120)"
bar 0x2000 0xcafef00d
vfiocxl_fact smoke.mmap_area "$(bar 0x2000)"
printf '\004\000' | dd of=$d/config bs=1 seek=$((0x110)) conv=notrunc 2>/dev/null
vfiocxl_fact smoke.control2 "$(cfg 0x110 2)"
vfiocxl_fact smoke.status2 "$(cfg 0x112 2)"
"#;

/// What the guest must report: (fact, value, what it shows).
const GUEST_FACTS: &[(&str, &str, &str)] = &[
    ("smoke.class", "0x120000", "class code"),
    (
        "smoke.ext100",
        "13c10023",
        "DVSEC ext cap at 0x100, next 0x13c",
    ),
    (
        "smoke.dvsec_h1",
        "03c21e98",
        "CXL Device DVSEC: vendor 0x1e98, rev 2, length 0x3c",
    ),
    (
        "smoke.dvsec_cap",
        "08d7",
        "Cache/IO/Mem capable, HDM_Count 1, WB+Inv, CXL Reset with Mem_Clr",
    ),
    (
        "smoke.ext13c",
        "00010023",
        "Register Locator DVSEC at 0x13c, end of list",
    ),
    (
        "smoke.regloc",
        "00000100",
        "component block in BAR 0 at offset 0",
    ),
    (
        "smoke.range1_size_low",
        "10000003",
        "Range 1: 256 MiB, valid, active",
    ),
    (
        "smoke.cap_array",
        "0x02110001",
        "CXL capability header through BAR 0",
    ),
    (
        "smoke.hdm_ptr",
        "0x10030005",
        "HDM decoder capability at 0x1100",
    ),
    (
        "smoke.hdm_cap",
        "0xFFFFFFFF",
        "decoder block hidden in the BAR",
    ),
    (
        "smoke.dec0_ctrl_after_write",
        "0xFFFFFFFF",
        "decoder write through the BAR dropped",
    ),
    (
        "smoke.mmap_area",
        "0xCAFEF00D",
        "BAR 0 mmap area read/write",
    ),
    ("smoke.control2", "0000", "Initiate CXL Reset self-clears"),
    (
        "smoke.status2",
        "8002",
        "CXL Reset Complete (and PM init complete)",
    ),
];

/// What QEMU's monitor must show: (host fact, text, what it shows).
const MONITOR_TEXT: &[(&str, &str, &str)] = &[
    (
        "monitor.pci",
        "Class 4608: PCI device 1b36:0015",
        "device enumerated as 1b36:0015, class 0x1200",
    ),
    (
        "monitor.pci",
        "BAR0: 64 bit memory at",
        "BAR 0 is a 64-bit memory BAR",
    ),
    (
        "monitor.mtree",
        "BAR 0 mmaps[0]",
        "BAR 0 sparse area 0 mapped",
    ),
    (
        "monitor.mtree",
        "BAR 0 mmaps[1]",
        "BAR 0 sparse area 1 mapped",
    ),
    (
        "monitor.mtree",
        "BAR 0 @0000000000001000",
        "the decoder page is trapped",
    ),
];

/// What the server must log: (text, what it shows).
const SERVER_LOG: &[(&str, &str)] = &[
    ("negotiated 0.0", "server negotiated the protocol"),
    (
        "CxlResetRequested",
        "the doorbell was synthesized, not forwarded",
    ),
    ("client disconnected", "server saw the client leave"),
];

pub fn spec() -> RunSpec {
    let payload = Payload::new(NAME).step("smoke", SMOKE_SH);
    let mut spec = RunSpec::new(Topology::none(), payload);
    spec.extra_args = vec![
        "-object".into(),
        format!(
            "memory-backend-memfd,id=smoke-ram,size={}M,share=on",
            spec.machine.memory_mib
        ),
        "-machine".into(),
        "memory-backend=smoke-ram".into(),
        "-device".into(),
        "pcie-root-port,id=smoke-rp,bus=pcie.0,chassis=9".into(),
        "-device".into(),
        format!(
            r#"{{"driver":"vfio-user-pci","bus":"smoke-rp","id":"smoke0","socket":{{"type":"unix","path":"{}"}}}}"#,
            socket()
        ),
    ];
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.before_boot = Some(start);
    spec.after_exit = Some(stop);
    spec
}

static SERVER: Mutex<Option<Child>> = Mutex::new(None);
static MONITOR: HostThread = HostThread::new("monitor.error");

fn start(dir: &Path) -> Result<()> {
    let bin = vucxl::build_server()?;
    let sock = socket();
    let _ = fs::remove_file(&sock);
    let _ = fs::remove_file(qmp_socket());
    let log = fs::File::create(dir.join("smoke-server.log"))
        .map_err(|e| Error::io("cannot create the server log", e))?;
    let child = Command::new(&bin)
        .args(["--socket", sock.as_str(), "--memory"])
        .arg(dir.join("smoke-mem.raw"))
        .args(["--size", &format!("{MEM_MIB}M"), "--create", "-v"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", bin.display()), e))?;
    *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    let t = Instant::now();
    while !Path::new(&sock).exists() {
        if t.elapsed() > Duration::from_secs(10) {
            // after_exit will not run: end the server here.
            if let Some(mut c) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(Error::msg(format!("{sock} did not appear in 10 s")));
        }
        thread::sleep(Duration::from_millis(20));
    }
    MONITOR.start(watch_monitor);
    Ok(())
}

/// Connects to QMP once QEMU listens, waits until the firmware placed
/// BAR 0 and the guest enabled it (the sparse mmaps appear), and keeps
/// `info pci` and `info mtree -f` as host facts.
fn watch_monitor() -> HostFacts {
    let run = || -> Result<HostFacts> {
        let t = Instant::now();
        let mut q = Qmp::connect_within(&qmp_socket(), Duration::from_secs(30))?;
        loop {
            let pci = q.hmp("info pci")?;
            let mtree = q.hmp("info mtree -f")?;
            if mtree.contains("BAR 0 mmaps[1]") || t.elapsed() > Duration::from_secs(120) {
                return Ok(vec![
                    ("monitor.pci".into(), pci),
                    ("monitor.mtree".into(), mtree),
                ]);
            }
            thread::sleep(Duration::from_millis(200));
        }
    };
    run().unwrap_or_else(|e| vec![("monitor.error".into(), e.to_string())])
}

fn stop(dir: &Path) -> HostFacts {
    let mut v = MONITOR.stop();
    if let Some(mut c) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // It exits by itself, successfully, when QEMU disconnects.
        let t = Instant::now();
        while matches!(c.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(50));
        }
        let status = match c.try_wait() {
            Ok(Some(st)) if st.success() => "ok".to_string(),
            Ok(Some(st)) => st.to_string(),
            _ => {
                let _ = c.kill();
                let _ = c.wait();
                "killed (still running 10 s after QEMU)".into()
            }
        };
        v.push(("server.exit".into(), status));
    }
    let _ = fs::remove_file(socket());
    let _ = fs::remove_file(qmp_socket());
    v.push((
        "server.log".into(),
        fs::read_to_string(dir.join("smoke-server.log")).unwrap_or_default(),
    ));
    v
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    let r = &outcome.report;
    for (key, want, what) in GUEST_FACTS {
        match r.fact(key) {
            Some(v) if v.eq_ignore_ascii_case(want) => {}
            v => p.push(format!("{what}: {key} is {v:?}, expected {want}")),
        }
    }
    if let Some(e) = outcome.host_fact("monitor.error") {
        p.push(format!("QEMU's monitor: {e}"));
    }
    for (key, text, what) in MONITOR_TEXT {
        if !outcome.host_fact(key).unwrap_or("").contains(text) {
            p.push(format!("{what}: {text:?} not in {key}"));
        }
    }
    if outcome.host_fact("server.exit") != Some("ok") {
        p.push(format!(
            "the server's exit: {:?}, expected ok",
            outcome.host_fact("server.exit")
        ));
    }
    let log = outcome.host_fact("server.log").unwrap_or("");
    for (text, what) in SERVER_LOG {
        if !log.contains(text) {
            p.push(format!("{what}: {text:?} not in the server's log"));
        }
    }
    p
}
