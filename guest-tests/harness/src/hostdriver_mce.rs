//! VM test `host-driver-mce` (and `@debug`): a real machine check for a
//! page of the device memory that a user process is consuming, so that
//! the guest kernel's do_machine_check() grades it "action required",
//! kill_me_maybe() calls memory_failure(pfn, MF_ACTION_REQUIRED) and
//! vfio-cxl-core's pagemap answers it (issue 10, defect 7): one
//! `BUS_MCEERR_AR` to the consumer and -EHWPOISON, so that the kernel
//! neither kills the process nor takes the page out of the direct map.
//!
//! `vfio-cxl-uapi-check --memory-failure FIRST_PFN --poison-by
//! machine-check` maps the region, pins itself to the last CPU, says
//! `mce.ready CPU GPA` and spins in user mode loading the page. The host
//! thread then stops the VM (QMP `stop`), reads that vCPU's CS (HMP `info
//! registers`) and, when its RPL is 3 (the process, in user mode), injects
//! an SRAR machine check there (HMP `mce`: QEMU's cpu_x86_inject_mce()
//! sets the bank and raises CPU_INTERRUPT_MCE on the stopped vCPU through
//! run_on_cpu()) and resumes the VM, which takes the #MC before any
//! hardware interrupt (x86_cpu_pending_interrupt()); in kernel mode it
//! resumes and tries again a little later. A machine check in kernel mode
//! would panic the guest ("Data load in unrecoverable area of kernel").
//!
//! The CPU is `max` with Intel's vendor: for AMD, which TCG's `max` is,
//! Linux panics on any uncorrected error without SUCCOR
//! (mce_severity_amd()), and TCG does not offer SUCCOR. QEMU gives an
//! Intel CPU `MCG_SER_P` (mce_init()), so Linux grades by its Intel
//! table. The error is local (`MCG_STATUS_LMCES`): a broadcast one waits
//! for every CPU in the handler (mce_start()), and only one gets it.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use vfio_cxl_uapi_check::memory_failure::MCE_READY_FACT;

use crate::env::RunSpec;
use crate::error::{Error, Result};
use crate::host_thread::HostThread;
use crate::hostdriver::{base_payload, base_spec, dmesg_sh, with_lib};
use crate::memory_failure::{driver_line_problem, shared_checks};
use crate::qmp::{self, Qmp};
use crate::runner::{self, HostFacts, RunOutcome};
use crate::sysfs;

pub const NAME: &str = "host-driver-mce";

/// TCG's `max` with Intel's machine-check architecture (module doc).
const CPU: &str = "max,-hypervisor,vendor=GenuineIntel";
/// The bank the error is reported in (QEMU has 10; Linux leaves bank 0
/// alone on old Intel models only).
const BANK: u32 = 1;
/// MCi_STATUS of an SRAR data load error: VAL, UC, EN, MISCV, ADDRV, S,
/// AR; MCACOD 0x134 (data load, `MCACOD_DATA`).
const STATUS: u64 = 0xbd80_0000_0000_0134;
/// MCG_STATUS: RIPV, EIPV, MCIP, LMCES (local to this CPU).
const MCG_STATUS: u64 = 0xf;
/// MCi_MISC: address mode physical (2 << 6), least significant valid bit
/// 12 (a page), which intel_mce_usable_address() accepts.
const MISC: u64 = 0x8c;
/// How long the guest may take to ask for the machine check.
const READY_LIMIT: Duration = Duration::from_secs(180);
/// How often the host stops the VM to find the vCPU in user mode.
const ATTEMPTS: u32 = 200;

const MCE_SH: &str = r#"range=$(vfio_cxl_range) || { echo "no vfio-cxl range in /proc/iomem"; exit 1; }
vfiocxl_fact mf.first_pfn $((0x${range%-*} >> 12))
$VC/vfio-cxl-uapi-check "$dev" --memory-failure $((0x${range%-*} >> 12)) --poison-by machine-check >&3
rc=$?
dmesg_facts "Memory failure: " mf.kernel
dmesg_facts "Uncorrected hardware memory error in user-access at " mce.user_access
dmesg_facts "[Hardware Error]: " mce.hardware_error
exit $rc
"#;

pub fn spec() -> RunSpec {
    let payload = base_payload(NAME)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step("machine-check", &with_lib(MCE_SH))
        .step("report-dmesg", &dmesg_sh());
    let mut spec = base_spec(payload, crate::hostdriver::ACCEL_MIB, 4096);
    spec.machine.cpu = CPU.into();
    spec.provoked_taints = 1 << TAINT_MACHINE_CHECK;
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.before_boot = Some(start_injector);
    spec.after_exit = Some(stop_injector);
    spec
}

