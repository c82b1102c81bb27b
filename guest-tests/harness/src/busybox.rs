//! busybox for the guest's userspace: Debian bookworm's `busybox-static`,
//! downloaded with `apt-get download` (never installed) and checked
//! against the sha256 recorded here. This is the only place its version is
//! recorded; pins.toml is xtask's (QEMU and the kernel).
//!
//! ```text
//! <cache>/sources/busybox-static/<version, ':' -> '_'>/<deb>
//! <cache>/guest/busybox-<version, ':' -> '_'>/busybox      extracted /bin/busybox
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::tools;

pub const PACKAGE: &str = "busybox-static";
/// bookworm's version (the machine's default suite, so no extra apt setup).
pub const VERSION: &str = "1:1.35.0-4+deb12u1+b1";
pub const ARCH: &str = "amd64";
/// sha256 of the .deb (agrees with the `SHA256:` of `apt-cache show`).
pub const SHA256: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";

/// The file name `apt-get download` writes (the epoch colon as `%3a`).
pub fn deb_file_name() -> String {
    format!("{PACKAGE}_{}_{ARCH}.deb", VERSION.replace(':', "%3a"))
}

fn version_dir() -> String {
    VERSION.replace(':', "_")
}

/// Path of a verified busybox binary in the cache; downloads and extracts
/// it first when needed.
pub fn ensure(cache_root: &Path) -> Result<PathBuf> {
    let bin_dir = cache_root
        .join("guest")
        .join(format!("busybox-{}", version_dir()));
    let binary = bin_dir.join("busybox");
    let stamp = bin_dir.join("sha256");
    if binary.is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(SHA256) {
        return Ok(binary);
    }
    let deb = fetch_deb(cache_root)?;
    let partial = tools::partial_dir(&bin_dir)?;
    let root = partial.join("x");
    tools::run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "extracting busybox-static",
    )?;
    fs::rename(root.join("bin/busybox"), partial.join("busybox"))
        .map_err(|e| Error::io(format!("{} has no bin/busybox", deb.display()), e))?;
    fs::remove_dir_all(&root).map_err(|e| Error::io("cannot clean up", e))?;
    fs::write(partial.join("sha256"), SHA256).map_err(|e| Error::io("cannot write stamp", e))?;
    tools::commit_dir(&partial, &bin_dir)?;
    Ok(binary)
}

fn fetch_deb(cache_root: &Path) -> Result<PathBuf> {
    let dir = cache_root.join("sources").join(PACKAGE).join(version_dir());
    let deb = dir.join(deb_file_name());
    if deb.is_file() {
        if tools::sha256_file(&deb)? == SHA256 {
            return Ok(deb);
        }
        fs::remove_file(&deb).map_err(|e| Error::io("cannot remove a bad download", e))?;
    }
    fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    eprintln!("guest-harness: apt-get download {PACKAGE}={VERSION}");
    let out = Command::new("apt-get")
        .arg("download")
        .arg(format!("{PACKAGE}={VERSION}"))
        .current_dir(&dir)
        .output()
        .map_err(|e| Error::msg(format!("cannot run apt-get: {e}")))?;
    if !out.status.success() || !deb.is_file() {
        return Err(Error::msg(format!(
            "cannot download {} ({PACKAGE}={VERSION}, recorded in guest-tests/harness/src/busybox.rs): {}\n  \
             versions apt can see: {}\n  \
             to move on: pick one, `apt-get download {PACKAGE}=<VERSION>`, and record VERSION and its sha256 in busybox.rs",
            deb_file_name(),
            String::from_utf8_lossy(&out.stderr).trim(),
            madison()
        )));
    }
    let got = tools::sha256_file(&deb)?;
    if got != SHA256 {
        return Err(Error::msg(format!(
            "{}: sha256 {got}, expected {SHA256} (recorded in guest-tests/harness/src/busybox.rs); \
             the archive's file changed or the recorded sum is wrong",
            deb.display()
        )));
    }
    Ok(deb)
}

/// `apt-cache madison busybox-static`, condensed to `version (suite)` items.
fn madison() -> String {
    let Ok(out) = Command::new("apt-cache")
        .args(["madison", PACKAGE])
        .output()
    else {
        return "(apt-cache not available)".into();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let items: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            (f.len() >= 3).then(|| format!("{} ({})", f[1], f[2]))
        })
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_is_what_apt_writes() {
        assert_eq!(
            deb_file_name(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
        assert_eq!(version_dir(), "1_1.35.0-4+deb12u1+b1");
        assert_eq!(SHA256.len(), 64);
    }
}
