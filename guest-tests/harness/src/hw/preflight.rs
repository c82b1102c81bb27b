//! The preflight checks against a sysfs root (the device, its binding,
//! IOMMU group and VFIO nodes, the binaries, KVM) and their messages.

use std::fs;
use std::path::Path;

use super::options::{AccelChoice, HwOptions};
use super::{Out, HOST_DRIVER};

/// One preflight check: what, whether it passed, what was found, and how
/// to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the preflight found out besides pass/fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preflight {
    pub findings: Vec<Finding>,
    /// `vvvv:dddd` of the device (the guest looks for it).
    pub id: Option<String>,
    /// KVM usable.
    pub kvm: bool,
}

impl Preflight {
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn open_rw(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().read(true).write(true).open(p)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The file-level checks (no ioctl): the device in sysfs, its binding,
/// its IOMMU group and VFIO nodes, the binaries, KVM. `qemu`, `kernel`
/// and `initrd` are the paths that will be used (None: built or found
/// later, not checked here).
pub fn preflight(
    o: &HwOptions,
    qemu: Option<&Path>,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
) -> Preflight {
    let mut pf = Preflight::default();
    let f = &mut pf.findings;
    let root = &o.root;
    let bdf = &o.bdf;
    let dev = root.join("sys/bus/pci/devices").join(bdf);
    let bind_fix = format!(
        "modprobe vfio-cxl-pci   # or insmod vfio-cxl-core.ko vfio-cxl-pci.ko (docs/host-driver.md)\n\
         [ -e /sys/bus/pci/devices/{bdf}/driver ] && echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind\n\
         echo {HOST_DRIVER} > /sys/bus/pci/devices/{bdf}/driver_override\n\
         echo {bdf} > /sys/bus/pci/drivers_probe"
    );
    if !dev.is_dir() {
        f.push(Finding::fail(
            "device",
            format!("{} does not exist", dev.display()),
            "check the address with lspci -D; a device behind a switch or not yet rescanned: echo 1 > /sys/bus/pci/rescan",
        ));
    } else {
        let v = read_trim(&dev.join("vendor"));
        let d = read_trim(&dev.join("device"));
        if let (Some(v), Some(d)) = (&v, &d) {
            pf.id = Some(format!(
                "{}:{}",
                v.trim_start_matches("0x"),
                d.trim_start_matches("0x")
            ));
        }
        f.push(Finding::pass(
            "device",
            format!(
                "{bdf} ({})",
                pf.id.as_deref().unwrap_or("vendor/device unreadable")
            ),
        ));
        match link_name(&dev.join("driver")) {
            Some(drv) if drv == HOST_DRIVER => {
                f.push(Finding::pass("driver", format!("bound to {HOST_DRIVER}")))
            }
            Some(drv) => f.push(Finding::fail(
                "driver",
                format!("bound to {drv}, not {HOST_DRIVER}"),
                bind_fix.clone(),
            )),
            None => f.push(Finding::fail(
                "driver",
                format!("not bound to any driver (needs {HOST_DRIVER})"),
                bind_fix.clone(),
            )),
        }
        match link_name(&dev.join("iommu_group")) {
            None => f.push(Finding::fail(
                "iommu-group",
                format!("{bdf} has no IOMMU group"),
                "enable the IOMMU: VT-d/AMD-Vi in the firmware and intel_iommu=on (or amd_iommu=on) on the kernel command line",
            )),
            Some(g) => {
                f.push(Finding::pass("iommu-group", format!("group {g}")));
                // Every device of the group must be bound to a VFIO driver
                // (or to none) for the group to be viable.
                let members = root.join(format!("sys/kernel/iommu_groups/{g}/devices"));
                let others: Vec<String> = fs::read_dir(&members)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != bdf)
                    .filter(|n| {
                        link_name(&root.join("sys/bus/pci/devices").join(n).join("driver"))
                            .is_some_and(|d| !d.starts_with("vfio"))
                    })
                    .collect();
                if !others.is_empty() {
                    f.push(Finding::fail(
                        "iommu-group-viable",
                        format!("group {g} also holds {others:?}, bound to non-VFIO drivers"),
                        "bind every device of the group to vfio-pci (driver_override), or move the device to a slot with its own group",
                    ));
                }
                for node in ["dev/vfio/vfio".to_string(), format!("dev/vfio/{g}")] {
                    let p = root.join(&node);
                    match open_rw(&p) {
                        Ok(_) => f.push(Finding::pass("vfio-node", format!("/{node} read-write"))),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            f.push(Finding::fail(
                                "vfio-node",
                                format!("/{node} does not exist"),
                                "modprobe vfio vfio_iommu_type1; the group node appears when the device binds to a VFIO driver",
                            ))
                        }
                        Err(e) => f.push(Finding::fail(
                            "vfio-node",
                            format!("/{node}: {e}"),
                            "run as root, or give this user the node (chown) and a memlock limit of guest RAM + device memory (ulimit -l)",
                        )),
                    }
                }
            }
        }
    }
    for (name, path, fix) in [
        (
            "qemu",
            qemu,
            "build it: cargo xtask build-qemu, or pass --qemu",
        ),
        (
            "kernel",
            kernel,
            "pass --kernel, or omit it to use the pinned kernel",
        ),
        ("initrd", initrd, "pass --initrd, or omit it to build one"),
    ] {
        let Some(p) = path else { continue };
        let ok = if name == "qemu" {
            executable(p)
        } else {
            p.is_file()
        };
        if ok {
            f.push(Finding::pass(name, p.display().to_string()));
        } else {
            f.push(Finding::fail(
                name,
                format!(
                    "{} is not a readable file{}",
                    p.display(),
                    if name == "qemu" {
                        " with execute permission"
                    } else {
                        ""
                    }
                ),
                fix,
            ));
        }
    }
    let kvm = match o.accel {
        AccelChoice::Tcg => Err("--accel tcg".to_string()),
        AccelChoice::Auto | AccelChoice::Kvm => kvm_usable(&root.join("dev/kvm")),
    };
    pf.kvm = kvm.is_ok();
    match (o.accel, kvm) {
        (AccelChoice::Kvm, Err(why)) => f.push(Finding::fail(
            "kvm",
            format!("--accel kvm, but /dev/kvm is not usable: {why}"),
            "load kvm_intel/kvm_amd, enable virtualization in the firmware, or use --accel auto",
        )),
        (_, Ok(())) => f.push(Finding::pass("kvm", "/dev/kvm creates VMs: KVM")),
        (AccelChoice::Tcg, Err(_)) => f.push(Finding::pass("kvm", "TCG (--accel tcg)")),
        (AccelChoice::Auto, Err(why)) => f.push(Finding::pass(
            "kvm",
            format!(
                "notice: /dev/kvm is not usable ({why}), the guest runs under TCG (much slower)"
            ),
        )),
    }
    pf
}

