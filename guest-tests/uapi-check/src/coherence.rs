//! `--coherence-dev /dev/cxl-type2-refN`: the coherence checks over the
//! device memory that the reference guest Type-2 driver (`cxl-type2-ref`,
//! guest-tests/guest-driver) maps write-back, with the Linux CXL core of
//! the guest as the driver's client (docs/guest-driver.md).
//!
//! Every check covers the whole region; the host side of the harness
//! prepared the memory-backend file before the boot (pattern
//! `expect_seed` in every word) and checks it after the guest exited
//! (pattern `write_seed` in every word but the counter, the counter, the
//! checksum).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pattern::{self, Checksum};

/// `CXL_T2REF_GET_INFO`: `_IOR(0xCF, 0, struct cxl_t2ref_info)`
/// (guest-tests/guest-driver/cxl_type2_ref.h).
pub const GET_INFO: u32 = (2 << 30) | (16 << 16) | (0xCF << 8);

/// Writer threads and atomic-increment threads.
pub const THREADS: u64 = 2;
/// Total `fetch_add(1)`s on the counter word, over [`THREADS`] threads.
pub const INCREMENTS: u64 = 1_000_000;

/// `fetch_add(1)`s the outside (the answerer of [`answer_pings`]) adds to
/// the counter while the guest's threads add theirs, when there is an
/// outside (`--ping-pong`).
pub const OUTSIDE_INCREMENTS: u64 = 200_000;

/// The counter's value after the atomics check.
pub fn expected_counter(with_outside: bool) -> u64 {
    INCREMENTS + if with_outside { OUTSIDE_INCREMENTS } else { 0 }
}

/// The word the guest and the outside start and end the shared atomics
/// with: [`ATOMICS_READY`] (guest: counter zeroed, its threads start),
/// [`ATOMICS_RUNNING`] (outside: incrementing), [`ATOMICS_DONE`]
/// (outside: done). The guest waits for DONE only (the outside may pass
/// through RUNNING faster than the guest looks), then puts its pattern
/// back into the word.
pub fn atomics_flag_offset(size: u64) -> u64 {
    size - 8192 + 256
}
pub const ATOMICS_READY: u64 = 0xa7_0001;
pub const ATOMICS_RUNNING: u64 = 0xa7_0002;
pub const ATOMICS_DONE: u64 = 0xa7_0003;

/// The byte offset of the counter word: the start of the last 4 KiB.
pub fn counter_offset(size: u64) -> u64 {
    size - 4096
}

/// The ping word (written by the guest) and the pong word (written by the
/// outside process), in two cache lines of the second-to-last 4 KiB.
pub fn ping_pong_offsets(size: u64) -> (u64, u64) {
    (size - 8192, size - 8192 + 64)
}

/// The words the suite writes, reads and checksums, on both sides: every
/// word of a region up to [`pattern::DENSE_SAMPLING_MAX`], and of a larger
/// one (a real device's 48-192 GiB, which TCG cannot sweep) the
/// [`pattern::sample_offsets`] plus the words the suite itself uses
/// (counter, atomics flag, ping, pong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    Every { size: u64 },
    Sampled(Vec<u64>),
}

impl Coverage {
    pub fn of(size: u64) -> Self {
        if size <= pattern::DENSE_SAMPLING_MAX {
            return Self::Every { size };
        }
        let (ping, pong) = ping_pong_offsets(size);
        let mut v = pattern::sample_offsets(size);
        v.extend([counter_offset(size), atomics_flag_offset(size), ping, pong]);
        v.sort_unstable();
        v.dedup();
        Self::Sampled(v)
    }

    /// How many words.
    pub fn words(&self) -> u64 {
        match self {
            Self::Every { size } => size / 8,
            Self::Sampled(v) => v.len() as u64,
        }
    }

