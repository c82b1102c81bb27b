// SPDX-License-Identifier: GPL-2.0-or-later
//! Command line of the `vfio-user-cxl` binary.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::device::CxlDevice;
use crate::fault::Broken;
use crate::server::{ConnEnd, Server};

/// What the help text adds after the options.
const AFTER_HELP: &str = "\
Exit status: 0 after the client disconnects, 1 on a runtime failure, 2 on
bad arguments or input, 128+N on signal N (SIGINT, SIGTERM, SIGHUP), which
also removes the socket.";

/// `--info-pad` bound: 32 KiB of capabilities.
const MAX_INFO_PAD: u32 = 4096;

/// Exit status for bad arguments or input files (clap's own as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for failures at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Serves a software CXL Type-2 device over vfio-user on the UNIX socket
/// PATH, with the vfio-cxl uAPI (docs/uapi.md); its device memory is the
/// first BYTES bytes of FILE (shared: a client's mapping and the file are
/// the same memory).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "vfio-user-cxl", after_help = AFTER_HELP)]
pub struct Options {
    /// Socket to create (must not exist)
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Backing file of the device memory, opened read-write
    #[arg(long, value_name = "FILE")]
    pub memory: PathBuf,
    /// Memory size, a non-zero multiple of 256 MiB; accepts K, M, G, T
    /// suffixes (powers of 1024) and 0x hex
    #[arg(long, value_name = "BYTES", value_parser = parse_memory_size)]
    pub size: u64,
    /// Create FILE if missing and extend it to BYTES if shorter
    #[arg(long)]
    pub create: bool,
    /// Keep serving after a client disconnects (default: exit)
    #[arg(long)]
    pub persist: bool,
    /// Do not clear the device memory at start-up and before each client
    /// that follows another (default: clear, by punching holes in FILE).
    /// UNSAFE between tenants: a client sees what the previous one left
    /// in the memory
    #[arg(long)]
    pub keep_memory: bool,
    /// Log every message to stderr
    #[arg(short, long)]
    pub verbose: bool,
    /// Present a device that breaks the uAPI in one way, for testing a
    /// VMM's refusal: not-committed (host decoder not firmware-committed),
    /// no-cxl-cap (no device-info CXL capability), no-cxl-mem (no CXL_MEM
    /// region), mem-unaligned (CXL_MEM not a multiple of 256 MiB),
    /// bad-geometry (decoder block past the end of its BAR), cap-loop (the
    /// device-info capability chain loops)
    #[arg(long, value_name = "KIND", value_parser = parse_broken)]
    pub broken: Option<Broken>,
    /// HDM decoders of the device (2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28,
    /// 32 besides the default): firmware commits decoder 0, the others stay
    /// idle
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_decoders)]
    pub decoders: u32,
    /// N device-info capabilities of an unknown id before the CXL one (at
    /// most 4096): a well-formed device with a long device-info reply
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_INFO_PAD)))]
    pub info_pad: u32,
}

/// An error with the exit status it maps to.
#[derive(Debug)]
pub struct CliError {
    pub status: u8,
    pub message: String,
}

impl CliError {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            status: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn failure(message: impl Into<String>) -> Self {
        Self {
            status: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

/// Parses a size: decimal or 0x hex, with an optional K/M/G/T suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        b'T' | b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    n.checked_mul(1u64 << shift)
}

/// `--size`: a size the device memory can have.
fn parse_memory_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s).ok_or("not a size")?;
    if size == 0 || size % cxl_regs::window::HDM_ALIGN != 0 {
        return Err(format!(
            "{size:#x} is not a non-zero multiple of 256 MiB (0x10000000)"
        ));
    }
    Ok(size)
}

fn parse_broken(s: &str) -> Result<Broken, String> {
    Broken::parse(s).ok_or_else(|| format!("one of {}", Broken::names()))
}

