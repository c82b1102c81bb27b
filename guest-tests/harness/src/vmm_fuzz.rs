//! The VM test `cxl-accel-guest-fuzz` (issue 11): a guest-side fuzzer,
//! seeded, bounded by sequence count and time, against a pre-committed
//! `cxl-accel`.
//!
//! Each sequence is a few random operations, drawn from a linear
//! congruential generator seeded by the host: commits of the endpoint
//! decoder anywhere in the window (sizes, DPA skips, Lock On Commit),
//! decommits, random dwords into the endpoint's and the host bridge's
//! decoder registers, the issue's move of the locked host bridge decoder,
//! the HDM global control, random DVSEC CXL Control words, `cxl_bus`
//! resets and CXL Resets (without Mem_Clr). After each sequence the guest
//! checks every 4 KiB page of the window through /dev/mem
//! (`vfio-cxl-uapi-check --window-tags`, a compiled loop: busybox devmem
//! costs a fork per word):
//!
//! - when endpoint decoder 0 is committed and the whole decode path routes
//!   it, every page of its range holds the tag the host wrote at the
//!   matching device offset (`PAGE_TAG | dpa`, written before boot);
//! - every other page of the window reads no device tag, and gets a probe
//!   tag (`PROBE_MARK << 48 | sequence << 20 | page`).
//!
//! Odd seeds run the device with `precommit=off` (the guest's own
//! commits), even ones with firmware's pre-commit (reset commits and
//! locks decoder 0 again, so the host bridge path is what gets fuzzed).
//!
//! QEMU alive is the run reaching DONE with exit status 0 (and no trouble
//! on its stderr); after the run the host finds no probe tag in the
//! device's file (no escape) and every page tag where it wrote it (no
//! misplaced data). The seed is a fact and in every failure; set
//! `VFIO_CXL_FUZZ_SEED` to replay it (and `VFIO_CXL_FUZZ_SECONDS`,
//! `VFIO_CXL_FUZZ_SEQUENCES` for the bounds).

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::env::RunSpec;
use crate::hostdriver::{accel_topology, ACCEL_ID, ACCEL_MIB};
use crate::payload::{Payload, Source};
use crate::qemu::{backing_file, Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::{HostFacts, RunOutcome};
use crate::vmm_guard::{FIND_SH, ROUTE_SH};
use crate::vucxl::{self, ServerSetup};
use crate::{guestdriver, vmm_fuzz_replug};

pub const NAME: &str = "cxl-accel-guest-fuzz";
pub const VFIO_USER_NAME: &str = "vfio-user-cxl-guest-fuzz";

/// The host's tag at every 4 KiB device offset `o`: `PAGE_TAG | o`.
pub(crate) const PAGE_TAG: u64 = 0x7a6e_0000_0000_0000;
/// The top 16 bits of every probe the guest writes outside the range.
pub(crate) const PROBE_MARK: u64 = 0x3e5c;
const PAGE: u64 = 4096;
/// The window: 4 device sizes. The check probes every page of it after
/// each sequence (~0.5 s under TCG for 1 GiB); commits also land past it.
const WINDOW_MIB: u64 = 1024;

const SEED_ENV: &str = "VFIO_CXL_FUZZ_SEED";
const SECONDS_ENV: &str = "VFIO_CXL_FUZZ_SECONDS";
const SEQUENCES_ENV: &str = "VFIO_CXL_FUZZ_SEQUENCES";

/// The bounds CI runs with.
const DEFAULT_SECONDS: u64 = 60;
const DEFAULT_SEQUENCES: u64 = 200;

/// At most this many unbind/rebinds of the guest driver, and (on
/// vfio-user-cxl) hot-unplug/replugs, per run: each costs seconds (the
/// CXL core's teardown, pciehp's 5 s attention-button delay).
const MAX_REBINDS: u32 = 12;
const MAX_REPLUGS: u32 = 3;

const FUZZ_SH: &str = r#"seed=@SEED@; budget=@SECONDS@; seqs=@SEQUENCES@; ops=6
vfiocxl_fact fuzz.seed $seed
echo "vfiocxl fuzz: seed $seed (@SEED_ENV@=$seed replays it)"
# rnd N: R = the next number below N (31-bit LCG, no fork).
rnd() { seed=$(((seed * 1103515245 + 12345) & 0x7fffffff)); R=$(((seed >> 4) % $1)); }
find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
cfg=/sys/bus/pci/devices/$dev/config
echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$dev/resource
ep=$((start + 0x1100))
hb=$(cedt_u64 0 16) || { echo "no CHBS"; exit 1; }
hbd=$(hdm_of $hb) || { echo "no host bridge HDM decoders"; exit 1; }
W=$(cedt_u64 1 8) || { echo "no CFMWS"; exit 1; }
WS=$(cedt_u64 1 16)
M=0x10000000
dv=$(dvsec_of $cfg) || { echo "no CXL Device DVSEC"; exit 1; }
# route: the rest of the decode path as an OS sets it up, on the first
# host bridge decoder not committed and locked (by firmware or the fuzzer).
route() {
	local d=0
	while [ $d -lt 4 ]; do
		[ $(($(devmem $((hbd + 0x20 + d * 0x20)) 32) & 0x500)) -ne $((0x500)) ] && break
		d=$((d + 1))
	done
	[ $d -lt 4 ] && hb_commit $hbd $W $WS 0 $d
	bit16 $cfg 4 1 1
	devmem $((ep + 4)) 32 2
	mem_enable $cfg 1
}
# routed BASE SIZE: whether the whole decode path routes BASE+SIZE to the
# device (QEMU's rule, cxl_firmware_routes), read back from the registers.
routed() {
	local i=0 c lo hs
	[ $(($(devmem $((ep + 4)) 32) & 2)) -ne 0 ] || return 1
	[ $(($(cfg_rd $cfg $((dv + 12)) 2) & 4)) -ne 0 ] || return 1
	[ $(($(devmem $((hbd + 4)) 32) & 2)) -ne 0 ] || return 1
	while [ $i -lt 4 ]; do
		c=$(devmem $((hbd + 0x20 + i * 0x20)) 32)
		if [ $((c & 0x400)) -ne 0 ] && [ $(((c >> 4) & 0xf)) -eq 0 ] &&
			[ $(($(devmem $((hbd + 0x24 + i * 0x20)) 32) & 0xff)) -eq 0 ]; then
			lo=$(($(dec64 $((hbd + 0x10 + i * 0x20))) & ~0xfffffff))
			hs=$(($(dec64 $((hbd + 0x18 + i * 0x20))) & ~0xfffffff))
			[ $1 -ge $lo ] && [ $(($1 + $2)) -le $((lo + hs)) ] && return 0
		fi
		i=$((i + 1))
	done
	return 1
}
ep_commit() {
	rnd $((WS / M)); local b=$((W + R * M)); rnd 2; local sz=$(((R + 1) * M)); rnd 2; local skip=$((R * M)); rnd 2
	devmem $((ep + 0x20)) 32 0
	devmem $((ep + 0x10)) 32 $((b & 0xffffffff)); devmem $((ep + 0x14)) 32 $((b >> 32))
	devmem $((ep + 0x18)) 32 $((sz & 0xffffffff)); devmem $((ep + 0x1c)) 32 $((sz >> 32))
	devmem $((ep + 0x24)) 32 $skip; devmem $((ep + 0x28)) 32 0
	devmem $((ep + 0x20)) 32 $((0x200 | R << 8))
}
rnd32() { rnd 65536; local hi=$R; rnd 65536; R=$((hi << 16 | R)); }
ep_reg() { rnd 8; set -- 0x4 0x10 0x14 0x18 0x1c 0x20 0x24 0x28; shift $R; local o=$1; rnd32; devmem $((ep + o)) 32 $R; }
hb_reg() {
	rnd 4; local d=$((R * 0x20)); rnd 7; local o=$((0x10 + 4 * R))
	rnd 4; set -- 0 0x200 0x300 x; shift $R; local v=$1
	[ "$v" = x ] && { rnd32; v=$R; }
	devmem $((hbd + d + o)) 32 $v
}
hb_move() {
	local b=$(dec64 $((hbd + 0x10)))
	devmem $((hbd + 0x20)) 32 0
	b=$((b + M)); devmem $((hbd + 0x10)) 32 $((b & 0xffffffff)); devmem $((hbd + 0x14)) 32 $((b >> 32))
	devmem $((hbd + 0x20)) 32 0x300
}
dvsec_ctl() {
	rnd 65536
	printf "\\$(printf %03o $((R & 0xff)))\\$(printf %03o $((R >> 8)))" |
		dd of=$cfg bs=2 seek=$(((dv + 12) / 2)) count=1 conv=notrunc 2>/dev/null
}
# cxl_reset: Initiate CXL Reset (DVSEC Control2 bit 2), Mem_Clr_Enable
# clear: a clear would erase the host's page tags. Ignored where the
# device does not offer CXL Reset.
cxl_reset() {
	printf '\004' | dd of=$cfg bs=1 seek=$((dv + 0x10)) count=1 conv=notrunc 2>/dev/null
	cxl_resets=$((cxl_resets + 1))
}
reset_dev() {
	echo cxl_bus >/sys/bus/pci/devices/$dev/reset_method && echo 1 >/sys/bus/pci/devices/$dev/reset
	resets=$((resets + 1))
}
# unbind_driver: the guest driver lets go of the device. The checks run
# unbound: the driver maps the region write-back, and /dev/mem then
# refuses devmem's uncached mapping of it.
unbind_driver() {
	[ -e $DRV/$dev ] || return 0
	echo $dev >$DRV/unbind
	# The CXL core detaches the old memdev from a workqueue.
	sleep 0.5
}
# rebind: the guest driver probes the device (it may refuse what the
# fuzzer left; that is fine) and lets go of it again.
rebind() {
	[ $rebinds -lt @MAX_REBINDS@ ] || return 0
	rebinds=$((rebinds + 1))
	echo $dev >/sys/bus/pci/drivers_probe 2>/dev/null
	[ -e $DRV/$dev ] && binds=$((binds + 1))
	unbind_driver
}
# replug: the host unplugs the device over QMP and plugs it in again.
present() { [ -e /sys/bus/pci/devices/$dev/config ]; }
replug() {
	[ $replugs -lt @MAX_REPLUGS@ ] || return 0
	replugs=$((replugs + 1))
	vfiocxl_fact @REPLUG_REQ@ $replugs
	read -r word </dev/ttyS2 || { echo "nothing from the host on ttyS2"; exit 1; }
	[ "$word" = go ] || { vfiocxl_fact fuzz.replug.error "$word"; exit 1; }
	wait_for 150 present || { echo "$dev did not come back after the replug"; exit 1; }
	# The guest driver may have bound it again.
	sleep 0.5
	unbind_driver
	echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
	read -r start end flags </sys/bus/pci/devices/$dev/resource
	ep=$((start + 0x1100))
}
op() {
	rnd 18
	case $R in
	0 | 1 | 2 | 3) ep_commit ;;
	4 | 5) devmem $((ep + 0x20)) 32 0 ;;
	6) ep_reg ;;
	7 | 8) hb_reg ;;
	9) hb_move ;;
	10) rnd 4; devmem $((ep + 4)) 32 $R ;;
	11) dvsec_ctl ;;
	12) reset_dev ;;
	13) rnd 2; bit16 $cfg 4 1 $R ;;
	14) route ;;
	15) rebind ;;
	16) replug ;;
	17) cxl_reset ;;
	esac
	ops_run=$((ops_run + 1))
}
# check SEQ: every page of the window, through /dev/mem (uapi-check
# --window-tags): the routed range holds the host's page tags, the rest
# reads none and gets a probe.
check() {
	local ctrl=0 b=0 sz=0 skip=0 k v
	# The endpoint's registers answer only with Memory Space on.
	[ $(($(cfg_rd $cfg 4 2) & 2)) -ne 0 ] && ctrl=$(devmem $((ep + 0x20)) 32)
	if [ $((ctrl & 0x400)) -ne 0 ]; then
		b=$(dec64 $((ep + 0x10))); sz=$(dec64 $((ep + 0x18))); skip=$(dec64 $((ep + 0x24)))
		committed=$((committed + 1))
		routed $b $sz || { b=0; sz=0; }
	fi
	[ $sz -ne 0 ] && routes=$((routes + 1))
	$GD/vfio-cxl-uapi-check --window-tags $W $WS $b $sz $skip @PAGE_TAG@ @PROBE_MARK@ $1 >/tmp/wt ||
		{ echo "sequence $1: the window check failed"; exit 1; }
	while read -r k v; do
		case $k in
		checked) checked=$((checked + v)) ;;
		probes) probes=$((probes + v)) ;;
		bad) bad=$((bad + v)) ;;
		what) [ $reported -lt 5 ] && vfiocxl_fact fuzz.bad "$v" && reported=$((reported + 1)) ;;
		esac
	done </tmp/wt
}
read -r t0 rest </proc/uptime; t0=${t0%.*}
[ @MAX_REPLUGS@ -gt 0 ] && stty -F /dev/ttyS2 -echo 2>/dev/null
insmod $GD/cxl-type2-ref.ko || exit 1
unbind_driver
s=0 ops_run=0 checked=0 bad=0 reported=0 probes=0 committed=0 routes=0 resets=0 cxl_resets=0 rebinds=0 binds=0 replugs=0
while [ $s -lt $seqs ]; do
	read -r now rest </proc/uptime
	[ $((${now%.*} - t0)) -ge $budget ] && break
	i=0
	while [ $i -lt $ops ]; do op; i=$((i + 1)); done
	check $s
	s=$((s + 1))
