//! `--window-tags W WS BASE SIZE SKIP TAG MARK SEQ`: the check the
//! guest-side fuzzers (harness vmm_fuzz.rs) run after each sequence,
//! through `/dev/mem` over the whole CXL window `[W, W + WS)`:
//!
//! - every 4 KiB page of the routed range `[BASE, BASE + SIZE)` inside the
//!   window (SIZE 0: nothing routed; outside the window nothing decodes)
//!   must start with the host's tag of the device offset it decodes to,
//!   `TAG | (SKIP + offset)`;
//! - every other page of the window must not read a device tag (the top
//!   16 bits of TAG), and gets a probe `MARK << 48 | SEQ << 20 | page`,
//!   which the host must never find in the device's memory afterwards.
//!
//! Prints `checked N`, `probes N`, `bad N`, then up to
//! [`MAX_REPORTED`] lines `what DESCRIPTION`. A shell loop over the pages
//! with busybox `devmem` costs a fork per word: this checks every page.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

const PAGE: u64 = 4096;
/// Bad pages described one by one; the rest are only counted.
pub const MAX_REPORTED: usize = 5;

/// What the check was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    pub window: u64,
    pub window_size: u64,
    pub base: u64,
    pub size: u64,
    pub skip: u64,
    pub tag: u64,
    pub mark: u64,
    pub seq: u64,
}

impl Args {
    /// From the eight numbers of the command line (decimal or 0x hex).
    pub fn parse(v: &[String]) -> Result<Self, String> {
        let n: Vec<u64> = v
            .iter()
            .map(|s| {
                let r = match s.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => s.parse(),
                };
                r.map_err(|_| format!("--window-tags: {s:?} is not a number"))
            })
            .collect::<Result<_, _>>()?;
        let [window, window_size, base, size, skip, tag, mark, seq] = n[..] else {
            return Err("--window-tags needs W WS BASE SIZE SKIP TAG MARK SEQ".into());
        };
        let a = Self {
            window,
            window_size,
            base,
            size,
            skip,
            tag,
            mark,
            seq,
        };
        let aligned = [window, window_size, base, size]
            .iter()
            .all(|x| x % PAGE == 0);
        let fits = window.checked_add(window_size).is_some()
            && base.checked_add(size).is_some()
            && skip.checked_add(size).is_some()
            && i64::try_from(window).is_ok();
        // A probe must never look like a tag, and SEQ fits its 28 bits.
        let probes_distinct = mark <= 0xffff && mark != tag >> 48 && seq < 1 << 28;
        if !aligned || !fits || !probes_distinct || window_size == 0 {
            return Err(format!("--window-tags: bad geometry {a:?}"));
        }
        Ok(a)
    }
}

/// What the check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    pub checked: u64,
    pub probes: u64,
    pub bad: u64,
    pub what: Vec<String>,
}

impl Found {
    fn bad(&mut self, what: impl FnOnce() -> String) {
        self.bad += 1;
        if self.what.len() < MAX_REPORTED {
            self.what.push(what());
        }
    }
}

/// The check over `window`, a view of the window's bytes (`window[0]` at
/// physical address `a.window`), read and written one u64 at a time.
pub fn check(a: &Args, read: impl Fn(u64) -> u64, write: impl Fn(u64, u64)) -> Found {
    let mut f = Found::default();
    // Window offsets of the routed range; the device offset of window
    // offset `off` is SKIP + (window + off - BASE).
    let routed = a.base.saturating_sub(a.window)..(a.base + a.size).saturating_sub(a.window);
    for off in (0..a.window_size).step_by(PAGE as usize) {
        let v = read(off);
        if a.size != 0 && routed.contains(&off) {
            let want = a.tag | (a.skip + (a.window + off - a.base));
            if v != want {
                f.bad(|| {
                    format!(
                        "sequence {}: {:#x} (routed {:#x}+{:#x} skip {:#x}) reads {v:#x}, not {want:#x}",
                        a.seq,
                        a.window + off,
                        a.base,
                        a.size,
                        a.skip
                    )
                });
            }
            f.checked += 1;
        } else {
            if v >> 48 == a.tag >> 48 {
                f.bad(|| {
                    format!(
                        "sequence {}: {:#x} outside the routed range {:#x}+{:#x} reads the device's {v:#x}",
                        a.seq,
                        a.window + off,
                        a.base,
                        a.size
                    )
                });
            }
            write(off, a.mark << 48 | a.seq << 20 | (off / PAGE) & 0xf_ffff);
            f.probes += 1;
        }
    }
    f
}

