//! The VM tests `cxl-accel-decode-path` and `vfio-user-cxl-decode-path`
//! (issue 11): QEMU maps a device's memory only while the whole decode
//! path routes the committed range to it.
//!
//! The device has `precommit=off`, so the guest sets the path up itself
//! as an OS would (host bridge decoder 0 committed for the device's root
//! port, HDM Decoder Enable at both ends, endpoint decoder 0 committed at
//! the window base, DVSEC Mem_Enable, Memory Space), reads the host's tag
//! at DPA 0 and writes a word at DPA 0x10. Then it breaks one link at a
//! time: host bridge decoder decommitted, retargeted to another root port,
//! moved off the range, host bridge HDM decoding off, the endpoint's HDM
//! Decoder Enable off, Mem_Enable off, Memory Space off. With the link
//! broken it reads the page's tag through the window (it must not read
//! it) and writes a leak tag beside it; with the link mended it reads the
//! tag again and the word beside it (untouched). The host seeded every
//! 4 KiB of device memory with `PAGE_TAG | offset` and checks afterwards
//! that no leak tag reached it, every page tag is where it wrote it, and
//! the word written with the path up is at DPA 0x10.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::env::RunSpec;
use crate::hostdriver::{accel_topology, ACCEL_MIB};
use crate::payload::Payload;
use crate::qemu::{backing_file, Endpoint};
use crate::runner::{HostFacts, RunOutcome};
use crate::vmm_fuzz::{scan_file, write_page_tags_to, PAGE_TAG, PROBE_MARK};
use crate::vmm_guard::{FIND_SH, ROUTE_SH};
use crate::vucxl::{self, ServerSetup};

pub const NAME: &str = "cxl-accel-decode-path";
pub const VFIO_USER_NAME: &str = "vfio-user-cxl-decode-path";
pub const PASSTHROUGH: &str = "cxl-accel-passthrough-hb";

/// Written with the whole path up at DPA [`ON_OFFSET`].
const ON_TAG: u64 = 0x7a6f_0000_5eed_0010;
const ON_OFFSET: u64 = 0x10;

/// The links of the path, in the order the guest breaks them: name, the
/// shell that breaks it, the shell that mends it. Link `n` (from 1) is
/// probed at DPA `n * 4096`.
const LINKS: [(&str, &str, &str); 7] = [
    (
        "hb_commit",
        "devmem $((hbd + 0x20)) 32 0",
        "devmem $((hbd + 0x20)) 32 0x200",
    ),
    (
        "hb_target",
        "hb_commit $hbd $W $M 1",
        "hb_commit $hbd $W $M 0",
    ),
    (
        "hb_range",
        "hb_commit $hbd $((W + M)) $M 0",
        "hb_commit $hbd $W $M 0",
    ),
    (
        "hb_enable",
        "devmem $((hbd + 4)) 32 0",
        "devmem $((hbd + 4)) 32 2",
    ),
    (
        "ep_enable",
        "devmem $((ep + 4)) 32 0",
        "devmem $((ep + 4)) 32 2",
    ),
    ("mem_enable", "mem_enable $cfg 0", "mem_enable $cfg 1"),
    ("memory_space", "bit16 $cfg 4 1 0", "bit16 $cfg 4 1 1"),
];

