// SPDX-License-Identifier: GPL-2.0-or-later

//! Mem_Clr of a CXL Reset: the device memory's pages go back to the host
//! (`ram_block_discard_range()`: holes punched in a file or memfd backing,
//! anonymous memory dropped with madvise) instead of being overwritten, so
//! clearing a large sparse backend costs neither time nor disk. Afterwards
//! the whole memory reads zeros.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::bindings;

/// Discards every page of the RAM block behind `mr`, the region of a
/// memory backend. On failure, returns a message for the log (QEMU's
/// discard code has reported the details with error_report()).
pub fn discard_all(mr: *mut system::bindings::MemoryRegion) -> Result<(), String> {
    // SAFETY: `mr` is the region of a live memory backend (the device's
    // link holds a reference); its RAMBlock pointer is set at allocation
    // and constant afterwards.
    let rb = unsafe { (*mr).ram_block };
    if rb.is_null() {
        return Err("the memory backend has no RAM block".into());
    }
    // SAFETY: `rb` is the backend's RAMBlock (checked non-null above).
    let length = unsafe { system::bindings::qemu_ram_get_used_length(rb) };
    let length = usize::try_from(length).map_err(|_| format!("{length:#x} bytes is too large"))?;
    // SAFETY: as above; offset 0 and the used length are page aligned and
    // inside the block. Called under the BQL, like every device callback.
    let ret = unsafe { bindings::ram_block_discard_range(rb, 0, length) };
    if ret == 0 {
        Ok(())
    } else {
        Err(format!(
            "discarding {length:#x} bytes failed: {}",
            std::io::Error::from_raw_os_error(-ret)
        ))
    }
}

/// error_report() the first failure only, like C's error_report_once():
/// a guest ringing CXL Reset in a loop must not flood the log (QEMU's
/// discard code reports each failure itself).
pub fn report_once(msg: &str) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let msg = std::ffi::CString::new(msg).unwrap_or_default();
    // SAFETY: a valid C string and format.
    unsafe { bindings::error_report(c"%s".as_ptr(), msg.as_ptr()) };
}
