//! The Rust mirror and the C header agree byte for byte.
//!
//! Compiles a C program against `host-driver/include/uapi/linux/vfio_cxl.h`
//! (and the system's `<linux/vfio.h>`), has it print every constant, struct
//! size and field offset, and compares each with the Rust side. `$CC`
//! selects the compiler (default `cc`).

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_cxl_uapi::*;

/// (C expression, value expected from the Rust mirror). Constants are
/// compared as the uAPI field they go into (`type:` prefix): `(1 << 31)`
/// is a negative `int` in C, and what matters is the `__u32` it becomes.
fn rust_side() -> Vec<(&'static str, u64)> {
    vec![
        ("__u32:VFIO_DEVICE_FLAGS_CXL", VFIO_DEVICE_FLAGS_CXL.into()),
        (
            "__u16:VFIO_DEVICE_INFO_CAP_CXL",
            VFIO_DEVICE_INFO_CAP_CXL.into(),
        ),
        (
            "__u32:VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED",
            VFIO_CXL_CAP_HOST_FIRMWARE_COMMITTED.into(),
        ),
        (
            "__u32:VFIO_REGION_TYPE_PCI_VENDOR_TYPE",
            VFIO_REGION_TYPE_PCI_VENDOR_TYPE.into(),
        ),
        ("__u32:VFIO_REGION_TYPE_CXL", VFIO_REGION_TYPE_CXL.into()),
        (
            "__u32:VFIO_REGION_SUBTYPE_CXL_MEM",
            VFIO_REGION_SUBTYPE_CXL_MEM.into(),
        ),
        (
            "__u32:VFIO_REGION_SUBTYPE_CXL_COMP_REGS",
            VFIO_REGION_SUBTYPE_CXL_COMP_REGS.into(),
        ),
        (
            "__u16:VFIO_REGION_INFO_CAP_TYPE",
            VFIO_REGION_INFO_CAP_TYPE.into(),
        ),
        (
            "__u16:VFIO_REGION_INFO_CAP_SPARSE_MMAP",
            VFIO_REGION_INFO_CAP_SPARSE_MMAP.into(),
        ),
        (
            "__u16:VFIO_REGION_INFO_CAP_CXL_COMP_REGS",
            VFIO_REGION_INFO_CAP_CXL_COMP_REGS.into(),
        ),
        (
            "sizeof(struct vfio_info_cap_header)",
            size_of::<VfioInfoCapHeader>() as u64,
        ),
        (
            "offsetof(struct vfio_info_cap_header, id)",
            offset_of!(VfioInfoCapHeader, id) as u64,
        ),
        (
            "offsetof(struct vfio_info_cap_header, version)",
            offset_of!(VfioInfoCapHeader, version) as u64,
        ),
        (
            "offsetof(struct vfio_info_cap_header, next)",
            offset_of!(VfioInfoCapHeader, next) as u64,
        ),
        (
            "sizeof(struct vfio_device_info_cap_cxl)",
            size_of::<VfioDeviceInfoCapCxl>() as u64,
        ),
        (
            "offsetof(struct vfio_device_info_cap_cxl, flags)",
            offset_of!(VfioDeviceInfoCapCxl, flags) as u64,
        ),
        (
            "offsetof(struct vfio_device_info_cap_cxl, __reserved)",
            offset_of!(VfioDeviceInfoCapCxl, reserved) as u64,
        ),
        (
            "sizeof(struct vfio_region_info_cap_cxl_comp_regs)",
            size_of::<VfioRegionInfoCapCxlCompRegs>() as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_cxl_comp_regs, bar)",
            offset_of!(VfioRegionInfoCapCxlCompRegs, bar) as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_cxl_comp_regs, __reserved)",
            offset_of!(VfioRegionInfoCapCxlCompRegs, reserved) as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_cxl_comp_regs, offset)",
            offset_of!(VfioRegionInfoCapCxlCompRegs, offset) as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_cxl_comp_regs, size)",
            offset_of!(VfioRegionInfoCapCxlCompRegs, size) as u64,
        ),
        (
            "sizeof(struct vfio_region_info_cap_type)",
            size_of::<VfioRegionInfoCapType>() as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_type, type)",
            offset_of!(VfioRegionInfoCapType, type_) as u64,
        ),
        (
            "offsetof(struct vfio_region_info_cap_type, subtype)",
            offset_of!(VfioRegionInfoCapType, subtype) as u64,
        ),
    ]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds and runs the C probe; returns name -> value as the C compiler sees it.
