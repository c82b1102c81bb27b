//! QEMU: the generated patch series and the build of `qemu-system-x86_64`.
//!
//! ```text
//! cargo xtask gen-qemu-patches     qemu-device/ -> patches/qemu/ (git format-patch)
//! cargo xtask check-qemu-patches   fail if patches/qemu/ is not what gen would write
//! cargo xtask build-qemu [...]     pinned source + series -> build/qemu-system-x86_64
//! cargo xtask qemu-path [...]      print the built binary (or its runtime flags)
//! ```
//!
//! The series is generated from `qemu-device/qemu/` (files at their QEMU
//! paths) and `qemu-device/series.toml` (which file goes into which patch).
//! The build works in `<cache>/qemu/<debian version>/`: `src/` is a git
//! repository (the pristine tree committed as tag `vfio-cxl-base`, the
//! series applied with `git am`), `build/` the meson build directory, and a
//! `state` file records what `src/` and `build/` were made from. A changed
//! series is re-applied in the same tree, and every file whose content did
//! not change gets its old mtime back, so ninja rebuilds only what changed.
//! See docs/qemu-build.md.

mod changes;
mod context;
mod crates;
mod deps;
mod kconfig;
mod meson;
mod series;
mod util;
mod worktree;

use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};

use context::{regex_unsafe_chars, Context, State};
use crates::seed_crates;
use deps::check_deps;
use meson::{configure, configure_identity, ensure_meson};
use series::{series_files, series_hash, short};
use util::{compare_dirs, git, remove_dir, run_output, run_status, write, TempDir};
use worktree::{apply_series, create_work_tree, sync_packagefiles};

pub use deps::missing_packages;
pub use kconfig::run as run_check_kconfig;

/// meson installed (with pip) into a venv under the cache; QEMU 10.2 needs
/// >= 1.9.0 for Rust and Debian bookworm ships 1.0.1.
pub const MESON_VERSION: &str = "1.9.2";

/// The one binary built (target x86_64-softmmu).
pub const BINARY: &str = "qemu-system-x86_64";

/// Tag of the pristine tree's commit in the work repository.
const BASE_TAG: &str = "vfio-cxl-base";

/// Debian packages the build needs (checked with dpkg-query).
pub const BUILD_PACKAGES: &[&str] = &[
    "ninja-build",
    "python3-venv",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "zlib1g-dev",
    "flex",
    "bison",
    "pkgconf",
    "libslirp-dev",
    "libfdt-dev",
    "bindgen",
    "clang",
    "libclang-dev",
];

/// Debian packages with the firmware the built binary loads at run time
/// (Debian's +ds tarball has no pc-bios blobs).
pub const RUNTIME_PACKAGES: &[&str] = &["seabios", "ipxe-qemu", "qemu-system-data"];

/// `-L` directories for the packages above: SeaBIOS and VGA BIOS, QEMU's
/// option ROMs (linuxboot_dma.bin, kvmvapic.bin, ...) and keymaps, iPXE
/// NIC ROMs (efi-e1000e.rom for q35's default NIC).
pub const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/seabios",
    "/usr/share/qemu",
    "/usr/lib/ipxe/qemu",
];

/// Arguments to QEMU's configure besides `--python`.
pub const CONFIGURE_ARGS: &[&str] = &[
    "--target-list=x86_64-softmmu",
    "--enable-rust",
    "--disable-docs",
    "--disable-install-blobs",
    // meson must never try the network (no DNS here): crates are seeded.
    "--disable-download",
    // git trees default to -Werror; a newer rustc/gcc than QEMU's CI must
    // not break the build on a new warning.
    "--disable-werror",
];

/// Build qemu-system-x86_64 with the series
///
/// Builds qemu-system-x86_64 (x86_64-softmmu, --enable-rust) from the
/// pinned QEMU source (`cargo xtask fetch qemu` first) with the patch
/// series: regenerates patches/qemu/ from qemu-device/, applies it with git
/// am in <cache>/qemu/<version>/src, seeds the Rust crates from crates.io
/// through cargo, configures and runs ninja. A rerun only re-applies what
/// changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct BuildArgs {
    /// apt-get install the missing Debian build packages (with sudo when
    /// not root); without it, missing ones are an error that prints the
    /// apt-get line
    #[arg(long)]
    pub install_deps: bool,
    /// Throw the work tree and build directory away first
    #[arg(long)]
    pub fresh: bool,
    /// ninja jobs (default: number of CPUs)
    #[arg(short = 'j', long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: Option<usize>,
}

