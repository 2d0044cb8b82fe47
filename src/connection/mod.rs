//! The frame loop: one WebSocket, owned by one thread, from the `101` to the end.
//!
//! The thread sleeps in `poll(2)` on three things at once: its socket, its outbox's
//! wake-up (the hub put something there), and the server's shutdown wake-up. When it
//! wakes it does, in order:
//!
//! 1. start the closing handshake if the hub evicted the client or the server is
//!    shutting down;
//! 2. read every complete frame the socket has, until the read would block;
//! 3. move everything in the outbox into tungstenite's write buffer;
//! 4. send a Ping if the peer has been quiet for a ping interval;
//! 5. flush once: one batch, one system call in the common case.
//!
//! Where the connection is in its life is one [`Phase`]. The socket's own state is two
//! facts beside it: whether it may have bytes for us, and whether a flush would block.
//!
//! While a flush cannot complete (the peer reads slower than we write) the loop stops
//! reading the socket and stops taking from the outbox. That pushes back on the peer
//! through TCP, and lets the outbox fill, which is how the hub learns the peer is a
//! slow consumer. Memory per connection stays bounded either way. Reading also stops,
//! for the same reason, while the client's own outbox is more than half full (it asks
//! faster than it reads its answers), and for 2 ms at a time when the hub says a relay
//! sender's messages pile up in another member's outbox ([`Phase::Paused`]).
//!
//! What a message *means* belongs to the endpoint: echo writes it back, relay hands it
//! to the hub, and the chat endpoint applies its policy first ([`chat`]).

mod chat;

use crate::base::{self, ConnId, Context, Interest, Peer, Transport};
use crate::chat::ChatError;
use crate::chat::Since;
use crate::doors;
use crate::hub::{HubEvent, LeaveReason};
use crate::metrics::{self, add, bump};
use crate::outbox::{self, Inbox};
use crate::wire::{self, Hatch, Tap};
use chat::ChatPolicy;
use crossbeam_channel::Sender;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tungstenite::{Error as WsError, Message};

/// How long a relay sender stops reading when its messages pile up in another
/// member's outbox (see `Hub::relay`).
const RELAY_PAUSE: Duration = Duration::from_millis(2);

/// How long to wait for the peer to hang up after we failed its connection.
const FAIL_LINGER: Duration = Duration::from_secs(1);

/// A WebSocket endpoint, with what its URL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/ws/chat[/{room}]`: the JSON chat protocol.
    Chat {
        room: String,
        name: Option<String>,
        name_error: Option<ChatError>,
        /// `?since=ID&epoch=E`: where a reconnecting client left off.
        since: Option<Since>,
        /// Whether it signed in as an admin (an admin session, or the admin password
        /// as Bearer).
        admin: bool,
        /// The session its cookie names, if it signed in with one: a kick binds it.
        session: Option<crate::base::SessionId>,
    },
    /// `/ws/relay/{room}`: raw forwarding to the rest of the room.
    Relay { room: String },
    /// `/ws/echo`: everything straight back.
    Echo,
    /// `/ws/wire/{id}`, key in `Sec-WebSocket-Protocol`: watch connection `id`.
    Wire { id: ConnId, key: wire::Key },
}

/// What the frame loop does with a text or binary message.
enum Handler {
    Chat(Box<ChatPolicy>),
    Relay,
    Echo,
    /// A wire viewer: what it sends is ignored; its outbox is fed by the tap of the
    /// connection it watches.
    Wire,
}

/// Where a WebSocket is in its life (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Messages flow both ways.
    Open,
    /// Open, but not reading from the socket until `until`: relay backpressure.
    Paused { until: Instant },
    /// A Close frame is on its way: ours, or our answer to the peer's. The connection
    /// ends when the closing handshake completes, or at `deadline`; `reason` is what
    /// the hub is told.
    Closing {
        deadline: Instant,
        reason: LeaveReason,
    },
}

impl Phase {
    fn is_open(self) -> bool {
        matches!(self, Phase::Open | Phase::Paused { .. })
    }
}

/// Tells the hub the member is gone, however the thread ends (even by panic).
struct Membership<'a> {
    peer: Peer,
    lines: &'a Lines,
    reason: LeaveReason,
    /// Its traffic can be watched: the doors close its wire door too.
    watched: bool,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let id = self.peer.id;
        if self.watched {
            let _ = self.lines.doors.send(doors::Request::Close { id });
        }
        let _ = self.lines.hub.send(HubEvent::Leave {
            id,
            reason: self.reason,
        });
    }
}

