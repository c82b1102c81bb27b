//! `cargo xtask`: the project's developer commands.
//!
//! Each command lives in its own module; `main` only dispatches and turns
//! an [`error::Error`] into one message and an exit code.

mod apt;
mod bench;
mod cache;
mod chain;
mod demo;
mod digest;
mod driver;
mod error;
mod fetch;
mod guest_driver;
mod hw;
mod pins;
mod prereqs;
mod qemu;
mod sparse;
mod test;
mod test_kernel;
mod vmtest;

use std::process::ExitCode;

use error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  fetch [qemu|linux|all] [options]   download and verify the pinned sources (see `fetch --help`)
  demo [--no-build] [--chain]        the main job: end-to-end run on the emulated device, with its report
  test [options]                     the test command: fmt, clippy, fuzzing, driver tier, tests
  build-driver                       build the host driver against the pinned 7.3.4 tree
  build-test-kernel [--print-dir]   build the debug test kernel (lockdep, KASAN, ...) and the host driver for it
  build-guest-driver [--check]       build the reference guest Type-2 driver (cxl-type2-ref.ko)
  build-qemu [options]               build qemu-system-x86_64 with the series (see `build-qemu --help`)
  qemu-path [--firmware-args]        print the built qemu-system-x86_64 (or its -L options)
  gen-qemu-patches                   regenerate patches/qemu/ from qemu-device/
  check-qemu-patches                 fail if patches/qemu/ is stale (CI)
  check-qemu-kconfig                 QEMU's Kconfig leaves vfio-cxl's devices out where they cannot link
  qemu-diff PATH...                  keep work-tree edits of QEMU files as qemu-device/qemu/PATH.diff
  vm-test [--list] [NAME...]         boot the pinned kernel under QEMU and run the VM tests
  bench-fault [--sizes MIB,MIB]      fault benchmark of the host driver's memory region (VMs)
  bench-bw [options]                 memcpy bandwidth: guest RAM vs vfio-user-cxl vs cxl-type3 window (VM)
  bench-startup [--repeats N]        QEMU start-up and RSS: vfio-user-cxl vs vfio-user-pci, 256 MiB and 128 GiB
  chain [--no-build]                 the nested chain: L1 runs -device vfio-cxl on cxl-accel, L2 the coherence checks (~6 min)
  hw-test --bdf BDF [options]        the coherence suite on a real device bound to vfio-cxl-pci (docs/real-hardware.md)
  cache-dir                          print the cache directory
  help                               this text
";

fn run(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Error::usage(format!(
            "no command given\n{}",
            USAGE.trim_end()
        )));
    };
    match command.as_str() {
        "fetch" => fetch::run(rest),
        "test" => test::run(rest),
        "demo" => demo::run(rest),
        "build-driver" => driver::run_build(rest),
        "build-guest-driver" => guest_driver::run(rest),
        "build-test-kernel" => test_kernel::run(rest),
        "build-qemu" => qemu::run_build(rest),
        "qemu-path" => qemu::run_path(rest),
        "gen-qemu-patches" => qemu::run_gen(rest),
        "check-qemu-patches" => qemu::run_check(rest),
        "qemu-diff" => qemu::run_diff(rest),
        "check-qemu-kconfig" => qemu::run_check_kconfig(rest),
        "vm-test" => vmtest::run(rest),
        "bench-fault" => vmtest::run_bench(rest),
        "bench-bw" => bench::run_bw(rest),
        "bench-startup" => bench::run_startup(rest),
        "chain" => chain::run(rest),
        "hw-test" => hw::run(rest),
        "cache-dir" => {
            if let Some(extra) = rest.first() {
                return Err(Error::usage(format!(
                    "cache-dir takes no arguments (got {extra:?})"
                )));
            }
            println!("{}", cache::Cache::from_env()?.root().display());
            Ok(())
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(Error::usage(format!(
            "unknown command {other:?}\n{}",
            USAGE.trim_end()
        ))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
