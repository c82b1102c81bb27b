//! `cargo xtask vm-test` and `cargo xtask bench-fault`: the VM tests and
//! the fault benchmark of guest-tests/harness.
//!
//! Fetches the pinned sources, builds QEMU (incremental), the host driver
//! (`build-driver`) and a static `vfio-cxl-uapi-check` (in its own target
//! directory, `target/guest`, so its RUSTFLAGS do not invalidate
//! `target/`), and runs `guest-harness vm-test` with the exact pinned .deb
//! files, the built QEMU and its firmware directories. The harness prints
//! one line per test and, last, `vm-tests: N passed, M failed`; so that
//! this summary stays the last line, a failing run exits with the
//! harness's status directly instead of adding an `xtask: error:` line
//! after it. See docs/guest-harness.md.

use std::process::Command;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins};

/// Boot the pinned kernel under QEMU and run the VM tests
///
/// Boots the pinned Debian kernel under the project's QEMU (TCG) and runs
/// the VM tests of guest-tests/harness (all, or the named ones); the tests
/// named NAME@debug boot the debug test kernel instead, the tests named
/// NAME-kvm run their guest as L2 under KVM inside a TCG L1 guest (a static
/// guest-harness is built for L1). Fetches the pinned Linux packages and
/// busybox and builds QEMU first when needed, then the host driver
/// (build-driver), a static vfio-cxl-uapi-check (target/guest) and, for
/// NAME@debug tests, the debug kernel and the host driver for it
/// (build-test-kernel; cached). Ends with `vm-tests: N passed, M failed`;
/// exit status 1 when a test failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(after_help = "\
Environment:
  VFIO_CXL_FUZZ_SECONDS, VFIO_CXL_FUZZ_SEED, VFIO_CXL_FUZZ_ONLY
      how long host-driver-fuzz[@debug] fuzzes (default 60), with which
      seed (default: a fresh one, printed on failure), and only which
      operation kinds (default: all)")]
pub struct Args {
    /// The tests to run (default: all)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// List the VM tests and exit
    #[arg(long, conflicts_with_all = ["names", "no_build", "keep", "verbose"])]
    pub list: bool,
    /// Use the QEMU already built (`cargo xtask qemu-path`) instead of
    /// fetching the QEMU source and running build-qemu first (the driver
    /// and uapi-check are still brought up to date)
    #[arg(long)]
    pub no_build: bool,
    /// Keep every run directory (failed runs are always kept)
    #[arg(long)]
    pub keep: bool,
    /// Print the whole guest console of every run
    #[arg(short, long)]
    pub verbose: bool,
}

/// Fault benchmark of the host driver's memory region (VMs)
///
/// The fault benchmark (docs/host-driver.md, Measurements): one boot per
/// cxl-accel memory size (sparse memory-backend files), vfio-cxl-pci bound,
/// `vfio-cxl-uapi-check --bench-fault` times mmap + the first touch of
/// every 2 MiB (twice: cold and warm) and of every 4 KiB of 256 MiB, with
/// the faults taken; prints the figures and the ratios. Builds like
/// vm-test.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct BenchArgs {
    /// Use the QEMU already built (`cargo xtask qemu-path`)
    #[arg(long)]
    pub no_build: bool,
    /// cxl-accel memory sizes in MiB (default 256,4096)
    #[arg(long, value_name = "MIB,MIB", value_delimiter = ',', value_parser = crate::bench::positive)]
    pub sizes: Vec<u64>,
}

/// Where `vfio-cxl-uapi-check` is built for the guests (relative to the
/// repository; the harness's `hostdriver::GUEST_TARGET_DIR`).
const GUEST_TARGET_DIR: &str = "target/guest";
const GUEST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The kernel packages the harness extracts.
const KERNEL_PACKAGES: &[&str] = &["linux-binary-", "linux-base-", "linux-modules-"];

fn harness() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(crate::test::repo_root()).args([
        "run",
        "--quiet",
        "--package",
        "guest-harness",
        "--",
    ]);
    c
}

fn status_of(mut cmd: Command, what: &str) -> Result<std::process::ExitStatus> {
    cmd.status()
        .map_err(|e| Error::msg(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))
}

pub fn run(args: &Args) -> Result<()> {
    if args.list {
        let mut cmd = harness();
        cmd.arg("list");
        let st = status_of(cmd, "guest-harness list")?;
        return if st.success() {
            Ok(())
        } else {
            Err(Error::msg(format!("guest-harness list failed ({st})")))
        };
    }

    // Tests named NAME@debug boot the debug test kernel.
    let names = &args.names;
    let debug_kernel = names.is_empty() || names.iter().any(|n| n.ends_with("@debug"));
    let mut cmd = prepared_harness_with(!args.no_build, "vm-test", debug_kernel)?;
    // The tests named NAME-kvm run their guest as L2 under KVM in an L1
    // guest, where this harness (static) boots it.
    if names.is_empty() || names.iter().any(|n| n.ends_with("-kvm")) {
        build_static_harness()?;
    }
    if args.keep {
        cmd.arg("--keep");
    }
    if args.verbose {
        cmd.arg("-v");
    }
    cmd.args(names);
    println!("==> VM tests (guest-harness vm-test)");
    let st = status_of(cmd, "guest-harness vm-test")?;
    if st.success() {
        return Ok(());
    }
    // Test failures were reported above, ending with the summary line;
    // keep it last.
    std::process::exit(st.code().unwrap_or(1))
}

/// `cargo xtask bench-fault`.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let mut cmd = prepared_harness(!args.no_build, "bench-fault")?;
    cmd.args(crate::bench::sizes_arg(&args.sizes));
    println!("==> fault benchmark (guest-harness bench-fault)");
    let st = status_of(cmd, "guest-harness bench-fault")?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "guest-harness bench-fault failed ({st})"
        )))
    }
}

