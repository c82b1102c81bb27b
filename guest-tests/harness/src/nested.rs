//! The nested chain (`guest-harness chain`, `cargo xtask chain`;
//! docs/nested-chain.md):
//!
//! ```text
//! L0  this QEMU: cxl-accel (pre-committed, memory-backend-file accel0.raw) + intel-iommu
//! L1  Debian 7.3.4: vfio-cxl-pci bound to the accelerator; `guest-harness hw-test` (static)
//!     runs this same QEMU (bundled with its libraries) with -device vfio-cxl,host=BDF
//! L2  Debian 7.3.4: cxl-type2-ref + the coherence checks (hw::guest_payload)
//! ```
//!
//! Data crosses every level, one VFIO owner at a time: L0 fills
//! `accel0.raw` with [`L0_SEED`]; L1's hw-test finds it through VFIO and
//! writes [`L1_SEED`]; L2 finds that, writes [`L2_SEED`] and plays
//! [`PING_PONG_ROUNDS`] rounds with a thread of this process on
//! `accel0.raw`; L1 reads L2's data back through VFIO; after L1 exited,
//! this process finds L2's pattern, counter and checksum in `accel0.raw`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::env::{repo_root, Env, RunSpec};
use crate::error::{Error, Result};
use vfio_cxl_uapi_check::{coherence, pattern};

use crate::guestdriver::{read_back_problems, scan, start_answerer, stop_answerer};
use crate::hostdriver::{self, accel_topology, ACCEL_ID, ACCEL_MIB};
use crate::hw::{self, AccelChoice};
use crate::payload::{build_initramfs, Payload, Source};
use crate::qemu::backing_file;
use crate::runner::{HostFacts, RunOutcome};
use crate::sysfs::{self, CxlSysfs};
use vfio_cxl_cmdline::layout::Iommu;

/// Overrides the static `guest-harness` that runs hw-test in L1.
pub const STATIC_HARNESS_ENV: &str = "VFIO_CXL_STATIC_HARNESS";
/// What L0 writes into every word before the boot.
pub const L0_SEED: u64 = 0x10_5eed;
/// What L1 writes through VFIO for L2.
pub const L1_SEED: u64 = 0x11_5eed;
/// What L2 writes for L1 and L0.
pub const L2_SEED: u64 = 0x12_5eed;
/// Round trips between L2 and a thread of this process (nested TCG is
/// ~60x slower than one level: fewer than the one-level test's 10,000).
pub const PING_PONG_ROUNDS: u64 = 1000;
/// L1's RAM: L2's RAM, QEMU and its translation buffer, the initramfs.
pub const L1_MEMORY_MIB: u64 = 3072;
/// L2's RAM.
pub const L2_MEMORY_MIB: u64 = 512;
/// The accelerator L2 runs under in CI: KVM inside L1 (TCG's `-cpu max`
/// offers SVM with nested paging, so L1's `kvm_amd` loads); TCG stays an
/// option (`--l2-accel tcg`). Measured in docs/nested-chain.md.
pub const L2_ACCEL_DEFAULT: AccelChoice = AccelChoice::Kvm;
/// L2's TCG translation buffer inside L1 (TCG L2 only).
pub const L2_TB_MIB: u64 = 256;
/// L2's vCPUs. One: 2-vCPU L2s under nested TCG hung at the second CPU's
/// bring-up once and crashed once with `Oops: int3` at a static-key patch
/// (stale cross-vCPU translation; docs/nested-chain.md); one boots faster.
/// The coherence checks still run 2 threads (time-sliced); their SMP
/// behaviour is what the one-level guest-driver tests cover.
pub const L2_SMP: u32 = 1;
/// Secondary Bus Resets L2 starts with its window live, after its checks:
/// L1's QEMU must unmap the window before each reset of the device
/// (issue 11, the reset hold order; `hw::guest::reset_order_problems`).
pub const SBR_ROUNDS: u64 = 2;
/// How long L2 may take (L1's clock).
pub const L2_TIMEOUT_S: u64 = 1500;
/// How long the whole chain may take with L2 under TCG.
pub const CHAIN_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long it may take with L2 under KVM: the slowest run seen took
/// 7 min, beside a cold CI run's builds (docs/nested-chain.md, run 20).
pub const CHAIN_TIMEOUT_KVM: Duration = Duration::from_secs(720);

/// The chain's timeout for L2 under `accel`.
pub fn chain_timeout(accel: AccelChoice) -> Duration {
    match accel {
        AccelChoice::Kvm => CHAIN_TIMEOUT_KVM,
        AccelChoice::Tcg | AccelChoice::Auto => CHAIN_TIMEOUT,
    }
}

/// Whether a chain run hung: L0 killed L1 at the timeout or with its
/// heartbeat silent, and nothing else went wrong (no kernel report, no
/// QEMU error, a QEMU that answered its monitor). Only such a hang is run
/// once more ([`run`]): under TCG, L1 running L2 on TCG's nested SVM
/// stops now and then without any report (docs/nested-chain.md, "Notes");
/// a check that fails, or a kernel report, fails the chain at once.
pub fn hung(outcome: &RunOutcome) -> bool {
    outcome.exit.hung() && outcome.problems_beyond_lost_timer().is_empty()
}

pub const NESTED_DIR: &str = "/opt/nested";

/// One configuration of the chain: what L2 runs under, and how L1's QEMU
/// reaches the device. The legacy VFIO container runs on Debian's kernel,
/// what users run; iommufd and the VFIO cdev need the debug test kernel in
/// L1, because Debian's 7.3.4 has neither (docs/nested-chain.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    pub accel: AccelChoice,
    pub iommu: Iommu,
}

impl ChainConfig {
    /// The name runs and messages use: `chain` or `chain-iommufd`.
    pub fn name(&self) -> &'static str {
        match self.iommu {
            Iommu::Container => "chain",
            Iommu::Iommufd => "chain-iommufd",
        }
    }
}

/// `$VFIO_CXL_STATIC_HARNESS`, else the static build in `target/guest`.
pub fn static_harness_binary() -> PathBuf {
    hostdriver::env_path(STATIC_HARNESS_ENV).unwrap_or_else(|| {
        repo_root()
            .join(hostdriver::GUEST_TARGET_DIR)
            .join(hostdriver::GUEST_TRIPLE)
            .join("release/guest-harness")
    })
}

