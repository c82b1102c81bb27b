//! `cargo xtask test`: the project's test command (README, `.ci/run`).
//!
//! Runs every check of the default tier in order and stops at the first
//! failure, naming it. Each step prints a header and its duration so a CI
//! log shows where the time goes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask test [--fuzz-seconds N] [--no-fuzz] [--no-driver] [--no-qemu] [--no-vm]
                        [--no-chain] [--chain-l2-tcg]

Runs, in order: rustfmt check, clippy -D warnings, a bounded cargo-fuzz
run of the register model (default 30 s; needs cargo-fuzz), the host
driver tier (fetch the pinned Linux packages, prepare the 7.3.4 tree, build
the modules, W=1/checkpatch/kernel-doc/sparse, regenerate patches/linux and
apply + build it in-tree; needs tools/setup-apt once), the QEMU tier
(patches/qemu is current, QEMU 10.2.2 builds with it; incremental in the
cache), the debug test kernel (build-test-kernel, cached), the VM tests
(the pinned kernel, and the debug kernel for NAME@debug, booted under that
QEMU; they need both tiers), the nested chain (kernel VFIO -> QEMU
-device vfio-cxl -> guest, L2 under KVM inside L1; --chain-l2-tcg: under
TCG; then again with L1's QEMU on iommufd and the VFIO cdev, L1 on the
debug kernel), and cargo nextest (unit, property and uAPI tests). Skipped parts
are named at the start and the end. See docs/testing.md.";

#[derive(Debug)]
struct Options {
    fuzz_seconds: u32,
    driver: bool,
    qemu: bool,
    vm: bool,
    chain: bool,
    chain_l2_tcg: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        fuzz_seconds: 30,
        driver: true,
        qemu: true,
        vm: true,
        chain: true,
        chain_l2_tcg: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-fuzz" => options.fuzz_seconds = 0,
            "--no-driver" => options.driver = false,
            "--no-qemu" => options.qemu = false,
            "--no-vm" => options.vm = false,
            "--no-chain" => options.chain = false,
            "--chain-l2-tcg" => options.chain_l2_tcg = true,
            "--fuzz-seconds" => {
                let value = args
                    .next()
                    .ok_or_else(|| Error::usage("--fuzz-seconds needs a number"))?;
                options.fuzz_seconds = value.parse().map_err(|_| {
                    Error::usage(format!(
                        "--fuzz-seconds: {value:?} is not a number of seconds"
                    ))
                })?;
            }
            "-h" | "--help" => return Err(Error::usage(USAGE)),
            other => {
                return Err(Error::usage(format!(
                    "test: unknown argument {other:?}\n{USAGE}"
                )))
            }
        }
    }
    Ok(options)
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
    skip(options.fuzz_seconds == 0, "the fuzz run", "--no-fuzz");
    skip(!options.driver, "the host driver tier", "--no-driver");
    skip(!options.qemu, "the QEMU tier", "--no-qemu");
    skip(
        !(options.driver && options.qemu),
        "the meson glue",
        "needs both tiers",
    );
    let vm_why = if !options.vm {
        "--no-vm"
    } else {
        "needs both tiers"
    };
    let vm_on = options.vm && options.driver && options.qemu;
    skip(!vm_on, "the debug test kernel and the VM tests", vm_why);
    let chain_why = if !options.chain { "--no-chain" } else { vm_why };
    skip(!(vm_on && options.chain), "the nested chain", chain_why);
    v
}

