//! Starting and stopping a server: the builder and the handle.
//!
//! A running server is three kinds of thread: one accept loop (`listener`), one hub
//! (`hub`), one thread per connection (`connection`). [`ServerHandle::shutdown`]
//! wakes them all through one shared wake-up descriptor, then joins the accept loop
//! (which waits for every connection thread) and the hub (which ends when the last
//! sender of events is gone).

use crate::base::SessionId;
use crate::base::{Context, ContextParts};
use crate::cluster::{self, Bridge};
use crate::config::{Config, DEFAULT_LISTEN};
use crate::connection::Lines;
use crate::doors::{self, Doors};
use crate::error::{Error, Result};
use crate::hub::{Hub, HubConfig};
use crate::listener::{self, Listener};
use crate::metrics::Metrics;
use crate::store::{self, Location, Store, StoreConfig};
use crossbeam_channel::{Receiver, Sender};
use openssl::ssl::SslAcceptor;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Events a hub queues before senders wait. Small enough to bound memory (a relay
/// event can carry a whole message), large enough that a burst never makes a client
/// thread wait in practice.
const HUB_QUEUE: usize = 256;

/// Entry point of the library: `Server::builder()…start()`.
///
/// ```
/// let server = switchboard::Server::builder().listen("127.0.0.1:0").start()?;
/// println!("chat at ws://{}/ws/chat", server.local_addr());
/// server.shutdown();
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with [`Config::default`].
    pub fn builder() -> ServerBuilder {
        Self::with_config(Config::default())
    }

    /// A builder that starts from `config`; the builder's setters change it further.
    ///
    /// ```
    /// use switchboard::{Config, Server};
    ///
    /// let config = Config::default().history(5).rate_per_sec(100);
    /// let server = Server::with_config(config).listen("127.0.0.1:0").start()?;
    /// server.shutdown();
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn with_config(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            listeners: Vec::new(),
        }
    }

    /// A builder that serves plain `ws://` and `http://` on a listener the caller
    /// already bound (for example to choose the port itself). Addresses given with
    /// [`ServerBuilder::listen`] are served too; with none, only this listener is.
    pub fn from_listener(listener: TcpListener) -> ServerBuilder {
        Self::builder().listener(listener)
    }
}

/// Configures a server before it starts. Every setter takes and returns `self`, and
/// none undoes another: each one changes the one setting it names.
#[derive(Debug)]
#[must_use = "a builder does nothing until .start()"]
pub struct ServerBuilder {
    config: Config,
    listeners: Vec<TcpListener>,
}

/// Builder setters that set the [`Config`] field of the same name.
macro_rules! config_setters {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[doc = concat!("See [`Config::", stringify!($name), "`](field@Config::", stringify!($name), ").")]
        pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.config = self.config.$name($($arg),*);
            self
        }
    )*};
}

