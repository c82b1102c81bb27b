//! The main job's boot (`guest-harness demo`, run by `cargo xtask demo`):
//! one guest with the default device end to end, one level, vfio-user.
//!
//! The machine is the bandwidth benchmark's ([`bench_bw::machine_spec`]):
//! the software Type-2 device (crates/vfio-user-cxl, its memory in a file
//! the host fills and checks) behind `-device vfio-user-cxl`, claimed in
//! the guest by the reference driver cxl-type2-ref, plus a stock
//! `cxl-type3` on a second host bridge. In order, the guest binds the
//! driver, creates the type-3 RAM region, reports its CXL sysfs and
//! topology, runs the coherence suite over `/dev/cxl-type2-ref0` (with
//! the host's ping-pong thread) and the bandwidth benchmark (which leaves
//! the memory as it found it, so the host's file check still holds).

use std::time::Duration;

use serde_json::json;

use crate::bench_bw::{self, Figures, Params};
use crate::env::RunSpec;
use crate::guestdriver::{self, CHAR_DEV, MODULE};
use crate::hostdriver;
use crate::runner::RunOutcome;
use crate::sysfs;
use crate::topology::{self, Tree};
use vfio_cxl_uapi_check::coherence;

/// The demo's boot.
pub fn spec(params: &Params) -> RunSpec {
    let mut spec = bench_bw::machine_spec(
        "demo",
        &["bind", "report-cxl-sysfs", "coherence", "report-dmesg"],
    );
    spec.payload = bench_bw::with_type3_region(spec.payload, "bind");
    let mut steps = std::mem::take(&mut spec.payload.steps);
    let at = |steps: &Vec<crate::payload::Step>, name: &str| {
        steps
            .iter()
            .position(|s| s.name == name)
            .expect("the step is kept")
    };
    let sysfs_at = at(&steps, "report-cxl-sysfs");
    steps.insert(
        sysfs_at + 1,
        crate::payload::Step {
            name: "report-topology".into(),
            script: topology::STEP_SCRIPT.into(),
        },
    );
    let coherence_at = at(&steps, "coherence");
    steps.insert(
        coherence_at + 1,
        crate::payload::Step {
            name: "bench-bw".into(),
            script: bench_bw::bench_step(params),
        },
    );
    spec.payload.steps = steps;
    spec.timeout = Duration::from_secs(900);
    spec
}

/// Everything wrong with a finished demo run (empty: all passed).
pub fn problems(outcome: &RunOutcome) -> Vec<String> {
    let mut p = outcome.problems();
    if let Some(lost) = outcome.lost_timer() {
        p.push(format!(
            "the guest lost a timer interrupt ({}, console line {}): the emulator's doing under TCG, not the device's; run the demo again (docs/troubleshooting.md)",
            lost.what, lost.line_no
        ));
    }
    if outcome.report.done.is_none() {
        return p;
    }
    let r = &outcome.report;
    if r.fact("accel.driver") != Some(MODULE) {
        p.push(format!(
            "the Type-2 device is bound to {:?}, expected {MODULE}",
            r.fact("accel.driver")
        ));
    }
    p.extend(guestdriver::coherence_results_check(outcome));
    let s = sysfs::CxlSysfs::from_report(r);
    let committed: Vec<&str> = s
        .named("region")
        .into_iter()
        .filter(|reg| s.attr(reg, "commit") == Some("1"))
        .collect();
    if committed.len() != 2 {
        p.push(format!(
            "committed CXL regions {committed:?}, expected two (Type-2 and type-3)"
        ));
    }
    if r.fact("t3.dax_driver") != Some("device_dax") {
        p.push(format!(
            "the type-3 region's dax device is bound to {:?}, expected device_dax",
            r.fact("t3.dax_driver")
        ));
    }
    match Figures::from_report(r) {
        Ok(f) if !f.direct_ratio_met() => p.push(format!(
            "bandwidth: b/a below {} (write {:?}, read {:?})",
            bench_bw::MIN_DIRECT_RATIO,
            f.ratio(bench_bw::DIRECT, bench_bw::RAM, bench_bw::Dir::Write),
            f.ratio(bench_bw::DIRECT, bench_bw::RAM, bench_bw::Dir::Read)
        )),
        Ok(_) => {}
        Err(e) => p.push(format!("bandwidth: {e}")),
    }
    for l in hostdriver::dmesg(outcome)
        .iter()
        .filter(|l| l.level.is_some_and(|v| v <= 3))
    {
        p.push(format!("error-level kernel message: {}", l.text));
    }
    p
}

