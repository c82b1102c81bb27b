//! `hw-test`'s command line: the usage text, the options and their
//! defaults, the parsing and checking of the arguments.

use std::path::PathBuf;
use std::time::Duration;

use super::{GUEST_SEED, OUTSIDE_SEED};
use crate::env::EnvOptions;
use crate::error::{Error, Result};

pub const USAGE: &str = "\
usage: guest-harness hw-test --bdf BDF [options]

Runs the coherence suite on a CXL Type-2 device bound to vfio-cxl-pci:
preflight checks, an outside pattern written through VFIO, a guest booted
with -device vfio-cxl,host=BDF running the reference guest driver
cxl-type2-ref and the coherence checks, the guest's data read back
through VFIO. docs/real-hardware.md.

options:
  --bdf BDF            the device (0000:3b:00.0 or 3b:00.0); required
  --qemu PATH          QEMU with -device vfio-cxl (default: $VFIO_CXL_QEMU, else cargo xtask qemu-path)
  --firmware-dir DIR   a -L directory for QEMU; repeatable (default: cargo xtask qemu-path --firmware-args)
  --kernel PATH        guest kernel (default: the pinned Debian kernel from the cache)
  --initrd PATH        guest initramfs (default: built from the pinned kernel's modules,
                       cxl-type2-ref.ko and vfio-cxl-uapi-check)
  --cache DIR, --linux-debs DIR, --abi ABI, --kernel-deb FILE
                       where the default kernel comes from (as for vm-test)
  --accel auto|kvm|tcg KVM when /dev/kvm creates a VM (auto, the default), else TCG
  --memory MIB         guest RAM (default 1024)
  --smp N              guest vCPUs (default 2)
  --timeout SECONDS    hard timeout of the guest run (default 900)
  --tb-size MIB        TCG translation buffer (default: QEMU's)
  --expect-seed N      the device memory holds pattern N (checked before writing)
  --handshake          the outside writes the --expect-seed pattern only once the device is
                       open here: say READY in the memory and wait for its GO word (the nested chain)
  --write-seed N       the pattern written for the guest (default 185401621)
  --guest-seed N       the pattern the guest writes back (default 185429591)
  --ping-pong N        the guest plays N ping-pong rounds with a process outside
                       (only when something outside answers: the nested chain)
  --guest-cmdline WORD an extra word for the guest kernel's command line (e.g.
                       cxl_core.dyndbg=+p); repeatable
  --sysfs-root DIR     prefix for /sys and /dev in the preflight checks (tests)
  --preflight-only     stop after the preflight checks
  --facts              also print the results as harness fact lines on stdout
  --follow             copy the guest's console to stderr while it runs (prefix \"guest <seconds> | \")
  --keep               keep the guest's run directory
  -- ARG...            the guest's CXL options as vfio-cxl-cmdline prints them for this one
                       device (-M cxl-fmw..., pxb-cxl, cxl-rp, -device vfio-cxl,host=BDF),
                       instead of the built-in ones (the nested chain)
";

/// Which accelerator the guest runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Default for HwOptions {
    fn default() -> Self {
        Self {
            bdf: String::new(),
            env: EnvOptions::default(),
            kernel: None,
            initrd: None,
            accel: AccelChoice::Auto,
            memory_mib: 1024,
            smp: 2,
            timeout: Duration::from_secs(900),
            tb_size_mib: None,
            expect_seed: None,
            handshake: false,
            write_seed: OUTSIDE_SEED,
            guest_seed: GUEST_SEED,
            ping_pong: 0,
            root: PathBuf::from("/"),
            preflight_only: false,
            facts: false,
            follow: false,
            guest_cmdline: Vec::new(),
            cxl_args: Vec::new(),
        }
    }
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

