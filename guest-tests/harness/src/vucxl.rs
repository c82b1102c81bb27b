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
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use std::io::{Read, Seek, SeekFrom};

use vfio_cxl_uapi_check::pattern;

use crate::env::{repo_root, RunSpec};
use crate::error::{Error, Result};
use crate::hostdriver::{
    self, accel_topology, count_pattern, write_pattern, ACCEL_MIB, GUEST_SEED, OUTSIDE_SEED,
};
use crate::payload::Payload;
use crate::qemu::{Endpoint, Topology};
use crate::runner::{HostFacts, RunOutcome};
use crate::vmm_guard::{FIND_SH, ROUTE_SH};

/// Overrides where the `vfio-user-cxl` server binary is taken from.
pub const SERVER_ENV: &str = "VFIO_USER_CXL_SERVER";
/// The socket of server 0: QEMU's `-device` arguments are fixed when the
/// spec is made, before the run directory exists, so the path is per
/// harness process (runs in one process are sequential).
pub fn socket() -> String {
    socket_at(0)
}

/// The socket of server `i` of a run.
pub fn socket_at(i: usize) -> String {
    let pid = std::process::id();
    match i {
        0 => format!("/tmp/vfio-cxl-vm-test-vucxl-{pid}.sock"),
        _ => format!("/tmp/vfio-cxl-vm-test-vucxl-{pid}-{i}.sock"),
    }
}

/// The memory file of server `i` in the run directory (`.raw`: the
/// harness deletes it from kept run directories).
pub fn memory_at(i: usize) -> String {
    match i {
        0 => "vucxl-mem.raw".into(),
        _ => format!("vucxl-mem{i}.raw"),
    }
}

fn log_at(i: usize) -> String {
    match i {
        0 => "vucxl-server.log".into(),
        _ => format!("vucxl-server{i}.log"),
    }
}

/// `$VFIO_USER_CXL_SERVER`, else `target/release/vfio-user-cxl` (built by
/// the test's `before_boot`).
pub fn server_binary() -> PathBuf {
    std::env::var_os(SERVER_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/vfio-user-cxl"))
}

/// `hostdriver::uapi_check`, plus: the server refused no DMA_UNMAP (QEMU
/// logs each refusal; its vIOMMU replay unmaps ranges that hold no map).
pub fn coherence_check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = hostdriver::uapi_check(outcome);
    p.extend(refused_unmaps(outcome));
    p
}

/// Every DMA_UNMAP the server refused, as seen by it and by QEMU.
pub fn refused_unmaps(outcome: &RunOutcome) -> Vec<String> {
    let server = outcome
        .host_facts
        .iter()
        .filter(|(k, _)| k.starts_with("server") && k.ends_with(".log"))
        .filter(|(_, v)| v.contains("DMA_UNMAP") && v.contains("failed"))
        .map(|(_, v)| format!("server: {v}"));
    let qemu = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("vfio_container_dma_unmap") || l.contains("command 3 error"))
        .map(|l| format!("QEMU: {l}"));
    server.chain(qemu).collect()
}

pub fn coherence_spec() -> RunSpec {
    // The server's file is filled before the boot (no handshake).
    let payload = hostdriver::uapi_payload("vfio-user-cxl-coherence", false)
        .cmdline_arg(hostdriver::KEEP_MEMORY_ARG);
    vucxl_spec(payload, true)
}

/// The pxb-cxl/cxl-rp topology of the host-driver tests with
/// `vfio-user-cxl` as the endpoint, the server started around the run.
fn vucxl_spec(payload: Payload, precommit: bool) -> RunSpec {
    let mut topology = accel_topology(ACCEL_MIB, 4096);
    topology.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: device_json(0, "vuc0", precommit),
    });
    server_run_spec(topology, payload, start_server, stop_server, 120)
}

/// A run with vfio-user servers: `start` before the boot, `stop` (and
/// its host facts) after QEMU exits, the vIOMMU and the QEMU arguments
/// every vfio-user-cxl guest needs.
pub fn server_run_spec(
    topology: Topology,
    payload: Payload,
    start: fn(&Path) -> Result<()>,
    stop: fn(&Path) -> HostFacts,
    timeout_secs: u64,
) -> RunSpec {
    let mut spec = RunSpec::new(topology, payload);
    spec.machine.iommu = true;
    spec.timeout = Duration::from_secs(timeout_secs);
    spec.extra_args = qemu_args(spec.machine.memory_mib);
    spec.before_boot = Some(start);
    spec.after_exit = Some(stop);
    spec
}