/// Maps `/dev/mem` over the window and runs [`check`].
pub fn run(a: &Args) -> Result<Found, String> {
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")
        .map_err(|e| format!("/dev/mem: {e}"))?;
    let len = a.window_size as usize;
    // SAFETY: a fresh shared mapping of physical memory through /dev/mem;
    // nothing else in this process refers to the range it returns.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            mem.as_raw_fd(),
            a.window as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of /dev/mem at {:#x}+{:#x}: {}",
            a.window,
            a.window_size,
            io::Error::last_os_error()
        ));
    }
    let base = p.cast::<u64>();
    let read = |off: u64| {
        // SAFETY: `check` passes page offsets below window_size: inside
        // the mapping made above, 8-aligned, live until the munmap below.
        unsafe { base.add(off as usize / 8).read_volatile() }
    };
    let write = |off: u64, v: u64| {
        // SAFETY: as for `read`.
        unsafe { base.add(off as usize / 8).write_volatile(v) }
    };
    let found = check(a, read, write);
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(p, len) };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const TAG: u64 = 0x7a6e_0000_0000_0000;

    fn args(v: &[&str]) -> Result<Args, String> {
        Args::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_page_is_checked_or_probed() {
        let a = args(&[
            "0x100000",
            "0x10000",
            "0x104000",
            "0x2000",
            "0x3000",
            "0x7a6e000000000000",
            "0x3e5c",
            "7",
        ])
        .unwrap();
        let mem = RefCell::new(vec![0u64; 16]);
        // The routed pages hold their device tags.
        mem.borrow_mut()[4] = TAG | 0x3000;
        mem.borrow_mut()[5] = TAG | 0x4000;
        let f = check(
            &a,
            |o| mem.borrow()[(o / PAGE) as usize],
            |o, v| mem.borrow_mut()[(o / PAGE) as usize] = v,
        );
        assert_eq!((f.checked, f.probes, f.bad), (2, 14, 0), "{f:?}");
        assert_eq!(mem.borrow()[0], 0x3e5c << 48 | 7 << 20);
        assert_eq!(mem.borrow()[4], TAG | 0x3000, "routed pages are not probed");
    }

    #[test]
    fn a_wrong_tag_and_an_escape_are_bad() {
        let a = args(&[
            "0",
            "0x4000",
            "0x1000",
            "0x1000",
            "0",
            "0x7a6e000000000000",
            "0x3e5c",
            "1",
        ])
        .unwrap();
        let mem = [TAG | 0x2000, TAG | 0x1000, 0, 0];
        let f = check(&a, |o| mem[(o / PAGE) as usize], |_, _| {});
        assert_eq!(f.bad, 2, "{f:?}");
        assert!(f.what[0].contains("outside the routed range"), "{f:?}");
        assert!(
            f.what[1].contains("reads 0x7a6e000000001000, not 0x7a6e000000000000"),
            "{f:?}"
        );
    }

    #[test]
    fn nothing_routed_probes_the_whole_window() {
        let a = args(&[
            "0",
            "0x3000",
            "0",
            "0",
            "0",
            "0x7a6e000000000000",
            "0x3e5c",
            "1",
        ])
        .unwrap();
        let f = check(&a, |_| 0, |_, _| {});
        assert_eq!((f.checked, f.probes), (0, 3));
    }

    #[test]
    fn a_routed_range_past_the_window_is_checked_inside_it() {
        let a = args(&[
            "0x2000",
            "0x2000",
            "0x1000",
            "0x3000",
            "0x100000",
            "0x7a6e000000000000",
            "0x3e5c",
            "1",
        ])
        .unwrap();
        // Window pages 0x2000 and 0x3000 decode to device offsets
        // 0x101000 and 0x102000.
        let mem = [TAG | 0x101000, TAG | 0x102000];
        let f = check(&a, |o| mem[(o / PAGE) as usize], |_, _| panic!("no probe"));
        assert_eq!((f.checked, f.probes, f.bad), (2, 0, 0), "{f:?}");
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(args(&["0", "0x1001", "0", "0", "0", "1", "1", "1"]).is_err());
        assert!(args(&["0", "0x1000"]).is_err());
        // A probe mark equal to the tag's top bits, or past 16 bits.
        for mark in ["0x7a6e", "0x10000"] {
            let v = [
                "0",
                "0x1000",
                "0",
                "0",
                "0",
                "0x7a6e000000000000",
                mark,
                "1",
            ];
            assert!(args(&v).is_err(), "{mark}");
        }
        assert!(args(&["0", "0x1000", "0", "0", "0", "1", "1", "x"]).is_err());
    }
}
