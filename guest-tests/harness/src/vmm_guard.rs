//! The VM test `cxl-accel-hb-tamper` (issue 11): a guest's root user
//! reprograms the host bridge decoder that firmware committed and locked
//! for a pre-committed `cxl-accel`, then resets the device. The VMM must
//! neither die nor let device memory appear where the decode path does
//! not route it.
//!
//! The guest finds the pxb-cxl's component registers in the CEDT's CHBS,
//! walks the CXL.cachemem capability array to the HDM decoder block and,
//! with busybox `devmem`, decommits host bridge decoder 0, moves its base
//! up 256 MiB and commits it again (with Lock On Commit, as the issue's
//! recipe). Firmware locked that decoder, so every one of those writes
//! must be ignored. It writes a tag through the device's committed range
//! before the reset, resets the device (`cxl_bus`: QEMU's firmware
//! commits the decoders again) and writes two more tags: one into the
//! committed range, one where the moved decoder would have routed. The
//! host then looks for the tags in the memory-backend file.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::env::RunSpec;
use crate::hostdriver::{accel_topology, ACCEL_ID, ACCEL_MIB};
use crate::payload::Payload;
use crate::qemu::{backing_file, Endpoint, HostBridge, RootPort, Topology, Window};
use crate::runner::{HostFacts, RunOutcome};

pub const NAME: &str = "cxl-accel-hb-tamper";
pub const INTERLEAVED: &str = "cxl-accel-interleaved-commit";

/// Written through the committed range before the reset, at DPA 0.
const TAG_BEFORE: u64 = 0x7a67_0001_b3f0_4e01;
/// Written at DPA 0x1000 through the committed range after the reset.
const TAG_AFTER: u64 = 0x7a67_0002_af7e_4e02;
/// Written after the reset where the moved decoder would have routed
/// (256 MiB past the device's range, + 0x2000): never device memory.
const TAG_MOVED: u64 = 0x7a67_0003_30fe_4e03;
const AFTER_OFFSET: u64 = 0x1000;
/// The tags the host looks for, by name.
const TAGS: [(&str, u64); 3] = [
    ("before", TAG_BEFORE),
    ("after", TAG_AFTER),
    ("moved", TAG_MOVED),
];
const MOVED_OFFSET: u64 = 0x2000;

/// Shell helpers: the host bridge's component registers from the CEDT,
/// and the HDM decoder block of a component register block.
pub(crate) const FIND_SH: &str = r#"# cedt_u64 TYPE OFF: the 64-bit field at OFF of the first CEDT structure
# of TYPE (0, CHBS: 16 is its Base; 1, CFMWS: 8 is its Base HPA).
cedt_u64() {
	local t=/sys/firmware/acpi/tables/CEDT off=36 len sl
	len=$(wc -c <$t)
	while [ $off -lt $len ]; do
		set -- $1 $2 $(od -A n -t u1 -j $off -N 4 $t)
		sl=$(($5 + 256 * $6))
		if [ $3 -eq $1 ]; then
			set -- $(od -A n -t u4 -j $((off + $2)) -N 8 $t)
			echo $(($1 + ($2 << 32)))
			return 0
		fi
		[ $sl -gt 0 ] || return 1
		off=$((off + sl))
	done
	return 1
}
# hdm_of BASE: the HDM Decoder Capability (id 5) of the component block at
# BASE, from the CXL.cachemem capability array at BASE + 0x1000.
hdm_of() {
	local cm=$(($1 + 0x1000)) h n i e
	h=$(devmem $cm 32); n=$(((h >> 24) & 0xff)); i=1
	while [ $i -le $n ]; do
		e=$(devmem $((cm + 4 * i)) 32)
		[ $((e & 0xffff)) -eq 5 ] && { echo $((cm + ((e >> 20) & 0xfff))); return 0; }
		i=$((i + 1))
	done
	return 1
}
# dec64 ADDR: the 64-bit base or size whose low dword is at ADDR.
dec64() { echo $(($(devmem $1 32) + ($(devmem $(($1 + 4)) 32) << 32))); }
hex() { printf '0x%x' $1; }
"#;

