//! `guest-harness hw-test`: the coherence suite on a real CXL Type-2
//! device bound to `vfio-cxl-pci` (docs/real-hardware.md).
//!
//! ```text
//! preflight (sysfs, /dev/vfio, binaries, /dev/kvm) -> the CXL_MEM region through the uAPI
//! -> outside pattern into the device memory through VFIO (and the one found there checked)
//! -> VFIO closed; QEMU -device vfio-cxl,host=BDF boots the guest (cxl-type2-ref + coherence)
//! -> VFIO reopened: the guest's pattern, counter and checksum read back
//! ```
//!
//! One VFIO owner at a time: this process closes the device before QEMU
//! opens it, and opens it again after QEMU exited. The nested chain
//! (`nested.rs`) runs the same command inside its L1 guest, where the
//! "hardware" is the emulated `cxl-accel`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vfio_cxl_uapi_check::checks::{Ctx, Options};
use vfio_cxl_uapi_check::coherence;
use vfio_cxl_uapi_check::pattern;

use crate::env::{Env, EnvOptions};
use crate::error::{Error, Result};
use crate::guestdriver::{
    guest_driver_dir, parse_probe, RegionScan, RegionScanner, CHAR_DEV, MODULE,
};
use crate::hostdriver::uapi_check_binary;
use crate::payload::{build_initramfs, Payload, Source};
use crate::qemu::{Endpoint, HostBridge, Machine, RootPort, Topology, Vm, Window};
use crate::runner::{self, RunOutcome};
use crate::sysfs::{self, CxlSysfs};
use crate::vmtests::CXL_MODULES;

/// The host's VFIO variant driver the device must be bound to.
pub const HOST_DRIVER: &str = "vfio-cxl-pci";
/// Pattern written into the device memory before the boot (the guest
/// must find it in every word).
pub const OUTSIDE_SEED: u64 = 0x0b0d_0115;
/// Pattern the guest leaves in every word for the read-back.
pub const GUEST_SEED: u64 = 0x0b0d_6e57;
/// Exit status when a preflight check failed (nothing was booted).
pub const EXIT_PREFLIGHT: u8 = 3;
/// Exit status on bad usage.
pub const EXIT_USAGE: u8 = 2;

const GUEST_DIR: &str = "/opt/hw-test";

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
  --expect-seed N      the device memory already holds pattern N (checked before writing)
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
            write_seed: OUTSIDE_SEED,
            guest_seed: GUEST_SEED,
            ping_pong: 0,
            root: PathBuf::from("/"),
            preflight_only: false,
            facts: false,
            follow: false,
            guest_cmdline: Vec::new(),
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
            "--write-seed" => o.write_seed = num(arg, &value()?)?,
            "--guest-seed" => o.guest_seed = num(arg, &value()?)?,
            "--ping-pong" => o.ping_pong = num(arg, &value()?)?,
            "--sysfs-root" => o.root = value()?.into(),
            "--preflight-only" => o.preflight_only = true,
            "--facts" => o.facts = true,
            "--follow" => o.follow = true,
            "--guest-cmdline" => o.guest_cmdline.push(value()?),
            "--keep" => o.env.keep = true,
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

/// One preflight check: what, whether it passed, what was found, and how
/// to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the preflight found out besides pass/fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    pub findings: Vec<Finding>,
    /// `vvvv:dddd` of the device (the guest looks for it).
    pub id: Option<String>,
    /// KVM usable.
    pub kvm: bool,
}

