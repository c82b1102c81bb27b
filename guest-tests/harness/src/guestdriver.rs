//! The reference guest Type-2 driver VM test (`guest-driver-coherence`):
//! the emulated `cxl-accel` (pre-committed by firmware) bound to
//! `cxl-type2-ref` (guest-tests/guest-driver, `cargo xtask
//! build-guest-driver`), the guest's Linux CXL core assembling the region,
//! and the coherence checks of `vfio-cxl-uapi-check --coherence-dev` over
//! the driver's char device, checked from the outside through the device's
//! memory-backend file (docs/guest-driver.md).

use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vfio_cxl_uapi_check::coherence::{self, Coverage};
use vfio_cxl_uapi_check::pattern::{self, Checksum};

use crate::env::{repo_root, RunSpec};
use crate::error::{Error, Result};
use crate::hostdriver::{self, accel_topology, uapi_check_binary, ACCEL_ID, ACCEL_MIB};
use crate::payload::{Payload, Source};
use crate::qemu::{backing_file, Endpoint};
use crate::runner::RunOutcome;
use crate::sysfs::{self, parse_u64, CxlSysfs};
use crate::vmtests::CXL_MODULES;
use crate::vucxl;

/// Overrides the directory of `cxl-type2-ref.ko`.
pub const GUEST_DRIVER_DIR_ENV: &str = "VFIO_CXL_GUEST_DRIVER_DIR";
/// The module's file and PCI driver name.
pub const MODULE: &str = "cxl-type2-ref";
/// The char device of the first bound device.
pub const CHAR_DEV: &str = "/dev/cxl-type2-ref0";
/// What the host writes in every word before the boot (outside -> guest).
pub const OUTSIDE_SEED: u64 = 0x0c0e_0115;
/// What the guest writes in every word (guest -> outside).
pub const GUEST_SEED: u64 = 0x0c0e_6e57;
/// Round trips between the guest and a host thread on the same memory.
pub const PING_PONG_ROUNDS: u64 = 10_000;
/// Unbind/bind cycles after the coherence checks.
pub const REBIND_CYCLES: u32 = 3;

pub const GUEST_DIR: &str = "/opt/cxl-type2-ref";

/// `$VFIO_CXL_GUEST_DRIVER_DIR`, else `guest-tests/guest-driver/`.
pub fn guest_driver_dir() -> PathBuf {
    crate::hostdriver::env_path(GUEST_DRIVER_DIR_ENV)
        .unwrap_or_else(|| repo_root().join("guest-tests/guest-driver"))
}

const LIB_SH: &str = r#"# Sourced by the guest-driver steps (guest-tests/harness/src/guestdriver.rs).
GD=/opt/cxl-type2-ref
DRV=/sys/bus/pci/drivers/cxl-type2-ref
dev=
[ -r /tmp/bdf ] && read -r dev </tmp/bdf
bound() { have $DRV/$dev && have /dev/cxl-type2-ref0; }
unbound() { ! have /sys/bus/pci/devices/$dev/driver && ! have /dev/cxl-type2-ref0; }
# fail MSG: the message and the kernel's last lines on the console, status 1.
fail() { echo "$1"; dmesg | tail -n 25; ls /dev/cxl* $DRV 2>&1; return 1; }
"#;

/// Waits for the port decoders, finds 1b36:0015, loads the module (its
/// ID table binds the device) and reports the binding and the char device.
const BIND_SH: &str = r#"wait_for 600 port_decoders || { echo "no CXL port decoders"; exit 1; }
find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
echo $dev >/tmp/bdf
vfiocxl_fact accel.bdf "$dev"
insmod $GD/cxl-type2-ref.ko || exit 1
wait_for 100 bound || { fail "$dev did not bind to cxl-type2-ref"; exit 1; }
l=$(readlink /sys/bus/pci/devices/$dev/driver); vfiocxl_fact accel.driver "${l##*/}"
[ -c /dev/cxl-type2-ref0 ] && vfiocxl_fact t2.chardev /dev/cxl-type2-ref0
for r in /sys/bus/cxl/devices/region*; do read -r start <$r/resource; done
start=${start#0x}
read -r s </sys/class/misc/cxl-type2-ref0/size && vfiocxl_fact t2.size "$s"
# The PAT memory type recorded for the region (memremap WB at probe).
mount -t debugfs none /sys/kernel/debug 2>/dev/null
while IFS= read -r l; do
	case "$l" in *write-back*) ;; *) continue ;; esac
	case "$l" in *"$start"*) vfiocxl_fact t2.pat "$l" ;; esac
