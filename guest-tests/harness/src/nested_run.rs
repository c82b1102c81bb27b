//! Guests under KVM: a one-level test or benchmark run as L2 under KVM
//! inside an L1 guest (TCG, `-cpu max,-hypervisor`: TCG offers AMD SVM
//! with nested paging, so L1's `kvm_amd` loads), the machinery of the
//! nested chain ([`crate::nested`]) reused:
//!
//! ```text
//! L0  this QEMU (TCG): L1 with kvm_amd, no devices; the initramfs carries QEMU + its
//!     libraries + firmware, the vfio-user-cxl server + its libraries, the static
//!     guest-harness, L2's kernel and L2's initramfs (built here from the L2 spec's payload)
//! L1  `guest-harness nested-run NAME`: the same RunSpec a TCG run uses (server started, memory
//!     file filled, ping answerer, after-exit scan), booted with `-accel kvm`
//! L2  Debian 7.3.4 under KVM: cxl-type2-ref behind -device vfio-user-cxl, the suite
//! ```
//!
//! L1 runs the L2 spec's host side (`before_boot`, `after_exit`, the
//! test's check) and forwards everything to L0 as facts: L2's result
//! lines (`l2.results`), the host facts (`l2.host.KEY`), its verdict and
//! problems. L0 rebuilds L2's outcome from them ([`l2_outcome`]) and runs
//! the test's check again on it, so a silent or truncated L1 fails. L2
//! reports the CPUID hypervisor leaf 0x40000000, whose signature names
//! the accelerator that answered it (QEMU's KVM: `KVMKVMKVM`, TCG:
//! `TCGTCGTCGTCG`; present with `-hypervisor` too): a run that asked for
//! KVM and ran TCG fails on it.

use std::path::Path;
use std::time::Duration;

use crate::bench_bw;
use crate::console::{parse_results, Record, BEGIN, DONE, RESULT};
use crate::env::{Env, RunSpec};
use crate::error::{Error, Result};
use crate::guestdriver;
use crate::hw::AccelChoice;
use crate::nested::{self, accel_name, NESTED_DIR};
use crate::payload::{Payload, Step};
use crate::qemu::Topology;
use crate::runner::{Exit, RunOutcome};
use crate::vucxl;

/// The VM test: `guest-driver-vfio-user-cxl` with L2 under KVM.
pub const COHERENCE_NAME: &str = "guest-driver-coherence-kvm";
/// The L1 payload of `bench-bw --kvm`.
pub const BENCH_NAME: &str = "bench-bw-kvm";
/// The fact L2's CPUID step reports: leaf 0x40000000 as 16 bytes of hex.
pub const CPUID_FACT: &str = "cpuid.40000000";
/// How long L1 may take (L0's clock): boot, L2's run, the scans.
pub const L1_TIMEOUT: Duration = Duration::from_secs(1000);
/// How long L2 may take (L1's clock) at least.
pub const L2_MIN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long L2's benchmark may take (L1's clock).
pub const BENCH_L2_TIMEOUT: Duration = Duration::from_secs(800);

/// What L1 runs as L2, by the name `guest-harness nested-run` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Run {
    /// `guest-driver-vfio-user-cxl`'s spec and check.
    Coherence,
    /// `bench-bw`'s boot.
    BenchBw(bench_bw::Params),
}

impl L2Run {
    /// `nested-run`'s arguments naming this run.
    pub fn args(&self) -> Vec<String> {
        match self {
            L2Run::Coherence => vec!["coherence".into()],
            L2Run::BenchBw(p) => {
                let sizes: Vec<String> = p.sizes_mib.iter().map(u64::to_string).collect();
                let mut v = vec![
                    "bench-bw".into(),
                    "--sizes".into(),
                    sizes.join(","),
                    "--repeats".into(),
                    p.repeats.to_string(),
                ];
                if p.thp {
                    v.push("--thp".into());
                }
                v
            }
        }
    }

    /// The run `nested-run NAME` names (`params`: bench-bw's options).
    pub fn parse(name: &str, params: &bench_bw::Params) -> Result<Self> {
        match name {
            "coherence" => Ok(L2Run::Coherence),
            "bench-bw" => Ok(L2Run::BenchBw(params.clone())),
            other => Err(Error::msg(format!(
                "nested-run: unknown L2 run {other:?}: coherence or bench-bw"
            ))),
        }
    }

    /// The one-level spec, moved under `accel` with the CPUID report;
    /// `cpu` replaces `-cpu max,-hypervisor` (docs/install.md: what
    /// `-cpu host` changes).
    pub fn spec(&self, accel: AccelChoice, cpu: Option<&str>) -> RunSpec {
        let mut spec = match self {
            L2Run::Coherence => guestdriver::vfio_user_spec(),
            // Under KVM the C library's memcpy must not use AVX on the
            // type-3 window ([`bench_bw::NO_AVX_TUNABLES`]).
            L2Run::BenchBw(p) => {
                let mut spec = bench_bw::spec(&bench_bw::Params {
                    no_avx: p.no_avx || accel == AccelChoice::Kvm,
                    ..p.clone()
                });
                // The type-3 window at ~0.05 MB/s (every access an exit):
                // `--sizes 1 --repeats 3` took 298 s.
                spec.timeout = BENCH_L2_TIMEOUT;
                spec
            }
        };
        if let Some(cpu) = cpu {
            spec.machine.cpu = cpu.to_string();
        }
        under(spec, accel)
    }

