//! The raw socket driver: a WebSocket client that sends exactly the bytes a case
//! gives it and records exactly what comes back, frame by frame, with the library's
//! [`frame`](switchboard::frame) code. No WebSocket library sits in between, since a
//! library would refuse to send most of what the cases send.
//!
//! One thread owns each connection and never blocks longer than the case allows:
//! every read has a deadline, every write a timeout.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::frame::{self, Decoder, Frame, Header, Role};
use tungstenite::http::Uri;

/// The largest frame or message the driver takes from a server: the biggest case
/// sends 16 MiB, and an echo is no larger.
pub(crate) const MAX_MESSAGE: u64 = 16 << 20;

/// Where the server under test is.
#[derive(Clone)]
pub(crate) struct Target {
    /// The URL as given.
    pub url: String,
    host: String,
    port: u16,
    /// The request target: path and query.
    pub path: String,
    /// `Host` header value.
    pub host_header: String,
    tls: Option<Arc<native_tls::TlsConnector>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Target {
    /// Reads a `ws://` or `wss://` URL; `ca` and `insecure` set up TLS for `wss://`.
    pub fn parse(url: &str, ca: Option<&Path>, insecure: bool) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(format!("{url}: the URL must start with ws:// or wss://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        let host_header = match uri.port_u16() {
            Some(port) => format!("{}:{port}", uri.host().unwrap_or_default()),
            None => uri.host().unwrap_or_default().to_owned(),
        };
        let tls = if tls {
            let mut builder = native_tls::TlsConnector::builder();
            if let Some(ca) = ca {
                let pem =
                    std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
                let cert = native_tls::Certificate::from_pem(&pem)
                    .map_err(|e| format!("{} is not a PEM certificate: {e}", ca.display()))?;
                builder.add_root_certificate(cert);
            }
            if insecure {
                builder.danger_accept_invalid_certs(true);
                builder.danger_accept_invalid_hostnames(true);
            }
            let connector = builder
                .build()
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
            Some(Arc::new(connector))
        } else {
            None
        };
        Ok(Target {
            url: url.to_owned(),
            host,
            port,
            path,
            host_header,
            tls,
        })
    }

    /// A TCP connection (and TLS session for `wss://`), with `timeout` on connecting
    /// and on every write.
    pub fn dial(&self, timeout: Duration) -> Result<Stream, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        let mut failures = Vec::new();
        let tcp = addrs
            .iter()
            .find_map(|addr| match TcpStream::connect_timeout(addr, timeout) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    failures.push(format!("{addr}: {e}"));
                    None
                }
            })
            .ok_or_else(|| match failures.is_empty() {
                true => format!("{} resolves to no address", self.host),
                false => format!("cannot connect to {}", failures.join("; ")),
            })?;
        let _ = tcp.set_nodelay(true);
        tcp.set_write_timeout(Some(timeout))
            .and_then(|()| tcp.set_read_timeout(Some(timeout)))
            .map_err(|e| format!("cannot set timeouts: {e}"))?;
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some(connector) => connector
                .connect(&self.host, tcp)
                .map(|tls| Stream::Tls(Box::new(tls)))
                .map_err(|e| format!("TLS handshake with {} failed: {e}", self.host)),
        }
    }

    /// The opening handshake a well-behaved client sends, with `key`, plus `extra`
    /// header lines (each ending in CRLF).
    pub fn request(&self, key: &str, extra: &str) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            self.path, self.host_header
        )
    }

    /// Dials and opens a WebSocket with a well-formed handshake: a connection ready
    /// for frames, or what went wrong, said for a student.
    pub fn open(&self, timeout: Duration) -> Result<Conn, String> {
        let key = new_key();
        let mut stream = self.dial(timeout)?;
        let (response, rest) = exchange_head(
            &mut stream,
            self.request(&key, "").as_bytes(),
            None,
            timeout,
        )?;
        if let Some(wrong) = response.upgrade_problem(&key) {
            return Err(wrong);
        }
        Ok(Conn::new(stream, rest, timeout))
    }
}

/// A plain or TLS stream.
pub(crate) enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// Sets the read timeout of the socket underneath.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let _ = self
            .tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
pub(crate) fn new_key() -> String {
    let mut nonce = [0u8; 16];
    // Any 16 bytes do for a check; a failed RNG leaves a fixed nonce, still valid.
    let _ = getrandom::fill(&mut nonce);
    data_encoding::BASE64.encode(&nonce)
}

