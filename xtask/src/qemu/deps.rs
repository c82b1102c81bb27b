//! Debian build packages: what is missing, and the `apt-get` line for it.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

use super::util::run_status;
use super::{BUILD_PACKAGES, RUNTIME_PACKAGES};

/// The `apt-get install` line for the given packages.
fn apt_line(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// Packages of `wanted` that `dpkg-query -W -f '${Package} ${db:Status-Status}\n'`
/// output does not list as installed.
pub fn missing_packages<'a>(dpkg_output: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let installed: BTreeSet<&str> = dpkg_output
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            (it.next()? == "installed").then(|| name.split(':').next().unwrap_or(name))
        })
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

pub(super) fn check_deps(install: bool) -> Result<()> {
    for tool in ["git", "python3", "cp"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(Error::msg(format!(
                "{tool} is not installed or not on PATH"
            )));
        }
    }
    let wanted: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(RUNTIME_PACKAGES)
        .copied()
        .collect();
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(&wanted)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        println!("    warning: no dpkg-query: cannot check the Debian build packages");
        return Ok(());
    };
    let missing = missing_packages(&String::from_utf8_lossy(&out.stdout), &wanted);
    if missing.is_empty() {
        println!("    all {} Debian packages installed", wanted.len());
        return Ok(());
    }
    let line = apt_line(&missing);
    let is_root = crate::prereqs::is_root();
    if !install {
        return Err(Error::msg(format!(
            "missing Debian packages: {}\n  install them with:  {}\n  \
             (or rerun with --install-deps)",
            missing.join(" "),
            crate::prereqs::for_user(&line, is_root)
        )));
    }
    let mut cmd = if is_root {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    println!("    {}", crate::prereqs::for_user(&line, is_root));
    cmd.args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_status(&mut cmd, "apt-get install")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_packages_from_dpkg_query() {
        let out =
            "bison installed\nflex not-installed\nzlib1g-dev:amd64 installed\nclang config-files\n";
        let got = missing_packages(out, &["bison", "flex", "zlib1g-dev", "clang", "bindgen"]);
        assert_eq!(got, vec!["flex", "clang", "bindgen"]);
        assert_eq!(
            apt_line(&got),
            "apt-get install -y --no-install-recommends flex clang bindgen"
        );
    }
}
