// SPDX-License-Identifier: GPL-2.0-or-later
//! Command line of the `vfio-user-cxl` binary.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::device::CxlDevice;
use crate::fault::Broken;
use crate::server::{ConnEnd, Server};

pub const USAGE: &str = "\
usage: vfio-user-cxl --socket PATH --memory FILE --size BYTES [options]

Serves a software CXL Type-2 device over vfio-user on the UNIX socket PATH,
with the vfio-cxl uAPI (docs/uapi.md); its device memory is the first BYTES
bytes of FILE (shared: a client's mapping and the file are the same memory).

  --socket PATH    socket to create (must not exist)
  --memory FILE    backing file of the device memory, opened read-write
  --size BYTES     memory size, a non-zero multiple of 256 MiB; accepts
                   K, M, G, T suffixes (powers of 1024) and 0x hex
  --create         create FILE if missing and extend it to BYTES if shorter
  --persist        keep serving after a client disconnects (default: exit)
  --keep-memory    do not clear the device memory at start-up and before
                   each client that follows another (default: clear, by
                   punching holes in FILE). UNSAFE between tenants: a
                   client sees what the previous one left in the memory
  --decoders N     HDM decoders of the device (1 by default; 2, 4, 6, 8,
                   10, 12, 14, 16, 20, 24, 28, 32): firmware commits
                   decoder 0, the others stay idle
  --info-pad N     N device-info capabilities of an unknown id before the
                   CXL one (0 by default, at most 4096): a well-formed
                   device with a long device-info reply
  --broken KIND    present a device that breaks the uAPI in one way, for
                   testing a VMM's refusal: not-committed (host decoder
                   not firmware-committed), no-cxl-cap (no device-info CXL
                   capability), no-cxl-mem (no CXL_MEM region),
                   mem-unaligned (CXL_MEM not a multiple of 256 MiB),
                   bad-geometry (decoder block past the end of its BAR)
  -v, --verbose    log every message to stderr
  -h, --help       this text

Exit status: 0 after the client disconnects, 1 on a runtime failure, 2 on
bad arguments or input, 128+N on signal N (SIGINT, SIGTERM, SIGHUP), which
also removes the socket.
";

/// `--info-pad` bound: 32 KiB of capabilities.
const MAX_INFO_PAD: u32 = 4096;

/// Exit status for bad arguments or input files.
pub const EXIT_USAGE: u8 = 2;
/// Exit status for failures at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket: PathBuf,
    pub memory: PathBuf,
    pub size: u64,
    pub create: bool,
    pub persist: bool,
    pub keep_memory: bool,
    pub verbose: bool,
    pub broken: Option<Broken>,
    pub decoders: u32,
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

/// Parses the arguments (without the program name). `Ok(None)` means
/// `--help` was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>, CliError> {
    let mut socket = None;
    let mut memory = None;
    let mut size = None;
    let (mut create, mut persist, mut verbose) = (false, false, false);
    let mut keep_memory = false;
    let mut broken = None;
    let mut decoders = 1;
    let mut info_pad = 0;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| CliError::usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--memory" => memory = Some(PathBuf::from(value("--memory")?)),
            "--size" => {
                let v = value("--size")?;
                size = Some(
                    parse_size(&v)
                        .ok_or_else(|| CliError::usage(format!("--size {v:?}: not a size")))?,
                );
            }
            "--broken" => {
                let v = value("--broken")?;
                broken = Some(Broken::parse(&v).ok_or_else(|| {
                    CliError::usage(format!("--broken {v:?}: one of {}", Broken::names()))
                })?);
            }
            "--decoders" => {
                let v = value("--decoders")?;
                decoders = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| cxl_regs::hdm::decoder_count_encode(n).is_some())
                    .ok_or_else(|| {
                        CliError::usage(format!("--decoders {v:?}: not an HDM decoder count"))
                    })?;
            }
            "--info-pad" => {
                let v = value("--info-pad")?;
                info_pad = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= MAX_INFO_PAD)
                    .ok_or_else(|| {
                        CliError::usage(format!(
                            "--info-pad {v:?}: a capability count up to {MAX_INFO_PAD}"
                        ))
                    })?;
            }
            "--create" => create = true,
            "--persist" => persist = true,
            "--keep-memory" => keep_memory = true,
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(CliError::usage(format!("unknown argument {other:?}"))),
        }
    }
    let socket = socket.ok_or_else(|| CliError::usage("--socket is required"))?;
    let memory = memory.ok_or_else(|| CliError::usage("--memory is required"))?;
    let size = size.ok_or_else(|| CliError::usage("--size is required"))?;
    if size == 0 || size % cxl_regs::window::HDM_ALIGN != 0 {
        return Err(CliError::usage(format!(
            "--size {size:#x}: must be a non-zero multiple of 256 MiB (0x10000000)"
        )));
    }
    Ok(Some(Options {
        socket,
        memory,
        size,
        create,
        persist,
        keep_memory,
        verbose,
        broken,
        decoders,
        info_pad,
    }))
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|opts| match opts {
        None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(opts) => run(&opts),
    });
    match result {
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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
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
    fn parses_and_validates() {
        let o = parse(&args("--socket s --memory m --size 512M --persist"))
            .unwrap()
            .unwrap();
        assert_eq!(o.size, 512 << 20);
        assert!(o.persist && !o.create);
        assert!(!o.keep_memory, "clearing is the default");
        let o = parse(&args("--socket s --memory m --size 256M --keep-memory"))
            .unwrap()
            .unwrap();
        assert!(o.keep_memory);
        assert_eq!(o.broken, None);
        let o = parse(&args(
            "--socket s --memory m --size 256M --broken no-cxl-mem",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.broken, Some(Broken::NoCxlMem));
        assert_eq!(o.decoders, 1);
        let o = parse(&args("--socket s --memory m --size 256M --decoders 4"))
            .unwrap()
            .unwrap();
        assert_eq!(o.decoders, 4);
        assert!(parse(&args("--help")).unwrap().is_none());
        for bad in [
            "--socket s --memory m",
            "--socket s --size 256M",
            "--socket s --memory m --size 100M",
            "--socket s --memory m --size 0",
            "--socket s --memory m --size 256M --bogus",
            "--socket s --memory m --size 256M --broken nope",
            "--socket s --memory m --size 256M --broken",
            "--socket s --memory m --size 256M --decoders 3",
            "--socket s --memory m --size 256M --decoders 0",
            "--socket",
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert_eq!(e.status, EXIT_USAGE, "{bad}");
        }
    }
}
