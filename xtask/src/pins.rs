//! Typed view of `pins.toml`, the one file that records pinned versions,
//! plus the `--pin NAME=VERSION` overrides and the resulting effective pins.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Environment variable with extra overrides, e.g.
/// `VFIO_CXL_PINS="qemu=1:10.2.2+ds-2 linux-source-7.3=7.3.4-2~bpo13+1"`
/// (separated by whitespace or commas). `--pin` on the command line wins.
pub const PINS_ENV: &str = "VFIO_CXL_PINS";

/// The schema version this xtask understands.
const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    pub schema: u32,
    pub qemu: SourcePin,
    /// The sparse checker the driver tier builds (bookworm's 0.6.4 is too
    /// old for Linux 7.3).
    pub sparse: SourcePin,
    pub linux: LinuxPins,
}

/// A Debian source package fetched with `apt-get source`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourcePin {
    pub source_package: String,
    pub version: String,
    pub upstream: String,
    pub suite: String,
    pub files: Vec<PinnedFile>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LinuxPins {
    pub upstream: String,
    /// Kernel ABI / release string (`uname -r`), e.g. `7.3.4+deb13-amd64`.
    pub abi: String,
    pub suite: String,
    pub debs: Vec<DebPin>,
}

/// A binary package fetched with `apt-get download`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DebPin {
    pub package: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
}

/// `pins.toml` at the top of the checkout this xtask was built from.
pub fn default_path() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("pins.toml")
}

impl Pins {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let pins: Pins = toml::from_str(text)
            .map_err(|e| Error::msg(format!("invalid pins file: {}", e.message())))?;
        pins.validate()?;
        Ok(pins)
    }

    fn validate(&self) -> Result<()> {
        if self.schema != SCHEMA {
            return Err(Error::msg(format!(
                "pins schema {} is not supported (this xtask reads schema {SCHEMA})",
                self.schema
            )));
        }
        validate_source("qemu", &self.qemu)?;
        validate_source("sparse", &self.sparse)?;
        if self.qemu.source_package == self.sparse.source_package {
            return Err(Error::msg("qemu and sparse name the same source package"));
        }

        let l = &self.linux;
        if !l.abi.starts_with(&l.upstream) {
            return Err(Error::msg(format!(
                "linux.abi {:?} does not start with linux.upstream {:?}",
                l.abi, l.upstream
            )));
        }
        let mut seen = BTreeSet::new();
        for d in &l.debs {
            if !seen.insert(d.package.as_str()) {
                return Err(Error::msg(format!("linux.debs lists {} twice", d.package)));
            }
            if [&self.qemu, &self.sparse]
                .iter()
                .any(|q| q.source_package == d.package)
            {
                return Err(Error::msg(format!(
                    "linux.debs: {} is also a pinned source package name",
                    d.package
                )));
            }
            check_version(&d.version).map_err(|e| Error::msg(format!("{}: {e}", d.package)))?;
            check_sha256(&d.sha256).map_err(|e| Error::msg(format!("{}: {e}", d.package)))?;
        }
        if l.debs.is_empty() {
            return Err(Error::msg("linux.debs is empty"));
        }
        Ok(())
    }

    /// Every name `--pin` accepts.
    pub fn pin_names(&self) -> Vec<&str> {
        [&self.qemu, &self.sparse]
            .into_iter()
            .map(|q| q.source_package.as_str())
            .chain(self.linux.debs.iter().map(|d| d.package.as_str()))
            .collect()
    }

    /// Apply overrides. An override naming the pinned version changes
    /// nothing (the artifact stays verified).
    pub fn effective(&self, overrides: &Overrides) -> Result<Effective> {
        let names = self.pin_names();
        for name in overrides.0.keys() {
            if !names.contains(&name.as_str()) {
                return Err(Error::usage(format!(
                    "--pin {name}=...: no such pin; pinnable names: {}",
                    names.join(", ")
                )));
            }
        }
        let qemu = source_artifact(&self.qemu, overrides);
        let sparse = source_artifact(&self.sparse, overrides);
        let debs = self
            .linux
            .debs
            .iter()
            .map(|d| match overrides.get(&d.package) {
                Some(v) if v != d.version => DebArtifact {
                    package: d.package.clone(),
                    version: v.to_string(),
                    arch: d.arch.clone(),
                    sha256: None,
                },
                _ => DebArtifact {
                    package: d.package.clone(),
                    version: d.version.clone(),
                    arch: d.arch.clone(),
                    sha256: Some(d.sha256.clone()),
                },
            })
            .collect();
        Ok(Effective {
            qemu,
            sparse,
            linux: LinuxArtifacts {
                upstream: self.linux.upstream.clone(),
                abi: self.linux.abi.clone(),
                suite: self.linux.suite.clone(),
                debs,
            },
        })
    }
}

