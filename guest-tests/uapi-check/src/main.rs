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
//! contained (memory_failure.rs; the VM test host-driver-memory-failure);
//! with `--poison-by machine-check` the host delivers it as a machine
//! check while this process spins on the page (host-driver-mce).
//!
//! `--dmabuf HPA_START` exports dma-bufs of the memory region (whose host
//! physical range starts at HPA_START), imports them into an iommufd IOAS
//! and checks their revocation (dmabuf.rs; the VM test
//! host-driver-dmabuf@debug). `--dmabuf-bar PHYS` does the same for BAR 2
//! of a device bound to plain vfio-pci (pci-testdev's `membar`, at PHYS).
//!
//! `--remove-while-mapped` unbinds the device from its driver with its
//! memory mapped and checks the memory is gone before the unbind waits
//! for the close (removal.rs; the VM test host-driver-rebind).
//!
//! `--aer-recovery non-fatal|fatal` asks the host for an AER error of that
//! severity with the memory mapped and checks the memory is blocked and
//! comes back (aer.rs; the VM tests host-driver-aer and
//! host-driver-aer-fatal).
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
//! `vfio-cxl-uapi-check --mmio-reader PHYS --cpu N` reads a register
//! through /dev/mem until SIGTERM (mmio_reader.rs; the VM test
//! vfio-user-cxl-hotplug).
//!
//! `vfio-cxl-uapi-check --bench-bw [--sizes MIB,...] [--repeats N]
//! ram|NAME=PATH...` measures memcpy bandwidth (`bandwidth.rs`).
//!
//! clap parses the command line (`--help`): `--coherence-dev`,
//! `--window-tags` and `--bench-bw` are flag subcommands, so each mode
//! takes only its own options.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use vfio_cxl_uapi_check::aer;
use vfio_cxl_uapi_check::bandwidth;
use vfio_cxl_uapi_check::bench;
use vfio_cxl_uapi_check::checks::{self, Ctx, Options, Outcome};
use vfio_cxl_uapi_check::coherence;
use vfio_cxl_uapi_check::dmabuf;
use vfio_cxl_uapi_check::facts::fact;
use vfio_cxl_uapi_check::isolation;
use vfio_cxl_uapi_check::memory_failure;
use vfio_cxl_uapi_check::removal;
use vfio_cxl_uapi_check::window_tags;

/// Checks a device bound to vfio-cxl-pci against the uAPI contract
/// (docs/uapi.md) and reports each check as a fact line; or, with one of
/// the flags under Commands, something else a VM test needs.
#[derive(Debug, Parser)]
#[command(
    name = "vfio-cxl-uapi-check",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    after_help = "Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage."
)]
struct Cli {
    #[command(subcommand)]
    other: Option<Other>,
    /// The device (e.g. 0000:0d:00.0)
    #[arg(value_name = "BDF", required = true)]
    bdf: Option<String>,
    #[command(flatten)]
    checks: CheckArgs,
}

/// The options of a run on BDF.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").multiple(false)))]
struct CheckArgs {
    /// The memory holds pattern N (written from outside before the boot)
    #[arg(long, value_name = "N")]
    expect_seed: Option<u64>,
    /// Leave pattern N in the memory for the outside to verify
    #[arg(long, value_name = "N")]
    write_seed: Option<u64>,
    /// The outside writes the --expect-seed pattern once the device is
    /// open: say READY in the memory and wait for its GO word
    #[arg(long)]
    handshake: bool,
    /// How many times to close and reopen the device
    #[arg(long, value_name = "N", default_value_t = 20)]
    reopen: u32,
    /// Run only the close/open cycles
    #[arg(long, group = "mode", conflicts_with_all = SEEDS)]
    reopen_only: bool,
    /// Run no check but the fault benchmark (figures as facts)
    #[arg(long, group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    bench_fault: bool,
    /// Fill the whole memory region with pattern SEED and exit (closing
    /// the device)
    #[arg(long, value_name = "SEED", group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    tenant_write: Option<u64>,
    /// Check, as the next user, that the memory reads only zeros
    #[arg(long, group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    tenant_read: bool,
    /// Inject a memory error into one page of the region, whose first
    /// page frame is FIRST_PFN, and check that it is contained
    #[arg(long, value_name = "FIRST_PFN", group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    memory_failure: Option<u64>,
    /// How --memory-failure reports the error: the kernel's injector, or
    /// a machine check the host injects (fact mce.ready)
    #[arg(long, value_name = "HOW", value_enum, requires = "memory_failure")]
    poison_by: Option<memory_failure::PoisonBy>,
    /// Export dma-bufs of the memory region, whose host physical range
    /// starts at HPA_START, import them into an iommufd IOAS and check
    /// their revocation
    #[arg(long, value_name = "HPA_START", group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    dmabuf: Option<u64>,
    /// The same for BAR 2 (at PHYS) of a device bound to plain vfio-pci
    #[arg(long, value_name = "PHYS", group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    dmabuf_bar: Option<u64>,
    /// Unbind the device from its driver with its memory mapped: the
    /// memory must be gone while the unbind waits for the close
    #[arg(long, group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    remove_while_mapped: bool,
    /// With the memory mapped and the error eventfd registered, ask the
    /// host for an AER error of this severity (fact aer.ready) and check
    /// the recovery
    #[arg(long, value_name = "SEVERITY", group = "mode", conflicts_with_all = SEEDS_AND_REOPEN)]
    aer_recovery: Option<aer::Severity>,
}

