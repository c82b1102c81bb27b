//! `cargo xtask check-qemu-kconfig`: QEMU's Kconfig keeps vfio-cxl's devices
//! out of any configuration that cannot link them, and refuses a request
//! for them that it cannot satisfy.
//!
//! vfio-cxl and cxl-accel call `cxl-firmware.c`, which is built only with
//! `CONFIG_CXL`, and are written in Rust. A custom configuration without
//! CXL or without Rust must therefore leave them out (and so configure and
//! link), and one that asks for them anyway must fail in minikconf with a
//! message naming them, not at link time. This runs QEMU's own
//! `scripts/minikconf.py` on the patched work tree with the host and
//! target assignments meson gave it (read back from meson-log.txt),
//! varied per case, always from the defaults (`--defconfig`).

use std::process::Command;

use crate::error::{Error, Result};

use super::context::{Context, Layout};
use super::util::TempDir;

/// The Kconfig symbols of vfio-cxl's QEMU devices.
const DEVICES: &[&str] = &["VFIO_CXL", "X_CXL_ACCEL_RUST"];

/// How meson ran minikconf for x86_64-softmmu.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    python: String,
    script: String,
    /// `configs/devices/x86_64-softmmu/default.mak`, then `Kconfig`.
    inputs: [String; 2],
    /// `CONFIG_X=y|n` from the host and the target.
    assignments: Vec<String>,
}

