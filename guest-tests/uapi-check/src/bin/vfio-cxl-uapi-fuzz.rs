//! `vfio-cxl-uapi-fuzz BDF [--seed N] [--ops N] [--seconds N] [--threads N]
//! [--hang-seconds N] [--end-file PATH] [--only KIND,KIND...]`
//!
//! Fuzzes the vfio-cxl-pci uAPI of the device at BDF (docs/host-driver.md,
//! "uAPI fuzzer"). Prints its seed first (a random one unless `--seed`),
//! reports as fact lines of the guest harness protocol (step `uapi-fuzz`),
//! ends with `uapi-fuzz: N ops in S s, F failures, ...`. Exit status 0 when
//! no oracle failed, 1 when one did, 2 on bad usage or when the device
//! cannot be opened, 3 when an operation hung (the watchdog ends the
//! process). `--end-file` names a file that gets the exit status when
//! the run ends, even when a hung thread keeps the process alive.
//! `--only` restricts the mix to some operation kinds (`fuzz::ops::KINDS`),
//! for a minimal reproduction.

use std::process::ExitCode;

use vfio_cxl_uapi_check::fuzz::{self, sigbus::MAX_THREADS, Options};

const USAGE: &str = "usage: vfio-cxl-uapi-fuzz BDF [--seed N] [--ops N] [--seconds N] [--threads N] [--hang-seconds N] [--end-file PATH] [--only KIND,KIND...]";

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom(2) writes at most 8 bytes into the 8-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }
}

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut o = Options {
        seed: random_seed(),
        ops: u64::MAX,
        seconds: 60,
        threads: 2,
        hang_seconds: 30,
        end_file: None,
        only: None,
    };
    let mut bdf = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--seed" => o.seed = num("--seed")?,
            "--ops" => o.ops = num("--ops")?,
            "--seconds" => o.seconds = num("--seconds")?,
            "--threads" => o.threads = num("--threads")? as usize,
            "--hang-seconds" => o.hang_seconds = num("--hang-seconds")?.max(1),
            "--only" => {
                let v = it.next().ok_or("--only needs operation kinds")?;
                o.only = Some(v.split(',').map(str::to_owned).collect());
            }
            "--end-file" => o.end_file = Some(it.next().ok_or("--end-file needs a path")?.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if bdf.is_none() => bdf = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if !(1..=MAX_THREADS).contains(&o.threads) {
        return Err(format!("--threads must be 1..={MAX_THREADS}"));
    }
    Ok((bdf.ok_or("no BDF given")?, o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok((bdf, options)) => ExitCode::from(fuzz::run(&bdf, &options) as u8),
        Err(e) => {
            eprintln!("vfio-cxl-uapi-fuzz: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
