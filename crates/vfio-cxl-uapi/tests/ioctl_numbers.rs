//! The ioctl numbers of src/vfio.rs (feature `vfio`) are the ones `<linux/vfio.h>` defines:
//! compiles a C probe against the system header and compares.

use std::process::Command;

use vfio_cxl_uapi::vfio::*;

#[test]
fn ioctl_numbers_match_linux_vfio_h() {
    let ours = [
        ("VFIO_GET_API_VERSION", VFIO_GET_API_VERSION),
        ("VFIO_CHECK_EXTENSION", VFIO_CHECK_EXTENSION),
        ("VFIO_SET_IOMMU", VFIO_SET_IOMMU),
        ("VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS),
        ("VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER),
        ("VFIO_GROUP_GET_DEVICE_FD", VFIO_GROUP_GET_DEVICE_FD),
        ("VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO),
        ("VFIO_DEVICE_GET_REGION_INFO", VFIO_DEVICE_GET_REGION_INFO),
        ("VFIO_DEVICE_RESET", VFIO_DEVICE_RESET),
        ("VFIO_DEVICE_IOEVENTFD", VFIO_DEVICE_IOEVENTFD),
    ];
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ioctl-probe");
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = String::from("#include <stdio.h>\n#include <linux/vfio.h>\nint main(void)\n{\n");
    for (name, _) in &ours {
        src += &format!("\tprintf(\"%lu\\n\", (unsigned long){name});\n");
    }
    src += "\treturn 0;\n}\n";
    std::fs::write(dir.join("probe.c"), src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(&cc)
        .arg("-o")
        .arg(dir.join("probe"))
        .arg(dir.join("probe.c"))
        .status()
        .unwrap();
    assert!(ok.success(), "probe against <linux/vfio.h> did not compile");
    let out = String::from_utf8(Command::new(dir.join("probe")).output().unwrap().stdout).unwrap();
    let theirs: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
    for ((name, value), c) in ours.iter().zip(&theirs) {
        assert_eq!(value, c, "{name}");
    }
    assert_eq!(theirs.len(), ours.len());
}

#[test]
fn region_offsets_follow_vfio_pci() {
    assert_eq!(region_offset(0), 0);
    assert_eq!(region_offset(9), 9 << 40);
}