/// The shared libraries of a dynamically linked binary, from `ldd`'s
/// output: (what the loader asks for, where it is on this host).
pub fn parse_ldd(text: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("linux-vdso") {
            continue;
        }
        if line.contains("not found") {
            return Err(Error::msg(format!("ldd: {line}")));
        }
        let (name, path) = match line.split_once(" => ") {
            Some((name, rest)) => (name, rest.split(" (").next().unwrap_or("")),
            // The loader itself: "/lib64/ld-linux-x86-64.so.2 (0x...)".
            None => {
                let p = line.split(" (").next().unwrap_or("");
                (p, p)
            }
        };
        if !path.starts_with('/') {
            return Err(Error::msg(format!("ldd: cannot read {line:?}")));
        }
        out.push((name.to_string(), PathBuf::from(path)));
    }
    Ok(out)
}

/// The firmware QEMU needs to boot a `-kernel` guest without a NIC or
/// VGA (q35: SeaBIOS, the linuxboot option ROM).
pub const FIRMWARE: &[&str] = &[
    "bios-256k.bin",
    "bios.bin",
    "linuxboot_dma.bin",
    "linuxboot.bin",
    "kvmvapic.bin",
    "pvh.bin",
];

/// Writes `path` through a temporary file and a rename: chains running
/// at the same time (e.g. `cargo xtask demo --chain` next to `cargo xtask
/// chain`) share `<cache>/nested` and must never read a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(a), m(b)) {
        (Some(a), Some(b)) => a > b,
        _ => true,
    }
}

/// A copy of `qemu` without debug info in `work` (95 MB -> a third:
/// L1 unpacks its initramfs under TCG), refreshed when QEMU is newer.
fn stripped_qemu(qemu: &Path, work: &Path) -> Result<PathBuf> {
    let out = work.join("qemu-system-x86_64");
    if newer(qemu, &out) {
        let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
        let st = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&tmp)
            .arg(qemu)
            .status()
            .map_err(|e| Error::io("cannot run strip (binutils)", e))?;
        if !st.success() {
            return Err(Error::msg(format!(
                "strip {} failed ({st})",
                qemu.display()
            )));
        }
        fs::rename(&tmp, &out)
            .map_err(|e| Error::io(format!("cannot write {}", out.display()), e))?;
    }
    Ok(out)
}

/// The uncompressed kernel inside a zstd-compressed bzImage (what the
/// kernel's scripts/extract-vmlinux does): L2 boots it through PVH, which
/// skips the self-decompression (~40 s of nested TCG). None when there is
/// no zstd payload or no `zstd` to unpack it.
fn extract_vmlinux(vmlinuz: &Path, work: &Path) -> Option<PathBuf> {
    let out = work.join("vmlinux");
    if !newer(vmlinuz, &out) {
        return Some(out);
    }
    let bytes = fs::read(vmlinuz).ok()?;
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let at = bytes.windows(4).position(|w| w == ZSTD_MAGIC)?;
    let mut child = Command::new("zstd")
        .args(["-dc", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let tail = bytes[at..].to_vec();
    // The bzImage has data after the frame: zstd complains, as it does
    // for extract-vmlinux; the ELF check below decides.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&tail);
    });
    let output = child.wait_with_output().ok()?;
    let _ = writer.join();
    if !output.stdout.starts_with(b"\x7fELF") {
        return None;
    }
    write_atomic(&out, &output.stdout).ok()?;
    Some(out)
}

/// The pieces L1 gets beyond the host-driver payload.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub qemu: PathBuf,
    pub libs: Vec<(String, PathBuf)>,
    pub firmware: Vec<(String, PathBuf)>,
    pub l2_kernel: PathBuf,
    pub l2_initrd: PathBuf,
    pub harness: PathBuf,
    /// More binaries for L1: (name in `/opt/nested`, path on the host).
    pub binaries: Vec<(String, PathBuf)>,
}

/// Strips QEMU, finds its libraries and firmware, builds L2's initramfs
/// from `l2` (`<cache>/nested/l2-<name>.cpio`), all into `<cache>/nested`.
pub fn bundle(env: &Env, l2: &Payload) -> Result<Bundle> {
    let work = env.cache.join("nested");
    fs::create_dir_all(&work)
        .map_err(|e| Error::io(format!("cannot create {}", work.display()), e))?;
    let qemu = stripped_qemu(&env.qemu, &work)?;
    let ldd = crate::tools::run(Command::new("ldd").arg(&env.qemu), "ldd on QEMU")?;
    let libs = parse_ldd(&String::from_utf8_lossy(&ldd.stdout))?;
    let mut firmware = Vec::new();
    for name in FIRMWARE {
        if let Some(p) = env
            .firmware_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            firmware.push((name.to_string(), p));
        }
    }
    if !firmware.iter().any(|(n, _)| n == "bios-256k.bin") {
        return Err(Error::msg(format!(
            "no bios-256k.bin in the firmware directories {:?}",
            env.firmware_dirs
        )));
    }
    let ir = build_initramfs(l2, &env.kernel, &env.busybox)?;
    let l2_initrd = work.join(format!("l2-{}.cpio", l2.name));
    write_atomic(&l2_initrd, &ir.archive.to_bytes())?;
    let harness = static_harness_binary();
    if !harness.is_file() {
        return Err(Error::msg(format!(
            "{} is missing: cargo xtask chain builds it (static, {}), or set {STATIC_HARNESS_ENV}",
            harness.display(),
            hostdriver::GUEST_TARGET_DIR
        )));
    }
    let l2_kernel = match extract_vmlinux(&env.kernel.vmlinuz(), &work) {
        Some(v) => v,
        None => {
            eprintln!("chain: notice: no uncompressed vmlinux (zstd missing?): L2 boots the bzImage, ~40 s slower");
            env.kernel.vmlinuz()
        }
    };
    Ok(Bundle {
        qemu,
        libs,
        firmware,
        l2_kernel,
        l2_initrd,
        harness,
        binaries: Vec::new(),
    })
}

