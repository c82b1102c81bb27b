//! The VM tests: each one a [`RunSpec`] (machine, topology, payload) and a
//! check over the [`RunOutcome`]. They boot QEMU, so they are not cargo
//! tests; `cargo xtask vm-test` (or `guest-harness vm-test`) runs them.
//!
//! Only tests whose devices exist in the pinned QEMU are listed here: a
//! test for a device that is not written yet is added with the device.

use std::time::Duration;

use crate::console::KernelProblem;
use crate::env::RunSpec;
use crate::guestdriver;
use crate::hostdriver;
use crate::payload::Payload;
use crate::qemu::Topology;
use crate::runner::RunOutcome;
use crate::sysfs::{self, CxlSysfs};

/// One VM test.
#[derive(Debug, Clone, Copy)]
pub struct VmTest {
    pub name: &'static str,
    pub about: &'static str,
    pub spec: fn() -> RunSpec,
    /// Test-specific problems (on top of [`RunOutcome::problems`]).
    pub check: fn(&RunOutcome) -> Vec<String>,
}

impl VmTest {
    /// Every problem of a finished run: generic ones, then the test's.
    pub fn problems(&self, outcome: &RunOutcome) -> Vec<String> {
        let mut p = outcome.problems();
        if outcome.report.done.is_some() {
            p.extend((self.check)(outcome));
        }
        p
    }
}

