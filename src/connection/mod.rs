//! The frame loop: one WebSocket, owned by one thread, from the `101` to the end.
//!
//! The thread sleeps in `poll(2)` on three things at once: its socket, its outbox's
//! wake-up (the hub put something there), and the server's shutdown wake-up. When it
//! wakes it does, in order:
//!
//! 1. act on a close request (slow consumer, shutdown);
//! 2. read every complete frame the socket has, until the read would block;
//! 3. move everything in the outbox into tungstenite's write buffer;
//! 4. send a Ping if the peer has been quiet for a ping interval;
//! 5. flush once: one batch, one system call in the common case.
//!
//! While a flush cannot complete (the peer reads slower than we write) the loop stops
//! reading the socket and stops taking from the outbox. That pushes back on the peer
//! through TCP, and lets the outbox fill, which is how the hub learns the peer is a
//! slow consumer. Memory per connection stays bounded either way.
//!
//! Reading also stops, for the same reason, while the client's own outbox is more
//! than half full (it asks faster than it reads its answers), and for 2 ms at a time
//! when the hub says a relay sender's messages pile up in another member's outbox.

use crate::base::{self, Context, Interest, Peer, Transport};
use crate::chat::{self, ChatError, ErrorCode};
use crate::hub::{CLOSE_SLOW_CONSUMER, HubEvent, LeaveReason};
use crate::metrics::{self, add, bump};
use crate::outbox::{self, Inbox};
use crossbeam_channel::Sender;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tungstenite::error::CapacityError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tungstenite::{Error as WsError, Message};

/// How long a relay sender stops reading when its messages pile up in another
/// member's outbox (see `Hub::relay`).
const RELAY_PAUSE: Duration = Duration::from_millis(2);

/// How long to wait for the peer to hang up after we failed its connection.
const FAIL_LINGER: Duration = Duration::from_secs(1);

/// RFC 6455 §7.4.1: 1001, going away.
const CLOSE_GOING_AWAY: u16 = 1001;

/// A WebSocket endpoint, with what its URL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/ws/chat[/{room}]`: the JSON chat protocol.
    Chat {
        room: String,
        name: Option<String>,
        name_error: Option<ChatError>,
    },
    /// `/ws/relay/{room}`: raw forwarding to the rest of the room.
    Relay { room: String },
    /// `/ws/echo`: everything straight back.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Relay,
    Echo,
}

/// Tells the hub the member is gone, however the thread ends (even by panic).
struct Membership<'a> {
    peer: Peer,
    hub: &'a Sender<HubEvent>,
    reason: LeaveReason,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let _ = self.hub.send(HubEvent::Leave {
            id: self.peer.id,
            reason: self.reason,
        });
    }
}

/// Keeps the `websockets` gauge honest, however the thread ends.
struct OpenSession<'a>(&'a Context);

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        metrics::drop_one(&self.0.metrics.websockets);
    }
}

/// A token bucket: `rate` per second sustained, `burst` at once (SPEC §5).
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How the read step ended.
enum Flow {
    Continue,
    /// The session is over; the reason goes to the hub.
    End(LeaveReason),
}

struct Session<'a, S: Transport> {
    ws: WebSocket<S>,
    kind: Kind,
    peer: Peer,
    shared: &'a Context,
    hub: &'a Sender<HubEvent>,
    inbox: Option<Inbox>,
    rate: RateLimit,
    /// When the peer last sent us anything.
    last_heard: Instant,
    pinged: bool,
    /// The socket (or the TLS layer above it) may have bytes for us.
    readable: bool,
    /// Not reading from the socket until then: relay backpressure.
    paused_until: Option<Instant>,
    /// A flush would block: wait for the socket to drain before doing more.
    write_blocked: bool,
    /// We sent a Close and wait for the peer's until then.
    closing: Option<Instant>,
    /// Why we are closing, for the hub.
    close_reason: LeaveReason,
    saw_shutdown: bool,
}

