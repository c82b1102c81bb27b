//! QEMU: the generated patch series and the build of `qemu-system-x86_64`.
//!
//! ```text
//! cargo xtask gen-qemu-patches     qemu-device/ -> patches/qemu/ (git format-patch)
//! cargo xtask check-qemu-patches   fail if patches/qemu/ is not what gen would write
//! cargo xtask build-qemu [...]     pinned source + series -> build/qemu-system-x86_64
//! cargo xtask qemu-path [...]      print the built binary (or its runtime flags)
//! ```
//!
//! The series is generated from `qemu-device/qemu/` (files at their QEMU
//! paths) and `qemu-device/series.toml` (which file goes into which patch).
//! The build works in `<cache>/qemu/<debian version>/`: `src/` is a git
//! repository (the pristine tree committed as tag `vfio-cxl-base`, the
//! series applied with `git am`), `build/` the meson build directory, and a
//! `state` file records what `src/` and `build/` were made from. A changed
//! series is re-applied in the same tree, and every file whose content did
//! not change gets its old mtime back, so ninja rebuilds only what changed.
//! See docs/qemu-build.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Instant, SystemTime};

use serde::Deserialize;

use crate::cache::{self, Cache, STAMP_FILE};
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins, SourceArtifact};

/// meson installed (with pip) into a venv under the cache; QEMU 10.2 needs
/// >= 1.9.0 for Rust and Debian bookworm ships 1.0.1.
pub const MESON_VERSION: &str = "1.9.2";

/// The one binary built (target x86_64-softmmu).
pub const BINARY: &str = "qemu-system-x86_64";

/// Tag of the pristine tree's commit in the work repository.
const BASE_TAG: &str = "vfio-cxl-base";

/// Debian packages the build needs (checked with dpkg-query).
pub const BUILD_PACKAGES: &[&str] = &[
    "ninja-build",
    "python3-venv",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "zlib1g-dev",
    "flex",
    "bison",
    "pkgconf",
    "libslirp-dev",
    "libfdt-dev",
    "bindgen",
    "clang",
    "libclang-dev",
];

/// Debian packages with the firmware the built binary loads at run time
/// (Debian's +ds tarball has no pc-bios blobs).
pub const RUNTIME_PACKAGES: &[&str] = &["seabios", "ipxe-qemu", "qemu-system-data"];

/// `-L` directories for the packages above: SeaBIOS and VGA BIOS, QEMU's
/// option ROMs (linuxboot_dma.bin, kvmvapic.bin, ...) and keymaps, iPXE
/// NIC ROMs (efi-e1000e.rom for q35's default NIC).
pub const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/seabios",
    "/usr/share/qemu",
    "/usr/lib/ipxe/qemu",
];

/// Arguments to QEMU's configure besides `--python`.
pub const CONFIGURE_ARGS: &[&str] = &[
    "--target-list=x86_64-softmmu",
    "--enable-rust",
    "--disable-docs",
    "--disable-install-blobs",
    // meson must never try the network (no DNS here): crates are seeded.
    "--disable-download",
    // git trees default to -Werror; a newer rustc/gcc than QEMU's CI must
    // not break the build on a new warning.
    "--disable-werror",
];

const BUILD_USAGE: &str = "\
usage: cargo xtask build-qemu [--install-deps] [--fresh] [-j N]

Builds qemu-system-x86_64 (x86_64-softmmu, --enable-rust) from the pinned
QEMU source (`cargo xtask fetch qemu` first) with the patch series:
regenerates patches/qemu/ from qemu-device/, applies it with git am in
<cache>/qemu/<version>/src, seeds the Rust crates from crates.io through
cargo, configures and runs ninja. A rerun only re-applies what changed.

options:
  --install-deps   apt-get install the missing Debian build packages
                   (with sudo when not root); without it, missing ones are
                   an error that prints the apt-get line
  --fresh          throw the work tree and build directory away first
  -j N             ninja jobs (default: number of CPUs)
";

const PATH_USAGE: &str = "\
usage: cargo xtask qemu-path [--firmware-args]

Prints the path of the built qemu-system-x86_64 (cargo xtask build-qemu).
--firmware-args prints the -L options it needs at run time instead.
";

// ---------------------------------------------------------------------------
// Commands

pub fn run_gen(args: &[String]) -> Result<()> {
    no_args("gen-qemu-patches", args)?;
    let ctx = Context::load()?;
    let changed = ctx.regenerate_series()?;
    let dir = ctx.patches_dir();
    if changed {
        println!("patches/qemu: regenerated ({})", dir.display());
    } else {
        println!("patches/qemu: up to date");
    }
    Ok(())
}

