//! The run environment: which QEMU, which firmware, which kernel, which
//! busybox, and [`Env::run`], which builds an initramfs and boots a VM.
//!
//! Defaults follow the project's conventions so that a bare
//! `guest-harness ...` works on a machine where `cargo xtask fetch linux`
//! and `cargo xtask build-qemu` have run:
//!
//! - cache: `$VFIO_CXL_CACHE`, else `$XDG_CACHE_HOME/vfio-cxl`, else
//!   `~/.cache/vfio-cxl` (the same rules as xtask);
//! - kernel: `linux.upstream` / `linux.abi` of the repository's pins.toml,
//!   .debs in `<cache>/sources/linux/<upstream>/`;
//! - QEMU: `$VFIO_CXL_QEMU`, else `cargo xtask qemu-path`; firmware from
//!   `cargo xtask qemu-path --firmware-args`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::kernel::{KernelDebs, KernelTree};
use crate::payload::{build_initramfs, Payload};
use crate::qemu::{Machine, Topology, Vm};
use crate::runner::{self, RunOutcome};
use crate::{busybox, tools};

pub const QEMU_ENV: &str = "VFIO_CXL_QEMU";

/// The repository root (this crate is `guest-tests/harness`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("guest-tests/harness has two parents")
        .to_path_buf()
}

/// The cache directory (crates/vfio-cxl-cache, the rule xtask follows).
pub fn default_cache() -> Result<PathBuf> {
    vfio_cxl_cache::from_env().map_err(|e| Error::msg(e.to_string()))
}

#[derive(Debug, Deserialize)]
struct PinsLinux {
    linux: LinuxSection,
}

#[derive(Debug, Deserialize)]
struct LinuxSection {
    upstream: String,
    abi: String,
}

/// `(upstream, abi)` from pins.toml.
pub fn pinned_kernel(pins_toml: &str) -> Result<(String, String)> {
    let p: PinsLinux =
        toml::from_str(pins_toml).map_err(|e| Error::msg(format!("pins.toml: {e}")))?;
    Ok((p.linux.upstream, p.linux.abi))
}

fn xtask(args: &[&str]) -> Result<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = tools::run(
        Command::new(cargo)
            .current_dir(repo_root())
            .args(["xtask"])
            .args(args),
        &format!("cargo xtask {}", args.join(" ")),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `-L A -L B` -> `[A, B]`.
pub fn parse_firmware_args(text: &str) -> Vec<PathBuf> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "-L")
        .map(|w| PathBuf::from(w[1]))
        .collect()
}

/// What the caller may set; everything else takes the defaults above.
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    pub qemu: Option<PathBuf>,
    pub firmware_dirs: Option<Vec<PathBuf>>,
    pub cache: Option<PathBuf>,
    pub linux_debs: Option<PathBuf>,
    pub abi: Option<String>,
    /// Explicit kernel .debs (linux-binary, linux-base, linux-modules).
    pub kernel_debs: Vec<PathBuf>,
    /// Keep every run directory (failed runs are always kept).
    pub keep: bool,
    /// The debug test kernel's directory (`cargo xtask build-test-kernel
    /// --print-dir`), for runs on [`GuestKernel::Debug`].
    pub debug_kernel: Option<PathBuf>,
    /// The host driver built for it (default
    /// [`crate::hostdriver::debug_driver_dir`]).
    pub debug_host_driver: Option<PathBuf>,
}

/// Which kernel a run boots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestKernel {
    /// Debian's pinned kernel (the extracted .debs).
    #[default]
    Debian,
    /// The debug test kernel (lockdep, KASAN, UBSAN, KFENCE, ...; CXL,
    /// VFIO and IOMMUFD built in): `cargo xtask build-test-kernel`.
    Debug,
}

impl GuestKernel {
    /// What a VM test's name ends with when it runs on this kernel.
    pub fn test_suffix(self) -> &'static str {
        match self {
            Self::Debian => "",
            Self::Debug => "@debug",
        }
    }
}

