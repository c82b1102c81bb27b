//! The cache directory of vfio-cxl: downloads, unpacked sources, the QEMU
//! and kernel builds. It sits outside the checkout, so `git clean`, new
//! worktrees and CI clones share one copy. xtask and the guest harness
//! both resolve it here, so they can never disagree. Resolution:
//!
//! 1. `$VFIO_CXL_CACHE` when set and non-empty (a relative value is taken
//!    relative to the current directory);
//! 2. `$XDG_CACHE_HOME/vfio-cxl` when `XDG_CACHE_HOME` is an absolute path
//!    (the XDG spec says to ignore relative values);
//! 3. `$HOME/.cache/vfio-cxl`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The variable that names the cache directory explicitly.
pub const CACHE_ENV: &str = "VFIO_CXL_CACHE";

/// Why no cache directory could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDirError {
    /// None of the variables is set.
    NoVariable,
    /// The current directory (for a relative `$VFIO_CXL_CACHE`) is unreadable.
    CurrentDir(String),
}

impl fmt::Display for CacheDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVariable => write!(
                f,
                "cannot choose a cache directory: none of {CACHE_ENV}, XDG_CACHE_HOME or HOME is set"
            ),
            Self::CurrentDir(e) => write!(
                f,
                "cannot resolve the relative {CACHE_ENV}: the current directory is unreadable: {e}"
            ),
        }
    }
}

impl std::error::Error for CacheDirError {}

/// The cache directory by the rules above, from environment lookups (`get`)
/// and the current directory. Pure, so the rules are testable without
/// touching the process environment.
pub fn resolve(
    get: impl Fn(&str) -> Option<OsString>,
    cwd: &Path,
) -> Result<PathBuf, CacheDirError> {
    let non_empty = |name: &str| get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(CACHE_ENV) {
        return Ok(cwd.join(dir));
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("vfio-cxl"));
    }
    non_empty("HOME")
        .map(|home| home.join(".cache").join("vfio-cxl"))
        .ok_or(CacheDirError::NoVariable)
}

/// The cache directory of this process.
pub fn from_env() -> Result<PathBuf, CacheDirError> {
    // The current directory matters only for a relative $VFIO_CXL_CACHE.
    let cwd = std::env::current_dir().map_err(|e| CacheDirError::CurrentDir(e.to_string()));
    let relative = std::env::var_os(CACHE_ENV)
        .filter(|v| !v.is_empty())
        .is_some_and(|v| Path::new(&v).is_relative());
    let cwd = if relative {
        cwd?
    } else {
        cwd.unwrap_or_default()
    };
    resolve(|name| std::env::var_os(name), &cwd)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve_with(pairs: &[(&str, &str)]) -> Result<PathBuf, CacheDirError> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        resolve(|name| map.get(name).cloned(), Path::new("/work/checkout"))
    }

    #[test]
    fn explicit_variable_wins_over_everything() {
        let got = resolve_with(&[
            ("VFIO_CXL_CACHE", "/srv/cache"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(got, Ok(PathBuf::from("/srv/cache")));
    }

    #[test]
    fn relative_explicit_variable_is_taken_from_cwd() {
        let got = resolve_with(&[("VFIO_CXL_CACHE", "cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/work/checkout/cache")));
    }

    #[test]
    fn empty_explicit_variable_is_ignored() {
        let got = resolve_with(&[("VFIO_CXL_CACHE", ""), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(got, Ok(PathBuf::from("/x/vfio-cxl")));
    }

    #[test]
    fn xdg_cache_home_is_used_before_home() {
        let got = resolve_with(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/x/cache/vfio-cxl")));
    }

    #[test]
    fn relative_xdg_cache_home_is_ignored() {
        let got = resolve_with(&[("XDG_CACHE_HOME", "rel/cache"), ("HOME", "/home/u")]);
        assert_eq!(got, Ok(PathBuf::from("/home/u/.cache/vfio-cxl")));
    }

    #[test]
    fn home_is_the_fallback() {
        let got = resolve_with(&[("HOME", "/root")]);
        assert_eq!(got, Ok(PathBuf::from("/root/.cache/vfio-cxl")));
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let err = resolve_with(&[]).unwrap_err();
        assert_eq!(err, CacheDirError::NoVariable);
        assert!(err.to_string().contains("VFIO_CXL_CACHE"), "{err}");
    }
}
