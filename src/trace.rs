//! The wire trace: what really crossed a connection, decoded from the bytes
//! themselves.
//!
//! [`Traced`] wraps any stream and watches the bytes going each way: first the HTTP
//! head (read by the server's own parser, so a head is split into lines exactly where
//! the server splits it, bare-LF heads included; one line per header, secrets
//! redacted, peer text escaped), then, after a `101`, every WebSocket
//! frame (RFC 6455 §5.2): FIN, RSV bits, opcode, MASK and masking key, payload length
//! and which of the three length encodings carried it, the start of the payload, and
//! for a Close the code and reason. It decodes independently of tungstenite, so the
//! trace shows the wire, not what a library made of it.
//!
//! Lines go to the `log` target `switchboard::trace` at `info`, so
//! `RUST_LOG=switchboard::trace=info` picks them out. The server wraps every
//! connection when `Config::trace` is set; `switchboard connect --trace` wraps its own.

use crate::escape::escape;
use crate::frame::{self, Header};
use crate::head::{self, Field, Parsed, Refused, redact};
use std::fmt::Write as _;
use std::io::{self, Read, Write};

/// The `log` target of every trace line.
pub const TARGET: &str = "switchboard::trace";

/// Longest HTTP response head the trace holds on to; past it the trace of that
/// direction stops. A request head stops where the server's parser stops it (8 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// Payload bytes shown for a data frame (a control frame is shown whole: ≤ 125).
const PREVIEW: usize = 96;

/// Which way bytes went, seen from the side that does the tracing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Bytes read from the peer (`<-`).
    In,
    /// Bytes written to the peer (`->`).
    Out,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::In => "<-",
            Direction::Out => "->",
        }
    }

    /// `"in"` or `"out"`, as the wire stream names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Collecting an HTTP head.
    Http(Vec<u8>),
    /// Decoding frames.
    Frames,
    /// Nothing more to decode (not a WebSocket, or lost).
    Off,
}

/// One complete WebSocket frame as it crossed the wire (RFC 6455 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as three bits (`0b100` is RSV1).
    pub rsv: u8,
    /// The opcode: 0x0 continuation, 0x1 text, 0x2 binary, 0x8 close, 0x9 ping, 0xA pong.
    pub opcode: u8,
    /// The masking key, when MASK was set (every client frame, RFC 6455 §5.3).
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub len: u64,
    /// Which length encoding carried it: 7, 16 or 64 bits (RFC 6455 §5.2).
    pub len_bits: u8,
    /// The first payload bytes, unmasked: up to 96 for a data frame, all of a control
    /// frame (at most 125).
    pub preview: Vec<u8>,
}

impl Frame {
    /// The opcode's name: `TEXT`, `PING`, …; `RESERVED` for the unassigned ones.
    pub fn opcode_name(&self) -> &'static str {
        match self.opcode {
            0x0 => "CONTINUATION",
            0x1 => "TEXT",
            0x2 => "BINARY",
            0x8 => "CLOSE",
            0x9 => "PING",
            0xA => "PONG",
            _ => "RESERVED",
        }
    }

    /// The RSV bits as written in the header: `"000"`.
    pub fn rsv_bits(&self) -> String {
        format!(
            "{}{}{}",
            (self.rsv >> 2) & 1,
            (self.rsv >> 1) & 1,
            self.rsv & 1
        )
    }

    /// The masking key in hex, as sent.
    pub fn key_hex(&self) -> Option<String> {
        self.mask
            .map(|k| format!("{:02x}{:02x}{:02x}{:02x}", k[0], k[1], k[2], k[3]))
    }

    /// A Close frame's status code and reason (RFC 6455 §5.5.1), when it has them.
    pub fn close(&self) -> Option<(u16, String)> {
        match (self.opcode, self.preview.as_slice()) {
            (0x8, [a, b, reason @ ..]) => Some((
                u16::from_be_bytes([*a, *b]),
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => None,
        }
    }

    /// Whether the payload is longer than [`Frame::preview`].
    pub fn truncated(&self) -> bool {
        self.len > self.preview.len() as u64
    }

    /// The payload, shortly: text in quotes, or the first bytes in hex.
    pub fn describe_payload(&self) -> String {
        describe_payload(self.opcode, &self.preview, self.len)
    }

    /// The trace line of this frame, without the arrow.
    fn line(&self) -> String {
        let mut line = format!(
            "frame FIN={} RSV={} {}(0x{:x})",
            u8::from(self.fin),
            self.rsv_bits(),
            self.opcode_name(),
            self.opcode
        );
        match self.key_hex() {
            Some(key) => {
                let _ = write!(line, " MASK=1 key={key}");
            }
            None => line.push_str(" MASK=0"),
        }
        let _ = write!(line, " len={} ({}-bit)", self.len, self.len_bits);
        if self.opcode == 8 {
            line.push_str(&describe_close(&self.preview));
        } else if self.len > 0 {
            line.push(' ');
            line.push_str(&self.describe_payload());
        }
        line
    }
}

/// What the decoder made of the bytes it was fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// One line of an HTTP head, secrets redacted.
    Line(String),
    /// One whole frame.
    Frame(Frame),
    /// Decoding stopped, and why.
    Stopped(String),
}

