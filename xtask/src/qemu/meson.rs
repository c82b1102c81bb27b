//! meson from PyPI in a venv under the cache, and QEMU's configure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

use super::context::Layout;
use super::util::{remove_dir, run_output, run_status, write};
use super::{CONFIGURE_ARGS, MESON_VERSION};

/// `<cache>/tools/meson-<version>/bin/python3`, a venv with meson from PyPI
/// (created when missing or holding another version).
pub(super) fn ensure_meson(cache_root: &Path) -> Result<PathBuf> {
    let venv = cache_root
        .join("tools")
        .join(format!("meson-{MESON_VERSION}"));
    let python = venv.join("bin").join("python3");
    let meson = venv.join("bin").join("meson");
    let have = Command::new(&meson)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(MESON_VERSION) && python.exists() {
        println!("    meson {MESON_VERSION} in {}", venv.display());
        return Ok(python);
    }
    if venv.exists() {
        remove_dir(&venv)?;
    }
    println!(
        "    creating {} (pip install meson=={MESON_VERSION})",
        venv.display()
    );
    run_output(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run_output(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            &format!("meson=={MESON_VERSION}"),
        ]),
        "pip install meson (needs access to PyPI)",
    )?;
    Ok(python)
}

/// What the build directory was configured with.
pub(super) fn configure_identity(python: &Path) -> String {
    format!(
        "meson {MESON_VERSION}; python {}; {}",
        python.display(),
        CONFIGURE_ARGS.join(" ")
    )
}

pub(super) fn configure(layout: &Layout, python: &Path) -> Result<()> {
    if layout.build.exists() {
        remove_dir(&layout.build)?;
    }
    fs::create_dir_all(&layout.build)
        .map_err(|e| Error::io(format!("cannot create {}", layout.build.display()), e))?;
    let log = layout.root.join("configure.log");
    println!(
        "    {}/configure {} (log: {})",
        layout.src.display(),
        CONFIGURE_ARGS.join(" "),
        log.display()
    );
    let out = Command::new(layout.src.join("configure"))
        .current_dir(&layout.build)
        .arg(format!("--python={}", python.display()))
        .args(CONFIGURE_ARGS)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("cannot run configure: {e}")))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    write(&log, &text)?;
    if !out.status.success() {
        let tail: Vec<&str> = std::str::from_utf8(&text)
            .unwrap_or("")
            .lines()
            .rev()
            .take(25)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // configure leaves a half-made build dir; the next run starts over.
        let _ = fs::remove_file(layout.build.join("build.ninja"));
        return Err(Error::msg(format!(
            "configure failed ({}); last lines of {}:\n{}",
            out.status,
            log.display(),
            tail.join("\n")
        )));
    }
    Ok(())
}

/// QEMU's Rust doctests whose crates the series changes, run by meson in
/// the build directory (`meson test --suite doc`): the qom crate's include
/// the `compile_fail` proofs that safe code cannot build an unterminated
/// interface list.
pub(super) const DOCTESTS: &[&str] = &["rust-qom-rs-doctests"];

/// Runs [`DOCTESTS`] in a configured build (output shown, with the logs of
/// failures).
pub(super) fn doctests(cache_root: &Path, layout: &Layout) -> Result<()> {
    let python = ensure_meson(cache_root)?;
    let meson = python.with_file_name("meson");
    run_status(
        Command::new(meson)
            .arg("test")
            .arg("-C")
            .arg(&layout.build)
            .args(["--suite", "doc", "--print-errorlogs"])
            .args(DOCTESTS),
        "meson test (Rust doctests)",
    )
}