/// A client registered with the hub, before its `101` goes out.
///
/// Joining first means that once a client's handshake completes, it is already a
/// member: anything another client sends after that reaches it.
pub(crate) struct Joined<'a> {
    kind: Kind,
    inbox: Option<Inbox>,
    membership: Option<Membership<'a>>,
}

/// Why a session could not be set up.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// No wake-up descriptor could be had (out of file descriptors).
    Overloaded(io::Error),
    /// The hub is gone: the server is shutting down.
    ShuttingDown,
}

/// Registers the client of `endpoint` with the hub, if the endpoint has rooms.
pub(crate) fn join<'a>(
    endpoint: Endpoint,
    peer: Peer,
    shared: &Context,
    hub: &'a Sender<HubEvent>,
) -> Result<Joined<'a>, JoinError> {
    let config = &shared.config;
    let new_outbox = || {
        outbox::outbox(config.outbox_messages, config.outbox_bytes).map_err(JoinError::Overloaded)
    };
    let id = peer.id;
    let (kind, event, rx) = match endpoint {
        Endpoint::Echo => {
            return Ok(Joined {
                kind: Kind::Echo,
                inbox: None,
                membership: None,
            });
        }
        Endpoint::Chat {
            room,
            name,
            name_error,
        } => {
            let (outbox, rx) = new_outbox()?;
            (
                Kind::Chat,
                HubEvent::JoinChat {
                    id,
                    room,
                    name,
                    name_error,
                    outbox,
                },
                rx,
            )
        }
        Endpoint::Relay { room } => {
            let (outbox, rx) = new_outbox()?;
            (Kind::Relay, HubEvent::JoinRelay { id, room, outbox }, rx)
        }
    };
    hub.send(event).map_err(|_| JoinError::ShuttingDown)?;
    let membership = Membership {
        peer,
        hub,
        reason: LeaveReason::Closed,
    };
    Ok(Joined {
        kind,
        inbox: Some(rx),
        membership: Some(membership),
    })
}

/// Runs a WebSocket session on a stream whose handshake is done. `rest` holds bytes
/// the client sent right after its request head.
pub(crate) fn run<S: Transport>(
    stream: S,
    rest: Vec<u8>,
    joined: Joined<'_>,
    peer: Peer,
    shared: &Context,
    hub: &Sender<HubEvent>,
) {
    let Joined {
        kind,
        inbox,
        membership,
    } = joined;
    if let Err(e) = stream.set_nonblocking(true) {
        log::debug!(
            "conn {} {}: cannot go non-blocking: {e}",
            peer.id,
            peer.addr
        );
        return;
    }
    bump(&shared.metrics.websockets_total);
    shared.metrics.websockets.fetch_add(1, Ordering::Relaxed);
    let _open = OpenSession(shared);
    let config = &shared.config;
    let readable = !rest.is_empty() || stream.has_buffered();
    let mut session = Session {
        ws: WebSocket::from_partially_read(stream, rest, Role::Server, Some(shared.ws_config)),
        kind,
        peer,
        shared,
        hub,
        inbox,
        rate: RateLimit::new(config.rate_per_sec, config.rate_burst),
        last_heard: Instant::now(),
        pinged: false,
        // Only when the client sent bytes right behind its request head; otherwise
        // the first read would only say "would block". `poll` tells us when to read.
        readable,
        paused_until: None,
        write_blocked: false,
        closing: None,
        close_reason: LeaveReason::Closed,
        saw_shutdown: false,
    };
    let reason = session.run();
    log::debug!("conn {} {}: session over ({reason:?})", peer.id, peer.addr);
    if let Some(mut membership) = membership {
        membership.reason = reason;
    }
}

