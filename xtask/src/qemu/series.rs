//! `qemu-device/series.toml`, and `patches/qemu/` generated from it with
//! `git format-patch` in a scratch repository.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

use crate::error::{Error, Result};

use super::changes::{self, Source};
use super::util::{copy_file, git, list_files, read, run_output, sha256_hex, write, TempDir};
use super::BASE_TAG;

pub(super) const SERIES_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesConfig {
    pub(super) schema: u32,
    pub(super) author: Author,
    #[serde(rename = "patch", default)]
    pub(super) patches: Vec<PatchSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Author {
    pub(super) name: String,
    pub(super) email: String,
    /// Any date git accepts, e.g. `2026-11-24 00:00:00 +0000`.
    pub(super) date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchSpec {
    pub(super) subject: String,
    #[serde(default)]
    pub(super) body: String,
    pub(super) paths: Vec<String>,
    /// Directories of the checkout copied into this patch (see [`Include`]).
    #[serde(rename = "include", default)]
    pub(super) includes: Vec<Include>,
}

/// `[[patch.include]]`: every file under `from` (a directory of the
/// vfio-cxl checkout, ending in `/`) becomes the file under `to` (a QEMU
/// path, ending in `/`) in this patch. The series stays self-contained,
/// and check-qemu-patches fails when the copy is stale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Include {
    pub(super) from: String,
    pub(super) to: String,
}

impl SeriesConfig {
    pub(super) fn parse(text: &str) -> Result<Self> {
        let config: SeriesConfig = toml::from_str(text)
            .map_err(|e| Error::msg(format!("invalid series config: {}", e.message())))?;
        if config.schema != SERIES_SCHEMA {
            return Err(Error::msg(format!(
                "series schema {} is not supported (this xtask reads schema {SERIES_SCHEMA})",
                config.schema
            )));
        }
        if config.patches.is_empty() {
            return Err(Error::msg("no [[patch]] entries"));
        }
        for (i, p) in config.patches.iter().enumerate() {
            let n = i + 1;
            if p.subject.trim().is_empty() || p.subject.contains('\n') {
                return Err(Error::msg(format!(
                    "patch {n}: subject must be one non-empty line"
                )));
            }
            if p.paths.is_empty() && p.includes.is_empty() {
                return Err(Error::msg(format!("patch {n} ({}): no paths", p.subject)));
            }
            for inc in &p.includes {
                for dir in [&inc.from, &inc.to] {
                    if !dir.ends_with('/')
                        || dir.starts_with('/')
                        || dir.split('/').any(|c| c == ".." || c == ".")
                    {
                        return Err(Error::msg(format!(
                            "patch {n}: include directory {dir:?} must be relative, end in / and have no . or .."
                        )));
                    }
                }
            }
            for path in &p.paths {
                if path.is_empty()
                    || path.starts_with('/')
                    || path.split('/').any(|c| c == ".." || c == ".")
                {
                    return Err(Error::msg(format!(
                        "patch {n}: path {path:?} must be relative to qemu-device/qemu/ without . or .."
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Which files (relative to qemu-device/qemu/, sorted) go into which
    /// patch, in series order. Every file must be claimed exactly once and
    /// every patch must get at least one file.
    pub(super) fn assign(&self, files: &[String]) -> Result<Vec<(PatchSpec, Vec<String>)>> {
        let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
        let mut plan: Vec<(PatchSpec, Vec<String>)> = self
            .patches
            .iter()
            .map(|p| (p.clone(), Vec::new()))
            .collect();
        for file in files {
            for (i, p) in self.patches.iter().enumerate() {
                if p.paths.iter().any(|pat| path_matches(pat, file)) {
                    if let Some(&first) = owner.get(file.as_str()) {
                        return Err(Error::msg(format!(
                            "{file} is claimed by patch {} ({}) and patch {} ({})",
                            first + 1,
                            self.patches[first].subject,
                            i + 1,
                            p.subject
                        )));
                    }
                    owner.insert(file, i);
                    plan[i].1.push(file.clone());
                }
            }
            if !owner.contains_key(file.as_str()) {
                return Err(Error::msg(format!(
                    "qemu-device/qemu/{file} belongs to no patch: add its path to a [[patch]] in qemu-device/series.toml"
                )));
            }
        }
        for (i, (p, files)) in plan.iter().enumerate() {
            if files.is_empty() && p.includes.is_empty() {
                return Err(Error::msg(format!(
                    "patch {} ({}) matches no file under qemu-device/qemu/",
                    i + 1,
                    p.subject
                )));
            }
        }
        Ok(plan)
    }
}

/// `pat` is a file path, or a directory when it ends in `/`.
pub(super) fn path_matches(pat: &str, file: &str) -> bool {
    if pat.ends_with('/') {
        file.starts_with(pat)
    } else {
        file == pat
    }
}

/// Builds the series in a scratch git repository that holds only the files
/// the series touches (with their pristine content as the base commit), one
/// commit per patch, then `git format-patch`. Blob ids and diffs are those of
/// the full tree, and `--zero-commit` hides the (different) commit ids, so
/// the patches apply to the full pristine tree.
pub(super) fn generate(
    config: &SeriesConfig,
    plan: &[(PatchSpec, Vec<String>)],
    sources: &BTreeMap<String, Source>,
    pristine: &Path,
    out: &Path,
) -> Result<()> {
    let tmp = TempDir::new("series")?;
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).map_err(|e| Error::io("cannot create a scratch repo", e))?;
    let author = Some(&config.author);
    run_output(git(&repo, author).args(["init", "-q"]), "git init")?;
    for (_, files) in plan {
        for f in files {
            let p = pristine.join(f);
            if p.is_file() {
                copy_file(&p, &repo.join(f))?;
            }
        }
    }
    run_output(git(&repo, author).args(["add", "-A", "-f"]), "git add")?;
    run_output(
        git(&repo, author).args(["commit", "-q", "--allow-empty", "-m", "base"]),
        "git commit (base)",
    )?;
    run_output(git(&repo, author).args(["tag", BASE_TAG]), "git tag")?;
    for (i, (spec, files)) in plan.iter().enumerate() {
        for f in files {
            match sources.get(f) {
                Some(Source::New(from)) => copy_file(from, &repo.join(f))?,
                Some(Source::Change(diff)) => changes::apply(&repo, author, f, diff)?,
                None => return Err(Error::msg(format!("no source for {f}"))),
            }
        }
        let mut add = git(&repo, author);
        add.args(["add", "-f", "--"]).args(files);
        run_output(&mut add, "git add")?;
        let staged = run_output(
            git(&repo, author).args(["diff", "--cached", "--name-only"]),
            "git diff",
        )?;
        if staged.trim().is_empty() {
            return Err(Error::msg(format!(
                "patch {} ({}) changes nothing: its files equal the pristine QEMU source",
                i + 1,
                spec.subject
            )));
        }
        let message = commit_message(spec);
        commit_with_message(&repo, author, &message)?;
    }
    fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("cannot create {}", out.display()), e))?;
    run_output(
        git(&repo, author)
            .args([
                "format-patch",
                "-q",
                "--zero-commit",
                "--full-index",
                "--no-signature",
                "--no-renames",
                "--diff-algorithm=myers",
                "-o",
            ])
            .arg(out)
            .arg(format!("{BASE_TAG}..HEAD")),
        "git format-patch",
    )?;
    // format-patch numbers the files 0001-..., so sorted order is series order.
    let mut series = String::new();
    for name in list_files(out)?
        .into_iter()
        .filter(|n| n.ends_with(".patch"))
    {
        series.push_str(&name);
        series.push('\n');
    }
    if series.is_empty() {
        return Err(Error::msg("git format-patch wrote no patch"));
    }
    write(&out.join("series"), series.as_bytes())
}

pub(super) fn commit_message(spec: &PatchSpec) -> String {
    let mut m = format!("{}\n", spec.subject.trim());
    let body = spec.body.trim();
    if !body.is_empty() {
        m.push('\n');
        m.push_str(body);
        m.push('\n');
    }
    m.push_str(
        "\n[vfio-cxl: generated by `cargo xtask gen-qemu-patches` from qemu-device/; do not edit]\n",
    );
    m
}

pub(super) fn commit_with_message(
    repo: &Path,
    author: Option<&Author>,
    message: &str,
) -> Result<()> {
    let mut child = git(repo, author)
        .args(["commit", "-q", "--cleanup=verbatim", "-F", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::msg(format!("cannot start git commit: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(message.as_bytes())
        .map_err(|e| Error::io("cannot write the commit message", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("git commit", e))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "git commit failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The patch files of a series directory, in `series` order.
pub(super) fn series_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let series = dir.join("series");
    let text = fs::read_to_string(&series).map_err(|e| {
        Error::io(
            format!(
                "cannot read {} (generate it: cargo xtask gen-qemu-patches)",
                series.display()
            ),
            e,
        )
    })?;
    Ok(parse_series(&text)
        .into_iter()
        .map(|n| dir.join(n))
        .collect())
}

/// Names in a quilt series file (comments and blank lines skipped).
pub(super) fn parse_series(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(l).to_string())
        .collect()
}

/// sha256 of the series: the `series` file, then each patch's name and
/// bytes. Identifies what `src/` holds on top of the pristine tree.
pub(super) fn series_hash(dir: &Path) -> Result<String> {
    let series = read(&dir.join("series"))?;
    let mut patches = Vec::new();
    for name in parse_series(&String::from_utf8_lossy(&series)) {
        let bytes = read(&dir.join(&name))?;
        patches.push((name, bytes));
    }
    Ok(sha256_hex(&series_hash_input(&series, &patches)))
}

pub(super) fn series_hash_input(series: &[u8], patches: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut input = Vec::new();
    let mut item = |bytes: &[u8]| {
        input.extend_from_slice(format!("{}\n", bytes.len()).as_bytes());
        input.extend_from_slice(bytes);
    };
    item(b"vfio-cxl qemu series v1");
    item(series);
    for (name, bytes) in patches {
        item(name.as_bytes());
        item(bytes);
    }
    input
}

pub(super) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
schema = 1
[author]
name = "A"
email = "a@b.invalid"
date = "2026-11-24 00:00:00 +0000"

[[patch]]
subject = "subprojects: glue"
paths = ["subprojects/packagefiles/"]

[[patch]]
subject = "rust: cxl device"
body = "Adds it."
paths = ["rust/hw/cxl/", "rust/hw/meson.build"]
"#;

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_parses() {
        let c = SeriesConfig::parse(CONFIG).unwrap();
        assert_eq!(c.patches.len(), 2);
        assert_eq!(c.patches[1].body, "Adds it.");
        assert_eq!(c.author.email, "a@b.invalid");
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_paths() {
        let unknown = CONFIG.replace("paths = [\"subprojects", "pahts = [\"subprojects");
        assert!(SeriesConfig::parse(&unknown).is_err());
        let dotdot = CONFIG.replace("rust/hw/meson.build", "../meson.build");
        let err = SeriesConfig::parse(&dotdot).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
        let schema = CONFIG.replace("schema = 1", "schema = 2");
        assert!(SeriesConfig::parse(&schema).is_err());
    }

    #[test]
    fn includes_parse_and_need_relative_directories() {
        let with = format!(
            "{CONFIG}\n[[patch]]\nsubject = \"regs\"\npaths = []\n\
             [[patch.include]]\nfrom = \"crates/cxl-regs/src/\"\nto = \"rust/hw/cxl/regs/src/\"\n"
        );
        let c = SeriesConfig::parse(&with).unwrap();
        let last = c.patches.last().unwrap();
        assert_eq!(last.includes.len(), 1);
        assert_eq!(last.includes[0].to, "rust/hw/cxl/regs/src/");
        // A patch with only includes claims no qemu-device/ file and is not empty.
        assert!(c
            .assign(&files(&["subprojects/packagefiles/x", "rust/hw/cxl/a"]))
            .is_ok());
        let bad = with.replace("to = \"rust/hw/cxl/regs/src/\"", "to = \"../x/\"");
        assert!(SeriesConfig::parse(&bad).is_err());
    }

    #[test]
    fn assign_groups_files_in_series_order() {
        let c = SeriesConfig::parse(CONFIG).unwrap();
        let plan = c
            .assign(&files(&[
                "rust/hw/cxl/src/lib.rs",
                "rust/hw/meson.build",
                "subprojects/packagefiles/a-rs/meson.build",
            ]))
            .unwrap();
        assert_eq!(
            plan[0].1,
            files(&["subprojects/packagefiles/a-rs/meson.build"])
        );
        assert_eq!(
            plan[1].1,
            files(&["rust/hw/cxl/src/lib.rs", "rust/hw/meson.build"])
        );
    }

    #[test]
    fn assign_rejects_unclaimed_double_claimed_and_empty() {
        let c = SeriesConfig::parse(CONFIG).unwrap();
        let err = c
            .assign(&files(&[
                "subprojects/packagefiles/x",
                "rust/hw/cxl/a",
                "README",
            ]))
            .unwrap_err();
        assert!(
            err.to_string().contains("README belongs to no patch"),
            "{err}"
        );

        let err = c
            .assign(&files(&["subprojects/packagefiles/x"]))
            .unwrap_err();
        assert!(err.to_string().contains("matches no file"), "{err}");

        let twice = CONFIG.replace("\"rust/hw/cxl/\"", "\"rust/hw/cxl/\", \"subprojects/\"");
        let c = SeriesConfig::parse(&twice).unwrap();
        let err = c
            .assign(&files(&["subprojects/packagefiles/x", "rust/hw/cxl/a"]))
            .unwrap_err();
        assert!(err.to_string().contains("claimed by patch 1"), "{err}");
    }

    #[test]
    fn directory_patterns_need_the_slash() {
        assert!(path_matches("rust/hw/cxl/", "rust/hw/cxl/x.rs"));
        assert!(!path_matches("rust/hw/cxl/", "rust/hw/cxl-other/x.rs"));
        assert!(path_matches("rust/hw/meson.build", "rust/hw/meson.build"));
        assert!(!path_matches("rust/hw/meson", "rust/hw/meson.build"));
    }

    #[test]
    fn series_file_parsing_skips_comments() {
        let names = parse_series("# quilt\n0001-a.patch\n\n0002-b.patch -p1\n");
        assert_eq!(names, files(&["0001-a.patch", "0002-b.patch"]));
    }

    #[test]
    fn series_hash_depends_on_content_names_and_order() {
        let a = ("0001-a.patch".to_string(), b"aaa".to_vec());
        let b = ("0002-b.patch".to_string(), b"bbb".to_vec());
        let base = series_hash_input(b"s", &[a.clone(), b.clone()]);
        assert_eq!(base, series_hash_input(b"s", &[a.clone(), b.clone()]));
        assert_ne!(base, series_hash_input(b"s", &[b.clone(), a.clone()]));
        let renamed = ("0001-c.patch".to_string(), b"aaa".to_vec());
        assert_ne!(base, series_hash_input(b"s", &[renamed, b.clone()]));
        // Length prefixes: moving bytes across the boundary changes the input.
        let a2 = ("0001-a.patch".to_string(), b"aaab".to_vec());
        let b2 = ("0002-b.patch".to_string(), b"bb".to_vec());
        assert_ne!(base, series_hash_input(b"s", &[a2, b2]));
        let h = sha256_hex(&base);
        assert_eq!(h.len(), 64);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
