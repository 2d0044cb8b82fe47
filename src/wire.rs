//! The wire, live: a chat connection's own traffic, decoded from its bytes,
//! streamed to whoever holds its key.
//!
//! Every connection's stream goes through a [`Tap`] while its HTTP head is read: the
//! tap keeps the head's bytes, both ways, to replay them later, decoded by the
//! `--trace` [`Decoder`] only when a viewer comes (most connections never have one).
//! A chat session keeps the tap (opened with its [`Hatch`]); every other connection
//! gets its bare stream back once the head is done, so echo and relay pay nothing
//! after their handshake.
//!
//! Who may watch is the doors' business ([`crate::doors`]): they keep the [`Door`]
//! (the connection's key, a way to pass it a viewer, and a way to wake its thread),
//! and answer a viewer's request to watch after comparing the key in constant time.
//! Then the viewer reaches the tap through the door's channel, and a flag tells the
//! tap to look:
//!
//! - nobody watching: each read and write costs one atomic load, and the decoder only
//!   follows the frame headers to know where the next frame starts (no payload is
//!   looked at, nothing is formatted or allocated);
//! - watched: each frame in and out becomes one JSON event in the viewer's bounded
//!   [`Outbox`], with `try_queue`. A viewer that falls behind loses events and is told
//!   how many (`{"kind":"dropped","count":N}`) once there is room again; the chat
//!   connection never waits for it and is never evicted because of it.
//!
//! The viewer's own connection is not tapped: it gets its bare stream back like the
//! others, and is taken out of `--trace` ([`Transport::untrace`]).

use crate::base::{Transport, now_ms};
use crate::outbox::{Outbox, SendError, Waker};
use crate::trace::{self, Closer, Decoder, Direction, Frame, HeadEnd, Seen};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tungstenite::Message;

/// Events queued for one viewer before it counts as behind and loses the next ones:
/// a few seconds of a busy room, while a phone on Wi-Fi catches up.
pub(crate) const VIEWER_EVENTS: usize = 512;
/// Bytes of events queued for one viewer, likewise.
pub(crate) const VIEWER_BYTES: usize = 1 << 20;
/// Longest HTTP head kept for the replay: the server reads at most 8 KiB of one.
const MAX_HEAD: usize = 16 * 1024;

/// The subprotocol the server selects for a viewer, one it offered: never the one that
/// carries the key, so the `101` does not echo it (RFC 6455 §4.2.2).
pub(crate) const SUBPROTOCOL: &str = "switchboard-wire";
// How a viewer offers its key: the subprotocol `switchboard-wire.KEY`, next to
// `SUBPROTOCOL`. A browser can set it (`new WebSocket(url, [...])`), and proxies do
// not log it as they log URLs.
use crate::head::WIRE_KEY_PREFIX as KEY_PROTOCOL_PREFIX;

/// The key a viewer offered in `Sec-WebSocket-Protocol` (every occurrence of the
/// header, comma-separated lists), if any: the first `switchboard-wire.KEY`.
pub(crate) fn offered_key<'a>(offers: impl Iterator<Item = &'a [u8]>) -> Option<Key> {
    offers
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find_map(|token| {
            let prefix = token.get(..KEY_PROTOCOL_PREFIX.len())?;
            if !prefix.eq_ignore_ascii_case(KEY_PROTOCOL_PREFIX.as_bytes()) {
                return None;
            }
            let key = token.get(KEY_PROTOCOL_PREFIX.len()..)?;
            std::str::from_utf8(key).ok().map(|k| Key(k.to_owned()))
        })
}

/// A key as a viewer sent it: never shown in a log line, even at debug.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key(pub String);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What the doors keep of a connection that can be watched: its key, and the way to
/// hand it a viewer.
#[derive(Debug)]
pub(crate) struct Door {
    key: String,
    viewers: Sender<Outbox>,
    knock: Arc<AtomicBool>,
    /// Wakes the connection's thread, so that it takes a viewer in even while its
    /// client is quiet.
    wake: Waker,
}

/// The tap's side of a [`Door`].
#[derive(Debug)]
pub(crate) struct Hatch {
    viewers: Receiver<Outbox>,
    knock: Arc<AtomicBool>,
}