/// Parses `hw-test`'s arguments (without the command word).
pub fn parse_args(args: &[String]) -> Result<HwOptions> {
    let mut o = HwOptions::default();
    let mut it = args.iter();
    let num = |flag: &str, v: &str| -> Result<u64> {
        let parsed = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        };
        parsed.ok_or_else(|| Error::msg(format!("{flag}: {v:?} is not a number")))
    };
    let mut bdf = None;
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Error::msg(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--bdf" => bdf = Some(value()?),
            "--qemu" => o.env.qemu = Some(value()?.into()),
            "--firmware-dir" => o
                .env
                .firmware_dirs
                .get_or_insert_with(Vec::new)
                .push(value()?.into()),
            "--cache" => o.env.cache = Some(value()?.into()),
            "--linux-debs" => o.env.linux_debs = Some(value()?.into()),
            "--abi" => o.env.abi = Some(value()?),
            "--kernel-deb" => o.env.kernel_debs.push(value()?.into()),
            "--kernel" => o.kernel = Some(value()?.into()),
            "--initrd" => o.initrd = Some(value()?.into()),
            "--accel" => {
                o.accel = match value()?.as_str() {
                    "auto" => AccelChoice::Auto,
                    "kvm" => AccelChoice::Kvm,
                    "tcg" => AccelChoice::Tcg,
                    v => return Err(Error::msg(format!("--accel {v:?}: auto, kvm or tcg"))),
                }
            }
            "--memory" => o.memory_mib = num(arg, &value()?)?,
            "--smp" => {
                o.smp = u32::try_from(num(arg, &value()?)?)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::msg("--smp must be 1 or more"))?
            }
            "--timeout" => o.timeout = Duration::from_secs(num(arg, &value()?)?),
            "--tb-size" => o.tb_size_mib = Some(num(arg, &value()?)?),
            "--expect-seed" => o.expect_seed = Some(num(arg, &value()?)?),
            "--handshake" => o.handshake = true,
            "--write-seed" => o.write_seed = num(arg, &value()?)?,
            "--guest-seed" => o.guest_seed = num(arg, &value()?)?,
            "--ping-pong" => o.ping_pong = num(arg, &value()?)?,
            "--sysfs-root" => o.root = value()?.into(),
            "--preflight-only" => o.preflight_only = true,
            "--facts" => o.facts = true,
            "--follow" => o.follow = true,
            "--guest-cmdline" => o.guest_cmdline.push(value()?),
            "--keep" => o.env.keep = true,
            "--" => {
                o.cxl_args = it.by_ref().cloned().collect();
                if o.cxl_args.is_empty() {
                    return Err(Error::msg("-- needs the guest's CXL options after it"));
                }
            }
            other => return Err(Error::msg(format!("hw-test: unknown argument {other}"))),
        }
    }
    o.bdf = normalize_bdf(&bdf.ok_or_else(|| Error::msg("hw-test needs --bdf BDF"))?)?;
    if o.write_seed == o.guest_seed {
        return Err(Error::msg(
            "--write-seed and --guest-seed must differ (the read-back could not tell them apart)",
        ));
    }
    if o.memory_mib < 256 {
        return Err(Error::msg("--memory: the guest needs at least 256 MiB"));
    }
    Ok(o)
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

    #[test]
    fn arguments_are_parsed_and_checked() {
        let o = parse_args(&args(
            "--bdf 3b:00.0 --qemu /q --firmware-dir /a --firmware-dir /b --kernel /k --initrd /i \
             --accel tcg --memory 512 --smp 1 --timeout 60 --tb-size 128 --expect-seed 0x10 \
             --write-seed 5 --guest-seed 6 --ping-pong 100 --facts --keep --preflight-only \
             --guest-cmdline a=1 --guest-cmdline b",
        ))
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
        let o = parse_args(&args("--bdf 3b:00.0 --facts -- -M cxl=on -device x,y")).unwrap();
        assert_eq!(o.cxl_args, ["-M", "cxl=on", "-device", "x,y"]);
        assert!(o.facts);

        for (a, want) in [
            ("", "needs --bdf"),
            ("--bdf", "--bdf needs a value"),
            ("--bdf 3b:00.0 --memory lots", "not a number"),
            ("--bdf 3b:00.0 --accel hvf", "auto, kvm or tcg"),
            ("--bdf 3b:00.0 --smp 0", "--smp"),
            ("--bdf 3b:00.0 --memory 64", "at least 256"),
            ("--bdf 3b:00.0 --write-seed 1 --guest-seed 1", "must differ"),
            ("--bdf 3b:00.0 --bogus", "unknown argument --bogus"),
            ("--bdf 3b:0.0", "not a PCI address"),
            ("--bdf 3b:00.0 --", "-- needs the guest's CXL options"),
        ] {
            let e = parse_args(&args(a)).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
