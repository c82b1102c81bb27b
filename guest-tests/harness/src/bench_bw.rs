//! The bandwidth benchmark (`guest-harness bench-bw`, `cargo xtask
//! bench-bw`): in one guest, memcpy bandwidth to (a) guest RAM, (b) the
//! window of `-device vfio-user-cxl` (the server's memory mapped straight
//! into the CFMW, the mapping code `-device vfio-cxl` uses too), through
//! the reference guest driver's `/dev/cxl-type2-ref0`, and (c) the window
//! of a stock QEMU `cxl-type3`, through a RAM region the guest creates in
//! sysfs and its device-dax instance. Reports b/a and c/a.
//!
//! A documented command, not a VM test; the one requirement it checks is
//! the issue's b/a >= [`MIN_DIRECT_RATIO`], on ratios taken in the same
//! run with the targets interleaved (guest-tests/uapi-check/src/bandwidth.rs).

use std::collections::BTreeMap;

use serde_json::json;

use crate::bench::{guest_error, number};
use crate::console::GuestReport;
use crate::env::RunSpec;
use crate::error::{Error, Result};
use crate::guestdriver::{self, CHAR_DEV};
use crate::payload::Payload;
use crate::qemu::{Endpoint, HostBridge, RootPort, Window};

/// Target names (facts `bw.<name>.*`).
pub const RAM: &str = "ram";
pub const DIRECT: &str = "vfio-user-cxl";
pub const TYPE3: &str = "cxl-type3";
/// What b/a must reach (issue 5).
pub const MIN_DIRECT_RATIO: f64 = 0.9;

/// The copy sizes and repeats by default.
pub const DEFAULT_SIZES_MIB: &[u64] = &[1, 4, 16];
pub const DEFAULT_REPEATS: u32 = 7;

/// The stock type-3 device: its host bridge (bus number = the ACPI UID
/// the root decoder's target_list names), its memory.
const T3_HB: &str = "cxl.2";
const T3_BUS_NR: u32 = 20;
const T3_ID: &str = "t3mem0";
const T3_MIB: u64 = 256;
const WINDOW_MIB: u64 = 4096;

/// The modules a RAM region needs on top of the CXL ones: the CXL DAX
/// region driver and device-dax (kmem, which would claim the dax device
/// for the page allocator, stays out).
pub const DAX_MODULES: &[&str] = &["dax_cxl", "device_dax"];

