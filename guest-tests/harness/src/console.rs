//! Reading what the guest said: the result lines of the init protocol
//! (see [`crate::payload`]) and signs of kernel trouble in the console.

use serde::{Deserialize, Serialize};

pub const BEGIN: &str = "VFIOCXL-BEGIN ";
pub const RESULT: &str = "VFIOCXL-RESULT ";
pub const DONE: &str = "VFIOCXL-DONE ";
/// The console line the guest's init prints every [`HEARTBEAT_SECS`]
/// seconds from BEGIN on, from a `read -t` timeout: while it keeps coming, the
/// guest's timers fire.
pub const HEARTBEAT: &str = "vfiocxl: heartbeat";
pub const HEARTBEAT_SECS: u64 = 2;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Begin {
    pub payload: String,
    /// Guest uptime when /init started, seconds.
    pub uptime: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Done {
    pub ok: bool,
    pub uptime: f64,
    /// `/proc/sys/kernel/tainted` at the end.
    pub tainted: u64,
}

/// One `VFIOCXL-RESULT` line.
/// `uptime` is the guest's uptime when the module was loaded or the step
/// ended.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    Module {
        name: String,
        ok: bool,
        rc: i64,
        uptime: Option<f64>,
    },
    Step {
        name: String,
        ok: bool,
        rc: i64,
        uptime: Option<f64>,
    },
    Fact {
        step: String,
        key: String,
        value: String,
    },
}

/// Everything parsed from the results channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestReport {
    pub begin: Option<Begin>,
    pub records: Vec<Record>,
    pub done: Option<Done>,
    /// Protocol lines that did not parse (a harness bug or a corrupted line).
    pub malformed: Vec<String>,
}

impl GuestReport {
    /// Values of every fact named `key`, in order.
    pub fn facts(&self, key: &str) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Fact { key: k, value, .. } if k == key => Some(value.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The last value of fact `key`.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts(key).last().copied()
    }

    /// All facts as (key, value), in order.
    pub fn all_facts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.records.iter().filter_map(|r| match r {
            Record::Fact { key, value, .. } => Some((key.as_str(), value.as_str())),
            _ => None,
        })
    }

    /// The facts reported under step `step`, as (key, value), in order.
    pub fn all_facts_of_step<'a>(
        &'a self,
        step: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.records.iter().filter_map(move |r| match r {
            Record::Fact {
                step: s,
                key,
                value,
            } if s == step => Some((key.as_str(), value.as_str())),
            _ => None,
        })
    }

    pub fn failed_modules(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Module {
                    name, ok: false, ..
                } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn failed_steps(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Step {
                    name, ok: false, ..
                } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn steps_run(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Step { .. }))
            .count()
    }
}

/// Parses the results channel. Anything before a marker on the same line
/// (a stray `\r`, noise) is ignored; lines without a marker are ignored.
pub fn parse_results(text: &str) -> GuestReport {
    let mut report = GuestReport::default();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let found = [BEGIN, RESULT, DONE]
            .iter()
            .filter_map(|m| line.find(m).map(|at| (at, *m)))
            .min();
        let Some((at, marker)) = found else { continue };
        let json = line[at + marker.len()..].trim();
        let ok = match marker {
            BEGIN => serde_json::from_str(json).map(|b| report.begin = Some(b)),
            DONE => serde_json::from_str(json).map(|d| report.done = Some(d)),
            _ => serde_json::from_str(json).map(|r| report.records.push(r)),
        };
        if let Err(e) = ok {
            report.malformed.push(format!("{line} ({e})"));
        }
    }
    report
}

/// One sign of kernel trouble in the console log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelProblem {
    /// 1-based line number in the console log.
    pub line_no: usize,
    pub what: &'static str,
    pub line: String,
}