/// Shell helpers for the decode path a device's memory needs besides its
/// own committed decoder (QEMU maps it only while all of it routes there:
/// docs/devices/vfio-cxl.md): the host bridge's decoder, HDM Decoder
/// Enable at both ends, the DVSEC's Mem_Enable and Memory Space. Sourced
/// after [`FIND_SH`].
pub(crate) const ROUTE_SH: &str = r#"# chbs_of BUS: the component registers of the host bridge with UID BUS
# (QEMU's CHBS UID is the pxb-cxl's bus number).
chbs_of() {
	local t=/sys/firmware/acpi/tables/CEDT off=36 len sl
	len=$(wc -c <$t)
	while [ $off -lt $len ]; do
		set -- $1 $(od -A n -t u1 -j $off -N 4 $t)
		sl=$(($4 + 256 * $5))
		if [ $2 -eq 0 ] && [ $(od -A n -t u4 -j $((off + 4)) -N 4 $t) -eq $1 ]; then
			set -- $(od -A n -t u4 -j $((off + 16)) -N 8 $t)
			echo $(($1 + ($2 << 32)))
			return 0
		fi
		[ $sl -gt 0 ] || return 1
		off=$((off + sl))
	done
	return 1
}
# cfg_rd CFG OFF BYTES: a config-space register (sysfs file CFG).
cfg_rd() { set -- $(od -A n -t u$3 -j $2 -N $3 $1); echo $1; }
# cfg_wr16 CFG OFF VALUE: writes a config-space word.
cfg_wr16() {
	printf "\\$(printf %03o $(($3 & 0xff)))\\$(printf %03o $((($3 >> 8) & 0xff)))" |
		dd of=$1 bs=2 seek=$(($2 / 2)) count=1 conv=notrunc 2>/dev/null
}
# bit16 CFG OFF BIT ON: sets (ON=1) or clears (ON=0) a bit of a config word.
bit16() {
	local v=$(cfg_rd $1 $2 2)
	cfg_wr16 $1 $2 $(($4 ? v | (1 << $3) : v & ~(1 << $3)))
}
# dvsec_of CFG: the config offset of the CXL Device DVSEC (0x1e98, ID 0).
dvsec_of() {
	local p=256 h n=0
	while [ $p -ge 256 ] && [ $n -lt 64 ]; do
		h=$(cfg_rd $1 $p 4)
		if [ $((h & 0xffff)) -eq 35 ] && [ $(cfg_rd $1 $((p + 4)) 2) -eq 7832 ] &&
			[ $(cfg_rd $1 $((p + 8)) 2) -eq 0 ]; then
			echo $p
			return 0
		fi
		p=$((h >> 20)); n=$((n + 1))
	done
	return 1
}
# mem_enable CFG ON: the CXL Device DVSEC's Mem_Enable (Control bit 2).
mem_enable() { bit16 $1 $(($(dvsec_of $1) + 12)) 2 $2; }
# hb_commit HBD BASE SIZE PORT [N]: host bridge decoder N (0; HDM block
# HBD) decodes BASE+SIZE to root port PORT alone, HDM decoding enabled:
# what the OS does above a device firmware did not commit.
hb_commit() {
	local d=$(($1 + 0x20 * ${5:-0}))
	devmem $((d + 0x20)) 32 0
	devmem $((d + 0x10)) 32 $(($2 & 0xffffffff)); devmem $((d + 0x14)) 32 $(($2 >> 32))
	devmem $((d + 0x18)) 32 $(($3 & 0xffffffff)); devmem $((d + 0x1c)) 32 $(($3 >> 32))
	devmem $((d + 0x24)) 32 $4; devmem $((d + 0x28)) 32 0
	devmem $((d + 0x20)) 32 0x200
	devmem $(($1 + 4)) 32 2
}
"#;

/// Finds the cxl-accel, enables it: `$dev`, its HDM decoder block `$ep`.
const ACCEL_SH: &str = r#"find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$dev/resource
ep=$((start + 0x1100))
"#;

