//! `cargo xtask build-test-kernel`: the debug test kernel (lockdep, KASAN,
//! UBSAN, KFENCE, ...) from the pinned Linux source, and the host driver
//! built against it. See docs/testing.md, "The debug kernel tier".
//!
//! ```text
//! <cache>/linux/<upstream>/debug/src/          pristine extraction of linux-source (shared by all keys)
//! <cache>/linux/<upstream>/debug/src.stamp     the Debian version it came from
//! <cache>/linux/<upstream>/debug/src-<p>/      the source with KERNEL_PATCHES applied (hard links
//!                                              to src/ for the files they do not touch; <p>
//!                                              hashes the version and the patches)
//! <cache>/linux/<upstream>/debug/<key>/build/  the O= build
//! <cache>/linux/<upstream>/debug/<key>/root/usr/lib/modules/<release>/{vmlinuz,modules.*}
//! <cache>/linux/<upstream>/debug/<key>/stamp   written last: the kernel is complete
//! <repo>/target/debug-kernel/host-driver/      a copy of host-driver/ built for it (per checkout)
//! ```
//!
//! The key hashes the fragment (guest-tests/kernel/debug.config), the
//! kernel patches ([`KERNEL_PATCHES`]), the pinned version, gcc's version
//! and [`RECIPE`]: a changed fragment or patch builds a new kernel, an
//! unchanged one is a no-op. The source tree is never configured: Kbuild
//! refuses an O= build from a configured tree, such as the one
//! prepare-tree makes for Debian's ABI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::pins::{self, Overrides, Pins};
use crate::test::{repo_root, step};

/// Build the debug test kernel (lockdep, KASAN, ...) and the host driver for it
///
/// The pinned Linux source (linux-source deb, fetched if needed) with the
/// core patches of host-driver/kernel/ applied, `make tinyconfig` +
/// guest-tests/kernel/debug.config (merge_config.sh -m) +
/// olddefconfig, every line of the fragment checked in the final .config,
/// then bzImage and modules, installed with modules.builtin into the cache.
/// Cached by a hash of the fragment, the patches and the pinned version: a no-op when
/// up to date. Then builds the host driver against it into
/// target/debug-kernel/host-driver. Prints the kernel's directory (what
/// `guest-harness --debug-kernel` takes).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Print the kernel's directory for the current fragment and exit,
    /// building nothing
    #[arg(long)]
    pub print_dir: bool,
    /// Build no host driver for it
    #[arg(long, conflicts_with = "print_dir")]
    pub no_driver: bool,
}

/// The config fragment, relative to the repository.
pub const FRAGMENT: &str = "guest-tests/kernel/debug.config";
/// Patches to Linux itself (not the host driver) the debug kernel is built
/// with, relative to the repository, applied in this order with `patch
/// -p1`. The same diffs are the first patches of patches/linux
/// (host-driver/scripts/gen-patches); Debian's kernel has none of them.
pub const KERNEL_PATCHES: &[&str] = &[
    "host-driver/kernel/vfio-pci-dmabuf-driver-regions.diff",
    "host-driver/kernel/vfio-pci-variant-bars.diff",
];
/// Bumped when the build steps below change what they produce.
const RECIPE: &str = "debug-kernel recipe 2";
/// Where the host driver for the debug kernel goes (relative to the
/// repository; the harness's `hostdriver::DEBUG_DRIVER_DIR`).
pub const DRIVER_DIR: &str = "target/debug-kernel/host-driver";

/// One config line of a fragment or a .config: `CONFIG_X=v` or
/// `# CONFIG_X is not set` (value `n`).
fn config_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return name.starts_with("CONFIG_").then_some((name, "n"));
    }
    let (name, value) = line.split_once('=')?;
    name.starts_with("CONFIG_").then_some((name, value))
}

/// The fragment's lines whose value the final .config does not have, as
/// `CONFIG_X=want (got ...)`. A symbol absent from .config counts as `n`.
pub fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    let got: std::collections::HashMap<&str, &str> =
        config.lines().filter_map(config_line).collect();
    fragment
        .lines()
        .filter_map(config_line)
        .filter_map(|(name, want)| {
            let have = got.get(name).copied().unwrap_or("n");
            (have != want).then(|| {
                let have = if got.contains_key(name) {
                    have
                } else {
                    "absent"
                };
                format!("{name}={want} (got {have})")
            })
        })
        .collect()
}

