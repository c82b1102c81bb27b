//! `host-driver-fuzz`: the uAPI fuzzer `vfio-cxl-uapi-fuzz`
//! (guest-tests/uapi-check/src/fuzz) on cxl-accel bound to vfio-cxl-pci,
//! for a bounded time; fails on any oracle failure, a hung operation, or
//! a kernel report on the console (lockdep, KASAN, UBSAN, KFENCE,
//! sleeping in atomic, hung task, WARN, BUG: [`crate::console`]).
//!
//! `VFIO_CXL_FUZZ_SECONDS` (default [`DEFAULT_SECONDS`]),
//! `VFIO_CXL_FUZZ_SEED` (default: a fresh random seed, printed) and
//! `VFIO_CXL_FUZZ_ONLY` (some operation kinds) choose the
//! run, e.g. `VFIO_CXL_FUZZ_SECONDS=600 VFIO_CXL_FUZZ_SEED=42 cargo xtask
//! vm-test host-driver-fuzz` (docs/host-driver.md, "uAPI fuzzer").

use std::path::PathBuf;
use std::time::Duration;

use crate::env::RunSpec;
use crate::hostdriver::{
    base_payload, base_spec, common_checks, dmesg_sh, env_path, uapi_check_binary, with_lib,
    ACCEL_MIB, GUEST_DIR,
};
use crate::payload::Source;
use crate::runner::RunOutcome;
use crate::sysfs;

pub const NAME: &str = "host-driver-fuzz";
/// The same on the debug test kernel (docs/testing.md).
pub const NAME_DEBUG: &str = "host-driver-fuzz@debug";
/// Overrides where the static `vfio-cxl-uapi-fuzz` is taken from.
pub const UAPI_FUZZ_ENV: &str = "VFIO_CXL_UAPI_FUZZ";
pub const SECONDS_ENV: &str = "VFIO_CXL_FUZZ_SECONDS";
pub const SEED_ENV: &str = "VFIO_CXL_FUZZ_SEED";
/// Restricts the mix to some operation kinds (`--only`), e.g.
/// `region_rw,reset` for defect 1 of issue 10.
pub const ONLY_ENV: &str = "VFIO_CXL_FUZZ_ONLY";
/// Fuzzing time of the CI run.
pub const DEFAULT_SECONDS: u64 = 60;
/// Threads over the one device (the guest has 2 vCPUs).
pub const THREADS: u32 = 2;
/// An operation running longer than this is a hang (TCG: a reset takes
/// about a second).
pub const HANG_SECONDS: u64 = 30;
/// Operations of every kind must have run (ops.rs, `KINDS`).
pub const KINDS: usize = vfio_cxl_uapi_check::fuzz::ops::KINDS.len();

/// `$VFIO_CXL_UAPI_FUZZ`, else `vfio-cxl-uapi-fuzz` beside the static
/// `vfio-cxl-uapi-check` (the same package builds both).
pub fn uapi_fuzz_binary() -> PathBuf {
    env_path(UAPI_FUZZ_ENV)
        .unwrap_or_else(|| uapi_check_binary().with_file_name("vfio-cxl-uapi-fuzz"))
}

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.trim().parse().ok())
}

fn seconds() -> u64 {
    env_u64(SECONDS_ENV).unwrap_or(DEFAULT_SECONDS).max(1)
}

fn seed() -> u64 {
    env_u64(SEED_ENV).unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
    })
}

/// Runs the fuzzer in the background and waits for its end file, not for
/// the process: a thread hung in the kernel keeps the process from
/// exiting, and the steps after this one must still run.
const FUZZ_SH: &str = r#"rm -f /tmp/fuzz.end
$VC/vfio-cxl-uapi-fuzz "$dev" --seed @SEED@ --seconds @SECONDS@ --threads @THREADS@ --hang-seconds @HANG@ @ONLY@--end-file /tmp/fuzz.end >&3 &
pid=$!
waited=0
while [ ! -e /tmp/fuzz.end ] && kill -0 $pid 2>/dev/null && [ $waited -lt @LIMIT@ ]; do
	sleep 1
	waited=$((waited + 1))