const TAMPER_SH: &str = r#"hb=$(cedt_u64 0 16) || { echo "no CHBS in the CEDT"; exit 1; }
hbd=$(hdm_of $hb) || { echo "no HDM decoder capability at $(hex $hb)"; exit 1; }
vfiocxl_fact hb.hdm "$(hex $hbd)"
vfiocxl_fact hb.before.ctrl "$(devmem $((hbd + 0x20)) 32)"
base=$(dec64 $((hbd + 0x10)))
vfiocxl_fact hb.before.base "$(hex $base)"
vfiocxl_fact ep.before.ctrl "$(devmem $((ep + 0x20)) 32)"
epbase=$(dec64 $((ep + 0x10)))
vfiocxl_fact ep.before.base "$(hex $epbase)"
devmem $epbase 64 @TAG_BEFORE@
# The issue's recipe: decommit, move up 256 MiB, commit (and lock) again.
devmem $((hbd + 0x20)) 32 0
vfiocxl_fact hb.decommit.ctrl "$(devmem $((hbd + 0x20)) 32)"
moved=$((base + 0x10000000))
devmem $((hbd + 0x10)) 32 $((moved & 0xffffffff))
devmem $((hbd + 0x14)) 32 $((moved >> 32))
devmem $((hbd + 0x20)) 32 0x300
vfiocxl_fact hb.after.ctrl "$(devmem $((hbd + 0x20)) 32)"
vfiocxl_fact hb.after.base "$(hex $(dec64 $((hbd + 0x10))))"
echo cxl_bus >/sys/bus/pci/devices/$dev/reset_method || { echo "no cxl_bus reset for $dev"; exit 1; }
echo 1 >/sys/bus/pci/devices/$dev/reset || { echo "reset of $dev failed"; exit 1; }
vfiocxl_fact reset ok
vfiocxl_fact hb.reset.ctrl "$(devmem $((hbd + 0x20)) 32)"
vfiocxl_fact hb.reset.base "$(hex $(dec64 $((hbd + 0x10))))"
vfiocxl_fact ep.reset.ctrl "$(devmem $((ep + 0x20)) 32)"
vfiocxl_fact ep.reset.base "$(hex $(dec64 $((ep + 0x10))))"
devmem $((epbase + @AFTER_OFFSET@)) 64 @TAG_AFTER@
devmem $((moved + @MOVED_OFFSET@)) 64 @TAG_MOVED@
true
"#;

pub fn spec() -> RunSpec {
    let tamper = TAMPER_SH
        .replace("@TAG_BEFORE@", &format!("{TAG_BEFORE:#x}"))
        .replace("@TAG_AFTER@", &format!("{TAG_AFTER:#x}"))
        .replace("@TAG_MOVED@", &format!("{TAG_MOVED:#x}"))
        .replace("@AFTER_OFFSET@", &format!("{AFTER_OFFSET:#x}"))
        .replace("@MOVED_OFFSET@", &format!("{MOVED_OFFSET:#x}"));
    let payload = Payload::new(NAME)
        .cmdline_arg("iomem=relaxed")
        .step("tamper", &format!("{FIND_SH}\n{ACCEL_SH}\n{tamper}"));
    let mut spec = RunSpec::new(accel_topology(ACCEL_MIB, 4096), payload);
    spec.extra_args = vec!["-d".into(), "guest_errors".into()];
    spec.after_exit = Some(find_tags);
    spec
}

/// Where each tag is in the memory-backend file: `tag.<name>` = the
/// offsets of the 8-byte words that hold it (`none` when none does).
fn find_tags(dir: &Path) -> HostFacts {
    tag_facts(&backing_file(dir, ACCEL_ID), "tag.")
}

