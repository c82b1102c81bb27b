//! Processes and files: an isolated `git`, command runners, sha256, a
//! temporary directory, directory listing and comparison.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use crate::error::{Error, Result};

use super::series::Author;

/// A git command isolated from the user's and the system's configuration,
/// with a fixed identity, so results do not depend on the machine.
pub(super) fn git(dir: &Path, author: Option<&Author>) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "gc.auto=0",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "user.name=vfio-cxl xtask",
            "-c",
            "user.email=xtask@localhost.invalid",
        ]);
    let (name, email, date) = match author {
        Some(a) => (a.name.as_str(), a.email.as_str(), a.date.as_str()),
        None => (
            "vfio-cxl xtask",
            "xtask@localhost.invalid",
            "2000-01-01 00:00:00 +0000",
        ),
    };
    for who in ["AUTHOR", "COMMITTER"] {
        c.env(format!("GIT_{who}_NAME"), name)
            .env(format!("GIT_{who}_EMAIL"), email)
            .env(format!("GIT_{who}_DATE"), date);
    }
    c
}

/// Runs a command and returns its stdout; a failure names the command and
/// carries its stderr.
pub(super) fn run_output(cmd: &mut Command, what: &str) -> Result<String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with its output shown.
pub(super) fn run_status(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::msg(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("{what} failed ({status})")))
    }
}

pub(super) use crate::digest::sha256_hex;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("vfio-cxl-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Self(dir))
    }
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Regular files under `root`, as sorted `/`-separated relative paths
/// (empty when `root` does not exist).
pub(super) fn list_files(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries = fs::read_dir(dir)
            .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                let rel = path.strip_prefix(root).expect("walk stays under root");
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            } else {
                return Err(Error::msg(format!(
                    "{} is neither a file nor a directory (symlinks are not supported)",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Names of files that differ between two directories (missing on either
/// side, or different bytes).
pub(super) fn compare_dirs(a: &Path, b: &Path) -> Result<Vec<String>> {
    let fa: BTreeSet<String> = list_files(a)?.into_iter().collect();
    let fb: BTreeSet<String> = list_files(b)?.into_iter().collect();
    let mut diffs = Vec::new();
    for name in fa.union(&fb) {
        match (fa.contains(name), fb.contains(name)) {
            (true, true) => {
                if read(&a.join(name))? != read(&b.join(name))? {
                    diffs.push(format!("{name} differs"));
                }
            }
            (true, false) => diffs.push(format!("{name} missing")),
            _ => diffs.push(format!("{name} not generated")),
        }
    }
    Ok(diffs)
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    fs::write(path, bytes).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

pub(super) fn copy_file(from: &Path, to: &Path) -> Result<()> {
    write(to, &read(from)?)
}

pub(super) fn remove_dir(path: &Path) -> Result<()> {
    fs::remove_dir_all(path).map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))
}
