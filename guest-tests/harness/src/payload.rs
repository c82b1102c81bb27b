//! What runs inside the guest: modules to load, files to add, shell steps to
//! run, and the generated `/init` that does it and reports results.
//!
//! # The init protocol
//!
//! The kernel console is the first serial port (ttyS0, captured in
//! `console.log`). Results go to the **second** serial port (ttyS1,
//! `results.log`), which carries nothing else, so kernel messages can never
//! split a result line. Each line there is one of:
//!
//! ```text
//! VFIOCXL-BEGIN {"payload":"<name>","uptime":4.02}
//! VFIOCXL-RESULT {"kind":"module","name":"cxl_acpi","ok":true,"rc":0,"uptime":4.3}
//! VFIOCXL-RESULT {"kind":"fact","step":"<step>","key":"<key>","value":"<text>"}
//! VFIOCXL-RESULT {"kind":"step","name":"<step>","ok":false,"rc":1,"uptime":5.1}
//! VFIOCXL-DONE {"ok":true,"uptime":9.81,"tainted":0}
//! ```
//!
//! `/init` loads the modules in order (stopping at the first failure), then
//! runs the steps in order (stopping at the first failure), each step a
//! shell fragment sourced in a subshell with the helper `vfiocxl_fact KEY
//! VALUE` available, and `$VFIOCXL_STEP` set to the step's name. Its exit
//! status is the step's result. Last, DONE carries the overall result and
//! `/proc/sys/kernel/tainted`; closing ttyS1 waits until the UART has sent
//! everything, then `poweroff -f` ends the VM (QEMU runs with -no-reboot).
//!
//! From BEGIN on, a background loop prints `vfiocxl: heartbeat` on the
//! console every 2 s ([`console::HEARTBEAT`]): when it stops while QEMU
//! sits idle, the guest's timers have stopped firing
//! ([`crate::runner::RunOutcome::timers_stopped`]). It waits with the
//! shell's own `read -t` on a FIFO nobody writes, not with `sleep`: a
//! fork and exec of `sleep` every 2 s made the nested chain's one-vCPU L2
//! 3x slower in its coherence checks (the chain took 6.5 min, 4.4 min
//! with `read -t`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::console;
use crate::cpio::Archive;
use crate::error::{Error, Result};
use crate::kernel::KernelTree;

/// The device the results are written to in the guest.
pub const RESULTS_TTY: &str = "/dev/ttyS1";
/// Where the modules go in the initramfs: `<dir>/<name>.ko`.
pub const MODULES_DIR: &str = "/lib/modules/vfiocxl";
/// Where the step fragments go: `<dir>/<NN>.sh`.
pub const STEPS_DIR: &str = "/vfiocxl/steps";

/// Where an extra file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A file on the host (a test binary, a host-driver .ko; `.xz` is
    /// decompressed).
    Path { src: PathBuf },
    /// Literal text.
    Text { text: String },
    /// A module of the host driver as built for the kernel the run boots
    /// (`vfio-cxl-core.ko`; [`KernelTree::host_driver_dir`]).
    HostDriver { host_driver: String },
}

/// A file added to the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExtraFile {
    #[serde(flatten)]
    pub source: Source,
    /// Absolute path in the guest.
    pub dest: String,
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

/// One step: a shell fragment (POSIX sh, busybox applets).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Step {
    pub name: String,
    pub script: String,
}

/// Everything the guest runs. Deserializable from TOML for the CLI:
///
/// ```toml
/// name = "example"
/// modules = ["cxl_acpi", "cxl_pci"]     # dependencies are added
/// cmdline = ["cxl_core.dyndbg=+p"]
/// [[files]]
/// src = "target/debug/some-test"        # or: text = "..."
/// dest = "/opt/some-test"
/// mode = 0o755
/// [[steps]]
/// name = "run"
/// script = "/opt/some-test && vfiocxl_fact answer 42"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub name: String,
    /// Modules to load, in this order (their dependencies first).
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default)]
    pub files: Vec<ExtraFile>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Extra kernel command line words.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// The `report-dmesg` step: every kernel log line (with its `<level>`)
