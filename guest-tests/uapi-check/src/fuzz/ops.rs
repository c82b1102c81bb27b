//! The operations, each with its oracle. An operation draws all its
//! arguments from the thread's generator before it runs, so that a thread's
//! sequence reproduces from the seed whatever the kernel answers.
//!
//! Every syscall must succeed or fail with an errno the uAPI allows for
//! those arguments (docs/uapi.md); failures of accesses (EIO, SIGBUS,
//! EFAULT into a device mapping) are allowed only while another thread's
//! reset, power change, reopen or Memory Space write may have made the
//! device unusable ([`Target::disrupted_since`]).

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_IOEVENTFD_16, VFIO_DEVICE_IOEVENTFD_32, VFIO_DEVICE_IOEVENTFD_64,
    VFIO_DEVICE_IOEVENTFD_8, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX, VFIO_REGION_INFO_FLAG_CAPS,
};

use vfio_cxl_uapi::VFIO_DEVICE_FLAGS_CXL;

use super::rng::Rng;
use super::sigbus;
use super::stats::{errno_name, Stats};
use super::target::Target;
use crate::checks::Ctx;
use crate::vfio::{region_offset, Mapping, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO};

const PAGE: u64 = 4096;
const POISON: u8 = 0xa5;
const DEVICE_INFO_LEN: usize = 24;
const DEVICE_INFO_MINSZ: u32 = 16;
const REGION_INFO_LEN: usize = 32;
/// Config space of a PCIe function.
const CFG_SIZE: u64 = 4096;
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;
const PMCSR_STATE: u16 = 0x3;
const D3HOT: u16 = 0x3;
const PCI_EXP_DEVCTL_BCR_FLR: u16 = 1 << 15;
const PCI_EXP_DEVCAP_FLR: u32 = 1 << 28;
/// Beyond any answer of the info ioctls (checked at start).
const INFO_BUF_MAX: usize = 4096;

/// The kinds of operation and their weights in a thread's mix.
pub const KINDS: &[(&str, u32)] = &[
    ("get_info", 8),
    ("get_region_info", 8),
    ("region_rw", 34),
    ("mmap_touch", 14),
    ("config_write", 12),
    ("power_d3hot", 3),
    ("reset", 4),
    ("ioeventfd", 8),
    ("reopen", 1),
];

/// One fuzzing thread's view: the shared target, its counters, its slot
/// (for the SIGBUS ranges) and its generator.
#[derive(Debug)]
pub struct Worker<'a> {
    pub target: &'a Target,
    pub stats: &'a Stats,
    pub slot: usize,
    pub rng: Rng,
    /// What runs now, for failure messages and the hang watchdog.
    pub doing: &'a Mutex<String>,
    /// The weight of each of [`KINDS`] in this run.
    pub weights: Vec<u32>,
}

/// The weights of [`KINDS`], restricted to `only` when given (unknown
/// names are an error).
pub fn weights(only: Option<&[String]>) -> Result<Vec<u32>, String> {
    let Some(only) = only else {
        return Ok(KINDS.iter().map(|(_, w)| *w).collect());
    };
    if let Some(bad) = only.iter().find(|k| !KINDS.iter().any(|(n, _)| n == k)) {
        let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown operation {bad:?} (known: {})",
            names.join(", ")
        ));
    }
    Ok(KINDS
        .iter()
        .map(|(n, w)| if only.iter().any(|k| k == n) { *w } else { 0 })
        .collect())
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn result_name<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => errno_name(errno(e)),
    }
}

/// What is wrong with a successful `VFIO_DEVICE_GET_INFO` answer `buf`
/// (poisoned before the call) to `argsz`, when a complete answer needs
/// `needed` bytes: the argsz out, the CXL flag, the pad (issue 10, defect
/// 3: it must not carry the kernel's stack) and bytes written past the
/// answer.
pub fn device_info_problems(buf: &[u8], argsz: u32, needed: u32) -> Vec<String> {
    let mut p = Vec::new();
    let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
    let written = (argsz as usize).min(DEVICE_INFO_LEN);
    let fits = argsz >= needed;
    let want_argsz = if fits { argsz } else { needed };
    if u32_at(0) != want_argsz {
        p.push(format!(
            "argsz out {:#x}, expected {want_argsz:#x}",
            u32_at(0)
        ));
    }
    if u32_at(4) & VFIO_DEVICE_FLAGS_CXL == 0 {
        p.push(format!("flags {:#x} lack CXL", u32_at(4)));
    }
    if written > 20 && buf[20..written].iter().any(|&b| b != 0) {
        p.push(format!(
            "pad bytes 20..{written} are {:02x?}, not zero (kernel stack leak)",
            &buf[20..written]
        ));
    }
    let caps_end = if fits {
        needed as usize
    } else {
        DEVICE_INFO_LEN
    };
    for range in [written..DEVICE_INFO_LEN, caps_end..buf.len()] {
        if let Some(at) = unpoisoned(buf, range) {
            p.push(format!(
                "byte {at:#x} written past what the kernel reported (argsz out {:#x})",
                u32_at(0)
            ));
        }
    }
    p
}

