//! Where things are: the checkout, the cache, the work directory and the
//! `state` file that records what it was made from.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cache::{self, Cache, STAMP_FILE};
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins, SourceArtifact};

use super::changes::{self, Source};
use super::series::{generate, SeriesConfig};
use super::util::{compare_dirs, list_files, read, write, TempDir};
use super::BINARY;

/// Everything the commands need to know about the checkout and the cache.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) repo: PathBuf,
    pub(super) cache: Cache,
    pub(super) qemu: SourceArtifact,
}

impl Context {
    pub(super) fn load() -> Result<Self> {
        let env_pins = std::env::var(pins::PINS_ENV).ok();
        let overrides = Overrides::parse(&[], env_pins.as_deref())?;
        let pins = Pins::load(&pins::default_path())?;
        let eff = pins.effective(&overrides)?;
        Ok(Self {
            repo: crate::test::repo_root(),
            cache: Cache::from_env()?,
            qemu: eff.qemu,
        })
    }

    pub(super) fn device_dir(&self) -> PathBuf {
        self.repo.join("qemu-device")
    }

    pub(super) fn patches_dir(&self) -> PathBuf {
        self.repo.join("patches").join("qemu")
    }

    /// The unpacked pinned source (`cargo xtask fetch qemu`), checked.
    pub(super) fn pristine(&self) -> Result<PathBuf> {
        let dir = self
            .cache
            .unpacked_source_dir(&self.qemu.package, &self.qemu.upstream);
        let stamp = fs::read_to_string(dir.join(STAMP_FILE)).unwrap_or_default();
        if stamp.trim() != self.qemu.version {
            return Err(Error::msg(format!(
                "the pinned QEMU source {} is not unpacked in {}: run `cargo xtask fetch qemu`",
                self.qemu.version,
                dir.display()
            )));
        }
        Ok(dir)
    }

    /// What the work tree's base commit is made of.
    pub(super) fn base_identity(&self) -> String {
        let orig = self
            .qemu
            .files
            .as_ref()
            .and_then(|f| f.iter().find(|f| f.name.contains(".orig.tar")))
            .map(|f| f.sha256.clone())
            .unwrap_or_else(|| "unverified".to_string());
        format!("{} {}", self.qemu.version, orig)
    }

    pub(super) fn layout(&self) -> Layout {
        Layout::new(
            self.cache
                .root()
                .join("qemu")
                .join(work_dir_name(&self.qemu.version)),
        )
    }

