//! `cargo xtask demo`: the main job, the end-to-end run on the emulated
//! default device (one level, vfio-user), with its report.
//!
//! Fetches and verifies the pinned sources, builds QEMU with the series,
//! the host and guest drivers, the test binaries and the vfio-user server,
//! then boots ONE guest (`guest-harness demo`, guest-tests/harness/src/
//! demo.rs) that shows the guest's CXL topology, runs the coherence suite
//! on the reference guest driver over `-device vfio-user-cxl` and the
//! bandwidth benchmark. Long steps print their start, their end with the
//! elapsed time, and (QEMU's build) a progress line every
//! [`PROGRESS_EVERY`]; full logs go to `<cache>/demo/`. The final report
//! says what was built, what the guest saw and measured, the total time.
//! `--chain` then runs the nested chain (`cargo xtask chain`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins};

/// The main job: end-to-end run on the emulated device, with its report
///
/// One VM level, vfio-user. Fetches and verifies the pinned sources, builds
/// QEMU 10.2.2 with patches/qemu, the host driver, the reference guest
/// driver, the test binaries and the vfio-user Type-2 server, then boots
/// one guest that reports the topology its CXL core sees, runs the
/// coherence suite (cxl-type2-ref over -device vfio-user-cxl, checked from
/// the host) and the bandwidth benchmark. Ends with a report; exit status 0
/// only when every check passed. Logs and the report (report.txt,
/// report.json) are in <cache>/demo/.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Use the QEMU already built (skips fetching its source and
    /// build-qemu; drivers and binaries are still brought up to date)
    #[arg(long)]
    pub no_build: bool,
    /// Afterwards, run the nested full chain (cargo xtask chain: L1 host
    /// driver + -device vfio-cxl, L2 coherence; ~10+ min)
    #[arg(long)]
    pub chain: bool,
    /// Run tools/setup-apt before fetching (see cargo xtask fetch)
    #[arg(long)]
    pub setup_apt: bool,
}

/// How often the QEMU build's progress is shown.
const PROGRESS_EVERY: Duration = Duration::from_secs(20);

/// Numbered steps with their start, end and elapsed time.
struct Steps {
    n: usize,
    total: usize,
}

impl Steps {
    fn run<T>(&mut self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.n += 1;
        let tag = format!("[{}/{}]", self.n, self.total);
        println!("{tag} {what} ...");
        let t = Instant::now();
        let r = f();
        let took = t.elapsed().as_secs_f64();
        match &r {
            Ok(_) => println!("{tag} {what}: done ({took:.1} s)"),
            Err(_) => println!("{tag} {what}: FAILED after {took:.1} s"),
        }
        r.map_err(|e| e.context_of(what))
    }
}

trait Context {
    fn context_of(self, what: &str) -> Self;
}

impl Context for Error {
    fn context_of(self, what: &str) -> Self {
        Error::msg(format!("{what}: {self}"))
    }
}

/// `[812/2390] Compiling C object ...` -> (812, 2390).
fn ninja_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix('[')?;
    let (done, rest) = rest.split_once('/')?;
    let (total, _) = rest.split_once(']')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Runs `cargo xtask <args>` with its output in `log`; shows the
/// sub-steps' end lines (`<== ...`) and, at most every
/// [`PROGRESS_EVERY`], ninja's progress. On failure, the log's tail.
fn xtask_logged(args: &[&str], log: &Path) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find the xtask binary", e))?;
    let mut file = fs::File::create(log)
        .map_err(|e| Error::io(format!("cannot create {}", log.display()), e))?;
    let err = file
        .try_clone()
        .map_err(|e| Error::io(format!("cannot reopen {}", log.display()), e))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(|e| Error::io(format!("cannot run cargo xtask {}", args.join(" ")), e))?;
    let out = child.stdout.take().expect("piped");
    let mut last_progress = Instant::now();
    for line in BufReader::new(out).lines().map_while(std::io::Result::ok) {
        let _ = writeln!(file, "{line}");
        if let Some(rest) = line.strip_prefix("<== ") {
            println!("      {rest}");
        } else if let Some((done, total)) = ninja_progress(&line) {
            if last_progress.elapsed() >= PROGRESS_EVERY || done == total {
                println!(
                    "      ninja {done}/{total} ({}%)",
                    done * 100 / total.max(1)
                );
                last_progress = Instant::now();
            }
        }
    }
    let st = child
        .wait()
        .map_err(|e| Error::io("waiting for cargo xtask", e))?;
    if st.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(25)..] {
        println!("      | {l}");
    }
    Err(Error::msg(format!(
        "cargo xtask {} failed ({st}); log: {}",
        args.join(" "),
        log.display()
    )))
}

/// `cargo build <args>` in the repository, quiet.
fn cargo_build(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(crate::test::repo_root())
        .args(["build", "--quiet"])
        .args(args)
        .status()
        .map_err(|e| Error::io("cannot run cargo build", e))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "cargo build {} failed ({st})",
            args.join(" ")
        )))
    }
}

fn qemu_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find the xtask binary", e))?;
    let out = Command::new(exe)
        .arg("qemu-path")
        .output()
        .map_err(|e| Error::io("cargo xtask qemu-path", e))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "cargo xtask qemu-path failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// The "what was built" part of the report.
