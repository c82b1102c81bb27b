//! Starting QEMU with a hard timeout and turning what happened into a
//! [`RunOutcome`].
//!
//! The runner polls (every 50 ms) the child and the results file: it notes
//! when `VFIOCXL-BEGIN` appears (boot to init, as seen from the host) and
//! when `VFIOCXL-DONE` appears. After DONE the guest powers itself off; if
//! QEMU is still there [`DONE_GRACE`] later it is killed and the run fails
//! (a teardown hang in the project's devices). If the timeout expires
//! first, QEMU is killed (SIGKILL to the process the runner started) and
//! the run fails. Before a kill the runner notes where QEMU's threads are
//! ([`Killed`]); a QEMU still there [`KILL_GRACE`] after SIGKILL (a thread
//! stuck in the kernel) is left unreaped and the run fails saying where it
//! is stuck, rather than the runner waiting for ever. QEMU's stderr is
//! scanned for errors ([`stderr_problems`]).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::console::{self, GuestReport, KernelProblem};
use crate::error::{Error, Result};

/// How long QEMU may take to exit after the guest said DONE.
pub const DONE_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed QEMU may take to be reaped.
pub const KILL_GRACE: Duration = Duration::from_secs(30);
/// A guest whose heartbeat (every 2 s) has been silent this long is hung:
/// killed without waiting for the timeout.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(150);
/// The QMP socket every VM has in its run directory (`Vm::args`), which
/// the runner asks for QEMU's view of the vCPUs before a kill.
pub const DIAG_QMP_SOCKET: &str = "qmp-diag.sock";
/// Where that view is written.
pub const QEMU_STATE_FILE: &str = "qemu-state.txt";
const POLL: Duration = Duration::from_millis(50);

/// How the QEMU process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself.
    Exited(ExitStatus),
    /// The guest finished but QEMU did not exit within the grace period
    /// (a failure: QEMU hung tearing down).
    KilledAfterDone,
    /// The hard timeout expired; it was killed.
    TimedOut(Duration),
    /// The guest's heartbeat had been silent for [`SILENCE_LIMIT`]: the
    /// guest hung; it was killed this long after the start.
    Silent(Duration),
}

impl Exit {
    /// Killed by the runner because the guest did not finish: the
    /// timeout, or a heartbeat silent too long.
    pub fn hung(&self) -> bool {
        matches!(self, Exit::TimedOut(_) | Exit::Silent(_))
    }
}

/// The guest's heartbeat ([`console::HEARTBEAT`]) gone quiet before a
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Silence {
    /// From the last heartbeat to the kill.
    pub quiet: Duration,
    /// QEMU's CPU time over that span, in host CPUs (1.0: one core busy);
    /// `None` when /proc could not tell.
    pub cpu_share: Option<f64>,
    /// The console line of the last heartbeat (1-based).
    pub last_line: usize,
}

/// A heartbeat silent this long before a timeout means the guest's
/// timers stopped (several missed beats, not one slow one).
pub const TIMERS_STOPPED_AFTER: Duration = Duration::from_secs(5 * console::HEARTBEAT_SECS);
/// QEMU busier than this (in host CPUs) during the silence means vCPUs
/// were running (a lockup in the guest), not halted waiting for timers.
pub const IDLE_CPU_SHARE: f64 = 0.25;

/// Where QEMU's threads were when the runner killed it
/// ([`crate::procinfo::threads`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Killed {
    /// Just before SIGKILL.
    pub threads: Vec<String>,
    /// [`KILL_GRACE`] after SIGKILL, when it was still there.
    pub survived: Option<Vec<String>>,
    /// QEMU's own view just before (`info cpus`, `info registers -a`
    /// over its diagnostic QMP socket), when it answered.
    pub qemu_state: Option<PathBuf>,
    /// QEMU had the diagnostic socket and did not answer on it: its main
    /// loop was stuck, so the guest's silence is QEMU's doing.
    pub monitor_stuck: bool,
}

/// Facts the host found itself, as (key, value).
pub type HostFacts = Vec<(String, String)>;

/// Everything known after a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit: Exit,
    pub report: GuestReport,
    pub console: String,
    pub stderr: String,
    pub kernel_problems: Vec<KernelProblem>,
    /// Host wall clock from spawn to the BEGIN line.
    pub to_init: Option<Duration>,
    /// Host wall clock from spawn to exit (or kill).
    pub wall: Duration,
    /// The directory with console.log, results.log, stderr.log.
    pub dir: PathBuf,
    /// On a timeout: how long the guest's heartbeat had been silent when
    /// QEMU was killed, and how busy QEMU was meanwhile (`None` without a
    /// timeout, or when no heartbeat ever came).
    pub silence: Option<Silence>,
    /// Set when the runner killed QEMU (a timeout, a hang after DONE).
    pub killed: Option<Killed>,
    /// The longest interval between two of the guest's heartbeats, host
    /// wall clock (`None` before the second): the margin the run left
    /// below [`SILENCE_LIMIT`].
    pub heartbeat_gap: Option<Duration>,
    /// What the host found after the run ([`crate::env::RunSpec::after_exit`]),
    /// e.g. patterns in a memory-backend file; checks compare on these as
    /// on the guest's facts.
    pub host_facts: HostFacts,
    /// Taint bits the test provokes on purpose
    /// ([`crate::env::RunSpec::provoked_taints`]): not counted as bad.
    pub provoked_taints: u64,
}

