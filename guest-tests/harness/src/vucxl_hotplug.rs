//! The VM test `vfio-user-cxl-hotplug`: `device_add` of `vfio-user-cxl`
//! over QMP while the guest runs. Every validation failure (no server,
//! a host decoder that is not committed, no CXL_MEM region, a decoder
//! block outside its BAR, a second pre-committed device on the same host
//! bridge) must fail its `device_add` with an error naming the device and
//! leave QEMU running; a well-formed device hot-plugged into an empty CXL
//! root port must end up as a working CXL Type-2 device in the guest
//! (pciehp adds it, vfio-cxl-pci binds it, the CXL core assembles the
//! region QEMU pre-committed at hot-plug, and uapi-check passes), then
//! survive `device_del` and a second `device_add` with its data. Malformed
//! devices given at QEMU's startup make it exit 1 with the same errors.
//!
//! Sequencing without timing: the guest reports `hotplug.ready` and blocks
//! reading its third serial port; a host thread sees the fact in
//! results.log, runs the QMP commands, and writes `go` to that port.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::json;
use vfio_cxl_uapi_check::pattern;

use crate::env::RunSpec;
use crate::error::Result;
use crate::host_thread::HostThread;
use crate::hostdriver::dmesg_sh;
use crate::hostdriver::{self, dmesg, ProbeLine, ACCEL_MIB, GUEST_SEED, OUTSIDE_SEED};
use crate::qemu::{HostBridge, RootPort, Topology, Window};
use crate::qmp::{self, Qmp};
use crate::runner::{results_path, HostFacts, RunOutcome};
use crate::sysfs::{self, CxlSysfs};
use crate::vucxl::{self, ServerSetup};
use crate::vucxl_multi::{uapi_run_problems, LIB};

pub const NAME: &str = "vfio-user-cxl-hotplug";

/// One `device_add`: the qdev id, the root port, the server's extra
/// flags (None: nobody listens on the socket), and what the error reply
/// must contain (None: the device_add must succeed).
struct Case {
    id: &'static str,
    bus: &'static str,
    server: Option<&'static [&'static str]>,
    expect_error: Option<&'static [&'static str]>,
}

/// In order; server `i` is the `i`th case with a server. The failures go
/// to rp0 first, so the success there also shows they left it free.
const CASES: [Case; 6] = [
    Case {
        id: "vuc-nosock",
        bus: "rp0",
        server: None,
        expect_error: Some(&["vfio-user-cxl vuc-nosock", "Failed to connect"]),
    },
    Case {
        id: "vuc-uncommitted",
        bus: "rp0",
        server: Some(&["--broken", "not-committed"]),
        expect_error: Some(&["vfio-user-cxl vuc-uncommitted", "not firmware-committed"]),
    },
    Case {
        id: "vuc-nomem",
        bus: "rp0",
        server: Some(&["--broken", "no-cxl-mem"]),
        expect_error: Some(&["vfio-user-cxl vuc-nomem", "no CXL memory region"]),
    },
    Case {
        id: "vuc-badgeo",
        bus: "rp0",
        server: Some(&["--broken", "bad-geometry"]),
        expect_error: Some(&["vfio-user-cxl vuc-badgeo", "bad CXL decoder geometry"]),
    },
    // Served after a disconnect too: it is unplugged and plugged again.
    // One tenant (this VM) gets its own device back, with its data: the
    // server would otherwise clear the memory for the new connection
    // (the clearing between tenants is tested in crates/vfio-user-cxl).
    Case {
        id: "vuc0",
        bus: "rp0",
        server: Some(&["--persist", "--keep-memory"]),
        expect_error: None,
    },
    Case {
        id: "vuc-samehb",
        bus: "rp1",
        server: Some(&[]),
        expect_error: Some(&[
            "vfio-user-cxl vuc-samehb",
            "host bridge cxl.1 is already pre-committed for vuc0",
        ]),
    },
];

/// Malformed devices given at QEMU's startup instead: QEMU must exit with
/// status 1 and an error naming the device. `--broken` kind, what the
/// message must contain.
const AT_STARTUP: [(&[&str], &str); 6] = [
    (&["--broken", "not-committed"], "not firmware-committed"),
    (&["--broken", "no-cxl-cap"], "no capability chain"),
    (&["--broken", "no-cxl-mem"], "no CXL memory region"),
    (
        &["--broken", "mem-unaligned"],
        "is not a mappable multiple of 256 MiB",
    ),
    (&["--broken", "bad-geometry"], "bad CXL decoder geometry"),
    // Before issue 11 QEMU walked this chain forever at startup.
    (&["--broken", "cap-loop"], "malformed capability chain"),
];