/// [`spec`] on the debug test kernel.
pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

/// TAINT_MACHINE_CHECK, 'M': do_machine_check() sets it.
const TAINT_MACHINE_CHECK: u32 = 4;

fn qmp_socket() -> String {
    format!("/tmp/vfio-cxl-vm-test-mce-{}-qmp.sock", std::process::id())
}

/// Stopped once QEMU has exited: it stops waiting then.
static INJECTOR: HostThread = HostThread::new("mce.inject");

fn start_injector(dir: &Path) -> Result<()> {
    let _ = fs::remove_file(qmp_socket());
    let results = runner::results_path(dir);
    INJECTOR.start(move || inject_when_ready(results));
    Ok(())
}

/// Also writes the facts to `mce-host.txt` in the run directory (kept
/// with `--keep` or on failure): the stops needed, the RIP, the times.
fn stop_injector(dir: &Path) -> HostFacts {
    let v = INJECTOR.stop();
    let _ = fs::remove_file(qmp_socket());
    let text: String = v.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let _ = fs::write(dir.join("mce-host.txt"), text);
    v
}

/// The value of the guest's `mce.ready` fact in the results log: the CPU
/// and the guest physical address.
fn ready(results: &str) -> Option<(u32, u64)> {
    let key = format!("\"key\":\"{MCE_READY_FACT}\",\"value\":\"");
    let rest = &results[results.find(&key)? + key.len()..];
    let (cpu, gpa) = rest[..rest.find('"')?].split_once(' ')?;
    Some((
        cpu.parse().ok()?,
        u64::from_str_radix(gpa.strip_prefix("0x")?, 16).ok()?,
    ))
}

/// The CS selector in HMP `info registers` (`CS =0033 ...`).
fn cs_selector(regs: &str) -> Option<u16> {
    let l = regs.lines().find_map(|l| l.strip_prefix("CS ="))?;
    u16::from_str_radix(l.get(..4)?, 16).ok()
}

/// `RIP=...` in HMP `info registers`.
fn rip(regs: &str) -> Option<&str> {
    let l = regs.lines().find_map(|l| l.strip_prefix("RIP="))?;
    l.split_whitespace().next()
}

