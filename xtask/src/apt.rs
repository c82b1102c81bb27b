//! Running apt and reading what it prints.
//!
//! Everything that interprets apt output is a pure function over text so it
//! can be unit-tested with captured samples; the `run_*` functions are thin
//! wrappers that start the tools with `LC_ALL=C`.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// One line of `apt-cache madison`:
/// `      qemu | 1:10.2.2+ds-1 | http://deb.debian.org/debian sid/main Sources`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadisonEntry {
    pub package: String,
    pub version: String,
    /// Suite name without component, e.g. `sid` or `trixie-backports`.
    pub suite: String,
    /// True for a source package (`... Sources`), false for a binary one.
    pub source: bool,
}

pub fn parse_madison(text: &str) -> Vec<MadisonEntry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('|').map(str::trim);
            let package = parts.next()?;
            let version = parts.next()?;
            let origin = parts.next()?;
            if package.is_empty() || version.is_empty() || parts.next().is_some() {
                return None;
            }
            // "<uri> <suite>/<component> <arch> Packages" or "<uri> <suite>/<component> Sources"
            let mut words = origin.split_whitespace();
            let _uri = words.next()?;
            let dist = words.next()?;
            let suite = dist.split('/').next().unwrap_or(dist);
            Some(MadisonEntry {
                package: package.to_string(),
                version: version.to_string(),
                suite: suite.to_string(),
                source: origin.ends_with(" Sources"),
            })
        })
        .collect()
}

/// Does `apt-cache policy` (no arguments) list a release with codename
/// `suite`? Lines look like
/// `     release o=Debian,a=unstable,n=sid,l=Debian,c=main,b=amd64`.
pub fn suite_configured(policy: &str, suite: &str) -> bool {
    let want = format!("n={suite}");
    policy
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("release "))
        .any(|fields| fields.split(',').any(|f| f.trim() == want))
}

/// Why an `apt-get source` / `apt-get download` run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AptFailure {
    /// apt's lists do not contain the version (`Can not find version`,
    /// `Version '…' for '…' was not found`).
    VersionNotListed,
    /// apt has never heard of the package (`Unable to locate package`).
    PackageUnknown,
    /// The lists name the files but the mirror answers 404.
    NotOnMirror { urls: Vec<String> },
    /// Anything else: apt's last error line.
    Other(String),
}

pub fn classify_failure(stderr: &str) -> AptFailure {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("E: "))
        .collect();
    let urls: Vec<String> = errors
        .iter()
        .filter(|e| e.contains("404"))
        .filter_map(|e| e.strip_prefix("Failed to fetch "))
        .filter_map(|e| e.split_whitespace().next())
        .map(str::to_string)
        .collect();
    if !urls.is_empty() {
        return AptFailure::NotOnMirror { urls };
    }
    if errors.iter().any(|e| {
        e.starts_with("Can not find version")
            || (e.starts_with("Version '") && e.ends_with("was not found"))
    }) {
        return AptFailure::VersionNotListed;
    }
    if errors.iter().any(|e| {
        e.starts_with("Unable to locate package")
            || e.starts_with("Unable to find a source package")
    }) {
        return AptFailure::PackageUnknown;
    }
    AptFailure::Other(
        errors
            .last()
            .map(|e| e.to_string())
            .or_else(|| {
                stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "no error message".to_string()),
    )
}

/// A pinned (or overridden) version that cannot be fetched, with what apt
/// can offer instead. Its `Display` is the message `fetch` fails with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVersion {
    pub package: String,
    pub version: String,
    /// Source package (apt-get source) or binary package (apt-get download).
    pub source: bool,
    /// Files that were wanted, for the message.
    pub files: Vec<String>,
    /// What apt can see for this package (same kind only).
    pub available: Vec<MadisonEntry>,
    /// The version was given with --pin / VFIO_CXL_PINS rather than pins.toml.
    pub overridden: bool,
    /// Set when apt lists the version but the mirror does not have the files.
    pub not_on_mirror: Vec<String>,
}

impl MissingVersion {
    pub fn new(
        package: &str,
        version: &str,
        source: bool,
        files: Vec<String>,
        madison: &[MadisonEntry],
        overridden: bool,
    ) -> Self {
        let available = madison
            .iter()
            .filter(|e| e.package == package && e.source == source)
            .cloned()
            .collect();
        Self {
            package: package.to_string(),
            version: version.to_string(),
            source,
            files,
            available,
            overridden,
            not_on_mirror: Vec::new(),
        }
    }
}