/// The `--broken` kind of a startup case, for fact names and messages.
fn kind(server_args: &[&str]) -> String {
    server_args.join(" ").replace("--broken ", "")
}

/// The server index of startup case `k` (after the hot-plug servers).
fn startup_server(k: usize) -> usize {
    served().count() + k
}

/// The last server: a 512 MiB device, plugged where the 256 MiB one was
/// unplugged (the host bridge decoder still decodes 256 MiB there).
fn bigger_server() -> usize {
    startup_server(AT_STARTUP.len())
}

/// The cases that have a server, with their server index.
fn served() -> impl Iterator<Item = (usize, &'static Case)> {
    CASES.iter().filter(|c| c.server.is_some()).enumerate()
}

fn socket_of(case: &Case) -> String {
    match served().find(|(_, c)| c.id == case.id) {
        Some((i, _)) => vucxl::socket_at(i),
        None => format!("{}-nobody-listens", vucxl::socket_at(0)),
    }
}

fn qmp_socket() -> String {
    format!(
        "/tmp/vfio-cxl-vm-test-vucxl-{}-qmp.sock",
        std::process::id()
    )
}

/// QEMU's end of the host -> guest line (the guest's ttyS2).
fn go_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-vucxl-{}-go.sock", std::process::id())
}

/// The guest says it is ready, then waits for the host's word.
const WAIT_SH: &str = r#"stty -F /dev/ttyS2 -echo 2>/dev/null
vfiocxl_fact hotplug.ready 1
read -r word </dev/ttyS2 || { echo "nothing from the host on ttyS2"; exit 1; }
vfiocxl_fact hotplug.host "$word"
[ "$word" = go ]
"#;

/// A guest's root user unplugs the device itself while it is live: one
/// write of its root port's Slot Control with the power controller and
/// the power indicator both off makes QEMU unplug it within that config
/// write, its BAR still mapped (pciehp's own two writes, power off then
/// indicator off a second later, unmap the BAR at the first). Meanwhile
/// one reader per vCPU reads the device's HDM decoder capability register
/// through /dev/mem (`--mmio-reader`): whichever vCPU writes, the other is
/// in an access to the overlay that it resolved before the unplug and
/// completes after the device's exit (issue 11, unplug lifetime).
const SELF_UNPLUG_SH: &str = r#"read -r bar _ </sys/bus/pci/devices/$dev/resource
off=$(dmesg | sed -n 's/.*component registers in BAR 0 at \(0x[0-9a-f]*\).*/\1/p' | tail -n 1)
[ -n "$off" ] || { echo "no probe line gives the decoder block's offset in BAR 0"; exit 1; }
rp=$(basename "$(readlink -f /sys/bus/pci/devices/$dev/..)")
echo "$dev" >/sys/bus/pci/devices/$dev/driver/unbind
cap=$(pcie_cap $rp) || { echo "$rp has no PCI Express capability"; exit 1; }
sltctl=$((cap + 24))
readers=
for cpu in 0 1; do
	rm -f /tmp/reader$cpu
	$VC/vfio-cxl-uapi-check --mmio-reader $((bar + off)) --cpu $cpu --ready /tmp/reader$cpu >&3 &
	readers="$readers $!"
done
fail() { kill -TERM $readers 2>/dev/null; echo "$1"; exit 1; }
wait_for 100 have /tmp/reader0 && wait_for 100 have /tmp/reader1 || fail "the readers did not start"
# Power Indicator Control (9:8) 11b (off) and Power Controller Control
# (10) 1 (off) in one write.
cfg_wr 2 $rp $sltctl $(($(cfg_rd 2 $rp $sltctl) | 0x700)) || fail "the Slot Control write failed"
sleep 1
kill -TERM $readers
for r in $readers; do wait $r || { echo "reader $r failed"; exit 1; }; done
# QEMU unplugged it: its config space reads all-ones (the guest's pciehp
# was not told and keeps a stale device).
gone() { [ "$(cfg_rd 2 $dev 0)" = 65535 ]; }
wait_for 100 gone || { echo "$dev still answers after its slot was powered off"; exit 1; }
vfiocxl_fact selfunplug.done 1
"#;

