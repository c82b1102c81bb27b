//! `--bench-bw`: memcpy bandwidth between a RAM buffer and mapped memory
//! targets, in one process so every target sees the same guest and load.
//!
//! A target is `ram` (anonymous memory: the baseline) or `NAME=PATH`, a
//! device mmap'ed `MAP_SHARED` at offset 0 (the reference guest driver's
//! `/dev/cxl-type2-ref0`, a device-dax `/dev/daxX.Y`). Mappings are placed
//! 2 MiB-aligned (device-dax refuses anything else).
//!
//! For every size and repeat, each target in turn (interleaved, so that a
//! change of load on the host hits all targets alike) takes a `read`
//! (target -> buffer) then a `write` (buffer -> target) of `size` bytes
//! with the C library's memcpy, each right after an untimed copy of up to
//! [`WARM_UP`] bytes in the same direction: under TCG, what the previous
//! target left behind (an MMIO access recompiles the code around it, the
//! soft TLB holds the other target's pages) would otherwise be paid by
//! whichever target comes next. For the same reason the first two
//! targets swap places every other repeat. The write copies back what the read just
//! copied out, so the memory keeps its contents: the benchmark can run
//! between coherence checks. One untimed read + write of the largest size
//! per target first faults every page in.
//!
//! Anonymous memory (the `ram` target and the buffer) is mapped with
//! `MADV_NOHUGEPAGE` unless `--thp` is given: the reference guest driver
//! maps its region with 4 KiB pages, and under TCG the guest's page size
//! changes copy speed by a factor of 3-4 (QEMU's soft TLB walks the
//! guest's page tables on a miss), so the baseline uses the same page size
//! as the window. Fact `bw.thp` says which.
//!
//! Facts (step `bench-bw`): `bw.targets` (names, comma-separated),
//! `bw.<name>.path`, `bw.sizes` (bytes), `bw.repeats`, and per target,
//! direction and size `bw.<name>.<read|write>.<size>` = the copy times in
//! ns, comma-separated, one per repeat; `bw.error` on failure. The host
//! computes medians and ratios (guest-tests/harness/src/bench_bw.rs).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Instant;

use crate::facts::fact;
use crate::vfio::{map_aligned, Mapping};

const STEP: &str = "bench-bw";
const MIB: u64 = 1 << 20;
/// Mapping alignment (device-dax's default, PMD size).
const ALIGN: usize = 2 << 20;
/// The untimed copy before each timed one (at most the copy's size).
const WARM_UP: usize = 1 << 20;

/// The default of `--sizes`, in MiB.
pub const DEFAULT_SIZES_MIB: &str = "1,4,16";
pub const DEFAULT_REPEATS: u32 = 7;

/// Whether anonymous mappings may use transparent huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Thp {
    /// `MADV_NOHUGEPAGE`: 4 KiB pages, as the reference driver's mapping.
    #[default]
    Off,
    /// The kernel's default (Debian: always).
    On,
}

/// Where a target's memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous private memory (guest RAM).
    Ram,
    /// A device file mapped shared at offset 0.
    Device(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub backing: Backing,
}

impl Target {
    /// `ram` or `NAME=PATH`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "ram" {
            return Ok(Self {
                name: "ram".into(),
                backing: Backing::Ram,
            });
        }
        match s.split_once('=') {
            Some((name, path))
                if !name.is_empty()
                    && name != "ram"
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && path.starts_with('/') =>
            {
                Ok(Self {
                    name: name.into(),
                    backing: Backing::Device(path.into()),
                })
            }
            _ => Err(format!(
                "target {s:?}: expected ram or NAME=/PATH (NAME: letters, digits, - or _)"
            )),
        }
    }

    pub fn path(&self) -> &str {
        match &self.backing {
            Backing::Ram => "anonymous",
            Backing::Device(p) => p,
        }
    }

    /// Maps at least `len` bytes (a multiple of [`ALIGN`]: device-dax
    /// refuses other lengths too).
    fn map(&self, len: usize, thp: Thp) -> Result<Mapping, String> {
        let len = len.next_multiple_of(ALIGN);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        match &self.backing {
            Backing::Ram => map_aligned(
                -1,
                len,
                0,
                rw,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                ALIGN,
            )
            .and_then(|m| {
                if thp == Thp::Off {
                    // SAFETY: advice on a mapping this function owns.
                    let rc =
                        unsafe { libc::madvise(m.as_ptr().cast(), m.len(), libc::MADV_NOHUGEPAGE) };
                    if rc != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(m)
            }),
            Backing::Device(path) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("{}: open {path}: {e}", self.name))?;
                // The mapping keeps the file referenced after `f` closes.
                map_aligned(f.as_raw_fd(), len, 0, rw, libc::MAP_SHARED, ALIGN)
            }
        }
        .map_err(|e| {
            format!(
                "{}: mmap {} MiB of {}: {e}",
                self.name,
                len >> 20,
                self.path()
            )
        })
    }
}