/// that contains one of `words`, as a `dmesg` fact.
pub fn report_dmesg_sh(words: &[&str]) -> String {
    let cases: Vec<String> = words.iter().map(|w| format!("*{w}*")).collect();
    format!(
        "dmesg -r >/tmp/dmesg\nwhile IFS= read -r l; do\n\tcase \"$l\" in {}) vfiocxl_fact dmesg \"$l\" ;; esac\ndone </tmp/dmesg\ntrue\n",
        cases.join(" | ")
    )
}

impl Payload {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_string());
        self
    }

    pub fn step(mut self, name: &str, script: &str) -> Self {
        self.steps.push(Step {
            name: name.to_string(),
            script: script.to_string(),
        });
        self
    }

    pub fn file(mut self, dest: &str, mode: u32, source: Source) -> Self {
        self.files.push(ExtraFile {
            source,
            dest: dest.to_string(),
            mode,
        });
        self
    }

    pub fn cmdline_arg(mut self, arg: &str) -> Self {
        self.cmdline.push(arg.to_string());
        self
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::msg(format!("payload: {e}")))
    }
}

/// A string as a single-quoted sh word.
/// Test support: panics, naming `what` and the shell's complaint, unless
/// `script` parses as sh (`sh -n`).
#[cfg(test)]
pub(crate) fn assert_valid_sh(what: &str, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .expect("run sh -n");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A string as the inside of a JSON string literal, for names the host
/// chose (module and step names, the payload name).
fn json_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_string()
}