done
rc=stuck
if [ -e /tmp/fuzz.end ]; then
	read -r rc </tmp/fuzz.end
elif ! kill -0 $pid 2>/dev/null; then
	wait $pid
	rc="died (wait status $?)"
fi
vfiocxl_fact fuzz.exit "$rc"
if [ "$rc" = stuck ]; then
	# The fuzzer's own watchdog could not report (a thread blocked in a
	# fault holds mmap_lock, and the watchdog's allocations wait on it):
	# where each of its threads is, read from outside, and every blocked
	# task of the kernel.
	for t in /proc/$pid/task/*; do
		read -r st <"$t/stat"
		vfiocxl_fact fuzz.stuck "tid ${t##*/} state $(echo "$st" | cut -d' ' -f3) wchan $(cat "$t/wchan"): $(tr '\n' ' ' <"$t/stack")"
	done
	if [ -w /proc/sysrq-trigger ]; then
		n=$(dmesg | wc -l)
		echo w >/proc/sysrq-trigger
		dmesg | tail -n +$((n + 1)) | while IFS= read -r l; do vfiocxl_fact fuzz.blocked-tasks "$l"; done
	fi
fi
# The verdict is the check's (fuzz.exit and the facts); the report steps
# after this one must run either way.
true
"#;

/// `--only KINDS ` from [`ONLY_ENV`] (kinds are `[a-z0-9_]` words).
fn only() -> String {
    match std::env::var(ONLY_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let kinds: String = v
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ',')
                .collect();
            format!("--only {kinds} ")
        }
        _ => String::new(),
    }
}

fn fuzz_script(seed: u64, seconds: u64, hang: u64) -> String {
    // The run, the watchdog's limit and its report, and slack for TCG.
    let limit = seconds + hang + 60;
    with_lib(
        &FUZZ_SH
            .replace("@SEED@", &seed.to_string())
            .replace("@SECONDS@", &seconds.to_string())
            .replace("@THREADS@", &THREADS.to_string())
            .replace("@HANG@", &hang.to_string())
            .replace("@ONLY@", &only())
            .replace("@LIMIT@", &limit.to_string()),
    )
}

pub fn spec() -> RunSpec {
    spec_with_hang(HANG_SECONDS)
}

fn spec_with_hang(hang: u64) -> RunSpec {
    let (seed, seconds) = (seed(), seconds());
    let payload = base_payload(NAME)
        .file(
            &format!("{GUEST_DIR}/vfio-cxl-uapi-fuzz"),
            0o755,
            Source::Path {
                src: uapi_fuzz_binary(),
            },
        )
        // The bind's messages now, and out of the log: the fuzzer's opens
        // log enough to wrap the debug kernel's small log buffer.
        .step(
            "report-dmesg-bind",
            &format!("{}dmesg -c >/dev/null\n", dmesg_sh()),
        )
        .step("uapi-fuzz", &fuzz_script(seed, seconds, hang))
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step("report-dmesg", &dmesg_sh());
    let mut spec = base_spec(payload, ACCEL_MIB, 4096);
    // A PCI PM capability, so the fuzzer's D3hot operation runs (defect 4:
    // the zap on D3hot) instead of counting no-PM-capability.
    spec.topology.accel_prop("pm=on");
    spec.timeout = Duration::from_secs(240 + seconds + hang);
    // One vCPU, as host-driver-rebind: resets msleep() through many bus
    // and CXL Resets, and a 2-vCPU TCG guest loses an idle vCPU's timer
    // (docs/guest-harness.md "Lost timers under TCG"); two such stalls in
    // three runs on 2026-12-04. The fuzzer's threads still interleave.
    spec.machine.smp = 1;
    spec
}