done
for k in s:sequences ops_run:ops checked:checked bad:bad probes:probes committed:committed routes:routed resets:resets cxl_resets:cxl_resets rebinds:rebinds binds:binds replugs:replugs; do
	eval vfiocxl_fact fuzz.${k#*:} \$${k%%:*}
done
"#;

/// The bounds and seed of this run: from the environment, else CI's
/// bounds and a seed from the clock, read once per process: the server
/// of a replug must start with the seed the guest printed.
fn settings() -> (u64, u64, u64) {
    static CLOCK_SEED: OnceLock<u64> = OnceLock::new();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env(SEED_ENV).unwrap_or_else(|| {
        *CLOCK_SEED.get_or_init(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
    }) & 0x7fff_ffff;
    (
        seed,
        env(SECONDS_ENV).unwrap_or(DEFAULT_SECONDS),
        env(SEQUENCES_ENV).unwrap_or(DEFAULT_SEQUENCES),
    )
}

/// The fuzzer's payload for test `name`, with this run's settings; the
/// guest driver (cxl-type2-ref, with the CXL modules) for its rebinds;
/// `replugs` hot-unplug/replugs at most (the host must answer them).
fn payload(name: &str, seed: u64, seconds: u64, sequences: u64, replugs: u32) -> Payload {
    let script = FUZZ_SH
        .replace("@MAX_REBINDS@", &MAX_REBINDS.to_string())
        .replace("@MAX_REPLUGS@", &replugs.to_string())
        .replace("@REPLUG_REQ@", vmm_fuzz_replug::REQUEST)
        .replace("@SEED@", &seed.to_string())
        .replace("@SEED_ENV@", SEED_ENV)
        .replace("@SECONDS@", &seconds.to_string())
        .replace("@SEQUENCES@", &sequences.to_string())
        .replace("@PAGE_TAG@", &format!("{PAGE_TAG:#x}"))
        .replace("@PROBE_MARK@", &format!("{PROBE_MARK:#x}"));
    guestdriver::base_payload(name)
        .file(
            &format!("{}/vfio-cxl-uapi-check", guestdriver::GUEST_DIR),
            0o755,
            Source::Path {
                src: crate::hostdriver::uapi_check_binary(),
            },
        )
        .cmdline_arg("iomem=relaxed")
        .step(
            "fuzz",
            &guestdriver::with_lib(&format!("{FIND_SH}\n{ROUTE_SH}\n{script}")),
        )
}

pub fn spec() -> RunSpec {
    let (seed, seconds, sequences) = settings();
    let payload = payload(NAME, seed, seconds, sequences, 0);
    let mut spec = RunSpec::new(accel_topology(ACCEL_MIB, WINDOW_MIB), payload);
    spec.extra_args = vec!["-d".into(), "guest_errors".into()];
    // Odd seeds fuzz a device the guest commits itself (reset clears it),
    // even ones firmware's pre-commit (reset commits and locks it again).
    if seed & 1 == 1 {
        spec.extra_args
            .extend(["-global".into(), "cxl-accel.precommit=off".into()]);
    }
    spec.timeout = Duration::from_secs(seconds + 180);
    spec.before_boot = Some(write_page_tags);
    spec.after_exit = Some(scan);
    spec
}

/// `vfio-user-cxl-guest-fuzz`: the same fuzzer against `-device
/// vfio-user-cxl` and the software Type-2 server (`precommit=off` for odd
/// seeds), the tags in the server's memory file.
pub fn vfio_user_spec() -> RunSpec {
    let (seed, seconds, sequences) = settings();
    let topology = Topology {
        host_bridges: vec![HostBridge {
            id: "cxl.1".into(),
            bus_nr: 12,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: "rp0".into(),
                port: 0,
                chassis: 0,
                slot: 2,
                endpoint: Some(Endpoint::Device {
                    args: vucxl::device_json(0, "vuc0", precommit(seed)),
                }),
            }],
        }],
        windows: vec![Window {
            targets: vec!["cxl.1".into()],
            size_mib: WINDOW_MIB,
            granularity: None,
        }],
        devices: Vec::new(),
    };
    let mut spec = vucxl::server_run_spec(
        topology,
        payload(VFIO_USER_NAME, seed, seconds, sequences, MAX_REPLUGS),
        start_server,
        stop_server,
        seconds + 180,
    );
    spec.extra_args.extend(["-d".into(), "guest_errors".into()]);
    spec.extra_args.extend(vmm_fuzz_replug::qemu_args());
    spec
}

