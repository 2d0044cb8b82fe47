//! Counters for `/metrics` and `/healthz`.
//!
//! Plain atomics, written by whichever thread sees the event and read by the thread
//! answering the HTTP request: no lock and no round trip through the hub, so a
//! monitoring scrape can never slow the chat down.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Why a connection ended before it became a WebSocket (label of
/// `switchboard_handshake_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    BadRequest,
    MethodNotAllowed,
    NotFound,
    UpgradeRequired,
    BadVersion,
    Forbidden,
    HeadTooLarge,
    Timeout,
    ServerFull,
    Tls,
    Io,
    Unauthorized,
    /// A `Host` that is a DNS name this server does not answer to (DNS rebinding).
    UnknownHost,
    /// A wire viewer without the right key, or with a key in its URL.
    WireKey,
}

impl Rejection {
    const ALL: [Rejection; 14] = [
        Rejection::BadRequest,
        Rejection::MethodNotAllowed,
        Rejection::NotFound,
        Rejection::UpgradeRequired,
        Rejection::BadVersion,
        Rejection::Forbidden,
        Rejection::HeadTooLarge,
        Rejection::Timeout,
        Rejection::ServerFull,
        Rejection::Tls,
        Rejection::Io,
        Rejection::Unauthorized,
        Rejection::UnknownHost,
        Rejection::WireKey,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad_request",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::NotFound => "not_found",
            Rejection::UpgradeRequired => "upgrade_required",
            Rejection::BadVersion => "bad_version",
            Rejection::Forbidden => "forbidden_origin",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::Timeout => "timeout",
            Rejection::ServerFull => "server_full",
            Rejection::Tls => "tls",
            Rejection::Io => "io",
            Rejection::Unauthorized => "unauthorized",
            Rejection::UnknownHost => "unknown_host",
            Rejection::WireKey => "wire_key",
        }
    }
}

