//! `cargo xtask vfio-user-smoke`: the vfio-user software CXL device
//! (crates/vfio-user-cxl) under the project's QEMU with `-device
//! vfio-user-pci`. Two stages, each against a fresh server:
//!
//! 1. firmware only: SeaBIOS enumerates the device; QEMU's monitor
//!    (`info pci`, `info mtree -f`) must show it with its 64-bit BAR 0 and
//!    the sparse mmaps around the decoder page;
//! 2. a guest (the pinned Debian kernel and busybox, when the cache has them
//!    from `cargo xtask vm-test`): sysfs and `devmem` must see the DVSECs,
//!    the component register block, the hidden decoder block, and the
//!    DVSEC doorbell completing in the shadow.
//!
//! See docs/vfio-user-device.md.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::error::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask vfio-user-smoke [--qemu PATH] [--kernel VMLINUZ --busybox BUSYBOX]
                                  [--require-guest] [--keep]

Runs the vfio-user software CXL Type-2 device (crates/vfio-user-cxl) under
QEMU's vfio-user-pci: firmware only (monitor checks), then a guest when a
kernel and a static busybox are available (default: the pinned ones in the
cache, present after one `cargo xtask vm-test`).

options:
  --qemu PATH      the QEMU binary (default: `cargo xtask qemu-path`)
  --kernel PATH    a bzImage/vmlinuz for the guest stage
  --busybox PATH   a static busybox for the guest stage
  --require-guest  fail when the guest stage cannot run (cargo xtask test)
  --keep           keep the run directory (target/vfio-user-smoke)
";

const MEM_SIZE: &str = "256M";
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct Options {
    qemu: Option<PathBuf>,
    kernel: Option<PathBuf>,
    busybox: Option<PathBuf>,
    keep: bool,
    require_guest: bool,
}

fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut path = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| Error::usage(format!("{name} needs a path")))
        };
        match arg.as_str() {
            "--qemu" => o.qemu = Some(path("--qemu")?),
            "--kernel" => o.kernel = Some(path("--kernel")?),
            "--busybox" => o.busybox = Some(path("--busybox")?),
            "--keep" => o.keep = true,
            "--require-guest" => o.require_guest = true,
            "-h" | "--help" => return Ok(None),
            other => {
                return Err(Error::usage(format!(
                    "vfio-user-smoke: unexpected argument {other:?}\n{}",
                    USAGE.trim_end()
                )))
            }
        }
    }
    if o.kernel.is_some() != o.busybox.is_some() {
        return Err(Error::usage("--kernel and --busybox go together"));
    }
    Ok(Some(o))
}

/// The QEMU `cargo xtask qemu-path` prints.
fn default_qemu() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
    let out = Command::new(exe)
        .arg("qemu-path")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("xtask qemu-path", e))?;
    if !out.status.success() {
        return Err(Error::incomplete(
            "no QEMU built: run `cargo xtask build-qemu` or pass --qemu",
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The first entry under `dir` whose name starts with `prefix`.
fn find_prefixed(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v.pop()
}

/// The pinned kernel and busybox as guest-harness leaves them in the cache.
fn cached_guest() -> Option<(PathBuf, PathBuf)> {
    let guest = Cache::from_env().ok()?.root().join("guest");
    let kdir = find_prefixed(&guest, "kernel-")?;
    let modules = kdir.join("root/usr/lib/modules");
    let kernel = find_prefixed(&modules, "")?.join("vmlinuz");
    let busybox = find_prefixed(&guest, "busybox-")?.join("busybox");
    (kernel.is_file() && busybox.is_file()).then_some((kernel, busybox))
}

/// A running server with its log file.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let sock = dir.join("cxl.sock");
        let _ = fs::remove_file(&sock);
        let log = dir.join("server.log");
        let err = fs::File::create(&log).map_err(|e| Error::io(log.display(), e))?;
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&sock)
            .arg("--memory")
            .arg(dir.join("mem"))
            .args(["--size", MEM_SIZE, "--create", "-v"])
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(bin.display(), e))?;
        let start = Instant::now();
        while !sock.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::msg(format!(
                    "the server did not create {} (log: {})",
                    sock.display(),
                    log.display()
                )));
            }
            sleep(Duration::from_millis(20));
        }
        Ok(Self { child, log })
    }

    /// Waits for the server to exit (it does when QEMU disconnects).
    fn finish(mut self) -> Result<String> {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().map_err(|e| Error::io("wait", e))? {
                break st;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                return Err(Error::msg("the server did not exit after QEMU"));
            }
            sleep(Duration::from_millis(20));
        };
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        if !status.success() {
            return Err(Error::msg(format!("the server failed ({status}):\n{log}")));
        }
        Ok(log)
    }
}

