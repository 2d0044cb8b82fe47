//! `switchboard connect URL`: an interactive WebSocket client, built like the server.
//!
//! One thread — the main one — owns the socket and its `WebSocket`, and sleeps in
//! `poll(2)` on two descriptors: the socket, and one end of a Unix socket pair whose
//! other end the stdin thread writes after each line it puts in the channel (the same
//! idea as the server's outbox wake-up, without borrowing the library's). So the owner
//! wakes exactly when the server sent something, a line was typed, or a write that
//! blocked can go on: no read timeout to tune, no busy loop, no lock around the socket.
//!
//! The end of stdin (Ctrl-D, or the end of a pipe) shows up as the channel
//! disconnecting, and means "close": we send Close 1000 and wait a bounded time for
//! the server's reply (RFC 6455 §7.1.2). The same code serves a person at a terminal
//! and a script with a pipe: no prompts, one received message per line on stdout,
//! everything else on stderr, and an exit code that says how the connection ended.

use clap::Args;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::borrow::Cow;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard::trace::{self, Traced};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::header::{ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use tungstenite::http::{HeaderName, HeaderValue, Uri};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, Message, WebSocket};

/// How long a TCP connect to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS and WebSocket handshakes may take together: a server that accepts
/// and then says nothing must not hang a script.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait, once a Close was sent or received, for the rest of the closing
/// handshake (the peer's Close, then the end of the TCP stream).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines read ahead of the socket. When the server does not keep up, the stdin thread
/// blocks on the full channel, and the writer of a pipe blocks behind it.
const LINE_QUEUE: usize = 64;
/// RFC 6455 §5.5: a control frame's payload is at most 125 bytes; a Close spends 2 of
/// them on the code.
const MAX_CONTROL_PAYLOAD: usize = 125;

const COMMANDS: &str = "\
commands: TEXT sends a text message; //TEXT sends /TEXT; /binary HEX; /ping [TEXT]; \
/frag N TEXT sends TEXT as one message in N frames (a TEXT frame, then CONTINUATION \
frames, FIN on the last) with a ping between each two, as RFC 6455 §5.4 allows; \
/file PATH shares a file in the chat (a file announcement, then its bytes in binary \
messages); /close [CODE [REASON]]; end of input (Ctrl-D) closes with 1000";