/// Creates a RAM region over the whole stock type-3 device through sysfs
/// (the steps of `cxl create-region -t ram`), then binds its dax device to
/// device_dax (as `daxctl reconfigure-device -m devdax`: a CXL RAM region's
/// dax device is of the kmem type). Writes the /dev node to /tmp/t3dax.
const TYPE3_REGION_SH: &str = r#"C=/sys/bus/cxl/devices
t3=
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor; read -r p <$d/device
	[ "$v:$p" = 0x8086:0x0d93 ] && t3=${d##*/}
done
[ -n "$t3" ] || { echo "no cxl-type3 (8086:0d93) on PCI"; exit 1; }
t3_endpoint() {
	for e in $C/endpoint*; do
		[ -e $e/uport ] || continue
		l=$(readlink $e/uport)
		case "$l" in */$t3/mem*) ep=${e##*/}; mem=${l##*/}; return 0 ;; esac
	done
	return 1
}
wait_for 600 t3_endpoint || { fail "no CXL endpoint for $t3"; exit 1; }
root=
for r in $C/decoder0.*; do read -r tl <$r/target_list; [ "$tl" = @UID@ ] && root=${r##*/}; done
[ -n "$root" ] || { fail "no root decoder targets host bridge @UID@"; exit 1; }
for x in $C/$ep/decoder*; do dec=${x##*/}; break; done
read -r size <$C/$mem/ram/size
read -r ig <$C/$root/interleave_granularity
read -r region <$C/$root/create_ram_region
echo $region >$C/$root/create_ram_region || { fail "create_ram_region $region"; exit 1; }
echo $ig >$C/$region/interleave_granularity || { fail "$region: interleave_granularity $ig"; exit 1; }
echo 1 >$C/$region/interleave_ways || { fail "$region: interleave_ways"; exit 1; }
echo $size >$C/$region/size || { fail "$region: size $size"; exit 1; }
echo ram >$C/$dec/mode || { fail "$dec: mode ram"; exit 1; }
echo $size >$C/$dec/dpa_size || { fail "$dec: dpa_size $size"; exit 1; }
echo $dec >$C/$region/target0 || { fail "$region: target0 $dec"; exit 1; }
echo 1 >$C/$region/commit || { fail "$region: commit"; exit 1; }
have $C/$region/driver || echo $region >/sys/bus/cxl/drivers/cxl_region/bind
daxdev() { for x in /sys/bus/dax/devices/dax*; do [ -e $x ] && dax=${x##*/} && return 0; done; return 1; }
wait_for 300 daxdev || { fail "no dax device for $region"; exit 1; }
have /sys/bus/dax/devices/$dax/driver || echo $dax >/sys/bus/dax/drivers/device_dax/new_id
wait_for 100 have /dev/$dax || { fail "no /dev/$dax"; exit 1; }
l=$(readlink /sys/bus/dax/devices/$dax/driver)
echo /dev/$dax >/tmp/t3dax
vfiocxl_fact t3.pci "$t3"
vfiocxl_fact t3.endpoint "$ep"
vfiocxl_fact t3.memdev "$mem"
vfiocxl_fact t3.root_decoder "$root"
vfiocxl_fact t3.decoder "$dec"
vfiocxl_fact t3.region "$region"
vfiocxl_fact t3.dax "/dev/$dax"
vfiocxl_fact t3.dax_driver "${l##*/}"
"#;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub sizes_mib: Vec<u64>,
    pub repeats: u32,
    /// Let anonymous memory use transparent huge pages (off: 4 KiB pages
    /// like the window's mapping; see uapi-check's bandwidth.rs).
    pub thp: bool,
    /// The C library's memcpy without AVX ([`NO_AVX_TUNABLES`]).
    pub no_avx: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            sizes_mib: DEFAULT_SIZES_MIB.to_vec(),
            repeats: DEFAULT_REPEATS,
            thp: false,
            no_avx: false,
        }
    }
}

/// glibc's tunables that keep its memcpy off AVX (SSE2 moves and `rep
/// movsb` instead): under KVM the cxl-type3 window is MMIO, every access
/// goes through KVM's instruction emulator, which has no VEX-encoded
/// moves (an AVX `vmovdqu` from the window stopped the guest with "KVM
/// internal error. Suberror: 3"; docs/benchmarks.md).
pub const NO_AVX_TUNABLES: &str =
    "glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX_Fast_Unaligned_Load";

/// The step that runs the benchmark on the three targets.
pub fn bench_step(p: &Params) -> String {
    let sizes: Vec<String> = p.sizes_mib.iter().map(u64::to_string).collect();
    let env = if p.no_avx {
        format!("GLIBC_TUNABLES={NO_AVX_TUNABLES} ")
    } else {
        String::new()
    };
    guestdriver::with_lib(&format!(
        "read -r t3 </tmp/t3dax\n{env}$GD/vfio-cxl-uapi-check --bench-bw --sizes {} --repeats {}{} {RAM} {DIRECT}={CHAR_DEV} {TYPE3}=$t3 >&3\n",
        sizes.join(","),
        p.repeats,
        if p.thp { " --thp" } else { "" }
    ))
}

/// The machine of the benchmark and the main job: the reference guest
/// driver's vfio-user-cxl setup (`guest-driver-vfio-user-cxl`: server on
/// the host, memory file filled, host ping thread) plus a second host
/// bridge with a stock `cxl-type3` and its own window; the payload keeps
/// that test's steps named in `keep` and the DAX modules are added.
pub fn machine_spec(name: &str, keep: &[&str]) -> RunSpec {
    let mut spec = guestdriver::vfio_user_spec();
    spec.topology.host_bridges.push(HostBridge {
        id: T3_HB.into(),
        bus_nr: T3_BUS_NR,
        hdm_for_passthrough: false,
        root_ports: vec![RootPort {
            id: "rp-t3".into(),
            port: 0,
            chassis: 1,
            slot: 3,
            endpoint: Some(Endpoint::Type3Volatile {
                id: T3_ID.into(),
                size_mib: T3_MIB,
            }),
        }],
    });
    spec.topology.windows.push(Window {
        targets: vec![T3_HB.into()],
        size_mib: WINDOW_MIB,
        granularity: None,
    });
    let old = std::mem::replace(&mut spec.payload, Payload::new(name));
    spec.payload.modules = old.modules;
    spec.payload.files = old.files;
    spec.payload.cmdline = old.cmdline;
    spec.payload.steps = old
        .steps
        .into_iter()
        .filter(|s| keep.contains(&s.name.as_str()))
        .collect();
    for m in DAX_MODULES {
        spec.payload = spec.payload.clone().module(m);
    }
    spec
}

/// Inserts the type-3 region step after the step named `after`.
pub fn with_type3_region(mut p: Payload, after: &str) -> Payload {
    let at = p
        .steps
        .iter()
        .position(|s| s.name == after)
        .map_or(p.steps.len(), |i| i + 1);
    let tail = p.steps.split_off(at);
    p = p.step(
        "type3-region",
        &guestdriver::with_lib(&TYPE3_REGION_SH.replace("@UID@", &T3_BUS_NR.to_string())),
    );
    p.steps.extend(tail);
    p
}

/// `bench-bw`'s boot: bind the guest driver, create the type-3 region,
/// measure.
pub fn spec(p: &Params) -> RunSpec {
    let mut spec = machine_spec("bench-bw", &["bind", "report-dmesg"]);
    spec.payload = with_type3_region(spec.payload, "bind");
    let dmesg = spec.payload.steps.pop();
    spec.payload = spec.payload.step("bench-bw", &bench_step(p));
    spec.payload.steps.extend(dmesg);
    spec
}

/// Copy direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// RAM buffer -> target (memcpy *to* the target).
    Write,
    /// Target -> RAM buffer.
    Read,
}

impl Dir {
    pub const ALL: [Dir; 2] = [Dir::Write, Dir::Read];

    pub fn name(self) -> &'static str {
        match self {
            Dir::Write => "write",
            Dir::Read => "read",
        }
    }
}