/// Keep work-tree edits of QEMU files as qemu-device/qemu/PATH.diff
///
/// How to change a file QEMU already has: edit PATH (relative to the QEMU
/// tree) in the build's work tree, <cache>/qemu/<version>/src, then run
/// this. It writes the difference between the pristine source and your edit
/// to qemu-device/qemu/PATH.diff (removed when there is none), and puts the
/// work tree's PATH back as the series has it, so the next build-qemu,
/// which applies the new diff, finds no local change. Add PATH to a
/// [[patch]] of qemu-device/series.toml if no patch claims it yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct DiffArgs {
    /// Files relative to the QEMU tree
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Print the built qemu-system-x86_64 (or its -L options)
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct PathArgs {
    /// Print the -L options it needs at run time instead
    #[arg(long)]
    pub firmware_args: bool,
}

// ---------------------------------------------------------------------------
// Commands

pub fn run_gen() -> Result<()> {
    let ctx = Context::load()?;
    let changed = ctx.regenerate_series()?;
    let dir = ctx.patches_dir();
    if changed {
        println!("patches/qemu: regenerated ({})", dir.display());
    } else {
        println!("patches/qemu: up to date");
    }
    Ok(())
}

pub fn run_check() -> Result<()> {
    let ctx = Context::load()?;
    let tmp = TempDir::new("check")?;
    let fresh = tmp.path().join("qemu");
    ctx.generate_series(&fresh)?;
    let diffs = compare_dirs(&fresh, &ctx.patches_dir())?;
    if diffs.is_empty() {
        println!("patches/qemu: matches qemu-device/ (series hash {})", {
            let h = series_hash(&ctx.patches_dir())?;
            short(&h).to_string()
        });
        return Ok(());
    }
    let out = Command::new("diff")
        .arg("-ruN")
        .arg(ctx.patches_dir())
        .arg(&fresh)
        .output();
    if let Ok(out) = out {
        let _ = std::io::stdout().write_all(&out.stdout);
    }
    Err(Error::msg(format!(
        "patches/qemu/ is stale ({}): run `cargo xtask gen-qemu-patches` and commit the result",
        diffs.join(", ")
    )))
}

/// QEMU's Rust doctests of the crates the series changes (a built tree).
pub fn run_doctests() -> Result<()> {
    let ctx = Context::load()?;
    let layout = ctx.layout();
    if !layout.build.join("build.ninja").is_file() {
        return Err(Error::msg(
            "QEMU is not configured: run `cargo xtask build-qemu`",
        ));
    }
    meson::doctests(ctx.cache.root(), &layout)
}

pub fn run_diff(args: &DiffArgs) -> Result<()> {
    let ctx = Context::load()?;
    let src = ctx.layout().src;
    if !src.join(".git").is_dir() {
        return Err(Error::msg(format!(
            "there is no work tree at {}: run `cargo xtask build-qemu` first",
            src.display()
        )));
    }
    for path in &args.paths {
        let out = ctx
            .device_dir()
            .join("qemu")
            .join(format!("{path}{}", changes::DIFF_SUFFIX));
        let blob = format!("{BASE_TAG}:{path}");
        if run_output(
            git(&src, None).args(["cat-file", "-e", &blob]),
            "git cat-file",
        )
        .is_err()
        {
            return Err(Error::msg(format!(
                "{path} is not a file of the pinned QEMU source: add new files whole under \
                 qemu-device/qemu/"
            )));
        }
        let diff = run_output(
            git(&src, None).args([
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                BASE_TAG,
                "--",
                path,
            ]),
            "git diff",
        )?;
        if diff.trim().is_empty() {
            if out.is_file() {
                fs::remove_file(&out)
                    .map_err(|e| Error::io(format!("cannot remove {}", out.display()), e))?;
                println!(
                    "{path}: equals the pristine source; removed {}",
                    out.display()
                );
            } else {
                println!("{path}: equals the pristine source; nothing to keep");
            }
        } else {
            let diff = changes::normalize(&diff);
            changes::check_names(&diff, path)?;
            write(&out, diff.as_bytes())?;
            println!(
                "{path}: wrote {}; the work tree's {path} is back at the series' version",
                out.display()
            );
        }
        run_output(
            git(&src, None).args(["checkout", "-q", "HEAD", "--", path]),
            "git checkout (the series' version back)",
        )?;
    }
    println!("next: cargo xtask build-qemu (regenerates patches/qemu/ and rebuilds)");
    Ok(())
}

pub fn run_path(args: &PathArgs) -> Result<()> {
    if args.firmware_args {
        println!("{}", firmware_args().join(" "));
        return Ok(());
    }
    let ctx = Context::load()?;
    let layout = ctx.layout();
    let binary = layout.binary();
    if !binary.is_file() {
        return Err(Error::msg(format!(
            "{} is not built yet ({} missing): run `cargo xtask build-qemu`",
            BINARY,
            binary.display()
        )));
    }
    let state = State::load(&layout.state_file());
    let current = series_hash(&ctx.patches_dir())?;
    if state.get("series") != Some(current.as_str()) {
        eprintln!(
            "xtask: warning: {} was built from another patch series than patches/qemu/ holds now; \
             run `cargo xtask build-qemu`",
            BINARY
        );
    }
    println!("{}", binary.display());
    Ok(())
}