/// Decodes one direction of a connection, incrementally: feed it bytes in whatever
/// pieces they came, get back what they completed.
///
/// A *quiet* decoder still follows the frames (it must know where the next one
/// starts) but keeps no payload and reports none of them: that is all the wire tap
/// does for a connection nobody watches. A frame reports what the decoder was when
/// its header ended.
#[derive(Debug)]
pub(crate) struct Decoder {
    direction: Direction,
    phase: Phase,
    quiet: bool,
    /// Header bytes of the frame in progress (at most 14).
    header: Vec<u8>,
    /// The frame in progress, once its header is complete, and whether to report it.
    head: Option<(Frame, bool)>,
    /// Payload bytes of the frame in progress still to come.
    left: u64,
    /// Payload bytes seen so far of the frame in progress.
    seen: u64,
}

impl Decoder {
    /// A decoder that starts with an HTTP head, like every WebSocket connection.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            phase: Phase::Http(Vec::new()),
            quiet: false,
            header: Vec::with_capacity(14),
            head: None,
            left: 0,
            seen: 0,
        }
    }

    /// A decoder that starts with frames (the HTTP head was traced elsewhere).
    pub fn frames(direction: Direction) -> Self {
        Self {
            phase: Phase::Frames,
            ..Self::new(direction)
        }
    }

    /// A decoder for what follows the HTTP head `head` (its bytes, up to the blank
    /// line): frames if it asked for or agreed to an upgrade, nothing otherwise.
    pub fn after_head(direction: Direction, head: &[u8]) -> Self {
        let phase = match parse_head(head) {
            HeadParse::Complete(head, _) if head.upgrades => Phase::Frames,
            _ => Phase::Off,
        };
        Self {
            phase,
            ..Self::new(direction)
        }
    }

    /// Stops (or starts again) reporting frames; see the type's docs.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Stops decoding for good.
    pub fn stop(&mut self) {
        self.phase = Phase::Off;
    }

    /// Takes the next bytes and returns the trace lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut seen = Vec::new();
        self.decode(bytes, &mut seen);
        let arrow = self.direction.arrow();
        seen.into_iter()
            .map(|s| match s {
                Seen::Line(line) | Seen::Stopped(line) => format!("{arrow} {line}"),
                Seen::Frame(frame) => format!("{arrow} {}", frame.line()),
            })
            .collect()
    }

    /// Takes the next bytes and appends to `out` what they completed.
    pub fn decode(&mut self, mut bytes: &[u8], out: &mut Vec<Seen>) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Off => break,
                Phase::Http(head) => {
                    let before = head.len();
                    head.extend_from_slice(bytes);
                    // Parsed again at each piece, as the server's front does: the
                    // trace sees the head end, or turn out malformed, where it does.
                    let (phase, taken) = match parse_head(head) {
                        HeadParse::Partial if head.len() <= MAX_HEAD => break,
                        HeadParse::Partial | HeadParse::TooLarge => {
                            out.push(Seen::Stopped(
                                "(HTTP head too large; trace stops)".to_owned(),
                            ));
                            (Phase::Off, bytes.len())
                        }
                        HeadParse::Refused(why) => {
                            refused_lines(head, &why, out);
                            (Phase::Off, bytes.len())
                        }
                        HeadParse::Complete(parsed, len) => {
                            let phase = if parsed.upgrades {
                                Phase::Frames
                            } else {
                                Phase::Off
                            };
                            parsed.lines(out);
                            (phase, len.saturating_sub(before).min(bytes.len()))
                        }
                    };
                    self.phase = phase;
                    bytes = &bytes[taken..];
                }
                Phase::Frames => {
                    let used = self.frame_bytes(bytes, out);
                    bytes = &bytes[used..];
                }
            }
        }
    }

    /// Consumes frame bytes; returns how many it used.
    fn frame_bytes(&mut self, bytes: &[u8], out: &mut Vec<Seen>) -> usize {
        let Some((frame, report)) = &mut self.head else {
            // Still reading the header: the first two bytes say how long it is (2 to
            // 14 bytes), so it takes at most two steps whatever the pieces.
            let have = self.header.len();
            let b1 = match have {
                0 => bytes.get(1),
                1 => bytes.first(),
                _ => self.header.get(1),
            };
            let need = b1.map_or(2, |&b1| frame::header_size(b1));
            // Never 0: the header is parsed as soon as it is complete.
            let take = need.saturating_sub(have).clamp(1, bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            if let Some(frame) = parse_header(&self.header) {
                self.header.clear();
                self.left = frame.len;
                self.seen = 0;
                let empty = frame.len == 0;
                self.head = Some((frame, !self.quiet));
                if empty {
                    self.finish(out);
                }
            }
            return take;
        };
        let take = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        if *report {
            // Only the bytes that make the preview are looked at.
            let limit: u64 = if frame.opcode >= 8 {
                125
            } else {
                PREVIEW as u64
            };
            let wanted = usize::try_from(limit.saturating_sub(self.seen))
                .unwrap_or(0)
                .min(take);
            for (i, &b) in bytes[..wanted].iter().enumerate() {
                let at = self.seen + i as u64;
                let key = frame.mask.map_or(0, |k| k[(at % 4) as usize]);
                frame.preview.push(b ^ key);
            }
        }
        self.seen += take as u64;
        self.left -= take as u64;
        if self.left == 0 {
            self.finish(out);
        }
        take
    }

    fn finish(&mut self, out: &mut Vec<Seen>) {
        if let Some((frame, true)) = self.head.take() {
            out.push(Seen::Frame(frame));
        }
    }
}