    /// The test's own check of L2's outcome (the benchmark has none: its
    /// figures are read by the caller).
    pub fn check(&self) -> fn(&RunOutcome) -> Vec<String> {
        match self {
            L2Run::Coherence => guestdriver::coherence_check,
            L2Run::BenchBw(_) => |_| Vec::new(),
        }
    }
}

/// Reads CPUID leaf 0x40000000 through the `cpuid` driver (offset = leaf):
/// eax, ebx, ecx, edx as 16 bytes of hex.
const CPUID_SH: &str = r#"x=$(dd if=/dev/cpu/0/cpuid bs=16 skip=67108864 count=1 2>/dev/null | od -An -tx1) || exit 1
vfiocxl_fact cpuid.40000000 "$(echo $x)"
"#;

/// `spec` under `accel` (`-cpu max,-hypervisor` as ever: Linux's CXL
/// region code needs the bit hidden under KVM too) with the chain's 512
/// MiB and one vCPU ([`nested::L2_SMP`]; with two, one L2 of nine reset itself during
/// its boot, docs/guest-harness.md), with the `cpuid` module and a first
/// step reporting the hypervisor leaf.
pub fn under(mut spec: RunSpec, accel: AccelChoice) -> RunSpec {
    spec.machine.accel = accel_name(accel).into();
    spec.machine.smp = nested::L2_SMP;
    // The chain's L2 memory, and the shared RAM backend of the vfio-user
    // specs with it: 2 GiB of L2 RAM in a 3 GiB L1 was behind an L2 that
    // stopped during its boot (2026-12-05).
    let (from, to) = (
        format!("size={}M,", spec.machine.memory_mib),
        format!("size={}M,", nested::L2_MEMORY_MIB),
    );
    for a in spec.extra_args.iter_mut() {
        if a.starts_with("memory-backend-") {
            *a = a.replace(&from, &to);
        }
    }
    spec.machine.memory_mib = nested::L2_MEMORY_MIB;
    spec.payload = spec.payload.module("cpuid");
    spec.payload.steps.insert(
        0,
        Step {
            name: "report-accel".into(),
            script: CPUID_SH.into(),
        },
    );
    spec.timeout = spec.timeout.max(L2_MIN_TIMEOUT);
    spec
}

/// The signature of CPUID leaf 0x40000000 (ebx, ecx, edx as text, NULs
/// dropped) from [`CPUID_FACT`]'s hex bytes.
pub fn cpuid_signature(hex: &str) -> Option<String> {
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    if bytes.len() != 16 {
        return None;
    }
    Some(
        bytes[4..]
            .iter()
            .filter(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect(),
    )
}

/// What the hypervisor leaf says under `accel` (QEMU's).
pub fn expected_signature(accel: AccelChoice) -> &'static str {
    match accel {
        AccelChoice::Kvm => "KVMKVMKVM",
        AccelChoice::Tcg | AccelChoice::Auto => "TCGTCGTCGTCG",
    }
}

/// L1's step: `nested-run` with the bundle, its stdout on the results
/// channel. The server and QEMU find their libraries in
/// `/opt/nested/lib`; the L2 spec's host side finds the server through
/// `$VFIO_USER_CXL_SERVER`.
pub fn l1_step(run: &L2Run, accel: AccelChoice, cpu: Option<&str>) -> String {
    format!(
        "export LD_LIBRARY_PATH={d}/lib {server_env}={d}/vfio-user-cxl
{d}/guest-harness nested-run {args} --l2-accel {accel}{cpu} --qemu {d}/qemu-system-x86_64 \\
	--firmware-dir {d}/firmware --vmlinuz {d}/vmlinuz --initrd {d}/l2-initrd.cpio >&3
",
        d = NESTED_DIR,
        server_env = vucxl::SERVER_ENV,
        args = run.args().join(" "),
        accel = accel_name(accel),
        cpu = cpu
            .map(|c| format!(" --l2-cpu {}", crate::payload::sh_quote(c)))
            .unwrap_or_default(),
    )
}

/// L1's payload without the bundle: `kvm_amd`, the step, L1's kernel
/// lines about KVM.
pub fn l1_payload(name: &str, run: &L2Run, accel: AccelChoice, cpu: Option<&str>) -> Payload {
    Payload::new(name)
        .module("kvm_amd")
        .step("nested-run", &l1_step(run, accel, cpu))
        .step("report-dmesg", &crate::payload::report_dmesg_sh(&["kvm"]))
}