/// What to measure: the options after `--bench-bw`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// Copy sizes in MiB
    #[arg(long, value_name = "MIB,MIB...", value_delimiter = ',',
          default_value = DEFAULT_SIZES_MIB, value_parser = parse_mib)]
    pub sizes: Vec<u64>,
    /// Timed copies per size, target and direction
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REPEATS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: u32,
    /// Let anonymous memory use transparent huge pages (default: 4 KiB
    /// pages, as the reference driver's mapping)
    #[arg(long = "thp")]
    pub thp_on: bool,
    /// What to copy to and from: ram (anonymous memory, the baseline) or
    /// NAME=PATH (a device mapped shared)
    #[arg(required = true, value_name = "ram|NAME=PATH", value_parser = Target::parse)]
    pub targets: Vec<Target>,
}

impl Options {
    pub fn thp(&self) -> Thp {
        if self.thp_on {
            Thp::On
        } else {
            Thp::Off
        }
    }

    /// What clap cannot check: every target has its own name.
    pub fn check(&self) -> Result<(), String> {
        let mut names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("target names repeat: {names:?}"));
        }
        Ok(())
    }
}

/// One `--sizes` item: a positive number of MiB, in bytes.
fn parse_mib(m: &str) -> Result<u64, String> {
    match m.trim().parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(MIB)
            .ok_or_else(|| format!("{m} MiB is too large")),
        _ => Err("not a positive number of MiB".into()),
    }
}

/// One target, mapped, with its copy times.
struct Mapped {
    target: Target,
    map: Mapping,
    /// (size, read ns per repeat, write ns per repeat)
    times: Vec<(u64, Vec<u64>, Vec<u64>)>,
}

/// memcpy `len` bytes; returns the time taken in ns.
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes and not overlap.
unsafe fn timed_copy(dst: *mut u8, src: *const u8, len: usize) -> u64 {
    let t = Instant::now();
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    std::hint::black_box(dst);
    t.elapsed().as_nanos() as u64
}

/// Runs the measurements and reports them as facts.
pub fn run(o: &Options) -> Result<(), String> {
    for (k, v) in measure(o)? {
        fact(STEP, &k, &v);
    }
    Ok(())
}

/// Runs the measurements: the facts to report, as (key, value). Every
/// target holds what it held before (each write puts back what the read
/// before it took out).
fn measure(o: &Options) -> Result<Vec<(String, String)>, String> {
    let max = *o.sizes.iter().max().ok_or("no sizes")? as usize;
    let buf = Target::parse("ram")?.map(max, o.thp())?;
    let mut all = Vec::new();
    for t in &o.targets {
        let map = t.map(max, o.thp())?;
        // SAFETY: both mappings are `max` bytes long and distinct.
        unsafe {
            timed_copy(buf.as_ptr(), map.as_ptr(), max);
            timed_copy(map.as_ptr(), buf.as_ptr(), max);
        }
        all.push(Mapped {
            target: t.clone(),
            map,
            times: o
                .sizes
                .iter()
                .map(|&s| (s, Vec::new(), Vec::new()))
                .collect(),
        });
    }
    for (i, &size) in o.sizes.iter().enumerate() {
        for r in 0..o.repeats {
            // The first two targets (the pair the ratio b/a compares) swap
            // places every other repeat, so neither always follows the last.
            let mut order: Vec<usize> = (0..all.len()).collect();
            if r % 2 == 1 && order.len() > 1 {
                order.swap(0, 1);
            }
            for &t in &order {
                let m = &mut all[t];
                let n = size as usize;
                let warm = n.min(WARM_UP);
                let (target, buffer) = (m.map.as_ptr(), buf.as_ptr());
                // SAFETY: size <= max, the length of both mappings, which
                // are distinct. Each timed copy follows an untimed one of
                // the same direction; each write puts back what the read
                // before it took out.
                let (r, w) = unsafe {
                    timed_copy(buffer, target, warm);
                    let r = timed_copy(buffer, target, n);
                    timed_copy(target, buffer, warm);
                    (r, timed_copy(target, buffer, n))
                };
                m.times[i].1.push(r);
                m.times[i].2.push(w);
            }
        }
    }
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let names: Vec<&str> = all.iter().map(|m| m.target.name.as_str()).collect();
    let mut facts = vec![
        ("bw.targets".to_string(), names.join(",")),
        ("bw.sizes".into(), join(&o.sizes)),
        ("bw.repeats".into(), o.repeats.to_string()),
        (
            "bw.thp".into(),
            if o.thp() == Thp::On { "on" } else { "off" }.into(),
        ),
    ];
    for m in &all {
        let n = &m.target.name;
        facts.push((format!("bw.{n}.path"), m.target.path().into()));
        for (size, r, w) in &m.times {
            facts.push((format!("bw.{n}.read.{size}"), join(r)));
            facts.push((format!("bw.{n}.write.{size}"), join(w)));
            let mbps = |ns: &[u64]| {
                let mut v = ns.to_vec();
                v.sort_unstable();
                *size as f64 / 1e6 / (v[v.len() / 2].max(1) as f64 / 1e9)
            };
            eprintln!(
                "bench-bw {n} {} MiB: read {:.0} MB/s, write {:.0} MB/s (medians of {})",
                size >> 20,
                mbps(r),
                mbps(w),
                r.len()
            );
        }
    }
    Ok(facts)
}