impl Preflight {
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn open_rw(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().read(true).write(true).open(p)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The file-level checks (no ioctl): the device in sysfs, its binding,
/// its IOMMU group and VFIO nodes, the binaries, KVM. `qemu`, `kernel`
/// and `initrd` are the paths that will be used (None: built or found
/// later, not checked here).
pub fn preflight(
    o: &HwOptions,
    qemu: Option<&Path>,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
) -> Preflight {
    let mut pf = Preflight::default();
    let f = &mut pf.findings;
    let root = &o.root;
    let bdf = &o.bdf;
    let dev = root.join("sys/bus/pci/devices").join(bdf);
    let bind_fix = format!(
        "modprobe vfio-cxl-pci   # or insmod vfio-cxl-core.ko vfio-cxl-pci.ko (docs/host-driver.md)\n\
         [ -e /sys/bus/pci/devices/{bdf}/driver ] && echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind\n\
         echo {HOST_DRIVER} > /sys/bus/pci/devices/{bdf}/driver_override\n\
         echo {bdf} > /sys/bus/pci/drivers_probe"
    );
    if !dev.is_dir() {
        f.push(Finding::fail(
            "device",
            format!("{} does not exist", dev.display()),
            "check the address with lspci -D; a device behind a switch or not yet rescanned: echo 1 > /sys/bus/pci/rescan",
        ));
    } else {
        let v = read_trim(&dev.join("vendor"));
        let d = read_trim(&dev.join("device"));
        if let (Some(v), Some(d)) = (&v, &d) {
            pf.id = Some(format!(
                "{}:{}",
                v.trim_start_matches("0x"),
                d.trim_start_matches("0x")
            ));
        }
        f.push(Finding::pass(
            "device",
            format!(
                "{bdf} ({})",
                pf.id.as_deref().unwrap_or("vendor/device unreadable")
            ),
        ));
        match link_name(&dev.join("driver")) {
            Some(drv) if drv == HOST_DRIVER => {
                f.push(Finding::pass("driver", format!("bound to {HOST_DRIVER}")))
            }
            Some(drv) => f.push(Finding::fail(
                "driver",
                format!("bound to {drv}, not {HOST_DRIVER}"),
                bind_fix.clone(),
            )),
            None => f.push(Finding::fail(
                "driver",
                format!("not bound to any driver (needs {HOST_DRIVER})"),
                bind_fix.clone(),
            )),
        }
        match link_name(&dev.join("iommu_group")) {
            None => f.push(Finding::fail(
                "iommu-group",
                format!("{bdf} has no IOMMU group"),
                "enable the IOMMU: VT-d/AMD-Vi in the firmware and intel_iommu=on (or amd_iommu=on) on the kernel command line",
            )),
            Some(g) => {
                f.push(Finding::pass("iommu-group", format!("group {g}")));
                // Every device of the group must be bound to a VFIO driver
                // (or to none) for the group to be viable.
                let members = root.join(format!("sys/kernel/iommu_groups/{g}/devices"));
                let others: Vec<String> = fs::read_dir(&members)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != bdf)
                    .filter(|n| {
                        link_name(&root.join("sys/bus/pci/devices").join(n).join("driver"))
                            .is_some_and(|d| !d.starts_with("vfio"))
                    })
                    .collect();
                if !others.is_empty() {
                    f.push(Finding::fail(
                        "iommu-group-viable",
                        format!("group {g} also holds {others:?}, bound to non-VFIO drivers"),
                        "bind every device of the group to vfio-pci (driver_override), or move the device to a slot with its own group",
                    ));
                }
                for node in ["dev/vfio/vfio".to_string(), format!("dev/vfio/{g}")] {
                    let p = root.join(&node);
                    match open_rw(&p) {
                        Ok(_) => f.push(Finding::pass("vfio-node", format!("/{node} read-write"))),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            f.push(Finding::fail(
                                "vfio-node",
                                format!("/{node} does not exist"),
                                "modprobe vfio vfio_iommu_type1; the group node appears when the device binds to a VFIO driver",
                            ))
                        }
                        Err(e) => f.push(Finding::fail(
                            "vfio-node",
                            format!("/{node}: {e}"),
                            "run as root, or give this user the node (chown) and a memlock limit of guest RAM + device memory (ulimit -l)",
                        )),
                    }
                }
            }
        }
    }
    for (name, path, fix) in [
        (
            "qemu",
            qemu,
            "build it: cargo xtask build-qemu, or pass --qemu",
        ),
        (
            "kernel",
            kernel,
            "pass --kernel, or omit it to use the pinned kernel",
        ),
        ("initrd", initrd, "pass --initrd, or omit it to build one"),
    ] {
        let Some(p) = path else { continue };
        let ok = if name == "qemu" {
            executable(p)
        } else {
            p.is_file()
        };
        if ok {
            f.push(Finding::pass(name, p.display().to_string()));
        } else {
            f.push(Finding::fail(
                name,
                format!(
                    "{} is not a readable file{}",
                    p.display(),
                    if name == "qemu" {
                        " with execute permission"
                    } else {
                        ""
                    }
                ),
                fix,
            ));
        }
    }
    let kvm = match o.accel {
        AccelChoice::Tcg => Err("--accel tcg".to_string()),
        AccelChoice::Auto | AccelChoice::Kvm => kvm_usable(&root.join("dev/kvm")),
    };
    pf.kvm = kvm.is_ok();
    match (o.accel, kvm) {
        (AccelChoice::Kvm, Err(why)) => f.push(Finding::fail(
            "kvm",
            format!("--accel kvm, but /dev/kvm is not usable: {why}"),
            "load kvm_intel/kvm_amd, enable virtualization in the firmware, or use --accel auto",
        )),
        (_, Ok(())) => f.push(Finding::pass("kvm", "/dev/kvm creates VMs: KVM")),
        (AccelChoice::Tcg, Err(_)) => f.push(Finding::pass("kvm", "TCG (--accel tcg)")),
        (AccelChoice::Auto, Err(why)) => f.push(Finding::pass(
            "kvm",
            format!(
                "notice: /dev/kvm is not usable ({why}), the guest runs under TCG (much slower)"
            ),
        )),
    }
    pf
}

/// `KVM_GET_API_VERSION`, `KVM_CREATE_VM` (`_IO(0xAE, 0)`, `_IO(0xAE, 1)`).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: libc::c_int = 12;

/// KVM works when `node` opens read-write, speaks API version 12 and
/// creates a VM (the VM's fd is closed again at once).
fn kvm_usable(node: &Path) -> std::result::Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let f = open_rw(node).map_err(|e| format!("open: {e}"))?;
    // SAFETY: both ioctls take no argument and only return an int; `f`
    // is a valid open fd for the call's duration.
    let version = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "KVM_GET_API_VERSION: {}",
            if version < 0 {
                std::io::Error::last_os_error().to_string()
            } else {
                format!("version {version}, expected {KVM_API_VERSION}")
            }
        ));
    }
    // SAFETY: as above.
    let vm = unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!(
            "KVM_CREATE_VM: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(vm) });
    Ok(())
}

/// The CXL_MEM region through the uAPI (needs the real device): its size.
pub fn uapi_probe(bdf: &str) -> std::result::Result<u64, String> {
    let ctx = Ctx::open(bdf, Options::default()).map_err(|e| e.to_string())?;
    Ok(ctx.mem.size)
}

/// The guest's side: CXL modules, the reference guest driver, the
/// coherence checks. Generic: the device id, seeds and rounds come from
/// the kernel command line (`hwtest.*`, [`guest_cmdline`]), so one
/// initramfs serves any device.
pub fn guest_payload() -> Payload {
    let mut p = Payload::new("hw-test-guest");
    for m in CXL_MODULES {
        p = p.module(m);
    }
    p.file(
        &format!("{GUEST_DIR}/{MODULE}.ko"),
        0o644,
        Source::Path {
            src: guest_driver_dir().join(format!("{MODULE}.ko")),
        },
    )
    .file(
        &format!("{GUEST_DIR}/vfio-cxl-uapi-check"),
        0o755,
        Source::Path {
            src: uapi_check_binary(),
        },
    )
    .step("params", PARAMS_SH)
    .step("bind", GUEST_BIND_SH)
    .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
    .step("coherence", GUEST_COHERENCE_SH)
    .step("report-dmesg", GUEST_DMESG_SH)
}

