//! AER recovery with the device open and its memory mapped (issue 10,
//! defect 9): the host injects an uncorrectable error into the device
//! (HMP `pcie_aer_inject_error`) once this process says it is ready; the
//! guest's AER driver runs the recovery, in which vfio-cxl-core blocks
//! the memory before vfio-pci core signals the user's error eventfd.
//!
//! - Non-fatal: no reset; the driver unblocks the memory when the device
//!   is resumed and the user finds its mapping and data back.
//! - Fatal: the AER driver resets the link (a secondary bus reset of the
//!   root port), which wipes the function's config space (its BARs come
//!   back unassigned) and restores nothing. The memory must fault from the
//!   signal until the recovery ends; the driver's resume restores the
//!   config space, and the memory is back with its data
//!   (docs/host-driver.md, "What happens when").

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::VFIO_PCI_ERR_IRQ_INDEX;
use vfio_cxl_uapi::vfio::Mapping;

use crate::checks::{ensure, err, read_dies_of_sigbus, Ctx, Options, Outcome, PAGE};
use crate::facts::fact;
use crate::kmsg::KernelLog;

/// The fact that tells the host to inject the error.
pub const READY_FACT: &str = "aer.ready";
/// How long the host and the guest's AER driver may take to signal.
const SIGNAL_LIMIT: Duration = Duration::from_secs(60);
/// How long the recovery may take to give the memory back (non-fatal) or
/// to end (fatal).
const RESUME_LIMIT: Duration = Duration::from_secs(10);
/// How the AER driver ends a recovery (`pcie_do_recovery()`).
const RECOVERED: &str = "AER: device recovery successful";
const NOT_RECOVERED: &str = "AER: device recovery failed";
/// The word the test leaves in the memory before the error.
const MARK: u64 = 0xae12_ae12_0000_0001;

/// The error the host injects, as the guest sees its recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Severity {
    /// Uncorrectable non-fatal: recovered without a reset.
    NonFatal,
    /// Uncorrectable fatal: recovered with a link reset.
    Fatal,
}

/// Registers the error eventfd, maps the memory, asks the host for an
/// error, waits for the signal, then checks the block and that the data
/// comes back as `severity` says it must.
pub fn recover_while_mapped(bdf: &str, severity: Severity) -> Outcome {
    let c = Ctx::open(bdf, Options::default()).map_err(err)?;
    let efd = error_eventfd(&c)?;
    let mem = c
        .map_mem(PAGE as usize)
        .map_err(|e| format!("mmap memory: {e}"))?;
    mem.write_u64(0, MARK);
    let bar0 = bar0_of(bdf)?;
    // Opened before asking: the recovery's end must not be missed.
    let mut log = KernelLog::from_now().map_err(|e| format!("/dev/kmsg: {e}"))?;

    fact("aer", READY_FACT, "1");
    let asked = Instant::now();
    let count = wait_signal(&efd)?;
    let signalled = asked.elapsed();
    let recovery = match severity {
        Severity::NonFatal => resumed_by_itself(&mem)?,
        Severity::Fatal => blocked_through_the_recovery(&c, &mem, &mut log, bar0)?,
    };
    ensure(mem.read_u64(0) == MARK, || {
        format!(
            "the memory reads {:#x} after the recovery, not {MARK:#x}",
            mem.read_u64(0)
        )
    })?;
    let mut b = [0u8; 8];
    c.dev
        .pread(&mut b, c.mem.offset)
        .map_err(|e| format!("read of the memory after the recovery: {e}"))?;
    ensure(u64::from_ne_bytes(b) == MARK, || {
        "read() of the memory after the recovery differs from the mapping".into()
    })?;
    c.dev
        .set_irq_eventfd(VFIO_PCI_ERR_IRQ_INDEX, -1)
        .map_err(|e| format!("unregistering the error eventfd: {e}"))?;
    Ok(format!(
        "error eventfd signalled {} ms after asking (count {count}); {recovery}; then the mapping read the data back, as did read()",
        signalled.as_millis(),
    ))
}

/// A new eventfd registered as the device's error eventfd.
fn error_eventfd(c: &Ctx) -> Result<OwnedFd, String> {
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
    Ok(efd)
}

/// Waits for the error eventfd; its count.
fn wait_signal(efd: &OwnedFd) -> Result<u64, String> {
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
    let mut count = [0u8; 8];
    // SAFETY: reads 8 bytes into `count` from the eventfd.
    let got = unsafe { libc::read(efd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    ensure(got == 8, || {
        format!(
            "read of the error eventfd: {}",
            std::io::Error::last_os_error()
        )
    })?;
    Ok(u64::from_ne_bytes(count))
}

/// Non-fatal: the memory comes back by itself when the device resumes.
fn resumed_by_itself(mem: &Mapping) -> Result<String, String> {
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
    Ok(format!(
        "the mapping faulted {blocked_reads} time(s) after that"
    ))
}

/// Fatal: every access faults from the signal until the kernel says the
/// recovery succeeded; by then the driver's resume has restored the config
/// space the link reset wiped (BAR 0 reads as before) and the memory is
/// back.
fn blocked_through_the_recovery(
    c: &Ctx,
    mem: &Mapping,
    log: &mut KernelLog,
    bar0: u32,
) -> Result<String, String> {
    let since = Instant::now();
    let mut during = 0u32;
    let ended = loop {
        let faulted = read_dies_of_sigbus(mem.addr())?;
        // Read after the probe: a probe counts as during the recovery only
        // if the recovery had not ended when it was over.
        let ended = log
            .find(&[RECOVERED, NOT_RECOVERED])
            .map_err(|e| format!("/dev/kmsg: {e}"))?;
        ensure(faulted || ended.is_some(), || {
            format!(
                "the mapping read the memory {} ms after the error was signalled, during the recovery: it was not blocked",
                since.elapsed().as_millis(),
            )
        })?;
        match ended {
            Some(line) => break line,
            None => during += 1,
        }
        ensure(since.elapsed() < RESUME_LIMIT, || {
            format!(
                "the kernel did not end the recovery within {} s of the signal",
                RESUME_LIMIT.as_secs()
            )
        })?;
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = since.elapsed();
    ensure(ended.contains(RECOVERED), || {
        format!("the kernel's recovery: {ended}")
    })?;
    // The block itself: the recovery lasts 100 ms or more (the wait after
    // the link reset), the first probe comes within milliseconds.
    ensure(during > 0, || {
        format!("no access was refused during the recovery: it ended {} ms after the signal, before the first probe was over", took.as_millis())
    })?;
    let now = bar0_of(&c.bdf)?;
    ensure(now == bar0, || {
        format!("BAR 0 reads {now:#x} after the recovery, not {bar0:#x}: the config space the link reset wiped was not restored")
    })?;
    ensure(!read_dies_of_sigbus(mem.addr())?, || {
        "the mapping still faults after the recovery, with BAR 0 restored".into()
    })?;
    Ok(format!(
        "the mapping faulted {during} time(s) during the recovery ({} ms from the signal to the kernel's \"{RECOVERED}\"), then BAR 0 read {bar0:#x} again",
        took.as_millis()
    ))
}

/// BAR 0 of `bdf` as the hardware holds it (sysfs reads the config space
/// itself; VFIO's config region shows a virtualized BAR).
fn bar0_of(bdf: &str) -> Result<u32, String> {
    let path = format!("/sys/bus/pci/devices/{bdf}/config");
    let mut b = [0u8; 4];
    File::open(&path)
        .and_then(|f| f.read_exact_at(&mut b, 0x10))
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(u32::from_le_bytes(b))
}