/// The `-L` options for the Debian firmware packages.
pub fn firmware_args() -> Vec<String> {
    FIRMWARE_DIRS
        .iter()
        .flat_map(|d| ["-L".to_string(), d.to_string()])
        .collect()
}

pub fn run_build(args: &BuildArgs) -> Result<()> {
    let started = Instant::now();
    let ctx = Context::load()?;
    let layout = ctx.layout();
    println!("build-qemu: work directory {}", layout.root.display());
    let bad = regex_unsafe_chars(&layout.root);
    if !bad.is_empty() {
        return Err(Error::msg(format!(
            "the work directory {} contains {:?}: QEMU hands its source path to bindgen as a \
             regex, so the Rust bindings would come out empty; choose another cache directory \
             (VFIO_CXL_CACHE)",
            layout.root.display(),
            bad.iter().collect::<String>()
        )));
    }

    timed("build dependencies", || check_deps(args.install_deps))?;

    let changed = timed("patch series", || ctx.regenerate_series())?;
    if changed {
        println!("    patches/qemu/ regenerated from qemu-device/");
    }
    let series = series_hash(&ctx.patches_dir())?;
    let patches = series_files(&ctx.patches_dir())?;
    println!("    series {} ({} patches)", short(&series), patches.len());

    if args.fresh && layout.root.exists() {
        println!("    --fresh: removing {}", layout.root.display());
        remove_dir(&layout.root)?;
    }
    fs::create_dir_all(&layout.root)
        .map_err(|e| Error::io(format!("cannot create {}", layout.root.display()), e))?;
    let mut state = State::load(&layout.state_file());
    let base_id = ctx.base_identity();

    // 1. The source tree: pristine base + series.
    if state.get("base") != Some(base_id.as_str()) || !layout.src.join(".git").is_dir() {
        timed("work tree (copy pristine source, commit base)", || {
            create_work_tree(&ctx, &layout)
        })?;
        state = State::default();
        state.set("base", &base_id);
        state.save(&layout.state_file())?;
        if layout.build.exists() {
            remove_dir(&layout.build)?;
        }
    }
    if state.get("series") != Some(series.as_str()) {
        timed("apply patch series (git am)", || {
            apply_series(&layout.src, &patches)
        })?;
        state.set("series", &series);
        state.save(&layout.state_file())?;
    } else {
        println!("==> apply patch series: up to date");
    }
    sync_packagefiles(&layout.src)?;

    // 2. Crates the wraps name, from crates.io through cargo.
    timed("seed Rust crates into subprojects/packagecache", || {
        seed_crates(&layout)
    })?;

    // 3. meson venv, configure.
    let python = timed("meson venv", || ensure_meson(ctx.cache.root()))?;
    let configure_id = configure_identity(&python);
    if state.get("configure") != Some(configure_id.as_str())
        || !layout.build.join("build.ninja").is_file()
    {
        timed("configure", || configure(&layout, &python))?;
        state.set("configure", &configure_id);
        state.save(&layout.state_file())?;
    } else {
        println!("==> configure: up to date");
    }

    // 4. ninja.
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    timed(&format!("ninja -j{jobs} {BINARY}"), || {
        run_status(
            Command::new("ninja")
                .arg("-C")
                .arg(&layout.build)
                .arg(format!("-j{jobs}"))
                .arg(BINARY),
            "ninja",
        )
    })?;
    println!(
        "build-qemu: done in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        layout.binary().display()
    );
    println!("run it with: {} {}", BINARY, firmware_args().join(" "));
    Ok(())
}

/// Runs a step with a header and its duration.
fn timed<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let start = Instant::now();
    let out = f().map_err(|e| Error::msg(format!("{name}: {e}")))?;
    println!("<== {name}: ok ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn firmware_args_name_every_directory_and_they_hold_the_boot_firmware() {
        let args = firmware_args();
        let pairs: Vec<_> = args.chunks(2).collect();
        assert_eq!(pairs.len(), FIRMWARE_DIRS.len());
        for (pair, dir) in pairs.iter().zip(FIRMWARE_DIRS) {
            assert_eq!(pair, &["-L", dir]);
        }
        // What a q35 -kernel boot loads (SeaBIOS, the linuxboot and PVH
        // option ROMs, q35's default NIC ROM), from RUNTIME_PACKAGES
        // (tools/packages.txt).
        for file in [
            "bios-256k.bin",
            "linuxboot_dma.bin",
            "pvh.bin",
            "kvmvapic.bin",
            "efi-e1000e.rom",
        ] {
            assert!(
                FIRMWARE_DIRS
                    .iter()
                    .any(|d| Path::new(d).join(file).is_file()),
                "{file} is in none of {FIRMWARE_DIRS:?}: tools/setup-apt (as root) installs it"
            );
        }
    }
}
