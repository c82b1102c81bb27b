//! The sparse checker the drivers' `make check` runs: Linux 7.3 refuses
//! sparse older than 0.6.5 (no `__typeof_unqual__`), and bookworm ships
//! 0.6.4, so the pinned Debian source (pins.toml `[sparse]`) is fetched and
//! its `sparse` binary built once into `<cache>/tools/sparse/<version>/`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::cache::{version_dir_name, Cache};
use crate::error::{Error, Result};
use crate::fetch;
use crate::pins::{self, Overrides, Pins};
use crate::test::step;

/// Fetches the pinned sparse source (a no-op when cached) and returns the
/// path of its `sparse` binary, building it first if the cache lacks it.
pub fn binary() -> Result<PathBuf> {
    fetch::run(&fetch::Args::of(fetch::Target::Sparse))?;
    let env_pins = std::env::var(pins::PINS_ENV).ok();
    let overrides = Overrides::parse(&[], env_pins.as_deref())?;
    let art = Pins::load(&pins::default_path())?
        .effective(&overrides)?
        .sparse;
    let cache = Cache::from_env()?;
    let dir = cache
        .root()
        .join("tools/sparse")
        .join(version_dir_name(&art.version));
    let bin = dir.join("sparse");
    if bin.is_file() {
        return Ok(bin);
    }

    let src = cache.unpacked_source_dir(&art.package, &art.upstream);
    let started = Instant::now();
    // Only the checker itself: no LLVM, GTK, libxml2 or sqlite tools.
    // Debian's patch sets CC = gcc-16 (its build compiler); build with the
    // host's gcc instead.
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(&src)
        .args(["-j2", "CC=gcc", "LD=gcc", "sparse"])
        .args([
            "HAVE_LLVM=no",
            "HAVE_GTK=no",
            "HAVE_LIBXML=no",
            "HAVE_SQLITE=no",
        ]);
    step(&format!("build sparse {}", art.version), &mut make)?;
    fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    // Copy under a temporary name, then rename: a cut-off copy is never
    // taken for a built binary.
    let partial = dir.join(".sparse.partial");
    fs::copy(src.join("sparse"), &partial)
        .map_err(|e| Error::io(format!("cannot copy sparse to {}", partial.display()), e))?;
    fs::rename(&partial, &bin)
        .map_err(|e| Error::io(format!("cannot move sparse to {}", bin.display()), e))?;
    println!(
        "sparse {} built in {:.1} s: {}",
        art.version,
        started.elapsed().as_secs_f64(),
        bin.display()
    );
    Ok(bin)
}