done </sys/kernel/debug/x86/pat_memtype_list
true
"#;

/// Unbind under a live mapping (the program checks ENODEV and SIGBUS),
/// then bind again.
const UNBIND_MAPPED_SH: &str = r#"$GD/vfio-cxl-uapi-check --coherence-dev /dev/cxl-type2-ref0 --unbind-while-mapped $dev >&3 || exit 1
wait_for 100 unbound || { fail "still bound after the unbind under a mapping"; exit 1; }
sleep 0.5
echo $dev >/sys/bus/pci/drivers_probe || { fail "probe failed"; exit 1; }
wait_for 100 bound || { fail "not bound again"; exit 1; }
sleep 0.3
bound || { fail "bound, then released again (stale CXL memdev detach work?)"; exit 1; }
"#;

const REBIND_SH: &str = r#"cycle=0
while [ $cycle -lt @CYCLES@ ]; do
	echo $dev >$DRV/unbind || { fail "cycle $cycle: unbind failed"; exit 1; }
	wait_for 100 unbound || { fail "cycle $cycle: still bound"; exit 1; }
	# The CXL core detaches the old memdev from a workqueue, and that work
	# releases whatever driver the PCI device has by then: let it run first.
	sleep 0.5
	echo $dev >/sys/bus/pci/drivers_probe || { fail "cycle $cycle: probe failed"; exit 1; }
	wait_for 100 bound || { fail "cycle $cycle: not bound again"; exit 1; }
	sleep 0.3
	bound || { fail "cycle $cycle: bound, then released again (stale CXL memdev detach work?)"; exit 1; }
	cycle=$((cycle + 1))
done
vfiocxl_fact rebind.cycles $cycle
rmmod cxl-type2-ref || exit 1
have /sys/module/cxl_type2_ref && exit 1
unbound || exit 1
vfiocxl_fact rmmod ok
"#;

fn dmesg_sh() -> String {
    crate::payload::report_dmesg_sh(&["cxl", "CXL"])
}

/// `script` after sourcing this payload's lib.sh.
pub(crate) fn with_lib(script: &str) -> String {
    format!(". {GUEST_DIR}/lib.sh\n{script}")
}

pub fn coherence_spec() -> RunSpec {
    let mut spec = RunSpec::new(
        accel_topology(ACCEL_MIB, 4096),
        coherence_payload("guest-driver-coherence"),
    );
    spec.timeout = Duration::from_secs(240);
    spec.before_boot = Some(fill_and_answer);
    spec.after_exit = Some(stop_and_check_file);
    spec
}

/// The memory file of the vfio-user server in the run directory.
const VUC_MEMORY: &str = "t2ref-vucxl-mem.raw";

/// The server's socket (per harness process; runs are sequential).
fn vuc_socket() -> String {
    format!("/tmp/cxl-type2-ref-vucxl-{}.sock", std::process::id())
}

/// The same test with the device behind `-device vfio-user-cxl`: the
/// software Type-2 server (crates/vfio-user-cxl) owns the memory file the
/// host fills, answers pings on and checks.
pub fn vfio_user_spec() -> RunSpec {
    let mut spec = vfio_user_spec_sized("guest-driver-vfio-user-cxl", ACCEL_MIB, 4096);
    spec.before_boot = Some(start_server_and_answer);
    spec
}

/// The vfio-user-cxl coherence run for a device of `mib` MiB in a window
/// of `window_mib`; the caller sets `before_boot` to start the server with
/// that size ([`start_server_and_answer_sized`]).
pub fn vfio_user_spec_sized(name: &str, mib: u64, window_mib: u64) -> RunSpec {
    let mut topology = accel_topology(mib, window_mib);
    topology.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: format!(
            r#"{{"driver":"vfio-user-cxl","bus":"{{bus}}","id":"vuc0","precommit":true,"socket":{{"type":"unix","path":"{}"}}}}"#,
            vuc_socket()
        ),
    });
    let mut spec = RunSpec::new(topology, coherence_payload(name));
    // vfio-user hands guest RAM to the server as fds: share it.
    spec.extra_args = vec![
        "-object".into(),
        format!(
            "memory-backend-memfd,id=t2ref-ram,size={}M,share=on",
            spec.machine.memory_mib
        ),
        "-machine".into(),
        "memory-backend=t2ref-ram".into(),
    ];
    spec.timeout = Duration::from_secs(240);
    spec.after_exit = Some(stop_server_and_check);
    spec
}