impl Bundle {
    /// Adds a dynamically linked host binary as `/opt/nested/<name>` in
    /// L1, with the libraries it needs that QEMU's do not cover.
    pub fn with_binary(mut self, name: &str, path: &Path) -> Result<Self> {
        let ldd = crate::tools::run(
            Command::new("ldd").arg(path),
            &format!("ldd on {}", path.display()),
        )?;
        for lib in parse_ldd(&String::from_utf8_lossy(&ldd.stdout))? {
            if !self.libs.iter().any(|(n, _)| *n == lib.0) {
                self.libs.push(lib);
            }
        }
        self.binaries.push((name.to_string(), path.to_path_buf()));
        Ok(self)
    }

    /// `p` with the bundle's files: QEMU, its libraries (the loader at
    /// its own path, the rest in `/opt/nested/lib`), its firmware, L2's
    /// kernel (`/opt/nested/vmlinuz`, whichever form it has: QEMU boots
    /// an ELF vmlinux through PVH, a bzImage as usual) and initramfs
    /// (`/opt/nested/l2-initrd.cpio`), the static harness, the binaries.
    pub fn add_to(&self, mut p: Payload) -> Payload {
        let path = |src: &Path| Source::Path {
            src: src.to_path_buf(),
        };
        p = p
            .file(
                &format!("{NESTED_DIR}/qemu-system-x86_64"),
                0o755,
                path(&self.qemu),
            )
            .file(
                &format!("{NESTED_DIR}/guest-harness"),
                0o755,
                path(&self.harness),
            )
            .file(
                &format!("{NESTED_DIR}/vmlinuz"),
                0o644,
                path(&self.l2_kernel),
            )
            .file(
                &format!("{NESTED_DIR}/l2-initrd.cpio"),
                0o644,
                path(&self.l2_initrd),
            );
        for (name, src) in &self.binaries {
            p = p.file(&format!("{NESTED_DIR}/{name}"), 0o755, path(src));
        }
        for (name, src) in &self.libs {
            let dest = if name.starts_with('/') {
                // The loader, at the path the binary's PT_INTERP names.
                name.clone()
            } else {
                format!("{NESTED_DIR}/lib/{name}")
            };
            p = p.file(&dest, 0o755, path(src));
        }
        for (name, src) in &self.firmware {
            p = p.file(&format!("{NESTED_DIR}/firmware/{name}"), 0o644, path(src));
        }
        p
    }
}

/// The name `--accel` takes for `accel` (Auto is never asked of L1:
/// the chain must know what L2 ran under).
pub fn accel_name(accel: AccelChoice) -> &'static str {
    match accel {
        AccelChoice::Kvm => "kvm",
        AccelChoice::Tcg | AccelChoice::Auto => "tcg",
    }
}

/// Where L1 keeps the options vfio-cxl-cmdline printed for L2.
pub const CXL_ARGS: &str = "/tmp/cxl-args";

/// What L1 runs vfio-cxl-cmdline on to see it refuse: (fact name, shell
/// arguments, what its one stderr line must say). `$dev` is the
/// accelerator, `$rp` the root port above it (bound to pcieport).
pub const CMDLINE_ERRORS: &[(&str, &str, &str)] = &[
    (
        "no-device",
        "0000:ff:1f.7",
        "0000:ff:1f.7: no such PCI device",
    ),
    (
        "wrong-driver",
        "\"$rp\"",
        "is bound to pcieport, not vfio-cxl-pci",
    ),
    (
        "small-window",
        "--window-size 512M \"$dev\"",
        "window size 512M is too small for 256 MiB of CXL memory: at least 1G",
    ),
];

/// L1's step that runs vfio-cxl-cmdline: on [`CMDLINE_ERRORS`] (exit
/// status, stderr lines and the last one as a fact each), then on the
/// accelerator, whose options go to [`CXL_ARGS`] for L2 and, line by
/// line, into `cmdline.out` facts. The host driver runs with
/// `clear_memory=0` from here on: the chain hands the data from one VFIO
/// owner to the next on purpose (hw-test writes and closes, QEMU opens
/// for L2; L2's data is read back after QEMU closed), which the clearing
/// between users would wipe (host-driver-tenants checks the clearing).
/// L0's first write still comes after hw-test's open (`--handshake`).
pub fn cmdline_step(iommu: Iommu) -> String {
    let mut s = hostdriver::with_lib(
        r#"echo 0 >/sys/module/vfio_cxl_core/parameters/clear_memory || exit 1
p=$(readlink -f /sys/bus/pci/devices/$dev); p=${p%/*}; rp=${p##*/}
refused() {
	local name=$1 rc n=0 last= l; shift
	$VC/vfio-cxl-cmdline "$@" >/tmp/cmdline.out 2>/tmp/cmdline.err
	rc=$?
	while IFS= read -r l; do n=$((n + 1)); last=$l; done </tmp/cmdline.err
	vfiocxl_fact "cmdline.$name" "status $rc, $n stderr line(s): $last"
}
"#,
    );
    for (name, args, _) in CMDLINE_ERRORS {
        s.push_str(&format!("refused {name} {args}\n"));
    }
    s.push_str(&format!(
        r#"$VC/vfio-cxl-cmdline --verbose{iommufd} "$dev" >{CXL_ARGS} || exit 1
while IFS= read -r l; do vfiocxl_fact cmdline.out "$l"; done <{CXL_ARGS}
"#,
        iommufd = match iommu {
            Iommu::Container => "",
            Iommu::Iommufd => " --iommufd",
        }
    ));
    s
}

/// L1's step that runs the L1 side: hw-test on the accelerator, with the
/// bundled QEMU, its libraries and L2's boot files, L2 under `accel`
/// (hw-test's `--accel kvm` fails its preflight when /dev/kvm is not
/// usable, and QEMU's `-accel kvm` has no fallback: no silent TCG), and
/// L2's CXL options as vfio-cxl-cmdline printed them ([`cmdline_step`]),
/// read back into words by the shell as a user's script would.
pub fn hw_test_step(accel: AccelChoice) -> String {
    // L2's kernel goes in as /opt/nested/vmlinuz, whichever form it has
    // (QEMU boots an ELF vmlinux through PVH, a bzImage as usual).
    hostdriver::with_lib(&format!(
        r#"export LD_LIBRARY_PATH={d}/lib
read -r _ <{CXL_ARGS} || exit 1
eval "set -- $(cat {CXL_ARGS})"
{d}/guest-harness hw-test --bdf "$dev" --qemu {d}/qemu-system-x86_64 --firmware-dir {d}/firmware \
	--kernel {d}/vmlinuz --initrd {d}/l2-initrd.cpio --accel {accel} --memory {mem} --smp {smp} \
	--tb-size {tb} --timeout {timeout} --expect-seed {l0} --handshake --write-seed {l1} --guest-seed {l2} \
	--ping-pong {pp} --sbr-rounds {sbr} --follow --facts -- "$@" >&3
"#,
        d = NESTED_DIR,
        accel = accel_name(accel),
        mem = L2_MEMORY_MIB,
        smp = L2_SMP,
        tb = L2_TB_MIB,
        timeout = L2_TIMEOUT_S,
        l0 = L0_SEED,
        l1 = L1_SEED,
        l2 = L2_SEED,
        pp = PING_PONG_ROUNDS,
        sbr = SBR_ROUNDS,
    ))
}

