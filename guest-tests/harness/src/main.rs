//! `guest-harness`: the command line over the library (docs/guest-harness.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use guest_harness::cli::{
    BenchBwCommand, BenchFaultArgs, BenchStartupArgs, ChainArgs, Cli, Command, DemoArgs,
    InitramfsArgs, NestedRunArgs, RunArgs, VmTestArgs,
};
use guest_harness::env::{Env, GuestKernel, RunSpec};
use guest_harness::error::{Error, Result};
use guest_harness::payload::Payload;
use guest_harness::qemu::Topology;
use guest_harness::runner::{Exit, RunOutcome};
use guest_harness::{nested_run, tools, vmtests};

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn print_outcome(name: &str, outcome: &RunOutcome, problems: &[String], verbose: bool) {
    let init = outcome.to_init.map(secs).unwrap_or_else(|| "never".into());
    let guest_init = outcome
        .report
        .begin
        .as_ref()
        .map(|b| format!("{:.1} s", b.uptime))
        .unwrap_or_else(|| "-".into());
    let exit = match &outcome.exit {
        Exit::Exited(s) => format!("{s}"),
        Exit::KilledAfterDone => "killed after DONE".into(),
        Exit::TimedOut(_) => "TIMEOUT".into(),
        Exit::Silent(_) => "killed (heartbeat silent)".into(),
    };
    let gap = outcome.heartbeat_gap.map_or_else(|| "-".into(), secs);
    println!(
        "  {name}: init reached after {init} (guest uptime {guest_init}), whole run {}, longest heartbeat gap {gap}, qemu {exit}",
        secs(outcome.wall)
    );
    if outcome.report.fact(nested_run::L2_WALL_FACT).is_some() {
        let l2 = nested_run::l2_outcome(outcome);
        let init = l2.to_init.map(secs).unwrap_or_else(|| "never".into());
        let gap = l2.heartbeat_gap.map_or_else(|| "-".into(), secs);
        println!(
            "  {name} L2 (in L1): init reached after {init}, whole run {}, longest heartbeat gap {gap}",
            secs(l2.wall)
        );
    }
    if verbose {
        println!("  --- console ---");
        for l in outcome.console.lines() {
            println!("  | {}", l.trim_end_matches('\r'));
        }
    }
    if !problems.is_empty() {
        for p in problems {
            println!("  problem: {p}");
        }
        println!("  last console lines:");
        for l in outcome.console_tail(25) {
            println!("  | {l}");
        }
        if let Some(k) = &outcome.killed {
            println!("  qemu's threads when it was killed:");
            for t in &k.threads {
                println!("  | {t}");
            }
            if let Some(state) = &k.qemu_state {
                println!(
                    "  qemu's vCPUs then (info cpus, info registers -a): {}",
                    state.display()
                );
            }
        }
        if let Some(f) = nested_run::save_l2_qemu_state(outcome) {
            println!(
                "  L2's QEMU's vCPUs when L1 killed it (info cpus, info registers -a): {}",
                f.display()
            );
        }
        if !outcome.stderr.trim().is_empty() {
            println!("  qemu stderr:");
            for l in outcome.stderr.lines().take(20) {
                println!("  | {l}");
            }
        }
        println!("  run directory (kept): {}", outcome.dir.display());
    }
}

