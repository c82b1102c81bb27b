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

use clap::{Parser, Subcommand};

use error::Result;

/// The project's developer commands
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = "Exit status: 0 on success, 1 when the work failed, 2 on a wrong command line."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Fetch(fetch::Args),
    Demo(demo::Args),
    Test(test::Options),
    BuildDriver(driver::Args),
    BuildTestKernel(test_kernel::Args),
    BuildGuestDriver(guest_driver::Args),
    BuildQemu(qemu::BuildArgs),
    QemuPath(qemu::PathArgs),
    /// Regenerate patches/qemu/ from qemu-device/ (docs/qemu-build.md)
    GenQemuPatches,
    /// Fail if patches/qemu/ is stale (CI)
    CheckQemuPatches,
    /// QEMU's Kconfig leaves vfio-cxl's devices out where they cannot link
    /// (needs a configured build: cargo xtask build-qemu)
    CheckQemuKconfig,
    QemuDiff(qemu::DiffArgs),
    VmTest(vmtest::Args),
    BenchFault(vmtest::BenchArgs),
    BenchBw(bench::BwArgs),
    BenchStartup(bench::StartupArgs),
    Chain(chain::Args),
    HwTest(hw::Args),
    /// Print the cache directory
    CacheDir,
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Fetch(a) => fetch::run(&a),
        Command::Test(a) => test::run(&a),
        Command::Demo(a) => demo::run(&a),
        Command::BuildDriver(a) => driver::run_build(&a),
        Command::BuildGuestDriver(a) => guest_driver::run(&a),
        Command::BuildTestKernel(a) => test_kernel::run(&a),
        Command::BuildQemu(a) => qemu::run_build(&a),
        Command::QemuPath(a) => qemu::run_path(&a),
        Command::GenQemuPatches => qemu::run_gen(),
        Command::CheckQemuPatches => qemu::run_check(),
        Command::QemuDiff(a) => qemu::run_diff(&a),
        Command::CheckQemuKconfig => qemu::run_check_kconfig(),
        Command::VmTest(a) => vmtest::run(&a),
        Command::BenchFault(a) => vmtest::run_bench(&a),
        Command::BenchBw(a) => bench::run_bw(&a),
        Command::BenchStartup(a) => bench::run_startup(&a),
        Command::Chain(a) => chain::run(&a),
        Command::HwTest(a) => hw::run(&a),
        Command::CacheDir => {
            println!("{}", cache::Cache::from_env()?.root().display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // clap answers --help and a wrong command line (exit status 2) itself.
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> std::result::Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(line.split_whitespace()))
            .map(|c| c.command)
    }

    fn refused(line: &str, want: &str) {
        let e = parse(line).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        assert!(e.to_string().contains(want), "{line}: {e}");
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ci_meson_and_the_readme_commands_parse() {
        // .ci/run, meson.build, README.md, docs/*.md.
        assert!(matches!(parse("test").unwrap(), Command::Test(_)));
        let Command::BuildDriver(a) = parse("build-driver --copy-to /b").unwrap() else {
            panic!("not build-driver")
        };
        assert_eq!(a.copy_to, Some("/b".into()));
        for line in [
            "build-qemu",
            "qemu-path",
            "cache-dir",
            "gen-qemu-patches",
            "check-qemu-patches",
            "check-qemu-kconfig",
        ] {
            parse(line).unwrap();
        }
        let Command::QemuPath(a) = parse("qemu-path --firmware-args").unwrap() else {
            panic!("not qemu-path")
        };
        assert!(a.firmware_args);
        let Command::BuildQemu(a) = parse("build-qemu --install-deps --fresh -j3").unwrap() else {
            panic!("not build-qemu")
        };
        assert_eq!((a.install_deps, a.fresh, a.jobs), (true, true, Some(3)));
        let Command::BuildQemu(a) = parse("build-qemu --jobs 4").unwrap() else {
            panic!("not build-qemu")
        };
        assert_eq!(a.jobs, Some(4));
        let Command::BuildTestKernel(a) = parse("build-test-kernel --print-dir").unwrap() else {
            panic!("not build-test-kernel")
        };
        assert!(a.print_dir);
        let Command::BuildGuestDriver(a) = parse("build-guest-driver --check").unwrap() else {
            panic!("not build-guest-driver")
        };
        assert!(a.check);
        let Command::QemuDiff(a) = parse("qemu-diff hw/x.c hw/y.c").unwrap() else {
            panic!("not qemu-diff")
        };
        assert_eq!(a.paths, ["hw/x.c", "hw/y.c"]);
    }

    #[test]
    fn fetch_takes_its_target_and_pins_in_both_spellings() {
        let Command::Fetch(a) = parse("fetch").unwrap() else {
            panic!("not fetch")
        };
        assert_eq!(a, fetch::Args::default());
        let Command::Fetch(a) =
            parse("fetch qemu --pin qemu=1:99.0+ds-1 --pin=linux-source-7.3=7.3.4-2 --setup-apt")
                .unwrap()
        else {
            panic!("not fetch")
        };
        assert_eq!(a.target, Some(fetch::Target::Qemu));
        assert_eq!(a.pins, ["qemu=1:99.0+ds-1", "linux-source-7.3=7.3.4-2"]);
        assert!(a.setup_apt);
        let Command::Fetch(a) = parse("fetch --print-path linux-deb:linux-source-7.3").unwrap()
        else {
            panic!("not fetch")
        };
        assert_eq!(a.print_path.as_deref(), Some("linux-deb:linux-source-7.3"));
        assert!(matches!(parse("fetch --print-pins").unwrap(), Command::Fetch(a) if a.print_pins));
    }

    #[test]
    fn vm_runs_and_benchmarks_parse() {
        let Command::VmTest(a) =
            parse("vm-test --no-build --keep -v host-driver-uapi@debug x").unwrap()
        else {
            panic!("not vm-test")
        };
        assert!(a.no_build && a.keep && a.verbose && !a.list);
        assert_eq!(a.names, ["host-driver-uapi@debug", "x"]);
        let Command::BenchFault(a) = parse("bench-fault --no-build --sizes 256,4096").unwrap()
        else {
            panic!("not bench-fault")
        };
        assert_eq!(a.sizes, [256, 4096]);
        let Command::BenchBw(a) = parse("bench-bw --no-build --kvm --sizes 1 --repeats 3").unwrap()
        else {
            panic!("not bench-bw")
        };
        assert!(a.no_build && a.kvm);
        assert_eq!((a.sizes, a.repeats), (vec![1], Some(3)));
        let Command::BenchStartup(a) = parse("bench-startup --repeats 5").unwrap() else {
            panic!("not bench-startup")
        };
        assert_eq!(a.repeats, Some(5));
        let Command::Chain(a) = parse("chain --no-build --l2-tcg --keep").unwrap() else {
            panic!("not chain")
        };
        assert!(a.no_build && a.l2_tcg && a.keep);
        let Command::Demo(a) = parse("demo --no-build --chain --setup-apt").unwrap() else {
            panic!("not demo")
        };
        assert!(a.no_build && a.chain && a.setup_apt);
        let Command::Test(_) =
            parse("test --no-driver --no-qemu --no-vm --no-chain --no-fuzz").unwrap()
        else {
            panic!("not test")
        };
        // hw-test hands everything after --no-build to the harness.
        let Command::HwTest(a) = parse("hw-test --no-build --bdf 3b:00.0 --accel tcg").unwrap()
        else {
            panic!("not hw-test")
        };
        assert!(a.no_build);
        assert_eq!(a.harness_args, ["--bdf", "3b:00.0", "--accel", "tcg"]);
    }

    #[test]
    fn another_commands_flags_and_bad_values_are_refused() {
        refused("", "Usage");
        refused("frobnicate", "frobnicate");
        refused("cache-dir x", "'x'");
        refused("gen-qemu-patches --fresh", "--fresh");
        refused("check-qemu-kconfig --no-build", "--no-build");
        refused("qemu-diff", "<PATH>");
        refused("fetch kernel", "kernel");
        refused("fetch qemu linux", "'linux'");
        refused("fetch --pin", "--pin <NAME=VERSION>");
        refused("fetch --setup-apt=yes", "--setup-apt");
        refused("fetch --no-build", "--no-build");
        refused("fetch --print-pins qemu", "cannot be used with");
        refused("test --fuzz-seconds", "--fuzz-seconds <N>");
        refused("test --fuzz-seconds x", "'x'");
        refused("test --no-fuzz --fuzz-seconds 5", "cannot be used with");
        refused("test --no-build", "--no-build");
        refused("build-qemu -j0", "-j");
        refused("build-qemu --frsh", "--frsh");
        refused("build-qemu --no-build", "--no-build");
        refused("build-driver --check", "--check");
        refused("build-guest-driver --copy-to /b", "--copy-to");
        refused(
            "build-test-kernel --print-dir --no-driver",
            "cannot be used with",
        );
        refused("qemu-path --fresh", "--fresh");
        refused("demo --bogus", "--bogus");
        refused("demo --keep", "--keep");
        refused("vm-test --sizes 1", "--sizes");
        refused("vm-test --list x", "cannot be used with");
        refused("bench-fault --repeats 3", "--repeats");
        refused("bench-fault --sizes 0", "--sizes");
        refused("bench-bw --l2-cpu host", "--kvm");
        refused("bench-bw --keep", "--keep");
        refused("bench-startup --sizes 1", "--sizes");
        refused("bench-startup --repeats 0", "--repeats");
        refused("chain --chain", "--chain");
        refused("chain --l2-accel tcg", "--l2-accel");
    }
}
