//! `guest-harness`'s command line (clap): the commands, their options, and
//! the option groups several commands share. `main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::bench_bw;
use crate::env::{EnvOptions, GuestKernel};
use crate::error::{Error, Result};
use crate::hw::{AccelChoice, HwArgs};

#[derive(Debug, Parser)]
#[command(
    name = "guest-harness",
    disable_help_subcommand = true,
    about = "Boots the pinned Debian kernel under QEMU with a generated initramfs and \
             collects typed results from the guest (docs/guest-harness.md)",
    after_help = "Exit status: 0 when everything passed, 1 when a test or check failed, \
                  2 on bad usage or when the harness could not run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the VM tests
    List,
    /// Run the VM tests (all, or the named ones); ends with `vm-tests: N
    /// passed, M failed`
    VmTest(VmTestArgs),
    /// One boot with a payload and a topology
    Run(RunArgs),
    /// Build the initramfs of a payload only
    Initramfs(InitramfsArgs),
    /// (inside an L1 guest) boot L2 from prebuilt files under KVM (default)
    /// and forward its results as fact lines (nested_run.rs)
    NestedRun(NestedRunArgs),
    /// The nested chain: L1 runs hw-test with -device vfio-cxl on
    /// cxl-accel, L2 the coherence checks (docs/nested-chain.md)
    Chain(ChainArgs),
    /// The coherence suite on a real device bound to vfio-cxl-pci
    /// (docs/real-hardware.md)
    ///
    /// Preflight checks, an outside pattern written through VFIO, a guest
    /// booted with -device vfio-cxl,host=BDF running the reference guest
    /// driver cxl-type2-ref and the coherence checks, the guest's data read
    /// back through VFIO.
    HwTest(HwArgs),
    /// The fault benchmark: one boot per cxl-accel memory size, mmap + first
    /// touch per 2 MiB and per 4 KiB; the figures and the ratio of the last
    /// size to the first
    BenchFault(BenchFaultArgs),
    /// The bandwidth benchmark: one boot, memcpy to guest RAM, the
    /// vfio-user-cxl window and a cxl-type3 window; medians, b/a, c/a
    BenchBw(BenchBwCommand),
    /// The start-up benchmark: QEMU start to first instruction and peak RSS,
    /// vfio-user-cxl against vfio-user-pci on the same server, at 256 MiB
    /// and 128 GiB; medians and ratios
    BenchStartup(BenchStartupArgs),
    /// The main job's boot: topology, coherence suite, bandwidth; prints (or
    /// writes) the report; exit status 1 when something failed
    Demo(DemoArgs),
}

/// Where QEMU and its firmware come from.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Environment")]
pub struct QemuArgs {
    /// QEMU binary (default: $VFIO_CXL_QEMU, else `cargo xtask qemu-path`)
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// A -L directory; repeatable (default: `cargo xtask qemu-path
    /// --firmware-args`)
    #[arg(long = "firmware-dir", value_name = "DIR")]
    pub firmware_dirs: Vec<PathBuf>,
}

/// Where the pinned kernel comes from.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Environment")]
pub struct KernelArgs {
    /// Cache directory (default: as `cargo xtask cache-dir`)
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The kernel .debs (default: <cache>/sources/linux/<upstream of
    /// pins.toml>)
    #[arg(long, value_name = "DIR")]
    pub linux_debs: Option<PathBuf>,
    /// Kernel ABI (default: linux.abi of pins.toml)
    #[arg(long, value_name = "ABI")]
    pub abi: Option<String>,
    /// Use this linux-binary/-base/-modules .deb; repeatable (default: found
    /// in --linux-debs)
    #[arg(long = "kernel-deb", value_name = "FILE")]
    pub kernel_debs: Vec<PathBuf>,
}

/// The debug test kernel, for the tests named NAME@debug.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Environment")]
pub struct DebugKernelArgs {
    /// The debug test kernel (`cargo xtask build-test-kernel --print-dir`;
    /// cargo xtask vm-test passes it)
    #[arg(long, value_name = "DIR")]
    pub debug_kernel: Option<PathBuf>,
    /// The host driver built for it (default:
    /// target/debug-kernel/host-driver)
    #[arg(long, value_name = "DIR")]
    pub debug_host_driver: Option<PathBuf>,
}

/// What every command that boots the pinned kernel under QEMU takes.
#[derive(Debug, Clone, Default, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub qemu: QemuArgs,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Keep every run directory (failed runs are always kept)
    #[arg(long, help_heading = "Environment")]
    pub keep: bool,
}