/// What only the full checks use.
const SEEDS: [&str; 3] = ["expect_seed", "write_seed", "handshake"];
const SEEDS_AND_REOPEN: [&str; 4] = ["expect_seed", "write_seed", "handshake", "reopen"];

/// The runs on something else than a BDF, each selected by its flag.
#[derive(Debug, clap::Subcommand)]
enum Other {
    /// The coherence checks on the reference guest driver's char device DEV
    #[command(name = "coherence-dev", long_flag = "coherence-dev")]
    Coherence(CoherenceArgs),
    /// Check every page of a CXL window through /dev/mem (the guest-side
    /// fuzzers; numbers decimal or 0x hex)
    #[command(name = "window-tags", long_flag = "window-tags")]
    WindowTags(WindowTagsArgs),
    /// memcpy bandwidth between RAM and mapped memory targets
    #[command(name = "bench-bw", long_flag = "bench-bw")]
    BenchBw(bandwidth::Options),
    /// Read the 32-bit register at physical address PHYS through /dev/mem,
    /// back to back, until SIGTERM (the hot-unplug test)
    #[command(name = "mmio-reader", long_flag = "mmio-reader")]
    MmioReader(MmioReaderArgs),
}

#[derive(Debug, clap::Args)]
struct MmioReaderArgs {
    /// The register's physical address (decimal or 0x hex)
    #[arg(value_name = "PHYS", value_parser = parse_u64)]
    phys: u64,
    /// The CPU to read on
    #[arg(long, value_name = "N")]
    cpu: usize,
    /// Create this file once the reads run
    #[arg(long, value_name = "FILE")]
    ready: Option<std::path::PathBuf>,
}

/// A number in decimal or 0x hex.
fn parse_u64(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, clap::Args)]
struct CoherenceArgs {
    /// The reference guest driver's char device (e.g. /dev/cxl-type2-ref0)
    #[arg(value_name = "DEV")]
    dev: String,
    /// The memory holds pattern N (written from outside before the boot)
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "unbind_while_mapped"
    )]
    expect_seed: Option<u64>,
    /// Leave pattern N in the memory for the outside to verify
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "unbind_while_mapped"
    )]
    write_seed: Option<u64>,
    /// Play N ping-pong rounds with a process outside the guest
    #[arg(long, value_name = "N", default_value_t = 0)]
    ping_pong: u64,
    /// Instead: unbind the device BDF while DEV is mapped
    #[arg(long, value_name = "BDF", conflicts_with_all = ["expect_seed", "write_seed", "ping_pong"])]
    unbind_while_mapped: Option<String>,
}

#[derive(Debug, clap::Args)]
struct WindowTagsArgs {
    /// The window, the routed range in it, the device offset it starts at,
    /// the host's tag, the probe mark and the sequence number
    #[arg(num_args = 8, required = true, allow_hyphen_values = true,
          value_names = ["W", "WS", "BASE", "SIZE", "SKIP", "TAG", "MARK", "SEQ"])]
    numbers: Vec<String>,
}