/// QEMU's trace of an overlay access that came after the device's exit
/// (hw/vfio/trace-events).
const UNREALIZED_TRACE: &str = "vfio_cxl_hdm_unrealized";

/// What uapi-check writes after vuc0 was unplugged and plugged again
/// (it must find GUEST_SEED, written before).
const REPLUG_SEED: u64 = 0x0e91_0623;

/// The guest hands the device back (the host unplugs it, waits until the
/// guest let it go, plugs it in again), waits for the CXL teardown, finds
/// it at the same address, binds it, and reports the new region.
const REPLUG_SH: &str = r#"vfiocxl_fact replug.ready 1
read -r word </dev/ttyS2 || { echo "nothing from the host on ttyS2"; exit 1; }
vfiocxl_fact replug.host "$word"
[ "$word" = go ] || exit 1
present() { [ -e /sys/bus/pci/devices/$dev ]; }
wait_for 100 present || { echo "$dev did not come back"; exit 1; }
wait_for 50 cxl_gone && sleep 0.5
bind || { echo "$dev did not bind after the replug"; exit 1; }
committed() {
	for r in /sys/bus/cxl/devices/region*; do
		read -r c <$r/commit 2>/dev/null && [ "$c" = 1 ] && { region=$r; return 0; }
	done
	return 1
}
wait_for 100 committed || { echo "no committed region after the replug"; ls /sys/bus/cxl/devices; exit 1; }
set -- /sys/bus/cxl/devices/region*
vfiocxl_fact replug.regions "$#"
read -r v <$region/resource; vfiocxl_fact replug.resource "$v"
"#;

/// Finds the hot-plugged device (pciehp adds it asynchronously), counts
/// 1b36:0015 functions (the refused ones must not be there), binds it and
/// waits for the region the CXL core assembles.
const BIND_SH: &str = r#"count() {
	find_accels; n=$naccels
	[ $n -gt 0 ]
}
wait_for 100 count || { echo "the hot-plugged device did not appear on PCI"; exit 1; }
vfiocxl_fact pci.devices "$n"
echo $dev >/tmp/bdf
vfiocxl_fact accel.bdf "$dev"
bind || { echo "$dev did not bind to vfio-cxl-pci"; exit 1; }
committed() { read -r c </sys/bus/cxl/devices/region0/commit 2>/dev/null && [ "$c" = 1 ]; }
wait_for 100 committed || { echo "no committed region0"; ls /sys/bus/cxl/devices; exit 1; }
"#;

fn topology() -> Topology {
    let port = |i: u32| RootPort {
        id: format!("rp{i}"),
        port: i,
        chassis: 0,
        slot: 2 + i,
        endpoint: None,
    };
    Topology {
        host_bridges: vec![HostBridge {
            id: "cxl.1".into(),
            bus_nr: 12,
            hdm_for_passthrough: true,
            root_ports: vec![port(0), port(1)],
        }],
        windows: vec![Window {
            targets: vec!["cxl.1".into()],
            size_mib: 4096,
            granularity: None,
        }],
        devices: Vec::new(),
    }
}

pub fn spec() -> RunSpec {
    let mut payload = hostdriver::base_payload(NAME).cmdline_arg(hostdriver::KEEP_MEMORY_ARG);
    payload.steps.retain(|s| s.name == "load-host-driver");
    let payload = payload
        .step("wait-for-host", WAIT_SH)
        .step("bind-hotplugged", &format!("{LIB}\n{BIND_SH}"))
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "uapi-check",
            &format!(
                "{LIB}\n$VC/vfio-cxl-uapi-check \"$dev\" --expect-seed {OUTSIDE_SEED} --write-seed {GUEST_SEED} --reopen 1 >&3\n"
            ),
        )
        .step("unplug-replug", &format!("{LIB}\n{REPLUG_SH}"))
        .step(
            "uapi-check-replug",
            &format!(
                "{LIB}\n$VC/vfio-cxl-uapi-check \"$dev\" --expect-seed {GUEST_SEED} --write-seed {REPLUG_SEED} --reopen 1 >&3\n"
            ),
        )
        .step("self-unplug", &format!("{LIB}\n{SELF_UNPLUG_SH}"))
        .step("report-dmesg", &dmesg_sh());
    let mut spec = vucxl::server_run_spec(topology(), payload, start, stop, 180);
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.extra_args.extend([
        "-trace".into(),
        UNREALIZED_TRACE.into(),
        "-chardev".into(),
        format!("socket,id=vucxl-go,path={},server=on,wait=off", go_socket()),
        "-serial".into(),
        "chardev:vucxl-go".into(),
    ]);
    spec
}

