//! Checks of what keeps one user of the device from another and from the
//! host (issue 10 of the project): defined ioctl output, no host address in
//! the DVSEC, no ioeventfd around the decoder filter, the memory following
//! Memory Space, real CXL Resets, and the memory cleared between users
//! (`tenant_write` / `tenant_read`, two processes in a row).

use cxl_regs::dvsec::{self as dv, Capability, Control2, Status2};
use cxl_regs::hdm;

use crate::checks::{
    comp_regs_view, ensure, err, read_dies_of_sigbus, sparse_areas, Ctx, Outcome, PAGE,
    PCI_COMMAND, PCI_COMMAND_MEMORY,
};
use crate::pattern::{self, Checksum};
use crate::vfio::{Device, VfioError};

/// `struct vfio_device_info`: argsz, flags, num_regions, num_irqs,
/// cap_offset, pad.
const INFO_LEN: u32 = 24;
const INFO_PAD: usize = 20;

/// The kernel fills every byte of `struct vfio_device_info` it copies out:
/// a buffer pre-filled with a poison byte must come back with a zero pad
/// (an uninitialized pad leaks kernel stack).
pub fn device_info_defined(c: &Ctx) -> Outcome {
    for poison in [0xa5u8, 0x5a] {
        let b = c.dev.info_poisoned(INFO_LEN, poison).map_err(err)?;
        ensure(b[INFO_PAD..INFO_PAD + 4] == [0; 4], || {
            format!("pad of vfio_device_info reads {:x?}", &b[INFO_PAD..])
        })?;
    }
    Ok("padding zeroed under two poison bytes".into())
}

/// An ioeventfd writes the BAR behind the decoder filter's back: refused.
pub fn ioeventfd_refused(c: &Ctx) -> Outcome {
    // SAFETY: eventfd(2) with valid flags; the fd is closed below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    ensure(efd >= 0, || {
        format!("eventfd: {}", std::io::Error::last_os_error())
    })?;
    let bar = c.dev.region_info(c.geometry.bar).map_err(err)?;
    let ctrl0 = c.geometry.offset + u64::from(hdm::control(0));
    let r = c.dev.ioeventfd(bar.offset + ctrl0, 4, 0, efd);
    // SAFETY: `efd` is the eventfd opened above, closed once.
    unsafe { libc::close(efd) };
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(format!(
            "ioeventfd on decoder 0 control (BAR{} {ctrl0:#x}) refused",
            c.geometry.bar
        )),
        other => Err(format!(
            "ioeventfd on decoder 0 control: {other:?}, not ENOTTY"
        )),
    }
}

/// Firmware put the host physical address in the Range Base registers;
/// the user sees 0 until it writes its own.
pub fn dvsec_hides_host_address(c: &Ctx) -> Outcome {
    let d = c.find_dvsec()?;
    for r in 0..2 {
        for (name, off) in [
            ("high", dv::range_base_high(r)),
            ("low", dv::range_base_low(r)),
        ] {
            let v = c.config_read(d + u64::from(off), 4).map_err(err)?;
            ensure(v == 0, || {
                format!("Range {} Base {name} reads {v:#x}", r + 1)
            })?;
        }
    }
    Ok("Range 1 and 2 Base read 0".into())
}

/// One write from DVSEC Header 2 through Control2: the header bytes are
/// dropped, the body bytes land (Disable_Caching is RW, never locked).
pub fn dvsec_write_across_header(c: &Ctx) -> Outcome {
    let d = c.find_dvsec()?;
    let ctrl2 = u64::from(dv::CONTROL2);
    let header2 = 0x08u64;
    let mut buf = vec![0u8; (ctrl2 + 2 - header2) as usize];
    c.dev
        .pread(&mut buf, c.config_offset() + d + header2)
        .map_err(err)?;
    let before = u16::from_le_bytes([buf[buf.len() - 2], buf[buf.len() - 1]]);
    let want = before ^ Control2::DISABLE_CACHING.mask() as u16;
    let n = buf.len();
    buf[n - 2..].copy_from_slice(&want.to_le_bytes());
    let header = [buf[0], buf[1]];
    buf[0] ^= 0xff; // try to change the DVSEC ID: must be dropped
    c.dev
        .pwrite(&buf, c.config_offset() + d + header2)
        .map_err(err)?;
    let after = c.config_read(d + ctrl2, 2).map_err(err)? as u16;
    let id = c.config_read(d + header2, 2).map_err(err)? as u16;
    c.config_write(d + ctrl2, 2, u32::from(before))
        .map_err(err)?;
    ensure(after == want, || {
        format!("Control2 reads {after:#x} after a write spanning the header, not {want:#x}")
    })?;
    ensure(id == u16::from_le_bytes(header), || {
        format!("DVSEC ID changed to {id:#x}")
    })?;
    Ok("body bytes of a write spanning Header 2 stored, header bytes dropped".into())
}