/// What to run on BDF.
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
    MemoryFailure(u64, memory_failure::PoisonBy),
    /// dma-buf export, iommufd import and revocation; the region's host
    /// physical address.
    Dmabuf(u64),
    /// dma-buf export of a plain vfio-pci device's BAR 2 at this address.
    DmabufBar(u64),
    /// Unbind with the memory mapped.
    RemoveWhileMapped,
    /// An AER error of this severity with the memory mapped.
    AerRecovery(aer::Severity),
}

/// A parsed and checked command line.
#[derive(Debug)]
enum Run {
    Device {
        bdf: String,
        options: Options,
        mode: Mode,
    },
    Coherence {
        dev: String,
        options: coherence::Options,
    },
    UnbindWhileMapped {
        dev: String,
        bdf: String,
    },
    WindowTags(window_tags::Args),
    BenchBw(bandwidth::Options),
    MmioReader {
        phys: u64,
        cpu: usize,
        ready: Option<std::path::PathBuf>,
    },
}

/// Parses `args` (the program name first); a clap error (exit status 2,
/// or 0 for --help) when they are wrong.
fn parse<I, T>(args: I) -> Result<Run, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let invalid = |e: String| Cli::command().error(clap::error::ErrorKind::ValueValidation, e);
    Ok(match cli.other {
        Some(Other::Coherence(c)) => match c.unbind_while_mapped {
            Some(bdf) => Run::UnbindWhileMapped { dev: c.dev, bdf },
            None => Run::Coherence {
                dev: c.dev,
                options: coherence::Options {
                    // clap requires both without --unbind-while-mapped.
                    expect_seed: c.expect_seed.unwrap_or_default(),
                    write_seed: c.write_seed.unwrap_or_default(),
                    ping_pong: c.ping_pong,
                },
            },
        },
        Some(Other::WindowTags(w)) => {
            Run::WindowTags(window_tags::Args::parse(&w.numbers).map_err(invalid)?)
        }
        Some(Other::BenchBw(o)) => {
            o.check().map_err(invalid)?;
            Run::BenchBw(o)
        }
        Some(Other::MmioReader(m)) => Run::MmioReader {
            phys: m.phys,
            cpu: m.cpu,
            ready: m.ready,
        },
        None => {
            let c = cli.checks;
            let mode = if c.reopen_only {
                Mode::ReopenOnly
            } else if c.bench_fault {
                Mode::BenchFault
            } else if let Some(seed) = c.tenant_write {
                Mode::TenantWrite(seed)
            } else if c.tenant_read {
                Mode::TenantRead
            } else if let Some(pfn) = c.memory_failure {
                Mode::MemoryFailure(
                    pfn,
                    c.poison_by
                        .unwrap_or(memory_failure::PoisonBy::HwpoisonInject),
                )
            } else if let Some(hpa) = c.dmabuf {
                Mode::Dmabuf(hpa)
            } else if let Some(phys) = c.dmabuf_bar {
                Mode::DmabufBar(phys)
            } else if c.remove_while_mapped {
                Mode::RemoveWhileMapped
            } else if let Some(severity) = c.aer_recovery {
                Mode::AerRecovery(severity)
            } else {
                Mode::Checks
            };
            Run::Device {
                // clap requires BDF without a command flag.
                bdf: cli.bdf.unwrap_or_default(),
                options: Options {
                    expect_seed: c.expect_seed,
                    write_seed: c.write_seed,
                    handshake: c.handshake,
                    reopen: c.reopen,
                },
                mode,
            }
        }
    })
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

/// `--mmio-reader PHYS --cpu N [--ready FILE]`: fact `mmio_reader.cpuN`.
fn mmio_reader_main(phys: u64, cpu: usize, ready: Option<&std::path::Path>) -> ExitCode {
    let (value, code) = match vfio_cxl_uapi_check::mmio_reader::run(phys, cpu, ready) {
        Ok(seen) => (seen.describe(), ExitCode::SUCCESS),
        Err(e) => (format!("FAIL: {e}"), ExitCode::FAILURE),
    };
    eprintln!("mmio-reader {phys:#x} on CPU {cpu}: {value}");
    fact("mmio-reader", &format!("mmio_reader.cpu{cpu}"), &value);
    code
}

/// `--coherence-dev DEV --unbind-while-mapped BDF`.
fn unbind_while_mapped_main(dev: &str, bdf: &str) -> ExitCode {
    let o = coherence::unbind_while_mapped(dev, bdf);
    let (value, code) = match &o {
        Ok(d) => (format!("pass: {d}"), ExitCode::SUCCESS),
        Err(w) => (format!("FAIL: {w}"), ExitCode::FAILURE),
    };
    eprintln!("coherence unbind_while_mapped: {value}");
    fact("coherence", "coherence.unbind_while_mapped", &value);
    code
}

