//! VM test `host-driver-dmabuf@debug`: dma-buf export of the CXL memory
//! region by vfio-cxl-pci, its import into an iommufd IOAS
//! (`IOMMU_IOAS_MAP_FILE`) and its revocation, on the debug test kernel
//! (IOMMUFD, the VFIO cdev, PCI_P2PDMA, INTEL_IOMMU_DEBUGFS, and the core
//! patch that lets get_dmabuf_phys() export a device-specific region;
//! Debian's kernel has none of these). `vfio-cxl-uapi-check --dmabuf`
//! does the work and reads the guest IOMMU's page tables
//! (uapi-check's dmabuf.rs). The host checks the address it reports
//! against its own view of the guest's address space (QEMU's `info mtree
//! -f` over QMP: the range must be cxl-accel's memory backend), the
//! driver's probe message and the guest's CXL region, and that it lies in
//! the CXL window QEMU described in the CEDT, with the size and alignment
//! this topology gives the window and the device.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::env::RunSpec;
use crate::error::Result;
use crate::host_thread::HostThread;
use crate::hostdriver::{
    base_payload, base_spec, common_checks, dmesg, dmesg_sh, with_lib, ProbeLine, Provoked,
    ACCEL_ID, ACCEL_MIB, UNSAFE_INTERRUPTS,
};
use crate::qmp::{self, Qmp};
use crate::runner::HostFacts;
use crate::runner::RunOutcome;
use crate::sysfs::{self, parse_u64, CxlSysfs};

pub const NAME: &str = "host-driver-dmabuf";
/// The CXL window of the topology.
const WINDOW_MIB: u64 = 4096;

const DMABUF_SH: &str = r#"mount_debugfs || exit 1
range=$(vfio_cxl_range) || { echo "no vfio-cxl range in /proc/iomem"; exit 1; }
vfiocxl_fact dmabuf.iomem "$range"
W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
vfiocxl_fact dmabuf.cfmws_base "$W"
$VC/vfio-cxl-uapi-check "$dev" --dmabuf $((0x${range%-*})) >&3
rc=$?
dmesg_facts "CXL Reset refused: " dmabuf.kernel_refusal
exit $rc
"#;

/// vfio-pci's own BAR export on the patched core: pci-testdev (1b36:0005)
/// bound to vfio-pci, its 2 MiB RAM-backed BAR 2.
const BAR_SH: &str = r#"tb=
for d in /sys/bus/pci/devices/*; do
	read -r v <$d/vendor; read -r i <$d/device
	[ "$v" = 0x1b36 ] && [ "$i" = 0x0005 ] && tb=${d##*/}
done
[ -n "$tb" ] || { echo "no pci-testdev (1b36:0005)"; exit 1; }
echo vfio-pci >/sys/bus/pci/devices/$tb/driver_override || exit 1
echo $tb >/sys/bus/pci/drivers_probe
have /sys/bus/pci/drivers/vfio-pci/$tb || { echo "$tb did not bind to vfio-pci"; exit 1; }
set -- $(sed -n 3p /sys/bus/pci/devices/$tb/resource)
vfiocxl_fact dmabuf_bar.resource "$1"
$VC/vfio-cxl-uapi-check "$tb" --dmabuf-bar $(($1)) >&3
"#;

pub fn spec() -> RunSpec {
    let script = format!("{}{DMABUF_SH}", crate::vmm_guard::FIND_SH);
    let payload = base_payload(NAME)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT)
        .step("dmabuf", &with_lib(&script))
        .step("dmabuf-bar", &with_lib(BAR_SH))
        .step("report-dmesg", &dmesg_sh());
    let mut spec = base_spec(payload, ACCEL_MIB, WINDOW_MIB);
    // One vCPU, as host-driver-rebind: its resets and closes sleep in
    // pci_reset_secondary_bus(), where a second, idle vCPU can lose the
    // timer under TCG (docs/guest-harness.md, "Lost timers under TCG").
    spec.machine.smp = 1;
    spec.topology
        .devices
        .push("pci-testdev,bus=pcie.0,membar=2M,membar-backed=on".into());
    spec.extra_args.extend(qmp::qemu_args(&qmp_socket()));
    spec.before_boot = Some(start_monitor);
    spec.after_exit = Some(stop_monitor);
    spec
}