    pub(super) fn load_series_config(&self) -> Result<SeriesConfig> {
        let path = self.device_dir().join("series.toml");
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        SeriesConfig::parse(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    }

    /// Writes the series into `out` (created; must not exist).
    pub(super) fn generate_series(&self, out: &Path) -> Result<()> {
        let config = self.load_series_config()?;
        let root = self.device_dir().join("qemu");
        let pristine = self.pristine()?;
        let upstream = |p: &str| pristine.join(p).is_file();
        let mut sources = changes::classify(&root, &list_files(&root)?, upstream)?;
        let files: Vec<String> = sources.keys().cloned().collect();
        let mut plan = config.assign(&files)?;
        for (spec, patch_files) in plan.iter_mut() {
            for inc in &spec.includes {
                let from = self.repo.join(&inc.from);
                let included = list_files(&from)
                    .map_err(|e| Error::msg(format!("include {}: {e}", inc.from)))?;
                if included.is_empty() {
                    return Err(Error::msg(format!("include {} has no files", inc.from)));
                }
                for f in included {
                    let target = format!("{}{f}", inc.to);
                    if upstream(&target) {
                        return Err(Error::msg(format!(
                            "{}{f} is included as {target}, which QEMU already has",
                            inc.from
                        )));
                    }
                    if sources
                        .insert(target.clone(), Source::New(from.join(&f)))
                        .is_some()
                    {
                        return Err(Error::msg(format!(
                            "{target} is both in qemu-device/qemu/ and included from {}",
                            inc.from
                        )));
                    }
                    patch_files.push(target);
                }
            }
            patch_files.sort();
        }
        generate(&config, &plan, &sources, &pristine, out)
    }

    /// Regenerates patches/qemu/; true when its content changed.
    pub(super) fn regenerate_series(&self) -> Result<bool> {
        let tmp = TempDir::new("gen")?;
        let fresh = tmp.path().join("qemu");
        self.generate_series(&fresh)?;
        let target = self.patches_dir();
        if compare_dirs(&fresh, &target)?.is_empty() {
            return Ok(false);
        }
        fs::create_dir_all(&target)
            .map_err(|e| Error::io(format!("cannot create {}", target.display()), e))?;
        // Drop files gen no longer writes, then write the changed ones.
        for name in list_files(&target)? {
            if !fresh.join(&name).exists() {
                fs::remove_file(target.join(&name))
                    .map_err(|e| Error::io(format!("cannot remove {name}"), e))?;
            }
        }
        for name in list_files(&fresh)? {
            let new = read(&fresh.join(&name))?;
            if fs::read(target.join(&name)).ok().as_deref() != Some(&new[..]) {
                write(&target.join(&name), &new)?;
            }
        }
        Ok(true)
    }
}

/// The work directory's name for a Debian version: `1:10.2.2+ds-1` ->
/// `1_10.2.2_ds-1`. QEMU passes its source path to bindgen as a regex
/// (`--allowlist-file <src>/include/.*`), so a `+` in the path silently
/// yields empty bindings; only `[A-Za-z0-9._-]` are kept.
pub(super) fn work_dir_name(version: &str) -> String {
    cache::version_dir_name(version)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The characters of `path` that a regex would not match literally (other
/// than `.`, which still matches itself).
pub(super) fn regex_unsafe_chars(path: &Path) -> Vec<char> {
    let mut bad: Vec<char> = path
        .to_string_lossy()
        .chars()
        .filter(|c| "+*?()[]{}|^$\\".contains(*c))
        .collect();
    bad.sort();
    bad.dedup();
    bad
}

/// `<cache>/qemu/<work_dir_name(debian version)>/`.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) root: PathBuf,
    pub(super) src: PathBuf,
    pub(super) build: PathBuf,
}

impl Layout {
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            src: root.join("src"),
            build: root.join("build"),
            root,
        }
    }
    pub(super) fn binary(&self) -> PathBuf {
        self.build.join(BINARY)
    }
    pub(super) fn state_file(&self) -> PathBuf {
        self.root.join("state")
    }
    pub(super) fn seed_dir(&self) -> PathBuf {
        self.root.join("crate-seed")
    }
}

/// `key = value` lines recording what the work tree was made from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct State(BTreeMap<String, String>);

impl State {
    pub(super) fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }
    pub(super) fn render(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
    pub(super) fn load(path: &Path) -> Self {
        Self::parse(&fs::read_to_string(path).unwrap_or_default())
    }
    pub(super) fn save(&self, path: &Path) -> Result<()> {
        write(path, self.render().as_bytes())
    }
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    pub(super) fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let mut s = State::default();
        s.set("base", "1:10.2.2+ds-1 abc");
        s.set("series", "0123");
        assert_eq!(State::parse(&s.render()), s);
        assert_eq!(State::parse("garbage\n").get("base"), None);
    }

    #[test]
    fn work_dir_names_are_regex_safe() {
        assert_eq!(work_dir_name("1:10.2.2+ds-1"), "1_10.2.2_ds-1");
        assert_eq!(
            work_dir_name("10.0.13+ds-0+deb13u1~bpo1"),
            "10.0.13_ds-0_deb13u1_bpo1"
        );
        let root = Path::new("/c/qemu").join(work_dir_name("1:10.2.2+ds-1"));
        assert!(regex_unsafe_chars(&root).is_empty());
        assert_eq!(
            regex_unsafe_chars(Path::new("/a+b/(x)")),
            vec!['(', ')', '+']
        );
    }
}
