//! What the fuzzer counts: operations per kind, results per kind and errno,
//! and the oracle failures (each printed as a fact at once, so that a
//! later hang or crash does not lose it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::facts::fact;

/// The harness step the facts belong to.
pub const STEP: &str = "uapi-fuzz";
/// Failures printed one by one; later ones are only counted.
const PRINTED_FAILURES: u64 = 40;

#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, u64>>,
    results: Mutex<BTreeMap<(&'static str, String), u64>>,
    failures: AtomicU64,
    /// `kind` of each failure, for the summary.
    failed_kinds: Mutex<BTreeMap<&'static str, u64>>,
}

/// The name of `errno` (`EINVAL`), or its number.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTTY => "ENOTTY",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOTSUP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno{errno}"),
    };
    name.to_string()
}

impl Stats {
    /// One operation of `kind` ended with `result` ("ok", an errno name,
    /// "SIGBUS", ...).
    pub fn count(&self, kind: &'static str, result: &str) {
        *self.ops.lock().unwrap().entry(kind).or_default() += 1;
        *self
            .results
            .lock()
            .unwrap()
            .entry((kind, result.to_string()))
            .or_default() += 1;
    }

    /// An oracle failed: `what` names the thread, operation, arguments and
    /// what was wrong.
    pub fn fail(&self, kind: &'static str, what: &str) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        *self.failed_kinds.lock().unwrap().entry(kind).or_default() += 1;
        if n < PRINTED_FAILURES {
            fact(STEP, "fuzz.failure", &format!("{kind}: {what}"));
            eprintln!("uapi-fuzz: FAIL {kind}: {what}");
        }
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether an operation of `kind` ran.
    pub fn ran(&self, kind: &str) -> bool {
        self.ops.lock().unwrap().contains_key(kind)
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.lock().unwrap().values().sum()
    }

    /// Facts `fuzz.ops.<kind>`, `fuzz.result.<kind>.<result>` and
    /// `fuzz.failed.<kind>`.
    pub fn report(&self) {
        for (kind, n) in self.ops.lock().unwrap().iter() {
            fact(STEP, &format!("fuzz.ops.{kind}"), &n.to_string());
        }
        for ((kind, result), n) in self.results.lock().unwrap().iter() {
            fact(
                STEP,
                &format!("fuzz.result.{kind}.{result}"),
                &n.to_string(),
            );
        }
        for (kind, n) in self.failed_kinds.lock().unwrap().iter() {
            fact(STEP, &format!("fuzz.failed.{kind}"), &n.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_result() {
        let s = Stats::default();
        s.count("reset", "ok");
        s.count("reset", "EAGAIN");
        s.count("mmap", "ok");
        assert_eq!(s.total_ops(), 3);
        assert_eq!(s.failures(), 0);
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(4095), "errno4095");
    }
}
