//! Checks a device bound to vfio-cxl-pci against the uAPI contract
//! (docs/uapi.md), from user space, the way a VMM sees it; `coherence`
//! checks the memory of the reference guest driver (docs/guest-driver.md). Runs inside the
//! test VMs (guest-tests/harness); `pattern` is shared with the host side
//! of the coherence checks.

pub mod aer;
pub mod bandwidth;
pub mod bench;
pub mod checks;
pub mod coherence;
pub mod dmabuf;
pub mod facts;
pub mod fuzz;
pub mod isolation;
pub mod kmsg;
pub mod memory_failure;
pub mod mmio_reader;
pub mod pattern;
pub mod removal;
/// The VFIO opener, shared with vfio-cxl-cmdline (crate `vfio-cxl-uapi`).
pub use vfio_cxl_uapi::vfio;
pub mod window_tags;