static SERVER: Mutex<Option<std::process::Child>> = Mutex::new(None);

fn start_server_and_answer(dir: &Path) -> Result<()> {
    start_server_and_answer_sized(dir, ACCEL_MIB)
}

/// Starts the vfio-user-cxl server on a new sparse file of `mib` MiB,
/// seeds the outside pattern and starts the ping answerer.
pub fn start_server_and_answer_sized(dir: &Path, mib: u64) -> Result<()> {
    let bin = vucxl::build_server()?;
    let mem = dir.join(VUC_MEMORY);
    fs::File::create(&mem)
        .and_then(|f| f.set_len(mib << 20))
        .map_err(|e| Error::io(format!("cannot create {}", mem.display()), e))?;
    let sock = vuc_socket();
    let _ = fs::remove_file(&sock);
    let log = fs::File::create(dir.join("t2ref-vucxl-server.log"))
        .map_err(|e| Error::io("cannot create the server log", e))?;
    let child = std::process::Command::new(&bin)
        .args(["--socket", sock.as_str(), "--memory"])
        .arg(&mem)
        .args(["--size", &format!("{mib}M")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}", bin.display()), e))?;
    *SERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    let t = std::time::Instant::now();
    while !Path::new(&sock).exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(Error::msg(format!("{sock} did not appear in 10 s")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server cleared the memory before its socket appeared: seed it
    // now, before QEMU connects.
    fill(&mem, mib << 20, OUTSIDE_SEED)?;
    start_answerer(&mem, PING_PONG_ROUNDS)
}

fn stop_server_and_check(dir: &Path) -> Vec<(String, String)> {
    let mut v = stop_answerer("host.pongs");
    if let Some(mut c) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // It exits by itself when QEMU disconnects; otherwise end it.
        let t = std::time::Instant::now();
        while matches!(c.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = fs::remove_file(vuc_socket());
    v.extend(file_facts(&dir.join(VUC_MEMORY)));
    v
}

/// The CXL modules, the guest helper library and the driver module.
pub(crate) fn base_payload(name: &str) -> Payload {
    let mut p = Payload::new(name);
    for m in CXL_MODULES {
        p = p.module(m);
    }
    p.file(
        &format!("{GUEST_DIR}/lib.sh"),
        0o644,
        Source::Text {
            text: LIB_SH.into(),
        },
    )
    .file(
        &format!("{GUEST_DIR}/{MODULE}.ko"),
        0o644,
        Source::Path {
            src: guest_driver_dir().join(format!("{MODULE}.ko")),
        },
    )
}

fn coherence_payload(name: &str) -> Payload {
    let p = base_payload(name)
        .file(
            &format!("{GUEST_DIR}/vfio-cxl-uapi-check"),
            0o755,
            Source::Path {
                src: uapi_check_binary(),
            },
        )
        .step("bind", &with_lib(BIND_SH))
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "coherence",
            &with_lib(&format!(
                "$GD/vfio-cxl-uapi-check --coherence-dev {CHAR_DEV} --expect-seed {OUTSIDE_SEED} --write-seed {GUEST_SEED} --ping-pong {PING_PONG_ROUNDS} >&3\n"
            )),
        )
        .step("unbind-while-mapped", &with_lib(UNBIND_MAPPED_SH))
        .step(
            "rebind-rmmod",
            &with_lib(&REBIND_SH.replace("@CYCLES@", &REBIND_CYCLES.to_string())),
        )
        .step("report-dmesg", &dmesg_sh());
    p
}

/// A device without a committed decoder: the driver loads, its probe
/// fails cleanly, nothing is bound or created, the module unloads.
const NO_REGION_SH: &str = r#"wait_for 600 port_decoders || { echo "no CXL port decoders"; exit 1; }
find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
vfiocxl_fact accel.bdf "$dev"
insmod $GD/cxl-type2-ref.ko || exit 1
echo $dev >/sys/bus/pci/drivers_probe
have /sys/bus/pci/devices/$dev/driver && vfiocxl_fact accel.driver bound
have /dev/cxl-type2-ref0 && vfiocxl_fact t2.chardev present
set -- /sys/bus/cxl/devices/region*
have "$1" && vfiocxl_fact regions $#
rmmod cxl-type2-ref || exit 1
have /sys/module/cxl_type2_ref && exit 1
vfiocxl_fact rmmod ok
"#;

pub fn no_region_spec() -> RunSpec {
    let p = base_payload("guest-driver-no-region")
        .step("probe-fails", &with_lib(NO_REGION_SH))
        .step("report-dmesg", &dmesg_sh());
    let mut topo = accel_topology(ACCEL_MIB, 4096);
    topo.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: format!("cxl-accel,bus={{bus}},memdev=nr-mem,id={ACCEL_ID},precommit=off"),
    });
    let mut spec = RunSpec::new(topo, p);
    spec.extra_args = vec![
        "-object".into(),
        format!("memory-backend-ram,id=nr-mem,size={ACCEL_MIB}M"),
    ];
    spec.timeout = Duration::from_secs(120);
    spec
}

pub fn no_region_check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    let r = &outcome.report;
    for (key, what) in [
        ("accel.driver", "the device is bound"),
        ("t2.chardev", "a char device exists"),
        ("regions", "a CXL region exists"),
    ] {
        if let Some(v) = r.fact(key) {
            p.push(format!("{what} ({key} = {v})"));
        }
    }
    if r.fact("rmmod") != Some("ok") {
        p.push(format!("rmmod {MODULE} did not succeed"));
    }
    let log = hostdriver::dmesg(outcome);
    let why: Vec<&str> = log
        .iter()
        .filter(|l| {
            l.text.contains("cxl-type2-ref ") && l.text.contains("no auto-assembled CXL region")
        })
        .map(|l| l.text.as_str())
        .collect();
    if why.len() != 2 {
        p.push(format!(
            "expected 2 'no auto-assembled CXL region' messages (insmod, drivers_probe), got {why:?}"
        ));
    }
    if log.iter().any(|l| parse_probe(&l.text).is_some()) {
        p.push("a probe succeeded".into());
    }
    p
}

