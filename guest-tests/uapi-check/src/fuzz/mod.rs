//! A uAPI fuzzer for vfio-cxl-pci (issue 10): random, seeded operations
//! from several threads on one device, each checked by its oracle
//! ([`ops`]), bounded by a count and a time, with a watchdog that reports
//! an operation that hangs. See docs/host-driver.md, "uAPI fuzzer".
//!
//! Each thread's sequence of operations and arguments derives from the
//! seed ([`rng::Rng::for_thread`]); how the threads interleave is not
//! replayed, so a race reproduces from its seed with some probability, not
//! with certainty.

pub mod ops;
pub mod rng;
pub mod sigbus;
pub mod stats;
pub mod target;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::facts::fact;
use ops::{Worker, KINDS};
use stats::{Stats, STEP};
use target::Target;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Stop after this many operations (all threads together)...
    pub ops: u64,
    /// ...or after this long, whichever comes first.
    pub seconds: u64,
    pub threads: usize,
    /// An operation running longer than this is a hang.
    pub hang_seconds: u64,
    /// Written with the exit status when the run ends, also when a hung
    /// thread keeps the process from exiting (the VM test's step waits
    /// for this file rather than for the process).
    pub end_file: Option<std::path::PathBuf>,
    /// Only these operation kinds (a minimal reproduction); all when `None`.
    pub only: Option<Vec<String>>,
}

/// Writes the exit status to `opts.end_file`, if any.
fn mark_end(opts: &Options, status: i32) {
    if let Some(f) = &opts.end_file {
        if let Err(e) = std::fs::write(f, format!("{status}\n")) {
            eprintln!("uapi-fuzz: {}: {e}", f.display());
        }
    }
}

/// What each thread is doing, for the watchdog.
#[derive(Debug, Default)]
struct Doing {
    what: Mutex<String>,
    /// Milliseconds since the run started when the operation began; 0 idle.
    since_ms: AtomicU64,
    tid: AtomicU64,
}

fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64 + 1
}

/// The kernel stack of thread `tid` of this process, one line.
fn kernel_stack(tid: u64) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stack"))
        .map(|s| {
            s.lines()
                .map(|l| l.split_whitespace().nth(1).unwrap_or(l))
                .collect::<Vec<_>>()
                .join(" < ")
        })
        .unwrap_or_else(|e| format!("({e})"))
}

/// Reports a hang and ends the process: the hung thread may never return.
fn report_hang(
    doing: &[Doing],
    start: Instant,
    stats: &Stats,
    opts: &Options,
    kinds_asked: usize,
) -> ! {
    let limit = opts.hang_seconds;
    let now = ms_since(start);
    for (i, d) in doing.iter().enumerate() {
        let since = d.since_ms.load(Ordering::SeqCst);
        if since == 0 {
            continue;
        }
        let secs = (now - since) / 1000;
        let what = d.what.lock().map(|w| w.clone()).unwrap_or_default();
        let stack = kernel_stack(d.tid.load(Ordering::SeqCst));
        let line = format!(
            "thread {i} {what}: running for {secs} s (limit {limit} s); kernel stack: {stack}"
        );
        if secs >= limit {
            fact(STEP, "fuzz.hang", &line);
        } else {
            fact(STEP, "fuzz.blocked", &line);
        }
        eprintln!("uapi-fuzz: {line}");
    }
    // The blocked tasks' stacks on the console, for the record.
    let _ = std::fs::write("/proc/sysrq-trigger", "w");
    summary(stats, start, true, kinds_asked);
    mark_end(opts, 3);
    // SAFETY: ends the process at once; the hung thread cannot be joined.
    unsafe { libc::_exit(3) }
}