    /// Part `k` of `n` disjoint parts, in ascending order; part 0 of 1 is
    /// every covered word.
    pub fn part(&self, k: u64, n: u64) -> Box<dyn Iterator<Item = u64> + Send + '_> {
        let per = self.words().div_ceil(n);
        let to = ((k + 1) * per).min(self.words());
        let from = (k * per).min(to);
        match self {
            Self::Every { .. } => Box::new((from..to).map(|i| i * 8)),
            Self::Sampled(v) => Box::new(v[from as usize..to as usize].iter().copied()),
        }
    }

    /// Every covered word's offset, ascending.
    pub fn offsets(&self) -> Box<dyn Iterator<Item = u64> + Send + '_> {
        self.part(0, 1)
    }
}

/// The words of the outside-write handshake, in the second-to-last 4 KiB
/// after the ping and pong lines: the reader, once it has the device open
/// and mapped, writes [`READY`] into the first; the outside then writes
/// its pattern into every other word and [`GO`] into the second. Data the
/// outside writes before the open would not survive it (the host driver
/// clears device memory at open).
pub fn handshake_offsets(size: u64) -> (u64, u64) {
    (size - 8192 + 128, size - 8192 + 192)
}
/// The reader is ready ("READY" in ASCII).
pub const READY: u64 = 0x0059_4441_4552;
/// The outside has written its pattern ("GO" in ASCII).
pub const GO: u64 = 0x4f47;
/// The reader left its data for the outside, the device still open
/// ("LEFT", first handshake word): the way back, before a close clears it.
pub const LEFT: u64 = 0x5446_454c;
/// The outside has read it ("SEEN", second handshake word).
pub const SEEN: u64 = 0x4e45_4553;

/// How long either side of the handshake waits for the other.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(600);

/// The outside side of the handshake, on the memory file `f` (the host's
/// view of the device memory): waits for [`READY`], writes pattern `seed`
/// into every covered word ([`Coverage`]) but the two handshake words,
/// then [`GO`]. Returns how
/// long it waited for the reader.
pub fn write_when_ready(f: &File, seed: u64, stop: &AtomicBool) -> Result<Duration, String> {
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let m = Map::new(f, size as usize).map_err(|e| format!("mmap: {e}"))?;
    let (ready, go) = handshake_offsets(size);
    let t = Instant::now();
    while m.word(ready as usize / 8).load(Ordering::SeqCst) != READY {
        if stop.load(Ordering::Relaxed) || t.elapsed() > HANDSHAKE_TIMEOUT {
            return Err(format!(
                "the reader never said READY ({:.1} s)",
                t.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let waited = t.elapsed();
    for o in Coverage::of(size)
        .offsets()
        .filter(|&o| o != ready && o != go)
    {
        m.word(o as usize / 8)
            .store(pattern::word(seed, o), Ordering::Relaxed);
    }
    m.word(go as usize / 8).store(GO, Ordering::SeqCst);
    Ok(waited)
}

/// The outside side of the way back, after [`write_when_ready`]: waits for
/// [`LEFT`], returns the words at `offsets`, then writes [`SEEN`].
pub fn read_when_left(f: &File, offsets: &[u64], stop: &AtomicBool) -> Result<Vec<u64>, String> {
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let m = Map::new(f, size as usize).map_err(|e| format!("mmap: {e}"))?;
    let (left, seen) = handshake_offsets(size);
    let t = Instant::now();
    while m.word(left as usize / 8).load(Ordering::SeqCst) != LEFT {
        if stop.load(Ordering::Relaxed) || t.elapsed() > HANDSHAKE_TIMEOUT {
            return Err(format!(
                "the reader never said LEFT ({:.1} s)",
                t.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let words = offsets
        .iter()
        .map(|&o| m.word(o as usize / 8).load(Ordering::SeqCst))
        .collect();
    m.word(seen as usize / 8).store(SEEN, Ordering::SeqCst);
    Ok(words)
}

/// The checks, in order (fact keys `coherence.<name>`); `ping_pong` only
/// with `--ping-pong N`.
pub const CHECKS: [&str; 7] = [
    "info",
    "outside_pattern",
    "mappings",
    "guest_pattern",
    "atomics",
    "ping_pong",
    "checksum",
];

/// `struct cxl_t2ref_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct Info {
    size: u64,
    flags: u64,
}

/// What to check: `expect_seed` in every word at the start, then write
/// `write_seed` everywhere.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub expect_seed: u64,
    pub write_seed: u64,
    /// Round trips with a process outside the guest (0: no ping-pong).
    pub ping_pong: u64,
}

/// One check's result: the detail of a pass, or why it failed.
pub type Outcome = Result<String, String>;

/// The mapped region.
#[derive(Debug)]
struct Map {
    addr: NonNull<u8>,
    size: usize,
}

impl Map {
    fn new(f: &File, size: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of the device; nothing else
        // refers to the range it returns.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: NonNull::new(p.cast()).expect("mmap returned NULL"),
            size,
        })
    }

    fn words(&self) -> usize {
        self.size / 8
    }

    /// The word at word index `i`, as an atomic (aligned: the mapping is
    /// page-aligned).
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words());
        // SAFETY: in bounds, 8-aligned, mapped for the life of `self`;
        // all accesses in this module go through atomics.
        unsafe { AtomicU64::from_ptr(self.addr.as_ptr().cast::<u64>().add(i)) }
    }
}

// SAFETY: the mapping is plain shared memory, accessed only through atomics.
unsafe impl Sync for Map {}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.size) };
    }
}

