//! Thin, safe wrappers over the kernel VFIO ioctls the user-space tools
//! need (type1 container and group, device fd, info queries, region I/O
//! and mmap): uapi-check's contract checks and vfio-cxl-cmdline's reading
//! of a device. Struct layouts come from rust-vmm's `vfio-bindings`; the
//! CXL additions from this crate. The ioctl numbers are `_IO(';', 100 + n)`
//! as in `<linux/vfio.h>` (tests/ioctl_numbers.rs compares them with the
//! C header).

// The crate is no_std without this module: bring std's prelude and macros.
use std::prelude::rust_2021::*;
use std::{format, vec};

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_device_ioeventfd, vfio_group_status, vfio_region_info,
};

/// Opens a VFIO or iommufd character device for reading and writing.
pub fn open_rw(path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(sys(format!("open {path}")))
}

/// The VFIO cdev of the device at PCI address `bdf`,
/// `/dev/vfio/devices/vfioN`, as named under `/sys/bus/pci/devices/BDF/vfio-dev`.
pub fn cdev_path(bdf: &str) -> Result<String> {
    let dir = Path::new("/sys/bus/pci/devices").join(bdf).join("vfio-dev");
    let name = std::fs::read_dir(&dir)
        .map_err(sys(format!(
            "{} (no VFIO cdev: CONFIG_VFIO_DEVICE_CDEV?)",
            dir.display()
        )))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("vfio"))
        .ok_or_else(|| VfioError::Protocol(format!("no vfioN under {}", dir.display())))?;
    Ok(format!("/dev/vfio/devices/{name}"))
}

/// `VFIO_DEVICE_BIND_IOMMUFD` of an opened cdev to `iommufd`: the device's
/// id in that iommufd.
pub fn bind_iommufd(cdev: &File, iommufd: &File) -> Result<u32> {
    // struct vfio_device_bind_iommufd: argsz, flags, iommufd, out_devid.
    let mut bind = [0u8; 16];
    bind[0..4].copy_from_slice(&16u32.to_ne_bytes());
    bind[8..12].copy_from_slice(&iommufd.as_raw_fd().to_ne_bytes());
    ioctl_buf(cdev, VFIO_DEVICE_BIND_IOMMUFD, &mut bind)
        .map_err(sys("VFIO_DEVICE_BIND_IOMMUFD"))?;
    Ok(u32::from_ne_bytes([bind[12], bind[13], bind[14], bind[15]]))
}

const VFIO_TYPE: u64 = b';' as u64;
const VFIO_BASE: u64 = 100;

const fn vfio_io(n: u64) -> u64 {
    (VFIO_TYPE << 8) | (VFIO_BASE + n)
}

pub const VFIO_GET_API_VERSION: u64 = vfio_io(0);
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
pub const VFIO_SET_IOMMU: u64 = vfio_io(2);
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
pub const VFIO_DEVICE_RESET: u64 = vfio_io(11);
pub const VFIO_DEVICE_IOEVENTFD: u64 = vfio_io(16);
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio_io(18);

/// `VFIO_PCI_INDEX_TO_OFFSET`: regions of a vfio-pci device sit at index << 40.
pub const fn region_offset(index: u32) -> u64 {
    (index as u64) << 40
}

/// Everything that can go wrong talking to VFIO.
#[derive(Debug)]
pub enum VfioError {
    /// A system call failed; `what` says which.
    Sys { what: String, err: io::Error },
    /// The kernel answered something the uAPI does not allow.
    Protocol(String),
}

