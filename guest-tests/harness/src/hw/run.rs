//! The top-level run: the boot files resolved, the preflight, the outside
//! pattern written through VFIO, the guest booted and checked, its data
//! read back through VFIO, the verdict.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use vfio_cxl_uapi_check::coherence;
use vfio_cxl_uapi_check::pattern;

use super::guest::{
    check_guest, guest_cmdline, guest_payload, guest_topology, reset_order_problems, GuestCxl,
};
use super::memory::{scan_words, uapi_probe, with_memory};
use super::options::HwOptions;
use super::preflight::{preflight, report_preflight};
use super::vfio_files;
use super::{secs, Out, EXIT_PREFLIGHT};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::payload::build_initramfs;
use crate::qemu::{Machine, Topology, Vm};
use crate::runner;

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

pub(super) fn run(o: &HwOptions, out: &Out) -> Result<u8> {
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
    let handshake = o.handshake;
    let prepared = with_memory(&o.bdf, |m, size| {
        let (ready, go) = coherence::handshake_offsets(size);
        if handshake {
            m.write_u64(ready as usize, coherence::READY);
            let t = Instant::now();
            while m.read_u64(go as usize) != coherence::GO {
                if t.elapsed() > coherence::HANDSHAKE_TIMEOUT {
                    return Err("the outside never wrote its pattern (no GO word)".to_string());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let mut bad = 0u64;
        let mut read = pattern::Checksum::default();
        for off in (0..size).step_by(8) {
            let handshake_word = handshake && (off == ready || off == go);
            if let (Some(seed), false) = (expect, handshake_word) {
                let got = m.read_u64(off as usize);
                read.add(got);
                if got != pattern::word(seed, off) {
                    bad += 1;
                }
            }
            m.write_u64(off as usize, pattern::word(write, off));
        }
        Ok((bad, read.0))
    })
    .and_then(|r| r);
    match prepared {
        Ok((bad, read)) => {
            if let Some(seed) = expect {
                // For the side that wrote it (the nested chain's L0).
                out.fact("hw.outside_digest", &pattern::hex(read));
                // The two handshake words carry READY and GO, not the pattern.
                let checked = size / 8 - if handshake { 2 } else { 0 };
                let v = if bad == 0 {
                    format!("pass: pattern {seed} in all {checked} words checked")
                } else {
                    format!("FAIL: {bad} of {checked} words lack pattern {seed}")
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

    // The guest's CXL options: given (vfio-cxl-cmdline's), or built in.
    let (topology, cxl_args, cxl) = if o.cxl_args.is_empty() {
        let t = guest_topology(&o.bdf, size);
        let cxl = GuestCxl::of_topology(&t).expect("the built-in topology has a window");
        (t, Vec::new(), cxl)
    } else {
        let cxl = GuestCxl::from_args(&o.cxl_args, &o.bdf)
            .map_err(|e| Error::msg(format!("the CXL options after --: {e}")))?;
        out.fact("hw.cxl_args", &o.cxl_args.join(" "));
        (Topology::default(), o.cxl_args.clone(), cxl)
    };

    // The guest.
    let machine = Machine {
        accel: if pf.kvm { "kvm".into() } else { "tcg".into() },
        // Under KVM too: Linux's CXL region code needs the hypervisor
        // bit hidden (docs/guest-harness.md), and `max` is `host` plus
        // what KVM can emulate.
        cpu: "max,-hypervisor".into(),
        smp: o.smp,
        memory_mib: o.memory_mib,
        ..Machine::default()
    };
    out.fact("hw.accel", &machine.accel);
    // No `quiet`: the harness needs KERN_WARNING on the console to catch WARN()s.
    let mut cmdline = guest_cmdline(&id, write, o.guest_seed, o.ping_pong, o.sbr_rounds);
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
        topology,
        kernel: boot.kernel.clone(),
        initrd: boot.initrd.clone(),
        cmdline,
        // The given CXL options, then the device's own events (not the
        // per-access hdm_read/write).
        extra_args: cxl_args
            .into_iter()
            .chain(
                [
                    "realize",
                    "precommit",
                    "commit_failed",
                    "map",
                    "unmap",
                    "route",
                    "no_window",
                ]
                .iter()
                .map(|e| format!("vfio_cxl_{e}"))
                .chain(["vfio_pci_reset".to_string()])
                .flat_map(|e| ["-trace".to_string(), e]),
            )
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
    let files = vfio_files::Watch::start(&vm.qemu);
    let outcome = runner::run_command(cmd, dir.path(), o.timeout, runner::DONE_GRACE);
    let files = files.finish();
    out.fact(
        "hw.qemu.vfio_files",
        &files.into_iter().collect::<Vec<_>>().join(" "),
    );
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
    let mut guest_problems = check_guest(&outcome, &cxl, size, o.ping_pong, write);
    if o.sbr_rounds > 0 {
        let done = outcome.report.fact("sbr.rounds");
        if done != Some(o.sbr_rounds.to_string().as_str()) {
            guest_problems.push(format!(
                "guest: {done:?} Secondary Bus Resets done, expected {}",
                o.sbr_rounds
            ));
        }
        guest_problems.extend(reset_order_problems(&outcome.stderr, o.sbr_rounds));
    }
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
            // With --ping-pong, the outside's increments ran beside the guest's.
            let increments = coherence::expected_counter(o.ping_pong > 0);
            if rb.counter != increments {
                why.push(format!("counter {}, expected {increments}", rb.counter));
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