pub fn all() -> Vec<VmTest> {
    vec![
        VmTest {
            name: "cxl-type3-enumeration",
            about: "q35,cxl=on + stock cxl-type3 (256 MiB volatile): the guest's CXL core enumerates root, port, endpoint, memdev, decoders and the CFMW",
            spec: type3_enumeration_spec,
            check: type3_enumeration_check,
        },
        VmTest {
            name: "host-driver-uapi",
            about: "cxl-accel (256 MiB, pre-committed) bound to vfio-cxl-pci: probe message, region committed, every uapi-check passes, patterns cross host<->guest",
            spec: hostdriver::uapi_spec,
            check: hostdriver::uapi_check,
        },
        VmTest {
            name: "host-driver-rebind",
            about: "cxl-accel: 20 unbind/bind cycles with a reopen after each, then rmmod vfio-cxl-pci vfio-cxl-core; kernel log clean",
            spec: hostdriver::rebind_spec,
            check: hostdriver::rebind_check,
        },
        VmTest {
            name: crate::hostdriver_tenants::NAME,
            about: "cxl-accel bound to vfio-cxl-pci: user A fills the memory and exits, user B reads only zeros, the memory-backend file holds only zeros after the last close, and the kernel log reports each clear",
            spec: crate::hostdriver_tenants::spec,
            check: crate::hostdriver_tenants::check,
        },
        VmTest {
            name: crate::hostdriver_tenants::NAME_HOST_CLEAR,
            about: "host-driver-tenants with cxl-accel,cxl-reset=off: the driver clears from the host (memset and cache write-back through a kernel mapping)",
            spec: crate::hostdriver_tenants::spec_host_clear,
            check: crate::hostdriver_tenants::check,
        },
        VmTest {
            name: crate::ept_memtype::NAME,
            about: "cxl-accel bound to vfio-cxl-pci: the EPT memory type KVM on Intel VT-x would give sampled PFNs of the region (first, last, every 1 GiB, middle), from the facts __kvm_is_mmio_pfn() reads; every one must be WB",
            spec: crate::ept_memtype::spec,
            check: crate::ept_memtype::check,
        },
        VmTest {
            name: crate::memory_failure::NAME,
            about: "cxl-accel bound to vfio-cxl-pci: a memory error injected into one mapped page (hwpoison_inject) is handled by the driver's pagemap; the page SIGBUSes with BUS_MCEERR_AR, read/write EIO, its neighbours keep their data, and it stays withdrawn after a reopen",
            spec: crate::memory_failure::spec,
            check: crate::memory_failure::check,
        },
        VmTest {
            name: "host-driver-memory-failure@debug",
            about: "host-driver-memory-failure on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: crate::memory_failure::spec_debug,
            check: crate::memory_failure::check,
        },
        VmTest {
            name: crate::hostdriver_mce::NAME,
            about: "cxl-accel bound to vfio-cxl-pci: a real machine check (HMP mce, SRAR data load, Intel vendor) for a mapped page while its user spins on it in user mode; the kernel's MF_ACTION_REQUIRED path reaches the driver, the user gets one BUS_MCEERR_AR and lives, read/write EIO, nothing killed",
            spec: crate::hostdriver_mce::spec,
            check: crate::hostdriver_mce::check,
        },
        VmTest {
            name: "host-driver-mce@debug",
            about: "host-driver-mce on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: crate::hostdriver_mce::spec_debug,
            check: crate::hostdriver_mce::check,
        },
        VmTest {
            name: "host-driver-tenants@debug",
            about: "host-driver-tenants on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: crate::hostdriver_tenants::spec_debug,
            check: crate::hostdriver_tenants::check,
        },
        VmTest {
            name: "host-driver-uapi@debug",
            about: "host-driver-uapi on the debug test kernel (lockdep, KASAN, UBSAN, KFENCE, atomic sleep, hung tasks; cargo xtask build-test-kernel): any report fails it",
            spec: hostdriver::uapi_spec_debug,
            check: hostdriver::uapi_check,
        },
        VmTest {
            name: "host-driver-rebind@debug",
            about: "host-driver-rebind on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: hostdriver::rebind_spec_debug,
            check: hostdriver::rebind_check,
        },
        VmTest {
            name: "host-driver-selftest",
            about: "cxl-accel bound to vfio-cxl-pci: the kernel-style kselftest vfio_cxl_region_test of patches/linux (static, host-driver/scripts/build-selftest) passes in every IOMMU mode the guest kernel has",
            spec: hostdriver::selftest_spec,
            check: hostdriver::selftest_check,
        },
        VmTest {
            name: "host-driver-selftest@debug",
            about: "host-driver-selftest on the debug test kernel, which has IOMMUFD and the VFIO cdev: every variant in all five IOMMU modes passes (iommufd, iommufd_compat_type1/type1v2, VFIO type1/type1v2), none skipped",
            spec: hostdriver::selftest_spec_debug,
            check: hostdriver::selftest_check_debug,
        },
        VmTest {
            name: crate::hostdriver_aer::NAME,
            about: "cxl-accel (aer=on) bound to vfio-cxl-pci: with the memory mapped and the error eventfd registered, the host injects an uncorrectable non-fatal error (HMP pcie_aer_inject_error); the guest's AER recovery signals the eventfd and gives the mapping and its data back; the kernel reports the error and a successful recovery",
            spec: crate::hostdriver_aer::spec,
            check: crate::hostdriver_aer::check,
        },
        VmTest {
            name: "host-driver-aer@debug",
            about: "host-driver-aer on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: crate::hostdriver_aer::spec_debug,
            check: crate::hostdriver_aer::check,
        },
        VmTest {
            name: crate::hostdriver_aer::NAME_FATAL,
            about: "cxl-accel (aer=on) bound to vfio-cxl-pci: with the memory mapped and the error eventfd registered, the host injects an uncorrectable fatal error (DLP); the guest's AER recovery signals the eventfd and resets the link, which leaves the function's BARs unassigned: the mapping faults during the recovery and after it (read() EIO) until the user enables Memory Space (vfio-pci core restores the BARs), then gives the data back; the kernel reports the fatal error and a successful recovery",
            spec: crate::hostdriver_aer::spec_fatal,
            check: crate::hostdriver_aer::check_fatal,
        },
        VmTest {
            name: "host-driver-aer-fatal@debug",
            about: "host-driver-aer-fatal on the debug test kernel: any lockdep, KASAN, UBSAN or KFENCE report fails it",
            spec: crate::hostdriver_aer::spec_fatal_debug,
            check: crate::hostdriver_aer::check_fatal,
        },
        VmTest {
            name: "host-driver-dmabuf@debug",
            about: "cxl-accel bound to vfio-cxl-pci on the debug test kernel (iommufd, cdev, core patch 0001): dma-bufs of the whole CXL region and of a slice imported into an iommufd IOAS map to the region's HPA in the guest IOMMU's page tables; a range over the HDM decoders is EPERM; a CXL Reset is refused while they exist; VFIO_DEVICE_RESET and the last close leave nothing mapped",
            spec: crate::hostdriver_dmabuf::spec_debug,
            check: crate::hostdriver_dmabuf::check,
        },
        VmTest {
            name: crate::hostdriver_fuzz::NAME,
            about: "cxl-accel bound to vfio-cxl-pci: vfio-cxl-uapi-fuzz, 2 threads of seeded random uAPI operations for 60 s (VFIO_CXL_FUZZ_SECONDS, VFIO_CXL_FUZZ_SEED), every oracle holds, no operation hangs, no kernel report on the console",
            spec: crate::hostdriver_fuzz::spec,
            check: crate::hostdriver_fuzz::check,
        },
        VmTest {
            name: crate::hostdriver_fuzz::NAME_DEBUG,
            about: "host-driver-fuzz on the debug test kernel: any oracle failure, hang, or lockdep/KASAN/UBSAN/KFENCE report fails it",
            spec: crate::hostdriver_fuzz::spec_debug,
            check: crate::hostdriver_fuzz::check,
        },
        VmTest {
            name: crate::accel_reset::NAME,
            about: "cxl-accel, no driver: the guest rings CXL Reset through sysfs config; with Mem_Clr_Enable the host finds the memory-backend file all zeros with its blocks freed, without it the data survives; Status2 Reset_Complete, decoder 0 at power-on, then committed again and mapped (precommit=on and off); cxl-reset=off ignores Initiate",
            spec: crate::accel_reset::spec,
            check: crate::accel_reset::check,
        },
        VmTest {
            name: "guest-driver-coherence",
            about: "cxl-accel (256 MiB) bound to the reference guest Type-2 driver cxl-type2-ref: region assembled, coherence checks over /dev/cxl-type2-ref0 against the memory-backend file, rebind x3, rmmod",
            spec: guestdriver::coherence_spec,
            check: guestdriver::coherence_check,
        },
        VmTest {
            name: "guest-driver-no-region",
            about: "cxl-accel with precommit=off: cxl-type2-ref's probe fails cleanly (no region), nothing bound, rmmod",
            spec: guestdriver::no_region_spec,
            check: guestdriver::no_region_check,
        },
        VmTest {
            name: "guest-driver-vfio-user-cxl",
            about: "guest-driver-coherence with the device behind -device vfio-user-cxl (software Type-2 server on the host owns the memory file)",
            spec: guestdriver::vfio_user_spec,
            check: guestdriver::coherence_check,
        },
        VmTest {
            name: crate::device_sized::VFIO_USER_NAME,
            about: "guest-driver-vfio-user-cxl with a 128 GiB device on a sparse file: the coherence suite over its samples (first and last 2 MiB, both sides of every 1 GiB boundary, 1024 seeded offsets), each checked in the server's file; the first pass maps every GiB with one PUD",
            spec: crate::device_sized::vfio_user_spec,
            check: crate::device_sized::vfio_user_check,
        },
        VmTest {
            name: crate::device_sized::HOST_DRIVER_NAME,
            about: "host-driver-uapi with a 128 GiB cxl-accel on a sparse file: every uapi-check through vfio-cxl-pci over the sampled words, each checked in the backing file; clearing by Mem_Clr (hole punching)",
            spec: crate::device_sized::host_driver_spec,
            check: crate::device_sized::host_driver_check,
        },
        VmTest {
            name: crate::nested_run::COHERENCE_NAME,
            about: "guest-driver-vfio-user-cxl with the guest as L2 under KVM: an L1 guest (TCG, kvm_amd on TCG's nested SVM) runs the vfio-user-cxl server and QEMU -accel kvm; L2's CPUID 0x40000000 must say KVMKVMKVM, the server's memory file is checked in L1 and the verdict again in L0",
            spec: crate::nested_run::coherence_spec,
            check: crate::nested_run::coherence_check,
        },
        VmTest {
            name: crate::vucxl_smoke::NAME,
            about: "the vfio-user-cxl server behind QEMU's plain -device vfio-user-pci: QEMU's monitor (QMP) shows 1b36:0015 with a 64-bit BAR 0 and its sparse mmaps around the trapped decoder page; the guest reads the DVSECs and component registers, the decoder block hidden, the mmapped BAR area, the CXL Reset doorbell completed; the server's log agrees",
            spec: crate::vucxl_smoke::spec,
            check: crate::vucxl_smoke::check,
        },
        VmTest {
            name: "vfio-user-cxl-coherence",
            about: "the vfio-user-cxl server (host) behind QEMU's -device vfio-user-cxl, bound to vfio-cxl-pci in the guest: region from QEMU's pre-commit, every uapi-check passes, patterns cross server file<->guest",
            spec: crate::vucxl::coherence_spec,
            check: crate::vucxl::coherence_check,
        },
        VmTest {
            name: "vfio-user-cxl-guest-commit",
            about: "vfio-user-cxl with precommit=off: the guest commits the emulated decoder with devmem, the server's memory appears at the window base (both directions), decommit unmaps it, a range outside the window is refused",
            spec: crate::vucxl::guest_commit_spec,
            check: crate::vucxl::guest_commit_check,
        },
        VmTest {
            name: crate::vucxl_multi::NAME,
            about: "two -device vfio-user-cxl (two servers), each below its own pxb-cxl with its own window: two regions committed, one per window, uapi-check passes on both with different patterns, each only in its own server's file",
            spec: crate::vucxl_multi::spec,
            check: crate::vucxl_multi::check,
        },
        VmTest {
            name: crate::vucxl_hotplug::NAME,
            about: "device_add of vfio-user-cxl over QMP in a running guest: no server, uncommitted host decoder, no CXL_MEM, bad geometry, a second pre-committed device on the host bridge each fail with an error naming the device while QEMU runs on; a well-formed device hot-plugged into an empty cxl-rp gets its region assembled and passes uapi-check, then is unplugged and plugged again with its data; malformed devices at startup make QEMU exit 1",
            spec: crate::vucxl_hotplug::spec,
            check: crate::vucxl_hotplug::check,
        },
        VmTest {
            name: crate::vucxl_reset::NAME,
            about: "vfio-user-cxl: data survives a function reset (driver unbound, bus reset, region assembled again at the same address, uapi-check sees the old pattern) and a guest decommit/recommit of the emulated decoder (devmem: unmapped while decommitted, follows the decoder, still there after a reset)",
            spec: crate::vucxl_reset::spec,
            check: crate::vucxl_reset::check,
        },
        VmTest {
            name: crate::vmm_guard::NAME,
            about: "cxl-accel: the guest (devmem, CEDT CHBS) decommits, moves and recommits the host bridge decoder firmware locked, then resets the device (cxl_bus): QEMU stays alive, logs a guest error, and no guest write after the reset reaches device memory",
            spec: crate::vmm_guard::spec,
            check: crate::vmm_guard::check,
        },
        VmTest {
            name: crate::vmm_guard::INTERLEAVED,
            about: "cxl-accel (precommit=off) whose only window interleaves two host bridges: a guest commit there shows Error Not Committed, not Committed while decoding nothing",
            spec: crate::vmm_guard::interleaved_spec,
            check: crate::vmm_guard::interleaved_check,
        },
        VmTest {
            name: crate::vmm_guard::OVERLAP,
            about: "two cxl-accel (precommit=off) below one host bridge: the second guest commit at the first one's address shows Error Not Committed, and the guest's writes there reach only the first device's memory",
            spec: crate::vmm_guard::overlap_spec,
            check: crate::vmm_guard::overlap_check,
        },
        VmTest {
            name: crate::vmm_guard::BAD_INTERLEAVE,
            about: "cxl-accel (precommit=off): the guest commits a host bridge decoder with reserved Interleave Ways (0xf) and touches the window: QEMU logs a guest error and runs on (it aborted in extract32 before; found by vfio-user-cxl-guest-fuzz)",
            spec: crate::vmm_guard::bad_interleave_spec,
            check: crate::vmm_guard::bad_interleave_check,
        },
        VmTest {
            name: crate::vmm_route::NAME,
            about: "cxl-accel (precommit=off): the guest sets up the whole decode path (host bridge decoder, HDM Decoder Enable at both ends, endpoint decoder, DVSEC Mem_Enable, Memory Space), then breaks one link at a time: the device's tag is not readable through the window and guest writes do not reach the backing file while a link is broken, and both come back when it is mended",
            spec: crate::vmm_route::spec,
            check: crate::vmm_route::check,
        },
        VmTest {
            name: crate::vmm_route::VFIO_USER_NAME,
            about: "cxl-accel-decode-path against -device vfio-user-cxl (precommit=off) and the software Type-2 server, the tags in the server's memory file",
            spec: crate::vmm_route::vfio_user_spec,
            check: crate::vmm_route::check,
        },
        VmTest {
            name: crate::vmm_route::PASSTHROUGH,
            about: "cxl-accel (precommit=off) below a passthrough pxb-cxl (one root port, no HDM decoders): the endpoint's commit, HDM Decoder Enable and Mem_Enable map the memory (the host bridge routes its window to its only port); Mem_Enable off hides it",
            spec: crate::vmm_route::passthrough_spec,
            check: crate::vmm_route::passthrough_check,
        },
        VmTest {
            name: crate::vmm_fuzz::NAME,
            about: "guest-side fuzzer on cxl-accel (seeded, 60 s / 200 sequences; VFIO_CXL_FUZZ_SEED replays): random decoder, host bridge, DVSEC writes and cxl_bus resets; QEMU stays up, pages read through the committed range hold the host's tags, no probe written outside it reaches device memory",
            spec: crate::vmm_fuzz::spec,
            check: crate::vmm_fuzz::check,
        },
        VmTest {
            name: crate::vmm_fuzz::VFIO_USER_NAME,
            about: "the guest-side fuzzer of cxl-accel-guest-fuzz against -device vfio-user-cxl and the software Type-2 server: QEMU stays up, the committed range holds the server file's tags, no probe reaches the file",
            spec: crate::vmm_fuzz::vfio_user_spec,
            check: crate::vmm_fuzz::check,
        },
    ]
}

