//! The command line of `vfio-cxl-cmdline` (crate docs: src/lib.rs).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use vfio_cxl_cmdline::device::{self, CxlDevice};
use vfio_cxl_cmdline::layout::{self, Input, Iommu, Placement};
use vfio_cxl_cmdline::{probe, render, size};

const AFTER_HELP: &str = "\
Each device gets its own CXL fixed memory window, a pxb-cxl host bridge
with HDM decoders and a cxl-rp root port. Add the options to a q35
machine (they set cxl=on themselves).

Examples:
  vfio-cxl-cmdline 0000:0d:00.0
  eval \"set -- $(vfio-cxl-cmdline 0000:0d:00.0 0000:17:00.0)\"; qemu-system-x86_64 ... \"$@\"
  vfio-cxl-cmdline --libvirt 0000:0d:00.0 >cxl.xml     # into the <domain>, see docs/install.md
  vfio-cxl-cmdline --window-size 4G 0000:0d:00.0
  vfio-cxl-cmdline --iommufd 0000:0d:00.0                # cdev + iommufd instead of the container

Errors are one line on stderr and exit status 1. docs/install.md.";

/// Prints the QEMU options that pass CXL Type-2 devices bound to
/// vfio-cxl-pci through to a guest (-device vfio-cxl), each window sized
/// from the device's CXL memory and ready for 1 GiB mappings.
#[derive(Debug, Parser)]
#[command(name = "vfio-cxl-cmdline", version, after_help = AFTER_HELP)]
struct Cli {
    /// PCI addresses of devices bound to vfio-cxl-pci (0000:0d:00.0 or 0d:00.0)
    #[arg(required = true, value_name = "BDF")]
    bdfs: Vec<String>,

    /// Print a libvirt <qemu:commandline> element instead of shell words
    #[arg(long)]
    libvirt: bool,

    /// Every window's size (e.g. 4G) instead of the smallest multiple of
    /// 1 GiB that holds the device memory 1 GiB-aligned wherever QEMU puts
    /// the window; at least the device size rounded up to 1 GiB
    #[arg(long, value_name = "SIZE")]
    window_size: Option<String>,

    /// Bus number of the first device's pxb-cxl host bridge; the next
    /// ones follow in steps of 10 (must be above every bus the machine's
    /// other root ports and bridges use)
    #[arg(long, value_name = "N", default_value_t = layout::DEFAULT_FIRST_BUS)]
    bus_nr: u32,

    /// Bind the devices to one iommufd (-object iommufd) through their VFIO
    /// cdevs instead of QEMU's default VFIO container
    #[arg(long)]
    iommufd: bool,

    /// Also describe each device (memory size, decoder geometry, window) on stderr
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("vfio-cxl-cmdline: {line}");
            ExitCode::FAILURE
        }
    }
}

/// Reads, checks and places every device; the text to print, or the one
/// line that says why not.
fn run(cli: &Cli) -> Result<String, String> {
    let forced = cli
        .window_size
        .as_deref()
        .map(|s| size::parse(s).map_err(|e| format!("--window-size: {e}")))
        .transpose()?;
    let iommu = if cli.iommufd {
        Iommu::Iommufd
    } else {
        Iommu::Container
    };
    let mut devices: Vec<CxlDevice> = Vec::new();
    for text in &cli.bdfs {
        let bdf = device::normalize_bdf(text).map_err(|e| e.to_string())?;
        probe::check_bound(Path::new("/sys"), &bdf).map_err(|e| e.to_string())?;
        if cli.iommufd {
            probe::check_iommufd(Path::new("/sys"), Path::new("/dev"), &bdf)
                .map_err(|e| e.to_string())?;
        }
        let facts = probe::read(&bdf, iommu).map_err(|e| e.to_string())?;
        devices.push(device::validate(facts).map_err(|e| e.to_string())?);
    }
    let inputs: Vec<Input> = devices
        .iter()
        .map(|d| Input {
            bdf: d.bdf.clone(),
            mem_size: d.mem_size,
        })
        .collect();
    let placed = layout::place(&inputs, forced, cli.bus_nr).map_err(|e| e.to_string())?;
    let notes: Vec<String> = devices
        .iter()
        .zip(&placed)
        .map(|(d, p)| note(d, p))
        .collect();
    if cli.verbose {
        for n in &notes {
            eprintln!("vfio-cxl-cmdline: {n}");
        }
    }
    for p in placed.iter().filter(|p| !p.window.aligned_anywhere) {
        eprintln!(
            "vfio-cxl-cmdline: note: {}: with a {} window the memory is 1 GiB-aligned only if QEMU places the window so (the default, {}, always is)",
            p.bdf,
            size::qemu(p.window.size),
            sizing_default(p.mem_size)
        );
    }
    let options = layout::qemu_options(&placed, iommu);
    Ok(if cli.libvirt {
        render::libvirt(&options, &libvirt_notes(&notes))
    } else {
        render::shell(&options)
    })
}

fn sizing_default(mem: u64) -> String {
    vfio_cxl_cmdline::sizing::default_window(mem)
        .map(size::qemu)
        .unwrap_or_default()
}

fn note(d: &CxlDevice, p: &Placement) -> String {
    format!(
        "{}; window cxl-fmw.{} of {} on host bridge {} (bus {})",
        d.describe(),
        p.index,
        size::qemu(p.window.size),
        p.host_bridge(),
        p.bus_nr
    )
}

fn libvirt_notes(devices: &[String]) -> Vec<String> {
    let mut v = vec![
        "vfio-cxl-cmdline: put this element inside <domain>; libvirt manages none of these devices"
            .to_string(),
        "(docs/install.md, \"With libvirt\": memory locking, /dev/vfio access).".to_string(),
    ];
    v.extend(devices.iter().cloned());
    v
}
