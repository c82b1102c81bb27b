//! The guest's CXL topology as a tree, from what the guest's own sysfs
//! says: [`STEP_SCRIPT`] reports where every device of `/sys/bus/cxl`
//! sits in the device hierarchy (and the upstream port of each port), the
//! attributes come from [`crate::sysfs::STEP_SCRIPT`]. Used by the main
//! job's report (`guest-harness demo`).

use std::collections::BTreeMap;

use crate::console::GuestReport;
use crate::sysfs::CxlSysfs;

/// Reports `topo.path` (the resolved sysfs path) of every CXL device,
/// `topo.<name>.uport` for ports and endpoints, and the PCI driver of
/// every memdev's device (`topo.<mem>.pci_driver`).
pub const STEP_SCRIPT: &str = r#"for d in /sys/bus/cxl/devices/*; do
	n=${d##*/}
	vfiocxl_fact topo.path "$(readlink -f $d)"
	if [ -e $d/uport ]; then l=$(readlink $d/uport); vfiocxl_fact "topo.$n.uport" "${l##*/}"; fi
done
for m in /sys/bus/cxl/devices/mem*; do
	[ -e $m ] || continue
	p=$(readlink -f $m)
	p=${p%/*}
	if [ -e $p/driver ]; then l=$(readlink $p/driver); vfiocxl_fact "topo.${m##*/}.pci_driver" "${l##*/}"; fi
done
true
"#;

/// One device in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The resolved sysfs path (`/sys/devices/...`).
    pub path: String,
    pub parent: Option<String>,
    pub children: Vec<String>,
}

/// The CXL devices and where they hang.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    pub sysfs: CxlSysfs,
    /// `topo.<name>.<key>` facts (uport, pci_driver).
    pub extra: BTreeMap<(String, String), String>,
}

/// Sort key: decoders first, then by kind and number (`port2` < `port10`).
fn order(name: &str) -> (u8, String, u64, u64) {
    let kind = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let nums: Vec<u64> = name[kind.len()..]
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    let rank = match kind {
        "decoder" => 0,
        "region" => 1,
        "dax_region" => 2,
        "port" => 3,
        "endpoint" => 4,
        "mem" => 5,
        _ => 6,
    };
    (
        rank,
        kind.to_string(),
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

/// `0x10000000` -> `256 MiB`.
pub fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes:#x} bytes")
    }
}

impl Tree {
    pub fn from_report(report: &GuestReport) -> Self {
        let sysfs = CxlSysfs::from_report(report);
        let mut extra = BTreeMap::new();
        for (k, v) in report.all_facts() {
            let Some(rest) = k.strip_prefix("topo.") else {
                continue;
            };
            if let Some((name, key)) = rest.rsplit_once('.') {
                extra.insert((name.to_string(), key.to_string()), v.to_string());
            }
        }
        let paths: Vec<&str> = report.facts("topo.path");
        let name_of = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let names: Vec<String> = paths.iter().map(|p| name_of(p)).collect();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for (path, name) in paths.iter().zip(&names) {
            // The nearest ancestor that is a CXL device too.
            let parent = path
                .rsplit('/')
                .skip(1)
                .find(|c| names.iter().any(|n| n == c))
                .map(str::to_string);
            nodes.insert(
                name.clone(),
                Node {
                    name: name.clone(),
                    path: path.to_string(),
                    parent,
                    children: Vec::new(),
                },
            );
        }
        // A memdev sits below its PCI device; show it under the endpoint
        // whose upstream port it is.
        for name in &names {
            if nodes[name].parent.is_none() {
                let endpoint = extra
                    .iter()
                    .find(|((n, k), v)| k == "uport" && *v == name && n.starts_with("endpoint"))
                    .map(|((n, _), _)| n.clone());
                if let Some(e) = endpoint.filter(|e| nodes.contains_key(e)) {
                    nodes.get_mut(name).expect("present").parent = Some(e);
                }
            }
        }
        let links: Vec<(String, String)> = nodes
            .values()
            .filter_map(|n| Some((n.parent.clone()?, n.name.clone())))
            .collect();
        for (parent, child) in links {
            nodes
                .get_mut(&parent)
                .expect("parents are nodes")
                .children
                .push(child);
        }
        for n in nodes.values_mut() {
            n.children.sort_by_key(|c| order(c));
        }
        Self {
            nodes,
            sysfs,
            extra,
        }
    }

    fn attr(&self, dev: &str, a: &str) -> Option<&str> {
        self.sysfs.attr(dev, a).filter(|v| !v.is_empty())
    }

    fn extra(&self, dev: &str, key: &str) -> Option<&str> {
        self.extra
            .get(&(dev.to_string(), key.to_string()))
            .map(String::as_str)
    }