fn summary(stats: &Stats, start: Instant, hung: bool, kinds_asked: usize) {
    stats.report();
    let kinds_run = KINDS.iter().filter(|(k, _)| stats.ran(k)).count();
    fact(STEP, "fuzz.kinds", &format!("{kinds_run} of {kinds_asked}"));
    fact(STEP, "fuzz.sigbus", &sigbus::count().to_string());
    let line = format!(
        "{} ops in {:.1} s, {} failures, {} SIGBUS absorbed{}",
        stats.total_ops(),
        start.elapsed().as_secs_f64(),
        stats.failures(),
        sigbus::count(),
        if hung { ", HUNG" } else { "" }
    );
    fact(STEP, "fuzz.summary", &line);
    println!("uapi-fuzz: {line}");
}

/// Runs the fuzzer on `bdf`; the process exit status (0: no failure).
pub fn run(bdf: &str, opts: &Options) -> i32 {
    println!("uapi-fuzz: seed {}", opts.seed);
    fact(STEP, "fuzz.seed", &opts.seed.to_string());
    fact(
        STEP,
        "fuzz.config",
        &format!(
            "threads {} ops {} seconds {} hang {} s only {}",
            opts.threads,
            opts.ops,
            opts.seconds,
            opts.hang_seconds,
            opts.only.as_ref().map_or("all".into(), |k| k.join(","))
        ),
    );
    let weights = match ops::weights(opts.only.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("uapi-fuzz: {e}");
            mark_end(opts, 2);
            return 2;
        }
    };
    let kinds_asked = weights.iter().filter(|&&w| w > 0).count();
    let target = match Target::open(bdf) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            fact(STEP, "fuzz.error", &e);
            eprintln!("uapi-fuzz: {bdf}: {e}");
            mark_end(opts, 2);
            return 2;
        }
    };
    let largest = target
        .layout
        .region_needed
        .iter()
        .copied()
        .chain([target.layout.info_needed])
        .max()
        .unwrap_or(0);
    if largest >= 4096 {
        fact(
            STEP,
            "fuzz.error",
            &format!("an info answer of {largest} bytes"),
        );
        return 2;
    }
    sigbus::install();
    let stats = Arc::new(Stats::default());
    let doing: Arc<Vec<Doing>> = Arc::new((0..opts.threads).map(|_| Doing::default()).collect());
    let started = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);

    let workers: Vec<_> = (0..opts.threads)
        .map(|slot| {
            let (target, stats, doing, started, stop) = (
                Arc::clone(&target),
                Arc::clone(&stats),
                Arc::clone(&doing),
                Arc::clone(&started),
                Arc::clone(&stop),
            );
            let (seed, ops, weights) = (opts.seed, opts.ops, weights.clone());
            std::thread::spawn(move || {
                // SAFETY: gettid(2) has no arguments and cannot fail.
                let tid = unsafe { libc::gettid() };
                doing[slot].tid.store(tid as u64, Ordering::SeqCst);
                let mut w = Worker {
                    target: &target,
                    stats: &stats,
                    slot,
                    rng: rng::Rng::for_thread(seed, slot),
                    doing: &doing[slot].what,
                    weights,
                };
                let mut op_no = 0;
                while !stop.load(Ordering::SeqCst)
                    && Instant::now() < deadline
                    && started.fetch_add(1, Ordering::SeqCst) < ops
                {
                    let d = &doing[slot];
                    d.since_ms.store(ms_since(start), Ordering::SeqCst);
                    w.step(op_no);
                    d.since_ms.store(0, Ordering::SeqCst);
                    op_no += 1;
                }
            })
        })
        .collect();

    // The watchdog: every half second, the oldest running operation.
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if workers.iter().all(|h| h.is_finished()) {
            break;
        }
        let now = ms_since(start);
        let hung = doing.iter().any(|d| {
            let since = d.since_ms.load(Ordering::SeqCst);
            since != 0 && now - since >= opts.hang_seconds * 1000
        });
        if hung {
            stop.store(true, Ordering::SeqCst);
            report_hang(&doing, start, &stats, opts, kinds_asked);
        }
    }
    for h in workers {
        if h.join().is_err() {
            stats.fail("thread", "a fuzzing thread panicked");
        }
    }
    summary(&stats, start, false, kinds_asked);
    let status = i32::from(stats.failures() > 0);
    mark_end(opts, status);
    status
}