/// The first byte of `buf` in `range` that is not the poison byte: the
/// kernel wrote where it says it does not.
fn unpoisoned(buf: &[u8], range: std::ops::Range<usize>) -> Option<usize> {
    buf.get(range.clone())?
        .iter()
        .position(|&b| b != POISON)
        .map(|i| range.start + i)
}

/// A buffer for a read or write: plain memory or a fresh mapping of the
/// device's own memory region or component BAR (what makes a user copy
/// fault into the driver's fault handler).
enum Buf {
    Heap(Vec<u8>),
    Map(Mapping, usize),
}

impl Buf {
    fn bytes(&mut self) -> &mut [u8] {
        match self {
            Buf::Heap(v) => v,
            // SAFETY: the mapping is live for self's lifetime, at least
            // `len` bytes long and readable and writable; the kernel may
            // write it concurrently only through this very syscall.
            Buf::Map(m, len) => unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), *len) },
        }
    }

    fn is_map(&self) -> bool {
        matches!(self, Buf::Map(..))
    }
}

impl Worker<'_> {
    fn fail(&self, kind: &'static str, what: String) {
        let doing = self.doing.lock().unwrap().clone();
        self.stats
            .fail(kind, &format!("thread {} {doing}: {what}", self.slot));
    }

    /// Appends to what the thread is doing.
    fn note(&self, more: &str) {
        self.doing.lock().unwrap().push_str(more);
    }

    /// Runs one operation of the kind drawn from the generator.
    pub fn step(&mut self, op_no: u64) {
        let i = self.rng.weighted(&self.weights);
        let kind = KINDS[i].0;
        *self.doing.lock().unwrap() = format!("op {op_no} {kind}");
        // Reopen excludes every other operation; the others share the fd.
        if kind == "reopen" {
            self.reopen();
            return;
        }
        let guard = self.target.ctx.read().unwrap();
        let Some(ctx) = guard.as_ref() else {
            return;
        };
        match kind {
            "get_info" => self.get_info(ctx),
            "get_region_info" => self.get_region_info(ctx),
            "region_rw" => self.region_rw(ctx),
            "mmap_touch" => self.mmap_touch(ctx),
            "config_write" => self.config_write(ctx),
            "power_d3hot" => self.power_d3hot(ctx),
            "reset" => self.reset(ctx),
            "ioeventfd" => self.ioeventfd(ctx),
            _ => unreachable!("{kind}"),
        }
    }

    /// argsz for an info query whose complete answer needs `needed`:
    /// tiny, just short, exact, larger, huge.
    fn argsz(&mut self, minsz: u32, fixed: u32, needed: u32) -> u32 {
        match self.rng.below(8) {
            0 => self.rng.below(u64::from(minsz)) as u32,
            1 => minsz + self.rng.below(u64::from(fixed - minsz + 1)) as u32,
            2 => needed
                .saturating_sub(1 + self.rng.below(8) as u32)
                .max(minsz),
            3 | 4 => needed,
            5 => needed + self.rng.below(256) as u32,
            6 => *self
                .rng
                .pick(&[u32::MAX, 1 << 31, 0x1_0000, INFO_BUF_MAX as u32]),
            _ => fixed,
        }
    }

    /// Issues an info ioctl with `argsz` over a poisoned buffer; returns
    /// the result and the buffer.
    fn info_ioctl(
        &self,
        ctx: &Ctx,
        request: u64,
        argsz: u32,
        index: Option<u32>,
    ) -> (io::Result<i32>, Vec<u8>) {
        let len = (argsz as usize).clamp(REGION_INFO_LEN, INFO_BUF_MAX);
        let mut buf = vec![POISON; len];
        buf[0..4].copy_from_slice(&argsz.to_ne_bytes());
        if let Some(i) = index {
            buf[8..12].copy_from_slice(&i.to_ne_bytes());
        }
        // SAFETY: the buffer is INFO_BUF_MAX bytes whenever argsz claims
        // more, and every complete answer is smaller (checked at start).
        let r = unsafe { ctx.dev.info_ioctl_unchecked(request, &mut buf) };
        (r, buf)
    }

    fn get_info(&mut self, ctx: &Ctx) {
        let needed = self.target.layout.info_needed as u32;
        let argsz = self.argsz(DEVICE_INFO_MINSZ, DEVICE_INFO_LEN as u32, needed);
        self.note(&format!(" argsz={argsz:#x}"));
        let (r, buf) = self.info_ioctl(ctx, VFIO_DEVICE_GET_INFO, argsz, None);
        self.stats.count("get_info", &result_name(&r));
        if argsz < DEVICE_INFO_MINSZ {
            match r {
                Err(e) if errno(&e) == libc::EINVAL => {}
                r => self.fail("get_info", format!("expected EINVAL, got {r:?}")),
            }
            if let Some(at) = unpoisoned(&buf, 4..buf.len()) {
                self.fail("get_info", format!("failed call wrote byte {at:#x}"));
            }
            return;
        }
        if let Err(e) = r {
            self.fail("get_info", format!("unexpected {e}"));
            return;
        }
        for problem in device_info_problems(&buf, argsz, needed) {
            self.fail("get_info", problem);
        }
    }

    fn get_region_info(&mut self, ctx: &Ctx) {
        let layout = &self.target.layout;
        let n = layout.num_regions;
        let index = match self.rng.below(10) {
            0 => n + self.rng.below(4) as u32,
            1 => *self.rng.pick(&[u32::MAX, 1 << 31, 0x1e98]),
            _ => self.rng.below(u64::from(n)) as u32,
        };
        let known = layout.region(index).cloned();
        let needed = known
            .as_ref()
            .map_or(REGION_INFO_LEN as u32, |r| r.raw.len() as u32);
        let fixed = REGION_INFO_LEN as u32;
        let argsz = self.argsz(fixed, fixed, needed);
        self.note(&format!(" index={index} argsz={argsz:#x}"));
        let (r, buf) = self.info_ioctl(ctx, VFIO_DEVICE_GET_REGION_INFO, argsz, Some(index));
        self.stats.count("get_region_info", &result_name(&r));
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap());
        let Some(known) = known.filter(|_| argsz >= fixed && index < n) else {
            match r {
                Err(e) if errno(&e) == libc::EINVAL => {}
                r => self.fail("get_region_info", format!("expected EINVAL, got {r:?}")),
            }
            for range in [4..8, 12..buf.len()] {
                if let Some(at) = unpoisoned(&buf, range) {
                    self.fail("get_region_info", format!("failed call wrote byte {at:#x}"));
                }
            }
            return;
        };
        if let Err(e) = r {
            self.fail("get_region_info", format!("unexpected {e}"));
            return;
        }
        let fits = argsz >= needed;
        let want_argsz = if fits { argsz } else { needed };
        let want_cap = if fits && needed > fixed { fixed } else { 0 };
        // Without VFIO_REGION_INFO_FLAG_CAPS, cap_offset is the caller's
        // own input (vfio core copies minsz in and out): not checked.
        let cap_offset = if known.flags & VFIO_REGION_INFO_FLAG_CAPS != 0 {
            u32_at(12)
        } else {
            want_cap
        };
        let got = (
            u32_at(0),
            u32_at(4),
            u32_at(8),
            cap_offset,
            u64_at(16),
            u64_at(24),
        );
        let want = (
            want_argsz,
            known.flags,
            index,
            want_cap,
            known.size,
            known.offset,
        );
        if got != want {
            self.fail(
                "get_region_info",
                format!(
                    "(argsz, flags, index, cap_offset, size, offset) {got:x?}, expected {want:x?}"
                ),
            );
        }
        let caps_end = if fits {
            needed as usize
        } else {
            REGION_INFO_LEN
        };
        if let Some(at) = unpoisoned(&buf, caps_end..buf.len()) {
            self.fail(
                "get_region_info",
                format!("byte {at:#x} written past what the kernel reported"),
            );
        }
    }

    /// A buffer of `count` bytes: heap, or a fresh (not yet faulted)
    /// mapping of the memory region or a component-BAR area.
    fn buffer(&mut self, ctx: &Ctx, count: usize) -> Option<Buf> {
        let layout = &self.target.layout;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        match self.rng.below(10) {
            0..=5 => {
                let mut v = vec![0u8; count];
                let fill = self.rng.next_u64();
                for (i, b) in v.iter_mut().enumerate() {
                    *b = (fill >> (8 * (i % 8))) as u8;
                }
                Some(Buf::Heap(v))
            }
            6..=8 => {
                let len = (count as u64).next_multiple_of(PAGE).max(PAGE);
                let pages = layout.mem.size.saturating_sub(len) / PAGE;
                let at = self.rng.below(pages + 1) * PAGE;
                self.note(&format!(" buf=mem-map@{at:#x}"));
                if len > layout.mem.size {
                    return None;
                }
                match ctx
                    .dev
                    .mmap(len as usize, layout.mem.offset + at, rw, libc::MAP_SHARED)
                {
                    Ok(m) => Some(Buf::Map(m, count)),
                    Err(e) => {
                        self.fail("region_rw", format!("mmap of the memory for a buffer: {e}"));
                        None
                    }
                }
            }
            _ => {
                let &(off, size) = layout.comp_areas.iter().find(|a| a.1 >= PAGE)?;
                let len = (count as u64).next_multiple_of(PAGE).max(PAGE);
                if len > size {
                    return None;
                }
                let at = off + self.rng.below((size - len) / PAGE + 1) * PAGE;
                self.note(&format!(" buf=bar-map@{at:#x}"));
                match ctx.dev.mmap(
                    len as usize,
                    layout.comp_bar.offset + at,
                    rw,
                    libc::MAP_SHARED,
                ) {
                    Ok(m) => Some(Buf::Map(m, count)),
                    Err(e) => {
                        self.fail("region_rw", format!("mmap of the BAR for a buffer: {e}"));
                        None
                    }
                }
            }
        }
    }

    fn region_rw(&mut self, ctx: &Ctx) {
        let layout = self.target.layout.clone();
        let n = layout.num_regions;
        let config = VFIO_PCI_CONFIG_REGION_INDEX;
        let index = match self.rng.below(100) {
            0..=24 => config,
            25..=49 => layout.mem.index,
            50..=64 => layout.comp.index,
            65..=79 => layout.geometry.bar,
            80..=87 => self.rng.below(6) as u32,
            88..=91 => *self
                .rng
                .pick(&[VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX]),
            _ => n + self.rng.below(3) as u32,
        };
        let size = layout.size(index);
        let count: usize = if index == layout.comp.index && self.rng.chance(70) {
            4
        } else {
            match self.rng.below(10) {
                0 => *self.rng.pick(&[1, 2, 3, 4, 8]),
                1..=3 => 1 + self.rng.below(64) as usize,
                4..=6 => 1 + self.rng.below(8192) as usize,
                7 => 1 + self.rng.below(1 << 16) as usize,
                8 => *self.rng.pick(&[4096, 1 << 20]),
                _ => 4,
            }
        };
        let pos = match self.rng.below(10) {
            _ if index == config && self.rng.chance(50) => {
                layout.dvsec + self.rng.below(layout.dvsec_len.max(1))
            }
            0 => size.saturating_sub(1 + self.rng.below(16)),
            1 => size + self.rng.below(PAGE),
            2 => (1 << 40) - 1 - self.rng.below(8),
            _ if index == layout.comp.index => self.rng.below(size.max(1) + 8) & !3,
            _ => self.rng.below(size.max(1)),
        };
        let write = index != config && self.rng.chance(40);
        let vectored = self.rng.chance(30);
        self.note(&format!(
            " index={index} pos={pos:#x} count={count} {}{}",
            if vectored { "v" } else { "" },
            if write { "write" } else { "read" }
        ));
        let Some(mut buf) = self.buffer(ctx, count) else {
            return;
        };
        let is_map = buf.is_map();
        let before = self.target.epoch();
        let off = region_offset(index) + pos;
        let bytes = buf.bytes();
        let r = if vectored {
            let (a, b) = bytes.split_at_mut(count / 2);
            if write {
                ctx.dev.pwritev(&[a, b], off)
            } else {
                ctx.dev.preadv(&mut [a, b], off)
            }
        } else if write {
            ctx.dev.pwrite(bytes, off)
        } else {
            ctx.dev.pread(bytes, off)
        };
        self.stats.count("region_rw", &result_name(&r));
        let disrupted = self.target.disrupted_since(before);
        let e = match &r {
            Ok(0) => {
                self.fail("region_rw", "returned 0 bytes".into());
                return;
            }
            Ok(got) if *got > count => {
                self.fail("region_rw", format!("returned {got} > {count} bytes"));
                return;
            }
            Ok(got) => {
                // A device mapping is no place to read back from: MMIO, or
                // memory other threads write.
                if !is_map {
                    self.check_read(index, pos, &bytes[..*got], write, disrupted);
                }
                return;
            }
            Err(e) => errno(e),
        };
        let beyond = pos >= size || pos.checked_add(count as u64).is_none();
        let allowed = match index {
            _ if e == libc::EFAULT && is_map && disrupted => true,
            i if i >= n => e == libc::EINVAL,
            i if i == config => (e == libc::EFAULT || e == libc::EINVAL) && pos >= CFG_SIZE,
            // preadv/pwritev reach the driver one segment at a time.
            i if i == layout.comp.index => {
                let first = if vectored && count / 2 > 0 {
                    count / 2
                } else {
                    count
                };
                e == libc::EINVAL && (beyond || first != 4 || pos % 4 != 0)
            }
            i if i == layout.mem.index => {
                (e == libc::EINVAL && beyond) || (e == libc::EIO && disrupted)
            }
            VFIO_PCI_ROM_REGION_INDEX => [libc::EINVAL, libc::EIO, libc::ENOMEM].contains(&e),
            VFIO_PCI_VGA_REGION_INDEX => e == libc::EINVAL,
            i if layout.is_bar(i) => {
                (e == libc::EINVAL && (beyond || size == 0)) || (e == libc::EIO && disrupted)
            }
            _ => false,
        };
        if !allowed {
            self.fail(
                "region_rw",
                format!(
                    "{} (region size {size:#x}, device disrupted meanwhile: {disrupted})",
                    errno_name(e)
                ),
            );
        }
    }

    /// What a successful read must have returned.
    fn check_read(&self, index: u32, pos: u64, got: &[u8], write: bool, disrupted: bool) {
        let layout = &self.target.layout;
        if write || disrupted {
            return;
        }
        if index == layout.comp.index && got.len() == 4 {
            let v = u32::from_ne_bytes(got.try_into().unwrap());
            let want = layout.comp_regs.get((pos / 4) as usize).copied();
            if Some(v) != want {
                self.fail(
                    "region_rw",
                    format!(
                        "comp-regs {pos:#x} reads {v:#x}, was {want:x?} (writes must be absorbed)"
                    ),
                );
            }
        }
        let g = &layout.geometry;
        if index == g.bar
            && pos >= g.offset
            && pos + got.len() as u64 <= g.offset + g.size
            && got.iter().any(|&b| b != 0xff)
        {
            self.fail(
                "region_rw",
                format!(
                    "component BAR read inside the decoder block returned {:02x?}, not all-ones",
                    &got[..got.len().min(16)]
                ),
            );
        }
    }

    fn mmap_touch(&mut self, ctx: &Ctx) {
        let layout = self.target.layout.clone();
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let on_bar = self.rng.chance(30);
        let bad = self.rng.below(10);
        let touches = 1 + self.rng.below(8);
        let seeds: Vec<u64> = (0..touches * 2).map(|_| self.rng.next_u64()).collect();
        // (file offset, length, flags, must fail)
        let (offset, len, flags, must_fail) = if on_bar {
            let (lo, hi) = crate::checks::decoder_pages(&layout.geometry);
            let areas: Vec<_> = layout.comp_areas.iter().filter(|a| a.1 >= PAGE).collect();
            if bad < 2 || areas.is_empty() {
                // Over the decoder pages: refused (docs/uapi.md).
                (lo, (hi - lo) as usize, libc::MAP_SHARED, true)
            } else {
                let &&(off, size) = self.rng.pick(&areas);
                let pages = 1 + self.rng.below(size / PAGE);
                let at = off + self.rng.below(size / PAGE - pages + 1) * PAGE;
                let flags = if bad == 2 {
                    libc::MAP_PRIVATE
                } else {
                    libc::MAP_SHARED
                };
                (at, (pages * PAGE) as usize, flags, bad == 2)
            }
        } else {
            let size = layout.mem.size;
            let pages = if self.rng.chance(20) {
                512
            } else {
                1 + self.rng.below(16)
            };
            let at = self.rng.below(size / PAGE - pages + 1) * PAGE;
            match bad {
                0 => (at, (pages * PAGE) as usize, libc::MAP_PRIVATE, true),
                1 => (size - PAGE, (2 * PAGE) as usize, libc::MAP_SHARED, true),
                _ => (at, (pages * PAGE) as usize, libc::MAP_SHARED, false),
            }
        };
        let base = if on_bar {
            layout.comp_bar.offset
        } else {
            layout.mem.offset
        };
        self.note(&format!(
            " {} offset={offset:#x} len={len:#x} {}",
            if on_bar { "bar" } else { "mem" },
            if flags == libc::MAP_PRIVATE {
                "private"
            } else {
                "shared"
            }
        ));
        let map = if len >= 2 << 20 {
            ctx.dev.mmap_aligned(len, base + offset, rw, flags, 2 << 20)
        } else {
            ctx.dev.mmap(len, base + offset, rw, flags)
        };
        self.stats.count("mmap_touch", &result_name(&map));
        let map = match (map, must_fail) {
            (Err(e), true) if errno(&e) == libc::EINVAL => return,
            (Err(e), _) => {
                self.fail("mmap_touch", format!("mmap: {e}"));
                return;
            }
            (Ok(_), true) => {
                self.fail("mmap_touch", "mmap succeeded, expected EINVAL".into());
                return;
            }
            (Ok(m), false) => m,
        };
        for pair in seeds.chunks(2) {
            let before = self.target.epoch();
            let write = (!on_bar && pair[1] & 1 == 0).then_some(pair[1]);
            let (_, hit) = sigbus::touch(self.slot, &map, pair[0] as usize, write);
            if hit {
                self.stats.count("mmap_touch", "SIGBUS");
                if !self.target.disrupted_since(before) {
                    self.fail(
                        "mmap_touch",
                        format!(
                            "SIGBUS at {:#x} of a live device",
                            (pair[0] as usize % len) & !7
                        ),
                    );
                }
            }
        }
    }

    fn config_write(&mut self, ctx: &Ctx) {
        let layout = &self.target.layout;
        let value = self.rng.next_u64();
        if self.rng.chance(35) {
            // Command register: Memory Space mostly on.
            let on = self.rng.chance(80);
            let mut cmd = value as u16 & 0x0547;
            cmd = if on {
                cmd | PCI_COMMAND_MEMORY
            } else {
                cmd & !PCI_COMMAND_MEMORY
            };
            self.note(&format!(" command={cmd:#06x}"));
            let _cmd = self.target.cmd.lock().unwrap();
            self.target.memory_space(on);
            let r = ctx.config_write(PCI_COMMAND, 2, u32::from(cmd));
            if on && r.is_ok() {
                self.target.memory_space_on();
            }
            self.stats.count("config_write", &result_name(&r));
            if let Err(e) = r {
                self.fail("config_write", format!("{e}"));
            }
            return;
        }
        // The CXL Device DVSEC, header and body, any width and span.
        let off = layout.dvsec + self.rng.below(layout.dvsec_len.max(1));
        let count = *self.rng.pick(&[1usize, 2, 4, 4, 8, 13]);
        let data = value.to_le_bytes();
        let data: Vec<u8> = (0..count).map(|i| data[i % 8]).collect();
        self.note(&format!(" dvsec+{:#x} {data:02x?}", off - layout.dvsec));
        // A DVSEC write can start a real CXL Reset (Control2 Initiate CXL
        // Reset, carried out on a device that can) or change Mem_Enable:
        // the memory may be unusable meanwhile, as during any reset.
        let _power = self.target.power.lock().unwrap();
        let _op = self.target.power_op();
        let r = ctx
            .dev
            .pwrite(&data, region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + off);
        self.stats.count("config_write", &result_name(&r));
        match r {
            Ok(n) if n == count => {}
            r => self.fail("config_write", format!("{r:?}, expected {count}")),
        }
    }

    /// Turns Memory Space back on after a reset or power change (the
    /// caller holds `power`, so the lock order is power, then cmd). The
    /// returned guard keeps the other threads' command writes out until
    /// the caller has checked the memory: one that turns Memory Space off
    /// in between makes a SIGBUS that the driver owes (defect 8).
    fn memory_space_back(&self, ctx: &Ctx) -> std::sync::MutexGuard<'_, ()> {
        let cmd = self.target.cmd.lock().unwrap();
        match ctx.set_memory_space(true) {
            Ok(()) => self.target.memory_space_on(),
            Err(e) => self.fail("config_write", format!("Memory Space back on: {e}")),
        }
        cmd
    }

    /// Faults page 0 of `map` in before a disruption (the caller holds
    /// `power`), with Memory Space turned and held on: a command write of
    /// another thread could make this touch SIGBUS, and the anonymous page
    /// the SIGBUS leaves in place would then answer every later touch, so a
    /// mapping the driver did zap would look live. Returns the guard that
    /// keeps Memory Space on (drop it before [`Self::memory_space_back`]),
    /// or None if the touch did not reach the device (a failure: nothing
    /// takes the memory away here).
    fn fault_in(
        &self,
        ctx: &Ctx,
        map: &Mapping,
        kind: &'static str,
    ) -> Option<std::sync::MutexGuard<'_, ()>> {
        let cmd = self.memory_space_back(ctx);
        let (_, hit) = sigbus::touch(self.slot, map, 0, None);
        if hit {
            self.fail(
                kind,
                "a mapping SIGBUS in D0 with Memory Space on, before the operation".into(),
            );
            return None;
        }
        Some(cmd)
    }

    /// A fresh two-page mapping of the memory at a random page: page 0 is
    /// faulted in before a disruption, page 1 first touched after it (a
    /// SIGBUS puts an anonymous page in place, so one page cannot show both).
    fn mem_pages(&mut self, ctx: &Ctx) -> Option<Mapping> {
        let mem = &self.target.layout.mem;
        let at = self.rng.below(mem.size / PAGE - 1) * PAGE;
        ctx.dev
            .mmap(
                2 * PAGE as usize,
                mem.offset + at,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
            )
            .map_err(|e| self.fail("mmap_touch", format!("mmap of a memory page: {e}")))
            .ok()
    }

    /// D3hot and back through PMCSR. In D3hot a mapping faulted before must
    /// SIGBUS (it was zapped) and read() must fail with EIO; back in D0 it
    /// works again.
    fn power_d3hot(&mut self, ctx: &Ctx) {
        let Some(pmcsr) = self.target.layout.pmcsr else {
            self.stats.count("power_d3hot", "no-PM-capability");
            return;
        };
        let linger_us = self.rng.below(3000);
        let Some(map) = self.mem_pages(ctx) else {
            return;
        };
        self.note(&format!(" linger={linger_us}us"));
        let _power = self.target.power.lock().unwrap();
        let _op = self.target.power_op();
        // Memory Space stays on until back in D0: a SIGBUS in D3hot is then
        // the D3hot zap's, not a command write's.
        let Some(cmd) = self.fault_in(ctx, &map, "power_d3hot") else {
            return;
        };
        // Ok(whether D3hot was entered).
        let result = (|| -> Result<bool, String> {
            let old = ctx
                .config_read(pmcsr, 2)
                .map_err(|e| format!("read PMCSR: {e}"))? as u16;
            ctx.config_write(pmcsr, 2, u32::from((old & !PMCSR_STATE) | D3HOT))
                .map_err(|e| format!("write D3hot: {e}"))?;
            let state = ctx
                .config_read(pmcsr, 2)
                .map_err(|e| format!("read PMCSR: {e}"))? as u16
                & PMCSR_STATE;
            let entered = state == D3HOT;
            if entered {
                let (_, hit) = sigbus::touch(self.slot, &map, 8, None);
                if !hit {
                    self.fail(
                        "power_d3hot",
                        "a mapping faulted in D0 still works in D3hot (not zapped)".into(),
                    );
                }
                let mut b = [0u8; 8];
                match ctx.dev.pread(&mut b, self.target.layout.mem.offset) {
                    Err(e) if errno(&e) == libc::EIO => {}
                    r => self.fail(
                        "power_d3hot",
                        format!("read of the memory in D3hot: {r:?}, expected EIO"),
                    ),
                }
            }
            std::thread::sleep(std::time::Duration::from_micros(linger_us));
            ctx.config_write(pmcsr, 2, u32::from(old & !PMCSR_STATE))
                .map_err(|e| format!("write D0: {e}"))?;
            let state = ctx
                .config_read(pmcsr, 2)
                .map_err(|e| format!("read PMCSR: {e}"))? as u16
                & PMCSR_STATE;
            if state != 0 {
                return Err(format!("PMCSR state {state} after writing D0"));
            }
            Ok(entered)
        })();
        // "ok" only where D3hot was entered and checked: the test fails on
        // a run that never got there.
        let outcome = match &result {
            Ok(true) => "ok",
            Ok(false) => "not-entered",
            Err(_) => "error",
        };
        self.stats.count("power_d3hot", outcome);
        if let Err(e) = result {
            self.fail("power_d3hot", e);
            // Best effort back to D0, or every later operation fails too.
            let _ = ctx
                .config_read(pmcsr, 2)
                .and_then(|v| ctx.config_write(pmcsr, 2, v & !u32::from(PMCSR_STATE)));
        }
        drop(cmd);
        let _cmd = self.memory_space_back(ctx);
        let (_, hit) = sigbus::touch(self.slot, &map, PAGE as usize, None);
        if hit {
            self.fail(
                "power_d3hot",
                "the mapping SIGBUS back in D0 with Memory Space on".into(),
            );
        }
    }

    /// VFIO_DEVICE_RESET or a guest-style FLR through PCIe Device Control;
    /// a mapping faulted before refaults afterwards and the decoder view is
    /// unchanged.
    fn reset(&mut self, ctx: &Ctx) {
        let layout = self.target.layout.clone();
        let flr_capable = layout
            .devctl
            .and_then(|d| ctx.config_read(d - 4, 4).ok())
            .is_some_and(|cap| cap & PCI_EXP_DEVCAP_FLR != 0);
        let via_flr = self.rng.chance(25) && flr_capable;
        let Some(map) = self.mem_pages(ctx) else {
            return;
        };
        self.note(if via_flr {
            " via=devctl-flr"
        } else {
            " via=ioctl"
        });
        let _power = self.target.power.lock().unwrap();
        let _op = self.target.power_op();
        // The reset is checked by refaulting after it, with Memory Space
        // turned on again: no need to hold it on across the reset.
        if self.fault_in(ctx, &map, "reset").is_none() {
            return;
        }
        let r = if via_flr {
            let d = layout.devctl.unwrap();
            ctx.config_read(d, 2)
                .and_then(|v| ctx.config_write(d, 2, v | u32::from(PCI_EXP_DEVCTL_BCR_FLR)))
        } else {
            ctx.dev.reset().map_err(|e| match e {
                crate::vfio::VfioError::Sys { err, .. } => err,
                other => io::Error::other(other.to_string()),
            })
        };
        self.stats.count("reset", &result_name(&r));
        match &r {
            Ok(()) => {}
            Err(e) if errno(e) == libc::EAGAIN => {}
            Err(e) => self.fail("reset", format!("{e}")),
        }
        let _cmd = self.memory_space_back(ctx);
        let (_, hit) = sigbus::touch(self.slot, &map, 8, None);
        if hit {
            self.fail(
                "reset",
                "a mapping does not refault after the reset (decoder lost?)".into(),
            );
        }
        match ctx.comp_snapshot() {
            Ok(now) if now == layout.comp_regs => {}
            Ok(now) => self.fail(
                "reset",
                format!(
                    "comp-regs changed across the reset: {now:x?}, was {:x?}",
                    layout.comp_regs
                ),
            ),
            Err(e) => self.fail("reset", format!("comp-regs after the reset: {e}")),
        }
    }

    /// VFIO_DEVICE_IOEVENTFD on the component BAR, inside the decoder
    /// block (must be refused: a write there would reach the host's
    /// decoder) and outside it, and on regions that are not BARs.
    fn ioeventfd(&mut self, ctx: &Ctx) {
        let layout = self.target.layout.clone();
        let g = layout.geometry;
        let sizes = [
            (1u64, VFIO_DEVICE_IOEVENTFD_8),
            (2, VFIO_DEVICE_IOEVENTFD_16),
            (4, VFIO_DEVICE_IOEVENTFD_32),
            (8, VFIO_DEVICE_IOEVENTFD_64),
        ];
        let &(width, flag) = self.rng.pick(&sizes);
        let data = self.rng.next_u64() & (u64::MAX >> (64 - 8 * width));
        let fire = self.rng.chance(50);
        let (where_, index, pos) = match self.rng.below(20) {
            0..=7 => (
                "decoder-block",
                g.bar,
                g.offset + self.rng.below(g.size / width) * width,
            ),
            8..=15 => {
                let bar = layout.comp_bar.size;
                let mut pos = self.rng.below(bar / width) * width;
                if pos + width > g.offset && pos < g.offset + g.size {
                    pos = (g.offset + g.size).next_multiple_of(width) % bar.max(1);
                }
                ("bar", g.bar, pos)
            }
            16..=17 => (
                "mem",
                layout.mem.index,
                self.rng.below(layout.mem.size / width) * width,
            ),
            18 => ("comp-regs", layout.comp.index, 0),
            _ => ("config", VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND),
        };
        self.note(&format!(
            " {where_} index={index} pos={pos:#x} width={width} data={data:#x}"
        ));
        let in_block = index == g.bar && pos + width > g.offset && pos < g.offset + g.size;
        let must_refuse = in_block || index != g.bar;
        // SAFETY: eventfd(2) with valid flags; the fd is closed below.
        let efd: RawFd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            self.fail(
                "ioeventfd",
                format!("eventfd: {}", io::Error::last_os_error()),
            );
            return;
        }
        let off = region_offset(index) + pos;
        let r = ctx.dev.ioeventfd(off, flag, data, efd);
        self.stats.count("ioeventfd", &result_name(&r));
        match (&r, must_refuse) {
            (Ok(()), true) => self.fail(
                "ioeventfd",
                format!("accepted on {where_} (a write there must not be forwarded)"),
            ),
            // Refused by a filter (EINVAL, as vfio-pci refuses the MSI-X
            // table; ENOTTY, as nvgrace-gpu refuses all), not by accident
            // (EBUSY: the BAR could not be reserved).
            (Err(e), true) if in_block && ![libc::EINVAL, libc::ENOTTY].contains(&errno(e)) => self.fail(
                "ioeventfd",
                format!("{e} on the decoder block, expected EINVAL or ENOTTY (refused because it is the decoder block)"),
            ),
            (Err(e), false)
                if ![libc::EINVAL, libc::EBUSY, libc::ENOSPC, libc::EEXIST, libc::ENOTTY]
                    .contains(&errno(e)) =>
            {
                self.fail("ioeventfd", format!("{e}"));
            }
            _ => {}
        }
        if r.is_ok() {
            if fire && !in_block {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                unsafe { libc::write(efd, one.as_ptr().cast(), 8) };
            }
            if let Err(e) = ctx.dev.ioeventfd(off, flag, data, -1) {
                self.fail("ioeventfd", format!("de-assign: {e}"));
            }
        }
        // SAFETY: efd is ours and no longer registered.
        unsafe { libc::close(efd) };
    }

    /// Close the device and open it again (group/container path), with
    /// every other operation held off.
    fn reopen(&mut self) {
        let target = self.target;
        let mut guard = target.ctx.write().unwrap();
        let _op = target.power_op();
        guard.take();
        let r = Ctx::open(&target.bdf, crate::checks::Options::default());
        self.stats
            .count("reopen", if r.is_ok() { "ok" } else { "error" });
        match r {
            Ok(ctx) => {
                if ctx.info.flags & VFIO_DEVICE_FLAGS_CXL == 0
                    || ctx.mem.size != target.layout.mem.size
                    || ctx.comp.size != target.layout.comp.size
                {
                    self.fail("reopen", "the device looks different after reopen".into());
                }
                *guard = Some(ctx);
                let _cmd = target.cmd.lock().unwrap();
                target.memory_space_on();
            }
            Err(e) => self.fail("reopen", format!("{e} (device left closed)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel answer of `argsz` over a poisoned buffer: `needed` bytes
    /// (24-byte struct + capability chain) when they fit, else the struct
    /// with argsz = needed; `pad` as the kernel left it.
    fn answer(argsz: u32, needed: u32, pad: u32) -> Vec<u8> {
        let mut b = vec![POISON; 64];
        let fits = argsz >= needed;
        let mut info = Vec::new();
        for v in [
            if fits { argsz } else { needed },
            VFIO_DEVICE_FLAGS_CXL,
            11,
            5,
            if fits { 24 } else { 0 },
            pad,
        ] {
            info.extend_from_slice(&v.to_ne_bytes());
        }
        let n = (argsz as usize).min(DEVICE_INFO_LEN);
        b[..n].copy_from_slice(&info[..n]);
        if fits {
            b[24..needed as usize].fill(0x11);
        }
        b
    }

    #[test]
    fn a_clean_answer_passes_at_every_argsz() {
        for argsz in [16, 20, 23, 24, 40, 47, 48, 64] {
            assert_eq!(
                device_info_problems(&answer(argsz, 48, 0), argsz, 48),
                Vec::<String>::new(),
                "argsz {argsz}"
            );
        }
    }

    #[test]
    fn a_leaked_pad_and_writes_past_the_answer_are_caught() {
        let p = device_info_problems(&answer(48, 48, 0xffff_8880), 48, 48);
        assert!(p.len() == 1 && p[0].contains("kernel stack leak"), "{p:?}");
        // Only the bytes of the pad that were copied out count.
        let p = device_info_problems(&answer(22, 48, 0x0000_1234), 22, 48);
        assert!(p.len() == 1 && p[0].contains("pad bytes 20..22"), "{p:?}");
        let mut b = answer(64, 48, 0);
        b[50] = 0;
        let p = device_info_problems(&b, 64, 48);
        assert!(
            p.len() == 1 && p[0].contains("byte 0x32 written past"),
            "{p:?}"
        );
        let mut b = answer(30, 48, 0);
        b[24] = 0;
        assert_eq!(device_info_problems(&b, 30, 48).len(), 1);
        // The argsz out must ask for the whole chain.
        let mut b = answer(30, 48, 0);
        b[0] = 30;
        assert!(device_info_problems(&b, 30, 48)[0].contains("argsz out 0x1e"));
    }
}