/// The flags of `switchboard connect`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input (stdin), one line each:
  TEXT                    sent as a text message
  //TEXT                  sent as the text /TEXT
  /binary HEX             a binary message (spaces between bytes are fine)
  /ping [TEXT]            a Ping; the server's Pong is printed
  /frag N TEXT            TEXT as one message in N frames (N from 1 to 64), with a
                          Ping between each two: fragmentation, to watch
  /file PATH              shares a file in the chat: {\"type\":\"file\",…}, then its
                          bytes as binary messages of 1 MiB
  /close [CODE [REASON]]  a Close with CODE (default 1000) and REASON
  /help                   these commands, on stderr
  end of input            Close 1000, then wait up to 5 s for the reply
Ctrl-C closes like the end of input; a second Ctrl-C quits at once.

Output (stdout), one line per message received, with a UTC timestamp:
  12:34:56.789 < TEXT     (control characters shown escaped, as \\n or \\u{1b})
  12:34:56.789 < [binary 3 bytes] 00 ff 10
  12:34:56.789 < ping \"TEXT\"   and   < pong \"TEXT\"
Everything else goes to stderr: \"connected to …\", errors, and at the end
\"closed: code=1000 reason=\\\"…\\\"\" (code=1005: the Close carried no code),
\"closed: without a close frame\" or \"closed: no close frame in reply within 5 s\".

Exit status:
  0  the closing handshake completed with code 1000 or 1001
  1  could not connect: TCP, TLS, or the WebSocket handshake failed
  2  bad command line
  3  connected, but ended otherwise: another close code, no close frame,
     no reply to our Close in time, or a protocol error")]
pub(crate) struct ConnectArgs {
    /// The WebSocket URL: ws://HOST[:PORT]/PATH or wss://… (ports default to 80 and 443).
    #[arg(value_name = "URL", value_parser = parse_url)]
    url: Uri,
    /// An extra request header; repeat it for more. Replaces a generated header of the
    /// same name (e.g. Host).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<Header>,
    /// A subprotocol to offer in Sec-WebSocket-Protocol; repeat it or give a comma list.
    #[arg(long = "protocol", value_name = "NAME", value_delimiter = ',')]
    protocols: Vec<String>,
    /// The Origin header, as a browser on that page would send it.
    #[arg(long, value_name = "ORIGIN", value_parser = parse_header_value)]
    origin: Option<HeaderValue>,
    /// For wss://: also trust this PEM CA certificate (besides the system's).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// For wss://: accept any certificate for any name. For testing only.
    #[arg(long)]
    insecure: bool,
    /// Log the handshake and every frame, decoded from the wire, to stderr (log target
    /// switchboard::trace, level info).
    #[arg(long)]
    trace: bool,
    /// Like --trace, with the trace lines printed plainly (time, then the line).
    #[arg(long)]
    trace_plain: bool,
}

impl ConnectArgs {
    /// Whether trace lines are printed without the log prefix (`--trace-plain`).
    pub(crate) fn trace_plain(&self) -> bool {
        self.trace_plain
    }
}

/// One `--header`.
#[derive(Debug, Clone)]
pub(crate) struct Header(HeaderName, HeaderValue);

fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
        return Err("the URL must start with ws:// or wss://".to_owned());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    Ok(uri)
}

fn parse_header(s: &str) -> Result<Header, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or("a header looks like `Name: value`")?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    Ok(Header(name, parse_header_value(value.trim())?))
}

fn parse_header_value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("{s:?} cannot be a header value"))
}

/// Runs the client and turns how it ended into the exit code.
pub(crate) fn run(args: ConnectArgs) -> ExitCode {
    match connect(&args) {
        Ok(end) => {
            eprintln!("{end}");
            end.exit_code()
        }
        Err(e) => {
            eprintln!("switchboard connect: {}", crate::error_chain(&*e));
            ExitCode::from(1)
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Connects, handshakes, and runs the session. `Err` is a failure to connect (exit 1);
/// everything after the `101` is an [`End`].
fn connect(args: &ConnectArgs) -> Result<End, BoxError> {
    let secure = args.url.scheme_str() == Some("wss");
    if !secure && (args.ca.is_some() || args.insecure) {
        eprintln!("switchboard connect: --ca and --insecure only matter for wss://");
    }
    if (args.trace || args.trace_plain)
        && !log::log_enabled!(target: trace::TARGET, log::Level::Info)
    {
        eprintln!(
            "switchboard connect: RUST_LOG hides the --trace lines; add {}=info to it",
            trace::TARGET
        );
    }
    let request = request(args)?;
    // `host()` keeps the brackets of an IPv6 literal; sockets and SNI want it bare.
    let host = args
        .url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = args.url.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = dial(host, port)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    if secure {
        let connector = tls_connector(args)?;
        let tls = connector.connect(host, tcp).map_err(|e| {
            let hint = if e.to_string().contains("certificate") {
                " (--ca PEM trusts another CA; --insecure skips the check)"
            } else {
                ""
            };
            format!("TLS handshake with {host}:{port} failed: {e}{hint}")
        })?;
        handshake(tls, request, args)
    } else {
        handshake(tcp, request, args)
    }
}

/// The upgrade request: tungstenite's for the URL, plus our flags.
fn request(args: &ConnectArgs) -> Result<tungstenite::handshake::client::Request, BoxError> {
    let mut request = args.url.clone().into_client_request()?;
    let headers = request.headers_mut();
    let mut named: Vec<&HeaderName> = Vec::new();
    for Header(name, value) in &args.headers {
        // The first of a name replaces what tungstenite generated; more of it add up.
        if named.contains(&name) {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
            named.push(name);
        }
    }
    if let Some(origin) = &args.origin {
        headers.insert(ORIGIN, origin.clone());
    }
    let protocols: Vec<&str> = args
        .protocols
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect();
    if !protocols.is_empty() {
        let value = protocols.join(", ");
        headers.insert(SEC_WEBSOCKET_PROTOCOL, parse_header_value(&value)?);
    }
    Ok(request)
}

/// Tries every address `host` resolves to, in order (`localhost` is often `::1`
/// first, while a server may listen on 127.0.0.1 only).
fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut failures = Vec::new();
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    if failures.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    Err(format!("cannot connect to {}", failures.join("; ")))
}

fn tls_connector(args: &ConnectArgs) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(ca) = &args.ca {
        let pem = fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("{} is not a PEM certificate: {e}", ca.display()))?;
        builder.add_root_certificate(cert);
    }
    if args.insecure {
        builder.danger_accept_invalid_certs(true);
        builder.danger_accept_invalid_hostnames(true);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up TLS: {e}"))
}

/// What the session needs from the stream: bytes, and the socket underneath to poll.
trait Stream: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

// A TLS stream never holds decrypted bytes that `poll` cannot see once a read has
// returned WouldBlock, and the session always reads until WouldBlock before sleeping.
impl Stream for native_tls::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

impl<S: Stream> Stream for Traced<S> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().tcp()
    }
}

