//! What `qemu-device/qemu/` holds: files QEMU does not have, whole, and
//! changes to files QEMU has, as unified diffs against the pinned source
//! (`<path>.diff`). A whole copy of an upstream file would silently revert
//! upstream's fixes on the next QEMU version; a diff fails to apply instead,
//! naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::series::Author;
use super::util::{git, run_output};

/// Suffix of a change to an upstream file: `hw/vfio/trace-events.diff`
/// changes QEMU's `hw/vfio/trace-events`.
pub(super) const DIFF_SUFFIX: &str = ".diff";

/// Where a file of the series comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A file the pinned QEMU source does not have, added whole.
    New(PathBuf),
    /// A unified diff against the pinned source's file of the same path.
    Change(PathBuf),
}

/// Maps every file under `root` (`files`, relative) to its QEMU path.
/// `upstream(path)` says whether the pinned source has `path`. A whole
/// file that QEMU has, a diff of a file QEMU lacks, and a file given both
/// whole and as a diff are errors that say what to do.
pub(super) fn classify(
    root: &Path,
    files: &[String],
    upstream: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Source>> {
    let mut out = BTreeMap::new();
    for f in files {
        let (path, source) = match f.strip_suffix(DIFF_SUFFIX) {
            Some(target) => {
                if !upstream(target) {
                    return Err(Error::msg(format!(
                        "qemu-device/qemu/{f} changes {target}, which the pinned QEMU source \
                         does not have: add the file whole as qemu-device/qemu/{target}"
                    )));
                }
                (target.to_string(), Source::Change(root.join(f)))
            }
            None => {
                if upstream(f) {
                    return Err(Error::msg(format!(
                        "qemu-device/qemu/{f} replaces QEMU's {f} whole: keep only the change, \
                         as qemu-device/qemu/{f}{DIFF_SUFFIX} (edit the file in the build's work \
                         tree, then `cargo xtask qemu-diff {f}`)"
                    )));
                }
                (f.clone(), Source::New(root.join(f)))
            }
        };
        if out.insert(path.clone(), source).is_some() {
            return Err(Error::msg(format!(
                "qemu-device/qemu/ has {path} both whole and as {path}{DIFF_SUFFIX}"
            )));
        }
    }
    Ok(out)
}

/// A change diff must touch exactly `target`, which must exist on both
/// sides: no new, deleted, renamed or mode-changed file, and no second file.
pub(super) fn check_names(diff: &str, target: &str) -> Result<()> {
    let what = format!("{target}{DIFF_SUFFIX}");
    let (want_old, want_new) = (format!("a/{target}"), format!("b/{target}"));
    let mut old = Vec::new();
    let mut new = Vec::new();
    let mut hunks = 0;
    // In a hunk, a removed line "-- x" or an added "++ x" looks like a
    // header: count the hunk's lines and parse headers only outside.
    let (mut old_left, mut new_left) = (0u64, 0u64);
    for line in diff.lines() {
        if old_left > 0 || new_left > 0 {
            match line.as_bytes().first() {
                Some(b'-') => old_left = old_left.saturating_sub(1),
                Some(b'+') => new_left = new_left.saturating_sub(1),
                Some(b'\\') => {}
                _ => {
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                }
            }
            continue;
        }
        if let Some(p) = line.strip_prefix("--- ") {
            old.push(p.split('\t').next().unwrap_or(p).to_string());
        } else if let Some(p) = line.strip_prefix("+++ ") {
            new.push(p.split('\t').next().unwrap_or(p).to_string());
        } else if let Some(counts) = line.strip_prefix("@@ ") {
            hunks += 1;
            (old_left, new_left) = hunk_counts(counts)
                .ok_or_else(|| Error::msg(format!("{what}: malformed hunk header {line:?}")))?;
        } else if [
            "new file mode",
            "deleted file mode",
            "rename ",
            "copy ",
            "old mode",
            "new mode",
            "Binary files",
            "GIT binary patch",
        ]
        .iter()
        .any(|p| line.starts_with(p))
        {
            return Err(Error::msg(format!(
                "{what}: a change may only edit the lines of {target} (found {line:?})"
            )));
        }
    }
    if old != [want_old.clone()] || new != [want_new.clone()] {
        return Err(Error::msg(format!(
            "{what}: must be a unified diff of {target} alone, with the headers \
             `--- {want_old}` and `+++ {want_new}` (found --- {old:?}, +++ {new:?})"
        )));
    }
    if old_left > 0 || new_left > 0 {
        return Err(Error::msg(format!(
            "{what}: the last hunk ends early ({old_left} old and {new_left} new lines missing)"
        )));
    }
    if hunks == 0 {
        return Err(Error::msg(format!("{what}: has no hunk")));
    }
    Ok(())
}

/// The old and new line counts of a hunk header's `-a,b +c,d @@` (a count
/// left out is 1).
fn hunk_counts(rest: &str) -> Option<(u64, u64)> {
    let mut it = rest.split_whitespace();
    let count = |r: &str, sign: char| -> Option<u64> {
        let r = r.strip_prefix(sign)?;
        match r.split_once(',') {
            Some((start, n)) => start.parse::<u64>().ok().and(n.parse().ok()),
            None => r.parse::<u64>().ok().map(|_| 1),
        }
    };
    let counts = (count(it.next()?, '-')?, count(it.next()?, '+')?);
    (it.next()? == "@@").then_some(counts)
}

/// Applies the change `diff` (checked with [`check_names`]) to `target` in
/// the git repository `repo`, whose file holds the pristine content. git
/// apply takes no fuzz: every context line must match, only its line
/// number may have moved.
pub(super) fn apply(repo: &Path, author: Option<&Author>, target: &str, diff: &Path) -> Result<()> {
    let text = std::fs::read_to_string(diff)
        .map_err(|e| Error::io(format!("cannot read {}", diff.display()), e))?;
    check_names(&text, target)?;
    run_output(
        git(repo, author)
            .args(["apply", "--whitespace=nowarn", "-p1", "--"])
            .arg(diff),
        "git apply",
    )
    .map(|_| ())
    .map_err(|e| {
        Error::msg(format!(
            "qemu-device/qemu/{target}{DIFF_SUFFIX} no longer applies to the pinned QEMU's \
             {target}; rebase it on the new source (edit {target} in the build's work tree, \
             then `cargo xtask qemu-diff {target}`): {e}"
        ))
    })
}

/// `git diff` output for one file, without the `index` line: the blob ids
/// change with every edit and with every QEMU version, and git apply does
/// not need them.
pub(super) fn normalize(git_diff: &str) -> String {
    // split_inclusive keeps each line's own ending, \r\n included.
    git_diff
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("index "))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::util::TempDir;
    use super::*;

    const DIFF: &str = "\
diff --git a/hw/x.c b/hw/x.c
--- a/hw/x.c
+++ b/hw/x.c
@@ -2,3 +2,4 @@
 one
 two
+two and a half
 three
";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_files_whole_changes_as_diffs() {
        let upstream = |p: &str| p == "hw/x.c";
        let got = classify(
            Path::new("/q"),
            &names(&["hw/x.c.diff", "hw/new.c"]),
            upstream,
        )
        .unwrap();
        assert_eq!(
            got["hw/x.c"],
            Source::Change(PathBuf::from("/q/hw/x.c.diff"))
        );
        assert_eq!(got["hw/new.c"], Source::New(PathBuf::from("/q/hw/new.c")));
    }

    #[test]
    fn whole_copies_of_upstream_files_are_refused_with_the_way_out() {
        let err = classify(Path::new("/q"), &names(&["hw/x.c"]), |p| p == "hw/x.c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replaces QEMU's hw/x.c whole"), "{err}");
        assert!(err.contains("qemu-diff hw/x.c"), "{err}");
        let err = classify(Path::new("/q"), &names(&["hw/y.c.diff"]), |_| false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not have"), "{err}");
    }

    #[test]
    fn a_diff_names_its_file_alone() {
        check_names(DIFF, "hw/x.c").unwrap();
        assert!(check_names(DIFF, "hw/y.c").is_err());
        let two = format!("{DIFF}{}", DIFF.replace("hw/x.c", "hw/z.c"));
        assert!(check_names(&two, "hw/x.c").is_err());
        let created = DIFF.replace("--- a/hw/x.c", "new file mode 100644\n--- /dev/null");
        assert!(check_names(&created, "hw/x.c").is_err());
        let mode = DIFF.replace("--- a/", "old mode 100644\nnew mode 100755\n--- a/");
        assert!(check_names(&mode, "hw/x.c").is_err());
        let empty: String = DIFF.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(check_names(&empty, "hw/x.c")
            .unwrap_err()
            .to_string()
            .contains("no hunk"));
    }

    #[test]
    fn lines_inside_a_hunk_are_not_headers() {
        let tricky = "diff --git a/hw/x.c b/hw/x.c\n--- a/hw/x.c\n+++ b/hw/x.c\n\
                      @@ -1,2 +1,2 @@\n--- a removed SQL comment\n+++ an added line\n ctx\n";
        check_names(tricky, "hw/x.c").unwrap();
        assert!(check_names("--- a/hw/x.c\n+++ b/hw/x.c\n@@ bogus\n", "hw/x.c").is_err());
        assert!(check_names("--- a/hw/x.c\n+++ b/hw/x.c\n@@ -x,1 +1 @@\n a\n", "hw/x.c").is_err());
        let short = DIFF.replace(" three\n", "");
        assert!(check_names(&short, "hw/x.c")
            .unwrap_err()
            .to_string()
            .contains("ends early"));
    }

    #[test]
    fn normalize_keeps_crlf() {
        let crlf = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\r\n+b\r\n";
        assert_eq!(normalize(crlf), crlf);
    }

    #[test]
    fn normalize_drops_the_blob_ids() {
        let with_index = DIFF.replace("--- a/", "index 0123abc..4567def 100644\n--- a/");
        assert_eq!(normalize(&with_index), DIFF);
    }

    /// A repository with `hw/x.c` committed as `content`, and `d.diff`.
    fn repo_with(content: &str, diff: &str) -> (TempDir, PathBuf, PathBuf) {
        let tmp = TempDir::new("changes-test").unwrap();
        let repo = tmp.path().join("repo");
        fs::create_dir_all(repo.join("hw")).unwrap();
        fs::write(repo.join("hw/x.c"), content).unwrap();
        run_output(git(&repo, None).args(["init", "-q"]), "git init").unwrap();
        let d = tmp.path().join("d.diff");
        fs::write(&d, diff).unwrap();
        (tmp, repo, d)
    }

    #[test]
    fn a_change_applies_even_when_its_lines_moved() {
        // The hunk says line 2; a newer source has two more lines above.
        let (_tmp, repo, d) = repo_with("new\nnewer\nzero\none\ntwo\nthree\n", DIFF);
        apply(&repo, None, "hw/x.c", &d).unwrap();
        let got = fs::read_to_string(repo.join("hw/x.c")).unwrap();
        assert_eq!(got, "new\nnewer\nzero\none\ntwo\ntwo and a half\nthree\n");
    }

    #[test]
    fn a_change_whose_context_moved_on_fails_naming_the_file() {
        let (_tmp, repo, d) = repo_with("zero\none\n2\nthree\n", DIFF);
        let err = apply(&repo, None, "hw/x.c", &d).unwrap_err().to_string();
        assert!(
            err.contains("qemu-device/qemu/hw/x.c.diff no longer applies"),
            "{err}"
        );
        assert!(err.contains("patch does not apply"), "{err}");
        let untouched = fs::read_to_string(repo.join("hw/x.c")).unwrap();
        assert_eq!(untouched, "zero\none\n2\nthree\n");
    }
}
