//! `cargo xtask bench-bw` and `cargo xtask bench-startup`: the bandwidth
//! and start-up benchmarks of guest-tests/harness (`guest-harness
//! bench-bw`, src/bench_bw.rs; `guest-harness bench-startup`), built and
//! run like `bench-fault` (vmtest.rs): the same builds, the same harness
//! options. Benchmarks, not tests; figures in docs/benchmarks.md.

use crate::error::{Error, Result};

/// memcpy bandwidth: guest RAM vs vfio-user-cxl vs cxl-type3 window (VM)
///
/// The bandwidth benchmark (docs/benchmarks.md): one boot with the
/// vfio-user software Type-2 device behind -device vfio-user-cxl
/// (reference guest driver, /dev/cxl-type2-ref0) and a stock cxl-type3 on
/// a second host bridge (a RAM region created through sysfs,
/// /dev/daxX.Y); memcpy to and from (a) guest RAM, (b) the vfio-user-cxl
/// window, (c) the cxl-type3 window, interleaved. Prints median MB/s per
/// target, b/a and c/a, and a `bench-bw json:` line (also written to
/// --json-out). Exit status 1 when b/a < 0.9. Builds like vm-test.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct BwArgs {
    /// Use the QEMU already built (`cargo xtask qemu-path`)
    #[arg(long)]
    pub no_build: bool,
    /// Copy sizes in MiB (default 1,4,16)
    #[arg(long, value_name = "MIB,MIB...", value_delimiter = ',', value_parser = positive)]
    pub sizes: Vec<u64>,
    /// Copies per size and target (default 7)
    #[arg(long, value_name = "N", value_parser = positive)]
    pub repeats: Option<u64>,
    /// Let guest RAM use transparent huge pages (default: 4 KiB pages, as
    /// the window's mapping)
    #[arg(long)]
    pub thp: bool,
    /// Then run the same boot as L2 under KVM inside a TCG L1 guest
    /// (kvm_amd on TCG's nested SVM) and print both runs' ratios side by
    /// side; the JSON then has both
    #[arg(long)]
    pub kvm: bool,
    /// With --kvm: L2's -cpu instead of max,-hypervisor (e.g. host,
    /// host,-hypervisor; docs/install.md)
    #[arg(long, value_name = "CPU", requires = "kvm")]
    pub l2_cpu: Option<String>,
    /// Write the figures as JSON
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<String>,
}

impl BwArgs {
    /// The options `guest-harness bench-bw` gets.
    fn harness_args(&self) -> Vec<String> {
        let mut v = sizes_arg(&self.sizes);
        v.extend(repeats_arg(self.repeats));
        if self.thp {
            v.push("--thp".into());
        }
        if self.kvm {
            v.push("--kvm".into());
        }
        if let Some(cpu) = &self.l2_cpu {
            v.extend(["--l2-cpu".into(), cpu.clone()]);
        }
        if let Some(f) = &self.json_out {
            v.extend(["--json-out".into(), f.clone()]);
        }
        v
    }
}

/// `--sizes A,B` when sizes are given.
pub fn sizes_arg(sizes: &[u64]) -> Vec<String> {
    if sizes.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = sizes.iter().map(u64::to_string).collect();
    vec!["--sizes".into(), list.join(",")]
}

fn repeats_arg(repeats: Option<u64>) -> Vec<String> {
    repeats
        .map(|n| vec!["--repeats".into(), n.to_string()])
        .unwrap_or_default()
}

/// A count or size that must be 1 or more.
pub fn positive(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a positive number".into()),
    }
}

pub fn run_bw(args: &BwArgs) -> Result<()> {
    let mut cmd = crate::vmtest::prepared_harness(!args.no_build, "bench-bw")?;
    if args.kvm {
        crate::vmtest::build_static_harness()?;
    }
    run(
        cmd.args(args.harness_args()),
        "bench-bw",
        "bandwidth benchmark",
        "failed or b/a < 0.9",
    )
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

/// QEMU start-up and RSS: vfio-user-cxl vs vfio-user-pci, 256 MiB and 128 GiB
///
/// The start-up benchmark (docs/benchmarks.md): QEMU's start to the
/// guest's first instruction (-S, until QMP answers query-status) and
/// QEMU's peak RSS, for -device vfio-user-cxl against QEMU's plain -device
/// vfio-user-pci on the same software Type-2 server, at 256 MiB and 128 GiB
/// (sparse files); N rounds, the four cases in turn in each. Prints the
/// medians, vfio-user-cxl/vfio-user-pci at each size (goal <= 1.05) and
/// 128 GiB/256 MiB for each device. Builds like vm-test.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct StartupArgs {
    /// Use the QEMU already built (`cargo xtask qemu-path`)
    #[arg(long)]
    pub no_build: bool,
    /// Rounds (default 7)
    #[arg(long, value_name = "N", value_parser = positive)]
    pub repeats: Option<u64>,
}

pub fn run_startup(args: &StartupArgs) -> Result<()> {
    let mut cmd = crate::vmtest::prepared_harness(!args.no_build, "bench-startup")?;
    run(
        cmd.args(repeats_arg(args.repeats)),
        "bench-startup",
        "start-up benchmark",
        "failed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_gets_the_options_as_given() {
        let a = BwArgs {
            sizes: vec![1, 4],
            repeats: Some(3),
            thp: true,
            kvm: true,
            l2_cpu: Some("host".into()),
            json_out: Some("/j".into()),
            ..BwArgs::default()
        };
        assert_eq!(
            a.harness_args().join(" "),
            "--sizes 1,4 --repeats 3 --thp --kvm --l2-cpu host --json-out /j"
        );
        assert!(BwArgs::default().harness_args().is_empty());
        assert_eq!(repeats_arg(Some(5)), ["--repeats", "5"]);
    }
}