/// `hwtest.id=vvvv:dddd hwtest.expect=N hwtest.write=N hwtest.pingpong=N`.
pub fn guest_cmdline(id: &str, expect: u64, write: u64, ping_pong: u64) -> Vec<String> {
    vec![
        format!("hwtest.id={id}"),
        format!("hwtest.expect={expect}"),
        format!("hwtest.write={write}"),
        format!("hwtest.pingpong={ping_pong}"),
    ]
}

const PARAMS_SH: &str = r#"read -r cmdline </proc/cmdline
for w in $cmdline; do
	case "$w" in hwtest.*=*) k=${w%%=*}; echo "${w#*=}" >/tmp/${k#hwtest.} ;; esac
done
for k in id expect write pingpong; do
	[ -r /tmp/$k ] || { echo "hwtest.$k missing from the kernel command line"; exit 1; }
	read -r v </tmp/$k; vfiocxl_fact "param.$k" "$v"
done
"#;

const GUEST_BIND_SH: &str = r#"read -r id </tmp/id
have() { [ -e "$1" ]; }
# The port decoders, not an endpoint: a Type-2 device's endpoint only
# appears once its driver bound. Every poll forks `sleep`: slow when nested.
i=0
while [ $i -lt 600 ] && ! have /sys/bus/cxl/devices/port*/decoder*; do sleep 0.1; i=$((i + 1)); done
vfiocxl_fact port_wait_polls $i
have /sys/bus/cxl/devices/port*/decoder* || { echo "no CXL port decoders"; exit 1; }
dev=
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor; read -r p <$d/device
	[ "${v#0x}:${p#0x}" = "$id" ] && dev=${d##*/}
done
[ -n "$dev" ] || { echo "no PCI device $id in the guest"; exit 1; }
echo $dev >/tmp/bdf
vfiocxl_fact accel.bdf "$dev"
echo cxl-type2-ref >/sys/bus/pci/devices/$dev/driver_override
insmod /opt/hw-test/cxl-type2-ref.ko || exit 1
echo $dev >/sys/bus/pci/drivers_probe 2>/dev/null
i=0
while [ $i -lt 200 ] && ! have /dev/cxl-type2-ref0; do sleep 0.1; i=$((i + 1)); done
have /dev/cxl-type2-ref0 || { echo "$dev did not bind to cxl-type2-ref"; dmesg | tail -n 30; exit 1; }
l=$(readlink /sys/bus/pci/devices/$dev/driver); vfiocxl_fact accel.driver "${l##*/}"
vfiocxl_fact t2.chardev /dev/cxl-type2-ref0
read -r s </sys/class/misc/cxl-type2-ref0/size && vfiocxl_fact t2.size "$s"
true
"#;

const GUEST_COHERENCE_SH: &str = r#"read -r e </tmp/expect; read -r w </tmp/write; read -r n </tmp/pingpong
/opt/hw-test/vfio-cxl-uapi-check --coherence-dev /dev/cxl-type2-ref0 --expect-seed $e --write-seed $w --ping-pong $n >&3
"#;

const GUEST_DMESG_SH: &str = r#"dmesg -r >/tmp/dmesg
while IFS= read -r l; do
	case "$l" in *cxl* | *CXL*) vfiocxl_fact dmesg "$l" ;; esac
done </tmp/dmesg
true
"#;

/// The guest's machine: `pxb-cxl` (with an HDM decoder, for the
/// pre-commit) + `cxl-rp` + `-device vfio-cxl,host=BDF`, one window of at
/// least 4 GiB and twice the region.
pub fn guest_topology(bdf: &str, region_size: u64) -> Topology {
    let region_mib = region_size.div_ceil(1 << 20);
    let window_mib = (2 * region_mib).next_power_of_two().max(4096);
    Topology {
        host_bridges: vec![HostBridge {
            id: "cxl.1".into(),
            bus_nr: 12,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: "rp0".into(),
                port: 0,
                chassis: 0,
                slot: 2,
                endpoint: Some(Endpoint::Device {
                    args: format!("vfio-cxl,host={bdf},bus={{bus}},id=vcxl0"),
                }),
            }],
        }],
        windows: vec![Window {
            targets: vec!["cxl.1".into()],
            size_mib: window_mib,
            granularity: None,
        }],
        devices: Vec::new(),
    }
}

