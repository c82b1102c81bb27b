//! The VM test `vfio-user-cxl-reset`: device memory survives a reset of
//! the PCI function and a decommit/recommit of the guest's HDM decoder,
//! and is mapped again afterwards. Two `-device vfio-user-cxl`, each below
//! its own host bridge and window:
//!
//! - device A (`precommit=on`, bound to vfio-cxl-pci): uapi-check writes
//!   pattern 1; the driver is unbound (the guest's CXL core lets go of the
//!   region), the function is reset (`reset_method` cxl_bus: a secondary
//!   bus reset through the CXL root port); QEMU's firmware pre-commit runs again,
//!   the rebound driver gets its region assembled at the same address, and
//!   uapi-check finds pattern 1 and writes pattern 2, which the host finds
//!   in the server's file.
//! - device B (`precommit=off`, no driver): the guest commits the emulated
//!   decoder with `devmem`, writes a word through the window, decommits
//!   (the window no longer reads it), recommits 256 MiB higher (the word
//!   follows the decoder), resets the function (decoder back to
//!   uncommitted, the window empty) and commits again: the word is still
//!   there, and the host reads it in the server's file.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use vfio_cxl_uapi_check::pattern;

use crate::env::RunSpec;
use crate::hostdriver::dmesg_sh;
use crate::hostdriver::{self, ACCEL_MIB, OUTSIDE_SEED};
use crate::qemu::{Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::{HostFacts, RunOutcome};
use crate::vmm_guard::{self, ROUTE_SH};
use crate::vucxl::{self, ServerSetup};
use crate::vucxl_multi::{uapi_run_problems, LIB};

pub const NAME: &str = "vfio-user-cxl-reset";

/// Device B's memory file starts with this pattern (A's with OUTSIDE_SEED).
const B_OUTSIDE_SEED: u64 = 0x0b0b_0115;
/// What uapi-check writes on device A before and after the reset.
const A_SEED_1: u64 = 0x0a5e_ed01;
const A_SEED_2: u64 = 0x0a5e_ed02;
/// The word the guest writes through device B's window, at this offset.
const B_WORD: u64 = 0x5eed_b0b0_cafe_f00d;
const B_OFFSET: u64 = 0x1000;

/// Device A below host bridge bus 12 (pci0000:0c), B below bus 22.
const BUSES: [u32; 2] = [12, 22];

fn topology() -> Topology {
    let mut t = Topology::none();
    for (i, bus_nr) in BUSES.into_iter().enumerate() {
        let hb = format!("cxl.{}", i + 1);
        t.host_bridges.push(HostBridge {
            id: hb.clone(),
            bus_nr,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: format!("rp{i}"),
                port: 0,
                chassis: 0,
                slot: 2 + i as u32,
                endpoint: Some(Endpoint::Device {
                    args: vucxl::device_json(i, ["vucA", "vucB"][i], i == 0),
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

/// Finds A and B by host bridge; helpers the later steps source.
const FIND_SH: &str = r#"wait_for 600 port_decoders || { echo "no CXL port decoders"; exit 1; }
below() { find_accels $1 && echo $dev; }
a=$(below @A_BUS@) || { echo "no device below pci0000:@A_BUS@"; exit 1; }
b=$(below @B_BUS@) || { echo "no device below pci0000:@B_BUS@"; exit 1; }
echo $a >/tmp/bdf
echo $b >/tmp/devB
vfiocxl_fact a.bdf "$a"
vfiocxl_fact b.bdf "$b"
"#;

/// Shared by the device A steps: the region state as facts `a.<phase>.*`.
const REGION_SH: &str = r#"regions() {
	n=0; names=
	for r in /sys/bus/cxl/devices/region*; do
		[ -e "$r" ] || continue
		n=$((n + 1)); names="$names ${r##*/}"
		read -r c <$r/commit; read -r res <$r/resource; read -r sz <$r/size
		vfiocxl_fact "a.$1.commit" "$c"; vfiocxl_fact "a.$1.resource" "$res"; vfiocxl_fact "a.$1.size" "$sz"
	done
	vfiocxl_fact "a.$1.regions" "$n"
}
committed() { read -r c </sys/bus/cxl/devices/region0/commit 2>/dev/null && [ "$c" = 1 ]; }
"#;

const BIND_A_SH: &str = r#"bind || { echo "$dev did not bind to vfio-cxl-pci"; exit 1; }
wait_for 100 committed || { echo "no committed region0"; exit 1; }
regions before
"#;

/// Unbind, reset the function by a secondary bus reset, look at the
/// decoder QEMU's firmware pre-committed again, rebind.
const RESET_A_SH: &str = r#"unbind || { echo "unbind of $dev failed"; exit 1; }
regions unbound
read -r m </sys/bus/pci/devices/$dev/reset_method; vfiocxl_fact a.reset_methods "$m"
# A CXL port masks secondary bus resets: Linux's cxl_bus method unmasks
# (Port Control Extensions DVSEC) and resets through the root port.
echo cxl_bus >/sys/bus/pci/devices/$dev/reset_method || { echo "no cxl_bus reset for $dev"; exit 1; }
read -r m </sys/bus/pci/devices/$dev/reset_method; vfiocxl_fact a.reset_method "$m"
echo 1 >/sys/bus/pci/devices/$dev/reset || { echo "reset of $dev failed"; exit 1; }
vfiocxl_fact a.reset ok
echo 1 >/sys/bus/pci/devices/$dev/enable
read -r start end flags </sys/bus/pci/devices/$dev/resource
vfiocxl_fact a.reset.ctl "$(devmem $((start + 0x1120)) 32)"
bind || { echo "$dev did not bind again"; exit 1; }
wait_for 100 committed || { echo "no committed region0 after the reset"; ls /sys/bus/cxl/devices; exit 1; }
regions after
"#;

/// Device B: the guest's own commits, decommit and a reset, with devmem.
const DECODER_B_SH: &str = r#"read -r b </tmp/devB
echo 1 >/sys/bus/pci/devices/$b/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$b/resource
while read -r l; do case "$l" in *"CXL Window 1"*) W=0x${l%%-*} ;; esac; done </proc/iomem
[ -n "$W" ] || { echo "no CXL Window 1 in /proc/iomem"; exit 1; }
hdm=$((start + 0x1100)); ctl=$((hdm + 0x20))
vfiocxl_fact b.window "$W"
# The rest of the decode path, as an OS sets it up: the host bridge routes
# both places the decoder goes to B's root port.
hbd=$(hdm_of $(chbs_of $((0x@B_BUS@)))) || { echo "no HDM decoders on B's host bridge"; exit 1; }
hb_commit $hbd $W 0x20000000 0
# A reset clears Mem_Enable: each commit enables CXL.mem again.
commit_at() {
	mem_enable /sys/bus/pci/devices/$b/config 1
	devmem $((hdm + 4)) 32 2
	devmem $((hdm + 0x10)) 32 $(($1 & 0xffffffff))
	devmem $((hdm + 0x14)) 32 $(($1 >> 32))
	devmem $((hdm + 0x18)) 32 0x10000000
	devmem $((hdm + 0x1c)) 32 0
	devmem $ctl 32 0x200
}
commit_at $W
vfiocxl_fact b.commit.ctl "$(devmem $ctl 32)"
vfiocxl_fact b.commit.word0 "$(devmem $W 64)"
devmem $((W + @OFF@)) 64 @WORD@
vfiocxl_fact b.commit.word "$(devmem $((W + @OFF@)) 64)"
devmem $ctl 32 0
vfiocxl_fact b.decommit.ctl "$(devmem $ctl 32)"
vfiocxl_fact b.decommit.word "$(devmem $((W + @OFF@)) 64)"
W2=$((W + 0x10000000))
commit_at $W2
vfiocxl_fact b.recommit.ctl "$(devmem $ctl 32)"
vfiocxl_fact b.recommit.word "$(devmem $((W2 + @OFF@)) 64)"
vfiocxl_fact b.recommit.old "$(devmem $((W + @OFF@)) 64)"
echo cxl_bus >/sys/bus/pci/devices/$b/reset_method || { echo "no cxl_bus reset for $b"; exit 1; }
echo 1 >/sys/bus/pci/devices/$b/reset || { echo "reset of $b failed"; exit 1; }
vfiocxl_fact b.reset.ctl "$(devmem $ctl 32)"
vfiocxl_fact b.reset.word "$(devmem $((W2 + @OFF@)) 64)"
commit_at $W
vfiocxl_fact b.again.ctl "$(devmem $ctl 32)"
vfiocxl_fact b.again.word "$(devmem $((W + @OFF@)) 64)"
"#;

fn uapi_step(outside: u64, guest: u64) -> String {
    format!(
        "{LIB}\n$VC/vfio-cxl-uapi-check \"$dev\" --expect-seed {outside} --write-seed {guest} --reopen 1 >&3\n"
    )
}

pub fn spec() -> RunSpec {
    let bus = |i: usize| format!("{:02x}", BUSES[i]);
    let find = FIND_SH
        .replace("@A_BUS@", &bus(0))
        .replace("@B_BUS@", &bus(1));
    let b = DECODER_B_SH
        .replace("@B_BUS@", &bus(1))
        .replace("@OFF@", &format!("{B_OFFSET:#x}"))
        .replace("@WORD@", &format!("{B_WORD:#x}"));
    let b = format!("{}\n{ROUTE_SH}\n{b}", vmm_guard::FIND_SH);
    let mut payload = hostdriver::base_payload(NAME).cmdline_arg(hostdriver::KEEP_MEMORY_ARG);
    payload.steps.retain(|s| s.name == "load-host-driver");
    let payload = payload
        .step("find", &format!("{LIB}\n{find}"))
        .step("bind-a", &format!("{LIB}\n{REGION_SH}\n{BIND_A_SH}"))
        .step("uapi-check-before", &uapi_step(OUTSIDE_SEED, A_SEED_1))
        .step("reset-a", &format!("{LIB}\n{REGION_SH}\n{RESET_A_SH}"))
        .step("uapi-check-after", &uapi_step(A_SEED_1, A_SEED_2))
        .step("decoder-b", &b)
        .step("report-dmesg", &dmesg_sh());
    vucxl::server_run_spec(topology(), payload, start_servers, stop_servers, 180)
}

fn start_servers(dir: &Path) -> crate::error::Result<()> {
    vucxl::start_servers(
        dir,
        &[
            ServerSetup::plain(OUTSIDE_SEED),
            ServerSetup::plain(B_OUTSIDE_SEED),
        ],
    )
}

/// The servers' facts, A's final pattern (`a.pattern.*`) and B's word
/// (`b.file.word`).
fn stop_servers(dir: &Path) -> HostFacts {
    let mut f = vucxl::stop_servers(dir);
    f.extend(vucxl::pattern_facts(dir, 0, A_SEED_2, "a."));
    let mut word = [0u8; 8];
    let read = fs::File::open(dir.join(vucxl::memory_at(1))).and_then(|mut file| {
        file.seek(SeekFrom::Start(B_OFFSET))?;
        file.read_exact(&mut word)
    });
    match read {
        Ok(()) => f.push((
            "b.file.word".into(),
            format!("{:#x}", u64::from_le_bytes(word)),
        )),
        Err(e) => f.push(("b.file.error".into(), e.to_string())),
    }
    f
}

/// `0x...` as devmem prints a 64-bit word.
fn devmem64(v: u64) -> String {
    format!("{v:#018X}").replacen("0X", "0x", 1)
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let mut want = |key: &str, value: &str| {
        if r.fact(key) != Some(value) {
            p.push(format!("{key} = {:?}, expected {value:?}", r.fact(key)));
        }
    };
    // Device A: one committed region before and after, at the same place;
    // none while unbound; QEMU's pre-commit back after the reset
    // (COMMIT | COMMITTED | LOCK_ON_COMMIT).
    let size = format!("{:#x}", ACCEL_MIB << 20);
    for phase in ["before", "after"] {
        want(&format!("a.{phase}.regions"), "1");
        want(&format!("a.{phase}.commit"), "1");
        want(&format!("a.{phase}.size"), &size);
    }
    want("a.unbound.regions", "0");
    want("a.reset_method", "cxl_bus");
    want("a.reset", "ok");
    want("a.reset.ctl", "0x00000700");
    // Device B: COMMIT | COMMITTED, then decommitted, then a reset.
    let outside0 = devmem64(pattern::word(B_OUTSIDE_SEED, 0));
    let word = devmem64(B_WORD);
    let zero = devmem64(0);
    for (k, v) in [
        ("b.commit.ctl", "0x00000600"),
        ("b.commit.word0", outside0.as_str()),
        ("b.commit.word", &word),
        ("b.decommit.ctl", "0x00000000"),
        ("b.decommit.word", &zero),
        ("b.recommit.ctl", "0x00000600"),
        ("b.recommit.word", &word),
        ("b.recommit.old", &zero),
        ("b.reset.ctl", "0x00000000"),
        ("b.reset.word", &zero),
        ("b.again.ctl", "0x00000600"),
        ("b.again.word", &word),
    ] {
        want(k, v);
    }
    if r.fact("a.before.resource") != r.fact("a.after.resource") {
        p.push(format!(
            "region0 moved across the reset: {:?} -> {:?}",
            r.fact("a.before.resource"),
            r.fact("a.after.resource")
        ));
    }
    p.extend(uapi_run_problems(outcome, 0, OUTSIDE_SEED, A_SEED_1));
    p.extend(uapi_run_problems(outcome, 1, A_SEED_1, A_SEED_2));
    let total = pattern::sample_offsets(ACCEL_MIB << 20).len().to_string();
    if outcome.host_fact("a.pattern.found") != Some(total.as_str()) {
        p.push(format!(
            "pattern 2 in device A's file: {:?} of {total} words",
            outcome.host_fact("a.pattern.found")
        ));
    }
    let file_word = format!("{B_WORD:#x}");
    if outcome.host_fact("b.file.word") != Some(file_word.as_str()) {
        p.push(format!(
            "device B's file at {B_OFFSET:#x}: {:?}, expected the guest's {file_word}",
            outcome.host_fact("b.file.word")
        ));
    }
    for l in hostdriver::dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("error-level kernel message: {}", l.text));
    }
    p.extend(vucxl::refused_unmaps(outcome));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_precommits_b_does_not() {
        let t = topology();
        t.validate().unwrap();
        let args: Vec<String> = t
            .host_bridges
            .iter()
            .map(|hb| match &hb.root_ports[0].endpoint {
                Some(Endpoint::Device { args }) => args.clone(),
                _ => String::new(),
            })
            .collect();
        assert!(args[0].contains(r#""precommit":true"#), "{}", args[0]);
        assert!(args[1].contains(r#""precommit":false"#), "{}", args[1]);
        assert_eq!(devmem64(0x1122), "0x0000000000001122");
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        for step in spec().payload.steps {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }
}
