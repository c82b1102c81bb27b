//! Running the few external tools the harness needs (dpkg-deb, depmod, xz,
//! sha256sum, apt-get), each failure turned into one clear message.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{Error, Result};

/// Runs `cmd`, returns its output; a spawn failure or non-zero exit is an
/// error naming `what`, the command and the end of its stderr.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .output()
        .map_err(|e| Error::msg(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::msg(format!(
            "{what}: {:?} failed ({}):\n  {}",
            cmd,
            out.status,
            tail.join("\n  ")
        )));
    }
    Ok(out)
}

/// sha256 of a file, as lowercase hex (coreutils `sha256sum`).
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = run(Command::new("sha256sum").arg("--").arg(path), "sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.split_whitespace().next().unwrap_or("");
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::msg(format!(
            "sha256sum {}: unexpected output {text:?}",
            path.display()
        )));
    }
    Ok(hash.to_ascii_lowercase())
}

/// `xz -dc file` (for `.ko.xz`); other files are read as they are.
pub fn read_maybe_xz(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = run(Command::new("xz").arg("-dc").arg("--").arg(path), "xz -d")?;
        Ok(out.stdout)
    } else {
        fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
    }
}

/// A fresh, empty directory `<parent>/<name>.partial-<pid>` for building
/// something that is then renamed into place.
pub fn partial_dir(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = target.with_file_name(format!("{name}.partial-{}", std::process::id()));
    if partial.exists() {
        fs::remove_dir_all(&partial)
            .map_err(|e| Error::io(format!("cannot remove {}", partial.display()), e))?;
    }
    fs::create_dir_all(&partial)
        .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
    Ok(partial)
}

/// Moves a finished `partial` directory to `target`, replacing it.
pub fn commit_dir(partial: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        fs::remove_dir_all(target)
            .map_err(|e| Error::io(format!("cannot remove {}", target.display()), e))?;
    }
    fs::rename(partial, target)
        .map_err(|e| Error::io(format!("cannot move {} into place", target.display()), e))
}

pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}