/// The guest's results checked: bound, the region the guest's CXL core
/// assembled inside its window, every coherence check passed.
/// `topology` is what QEMU was given: the guest must report that window
/// (size) and host bridge (the root decoder's target).
pub fn check_guest(
    outcome: &RunOutcome,
    topology: &Topology,
    region_size: u64,
    ping_pong: u64,
) -> Vec<String> {
    let mut p = outcome.problems();
    let r = &outcome.report;
    if r.fact("accel.driver") != Some(MODULE) {
        p.push(format!(
            "guest: device bound to {:?}, expected {MODULE}",
            r.fact("accel.driver")
        ));
    }
    if r.fact("t2.size") != Some(&region_size.to_string()) {
        p.push(format!(
            "guest: {CHAR_DEV} size {:?}, expected {region_size}",
            r.fact("t2.size")
        ));
    }
    let probes: Vec<_> = r
        .facts("dmesg")
        .into_iter()
        .filter_map(parse_probe)
        .collect();
    let s = CxlSysfs::from_report(r);
    match (probes.as_slice(), s.named("region").as_slice()) {
        ([probe], [region]) => {
            let target = s.attr(region, "target0").unwrap_or("");
            if s.attr(region, "commit") != Some("1")
                || s.attr_u64(region, "resource") != Some(probe.1)
                || s.attr_u64(region, "size") != Some(region_size)
                || s.attr(target, "devtype") != Some("cxl_decoder_endpoint")
            {
                p.push(format!(
                    "guest: region {region} is not the driver's committed region: {:?}, probe {probe:?}",
                    s.devices.get(*region)
                ));
            }
            let window = s.iomem_named("CXL Window 0");
            if !window.is_some_and(|w| w.start <= probe.1 && probe.2 <= w.end) {
                p.push(format!(
                    "guest: the region {:#x}-{:#x} is not inside CXL Window 0 ({window:?})",
                    probe.1, probe.2
                ));
            }
            let roots = s.of_type("cxl_decoder_root");
            if !roots.iter().any(|d| {
                window.is_some_and(|w| {
                    s.attr_u64(d, "start") == Some(w.start)
                        && s.attr_u64(d, "size") == Some(w.size())
                })
            }) {
                p.push(format!(
                    "guest: no root decoder matches CXL Window 0 (root decoders {roots:?})"
                ));
            }
            // QEMU mapped the device memory straight into the window at
            // the region's address (trace event vfio_cxl_map).
            let mapped = format!(
                "device memory mapped at {:#x}+{:#x}",
                probe.1,
                probe.2 + 1 - probe.1
            );
            if !outcome.stderr.lines().any(|l| l.contains(&mapped)) {
                p.push(format!(
                    "QEMU: no vfio_cxl_map trace line '{mapped}' (the direct mapping of the region)"
                ));
            }
            // The topology QEMU built: the window's size, its host bridge.
            let want_size = topology.windows.first().map(|w| w.size_mib << 20);
            if window.map(|w| w.size()) != want_size {
                p.push(format!(
                    "guest: CXL Window 0 is {:?} bytes, QEMU was given {want_size:?}",
                    window.map(|w| w.size())
                ));
            }
            let bus = topology.host_bridges.first().map(|h| h.bus_nr.to_string());
            if !roots
                .iter()
                .any(|d| s.attr(d, "target_list") == bus.as_deref())
            {
                p.push(format!(
                    "guest: no root decoder targets host bridge {bus:?} (pxb-cxl bus_nr)"
                ));
            }
        }
        (probes, regions) => p.push(format!(
            "guest: {} probe messages and regions {regions:?}, expected one of each",
            probes.len()
        )),
    }
    for l in crate::hostdriver::dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("guest: error-level kernel message: {}", l.text));
    }
    let ran: Vec<(&str, &str)> = r.all_facts_of_step("coherence").collect();
    for c in coherence::CHECKS {
        if c == "ping_pong" && ping_pong == 0 {
            continue;
        }
        let key = format!("coherence.{c}");
        match ran.iter().find(|(k, _)| *k == key) {
            Some((_, v)) if v.starts_with("pass: ") => {}
            Some((_, v)) => p.push(format!("guest: {key}: {v}")),
            None => p.push(format!("guest: {key} did not run")),
        }
    }
    p
}

/// Scans `read(offset)` over `size` bytes with a [`RegionScanner`].
pub fn scan_words(size: u64, seed: u64, mut read: impl FnMut(u64) -> u64) -> RegionScan {
    let mut scanner = RegionScanner::new(size, seed);
    for o in (0..size).step_by(8) {
        scanner.word(o, read(o));
    }
    scanner.finish()
}

/// Opens the device, maps its CXL memory, runs `f` on the mapping.
fn with_memory<T>(
    bdf: &str,
    f: impl FnOnce(&vfio_cxl_uapi_check::vfio::Mapping, u64) -> T,
) -> std::result::Result<T, String> {
    let ctx = Ctx::open(bdf, Options::default()).map_err(|e| e.to_string())?;
    let size = ctx.mem.size;
    let map = ctx
        .dev
        .mmap(
            size as usize,
            ctx.mem.offset,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| format!("mmap of the CXL memory region: {e}"))?;
    Ok(f(&map, size))
}

/// Reports results: a line on stderr, and a fact line on stdout with
/// `--facts`.
struct Out {
    facts: bool,
}

impl Out {
    fn fact(&self, key: &str, value: &str) {
        if self.facts {
            println!(
                "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":\"hw-test\",\"key\":{},\"value\":{}}}",
                serde_json::Value::from(key),
                serde_json::Value::from(value)
            );
        }
    }

    fn say(&self, line: &str) {
        eprintln!("hw-test: {line}");
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// `guest-harness hw-test ARGS`: the exit status (0 pass, 1 a check
/// failed, 2 usage, 3 preflight).
pub fn main(args: &[String]) -> u8 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return 0;
    }
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hw-test: {e}\n\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let out = Out { facts: o.facts };
    match run(&o, &out) {
        Ok(code) => code,
        Err(e) => {
            out.say(&format!("FAIL: {e}"));
            out.fact("hw.result", &format!("FAIL: {e}"));
            1
        }
    }
}

/// The resolved boot files: given paths, or the pinned kernel and a
/// built initramfs.
struct Boot {
    qemu: PathBuf,
    firmware_dirs: Vec<PathBuf>,
    kernel: PathBuf,
    initrd: PathBuf,
    _built: Option<tempfile::TempDir>,
}