fn print_skipped(skipped: &[String]) {
    for s in skipped {
        println!("test: SKIPPED {s}");
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let root = repo_root();
    let skipped = skipped(&options);
    print_skipped(&skipped);
    crate::prereqs::check_test_tools(options.fuzz_seconds > 0)?;
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
    if options.fuzz_seconds > 0 {
        fuzz(&root, options.fuzz_seconds)?;
    }
    if options.driver {
        crate::driver::test()?;
    }
    if options.qemu {
        qemu()?;
    }
    if options.driver && options.qemu {
        meson_glue(&root)?;
    }
    if options.vm && options.driver && options.qemu {
        // The NAME@debug VM tests boot it (cached: a no-op unless the
        // fragment changed).
        step_with("debug test kernel (cargo xtask build-test-kernel)", || {
            crate::test_kernel::run(&[])
        })?;
        // Boots the pinned kernel under the QEMU just built (TCG).
        step_with("VM tests (cargo xtask vm-test)", || crate::vmtest::run(&[]))?;
        if options.chain {
            // The headline path: kernel VFIO -> -device vfio-cxl -> guest.
            let mut args = vec!["--no-build".to_owned()];
            let name = if options.chain_l2_tcg {
                args.push("--l2-tcg".to_owned());
                "nested chain, L2 under TCG (cargo xtask chain --l2-tcg)"
            } else {
                "nested chain, L2 under KVM (cargo xtask chain)"
            };
            step_with(name, || crate::chain::run(&args))?;
            // The same chain with L1's QEMU on iommufd and the VFIO cdev
            // (L1 on the debug test kernel: Debian's has no IOMMUFD).
            args.push("--iommufd".to_owned());
            step_with(
                "nested chain, L1's QEMU on iommufd (cargo xtask chain --iommufd)",
                || crate::chain::run(&args),
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
        crate::fetch::run(&["qemu".to_owned()])
    })?;
    step_with("patches/qemu is current", || crate::qemu::run_check(&[]))?;
    qemu_checkpatch()?;
    step_with("build QEMU 10.2.2 with the series", || {
        crate::qemu::run_build(&[])
    })?;
    step_with("QEMU's Kconfig and vfio-cxl's devices", || {
        crate::qemu::run_check_kconfig(&[])
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_reject_bad_input() {
        assert_eq!(parse(&args(&[])).unwrap().fuzz_seconds, 30);
        assert_eq!(parse(&args(&["--no-fuzz"])).unwrap().fuzz_seconds, 0);
        assert!(parse(&args(&[])).unwrap().driver);
        assert!(!parse(&args(&["--no-driver"])).unwrap().driver);
        assert!(!parse(&args(&["--no-qemu"])).unwrap().qemu);
        assert!(!parse(&args(&["--no-vm"])).unwrap().vm);
        assert!(!parse(&args(&["--no-chain"])).unwrap().chain);
        assert!(parse(&args(&["--chain-l2-tcg"])).unwrap().chain_l2_tcg);
        assert_eq!(
            parse(&args(&["--fuzz-seconds", "5"])).unwrap().fuzz_seconds,
            5
        );
        assert!(parse(&args(&["--fuzz-seconds"])).unwrap_err().is_usage());
        assert!(parse(&args(&["--fuzz-seconds", "x"]))
            .unwrap_err()
            .is_usage());
        assert!(parse(&args(&["--bogus"])).unwrap_err().is_usage());
    }

    #[test]
    fn skipped_parts_are_named_with_their_option() {
        assert_eq!(skipped(&parse(&args(&[])).unwrap()), Vec::<String>::new());
        let s = skipped(&parse(&args(&["--no-qemu"])).unwrap());
        assert!(s.contains(&"the QEMU tier (--no-qemu)".to_owned()), "{s:?}");
        assert!(
            s.contains(&"the debug test kernel and the VM tests (needs both tiers)".to_owned()),
            "{s:?}"
        );
        assert!(
            s.contains(&"the nested chain (needs both tiers)".to_owned()),
            "{s:?}"
        );
        let s = skipped(&parse(&args(&["--no-chain", "--no-fuzz"])).unwrap());
        assert_eq!(
            s,
            ["the fuzz run (--no-fuzz)", "the nested chain (--no-chain)"]
        );
    }

    #[test]
    fn repo_root_holds_the_workspace() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root()
            .join("crates/cxl-regs/fuzz/Cargo.toml")
            .is_file());
    }
}