static DRIVER: HostThread = HostThread::new("driver.error");

fn start(dir: &Path) -> Result<()> {
    let mut setups: Vec<ServerSetup> = served()
        .map(|(_, c)| ServerSetup {
            args: c.server.unwrap_or_default(),
            ..ServerSetup::plain(OUTSIDE_SEED)
        })
        .collect();
    for (args, _) in AT_STARTUP {
        setups.push(ServerSetup {
            args,
            ..ServerSetup::plain(OUTSIDE_SEED)
        });
    }
    setups.push(ServerSetup {
        mem_mib: 2 * ACCEL_MIB,
        ..ServerSetup::plain(OUTSIDE_SEED)
    });
    vucxl::start_servers(dir, &setups)?;
    for s in [qmp_socket(), go_socket()] {
        let _ = fs::remove_file(s);
    }
    let dir = dir.to_path_buf();
    DRIVER.start(move || {
        let mut f = startup_refusals(&dir);
        f.extend(drive(&results_path(&dir)));
        f
    });
    Ok(())
}

/// Starts a second QEMU (the run's binary and firmware, no guest) with
/// each malformed device of [`AT_STARTUP`] and records how it ended:
/// facts `startup.<kind>.exit` and `startup.<kind>.stderr`.
fn startup_refusals(dir: &Path) -> HostFacts {
    let mut f = HostFacts::new();
    let args = fs::read_to_string(dir.join("qemu-args.txt")).unwrap_or_default();
    let mut lines = args.lines();
    let qemu = lines.next().unwrap_or("qemu-system-x86_64").to_string();
    let words: Vec<&str> = lines.collect();
    let firmware: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "-L")
        .flat_map(|w| [w[0], w[1]])
        .collect();
    for (k, (args, _)) in AT_STARTUP.iter().enumerate() {
        let kind = kind(args);
        let device =
            vucxl::device_json(startup_server(k), "vuc-broken", true).replace("{bus}", "rp0");
        let mut cmd = Command::new(&qemu);
        cmd.args(&firmware)
            .args([
                "-M",
                "q35,cxl=on",
                "-M",
                "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G",
            ])
            .args([
                "-accel",
                "tcg",
                "-m",
                "512M",
                "-display",
                "none",
                "-nodefaults",
            ])
            .args(["-object", "memory-backend-memfd,id=ram,size=512M,share=on"])
            .args(["-machine", "memory-backend=ram"])
            .args([
                "-device",
                "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on",
            ])
            .args(["-device", "cxl-rp,port=0,bus=cxl.1,id=rp0,chassis=0,slot=2"])
            .args(["-device", &device])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (exit, stderr) = match run_bounded(cmd) {
            Ok(r) => r,
            Err(e) => ("not run".into(), e.to_string()),
        };
        f.push((format!("startup.{kind}.exit"), exit));
        f.push((format!("startup.{kind}.stderr"), stderr));
    }
    f
}

