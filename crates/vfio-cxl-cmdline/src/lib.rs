//! `vfio-cxl-cmdline`: reads CXL Type-2 devices bound to vfio-cxl-pci
//! through VFIO and prints the QEMU options that pass them through to a
//! guest (or the same as a libvirt `<qemu:commandline>` fragment).
//!
//! ```text
//! BDFs -> probe (sysfs driver, VFIO uAPI facts) -> device::validate
//!      -> layout::place (sizing: 1 GiB-ready windows) -> layout::qemu_options -> render
//! ```
//!
//! Everything but `probe` is pure and unit-tested; docs/install.md says
//! how to use it.

pub mod device;
pub mod layout;
pub mod probe;
pub mod render;
pub mod size;
pub mod sizing;
