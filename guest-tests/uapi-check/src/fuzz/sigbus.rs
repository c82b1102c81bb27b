//! Touching a device mapping that may legitimately be dead (reset in
//! progress, D3hot): a SIGBUS on an armed range is absorbed and counted,
//! so the fuzzer keeps running and the caller decides whether it was
//! allowed.
//!
//! The handler replaces the faulting page with an anonymous one (an
//! async-signal-safe mmap), so the interrupted access completes when the
//! handler returns; the op unmaps its whole mapping afterwards. A SIGBUS
//! outside every armed range restores the default action: the fuzzer dies
//! of it, as it should.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::vfio::Mapping;

/// Threads that can arm a range at once.
pub const MAX_THREADS: usize = 16;
const PAGE: usize = 4096;

static START: [AtomicUsize; MAX_THREADS] = [const { AtomicUsize::new(0) }; MAX_THREADS];
static END: [AtomicUsize; MAX_THREADS] = [const { AtomicUsize::new(0) }; MAX_THREADS];
static HIT: [AtomicBool; MAX_THREADS] = [const { AtomicBool::new(false) }; MAX_THREADS];
static COUNT: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigbus(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in 0..MAX_THREADS {
        let (s, e) = (
            START[slot].load(Ordering::SeqCst),
            END[slot].load(Ordering::SeqCst),
        );
        if s <= addr && addr < e {
            // SAFETY: the page lies inside a mapping the fuzzer owns and
            // armed; replacing it with anonymous memory lets the access
            // complete. mmap is async-signal-safe.
            unsafe {
                libc::mmap(
                    (addr & !(PAGE - 1)) as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
            }
            HIT[slot].store(true, Ordering::SeqCst);
            COUNT.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
    const MSG: &[u8] = b"uapi-fuzz: SIGBUS outside every armed mapping\n";
    // SAFETY: write(2) and sigaction(2) are async-signal-safe; the default
    // action makes the retried access kill the process.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

/// Installs the handler (once, before the threads start).
pub fn install() {
    // SAFETY: a zeroed sigaction is valid; the handler only touches
    // atomics and makes async-signal-safe calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// SIGBUSes absorbed so far.
pub fn count() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// A 64-bit access at `offset` of `map` (aligned down to 8, inside it) by
/// thread `slot`: the value read (or written), and whether it took a
/// SIGBUS.
pub fn touch(slot: usize, map: &Mapping, offset: usize, write: Option<u64>) -> (u64, bool) {
    let offset = (offset % map.len()) & !7;
    START[slot].store(map.addr(), Ordering::SeqCst);
    END[slot].store(map.addr() + map.len(), Ordering::SeqCst);
    HIT[slot].store(false, Ordering::SeqCst);
    let value = match write {
        Some(v) => {
            map.write_u64(offset, v);
            v
        }
        None => map.read_u64(offset),
    };
    START[slot].store(0, Ordering::SeqCst);
    END[slot].store(0, Ordering::SeqCst);
    (value, HIT[slot].load(Ordering::SeqCst))
}