fn c_side(names: &[&str]) -> BTreeMap<String, u64> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("uapi-c-probe");
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/vfio_cxl.h>\nint main(void)\n{\n",
    );
    for name in names {
        let expr = match name.split_once(':') {
            Some((ty, constant)) => format!("({ty})({constant})"),
            None => (*name).to_owned(),
        };
        src += &format!("\tprintf(\"%s=%llu\\n\", \"{name}\", (unsigned long long){expr});\n");
    }
    src += "\treturn 0;\n}\n";
    std::fs::write(dir.join("probe.c"), src).unwrap();

    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let include = repo_root().join("host-driver/include/uapi");
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(dir.join("probe"))
        .arg(dir.join("probe.c"))
        .arg("-I")
        .arg(&include)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` (set $CC): {e}"));
    assert!(
        status.success(),
        "the C probe against vfio_cxl.h did not compile"
    );

    let out = Command::new(dir.join("probe")).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn rust_mirror_matches_c_header() {
    let rust = rust_side();
    let names: Vec<_> = rust.iter().map(|(n, _)| *n).collect();
    let c = c_side(&names);
    let mismatches: Vec<_> = rust
        .iter()
        .filter(|(n, v)| c.get(*n) != Some(v))
        .map(|(n, v)| format!("{n}: C {:?}, Rust {v}", c.get(*n)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "C header and Rust mirror disagree:\n{}",
        mismatches.join("\n")
    );
}

/// Every `#define` of the C block is covered above, so a constant added to the
/// header without a mirror fails here.
#[test]
fn every_c_constant_is_mirrored() {
    let header =
        std::fs::read_to_string(repo_root().join("host-driver/include/uapi/linux/vfio_cxl.h"))
            .unwrap();
    let block = header
        .split("/* BEGIN vfio.h CXL additions */")
        .nth(1)
        .and_then(|rest| rest.split("/* END vfio.h CXL additions */").next())
        .expect("BEGIN/END markers in vfio_cxl.h");
    let mirrored: Vec<_> = rust_side()
        .into_iter()
        .filter_map(|(n, _)| n.split_once(':').map(|(_, c)| c))
        .collect();
    for line in block.lines() {
        if let Some(def) = line.trim_start().strip_prefix("#define") {
            let name = def.split_whitespace().next().unwrap();
            assert!(
                mirrored.contains(&name),
                "{name} is defined in vfio_cxl.h but not mirrored in Rust"
            );
        }
    }
}

/// The capability header is the one of rust-vmm's vfio-bindings.
#[test]
fn cap_header_matches_vfio_bindings() {
    use vfio_bindings::bindings::vfio::vfio_info_cap_header as Upstream;
    assert_eq!(size_of::<Upstream>(), size_of::<VfioInfoCapHeader>());
    assert_eq!(offset_of!(Upstream, id), offset_of!(VfioInfoCapHeader, id));
    assert_eq!(
        offset_of!(Upstream, version),
        offset_of!(VfioInfoCapHeader, version)
    );
    assert_eq!(
        offset_of!(Upstream, next),
        offset_of!(VfioInfoCapHeader, next)
    );
    assert_eq!(
        vfio_bindings::bindings::vfio::VFIO_REGION_TYPE_PCI_VENDOR_TYPE,
        VFIO_REGION_TYPE_PCI_VENDOR_TYPE
    );
    assert_eq!(
        vfio_bindings::bindings::vfio::VFIO_REGION_INFO_CAP_TYPE as u16,
        VFIO_REGION_INFO_CAP_TYPE
    );
}
