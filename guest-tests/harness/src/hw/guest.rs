//! The guest: its payload (cxl-type2-ref and the coherence checks), its
//! kernel command line, its machine with `-device vfio-cxl,host=BDF`, and
//! the check of what it reported.

use vfio_cxl_uapi_check::coherence;

use crate::guestdriver::{guest_driver_dir, parse_probe, CHAR_DEV, MODULE};
use crate::hostdriver::uapi_check_binary;
use crate::payload::{Payload, Source};
use crate::qemu::{Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::RunOutcome;
use crate::sysfs::{self, CxlSysfs};
use crate::vmtests::CXL_MODULES;

const GUEST_DIR: &str = "/opt/hw-test";

/// The guest's side: CXL modules, the reference guest driver, the
/// coherence checks. Generic: the device id, seeds and rounds come from
/// the kernel command line (`hwtest.*`, [`guest_cmdline`]), so one
/// initramfs serves any device.
pub fn guest_payload() -> Payload {
    let mut p = Payload::new("hw-test-guest");
    for m in CXL_MODULES {
        p = p.module(m);
    }
    p.file(
        &format!("{GUEST_DIR}/{MODULE}.ko"),
        0o644,
        Source::Path {
            src: guest_driver_dir().join(format!("{MODULE}.ko")),
        },
    )
    .file(
        &format!("{GUEST_DIR}/vfio-cxl-uapi-check"),
        0o755,
        Source::Path {
            src: uapi_check_binary(),
        },
    )
    .step("params", PARAMS_SH)
    .step("bind", GUEST_BIND_SH)
    .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
    .step("coherence", GUEST_COHERENCE_SH)
    .step("secondary-bus-reset", GUEST_SBR_SH)
    .step("report-dmesg", GUEST_DMESG_SH)
}

/// `hwtest.id=vvvv:dddd hwtest.expect=N hwtest.write=N hwtest.pingpong=N
/// hwtest.sbr=N`.
pub fn guest_cmdline(
    id: &str,
    expect: u64,
    write: u64,
    ping_pong: u64,
    sbr_rounds: u64,
) -> Vec<String> {
    vec![
        format!("hwtest.id={id}"),
        format!("hwtest.expect={expect}"),
        format!("hwtest.write={write}"),
        format!("hwtest.pingpong={ping_pong}"),
        format!("hwtest.sbr={sbr_rounds}"),
    ]
}

const PARAMS_SH: &str = r#"read -r cmdline </proc/cmdline
for w in $cmdline; do
	case "$w" in hwtest.*=*) k=${w%%=*}; echo "${w#*=}" >/tmp/${k#hwtest.} ;; esac
done
for k in id expect write pingpong sbr; do
	[ -r /tmp/$k ] || { echo "hwtest.$k missing from the kernel command line"; exit 1; }
	read -r v </tmp/$k; vfiocxl_fact "param.$k" "$v"
done
"#;

const GUEST_BIND_SH: &str = r#"read -r id </tmp/id
# The port decoders, not an endpoint: a Type-2 device's endpoint only
# appears once its driver bound. Every poll forks `sleep`: slow when nested.
i=0
while [ $i -lt 600 ] && ! have /sys/bus/cxl/devices/port*/decoder*; do sleep 0.1; i=$((i + 1)); done
vfiocxl_fact port_wait_polls $i
have /sys/bus/cxl/devices/port*/decoder* || { echo "no CXL port decoders"; exit 1; }
dev=
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor; read -r p <$d/device
	[ "${v#0x}:${p#0x}" = "$id" ] && dev=${d##*/}
done
[ -n "$dev" ] || { echo "no PCI device $id in the guest"; exit 1; }
echo $dev >/tmp/bdf
vfiocxl_fact accel.bdf "$dev"
echo cxl-type2-ref >/sys/bus/pci/devices/$dev/driver_override
insmod /opt/hw-test/cxl-type2-ref.ko || exit 1
echo $dev >/sys/bus/pci/drivers_probe 2>/dev/null
i=0
while [ $i -lt 200 ] && ! have /dev/cxl-type2-ref0; do sleep 0.1; i=$((i + 1)); done
have /dev/cxl-type2-ref0 || { echo "$dev did not bind to cxl-type2-ref"; dmesg | tail -n 30; exit 1; }
l=$(readlink /sys/bus/pci/devices/$dev/driver); vfiocxl_fact accel.driver "${l##*/}"
vfiocxl_fact t2.chardev /dev/cxl-type2-ref0
read -r s </sys/class/misc/cxl-type2-ref0/size && vfiocxl_fact t2.size "$s"
true
"#;

const GUEST_COHERENCE_SH: &str = r#"read -r e </tmp/expect; read -r w </tmp/write; read -r n </tmp/pingpong
/opt/hw-test/vfio-cxl-uapi-check --coherence-dev /dev/cxl-type2-ref0 --expect-seed $e --write-seed $w --ping-pong $n >&3
"#;

/// `hwtest.sbr=N` rounds of a Secondary Bus Reset as a guest's root user
/// can start one: Bridge Control of the device's root port, with the
/// device's Memory Space left on (Linux's own resets turn it off first,
/// which unmaps the window before any reset). After each, the BARs and
/// the command register are put back, so the window is mapped again for
/// the next round. hw-test then checks, in QEMU's trace, that the window
/// was unmapped before vfio-pci's reset began ([`reset_order_problems`]).
const GUEST_SBR_SH: &str = r#"read -r n </tmp/sbr
[ "$n" -gt 0 ] || exit 0
read -r dev </tmp/bdf
rp=$(basename "$(readlink -f /sys/bus/pci/devices/$dev/..)")
i=0
while [ $i -lt $n ]; do
	cmd=$(cfg_rd 2 $dev 4)
	[ $((cmd & 2)) -ne 0 ] || { echo "Memory Space is off before round $i"; exit 1; }
	bars=
	for o in 16 20 24 28 32 36; do bars="$bars $(cfg_rd 4 $dev $o)"; done
	bc=$(cfg_rd 2 $rp 62)
	cfg_wr 2 $rp 62 $((bc | 64)) && sleep 0.01 && cfg_wr 2 $rp 62 $bc ||
		{ echo "the Bridge Control writes failed"; exit 1; }
	sleep 0.1
	o=16
	for v in $bars; do cfg_wr 4 $dev $o $v || exit 1; o=$((o + 4)); done
	cfg_wr 2 $dev 4 $cmd || exit 1
	[ "$(cfg_rd 2 $dev 4)" = "$cmd" ] || { echo "the command register did not come back after round $i"; exit 1; }
	i=$((i + 1))
done
vfiocxl_fact sbr.rounds $i
"#;

/// Issue 11 (the reset hold order): in QEMU's trace, vfio-pci's reset
/// (`vfio_pci_reset`, the parent's hold, which turns Memory Space off on
/// the host, where vfio-cxl-pci then refuses the memory) never begins
/// while the device memory is live in the guest's window (mapped,
/// `vfio_cxl_map`, and routed, the last `vfio_cxl_route` saying `routed
/// 1`): a vCPU touching the window then would get QEMU a SIGBUS. And at
/// least `rounds` resets began right after a live window was unmapped for
/// them (the guest's Secondary Bus Resets).
pub fn reset_order_problems(stderr: &str, rounds: u64) -> Vec<String> {
    let mut p = Vec::new();
    let (mut mapped, mut routed) = (false, false);
    let (mut unmapped_live, mut resets_after_unmap) = (false, 0u64);
    for l in stderr.lines() {
        match l.split_whitespace().next().unwrap_or("") {
            "vfio_cxl_map" => (mapped, unmapped_live) = (true, false),
            "vfio_cxl_route" => routed = l.trim_end().ends_with("routed 1"),
            "vfio_cxl_unmap" => {
                unmapped_live = mapped && routed;
                mapped = false;
            }
            "vfio_pci_reset" => {
                if mapped && routed {
                    p.push(format!(
                        "vfio-pci's reset began with the device memory live in the guest's window: {l}"
                    ));
                }
                resets_after_unmap += u64::from(unmapped_live);
                unmapped_live = false;
            }
            _ => {}
        }
    }
    if resets_after_unmap < rounds {
        p.push(format!(
            "{resets_after_unmap} reset(s) began right after a live window was unmapped for them, expected {rounds} (the guest's Secondary Bus Resets)"
        ));
    }
    p
}

const GUEST_DMESG_SH: &str = r#"dmesg -r >/tmp/dmesg
while IFS= read -r l; do
	case "$l" in *cxl* | *CXL*) vfiocxl_fact dmesg "$l" ;; esac
done </tmp/dmesg
true
"#;

/// The guest's machine: `pxb-cxl` (with an HDM decoder, for the
/// pre-commit) + `cxl-rp` + `-device vfio-cxl,host=BDF`, one window of at
/// least 4 GiB and twice the region.
pub fn guest_topology(bdf: &str, region_size: u64) -> Topology {
    let region_mib = region_size.div_ceil(1 << 20);
    let window_mib = (2 * region_mib).next_power_of_two().max(4096);
    Topology {
        host_bridges: vec![HostBridge {
            id: "cxl.1".into(),
            bus_nr: 12,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: "rp0".into(),
                port: 0,
                chassis: 0,
                slot: 2,
                endpoint: Some(Endpoint::Device {
                    args: format!("vfio-cxl,host={bdf},bus={{bus}},id=vcxl0"),
                }),
            }],
        }],
        windows: vec![Window {
            targets: vec!["cxl.1".into()],
            size_mib: window_mib,
            granularity: None,
        }],
        devices: Vec::new(),
    }
}

