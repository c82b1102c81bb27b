//! guest-harness: boots Debian's pinned kernel under QEMU (TCG) with a
//! generated initramfs and collects typed results from the guest.
//!
//! ```text
//! Payload (modules, files, steps) --build_initramfs--> initrd.cpio (deterministic newc)
//! Machine + Topology + kernel + initrd --Vm::args--> qemu-system-x86_64 ...
//! runner: spawn, hard timeout, console.log (ttyS0) + results.log (ttyS1)
//! console: VFIOCXL-* lines -> GuestReport; oops/WARN/panic -> problems
//! ```
//!
//! Typical use (what a VM test does):
//!
//! ```no_run
//! use guest_harness::{env::{Env, EnvOptions, RunSpec}, payload::Payload, qemu::Topology};
//! let env = Env::prepare(&EnvOptions::default())?;
//! let payload = Payload::new("hello").module("cxl_acpi").step("say", "vfiocxl_fact hello world");
//! let outcome = env.run(&RunSpec::new(Topology::single_type3(256), payload))?;
//! assert!(outcome.problems().is_empty(), "{:?}", outcome.problems());
//! assert_eq!(outcome.report.fact("hello"), Some("world"));
//! # Ok::<(), guest_harness::error::Error>(())
//! ```
//!
//! See docs/guest-harness.md.

pub mod accel_reset;
pub mod bench;
pub mod bench_bw;
pub mod bench_startup;
pub mod busybox;
pub mod cli;
pub mod console;
pub mod cpio;
pub mod demo;
pub mod device_sized;
pub mod env;
pub mod ept_memtype;
pub mod error;
pub mod guestdriver;
pub mod host_thread;
pub mod hostdriver;
pub mod hostdriver_aer;
pub mod hostdriver_dmabuf;
pub mod hostdriver_fuzz;
pub mod hostdriver_mce;
pub mod hostdriver_tenants;
pub mod hw;
pub mod kernel;
pub mod memory_failure;
pub mod modules;
pub mod nested;
pub mod nested_run;
pub mod payload;
pub mod procinfo;
pub mod qemu;
pub mod qmp;
pub mod runner;
pub mod sysfs;
pub mod tools;
pub mod topology;
pub mod vmm_fuzz;
pub mod vmm_fuzz_replug;
pub mod vmm_guard;
pub mod vmm_route;
pub mod vmtests;
pub mod vucxl;
pub mod vucxl_hotplug;
pub mod vucxl_multi;
pub mod vucxl_reset;
pub mod vucxl_smoke;