/// The WebSocket handshake, traced from its first byte when `--trace` is on.
fn handshake<S: Stream>(
    stream: S,
    request: tungstenite::handshake::client::Request,
    args: &ConnectArgs,
) -> Result<End, BoxError> {
    if args.trace || args.trace_plain {
        session(Traced::new(stream, "client"), request)
    } else {
        session(stream, request)
    }
}

fn session<S: Stream>(
    stream: S,
    request: tungstenite::handshake::client::Request,
) -> Result<End, BoxError> {
    let url = request.uri().to_string();
    let (ws, response) = tungstenite::client(request, stream).map_err(handshake_error)?;
    match response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    {
        Some(protocol) => eprintln!("connected to {url} (subprotocol {protocol})"),
        None => eprintln!("connected to {url}"),
    }
    let tcp = ws.get_ref().tcp();
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)?;
    tcp.set_nonblocking(true)?;

    let wake = Arc::new(Wake::new()?);
    let (tx, rx) = crossbeam_channel::bounded(LINE_QUEUE);
    spawn_stdin_reader(tx, Arc::clone(&wake))?;
    let interrupts = Arc::new(AtomicUsize::new(0));
    {
        let (wake, interrupts) = (Arc::clone(&wake), Arc::clone(&interrupts));
        // Without the handler, Ctrl-C still ends the program, only less politely.
        let _ = ctrlc::set_handler(move || {
            if interrupts.fetch_add(1, Ordering::SeqCst) > 0 {
                std::process::exit(130);
            }
            wake.notify();
        });
    }
    Ok(Client {
        ws,
        lines: rx,
        wake,
        interrupts,
        taking_input: true,
        write_blocked: false,
        closing: None,
        peer_close: None,
        our_code: None,
    }
    .run())
}