/// Finds meson's minikconf command line for x86_64-softmmu in its log.
fn parse_invocation(meson_log: &str) -> Result<Invocation> {
    let line = meson_log
        .lines()
        .filter_map(|l| l.strip_prefix("Running command: "))
        .find(|l| l.contains("minikconf.py") && l.contains("x86_64-softmmu-config-devices.mak"))
        .ok_or_else(|| Error::msg("meson-log.txt has no minikconf command for x86_64-softmmu"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let mode = words
        .iter()
        .position(|w| *w == "--defconfig" || *w == "--allnoconfig")
        .ok_or_else(|| Error::msg(format!("unexpected minikconf command: {line}")))?;
    // python script MODE OUT DEPFILE DEFAULT.mak Kconfig ASSIGNMENTS...
    if mode != 2 || words.len() < 7 {
        return Err(Error::msg(format!("unexpected minikconf command: {line}")));
    }
    let assignments: Vec<String> = words[7..].iter().map(|w| w.to_string()).collect();
    if assignments
        .iter()
        .any(|a| !a.starts_with("CONFIG_") || !a.contains('='))
    {
        return Err(Error::msg(format!(
            "unexpected minikconf arguments: {line}"
        )));
    }
    Ok(Invocation {
        python: words[0].to_string(),
        script: words[1].to_string(),
        inputs: [words[5].to_string(), words[6].to_string()],
        assignments,
    })
}

/// One configuration to try and what must come of it.
#[derive(Debug)]
struct Case {
    what: &'static str,
    /// Assignments replacing or added to meson's.
    set: &'static [&'static str],
    expect: Expect,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// These device symbols are `=y` and the others absent.
    Enabled(&'static [&'static str]),
    /// minikconf fails naming this symbol.
    Refused(&'static str),
}

const CASES: &[Case] = &[
    Case {
        what: "the default configuration has both devices",
        set: &[],
        expect: Expect::Enabled(DEVICES),
    },
    Case {
        what: "without CXL neither device is built",
        set: &["CONFIG_CXL=n"],
        expect: Expect::Enabled(&[]),
    },
    Case {
        what: "without Rust neither device is built",
        set: &["CONFIG_HAVE_RUST=n"],
        expect: Expect::Enabled(&[]),
    },
    Case {
        what: "asking for vfio-cxl without CXL is refused",
        set: &["CONFIG_CXL=n", "CONFIG_VFIO_CXL=y"],
        expect: Expect::Refused("VFIO_CXL"),
    },
    Case {
        what: "asking for cxl-accel without CXL is refused",
        set: &["CONFIG_CXL=n", "CONFIG_X_CXL_ACCEL_RUST=y"],
        expect: Expect::Refused("X_CXL_ACCEL_RUST"),
    },
    Case {
        what: "without vfio-pci there is no vfio-cxl",
        set: &["CONFIG_VFIO_PCI=n"],
        expect: Expect::Enabled(&["X_CXL_ACCEL_RUST"]),
    },
    Case {
        what: "asking for cxl-accel without Rust is refused",
        set: &["CONFIG_HAVE_RUST=n", "CONFIG_X_CXL_ACCEL_RUST=y"],
        expect: Expect::Refused("X_CXL_ACCEL_RUST"),
    },
    Case {
        what: "asking for vfio-cxl without Rust is refused",
        set: &["CONFIG_HAVE_RUST=n", "CONFIG_VFIO_CXL=y"],
        expect: Expect::Refused("VFIO_CXL"),
    },
];

/// meson's assignments with `set` applied (same symbol replaced, new added).
fn assignments(base: &[String], set: &[&str]) -> Vec<String> {
    let key = |a: &str| a.split('=').next().unwrap_or(a).to_string();
    let mut out: Vec<String> = base
        .iter()
        .filter(|a| !set.iter().any(|s| key(s) == key(a)))
        .cloned()
        .collect();
    out.extend(set.iter().map(|s| s.to_string()));
    out
}

/// Whether minikconf's result (`ok` = its stdout, `err` = its stderr on
/// failure) is what the case expects; `Err` says what differs.
fn judge(
    expect: &Expect,
    result: std::result::Result<&str, &str>,
) -> std::result::Result<(), String> {
    match (expect, result) {
        (Expect::Enabled(want), Ok(config)) => {
            let on = |sym: &str| {
                config
                    .lines()
                    .any(|l| l.trim() == format!("CONFIG_{sym}=y"))
            };
            let got: Vec<&str> = DEVICES.iter().copied().filter(|s| on(s)).collect();
            if got == *want {
                Ok(())
            } else {
                Err(format!("enabled {got:?}, expected {want:?}"))
            }
        }
        (Expect::Enabled(_), Err(stderr)) => {
            Err(format!("minikconf failed: {}", last_line(stderr)))
        }
        (Expect::Refused(sym), Err(stderr)) => {
            let needle = format!("contradiction between clauses when setting {sym}");
            if stderr.contains(&needle) {
                Ok(())
            } else {
                Err(format!(
                    "minikconf failed, but not on {sym}: {}",
                    last_line(stderr)
                ))
            }
        }
        (Expect::Refused(sym), Ok(_)) => Err(format!("minikconf accepted {sym}")),
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

fn run_case(layout: &Layout, inv: &Invocation, case: &Case, tmp: &TempDir) -> Result<()> {
    let mut cmd = Command::new(&inv.python);
    cmd.current_dir(&layout.build)
        .arg(&inv.script)
        // Defaults on, as configure has them: a refusal then names what the
        // case removes, not a dependency --allnoconfig left out.
        .arg("--defconfig")
        .arg(tmp.path().join("config-devices.mak"))
        .arg(tmp.path().join("config-devices.mak.d"))
        .args(&inv.inputs)
        .args(assignments(&inv.assignments, case.set));
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("cannot run {}", inv.script), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = if out.status.success() {
        Ok(&*stdout)
    } else {
        Err(&*stderr)
    };
    judge(&case.expect, result)
        .map(|()| println!("  ok: {}", case.what))
        .map_err(|e| Error::msg(format!("{}: {e}", case.what)))
}

pub fn run() -> Result<()> {
    let layout = Context::load()?.layout();
    let log_path = layout.build.join("meson-logs").join("meson-log.txt");
    let log = std::fs::read_to_string(&log_path).map_err(|e| {
        Error::io(
            format!(
                "cannot read {} (run `cargo xtask build-qemu` first)",
                log_path.display()
            ),
            e,
        )
    })?;
    let inv = parse_invocation(&log)?;
    let tmp = TempDir::new("kconfig")?;
    for case in CASES {
        run_case(&layout, &inv, case, &tmp)?;
    }
    println!("check-qemu-kconfig: {} cases ok", CASES.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "Program scripts/minikconf.py found: YES\n\
        Running command: /b/pyvenv/bin/python3.11 /s/scripts/minikconf.py --defconfig \
        x86_64-softmmu-config-devices.mak /b/meson-private/x.mak.d \
        /s/configs/devices/x86_64-softmmu/default.mak /s/Kconfig CONFIG_TPM=y \
        CONFIG_HAVE_RUST=y CONFIG_X86_64=y CONFIG_TARGET_BIG_ENDIAN=n\n";

    #[test]
    fn meson_invocation_parses() {
        let inv = parse_invocation(LOG).unwrap();
        assert_eq!(inv.python, "/b/pyvenv/bin/python3.11");
        assert_eq!(inv.script, "/s/scripts/minikconf.py");
        assert_eq!(inv.inputs[1], "/s/Kconfig");
        assert_eq!(inv.assignments.len(), 4);
        assert!(parse_invocation("Running command: /x/minikconf.py").is_err());
    }

    #[test]
    fn assignments_replace_and_add() {
        let base: Vec<String> = ["CONFIG_HAVE_RUST=y", "CONFIG_TPM=y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = assignments(&base, &["CONFIG_HAVE_RUST=n", "CONFIG_CXL=n"]);
        assert_eq!(got, ["CONFIG_TPM=y", "CONFIG_HAVE_RUST=n", "CONFIG_CXL=n"]);
    }

    #[test]
    fn judging() {
        let both = "CONFIG_CXL=y\nCONFIG_VFIO_CXL=y\nCONFIG_X_CXL_ACCEL_RUST=y\n";
        assert!(judge(&Expect::Enabled(DEVICES), Ok(both)).is_ok());
        assert!(judge(&Expect::Enabled(&[]), Ok(both)).is_err());
        assert!(judge(&Expect::Enabled(&[]), Ok("CONFIG_CXL=y\n")).is_ok());
        let refused = "KconfigDataError: contradiction between clauses when setting VFIO_CXL";
        assert!(judge(&Expect::Refused("VFIO_CXL"), Err(refused)).is_ok());
        assert!(judge(&Expect::Refused("X_CXL_ACCEL_RUST"), Err(refused)).is_err());
        assert!(judge(&Expect::Refused("VFIO_CXL"), Ok(both)).is_err());
    }
}
