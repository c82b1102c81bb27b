//! The VM test `vfio-user-cxl-two-devices`: two `-device vfio-user-cxl`
//! (two servers, two memory files), each below its own `pxb-cxl` host
//! bridge with its own CXL window. The guest's CXL core must assemble one
//! region per device, each in its device's window, and the uAPI checks of
//! `vfio-cxl-uapi-check` must pass on both with different patterns, each
//! landing in its own server's file and never in the other's.

use std::path::Path;

use vfio_cxl_uapi_check::{checks, pattern};

use crate::env::RunSpec;
use crate::hostdriver::{self, dmesg, ProbeLine, ACCEL_MIB};
use crate::payload::Payload;
use crate::qemu::{Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::{HostFacts, RunOutcome};
use crate::sysfs::{self, CxlSysfs};
use crate::vucxl::{self, ServerSetup};

pub const NAME: &str = "vfio-user-cxl-two-devices";

/// Per device: the host bridge's bus number, the pattern the host leaves
/// in its memory file, the pattern the guest writes.
struct Dev {
    bus_nr: u32,
    outside_seed: u64,
    guest_seed: u64,
}

const DEVS: [Dev; 2] = [
    Dev {
        bus_nr: 12,
        outside_seed: hostdriver::OUTSIDE_SEED,
        guest_seed: hostdriver::GUEST_SEED,
    },
    Dev {
        bus_nr: 22,
        outside_seed: 0x0d15_7a11,
        guest_seed: 0x0d15_6e57,
    },
];

/// Where `hostdriver::base_payload` puts `lib.sh`, the host driver and
/// uapi-check in the guest.
pub(crate) use crate::hostdriver::LIB;

/// Finds the device below each host bridge (by bus number, so device `i`
/// is the one on server `i`), binds it to vfio-cxl-pci, records its BDF
/// in /tmp/dev<i>, then waits for two committed regions.
const BIND_SH: &str = r#"wait_for 600 port_decoders || { echo "no CXL port decoders"; exit 1; }
i=0
for hb in @HB_BUSES@; do
	find_accels $hb || { echo "no 1b36:0015 below host bridge pci0000:$hb"; exit 1; }
	bind || { echo "$dev did not bind to vfio-cxl-pci"; exit 1; }
	echo $dev >/tmp/dev$i
	vfiocxl_fact dev$i.bdf "$dev"
	i=$((i + 1))
done
committed() {
	set -- /sys/bus/cxl/devices/region*
	[ $# -eq 2 ] || return 1
	for r; do read -r c <$r/commit && [ "$c" = 1 ] || return 1; done
}
wait_for 100 committed || { echo "no two committed regions"; ls /sys/bus/cxl/devices; exit 1; }
"#;

const UAPI_CHECK_SH: &str = r#"read -r dev </tmp/dev@I@
$VC/vfio-cxl-uapi-check "$dev" --expect-seed @OUTSIDE@ --write-seed @GUEST@ --reopen 1 >&3
"#;

/// The kernel log lines about VFIO or CXL (`dmesg -r`, level kept).
fn topology() -> Topology {
    let mut t = Topology::none();
    for (i, d) in DEVS.iter().enumerate() {
        let hb = format!("cxl.{}", i + 1);
        t.host_bridges.push(HostBridge {
            id: hb.clone(),
            bus_nr: d.bus_nr,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: format!("rp{i}"),
                port: 0,
                chassis: 0,
                slot: 2 + i as u32,
                endpoint: Some(Endpoint::Device {
                    args: vucxl::device_json(i, &format!("vuc{i}"), true),
                }),
            }],
        });
        t.windows.push(Window {
            targets: vec![hb],
            size_mib: 4096,
            granularity: None,
        });
    }
    t
}

pub fn spec() -> RunSpec {
    let buses: Vec<String> = DEVS.iter().map(|d| format!("{:02x}", d.bus_nr)).collect();
    let mut payload = hostdriver::base_payload(NAME).cmdline_arg(hostdriver::KEEP_MEMORY_ARG);
    payload.steps.retain(|s| s.name == "load-host-driver");
    let mut payload: Payload = payload
        .step(
            "bind-both",
            &format!("{LIB}\n{}", BIND_SH.replace("@HB_BUSES@", &buses.join(" "))),
        )
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT);
    for (i, d) in DEVS.iter().enumerate() {
        let script = UAPI_CHECK_SH
            .replace("@I@", &i.to_string())
            .replace("@OUTSIDE@", &d.outside_seed.to_string())
            .replace("@GUEST@", &d.guest_seed.to_string());
        payload = payload.step(&format!("uapi-check-{i}"), &format!("{LIB}\n{script}"));
    }
    payload = payload.step("report-dmesg", &crate::hostdriver::dmesg_sh());
    vucxl::server_run_spec(topology(), payload, start_servers, stop_servers, 180)
}