/// Where a connection's requests go: the hub, which owns the chat, and the doors,
/// which decide who may come in (and who may watch whom).
#[derive(Debug, Clone)]
pub(crate) struct Lines {
    pub hub: Sender<HubEvent>,
    pub doors: Sender<doors::Request>,
}

/// Keeps the `websockets` gauge honest, however the thread ends.
struct OpenSession<'a>(&'a Context);

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        metrics::drop_one(&self.0.metrics.websockets);
    }
}

/// A client registered with the hub, before its `101` goes out.
///
/// Joining first means that once a client's handshake completes, it is already a
/// member: anything another client sends after that reaches it.
pub(crate) struct Joined<'a> {
    handler: Handler,
    inbox: Option<Inbox>,
    membership: Option<Membership<'a>>,
    /// A chat session's side of its wire door: its tap stays on.
    hatch: Option<Hatch>,
}

/// Why a session could not be set up.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// No wake-up descriptor could be had (out of file descriptors).
    Overloaded(io::Error),
    /// The hub is gone: the server is shutting down.
    ShuttingDown,
    /// A wire viewer with a wrong key, or for no connection that can be watched.
    Forbidden,
}

/// Registers the client of `endpoint` with the hub, if the endpoint has rooms.
pub(crate) fn join<'a>(
    endpoint: Endpoint,
    peer: Peer,
    ctx: &Context,
    lines: &'a Lines,
) -> Result<Joined<'a>, JoinError> {
    let config = &ctx.config;
    let new_outbox = || {
        outbox::outbox(config.outbox_messages, config.outbox_bytes).map_err(JoinError::Overloaded)
    };
    let id = peer.id;
    let mut hatch = None;
    let (handler, event, inbox) = match endpoint {
        Endpoint::Echo => {
            return Ok(Joined {
                handler: Handler::Echo,
                inbox: None,
                membership: None,
                hatch: None,
            });
        }
        Endpoint::Wire { id: watched, key } => return watch(watched, key, &lines.doors),
        Endpoint::Chat {
            room,
            name,
            name_error,
            since,
            admin,
            session,
        } => {
            let (outbox, inbox) = new_outbox()?;
            let (door, opened) = wire::door(outbox.waker()).map_err(JoinError::Overloaded)?;
            hatch = Some(opened);
            let key = door.key().to_owned();
            lines
                .doors
                .send(doors::Request::Open { id, door })
                .map_err(|_| JoinError::ShuttingDown)?;
            let event = HubEvent::JoinChat {
                id,
                room,
                name,
                name_error,
                since,
                outbox,
                wire: Some(key),
                client: crate::base::ClientKey::of(peer.addr.ip()),
                admin,
                session,
            };
            let policy = ChatPolicy::new(config, &ctx.files);
            (Handler::Chat(Box::new(policy)), event, inbox)
        }
        Endpoint::Relay { room } => {
            let (outbox, inbox) = new_outbox()?;
            (
                Handler::Relay,
                HubEvent::JoinRelay { id, room, outbox },
                inbox,
            )
        }
    };
    let watched = hatch.is_some();
    let membership = Membership {
        peer,
        lines,
        reason: LeaveReason::Closed,
        watched,
    };
    lines.hub.send(event).map_err(|_| JoinError::ShuttingDown)?;
    Ok(Joined {
        handler,
        inbox: Some(inbox),
        membership: Some(membership),
        hatch,
    })
}

/// Asks the doors to let a wire viewer watch connection `id`. The viewer is no member
/// of the hub: once let in, only the watched connection's tap feeds its outbox.
fn watch<'a>(
    id: ConnId,
    key: wire::Key,
    doors: &Sender<doors::Request>,
) -> Result<Joined<'a>, JoinError> {
    let (viewer, inbox) =
        outbox::outbox(wire::VIEWER_EVENTS, wire::VIEWER_BYTES).map_err(JoinError::Overloaded)?;
    let (reply, answer) = crossbeam_channel::bounded(1);
    doors
        .send(doors::Request::Watch {
            id,
            key,
            viewer,
            reply,
        })
        .map_err(|_| JoinError::ShuttingDown)?;
    // The doors answer at once: they never block.
    match answer.recv() {
        Ok(true) => Ok(Joined {
            handler: Handler::Wire,
            inbox: Some(inbox),
            membership: None,
            hatch: None,
        }),
        Ok(false) => Err(JoinError::Forbidden),
        Err(_) => Err(JoinError::ShuttingDown),
    }
}

