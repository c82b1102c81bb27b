//! A deterministic cpio "newc" writer: the initramfs format the kernel
//! unpacks (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Entries are kept in a map keyed by path, so the archive lists them in
//! byte order of their paths whatever order they were added in; parents
//! come before children because a path sorts before every path it is a
//! prefix of. Every entry has uid/gid 0, mtime [`MTIME`], and inode numbers
//! are assigned in that order: the same entries always give the same bytes.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Modification time of every entry (the epoch).
pub const MTIME: u32 = 0;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An archive being built. Paths are given with or without a leading `/`
/// and are stored relative (`bin/busybox`), as the kernel expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

/// `a//b/` -> `a/b`; rejects empty paths, `.` and `..` components.
pub fn normalize(path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" => continue,
            "." | ".." => {
                return Err(Error::msg(format!(
                    "initramfs path {path:?}: `.` and `..` are not allowed"
                )))
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(Error::msg(format!("initramfs path {path:?} is empty")));
    }
    Ok(parts.join("/"))
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (directories created implicitly included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Contents of a regular file in the archive.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.entries.get(&normalize(path).ok()?) {
            Some(Entry::File { data, .. }) => Some(data),
            _ => None,
        }
    }

    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let path = normalize(path)?;
        self.add_parents(&path)?;
        match self.entries.get(&path) {
            None | Some(Entry::Dir { .. }) => {
                self.entries.insert(
                    path,
                    Entry::Dir {
                        mode: mode & 0o7777,
                    },
                );
                Ok(())
            }
            Some(_) => Err(Error::msg(format!(
                "initramfs: {path} is already a file, cannot make it a directory"
            ))),
        }
    }

    /// Adds (or replaces) a regular file; missing parent directories are
    /// created with mode 0755.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let path = normalize(path)?;
        self.add_leaf(
            path,
            Entry::File {
                mode: mode & 0o7777,
                data,
            },
        )
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path = normalize(path)?;
        self.add_leaf(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// A character device node (e.g. `/dev/console`, 5:1), so the kernel
    /// can open the console for /init before devtmpfs is mounted.
    pub fn add_char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        let path = normalize(path)?;
        self.add_leaf(
            path,
            Entry::CharDev {
                mode: mode & 0o7777,
                major,
                minor,
            },
        )
    }

    fn add_leaf(&mut self, path: String, entry: Entry) -> Result<()> {
        self.add_parents(&path)?;
        if let Some(Entry::Dir { .. }) = self.entries.get(&path) {
            return Err(Error::msg(format!(
                "initramfs: {path} is already a directory"
            )));
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    fn add_parents(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.entries.get(&prefix) {
                Some(Entry::Dir { .. }) => {}
                None => {
                    self.entries
                        .insert(prefix.clone(), Entry::Dir { mode: 0o755 });
                }
                Some(_) => {
                    return Err(Error::msg(format!(
                        "initramfs: {prefix} is a file, so {path} cannot be created under it"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The archive as newc bytes, trailer included, padded to 512 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let ino = index as u32 + 1;
            let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
                Entry::Dir { mode } => (S_IFDIR | mode, 2, &[], (0, 0)),
                Entry::File { mode, data } => (S_IFREG | mode, 1, data, (0, 0)),
                Entry::Symlink { target } => (S_IFLNK | 0o777, 1, target.as_bytes(), (0, 0)),
                Entry::CharDev { mode, major, minor } => (S_IFCHR | mode, 1, &[], (*major, *minor)),
            };
            write_entry(&mut out, ino, mode, nlink, path, data, rdev);
        }
        write_entry(&mut out, 0, 0, 1, TRAILER, &[], (0, 0));
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    name: &str,
    data: &[u8],
    rdev: (u32, u32),
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        MTIME,
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1, // with the NUL
        0,                     // check (only for the "070702" format)
    ];
    out.extend_from_slice(MAGIC.as_bytes());
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(order: &[usize]) -> Archive {
        let mut a = Archive::new();
        type Add = Box<dyn Fn(&mut Archive)>;
        let adds: Vec<Add> = vec![
            Box::new(|a| a.add_file("/init", 0o755, b"#!/bin/sh\n".to_vec()).unwrap()),
            Box::new(|a| a.add_file("bin/busybox", 0o755, vec![0x7f, b'E']).unwrap()),
            Box::new(|a| a.add_symlink("/bin/sh", "busybox").unwrap()),
            Box::new(|a| a.add_char_dev("/dev/console", 0o600, 5, 1).unwrap()),
            Box::new(|a| a.add_dir("/proc", 0o555).unwrap()),
        ];
        for &i in order {
            adds[i](&mut a);
        }
        a
    }

    #[test]
    fn same_entries_in_any_order_give_the_same_bytes() {
        let a = sample(&[0, 1, 2, 3, 4]).to_bytes();
        let b = sample(&[4, 3, 2, 1, 0]).to_bytes();
        let c = sample(&[2, 0, 4, 1, 3]).to_bytes();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn exact_bytes_of_a_small_archive() {
        let mut a = Archive::new();
        a.add_file("x", 0o644, b"hi".to_vec()).unwrap();
        let got = a.to_bytes();
        // Fields: ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check.
        let header = |fields: [&str; 13]| format!("070701{}", fields.concat());
        let z = "00000000";
        let mut want = Vec::new();
        want.extend_from_slice(
            header([
                "00000001", "000081A4", z, z, "00000001", z, "00000002", z, z, z, z, "00000002", z,
            ])
            .as_bytes(),
        );
        want.extend_from_slice(b"x\0"); // 110 + 2 = 112: already aligned
        want.extend_from_slice(b"hi\0\0");
        want.extend_from_slice(
            header([z, z, z, z, "00000001", z, z, z, z, z, z, "0000000B", z]).as_bytes(),
        );
        want.extend_from_slice(b"TRAILER!!!\0"); // 110 + 11 = 121 -> 124
        want.extend_from_slice(&[0; 3]);
        want.resize(512, 0);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(got, want);
    }

    #[test]
    fn parents_come_first_and_are_created() {
        let mut a = Archive::new();
        a.add_file("usr/lib/modules/x.ko", 0o644, vec![1]).unwrap();
        a.add_file("usr-x", 0o644, vec![]).unwrap();
        let paths: Vec<&str> = a.paths().collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr-x",
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/x.ko"
            ]
        );
    }

    #[test]
    fn bad_paths_and_conflicts_are_errors() {
        let mut a = Archive::new();
        assert!(a.add_file("../etc/passwd", 0o644, vec![]).is_err());
        assert!(a.add_file("/", 0o644, vec![]).is_err());
        a.add_file("bin", 0o644, vec![]).unwrap();
        let err = a.add_file("bin/sh", 0o755, vec![]).unwrap_err();
        assert!(err.to_string().contains("bin is a file"), "{err}");
        a.add_dir("etc", 0o755).unwrap();
        assert!(a.add_file("etc", 0o644, vec![]).is_err());
    }

    /// The system's cpio reads back what we wrote. A missing cpio fails
    /// (tools/packages.txt lists it; `tools/setup-apt`, as root, installs it):
    /// a cross-check that skips proves nothing.
    #[test]
    fn gnu_cpio_lists_the_archive() {
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run cpio ({e}): install it with `tools/setup-apt` (as root)")
            });
        use std::io::Write;
        let bytes = sample(&[0, 1, 2, 3, 4]).to_bytes();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "init",
                "proc"
            ]
        );
    }
}