/// The `-device` JSON of `vfio-user-cxl` `id` on server `i`'s socket,
/// below the root port `{bus}`.
pub fn device_json(i: usize, id: &str, precommit: bool) -> String {
    format!(
        r#"{{"driver":"vfio-user-cxl","bus":"{{bus}}","id":"{id}","precommit":{precommit},"socket":{{"type":"unix","path":"{}"}}}}"#,
        socket_at(i)
    )
}

/// What every vfio-user-cxl run adds to QEMU's command line, for a guest
/// with `ram_mib` of RAM.
pub fn qemu_args(ram_mib: u64) -> Vec<String> {
    vec![
        // vfio-user passes guest RAM to the server as fds: share it.
        "-object".into(),
        format!("memory-backend-memfd,id=vucxl-ram,size={ram_mib}M,share=on"),
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
    ]
}

/// One server of a run: the pattern the host leaves in its memory file
/// before the boot, and extra command-line flags.
#[derive(Debug, Clone, Copy)]
pub struct ServerSetup {
    pub outside_seed: u64,
    pub args: &'static [&'static str],
    /// Device memory (`--size`), MiB.
    pub mem_mib: u64,
}

impl ServerSetup {
    /// A well-formed 256 MiB device whose file holds `outside_seed`.
    pub const fn plain(outside_seed: u64) -> Self {
        Self {
            outside_seed,
            args: &[],
            mem_mib: ACCEL_MIB,
        }
    }
}

/// The servers started for the current run, reaped by [`stop_servers`].
static SERVERS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Fills the memory file with the outside pattern and starts the server
/// on it; returns once its socket exists. Its device-info reply carries 40
/// capabilities of an unknown id before the CXL one (360 bytes): QEMU must
/// ask again with the argsz the server names, and skip what it does not
/// know (with a fixed 256-byte buffer, as before issue 11, realize failed).
fn start_server(dir: &Path) -> Result<()> {
    start_servers(
        dir,
        &[ServerSetup {
            args: &["--info-pad", "40"],
            ..ServerSetup::plain(OUTSIDE_SEED)
        }],
    )
}

/// Builds the server (unless `$VFIO_USER_CXL_SERVER` names one).
/// Incremental, about 1 s when up to date; `cargo xtask vm-test` builds
/// QEMU, the drivers and uapi-check, not this server.
pub fn build_server() -> Result<PathBuf> {
    if std::env::var_os(SERVER_ENV).is_none() {
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
    Ok(bin)
}

/// Starts server `i` for each setup (socket [`socket_at`], memory file
/// [`memory_at`], log `vucxl-server*.log`); once its socket exists (the
/// server has cleared the memory), fills the file with the outside
/// pattern; returns when every server is seeded.
pub fn start_servers(dir: &Path, setups: &[ServerSetup]) -> Result<()> {
    let bin = build_server()?;
    let mut servers = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    for (i, setup) in setups.iter().enumerate() {
        let mem = dir.join(memory_at(i));
        let size = setup.mem_mib << 20;
        fs::File::create(&mem)
            .and_then(|f| f.set_len(size))
            .map_err(|e| Error::io(format!("cannot create {}", mem.display()), e))?;
        let sock = socket_at(i);
        let _ = fs::remove_file(&sock);
        let log = fs::File::create(dir.join(log_at(i)))
            .map_err(|e| Error::io(format!("cannot create {}", log_at(i)), e))?;
        let child = Command::new(&bin)
            .args(["--socket", sock.as_str(), "--memory"])
            .arg(&mem)
            .args(["--size", &format!("{}M", setup.mem_mib)])
            .args(setup.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {}", bin.display()), e))?;
        servers.push(child);
        let start = Instant::now();
        while !Path::new(&sock).exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::msg(format!("{sock} did not appear in 10 s")));
            }
            sleep(Duration::from_millis(20));
        }
        // The server clears its memory before the socket exists (and
        // before every later client): seed it now, before QEMU connects.
        write_pattern(&mem, size, setup.outside_seed)?;
    }
    Ok(())
}