/// Checks one `apt-get source` pin (`section` names it in errors).
fn validate_source(section: &str, q: &SourcePin) -> Result<()> {
    check_version(&q.version).map_err(|e| Error::msg(format!("{section}.version: {e}")))?;
    if upstream_of(&q.version) != q.upstream {
        return Err(Error::msg(format!(
            "{section}.upstream = {:?} does not match {section}.version {:?} (upstream part {:?})",
            q.upstream,
            q.version,
            upstream_of(&q.version)
        )));
    }
    if q.files.is_empty() {
        return Err(Error::msg(format!("{section}.files is empty")));
    }
    let prefix = format!("{}_", q.source_package);
    for f in &q.files {
        if !f.name.starts_with(&prefix) || f.name.contains('/') {
            return Err(Error::msg(format!(
                "{section}.files: {:?} is not a file name of source package {}",
                f.name, q.source_package
            )));
        }
        check_sha256(&f.sha256).map_err(|e| Error::msg(format!("{}: {e}", f.name)))?;
    }
    if !q
        .files
        .iter()
        .any(|f| f.name == dsc_name(&q.source_package, &q.version))
    {
        return Err(Error::msg(format!(
            "{section}.files lacks {}",
            dsc_name(&q.source_package, &q.version)
        )));
    }
    Ok(())
}

/// One source pin after overrides: an override naming another version
/// drops the pinned file list (the download is then unverified).
fn source_artifact(q: &SourcePin, overrides: &Overrides) -> SourceArtifact {
    match overrides.get(&q.source_package) {
        Some(v) if v != q.version => SourceArtifact {
            package: q.source_package.clone(),
            version: v.to_string(),
            upstream: upstream_of(v),
            suite: q.suite.clone(),
            files: None,
        },
        _ => SourceArtifact {
            package: q.source_package.clone(),
            version: q.version.clone(),
            upstream: q.upstream.clone(),
            suite: q.suite.clone(),
            files: Some(q.files.clone()),
        },
    }
}

/// Pins after overrides: what `fetch` actually gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub qemu: SourceArtifact,
    pub sparse: SourceArtifact,
    pub linux: LinuxArtifacts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArtifact {
    pub package: String,
    pub version: String,
    pub upstream: String,
    pub suite: String,
    /// `None` when overridden: the file list then comes from the .dsc and
    /// nothing is checked against pins.toml.
    pub files: Option<Vec<PinnedFile>>,
}

impl SourceArtifact {
    pub fn overridden(&self) -> bool {
        self.files.is_none()
    }

