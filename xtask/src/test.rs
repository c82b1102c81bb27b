//! `cargo xtask test`: the project's test command (README, `.ci/run`).
//!
//! Runs every check of the default tier in order and stops at the first
//! failure, naming it. Each step prints a header and its duration so a CI
//! log shows where the time goes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};

/// The test command: fmt, clippy, fuzzing, driver tier, tests
///
/// Runs, in order: rustfmt check, clippy -D warnings, a bounded cargo-fuzz
/// run of the register model (needs cargo-fuzz), the host driver tier
/// (fetch the pinned Linux packages, prepare the 7.3.4 tree, build the
/// modules, W=1/checkpatch/kernel-doc/sparse, regenerate patches/linux and
/// apply + build it in-tree; needs tools/setup-apt once), the QEMU tier
/// (patches/qemu is current, QEMU 10.2.2 builds with it; incremental in the
/// cache), the debug test kernel (build-test-kernel, cached), the VM tests
/// (the pinned kernel, and the debug kernel for NAME@debug, booted under
/// that QEMU; they need both tiers), the nested chain (kernel VFIO -> QEMU
/// -device vfio-cxl -> guest, L2 under KVM inside L1; then again with L1's
/// QEMU on iommufd and the VFIO cdev, L1 on the debug kernel), and cargo nextest
/// (unit, property and uAPI tests). Skipped parts are named at the start
/// and the end. See docs/testing.md.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// How long the register model is fuzzed
    #[arg(long, value_name = "N", default_value_t = 30)]
    fuzz_seconds: u32,
    /// Skip the fuzz run
    #[arg(long, conflicts_with = "fuzz_seconds")]
    no_fuzz: bool,
    /// Skip the host driver tier (and what needs it)
    #[arg(long)]
    no_driver: bool,
    /// Skip the QEMU tier (and what needs it)
    #[arg(long)]
    no_qemu: bool,
    /// Skip the debug test kernel, the VM tests and the nested chain
    #[arg(long)]
    no_vm: bool,
    /// Skip the nested chain
    #[arg(long)]
    no_chain: bool,
    /// Run the nested chain's L2 under TCG
    #[arg(long, conflicts_with = "no_chain")]
    chain_l2_tcg: bool,
}

impl Options {
    /// 0: no fuzz run.
    fn fuzz_seconds(&self) -> u32 {
        if self.no_fuzz {
            0
        } else {
            self.fuzz_seconds
        }
    }
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Runs one step: prints a header, runs `command`, reports its duration.
pub fn step(name: &str, command: &mut Command) -> Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    let status = command.status().map_err(|e| {
        Error::msg(format!(
            "{name}: cannot start {:?}: {e}",
            command.get_program()
        ))
    })?;
    let took = start.elapsed().as_secs_f32();
    if !status.success() {
        return Err(Error::msg(format!(
            "{name} failed ({status}) after {took:.1} s"
        )));
    }
    println!("<== {name}: ok ({took:.1} s)");
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root).args(args);
    c
}

/// What `options` leave out, with the option that did it (printed at the
/// start and the end, so a partial run never looks like a whole one).
fn skipped(options: &Options) -> Vec<String> {
    let mut v = Vec::new();
    let mut skip = |cond: bool, what: &str, why: &str| {
        if cond {
            v.push(format!("{what} ({why})"));
        }
    };
    skip(options.fuzz_seconds() == 0, "the fuzz run", "--no-fuzz");
    skip(options.no_driver, "the host driver tier", "--no-driver");
    skip(options.no_qemu, "the QEMU tier", "--no-qemu");
    skip(
        options.no_driver || options.no_qemu,
        "the meson glue",
        "needs both tiers",
    );
    let vm_why = if options.no_vm {
        "--no-vm"
    } else {
        "needs both tiers"
    };
    let vm_on = !(options.no_vm || options.no_driver || options.no_qemu);
    skip(!vm_on, "the debug test kernel and the VM tests", vm_why);
    let chain_why = if options.no_chain {
        "--no-chain"
    } else {
        vm_why
    };
    skip(!vm_on || options.no_chain, "the nested chain", chain_why);
    v
}

fn print_skipped(skipped: &[String]) {
    for s in skipped {
        println!("test: SKIPPED {s}");
    }
}