/// Compares the digest a reader reported (`reported`, a `0x` hex value)
/// with the digest of pattern `seed` at `offsets`, what the host wrote:
/// the host verifies what the reader read instead of trusting its words.
pub fn digest_problem(
    what: &str,
    reported: Option<&str>,
    seed: u64,
    offsets: impl IntoIterator<Item = u64>,
) -> Option<String> {
    let want = pattern::hex(pattern::pattern_digest(seed, offsets));
    (reported != Some(want.as_str())).then(|| {
        format!("{what}: the reader's digest is {reported:?}, pattern {seed} as written has {want}")
    })
}

/// Writes pattern `seed` into the words the coherence suite covers
/// ([`Coverage`]) of a new file of `size` bytes: every word, or in a
/// device-sized region the samples, leaving the rest a hole.
pub fn fill(path: &Path, size: u64, seed: u64) -> Result<()> {
    let io = |e| Error::io(format!("cannot write {}", path.display()), e);
    let f = fs::File::create(path).map_err(io)?;
    match Coverage::of(size) {
        Coverage::Every { .. } => {
            let mut w = BufWriter::with_capacity(1 << 20, f);
            for o in (0..size).step_by(8) {
                w.write_all(&pattern::word(seed, o).to_le_bytes())
                    .map_err(io)?;
            }
            w.flush().map_err(io)
        }
        Coverage::Sampled(offsets) => {
            f.set_len(size).map_err(io)?;
            for o in offsets {
                f.write_all_at(&pattern::word(seed, o).to_le_bytes(), o)
                    .map_err(io)?;
            }
            Ok(())
        }
    }
}

/// What a read of the whole region finds after the coherence suite (the
/// file on the host, or the region through VFIO on a real host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionScan {
    pub words: u64,
    /// Words (counter, ping and pong excluded) that do not hold `seed`.
    pub bad: u64,
    pub first_bad: Option<u64>,
    pub counter: u64,
    pub ping: u64,
    pub pong: u64,
    pub checksum: u64,
}