/// What the guest measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub targets: Vec<String>,
    pub paths: BTreeMap<String, String>,
    pub sizes: Vec<u64>,
    pub repeats: u32,
    /// Anonymous memory with transparent huge pages (fact `bw.thp`).
    pub thp: bool,
    /// (target, direction, size) -> copy times in ns, one per repeat.
    pub ns: BTreeMap<(String, Dir, u64), Vec<u64>>,
}

/// The median of `v` (the upper one of an even count).
pub fn median(v: &[u64]) -> Option<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied()
}

/// Bytes per ns -> MB/s (10^6 bytes per second).
fn mbps(bytes: u64, ns: u64) -> f64 {
    bytes as f64 * 1e3 / ns.max(1) as f64
}

impl Figures {
    pub fn from_report(report: &GuestReport) -> Result<Self> {
        guest_error(report, "bw.error", "bench-bw")?;
        let list = |key: &str| -> Result<Vec<String>> {
            Ok(report
                .fact(key)
                .ok_or_else(|| Error::msg(format!("no fact {key}")))?
                .split(',')
                .map(str::to_string)
                .collect())
        };
        let targets = list("bw.targets")?;
        let sizes = list("bw.sizes")?
            .iter()
            .map(|s| {
                crate::sysfs::parse_u64(s)
                    .ok_or_else(|| Error::msg(format!("bw.sizes: {s:?} is not a number")))
            })
            .collect::<Result<Vec<u64>>>()?;
        let repeats = number(report, "bw.repeats")? as u32;
        let thp = match report.fact("bw.thp") {
            Some("on") => true,
            Some("off") => false,
            v => return Err(Error::msg(format!("bw.thp: {v:?}, expected on or off"))),
        };
        let mut paths = BTreeMap::new();
        let mut ns = BTreeMap::new();
        for t in &targets {
            let path = report
                .fact(&format!("bw.{t}.path"))
                .ok_or_else(|| Error::msg(format!("no fact bw.{t}.path")))?;
            paths.insert(t.clone(), path.to_string());
            for d in Dir::ALL {
                for &size in &sizes {
                    let key = format!("bw.{t}.{}.{size}", d.name());
                    let times = list(&key)?
                        .iter()
                        .map(|v| {
                            v.parse::<u64>()
                                .map_err(|_| Error::msg(format!("{key}: {v:?} is not a number")))
                        })
                        .collect::<Result<Vec<u64>>>()?;
                    if times.len() != repeats as usize {
                        return Err(Error::msg(format!(
                            "{key}: {} times, expected {repeats}",
                            times.len()
                        )));
                    }
                    ns.insert((t.clone(), d, size), times);
                }
            }
        }
        Ok(Self {
            targets,
            paths,
            sizes,
            repeats,
            thp,
            ns,
        })
    }

