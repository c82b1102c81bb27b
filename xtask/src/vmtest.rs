//! `cargo xtask vm-test`: the VM tests of guest-tests/harness.
//!
//! Fetches the pinned sources, builds QEMU (incremental), and runs
//! `guest-harness vm-test` with the exact pinned .deb files, the built
//! QEMU and its firmware directories. The harness prints one line per test
//! and, last, `vm-tests: N passed, M failed`; so that this summary stays
//! the last line, a failing run exits with the harness's status directly
//! instead of adding an `xtask: error:` line after it. See
//! docs/guest-harness.md.

use std::process::Command;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins};

const USAGE: &str = "\
usage: cargo xtask vm-test [--list] [--no-build] [--keep] [-v] [NAME...]

Boots the pinned Debian kernel under the project's QEMU (TCG) and runs the
VM tests of guest-tests/harness (all, or the named ones). Fetches the
pinned Linux packages and busybox and builds QEMU first when needed.
Ends with `vm-tests: N passed, M failed`; exit status 1 when a test failed.

options:
  --list       list the VM tests and exit
  --no-build   use the QEMU already built (`cargo xtask qemu-path`) instead of
               fetching the QEMU source and running build-qemu first
  --keep       keep every run directory (failed runs are always kept)
  -v           print the whole guest console of every run
";

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

pub fn run(args: &[String]) -> Result<()> {
    let mut list = false;
    let mut build = true;
    let mut passthrough = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--list" => list = true,
            "--no-build" => build = false,
            "--keep" | "-v" | "--verbose" => passthrough.push(arg.clone()),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => {
                return Err(Error::usage(format!(
                    "vm-test: unknown option {other}\n{}",
                    USAGE.trim_end()
                )))
            }
            name => passthrough.push(name.to_string()),
        }
    }
    if list {
        let mut cmd = harness();
        cmd.arg("list");
        let st = status_of(cmd, "guest-harness list")?;
        return if st.success() {
            Ok(())
        } else {
            Err(Error::msg(format!("guest-harness list failed ({st})")))
        };
    }

    if build {
        println!("==> fetch the pinned sources");
        crate::fetch::run(&["all".to_string()])?;
        println!("==> build QEMU");
        crate::qemu::run_build(&[])?;
    } else {
        println!("==> fetch the pinned Linux packages");
        crate::fetch::run(&["linux".to_string()])?;
    }

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
    cmd.arg("vm-test")
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
    cmd.args(&passthrough);
    println!("==> VM tests (guest-harness vm-test)");
    let st = status_of(cmd, "guest-harness vm-test")?;
    if st.success() {
        return Ok(());
    }
    // Test failures were reported above, ending with the summary line;
    // keep it last.
    std::process::exit(st.code().unwrap_or(1))
}
