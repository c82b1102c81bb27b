//! The host driver's build and checks, over host-driver/'s scripts:
//! `cargo xtask build-driver` and the driver tier of `cargo xtask test`.
//!
//! Paths come from the cache (`cargo xtask cache-dir`) so the scripts, the
//! fetch command and CI agree on where the pinned debs and the prepared
//! 7.3.4 tree live; nothing is built inside the checkout except the modules.

use std::path::PathBuf;
use std::process::Command;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::fetch;
use crate::pins::{self, Pins};
use crate::test::{repo_root, step};

/// Build the host driver against the pinned 7.3.4 tree
///
/// Fetches the pinned Linux packages (if needed), prepares the 7.3.4 tree
/// in the cache (host-driver/scripts/prepare-tree, a no-op when up to
/// date) and builds vfio-cxl-core.ko and vfio-cxl-pci.ko in host-driver/.
/// Prints the modules' paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Also copy the modules to DIR (meson's build directory)
    #[arg(long, value_name = "DIR")]
    pub copy_to: Option<PathBuf>,
}

pub const MODULES: [&str; 2] = ["vfio-cxl-core.ko", "vfio-cxl-pci.ko"];

/// Where the pinned debs are and where the prepared tree goes.
struct Paths {
    debs: PathBuf,
    tree: PathBuf,
}

fn paths() -> Result<Paths> {
    let pins = Pins::load(&pins::default_path())?;
    let cache = Cache::from_env()?;
    let upstream = &pins.linux.upstream;
    Ok(Paths {
        debs: cache.linux_debs_dir(upstream),
        tree: cache.root().join("linux").join(upstream).join("tree"),
    })
}

fn script(name: &str, paths: &Paths, tree_flag: &str) -> Command {
    let mut c = Command::new(repo_root().join("host-driver/scripts").join(name));
    c.arg("--debs")
        .arg(&paths.debs)
        .arg(tree_flag)
        .arg(&paths.tree);
    c
}

fn make(paths: &Paths, target: Option<&str>) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(repo_root().join("host-driver"))
        .arg(format!("KDIR={}", paths.tree.display()));
    c.args(target);
    c
}

/// Fetches the pinned Linux packages and prepares the 7.3.4 tree (a no-op
/// when up to date); returns the tree, for other out-of-tree modules
/// (`cargo xtask build-guest-driver`).
pub fn prepared_tree() -> Result<PathBuf> {
    fetch::run(&fetch::Args::of(fetch::Target::Linux))?;
    let paths = paths()?;
    step(
        "prepare the Linux 7.3.4 tree",
        &mut script("prepare-tree", &paths, "--out"),
    )?;
    Ok(paths.tree)
}

/// Fetches, prepares the tree and builds the modules.
fn build_modules() -> Result<Paths> {
    fetch::run(&fetch::Args::of(fetch::Target::Linux))?;
    let paths = paths()?;
    step(
        "prepare the Linux 7.3.4 tree",
        &mut script("prepare-tree", &paths, "--out"),
    )?;
    step("build the host driver", &mut make(&paths, None))?;
    Ok(paths)
}

pub fn run_build(args: &Args) -> Result<()> {
    let copy_to = &args.copy_to;
    build_modules()?;
    for module in MODULES {
        let built = repo_root().join("host-driver").join(module);
        let shown = match copy_to {
            Some(dir) => {
                let dest = dir.join(module);
                std::fs::copy(&built, &dest).map_err(|e| {
                    Error::io(format!("copy {} to {}", built.display(), dest.display()), e)
                })?;
                dest
            }
            None => built,
        };
        println!("{}", shown.display());
    }
    Ok(())
}

/// The driver tier of the test command: build, static checks, and the
/// in-tree series (current, applies to v7.3.4, builds with W=1).
pub fn test() -> Result<()> {
    let paths = build_modules()?;
    let sparse = crate::sparse::binary()?;
    step(
        "host driver checks (W=1, checkpatch --strict, kernel-doc, sparse)",
        make(&paths, Some("check")).arg(format!("SPARSE={}", sparse.display())),
    )?;

    let scratch = repo_root().join("target/linux-patches");
    let _ = std::fs::remove_dir_all(&scratch);
    let mut generate = Command::new(repo_root().join("host-driver/scripts/gen-patches"));
    generate
        .arg("--debs")
        .arg(&paths.debs)
        .arg("--out")
        .arg(&scratch);
    step("regenerate patches/linux", &mut generate)?;
    let mut diff = Command::new("diff");
    diff.arg("-ru")
        .arg(repo_root().join("patches/linux"))
        .arg(&scratch);
    step("patches/linux is current", &mut diff).map_err(|e| {
        Error::msg(format!(
            "{e}\npatches/linux is stale: run host-driver/scripts/gen-patches and commit"
        ))
    })?;
    step(
        "patches/linux applies to v7.3.4 and builds",
        &mut script("check-patches", &paths, "--ktree"),
    )?;
    crate::test::step_with(
        "reference guest driver builds and passes make check",
        || crate::guest_driver::run(&crate::guest_driver::Args { check: true }),
    )
}