/// What the server's parser makes of the bytes of a head so far.
enum HeadParse {
    /// More bytes are needed.
    Partial,
    /// A whole head, and how many bytes it took.
    Complete(Head, usize),
    /// Not HTTP the server would read: refused as malformed, and why.
    Refused(String),
    /// Longer than the parser reads.
    TooLarge,
}

/// A whole HTTP head, as the parser split it.
struct Head {
    /// The request line or status line, rebuilt from what the parser read, shown.
    first: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Whether WebSocket frames follow: a request asking for an upgrade, or a `101`.
    upgrades: bool,
}

impl Head {
    /// Its trace lines: the first line, then one per header, redacted and escaped.
    fn lines(self, out: &mut Vec<Seen>) {
        out.push(Seen::Line(self.first));
        for (name, value) in &self.headers {
            out.push(Seen::Line(header_line(
                name,
                &String::from_utf8_lossy(value),
            )));
        }
    }
}

/// `Name: value`, as the trace shows a header: the value redacted, both escaped.
fn header_line(name: &str, value: &str) -> String {
    let value = redact(Field::Header(name), value);
    format!("{}: {}", escape(name), escape(value))
}

/// Reads `buf` with the parser the server reads requests with
/// ([`head::parse`]), or, when it starts like a status line, with the same
/// library's response parser (the client side of `switchboard connect --trace`).
fn parse_head(buf: &[u8]) -> HeadParse {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    if buf[start..].starts_with(b"HTTP/") {
        return parse_response(buf);
    }
    match head::parse(buf) {
        Ok(Parsed::Complete(req, len)) => {
            let first = format!(
                "{} {} HTTP/1.{}",
                escape(&req.method),
                escape(redact(Field::Target, &req.target)),
                req.version
            );
            let upgrades = req.has_token("Upgrade", "websocket");
            let head = Head {
                first,
                headers: req.headers,
                upgrades,
            };
            HeadParse::Complete(head, len)
        }
        Ok(Parsed::Partial) => HeadParse::Partial,
        Err(Refused::Malformed(why)) => HeadParse::Refused(why),
        Err(Refused::TooLarge) => HeadParse::TooLarge,
    }
}