/// What the guest must show of the CXL topology QEMU was given: its
/// first window's size and the bus number of its host bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCxl {
    pub window_bytes: u64,
    pub bus_nr: u32,
}

impl GuestCxl {
    /// From the built-in topology.
    pub fn of_topology(t: &Topology) -> Option<Self> {
        Some(Self {
            window_bytes: t.windows.first()?.size_mib << 20,
            bus_nr: t.host_bridges.first()?.bus_nr,
        })
    }

    /// From options as `vfio-cxl-cmdline` prints them for one device:
    /// `cxl-fmw.0.size` of the `-M`, the `pxb-cxl`'s `bus_nr`, and a
    /// `vfio-cxl` whose `host` is `bdf` (else the guest would test
    /// another device).
    pub fn from_args(args: &[String], bdf: &str) -> Result<Self, String> {
        let values = |opt: &str| -> Vec<&str> {
            args.windows(2)
                .filter(|w| w[0] == opt)
                .map(|w| w[1].as_str())
                .collect()
        };
        let key = |list: &str, k: &str| -> Option<String> {
            list.split(',')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        let window = values("-M")
            .iter()
            .find_map(|m| key(m, "cxl-fmw.0.size"))
            .ok_or("no -M cxl-fmw.0.size in the CXL options")?;
        let window_bytes = vfio_cxl_cmdline::size::parse(&window)?;
        let devices = values("-device");
        let bus_nr = devices
            .iter()
            .filter(|d| d.starts_with("pxb-cxl,"))
            .find_map(|d| key(d, "bus_nr")?.parse().ok())
            .ok_or("no -device pxb-cxl,bus_nr=N in the CXL options")?;
        let hosts: Vec<String> = devices
            .iter()
            .filter(|d| d.starts_with("vfio-cxl,"))
            .filter_map(|d| key(d, "host"))
            .collect();
        if hosts != [bdf] {
            return Err(format!(
                "the CXL options pass {hosts:?} through, not {bdf} alone"
            ));
        }
        Ok(Self {
            window_bytes,
            bus_nr,
        })
    }
}

/// The guest's results checked: bound, the region the guest's CXL core
/// assembled inside its window and 1 GiB-aligned there, every coherence
/// check passed. `cxl` is what QEMU was given: the guest must report
/// that window (size) and host bridge (the root decoder's target).
pub fn check_guest(
    outcome: &RunOutcome,
    cxl: &GuestCxl,
    region_size: u64,
    ping_pong: u64,
    written_seed: u64,
) -> Vec<String> {
    let mut p = outcome.problems();
    let r = &outcome.report;
    // What the guest read of the pattern hw-test wrote, by its digest.
    p.extend(
        crate::guestdriver::digest_problem(
            "outside -> guest",
            r.fact("coherence.outside_digest"),
            written_seed,
            vfio_cxl_uapi_check::pattern::all_offsets(region_size),
        )
        .map(|m| format!("guest: {m}")),
    );
    if r.fact("accel.driver") != Some(MODULE) {
        p.push(format!(
            "guest: device bound to {:?}, expected {MODULE}",
            r.fact("accel.driver")
        ));
    }
    if r.fact("t2.size") != Some(&region_size.to_string()) {
        p.push(format!(
            "guest: {CHAR_DEV} size {:?}, expected {region_size}",
            r.fact("t2.size")
        ));
    }
    let probes: Vec<_> = r
        .facts("dmesg")
        .into_iter()
        .filter_map(parse_probe)
        .collect();
    let s = CxlSysfs::from_report(r);
    match (probes.as_slice(), s.named("region").as_slice()) {
        ([probe], [region]) => {
            let target = s.attr(region, "target0").unwrap_or("");
            if s.attr(region, "commit") != Some("1")
                || s.attr_u64(region, "resource") != Some(probe.1)
                || s.attr_u64(region, "size") != Some(region_size)
                || s.attr(target, "devtype") != Some("cxl_decoder_endpoint")
            {
                p.push(format!(
                    "guest: region {region} is not the driver's committed region: {:?}, probe {probe:?}",
                    s.devices.get(*region)
                ));
            }
            let window = s.iomem_named("CXL Window 0");
            if !window.is_some_and(|w| w.start <= probe.1 && probe.2 <= w.end) {
                p.push(format!(
                    "guest: the region {:#x}-{:#x} is not inside CXL Window 0 ({window:?})",
                    probe.1, probe.2
                ));
            }
            let roots = s.of_type("cxl_decoder_root");
            if !roots.iter().any(|d| {
                window.is_some_and(|w| {
                    s.attr_u64(d, "start") == Some(w.start)
                        && s.attr_u64(d, "size") == Some(w.size())
                })
            }) {
                p.push(format!(
                    "guest: no root decoder matches CXL Window 0 (root decoders {roots:?})"
                ));
            }
            // QEMU mapped the device memory straight into the window at
            // the region's address (trace event vfio_cxl_map).
            let mapped = format!(
                "device memory mapped at {:#x}+{:#x}",
                probe.1,
                probe.2 + 1 - probe.1
            );
            if !outcome.stderr.lines().any(|l| l.contains(&mapped)) {
                p.push(format!(
                    "QEMU: no vfio_cxl_map trace line '{mapped}' (the direct mapping of the region)"
                ));
            }
            // Firmware's pre-commit found 1 GiB-aligned room in the window
            // (what the window is sized for), so QEMU can map the memory
            // with 1 GiB pages.
            if probe.1 % (1 << 30) != 0 {
                p.push(format!(
                    "guest: the region at {:#x} is not 1 GiB-aligned (the window had no 1 GiB-aligned room for it)",
                    probe.1
                ));
            }
            // The topology QEMU built: the window's size, its host bridge.
            if window.map(|w| w.size()) != Some(cxl.window_bytes) {
                p.push(format!(
                    "guest: CXL Window 0 is {:?} bytes, QEMU was given {}",
                    window.map(|w| w.size()),
                    cxl.window_bytes
                ));
            }
            let bus = cxl.bus_nr.to_string();
            if !roots
                .iter()
                .any(|d| s.attr(d, "target_list") == Some(bus.as_str()))
            {
                p.push(format!(
                    "guest: no root decoder targets host bridge {bus:?} (pxb-cxl bus_nr)"
                ));
            }
        }
        (probes, regions) => p.push(format!(
            "guest: {} probe messages and regions {regions:?}, expected one of each",
            probes.len()
        )),
    }
    for l in crate::hostdriver::dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("guest: error-level kernel message: {}", l.text));
    }
    let ran: Vec<(&str, &str)> = r.all_facts_of_step("coherence").collect();
    for c in coherence::CHECKS {
        if c == "ping_pong" && ping_pong == 0 {
            continue;
        }
        let key = format!("coherence.{c}");
        match ran.iter().find(|(k, _)| *k == key) {
            Some((_, v)) if v.starts_with("pass: ") => {}
            Some((_, v)) => p.push(format!("guest: {key}: {v}")),
            None => p.push(format!("guest: {key} did not run")),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Machine, Vm};
    use std::path::Path;

    const BDF: &str = "0000:3b:00.0";

    #[test]
    fn the_window_is_unmapped_before_vfio_pci_resets() {
        let map =
            "vfio_cxl_map 0000:0d:00.0: device memory mapped at 0x4c0000000+0x10000000 (DPA 0x0)";
        let route =
            |on: u8| format!("vfio_cxl_route 0000:0d:00.0: 0x4c0000000+0x10000000 routed {on}");
        let unmap =
            "vfio_cxl_unmap 0000:0d:00.0: device memory unmapped from 0x4c0000000+0x10000000";
        let reset = "vfio_pci_reset  (0000:0d:00.0)";
        // Boot: a reset before anything is mapped, then mapped but not
        // routed until the guest enables Memory Space.
        let boot = [reset, &route(0), map, &route(1)].join("\n");
        let fixed = format!(
            "{boot}\n{unmap}\n{reset}\n{}\n{map}\n{}\n{unmap}\n{reset}",
            route(0),
            route(1)
        );
        assert_eq!(reset_order_problems(&fixed, 2), Vec::<String>::new());
        assert_eq!(reset_order_problems(&fixed, 3).len(), 1);
        // The parent's hold first (the order before the fix): an unmap
        // before a later map is not counted for the next reset.
        let old = format!("{boot}\n{reset}\n{unmap}\n{map}\n{reset}\n{unmap}");
        let p = reset_order_problems(&old, 1);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("vfio-pci's reset began with the device memory live"),
            "{p:?}"
        );
        assert!(p[2].starts_with("0 reset(s) began right after"), "{p:?}");
        // Memory Space off first (Linux's own resets): not live, not counted.
        let quiet = format!("{boot}\n{}\n{unmap}\n{reset}", route(0));
        assert_eq!(reset_order_problems(&quiet, 0), Vec::<String>::new());
        assert_eq!(reset_order_problems(&quiet, 1).len(), 1);
    }

    #[test]
    fn the_guest_topology_puts_vfio_cxl_below_a_root_port() {
        let t = guest_topology(BDF, 256 << 20);
        t.validate().unwrap();
        let vm = Vm {
            qemu: "/q".into(),
            firmware_dirs: vec![],
            machine: Machine::default(),
            topology: t,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: guest_cmdline("1b36:0015", 1, 2, 0, 0),
            extra_args: vec![],
        };
        let line = vm
            .args(Path::new("c"), Path::new("r"), Path::new("s"))
            .join(" ");
        assert!(
            line.contains("-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on")
        );
        assert!(line.contains(&format!("-device vfio-cxl,host={BDF},bus=rp0,id=vcxl0")));
        assert!(line.contains("cxl-fmw.0.size=4096M"));
        assert!(
            line.contains("hwtest.id=1b36:0015 hwtest.expect=1 hwtest.write=2 hwtest.pingpong=0")
        );
        // A large region gets a window of twice its size.
        let big = guest_topology(BDF, 16 << 30);
        assert_eq!(big.windows[0].size_mib, 32768);
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for s in [PARAMS_SH, GUEST_BIND_SH, GUEST_COHERENCE_SH, GUEST_DMESG_SH] {
            crate::payload::assert_valid_sh("hw-test guest step", s);
        }
    }
}