fn vm_test(cli: &VmTestArgs) -> Result<bool> {
    let tests = if cli.names.is_empty() {
        vmtests::all()
    } else {
        cli.names
            .iter()
            .map(|n| {
                vmtests::find(n).ok_or_else(|| {
                    Error::msg(format!("no VM test {n:?}; `guest-harness list` shows them"))
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let start = Instant::now();
    let env = Env::prepare(&cli.env.options_with(&cli.debug))?;
    let debug = env
        .debug_kernel
        .as_ref()
        .map(|k| format!(", debug kernel {}", k.abi()))
        .unwrap_or_default();
    println!(
        "vm-tests: kernel {}{debug}, qemu {} (ready in {})",
        env.kernel.abi(),
        env.qemu.display(),
        secs(start.elapsed())
    );
    let (mut passed, mut failed, mut reruns) = (0, 0, 0);
    for t in &tests {
        println!("vm-test {} ...", t.name);
        let (problems, reran) = vmtests::decide(|previous| {
            if let Some(lost) = previous {
                let place = match lost.line_no {
                    0 => String::new(),
                    n => format!(", console line {n}"),
                };
                println!(
                    "vm-test {}: inconclusive ({}{place}: {}); running it once more",
                    t.name, lost.what, lost.line
                );
            }
            run_vm_test(&env, t, cli.verbose)
        });
        reruns += usize::from(reran.is_some());
        if problems.is_empty() {
            passed += 1;
            println!("vm-test {}: PASS", t.name);
        } else {
            failed += 1;
            for p in problems
                .iter()
                .filter(|p| p.starts_with("the harness") || p.starts_with("first run: "))
            {
                println!("  problem: {p}");
            }
            println!("vm-test {}: FAIL", t.name);
        }
    }
    let reran = if reruns > 0 {
        format!(" ({reruns} run again after an emulator fault)")
    } else {
        String::new()
    };
    println!("vm-tests: {passed} passed, {failed} failed{reran}");
    Ok(failed == 0)
}

fn run_vm_test(env: &Env, t: &vmtests::VmTest, verbose: bool) -> vmtests::RunVerdict {
    match env.run_checked(&(t.spec)(), |outcome| t.problems(outcome)) {
        Ok((outcome, problems)) => {
            print_outcome(t.name, &outcome, &problems, verbose);
            // A nested-KVM test whose L1 kernel hit the emulator fault
            // runs once more, as after a lost timer: only QEMU's own
            // trouble from the first run is kept.
            let kvm = t.name.ends_with("-kvm");
            let l1_fault = kvm
                .then(|| guest_harness::console::nested_svm_fault(&outcome.console))
                .flatten();
            let nested = l1_fault.clone().or_else(|| {
                kvm.then(|| {
                    nested_run::emulator_fault_of_l2(&outcome)
                        .or_else(|| nested_run::l1_hung(&outcome))
                        .or_else(|| nested_run::l1_reset(&outcome))
                })
                .flatten()
            });
            // A rerun keeps L1's QEMU's errors (after L1's own kernel
            // fault), or all of L1's problems and L2's own beyond the
            // fault (forwarded by L1).
            let beyond = match nested {
                Some(_) => {
                    let mut b = if l1_fault.is_some() {
                        guest_harness::runner::stderr_problems(&outcome.stderr)
                    } else {
                        outcome.problems_beyond_lost_timer()
                    };
                    b.extend(
                        outcome
                            .report
                            .facts(nested_run::BEYOND_FACT)
                            .iter()
                            .map(|p| format!("L2: {p}")),
                    );
                    b
                }
                None => outcome.problems_beyond_lost_timer(),
            };
            let lost_timer = outcome
                .lost_timer()
                .or(nested)
                .or_else(|| vmtests::inconclusive(&problems));
            vmtests::RunVerdict {
                problems,
                lost_timer,
                beyond_lost_timer: beyond,
            }
        }
        Err(e) => vmtests::RunVerdict {
            problems: vec![format!("the harness could not run it: {e}")],
            lost_timer: None,
            beyond_lost_timer: Vec::new(),
        },
    }
}

fn payload_of(p: &str) -> Result<Payload> {
    if let Some(t) = vmtests::find(p) {
        return Ok((t.spec)().payload);
    }
    Payload::from_toml(&tools::read_to_string(std::path::Path::new(p))?).map_err(|e| e.context(p))
}

fn topology_of(cli: &RunArgs) -> Result<Topology> {
    let name = cli.topology.as_deref().unwrap_or(&cli.payload);
    Ok(match name {
        "none" => Topology::none(),
        "single-type3" => Topology::single_type3(256),
        n => match vmtests::find(n) {
            Some(t) => (t.spec)().topology,
            None if cli.topology.is_none() => Topology::none(),
            None => Topology::from_toml(&tools::read_to_string(std::path::Path::new(n))?)
                .map_err(|e| e.context(n))?,
        },
    })
}

fn run_one(cli: &RunArgs) -> Result<bool> {
    let test = vmtests::find(&cli.payload);
    let mut spec = match test {
        // A VM test's whole spec: machine (e.g. the IOMMU), timeout, host
        // hooks (e.g. memory patterns) as well.
        Some(t) => {
            let mut spec = (t.spec)();
            if cli.topology.is_some() {
                spec.topology = topology_of(cli)?;
            }
            spec
        }
        None => RunSpec::new(topology_of(cli)?, payload_of(&cli.payload)?),
    };
    match cli.kernel {
        Some(GuestKernel::Debug) if spec.kernel != GuestKernel::Debug => {
            spec = spec.on_debug_kernel()
        }
        Some(k) => spec.kernel = k,
        None => {}
    }
    spec.payload.cmdline.extend(cli.cmdline.iter().cloned());
    spec.topology.devices.extend(cli.devices.iter().cloned());
    if let Some(t) = cli.timeout {
        spec.timeout = Duration::from_secs(t);
    }
    if let Some(m) = cli.memory {
        spec.machine.memory_mib = m;
    }
    if let Some(n) = cli.smp {
        spec.machine.smp = n;
    }
    spec.extra_args.extend(cli.qemu_args.iter().cloned());
    let env = Env::prepare(&cli.env.options_with(&cli.debug))?;
    let outcome = env.run(&spec)?;
    let problems = match test {
        Some(t) => t.problems(&outcome),
        None => outcome.problems(),
    };
    if cli.json {
        let doc = serde_json::json!({
            "payload": spec.payload.name,
            "ok": problems.is_empty(),
            "problems": problems,
            "init_s": outcome.to_init.map(|d| d.as_secs_f64()),
            "guest_init_uptime_s": outcome.report.begin.as_ref().map(|b| b.uptime),
            "wall_s": outcome.wall.as_secs_f64(),
            "begin": outcome.report.begin,
            "records": outcome.report.records,
            "host_facts": outcome.host_facts,
            "done": outcome.report.done,
            "dir": outcome.dir,
        });
        println!("{doc:#}");
    } else {
        print_outcome(&spec.payload.name, &outcome, &problems, cli.verbose);
        for (k, v) in outcome.report.all_facts() {
            println!("  fact {k} = {v}");
        }
        for (k, v) in &outcome.host_facts {
            println!("  host fact {k} = {v}");
        }
        println!(
            "run {}: {}",
            spec.payload.name,
            if problems.is_empty() { "PASS" } else { "FAIL" }
        );
    }
    Ok(problems.is_empty())
}

fn initramfs(cli: &InitramfsArgs) -> Result<bool> {
    let out = &cli.output;
    let payload = payload_of(&cli.payload)?;
    let mut opts = guest_harness::env::EnvOptions {
        // Building the archive needs no QEMU.
        qemu: Some(PathBuf::from("/bin/true")),
        firmware_dirs: Some(Vec::new()),
        debug_kernel: cli.debug.debug_kernel.clone(),
        debug_host_driver: cli.debug.debug_host_driver.clone(),
        ..Default::default()
    };
    cli.kernel_source.apply(&mut opts);
    let env = Env::prepare(&opts)?;
    let kernel = env.kernel_tree(cli.kernel)?;
    let ir = guest_harness::payload::build_initramfs(&payload, kernel, &env.busybox)?;
    let bytes = ir.archive.to_bytes();
    std::fs::write(out, &bytes)
        .map_err(|e| Error::io(format!("cannot write {}", out.display()), e))?;
    println!(
        "{}: {} entries, {} bytes; modules in load order: {}",
        out.display(),
        ir.archive.len(),
        bytes.len(),
        ir.modules.join(" ")
    );
    Ok(true)
}

fn bench_fault(cli: &BenchFaultArgs) -> Result<bool> {
    use guest_harness::bench;
    let sizes = cli
        .sizes
        .clone()
        .unwrap_or_else(|| bench::DEFAULT_SIZES_MIB.to_vec());
    let env = Env::prepare(&cli.env.options())?;
    let mut all = Vec::new();
    for size in sizes {
        println!("bench-fault {size} MiB ...");
        let outcome = env.run(&bench::spec(size))?;
        let problems = outcome.problems();
        if !problems.is_empty() {
            print_outcome(
                &format!("bench-fault-{size}"),
                &outcome,
                &problems,
                cli.verbose,
            );
            return Ok(false);
        }
        let f = bench::Figures::from_report(&outcome.report)?;
        println!(
            "bench-fault {} (boot to exit {})",
            bench::describe(&f),
            secs(outcome.wall)
        );
        if let Some(p) = f.pass("4k") {
            println!(
                "bench-fault {} MiB: mappings look {}",
                size,
                bench::mapping_kind(p)
            );
        }
        all.push(f);
    }
    if let (Some(a), Some(b)) = (all.first(), all.last()) {
        if all.len() > 1 {
            for (pass, what) in [
                ("2m", "mmap + first touch of every 2 MiB"),
                ("2m-warm", "the same, memory already populated on the host"),
                (
                    "1g-warm",
                    "mmap + first touch of every 1 GiB, populated; goal <= 2",
                ),
            ] {
                if let (Some(pa), Some(pb)) = (a.pass(pass), b.pass(pass)) {
                    let t = |p: &bench::Pass| (p.mmap_us + p.touch_us).max(1) as f64;
                    println!(
                        "bench-fault ratio {}/{} MiB, {pass} ({what}): {:.2}x (region {}x larger; faults {} vs {})",
                        b.size >> 20,
                        a.size >> 20,
                        t(pb) / t(pa),
                        b.size / a.size.max(1),
                        pb.faults,
                        pa.faults
                    );
                }
            }
        }
    }
    Ok(true)
}

fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

fn demo(cli: &DemoArgs) -> Result<bool> {
    use guest_harness::demo;
    let params = cli.bench.params();
    let start = Instant::now();
    let env = Env::prepare(&cli.env.options())?;
    println!(
        "demo: kernel {} ready in {}; booting one guest under TCG (vfio-user-cxl server + cxl-type2-ref, cxl-type3): \
         bind, type-3 region, topology, coherence suite, bandwidth (about 30 s) ...",
        env.kernel.abi(),
        secs(start.elapsed())
    );
    let outcome = env.run(&demo::spec(&params))?;
    let problems = demo::problems(&outcome);
    println!(
        "demo: guest finished in {} ({})",
        secs(outcome.wall),
        if problems.is_empty() {
            "all checks passed"
        } else {
            "FAILED"
        }
    );
    if !problems.is_empty() {
        print_outcome("demo", &outcome, &problems, cli.verbose);
    }
    let (text, doc) = demo::report(&outcome, &problems);
    match &cli.report {
        Some(path) => write_file(path, &text)?,
        None => print!("{text}"),
    }
    if let Some(path) = &cli.json_out {
        write_file(path, &format!("{doc:#}\n"))?;
    }
    Ok(problems.is_empty())
}

fn bench_startup(cli: &BenchStartupArgs) -> Result<bool> {
    use guest_harness::bench_startup;
    let env = Env::prepare(&cli.env.options())?;
    for line in bench_startup::describe(&bench_startup::run(&env, cli.repeats)?) {
        println!("{line}");
    }
    Ok(true)
}

fn bench_bw(cli: &BenchBwCommand) -> Result<bool> {
    use guest_harness::bench_bw;
    let params = cli.bench.params();
    let env = Env::prepare(&cli.env.options())?;
    println!(
        "bench-bw: booting (sizes {:?} MiB, {} repeats) ...",
        params.sizes_mib, params.repeats
    );
    let outcome = env.run(&bench_bw::spec(&params))?;
    let problems = outcome.problems();
    if !problems.is_empty() {
        print_outcome("bench-bw", &outcome, &problems, cli.verbose);
        return Ok(false);
    }
    let f = bench_bw::Figures::from_report(&outcome.report)?;
    for l in f.describe() {
        println!("bench-bw {l}");
    }
    println!("bench-bw: boot to exit {}", secs(outcome.wall));
    let mut doc = f.to_json();
    let ok = f.direct_ratio_met();
    if cli.kvm {
        println!(
            "bench-bw --kvm: booting L1 (TCG, kvm_amd) to run the same boot as L2 under KVM ..."
        );
        let spec = nested_run::bench_spec(&env, &params, cli.l2_cpu.as_deref())?;
        let l1 = env.run(&spec)?;
        let run = nested_run::L2Run::BenchBw(params.clone());
        let mut problems = l1.problems();
        problems.extend(nested_run::check(
            &l1,
            &run,
            guest_harness::hw::AccelChoice::Kvm,
        ));
        if !problems.is_empty() {
            print_outcome("bench-bw --kvm (L1)", &l1, &problems, cli.verbose);
            for l in l1.report.facts("l2.console") {
                println!("  L2 | {l}");
            }
            return Ok(false);
        }
        let l2 = nested_run::l2_outcome(&l1);
        let k = bench_bw::Figures::from_report(&l2.report)?;
        for l in k.describe() {
            println!("bench-bw kvm {l}");
        }
        println!(
            "bench-bw --kvm: L1 boot to exit {}, L2 under KVM in L1 {}",
            secs(l1.wall),
            secs(l2.wall)
        );
        for l in bench_bw::side_by_side(&f, &k) {
            println!("bench-bw {l}");
        }
        // Issue 5's b/a >= 0.9 is the TCG run's: under KVM inside a TCG
        // L1 both copies are TCG's emulation of SVM guest mode, so the
        // ratio is reported, not required (docs/benchmarks.md).
        println!("bench-bw --kvm: the KVM ratios are reported, not required (docs/benchmarks.md)");
        doc = serde_json::json!({"tcg": doc, "kvm_in_tcg_l1": k.to_json()});
    }
    if let Some(path) = &cli.json_out {
        write_file(path, &format!("{doc:#}\n"))?;
    }
    println!("bench-bw json: {doc}");
    Ok(ok)
}

/// `nested-run`: L1's side of [`guest_harness::nested_run`].
fn nested_run(cli: &NestedRunArgs) -> Result<bool> {
    use guest_harness::nested_run::l1_main;
    let run = cli.l2_run()?;
    let qemu = cli
        .qemu
        .qemu
        .clone()
        .ok_or_else(|| Error::msg("nested-run needs --qemu"))?;
    l1_main(
        &run,
        cli.l2_accel.unwrap_or(guest_harness::hw::AccelChoice::Kvm),
        cli.l2_cpu.as_deref(),
        &qemu,
        &cli.qemu.firmware_dirs,
        &cli.vmlinuz,
        &cli.initrd,
    )
}

fn chain(cli: &ChainArgs) -> Result<bool> {
    let env = Env::prepare(&cli.env.options_with(&cli.debug))?;
    let cfg = guest_harness::nested::ChainConfig {
        accel: cli
            .l2_accel
            .unwrap_or(guest_harness::nested::L2_ACCEL_DEFAULT),
        iommu: if cli.iommufd {
            vfio_cxl_cmdline::layout::Iommu::Iommufd
        } else {
            vfio_cxl_cmdline::layout::Iommu::Container
        },
    };
    guest_harness::nested::run(&env, &cfg)
}

fn main() -> ExitCode {
    // clap answers --help and bad usage (exit status 2) itself.
    let result = match Cli::parse().command {
        Command::List => {
            for t in vmtests::all() {
                println!("{:<28} {}", t.name, t.about);
            }
            Ok(true)
        }
        Command::VmTest(a) => vm_test(&a),
        Command::Run(a) => run_one(&a),
        Command::Initramfs(a) => initramfs(&a),
        Command::BenchFault(a) => bench_fault(&a),
        Command::BenchBw(a) => bench_bw(&a),
        Command::BenchStartup(a) => bench_startup(&a),
        Command::NestedRun(a) => nested_run(&a),
        Command::Demo(a) => demo(&a),
        Command::Chain(a) => chain(&a),
        Command::HwTest(a) => return ExitCode::from(guest_harness::hw::main(a)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("guest-harness: error: {e}");
            ExitCode::from(2)
        }
    }
}