fn start_servers(dir: &Path) -> crate::error::Result<()> {
    let setups = DEVS.map(|d| ServerSetup::plain(d.outside_seed));
    vucxl::start_servers(dir, &setups)
}

/// The servers' facts, then for each memory file `i` and each device `j`:
/// `file{i}.seed{j}.pattern.*`, how much of device `j`'s guest pattern it
/// holds.
fn stop_servers(dir: &Path) -> HostFacts {
    let mut f = vucxl::stop_servers(dir);
    for i in 0..DEVS.len() {
        for (j, d) in DEVS.iter().enumerate() {
            f.extend(vucxl::pattern_facts(
                dir,
                i,
                d.guest_seed,
                &format!("file{i}.seed{j}."),
            ));
        }
    }
    f
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let s = CxlSysfs::from_report(r);
    let mut p = Vec::new();
    let total = pattern::sample_offsets(ACCEL_MIB << 20).len();
    let probes: Vec<ProbeLine> = dmesg(outcome)
        .iter()
        .filter_map(|l| ProbeLine::parse(&l.text))
        .collect();
    let regions = s.named("region");
    if regions.len() != DEVS.len() {
        p.push(format!("CXL regions {regions:?}, expected {}", DEVS.len()));
    }
    for (i, d) in DEVS.iter().enumerate() {
        let Some(bdf) = r.fact(&format!("dev{i}.bdf")) else {
            p.push(format!("device {i} was not found"));
            continue;
        };
        // The window of host bridge i holds device i's range and region.
        let window = format!("CXL Window {i}");
        let Some(w) = s.iomem_named(&window) else {
            p.push(format!("no {window:?} in /proc/iomem"));
            continue;
        };
        let probe: Vec<&ProbeLine> = probes.iter().filter(|l| l.bdf == bdf).collect();
        let [probe] = probe[..] else {
            p.push(format!("{bdf}: probe messages {probe:?}, expected one"));
            continue;
        };
        if probe.start < w.start || probe.end > w.end || probe.mib != ACCEL_MIB {
            p.push(format!(
                "{bdf}: range {probe:?} is not 256 MiB inside {w:?}"
            ));
        }
        let region = regions
            .iter()
            .find(|reg| s.attr_u64(reg, "resource") == Some(probe.start));
        match region {
            None => p.push(format!("{bdf}: no region at {:#x}", probe.start)),
            Some(reg) => {
                let target = s.attr(reg, "target0").unwrap_or("");
                let ok = s.attr(reg, "commit") == Some("1")
                    && s.attr_u64(reg, "size") == Some(ACCEL_MIB << 20)
                    && s.attr(target, "devtype") == Some("cxl_decoder_endpoint")
                    && s.attr(target, "region") == Some(reg);
                if !ok {
                    p.push(format!(
                        "{reg} of {bdf}: not committed 256 MiB with an endpoint decoder as target0 ({:?})",
                        s.devices.get(*reg)
                    ));
                }
            }
        }
        p.extend(uapi_check_problems(outcome, i, d));
        p.extend(file_problems(outcome, i, total));
        if outcome.host_fact(&format!("server{i}.exit")) != Some("exit status: 0") {
            p.push(format!(
                "server {i} ended with {:?}, expected exit status 0 after QEMU disconnected",
                outcome.host_fact(&format!("server{i}.exit"))
            ));
        }
        // QEMU's trace names the device by its socket: server i's device
        // was pre-committed into window i.
        let device = format!("vfio_cxl_precommit vfio-user:{}: ", vucxl::socket_at(i));
        let window = format!(" in cxl-fmw.{i}");
        if !outcome
            .stderr
            .lines()
            .any(|l| l.starts_with(&device) && l.ends_with(&window))
        {
            p.push(format!("no trace {device:?}...{window:?}"));
        }
    }
    for l in dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("error-level kernel message: {}", l.text));
    }
    p.extend(vucxl::refused_unmaps(outcome));
    p
}

/// Every uapi-check of device `i` ran once and passed, with its seeds.
/// uapi-check names its facts' step `uapi-check`; the steps run in device
/// order, so device `i`'s facts are the `i`th run of them.
fn uapi_check_problems(outcome: &RunOutcome, i: usize, d: &Dev) -> Vec<String> {
    uapi_run_problems(outcome, i, d.outside_seed, d.guest_seed)
}