/// L1's spec: no devices, the chain's memory, the bundle added by
/// `prepare` (it needs the environment).
pub fn l1_spec(name: &str, run: &L2Run, accel: AccelChoice, cpu: Option<&str>) -> RunSpec {
    let mut spec = RunSpec::new(Topology::none(), l1_payload(name, run, accel, cpu));
    spec.machine.cxl = false;
    spec.machine.memory_mib = nested::L1_MEMORY_MIB;
    spec.timeout = L1_TIMEOUT;
    spec
}

/// Adds the bundle for `run` under `accel` to `spec`'s payload.
pub fn add_bundle(env: &Env, spec: &mut RunSpec, run: &L2Run, accel: AccelChoice) -> Result<()> {
    // The initramfs does not depend on the CPU model.
    let l2 = run.spec(accel, None);
    let server = vucxl::build_server()?;
    let b = nested::bundle(env, &l2.payload)?.with_binary("vfio-user-cxl", &server)?;
    spec.payload = b.add_to(std::mem::take(&mut spec.payload));
    Ok(())
}

/// The VM test `guest-driver-coherence-kvm`.
pub fn coherence_spec() -> RunSpec {
    let mut spec = l1_spec(COHERENCE_NAME, &L2Run::Coherence, AccelChoice::Kvm, None);
    spec.prepare = Some(|env, spec| add_bundle(env, spec, &L2Run::Coherence, AccelChoice::Kvm));
    spec
}

pub fn coherence_check(outcome: &RunOutcome) -> Vec<String> {
    check(outcome, &L2Run::Coherence, AccelChoice::Kvm)
}

/// `bench-bw --kvm`'s L1 spec, ready to boot; `cpu` replaces L2's
/// `-cpu max,-hypervisor` (`--l2-cpu`).
pub fn bench_spec(env: &Env, params: &bench_bw::Params, cpu: Option<&str>) -> Result<RunSpec> {
    let run = L2Run::BenchBw(params.clone());
    let mut spec = l1_spec(BENCH_NAME, &run, AccelChoice::Kvm, cpu);
    add_bundle(env, &mut spec, &run, AccelChoice::Kvm)?;
    Ok(spec)
}

/// A fact line on stdout (step `nested-run`).
fn fact(key: &str, value: &str) {
    println!(
        "{RESULT}{}",
        serde_json::json!({"kind": "fact", "step": "nested-run", "key": key, "value": value})
    );
}

/// L1's side: boots `run` under `accel` from the bundle's files, runs
/// its host side and check, forwards it all as facts. True when L2
/// passed.
pub fn l1_main(
    run: &L2Run,
    accel: AccelChoice,
    cpu: Option<&str>,
    qemu: &Path,
    firmware_dirs: &[std::path::PathBuf],
    vmlinuz: &Path,
    initrd: &Path,
) -> Result<bool> {
    let spec = run.spec(accel, cpu);
    let test_check = run.check();
    eprintln!(
        "nested-run: booting L2 ({}, -cpu {}, {} MiB, {} vCPUs, timeout {} s)",
        spec.machine.accel,
        spec.machine.cpu,
        spec.machine.memory_mib,
        spec.machine.smp,
        spec.timeout.as_secs()
    );
    let (outcome, problems) = crate::env::boot(
        &crate::env::Boot {
            qemu,
            firmware_dirs,
            keep: false,
            vmlinuz,
            initrd: crate::env::Initrd::File(initrd),
        },
        &spec,
        |o| {
            let mut p = o.problems();
            if o.report.done.is_some() {
                p.extend(test_check(o));
            }
            p
        },
    )?;
    eprintln!(
        "nested-run: L2 ran {:.1} s, {} problem(s)",
        outcome.wall.as_secs_f64(),
        problems.len()
    );
    forward(&spec, &outcome, &problems);
    Ok(problems.is_empty())
}

/// The fact naming an [`emulator_fault`] of L2's run.
pub const EMULATOR_FAULT_FACT: &str = "l2.emulator_fault";
/// L2's problems a rerun keeps ([`RunOutcome::problems_beyond_lost_timer`]).
pub const BEYOND_FACT: &str = "l2.beyond";

/// Why L2's run is taken to say nothing about the code under test, if it
/// is: a suspected fault of the emulated nested SVM under L1. Each case
/// requires that L2's run had no other problem
/// ([`RunOutcome::problems_beyond_lost_timer`]: QEMU's exit status and
/// stderr, kernel reports, bad taints), and L0 keeps that list from the
/// first run anyway (fact `l2.beyond`).
///
/// - RCU in L2's kernel says a timer was lost (as in TCG guests).
/// - L2 reset itself (QEMU exits 0 under `-no-reboot`: a triple fault)
///   before its DONE, with nothing on its console at warning level or
///   above (the console runs at loglevel 5): seen in 1 run of 10 of
///   `guest-driver-coherence-kvm` on 2026-12-06 before /init, the console
///   ending on the enumeration of the CXL host bridge's bus, and once in
///   the CI run on 32fe1dc during the coherence checks, 39 s in, its
///   heartbeat going until the end. Why the guest reset is not recorded;
///   the project's devices and guest driver run then, so a bug of theirs
///   that resets the guest without a word (no oops: a kernel bug usually
///   says something first) would be rerun too: once, and each rerun is
///   counted in the summary line.
pub fn emulator_fault(o: &RunOutcome) -> Option<String> {
    if !o.problems_beyond_lost_timer().is_empty() {
        return None;
    }
    if let Some(k) = crate::console::lost_timer(&o.console) {
        return Some(format!("L2: {}: {}", k.what, k.line));
    }
    let silent_reset =
        matches!(o.exit, Exit::Exited(st) if st.success()) && o.report.done.is_none();
    let when = if o.report.begin.is_none() {
        "before /init"
    } else {
        "after /init, before its DONE"
    };
    silent_reset.then(|| {
        format!("suspected: L2 reset {when}, nothing at warning level or above on its console")
    })
}

