//! `vfio-cxl-uapi-check BDF [--expect-seed N] [--write-seed N] [--handshake] [--reopen N]
//! [--reopen-only] [--bench-fault]`
//!
//! Runs every check of `checks::CHECKS` on a device bound to vfio-cxl-pci
//! and reports each as a fact line of the guest harness protocol
//! (`VFIOCXL-RESULT {"kind":"fact",...}`), then `uapi-check: N passed, M
//! failed`. Exit status 0 when all passed, 1 otherwise, 2 on bad usage.
//!
//! `vfio-cxl-uapi-check --coherence-dev DEV --expect-seed N --write-seed N`
//! runs instead the coherence checks of `coherence.rs` on the char device
//! of the reference guest Type-2 driver (step `coherence`), then
//! `coherence: N passed, M failed`. `--coherence-dev DEV
//! --unbind-while-mapped BDF` unbinds the device under a live mapping.
//!
//! `--tenant-write SEED` fills the whole memory region with a pattern and
//! exits (closing the device); `--tenant-read` then checks that a new
//! user reads only zeros (isolation.rs; the VM test host-driver-tenants).
//!
//! `--memory-failure FIRST_PFN` injects a memory error into one page of
//! the region (whose first page frame is FIRST_PFN) and checks that it is
//! contained (memory_failure.rs; the VM test host-driver-memory-failure).
//!
//! `--dmabuf HPA_START` exports dma-bufs of the memory region (whose host
//! physical range starts at HPA_START), imports them into an iommufd IOAS
//! and checks their revocation (dmabuf.rs; the VM test
//! host-driver-dmabuf@debug). `--dmabuf-bar PHYS` does the same for BAR 2
//! of a device bound to plain vfio-pci (pci-testdev's `membar`, at PHYS).
//!
//! `--reopen-only` runs only the close/open cycles (the rebind VM test
//! reopens after every bind); `--bench-fault` runs no check but the fault
//! benchmark of `bench.rs` and reports its figures as facts (step
//! `bench-fault`).
//!
//! `vfio-cxl-uapi-check --window-tags W WS BASE SIZE SKIP TAG MARK SEQ`
//! checks every page of a CXL window through /dev/mem for the guest-side
//! fuzzers (window_tags.rs).
//!
//! `vfio-cxl-uapi-check --bench-bw [--sizes MIB,...] [--repeats N]
//! ram|NAME=PATH...` measures memcpy bandwidth (`bandwidth.rs`).

use std::process::ExitCode;

use vfio_cxl_uapi_check::bench;
use vfio_cxl_uapi_check::checks::{self, Ctx, Options, Outcome};
use vfio_cxl_uapi_check::coherence;
use vfio_cxl_uapi_check::dmabuf;
use vfio_cxl_uapi_check::facts::fact;
use vfio_cxl_uapi_check::isolation;
use vfio_cxl_uapi_check::memory_failure;
use vfio_cxl_uapi_check::window_tags;

const USAGE: &str = "usage: vfio-cxl-uapi-check BDF [--expect-seed N] [--write-seed N] [--handshake] [--reopen N] [--reopen-only] [--bench-fault]
       vfio-cxl-uapi-check BDF --tenant-write SEED | --tenant-read | --memory-failure FIRST_PFN | --dmabuf HPA_START | --dmabuf-bar PHYS
       vfio-cxl-uapi-check --coherence-dev DEV --expect-seed N --write-seed N [--ping-pong N]
       vfio-cxl-uapi-check --coherence-dev DEV --unbind-while-mapped BDF
       vfio-cxl-uapi-check --window-tags W WS BASE SIZE SKIP TAG MARK SEQ
       vfio-cxl-uapi-check --bench-bw [--sizes MIB,MIB...] [--repeats N] [--thp] ram|NAME=PATH...";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every check, then the reopen cycles.
    Checks,
    /// Only the reopen cycles.
    ReopenOnly,
    /// The fault benchmark.
    BenchFault,
    /// Fill the memory as one user, then exit.
    TenantWrite(u64),
    /// Check, as the next user, that the memory reads 0.
    TenantRead,
    /// Inject a memory error; the region starts at this page frame.
    MemoryFailure(u64),
    /// dma-buf export, iommufd import and revocation; the region's host
    /// physical address.
    Dmabuf(u64),
    /// dma-buf export of a plain vfio-pci device's BAR 2 at this address.
    DmabufBar(u64),
}

