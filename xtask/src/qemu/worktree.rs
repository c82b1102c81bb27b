//! The work tree `<cache>/qemu/<version>/src`: the pristine commit, the
//! series applied with `git am`, mtimes kept for unchanged files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::cache::STAMP_FILE;
use crate::error::{Error, Result};

use super::context::{Context, Layout};
use super::crates::read_wraps;
use super::util::{git, list_files, read, remove_dir, run_output, write};
use super::BASE_TAG;

pub(super) fn create_work_tree(ctx: &Context, layout: &Layout) -> Result<()> {
    let pristine = ctx.pristine()?;
    if layout.src.exists() {
        remove_dir(&layout.src)?;
    }
    println!("    copying {}", pristine.display());
    run_output(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&pristine)
            .arg(&layout.src),
        "cp",
    )?;
    let _ = fs::remove_file(layout.src.join(STAMP_FILE));
    println!("    git init + commit of the pristine tree");
    let src = &layout.src;
    run_output(git(src, None).args(["init", "-q"]), "git init")?;
    run_output(git(src, None).args(["add", "-A", "-f"]), "git add")?;
    let msg = format!("QEMU {} (Debian source, pristine)", ctx.qemu.version);
    run_output(
        git(src, None).args(["commit", "-q", "-m", &msg]),
        "git commit",
    )?;
    run_output(git(src, None).args(["tag", BASE_TAG]), "git tag")?;
    Ok(())
}

/// Puts `src/` at base + `patches`, re-applying the whole series with
/// `git am`, then gives every file whose content is unchanged its previous
/// mtime back: ninja then sees only the files that really changed.
pub(super) fn apply_series(src: &Path, patches: &[PathBuf]) -> Result<()> {
    let dirty = run_output(
        git(src, None).args(["status", "--porcelain", "--untracked-files=no"]),
        "git status",
    )?;
    if !dirty.trim().is_empty() {
        return Err(Error::msg(format!(
            "{} has local changes to tracked files (they would be lost):\n{}\n\
             edit qemu-device/ instead, or rerun with --fresh",
            src.display(),
            dirty.trim_end()
        )));
    }
    let before = touched_files(src)?;
    let snapshot = snapshot_files(src, &before)?;
    run_output(
        git(src, None).args(["reset", "-q", "--hard", BASE_TAG]),
        "git reset --hard (to the pristine base)",
    )?;
    if !patches.is_empty() {
        let mut am = git(src, None);
        am.args(["am", "-q", "--keep-cr", "--whitespace=nowarn"])
            .args(patches);
        if let Err(e) = run_output(&mut am, "git am") {
            let _ = run_output(git(src, None).args(["am", "--abort"]), "git am --abort");
            return Err(Error::msg(format!(
                "{e}\nthe series does not apply to the pristine tree; see `git -C {} am` \
                 by hand, or rerun with --fresh",
                src.display()
            )));
        }
    }
    let after = touched_files(src)?;
    let current = snapshot_files(src, &after)?;
    let mut restored = 0;
    let mut changed = Vec::new();
    for (path, new) in &current {
        match snapshot.get(path) {
            Some(old) if old.bytes == new.bytes => {
                set_mtime(&src.join(path), old.mtime)?;
                restored += 1;
            }
            _ => changed.push(path.clone()),
        }
    }
    for path in snapshot.keys() {
        if !current.contains_key(path) {
            changed.push(format!("{path} (back to pristine)"));
        }
    }
    println!(
        "    {} patches applied; {} files changed, {} unchanged (mtime kept)",
        patches.len(),
        changed.len(),
        restored
    );
    for c in changed.iter().take(20) {
        println!("      changed: {c}");
    }
    Ok(())
}

/// Files that differ between the base and HEAD.
pub(super) fn touched_files(src: &Path) -> Result<BTreeSet<String>> {
    let out = run_output(
        git(src, None).args(["diff", "--name-only", "--no-renames", BASE_TAG, "HEAD"]),
        "git diff",
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

#[derive(Debug)]
pub(super) struct Snap {
    pub(super) bytes: Vec<u8>,
    pub(super) mtime: SystemTime,
}

/// Content and mtime of the given files that exist.
pub(super) fn snapshot_files(
    src: &Path,
    files: &BTreeSet<String>,
) -> Result<BTreeMap<String, Snap>> {
    let mut out = BTreeMap::new();
    for f in files {
        let p = src.join(f);
        if !p.is_file() {
            continue;
        }
        let mtime = fs::metadata(&p)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))?;
        out.insert(
            f.clone(),
            Snap {
                bytes: read(&p)?,
                mtime,
            },
        );
    }
    Ok(out)
}

pub(super) fn set_mtime(path: &Path, mtime: SystemTime) -> Result<()> {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .map_err(|e| Error::io(format!("cannot set the mtime of {}", path.display()), e))
}

/// meson copies `subprojects/packagefiles/<patch_directory>/` into a
/// subproject only when it extracts it; later edits of the glue must be
/// copied by hand. Copies each file whose content differs (which also
/// makes ninja re-run meson).
pub(super) fn sync_packagefiles(src: &Path) -> Result<()> {
    let subprojects = src.join("subprojects");
    for wrap in read_wraps(&subprojects)? {
        let Some(patch_dir) = &wrap.patch_directory else {
            continue;
        };
        let from = subprojects.join("packagefiles").join(patch_dir);
        let to = subprojects.join(&wrap.directory);
        if !from.is_dir() || !to.is_dir() {
            continue;
        }
        for rel in list_files(&from)? {
            let new = read(&from.join(&rel))?;
            if fs::read(to.join(&rel)).ok().as_deref() != Some(&new[..]) {
                println!(
                    "    packagefiles: {patch_dir}/{rel} -> subprojects/{}/",
                    wrap.directory
                );
                write(&to.join(&rel), &new)?;
            }
        }
    }
    Ok(())
}