fn built_lines(qemu: &Path) -> Result<Vec<String>> {
    let root = crate::test::repo_root();
    let env_pins = std::env::var(pins::PINS_ENV).ok();
    let eff = Pins::load(&pins::default_path())?
        .effective(&Overrides::parse(&[], env_pins.as_deref())?)?;
    let patches = fs::read_dir(root.join("patches/qemu"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "patch"))
                .count()
        })
        .unwrap_or(0);
    let rel = |p: &str| {
        let path = root.join(p);
        let mark = if path.exists() { "" } else { " (missing!)" };
        format!("{p}{mark}")
    };
    Ok(vec![
        format!(
            "QEMU {} (Debian {} {}, sha256-pinned in pins.toml) + patches/qemu ({patches} patches): {}",
            eff.qemu.upstream,
            eff.qemu.package,
            eff.qemu.version,
            qemu.display()
        ),
        format!(
            "Linux {} ({}, Debian {}): host driver built against its tree; guests boot its kernel",
            eff.linux.upstream, eff.linux.abi, eff.linux.suite
        ),
        format!(
            "host driver: {}, {}",
            rel("host-driver/vfio-cxl-core.ko"),
            rel("host-driver/vfio-cxl-pci.ko")
        ),
        format!(
            "reference guest driver: {}",
            rel("guest-tests/guest-driver/cxl-type2-ref.ko")
        ),
        format!(
            "test binary (static): {}",
            rel("target/guest/x86_64-unknown-linux-gnu/release/vfio-cxl-uapi-check")
        ),
        format!(
            "vfio-user Type-2 server: {}",
            rel("target/release/vfio-user-cxl")
        ),
    ])
}

pub fn run(o: &Args) -> Result<()> {
    let build = !o.no_build;
    crate::prereqs::require_packages()?;
    let started = Instant::now();
    let cache = Cache::from_env()?;
    let dir = cache.root().join("demo");
    fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    println!(
        "demo: the main job, one VM level, vfio-user (logs and report in {})",
        dir.display()
    );
    let mut steps = Steps {
        n: 0,
        total: if build { 5 } else { 3 } + usize::from(o.chain),
    };
    if build {
        steps.run("fetch and verify the pinned QEMU and Linux sources", || {
            let mut a = vec!["fetch", "all"];
            if o.setup_apt {
                a.push("--setup-apt");
            }
            xtask_logged(&a, &dir.join("fetch.log"))
        })?;
        steps.run(
            "build QEMU with patches/qemu (incremental; a cold build takes ~5 min on 2 cores)",
            || xtask_logged(&["build-qemu"], &dir.join("build-qemu.log")),
        )?;
    }
    steps.run(
        "build the host driver, the guest driver and the static test binary",
        || {
            if !build {
                let mut a = vec!["fetch", "linux"];
                if o.setup_apt {
                    a.push("--setup-apt");
                }
                xtask_logged(&a, &dir.join("fetch.log"))?;
            }
            xtask_logged(&["build-driver"], &dir.join("build-driver.log"))?;
            xtask_logged(&["build-guest-driver"], &dir.join("build-guest-driver.log"))?;
            crate::vmtest::build_uapi_check()
        },
    )?;
    steps.run(
        "build the vfio-user Type-2 server and the guest harness",
        || {
            cargo_build(&["--release", "--package", "vfio-user-cxl"])?;
            cargo_build(&["--package", "guest-harness"])
        },
    )?;
    let mut harness = crate::vmtest::harness_command("demo")?;
    // Now: a long --chain run may outlive this binary's file (a rebuild
    // replaces it), and `qemu-path` runs it again.
    let built = built_lines(&qemu_path()?)?;
    let report = dir.join("report.txt");
    let json = dir.join("report.json");
    let _ = fs::remove_file(&report);
    let guest_ok = steps.run("boot the guest and run the checks (one boot)", || {
        harness
            .arg("--report")
            .arg(&report)
            .arg("--json-out")
            .arg(&json);
        let st = harness
            .status()
            .map_err(|e| Error::io("cannot run guest-harness demo", e))?;
        if !report.is_file() {
            return Err(Error::msg(format!(
                "guest-harness demo wrote no report ({st})"
            )));
        }
        Ok(st.success())
    })?;
    let chain = if o.chain {
        let t = Instant::now();
        let r = steps.run("the nested full chain (cargo xtask chain)", || {
            crate::chain::run(&crate::chain::Args {
                no_build: true,
                ..Default::default()
            })
        });
        Some((r.is_ok(), t.elapsed()))
    } else {
        None
    };

    let text = fs::read_to_string(&report)
        .map_err(|e| Error::io(format!("cannot read {}", report.display()), e))?;
    println!("\n========== vfio-cxl main job: report ==========");
    println!("Built:");
    for l in &built {
        println!("  {l}");
    }
    print!("{text}");
    if let Some((ok, took)) = chain {
        println!(
            "Nested chain (L0 cxl-accel -> L1 vfio-cxl-pci + -device vfio-cxl -> L2 coherence): {} ({:.0} s)",
            if ok { "PASS" } else { "FAIL" },
            took.as_secs_f64()
        );
    }
    let ok = guest_ok && chain.is_none_or(|(ok, _)| ok);
    println!(
        "Total: {:.1} s. Result: {}",
        started.elapsed().as_secs_f64(),
        if ok { "PASS" } else { "FAIL" }
    );
    println!("(report: {}, {})", report.display(), json.display());
    if ok {
        Ok(())
    } else {
        Err(Error::msg("the main job failed (see the report above)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninja_lines_parse() {
        assert_eq!(
            ninja_progress("[812/2390] Compiling C object libqemu.a.p/x.c.o"),
            Some((812, 2390))
        );
        assert_eq!(ninja_progress("ninja: no work to do."), None);
        assert_eq!(ninja_progress("[a/b] x"), None);
    }
}