/// The generated `/init`; `modules` are the names to insmod from
/// [`MODULES_DIR`], in order.
pub fn init_script(payload: &Payload, modules: &[String]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        r#"#!/bin/sh
# Generated by guest-harness for payload {name}. Protocol: guest-tests/harness/src/payload.rs.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
[ -e {tty} ] || mknod {tty} c 4 65
stty -F {tty} raw -echo 2>/dev/null
exec 3>{tty}
vfiocxl_nl='
'
vfiocxl_tab=$(printf '\t')
vfiocxl_cr=$(printf '\r')
vfiocxl_up() {{ read -r VFIOCXL_UP vfiocxl_idle </proc/uptime; }}
vfiocxl_esc() {{
	case "$1" in
	*'"'* | *'\'* | *"$vfiocxl_nl"* | *"$vfiocxl_tab"* | *"$vfiocxl_cr"*)
		vfiocxl_r=$(printf '%s' "$1" | tr '\n\t\r' '   ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g') ;;
	*) vfiocxl_r=$1 ;;
	esac
}}
vfiocxl_fact() {{
	vfiocxl_esc "$VFIOCXL_STEP"; vfiocxl_s=$vfiocxl_r
	vfiocxl_esc "$1"; vfiocxl_k=$vfiocxl_r
	vfiocxl_esc "$2"
	printf 'VFIOCXL-RESULT {{"kind":"fact","step":"%s","key":"%s","value":"%s"}}\n' "$vfiocxl_s" "$vfiocxl_k" "$vfiocxl_r" >&3
}}
# have PATH: it exists (no fork). wait_for TENTHS CMD...: true once CMD
# is, polling every 0.1 s (each poll forks sleep).
have() {{ [ -e "$1" ]; }}
wait_for() {{
	local tenths=$1 waited=0; shift
	while [ $waited -lt $tenths ]; do "$@" && return 0; sleep 0.1; waited=$((waited + 1)); done
	"$@"
}}
# cfg_rd SIZE BDF OFF: the SIZE-byte (1, 2 or 4) config register of BDF at
# OFF, in decimal. cfg_wr SIZE BDF OFF VALUE: one config write of SIZE
# bytes at OFF (aligned): dd copies them from a file in one write(2),
# which sysfs turns into one access of that size.
cfg_rd() {{ od -An -tu$1 -j$3 -N$1 /sys/bus/pci/devices/$2/config | tr -d ' '; }}
cfg_wr() {{
	local v=$4 k=0 b=
	while [ $k -lt $1 ]; do b="$b\\$(printf %o $((v & 255)))"; v=$((v >> 8)); k=$((k + 1)); done
	printf "$b" >/tmp/vfiocxl-cfg.$$ &&
		dd if=/tmp/vfiocxl-cfg.$$ of=/sys/bus/pci/devices/$2/config bs=$1 seek=$(($3 / $1)) count=1 conv=notrunc 2>/dev/null
}}
# pcie_cap BDF: prints the offset of its PCI Express capability (ID 0x10);
# false if it has no capability list (Status bit 4), or the (bounded)
# list has none, or its config space cannot be read.
pcie_cap() {{
	local p n=0 st
	st=$(cfg_rd 2 $1 6) && [ -n "$st" ] && [ $((st & 16)) -ne 0 ] || return 1
	p=$(cfg_rd 1 $1 52) && [ -n "$p" ] || return 1
	p=$((p & 252))
	while [ $p -ne 0 ] && [ $n -lt 48 ]; do
		[ "$(cfg_rd 1 $1 $p)" = 16 ] && {{ echo $p; return 0; }}
		p=$(cfg_rd 1 $1 $((p + 1))) && [ -n "$p" ] || return 1
		p=$((p & 252)); n=$((n + 1))
	done
	return 1
}}
# port_decoders: the CXL core has enumerated port decoders.
port_decoders() {{ have /sys/bus/cxl/devices/port*/decoder*; }}
# find_accels [BUS]: the functions with the PCI IDs of cxl-accel and
# vfio-user-cxl (1b36:0015), all or those below the root ports of host
# bridge pci0000:BUS: $accels (their addresses), $naccels, $dev (the
# last one). False if there is none. No fork.
find_accels() {{
	accels= naccels=0 dev=
	set -- ${{1:+/sys/devices/pci0000:$1/0000:$1:*/0000:*}}
	[ $# -gt 0 ] || set -- /sys/bus/pci/devices/*
	for vfiocxl_d; do
		[ -r $vfiocxl_d/vendor ] || continue
		read -r vfiocxl_v <$vfiocxl_d/vendor && read -r vfiocxl_p <$vfiocxl_d/device || continue
		[ "$vfiocxl_v:$vfiocxl_p" = 0x1b36:0x0015 ] || continue
		dev=${{vfiocxl_d##*/}}; accels="$accels $dev"; naccels=$((naccels + 1))
	done
	[ -n "$dev" ]
}}
vfiocxl_record() {{
	if [ "$3" -eq 0 ]; then vfiocxl_ok=true; else vfiocxl_ok=false; fi
	vfiocxl_up
	printf 'VFIOCXL-RESULT {{"kind":"%s","name":"%s","ok":%s,"rc":%d,"uptime":%s}}\n' "$1" "$2" "$vfiocxl_ok" "$3" "$VFIOCXL_UP" >&3
}}
vfiocxl_up
printf 'VFIOCXL-BEGIN {{"payload":"%s","uptime":%s}}\n' {jname} "$VFIOCXL_UP" >&3
echo "vfiocxl: init reached at $VFIOCXL_UP s"
mkfifo /tmp/vfiocxl-beat
( exec 4<>/tmp/vfiocxl-beat; while :; do read -t {beat_secs} vfiocxl_x <&4; echo "{beat}"; done ) 3>&- &
VFIOCXL_OK=true
"#,
        name = payload.name.replace('\n', " "),
        tty = RESULTS_TTY,
        jname = sh_quote(&json_inner(&payload.name)),
        beat = console::HEARTBEAT,
        beat_secs = console::HEARTBEAT_SECS,
    ));
    for m in modules {
        s.push_str(&format!(
            "if $VFIOCXL_OK; then\n\tinsmod {dir}/{m}.ko; rc=$?\n\tvfiocxl_record module {jm} $rc\n\t[ $rc -eq 0 ] || VFIOCXL_OK=false\nfi\n",
            dir = MODULES_DIR,
            jm = sh_quote(&json_inner(m)),
        ));
    }
    for (i, step) in payload.steps.iter().enumerate() {
        s.push_str(&format!(
            "if $VFIOCXL_OK; then\n\tVFIOCXL_STEP={name}\n\techo \"vfiocxl: step $VFIOCXL_STEP\"\n\t( . {dir}/{i:02}.sh ); rc=$?\n\tvfiocxl_record step {jname} $rc\n\t[ $rc -eq 0 ] || VFIOCXL_OK=false\nfi\n",
            name = sh_quote(&step.name),
            dir = STEPS_DIR,
            jname = sh_quote(&json_inner(&step.name)),
        ));
    }
    s.push_str(
        r#"vfiocxl_up
# One read() of the whole value: a sysctl file answers a read at a
# nonzero offset with EOF, and busybox's read builtin reads a byte at a
# time (it got the first digit only: "1" for 12288).
vfiocxl_taint=$(cat /proc/sys/kernel/tainted)
printf 'VFIOCXL-DONE {"ok":%s,"uptime":%s,"tainted":%s}\n' "$VFIOCXL_OK" "$VFIOCXL_UP" "$vfiocxl_taint" >&3
exec 3>&-
echo "vfiocxl: done at $VFIOCXL_UP s"
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
"#,
    );
    s
}