fn parse_response(buf: &[u8]) -> HeadParse {
    let mut headers = vec![httparse::EMPTY_HEADER; head::MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let code = res.code.unwrap_or(0);
            let first = format!(
                "HTTP/1.{} {code} {}",
                res.version.unwrap_or(1),
                escape(res.reason.unwrap_or(""))
            );
            let headers = res
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect();
            let head = Head {
                first,
                headers,
                upgrades: code == 101,
            };
            HeadParse::Complete(head, len)
        }
        Ok(httparse::Status::Partial) => HeadParse::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadParse::TooLarge,
        Err(e) => HeadParse::Refused(format!("malformed response: {e}")),
    }
}

/// The trace of a head the parser refused: the lines it read before the one it
/// stumbled on (found by parsing ever longer runs of whole lines, each closed with a
/// blank line), then that line, escaped, cut at the first CR or LF, so that nothing
/// after it is shown split any other way than the parser would, then why.
fn refused_lines(buf: &[u8], why: &str, out: &mut Vec<Seen>) {
    let ends: Vec<usize> = buf
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(at, _)| at + 1)
        .collect();
    // The lines before the bad one make a whole head once closed; a prefix of a
    // valid run of lines is valid too, so the longest such run is a binary search.
    let whole = |n: usize| -> Option<Head> {
        let end = *ends.get(n.checked_sub(1)?)?;
        let mut closed = buf.get(..end)?.to_vec();
        closed.extend_from_slice(b"\r\n");
        match parse_head(&closed) {
            HeadParse::Complete(head, _) => Some(head),
            _ => None,
        }
    };
    let (mut lo, mut hi) = (0, ends.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if whole(mid).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let from = match whole(lo) {
        Some(head) => {
            head.lines(out);
            ends.get(lo.wrapping_sub(1)).copied().unwrap_or(0)
        }
        None => 0,
    };
    let rest = buf.get(from..).unwrap_or_default();
    let bad = rest
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let bad = String::from_utf8_lossy(bad);
    let line = match bad.split_once(':') {
        Some((name, value)) if from > 0 => header_line(name, value.trim_start()),
        _ => escape(redact(Field::Target, &bad)).to_string(),
    };
    out.push(Seen::Line(line));
    out.push(Seen::Stopped(format!("({}; trace stops)", escape(why))));
}

/// Where the HTTP head at the start of `buf` ends, read by the server's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadEnd {
    /// Not yet: more bytes are needed.
    More,
    /// After this many bytes.
    At(usize),
    /// Never: the parser refused it, or it is too long.
    Never,
}

/// Where the head at the start of `buf` ends (see [`HeadEnd`]).
pub(crate) fn head_end(buf: &[u8]) -> HeadEnd {
    match parse_head(buf) {
        HeadParse::Complete(_, len) => HeadEnd::At(len),
        HeadParse::Partial if buf.len() <= MAX_HEAD => HeadEnd::More,
        _ => HeadEnd::Never,
    }
}

/// A complete frame header, or `None` if more bytes are needed (RFC 6455 §5.2).
fn parse_header(bytes: &[u8]) -> Option<Frame> {
    let (h, _) = Header::parse(bytes)?;
    Some(Frame {
        fin: h.fin,
        rsv: h.rsv,
        opcode: h.opcode,
        mask: h.mask,
        len: h.len,
        len_bits: h.length.bits(),
        preview: Vec::new(),
    })
}

fn describe_payload(opcode: u8, preview: &[u8], len: u64) -> String {
    let more = if len > preview.len() as u64 {
        "…"
    } else {
        ""
    };
    match std::str::from_utf8(preview) {
        // Text frames, and pings/pongs that happen to be text, read best as text.
        Ok(text) if opcode != 0x2 => format!("{text:?}{more}"),
        _ => {
            let hex: Vec<String> = preview
                .iter()
                .take(32)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if len > 32 { "…" } else { "" };
            format!("[{}{more}]", hex.join(" "))
        }
    }
}

fn describe_close(payload: &[u8]) -> String {
    match payload {
        [] => " (no code)".to_owned(),
        [a, b, reason @ ..] => {
            format!(
                " code={} reason={:?}",
                u16::from_be_bytes([*a, *b]),
                String::from_utf8_lossy(reason)
            )
        }
        _ => " (1-byte close payload: malformed)".to_owned(),
    }
}

/// Which side ended a TCP connection first: the one whose FIN came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The peer: a read returned the end of the stream before we shut ours.
    Peer,
    /// This side: we shut our direction down, or simply hung up.
    Us,
}