impl EnvArgs {
    pub fn options(&self) -> EnvOptions {
        let mut o = EnvOptions {
            keep: self.keep,
            ..EnvOptions::default()
        };
        self.qemu.apply(&mut o);
        self.kernel.apply(&mut o);
        o
    }

    /// [`EnvArgs::options`] with the debug kernel.
    pub fn options_with(&self, debug: &DebugKernelArgs) -> EnvOptions {
        let mut o = self.options();
        o.debug_kernel.clone_from(&debug.debug_kernel);
        o.debug_host_driver.clone_from(&debug.debug_host_driver);
        o
    }
}

impl QemuArgs {
    pub fn apply(&self, o: &mut EnvOptions) {
        o.qemu.clone_from(&self.qemu);
        // None: the default directories.
        o.firmware_dirs = (!self.firmware_dirs.is_empty()).then(|| self.firmware_dirs.clone());
    }
}

impl KernelArgs {
    pub fn apply(&self, o: &mut EnvOptions) {
        o.cache.clone_from(&self.cache);
        o.linux_debs.clone_from(&self.linux_debs);
        o.abi.clone_from(&self.abi);
        o.kernel_debs.clone_from(&self.kernel_debs);
    }
}

#[derive(Debug, Args)]
pub struct VmTestArgs {
    /// The tests to run (default: all; `guest-harness list` shows them)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Print the whole console of every run
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub debug: DebugKernelArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A VM test name (its payload and whole spec) or a payload TOML file
    #[arg(long, value_name = "P")]
    pub payload: String,
    /// none, single-type3, a VM test name or a topology TOML file
    /// (default: the test's topology, else none)
    #[arg(long, value_name = "T")]
    pub topology: Option<String>,
    /// Hard timeout (default: the test's, else 180)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// An extra -device; repeatable
    #[arg(long = "device", value_name = "ARGS")]
    pub devices: Vec<String>,
    /// An extra QEMU argument; repeatable
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// An extra kernel command line word; repeatable
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    pub cmdline: Vec<String>,
    /// Guest RAM
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Guest vCPUs
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub smp: Option<u32>,
    /// The kernel to boot (default: the test's, else debian)
    #[arg(long, value_enum)]
    pub kernel: Option<GuestKernel>,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
    /// Print the whole console of the run
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub debug: DebugKernelArgs,
}

#[derive(Debug, Args)]
pub struct InitramfsArgs {
    /// A VM test name (its payload) or a payload TOML file
    #[arg(long, value_name = "P")]
    pub payload: String,
    /// Where to write the archive
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The kernel whose modules go in (default: debian)
    #[arg(long, value_enum, default_value_t)]
    pub kernel: GuestKernel,
    #[command(flatten)]
    pub kernel_source: KernelArgs,
    #[command(flatten)]
    pub debug: DebugKernelArgs,
}

/// The bandwidth benchmark's options (bench-bw, demo, nested-run
/// bench-bw).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Bandwidth")]
pub struct BenchBwArgs {
    /// Copy sizes in MiB (default 1,4,16)
    #[arg(long, value_name = "MIB,MIB...", value_delimiter = ',', value_parser = positive_mib)]
    pub sizes: Option<Vec<u64>>,
    /// Copies per size and target (default 7)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: Option<u32>,
    /// Let guest RAM use transparent huge pages (default: 4 KiB pages, as
    /// the window's mapping)
    #[arg(long)]
    pub thp: bool,
}

impl BenchBwArgs {
    pub fn params(&self) -> bench_bw::Params {
        let d = bench_bw::Params::default();
        bench_bw::Params {
            sizes_mib: self.sizes.clone().unwrap_or(d.sizes_mib),
            repeats: self.repeats.unwrap_or(d.repeats),
            thp: self.thp,
            ..d
        }
    }

    fn given(&self) -> bool {
        self.sizes.is_some() || self.repeats.is_some() || self.thp
    }
}

/// One `--sizes` item: a positive number of MiB.
pub fn positive_mib(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a positive number of MiB".into()),
    }
}

/// `--l2-accel`: L2 runs under KVM or TCG inside L1.
fn l2_accel(s: &str) -> std::result::Result<AccelChoice, String> {
    match s {
        "kvm" => Ok(AccelChoice::Kvm),
        "tcg" => Ok(AccelChoice::Tcg),
        _ => Err("kvm or tcg".into()),
    }
}

