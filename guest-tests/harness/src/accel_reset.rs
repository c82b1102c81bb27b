//! The VM test `cxl-accel-cxl-reset`: CXL Reset of the emulated `cxl-accel`
//! (docs/devices/cxl-accel.md), rung by the guest through its config space
//! (sysfs `config`) with no driver bound. Three devices, each below its own
//! host bridge and window, pre-committed by QEMU's firmware step:
//!
//! - A: the host seeds its memory-backend file; CXL Reset with
//!   Mem_Clr_Enable. The host then finds zeros over the whole file and
//!   its allocated blocks gone (holes punched, not zeros written).
//! - B: seeded the same way; CXL Reset without Mem_Clr_Enable: the data
//!   survives in the file.
//! - C: `cxl-reset=off`: neither capability bit, and Initiate is ignored.
//! - D: `precommit=off`, anonymous RAM: the guest commits decoder 0 at its
//!   window's base itself and writes a word there; CXL Reset with Mem_Clr
//!   (madvise path), and the guest's commit maps the memory again, zeroed.
//!
//! A and B: Initiate reads 0, Status2 reports Reset_Complete, decoder 0 and
//! the HDM Global Control read their power-on values (uncommitted,
//! unlocked, zero), and the guest programs decoder 0 again as firmware did
//! (Lock On Commit): the memory is mapped at the same address again.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cxl_regs::dvsec::Capability;
use vfio_cxl_uapi_check::pattern;