fn handshake_error<R: tungstenite::handshake::HandshakeRole>(e: HandshakeError<R>) -> String {
    match e {
        HandshakeError::Failure(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .and_then(|b| b.lines().next().map(|l| l.chars().take(200).collect()))
                .map(|line: String| format!(": {line}"))
                .unwrap_or_default();
            format!(
                "the server refused the WebSocket handshake: HTTP {}{body}",
                response.status()
            )
        }
        HandshakeError::Failure(WsError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "no handshake response within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        }
        HandshakeError::Failure(e) => format!("WebSocket handshake failed: {e}"),
        HandshakeError::Interrupted(_) => "WebSocket handshake interrupted".to_owned(),
    }
}

/// Reads stdin line by line into `tx`, writing `wake` after each line. At the end of
/// input it drops `tx` (the disconnection is the owner's "close now") and wakes once
/// more. The thread is never joined: it may sit in `read` until the process exits.
fn spawn_stdin_reader(tx: Sender<String>, wake: Arc<Wake>) -> io::Result<()> {
    thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("switchboard connect: cannot read stdin: {e}");
                        break;
                    }
                }
                if buf.ends_with(b"\n") {
                    buf.pop();
                    if buf.ends_with(b"\r") {
                        buf.pop();
                    }
                }
                let Ok(line) = String::from_utf8(std::mem::take(&mut buf)) else {
                    eprintln!("switchboard connect: skipped a line that is not UTF-8");
                    continue;
                };
                if tx.send(line).is_err() {
                    return;
                }
                wake.notify();
            }
            drop(tx);
            wake.notify();
        })
        .map(drop)
}

/// A wake-up the owner thread can `poll(2)` on together with its socket: a connected
/// pair of Unix sockets, whose reading end turns readable when the other end is
/// written and stays so until cleared.
struct Wake {
    /// Polled and drained by the owner.
    rx: UnixStream,
    /// Written by whoever has news.
    tx: UnixStream,
}

impl Wake {
    fn new() -> io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Self { rx, tx })
    }

    fn notify(&self) {
        // WouldBlock only when the socket buffer is full of earlier wake-ups: then the
        // reading end is readable already, and this one is not needed.
        let _ = (&self.tx).write(&[1]);
    }

    /// Call it before looking for the news: a notification racing with the look then
    /// costs one extra wake-up at worst, and is never lost.
    fn clear(&self) {
        let mut buf = [0u8; 64];
        // Until WouldBlock: every byte written so far is one piece of news already
        // being looked at.
        while matches!((&self.rx).read(&mut buf), Ok(1..)) {}
    }
}

/// How the connection ended, once it was open.
#[derive(Debug)]
enum End {
    /// The peer sent a Close (`None`: one without a code). `ours` is the code of the
    /// Close we sent first, if we did.
    Closed {
        peer: Option<CloseFrame>,
        ours: Option<u16>,
    },
    /// The TCP connection ended without a Close frame.
    NoCloseFrame,
    /// We sent a Close and none came back in time.
    NoReply,
    /// A protocol or I/O error ended the connection.
    Failed(String),
}

impl End {
    fn exit_code(&self) -> ExitCode {
        let normal = |code: u16| matches!(code, 1000 | 1001);
        let clean = match self {
            End::Closed {
                peer: Some(frame), ..
            } => normal(frame.code.into()),
            // A Close without a code answering ours still completes the handshake.
            End::Closed { peer: None, ours } => ours.is_some_and(normal),
            _ => false,
        };
        if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed {
                peer: Some(frame), ..
            } => write!(
                f,
                "closed: code={} reason={:?}",
                u16::from(frame.code),
                frame.reason.as_str()
            ),
            // RFC 6455 §7.1.5: "no status code" is reported as 1005.
            End::Closed { peer: None, .. } => write!(f, "closed: code=1005 reason=\"\""),
            End::NoCloseFrame => write!(f, "closed: without a close frame"),
            End::NoReply => write!(
                f,
                "closed: no close frame in reply within {} s",
                CLOSE_TIMEOUT.as_secs()
            ),
            End::Failed(e) => write!(f, "closed: {e}"),
        }
    }
}