/// Starts a test's problem that says the run did not exercise what the
/// test needs, by chance (a race the guest could not be sure to hit),
/// rather than that something failed: alone, it makes [`decide`] run the
/// test once more, as a lost timer does, and a second such run fails.
pub const INCONCLUSIVE: &str = "inconclusive: ";

/// A run whose only problems are [`INCONCLUSIVE`] ones, as the reason to
/// run it once more.
pub fn inconclusive(problems: &[String]) -> Option<KernelProblem> {
    let first = problems.first()?;
    problems
        .iter()
        .all(|p| p.starts_with(INCONCLUSIVE))
        .then(|| KernelProblem {
            line_no: 0,
            what: "the run did not exercise what the test needs",
            line: first.clone(),
        })
}

/// What one run of a VM test found wrong, and where the kernel said a
/// timer interrupt was lost ([`crate::console::lost_timer`]) or the
/// guest's heartbeat stopped with QEMU idle
/// ([`crate::runner::RunOutcome::timers_stopped`]).
#[derive(Debug, Clone)]
pub struct RunVerdict {
    pub problems: Vec<String>,
    pub lost_timer: Option<KernelProblem>,
    /// The problems a lost timer does not explain
    /// ([`crate::runner::RunOutcome::problems_beyond_lost_timer`]): a rerun
    /// keeps them.
    pub beyond_lost_timer: Vec<String>,
}