/// L1 itself hung: killed with its heartbeat silent and its QEMU busy (a
/// vCPU spinning: seen 2026-12-06, L0's QEMU with one vCPU thread at 100%
/// and the other halted, 40 s into the run, L2 booting; the idle case is
/// a lost timer, [`RunOutcome::lost_timer`]). In these tests nothing of
/// the project runs in L1's kernel: L1 runs Debian's kernel with
/// `kvm_amd`, our QEMU and the vfio-user server in user space, which
/// cannot stop a kernel's heartbeat; the emulated nested SVM is the
/// suspect. The chain, whose L1 runs the host driver, has its own rule.
pub fn l1_hung(l1: &RunOutcome) -> Option<crate::console::KernelProblem> {
    let s = l1.hung_silence().filter(|s| {
        s.cpu_share
            .is_some_and(|c| c >= crate::runner::IDLE_CPU_SHARE)
    })?;
    Some(crate::console::KernelProblem {
        line_no: s.last_line,
        what: "L1 hung, suspected the emulated nested SVM",
        line: format!(
            "no heartbeat for {:.0} s, QEMU at {:.2} CPUs",
            s.quiet.as_secs_f64(),
            s.cpu_share.unwrap_or_default()
        ),
    })
}

/// L1 itself reset (its QEMU exited 0 under `-no-reboot` before L1's
/// DONE) with no other problem: seen in the CI run on 6b4b98f, 33 s in,
/// while L2 ran under KVM in it, L1's heartbeat going until the end and
/// nothing at warning level on its console. As for [`l1_hung`], nothing of
/// the project runs in L1's kernel in these tests; the emulated nested
/// SVM is the suspect.
pub fn l1_reset(l1: &RunOutcome) -> Option<crate::console::KernelProblem> {
    let silent = matches!(l1.exit, Exit::Exited(st) if st.success())
        && l1.report.begin.is_some()
        && l1.report.done.is_none()
        && l1.problems_beyond_lost_timer().is_empty();
    silent.then(|| crate::console::KernelProblem {
        line_no: l1.console.lines().count(),
        what: "L1 reset itself, suspected the emulated nested SVM",
        line: "its QEMU exited 0 before L1's DONE, nothing at warning level".into(),
    })
}

/// The [`emulator_fault`] L1 reported of L2, at the console line where L1
/// said L2 ended (0 when it did not).
pub fn emulator_fault_of_l2(l1: &RunOutcome) -> Option<crate::console::KernelProblem> {
    let why = l1.report.fact(EMULATOR_FAULT_FACT)?;
    let line_no = l1
        .console
        .lines()
        .position(|l| l.contains("nested-run: L2 ran"))
        .map_or(0, |i| i + 1);
    Some(crate::console::KernelProblem {
        line_no,
        what: "L2 undone, suspected the emulated nested SVM",
        line: why.to_string(),
    })
}

/// L2's whole run, in seconds (L1 ran L2 when it is there).
pub const L2_WALL_FACT: &str = "l2.wall_s";
/// L2's longest heartbeat gap, in seconds.
const HEARTBEAT_GAP_FACT: &str = "l2.heartbeat_gap_s";
/// A line of L2's `qemu-state.txt`, forwarded when L1 killed L2's QEMU.
pub const QEMU_STATE_FACT: &str = "l2.qemu_state";
/// `info registers -a` of two vCPUs is about 60 lines.
const QEMU_STATE_LINES: usize = 400;