fn qemu_base(qemu: &Path, dir: &Path) -> Command {
    let mut c = Command::new(qemu);
    c.args(crate::qemu::firmware_args())
        .args(["-M", "q35", "-accel", "tcg", "-m", "1G"])
        .args(["-object", "memory-backend-memfd,id=ram,size=1G,share=on"])
        .args(["-machine", "memory-backend=ram", "-nodefaults", "-no-reboot"])
        .args(["-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1"])
        .arg("-device")
        .arg(format!(
            r#"{{"driver":"vfio-user-pci","bus":"rp0","id":"cxl0","socket":{{"type":"unix","path":"{}"}}}}"#,
            dir.join("cxl.sock").display()
        ));
    c
}

/// Runs QEMU to completion (or kills it at the timeout); returns stdout.
fn run_qemu(
    mut cmd: Command,
    dir: &Path,
    name: &str,
    stdin: Option<Vec<(u64, String)>>,
) -> Result<String> {
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let out = fs::File::create(&out_path).map_err(|e| Error::io(out_path.display(), e))?;
    let err = fs::File::create(&err_path).map_err(|e| Error::io(err_path.display(), e))?;
    cmd.stdout(out).stderr(err).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|e| Error::io("qemu", e))?;
    if let Some(lines) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            for (delay_ms, line) in lines {
                sleep(Duration::from_millis(delay_ms));
                if writeln!(pipe, "{line}").is_err() {
                    return;
                }
            }
        });
    }
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| Error::io("wait", e))? {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::msg(format!(
                "{name}: QEMU timed out after {} s (output: {})",
                TIMEOUT.as_secs(),
                out_path.display()
            )));
        }
        sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        return Err(Error::msg(format!(
            "{name}: QEMU failed ({status}): {stderr}"
        )));
    }
    Ok(stdout)
}

fn expect(what: &str, haystack: &str, needle: &str) -> Result<()> {
    if haystack.contains(needle) {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(Error::msg(format!("{what}: {needle:?} not found")))
    }
}

fn stage_firmware(qemu: &Path, bin: &Path, dir: &Path) -> Result<()> {
    println!("==> vfio-user-smoke: firmware stage (monitor: info pci, info mtree -f)");
    let start = Instant::now();
    let server = Server::start(bin, dir)?;
    let mut cmd = qemu_base(qemu, dir);
    cmd.args(["-display", "none", "-monitor", "stdio"]);
    let lines = vec![
        (3000, "info pci".to_string()),
        (500, "info mtree -f".to_string()),
        (500, "quit".to_string()),
    ];
    let out = run_qemu(cmd, dir, "firmware", Some(lines))?;
    let log = server.finish()?;
    expect(
        "device enumerated as 1b36:0015, class 0x1200",
        &out,
        "Class 4608: PCI device 1b36:0015",
    )?;
    expect(
        "BAR 0 is a 64-bit memory BAR",
        &out,
        "BAR0: 64 bit memory at",
    )?;
    expect("BAR 0 sparse area 0 mapped", &out, "BAR 0 mmaps[0]")?;
    expect("BAR 0 sparse area 1 mapped", &out, "BAR 0 mmaps[1]")?;
    expect(
        "the decoder page is trapped",
        &out,
        "BAR 0 @0000000000001000",
    )?;
    expect("server negotiated the protocol", &log, "negotiated 0.0")?;
    expect("server saw the client leave", &log, "client disconnected")?;
    println!(
        "<== firmware stage: ok ({:.1} s)",
        start.elapsed().as_secs_f32()
    );
    Ok(())
}

