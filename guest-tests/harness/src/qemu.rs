//! The QEMU command line, built from typed pieces: the machine, a CXL
//! topology, extra devices, and the boot files. [`Vm::args`] is pure, so
//! command lines are unit-tested without starting QEMU.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Kernel command line used for every guest (the payload adds words).
/// loglevel=5 so WARN()s (KERN_WARNING) reach the console and are caught;
/// panic=-1 reboots at once on a panic, which -no-reboot turns into exit.
/// `sysctl.kernel.timer_migration=0` keeps each CPU's timers on its own
/// local APIC: with the timer migration hierarchy on, 2-vCPU guests under
/// TCG lost an idle CPU's timers (an msleep() in a bus reset never woke)
/// in 5 of 24 `host-driver-rebind` runs, with it off in 1 of 36
/// (docs/guest-harness.md).
pub const DEFAULT_CMDLINE: &[&str] = &[
    "console=ttyS0",
    "loglevel=5",
    "panic=-1",
    "sysctl.kernel.timer_migration=0",
];

/// The machine: q35 with CXL, TCG, the "bare metal" CPU.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Machine {
    /// `-M` type (CXL needs q35).
    pub kind: String,
    pub cxl: bool,
    pub accel: String,
    /// `-cpu`; `max,-hypervisor` hides the hypervisor CPUID bit, which
    /// Linux's CXL region code needs (docs/guest-harness.md).
    pub cpu: String,
    pub smp: u32,
    pub memory_mib: u64,
    /// `maxmem` and `slots` for memory hotplug (kmem onlining CXL memory).
    pub maxmem_mib: Option<u64>,
    pub slots: Option<u32>,
    /// `-device intel-iommu,intremap=off` before every other device (VFIO
    /// needs an IOMMU: Debian's kernel has no no-IOMMU mode). Without
    /// interrupt remapping, `vfio_iommu_type1` needs
    /// `allow_unsafe_interrupts=1`; the guest also needs `intel_iommu=on`.
    pub iommu: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            kind: "q35".into(),
            cxl: true,
            accel: "tcg".into(),
            cpu: "max,-hypervisor".into(),
            smp: 2,
            memory_mib: 2048,
            maxmem_mib: Some(8192),
            slots: Some(8),
            iommu: false,
        }
    }
}

/// What sits below a root port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Endpoint {
    /// QEMU's `cxl-type3` with volatile memory from a shared file in the
    /// run's scratch directory (`<scratch>/<id>.raw`).
    Type3Volatile { id: String, size_mib: u64 },
    /// The project's `cxl-accel` (docs/devices/cxl-accel.md) with its
    /// device memory in a shared file in the run's scratch directory
    /// (`<scratch>/<id>.raw`, see [`backing_file`]), pre-committed by
    /// firmware (the default `precommit=on`); `props` are more
    /// `name=value` properties of the device (e.g. `cxl-reset=off`).
    Accel {
        id: String,
        size_mib: u64,
        #[serde(default)]
        props: Vec<String>,
    },
    /// Any other device: the arguments after `-device`, with `{bus}`
    /// replaced by the root port's id (e.g. `cxl-accel,bus={bus},id=acc0`).
    Device { args: String },
}

/// The memory-backend file of a `Type3Volatile` or `Accel` endpoint `id`:
/// the host may fill it before the boot and read it afterwards.
pub fn backing_file(scratch: &Path, id: &str) -> PathBuf {
    scratch.join(format!("{id}.raw"))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootPort {
    pub id: String,
    /// The port number (what a host bridge decoder's target list names).
    pub port: u32,
    pub chassis: u32,
    pub slot: u32,
    pub endpoint: Option<Endpoint>,
}

/// A CXL host bridge (`pxb-cxl`) with its root ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostBridge {
    pub id: String,
    pub bus_nr: u32,
    /// `hdm_for_passthrough=on`: give a one-port host bridge a real HDM
    /// decoder (needed for firmware-style precommitted regions).
    #[serde(default)]
    pub hdm_for_passthrough: bool,
    #[serde(default)]
    pub root_ports: Vec<RootPort>,
}

/// A CXL fixed memory window (`-M cxl-fmw.N...`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Host bridge ids the window interleaves over.
    pub targets: Vec<String>,
    pub size_mib: u64,
    /// Interleave granularity, e.g. "8k".
    pub granularity: Option<String>,
}