/// Runs `cmd`; a QEMU that accepted the device would keep running, so it
/// is killed after 30 s (reported as `killed`, a failure).
fn run_bounded(mut cmd: Command) -> std::io::Result<(String, String)> {
    let mut child = cmd.spawn()?;
    let start = Instant::now();
    let exit = loop {
        if let Some(st) = child.try_wait()? {
            break st.to_string();
        }
        if start.elapsed() > Duration::from_secs(30) || DRIVER.stopping() {
            let _ = child.kill();
            let _ = child.wait();
            break "killed (QEMU accepted the device)".to_string();
        }
        sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    Ok((exit, stderr.trim().to_string()))
}

/// The host side of the run: waits for the guest's `hotplug.ready`, runs
/// the cases over QMP and tells the guest to go on; then waits for
/// `replug.ready`, unplugs vuc0, plugs it in again, and tells the guest.
/// Facts `qmp.<id>` (`ok` or `error: <desc>`), `qmp.status`,
/// `qmp.unplug`, `qmp.replug`, `driver.error`.
fn drive(results: &Path) -> HostFacts {
    let mut f = HostFacts::new();
    let mut qmp = None;
    for (ready, step) in [
        (
            "hotplug.ready",
            run_cases as fn(&mut Option<Qmp>, &mut HostFacts) -> Result<()>,
        ),
        ("replug.ready", replug),
    ] {
        if let Err(e) = wait_for_fact(results, ready) {
            f.push(("driver.error".into(), e));
            return f;
        }
        let word = match step(&mut qmp, &mut f) {
            Ok(()) => "go",
            Err(e) => {
                f.push(("driver.error".into(), e.to_string()));
                "host-failed"
            }
        };
        // QEMU's chardev server takes one connection at a time; this one
        // ends when the stream drops.
        if let Err(e) = UnixStream::connect(go_socket()).and_then(|mut s| writeln!(s, "{word}")) {
            f.push(("driver.error".into(), format!("{}: {e}", go_socket())));
            return f;
        }
    }
    f
}

/// Polls results.log until the guest reported fact `key`.
fn wait_for_fact(results: &Path, key: &str) -> std::result::Result<(), String> {
    let start = Instant::now();
    let needle = format!(r#""key":"{key}""#);
    loop {
        if fs::read_to_string(results).is_ok_and(|t| t.contains(&needle)) {
            return Ok(());
        }
        if DRIVER.stopping() || start.elapsed() > Duration::from_secs(170) {
            return Err(format!("the guest never said {key}"));
        }
        sleep(Duration::from_millis(100));
    }
}

fn device_add_args(c: &Case) -> serde_json::Value {
    json!({
        "driver": "vfio-user-cxl",
        "bus": c.bus,
        "id": c.id,
        "socket": {"type": "unix", "path": socket_of(c)},
    })
}

fn run_cases(qmp: &mut Option<Qmp>, f: &mut HostFacts) -> Result<()> {
    let q = qmp.insert(Qmp::connect(&qmp_socket())?);
    for c in &CASES {
        let reply = match q.execute("device_add", device_add_args(c))? {
            Ok(_) => "ok".to_string(),
            Err(desc) => format!("error: {desc}"),
        };
        f.push((format!("qmp.{}", c.id), reply));
    }
    let status = match q.execute("query-status", json!({}))? {
        Ok(v) => v
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_string(),
        Err(e) => format!("error: {e}"),
    };
    f.push(("qmp.status".into(), status));
    Ok(())
}

/// `device_del` of the plugged device, wait until the guest let it go
/// (DEVICE_DELETED), `device_add` of the same device again.
fn replug(qmp: &mut Option<Qmp>, f: &mut HostFacts) -> Result<()> {
    let q = qmp
        .as_mut()
        .ok_or_else(|| crate::error::Error::msg("no QMP connection"))?;
    let plugged = CASES
        .iter()
        .find(|c| c.expect_error.is_none())
        .ok_or_else(|| crate::error::Error::msg("no well-formed case"))?;
    let del = q.execute("device_del", json!({"id": plugged.id}))?;
    if let Err(e) = del {
        f.push(("qmp.unplug".into(), format!("error: {e}")));
        return Ok(());
    }
    q.wait_event("DEVICE_DELETED", "device", plugged.id)?;
    f.push(("qmp.unplug".into(), "deleted".into()));
    let bigger = json!({
        "driver": "vfio-user-cxl",
        "bus": plugged.bus,
        "id": "vuc-bigger",
        "socket": {"type": "unix", "path": vucxl::socket_at(bigger_server())},
    });
    let reply = match q.execute("device_add", bigger)? {
        Ok(_) => "ok".to_string(),
        Err(desc) => format!("error: {desc}"),
    };
    f.push(("qmp.vuc-bigger".into(), reply));
    let reply = match q.execute("device_add", device_add_args(plugged))? {
        Ok(_) => "ok".to_string(),
        Err(desc) => format!("error: {desc}"),
    };
    f.push(("qmp.replug".into(), reply));
    Ok(())
}

fn stop(dir: &Path) -> HostFacts {
    let mut f = DRIVER.stop();
    f.extend(vucxl::stop_servers(dir));
    if let Some((i, _)) = served().find(|(_, c)| c.expect_error.is_none()) {
        f.extend(vucxl::pattern_facts(dir, i, REPLUG_SEED, ""));
    }
    for s in [qmp_socket(), go_socket()] {
        let _ = fs::remove_file(s);
    }
    f
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    for (_, e) in outcome
        .host_facts
        .iter()
        .filter(|(k, _)| k == "driver.error")
    {
        p.push(format!("host side: {e}"));
    }
    for c in &CASES {
        let got = outcome
            .host_fact(&format!("qmp.{}", c.id))
            .unwrap_or("(not run)");
        let ok = match c.expect_error {
            None => got == "ok",
            Some(want) => got.starts_with("error: ") && want.iter().all(|w| got.contains(w)),
        };
        if !ok {
            p.push(format!(
                "device_add {} (server {:?}): {got:?}, expected {}",
                c.id,
                c.server,
                c.expect_error
                    .map_or("success".to_string(), |w| format!("an error with {w:?}"))
            ));
        }
    }
    for (args, want) in AT_STARTUP {
        let kind = kind(args);
        let exit = outcome.host_fact(&format!("startup.{kind}.exit"));
        let stderr = outcome
            .host_fact(&format!("startup.{kind}.stderr"))
            .unwrap_or("");
        if exit != Some("exit status: 1")
            || !stderr.contains("vfio-user-cxl vuc-broken (vfio-user:")
            || !stderr.contains(want)
        {
            p.push(format!(
                "QEMU with a {kind} device at startup: {exit:?}, {stderr:?}; expected exit status 1 and an error naming vuc-broken with {want:?}"
            ));
        }
        // The refusal is the one error line expected; anything else on
        // its stderr (an assertion, a second error) is a problem.
        let (refusals, others): (Vec<String>, Vec<String>) = crate::runner::stderr_problems(stderr)
            .into_iter()
            .partition(|l| l.contains("vfio-user-cxl vuc-broken (vfio-user:"));
        if refusals.len() > 1 {
            p.push(format!(
                "QEMU with a {kind} device at startup refused it {} times: {refusals:?}",
                refusals.len()
            ));
        }
        p.extend(
            others
                .into_iter()
                .map(|l| format!("QEMU with a {kind} device at startup: {l}")),
        );
    }
    if outcome.host_fact("qmp.status") != Some("running") {
        p.push(format!(
            "QEMU status after the device_adds: {:?}, expected running",
            outcome.host_fact("qmp.status")
        ));
    }
    // Every server, refused or not, saw its client disconnect cleanly;
    // vuc0's serves on (--persist) until it is ended.
    let persist = served()
        .find(|(_, c)| c.expect_error.is_none())
        .map(|(i, _)| i);
    for i in 0..=bigger_server() {
        let exit = outcome.host_fact(&format!("server{i}.exit"));
        let ok = match persist == Some(i) {
            true => exit == Some("killed (still running after QEMU)"),
            false => exit == Some("exit status: 0"),
        };
        if !ok {
            p.push(format!(
                "server {i} ended with {:?}, expected exit status 0 (its client disconnected)",
                outcome.host_fact(&format!("server{i}.exit"))
            ));
        }
    }
    let r = &outcome.report;
    if r.fact("pci.devices") != Some("1") {
        p.push(format!(
            "the guest sees {:?} 1b36:0015 functions, expected only the one hot-plugged device",
            r.fact("pci.devices")
        ));
    }
    p.extend(region_problems(outcome));
    p.extend(uapi_run_problems(outcome, 0, OUTSIDE_SEED, GUEST_SEED));
    // Unplugged and plugged again: the same memory, mapped at the same
    // place, the CXL core assembles a region there again.
    for (k, want) in [("qmp.unplug", "deleted"), ("qmp.replug", "ok")] {
        if outcome.host_fact(k) != Some(want) {
            p.push(format!(
                "{k}: {:?}, expected {want:?}",
                outcome.host_fact(k)
            ));
        }
    }
    // In between, a 512 MiB device in the same slot: the host bridge
    // decoder firmware left committed decodes 256 MiB there.
    let bigger = outcome.host_fact("qmp.vuc-bigger").unwrap_or("(not run)");
    let refusal =
        "already decodes 0x4c0000000+0x10000000 for root port 0, not 0x4c0000000+0x20000000";
    if !bigger.starts_with("error: vfio-user-cxl vuc-bigger") || !bigger.contains(refusal) {
        p.push(format!(
            "device_add of a 512 MiB device where a 256 MiB one was: {bigger:?}, expected the host bridge decoder's refusal"
        ));
    }
    let first = CxlSysfs::from_report(r)
        .attr("region0", "resource")
        .map(str::to_string);
    if r.fact("replug.regions") != Some("1") || r.fact("replug.resource") != first.as_deref() {
        p.push(format!(
            "after the replug: {:?} region(s) at {:?}, expected one at {first:?}",
            r.fact("replug.regions"),
            r.fact("replug.resource")
        ));
    }
    p.extend(uapi_run_problems(outcome, 1, GUEST_SEED, REPLUG_SEED));
    let total = pattern::sample_offsets(ACCEL_MIB << 20).len().to_string();
    if outcome.host_fact("pattern.found") != Some(total.as_str()) {
        p.push(format!(
            "the guest's last pattern in vuc0's server file: {:?} of {total} words",
            outcome.host_fact("pattern.found")
        ));
    }
    for l in dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("error-level kernel message: {}", l.text));
    }
    p.extend(vucxl::refused_unmaps(outcome));
    p.extend(unplug_race_problems(outcome));
    p
}

