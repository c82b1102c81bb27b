//! One error type for every xtask command.
//!
//! Every failure ends up as one message printed by `main` plus a non-zero
//! exit code: 2 for a wrong command line, 1 for everything else. Nothing in
//! xtask is supposed to panic on bad input or a failing tool.

use std::fmt;

/// A failure with a message meant for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    usage: bool,
}

impl Error {
    /// A failure while doing the work (download, checksum, tool missing...).
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: false,
        }
    }

    /// The command line was wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: true,
        }
    }

    /// Wrap an I/O error with what was being done when it happened.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::msg(format!("{context}: {err}"))
    }

    #[cfg(test)]
    pub fn is_usage(&self) -> bool {
        self.usage
    }

    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