/// `KVM_GET_API_VERSION`, `KVM_CREATE_VM` (`_IO(0xAE, 0)`, `_IO(0xAE, 1)`).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: libc::c_int = 12;

/// KVM works when `node` opens read-write, speaks API version 12 and
/// creates a VM (the VM's fd is closed again at once).
fn kvm_usable(node: &Path) -> std::result::Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let f = open_rw(node).map_err(|e| format!("open: {e}"))?;
    // SAFETY: both ioctls take no argument and only return an int; `f`
    // is a valid open fd for the call's duration.
    let version = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "KVM_GET_API_VERSION: {}",
            if version < 0 {
                std::io::Error::last_os_error().to_string()
            } else {
                format!("version {version}, expected {KVM_API_VERSION}")
            }
        ));
    }
    // SAFETY: as above.
    let vm = unsafe { libc::ioctl(f.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!(
            "KVM_CREATE_VM: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(vm) });
    Ok(())
}

/// Says every finding (with its fix) and whether the preflight passed.
pub(super) fn report_preflight(pf: &Preflight, out: &Out) -> bool {
    for f in &pf.findings {
        let v = if f.ok {
            format!("pass: {}", f.detail)
        } else {
            format!("FAIL: {}", f.detail)
        };
        out.say(&format!("preflight {}: {v}", f.name));
        out.fact(&format!("hw.preflight.{}", f.name), &v);
        if let Some(fix) = &f.fix {
            for l in fix.lines() {
                out.say(&format!("  fix: {l}"));
            }
        }
    }
    if !pf.ok() {
        out.fact("hw.result", "FAIL: preflight");
        out.say("preflight failed: nothing was booted");
    }
    pf.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::tests::args;
    use crate::hw::{main, parse_args, EXIT_PREFLIGHT};
    use std::os::unix::fs::symlink;

    const BDF: &str = "0000:3b:00.0";

    /// A fake root: the device bound to `driver` (None: unbound), in IOMMU
    /// group 7 (when `group`), /dev/vfio nodes when `nodes`, /dev/kvm
    /// when `kvm`.
    fn fake_root(driver: Option<&str>, group: bool, nodes: bool, kvm: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let dev = r.join("sys/bus/pci/devices").join(BDF);
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("vendor"), "0x1b36\n").unwrap();
        fs::write(dev.join("device"), "0x0015\n").unwrap();
        if let Some(d) = driver {
            let drv = r.join("sys/bus/pci/drivers").join(d);
            fs::create_dir_all(&drv).unwrap();
            symlink(&drv, dev.join("driver")).unwrap();
        }
        if group {
            let g = r.join("sys/kernel/iommu_groups/7/devices");
            fs::create_dir_all(&g).unwrap();
            symlink(&dev, g.join(BDF)).unwrap();
            symlink(r.join("sys/kernel/iommu_groups/7"), dev.join("iommu_group")).unwrap();
        }
        if nodes {
            fs::create_dir_all(r.join("dev/vfio")).unwrap();
            fs::write(r.join("dev/vfio/vfio"), "").unwrap();
            fs::write(r.join("dev/vfio/7"), "").unwrap();
        }
        if kvm {
            fs::create_dir_all(r.join("dev")).unwrap();
            fs::write(r.join("dev/kvm"), "").unwrap();
        }
        t
    }

    fn opts(root: &Path, extra: &str) -> HwOptions {
        let mut o = parse_args(&args(&format!("--bdf {BDF} {extra}")))
            .unwrap()
            .options()
            .unwrap();
        o.root = root.to_path_buf();
        o
    }

    fn failed(pf: &Preflight) -> Vec<(&'static str, String)> {
        pf.findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| (f.name, f.detail.clone()))
            .collect()
    }

    #[test]
    fn a_ready_device_passes_the_preflight() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let q = t.path().join("qemu");
        fs::write(&q, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&q, fs::Permissions::from_mode(0o755)).unwrap();
        let o = opts(t.path(), "");
        let pf = preflight(&o, Some(&q), None, None);
        assert!(pf.ok(), "{:?}", pf.findings);
        assert_eq!(pf.id.as_deref(), Some("1b36:0015"));
        assert!(!pf.kvm);
        let kvm = pf.findings.iter().find(|f| f.name == "kvm").unwrap();
        assert!(kvm.detail.contains("TCG"), "{kvm:?}");
    }

    #[test]
    fn a_kvm_node_that_is_not_kvm_means_tcg() {
        // A /dev/kvm that opens but answers no KVM ioctl (a plain file).
        let t = fake_root(Some(HOST_DRIVER), true, true, true);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        assert!(pf.ok() && !pf.kvm, "{:?}", pf.findings);
        let kvm = pf.findings.iter().find(|f| f.name == "kvm").unwrap();
        assert!(kvm.detail.contains("KVM_GET_API_VERSION"), "{kvm:?}");
        assert!(!preflight(&opts(t.path(), "--accel tcg"), None, None, None).kvm);
        // --accel kvm insists.
        for kvm_node in [true, false] {
            let t = fake_root(Some(HOST_DRIVER), true, true, kvm_node);
            let pf = preflight(&opts(t.path(), "--accel kvm"), None, None, None);
            assert_eq!(failed(&pf)[0].0, "kvm");
        }
    }

    #[test]
    fn a_missing_device_is_named() {
        let t = tempfile::tempdir().unwrap();
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "device");
        assert!(f[0].1.contains(BDF));
    }

    #[test]
    fn a_wrong_or_missing_binding_prints_the_fix() {
        for driver in [Some("nvidia"), None] {
            let t = fake_root(driver, true, true, false);
            let pf = preflight(&opts(t.path(), ""), None, None, None);
            let f: Vec<&Finding> = pf.findings.iter().filter(|f| !f.ok).collect();
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!(f[0].name, "driver");
            let fix = f[0].fix.as_deref().unwrap();
            assert!(fix.contains(&format!(
                "echo vfio-cxl-pci > /sys/bus/pci/devices/{BDF}/driver_override"
            )));
            assert!(fix.contains(&format!("echo {BDF} > /sys/bus/pci/drivers_probe")));
        }
    }

    #[test]
    fn no_iommu_group_is_named() {
        let t = fake_root(Some(HOST_DRIVER), false, true, false);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "iommu-group");
    }

    #[test]
    fn missing_vfio_nodes_are_named() {
        let t = fake_root(Some(HOST_DRIVER), true, false, false);
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|(n, _)| *n == "vfio-node"));
        assert!(f[0].1.contains("/dev/vfio/vfio") && f[1].1.contains("/dev/vfio/7"));
    }

    #[test]
    fn unopenable_vfio_nodes_are_named() {
        // A node that exists but does not open read-write (a directory
        // fails even for root, as a 0600 node does for a user).
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        fs::remove_file(t.path().join("dev/vfio/7")).unwrap();
        fs::create_dir(t.path().join("dev/vfio/7")).unwrap();
        let pf = preflight(&opts(t.path(), ""), None, None, None);
        let f: Vec<&Finding> = pf.findings.iter().filter(|f| !f.ok).collect();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].name, "vfio-node");
        assert!(f[0].fix.as_deref().unwrap().contains("memlock"));
    }

    #[test]
    fn a_group_shared_with_a_host_driver_is_not_viable() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let r = t.path();
        let other = r.join("sys/bus/pci/devices/0000:3b:00.1");
        fs::create_dir_all(&other).unwrap();
        let drv = r.join("sys/bus/pci/drivers/ixgbe");
        fs::create_dir_all(&drv).unwrap();
        symlink(&drv, other.join("driver")).unwrap();
        symlink(
            &other,
            r.join("sys/kernel/iommu_groups/7/devices/0000:3b:00.1"),
        )
        .unwrap();
        let pf = preflight(&opts(r, ""), None, None, None);
        let f = failed(&pf);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "iommu-group-viable");
        assert!(f[0].1.contains("0000:3b:00.1"));
    }

    #[test]
    fn missing_binaries_are_named() {
        let t = fake_root(Some(HOST_DRIVER), true, true, false);
        let r = t.path();
        let not_exec = r.join("qemu");
        fs::write(&not_exec, "").unwrap();
        let pf = preflight(
            &opts(r, ""),
            Some(&not_exec),
            Some(&r.join("vmlinuz")),
            Some(&r.join("initrd")),
        );
        let names: Vec<&str> = failed(&pf).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["qemu", "kernel", "initrd"]);
    }

    #[test]
    fn a_preflight_failure_exits_3_before_any_boot() {
        let t = fake_root(Some("nvidia"), true, true, false);
        let code = main(
            parse_args(&args(&format!(
                "--bdf {BDF} --sysfs-root {} --qemu /nonexistent/qemu",
                t.path().display()
            )))
            .unwrap(),
        );
        assert_eq!(code, EXIT_PREFLIGHT);
    }
}