/// The guest unplugged the device itself, both readers ran through it,
/// and QEMU traced at least one overlay access that a vCPU completed after
/// the device's exit: the path the check for an exited device guards was
/// taken (and QEMU lived, which the run's exit status and stderr show).
fn unplug_race_problems(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    if outcome.report.fact("selfunplug.done") != Some("1") {
        p.push("the guest's own unplug of the device did not complete".into());
    }
    // Each reader saw the decoder capability register (neither 0 nor
    // all-ones) before the unplug.
    for cpu in 0..2 {
        let key = format!("mmio_reader.cpu{cpu}");
        let v = outcome.report.fact(&key).unwrap_or("");
        let saw_register = v.split_once(" values ").is_some_and(|(_, vals)| {
            vals.split_whitespace()
                .filter_map(|pair| pair.split_once(':'))
                .any(|(val, _)| val != "0x0" && val != "0xffffffff")
        });
        if !saw_register {
            p.push(format!(
                "{key}: {v:?}, expected reads of the decoder capability register"
            ));
        }
    }
    let after_exit = outcome
        .stderr
        .lines()
        .filter(|l| l.contains(UNREALIZED_TRACE))
        .count();
    println!(
        "  {NAME}: {after_exit} overlay access(es) after the device's exit ({UNREALIZED_TRACE})"
    );
    // Hit in 29 of 31 runs (2026-12-06): a miss is chance, and runs the
    // test again.
    if after_exit == 0 {
        p.push(format!(
            "{}no overlay access reached the device after its exit ({UNREALIZED_TRACE} not traced): the unplug race was not hit",
            crate::vmtests::INCONCLUSIVE
        ));
    }
    p
}

