//! `--memory-failure FIRST_PFN [--poison-by HOW]`: a memory error in the
//! device memory reaches the driver and its users (VM tests
//! host-driver-memory-failure and host-driver-mce). With the region mapped
//! and a pattern in pages around it, page [`POISONED`] (page frame
//! FIRST_PFN + [`POISONED`]) is reported to memory_failure():
//!
//! - `--poison-by hwpoison-inject` (the default): through the kernel's
//!   injector (debugfs `hwpoison/corrupt-pfn`), as a machine check handler
//!   would without "action required". This process, which maps the page,
//!   gets one SIGBUS with code `BUS_MCEERR_AO` at the page's address (what
//!   a VMM turns into a machine check for its guest).
//! - `--poison-by machine-check`: by a real machine check. The process
//!   pins itself to the last CPU, says fact [`MCE_READY_FACT`] (`CPU
//!   GPA`, the page's physical address) and spins in user mode reading the
//!   page; the host stops the VM, waits for that vCPU to be in user mode
//!   and injects an SRAR machine check for the address there (HMP `mce`;
//!   harness hostdriver_mce.rs). The kernel grades it "action required"
//!   in a user process, and kill_me_maybe() calls memory_failure() with
//!   `MF_ACTION_REQUIRED` as the task returns to user mode: the driver
//!   must send this process, the consumer, one `BUS_MCEERR_AR` at the
//!   page's address (and return -EHWPOISON, or the kernel kills it as
//!   "not recovered").
//!
//! Then, either way:
//!
//! - the mapping stays, the page and its neighbours keep their data (a
//!   VMM's guest keeps running and retires the page itself);
//! - `pread`/`pwrite` of the page fail with EIO, a `pread` that reaches it
//!   stops short before it, a neighbour's works;
//! - after a close and a new open the host still refuses the page.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::checks::{ensure, PAGE};
use crate::facts::fact;
use crate::isolation::open_whole;
use crate::mmio_reader::pin;
use crate::pattern;

/// The poisoned page: inside the second 2 MiB, whose mapping stays.
pub const POISONED: u64 = 513;
/// Pages that keep their data: either side of [`POISONED`].
const NEIGHBOURS: [u64; 2] = [POISONED - 1, POISONED + 1];
const SEED: u64 = 0x4d45_4d46;
const INJECT: &str = "/sys/kernel/debug/hwpoison/corrupt-pfn";
/// `BUS_MCEERR_AR` and `BUS_MCEERR_AO` of <asm-generic/siginfo.h>.
const BUS_MCEERR_AR: i32 = 4;
const BUS_MCEERR_AO: i32 = 5;
/// The fact that asks the host for the machine check: `CPU GPA`.
pub const MCE_READY_FACT: &str = "mce.ready";
/// How long the host may take to deliver it.
const MCE_LIMIT: Duration = Duration::from_secs(90);

/// How the error reaches memory_failure().
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoisonBy {
    /// debugfs `hwpoison/corrupt-pfn` (no "action required").
    HwpoisonInject,
    /// A machine check the host injects while this process runs on the
    /// page ("action required").
    MachineCheck,
}

/// What the SIGBUS handler saw: how many, the last code and address.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static CODE: AtomicI32 = AtomicI32::new(0);
static ADDR: AtomicUsize = AtomicUsize::new(0);

/// SIGBUSes after which the handler gives up: it returns to the load that
/// faulted, and a page refused at every fault (a regression) would fault
/// for ever.
const SIGNAL_LIMIT: usize = 3;

extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    CODE.store(code, Ordering::SeqCst);
    ADDR.store(addr, Ordering::SeqCst);
    if SIGNALS.fetch_add(1, Ordering::SeqCst) + 1 >= SIGNAL_LIMIT {
        const MSG: &[u8] = b"vfio-cxl-uapi-check: memory-failure: SIGBUS at every retry of the load: the page is refused at each fault\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a
        // valid buffer of its length.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(3);
        }
    }
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

pub fn run(bdf: &str, first_pfn: u64, by: PoisonBy) -> Result<String, String> {
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
    let addr = map.addr() + at(POISONED);
    let expected = match by {
        PoisonBy::HwpoisonInject => {
            catch_sigbus(true);
            let injected = std::fs::write(INJECT, format!("{pfn:#x}\n"));
            catch_sigbus(false);
            injected.map_err(|e| format!("{INJECT} <- {pfn:#x}: {e}"))?;
            BUS_MCEERR_AO
        }
        PoisonBy::MachineCheck => {
            consume_under_machine_check(pfn << 12, || map.read_u64(at(POISONED)))?;
            BUS_MCEERR_AR
        }
    };
    let (n, code, got) = (
        SIGNALS.load(Ordering::SeqCst),
        CODE.load(Ordering::SeqCst),
        ADDR.load(Ordering::SeqCst),
    );
    let name = |c: i32| match c {
        BUS_MCEERR_AR => "BUS_MCEERR_AR".to_string(),
        BUS_MCEERR_AO => "BUS_MCEERR_AO".to_string(),
        c => format!("code {c}"),
    };
    ensure(n == 1 && code == expected && got == addr, || {
        format!(
            "{n} SIGBUS, {} at {got:#x}; expected one {} at {addr:#x}",
            name(code),
            name(expected)
        )
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
        "pfn {pfn:#x} (page {POISONED}): one {} at its address, mapping intact, \
         read/write EIO (a read stops short before it), still refused after a reopen",
        name(expected)
    ))
}

/// Pins this thread to the last online CPU, asks the host for a machine
/// check at `gpa` on it (fact [`MCE_READY_FACT`]) and spins in user mode,
/// calling `read` (a load of the page), until 500 ms after a SIGBUS (a
/// second one would be counted), or [`MCE_LIMIT`].
fn consume_under_machine_check(gpa: u64, read: impl Fn() -> u64) -> Result<(), String> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpu = usize::try_from(cpus - 1).map_err(|_| format!("{cpus} CPUs online"))?;
    pin(cpu)?;
    // SAFETY: sched_getcpu has no preconditions.
    let on = unsafe { libc::sched_getcpu() };
    ensure(usize::try_from(on) == Ok(cpu), || {
        format!("pinned to CPU {cpu}, running on {on}")
    })?;
    catch_sigbus(true);
    fact("memory_failure", MCE_READY_FACT, &format!("{cpu} {gpa:#x}"));
    let asked = Instant::now();
    let mut sink = 0u64;
    let mut signalled: Option<Instant> = None;
    loop {
        // Only loads between the clock reads: the vCPU stays in user mode
        // (the clock is the vDSO's, or a syscall every 2^16 loads).
        for _ in 0..1 << 16 {
            sink = sink.wrapping_add(read());
        }
        std::hint::black_box(sink);
        let now = Instant::now();
        match signalled {
            None if SIGNALS.load(Ordering::SeqCst) > 0 => signalled = Some(now),
            Some(t) if now - t >= Duration::from_millis(500) => break,
            None if now - asked > MCE_LIMIT => {
                catch_sigbus(false);
                return Err(format!(
                    "no SIGBUS {} s after {MCE_READY_FACT} (the host's machine check never came?)",
                    MCE_LIMIT.as_secs()
                ));
            }
            _ => {}
        }
    }
    catch_sigbus(false);
    Ok(())
}