fn info(f: &File, dev: &str) -> Result<u64, String> {
    let mut i = Info::default();
    // SAFETY: GET_INFO writes one `struct cxl_t2ref_info` into `i`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), GET_INFO as _, &mut i) };
    if rc != 0 {
        return Err(format!(
            "CXL_T2REF_GET_INFO: {}",
            io::Error::last_os_error()
        ));
    }
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let sysfs = format!("/sys/class/misc/{name}/size");
    let s = std::fs::read_to_string(&sysfs).map_err(|e| format!("{sysfs}: {e}"))?;
    if s.trim().parse::<u64>().ok() != Some(i.size) {
        return Err(format!("{sysfs} says {s:?}, the ioctl {}", i.size));
    }
    if i.size == 0 || i.size % (2 << 20) != 0 || i.flags != 0 {
        return Err(format!("size {:#x} flags {:#x}", i.size, i.flags));
    }
    Ok(i.size)
}

/// Mappings the driver inserted so far: 4 KiB, 2 MiB, 1 GiB (its sysfs
/// `inserted_pte`, `_pmd`, `_pud`).
fn inserted(dev: &str) -> Result<[u64; 3], String> {
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let mut n = [0; 3];
    for (v, which) in n.iter_mut().zip(["pte", "pmd", "pud"]) {
        let path = format!("/sys/class/misc/{name}/inserted_{which}");
        let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        *v = s.trim().parse().map_err(|_| format!("{path} says {s:?}"))?;
    }
    Ok(n)
}

/// This process's minor faults so far.
fn minor_faults() -> u64 {
    // SAFETY: getrusage fills the rusage it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
}

