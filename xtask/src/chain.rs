//! `cargo xtask chain`: the nested chain (docs/nested-chain.md).
//!
//! Builds what `vm-test` builds (QEMU, the host and guest drivers, a
//! static vfio-cxl-uapi-check) plus a static `guest-harness` (the L1 side,
//! `hw-test`, runs inside the L1 guest, whose initramfs has no libc), then
//! runs `guest-harness chain`: L0 QEMU with cxl-accel -> L1 with
//! vfio-cxl-pci and QEMU `-device vfio-cxl,host=` -> L2 with cxl-type2-ref.
//! L2 runs under KVM inside L1 (the default, what `cargo xtask test` runs)
//! or, with `--l2-tcg`, under TCG (minutes, not seconds; measured times
//! in docs/nested-chain.md).

use crate::error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask chain [--no-build] [--l2-tcg] [--iommufd] [--keep]

The nested chain: the patched QEMU boots L1 (Debian 7.3.4, vfio-cxl-pci
bound to the emulated cxl-accel) which runs the same QEMU with
-device vfio-cxl,host=BDF for L2 (cxl-type2-ref and the coherence
checks) under KVM inside L1 (L1's kvm_amd on TCG's nested SVM); a
chain that asked for KVM and ran L2 under TCG fails. Data is checked byte for byte in the L0 backing file, through
VFIO in L1 and in L2. Prints per-level results and timings; exit status
1 when a level failed. docs/nested-chain.md.

options:
  --no-build   use the QEMU already built (cargo xtask qemu-path)
  --l2-tcg     run L2 under TCG inside L1 (slower: ~5x)
  --iommufd    L1 on the debug test kernel (Debian's has no IOMMUFD), its
               QEMU with -object iommufd and the device's VFIO cdev
  --keep       keep the L1 run directory
";

pub fn run(args: &[String]) -> Result<()> {
    let mut build = true;
    let mut iommufd = false;
    let mut passthrough = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--no-build" => build = false,
            "--keep" => passthrough.push(arg.clone()),
            "--iommufd" => {
                iommufd = true;
                passthrough.push(arg.clone());
            }
            "--l2-tcg" => passthrough.extend(["--l2-accel".to_owned(), "tcg".to_owned()]),
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
    crate::prereqs::require_packages()?;
    // iommufd runs L1 on the debug test kernel.
    let mut cmd = crate::vmtest::prepared_harness_with(build, "chain", iommufd)?;
    crate::vmtest::build_static_harness()?;
    cmd.args(&passthrough);
    println!(
        "==> nested chain (guest-harness chain{})",
        if iommufd { " --iommufd" } else { "" }
    );
    let st = cmd
        .status()
        .map_err(|e| Error::msg(format!("cannot run guest-harness chain: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("the nested chain failed ({st})")))
    }
}