/// [`spec`] on the debug test kernel, where a reset is slower (KASAN,
/// lockdep): the hang limit grows like the test's timeout.
pub fn spec_debug() -> RunSpec {
    spec_with_hang(HANG_SECONDS * u64::from(crate::env::DEBUG_KERNEL_SLOWDOWN)).on_debug_kernel()
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks(outcome, 1..=1, &[], &mut p);
    let r = &outcome.report;
    let seed = r.fact("fuzz.seed").unwrap_or("?");
    let test = match outcome.report.begin.as_ref() {
        Some(b) if b.payload.ends_with("@debug") => NAME_DEBUG,
        _ => NAME,
    };
    let only = std::env::var(ONLY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map_or(String::new(), |v| format!("{ONLY_ENV}={v} "));
    let again = format!("{SEED_ENV}={seed} {only}cargo xtask vm-test {test}");
    // Every run's seed and totals in the log, so a CI run can be replayed.
    println!(
        "  {test}: seed {seed}: {}",
        r.fact("fuzz.summary").unwrap_or("no summary")
    );
    for f in r.facts("fuzz.failure") {
        p.push(format!("fuzzer (seed {seed}): {f}"));
    }
    for h in r.facts("fuzz.hang") {
        p.push(format!("fuzzer (seed {seed}): operation hung: {h}"));
    }
    // The kernel's word on a fuzzer that died of a signal.
    for l in r
        .facts("dmesg")
        .into_iter()
        .filter(|l| l.contains("vfio-cxl-uapi-f"))
    {
        p.push(format!("fuzzer (seed {seed}): kernel: {l}"));
    }
    for t in r.facts("fuzz.stuck") {
        p.push(format!("fuzzer (seed {seed}) stuck, thread {t}"));
    }
    match r.fact("fuzz.summary") {
        None => p.push(format!(
            "the fuzzer did not finish (exit {:?}, error {:?}); again: {again}",
            r.fact("fuzz.exit"),
            r.fact("fuzz.error")
        )),
        Some(s) => {
            let ops: u64 = s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if ops < 100 {
                p.push(format!("the fuzzer ran only {ops} operations: {s}"));
            }
        }
    }
    // "RUN of ASKED": every kind asked for (all unless --only) ran.
    let kinds = r.fact("fuzz.kinds").and_then(|k| k.split_once(" of "));
    if r.fact("fuzz.summary").is_some() && kinds.is_none_or(|(run, asked)| run != asked) {
        p.push(format!(
            "operation kinds run: {:?}, expected all of the {KINDS} kinds (or of --only)",
            r.fact("fuzz.kinds")
        ));
    }
    // cxl-accel has a PM capability here: D3hot must have been entered
    // (the zap is checked), not counted as missing.
    if r.fact("fuzz.ops.power_d3hot").is_some() && r.fact("fuzz.result.power_d3hot.ok").is_none() {
        p.push(format!(
            "power_d3hot never entered D3hot and back: no-PM-capability {:?}, not-entered {:?}, error {:?}",
            r.fact("fuzz.result.power_d3hot.no-PM-capability"),
            r.fact("fuzz.result.power_d3hot.not-entered"),
            r.fact("fuzz.result.power_d3hot.error")
        ));
    }
    if r.fact("fuzz.exit") != Some("0") && !p.is_empty() {
        p.push(format!(
            "reproduce (the interleaving is not replayed): {again}"
        ));
    } else if r.fact("fuzz.exit") != Some("0") {
        p.push(format!(
            "fuzzer exit {:?}; again: {again}",
            r.fact("fuzz.exit")
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_step_is_valid_sh_and_bounded() {
        let s = fuzz_script(7, 60, HANG_SECONDS);
        assert!(s.contains("--seed 7 --seconds 60 --threads 2"), "{s}");
        assert!(!s.contains("@ONLY@"), "{s}");
        assert!(s.contains("-lt 150 ]"), "{s}");
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_binary_sits_beside_uapi_check() {
        if std::env::var_os(UAPI_FUZZ_ENV).is_none()
            && std::env::var_os("VFIO_CXL_UAPI_CHECK").is_none()
        {
            assert_eq!(uapi_fuzz_binary().parent(), uapi_check_binary().parent());
        }
    }
}
