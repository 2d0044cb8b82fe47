//! The wire trace: what really crossed a connection, decoded from the bytes
//! themselves.
//!
//! [`Traced`] wraps any stream and watches the bytes going each way: first the HTTP
//! head (logged line by line, exactly as sent), then, after a `101`, every WebSocket
//! frame (RFC 6455 §5.2): FIN, RSV bits, opcode, MASK and masking key, payload length
//! and which of the three length encodings carried it, the start of the payload, and
//! for a Close the code and reason. It decodes independently of tungstenite, so the
//! trace shows the wire, not what a library made of it.
//!
//! Lines go to the `log` target `switchboard::trace` at `info`, so
//! `RUST_LOG=switchboard::trace=info` picks them out. The server wraps every
//! connection when `Config::trace` is set; `switchboard connect --trace` wraps its own.

use std::fmt::Write as _;
use std::io::{self, Read, Write};

/// The `log` target of every trace line.
pub const TARGET: &str = "switchboard::trace";

/// Longest HTTP head the trace holds on to; past it the trace of that direction stops.
const MAX_HEAD: usize = 16 * 1024;
/// Payload bytes shown for a data frame (a control frame is shown whole: ≤ 125).
const PREVIEW: usize = 96;

/// Which way bytes went, seen from the side that does the tracing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
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

/// A frame header, once complete.
#[derive(Debug, Clone)]
struct Head {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    encoding: &'static str,
}

/// Decodes one direction of a connection, incrementally: feed it bytes in whatever
/// pieces they came, get back finished trace lines.
#[derive(Debug)]
pub struct Decoder {
    direction: Direction,
    phase: Phase,
    /// Header bytes of the frame in progress (at most 14).
    header: Vec<u8>,
    head: Option<Head>,
    /// Payload bytes of the frame in progress still to come.
    left: u64,
    /// Payload bytes seen so far of the frame in progress.
    seen: u64,
    /// The first payload bytes, unmasked.
    preview: Vec<u8>,
}

impl Decoder {
    /// A decoder that starts with an HTTP head, like every WebSocket connection.
    pub fn new(direction: Direction) -> Self {
        Self {
            direction,
            phase: Phase::Http(Vec::new()),
            header: Vec::with_capacity(14),
            head: None,
            left: 0,
            seen: 0,
            preview: Vec::new(),
        }
    }

    /// A decoder that starts with frames (the HTTP head was traced elsewhere).
    pub fn frames(direction: Direction) -> Self {
        Self {
            phase: Phase::Frames,
            ..Self::new(direction)
        }
    }

    /// Takes the next bytes and returns the lines they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Off => break,
                Phase::Http(head) => {
                    let before = head.len();
                    head.extend_from_slice(bytes);
                    let Some(end) = find(head, b"\r\n\r\n") else {
                        if head.len() > MAX_HEAD {
                            lines.push(format!(
                                "{} (HTTP head over {MAX_HEAD} bytes; trace stops)",
                                self.direction.arrow()
                            ));
                            self.phase = Phase::Off;
                        }
                        break;
                    };
                    let taken = end + 4 - before;
                    let head = std::mem::take(head);
                    let text = String::from_utf8_lossy(&head[..end]);
                    for line in text.split("\r\n") {
                        let line = redact(line);
                        lines.push(format!("{} {line}", self.direction.arrow()));
                    }
                    self.phase = if upgrades(&text) {
                        Phase::Frames
                    } else {
                        Phase::Off
                    };
                    bytes = &bytes[taken..];
                }
                Phase::Frames => {
                    let used = self.frame_bytes(bytes, &mut lines);
                    bytes = &bytes[used..];
                }
            }
        }
        lines
    }

    /// Consumes frame bytes; returns how many it used.
    fn frame_bytes(&mut self, bytes: &[u8], lines: &mut Vec<String>) -> usize {
        let Some(head) = &self.head else {
            // Still reading the header: take one byte at a time up to what it needs.
            self.header.push(bytes[0]);
            if let Some(head) = parse_header(&self.header) {
                self.header.clear();
                self.left = head.len;
                self.seen = 0;
                self.preview.clear();
                let empty = head.len == 0;
                self.head = Some(head);
                if empty {
                    self.finish(lines);
                }
            }
            return 1;
        };
        let take = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let limit = if head.opcode >= 8 { 125 } else { PREVIEW };
        for (i, &b) in bytes[..take].iter().enumerate() {
            let at = self.seen + i as u64;
            if (at as usize) < limit {
                let key = head.mask.map_or(0, |k| k[(at % 4) as usize]);
                self.preview.push(b ^ key);
            }
        }
        self.seen += take as u64;
        self.left -= take as u64;
        if self.left == 0 {
            self.finish(lines);
        }
        take
    }

    fn finish(&mut self, lines: &mut Vec<String>) {
        let Some(head) = self.head.take() else { return };
        let mut line = format!(
            "{} frame FIN={} RSV={}{}{} {}",
            self.direction.arrow(),
            u8::from(head.fin),
            (head.rsv >> 2) & 1,
            (head.rsv >> 1) & 1,
            head.rsv & 1,
            opcode_name(head.opcode),
        );
        match head.mask {
            Some(k) => {
                let _ = write!(
                    line,
                    " MASK=1 key={:02x}{:02x}{:02x}{:02x}",
                    k[0], k[1], k[2], k[3]
                );
            }
            None => line.push_str(" MASK=0"),
        }
        let _ = write!(line, " len={} ({})", head.len, head.encoding);
        if head.opcode == 8 {
            line.push_str(&describe_close(&self.preview));
        } else if head.len > 0 {
            line.push(' ');
            line.push_str(&describe_payload(head.opcode, &self.preview, head.len));
        }
        lines.push(line);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether an HTTP head leads to WebSocket frames: a request asking for an upgrade,
/// or a `101` answer.
fn upgrades(head: &str) -> bool {
    let first = head.lines().next().unwrap_or("");
    if first.starts_with("HTTP/") {
        return first.split_whitespace().nth(1) == Some("101");
    }
    head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    })
}