pub fn run_check(args: &[String]) -> Result<()> {
    no_args("check-qemu-patches", args)?;
    let ctx = Context::load()?;
    let tmp = TempDir::new("check")?;
    let fresh = tmp.path().join("qemu");
    ctx.generate_series(&fresh)?;
    let diffs = compare_dirs(&fresh, &ctx.patches_dir())?;
    if diffs.is_empty() {
        println!("patches/qemu: matches qemu-device/ (series hash {})", {
            let h = series_hash(&ctx.patches_dir())?;
            short(&h).to_string()
        });
        return Ok(());
    }
    let out = Command::new("diff")
        .arg("-ruN")
        .arg(ctx.patches_dir())
        .arg(&fresh)
        .output();
    if let Ok(out) = out {
        let _ = std::io::stdout().write_all(&out.stdout);
    }
    Err(Error::msg(format!(
        "patches/qemu/ is stale ({}): run `cargo xtask gen-qemu-patches` and commit the result",
        diffs.join(", ")
    )))
}

pub fn run_path(args: &[String]) -> Result<()> {
    let mut firmware = false;
    for arg in args {
        match arg.as_str() {
            "--firmware-args" => firmware = true,
            "-h" | "--help" => {
                print!("{PATH_USAGE}");
                return Ok(());
            }
            other => {
                return Err(Error::usage(format!(
                    "qemu-path: unexpected argument {other:?}\n{}",
                    PATH_USAGE.trim_end()
                )))
            }
        }
    }
    if firmware {
        println!("{}", firmware_args().join(" "));
        return Ok(());
    }
    let ctx = Context::load()?;
    let layout = ctx.layout();
    let binary = layout.binary();
    if !binary.is_file() {
        return Err(Error::msg(format!(
            "{} is not built yet ({} missing): run `cargo xtask build-qemu`",
            BINARY,
            binary.display()
        )));
    }
    let state = State::load(&layout.state_file());
    let current = series_hash(&ctx.patches_dir())?;
    if state.get("series") != Some(current.as_str()) {
        eprintln!(
            "xtask: warning: {} was built from another patch series than patches/qemu/ holds now; \
             run `cargo xtask build-qemu`",
            BINARY
        );
    }
    println!("{}", binary.display());
    Ok(())
}

/// The `-L` options for the Debian firmware packages.
pub fn firmware_args() -> Vec<String> {
    FIRMWARE_DIRS
        .iter()
        .flat_map(|d| ["-L".to_string(), d.to_string()])
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BuildArgs {
    install_deps: bool,
    fresh: bool,
    jobs: Option<usize>,
    help: bool,
}

fn parse_build_args(args: &[String]) -> Result<BuildArgs> {
    let mut out = BuildArgs {
        install_deps: false,
        fresh: false,
        jobs: None,
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--install-deps" => out.install_deps = true,
            "--fresh" => out.fresh = true,
            "-h" | "--help" => out.help = true,
            "-j" | "--jobs" => {
                let v = it
                    .next()
                    .ok_or_else(|| Error::usage(format!("{arg} needs a number")))?;
                out.jobs = Some(parse_jobs(v)?);
            }
            other => {
                if let Some(v) = other.strip_prefix("-j").filter(|v| !v.is_empty()) {
                    out.jobs = Some(parse_jobs(v)?);
                } else {
                    return Err(Error::usage(format!(
                        "build-qemu: unexpected argument {other:?}\n{}",
                        BUILD_USAGE.trim_end()
                    )));
                }
            }
        }
    }
    Ok(out)
}

fn parse_jobs(v: &str) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::usage(format!(
            "-j: {v:?} is not a positive number of jobs"
        ))),
    }
}

