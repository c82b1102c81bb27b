//! VM test `host-driver-memory-failure`: a memory error in the device
//! memory reaches vfio-cxl-core and the process that maps the page (issue
//! 10). The device is bound to vfio-cxl-pci; `vfio-cxl-uapi-check
//! --memory-failure` maps the region, injects an error into one page
//! through the kernel's injector (`hwpoison_inject`, debugfs
//! `hwpoison/corrupt-pfn`, which calls memory_failure() as a machine check
//! handler would, without "action required") and checks what it then sees
//! (uapi-check's memory_failure.rs). The host checks the kernel's verdict on
//! the page ("recovery action for dax page: Recovered": the driver's
//! pagemap handled it), the driver's line naming the address, and that no
//! process was killed.

use crate::env::RunSpec;
use crate::hostdriver::{
    base_payload, base_spec, common_checks, dmesg, dmesg_sh, with_lib, Provoked,
};
use crate::runner::RunOutcome;
use crate::sysfs;
use vfio_cxl_uapi_check::memory_failure::POISONED;

pub const NAME: &str = "host-driver-memory-failure";

const MF_SH: &str = r#"mount_debugfs || exit 1
range=$(vfio_cxl_range) || { echo "no vfio-cxl range in /proc/iomem"; exit 1; }
vfiocxl_fact mf.first_pfn $((0x${range%-*} >> 12))
$VC/vfio-cxl-uapi-check "$dev" --memory-failure $((0x${range%-*} >> 12)) >&3
rc=$?
dmesg_facts "Memory failure: " mf.kernel
exit $rc
"#;

pub fn spec() -> RunSpec {
    let payload = base_payload(NAME)
        .module("hwpoison_inject")
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step("memory-failure", &with_lib(MF_SH))
        .step("report-dmesg", &dmesg_sh());
    base_spec(payload, crate::hostdriver::ACCEL_MIB, 4096)
}

/// [`spec`] on the debug test kernel.
pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    let Some(pfn) = shared_checks(outcome, &mut p) else {
        return p;
    };
    let verdict = format!("{pfn:#x}: recovery action for dax page: Recovered");
    let kernel = outcome.report.facts("mf.kernel");
    if !kernel.iter().any(|l| *l == verdict) {
        p.push(format!("kernel log has {kernel:?}, expected {verdict:?}"));
    }
    p.extend(driver_line_problem(outcome, pfn));
    p
}

/// What both memory-error tests (this one and `host-driver-mce`) check
/// first: the common host-driver checks with the driver's one line, and
/// uapi-check's verdict. The poisoned page's frame, or `None` (said in
/// `p`) when the guest did not report the region's first frame.
pub(crate) fn shared_checks(outcome: &RunOutcome, p: &mut Vec<String>) -> Option<u64> {
    common_checks(
        outcome,
        1..=1,
        &[Provoked::at_most("memory error at ", 1)],
        p,
    );
    let r = &outcome.report;
    match r.fact("memory_failure") {
        Some(v) if v.starts_with("pass: ") => {}
        v => p.push(format!("memory_failure: {v:?}")),
    }
    let pfn = r
        .fact("mf.first_pfn")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|first| first + POISONED);
    if pfn.is_none() {
        p.push(format!("mf.first_pfn: {:?}", r.fact("mf.first_pfn")));
    }
    pfn
}

/// The driver's line for the poisoned page, missing.
pub(crate) fn driver_line_problem(outcome: &RunOutcome, pfn: u64) -> Option<String> {
    let driver = format!(
        "memory error at {:#x}: users of 1 page(s) signalled",
        pfn << 12
    );
    (!dmesg(outcome).iter().any(|l| l.text.contains(&driver)))
        .then(|| format!("no driver line {driver:?}"))
}
