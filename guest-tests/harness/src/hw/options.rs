//! `hw-test`'s command line: the usage text, the options and their
//! defaults, the parsing and checking of the arguments.

use std::path::PathBuf;
use std::time::Duration;

use super::{GUEST_SEED, OUTSIDE_SEED};
use crate::cli::{KernelArgs, QemuArgs};
use crate::env::EnvOptions;
use crate::error::{Error, Result};

/// `hw-test`'s options, as clap parses them; [`HwArgs::options`] checks
/// them into [`HwOptions`].
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 pass, 1 a check failed, 2 usage, 3 a preflight check failed."
)]
pub struct HwArgs {
    /// The device (0000:3b:00.0 or 3b:00.0)
    #[arg(long, value_name = "BDF")]
    bdf: String,
    /// Guest kernel (default: the pinned Debian kernel from the cache)
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Guest initramfs (default: built from the pinned kernel's modules,
    /// cxl-type2-ref.ko and vfio-cxl-uapi-check)
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// KVM when /dev/kvm creates a VM (auto), else TCG
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// Guest RAM
    #[arg(long, value_name = "MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(256..))]
    memory: u64,
    /// Guest vCPUs
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    smp: u32,
    /// Hard timeout of the guest run
    #[arg(long, value_name = "SECONDS", default_value_t = 900, value_parser = number)]
    timeout: u64,
    /// TCG translation buffer (default: QEMU's)
    #[arg(long, value_name = "MIB", value_parser = number)]
    tb_size: Option<u64>,
    /// The device memory holds pattern N (checked before writing)
    #[arg(long, value_name = "N", value_parser = number)]
    expect_seed: Option<u64>,
    /// The outside writes the --expect-seed pattern only once the device is
    /// open here: say READY in the memory and wait for its GO word (the
    /// nested chain)
    #[arg(long, requires = "expect_seed")]
    handshake: bool,
    /// The pattern written for the guest
    #[arg(long, value_name = "N", default_value_t = OUTSIDE_SEED, value_parser = number)]
    write_seed: u64,
    /// The pattern the guest writes back
    #[arg(long, value_name = "N", default_value_t = GUEST_SEED, value_parser = number)]
    guest_seed: u64,
    /// The guest plays N ping-pong rounds with a process outside (only when
    /// something outside answers: the nested chain)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = number)]
    ping_pong: u64,
    /// After the checks, the guest starts N Secondary Bus Resets of the
    /// device's root port with the window live, and the run checks that
    /// QEMU unmapped the window before each reset of the device (the
    /// nested chain)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = number)]
    sbr_rounds: u64,
    /// An extra word for the guest kernel's command line (e.g.
    /// cxl_core.dyndbg=+p); repeatable
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    guest_cmdline: Vec<String>,
    /// Prefix for /sys and /dev in the preflight checks (tests)
    #[arg(long, value_name = "DIR", default_value = "/")]
    sysfs_root: PathBuf,
    /// Stop after the preflight checks
    #[arg(long)]
    preflight_only: bool,
    /// Also print the results as harness fact lines on stdout
    #[arg(long)]
    facts: bool,
    /// Copy the guest's console to stderr while it runs (prefix "guest
    /// <seconds> | ")
    #[arg(long)]
    follow: bool,
    /// Keep the guest's run directory
    #[arg(long)]
    keep: bool,
    /// The guest's CXL options as vfio-cxl-cmdline prints them for this one
    /// device (-M cxl-fmw..., pxb-cxl, cxl-rp, -device vfio-cxl,host=BDF),
    /// instead of the built-in ones (the nested chain)
    #[arg(last = true, value_name = "ARG")]
    cxl_args: Vec<String>,
    #[command(flatten)]
    qemu: QemuArgs,
    /// Where the default kernel comes from (as for vm-test)
    #[command(flatten)]
    kernel_source: KernelArgs,
}

/// A number, decimal or 0x hex.
fn number(v: &str) -> std::result::Result<u64, String> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
    .ok_or_else(|| "not a number (decimal or 0x hex)".into())
}