/// `--coherence-dev DEV --expect-seed N --write-seed N [--ping-pong N]`.
fn coherence_main(dev: &str, options: coherence::Options) -> ExitCode {
    let outcomes = coherence::run(
        dev,
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
    let (bdf, options, mode) = match parse(std::env::args_os()).unwrap_or_else(|e| e.exit()) {
        Run::Device { bdf, options, mode } => (bdf, options, mode),
        Run::Coherence { dev, options } => return coherence_main(&dev, options),
        Run::UnbindWhileMapped { dev, bdf } => return unbind_while_mapped_main(&dev, &bdf),
        Run::WindowTags(a) => return window_tags_main(&a),
        Run::BenchBw(o) => return vfio_cxl_uapi_check::bandwidth::main(&o),
        Run::MmioReader { phys, cpu, ready } => {
            return mmio_reader_main(phys, cpu, ready.as_deref())
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
    if let Mode::MemoryFailure(first_pfn, by) = mode {
        let outcome = memory_failure::run(&bdf, first_pfn, by);
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
    if mode == Mode::RemoveWhileMapped {
        let outcome = removal::remove_while_mapped(&bdf);
        report("remove_while_mapped", &outcome);
        return summary(&[("remove_while_mapped", outcome)]);
    }
    if let Mode::AerRecovery(severity) = mode {
        let outcome = aer::recover_while_mapped(&bdf, severity);
        report("aer_recovery", &outcome);
        return summary(&[("aer_recovery", outcome)]);
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
fn window_tags_main(a: &window_tags::Args) -> ExitCode {
    match window_tags::run(a) {
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

    fn run(line: &str) -> Result<Run, clap::Error> {
        parse(std::iter::once("vfio-cxl-uapi-check").chain(line.split_whitespace()))
    }

    fn refused(line: &str, want: &str) {
        let e = run(line).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        assert!(e.to_string().contains(want), "{line}: {e}");
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_harness_device_runs_parse() {
        // guest-tests/harness: hostdriver.rs, vucxl_multi.rs, vucxl_reset.rs.
        let Run::Device { bdf, options, mode } =
            run("0000:0d:00.0 --expect-seed 7 --write-seed 8 --handshake --reopen 3").unwrap()
        else {
            panic!("not a device run")
        };
        assert_eq!(bdf, "0000:0d:00.0");
        assert_eq!(
            (
                options.expect_seed,
                options.write_seed,
                options.handshake,
                options.reopen
            ),
            (Some(7), Some(8), true, 3)
        );
        assert_eq!(mode, Mode::Checks);
        let mode_of = |line: &str| match run(line).unwrap() {
            Run::Device { mode, options, .. } => (mode, options.reopen),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(mode_of("x"), (Mode::Checks, 20));
        assert_eq!(mode_of("x --reopen-only --reopen 1"), (Mode::ReopenOnly, 1));
        assert_eq!(mode_of("x --bench-fault"), (Mode::BenchFault, 20));
        assert_eq!(mode_of("x --tenant-write 5"), (Mode::TenantWrite(5), 20));
        assert_eq!(mode_of("x --tenant-read"), (Mode::TenantRead, 20));
        assert_eq!(
            mode_of("x --memory-failure 1048576"),
            (
                Mode::MemoryFailure(1 << 20, memory_failure::PoisonBy::HwpoisonInject),
                20
            )
        );
        // hostdriver_mce.rs.
        assert_eq!(
            mode_of("x --memory-failure 1048576 --poison-by machine-check"),
            (
                Mode::MemoryFailure(1 << 20, memory_failure::PoisonBy::MachineCheck),
                20
            )
        );
        assert!(run("x --poison-by machine-check").is_err());
        // hostdriver_dmabuf.rs.
        assert_eq!(
            mode_of("x --dmabuf 20401094656"),
            (Mode::Dmabuf(0x4c0000000), 20)
        );
        assert_eq!(
            mode_of("x --dmabuf-bar 4263510016"),
            (Mode::DmabufBar(0xfe200000), 20)
        );
        assert!(run("x --dmabuf 1 --tenant-read").is_err());
        // hostdriver.rs (host-driver-rebind).
        assert_eq!(
            mode_of("x --remove-while-mapped"),
            (Mode::RemoveWhileMapped, 20)
        );
        assert!(run("x --remove-while-mapped --reopen-only").is_err());
        // hostdriver_aer.rs.
        assert_eq!(
            mode_of("x --aer-recovery non-fatal"),
            (Mode::AerRecovery(aer::Severity::NonFatal), 20)
        );
        assert_eq!(
            mode_of("x --aer-recovery fatal"),
            (Mode::AerRecovery(aer::Severity::Fatal), 20)
        );
        assert!(run("x --aer-recovery").is_err());
        assert!(run("x --aer-recovery correctable").is_err());
    }

    #[test]
    fn the_harness_coherence_window_and_bandwidth_runs_parse() {
        // guestdriver.rs, hw/guest.rs.
        let Run::Coherence { dev, options } = run(
            "--coherence-dev /dev/cxl-type2-ref0 --expect-seed 1 --write-seed 2 --ping-pong 100",
        )
        .unwrap() else {
            panic!("not a coherence run")
        };
        assert_eq!(
            (
                dev.as_str(),
                options.expect_seed,
                options.write_seed,
                options.ping_pong
            ),
            ("/dev/cxl-type2-ref0", 1, 2, 100)
        );
        let Run::UnbindWhileMapped { dev, bdf } =
            run("--coherence-dev /dev/cxl-type2-ref0 --unbind-while-mapped 0000:0d:00.0").unwrap()
        else {
            panic!("not an unbind run")
        };
        assert_eq!(
            (dev.as_str(), bdf.as_str()),
            ("/dev/cxl-type2-ref0", "0000:0d:00.0")
        );
        // vmm_fuzz.rs.
        let Run::WindowTags(a) = run(
            "--window-tags 0x100000 0x10000 0x104000 0x2000 0x3000 0x7a6e000000000000 0x3e5c 7",
        )
        .unwrap() else {
            panic!("not a window-tags run")
        };
        assert_eq!((a.window, a.seq), (0x100000, 7));
        // vucxl_hotplug.rs.
        let Run::MmioReader { phys, cpu, ready } =
            run("--mmio-reader 0xfe601100 --cpu 1 --ready /tmp/r").unwrap()
        else {
            panic!("not an mmio-reader run")
        };
        assert_eq!((phys, cpu), (0xfe601100, 1));
        assert_eq!(ready.as_deref(), Some(std::path::Path::new("/tmp/r")));
        // bench_bw.rs.
        let Run::BenchBw(o) = run(
            "--bench-bw --sizes 1,4 --repeats 3 --thp ram vfio-user-cxl=/dev/cxl-type2-ref0 cxl-type3=/dev/dax0.0",
        )
        .unwrap() else {
            panic!("not a bench-bw run")
        };
        assert_eq!((o.sizes.len(), o.repeats, o.targets.len()), (2, 3, 3));
    }

    #[test]
    fn options_of_another_run_and_bad_values_are_refused() {
        refused("", "<BDF>");
        refused("x --bogus", "--bogus");
        refused("x --write-seed", "--write-seed <N>");
        refused("x --reopen -1", "-1");
        refused("x y", "'y'");
        refused("x --bench-fault --reopen-only", "cannot be used with");
        refused("x --tenant-read --expect-seed 1", "cannot be used with");
        refused("x --reopen-only --write-seed 1", "cannot be used with");
        // Another run's options.
        refused("x --ping-pong 3", "--ping-pong");
        refused("x --sizes 1 ram", "--sizes");
        refused("--coherence-dev /dev/x", "--expect-seed <N>");
        refused("--coherence-dev", "<DEV>");
        refused(
            "--coherence-dev /dev/x --expect-seed 1 --write-seed 2 --reopen 3",
            "--reopen",
        );
        refused(
            "--coherence-dev /dev/x --unbind-while-mapped b --ping-pong 1",
            "cannot be used with",
        );
        refused("--window-tags 0 0x1000", "SEQ");
        refused("--window-tags 0 0x1001 0 0 0 1 1 1", "bad geometry");
        refused("--bench-bw ram ram", "target names repeat");
        refused("--mmio-reader 0x1000", "--cpu <N>");
        refused("--mmio-reader 0xz --cpu 0", "invalid digit");
        refused("--bench-bw ram --handshake", "--handshake");
    }
}