/// The CXL part of the machine. Deserializable from TOML for the CLI
/// (see docs/guest-harness.md for an example).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub host_bridges: Vec<HostBridge>,
    #[serde(default)]
    pub windows: Vec<Window>,
    /// Extra `-device` arguments (not CXL-specific).
    #[serde(default)]
    pub devices: Vec<String>,
}

impl Topology {
    /// No CXL devices at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `prop` (e.g. `precommit=off`) to every `cxl-accel` of the
    /// topology.
    pub fn accel_prop(&mut self, prop: &str) {
        for rp in self
            .host_bridges
            .iter_mut()
            .flat_map(|hb| &mut hb.root_ports)
        {
            if let Some(Endpoint::Accel { props, .. }) = &mut rp.endpoint {
                props.push(prop.into());
            }
        }
    }

    /// One host bridge, one root port, one volatile type-3 device of
    /// `size_mib`, one 4 GiB window: the topology of research/environment.md.
    pub fn single_type3(size_mib: u64) -> Self {
        Self {
            host_bridges: vec![HostBridge {
                id: "cxl.1".into(),
                bus_nr: 12,
                hdm_for_passthrough: false,
                root_ports: vec![RootPort {
                    id: "root_port13".into(),
                    port: 0,
                    chassis: 0,
                    slot: 2,
                    endpoint: Some(Endpoint::Type3Volatile {
                        id: "cxl-vmem0".into(),
                        size_mib,
                    }),
                }],
            }],
            windows: vec![Window {
                targets: vec!["cxl.1".into()],
                size_mib: 4096,
                granularity: None,
            }],
            devices: Vec::new(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::msg(format!("topology: {e}")))
    }

    /// Checks references: window targets name host bridges, ids unique.
    pub fn validate(&self) -> Result<()> {
        let mut ids = std::collections::BTreeSet::new();
        for hb in &self.host_bridges {
            if !ids.insert(hb.id.as_str()) {
                return Err(Error::msg(format!("topology: duplicate id {}", hb.id)));
            }
            for rp in &hb.root_ports {
                if !ids.insert(rp.id.as_str()) {
                    return Err(Error::msg(format!("topology: duplicate id {}", rp.id)));
                }
            }
        }
        for (i, w) in self.windows.iter().enumerate() {
            if w.targets.is_empty() {
                return Err(Error::msg(format!("topology: window {i} has no targets")));
            }
            for t in &w.targets {
                if !self.host_bridges.iter().any(|hb| &hb.id == t) {
                    return Err(Error::msg(format!(
                        "topology: window {i} targets {t:?}, which is not a host bridge"
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn args(&self, scratch: &Path, out: &mut Vec<String>, machine_opts: &mut Vec<String>) {
        for hb in &self.host_bridges {
            let mut d = format!("pxb-cxl,bus_nr={},bus=pcie.0,id={}", hb.bus_nr, hb.id);
            if hb.hdm_for_passthrough {
                d.push_str(",hdm_for_passthrough=on");
            }
            out.extend(["-device".into(), d]);
            for rp in &hb.root_ports {
                out.extend([
                    "-device".into(),
                    format!(
                        "cxl-rp,port={},bus={},id={},chassis={},slot={}",
                        rp.port, hb.id, rp.id, rp.chassis, rp.slot
                    ),
                ]);
                match &rp.endpoint {
                    None => {}
                    Some(Endpoint::Type3Volatile { id, size_mib }) => {
                        let mem = format!("{id}-mem");
                        out.extend([
                            "-object".into(),
                            format!(
                                "memory-backend-file,id={mem},share=on,mem-path={},size={size_mib}M",
                                backing_file(scratch, id).display()
                            ),
                            "-device".into(),
                            format!("cxl-type3,bus={},volatile-memdev={mem},id={id}", rp.id),
                        ]);
                    }
                    Some(Endpoint::Accel {
                        id,
                        size_mib,
                        props,
                    }) => {
                        let mem = format!("{id}-mem");
                        out.extend([
                            "-object".into(),
                            format!(
                                "memory-backend-file,id={mem},share=on,mem-path={},size={size_mib}M",
                                backing_file(scratch, id).display()
                            ),
                            "-device".into(),
                            std::iter::once(format!("cxl-accel,bus={},memdev={mem},id={id}", rp.id))
                                .chain(props.iter().cloned())
                                .collect::<Vec<_>>()
                                .join(","),
                        ]);
                    }
                    Some(Endpoint::Device { args }) => {
                        out.extend(["-device".into(), args.replace("{bus}", &rp.id)]);
                    }
                }
            }
        }
        for (i, w) in self.windows.iter().enumerate() {
            for (t, target) in w.targets.iter().enumerate() {
                machine_opts.push(format!("cxl-fmw.{i}.targets.{t}={target}"));
            }
            machine_opts.push(format!("cxl-fmw.{i}.size={}M", w.size_mib));
            if let Some(g) = &w.granularity {
                machine_opts.push(format!("cxl-fmw.{i}.interleave-granularity={g}"));
            }
        }
        for d in &self.devices {
            out.extend(["-device".into(), d.clone()]);
        }
    }
}

/// A whole VM: binary, firmware, machine, topology, boot files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    pub qemu: PathBuf,
    /// `-L` directories (`cargo xtask qemu-path --firmware-args`).
    pub firmware_dirs: Vec<PathBuf>,
    pub machine: Machine,
    pub topology: Topology,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Words after [`DEFAULT_CMDLINE`].
    pub cmdline: Vec<String>,
    /// Anything else, verbatim.
    pub extra_args: Vec<String>,
}

impl Vm {
    /// The full argument list. `console` and `results` are the files the
    /// two serial ports write to; `scratch` holds memory backend files.
    pub fn args(&self, console: &Path, results: &Path, scratch: &Path) -> Vec<String> {
        let m = &self.machine;
        let mut out: Vec<String> = Vec::new();
        for dir in &self.firmware_dirs {
            out.extend(["-L".into(), dir.display().to_string()]);
        }
        let mut machine_opts = Vec::new();
        let mut devices = Vec::new();
        self.topology.args(scratch, &mut devices, &mut machine_opts);
        let mut machine = m.kind.clone();
        if m.cxl {
            machine.push_str(",cxl=on");
        }
        out.extend(["-M".into(), machine]);
        // A second -M adds to the machine; the cxl-fmw.* keys must all be
        // in one option ("Parameters 'cxl-fmw.*' used inconsistently").
        if !machine_opts.is_empty() {
            out.extend(["-M".into(), machine_opts.join(",")]);
        }
        let mut mem = format!("{}M", m.memory_mib);
        if let Some(max) = m.maxmem_mib {
            mem.push_str(&format!(",maxmem={max}M"));
        }
        if let Some(slots) = m.slots {
            mem.push_str(&format!(",slots={slots}"));
        }
        out.extend([
            "-accel".into(),
            m.accel.clone(),
            "-cpu".into(),
            m.cpu.clone(),
            "-smp".into(),
            m.smp.to_string(),
            "-m".into(),
            mem,
            "-nographic".into(),
            "-no-reboot".into(),
            "-nodefaults".into(),
            "-serial".into(),
            format!("file:{}", console.display()),
            "-serial".into(),
            format!("file:{}", results.display()),
            "-monitor".into(),
            "none".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            DEFAULT_CMDLINE
                .iter()
                .map(|s| s.to_string())
                .chain(self.cmdline.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        ]);
        if m.iommu {
            out.extend(["-device".into(), "intel-iommu,intremap=off".into()]);
        }
        out.extend(devices);
        // For the runner's look at a hung guest's vCPUs before it kills;
        // not where the kernel has no AF_UNIX (the debug test kernel, in
        // the iommufd chain's L1: QEMU would refuse to start).
        if Path::new("/proc/net/unix").exists() {
            out.extend([
                "-qmp".into(),
                format!(
                    "unix:{},server=on,wait=off",
                    scratch.join(crate::runner::DIAG_QMP_SOCKET).display()
                ),
            ]);
        }
        out.extend(self.extra_args.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(topology: Topology) -> Vm {
        Vm {
            qemu: "/q".into(),
            firmware_dirs: vec!["/usr/share/seabios".into()],
            machine: Machine::default(),
            topology,
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd".into(),
            cmdline: vec!["cxl_core.dyndbg=+p".into()],
            extra_args: vec!["-d".into(), "guest_errors".into()],
        }
    }

    #[test]
    fn single_type3_command_line() {
        let t = Topology::single_type3(256);
        t.validate().unwrap();
        let args = vm(t).args(
            Path::new("/s/c.log"),
            Path::new("/s/r.log"),
            Path::new("/s"),
        );
        let line = args.join(" ");
        let want = "-L /usr/share/seabios -M q35,cxl=on -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4096M \
-accel tcg -cpu max,-hypervisor -smp 2 -m 2048M,maxmem=8192M,slots=8 -nographic -no-reboot -nodefaults \
-serial file:/s/c.log -serial file:/s/r.log -monitor none -kernel /k/vmlinuz -initrd /k/initrd \
-append console=ttyS0 loglevel=5 panic=-1 sysctl.kernel.timer_migration=0 cxl_core.dyndbg=+p \
-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1 \
-device cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2 \
-object memory-backend-file,id=cxl-vmem0-mem,share=on,mem-path=/s/cxl-vmem0.raw,size=256M \
-device cxl-type3,bus=root_port13,volatile-memdev=cxl-vmem0-mem,id=cxl-vmem0 \
-qmp unix:/s/qmp-diag.sock,server=on,wait=off -d guest_errors";
        assert_eq!(line, want);
        // -append is one argument.
        assert!(args.contains(
            &"console=ttyS0 loglevel=5 panic=-1 sysctl.kernel.timer_migration=0 cxl_core.dyndbg=+p"
                .to_string()
        ));
    }

    #[test]
    fn topology_from_toml_with_a_custom_device() {
        let t = Topology::from_toml(
            r#"
devices = ["virtio-rng-pci"]
[[host_bridges]]
id = "hb0"
bus_nr = 52
hdm_for_passthrough = true
[[host_bridges.root_ports]]
id = "rp0"
port = 0
chassis = 0
slot = 1
endpoint = { type = "device", args = "cxl-accel,bus={bus},id=acc0" }
[[windows]]
targets = ["hb0"]
size_mib = 1024
granularity = "8k"
"#,
        )
        .unwrap();
        t.validate().unwrap();
        let args = vm(t).args(Path::new("c"), Path::new("r"), Path::new("s"));
        let line = args.join(" ");
        assert!(line.contains("-device pxb-cxl,bus_nr=52,bus=pcie.0,id=hb0,hdm_for_passthrough=on"));
        assert!(line.contains("-device cxl-accel,bus=rp0,id=acc0"));
        assert!(line.contains(
            "-M cxl-fmw.0.targets.0=hb0,cxl-fmw.0.size=1024M,cxl-fmw.0.interleave-granularity=8k"
        ));
        assert!(line.ends_with(
            "-device virtio-rng-pci -qmp unix:s/qmp-diag.sock,server=on,wait=off -d guest_errors"
        ));
    }

    #[test]
    fn accel_endpoint_and_iommu() {
        let t = Topology::from_toml(
            r#"
[[host_bridges]]
id = "cxl.1"
bus_nr = 12
hdm_for_passthrough = true
[[host_bridges.root_ports]]
id = "rp0"
port = 0
chassis = 0
slot = 2
endpoint = { type = "accel", id = "accel0", size_mib = 256 }
[[windows]]
targets = ["cxl.1"]
size_mib = 4096
"#,
        )
        .unwrap();
        let mut vm = vm(t);
        vm.machine.iommu = true;
        let line = vm
            .args(Path::new("c"), Path::new("r"), Path::new("/s"))
            .join(" ");
        assert!(
            line.contains(
                "-device intel-iommu,intremap=off -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1,hdm_for_passthrough=on \
-device cxl-rp,port=0,bus=cxl.1,id=rp0,chassis=0,slot=2 \
-object memory-backend-file,id=accel0-mem,share=on,mem-path=/s/accel0.raw,size=256M \
-device cxl-accel,bus=rp0,memdev=accel0-mem,id=accel0"
            ),
            "{line}"
        );
        assert_eq!(
            backing_file(Path::new("/s"), "accel0"),
            Path::new("/s/accel0.raw")
        );
    }

    #[test]
    fn bad_topologies_are_rejected() {
        let mut t = Topology::single_type3(256);
        t.windows[0].targets = vec!["nope".into()];
        assert!(t.validate().unwrap_err().to_string().contains("nope"));
        assert!(Topology::from_toml("[[windows]]\nsize_mib = 1\n").is_err());
        assert!(Topology::from_toml("bogus = 1\n").is_err());
    }
}
