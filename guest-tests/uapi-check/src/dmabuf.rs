//! `--dmabuf HPA_START`: dma-buf export of the CXL memory region
//! (`VFIO_DEVICE_FEATURE_DMA_BUF`), its import into an iommufd IOAS
//! (`IOMMU_IOAS_MAP_FILE`, the P2P importer Linux 7.3 has) and its
//! revocation (VM test host-driver-dmabuf@debug; docs/host-driver.md,
//! "dma-buf export").
//!
//! The device is opened through its VFIO cdev, bound to a new iommufd and
//! attached to a hardware page table allocated explicitly
//! (`IOMMU_HWPT_ALLOC`), which outlives the device's close. What the
//! device's DMA reaches is read from the guest IOMMU's page tables
//! (INTEL_IOMMU_DEBUGFS: `/sys/kernel/debug/iommu/intel/BDF/
//! domain_translation_struct`, every present leaf with its IOVA). Then:
//!
//! - refused requests: a comp-BAR range over the HDM decoder registers
//!   (EPERM), a memory range past the region's end (EINVAL), the comp-regs
//!   region (ENODEV), an index past the last region (ENODEV);
//! - a dma-buf of the whole region and one of a slice, each imported at its
//!   own IOVA: every page of both maps to `HPA_START` + its offset;
//! - a guest-initiated CXL Reset while they exist is refused (Status2 CXL
//!   Reset Error) and leaves the mappings as they were;
//! - `VFIO_DEVICE_RESET` revokes both: nothing of either is mapped after;
//! - the whole-region dma-buf imported again works (vfio-pci restores a
//!   dma-buf after its reset), then the device's last close revokes it:
//!   the device opened again and attached to the same page table finds
//!   nothing mapped, and a new import of the dma-buf fails (ENODEV).

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vfio_bindings::bindings::vfio::VFIO_PCI_NUM_REGIONS;
use vfio_cxl_uapi::vfio::{self, Device};

use crate::checks::{ensure, Ctx, Options, PAGE};
use crate::facts::fact;

const VFIO_TYPE: u64 = b';' as u64;
/// `_IO(';', nr)`: VFIO and iommufd share the type.
const fn io_nr(nr: u64) -> u64 {
    (VFIO_TYPE << 8) | nr
}
const VFIO_DEVICE_FEATURE: u64 = io_nr(100 + 17);
const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = io_nr(100 + 19);
const IOMMU_IOAS_ALLOC: u64 = io_nr(0x81);
const IOMMU_HWPT_ALLOC: u64 = io_nr(0x89);
const IOMMU_IOAS_MAP_FILE: u64 = io_nr(0x8f);
const VFIO_DEVICE_FEATURE_GET: u32 = 1 << 16;
const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;
const VFIO_DEVICE_FEATURE_SET: u32 = 1 << 17;
const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: u32 = 3;
const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: u32 = 5;
const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// Where the imports go in the IOAS.
const IOVA_WHOLE: u64 = 1 << 32;
const IOVA_SLICE: u64 = 2 << 32;
const IOVA_AGAIN: u64 = 3 << 32;
/// The slice: 4 MiB at 2 MiB.
const SLICE_OFF: u64 = 2 << 20;
const SLICE_LEN: u64 = 4 << 20;

/// CXL Device DVSEC Control2 / Status2 (CXL r3.1 8.1.3.4-5).
const DVSEC_CTRL2: u64 = 0x10;
const DVSEC_STATUS2: u64 = 0x12;
const CTRL2_CXL_RESET: u32 = 1 << 2;
const CTRL2_RST_MEM_CLR_EN: u32 = 1 << 3;
const STATUS2_RST_DONE: u32 = 1 << 1;
const STATUS2_RST_ERR: u32 = 1 << 2;

#[repr(C)]
struct AttachPt {
    argsz: u32,
    flags: u32,
    pt_id: u32,
    pasid: u32,
}

#[repr(C)]
struct IoasAlloc {
    size: u32,
    flags: u32,
    out_ioas_id: u32,
}

