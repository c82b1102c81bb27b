//! `--memory-failure FIRST_PFN`: a memory error in the device memory is
//! contained (VM test host-driver-memory-failure). With the region mapped
//! and a pattern in pages around it, page [`POISONED`] is reported to
//! memory_failure() through the kernel's injector (debugfs
//! `hwpoison/corrupt-pfn`, FIRST_PFN + [`POISONED`]). Then:
//!
//! - touching it kills with SIGBUS, code `BUS_MCEERR_AR`, at its address
//!   (what a VMM turns into a machine check for its guest);
//! - its neighbours, in the same 2 MiB, keep their data and stay mapped;
//! - `pread`/`pwrite` of it fail with EIO, of a neighbour work;
//! - after a close and a new open the page is still withdrawn.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::checks::{ensure, PAGE};
use crate::isolation::open_whole;
use crate::pattern;

/// The poisoned page: inside the second 2 MiB, so that the PMD around it
/// must fall back to 4 KiB pages and the neighbours stay usable.
pub const POISONED: u64 = 513;
/// Pages that keep their data: either side of [`POISONED`].
const NEIGHBOURS: [u64; 2] = [POISONED - 1, POISONED + 1];
const SEED: u64 = 0x4d45_4d46;
const INJECT: &str = "/sys/kernel/debug/hwpoison/corrupt-pfn";
/// `BUS_MCEERR_AR` of <asm-generic/siginfo.h>.
const BUS_MCEERR_AR: i32 = 4;

/// The address the SIGBUS handler of [`sigbus_of`]'s child expects.
static EXPECTED_ADDR: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let at = i32::from(addr == EXPECTED_ADDR.load(Ordering::Relaxed));
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0x40 | (at << 4) | (code & 0xf)) }
}

/// How a read of the u64 at `addr` ends, in a child: `None` if it read,
/// `Some((si_code, at_addr))` if it took SIGBUS.
fn sigbus_of(addr: usize) -> Result<Option<(i32, bool)>, String> {
    EXPECTED_ADDR.store(addr, Ordering::Relaxed);
    // SAFETY: the child installs a handler, does one volatile read of a
    // mapping it inherited and _exit()s; nothing else runs after fork().
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: a zeroed sigaction with an SA_SIGINFO handler of the
        // right signature; `addr` is an aligned address of a live mapping.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                on_sigbus;
            sa.sa_sigaction = handler as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            (addr as *const u64).read_volatile();
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child just created; `status` is a valid pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", io::Error::last_os_error()));
    }
    ensure(libc::WIFEXITED(status), || {
        format!("reader child ended with status {status:#x}")
    })?;
    match libc::WEXITSTATUS(status) {
        0 => Ok(None),
        s if s & 0x40 != 0 => Ok(Some((s & 0xf, s & 0x10 != 0))),
        s => Err(format!("reader child exited with {s}")),
    }
}

/// The poisoned page kills with BUS_MCEERR_AR at its address.
fn expect_poisoned(addr: usize, when: &str) -> Result<(), String> {
    match sigbus_of(addr)? {
        Some((BUS_MCEERR_AR, true)) => Ok(()),
        Some((code, at)) => Err(format!(
            "{when}: SIGBUS code {code} (at the page: {at}), not BUS_MCEERR_AR"
        )),
        None => Err(format!("{when}: the poisoned page still reads")),
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
    std::fs::write(INJECT, format!("{pfn:#x}\n"))
        .map_err(|e| format!("{INJECT} <- {pfn:#x}: {e}"))?;

    let addr = map.addr() + at(POISONED);
    expect_poisoned(addr, "after injection")?;
    for page in NEIGHBOURS {
        ensure(sigbus_of(map.addr() + at(page))?.is_none(), || {
            format!("neighbour page {page} SIGBUSes")
        })?;
        let w = map.read_u64(at(page));
        ensure(w == word(page), || {
            format!("neighbour page {page} reads {w:#x}, not {:#x}", word(page))
        })?;
    }

    let mut buf = [0u8; 8];
    let eio = |r: io::Result<usize>, what: &str| match r {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(()),
        other => Err(format!("{what} of the poisoned page: {other:?}, not EIO")),
    };
    eio(dev.pread(&mut buf, mem.offset + POISONED * PAGE), "pread")?;
    eio(dev.pwrite(&buf, mem.offset + POISONED * PAGE), "pwrite")?;
    let n = dev
        .pread(&mut buf, mem.offset + NEIGHBOURS[1] * PAGE)
        .map_err(|e| format!("pread of a neighbour: {e}"))?;
    ensure(
        n == 8 && u64::from_le_bytes(buf) == word(NEIGHBOURS[1]),
        || format!("pread of a neighbour: {n} bytes {buf:x?}"),
    )?;
    drop(map);
    drop(dev);

    let (_dev, map, _) = open_whole(bdf)?;
    expect_poisoned(map.addr() + at(POISONED), "after a reopen")?;
    ensure(sigbus_of(map.addr() + at(NEIGHBOURS[0]))?.is_none(), || {
        "neighbour page SIGBUSes after a reopen".into()
    })?;
    Ok(format!(
        "pfn {pfn:#x} (page {POISONED}) SIGBUS BUS_MCEERR_AR at its address, read/write EIO, \
         neighbours intact, still withdrawn after a reopen"
    ))
}