impl ServerBuilder {
    /// Also serves plain `ws://` and `http://` on `listener`, already bound.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Also listens on `addr` (for example `"127.0.0.1:0"`) for `ws://` and `http://`.
    /// With no address (plain or TLS) and no listener, the server listens on
    /// `0.0.0.0:3000`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config = self.config.listen(addr);
        self
    }

    /// Also serves `wss://` and `https://` on `addr`, with the certificate set by
    /// [`ServerBuilder::tls_identity`] (the built-in development one by default).
    pub fn tls_listen(mut self, addr: impl Into<String>) -> Self {
        self.config = self.config.tls_listen(addr);
        self
    }

    /// Also lists `url` as an address to share with people elsewhere on the network.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.config = self.config.public_url(url);
        self
    }

    /// Also allows this browser origin besides the page's own (`*` allows all).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.config = self.config.allow_origin(origin);
        self
    }

    /// Also answers to the DNS name `name` in `Host` (IP literals, `localhost`, the
    /// machine's names and the share URLs' always work).
    pub fn allow_host(mut self, name: impl Into<String>) -> Self {
        self.config = self.config.allow_host(name);
        self
    }

    /// Also believes the `Forwarded` / `X-Forwarded-*` headers of peers in `cidr`
    /// (for example `"127.0.0.1/32"`, nginx on the same machine).
    pub fn trust_proxy(mut self, cidr: impl Into<String>) -> Self {
        self.config = self.config.trust_proxy(cidr);
        self
    }

    config_setters! {
        tls_identity(cert: impl Into<PathBuf>, key: impl Into<PathBuf>);
        max_connections(n: usize);
        max_connections_per_ip(n: usize);
        max_rooms(n: usize);
        max_message_size(bytes: usize);
        max_file_size(bytes: u64);
        max_files_bytes(bytes: u64);
        handshake_timeout(timeout: Duration);
        ping_interval(interval: Duration);
        history(messages: usize);
        data_dir(dir: impl Into<PathBuf>);
        retain(messages: usize);
        redis(url: impl Into<String>);
        max_text_len(bytes: usize);
        rate_per_sec(requests: u32);
        rate_burst(requests: u32);
        api_rate(posts: u32);
        kick_time(time: Duration);
        outbox_messages(messages: usize);
        outbox_bytes(bytes: usize);
        close_timeout(timeout: Duration);
        api_token(token: impl Into<String>);
        password(password: impl Into<String>);
        admin_password(password: impl Into<String>);
        metrics_public(on: bool);
        trace(on: bool);
        proxy_header(header: crate::config::ProxyHeader);
    }

    /// See [`Config::outbox_messages`](field@Config::outbox_messages) and
    /// [`Config::outbox_bytes`](field@Config::outbox_bytes).
    pub fn outbox_limits(self, messages: usize, bytes: usize) -> Self {
        self.outbox_messages(messages).outbox_bytes(bytes)
    }

    /// Binds, starts every thread, and returns once the server accepts connections.
    ///
    /// Fails, with nothing left running, if a setting is out of range, an address
    /// cannot be bound, the certificate does not load, or a thread cannot start.
    pub fn start(self) -> Result<ServerHandle> {
        let ServerBuilder {
            mut config,
            listeners,
        } = self;
        let trusted = config.validate()?;
        let metrics = Arc::new(Metrics::new());
        // First, so that a store in use or broken (or a Redis out of reach) stops the
        // server before it binds.
        let files = open_files(&config)?;
        let backend = Opened::open(&config, &metrics, &files)?;
        // The default only when nothing at all was asked for: an embedder that asked
        // for TLS alone must not also get plaintext on every interface.
        if config.listen.is_empty() && config.tls_listen.is_empty() && listeners.is_empty() {
            config.listen.push(DEFAULT_LISTEN.to_owned());
        }
        let (listeners, tls) = bind_listeners(&config, listeners)?;
        let local_addrs = local_addrs_of(&listeners, false)?;
        let tls_local_addrs = local_addrs_of(&listeners, true)?;
        let store_path = backend.path();
        let stored_key = backend.session_key();
        let session_key = crate::http::signing_key(&stored_key, config.password.as_ref());
        let admin_session_key = config
            .admin_password
            .as_ref()
            .map(|admin| crate::http::admin_signing_key(&stored_key, admin));
        let ctx = Arc::new(Context::new(ContextParts {
            files,
            session_key,
            admin_session_key,
            config,
            metrics,
            tls,
            trusted,
        })?);
        let threads = start_threads(backend, listeners, &ctx)?;
        Ok(ServerHandle {
            local_addrs,
            tls_local_addrs,
            store_path,
            ctx,
            threads,
        })
    }
}

/// Binds the plain listeners, loads the certificate if any TLS address is asked
/// for, then binds the TLS listeners; every listener, the caller's too, is made
/// non-blocking.
fn bind_listeners(
    config: &Config,
    given: Vec<TcpListener>,
) -> Result<(Vec<Listener>, Option<SslAcceptor>)> {
    let mut listeners: Vec<Listener> = given
        .into_iter()
        .map(|socket| Listener {
            socket,
            secure: false,
        })
        .collect();
    for addr in &config.listen {
        listeners.push(Listener {
            socket: listener::bind(addr)?,
            secure: false,
        });
    }
    let tls = if config.tls_listen.is_empty() {
        None
    } else {
        Some(crate::tls::acceptor(&config.tls_identity)?)
    };
    for addr in &config.tls_listen {
        listeners.push(Listener {
            socket: listener::bind(addr)?,
            secure: true,
        });
    }
    for l in &listeners {
        // The accept loop polls them; a listener that cannot be non-blocking
        // would stall it, so refuse to start instead.
        l.socket.set_nonblocking(true)?;
    }
    Ok((listeners, tls))
}

/// The addresses, with their real ports, of the TLS listeners (`secure`) or of the
/// plain ones.
fn local_addrs_of(listeners: &[Listener], secure: bool) -> Result<Vec<SocketAddr>> {
    listeners
        .iter()
        .filter(|l| l.secure == secure)
        .map(|l| Ok(l.socket.local_addr()?))
        .collect()
}

/// Starts the backend's threads, then the doors, the hub and the accept loop, and
/// returns them in the order [`ServerHandle::shutdown`] joins them: the accept loop,
/// the hub, the doors, then the backend's.
///
/// Each thread ends when the ones before it do: the accept loop and the connection
/// threads drop the hub's last event senders; the hub drops the doors' last request
/// sender; the hub and the doors drop the store's (or the bridge's); the bridge
/// stops its subscriber. If a thread cannot start, its closure
/// (and the sender in it) is dropped, so the threads already running end too, and
/// are joined before the error returns.
fn start_threads(
    backend: Opened,
    listeners: Vec<Listener>,
    ctx: &Arc<Context>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    // A step that fails has dropped, by the time it returns, every sender it was
    // given or made, so joining here cannot wait on a thread that is still fed.
    match start_each(backend, listeners, ctx, &mut threads) {
        Ok(()) => Ok(threads),
        Err(e) => {
            for thread in threads {
                let _ = thread.join();
            }
            Err(e)
        }
    }
}