impl RegionScan {
    /// The scan as host facts `<prefix>.bad`, `<prefix>.counter`, ...
    pub fn facts(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v = vec![
            (format!("{prefix}.ping"), self.ping.to_string()),
            (format!("{prefix}.pong"), self.pong.to_string()),
            (format!("{prefix}.words"), self.words.to_string()),
            (format!("{prefix}.bad"), self.bad.to_string()),
            (format!("{prefix}.counter"), self.counter.to_string()),
            (
                format!("{prefix}.checksum"),
                format!("{:#018x}", self.checksum),
            ),
        ];
        if let Some(o) = self.first_bad {
            v.push((format!("{prefix}.first_bad"), format!("{o:#x}")));
        }
        v
    }
}

/// Classifies a region's words, fed in order: pattern `seed` everywhere
/// but the counter, ping and pong words (coherence.rs's layout).
#[derive(Debug)]
pub struct RegionScanner {
    seed: u64,
    counter_at: u64,
    ping_at: u64,
    pong_at: u64,
    sum: Checksum,
    out: RegionScan,
}

impl RegionScanner {
    pub fn new(size: u64, seed: u64) -> Self {
        let (ping_at, pong_at) = coherence::ping_pong_offsets(size);
        Self {
            seed,
            counter_at: coherence::counter_offset(size),
            ping_at,
            pong_at,
            sum: Checksum::default(),
            out: RegionScan {
                words: Coverage::of(size).words(),
                bad: 0,
                first_bad: None,
                counter: 0,
                ping: 0,
                pong: 0,
                checksum: 0,
            },
        }
    }

    /// The word at byte offset `o`.
    pub fn word(&mut self, o: u64, w: u64) {
        self.sum.add(w);
        if o == self.counter_at {
            self.out.counter = w;
        } else if o == self.ping_at {
            self.out.ping = w;
        } else if o == self.pong_at {
            self.out.pong = w;
        } else if w != pattern::word(self.seed, o) {
            self.out.bad += 1;
            self.out.first_bad.get_or_insert(o);
        }
    }

    pub fn finish(mut self) -> RegionScan {
        self.out.checksum = self.sum.0;
        self.out
    }
}

/// Problems in a read-back's facts (`<prefix>.*` of [`RegionScan::facts`])
/// after the coherence suite: the writer's pattern in every word, the
/// counter, the ping-pong words and the answering thread's count (under
/// `pongs_key`) at `rounds`. `what` names the memory read. Checksums are the caller's
/// (who holds which differs).
pub fn read_back_problems<'a>(
    fact: impl Fn(&str) -> Option<&'a str>,
    prefix: &str,
    pongs_key: &str,
    rounds: u64,
    what: &str,
) -> Vec<String> {
    let mut p = Vec::new();
    let key = |k: &str| format!("{prefix}.{k}");
    if let Some(e) = fact(&key("error")) {
        p.push(format!("{what}: {e}"));
    }
    if fact(&key("bad")) != Some("0") {
        p.push(format!(
            "{what}: {:?} words lack the writer's pattern (first at {:?})",
            fact(&key("bad")),
            fact(&key("first_bad"))
        ));
    }
    // With an answerer (rounds > 0), its increments ran beside the guest's.
    let increments = coherence::expected_counter(rounds > 0).to_string();
    if fact(&key("counter")) != Some(increments.as_str()) {
        p.push(format!(
            "{what}: counter {:?}, expected {increments}",
            fact(&key("counter"))
        ));
    }
    let rounds = rounds.to_string();
    for k in [pongs_key.to_string(), key("ping"), key("pong")] {
        if fact(&k) != Some(rounds.as_str()) {
            p.push(format!(
                "{what}: ping-pong {k} = {:?}, expected {rounds}",
                fact(&k)
            ));
        }
    }
    p
}

/// Reads the covered words of the file ([`Coverage`]) through a
/// [`RegionScanner`].
pub fn scan(path: &Path, seed: u64) -> Result<RegionScan> {
    let io = |e| Error::io(format!("cannot read {}", path.display()), e);
    let f = fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let mut scanner = RegionScanner::new(size, seed);
    if let Coverage::Sampled(offsets) = Coverage::of(size) {
        let mut w = [0u8; 8];
        for o in offsets {
            f.read_exact_at(&mut w, o).map_err(io)?;
            scanner.word(o, u64::from_le_bytes(w));
        }
        return Ok(scanner.finish());
    }
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut buf = vec![0u8; 1 << 20];
    let mut o = 0u64;
    while o < size {
        let n = buf.len().min((size - o) as usize);
        r.read_exact(&mut buf[..n]).map_err(io)?;
        for c in buf[..n].chunks_exact(8) {
            scanner.word(o, u64::from_le_bytes(c.try_into().expect("8 bytes")));
            o += 8;
        }
    }
    Ok(scanner.finish())
}