#[derive(Debug, Args)]
pub struct NestedRunArgs {
    /// What L2 runs
    #[arg(value_name = "RUN", value_parser = ["coherence", "bench-bw"])]
    pub run: String,
    /// L2's kernel
    #[arg(long, value_name = "K")]
    pub vmlinuz: PathBuf,
    /// L2's initramfs
    #[arg(long, value_name = "I")]
    pub initrd: PathBuf,
    /// L2 under KVM (the default) or TCG
    #[arg(long, value_name = "kvm|tcg", value_parser = l2_accel)]
    pub l2_accel: Option<AccelChoice>,
    /// L2's -cpu instead of max,-hypervisor
    #[arg(long, value_name = "CPU")]
    pub l2_cpu: Option<String>,
    #[command(flatten)]
    pub qemu: QemuArgs,
    #[command(flatten)]
    pub bench: BenchBwArgs,
}

impl NestedRunArgs {
    /// The L2 run, and the bench-bw options only with bench-bw.
    pub fn l2_run(&self) -> Result<crate::nested_run::L2Run> {
        if self.run != "bench-bw" && self.bench.given() {
            return Err(Error::msg(format!(
                "nested-run {}: --sizes, --repeats and --thp are bench-bw's",
                self.run
            )));
        }
        crate::nested_run::L2Run::parse(&self.run, &self.bench.params())
    }
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    /// L2 under KVM inside L1 (the default) or TCG
    #[arg(long, value_name = "kvm|tcg", value_parser = l2_accel)]
    pub l2_accel: Option<AccelChoice>,
    /// L1 on the debug test kernel (--debug-kernel), its QEMU on iommufd
    /// and the VFIO cdev (docs/nested-chain.md, "iommufd")
    #[arg(long)]
    pub iommufd: bool,
    #[command(flatten)]
    pub env: EnvArgs,
    /// L1's kernel with --iommufd (`cargo xtask chain --iommufd` passes it)
    #[command(flatten)]
    pub debug: DebugKernelArgs,
}

#[derive(Debug, Args)]
pub struct BenchFaultArgs {
    /// cxl-accel memory sizes, one boot each (default 256,4096)
    #[arg(long, value_name = "MIB,MIB...", value_delimiter = ',', value_parser = positive_mib)]
    pub sizes: Option<Vec<u64>>,
    /// Print the whole console of a failed run
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[derive(Debug, Args)]
pub struct BenchBwCommand {
    /// Then run the same boot as L2 under KVM inside a TCG L1 guest and
    /// print both runs' ratios side by side
    #[arg(long)]
    pub kvm: bool,
    /// With --kvm: L2's -cpu instead of max,-hypervisor (docs/install.md)
    #[arg(long, value_name = "CPU", requires = "kvm")]
    pub l2_cpu: Option<String>,
    /// Write the figures as JSON
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Print the whole console of a failed run
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub bench: BenchBwArgs,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[derive(Debug, Args)]
pub struct BenchStartupArgs {
    /// Rounds of the four cases
    #[arg(long, value_name = "N", default_value_t = crate::bench_startup::DEFAULT_ROUNDS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub repeats: usize,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write the report here instead of printing it
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the report as JSON
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Print the whole console of a failed run
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub bench: BenchBwArgs,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> std::result::Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("guest-harness").chain(line.split_whitespace()))
            .map(|c| c.command)
    }

    fn refused(line: &str, want: &str) {
        let e = parse(line).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
        assert!(e.to_string().contains(want), "{line}: {e}");
    }

    /// What xtask's `harness_command` puts before every command's own
    /// options (vmtest.rs).
    const XTASK_ENV: &str = "--qemu /q/qemu-system-x86_64 --cache /c --linux-debs /c/debs \
         --abi 7.3.4+bpo-amd64 --firmware-dir /usr/share/seabios --firmware-dir /usr/share/qemu \
         --kernel-deb /c/debs/a.deb --kernel-deb /c/debs/b.deb";

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn xtask_vm_test_parses() {
        let Command::VmTest(a) = parse(&format!(
            "vm-test {XTASK_ENV} --debug-kernel /c/dk host-driver-uapi@debug --keep -v x"
        ))
        .unwrap() else {
            panic!("not vm-test")
        };
        assert_eq!(a.names, ["host-driver-uapi@debug", "x"]);
        assert!(a.verbose);
        let o = a.env.options_with(&a.debug);
        assert_eq!(o.qemu, Some("/q/qemu-system-x86_64".into()));
        assert_eq!(
            o.firmware_dirs,
            Some(vec!["/usr/share/seabios".into(), "/usr/share/qemu".into()])
        );
        assert_eq!(
            (o.cache, o.linux_debs),
            (Some("/c".into()), Some("/c/debs".into()))
        );
        assert_eq!(o.abi.as_deref(), Some("7.3.4+bpo-amd64"));
        assert_eq!(o.kernel_debs.len(), 2);
        assert_eq!(o.debug_kernel, Some("/c/dk".into()));
        assert!(o.keep);
        let Command::VmTest(a) = parse("vm-test").unwrap() else {
            panic!("not vm-test")
        };
        let o = a.env.options_with(&a.debug);
        assert!(a.names.is_empty() && o.firmware_dirs.is_none() && !o.keep);
    }