use crate::env::RunSpec;
use crate::error::Result;
use crate::hostdriver::{self, write_pattern, ACCEL_MIB};
use crate::payload::Payload;
use crate::qemu::{backing_file, Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::{HostFacts, RunOutcome};
use crate::vmm_guard::{FIND_SH, ROUTE_SH};

pub const NAME: &str = "cxl-accel-cxl-reset";

/// Host bridge bus numbers of A, B, C and D; D's window is CXL Window 3.
const BUSES: [u32; 4] = [12, 22, 32, 42];
const IDS: [&str; 4] = ["accA", "accB", "accC", "accD"];
const SEED_A: u64 = 0x0a11_ce00;
const SEED_B: u64 = 0x0b0b_0b00;
/// The word the guest writes through C's window before its ignored reset.
const C_WORD: u64 = 0x0c0c_5eed_cafe_f00d;
/// The word the guest writes through D's window before its reset.
const D_WORD: u64 = 0x0d0d_5eed_cafe_f00d;
/// At most this much of A's file may be allocated after the Mem_Clr (the
/// guest reads through the window afterwards, which may fault a page in).
const A_BLOCKS_AFTER_MAX_BYTES: u64 = 64 << 10;

fn topology() -> Topology {
    let mut t = Topology::none();
    for (i, bus_nr) in BUSES.into_iter().enumerate() {
        let hb = format!("cxl.{}", i + 1);
        let endpoint = if i < 2 {
            Endpoint::Accel {
                id: IDS[i].into(),
                size_mib: ACCEL_MIB,
                props: Vec::new(),
            }
        } else {
            let prop = if i == 2 {
                "cxl-reset=off"
            } else {
                "precommit=off"
            };
            Endpoint::Device {
                args: format!(
                    "cxl-accel,bus={{bus}},memdev={}-mem,id={},{prop}",
                    IDS[i], IDS[i]
                ),
            }
        };
        t.host_bridges.push(HostBridge {
            id: hb.clone(),
            bus_nr,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: format!("rp{i}"),
                port: 0,
                chassis: 0,
                slot: 2 + i as u32,
                endpoint: Some(endpoint),
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

/// Finds the device below a host bridge; config-space and decoder helpers.
const LIB_SH: &str = r#"below() { find_accels $1 && echo $dev; }
# cfg16 DEV OFFSET: a config-space word, 4 hex digits.
cfg16() {
	local w
	w=$(dd if=/sys/bus/pci/devices/$1/config bs=2 skip=$(($2 / 2)) count=1 2>/dev/null | od -An -tx2)
	echo ${w# }
}
# open_dev P BDF: enables the BAR, sets $hdm, $ctl and $base, reports P.cap.
open_dev() {
	echo 1 >/sys/bus/pci/devices/$2/enable || return 1
	read -r start end flags </sys/bus/pci/devices/$2/resource
	hdm=$((start + 0x1100)); ctl=$((hdm + 0x20))
	base=$(($(devmem $((hdm + 0x14)) 32) << 32 | $(devmem $((hdm + 0x10)) 32)))
	size_lo=$(devmem $((hdm + 0x18)) 32); size_hi=$(devmem $((hdm + 0x1c)) 32)
	vfiocxl_fact $1.bdf "$2"
	vfiocxl_fact $1.cap "$(cfg16 $2 0x10a)"
	vfiocxl_fact $1.before.ctl "$(devmem $ctl 32)"
	vfiocxl_fact $1.before.word "$(devmem $base 64)"
}
# ring P BDF BYTE: writes BYTE (octal escape) to Control2's low byte, then
# reports Control2, Status2, decoder 0 and the window.
ring() {
	printf "$3" | dd of=/sys/bus/pci/devices/$2/config bs=1 seek=$((0x110)) count=1 conv=notrunc 2>/dev/null || return 1
	vfiocxl_fact $1.control2 "$(cfg16 $2 0x110)"
	vfiocxl_fact $1.status2 "$(cfg16 $2 0x112)"
	vfiocxl_fact $1.reset.ctl "$(devmem $ctl 32)"
	vfiocxl_fact $1.reset.global "$(devmem $((hdm + 4)) 32)"
	vfiocxl_fact $1.reset.base "$(devmem $((hdm + 0x10)) 32)"
	vfiocxl_fact $1.reset.word "$(devmem $base 64)"
}
# commit_dec P PHASE: decoder 0 programmed at $base as firmware does, locked.
commit_dec() {
	devmem $((hdm + 4)) 32 2
	devmem $((hdm + 0x10)) 32 $((base & 0xffffffff))
	devmem $((hdm + 0x14)) 32 $((base >> 32))
	devmem $((hdm + 0x18)) 32 $size_lo
	devmem $((hdm + 0x1c)) 32 $size_hi
	devmem $ctl 32 0x300
	vfiocxl_fact $1.$2.ctl "$(devmem $ctl 32)"
	vfiocxl_fact $1.$2.word "$(devmem $base 64)"
}
"#;

/// Octal escapes of Control2's low byte: Initiate (bit 2), with
/// Mem_Clr_Enable (bit 3) for A.
const STEPS_SH: &str = r#"a=$(below @A@) && b=$(below @B@) && c=$(below @C@) && d=$(below @D@) || { echo "a cxl-accel is missing"; exit 1; }
open_dev a $a || exit 1
ring a $a '\014' || exit 1
commit_dec a again
open_dev b $b || exit 1
ring b $b '\004' || exit 1
commit_dec b again
open_dev c $c || exit 1
devmem $base 64 @C_WORD@
ring c $c '\014' || exit 1
# D: nothing committed; the guest commits at its window's base.
while read -r l; do case "$l" in *"CXL Window 3"*) W=0x${l%%-*} ;; esac; done </proc/iomem
[ -n "$W" ] || { echo "no CXL Window 3 in /proc/iomem"; exit 1; }
echo 1 >/sys/bus/pci/devices/$d/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$d/resource
hdm=$((start + 0x1100)); ctl=$((hdm + 0x20)); base=$W; size_lo=0x10000000; size_hi=0
# What an OS does above a device firmware did not commit: the host
# bridge's decoder routes the window to its root port, CXL.mem enabled.
hbd=$(hdm_of $(chbs_of $((0x@D@)))) || { echo "no HDM decoders on D's host bridge"; exit 1; }
hb_commit $hbd $W 0x10000000 0
mem_enable /sys/bus/pci/devices/$d/config 1
vfiocxl_fact d.cap "$(cfg16 $d 0x10a)"
vfiocxl_fact d.before.ctl "$(devmem $ctl 32)"
commit_dec d commit
devmem $base 64 @D_WORD@
vfiocxl_fact d.commit.written "$(devmem $base 64)"
ring d $d '\014' || exit 1
commit_dec d again
# Mapped again (not only zero because unmapped): a write reads back.
devmem $base 64 @D_WORD@
vfiocxl_fact d.again.written "$(devmem $base 64)"
"#;

pub fn spec() -> RunSpec {
    let bus = |i: usize| format!("{:02x}", BUSES[i]);
    let steps = STEPS_SH
        .replace("@A@", &bus(0))
        .replace("@B@", &bus(1))
        .replace("@C@", &bus(2))
        .replace("@D@", &bus(3))
        .replace("@C_WORD@", &format!("{C_WORD:#x}"))
        .replace("@D_WORD@", &format!("{D_WORD:#x}"));
    // cxl_acpi lists the windows in /proc/iomem (D's base).
    let payload = Payload::new(NAME)
        .module("cxl_acpi")
        .cmdline_arg("iomem=relaxed")
        .step(
            "cxl-reset",
            &format!("{FIND_SH}\n{ROUTE_SH}\n{LIB_SH}\n{steps}"),
        );
    let mut spec = RunSpec::new(topology(), payload);
    spec.extra_args = vec![
        "-object".into(),
        format!("memory-backend-ram,id={}-mem,size={ACCEL_MIB}M", IDS[2]),
        "-object".into(),
        format!("memory-backend-ram,id={}-mem,size={ACCEL_MIB}M", IDS[3]),
        // One line per Mem_Clr, with its duration (docs/benchmarks.md).
        "-trace".into(),
        "cxl_accel_mem_clear".into(),
    ];
    spec.timeout = std::time::Duration::from_secs(120);
    spec.before_boot = Some(seed);
    spec.after_exit = Some(inspect_files);
    spec
}

fn seed(dir: &Path) -> Result<()> {
    write_pattern(&backing_file(dir, IDS[0]), ACCEL_MIB << 20, SEED_A)?;
    write_pattern(&backing_file(dir, IDS[1]), ACCEL_MIB << 20, SEED_B)
}

/// A's file: nonzero bytes over the whole file and allocated bytes; B's:
/// how many pattern words survived.
fn inspect_files(dir: &Path) -> HostFacts {
    let mut f = Vec::new();
    let mut fact = |k: &str, v: String| f.push((k.to_string(), v));
    let a = backing_file(dir, IDS[0]);
    match nonzero_bytes(&a) {
        Ok(n) => fact("a.file.nonzero", n.to_string()),
        Err(e) => fact("a.file.error", e.to_string()),
    }
    match fs::metadata(&a) {
        Ok(m) => {
            fact("a.file.size", m.len().to_string());
            fact("a.file.allocated", (m.blocks() * 512).to_string());
        }
        Err(e) => fact("a.file.error", e.to_string()),
    }
    match hostdriver::count_pattern(&backing_file(dir, IDS[1]), SEED_B) {
        Ok((found, total, _)) => {
            fact("b.pattern.found", found.to_string());
            fact("b.pattern.total", total.to_string());
        }
        Err(e) => fact("b.file.error", e.to_string()),
    }
    f
}

fn nonzero_bytes(path: &Path) -> std::io::Result<u64> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut nonzero = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(nonzero);
        }
        nonzero += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
    }
}

/// `0x...` as devmem prints a 64-bit word.
fn devmem64(v: u64) -> String {
    format!("{v:#018X}").replacen("0X", "0x", 1)
}

/// Capability bits a CXL Reset capable cxl-accel must show, and the
/// Reset Timeout field (0: 10 ms).
fn cap_problems(key: &str, value: Option<&str>, capable: bool) -> Option<String> {
    let Some(cap) = value.and_then(|v| u16::from_str_radix(v, 16).ok()) else {
        return Some(format!("{key} = {value:?}, not a config word"));
    };
    let cap = Capability(cap);
    let reset = cap.is_set(Capability::CXL_RESET_CAPABLE);
    let mem_clr = cap.is_set(Capability::CXL_RESET_MEM_CLR_CAPABLE);
    let timeout = cap.get(Capability::CXL_RESET_TIMEOUT);
    (reset != capable || mem_clr != capable || timeout != 0).then(|| {
        format!(
            "{key} = {:#06x}: CXL_Reset_Capable {reset}, Mem_Clr_Capable {mem_clr}, timeout {timeout}; expected {capable}, {capable}, 0",
            cap.0
        )
    })
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let mut want = |key: &str, value: &str| {
        if r.fact(key) != Some(value) {
            p.push(format!("{key} = {:?}, expected {value:?}", r.fact(key)));
        }
    };
    let zero = devmem64(0);
    let word_a = devmem64(pattern::word(SEED_A, 0));
    let word_b = devmem64(pattern::word(SEED_B, 0));
    // Control2 keeps Mem_Clr_Enable, Initiate reads 0; Status2: PM init
    // complete and CXL Reset Complete. Decoder 0 was COMMIT | COMMITTED |
    // LOCK_ON_COMMIT, is 0 after the reset and again after the recommit.
    for (dev, control2, before, after) in [
        ("a", "0008", word_a.as_str(), zero.as_str()),
        ("b", "0000", word_b.as_str(), word_b.as_str()),
    ] {
        for (k, v) in [
            ("before.ctl", "0x00000700"),
            ("before.word", before),
            ("control2", control2),
            ("status2", "8002"),
            ("reset.ctl", "0x00000000"),
            ("reset.global", "0x00000000"),
            ("reset.base", "0x00000000"),
            ("reset.word", &zero),
            ("again.ctl", "0x00000700"),
            ("again.word", after),
        ] {
            want(&format!("{dev}.{k}"), v);
        }
    }
    // C: not capable; Initiate ignored, Mem_Clr_Enable still RW.
    let word_c = devmem64(C_WORD);
    for (k, v) in [
        ("c.before.ctl", "0x00000700"),
        ("c.control2", "0008"),
        ("c.status2", "8000"),
        ("c.reset.ctl", "0x00000700"),
        ("c.reset.word", word_c.as_str()),
    ] {
        want(k, v);
    }
    // D (precommit=off): the guest's own commit maps the memory, the CXL
    // Reset unmaps and clears it, the guest's commit maps it again.
    let word_d = devmem64(D_WORD);
    for (k, v) in [
        ("d.before.ctl", "0x00000000"),
        ("d.commit.ctl", "0x00000700"),
        ("d.commit.word", zero.as_str()),
        ("d.commit.written", word_d.as_str()),
        ("d.control2", "0008"),
        ("d.status2", "8002"),
        ("d.reset.ctl", "0x00000000"),
        ("d.reset.word", zero.as_str()),
        ("d.again.ctl", "0x00000700"),
        ("d.again.word", zero.as_str()),
        ("d.again.written", word_d.as_str()),
    ] {
        want(k, v);
    }
    for (dev, capable) in [("a", true), ("b", true), ("c", false), ("d", true)] {
        let key = format!("{dev}.cap");
        p.extend(cap_problems(&key, r.fact(&key), capable));
    }
    // The host's view of the files.
    let host = |k: &str| outcome.host_fact(k);
    if let Some(e) = host("a.file.error").or(host("b.file.error")) {
        p.push(format!("reading the backing files: {e}"));
    }
    if host("a.file.nonzero") != Some("0") {
        p.push(format!(
            "A's file after CXL Reset with Mem_Clr has {:?} nonzero bytes, expected 0",
            host("a.file.nonzero")
        ));
    }
    if host("a.file.size") != Some((ACCEL_MIB << 20).to_string().as_str()) {
        p.push(format!("A's file size changed: {:?}", host("a.file.size")));
    }
    let allocated = host("a.file.allocated").and_then(|v| v.parse::<u64>().ok());
    if allocated.is_none_or(|b| b > A_BLOCKS_AFTER_MAX_BYTES) {
        p.push(format!(
            "A's file still has {allocated:?} bytes allocated after Mem_Clr (at most {A_BLOCKS_AFTER_MAX_BYTES}): zeros written instead of holes punched?"
        ));
    }
    // QEMU's trace: A's and D's Mem_Clr, of the whole memory, successful.
    let clears: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("cxl_accel_mem_clear"))
        .collect();
    let whole = format!("Mem_Clr of {:#x} bytes", ACCEL_MIB << 20);
    if clears.len() != 2
        || !clears
            .iter()
            .all(|l| l.contains(&whole) && l.ends_with("ok 1"))
    {
        p.push(format!(
            "QEMU traced {clears:?}, expected two successful {whole}"
        ));
    }
    let total = pattern::sample_offsets(ACCEL_MIB << 20).len().to_string();
    if host("b.pattern.found") != Some(total.as_str()) {
        p.push(format!(
            "B's pattern after CXL Reset without Mem_Clr: {:?} of {total} words",
            host("b.pattern.found")
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_and_scripts() {
        let t = topology();
        t.validate().unwrap();
        for step in spec().payload.steps {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
        assert_eq!(devmem64(0x1122), "0x0000000000001122");
    }

    #[test]
    fn capability_check_reads_the_bits() {
        assert!(cap_problems("a.cap", Some("0897"), true).is_none());
        assert!(cap_problems("c.cap", Some("0017"), false).is_none());
        assert!(cap_problems("a.cap", Some("0017"), true).is_some());
        assert!(
            cap_problems("a.cap", Some("0097"), true).is_some(),
            "no Mem_Clr"
        );
        assert!(cap_problems("a.cap", None, true).is_some());
    }
}