/// Fault-count proof that the first pass over a fresh mapping got huge
/// mappings: what the driver inserted covers the region exactly once,
/// with no 4 KiB page where the mapping is 2 MiB-aligned (CXL regions are
/// 256 MiB-aligned), in about one fault per mapping.
fn mappings(
    m: &Map,
    before: ([u64; 3], u64),
    after: ([u64; 3], u64),
    fact: &mut dyn FnMut(&str, &str),
) -> Outcome {
    let [pte, pmd, pud] = [0, 1, 2].map(|i| after.0[i] - before.0[i]);
    let faults = after.1 - before.1;
    let aligned = m.addr.as_ptr() as usize % (2 << 20) == 0;
    fact(
        "coherence.mappings_inserted",
        &format!("pte {pte} pmd {pmd} pud {pud} faults {faults}"),
    );
    let covered = (pte << 12) + (pmd << 21) + (pud << 30);
    if covered != m.size as u64 {
        return Err(format!(
            "inserted pte {pte} pmd {pmd} pud {pud}: {covered:#x} bytes, the region has {:#x}",
            m.size
        ));
    }
    if aligned && pte != 0 {
        return Err(format!(
            "{pte} 4 KiB mappings in a 2 MiB-aligned mapping (pmd {pmd}, pud {pud})"
        ));
    }
    let want = pud + pmd + pte.div_ceil(512);
    if faults > want + 16 {
        return Err(format!(
            "{faults} minor faults for {want} mappings (pte {pte} pmd {pmd} pud {pud})"
        ));
    }
    Ok(format!(
        "{} MiB in pud {pud} pmd {pmd} pte {pte}, {faults} minor faults",
        m.size >> 20
    ))
}

fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// Every word holds pattern `seed`; reports the digest of every word read
/// (fact `coherence.outside_digest`), which the side that wrote the
/// pattern compares with its own ([`pattern::pattern_digest`]).
fn outside_pattern(
    m: &Map,
    cover: &Coverage,
    seed: u64,
    fact: &mut dyn FnMut(&str, &str),
) -> Outcome {
    let t = Instant::now();
    let (mut bad, mut first) = (0u64, None);
    let mut read = Checksum::default();
    for o in cover.offsets() {
        let want = pattern::word(seed, o);
        let got = m.word(o as usize / 8).load(Ordering::Relaxed);
        read.add(got);
        if got != want {
            bad += 1;
            first.get_or_insert((o, got, want));
        }
    }
    fact("coherence.outside_digest", &pattern::hex(read.0));
    match first {
        None => Ok(format!(
            "outside pattern {seed} seen in all {} words covered ({} ms)",
            cover.words(),
            ms(t)
        )),
        Some((o, got, want)) => Err(format!(
            "{bad} of {} words differ from pattern {seed}; first at {o:#x}: {got:#x}, expected {want:#x}",
            cover.words()
        )),
    }
}

/// [`THREADS`] threads write pattern `seed` over disjoint parts at once.
fn guest_pattern(m: &Map, cover: &Coverage, seed: u64) -> Outcome {
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..THREADS {
            s.spawn(move || {
                for o in cover.part(k, THREADS) {
                    m.word(o as usize / 8)
                        .store(pattern::word(seed, o), Ordering::Relaxed);
                }
            });
        }
    });
    Ok(format!(
        "pattern {seed} written by {THREADS} threads over disjoint parts ({} ms)",
        ms(t)
    ))
}