impl RunOutcome {
    /// Why the run failed, as sentences; empty when the guest ran every
    /// step, said DONE ok, and the kernel showed no trouble. Test-specific
    /// checks add their own problems to this list.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match &self.exit {
            Exit::TimedOut(t) => p.push(format!(
                "timed out after {} s; QEMU was killed",
                t.as_secs()
            )),
            Exit::Silent(t) => p.push(format!(
                "the guest's heartbeat was silent for {} s ({} s into the run); QEMU was killed",
                self.silence.map_or(0, |s| s.quiet.as_secs()),
                t.as_secs()
            )),
            _ => {}
        }
        p.extend(self.problems_beyond_lost_timer());
        if self.report.begin.is_none() {
            p.push("the guest never reached /init (no VFIOCXL-BEGIN)".into());
        }
        for s in self.report.failed_steps() {
            p.push(format!("step {s:?} failed"));
        }
        match &self.report.done {
            None => {
                let last_step = self
                    .console
                    .lines()
                    .rev()
                    .find_map(|l| l.trim_end_matches('\r').strip_prefix("vfiocxl: step "));
                p.push(match last_step {
                    Some(step) => format!(
                        "the guest did not finish (no VFIOCXL-DONE); the last step started was {step:?}"
                    ),
                    None => "the guest did not finish (no VFIOCXL-DONE)".into(),
                });
            }
            Some(d) => {
                if !d.ok
                    && self.report.failed_modules().is_empty()
                    && self.report.failed_steps().is_empty()
                {
                    p.push("the guest reported failure".into());
                }
            }
        }
        for k in self
            .kernel_problems
            .iter()
            .filter(|k| is_lost_timer_sign(k))
        {
            p.push(self.kernel_problem(k));
        }
        if let Some(k) = self.timers_stopped() {
            p.push(format!(
                "{} (last heartbeat: console line {}): {}",
                k.what, k.line_no, k.line
            ));
        }
        p
    }

    /// The problems a lost guest timer does not explain (it explains a
    /// timeout, a missing DONE, a step that failed waiting, an RCU stall
    /// and its stack trace, and the test's checks on facts never
    /// reported): QEMU's exit and stderr, failed modules, malformed
    /// results, bad taints, any other kernel trouble. A rerun after a lost
    /// timer keeps these from the first run.
    pub fn problems_beyond_lost_timer(&self) -> Vec<String> {
        let mut p = Vec::new();
        match &self.exit {
            Exit::Exited(st) if !st.success() => p.push(format!("QEMU exited with {st}")),
            Exit::KilledAfterDone => p.push(format!(
                "QEMU had not exited {} s after the guest's DONE (a hang at teardown); it was killed",
                DONE_GRACE.as_secs()
            )),
            _ => {}
        }
        if self.killed.as_ref().is_some_and(|k| k.monitor_stuck) {
            p.push(
                "QEMU did not answer its monitor before the kill (its main loop was stuck)".into(),
            );
        }
        if let Some(threads) = self.killed.as_ref().and_then(|k| k.survived.as_ref()) {
            let mut problem = format!(
                "QEMU was still there {} s after SIGKILL (a thread stuck in the kernel); left unreaped",
                KILL_GRACE.as_secs()
            );
            for t in threads {
                problem.push_str("\n      | ");
                problem.push_str(t);
            }
            p.push(problem);
        }
        p.extend(stderr_problems(&self.stderr));
        for m in self.report.failed_modules() {
            p.push(format!("insmod {m} failed"));
        }
        for m in &self.report.malformed {
            p.push(format!("malformed result line: {m}"));
        }
        if let Some(d) = &self.report.done {
            for t in console::bad_taints(d.tainted & !self.provoked_taints) {
                p.push(format!("kernel tainted: {t}"));
            }
        }
        for k in self
            .kernel_problems
            .iter()
            .filter(|k| !is_lost_timer_sign(k))
        {
            p.push(self.kernel_problem(k));
        }
        p
    }

    /// A kernel problem as a sentence, with the first lines of its report
    /// (a stack trace belongs to a report listed before it).
    fn kernel_problem(&self, k: &KernelProblem) -> String {
        let mut problem = format!("console line {}: {}: {}", k.line_no, k.what, k.line);
        if k.what != "stack trace" {
            for l in console::report_excerpt(&self.console, k.line_no)
                .iter()
                .skip(1)
            {
                problem.push_str("\n      | ");
                problem.push_str(l);
            }
        }
        problem
    }

    /// The last value of host fact `key`.
    pub fn host_fact(&self, key: &str) -> Option<&str> {
        self.host_facts
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The run timed out while the guest sat idle with its heartbeat
    /// silent: its timers had stopped firing (a lost timer interrupt, like
    /// the ones [`console::lost_timer`] finds in RCU's words), so the run
    /// says nothing about the code under test. A silent heartbeat with busy
    /// vCPUs is a lockup in the guest, and not this.
    pub fn timers_stopped(&self) -> Option<KernelProblem> {
        let s = self
            .hung_silence()
            .filter(|s| s.cpu_share.is_some_and(|c| c < IDLE_CPU_SHARE))?;
        Some(KernelProblem {
            line_no: s.last_line,
            what: "guest timers stopped",
            line: format!(
                "no heartbeat for {:.0} s before the kill, QEMU idle meanwhile ({:.2} CPUs)",
                s.quiet.as_secs_f64(),
                s.cpu_share.unwrap_or_default()
            ),
        })
    }

    /// The guest's silence when the runner killed it for hanging with its
    /// heartbeat stopped for [`TIMERS_STOPPED_AFTER`] or more, and QEMU
    /// still answered its monitor (a QEMU stuck itself explains the
    /// silence). How busy QEMU was then tells a lost timer (idle,
    /// [`Self::timers_stopped`]) from a spinning vCPU
    /// ([`crate::nested_run::l1_hung`]).
    pub fn hung_silence(&self) -> Option<Silence> {
        let s = self.silence?;
        let monitor_stuck = self.killed.as_ref().is_some_and(|k| k.monitor_stuck);
        (self.exit.hung() && s.quiet >= TIMERS_STOPPED_AFTER && !monitor_stuck).then_some(s)
    }

    /// Where the guest lost a timer interrupt, if it did: RCU said so on
    /// the console ([`console::lost_timer`]), or the heartbeat stopped
    /// with QEMU idle ([`Self::timers_stopped`]).
    pub fn lost_timer(&self) -> Option<KernelProblem> {
        console::lost_timer(&self.console).or_else(|| self.timers_stopped())
    }

    /// The last `n` console lines (for failure reports).
    pub fn console_tail(&self, n: usize) -> Vec<&str> {
        console::tail(&self.console, n)
    }
}