/// How much slower the debug kernel runs the same test under TCG (KASAN
/// checks every access, lockdep every lock): its runs get this many times
/// the timeout.
pub const DEBUG_KERNEL_SLOWDOWN: u32 = 3;

/// A ready environment.
#[derive(Debug)]
pub struct Env {
    pub qemu: PathBuf,
    pub firmware_dirs: Vec<PathBuf>,
    pub cache: PathBuf,
    pub kernel: KernelTree,
    /// The debug test kernel, when [`EnvOptions::debug_kernel`] named it.
    pub debug_kernel: Option<KernelTree>,
    pub busybox: Vec<u8>,
    pub keep: bool,
}

/// One boot: machine, topology, payload, limits.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub machine: Machine,
    pub topology: Topology,
    pub payload: Payload,
    pub timeout: Duration,
    /// Verbatim QEMU arguments added at the end.
    pub extra_args: Vec<String>,
    /// Runs on the host before QEMU starts, with the run directory (the
    /// scratch directory of memory-backend files, see
    /// [`crate::qemu::backing_file`]): e.g. fill device memory with a
    /// pattern. An error fails the run before the boot.
    pub before_boot: Option<fn(&Path) -> Result<()>>,
    /// Runs on the host after QEMU exited, before the run directory goes:
    /// returns host facts ([`RunOutcome::host_facts`]).
    pub after_exit: Option<fn(&Path) -> runner::HostFacts>,
    /// Runs on the host before the initramfs is built, with the
    /// environment: adds what needs it to the spec (the nested tests put
    /// QEMU, its libraries and firmware, and an L2 guest's kernel and
    /// initramfs, built from the same kernel tree, into L1's payload).
    pub prepare: Option<fn(&Env, &mut RunSpec) -> Result<()>>,
    /// Progress lines printed while the guest runs (long runs: the chain).
    pub milestones: &'static [runner::Milestone],
    /// The kernel it boots.
    pub kernel: GuestKernel,
    /// Taint bits (`1 << bit` of /proc/sys/kernel/tainted) the test
    /// provokes on purpose, which then do not fail it; the test's check
    /// should want them. Only host-driver-mce has one: M, its machine check.
    pub provoked_taints: u64,
}

impl RunSpec {
    pub fn new(topology: Topology, payload: Payload) -> Self {
        Self {
            machine: Machine::default(),
            topology,
            payload,
            timeout: Duration::from_secs(180),
            extra_args: Vec::new(),
            before_boot: None,
            after_exit: None,
            prepare: None,
            milestones: &[],
            kernel: GuestKernel::Debian,
            provoked_taints: 0,
        }
    }

    /// The same run on the debug test kernel, with
    /// [`DEBUG_KERNEL_SLOWDOWN`] times the timeout and the payload named
    /// `NAME@debug` (as its VM test). Payloads need no
    /// change: built-in modules are not loaded (modules.builtin), and
    /// [`crate::payload::Source::HostDriver`] files come from the build
    /// for that kernel.
    ///
    /// The debug kernel boots with 4-level paging (`no5lvl`): with TCG's
    /// `-cpu max` (LA57) it reported, in about one boot of four, a KASAN
    /// wild-memory-access on an IRQ descriptor's lock in the direct map
    /// (`ff11...`, swapper/0, `handle_edge_irq` interrupting
    /// `identify_cpu`), before any of our code ran (2026-12-04).
    pub fn on_debug_kernel(mut self) -> Self {
        self.kernel = GuestKernel::Debug;
        self.payload.name.push_str(GuestKernel::Debug.test_suffix());
        self.payload.cmdline.push("no5lvl".into());
        self.timeout *= DEBUG_KERNEL_SLOWDOWN;
        self
    }
}