    pub fn dsc_name(&self) -> String {
        dsc_name(&self.package, &self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxArtifacts {
    pub upstream: String,
    pub abi: String,
    pub suite: String,
    pub debs: Vec<DebArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebArtifact {
    pub package: String,
    pub version: String,
    pub arch: String,
    /// `None` when overridden (unverified).
    pub sha256: Option<String>,
}

impl DebArtifact {
    pub fn overridden(&self) -> bool {
        self.sha256.is_none()
    }

    /// The name `apt-get download` saves the package under: the epoch colon
    /// is written `%3a`, as apt does.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = |overridden: bool| {
            if overridden {
                "  # OVERRIDDEN: unverified"
            } else {
                ""
            }
        };
        for q in [&self.qemu, &self.sparse] {
            writeln!(
                f,
                "{}={} (source, {}, upstream {}){}",
                q.package,
                q.version,
                q.suite,
                q.upstream,
                mark(q.overridden())
            )?;
            if let Some(files) = &q.files {
                for file in files {
                    writeln!(f, "  {}  {}", file.sha256, file.name)?;
                }
            }
        }
        writeln!(
            f,
            "linux {} (abi {}, {})",
            self.linux.upstream, self.linux.abi, self.linux.suite
        )?;
        for d in &self.linux.debs {
            writeln!(f, "{}={}{}", d.package, d.version, mark(d.overridden()))?;
            if let Some(sha) = &d.sha256 {
                writeln!(f, "  {sha}  {}", d.file_name())?;
            }
        }
        Ok(())
    }
}

/// Overrides by pin name, from `--pin` and `VFIO_CXL_PINS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(BTreeMap<String, String>);

impl Overrides {
    /// `env` is the value of `VFIO_CXL_PINS` (if any); `cli` are the `--pin`
    /// arguments in order. A name given twice on the command line is an
    /// error; the command line replaces the environment.
    pub fn parse(cli: &[String], env: Option<&str>) -> Result<Self> {
        let mut map = BTreeMap::new();
        if let Some(env) = env {
            for item in env
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
            {
                let (name, version) =
                    parse_pin(item).map_err(|e| Error::usage(format!("{PINS_ENV}: {e}")))?;
                map.insert(name, version);
            }
        }
        let mut from_cli = BTreeSet::new();
        for item in cli {
            let (name, version) =
                parse_pin(item).map_err(|e| Error::usage(format!("--pin: {e}")))?;
            if !from_cli.insert(name.clone()) {
                return Err(Error::usage(format!(
                    "--pin: {name} is given more than once"
                )));
            }
            map.insert(name, version);
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parse one `NAME=VERSION`.
pub fn parse_pin(item: &str) -> Result<(String, String), String> {
    let Some((name, version)) = item.split_once('=') else {
        return Err(format!(
            "{item:?} is not NAME=VERSION (example: qemu=1:10.2.2+ds-1)"
        ));
    };
    let (name, version) = (name.trim(), version.trim());
    if name.is_empty() {
        return Err(format!("{item:?}: the package name before '=' is empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        return Err(format!("{item:?}: {name:?} is not a Debian package name"));
    }
    check_version(version).map_err(|e| format!("{item:?}: {e}"))?;
    Ok((name.to_string(), version.to_string()))
}

/// Check the shape of a Debian version: `[epoch:]upstream[-revision]`, the
/// upstream part starting with a digit, only `A-Za-z0-9.+~-:` used.
pub fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("the version is empty".into());
    }
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".+~-:".contains(*c)))
    {
        return Err(format!("version {version:?} contains {c:?}"));
    }
    let rest = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("version {version:?}: the epoch must be a number"));
            }
            rest
        }
        None => version,
    };
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "version {version:?}: the upstream part must start with a digit"
        ));
    }
    if rest.ends_with('-') {
        return Err(format!("version {version:?}: empty Debian revision"));
    }
    Ok(())
}

/// The version without its epoch, as used in file names.
pub fn without_epoch(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, rest)| rest)
}

/// The upstream release in a Debian version: no epoch, no Debian revision,
/// no repack suffix (`1:10.2.2+ds-1` -> `10.2.2`, `7.3.4-1~bpo13+1` -> `7.3.4`).
pub fn upstream_of(version: &str) -> String {
    let v = without_epoch(version);
    let v = v.rsplit_once('-').map_or(v, |(up, _)| up);
    let end = v.find(['+', '~']).unwrap_or(v.len());
    v[..end].to_string()
}

/// `<package>_<version without epoch>.dsc`
pub fn dsc_name(package: &str, version: &str) -> String {
    format!("{package}_{}.dsc", without_epoch(version))
}

fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        Ok(())
    } else {
        Err(format!("sha256 {s:?} is not 64 lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_pins() -> Pins {
        Pins::load(&default_path()).expect("the checked-in pins.toml parses")
    }

    #[test]
    fn real_pins_file_has_the_documented_qemu() {
        let pins = real_pins();
        assert_eq!(pins.qemu.source_package, "qemu");
        assert_eq!(pins.qemu.version, "1:10.2.2+ds-1");
        assert_eq!(pins.qemu.upstream, "10.2.2");
        assert_eq!(pins.qemu.suite, "sid");
        let names: Vec<&str> = pins.qemu.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "qemu_10.2.2+ds-1.dsc",
                "qemu_10.2.2+ds.orig.tar.xz",
                "qemu_10.2.2+ds-1.debian.tar.xz"
            ]
        );
    }

    #[test]
    fn real_pins_file_has_the_documented_linux() {
        let pins = real_pins();
        assert_eq!(pins.linux.upstream, "7.3.4");
        assert_eq!(pins.linux.abi, "7.3.4+deb13-amd64");
        assert_eq!(pins.linux.suite, "trixie-backports");
        let debs: Vec<(&str, &str)> = pins
            .linux
            .debs
            .iter()
            .map(|d| (d.package.as_str(), d.version.as_str()))
            .collect();
        for name in [
            "linux-source-7.3",
            "linux-image-7.3.4+deb13-amd64",
            "linux-binary-7.3.4+deb13-amd64",
            "linux-base-7.3.4+deb13-amd64",
            "linux-modules-7.3.4+deb13-amd64",
            "linux-headers-7.3.4+deb13-amd64",
            "linux-headers-7.3.4+deb13-common",
            "linux-kbuild-7.3.4+deb13",
        ] {
            assert!(
                debs.contains(&(name, "7.3.4-1~bpo13+1")),
                "{name} missing from {debs:?}"
            );
        }
        // Every ABI-named package carries the pinned ABI.
        for d in &pins.linux.debs {
            if d.package.starts_with("linux-image-") || d.package.starts_with("linux-modules-") {
                assert!(d.package.ends_with(&pins.linux.abi), "{}", d.package);
            }
        }
    }

    #[test]
    fn real_pins_without_overrides_are_all_verified() {
        let eff = real_pins().effective(&Overrides::default()).unwrap();
        assert!(!eff.qemu.overridden());
        assert!(eff.linux.debs.iter().all(|d| !d.overridden()));
        let source = eff
            .linux
            .debs
            .iter()
            .find(|d| d.package == "linux-source-7.3")
            .unwrap();
        assert_eq!(
            source.file_name(),
            "linux-source-7.3_7.3.4-1~bpo13+1_all.deb"
        );
    }

    const MINIMAL: &str = r#"
