//! `--mmio-reader PHYS --cpu N`: reads the 32-bit register at physical
//! address PHYS through `/dev/mem`, back to back, on CPU N, until SIGTERM.
//! The VM test vfio-user-cxl-hotplug runs one per vCPU on the device's
//! decoder registers while the host unplugs it (issue 11, unplug
//! lifetime): whichever vCPU runs the unplug, the other is inside an
//! access to the overlay, so QEMU sees accesses that a vCPU resolved
//! before the unplug and completes after the device's exit.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// What one reader saw: how many reads, and how often each value came
/// (each batch counted as its last value).
#[derive(Debug, Default)]
pub struct Seen {
    pub reads: u64,
    pub values: BTreeMap<u32, u64>,
}

impl Seen {
    /// `0xVALUE:COUNT` pairs, most frequent first.
    pub fn describe(&self) -> String {
        let mut v: Vec<(&u32, &u64)> = self.values.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        let pairs: Vec<String> = v.iter().map(|(k, n)| format!("{k:#x}:{n}")).collect();
        format!("{} reads, values {}", self.reads, pairs.join(" "))
    }
}

/// Pins this thread to `cpu`.
pub(crate) fn pin(cpu: usize) -> Result<(), String> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(format!("CPU {cpu} out of range"));
    }
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked against the set's size above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of the size given, for this thread (0).
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity(CPU {cpu}): {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Reads in one batch.
const BATCH: u64 = 32;

/// [`BATCH`] reads in straight-line code (written out in assembly, so no
/// compiler can make a loop of it): under TCG one translation block, which
/// a vCPU kicked by a memory map change (the unplug) finishes before it
/// takes the new map, so its next reads still resolve the old one; and a
/// vCPU waiting for the BQL in one of them resolved it before. The last
/// value read.
///
/// # Safety
/// `reg` is valid for volatile 4-byte reads.
#[cfg(target_arch = "x86_64")]
unsafe fn read_batch(reg: *const u32) -> u32 {
    let v: u32;
    // SAFETY: the caller's; the loads write only `v`.
    unsafe {
        std::arch::asm!(
            ".rept 32",
            "mov {v:e}, dword ptr [{reg}]",
            ".endr",
            reg = in(reg) reg,
            v = out(reg) v,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
}

/// Elsewhere the same reads as a loop (the straight-line property is
/// x86's TCG test's).
///
/// # Safety
/// `reg` is valid for volatile 4-byte reads.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn read_batch(reg: *const u32) -> u32 {
    let mut v = 0;
    for _ in 0..BATCH {
        // SAFETY: the caller's.
        v = unsafe { reg.read_volatile() };
    }
    v
}

/// Reads PHYS on CPU `cpu` until SIGTERM; creates `ready` after the
/// first reads.
pub fn run(phys: u64, cpu: usize, ready: Option<&Path>) -> Result<Seen, String> {
    if phys % 4 != 0 {
        return Err(format!("{phys:#x} is not 4-byte aligned"));
    }
    pin(cpu)?;
    let handler: extern "C" fn(libc::c_int) = on_term;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    if unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) } == libc::SIG_ERR {
        return Err(format!("signal(SIGTERM): {}", io::Error::last_os_error()));
    }
    let mem = OpenOptions::new()
        .read(true)
        .open("/dev/mem")
        .map_err(|e| format!("/dev/mem: {e}"))?;
    let page = phys & !0xfff;
    // SAFETY: a fresh shared read-only mapping of one page of physical
    // address space; nothing else in this process refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            0x1000,
            libc::PROT_READ,
            libc::MAP_SHARED,
            mem.as_raw_fd(),
            page as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of /dev/mem at {page:#x}: {}",
            io::Error::last_os_error()
        ));
    }
    let reg = p
        .cast::<u8>()
        .wrapping_add((phys - page) as usize)
        .cast::<u32>();
    let mut seen = Seen::default();
    while !STOP.load(Ordering::Relaxed) {
        // SAFETY: inside the page mapped above, 4-aligned, live until the
        // munmap below. After the device is gone the address decodes to
        // nothing, which reads as some value, never a fault.
        let last = unsafe { read_batch(reg) };
        seen.reads += BATCH;
        // Counted cheaply (by the batch's last value): the time between
        // batches is time in which a kicked vCPU can take the new map.
        *seen.values.entry(last).or_default() += BATCH;
        if let Some(f) = ready.filter(|_| seen.reads == BATCH) {
            File::create(f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    // SAFETY: the mapping made above, unused from here on.
    unsafe { libc::munmap(p, 0x1000) };
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_described_most_frequent_first() {
        let mut s = Seen {
            reads: 5,
            ..Seen::default()
        };
        s.values.insert(0, 1);
        s.values.insert(0x10, 4);
        assert_eq!(s.describe(), "5 reads, values 0x10:4 0x0:1");
    }
}