/// L1: the host-driver payload (CXL and VFIO modules, vfio-cxl-pci bound
/// to the accelerator), `kvm_amd` for a KVM L2, its CXL sysfs, the
/// bundle, hw-test.
pub fn l1_payload(b: &Bundle, cfg: &ChainConfig) -> Payload {
    let mut p = hostdriver::base_payload("nested-l1");
    if cfg.accel == AccelChoice::Kvm {
        p = p.module("kvm_amd");
    }
    p = p
        .file(
            &format!("{}/vfio-cxl-cmdline", hostdriver::GUEST_DIR),
            0o755,
            Source::Path {
                src: hostdriver::cmdline_binary(),
            },
        )
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step("cmdline", &cmdline_step(cfg.iommu))
        .step("hw-test", &hw_test_step(cfg.accel))
        .step("report-dmesg", &l1_dmesg_sh());
    b.add_to(p)
}

/// L1's kernel lines about VFIO, CXL, the IOMMU and `kvm_amd` (its
/// "Nested Paging enabled" shows what L2 runs on). Not KVM's own
/// `Unhandled WRMSR(0xc0010007)` (error level): L2's kernel probing the
/// performance counters of `-cpu max`, which L1's kvm_amd does not
/// virtualize ("PMU virtualization is disabled"); L2 handles the #GP.
fn l1_dmesg_sh() -> String {
    crate::payload::report_dmesg_sh(&["vfio", "VFIO", "cxl", "CXL", "DMAR", "iommu", "kvm_amd:"])
}

/// What L1's console shows as the chain goes (hw-test's own lines, and
/// L2's console as `guest <s> | ` lines), printed with the elapsed time.
pub const MILESTONES: &[crate::runner::Milestone] = &[
    // (The kernel's "Run /init" is KERN_INFO: not on a loglevel=5 console.)
    (
        "vfiocxl: step load-host-driver",
        "L1 booted (its /init runs)",
    ),
    (
        "vfiocxl: step report-cxl-sysfs",
        "L1: vfio-cxl-pci bound to the accelerator",
    ),
    (
        "vfiocxl: step hw-test",
        "L1: vfio-cxl-cmdline printed L2's CXL options",
    ),
    (
        "hw-test: booting the guest",
        "L2 booting (QEMU in L1 started)",
    ),
    ("| vfiocxl: step params", "L2 booted (its /init runs)"),
    ("| vfiocxl: step coherence", "L2 coherence suite started"),
    ("hw-test: guest ran", "L2 powered off"),
    ("hw-test: read_back:", "L1 read L2's data back through VFIO"),
];

/// The L0 run: the host-driver machine with L1's RAM, the chain's
/// timeout, the fill and the ping-pong thread around it; L1 on the debug
/// test kernel for iommufd (which also holds L1 to no lockdep, KASAN or
/// UBSAN report).
pub fn chain_spec(b: &Bundle, cfg: &ChainConfig) -> RunSpec {
    let mut spec = RunSpec::new(accel_topology(ACCEL_MIB, 4096), l1_payload(b, cfg));
    if cfg.iommu == Iommu::Iommufd {
        spec = spec.on_debug_kernel();
    }
    spec.milestones = MILESTONES;
    spec.machine.iommu = true;
    spec.machine.memory_mib = L1_MEMORY_MIB;
    spec.timeout = chain_timeout(cfg.accel);
    spec.before_boot = Some(fill_and_answer);
    spec.after_exit = Some(stop_and_scan);
    spec
}

/// L0 writes [`L0_SEED`] only once L1's hw-test has the device open
/// (the host driver clears device memory at open): the writer thread waits
/// for its READY word. The answerer plays L2's ping-pong later.
fn fill_and_answer(dir: &Path) -> Result<()> {
    let path = backing_file(dir, ACCEL_ID);
    hostdriver::start_outside_writer_at(&path, ACCEL_MIB << 20, L0_SEED, None)?;
    start_answerer(&path, PING_PONG_ROUNDS)
}

fn stop_and_scan(dir: &Path) -> HostFacts {
    let mut v = hostdriver::stop_outside_writer("l0.outside_written");
    v.extend(stop_answerer("l0.pongs"));
    match scan(&backing_file(dir, ACCEL_ID), L2_SEED) {
        Ok(f) => v.extend(f.facts("l0")),
        Err(e) => v.push(("l0.error".into(), e.to_string())),
    }
    v
}