    #[test]
    fn xtask_benchmarks_demo_and_chain_parse() {
        let Command::BenchBw(a) = parse(&format!(
            "bench-bw {XTASK_ENV} --sizes 1,4 --repeats 3 --thp --kvm --l2-cpu host --json-out /j"
        ))
        .unwrap() else {
            panic!("not bench-bw")
        };
        let p = a.bench.params();
        assert_eq!((p.sizes_mib, p.repeats, p.thp), (vec![1, 4], 3, true));
        assert!(a.kvm);
        assert_eq!(a.l2_cpu.as_deref(), Some("host"));
        assert_eq!(a.json_out, Some("/j".into()));
        let Command::BenchBw(a) = parse("bench-bw").unwrap() else {
            panic!("not bench-bw")
        };
        assert_eq!(a.bench.params(), bench_bw::Params::default());

        let Command::BenchStartup(a) =
            parse(&format!("bench-startup {XTASK_ENV} --repeats 5")).unwrap()
        else {
            panic!("not bench-startup")
        };
        assert_eq!(a.repeats, 5);
        let Command::BenchFault(a) =
            parse(&format!("bench-fault {XTASK_ENV} --sizes 256,4096")).unwrap()
        else {
            panic!("not bench-fault")
        };
        assert_eq!(a.sizes, Some(vec![256, 4096]));
        let Command::Demo(a) = parse(&format!(
            "demo {XTASK_ENV} --report /r.txt --json-out /r.json"
        ))
        .unwrap() else {
            panic!("not demo")
        };
        assert_eq!(
            (a.report, a.json_out),
            (Some("/r.txt".into()), Some("/r.json".into()))
        );
        let Command::Chain(a) = parse(&format!("chain {XTASK_ENV} --keep --l2-accel tcg")).unwrap()
        else {
            panic!("not chain")
        };
        assert_eq!(a.l2_accel, Some(AccelChoice::Tcg));
        assert!(a.env.keep);
        assert!(!a.iommufd);
        // xtask's prepared_harness_with(.., true) adds --debug-kernel.
        let Command::Chain(a) =
            parse(&format!("chain {XTASK_ENV} --debug-kernel /c/dk --iommufd")).unwrap()
        else {
            panic!("not chain")
        };
        assert!(a.iommufd);
        assert_eq!(
            a.env.options_with(&a.debug).debug_kernel,
            Some("/c/dk".into())
        );
    }

    /// The words of the `guest-harness` command in an L1 step (shell; its
    /// single quotes dropped, as the shell would for these plain words).
    fn harness_words(step: &str) -> String {
        let joined = step.replace("\\\n", " ");
        let line = joined
            .lines()
            .find(|l| l.contains("/guest-harness "))
            .expect("a guest-harness line");
        let start = line.find("/guest-harness ").unwrap() + "/guest-harness ".len();
        line[start..].split(">&3").next().unwrap().replace('\'', "")
    }

