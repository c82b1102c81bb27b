//! `cargo xtask fetch`: download the pinned QEMU and sparse source packages
//! and Linux packages through apt into the cache, verify them against
//! pins.toml and unpack the sources.
//!
//! ```text
//! cargo xtask fetch [qemu|sparse|linux|all] [--pin NAME=VERSION]... [--setup-apt]
//! cargo xtask fetch --print-pins [--pin ...]
//! cargo xtask fetch --print-path WHAT [--pin ...]
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::apt::{self, AptFailure, MissingVersion};
use crate::cache::{Cache, STAMP_FILE};
use crate::error::{Error, Result};
use crate::pins::{self, DebArtifact, Effective, Overrides, Pins, SourceArtifact};

/// Download and verify the pinned sources
///
/// Downloads the artifacts pinned in pins.toml through apt into the cache
/// (see `cargo xtask cache-dir`), checks every file's sha256 and unpacks
/// the QEMU and sparse sources. Needs the apt sources of tools/setup-apt.
/// The environment variable VFIO_CXL_PINS takes the same NAME=VERSION
/// items as --pin, separated by spaces or commas.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// What to fetch (default: all)
    #[arg(value_enum)]
    pub target: Option<Target>,
    /// Fetch another Debian version of NAME (qemu, sparse, or one of the
    /// linux packages), UNVERIFIED; repeatable
    #[arg(long = "pin", value_name = "NAME=VERSION")]
    pub pins: Vec<String>,
    /// Run tools/setup-apt first (with sudo when not root)
    #[arg(long)]
    pub setup_apt: bool,
    /// Print the effective pins and exit
    #[arg(long, conflicts_with_all = ["target", "setup_apt", "print_path"])]
    pub print_pins: bool,
    /// Print a path and exit: cache, qemu-sources, qemu-src, sparse-src,
    /// linux-debs or linux-deb:<package>
    #[arg(long, value_name = "WHAT", conflicts_with_all = ["target", "setup_apt"])]
    pub print_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Qemu,
    Sparse,
    Linux,
    All,
}