fn parse_decoders(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|&n| cxl_regs::hdm::decoder_count_encode(n).is_some())
        .ok_or_else(|| "not an HDM decoder count".to_string())
}

/// Opens (or with `create`, creates and extends) the memory file.
pub fn open_memory(path: &Path, size: u64, create: bool) -> Result<File, CliError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (use --create to create it)"
            } else {
                ""
            };
            CliError::usage(format!("--memory {}: {e}{hint}", path.display()))
        })?;
    let meta = file
        .metadata()
        .map_err(|e| CliError::failure(format!("--memory {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "--memory {}: not a regular file",
            path.display()
        )));
    }
    if meta.len() < size {
        if !create {
            return Err(CliError::usage(format!(
                "--memory {}: file holds {} bytes, fewer than --size {size} (use --create to extend it)",
                path.display(),
                meta.len()
            )));
        }
        file.set_len(size).map_err(|e| {
            CliError::failure(format!(
                "--memory {}: extend to {size}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(file)
}

/// The socket path, for the signal handler to unlink.
static SOCKET_PATH: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some(path) = SOCKET_PATH.get() {
        // SAFETY: unlink is async-signal-safe and the path is a valid,
        // never-freed C string (set once before the handler is installed).
        unsafe { libc::unlink(path.as_ptr()) };
    }
    // SAFETY: _exit is async-signal-safe; nothing else needs to run.
    unsafe { libc::_exit(128 + sig) };
}

/// On SIGINT, SIGTERM and SIGHUP, removes the socket and exits with
/// 128 + the signal number, so a killed server leaves no stale socket.
fn remove_socket_on_signals(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    if SOCKET_PATH.set(c).is_err() {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only calls async-signal-safe functions;
        // sigaction is given a fully initialized struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Removes the socket file when the server ends.
struct SocketGuard<'a>(&'a Path);

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Runs the server as the options say.
pub fn run(opts: &Options) -> Result<(), CliError> {
    if opts.socket.symlink_metadata().is_ok() {
        return Err(CliError::usage(format!(
            "--socket {}: the path exists (a stale socket? remove it first)",
            opts.socket.display()
        )));
    }
    let file = open_memory(&opts.memory, opts.size, opts.create)?;
    let mut device = CxlDevice::with_decoders(file, opts.size, opts.decoders)
        .map_err(|e| CliError::usage(e.to_string()))?;
    device.set_broken(opts.broken);
    device.set_info_pad(opts.info_pad);
    if !opts.keep_memory {
        // Before the socket exists: whatever the file held (an earlier
        // server's client) is gone before anyone can connect.
        let start = std::time::Instant::now();
        device.clear_memory().map_err(|e| {
            CliError::failure(format!(
                "--memory {}: clearing the device memory failed: {e} (--keep-memory skips it, unsafe between tenants)",
                opts.memory.display()
            ))
        })?;
        eprintln!(
            "vfio-user-cxl: device memory cleared ({} MiB in {:.3} ms)",
            opts.size >> 20,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let listener = UnixListener::bind(&opts.socket)
        .map_err(|e| CliError::failure(format!("--socket {}: {e}", opts.socket.display())))?;
    let _guard = SocketGuard(&opts.socket);
    remove_socket_on_signals(&opts.socket);
    let mut server = Server::new(device);
    server.set_verbose(opts.verbose);
    server.set_clear_between_clients(!opts.keep_memory);
    eprintln!(
        "vfio-user-cxl: serving a CXL Type-2 device ({} MiB from {}, {}) on {}{}",
        opts.size >> 20,
        opts.memory.display(),
        if opts.keep_memory {
            "memory kept between clients"
        } else {
            "memory cleared"
        },
        opts.socket.display(),
        opts.broken
            .map_or(String::new(), |b| format!(", broken: {}", b.name()))
    );
    loop {
        let (sock, _) = listener
            .accept()
            .map_err(|e| CliError::failure(format!("accept: {e}")))?;
        eprintln!("vfio-user-cxl: client connected");
        let end = server.serve(&sock);
        eprintln!("vfio-user-cxl: {end}");
        if let ConnEnd::NotCleared(_) = end {
            // Fail closed: no later client may see the memory either.
            return Err(CliError::failure(format!("{end}")));
        }
        if !opts.persist {
            return match end {
                ConnEnd::Closed => Ok(()),
                other => Err(CliError::failure(format!("the connection ended: {other}"))),
            };
        }
    }
}

/// Entry point of the binary: clap answers --help and bad arguments
/// (exit status 2) itself.
pub fn main() -> ExitCode {
    match run(&Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfio-user-cxl: error: {}", e.message);
            if e.status == EXIT_USAGE {
                eprintln!("(see vfio-user-cxl --help)");
            }
            ExitCode::from(e.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("vfio-user-cxl").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_is_well_formed() {
        use clap::CommandFactory;
        Options::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("0x10000000"), Some(256 << 20));
        assert_eq!(parse_size("268435456"), Some(256 << 20));
        assert_eq!(parse_size("16777216T"), None, "overflow");
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn the_harness_command_lines_parse() {
        // guest-tests/harness: vucxl.rs, vucxl_smoke.rs, vucxl_hotplug.rs,
        // vmm_fuzz.rs, bench_startup.rs.
        let o = parse("--socket /r/s.sock --memory /r/mem --size 256M --create -v").unwrap();
        assert_eq!(
            o,
            Options {
                socket: "/r/s.sock".into(),
                memory: "/r/mem".into(),
                size: 256 << 20,
                create: true,
                persist: false,
                keep_memory: false,
                verbose: true,
                broken: None,
                decoders: 1,
                info_pad: 0,
            }
        );
        let o = parse("--socket s --memory m --size 512M --persist --keep-memory").unwrap();
        assert_eq!(o.size, 512 << 20);
        assert!(o.persist && o.keep_memory && !o.create);
        let o = parse("--socket s --memory m --size 256M --broken no-cxl-mem").unwrap();
        assert_eq!(o.broken, Some(Broken::NoCxlMem));
        assert_eq!(
            parse("--socket s --memory m --size 256M --broken cap-loop")
                .unwrap()
                .broken,
            Some(Broken::CapLoop)
        );
        let o = parse("--socket s --memory m --size 1G --decoders 4 --info-pad 40").unwrap();
        assert_eq!((o.size, o.decoders, o.info_pad), (1 << 30, 4, 40));
    }

    #[test]
    fn bad_arguments_are_refused_with_exit_status_2() {
        for (bad, want) in [
            ("--socket s --memory m", "--size <BYTES>"),
            ("--socket s --size 256M", "--memory <FILE>"),
            ("--socket s --memory m --size 100M", "multiple of 256 MiB"),
            ("--socket s --memory m --size 0", "multiple of 256 MiB"),
            ("--socket s --memory m --size lots", "not a size"),
            ("--socket s --memory m --size 256M --bogus", "--bogus"),
            (
                "--socket s --memory m --size 256M --broken nope",
                "one of not-committed",
            ),
            (
                "--socket s --memory m --size 256M --broken",
                "--broken <KIND>",
            ),
            (
                "--socket s --memory m --size 256M --decoders 3",
                "not an HDM decoder count",
            ),
            (
                "--socket s --memory m --size 256M --decoders 0",
                "not an HDM decoder count",
            ),
            ("--socket s --memory m --size 256M --info-pad 4097", "4096"),
            // The guest harness's options are not the server's.
            ("--socket s --memory m --size 256M --keep", "--keep"),
            ("--socket", "--socket <PATH>"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{bad}");
            assert!(e.to_string().contains(want), "{bad}: {e}");
        }
        let help = parse("--help").unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(help.to_string().contains("--keep-memory"), "{help}");
    }
}
