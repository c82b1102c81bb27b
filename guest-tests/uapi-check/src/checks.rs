//! The contract of docs/uapi.md, one named check at a time.

use std::io;

use cxl_regs::dvsec::{self as dv, Control};
use cxl_regs::hdm::{self, DecoderControl};
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_CAPS, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_cxl_uapi::{caps, VfioRegionInfoCapCxlCompRegs};
use vfio_cxl_uapi::{
    VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED, VFIO_DEVICE_FLAGS_CXL, VFIO_DEVICE_INFO_CAP_CXL,
    VFIO_REGION_INFO_CAP_CXL_COMP_REGS, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    VFIO_REGION_SUBTYPE_CXL_COMP_REGS, VFIO_REGION_SUBTYPE_CXL_MEM, VFIO_REGION_TYPE_CXL,
};

use crate::isolation;
use crate::pattern;
use crate::vfio::{region_offset, Device, DeviceInfo, Mapping, RegionInfo, VfioError};

const DEVICE_INFO_LEN: usize = 24;
const REGION_INFO_LEN: usize = 32;
pub(crate) const PAGE: u64 = 4096;
/// HDM region sizes are multiples of the decoder granularity.
const HDM_ALIGN: u64 = cxl_regs::window::HDM_ALIGN;
pub(crate) const PCI_COMMAND: u64 = 0x04;
pub(crate) const PCI_COMMAND_MEMORY: u16 = 0x2;
const PCI_EXT_CAP_START: u64 = 0x100;
const PCI_EXT_CAP_ID_DVSEC: u32 = 0x23;

/// What the run was asked to do besides the fixed checks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The outside filled the memory with this pattern before boot.
    pub expect_seed: Option<u64>,
    /// Leave this pattern in the memory for the outside to verify.
    pub write_seed: Option<u64>,
    /// The outside writes its pattern after the device is open: tell it
    /// when, and wait for it (`coherence::handshake_offsets`).
    pub handshake: bool,
    /// How many times to close and reopen the device.
    pub reopen: u32,
}

/// The device and what discovery found.
#[derive(Debug)]
pub struct Ctx {
    pub bdf: String,
    pub dev: Device,
    pub info: DeviceInfo,
    pub mem: RegionInfo,
    pub comp: RegionInfo,
    pub geometry: VfioRegionInfoCapCxlCompRegs,
    pub options: Options,
}

pub type Outcome = Result<String, String>;

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn einval(what: &str, r: io::Result<impl std::fmt::Debug>) -> Result<(), String> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(format!("{what}: expected EINVAL, got {e}")),
        Ok(v) => Err(format!("{what}: expected EINVAL, succeeded ({v:?})")),
    }
}

pub(crate) fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

impl Ctx {
    /// Opens the device and finds both CXL regions (docs/uapi.md, Discovery).
    pub fn open(bdf: &str, options: Options) -> Result<Self, VfioError> {
        Self::from_device(bdf, Device::open(bdf)?, options)
    }

    /// As [`Ctx::open`], on a device fd opened another way (the VFIO cdev
    /// bound to an iommufd: dmabuf.rs).
    pub fn from_device(bdf: &str, dev: Device, options: Options) -> Result<Self, VfioError> {
        let protocol = |m: String| VfioError::Protocol(format!("{bdf}: {m}"));
        let info = dev.info()?;
        let (mut mem, mut comp) = (None, None);
        for index in VFIO_PCI_NUM_REGIONS..info.num_regions {
            let r = dev.region_info(index)?;
            match r.region_type() {
                Some((VFIO_REGION_TYPE_CXL, VFIO_REGION_SUBTYPE_CXL_MEM)) => mem = Some(r),
                Some((VFIO_REGION_TYPE_CXL, VFIO_REGION_SUBTYPE_CXL_COMP_REGS)) => comp = Some(r),
                _ => {}
            }
        }
        let mem = mem.ok_or_else(|| protocol("no CXL memory region".into()))?;
        let comp = comp.ok_or_else(|| protocol("no CXL component-register region".into()))?;
        let cap = caps::find(
            &comp.raw,
            REGION_INFO_LEN,
            comp.cap_offset,
            VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
        )
        .map_err(|e| protocol(format!("comp-regs capability chain: {e}")))?
        .ok_or_else(|| {
            protocol("comp-regs region has no VFIO_REGION_INFO_CAP_CXL_COMP_REGS".into())
        })?;
        let geometry = caps::cxl_comp_regs(&comp.raw, cap).map_err(|e| protocol(e.to_string()))?;
        let ctx = Self {
            bdf: bdf.to_owned(),
            dev,
            info,
            mem,
            comp,
            geometry,
            options,
        };
        ctx.enable_memory_space()
            .map_err(|e| protocol(format!("enable Memory Space: {e}")))?;
        Ok(ctx)
    }

