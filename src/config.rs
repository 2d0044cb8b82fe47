//! Everything a server can be told, as one plain value.
//!
//! The binary fills a [`Config`] from its flags and the library takes the same value,
//! so a test and a LAN deployment run exactly the same code with different numbers.
//! Nothing here is read from the environment: many servers can live in one process.
//!
//! Like tungstenite's `WebSocketConfig`, every field has a setter of the same name
//! that takes and returns the value, so a config reads as one expression:
//!
//! ```
//! use std::time::Duration;
//! use switchboard::Config;
//!
//! let config = Config::default()
//!     .listen("127.0.0.1:0")
//!     .ping_interval(Duration::from_secs(5))
//!     .history(10);
//! assert_eq!(config.listen, ["127.0.0.1:0"]);
//! assert_eq!(config.history, 10);
//! ```
//!
//! No setter undoes another: the ones for lists (`listen`, `tls_listen`,
//! `allow_origin`, `trust_proxy`) add to them.

use std::path::PathBuf;
use std::time::Duration;

/// Where the server listens when it was given no address and no listener: every
/// interface, so every machine on the LAN can reach it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3000";

/// The settings of one server. Cheap to clone; `Default` gives the documented values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to accept plain `ws://` and `http://` on. Default: none, which means
    /// [`DEFAULT_LISTEN`] (`0.0.0.0:3000`) unless the server was handed a listener of
    /// its own ([`crate::Server::from_listener`]) or given TLS addresses only (then it
    /// serves TLS only: nothing in plain text that was not asked for).
    pub listen: Vec<String>,
    /// Addresses to accept `wss://` and `https://` on. Default: none, so TLS is off
    /// and a test's server binds nothing it was not asked to; the binary adds
    /// `0.0.0.0:3443` unless told `--no-tls`.
    pub tls_listen: Vec<String>,
    /// The certificate the TLS listeners present. Default: the built-in development
    /// certificate, so `wss://` works out of the box on `localhost`.
    pub tls_identity: Identity,
    /// What people elsewhere on the network open to reach this server, the one to
    /// share first (e.g. `http://192.168.1.20:3000/`). The page's invite link and QR
    /// code use them when the page itself was opened on loopback, where its own
    /// address would be useless to anyone else; `GET /info` lists them. Default: none,
    /// and the page uses its own address. The binary lists the machine's LAN
    /// addresses.
    pub public_urls: Vec<String>,
    /// Browser origins allowed besides the page's own host (`*` allows every origin).
    /// Default: none, which blocks cross-site WebSocket hijacking.
    pub allow_origins: Vec<String>,
    /// DNS names a request's `Host` may carry besides the ones the server knows it
    /// has (`localhost`, the machine's own names, the hosts of
    /// [`Config::public_urls`](field@Config::public_urls)); IP literals always pass.
    /// Default: none. Any other name is refused with `421` on every endpoint but
    /// `/healthz`: a web page on a name its attacker points at this server (DNS
    /// rebinding) would otherwise be same-origin with the chat. Behind a proxy, the
    /// public name the proxy passes on goes here.
    pub allow_hosts: Vec<String>,
    /// Connections open at once, all addresses together; more get `503`. Default:
    /// 10,000, far more than a LAN needs and still within one process's file limit.
    pub max_connections: usize,
    /// Connections open at once from one IP address; more get `503`. Default: 256,
    /// so one busy machine cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Rooms with stored messages, at most; a message that would start another gets
    /// `error` `too_many_rooms` (`403` from the API). Default: 10,000, more than any
    /// LAN or school uses, and a bound on what one address could otherwise grow the
    /// store to (rooms are kept until their messages expire, which they never do on
    /// their own). Each address may also start only a few new rooms a minute.
    pub max_rooms: usize,
    /// Largest message or frame accepted on any endpoint; larger ones close the
    /// connection with 1009. Default: 1 MiB, enough for any chat or relay use while
    /// keeping a malicious peer from making us buffer much.
    pub max_message_size: usize,
    /// Largest file a member may share, in bytes; a larger one is refused with
    /// `file_too_large` before any byte. Default: 100 MiB, a phone video or a build.
    pub max_file_size: u64,
    /// Most bytes all shared files may take together; past it the oldest files go
    /// (their messages stay, and say so). Default (`None`): 10 GiB or a tenth of the
    /// free disk, whichever is less.
    pub max_files_bytes: Option<u64>,
    /// Time a client has to finish its request head after connecting (including TLS,
    /// when there is TLS). Default: 10 s, generous for a slow phone, short enough that
    /// a slowloris client cannot hold a thread for long.
    pub handshake_timeout: Duration,
    /// Silence after which the server sends a Ping, and the further silence after
    /// which it drops the client. Default: 30 s, well under the idle timeouts of
    /// home routers and proxies.
    pub ping_interval: Duration,
    /// Chat messages a newcomer's `welcome` carries. Default: 50, a screenful of
    /// context.
    pub history: usize,
    /// Where chat history is kept: `chat.sqlite3` in this directory (created if
    /// missing), so that it survives a restart, even `kill -9`. Default: none, for the
    /// library: history is kept in memory and a test leaves no files behind. The
    /// binary keeps it in `$XDG_DATA_HOME/switchboard` unless told `--no-persist`.
    pub data_dir: Option<PathBuf>,
    /// The newest chat messages kept per room; older ones are deleted in the
    /// background. Default: 100,000, months of a busy LAN chat in a few tens of MB.
    pub retain: usize,
    /// Several nodes, one chat: the Redis that keeps the messages (in place
    /// of `data_dir`), the names and who is where, and carries every event between the
    /// nodes, e.g. `redis://127.0.0.1:6379/0`. Default: none, a single node.
    pub redis: Option<String>,
    /// Longest chat text, in bytes of UTF-8. Default: 4 KiB, a long paragraph; longer
    /// texts get `error` `text_too_long`.
    pub max_text_len: usize,
    /// Chat requests a connection may send per second, sustained. Default: 20, more
    /// than anyone types, few enough that one client cannot flood a room.
    pub rate_per_sec: u32,
    /// Chat requests a connection may send in one burst. Default: 40, so a paste of a
    /// few lines or a reconnecting script is not refused.
    pub rate_burst: u32,
    /// Posts to the HTTP API (`POST /api/rooms/{room}/messages`) one client (address,
    /// or IPv6 /64) may make per second, sustained, with bursts of twice as many.
    /// Default: 20, as for a chat connection: a build script posting its steps is
    /// never slowed, a loop posting garbage into a room is. Separate from
    /// [`rate_per_sec`](field@Config::rate_per_sec), which is per chat connection.
    pub api_rate: u32,
    /// Messages queued for one client before it counts as a slow consumer and is
    /// closed with 1008. Default: 1,024, several seconds of a busy room.
    pub outbox_messages: usize,
    /// Bytes queued for one client before it counts as a slow consumer. Default: 8 MiB,
    /// so a stalled reader costs bounded memory however fast the room talks.
    pub outbox_bytes: usize,
    /// How long to wait for the peer's Close after sending ours (at shutdown, or when
    /// evicting a slow consumer), or for the peer to finish a close it started. A
    /// client that never answers holds up [`crate::ServerHandle::shutdown`] this long.
    /// Default: 5 s, enough for a phone on a weak link to answer.
    pub close_timeout: Duration,
    /// The token `POST /api/rooms/{room}/messages` (and `DELETE` of a message, which
    /// it moderates) needs, as `Authorization: Bearer TOKEN`. Default: none, and the
    /// endpoint answers `403`
    /// saying how to set one: nobody can post from outside until the operator decides
    /// they may.
    pub api_token: Option<Secret>,
    /// The password that keeps strangers out: with one, every WebSocket endpoint and
    /// every `/api` read needs a session cookie from `POST /login` or
    /// `Authorization: Bearer PASSWORD`. Default: none, an open LAN chat.
    pub password: Option<Secret>,
    /// The admin password: signing in with it (`POST /login`, or
    /// `Authorization: Bearer ADMIN_PASSWORD`) makes an admin, whose chat `welcome`
    /// says `"role":"admin"`; an admin may go wherever a member may. It spends from
    /// the same budget of guesses as the password. It may be set without
    /// [`password`](field@Config::password): everyone comes in then, and the admin
    /// still signs in. It must differ from the password. Default: none, and nobody is
    /// an admin.
    pub admin_password: Option<Secret>,
    /// Serve `/metrics` to everyone even while a password is set. Default: off, so
    /// that a password-protected server shows its numbers only to loopback (where a
    /// local Prometheus or an SSH tunnel scrapes).
    pub metrics_public: bool,
    /// Log, decoded from the bytes on the wire, every connection's HTTP head and
    /// response and every frame both ways, under the `log` target
    /// `switchboard::trace` (see [`crate::trace`]). Default: off: it is a teaching and
    /// debugging aid, and costs a line per frame.
    pub trace: bool,
    /// Address ranges of reverse proxies (CIDR, e.g. `127.0.0.1/32`, `10.0.0.0/8`,
    /// `::1/128`; a bare address is itself alone) whose forwarding headers (the kind
    /// [`proxy_header`](field@Config::proxy_header) names) are believed: for a connection from
    /// one of them, the client they name is the one per-IP limits, logs and the Origin
    /// check see. Default: none, so nobody can claim to be someone else by
    /// writing a header; behind nginx, name nginx's address here.
    pub trust_proxies: Vec<String>,
    /// Which forwarding header the proxies of
    /// [`trust_proxies`](field@Config::trust_proxies) write; only that one is read,
    /// and the other is ignored as the client's own. Default:
    /// [`ProxyHeader::XForwarded`], because the common proxies (nginx as in
    /// `deploy/nginx.conf`, HAProxy, most load balancers) write `X-Forwarded-*` and
    /// pass a client's own `Forwarded` through unless told to clear it, so believing
    /// it would let any client name itself.
    pub proxy_header: ProxyHeader,
    /// How long a kicked member (its session, its name and its address) may not come
    /// back into the room it was kicked from (`--kick-minutes`). Default: 10 minutes,
    /// long enough for a class or a talk to move on, short enough that a mistaken kick
    /// mends itself.
    pub kick_time: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            tls_listen: Vec::new(),
            tls_identity: Identity::Development,
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            public_urls: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_rooms: 10_000,
            max_message_size: 1 << 20,
            max_file_size: 100 << 20,
            max_files_bytes: None,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            history: 50,
            data_dir: None,
            retain: 100_000,
            redis: None,
            max_text_len: 4 * 1024,
            rate_per_sec: 20,
            rate_burst: 40,
            api_rate: 20,
            outbox_messages: 1024,
            outbox_bytes: 8 << 20,
            close_timeout: Duration::from_secs(5),
            api_token: None,
            password: None,
            admin_password: None,
            metrics_public: false,
            trace: false,
            trust_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwarded,
            kick_time: Duration::from_secs(10 * 60),
        }
    }
}

