//! A small QMP client for VM tests that drive QEMU while the guest runs
//! (hot-plug): `-qmp unix:PATH,server=on,wait=off` on QEMU's command line
//! ([`qemu_args`]), [`Qmp::connect`] from the host.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How long one command may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The QEMU arguments for a QMP server on `path`.
pub fn qemu_args(path: &str) -> Vec<String> {
    vec!["-qmp".into(), format!("unix:{path},server=on,wait=off")]
}

/// A connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events read while waiting for replies, for [`Qmp::wait_event`].
    events: Vec<Value>,
}

impl Qmp {
    /// Connects, reads the greeting, negotiates capabilities.
    pub fn connect(path: &str) -> Result<Self> {
        let sock =
            UnixStream::connect(path).map_err(|e| Error::io(format!("QMP connect {path}"), e))?;
        Self::handshake(sock, REPLY_TIMEOUT)
    }

    /// [`Qmp::connect`], the connection retried every 50 ms for up to
    /// `limit` while QEMU has not created or not yet listens on `path`;
    /// any other failure is final.
    pub fn connect_within(path: &str, limit: Duration) -> Result<Self> {
        Self::connect_within_replying(path, limit, REPLY_TIMEOUT)
    }

    /// [`Qmp::connect_within`], every reply (the greeting and the
    /// capabilities' included) awaited at most `reply`.
    pub fn connect_within_replying(path: &str, limit: Duration, reply: Duration) -> Result<Self> {
        let t = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(sock) => return Self::handshake(sock, reply),
                Err(e)
                    if t.elapsed() < limit
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                        ) =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(Error::io(format!("QMP connect {path}"), e)),
            }
        }
    }

    /// Reads the greeting and negotiates capabilities on a new connection.
    fn handshake(sock: UnixStream, reply: Duration) -> Result<Self> {
        sock.set_read_timeout(Some(reply))
            .map_err(|e| Error::io("QMP socket", e))?;
        let writer = sock.try_clone().map_err(|e| Error::io("QMP socket", e))?;
        let mut q = Self {
            reader: BufReader::new(sock),
            writer,
            events: Vec::new(),
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::msg(format!("QMP greeting expected, got {greeting}")));
        }
        q.execute("qmp_capabilities", json!({}))?
            .map_err(|e| Error::msg(format!("qmp_capabilities: {e}")))?;
        Ok(q)
    }

    /// Runs the HMP command `cmd` (`human-monitor-command`): its output,
    /// or an error naming `cmd` when QEMU refused it.
    pub fn hmp(&mut self, cmd: &str) -> Result<String> {
        self.execute("human-monitor-command", json!({ "command-line": cmd }))?
            .map(|v| v.as_str().unwrap_or("").to_string())
            .map_err(|e| Error::msg(format!("{cmd}: {e}")))
    }

    /// [`Qmp::hmp`] with vCPU `cpu` as the monitor's current CPU (what
    /// `info registers` shows, e.g.).
    pub fn hmp_on(&mut self, cpu: u32, cmd: &str) -> Result<String> {
        self.execute(
            "human-monitor-command",
            json!({ "command-line": cmd, "cpu-index": cpu }),
        )?
        .map(|v| v.as_str().unwrap_or("").to_string())
        .map_err(|e| Error::msg(format!("{cmd} (CPU {cpu}): {e}")))
    }

    /// Runs `command`: `Ok(Ok(return value))`, or `Ok(Err(error desc))`
    /// when QEMU refused it. Events in between are kept for
    /// [`Qmp::wait_event`].
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Value,
    ) -> Result<std::result::Result<Value, String>> {
        let line = json!({"execute": command, "arguments": arguments}).to_string();
        writeln!(self.writer, "{line}").map_err(|e| Error::io("QMP write", e))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(Ok(r.clone()));
            }
            if let Some(e) = v.get("error") {
                let desc = e.get("desc").and_then(Value::as_str).unwrap_or("?");
                return Ok(Err(desc.to_string()));
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Waits (as long as a reply may take) for event `name` whose `data`
    /// has `key` = `value`, e.g. `DEVICE_DELETED` with `device` = the id;
    /// returns its data.
    pub fn wait_event(&mut self, name: &str, key: &str, value: &str) -> Result<Value> {
        let matches = |v: &Value| {
            v.get("event").and_then(Value::as_str) == Some(name)
                && v.pointer(&format!("/data/{key}")).and_then(Value::as_str) == Some(value)
        };
        if let Some(i) = self.events.iter().position(matches) {
            return Ok(self.events.remove(i)["data"].clone());
        }
        loop {
            let v = self.read()?;
            if matches(&v) {
                return Ok(v["data"].clone());
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| Error::io("QMP read", e))?;
        if n == 0 {
            return Err(Error::msg("QMP: QEMU closed the connection"));
        }
        serde_json::from_str(&line).map_err(|e| Error::msg(format!("QMP: {e}: {line}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn only_a_missing_listener_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let path = path.to_str().unwrap();
        let t = Instant::now();
        assert!(Qmp::connect_within(path, Duration::from_millis(300)).is_err());
        assert!(t.elapsed() >= Duration::from_millis(300));
        // A listener that answers something else than QMP: no retry.
        let l = UnixListener::bind(path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"{\"not\": \"qmp\"}\n").unwrap();
        });
        let t = Instant::now();
        let e = Qmp::connect_within(path, Duration::from_secs(30)).unwrap_err();
        assert!(e.to_string().contains("QMP greeting expected"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        server.join().unwrap();
    }
}