/// Waits (5 s) for the servers to exit, as they do when QEMU disconnects,
/// ends the rest, and removes their sockets. Host facts
/// `server{i}.exit` (the exit status) and `server{i}.log` (each line).
pub fn stop_servers(dir: &Path) -> HostFacts {
    let mut f = HostFacts::new();
    let children: Vec<Child> =
        std::mem::take(&mut *SERVERS.lock().unwrap_or_else(|e| e.into_inner()));
    let start = Instant::now();
    for (i, mut c) in children.into_iter().enumerate() {
        while matches!(c.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
            sleep(Duration::from_millis(50));
        }
        let status = match c.try_wait() {
            Ok(Some(st)) => st.to_string(),
            _ => {
                let _ = c.kill();
                let _ = c.wait();
                "killed (still running after QEMU)".into()
            }
        };
        f.push((format!("server{i}.exit"), status));
        let _ = fs::remove_file(socket_at(i));
        if let Ok(log) = fs::read_to_string(dir.join(log_at(i))) {
            for l in log.lines() {
                f.push((format!("server{i}.log"), l.to_string()));
            }
        }
    }
    f
}

/// Host facts `{prefix}pattern.found`, `.total`, `.first_bad`: how many
/// sample words of memory file `i` hold pattern `seed`.
pub fn pattern_facts(dir: &Path, i: usize, seed: u64, prefix: &str) -> HostFacts {
    match count_pattern(&dir.join(memory_at(i)), seed) {
        Ok((found, total, first_bad)) => {
            let mut f = vec![
                (format!("{prefix}pattern.found"), found.to_string()),
                (format!("{prefix}pattern.total"), total.to_string()),
            ];
            if let Some(o) = first_bad {
                f.push((format!("{prefix}pattern.first_bad"), format!("{o:#x}")));
            }
            f
        }
        Err(e) => vec![(format!("{prefix}pattern.error"), e.to_string())],
    }
}

/// Stops the server; the guest's pattern in its memory file (the facts
/// `hostdriver::uapi_check` reads) and its log as `server.log`.
fn stop_server(dir: &Path) -> HostFacts {
    let mut f: HostFacts = stop_servers(dir)
        .into_iter()
        .map(|(k, v)| (k.replacen("server0.", "server.", 1), v))
        .collect();
    f.extend(pattern_facts(dir, 0, GUEST_SEED, ""));
    f
}

/// The guest programs the emulated decoder itself (`precommit=off`, no
/// driver, `devmem` on BAR 0 + 0x1100): commit maps the server's memory at
/// the window base, decommit unmaps it, a range outside the window is
/// refused (Error Not Committed).
const GUEST_COMMIT_SH: &str = r#"find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
dev=/sys/bus/pci/devices/$dev
echo 1 >$dev/enable || exit 1
read -r start end flags <$dev/resource
while read -r l; do case "$l" in *"CXL Window 0"*) W=0x${l%%-*} ;; esac; done </proc/iomem
[ -n "$W" ] || { echo "no CXL Window 0 in /proc/iomem"; exit 1; }
hdm=$((start + 0x1100)); ctl=$((hdm + 0x20))
vfiocxl_fact window "$W"
vfiocxl_fact cap "$(devmem $hdm 32)"
vfiocxl_fact before.ctl "$(devmem $ctl 32)"
# The rest of the decode path, as an OS sets it up.
hbd=$(hdm_of $(cedt_u64 0 16)) || { echo "no host bridge HDM decoders"; exit 1; }
hb_commit $hbd $W 0x10000000 0
mem_enable $dev/config 1
devmem $((hdm + 4)) 32 2
devmem $((hdm + 0x10)) 32 $((W & 0xffffffff))
devmem $((hdm + 0x14)) 32 $((W >> 32))
devmem $((hdm + 0x18)) 32 0x10000000
devmem $((hdm + 0x1c)) 32 0
devmem $ctl 32 0x200
vfiocxl_fact commit.ctl "$(devmem $ctl 32)"
vfiocxl_fact commit.mem "$(devmem $W 64)"
devmem $((W + 8)) 64 0x1122334455667788
devmem $ctl 32 0
vfiocxl_fact decommit.ctl "$(devmem $ctl 32)"
vfiocxl_fact decommit.mem "$(devmem $W 64)"
devmem $((hdm + 0x10)) 32 0
devmem $((hdm + 0x14)) 32 1
devmem $ctl 32 0x200
vfiocxl_fact outside.ctl "$(devmem $ctl 32)"
# The server has @DECODERS@ decoders: past the emulated one, the host's
# block must read as the overlay's zeroes, not reach the host (all-ones).
i=48; past=
while [ $i -lt @BLOCK_LEN@ ]; do past="$past $(devmem $((hdm + i)) 32)"; i=$((i + 4)); done
vfiocxl_fact past "${past# }"
"#;