/// A stream that logs, decoded, everything read from and written to it.
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    label: String,
    inbound: Decoder,
    outbound: Decoder,
    /// Who closed first, once known.
    closer: Option<Closer>,
    /// Stopped: nothing more is logged, not even the end.
    muted: bool,
}

impl<S> Traced<S> {
    /// Wraps `inner`; every line is prefixed with `label` (e.g. the peer address).
    pub fn new(inner: S, label: impl Into<String>) -> Self {
        let (inbound, outbound) = (Decoder::new(Direction::In), Decoder::new(Direction::Out));
        Self::with(inner, label.into(), inbound, outbound)
    }

    /// Wraps `inner` whose HTTP handshake is already over: frames only.
    pub fn frames_only(inner: S, label: impl Into<String>) -> Self {
        let (inbound, outbound) = (
            Decoder::frames(Direction::In),
            Decoder::frames(Direction::Out),
        );
        Self::with(inner, label.into(), inbound, outbound)
    }

    fn with(inner: S, label: String, inbound: Decoder, outbound: Decoder) -> Self {
        log::info!(target: TARGET, "{label} TCP connection open");
        Self {
            inner,
            label,
            inbound,
            outbound,
            closer: None,
            muted: false,
        }
    }

    /// Prefixes every line from now on with `label` instead (once the head has named
    /// the client behind a proxy, for example).
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Logs nothing more about this connection: a wire viewer's own stream would
    /// only repeat, frame by frame, what it shows.
    pub fn mute(&mut self) {
        if !self.muted {
            log::info!(target: TARGET, "{} a wire viewer: not traced further", self.label);
        }
        self.muted = true;
        self.inbound.stop();
        self.outbound.stop();
    }

    /// We are shutting our direction down (TCP FIN).
    pub fn shutting_down(&mut self) {
        self.closer.get_or_insert(Closer::Us);
    }

    fn log(label: &str, lines: Vec<String>) {
        for line in lines {
            log::info!(target: TARGET, "{label} {line}");
        }
    }
}

/// The last line: who ended the TCP connection.
impl<S> Drop for Traced<S> {
    fn drop(&mut self) {
        if self.muted {
            return;
        }
        let who = match self.closer.unwrap_or(Closer::Us) {
            Closer::Peer => "by the peer (its FIN came first)",
            Closer::Us => "by us",
        };
        log::info!(target: TARGET, "{} TCP connection closed {who}", self.label);
    }
}

impl<S: Read> Read for Traced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.closer.get_or_insert(Closer::Peer);
        }
        if let Some(read) = buf.get(..n) {
            Self::log(&self.label, self.inbound.feed(read));
        }
        Ok(n)
    }
}

