//! `cargo xtask bench-bw`: the bandwidth benchmark of guest-tests/harness
//! (`guest-harness bench-bw`, src/bench_bw.rs), built and run like
//! `bench-fault` (vmtest.rs): the same builds, the same harness options.
//! A benchmark, not a test; figures in docs/benchmarks.md.

use crate::error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask bench-bw [--no-build] [--sizes MIB,MIB...] [--repeats N] [--thp] [--kvm [--l2-cpu CPU]] [--json-out FILE]

The bandwidth benchmark (docs/benchmarks.md): one boot with the vfio-user
software Type-2 device behind -device vfio-user-cxl (reference guest
driver, /dev/cxl-type2-ref0) and a stock cxl-type3 on a second host
bridge (a RAM region created through sysfs, /dev/daxX.Y); memcpy to and
from (a) guest RAM, (b) the vfio-user-cxl window, (c) the cxl-type3
window, interleaved. Prints median MB/s per target, b/a and c/a, and a
`bench-bw json:` line (also written to --json-out). Exit status 1 when
b/a < 0.9. Builds like vm-test (--no-build: QEMU as built).

options:
  --sizes MIB,...  copy sizes (default 1,4,16)
  --repeats N      copies per size and target (default 7)
  --thp            let guest RAM use transparent huge pages (default: 4 KiB
                   pages, as the window's mapping)
  --kvm            then run the same boot as L2 under KVM inside a TCG L1
                   guest (kvm_amd on TCG's nested SVM) and print both runs'
                   ratios side by side; the JSON then has both
  --l2-cpu CPU     with --kvm: L2's -cpu instead of max,-hypervisor (e.g.
                   host, host,-hypervisor; docs/install.md)
  --json-out FILE  write the figures as JSON
";

pub fn run_bw(args: &[String]) -> Result<()> {
    let flags = ["--thp", "--kvm"];
    let valued = ["--sizes", "--repeats", "--json-out", "--l2-cpu"];
    let Some((build, pass)) = parse("bench-bw", USAGE, &flags, &valued, args)? else {
        return Ok(());
    };
    let mut cmd = crate::vmtest::prepared_harness(build, "bench-bw")?;
    if pass.iter().any(|a| a == "--kvm") {
        crate::vmtest::build_static_harness()?;
    }
    run(
        cmd.args(&pass),
        "bench-bw",
        "bandwidth benchmark",
        "failed or b/a < 0.9",
    )
}

/// The options of a harness benchmark: `--no-build`, `-h`, `flags`
/// passed on as they are and `valued` passed on with their value.
/// `None` when the usage was printed.
fn parse(
    command: &str,
    usage: &str,
    flags: &[&str],
    valued: &[&str],
    args: &[String],
) -> Result<Option<(bool, Vec<String>)>> {
    let mut build = true;
    let mut pass = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--no-build" => build = false,
            "-h" | "--help" => {
                print!("{usage}");
                return Ok(None);
            }
            a if flags.contains(&a) => pass.push(arg.clone()),
            a if valued.contains(&a) => {
                let v = it.next().ok_or_else(|| {
                    Error::usage(format!("{command}: {arg} needs a value\n{usage}"))
                })?;
                pass.extend([arg.clone(), v.clone()]);
            }
            other => {
                return Err(Error::usage(format!(
                    "{command}: unexpected argument {other}\n{}",
                    usage.trim_end()
                )))
            }
        }
    }
    Ok(Some((build, pass)))
}

/// Runs the prepared `guest-harness <command>`; `failed` says what a
/// non-zero exit means.
fn run(cmd: &mut std::process::Command, command: &str, what: &str, failed: &str) -> Result<()> {
    println!("==> {what} (guest-harness {command})");
    let st = cmd
        .status()
        .map_err(|e| Error::msg(format!("cannot run guest-harness {command}: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "guest-harness {command} {failed} ({st})"
        )))
    }
}

const STARTUP_USAGE: &str = "\
usage: cargo xtask bench-startup [--no-build] [--repeats N]

The start-up benchmark (docs/benchmarks.md): QEMU's start to the guest's
first instruction (-S, until QMP answers query-status) and QEMU's peak
RSS, for -device vfio-user-cxl against QEMU's plain -device vfio-user-pci
on the same software Type-2 server, at 256 MiB and 128 GiB (sparse
files); N rounds (default 7), the four cases in turn in each. Prints the
medians, vfio-user-cxl/vfio-user-pci at each size (goal <= 1.05) and
128 GiB/256 MiB for each device. Builds like vm-test.
";

pub fn run_startup(args: &[String]) -> Result<()> {
    let Some((build, pass)) = parse("bench-startup", STARTUP_USAGE, &[], &["--repeats"], args)?
    else {
        return Ok(());
    };
    let mut cmd = crate::vmtest::prepared_harness(build, "bench-startup")?;
    run(
        cmd.args(&pass),
        "bench-startup",
        "start-up benchmark",
        "failed",
    )
}