/// Console patterns that mean the kernel is unhappy, most specific first
/// (a line counts once, for the first pattern it holds). The console runs
/// at loglevel 5 (see [`crate::qemu::DEFAULT_CMDLINE`]), so WARN()s, which
/// print at KERN_WARNING, appear. The debug test kernel's instruments
/// (lockdep, KASAN, UBSAN, KFENCE, DEBUG_ATOMIC_SLEEP, the hung-task
/// detector; docs/testing.md) print their reports here too.
const PATTERNS: &[(&str, &str)] = &[
    ("Kernel panic - not syncing", "kernel panic"),
    (
        "possible circular locking dependency detected",
        "lockdep: circular locking dependency",
    ),
    (
        "possible recursive locking detected",
        "lockdep: recursive locking",
    ),
    (
        "inconsistent lock state",
        "lockdep: inconsistent lock state",
    ),
    ("suspicious RCU usage", "lockdep: suspicious RCU usage"),
    ("bad unlock balance detected", "lockdep: bad unlock balance"),
    ("held lock freed", "lockdep: held lock freed"),
    (
        "lock held when returning to user space",
        "lockdep: lock held when returning to user space",
    ),
    ("BUG: KASAN:", "KASAN report"),
    ("BUG: KFENCE:", "KFENCE report"),
    (
        "sleeping function called from invalid context",
        "sleeping function called from invalid context",
    ),
    ("INFO: task ", "hung task"),
    ("suspected memory leak", "kmemleak report"),
    ("Oops:", "oops"),
    ("kernel BUG at", "BUG()"),
    ("BUG: ", "kernel BUG"),
    ("WARNING: CPU:", "WARN()"),
    ("general protection fault", "general protection fault"),
    ("UBSAN:", "UBSAN report"),
    ("Call Trace:", "stack trace"),
    ("rcu_preempt detected stalls", "RCU stall"),
    ("rcu_sched detected stalls", "RCU stall"),
    ("self-detected stall on CPU", "RCU stall"),
];

/// A kernel message that starts with this is a report of some debug
/// facility (lockdep has a dozen such headers, e.g. "WARNING: possible
/// irq lock inversion dependency detected") even when no pattern above
/// names it.
const WARNING_HEADER: &str = "WARNING: ";

/// The message of a console line, without its `[   12.345678]` timestamp.
fn message(line: &str) -> &str {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(time, _)| {
            time.chars()
                .all(|c| c == ' ' || c == '.' || c.is_ascii_digit())
        })
        .map_or(line, |(_, msg)| msg.strip_prefix(' ').unwrap_or(msg))
}

pub fn kernel_problems(console: &str) -> Vec<KernelProblem> {
    let mut out = Vec::new();
    for (i, raw) in console.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let what = PATTERNS
            .iter()
            .find(|(p, _)| line.contains(p))
            .map(|(_, what)| *what)
            .or_else(|| {
                message(line)
                    .starts_with(WARNING_HEADER)
                    .then_some("kernel WARNING")
            });
        if let Some(what) = what {
            out.push(KernelProblem {
                line_no: i + 1,
                what,
                line: line.to_string(),
            });
        }
    }
    out
}

/// How many lines of a report [`report_excerpt`] shows from its start.
pub const EXCERPT_HEAD: usize = 12;
/// How far [`report_excerpt`] looks for a report's summary lines.
const REPORT_SPAN: usize = 400;

/// Frames of a stack that say nothing about the bug: unreliable `? `
/// frames and the reporting machinery itself.
fn noise(msg: &str) -> bool {
    let frame = msg.trim_start();
    msg.trim().is_empty()
        || frame.starts_with("? ")
        || frame == "<TASK>"
        || [
            "kasan_",
            "__kasan_",
            "dump_stack",
            "print_report",
            "kfence_",
        ]
        .iter()
        .any(|p| frame.starts_with(p))
}

/// How many frames [`report_excerpt`] keeps of each allocation and free
/// stack of a KASAN or KFENCE report.
const ORIGIN_FRAMES: usize = 3;