/// The guest's /init: prints `VUC key=value` lines the host checks.
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1b36 ] && [ "$(cat $d/device)" = 0x0015 ] || continue
  cfg() { hexdump -s $(($1)) -n $2 -e "1/$2 \"%0$(($2 * 2))x\"" $d/config; }
  echo "VUC class=$(cat $d/class)"
  echo "VUC ext100=$(cfg 0x100 4) dvsec_h1=$(cfg 0x104 4) dvsec_cap=$(cfg 0x10a 2)"
  echo "VUC ext13c=$(cfg 0x13c 4) regloc=$(cfg 0x148 4)"
  echo "VUC range1_size_low=$(cfg 0x11c 4)"
  echo 1 > $d/enable
  base=$(head -1 $d/resource | cut -d' ' -f1)
  bar() { devmem $(printf 0x%x $((base + $1))) 32 $2; }
  echo "VUC cap_array=$(bar 0x1000) hdm_ptr=$(bar 0x1008) hdm_cap=$(bar 0x1100) dec0_ctrl=$(bar 0x1120)"
  bar 0x1120 0
  echo "VUC dec0_ctrl_after_write=$(bar 0x1120)"
  bar 0x2000 0xcafef00d
  echo "VUC mmap_area=$(bar 0x2000)"
  printf '\004\000' | dd of=$d/config bs=1 seek=$((0x110)) conv=notrunc 2>/dev/null
  echo "VUC control2=$(cfg 0x110 2) status2=$(cfg 0x112 2)"
done
echo "VUC done"
poweroff -f
"#;

/// A newc cpio archive (what the kernel unpacks as its initramfs).
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        while self.out.len() % 512 != 0 {
            self.out.push(0);
        }
        self.out
    }
}

fn initramfs(busybox: &Path) -> Result<Vec<u8>> {
    let bb = fs::read(busybox).map_err(|e| Error::io(busybox.display(), e))?;
    let mut c = Cpio::default();
    c.entry("bin", 0o040755, (0, 0), &[]);
    c.entry("bin/busybox", 0o100755, (0, 0), &bb);
    c.entry("dev", 0o040755, (0, 0), &[]);
    c.entry("dev/console", 0o020600, (5, 1), &[]);
    c.entry("init", 0o100755, (0, 0), GUEST_INIT.as_bytes());
    Ok(c.finish())
}

/// The value of `key=` on the guest's `VUC` lines.
fn vuc(out: &str, key: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.find("VUC ").map(|i| &l[i + 4..]))
        .flat_map(|l| l.split_whitespace())
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
}

fn check_vuc(out: &str, key: &str, want: &str, what: &str) -> Result<()> {
    match vuc(out, key) {
        Some(v) if v.eq_ignore_ascii_case(want) => {
            println!("  ok: {what} ({key}={v})");
            Ok(())
        }
        other => Err(Error::msg(format!(
            "{what}: {key} is {other:?}, expected {want}"
        ))),
    }
}