fn resolve_boot(o: &HwOptions) -> Result<Boot> {
    let explicit_qemu = o
        .env
        .qemu
        .clone()
        .or_else(|| crate::hostdriver::env_path(crate::env::QEMU_ENV));
    if let (Some(qemu), Some(kernel), Some(initrd), Some(fw)) =
        (&explicit_qemu, &o.kernel, &o.initrd, &o.env.firmware_dirs)
    {
        return Ok(Boot {
            qemu: qemu.clone(),
            firmware_dirs: fw.clone(),
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            _built: None,
        });
    }
    let env = Env::prepare(&o.env)?;
    let (initrd, built) = match &o.initrd {
        Some(i) => (i.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("hw-test-initrd-")
                .tempdir()
                .map_err(|e| Error::io("cannot create a directory for the initramfs", e))?;
            let ir = build_initramfs(&guest_payload(), &env.kernel, &env.busybox)?;
            let path = dir.path().join("initrd.cpio");
            fs::write(&path, ir.archive.to_bytes())
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            (path, Some(dir))
        }
    };
    Ok(Boot {
        qemu: env.qemu.clone(),
        firmware_dirs: env.firmware_dirs.clone(),
        kernel: o.kernel.clone().unwrap_or_else(|| env.kernel.vmlinuz()),
        initrd,
        _built: built,
    })
}

fn run(o: &HwOptions, out: &Out) -> Result<u8> {
    let start = Instant::now();
    // Cheap checks first, so a missing binding is reported before any build.
    let early = preflight(
        o,
        o.env.qemu.as_deref(),
        o.kernel.as_deref(),
        o.initrd.as_deref(),
    );
    if !report_preflight(&early, out) {
        return Ok(EXIT_PREFLIGHT);
    }
    let boot = resolve_boot(o)?;
    let pf = preflight(o, Some(&boot.qemu), Some(&boot.kernel), Some(&boot.initrd));
    let id = pf.id.clone().unwrap_or_default();
    let size = match uapi_probe(&o.bdf) {
        Ok(size) => {
            out.say(&format!("preflight cxl-mem-region: pass: {size:#x} bytes"));
            out.fact("hw.preflight.cxl-mem-region", &format!("pass: {size:#x}"));
            size
        }
        Err(e) => {
            let why = format!("the CXL_MEM region through the uAPI: {e}");
            out.say(&format!("preflight cxl-mem-region: FAIL: {why}"));
            out.say("  fix: the device must be bound to vfio-cxl-pci with a committed CXL region (dmesg | grep vfio-cxl)");
            out.fact("hw.preflight.cxl-mem-region", &format!("FAIL: {why}"));
            out.fact("hw.result", "FAIL: preflight");
            return Ok(EXIT_PREFLIGHT);
        }
    };
    if o.preflight_only {
        out.fact("hw.result", "pass: preflight only");
        out.say("preflight passed (--preflight-only)");
        return Ok(0);
    }
    let mut problems = Vec::new();

    // Outside -> device: check what the outside left, write our pattern.
    let t = Instant::now();
    let expect = o.expect_seed;
    let write = o.write_seed;
    let prepared = with_memory(&o.bdf, |m, size| {
        let mut bad = 0u64;
        for off in (0..size).step_by(8) {
            if let Some(seed) = expect {
                if m.read_u64(off as usize) != pattern::word(seed, off) {
                    bad += 1;
                }
            }
            m.write_u64(off as usize, pattern::word(write, off));
        }
        bad
    });
    match prepared {
        Ok(bad) => {
            if let Some(seed) = expect {
                let v = if bad == 0 {
                    format!("pass: pattern {seed} in all {} words", size / 8)
                } else {
                    format!("FAIL: {bad} of {} words lack pattern {seed}", size / 8)
                };
                if bad != 0 {
                    problems.push(format!("outside pattern: {v}"));
                }
                out.say(&format!("outside_pattern: {v}"));
                out.fact("hw.outside_pattern", &v);
            }
            let v = format!(
                "pass: pattern {write} in all {} words ({} s)",
                size / 8,
                secs(t.elapsed())
            );
            out.say(&format!("write_pattern: {v}"));
            out.fact("hw.write_pattern", &v);
        }
        Err(e) => {
            out.fact("hw.write_pattern", &format!("FAIL: {e}"));
            return Err(Error::msg(format!(
                "writing the device memory through VFIO: {e}"
            )));
        }
    }

    // The guest.
    let machine = Machine {
        accel: if pf.kvm { "kvm".into() } else { "tcg".into() },
        cpu: if pf.kvm {
            "host".into()
        } else {
            "max,-hypervisor".into()
        },
        smp: o.smp,
        memory_mib: o.memory_mib,
        ..Machine::default()
    };
    out.fact("hw.accel", &machine.accel);
    // No `quiet`: the harness needs KERN_WARNING on the console to catch WARN()s.
    let mut cmdline = guest_cmdline(&id, write, o.guest_seed, o.ping_pong);
    cmdline.extend(o.guest_cmdline.iter().cloned());
    let vm = Vm {
        qemu: boot.qemu.clone(),
        firmware_dirs: boot.firmware_dirs.clone(),
        machine: Machine {
            accel: match (pf.kvm, o.tb_size_mib) {
                (false, Some(tb)) => format!("tcg,tb-size={tb}"),
                _ => machine.accel.clone(),
            },
            ..machine
        },
        topology: guest_topology(&o.bdf, size),
        kernel: boot.kernel.clone(),
        initrd: boot.initrd.clone(),
        cmdline,
        // The device's own events (not the per-access hdm_read/write).
        extra_args: [
            "realize",
            "precommit",
            "commit_failed",
            "map",
            "unmap",
            "no_window",
        ]
        .iter()
        .flat_map(|e| ["-trace".to_string(), format!("vfio_cxl_{e}")])
        .collect(),
    };
    let dir = tempfile::Builder::new()
        .prefix("hw-test-")
        .tempdir()
        .map_err(|e| Error::io("cannot create the run directory", e))?;
    let args = vm.args(
        &runner::console_path(dir.path()),
        &runner::results_path(dir.path()),
        dir.path(),
    );
    let _ = fs::write(
        dir.path().join("qemu-args.txt"),
        format!("{}\n{}\n", vm.qemu.display(), args.join("\n")),
    );
    out.say(&format!(
        "booting the guest ({}, {} MiB, -device vfio-cxl,host={})",
        vm.machine.accel, o.memory_mib, o.bdf
    ));
    let mut cmd = Command::new(&vm.qemu);
    cmd.args(&args);
    let follower = o.follow.then(|| follow(runner::console_path(dir.path())));
    let outcome = runner::run_command(cmd, dir.path(), o.timeout, runner::DONE_GRACE);
    if let Some((t, stop)) = follower {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = t.join();
    }
    let outcome = outcome?;
    out.fact("hw.guest.wall_s", &secs(outcome.wall));
    if let Some(t) = outcome.to_init {
        out.fact("hw.guest.to_init_s", &secs(t));
    }
    // The guest's timeline (its uptime at the end of each step).
    for rec in &outcome.report.records {
        if let crate::console::Record::Step {
            name, ok, uptime, ..
        } = rec
        {
            let up = uptime.map(|u| format!("{u:.1}")).unwrap_or_default();
            out.fact("hw.guest.step", &format!("{name} ok={ok} uptime={up}"));
        }
    }
    for (k, v) in outcome.report.all_facts() {
        out.fact(&format!("l2.{k}"), v);
    }
    let guest_problems = check_guest(&outcome, &vm.topology, size, o.ping_pong);
    out.say(&format!(
        "guest ran {} s (init after {}), {} problem(s)",
        secs(outcome.wall),
        outcome.to_init.map(secs).unwrap_or_else(|| "never".into()),
        guest_problems.len()
    ));
    for l in outcome.stderr.lines().take(40) {
        out.fact("hw.qemu.stderr", l);
    }
    if !guest_problems.is_empty() {
        for l in outcome.console_tail(40) {
            out.say(&format!("guest console | {l}"));
        }
        for l in outcome.stderr.lines().take(40) {
            out.say(&format!("qemu stderr | {l}"));
        }
    }
    for g in &guest_problems {
        out.fact("hw.guest.problem", g);
    }
    problems.extend(guest_problems);

    // Device -> outside: the guest's pattern, counter and checksum.
    let guest_sum = outcome
        .report
        .fact("coherence.checksum_value")
        .map(str::to_string);
    let gs = o.guest_seed;
    match with_memory(&o.bdf, |m, size| {
        scan_words(size, gs, |off| m.read_u64(off as usize))
    }) {
        Ok(rb) => {
            let sum = format!("{:#018x}", rb.checksum);
            let mut why = Vec::new();
            if rb.bad != 0 {
                why.push(format!(
                    "{} words lack the guest's pattern {gs} (first at {:#x})",
                    rb.bad,
                    rb.first_bad.unwrap_or(0)
                ));
            }
            if rb.counter != coherence::INCREMENTS {
                why.push(format!(
                    "counter {}, expected {}",
                    rb.counter,
                    coherence::INCREMENTS
                ));
            }
            if o.ping_pong > 0 && (rb.ping != o.ping_pong || rb.pong != o.ping_pong) {
                why.push(format!(
                    "ping {} pong {}, expected {}",
                    rb.ping, rb.pong, o.ping_pong
                ));
            }
            if guest_sum.as_deref() != Some(sum.as_str()) {
                why.push(format!("checksum {sum}, the guest's {guest_sum:?}"));
            }
            let v = if why.is_empty() {
                format!(
                    "pass: the guest's pattern in all {} words, counter {}, checksum {sum}",
                    size / 8 - 3,
                    rb.counter
                )
            } else {
                format!("FAIL: {}", why.join("; "))
            };
            out.say(&format!("read_back: {v}"));
            out.fact("hw.read_back", &v);
            out.fact("hw.read_back.checksum", &sum);
            if !why.is_empty() {
                problems.push(format!("read-back: {v}"));
            }
        }
        Err(e) => problems.push(format!("read-back through VFIO: {e}")),
    }

    out.fact("hw.wall_s", &secs(start.elapsed()));
    if problems.is_empty() {
        out.fact("hw.result", "pass");
        out.say(&format!("PASS in {} s", secs(start.elapsed())));
        Ok(0)
    } else {
        for p in &problems {
            out.say(&format!("problem: {p}"));
        }
        let _ = dir.keep();
        out.fact("hw.result", &format!("FAIL: {} problem(s)", problems.len()));
        out.say("FAIL");
        Ok(1)
    }
}