/// The steps of [`start_threads`], each adding what it started to `threads`.
fn start_each(
    backend: Opened,
    listeners: Vec<Listener>,
    ctx: &Arc<Context>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    let hub_config = backend.hub_config(&ctx.config);
    let (secrets, ended) = backend.doors_config(&ctx.config);
    let (events_tx, events_rx) = crossbeam_channel::bounded(store::QUEUE);
    let requests = start_backend(backend, ctx, events_tx, threads)?;
    let doors = Doors::new(secrets, ended, requests.clone(), Arc::clone(&ctx.metrics));
    let (doors_tx, doors_rx) = crossbeam_channel::bounded(doors::QUEUE);
    threads.insert(0, spawn("doors", move || doors.run(doors_rx))?);
    let hub = Hub::new(
        hub_config,
        Arc::clone(&ctx.metrics),
        requests,
        doors_tx.clone(),
    );
    let (hub_tx, hub_rx) = crossbeam_channel::bounded(HUB_QUEUE);
    threads.insert(0, spawn("hub", move || hub.run(hub_rx, events_rx))?);
    let ctx = Arc::clone(ctx);
    let lines = Lines {
        hub: hub_tx,
        doors: doors_tx,
    };
    threads.insert(
        0,
        spawn("accept", move || {
            listener::accept_loop(listeners, ctx, lines)
        })?,
    );
    Ok(())
}

/// Starts the store's writer, or the cluster's bus listener and bridge, telling the
/// hub on `events`, and returns what the hub sends its requests to.
fn start_backend(
    backend: Opened,
    ctx: &Context,
    events: Sender<store::Event>,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<Sender<store::Request>> {
    let (requests, requests_rx) = crossbeam_channel::bounded(store::QUEUE);
    match backend {
        Opened::Store(store) => {
            threads.push(spawn("store", move || store.run(requests_rx, events))?);
        }
        Opened::Cluster(bridge) => {
            let stop = bridge.stop_flag();
            let client = bridge.client();
            let redis = ctx.config.redis.as_deref().unwrap_or_default();
            let channels = (requests_rx, events);
            if let Err(e) = join_cluster(bridge, redis, &ctx.files, channels, threads) {
                // The bus listener ends on this flag alone.
                stop.store(true, std::sync::atomic::Ordering::Release);
                return Err(e);
            }
            // Files go through Redis too, on a thread of their own (as the flag says,
            // it ends with the bridge).
            let (mirror, mirrored) = crate::files::Mirror::new();
            let copier = cluster::Copier::new(client, &ctx.files, stop);
            threads.push(spawn("cluster-files", move || copier.run(mirrored))?);
            ctx.files.mirror_to(mirror);
        }
    }
    Ok(requests)
}

/// Nobody may join before this node hears the bus (its own join comes back on it),
/// nor before it knows who is in the cluster already: first the subscription, then
/// everyone, then the bridge's thread.
fn join_cluster(
    mut bridge: Bridge,
    redis: &str,
    files: &Arc<crate::files::Files>,
    (bridge_rx, events): (Receiver<store::Request>, Sender<store::Event>),
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<()> {
    let (client, subscription) = (bridge.client(), bridge.subscription(files));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let bus = events.clone();
    threads.push(spawn("cluster-bus", move || {
        cluster::listen(client, bus, subscription, ready_tx)
    })?);
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer to SUBSCRIBE".to_owned()),
    }
    .map_err(|problem| Error::Redis {
        url: cluster::masked(redis),
        problem: format!("cannot subscribe ({problem})"),
    })?;
    bridge.introduce(&events)?;
    threads.push(spawn("cluster", move || bridge.run(bridge_rx, events))?);
    Ok(())
}

/// Where shared files go: `files/` in the data directory, or a directory of their own
/// that goes when the server stops.
fn open_files(config: &Config) -> Result<Arc<crate::files::Files>> {
    let data = config.data_dir.as_deref();
    let max_total = config
        .max_files_bytes
        .unwrap_or_else(|| crate::files::default_total(data));
    crate::files::Files::open(data, config.max_file_size, max_total).map_err(|e| Error::Store {
        path: data.map(|d| d.join("files")).unwrap_or_default(),
        problem: "cannot keep shared files there".to_owned(),
        source: Some(Box::new(e)),
    })
}

/// What keeps the messages, opened before anything else starts. Built once per
/// server, so the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Opened {
    Store(Store),
    Cluster(Bridge),
}

