//! VM tests `host-driver-aer` and `host-driver-aer-fatal` (and their
//! `@debug` variants): an uncorrectable error in cxl-accel (`aer=on`)
//! while a user of vfio-cxl-pci has the memory mapped and its error
//! eventfd registered. `vfio-cxl-uapi-check --aer-recovery SEVERITY` says
//! `aer.ready`; the host, watching the results channel, injects the error
//! over QMP (HMP `pcie_aer_inject_error`); the guest's AER driver (the CXL
//! root port's, native by the host bridge's _OSC) runs the recovery.
//!
//! - `host-driver-aer`: `POISON_TLP`, non-fatal by the default severity;
//!   no reset, the user gets the signal and then its mapping and data
//!   back.
//! - `host-driver-aer-fatal`: `DLP`, fatal by the default severity (QEMU's
//!   `PCI_ERR_UNC_SEVERITY_DEFAULT`, which Linux leaves as it is); the
//!   recovery resets the link, which leaves the function's BARs
//!   unassigned: the memory faults from the signal on and after the
//!   recovery, until the user enables Memory Space and vfio-pci core
//!   restores the BARs (uapi-check's aer.rs).
//!
//! The host checks the kernel's own account: the error reported for the
//! device and the recovery successful.

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
use vfio_cxl_uapi_check::aer::READY_FACT;

pub const NAME: &str = "host-driver-aer";
pub const NAME_FATAL: &str = "host-driver-aer-fatal";
/// What the AER driver says once it has reset the link of a fatal error.
const LINK_RESET: &str = "AER: Root Port link has been reset (0)";
/// How long the guest may take to ask for the error.
const READY_LIMIT: Duration = Duration::from_secs(120);

/// vfio-cxl-core's resume after a link reset wiped the config space.
const RESTORED: &str = "config space restored after a link reset: component BAR back";

/// One of the two tests: the error, and what the kernel says of it.
struct Variant {
    name: &'static str,
    /// uapi-check's `--aer-recovery` value.
    severity: &'static str,
    /// The error `pcie_aer_inject_error` injects.
    error: &'static str,
    /// The kernel's report of the error for the device (`aer_print_error()`).
    reported: &'static str,
    /// The recovery resets the link (`aer_root_reset()`).
    link_reset: bool,
    /// cxl-accel's properties.
    props: &'static [&'static str],
    /// The kernel messages the test provokes at warning or error level:
    /// the report of the error.
    provoked: &'static [Provoked],
}

const NON_FATAL: Variant = Variant {
    name: NAME,
    severity: "non-fatal",
    error: "POISON_TLP",
    reported: "PCIe Bus Error: severity=Uncorrectable (Non-Fatal)",
    link_reset: false,
    props: &["aer=on"],
    provoked: &[
        Provoked::at_most("PCIe Bus Error: severity=Uncorrectable (Non-Fatal)", 1),
        Provoked::at_most("error status/mask=", 1),
        Provoked::at_most("   [12] TLP", 1),
        Provoked::at_most("AER:   TLP Header: ", 1),
    ],
};

/// After a fatal error the AER driver does not read the device's error
/// registers (its link is being reset): the report has no details.
/// `pm=on`: a function with the PM capability gets the 100 ms wait after
/// the link reset (`d3cold_delay`; without it Linux waits 0 ms and the
/// whole recovery takes about 15 ms): the window in which the user must
/// find its memory blocked. PCIe requires the capability of every
/// function.
const FATAL: Variant = Variant {
    name: NAME_FATAL,
    severity: "fatal",
    error: "DLP",
    reported: "PCIe Bus Error: severity=Uncorrectable (Fatal)",
    link_reset: true,
    props: &["aer=on", "pm=on"],
    provoked: &[Provoked::at_most(
        "PCIe Bus Error: severity=Uncorrectable (Fatal)",
        2,
    )],
};

