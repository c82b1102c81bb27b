//! AER recovery with the device open and its memory mapped (issue 10,
//! defect 9): the host injects an uncorrectable non-fatal error into the
//! device (HMP `pcie_aer_inject_error`) once this process says it is
//! ready; the guest's AER driver runs the recovery, in which vfio-cxl-core
//! blocks the memory before vfio-pci core signals the user's error
//! eventfd, and unblocks it when the device is resumed. The user then
//! finds its mapping and its data back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::VFIO_PCI_ERR_IRQ_INDEX;

use crate::checks::{ensure, err, read_dies_of_sigbus, Ctx, Options, Outcome, PAGE};
use crate::facts::fact;

/// The fact that tells the host to inject the error.
pub const READY_FACT: &str = "aer.ready";
/// How long the host and the guest's AER driver may take to signal.
const SIGNAL_LIMIT: Duration = Duration::from_secs(60);
/// How long the recovery may take to give the memory back.
const RESUME_LIMIT: Duration = Duration::from_secs(10);

/// Registers the error eventfd, maps the memory, asks the host for an
/// error, waits for the signal and for the memory to come back.
pub fn recover_while_mapped(bdf: &str) -> Outcome {
    let c = Ctx::open(bdf, Options::default()).map_err(err)?;
    // SAFETY: eventfd(2) with valid flags; the fd is owned below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    ensure(raw >= 0, || {
        format!("eventfd: {}", std::io::Error::last_os_error())
    })?;
    // SAFETY: `raw` is a new fd nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    c.dev
        .set_irq_eventfd(VFIO_PCI_ERR_IRQ_INDEX, efd.as_raw_fd())
        .map_err(|e| format!("VFIO_DEVICE_SET_IRQS (error eventfd): {e}"))?;
    let mem = c
        .map_mem(PAGE as usize)
        .map_err(|e| format!("mmap memory: {e}"))?;
    let mark = 0xae12_ae12_0000_0001_u64;
    mem.write_u64(0, mark);

    fact("aer", READY_FACT, "1");
    let asked = Instant::now();
    let mut pfd = libc::pollfd {
        fd: efd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let n = loop {
        let left = SIGNAL_LIMIT.saturating_sub(asked.elapsed()).as_millis() as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break n;
        }
    };
    ensure(n == 1, || {
        format!(
            "the error eventfd was not signalled within {} s of asking the host for an error",
            SIGNAL_LIMIT.as_secs()
        )
    })?;
    let signalled = asked.elapsed();
    let mut count = [0u8; 8];
    // SAFETY: reads 8 bytes into `count` from the eventfd.
    let got = unsafe { libc::read(efd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    ensure(got == 8, || {
        format!(
            "read of the error eventfd: {}",
            std::io::Error::last_os_error()
        )
    })?;

    let since = Instant::now();
    let mut blocked_reads = 0u32;
    while read_dies_of_sigbus(mem.addr())? {
        blocked_reads += 1;
        ensure(since.elapsed() < RESUME_LIMIT, || {
            format!(
                "the memory was still blocked {} s after the error was signalled (recovery never resumed it?)",
                RESUME_LIMIT.as_secs()
            )
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure(mem.read_u64(0) == mark, || {
        format!(
            "the memory reads {:#x} after the recovery, not {mark:#x}",
            mem.read_u64(0)
        )
    })?;
    let mut b = [0u8; 8];
    c.dev
        .pread(&mut b, c.mem.offset)
        .map_err(|e| format!("read of the memory after the recovery: {e}"))?;
    ensure(u64::from_ne_bytes(b) == mark, || {
        "read() of the memory after the recovery differs from the mapping".into()
    })?;
    c.dev
        .set_irq_eventfd(VFIO_PCI_ERR_IRQ_INDEX, -1)
        .map_err(|e| format!("unregistering the error eventfd: {e}"))?;
    Ok(format!(
        "error eventfd signalled {} ms after asking (count {}); the mapping faulted {blocked_reads} time(s) after that, then read the data back, as did read()",
        signalled.as_millis(),
        u64::from_ne_bytes(count)
    ))
}
