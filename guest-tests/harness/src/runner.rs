//! Starting QEMU with a hard timeout and turning what happened into a
//! [`RunOutcome`].
//!
//! The runner polls (every 50 ms) the child and the results file: it notes
//! when `VFIOCXL-BEGIN` appears (boot to init, as seen from the host) and
//! when `VFIOCXL-DONE` appears. After DONE the guest powers itself off; if
//! QEMU is still there [`DONE_GRACE`] later it is killed, which is not a
//! failure. If the timeout expires first, QEMU is killed (SIGKILL to the
//! process the runner started) and the run fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::console::{self, GuestReport, KernelProblem};
use crate::error::{Error, Result};

/// How long QEMU may take to exit after the guest said DONE.
pub const DONE_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// How the QEMU process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself.
    Exited(ExitStatus),
    /// The guest finished but QEMU did not exit within the grace period.
    KilledAfterDone,
    /// The hard timeout expired; it was killed.
    TimedOut(Duration),
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
    /// What the host found after the run ([`crate::env::RunSpec::after_exit`]),
    /// e.g. patterns in a memory-backend file; checks compare on these as
    /// on the guest's facts.
    pub host_facts: HostFacts,
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
            Exit::Exited(st) if !st.success() => p.push(format!("QEMU exited with {st}")),
            _ => {}
        }
        if self.report.begin.is_none() {
            p.push("the guest never reached /init (no VFIOCXL-BEGIN)".into());
        }
        for m in self.report.failed_modules() {
            p.push(format!("insmod {m} failed"));
        }
        for s in self.report.failed_steps() {
            p.push(format!("step {s:?} failed"));
        }
        for m in &self.report.malformed {
            p.push(format!("malformed result line: {m}"));
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
                for t in console::bad_taints(d.tainted) {
                    p.push(format!("kernel tainted: {t}"));
                }
            }
        }
        for k in &self.kernel_problems {
            p.push(format!(
                "console line {}: {}: {}",
                k.line_no, k.what, k.line
            ));
        }
        p
    }

    /// The last value of host fact `key`.
    pub fn host_fact(&self, key: &str) -> Option<&str> {
        self.host_facts
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last `n` console lines (for failure reports).
    pub fn console_tail(&self, n: usize) -> Vec<&str> {
        console::tail(&self.console, n)
    }
}

/// Files of one run inside `dir`.
pub fn console_path(dir: &Path) -> PathBuf {
    dir.join("console.log")
}

pub fn results_path(dir: &Path) -> PathBuf {
    dir.join("results.log")
}

/// Runs `cmd` (QEMU, or a stand-in in tests) until it exits or `timeout`
/// expires. The command must write the console to `console_path(dir)` and
/// the results to `results_path(dir)`; its stderr goes to `dir/stderr.log`.
pub fn run_command(
    mut cmd: Command,
    dir: &Path,
    timeout: Duration,
    done_grace: Duration,
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
            kill(&mut child)?;
            break Exit::KilledAfterDone;
        }
        if start.elapsed() > timeout {
            kill(&mut child)?;
            break Exit::TimedOut(timeout);
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
        host_facts: Vec::new(),
    })
}

fn kill(child: &mut Child) -> Result<()> {
    // Only the process this runner started.
    let _ = child.kill();
    child.wait().map_err(|e| Error::io("reaping QEMU", e))?;
    Ok(())
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
    fn a_guest_that_finishes_but_does_not_power_off_is_killed_without_failure() {
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
        assert_eq!(out.problems(), Vec::<String>::new());
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
}