/// Everything the initramfs is made from, already resolved to bytes.
#[derive(Debug, Clone)]
pub struct Initramfs {
    pub archive: Archive,
    /// Modules in load order (dependencies included).
    pub modules: Vec<String>,
}

/// Builds the initramfs: busybox, /init, the modules (with dependencies,
/// decompressed), the step fragments and the extra files.
pub fn build_initramfs(
    payload: &Payload,
    kernel: &KernelTree,
    busybox: &[u8],
) -> Result<Initramfs> {
    let resolved = kernel.modules_dep()?.resolve(&payload.modules)?;
    let mut module_files = Vec::new();
    for m in &resolved.load {
        let bytes = kernel
            .module_bytes(&m.path)
            .map_err(|e| e.context(format!("module {}", m.name)))?;
        module_files.push((m.name.clone(), bytes));
    }
    let files = payload
        .files
        .iter()
        .map(|f| {
            let bytes = match &f.source {
                Source::Path { src } => crate::tools::read_maybe_xz(src)?,
                Source::Text { text } => text.clone().into_bytes(),
                Source::HostDriver { host_driver } => {
                    crate::tools::read_maybe_xz(&kernel.host_driver_dir().join(host_driver))?
                }
            };
            Ok((f.dest.clone(), f.mode, bytes))
        })
        .collect::<Result<Vec<_>>>()?;
    assemble(payload, busybox, module_files, files)
}

