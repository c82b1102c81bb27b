//! `vfio-cxl-uapi-check BDF [--expect-seed N] [--write-seed N] [--reopen N]
//! [--reopen-only] [--bench-fault]`
//!
//! Runs every check of `checks::CHECKS` on a device bound to vfio-cxl-pci
//! and reports each as a fact line of the guest harness protocol
//! (`VFIOCXL-RESULT {"kind":"fact",...}`), then `uapi-check: N passed, M
//! failed`. Exit status 0 when all passed, 1 otherwise, 2 on bad usage.
//!
//! `--reopen-only` runs only the close/open cycles (the rebind VM test
//! reopens after every bind); `--bench-fault` runs no check but the fault
//! benchmark of `bench.rs` and reports its figures as facts (step
//! `bench-fault`).

use std::process::ExitCode;

use vfio_cxl_uapi_check::bench;
use vfio_cxl_uapi_check::checks::{self, Ctx, Options, Outcome};

const USAGE: &str = "usage: vfio-cxl-uapi-check BDF [--expect-seed N] [--write-seed N] [--reopen N] [--reopen-only] [--bench-fault]";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every check, then the reopen cycles.
    Checks,
    /// Only the reopen cycles.
    ReopenOnly,
    /// The fault benchmark.
    BenchFault,
}

fn parse(args: &[String]) -> Result<(String, Options, Mode), String> {
    let mut options = Options {
        reopen: 20,
        ..Options::default()
    };
    let mut mode = Mode::Checks;
    let mut bdf = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--expect-seed" => options.expect_seed = Some(num("--expect-seed")?),
            "--write-seed" => options.write_seed = Some(num("--write-seed")?),
            "--reopen" => {
                options.reopen = u32::try_from(num("--reopen")?).map_err(|e| e.to_string())?
            }
            "--reopen-only" if mode == Mode::Checks => mode = Mode::ReopenOnly,
            "--bench-fault" if mode == Mode::Checks => mode = Mode::BenchFault,
            "--reopen-only" | "--bench-fault" => {
                return Err("--reopen-only and --bench-fault exclude each other".into())
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if bdf.is_none() => bdf = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok((bdf.ok_or("no BDF given")?, options, mode))
}

/// JSON string escaping for the result lines.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fact(step: &str, key: &str, value: &str) {
    println!(
        "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":{},\"key\":{},\"value\":{}}}",
        json(step),
        json(key),
        json(value)
    );
}

fn report(name: &str, outcome: &Outcome) {
    let value = match outcome {
        Ok(detail) => format!("pass: {detail}"),
        Err(why) => format!("FAIL: {why}"),
    };
    fact("uapi-check", name, &value);
}

/// `--bench-fault`: facts `bench.size`, `bench.default_align` and, per
/// pass, `bench.<pass>.{stride,span,touches,addr,mmap_us,touch_us,faults}`.
fn bench_fault(bdf: &str, options: Options) -> ExitCode {
    let result = Ctx::open(bdf, options)
        .map_err(|e| e.to_string())
        .and_then(|ctx| {
            let align = bench::default_alignment(&ctx).map_err(|e| format!("mmap: {e}"))?;
            let passes = bench::run(&ctx).map_err(|e| format!("mmap: {e}"))?;
            Ok((ctx.mem.size, align, passes))
        });
    match result {
        Err(e) => {
            fact("bench-fault", "bench.error", &e);
            eprintln!("vfio-cxl-uapi-check: bench-fault: {e}");
            ExitCode::FAILURE
        }
        Ok((size, align, passes)) => {
            let f = |k: &str, v: String| fact("bench-fault", &format!("bench.{k}"), &v);
            f("size", format!("{size:#x}"));
            f("default_align", format!("{align:#x}"));
            for p in &passes {
                let n = p.name;
                f(&format!("{n}.stride"), p.stride.to_string());
                f(&format!("{n}.span"), format!("{:#x}", p.span));
                f(&format!("{n}.touches"), p.touches.to_string());
                f(&format!("{n}.addr"), format!("{:#x}", p.addr));
                f(&format!("{n}.mmap_us"), p.mmap.as_micros().to_string());
                f(&format!("{n}.touch_us"), p.touch.as_micros().to_string());
                f(&format!("{n}.faults"), p.faults.to_string());
                eprintln!(
                    "bench-fault {n}: {} touches over {:#x}: mmap {} us, touch {} us, {} faults",
                    p.touches,
                    p.span,
                    p.mmap.as_micros(),
                    p.touch.as_micros(),
                    p.faults
                );
            }
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bdf, options, mode) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vfio-cxl-uapi-check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let reopen = options.reopen;
    let mut outcomes: Vec<(&str, Outcome)> = Vec::new();
    if mode == Mode::BenchFault {
        return bench_fault(&bdf, options);
    }
    if mode == Mode::ReopenOnly {
        let outcome = checks::reopen(&bdf, reopen);
        report("reopen", &outcome);
        outcomes.push(("reopen", outcome));
        return summary(&outcomes);
    }
    match Ctx::open(&bdf, options) {
        Err(e) => {
            let outcome = Err(e.to_string());
            report("open", &outcome);
            outcomes.push(("open", outcome));
        }
        Ok(ctx) => {
            for (name, check) in checks::CHECKS {
                // Announce first: a SIGBUS ends the process inside a check.
                eprintln!("uapi-check: {name}");
                let outcome = check(&ctx);
                report(name, &outcome);
                outcomes.push((name, outcome));
            }
            drop(ctx);
            let outcome = checks::reopen(&bdf, reopen);
            report("reopen", &outcome);
            outcomes.push(("reopen", outcome));
        }
    }
    summary(&outcomes)
}

fn summary(outcomes: &[(&str, Outcome)]) -> ExitCode {
    let failed = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    println!(
        "uapi-check: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_refused() {
        let (bdf, o, mode) = parse(&args(&[
            "0000:0d:00.0",
            "--expect-seed",
            "7",
            "--reopen",
            "3",
        ]))
        .unwrap();
        assert_eq!(
            (bdf.as_str(), o.expect_seed, o.write_seed, o.reopen),
            ("0000:0d:00.0", Some(7), None, 3)
        );
        assert_eq!(mode, Mode::Checks);
        assert_eq!(
            parse(&args(&["x", "--reopen-only"])).unwrap().2,
            Mode::ReopenOnly
        );
        assert_eq!(
            parse(&args(&["x", "--bench-fault"])).unwrap().2,
            Mode::BenchFault
        );
        assert!(parse(&args(&["x", "--bench-fault", "--reopen-only"])).is_err());
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["x", "--bogus"])).is_err());
        assert!(parse(&args(&["x", "--write-seed"])).is_err());
        assert!(parse(&args(&["x", "--reopen", "-1"])).is_err());
    }

    #[test]
    fn result_lines_are_valid_json_strings() {
        assert_eq!(json("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
