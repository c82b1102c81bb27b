//! Which VFIO and IOMMU files a running QEMU holds: how it reached the
//! device, read from the kernel (`/proc/PID/fd`) rather than from what its
//! command line asked for. The legacy path shows `/dev/vfio/vfio` (the
//! container), `/dev/vfio/N` (the group) and an anonymous device file; the
//! iommufd path shows `/dev/iommu` and the cdev `/dev/vfio/devices/vfioN`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vfio_cxl_cmdline::layout::Iommu;

/// The container of the legacy VFIO path.
pub const CONTAINER: &str = "/dev/vfio/vfio";
/// The iommufd character device.
pub const IOMMUFD: &str = "/dev/iommu";
/// Where the VFIO device cdevs live.
pub const CDEV_DIR: &str = "/dev/vfio/devices/";

/// Whether an open file's link target is one of VFIO's or the IOMMU's.
pub fn is_vfio_file(target: &str) -> bool {
    target == IOMMUFD || target.starts_with("/dev/vfio/") || target == "anon_inode:[vfio-device]"
}

/// The VFIO and IOMMU files among `pid`'s open file descriptors.
fn open_by(proc: &Path, pid: &str) -> BTreeSet<String> {
    let Ok(fds) = fs::read_dir(proc.join(pid).join("fd")) else {
        return BTreeSet::new();
    };
    fds.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| t.to_str().map(str::to_string))
        .filter(|t| is_vfio_file(t))
        .collect()
}

/// The pids under `proc` whose executable is `exe`.
fn pids_of(proc: &Path, exe: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| fs::read_link(proc.join(n).join("exe")).is_ok_and(|t| t == exe))
        .collect()
}

/// A thread that looks every 100 ms at what the processes running `exe`
/// hold open, until told to stop; it returns every VFIO file seen.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BTreeSet<String>>,
}

impl Watch {
    pub fn start(exe: &Path) -> Self {
        let exe: PathBuf = fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let proc = Path::new("/proc");
            let mut seen = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                for pid in pids_of(proc, &exe) {
                    seen.extend(open_by(proc, &pid));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        Self { stop, thread }
    }

    pub fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// What is wrong with `files` (what QEMU held open) for a QEMU that was
/// asked to reach its devices through `iommu`.
pub fn problems<'a>(files: impl IntoIterator<Item = &'a str>, iommu: Iommu) -> Vec<String> {
    let files: Vec<&str> = files.into_iter().collect();
    let has = |f: &str| files.contains(&f);
    let cdev = files.iter().any(|f| f.starts_with(CDEV_DIR));
    let mut out = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            out.push(format!("QEMU's VFIO files {files:?}: {what}"));
        }
    };
    match iommu {
        Iommu::Iommufd => {
            want(has(IOMMUFD), "no /dev/iommu (asked for iommufd)");
            want(cdev, "no device cdev under /dev/vfio/devices/");
            want(!has(CONTAINER), "the legacy container is open too");
        }
        Iommu::Container => {
            want(
                has(CONTAINER),
                "no /dev/vfio/vfio (asked for the container)",
            );
            want(
                !has(IOMMUFD),
                "/dev/iommu is open (asked for the container)",
            );
            want(!cdev, "a device cdev is open (asked for the container)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vfio_files_are_told_apart() {
        for f in [
            "/dev/iommu",
            "/dev/vfio/vfio",
            "/dev/vfio/12",
            "/dev/vfio/devices/vfio0",
            "anon_inode:[vfio-device]",
        ] {
            assert!(is_vfio_file(f), "{f}");
        }
        for f in [
            "/dev/kvm",
            "anon_inode:[eventfd]",
            "/dev/null",
            "socket:[1]",
        ] {
            assert!(!is_vfio_file(f), "{f}");
        }
    }

    #[test]
    fn each_path_needs_its_own_files_and_none_of_the_others() {
        let legacy = ["/dev/vfio/12", "/dev/vfio/vfio", "anon_inode:[vfio-device]"];
        let cdev = ["/dev/iommu", "/dev/vfio/devices/vfio0"];
        assert!(problems(legacy, Iommu::Container).is_empty());
        assert!(problems(cdev, Iommu::Iommufd).is_empty());
        assert_eq!(problems(legacy, Iommu::Iommufd).len(), 3);
        assert_eq!(problems(cdev, Iommu::Container).len(), 3);
        assert_eq!(problems([], Iommu::Iommufd).len(), 2);
        let both: Vec<&str> = legacy.iter().chain(&cdev).copied().collect();
        assert_eq!(
            problems(both.iter().copied(), Iommu::Iommufd),
            [format!(
                "QEMU's VFIO files {both:?}: the legacy container is open too"
            )]
        );
    }

    /// This test process's own files: a VFIO-free process shows none, and
    /// the pid lookup finds this process by its executable.
    #[test]
    fn a_process_is_found_by_its_executable() {
        let proc = Path::new("/proc");
        let me = std::process::id().to_string();
        let exe = fs::read_link(proc.join(&me).join("exe")).unwrap();
        assert!(pids_of(proc, &exe).contains(&me));
        assert!(open_by(proc, &me).is_empty());
    }
}