impl Config {
    /// Also listens on `addr` (for example `"127.0.0.1:0"`) for `ws://` and `http://`.
    /// See [`Config::listen`](field@Config::listen).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }

    /// Also serves `wss://` and `https://` on `addr`. See
    /// [`Config::tls_listen`](field@Config::tls_listen).
    pub fn tls_listen(mut self, addr: impl Into<String>) -> Self {
        self.tls_listen.push(addr.into());
        self
    }

    /// The TLS certificate chain and its PKCS#8 key, as PEM files. See
    /// [`Config::tls_identity`](field@Config::tls_identity).
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_identity = Identity::Files {
            cert: cert.into(),
            key: key.into(),
        };
        self
    }

    /// Also allows this browser origin (`*`: all). See [`Config::allow_origins`].
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allow_origins.push(origin.into());
        self
    }

    /// Also answers to the DNS name `name` in `Host`. See
    /// [`Config::allow_hosts`](field@Config::allow_hosts).
    pub fn allow_host(mut self, name: impl Into<String>) -> Self {
        self.allow_hosts.push(name.into());
        self
    }

    /// Also lists `url` as an address to share. See
    /// [`Config::public_urls`](field@Config::public_urls).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_urls.push(url.into());
        self
    }

    /// See [`Config::max_connections`](field@Config::max_connections).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// See [`Config::max_connections_per_ip`](field@Config::max_connections_per_ip).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n;
        self
    }

    /// See [`Config::max_rooms`](field@Config::max_rooms).
    pub fn max_rooms(mut self, n: usize) -> Self {
        self.max_rooms = n;
        self
    }

    /// See [`Config::max_message_size`](field@Config::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// See [`Config::max_file_size`](field@Config::max_file_size).
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// See [`Config::max_files_bytes`](field@Config::max_files_bytes).
    pub fn max_files_bytes(mut self, bytes: u64) -> Self {
        self.max_files_bytes = Some(bytes);
        self
    }

    /// See [`Config::handshake_timeout`](field@Config::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// See [`Config::ping_interval`](field@Config::ping_interval).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// See [`Config::history`](field@Config::history).
    pub fn history(mut self, messages: usize) -> Self {
        self.history = messages;
        self
    }

    /// Keeps chat history in `dir`. See [`Config::data_dir`](field@Config::data_dir).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// See [`Config::retain`](field@Config::retain).
    pub fn retain(mut self, messages: usize) -> Self {
        self.retain = messages;
        self
    }

    /// Joins the cluster on the Redis at `url`. See [`Config::redis`](field@Config::redis).
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
        self
    }

    /// See [`Config::max_text_len`](field@Config::max_text_len).
    pub fn max_text_len(mut self, bytes: usize) -> Self {
        self.max_text_len = bytes;
        self
    }

    /// See [`Config::rate_per_sec`](field@Config::rate_per_sec).
    pub fn rate_per_sec(mut self, requests: u32) -> Self {
        self.rate_per_sec = requests;
        self
    }

    /// The limits every welcome and `GET /info` tell a client.
    pub(crate) fn limits(&self) -> crate::chat::Limits {
        crate::chat::Limits {
            max_text_len: self.max_text_len,
            max_message_size: self.max_message_size,
            max_file_size: self.max_file_size,
        }
    }

    /// See [`Config::kick_time`](field@Config::kick_time).
    pub fn kick_time(mut self, time: Duration) -> Self {
        self.kick_time = time;
        self
    }

    /// See [`Config::api_rate`](field@Config::api_rate).
    pub fn api_rate(mut self, posts: u32) -> Self {
        self.api_rate = posts;
        self
    }

    /// See [`Config::rate_burst`](field@Config::rate_burst).
    pub fn rate_burst(mut self, requests: u32) -> Self {
        self.rate_burst = requests;
        self
    }

    /// See [`Config::outbox_messages`](field@Config::outbox_messages).
    pub fn outbox_messages(mut self, messages: usize) -> Self {
        self.outbox_messages = messages;
        self
    }

    /// See [`Config::outbox_bytes`](field@Config::outbox_bytes).
    pub fn outbox_bytes(mut self, bytes: usize) -> Self {
        self.outbox_bytes = bytes;
        self
    }

    /// See [`Config::close_timeout`](field@Config::close_timeout).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// See [`Config::api_token`](field@Config::api_token).
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(Secret::new(token));
        self
    }

    /// See [`Config::password`](field@Config::password).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    /// See [`Config::admin_password`](field@Config::admin_password).
    pub fn admin_password(mut self, password: impl Into<String>) -> Self {
        self.admin_password = Some(Secret::new(password));
        self
    }

    /// See [`Config::metrics_public`](field@Config::metrics_public).
    pub fn metrics_public(mut self, on: bool) -> Self {
        self.metrics_public = on;
        self
    }

    /// See [`Config::trace`](field@Config::trace).
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// Also believes the forwarding headers of peers in `cidr`. See
    /// [`Config::trust_proxies`](field@Config::trust_proxies).
    pub fn trust_proxy(mut self, cidr: impl Into<String>) -> Self {
        self.trust_proxies.push(cidr.into());
        self
    }

    /// See [`Config::proxy_header`](field@Config::proxy_header).
    pub fn proxy_header(mut self, header: ProxyHeader) -> Self {
        self.proxy_header = header;
        self
    }

    /// Checks every setting, naming the first one out of range. Returns the trusted
    /// proxy ranges, parsed on the way, so that they are parsed only once.
    pub(crate) fn validate(&self) -> Result<crate::cidr::Trusted, crate::error::Error> {
        let bad = |setting: &'static str, problem: &str| {
            Err(crate::error::Error::BadConfig {
                setting,
                problem: problem.to_owned(),
            })
        };
        let at_least_one = [
            (self.max_connections, "max_connections"),
            (self.max_connections_per_ip, "max_connections_per_ip"),
            (self.max_message_size, "max_message_size"),
            (self.max_text_len, "max_text_len"),
            (self.outbox_messages, "outbox_messages"),
            (self.outbox_bytes, "outbox_bytes"),
            (self.rate_per_sec as usize, "rate_per_sec"),
            (self.rate_burst as usize, "rate_burst"),
            (self.api_rate as usize, "api_rate"),
            (self.retain, "retain"),
        ];
        for (value, setting) in at_least_one {
            if value == 0 {
                return bad(setting, "must be at least 1");
            }
        }
        let timeouts = [
            (self.handshake_timeout, "handshake_timeout"),
            (self.ping_interval, "ping_interval"),
            (self.close_timeout, "close_timeout"),
        ];
        for (value, setting) in timeouts {
            if value.is_zero() {
                return bad(setting, "must be longer than zero");
            }
        }
        // Else whoever knows the password would be an admin too, and a session could
        // not say which it was signed in with.
        if self.admin_password.is_some() && self.admin_password == self.password {
            return bad("admin_password", "must differ from the password");
        }
        crate::cidr::Trusted::parse_all(&self.trust_proxies)
            .or_else(|problem| bad("trust_proxy", &problem))
    }
}

/// A secret (a token, a password): kept as given, never shown by `Debug`, compared in
/// constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether `offered` is this secret, taking the same time whatever it is, so
    /// that timing tells an attacker nothing about how close it was: both are hashed
    /// (SHA-256) and the digests compared in constant time (`subtle`), which hides
    /// the length too.
    pub fn matches(&self, offered: &[u8]) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let ours = sha2::Sha256::digest(self.0.as_bytes());
        let theirs = sha2::Sha256::digest(offered);
        ours.ct_eq(&theirs).into()
    }

    /// Whether this guess is `ours`, compared as [`Secret::matches`] does.
    pub(crate) fn feed_matches(&self, ours: &Secret) -> bool {
        ours.matches(self.0.as_bytes())
    }

    /// Hands the secret's bytes to `f` (to derive a key from it), never a copy.
    pub(crate) fn feed(&self, f: impl FnOnce(&[u8])) {
        f(self.0.as_bytes());
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The forwarding header a trusted reverse proxy writes (`--proxy-header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`, each proxy
    /// appending to the first: what nginx, HAProxy and most load balancers write.
    XForwarded,
    /// `Forwarded` (RFC 7239): `for=…;proto=…;host=…`, one element per proxy.
    Forwarded,
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
