//! VM test `host-driver-aer` (and `@debug`): an uncorrectable non-fatal
//! error in cxl-accel (`aer=on`) while a user of vfio-cxl-pci has the
//! memory mapped and its error eventfd registered. `vfio-cxl-uapi-check
//! --aer-recovery` says `aer.ready`; the host, watching the results
//! channel, injects `POISON_TLP` over QMP (HMP `pcie_aer_inject_error`);
//! the guest's AER driver (the CXL root port's, native by the host
//! bridge's _OSC) runs the recovery; the user must get the signal and
//! then its mapping and data back. The host checks the kernel's own
//! account: the error reported for the device and the recovery
//! successful.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::env::RunSpec;
use crate::error::Result;
use crate::host_thread::HostThread;
use crate::hostdriver::{
    base_payload, base_spec, common_checks, dmesg, with_lib, Provoked, ACCEL_ID, ACCEL_MIB,
};
use crate::payload::report_dmesg_sh;
use crate::qmp::{self, Qmp};
use crate::runner::{self, HostFacts, RunOutcome};
use crate::sysfs;

pub const NAME: &str = "host-driver-aer";
/// The error injected: uncorrectable, non-fatal by default severity.
const ERROR: &str = "POISON_TLP";
/// How long the guest may take to ask for the error.
const READY_LIMIT: Duration = Duration::from_secs(120);

/// The kernel's report of the error and of the recovery, at error level
/// (`aer_print_error()`), which the test provokes.
const PROVOKED: &[Provoked] = &[
    Provoked::at_most("PCIe Bus Error: severity=Uncorrectable (Non-Fatal)", 1),
    Provoked::at_most("error status/mask=", 1),
    Provoked::at_most("   [12] TLP", 1),
    Provoked::at_most("AER:   TLP Header: ", 1),
];

pub fn spec() -> RunSpec {
    let payload = base_payload(NAME)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "aer-recovery",
            &with_lib("$VC/vfio-cxl-uapi-check \"$dev\" --aer-recovery >&3\n"),
        )
        // The driver's lines and the AER driver's, which name the port.
        .step(
            "report-dmesg",
            &report_dmesg_sh(&["vfio", "VFIO", "cxl", "CXL", "AER"]),
        );
    let mut spec = base_spec(payload, ACCEL_MIB, 4096);
    spec.topology.accel_prop("aer=on");
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.before_boot = Some(start_injector);
    spec.after_exit = Some(stop_injector);
    spec
}

pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

fn qmp_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-aer-{}-qmp.sock", std::process::id())
}

/// Stopped once QEMU has exited: it stops waiting then.
static INJECTOR: HostThread = HostThread::new("aer.inject");

fn start_injector(dir: &Path) -> Result<()> {
    let _ = fs::remove_file(qmp_socket());
    let results = runner::results_path(dir);
    INJECTOR.start(move || inject_when_ready(results));
    Ok(())
}

/// Waits for the guest's `aer.ready`, then injects the error; the HMP
/// reply as host fact `aer.inject`.
fn inject_when_ready(results: PathBuf) -> HostFacts {
    let run = || -> Result<HostFacts> {
        let mut q = Qmp::connect_within(&qmp_socket(), Duration::from_secs(30))?;
        let t = Instant::now();
        let ready = format!("\"key\":\"{}\"", vfio_cxl_uapi_check::aer::READY_FACT);
        while !fs::read_to_string(&results).is_ok_and(|r| r.contains(&ready)) {
            if t.elapsed() > READY_LIMIT || INJECTOR.stopping() {
                return Ok(vec![(
                    "aer.inject".into(),
                    "the guest never said ready".into(),
                )]);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let cmd = format!("pcie_aer_inject_error {ACCEL_ID} {ERROR}");
        let reply = q.hmp(&cmd)?;
        Ok(vec![("aer.inject".into(), reply.trim().to_string())])
    };
    run().unwrap_or_else(|e| vec![("aer.inject".into(), format!("error: {e}"))])
}

fn stop_injector(_dir: &Path) -> HostFacts {
    let v = INJECTOR.stop();
    let _ = fs::remove_file(qmp_socket());
    v
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks(outcome, 1..=1, PROVOKED, &mut p);
    match outcome.host_fact("aer.inject") {
        Some(r) if r.starts_with(&format!("OK id: {ACCEL_ID}")) => {}
        r => p.push(format!("the host's injection: {r:?}")),
    }
    match outcome.report.fact("aer_recovery") {
        Some(v) if v.starts_with("pass: ") => {}
        v => p.push(format!("AER recovery with the memory mapped: {v:?}")),
    }
    let bdf = outcome.report.fact("accel.bdf").unwrap_or("?").to_string();
    let log = dmesg(outcome);
    let has = |what: &str| log.iter().any(|l| l.text.contains(what));
    if !log
        .iter()
        .any(|l| l.text.contains(&bdf) && l.text.contains(PROVOKED[0].text))
    {
        p.push(format!(
            "the kernel did not report the uncorrectable non-fatal error of {bdf}"
        ));
    }
    if !has("AER: device recovery successful") {
        p.push("the kernel did not report a successful recovery".into());
    }
    p
}
