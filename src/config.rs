//! Everything a server can be told, as one plain value.
//!
//! The binary fills a [`Config`] from its flags and the library takes the same value,
//! so a test and a LAN deployment run exactly the same code with different numbers.
//! Nothing here is read from the environment: many servers can live in one process.

use std::path::PathBuf;
use std::time::Duration;

/// The settings of one server. Cheap to clone; `Default` gives the documented values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to accept plain `ws://` and `http://` on. Default: `0.0.0.0:3000`, so
    /// every machine on the LAN can reach it.
    pub listen: Vec<String>,
    /// `wss://` and `https://`. Default: off for the library, so a test's server binds
    /// nothing it was not asked to; the binary turns it on (port 3443, the built-in
    /// development certificate) unless told `--no-tls`.
    pub tls: Option<TlsConfig>,
    /// Browser origins allowed besides the page's own host (`*` allows every origin).
    /// Default: none, which blocks cross-site WebSocket hijacking.
    pub allow_origins: Vec<String>,
    /// Connections open at once, all addresses together; more get `503`. Default:
    /// 10,000, far more than a LAN needs and still within one process's file limit.
    pub max_connections: usize,
    /// Connections open at once from one IP address; more get `503`. Default: 256,
    /// so one busy machine cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Largest message or frame accepted on any endpoint; larger ones close the
    /// connection with 1009. Default: 1 MiB, enough for any chat or relay use while
    /// keeping a malicious peer from making us buffer much.
    pub max_message_size: usize,
    /// Time a client has to finish its request head after connecting (including TLS,
    /// when there is TLS). Default: 10 s, generous for a slow phone, short enough that
    /// a slowloris client cannot hold a thread for long.
    pub handshake_timeout: Duration,
    /// Silence after which the server sends a Ping, and the further silence after
    /// which it drops the client. Default: 30 s, well under the idle timeouts of
    /// home routers and proxies.
    pub ping_interval: Duration,
    /// Chat messages a room remembers for newcomers. Default: 50.
    pub history: usize,
    /// Longest chat text, in bytes of UTF-8. Default: 4 KiB, a long paragraph.
    pub max_text_len: usize,
    /// Chat messages a connection may send per second, sustained. Default: 20.
    pub rate_per_sec: u32,
    /// Chat messages a connection may send in one burst. Default: 40.
    pub rate_burst: u32,
    /// Messages queued for one client before it counts as a slow consumer and is
    /// closed with 1008. Default: 1,024.
    pub outbox_messages: usize,
    /// Bytes queued for one client before it counts as a slow consumer. Default: 8 MiB,
    /// so a stalled reader costs bounded memory however fast the room talks.
    pub outbox_bytes: usize,
    /// How long to wait for the peer's Close after sending ours (shutdown, errors).
    /// Default: 5 s.
    pub close_timeout: Duration,
    /// Log, decoded from the bytes on the wire, every connection's HTTP head and
    /// response and every frame both ways, under the `log` target
    /// `switchboard::trace` (see [`crate::trace`]). Default: off: it is a teaching and
    /// debugging aid, and costs a line per frame.
    pub trace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:3000".to_owned()],
            tls: None,
            allow_origins: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_message_size: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            history: 50,
            max_text_len: 4 * 1024,
            rate_per_sec: 20,
            rate_burst: 40,
            outbox_messages: 1024,
            outbox_bytes: 8 << 20,
            close_timeout: Duration::from_secs(5),
            trace: false,
        }
    }
}

/// Where to serve TLS, and with which certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Addresses to accept `wss://` and `https://` on, e.g. `0.0.0.0:3443`.
    pub listen: Vec<String>,
    /// The certificate and key.
    pub identity: Identity,
}

impl TlsConfig {
    /// TLS on `listen` with `identity`.
    pub fn new(listen: impl Into<String>, identity: Identity) -> Self {
        Self {
            listen: vec![listen.into()],
            identity,
        }
    }
}

/// The certificate a TLS listener presents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity {
    /// The development certificate from `certs/`, built into the binary: valid for
    /// `localhost`, `127.0.0.1` and `::1`, signed by `certs/ca.pem`. For development
    /// only.
    Development,
    /// A PEM certificate chain and its PKCS#8 PEM private key.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
        key: PathBuf,
    },
}