#[cfg(test)]
mod guest_check_tests {
    use super::*;
    use crate::nested::fixture::{l2, l2_cxl, outcome};
    use crate::nested::L1_SEED;

    const BDF: &str = "0000:0d:00.0";
    const SIZE: u64 = 256 << 20;

    #[test]
    fn the_recorded_guest_passes() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED);
        assert!(p.is_empty(), "{p:?}");
    }

    /// A guest whose words say pass but which read other data: its
    /// digest is not the one of the pattern hw-test wrote.
    #[test]
    fn a_guest_that_read_other_data_fails_by_its_digest() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED + 1);
        assert!(
            p.iter()
                .any(|m| m.contains("guest: outside -> guest: the reader's digest")),
            "{p:?}"
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(o
            .report
            .fact("coherence.outside_pattern")
            .is_some_and(|v| v.starts_with("pass")));
    }

    #[test]
    fn a_different_topology_is_named() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let t = GuestCxl {
            window_bytes: 8 << 30,
            bus_nr: 52,
        };
        let p = check_guest(&o, &t, SIZE, 1000, L1_SEED);
        assert!(p.iter().any(|m| m.contains("CXL Window 0 is")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("targets host bridge")), "{p:?}");
    }

    #[test]
    fn no_direct_mapping_is_named() {
        let (results, stderr) = l2();
        let stderr: String = stderr
            .lines()
            .filter(|l| !l.contains("vfio_cxl_map"))
            .collect();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED);
        assert!(p.iter().any(|m| m.contains("vfio_cxl_map")), "{p:?}");
    }

    #[test]
    fn failed_or_missing_coherence_checks_are_named() {
        let (results, stderr) = l2();
        let results = results
            .replace(
                "\"key\":\"coherence.atomics\",\"value\":\"pass",
                "\"key\":\"coherence.atomics\",\"value\":\"FAIL",
            )
            .lines()
            .filter(|l| !l.contains("\"coherence.checksum\""))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED);
        assert!(
            p.iter().any(|m| m.contains("coherence.atomics: FAIL")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("coherence.checksum did not run")),
            "{p:?}"
        );
    }

    #[test]
    fn guest_kernel_errors_are_named() {
        let (mut results, stderr) = l2();
        results.push_str("VFIOCXL-RESULT {\"kind\":\"fact\",\"step\":\"report-dmesg\",\"key\":\"dmesg\",\"value\":\"<3>[  9.1] cxl_port port1: failed to load HDM decoders\"}\n");
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED);
        assert!(
            p.iter()
                .any(|m| m.contains("error-level kernel message: cxl_port")),
            "{p:?}"
        );
    }

    /// The recorded run's region moved 256 MiB up: no longer 1 GiB-aligned.
    #[test]
    fn a_region_that_is_not_1g_aligned_is_named() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let base = crate::guestdriver::parse_probe(
            o.report
                .facts("dmesg")
                .into_iter()
                .find(|l| parse_probe(l).is_some())
                .expect("the recorded guest's probe line"),
        )
        .unwrap()
        .1;
        assert_eq!(base % (1 << 30), 0, "the recorded region is aligned");
        let (from, to) = (format!("{base:x}"), format!("{:x}", base + (256 << 20)));
        let o = outcome(
            &results.replace(&from, &to),
            &stderr.replace(&from, &to),
            &[],
        );
        let p = check_guest(&o, &l2_cxl(), SIZE, 1000, L1_SEED);
        assert!(
            p.iter().any(|m| m.contains("is not 1 GiB-aligned")),
            "{p:?}"
        );
    }

    #[test]
    fn cxl_options_are_read_as_vfio_cxl_cmdline_prints_them() {
        let args: Vec<String> = "-M cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G \
             -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on \
             -device cxl-rp,port=0,bus=cxl.1,id=rp0,chassis=0,slot=2 \
             -device vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0"
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(
            GuestCxl::from_args(&args, BDF),
            Ok(GuestCxl {
                window_bytes: 1 << 30,
                bus_nr: 12
            })
        );
        let e = GuestCxl::from_args(&args, "0000:0e:00.0").unwrap_err();
        assert!(e.contains("not 0000:0e:00.0 alone"), "{e}");
        let e = GuestCxl::from_args(&args[2..], BDF).unwrap_err();
        assert!(e.contains("no -M cxl-fmw.0.size"), "{e}");
        let e = GuestCxl::from_args(&args[..2], BDF).unwrap_err();
        assert!(e.contains("no -device pxb-cxl"), "{e}");
    }

    #[test]
    fn a_region_of_another_size_is_named() {
        let (results, stderr) = l2();
        let o = outcome(&results, &stderr, &[]);
        let p = check_guest(&o, &l2_cxl(), 2 * SIZE, 1000, L1_SEED);
        assert!(p.iter().any(|m| m.contains("size")), "{p:?}");
    }
}
