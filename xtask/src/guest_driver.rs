//! `cargo xtask build-guest-driver`: the reference guest CXL Type-2 driver
//! (guest-tests/guest-driver, module `cxl-type2-ref`) built against the
//! same prepared 7.3.4 tree as the host driver (`driver::prepared_tree`),
//! so its vermagic is the one Debian's kernel checks. `--check` runs its
//! static checks (W=1, checkpatch --strict, kernel-doc, sparse). See docs/guest-driver.md.

use std::path::PathBuf;
use std::process::Command;

use crate::driver;
use crate::error::Result;
use crate::test::{repo_root, step};

/// Build the reference guest Type-2 driver (cxl-type2-ref.ko)
///
/// Prepares the pinned 7.3.4 tree (as build-driver does) and builds
/// guest-tests/guest-driver/cxl-type2-ref.ko against it. Prints the
/// module's path.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Also run the W=1 build, checkpatch --strict, kernel-doc and sparse
    /// (the pinned sparse, built into the cache)
    #[arg(long)]
    pub check: bool,
}

/// The module file, relative to the repository.
pub const MODULE: &str = "guest-tests/guest-driver/cxl-type2-ref.ko";

fn make(tree: &std::path::Path, target: Option<&str>) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(repo_root().join("guest-tests/guest-driver"))
        .arg(format!("KDIR={}", tree.display()));
    c.args(target);
    c
}

/// Builds the module; returns its path.
pub fn build(check: bool) -> Result<PathBuf> {
    let tree = driver::prepared_tree()?;
    step(
        "build the guest driver (cxl-type2-ref)",
        &mut make(&tree, None),
    )?;
    if check {
        let sparse = crate::sparse::binary()?;
        step(
            "guest driver checks (W=1, checkpatch --strict, kernel-doc, sparse)",
            make(&tree, Some("check")).arg(format!("SPARSE={}", sparse.display())),
        )?;
    }
    Ok(repo_root().join(MODULE))
}

pub fn run(args: &Args) -> Result<()> {
    println!("{}", build(args.check)?.display());
    Ok(())
}
