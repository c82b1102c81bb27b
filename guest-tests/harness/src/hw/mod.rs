//! `guest-harness hw-test`: the coherence suite on a real CXL Type-2
//! device bound to `vfio-cxl-pci` (docs/real-hardware.md).
//!
//! ```text
//! preflight (sysfs, /dev/vfio, binaries, /dev/kvm) -> the CXL_MEM region through the uAPI
//! -> outside pattern into the device memory through VFIO (and the one found there checked)
//! -> VFIO closed; QEMU -device vfio-cxl,host=BDF boots the guest (cxl-type2-ref + coherence)
//! -> VFIO reopened: the guest's pattern, counter and checksum read back
//! ```
//!
//! One VFIO owner at a time: this process closes the device before QEMU
//! opens it, and opens it again after QEMU exited. The nested chain
//! (`nested.rs`) runs the same command inside its L1 guest, where the
//! "hardware" is the emulated `cxl-accel`.

mod guest;
mod memory;
mod options;
mod preflight;
mod run;
pub mod vfio_files;

pub use guest::{check_guest, guest_cmdline, guest_payload, guest_topology, GuestCxl};
pub use memory::{scan_words, uapi_probe};
#[cfg(test)]
pub use options::parse_args;
pub use options::{normalize_bdf, AccelChoice, HwArgs, HwOptions};
pub use preflight::{preflight, Finding, Preflight};

use std::time::Duration;

/// The host's VFIO variant driver the device must be bound to.
pub const HOST_DRIVER: &str = "vfio-cxl-pci";
/// Pattern written into the device memory before the boot (the guest
/// must find it in every word).
pub const OUTSIDE_SEED: u64 = 0x0b0d_0115;
/// Pattern the guest leaves in every word for the read-back.
pub const GUEST_SEED: u64 = 0x0b0d_6e57;
/// Exit status when a preflight check failed (nothing was booted).
pub const EXIT_PREFLIGHT: u8 = 3;
/// Exit status on bad usage.
pub const EXIT_USAGE: u8 = 2;

/// Reports results: a line on stderr, and a fact line on stdout with
/// `--facts`.
struct Out {
    facts: bool,
}

impl Out {
    fn fact(&self, key: &str, value: &str) {
        if self.facts {
            println!(
                "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":\"hw-test\",\"key\":{},\"value\":{}}}",
                serde_json::Value::from(key),
                serde_json::Value::from(value)
            );
        }
    }

    fn say(&self, line: &str) {
        eprintln!("hw-test: {line}");
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// `guest-harness hw-test ARGS`: the exit status (0 pass, 1 a check
/// failed, 2 usage, 3 preflight).
pub fn main(args: HwArgs) -> u8 {
    let o = match args.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hw-test: {e} (guest-harness hw-test --help)");
            return EXIT_USAGE;
        }
    };
    let out = Out { facts: o.facts };
    match run::run(&o, &out) {
        Ok(code) => code,
        Err(e) => {
            out.say(&format!("FAIL: {e}"));
            out.fact("hw.result", &format!("FAIL: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's arguments, split at whitespace.
    pub(super) fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn checks_clap_cannot_make_exit_2() {
        let a = parse_args(&args("--bdf 3b:00.0 --write-seed 1 --guest-seed 1")).unwrap();
        assert_eq!(main(a), EXIT_USAGE);
        assert_eq!(parse_args(&args("--help")).unwrap_err().exit_code(), 0);
        assert_eq!(parse_args(&args("--bdf")).unwrap_err().exit_code(), 2);
    }
}