impl fmt::Display for MissingVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.source {
            "source package"
        } else {
            "package"
        };
        let origin = if self.overridden {
            "--pin/VFIO_CXL_PINS override"
        } else {
            "pinned in pins.toml"
        };
        if self.not_on_mirror.is_empty() {
            writeln!(
                f,
                "{kind} {}={} ({origin}) is not available from apt",
                self.package, self.version
            )?;
        } else {
            writeln!(
                f,
                "{kind} {}={} ({origin}) is listed by apt but its files are gone from the mirror (404)",
                self.package, self.version
            )?;
            for url in &self.not_on_mirror {
                writeln!(f, "  404: {url}")?;
            }
        }
        if !self.files.is_empty() {
            writeln!(f, "  wanted: {}", self.files.join(", "))?;
        }
        let query = if self.source {
            format!("apt-cache showsrc {}", self.package)
        } else {
            format!("apt-cache policy {}", self.package)
        };
        if self.available.is_empty() {
            writeln!(
                f,
                "  apt sees no version of {} at all: run `{}` (adds the deb/deb-src lines and runs apt-get update)",
                self.package,
                crate::prereqs::as_this_user("tools/setup-apt")
            )?;
        } else {
            let list: Vec<String> = self
                .available
                .iter()
                .map(|e| format!("{} ({})", e.version, e.suite))
                .collect();
            writeln!(f, "  versions apt can see: {}", list.join(", "))?;
            writeln!(
                f,
                "  (from `apt-cache madison {}`; details: `{query}`; stale lists: `{}`)",
                self.package,
                crate::prereqs::as_this_user("apt-get update")
            )?;
        }
        write!(
            f,
            "  to use another version: cargo xtask fetch --pin {}=<VERSION> (or VFIO_CXL_PINS=\"{}=<VERSION>\"); \
             it is fetched UNVERIFIED, then record the version and the printed sha256 in pins.toml",
            self.package, self.package
        )
    }
}

fn apt_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C");
    cmd
}

fn spawn_error(program: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::msg(format!(
            "{program} not found: xtask fetch needs Debian's apt and dpkg-dev"
        ))
    } else {
        Error::io(format!("cannot run {program}"), e)
    }
}

