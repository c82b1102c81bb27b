//! `guest-harness`: the command line over the library (docs/guest-harness.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use guest_harness::env::{Env, EnvOptions, GuestKernel, RunSpec};
use guest_harness::error::{Error, Result};
use guest_harness::payload::Payload;
use guest_harness::qemu::Topology;
use guest_harness::runner::{Exit, RunOutcome};
use guest_harness::{tools, vmtests};

const USAGE: &str = "\
usage: guest-harness <command> [options]

commands:
  list                          list the VM tests
  vm-test [NAME...]             run the VM tests (all, or the named ones);
                                ends with `vm-tests: N passed, M failed`
  run --payload P [--topology T] [run options]
                                one boot with a payload and a topology:
                                P is a VM test name (its payload) or a TOML file,
                                T is none, single-type3, a VM test name or a TOML file
                                (default: the test's topology, else none)
  initramfs --payload P -o FILE build the initramfs only
  nested-run coherence|bench-bw --vmlinuz K --initrd I [--l2-accel kvm|tcg] [--l2-cpu CPU] [bench-bw options]
                                (inside an L1 guest) boot L2 from prebuilt files under KVM
                                (default) and forward its results as fact lines (nested_run.rs)
  chain [--l2-accel kvm|tcg] [--iommufd]
                                the nested chain: L1 runs hw-test with -device vfio-cxl
                                on cxl-accel, L2 the coherence checks under KVM in L1
                                (default) or TCG; --iommufd: L1 on the debug test kernel,
                                its QEMU on iommufd and the VFIO cdev (docs/nested-chain.md)
  hw-test --bdf BDF [...]       the coherence suite on a real device bound to vfio-cxl-pci
                                (`hw-test --help`, docs/real-hardware.md)
  bench-fault [--sizes MIB,MIB]  the fault benchmark: one boot per cxl-accel memory size
                                (default 256,4096), mmap + first touch per 2 MiB and per
                                4 KiB; prints the figures and the ratio of the last to the first
  bench-bw [--sizes MIB,..] [--repeats N] [--thp] [--kvm [--l2-cpu CPU]] [--json-out FILE]
                                the bandwidth benchmark: one boot, memcpy to guest RAM, the
                                vfio-user-cxl window and a cxl-type3 window; medians, b/a, c/a;
                                --kvm: then the same boot as L2 under KVM in a TCG L1, side by side
                                (--l2-cpu: L2's -cpu instead of max,-hypervisor; docs/install.md)
  bench-startup [--repeats N]   the start-up benchmark: QEMU start to first instruction and peak
                                RSS, vfio-user-cxl against vfio-user-pci on the same server, at
                                256 MiB and 128 GiB (default 7 rounds); medians and ratios
  demo [--report FILE] [--json-out FILE] [bench-bw options]
                                the main job's boot: topology, coherence suite, bandwidth;
                                prints (or writes) the report; exit 1 when something failed

environment options (all commands that boot):
  --qemu PATH          QEMU binary (default: $VFIO_CXL_QEMU, else `cargo xtask qemu-path`)
  --firmware-dir DIR   a -L directory; repeatable (default: `cargo xtask qemu-path --firmware-args`)
  --cache DIR          cache directory (default: as `cargo xtask cache-dir`)
  --linux-debs DIR     the kernel .debs (default: <cache>/sources/linux/<upstream of pins.toml>)
  --abi ABI            kernel ABI (default: linux.abi of pins.toml)
  --kernel-deb FILE    use this linux-binary/-base/-modules .deb; repeatable (default: found in --linux-debs)
  --debug-kernel DIR   the debug test kernel, for the tests named NAME@debug and `run --kernel debug`
                       (`cargo xtask build-test-kernel --print-dir`; cargo xtask vm-test passes it)
  --debug-host-driver DIR
                       the host driver built for it (default: target/debug-kernel/host-driver)
  --keep               keep every run directory (failed runs are always kept)
  -v, --verbose        print the whole console of every run

run options:
  --timeout SECONDS    hard timeout (default 180)
  --device ARGS        an extra -device; repeatable
  --qemu-arg ARG       an extra QEMU argument; repeatable
  --cmdline WORD       an extra kernel command line word; repeatable
  --memory MIB, --smp N
  --kernel debian|debug
                       the kernel to boot (default: the test's, else debian)
  --json               print the results as JSON
";

#[derive(Debug, Default)]
struct Cli {
    command: String,
    names: Vec<String>,
    env: EnvOptions,
    verbose: bool,
    payload: Option<String>,
    topology: Option<String>,
    output: Option<PathBuf>,
    timeout: Option<u64>,
    devices: Vec<String>,
    qemu_args: Vec<String>,
    cmdline: Vec<String>,
    memory: Option<u64>,
    smp: Option<u32>,
    json: bool,
    sizes: Option<String>,
    repeats: Option<u32>,
    json_out: Option<PathBuf>,
    thp: bool,
    report: Option<PathBuf>,
    l2_accel: Option<guest_harness::hw::AccelChoice>,
    kernel: Option<GuestKernel>,
    kvm: bool,
    iommufd: bool,
    l2_cpu: Option<String>,
    vmlinuz: Option<PathBuf>,
    initrd: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Cli> {
    let mut cli = Cli::default();
    let mut it = args.iter();
    cli.command = it
        .next()
        .cloned()
        .ok_or_else(|| Error::msg(format!("no command given\n{USAGE}")))?;
    let num = |flag: &str, v: String| -> Result<u64> {
        v.parse()
            .map_err(|_| Error::msg(format!("{flag}: {v:?} is not a number")))
    };
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Error::msg(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--qemu" => cli.env.qemu = Some(value()?.into()),
            "--firmware-dir" => cli
                .env
                .firmware_dirs
                .get_or_insert_with(Vec::new)
                .push(value()?.into()),
            "--cache" => cli.env.cache = Some(value()?.into()),
            "--linux-debs" => cli.env.linux_debs = Some(value()?.into()),
            "--abi" => cli.env.abi = Some(value()?),
            "--kernel-deb" => cli.env.kernel_debs.push(value()?.into()),
            "--debug-kernel" => cli.env.debug_kernel = Some(value()?.into()),
            "--debug-host-driver" => cli.env.debug_host_driver = Some(value()?.into()),
            "--kernel" => cli.kernel = Some(GuestKernel::parse(&value()?)?),
            "--keep" => cli.env.keep = true,
            "-v" | "--verbose" => cli.verbose = true,
            "--payload" => cli.payload = Some(value()?),
            "--topology" => cli.topology = Some(value()?),
            "-o" | "--output" => cli.output = Some(value()?.into()),
            "--timeout" => cli.timeout = Some(num(arg, value()?)?),
            "--device" => cli.devices.push(value()?),
            "--qemu-arg" => cli.qemu_args.push(value()?),
            "--cmdline" => cli.cmdline.push(value()?),
            "--memory" => cli.memory = Some(num(arg, value()?)?),
            "--smp" => cli.smp = Some(num(arg, value()?)? as u32),
            "--json" => cli.json = true,
            "--sizes" => cli.sizes = Some(value()?),
            "--repeats" => cli.repeats = Some(num(arg, value()?)? as u32),
            "--json-out" => cli.json_out = Some(value()?.into()),
            "--thp" => cli.thp = true,
            "--report" => cli.report = Some(value()?.into()),
            "--kvm" => cli.kvm = true,
            "--iommufd" => cli.iommufd = true,
            "--l2-cpu" => cli.l2_cpu = Some(value()?),
            "--vmlinuz" => cli.vmlinuz = Some(value()?.into()),
            "--initrd" => cli.initrd = Some(value()?.into()),
            "--l2-accel" => {
                cli.l2_accel = Some(match value()?.as_str() {
                    "kvm" => guest_harness::hw::AccelChoice::Kvm,
                    "tcg" => guest_harness::hw::AccelChoice::Tcg,
                    v => return Err(Error::msg(format!("--l2-accel {v:?}: kvm or tcg"))),
                })
            }
            "-h" | "--help" => cli.command = "help".into(),
            other if other.starts_with('-') => {
                return Err(Error::msg(format!("unknown option {other}\n{USAGE}")))
            }
            name => cli.names.push(name.to_string()),
        }
    }
    Ok(cli)
}

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
    };
    println!(
        "  {name}: init reached after {init} (guest uptime {guest_init}), whole run {}, qemu {exit}",
        secs(outcome.wall)
    );
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
        if !outcome.stderr.trim().is_empty() {
            println!("  qemu stderr:");
            for l in outcome.stderr.lines().take(20) {
                println!("  | {l}");
            }
        }
        println!("  run directory (kept): {}", outcome.dir.display());
    }
}