    /// Median MB/s of `target` copying `size` bytes in direction `d`.
    pub fn mbps(&self, target: &str, d: Dir, size: u64) -> Option<f64> {
        let ns = median(self.ns.get(&(target.to_string(), d, size))?)?;
        Some(mbps(size, ns))
    }

    /// The headline figure: the median MB/s of every copy of every size
    /// (the most samples, so the least sensitive to the host's load).
    pub fn headline(&self, target: &str, d: Dir) -> Option<f64> {
        let mut all: Vec<f64> = self
            .sizes
            .iter()
            .filter_map(|&s| Some((s, self.ns.get(&(target.to_string(), d, s))?)))
            .flat_map(|(s, ns)| ns.iter().map(move |&n| mbps(s, n)))
            .collect();
        all.sort_by(f64::total_cmp);
        all.get(all.len() / 2).copied()
    }

    /// `target`'s speed relative to `base`'s: the median, over every
    /// size and repeat, of the ratio of two copies made back to back (the
    /// guest interleaves the targets), so that a change of host load
    /// between copies cancels out instead of landing on one target.
    pub fn ratio(&self, target: &str, base: &str, d: Dir) -> Option<f64> {
        let mut r = Vec::new();
        for &size in &self.sizes {
            let t = self.ns.get(&(target.to_string(), d, size))?;
            let b = self.ns.get(&(base.to_string(), d, size))?;
            r.extend(
                t.iter()
                    .zip(b)
                    .map(|(&tn, &bn)| bn as f64 / tn.max(1) as f64),
            );
        }
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied()
    }

    /// Whether b/a >= [`MIN_DIRECT_RATIO`] in both directions.
    pub fn direct_ratio_met(&self) -> bool {
        Dir::ALL.iter().all(|&d| {
            self.ratio(DIRECT, RAM, d)
                .is_some_and(|r| r >= MIN_DIRECT_RATIO)
        })
    }