const PATH_SH: &str = r#"find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
cfg=/sys/bus/pci/devices/$dev/config
echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$dev/resource
ep=$((start + 0x1100))
hb=$(cedt_u64 0 16) || { echo "no CHBS in the CEDT"; exit 1; }
hbd=$(hdm_of $hb) || { echo "no host bridge HDM decoders"; exit 1; }
W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
M=0x10000000
vfiocxl_fact dvsec "$(dvsec_of $cfg)"
# The whole path, as an OS sets it up for a device firmware left alone.
hb_commit $hbd $W $M 0
devmem $((ep + 0x10)) 32 $((W & 0xffffffff)); devmem $((ep + 0x14)) 32 $((W >> 32))
devmem $((ep + 0x18)) 32 $M; devmem $((ep + 0x1c)) 32 0
devmem $((ep + 0x20)) 32 0x200
devmem $((ep + 4)) 32 2
mem_enable $cfg 1
vfiocxl_fact hb.ctrl "$(devmem $((hbd + 0x20)) 32)"
vfiocxl_fact ep.ctrl "$(devmem $((ep + 0x20)) 32)"
vfiocxl_fact up.read "$(devmem $W 64)"
devmem $((W + @ON_OFFSET@)) 64 @ON_TAG@
n=0
# link NAME BREAK MEND: reads and writes page n through the window with
# the link broken, then reads it again with the link mended.
link() {
	n=$((n + 1))
	local a=$((W + n * 4096))
	eval "$2"
	vfiocxl_fact $1.off "$(devmem $a 64)"
	devmem $((a + 8)) 64 $((@PROBE_MARK@ << 48 | n))
	eval "$3"
	vfiocxl_fact $1.on "$(devmem $a 64)"
	vfiocxl_fact $1.on8 "$(devmem $((a + 8)) 64)"
}
"#;

fn script() -> String {
    let mut s = PATH_SH
        .replace("@ON_OFFSET@", &format!("{ON_OFFSET:#x}"))
        .replace("@ON_TAG@", &format!("{ON_TAG:#x}"))
        .replace("@PROBE_MARK@", &format!("{PROBE_MARK:#x}"));
    for (name, off, on) in LINKS {
        s.push_str(&format!("link {name} '{off}' '{on}'\n"));
    }
    format!("{FIND_SH}\n{ROUTE_SH}\n{s}")
}

fn payload(name: &str) -> Payload {
    Payload::new(name)
        .cmdline_arg("iomem=relaxed")
        .step("decode-path", &script())
}

/// The cxl-accel's id (not `accel_topology`'s default: its backend is
/// given here, on a file the host seeds).
pub fn spec() -> RunSpec {
    let mut t = accel_topology(ACCEL_MIB, 4096);
    t.accel_prop("precommit=off");
    let mut spec = RunSpec::new(t, payload(NAME));
    spec.before_boot =
        Some(|dir| write_page_tags_to(&backing_file(dir, crate::hostdriver::ACCEL_ID)));
    spec.after_exit = Some(|dir| facts(&backing_file(dir, crate::hostdriver::ACCEL_ID)));
    spec
}

pub fn vfio_user_spec() -> RunSpec {
    let mut t = accel_topology(ACCEL_MIB, 4096);
    t.host_bridges[0].root_ports[0].endpoint = Some(Endpoint::Device {
        args: vucxl::device_json(0, "vuc0", false),
    });
    vucxl::server_run_spec(t, payload(VFIO_USER_NAME), start_server, stop_server, 180)
}

fn start_server(dir: &Path) -> crate::error::Result<()> {
    vucxl::start_servers(dir, &[ServerSetup::plain(0)])?;
    write_page_tags_to(&dir.join(vucxl::memory_at(0)))
}

fn stop_server(dir: &Path) -> HostFacts {
    let mut f = vucxl::stop_servers(dir);
    f.extend(facts(&dir.join(vucxl::memory_at(0))));
    f
}