/// The first lines of the report that starts at console line `line_no`
/// (1-based), for a failure message: [`EXCERPT_HEAD`] lines from there
/// (blank lines, `? ` frames and the reporting machinery skipped); then,
/// further down the same report, what names the culprits: lockdep's
/// summary of a dependency cycle (the `-> #N` lock classes of the chain
/// and the "Chain exists of:" paragraph), and KASAN's "Allocated by" and
/// "Freed by" stacks (their first [`ORIGIN_FRAMES`] frames) and the object
/// the address belongs to.
pub fn report_excerpt(console: &str, line_no: usize) -> Vec<String> {
    let lines: Vec<&str> = console
        .lines()
        .skip(line_no.saturating_sub(1))
        .take(REPORT_SPAN)
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let head: Vec<usize> = (0..lines.len())
        .filter(|&i| i == 0 || !noise(message(lines[i])))
        .take(EXCERPT_HEAD)
        .collect();
    let mut out: Vec<String> = head.iter().map(|&i| lines[i].to_string()).collect();
    let after_head = head.last().map_or(0, |&i| i + 1);
    let mut in_chain = false;
    let mut origin_frames = 0;
    for l in &lines[after_head.min(lines.len())..] {
        let msg = message(l);
        // The report ends before lockdep's backtrace, at KASAN's shadow
        // dump, or where the harness speaks.
        if msg.starts_with("stack backtrace:")
            || msg.starts_with("Memory state around the buggy address")
            || msg.starts_with("vfiocxl: ")
        {
            break;
        }
        if msg.starts_with("Chain exists of:") {
            in_chain = true;
        } else if in_chain && msg.trim().is_empty() {
            in_chain = false;
        }
        let origin = msg.starts_with("Allocated by task") || msg.starts_with("Freed by task");
        if origin {
            origin_frames = ORIGIN_FRAMES;
        } else if origin_frames > 0 && !noise(msg) {
            origin_frames -= 1;
            out.push(l.to_string());
            continue;
        }
        if in_chain
            || origin
            || msg.starts_with("-> #")
            || msg.starts_with("The buggy address belongs to the object")
        {
            out.push(l.to_string());
        }
    }
    out
}

/// What RCU's stall report prints when the grace-period kthread's timer
/// never fired: the kernel's own verdict that the stall is "a timer
/// handling issue" on an idle CPU, not guest code holding a CPU. Under
/// TCG it means the emulator lost a vCPU's timer interrupt (seen once in
/// CI: CPU 1 halted in default_idle for 21 s while CPU 0 ran the test).
const LOST_TIMER: &str = "kthread timer wakeup didn't happen";

/// What L1's kernel printed in one of about eight runs of
/// `guest-driver-coherence-kvm` (CI, 2026-12-05), in the thread of L1's
/// QEMU that runs L2 under KVM on the SVM that TCG emulates: the end of
/// that thread's kernel stack overwritten. Nothing of this project runs in
/// that kernel (vfio-user is user space, no host driver is loaded), and the
/// chain, with the same nesting, has not shown it: taken for a fault of the
/// emulated nested virtualization, like [`LOST_TIMER`].
const NESTED_SVM_FAULT: &str = "corrupted stack end detected inside scheduler";

/// The console line of a [`NESTED_SVM_FAULT`], if any.
pub fn nested_svm_fault(console: &str) -> Option<KernelProblem> {
    first_line_with(
        console,
        NESTED_SVM_FAULT,
        "L1 kernel stack corrupted under emulated nested SVM",
    )
}

/// The console line where the kernel says a timer was lost (see
/// [`LOST_TIMER`]), if it does: the run says nothing about the code under
/// test, neither pass nor fail.
pub fn lost_timer(console: &str) -> Option<KernelProblem> {
    first_line_with(console, LOST_TIMER, "timer lost by the emulator")
}

/// The first console line containing `needle`, as problem `what`.
fn first_line_with(console: &str, needle: &str, what: &'static str) -> Option<KernelProblem> {
    console.lines().enumerate().find_map(|(i, raw)| {
        let line = raw.trim_end_matches('\r');
        line.contains(needle).then(|| KernelProblem {
            line_no: i + 1,
            what,
            line: line.to_string(),
        })
    })
}

/// Taint flags that mean something went wrong (as opposed to expected
/// ones like O, out-of-tree module, or E, unsigned module).
const BAD_TAINTS: &[(u32, char, &str)] = &[
    (4, 'M', "machine check"),
    (5, 'B', "bad page"),
    (7, 'D', "kernel died (oops)"),
    (9, 'W', "a WARN() fired"),
    (14, 'L', "soft lockup"),
];