fn stage_guest(qemu: &Path, bin: &Path, dir: &Path, kernel: &Path, busybox: &Path) -> Result<()> {
    println!("==> vfio-user-smoke: guest stage ({})", kernel.display());
    let start = Instant::now();
    let initrd = dir.join("initrd.cpio");
    fs::write(&initrd, initramfs(busybox)?).map_err(|e| Error::io(initrd.display(), e))?;
    let server = Server::start(bin, dir)?;
    let mut cmd = qemu_base(qemu, dir);
    cmd.args(["-nographic", "-serial", "stdio", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    let out = run_qemu(cmd, dir, "guest", None)?;
    let log = server.finish()?;
    if vuc(&out, "class").is_none() {
        return Err(Error::msg(format!(
            "the guest did not find the device (console: {})",
            dir.join("guest.out").display()
        )));
    }
    check_vuc(&out, "class", "0x120000", "class code")?;
    check_vuc(
        &out,
        "ext100",
        "13c10023",
        "DVSEC ext cap at 0x100, next 0x13c",
    )?;
    check_vuc(
        &out,
        "dvsec_h1",
        "03c21e98",
        "CXL Device DVSEC: vendor 0x1e98, rev 2, length 0x3c",
    )?;
    check_vuc(
        &out,
        "dvsec_cap",
        "08d7",
        "Cache/IO/Mem capable, HDM_Count 1, WB+Inv, CXL Reset with Mem_Clr",
    )?;
    check_vuc(
        &out,
        "ext13c",
        "00010023",
        "Register Locator DVSEC at 0x13c, end of list",
    )?;
    check_vuc(
        &out,
        "regloc",
        "00000100",
        "component block in BAR 0 at offset 0",
    )?;
    check_vuc(
        &out,
        "range1_size_low",
        "10000003",
        "Range 1: 256 MiB, valid, active",
    )?;
    check_vuc(
        &out,
        "cap_array",
        "0x02110001",
        "CXL capability header through BAR 0",
    )?;
    check_vuc(
        &out,
        "hdm_ptr",
        "0x10030005",
        "HDM decoder capability at 0x1100",
    )?;
    check_vuc(
        &out,
        "hdm_cap",
        "0xFFFFFFFF",
        "decoder block hidden in the BAR",
    )?;
    check_vuc(
        &out,
        "dec0_ctrl_after_write",
        "0xFFFFFFFF",
        "decoder write through the BAR dropped",
    )?;
    check_vuc(
        &out,
        "mmap_area",
        "0xCAFEF00D",
        "BAR 0 mmap area read/write",
    )?;
    check_vuc(&out, "control2", "0000", "Initiate CXL Reset self-clears")?;
    check_vuc(
        &out,
        "status2",
        "8002",
        "CXL Reset Complete (and PM init complete)",
    )?;
    expect(
        "the doorbell was synthesized, not forwarded",
        &log,
        "CxlResetRequested",
    )?;
    println!(
        "<== guest stage: ok ({:.1} s)",
        start.elapsed().as_secs_f32()
    );
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let Some(opts) = parse(args)? else {
        print!("{USAGE}");
        return Ok(());
    };
    let root = crate::test::repo_root();
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "vfio-user-cxl"]);
    crate::test::step("build vfio-user-cxl", &mut build)?;
    let bin = root.join("target/release/vfio-user-cxl");
    let qemu = match opts.qemu {
        Some(q) => q,
        None => default_qemu()?,
    };
    let dir = root.join("target/vfio-user-smoke");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;

    stage_firmware(&qemu, &bin, &dir)?;
    let guest = match (opts.kernel, opts.busybox) {
        (Some(k), Some(b)) => Some((k, b)),
        _ => cached_guest(),
    };
    let skipped = match guest {
        Some((kernel, busybox)) => {
            stage_guest(&qemu, &bin, &dir, &kernel, &busybox)?;
            false
        }
        None if opts.require_guest => {
            return Err(Error::msg(
                "vfio-user-smoke: no kernel/busybox in the cache for the guest stage \
                 (--require-guest; `cargo xtask vm-test` leaves them there)",
            ))
        }
        None => {
            println!(
                "vfio-user-smoke: guest stage SKIPPED: no kernel/busybox in the cache \
                 (run `cargo xtask vm-test` once, or pass --kernel and --busybox)"
            );
            true
        }
    };
    if !opts.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    if skipped {
        println!("vfio-user-smoke: ok, firmware stage only (guest stage SKIPPED)");
    } else {
        println!("vfio-user-smoke: ok (firmware and guest stages)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vuc_lines_parse() {
        let out = "junk\r\nVUC class=0x120000\nx VUC a=1 b=2\n";
        assert_eq!(vuc(out, "class").as_deref(), Some("0x120000"));
        assert_eq!(vuc(out, "b").as_deref(), Some("2"));
        assert_eq!(vuc(out, "c"), None);
    }

    #[test]
    fn cpio_is_newc_and_padded() {
        let mut c = Cpio::default();
        c.entry("init", 0o100755, (0, 0), b"abc");
        let out = c.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 512, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn options() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(parse(&a("--kernel k")).is_err());
        assert!(parse(&a("--bogus")).is_err());
        assert!(parse(&a("--help")).unwrap().is_none());
        let o = parse(&a("--kernel k --busybox b --keep")).unwrap().unwrap();
        assert!(o.keep && o.kernel.is_some() && !o.require_guest);
        assert!(parse(&a("--require-guest")).unwrap().unwrap().require_guest);
    }
}