/// Even seeds: firmware's pre-commit; odd ones: the guest's own commits.
fn precommit(seed: u64) -> bool {
    seed & 1 == 0
}

/// The server keeps serving across replugs, with the guest's memory.
fn start_server(dir: &Path) -> crate::error::Result<()> {
    vucxl::start_servers(
        dir,
        &[ServerSetup {
            args: &["--persist", "--keep-memory"],
            ..ServerSetup::plain(0)
        }],
    )?;
    write_page_tags_to(&dir.join(vucxl::memory_at(0)))?;
    vmm_fuzz_replug::start(dir, precommit(settings().0));
    Ok(())
}

fn stop_server(dir: &Path) -> HostFacts {
    let mut f = vmm_fuzz_replug::stop();
    f.extend(vucxl::stop_servers(dir));
    f.extend(scan_file(&dir.join(vucxl::memory_at(0))));
    f
}

/// `PAGE_TAG | o` at every 4 KiB offset `o` of the device's memory.
fn write_page_tags(dir: &Path) -> crate::error::Result<()> {
    write_page_tags_to(&backing_file(dir, ACCEL_ID))
}

/// The page tags into `path` (rewritten in place: a server may have it
/// open already).
pub(crate) fn write_page_tags_to(path: &Path) -> crate::error::Result<()> {
    let io = |e| crate::error::Error::io(format!("cannot write {}", path.display()), e);
    let size = ACCEL_MIB << 20;
    let mut data = vec![0u8; size as usize];
    for o in (0..size).step_by(PAGE as usize) {
        data[o as usize..o as usize + 8].copy_from_slice(&(PAGE_TAG | o).to_le_bytes());
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .and_then(|mut f| f.write_all(&data))
        .map_err(io)
}

fn scan(dir: &Path) -> HostFacts {
    scan_file(&backing_file(dir, ACCEL_ID))
}

/// Escapes (probe tags in the device's memory) and misplaced data (page
/// tags that are not where the host wrote them), as host facts.
pub(crate) fn scan_file(path: &Path) -> HostFacts {
    let mut data = Vec::new();
    if let Err(e) = fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data)) {
        return vec![("scan.error".into(), e.to_string())];
    }
    let mut escapes = Vec::new();
    let mut misplaced = Vec::new();
    for (i, w) in data.chunks_exact(8).enumerate() {
        let o = 8 * i as u64;
        let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
        if word >> 48 == PROBE_MARK {
            escapes.push(format!("{word:#x} at {o:#x}"));
        } else if o % PAGE == 0 && word != PAGE_TAG | o {
            misplaced.push(format!("{word:#x} at {o:#x}"));
        }
    }
    let first = |v: &[String]| v.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    vec![
        ("escapes".into(), escapes.len().to_string()),
        ("escapes.first".into(), first(&escapes)),
        ("misplaced".into(), misplaced.len().to_string()),
        ("misplaced.first".into(), first(&misplaced)),
    ]
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let seed = r.fact("fuzz.seed").unwrap_or("?");
    let num = |k: &str| r.fact(k).and_then(|v| v.parse::<u64>().ok());
    let mut p = Vec::new();
    if num("fuzz.sequences").unwrap_or(0) == 0 {
        p.push("the fuzzer ran no sequence".into());
    }
    if num("fuzz.rebinds").unwrap_or(0) == 0 {
        p.push("the fuzzer never unbound and rebound the guest driver".into());
    }
    // vfio-user-cxl: every replug the guest asked for was carried out.
    if let Some(done) = outcome.host_fact("replug.done") {
        if num("fuzz.replugs").unwrap_or(0) == 0 {
            p.push("the fuzzer never hot-unplugged and replugged the device".into());
        }
        if Some(done) != r.fact("fuzz.replugs") {
            p.push(format!(
                "the host replugged {done} times, the guest asked {:?}",
                r.fact("fuzz.replugs")
            ));
        }
    }
    if let Some(e) = outcome.host_fact("replug.error") {
        p.push(format!("a replug failed: {e}"));
    }
    if num("fuzz.checked").unwrap_or(0) == 0 {
        p.push("the fuzzer never found decoder 0 committed and routed to check data".into());
    }
    if num("fuzz.bad") != Some(0) {
        p.push(format!(
            "{:?} pages read through the committed range were wrong: {:?}",
            r.fact("fuzz.bad"),
            r.facts("fuzz.bad")
        ));
    }
    for (k, what) in [
        (
            "escapes",
            "probe tags written outside the committed range reached device memory",
        ),
        (
            "misplaced",
            "page tags in device memory are not where the host wrote them",
        ),
    ] {
        if outcome.host_fact(k) != Some("0") {
            p.push(format!(
                "{:?} {what}: {:?}",
                outcome.host_fact(k),
                outcome.host_fact(&format!("{k}.first"))
            ));
        }
    }
    if !p.is_empty() {
        p.push(format!("replay with {SEED_ENV}={seed}"));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_script_is_valid_sh() {
        for step in spec()
            .payload
            .steps
            .into_iter()
            .chain(vfio_user_spec().payload.steps)
        {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }

    #[test]
    fn scan_counts_escapes_and_misplaced_tags() {
        let dir = tempfile::tempdir().unwrap();
        let path = backing_file(dir.path(), ACCEL_ID);
        let mut data = vec![0u8; 16 * PAGE as usize];
        for o in (0..data.len()).step_by(PAGE as usize) {
            data[o..o + 8].copy_from_slice(&(PAGE_TAG | o as u64).to_le_bytes());
        }
        fs::write(&path, &data).unwrap();
        let facts = |d: &Path| scan(d);
        let get = |f: &HostFacts, k: &str| {
            f.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let f = facts(dir.path());
        assert_eq!(
            (get(&f, "escapes"), get(&f, "misplaced")),
            ("0".into(), "0".into())
        );
        data[0x2008..0x2010].copy_from_slice(&(PROBE_MARK << 48 | 7).to_le_bytes());
        data[0x3000..0x3008].copy_from_slice(&0u64.to_le_bytes());
        fs::write(&path, &data).unwrap();
        let f = facts(dir.path());
        assert_eq!(get(&f, "escapes"), "1");
        assert_eq!(get(&f, "misplaced"), "1");
        assert!(get(&f, "misplaced.first").contains("at 0x3000"));
    }
}