/// A door with a fresh random key (128 bits, in hex) and its hatch, for the
/// connection that `wake` wakes.
pub(crate) fn door(wake: Waker) -> io::Result<(Door, Hatch)> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    let key = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Room for one viewer on its way: a second one while the first has not been
    // taken in yet is refused, which the page never does.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let knock = Arc::new(AtomicBool::new(false));
    Ok((
        Door {
            key,
            viewers: tx,
            knock: Arc::clone(&knock),
            wake,
        },
        Hatch { viewers: rx, knock },
    ))
}

impl Door {
    /// The key, for the member's `welcome`.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Whether `key` is this door's, compared in constant time.
    pub(crate) fn opens_with(&self, key: &Key) -> bool {
        self.key.as_bytes().ct_eq(key.0.as_bytes()).into()
    }

    /// Hands `viewer` to the connection without waiting, and wakes its thread;
    /// `false` if it cannot take it (gone, or another viewer is still on its way).
    pub(crate) fn let_in(&self, viewer: Outbox) -> bool {
        if self.viewers.try_send(viewer).is_err() {
            return false;
        }
        self.knock.store(true, Ordering::Release);
        self.wake.wake();
        true
    }
}

/// A viewer's queue, and how many events it lost since it last got one.
#[derive(Debug)]
struct Viewer {
    outbox: Outbox,
    dropped: u64,
}

impl Viewer {
    /// Queues `event`; `false` when the viewer is gone.
    fn push(&mut self, event: &Value) -> bool {
        if self.dropped > 0 {
            let notice = json!({"t": now_ms(), "kind": "dropped", "count": self.dropped});
            match self.try_queue(&notice) {
                Ok(()) => self.dropped = 0,
                Err(SendError::Full) => {
                    self.dropped += 1;
                    return true;
                }
                Err(SendError::Gone) => return false,
            }
        }
        match self.try_queue(event) {
            Ok(()) => true,
            // Behind: this event is lost, and counted. Never wait, never evict.
            Err(SendError::Full) => {
                self.dropped += 1;
                true
            }
            Err(SendError::Gone) => false,
        }
    }

    fn try_queue(&self, event: &Value) -> Result<(), SendError> {
        if let Some(owed) = self.outbox.try_queue(Message::text(event.to_string()))? {
            owed.give();
        }
        Ok(())
    }
}

/// One direction of the tapped stream.
#[derive(Debug)]
struct Side {
    direction: Direction,
    /// The HTTP head's bytes, as they came: kept, not decoded, until a viewer wants
    /// them (most connections never have one, and every connection has a head).
    head: Vec<u8>,
    /// When the head ended, in ms.
    t: u64,
    /// Follows the frames once the head is over; `None` until then.
    frames: Option<Decoder>,
}

impl Side {
    fn new(direction: Direction) -> Self {
        Self {
            direction,
            head: Vec::new(),
            t: 0,
            frames: None,
        }
    }

    /// Takes bytes of the head; once it is complete, what follows goes to a decoder
    /// of frames (or of nothing, when the head was no upgrade).
    #[cold]
    fn take_head(&mut self, bytes: &[u8], quiet: bool, seen: &mut Vec<Seen>) {
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        // The parser (the server's) is asked only once a blank line came, bare-LF
        // or not: cheap for every connection, and the end is where the server saw it.
        let blank = ends_a_line_twice(
            self.head
                .get(before.saturating_sub(2)..)
                .unwrap_or_default(),
        );
        let end = match blank {
            true => trace::head_end(&self.head),
            false if self.head.len() > MAX_HEAD => HeadEnd::Never,
            false => HeadEnd::More,
        };
        let rest = match end {
            HeadEnd::At(end) => self.head.split_off(end),
            HeadEnd::Never => {
                // No head at all: nothing to follow, nothing to replay.
                self.head = Vec::new();
                let mut off = Decoder::frames(self.direction);
                off.stop();
                self.frames = Some(off);
                return;
            }
            HeadEnd::More => return,
        };
        self.t = now_ms();
        if !quiet {
            // Watched already (a viewer can only come after the `101`, but still).
            Decoder::new(self.direction).decode(&self.head, seen);
        }
        let mut decoder = Decoder::after_head(self.direction, &self.head);
        decoder.set_quiet(quiet);
        decoder.decode(&rest, seen);
        self.frames = Some(decoder);
    }

    /// The head's lines, decoded now by the `--trace` decoder.
    fn head_lines(&self) -> Vec<Seen> {
        let mut lines = Vec::new();
        Decoder::new(self.direction).decode(&self.head, &mut lines);
        lines
    }
}

