//! The crate's one error type.
//!
//! Errors here are the server's own (it could not start). A misbehaving peer is never
//! an `Error` for the caller: it ends that peer's connection with the right status or
//! close code, and a log line.
//!
//! Each message says what went wrong in lowercase and stops there; the cause, when
//! there is one, is [`std::error::Error::source`], so a printer that walks the chain
//! shows every cause exactly once.

use std::path::PathBuf;
use std::{fmt, io};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A listen address could not be parsed or resolved.
    BadAddress {
        /// The address as given.
        addr: String,
        /// Why it could not be resolved.
        source: io::Error,
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
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The underlying error, when there is one (I/O, OpenSSL).
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store (the data directory or its `chat.sqlite3`) cannot be used: not
    /// SQLite, unreadable, in use by another running server, or from a newer version.
    Store {
        /// The file or directory at fault (empty for an in-memory store).
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The underlying error, when there is one (I/O, SQLite).
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Redis (`--redis`) cannot be reached or used at start.
    Redis {
        /// The URL as given, with any password masked.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// TLS could not be set up for another reason (OpenSSL's own error).
    Tls(openssl::error::ErrorStack),
    /// A setting is out of range.
    BadConfig {
        /// The [`crate::Config`] field at fault, e.g. `"ping_interval"`.
        setting: &'static str,
        /// What is wrong with its value, e.g. `"must be longer than zero"`.
        problem: String,
    },
    /// One of the server's threads could not be started.
    Thread {
        /// The thread's name (`hub`, `accept`).
        name: &'static str,
        /// The error from the operating system.
        source: io::Error,
    },
    /// Any other I/O error (creating a wake-up descriptor, configuring a listener, …).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadAddress { addr, .. } => write!(f, "bad listen address {addr:?}"),
            Error::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            Error::Certificate { path, problem, .. } => {
                write!(f, "{}: {problem}", path.display())
            }
            Error::Store { path, problem, .. } if path.as_os_str().is_empty() => {
                write!(f, "store: {problem}")
            }
            Error::Store { path, problem, .. } => write!(f, "{}: {problem}", path.display()),
            Error::Redis { url, problem } => write!(f, "redis at {url}: {problem}"),
            Error::Tls(_) => write!(f, "cannot set up tls"),
            Error::BadConfig { setting, problem } => write!(f, "{setting} {problem}"),
            Error::Thread { name, .. } => write!(f, "cannot start the {name} thread"),
            Error::Io(_) => write!(f, "i/o error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::BadAddress { source, .. }
            | Error::Bind { source, .. }
            | Error::Thread { source, .. }
            | Error::Io(source) => Some(source),
            Error::Certificate { source, .. } | Error::Store { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            Error::Tls(source) => Some(source),
            Error::BadConfig { .. } | Error::Redis { .. } => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every message in the chain, as a printer that walks it would show them.
    fn chain(e: &Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut source = e.source();
        while let Some(cause) = source {
            out.push(cause.to_string());
            source = cause.source();
        }
        out
    }

    #[test]
    fn each_cause_is_printed_once() {
        let e = Error::Bind {
            addr: "0.0.0.0:3000".into(),
            source: io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        };
        assert_eq!(
            chain(&e),
            ["cannot listen on 0.0.0.0:3000", "address in use"]
        );
        let e = Error::Certificate {
            path: "key.pem".into(),
            problem: "cannot read it".into(),
            source: Some(Box::new(io::Error::other("no such file"))),
        };
        assert_eq!(chain(&e), ["key.pem: cannot read it", "no such file"]);
        assert!(e.source().is_some());
    }
}