/// The host thread answering the guest's pings while QEMU runs, and its
/// stop flag (one run at a time: the VM tests run one after another).
type Answerer = (
    std::thread::JoinHandle<std::result::Result<coherence::Answered, String>>,
    Arc<AtomicBool>,
);
static ANSWERER: Mutex<Option<Answerer>> = Mutex::new(None);

/// Fills the file with the outside pattern and starts the host thread that
/// maps it (as QEMU does, `share=on`) and answers the guest's pings.
fn fill_and_answer(dir: &Path) -> Result<()> {
    let path = backing_file(dir, ACCEL_ID);
    fill(&path, ACCEL_MIB << 20, OUTSIDE_SEED)?;
    start_answerer(&path, PING_PONG_ROUNDS)
}

/// Starts the thread answering `rounds` pings of the guest in the file
/// at `path` (mapped shared, as QEMU maps it).
pub fn start_answerer(path: &Path, rounds: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let t = std::thread::spawn(move || coherence::answer_pings(&f, rounds, &flag));
    *ANSWERER.lock().unwrap_or_else(|e| e.into_inner()) = Some((t, stop));
    Ok(())
}

fn stop_and_check_file(dir: &Path) -> Vec<(String, String)> {
    let mut v = stop_answerer("host.pongs");
    v.extend(check_file(dir));
    v
}

/// Stops the answering thread: how many pings it answered, as fact `key`,
/// and its share of the atomics as `<prefix of key>.atomics` (the counter
/// total itself is checked in the memory after the run).
pub fn stop_answerer(key: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some((t, stop)) = ANSWERER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        stop.store(true, Ordering::Relaxed);
        let (answered, atomics) = match t.join() {
            Ok(Ok(a)) => (
                a.rounds.to_string(),
                match a.atomics_interleaved {
                    Some(n) => format!(
                        "{} increments, {n} of them with the guest's in between",
                        coherence::OUTSIDE_INCREMENTS
                    ),
                    None => "the guest never asked".into(),
                },
            ),
            Ok(Err(e)) => (e.clone(), e),
            Err(_) => ("the host thread panicked".into(), "-".into()),
        };
        let prefix = key.split('.').next().unwrap_or(key);
        v.push((key.to_string(), answered));
        v.push((format!("{prefix}.atomics"), atomics));
    }
    v
}

fn check_file(dir: &Path) -> Vec<(String, String)> {
    file_facts(&backing_file(dir, ACCEL_ID))
}

fn file_facts(path: &Path) -> Vec<(String, String)> {
    match scan(path, GUEST_SEED) {
        Ok(f) => f.facts("file"),
        Err(e) => vec![("file.error".into(), e.to_string())],
    }
}

/// `cxl-type2-ref 0000:0d:00.0: CXL Type-2 region [range A-B] (256 MiB) as
/// /dev/cxl-type2-ref0`: (bdf, start, end, MiB, char device).
pub fn parse_probe(line: &str) -> Option<(String, u64, u64, u64, String)> {
    let rest = &line[line.find("cxl-type2-ref ")? + "cxl-type2-ref ".len()..];
    let (bdf, rest) = rest.split_once(": CXL Type-2 region [range ")?;
    let (range, rest) = rest.split_once("] (")?;
    let (start, end) = range.split_once('-')?;
    let (mib, dev) = rest.split_once(" MiB) as ")?;
    Some((
        bdf.to_string(),
        parse_u64(start)?,
        parse_u64(end)?,
        mib.parse().ok()?,
        dev.trim().to_string(),
    ))
}

fn first_start(probes: &[(String, u64, u64, u64, String)]) -> Option<u64> {
    probes.first().map(|p| p.1)
}

pub fn coherence_check(outcome: &RunOutcome) -> Vec<String> {
    coherence_check_sized(outcome, ACCEL_MIB)
}