    #[test]
    fn nested_run_parses_as_l1_runs_it() {
        use crate::nested_run::{l1_step, L2Run};
        let params = bench_bw::Params {
            sizes_mib: vec![1, 4],
            repeats: 3,
            thp: true,
            no_avx: false,
        };
        for (run, accel, cpu) in [
            (L2Run::Coherence, AccelChoice::Kvm, None),
            (L2Run::BenchBw(params), AccelChoice::Tcg, Some("host")),
        ] {
            let line = harness_words(&l1_step(&run, accel, cpu));
            let Command::NestedRun(a) = parse(&line).unwrap() else {
                panic!("{line}: not nested-run")
            };
            assert_eq!(a.l2_run().unwrap(), run, "{line}");
            assert_eq!(
                (a.l2_accel, a.l2_cpu.as_deref()),
                (Some(accel), cpu),
                "{line}"
            );
            assert!(
                a.qemu.qemu.is_some() && !a.qemu.firmware_dirs.is_empty(),
                "{line}"
            );
        }
        let Command::NestedRun(a) = parse(
            "nested-run bench-bw --sizes 1 --repeats 3 --thp --l2-accel kvm --l2-cpu host \
             --qemu /opt/nested/qemu-system-x86_64 --firmware-dir /opt/nested/firmware \
             --vmlinuz /opt/nested/vmlinuz --initrd /opt/nested/l2-initrd.cpio",
        )
        .unwrap() else {
            panic!("not nested-run")
        };
        assert_eq!(a.l2_accel, Some(AccelChoice::Kvm));
        assert_eq!(a.vmlinuz, PathBuf::from("/opt/nested/vmlinuz"));
        let crate::nested_run::L2Run::BenchBw(p) = a.l2_run().unwrap() else {
            panic!("not bench-bw")
        };
        assert_eq!((p.sizes_mib, p.repeats, p.thp), (vec![1], 3, true));
        let Command::NestedRun(a) =
            parse("nested-run coherence --l2-accel tcg --qemu /q --vmlinuz /v --initrd /i")
                .unwrap()
        else {
            panic!("not nested-run")
        };
        assert_eq!(a.l2_run().unwrap(), crate::nested_run::L2Run::Coherence);
        let Command::NestedRun(a) =
            parse("nested-run coherence --sizes 1 --vmlinuz /v --initrd /i").unwrap()
        else {
            panic!("not nested-run")
        };
        assert!(a.l2_run().unwrap_err().to_string().contains("bench-bw's"));
    }

    #[test]
    fn run_and_initramfs_parse_as_the_docs_show_them() {
        // docs/guest-harness.md, docs/testing.md, docs/benchmarks.md.
        let Command::Run(a) = parse(
            "run --payload my.toml --topology topo.toml --timeout 60 --json --kernel debug \
             --debug-kernel /dk --keep --qemu-arg -object \
             --qemu-arg memory-backend-file,id=bm,share=on --device cxl-type3,x --cmdline a=1 \
             --memory 2048 --smp 4",
        )
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(
            (a.payload.as_str(), a.topology.as_deref()),
            ("my.toml", Some("topo.toml"))
        );
        assert_eq!(
            (a.timeout, a.json, a.kernel),
            (Some(60), true, Some(GuestKernel::Debug))
        );
        assert_eq!(
            a.qemu_args,
            ["-object", "memory-backend-file,id=bm,share=on"]
        );
        assert_eq!((a.devices.len(), a.cmdline.len()), (1, 1));
        assert_eq!((a.memory, a.smp), (Some(2048), Some(4)));
        assert_eq!(a.debug.debug_kernel, Some("/dk".into()));
        let Command::Initramfs(a) =
            parse("initramfs --payload cxl-type3-enumeration -o /tmp/initrd.cpio").unwrap()
        else {
            panic!("not initramfs")
        };
        assert_eq!(
            (a.output, a.kernel),
            ("/tmp/initrd.cpio".into(), GuestKernel::Debian)
        );
        assert!(matches!(parse("list").unwrap(), Command::List));
    }

    #[test]
    fn another_commands_options_are_refused() {
        refused("", "Usage");
        refused("frobnicate", "frobnicate");
        refused("list --keep", "--keep");
        refused("list -v", "-v");
        refused("vm-test --payload x", "--payload");
        refused("vm-test --sizes 1", "--sizes");
        refused("run", "--payload <P>");
        refused("run --payload x --sizes 1", "--sizes");
        refused("run --payload x --kernel linux", "linux");
        refused("initramfs --payload x", "--output <FILE>");
        refused("initramfs --payload x -o f --qemu /q", "--qemu");
        refused("chain -v", "-v");
        refused("chain --l2-accel hvf", "kvm or tcg");
        refused("chain --payload x", "--payload");
        refused("bench-startup --sizes 1", "--sizes");
        refused("bench-startup --repeats 0", "--repeats");
        refused("bench-fault --repeats 3", "--repeats");
        refused("bench-fault --sizes 0", "--sizes");
        refused("bench-bw --l2-cpu host", "--kvm");
        refused("bench-bw --report /r", "--report");
        refused("demo --kvm", "--kvm");
        refused("nested-run coherence --vmlinuz /v", "--initrd <I>");
        refused("nested-run l3 --vmlinuz /v --initrd /i", "l3");
        refused(
            "nested-run coherence --vmlinuz /v --initrd /i --keep",
            "--keep",
        );
        refused("hw-test --bdf 3b:00.0 --payload x", "--payload");
    }
}