    /// `start+size` of a decoder or region as `0x..-0x.. (N MiB)`.
    fn range(&self, dev: &str, start_attr: &str) -> Option<String> {
        let start = self.sysfs.attr_u64(dev, start_attr)?;
        let size = self.sysfs.attr_u64(dev, "size")?;
        if size == 0 {
            return None;
        }
        Some(format!(
            "{start:#x}-{:#x} ({})",
            start + size - 1,
            size_text(size)
        ))
    }

    /// A decoder without memory behind it and outside any region.
    pub fn idle_decoder(&self, name: &str) -> bool {
        name.starts_with("decoder")
            && self.sysfs.attr_u64(name, "size").unwrap_or(0) == 0
            && self.attr(name, "region").is_none()
    }

    /// What one line says about a device.
    pub fn describe(&self, name: &str) -> String {
        let a = |k: &str| self.attr(name, k).unwrap_or("?");
        let driver = self
            .attr(name, "driver")
            .map(|d| format!(", driver {d}"))
            .unwrap_or_default();
        let kind = order(name).1;
        match (kind.as_str(), self.attr(name, "devtype")) {
            (_, Some("cxl_decoder_root")) => {
                let window = self.sysfs.attr_u64(name, "start").and_then(|s| {
                    self.sysfs
                        .iomem
                        .iter()
                        .find(|r| r.start == s && r.name.starts_with("CXL Window"))
                });
                format!(
                    "root decoder: window {}{}, targets host bridge {}, granularity {}",
                    self.range(name, "start").unwrap_or_else(|| "?".into()),
                    window.map(|w| format!(" [{}]", w.name)).unwrap_or_default(),
                    a("target_list"),
                    a("interleave_granularity"),
                )
            }
            (_, Some("cxl_decoder_switch")) => format!(
                "switch decoder: {}, targets {}",
                self.range(name, "start")
                    .unwrap_or_else(|| "pass-through".into()),
                a("target_list")
            ),
            (_, Some("cxl_decoder_endpoint")) => format!(
                "endpoint decoder: mode {}, DPA {}+{}, HPA {}{}",
                a("mode"),
                a("dpa_resource"),
                self.sysfs
                    .attr_u64(name, "dpa_size")
                    .map_or("?".into(), size_text),
                self.range(name, "start").unwrap_or_else(|| "-".into()),
                self.attr(name, "region")
                    .map(|r| format!(", in {r}"))
                    .unwrap_or_default()
            ),
            ("region", _) => format!(
                "region: {}, mode {}, commit {}, target0 {}{driver}",
                self.range(name, "resource").unwrap_or_else(|| "?".into()),
                a("mode"),
                a("commit"),
                a("target0"),
            ),
            ("root", _) => format!(
                "CXL root ({}){driver}",
                self.extra(name, "uport").unwrap_or("?")
            ),
            ("port", _) => format!(
                "port: host bridge {}{driver}",
                self.extra(name, "uport").unwrap_or("?")
            ),
            ("endpoint", _) => format!(
                "endpoint of {}{driver}",
                self.extra(name, "uport").unwrap_or("?")
            ),
            ("mem", _) => {
                let pci = self.nodes.get(name).and_then(|n| {
                    let mut parts = n.path.rsplit('/');
                    parts.next();
                    parts.next()
                });
                let mut t = format!(
                    "memdev: PCI {} (driver {})",
                    pci.unwrap_or("?"),
                    self.extra(name, "pci_driver").unwrap_or("none"),
                );
                if let Some(size) = self.sysfs.attr_u64(name, "ram/size") {
                    t += &format!(", ram {}", size_text(size));
                }
                if let Some(serial) = self.attr(name, "serial") {
                    t += &format!(", serial {serial}");
                }
                t + &driver
            }
            _ => driver.trim_start_matches(", ").to_string(),
        }
    }

    /// The tree as lines (`├─`/`└─` drawing); idle decoders are counted,
    /// not listed.
    pub fn render(&self) -> Vec<String> {
        let mut roots: Vec<&String> = self
            .nodes
            .values()
            .filter(|n| n.parent.is_none())
            .map(|n| &n.name)
            .collect();
        roots.sort_by_key(|r| order(r));
        let mut out = Vec::new();
        for r in roots {
            out.push(format!("{r}  {}", self.describe(r)));
            self.render_children(r, "", &mut out);
        }
        out
    }