impl Env {
    pub fn prepare(opts: &EnvOptions) -> Result<Self> {
        let cache = match &opts.cache {
            Some(c) => c.clone(),
            None => default_cache()?,
        };
        let (upstream, pinned_abi) =
            pinned_kernel(&tools::read_to_string(&repo_root().join("pins.toml"))?)?;
        let debs = KernelDebs {
            dir: opts
                .linux_debs
                .clone()
                .unwrap_or_else(|| cache.join("sources/linux").join(&upstream)),
            abi: opts.abi.clone().unwrap_or(pinned_abi),
            files: opts.kernel_debs.clone(),
        };
        let kernel = KernelTree::prepare(&debs, &cache)?;
        let debug_kernel = match &opts.debug_kernel {
            Some(dir) => Some(KernelTree::installed(
                dir,
                opts.debug_host_driver
                    .clone()
                    .unwrap_or_else(crate::hostdriver::debug_driver_dir),
            )?),
            None => None,
        };
        let busybox_path = busybox::ensure(&cache)?;
        let busybox = fs::read(&busybox_path)
            .map_err(|e| Error::io(format!("cannot read {}", busybox_path.display()), e))?;
        let qemu = match (&opts.qemu, std::env::var_os(QEMU_ENV)) {
            (Some(q), _) => q.clone(),
            (None, Some(q)) if !q.is_empty() => PathBuf::from(q),
            _ => PathBuf::from(xtask(&["qemu-path"])?),
        };
        if !qemu.is_file() {
            return Err(Error::msg(format!(
                "QEMU binary {} does not exist (cargo xtask build-qemu)",
                qemu.display()
            )));
        }
        let firmware_dirs = match &opts.firmware_dirs {
            Some(d) => d.clone(),
            None => parse_firmware_args(&xtask(&["qemu-path", "--firmware-args"])?),
        };
        Ok(Self {
            qemu,
            firmware_dirs,
            cache,
            kernel,
            debug_kernel,
            busybox,
            keep: opts.keep,
        })
    }

    /// The kernel tree of `which`.
    pub fn kernel_tree(&self, which: GuestKernel) -> Result<&KernelTree> {
        match which {
            GuestKernel::Debian => Ok(&self.kernel),
            GuestKernel::Debug => self.debug_kernel.as_ref().ok_or_else(|| {
                Error::msg(
                    "this run boots the debug test kernel, and none was given: \
                     `cargo xtask build-test-kernel`, then --debug-kernel \
                     $(cargo xtask build-test-kernel --print-dir) (cargo xtask vm-test does both)",
                )
            }),
        }
    }

    /// Builds the initramfs for `spec.payload`, boots, waits, collects.
    /// The run directory (console.log, results.log, stderr.log,
    /// initrd.cpio, memory backend files) is removed afterwards unless the
    /// run had problems or `keep` is set.
    pub fn run(&self, spec: &RunSpec) -> Result<RunOutcome> {
        self.run_checked(spec, |_| Vec::new())
            .map(|(outcome, _)| outcome)
    }

    /// [`Env::run`] with a test's own `check`: its problems are returned
    /// beside the outcome, and a run they fail keeps its directory too (the
    /// evidence of a test-level failure is in results.log).
    pub fn run_checked(
        &self,
        spec: &RunSpec,
        check: impl FnOnce(&RunOutcome) -> Vec<String>,
    ) -> Result<(RunOutcome, Vec<String>)> {
        let mut prepared;
        let spec = match spec.prepare {
            Some(prepare) => {
                prepared = spec.clone();
                prepare(self, &mut prepared).map_err(|e| e.context("preparing the run"))?;
                &prepared
            }
            None => spec,
        };
        let kernel = self.kernel_tree(spec.kernel)?;
        let ir = build_initramfs(&spec.payload, kernel, &self.busybox)?;
        boot(
            &Boot {
                qemu: &self.qemu,
                firmware_dirs: &self.firmware_dirs,
                keep: self.keep,
                vmlinuz: &kernel.vmlinuz(),
                initrd: Initrd::Bytes(ir.archive.to_bytes()),
            },
            spec,
            check,
        )
    }
}