fn parse(args: &[String]) -> Result<(String, Options, Mode), String> {
    let mut options = Options {
        reopen: 20,
        ..Options::default()
    };
    let mut mode = Mode::Checks;
    let mut bdf = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--expect-seed" => options.expect_seed = Some(num("--expect-seed")?),
            "--write-seed" => options.write_seed = Some(num("--write-seed")?),
            "--handshake" => options.handshake = true,
            "--reopen" => {
                options.reopen = u32::try_from(num("--reopen")?).map_err(|e| e.to_string())?
            }
            "--reopen-only" if mode == Mode::Checks => mode = Mode::ReopenOnly,
            "--bench-fault" if mode == Mode::Checks => mode = Mode::BenchFault,
            "--tenant-write" if mode == Mode::Checks => {
                mode = Mode::TenantWrite(num("--tenant-write")?)
            }
            "--tenant-read" if mode == Mode::Checks => mode = Mode::TenantRead,
            "--memory-failure" if mode == Mode::Checks => {
                mode = Mode::MemoryFailure(num("--memory-failure")?)
            }
            "--dmabuf" if mode == Mode::Checks => mode = Mode::Dmabuf(num("--dmabuf")?),
            "--dmabuf-bar" if mode == Mode::Checks => {
                mode = Mode::DmabufBar(num("--dmabuf-bar")?)
            }
            "--reopen-only" | "--bench-fault" | "--tenant-write" | "--tenant-read"
            | "--memory-failure" | "--dmabuf" | "--dmabuf-bar" => return Err(
                "--reopen-only, --bench-fault, --tenant-write, --tenant-read, --memory-failure, --dmabuf and --dmabuf-bar exclude each other"
                    .into(),
            ),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if bdf.is_none() => bdf = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok((bdf.ok_or("no BDF given")?, options, mode))
}

fn report(name: &str, outcome: &Outcome) {
    let value = match outcome {
        Ok(detail) => format!("pass: {detail}"),
        Err(why) => format!("FAIL: {why}"),
    };
    fact("uapi-check", name, &value);
}