fn vm_test(cli: &Cli) -> Result<bool> {
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
    let env = Env::prepare(&cli.env)?;
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
                println!(
                    "vm-test {}: inconclusive, an emulator fault ({}, console line {}: {}); running it once more",
                    t.name, lost.what, lost.line_no, lost.line
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
            let nested = t
                .name
                .ends_with("-kvm")
                .then(|| guest_harness::console::nested_svm_fault(&outcome.console))
                .flatten();
            let beyond = match nested {
                Some(_) => guest_harness::runner::stderr_problems(&outcome.stderr),
                None => outcome.problems_beyond_lost_timer(),
            };
            vmtests::RunVerdict {
                problems,
                lost_timer: outcome.lost_timer().or(nested),
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

fn payload_of(cli: &Cli) -> Result<Payload> {
    let p = cli
        .payload
        .as_deref()
        .ok_or_else(|| Error::msg("--payload is required"))?;
    if let Some(t) = vmtests::find(p) {
        return Ok((t.spec)().payload);
    }
    Payload::from_toml(&tools::read_to_string(std::path::Path::new(p))?).map_err(|e| e.context(p))
}

fn topology_of(cli: &Cli) -> Result<Topology> {
    let name = cli.topology.as_deref().or(cli.payload.as_deref());
    Ok(match name {
        None | Some("none") => Topology::none(),
        Some("single-type3") => Topology::single_type3(256),
        Some(n) => match vmtests::find(n) {
            Some(t) => (t.spec)().topology,
            None if cli.topology.is_none() => Topology::none(),
            None => Topology::from_toml(&tools::read_to_string(std::path::Path::new(n))?)
                .map_err(|e| e.context(n))?,
        },
    })
}

fn run_one(cli: &Cli) -> Result<bool> {
    let test = cli.payload.as_deref().and_then(vmtests::find);
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
        None => RunSpec::new(topology_of(cli)?, payload_of(cli)?),
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
    let env = Env::prepare(&cli.env)?;
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

fn initramfs(cli: &Cli) -> Result<bool> {
    let out = cli
        .output
        .as_ref()
        .ok_or_else(|| Error::msg("initramfs needs -o FILE"))?;
    let payload = payload_of(cli)?;
    let mut opts = cli.env.clone();
    // Building the archive needs no QEMU.
    opts.qemu = Some(PathBuf::from("/bin/true"));
    opts.firmware_dirs = Some(Vec::new());
    let env = Env::prepare(&opts)?;
    let kernel = env.kernel_tree(cli.kernel.unwrap_or_default())?;
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

fn bench_fault(cli: &Cli) -> Result<bool> {
    use guest_harness::bench;
    let sizes: Vec<u64> = match &cli.sizes {
        None => bench::DEFAULT_SIZES_MIB.to_vec(),
        Some(s) => bench::parse_sizes(s)?,
    };
    let env = Env::prepare(&cli.env)?;
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

fn bench_params(cli: &Cli) -> Result<guest_harness::bench_bw::Params> {
    let mut params = guest_harness::bench_bw::Params {
        thp: cli.thp,
        ..Default::default()
    };
    if let Some(s) = &cli.sizes {
        params.sizes_mib = guest_harness::bench::parse_sizes(s)?;
    }
    match cli.repeats {
        Some(0) => return Err(Error::msg("--repeats must be at least 1")),
        Some(r) => params.repeats = r,
        None => {}
    }
    Ok(params)
}

fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

fn demo(cli: &Cli) -> Result<bool> {
    use guest_harness::demo;
    let params = bench_params(cli)?;
    let start = Instant::now();
    let env = Env::prepare(&cli.env)?;
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

fn bench_startup(cli: &Cli) -> Result<bool> {
    use guest_harness::bench_startup;
    let rounds = match cli.repeats {
        Some(0) => return Err(Error::msg("--repeats must be at least 1")),
        Some(r) => r as usize,
        None => bench_startup::DEFAULT_ROUNDS,
    };
    let env = Env::prepare(&cli.env)?;
    for line in bench_startup::describe(&bench_startup::run(&env, rounds)?) {
        println!("{line}");
    }
    Ok(true)
}

fn bench_bw(cli: &Cli) -> Result<bool> {
    use guest_harness::bench_bw;
    use guest_harness::nested_run;
    let params = bench_params(cli)?;
    let env = Env::prepare(&cli.env)?;
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
fn nested_run(cli: &Cli) -> Result<bool> {
    use guest_harness::nested_run::{l1_main, L2Run};
    let name = match cli.names.as_slice() {
        [n] => n,
        _ => {
            return Err(Error::msg(
                "nested-run takes one name: coherence or bench-bw",
            ))
        }
    };
    let run = L2Run::parse(name, &bench_params(cli)?)?;
    let need = |v: &Option<PathBuf>, flag: &str| {
        v.clone()
            .ok_or_else(|| Error::msg(format!("nested-run needs {flag}")))
    };
    let qemu = need(&cli.env.qemu, "--qemu")?;
    let firmware = cli.env.firmware_dirs.clone().unwrap_or_default();
    l1_main(
        &run,
        cli.l2_accel.unwrap_or(guest_harness::hw::AccelChoice::Kvm),
        cli.l2_cpu.as_deref(),
        &qemu,
        &firmware,
        &need(&cli.vmlinuz, "--vmlinuz")?,
        &need(&cli.initrd, "--initrd")?,
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // hw-test has its own options (docs/real-hardware.md).
    if args.first().map(String::as_str) == Some("hw-test") {
        return ExitCode::from(guest_harness::hw::main(&args[1..]));
    }
    let result = parse(&args).and_then(|cli| match cli.command.as_str() {
        "list" => {
            for t in vmtests::all() {
                println!("{:<28} {}", t.name, t.about);
            }
            Ok(true)
        }
        "vm-test" => vm_test(&cli),
        "run" => run_one(&cli),
        "initramfs" => initramfs(&cli),
        "bench-fault" => bench_fault(&cli),
        "bench-bw" => bench_bw(&cli),
        "bench-startup" => bench_startup(&cli),
        "nested-run" => nested_run(&cli),
        "demo" => demo(&cli),
        "chain" => Env::prepare(&cli.env).and_then(|env| {
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
        }),
        "help" => {
            print!("{USAGE}");
            Ok(true)
        }
        other => Err(Error::msg(format!("unknown command {other:?}\n{USAGE}"))),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("guest-harness: error: {e}");
            ExitCode::from(2)
        }
    }
}