/// Initiate CXL Reset is carried out for real or not at all: on a device
/// without CXL_Reset_Capable nothing completes; on one with it the
/// device resets, Mem_Clr clears the memory, and the decoder comes back.
pub fn cxl_reset_is_real(c: &Ctx) -> Outcome {
    let d = c.find_dvsec()?;
    let read16 = |o: u16| {
        c.config_read(d + u64::from(o), 2)
            .map(|v| v as u16)
            .map_err(err)
    };
    let write16 = |o: u16, v: u16| c.config_write(d + u64::from(o), 2, v.into()).map_err(err);
    let cap = Capability(read16(dv::CAPABILITY)?);
    let ring = |mem_clr: bool| -> Result<Status2, String> {
        let mut ctrl2 = read16(dv::CONTROL2)? & !(Control2::CXL_RESET_MEM_CLR_ENABLE.mask() as u16);
        if mem_clr {
            ctrl2 |= Control2::CXL_RESET_MEM_CLR_ENABLE.mask() as u16;
        }
        write16(dv::CONTROL2, ctrl2)?;
        write16(
            dv::CONTROL2,
            ctrl2 | Control2::INITIATE_CXL_RESET.mask() as u16,
        )?;
        ensure(
            !Control2(read16(dv::CONTROL2)?).is_set(Control2::INITIATE_CXL_RESET),
            || "Initiate CXL Reset did not self-clear".into(),
        )?;
        Ok(Status2(read16(dv::STATUS2)?))
    };

    if !cap.is_set(Capability::CXL_RESET_CAPABLE) {
        let s2 = ring(false)?;
        ensure(!s2.is_set(Status2::CXL_RESET_COMPLETE), || {
            format!(
                "Status2 {:#x}: a CXL Reset the device cannot do was reported done",
                s2.0
            )
        })?;
        return Ok("no CXL_Reset_Capable: Initiate ignored, nothing reported done".into());
    }

    let map = c
        .map_mem(PAGE as usize * 2)
        .map_err(|e| format!("mmap: {e}"))?;
    // The resets change memory the other checks and the outside exchange
    // (the sample offsets): keep those words and put them back at the end.
    let whole = c
        .map_mem(c.mem.size as usize)
        .map_err(|e| format!("mmap of the whole memory: {e}"))?;
    let kept: Vec<(u64, u64)> = pattern::sample_offsets(c.mem.size)
        .into_iter()
        .map(|o| (o, whole.read_u64(o as usize)))
        .collect();
    let marks = [
        (0usize, 0xdead_beef_0000_0001_u64),
        (PAGE as usize + 8, 0xdead_beef_0000_0002),
    ];
    for (o, v) in marks {
        map.write_u64(o, v);
    }
    let s2 = ring(false)?;
    ensure(
        s2.is_set(Status2::CXL_RESET_COMPLETE) && !s2.is_set(Status2::CXL_RESET_ERROR),
        || format!("CXL Reset: Status2 {:#x}", s2.0),
    )?;
    comp_regs_view(c)?;
    // The mapping was zapped; this refaults through the validated decoder.
    let survived = marks.iter().filter(|&&(o, v)| map.read_u64(o) == v).count();
    let mut detail = format!("CXL Reset done, decoder intact, {survived}/2 marks kept");

    if cap.is_set(Capability::CXL_RESET_MEM_CLR_CAPABLE) {
        for (o, v) in marks {
            map.write_u64(o, v);
        }
        let s2 = ring(true)?;
        ensure(
            s2.is_set(Status2::CXL_RESET_COMPLETE) && !s2.is_set(Status2::CXL_RESET_ERROR),
            || format!("CXL Reset with Mem_Clr: Status2 {:#x}", s2.0),
        )?;
        comp_regs_view(c)?;
        for (o, _) in marks {
            let v = map.read_u64(o);
            ensure(v == 0, || {
                format!("word at {o:#x} reads {v:#x} after CXL Reset with Mem_Clr")
            })?;
        }
        let nonzero = kept
            .iter()
            .filter(|&&(o, _)| whole.read_u64(o as usize) != 0)
            .count();
        ensure(nonzero == 0, || {
            format!("{nonzero} sampled words survived CXL Reset with Mem_Clr")
        })?;
        let ctrl2 = read16(dv::CONTROL2)? & !(Control2::CXL_RESET_MEM_CLR_ENABLE.mask() as u16);
        write16(dv::CONTROL2, ctrl2)?;
        detail += "; with Mem_Clr the memory reads 0";
    }
    for (o, v) in kept {
        whole.write_u64(o as usize, v);
    }
    Ok(detail)
}