/// Kernel problems a lost timer interrupt brings: RCU's stall report and
/// the stack traces it prints.
fn is_lost_timer_sign(k: &KernelProblem) -> bool {
    matches!(k.what, "RCU stall" | "stack trace")
}

/// QEMU's errors in its stderr, one problem per line: `error_report()`
/// (`<program>: message`, not `warning:`/`info:`), a Rust panic in a
/// device, a C assertion, a GLib critical or error, a sanitizer report, a
/// fatal signal. Trace output (`-trace`), warnings and guest errors
/// (`-d guest_errors`, the guest's doing) pass.
pub fn stderr_problems(stderr: &str) -> Vec<String> {
    const SIGNS: &[&str] = &[
        "panicked at",
        "assertion failed",
        "Assertion `",
        "ERROR:",
        "CRITICAL **",
        "Sanitizer",
        "runtime error:",
        "Segmentation fault",
        "Aborted",
    ];
    stderr
        .lines()
        .filter(|l| {
            let error_report = l.split_once(": ").is_some_and(|(prog, msg)| {
                prog.starts_with("qemu-system-")
                    && !msg.starts_with("warning: ")
                    && !msg.starts_with("info: ")
            });
            error_report || SIGNS.iter().any(|s| l.contains(s))
        })
        .map(|l| format!("QEMU stderr: {l}"))
        .collect()
}

/// Files of one run inside `dir`.
pub fn console_path(dir: &Path) -> PathBuf {
    dir.join("console.log")
}

pub fn results_path(dir: &Path) -> PathBuf {
    dir.join("results.log")
}

/// A console line that marks progress in a long run: when a line holds
/// `needle`, the runner prints `what` with the time since QEMU started.
/// Milestones are expected in order, each once: a line matching a later
/// one also passes the earlier ones (a missed line never silences the
/// rest).
pub type Milestone = (&'static str, &'static str);

/// Runs `cmd` (QEMU, or a stand-in in tests) until it exits or `timeout`
/// expires. The command must write the console to `console_path(dir)` and
/// the results to `results_path(dir)`; its stderr goes to `dir/stderr.log`.
pub fn run_command(
    cmd: Command,
    dir: &Path,
    timeout: Duration,
    done_grace: Duration,
) -> Result<RunOutcome> {
    run_command_with(cmd, dir, timeout, done_grace, &[])
}

/// [`run_command`], printing each of `milestones` as the console reaches it.
pub fn run_command_with(
    cmd: Command,
    dir: &Path,
    timeout: Duration,
    done_grace: Duration,
    milestones: &[Milestone],
) -> Result<RunOutcome> {
    run_command_limits(cmd, dir, timeout, done_grace, SILENCE_LIMIT, milestones)
}

