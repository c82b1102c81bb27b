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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use vfio_cxl_uapi_check::fuzz::{self, sigbus::MAX_THREADS, Options};

/// Fuzzes the vfio-cxl-pci uAPI of the device at BDF with seeded random
/// operations from several threads, checking oracles after each.
#[derive(Debug, Parser)]
#[command(
    name = "vfio-cxl-uapi-fuzz",
    after_help = "Exit status: 0 when no oracle failed, 1 when one did, 2 on bad usage or when \
                  the device cannot be opened, 3 when an operation hung."
)]
struct Cli {
    /// The device (e.g. 0000:0d:00.0)
    #[arg(value_name = "BDF")]
    bdf: String,
    /// The seed of the run (default: a random one, printed first)
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Stop after this many operations, all threads together
    #[arg(long, value_name = "N", default_value_t = u64::MAX, hide_default_value = true)]
    ops: u64,
    /// ...or after this long, whichever comes first
    #[arg(long, value_name = "N", default_value_t = 60)]
    seconds: u64,
    /// Threads issuing operations
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS as u64))]
    threads: u64,
    /// An operation running longer than this is a hang
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    hang_seconds: u64,
    /// Write the exit status to this file when the run ends, even when a
    /// hung thread keeps the process alive
    #[arg(long, value_name = "PATH")]
    end_file: Option<PathBuf>,
    /// Only these operation kinds (a minimal reproduction)
    #[arg(long, value_name = "KIND,KIND...", value_delimiter = ',')]
    only: Option<Vec<String>>,
}

impl Cli {
    fn options(self) -> (String, Options) {
        let options = Options {
            seed: self.seed.unwrap_or_else(random_seed),
            ops: self.ops,
            seconds: self.seconds,
            threads: self.threads as usize,
            hang_seconds: self.hang_seconds,
            end_file: self.end_file,
            only: self.only,
        };
        (self.bdf, options)
    }
}

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

fn main() -> ExitCode {
    let (bdf, options) = Cli::parse().options();
    ExitCode::from(fuzz::run(&bdf, &options) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<(String, Options), clap::Error> {
        Cli::try_parse_from(std::iter::once("vfio-cxl-uapi-fuzz").chain(line.split_whitespace()))
            .map(Cli::options)
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_harness_command_line_parses() {
        // guest-tests/harness/src/hostdriver_fuzz.rs.
        let (bdf, o) = parse(
            "0000:0d:00.0 --seed 42 --seconds 60 --threads 2 --hang-seconds 30 \
             --only region_info,mmap --end-file /tmp/fuzz.end",
        )
        .unwrap();
        assert_eq!(bdf, "0000:0d:00.0");
        assert_eq!(
            (o.seed, o.ops, o.seconds, o.threads, o.hang_seconds),
            (42, u64::MAX, 60, 2, 30)
        );
        assert_eq!(o.end_file, Some(PathBuf::from("/tmp/fuzz.end")));
        assert_eq!(o.only, Some(vec!["region_info".into(), "mmap".into()]));
        let (_, o) = parse("x --ops 5").unwrap();
        assert_eq!((o.ops, o.seconds, o.only), (5, 60, None));
    }

    #[test]
    fn bad_and_foreign_options_are_refused() {
        for (bad, want) in [
            ("", "<BDF>"),
            ("x --threads 0", "--threads"),
            ("x --threads 999", "--threads"),
            ("x --hang-seconds 0", "--hang-seconds"),
            ("x --seed", "--seed <N>"),
            ("x --seconds soon", "soon"),
            ("x y", "'y'"),
            // uapi-check's options are not the fuzzer's.
            ("x --reopen 3", "--reopen"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(e.to_string().contains(want), "{bad}: {e}");
        }
    }
}
