//! VFIO access to the device's CXL memory: the region's size through the
//! uAPI, the mapping, the read-back scan.

use vfio_cxl_uapi_check::checks::{Ctx, Options};

use crate::guestdriver::{RegionScan, RegionScanner};

/// The CXL_MEM region through the uAPI (needs the real device): its size.
pub fn uapi_probe(bdf: &str) -> std::result::Result<u64, String> {
    let ctx = Ctx::open(bdf, Options::default()).map_err(|e| e.to_string())?;
    Ok(ctx.mem.size)
}

/// Scans `read(offset)` over `size` bytes with a [`RegionScanner`].
pub fn scan_words(size: u64, seed: u64, mut read: impl FnMut(u64) -> u64) -> RegionScan {
    let mut scanner = RegionScanner::new(size, seed);
    for o in (0..size).step_by(8) {
        scanner.word(o, read(o));
    }
    scanner.finish()
}

/// Opens the device, maps its CXL memory, runs `f` on the mapping.
pub(super) fn with_memory<T>(
    bdf: &str,
    f: impl FnOnce(&vfio_cxl_uapi_check::vfio::Mapping, u64) -> T,
) -> std::result::Result<T, String> {
    let ctx = Ctx::open(bdf, Options::default()).map_err(|e| e.to_string())?;
    let size = ctx.mem.size;
    let map = ctx
        .dev
        .mmap(
            size as usize,
            ctx.mem.offset,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| format!("mmap of the CXL memory region: {e}"))?;
    Ok(f(&map, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_cxl_uapi_check::{coherence, pattern};

    #[test]
    fn the_read_back_scan_names_what_differs() {
        let size = 64 * 1024u64;
        let counter = coherence::counter_offset(size);
        let mut mem: Vec<u64> = (0..size / 8).map(|i| pattern::word(9, i * 8)).collect();
        mem[(counter / 8) as usize] = coherence::INCREMENTS;
        let rb = scan_words(size, 9, |o| mem[(o / 8) as usize]);
        assert_eq!((rb.bad, rb.counter), (0, coherence::INCREMENTS));
        mem[3] = 0;
        let rb = scan_words(size, 9, |o| mem[(o / 8) as usize]);
        assert_eq!((rb.bad, rb.first_bad), (1, Some(24)));
    }
}