    pub(crate) fn config_offset(&self) -> u64 {
        region_offset(VFIO_PCI_CONFIG_REGION_INDEX)
    }

    pub fn config_read(&self, off: u64, len: usize) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.dev.pread(&mut b[..len], self.config_offset() + off)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn config_write(&self, off: u64, len: usize, value: u32) -> io::Result<()> {
        self.dev
            .pwrite(&value.to_le_bytes()[..len], self.config_offset() + off)
            .map(|_| ())
    }

    pub(crate) fn enable_memory_space(&self) -> io::Result<()> {
        self.set_memory_space(true)
    }

    pub fn set_memory_space(&self, on: bool) -> io::Result<()> {
        let cmd = self.config_read(PCI_COMMAND, 2)? as u16;
        let cmd = if on {
            cmd | PCI_COMMAND_MEMORY
        } else {
            cmd & !PCI_COMMAND_MEMORY
        };
        self.config_write(PCI_COMMAND, 2, u32::from(cmd))
    }

    /// A shared read-write mapping of the first `len` bytes of the memory
    /// region.
    pub(crate) fn map_mem(&self, len: usize) -> io::Result<Mapping> {
        self.dev.mmap(
            len,
            self.mem.offset,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }

    pub(crate) fn comp_read(&self, off: u32) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.dev.pread(&mut b, self.comp.offset + u64::from(off))?;
        Ok(u32::from_ne_bytes(b))
    }

    pub(crate) fn comp_write(&self, off: u32, value: u32) -> io::Result<usize> {
        self.dev
            .pwrite(&value.to_ne_bytes(), self.comp.offset + u64::from(off))
    }

    pub fn comp_snapshot(&self) -> Result<Vec<u32>, String> {
        (0..self.comp.size as u32)
            .step_by(4)
            .map(|o| self.comp_read(o).map_err(err))
            .collect()
    }

    /// Offset of the CXL Device DVSEC in config space.
    pub fn find_dvsec(&self) -> Result<u64, String> {
        let mut pos = PCI_EXT_CAP_START;
        for _ in 0..64 {
            let hdr = self.config_read(pos, 4).map_err(err)?;
            if hdr & 0xffff == PCI_EXT_CAP_ID_DVSEC {
                let h1 = self.config_read(pos + 4, 4).map_err(err)?;
                let h2 = self.config_read(pos + 8, 2).map_err(err)?;
                if h1 & 0xffff == u32::from(dv::CXL_VENDOR_ID)
                    && h2 == u32::from(dv::DVSEC_ID_CXL_DEVICE)
                {
                    return Ok(pos);
                }
            }
            pos = u64::from(hdr >> 20) & !3;
            if pos < PCI_EXT_CAP_START {
                break;
            }
        }
        Err("no CXL Device DVSEC in config space".into())
    }
}