/// The pure part of [`build_initramfs`] (tested without a kernel tree).
pub fn assemble(
    payload: &Payload,
    busybox: &[u8],
    modules: Vec<(String, Vec<u8>)>,
    files: Vec<(String, u32, Vec<u8>)>,
) -> Result<Initramfs> {
    let mut a = Archive::new();
    for dir in [
        "proc", "sys", "dev", "tmp", "run", "sbin", "usr/bin", "usr/sbin",
    ] {
        a.add_dir(dir, 0o755)?;
    }
    a.add_char_dev("dev/console", 0o600, 5, 1)?;
    a.add_file("bin/busybox", 0o755, busybox.to_vec())?;
    a.add_symlink("bin/sh", "busybox")?;
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    for (name, bytes) in modules {
        a.add_file(&format!("{MODULES_DIR}/{name}.ko"), 0o644, bytes)?;
    }
    for (i, step) in payload.steps.iter().enumerate() {
        a.add_file(
            &format!("{STEPS_DIR}/{i:02}.sh"),
            0o644,
            format!("# step {}\n{}\n", step.name, step.script).into_bytes(),
        )?;
    }
    for (dest, mode, bytes) in files {
        if !dest.starts_with('/') {
            return Err(Error::msg(format!(
                "payload {}: file destination {dest:?} must be absolute",
                payload.name
            )));
        }
        a.add_file(&dest, mode, bytes)?;
    }
    a.add_file("init", 0o755, init_script(payload, &names).into_bytes())?;
    Ok(Initramfs {
        archive: a,
        modules: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "broken step")]
    fn a_script_that_does_not_parse_is_caught() {
        assert_valid_sh("broken step", "if true; then echo (");
    }
    use crate::console::Record;

    fn payload() -> Payload {
        Payload::new("demo")
            .module("cxl_acpi")
            .step("first", "echo hi")
            .step("it's quoted", "vfiocxl_fact k v")
            .file("/opt/x", 0o755, Source::Text { text: "x".into() })
    }

    #[test]
    fn init_loads_modules_in_order_and_sources_steps() {
        let init = init_script(&payload(), &["libnvdimm".into(), "cxl_acpi".into()]);
        let l = init
            .find("insmod /lib/modules/vfiocxl/libnvdimm.ko")
            .unwrap();
        let c = init
            .find("insmod /lib/modules/vfiocxl/cxl_acpi.ko")
            .unwrap();
        let s0 = init.find("( . /vfiocxl/steps/00.sh )").unwrap();
        let s1 = init.find("( . /vfiocxl/steps/01.sh )").unwrap();
        let done = init.find("VFIOCXL-DONE").unwrap();
        assert!(l < c && c < s0 && s0 < s1 && s1 < done);
        assert!(init.contains(r"VFIOCXL_STEP='it'\''s quoted'"), "{init}");
        assert!(init.starts_with("#!/bin/sh\n"));
    }

    /// The generated script is valid sh (parsed by `sh -n`).
    #[test]
    fn init_is_valid_sh() {
        let init = init_script(&payload(), &["a".into()]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init");
        std::fs::write(&path, init).unwrap();
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// The helpers produce JSON the host parser accepts, for awkward values.
    #[test]
    fn fact_helper_output_is_json() {
        let init = init_script(&payload(), &[]);
        // Take the helper definitions only and call them with fd 3 = stdout.
        let helpers: String = init
            .lines()
            .skip_while(|l| !l.starts_with("vfiocxl_nl="))
            .take_while(|l| !l.starts_with("vfiocxl_up\n") && *l != "vfiocxl_up")
            .map(|l| format!("{l}\n"))
            .collect();
        let script = format!(
            "{helpers}VFIOCXL_STEP='s\"1'\nvfiocxl_fact key 'a \"quoted\" \\\\ back\nslash\ttab'\nvfiocxl_fact plain 'no escapes: 0x10'\nvfiocxl_record step 'st' 3\n"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3>&1\n{script}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let report = crate::console::parse_results(&text);
        assert!(report.malformed.is_empty(), "{text}");
        assert_eq!(report.facts("key"), ["a \"quoted\" \\\\ back slash tab"]);
        assert_eq!(report.fact("plain"), Some("no escapes: 0x10"));
        assert_eq!(report.records.len(), 3, "{text}");
        assert!(
            matches!(
                report.records[2],
                Record::Step {
                    uptime: Some(_),
                    ..
                }
            ),
            "{text}"
        );
        assert_eq!(report.failed_steps(), ["st"]);
    }

    #[test]
    fn assembled_archive_has_the_pieces() {
        let ir = assemble(
            &payload(),
            b"BB",
            vec![("cxl_acpi".into(), b"KO".to_vec())],
            vec![("/opt/x".into(), 0o755, b"x".to_vec())],
        )
        .unwrap();
        let a = &ir.archive;
        assert_eq!(a.file("/bin/busybox"), Some(&b"BB"[..]));
        assert_eq!(a.file("/lib/modules/vfiocxl/cxl_acpi.ko"), Some(&b"KO"[..]));
        assert_eq!(a.file("/opt/x"), Some(&b"x"[..]));
        assert!(a.file("/vfiocxl/steps/01.sh").is_some());
        assert!(a.paths().any(|p| p == "dev/console"));
        // Deterministic: the same inputs give the same bytes.
        let again = assemble(
            &payload(),
            b"BB",
            vec![("cxl_acpi".into(), b"KO".to_vec())],
            vec![("/opt/x".into(), 0o755, b"x".to_vec())],
        )
        .unwrap();
        assert_eq!(a.to_bytes(), again.archive.to_bytes());
    }

    #[test]
    fn payload_from_toml() {
        let p = Payload::from_toml(
            r#"
name = "t"
modules = ["cxl_pci"]
cmdline = ["a=b"]
[[files]]
text = "hello"
dest = "/etc/hello"
[[files]]
src = "/bin/true"
dest = "/opt/true"
mode = 0o755
[[steps]]
name = "s"
script = "true"
"#,
        )
        .unwrap();
        assert_eq!(p.modules, ["cxl_pci"]);
        assert_eq!(p.files[0].mode, 0o644);
        assert_eq!(
            p.files[1].source,
            Source::Path {
                src: "/bin/true".into()
            }
        );
        assert!(Payload::from_toml("name = \"t\"\nbogus = 1\n").is_err());
    }
}