/// Whether `bytes` hold a blank line's end: `\n\n` or `\n\r\n`.
fn ends_a_line_twice(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .zip(bytes.iter().skip(2).map(Some).chain([None]))
        .any(|(w, next)| w == b"\n\n" || (w == b"\n\r" && next == Some(&b'\n')))
}

/// What the tap holds besides the stream.
#[derive(Debug)]
struct Wire {
    inbound: Side,
    outbound: Side,
    /// Set once the connection is a chat session that can be watched.
    hatch: Option<Hatch>,
    viewer: Option<Viewer>,
    /// Scratch for what the decoder saw, kept to save an allocation per read.
    seen: Vec<Seen>,
    closer: Option<Closer>,
}

impl Wire {
    /// Takes in a viewer the hub let in, if any: the cheap check of every read and
    /// write.
    #[inline]
    fn check_knock(&mut self) {
        if let Some(hatch) = &self.hatch
            && hatch.knock.load(Ordering::Relaxed)
        {
            self.admit();
        }
    }

    /// A viewer's first events: the handshake, replayed.
    #[cold]
    fn admit(&mut self) {
        let Some(hatch) = &self.hatch else { return };
        hatch.knock.store(false, Ordering::Relaxed);
        // The door stores the flag after the send: seeing it, the viewer is there.
        std::sync::atomic::fence(Ordering::Acquire);
        while let Ok(outbox) = hatch.viewers.try_recv() {
            // A new viewer replaces the old one (a page that reconnected its panel).
            if let Some(old) = self.viewer.take() {
                old.outbox.finish();
            }
            let mut viewer = Viewer { outbox, dropped: 0 };
            let mut here = true;
            for side in [&self.inbound, &self.outbound] {
                for seen in side.head_lines() {
                    if let Seen::Line(line) | Seen::Stopped(line) = seen {
                        here &= viewer.push(&http_event(side.t, side.direction, &line));
                    }
                }
            }
            if here {
                self.viewer = Some(viewer);
            }
        }
        self.set_quiet();
    }

    fn set_quiet(&mut self) {
        let quiet = self.viewer.is_none();
        for side in [&mut self.inbound, &mut self.outbound] {
            if let Some(frames) = &mut side.frames {
                frames.set_quiet(quiet);
            }
        }
    }

    /// Bytes went `direction`: decode them (quietly unless watched) and pass on what
    /// they completed.
    #[inline]
    fn saw(&mut self, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.check_knock();
        let side = match direction {
            Direction::In => &mut self.inbound,
            Direction::Out => &mut self.outbound,
        };
        match &mut side.frames {
            Some(frames) => frames.decode(bytes, &mut self.seen),
            None => side.take_head(bytes, self.viewer.is_none(), &mut self.seen),
        }
        if !self.seen.is_empty() {
            self.pass_on(direction);
        }
    }

    fn pass_on(&mut self, direction: Direction) {
        let t = now_ms();
        let mut seen = std::mem::take(&mut self.seen);
        for seen in seen.drain(..) {
            let event = match seen {
                Seen::Line(line) | Seen::Stopped(line) => http_event(t, direction, &line),
                Seen::Frame(frame) => frame_event(t, direction, &frame),
            };
            if let Some(viewer) = &mut self.viewer
                && !viewer.push(&event)
            {
                self.viewer = None;
                self.set_quiet();
            }
        }
        self.seen = seen;
    }
}

impl Drop for Wire {
    /// The last event: the TCP connection is over, and who ended it. Then the viewer's
    /// session closes too.
    fn drop(&mut self) {
        if let Some(mut viewer) = self.viewer.take() {
            let by = match self.closer.unwrap_or(Closer::Us) {
                Closer::Peer => "client",
                Closer::Us => "server",
            };
            viewer.push(&json!({"t": now_ms(), "kind": "tcp", "event": "closed", "by": by}));
            viewer.outbox.finish();
        }
    }
}

/// One line of an HTTP head as the wire stream shows it.
fn http_event(t: u64, direction: Direction, line: &str) -> Value {
    json!({"t": t, "dir": direction.as_str(), "kind": "http", "line": line})
}