    /// Every median, the headlines and the ratios, for scripts.
    pub fn to_json(&self) -> serde_json::Value {
        let mut targets = serde_json::Map::new();
        for t in &self.targets {
            let mut dirs = serde_json::Map::new();
            for d in Dir::ALL {
                let per_size: serde_json::Map<String, serde_json::Value> = self
                    .sizes
                    .iter()
                    .map(|&s| (s.to_string(), json!(self.mbps(t, d, s))))
                    .collect();
                dirs.insert(
                    d.name().into(),
                    json!({"median_mbps_by_size": per_size, "headline_mbps": self.headline(t, d)}),
                );
            }
            dirs.insert("path".into(), json!(self.paths.get(t)));
            targets.insert(t.clone(), serde_json::Value::Object(dirs));
        }
        let ratio = |t: &str| {
            json!({
                "write": self.ratio(t, RAM, Dir::Write),
                "read": self.ratio(t, RAM, Dir::Read),
            })
        };
        json!({
            "sizes": self.sizes,
            "repeats": self.repeats,
            "thp": self.thp,
            "targets": targets,
            "ratios": {"b/a": ratio(DIRECT), "c/a": ratio(TYPE3)},
            "min_direct_ratio": MIN_DIRECT_RATIO,
            "direct_ratio_met": self.direct_ratio_met(),
        })
    }