/// Prints L2's outcome as facts (see the module's documentation).
fn forward(spec: &RunSpec, outcome: &RunOutcome, problems: &[String]) {
    fact("l2.accel", &spec.machine.accel);
    fact("l2.cpu", &spec.machine.cpu);
    fact(L2_WALL_FACT, &format!("{:.1}", outcome.wall.as_secs_f64()));
    if let Some(t) = outcome.to_init {
        fact("l2.to_init_s", &format!("{:.1}", t.as_secs_f64()));
    }
    if let Some(g) = outcome.heartbeat_gap {
        fact(HEARTBEAT_GAP_FACT, &format!("{:.1}", g.as_secs_f64()));
    }
    for line in result_lines(outcome) {
        fact("l2.results", &line);
    }
    for (k, v) in &outcome.host_facts {
        fact(&format!("l2.host.{k}"), v);
    }
    for l in outcome.stderr.lines().take(40) {
        fact("l2.stderr", l);
    }
    for p in problems {
        fact("l2.problem", p);
    }
    for t in outcome.killed.iter().flat_map(|k| &k.threads) {
        fact("l2.qemu_thread_at_kill", t);
    }
    // Where L2's vCPUs were (`info cpus`, `info registers -a`): the file
    // stays in L1, which is gone when L0 reads the report.
    let state = outcome.killed.as_ref().and_then(|k| k.qemu_state.as_ref());
    for l in state
        .and_then(|f| std::fs::read_to_string(f).ok())
        .iter()
        .flat_map(|t| t.lines().take(QEMU_STATE_LINES))
    {
        fact(QEMU_STATE_FACT, l);
    }
    if let Some(why) = emulator_fault(outcome) {
        fact(EMULATOR_FAULT_FACT, &why);
    }
    for p in outcome.problems_beyond_lost_timer() {
        fact(BEYOND_FACT, &p);
    }
    if !problems.is_empty() {
        for l in outcome.console_tail(40) {
            fact("l2.console", l);
        }
    }
    let verdict = if problems.is_empty() {
        "pass".to_string()
    } else {
        format!("FAIL: {} problem(s)", problems.len())
    };
    fact("l2.verdict", &verdict);
}

/// The report as the result lines it was read from.
fn result_lines(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let json = |v: serde_json::Result<String>| v.unwrap_or_default();
    let mut v = Vec::new();
    if let Some(b) = &r.begin {
        v.push(format!("{BEGIN}{}", json(serde_json::to_string(b))));
    }
    v.extend(
        r.records
            .iter()
            .map(|rec: &Record| format!("{RESULT}{}", json(serde_json::to_string(rec)))),
    );
    if let Some(d) = &r.done {
        v.push(format!("{DONE}{}", json(serde_json::to_string(d))));
    }
    v
}

/// L2's outcome as L1 forwarded it: its report, its host facts and
/// times (no console: L1 checked it, its problems are `l2.problem`).
pub fn l2_outcome(l1: &RunOutcome) -> RunOutcome {
    let r = &l1.report;
    let results: String = r
        .facts("l2.results")
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let secs = |k: &str| {
        r.fact(k)
            .and_then(|v| v.parse::<f64>().ok())
            .map(Duration::from_secs_f64)
    };
    RunOutcome {
        exit: Exit::Exited(std::os::unix::process::ExitStatusExt::from_raw(0)),
        report: parse_results(&results),
        console: String::new(),
        stderr: r.facts("l2.stderr").join("\n"),
        kernel_problems: Vec::new(),
        to_init: secs("l2.to_init_s"),
        wall: secs(L2_WALL_FACT).unwrap_or_default(),
        dir: l1.dir.clone(),
        silence: None,
        killed: None,
        heartbeat_gap: secs(HEARTBEAT_GAP_FACT),
        host_facts: r
            .all_facts()
            .filter_map(|(k, v)| Some((k.strip_prefix("l2.host.")?.to_string(), v.to_string())))
            .collect(),
        provoked_taints: 0,
    }
}

/// Writes the L2 `qemu-state.txt` L1 forwarded into L1's run directory
/// (kept, since L2 failed); its path, or `None` when L1 sent none.
pub fn save_l2_qemu_state(l1: &RunOutcome) -> Option<std::path::PathBuf> {
    let lines = l1.report.facts(QEMU_STATE_FACT);
    if lines.is_empty() {
        return None;
    }
    let f = l1.dir.join("l2-qemu-state.txt");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&f, text).ok().map(|()| f)
}