/// `vfio-cxl-uapi-check --bench-bw ...`: the exit status.
pub fn main(o: &Options) -> ExitCode {
    match run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fact(STEP, "bw.error", &e);
            eprintln!("vfio-cxl-uapi-check: bench-bw: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options after `--bench-bw`, as the binary parses them.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn parse(a: &[&str]) -> Result<Options, String> {
        use clap::Parser;
        let o = Cli::try_parse_from(std::iter::once("bench-bw").chain(a.iter().copied()))
            .map_err(|e| e.to_string())?
            .options;
        o.check()?;
        Ok(o)
    }

    #[test]
    fn options_parse_and_bad_ones_are_refused() {
        // The harness's command line (guest-tests/harness/src/bench_bw.rs).
        let o = parse(&[
            "--sizes",
            "2,8",
            "--repeats",
            "3",
            "--thp",
            "ram",
            "t2=/dev/cxl-type2-ref0",
            "t3=/dev/dax0.0",
        ])
        .unwrap();
        assert_eq!(o.sizes, [2 * MIB, 8 * MIB]);
        assert_eq!((o.repeats, o.thp()), (3, Thp::On));
        assert_eq!(o.targets[1].name, "t2");
        assert_eq!(o.targets[1].path(), "/dev/cxl-type2-ref0");
        assert_eq!(o.targets[0].backing, Backing::Ram);
        let o = parse(&["ram"]).unwrap();
        assert_eq!(o.sizes, [MIB, 4 * MIB, 16 * MIB]);
        assert_eq!((o.repeats, o.thp()), (DEFAULT_REPEATS, Thp::Off));
        for bad in [
            &[][..],
            &["--sizes", "0", "ram"],
            &["--sizes", "x", "ram"],
            &["--repeats", "0", "ram"],
            &["ram", "ram"],
            &["x=relative"],
            &["a.b=/dev/x"],
            &["--bogus", "ram"],
            // uapi-check's own options are not bench-bw's.
            &["--reopen", "1", "ram"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timed_copies_move_the_bytes() {
        let t = Target::parse("ram").unwrap();
        let (a, b) = (
            t.map(4 << 20, Thp::Off).unwrap(),
            t.map(4 << 20, Thp::On).unwrap(),
        );
        assert_eq!(a.addr() % ALIGN, 0);
        for off in (0..4 << 20).step_by(4096) {
            a.write_u64(off, crate::pattern::word(1, off as u64));
        }
        // SAFETY: two distinct 4 MiB mappings.
        unsafe { timed_copy(b.as_ptr(), a.as_ptr(), 4 << 20) };
        for off in (0..4 << 20).step_by(4096) {
            assert_eq!(
                b.read_u64(off),
                crate::pattern::word(1, off as u64),
                "{off:#x}"
            );
        }
    }

    #[test]
    fn a_run_reports_every_measurement_and_keeps_the_target_contents() {
        // A file stands in for the device: mapped shared, as /dev/cxl-type2-ref0.
        let dir = std::env::temp_dir().join(format!("bw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dev");
        let before: Vec<u8> = (0..4u64 << 20)
            .step_by(8)
            .flat_map(|o| crate::pattern::word(3, o).to_le_bytes())
            .collect();
        std::fs::write(&file, &before).unwrap();
        let dev = format!("dev={}", file.display());
        let o = parse(&["--sizes", "2,4", "--repeats", "3", "ram", &dev]).unwrap();
        let facts = measure(&o).unwrap();
        let get = |k: &str| {
            facts
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no fact {k} in {facts:?}"))
        };
        assert_eq!(get("bw.targets"), "ram,dev");
        assert_eq!(get("bw.sizes"), format!("{},{}", 2 * MIB, 4 * MIB));
        assert_eq!(get("bw.repeats"), "3");
        assert_eq!(get("bw.dev.path"), file.display().to_string());
        for n in ["ram", "dev"] {
            for dir in ["read", "write"] {
                for size in [2 * MIB, 4 * MIB] {
                    let times = get(&format!("bw.{n}.{dir}.{size}"));
                    let v: Vec<u64> = times.split(',').map(|t| t.parse().unwrap()).collect();
                    assert!(
                        v.len() == 3 && v.iter().all(|&t| t > 0),
                        "{n} {dir} {size}: {times}"
                    );
                }
            }
        }
        let after = std::fs::read(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(after == before, "the run changed the target's contents");
    }
}
