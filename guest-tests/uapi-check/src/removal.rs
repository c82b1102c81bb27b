//! Removal with the device open and its memory mapped (issue 10, defect
//! 9): the driver's remove() zaps and blocks the memory *before* vfio-pci
//! core waits for the user to close, so a user holding on gets SIGBUS and
//! EIO, not a write-back mapping of memory that is going away. The unbind
//! (what surprise removal and the CXL core's teardown also run) completes
//! once the user closes.

use std::fs;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::checks::{ensure, err, read_dies_of_sigbus, Ctx, Options, Outcome, PAGE};

/// How long remove() may take to take the memory away.
const ZAP_LIMIT: Duration = Duration::from_secs(10);
/// How long the unbind may take to finish once the user closed.
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

/// Unbinds `bdf` from its driver while this process has it open with the
/// memory mapped; checks the memory is gone while the unbind waits, and
/// that the unbind finishes after the close.
pub fn remove_while_mapped(bdf: &str) -> Outcome {
    let dev_dir = format!("/sys/bus/pci/devices/{bdf}");
    let driver = fs::read_link(format!("{dev_dir}/driver"))
        .map_err(|e| format!("{dev_dir}/driver: {e} (not bound?)"))?;
    let unbind = format!("{dev_dir}/driver/unbind");
    let c = Ctx::open(bdf, Options::default()).map_err(err)?;
    let mem = c
        .map_mem(PAGE as usize)
        .map_err(|e| format!("mmap memory: {e}"))?;
    let mark = 0x7e40_7e40_0000_0009_u64;
    mem.write_u64(0, mark);
    ensure(mem.read_u64(0) == mark, || {
        "the memory does not keep a write before the removal".into()
    })?;
    ensure(!read_dies_of_sigbus(mem.addr())?, || {
        "the mapping SIGBUSes before the removal".into()
    })?;

    let (done_tx, done) = mpsc::channel();
    let target = bdf.to_string();
    let unbinder = std::thread::spawn(move || {
        let r = fs::write(&unbind, &target).map_err(|e| format!("write {unbind}: {e}"));
        let _ = done_tx.send(Instant::now());
        r
    });
    let start = Instant::now();
    let zapped_after = loop {
        ensure(done.try_recv().is_err(), || {
            "the unbind returned while the device was open".into()
        })?;
        if read_dies_of_sigbus(mem.addr())? {
            break start.elapsed();
        }
        ensure(start.elapsed() < ZAP_LIMIT, || {
            format!(
                "the mapping was still readable {} s into the removal, with the unbind waiting for this user",
                ZAP_LIMIT.as_secs()
            )
        })?;
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut b = [0u8; 8];
    let read = match c.dev.pread(&mut b, c.mem.offset) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => "EIO",
        r => {
            return Err(format!(
                "read of the memory during the removal: {r:?}, not EIO"
            ))
        }
    };
    ensure(done.try_recv().is_err(), || {
        "the unbind returned while the device was open".into()
    })?;

    let closed = Instant::now();
    drop(mem);
    drop(c);
    let finished = done.recv_timeout(CLOSE_LIMIT).map_err(|_| {
        format!(
            "the unbind still waited {} s after the close",
            CLOSE_LIMIT.as_secs()
        )
    })?;
    unbinder
        .join()
        .map_err(|_| "the unbinding thread panicked".to_string())??;
    ensure(fs::read_link(format!("{dev_dir}/driver")).is_err(), || {
        "the device is still bound after the unbind".into()
    })?;
    Ok(format!(
        "unbound from {} with the memory mapped: SIGBUS {} ms into the removal and {read} from read(), while the unbind waited; it finished {} ms after the close",
        driver.file_name().unwrap_or_default().to_string_lossy(),
        zapped_after.as_millis(),
        finished.saturating_duration_since(closed).as_millis()
    ))
}