    fn render_children(&self, name: &str, indent: &str, out: &mut Vec<String>) {
        let children = &self.nodes[name].children;
        let idle: Vec<&str> = children
            .iter()
            .filter(|c| self.idle_decoder(c))
            .map(String::as_str)
            .collect();
        let shown: Vec<&String> = children.iter().filter(|c| !self.idle_decoder(c)).collect();
        let total = shown.len() + usize::from(!idle.is_empty());
        for (i, c) in shown.iter().enumerate() {
            let last = i + 1 == total;
            out.push(format!(
                "{indent}{}{c}  {}",
                if last { "└─ " } else { "├─ " },
                self.describe(c)
            ));
            let next = format!("{indent}{}", if last { "   " } else { "│  " });
            self.render_children(c, &next, out);
        }
        if !idle.is_empty() {
            out.push(format!(
                "{indent}└─ ({} idle decoder{}: {})",
                idle.len(),
                if idle.len() == 1 { "" } else { "s" },
                idle.join(" ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::parse_results;

    fn facts(pairs: &[(&str, &str)]) -> GuestReport {
        let text: String = pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "VFIOCXL-RESULT {}\n",
                    serde_json::json!({"kind": "fact", "step": "s", "key": k, "value": v})
                )
            })
            .collect();
        parse_results(&text)
    }

    #[test]
    fn tree_from_paths() {
        let base = "/sys/devices/platform/ACPI0017:00/root0";
        let p = |s: &str| format!("{base}{s}");
        let paths = [
            p(""),
            p("/decoder0.0"),
            p("/decoder0.0/region0"),
            p("/port1"),
            p("/port1/decoder1.0"),
            p("/port1/endpoint2"),
            p("/port1/endpoint2/decoder2.0"),
            p("/port1/endpoint2/decoder2.1"),
            "/sys/devices/pci0000:0c/0000:0c:00.0/0000:0d:00.0/mem0".to_string(),
        ];
        let mut f: Vec<(&str, &str)> = paths.iter().map(|x| ("topo.path", x.as_str())).collect();
        f.extend([
            ("topo.root0.uport", "ACPI0017:00"),
            ("topo.port1.uport", "pci0000:0c"),
            ("topo.endpoint2.uport", "mem0"),
            ("topo.mem0.pci_driver", "cxl-type2-ref"),
            ("cxl.device", "decoder0.0"),
            ("cxl.decoder0.0.devtype", "cxl_decoder_root"),
            ("cxl.decoder0.0.start", "0x490000000"),
            ("cxl.decoder0.0.size", "0x100000000"),
            ("cxl.decoder0.0.target_list", "12"),
            ("cxl.decoder0.0.interleave_granularity", "256"),
            ("cxl.decoder1.0.devtype", "cxl_decoder_switch"),
            ("cxl.decoder1.0.size", "0x10000000"),
            ("cxl.decoder1.0.start", "0x490000000"),
            ("cxl.decoder2.0.devtype", "cxl_decoder_endpoint"),
            ("cxl.decoder2.0.start", "0x490000000"),
            ("cxl.decoder2.0.size", "0x10000000"),
            ("cxl.decoder2.0.region", "region0"),
            ("cxl.decoder2.0.mode", "ram"),
            ("cxl.decoder2.1.devtype", "cxl_decoder_endpoint"),
            ("cxl.decoder2.1.size", "0x0"),
            ("cxl.region0.resource", "0x490000000"),
            ("cxl.region0.size", "0x10000000"),
            ("cxl.region0.commit", "1"),
            ("cxl.mem0.ram/size", "0x10000000"),
            ("iomem", "490000000-58fffffff : CXL Window 0"),
        ]);
        let t = Tree::from_report(&facts(&f));
        assert_eq!(t.nodes["mem0"].parent.as_deref(), Some("endpoint2"));
        assert_eq!(t.nodes["region0"].parent.as_deref(), Some("decoder0.0"));
        assert_eq!(
            t.nodes["root0"].children,
            ["decoder0.0", "port1"].map(String::from)
        );
        let lines = t.render();
        let text = lines.join("\n");
        assert!(
            lines[0].starts_with("root0  CXL root (ACPI0017:00)"),
            "{text}"
        );
        assert!(
            text.contains("root decoder: window 0x490000000-0x58fffffff (4 GiB) [CXL Window 0], targets host bridge 12"),
            "{text}"
        );
        assert!(
            text.contains(
                "│  └─ region0  region: 0x490000000-0x49fffffff (256 MiB), mode ?, commit 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("memdev: PCI 0000:0d:00.0 (driver cxl-type2-ref), ram 256 MiB"),
            "{text}"
        );
        assert!(text.contains("(1 idle decoder: decoder2.1)"), "{text}");
        assert!(text.contains("in region0"), "{text}");
    }

    #[test]
    fn sizes_and_order() {
        assert_eq!(size_text(256 << 20), "256 MiB");
        assert_eq!(size_text(4 << 30), "4 GiB");
        assert_eq!(size_text(100), "0x64 bytes");
        assert!(order("decoder2.10") > order("decoder2.9"));
        assert!(order("decoder9.0") < order("port1"));
    }

    #[test]
    fn step_script_is_valid_sh() {
        crate::payload::assert_valid_sh("STEP_SCRIPT", STEP_SCRIPT);
    }
}