/// The problems of a VM test run by `run` (given the lost-timer line of
/// the first run when it runs the second), and the lost-timer line that
/// made it run twice. A run where the guest kernel reports a lost timer
/// interrupt says nothing about the code under test (the emulator lost
/// it, docs/guest-harness.md), so one more run decides; a second lost
/// timer fails the test. Only the lost timer is forgiven: the first run's
/// other problems (a WARN, a QEMU error, ...) stay, prefixed "first run: ".
pub fn decide(
    mut run: impl FnMut(Option<&KernelProblem>) -> RunVerdict,
) -> (Vec<String>, Option<KernelProblem>) {
    let first = run(None);
    let Some(lost) = first.lost_timer else {
        return (first.problems, None);
    };
    let mut second = run(Some(&lost));
    second.problems.extend(
        first
            .beyond_lost_timer
            .iter()
            .map(|p| format!("first run: {p}")),
    );
    if let Some(again) = &second.lost_timer {
        second.problems.push(format!(
            "the harness ran it twice and both runs were inconclusive ({}, then {}: console line {} of the second): the emulator undid them, or chance left the test unexercised",
            lost.what, again.what, again.line_no
        ));
    }
    (second.problems, Some(lost))
}

pub fn find(name: &str) -> Option<VmTest> {
    all().into_iter().find(|t| t.name == name)
}

