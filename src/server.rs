//! Starting and stopping a server: the builder, the handle, and what the threads share.
//!
//! A running server is three kinds of thread: one accept loop (`listener`), one hub
//! (`hub`), one thread per connection (`connection`). [`ServerHandle::shutdown`]
//! wakes them all through one shared wake-up descriptor, then joins the accept loop
//! (which waits for every connection thread) and the hub (which ends when the last
//! sender of events is gone).

use crate::base::Context;
use crate::config::{Config, Identity, TlsConfig};
use crate::hub::{Hub, HubConfig};
use crate::listener::{self, Listener};
use crate::{Error, Result};
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
        ServerBuilder {
            config: Config::default(),
            listeners: Vec::new(),
        }
    }

    /// A builder that serves on a listener the caller already bound (for example to
    /// pick the port itself). The configured listen addresses are then not bound.
    pub fn from_listener(listener: TcpListener) -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            listeners: vec![listener],
        }
    }
}

/// Configures a server before it starts. Every setter takes and returns `self`.
#[derive(Debug)]
#[must_use = "a builder does nothing until .start()"]
pub struct ServerBuilder {
    config: Config,
    listeners: Vec<TcpListener>,
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Listens on `addr` (for example `"127.0.0.1:0"`) instead of the default.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config.listen = vec![addr.into()];
        self
    }

    /// Allows a browser origin besides the page's own (`*` allows all).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.allow_origins.push(origin.into());
        self
    }

    /// See [`Config::max_connections`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// See [`Config::max_connections_per_ip`].
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.config.max_connections_per_ip = n;
        self
    }

    /// See [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// See [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// See [`Config::ping_interval`].
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// See [`Config::history`].
    pub fn history(mut self, messages: usize) -> Self {
        self.config.history = messages;
        self
    }

    /// See [`Config::outbox_messages`] and [`Config::outbox_bytes`].
    pub fn outbox_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.config.outbox_messages = messages;
        self.config.outbox_bytes = bytes;
        self
    }

    /// Serves `wss://` and `https://` on `addr` too, with the certificate set by
    /// [`ServerBuilder::tls_identity`] (the built-in development one by default).
    pub fn tls_listen(mut self, addr: impl Into<String>) -> Self {
        let identity = self
            .config
            .tls
            .take()
            .map_or(Identity::Development, |t| t.identity);
        self.config.tls = Some(TlsConfig::new(addr, identity));
        self
    }

    /// The certificate chain and PKCS#8 key (PEM files) for the TLS listeners.
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        let identity = Identity::Files {
            cert: cert.into(),
            key: key.into(),
        };
        match &mut self.config.tls {
            Some(tls) => tls.identity = identity,
            None => {
                self.config.tls = Some(TlsConfig {
                    listen: Vec::new(),
                    identity,
                })
            }
        }
        self
    }

    /// See [`Config::trace`].
    pub fn trace(mut self, on: bool) -> Self {
        self.config.trace = on;
        self
    }

    /// Binds, starts every thread, and returns once the server accepts connections.
    pub fn start(self) -> Result<ServerHandle> {
        let config = self.config;
        validate(&config)?;
        let mut listeners: Vec<Listener> = self
            .listeners
            .into_iter()
            .map(|socket| Listener {
                socket,
                secure: false,
            })
            .collect();
        if listeners.is_empty() {
            for addr in &config.listen {
                listeners.push(Listener {
                    socket: listener::bind(addr)?,
                    secure: false,
                });
            }
        }
        let tls = match &config.tls {
            Some(tls) => {
                let acceptor = crate::tls::acceptor(&tls.identity)?;
                for addr in &tls.listen {
                    listeners.push(Listener {
                        socket: listener::bind(addr)?,
                        secure: true,
                    });
                }
                Some(acceptor)
            }
            None => None,
        };
        if listeners.is_empty() {
            return Err(Error::BadConfig("no address to listen on".into()));
        }
        let mut local_addrs = Vec::new();
        let mut tls_local_addrs = Vec::new();
        for l in &listeners {
            let addr = l.socket.local_addr()?;
            if l.secure {
                tls_local_addrs.push(addr)
            } else {
                local_addrs.push(addr)
            }
        }
        let shared = Arc::new(Context::new(config, tls)?);

        let (hub_tx, hub_rx) = crossbeam_channel::bounded(HUB_QUEUE);
        let hub = Hub::new(
            HubConfig {
                history: shared.config.history,
            },
            Arc::clone(&shared.metrics),
        );
        let hub_thread = thread::Builder::new()
            .name("hub".into())
            .spawn(move || hub.run(hub_rx))?;
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("accept".into())
            .spawn(move || listener::accept_loop(listeners, accept_shared, hub_tx))?;
        Ok(ServerHandle {
            local_addrs,
            tls_local_addrs,
            shared,
            threads: vec![accept_thread, hub_thread],
        })
    }
}

fn validate(config: &Config) -> Result<()> {
    let positive = [
        (config.max_connections, "max connections"),
        (config.max_connections_per_ip, "max connections per IP"),
        (config.max_message_size, "max message size"),
        (config.max_text_len, "chat text limit"),
        (config.outbox_messages, "outbox messages"),
        (config.outbox_bytes, "outbox bytes"),
    ];
    for (value, what) in positive {
        if value == 0 {
            return Err(Error::BadConfig(format!("{what} must be at least 1")));
        }
    }
    if config.ping_interval.is_zero() || config.handshake_timeout.is_zero() {
        return Err(Error::BadConfig("timeouts must be longer than zero".into()));
    }
    if config.rate_per_sec == 0 {
        return Err(Error::BadConfig(
            "chat rate limit must be at least 1 message a second".into(),
        ));
    }
    Ok(())
}

/// A running server. Dropping it shuts the server down, as [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    local_addrs: Vec<SocketAddr>,
    tls_local_addrs: Vec<SocketAddr>,
    shared: Arc<Context>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The first plain (`ws://`, `http://`) address the server listens on, with the
    /// real port; the first TLS one if it has no plain listener.
    pub fn local_addr(&self) -> SocketAddr {
        // `start` refuses to run without any listener, so one of these exists.
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

    /// Stops accepting, sends every client Close 1001, waits up to the close timeout
    /// for their replies, and returns once every thread of the server has ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        log::info!("shutting down");
        self.shared.shutdown.notify();
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