/// Per-level verdicts of a chain run with L2 asked to run under `accel`:
/// (level, problems).
pub fn check(outcome: &RunOutcome, cfg: &ChainConfig) -> Vec<(&'static str, Vec<String>)> {
    let r = &outcome.report;
    let hf = |k: &str| outcome.host_fact(k);

    // L1: the host driver bound, the region L1's CXL core assembled.
    let mut l1 = outcome.problems();
    if r.fact("accel.driver") != Some(hw::HOST_DRIVER) {
        l1.push(format!(
            "L1: accelerator bound to {:?}, expected {}",
            r.fact("accel.driver"),
            hw::HOST_DRIVER
        ));
    }
    let s = CxlSysfs::from_report(r);
    match s.named("region").as_slice() {
        [region] => {
            if s.attr(region, "commit") != Some("1")
                || s.attr_u64(region, "size") != Some(ACCEL_MIB << 20)
            {
                l1.push(format!(
                    "L1: region {region} not committed with 256 MiB: {:?}",
                    s.devices.get(*region)
                ));
            }
        }
        other => l1.push(format!("L1: CXL regions {other:?}, expected one")),
    }
    if s.of_type("cxl_decoder_endpoint").is_empty() {
        l1.push("L1: no endpoint decoder".into());
    }
    // The host driver probed once, for the region L1's CXL core assembled,
    // and nothing about VFIO, CXL or the IOMMU was logged as an error.
    let log = hostdriver::dmesg(outcome);
    let probes: Vec<_> = log
        .iter()
        .filter_map(|l| hostdriver::ProbeLine::parse(&l.text))
        .collect();
    let region_start = s
        .named("region")
        .first()
        .and_then(|r| s.attr_u64(r, "resource"));
    match probes.as_slice() {
        [p] if Some(p.start) == region_start && p.mib == ACCEL_MIB => {}
        other => l1.push(format!(
            "L1: host driver probe messages {other:?}, expected one for the region at {region_start:?}"
        )),
    }
    for l in log.iter().filter(|l| l.level.is_some_and(|v| v <= 3)) {
        l1.push(format!("L1: error-level kernel message: {}", l.text));
    }
    let pass = |k: &str| r.fact(k).is_some_and(|v| v.starts_with("pass"));
    // L0 wrote its pattern after L1's open, and L1 read it: the digest of
    // every word but the two handshake words.
    if !hf("l0.outside_written").is_some_and(|w| w.starts_with("after")) {
        l1.push(format!(
            "L0->L1: L0's pattern written {:?}",
            hf("l0.outside_written")
        ));
    }
    let handshake = coherence::handshake_offsets(ACCEL_MIB << 20);
    if let Some(m) = crate::guestdriver::digest_problem(
        "L0->L1",
        r.fact("hw.outside_digest"),
        L0_SEED,
        pattern::all_offsets(ACCEL_MIB << 20).filter(|&o| o != handshake.0 && o != handshake.1),
    ) {
        l1.push(m);
    }
    if !pass("hw.outside_pattern") {
        l1.push(format!(
            "L0->L1: L1 did not find L0's pattern through VFIO: {:?}",
            r.fact("hw.outside_pattern")
        ));
    }
    if !pass("hw.read_back") {
        l1.push(format!(
            "L2->L1: L1 did not read L2's data back through VFIO: {:?}",
            r.fact("hw.read_back")
        ));
    }
    for (k, v) in r
        .all_facts()
        .filter(|(k, _)| k.starts_with("hw.preflight."))
    {
        if !v.starts_with("pass") {
            l1.push(format!("L1 preflight {k}: {v}"));
        }
    }

    // L1 ran vfio-cxl-cmdline: each refusal is one line and status 1.
    for (name, _, want) in CMDLINE_ERRORS {
        let v = r.fact(&format!("cmdline.{name}"));
        if !v.is_some_and(|v| {
            v.starts_with("status 1, 1 stderr line(s): vfio-cxl-cmdline: ") && v.contains(want)
        }) {
            l1.push(format!(
                "L1: vfio-cxl-cmdline {name}: {v:?}, expected status 1 and one line saying {want:?}"
            ));
        }
    }

    // L2: what hw-test found (it checks the guest), and the guest's own view.
    let mut l2: Vec<String> = r
        .facts("hw.guest.problem")
        .into_iter()
        .map(|p| format!("L2: {p}"))
        .collect();
    // L2's CXL options are the ones vfio-cxl-cmdline printed in L1.
    let printed: Vec<&str> = r
        .facts("cmdline.out")
        .into_iter()
        .map(|l| l.trim_end_matches(" \\"))
        .collect();
    if printed.is_empty() || r.fact("hw.cxl_args") != Some(printed.join(" ").as_str()) {
        l2.push(format!(
            "L2's CXL options {:?} are not what vfio-cxl-cmdline printed in L1 ({printed:?})",
            r.fact("hw.cxl_args")
        ));
    }
    if r.fact("l2.accel.driver").is_none() {
        l2.push("L2: no report from the guest (did QEMU in L1 start?)".into());
    }
    if r.fact("hw.result") != Some("pass") {
        l2.push(format!("hw-test in L1: {:?}", r.fact("hw.result")));
    }
    // How L1's QEMU reached the device, as L1's kernel saw its open files.
    match r.fact("hw.qemu.vfio_files") {
        Some(files) => l1.extend(
            crate::hw::vfio_files::problems(files.split_whitespace(), cfg.iommu)
                .into_iter()
                .map(|p| format!("L1: {p}")),
        ),
        None => l1.push("L1: hw-test reported no hw.qemu.vfio_files".into()),
    }
    let wanted = accel_name(cfg.accel);
    if r.fact("hw.accel") != Some(wanted) {
        l2.push(format!(
            "L2 ran under {:?}, the chain asked for {wanted}",
            r.fact("hw.accel")
        ));
    }
    if !r
        .fact("l2.coherence.outside_pattern")
        .is_some_and(|v| v.starts_with("pass"))
    {
        l2.push(format!(
            "L1->L2: L2 did not find L1's pattern: {:?}",
            r.fact("l2.coherence.outside_pattern")
        ));
    }

    // L0: L2's data in the backing file.
    let mut l0 = read_back_problems(
        hf,
        "l0",
        "l0.pongs",
        PING_PONG_ROUNDS,
        &format!("L2->L0: {ACCEL_ID}.raw"),
    );
    let l2_sum = r.fact("l2.coherence.checksum_value");
    if l2_sum.is_none() || hf("l0.checksum") != l2_sum || r.fact("hw.read_back.checksum") != l2_sum
    {
        l0.push(format!(
            "checksums: L2 {l2_sum:?}, L1 {:?}, L0 {:?}",
            r.fact("hw.read_back.checksum"),
            hf("l0.checksum")
        ));
    }
    vec![("L1", l1), ("L2", l2), ("L0", l0)]
}