    /// The human summary: one line per target, then the ratios.
    pub fn describe(&self) -> Vec<String> {
        let label = |t: &str| match t {
            RAM => "(a) guest RAM",
            DIRECT => "(b) vfio-user-cxl window",
            TYPE3 => "(c) cxl-type3 window",
            _ => "",
        };
        let mut out = Vec::new();
        for t in &self.targets {
            let per = |d: Dir| {
                self.sizes
                    .iter()
                    .map(|&s| format!("{:.0}", self.mbps(t, d, s).unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            out.push(format!(
                "{:<26} write {:>8.1} MB/s  read {:>8.1} MB/s   (per size: write {}, read {})  {}",
                label(t),
                self.headline(t, Dir::Write).unwrap_or(f64::NAN),
                self.headline(t, Dir::Read).unwrap_or(f64::NAN),
                per(Dir::Write),
                per(Dir::Read),
                self.paths.get(t).map_or("", String::as_str),
            ));
        }
        let r = |t: &str, d: Dir| self.ratio(t, RAM, d).unwrap_or(f64::NAN);
        out.push(format!(
            "b/a write {:.3} read {:.3} (need >= {MIN_DIRECT_RATIO}: {}); c/a write {:.3} read {:.3}",
            r(DIRECT, Dir::Write),
            r(DIRECT, Dir::Read),
            if self.direct_ratio_met() { "met" } else { "NOT met" },
            r(TYPE3, Dir::Write),
            r(TYPE3, Dir::Read),
        ));
        let mib: Vec<String> = self.sizes.iter().map(|s| (s >> 20).to_string()).collect();
        out.push(format!(
            "medians of {} copies per size; sizes {} MiB; headline = median of all copies; ratios = median of back-to-back pairs; guest RAM in {} pages",
            self.repeats,
            mib.join("/"),
            if self.thp { "transparent huge" } else { "4 KiB" }
        ));
        out
    }
}

/// Two runs' ratios side by side (TCG, then KVM inside a TCG L1):
/// a header and one line per ratio and direction.
pub fn side_by_side(tcg: &Figures, kvm: &Figures) -> Vec<String> {
    let mut out = vec![format!(
        "{:<12} {:>10} {:>16}",
        "ratio", "TCG (L1)", "KVM in TCG L1"
    )];
    for (name, t) in [("b/a", DIRECT), ("c/a", TYPE3)] {
        for d in Dir::ALL {
            let r = |f: &Figures| f.ratio(t, RAM, d).unwrap_or(f64::NAN);
            out.push(format!(
                "{:<12} {:>10.3} {:>16.3}",
                format!("{name} {}", d.name()),
                r(tcg),
                r(kvm)
            ));
        }
    }
    for (label, t) in [("(a) MB/s", RAM), ("(b) MB/s", DIRECT), ("(c) MB/s", TYPE3)] {
        for d in Dir::ALL {
            let h = |f: &Figures| f.headline(t, d).unwrap_or(f64::NAN);
            out.push(format!(
                "{:<12} {:>10.1} {:>16.1}",
                format!("{label} {}", &d.name()[..1]),
                h(tcg),
                h(kvm)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::parse_results;

    fn report(ram: u64, direct: u64, t3: u64) -> GuestReport {
        let mut text = String::new();
        let mut fact = |k: &str, v: &str| {
            text += &format!(
                "VFIOCXL-RESULT {}\n",
                json!({"kind": "fact", "step": "bench-bw", "key": k, "value": v})
            )
        };
        fact("bw.targets", &format!("{RAM},{DIRECT},{TYPE3}"));
        fact("bw.sizes", "1048576,4194304");
        fact("bw.repeats", "3");
        fact("bw.thp", "off");
        for (t, ns) in [(RAM, ram), (DIRECT, direct), (TYPE3, t3)] {
            fact(&format!("bw.{t}.path"), "/dev/x");
            for d in ["read", "write"] {
                for size in [1u64 << 20, 4 << 20] {
                    let per = ns * (size >> 20);
                    fact(
                        &format!("bw.{t}.{d}.{size}"),
                        &format!("{},{},{}", per * 3, per, per + 1),
                    );
                }
            }
        }
        parse_results(&text)
    }

    #[test]
    fn figures_medians_and_ratios() {
        // 1 MiB in 1 ms: 1048.576 MB/s.
        let f = Figures::from_report(&report(1_000_000, 1_050_000, 100_000_000)).unwrap();
        assert_eq!(f.sizes, [1 << 20, 4 << 20]);
        let a = f.headline(RAM, Dir::Write).unwrap();
        assert!((a - 1048.575).abs() < 0.01, "{a}");
        let b = f.ratio(DIRECT, RAM, Dir::Read).unwrap();
        assert!((b - 1.0 / 1.05).abs() < 1e-3, "{b}");
        assert!(f.direct_ratio_met());
        let c = f.ratio(TYPE3, RAM, Dir::Write).unwrap();
        assert!((c - 0.01).abs() < 1e-4, "{c}");
        let j = f.to_json();
        assert_eq!(j["direct_ratio_met"], true);
        assert!(j["ratios"]["c/a"]["write"].as_f64().unwrap() < 0.02);
        assert!(f.describe()[3].contains("need >= 0.9: met"));
        let slow = Figures::from_report(&report(1_000_000, 2_000_000, 1)).unwrap();
        assert!(!slow.direct_ratio_met());
    }

    #[test]
    fn bad_figures_are_errors() {
        assert!(Figures::from_report(&parse_results("")).is_err());
        let err = format!(
            "VFIOCXL-RESULT {}\n",
            json!({"kind": "fact", "step": "bench-bw", "key": "bw.error", "value": "mmap"})
        );
        assert!(Figures::from_report(&parse_results(&err)).is_err());
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn specs_build() {
        let s = spec(&Params::default());
        s.topology.validate().unwrap();
        assert_eq!(s.topology.windows.len(), 2);
        let names: Vec<&str> = s.payload.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bind", "type3-region", "bench-bw", "report-dmesg"]);
        assert!(s.payload.modules.iter().any(|m| m == "device_dax"));
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        let thp = Params {
            thp: true,
            ..Params::default()
        };
        assert!(bench_step(&thp).contains(" --thp "));
        assert!(!bench_step(&thp).contains("GLIBC_TUNABLES"));
        let sse = Params {
            no_avx: true,
            ..Params::default()
        };
        assert!(bench_step(&sse).contains("\nGLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,"));
        crate::payload::assert_valid_sh("bench-bw step", &bench_step(&sse));
        for s in [guestdriver::with_lib(TYPE3_REGION_SH), bench_step(&thp)] {
            crate::payload::assert_valid_sh("bench-bw step", &s);
        }
    }
}
