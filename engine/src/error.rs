//! Errors that end a command, and the exit status each maps to (SPEC section 9).

use std::fmt;
use std::process::ExitCode;

/// A command failure. Every variant maps to exit status 2; findings (status 1)
/// are not errors and are returned as a normal result.
#[derive(Debug)]
pub enum Error {
    /// Bad usage or configuration.
    Usage(String),
    /// An input or output could not be read or written; names the path.
    Io(String),
    /// The dataflow failed to start or a worker failed.
    Dataflow(String),
}

impl Error {
    /// An I/O error, with the path and what was being done.
    pub fn io(what: &str, path: &std::path::Path, e: impl fmt::Display) -> Error {
        Error::Io(format!("{what} {}: {e}", path.display()))
    }

    /// The process exit status.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(2)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Io(m) => f.write_str(m),
            Error::Dataflow(m) => write!(f, "dataflow: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of a command.
pub type Result<T> = std::result::Result<T, Error>;