/// L0's verdict on L2 (L1's own problems are the outcome's): L1's verdict
/// and problems, the accelerator asked for and the one L2's CPUID names,
/// and the test's check again on the forwarded outcome.
pub fn check(l1: &RunOutcome, run: &L2Run, accel: AccelChoice) -> Vec<String> {
    let r = &l1.report;
    let mut p: Vec<String> = r
        .facts("l2.problem")
        .iter()
        .map(|x| format!("L2: {x}"))
        .collect();
    match r.fact("l2.verdict") {
        Some("pass") => {}
        v => {
            // What L1 saw of L2, for the report: its console's last lines
            // and where its QEMU's threads were if L1 had to kill it.
            let mut problem = format!("L1's verdict on L2: {v:?}");
            for (what, key) in [
                ("L2 console", "l2.console"),
                ("L2's QEMU when killed", "l2.qemu_thread_at_kill"),
            ] {
                for l in r.facts(key) {
                    problem.push_str(&format!("\n      | {what}: {l}"));
                }
            }
            p.push(problem);
        }
    }
    let wanted = accel_name(accel);
    if r.fact("l2.accel") != Some(wanted) {
        p.push(format!(
            "L1 booted L2 with -accel {:?}, the test asked for {wanted}",
            r.fact("l2.accel")
        ));
    }
    let l2 = l2_outcome(l1);
    let sig = l2.report.fact(CPUID_FACT).and_then(cpuid_signature);
    if sig.as_deref() != Some(expected_signature(accel)) {
        p.push(format!(
            "L2's CPUID 0x40000000 signature is {sig:?} ({:?}), expected {:?}: L2 did not run under {wanted}",
            l2.report.fact(CPUID_FACT),
            expected_signature(accel)
        ));
    }
    if l2.report.done.is_none() {
        p.push("L2 never said DONE (nothing forwarded?)".into());
    }
    for x in run.check()(&l2) {
        let x = format!("L2, checked in L0: {x}");
        if !p.contains(&x) {
            p.push(x);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_decoded() {
        let kvm = "01 00 00 40 4b 56 4d 4b 56 4d 4b 56 4d 00 00 00";
        assert_eq!(cpuid_signature(kvm).as_deref(), Some("KVMKVMKVM"));
        let tcg = "01 00 00 40 54 43 47 54 43 47 54 43 47 54 43 47";
        assert_eq!(cpuid_signature(tcg).as_deref(), Some("TCGTCGTCGTCG"));
        assert_eq!(cpuid_signature("01 02"), None);
        assert_eq!(cpuid_signature(""), None);
        assert_eq!(expected_signature(AccelChoice::Kvm), "KVMKVMKVM");
    }

    #[test]
    fn runs_round_trip_through_their_arguments() {
        let p = bench_bw::Params {
            sizes_mib: vec![1, 4],
            repeats: 3,
            thp: true,
            no_avx: false,
        };
        for run in [L2Run::Coherence, L2Run::BenchBw(p.clone())] {
            let args = run.args();
            assert_eq!(L2Run::parse(&args[0], &p).unwrap(), run);
            let step = l1_step(&run, AccelChoice::Kvm, None);
            crate::payload::assert_valid_sh("nested-run step", &step);
            assert!(step.contains("--l2-accel kvm"), "{step}");
            assert!(step.contains(&args.join(" ")), "{step}");
        }
        assert!(L2Run::parse("nope", &p).is_err());
        let host = l1_step(
            &L2Run::Coherence,
            AccelChoice::Kvm,
            Some("host,-hypervisor"),
        );
        assert!(host.contains(" --l2-cpu 'host,-hypervisor' "), "{host}");
        crate::payload::assert_valid_sh("cpuid step", CPUID_SH);
    }

    #[test]
    fn the_l2_spec_runs_under_the_accelerator_and_reports_it() {
        let s = L2Run::Coherence.spec(AccelChoice::Kvm, None);
        assert_eq!(s.machine.accel, "kvm");
        assert_eq!(s.machine.cpu, "max,-hypervisor");
        assert_eq!(s.payload.steps[0].name, "report-accel");
        assert!(s.payload.modules.iter().any(|m| m == "cpuid"));
        assert_eq!(s.payload.name, "guest-driver-vfio-user-cxl");
        let t = L2Run::Coherence.spec(AccelChoice::Tcg, Some("host"));
        assert_eq!(
            (t.machine.accel.as_str(), t.machine.cpu.as_str()),
            ("tcg", "host")
        );
    }
}

/// L0's verdict over a real run's L1 results (testdata/, a passing
/// `guest-driver-coherence-kvm` of 2026-12-05), as recorded and with
/// one fault planted at a time.
#[cfg(test)]
mod check_tests {
    use super::*;
    use crate::nested::fixture::outcome;

    const L1_RESULTS: &str = include_str!("../testdata/coherence-kvm-l1-results.log");

    fn verdict(results: &str) -> Vec<String> {
        coherence_check(&outcome(results, "", &[]))
    }

    /// The fact line `key` = `value` of L1's step.
    fn line(key: &str, value: &str) -> String {
        format!("VFIOCXL-RESULT {{\"key\":\"{key}\",\"kind\":\"fact\",\"step\":\"nested-run\",\"value\":\"{value}\"}}")
    }

    /// The end of L2's console when it reset itself before /init
    /// (guest-driver-coherence-kvm, 2026-12-06).
    const L2_RESET_CONSOLE: &str =
        "Booting from ROM..[    0.064000] tsc: Unable to calibrate against PIT
[    0.944000] Failed to access perfctr msr (MSR c0010007 is 0)
[    2.824000] pci_bus 0000:00: Unknown NUMA node; performance will be reduced
[    3.068000] pci_bus 0000:0c: Unknown NUMA node; performance will be reduced
";

    fn l2_with_console(console: &str) -> RunOutcome {
        RunOutcome {
            console: console.into(),
            kernel_problems: crate::console::kernel_problems(console),
            ..outcome("", "", &[])
        }
    }

    #[test]
    fn a_silent_reset_is_the_emulators() {
        let why = emulator_fault(&l2_with_console(L2_RESET_CONSOLE)).expect("a fault");
        assert!(why.starts_with("suspected: L2 reset before /init"), "{why}");
        // A kernel report, a QEMU error, a failed exit or a reached /init:
        // the test's.
        let panic =
            format!("{L2_RESET_CONSOLE}[    3.1] Kernel panic - not syncing: Fatal exception\n");
        assert_eq!(emulator_fault(&l2_with_console(&panic)), None);
        let mut o = l2_with_console(L2_RESET_CONSOLE);
        o.stderr = "qemu-system-x86_64: vfio-user-cxl: something failed".into();
        assert_eq!(emulator_fault(&o), None);
        let mut o = l2_with_console(L2_RESET_CONSOLE);
        o.exit = Exit::Exited(std::os::unix::process::ExitStatusExt::from_raw(256));
        assert_eq!(emulator_fault(&o), None);
        // After /init, during the checks (CI, 2026-12-06): the same.
        let begun = format!("{BEGIN}{{\"payload\":\"x\",\"uptime\":3.0}}\n");
        let o = RunOutcome {
            console: L2_RESET_CONSOLE.into(),
            ..outcome(&begun, "", &[])
        };
        let why = emulator_fault(&o).expect("a fault");
        assert!(why.starts_with("suspected: L2 reset after /init"), "{why}");
        // A run that said DONE did not reset.
        let done = format!("{begun}{DONE}{{\"ok\":false,\"uptime\":9.0,\"tainted\":0}}\n");
        let o = RunOutcome {
            console: L2_RESET_CONSOLE.into(),
            ..outcome(&done, "", &[])
        };
        assert_eq!(emulator_fault(&o), None);
    }

    #[test]
    fn an_l1_that_reset_itself_silently_is_taken_for_the_emulators() {
        let begun = format!("{BEGIN}{{\"payload\":\"x\",\"uptime\":3.0}}\n");
        let o = outcome(&begun, "", &[]);
        assert!(l1_reset(&o).is_some());
        // With DONE, before /init, or with a QEMU error: not this.
        let done = format!("{begun}{DONE}{{\"ok\":false,\"uptime\":9.0,\"tainted\":0}}\n");
        assert!(l1_reset(&outcome(&done, "", &[])).is_none());
        assert!(l1_reset(&outcome("", "", &[])).is_none());
        let err = outcome(&begun, "qemu-system-x86_64: something failed", &[]);
        assert!(l1_reset(&err).is_none());
    }

    #[test]
    fn an_l1_silent_while_busy_is_taken_for_the_emulators() {
        let silent = |exit: Exit, quiet: u64| RunOutcome {
            exit,
            silence: Some(crate::runner::Silence {
                quiet: Duration::from_secs(quiet),
                cpu_share: Some(1.0),
                last_line: 30,
            }),
            ..outcome("", "", &[])
        };
        let k = l1_hung(&silent(Exit::Silent(Duration::from_secs(190)), 150)).expect("hung");
        assert_eq!(k.line_no, 30);
        assert!(k.line.starts_with("no heartbeat for 150 s"), "{}", k.line);
        assert!(l1_hung(&silent(Exit::TimedOut(Duration::from_secs(480)), 200)).is_some());
        // Alive until the end, or not killed: not this.
        assert!(l1_hung(&silent(Exit::TimedOut(Duration::from_secs(480)), 2)).is_none());
        let exited = Exit::Exited(std::os::unix::process::ExitStatusExt::from_raw(0));
        assert!(l1_hung(&silent(exited, 150)).is_none());
    }

    #[test]
    fn a_qemu_stuck_after_sigkill_is_the_tests() {
        let begun = format!("{BEGIN}{{\"payload\":\"x\",\"uptime\":3.0}}\n");
        let stuck = RunOutcome {
            exit: Exit::TimedOut(Duration::from_secs(300)),
            killed: Some(crate::runner::Killed {
                threads: Vec::new(),
                survived: Some(vec!["thread 9 (CPU 0/KVM) state R on CPU 1".into()]),
                qemu_state: None,
                monitor_stuck: false,
            }),
            ..outcome(&begun, "", &[])
        };
        assert_eq!(emulator_fault(&stuck), None);
        // L0 finds L1's verdict at the line where L1 said L2 ended.
        let l1 = RunOutcome {
            console: "vfiocxl: step nested-run\nnested-run: L2 ran 22.4 s, 2 problem(s)\n".into(),
            ..outcome(
                &format!("{}\n", line(EMULATOR_FAULT_FACT, "L2 reset")),
                "",
                &[],
            )
        };
        let k = emulator_fault_of_l2(&l1).expect("reported");
        assert_eq!((k.line_no, k.line.as_str()), (2, "L2 reset"));
        assert_eq!(emulator_fault_of_l2(&outcome(L1_RESULTS, "", &[])), None);
    }

    #[test]
    fn the_recorded_run_passes() {
        assert_eq!(verdict(L1_RESULTS), Vec::<String>::new());
        let l2 = l2_outcome(&outcome(L1_RESULTS, "", &[]));
        assert_eq!(l2.report.steps_run(), 7);
        assert_eq!(l2.host_fact("file.counter"), Some("1200000"));
    }

    /// L2 under TCG while L1 says kvm (a silent fallback): its CPUID
    /// names TCG.
    #[test]
    fn an_l2_that_ran_tcg_fails_by_its_cpuid() {
        let kvm = "01 00 00 40 4b 56 4d 4b 56 4d 4b 56 4d 00 00 00";
        assert!(L1_RESULTS.contains(kvm));
        let tcg = L1_RESULTS.replace(kvm, "01 00 00 40 54 43 47 54 43 47 54 43 47 54 43 47");
        assert_eq!(
            verdict(&tcg),
            ["L2's CPUID 0x40000000 signature is Some(\"TCGTCGTCGTCG\") (Some(\"01 00 00 40 54 43 47 54 43 47 54 43 47 54 43 47\")), expected \"KVMKVMKVM\": L2 did not run under kvm"]
        );
        // No CPUID report at all fails too.
        let none: String = L1_RESULTS
            .lines()
            .filter(|l| !l.contains("cpuid.40000000"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(verdict(&none)[0].contains("signature is None"));
        // And L1's own word for another accelerator.
        let asked = L1_RESULTS.replace(&line("l2.accel", "kvm"), &line("l2.accel", "tcg"));
        assert_eq!(
            verdict(&asked),
            ["L1 booted L2 with -accel Some(\"tcg\"), the test asked for kvm"]
        );
    }

    /// What L1 found in the server's memory file after L2 (a word that
    /// lost the guest's pattern, a counter short) fails in L0, whatever
    /// L1's verdict said.
    #[test]
    fn a_corrupt_server_file_fails_in_l0() {
        let bad = L1_RESULTS
            .replace(
                &line("l2.host.file.bad", "0"),
                &line("l2.host.file.bad", "1"),
            )
            .replace(
                &line("l2.host.file.checksum", "0x214ad9f33384e74b"),
                &line("l2.host.file.checksum", "0x214ad9f33384e74c"),
            );
        let p = verdict(&bad);
        assert!(
            p.iter()
                .any(|m| m.contains("accel0.raw: Some(\"1\") words lack the writer's pattern")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains(
                "checksum: guest Some(\"0x214ad9f33384e74b\"), host Some(\"0x214ad9f33384e74c\")"
            )),
            "{p:?}"
        );
        assert!(
            p.iter().all(|m| m.starts_with("L2, checked in L0: ")),
            "{p:?}"
        );
    }

    /// L1 died before forwarding anything: no verdict, no report.
    #[test]
    fn a_silent_l1_fails() {
        let p = verdict("");
        assert!(p.contains(&"L1's verdict on L2: None".to_string()), "{p:?}");
        assert!(p.iter().any(|m| m.contains("never said DONE")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("coherence checks ran []")),
            "{p:?}"
        );
        // L1's own problems and verdict are L0's.
        let failed = format!(
            "{}{}\n",
            L1_RESULTS.replace(
                &line("l2.verdict", "pass"),
                &line("l2.verdict", "FAIL: 1 problem(s)")
            ),
            line("l2.problem", "step \\\"coherence\\\" failed")
        );
        let p = verdict(&failed);
        assert_eq!(
            p,
            [
                "L2: step \"coherence\" failed",
                "L1's verdict on L2: Some(\"FAIL: 1 problem(s)\")"
            ]
        );
    }

    /// A failed L2's console and its QEMU's threads reach L0's report.
    #[test]
    fn a_failed_l2_is_shown_with_its_console_and_threads() {
        let failed = format!(
            "{}{}\n{}\n{}\n",
            L1_RESULTS.replace(&line("l2.verdict", "pass"), &line("l2.verdict", "FAIL")),
            line("l2.console", "vfiocxl: step coherence"),
            line(
                "l2.qemu_thread_at_kill",
                "thread 7 (CPU 0/KVM) state R on CPU 1"
            ),
            line("l2.problem", "timed out"),
        );
        let p = verdict(&failed);
        assert!(
            p.contains(
                &"L1's verdict on L2: Some(\"FAIL\")\n      | L2 console: vfiocxl: step coherence\n      \
                  | L2's QEMU when killed: thread 7 (CPU 0/KVM) state R on CPU 1"
                    .to_string()
            ),
            "{p:?}"
        );
        // L2's qemu-state.txt is written into L1's run directory.
        let dir = tempfile::tempdir().unwrap();
        let with_state = format!(
            "{failed}{}\n{}\n",
            line(QEMU_STATE_FACT, "CPU#0"),
            line(QEMU_STATE_FACT, "RIP=ffffffff81000000")
        );
        let l1 = RunOutcome {
            dir: dir.path().to_path_buf(),
            ..outcome(&with_state, "", &[])
        };
        let f = save_l2_qemu_state(&l1).expect("written");
        assert_eq!(f, dir.path().join("l2-qemu-state.txt"));
        assert_eq!(
            std::fs::read_to_string(f).unwrap(),
            "CPU#0\nRIP=ffffffff81000000\n"
        );
    }

    /// The forwarded result lines are the report L2 gave.
    #[test]
    fn results_round_trip_through_the_forwarding() {
        let l2 = l2_outcome(&outcome(L1_RESULTS, "", &[]));
        let again: String = result_lines(&l2).iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_results(&again), l2.report);
    }
}