/// [`coherence_check`] for a device of `mib` MiB.
pub fn coherence_check_sized(outcome: &RunOutcome, mib: u64) -> Vec<String> {
    let mut p = Vec::new();
    let r = &outcome.report;
    let bdf = r.fact("accel.bdf").unwrap_or("?");
    if r.fact("accel.driver") != Some(MODULE) {
        p.push(format!(
            "{bdf} bound to {:?}, expected {MODULE}",
            r.fact("accel.driver")
        ));
    }
    if r.fact("t2.chardev") != Some(CHAR_DEV) {
        p.push(format!("no char device {CHAR_DEV}"));
    }
    let size = mib << 20;
    if r.fact("t2.size") != Some(&size.to_string()) {
        p.push(format!(
            "size attribute {:?}, expected {size}",
            r.fact("t2.size")
        ));
    }

    // One probe message per bind, all for the same range.
    let log = hostdriver::dmesg(outcome);
    let probes: Vec<_> = log.iter().filter_map(|l| parse_probe(&l.text)).collect();
    // The first bind, the one after the unbind under a mapping, the cycles.
    let binds = REBIND_CYCLES as usize + 2;
    if probes.len() != binds {
        p.push(format!(
            "{} probe messages ('CXL Type-2 region [range ...]'), expected {binds}",
            probes.len()
        ));
    }
    if let Some(first) = probes.first() {
        if probes.iter().any(|x| x != first)
            || first.0 != bdf
            || first.2 != first.1 + size - 1
            || first.3 != mib
            || first.4 != CHAR_DEV
        {
            p.push(format!("probe messages {probes:?}"));
        }
        // The region the guest's CXL core assembled (sysfs, before the
        // rebinds).
        let s = CxlSysfs::from_report(r);
        let regions = s.named("region");
        match regions.as_slice() {
            [region] => {
                let target = s.attr(region, "target0").unwrap_or("");
                for (ok, what) in [
                    (s.attr(region, "commit") == Some("1"), "commit is not 1"),
                    (
                        s.attr_u64(region, "resource") == Some(first.1),
                        "resource is not the driver's range",
                    ),
                    (
                        s.attr_u64(region, "size") == Some(size),
                        "size is not the device's",
                    ),
                    (
                        s.attr(target, "devtype") == Some("cxl_decoder_endpoint")
                            && s.attr(target, "region") == Some(region),
                        "target0 is not an endpoint decoder of this region",
                    ),
                ] {
                    if !ok {
                        p.push(format!("{region}: {what} ({:?})", s.devices.get(*region)));
                    }
                }
            }
            other => p.push(format!("CXL regions {other:?}, expected exactly one")),
        }
    }

    p.extend(coherence_results_check_sized(outcome, mib));

    match r.fact("coherence.unbind_while_mapped") {
        Some(v) if v.starts_with("pass: ") => {}
        v => p.push(format!("unbind while mapped: {v:?}")),
    }
    match r.fact("t2.pat") {
        Some(v)
            if v.contains("write-back")
                && first_start(&probes).is_some_and(|s| v.contains(&format!("{s:#018x}"))) => {}
        v => p.push(format!(
            "PAT memory type of the region: {v:?}, expected write-back"
        )),
    }
    if r.fact("rebind.cycles") != Some(&REBIND_CYCLES.to_string()) {
        p.push(format!("rebind cycles {:?}", r.fact("rebind.cycles")));
    }
    if r.fact("rmmod") != Some("ok") {
        p.push(format!("rmmod {MODULE} did not succeed"));
    }
    for l in log.iter().filter(|l| l.level.is_some_and(|v| v <= 3)) {
        p.push(format!("error-level kernel message: {}", l.text));
    }
    p
}

/// The coherence suite's results: every check of `coherence::CHECKS` ran
/// in order and passed, and the host found the guest's pattern, counter,
/// ping-pong words and checksum in the device's memory file.
pub fn coherence_results_check(outcome: &RunOutcome) -> Vec<String> {
    coherence_results_check_sized(outcome, ACCEL_MIB)
}