/// The static build of the series' kselftest (host-driver/scripts/
/// build-selftest; a no-op when up to date), for `host-driver-selftest`.
fn build_selftest() -> Result<()> {
    // The harness takes the binary from there instead (its SELFTEST_ENV).
    if std::env::var_os("VFIO_CXL_SELFTEST").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let script = crate::test::repo_root().join("host-driver/scripts/build-selftest");
    let mut c = Command::new(&script);
    c.stdout(std::process::Stdio::null());
    let st = status_of(c, "host-driver/scripts/build-selftest")?;
    if !st.success() {
        return Err(Error::msg(format!(
            "building the kselftest vfio_cxl_region_test failed ({st})"
        )));
    }
    Ok(())
}

/// The static `guest-harness`: the L1 side of the nested runs (the
/// chain's hw-test, the -kvm tests' nested-run), whose initramfs has no C
/// library.
pub(crate) fn build_static_harness() -> Result<()> {
    println!("==> build guest-harness (static, {GUEST_TARGET_DIR}; runs in L1 guests)");
    build_static("guest-harness")
}

/// The static guest build of vfio-cxl-uapi-check.
pub(crate) fn build_uapi_check() -> Result<()> {
    build_static("vfio-cxl-uapi-check")
}

/// Builds `package` static (crt-static, in its own target directory):
/// the guests' initramfs has no C library.
pub(crate) fn build_static(package: &str) -> Result<()> {
    let root = crate::test::repo_root();
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join(GUEST_TARGET_DIR))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--quiet", "--release", "--package", package])
        .args(["--target", GUEST_TRIPLE]);
    let st = status_of(c, &format!("build {package}"))?;
    if !st.success() {
        return Err(Error::msg(format!(
            "building the static {package} failed ({st})"
        )));
    }
    Ok(())
}

/// Builds what the guests need and returns `guest-harness <command>` with
/// the environment options (QEMU, firmware, cache, kernel .debs) set.
pub(crate) fn prepared_harness(build: bool, command: &str) -> Result<Command> {
    prepared_harness_with(build, command, false)
}

/// [`prepared_harness`], and with `debug_kernel` the debug test kernel
/// (built when its fragment changed) and the host driver for it, passed
/// as `--debug-kernel`.
pub(crate) fn prepared_harness_with(
    build: bool,
    command: &str,
    debug_kernel: bool,
) -> Result<Command> {
    if build {
        println!("==> fetch the pinned sources");
        crate::fetch::run(&crate::fetch::Args::of(crate::fetch::Target::All))?;
        println!("==> build QEMU");
        crate::qemu::run_build(&crate::qemu::BuildArgs::default())?;
    } else {
        println!("==> fetch the pinned Linux packages");
        crate::fetch::run(&crate::fetch::Args::of(crate::fetch::Target::Linux))?;
    }
    println!("==> build the host driver");
    crate::driver::run_build(&crate::driver::Args::default())?;
    println!("==> build the guest driver (cxl-type2-ref)");
    crate::guest_driver::build(false)?;
    println!("==> build vfio-cxl-uapi-check (static, {GUEST_TARGET_DIR})");
    build_uapi_check()?;
    println!(
        "==> build vfio-cxl-cmdline (static, {GUEST_TARGET_DIR}; the nested chain's L1 runs it)"
    );
    build_static("vfio-cxl-cmdline")?;
    println!("==> build the kselftest vfio_cxl_region_test (static, patches/linux)");
    build_selftest()?;
    let debug = if debug_kernel {
        println!("==> the debug test kernel (cargo xtask build-test-kernel)");
        let k = crate::test_kernel::ensure()?;
        crate::test_kernel::build_host_driver(&k)?;
        Some(k.dir)
    } else {
        None
    };

    let mut cmd = harness_command(command)?;
    if let Some(dir) = debug {
        cmd.arg("--debug-kernel").arg(dir);
    }
    Ok(cmd)
}

/// `guest-harness <command>` with the environment options (QEMU, firmware,
/// cache, the pinned kernel .debs) set; builds nothing.
pub(crate) fn harness_command(command: &str) -> Result<Command> {
    let env_pins = std::env::var(pins::PINS_ENV).ok();
    let eff = Pins::load(&pins::default_path())?
        .effective(&Overrides::parse(&[], env_pins.as_deref())?)?;
    let cache = Cache::from_env()?;
    let debs_dir = cache.linux_debs_dir(&eff.linux.upstream);
    let qemu = {
        let exe =
            std::env::current_exe().map_err(|e| Error::io("cannot find the xtask binary", e))?;
        let out = Command::new(exe)
            .arg("qemu-path")
            .output()
            .map_err(|e| Error::io("cargo xtask qemu-path", e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(Error::msg(format!(
                "cargo xtask qemu-path failed: {}",
                stderr.trim()
            )));
        }
        // e.g. the warning that QEMU was built from another series.
        eprint!("{stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let mut cmd = harness();
    cmd.arg(command)
        .arg("--qemu")
        .arg(&qemu)
        .arg("--cache")
        .arg(cache.root())
        .arg("--linux-debs")
        .arg(&debs_dir)
        .arg("--abi")
        .arg(&eff.linux.abi);
    for dir in crate::qemu::FIRMWARE_DIRS {
        cmd.arg("--firmware-dir").arg(dir);
    }
    for d in eff
        .linux
        .debs
        .iter()
        .filter(|d| KERNEL_PACKAGES.iter().any(|p| d.package.starts_with(p)))
    {
        cmd.arg("--kernel-deb").arg(debs_dir.join(d.file_name()));
    }
    Ok(cmd)
}
