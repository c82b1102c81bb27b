//! The device under fuzzing, shared by the threads: the open device (which
//! the reopen operation replaces), what discovery found once, and what the
//! threads have done to its power and Memory Space, which decides when a
//! failed access (EIO, SIGBUS, EFAULT) was allowed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use vfio_bindings::bindings::vfio::VFIO_PCI_BAR0_REGION_INDEX;
use vfio_cxl_uapi::VfioRegionInfoCapCxlCompRegs;

use crate::checks::{self, Ctx, Options};
use crate::vfio::RegionInfo;

const PCI_CAPABILITY_LIST: u64 = 0x34;
const PCI_CAP_ID_PM: u32 = 0x01;
const PCI_CAP_ID_EXP: u32 = 0x10;

/// What discovery found; it does not change across reopens.
#[derive(Debug, Clone)]
pub struct Layout {
    pub num_regions: u32,
    /// Every region's info, by index; `None` where the query fails (the
    /// VGA region of a device without VGA).
    pub regions: Vec<Option<RegionInfo>>,
    /// The argsz a complete answer needs: `VFIO_DEVICE_GET_INFO`, and
    /// `VFIO_DEVICE_GET_REGION_INFO` per index.
    pub info_needed: usize,
    pub region_needed: Vec<usize>,
    pub mem: RegionInfo,
    pub comp: RegionInfo,
    pub geometry: VfioRegionInfoCapCxlCompRegs,
    /// The component BAR and its mmap-able (offset, size) areas.
    pub comp_bar: RegionInfo,
    pub comp_areas: Vec<(u64, u64)>,
    /// Config-space offsets: CXL Device DVSEC, its length, PMCSR, PCIe
    /// Device Control.
    pub dvsec: u64,
    pub dvsec_len: u64,
    pub pmcsr: Option<u64>,
    pub devctl: Option<u64>,
    /// The comp-regs region as read at the start (it never changes:
    /// writes are absorbed, the host decoder stays locked).
    pub comp_regs: Vec<u32>,
}

/// A snapshot of the disruptions, taken before an access and compared
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    power_gen: u64,
    cmd_gen: u64,
    busy: bool,
    mem_off: bool,
}

/// The shared device.
#[derive(Debug)]
pub struct Target {
    pub bdf: String,
    /// `None` only after a reopen failed.
    pub ctx: RwLock<Option<Ctx>>,
    pub layout: Layout,
    /// Serializes resets, FLRs, power-state changes and reopens.
    pub power: Mutex<()>,
    power_busy: AtomicBool,
    power_gen: AtomicU64,
    /// Serializes command-register writes.
    pub cmd: Mutex<()>,
    mem_off: AtomicBool,
    cmd_gen: AtomicU64,
}

/// Offset of capability `id` in the standard capability list.
fn find_cap(ctx: &Ctx, id: u32) -> Result<Option<u64>, String> {
    let mut pos = u64::from(
        ctx.config_read(PCI_CAPABILITY_LIST, 1)
            .map_err(|e| e.to_string())?
            & 0xfc,
    );
    for _ in 0..48 {
        if pos < 0x40 {
            return Ok(None);
        }
        let hdr = ctx.config_read(pos, 2).map_err(|e| e.to_string())?;
        if hdr & 0xff == id {
            return Ok(Some(pos));
        }
        pos = u64::from((hdr >> 8) & 0xfc);
    }
    Ok(None)
}