fn gcc_version() -> Result<String> {
    let out = Command::new("gcc")
        .arg("-dumpfullversion")
        .output()
        .map_err(|e| Error::io("cannot run gcc (apt-get install build-essential)", e))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The paths of one keyed debug kernel.
#[derive(Debug, Clone)]
pub struct TestKernel {
    /// `<cache>/linux/<upstream>/debug`.
    base: PathBuf,
    /// `<base>/<key>`.
    pub dir: PathBuf,
    /// The linux-source .deb and its Debian version.
    source_deb: PathBuf,
    version: String,
    /// What the key hashes (also the first lines of the stamp).
    key_text: String,
    /// `<base>/src-<hash of the version and the patches>`.
    patched: PathBuf,
    /// The patches: (path relative to the repository, contents).
    patches: Vec<(String, String)>,
}

impl TestKernel {
    /// The kernel of the current fragment and pins (nothing built).
    pub fn current() -> Result<Self> {
        let env_pins = std::env::var(pins::PINS_ENV).ok();
        let pins = Pins::load(&pins::default_path())?
            .effective(&Overrides::parse(&[], env_pins.as_deref())?)?;
        let upstream = &pins.linux.upstream;
        let major_minor = upstream
            .rsplit_once('.')
            .map_or(upstream.as_str(), |(a, _)| a);
        let source = format!("linux-source-{major_minor}");
        let deb = pins
            .linux
            .debs
            .iter()
            .find(|d| d.package == source)
            .ok_or_else(|| Error::msg(format!("pins.toml pins no {source} package")))?;
        let cache = Cache::from_env()?;
        let fragment = fs::read_to_string(repo_root().join(FRAGMENT))
            .map_err(|e| Error::io(format!("cannot read {FRAGMENT}"), e))?;
        let patches = KERNEL_PATCHES
            .iter()
            .map(|p| {
                fs::read_to_string(repo_root().join(p))
                    .map(|text| ((*p).to_owned(), text))
                    .map_err(|e| Error::io(format!("cannot read {p}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let patch_text = patches_key_text(&deb.version, &patches);
        let key_text = format!(
            "{RECIPE}\n{source} {}\ngcc {}\n{fragment}\n{patch_text}",
            deb.version,
            gcc_version()?
        );
        let key = crate::digest::sha256_hex(key_text.as_bytes());
        let patched_key = crate::digest::sha256_hex(patch_text.as_bytes());
        let base = cache.root().join("linux").join(upstream).join("debug");
        Ok(Self {
            dir: base.join(&key[..16]),
            patched: base.join(format!("src-{}", &patched_key[..16])),
            base,
            source_deb: cache.linux_debs_dir(upstream).join(deb.file_name()),
            version: deb.version.clone(),
            key_text,
            patches,
        })
    }

    fn src(&self) -> PathBuf {
        self.base.join("src")
    }

    fn build(&self) -> PathBuf {
        self.dir.join("build")
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("stamp")
    }

    /// Built and installed (the stamp is written last).
    pub fn is_built(&self) -> bool {
        fs::read_to_string(self.stamp()).is_ok_and(|s| s.starts_with(&self.key_text))
    }

    fn make(&self) -> Command {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&self.patched)
            .arg(format!("O={}", self.build().display()))
            .arg("-s");
        c
    }

    /// A pristine extraction of the linux-source package (once per version).
    fn ensure_source(&self) -> Result<()> {
        let stamp = self.base.join("src.stamp");
        if fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == self.version)
            && self.src().join("Makefile").is_file()
        {
            return Ok(());
        }
        let partial = self.base.join(".src.partial");
        for dir in [&partial, &self.src()] {
            if dir.exists() {
                fs::remove_dir_all(dir)
                    .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
            }
        }
        fs::create_dir_all(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' | tar -xJ -C \"$2\" --strip-components=1";
        step(
            "extract the pristine Linux source",
            Command::new("bash")
                .args(["-o", "pipefail", "-c", script, "extract"])
                .arg(&self.source_deb)
                .arg(&partial),
        )?;
        fs::rename(&partial, self.src()).map_err(|e| {
            Error::io(
                format!("cannot move the source to {}", self.src().display()),
                e,
            )
        })?;
        fs::write(&stamp, format!("{}\n", self.version))
            .map_err(|e| Error::io("cannot write src.stamp", e))
    }

    /// The pristine source with [`KERNEL_PATCHES`] applied, in a tree of its
    /// own: hard links to `src/` (`cp -al`), and `patch` writes each file
    /// it changes anew (it renames a new file over the old name), so
    /// `src/` stays pristine. Once per version and set of patches.
    fn ensure_patched_source(&self) -> Result<()> {
        let stamp = self.patched.join(".vfio-cxl-patched");
        if fs::read_to_string(&stamp)
            .is_ok_and(|s| s == patches_key_text(&self.version, &self.patches))
        {
            return Ok(());
        }
        let partial = self.base.join(".src-patched.partial");
        for dir in [&partial, &self.patched] {
            if dir.exists() {
                fs::remove_dir_all(dir)
                    .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
            }
        }
        step(
            "link the pristine source for patching (cp -al)",
            Command::new("cp").arg("-al").arg(self.src()).arg(&partial),
        )?;
        for (path, _) in &self.patches {
            step(
                &format!("apply {path}"),
                Command::new("patch")
                    .args([
                        "-p1",
                        "--batch",
                        "--forward",
                        "--quiet",
                        "--no-backup-if-mismatch",
                        "-d",
                    ])
                    .arg(&partial)
                    .arg("-i")
                    .arg(repo_root().join(path)),
            )?;
        }
        fs::write(
            partial.join(".vfio-cxl-patched"),
            patches_key_text(&self.version, &self.patches),
        )
        .map_err(|e| Error::io("cannot write the patched source's stamp", e))?;
        fs::rename(&partial, &self.patched).map_err(|e| {
            Error::io(
                format!(
                    "cannot move the patched source to {}",
                    self.patched.display()
                ),
                e,
            )
        })
    }

    /// tinyconfig + fragment + olddefconfig, then every fragment line checked.
    fn configure(&self) -> Result<()> {
        let fragment = repo_root().join(FRAGMENT);
        fs::create_dir_all(self.build())
            .map_err(|e| Error::io(format!("cannot create {}", self.build().display()), e))?;
        step("make tinyconfig", self.make().arg("tinyconfig"))?;
        let config = self.build().join(".config");
        step(
            "merge guest-tests/kernel/debug.config",
            Command::new(self.patched.join("scripts/kconfig/merge_config.sh"))
                .current_dir(&self.patched)
                .arg("-m")
                .arg("-O")
                .arg(self.build())
                .arg(&config)
                .arg(&fragment)
                .stdout(Stdio::null()),
        )?;
        step("make olddefconfig", self.make().arg("olddefconfig"))?;
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|e| Error::io(format!("cannot read {}", p.display()), e))
        };
        let dropped = dropped_options(&read(&fragment)?, &read(&config)?);
        if !dropped.is_empty() {
            return Err(Error::msg(format!(
                "Kconfig dropped {} option(s) of {FRAGMENT} (a dependency is missing; see {}):\n  {}",
                dropped.len(),
                config.display(),
                dropped.join("\n  ")
            )));
        }
        println!("    every option of {FRAGMENT} is in the final .config");
        Ok(())
    }

    /// `<root>/usr/lib/modules/<release>/` with vmlinuz, as the harness
    /// reads Debian's extracted packages.
    fn install(&self) -> Result<String> {
        let release = fs::read_to_string(self.build().join("include/config/kernel.release"))
            .map_err(|e| Error::io("cannot read kernel.release", e))?
            .trim()
            .to_owned();
        let root = self.dir.join("root");
        if root.exists() {
            fs::remove_dir_all(&root)
                .map_err(|e| Error::io(format!("cannot remove {}", root.display()), e))?;
        }
        step(
            "install modules and modules.builtin",
            self.make()
                .arg(format!("INSTALL_MOD_PATH={}", root.join("usr").display()))
                .arg("modules_install"),
        )?;
        let modules = root.join("usr/lib/modules").join(&release);
        let image = self.build().join("arch/x86/boot/bzImage");
        fs::copy(&image, modules.join("vmlinuz"))
            .map_err(|e| Error::io(format!("cannot copy {}", image.display()), e))?;
        Ok(release)
    }
}

/// What identifies a patched source: the Debian version and each patch's
/// path and contents.
fn patches_key_text(version: &str, patches: &[(String, String)]) -> String {
    let mut text = format!("linux-source {version}\n");
    for (path, contents) in patches {
        text.push_str(&format!(
            "patch {path} {} bytes\n{contents}",
            contents.len()
        ));
    }
    text
}

/// Builds the kernel of the current fragment unless it is up to date;
/// returns it.
pub fn ensure() -> Result<TestKernel> {
    let started = Instant::now();
    let k = TestKernel::current()?;
    if k.is_built() {
        println!(
            "debug test kernel: up to date ({}, {:.1} s)",
            k.dir.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(k);
    }
    crate::fetch::run(&crate::fetch::Args::of(crate::fetch::Target::Linux))?;
    println!("debug test kernel: building into {}", k.dir.display());
    k.ensure_source()?;
    k.ensure_patched_source()?;
    k.configure()?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = Instant::now();
    step(
        &format!("build the debug test kernel (bzImage modules, -j{jobs})"),
        k.make()
            .arg(format!("-j{jobs}"))
            .args(["bzImage", "modules"]),
    )?;
    let build_secs = build.elapsed().as_secs_f64();
    let release = k.install()?;
    fs::write(
        k.stamp(),
        format!(
            "{}\nrelease {release}\nbuild {build_secs:.0} s at -j{jobs}\n",
            k.key_text
        ),
    )
    .map_err(|e| Error::io("cannot write the debug kernel stamp", e))?;
    println!(
        "debug test kernel: {release} built in {build_secs:.0} s (-j{jobs}), total {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        k.dir.display()
    );
    Ok(k)
}

/// The host driver's sources: what Kbuild reads (`Kbuild`, the top-level
/// `.c`/`.h` files, `include/`), without build products.
fn driver_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(d)
            .map_err(|e| Error::io(format!("cannot list {}", d.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut out = Vec::new();
    let mut dirs = vec![dir.join("include")];
    for p in list(dir)? {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = name == "Kbuild"
            || (name.ends_with(".c") && !name.ends_with(".mod.c"))
            || name.ends_with(".h");
        if source && p.is_file() {
            out.push(p);
        }
    }
    while let Some(d) = dirs.pop() {
        for p in list(&d)? {
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Copies the host driver's sources into `out`, rewriting only the files
/// whose bytes changed, so make rebuilds only what changed.
fn sync_driver_sources(src: &Path, out: &Path) -> Result<()> {
    for file in driver_sources(src)? {
        let rel = file.strip_prefix(src).expect("listed under src");
        let dest = out.join(rel);
        let bytes =
            fs::read(&file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
        if fs::read(&dest).ok().as_deref() == Some(&bytes[..]) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        fs::write(&dest, &bytes)
            .map_err(|e| Error::io(format!("cannot write {}", dest.display()), e))?;
    }
    Ok(())
}

/// The host driver's modules for kernel `k`, built out of tree in
/// [`DRIVER_DIR`] from a copy of its sources: host-driver/ keeps the build
/// for Debian's kernel, and Kbuild refuses `MO=` while the source
/// directory holds that build ("external module source tree is not
/// clean").
pub fn build_host_driver(k: &TestKernel) -> Result<PathBuf> {
    let out = repo_root().join(DRIVER_DIR);
    sync_driver_sources(&repo_root().join("host-driver"), &out)?;
    step(
        "build the host driver for the debug test kernel",
        Command::new("make")
            .arg("-C")
            .arg(k.build())
            .arg(format!("M={}", out.display()))
            .arg("-s")
            .arg("modules"),
    )?;
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    if args.print_dir {
        println!("{}", TestKernel::current()?.dir.display());
        return Ok(());
    }
    let k = ensure()?;
    if !args.no_driver {
        let out = build_host_driver(&k)?;
        for m in crate::driver::MODULES {
            println!("{}", out.join(m).display());
        }
    }
    println!("{}", k.dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_sources_are_what_kbuild_reads() {
        let names: Vec<String> = driver_sources(&repo_root().join("host-driver"))
            .unwrap()
            .iter()
            .map(|p| {
                p.strip_prefix(repo_root().join("host-driver"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        for want in [
            "Kbuild",
            "core.c",
            "vfio_cxl_priv.h",
            "include/uapi/linux/vfio_cxl.h",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.ends_with(".o")
                || n.ends_with(".ko")
                || n.ends_with(".mod.c")
                || n == "Makefile"),
            "{names:?}"
        );
    }

    #[test]
    fn the_key_covers_the_kernel_patches() {
        let p = |text: &str| vec![("host-driver/kernel/x.diff".to_owned(), text.to_owned())];
        let a = patches_key_text("7.3.4-1", &p("--- a/f\n+++ b/f\n"));
        assert_ne!(a, patches_key_text("7.3.4-1", &p("--- a/f\n+++ b/g\n")));
        assert_ne!(a, patches_key_text("7.3.4-2", &p("--- a/f\n+++ b/f\n")));
        assert_ne!(a, patches_key_text("7.3.4-1", &[]));
        for path in KERNEL_PATCHES {
            assert!(repo_root().join(path).is_file(), "{path} is missing");
        }
    }

    #[test]
    fn config_lines_parse() {
        assert_eq!(config_line("CONFIG_KASAN=y"), Some(("CONFIG_KASAN", "y")));
        assert_eq!(
            config_line("CONFIG_LOCALVERSION=\"-x\""),
            Some(("CONFIG_LOCALVERSION", "\"-x\""))
        );
        assert_eq!(
            config_line("# CONFIG_SLUB_TINY is not set"),
            Some(("CONFIG_SLUB_TINY", "n"))
        );
        assert_eq!(config_line("# a comment"), None);
        assert_eq!(config_line(""), None);
        assert_eq!(config_line("FOO=y"), None);
    }

    #[test]
    fn dropped_options_are_named() {
        let fragment = "# instruments\nCONFIG_KASAN=y\nCONFIG_NR_CPUS=4\n# CONFIG_SLUB_TINY is not set\nCONFIG_IOMMUFD=y\n# CONFIG_GONE is not set\n";
        let config =
            "CONFIG_KASAN=y\nCONFIG_NR_CPUS=8\nCONFIG_SLUB_TINY=y\n# CONFIG_IOMMUFD is not set\n";
        assert_eq!(
            dropped_options(fragment, config),
            [
                "CONFIG_NR_CPUS=4 (got 8)",
                "CONFIG_SLUB_TINY=n (got y)",
                "CONFIG_IOMMUFD=y (got n)"
            ]
        );
        assert!(dropped_options(fragment, &format!("{config}\nCONFIG_X=y")).len() == 3);
        let absent = dropped_options("CONFIG_CXL_PMEM=y\n", "CONFIG_KASAN=y\n");
        assert_eq!(absent, ["CONFIG_CXL_PMEM=y (got absent)"]);
    }

    #[test]
    fn the_committed_fragment_parses() {
        let text = fs::read_to_string(repo_root().join(FRAGMENT)).unwrap();
        let options: Vec<_> = text.lines().filter_map(config_line).collect();
        for must in [
            "CONFIG_PROVE_LOCKING",
            "CONFIG_DEBUG_ATOMIC_SLEEP",
            "CONFIG_KASAN_GENERIC",
            "CONFIG_UBSAN",
            "CONFIG_DEBUG_LIST",
            "CONFIG_KFENCE",
            "CONFIG_DETECT_HUNG_TASK",
            "CONFIG_IOMMUFD",
            "CONFIG_VFIO_DEVICE_CDEV",
            "CONFIG_INTEL_IOMMU",
            "CONFIG_CXL_REGION",
            "CONFIG_PCI_P2PDMA",
            "CONFIG_VFIO_PCI_DMABUF",
            "CONFIG_INTEL_IOMMU_DEBUGFS",
            "CONFIG_KVM_AMD",
        ] {
            assert!(options.contains(&(must, "y")), "{FRAGMENT} lacks {must}=y");
        }
        // Against itself: nothing dropped.
        assert!(dropped_options(&text, &text).is_empty());
    }
}