pub fn run_build(args: &[String]) -> Result<()> {
    let args = parse_build_args(args)?;
    if args.help {
        print!("{BUILD_USAGE}");
        return Ok(());
    }
    let started = Instant::now();
    let ctx = Context::load()?;
    let layout = ctx.layout();
    println!("build-qemu: work directory {}", layout.root.display());
    let bad = regex_unsafe_chars(&layout.root);
    if !bad.is_empty() {
        return Err(Error::msg(format!(
            "the work directory {} contains {:?}: QEMU hands its source path to bindgen as a \
             regex, so the Rust bindings would come out empty; choose another cache directory \
             (VFIO_CXL_CACHE)",
            layout.root.display(),
            bad.iter().collect::<String>()
        )));
    }

    timed("build dependencies", || check_deps(args.install_deps))?;

    let changed = timed("patch series", || ctx.regenerate_series())?;
    if changed {
        println!("    patches/qemu/ regenerated from qemu-device/");
    }
    let series = series_hash(&ctx.patches_dir())?;
    let patches = series_files(&ctx.patches_dir())?;
    println!("    series {} ({} patches)", short(&series), patches.len());

    if args.fresh && layout.root.exists() {
        println!("    --fresh: removing {}", layout.root.display());
        remove_dir(&layout.root)?;
    }
    fs::create_dir_all(&layout.root)
        .map_err(|e| Error::io(format!("cannot create {}", layout.root.display()), e))?;
    let mut state = State::load(&layout.state_file());
    let base_id = ctx.base_identity();

    // 1. The source tree: pristine base + series.
    if state.get("base") != Some(base_id.as_str()) || !layout.src.join(".git").is_dir() {
        timed("work tree (copy pristine source, commit base)", || {
            create_work_tree(&ctx, &layout)
        })?;
        state = State::default();
        state.set("base", &base_id);
        state.save(&layout.state_file())?;
        if layout.build.exists() {
            remove_dir(&layout.build)?;
        }
    }
    if state.get("series") != Some(series.as_str()) {
        timed("apply patch series (git am)", || {
            apply_series(&layout.src, &patches)
        })?;
        state.set("series", &series);
        state.save(&layout.state_file())?;
    } else {
        println!("==> apply patch series: up to date");
    }
    sync_packagefiles(&layout.src)?;

    // 2. Crates the wraps name, from crates.io through cargo.
    timed("seed Rust crates into subprojects/packagecache", || {
        seed_crates(&layout)
    })?;

    // 3. meson venv, configure.
    let python = timed("meson venv", || ensure_meson(ctx.cache.root()))?;
    let configure_id = configure_identity(&python);
    if state.get("configure") != Some(configure_id.as_str())
        || !layout.build.join("build.ninja").is_file()
    {
        timed("configure", || configure(&layout, &python))?;
        state.set("configure", &configure_id);
        state.save(&layout.state_file())?;
    } else {
        println!("==> configure: up to date");
    }

    // 4. ninja.
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    timed(&format!("ninja -j{jobs} {BINARY}"), || {
        run_status(
            Command::new("ninja")
                .arg("-C")
                .arg(&layout.build)
                .arg(format!("-j{jobs}"))
                .arg(BINARY),
            "ninja",
        )
    })?;
    println!(
        "build-qemu: done in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        layout.binary().display()
    );
    println!("run it with: {} {}", BINARY, firmware_args().join(" "));
    Ok(())
}

fn no_args(command: &str, args: &[String]) -> Result<()> {
    match args.first() {
        None => Ok(()),
        Some(a) if a == "-h" || a == "--help" => Err(Error::usage(format!(
            "usage: cargo xtask {command} (no arguments; see docs/qemu-build.md)"
        ))),
        Some(a) => Err(Error::usage(format!(
            "{command} takes no arguments (got {a:?})"
        ))),
    }
}

/// Runs a step with a header and its duration.
fn timed<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let start = Instant::now();
    let out = f().map_err(|e| Error::msg(format!("{name}: {e}")))?;
    println!("<== {name}: ok ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(out)
}

// ---------------------------------------------------------------------------
// Where things are

/// Everything the commands need to know about the checkout and the cache.
#[derive(Debug)]
struct Context {
    repo: PathBuf,
    cache: Cache,
    qemu: SourceArtifact,
}