fn qmp_socket() -> String {
    format!(
        "/tmp/vfio-cxl-vm-test-dmabuf-{}-qmp.sock",
        std::process::id()
    )
}

static MONITOR: HostThread = HostThread::new("monitor.error");

fn start_monitor(_dir: &Path) -> Result<()> {
    let _ = fs::remove_file(qmp_socket());
    MONITOR.start(watch_monitor);
    Ok(())
}

/// `info mtree -f` once cxl-accel's memory is mapped into the window
/// (firmware's pre-commit at reset), as host fact `monitor.mtree`.
fn watch_monitor() -> HostFacts {
    let run = || -> Result<HostFacts> {
        let t = Instant::now();
        let mut q = Qmp::connect_within(&qmp_socket(), Duration::from_secs(30))?;
        loop {
            let mtree = q.hmp("info mtree -f")?;
            if mtree.contains(&format!("{ACCEL_ID}-mem")) || t.elapsed() > Duration::from_secs(120)
            {
                return Ok(vec![("monitor.mtree".into(), mtree)]);
            }
            thread::sleep(Duration::from_millis(200));
        }
    };
    run().unwrap_or_else(|e| vec![("monitor.error".into(), e.to_string())])
}

fn stop_monitor(_dir: &Path) -> HostFacts {
    let v = MONITOR.stop();
    let _ = fs::remove_file(qmp_socket());
    v
}

/// The line of QEMU's flat view (`info mtree -f`) that maps exactly
/// [hpa, hpa + size) of the guest's physical address space, if any.
pub fn mtree_line(mtree: &str, hpa: u64, size: u64) -> Option<&str> {
    let range = format!("{hpa:016x}-{:016x}", hpa + size - 1);
    let mut in_system = false;
    for line in mtree.lines() {
        if line.starts_with("FlatView") {
            in_system = false;
        }
        if line.trim_start().starts_with("AS \"memory\"") {
            in_system = true;
        }
        if in_system && line.trim_start().starts_with(&range) {
            return Some(line.trim());
        }
    }
    None
}