impl<S: Transport> Session<'_, S> {
    fn run(&mut self) -> LeaveReason {
        loop {
            self.check_close_requests();
            if self
                .paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.paused_until = None;
            }
            if self.readable
                && !self.write_blocked
                && self.paused_until.is_none()
                && let Flow::End(reason) = self.read_all()
            {
                return reason;
            }
            if self.closing.is_none()
                && !self.write_blocked
                && let Err(reason) = self.drain_outbox()
            {
                return reason;
            }
            if let Err(reason) = self.heartbeat() {
                return reason;
            }
            match self.ws.flush() {
                Ok(()) => self.write_blocked = false,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true
                }
                Err(WsError::ConnectionClosed) => return self.close_reason,
                Err(e) => {
                    log::debug!(
                        "conn {} {}: write failed: {e}",
                        self.peer.id,
                        self.peer.addr
                    );
                    return LeaveReason::Error;
                }
            }
            if self
                .closing
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                log::debug!(
                    "conn {} {}: no Close reply in time",
                    self.peer.id,
                    self.peer.addr
                );
                return self.close_reason;
            }
            if let Err(e) = self.sleep() {
                log::debug!("conn {} {}: poll failed: {e}", self.peer.id, self.peer.addr);
                return LeaveReason::Error;
            }
        }
    }

    /// Blocks until there is something to do.
    fn sleep(&mut self) -> io::Result<()> {
        let deadline = match self.closing {
            Some(deadline) => deadline,
            None => self.next_heartbeat(),
        };
        let deadline = self
            .paused_until
            .map_or(deadline, |until| until.min(deadline));
        let shutdown = (!self.saw_shutdown).then_some(&self.shared.shutdown);
        let wake = self.inbox.as_ref().map(Inbox::wake);
        let woken = base::wait(
            self.ws.get_ref().socket(),
            Interest {
                read: !self.write_blocked && self.paused_until.is_none() && !self.backlogged(),
                write: self.write_blocked,
            },
            wake.into_iter().chain(shutdown),
            Some(deadline),
        )?;
        if let Some(wake) = wake
            && woken.fired(wake)
        {
            wake.clear();
        }
        // Reading only when there is something to read saves a system call on every
        // wake-up that was for the outbox alone.
        // (`readable` stays set when the last read stopped early, with frames possibly
        // still buffered in tungstenite.)
        self.readable |= woken.readable || self.ws.get_ref().has_buffered();
        Ok(())
    }

    fn check_close_requests(&mut self) {
        if self.closing.is_some() {
            return;
        }
        if let Some(code) = self.inbox.as_ref().and_then(Inbox::close_requested) {
            let reason = if code == CLOSE_SLOW_CONSUMER {
                log::info!(
                    "conn {} {}: outbox full, closing slow consumer",
                    self.peer.id,
                    self.peer.addr
                );
                "slow consumer"
            } else {
                "closed by server"
            };
            self.start_close(code, reason, LeaveReason::Error);
        } else if !self.saw_shutdown && self.shared.shutdown.is_notified() {
            self.saw_shutdown = true;
            self.start_close(
                CLOSE_GOING_AWAY,
                "server shutting down",
                LeaveReason::Shutdown,
            );
        }
    }

    /// Sends our Close and gives the peer `close_timeout` to answer it.
    fn start_close(&mut self, code: u16, reason: &'static str, why: LeaveReason) {
        log::debug!(
            "conn {} {}: closing with {code} ({reason})",
            self.peer.id,
            self.peer.addr
        );
        self.close_reason = why;
        self.closing = Some(Instant::now() + self.shared.config.close_timeout);
        // The frame is queued even when the write would block; the flush at the end
        // of the loop sends it.
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }));
    }

    /// Reads and handles every frame available without blocking.
    fn read_all(&mut self) -> Flow {
        loop {
            if self.backlogged() {
                // Our own outbox is more than half full (answers and room traffic we
                // have not written yet): read no more requests until it drains. TCP
                // pushes back on a client that sends faster than it reads.
                return Flow::Continue;
            }
            if self.kind == Kind::Relay && self.inbox.as_ref().is_some_and(Inbox::take_throttle) {
                // Frames may still sit in tungstenite's buffer: `readable` stays set.
                self.paused_until = Some(Instant::now() + RELAY_PAUSE);
                return Flow::Continue;
            }
            match self.ws.read() {
                Ok(msg) => {
                    self.last_heard = Instant::now();
                    self.pinged = false;
                    if let Flow::End(reason) = self.on_message(msg) {
                        return Flow::End(reason);
                    }
                    if self.write_blocked {
                        return Flow::Continue;
                    }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Flow::Continue;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Flow::End(self.close_reason);
                }
                Err(WsError::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    return Flow::End(LeaveReason::Closed);
                }
                Err(WsError::Io(e)) => {
                    log::debug!("conn {} {}: read failed: {e}", self.peer.id, self.peer.addr);
                    return Flow::End(LeaveReason::Error);
                }
                Err(e) => return Flow::End(self.fail(&e)),
            }
        }
    }

    /// Fails the WebSocket connection (RFC 6455 §7.1.7) with the code that fits the
    /// error: we send a Close with it, then hang up.
    fn fail(&mut self, err: &WsError) -> LeaveReason {
        let code = match err {
            WsError::Utf8(_) => CloseCode::Invalid,
            // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0. A
            // length like that is not "too big", it is malformed; tungstenite only
            // compares it with the size limit.
            WsError::Capacity(CapacityError::MessageTooLong { size, .. })
                if *size as u64 >= 1 << 63 =>
            {
                CloseCode::Protocol
            }
            WsError::Capacity(_) => CloseCode::Size,
            WsError::Protocol(_) => CloseCode::Protocol,
            _ => CloseCode::Error,
        };
        bump(&self.shared.metrics.protocol_errors);
        log::info!(
            "conn {} {}: closing with {}: {err}",
            self.peer.id,
            self.peer.addr,
            u16::from(code)
        );
        let reason = match code {
            CloseCode::Invalid => "invalid UTF-8",
            CloseCode::Size => "message too big",
            CloseCode::Protocol => "protocol error",
            _ => "internal error",
        };
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        self.flush_for(FAIL_LINGER);
        base::linger(
            self.ws.get_mut(),
            Instant::now() + FAIL_LINGER,
            &self.shared.shutdown,
        );
        LeaveReason::Error
    }

    /// Keeps flushing for at most `limit`, for a last frame that must get out.
    fn flush_for(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Err(WsError::Io(e)) = self.ws.flush() {
            if e.kind() != io::ErrorKind::WouldBlock || Instant::now() >= deadline {
                return;
            }
            let tcp = self.ws.get_ref().socket();
            if base::wait(tcp, Interest::WRITE, None, Some(deadline)).is_err() {
                return;
            }
        }
    }

    fn on_message(&mut self, msg: Message) -> Flow {
        let metrics = &self.shared.metrics;
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                bump(&metrics.messages_in);
                add(&metrics.bytes_in, msg.len());
            }
            Message::Close(_) => {
                // tungstenite has queued our reply; the next read reports the end.
                self.close_reason = LeaveReason::Closed;
                return Flow::Continue;
            }
            // tungstenite queues the Pong for a Ping itself; a Pong just proves life.
            _ => return Flow::Continue,
        }
        if self.closing.is_some() {
            return Flow::Continue;
        }
        match self.kind {
            Kind::Echo => self.send(msg),
            Kind::Relay => self.tell_hub(HubEvent::Relay {
                id: self.peer.id,
                msg,
            }),
            Kind::Chat => self.chat(msg),
        }
    }

    fn chat(&mut self, msg: Message) -> Flow {
        let Message::Text(text) = msg else {
            let error = ChatError::new(
                ErrorCode::BinaryNotSupported,
                "this endpoint takes text frames of JSON",
            );
            return self.chat_error(&error);
        };
        if !self.rate.allow() {
            let limit = self.shared.config.rate_per_sec;
            return self.chat_error(&ChatError::new(
                ErrorCode::RateLimited,
                format!("slow down: at most {limit} messages a second"),
            ));
        }
        match chat::decode(&text, self.shared.config.max_text_len) {
            Ok(msg) => self.tell_hub(HubEvent::Chat {
                id: self.peer.id,
                msg,
            }),
            Err(error) => self.chat_error(&error),
        }
    }

    /// Answers bad input with an `error`. It goes through the hub like every other
    /// answer, so a client always gets its answers in the order of its requests.
    fn chat_error(&mut self, error: &ChatError) -> Flow {
        bump(&self.shared.metrics.chat_errors);
        self.tell_hub(HubEvent::Reply {
            id: self.peer.id,
            msg: Message::text(error.to_json()),
        })
    }

    fn tell_hub(&mut self, event: HubEvent) -> Flow {
        // Blocks only while the hub's queue is full, which pushes back on this client
        // through TCP. The hub itself never blocks, so it always drains.
        match self.hub.send(event) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End(LeaveReason::Shutdown),
        }
    }

    /// Queues one message for the peer.
    fn send(&mut self, msg: Message) -> Flow {
        let len = msg.len();
        match self.ws.write(msg) {
            Ok(()) => {}
            // The frame is buffered; the flush will finish it once the socket drains.
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true
            }
            Err(e) => {
                log::debug!(
                    "conn {} {}: write failed: {e}",
                    self.peer.id,
                    self.peer.addr
                );
                return Flow::End(LeaveReason::Error);
            }
        }
        bump(&self.shared.metrics.messages_out);
        add(&self.shared.metrics.bytes_out, len);
        Flow::Continue
    }

    /// Moves the outbox into the write buffer, stopping when the socket pushes back.
    fn drain_outbox(&mut self) -> Result<(), LeaveReason> {
        while !self.write_blocked {
            let Some(msg) = self.inbox.as_ref().and_then(Inbox::try_recv) else {
                break;
            };
            if let Flow::End(reason) = self.send(msg) {
                return Err(reason);
            }
        }
        Ok(())
    }

    /// Whether the client's own outbox is backed up (see `read_all`). Not while
    /// closing: the outbox is no longer drained then, and the peer's Close must
    /// still be read.
    fn backlogged(&self) -> bool {
        self.closing.is_none() && self.inbox.as_ref().is_some_and(Inbox::is_congested)
    }

    fn next_heartbeat(&self) -> Instant {
        let interval = self.shared.config.ping_interval;
        if self.pinged {
            self.last_heard + interval * 2
        } else {
            self.last_heard + interval
        }
    }

    /// RFC 6455 §5.5.2: a Ping after a quiet interval; no answer for another interval
    /// and the peer is considered gone.
    fn heartbeat(&mut self) -> Result<(), LeaveReason> {
        if self.closing.is_some() || Instant::now() < self.next_heartbeat() {
            return Ok(());
        }
        if self.pinged {
            bump(&self.shared.metrics.ping_timeouts);
            log::info!(
                "conn {} {}: no answer to ping, dropping",
                self.peer.id,
                self.peer.addr
            );
            return Err(LeaveReason::Timeout);
        }
        self.pinged = true;
        match self.ws.write(Message::Ping(Default::default())) {
            Err(WsError::Io(e)) if e.kind() != io::ErrorKind::WouldBlock => Err(LeaveReason::Error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_tells_the_hub_even_when_the_thread_panics() {
        let (hub, events) = crossbeam_channel::unbounded();
        let peer = Peer {
            id: 7,
            addr: "127.0.0.1:1".parse().unwrap(),
            secure: false,
        };
        let outcome = std::thread::spawn(move || {
            let _membership = Membership {
                peer,
                hub: &hub,
                reason: LeaveReason::Closed,
            };
            panic!("a bug in a connection thread");
        })
        .join();
        assert!(outcome.is_err());
        assert!(matches!(
            events.try_recv(),
            Ok(HubEvent::Leave { id: 7, .. })
        ));
    }

    #[test]
    fn rate_limit_allows_the_burst_then_the_rate() {
        let mut rate = RateLimit::new(20, 40);
        assert_eq!((0..100).filter(|_| rate.allow()).count(), 40);
        rate.last -= Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| rate.allow()).count(), 10);
    }
}