/// The owner of the connection: the WebSocket, the line channel, and the closing state.
struct Client<S> {
    ws: WebSocket<S>,
    lines: Receiver<String>,
    wake: Arc<Wake>,
    /// Ctrl-C (or SIGTERM) presses so far.
    interrupts: Arc<AtomicUsize>,
    /// False once input no longer matters: after end of input or once closing began.
    taking_input: bool,
    /// The last write would have blocked: wait for the socket to be writable, and
    /// leave further lines in the channel meanwhile (backpressure to stdin).
    write_blocked: bool,
    /// When the closing handshake must be over, once it began.
    closing: Option<Instant>,
    /// The Close the peer sent, once it did.
    peer_close: Option<Option<CloseFrame>>,
    /// The code of the Close we sent first, if we did.
    our_code: Option<u16>,
}

impl<S: Stream> Client<S> {
    fn run(mut self) -> End {
        loop {
            if self.interrupts.load(Ordering::SeqCst) > 0 {
                self.start_close(CloseCode::Normal, "");
            }
            self.take_input();
            if let Some(end) = self.read_all() {
                return end;
            }
            match self.ws.flush() {
                Ok(()) => self.write_blocked = false,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                }
                Err(e) => return self.lost(e),
            }
            if self.closing.is_some_and(|d| Instant::now() >= d) {
                return match self.peer_close.take() {
                    Some(peer) => End::Closed {
                        peer,
                        ours: self.our_code,
                    },
                    None => End::NoReply,
                };
            }
            if let Err(e) = self.sleep() {
                return End::Failed(format!("poll failed: {e}"));
            }
        }
    }

    /// Blocks until the socket or the wake-up has news, or the closing deadline.
    fn sleep(&mut self) -> io::Result<()> {
        let mut want = PollFlags::IN;
        if self.write_blocked {
            want |= PollFlags::OUT;
        }
        let timeout = self.closing.map(|deadline| {
            // Rounded up, so that the wait never ends a hair early and spins.
            let left =
                deadline.saturating_duration_since(Instant::now()) + Duration::from_nanos(999_999);
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_millis()) * 1_000_000,
            }
        });
        let mut fds = [
            PollFd::new(self.ws.get_ref().tcp(), want),
            PollFd::new(&self.wake.rx, PollFlags::IN),
        ];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            self.wake.clear();
        }
        Ok(())
    }

    /// Sends what was typed, as long as the socket takes it.
    fn take_input(&mut self) {
        while self.taking_input && !self.write_blocked {
            match self.lines.try_recv() {
                Ok(line) => self.on_line(&line),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.taking_input = false;
                    self.start_close(CloseCode::Normal, "");
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) {
        match parse_line(line) {
            Ok(Command::Send(msg)) => self.send(msg),
            Ok(Command::SendAll(frames)) => {
                for frame in frames {
                    self.send(frame);
                }
            }
            Ok(Command::Close(code, reason)) => self.start_close(code, &reason),
            Ok(Command::Help) => eprintln!("{COMMANDS}"),
            Err(e) => eprintln!("{e}"),
        }
    }

    fn send(&mut self, msg: Message) {
        match self.ws.write(msg) {
            Ok(()) => {}
            // Queued all the same; the flush at the end of the loop goes on with it.
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
            }
            Err(e) => eprintln!("switchboard connect: not sent: {e}"),
        }
    }

    /// Sends our Close (unless a Close already went either way) and starts the clock on
    /// the peer's reply. Input stops mattering: RFC 6455 §5.5.1 allows no data after.
    fn start_close(&mut self, code: CloseCode, reason: &str) {
        self.taking_input = false;
        if self.closing.is_some() || !self.ws.can_write() {
            return;
        }
        self.our_code = Some(code.into());
        self.closing = Some(Instant::now() + CLOSE_TIMEOUT);
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        match self.ws.close(Some(frame)) {
            Ok(()) => {}
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
            }
            // The read that follows reports how the connection went.
            Err(e) => log::debug!("sending Close: {e}"),
        }
    }

    /// Reads and prints every message available without blocking; `Some` once the
    /// connection is over.
    fn read_all(&mut self) -> Option<End> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(frame)) => {
                    // tungstenite has queued our echo of it if the peer spoke first.
                    self.taking_input = false;
                    self.peer_close = Some(frame);
                    self.closing
                        .get_or_insert_with(|| Instant::now() + CLOSE_TIMEOUT);
                }
                Ok(msg) => self.print(&msg),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(self.lost(e)),
            }
        }
    }

    /// How the connection ended, given the error that ended it.
    fn lost(&mut self, e: WsError) -> End {
        if let Some(peer) = self.peer_close.take() {
            // Both Close frames crossed (or ours is the last word): whatever the
            // transport did after that, the closing handshake is done.
            return End::Closed {
                peer,
                ours: self.our_code,
            };
        }
        let code = match &e {
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Io(_)
            | WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
                return End::NoCloseFrame;
            }
            // RFC 6455 §7.1.7: fail the connection with the code that fits.
            WsError::Utf8(_) => CloseCode::Invalid,
            WsError::Capacity(_) => CloseCode::Size,
            WsError::Protocol(_) => CloseCode::Protocol,
            _ => CloseCode::Error,
        };
        if self.ws.can_write() {
            let _ = self.ws.close(Some(CloseFrame {
                code,
                reason: "".into(),
            }));
        }
        End::Failed(format!("error: {e} (sent Close {})", u16::from(code)))
    }

    fn print(&mut self, msg: &Message) {
        let line = match msg {
            Message::Text(text) => one_line(text).into_owned(),
            Message::Binary(data) if data.is_empty() => "[binary 0 bytes]".to_owned(),
            Message::Binary(data) => format!("[binary {} bytes] {}", data.len(), hex(data)),
            Message::Ping(data) => format!("ping {}", control_payload(data)),
            Message::Pong(data) => format!("pong {}", control_payload(data)),
            Message::Close(_) | Message::Frame(_) => return,
        };
        let mut out = io::stdout().lock();
        if writeln!(out, "{} < {line}", timestamp(SystemTime::now()))
            .and_then(|()| out.flush())
            .is_err()
        {
            // Nobody reads our output any more (a closed pipe): time to go.
            drop(out);
            self.start_close(CloseCode::Normal, "");
        }
    }
}