impl std::fmt::Display for VfioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sys { what, err } => write!(f, "{what}: {err}"),
            Self::Protocol(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for VfioError {}

pub type Result<T> = std::result::Result<T, VfioError>;

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> VfioError {
    let what = what.into();
    move |err| VfioError::Sys { what, err }
}

/// ioctl with an integer argument; returns the non-negative result.
fn ioctl_val(fd: &File, request: u64, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: the request takes an integer argument (or none); no memory is
    // passed to the kernel.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// ioctl with a pointer to `buf`, which holds an argsz-prefixed struct.
fn ioctl_buf(fd: &File, request: u64, buf: &mut [u8]) -> io::Result<i32> {
    // SAFETY: `buf` is valid for writes of its length, and every caller
    // sets the struct's argsz to at most that length, so the kernel writes
    // inside the buffer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, buf.as_mut_ptr()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(buf[off..off + 8].try_into().expect("8 bytes"))
}

/// A device fd: opened through a type1 container with its group attached
/// ([`Device::open`]), through the VFIO cdev bound to a new iommufd
/// ([`Device::open_iommufd`]), or bound by the caller ([`Device::from_fd`]).
#[derive(Debug)]
pub struct Device {
    /// What keeps the device's IOMMU context open: the container and the
    /// group, or the iommufd the cdev is bound to (none for [`Device::from_fd`]).
    _iommu: Vec<File>,
    fd: File,
}

/// `VFIO_DEVICE_GET_INFO` with its capability chain.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub flags: u32,
    pub num_regions: u32,
    /// The whole answer, for capability lookups.
    pub raw: Vec<u8>,
    pub cap_offset: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO` with its capability chain.
#[derive(Debug, Clone)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    pub offset: u64,
    pub cap_offset: u32,
    pub raw: Vec<u8>,
}

/// `sizeof(struct vfio_region_info)`: where its capability chain may start.
pub const REGION_INFO_LEN: usize = size_of::<vfio_region_info>();

impl RegionInfo {
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// (type, sub-type) of its `VFIO_REGION_INFO_CAP_TYPE`, if it has one.
    pub fn region_type(&self) -> Option<(u32, u32)> {
        let cap = crate::caps::find(
            &self.raw,
            REGION_INFO_LEN,
            self.cap_offset,
            crate::VFIO_REGION_INFO_CAP_TYPE,
        )
        .ok()??;
        crate::caps::region_type(&self.raw, cap)
            .ok()
            .map(|t| (t.type_, t.subtype))
    }
}

impl Device {
    /// Opens the device at PCI address `bdf` through its IOMMU group.
    pub fn open(bdf: &str) -> Result<Self> {
        let link = Path::new("/sys/bus/pci/devices")
            .join(bdf)
            .join("iommu_group");
        let group_path = std::fs::read_link(&link)
            .map_err(sys(format!("{} (no IOMMU group?)", link.display())))?;
        let group_id = group_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                VfioError::Protocol(format!("bad iommu_group link {}", group_path.display()))
            })?
            .to_owned();
        let container = open_rw("/dev/vfio/vfio")?;
        let group = open_rw(&format!("/dev/vfio/{group_id}"))?;

        let version =
            ioctl_val(&container, VFIO_GET_API_VERSION, 0).map_err(sys("VFIO_GET_API_VERSION"))?;
        if version != vfio_bindings::bindings::vfio::VFIO_API_VERSION as i32 {
            return Err(VfioError::Protocol(format!("VFIO API version {version}")));
        }
        let type1v2 = vfio_bindings::bindings::vfio::VFIO_TYPE1v2_IOMMU as libc::c_ulong;
        if ioctl_val(&container, VFIO_CHECK_EXTENSION, type1v2)
            .map_err(sys("VFIO_CHECK_EXTENSION"))?
            != 1
        {
            return Err(VfioError::Protocol(
                "the container lacks VFIO_TYPE1v2_IOMMU".into(),
            ));
        }
        let mut status = [0u8; size_of::<vfio_group_status>()];
        let argsz = status.len() as u32;
        status[0..4].copy_from_slice(&argsz.to_ne_bytes());
        ioctl_buf(&group, VFIO_GROUP_GET_STATUS, &mut status)
            .map_err(sys("VFIO_GROUP_GET_STATUS"))?;
        if u32_at(&status, 4) & vfio_bindings::bindings::vfio::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::Protocol(format!(
                "group {group_id} is not viable (bind every device in it to vfio)"
            )));
        }
        let mut container_fd = container.as_raw_fd().to_ne_bytes();
        ioctl_buf(&group, VFIO_GROUP_SET_CONTAINER, &mut container_fd)
            .map_err(sys("VFIO_GROUP_SET_CONTAINER"))?;
        ioctl_val(&container, VFIO_SET_IOMMU, type1v2).map_err(sys("VFIO_SET_IOMMU"))?;
        let mut name = bdf.as_bytes().to_vec();
        name.push(0);
        let fd = ioctl_buf(&group, VFIO_GROUP_GET_DEVICE_FD, &mut name)
            .map_err(sys("VFIO_GROUP_GET_DEVICE_FD"))?;
        // SAFETY: the kernel just returned this new fd, owned by nobody else.
        let fd = unsafe { File::from_raw_fd(fd) };
        Ok(Self {
            _iommu: vec![container, group],
            fd,
        })
    }

    /// Opens the device at PCI address `bdf` through its VFIO cdev
    /// (`/dev/vfio/devices/vfioN`, named under
    /// `/sys/bus/pci/devices/BDF/vfio-dev`) bound to a new iommufd, the way
    /// QEMU's `-object iommufd` does, without the legacy group and
    /// container. Regions and config space can be read; nothing is
    /// attached to an IOAS, so the device cannot DMA.
    pub fn open_iommufd(bdf: &str) -> Result<Self> {
        let iommufd = open_rw("/dev/iommu")?;
        let fd = open_rw(&cdev_path(bdf)?)?;
        bind_iommufd(&fd, &iommufd)?;
        Ok(Self {
            _iommu: vec![iommufd],
            fd,
        })
    }

    /// A device fd opened another way: the VFIO cdev
    /// (`/dev/vfio/devices/vfioN`) after `VFIO_DEVICE_BIND_IOMMUFD`.
    pub fn from_fd(fd: File) -> Self {
        Self {
            _iommu: Vec::new(),
            fd,
        }
    }

    /// The device fd, for ioctls this type does not wrap.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `VFIO_DEVICE_GET_INFO`, retried with the size the kernel asks for.
    pub fn info(&self) -> Result<DeviceInfo> {
        let raw = self.query(VFIO_DEVICE_GET_INFO, size_of::<vfio_device_info>(), |_| {})?;
        Ok(DeviceInfo {
            flags: u32_at(&raw, 4),
            num_regions: u32_at(&raw, 8),
            cap_offset: u32_at(&raw, 16),
            raw,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for `index`.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let raw = self.query(
            VFIO_DEVICE_GET_REGION_INFO,
            size_of::<vfio_region_info>(),
            |b| b[8..12].copy_from_slice(&index.to_ne_bytes()),
        )?;
        Ok(RegionInfo {
            index,
            flags: u32_at(&raw, 4),
            cap_offset: u32_at(&raw, 12),
            size: u64_at(&raw, 16),
            offset: u64_at(&raw, 24),
            raw,
        })
    }

    /// The first device-specific region (index `>= VFIO_PCI_NUM_REGIONS`)
    /// of type [`crate::VFIO_REGION_TYPE_CXL`] and `subtype`: indices are
    /// not part of the contract (docs/uapi.md, Discovery).
    pub fn find_cxl_region(&self, info: &DeviceInfo, subtype: u32) -> Result<Option<RegionInfo>> {
        for index in vfio_bindings::bindings::vfio::VFIO_PCI_NUM_REGIONS..info.num_regions {
            let r = self.region_info(index)?;
            if r.region_type() == Some((crate::VFIO_REGION_TYPE_CXL, subtype)) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// `VFIO_DEVICE_GET_INFO` into a buffer of `argsz` bytes pre-filled
    /// with `poison`: what the kernel wrote, and what it left.
    pub fn info_poisoned(&self, argsz: u32, poison: u8) -> io::Result<Vec<u8>> {
        let mut buf = vec![poison; argsz as usize];
        buf[0..4].copy_from_slice(&argsz.to_ne_bytes());
        ioctl_buf(&self.fd, VFIO_DEVICE_GET_INFO, &mut buf)?;
        Ok(buf)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` with a caller-chosen argsz (bad-input checks).
    pub fn region_info_argsz(&self, index: u32, argsz: u32) -> io::Result<()> {
        let mut buf = vec![0u8; size_of::<vfio_region_info>().max(argsz as usize)];
        buf[0..4].copy_from_slice(&argsz.to_ne_bytes());
        buf[8..12].copy_from_slice(&index.to_ne_bytes());
        ioctl_buf(&self.fd, VFIO_DEVICE_GET_REGION_INFO, &mut buf).map(|_| ())
    }

    fn query(&self, request: u64, fixed: usize, fill: impl Fn(&mut [u8])) -> Result<Vec<u8>> {
        let mut argsz = fixed;
        for _ in 0..2 {
            let mut buf = vec![0u8; argsz];
            buf[0..4].copy_from_slice(&(argsz as u32).to_ne_bytes());
            fill(&mut buf);
            ioctl_buf(&self.fd, request, &mut buf).map_err(sys(format!("ioctl {request:#x}")))?;
            let wanted = u32_at(&buf, 0) as usize;
            if wanted <= argsz {
                return Ok(buf);
            }
            argsz = wanted;
        }
        Err(VfioError::Protocol(format!(
            "ioctl {request:#x}: argsz keeps growing"
        )))
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<()> {
        ioctl_val(&self.fd, VFIO_DEVICE_RESET, 0)
            .map(|_| ())
            .map_err(sys("VFIO_DEVICE_RESET"))
    }

    /// `VFIO_DEVICE_GET_INFO` or `VFIO_DEVICE_GET_REGION_INFO` with
    /// whatever argsz the caller put in `buf` (the fuzzer's huge and tiny
    /// ones), so the argsz may claim more than `buf` holds.
    ///
    /// # Safety
    /// The kernel writes up to the fixed struct plus its capability chain
    /// when argsz claims that much: `buf` must hold at least that (the
    /// caller learns the chain's size from a well-formed query first).
    pub unsafe fn info_ioctl_unchecked(&self, request: u64, buf: &mut [u8]) -> io::Result<i32> {
        assert!(
            request == VFIO_DEVICE_GET_INFO || request == VFIO_DEVICE_GET_REGION_INFO,
            "info_ioctl_unchecked is for the info queries only"
        );
        // SAFETY: per the caller's contract, the kernel writes inside `buf`.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), request as _, buf.as_mut_ptr()) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// `VFIO_DEVICE_SET_IRQS` of the one interrupt of `index` (e.g.
    /// `VFIO_PCI_ERR_IRQ_INDEX`) to `eventfd`: the kernel signals it; -1
    /// unregisters it.
    pub fn set_irq_eventfd(&self, index: u32, eventfd: RawFd) -> io::Result<()> {
        use vfio_bindings::bindings::vfio::{
            VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD,
        };
        // struct vfio_irq_set (argsz, flags, index, start, count) and one
        // s32 of data.
        let mut arg = [0u8; 24];
        let words = [
            24u32,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            0,
            1,
        ];
        for (i, w) in words.iter().enumerate() {
            arg[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        arg[20..24].copy_from_slice(&eventfd.to_ne_bytes());
        ioctl_buf(&self.fd, VFIO_DEVICE_SET_IRQS, &mut arg).map(|_| ())
    }

    /// `VFIO_DEVICE_IOEVENTFD`: on a write of `data` (`size` bytes: 1, 2,
    /// 4 or 8) at device-fd `offset`, signal `eventfd`; `eventfd` -1
    /// removes the one registered with the same offset, data and size.
    pub fn ioeventfd(&self, offset: u64, size: u32, data: u64, eventfd: RawFd) -> io::Result<()> {
        let mut arg = vfio_device_ioeventfd {
            argsz: size_of::<vfio_device_ioeventfd>() as u32,
            flags: size,
            offset,
            data,
            fd: eventfd,
            reserved: 0,
        };
        // SAFETY: `arg` is a complete vfio_device_ioeventfd whose argsz is
        // its size; the kernel only reads it.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                VFIO_DEVICE_IOEVENTFD as _,
                &mut arg as *mut vfio_device_ioeventfd,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// preadv of `bufs` at `offset`: vfs calls the device's read once per
    /// buffer (VFIO has no read_iter), advancing the position.
    pub fn preadv(&self, bufs: &mut [&mut [u8]], offset: u64) -> io::Result<usize> {
        let iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: every iovec points at a live, writable buffer of its length.
        let n = unsafe {
            libc::preadv(
                self.fd.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as i32,
                offset as i64,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// pwritev of `bufs` at `offset` (see [`Device::preadv`]).
    pub fn pwritev(&self, bufs: &[&[u8]], offset: u64) -> io::Result<usize> {
        let iov: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: every iovec points at a live buffer of its length, which
        // the kernel only reads.
        let n = unsafe {
            libc::pwritev(
                self.fd.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as i32,
                offset as i64,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// pread at `offset` of the device fd (region offset + position).
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.fd.read_at(buf, offset)
    }

    /// pwrite at `offset` of the device fd.
    pub fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.fd.write_at(buf, offset)
    }

    /// mmap `len` bytes at device-fd `offset`.
    pub fn mmap(&self, len: usize, offset: u64, prot: i32, flags: i32) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address the kernel picks; nothing
        // else refers to that address range yet.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                self.fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Like [`Device::mmap`], at a virtual address aligned to `align` (see
    /// [`map_aligned`]).
    pub fn mmap_aligned(
        &self,
        len: usize,
        offset: u64,
        prot: i32,
        flags: i32,
        align: usize,
    ) -> io::Result<Mapping> {
        map_aligned(self.fd.as_raw_fd(), len, offset, prot, flags, align)
    }
}

/// mmap `len` bytes of `fd` at `offset` (or anonymous memory: `fd` -1 and
/// `MAP_ANONYMOUS` in `flags`) at a virtual address aligned to `align` (a
/// power of two): reserves `len + align` bytes of address space, releases
/// it and maps over the aligned part with `MAP_FIXED`, so that huge
/// (PMD/PUD) mappings are possible wherever the physical range allows
/// them, and device-dax's alignment rule is met.
pub fn map_aligned(
    fd: RawFd,
    len: usize,
    offset: u64,
    prot: i32,
    flags: i32,
    align: usize,
) -> io::Result<Mapping> {
    assert!(align.is_power_of_two(), "alignment {align:#x}");
    // SAFETY: an anonymous PROT_NONE reservation at an address the
    // kernel picks; nothing refers to it.
    let hole = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + align,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if hole == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let at = (hole as usize).next_multiple_of(align);
    // SAFETY: [at, at + len) lies inside the reservation made above,
    // which this function owns; MAP_FIXED replaces only that part.
    let ptr = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len,
            prot,
            flags | libc::MAP_FIXED,
            fd,
            offset as libc::off_t,
        )
    };
    let result = if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    // Give back the reservation around the mapping: head and tail are
    // still ours in any case.
    let (head, tail) = (at - hole as usize, hole as usize + len + align - (at + len));
    // SAFETY: these ranges are parts of the reservation not covered by
    // the MAP_FIXED mapping.
    unsafe {
        if head > 0 {
            libc::munmap(hole, head);
        }
        if tail > 0 {
            libc::munmap((at + len) as *mut libc::c_void, tail);
        }
    }
    if result.is_err() {
        release_failed_fixed(at, len);
    }
    result.map(|()| Mapping {
        ptr: ptr.cast(),
        len,
    })
}

/// After a failed `MAP_FIXED` over part of our reservation, the kernel may
/// have left that part unmapped, and another thread (or the allocator) may
/// already have mapped something there: unmapping it blindly would pull
/// memory from under that thread. Take it back only if it is free
/// (`MAP_FIXED_NOREPLACE`); otherwise leave it (at worst a `PROT_NONE`
/// reservation of ours stays, address space only).
fn release_failed_fixed(at: usize, len: usize) {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; what
    // it creates is ours and unmapped at once.
    unsafe {
        let p = libc::mmap(
            at as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            libc::munmap(p, len);
        }
    }
}

/// A live mmap of a device region; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    pub fn len(&self) -> usize {
        self.len
    }

    /// The virtual address of the first byte.
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// The first byte, for bulk copies ([`Mapping::len`] bytes).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Volatile 64-bit read at byte `offset` (8-byte aligned, in bounds).
    pub fn read_u64(&self, offset: usize) -> u64 {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "read_u64 at {offset:#x} out of the mapping"
        );
        // SAFETY: in bounds and aligned (checked above); the mapping lives
        // as long as self. Volatile: the memory is shared with the outside.
        unsafe { self.ptr.add(offset).cast::<u64>().read_volatile() }
    }

    /// Volatile 64-bit write at byte `offset` (8-byte aligned, in bounds).
    pub fn write_u64(&self, offset: usize, value: u64) {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len,
            "write_u64 at {offset:#x} out of the mapping"
        );
        // SAFETY: as in read_u64; the mapping is writable (callers map with
        // PROT_WRITE before writing).
        unsafe { self.ptr.add(offset).cast::<u64>().write_volatile(value) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