/// [`run_command_with`] with a hung guest's heartbeat silence limit.
fn run_command_limits(
    mut cmd: Command,
    dir: &Path,
    timeout: Duration,
    done_grace: Duration,
    silence_limit: Duration,
    milestones: &[Milestone],
) -> Result<RunOutcome> {
    let stderr_path = dir.join("stderr.log");
    let stderr = fs::File::create(&stderr_path)
        .map_err(|e| Error::io(format!("cannot create {}", stderr_path.display()), e))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::msg(format!("cannot start {:?}: {e}", cmd.get_program())))?;
    let results = results_path(dir);
    let mut to_init = None;
    let mut done_at: Option<Instant> = None;
    let mut beat = HeartbeatWatch::new(console_path(dir), child.id());
    beat.milestones = milestones.to_vec();
    beat.start = start;
    let mut silence = None;
    let mut killed = None;
    let exit = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("waiting for QEMU", e))?
        {
            break Exit::Exited(status);
        }
        if to_init.is_none() || done_at.is_none() {
            let text = fs::read_to_string(&results).unwrap_or_default();
            if to_init.is_none() && text.contains(console::BEGIN) {
                to_init = Some(start.elapsed());
            }
            if done_at.is_none() && text.contains(console::DONE) {
                done_at = Some(Instant::now());
            }
        }
        if done_at.is_some_and(|d| d.elapsed() > done_grace) {
            killed = Some(kill(&mut child, dir, KILL_GRACE)?);
            break Exit::KilledAfterDone;
        }
        beat.poll();
        let quiet = beat.silence();
        let hung = if start.elapsed() > timeout {
            Some(Exit::TimedOut(timeout))
        } else if done_at.is_none() && quiet.is_some_and(|s| s.quiet > silence_limit) {
            Some(Exit::Silent(start.elapsed()))
        } else {
            None
        };
        if let Some(exit) = hung {
            silence = quiet;
            killed = Some(kill(&mut child, dir, KILL_GRACE)?);
            break exit;
        }
        std::thread::sleep(POLL);
    };
    let wall = start.elapsed();
    let console_text = read_lossy(&console_path(dir));
    let report = console::parse_results(&read_lossy(&results));
    Ok(RunOutcome {
        exit,
        kernel_problems: console::kernel_problems(&console_text),
        report,
        console: console_text,
        stderr: read_lossy(&stderr_path),
        to_init,
        wall,
        dir: dir.to_path_buf(),
        silence,
        killed,
        heartbeat_gap: beat.longest_gap,
        host_facts: Vec::new(),
        provoked_taints: 0,
    })
}

/// Follows the console for heartbeats, noting when the last one came,
/// its line, and QEMU's CPU time then.
struct HeartbeatWatch {
    console: PathBuf,
    /// Open once the guest wrote to it; reads continue where they ended.
    file: Option<fs::File>,
    pid: u32,
    lines: usize,
    partial: String,
    last: Option<(Instant, usize, Option<Duration>)>,
    /// The longest interval between two heartbeats so far.
    longest_gap: Option<Duration>,
    /// Milestones not reached yet, in order, and when QEMU started.
    milestones: Vec<Milestone>,
    start: Instant,
}