/// Runs a WebSocket session on a stream whose handshake is done. `rest` holds bytes
/// the client sent right after its request head.
///
/// A chat session keeps the wire tap on its stream; every other session runs on the
/// bare stream, and a wire viewer's is taken out of `--trace` as well.
pub(crate) fn run<S: Transport>(
    mut stream: Tap<S>,
    rest: Vec<u8>,
    mut joined: Joined<'_>,
    peer: Peer,
    ctx: &Context,
    hub: &Sender<HubEvent>,
) {
    match joined.hatch.take() {
        Some(hatch) => {
            stream.open(hatch);
            // The tap stays on the stream for the whole session: it may read ahead.
            stream.read_ahead();
            run_on(stream, rest, joined, peer, ctx, hub);
        }
        None => {
            let mut stream = stream.into_inner();
            if matches!(joined.handler, Handler::Wire) {
                stream.untrace();
            }
            run_on(stream, rest, joined, peer, ctx, hub);
        }
    }
}

fn run_on<S: Transport>(
    stream: S,
    rest: Vec<u8>,
    joined: Joined<'_>,
    peer: Peer,
    ctx: &Context,
    hub: &Sender<HubEvent>,
) {
    let Joined {
        handler,
        inbox,
        membership,
        hatch: _,
    } = joined;
    if let Err(e) = stream.set_nonblocking(true) {
        log::debug!(
            "conn {} {}: cannot go non-blocking: {e}",
            peer.id,
            peer.addr
        );
        return;
    }
    bump(&ctx.metrics.websockets_total);
    ctx.metrics.websockets.fetch_add(1, Ordering::Relaxed);
    let _open = OpenSession(ctx);
    // Only when the client sent bytes right behind its request head; otherwise the
    // first read would only say "would block". `poll` tells us when to read.
    let readable = !rest.is_empty() || stream.has_buffered();
    let mut session = Session {
        ws: WebSocket::from_partially_read(stream, rest, Role::Server, Some(ctx.ws_config)),
        handler,
        peer,
        ctx,
        hub,
        inbox,
        phase: Phase::Open,
        heartbeat: Heartbeat::new(ctx.config.ping_interval),
        readable,
        write_blocked: false,
    };
    let reason = session.run();
    log::debug!("conn {} {}: session over ({reason:?})", peer.id, peer.addr);
    if let Some(mut membership) = membership {
        membership.reason = reason;
    }
}

/// RFC 6455 §5.5.2: a Ping after a quiet interval; no answer within another interval
/// and the peer is considered gone.
struct Heartbeat {
    interval: Duration,
    /// When the peer last sent us anything.
    last_heard: Instant,
    /// A Ping is out and unanswered.
    pinged: bool,
}

impl Heartbeat {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_heard: Instant::now(),
            pinged: false,
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.pinged = false;
    }

    /// When the next Ping is due, or when the peer is late with its answer.
    fn due(&self) -> Instant {
        let intervals = if self.pinged { 2 } else { 1 };
        self.last_heard + self.interval * intervals
    }
}

/// How a step of the loop ended: carry on, or the session is over for this reason.
type Step = Result<(), LeaveReason>;

struct Session<'a, S: Transport> {
    ws: WebSocket<S>,
    handler: Handler,
    peer: Peer,
    ctx: &'a Context,
    hub: &'a Sender<HubEvent>,
    /// `None` for echo, which has no hub and no outbox.
    inbox: Option<Inbox>,
    phase: Phase,
    heartbeat: Heartbeat,
    /// The socket (or the TLS layer above it, or tungstenite's buffer) may have bytes.
    readable: bool,
    /// A flush would block: wait for the socket to drain before doing more.
    write_blocked: bool,
}

