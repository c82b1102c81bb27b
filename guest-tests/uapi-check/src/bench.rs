//! `--bench-fault`: how fast the memory region faults in, and whether it
//! faults in huge (PMD/PUD) pieces.
//!
//! Three passes over a fresh mapping each:
//!
//! - `2m`: one read per 2 MiB of the whole region (the first touch of
//!   every 2 MiB, also the first access to that memory since the boot);
//! - `2m-warm`: the same again on a new mapping: the guest's fault path
//!   only (under QEMU, the first pass also pays for the host populating a
//!   sparse memory-backend file);
//! - `4k`: one read per 4 KiB of the first [`FOURK_SPAN`] bytes;
//! - `1g-warm`: one read per 1 GiB of the whole region on a new mapping,
//!   memory populated: mmap plus first touch of every GiB, which with PUD
//!   mappings costs one fault per GiB, so 128 GiB should cost little more
//!   than 256 MiB (the setup ratio of docs/benchmarks.md).
//!
//! Each pass reports the mmap time, the touch time and the minor faults
//! the process took (`getrusage`). The `2m-warm` and `4k` passes run
//! [`REPEATS`] times each and report the run with the median touch time,
//! with the fastest and slowest touch times as its spread; the `2m` pass
//! is a single sample by its nature (the first touch happens once per
//! boot). With 4 KiB mappings the `4k` pass takes
//! one fault per page (65536 for 256 MiB); with PMD mappings one per 2 MiB
//! (128); with PUD mappings one per 1 GiB. The `2m` pass takes one fault
//! per touch with 4 KiB or PMD mappings alike (it only sees the fault
//! cost), and fewer with PUD mappings.
//!
//! The mapping is placed at a 1 GiB-aligned address (see
//! [`crate::vfio::Device::mmap_aligned`]) so the alignment of the virtual
//! address never prevents a huge mapping; `default_align` reports what the
//! kernel would have picked on its own.

use std::io;
use std::time::{Duration, Instant};

use crate::checks::Ctx;

/// How often the repeatable passes run.
pub const REPEATS: usize = 7;

/// How much of the region the `4k` pass touches.
pub const FOURK_SPAN: u64 = 256 << 20;
const GIB: usize = 1 << 30;

/// One pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub name: &'static str,
    pub stride: u64,
    pub span: u64,
    pub touches: u64,
    pub addr: usize,
    pub mmap: Duration,
    /// The median run's touch time (the only run's, with one repeat).
    pub touch: Duration,
    pub faults: u64,
    /// How many runs; the fastest and slowest touch among them.
    pub repeats: usize,
    pub touch_min: Duration,
    pub touch_max: Duration,
}

fn minor_faults() -> u64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid
    // rusage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_minflt as u64
    }
}

/// The largest power of two dividing `addr` (capped at 1 GiB).
pub fn alignment(addr: usize) -> usize {
    if addr == 0 {
        GIB
    } else {
        (1usize << addr.trailing_zeros()).min(GIB)
    }
}

fn pass(c: &Ctx, name: &'static str, stride: u64, span: u64) -> io::Result<Pass> {
    let span = span.min(c.mem.size);
    let t0 = Instant::now();
    let map = c.dev.mmap_aligned(
        c.mem.size as usize,
        c.mem.offset,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        GIB,
    )?;
    let mmap = t0.elapsed();
    let f0 = minor_faults();
    let t1 = Instant::now();
    let mut sum = 0u64;
    let mut off = 0;
    let mut touches = 0;
    while off < span {
        sum = sum.wrapping_add(map.read_u64(off as usize));
        off += stride;
        touches += 1;
    }
    let touch = t1.elapsed();
    let faults = minor_faults() - f0;
    std::hint::black_box(sum);
    Ok(Pass {
        name,
        stride,
        span,
        touches,
        addr: map.addr(),
        mmap,
        touch,
        faults,
        repeats: 1,
        touch_min: touch,
        touch_max: touch,
    })
}

/// `n` runs of a pass: the median run (by touch time), with the spread.
fn repeated(c: &Ctx, name: &'static str, stride: u64, span: u64, n: usize) -> io::Result<Pass> {
    let mut runs = (0..n.max(1))
        .map(|_| pass(c, name, stride, span))
        .collect::<io::Result<Vec<_>>>()?;
    Ok(median_of(&mut runs))
}

/// The run with the median touch time, carrying the runs' count and the
/// fastest and slowest touch.
fn median_of(runs: &mut [Pass]) -> Pass {
    runs.sort_by_key(|p| p.touch);
    let mut m = runs[runs.len() / 2].clone();
    m.repeats = runs.len();
    m.touch_min = runs[0].touch;
    m.touch_max = runs[runs.len() - 1].touch;
    m
}

/// Where the kernel would put a mapping of the region by itself.
pub fn default_alignment(c: &Ctx) -> io::Result<usize> {
    let map = c.dev.mmap(
        c.mem.size as usize,
        c.mem.offset,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )?;
    Ok(alignment(map.addr()))
}

/// The passes, in order.
pub fn run(c: &Ctx) -> io::Result<Vec<Pass>> {
    Ok(vec![
        pass(c, "2m", 2 << 20, c.mem.size)?,
        repeated(c, "2m-warm", 2 << 20, c.mem.size, REPEATS)?,
        repeated(c, "4k", 4 << 10, FOURK_SPAN, REPEATS)?,
        repeated(c, "1g-warm", GIB as u64, c.mem.size, REPEATS)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_of_addresses() {
        assert_eq!(alignment(0x7f00_0020_0000), 2 << 20);
        assert_eq!(alignment(0x7f00_4000_0000), GIB);
        assert_eq!(alignment(0x1000), 4096);
        assert_eq!(alignment(0), GIB);
    }

    #[test]
    fn the_median_run_is_reported_with_the_spread() {
        let run = |us: u64, faults: u64| Pass {
            name: "4k",
            stride: 4096,
            span: 1 << 20,
            touches: 256,
            addr: 0,
            mmap: Duration::from_micros(1),
            touch: Duration::from_micros(us),
            faults,
            repeats: 1,
            touch_min: Duration::ZERO,
            touch_max: Duration::ZERO,
        };
        let mut runs = vec![run(50, 5), run(10, 1), run(900, 9), run(30, 3), run(20, 2)];
        let m = median_of(&mut runs);
        assert_eq!(
            (m.touch, m.faults, m.repeats),
            (Duration::from_micros(30), 3, 5)
        );
        assert_eq!(
            (m.touch_min, m.touch_max),
            (Duration::from_micros(10), Duration::from_micros(900))
        );
    }
}