/// `guest-harness chain`: bundles, boots L1, prints per-level results
/// and timings. True when every level passed.
pub fn run(env: &Env, cfg: &ChainConfig) -> Result<bool> {
    let accel = cfg.accel;
    let t0 = SystemTime::now();
    println!("chain: bundling QEMU, its libraries, firmware and L2's boot files");
    let b = bundle(env, &hw::guest_payload())?;
    let spec = chain_spec(&b, cfg);
    let bundled: u64 = spec
        .payload
        .files
        .iter()
        .filter_map(|f| match &f.source {
            Source::Path { src } => fs::metadata(src).ok().map(|m| m.len()),
            Source::Text { text } => Some(text.len() as u64),
            Source::HostDriver { host_driver } => {
                fs::metadata(env.kernel.host_driver_dir().join(host_driver))
                    .ok()
                    .map(|m| m.len())
            }
        })
        .sum();
    println!(
        "chain: L1 payload {} files, {} MiB before modules; booting L1 ({} MiB, TCG; L2 under {}), timeout {} min",
        spec.payload.files.len(),
        bundled >> 20,
        L1_MEMORY_MIB,
        accel_name(accel),
        spec.timeout.as_secs() / 60
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("chain: load average before: {}", load.trim());
    let mut outcome = env.run(&spec)?;
    if hung(&outcome) {
        println!(
            "chain: L1 hung (killed after {} min; its console: {}); running the chain once more",
            spec.timeout.as_secs() / 60,
            outcome.dir.join("console.log").display()
        );
        outcome = env.run(&spec)?;
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let r = &outcome.report;
    let f = |k: &str| r.fact(k).unwrap_or("-").to_string();
    println!(
        "chain: L1 ran {:.1} s (init after {}); L2 ran {} s in L1 (init after {} s); hw-test {} s",
        outcome.wall.as_secs_f64(),
        outcome
            .to_init
            .map(|t| format!("{:.1} s", t.as_secs_f64()))
            .unwrap_or_else(|| "never".into()),
        f("hw.guest.wall_s"),
        f("hw.guest.to_init_s"),
        f("hw.wall_s"),
    );
    println!("chain: load average after: {}", load.trim());
    println!("chain: L2 ran under {}", f("hw.accel"));
    for rec in &r.records {
        if let crate::console::Record::Step {
            name, ok, uptime, ..
        } = rec
        {
            println!(
                "  L1 step {name}: ok={ok}, L1 uptime {}",
                uptime.map(|u| format!("{u:.1} s")).unwrap_or_default()
            );
        }
    }
    for step in r.facts("hw.guest.step") {
        println!("  L2 step {step}");
    }
    for k in [
        "hw.outside_pattern",
        "hw.write_pattern",
        "l2.coherence.outside_pattern",
        "l2.coherence.guest_pattern",
        "l2.coherence.atomics",
        "l2.coherence.ping_pong",
        "l2.coherence.checksum",
        "hw.read_back",
    ] {
        println!("  {k}: {}", f(k));
    }
    for (k, v) in &outcome.host_facts {
        println!("  {k}: {v}");
    }
    let mut ok = true;
    for (level, problems) in check(&outcome, cfg) {
        if problems.is_empty() {
            println!("chain {level}: PASS");
        } else {
            ok = false;
            println!("chain {level}: FAIL");
            for p in problems {
                println!("  problem: {p}");
            }
        }
    }
    if !ok {
        println!("  last L1 console lines:");
        for l in outcome.console_tail(60) {
            println!("  | {l}");
        }
        println!("  run directory (kept): {}", outcome.dir.display());
    }
    let total = t0.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    println!(
        "chain: {} in {total:.0} s ({:.1} min)",
        if ok { "PASS" } else { "FAIL" },
        total / 60.0
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
\tlibz.so.1 => /usr/lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
\t/lib64/ld-linux-x86-64.so.2 (0x00007fdf)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                (
                    "libz.so.1".to_string(),
                    PathBuf::from("/usr/lib/x86_64-linux-gnu/libz.so.1")
                ),
                (
                    "/lib64/ld-linux-x86-64.so.2".into(),
                    "/lib64/ld-linux-x86-64.so.2".into()
                )
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n")
            .unwrap_err()
            .to_string()
            .contains("libfoo"));
    }

    /// A missing zstd fails (tools/packages.txt lists it; `tools/setup-apt`,
    /// as root, installs it): a test that skips the extraction proves
    /// nothing about it.
    #[test]
    fn vmlinux_is_extracted_from_a_zstd_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let elf = b"\x7fELF pretend kernel".repeat(1000);
        let mut c = Command::new("zstd")
            .args(["-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run zstd ({e}): install it with `tools/setup-apt` (as root)")
            });
        use std::io::Write;
        c.stdin.take().unwrap().write_all(&elf).unwrap();
        let frame = c.wait_with_output().unwrap().stdout;
        // setup code, the frame, trailing data (as in a bzImage).
        let mut image = b"MZ setup code".to_vec();
        image.extend(&frame);
        image.extend(b"trailer");
        let vmlinuz = dir.path().join("vmlinuz");
        fs::write(&vmlinuz, &image).unwrap();
        let out = extract_vmlinux(&vmlinuz, dir.path());
        assert_eq!(fs::read(out.unwrap()).unwrap(), elf);
        // No zstd frame at all: None.
        fs::write(&vmlinuz, b"MZ no payload").unwrap();
        let other = tempfile::tempdir().unwrap();
        assert_eq!(extract_vmlinux(&vmlinuz, other.path()), None);
    }

    #[test]
    fn l1_steps_are_valid_sh_and_pass_the_seeds() {
        let s = hw_test_step(AccelChoice::Kvm);
        crate::payload::assert_valid_sh("L1 hw-test step", &s);
        assert!(s.contains("--accel kvm"), "{s}");
        assert!(hw_test_step(AccelChoice::Tcg).contains("--accel tcg"));
        for seed in [L0_SEED, L1_SEED, L2_SEED] {
            assert!(s.contains(&seed.to_string()));
        }
        assert!(s.contains("--facts -- \"$@\" >&3"));
        let c = cmdline_step(Iommu::Container);
        crate::payload::assert_valid_sh("L1 cmdline step", &c);
        assert!(c.contains("vfio-cxl-cmdline --verbose \"$dev\""), "{c}");
        let i = cmdline_step(Iommu::Iommufd);
        crate::payload::assert_valid_sh("L1 cmdline step (iommufd)", &i);
        assert!(
            i.contains("vfio-cxl-cmdline --verbose --iommufd \"$dev\""),
            "{i}"
        );
        assert!(c.contains("clear_memory"));
        for (name, args, _) in CMDLINE_ERRORS {
            assert!(c.contains(&format!("refused {name} {args}\n")), "{c}");
        }
    }
}

