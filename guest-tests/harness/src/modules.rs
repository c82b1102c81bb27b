//! Kernel module dependency resolution from `modules.dep`.
//!
//! Each line of modules.dep is `path: dep dep ...` with paths relative to
//! `/lib/modules/<abi>/`; the dependency list of a module is already its
//! full transitive closure. [`ModulesDep::resolve`] turns the modules a
//! payload asks for into a load order where every module comes after all
//! of its dependencies, and the requested modules keep their given order
//! otherwise.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// A module's name from its path: the file name without `.ko` and any
/// compression suffix, with `-` written as `_` (what the kernel does).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .unwrap_or(file);
    stem.replace('-', "_")
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    path: String,
    deps: Vec<String>,
}

/// Parsed modules.dep, plus the names of built-in modules (modules.builtin)
/// so that asking for a built-in module is not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulesDep {
    by_name: BTreeMap<String, Line>,
    builtin: BTreeSet<String>,
}

/// One module to load: its name and its path relative to the ABI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    pub name: String,
    pub path: String,
}

/// The result of resolving a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Modules to insmod, in this order.
    pub load: Vec<ModuleRef>,
    /// Requested modules that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
}

impl ModulesDep {
    pub fn parse(text: &str) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for (no, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or_else(|| {
                Error::msg(format!("modules.dep line {}: no `:` in {raw:?}", no + 1))
            })?;
            let path = path.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            by_name.insert(module_name(&path), Line { path, deps });
        }
        Ok(Self {
            by_name,
            builtin: BTreeSet::new(),
        })
    }

    /// Adds the names from a modules.builtin file (`kernel/.../x.ko` lines).
    pub fn with_builtin(mut self, modules_builtin: &str) -> Self {
        self.builtin.extend(
            modules_builtin
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(module_name),
        );
        self
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Load order for `wanted` (module names; `-` and `_` are the same).
    pub fn resolve<S: AsRef<str>>(&self, wanted: &[S]) -> Result<Resolved> {
        let mut out = Resolved::default();
        let mut done = BTreeSet::new();
        let mut missing = Vec::new();
        for w in wanted {
            let name = module_name(w.as_ref());
            if self.by_name.contains_key(&name) {
                self.visit(&name, &mut done, &mut Vec::new(), &mut out.load)?;
            } else if self.builtin.contains(&name) {
                if !out.builtin.contains(&name) {
                    out.builtin.push(name);
                }
            } else {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Error::msg(format!(
                "module(s) not in modules.dep nor built in: {} ({} modules known)",
                missing.join(", "),
                self.by_name.len()
            )));
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        load: &mut Vec<ModuleRef>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_string());
            return Err(Error::msg(format!(
                "modules.dep has a dependency cycle: {}",
                stack.join(" -> ")
            )));
        }
        let line = self.by_name.get(name).ok_or_else(|| {
            Error::msg(format!(
                "modules.dep: {} depends on {name}, which has no line of its own",
                stack.last().map(String::as_str).unwrap_or("?")
            ))
        })?;
        stack.push(name.to_string());
        for dep in &line.deps {
            self.visit(&module_name(dep), done, stack, load)?;
        }
        stack.pop();
        done.insert(name.to_string());
        load.push(ModuleRef {
            name: name.to_string(),
            path: line.path.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CXL/VFIO lines of Debian 7.3.4's modules.dep (depmod output).
    const FIXTURE: &str = "\
kernel/drivers/cxl/cxl_acpi.ko.xz: kernel/drivers/cxl/cxl_pmem.ko.xz kernel/drivers/nvdimm/libnvdimm.ko.xz
kernel/drivers/cxl/cxl_pmem.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz
kernel/drivers/cxl/cxl_mem.ko.xz:
kernel/drivers/cxl/cxl_pci.ko.xz: kernel/drivers/cxl/cxl_mem.ko.xz
kernel/drivers/nvdimm/libnvdimm.ko.xz:
kernel/drivers/vfio/vfio.ko.xz:
kernel/drivers/vfio/vfio_iommu_type1.ko.xz: kernel/drivers/vfio/vfio.ko.xz
kernel/drivers/vfio/pci/vfio-pci-core.ko.xz: kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
kernel/virt/lib/irqbypass.ko.xz:
";

    fn names(r: &Resolved) -> Vec<&str> {
        r.load.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn names_drop_suffixes_and_dashes() {
        assert_eq!(
            module_name("kernel/drivers/vfio/pci/vfio-pci-core.ko.xz"),
            "vfio_pci_core"
        );
        assert_eq!(module_name("a/b.ko"), "b");
        assert_eq!(module_name("x.ko.zst"), "x");
        assert_eq!(module_name("vfio-pci"), "vfio_pci");
    }

    #[test]
    fn dependencies_come_first() {
        let dep = ModulesDep::parse(FIXTURE).unwrap();
        assert_eq!(dep.len(), 10);
        let r = dep.resolve(&["cxl_pci", "cxl_acpi"]).unwrap();
        assert_eq!(
            names(&r),
            ["cxl_mem", "cxl_pci", "libnvdimm", "cxl_pmem", "cxl_acpi"]
        );
        assert_eq!(r.load[0].path, "kernel/drivers/cxl/cxl_mem.ko.xz");

        let r = dep.resolve(&["vfio-pci", "vfio_iommu_type1"]).unwrap();
        assert_eq!(
            names(&r),
            [
                "vfio",
                "irqbypass",
                "vfio_pci_core",
                "vfio_pci",
                "vfio_iommu_type1"
            ]
        );
    }

    #[test]
    fn duplicates_load_once_in_first_position() {
        let dep = ModulesDep::parse(FIXTURE).unwrap();
        let r = dep
            .resolve(&["libnvdimm", "cxl_acpi", "libnvdimm", "cxl_pmem"])
            .unwrap();
        assert_eq!(names(&r), ["libnvdimm", "cxl_pmem", "cxl_acpi"]);
    }

    #[test]
    fn builtin_and_missing_modules() {
        let dep = ModulesDep::parse(FIXTURE)
            .unwrap()
            .with_builtin("kernel/drivers/cxl/core/cxl_core.ko\nkernel/drivers/cxl/cxl_port.ko\n");
        let r = dep.resolve(&["cxl_core", "cxl_mem"]).unwrap();
        assert_eq!(r.builtin, ["cxl_core"]);
        assert_eq!(names(&r), ["cxl_mem"]);

        let err = dep.resolve(&["cxl_mem", "nope", "also-nope"]).unwrap_err();
        assert!(err.to_string().contains("nope, also_nope"), "{err}");
    }

    #[test]
    fn cycles_and_dangling_dependencies_are_errors() {
        let dep = ModulesDep::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        let err = dep.resolve(&["a"]).unwrap_err();
        assert!(err.to_string().contains("a -> b -> a"), "{err}");

        let dep = ModulesDep::parse("a.ko: gone.ko\n").unwrap();
        let err = dep.resolve(&["a"]).unwrap_err();
        assert!(err.to_string().contains("a depends on gone"), "{err}");

        assert!(ModulesDep::parse("no colon here\n").is_err());
    }
}