/// The CXL modules of Debian's 7.3.4 kernel (cxl_core, cxl_port are built
/// in); dependencies (libnvdimm) are resolved from modules.dep.
pub const CXL_MODULES: &[&str] = &["cxl_pmem", "cxl_acpi", "cxl_mem", "cxl_pci"];

const TYPE3_MIB: u64 = 256;
const WINDOW_MIB: u64 = 4096;

fn type3_enumeration_spec() -> RunSpec {
    let mut payload = Payload::new("cxl-type3-enumeration");
    for m in CXL_MODULES {
        payload = payload.module(m);
    }
    let payload = payload
        .step("wait-for-endpoint", sysfs::WAIT_SCRIPT)
        .step("report-cxl-sysfs", sysfs::STEP_SCRIPT);
    let mut spec = RunSpec::new(Topology::single_type3(TYPE3_MIB), payload);
    spec.timeout = Duration::from_secs(180);
    spec
}

fn type3_enumeration_check(outcome: &RunOutcome) -> Vec<String> {
    let s = CxlSysfs::from_report(&outcome.report);
    let mut p = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            p.push(what);
        }
    };
    need(s.has("root0"), "no root0 on the CXL bus".into());
    need(
        !s.named("port").is_empty(),
        "no port* (host bridge port) on the CXL bus".into(),
    );
    let endpoints = s.named("endpoint");
    need(!endpoints.is_empty(), "no endpoint* on the CXL bus".into());
    need(s.has("mem0"), "no mem0 (memdev) on the CXL bus".into());
    need(
        s.attr("mem0", "driver") == Some("cxl_mem"),
        format!(
            "mem0 driver is {:?}, expected cxl_mem",
            s.attr("mem0", "driver")
        ),
    );
    need(
        s.attr_u64("mem0", "ram/size") == Some(TYPE3_MIB << 20),
        format!(
            "mem0 ram/size is {:?}, expected {:#x}",
            s.attr("mem0", "ram/size"),
            TYPE3_MIB << 20
        ),
    );
    let roots = s.of_type("cxl_decoder_root");
    need(
        roots.len() == 1,
        format!("root decoders: {roots:?}, expected one"),
    );
    need(
        !s.of_type("cxl_decoder_endpoint").is_empty(),
        "no endpoint decoder (devtype cxl_decoder_endpoint)".into(),
    );
    match s.iomem_named("CXL Window 0") {
        None => need(false, "no \"CXL Window 0\" in /proc/iomem".into()),
        Some(w) => {
            need(
                w.size() == WINDOW_MIB << 20,
                format!(
                    "CXL Window 0 is {:#x} bytes, expected {:#x}",
                    w.size(),
                    WINDOW_MIB << 20
                ),
            );
            if let Some(root) = roots.first() {
                need(
                    s.attr_u64(root, "start") == Some(w.start)
                        && s.attr_u64(root, "size") == Some(w.size()),
                    format!(
                        "{root} (start {:?}, size {:?}) does not match CXL Window 0 ({:#x}, {:#x})",
                        s.attr(root, "start"),
                        s.attr(root, "size"),
                        w.start,
                        w.size()
                    ),
                );
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inconclusive_problems_run_a_test_again() {
        let miss = format!("{INCONCLUSIVE}the race was not hit");
        assert!(inconclusive(&[]).is_none());
        assert!(inconclusive(&[miss.clone(), "QEMU exited with signal 6".into()]).is_none());
        let again = inconclusive(std::slice::from_ref(&miss)).expect("run again");
        assert_eq!(again.line, miss);
    }
    use crate::env::GuestKernel;

    fn verdict(problems: &[&str], lost_at: Option<usize>) -> RunVerdict {
        RunVerdict {
            problems: problems.iter().map(|p| p.to_string()).collect(),
            beyond_lost_timer: Vec::new(),
            lost_timer: lost_at.map(|line_no| KernelProblem {
                line_no,
                what: "timer lost by the emulator",
                line: "rcu: rcu_preempt kthread timer wakeup didn't happen".into(),
            }),
        }
    }

    /// `decide` over a scripted sequence of runs: its verdict and how many
    /// runs it asked for.
    fn decide_over(runs: Vec<RunVerdict>) -> (Vec<String>, Option<usize>, usize) {
        let mut runs = runs.into_iter();
        let mut count = 0;
        let (problems, lost) = decide(|previous| {
            count += 1;
            assert_eq!(previous.is_some(), count == 2, "run {count}");
            runs.next()
                .expect("decide ran the test more often than scripted")
        });
        (problems, lost.map(|k| k.line_no), count)
    }

    #[test]
    fn only_a_lost_timer_runs_a_test_again() {
        assert_eq!(decide_over(vec![verdict(&[], None)]), (vec![], None, 1));
        // A real failure is final at once.
        let (p, lost, runs) = decide_over(vec![verdict(&["step \"bind\" failed"], None)]);
        assert_eq!((p.len(), lost, runs), (1, None, 1));
        // A lost timer: the second run decides, either way.
        let stall = "console line 39: RCU stall";
        assert_eq!(
            decide_over(vec![verdict(&[stall], Some(42)), verdict(&[], None)]),
            (vec![], Some(42), 2)
        );
        let (p, lost, runs) = decide_over(vec![
            verdict(&[stall], Some(42)),
            verdict(&["step \"rebind\" failed"], None),
        ]);
        assert_eq!(
            (p, lost, runs),
            (vec!["step \"rebind\" failed".to_string()], Some(42), 2)
        );
        // The first run's other problems stay after a clean second run.
        let mut first = verdict(
            &[stall, "console line 50: WARN(): WARNING: CPU: 0"],
            Some(42),
        );
        first.beyond_lost_timer = vec!["console line 50: WARN(): WARNING: CPU: 0".into()];
        assert_eq!(
            decide_over(vec![first, verdict(&[], None)]),
            (
                vec!["first run: console line 50: WARN(): WARNING: CPU: 0".to_string()],
                Some(42),
                2
            )
        );
        // Lost twice: a failure that says so, and no third run.
        let (p, lost, runs) = decide_over(vec![
            verdict(&[stall], Some(42)),
            verdict(&[stall], Some(17)),
        ]);
        assert_eq!((lost, runs), (Some(42), 2));
        assert_eq!(p.len(), 2, "{p:?}");
        // main prints the problems that start with "the harness" itself.
        assert!(p[1].starts_with("the harness ran it twice"), "{p:?}");
        assert!(
            p[1].contains("inconclusive (timer lost by the emulator, then timer lost by the emulator: console line 17"),
            "{p:?}"
        );
    }

    #[test]
    fn names_are_unique_and_specs_build() {
        let tests = all();
        let mut names: Vec<&str> = tests.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tests.len());
        for t in &tests {
            let spec = (t.spec)();
            spec.topology.validate().unwrap();
            assert_eq!(spec.payload.name, t.name);
        }
        assert!(find("cxl-type3-enumeration").is_some());
        // The name says which kernel a test boots.
        for t in &tests {
            let kernel = (t.spec)().kernel;
            let suffix = kernel.test_suffix();
            assert_eq!(
                t.name.ends_with("@debug"),
                kernel == GuestKernel::Debug,
                "{} boots {kernel:?}: its name must end in {suffix:?}",
                t.name
            );
        }
        assert!(find("host-driver-uapi@debug").is_some());
        assert!(find("nope").is_none());
    }
}
