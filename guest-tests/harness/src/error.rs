//! One error type: a message meant for the person reading the log.

use std::fmt;

/// A harness failure (bad input, a tool that failed, a missing file).
///
/// A *test* failure is not an `Error`: it is a [`crate::runner::RunOutcome`]
/// whose checks found problems. `Error` is for when the harness could not
/// even run the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self(format!("{context}: {err}"))
    }

    /// The same error with more context in front.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