pub fn run(options: &Options) -> Result<()> {
    let root = repo_root();
    let skipped = skipped(options);
    print_skipped(&skipped);
    crate::prereqs::check_test_tools(options.fuzz_seconds() > 0)?;
    step(
        "rustfmt",
        &mut cargo(&root, &["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy",
        &mut cargo(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    )?;
    step(
        "fuzz target builds",
        &mut cargo(&root.join("crates/cxl-regs/fuzz"), &["check", "--quiet"]),
    )?;
    if options.fuzz_seconds() > 0 {
        fuzz(&root, options.fuzz_seconds())?;
    }
    let (driver, qemu_tier) = (!options.no_driver, !options.no_qemu);
    if driver {
        crate::driver::test()?;
    }
    if qemu_tier {
        qemu()?;
    }
    if driver && qemu_tier {
        meson_glue(&root)?;
    }
    if !options.no_vm && driver && qemu_tier {
        // The NAME@debug VM tests boot it (cached: a no-op unless the
        // fragment changed).
        step_with("debug test kernel (cargo xtask build-test-kernel)", || {
            crate::test_kernel::run(&crate::test_kernel::Args::default())
        })?;
        // Boots the pinned kernel under the QEMU just built (TCG).
        step_with("VM tests (cargo xtask vm-test)", || {
            crate::vmtest::run(&crate::vmtest::Args::default())
        })?;
        if !options.no_chain {
            // The headline path: kernel VFIO -> -device vfio-cxl -> guest.
            let args = crate::chain::Args {
                no_build: true,
                l2_tcg: options.chain_l2_tcg,
                ..Default::default()
            };
            let name = if options.chain_l2_tcg {
                "nested chain, L2 under TCG (cargo xtask chain --l2-tcg)"
            } else {
                "nested chain, L2 under KVM (cargo xtask chain)"
            };
            step_with(name, || crate::chain::run(&args))?;
            // The same chain with L1's QEMU on iommufd and the VFIO cdev
            // (L1 on the debug test kernel: Debian's has no IOMMUFD).
            let iommufd = crate::chain::Args {
                iommufd: true,
                ..args
            };
            step_with(
                "nested chain, L1's QEMU on iommufd (cargo xtask chain --iommufd)",
                || crate::chain::run(&iommufd),
            )?;
        }
    }
    // Last, so that its summary closes the log.
    step(
        "tests (cargo nextest)",
        &mut cargo(&root, &["nextest", "run", "--workspace", "--no-fail-fast"]),
    )?;
    print_skipped(&skipped);
    Ok(())
}

/// Runs `work` as a named step, like [`step`] does for a command.
pub fn step_with(name: &str, work: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("==> {name}");
    let start = Instant::now();
    work().map_err(|e| Error::msg(format!("{name} failed: {e}")))?;
    println!("<== {name}: ok ({:.1} s)", start.elapsed().as_secs_f32());
    Ok(())
}

/// The QEMU tier: the series is current, and QEMU builds with it.
fn qemu() -> Result<()> {
    step_with("fetch the pinned QEMU source", || {
        crate::fetch::run(&crate::fetch::Args::of(crate::fetch::Target::Qemu))
    })?;
    step_with("patches/qemu is current", crate::qemu::run_check)?;
    qemu_checkpatch()?;
    step_with("build QEMU 10.2.2 with the series", || {
        crate::qemu::run_build(&crate::qemu::BuildArgs::default())
    })?;
    step_with("QEMU's Kconfig and vfio-cxl's devices", || {
        crate::qemu::run_check_kconfig()
    })?;
    step_with(
        "QEMU's Rust doctests of the patched crates",
        crate::qemu::run_doctests,
    )
}

/// Every patch of patches/qemu passes QEMU's own scripts/checkpatch.pl
/// without errors (warnings, e.g. "does MAINTAINERS need updating?", are
/// shown but allowed).
fn qemu_checkpatch() -> Result<()> {
    let pins = crate::pins::Pins::load(&crate::pins::default_path())?;
    let src = crate::cache::Cache::from_env()?
        .unpacked_source_dir(&pins.qemu.source_package, &pins.qemu.upstream);
    let mut patches: Vec<_> = std::fs::read_dir(repo_root().join("patches/qemu"))
        .map_err(|e| Error::io("patches/qemu", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    patches.sort();
    let mut checkpatch = Command::new("perl");
    checkpatch
        .arg(src.join("scripts/checkpatch.pl"))
        .args(["--no-signoff", "-q"])
        .args(&patches);
    step("patches/qemu pass QEMU's checkpatch.pl", &mut checkpatch)
}

/// The top-level meson.build builds everything through cargo xtask (quick
/// by now: both tiers above left their builds up to date).
fn meson_glue(root: &Path) -> Result<()> {
    let build = root.join("target/meson");
    let _ = std::fs::remove_dir_all(&build);
    let mut setup = Command::new("meson");
    setup.arg("setup").arg(&build).arg(root);
    step("meson setup", &mut setup)?;
    let mut compile = Command::new("meson");
    compile.arg("compile").arg("-C").arg(&build);
    step("meson compile builds the modules and QEMU", &mut compile)?;
    let outputs = crate::driver::MODULES
        .iter()
        .chain(["qemu-path.txt"].iter());
    match outputs.into_iter().find(|o| !build.join(o).is_file()) {
        Some(missing) => Err(Error::msg(format!(
            "meson compile did not produce {missing} in {}",
            build.display()
        ))),
        None => Ok(()),
    }
}

/// A bounded coverage-guided run from the committed corpus. New inputs go
/// to a scratch directory so the checkout stays clean.
fn fuzz(root: &Path, seconds: u32) -> Result<()> {
    let crate_dir = root.join("crates/cxl-regs");
    let scratch = root.join("target/fuzz-corpus/hdm_writes");
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(scratch.display(), e))?;
    let max_time = format!("-max_total_time={seconds}");
    let scratch = scratch.to_string_lossy().into_owned();
    let mut command = cargo(
        &crate_dir,
        &[
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "hdm_writes",
            &scratch,
            "fuzz/corpus/hdm_writes",
            "--",
            &max_time,
            "-max_len=512",
        ],
    );
    let name = format!("fuzz hdm_writes ({seconds} s)");
    println!("==> {name}");
    let start = Instant::now();
    // libFuzzer is chatty: keep its log, show the summary or, on failure, the tail.
    let out = command.output().map_err(|e| {
        Error::msg(format!(
            "{name}: cannot run cargo fuzz ({e}); `cargo install --locked cargo-fuzz`, or --no-fuzz"
        ))
    })?;
    let took = start.elapsed().as_secs_f32();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<_> = log.lines().rev().take(40).collect();
        tail.iter().rev().for_each(|line| eprintln!("{line}"));
        return Err(Error::msg(format!(
            "{name} failed ({}) after {took:.1} s",
            out.status
        )));
    }
    if let Some(done) = log.lines().rfind(|l| l.starts_with("Done ")) {
        println!("{done}");
    }
    println!("<== {name}: ok ({took:.1} s)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(line: &str) -> Options {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Test {
            #[command(flatten)]
            options: Options,
        }
        Test::try_parse_from(std::iter::once("test").chain(line.split_whitespace()))
            .unwrap()
            .options
    }

    #[test]
    fn skipped_parts_are_named_with_their_option() {
        assert_eq!(skipped(&options("")), Vec::<String>::new());
        let s = skipped(&options("--no-qemu"));
        assert!(s.contains(&"the QEMU tier (--no-qemu)".to_owned()), "{s:?}");
        assert!(
            s.contains(&"the debug test kernel and the VM tests (needs both tiers)".to_owned()),
            "{s:?}"
        );
        assert!(
            s.contains(&"the nested chain (needs both tiers)".to_owned()),
            "{s:?}"
        );
        let s = skipped(&options("--no-chain --no-fuzz"));
        assert_eq!(
            s,
            ["the fuzz run (--no-fuzz)", "the nested chain (--no-chain)"]
        );
        assert_eq!(options("").fuzz_seconds(), 30);
        assert_eq!(options("--fuzz-seconds 5").fuzz_seconds(), 5);
        assert_eq!(options("--no-fuzz").fuzz_seconds(), 0);
    }

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root()
            .join("crates/cxl-regs/fuzz/Cargo.toml")
            .is_file());
    }
}
