//! VM test `host-driver-tenants`: one user of a device bound to
//! vfio-cxl-pci cannot read what the previous one left. User A (a
//! uapi-check process) fills the whole memory with a pattern and exits; the
//! driver clears the memory at close; user B opens the device and must read
//! only zeros; and after B's close the host finds only zeros in the
//! memory-backend file. The kernel log says how the driver cleared (CXL
//! Reset with Mem_Clr, or from the host) and how long it took.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::env::RunSpec;
use crate::hostdriver::{
    base_payload, base_spec, common_checks, dmesg, dmesg_sh, with_lib, ACCEL_ID, ACCEL_MIB,
};
use crate::qemu::backing_file;
use crate::runner::{HostFacts, RunOutcome};
use crate::sysfs;

pub const NAME: &str = "host-driver-tenants";
pub const NAME_HOST_CLEAR: &str = "host-driver-tenants-host-clear";
const TENANT_SEED: u64 = 0x7e4a_4e75;

const TENANTS_SH: &str = r#"$VC/vfio-cxl-uapi-check "$dev" --tenant-write @SEED@ >&3 || exit 1
$VC/vfio-cxl-uapi-check "$dev" --tenant-read >&3
"#;

pub fn spec() -> RunSpec {
    let payload = base_payload(NAME)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "tenants",
            &with_lib(&TENANTS_SH.replace("@SEED@", &TENANT_SEED.to_string())),
        )
        .step("report-dmesg", &dmesg_sh());
    let mut spec = base_spec(payload, ACCEL_MIB, 4096);
    spec.after_exit = Some(nonzero_in_backing_file);
    spec
}

/// [`spec`] with a `cxl-accel` that cannot CXL Reset (`cxl-reset=off`):
/// the driver clears from the host.
pub fn spec_host_clear() -> RunSpec {
    let mut spec = spec();
    spec.payload.name = NAME_HOST_CLEAR.into();
    spec.topology.accel_prop("cxl-reset=off");
    spec
}

/// [`spec`] on the debug test kernel.
pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

/// How many 8-byte words of the backing file are not zero.
fn nonzero_in_backing_file(dir: &Path) -> HostFacts {
    let count = || -> std::io::Result<u64> {
        let mut f = File::open(backing_file(dir, ACCEL_ID))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut nonzero = 0;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(nonzero);
            }
            nonzero += buf[..n]
                .chunks(8)
                .filter(|w| w.iter().any(|&b| b != 0))
                .count() as u64;
        }
    };
    match count() {
        Ok(n) => vec![("backing.nonzero_words".into(), n.to_string())],
        Err(e) => vec![("backing.error".into(), e.to_string())],
    }
}

/// The driver's `cleared N MiB by METHOD in T us` lines.
pub fn clear_lines(outcome: &RunOutcome) -> Vec<String> {
    dmesg(outcome)
        .into_iter()
        .filter(|l| l.text.contains(": cleared ") && l.text.contains(" MiB by "))
        .map(|l| l.text)
        .collect()
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks(outcome, 1..=1, &[], &mut p);
    let r = &outcome.report;
    for key in ["tenant_write", "tenant_read"] {
        match r.fact(key) {
            Some(v) if v.starts_with("pass: ") => {}
            v => p.push(format!("{key}: {v:?}")),
        }
    }
    // At bind (first open), after A, after B: three clears at least.
    let clears = clear_lines(outcome);
    for l in &clears {
        println!("  {NAME}: {l}");
    }
    let by = if outcome
        .report
        .begin
        .as_ref()
        .is_some_and(|b| b.payload == NAME_HOST_CLEAR)
    {
        "the host"
    } else {
        "CXL Reset with Mem_Clr"
    };
    let want = format!("cleared {ACCEL_MIB} MiB by {by} in ");
    if clears.len() < 3 || !clears.iter().all(|l| l.contains(&want)) {
        p.push(format!(
            "expected a clear of {ACCEL_MIB} MiB at each open/close, kernel log has {clears:?}"
        ));
    }
    match outcome.host_fact("backing.nonzero_words") {
        Some("0") => {}
        v => p.push(format!(
            "{ACCEL_ID}.raw after the last close: {v:?} non-zero words ({:?})",
            outcome.host_fact("backing.error")
        )),
    }
    p
}
