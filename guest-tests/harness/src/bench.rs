//! The fault benchmark (`guest-harness bench-fault`, `cargo xtask
//! bench-fault`), and what every benchmark's host side shares (reading
//! numeric facts, the guest's error fact, `--sizes`): one boot per accelerator memory size, each running
//! `vfio-cxl-uapi-check --bench-fault` on the bound device (see
//! guest-tests/uapi-check/src/bench.rs for what the passes measure).
//! A documented command, not a VM test: it asserts nothing about times.

use std::time::Duration;

use crate::console::GuestReport;
use crate::env::RunSpec;
use crate::error::{Error, Result};
use crate::hostdriver::{base_payload, base_spec, with_lib};

/// The sizes measured by default.
pub const DEFAULT_SIZES_MIB: &[u64] = &[256, 4096];

/// A benchmark's numeric fact (decimal or 0x-hex), or why it is missing.
pub fn number(report: &GuestReport, key: &str) -> Result<u64> {
    let v = report
        .fact(key)
        .ok_or_else(|| Error::msg(format!("no fact {key}")))?;
    crate::sysfs::parse_u64(v).ok_or_else(|| Error::msg(format!("{key}: {v:?} is not a number")))
}

/// The error the guest side of benchmark `what` reported in fact `key`.
pub fn guest_error(report: &GuestReport, key: &str, what: &str) -> Result<()> {
    match report.fact(key) {
        Some(e) => Err(Error::msg(format!("{what} in the guest: {e}"))),
        None => Ok(()),
    }
}

/// One pass as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub name: String,
    pub stride: u64,
    pub span: u64,
    pub touches: u64,
    pub addr: u64,
    pub mmap_us: u64,
    /// The median run's touch time, of `repeats` runs.
    pub touch_us: u64,
    pub faults: u64,
    pub repeats: u64,
    /// The fastest and slowest run's touch time.
    pub touch_us_min: u64,
    pub touch_us_max: u64,
}

/// One boot's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub size: u64,
    pub default_align: u64,
    pub passes: Vec<Pass>,
}

impl Figures {
    pub fn pass(&self, name: &str) -> Option<&Pass> {
        self.passes.iter().find(|p| p.name == name)
    }

    pub fn from_report(report: &GuestReport) -> Result<Self> {
        guest_error(report, "bench.error", "bench-fault")?;
        let num = |key: &str| number(report, &format!("bench.{key}"));
        let passes = ["2m", "2m-warm", "4k", "1g-warm"]
            .iter()
            .map(|n| {
                Ok(Pass {
                    name: n.to_string(),
                    stride: num(&format!("{n}.stride"))?,
                    span: num(&format!("{n}.span"))?,
                    touches: num(&format!("{n}.touches"))?,
                    addr: num(&format!("{n}.addr"))?,
                    mmap_us: num(&format!("{n}.mmap_us"))?,
                    touch_us: num(&format!("{n}.touch_us"))?,
                    faults: num(&format!("{n}.faults"))?,
                    repeats: num(&format!("{n}.repeats"))?,
                    touch_us_min: num(&format!("{n}.touch_us_min"))?,
                    touch_us_max: num(&format!("{n}.touch_us_max"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            size: num("size")?,
            default_align: num("default_align")?,
            passes,
        })
    }
}

/// The boot for `size_mib` of accelerator memory: an 8 GiB window (or
/// twice the size), the host-driver setup, then the benchmark.
pub fn spec(size_mib: u64) -> RunSpec {
    let payload = base_payload(&format!("bench-fault-{size_mib}")).step(
        "bench-fault",
        &with_lib("$VC/vfio-cxl-uapi-check \"$dev\" --bench-fault >&3\n"),
    );
    let mut spec = base_spec(payload, size_mib, (2 * size_mib).max(8192));
    spec.timeout = Duration::from_secs(600);
    spec
}

/// A human line for one size.
pub fn describe(f: &Figures) -> String {
    let mut s = format!(
        "{} MiB (kernel-chosen mmap alignment {:#x})",
        f.size >> 20,
        f.default_align
    );
    for p in &f.passes {
        s += &format!(
            "; {} pass: {} touches over {} MiB, mmap {} us, touch {} us ({:.1} us/touch; median of {}, {}..{} us), {} faults",
            p.name,
            p.touches,
            p.span >> 20,
            p.mmap_us,
            p.touch_us,
            p.touch_us as f64 / p.touches.max(1) as f64,
            p.repeats,
            p.touch_us_min,
            p.touch_us_max,
            p.faults
        );
    }
    s
}

/// What the 4 KiB pass says about the mapping size.
pub fn mapping_kind(p: &Pass) -> &'static str {
    let pages = p.span / 4096;
    let pmds = p.span.div_ceil(2 << 20);
    if p.faults >= pages {
        "4 KiB (one fault per page)"
    } else if p.faults <= pmds + 2 && p.faults >= pmds / 2 {
        "2 MiB PMD (one fault per 2 MiB)"
    } else if p.faults < pmds / 2 {
        "1 GiB PUD or larger (fewer faults than 2 MiB pieces)"
    } else {
        "mixed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::parse_results;

    #[test]
    fn figures_parse_from_facts() {
        let mut text = String::new();
        let mut fact = |k: &str, v: &str| {
            text += &format!(
                "VFIOCXL-RESULT {}\n",
                serde_json::json!({"kind": "fact", "step": "bench-fault", "key": format!("bench.{k}"), "value": v})
            )
        };
        fact("size", "0x10000000");
        fact("default_align", "0x200000");
        for (n, stride, touches, faults) in [
            ("2m", "2097152", "128", "128"),
            ("2m-warm", "2097152", "128", "128"),
            ("4k", "4096", "65536", "128"),
            ("1g-warm", "1073741824", "1", "1"),
        ] {
            fact(&format!("{n}.stride"), stride);
            fact(&format!("{n}.span"), "0x10000000");
            fact(&format!("{n}.touches"), touches);
            fact(&format!("{n}.addr"), "0x7f0000000000");
            fact(&format!("{n}.mmap_us"), "10");
            fact(&format!("{n}.touch_us"), "1000");
            fact(&format!("{n}.faults"), faults);
            fact(&format!("{n}.repeats"), "7");
            fact(&format!("{n}.touch_us_min"), "900");
            fact(&format!("{n}.touch_us_max"), "1500");
        }
        let f = Figures::from_report(&parse_results(&text)).unwrap();
        assert_eq!(f.size, 256 << 20);
        assert_eq!(f.pass("4k").unwrap().touches, 65536);
        assert_eq!(
            mapping_kind(f.pass("4k").unwrap()),
            "2 MiB PMD (one fault per 2 MiB)"
        );
        assert!(describe(&f).contains("4k pass: 65536 touches over 256 MiB"));
        assert!(describe(&f).contains("median of 7, 900..1500 us"));
        let mut four_k = f.pass("4k").unwrap().clone();
        four_k.faults = 65600;
        assert!(mapping_kind(&four_k).starts_with("4 KiB"));
        four_k.faults = 1;
        assert!(mapping_kind(&four_k).starts_with("1 GiB"));
        assert!(Figures::from_report(&parse_results("")).is_err());
    }

    #[test]
    fn specs_build() {
        let s = spec(4096);
        s.topology.validate().unwrap();
        assert_eq!(s.topology.windows[0].size_mib, 8192);
        assert!(s.machine.iommu);
    }
}