/// Which accelerator the guest runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// Everything `hw-test` was asked to do.
#[derive(Debug, Clone)]
pub struct HwOptions {
    pub bdf: String,
    pub env: EnvOptions,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub accel: AccelChoice,
    pub memory_mib: u64,
    pub smp: u32,
    pub timeout: Duration,
    pub tb_size_mib: Option<u64>,
    pub expect_seed: Option<u64>,
    /// The outside writes `expect_seed` after our open (READY/GO words).
    pub handshake: bool,
    pub write_seed: u64,
    pub guest_seed: u64,
    pub ping_pong: u64,
    /// Secondary Bus Resets the guest starts after its checks.
    pub sbr_rounds: u64,
    pub root: PathBuf,
    pub preflight_only: bool,
    pub facts: bool,
    /// Copy the guest's console to stderr while it runs.
    pub follow: bool,
    /// Extra words for the guest's kernel command line.
    pub guest_cmdline: Vec<String>,
    /// The guest's CXL options (after `--`); empty: the built-in topology.
    pub cxl_args: Vec<String>,
}

/// `3b:00.0` -> `0000:3b:00.0`; anything else that is not
/// `DDDD:BB:SS.F` (hex, function 0-7) is refused.
pub fn normalize_bdf(s: &str) -> Result<String> {
    let full = if s.matches(':').count() == 1 {
        format!("0000:{s}")
    } else {
        s.to_string()
    };
    let bad = || {
        Error::msg(format!(
            "--bdf {s:?} is not a PCI address (DDDD:BB:SS.F, e.g. 0000:3b:00.0)"
        ))
    };
    let (dom, rest) = full.split_once(':').ok_or_else(bad)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (slot, func) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |v: &str, n: usize| v.len() == n && v.chars().all(|c| c.is_ascii_hexdigit());
    let slot_ok = hex(slot, 2) && u8::from_str_radix(slot, 16).is_ok_and(|v| v < 32);
    if !(hex(dom, 4)
        && hex(bus, 2)
        && slot_ok
        && matches!(func, "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7"))
    {
        return Err(bad());
    }
    Ok(full.to_ascii_lowercase())
}

impl HwArgs {
    /// The options, checked where clap cannot.
    pub fn options(self) -> Result<HwOptions> {
        if self.write_seed == self.guest_seed {
            return Err(Error::msg(
                "--write-seed and --guest-seed must differ (the read-back could not tell them apart)",
            ));
        }
        let mut env = EnvOptions {
            keep: self.keep,
            ..EnvOptions::default()
        };
        self.qemu.apply(&mut env);
        self.kernel_source.apply(&mut env);
        Ok(HwOptions {
            bdf: normalize_bdf(&self.bdf)?,
            env,
            kernel: self.kernel,
            initrd: self.initrd,
            accel: self.accel,
            memory_mib: self.memory,
            smp: self.smp,
            timeout: Duration::from_secs(self.timeout),
            tb_size_mib: self.tb_size,
            expect_seed: self.expect_seed,
            handshake: self.handshake,
            write_seed: self.write_seed,
            guest_seed: self.guest_seed,
            ping_pong: self.ping_pong,
            sbr_rounds: self.sbr_rounds,
            root: self.sysfs_root,
            preflight_only: self.preflight_only,
            facts: self.facts,
            follow: self.follow,
            guest_cmdline: self.guest_cmdline,
            cxl_args: self.cxl_args,
        })
    }
}

