//! `--memory-failure FIRST_PFN`: a memory error in the device memory
//! reaches the driver and its users (VM test host-driver-memory-failure).
//! With the region mapped and a pattern in pages around it, page
//! [`POISONED`] is reported to memory_failure() through the kernel's
//! injector (debugfs `hwpoison/corrupt-pfn`, FIRST_PFN + [`POISONED`]).
//! Then:
//!
//! - this process, which maps the page, gets one SIGBUS with code
//!   `BUS_MCEERR_AO` at the page's address (what a VMM turns into a
//!   machine check for its guest);
//! - the mapping stays, the page and its neighbours keep their data (a
//!   VMM's guest keeps running and retires the page itself);
//! - `pread`/`pwrite` of the page fail with EIO, a `pread` that reaches it
//!   stops short before it, a neighbour's works;
//! - after a close and a new open the host still refuses the page.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::checks::{ensure, PAGE};
use crate::isolation::open_whole;
use crate::pattern;

/// The poisoned page: inside the second 2 MiB, whose mapping stays.
pub const POISONED: u64 = 513;
/// Pages that keep their data: either side of [`POISONED`].
const NEIGHBOURS: [u64; 2] = [POISONED - 1, POISONED + 1];
const SEED: u64 = 0x4d45_4d46;
const INJECT: &str = "/sys/kernel/debug/hwpoison/corrupt-pfn";
/// `BUS_MCEERR_AO` of <asm-generic/siginfo.h>.
const BUS_MCEERR_AO: i32 = 5;

/// What the SIGBUS handler saw: how many, the last code and address.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static CODE: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    CODE.store(code, Ordering::SeqCst);
    ADDR.store(addr, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs (`true`) or removes the recording SIGBUS handler.
fn catch_sigbus(on: bool) {
    // SAFETY: a zeroed sigaction with either SIG_DFL or an SA_SIGINFO
    // handler of the right signature (it only stores to atomics).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        if on {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                on_sigbus;
            sa.sa_sigaction = handler as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO;
        } else {
            sa.sa_sigaction = libc::SIG_DFL;
        }
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

pub fn run(bdf: &str, first_pfn: u64) -> Result<String, String> {
    let (dev, map, mem) = open_whole(bdf)?;
    ensure(mem.size > (POISONED + 2) * PAGE, || {
        format!("region of {:#x} bytes too small", mem.size)
    })?;
    let word = |page: u64| pattern::word(SEED, page * PAGE);
    let at = |page: u64| (page * PAGE) as usize;
    for page in NEIGHBOURS.into_iter().chain([POISONED]) {
        map.write_u64(at(page), word(page));
    }

    let pfn = first_pfn + POISONED;
    catch_sigbus(true);
    let injected = std::fs::write(INJECT, format!("{pfn:#x}\n"));
    catch_sigbus(false);
    injected.map_err(|e| format!("{INJECT} <- {pfn:#x}: {e}"))?;

    let addr = map.addr() + at(POISONED);
    let (n, code, got) = (
        SIGNALS.load(Ordering::SeqCst),
        CODE.load(Ordering::SeqCst),
        ADDR.load(Ordering::SeqCst),
    );
    ensure(n == 1 && code == BUS_MCEERR_AO && got == addr, || {
        format!("{n} SIGBUS, code {code} at {got:#x}; expected one BUS_MCEERR_AO at {addr:#x}")
    })?;
    for page in NEIGHBOURS.into_iter().chain([POISONED]) {
        let w = map.read_u64(at(page));
        ensure(w == word(page), || {
            format!(
                "page {page} reads {w:#x} through the mapping, not {:#x}",
                word(page)
            )
        })?;
    }

    let mut buf = [0u8; 8];
    let eio = |r: io::Result<usize>, what: &str| match r {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(()),
        other => Err(format!("{what} of the poisoned page: {other:?}, not EIO")),
    };
    let page_off = mem.offset + POISONED * PAGE;
    eio(dev.pread(&mut buf, page_off), "pread")?;
    eio(dev.pwrite(&buf, page_off), "pwrite")?;
    let n = dev
        .pread(&mut buf, mem.offset + NEIGHBOURS[1] * PAGE)
        .map_err(|e| format!("pread of a neighbour: {e}"))?;
    ensure(
        n == 8 && u64::from_le_bytes(buf) == word(NEIGHBOURS[1]),
        || format!("pread of a neighbour: {n} bytes {buf:x?}"),
    )?;
    let mut three = vec![0u8; 3 * PAGE as usize];
    let n = dev
        .pread(&mut three, mem.offset + NEIGHBOURS[0] * PAGE)
        .map_err(|e| format!("pread from the page before: {e}"))?;
    ensure(n == PAGE as usize, || {
        format!("pread of 3 pages from the one before returned {n}, not {PAGE} (short before the poisoned page)")
    })?;
    drop(map);
    drop(dev);

    let (dev, map, mem) = open_whole(bdf)?;
    eio(
        dev.pread(&mut buf, mem.offset + POISONED * PAGE),
        "pread after a reopen",
    )?;
    // Mapping it again is allowed (a real error would raise a machine
    // check on consumption, which the driver answers with BUS_MCEERR_AR).
    map.read_u64(at(POISONED));
    Ok(format!(
        "pfn {pfn:#x} (page {POISONED}): one BUS_MCEERR_AO at its address, mapping intact, \
         read/write EIO (a read stops short before it), still refused after a reopen"
    ))
}