/// By default the memory follows Memory Space like a BAR: with it off the
/// mapping SIGBUSes (pages faulted before are zapped) and read() fails;
/// with it back the data is there.
pub fn mem_follows_memory_space(c: &Ctx) -> Outcome {
    let mem = c
        .map_mem(PAGE as usize * 2)
        .map_err(|e| format!("mmap memory: {e}"))?;
    let bar = c.dev.region_info(c.geometry.bar).map_err(err)?;
    let (off, _) = sparse_areas(&bar)?
        .into_iter()
        .find(|&(_, size)| size >= PAGE)
        .ok_or("component BAR has no mmap-able page")?;
    let bar_map = c
        .dev
        .mmap(
            PAGE as usize,
            bar.offset + off,
            libc::PROT_READ,
            libc::MAP_SHARED,
        )
        .map_err(|e| format!("mmap BAR{} at {off:#x}: {e}", c.geometry.bar))?;
    let saved = mem.read_u64(0);
    let a = 0xc0ff_ee00_0000_0001_u64;
    mem.write_u64(0, a); // page 0 faulted in before Memory Space goes off

    c.set_memory_space(false).map_err(err)?;
    let cmd = c.config_read(PCI_COMMAND, 2).map_err(err)? as u16;
    let result = (|| {
        ensure(cmd & PCI_COMMAND_MEMORY == 0, || {
            format!("command register {cmd:#x}: Memory Space still on")
        })?;
        ensure(read_dies_of_sigbus(mem.addr())?, || {
            "a page mapped before Memory Space went off is still readable".into()
        })?;
        ensure(read_dies_of_sigbus(mem.addr() + PAGE as usize)?, || {
            "a page first touched with Memory Space off was mapped".into()
        })?;
        let mut w = [0u8; 8];
        match c.dev.pread(&mut w, c.mem.offset) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            r => return Err(format!("memory read with Memory Space off: {r:?}, not EIO")),
        }
        ensure(read_dies_of_sigbus(bar_map.addr())?, || {
            "BAR mapping readable with Memory Space off".into()
        })
    })();
    c.enable_memory_space().map_err(err)?;
    result?;
    ensure(mem.read_u64(0) == a, || {
        "data changed while Memory Space was off".into()
    })?;
    ensure(!read_dies_of_sigbus(bar_map.addr())?, || {
        "BAR mapping still dead with Memory Space back on".into()
    })?;
    mem.write_u64(0, saved);
    Ok(
        "memory and BAR mappings SIGBUS and read() EIO with Memory Space off; data back with it on"
            .into(),
    )
}

/// Maps the whole memory region of a freshly opened device.
pub(crate) fn open_whole(
    bdf: &str,
) -> Result<(Device, crate::vfio::Mapping, crate::vfio::RegionInfo), String> {
    let dev = Device::open(bdf).map_err(|e| e.to_string())?;
    let info = dev.info().map_err(|e| e.to_string())?;
    let mem = (0..info.num_regions)
        .filter_map(|i| dev.region_info(i).ok())
        .find(|r| {
            r.region_type()
                == Some((
                    vfio_cxl_uapi::VFIO_REGION_TYPE_CXL,
                    vfio_cxl_uapi::VFIO_REGION_SUBTYPE_CXL_MEM,
                ))
        })
        .ok_or_else(|| VfioError::Protocol("no CXL memory region".into()).to_string())?;
    let map = dev
        .mmap(
            mem.size as usize,
            mem.offset,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| format!("mmap of {} bytes: {e}", mem.size))?;
    Ok((dev, map, mem))
}

/// User A: fills the whole memory with pattern `seed` and reads it back;
/// the device is closed when the process ends.
pub fn tenant_write(bdf: &str, seed: u64) -> Outcome {
    let (_dev, map, mem) = open_whole(bdf)?;
    let size = mem.size;
    let mut sum = Checksum::default();
    for o in (0..size).step_by(8) {
        map.write_u64(o as usize, pattern::word(seed, o));
    }
    let bad = (0..size)
        .step_by(8)
        .filter(|&o| {
            let w = map.read_u64(o as usize);
            sum.add(w);
            w != pattern::word(seed, o)
        })
        .count();
    ensure(bad == 0, || {
        format!("{bad} words did not keep pattern {seed}")
    })?;
    Ok(format!(
        "{size} bytes of pattern {seed} written and read back, checksum {:#x}",
        sum.0
    ))
}

/// User B, right after A: every byte of the memory reads 0.
pub fn tenant_read(bdf: &str) -> Outcome {
    let (_dev, map, mem) = open_whole(bdf)?;
    let size = mem.size;
    let nonzero = (0..size)
        .step_by(8)
        .filter(|&o| map.read_u64(o as usize) != 0)
        .count();
    ensure(nonzero == 0, || {
        format!(
            "{nonzero} of {} words hold a previous user's data",
            size / 8
        )
    })?;
    Ok(format!("all {size} bytes read 0"))
}