/// Checks over a real chain run's L1 results (testdata/, from a passing
/// run on 2026-12-05, L2 under KVM, its CXL options from vfio-cxl-cmdline),
/// so the verdicts are tested on real data.
#[cfg(test)]
pub(crate) mod fixture {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use crate::console::parse_results;
    use crate::runner::{Exit, RunOutcome};

    pub const L1_RESULTS: &str = include_str!("../testdata/chain-l1-results.log");

    pub fn outcome(results: &str, stderr: &str, host_facts: &[(&str, &str)]) -> RunOutcome {
        RunOutcome {
            exit: Exit::Exited(std::process::ExitStatus::from_raw(0)),
            report: parse_results(results),
            console: String::new(),
            stderr: stderr.to_string(),
            kernel_problems: Vec::new(),
            to_init: Some(Duration::from_secs(7)),
            wall: Duration::from_secs(664),
            dir: "/nonexistent".into(),
            silence: None,
            heartbeat_gap: None,
            killed: None,
            host_facts: host_facts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            provoked_taints: 0,
        }
    }

    /// L0's findings after that run.
    pub const L0_FACTS: &[(&str, &str)] = &[
        ("l0.pongs", "1000"),
        ("l0.bad", "0"),
        ("l0.words", "33554432"),
        ("l0.counter", "1200000"),
        ("l0.ping", "1000"),
        ("l0.pong", "1000"),
        ("l0.checksum", "0x5afde13b442e3844"),
        (
            "l0.outside_written",
            "after the guest opened the device (10.3 s after the boot began)",
        ),
        (
            "l0.atomics",
            "200000 increments, 0 of them with the guest's in between",
        ),
    ];

    /// What L2 was given: the CXL options vfio-cxl-cmdline printed in
    /// L1, as hw-test reported them.
    pub fn l2_cxl() -> crate::hw::GuestCxl {
        let l1 = parse_results(L1_RESULTS);
        let args: Vec<String> = l1
            .fact("hw.cxl_args")
            .expect("the recorded run has hw.cxl_args")
            .split(' ')
            .map(str::to_string)
            .collect();
        crate::hw::GuestCxl::from_args(&args, "0000:0d:00.0").expect("the recorded options")
    }

    /// L2's own report, as hw-test forwarded it (`l2.` facts, QEMU's
    /// stderr lines), turned back into L2's results and stderr.
    pub fn l2() -> (String, String) {
        let l1 = parse_results(L1_RESULTS);
        let mut results =
            String::from("VFIOCXL-BEGIN {\"payload\":\"hw-test-guest\",\"uptime\":146.6}\n");
        for (k, v) in l1.all_facts() {
            if let Some(k) = k.strip_prefix("l2.") {
                results.push_str(&format!(
                    "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":\"coherence\",\"key\":{},\"value\":{}}}\n",
                    serde_json::Value::from(k),
                    serde_json::Value::from(v)
                ));
            }
        }
        results.push_str("VFIOCXL-DONE {\"ok\":true,\"uptime\":592.5,\"tainted\":12288}\n");
        let stderr: Vec<&str> = l1.facts("hw.qemu.stderr");
        (results, stderr.join("\n"))
    }
}

#[cfg(test)]
mod check_tests {
    use super::fixture::{outcome, L0_FACTS, L1_RESULTS};
    use super::*;

    const KVM: ChainConfig = ChainConfig {
        accel: AccelChoice::Kvm,
        iommu: Iommu::Container,
    };

    fn levels(o: &RunOutcome) -> Vec<(&'static str, Vec<String>)> {
        check(o, &KVM)
    }

    #[test]
    fn only_a_hang_is_run_again() {
        let o = outcome(L1_RESULTS, "", L0_FACTS);
        assert!(!hung(&o));
        let timed_out = RunOutcome {
            exit: crate::runner::Exit::TimedOut(CHAIN_TIMEOUT_KVM),
            ..o
        };
        assert!(hung(&timed_out));
        assert_eq!(chain_timeout(AccelChoice::Kvm), CHAIN_TIMEOUT_KVM);
        assert_eq!(chain_timeout(AccelChoice::Tcg), CHAIN_TIMEOUT);
    }

    #[test]
    fn the_recorded_run_passes_every_level() {
        let o = outcome(L1_RESULTS, "", L0_FACTS);
        for (level, problems) in levels(&o) {
            assert!(problems.is_empty(), "{level}: {problems:?}");
        }
    }

    #[test]
    fn a_chain_that_asked_for_kvm_and_ran_tcg_fails() {
        // The recorded run's L2 ran under KVM; as if it had fallen back.
        let tcg = L1_RESULTS.replace(
            "\"key\":\"hw.accel\",\"value\":\"kvm\"",
            "\"key\":\"hw.accel\",\"value\":\"tcg\"",
        );
        let o = outcome(&tcg, "", L0_FACTS);
        let l2 = &check(&o, &KVM)[1].1;
        assert_eq!(
            l2,
            &["L2 ran under Some(\"tcg\"), the chain asked for kvm".to_string()]
        );
        // Asked for TCG, ran KVM: as wrong.
        let o = outcome(L1_RESULTS, "", L0_FACTS);
        let tcg = ChainConfig {
            accel: AccelChoice::Tcg,
            ..KVM
        };
        assert_eq!(check(&o, &tcg)[1].1.len(), 1);
        assert!(check(&o, &KVM)[1].1.is_empty());
    }

    /// The recorded run's QEMU held the container: right for the type1
    /// chain, wrong for the iommufd one; and a run that reported no files
    /// fails either.
    #[test]
    fn the_vfio_files_must_match_the_configuration() {
        let o = outcome(L1_RESULTS, "", L0_FACTS);
        let iommufd = ChainConfig {
            iommu: Iommu::Iommufd,
            ..KVM
        };
        let l1 = &check(&o, &iommufd)[0].1;
        assert_eq!(l1.len(), 3, "{l1:?}");
        assert!(l1[0].contains("no /dev/iommu"), "{l1:?}");
        let none = L1_RESULTS.replace("hw.qemu.vfio_files", "hw.qemu.other");
        let o = outcome(&none, "", L0_FACTS);
        assert_eq!(
            check(&o, &KVM)[0].1,
            ["L1: hw-test reported no hw.qemu.vfio_files".to_string()]
        );
    }