/// A line of input, understood.
#[derive(Debug, PartialEq)]
enum Command {
    Send(Message),
    /// Frames to send one after another: a fragmented message.
    SendAll(Vec<Message>),
    Close(CloseCode, String),
    Help,
}

/// Reads one line of input: text to send, or a `/command`.
fn parse_line(line: &str) -> Result<Command, String> {
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Command::Send(Message::text(line)));
    };
    if command.starts_with('/') {
        return Ok(Command::Send(Message::text(command)));
    }
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "binary" => parse_hex(rest)
            .map(|bytes| Command::Send(Message::binary(bytes)))
            .map_err(|e| format!("/binary: {e}")),
        "ping" => {
            if rest.len() > MAX_CONTROL_PAYLOAD {
                return Err(format!(
                    "/ping: at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 §5.5)"
                ));
            }
            Ok(Command::Send(Message::Ping(
                rest.as_bytes().to_vec().into(),
            )))
        }
        "close" => parse_close(rest),
        "file" => file_command(rest.trim()),
        "frag" => parse_frag(rest),
        "help" => Ok(Command::Help),
        _ => Err(format!("unknown command /{name}; {COMMANDS}")),
    }
}

/// Largest file `/file` reads: it holds the file in memory while it goes out.
const MAX_FILE: u64 = 256 << 20;
/// Bytes in each binary message of a `/file`: the server's default frame limit.
const FILE_PIECE: usize = 1 << 20;