impl<S: Transport> Session<'_, S> {
    fn run(&mut self) -> LeaveReason {
        loop {
            if let Err(reason) = self.step() {
                return reason;
            }
            if let Phase::Closing { deadline, reason } = self.phase
                && Instant::now() >= deadline
            {
                log::debug!(
                    "conn {} {}: no Close reply in time",
                    self.peer.id,
                    self.peer.addr
                );
                return reason;
            }
            if let Err(e) = self.sleep() {
                log::debug!("conn {} {}: poll failed: {e}", self.peer.id, self.peer.addr);
                return LeaveReason::Error;
            }
        }
    }

    /// One pass of the loop: the five steps of the module docs.
    fn step(&mut self) -> Step {
        self.check_close_requests();
        if let Phase::Paused { until } = self.phase
            && Instant::now() >= until
        {
            self.phase = Phase::Open;
        }
        if self.write_blocked {
            // The socket may have drained: finish that flush first, so that what
            // came into the outbox meanwhile (its wake-up spent while we could not
            // take it) is taken in this pass, not at the next news.
            self.flush()?;
        }
        if self.readable && self.may_read() {
            self.read_all()?;
        }
        if self.may_drain() {
            self.drain_outbox()?;
            if self.inbox.as_ref().is_some_and(Inbox::is_finished) {
                // A wire viewer whose connection ended: everything is sent.
                self.start_close(CloseCode::Normal, LeaveReason::Closed);
            } else if self.inbox.as_ref().is_some_and(Inbox::must_reconnect) {
                // After what the hub queued first: the reason it asks this.
                self.start_close(CloseCode::Restart, LeaveReason::Error);
            } else if let Some(reason) = self.inbox.as_ref().and_then(Inbox::kicked) {
                // After the `kicked` news the hub queued first, so the page can say why.
                let reason = reason.to_owned();
                self.start_close_with(CloseCode::Library(KICKED), &reason, LeaveReason::Kicked);
            }
        }
        self.heartbeat()?;
        self.flush()
    }

    /// Writes out what is buffered, as far as the socket takes it.
    fn flush(&mut self) -> Step {
        match self.ws.flush() {
            Ok(()) => self.write_blocked = false,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true
            }
            Err(WsError::ConnectionClosed) => return Err(self.leave_reason()),
            Err(e) => {
                log::debug!(
                    "conn {} {}: write failed: {e}",
                    self.peer.id,
                    self.peer.addr
                );
                return Err(LeaveReason::Error);
            }
        }
        Ok(())
    }

    /// Whether to read from the socket now. Not while a flush would block, not while
    /// paused, and not while the client's own outbox is backed up.
    fn may_read(&self) -> bool {
        !self.write_blocked && !matches!(self.phase, Phase::Paused { .. }) && !self.backlogged()
    }

    /// Whether to move the outbox into the write buffer now: only while open (once a
    /// Close is on its way no data may follow it, RFC 6455 §5.5.1), and not while a
    /// flush would block.
    fn may_drain(&self) -> bool {
        !self.write_blocked && self.phase.is_open()
    }

    /// Whether the client's own outbox is more than half full (see `read_all`). Not
    /// while closing: the outbox is no longer drained then, and the peer's Close must
    /// still be read. A wire viewer is never held back: it asks nothing, and its
    /// pongs must be read even while it is behind.
    fn backlogged(&self) -> bool {
        self.phase.is_open()
            && !matches!(self.handler, Handler::Wire)
            && self.inbox.as_ref().is_some_and(Inbox::is_congested)
    }

    /// What the hub is told when the connection ends in the current phase.
    fn leave_reason(&self) -> LeaveReason {
        match self.phase {
            Phase::Closing { reason, .. } => reason,
            Phase::Open | Phase::Paused { .. } => LeaveReason::Closed,
        }
    }

    /// Blocks until there is something to do.
    fn sleep(&mut self) -> io::Result<()> {
        let deadline = match self.phase {
            Phase::Open => self.heartbeat.due(),
            Phase::Paused { until } => until.min(self.heartbeat.due()),
            Phase::Closing { deadline, .. } => deadline,
        };
        // Shutdown is a level, not an event: once it has started our close, waiting on
        // it again would return at once, forever.
        let shutdown = self.phase.is_open().then_some(&self.ctx.shutdown);
        // Bytes already read (tungstenite's buffer, the tap's read-ahead) that nothing
        // keeps us from taking now: `poll` cannot see them, so look, but do not sleep.
        let deadline = if self.readable && self.may_read() {
            Instant::now()
        } else {
            deadline
        };
        let wake = self.inbox.as_ref().map(Inbox::wake);
        let interest = Interest {
            read: self.may_read(),
            write: self.write_blocked,
        };
        let woken = base::wait(
            self.ws.get_ref().socket(),
            interest,
            wake.into_iter().chain(shutdown),
            Some(deadline),
        )?;
        if let Some(wake) = wake
            && woken.fired(wake)
        {
            wake.clear();
        }
        // Reading only when there is something to read saves a system call on every
        // wake-up that was for the outbox alone. `readable` stays set when the last
        // read stopped early, with frames possibly still buffered in tungstenite.
        self.readable |= woken.readable || self.ws.get_ref().has_buffered();
        Ok(())
    }

    fn check_close_requests(&mut self) {
        if !self.phase.is_open() {
            return;
        }
        if self.inbox.as_ref().is_some_and(Inbox::is_evicted) {
            log::info!(
                "conn {} {}: outbox full, closing slow consumer",
                self.peer.id,
                self.peer.addr
            );
            // The hub has already removed the member and told the room.
            self.start_close(CloseCode::Policy, LeaveReason::SlowConsumer);
        } else if self.ctx.shutdown.is_notified() {
            self.start_close(CloseCode::Away, LeaveReason::Shutdown);
        }
    }

    /// Sends our Close and gives the peer `close_timeout` to answer it.
    fn start_close(&mut self, code: CloseCode, reason: LeaveReason) {
        self.start_close_with(code, close_reason_text(code), reason);
    }

    /// Sends our Close with `text` as its reason (at most 123 bytes, RFC 6455 §5.5).
    fn start_close_with(&mut self, code: CloseCode, text: &str, reason: LeaveReason) {
        log::debug!(
            "conn {} {}: closing with {code} ({})",
            self.peer.id,
            self.peer.addr,
            base::escape(text)
        );
        self.phase = Phase::Closing {
            deadline: Instant::now() + self.ctx.config.close_timeout,
            reason,
        };
        // The frame is queued even when the write would block; the flush at the end
        // of the step sends it.
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: text.to_owned().into(),
        }));
    }

    /// Reads and handles every frame available without blocking.
    fn read_all(&mut self) -> Step {
        loop {
            if self.backlogged() {
                // Our own outbox is more than half full (answers and room traffic we
                // have not written yet): read no more requests until it drains. TCP
                // pushes back on a client that sends faster than it reads.
                return Ok(());
            }
            if self.inbox.as_ref().is_some_and(Inbox::take_throttle) {
                // Frames may still sit in tungstenite's buffer: `readable` stays set.
                self.phase = Phase::Paused {
                    until: Instant::now() + RELAY_PAUSE,
                };
                return Ok(());
            }
            match self.ws.read() {
                Ok(msg) => {
                    self.heartbeat.heard();
                    self.on_message(msg)?;
                    if self.write_blocked {
                        return Ok(());
                    }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(());
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Err(self.leave_reason());
                }
                Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                    return Err(LeaveReason::Closed);
                }
                Err(WsError::Io(e)) => {
                    log::debug!("conn {} {}: read failed: {e}", self.peer.id, self.peer.addr);
                    return Err(LeaveReason::Error);
                }
                Err(e) => return Err(self.fail(&e)),
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
        bump(&self.ctx.metrics.protocol_errors);
        log::info!(
            "conn {} {}: closing with {code}: {}",
            self.peer.id,
            self.peer.addr,
            base::escape(err.to_string())
        );
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: close_reason_text(code).into(),
        }));
        self.flush_for(FAIL_LINGER);
        base::linger(
            self.ws.get_mut(),
            Instant::now() + FAIL_LINGER,
            &self.ctx.shutdown,
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
            let socket = self.ws.get_ref().socket();
            if base::wait(socket, Interest::WRITE, None, Some(deadline)).is_err() {
                return;
            }
        }
    }

    fn on_message(&mut self, msg: Message) -> Step {
        let metrics = &self.ctx.metrics;
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                bump(&metrics.messages_in);
                add(&metrics.bytes_in, msg.len());
            }
            Message::Close(_) => {
                // tungstenite has queued our reply (or this answers our own Close); the
                // read after the flush reports the end.
                if self.phase.is_open() {
                    self.phase = Phase::Closing {
                        deadline: Instant::now() + self.ctx.config.close_timeout,
                        reason: LeaveReason::Closed,
                    };
                }
                return Ok(());
            }
            // tungstenite queues the Pong for a Ping itself; a Pong just proves life.
            _ => return Ok(()),
        }
        if !self.phase.is_open() {
            return Ok(());
        }
        let id = self.peer.id;
        let event = match &mut self.handler {
            Handler::Echo => return self.send(msg),
            Handler::Wire => return Ok(()),
            Handler::Relay => HubEvent::Relay { id, msg },
            Handler::Chat(policy) => {
                // A file's bytes go to disk here; what waited behind a file follows it.
                let mut event = policy.on_message(id, msg, metrics);
                while let Some(ready) = event {
                    self.hub.send(ready).map_err(|_| LeaveReason::Shutdown)?;
                    event = policy.next_waiting(id, metrics);
                }
                return Ok(());
            }
        };
        // Blocks only while the hub's queue is full, which pushes back on this client
        // through TCP. The hub itself never blocks, so it always drains.
        self.hub.send(event).map_err(|_| LeaveReason::Shutdown)
    }

    /// Queues one message for the peer.
    fn send(&mut self, msg: Message) -> Step {
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
                return Err(LeaveReason::Error);
            }
        }
        bump(&self.ctx.metrics.messages_out);
        add(&self.ctx.metrics.bytes_out, len);
        Ok(())
    }

    /// Moves the outbox into the write buffer, stopping when the socket pushes back.
    fn drain_outbox(&mut self) -> Step {
        while !self.write_blocked {
            let Some(msg) = self.inbox.as_ref().and_then(Inbox::try_recv) else {
                break;
            };
            self.send(msg)?;
        }
        Ok(())
    }

    /// Sends a Ping when one is due; ends the session when the last went unanswered.
    fn heartbeat(&mut self) -> Step {
        if !self.phase.is_open() || Instant::now() < self.heartbeat.due() {
            return Ok(());
        }
        if self.heartbeat.pinged {
            bump(&self.ctx.metrics.ping_timeouts);
            log::info!(
                "conn {} {}: no answer to ping, dropping",
                self.peer.id,
                self.peer.addr
            );
            return Err(LeaveReason::Timeout);
        }
        self.heartbeat.pinged = true;
        match self.ws.write(Message::Ping(Default::default())) {
            Err(WsError::Io(e)) if e.kind() != io::ErrorKind::WouldBlock => Err(LeaveReason::Error),
            _ => Ok(()),
        }
    }
}