/// Copies new lines of `console` to stderr every 0.5 s until stopped
/// (then once more, for the last lines).
fn follow(
    console: PathBuf,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        let mut done = 0usize;
        loop {
            let last = flag.load(Ordering::Relaxed);
            if let Ok(bytes) = fs::read(&console) {
                // Whole lines only, until the end.
                let upto = if last {
                    bytes.len()
                } else {
                    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
                };
                if upto > done {
                    for l in String::from_utf8_lossy(&bytes[done..upto]).lines() {
                        eprintln!(
                            "guest {:6.1} | {}",
                            start.elapsed().as_secs_f64(),
                            l.trim_end_matches('\r')
                        );
                    }
                    done = upto;
                }
            }
            if last {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    (t, stop)
}

fn report_preflight(pf: &Preflight, out: &Out) -> bool {
    for f in &pf.findings {
        let v = if f.ok {
            format!("pass: {}", f.detail)
        } else {
            format!("FAIL: {}", f.detail)
        };
        out.say(&format!("preflight {}: {v}", f.name));
        out.fact(&format!("hw.preflight.{}", f.name), &v);
        if let Some(fix) = &f.fix {
            for l in fix.lines() {
                out.say(&format!("  fix: {l}"));
            }
        }
    }
    if !pf.ok() {
        out.fact("hw.result", "FAIL: preflight");
        out.say("preflight failed: nothing was booted");
    }
    pf.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const BDF: &str = "0000:3b:00.0";

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// A fake root: the device bound to `driver` (None: unbound), in IOMMU
    /// group 7 (when `group`), /dev/vfio nodes when `nodes`, /dev/kvm
    /// when `kvm`.
    fn fake_root(driver: Option<&str>, group: bool, nodes: bool, kvm: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let dev = r.join("sys/bus/pci/devices").join(BDF);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("vendor"), "0x1b36\n").unwrap();
        fs::write(dev.join("device"), "0x0015\n").unwrap();
        if let Some(d) = driver {
            let drv = r.join("sys/bus/pci/drivers").join(d);
            fs::create_dir_all(&drv).unwrap();
            symlink(&drv, dev.join("driver")).unwrap();
        }
        if group {
            let g = r.join("sys/kernel/iommu_groups/7/devices");
            fs::create_dir_all(&g).unwrap();
            symlink(&dev, g.join(BDF)).unwrap();
            symlink(r.join("sys/kernel/iommu_groups/7"), dev.join("iommu_group")).unwrap();
        }
        if nodes {
            fs::create_dir_all(r.join("dev/vfio")).unwrap();
            fs::write(r.join("dev/vfio/vfio"), "").unwrap();
            fs::write(r.join("dev/vfio/7"), "").unwrap();
        }
        if kvm {
            fs::create_dir_all(r.join("dev")).unwrap();
            fs::write(r.join("dev/kvm"), "").unwrap();
        }
        t
    }

    fn opts(root: &Path, extra: &str) -> HwOptions {
        let mut o = parse_args(&args(&format!("--bdf {BDF} {extra}"))).unwrap();
        o.root = root.to_path_buf();
        o
    }

    fn failed(pf: &Preflight) -> Vec<(&'static str, String)> {
        pf.findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| (f.name, f.detail.clone()))
            .collect()
    }

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
        ] {
            let e = parse_args(&args(a)).unwrap_err().to_string();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        assert_eq!(main(&args("--bdf")), EXIT_USAGE);
        assert_eq!(main(&args("--help")), 0);
    }

    #[test]
    fn a_ready_device_passes_the_preflight() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let q = t.path().join("qemu");
        fs::write(&q, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&q, fs::Permissions::from_mode(0o755)).unwrap();
        let o = opts(t.path(), "");
        let pf = preflight(&o, Some(&q), None, None);
        assert!(pf.ok(), "{:?}", pf.findings);
        assert_eq!(pf.id.as_deref(), Some("1b36:0015"));
        assert!(!pf.kvm);
        let kvm = pf.findings.iter().find(|f| f.name == "kvm").unwrap();
        assert!(kvm.detail.contains("TCG"), "{kvm:?}");
    }

    #[test]
    fn a_kvm_node_that_is_not_kvm_means_tcg() {
        // A /dev/kvm that opens but answers no KVM ioctl (a plain file).
        let t = fake_root(Some(HOST_DRIVER), true, true, true);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        assert!(pf.ok() && !pf.kvm, "{:?}", pf.findings);
        let kvm = pf.findings.iter().find(|f| f.name == "kvm").unwrap();
        assert!(kvm.detail.contains("KVM_GET_API_VERSION"), "{kvm:?}");
        assert!(!preflight(&opts(t.path(), "--accel tcg"), None, None, None).kvm);
        // --accel kvm insists.
        for kvm_node in [true, false] {
            let t = fake_root(Some(HOST_DRIVER), true, true, kvm_node);
            let pf = preflight(&opts(t.path(), "--accel kvm"), None, None, None);
            assert_eq!(failed(&pf)[0].0, "kvm");
        }
    }

    #[test]
    fn a_missing_device_is_named() {
        let t = tempfile::tempdir().unwrap();
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "device");
        assert!(f[0].1.contains(BDF));
    }

    #[test]
    fn a_wrong_or_missing_binding_prints_the_fix() {
        for driver in [Some("nvidia"), None] {
            let t = fake_root(driver, true, true, false);
            let pf = preflight(&opts(t.path(), ""), None, None, None);
            let f: Vec<&Finding> = pf.findings.iter().filter(|f| !f.ok).collect();
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!(f[0].name, "driver");
            let fix = f[0].fix.as_deref().unwrap();
            assert!(fix.contains(&format!(
                "echo vfio-cxl-pci > /sys/bus/pci/devices/{BDF}/driver_override"
            )));
            assert!(fix.contains(&format!("echo {BDF} > /sys/bus/pci/drivers_probe")));
        }
    }

    #[test]
    fn no_iommu_group_is_named() {
        let t = fake_root(Some(HOST_DRIVER), false, true, false);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "iommu-group");
    }

    #[test]
    fn missing_vfio_nodes_are_named() {
        let t = fake_root(Some(HOST_DRIVER), true, false, false);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|(n, _)| *n == "vfio-node"));
        assert!(f[0].1.contains("/dev/vfio/vfio") && f[1].1.contains("/dev/vfio/7"));
    }

    #[test]
    fn unopenable_vfio_nodes_are_named() {
        // A node that exists but does not open read-write (a directory
        // fails even for root, as a 0600 node does for a user).
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        fs::remove_file(t.path().join("dev/vfio/7")).unwrap();
        fs::create_dir(t.path().join("dev/vfio/7")).unwrap();
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f: Vec<&Finding> = pf.findings.iter().filter(|f| !f.ok).collect();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].name, "vfio-node");
        assert!(f[0].fix.as_deref().unwrap().contains("memlock"));
    }

    #[test]
    fn a_group_shared_with_a_host_driver_is_not_viable() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let r = t.path();
        let other = r.join("sys/bus/pci/devices/0000:3b:00.1");
        fs::create_dir_all(&other).unwrap();
        let drv = r.join("sys/bus/pci/drivers/ixgbe");
        fs::create_dir_all(&drv).unwrap();
        symlink(&drv, other.join("driver")).unwrap();
        symlink(
            &other,
            r.join("sys/kernel/iommu_groups/7/devices/0000:3b:00.1"),
        )
        .unwrap();
        let pf = preflight(&opts(r, ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "iommu-group-viable");
        assert!(f[0].1.contains("0000:3b:00.1"));
    }

    #[test]
    fn missing_binaries_are_named() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let r = t.path();
        let not_exec = r.join("qemu");
        fs::write(&not_exec, "").unwrap();
        let pf = preflight(
            &opts(r, ""),
            Some(&not_exec),
            Some(&r.join("vmlinuz")),
            Some(&r.join("initrd")),
        );
        let names: Vec<&str> = failed(&pf).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["qemu", "kernel", "initrd"]);
    }

    #[test]
    fn a_preflight_failure_exits_3_before_any_boot() {
        let t = fake_root(Some("nvidia"), true, true, false);
        let code = main(&args(&format!(
            "--bdf {BDF} --sysfs-root {} --qemu /nonexistent/qemu",
            t.path().display()
        )));
        assert_eq!(code, EXIT_PREFLIGHT);
    }

    #[test]
    fn the_guest_topology_puts_vfio_cxl_below_a_root_port() {
        let t = guest_topology(BDF, 256 << 20);
        t.validate().unwrap();
        let vm = Vm {
            qemu: "/q".into(),
            firmware_dirs: vec![],
            machine: Machine::default(),
            topology: t,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: guest_cmdline("1b36:0015", 1, 2, 0),
            extra_args: vec![],
        };
        let line = vm
            .args(Path::new("c"), Path::new("r"), Path::new("s"))
            .join(" ");
        assert!(
            line.contains("-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on")
        );
        assert!(line.contains(&format!("-device vfio-cxl,host={BDF},bus=rp0,id=vcxl0")));
        assert!(line.contains("cxl-fmw.0.size=4096M"));
        assert!(
            line.contains("hwtest.id=1b36:0015 hwtest.expect=1 hwtest.write=2 hwtest.pingpong=0")
        );
        // A large region gets a window of twice its size.
        let big = guest_topology(BDF, 16 << 30);
        assert_eq!(big.windows[0].size_mib, 32768);
    }

    #[test]
    fn the_read_back_scan_names_what_differs() {
        let size = 64 * 1024u64;
        let counter = coherence::counter_offset(size);
        let mut mem: Vec<u64> = (0..size / 8).map(|i| pattern::word(9, i * 8)).collect();
        mem[(counter / 8) as usize] = coherence::INCREMENTS;
        let rb = scan_words(size, 9, |o| mem[(o / 8) as usize]);
        assert_eq!((rb.bad, rb.counter), (0, coherence::INCREMENTS));
        mem[3] = 0;
        let rb = scan_words(size, 9, |o| mem[(o / 8) as usize]);
        assert_eq!((rb.bad, rb.first_bad), (1, Some(24)));
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for s in [PARAMS_SH, GUEST_BIND_SH, GUEST_COHERENCE_SH, GUEST_DMESG_SH] {
            let out = Command::new("sh").args(["-n", "-c", s]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[cfg(test)]
mod guest_check_tests {
    use super::*;
    use crate::nested::fixture::{l2, outcome};

    const BDF: &str = "0000:0d:00.0";
    const SIZE: u64 = 256 << 20;

    #[test]
    fn the_recorded_guest_passes() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &guest_topology(BDF, SIZE), SIZE, 1000);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_different_topology_is_named() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let mut t = guest_topology(BDF, SIZE);
        t.windows[0].size_mib = 8192;
        t.host_bridges[0].bus_nr = 52;
        let p = check_guest(&o, &t, SIZE, 1000);
        assert!(p.iter().any(|m| m.contains("CXL Window 0 is")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("targets host bridge")), "{p:?}");
    }

    #[test]
    fn no_direct_mapping_is_named() {
        let (results, stderr) = l2();
        let stderr: String = stderr
            .lines()
            .filter(|l| !l.contains("vfio_cxl_map"))
            .collect();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &guest_topology(BDF, SIZE), SIZE, 1000);
        assert!(p.iter().any(|m| m.contains("vfio_cxl_map")), "{p:?}");
    }

    #[test]
    fn failed_or_missing_coherence_checks_are_named() {
        let (results, stderr) = l2();
        let results = results
            .replace(
                "\"key\":\"coherence.atomics\",\"value\":\"pass",
                "\"key\":\"coherence.atomics\",\"value\":\"FAIL",
            )
            .lines()
            .filter(|l| !l.contains("\"coherence.checksum\""))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &guest_topology(BDF, SIZE), SIZE, 1000);
        assert!(
            p.iter().any(|m| m.contains("coherence.atomics: FAIL")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("coherence.checksum did not run")),
            "{p:?}"
        );
    }

    #[test]
    fn guest_kernel_errors_are_named() {
        let (mut results, stderr) = l2();
        results.push_str("VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"report-dmesg\",\"key\":\"dmesg\",\"value\":\"<3>[  9.1] cxl_port port1: failed to load HDM decoders\"}\n");
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &guest_topology(BDF, SIZE), SIZE, 1000);
        assert!(
            p.iter()
                .any(|m| m.contains("error-level kernel message: cxl_port")),
            "{p:?}"
        );
    }

    #[test]
    fn a_region_of_another_size_is_named() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &guest_topology(BDF, 2 * SIZE), 2 * SIZE, 1000);
        assert!(p.iter().any(|m| m.contains("size")), "{p:?}");
    }
}