impl Args {
    /// Fetch `target` as pinned.
    pub fn of(target: Target) -> Self {
        Self {
            target: Some(target),
            ..Self::default()
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let target = args.target.unwrap_or(Target::All);
    let env_pins = std::env::var(pins::PINS_ENV).ok();
    let overrides = Overrides::parse(&args.pins, env_pins.as_deref())?;
    let pins = Pins::load(&pins::default_path())?;
    let eff = pins.effective(&overrides)?;
    let cache = Cache::from_env()?;

    if args.print_pins {
        print!("{eff}");
        return Ok(());
    }
    if let Some(what) = &args.print_path {
        println!("{}", path_of(&cache, &eff, what)?.display());
        return Ok(());
    }
    if args.setup_apt {
        run_setup_apt()?;
    }

    let started = Instant::now();
    println!("cache: {}", cache.root().display());
    if matches!(target, Target::Qemu | Target::All) {
        fetch_source(&cache, &eff.qemu)?;
    }
    if matches!(target, Target::Sparse | Target::All) {
        fetch_source(&cache, &eff.sparse)?;
    }
    if matches!(target, Target::Linux | Target::All) {
        fetch_linux(&cache, &eff)?;
    }
    println!("fetch: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Paths scripts ask for (`--print-path`).
fn path_of(cache: &Cache, eff: &Effective, what: &str) -> Result<PathBuf> {
    let q = &eff.qemu;
    Ok(match what {
        "cache" => cache.root().to_path_buf(),
        "qemu-sources" => cache.source_package_dir(&q.package, &q.version),
        "qemu-src" => cache.unpacked_source_dir(&q.package, &q.upstream),
        "sparse-src" => cache.unpacked_source_dir(&eff.sparse.package, &eff.sparse.upstream),
        "linux-debs" => cache.linux_debs_dir(&eff.linux.upstream),
        other => match other.strip_prefix("linux-deb:") {
            Some(name) => {
                let deb = eff
                    .linux
                    .debs
                    .iter()
                    .find(|d| d.package == name)
                    .ok_or_else(|| {
                        Error::usage(format!("--print-path: {name} is not a pinned linux package"))
                    })?;
                cache.linux_debs_dir(&eff.linux.upstream).join(deb.file_name())
            }
            None => {
                return Err(Error::usage(format!(
                    "--print-path: unknown {other:?}; one of cache, qemu-sources, qemu-src, sparse-src, linux-debs, linux-deb:<package>"
                )))
            }
        },
    })
}

fn run_setup_apt() -> Result<()> {
    let script = pins::default_path()
        .with_file_name("tools")
        .join("setup-apt");
    let mut cmd = if crate::prereqs::is_root() {
        Command::new(&script)
    } else {
        println!("--setup-apt: running sudo {}", script.display());
        let mut c = Command::new("sudo");
        c.arg(&script);
        c
    };
    apt::run_checked(&mut cmd, &format!("{}", script.display()))
}

/// Fail unless apt knows the suite the artifact comes from.
fn require_suite(suite: &str) -> Result<()> {
    let policy = apt::policy()?;
    if apt::suite_configured(&policy, suite) {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "apt has no {suite} sources: the apt sources are not set up; run `{}` once \
             (or pass --setup-apt to let fetch run it)",
            crate::prereqs::as_this_user("tools/setup-apt")
        )))
    }
}

pub use crate::digest::sha256_file;

/// State of one cached file before downloading.
#[derive(Debug, PartialEq, Eq)]
enum Cached {
    /// Present and its sha256 matches the pin.
    Good,
    /// Present, nothing to check it against (overridden pin).
    Unverified,
    /// Absent, or was present with a wrong sha256 and has been removed.
    Needed,
}

fn check_cached(path: &Path, want: Option<&str>) -> Result<Cached> {
    if !path.is_file() {
        return Ok(Cached::Needed);
    }
    let Some(want) = want else {
        return Ok(Cached::Unverified);
    };
    let got = sha256_file(path)?;
    if got == want {
        return Ok(Cached::Good);
    }
    println!(
        "  {}: sha256 mismatch (have {got}, pinned {want}): removing and downloading again",
        path.display()
    );
    fs::remove_file(path).map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
    Ok(Cached::Needed)
}

fn verify_downloaded(path: &Path, want: &str) -> Result<()> {
    if !path.is_file() {
        return Err(Error::msg(format!(
            "apt reported success but {} is missing",
            path.display()
        )));
    }
    let got = sha256_file(path)?;
    if got == want {
        println!("  verified {got}  {}", file_name(path));
        Ok(())
    } else {
        Err(Error::msg(format!(
            "{}: sha256 still mismatches after a fresh download (got {got}, pins.toml has {want}): \
             the archive's file changed or pins.toml is wrong",
            path.display()
        )))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

fn unverified_warning(what: &str) {
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!! WARNING: {what} is an OVERRIDDEN pin and was NOT verified against pins.toml.");
    eprintln!("!! If this version is meant to stay, update pins.toml with the sha256 below.");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
}

/// File names and sha256 listed in a .dsc's `Checksums-Sha256:` field.
pub fn parse_dsc_sha256(dsc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in dsc.lines() {
        if line.starts_with("Checksums-Sha256:") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [sha, _size, name] = words[..] {
            out.push((name.to_string(), sha.to_string()));
        }
    }
    out
}

fn map_download_failure(
    stderr: &str,
    mut missing: MissingVersion,
    madison_packages: &[&str],
) -> Error {
    match apt::classify_failure(stderr) {
        AptFailure::NotOnMirror { urls } => {
            missing.not_on_mirror = urls;
            Error::msg(missing.to_string())
        }
        AptFailure::VersionNotListed | AptFailure::PackageUnknown => {
            if let Ok(m) = apt::madison(madison_packages) {
                missing.available = MissingVersion::new(
                    &missing.package,
                    &missing.version,
                    missing.source,
                    vec![],
                    &m,
                    missing.overridden,
                )
                .available;
            }
            Error::msg(missing.to_string())
        }
        AptFailure::Other(line) => Error::msg(format!(
            "apt-get failed for {}={}: {line}",
            missing.package, missing.version
        )),
    }
}

fn fetch_source(cache: &Cache, art: &SourceArtifact) -> Result<()> {
    let started = Instant::now();
    let dir = cache.source_package_dir(&art.package, &art.version);
    let dsc = dir.join(art.dsc_name());
    let origin = if art.overridden() {
        "OVERRIDDEN".to_string()
    } else {
        art.suite.clone()
    };
    println!(
        "{} {} (source, {origin}) -> {}",
        art.package,
        art.version,
        dir.display()
    );

    // What is there already?
    let mut complete = true;
    match &art.files {
        Some(files) => {
            for f in files {
                if check_cached(&dir.join(&f.name), Some(&f.sha256))? != Cached::Good {
                    complete = false;
                }
            }
        }
        None => {
            complete = match fs::read_to_string(&dsc) {
                Ok(text) => {
                    let listed = parse_dsc_sha256(&text);
                    !listed.is_empty() && listed.iter().all(|(name, _)| dir.join(name).is_file())
                }
                Err(_) => false,
            };
        }
    }

    let mut downloaded = false;
    if complete {
        println!("  files: up to date");
    } else {
        require_suite(&art.suite)?;
        let wanted: Vec<String> = match &art.files {
            Some(files) => files.iter().map(|f| f.name.clone()).collect(),
            None => vec![art.dsc_name()],
        };
        let madison = apt::madison(&[&art.package])?;
        let missing = MissingVersion::new(
            &art.package,
            &art.version,
            true,
            wanted,
            &madison,
            art.overridden(),
        );
        let listed = madison
            .iter()
            .any(|e| e.source && e.package == art.package && e.version == art.version);
        if !listed {
            return Err(Error::msg(missing.to_string()));
        }
        create_dir(&dir)?;
        let spec = format!("{}={}", art.package, art.version);
        let args = ["source", "--download-only", spec.as_str()].map(String::from);
        if let Err(stderr) = apt::download(&dir, &args)? {
            // Leave no empty version directory behind (fails if not empty).
            let _ = fs::remove_dir(&dir);
            return Err(map_download_failure(&stderr, missing, &[&art.package]));
        }
        downloaded = true;
        if let Some(files) = &art.files {
            for f in files {
                verify_downloaded(&dir.join(&f.name), &f.sha256)?;
            }
        }
    }

    if art.overridden() {
        let text = fs::read_to_string(&dsc)
            .map_err(|e| Error::io(format!("cannot read {}", dsc.display()), e))?;
        unverified_warning(&format!("{}={}", art.package, art.version));
        eprintln!("version = {:?}", art.version);
        eprintln!("upstream = {:?}", art.upstream);
        for name in std::iter::once(art.dsc_name())
            .chain(parse_dsc_sha256(&text).into_iter().map(|(n, _)| n))
        {
            let sha = sha256_file(&dir.join(&name))?;
            eprintln!(
                "[[{}.files]]\nname = {name:?}\nsha256 = {sha:?}",
                art.package
            );
        }
        eprintln!();
    }

    unpack_source(cache, art, &dsc, downloaded)?;
    println!(
        "  {} {}: ok ({:.1} s)",
        art.package,
        art.version,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `dpkg-source -x` into `<cache>/src/<package>-<upstream>`, unless the tree
/// there was unpacked from this very version (stamp file).
fn unpack_source(cache: &Cache, art: &SourceArtifact, dsc: &Path, force: bool) -> Result<()> {
    let target = cache.unpacked_source_dir(&art.package, &art.upstream);
    let stamp = target.join(STAMP_FILE);
    if !force {
        if let Ok(v) = fs::read_to_string(&stamp) {
            if v.trim() == art.version {
                println!("  unpacked tree: up to date ({})", target.display());
                return Ok(());
            }
        }
    }
    let parent = target
        .parent()
        .ok_or_else(|| Error::msg(format!("bad unpack path {}", target.display())))?;
    create_dir(parent)?;
    let partial = parent.join(format!(".{}.partial", file_name(&target)));
    for dir in [&partial, &target] {
        if dir.exists() {
            fs::remove_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
        }
    }
    println!("  $ dpkg-source -x {} {}", dsc.display(), target.display());
    let t = Instant::now();
    let mut cmd = Command::new("dpkg-source");
    cmd.arg("-x").arg(dsc).arg(&partial).env("LC_ALL", "C");
    // dpkg-source is chatty (one line per patch); keep its output off the
    // terminal unless it fails.
    let out = cmd
        .output()
        .map_err(|e| Error::io("cannot run dpkg-source (apt-get install dpkg-dev)", e))?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(Error::msg(format!(
            "dpkg-source -x {} failed ({})",
            dsc.display(),
            out.status
        )));
    }
    fs::write(partial.join(STAMP_FILE), format!("{}\n", art.version))
        .map_err(|e| Error::io("cannot write the unpack stamp", e))?;
    fs::rename(&partial, &target)
        .map_err(|e| Error::io(format!("cannot move the tree to {}", target.display()), e))?;
    println!(
        "  unpacked in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        target.display()
    );
    Ok(())
}

fn fetch_linux(cache: &Cache, eff: &Effective) -> Result<()> {
    let started = Instant::now();
    let l = &eff.linux;
    let dir = cache.linux_debs_dir(&l.upstream);
    create_dir(&dir)?;
    println!(
        "linux {} (abi {}, {}) -> {}",
        l.upstream,
        l.abi,
        l.suite,
        dir.display()
    );

    let mut needed: Vec<&DebArtifact> = Vec::new();
    for d in &l.debs {
        match check_cached(&dir.join(d.file_name()), d.sha256.as_deref())? {
            Cached::Good => println!("  up to date: {}", d.file_name()),
            Cached::Unverified => println!("  present (UNVERIFIED override): {}", d.file_name()),
            Cached::Needed => needed.push(d),
        }
    }

    if !needed.is_empty() {
        require_suite(&l.suite)?;
        let names: Vec<&str> = needed.iter().map(|d| d.package.as_str()).collect();
        let madison = apt::madison(&names)?;
        let mut errors = Vec::new();
        for d in &needed {
            let listed = madison
                .iter()
                .any(|e| !e.source && e.package == d.package && e.version == d.version);
            if !listed {
                errors.push(
                    MissingVersion::new(
                        &d.package,
                        &d.version,
                        false,
                        vec![d.file_name()],
                        &madison,
                        d.overridden(),
                    )
                    .to_string(),
                );
            }
        }
        if !errors.is_empty() {
            return Err(Error::msg(errors.join("\n")));
        }
        let mut args = vec!["download".to_string()];
        args.extend(
            needed
                .iter()
                .map(|d| format!("{}={}", d.package, d.version)),
        );
        if let Err(stderr) = apt::download(&dir, &args)? {
            let d = needed[0];
            let mut missing = MissingVersion::new(
                &d.package,
                &d.version,
                false,
                needed.iter().map(|d| d.file_name()).collect(),
                &madison,
                d.overridden(),
            );
            if let AptFailure::NotOnMirror { urls } = apt::classify_failure(&stderr) {
                // Name the package whose file 404'd.
                if let Some(hit) = needed.iter().find(|d| {
                    urls.iter()
                        .any(|u| u.replace("%2b", "+").contains(&format!("/{}_", d.package)))
                }) {
                    missing = MissingVersion::new(
                        &hit.package,
                        &hit.version,
                        false,
                        vec![hit.file_name()],
                        &madison,
                        hit.overridden(),
                    );
                }
            }
            return Err(map_download_failure(&stderr, missing, &names));
        }
        for d in &needed {
            let path = dir.join(d.file_name());
            match &d.sha256 {
                Some(want) => verify_downloaded(&path, want)?,
                None if !path.is_file() => {
                    return Err(Error::msg(format!(
                        "apt reported success but {} is missing",
                        path.display()
                    )));
                }
                None => {}
            }
        }
    }
    for d in l.debs.iter().filter(|d| d.overridden()) {
        let sha = sha256_file(&dir.join(d.file_name()))?;
        unverified_warning(&format!("{}={}", d.package, d.version));
        eprintln!(
            "[[linux.debs]]\npackage = {:?}\nversion = {:?}\narch = {:?}\nsha256 = {sha:?}\n",
            d.package, d.version, d.arch
        );
    }
    println!(
        "  linux {}: ok ({:.1} s)",
        l.upstream,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsc_checksums() {
        let dsc = "\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: qemu
Checksums-Sha1:
 1111111111111111111111111111111111111111 38669728 qemu_10.2.2+ds.orig.tar.xz
Checksums-Sha256:
 be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb 38669728 qemu_10.2.2+ds.orig.tar.xz
 ddf75aceab4f8f77374f3cb34fc97b41514895aeb293ce8b2ddd5e072bb0f5c0 127324 qemu_10.2.2+ds-1.debian.tar.xz
Files:
 00000000000000000000000000000000 38669728 qemu_10.2.2+ds.orig.tar.xz
";
        assert_eq!(
            parse_dsc_sha256(dsc),
            [
                (
                    "qemu_10.2.2+ds.orig.tar.xz".to_string(),
                    "be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb".to_string()
                ),
                (
                    "qemu_10.2.2+ds-1.debian.tar.xz".to_string(),
                    "ddf75aceab4f8f77374f3cb34fc97b41514895aeb293ce8b2ddd5e072bb0f5c0".to_string()
                ),
            ]
        );
    }

    #[test]
    fn cached_file_states() {
        let dir = std::env::temp_dir().join(format!("xtask-fetch-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.deb");
        fs::write(&path, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&path).unwrap(), abc);
        assert_eq!(check_cached(&path, Some(abc)).unwrap(), Cached::Good);
        assert_eq!(check_cached(&path, None).unwrap(), Cached::Unverified);
        // A mismatch removes the file so that it is downloaded again.
        assert_eq!(
            check_cached(&path, Some(&"0".repeat(64))).unwrap(),
            Cached::Needed
        );
        assert!(!path.exists());
        assert_eq!(check_cached(&path, Some(abc)).unwrap(), Cached::Needed);
        let err = verify_downloaded(&path, abc).unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        fs::write(&path, b"abd").unwrap();
        let err = verify_downloaded(&path, abc).unwrap_err();
        assert!(err.to_string().contains("still mismatches"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn print_paths() {
        let pins = Pins::load(&pins::default_path()).unwrap();
        let eff = pins.effective(&Overrides::default()).unwrap();
        let cache = Cache::new(PathBuf::from("/c"));
        assert_eq!(
            path_of(&cache, &eff, "qemu-src").unwrap(),
            PathBuf::from("/c/src/qemu-10.2.2")
        );
        assert_eq!(
            path_of(&cache, &eff, "qemu-sources").unwrap(),
            PathBuf::from("/c/sources/qemu/1_10.2.2+ds-1")
        );
        assert_eq!(
            path_of(&cache, &eff, "linux-deb:linux-source-7.3").unwrap(),
            PathBuf::from("/c/sources/linux/7.3.4/linux-source-7.3_7.3.4-1~bpo13+1_all.deb")
        );
        assert!(path_of(&cache, &eff, "linux-deb:nope")
            .unwrap_err()
            .is_usage());
        assert!(path_of(&cache, &eff, "kernel").unwrap_err().is_usage());
    }
}
