//! What the README's commands need on a fresh machine, checked before
//! they start: the Debian packages of `tools/packages.txt` (which
//! `tools/setup-apt` installs; a missing one stops the command with one
//! line naming it and that command) and the cargo tools `cargo xtask test`
//! uses (installed here with `cargo install --locked` when missing: no
//! root needed).

use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The Debian package list, relative to the repository root.
pub const PACKAGES_FILE: &str = "tools/packages.txt";

/// The package names of `tools/packages.txt` (comments and blank lines
/// dropped).
pub fn parse_packages(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether this process runs as root (`id -u` says 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `command` as the user must type it: bare for root, behind `sudo`
/// otherwise. Machines of the project's kind run everything as root and
/// have no sudo, so a message saying `sudo ...` there names a command
/// that does not exist.
pub fn for_user(command: &str, root: bool) -> String {
    if root {
        command.to_owned()
    } else {
        format!("sudo {command}")
    }
}

/// `command` as this process's user must type it ([`for_user`]).
pub fn as_this_user(command: &str) -> String {
    for_user(command, is_root())
}

/// Stops with one line when a package of `tools/packages.txt` is missing.
pub fn require_packages() -> Result<()> {
    let path = crate::test::repo_root().join(PACKAGES_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
    let wanted = parse_packages(&text);
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(&wanted)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            Error::msg(format!(
                "cannot run dpkg-query ({e}): this project needs Debian"
            ))
        })?;
    let missing = crate::qemu::missing_packages(&String::from_utf8_lossy(&out.stdout), &wanted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "missing Debian package(s) {}: install them with `{}` ({PACKAGES_FILE})",
        missing.join(" "),
        as_this_user("tools/setup-apt")
    )))
}

/// A cargo subcommand `cargo xtask test` runs, and the crate providing it.
struct CargoTool {
    subcommand: &'static str,
    install: &'static [&'static str],
}

const NEXTEST: CargoTool = CargoTool {
    subcommand: "nextest",
    install: &["cargo", "install", "--locked", "cargo-nextest"],
};
const FUZZ: CargoTool = CargoTool {
    subcommand: "fuzz",
    install: &["cargo", "install", "--locked", "cargo-fuzz"],
};
const RUSTFMT: CargoTool = CargoTool {
    subcommand: "fmt",
    install: &["rustup", "component", "add", "rustfmt"],
};
const CLIPPY: CargoTool = CargoTool {
    subcommand: "clippy",
    install: &["rustup", "component", "add", "clippy"],
};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn has(tool: &CargoTool) -> bool {
    cargo()
        .args([tool.subcommand, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs `tool` when `cargo <subcommand>` does not run; an error names
/// the command that failed.
fn ensure(tool: &CargoTool) -> Result<()> {
    if has(tool) {
        return Ok(());
    }
    let line = tool.install.join(" ");
    println!("==> cargo {} is missing: {line}", tool.subcommand);
    let mut c = if tool.install[0] == "cargo" {
        cargo()
    } else {
        Command::new(tool.install[0])
    };
    let st = c.args(&tool.install[1..]).status();
    if st.is_ok_and(|s| s.success()) && has(tool) {
        return Ok(());
    }
    Err(Error::msg(format!(
        "cargo {} is missing and `{line}` did not install it",
        tool.subcommand
    )))
}

/// Everything `cargo xtask test` needs: the Debian packages (checked),
/// rustfmt, clippy, cargo-nextest and, when fuzzing, cargo-fuzz
/// (installed when missing).
pub fn check_test_tools(fuzz: bool) -> Result<()> {
    require_packages()?;
    for tool in [&RUSTFMT, &CLIPPY, &NEXTEST] {
        ensure(tool)?;
    }
    if fuzz {
        ensure(&FUZZ)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_list_covers_the_qemu_build_and_the_vm_tests() {
        let text = std::fs::read_to_string(crate::test::repo_root().join(PACKAGES_FILE)).unwrap();
        let listed = parse_packages(&text);
        for p in crate::qemu::BUILD_PACKAGES
            .iter()
            .chain(crate::qemu::RUNTIME_PACKAGES)
            .chain(&["cpio", "zstd"])
        {
            assert!(listed.contains(p), "{p} is not in {PACKAGES_FILE}");
        }
        assert!(!listed.iter().any(|p| p.contains(' ') || p.starts_with('#')));
    }

    #[test]
    fn root_is_told_the_bare_command_others_get_sudo() {
        assert_eq!(for_user("tools/setup-apt", true), "tools/setup-apt");
        assert_eq!(for_user("tools/setup-apt", false), "sudo tools/setup-apt");
    }

    #[test]
    fn comments_and_blank_lines_are_not_packages() {
        assert_eq!(
            parse_packages("# a comment\n\ncpio\n  zstd  # trailing\n"),
            ["cpio", "zstd"]
        );
    }
}
