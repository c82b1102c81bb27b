//! Where downloaded and unpacked artifacts live.
//!
//! The cache sits outside the checkout so that `git clean`, new worktrees
//! and CI clones all share one copy of the large downloads. Resolution:
//!
//! 1. `$VFIO_CXL_CACHE` when set and non-empty (a relative value is taken
//!    relative to the current directory);
//! 2. `$XDG_CACHE_HOME/vfio-cxl` when `XDG_CACHE_HOME` is set to an absolute
//!    path (the XDG spec says to ignore relative values);
//! 3. `$HOME/.cache/vfio-cxl`.
//!
//! Layout (see docs/sources.md):
//!
//! ```text
//! <cache>/sources/qemu/<debian version, ':' -> '_'>/   .dsc, .orig.tar.xz, .debian.tar.xz
//! <cache>/sources/linux/<upstream version>/            the pinned .deb files
//! <cache>/src/qemu-<upstream version>/                 `dpkg-source -x` of the QEMU package
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const CACHE_ENV: &str = "VFIO_CXL_CACHE";

/// Name of the file written into an unpacked source tree that records which
/// Debian version it was unpacked from.
pub const STAMP_FILE: &str = ".vfio-cxl-version";

/// Resolve the cache directory from environment lookups (`get`) and the
/// current directory. Pure, so the rules can be tested without touching the
/// process environment.
pub fn resolve_cache_dir(get: impl Fn(&str) -> Option<OsString>, cwd: &Path) -> Result<PathBuf> {
    let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());

    if let Some(dir) = non_empty(CACHE_ENV) {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            cwd.join(dir)
        });
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Ok(xdg.join("vfio-cxl"));
        }
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("vfio-cxl"));
    }
    Err(Error::msg(format!(
        "cannot choose a cache directory: none of {CACHE_ENV}, XDG_CACHE_HOME or HOME is set"
    )))
}

/// A Debian version as a directory name: the epoch colon becomes `_`
/// (`1:10.2.2+ds-1` -> `1_10.2.2+ds-1`). `_` never occurs in a Debian
/// version, so this is one-to-one; `~` and `+` are kept as they are.
pub fn version_dir_name(version: &str) -> String {
    version.replace(':', "_")
}

/// The resolved cache directory and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The cache of this process: from its environment and current directory.
    pub fn from_env() -> Result<Self> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?;
        resolve_cache_dir(|name| std::env::var_os(name), &cwd).map(Self::new)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Downloaded files of one Debian source package version.
    pub fn source_package_dir(&self, package: &str, version: &str) -> PathBuf {
        self.root
            .join("sources")
            .join(package)
            .join(version_dir_name(version))
    }

    /// Downloaded kernel .deb files for one upstream Linux version.
    pub fn linux_debs_dir(&self, upstream: &str) -> PathBuf {
        self.root.join("sources").join("linux").join(upstream)
    }

    /// Unpacked source tree (`<cache>/src/<package>-<upstream>`).
    pub fn unpacked_source_dir(&self, package: &str, upstream: &str) -> PathBuf {
        self.root.join("src").join(format!("{package}-{upstream}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    const CWD: &str = "/work/checkout";

    fn resolve(pairs: &[(&str, &str)]) -> Result<PathBuf> {
        resolve_cache_dir(env(pairs), Path::new(CWD))
    }

    #[test]
    fn explicit_variable_wins_over_everything() {
        let got = resolve(&[
            ("VFIO_CXL_CACHE", "/srv/cache"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(got, Ok(PathBuf::from("/srv/cache")));
    }

    #[test]
    fn relative_explicit_variable_is_taken_from_cwd() {
        let got = resolve(&[("VFIO_CXL_CACHE", "cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/work/checkout/cache")));
    }

    #[test]
    fn empty_explicit_variable_is_ignored() {
        let got = resolve(&[("VFIO_CXL_CACHE", ""), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(got, Ok(PathBuf::from("/x/vfio-cxl")));
    }

    #[test]
    fn xdg_cache_home_is_used_before_home() {
        let got = resolve(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/x/cache/vfio-cxl")));
    }

    #[test]
    fn relative_xdg_cache_home_is_ignored() {
        let got = resolve(&[("XDG_CACHE_HOME", "rel/cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/home/u/.cache/vfio-cxl")));
    }

    #[test]
    fn home_is_the_fallback() {
        let got = resolve(&[("HOME", "/root")]);
        assert_eq!(got, Ok(PathBuf::from("/root/.cache/vfio-cxl")));
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let err = resolve(&[]).unwrap_err();
        assert!(err.to_string().contains("VFIO_CXL_CACHE"), "{err}");
        assert!(!err.is_usage());
    }

    #[test]
    fn layout_uses_sanitized_versions() {
        let cache = Cache::new(PathBuf::from("/c"));
        assert_eq!(
            cache.source_package_dir("qemu", "1:10.2.2+ds-1"),
            PathBuf::from("/c/sources/qemu/1_10.2.2+ds-1")
        );
        assert_eq!(
            cache.linux_debs_dir("7.3.4"),
            PathBuf::from("/c/sources/linux/7.3.4")
        );
        assert_eq!(
            cache.unpacked_source_dir("qemu", "10.2.2"),
            PathBuf::from("/c/src/qemu-10.2.2")
        );
    }

    #[test]
    fn version_dir_name_keeps_tilde_and_plus() {
        assert_eq!(version_dir_name("7.3.4-1~bpo13+1"), "7.3.4-1~bpo13+1");
        assert_eq!(version_dir_name("2:1.0-1"), "2_1.0-1");
    }
}
