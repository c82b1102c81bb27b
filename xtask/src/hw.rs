//! `cargo xtask hw-test`: the coherence suite on a real CXL Type-2 device
//! bound to vfio-cxl-pci (docs/real-hardware.md). Builds QEMU, the guest
//! driver and the static vfio-cxl-uapi-check as `vm-test` does, then runs
//! `guest-harness hw-test` with the pinned kernel and the built QEMU; every
//! argument is passed on (`--bdf BDF` is required, `--help` lists them).

use crate::error::{Error, Result};

pub fn run(args: &[String]) -> Result<()> {
    let mut build = true;
    let mut passthrough = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            _ => passthrough.push(arg.clone()),
        }
    }
    let mut cmd = crate::vmtest::prepared_harness(build, "hw-test")?;
    cmd.args(&passthrough);
    println!("==> hw-test (guest-harness hw-test)");
    let st = cmd
        .status()
        .map_err(|e| Error::msg(format!("cannot run guest-harness hw-test: {e}")))?;
    match st.code() {
        Some(0) => Ok(()),
        // The harness named the failure; keep its status (2 usage, 3 preflight).
        Some(code) => std::process::exit(code),
        None => Err(Error::msg(format!("guest-harness hw-test: {st}"))),
    }
}
