// SPDX-License-Identifier: GPL-2.0-or-later
//! The software CXL Type-2 device behind the vfio-user socket, serving the
//! same uAPI as the host driver (docs/uapi.md): the nine vfio-pci regions
//! plus `CXL_MEM` and `CXL_COMP_REGS`, the device-info capability, the
//! DVSEC shadow in config space and the decoder block cut out of BAR 0.
//!
//! This module knows nothing about sockets: the server turns messages into
//! calls here and errno values back into error replies.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use cxl_regs::component::{self, ComponentRegisters, HDM_OFFSET};
use cxl_regs::dvsec::DvsecEvent;
use cxl_regs::hdm::{self, FirmwareDecoder, HdmConfig};
use cxl_regs::window::HpaRange;
use vfio_cxl_uapi::caps::{self, ChainWriter};
use vfio_cxl_uapi::{
    VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED, VFIO_DEVICE_FLAGS_CXL, VFIO_DEVICE_INFO_CAP_CXL,
    VFIO_REGION_INFO_CAP_CXL_COMP_REGS, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_SUBTYPE_CXL_COMP_REGS, VFIO_REGION_SUBTYPE_CXL_MEM,
    VFIO_REGION_TYPE_CXL,
};

use crate::config::{self, ConfigSpace, COMPONENT_BAR, COMPONENT_BAR_OFFSET};
use crate::fault::Broken;
use crate::protocol::{vfio, PutNe};

/// Region index of the CXL memory region. Indices are not part of the
/// contract (clients find regions by type); these follow the nine
/// vfio-pci regions, as the host driver's do.
pub const CXL_MEM_INDEX: u32 = vfio::PCI_NUM_REGIONS;
/// Region index of the component-register (decoder view) region.
pub const CXL_COMP_REGS_INDEX: u32 = vfio::PCI_NUM_REGIONS + 1;
/// Number of regions the device reports.
pub const NUM_REGIONS: u32 = vfio::PCI_NUM_REGIONS + 2;

/// Size of BAR 0: exactly the component register block.
pub const BAR0_SIZE: u64 = component::BLOCK_SIZE;

/// Where the pretend host firmware committed the device's decoder. It is
/// the "host physical address" that the contract hides: it must never be
/// visible through any region (the tests check this).
pub const HOST_HPA_BASE: u64 = 0x0042_0000_0000;

/// An errno value for an error reply.
pub type Errno = i32;

/// Result of a region access: the bytes read or the count written.
pub type IoResult<T> = Result<T, Errno>;

fn einval<T>() -> IoResult<T> {
    Err(libc::EINVAL)
}

/// What a region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Bar0,
    Config,
    Mem,
    CompRegs,
    /// A vfio-pci index the device does not implement (size 0).
    Empty,
}

/// Result of `GET_REGION_INFO`: the reply payload and the fd to pass.
#[derive(Debug)]
pub struct RegionInfoReply<'a> {
    pub payload: Vec<u8>,
    pub fd: Option<BorrowedFd<'a>>,
}

/// The device state.
#[derive(Debug)]
pub struct CxlDevice {
    config: ConfigSpace,
    /// The component register block as the "hardware" has it: decoder 0
    /// committed and locked by firmware at [`HOST_HPA_BASE`].
    component: ComponentRegisters,
    /// Backing of the mmap-able parts of BAR 0 (a memfd).
    bar0: File,
    mem: File,
    mem_size: u64,
    page_size: u64,
    /// `--broken`: the contract violation presented, if any.
    broken: Option<Broken>,
    /// `--info-pad`: capabilities of an unknown id before the CXL one.
    info_pad: u32,
}

/// A device-info capability id no client knows: what `--broken cap-loop`
/// puts first, and `--info-pad` before the CXL capability.
const UNKNOWN_CAP_ID: u16 = 0x7ff0;

impl CxlDevice {
    /// A device whose memory is the first `mem_size` bytes of `mem`, a
    /// file opened read-write and at least that long; `mem_size` is a
    /// non-zero multiple of 256 MiB (the CLI checks both).
    pub fn new(mem: File, mem_size: u64) -> io::Result<Self> {
        Self::with_decoders(mem, mem_size, 1)
    }

