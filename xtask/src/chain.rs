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

/// The nested chain: L1 runs -device vfio-cxl on cxl-accel, L2 the coherence checks (~6 min)
///
/// The patched QEMU boots L1 (Debian 7.3.4, vfio-cxl-pci bound to the
/// emulated cxl-accel) which runs the same QEMU with -device
/// vfio-cxl,host=BDF for L2 (cxl-type2-ref and the coherence checks) under
/// KVM inside L1 (L1's kvm_amd on TCG's nested SVM); a chain that asked for
/// KVM and ran L2 under TCG fails. Data is checked byte for byte in the L0
/// backing file, through VFIO in L1 and in L2. Prints per-level results and
/// timings; exit status 1 when a level failed. docs/nested-chain.md.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Use the QEMU already built (`cargo xtask qemu-path`)
    #[arg(long)]
    pub no_build: bool,
    /// Run L2 under TCG inside L1 (slower: ~5x)
    #[arg(long)]
    pub l2_tcg: bool,
    /// L1 on the debug test kernel (Debian's has no IOMMUFD), its QEMU with
    /// -object iommufd and the device's VFIO cdev
    #[arg(long)]
    pub iommufd: bool,
    /// Keep the L1 run directory
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let mut passthrough = Vec::new();
    if args.keep {
        passthrough.push("--keep");
    }
    if args.l2_tcg {
        passthrough.extend(["--l2-accel", "tcg"]);
    }
    if args.iommufd {
        passthrough.push("--iommufd");
    }
    crate::prereqs::require_packages()?;
    // iommufd runs L1 on the debug test kernel.
    let mut cmd = crate::vmtest::prepared_harness_with(!args.no_build, "chain", args.iommufd)?;
    crate::vmtest::build_static_harness()?;
    cmd.args(&passthrough);
    println!(
        "==> nested chain (guest-harness chain{})",
        if args.iommufd { " --iommufd" } else { "" }
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