/// One region, committed, 256 MiB, inside CXL Window 0, at the range
/// vfio-cxl-pci probed for the hot-plugged device (the same both times).
fn region_problems(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    let s = CxlSysfs::from_report(&outcome.report);
    let bdf = outcome.report.fact("accel.bdf").unwrap_or("?");
    let probes: Vec<ProbeLine> = dmesg(outcome)
        .iter()
        .filter_map(|l| ProbeLine::parse(&l.text))
        .filter(|l| l.bdf == bdf)
        .collect();
    // One per plug: the first, and the one after the replug.
    let [probe, again] = &probes[..] else {
        p.push(format!("{bdf}: probe messages {probes:?}, expected two"));
        return p;
    };
    if again != probe {
        p.push(format!(
            "the replugged device probed {again:?}, not {probe:?}"
        ));
    }
    match s.iomem_named("CXL Window 0") {
        Some(w) if w.start <= probe.start && probe.end <= w.end => {}
        w => p.push(format!("{probe:?} is not inside CXL Window 0 ({w:?})")),
    }
    let regions = s.named("region");
    let ok = regions.len() == 1
        && s.attr("region0", "commit") == Some("1")
        && s.attr_u64("region0", "resource") == Some(probe.start)
        && s.attr_u64("region0", "size") == Some(ACCEL_MIB << 20);
    if !ok {
        p.push(format!(
            "regions {regions:?}: expected region0 committed at {:#x}, 256 MiB ({:?})",
            probe.start,
            s.devices.get("region0")
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_case_has_its_own_socket() {
        let socks: Vec<String> = CASES.iter().map(socket_of).collect();
        let mut unique = socks.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), CASES.len(), "{socks:?}");
        assert_eq!(served().count(), CASES.len() - 1);
        topology().validate().unwrap();
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for step in spec().payload.steps {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }
}