fn spec_of(v: &Variant, start: fn(&Path) -> Result<()>) -> RunSpec {
    let payload = base_payload(v.name)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step(
            "aer-recovery",
            &with_lib(&format!(
                "$VC/vfio-cxl-uapi-check \"$dev\" --aer-recovery {} >&3\n",
                v.severity
            )),
        )
        // The driver's lines and the AER driver's, which name the port.
        .step(
            "report-dmesg",
            &report_dmesg_sh(&["vfio", "VFIO", "cxl", "CXL", "AER"]),
        );
    let mut spec = base_spec(payload, ACCEL_MIB, 4096);
    for prop in v.props {
        spec.topology.accel_prop(prop);
    }
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.before_boot = Some(start);
    spec.after_exit = Some(stop_injector);
    spec
}

pub fn spec() -> RunSpec {
    spec_of(&NON_FATAL, |dir| start_injector(dir, &NON_FATAL))
}

pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

pub fn spec_fatal() -> RunSpec {
    spec_of(&FATAL, |dir| start_injector(dir, &FATAL))
}

pub fn spec_fatal_debug() -> RunSpec {
    spec_fatal().on_debug_kernel()
}
fn qmp_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-aer-{}-qmp.sock", std::process::id())
}

/// Stopped once QEMU has exited: it stops waiting then.
static INJECTOR: HostThread = HostThread::new("aer.inject");

fn start_injector(dir: &Path, v: &'static Variant) -> Result<()> {
    let _ = fs::remove_file(qmp_socket());
    let results = runner::results_path(dir);
    INJECTOR.start(move || inject_when_asked(results, v));
    Ok(())
}

/// Waits for the guest's `aer.ready`, then injects the variant's error;
/// the HMP reply as host fact `aer.inject`.
fn inject_when_asked(results: PathBuf, v: &Variant) -> HostFacts {
    let run = || -> Result<String> {
        let mut q = Qmp::connect_within(&qmp_socket(), Duration::from_secs(30))?;
        let t = Instant::now();
        let ready = format!("\"key\":\"{READY_FACT}\"");
        while !fs::read_to_string(&results).is_ok_and(|r| r.contains(&ready)) {
            if t.elapsed() > READY_LIMIT || INJECTOR.stopping() {
                return Ok("the guest never said ready".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
        let cmd = format!("pcie_aer_inject_error {ACCEL_ID} {}", v.error);
        Ok(q.hmp(&cmd)?.trim().to_string())
    };
    let reply = run().unwrap_or_else(|e| format!("error: {e}"));
    vec![("aer.inject".into(), reply)]
}

fn stop_injector(_dir: &Path) -> HostFacts {
    let v = INJECTOR.stop();
    let _ = fs::remove_file(qmp_socket());
    v
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    check_of(&NON_FATAL, outcome)
}

pub fn check_fatal(outcome: &RunOutcome) -> Vec<String> {
    check_of(&FATAL, outcome)
}

fn check_of(v: &Variant, outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks(outcome, 1..=1, v.provoked, &mut p);
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
        .any(|l| l.text.contains(&bdf) && l.text.contains(v.reported))
    {
        p.push(format!(
            "the kernel did not report the error of {bdf} ({:?})",
            v.reported
        ));
    }
    if !has("AER: device recovery successful") {
        p.push("the kernel did not report a successful recovery".into());
    }
    // After each link reset (fatal errors only) the driver's resume
    // restored the config space.
    let restored = log.iter().filter(|l| l.text.contains(RESTORED)).count();
    let want = usize::from(v.link_reset);
    if restored != want {
        p.push(format!(
            "the driver said {RESTORED:?} {restored} times, expected {want}"
        ));
    }
    if has(LINK_RESET) != v.link_reset {
        p.push(format!(
            "the kernel {} \"{LINK_RESET}\"",
            if v.link_reset { "did not say" } else { "said" }
        ));
    }
    p
}