/// `--bench-fault`: facts `bench.size`, `bench.default_align` and, per
/// pass, `bench.<pass>.{stride,span,touches,addr,mmap_us,touch_us,faults}`.
fn bench_fault(bdf: &str, options: Options) -> ExitCode {
    let result = Ctx::open(bdf, options)
        .map_err(|e| e.to_string())
        .and_then(|ctx| {
            let align = bench::default_alignment(&ctx).map_err(|e| format!("mmap: {e}"))?;
            let passes = bench::run(&ctx).map_err(|e| format!("mmap: {e}"))?;
            Ok((ctx.mem.size, align, passes))
        });
    match result {
        Err(e) => {
            fact("bench-fault", "bench.error", &e);
            eprintln!("vfio-cxl-uapi-check: bench-fault: {e}");
            ExitCode::FAILURE
        }
        Ok((size, align, passes)) => {
            let f = |k: &str, v: String| fact("bench-fault", &format!("bench.{k}"), &v);
            f("size", format!("{size:#x}"));
            f("default_align", format!("{align:#x}"));
            for p in &passes {
                let n = p.name;
                f(&format!("{n}.stride"), p.stride.to_string());
                f(&format!("{n}.span"), format!("{:#x}", p.span));
                f(&format!("{n}.touches"), p.touches.to_string());
                f(&format!("{n}.addr"), format!("{:#x}", p.addr));
                f(&format!("{n}.mmap_us"), p.mmap.as_micros().to_string());
                f(&format!("{n}.touch_us"), p.touch.as_micros().to_string());
                f(&format!("{n}.faults"), p.faults.to_string());
                f(&format!("{n}.repeats"), p.repeats.to_string());
                f(
                    &format!("{n}.touch_us_min"),
                    p.touch_min.as_micros().to_string(),
                );
                f(
                    &format!("{n}.touch_us_max"),
                    p.touch_max.as_micros().to_string(),
                );
                eprintln!(
                    "bench-fault {n}: {} touches over {:#x}: mmap {} us, touch {} us (median of {}, {}..{} us), {} faults",
                    p.touches,
                    p.span,
                    p.mmap.as_micros(),
                    p.touch.as_micros(),
                    p.repeats,
                    p.touch_min.as_micros(),
                    p.touch_max.as_micros(),
                    p.faults
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// `--coherence-dev DEV --expect-seed N --write-seed N`.
fn parse_coherence(args: &[String]) -> Result<(String, coherence::Options), String> {
    let (mut dev, mut expect, mut write, mut ping_pong) = (None, None, None, 0);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{a}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--coherence-dev" => dev = Some(v.clone()),
            "--expect-seed" => expect = Some(num()?),
            "--write-seed" => write = Some(num()?),
            "--ping-pong" => ping_pong = num()?,
            s => return Err(format!("{s}: not an option of --coherence-dev")),
        }
    }
    Ok((
        dev.ok_or("no --coherence-dev")?,
        coherence::Options {
            expect_seed: expect.ok_or("--coherence-dev needs --expect-seed")?,
            write_seed: write.ok_or("--coherence-dev needs --write-seed")?,
            ping_pong,
        },
    ))
}

fn coherence_main(args: &[String]) -> ExitCode {
    if let [flag, dev, mode, bdf] = args {
        if flag == "--coherence-dev" && mode == "--unbind-while-mapped" {
            let o = coherence::unbind_while_mapped(dev, bdf);
            let (value, code) = match &o {
                Ok(d) => (format!("pass: {d}"), ExitCode::SUCCESS),
                Err(w) => (format!("FAIL: {w}"), ExitCode::FAILURE),
            };
            eprintln!("coherence unbind_while_mapped: {value}");
            fact("coherence", "coherence.unbind_while_mapped", &value);
            return code;
        }
    }
    let (dev, options) = match parse_coherence(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vfio-cxl-uapi-check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcomes = coherence::run(
        &dev,
        options,
        &mut |name, o| {
            let value = match o {
                Ok(d) => format!("pass: {d}"),
                Err(w) => format!("FAIL: {w}"),
            };
            eprintln!("coherence {name}: {value}");
            fact("coherence", &format!("coherence.{name}"), &value);
        },
        &mut |k, v| fact("coherence", k, v),
    );
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    println!(
        "coherence: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bench-bw") {
        return vfio_cxl_uapi_check::bandwidth::main(&args[1..]);
    }
    if args.iter().any(|a| a == "--coherence-dev") {
        return coherence_main(&args);
    }
    if args.first().map(String::as_str) == Some("--window-tags") {
        return window_tags_main(&args[1..]);
    }
    let (bdf, options, mode) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vfio-cxl-uapi-check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let reopen = options.reopen;
    let mut outcomes: Vec<(&str, Outcome)> = Vec::new();
    if mode == Mode::BenchFault {
        return bench_fault(&bdf, options);
    }
    if let Mode::TenantWrite(seed) = mode {
        let outcome = isolation::tenant_write(&bdf, seed);
        report("tenant_write", &outcome);
        return summary(&[("tenant_write", outcome)]);
    }
    if let Mode::MemoryFailure(first_pfn) = mode {
        let outcome = memory_failure::run(&bdf, first_pfn);
        report("memory_failure", &outcome);
        return summary(&[("memory_failure", outcome)]);
    }
    if let Mode::Dmabuf(hpa) = mode {
        let outcome = dmabuf::run(&bdf, hpa);
        report("dmabuf", &outcome);
        return summary(&[("dmabuf", outcome)]);
    }
    if let Mode::DmabufBar(phys) = mode {
        let outcome = dmabuf::run_bar(&bdf, phys);
        report("dmabuf_bar", &outcome);
        return summary(&[("dmabuf_bar", outcome)]);
    }
    if mode == Mode::TenantRead {
        let outcome = isolation::tenant_read(&bdf);
        report("tenant_read", &outcome);
        return summary(&[("tenant_read", outcome)]);
    }
    if mode == Mode::ReopenOnly {
        let outcome = checks::reopen(&bdf, reopen);
        report("reopen", &outcome);
        outcomes.push(("reopen", outcome));
        return summary(&outcomes);
    }
    match Ctx::open(&bdf, options) {
        Err(e) => {
            let outcome = Err(e.to_string());
            report("open", &outcome);
            outcomes.push(("open", outcome));
        }
        Ok(ctx) => {
            for (name, check) in checks::CHECKS {
                // Announce first: a SIGBUS ends the process inside a check.
                eprintln!("uapi-check: {name}");
                let outcome = check(&ctx);
                report(name, &outcome);
                outcomes.push((name, outcome));
            }
            drop(ctx);
            let outcome = checks::reopen(&bdf, reopen);
            report("reopen", &outcome);
            outcomes.push(("reopen", outcome));
        }
    }
    summary(&outcomes)
}

/// `--window-tags`: plain lines for the fuzzer's shell (see window_tags.rs).
fn window_tags_main(args: &[String]) -> ExitCode {
    match window_tags::Args::parse(args).and_then(|a| window_tags::run(&a)) {
        Ok(f) => {
            println!("checked {}\nprobes {}\nbad {}", f.checked, f.probes, f.bad);
            for w in &f.what {
                println!("what {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vfio-cxl-uapi-check: {e}");
            ExitCode::from(2)
        }
    }
}

fn summary(outcomes: &[(&str, Outcome)]) -> ExitCode {
    let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    println!(
        "uapi-check: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn coherence_arguments_parse() {
        let (dev, o) = parse_coherence(&args(&[
            "--coherence-dev",
            "/dev/cxl-type2-ref0",
            "--expect-seed",
            "1",
            "--write-seed",
            "2",
        ]))
        .unwrap();
        assert_eq!(
            (dev.as_str(), o.expect_seed, o.write_seed),
            ("/dev/cxl-type2-ref0", 1, 2)
        );
        assert!(parse_coherence(&args(&["--coherence-dev", "/dev/x"])).is_err());
        assert!(parse_coherence(&args(&["--coherence-dev"])).is_err());
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_refused() {
        let (bdf, o, mode) = parse(&args(&[
            "0000:0d:00.0",
            "--expect-seed",
            "7",
            "--reopen",
            "3",
        ]))
        .unwrap();
        assert_eq!(
            (bdf.as_str(), o.expect_seed, o.write_seed, o.reopen),
            ("0000:0d:00.0", Some(7), None, 3)
        );
        assert_eq!(mode, Mode::Checks);
        assert_eq!(
            parse(&args(&["x", "--reopen-only"])).unwrap().2,
            Mode::ReopenOnly
        );
        assert_eq!(
            parse(&args(&["x", "--bench-fault"])).unwrap().2,
            Mode::BenchFault
        );
        assert!(parse(&args(&["x", "--bench-fault", "--reopen-only"])).is_err());
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["x", "--bogus"])).is_err());
        assert!(parse(&args(&["x", "--write-seed"])).is_err());
        assert!(parse(&args(&["x", "--reopen", "-1"])).is_err());
    }
}