/// The `i`th run of uapi-check (`uapi-check-{i}` in messages) ran every
/// check once and passed them, read `outside_seed` (its digest of the
/// samples matches) and left `guest_seed`.
pub(crate) fn uapi_run_problems(
    outcome: &RunOutcome,
    i: usize,
    outside_seed: u64,
    guest_seed: u64,
) -> Vec<String> {
    let mut p = Vec::new();
    let step = format!("uapi-check-{i}");
    let expected: Vec<&str> = checks::CHECKS
        .iter()
        .map(|(n, _)| *n)
        .chain(["reopen"])
        .collect();
    let ran: Vec<(&str, &str)> = outcome
        .report
        .all_facts_of_step("uapi-check")
        .skip(i * expected.len())
        .take(expected.len())
        .collect();
    let names: Vec<&str> = ran.iter().map(|(k, _)| *k).collect();
    if names != expected {
        p.push(format!("{step} ran {names:?}, expected {expected:?}"));
    }
    for (k, v) in &ran {
        if !v.starts_with("pass: ") {
            p.push(format!("{step} {k}: {v}"));
        }
    }
    let coherence = ran
        .iter()
        .find(|(k, _)| *k == "mem_coherence")
        .map_or("", |(_, v)| *v);
    let want = format!("pattern {guest_seed} left for the outside");
    if !coherence.contains(&want) {
        p.push(format!("{step} mem_coherence {coherence:?} lacks {want:?}"));
    }
    // What the guest read of the outside pattern is checked here, against
    // the pattern the host wrote, not taken from its words.
    p.extend(crate::guestdriver::digest_problem(
        &format!("{step} mem_coherence outside -> guest"),
        hostdriver::outside_digest(coherence),
        outside_seed,
        pattern::sample_offsets(ACCEL_MIB << 20),
    ));
    p
}

/// Memory file `i` holds device `i`'s guest pattern in every sample word
/// and no word of the other device's.
fn file_problems(outcome: &RunOutcome, i: usize, total: usize) -> Vec<String> {
    let mut p = Vec::new();
    for j in 0..DEVS.len() {
        let key = |k: &str| format!("file{i}.seed{j}.pattern.{k}");
        let found = outcome.host_fact(&key("found"));
        let want = if i == j { total } else { 0 };
        let counted = outcome.host_fact(&key("total")) == Some(total.to_string().as_str());
        if found != Some(want.to_string().as_str()) || !counted {
            p.push(format!(
                "{}: device {j}'s guest pattern in {:?} of {:?} words, expected {want} of {total} ({:?})",
                vucxl::memory_at(i),
                found,
                outcome.host_fact(&key("total")),
                outcome.host_fact(&key("error")),
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_host_bridges_two_windows_two_sockets() {
        let t = topology();
        t.validate().unwrap();
        assert_eq!(t.windows.len(), 2);
        assert_eq!(t.windows[1].targets, ["cxl.2"]);
        let Some(Endpoint::Device { args }) = &t.host_bridges[1].root_ports[0].endpoint else {
            panic!("no device below cxl.2");
        };
        assert!(args.contains(&vucxl::socket_at(1)), "{args}");
        assert_ne!(vucxl::socket_at(0), vucxl::socket_at(1));
    }

    /// A uapi-check whose words claim the outside pattern but whose digest
    /// is of other data fails; the digest of the pattern passes.
    #[test]
    fn the_host_checks_the_digest_not_the_words() {
        let (outside, guest) = (DEVS[0].outside_seed, DEVS[0].guest_seed);
        let samples = || pattern::sample_offsets(ACCEL_MIB << 20);
        let run = |digest: String| {
            let results: String = checks::CHECKS
                .iter()
                .map(|(n, _)| *n)
                .chain(["reopen"])
                .map(|n| {
                    let v = if n == "mem_coherence" {
                        format!("pass: outside digest {digest}, outside pattern {outside} seen, pattern {guest} left for the outside")
                    } else {
                        "pass: ok".into()
                    };
                    format!(
                        "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":\"uapi-check\",\"key\":\"{n}\",\"value\":\"{v}\"}}\n"
                    )
                })
                .collect();
            uapi_run_problems(
                &crate::nested::fixture::outcome(&results, "", &[]),
                0,
                outside,
                guest,
            )
        };
        let right = pattern::hex(pattern::pattern_digest(outside, samples()));
        let other = pattern::hex(pattern::digest(samples().into_iter().map(|_| 0)));
        assert_eq!(run(right), Vec::<String>::new());
        let p = run(other);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("the reader's digest"), "{p:?}");
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for step in spec().payload.steps {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }
}