/// [`coherence_results_check`] for a device of `mib` MiB.
pub fn coherence_results_check_sized(outcome: &RunOutcome, mib: u64) -> Vec<String> {
    let mut p = Vec::new();
    let r = &outcome.report;
    // What the guest read of the host's pattern, by its digest.
    p.extend(digest_problem(
        "outside -> guest",
        r.fact("coherence.outside_digest"),
        OUTSIDE_SEED,
        Coverage::of(mib << 20).offsets(),
    ));
    // The guest's checks: all ran, in order, and passed.
    let ran: Vec<(&str, &str)> = r
        .all_facts_of_step("coherence")
        .filter(|(k, _)| {
            coherence::CHECKS
                .iter()
                .any(|c| k.strip_prefix("coherence.") == Some(c))
        })
        .collect();
    let names: Vec<&str> = ran.iter().map(|(k, _)| *k).collect();
    let want: Vec<String> = coherence::CHECKS
        .iter()
        .map(|c| format!("coherence.{c}"))
        .collect();
    if names != want {
        p.push(format!("coherence checks ran {names:?}, expected {want:?}"));
    }
    for (k, v) in &ran {
        if !v.starts_with("pass: ") {
            p.push(format!("{k}: {v}"));
        }
    }

    // What the host found in the file.
    let hf = |k: &str| outcome.host_fact(k);
    p.extend(read_back_problems(
        hf,
        "file",
        "host.pongs",
        PING_PONG_ROUNDS,
        &format!("{ACCEL_ID}.raw"),
    ));
    let guest_sum = r.fact("coherence.checksum_value");
    if guest_sum.is_none() || hf("file.checksum") != guest_sum {
        p.push(format!(
            "checksum: guest {guest_sum:?}, host {:?}",
            hf("file.checksum")
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_line_parses() {
        let l = "cxl-type2-ref 0000:0d:00.0: CXL Type-2 region [range 0x0000000500000000-0x000000050fffffff] (256 MiB) as /dev/cxl-type2-ref0";
        assert_eq!(
            parse_probe(l),
            Some((
                "0000:0d:00.0".into(),
                0x5_0000_0000,
                0x5_0fff_ffff,
                256,
                CHAR_DEV.into()
            ))
        );
        assert_eq!(parse_probe("cxl-type2-ref 0000:0d:00.0: other"), None);
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.raw");
        let size = 1u64 << 20;
        fill(&f, size, 9).unwrap();
        let s = scan(&f, 9).unwrap();
        // The counter word holds the pattern here, and is not compared.
        assert_eq!((s.words, s.bad, s.first_bad), (size / 8, 0, None));
        assert_eq!(s.counter, pattern::word(9, coherence::counter_offset(size)));
        let mut c = Checksum::default();
        c.add_bytes(&fs::read(&f).unwrap());
        assert_eq!(s.checksum, c.0);
        let s = scan(&f, 10).unwrap();
        assert_eq!((s.bad, s.first_bad), (size / 8 - 3, Some(0)));
    }

    #[test]
    fn read_back_facts_round_trip_through_the_verdict() {
        let size = 1u64 << 20;
        let (ping_at, pong_at) = coherence::ping_pong_offsets(size);
        let memory = |counter: u64| {
            let mut scanner = RegionScanner::new(size, 5);
            for o in (0..size).step_by(8) {
                let w = match o {
                    _ if o == coherence::counter_offset(size) => counter,
                    _ if o == ping_at || o == pong_at => 7,
                    _ => pattern::word(5, o),
                };
                scanner.word(o, w);
            }
            let mut facts = scanner.finish().facts("x");
            facts.push(("pongs".into(), "7".into()));
            facts
        };
        // The guest's and the host's increments, both.
        let facts = memory(coherence::INCREMENTS + coherence::OUTSIDE_INCREMENTS);
        let fact = |k: &str| facts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            read_back_problems(fact, "x", "pongs", 7, "m"),
            Vec::<String>::new()
        );
        // The guest's alone: the host's atomics were lost.
        let facts = memory(coherence::INCREMENTS);
        let fact = |k: &str| facts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            read_back_problems(fact, "x", "pongs", 7, "m"),
            ["m: counter Some(\"1000000\"), expected 1200000"]
        );
        // One stray word, a short counter and a missed pong are each named.
        let mut scanner = RegionScanner::new(size, 5);
        for o in (0..size).step_by(8) {
            scanner.word(o, u64::from(o == 0x100));
        }
        let facts = scanner.finish().facts("x");
        let fact = |k: &str| facts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let p = read_back_problems(fact, "x", "pongs", 7, "m");
        assert!(p.iter().any(|l| l.contains("words lack")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("counter")), "{p:?}");
        assert!(p.iter().any(|l| l.contains("pongs")), "{p:?}");
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for s in [
            LIB_SH.to_string(),
            with_lib(BIND_SH),
            with_lib(REBIND_SH),
            with_lib(NO_REGION_SH),
            with_lib(UNBIND_MAPPED_SH),
            dmesg_sh(),
        ] {
            crate::payload::assert_valid_sh("guest-driver step", &s);
        }
    }
}