/// One frame as the wire stream shows it.
fn frame_event(t: u64, direction: Direction, frame: &Frame) -> Value {
    let mut event = json!({
        "t": t,
        "dir": direction.as_str(),
        "kind": "frame",
        "fin": frame.fin,
        "rsv": frame.rsv_bits(),
        "opcode": frame.opcode_name(),
        "op": frame.opcode,
        "masked": frame.mask.is_some(),
        "key": frame.key_hex(),
        "len": frame.len,
        "len_bits": frame.len_bits,
        "preview": preview(frame),
        "truncated": frame.truncated(),
    });
    if let Some((code, reason)) = frame.close() {
        event["close_code"] = code.into();
        event["close_reason"] = reason.into();
    }
    event
}

/// The start of the payload: as text when it reads as UTF-8 (a text frame, its
/// continuations, most pings), else as hex bytes.
fn preview(frame: &Frame) -> String {
    if frame.opcode == 0x8 {
        return frame.close().map(|(_, reason)| reason).unwrap_or_default();
    }
    let bytes = &frame.preview;
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        // Cut in the middle of a character by the preview's end: the whole ones.
        Err(e) if e.error_len().is_none() && frame.truncated() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) if frame.opcode != 0x2 => text.to_owned(),
        _ => bytes
            .iter()
            .take(32)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A stream whose bytes can be shown, decoded, to a viewer (see the module docs).
#[derive(Debug)]
pub(crate) struct Tap<S> {
    inner: S,
    /// Boxed: the tap is moved down the handshake's calls with the stream, and only
    /// a pointer of it should be.
    wire: Box<Wire>,
    /// Bytes read ahead while a peer sends in bulk (see [`ReadAhead`]).
    ahead: ReadAhead,
}

/// Reads of a busy connection, made larger than the frame loop asks for.
///
/// The frame loop reads [`crate::base::READ_BUFFER`] bytes at a time, small because
/// every one of thousands of idle connections keeps that buffer; a file sent at
/// loopback speed then costs a system call every 2 KiB, which was most of the server's
/// CPU per megabyte. So once a read fills what was asked, the next one reads up to
/// [`AHEAD`] into a buffer of its own and hands it out in the sizes asked; the buffer
/// goes again as soon as a read does not fill it (the burst is over). Only
/// connections receiving in bulk ever hold it, and only while they do. Nothing is
/// left unread behind a `WouldBlock`: one is only returned once this buffer is empty,
/// so `poll(2)` on the socket still tells the whole truth.
#[derive(Debug, Default)]
struct ReadAhead {
    /// Only in a session's frame loop ([`Tap::read_ahead`]): while a head is read, or
    /// before the stream leaves the tap, nothing may be taken beyond what is asked.
    on: bool,
    /// [`AHEAD`] bytes while a burst lasts (zeroed once, not at every read), else none.
    buf: Vec<u8>,
    /// What of `buf` is read and not yet handed out: `at..end`.
    at: usize,
    end: usize,
    /// The last read filled what was asked: the peer sends faster than we read.
    busy: bool,
}

/// The most a read-ahead takes at once.
const AHEAD: usize = 64 * 1024;

impl<S> Tap<S> {
    /// Wraps a stream whose HTTP head is still to come.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            wire: Box::new(Wire {
                inbound: Side::new(Direction::In),
                outbound: Side::new(Direction::Out),
                hatch: None,
                viewer: None,
                seen: Vec::new(),
                closer: None,
            }),
            ahead: ReadAhead::default(),
        }
    }

    /// Makes the connection watchable through the door of `hatch`.
    pub(crate) fn open(&mut self, hatch: Hatch) {
        self.wire.hatch = Some(hatch);
    }

    /// The bare stream: this connection is not watchable.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Read> Read for Tap<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.ahead.hand_out(buf) {
            return Ok(n);
        }
        if !self.ahead.on || !self.ahead.busy || buf.is_empty() || buf.len() >= AHEAD / 2 {
            let n = self.read_through(buf)?;
            self.ahead.busy = n == buf.len() && n > 0;
            return Ok(n);
        }
        let mut ahead = std::mem::take(&mut self.ahead.buf);
        if ahead.len() != AHEAD {
            ahead = vec![0; AHEAD];
        }
        let read = self.read_through(&mut ahead);
        let n = *read.as_ref().unwrap_or(&0);
        self.ahead.buf = ahead;
        self.ahead.at = 0;
        self.ahead.end = n;
        // Still bursting while it fills the buffer; else this is the last of it.
        self.ahead.busy = n == AHEAD;
        read?;
        Ok(self.ahead.hand_out(buf).unwrap_or(0))
    }
}

