//! TLS for `wss://` and `https://`: loading the certificate, and the server side of
//! the TLS handshake.
//!
//! TLS sits under everything else: once [`accept`] returns, the connection thread runs
//! the very same HTTP front and frame loop over an [`SslStream`] as over a plain
//! `TcpStream`, through the [`Transport`] trait. The one thing the frame loop must
//! know is that OpenSSL may hold decrypted bytes the socket no longer shows
//! ([`Transport::has_buffered`]).
//!
//! The server negotiates TLS 1.3, or TLS 1.2 with a client that has nothing newer,
//! and nothing older (Mozilla's "intermediate" configuration, version 5). It speaks
//! to OpenSSL through the `openssl` crate rather than `native-tls`, which wraps the
//! same OpenSSL here anyway: `native-tls`'s acceptor starts from the older version 4
//! of that configuration, which turns TLS 1.3 off, and none of its settings turn it
//! back on. Clients (`switchboard connect`, the tests) keep `native-tls`, whose
//! connector does speak TLS 1.3.

use crate::base::{Interest, Transport, Wake, wait};
use crate::config::Identity;
use crate::error::{Error, Result};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{ErrorCode, HandshakeError, SslAcceptor, SslMethod, SslStream, SslVersion};
use openssl::x509::X509;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The development certificate from `certs/`, built in so that `wss://` works out of
/// the box wherever the binary runs. It is valid for localhost only.
const DEV_CERT: &[u8] = include_bytes!("../certs/localhost.pem");
const DEV_KEY: &[u8] = include_bytes!("../certs/localhost-key.pem");

impl Transport for SslStream<TcpStream> {
    fn socket(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.get_ref().set_nonblocking(on)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_write_timeout(timeout)
    }

    fn has_buffered(&self) -> bool {
        self.ssl().pending() > 0
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        // close_notify first (RFC 8446 §6.1), then the TCP FIN. A close_notify that
        // would block is not worth waiting for: the FIN says the same.
        let _ = self.shutdown();
        self.get_ref().shutdown(Shutdown::Write)
    }
}

/// Builds the acceptor for `identity`, with errors that name the file at fault.
///
/// The certificate file holds the server's certificate, then any intermediate
/// certificates, which are sent along in that order. The key must be PKCS#8.
pub(crate) fn acceptor(identity: &Identity) -> Result<SslAcceptor> {
    let (cert, key, cert_path, key_path) = match identity {
        Identity::Development => {
            let builtin = PathBuf::from("<built-in development certificate>");
            (
                DEV_CERT.to_vec(),
                DEV_KEY.to_vec(),
                builtin.clone(),
                builtin,
            )
        }
        Identity::Files { cert, key } => (read(cert)?, read(key)?, cert.clone(), key.clone()),
    };
    let bad = |path: &Path, problem: String| Error::Certificate {
        path: path.to_owned(),
        problem,
        source: None,
    };
    let failed = |path: &Path, problem: &str, e: ErrorStack| Error::Certificate {
        path: path.to_owned(),
        problem: problem.to_owned(),
        source: Some(Box::new(e)),
    };
    let mut chain = X509::stack_from_pem(&cert)
        .map_err(|e| failed(&cert_path, "not a PEM certificate", e))?
        .into_iter();
    let Some(leaf) = chain.next() else {
        return Err(bad(
            &cert_path,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    };
    let key = trim_leading_whitespace(&key);
    if !key.starts_with(b"-----BEGIN PRIVATE KEY-----") {
        let reason = if key.starts_with(b"-----BEGIN RSA PRIVATE KEY-----")
            || key.starts_with(b"-----BEGIN EC PRIVATE KEY-----")
        {
            "the key is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`"
        } else {
            "not a PEM private key (expected PKCS#8: -----BEGIN PRIVATE KEY-----)"
        };
        return Err(bad(&key_path, reason.into()));
    }
    let key =
        PKey::private_key_from_pem(key).map_err(|e| failed(&key_path, "cannot load the key", e))?;
    // Version 5 of Mozilla's intermediate configuration: TLS 1.3 and 1.2. The floor
    // is set again explicitly, so that no default of the OpenSSL underneath can
    // lower it.
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .and_then(|mut b| {
            b.set_min_proto_version(Some(SslVersion::TLS1_2))
                .map(|()| b)
        })
        .map_err(Error::Tls)?;
    builder
        .set_certificate(&leaf)
        .map_err(|e| failed(&cert_path, "OpenSSL refuses the certificate", e))?;
    for intermediate in chain {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(|e| failed(&cert_path, "OpenSSL refuses a chain certificate", e))?;
    }
    // OpenSSL compares the key with the certificate as it takes it, and once more
    // when asked: either failure means the two do not belong together.
    let mismatch = |e| {
        failed(
            &key_path,
            &format!(
                "does not work with the certificate {} (is it the matching key?)",
                cert_path.display()
            ),
            e,
        )
    };
    builder.set_private_key(&key).map_err(mismatch)?;
    builder.check_private_key().map_err(mismatch)?;
    Ok(builder.build())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Certificate {
        path: path.to_owned(),
        problem: "cannot read it".to_owned(),
        source: Some(Box::new(e)),
    })
}

fn trim_leading_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub(crate) enum AcceptError {
    /// The deadline passed mid-handshake.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The peer did not speak TLS, or spoke it wrong.
    Failed(String),
}

impl std::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcceptError::Timeout => write!(f, "not finished before the handshake timeout"),
            AcceptError::Shutdown => write!(f, "the server is shutting down"),
            AcceptError::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// The server side of a TLS handshake, bounded by `deadline` and cut short by a
/// shutdown. Returns the stream in blocking mode, like a fresh `TcpStream`.
pub(crate) fn accept(
    acceptor: &SslAcceptor,
    tcp: TcpStream,
    deadline: Instant,
    shutdown: &Wake,
) -> std::result::Result<SslStream<TcpStream>, AcceptError> {
    // Non-blocking, so that a client stalling mid-handshake cannot hold this thread
    // past the deadline or past a shutdown.
    tcp.set_nonblocking(true)
        .map_err(|e| AcceptError::Failed(e.to_string()))?;
    let mut attempt = acceptor.accept(tcp);
    loop {
        match attempt {
            Ok(stream) => {
                stream
                    .get_ref()
                    .set_nonblocking(false)
                    .map_err(|e| AcceptError::Failed(e.to_string()))?;
                return Ok(stream);
            }
            Err(HandshakeError::SetupFailure(e)) => return Err(AcceptError::Failed(e.to_string())),
            Err(HandshakeError::Failure(mid)) => {
                return Err(AcceptError::Failed(mid.error().to_string()));
            }
            Err(HandshakeError::WouldBlock(mid)) => {
                // Mostly the handshake waits for the client's bytes; the server's own
                // flights (TLS 1.3 session tickets included) rarely fill a socket
                // buffer, but when they do it waits for room.
                let interest = if mid.error().code() == ErrorCode::WANT_WRITE {
                    Interest::WRITE
                } else {
                    Interest::READ
                };
                let woken = wait(mid.get_ref().as_fd(), interest, [shutdown], Some(deadline))
                    .map_err(|e| AcceptError::Failed(e.to_string()))?;
                if woken.fired(shutdown) {
                    return Err(AcceptError::Shutdown);
                }
                if !woken.readable && !woken.writable && Instant::now() >= deadline {
                    return Err(AcceptError::Timeout);
                }
                attempt = mid.handshake();
            }
        }
    }
}