impl<S: Write> Write for Traced<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(written) = buf.get(..n) {
            Self::log(&self.label, self.outbound.feed(written));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, value: &str) -> String {
        header_line(name, value)
    }

    #[test]
    fn secrets_in_heads_are_redacted() {
        assert_eq!(
            line("Authorization", "Bearer s3cret"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(line("authorization", "s3cret"), "authorization: [redacted]");
        assert_eq!(
            line("Proxy-Authorization", "hunter2 more"),
            "Proxy-Authorization: [redacted]"
        );
        assert_eq!(line("cookie", "session=abc; x=y"), "cookie: [redacted]");
        assert_eq!(
            line("Set-Cookie", "sid=1; HttpOnly"),
            "Set-Cookie: [redacted]"
        );
        assert_eq!(line("Host", "example.com"), "Host: example.com");
        assert_eq!(
            line(
                "Sec-WebSocket-Protocol",
                "switchboard-wire,switchboard-wire.00ff"
            ),
            "Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.[redacted]"
        );
        assert_eq!(
            line("Sec-WebSocket-Protocol", "chat.v1"),
            "Sec-WebSocket-Protocol: chat.v1"
        );
        assert_eq!(
            line("Referer", "http://h/?token=t0k"),
            "Referer: http://h/?token=[redacted]"
        );
    }

    fn traced(head: &[u8]) -> Vec<String> {
        Decoder::new(Direction::In).feed(head)
    }

    #[test]
    fn a_bare_lf_head_is_split_where_the_parser_splits_it() {
        let lines = traced(
            b"GET /ws/echo HTTP/1.1\nHost: x\nX-A: 1\nAuthorization: Bearer pw\nCookie: s=1\n\n",
        );
        assert_eq!(
            lines,
            [
                "<- GET /ws/echo HTTP/1.1",
                "<- Host: x",
                "<- X-A: 1",
                "<- Authorization: Bearer [redacted]",
                "<- Cookie: [redacted]",
            ]
        );
        // Mixed line ends, fed a byte at a time.
        let head = b"GET / HTTP/1.1\r\nX-A: 1\nCookie: s=1\r\n\n";
        let mut d = Decoder::new(Direction::In);
        let lines: Vec<String> = head.chunks(1).flat_map(|b| d.feed(b)).collect();
        assert_eq!(
            lines,
            ["<- GET / HTTP/1.1", "<- X-A: 1", "<- Cookie: [redacted]"]
        );
    }

    #[test]
    fn peer_text_is_escaped() {
        let lines = traced(b"GET /a\xe2\x80\xae HTTP/1.1\r\nX-B: \xe2\x80\xaeevil\r\n\r\n");
        assert_eq!(
            lines,
            ["<- GET /a\\u{202e} HTTP/1.1", "<- X-B: \\u{202e}evil"]
        );
    }

    #[test]
    fn a_malformed_head_is_shown_up_to_where_the_parser_stopped() {
        let lines = traced(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Evil: a\x1bb\r\nCookie: s=1\r\n\r\n");
        assert_eq!(
            lines[..3],
            ["<- GET /x HTTP/1.1", "<- Host: x", "<- X-Evil: a\\u{1b}b"]
        );
        assert!(
            lines[3].contains("malformed") && lines[3].ends_with("trace stops)"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 4);
        // A bad byte in the request line, and a secret behind a bare CR.
        let lines = traced(b"GET /a\x1b?key=k HTTP/1.1\r\n\r\n");
        assert_eq!(lines[0], "<- GET /a\\u{1b}?key=[redacted] HTTP/1.1");
        let lines = traced(b"GET / HTTP/1.1\r\nX-A: 1\rAuthorization: Bearer pw\r\n\r\n");
        assert_eq!(lines[1], "<- X-A: 1", "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("pw")), "{lines:?}");
        let lines = traced(b"GET / HTTP/1.1\r\nAuthorization: Bearer pw\x01\r\n\r\n");
        assert_eq!(lines[1], "<- Authorization: Bearer [redacted]", "{lines:?}");
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let header = Header::new(opcode, payload.len() as u64).masked([1, 2, 3, 4]);
        frame::encode(&header, payload)
    }

    #[test]
    fn http_head_then_frames_fed_one_byte_at_a_time() {
        let mut d = Decoder::new(Direction::In);
        let mut bytes = b"GET /ws/echo HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec();
        bytes.extend(masked(0x1, b"Hello"));
        let lines: Vec<String> = bytes.chunks(1).flat_map(|b| d.feed(b)).collect();
        assert_eq!(lines[0], "<- GET /ws/echo HTTP/1.1");
        assert_eq!(lines[1], "<- Upgrade: websocket");
        assert_eq!(
            lines[2],
            r#"<- frame FIN=1 RSV=000 TEXT(0x1) MASK=1 key=01020304 len=5 (7-bit) "Hello""#
        );
    }

    #[test]
    fn the_three_length_encodings_are_named() {
        let mut d = Decoder::frames(Direction::In);
        let mut bytes = masked(0x2, &[7; 125]);
        bytes.extend(masked(0x2, &[7; 126]));
        bytes.extend(masked(0x2, &[7; 65536]));
        let lines = d.feed(&bytes);
        assert!(lines[0].contains("len=125 (7-bit)"), "{}", lines[0]);
        assert!(lines[1].contains("len=126 (16-bit)"), "{}", lines[1]);
        assert!(lines[2].contains("len=65536 (64-bit)"), "{}", lines[2]);
        assert!(lines[2].contains("[07 07"), "binary as hex: {}", lines[2]);
    }

    #[test]
    fn close_shows_code_and_reason_and_server_frames_are_unmasked() {
        let mut d = Decoder::frames(Direction::Out);
        let lines = d.feed(&[0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e']);
        assert_eq!(
            lines,
            [r#"-> frame FIN=1 RSV=000 CLOSE(0x8) MASK=0 len=5 (7-bit) code=1000 reason="bye""#]
        );
    }

    #[test]
    fn a_refused_request_stops_the_frame_decoding() {
        let mut d = Decoder::new(Direction::Out);
        let lines = d.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n\x81\x01x");
        assert_eq!(lines, ["-> HTTP/1.1 404 Not Found", "-> Content-Length: 3"]);
    }
}
