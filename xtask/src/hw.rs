//! `cargo xtask hw-test`: the coherence suite on a real CXL Type-2 device
//! bound to vfio-cxl-pci (docs/real-hardware.md). Builds QEMU, the guest
//! driver and the static vfio-cxl-uapi-check as `vm-test` does, then runs
//! `guest-harness hw-test` with the pinned kernel and the built QEMU.

use crate::error::{Error, Result};

/// The coherence suite on a real device bound to vfio-cxl-pci (docs/real-hardware.md)
///
/// Every option but --no-build goes to `guest-harness hw-test`, which
/// checks them (--bdf BDF is required; `cargo run -p guest-harness --
/// hw-test --help` lists them).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Use the QEMU already built (`cargo xtask qemu-path`)
    #[arg(long)]
    pub no_build: bool,
    /// guest-harness hw-test's options
    #[arg(
        value_name = "HW-TEST OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub harness_args: Vec<String>,
}

impl Args {
    /// Whether to build, and the harness's options: clap ends xtask's
    /// options at the first of the harness's, so a --no-build after them
    /// (before the guest's `--`) is taken out here.
    fn split(&self) -> (bool, Vec<String>) {
        let guest = self
            .harness_args
            .iter()
            .position(|a| a == "--")
            .unwrap_or(self.harness_args.len());
        let (ours, theirs) = self.harness_args.split_at(guest);
        let no_build = self.no_build || ours.iter().any(|a| a == "--no-build");
        let mut harness: Vec<String> = ours
            .iter()
            .filter(|a| *a != "--no-build")
            .cloned()
            .collect();
        harness.extend_from_slice(theirs);
        (!no_build, harness)
    }
}

pub fn run(args: &Args) -> Result<()> {
    let (build, harness_args) = args.split();
    let mut cmd = crate::vmtest::prepared_harness(build, "hw-test")?;
    cmd.args(&harness_args);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_build_is_xtasks_wherever_it_stands() {
        let args = |v: &[&str]| Args {
            no_build: false,
            harness_args: v.iter().map(|s| s.to_string()).collect(),
        };
        let (build, rest) = args(&["--bdf", "3b:00.0", "--no-build", "--", "--no-build"]).split();
        assert!(!build);
        assert_eq!(rest, ["--bdf", "3b:00.0", "--", "--no-build"]);
        let (build, rest) = args(&["--bdf", "3b:00.0"]).split();
        assert!(build);
        assert_eq!(rest, ["--bdf", "3b:00.0"]);
    }
}