/// [`INCREMENTS`] `fetch_add(1)` on one word from [`THREADS`] threads.
/// With `outside` (an answerer maps the memory), its
/// [`OUTSIDE_INCREMENTS`] run at the same time on the same word, and the
/// flag word gets `seed`'s pattern back afterwards.
fn atomics(m: &Map, outside: bool, seed: u64) -> Outcome {
    let i = (counter_offset(m.size as u64) / 8) as usize;
    let c = m.word(i);
    c.store(0, Ordering::SeqCst);
    let flag_at = atomics_flag_offset(m.size as u64);
    let flag = m.word(flag_at as usize / 8);
    let wait_for = |want: u64| {
        let t = Instant::now();
        while flag.load(Ordering::SeqCst) != want {
            if t.elapsed() > PING_PONG_TIMEOUT {
                return Err(format!(
                    "the outside never set the atomics flag to {want:#x} (it is {:#x})",
                    flag.load(Ordering::SeqCst)
                ));
            }
            std::hint::spin_loop();
        }
        Ok(())
    };
    if outside {
        flag.store(ATOMICS_READY, Ordering::SeqCst);
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..INCREMENTS / THREADS {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    if outside {
        wait_for(ATOMICS_DONE)?;
        flag.store(pattern::word(seed, flag_at), Ordering::SeqCst);
    }
    let v = c.load(Ordering::SeqCst);
    let want = expected_counter(outside);
    let from_outside = if outside {
        format!(" and {OUTSIDE_INCREMENTS} from outside at the same time")
    } else {
        String::new()
    };
    if v == want {
        Ok(format!(
            "counter at {:#x} = {v} after {THREADS} threads{from_outside} ({} ms)",
            i * 8,
            ms(t)
        ))
    } else {
        Err(format!("counter {v}, expected {want}"))
    }
}

/// The outside's part of the shared atomics (the flag is READY): its
/// increments, and how many of them found another side's increment in
/// between (evidence that they really ran at the same time).
fn outside_atomics(m: &Map) -> u64 {
    let size = m.size as u64;
    let flag = m.word(atomics_flag_offset(size) as usize / 8);
    let c = m.word(counter_offset(size) as usize / 8);
    flag.store(ATOMICS_RUNNING, Ordering::SeqCst);
    let (mut interleaved, mut last) = (0u64, None);
    for _ in 0..OUTSIDE_INCREMENTS {
        let prev = c.fetch_add(1, Ordering::SeqCst);
        if last.is_some_and(|l: u64| prev != l + 1) {
            interleaved += 1;
        }
        last = Some(prev);
    }
    flag.store(ATOMICS_DONE, Ordering::SeqCst);
    interleaved
}

/// What the outside did while the guest ran: ping-pong rounds answered,
/// and its atomics (`None`: the guest never asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub rounds: u64,
    /// Of [`OUTSIDE_INCREMENTS`], how many saw the guest's in between.
    pub atomics_interleaved: Option<u64>,
}

/// How long either side of the ping-pong waits for the other.
const PING_PONG_TIMEOUT: Duration = Duration::from_secs(60);

/// `rounds` round trips with a process outside the guest that maps the
/// same memory ([`answer_pings`]): write `i` to the ping word, wait for
/// `i` in the pong word.
fn ping_pong(m: &Map, rounds: u64) -> Outcome {
    let (pi, po) = ping_pong_offsets(m.size as u64);
    let (ping, pong) = (m.word(pi as usize / 8), m.word(po as usize / 8));
    let t = Instant::now();
    for i in 1..=rounds {
        ping.store(i, Ordering::SeqCst);
        let mut spins = 0u64;
        while pong.load(Ordering::SeqCst) != i {
            spins += 1;
            if spins % 1024 == 0 && t.elapsed() > PING_PONG_TIMEOUT {
                return Err(format!(
                    "round {i}: no answer from outside within {PING_PONG_TIMEOUT:?} (pong {:#x})",
                    pong.load(Ordering::SeqCst)
                ));
            }
            std::hint::spin_loop();
        }
    }
    let ns = t.elapsed().as_nanos();
    Ok(format!(
        "{rounds} round trips with a process outside the guest ({} us, {} ns each)",
        ns / 1000,
        ns / u128::from(rounds.max(1))
    ))
}

/// The outside side of the ping-pong, on a file (or device) the guest's
/// memory is mapped from: answers each ping `i` with pong `i`, for
/// `rounds` rounds, until `stop` is set or the guest is silent for the
/// timeout. Returns the rounds answered.
pub fn answer_pings(f: &File, rounds: u64, stop: &AtomicBool) -> Result<Answered, String> {
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let m = Map::new(f, size as usize).map_err(|e| format!("mmap: {e}"))?;
    let (pi, po) = ping_pong_offsets(size);
    let (ping, pong) = (m.word(pi as usize / 8), m.word(po as usize / 8));
    let flag = m.word(atomics_flag_offset(size) as usize / 8);
    let mut atomics_interleaved = None;
    let (mut i, mut idle, mut last) = (1u64, 0u64, Instant::now());
    while i <= rounds {
        if stop.load(Ordering::Relaxed) {
            return Err(format!("stopped after {} rounds", i - 1));
        }
        if atomics_interleaved.is_none() && flag.load(Ordering::SeqCst) == ATOMICS_READY {
            atomics_interleaved = Some(outside_atomics(&m));
            idle = 0;
            continue;
        }
        if ping.load(Ordering::SeqCst) == i {
            pong.store(i, Ordering::SeqCst);
            i += 1;
            idle = 0;
            last = Instant::now();
            continue;
        }
        idle += 1;
        if idle < 100_000 {
            std::hint::spin_loop();
        } else {
            // The guest is booting or busy: do not steal its CPU.
            std::thread::sleep(Duration::from_micros(200));
            if i > 1 && last.elapsed() > PING_PONG_TIMEOUT {
                return Err(format!("the guest went silent after {} rounds", i - 1));
            }
        }
    }
    Ok(Answered {
        rounds,
        atomics_interleaved,
    })
}

/// The [`Checksum`] of the covered words, in order.
fn checksum(m: &Map, cover: &Coverage) -> (u64, u128) {
    let t = Instant::now();
    let mut c = Checksum::default();
    for o in cover.offsets() {
        c.add(m.word(o as usize / 8).load(Ordering::Relaxed));
    }
    (c.0, ms(t))
}

/// Runs the checks; `report(name, outcome)` gets each, `fact(key, value)`
/// the data (`coherence.size`, `coherence.checksum_value`).
pub fn run(
    dev: &str,
    o: Options,
    report: &mut dyn FnMut(&str, &Outcome),
    fact: &mut dyn FnMut(&str, &str),
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut done = |name: &str, r: Outcome, out: &mut Vec<Outcome>| {
        report(name, &r);
        out.push(r);
    };
    let f = match OpenOptions::new().read(true).write(true).open(dev) {
        Ok(f) => f,
        Err(e) => {
            done("info", Err(format!("open {dev}: {e}")), &mut out);
            return out;
        }
    };
    let size = match info(&f, dev) {
        Ok(s) => s,
        Err(e) => {
            done("info", Err(e), &mut out);
            return out;
        }
    };
    fact("coherence.size", &format!("{size:#x}"));
    done(
        "info",
        Ok(format!("size {size:#x} (ioctl and sysfs agree)")),
        &mut out,
    );
    let m = match Map::new(&f, size as usize) {
        Ok(m) => m,
        Err(e) => {
            done("outside_pattern", Err(format!("mmap: {e}")), &mut out);
            return out;
        }
    };
    let cover = Coverage::of(size);
    fact("coherence.covered_words", &cover.words().to_string());
    let before = inserted(dev).map(|n| (n, minor_faults()));
    done(
        "outside_pattern",
        outside_pattern(&m, &cover, o.expect_seed, fact),
        &mut out,
    );
    let after = inserted(dev).map(|n| (n, minor_faults()));
    let r = before.and_then(|b| after.map(|a| (b, a)));
    done(
        "mappings",
        r.and_then(|(b, a)| mappings(&m, b, a, fact)),
        &mut out,
    );
    done(
        "guest_pattern",
        guest_pattern(&m, &cover, o.write_seed),
        &mut out,
    );
    done(
        "atomics",
        atomics(&m, o.ping_pong > 0, o.write_seed),
        &mut out,
    );
    if o.ping_pong > 0 {
        done("ping_pong", ping_pong(&m, o.ping_pong), &mut out);
    }
    let (sum, took) = checksum(&m, &cover);
    fact("coherence.checksum_value", &format!("{sum:#018x}"));
    done(
        "checksum",
        Ok(format!(
            "{sum:#018x} over {} words ({took} ms)",
            cover.words()
        )),
        &mut out,
    );
    out
}

/// The PCI driver's sysfs directory (`unbind`).
const DRIVER_SYSFS: &str = "/sys/bus/pci/drivers/cxl-type2-ref";

/// Unbinds PCI device `bdf` from the driver while `dev` is open and
/// mapped: afterwards the ioctl and a new mmap fail with ENODEV and the
/// old mapping raises SIGBUS (checked in a child process).
pub fn unbind_while_mapped(dev: &str, bdf: &str) -> Outcome {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("open {dev}: {e}"))?;
    let size = info(&f, dev)?;
    let m = Map::new(&f, size as usize).map_err(|e| format!("mmap: {e}"))?;
    let before = m.word(0).load(Ordering::Relaxed);
    std::fs::write(format!("{DRIVER_SYSFS}/unbind"), bdf)
        .map_err(|e| format!("unbind {bdf}: {e}"))?;
    let mut i = Info::default();
    // SAFETY: as in `info`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), GET_INFO as _, &mut i) };
    let errno = io::Error::last_os_error().raw_os_error();
    if rc == 0 || errno != Some(libc::ENODEV) {
        return Err(format!("ioctl after unbind: rc {rc}, errno {errno:?}"));
    }
    match Map::new(&f, 4096) {
        Ok(_) => return Err("a new mmap after unbind succeeded".into()),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(format!("a new mmap after unbind: {e}, expected ENODEV")),
    }
    // SAFETY: single-threaded here (no scoped thread is alive); the child
    // only loads one word and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let v = m.word(0).load(Ordering::Relaxed);
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(if v == before { 0 } else { 1 }) };
    }
    let mut st = 0;
    // SAFETY: waits for the child forked above.
    if unsafe { libc::waitpid(pid, &mut st, 0) } != pid {
        return Err(format!("waitpid: {}", io::Error::last_os_error()));
    }
    if !(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGBUS) {
        return Err(format!(
            "the old mapping was still accessible after unbind (wait status {st:#x})"
        ));
    }
    Ok(format!(
        "{bdf} unbound with {dev} mapped: ioctl and mmap ENODEV, access SIGBUS"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_every_word_of_a_small_region_and_samples_of_a_large_one() {
        let small = Coverage::of(256 << 20);
        assert_eq!(small, Coverage::Every { size: 256 << 20 });
        assert_eq!(small.words(), (256 << 20) / 8);
        let parts: Vec<u64> = (0..THREADS).flat_map(|k| small.part(k, THREADS)).collect();
        assert!(
            parts.iter().copied().eq(small.offsets()),
            "parts are disjoint, in order"
        );
        assert_eq!(parts.len() as u64, small.words());

        let size = 128u64 << 30;
        let large = Coverage::of(size);
        let Coverage::Sampled(v) = &large else {
            panic!("128 GiB must be sampled")
        };
        let (ping, pong) = ping_pong_offsets(size);
        for o in [counter_offset(size), atomics_flag_offset(size), ping, pong] {
            assert!(v.contains(&o), "{o:#x}: the suite's own words are covered");
        }
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        let parts: Vec<u64> = (0..THREADS).flat_map(|k| large.part(k, THREADS)).collect();
        assert_eq!(&parts, v);
    }

    /// The ioctl number and the struct agree with the C header the guest
    /// driver is built from (compiled here with the system's cc and the
    /// kernel's uAPI headers).
    #[test]
    fn ioctl_number_and_struct_match_the_c_header() {
        let dir = std::env::temp_dir().join(format!("t2ref-h-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("probe.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\n#include <stddef.h>\n#include \"cxl_type2_ref.h\"\n\
             int main(void) { printf(\"%lu %zu %zu %zu\\n\", (unsigned long)CXL_T2REF_GET_INFO,\n\
             sizeof(struct cxl_t2ref_info), offsetof(struct cxl_t2ref_info, size),\n\
             offsetof(struct cxl_t2ref_info, flags)); return 0; }\n",
        )
        .unwrap();
        let header_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-driver");
        let bin = dir.join("probe");
        let cc = std::process::Command::new("cc")
            .arg("-I")
            .arg(header_dir)
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cc ({e}): tools/setup-apt (as root)"));
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = std::process::Command::new(&bin).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let c: Vec<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(c[0], u64::from(GET_INFO), "CXL_T2REF_GET_INFO");
        assert_eq!(c[1], std::mem::size_of::<Info>() as u64);
        assert_eq!(c[2], std::mem::offset_of!(Info, size) as u64);
        assert_eq!(c[3], std::mem::offset_of!(Info, flags) as u64);
    }

    #[test]
    fn the_outside_writes_only_after_ready_and_then_says_go() {
        let dir = std::env::temp_dir().join(format!("handshake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mem");
        let size = 4u64 << 20;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(size).unwrap();
        let reader = Map::new(&f, size as usize).unwrap();
        let (ready, go) = handshake_offsets(size);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let writer = s.spawn(|| write_when_ready(&f, 7, &stop));
            std::thread::sleep(Duration::from_millis(100));
            // Nothing written before READY.
            assert_eq!(reader.word(0).load(Ordering::SeqCst), 0);
            reader
                .word(ready as usize / 8)
                .store(READY, Ordering::SeqCst);
            writer.join().unwrap().unwrap();
        });
        assert_eq!(reader.word(go as usize / 8).load(Ordering::SeqCst), GO);
        let read: Vec<u64> = (0..reader.words())
            .filter(|&i| i as u64 * 8 != ready && i as u64 * 8 != go)
            .map(|i| reader.word(i).load(Ordering::Relaxed))
            .collect();
        let offsets = pattern::all_offsets(size).filter(|&o| o != ready && o != go);
        assert_eq!(pattern::digest(read), pattern::pattern_digest(7, offsets));
        // The way back: the reader leaves data and says LEFT, the outside
        // reads it and says SEEN.
        reader.word(8).store(42, Ordering::SeqCst);
        reader
            .word(ready as usize / 8)
            .store(LEFT, Ordering::SeqCst);
        assert_eq!(read_when_left(&f, &[64], &stop).unwrap(), [42]);
        assert_eq!(reader.word(go as usize / 8).load(Ordering::SeqCst), SEEN);
        // A reader that never says READY: the writer gives up when stopped.
        let stopped = AtomicBool::new(true);
        reader.word(ready as usize / 8).store(0, Ordering::SeqCst);
        assert!(write_when_ready(&f, 7, &stopped)
            .unwrap_err()
            .contains("never said READY"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_outside_increments_the_counter_beside_the_guest() {
        let dir = std::env::temp_dir().join(format!("atomics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mem");
        let size = 4u64 << 20;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(size).unwrap();
        let guest = Map::new(&f, size as usize).unwrap();
        let stop = AtomicBool::new(false);
        let (detail, pings, answered) = std::thread::scope(|s| {
            let outside = s.spawn(|| answer_pings(&f, 2, &stop));
            let detail = atomics(&guest, true, 9);
            let pings = ping_pong(&guest, 2);
            // A failed guest side must not leave the outside waiting.
            stop.store(true, Ordering::Relaxed);
            (detail, pings, outside.join().unwrap())
        });
        std::fs::remove_dir_all(&dir).unwrap();
        let (detail, answered) = (detail.unwrap(), answered.unwrap());
        pings.unwrap();
        assert!(detail.contains("= 1200000"), "{detail}");
        assert_eq!(answered.rounds, 2);
        assert!(answered.atomics_interleaved.is_some());
        let flag = atomics_flag_offset(size);
        assert_eq!(
            guest.word(flag as usize / 8).load(Ordering::SeqCst),
            pattern::word(9, flag)
        );
    }

    #[test]
    fn the_counter_is_in_the_last_page() {
        assert_eq!(counter_offset(256 << 20), (256 << 20) - 4096);
    }
}
