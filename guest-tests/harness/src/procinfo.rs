//! Where a process's threads are, read from /proc: for a QEMU the runner
//! had to kill. A vCPU thread stuck in the kernel (in L1, inside KVM's
//! VMRUN) cannot die on SIGKILL, and its kernel stack says where it is.

use std::fs;

/// How many kernel frames of each thread are kept.
const FRAMES: usize = 12;

/// One line per thread of `pid`: id, name, state, CPU, wait channel and
/// kernel stack (innermost first). Empty when /proc has no such process;
/// a thread gone meanwhile is skipped, a field /proc does not show (the
/// stack needs root) is left out.
pub fn threads(pid: u32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = tasks
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids.into_iter()
        .filter_map(|tid| {
            let dir = format!("/proc/{pid}/task/{tid}");
            let read = |f: &str| fs::read_to_string(format!("{dir}/{f}")).unwrap_or_default();
            let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
            Some(describe(tid, &stat, &read("wchan"), &read("stack")))
        })
        .collect()
}

/// A thread as one line, from its `stat`, `wchan` and `stack` files.
fn describe(tid: u32, stat: &str, wchan: &str, stack: &str) -> String {
    let mut line = format!("thread {tid}");
    if let Some((comm, state, cpu)) = parse_stat(stat) {
        line.push_str(&format!(" ({comm}) state {state} on CPU {cpu}"));
    }
    let wchan = wchan.trim();
    if !wchan.is_empty() && wchan != "0" {
        line.push_str(&format!(", waiting in {wchan}"));
    }
    let frames = stack_frames(stack);
    if !frames.is_empty() {
        line.push_str(&format!(", kernel stack: {}", frames.join(" < ")));
    }
    line
}

/// (comm, state, last CPU) of a `stat` line, whose comm may hold spaces
/// and parentheses.
fn parse_stat(stat: &str) -> Option<(&str, &str, &str)> {
    let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // state is field 3 of stat(5), processor field 39.
    Some((comm, fields.first()?, fields.get(36)?))
}

/// The function names of a `stack` file (`[<0>] svm_vcpu_run+0x1c/0x40
/// [kvm_amd]`), innermost first, at most [`FRAMES`].
fn stack_frames(stack: &str) -> Vec<&str> {
    stack
        .lines()
        .filter_map(|l| {
            let f = l.split_once("] ")?.1.split_whitespace().next()?;
            Some(f.split('+').next().unwrap_or(f))
        })
        .take(FRAMES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_named_placed_and_traced() {
        let stat = "812 (CPU 0/KVM) D 1 812 812 0 -1 4194560 10 0 0 0 5 6 0 0 20 0 5 0 \
                    100 2000000 300 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let stack =
            "[<0>] svm_vcpu_run+0x1c/0x40 [kvm_amd]\n[<0>] kvm_arch_vcpu_ioctl_run+0x5/0x9 [kvm]\n";
        assert_eq!(
            describe(812, stat, "kvm_vcpu_block\n", stack),
            "thread 812 (CPU 0/KVM) state D on CPU 1, waiting in kvm_vcpu_block, \
             kernel stack: svm_vcpu_run < kvm_arch_vcpu_ioctl_run"
        );
        // Without root: no stack; a running thread has wchan 0.
        assert_eq!(
            describe(9, stat, "0", ""),
            "thread 9 (CPU 0/KVM) state D on CPU 1"
        );
        assert_eq!(describe(9, "garbage", "", ""), "thread 9");
    }

    #[test]
    fn this_process_has_its_threads_listed() {
        let me = threads(std::process::id());
        assert!(!me.is_empty());
        assert!(
            me.iter()
                .all(|l| l.starts_with("thread ") && l.contains(" state ")),
            "{me:?}"
        );
        assert!(threads(u32::MAX).is_empty());
    }
}