/// The coherence section: each check with its detail, then the host side.
fn coherence_lines(outcome: &RunOutcome) -> Vec<String> {
    let r = &outcome.report;
    let mut out: Vec<String> = coherence::CHECKS
        .iter()
        .map(|c| {
            format!(
                "{c:<16} {}",
                r.fact(&format!("coherence.{c}")).unwrap_or("did not run")
            )
        })
        .collect();
    let hf = |k: &str| outcome.host_fact(k).unwrap_or("?");
    out.push(format!(
        "host side       {} words read back from the server's memory file: {} mismatches (counter, ping, pong words excluded); counter {}; {} pongs answered; checksum {} (guest: {})",
        hf("file.words"),
        hf("file.bad"),
        hf("file.counter"),
        hf("host.pongs"),
        hf("file.checksum"),
        r.fact("coherence.checksum_value").unwrap_or("?"),
    ));
    out
}

/// The report: topology, coherence, bandwidth, verdict; and the same as
/// JSON.
pub fn report(outcome: &RunOutcome, problems: &[String]) -> (String, serde_json::Value) {
    let r = &outcome.report;
    let tree = Tree::from_report(r);
    let mut text = String::new();
    let mut section = |title: &str, lines: &[String]| {
        text += &format!("{title}\n");
        for l in lines {
            text += &format!("  {l}\n");
        }
    };
    section(
        "Topology (the guest's CXL core, /sys/bus/cxl):",
        &tree.render(),
    );
    let windows: Vec<String> = tree
        .sysfs
        .iomem
        .iter()
        .filter(|w| w.name.starts_with("CXL Window"))
        .map(|w| {
            format!(
                "{}: {:#x}-{:#x} ({})",
                w.name,
                w.start,
                w.end,
                topology::size_text(w.size())
            )
        })
        .collect();
    section("Windows (/proc/iomem):", &windows);
    section(
        &format!(
            "Coherence (cxl-type2-ref, {CHAR_DEV} over -device vfio-user-cxl, {} MiB):",
            r.fact("t2.size")
                .and_then(sysfs::parse_u64)
                .map_or(0, |s| s >> 20)
        ),
        &coherence_lines(outcome),
    );
    let figures = Figures::from_report(r);
    section(
        "Bandwidth (memcpy in guest user space; b = the direct mapping, c = QEMU's emulated type-3):",
        &match &figures {
            Ok(f) => f.describe(),
            Err(e) => vec![format!("no figures: {e}")],
        },
    );
    let verdict = if problems.is_empty() {
        vec!["PASS: every check passed".to_string()]
    } else {
        problems.iter().map(|p| format!("FAIL: {p}")).collect()
    };
    section(
        &format!(
            "Guest run: {:.1} s boot to exit",
            outcome.wall.as_secs_f64()
        ),
        &verdict,
    );
    let doc = json!({
        "ok": problems.is_empty(),
        "problems": problems,
        "wall_s": outcome.wall.as_secs_f64(),
        "topology": tree.sysfs.devices,
        "windows": windows,
        "coherence": coherence::CHECKS
            .iter()
            .map(|c| (c.to_string(), json!(r.fact(&format!("coherence.{c}")))))
            .collect::<serde_json::Map<_, _>>(),
        "host_facts": outcome.host_facts.iter().filter(|(k, _)| !k.starts_with("server.log")).cloned().collect::<Vec<_>>(),
        "bandwidth": figures.map(|f| f.to_json()).unwrap_or(serde_json::Value::Null),
    });
    (text, doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_builds_with_the_steps_in_order() {
        let s = spec(&Params::default());
        s.topology.validate().unwrap();
        let names: Vec<&str> = s.payload.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bind",
                "type3-region",
                "report-cxl-sysfs",
                "report-topology",
                "coherence",
                "bench-bw",
                "report-dmesg"
            ]
        );
        assert_eq!(s.payload.name, "demo");
        assert!(s.before_boot.is_some() && s.after_exit.is_some());
    }
}