/// Parses `hw-test`'s arguments (without the command word), as
/// `guest-harness hw-test` does: for tests.
#[cfg(test)]
pub fn parse_args(args: &[String]) -> std::result::Result<HwArgs, clap::Error> {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct HwTest {
        #[command(flatten)]
        args: HwArgs,
    }
    HwTest::try_parse_from(std::iter::once("hw-test").chain(args.iter().map(String::as_str)))
        .map(|c| c.args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::tests::args;

    const BDF: &str = "0000:3b:00.0";

    #[test]
    fn bdfs_are_normalized_or_refused() {
        assert_eq!(normalize_bdf("3b:00.0").unwrap(), "0000:3b:00.0");
        assert_eq!(normalize_bdf("0001:3B:1f.7").unwrap(), "0001:3b:1f.7");
        for bad in [
            "",
            "3b:00",
            "3b.00.0",
            "0000:3b:20.0",
            "0000:3b:00.8",
            "zz:00.0",
            "0000:3b:00.0x",
        ] {
            let e = normalize_bdf(bad).unwrap_err().to_string();
            assert!(e.contains("not a PCI address"), "{bad}: {e}");
        }
    }

    fn options(line: &str) -> Result<HwOptions> {
        parse_args(&args(line))
            .map_err(|e| Error::msg(e.to_string()))?
            .options()
    }

    #[test]
    fn arguments_are_parsed_and_checked() {
        let o = options(
            "--bdf 3b:00.0 --qemu /q --firmware-dir /a --firmware-dir /b --kernel /k --initrd /i \
             --accel tcg --memory 512 --smp 1 --timeout 60 --tb-size 128 --expect-seed 0x10 \
             --write-seed 5 --guest-seed 6 --ping-pong 100 --facts --keep --preflight-only \
             --guest-cmdline a=1 --guest-cmdline b",
        )
        .unwrap();
        assert_eq!(o.bdf, BDF);
        assert_eq!(o.env.qemu, Some("/q".into()));
        assert_eq!(o.env.firmware_dirs, Some(vec!["/a".into(), "/b".into()]));
        assert_eq!(
            (o.kernel.unwrap(), o.initrd.unwrap()),
            ("/k".into(), "/i".into())
        );
        assert_eq!(o.accel, AccelChoice::Tcg);
        assert_eq!((o.memory_mib, o.smp, o.timeout.as_secs()), (512, 1, 60));
        assert_eq!((o.tb_size_mib, o.expect_seed), (Some(128), Some(16)));
        assert_eq!((o.write_seed, o.guest_seed, o.ping_pong), (5, 6, 100));
        assert!(o.facts && o.env.keep && o.preflight_only);
        assert_eq!(o.guest_cmdline, ["a=1", "b"]);
        assert!(o.cxl_args.is_empty());
        let o = options("--bdf 3b:00.0 --facts -- -M cxl=on -device x,y").unwrap();
        assert_eq!(o.cxl_args, ["-M", "cxl=on", "-device", "x,y"]);
        assert!(o.facts);
        let d = options("--bdf 3b:00.0").unwrap();
        assert_eq!((d.memory_mib, d.smp, d.timeout.as_secs()), (1024, 2, 900));
        assert_eq!((d.write_seed, d.guest_seed), (OUTSIDE_SEED, GUEST_SEED));
        assert_eq!(
            (d.accel, d.root.clone()),
            (AccelChoice::Auto, PathBuf::from("/"))
        );
        assert!(d.env.firmware_dirs.is_none() && !d.env.keep);

        for (a, want) in [
            ("", "--bdf <BDF>"),
            ("--bdf", "--bdf <BDF>"),
            ("--bdf 3b:00.0 --memory lots", "lots"),
            ("--bdf 3b:00.0 --accel hvf", "hvf"),
            ("--bdf 3b:00.0 --smp 0", "--smp"),
            ("--bdf 3b:00.0 --memory 64", "--memory"),
            ("--bdf 3b:00.0 --write-seed 1 --guest-seed 1", "must differ"),
            ("--bdf 3b:00.0 --bogus", "--bogus"),
            ("--bdf 3b:0.0", "not a PCI address"),
            ("--bdf 3b:00.0 --handshake", "--expect-seed"),
            // vm-test's and run's options are not hw-test's.
            ("--bdf 3b:00.0 -v", "-v"),
            ("--bdf 3b:00.0 --debug-kernel /dk", "--debug-kernel"),
            ("--bdf 3b:00.0 --json", "--json"),
        ] {
            let e = options(a).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }

    #[test]
    fn the_nested_chains_command_line_parses() {
        // nested::hw_test_step, with its shell variables filled in.
        let line = crate::nested::hw_test_step(AccelChoice::Kvm);
        let words: Vec<String> = line
            .lines()
            .skip_while(|l| !l.contains("guest-harness hw-test"))
            .flat_map(|l| l.trim_end_matches('\\').split_whitespace())
            .skip(2)
            .take_while(|w| *w != ">&3")
            .map(|w| match w {
                "\"$dev\"" => BDF.to_string(),
                "\"$@\"" => "-device".to_string(),
                w => w.to_string(),
            })
            .collect();
        let o = parse_args(&words).unwrap().options().unwrap();
        assert_eq!((o.bdf.as_str(), o.accel), (BDF, AccelChoice::Kvm));
        assert!(o.handshake && o.follow && o.facts && o.expect_seed.is_some());
        assert_eq!(o.cxl_args, ["-device"]);
    }
}