/// An HTTP response head.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` holds `token` in its comma-separated list (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// What is wrong with this answer to an upgrade request sent with `key`, in one
    /// line naming the rule (RFC 6455 §4.2.2), or `None` if it is a proper `101`.
    pub fn upgrade_problem(&self, key: &str) -> Option<String> {
        if self.status != 101 {
            return Some(format!(
                "the server answered {} instead of 101 Switching Protocols (RFC 6455 §4.2.2)",
                self.status
            ));
        }
        if !self.has_token("Upgrade", "websocket") {
            return Some(
                "the 101 has no `Upgrade: websocket` header (RFC 6455 §4.2.2, item 5.2)".to_owned(),
            );
        }
        if !self.has_token("Connection", "upgrade") {
            return Some(
                "the 101 has no `Connection: Upgrade` header (RFC 6455 §4.2.2, item 5.3)"
                    .to_owned(),
            );
        }
        let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
        match self.header("Sec-WebSocket-Accept") {
            Some(accept) if accept.trim() == expected => None,
            Some(accept) => Some(format!(
                "Sec-WebSocket-Accept is {accept:?}, expected {expected:?}: base64 of the \
                 SHA-1 of the key followed by 258EAFA5-E914-47DA-95CA-C5AB0DC85B11 \
                 (RFC 6455 §4.2.2, item 5.4)"
            )),
            None => Some(
                "the 101 has no Sec-WebSocket-Accept header (RFC 6455 §4.2.2, item 5.4)".to_owned(),
            ),
        }
    }
}

/// Writes `request` (all at once, or `chop` bytes per write) and reads the response
/// head; returns it with any bytes read after it.
pub(crate) fn exchange_head(
    stream: &mut Stream,
    request: &[u8],
    chop: Option<usize>,
    timeout: Duration,
) -> Result<(Response, Vec<u8>), String> {
    for piece in request.chunks(chop.unwrap_or(request.len()).max(1)) {
        stream
            .write_all(piece)
            .and_then(|()| stream.flush())
            .map_err(|e| format!("sending the opening handshake failed: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let response = Response {
                    status: res.code.unwrap_or(0),
                    headers: res
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                return Ok((response, buf.get(len..).unwrap_or_default().to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
            Ok(httparse::Status::Partial) => {
                return Err("the response head is over 64 KiB".to_owned());
            }
            Err(e) => {
                return Err(format!(
                    "the response is not HTTP/1.1 ({e}): {:?}",
                    String::from_utf8_lossy(buf.get(..80.min(buf.len())).unwrap_or_default())
                ));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete response to the opening handshake within {:.1} s",
                timeout.as_secs_f64()
            ));
        }
        stream.set_read_timeout(left);
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(match buf.is_empty() {
                    true => "the server closed the connection without answering the \
                             opening handshake"
                        .to_owned(),
                    false => "the server closed the connection in the middle of its \
                              response head"
                        .to_owned(),
                });
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("reading the response failed: {e}")),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// What the server sent, as a case compares it (Autobahn's events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole message.
    Message {
        /// Binary (opcode 0x2) or text (0x1).
        binary: bool,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// A Pong and its payload.
    Pong(Vec<u8>),
    /// The connection was still open when a pause of the script ended.
    Timeout(&'static str),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Message { binary, payload } => {
                let kind = if *binary { "binary" } else { "text" };
                write!(f, "a {kind} message of {} bytes", payload.len())?;
                if payload.len() <= 24 {
                    write!(f, " {}", show(payload, !*binary))?;
                }
                Ok(())
            }
            Event::Pong(p) => write!(f, "a Pong {}", show(p, true)),
            Event::Timeout(label) => write!(f, "still open after pause {label}"),
        }
    }
}

/// A short payload, shown as text when it is UTF-8 and `text`, else in hex.
pub(crate) fn show(payload: &[u8], text: bool) -> String {
    match std::str::from_utf8(payload) {
        Ok(s) if text => format!("{:?}", s.chars().take(40).collect::<String>()),
        _ => {
            let hex: Vec<String> = payload
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if payload.len() > 16 { " …" } else { "" };
            format!("[{}{more}]", hex.join(" "))
        }
    }
}

/// How the TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The server closed it (its FIN).
    ByServer,
    /// The server reset it.
    Reset,
    /// We dropped it, after waiting.
    ByUs,
}

/// A connection to the server under test, after the handshake.
pub(crate) struct Conn {
    stream: Stream,
    decoder: Decoder,
    timeout: Duration,
    /// What arrived, in order.
    pub events: Vec<Event>,
    /// A fragmented message in progress: its opcode and payload so far.
    partial: Option<(u8, Vec<u8>)>,
    /// The server's Close: its code (`None`: empty payload) and reason.
    pub server_close: Option<(Option<u16>, Vec<u8>)>,
    /// We sent a Close.
    pub sent_close: bool,
    /// We sent our Close before the server's arrived: we started the closing handshake.
    pub closed_by_us: bool,
    /// How the TCP connection ended, once it has.
    pub end: Option<End>,
    /// A rule the server broke in what it sent, said for a student.
    pub violation: Option<String>,
    /// A write failed (the server had closed or reset the connection).
    pub write_failed: bool,
    mask: u32,
    /// The read buffer, kept between reads.
    buf: Vec<u8>,
    /// The role we play: `Client` when grading a server.
    role: Role,
}