/// Where a boot's initramfs comes from.
#[derive(Debug)]
pub enum Initrd<'a> {
    /// Built for this run (written into the run directory).
    Bytes(Vec<u8>),
    /// Built before, elsewhere (a nested guest's, made by the level
    /// below, which has the kernel tree).
    File(&'a Path),
}

/// What a boot needs besides the spec: no kernel tree, no busybox, so an
/// L1 guest can boot an L2 from files the level below built
/// ([`crate::nested`]).
#[derive(Debug)]
pub struct Boot<'a> {
    pub qemu: &'a Path,
    pub firmware_dirs: &'a [PathBuf],
    pub keep: bool,
    pub vmlinuz: &'a Path,
    pub initrd: Initrd<'a>,
}

/// Boots `spec` (its payload's kernel command line; its steps are in the
/// initramfs already), waits, collects, runs `check`. The run directory
/// (console.log, results.log, stderr.log, initrd.cpio, memory backend
/// files) is removed afterwards unless the run had problems or `keep` is
/// set.
pub fn boot(
    b: &Boot,
    spec: &RunSpec,
    check: impl FnOnce(&RunOutcome) -> Vec<String>,
) -> Result<(RunOutcome, Vec<String>)> {
    spec.topology.validate()?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("vfiocxl-{}-", spec.payload.name))
        .tempdir()
        .map_err(|e| Error::io("cannot create a run directory", e))?;
    let initrd = match &b.initrd {
        Initrd::Bytes(bytes) => {
            let path = dir.path().join("initrd.cpio");
            fs::write(&path, bytes)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            path
        }
        Initrd::File(path) => path.to_path_buf(),
    };
    let vm = Vm {
        qemu: b.qemu.to_path_buf(),
        firmware_dirs: b.firmware_dirs.to_vec(),
        machine: spec.machine.clone(),
        topology: spec.topology.clone(),
        kernel: b.vmlinuz.to_path_buf(),
        initrd,
        cmdline: spec.payload.cmdline.clone(),
        extra_args: spec.extra_args.clone(),
    };
    let args = vm.args(
        &runner::console_path(dir.path()),
        &runner::results_path(dir.path()),
        dir.path(),
    );
    fs::write(
        dir.path().join("qemu-args.txt"),
        format!("{}\n{}\n", b.qemu.display(), args.join("\n")),
    )
    .map_err(|e| Error::io("cannot write qemu-args.txt", e))?;
    if let Some(before) = spec.before_boot {
        before(dir.path()).map_err(|e| e.context("before the boot"))?;
    }
    let mut cmd = Command::new(b.qemu);
    cmd.args(&args);
    let mut outcome = runner::run_command_with(
        cmd,
        dir.path(),
        spec.timeout,
        runner::DONE_GRACE,
        spec.milestones,
    )?;
    outcome.provoked_taints = spec.provoked_taints;
    if let Some(after) = spec.after_exit {
        outcome.host_facts = after(dir.path());
    }
    let problems = check(&outcome);
    if b.keep || !problems.is_empty() || !outcome.problems().is_empty() {
        // Keep the evidence; the memory backends are large and useless.
        for entry in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "raw") {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = dir.keep();
    }
    Ok((outcome, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_args_are_parsed() {
        assert_eq!(
            parse_firmware_args("-L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu\n"),
            [
                PathBuf::from("/usr/share/seabios"),
                "/usr/share/qemu".into(),
                "/usr/lib/ipxe/qemu".into()
            ]
        );
    }

    #[test]
    fn the_repository_pins_name_a_kernel() {
        let text = std::fs::read_to_string(repo_root().join("pins.toml")).unwrap();
        let (upstream, abi) = pinned_kernel(&text).unwrap();
        assert!(abi.starts_with(&upstream), "{upstream} {abi}");
    }
}
