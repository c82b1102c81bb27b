//! The kernel's log as it is written (`/dev/kmsg`), from a point on: how
//! a test learns that the kernel finished something it cannot otherwise
//! observe (an AER recovery).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// The records logged since [`KernelLog::from_now`].
#[derive(Debug)]
pub struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Skips every record logged so far.
    pub fn from_now() -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self { file })
    }

    /// The message of the first new record that contains one of `needles`,
    /// reading (without waiting) the records logged since the last call.
    pub fn find(&mut self, needles: &[&str]) -> io::Result<Option<String>> {
        let mut record = vec![0u8; 8192];
        loop {
            match self.file.read(&mut record) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    let text = String::from_utf8_lossy(&record[..n]);
                    let message = message_of(&text);
                    if needles.iter().any(|w| message.contains(w)) {
                        return Ok(Some(message.to_string()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // Records were overwritten before this reader got to them:
                // the next read goes on from the oldest one kept.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The message of a `/dev/kmsg` record: `prio,seq,usec,flags;message\n`
/// followed by continuation lines (` KEY=value`).
fn message_of(record: &str) -> &str {
    let first = record.lines().next().unwrap_or("");
    first.split_once(';').map_or(first, |(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::message_of;

    #[test]
    fn a_record_s_message_is_after_its_header() {
        assert_eq!(
            message_of(
                "6,812,5465430,-;pcieport 0000:0c:00.0: AER: device recovery successful\n SUBSYSTEM=pci\n"
            ),
            "pcieport 0000:0c:00.0: AER: device recovery successful"
        );
        assert_eq!(message_of("no header"), "no header");
    }
}