/// `/file PATH`: the chat's file announcement (name, a type guessed from the name's
/// extension, size), then the file's bytes as binary messages (RFC 6455 §5.6).
fn file_command(path: &str) -> Result<Command, String> {
    let usage = "usage: /file PATH";
    if path.is_empty() {
        return Err(usage.to_owned());
    }
    let path = std::path::Path::new(path);
    let size = std::fs::metadata(path)
        .map_err(|e| format!("/file: {}: {e}", path.display()))?
        .len();
    if size > MAX_FILE {
        return Err(format!("/file: at most {MAX_FILE} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("/file: {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mime = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        _ => "application/octet-stream",
    };
    let announce =
        serde_json::json!({"type": "file", "name": name, "mime": mime, "size": bytes.len()});
    let mut messages = vec![Message::text(announce.to_string())];
    messages.extend(
        bytes
            .chunks(FILE_PIECE)
            .map(|piece| Message::binary(piece.to_vec())),
    );
    Ok(Command::SendAll(messages))
}

/// Most fragments `/frag` sends: plenty to watch, and no way to flood a server.
const MAX_FRAGMENTS: usize = 64;

/// `/frag N TEXT`: the text in `N` frames of about equal length, never splitting a
/// character (each fragment of a text message need not be valid UTF-8 by itself,
/// RFC 6455 §5.6, but whole characters read better in a trace), with a Ping between
/// each two: control frames may be injected in the middle of a fragmented message
/// (§5.4). tungstenite masks each frame with a fresh key, as a client must (§5.3).
fn parse_frag(args: &str) -> Result<Command, String> {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let usage = "usage: /frag N TEXT (N from 1 to 64, at most one frame per character)";
    let (n, text) = args.trim_start().split_once(' ').ok_or(usage)?;
    let n: usize = n.parse().map_err(|_| usage)?;
    let chars: Vec<char> = text.chars().collect();
    if n == 0 || n > MAX_FRAGMENTS || n > chars.len() {
        return Err(usage.to_owned());
    }
    let mut frames = Vec::with_capacity(2 * n);
    let (each, extra) = (chars.len() / n, chars.len() % n);
    let mut at = 0;
    for i in 0..n {
        let len = each + usize::from(i < extra);
        let piece: String = chars[at..at + len].iter().collect();
        at += len;
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let last = i + 1 == n;
        frames.push(Message::Frame(Frame::message(
            piece.into_bytes(),
            OpCode::Data(opcode),
            last,
        )));
        if !last {
            let ping = format!("between fragments {} and {}", i + 1, i + 2);
            frames.push(Message::Ping(ping.into_bytes().into()));
        }
    }
    Ok(Command::SendAll(frames))
}

fn parse_close(args: &str) -> Result<Command, String> {
    let args = args.trim_start();
    if args.is_empty() {
        return Ok(Command::Close(CloseCode::Normal, String::new()));
    }
    let (code, reason) = args.split_once(' ').unwrap_or((args, ""));
    let code: u16 = code
        .parse()
        .map_err(|_| format!("/close: {code:?} is not a close code"))?;
    // RFC 6455 §7.4: 1005, 1006 and 1015 are never sent; below 1000 and the reserved
    // ranges are not codes at all.
    let code = CloseCode::from(code);
    if !code.is_allowed() {
        return Err(format!(
            "/close: {code} may not be sent; use 1000-1003, 1007-1014, or 3000-4999"
        ));
    }
    if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        return Err(format!(
            "/close: a reason has at most {} bytes",
            MAX_CONTROL_PAYLOAD - 2
        ));
    }
    Ok(Command::Close(code, reason.to_owned()))
}

/// Hex digits, whitespace between them allowed.
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".to_owned());
    }
    let value = |d: u8| {
        (d as char)
            .to_digit(16)
            .map(|v| v as u8)
            .ok_or_else(|| format!("{:?} is not a hex digit", d as char))
    };
    digits
        .chunks(2)
        .map(|pair| Ok(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    pairs.join(" ")
}

/// A Ping or Pong payload: quoted text when it is text, hex otherwise.
fn control_payload(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("[{}]", hex(data)),
    }
}

/// Keeps one message on one line, and the terminal safe from escape sequences:
/// control characters other than tab become `\n`, `\r` or `\u{…}`.
fn one_line(text: &str) -> Cow<'_, str> {
    let escape = |c: char| c.is_control() && c != '\t';
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `HH:MM:SS.mmm`, UTC.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_text_and_a_double_slash_escapes_commands() {
        assert_eq!(
            parse_line("hello"),
            Ok(Command::Send(Message::text("hello")))
        );
        assert_eq!(parse_line(""), Ok(Command::Send(Message::text(""))));
        assert_eq!(
            parse_line("//close 1000"),
            Ok(Command::Send(Message::text("/close 1000")))
        );
    }

    #[test]
    fn frag_splits_on_characters_with_pings_between() {
        let Ok(Command::SendAll(frames)) = parse_line("/frag 3 hello wörld") else {
            panic!("no frames");
        };
        let shown: Vec<String> = frames
            .iter()
            .map(|m| match m {
                Message::Frame(f) => format!(
                    "{}:{}:{}",
                    f.header().opcode,
                    f.header().is_final,
                    String::from_utf8_lossy(f.payload())
                ),
                Message::Ping(p) => format!("PING:{}", String::from_utf8_lossy(p)),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "TEXT:false:hell",
                "PING:between fragments 1 and 2",
                "CONTINUE:false:o wö",
                "PING:between fragments 2 and 3",
                "CONTINUE:true:rld",
            ]
        );
        for bad in [
            "/frag",
            "/frag x hi",
            "/frag 0 hi",
            "/frag 3 hi",
            "/frag 65 hello",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_take_their_arguments() {
        assert_eq!(
            parse_line("/binary 00 ff10"),
            Ok(Command::Send(Message::binary(vec![0x00, 0xff, 0x10])))
        );
        assert_eq!(
            parse_line("/ping a b"),
            Ok(Command::Send(Message::Ping(b"a b".to_vec().into())))
        );
        assert_eq!(
            parse_line("/ping"),
            Ok(Command::Send(Message::Ping(Vec::new().into())))
        );
        assert_eq!(
            parse_line("/close"),
            Ok(Command::Close(CloseCode::Normal, String::new()))
        );
        assert_eq!(
            parse_line("/close 4000 bye now"),
            Ok(Command::Close(CloseCode::from(4000), "bye now".to_owned()))
        );
        assert_eq!(parse_line("/help"), Ok(Command::Help));
    }

    #[test]
    fn bad_commands_are_explained() {
        for (line, says) in [
            ("/binary 0", "odd number"),
            ("/binary zz", "not a hex digit"),
            ("/close x", "not a close code"),
            ("/close 1005", "may not be sent"),
            ("/close 999", "may not be sent"),
            ("/pingg", "unknown command /pingg"),
            ("/nope", "unknown command /nope"),
        ] {
            let err = parse_line(line).expect_err(line);
            assert!(err.contains(says), "{line}: {err}");
        }
        assert!(parse_line(&format!("/ping {}", "x".repeat(126))).is_err());
        assert!(parse_line(&format!("/close 1000 {}", "x".repeat(124))).is_err());
    }

    #[test]
    fn received_text_stays_on_one_line() {
        assert_eq!(one_line("plain\ttab"), "plain\ttab");
        assert_eq!(one_line("a\nb\r\x1b[2J"), "a\\nb\\r\\u{1b}[2J");
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(86_400_000 * 3 + 13 * 3_600_000 + 62_045);
        assert_eq!(timestamp(t), "13:01:02.045");
    }

    #[test]
    fn binary_and_control_payloads_are_shown_readably() {
        assert_eq!(hex(&[0, 0xff, 0x10]), "00 ff 10");
        assert_eq!(control_payload(b"hi"), "\"hi\"");
        assert_eq!(control_payload(&[0xff]), "[ff]");
    }
}