#[repr(C)]
struct HwptAlloc {
    size: u32,
    flags: u32,
    dev_id: u32,
    pt_id: u32,
    out_hwpt_id: u32,
    reserved: u32,
    data_type: u32,
    data_len: u32,
    data_uptr: u64,
    fault_id: u32,
    reserved2: u32,
}

#[repr(C)]
struct MapFile {
    size: u32,
    flags: u32,
    ioas_id: u32,
    fd: i32,
    start: u64,
    length: u64,
    iova: u64,
}

fn ioctl<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<i32> {
    // SAFETY: `arg` is the #[repr(C)] struct (or buffer) `request` takes,
    // with its size field set; the kernel writes only inside it.
    let ret = unsafe { libc::ioctl(fd, request as _, arg as *mut T) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn size32<T>() -> u32 {
    size_of::<T>() as u32
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EIO) => "EIO".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        Some(libc::ENOTTY) => "ENOTTY".into(),
        Some(libc::EBUSY) => "EBUSY".into(),
        Some(libc::EOVERFLOW) => "EOVERFLOW".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

/// The iommufd side: the fd, the IOAS and the page table the device uses.
struct Iommufd {
    fd: File,
    ioas: u32,
    hwpt: u32,
}

fn open_rw(path: &str) -> Result<File, String> {
    vfio::open_rw(path).map_err(|e| e.to_string())
}

/// Opens the device's cdev, binds it to `iommufd` and attaches it to its
/// page table, allocating the IOAS and the page table the first time.
fn open_device(
    bdf: &str,
    iommufd: &File,
    pt: Option<(u32, u32)>,
) -> Result<(File, Iommufd), String> {
    let cdev = open_rw(&vfio::cdev_path(bdf).map_err(|e| e.to_string())?)?;
    let dev_id = vfio::bind_iommufd(&cdev, iommufd).map_err(|e| e.to_string())?;
    let (ioas, hwpt) = match pt {
        Some(pt) => pt,
        None => {
            let mut a = IoasAlloc {
                size: size32::<IoasAlloc>(),
                flags: 0,
                out_ioas_id: 0,
            };
            ioctl(iommufd.as_raw_fd(), IOMMU_IOAS_ALLOC, &mut a)
                .map_err(|e| format!("IOMMU_IOAS_ALLOC: {e}"))?;
            let mut h = HwptAlloc {
                size: size32::<HwptAlloc>(),
                flags: 0,
                dev_id,
                pt_id: a.out_ioas_id,
                out_hwpt_id: 0,
                reserved: 0,
                data_type: 0,
                data_len: 0,
                data_uptr: 0,
                fault_id: 0,
                reserved2: 0,
            };
            ioctl(iommufd.as_raw_fd(), IOMMU_HWPT_ALLOC, &mut h)
                .map_err(|e| format!("IOMMU_HWPT_ALLOC: {e}"))?;
            (a.out_ioas_id, h.out_hwpt_id)
        }
    };
    let mut attach = AttachPt {
        argsz: 12,
        flags: 0,
        pt_id: hwpt,
        pasid: 0,
    };
    ioctl(cdev.as_raw_fd(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach)
        .map_err(|e| format!("VFIO_DEVICE_ATTACH_IOMMUFD_PT {hwpt}: {e}"))?;
    let fd = iommufd
        .try_clone()
        .map_err(|e| format!("dup iommufd: {e}"))?;
    Ok((cdev, Iommufd { fd, ioas, hwpt }))
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF` for `ranges` (offset, length) of region
/// `index`: the dma-buf's fd.
pub fn get_dma_buf(dev: RawFd, index: u32, ranges: &[(u64, u64)]) -> io::Result<File> {
    let mut buf = vec![0u64; 3 + 2 * ranges.len()];
    let argsz = (buf.len() * 8) as u32;
    buf[0] =
        u64::from(argsz) | (u64::from(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF) << 32);
    let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    buf[1] = u64::from(index) | (u64::from(open_flags) << 32);
    buf[2] = (ranges.len() as u64) << 32; // flags 0, nr_ranges
    for (i, (off, len)) in ranges.iter().enumerate() {
        buf[3 + 2 * i] = *off;
        buf[4 + 2 * i] = *len;
    }
    // SAFETY: a vfio_device_feature header and a vfio_device_feature_dma_buf
    // with its ranges, argsz bytes; the kernel only reads it.
    let fd = unsafe { libc::ioctl(dev, VFIO_DEVICE_FEATURE as _, buf.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `VFIO_DEVICE_FEATURE` SET of a feature that takes no data (low-power
/// entry and exit).
fn set_feature(dev: RawFd, feature: u32) -> io::Result<()> {
    let mut header: [u32; 2] = [8, VFIO_DEVICE_FEATURE_SET | feature];
    ioctl(dev, VFIO_DEVICE_FEATURE, &mut header).map(|_| ())
}

impl Iommufd {
    /// `IOMMU_IOAS_MAP_FILE` of the whole of `file` at `iova`.
    fn map_file(&self, file: &File, len: u64, iova: u64) -> io::Result<()> {
        let mut m = MapFile {
            size: size32::<MapFile>(),
            flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE,
            ioas_id: self.ioas,
            fd: file.as_raw_fd(),
            start: 0,
            length: len,
            iova,
        };
        ioctl(self.fd.as_raw_fd(), IOMMU_IOAS_MAP_FILE, &mut m).map(|_| ())
    }
}

/// One present leaf of the IOMMU page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub iova: u64,
    pub phys: u64,
    pub size: u64,
}

/// Parses INTEL_IOMMU_DEBUGFS's `domain_translation_struct`: one line per
/// present leaf, `0x<IOVA PFN> |` then PML5E, PML4E, PDPE (always), PDE and
/// PTE (each when present): the last is the leaf, its level the count.
pub fn parse_translation(text: &str) -> Result<Vec<Leaf>, String> {
    let hex = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16);
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pfn, rest)) = line.split_once(" |") else {
            continue;
        };
        let pfn = hex(pfn).map_err(|e| format!("{line:?}: {e}"))?;
        let entries = rest
            .split_whitespace()
            .map(hex)
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|e| format!("{line:?}: {e}"))?;
        let size = match entries.len() {
            3 => 1 << 30,
            4 => 1 << 21,
            5 => 1 << 12,
            n => return Err(format!("{line:?}: {n} entries")),
        };
        let leaf = entries[entries.len() - 1];
        out.push(Leaf {
            iova: pfn << 12,
            phys: leaf & 0x000f_ffff_ffff_f000 & !(size - 1),
            size,
        });
    }
    Ok(out)
}

fn translations(bdf: &str) -> Result<Vec<Leaf>, String> {
    let path = format!("/sys/kernel/debug/iommu/intel/{bdf}/domain_translation_struct");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    ensure(text.contains("Device "), || {
        format!("{path} shows no page table: {:?}", text.lines().next())
    })?;
    parse_translation(&text)
}

/// What the page table maps of [iova, iova + len): bytes mapped, and the
/// first page whose physical address is not `phys` + its offset.
pub fn coverage(leaves: &[Leaf], iova: u64, len: u64, phys: u64) -> (u64, Option<String>) {
    let mut mapped = 0;
    let mut wrong = None;
    for l in leaves {
        let start = l.iova.max(iova);
        let end = (l.iova + l.size).min(iova + len);
        if start >= end {
            continue;
        }
        mapped += end - start;
        let got = l.phys + (start - l.iova);
        let want = phys + (start - iova);
        if got != want && wrong.is_none() {
            wrong = Some(format!("IOVA {start:#x} -> {got:#x}, expected {want:#x}"));
        }
    }
    (mapped, wrong)
}

/// A window the checks look at: (name, IOVA, length, expected physical).
type Window = (&'static str, u64, u64, u64);

fn expect_mapped(bdf: &str, windows: &[Window], when: &str) -> Result<(), String> {
    let leaves = translations(bdf)?;
    for &(name, iova, len, phys) in windows {
        let (mapped, wrong) = coverage(&leaves, iova, len, phys);
        fact(
            "dmabuf",
            &format!("dmabuf.{when}.{name}.mapped"),
            &format!("{mapped:#x}"),
        );
        if let Some(w) = wrong {
            return Err(format!("{when}: {name}: {w}"));
        }
        ensure(mapped == len, || {
            format!("{when}: {name}: {mapped:#x} of {len:#x} bytes at IOVA {iova:#x} mapped")
        })?;
    }
    Ok(())
}

fn expect_unmapped(bdf: &str, windows: &[Window], when: &str) -> Result<(), String> {
    let leaves = translations(bdf)?;
    for &(name, iova, len, phys) in windows {
        let (mapped, _) = coverage(&leaves, iova, len, phys);
        fact(
            "dmabuf",
            &format!("dmabuf.{when}.{name}.mapped"),
            &format!("{mapped:#x}"),
        );
        ensure(mapped == 0, || {
            format!(
                "{when}: {name}: {mapped:#x} bytes at IOVA {iova:#x} still mapped (not revoked)"
            )
        })?;
    }
    Ok(())
}

/// A request that must fail with `want` (an errno name).
fn expect_refused(
    dev: RawFd,
    what: &str,
    index: u32,
    ranges: &[(u64, u64)],
    want: &str,
) -> Result<(), String> {
    let got = match get_dma_buf(dev, index, ranges) {
        Ok(_) => "success".to_string(),
        Err(e) => errno_name(&e),
    };
    fact("dmabuf", &format!("dmabuf.refused.{what}"), &got);
    ensure(got == want, || {
        format!("dma-buf of {what} (index {index}, {ranges:x?}): {got}, expected {want}")
    })
}

/// Check `dmabuf_export` of every uapi-check run: a one-page dma-buf of
/// the memory region and one of the decoder block's page, as the running
/// kernel answers. The debug test kernel (release `*-vfio-cxl-debug`)
/// carries patches/linux 0001: the memory is exported, the decoder page
/// refused by the driver (EPERM). Debian's 7.3.4 refuses the memory in
/// vfio-pci core before the driver is asked (ENODEV: it is no BAR), and
/// the decoder page there too (ENODEV) when vfio-pci could not reserve
/// the component BAR because the CXL core holds it, else in the driver.
/// The dma-bufs are closed again at once (a live one refuses CXL Resets).
pub fn export_by_kernel(c: &Ctx) -> Result<String, String> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| e.to_string())?;
    let patched = release.trim().ends_with("-vfio-cxl-debug");
    let dev = c.dev.raw_fd();
    let answer = |index: u32, range: (u64, u64)| match get_dma_buf(dev, index, &[range]) {
        Ok(_) => "success".to_string(),
        Err(e) => errno_name(&e),
    };
    let mem = answer(c.mem.index, (0, PAGE));
    let hdm = answer(c.geometry.bar, (c.geometry.offset & !(PAGE - 1), PAGE));
    // Unpatched, vfio-pci core asks the driver about a BAR it reserved:
    // the decoder page is then the driver's EPERM.
    let (want_mem, want_hdm): (&str, &[&str]) = if patched {
        ("success", &["EPERM"])
    } else {
        ("ENODEV", &["ENODEV", "EPERM"])
    };
    ensure(mem == want_mem && want_hdm.contains(&hdm.as_str()), || {
        format!(
            "kernel {}: dma-buf of the memory region {mem}, of the decoder page {hdm}; expected {want_mem} and one of {want_hdm:?}",
            release.trim(),
        )
    })?;
    Ok(format!(
        "kernel {}: memory region {mem}, decoder page {hdm}",
        release.trim()
    ))
}

pub fn run(bdf: &str, hpa: u64) -> Result<String, String> {
    let iommufd = open_rw("/dev/iommu")?;
    let (cdev, ifd) = open_device(bdf, &iommufd, None)?;
    let ctx = Ctx::from_device(bdf, Device::from_fd(cdev), Options::default())
        .map_err(|e| e.to_string())?;
    let dev = ctx.dev.raw_fd();
    let (mem, size) = (ctx.mem.index, ctx.mem.size);
    fact("dmabuf", "dmabuf.mem_index", &mem.to_string());
    fact("dmabuf", "dmabuf.hpa", &format!("{hpa:#x}"));
    fact("dmabuf", "dmabuf.size", &format!("{size:#x}"));

    // Refusals. The decoder block: the page of the comp BAR that holds it.
    let g = ctx.geometry;
    let hdm_page = (g.offset & !(PAGE - 1), PAGE);
    expect_refused(dev, "decoder_block", g.bar, &[hdm_page], "EPERM")?;
    expect_refused(
        dev,
        "decoder_block_in_second_range",
        g.bar,
        &[(hdm_page.0 + PAGE * 4, PAGE), hdm_page],
        "EPERM",
    )?;
    expect_refused(
        dev,
        "past_the_end",
        mem,
        &[(size - PAGE, 2 * PAGE)],
        "EINVAL",
    )?;
    expect_refused(
        dev,
        "comp_regs_region",
        ctx.comp.index,
        &[(0, PAGE)],
        "ENODEV",
    )?;
    expect_refused(
        dev,
        "no_such_region",
        ctx.info.num_regions,
        &[(0, PAGE)],
        "ENODEV",
    )?;
    ensure(ctx.info.num_regions > VFIO_PCI_NUM_REGIONS, || {
        "no device regions".into()
    })?;
    // The comp BAR away from the decoders goes to vfio-pci core, which
    // refuses a BAR it could not reserve (the CXL core holds it here).
    let other = match get_dma_buf(dev, g.bar, &[(0, PAGE)]) {
        Ok(_) => "success".to_string(),
        Err(e) => errno_name(&e),
    };
    fact("dmabuf", "dmabuf.comp_bar_outside_decoders", &other);

    // In low power the driver refuses the memory as a fault would. vfio-pci
    // core alone would export it un-revoked: it tests only Memory Space
    // and D3 at export, and cxl-accel stays in D0 without a PM capability.
    set_feature(dev, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY)
        .map_err(|e| format!("VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: {e}"))?;
    let low_power = expect_refused(dev, "in_low_power", mem, &[(0, PAGE)], "EIO");
    set_feature(dev, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)
        .map_err(|e| format!("VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: {e}"))?;
    low_power?;

    // Export and import.
    let whole = get_dma_buf(dev, mem, &[(0, size)])
        .map_err(|e| format!("dma-buf of the whole region: {}", errno_name(&e)))?;
    let slice = get_dma_buf(dev, mem, &[(SLICE_OFF, SLICE_LEN)])
        .map_err(|e| format!("dma-buf of a slice: {}", errno_name(&e)))?;
    ifd.map_file(&whole, size, IOVA_WHOLE)
        .map_err(|e| format!("IOMMU_IOAS_MAP_FILE of the whole region: {e}"))?;
    ifd.map_file(&slice, SLICE_LEN, IOVA_SLICE)
        .map_err(|e| format!("IOMMU_IOAS_MAP_FILE of the slice: {e}"))?;
    let windows: [Window; 2] = [
        ("whole", IOVA_WHOLE, size, hpa),
        ("slice", IOVA_SLICE, SLICE_LEN, hpa + SLICE_OFF),
    ];
    expect_mapped(bdf, &windows, "imported")?;

    // A guest's CXL Reset while they exist: refused, nothing changes.
    let dvsec = ctx.find_dvsec()?;
    let ctrl2 = ctx
        .config_read(dvsec + DVSEC_CTRL2, 2)
        .map_err(|e| e.to_string())?;
    ctx.config_write(
        dvsec + DVSEC_CTRL2,
        2,
        ctrl2 | CTRL2_CXL_RESET | CTRL2_RST_MEM_CLR_EN,
    )
    .map_err(|e| format!("DVSEC Control2: {e}"))?;
    let status2 = ctx
        .config_read(dvsec + DVSEC_STATUS2, 2)
        .map_err(|e| e.to_string())?;
    fact(
        "dmabuf",
        "dmabuf.cxl_reset.status2",
        &format!("{status2:#x}"),
    );
    ensure(
        status2 & STATUS2_RST_ERR != 0 && status2 & STATUS2_RST_DONE == 0,
        || {
            format!("CXL Reset with a live dma-buf: Status2 {status2:#x}, expected CXL Reset Error (refused)")
        },
    )?;
    ctx.config_write(dvsec + DVSEC_CTRL2, 2, ctrl2)
        .map_err(|e| format!("DVSEC Control2: {e}"))?;
    expect_mapped(bdf, &windows, "after_cxl_reset")?;

    // VFIO_DEVICE_RESET revokes every dma-buf of the device.
    ctx.dev.reset().map_err(|e| e.to_string())?;
    expect_unmapped(bdf, &windows, "after_reset")?;

    // After the reset the dma-buf is usable again; the last close revokes it.
    ifd.map_file(&whole, size, IOVA_AGAIN)
        .map_err(|e| format!("IOMMU_IOAS_MAP_FILE after the reset: {e}"))?;
    let again: [Window; 1] = [("again", IOVA_AGAIN, size, hpa)];
    expect_mapped(bdf, &again, "reimported")?;
    drop(ctx);
    let (cdev, ifd2) = open_device(bdf, &iommufd, Some((ifd.ioas, ifd.hwpt)))?;
    let all: [Window; 3] = [windows[0], windows[1], again[0]];
    expect_unmapped(bdf, &all, "after_close")?;
    let late = match ifd2.map_file(&whole, size, IOVA_AGAIN + (1 << 32)) {
        Ok(()) => "success".to_string(),
        Err(e) => errno_name(&e),
    };
    fact("dmabuf", "dmabuf.import_after_close", &late);
    ensure(late == "ENODEV", || {
        format!("IOMMU_IOAS_MAP_FILE of a dma-buf of a closed device: {late}, expected ENODEV")
    })?;
    drop(cdev);
    Ok(format!(
        "whole region ({size:#x}) and slice ({SLICE_LEN:#x} at {SLICE_OFF:#x}) mapped at HPA {hpa:#x}; CXL Reset refused; nothing mapped after VFIO_DEVICE_RESET and after close; decoder block EPERM"
    ))
}

/// The BAR `--dmabuf-bar` exports: pci-testdev's 64-bit memory BAR
/// (`membar`).
pub const TESTDEV_BAR: u32 = 2;

/// `--dmabuf-bar PHYS`: vfio-pci's BAR export on a kernel with patch 0001
/// (the check moved into vfio_pci_core_get_dmabuf_phys()): a device bound
/// to plain vfio-pci, BAR [`TESTDEV_BAR`] starting at host physical
/// `phys`. Its whole BAR and its second page imported through iommufd map
/// to `phys` + offset; after the device's last close nothing is mapped and
/// a new import fails (ENODEV).
pub fn run_bar(bdf: &str, phys: u64) -> Result<String, String> {
    let iommufd = open_rw("/dev/iommu")?;
    let (cdev, ifd) = open_device(bdf, &iommufd, None)?;
    let dev = Device::from_fd(cdev);
    let size = dev
        .region_info(TESTDEV_BAR)
        .map_err(|e| e.to_string())?
        .size;
    fact("dmabuf", "dmabuf_bar.size", &format!("{size:#x}"));
    ensure(size >= 2 * PAGE, || {
        format!("BAR {TESTDEV_BAR}: {size:#x} bytes")
    })?;
    // Memory Space on: vfio-pci creates a dma-buf revoked otherwise.
    let cfg = vfio_cxl_uapi::vfio::region_offset(
        vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX,
    );
    let mut cmd = [0u8; 2];
    dev.pread(&mut cmd, cfg + 4)
        .map_err(|e| format!("config read: {e}"))?;
    let on = (u16::from_le_bytes(cmd) | 0x2).to_le_bytes();
    dev.pwrite(&on, cfg + 4)
        .map_err(|e| format!("config write: {e}"))?;
    let fd = dev.raw_fd();
    let whole = get_dma_buf(fd, TESTDEV_BAR, &[(0, size)])
        .map_err(|e| format!("dma-buf of BAR {TESTDEV_BAR}: {}", errno_name(&e)))?;
    let page = get_dma_buf(fd, TESTDEV_BAR, &[(PAGE, PAGE)])
        .map_err(|e| format!("dma-buf of a page of BAR {TESTDEV_BAR}: {}", errno_name(&e)))?;
    ifd.map_file(&whole, size, IOVA_WHOLE)
        .map_err(|e| format!("IOMMU_IOAS_MAP_FILE of the BAR: {e}"))?;
    ifd.map_file(&page, PAGE, IOVA_SLICE)
        .map_err(|e| format!("IOMMU_IOAS_MAP_FILE of a page of the BAR: {e}"))?;
    let windows: [Window; 2] = [
        ("bar", IOVA_WHOLE, size, phys),
        ("bar_page", IOVA_SLICE, PAGE, phys + PAGE),
    ];
    expect_mapped(bdf, &windows, "bar_imported")?;
    drop(dev);
    let (_cdev, ifd2) = open_device(bdf, &iommufd, Some((ifd.ioas, ifd.hwpt)))?;
    expect_unmapped(bdf, &windows, "bar_after_close")?;
    let late = match ifd2.map_file(&whole, size, IOVA_AGAIN) {
        Ok(()) => "success".to_string(),
        Err(e) => errno_name(&e),
    };
    ensure(late == "ENODEV", || {
        format!("IOMMU_IOAS_MAP_FILE of a BAR dma-buf of a closed device: {late}, expected ENODEV")
    })?;
    Ok(format!(
        "BAR {TESTDEV_BAR} ({size:#x}) and its second page mapped at {phys:#x} + offset; nothing mapped after close"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "Device 0000:0d:00.0 @0x10a2b000
IOVA_PFN\t\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE
0x0000000100000 |\t0x0000000000000000\t0x000000010a2c0003\t0x000000010a2d0003\t0x0000000490000083
0x0000000100200 |\t0x0000000000000000\t0x000000010a2c0003\t0x000000010a2d0003\t0x0000000490200083
0x0000000200200 |\t0x0000000000000000\t0x000000010a2c0003\t0x000000010a2e0003\t0x000000010a2f0003\t0x0000000490201803
0x0000000300000 |\t0x0000000000000000\t0x000000010a2c0003\t0x0000000480000083
";

    #[test]
    fn leaves_and_their_sizes() {
        let l = parse_translation(DUMP).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0],
            Leaf {
                iova: 1 << 32,
                phys: 0x4_9000_0000,
                size: 2 << 20
            }
        );
        assert_eq!(
            l[2],
            Leaf {
                iova: 0x2_0020_0000,
                phys: 0x4_9020_1000,
                size: 4096
            }
        );
        assert_eq!(
            l[3],
            Leaf {
                iova: 3 << 32,
                phys: 0x4_8000_0000,
                size: 1 << 30
            }
        );
        assert!(parse_translation("0x1 |\t0x0\t0x1\n").is_err());
    }

    #[test]
    fn coverage_checks_each_offset() {
        let l = parse_translation(DUMP).unwrap();
        assert_eq!(
            coverage(&l, 1 << 32, 4 << 20, 0x4_9000_0000),
            (4 << 20, None)
        );
        let (mapped, wrong) = coverage(&l, 1 << 32, 8 << 20, 0x4_9000_0000);
        assert_eq!((mapped, wrong), (4 << 20, None));
        let (_, wrong) = coverage(&l, 1 << 32, 4 << 20, 0x5_0000_0000);
        assert!(wrong.unwrap().contains("expected 0x500000000"));
        assert_eq!(coverage(&l, 5 << 32, 1 << 20, 0).0, 0);
    }
}
