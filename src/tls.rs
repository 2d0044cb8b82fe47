//! TLS for `wss://` and `https://`: loading the certificate, and the server side of
//! the TLS handshake.
//!
//! TLS sits under everything else: once [`accept`] returns, the connection thread runs
//! the very same HTTP front and frame loop over a [`TlsStream`] as over a plain
//! `TcpStream`, through the [`Transport`] trait. The one thing the frame loop must
//! know is that OpenSSL may hold decrypted bytes the socket no longer shows
//! ([`Transport::has_buffered`]).

use crate::base::{Interest, Transport, Wake, wait};
use crate::config::Identity;
use crate::error::{Error, Result};
use native_tls::{HandshakeError, TlsAcceptor, TlsConnector, TlsStream};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The development certificate from `certs/`, built in so that `wss://` works out of
/// the box wherever the binary runs. It is valid for localhost only.
const DEV_CERT: &[u8] = include_bytes!("../certs/localhost.pem");
const DEV_KEY: &[u8] = include_bytes!("../certs/localhost-key.pem");

impl Transport for TlsStream<TcpStream> {
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
        self.buffered_read_size().is_ok_and(|n| n > 0)
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
/// A certificate and key that do not belong together are only noticed by OpenSSL
/// during a handshake, so this runs one against itself before the server starts.
pub(crate) fn acceptor(identity: &Identity) -> Result<TlsAcceptor> {
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
    let failed = |path: &Path, problem: &str, e: native_tls::Error| Error::Certificate {
        path: path.to_owned(),
        problem: problem.to_owned(),
        source: Some(Box::new(e)),
    };
    match native_tls::Certificate::stack_from_pem(&cert) {
        Ok(chain) if !chain.is_empty() => {}
        Ok(_) => {
            return Err(bad(
                &cert_path,
                "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Err(e) => return Err(failed(&cert_path, "not a PEM certificate", e)),
    }
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
    let identity = native_tls::Identity::from_pkcs8(&cert, key)
        .map_err(|e| failed(&key_path, "cannot load the key", e))?;
    let acceptor = TlsAcceptor::new(identity).map_err(Error::Tls)?;
    self_handshake(&acceptor).map_err(|e| Error::Certificate {
        path: key_path.clone(),
        problem: format!(
            "does not work with the certificate {} (is it the matching key?)",
            cert_path.display()
        ),
        source: Some(Box::new(e)),
    })?;
    Ok(acceptor)
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

/// One TLS handshake between `acceptor` and a client that trusts anything, over a
/// socket pair inside this process.
fn self_handshake(acceptor: &TlsAcceptor) -> io::Result<()> {
    let (server_end, client_end) = UnixStream::pair()?;
    for end in [&server_end, &client_end] {
        end.set_read_timeout(Some(Duration::from_secs(5)))?;
        end.set_write_timeout(Some(Duration::from_secs(5)))?;
    }
    let connector = TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .map_err(io::Error::other)?;
    let client = thread::Builder::new()
        .name("tls-check".into())
        .spawn(move || {
            let mut tls = connector
                .connect("localhost", client_end)
                .map_err(|e| io::Error::other(e.to_string()))?;
            tls.write_all(b"ok")?;
            tls.flush()
        })?;
    let served = acceptor
        .accept(server_end)
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|mut tls| {
            let mut buf = [0u8; 2];
            tls.read_exact(&mut buf)
        });
    let connected = client
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the check's client panicked")));
    served.and(connected)
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
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    deadline: Instant,
    shutdown: &Wake,
) -> std::result::Result<TlsStream<TcpStream>, AcceptError> {
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
            Err(HandshakeError::Failure(e)) => return Err(AcceptError::Failed(e.to_string())),
            Err(HandshakeError::WouldBlock(mid)) => {
                // The server's flight fits any socket buffer, so the handshake only
                // ever waits for the client's bytes.
                let woken = wait(
                    mid.get_ref().as_fd(),
                    Interest::READ,
                    [shutdown],
                    Some(deadline),
                )
                .map_err(|e| AcceptError::Failed(e.to_string()))?;
                if woken.fired(shutdown) {
                    return Err(AcceptError::Shutdown);
                }
                if !woken.readable && Instant::now() >= deadline {
                    return Err(AcceptError::Timeout);
                }
                attempt = mid.handshake();
            }
        }
    }
}