/// Waits for `mce.ready`, then stops the VM until the vCPU is in user
/// mode and injects the machine check there. Host facts: `mce.inject`
/// (`injected` or what went wrong), `mce.attempts` (stops needed),
/// `mce.kernel_mode` (stops that found it in the kernel), `mce.rip`,
/// `mce.event` (QEMU's MEMORY_FAILURE event), `mce.ms` (from ready to the
/// injection).
fn inject_when_ready(results: PathBuf) -> HostFacts {
    let mut facts: HostFacts = Vec::new();
    let outcome = (|| -> Result<String> {
        let mut q = Qmp::connect_within(&qmp_socket(), Duration::from_secs(30))?;
        let t = Instant::now();
        let (cpu, gpa) = loop {
            if let Some(r) = fs::read_to_string(&results).ok().as_deref().and_then(ready) {
                break r;
            }
            if t.elapsed() > READY_LIMIT || INJECTOR.stopping() {
                return Ok("the guest never said ready".into());
            }
            thread::sleep(Duration::from_millis(50));
        };
        let asked = Instant::now();
        let run = |q: &mut Qmp, cmd: &str| -> Result<()> {
            q.execute(cmd, serde_json::json!({}))?
                .map(|_| ())
                .map_err(|e| Error::msg(format!("{cmd}: {e}")))
        };
        let mut kernel = 0;
        for attempt in 1..=ATTEMPTS {
            if INJECTOR.stopping() {
                break;
            }
            let cmd = format!("mce {cpu} {BANK} {STATUS:#x} {MCG_STATUS:#x} {gpa:#x} {MISC:#x}");
            run(&mut q, "stop")?;
            // Whatever happens while stopped, the VM runs on afterwards.
            let regs = q.hmp_on(cpu, "info registers");
            let cs = regs.as_ref().ok().and_then(|r| cs_selector(r));
            let reply = cs.filter(|cs| cs & 3 == 3).map(|_| q.hmp(&cmd));
            let injected_ms = asked.elapsed().as_millis();
            run(&mut q, "cont")?;
            let regs = regs?;
            if cs.is_none() {
                return Err(Error::msg(format!("no CS in info registers: {regs}")));
            }
            let Some(reply) = reply else {
                kernel += 1;
                // Another phase of the guest's work each time.
                thread::sleep(Duration::from_millis(10 + u64::from(attempt) * 37 % 90));
                continue;
            };
            let reply = reply?;
            facts.push(("mce.attempts".into(), attempt.to_string()));
            facts.push(("mce.kernel_mode".into(), kernel.to_string()));
            facts.push(("mce.rip".into(), rip(&regs).unwrap_or("?").to_string()));
            facts.push(("mce.ms".into(), injected_ms.to_string()));
            if !reply.trim().is_empty() {
                return Ok(format!("{cmd}: {}", reply.trim()));
            }
            let event = q.wait_event("MEMORY_FAILURE", "recipient", "guest")?;
            facts.push(("mce.event".into(), event.to_string()));
            return Ok("injected".into());
        }
        facts.push(("mce.kernel_mode".into(), kernel.to_string()));
        Ok(format!(
            "CPU {cpu} was in kernel mode at each of {kernel} stops"
        ))
    })();
    facts.push((
        "mce.inject".into(),
        outcome.unwrap_or_else(|e| format!("error: {e}")),
    ));
    facts
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    let pfn = shared_checks(outcome, &mut p);
    match outcome.host_fact("mce.inject") {
        Some("injected") => {}
        r => p.push(format!("the host's machine check: {r:?}")),
    }
    match outcome.host_fact("mce.event") {
        Some(e)
            if e.contains("\"action\":\"inject\"") && e.contains("\"action-required\":true") => {}
        e => p.push(format!(
            "QEMU's MEMORY_FAILURE event: {e:?}, expected an injected action-required one"
        )),
    }
    let r = &outcome.report;
    if r.done
        .as_ref()
        .is_some_and(|d| d.tainted & (1 << TAINT_MACHINE_CHECK) == 0)
    {
        p.push("the kernel is not tainted M: it handled no machine check".into());
    }
    let Some(pfn) = pfn else {
        return p;
    };
    // kill_me_maybe()'s line, once, for the page's address (%llx).
    let user_access = r.facts("mce.user_access");
    if user_access != [format!("{:x}", pfn << 12)] {
        p.push(format!(
            "kill_me_maybe() said {user_access:?}, expected once \"Uncorrected hardware memory error in user-access at {:x}\"",
            pfn << 12
        ));
    }
    // -EHWPOISON: memory_failure() calls it failed, kill_me_maybe() is
    // content (0 would be "Recovered").
    let verdict = format!("{pfn:#x}: recovery action for dax page: Failed");
    let kernel = r.facts("mf.kernel");
    if kernel != [verdict.as_str()] {
        p.push(format!(
            "kernel log has {kernel:?}, expected only {verdict:?}"
        ));
    }
    p.extend(driver_line_problem(outcome, pfn));
    // The kernel killed nobody: neither memory_failure()'s kill_proc()
    // nor kill_me_maybe()'s kill_me_now().
    for bad in [
        "Memory error not recovered",
        "Killing ",
        "due to hardware memory corruption",
    ] {
        if let Some(l) = outcome.console.lines().find(|l| l.contains(bad)) {
            p.push(format!("the kernel killed a process: {}", l.trim_end()));
        }
    }
    let hw = r.facts("mce.hardware_error");
    if !hw.iter().any(|l| l.contains(&format!("{STATUS:016x}"))) {
        p.push(format!(
            "the kernel's [Hardware Error] report {hw:?} does not show status {STATUS:016x}"
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_fact_and_registers_are_read() {
        let results = "VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"memory_failure\",\"key\":\"mce.ready\",\"value\":\"1 0x4c0201000\"}\n";
        assert_eq!(ready(results), Some((1, 0x4c0201000)));
        assert_eq!(ready("nothing"), None);
        let regs = "RAX=0000000000000000 RBX=0000000000000001\nRIP=000055d1c0a0b0c0 RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0\nES =0000 0000000000000000 00000000 00000000\nCS =0033 0000000000000000 ffffffff 00a0fb00 DPL=3 CS64 [-RA]\n";
        assert_eq!(cs_selector(regs), Some(0x33));
        assert_eq!(rip(regs), Some("000055d1c0a0b0c0"));
        assert_eq!(
            cs_selector("CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]"),
            Some(0x10)
        );
    }
}
