//! The guest's view of the CXL bus, as reported by the [`STEP_SCRIPT`]
//! step, turned into a typed [`CxlSysfs`].

use std::collections::BTreeMap;

use crate::console::GuestReport;

/// Waits (up to 60 s) until the CXL core has enumerated an endpoint with
/// its decoders; cxl_pci probes asynchronously, so init must not race it.
pub const WAIT_SCRIPT: &str = r#"i=0
while [ $i -lt 600 ]; do
	ls -d /sys/bus/cxl/devices/endpoint*/decoder* >/dev/null 2>&1 && break
	sleep 0.1
	i=$((i + 1))
done
vfiocxl_fact waited_ms "$((i * 100))"
ls -d /sys/bus/cxl/devices/endpoint*/decoder* >/dev/null 2>&1
"#;

/// Reports every device on the CXL bus with its interesting attributes,
/// and the CXL lines of /proc/iomem.
pub const STEP_SCRIPT: &str = r#"for d in /sys/bus/cxl/devices/*; do
	n=${d##*/}
	vfiocxl_fact cxl.device "$n"
	for a in devtype start size target_type target_list interleave_ways \
		interleave_granularity mode dpa_resource dpa_size locked serial ram/size pmem/size \
		region resource commit target0; do
		if [ -r "$d/$a" ] && IFS= read -r v <"$d/$a"; then vfiocxl_fact "cxl.$n.$a" "$v"; fi
	done
	if [ -e "$d/driver" ]; then l=$(readlink "$d/driver"); vfiocxl_fact "cxl.$n.driver" "${l##*/}"; fi
done
grep -i cxl /proc/iomem | while IFS= read -r line; do vfiocxl_fact iomem "$line"; done
true
"#;

/// One line of /proc/iomem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IomemRange {
    pub start: u64,
    pub end: u64,
    pub name: String,
    /// Leading spaces / 2 (nesting depth).
    pub depth: usize,
}

impl IomemRange {
    pub fn size(&self) -> u64 {
        self.end - self.start + 1
    }

    /// `  390000000-48fffffff : CXL Window 0`.
    pub fn parse(line: &str) -> Option<Self> {
        let depth = (line.len() - line.trim_start().len()) / 2;
        let (range, name) = line.trim().split_once(" : ")?;
        let (s, e) = range.split_once('-')?;
        Some(Self {
            start: u64::from_str_radix(s, 16).ok()?,
            end: u64::from_str_radix(e, 16).ok()?,
            name: name.to_string(),
            depth,
        })
    }
}

/// Devices on the guest's CXL bus: name -> attribute -> value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CxlSysfs {
    pub devices: BTreeMap<String, BTreeMap<String, String>>,
    pub iomem: Vec<IomemRange>,
}

/// `0x10000000` or `268435456` -> the number.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl CxlSysfs {
    pub fn from_report(report: &GuestReport) -> Self {
        let mut out = Self::default();
        for name in report.facts("cxl.device") {
            out.devices.entry(name.to_string()).or_default();
        }
        for (key, value) in report.all_facts() {
            let Some(rest) = key.strip_prefix("cxl.") else {
                continue;
            };
            if rest == "device" {
                continue;
            }
            // Device names have no dots except decoders (`decoder0.0`),
            // whose second part is a number.
            let mut parts = rest.splitn(3, '.');
            let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (dev, attr) = match (b.parse::<u32>(), parts.next()) {
                (Ok(_), Some(attr)) => (format!("{a}.{b}"), attr.to_string()),
                _ => (a.to_string(), rest[a.len() + 1..].to_string()),
            };
            out.devices
                .entry(dev)
                .or_default()
                .insert(attr, value.to_string());
        }
        out.iomem = report
            .facts("iomem")
            .into_iter()
            .filter_map(IomemRange::parse)
            .collect();
        out
    }

    pub fn has(&self, name: &str) -> bool {
        self.devices.contains_key(name)
    }

    pub fn attr(&self, dev: &str, attr: &str) -> Option<&str> {
        self.devices.get(dev)?.get(attr).map(String::as_str)
    }

    pub fn attr_u64(&self, dev: &str, attr: &str) -> Option<u64> {
        self.attr(dev, attr).and_then(parse_u64)
    }

    /// Device names starting with `prefix` (`port`, `endpoint`, `mem`...).
    pub fn named(&self, prefix: &str) -> Vec<&str> {
        self.devices
            .keys()
            .filter(|n| {
                n.strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(String::as_str)
            .collect()
    }

    /// Devices whose `devtype` is `devtype`.
    pub fn of_type(&self, devtype: &str) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|(_, a)| a.get("devtype").is_some_and(|t| t == devtype))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub fn iomem_named(&self, name: &str) -> Option<&IomemRange> {
        self.iomem.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::parse_results;

    fn fact(k: &str, v: &str) -> String {
        format!(
            "VFIOCXL-RESULT {}\n",
            serde_json::json!({"kind": "fact", "step": "s", "key": k, "value": v})
        )
    }

    #[test]
    fn facts_become_devices_and_ranges() {
        let text = [
            fact("cxl.device", "decoder0.0"),
            fact("cxl.device", "mem0"),
            fact("cxl.device", "port1"),
            fact("cxl.decoder0.0.devtype", "cxl_decoder_root"),
            fact("cxl.decoder0.0.size", "0x100000000"),
            fact("cxl.mem0.ram/size", "0x10000000"),
            fact("cxl.mem0.driver", "cxl_mem"),
            fact("iomem", "390000000-48fffffff : CXL Window 0"),
            fact("iomem", "  390000000-39fffffff : region0"),
        ]
        .concat();
        let s = CxlSysfs::from_report(&parse_results(&text));
        assert!(s.has("port1"));
        assert_eq!(s.attr_u64("decoder0.0", "size"), Some(4 << 30));
        assert_eq!(s.attr_u64("mem0", "ram/size"), Some(256 << 20));
        assert_eq!(s.attr("mem0", "driver"), Some("cxl_mem"));
        assert_eq!(s.of_type("cxl_decoder_root"), ["decoder0.0"]);
        assert_eq!(s.named("mem"), ["mem0"]);
        assert!(s.named("port").contains(&"port1"));
        let w = s.iomem_named("CXL Window 0").unwrap();
        assert_eq!((w.start, w.size(), w.depth), (0x3_9000_0000, 4 << 30, 0));
        assert_eq!(s.iomem[1].depth, 1);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("16\n"), Some(16));
        assert_eq!(parse_u64("x"), None);
        assert_eq!(IomemRange::parse("nonsense"), None);
    }
}