schema = 1
[qemu]
source-package = "qemu"
version = "1:10.2.2+ds-1"
upstream = "10.2.2"
suite = "sid"
[[qemu.files]]
name = "qemu_10.2.2+ds-1.dsc"
sha256 = "f1684b3aa5ec500c3389d346c6501dee45041ea91656c6556d4da9023b7987dd"
[sparse]
source-package = "sparse"
version = "0.6.5~rc1-2"
upstream = "0.6.5"
suite = "sid"
[[sparse.files]]
name = "sparse_0.6.5~rc1-2.dsc"
sha256 = "3520edb07c89820367b7fd99212236aaaf7bf4034ce06fdb7718da0c7e61e076"
[linux]
upstream = "7.3.4"
abi = "7.3.4+deb13-amd64"
suite = "trixie-backports"
[[linux.debs]]
package = "linux-source-7.3"
version = "7.3.4-1~bpo13+1"
arch = "all"
sha256 = "703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3"
"#;

    #[test]
    fn real_pins_file_has_a_sparse_with_typeof_unqual() {
        let pins = real_pins();
        assert_eq!(pins.sparse.source_package, "sparse");
        assert_eq!(pins.sparse.upstream, "0.6.5");
        let eff = pins.effective(&Overrides::default()).unwrap();
        assert!(!eff.sparse.overridden());
    }

    #[test]
    fn overridden_sparse_is_unverified() {
        let pins = Pins::parse(MINIMAL).unwrap();
        let ov = Overrides::parse(&["sparse=0.6.5-1".to_string()], None).unwrap();
        let eff = pins.effective(&ov).unwrap();
        assert!(eff.sparse.overridden());
        assert_eq!(eff.sparse.upstream, "0.6.5");
        assert!(!eff.qemu.overridden());
    }

    #[test]
    fn minimal_file_parses() {
        let pins = Pins::parse(MINIMAL).unwrap();
        assert_eq!(pins.pin_names(), ["qemu", "sparse", "linux-source-7.3"]);
    }

    #[test]
    fn bad_sha256_is_rejected() {
        let text = MINIMAL.replace("703e369ddd", "703E369DDD");
        let err = Pins::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("linux-source-7.3") && err.contains("sha256"),
            "{err}"
        );
    }

    #[test]
    fn upstream_mismatch_is_rejected() {
        let text = MINIMAL.replace("upstream = \"10.2.2\"", "upstream = \"10.2.3\"");
        let err = Pins::parse(&text).unwrap_err().to_string();
        assert!(err.contains("qemu.upstream"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = MINIMAL.replace("suite = \"sid\"", "suite = \"sid\"\nsuit = \"x\"");
        let err = Pins::parse(&text).unwrap_err().to_string();
        assert!(err.contains("suit"), "{err}");
    }

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream_of("1:10.2.2+ds-1"), "10.2.2");
        assert_eq!(upstream_of("7.3.4-1~bpo13+1"), "7.3.4");
        assert_eq!(upstream_of("1:10.0.13+ds-0+deb13u1"), "10.0.13");
        assert_eq!(upstream_of("1:99.0+ds-1"), "99.0");
        assert_eq!(upstream_of("2.0"), "2.0");
        assert_eq!(dsc_name("qemu", "1:10.2.2+ds-1"), "qemu_10.2.2+ds-1.dsc");
    }

    #[test]
    fn pin_syntax_errors_are_clear() {
        let err = parse_pin("qemu").unwrap_err();
        assert!(err.contains("NAME=VERSION"), "{err}");
        let err = parse_pin("=1.0").unwrap_err();
        assert!(err.contains("name before '=' is empty"), "{err}");
        let err = parse_pin("qemu=").unwrap_err();
        assert!(err.contains("version is empty"), "{err}");
        let err = parse_pin("qemu=latest").unwrap_err();
        assert!(err.contains("must start with a digit"), "{err}");
        let err = parse_pin("qemu=1:10 2").unwrap_err();
        assert!(err.contains("contains ' '"), "{err}");
        let err = parse_pin("qemu=x:10.2").unwrap_err();
        assert!(err.contains("epoch"), "{err}");
        let err = parse_pin("QEMU=1.0").unwrap_err();
        assert!(err.contains("not a Debian package name"), "{err}");
        assert_eq!(
            parse_pin("qemu=1:99.0+ds-1"),
            Ok(("qemu".to_string(), "1:99.0+ds-1".to_string()))
        );
    }

    #[test]
    fn overrides_from_cli_and_env() {
        let cli = vec!["qemu=1:10.2.2+ds-2".to_string()];
        let ov =
            Overrides::parse(&cli, Some("qemu=1:9.0-1, linux-source-7.3=7.3.4-2~bpo13+1")).unwrap();
        assert_eq!(ov.get("qemu"), Some("1:10.2.2+ds-2"), "cli wins over env");
        assert_eq!(ov.get("linux-source-7.3"), Some("7.3.4-2~bpo13+1"));

        let err = Overrides::parse(&["qemu".to_string()], None).unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().starts_with("--pin: "), "{err}");

        let err = Overrides::parse(&[], Some("qemu=")).unwrap_err();
        assert!(err.to_string().starts_with("VFIO_CXL_PINS: "), "{err}");

        let twice = vec!["qemu=1.0".to_string(), "qemu=2.0".to_string()];
        let err = Overrides::parse(&twice, None).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn effective_pins_mark_overrides_unverified() {
        let pins = Pins::parse(MINIMAL).unwrap();
        let ov = Overrides::parse(&["qemu=1:99.0+ds-1".to_string()], None).unwrap();
        let eff = pins.effective(&ov).unwrap();
        assert!(eff.qemu.overridden());
        assert_eq!(eff.qemu.upstream, "99.0");
        assert_eq!(eff.qemu.dsc_name(), "qemu_99.0+ds-1.dsc");
        assert!(!eff.linux.debs[0].overridden());
        let shown = eff.to_string();
        assert!(
            shown.contains("qemu=1:99.0+ds-1 (source, sid, upstream 99.0)  # OVERRIDDEN"),
            "{shown}"
        );

        // Naming the pinned version is not an override.
        let same = Overrides::parse(&["qemu=1:10.2.2+ds-1".to_string()], None).unwrap();
        assert!(!pins.effective(&same).unwrap().qemu.overridden());
    }

    #[test]
    fn unknown_pin_name_lists_the_valid_ones() {
        let pins = Pins::parse(MINIMAL).unwrap();
        let ov = Overrides::parse(&["linux=7.3.5-1".to_string()], None).unwrap();
        let err = pins.effective(&ov).unwrap_err();
        assert!(err.is_usage());
        assert!(
            err.to_string()
                .contains("pinnable names: qemu, sparse, linux-source-7.3"),
            "{err}"
        );
    }

    #[test]
    fn deb_file_name_encodes_the_epoch_like_apt() {
        let d = DebArtifact {
            package: "qemu-system-x86".into(),
            version: "1:10.0.2+ds-1~bpo12+1".into(),
            arch: "amd64".into(),
            sha256: None,
        };
        assert_eq!(
            d.file_name(),
            "qemu-system-x86_1%3a10.0.2+ds-1~bpo12+1_amd64.deb"
        );
    }
}