impl HeartbeatWatch {
    fn new(console: PathBuf, pid: u32) -> Self {
        Self {
            console,
            file: None,
            pid,
            lines: 0,
            partial: String::new(),
            last: None,
            longest_gap: None,
            milestones: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Reads what the console gained since the last call.
    fn poll(&mut self) {
        if self.file.is_none() {
            self.file = fs::File::open(&self.console).ok();
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut new = Vec::new();
        if file.read_to_end(&mut new).is_err() || new.is_empty() {
            return;
        }
        self.partial.push_str(&String::from_utf8_lossy(&new));
        while let Some(end) = self.partial.find('\n') {
            self.lines += 1;
            let line = &self.partial[..end];
            if line.contains(console::HEARTBEAT) {
                let now = Instant::now();
                if let Some((then, ..)) = self.last {
                    self.longest_gap = self.longest_gap.max(Some(now - then));
                }
                self.last = Some((now, self.lines, cpu_time(self.pid)));
            }
            if let Some(i) = self.milestones.iter().position(|(n, _)| line.contains(n)) {
                let what = self.milestones[i].1;
                println!("  [{:6.1} s] {what}", self.start.elapsed().as_secs_f64());
                self.milestones.drain(..=i);
            }
            self.partial.drain(..=end);
        }
    }

    /// The silence since the last heartbeat, measured now.
    fn silence(&self) -> Option<Silence> {
        let (at, line, cpu_then) = self.last?;
        let quiet = at.elapsed();
        let cpu_share = match (cpu_then, cpu_time(self.pid)) {
            (Some(then), Some(now)) if !quiet.is_zero() => {
                Some(now.saturating_sub(then).as_secs_f64() / quiet.as_secs_f64())
            }
            _ => None,
        };
        Some(Silence {
            quiet,
            cpu_share,
            last_line: line,
        })
    }
}

/// User + system CPU time of process `pid` so far (/proc/PID/stat).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of_stat(&stat)
}

fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    // After "pid (comm) ", whose comm may hold spaces: state is field 3,
    // utime 14 and stime 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// A process the runner kills: QEMU, or a stand-in in tests.
trait Killable {
    fn pid(&self) -> u32;
    fn send_kill(&mut self);
    /// True once it exited and was reaped.
    fn reaped(&mut self) -> Result<bool>;
}

impl Killable for Child {
    fn pid(&self) -> u32 {
        self.id()
    }

    fn send_kill(&mut self) {
        // Only the process this runner started.
        let _ = self.kill();
    }

    fn reaped(&mut self) -> Result<bool> {
        Ok(self
            .try_wait()
            .map_err(|e| Error::io("reaping QEMU", e))?
            .is_some())
    }
}

/// SIGKILL, then reaps within `grace`; where its threads were before,
/// and after `grace` if it is still there (then it is left unreaped: a
/// wait could block for ever).
fn kill(p: &mut impl Killable, dir: &Path, grace: Duration) -> Result<Killed> {
    let threads = crate::procinfo::threads(p.pid());
    let (qemu_state, monitor_stuck) = match save_qemu_state(dir) {
        StateQuery::NoSocket => (None, false),
        StateQuery::Answered(path) => (Some(path), false),
        StateQuery::Stuck(path) => (path, true),
    };
    p.send_kill();
    let t = Instant::now();
    while !p.reaped()? {
        if t.elapsed() >= grace {
            let survived = Some(crate::procinfo::threads(p.pid()));
            return Ok(Killed {
                threads,
                survived,
                qemu_state,
                monitor_stuck,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(Killed {
        threads,
        survived: None,
        qemu_state,
        monitor_stuck,
    })
}

/// What [`save_qemu_state`] got.
enum StateQuery {
    /// No diagnostic socket in the run directory.
    NoSocket,
    /// QEMU answered both queries (written to the file).
    Answered(PathBuf),
    /// QEMU did not answer within the limits; what it did answer, if
    /// anything, is in the file.
    Stuck(Option<PathBuf>),
}

/// Asks QEMU over the run's diagnostic QMP socket where its vCPUs are
/// (`info cpus`, `info registers -a`), each answer written to
/// [`QEMU_STATE_FILE`] as it comes: 2 s to connect, 5 s for each reply,
/// so that a QEMU whose main loop is stuck delays the kill by seconds.
fn save_qemu_state(dir: &Path) -> StateQuery {
    let sock = dir.join(DIAG_QMP_SOCKET);
    if !sock.exists() {
        return StateQuery::NoSocket;
    }
    let path = dir.join(QEMU_STATE_FILE);
    let mut text = String::new();
    let mut answered = sock.to_str().is_some_and(|sock| {
        let Ok(mut q) = crate::qmp::Qmp::connect_within_replying(
            sock,
            Duration::from_secs(2),
            Duration::from_secs(5),
        ) else {
            text.push_str("(no answer to the QMP handshake)\n");
            return false;
        };
        ["info cpus", "info registers -a"].iter().all(|cmd| {
            let out = q.execute(
                "human-monitor-command",
                serde_json::json!({ "command-line": cmd }),
            );
            match out {
                Ok(Ok(v)) => {
                    text.push_str(&format!("(qemu) {cmd}\n{}\n", v.as_str().unwrap_or("")));
                    true
                }
                Ok(Err(e)) => {
                    text.push_str(&format!("(qemu) {cmd}\nrefused: {e}\n"));
                    true
                }
                Err(e) => {
                    text.push_str(&format!("(qemu) {cmd}\nno answer: {e}\n"));
                    false
                }
            }
        })
    });
    let written = fs::write(&path, &text).is_ok().then_some(path);
    answered &= written.is_some();
    match (answered, written) {
        (true, Some(p)) => StateQuery::Answered(p),
        (_, w) => StateQuery::Stuck(w),
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake "qemu": a shell script writing to the two files.
    fn fake(dir: &Path, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .env("C", console_path(dir))
            .env("R", results_path(dir));
        c
    }

    #[test]
    fn a_hanging_qemu_is_killed_and_reported_with_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(
            dir.path(),
            "for i in 1 2 3 4 5; do echo \"[ $i] boot line $i\" >> \"$C\"; done\n\
             echo 'vfiocxl: step wait' >> \"$C\"\n\
             echo 'VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":1.5}' >> \"$R\"\n\
             exec sleep 600",
        );
        let start = Instant::now();
        let out = run_command(cmd, dir.path(), Duration::from_millis(700), DONE_GRACE).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(out.exit, Exit::TimedOut(Duration::from_millis(700)));
        assert!(out.to_init.is_some());
        let problems = out.problems();
        assert!(problems[0].starts_with("timed out"), "{problems:?}");
        assert!(
            problems[1].contains("no VFIOCXL-DONE") && problems[1].contains("\"wait\""),
            "{problems:?}"
        );
        assert_eq!(
            out.console_tail(2),
            ["[ 5] boot line 5", "vfiocxl: step wait"]
        );
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(
            dir.path(),
            "echo 'Run /init as init process' > \"$C\"\n\
             printf '%s\\n' 'VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":1.5}' \
             'VFIOCXL-RESULT {\"kind\":\"step\",\"name\":\"s\",\"ok\":true,\"rc\":0}' \
             'VFIOCXL-DONE {\"ok\":true,\"uptime\":2,\"tainted\":12288}' > \"$R\"",
        );
        let out = run_command(cmd, dir.path(), Duration::from_secs(30), DONE_GRACE).unwrap();
        assert!(matches!(out.exit, Exit::Exited(s) if s.success()));
        assert_eq!(out.problems(), Vec::<String>::new());
        assert_eq!(out.report.steps_run(), 1);
    }

    #[test]
    fn kernel_trouble_and_bad_exit_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(
            dir.path(),
            "echo '[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x0' > \"$C\"\n\
             echo 'VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":1}' > \"$R\"\n\
             echo 'VFIOCXL-DONE {\"ok\":true,\"uptime\":2,\"tainted\":512}' >> \"$R\"\n\
             echo 'qemu: oh no' >&2; exit 3",
        );
        let out = run_command(cmd, dir.path(), Duration::from_secs(30), DONE_GRACE).unwrap();
        let p = out.problems().join("\n");
        assert!(p.contains("QEMU exited with"), "{p}");
        assert!(p.contains("kernel tainted: W"), "{p}");
        assert!(p.contains("console line 1: WARN()"), "{p}");
        assert_eq!(out.stderr.trim(), "qemu: oh no");
    }

    #[test]
    fn qemu_trouble_on_stderr_is_a_problem_guest_errors_are_not() {
        let mut out = timed_out(0, None);
        out.exit = Exit::KilledAfterDone;
        out.silence = None;
        out.stderr = "cxl-accel: HDM decoder 0 commit refused: decoder size is zero\n\
                      CXL: write 0x0 to locked HDM decoder register 0x1030 ignored\n"
            .into();
        assert!(stderr_problems(&out.stderr).is_empty());
        for bad in [
            "thread '<unnamed>' panicked at rust/hw/cxl/vfio/src/part.rs:1:1:",
            "**\nERROR:../hw/cxl/cxl-host.c:42:f: assertion failed: (x)",
            "qemu-system-x86_64: ../x.c:1: f: Assertion `x' failed.",
            "(qemu-system-x86_64:1): GLib-CRITICAL **: 12:00: g_x: assertion 'x' failed",
            "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
        ] {
            out.stderr = format!("fine\n{bad}\n");
            let p = out.problems();
            assert!(
                p.iter().any(|l| l.starts_with("QEMU stderr: ")),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn a_qemu_that_hangs_after_done_is_killed_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(
            dir.path(),
            "echo 'VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":1}' > \"$R\"\n\
             echo 'VFIOCXL-DONE {\"ok\":true,\"uptime\":2,\"tainted\":0}' >> \"$R\"\n\
             exec sleep 600",
        );
        let out = run_command(
            cmd,
            dir.path(),
            Duration::from_secs(60),
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(out.exit, Exit::KilledAfterDone);
        assert!(out.wall < Duration::from_secs(10));
        let p = out.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("a hang at teardown"), "{p:?}");
        assert_eq!(out.problems_beyond_lost_timer(), p);
    }

    #[test]
    fn qemu_errors_on_stderr_are_problems_and_traces_and_warnings_are_not() {
        let stderr = "\
vfio_cxl_map vfio-user:/tmp/s: 0x290000000 +0x10000000
qemu-system-x86_64: warning: host doesn't support requested feature
qemu-system-x86_64: info: something
qemu-system-x86_64: -device vfio-cxl,host=0000:0d:00.0: no CXL_MEM region
thread '<unnamed>' panicked at rust/hw/cxl/src/accel.rs:10:5:
qemu-system-x86_64: ../hw/pci/pci.c:12: f: Assertion `x' failed.
(qemu-system-x86_64:123): GLib-CRITICAL **: 10:00:00: g_free: bad
";
        let p = stderr_problems(stderr);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("no CXL_MEM region"), "{p:?}");
        assert!(p[1].contains("panicked at"), "{p:?}");
        assert!(p[2].contains("Assertion"), "{p:?}");
        assert!(p[3].contains("CRITICAL"), "{p:?}");
        // Every run is scanned.
        let dir = tempfile::tempdir().unwrap();
        let cmd = fake(
            dir.path(),
            "echo 'VFIOCXL-BEGIN {\"payload\":\"p\",\"uptime\":1}' > \"$R\"\n\
             echo 'VFIOCXL-DONE {\"ok\":true,\"uptime\":2,\"tainted\":0}' >> \"$R\"\n\
             echo 'qemu-system-x86_64: vfio-cxl: unmap failed' >&2",
        );
        let out = run_command(cmd, dir.path(), Duration::from_secs(30), DONE_GRACE).unwrap();
        assert_eq!(
            out.problems(),
            ["QEMU stderr: qemu-system-x86_64: vfio-cxl: unmap failed"]
        );
    }

    #[test]
    fn a_lost_timer_explains_a_timeout_and_a_stall_but_not_a_warn() {
        let mut o = timed_out(100, Some(0.01));
        o.kernel_problems = vec![
            KernelProblem {
                line_no: 5,
                what: "RCU stall",
                line: "rcu: INFO: rcu_preempt detected stalls".into(),
            },
            KernelProblem {
                line_no: 9,
                what: "WARN()",
                line: "WARNING: CPU: 1 PID: 7 at drivers/cxl/core/region.c:1".into(),
            },
        ];
        o.stderr = "qemu-system-x86_64: bad thing\n".into();
        let beyond = o.problems_beyond_lost_timer();
        assert_eq!(beyond.len(), 2, "{beyond:?}");
        assert!(beyond[0].contains("bad thing"), "{beyond:?}");
        assert!(beyond[1].contains("WARN()"), "{beyond:?}");
        let all = o.problems();
        assert!(all.iter().any(|p| p.contains("RCU stall")), "{all:?}");
        assert!(all.iter().any(|p| p.starts_with("timed out")), "{all:?}");
        for b in &beyond {
            assert!(all.contains(b), "{b} missing from {all:?}");
        }
    }

    #[test]
    fn a_missing_binary_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_command(
            Command::new("/nonexistent/qemu"),
            dir.path(),
            Duration::from_secs(1),
            DONE_GRACE,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err}");
    }

    /// A fake guest that beats twice, then runs `then` until killed.
    fn beating(dir: &Path, then: &str) -> Command {
        fake(
            dir,
            &format!(
                "echo 'VFIOCXL-BEGIN {{\"payload\":\"p\",\"uptime\":1}}' > \"$R\"\n\
                 echo 'boot line' >> \"$C\"\n\
                 echo '{beat}' >> \"$C\"\n\
                 echo 'vfiocxl: step s' >> \"$C\"\n\
                 echo '{beat}' >> \"$C\"\n\
                 {then}",
                beat = console::HEARTBEAT
            ),
        )
    }

    /// The silence a fake guest running `script` left when killed after
    /// `ms` milliseconds.
    fn silence_of(script: impl Fn(&Path) -> Command, ms: u64) -> Option<Silence> {
        let dir = tempfile::tempdir().unwrap();
        let out = run_command(
            script(dir.path()),
            dir.path(),
            Duration::from_millis(ms),
            DONE_GRACE,
        )
        .unwrap();
        assert_eq!(out.exit, Exit::TimedOut(Duration::from_millis(ms)));
        out.silence
    }

    #[test]
    fn a_qemu_whose_monitor_is_stuck_did_not_lose_a_timer() {
        let lost = timed_out(100, Some(0.01));
        assert!(lost.timers_stopped().is_some());
        let stuck = RunOutcome {
            killed: Some(Killed {
                monitor_stuck: true,
                ..Killed::default()
            }),
            ..lost
        };
        assert!(stuck.timers_stopped().is_none());
        assert!(stuck
            .problems_beyond_lost_timer()
            .iter()
            .any(|p| p.starts_with("QEMU did not answer its monitor")));
    }

    #[test]
    fn a_qemu_without_a_monitor_socket_is_not_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(save_qemu_state(dir.path()), StateQuery::NoSocket));
        // A socket nobody answers on: stuck, said in the file, in seconds.
        let _l = std::os::unix::net::UnixListener::bind(dir.path().join(DIAG_QMP_SOCKET)).unwrap();
        let t = Instant::now();
        let StateQuery::Stuck(Some(path)) = save_qemu_state(dir.path()) else {
            panic!("not stuck")
        };
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
        let text = fs::read_to_string(path).unwrap();
        assert!(text.contains("no answer to the QMP handshake"), "{text}");
    }

    #[test]
    fn a_heartbeat_silent_too_long_is_killed_before_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let out = run_command_limits(
            beating(dir.path(), "exec sleep 600"),
            dir.path(),
            Duration::from_secs(60),
            DONE_GRACE,
            Duration::from_millis(800),
            &[],
        )
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(matches!(out.exit, Exit::Silent(_)), "{:?}", out.exit);
        assert!(out.exit.hung());
        assert!(out
            .silence
            .is_some_and(|s| s.quiet >= Duration::from_millis(800)));
        let p = out.problems();
        assert!(
            p.iter()
                .any(|x| x.starts_with("the guest's heartbeat was silent for")),
            "{p:?}"
        );
        // Idle while silent: taken for stopped timers (rerun once).
        assert!(out.timers_stopped().is_none(), "needs 10 s of silence");
    }

    #[test]
    fn the_longest_heartbeat_gap_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let beat = console::HEARTBEAT;
        let script = format!(
            "echo '{beat}' >> \"$C\"; sleep 0.2; echo '{beat}' >> \"$C\"\n\
             sleep 1.2; echo '{beat}' >> \"$C\"; sleep 0.2; echo '{beat}' >> \"$C\"\n\
             echo 'VFIOCXL-DONE {{\"ok\":true}}' >> \"$R\""
        );
        let out = run_command_limits(
            fake(dir.path(), &script),
            dir.path(),
            Duration::from_secs(30),
            DONE_GRACE,
            SILENCE_LIMIT,
            &[],
        )
        .unwrap();
        let gap = out.heartbeat_gap.expect("gap measured");
        // The poll interval blurs each end; a loaded machine more so.
        assert!(
            gap >= Duration::from_millis(1000) && gap < Duration::from_secs(5),
            "{gap:?}"
        );
        // One heartbeat is no interval.
        let dir = tempfile::tempdir().unwrap();
        let one = run_command_limits(
            fake(dir.path(), &format!("echo '{beat}' >> \"$C\"")),
            dir.path(),
            Duration::from_secs(30),
            DONE_GRACE,
            SILENCE_LIMIT,
            &[],
        )
        .unwrap();
        assert_eq!(one.heartbeat_gap, None);
    }

    #[test]
    fn a_silent_heartbeat_is_measured_with_qemus_cpu_use() {
        let idle = silence_of(|d| beating(d, "exec sleep 600"), 1500).expect("silence measured");
        assert_eq!(idle.last_line, 4);
        assert!(idle.quiet >= Duration::from_millis(1000), "{idle:?}");
        assert!(idle.cpu_share.unwrap() < IDLE_CPU_SHARE, "{idle:?}");

        // A spinning guest uses more CPU than a sleeping one. Not compared
        // with IDLE_CPU_SHARE: on a loaded 2-core machine a spinning shell
        // measured 0.16 CPUs (CI of 2026-12-04).
        let busy =
            silence_of(|d| beating(d, "while :; do :; done"), 1500).expect("silence measured");
        assert!(
            busy.cpu_share.unwrap() > idle.cpu_share.unwrap(),
            "{busy:?} vs {idle:?}"
        );

        // No heartbeat at all (the guest never got that far): nothing to say.
        assert_eq!(silence_of(|d| fake(d, "exec sleep 600"), 300), None);
    }

    fn timed_out(quiet_secs: u64, cpu_share: Option<f64>) -> RunOutcome {
        RunOutcome {
            exit: Exit::TimedOut(Duration::from_secs(120)),
            report: GuestReport::default(),
            console: String::new(),
            stderr: String::new(),
            kernel_problems: Vec::new(),
            to_init: Some(Duration::from_secs(4)),
            wall: Duration::from_secs(120),
            dir: "/nonexistent".into(),
            silence: Some(Silence {
                quiet: Duration::from_secs(quiet_secs),
                cpu_share,
                last_line: 30,
            }),
            killed: None,
            heartbeat_gap: None,
            host_facts: Vec::new(),
            provoked_taints: 0,
        }
    }

    /// A process that ignores SIGKILL (what a thread stuck in the kernel
    /// looks like from user space).
    struct Unkillable(u32);

    impl Killable for Unkillable {
        fn pid(&self) -> u32 {
            self.0
        }
        fn send_kill(&mut self) {}
        fn reaped(&mut self) -> Result<bool> {
            Ok(false)
        }
    }

    #[test]
    fn a_process_outliving_sigkill_is_left_and_described() {
        let mut p = Unkillable(std::process::id());
        let k = kill(
            &mut p,
            Path::new("/nonexistent"),
            Duration::from_millis(200),
        )
        .unwrap();
        let survived = k.survived.clone().expect("still there");
        assert!(survived[0].starts_with("thread "), "{survived:?}");
        assert!(!k.threads.is_empty());
        let mut o = timed_out(1, None);
        o.killed = Some(k);
        let p = o.problems_beyond_lost_timer();
        assert!(
            p.iter()
                .any(|x| x.starts_with("QEMU was still there 30 s after SIGKILL")
                    && x.contains("\n      | thread ")),
            "{p:?}"
        );
    }

    #[test]
    fn a_killed_process_is_reaped() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id();
        let k = kill(&mut child, Path::new("/nonexistent"), KILL_GRACE).unwrap();
        assert_eq!(k.survived, None);
        assert!(
            k.threads[0].starts_with(&format!("thread {pid} (sleep)")),
            "{k:?}"
        );
        assert!(timed_out(1, None).problems_beyond_lost_timer().is_empty());
    }

    #[test]
    fn timers_stopped_needs_a_long_silence_an_idle_qemu_and_a_timeout() {
        let k = timed_out(100, Some(0.01))
            .timers_stopped()
            .expect("stopped");
        assert_eq!(k.line_no, 30);
        assert!(k.line.starts_with("no heartbeat for 100 s"), "{}", k.line);
        assert!(timed_out(100, Some(0.01))
            .problems()
            .iter()
            .any(|p| p.contains("guest timers stopped")));
        // One late beat is not a stop.
        assert!(timed_out(3, Some(0.01)).timers_stopped().is_none());
        // Busy vCPUs: a lockup in the guest, a real failure.
        assert!(timed_out(100, Some(1.9)).timers_stopped().is_none());
        assert!(timed_out(100, None).timers_stopped().is_none());
        let mut exited = timed_out(100, Some(0.01));
        exited.exit = Exit::KilledAfterDone;
        assert!(exited.timers_stopped().is_none());
    }

    #[test]
    fn milestones_are_reached_in_order_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let console = console_path(dir.path());
        let mut w = HeartbeatWatch::new(console.clone(), std::process::id());
        w.milestones = vec![
            ("step a", "a"),
            ("step b", "b"),
            ("step c", "c"),
            ("step d", "d"),
        ];
        fs::write(&console, "x\nstep a\nstep a\n").unwrap();
        w.poll();
        // Each once: the second "step a" changes nothing.
        assert_eq!(
            w.milestones,
            [("step b", "b"), ("step c", "c"), ("step d", "d")]
        );
        // A missed milestone ("b") does not hold back a later one; it is passed.
        fs::write(&console, "x\nstep a\nstep a\nstep c\nstep b\n").unwrap();
        w.poll();
        assert_eq!(w.milestones, [("step d", "d")]);
    }

    #[test]
    fn cpu_time_reads_utime_and_stime_past_a_strange_comm() {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let stat = format!(
            "42 (qemu (x) y) S 1 42 42 0 -1 4194560 10 0 0 0 {} {} 0 0 20 0 5 0",
            3 * hz,
            hz
        );
        assert_eq!(cpu_time_of_stat(&stat), Some(Duration::from_secs(4)));
        assert_eq!(cpu_time_of_stat("garbage"), None);
        assert!(cpu_time(std::process::id()).is_some());
    }
}
