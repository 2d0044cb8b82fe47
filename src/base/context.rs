//! What every thread of one server shares: its settings, counters and wake-ups, and
//! who is on the other end of a connection.
//!
//! Read-only after start (the counters are atomics), so it is shared by `Arc` with no
//! lock. Nothing here is global: each server has its own, and many run in one process.

use super::Wake;
use crate::cidr::Trusted;
use crate::config::Config;
use crate::files::Files;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tungstenite::protocol::WebSocketConfig;

/// A WebSocket session's read buffer: the size of the frame loop's reads. The request
/// head is read into a buffer of this size, which the session then keeps
/// (`http::request::read_head`).
pub(crate) const READ_BUFFER: usize = 2 * 1024;

/// Identifies one connection for the lifetime of a server.
pub(crate) type ConnId = u64;

/// Who is on the other end of a connection, for logs and for the hub.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub id: ConnId,
    pub addr: SocketAddr,
    /// Whether it came in on a TLS listener.
    pub secure: bool,
    /// Whether the other end is on this machine: a loopback peer, or a client that
    /// trusted proxies on this machine say is on it too (see `http::forwarded`).
    /// What is open to this machine only asks this, never the address, which behind
    /// a proxy names the proxy when the proxy could not name the client.
    pub local: bool,
}

/// What every thread of one server reads.
pub(crate) struct Context {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Notified once, at shutdown, and never cleared.
    pub shutdown: Wake,
    /// Notified when a connection thread ends, so the accept loop joins it.
    pub thread_ended: Wake,
    pub ws_config: WebSocketConfig,
    /// Set when the server has TLS listeners.
    pub tls: Option<openssl::ssl::SslAcceptor>,
    /// Signs session cookies: derived from the key the store (or the cluster) keeps,
    /// so that sign-ins outlive a restart on the same data directory.
    pub session_key: [u8; 32],
    /// Signs admin session cookies: bound to the admin password as `session_key` is
    /// to the password, so that a new admin password ends every admin session and
    /// leaves the members' alone. `None` without an admin password: no admin cookie
    /// is good then.
    pub admin_session_key: Option<[u8; 32]>,
    /// The proxies whose forwarding headers are believed (`Config::trust_proxies`).
    pub trusted: Trusted,
    /// The DNS names a request's `Host` may carry besides IP literals and
    /// `localhost`: the machine's names, the share URLs' hosts, `Config::allow_hosts`.
    pub own_names: Vec<String>,
    /// The `/qr.svg` images drawn so far, by link: a cache of bytes, not chat
    /// state; the lock is held only to look up or insert, never while drawing.
    pub qr_cache: Mutex<HashMap<String, Arc<[u8]>>>,
    /// Where shared files live: connection threads write and serve them.
    pub files: Arc<Files>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("metrics", &self.metrics)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What a [`Context`] is made of besides its settings, each made once by the step of
/// starting that owns it (see `server.rs`), so that nothing is patched in afterwards.
pub(crate) struct ContextParts {
    pub config: Config,
    /// Shared with the backend's threads, which count into it before the context is
    /// built.
    pub metrics: Arc<Metrics>,
    pub tls: Option<openssl::ssl::SslAcceptor>,
    /// Derived from the key the backend keeps and the password (`http::signing_key`).
    pub session_key: [u8; 32],
    /// Derived from the same key and the admin password (`http::admin_signing_key`).
    pub admin_session_key: Option<[u8; 32]>,
    /// Parsed from `config.trust_proxies` when the settings were checked.
    pub trusted: Trusted,
    /// Where shared files live.
    pub files: Arc<Files>,
}

impl Context {
    pub(crate) fn new(parts: ContextParts) -> std::io::Result<Self> {
        let ContextParts {
            config,
            metrics,
            tls,
            session_key,
            admin_session_key,
            trusted,
            files,
        } = parts;
        let ws_config = WebSocketConfig::default()
            // Thin connections: a LAN chat has thousands of mostly idle clients, and
            // tungstenite grows the buffer for a big message when it needs to. The
            // buffer is allocated (and, through the allocator's bookkeeping, made
            // resident) for every connection, so it is small: 2 KiB holds any chat
            // message in one read; a 1 MiB relay message takes 512 reads. It is the
            // buffer the request head came in (`read_head`), kept for the session.
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        let own_names = own_names(&config.public_urls, &config.allow_hosts);
        Ok(Self {
            qr_cache: Default::default(),
            own_names,
            trusted,
            metrics,
            shutdown: Wake::new()?,
            thread_ended: Wake::new()?,
            ws_config,
            config,
            tls,
            session_key,
            admin_session_key,
            files,
        })
    }

    /// A context for a server that has no backend and no TLS (unit tests, fuzz
    /// targets): fresh counters and a random signing key.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn for_config(config: Config) -> std::io::Result<Self> {
        let trusted = Trusted::parse_all(&config.trust_proxies)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Self::new(ContextParts {
            config,
            metrics: Arc::new(Metrics::new()),
            tls: None,
            session_key: super::random::random_key()?,
            admin_session_key: Some(super::random::random_key()?),
            trusted,
            files: Files::open(None, 1 << 20, 1 << 30)?,
        })
    }
}

/// The name or address in a `Host` value, without its port or IPv6 brackets.
pub(crate) fn name_of(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(addr, _)| addr);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The names this machine answers to by itself: its host name, and that name under
/// `.local` (what mDNS gives a LAN), plus the hosts of `urls` (the share URLs).
pub(crate) fn own_names(urls: &[String], extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = extra
        .iter()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let hostname = hostname.trim().to_ascii_lowercase();
        if !hostname.is_empty() {
            let short = hostname.split('.').next().unwrap_or_default().to_owned();
            names.push(format!("{short}.local"));
            names.push(short);
            names.push(hostname);
        }
    }
    for url in urls {
        let authority = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        names.push(name_of(authority).to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    names
}