/// [`spec`] on the debug test kernel: the only kernel it can pass on.
pub fn spec_debug() -> RunSpec {
    spec().on_debug_kernel()
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    common_checks(
        outcome,
        1..=1,
        &[
            // One per bind to an iommufd (`open_device`: 4).
            Provoked::at_most(UNSAFE_INTERRUPTS, 4),
            Provoked::at_most("CXL Reset refused: a dma-buf of the device exists", 1),
        ],
        &mut p,
    );
    let r = &outcome.report;
    match r.fact("dmabuf") {
        Some(v) if v.starts_with("pass: ") => {}
        v => p.push(format!("dmabuf: {v:?}")),
    }
    for (what, want) in [
        ("decoder_block", "EPERM"),
        ("decoder_block_in_second_range", "EPERM"),
        ("past_the_end", "EINVAL"),
        ("comp_regs_region", "ENODEV"),
        ("no_such_region", "ENODEV"),
        ("in_low_power", "EIO"),
    ] {
        let got = r.fact(&format!("dmabuf.refused.{what}"));
        if got != Some(want) {
            p.push(format!("dma-buf of {what}: {got:?}, expected {want}"));
        }
    }
    let size = ACCEL_MIB << 20;
    let hpa = r.fact("dmabuf.hpa").and_then(parse_u64);
    let probe = dmesg(outcome)
        .iter()
        .find_map(|l| ProbeLine::parse(&l.text));
    let sysfs = CxlSysfs::from_report(r);
    let region = sysfs
        .named("region")
        .first()
        .and_then(|name| sysfs.devices.get(*name))
        .and_then(|attrs| attrs.get("resource"))
        .and_then(|v| parse_u64(v));
    let window = r.fact("dmabuf.cfmws_base").and_then(parse_u64);
    match (hpa, probe, region, window) {
        (Some(hpa), Some(probe), Some(region), Some(w)) => {
            if hpa != probe.start || hpa != region {
                p.push(format!(
                    "the dma-buf's HPA {hpa:#x} is not the probed range {:#x} and the CXL region {region:#x}",
                    probe.start
                ));
            }
            if hpa < w || hpa + size > w + (WINDOW_MIB << 20) || hpa % (256 << 20) != 0 {
                p.push(format!(
                    "the dma-buf's HPA {hpa:#x} (+{size:#x}) is not a 256 MiB-aligned range of the {WINDOW_MIB} MiB CXL window at {w:#x} (CEDT)"
                ));
            }
        }
        t => p.push(format!(
            "dmabuf.hpa, probe line, region resource, CFMWS base: {t:?}"
        )),
    }
    // The host's own view: what QEMU maps at that guest physical range.
    if let Some(e) = outcome.host_fact("monitor.error") {
        p.push(format!("QEMU monitor: {e}"));
    } else if let Some(hpa) = hpa {
        let mtree = outcome.host_fact("monitor.mtree").unwrap_or("");
        match mtree_line(mtree, hpa, size) {
            Some(l) if l.contains(&format!("{ACCEL_ID}-mem")) => {}
            l => p.push(format!(
                "QEMU's flat view maps {l:?} at the dma-buf's HPA {hpa:#x}+{size:#x}, expected cxl-accel's backend {ACCEL_ID}-mem"
            )),
        }
    }
    if r.fact("dmabuf.size").and_then(parse_u64) != Some(size) {
        p.push(format!(
            "dmabuf.size {:?}, expected {size:#x}",
            r.fact("dmabuf.size")
        ));
    }
    for (key, want) in [
        ("dmabuf.imported.whole.mapped", size),
        ("dmabuf.imported.slice.mapped", 4 << 20),
        ("dmabuf.after_cxl_reset.whole.mapped", size),
        ("dmabuf.after_reset.whole.mapped", 0),
        ("dmabuf.after_reset.slice.mapped", 0),
        ("dmabuf.reimported.again.mapped", size),
        ("dmabuf.after_close.whole.mapped", 0),
        ("dmabuf.after_close.slice.mapped", 0),
        ("dmabuf.after_close.again.mapped", 0),
    ] {
        let got = r.fact(key).and_then(parse_u64);
        if got != Some(want) {
            p.push(format!("{key}: {:?}, expected {want:#x}", r.fact(key)));
        }
    }
    match r.fact("dmabuf_bar") {
        Some(v) if v.starts_with("pass: ") => {}
        v => p.push(format!("dmabuf_bar (vfio-pci's BAR export): {v:?}")),
    }
    for (key, want) in [
        ("dmabuf.bar_imported.bar.mapped", 2u64 << 20),
        ("dmabuf.bar_imported.bar_page.mapped", 4096),
        ("dmabuf.bar_after_close.bar.mapped", 0),
        ("dmabuf.bar_after_close.bar_page.mapped", 0),
    ] {
        let got = r.fact(key).and_then(parse_u64);
        if got != Some(want) {
            p.push(format!("{key}: {:?}, expected {want:#x}", r.fact(key)));
        }
    }
    if r.facts("dmabuf.kernel_refusal").is_empty() {
        p.push("no kernel line 'CXL Reset refused: ...'".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTREE: &str = "FlatView #0
 AS \"memory\", root: system
 Root memory region: system
  0000000000000000-000000007fffffff (prio 0, ram): pc.ram
  00000004c0000000-00000004cfffffff (prio 0, ram): accel0-mem
FlatView #1
 AS \"I/O\", root: io
  00000004c0000000-00000004cfffffff (prio 0, i/o): other
";

    #[test]
    fn the_system_flat_view_line_of_a_range() {
        assert_eq!(
            mtree_line(MTREE, 0x0004_c000_0000, 256 << 20),
            Some("00000004c0000000-00000004cfffffff (prio 0, ram): accel0-mem")
        );
        assert_eq!(mtree_line(MTREE, 0x0004_d000_0000, 256 << 20), None);
        assert_eq!(mtree_line(MTREE, 0x0004_c000_0000, 128 << 20), None);
    }
}