impl Opened {
    /// Connects to Redis if the settings name one, else opens the store (in memory
    /// without a data directory).
    fn open(
        config: &Config,
        metrics: &Arc<Metrics>,
        files: &Arc<crate::files::Files>,
    ) -> Result<Self> {
        Ok(match &config.redis {
            Some(url) => Self::Cluster(Bridge::connect(
                url,
                config.retain,
                config.history,
                Arc::clone(metrics),
            )?),
            None => Self::Store(Store::open(StoreConfig {
                location: config
                    .data_dir
                    .clone()
                    .map_or(Location::Memory, Location::Dir),
                retain: config.retain,
                history: config.history,
                files: Arc::clone(files),
            })?),
        })
    }

    /// The key session cookies are signed with (mixed with the password), kept so
    /// that sign-ins outlive a restart.
    fn session_key(&self) -> [u8; 32] {
        match self {
            Self::Store(store) => store.session_key(),
            Self::Cluster(bridge) => bridge.session_key(),
        }
    }

    /// The store's file; `None` in memory or in a cluster.
    fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Store(store) => store.path().map(PathBuf::from),
            Self::Cluster(_) => None,
        }
    }

    /// The doors' settings: the secrets of `config`, and the sessions kept as ended.
    fn doors_config(&self, config: &Config) -> (doors::Secrets, Vec<(SessionId, u64)>) {
        let secrets = doors::Secrets {
            password: config.password.clone(),
            admin_password: config.admin_password.clone(),
            api_token: config.api_token.clone(),
        };
        let ended = match self {
            Self::Store(store) => store.ended_sessions(),
            Self::Cluster(bridge) => bridge.ended_sessions(),
        };
        (secrets, ended)
    }

    /// The hub's settings: the chat's state as kept here, and the limits of `config`.
    fn hub_config(&self, config: &Config) -> HubConfig {
        let (epoch, node, stored_rooms, rules) = match self {
            Self::Store(store) => (
                store.epoch().to_owned(),
                store.node().to_owned(),
                store.room_names(),
                store.rules(),
            ),
            Self::Cluster(bridge) => (
                bridge.epoch().to_owned(),
                bridge.node().to_owned(),
                bridge.rooms(),
                bridge.rules(),
            ),
        };
        HubConfig {
            epoch,
            node,
            shares_relay: matches!(self, Self::Cluster(_)),
            // A handshake timeout set very short (tests do) is no reason to give up
            // a join that a busy machine is about to finish.
            join_timeout: config.handshake_timeout.max(MIN_JOIN_TIMEOUT),
            api_rate: (config.api_rate, config.api_rate.saturating_mul(2)),
            max_rooms: config.max_rooms,
            stored_rooms,
            rules,
            kick_time: config.kick_time,
            limits: config.limits(),
        }
    }
}

/// The least time a join may wait for the backend, whatever the handshake timeout.
const MIN_JOIN_TIMEOUT: Duration = Duration::from_secs(2);

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| Error::Thread { name, source })
}

/// A running server. Dropping it shuts the server down, as [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    local_addrs: Vec<SocketAddr>,
    tls_local_addrs: Vec<SocketAddr>,
    store_path: Option<PathBuf>,
    ctx: Arc<Context>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The first plain (`ws://`, `http://`) address the server listens on, with the
    /// real port; the first TLS one if it has no plain listener.
    pub fn local_addr(&self) -> SocketAddr {
        // `start` always binds at least one listener, so this is never reached.
        self.local_addrs
            .first()
            .or(self.tls_local_addrs.first())
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into())
    }

    /// Every plain (`ws://`, `http://`) address the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The first TLS (`wss://`, `https://`) address, if the server has TLS.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addrs.first().copied()
    }

    /// Every TLS (`wss://`, `https://`) address the server listens on.
    pub fn tls_local_addrs(&self) -> &[SocketAddr] {
        &self.tls_local_addrs
    }

    /// The file the chat history is kept in, or `None` when it is kept in memory
    /// (no [`Config::data_dir`](field@Config::data_dir)).
    pub fn store_path(&self) -> Option<&std::path::Path> {
        self.store_path.as_deref()
    }

    /// Stops accepting, sends every client Close 1001, and returns once every thread
    /// of the server has ended.
    ///
    /// A client that does not answer the Close is waited for up to
    /// [`Config::close_timeout`](field@Config::close_timeout) (5 s by default), and one
    /// still in its handshake is cut off at once. If threads are still running after
    /// that, a warning names them, and this keeps waiting: it never returns with a
    /// thread of the server left behind.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        log::info!("shutting down");
        self.ctx.shutdown.notify();
        for thread in self.threads.drain(..) {
            let name = thread.thread().name().unwrap_or("?").to_owned();
            if thread.join().is_err() {
                log::error!("the {name} thread panicked");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