impl<S> Tap<S> {
    /// From now on, reads made while the peer sends in bulk take more than asked
    /// ([`ReadAhead`]): for the frame loop, which asks whether bytes are buffered
    /// ([`Transport::has_buffered`]) before it trusts `poll(2)`.
    pub(crate) fn read_ahead(&mut self) {
        self.ahead.on = true;
    }
}

impl<S: Read> Tap<S> {
    /// One read of the stream, seen by the tap.
    fn read_through(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf.get(..n) {
            Some([]) if !buf.is_empty() => {
                self.wire.closer.get_or_insert(Closer::Peer);
            }
            Some(read) => self.wire.saw(Direction::In, read),
            None => {}
        }
        Ok(n)
    }
}

impl ReadAhead {
    /// Copies what is read ahead into `buf`; `None` when nothing is. The buffer is
    /// let go once it is empty and the burst is over.
    fn hand_out(&mut self, buf: &mut [u8]) -> Option<usize> {
        let rest = self
            .buf
            .get(self.at..self.end)
            .filter(|rest| !rest.is_empty())?;
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)?.copy_from_slice(rest.get(..n)?);
        self.at += n;
        if self.at == self.end {
            (self.at, self.end) = (0, 0);
            if !self.busy {
                self.buf = Vec::new();
            }
        }
        Some(n)
    }
}

impl<S: Write> Write for Tap<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(written) = buf.get(..n) {
            self.wire.saw(Direction::Out, written);
        }
        Ok(n)
    }

    /// Also where a viewer is taken in while the client is quiet: the frame loop
    /// flushes on every wake-up, and the hub wakes it when it lets a viewer in.
    fn flush(&mut self) -> io::Result<()> {
        self.wire.check_knock();
        self.inner.flush()
    }
}

/// The tap is transparent to the connection code.
impl<S: Transport> Transport for Tap<S> {
    fn socket(&self) -> BorrowedFd<'_> {
        self.inner.socket()
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.inner.set_nonblocking(on)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    fn has_buffered(&self) -> bool {
        self.ahead.at < self.ahead.end || self.inner.has_buffered()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.wire.closer.get_or_insert(Closer::Us);
        self.inner.shutdown_write()
    }

    fn untrace(&mut self) {
        self.inner.untrace();
    }