impl Layout {
    fn discover(ctx: &Ctx) -> Result<Self, String> {
        let num_regions = ctx.info.num_regions;
        let mut regions = Vec::new();
        let mut region_needed = Vec::new();
        for index in 0..num_regions {
            let r = ctx.dev.region_info(index).ok();
            region_needed.push(r.as_ref().map_or(0, |r| r.raw.len()));
            regions.push(r);
        }
        let comp_bar = regions
            .get(ctx.geometry.bar as usize)
            .cloned()
            .flatten()
            .ok_or("no info for the component BAR")?;
        let comp_areas = checks::sparse_areas(&comp_bar)?;
        let dvsec = ctx.find_dvsec()?;
        let dvsec_len = u64::from(ctx.config_read(dvsec + 4, 4).map_err(|e| e.to_string())? >> 20);
        let pmcsr = find_cap(ctx, PCI_CAP_ID_PM)?.map(|p| p + 4);
        let devctl = find_cap(ctx, PCI_CAP_ID_EXP)?.map(|p| p + 8);
        Ok(Self {
            num_regions,
            info_needed: ctx.info.raw.len(),
            regions,
            region_needed,
            mem: ctx.mem.clone(),
            comp: ctx.comp.clone(),
            geometry: ctx.geometry,
            comp_bar,
            comp_areas,
            dvsec,
            dvsec_len,
            pmcsr,
            devctl,
            comp_regs: ctx.comp_snapshot()?,
        })
    }

    /// Whether region `index` is a BAR (whose accesses Memory Space gates).
    pub fn is_bar(&self, index: u32) -> bool {
        (VFIO_PCI_BAR0_REGION_INDEX..VFIO_PCI_BAR0_REGION_INDEX + 6).contains(&index)
    }

    /// The size of region `index`, 0 when it does not exist.
    pub fn size(&self, index: u32) -> u64 {
        self.region(index).map_or(0, |r| r.size)
    }

    pub fn region(&self, index: u32) -> Option<&RegionInfo> {
        self.regions.get(index as usize)?.as_ref()
    }
}

impl Target {
    pub fn open(bdf: &str) -> Result<Self, String> {
        let ctx = Ctx::open(bdf, Options::default()).map_err(|e| e.to_string())?;
        let layout = Layout::discover(&ctx)?;
        Ok(Self {
            bdf: bdf.to_string(),
            ctx: RwLock::new(Some(ctx)),
            layout,
            power: Mutex::new(()),
            power_busy: AtomicBool::new(false),
            power_gen: AtomicU64::new(0),
            cmd: Mutex::new(()),
            mem_off: AtomicBool::new(false),
            cmd_gen: AtomicU64::new(0),
        })
    }

    pub fn epoch(&self) -> Epoch {
        Epoch {
            power_gen: self.power_gen.load(Ordering::SeqCst),
            cmd_gen: self.cmd_gen.load(Ordering::SeqCst),
            busy: self.power_busy.load(Ordering::SeqCst),
            mem_off: self.mem_off.load(Ordering::SeqCst),
        }
    }

    /// Whether the device may have been unusable at some point since
    /// `before`: a reset, FLR, power-state change or reopen ran, or Memory
    /// Space was off. Accesses that fail (EIO, SIGBUS, EFAULT into a
    /// mapping) are allowed then and only then. Memory Space counts for
    /// the CXL memory too, so that gating it (issue 10, defect 8) is not
    /// reported; today it does not gate it.
    pub fn disrupted_since(&self, before: Epoch) -> bool {
        let now = self.epoch();
        before.busy || now.busy || before.mem_off || now.mem_off || before != now
    }

    /// Marks a power operation (the caller holds `power`) as running until
    /// the guard drops.
    pub fn power_op(&self) -> PowerOp<'_> {
        self.power_gen.fetch_add(1, Ordering::SeqCst);
        self.power_busy.store(true, Ordering::SeqCst);
        PowerOp(self)
    }

    /// Records a command-register write (the caller holds `cmd`): call
    /// with the new Memory Space bit before the write and after it.
    pub fn memory_space(&self, on: bool) {
        self.cmd_gen.fetch_add(1, Ordering::SeqCst);
        if !on {
            self.mem_off.store(true, Ordering::SeqCst);
        }
    }

    /// After a write that turned Memory Space on went through.
    pub fn memory_space_on(&self) {
        self.mem_off.store(false, Ordering::SeqCst);
        self.cmd_gen.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running power operation; see [`Target::power_op`].
#[derive(Debug)]
pub struct PowerOp<'a>(&'a Target);

impl Drop for PowerOp<'_> {
    fn drop(&mut self) {
        self.0.power_busy.store(false, Ordering::SeqCst);
        self.0.power_gen.fetch_add(1, Ordering::SeqCst);
    }
}