    /// As [`Self::new`], with `decoders` HDM decoders (an encodable
    /// Decoder Count): firmware commits decoder 0, the others stay idle,
    /// so the host's decoder block is larger than a VMM's one-decoder model.
    pub fn with_decoders(mem: File, mem_size: u64, decoders: u32) -> io::Result<Self> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if hdm::decoder_count_encode(decoders).is_none() {
            return Err(invalid(format!(
                "{decoders} HDM decoders: not an encodable count"
            )));
        }
        if mem_size == 0 || mem_size % cxl_regs::window::HDM_ALIGN != 0 {
            return Err(invalid(format!(
                "memory size {mem_size:#x} is not a non-zero multiple of 256 MiB"
            )));
        }
        let len = mem.metadata()?.len();
        if len < mem_size {
            return Err(invalid(format!(
                "memory file holds {len} bytes, fewer than the size {mem_size}"
            )));
        }
        let range = HpaRange::new(HOST_HPA_BASE, mem_size);
        let mut config = HdmConfig::single_device_decoder(range, mem_size);
        config.decoder_count = decoders;
        let mut component = ComponentRegisters::new(config);
        component
            .hdm_mut()
            .firmware_commit(
                0,
                FirmwareDecoder {
                    range,
                    eiw: 0,
                    eig: 0,
                    target_or_skip: 0,
                    host_only: false,
                    lock: true,
                },
            )
            .map_err(|e| invalid(format!("firmware commit of decoder 0: {e}")))?;
        let bar0 = memfd("vfio-user-cxl-bar0")?;
        bar0.set_len(BAR0_SIZE)?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(Self {
            config: ConfigSpace::new(mem_size, BAR0_SIZE),
            component,
            bar0,
            mem,
            mem_size,
            page_size: u64::try_from(page_size).unwrap_or(4096).max(4096),
            broken: None,
            info_pad: 0,
        })
    }

    /// Presents the device malformed in the way `broken` names (for tests
    /// of a VMM's refusal), or well-formed with `None`.
    pub fn set_broken(&mut self, broken: Option<Broken>) {
        self.broken = broken;
    }

    /// Puts `caps` capabilities of an unknown id (8 bytes each) before
    /// the CXL one: a well-formed device whose device-info reply is long,
    /// for a client that must ask again with the argsz the reply names.
    pub fn set_info_pad(&mut self, caps: u32) {
        self.info_pad = caps;
    }

    pub fn mem_size(&self) -> u64 {
        self.mem_size
    }

    pub fn config(&self) -> &ConfigSpace {
        &self.config
    }

    /// `VFIO_USER_DEVICE_RESET`: the function reset the host driver runs at
    /// VFIO's reset points. As with the kernel's `pci_try_reset_function`,
    /// the PCI state (command register, BARs, PCIe control registers) is
    /// saved and restored around it, so Memory Space stays as it was; the
    /// DVSEC shadow returns to its bind-time state (docs/uapi.md). The
    /// device memory keeps its contents (this device's reset semantics),
    /// and the host decoder, committed and locked by firmware, survives:
    /// the decoder view does not change. RAS status is sticky and kept; so
    /// is the BAR backing.
    pub fn reset(&mut self) {
        self.config.function_reset();
    }

    /// Clears the device memory by punching a hole over it
    /// (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): the file keeps its size,
    /// reads zeros and frees its blocks, and every mapping of it (a
    /// client's included) sees zeros. Nothing is written, so clearing a
    /// large sparse file costs neither time nor disk.
    pub fn clear_memory(&self) -> io::Result<()> {
        let len = libc::off_t::try_from(self.mem_size)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: fallocate on a descriptor this device owns; no memory
        // is passed.
        let r = unsafe {
            libc::fallocate(
                self.mem.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                len,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A client's Initiate CXL Reset (the DVSEC shadow rang it): with
    /// Mem_Clr_Enable the memory is cleared, and Status2 reports CXL Reset
    /// Complete, or CXL Reset Error if the clear failed. The host decoder,
    /// committed and locked by firmware, stays as it is: the host driver
    /// programs and locks it again after a CXL Reset, so a client sees no
    /// change in the decoder view.
    fn cxl_reset(&mut self, clear_memory: bool) {
        let ok = !clear_memory
            || self.clear_memory().map_or_else(
                |e| {
                    eprintln!(
                        "vfio-user-cxl: CXL Reset: clearing the memory failed: {e}; CXL Reset Error set"
                    );
                    false
                },
                |()| true,
            );
        self.config.cxl_reset_done(ok);
    }

    fn region(&self, index: u32) -> Option<Region> {
        Some(match index {
            vfio::PCI_BAR0_REGION_INDEX => Region::Bar0,
            vfio::PCI_CONFIG_REGION_INDEX => Region::Config,
            CXL_MEM_INDEX if self.broken == Some(Broken::NoCxlMem) => Region::Empty,
            CXL_MEM_INDEX => Region::Mem,
            CXL_COMP_REGS_INDEX => Region::CompRegs,
            i if i < vfio::PCI_NUM_REGIONS => Region::Empty,
            _ => return None,
        })
    }

    fn region_size(&self, r: Region) -> u64 {
        match r {
            Region::Bar0 => BAR0_SIZE,
            Region::Config => config::CONFIG_SIZE as u64,
            Region::Mem if self.broken == Some(Broken::MemUnaligned) => self.mem_size - 4096,
            Region::Mem => self.mem_size,
            Region::CompRegs => u64::from(self.component.hdm().len()),
            Region::Empty => 0,
        }
    }

    /// The decoder block's place in BAR 0: `[start, end)`.
    pub fn decoder_block(&self) -> (u64, u64) {
        let start = COMPONENT_BAR_OFFSET + HDM_OFFSET;
        (start, start + u64::from(self.component.hdm().len()))
    }

    /// The pages of BAR 0 that overlap the decoder block.
    pub fn decoder_pages(&self) -> (u64, u64) {
        let (start, end) = self.decoder_block();
        let p = self.page_size;
        (start / p * p, end.div_ceil(p) * p)
    }

    /// The mmap-able areas of BAR 0: the BAR minus the decoder pages.
    pub fn bar0_sparse_areas(&self) -> Vec<(u64, u64)> {
        let (lo, hi) = self.decoder_pages();
        let mut areas = Vec::new();
        if lo > 0 {
            areas.push((0, lo));
        }
        if hi < BAR0_SIZE {
            areas.push((hi, BAR0_SIZE - hi));
        }
        areas
    }

    /// `VFIO_USER_DEVICE_GET_INFO`: `struct vfio_device_info` and its
    /// capability chain, cut to what `argsz` allows as the kernel does
    /// (the reply's argsz always tells the full size). A client asking for
    /// the 16 bytes the vfio-user spec shows gets those 16 bytes.
    pub fn device_info(&self, argsz: u32) -> IoResult<Vec<u8>> {
        let argsz = argsz as usize;
        if argsz < vfio::DEVICE_INFO_BASE_LEN {
            return einval();
        }
        let fixed = vfio::DEVICE_INFO_LEN;
        let mut chain = vec![0u8; 64 + 8 * self.info_pad as usize];
        let mut w = ChainWriter::new(&mut chain, fixed);
        for _ in 0..self.info_pad {
            w.push(UNKNOWN_CAP_ID, 1, &[]).ok_or(libc::EINVAL)?;
        }
        let cap_flags = match self.broken {
            Some(Broken::NotCommitted) => 0,
            _ => VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED,
        };
        let looped = if self.broken == Some(Broken::CapLoop) {
            Some(w.push(UNKNOWN_CAP_ID, 1, &[]).ok_or(libc::EINVAL)?)
        } else {
            None
        };
        if self.broken != Some(Broken::NoCxlCap) {
            w.push(
                VFIO_DEVICE_INFO_CAP_CXL,
                1,
                &caps::device_cxl_body(cap_flags),
            )
            .ok_or(libc::EINVAL)?;
        }
        let needed = w.needed();
        let first = w.first(fixed);
        if let Some(at) = looped {
            // Its `next` names itself instead of the CXL capability.
            chain[at + 4..at + 8].copy_from_slice(&(at as u32).to_ne_bytes());
        }
        let full = argsz >= needed;
        let mut flags = vfio::DEVICE_FLAGS_RESET | vfio::DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_CXL;
        if first.is_some() {
            flags |= vfio::DEVICE_FLAGS_CAPS;
        }
        let first = first.unwrap_or(0);
        let mut out = Vec::with_capacity(needed);
        out.put_u32(needed as u32);
        out.put_u32(flags);
        out.put_u32(NUM_REGIONS);
        out.put_u32(vfio::PCI_NUM_IRQS);
        if argsz >= fixed {
            out.put_u32(if full { first as u32 } else { 0 });
            out.put_u32(0);
        }
        if full {
            out.extend_from_slice(&chain[fixed..needed]);
        }
        Ok(out)
    }

    /// `VFIO_USER_DEVICE_GET_REGION_INFO`, with the capabilities of
    /// docs/uapi.md and the fd of an mmap-able region.
    pub fn region_info(&self, index: u32, argsz: u32) -> IoResult<RegionInfoReply<'_>> {
        let argsz = argsz as usize;
        let fixed = vfio::REGION_INFO_LEN;
        if argsz < fixed {
            return einval();
        }
        let r = self.region(index).ok_or(libc::EINVAL)?;
        let size = self.region_size(r);
        let rw = vfio::REGION_INFO_FLAG_READ | vfio::REGION_INFO_FLAG_WRITE;
        let mut buf = vec![0u8; 256];
        let mut w = ChainWriter::new(&mut buf, fixed);
        let (mut flags, fd) = match r {
            Region::Empty => (0, None),
            Region::Config => (rw, None),
            Region::Bar0 => {
                let areas = self.bar0_sparse_areas();
                if areas.is_empty() {
                    (rw, None)
                } else {
                    let mut body = Vec::new();
                    body.put_u32(areas.len() as u32);
                    body.put_u32(0);
                    for (off, len) in areas {
                        body.put_u64(off);
                        body.put_u64(len);
                    }
                    w.push(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, &body)
                        .ok_or(libc::EINVAL)?;
                    (rw | vfio::REGION_INFO_FLAG_MMAP, Some(self.bar0.as_fd()))
                }
            }
            Region::Mem => {
                w.push(
                    VFIO_REGION_INFO_CAP_TYPE,
                    1,
                    &caps::region_type_body(VFIO_REGION_TYPE_CXL, VFIO_REGION_SUBTYPE_CXL_MEM),
                )
                .ok_or(libc::EINVAL)?;
                (rw | vfio::REGION_INFO_FLAG_MMAP, Some(self.mem.as_fd()))
            }
            Region::CompRegs => {
                w.push(
                    VFIO_REGION_INFO_CAP_TYPE,
                    1,
                    &caps::region_type_body(
                        VFIO_REGION_TYPE_CXL,
                        VFIO_REGION_SUBTYPE_CXL_COMP_REGS,
                    ),
                )
                .ok_or(libc::EINVAL)?;
                let offset = match self.broken {
                    Some(Broken::BadGeometry) => BAR0_SIZE,
                    _ => self.decoder_block().0,
                };
                w.push(
                    VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
                    1,
                    &caps::cxl_comp_regs_body(COMPONENT_BAR.into(), offset, size),
                )
                .ok_or(libc::EINVAL)?;
                (rw, None)
            }
        };
        let needed = w.needed();
        let first = w.first(fixed);
        let full = argsz >= needed;
        // Unlike the kernel, which sets CAPS with cap_offset 0 when the
        // chain does not fit, CAPS is only set with the chain present:
        // QEMU's vfio-user client refuses CAPS with a cap_offset outside
        // the buffer (hw/vfio-user/device.c) instead of retrying.
        if full && first.is_some() {
            flags |= vfio::REGION_INFO_FLAG_CAPS;
        }
        let mut out = Vec::with_capacity(needed);
        out.put_u32(needed as u32);
        out.put_u32(flags);
        out.put_u32(index);
        out.put_u32(match (full, first) {
            (true, Some(f)) => f as u32,
            _ => 0,
        });
        out.put_u64(size);
        out.put_u64(0); // mmap offset in the region's own fd
        if full {
            out.extend_from_slice(&buf[fixed..needed]);
        }
        Ok(RegionInfoReply { payload: out, fd })
    }

    /// `(flags, count)` of an interrupt index: no INTx (pin 0), no MSI or
    /// MSI-X; the error and request notifiers exist so QEMU can register
    /// them, and are never signalled.
    pub fn irq_info(&self, index: u32) -> Option<(u32, u32)> {
        let eventfd = vfio::IRQ_INFO_EVENTFD;
        Some(match index {
            vfio::PCI_INTX_IRQ_INDEX => (
                eventfd | vfio::IRQ_INFO_MASKABLE | vfio::IRQ_INFO_AUTOMASKED,
                0,
            ),
            vfio::PCI_MSI_IRQ_INDEX | vfio::PCI_MSIX_IRQ_INDEX => {
                (eventfd | vfio::IRQ_INFO_NORESIZE, 0)
            }
            vfio::PCI_ERR_IRQ_INDEX | vfio::PCI_REQ_IRQ_INDEX => (eventfd, 1),
            _ => return None,
        })
    }

    /// Clips `[offset, offset + count)` to a region of `size` bytes, with
    /// the errors of the contract: EINVAL at or past the end and on
    /// overflow; a range crossing the end is cut short.
    fn clip(offset: u64, count: u32, size: u64) -> IoResult<usize> {
        let end = offset.checked_add(count.into()).ok_or(libc::EINVAL)?;
        if offset >= size {
            return einval();
        }
        Ok((end.min(size) - offset) as usize)
    }

    fn check_memory_enabled(&self) -> IoResult<()> {
        if self.config.memory_enabled() {
            Ok(())
        } else {
            Err(libc::EIO)
        }
    }

    /// `VFIO_USER_REGION_READ`.
    pub fn region_read(&self, index: u32, offset: u64, count: u32) -> IoResult<Vec<u8>> {
        let r = self.region(index).ok_or(libc::EINVAL)?;
        if r == Region::CompRegs {
            return self.comp_regs_read(offset, count);
        }
        let len = Self::clip(offset, count, self.region_size(r))?;
        let mut buf = vec![0u8; len];
        match r {
            Region::Config => self.config.read(offset as usize, &mut buf),
            Region::Bar0 => {
                self.check_memory_enabled()?;
                self.bar0_read(offset, &mut buf)?;
            }
            // CXL.mem is decoded by the HDM decoders, not the BARs: Memory
            // Space does not gate it (docs/uapi.md, as the host driver).
            Region::Mem => {
                self.mem.read_exact_at(&mut buf, offset).map_err(errno)?;
            }
            Region::CompRegs | Region::Empty => return einval(),
        }
        Ok(buf)
    }

    /// `VFIO_USER_REGION_WRITE`: returns the count written and what the
    /// DVSEC model reported (for the log).
    pub fn region_write(
        &mut self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> IoResult<(u32, Vec<DvsecEvent>)> {
        let r = self.region(index).ok_or(libc::EINVAL)?;
        let count = u32::try_from(data.len()).map_err(|_| libc::EINVAL)?;
        if r == Region::CompRegs {
            return self.comp_regs_write(offset, count).map(|n| (n, Vec::new()));
        }
        let len = Self::clip(offset, count, self.region_size(r))?;
        let data = &data[..len];
        let mut events = Vec::new();
        match r {
            Region::Config => {
                events = self.config.write(offset as usize, data);
                for e in &events {
                    if let DvsecEvent::CxlResetRequested { clear_memory } = *e {
                        self.cxl_reset(clear_memory);
                    }
                }
            }
            Region::Bar0 => {
                self.check_memory_enabled()?;
                self.bar0_write(offset, data)?;
            }
            Region::Mem => {
                self.mem.write_all_at(data, offset).map_err(errno)?;
            }
            Region::CompRegs | Region::Empty => return einval(),
        }
        Ok((len as u32, events))
    }

    /// The decoder view: aligned dwords only.
    fn comp_regs_check(&self, offset: u64, count: u32) -> IoResult<u32> {
        let size = u64::from(self.component.hdm().len());
        if count != 4 || offset % 4 != 0 || offset >= size {
            return einval();
        }
        Ok(offset as u32)
    }

    /// Reads the decoder view: the hardware's registers as committed and
    /// locked, with every decoder base reading 0.
    pub fn comp_regs_view(&self, offset: u32) -> u32 {
        let hdm = self.component.hdm();
        let count = hdm.config().decoder_count;
        let is_base = (0..count).any(|n| offset == hdm::base_low(n) || offset == hdm::base_high(n));
        if is_base {
            0
        } else {
            hdm.read(offset)
        }
    }

    fn comp_regs_read(&self, offset: u64, count: u32) -> IoResult<Vec<u8>> {
        let off = self.comp_regs_check(offset, count)?;
        Ok(self.comp_regs_view(off).to_ne_bytes().to_vec())
    }

    /// Every write is absorbed: it succeeds and changes nothing.
    fn comp_regs_write(&self, offset: u64, count: u32) -> IoResult<u32> {
        self.comp_regs_check(offset, count)?;
        Ok(4)
    }

    /// BAR 0 read: the decoder block reads all-ones; the rest of its pages
    /// reach the register model; the mmap-able rest comes from the memfd.
    fn bar0_read(&self, offset: u64, buf: &mut [u8]) -> IoResult<()> {
        self.bar0.read_exact_at(buf, offset).map_err(errno)?;
        let (blk_lo, blk_hi) = self.decoder_block();
        let (pg_lo, pg_hi) = self.decoder_pages();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = offset + i as u64;
            if (blk_lo..blk_hi).contains(&a) {
                *b = 0xff;
            } else if (pg_lo..pg_hi).contains(&a) {
                let rel = a - COMPONENT_BAR_OFFSET;
                let dword = self.component.read(rel & !3, 4);
                *b = (dword >> (8 * (rel & 3))) as u8;
            }
        }
        Ok(())
    }

    /// BAR 0 write: dropped inside the decoder block; aligned 4- and 8-byte
    /// writes elsewhere in the decoder pages reach the register model
    /// (other sizes there are dropped, as the spec allows only those);
    /// the mmap-able rest goes to the memfd, the same bytes a mapping sees.
    fn bar0_write(&mut self, offset: u64, data: &[u8]) -> IoResult<()> {
        let (blk_lo, blk_hi) = self.decoder_block();
        let (pg_lo, pg_hi) = self.decoder_pages();
        let end = offset + data.len() as u64;
        // The parts before and after the decoder pages.
        if offset < pg_lo {
            let n = (pg_lo.min(end) - offset) as usize;
            self.bar0.write_all_at(&data[..n], offset).map_err(errno)?;
        }
        if end > pg_hi {
            let start = offset.max(pg_hi);
            let skip = (start - offset) as usize;
            self.bar0
                .write_all_at(&data[skip..], start)
                .map_err(errno)?;
        }
        let inside_pages = offset >= pg_lo && end <= pg_hi;
        let touches_block = offset < blk_hi && end > blk_lo;
        let len = data.len();
        if inside_pages && !touches_block && (len == 4 || len == 8) && offset % len as u64 == 0 {
            let mut v = [0u8; 8];
            v[..len].copy_from_slice(data);
            let value = u64::from_le_bytes(v);
            self.component
                .write(offset - COMPONENT_BAR_OFFSET, len as u32, value);
        }
        Ok(())
    }
}

fn errno(e: io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// An anonymous shared-memory file.
fn memfd(name: &str) -> io::Result<File> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> CxlDevice {
        let f = tempfile::tempfile().unwrap();
        f.set_len(256 << 20).unwrap();
        CxlDevice::new(f, 256 << 20).unwrap()
    }

    fn broken(b: Broken) -> CxlDevice {
        let mut d = dev();
        d.set_broken(Some(b));
        d
    }

    /// flags, and the device-info CXL capability's flags if there is one.
    fn info_cap(d: &CxlDevice) -> (u32, Option<u32>) {
        let info = d.device_info(256).unwrap();
        let u32_at = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap());
        let cap = caps::find(
            &info,
            vfio::DEVICE_INFO_LEN,
            u32_at(16),
            VFIO_DEVICE_INFO_CAP_CXL,
        )
        .unwrap()
        .map(|c| caps::device_cxl(&info, c).unwrap().flags);
        (u32_at(4), cap)
    }

    fn region_size(d: &CxlDevice, index: u32) -> u64 {
        let r = d.region_info(index, 256).unwrap().payload;
        u64::from_ne_bytes(r[16..24].try_into().unwrap())
    }

    #[test]
    fn a_well_formed_device_is_committed_with_every_region() {
        let d = dev();
        let (flags, cap) = info_cap(&d);
        assert_ne!(flags & vfio::DEVICE_FLAGS_CAPS, 0);
        assert_eq!(cap, Some(VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED));
        assert_eq!(region_size(&d, CXL_MEM_INDEX), 256 << 20);
    }

    #[test]
    fn broken_devices_break_the_contract_in_one_way_each() {
        let (_, cap) = info_cap(&broken(Broken::NotCommitted));
        assert_eq!(cap, Some(0), "not-committed: the flag is clear");

        let (flags, cap) = info_cap(&broken(Broken::NoCxlCap));
        assert_eq!(
            (flags & vfio::DEVICE_FLAGS_CAPS, cap),
            (0, None),
            "no-cxl-cap"
        );
        assert_ne!(flags & VFIO_DEVICE_FLAGS_CXL, 0, "still flagged CXL");

        let d = broken(Broken::NoCxlMem);
        let r = d.region_info(CXL_MEM_INDEX, 256).unwrap();
        assert!(
            r.fd.is_none() && region_size(&d, CXL_MEM_INDEX) == 0,
            "no-cxl-mem"
        );

        let d = broken(Broken::MemUnaligned);
        assert_eq!(region_size(&d, CXL_MEM_INDEX), (256 << 20) - 4096);

        let info = broken(Broken::CapLoop).device_info(256).unwrap();
        let first = u32::from_ne_bytes(info[16..20].try_into().unwrap()) as usize;
        let next = u32::from_ne_bytes(info[first + 4..first + 8].try_into().unwrap());
        assert_eq!(
            next as usize, first,
            "cap-loop: the first capability names itself"
        );

        let d = broken(Broken::BadGeometry);
        let r = d.region_info(CXL_COMP_REGS_INDEX, 256).unwrap().payload;
        let cap = caps::find(
            &r,
            vfio::REGION_INFO_LEN,
            u32::from_ne_bytes(r[12..16].try_into().unwrap()),
            VFIO_REGION_INFO_CAP_CXL_COMP_REGS,
        )
        .unwrap()
        .unwrap();
        let geo = caps::cxl_comp_regs(&r, cap).unwrap();
        assert!(geo.offset + geo.size > BAR0_SIZE, "bad-geometry: {geo:?}");
    }

    /// `--info-pad`: the reply to the usual 256 bytes names a larger
    /// argsz and carries no chain; asked again with it, the CXL
    /// capability is found past the padding.
    #[test]
    fn a_padded_info_reply_needs_a_second_ask() {
        let mut d = dev();
        d.set_info_pad(40);
        let short = d.device_info(256).unwrap();
        let needed = u32::from_ne_bytes(short[0..4].try_into().unwrap());
        assert!(needed > 256, "argsz {needed}");
        assert_eq!(u32::from_ne_bytes(short[16..20].try_into().unwrap()), 0);
        let full = d.device_info(needed).unwrap();
        assert_eq!(full.len(), needed as usize);
        let first = u32::from_ne_bytes(full[16..20].try_into().unwrap());
        let cap = caps::find(
            &full,
            vfio::DEVICE_INFO_LEN,
            first,
            VFIO_DEVICE_INFO_CAP_CXL,
        )
        .unwrap()
        .expect("the CXL capability after the padding");
        assert!(cap.offset > 256, "{cap:?}");
    }

    #[test]
    fn bad_sizes_are_refused() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(256 << 20).unwrap();
        assert!(CxlDevice::new(f.try_clone().unwrap(), 512 << 20).is_err());
        assert!(CxlDevice::new(f.try_clone().unwrap(), 4096).is_err());
        assert!(CxlDevice::new(f, 0).is_err());
    }

    #[test]
    fn more_decoders_make_a_larger_block_with_decoder_0_committed() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(256 << 20).unwrap();
        let d = CxlDevice::with_decoders(f.try_clone().unwrap(), 256 << 20, 4).unwrap();
        let (lo, hi) = d.decoder_block();
        assert_eq!(hi - lo, u64::from(hdm::block_len(4)));
        assert!(d.component.hdm().decoder(0).unwrap().committed());
        assert!(!d.component.hdm().decoder(1).unwrap().committed());
        assert!(CxlDevice::with_decoders(f, 256 << 20, 3).is_err());
    }

    #[test]
    fn the_host_address_never_shows_in_the_view() {
        let d = dev();
        assert_eq!(d.comp_regs_view(hdm::base_low(0)), 0);
        assert_eq!(d.comp_regs_view(hdm::base_high(0)), 0);
        assert_ne!(d.component.hdm().decoder(0).unwrap().base, 0);
    }

    #[test]
    fn sparse_areas_skip_the_decoder_page() {
        let d = dev();
        if d.page_size == 4096 {
            assert_eq!(d.decoder_pages(), (0x1000, 0x2000));
            assert_eq!(d.bar0_sparse_areas(), vec![(0, 0x1000), (0x2000, 0xe000)]);
        }
    }
}