/// A named check.
pub type Check = (&'static str, fn(&Ctx) -> Outcome);

/// Every check, in the order they run.
pub const CHECKS: &[Check] = &[
    ("device_info", device_info),
    ("regions", regions),
    ("comp_bar_sparse_mmap", comp_bar_sparse_mmap),
    ("comp_bar_rw_hides_decoders", comp_bar_rw_hides_decoders),
    ("comp_regs_view", comp_regs_view),
    ("comp_regs_dword_only", comp_regs_dword_only),
    ("comp_regs_writes_absorbed", comp_regs_writes_absorbed),
    ("dvsec_virtualized", dvsec_virtualized),
    ("mem_coherence", mem_coherence),
    ("mem_bad_input", mem_bad_input),
    ("device_info_defined", isolation::device_info_defined),
    ("ioeventfd_refused", isolation::ioeventfd_refused),
    (
        "dvsec_hides_host_address",
        isolation::dvsec_hides_host_address,
    ),
    (
        "dvsec_write_across_header",
        isolation::dvsec_write_across_header,
    ),
    ("cxl_reset_is_real", isolation::cxl_reset_is_real),
    (
        "mem_follows_memory_space",
        isolation::mem_follows_memory_space,
    ),
    ("reset_with_live_mapping", reset_with_live_mapping),
    ("dmabuf_export", crate::dmabuf::export_by_kernel),
];

fn device_info(c: &Ctx) -> Outcome {
    let want = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_CXL | VFIO_DEVICE_FLAGS_CAPS;
    ensure(c.info.flags & want == want, || {
        format!("flags {:#x} lack PCI|CXL|CAPS", c.info.flags)
    })?;
    let cap = caps::find(
        &c.info.raw,
        DEVICE_INFO_LEN,
        c.info.cap_offset,
        VFIO_DEVICE_INFO_CAP_CXL,
    )
    .map_err(err)?
    .ok_or("no VFIO_DEVICE_INFO_CAP_CXL")?;
    let cxl = caps::device_cxl(&c.info.raw, cap).map_err(err)?;
    ensure(
        cxl.flags & VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED != 0,
        || format!("cap flags {:#x}", cxl.flags),
    )?;
    ensure(cxl.reserved == 0, || "reserved field not zero".into())?;
    Ok(format!(
        "flags {:#x}, cap flags {:#x}",
        c.info.flags, cxl.flags
    ))
}

fn regions(c: &Ctx) -> Outcome {
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    ensure(
        c.mem.flags & (rw | VFIO_REGION_INFO_FLAG_MMAP) == rw | VFIO_REGION_INFO_FLAG_MMAP,
        || format!("memory region flags {:#x}", c.mem.flags),
    )?;
    ensure(c.mem.size > 0 && c.mem.size % HDM_ALIGN == 0, || {
        format!("memory size {:#x}", c.mem.size)
    })?;
    ensure(
        c.comp.flags & rw == rw && !c.comp.has_flag(VFIO_REGION_INFO_FLAG_MMAP),
        || format!("comp-regs flags {:#x}", c.comp.flags),
    )?;
    let g = &c.geometry;
    ensure(
        g.bar < 6 && g.size == c.comp.size && g.reserved == 0,
        || format!("geometry {g:?}"),
    )?;
    ensure(c.comp.size >= u64::from(hdm::block_len(1)), || {
        format!("comp-regs size {:#x}", c.comp.size)
    })?;
    Ok(format!(
        "mem {:#x} bytes (index {}), comp {:#x} bytes at BAR{}+{:#x}",
        c.mem.size, c.mem.index, c.comp.size, g.bar, g.offset
    ))
}

/// The pages of the component BAR that hold decoder registers.
pub fn decoder_pages(g: &VfioRegionInfoCapCxlCompRegs) -> (u64, u64) {
    (
        g.offset & !(PAGE - 1),
        (g.offset + g.size).next_multiple_of(PAGE),
    )
}

/// The (offset, size) areas of a region's sparse-mmap capability.
pub fn sparse_areas(bar: &RegionInfo) -> Result<Vec<(u64, u64)>, String> {
    let cap = caps::find(
        &bar.raw,
        REGION_INFO_LEN,
        bar.cap_offset,
        VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    )
    .map_err(err)?
    .ok_or("component BAR has no sparse-mmap capability")?;
    let body = cap.offset + 8;
    let nr = bar
        .raw
        .get(body..body + 4)
        .ok_or("sparse-mmap capability runs past the buffer")?;
    let nr = u32::from_ne_bytes(nr.try_into().map_err(err)?) as usize;
    (0..nr)
        .map(|i| {
            let at = body + 8 + 16 * i;
            let area = bar
                .raw
                .get(at..at + 16)
                .ok_or("sparse areas run past the buffer")?;
            Ok((
                u64::from_ne_bytes(area[0..8].try_into().map_err(err)?),
                u64::from_ne_bytes(area[8..16].try_into().map_err(err)?),
            ))
        })
        .collect()
}

fn comp_bar_sparse_mmap(c: &Ctx) -> Outcome {
    let bar = c.dev.region_info(c.geometry.bar).map_err(err)?;
    ensure(bar.has_flag(VFIO_REGION_INFO_FLAG_MMAP), || {
        "component BAR not mmap-able".into()
    })?;
    let areas = sparse_areas(&bar)?;
    let nr = areas.len();
    let (lo, hi) = decoder_pages(&c.geometry);
    for (off, size) in areas {
        ensure(off + size <= lo || off >= hi, || {
            format!("area {off:#x}+{size:#x} overlaps decoder pages {lo:#x}..{hi:#x}")
        })?;
        if size > 0 {
            c.dev
                .mmap(
                    size as usize,
                    bar.offset + off,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                )
                .map_err(|e| format!("area {off:#x}: {e}"))?;
        }
    }
    einval(
        "whole-BAR mmap",
        c.dev.mmap(
            bar.size as usize,
            bar.offset,
            libc::PROT_READ,
            libc::MAP_SHARED,
        ),
    )?;
    einval(
        "decoder page mmap",
        c.dev.mmap(
            PAGE as usize,
            bar.offset + lo,
            libc::PROT_READ,
            libc::MAP_SHARED,
        ),
    )?;
    Ok(format!(
        "{nr} areas, decoder pages {lo:#x}..{hi:#x} excluded"
    ))
}

fn comp_bar_rw_hides_decoders(c: &Ctx) -> Outcome {
    let bar = c.dev.region_info(c.geometry.bar).map_err(err)?;
    let at = bar.offset + c.geometry.offset + u64::from(hdm::control(0));
    let mut b = [0u8; 4];
    c.dev.pread(&mut b, at).map_err(err)?;
    ensure(b == [0xff; 4], || {
        format!("decoder control through the BAR reads {b:x?}, not all-ones")
    })?;
    c.dev.pwrite(&[0; 4], at).map_err(err)?;
    c.dev.pread(&mut b, at).map_err(err)?;
    ensure(b == [0xff; 4], || {
        "a BAR write reached the decoder view".into()
    })?;
    Ok("all-ones, writes dropped".into())
}

pub(crate) fn comp_regs_view(c: &Ctx) -> Outcome {
    let ctrl = DecoderControl(c.comp_read(hdm::control(0)).map_err(err)?);
    for (f, name) in [
        (DecoderControl::COMMITTED, "COMMITTED"),
        (DecoderControl::LOCK_ON_COMMIT, "LOCK_ON_COMMIT"),
        (DecoderControl::COMMIT, "COMMIT"),
    ] {
        ensure(ctrl.is_set(f), || {
            format!("decoder 0 control {:#x} lacks {name}", ctrl.0)
        })?;
    }
    let base = (
        c.comp_read(hdm::base_low(0)).map_err(err)?,
        c.comp_read(hdm::base_high(0)).map_err(err)?,
    );
    ensure(base == (0, 0), || {
        format!("decoder 0 base reads {base:x?}: host addresses must not show")
    })?;
    let size = u64::from(c.comp_read(hdm::size_low(0)).map_err(err)?)
        | u64::from(c.comp_read(hdm::size_high(0)).map_err(err)?) << 32;
    ensure(size == c.mem.size, || {
        format!(
            "decoder 0 size {size:#x} != memory region {:#x}",
            c.mem.size
        )
    })?;
    let cap = hdm::HdmCapability(c.comp_read(hdm::CAPABILITY).map_err(err)?);
    let count = hdm::decoder_count_decode(cap.get(hdm::HdmCapability::DECODER_COUNT) as u32)
        .ok_or("bad decoder count")?;
    ensure(u64::from(hdm::block_len(count)) == c.comp.size, || {
        format!("{count} decoders but region size {:#x}", c.comp.size)
    })?;
    Ok(format!(
        "decoder 0 control {:#x}, size {size:#x}, {count} decoder(s)",
        ctrl.0
    ))
}

fn comp_regs_dword_only(c: &Ctx) -> Outcome {
    let mut b = [0u8; 8];
    einval(
        "unaligned dword",
        c.dev.pread(&mut b[..4], c.comp.offset + 1),
    )?;
    einval("2-byte read", c.dev.pread(&mut b[..2], c.comp.offset))?;
    einval("8-byte read", c.dev.pread(&mut b, c.comp.offset))?;
    einval(
        "read at the end",
        c.dev.pread(&mut b[..4], c.comp.offset + c.comp.size),
    )?;
    einval("2-byte write", c.dev.pwrite(&b[..2], c.comp.offset))?;
    Ok("non-dword accesses refused".into())
}

fn comp_regs_writes_absorbed(c: &Ctx) -> Outcome {
    let before = c.comp_snapshot()?;
    c.comp_write(hdm::control(0), 0).map_err(err)?;
    c.comp_write(hdm::base_low(0), 0x3000_0000).map_err(err)?;
    for off in (0..c.comp.size as u32).step_by(4) {
        let n = c.comp_write(off, u32::MAX).map_err(err)?;
        ensure(n == 4, || format!("write at {off:#x} returned {n}"))?;
    }
    let after = c.comp_snapshot()?;
    ensure(before == after, || {
        "a write changed the decoder view".into()
    })?;
    Ok(format!(
        "{} dwords unchanged after decommit, base and all-ones writes",
        before.len()
    ))
}

fn dvsec_virtualized(c: &Ctx) -> Outcome {
    let d = c.find_dvsec()?;
    let read16 = |o: u16| {
        c.config_read(d + u64::from(o), 2)
            .map(|v| v as u16)
            .map_err(err)
    };
    ensure(
        Control(read16(dv::CONTROL)?).is_set(Control::IO_ENABLE),
        || "IO_Enable reads 0".into(),
    )?;
    let size = (
        c.config_read(d + u64::from(dv::range_size_low(0)), 4)
            .map_err(err)?,
        c.config_read(d + u64::from(dv::range_size_high(0)), 4)
            .map_err(err)?,
    );
    c.config_write(d + u64::from(dv::range_size_low(0)), 4, 0)
        .map_err(err)?;
    let again = (
        c.config_read(d + u64::from(dv::range_size_low(0)), 4)
            .map_err(err)?,
        c.config_read(d + u64::from(dv::range_size_high(0)), 4)
            .map_err(err)?,
    );
    ensure(size == again, || "Range 1 Size changed on write".into())?;
    Ok("read-only fields hold, IO_Enable reads 1".into())
}

fn mem_coherence(c: &Ctx) -> Outcome {
    let map = c
        .map_mem(c.mem.size as usize)
        .map_err(|e| format!("mmap: {e}"))?;
    let samples: Vec<u64> = pattern::sample_offsets(c.mem.size);
    if c.options.handshake {
        let (ready, go) = crate::coherence::handshake_offsets(c.mem.size);
        map.write_u64(ready as usize, crate::coherence::READY);
        let t = std::time::Instant::now();
        while map.read_u64(go as usize) != crate::coherence::GO {
            ensure(t.elapsed() < crate::coherence::HANDSHAKE_TIMEOUT, || {
                "the outside never wrote its pattern (no GO word)".into()
            })?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    // The digest of the samples as read, for the side that wrote them.
    let read: Vec<u64> = samples.iter().map(|&o| map.read_u64(o as usize)).collect();
    let mut detail = format!(
        "{} samples, outside digest {}",
        samples.len(),
        pattern::hex(pattern::digest(read.iter().copied()))
    );
    if let Some(seed) = c.options.expect_seed {
        let bad = samples
            .iter()
            .zip(&read)
            .filter(|&(&o, &got)| got != pattern::word(seed, o))
            .count();
        ensure(bad == 0, || {
            format!(
                "{bad} of {} words differ from the outside's pattern {seed}",
                samples.len()
            )
        })?;
        detail += &format!(", outside pattern {seed} seen");
    }
    let seed = c.options.write_seed.unwrap_or(0x5eed);
    for &o in &samples {
        map.write_u64(o as usize, pattern::word(seed, o));
    }
    // The read()/write() path sees the same bytes as the mapping.
    for &o in samples.iter().step_by(17) {
        let mut b = [0u8; 8];
        c.dev
            .pread(&mut b, c.mem.offset + o)
            .map_err(|e| format!("pread at {o:#x}: {e}"))?;
        ensure(u64::from_ne_bytes(b) == pattern::word(seed, o), || {
            format!("pread at {o:#x} disagrees with the mapping")
        })?;
    }
    let o = samples[samples.len() / 2];
    c.dev
        .pwrite(&0xfeed_f00d_u64.to_ne_bytes(), c.mem.offset + o)
        .map_err(err)?;
    ensure(map.read_u64(o as usize) == 0xfeed_f00d, || {
        "a pwrite is not seen through the mapping".into()
    })?;
    map.write_u64(o as usize, pattern::word(seed, o));
    if c.options.handshake {
        // The outside reads it now: a close would clear the memory.
        let (left, seen) = crate::coherence::handshake_offsets(c.mem.size);
        map.write_u64(left as usize, crate::coherence::LEFT);
        let t = std::time::Instant::now();
        while map.read_u64(seen as usize) != crate::coherence::SEEN {
            ensure(t.elapsed() < crate::coherence::HANDSHAKE_TIMEOUT, || {
                "the outside never read the pattern left for it (no SEEN word)".into()
            })?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    detail += &format!(", pattern {seed} left for the outside");
    Ok(detail)
}

fn mem_bad_input(c: &Ctx) -> Outcome {
    let (size, base) = (c.mem.size as usize, c.mem.offset);
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    einval(
        "MAP_PRIVATE",
        c.dev.mmap(PAGE as usize, base, rw, libc::MAP_PRIVATE),
    )?;
    einval(
        "mmap past the end",
        c.dev.mmap(size + PAGE as usize, base, rw, libc::MAP_SHARED),
    )?;
    einval(
        "mmap at the end",
        c.dev
            .mmap(PAGE as usize, base + c.mem.size, rw, libc::MAP_SHARED),
    )?;
    einval(
        "mmap of the comp-regs region",
        c.dev.mmap(
            PAGE as usize,
            c.comp.offset,
            libc::PROT_READ,
            libc::MAP_SHARED,
        ),
    )?;
    let mut b = [0u8; 8];
    einval("pread at the end", c.dev.pread(&mut b, base + c.mem.size))?;
    einval(
        "pread far past the end",
        c.dev.pread(&mut b, base + (1 << 40) - 8),
    )?;
    einval(
        "GET_REGION_INFO argsz 4",
        c.dev.region_info_argsz(c.mem.index, 4).map(|_| 0),
    )?;
    let n = c.dev.pread(&mut b, base + c.mem.size - 4).map_err(err)?;
    ensure(n == 4, || {
        format!("read crossing the end returned {n}, not 4")
    })?;
    Ok("EINVAL for each; a read crossing the end is short".into())
}

/// Reads the u64 at `addr` in a child process: `Ok(true)` if the child
/// died of `SIGBUS`, `Ok(false)` if the read worked.
pub(crate) fn read_dies_of_sigbus(addr: usize) -> Result<bool, String> {
    // SAFETY: the child only does a volatile read of a mapping it inherited
    // and _exit()s; no allocation or lock is touched after fork().
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: `addr` is an 8-byte aligned address of a live shared
        // mapping (the caller's), inherited by this child.
        unsafe {
            (addr as *const u64).read_volatile();
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child just created; `status` is a valid pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", io::Error::last_os_error()));
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
        return Ok(true);
    }
    ensure(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        || format!("reader child ended with status {status:#x}"),
    )?;
    Ok(false)
}

fn reset_with_live_mapping(c: &Ctx) -> Outcome {
    if c.info.flags & VFIO_DEVICE_FLAGS_RESET == 0 {
        return Err("device does not advertise VFIO_DEVICE_FLAGS_RESET".into());
    }
    let map = c.map_mem(PAGE as usize * 2).map_err(err)?;
    // Words 0 and 8 carry the pattern left for the outside: put them back.
    let saved = (map.read_u64(0), map.read_u64(8));
    map.write_u64(0, 0x0123_4567_89ab_cdef);
    c.dev.reset().map_err(err)?;
    c.enable_memory_space().map_err(err)?;
    // The mapping was zapped; this access refaults (SIGBUS would end the run).
    let after = map.read_u64(0);
    map.write_u64(8, after ^ 1);
    ensure(map.read_u64(8) == after ^ 1, || {
        "the mapping does not work after reset".into()
    })?;
    comp_regs_view(c)?;
    map.write_u64(0, saved.0);
    map.write_u64(8, saved.1);
    Ok(format!(
        "refault after reset ok; word 0 reads {after:#x} (device reset semantics)"
    ))
}

/// Closes and reopens the device `times` times.
pub fn reopen(bdf: &str, times: u32) -> Outcome {
    for i in 0..times {
        let dev = Device::open(bdf).map_err(|e| format!("reopen {i}: {e}"))?;
        let info = dev.info().map_err(|e| format!("reopen {i}: {e}"))?;
        ensure(info.flags & VFIO_DEVICE_FLAGS_CXL != 0, || {
            format!("reopen {i}: CXL flag gone")
        })?;
    }
    Ok(format!("{times} close/open cycles"))
}
