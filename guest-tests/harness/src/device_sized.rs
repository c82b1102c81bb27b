//! Device-sized memory (issue 15): a 128 GiB CXL Type-2 device end to end,
//! on sparse backing files, under TCG.
//!
//! - `vfio-user-cxl-128g`: the software Type-2 server with 128 GiB behind
//!   `-device vfio-user-cxl`, the guest's CXL core assembling the region
//!   and the reference guest driver mapping it: the coherence suite over
//!   its samples (`coherence::Coverage`), and the proof that the first pass
//!   mapped every GiB with one PUD.
//! - `host-driver-128g`: `cxl-accel` with 128 GiB bound to vfio-cxl-pci in
//!   the guest: uapi-check through VFIO (the host driver's huge faults),
//!   clearing by the device's Mem_Clr (hole punching, nothing written).
//!
//! Both sides sample the same words (`pattern::sample_offsets`): the first
//! and last 2 MiB, both sides of every 1 GiB boundary, and seeded random
//! offsets; the host checks each sample in the backing file.

use std::path::Path;

use crate::env::RunSpec;
use crate::error::Result;
use crate::guestdriver;
use crate::hostdriver::{self, ACCEL_ID, GUEST_SEED, OUTSIDE_SEED};
use crate::qemu::backing_file;
use crate::runner::RunOutcome;

/// The device: 128 GiB, as real Type-2 devices carry 48-192 GiB.
pub const DEVICE_MIB: u64 = 128 << 10;
/// The window: the device plus room for firmware's 1 GiB-aligned
/// pre-commit in a window QEMU aligns to 256 MiB only.
pub const WINDOW_MIB: u64 = DEVICE_MIB + (4 << 10);

pub const VFIO_USER_NAME: &str = "vfio-user-cxl-128g";
pub const HOST_DRIVER_NAME: &str = "host-driver-128g";

pub fn vfio_user_spec() -> RunSpec {
    let mut spec = guestdriver::vfio_user_spec_sized(VFIO_USER_NAME, DEVICE_MIB, WINDOW_MIB);
    spec.before_boot = Some(start_server);
    spec
}

fn start_server(dir: &Path) -> Result<()> {
    guestdriver::start_server_and_answer_sized(dir, DEVICE_MIB)
}

pub fn vfio_user_check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = guestdriver::coherence_check_sized(outcome, DEVICE_MIB);
    p.extend(gib_mapping_problem(
        outcome.report.fact("coherence.mappings_inserted"),
        DEVICE_MIB,
    ));
    p
}

/// The coherence suite's first pass over the mapping must have mapped the
/// region with 1 GiB mappings only (`pte 0 pmd 0 pud <GiB>`), about one
/// fault each: the fault-count proof that the guest maps large.
fn gib_mapping_problem(inserted: Option<&str>, mib: u64) -> Option<String> {
    let gib = mib >> 10;
    let fields: Vec<&str> = inserted.unwrap_or("").split_whitespace().collect();
    let get = |name: &str| {
        fields
            .iter()
            .position(|f| *f == name)
            .and_then(|i| fields.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (get("pte"), get("pmd"), get("pud"), get("faults")) {
        (Some(0), Some(0), Some(pud), Some(faults)) if pud == gib && faults <= gib + 16 => None,
        _ => Some(format!(
            "mappings of the first pass: {inserted:?}, expected pte 0 pmd 0 pud {gib} in about {gib} faults"
        )),
    }
}

pub fn host_driver_spec() -> RunSpec {
    let mut spec = hostdriver::base_spec(
        hostdriver::uapi_payload(HOST_DRIVER_NAME, true),
        DEVICE_MIB,
        WINDOW_MIB,
    );
    spec.before_boot = Some(start_outside_writer);
    spec.after_exit = Some(hostdriver::stop_outside_writer_after_run);
    spec
}

fn start_outside_writer(dir: &Path) -> Result<()> {
    hostdriver::start_outside_writer_at(
        &backing_file(dir, ACCEL_ID),
        DEVICE_MIB << 20,
        OUTSIDE_SEED,
        Some(GUEST_SEED),
    )
}

pub fn host_driver_check(outcome: &RunOutcome) -> Vec<String> {
    hostdriver::uapi_check_sized(outcome, DEVICE_MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gib_mappings_pass() {
        let mib = 128 << 10;
        assert_eq!(
            gib_mapping_problem(Some("pte 0 pmd 0 pud 128 faults 131"), mib),
            None
        );
        for bad in [
            "pte 0 pmd 65536 pud 0 faults 65540",
            "pte 0 pmd 512 pud 127 faults 640",
            "pte 0 pmd 0 pud 128 faults 5000",
            "",
        ] {
            assert!(gib_mapping_problem(Some(bad), mib).is_some(), "{bad}");
        }
        assert!(gib_mapping_problem(None, mib).is_some());
    }
}
