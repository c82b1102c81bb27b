//! A host thread that drives or watches QEMU while a VM test runs: started
//! by the spec's `before_boot`, told to stop and joined by its
//! `after_exit`, which keeps the facts it returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::{self, JoinHandle};

use crate::runner::HostFacts;

/// One such thread per test, in a `static`.
#[derive(Debug)]
pub struct HostThread {
    handle: Mutex<Option<JoinHandle<HostFacts>>>,
    stop: AtomicBool,
    /// The host fact that says what went wrong with the thread itself.
    error_key: &'static str,
}

impl HostThread {
    pub const fn new(error_key: &'static str) -> Self {
        Self {
            handle: Mutex::new(None),
            stop: AtomicBool::new(false),
            error_key,
        }
    }

    /// Runs `work` on a new thread (a stop asked of an earlier one is
    /// forgotten).
    pub fn start(&self, work: impl FnOnce() -> HostFacts + Send + 'static) {
        self.stop.store(false, Ordering::SeqCst);
        *self.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread::spawn(work));
    }

    /// True once [`Self::stop`] was called: the work should end.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Asks the work to end and waits for it: its facts, or one fact
    /// `error_key` when it panicked or never started.
    pub fn stop(&self) -> HostFacts {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle {
            Some(h) => h.join().unwrap_or_else(|_| {
                vec![(self.error_key.into(), "the host thread panicked".into())]
            }),
            None => vec![(self.error_key.into(), "no host thread".into())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static T: HostThread = HostThread::new("t.error");

    #[test]
    fn the_work_sees_the_stop_and_its_facts_come_back() {
        assert_eq!(
            T.stop(),
            [("t.error".to_string(), "no host thread".to_string())]
        );
        T.start(|| {
            while !T.stopping() {
                thread::sleep(std::time::Duration::from_millis(5));
            }
            vec![("t.done".into(), "yes".into())]
        });
        assert!(!T.stopping());
        assert_eq!(T.stop(), [("t.done".to_string(), "yes".to_string())]);
        T.start(|| panic!("planted"));
        assert_eq!(T.stop()[0].1, "the host thread panicked");
    }
}