/// The server's counters. Shared by `Arc`; every field only ever goes up except the
/// gauges, which are documented as such.
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    /// Gauge: TCP connections currently open.
    pub connections: AtomicU64,
    /// Gauge: WebSocket sessions currently open.
    pub websockets: AtomicU64,
    /// Gauge: chat and relay rooms currently held by the hub.
    pub rooms: AtomicU64,
    pub connections_total: AtomicU64,
    pub websockets_total: AtomicU64,
    pub http_requests_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumer_drops: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub ping_timeouts: AtomicU64,
    pub chat_errors: AtomicU64,
    /// Chat messages refused and history reads failed because the store could not
    /// do it (`error` `unavailable`).
    pub store_errors: AtomicU64,
    /// Set once when the node joins a cluster (`--redis`): the Redis figures and the
    /// health check's Redis state are shown only then.
    pub clustered: AtomicBool,
    /// Gauge: 1 while this node's connection to Redis (`--redis`) is up.
    pub redis_up: AtomicU64,
    /// Times this node lost its connection to Redis.
    pub redis_errors: AtomicU64,
    /// Messages deleted at the asking of this node's members and API
    /// (`switchboard_moderation_actions_total{action="delete"}`).
    pub deletes: AtomicU64,
    /// Sign-ins with the admin password: at `POST /login`, or as a Bearer header.
    pub admin_signins: AtomicU64,
    /// Members kicked at the asking of this node's admins and API
    /// (`switchboard_moderation_actions_total{action="kick"}`).
    pub kicks: AtomicU64,
    /// Members muted (`action="mute"`) and unmuted (`action="unmute"`).
    pub mutes: AtomicU64,
    pub unmutes: AtomicU64,
    /// Room settings changed (`action="room"`).
    pub room_settings: AtomicU64,
    /// Rooms' histories emptied (`action="clear"`).
    pub clears: AtomicU64,
    rejections: [AtomicU64; Rejection::ALL.len()],
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            websockets: AtomicU64::new(0),
            rooms: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            websockets_total: AtomicU64::new(0),
            http_requests_total: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_consumer_drops: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            ping_timeouts: AtomicU64::new(0),
            chat_errors: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            clustered: AtomicBool::new(false),
            redis_up: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            admin_signins: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
            mutes: AtomicU64::new(0),
            unmutes: AtomicU64::new(0),
            room_settings: AtomicU64::new(0),
            clears: AtomicU64::new(0),
            rejections: Default::default(),
        }
    }

    pub(crate) fn reject(&self, why: Rejection) {
        bump(&self.rejections[why as usize]);
    }

    /// The `/healthz` status and body. A cluster node that has lost Redis says so
    /// with `503`: it keeps its clients, but a load balancer should send new ones
    /// elsewhere, since they could not join.
    pub(crate) fn health(&self) -> (u16, String) {
        let redis = match (
            self.clustered.load(Ordering::Relaxed),
            get(&self.redis_up) == 1,
        ) {
            (false, _) => None,
            (true, up) => Some(up),
        };
        let status = if redis == Some(false) {
            "redis_down"
        } else {
            "ok"
        };
        let redis_field = match redis {
            Some(true) => r#","redis":"up""#,
            Some(false) => r#","redis":"down""#,
            None => "",
        };
        let body = format!(
            r#"{{"status":"{status}","connections":{},"websockets":{},"rooms":{},"uptime_secs":{}{redis_field}}}"#,
            get(&self.connections),
            get(&self.websockets),
            get(&self.rooms),
            self.started.elapsed().as_secs()
        );
        (if redis == Some(false) { 503 } else { 200 }, body)
    }

    /// The `/metrics` body, in the Prometheus text exposition format 0.0.4.
    pub(crate) fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\nswitchboard_{name} {value}\n"
            );
        };
        // Gauges are named apart from the counters: under OpenMetrics a counter
        // `x_total` belongs to the family `x`, which a gauge `x` would collide with.
        metric(
            "open_connections",
            "gauge",
            "TCP connections open now.",
            get(&self.connections),
        );
        metric(
            "open_websockets",
            "gauge",
            "WebSocket sessions open now.",
            get(&self.websockets),
        );
        metric(
            "rooms",
            "gauge",
            "Chat and relay rooms held now.",
            get(&self.rooms),
        );
        metric(
            "connections_total",
            "counter",
            "TCP connections accepted.",
            get(&self.connections_total),
        );
        metric(
            "websockets_total",
            "counter",
            "WebSocket handshakes completed.",
            get(&self.websockets_total),
        );
        metric(
            "http_requests_total",
            "counter",
            "Plain HTTP requests answered.",
            get(&self.http_requests_total),
        );
        metric(
            "admin_signins_total",
            "counter",
            "Sign-ins with the admin password (POST /login or a Bearer header).",
            get(&self.admin_signins),
        );
        metric(
            "messages_in_total",
            "counter",
            "Data messages received from clients.",
            get(&self.messages_in),
        );
        metric(
            "messages_out_total",
            "counter",
            "Data messages sent to clients.",
            get(&self.messages_out),
        );
        metric(
            "bytes_in_total",
            "counter",
            "Payload bytes received from clients.",
            get(&self.bytes_in),
        );
        metric(
            "bytes_out_total",
            "counter",
            "Payload bytes sent to clients.",
            get(&self.bytes_out),
        );
        metric(
            "slow_consumer_drops_total",
            "counter",
            "Clients closed with 1008 because their outbox was full.",
            get(&self.slow_consumer_drops),
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections closed for breaking RFC 6455 (1002, 1007, 1009).",
            get(&self.protocol_errors),
        );
        metric(
            "ping_timeouts_total",
            "counter",
            "Clients dropped for not answering a ping.",
            get(&self.ping_timeouts),
        );
        metric(
            "chat_errors_total",
            "counter",
            "Error messages sent to chat clients.",
            get(&self.chat_errors),
        );
        metric(
            "store_errors_total",
            "counter",
            "Chat messages refused and history reads failed because the store could not do them.",
            get(&self.store_errors),
        );
        if self.clustered.load(Ordering::Relaxed) {
            metric(
                "redis_up",
                "gauge",
                "1 while this cluster node is connected to Redis, else 0.",
                get(&self.redis_up),
            );
            metric(
                "redis_errors_total",
                "counter",
                "Times this cluster node lost its connection to Redis.",
                get(&self.redis_errors),
            );
        }
        out.push_str(
            "# HELP switchboard_handshake_failures_total Connections that ended before becoming a WebSocket, by reason.\n\
             # TYPE switchboard_handshake_failures_total counter\n",
        );
        for why in Rejection::ALL {
            let _ = writeln!(
                out,
                "switchboard_handshake_failures_total{{reason=\"{}\"}} {}",
                why.label(),
                get(&self.rejections[why as usize])
            );
        }
        let _ = write!(
            out,
            "# HELP switchboard_moderation_actions_total Moderation actions taken through this node, by action.\n\
             # TYPE switchboard_moderation_actions_total counter\n\
             switchboard_moderation_actions_total{{action=\"delete\"}} {}\n\
             switchboard_moderation_actions_total{{action=\"kick\"}} {}\n\
             switchboard_moderation_actions_total{{action=\"mute\"}} {}\n\
             switchboard_moderation_actions_total{{action=\"unmute\"}} {}\n\
             switchboard_moderation_actions_total{{action=\"room\"}} {}\n\
             switchboard_moderation_actions_total{{action=\"clear\"}} {}\n",
            get(&self.deletes),
            get(&self.kicks),
            get(&self.mutes),
            get(&self.unmutes),
            get(&self.room_settings),
            get(&self.clears)
        );
        let _ = write!(
            out,
            "# HELP switchboard_uptime_seconds Seconds since the server started.\n# TYPE switchboard_uptime_seconds gauge\nswitchboard_uptime_seconds {}\n",
            self.started.elapsed().as_secs()
        );
        out
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn drop_one(gauge: &AtomicU64) {
    gauge.fetch_sub(1, Ordering::Relaxed);
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
