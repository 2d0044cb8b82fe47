//! The crate's one error type.
//!
//! Errors here are the server's own (it could not start). A misbehaving peer is never
//! an `Error` for the caller: it ends that peer's connection with the right status or
//! close code, and a log line.

use std::{fmt, io};

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A listen address could not be parsed or resolved.
    BadAddress {
        /// The address as given.
        addr: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A listen address could not be bound (in use, no permission, …).
    Bind {
        /// The address as given.
        addr: String,
        /// The error from the operating system.
        source: io::Error,
    },
    /// A certificate or key file is missing, unreadable, or wrong.
    Certificate {
        /// The file at fault.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS could not be set up for another reason.
    Tls(String),
    /// A setting is out of range.
    BadConfig(String),
    /// Any other I/O error (creating a thread or a wake-up descriptor, …).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadAddress { addr, reason } => {
                write!(f, "bad listen address {addr:?}: {reason}")
            }
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Certificate { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Tls(what) => write!(f, "tls: {what}"),
            Error::BadConfig(what) => write!(f, "bad configuration: {what}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