/// Run a query command and return its stdout; fail on a non-zero exit.
fn query(program: &str, args: &[&str]) -> Result<String> {
    let out = apt_command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(program, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::msg(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            stderr.lines().last().unwrap_or("").trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn policy() -> Result<String> {
    query("apt-cache", &["policy"])
}

pub fn madison(packages: &[&str]) -> Result<Vec<MadisonEntry>> {
    let mut args = vec!["madison"];
    args.extend_from_slice(packages);
    // madison exits 0 even for unknown packages (it prints nothing for them).
    query("apt-cache", &args).map(|t| parse_madison(&t))
}

/// Run a download command in `dir`: apt's progress goes to the terminal,
/// its stderr is collected (and echoed, minus the sandbox notice root
/// always gets) so a failure can be classified.
pub fn download(dir: &Path, args: &[String]) -> Result<Result<(), String>> {
    println!("  $ cd {} && apt-get {}", dir.display(), args.join(" "));
    let mut child = apt_command("apt-get")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("apt-get", e))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .map_err(|e| Error::io("cannot read apt-get's output", e))?;
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("cannot wait for apt-get", e))?;
    for line in stderr.lines() {
        if !line.contains("Download is performed unsandboxed") {
            eprintln!("  {line}");
        }
    }
    Ok(if status.success() {
        Ok(())
    } else {
        Err(stderr)
    })
}

/// Run a tool that must succeed (dpkg-source, setup script), output passed through.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| spawn_error(&program, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("{what} failed ({status})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the project machine after tools/setup-apt.
    const MADISON_QEMU: &str = "\
      qemu | 1:10.0.13+ds-0+deb13u1 | http://deb.debian.org/debian trixie/main Sources
      qemu | 1:11.1.3+ds-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main Sources
      qemu | 1:10.2.2+ds-1 | http://deb.debian.org/debian sid/main Sources
      qemu | 1:11.1.2+ds-3 | http://deb.debian.org/debian sid/main Sources
      qemu | 1:11.1.3+ds-1 | http://deb.debian.org/debian sid/main Sources
";

    const MADISON_LINUX_SOURCE: &str = "\
linux-source-7.3 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
     linux | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main Sources
";

    const POLICY: &str = "\
Package files:
 100 /var/lib/dpkg/status
     release a=now
   1 http://deb.debian.org/debian sid/main amd64 Packages
     release o=Debian,a=unstable,n=sid,l=Debian,c=main,b=amd64
     origin deb.debian.org
   1 http://deb.debian.org/debian trixie-backports/main amd64 Packages
     release o=Debian Backports,a=stable-backports,n=trixie-backports,l=Debian Backports,c=main,b=amd64
     origin deb.debian.org
 500 http://deb.debian.org/debian bookworm/main amd64 Packages
     release v=12.11,o=Debian,a=stable,n=bookworm,l=Debian,c=main,b=amd64
     origin deb.debian.org
Pinned packages:
";

    #[test]
    fn madison_source_lines() {
        let entries = parse_madison(MADISON_QEMU);
        assert_eq!(entries.len(), 5);
        assert_eq!(
            entries[2],
            MadisonEntry {
                package: "qemu".into(),
                version: "1:10.2.2+ds-1".into(),
                suite: "sid".into(),
                source: true,
            }
        );
        assert_eq!(entries[1].suite, "trixie-backports");
    }

    #[test]
    fn madison_binary_and_source_lines_are_told_apart() {
        let entries = parse_madison(MADISON_LINUX_SOURCE);
        assert_eq!(entries.len(), 2);
        assert!(!entries[0].source);
        assert_eq!(entries[0].package, "linux-source-7.3");
        assert!(entries[1].source);
        assert_eq!(entries[1].package, "linux");
    }

    #[test]
    fn madison_ignores_noise() {
        assert!(parse_madison("").is_empty());
        assert!(parse_madison("N: Unable to locate package foo\n").is_empty());
    }

    #[test]
    fn policy_suites() {
        assert!(suite_configured(POLICY, "sid"));
        assert!(suite_configured(POLICY, "trixie-backports"));
        assert!(suite_configured(POLICY, "bookworm"));
        assert!(
            !suite_configured(POLICY, "trixie"),
            "n=trixie-backports is not n=trixie"
        );
        assert!(!suite_configured(POLICY, "experimental"));
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify_failure(
                "E: Can not find version '1:99.0+ds-1' of package 'qemu'\n\
                 E: Unable to find a source package for qemu\n"
            ),
            AptFailure::VersionNotListed
        );
        assert_eq!(
            classify_failure("E: Version '7.3.99-1' for 'linux-source-7.3' was not found\n"),
            AptFailure::VersionNotListed
        );
        assert_eq!(
            classify_failure("E: Unable to locate package no-such-pkg\n"),
            AptFailure::PackageUnknown
        );
        let failure = classify_failure(
            "W: Download is performed unsandboxed as root as file 'qemu_11.1.3+ds-1.dsc' couldn't be accessed by user '_apt'. - pkgAcquire::Run (13: Permission denied)\n\
             E: Failed to fetch http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds-1.dsc  404  Not Found [IP: 203.0.113.80 80]\n\
             E: Failed to fetch http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds.orig.tar.xz  404  Not Found [IP: 203.0.113.80 80]\n\
             E: Failed to fetch some archives.\n",
        );
        assert_eq!(
            failure,
            AptFailure::NotOnMirror {
                urls: vec![
                    "http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds-1.dsc".into(),
                    "http://deb.debian.org/debian/pool/main/q/qemu/qemu_11.1.3%2bds.orig.tar.xz"
                        .into(),
                ]
            }
        );
        assert_eq!(
            classify_failure("E: Could not open lock file\n"),
            AptFailure::Other("Could not open lock file".into())
        );
    }

    #[test]
    fn missing_version_message_lists_what_apt_has() {
        let madison = parse_madison(MADISON_QEMU);
        let m = MissingVersion::new(
            "qemu",
            "1:99.0+ds-1",
            true,
            vec!["qemu_99.0+ds-1.dsc".into()],
            &madison,
            true,
        );
        let text = m.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "source package qemu=1:99.0+ds-1 (--pin/VFIO_CXL_PINS override) is not available from apt"
        );
        assert_eq!(lines[1], "  wanted: qemu_99.0+ds-1.dsc");
        assert_eq!(
            lines[2],
            "  versions apt can see: 1:10.0.13+ds-0+deb13u1 (trixie), 1:11.1.3+ds-1~bpo13+1 (trixie-backports), \
             1:10.2.2+ds-1 (sid), 1:11.1.2+ds-3 (sid), 1:11.1.3+ds-1 (sid)"
        );
        assert!(lines[3].contains("apt-cache showsrc qemu"), "{}", lines[3]);
        assert!(lines[4].contains("--pin qemu=<VERSION>"), "{}", lines[4]);
        assert!(lines[4].contains("pins.toml"), "{}", lines[4]);
    }

    #[test]
    fn missing_binary_ignores_source_lines_of_the_same_name() {
        let madison = parse_madison(MADISON_LINUX_SOURCE);
        let m = MissingVersion::new("linux", "7.3.9-1", false, vec![], &madison, false);
        assert!(m.available.is_empty());
        let text = m.to_string();
        assert!(
            text.starts_with("package linux=7.3.9-1 (pinned in pins.toml) is not available"),
            "{text}"
        );
        assert!(
            text.contains("apt sees no version of linux at all"),
            "{text}"
        );
        assert!(text.contains("tools/setup-apt"), "{text}");
    }

    #[test]
    fn not_on_mirror_message_names_the_urls() {
        let madison = parse_madison(MADISON_QEMU);
        let mut m = MissingVersion::new("qemu", "1:11.1.3+ds-1", true, vec![], &madison, true);
        m.not_on_mirror = vec!["http://mirror/q/qemu_11.1.3%2bds-1.dsc".into()];
        let text = m.to_string();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("gone from the mirror (404)"),
            "{text}"
        );
        assert!(
            text.contains("  404: http://mirror/q/qemu_11.1.3%2bds-1.dsc"),
            "{text}"
        );
    }
}