/// A complete frame header, or `None` if more bytes are needed (RFC 6455 §5.2).
fn parse_header(h: &[u8]) -> Option<Head> {
    let (&b0, &b1) = (h.first()?, h.get(1)?);
    let len7 = b1 & 0x7f;
    let (len, encoding, ext) = match len7 {
        126 => (
            u64::from(u16::from_be_bytes(h.get(2..4)?.try_into().ok()?)),
            "16-bit",
            2,
        ),
        127 => (
            u64::from_be_bytes(h.get(2..10)?.try_into().ok()?),
            "64-bit",
            8,
        ),
        n => (u64::from(n), "7-bit", 0),
    };
    let masked = b1 & 0x80 != 0;
    let mask = if masked {
        let at = 2 + ext;
        Some(h.get(at..at + 4)?.try_into().ok()?)
    } else {
        None
    };
    Some(Head {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: b0 & 0x0f,
        mask,
        len,
        encoding,
    })
}

fn opcode_name(op: u8) -> String {
    let name = match op {
        0x0 => "CONTINUATION",
        0x1 => "TEXT",
        0x2 => "BINARY",
        0x8 => "CLOSE",
        0x9 => "PING",
        0xA => "PONG",
        _ => "RESERVED",
    };
    format!("{name}(0x{op:x})")
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

/// A stream that logs, decoded, everything read from and written to it.
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    label: String,
    inbound: Decoder,
    outbound: Decoder,
}

impl<S> Traced<S> {
    /// Wraps `inner`; every line is prefixed with `label` (e.g. the peer address).
    pub fn new(inner: S, label: impl Into<String>) -> Self {
        Self {
            inner,
            label: label.into(),
            inbound: Decoder::new(Direction::In),
            outbound: Decoder::new(Direction::Out),
        }
    }

    /// Wraps `inner` whose HTTP handshake is already over: frames only.
    pub fn frames_only(inner: S, label: impl Into<String>) -> Self {
        Self {
            inner,
            label: label.into(),
            inbound: Decoder::frames(Direction::In),
            outbound: Decoder::frames(Direction::Out),
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

    fn log(label: &str, lines: Vec<String>) {
        for line in lines {
            log::info!(target: TARGET, "{label} {line}");
        }
    }
}

impl<S: Read> Read for Traced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
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

/// Header lines whose values are secrets: what they carry never reaches a log.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// The head line with a secret header's value replaced: `Authorization: [redacted]`.
/// The scheme of an `Authorization` (`Bearer`, `Basic`) stays, since it says how the
/// client authenticated without saying with what.
fn redact(line: &str) -> std::borrow::Cow<'_, str> {
    let Some((name, value)) = line.split_once(':') else {
        return line.into();
    };
    if !SECRET_HEADERS
        .iter()
        .any(|h| name.trim().eq_ignore_ascii_case(h))
    {
        return line.into();
    }
    let value = value.trim();
    let scheme = value
        .split_once(' ')
        .filter(|_| name.trim().to_ascii_lowercase().ends_with("authorization"))
        .map(|(scheme, _)| format!("{scheme} "))
        .unwrap_or_default();
    format!("{name}: {scheme}[redacted]").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_heads_are_redacted() {
        assert_eq!(
            redact("Authorization: Bearer s3cret"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(redact("cookie: session=abc; x=y"), "cookie: [redacted]");
        assert_eq!(
            redact("Set-Cookie: sid=1; HttpOnly"),
            "Set-Cookie: [redacted]"
        );
        assert_eq!(redact("Host: example.com"), "Host: example.com");
        assert_eq!(redact("GET /ws/chat HTTP/1.1"), "GET /ws/chat HTTP/1.1");
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
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