/// The tags of [`TAGS`] in `file`: `<prefix><name>` = the offsets of the
/// 8-byte words that hold it, or `none`.
fn tag_facts(file: &Path, prefix: &str) -> HostFacts {
    let mut found: Vec<Vec<u64>> = vec![Vec::new(); TAGS.len()];
    let mut file = match fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return vec![(format!("{prefix}error"), e.to_string())],
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = match fill(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return vec![(format!("{prefix}error"), e.to_string())],
        };
        for (i, w) in buf[..n].chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(w.try_into().unwrap_or_default());
            for (t, (_, tag)) in TAGS.iter().enumerate() {
                if word == *tag {
                    found[t].push(offset + 8 * i as u64);
                }
            }
        }
        offset += n as u64;
    }
    TAGS.iter()
        .zip(found)
        .map(|((name, _), at)| {
            let v = if at.is_empty() {
                "none".to_string()
            } else {
                at.iter()
                    .map(|o| format!("{o:#x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            (format!("{prefix}{name}"), v)
        })
        .collect()
}

/// Reads until `buf` is full or the file ends, so words stay aligned.
fn fill(file: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub fn check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let mut want = |key: &str, got: Option<&str>, value: &str| {
        if got != Some(value) {
            p.push(format!("{key} = {got:?}, expected {value:?}"));
        }
    };
    // Firmware committed and locked both decoders 0 at boot
    // (LOCK_ON_COMMIT | COMMIT | COMMITTED).
    let locked = "0x00000700";
    want("hb.before.ctrl", r.fact("hb.before.ctrl"), locked);
    want("ep.before.ctrl", r.fact("ep.before.ctrl"), locked);
    // Lock On Commit: the decommit, the move and the re-commit were ignored.
    let base = r.fact("hb.before.base");
    want("hb.decommit.ctrl", r.fact("hb.decommit.ctrl"), locked);
    want("hb.after.ctrl", r.fact("hb.after.ctrl"), locked);
    want(
        "hb.after.base",
        r.fact("hb.after.base"),
        base.unwrap_or("?"),
    );
    // The reset committed both again, where they were: the device has its
    // memory at the same place, and nothing reached it elsewhere.
    want("reset", r.fact("reset"), "ok");
    want("hb.reset.ctrl", r.fact("hb.reset.ctrl"), locked);
    want(
        "hb.reset.base",
        r.fact("hb.reset.base"),
        base.unwrap_or("?"),
    );
    want("ep.reset.ctrl", r.fact("ep.reset.ctrl"), locked);
    let ep_base = r.fact("ep.before.base");
    want(
        "ep.reset.base",
        r.fact("ep.reset.base"),
        ep_base.unwrap_or("?"),
    );
    want("tag.before", outcome.host_fact("tag.before"), "0x0");
    let after = format!("{AFTER_OFFSET:#x}");
    want("tag.after", outcome.host_fact("tag.after"), &after);
    want("tag.moved", outcome.host_fact("tag.moved"), "none");
    if !outcome.stderr.contains("to locked HDM decoder register") {
        p.push("QEMU logged no guest error for the writes to the locked decoder".into());
    }
    if outcome.stderr.contains("firmware commit") {
        p.push("a firmware commit failed at the reset".into());
    }
    p
}

/// The guest commits the device's decoder at the base of a window that
/// interleaves two host bridges, which the device cannot be mapped into.
const INTERLEAVED_SH: &str = r#"W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
vfiocxl_fact window "$(hex $W)"
devmem $((ep + 0x10)) 32 $((W & 0xffffffff))
devmem $((ep + 0x14)) 32 $((W >> 32))
devmem $((ep + 0x18)) 32 0x10000000
devmem $((ep + 0x1c)) 32 0
devmem $((ep + 0x20)) 32 0x200
vfiocxl_fact commit.ctrl "$(devmem $((ep + 0x20)) 32)"
"#;

/// `cxl-accel-interleaved-commit`: cxl-accel (precommit=off) below host
/// bridge cxl.1; the only window interleaves cxl.1 and cxl.2. A guest
/// commit there must show Error Not Committed (the device cannot be
/// mapped into an interleaved window), not Committed while decoding
/// nothing.
pub fn interleaved_spec() -> RunSpec {
    let accel = Endpoint::Device {
        args: format!("cxl-accel,bus={{bus}},memdev=il-mem,id={ACCEL_ID},precommit=off"),
    };
    let mut t = Topology::none();
    for (i, bus_nr) in [12u32, 22].into_iter().enumerate() {
        t.host_bridges.push(HostBridge {
            id: format!("cxl.{}", i + 1),
            bus_nr,
            hdm_for_passthrough: true,
            root_ports: vec![RootPort {
                id: format!("rp{i}"),
                port: 0,
                chassis: 0,
                slot: 2 + i as u32,
                endpoint: (i == 0).then(|| accel.clone()),
            }],
        });
    }
    t.windows.push(Window {
        targets: vec!["cxl.1".into(), "cxl.2".into()],
        size_mib: 4096,
        granularity: None,
    });
    let payload = Payload::new(INTERLEAVED).cmdline_arg("iomem=relaxed").step(
        "commit",
        &format!("{FIND_SH}\n{ACCEL_SH}\n{INTERLEAVED_SH}"),
    );
    let mut spec = RunSpec::new(t, payload);
    spec.extra_args = vec![
        "-object".into(),
        format!("memory-backend-ram,id=il-mem,size={ACCEL_MIB}M"),
        "-d".into(),
        "guest_errors".into(),
    ];
    spec
}

pub fn interleaved_check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    // COMMIT as written, Error Not Committed, not COMMITTED.
    let ctrl = outcome.report.fact("commit.ctrl");
    if ctrl != Some("0x00000A00") {
        p.push(format!(
            "commit.ctrl = {ctrl:?}, expected \"0x00000A00\" (Error Not Committed)"
        ));
    }
    if !outcome
        .stderr
        .contains("not committed: it is in no non-interleaved CXL window")
    {
        p.push("QEMU logged no guest error for the refused commit".into());
    }
    p
}

/// Two cxl-accel (precommit=off) below one host bridge, one window: the
/// guest commits the first at the window base and writes a tag there,
/// then commits the second at the same base and writes another tag.
const OVERLAP_SH: &str = r#"find_accels; set -- $accels
[ $# -eq 2 ] || { echo "expected two cxl-accel, found $#"; exit 1; }
W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
vfiocxl_fact window "$(hex $W)"
# The host bridge routes the window's first 256 MiB to the first device's
# root port (port 0, enumerated first).
hbd=$(hdm_of $(cedt_u64 0 16)) || { echo "no host bridge HDM decoders"; exit 1; }
hb_commit $hbd $W 0x10000000 0
n=0
for dev in "$@"; do
	echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
	mem_enable /sys/bus/pci/devices/$dev/config 1
	read -r start end flags </sys/bus/pci/devices/$dev/resource
	ep=$((start + 0x1100))
	devmem $((ep + 4)) 32 2
	devmem $((ep + 0x10)) 32 $((W & 0xffffffff))
	devmem $((ep + 0x14)) 32 $((W >> 32))
	devmem $((ep + 0x18)) 32 0x10000000
	devmem $((ep + 0x1c)) 32 0
	devmem $((ep + 0x20)) 32 0x200
	vfiocxl_fact commit$n.ctrl "$(devmem $((ep + 0x20)) 32)"
	[ $n -eq 0 ] && devmem $W 64 @TAG0@
	[ $n -eq 1 ] && devmem $((W + 8)) 64 @TAG1@
	n=$((n + 1))
done
true
"#;

pub const OVERLAP: &str = "cxl-accel-overlapping-commits";

/// `cxl-accel-overlapping-commits`: a second device committed where the
/// first one's memory is mapped shows Error Not Committed, and both tags
/// the guest wrote there land in the first device's memory only.
pub fn overlap_spec() -> RunSpec {
    let mut t = accel_topology(ACCEL_MIB, 4096);
    let mut rp = t.host_bridges[0].root_ports[0].clone();
    rp.id = "rp1".into();
    rp.port = 1;
    rp.slot = 3;
    rp.endpoint = Some(Endpoint::Accel {
        id: OTHER_ID.into(),
        size_mib: ACCEL_MIB,
        props: Vec::new(),
    });
    t.host_bridges[0].root_ports.push(rp);
    let script = OVERLAP_SH
        .replace("@TAG0@", &format!("{TAG_BEFORE:#x}"))
        .replace("@TAG1@", &format!("{TAG_AFTER:#x}"));
    let payload = Payload::new(OVERLAP)
        .cmdline_arg("iomem=relaxed")
        .step("commit-both", &format!("{FIND_SH}\n{ROUTE_SH}\n{script}"));
    let mut spec = RunSpec::new(t, payload);
    spec.extra_args = vec![
        "-global".into(),
        "cxl-accel.precommit=off".into(),
        "-d".into(),
        "guest_errors".into(),
    ];
    spec.after_exit = Some(find_tags_both);
    spec
}

/// The second device of [`overlap_spec`].
const OTHER_ID: &str = "accel1";

fn find_tags_both(dir: &Path) -> HostFacts {
    let mut f = tag_facts(&backing_file(dir, ACCEL_ID), "a.");
    f.extend(tag_facts(&backing_file(dir, OTHER_ID), "b."));
    f
}

pub fn overlap_check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let mut want = |key: &str, got: Option<&str>, value: &str| {
        if got != Some(value) {
            p.push(format!("{key} = {got:?}, expected {value:?}"));
        }
    };
    want("commit0.ctrl", r.fact("commit0.ctrl"), "0x00000600");
    want("commit1.ctrl", r.fact("commit1.ctrl"), "0x00000A00");
    // Which file is the first device's depends on enumeration: exactly
    // one holds both tags, where the guest wrote them; the other neither.
    let a = (outcome.host_fact("a.before"), outcome.host_fact("a.after"));
    let b = (outcome.host_fact("b.before"), outcome.host_fact("b.after"));
    let both = (Some("0x0"), Some("0x8"));
    let none = (Some("none"), Some("none"));
    if !((a == both && b == none) || (a == none && b == both)) {
        p.push(format!(
            "tags (before, after) in accel0's file {a:?} and accel1's {b:?}: expected both in one file at 0x0 and 0x8, none in the other"
        ));
    }
    if !outcome.stderr.contains("overlaps the memory of") {
        p.push("QEMU logged no guest error for the overlapping commit".into());
    }
    p
}

pub const BAD_INTERLEAVE: &str = "cxl-accel-bad-interleave";

/// The guest commits host bridge decoder 0 over the window with
/// Interleave Ways 0xf (reserved), then reads and writes the window where
/// no device memory is mapped, so QEMU's window MMIO looks the target up
/// in that decoder.
const BAD_INTERLEAVE_SH: &str = r#"hbd=$(hdm_of $(cedt_u64 0 16)) || { echo "no host bridge HDM decoders"; exit 1; }
W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
hb_commit $hbd $W 0x10000000 0
devmem $((hbd + 0x20)) 32 0
devmem $((hbd + 0x20)) 32 0x2f0
vfiocxl_fact hb.ctrl "$(devmem $((hbd + 0x20)) 32)"
for o in 0 0x1000 0x100000 0x8000000; do
	devmem $((W + o)) 64 >/dev/null
	devmem $((W + o)) 64 0x5a5a
done
vfiocxl_fact survived 1
"#;

/// `cxl-accel-bad-interleave`: a host bridge decoder committed with
/// reserved Interleave Ways, then window accesses: QEMU logs a guest
/// error and runs on (it aborted in extract32() before).
pub fn bad_interleave_spec() -> RunSpec {
    let mut t = accel_topology(ACCEL_MIB, 4096);
    t.accel_prop("precommit=off");
    let payload = Payload::new(BAD_INTERLEAVE)
        .cmdline_arg("iomem=relaxed")
        .step(
            "bad-interleave",
            &format!("{FIND_SH}\n{ROUTE_SH}\n{BAD_INTERLEAVE_SH}"),
        );
    let mut spec = RunSpec::new(t, payload);
    spec.extra_args = vec!["-d".into(), "guest_errors".into()];
    spec
}

pub fn bad_interleave_check(outcome: &RunOutcome) -> Vec<String> {
    let mut p = Vec::new();
    // IW 0xf, IG 0, COMMIT | COMMITTED.
    let ctrl = outcome.report.fact("hb.ctrl");
    if ctrl != Some("0x000006F0") {
        p.push(format!("hb.ctrl = {ctrl:?}, expected \"0x000006F0\""));
    }
    if outcome.report.fact("survived") != Some("1") {
        p.push("the guest did not get past its window accesses".into());
    }
    if !outcome.stderr.contains("with Interleave Ways 15 decodes") {
        p.push("QEMU logged no guest error for the reserved Interleave Ways".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_scripts_are_valid_sh() {
        for step in spec()
            .payload
            .steps
            .into_iter()
            .chain(interleaved_spec().payload.steps)
            .chain(overlap_spec().payload.steps)
            .chain(bad_interleave_spec().payload.steps)
        {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }

    #[test]
    fn tags_are_found_at_their_offsets() {
        let dir = std::env::temp_dir().join(format!("vmm-guard-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; 3 << 20];
        data[0x10_0008..0x10_0010].copy_from_slice(&TAG_AFTER.to_le_bytes());
        data[0..8].copy_from_slice(&TAG_BEFORE.to_le_bytes());
        fs::write(backing_file(&dir, ACCEL_ID), &data).unwrap();
        let facts = find_tags(&dir);
        fs::remove_dir_all(&dir).unwrap();
        let get = |k: &str| facts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("tag.before"), Some("0x0"));
        assert_eq!(get("tag.after"), Some("0x100008"));
        assert_eq!(get("tag.moved"), Some("none"));
    }
}