/// Escapes and misplaced page tags ([`scan_file`]), and the word at
/// [`ON_OFFSET`] as `on.word`.
fn facts(path: &Path) -> HostFacts {
    let mut f = scan_file(path);
    let mut b = [0u8; 8];
    let read = fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(ON_OFFSET))?;
        file.read_exact(&mut b)
    });
    match read {
        Ok(()) => f.push(("on.word".into(), format!("{:#x}", u64::from_le_bytes(b)))),
        Err(e) => f.push(("on.word.error".into(), e.to_string())),
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
    let mut want = |key: &str, got: Option<&str>, value: &str| {
        if got != Some(value) {
            p.push(format!("{key} = {got:?}, expected {value:?}"));
        }
    };
    // COMMIT | COMMITTED at both ends.
    want("hb.ctrl", r.fact("hb.ctrl"), "0x00000600");
    want("ep.ctrl", r.fact("ep.ctrl"), "0x00000600");
    want("up.read", r.fact("up.read"), &devmem64(PAGE_TAG));
    want(
        "on.word",
        outcome.host_fact("on.word"),
        &format!("{ON_TAG:#x}"),
    );
    let mut broken = Vec::new();
    for (n, (name, _, _)) in LINKS.iter().enumerate() {
        let tag = devmem64(PAGE_TAG | ((n as u64 + 1) * 4096));
        want(&format!("{name}.on"), r.fact(&format!("{name}.on")), &tag);
        want(
            &format!("{name}.on8"),
            r.fact(&format!("{name}.on8")),
            &devmem64(0),
        );
        let off = r.fact(&format!("{name}.off"));
        if off.is_none() || off == Some(tag.as_str()) {
            broken.push(format!(
                "{name} broken: the window read {off:?}, the device's tag {tag} or nothing"
            ));
        }
    }
    p.extend(broken);
    for k in ["escapes", "misplaced"] {
        if outcome.host_fact(k) != Some("0") {
            p.push(format!(
                "{k} = {:?} in device memory: {:?}",
                outcome.host_fact(k),
                outcome.host_fact(&format!("{k}.first"))
            ));
        }
    }
    p
}

/// Below a passthrough host bridge (one root port, no HDM decoders) the
/// guest commits only the endpoint's decoder; Mem_Enable turns the memory
/// off and on.
const PASSTHROUGH_SH: &str = r#"find_accels || { echo "no cxl-accel (1b36:0015) on PCI"; exit 1; }
cfg=/sys/bus/pci/devices/$dev/config
echo 1 >/sys/bus/pci/devices/$dev/enable || exit 1
read -r start end flags </sys/bus/pci/devices/$dev/resource
ep=$((start + 0x1100))
W=$(cedt_u64 1 8) || { echo "no CFMWS in the CEDT"; exit 1; }
devmem $((ep + 0x10)) 32 $((W & 0xffffffff)); devmem $((ep + 0x14)) 32 $((W >> 32))
devmem $((ep + 0x18)) 32 0x10000000; devmem $((ep + 0x1c)) 32 0
devmem $((ep + 0x20)) 32 0x200
devmem $((ep + 4)) 32 2
mem_enable $cfg 1
vfiocxl_fact up.read "$(devmem $W 64)"
mem_enable $cfg 0
vfiocxl_fact mem_enable.off "$(devmem $((W + 4096)) 64)"
mem_enable $cfg 1
vfiocxl_fact mem_enable.on "$(devmem $((W + 4096)) 64)"
"#;

/// `cxl-accel-passthrough-hb`: the host bridge without HDM decoders
/// (`hdm_for_passthrough=off`, one root port) routes its window to the
/// device, so the rule maps the memory on the endpoint's commit alone.
pub fn passthrough_spec() -> RunSpec {
    let mut t = accel_topology(ACCEL_MIB, 4096);
    t.host_bridges[0].hdm_for_passthrough = false;
    t.accel_prop("precommit=off");
    let payload = Payload::new(PASSTHROUGH).cmdline_arg("iomem=relaxed").step(
        "passthrough",
        &format!("{FIND_SH}\n{ROUTE_SH}\n{PASSTHROUGH_SH}"),
    );
    let mut spec = RunSpec::new(t, payload);
    spec.before_boot =
        Some(|dir| write_page_tags_to(&backing_file(dir, crate::hostdriver::ACCEL_ID)));
    spec
}

pub fn passthrough_check(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut p = Vec::new();
    let page1 = devmem64(PAGE_TAG | 4096);
    for (k, want) in [
        ("up.read", devmem64(PAGE_TAG)),
        ("mem_enable.on", page1.clone()),
    ] {
        if r.fact(k) != Some(want.as_str()) {
            p.push(format!("{k} = {:?}, expected {want}", r.fact(k)));
        }
    }
    let off = r.fact("mem_enable.off");
    if off.is_none() || off == Some(page1.as_str()) {
        p.push(format!("with Mem_Enable off the window read {off:?}"));
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
            .chain(vfio_user_spec().payload.steps)
            .chain(passthrough_spec().payload.steps)
        {
            crate::payload::assert_valid_sh(&step.name, &step.script);
        }
    }
}