impl Conn {
    fn new(stream: Stream, rest: Vec<u8>, timeout: Duration) -> Conn {
        let mut decoder = Decoder::new(MAX_MESSAGE);
        decoder.feed(&rest);
        Conn {
            stream,
            decoder,
            timeout,
            events: Vec::new(),
            partial: None,
            server_close: None,
            sent_close: false,
            closed_by_us: false,
            end: None,
            violation: None,
            write_failed: false,
            mask: 0x37fa_213d,
            buf: Vec::new(),
            role: Role::Client,
        }
    }

    /// A connection over a stream whose handshake is already done, with `rest` the
    /// bytes read after the head.
    pub fn after_handshake(stream: Stream, rest: Vec<u8>, timeout: Duration) -> Conn {
        Conn::new(stream, rest, timeout)
    }

    /// The server's end of a connection a client opened (`--serve`), after the 101.
    pub fn server(stream: TcpStream, rest: Vec<u8>, timeout: Duration) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(timeout));
        Conn {
            role: Role::Server,
            ..Conn::new(Stream::Plain(stream), rest, timeout)
        }
    }

    /// The role we play.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's role.
    fn peer(&self) -> Role {
        match self.role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    /// Writes `bytes` in one write; a failure is remembered, not returned: a server
    /// may rightly close while a case still sends.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.write_failed || self.end.is_some() {
            return;
        }
        if self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .is_err()
        {
            self.write_failed = true;
        }
    }

    /// Writes `bytes` `chop` bytes per write (TCP_NODELAY is on: one segment each).
    /// A server that fails the connection midway makes a write fail, which ends it.
    pub fn send_chopped(&mut self, bytes: &[u8], chop: usize) {
        for piece in bytes.chunks(chop.max(1)) {
            self.send(piece);
        }
    }

    /// A frame of ours: masked with the next key when we are the client.
    pub fn frame(&mut self, header: Header, payload: &[u8]) -> Vec<u8> {
        if self.role == Role::Server {
            return frame::encode(&header, payload);
        }
        // xorshift: every frame gets its own key, as RFC 6455 §5.3 asks.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        frame::encode(&header.masked(self.mask.to_be_bytes()), payload)
    }

    /// Sends a Close with `code` (none: an empty payload) and `reason`.
    pub fn close(&mut self, code: Option<u16>, reason: &[u8]) {
        if self.sent_close {
            return;
        }
        let mut payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        payload.extend_from_slice(reason);
        self.close_with(payload);
    }

    /// Sends a Close with exactly `payload`, valid or not.
    pub fn close_with(&mut self, payload: Vec<u8>) {
        self.close_after(&[], payload);
    }

    /// Sends `before` and a Close with `payload` in one write.
    pub fn close_after(&mut self, before: &[u8], payload: Vec<u8>) {
        if self.sent_close {
            return;
        }
        let mut bytes = before.to_vec();
        bytes.extend(self.frame(Header::new(frame::CLOSE, payload.len() as u64), &payload));
        self.send(&bytes);
        self.sent_close = true;
        if self.server_close.is_none() {
            self.closed_by_us = true;
        }
    }

    /// Reads and handles what the server sends until `done` says so, the deadline
    /// passes, or the TCP connection ends. Returns whether `done` was reached.
    pub fn pump(&mut self, deadline: Instant, mut done: impl FnMut(&Conn) -> bool) -> bool {
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.resize(256 * 1024, 0);
        let reached = self.pump_with(deadline, &mut done, &mut chunk);
        self.buf = chunk;
        reached
    }

    fn pump_with(
        &mut self,
        deadline: Instant,
        done: &mut impl FnMut(&Conn) -> bool,
        chunk: &mut [u8],
    ) -> bool {
        loop {
            self.take_frames();
            if done(self) {
                return true;
            }
            if self.end.is_some() || self.violation.is_some() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A deadline already passed still looks once at what has arrived.
            self.stream
                .set_read_timeout(left.max(Duration::from_millis(1)));
            match self.stream.read(chunk) {
                Ok(0) => self.end = Some(End::ByServer),
                Ok(n) => self.decoder.feed(chunk.get(..n).unwrap_or_default()),
                Err(e) if is_timeout(&e) => {
                    if left.is_zero() {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.end = Some(End::Reset),
            }
        }
    }

    /// Waits for the end of the closing handshake: the server's Close (answered), then
    /// the end of TCP, which the server should bring (RFC 6455 §7.1.1). Drops the
    /// connection ourselves when it does not come in time.
    pub fn finish(&mut self) {
        if self.role == Role::Server {
            // The server closes TCP first (§7.1.1), once the Close frames crossed or
            // the peer failed the connection; then reads what is left so that our
            // FIN is not turned into a reset.
            let deadline = Instant::now() + self.timeout;
            self.pump(deadline, |c| {
                c.end.is_some() || (c.sent_close && c.server_close.is_some())
            });
            let _ = self.stream.tcp().shutdown(std::net::Shutdown::Write);
            self.pump(Instant::now() + Duration::from_secs(1), |c| c.end.is_some());
            self.end.get_or_insert(End::ByUs);
            return;
        }
        let deadline = Instant::now() + self.timeout;
        self.pump(deadline, |c| c.end.is_some());
        if self.end.is_none() {
            self.end = Some(End::ByUs);
        }
    }

    /// Handles every whole frame the decoder holds.
    fn take_frames(&mut self) {
        while self.violation.is_none() {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    self.violation = Some(format!("the server sent {e}"));
                    return;
                }
            };
            self.on_frame(frame);
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        let h = frame.header;
        if let Some(broken) = h.violation(self.peer()) {
            self.violation = Some(format!("the server sent {broken}"));
            return;
        }
        if self.server_close.is_some() {
            self.violation = Some(
                "the server sent a frame after its Close (RFC 6455 §5.5.1: a Close is \
                 the last frame an endpoint sends)"
                    .to_owned(),
            );
            return;
        }
        match h.opcode {
            frame::CLOSE => self.on_close(&frame),
            frame::PING => {
                if !self.sent_close {
                    let pong = self.frame(
                        Header::new(frame::PONG, frame.payload.len() as u64),
                        &frame.payload,
                    );
                    self.send(&pong);
                }
            }
            frame::PONG => self.events.push(Event::Pong(frame.payload)),
            frame::CONTINUATION => match &mut self.partial {
                None => {
                    self.violation = Some(format!("the server sent {}", frame::Violation::Orphan))
                }
                Some((_, so_far)) => {
                    if so_far.len() as u64 + frame.payload.len() as u64 > MAX_MESSAGE {
                        self.violation = Some("the server sent a message over 16 MiB".to_owned());
                        return;
                    }
                    so_far.extend_from_slice(&frame.payload);
                    if let Some((opcode, payload)) = self.partial.take_if(|_| h.fin) {
                        self.message(opcode, payload);
                    }
                }
            },
            opcode => {
                if self.partial.is_some() {
                    self.violation =
                        Some(format!("the server sent {}", frame::Violation::Interleaved));
                } else if h.fin {
                    self.message(opcode, frame.payload);
                } else {
                    self.partial = Some((opcode, frame.payload));
                }
            }
        }
    }

    /// A whole message. Invalid UTF-8 in a text one is recorded as it came: an echo
    /// server sends it only when it echoed text it should have refused, and the
    /// case then says so.
    fn message(&mut self, opcode: u8, payload: Vec<u8>) {
        let binary = opcode == frame::BINARY;
        self.events.push(Event::Message { binary, payload });
    }

    fn on_close(&mut self, frame: &Frame) {
        let (code, reason) = match frame.close() {
            None => (None, Vec::new()),
            Some(Ok((code, reason))) => (Some(code), reason.to_vec()),
            Some(Err(_)) => {
                self.violation = Some(
                    "the server sent a Close with a one-byte payload (RFC 6455 §5.5.1: \
                     a code is two bytes)"
                        .to_owned(),
                );
                return;
            }
        };
        if std::str::from_utf8(&reason).is_err() {
            self.violation =
                Some("the server's close reason is not UTF-8 (RFC 6455 §5.5.1)".to_owned());
        }
        self.server_close = Some((code, reason));
        // RFC 6455 §5.5.1: answer a Close with a Close, echoing its code.
        if !self.sent_close {
            let echo = code.filter(|&c| valid_close_code(c));
            self.close(echo, b"");
        }
    }

    /// The server's close code, if its Close had one.
    pub fn close_code(&self) -> Option<u16> {
        self.server_close.as_ref().and_then(|(code, _)| *code)
    }
}

/// Whether a Close may carry `code` on the wire (RFC 6455 §7.4.1, §7.4.2, and the
/// IANA registry since: 1012 to 1014).
pub(crate) fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
