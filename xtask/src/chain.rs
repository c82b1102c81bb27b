//! `cargo xtask chain`: the nested chain (docs/nested-chain.md).
//!
//! Builds what `vm-test` builds (QEMU, the host and guest drivers, a
//! static vfio-cxl-uapi-check) plus a static `guest-harness` (the L1 side,
//! `hw-test`, runs inside the L1 guest, whose initramfs has no libc), then
//! runs `guest-harness chain`: L0 QEMU with cxl-accel -> L1 with
//! vfio-cxl-pci and QEMU `-device vfio-cxl,host=` -> L2 with cxl-type2-ref.
//! Not part of `cargo xtask test`: 6-7 minutes here (docs/nested-chain.md).

use std::process::Command;

use crate::error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask chain [--no-build] [--keep]

The nested chain: the patched QEMU boots L1 (Debian 7.3.4, vfio-cxl-pci
bound to the emulated cxl-accel) which runs the same QEMU with
-device vfio-cxl,host=BDF for L2 (cxl-type2-ref and the coherence
checks). Data is checked byte for byte in the L0 backing file, through
VFIO in L1 and in L2. Prints per-level results and timings; exit status
1 when a level failed. docs/nested-chain.md.

options:
  --no-build   use the QEMU already built (cargo xtask qemu-path)
  --keep       keep the L1 run directory
";

/// Where the guest binaries are built static (as vmtest.rs builds
/// uapi-check).
const GUEST_TARGET_DIR: &str = "target/guest";
const GUEST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Builds `guest-harness` static (crt-static, its own target directory).
pub(crate) fn build_static_harness() -> Result<()> {
    let root = crate::test::repo_root();
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join(GUEST_TARGET_DIR))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "guest-harness",
            "--target",
            GUEST_TRIPLE,
        ]);
    let st = c
        .status()
        .map_err(|e| Error::msg(format!("cannot run cargo build: {e}")))?;
    if !st.success() {
        return Err(Error::msg(format!(
            "building the static guest-harness failed ({st})"
        )));
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut build = true;
    let mut passthrough = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            "--keep" => passthrough.push(arg.clone()),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => {
                return Err(Error::usage(format!(
                    "chain: unexpected argument {other}\n{}",
                    USAGE.trim_end()
                )))
            }
        }
    }
    let mut cmd = crate::vmtest::prepared_harness(build, "chain")?;
    println!("==> build guest-harness (static, {GUEST_TARGET_DIR}; hw-test runs in L1)");
    build_static_harness()?;
    cmd.args(&passthrough);
    println!("==> nested chain (guest-harness chain)");
    let st = cmd
        .status()
        .map_err(|e| Error::msg(format!("cannot run guest-harness chain: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("the nested chain failed ({st})")))
    }
}