/// HDM decoders of the guest-commit test's server: its decoder block is
/// larger than the emulated one-decoder block QEMU overlays on it.
const HOST_DECODERS: u32 = 4;
const HOST_DECODERS_ARGS: [&str; 2] = ["--decoders", "4"];

/// The guest's word at file offset 8 (written through the mapping).
const GUEST_WORD: u64 = 0x1122_3344_5566_7788;

pub fn guest_commit_spec() -> RunSpec {
    let payload = Payload::new("vfio-user-cxl-guest-commit")
        .module("cxl_acpi")
        .cmdline_arg("iomem=relaxed")
        .step(
            "guest-commit",
            &format!(
                "{FIND_SH}\n{ROUTE_SH}\n{}",
                GUEST_COMMIT_SH
                    .replace("@DECODERS@", &HOST_DECODERS.to_string())
                    .replace(
                        "@BLOCK_LEN@",
                        &cxl_regs::hdm::block_len(HOST_DECODERS).to_string()
                    )
            ),
        );
    let mut spec = vucxl_spec(payload, false);
    spec.before_boot = Some(|dir| {
        start_servers(
            dir,
            &[ServerSetup {
                args: &HOST_DECODERS_ARGS,
                ..ServerSetup::plain(OUTSIDE_SEED)
            }],
        )
    });
    spec.after_exit = Some(stop_server_word8);
    spec.machine.iommu = false;
    spec.extra_args
        .retain(|a| !a.starts_with("intel-iommu") && a != "-global");
    spec
}

pub fn guest_commit_check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let first = format!("{:#018X}", pattern::word(OUTSIDE_SEED, 0)).replacen("0X", "0x", 1);
    let want: [(&str, &str); 7] = [
        ("cap", "0x00000100"),
        ("before.ctl", "0x00000000"),
        // COMMIT | COMMITTED
        ("commit.ctl", "0x00000600"),
        ("commit.mem", &first),
        ("decommit.ctl", "0x00000000"),
        ("decommit.mem", "0x0000000000000000"),
        // COMMIT | ERROR_NOT_COMMITTED
        ("outside.ctl", "0x00000A00"),
    ];
    for (k, v) in want {
        if r.fact(k) != Some(v) {
            p.push(format!("{k} = {:?}, expected {v}", r.fact(k)));
        }
    }
    // Decoders 1..3 of the host's block, through the overlay.
    let zeroes =
        vec!["0x00000000"; (cxl_regs::hdm::block_len(HOST_DECODERS) as usize - 48) / 4].join(" ");
    if r.fact("past") != Some(zeroes.as_str()) {
        p.push(format!(
            "past the emulated decoder, the host's block read {:?}, expected the overlay's zeroes",
            r.fact("past")
        ));
    }
    let want8 = format!("{GUEST_WORD:#x}");
    if outcome.host_fact("word8") != Some(want8.as_str()) {
        p.push(format!(
            "file offset 8 holds {:?}, expected the guest's {want8}",
            outcome.host_fact("word8")
        ));
    }
    p
}

/// stop_server, plus the 64-bit word at offset 8 of the memory file.
fn stop_server_word8(dir: &Path) -> HostFacts {
    let mut f = stop_server(dir);
    let mut b = [0u8; 8];
    let read = fs::File::open(dir.join(memory_at(0))).and_then(|mut file| {
        file.seek(SeekFrom::Start(8))?;
        file.read_exact(&mut b)
    });
    match read {
        Ok(()) => f.push(("word8".into(), format!("{:#x}", u64::from_le_bytes(b)))),
        Err(e) => f.push(("word8.error".into(), e.to_string())),
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_commit_server_has_the_decoders_its_check_reads() {
        assert_eq!(HOST_DECODERS_ARGS[1], HOST_DECODERS.to_string());
        assert!(cxl_regs::hdm::block_len(HOST_DECODERS) > cxl_regs::hdm::block_len(1));
    }
}