/// Every code the server's own Close frames carry (`start_close`, `fail`), for the
/// close-code tables of the README and docs/PROTOCOL.md (checked in
/// `src/doc_tables.rs`, which also finds every close code this file names).
#[cfg(test)]
pub(crate) const SENT_CLOSE_CODES: [CloseCode; 9] = [
    CloseCode::Normal,
    CloseCode::Away,
    CloseCode::Protocol,
    CloseCode::Invalid,
    CloseCode::Policy,
    CloseCode::Size,
    CloseCode::Error,
    CloseCode::Restart,
    CloseCode::Library(KICKED),
];

/// The Close code of a member a moderator kicked (private use, RFC 6455 §7.4.2); its
/// reason is the moderator's.
pub(crate) const KICKED: u16 = 4001;

/// The reason text of the Close frames we send (README, "close codes").
pub(crate) fn close_reason_text(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Away => "server shutting down",
        CloseCode::Protocol => "protocol error",
        CloseCode::Invalid => "invalid UTF-8",
        CloseCode::Policy => "slow consumer",
        CloseCode::Size => "message too big",
        CloseCode::Normal => "the watched connection ended",
        CloseCode::Restart => "reconnect, please",
        // The moderator's reason instead, when it gave one.
        CloseCode::Library(KICKED) => "kicked",
        _ => "internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_tells_the_hub_even_when_the_thread_panics() {
        let (hub, events) = crossbeam_channel::unbounded();
        let (doors, closed) = crossbeam_channel::unbounded();
        let lines = Lines { hub, doors };
        let peer = Peer {
            id: 7,
            addr: "127.0.0.1:1".parse().unwrap(),
            secure: false,
            local: true,
        };
        let outcome = std::thread::spawn(move || {
            let _membership = Membership {
                peer,
                lines: &lines,
                reason: LeaveReason::Closed,
                watched: true,
            };
            panic!("a bug in a connection thread");
        })
        .join();
        assert!(outcome.is_err());
        assert!(matches!(
            events.try_recv(),
            Ok(HubEvent::Leave { id: 7, .. })
        ));
        assert!(matches!(
            closed.try_recv(),
            Ok(doors::Request::Close { id: 7 })
        ));
    }
}