impl Context {
    fn load() -> Result<Self> {
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

    fn device_dir(&self) -> PathBuf {
        self.repo.join("qemu-device")
    }

    fn patches_dir(&self) -> PathBuf {
        self.repo.join("patches").join("qemu")
    }

    /// The unpacked pinned source (`cargo xtask fetch qemu`), checked.
    fn pristine(&self) -> Result<PathBuf> {
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
    fn base_identity(&self) -> String {
        let orig = self
            .qemu
            .files
            .as_ref()
            .and_then(|f| f.iter().find(|f| f.name.contains(".orig.tar")))
            .map(|f| f.sha256.clone())
            .unwrap_or_else(|| "unverified".to_string());
        format!("{} {}", self.qemu.version, orig)
    }

    fn layout(&self) -> Layout {
        Layout::new(
            self.cache
                .root()
                .join("qemu")
                .join(work_dir_name(&self.qemu.version)),
        )
    }

    fn load_series_config(&self) -> Result<SeriesConfig> {
        let path = self.device_dir().join("series.toml");
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        SeriesConfig::parse(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    }

    /// Writes the series into `out` (created; must not exist).
    fn generate_series(&self, out: &Path) -> Result<()> {
        let config = self.load_series_config()?;
        let root = self.device_dir().join("qemu");
        let files = list_files(&root)?;
        let mut sources: BTreeMap<String, PathBuf> =
            files.iter().map(|f| (f.clone(), root.join(f))).collect();
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
                    if sources.insert(target.clone(), from.join(&f)).is_some() {
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
        let pristine = self.pristine()?;
        generate(&config, &plan, &sources, &pristine, out)
    }

    /// Regenerates patches/qemu/; true when its content changed.
    fn regenerate_series(&self) -> Result<bool> {
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
fn work_dir_name(version: &str) -> String {
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
fn regex_unsafe_chars(path: &Path) -> Vec<char> {
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
struct Layout {
    root: PathBuf,
    src: PathBuf,
    build: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Self {
        Self {
            src: root.join("src"),
            build: root.join("build"),
            root,
        }
    }
    fn binary(&self) -> PathBuf {
        self.build.join(BINARY)
    }
    fn state_file(&self) -> PathBuf {
        self.root.join("state")
    }
    fn seed_dir(&self) -> PathBuf {
        self.root.join("crate-seed")
    }
}

/// `key = value` lines recording what the work tree was made from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State(BTreeMap<String, String>);

impl State {
    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }
    fn render(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
    fn load(path: &Path) -> Self {
        Self::parse(&fs::read_to_string(path).unwrap_or_default())
    }
    fn save(&self, path: &Path) -> Result<()> {
        write(path, self.render().as_bytes())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_string(), value.to_string());
    }
}

// ---------------------------------------------------------------------------
// series.toml

const SERIES_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesConfig {
    schema: u32,
    author: Author,
    #[serde(rename = "patch", default)]
    patches: Vec<PatchSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Author {
    name: String,
    email: String,
    /// Any date git accepts, e.g. `2026-11-24 00:00:00 +0000`.
    date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchSpec {
    subject: String,
    #[serde(default)]
    body: String,
    paths: Vec<String>,
    /// Directories of the checkout copied into this patch (see [`Include`]).
    #[serde(rename = "include", default)]
    includes: Vec<Include>,
}

/// `[[patch.include]]`: every file under `from` (a directory of the
/// vfio-cxl checkout, ending in `/`) becomes the file under `to` (a QEMU
/// path, ending in `/`) in this patch. The series stays self-contained,
/// and check-qemu-patches fails when the copy is stale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Include {
    from: String,
    to: String,
}

impl SeriesConfig {
    fn parse(text: &str) -> Result<Self> {
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
    fn assign(&self, files: &[String]) -> Result<Vec<(PatchSpec, Vec<String>)>> {
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
fn path_matches(pat: &str, file: &str) -> bool {
    if pat.ends_with('/') {
        file.starts_with(pat)
    } else {
        file == pat
    }
}

// ---------------------------------------------------------------------------
// Generating the series

/// A git command isolated from the user's and the system's configuration,
/// with a fixed identity, so results do not depend on the machine.
fn git(dir: &Path, author: Option<&Author>) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "gc.auto=0",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "user.name=vfio-cxl xtask",
            "-c",
            "user.email=xtask@localhost.invalid",
        ]);
    let (name, email, date) = match author {
        Some(a) => (a.name.as_str(), a.email.as_str(), a.date.as_str()),
        None => (
            "vfio-cxl xtask",
            "xtask@localhost.invalid",
            "2000-01-01 00:00:00 +0000",
        ),
    };
    for who in ["AUTHOR", "COMMITTER"] {
        c.env(format!("GIT_{who}_NAME"), name)
            .env(format!("GIT_{who}_EMAIL"), email)
            .env(format!("GIT_{who}_DATE"), date);
    }
    c
}

/// Runs a command and returns its stdout; a failure names the command and
/// carries its stderr.
fn run_output(cmd: &mut Command, what: &str) -> Result<String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with its output shown.
fn run_status(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::msg(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("{what} failed ({status})")))
    }
}

/// Builds the series in a scratch git repository that holds only the files
/// the series touches (with their pristine content as the base commit), one
/// commit per patch, then `git format-patch`. Blob ids and diffs are those of
/// the full tree, and `--zero-commit` hides the (different) commit ids, so
/// the patches apply to the full pristine tree.
fn generate(
    config: &SeriesConfig,
    plan: &[(PatchSpec, Vec<String>)],
    sources: &BTreeMap<String, PathBuf>,
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
            let from = sources
                .get(f)
                .ok_or_else(|| Error::msg(format!("no source for {f}")))?;
            copy_file(from, &repo.join(f))?;
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

fn commit_message(spec: &PatchSpec) -> String {
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

fn commit_with_message(repo: &Path, author: Option<&Author>, message: &str) -> Result<()> {
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
fn series_files(dir: &Path) -> Result<Vec<PathBuf>> {
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
fn parse_series(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap_or(l).to_string())
        .collect()
}

/// sha256 of the series: the `series` file, then each patch's name and
/// bytes. Identifies what `src/` holds on top of the pristine tree.
fn series_hash(dir: &Path) -> Result<String> {
    let series = read(&dir.join("series"))?;
    let mut patches = Vec::new();
    for name in parse_series(&String::from_utf8_lossy(&series)) {
        let bytes = read(&dir.join(&name))?;
        patches.push((name, bytes));
    }
    sha256_bytes(&series_hash_input(&series, &patches))
}

fn series_hash_input(series: &[u8], patches: &[(String, Vec<u8>)]) -> Vec<u8> {
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

fn sha256_bytes(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::msg(format!("cannot run sha256sum: {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("sha256sum", e))?;
    writer
        .join()
        .map_err(|_| Error::msg("sha256sum writer panicked"))?
        .map_err(|e| Error::io("cannot feed sha256sum", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .filter(|d| d.len() == 64)
        .map(str::to_string)
        .ok_or_else(|| Error::msg("unexpected sha256sum output"))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

// ---------------------------------------------------------------------------
// The work tree

fn create_work_tree(ctx: &Context, layout: &Layout) -> Result<()> {
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
fn apply_series(src: &Path, patches: &[PathBuf]) -> Result<()> {
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
fn touched_files(src: &Path) -> Result<BTreeSet<String>> {
    let out = run_output(
        git(src, None).args(["diff", "--name-only", "--no-renames", BASE_TAG, "HEAD"]),
        "git diff",
    )?;
    Ok(out.lines().map(str::to_string).collect())
}

#[derive(Debug)]
struct Snap {
    bytes: Vec<u8>,
    mtime: SystemTime,
}

/// Content and mtime of the given files that exist.
fn snapshot_files(src: &Path, files: &BTreeSet<String>) -> Result<BTreeMap<String, Snap>> {
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

fn set_mtime(path: &Path, mtime: SystemTime) -> Result<()> {
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
fn sync_packagefiles(src: &Path) -> Result<()> {
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

// ---------------------------------------------------------------------------
// .wrap files and crate seeding

/// The `[wrap-file]` section of a meson .wrap file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wrap {
    /// File name without `.wrap`.
    name: String,
    directory: String,
    source_url: Option<String>,
    source_filename: Option<String>,
    source_hash: Option<String>,
    patch_directory: Option<String>,
}

impl Wrap {
    /// `(crate, version)` when the source is a crates.io download.
    fn crate_id(&self) -> Option<(String, String)> {
        let rest = self
            .source_url
            .as_deref()?
            .strip_prefix("https://crates.io/api/v1/crates/")?;
        let mut parts = rest.split('/');
        let (name, version, download) = (parts.next()?, parts.next()?, parts.next()?);
        (download == "download"
            && parts.next().is_none()
            && !name.is_empty()
            && !version.is_empty())
        .then(|| (name.to_string(), version.to_string()))
    }
}

/// Parses a .wrap file; `None` when it has no `[wrap-file]` section (a git
/// wrap, for instance).
fn parse_wrap(name: &str, text: &str) -> Result<Option<Wrap>> {
    let mut section = String::new();
    let mut keys = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| {
            Error::msg(format!(
                "{name}.wrap:{}: expected key = value, got {line:?}",
                n + 1
            ))
        })?;
        if section == "wrap-file" {
            keys.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if section.is_empty() && keys.is_empty() {
        return Ok(None);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let directory = keys
        .get("directory")
        .cloned()
        .unwrap_or_else(|| name.to_string());
    Ok(Some(Wrap {
        name: name.to_string(),
        directory,
        source_url: keys.get("source_url").cloned(),
        source_filename: keys.get("source_filename").cloned(),
        source_hash: keys.get("source_hash").map(|h| h.to_ascii_lowercase()),
        patch_directory: keys.get("patch_directory").cloned(),
    }))
}

fn read_wraps(subprojects: &Path) -> Result<Vec<Wrap>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(subprojects)
        .map_err(|e| Error::io(format!("cannot list {}", subprojects.display()), e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wrap"))
        .collect();
    names.sort();
    for file in names {
        let name = file.trim_end_matches(".wrap");
        let text = fs::read_to_string(subprojects.join(&file))
            .map_err(|e| Error::io(format!("cannot read {file}"), e))?;
        if let Some(w) = parse_wrap(name, &text)? {
            out.push(w);
        }
    }
    Ok(out)
}

/// A throwaway manifest that depends on exactly the given crate versions
/// (renamed, so two versions of one crate can coexist), for `cargo fetch`.
fn seed_manifest(crates: &[(String, String)]) -> String {
    let mut m = String::from(
        "# Generated by cargo xtask build-qemu: makes `cargo fetch` download the\n\
         # exact crates QEMU's subprojects/*.wrap files name. Not built.\n\
         [package]\nname = \"vfio-cxl-qemu-crate-seed\"\nversion = \"0.0.0\"\n\
         edition = \"2021\"\npublish = false\n\n[lib]\npath = \"lib.rs\"\n\n\
         [workspace]\n\n[dependencies]\n",
    );
    for (i, (name, version)) in crates.iter().enumerate() {
        m.push_str(&format!(
            "c{i} = {{ package = \"{name}\", version = \"={version}\" }}\n"
        ));
    }
    m
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cargo"))
        .ok_or_else(|| Error::msg("neither CARGO_HOME nor HOME is set"))
}

/// Copies the crate tarball of every crates.io wrap into
/// `subprojects/packagecache/<source_filename>`, checking `source_hash`.
/// Crates missing from cargo's cache are downloaded with `cargo fetch`.
fn seed_crates(layout: &Layout) -> Result<()> {
    let subprojects = layout.src.join("subprojects");
    let cache_dir = subprojects.join("packagecache");
    let wraps: Vec<Wrap> = read_wraps(&subprojects)?
        .into_iter()
        .filter(|w| w.crate_id().is_some())
        .collect();
    let mut todo = Vec::new();
    for w in &wraps {
        let (file, hash) = wrap_download(w)?;
        let dest = cache_dir.join(file);
        if dest.is_file() && crate::fetch::sha256_file(&dest)? == hash {
            continue;
        }
        todo.push(w);
    }
    if todo.is_empty() {
        println!("    {} crates already seeded", wraps.len());
        return Ok(());
    }
    let registry = cargo_home()?.join("registry").join("cache");
    let mut missing: Vec<(String, String)> = todo
        .iter()
        .filter_map(|w| w.crate_id())
        .filter(|(n, v)| find_crate(&registry, n, v).is_none())
        .collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        println!("    cargo fetch of {} crates from crates.io", missing.len());
        let seed = layout.seed_dir();
        fs::create_dir_all(&seed)
            .map_err(|e| Error::io(format!("cannot create {}", seed.display()), e))?;
        write(&seed.join("Cargo.toml"), seed_manifest(&missing).as_bytes())?;
        write(&seed.join("lib.rs"), b"")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run_status(
            Command::new(cargo)
                .arg("fetch")
                .arg("--manifest-path")
                .arg(seed.join("Cargo.toml")),
            "cargo fetch (crates for QEMU's wraps; needs access to crates.io)",
        )?;
    }
    fs::create_dir_all(&cache_dir)
        .map_err(|e| Error::io(format!("cannot create {}", cache_dir.display()), e))?;
    for w in todo {
        let (name, version) = w.crate_id().expect("filtered above");
        let (file, hash) = wrap_download(w)?;
        let found = find_crate(&registry, &name, &version).ok_or_else(|| {
            Error::msg(format!(
                "{name}-{version}.crate is not in {} after cargo fetch",
                registry.display()
            ))
        })?;
        let got = crate::fetch::sha256_file(&found)?;
        if got != hash {
            return Err(Error::msg(format!(
                "{} has sha256 {got}, but {}.wrap wants source_hash {hash}",
                found.display(),
                w.name
            )));
        }
        copy_file(&found, &cache_dir.join(file))?;
        println!("    {name} {version} -> packagecache/{file}");
    }
    Ok(())
}

fn wrap_download(w: &Wrap) -> Result<(&str, &str)> {
    match (&w.source_filename, &w.source_hash) {
        (Some(f), Some(h)) => Ok((f.as_str(), h.as_str())),
        _ => Err(Error::msg(format!(
            "{}.wrap has no source_filename/source_hash",
            w.name
        ))),
    }
}

/// `<registry cache>/<index dir>/<name>-<version>.crate`, first found.
fn find_crate(registry: &Path, name: &str, version: &str) -> Option<PathBuf> {
    let file = format!("{name}-{version}.crate");
    let mut dirs: Vec<PathBuf> = fs::read_dir(registry)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// Tools

/// The `apt-get install` line for the given packages.
pub fn apt_line(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// Packages of `wanted` that `dpkg-query -W -f '${Package} ${db:Status-Status}\n'`
/// output does not list as installed.
pub(crate) fn missing_packages<'a>(dpkg_output: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let installed: BTreeSet<&str> = dpkg_output
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            (it.next()? == "installed").then(|| name.split(':').next().unwrap_or(name))
        })
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

fn check_deps(install: bool) -> Result<()> {
    for tool in ["git", "python3", "cp", "sha256sum"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(Error::msg(format!(
                "{tool} is not installed or not on PATH"
            )));
        }
    }
    let wanted: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(RUNTIME_PACKAGES)
        .copied()
        .collect();
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Status}\n")
        .args(&wanted)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        println!("    warning: no dpkg-query: cannot check the Debian build packages");
        return Ok(());
    };
    let missing = missing_packages(&String::from_utf8_lossy(&out.stdout), &wanted);
    if missing.is_empty() {
        println!("    all {} Debian packages installed", wanted.len());
        return Ok(());
    }
    let line = apt_line(&missing);
    let is_root = crate::prereqs::is_root();
    if !install {
        return Err(Error::msg(format!(
            "missing Debian packages: {}\n  install them with:  {}\n  \
             (or rerun with --install-deps)",
            missing.join(" "),
            crate::prereqs::for_user(&line, is_root)
        )));
    }
    let mut cmd = if is_root {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    println!("    {}", crate::prereqs::for_user(&line, is_root));
    cmd.args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_status(&mut cmd, "apt-get install")
}

/// `<cache>/tools/meson-<version>/bin/python3`, a venv with meson from PyPI
/// (created when missing or holding another version).
fn ensure_meson(cache_root: &Path) -> Result<PathBuf> {
    let venv = cache_root
        .join("tools")
        .join(format!("meson-{MESON_VERSION}"));
    let python = venv.join("bin").join("python3");
    let meson = venv.join("bin").join("meson");
    let have = Command::new(&meson)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if have.as_deref() == Some(MESON_VERSION) && python.exists() {
        println!("    meson {MESON_VERSION} in {}", venv.display());
        return Ok(python);
    }
    if venv.exists() {
        remove_dir(&venv)?;
    }
    println!(
        "    creating {} (pip install meson=={MESON_VERSION})",
        venv.display()
    );
    run_output(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run_output(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            &format!("meson=={MESON_VERSION}"),
        ]),
        "pip install meson (needs access to PyPI)",
    )?;
    Ok(python)
}

/// What the build directory was configured with.
fn configure_identity(python: &Path) -> String {
    format!(
        "meson {MESON_VERSION}; python {}; {}",
        python.display(),
        CONFIGURE_ARGS.join(" ")
    )
}

fn configure(layout: &Layout, python: &Path) -> Result<()> {
    if layout.build.exists() {
        remove_dir(&layout.build)?;
    }
    fs::create_dir_all(&layout.build)
        .map_err(|e| Error::io(format!("cannot create {}", layout.build.display()), e))?;
    let log = layout.root.join("configure.log");
    println!(
        "    {}/configure {} (log: {})",
        layout.src.display(),
        CONFIGURE_ARGS.join(" "),
        log.display()
    );
    let out = Command::new(layout.src.join("configure"))
        .current_dir(&layout.build)
        .arg(format!("--python={}", python.display()))
        .args(CONFIGURE_ARGS)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("cannot run configure: {e}")))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    write(&log, &text)?;
    if !out.status.success() {
        let tail: Vec<&str> = std::str::from_utf8(&text)
            .unwrap_or("")
            .lines()
            .rev()
            .take(25)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // configure leaves a half-made build dir; the next run starts over.
        let _ = fs::remove_file(layout.build.join("build.ninja"));
        return Err(Error::msg(format!(
            "configure failed ({}); last lines of {}:\n{}",
            out.status,
            log.display(),
            tail.join("\n")
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Files

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("vfio-cxl-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Self(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Regular files under `root`, as sorted `/`-separated relative paths
/// (empty when `root` does not exist).
fn list_files(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries = fs::read_dir(dir)
            .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                let rel = path.strip_prefix(root).expect("walk stays under root");
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            } else {
                return Err(Error::msg(format!(
                    "{} is neither a file nor a directory (symlinks are not supported)",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Names of files that differ between two directories (missing on either
/// side, or different bytes).
fn compare_dirs(a: &Path, b: &Path) -> Result<Vec<String>> {
    let fa: BTreeSet<String> = list_files(a)?.into_iter().collect();
    let fb: BTreeSet<String> = list_files(b)?.into_iter().collect();
    let mut diffs = Vec::new();
    for name in fa.union(&fb) {
        match (fa.contains(name), fb.contains(name)) {
            (true, true) => {
                if read(&a.join(name))? != read(&b.join(name))? {
                    diffs.push(format!("{name} differs"));
                }
            }
            (true, false) => diffs.push(format!("{name} missing")),
            _ => diffs.push(format!("{name} not generated")),
        }
    }
    Ok(diffs)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    fs::write(path, bytes).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    write(to, &read(from)?)
}

fn remove_dir(path: &Path) -> Result<()> {
    fs::remove_dir_all(path).map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))
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

    const WRAP: &str = "\
[wrap-file]
directory = proc-macro2-1.0.95
source_url = https://crates.io/api/v1/crates/proc-macro2/1.0.95/download
source_filename = proc-macro2-1.0.95.0.tar.gz
source_hash = 02B3E5E68A3A1A02AAD3EC490A98007CBC13C37CBE84A3CD7B8E406D76E7F778
#method = cargo
patch_directory = proc-macro2-1-rs

# bump this version number on every change to meson.build or the patches:
# v2
";

    #[test]
    fn wrap_parses() {
        let w = parse_wrap("proc-macro2-1-rs", WRAP).unwrap().unwrap();
        assert_eq!(w.directory, "proc-macro2-1.0.95");
        assert_eq!(
            w.source_filename.as_deref(),
            Some("proc-macro2-1.0.95.0.tar.gz")
        );
        assert_eq!(
            w.source_hash.as_deref(),
            Some("02b3e5e68a3a1a02aad3ec490a98007cbc13c37cbe84a3cd7b8e406d76e7f778")
        );
        assert_eq!(w.patch_directory.as_deref(), Some("proc-macro2-1-rs"));
        assert_eq!(
            w.crate_id(),
            Some(("proc-macro2".to_string(), "1.0.95".to_string()))
        );
    }

    #[test]
    fn git_wraps_and_other_urls_are_not_crates() {
        let git = "[wrap-git]\nurl = https://gitlab.com/qemu-project/dtc.git\nrevision = v1.7.2\n";
        assert_eq!(parse_wrap("dtc", git).unwrap(), None);
        let tarball = "[wrap-file]\nsource_url = https://example.org/x-1.tar.gz\n";
        let w = parse_wrap("x", tarball).unwrap().unwrap();
        assert_eq!(w.directory, "x");
        assert_eq!(w.crate_id(), None);
        assert!(parse_wrap("bad", "[wrap-file]\nnonsense\n").is_err());
    }

    #[test]
    fn seed_manifest_pins_exact_versions_and_allows_two_majors() {
        let m = seed_manifest(&[
            ("syn".to_string(), "1.0.109".to_string()),
            ("syn".to_string(), "2.0.104".to_string()),
        ]);
        assert!(
            m.contains("c0 = { package = \"syn\", version = \"=1.0.109\" }"),
            "{m}"
        );
        assert!(
            m.contains("c1 = { package = \"syn\", version = \"=2.0.104\" }"),
            "{m}"
        );
        assert!(m.contains("[workspace]"));
        let parsed: toml::Table = toml::from_str(&m).unwrap();
        assert_eq!(parsed["dependencies"].as_table().unwrap().len(), 2);
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
        let h = sha256_bytes(&base).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(
            sha256_bytes(b"").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn missing_packages_from_dpkg_query() {
        let out =
            "bison installed\nflex not-installed\nzlib1g-dev:amd64 installed\nclang config-files\n";
        let got = missing_packages(out, &["bison", "flex", "zlib1g-dev", "clang", "bindgen"]);
        assert_eq!(got, vec!["flex", "clang", "bindgen"]);
        assert_eq!(
            apt_line(&got),
            "apt-get install -y --no-install-recommends flex clang bindgen"
        );
    }

    #[test]
    fn state_round_trips() {
        let mut s = State::default();
        s.set("base", "1:10.2.2+ds-1 abc");
        s.set("series", "0123");
        assert_eq!(State::parse(&s.render()), s);
        assert_eq!(State::parse("garbage\n").get("base"), None);
    }

    #[test]
    fn build_args() {
        let a = |v: &[&str]| parse_build_args(&files(v));
        assert_eq!(a(&["-j3"]).unwrap().jobs, Some(3));
        assert_eq!(a(&["-j", "4", "--fresh"]).unwrap().jobs, Some(4));
        assert!(a(&["--fresh"]).unwrap().fresh);
        assert!(a(&["--install-deps"]).unwrap().install_deps);
        assert!(a(&["-j0"]).unwrap_err().is_usage());
        assert!(a(&["--frsh"]).unwrap_err().is_usage());
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

    #[test]
    fn firmware_args_name_every_directory_and_they_hold_the_boot_firmware() {
        let args = firmware_args();
        let pairs: Vec<_> = args.chunks(2).collect();
        assert_eq!(pairs.len(), FIRMWARE_DIRS.len());
        for (pair, dir) in pairs.iter().zip(FIRMWARE_DIRS) {
            assert_eq!(pair, &["-L", dir]);
        }
        // What a q35 -kernel boot loads (SeaBIOS, the linuxboot and PVH
        // option ROMs, q35's default NIC ROM), from RUNTIME_PACKAGES
        // (tools/packages.txt).
        for file in [
            "bios-256k.bin",
            "linuxboot_dma.bin",
            "pvh.bin",
            "kvmvapic.bin",
            "efi-e1000e.rom",
        ] {
            assert!(
                FIRMWARE_DIRS
                    .iter()
                    .any(|d| Path::new(d).join(file).is_file()),
                "{file} is in none of {FIRMWARE_DIRS:?}: tools/setup-apt (as root) installs it"
            );
        }
    }
}