    /// L1 (hw-test) says it found L0's pattern, but its digest is of
    /// other data; and L0 wrote before L1's open.
    #[test]
    fn l0_checks_what_l1_read_and_when_it_wrote() {
        let digest_line = L1_RESULTS
            .lines()
            .find(|l| l.contains("\"key\":\"hw.outside_digest\""))
            .expect("the recorded run has L1's digest");
        let other = L1_RESULTS.replace(
            digest_line,
            "VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"hw-test\",\"key\":\"hw.outside_digest\",\"value\":\"0x0000000000000001\"}",
        );
        let o = outcome(&other, "", L0_FACTS);
        let l1 = &levels(&o)[0].1;
        assert!(
            l1.iter()
                .any(|p| p.starts_with("L0->L1: the reader's digest")),
            "{l1:?}"
        );
        assert!(o
            .report
            .fact("hw.outside_pattern")
            .is_some_and(|v| v.starts_with("pass")));
        let mut facts = L0_FACTS.to_vec();
        facts.retain(|(k, _)| *k != "l0.outside_written");
        facts.push((
            "l0.outside_written",
            "never: the reader never said READY (900.0 s)",
        ));
        let o = outcome(L1_RESULTS, "", &facts);
        let l1 = &levels(&o)[0].1;
        assert!(
            l1.iter()
                .any(|p| p.starts_with("L0->L1: L0's pattern written")),
            "{l1:?}"
        );
    }

    #[test]
    fn l0_mismatches_are_named() {
        let mut facts = L0_FACTS.to_vec();
        facts[1] = ("l0.bad", "3");
        facts[6] = ("l0.checksum", "0x1");
        facts[0] = ("l0.pongs", "the guest went silent after 10 rounds");
        let o = outcome(L1_RESULTS, "", &facts);
        let l0 = &levels(&o)[2].1;
        assert!(
            l0.iter()
                .any(|p| p.contains("L2->L0") && p.contains("\"3\"")),
            "{l0:?}"
        );
        assert!(l0.iter().any(|p| p.starts_with("checksums:")), "{l0:?}");
        assert!(l0.iter().any(|p| p.contains("l0.pongs")), "{l0:?}");
    }

    #[test]
    fn l1_and_l2_failures_are_named() {
        let text = L1_RESULTS
            .replace(
                "\"key\":\"hw.read_back\",\"value\":\"pass",
                "\"key\":\"hw.read_back\",\"value\":\"FAIL",
            )
            .replace(
                "\"key\":\"l2.coherence.outside_pattern\",\"value\":\"pass",
                "\"key\":\"l2.coherence.outside_pattern\",\"value\":\"FAIL",
            )
            .replace(
                "\"key\":\"hw.result\",\"value\":\"pass\"",
                "\"key\":\"hw.result\",\"value\":\"FAIL: 1 problem(s)\"",
            );
        let o = outcome(&text, "", L0_FACTS);
        let v = levels(&o);
        assert!(v[0].1.iter().any(|p| p.starts_with("L2->L1")), "{v:?}");
        assert!(v[1].1.iter().any(|p| p.starts_with("L1->L2")), "{v:?}");
        assert!(
            v[1].1.iter().any(|p| p.starts_with("hw-test in L1")),
            "{v:?}"
        );
    }

    #[test]
    fn l1_kernel_errors_and_a_missing_probe_are_named() {
        let text: String = L1_RESULTS
            .lines()
            .filter(|l| !l.contains("CXL Type-2 memory [range"))
            .chain(std::iter::once(
                "VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"report-dmesg\",\"key\":\"dmesg\",\"value\":\"<3>[    9.1] DMAR: DRHD: handling fault status reg 2\"}",
            ))
            .map(|l| format!("{l}\n"))
            .collect();
        let o = outcome(&text, "", L0_FACTS);
        let l1 = &levels(&o)[0].1;
        assert!(
            l1.iter()
                .any(|p| p.contains("host driver probe messages []")),
            "{l1:?}"
        );
        assert!(
            l1.iter()
                .any(|p| p.contains("error-level kernel message: DMAR")),
            "{l1:?}"
        );
    }

    /// vfio-cxl-cmdline accepted what it must refuse, or said it in two
    /// lines; and L2 got other options than the tool printed.
    #[test]
    fn cmdline_refusals_and_l2_options_are_checked() {
        let two_lines = L1_RESULTS.replace(
            "status 1, 1 stderr line(s): vfio-cxl-cmdline: 0000:ff:1f.7",
            "status 1, 2 stderr line(s): vfio-cxl-cmdline: 0000:ff:1f.7",
        );
        let accepted = two_lines.replace(
            "status 1, 1 stderr line(s): vfio-cxl-cmdline: 0000:0d:00.0: window size 512M",
            "status 0, 1 stderr line(s): vfio-cxl-cmdline: 0000:0d:00.0: window size 512M",
        );
        let other_window = accepted.replace(
            "\"key\":\"hw.cxl_args\",\"value\":\"-M cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G",
            "\"key\":\"hw.cxl_args\",\"value\":\"-M cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G",
        );
        assert_ne!(other_window, accepted, "the recorded run has hw.cxl_args");
        let o = outcome(&other_window, "", L0_FACTS);
        let v = levels(&o);
        let l1 = &v[0].1;
        assert_eq!(l1.len(), 2, "{l1:?}");
        assert!(
            l1[0].starts_with("L1: vfio-cxl-cmdline no-device"),
            "{l1:?}"
        );
        assert!(
            l1[1].starts_with("L1: vfio-cxl-cmdline small-window"),
            "{l1:?}"
        );
        assert!(
            v[1].1
                .iter()
                .any(|p| p.contains("are not what vfio-cxl-cmdline printed in L1")),
            "{v:?}"
        );
    }

    #[test]
    fn a_missing_l1_region_is_named() {
        let text: String = L1_RESULTS
            .lines()
            .filter(|l| !l.contains("\"key\":\"cxl.region0."))
            .filter(|l| !(l.contains("\"key\":\"cxl.device\"") && l.contains("region0")))
            .map(|l| format!("{l}\n"))
            .collect();
        let o = outcome(&text, "", L0_FACTS);
        let l1 = &levels(&o)[0].1;
        assert!(
            l1.iter().any(|p| p.starts_with("L1: CXL regions")),
            "{l1:?}"
        );
    }
}
