//! Removal with the device open and its memory mapped (issue 10, defect
//! 9): the driver's remove() zaps and blocks the memory *before* vfio-pci
//! core waits for the user to close, so a user holding on gets SIGBUS and
//! EIO, not a write-back mapping of memory that is going away. The unbind
//! (what surprise removal and the CXL core's teardown also run) completes
//! once the user closes.

use std::fs;
use std::io::Read;
use std::process::{Child, Command, Stdio};
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

    // The unbind runs in a process of its own: if it never finishes (the
    // defect this looks for), this process can still report and exit.
    let mut unbinder = Command::new("sh")
        .arg("-c")
        .arg(format!("echo {bdf} >{unbind}"))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the unbind: {e}"))?;
    let still_waiting = |u: &mut Child| -> Result<(), String> {
        match u.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "the unbind returned ({st}) while the device was open{}",
                stderr_of(u)
            )),
            Err(e) => Err(format!("waiting for the unbind: {e}")),
        }
    };
    let start = Instant::now();
    let zapped_after = loop {
        still_waiting(&mut unbinder)?;
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
    still_waiting(&mut unbinder)?;

    let closed = Instant::now();
    drop(mem);
    drop(c);
    let status = loop {
        match unbinder.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if closed.elapsed() < CLOSE_LIMIT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                return Err(format!(
                    "the unbind still waited {} s after the close",
                    CLOSE_LIMIT.as_secs()
                ))
            }
            Err(e) => return Err(format!("waiting for the unbind: {e}")),
        }
    };
    let finished = closed.elapsed();
    ensure(status.success(), || {
        format!("the unbind failed ({status}){}", stderr_of(&mut unbinder))
    })?;
    ensure(fs::read_link(format!("{dev_dir}/driver")).is_err(), || {
        "the device is still bound after the unbind".into()
    })?;
    Ok(format!(
        "unbound from {} with the memory mapped: SIGBUS {} ms into the removal and {read} from read(), while the unbind waited; it finished {} ms after the close",
        driver.file_name().unwrap_or_default().to_string_lossy(),
        zapped_after.as_millis(),
        finished.as_millis()
    ))
}

/// What an exited unbind said on stderr, as a suffix for a message.
fn stderr_of(u: &mut Child) -> String {
    let mut text = String::new();
    if let Some(e) = u.stderr.as_mut() {
        let _ = e.read_to_string(&mut text);
    }
    match text.trim() {
        "" => String::new(),
        t => format!(": {t}"),
    }
}