/// The bad taint flags set in `tainted`, e.g. `["W (a WARN() fired)"]`.
pub fn bad_taints(tainted: u64) -> Vec<String> {
    BAD_TAINTS
        .iter()
        .filter(|(bit, _, _)| tainted & (1 << bit) != 0)
        .map(|(_, c, what)| format!("{c} ({what})"))
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_nested_svm_fault_is_found_with_its_line() {
        let console = "boot\n[   36.59] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n";
        let k = nested_svm_fault(console).expect("found");
        assert_eq!(k.line_no, 2);
        assert!(nested_svm_fault("Kernel panic - not syncing: Fatal exception").is_none());
    }

    use super::*;

    const RESULTS: &str = "\
VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":4.02}\r
VFIOCXL-RESULT {\"kind\":\"module\",\"name\":\"cxl_acpi\",\"ok\":true,\"rc\":0,\"uptime\":4.1}\r
garbage VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"s\",\"key\":\"devices\",\"value\":\"root0 port1\"}
VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"s\",\"key\":\"devices\",\"value\":\"mem0\"}
VFIOCXL-RESULT {\"kind\":\"step\",\"name\":\"s\",\"ok\":false,\"rc\":2}
VFIOCXL-RESULT {\"kind\":\"step\",\"name\":\"broken
unrelated line
VFIOCXL-DONE {\"ok\":false,\"uptime\":9.5,\"tainted\":512}
";

    #[test]
    fn result_lines_become_typed_records() {
        let r = parse_results(RESULTS);
        assert_eq!(
            r.begin,
            Some(Begin {
                payload: "p".into(),
                uptime: 4.02
            })
        );
        assert_eq!(
            r.records[0],
            Record::Module {
                name: "cxl_acpi".into(),
                ok: true,
                rc: 0,
                uptime: Some(4.1)
            }
        );
        assert_eq!(r.facts("devices"), ["root0 port1", "mem0"]);
        assert_eq!(r.fact("devices"), Some("mem0"));
        assert_eq!(r.failed_steps(), ["s"]);
        assert!(r.failed_modules().is_empty());
        assert_eq!(r.malformed.len(), 1, "{:?}", r.malformed);
        assert!(r.malformed[0].contains("broken"));
        let done = r.done.unwrap();
        assert!(!done.ok);
        assert_eq!(bad_taints(done.tainted), ["W (a WARN() fired)"]);
    }

    #[test]
    fn unknown_kinds_and_fields_are_malformed() {
        let r = parse_results(
            "VFIOCXL-RESULT {\"kind\":\"nope\"}\nVFIOCXL-RESULT {\"kind\":\"step\",\"name\":\"a\",\"ok\":true,\"rc\":0,\"x\":1}\n",
        );
        assert_eq!(r.malformed.len(), 2);
        assert!(r.records.is_empty());
    }

    #[test]
    fn taints_expected_for_out_of_tree_modules_are_fine() {
        // O (12) + E (13): loading the unsigned host-driver modules.
        assert!(bad_taints((1 << 12) | (1 << 13)).is_empty());
        assert_eq!(bad_taints(1 << 7), ["D (kernel died (oops))"]);
    }

    /// A captured console of a guest that hit a WARN and then an oops.
    const OOPS_CONSOLE: &str = "\
[    0.000000] Linux version 7.3.4+deb13-amd64 (debian-kernel@lists.debian.org)\r
[    3.981234] cxl_acpi ACPI0017:00: decoder0.0: created region0\r
[    4.101010] ------------[ cut here ]------------\r
[    4.101011] WARNING: CPU: 1 PID: 87 at drivers/cxl/core/region.c:3210 cxl_region_invalidate_memregion+0x5d/0x80 [cxl_core]\r
[    4.101050] Call Trace:\r
[    4.101051]  <TASK>\r
[    4.201000] BUG: kernel NULL pointer dereference, address: 0000000000000008\r
[    4.201001] #PF: supervisor read access in kernel mode\r
[    4.201002] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI\r
[    4.301000] Kernel panic - not syncing: Fatal exception\r
";

    #[test]
    fn oops_warn_and_panic_are_detected() {
        let p = kernel_problems(OOPS_CONSOLE);
        let whats: Vec<&str> = p.iter().map(|p| p.what).collect();
        assert_eq!(
            whats,
            [
                "WARN()",
                "stack trace",
                "kernel BUG",
                "oops",
                "kernel panic"
            ]
        );
        assert_eq!(p[0].line_no, 4);
        assert!(!p[0].line.ends_with('\r'));
    }

    /// The tail of CI's failed host-driver-rebind run (2026-11-25): an RCU
    /// stall whose timer never fired on idle CPU 1.
    const LOST_TIMER_CONSOLE: &str = "\
[   39.211295] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\r
[   39.232494] Call Trace:\r
[   39.233395]  default_idle+0x9/0x20\r
[   39.235940] rcu: rcu_preempt kthread timer wakeup didn't happen for 5249 jiffies! g197 f0x0 RCU_GP_WAIT_FQS(5) ->state=I\r
[   39.236113] rcu: \tPossible timer handling issue on cpu=1 timer-softirq=374\r
";

    #[test]
    fn a_lost_timer_is_told_apart_from_other_stalls() {
        let k = lost_timer(LOST_TIMER_CONSOLE).expect("lost timer found");
        assert_eq!(k.line_no, 4);
        assert!(k.line.ends_with("->state=I"), "{}", k.line);
        // Still a kernel problem: a run that shows it never passes.
        let whats: Vec<&str> = kernel_problems(LOST_TIMER_CONSOLE)
            .iter()
            .map(|p| p.what)
            .collect();
        assert_eq!(whats, ["RCU stall", "stack trace"]);
        // A stall with a CPU busy in guest code is not a lost timer.
        assert!(lost_timer(OOPS_CONSOLE).is_none());
        let busy = "[ 30.1] rcu: INFO: rcu_preempt self-detected stall on CPU\n[ 30.2] rcu: \t1-....: (5250 ticks this GP)\n";
        assert!(lost_timer(busy).is_none());
        assert_eq!(kernel_problems(busy)[0].what, "RCU stall");
    }

    fn whats(console: &str) -> Vec<&'static str> {
        kernel_problems(console).iter().map(|p| p.what).collect()
    }

    /// Reports of the debug kernel's instruments, as the kernel prints
    /// them (KASAN: Documentation/dev-tools/kasan.rst; KFENCE: kfence.rst;
    /// UBSAN: ubsan.rst; the others from the format strings of 7.3.4's
    /// kernel/sched/core.c, kernel/hung_task.c, mm/kmemleak.c).
    const INSTRUMENTS_CONSOLE: &str = "\
[   10.100000] ==================================================================\r
[   10.100001] BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right+0xa8/0xbc [kasan_test]\r
[   10.100002] Write of size 1 at addr ffff8801f44ec37b by task insmod/2760\r
[   11.000000] BUG: KFENCE: use-after-free read in test_use_after_free_read+0xb3/0x143\r
[   12.000000] UBSAN: Undefined behaviour in ../include/linux/bitops.h:110:33\r
[   13.000000] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580\r
[   14.000000] INFO: task vfio-cxl-uapi-c:97 blocked for more than 30 seconds.\r
[   15.000000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\r
[   16.000000] WARNING: possible irq lock inversion dependency detected\r
[   17.000000] WARNING: suspicious RCU usage\r
[   18.000000] ------------[ cut here ]------------\r
[   19.000000] vfiocxl: step WARNING: not a kernel message\r
";

    #[test]
    fn debug_instrument_reports_are_detected() {
        assert_eq!(
            whats(INSTRUMENTS_CONSOLE),
            [
                "KASAN report",
                "KFENCE report",
                "UBSAN report",
                "sleeping function called from invalid context",
                "hung task",
                "kmemleak report",
                "kernel WARNING",
                "lockdep: suspicious RCU usage",
            ]
        );
    }

    /// The debug kernel's console in `host-driver-uapi@debug` on main's
    /// host driver (b19afb7, 2026-12-04): lockdep's report of the
    /// cfg_lock / mmap_lock / memory_lock cycle (issue 10, defect 1), up to
    /// its backtrace.
    const LOCKDEP_CONSOLE: &str = include_str!("../testdata/lockdep-circular-7.3.4-debug.console");

    #[test]
    fn a_lockdep_cycle_is_one_problem_with_its_chain() {
        let p = kernel_problems(LOCKDEP_CONSOLE);
        let whats: Vec<&str> = p.iter().map(|p| p.what).collect();
        assert_eq!(
            whats,
            ["lockdep: circular locking dependency", "stack trace"]
        );
        assert_eq!(p[0].line_no, 3);
        let excerpt = report_excerpt(LOCKDEP_CONSOLE, p[0].line_no);
        assert!(excerpt[0].ends_with("WARNING: possible circular locking dependency detected"));
        // Blank report lines are skipped.
        assert!(
            excerpt[3].contains("is trying to acquire lock:"),
            "{excerpt:#?}"
        );
        assert!(
            excerpt[4].contains("at: vfio_cxl_dvsec_reset+"),
            "{excerpt:#?}"
        );
        assert!(
            excerpt[6].contains("at: vfio_pci_core_ioctl+"),
            "{excerpt:#?}"
        );
        // Past the head, only the chain's lock classes and its summary.
        let tail: Vec<&str> = excerpt[EXCERPT_HEAD..].iter().map(|l| message(l)).collect();
        assert_eq!(
            tail,
            [
                "-> #1 (&mm->mmap_lock){++++}-{4:4}:",
                "-> #0 (mutex_){+.+.}-{4:4}:",
                "Chain exists of:",
                "  mutex_ --> &mm->mmap_lock --> &vdev->memory_lock",
            ]
        );
        assert!(
            excerpt[9].ends_with("-> #2 (&vdev->memory_lock){++++}-{4:4}:"),
            "{excerpt:#?}"
        );
    }

    /// The debug kernel's console in `host-driver-rebind@debug` on main's
    /// host driver at fb3d055 (2026-12-04): KASAN's report of a devres
    /// action that ran after remove() had freed the device, up to its
    /// shadow dump.
    const KASAN_CONSOLE: &str = include_str!("../testdata/kasan-uaf-7.3.4-debug.console");

    #[test]
    fn a_kasan_report_names_the_allocation_and_the_free() {
        let p = kernel_problems(KASAN_CONSOLE);
        let whats: Vec<&str> = p.iter().map(|p| p.what).collect();
        assert_eq!(whats, ["KASAN report", "stack trace"]);
        let excerpt: Vec<String> = report_excerpt(KASAN_CONSOLE, p[0].line_no)
            .iter()
            .map(|l| message(l).trim().to_string())
            .collect();
        assert!(excerpt[0].starts_with("BUG: KASAN: slab-use-after-free in vfio_cxl_unmap_comp+"));
        assert!(
            excerpt[1].starts_with("Read of size 8 at addr"),
            "{excerpt:#?}"
        );
        // No `? ` frames, no reporting machinery.
        assert!(
            !excerpt
                .iter()
                .any(|l| l.starts_with("? ") || l.starts_with("kasan_")),
            "{excerpt:#?}"
        );
        assert!(
            excerpt
                .iter()
                .any(|l| l == "vfio_cxl_unmap_comp+0xd8/0xf0 [vfio_cxl_core]"),
            "{excerpt:#?}"
        );
        let tail = &excerpt[EXCERPT_HEAD..];
        assert_eq!(
            tail,
            [
                "Allocated by task 51:",
                "__kvmalloc_node_noprof+0x347/0x9f0",
                "_vfio_alloc_device+0x35/0x530",
                "vfio_cxl_pci_probe+0x39/0xe0 [vfio_cxl_pci]",
                "Freed by task 53:",
                "kfree+0x149/0x590",
                "device_release+0xc5/0x240",
                "kobject_put+0x186/0x610",
                "The buggy address belongs to the object at ff11000005e42000",
            ]
        );
    }

    #[test]
    fn timestamps_are_stripped_only_when_they_are_timestamps() {
        assert_eq!(message("[   12.345678] WARNING: x"), "WARNING: x");
        assert_eq!(message("[   12.345678]"), "");
        assert_eq!(message("[ fs] WARNING: x"), "[ fs] WARNING: x");
        assert_eq!(message("WARNING: y"), "WARNING: y");
    }

    #[test]
    fn a_clean_boot_has_no_problems() {
        let clean = "[    0.0] Linux version 7.3.4\n[    4.0] Run /init as init process\nvfiocxl: init reached at 4.02 s\n";
        assert!(kernel_problems(clean).is_empty());
        assert_eq!(
            tail(clean, 2),
            [
                "[    4.0] Run /init as init process",
                "vfiocxl: init reached at 4.02 s"
            ]
        );
        assert_eq!(tail("a\n", 5), ["a"]);
    }
}
