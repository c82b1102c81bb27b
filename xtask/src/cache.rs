//! Where downloaded and unpacked artifacts live.
//!
//! The directory itself comes from crates/vfio-cxl-cache, the one rule the
//! guest harness also follows (`$VFIO_CXL_CACHE`, `$XDG_CACHE_HOME/vfio-cxl`,
//! `~/.cache/vfio-cxl`).
//!
//! Layout (see docs/sources.md):
//!
//! ```text
//! <cache>/sources/qemu/<debian version, ':' -> '_'>/   .dsc, .orig.tar.xz, .debian.tar.xz
//! <cache>/sources/linux/<upstream version>/            the pinned .deb files
//! <cache>/src/qemu-<upstream version>/                 `dpkg-source -x` of the QEMU package
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the file written into an unpacked source tree that records which
/// Debian version it was unpacked from.
pub const STAMP_FILE: &str = ".vfio-cxl-version";

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
        vfio_cxl_cache::from_env()
            .map(Self::new)
            .map_err(|e| Error::msg(e.to_string()))
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