    fn relabel(&mut self, label: String) {
        self.inner.relabel(label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::outbox;

    #[test]
    fn a_busy_reader_reads_ahead_and_hands_out_every_byte_once_in_order() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut tap = Tap::new(std::io::Cursor::new(bytes.clone()));
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        // Before the session, reads take exactly what is asked.
        for _ in 0..2 {
            assert_eq!(tap.read(&mut buf).unwrap(), 2048);
            got.extend_from_slice(&buf);
        }
        assert!(
            tap.ahead.buf.is_empty(),
            "no read-ahead before read_ahead()"
        );
        tap.read_ahead();
        let mut read_ahead = false;
        loop {
            let n = tap.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            read_ahead |= tap.ahead.end > buf.len();
            got.extend_from_slice(&buf[..n]);
        }
        assert!(read_ahead, "a busy reader read ahead");
        assert!(got == bytes, "every byte once, in order");
        assert!(
            tap.ahead.buf.capacity() == 0,
            "the buffer goes when the burst ends"
        );
    }

    /// A door of a connection whose outbox is of no more use here.
    fn watched_door() -> (Door, Hatch) {
        let (outbox, _inbox) = crate::outbox::outbox(8, 1 << 16).unwrap();
        door(outbox.waker()).unwrap()
    }

    fn events(inbox: &crate::outbox::Inbox) -> Vec<Value> {
        std::iter::from_fn(|| inbox.try_recv())
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn the_key_opens_only_its_door() {
        let (door, _hatch) = watched_door();
        assert_eq!(door.key().len(), 32);
        assert!(door.opens_with(&Key(door.key().to_owned())));
        assert!(!door.opens_with(&Key("00".into())));
        assert!(!door.opens_with(&Key("0".repeat(32))));
        assert_eq!(format!("{:?}", Key("s3cret".into())), "[redacted]");
    }

    #[test]
    fn a_viewer_gets_the_replay_then_live_frames() {
        let (door, hatch) = watched_door();
        let mut tap = Tap::new(io::Cursor::new(
            b"GET /ws/chat HTTP/1.1\r\nUpgrade: websocket\r\nCookie: s=1\r\n\r\n\x81\x82\x01\x02\x03\x04\x69\x6b".to_vec(),
        ));
        let mut buf = [0u8; 100];
        let n = tap.read(&mut buf).unwrap();
        assert!(n > 0);
        tap.open(hatch);
        let (tx, rx) = outbox(16, 1 << 20).unwrap();
        assert!(door.let_in(tx));
        tap.flush().unwrap();
        let seen = events(&rx);
        let lines: Vec<&str> = seen.iter().filter_map(|e| e["line"].as_str()).collect();
        assert_eq!(
            lines,
            [
                "GET /ws/chat HTTP/1.1",
                "Upgrade: websocket",
                "Cookie: [redacted]"
            ]
        );
        assert_eq!(
            seen.len(),
            3,
            "the frame before the viewer came is not shown"
        );
        // Live: a server frame out.
        let mut out = Tap::new(Vec::new());
        out.wire = tap.wire;
        out.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi")
            .unwrap();
        let seen = events(&rx);
        assert_eq!(seen[0]["line"], "HTTP/1.1 101 Switching Protocols");
        assert_eq!(seen[1]["kind"], "frame");
        assert_eq!(seen[1]["dir"], "out");
        assert_eq!(seen[1]["preview"], "hi");
        assert_eq!(seen[1]["len_bits"], 7);
        assert_eq!(seen[1]["masked"], false);
    }

    #[test]
    fn the_key_is_read_from_the_offered_subprotocols() {
        let key = |offers: &[&str]| offered_key(offers.iter().map(|o| o.as_bytes())).map(|k| k.0);
        assert_eq!(
            key(&["switchboard-wire, switchboard-wire.ab12"]),
            Some("ab12".into())
        );
        assert_eq!(
            key(&["chat.v1", " Switchboard-Wire.cd34 ,x"]),
            Some("cd34".into())
        );
        assert_eq!(key(&["switchboard-wire"]), None);
        assert_eq!(key(&[]), None);
    }

    #[test]
    fn a_bare_lf_head_is_followed_by_its_frames() {
        let (door, hatch) = watched_door();
        let mut tap = Tap::new(io::Cursor::new(
            b"GET /ws/chat HTTP/1.1\nUpgrade: websocket\nCookie: s=1\n\n".to_vec(),
        ));
        let mut buf = [0u8; 100];
        while tap.read(&mut buf).unwrap() > 0 {}
        tap.open(hatch);
        let (tx, rx) = outbox(16, 1 << 20).unwrap();
        assert!(door.let_in(tx));
        tap.flush().unwrap();
        let lines: Vec<String> = events(&rx)
            .iter()
            .filter_map(|e| e["line"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            lines,
            [
                "GET /ws/chat HTTP/1.1",
                "Upgrade: websocket",
                "Cookie: [redacted]"
            ]
        );
        let mut out = Tap::new(Vec::new());
        out.wire = tap.wire;
        out.write_all(b"HTTP/1.1 101 Switching Protocols\n\n\x81\x02hi")
            .unwrap();
        let seen = events(&rx);
        assert_eq!(seen[0]["line"], "HTTP/1.1 101 Switching Protocols");
        assert_eq!(seen[1]["preview"], "hi", "{seen:?}");
    }

    #[test]
    fn a_viewer_that_falls_behind_is_told_how_much_it_lost() {
        let (door, hatch) = watched_door();
        let mut tap = Tap::new(Vec::new());
        tap.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .unwrap();
        tap.open(hatch);
        let (tx, rx) = outbox(2, 1 << 20).unwrap();
        assert!(door.let_in(tx));
        tap.flush().unwrap();
        assert_eq!(events(&rx).len(), 1, "the replay");
        for _ in 0..5 {
            tap.write_all(b"\x89\x00").unwrap();
        }
        assert_eq!(events(&rx).len(), 2, "two fit, three were lost");
        tap.write_all(b"\x89\x00").unwrap();
        let seen = events(&rx);
        assert_eq!(seen[0]["kind"], "dropped");
        assert_eq!(seen[0]["count"], 3);
        assert_eq!(seen[1]["opcode"], "PING");
    }
}
