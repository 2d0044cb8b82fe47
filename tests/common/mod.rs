//! Helpers shared by the integration tests: a real server on `127.0.0.1:0`, real
//! sockets, and a timeout on every read so a bug fails a test instead of hanging it.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod nginx;
pub mod redis;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use switchboard::{Server, ServerBuilder, ServerHandle};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

/// The longest any single read in a test may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A WebSocket client on plain TCP.
pub type Client = WebSocket<TcpStream>;

/// Makes the tests of one test binary that take it run one at a time, for tests that
/// measure the whole process (its memory, its threads); a failed test frees it too.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server with default settings on an ephemeral loopback port.
pub fn start() -> ServerHandle {
    start_with(|b| b)
}

/// A server on an ephemeral loopback port, with settings changed by `f`.
pub fn start_with(f: impl FnOnce(ServerBuilder) -> ServerBuilder) -> ServerHandle {
    f(Server::builder().listen("127.0.0.1:0"))
        .start()
        .expect("server starts")
}

/// The development certificates in `certs/` (`ca.pem`, `localhost.pem`, …).
pub fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// Waits at most `limit` for `child` to exit; `None` if it is still running then.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, for at most the read timeout.
pub fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not met in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- plain HTTP ----

/// A TCP connection with read and write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Sends raw bytes and returns everything the server sends until it closes.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tcp(addr);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
}

/// Reads until end of stream (or the read timeout) and returns it as text.
pub fn read_to_close(stream: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a response head byte by byte, so that no frame byte after it is consumed.
pub fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A TCP connection to `addr` from the loopback address `from`, with timeouts.
pub fn tcp_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("bind to a loopback address");
    socket
        .connect_timeout(&addr.into(), READ_TIMEOUT)
        .expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// A plain GET, answered in full.
pub fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// The status code of a raw HTTP response.
pub fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// The value of response header `name` (case-insensitive), if present.
pub fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The body of a whole HTTP response.
pub fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no end of head in {response:?}"))
}

/// Asserts a refusal explains itself in one line of text (README).
pub fn assert_one_line_reason(response: &str) {
    let body = body(response);
    assert!(body.ends_with('\n'), "reason ends its line: {body:?}");
    assert!(!body.trim().is_empty(), "reason is not empty");
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
}

/// Sends `request` as raw bytes while an echo client is connected, checks that the
/// echo client is served before and after, and returns the server's whole answer.
pub fn answer_beside_bystander(server: &ServerHandle, request: impl AsRef<[u8]>) -> String {
    let addr = server.local_addr();
    let mut bystander = connect(addr, "/ws/echo");
    assert_echoes(&mut bystander, "before");
    let response = raw(addr, request.as_ref());
    assert_echoes(&mut bystander, "after");
    response
}

/// Asserts a default server refuses `request` with `code` and a one-line reason,
/// beside a bystander; returns the whole answer.
pub fn assert_refused(request: &str, code: u16) -> String {
    let server = start();
    let response = answer_beside_bystander(&server, request);
    assert_eq!(status(&response), code, "{response}");
    assert_one_line_reason(&response);
    response
}

// ---- health and metrics ----

/// The JSON body `/healthz` answers with.
pub fn healthz(addr: SocketAddr) -> Value {
    serde_json::from_str(body(&get(addr, "/healthz"))).expect("JSON from /healthz")
}

/// One metric's value in a `/metrics` response; fails the test if it is missing.
pub fn metric_in(response: &str, name: &str) -> u64 {
    response
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no metric {name} in {response}"))
}

/// One metric's value from `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    metric_in(&get(addr, "/metrics"), name)
}

/// One metric's value, or `None` while `/metrics` itself is refused (a full server
/// says 503).
pub fn try_metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let response = get(addr, "/metrics");
    (status(&response) == 200).then(|| metric_in(&response, name))
}

/// The name of the handshake failure counter for `reason`.
pub fn failure_metric(reason: &str) -> String {
    format!("switchboard_handshake_failures_total{{reason=\"{reason}\"}}")
}

/// The handshake failure counter for `reason` in `/metrics`.
pub fn handshake_failures(addr: SocketAddr, reason: &str) -> u64 {
    metric(addr, &failure_metric(reason))
}

// ---- WebSocket clients ----

/// Opens a WebSocket to `path` (e.g. `/ws/echo`).
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), tcp(addr)).expect("handshake");
    ws
}

/// The next data message, answering nothing and skipping pings and pongs.
pub fn next<S: Read + Write>(ws: &mut WebSocket<S>) -> Message {
    loop {
        match ws.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            msg => return msg,
        }
    }
}

/// The next text message as JSON.
pub fn next_json<S: Read + Write>(ws: &mut WebSocket<S>) -> Value {
    match next(ws) {
        Message::Text(t) => serde_json::from_str(&t).expect("valid JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Skips JSON messages until one of the given `type`, and returns it.
pub fn next_of_type<S: Read + Write>(ws: &mut WebSocket<S>, kind: &str) -> Value {
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        let msg = next_json(ws);
        if msg["type"] == kind {
            return msg;
        }
    }
    panic!("no {kind} message in time");
}

/// A TLS connection to `addr` that trusts only the development CA (`certs/ca.pem`),
/// checking the name `localhost`.
pub fn tls(addr: SocketAddr) -> native_tls::TlsStream<TcpStream> {
    tls_trusting(addr, &certs().join("ca.pem"))
        .expect("TLS handshake with a certificate signed by ca.pem")
}

/// A TLS connection to `addr` that trusts only the CA in the PEM file `ca`, checking
/// the name `localhost`; the handshake's error if the server's certificate fails that.
pub fn tls_trusting(
    addr: SocketAddr,
    ca: &Path,
) -> Result<native_tls::TlsStream<TcpStream>, native_tls::HandshakeError<TcpStream>> {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    let ca = native_tls::Certificate::from_pem(&pem).expect("a PEM certificate");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(ca)
        .disable_built_in_roots(true)
        .build()
        .expect("a TLS connector");
    connector.connect("localhost", tcp(addr))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The `switchboard` binary set to listen on a free loopback port, plain, without the
/// QR code, its input and output thrown away: add what the test needs, then
/// [`serving`]. Only for test targets that build the binary (`cli`).
#[allow(dead_code)]
pub fn binary_command() -> (Command, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["--listen", &addr.to_string(), "--no-tls", "--no-qr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (command, addr)
}

/// Starts `command` (from [`binary_command`]) and waits until it accepts connections
/// on `addr`.
#[allow(dead_code)]
pub fn serving(mut command: Command, addr: SocketAddr) -> Running {
    let child = command.spawn().expect("the binary starts");
    let running = Running(child);
    eventually(|| TcpStream::connect(addr).ok());
    running
}

/// A child process (a server, a tool), killed when dropped, so that a failing test
/// leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a read failed only because its timeout ran out (nothing came).
pub fn timed_out(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e)
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Sends a JSON value as a text frame.
pub fn send_json<S: Read + Write>(ws: &mut WebSocket<S>, value: Value) {
    ws.send(Message::text(value.to_string())).expect("send");
}

/// One echo round trip: the client is alive and served.
pub fn assert_echoes<S: Read + Write>(ws: &mut WebSocket<S>, text: &str) {
    ws.send(Message::text(text)).expect("send");
    assert_eq!(next(ws), Message::text(text), "echoed back");
}

// ---- chat ----

/// Opens a chat WebSocket at `path` and reads its welcome; returns the client and the
/// welcome.
pub fn chat_url(addr: SocketAddr, path: &str) -> (Client, Value) {
    let mut ws = connect(addr, path);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "first message is the welcome");
    (ws, welcome)
}

/// Joins chat `room` as `name` (no `?name=` when `None`); returns the client and its
/// welcome.
pub fn chat(addr: SocketAddr, room: &str, name: Option<&str>) -> (Client, Value) {
    let query = name.map(|n| format!("?name={n}")).unwrap_or_default();
    chat_url(addr, &format!("/ws/chat/{room}{query}"))
}

/// Sends a chat message: `{"type":"message","text":…}`.
pub fn say<S: Read + Write>(ws: &mut WebSocket<S>, text: &str) {
    send_json(ws, serde_json::json!({"type": "message", "text": text}));
}

// ---- closing ----

/// Reads until the server's Close frame arrives and returns it (`None` if the
/// connection ended without one).
pub fn close_frame<S: Read + Write>(ws: &mut WebSocket<S>) -> Option<CloseFrame> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame,
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Reads until the connection ends, answering the server's Close on the way; returns
/// the code of that Close (`None` if none came).
pub fn answer_close<S: Read + Write>(mut ws: WebSocket<S>) -> Option<CloseCode> {
    let mut code = None;
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => code = frame.map(|f| f.code),
            Ok(_) => {}
            Err(_) => return code,
        }
    }
}

/// Closes a WebSocket politely and waits for the server's side of the close.
pub fn close_politely(mut ws: Client) {
    ws.close(None).expect("close");
    let _ = close_frame(&mut ws);
}

/// Asserts `close` is the one a slow consumer gets: 1008, "slow consumer".
pub fn assert_slow_consumer_close(close: &CloseFrame) {
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert_eq!(close.reason.as_str(), "slow consumer");
}

// ---- the opening handshake by hand ----

/// The RFC 6455 §1.3 example key, which every hand-built upgrade request sends.
pub const EXAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `Sec-WebSocket-Accept` value [`EXAMPLE_KEY`] must be answered with (§1.3).
pub const EXAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A well-formed upgrade request for `path`, with `extra` header lines added.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {EXAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` in one write; returns the response head and the open stream.
pub fn handshake(addr: SocketAddr, request: impl AsRef<[u8]>) -> (String, TcpStream) {
    let mut stream = tcp(addr);
    stream.write_all(request.as_ref()).unwrap();
    let head = read_head(&mut stream);
    (head, stream)
}

/// Upgrades a raw socket to `path`, asserting the `101`; ready for hand-built frames.
pub fn upgraded(addr: SocketAddr, path: &str) -> TcpStream {
    let (head, stream) = handshake(addr, upgrade_request(path, ""));
    assert_eq!(status(&head), 101, "{head}");
    stream
}

/// A tungstenite client on a stream whose handshake is already done.
pub fn client_on(stream: TcpStream) -> Client {
    WebSocket::from_raw_socket(stream, Role::Client, None)
}

/// The request of a viewer of the wire stream `welcome` names, to the server at
/// `base` (`ws://host:port`), as the page makes it: the key offered as the
/// subprotocol `switchboard-wire.KEY`, never in the URL.
pub fn wire_request(base: &str, welcome: &Value) -> tungstenite::handshake::client::Request {
    use tungstenite::client::IntoClientRequest;
    let (id, key) = (&welcome["wire"]["id"], &welcome["wire"]["key"]);
    let key = key.as_str().expect("a wire key in the welcome");
    let mut request = format!("{base}/ws/wire/{id}")
        .into_client_request()
        .expect("a request");
    let offer = format!("switchboard-wire, switchboard-wire.{key}");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        offer.parse().expect("a header value"),
    );
    request
}

/// A viewer of the wire stream `welcome` names (see [`wire_request`]).
pub fn watch_wire(addr: SocketAddr, welcome: &Value) -> Client {
    let (ws, _) = tungstenite::client(wire_request(&format!("ws://{addr}"), welcome), tcp(addr))
        .expect("a wire viewer");
    ws
}

// ---- frames by hand (RFC 6455 §5.2), with the library's frame code ----

// Not every test binary sends every opcode.
#[allow(unused_imports)]
pub use switchboard::frame::{BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use switchboard::frame::{Header, encode};

/// The masking key of every hand-built client frame; any four bytes do (§5.3).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame on the wire, built by hand (RFC 6455 §5.2): `rsv` holds RSV1..3 as its
/// three low bits, the length takes the 7-, 16- or 64-bit form its size needs, and
/// `masked` frames are masked with [`MASK`].
pub fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let header = Header::new(opcode, payload.len() as u64).fin(fin).rsv(rsv);
    let header = if masked { header.masked(MASK) } else { header };
    encode(&header, payload)
}

/// A final, masked client frame of any length: what a well-behaved client sends.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, true, payload)
}

/// A Close frame's payload: the code, then the reason (§5.5.1).
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

// ---- outside programs ----

/// The path of `program` (looked up on `PATH`, then in `/usr/sbin` and `/sbin`, where
/// Debian puts daemons such as nginx and a user's `PATH` often does not reach), or
/// `None` after saying the test was skipped. A program that `.ci/run` installs must
/// be there in CI: with `require` (an environment variable such as
/// `SWITCHBOARD_REQUIRE_TOOLS`) set, a missing one fails the test instead.
pub fn tool_or_skip(test: &str, program: &str, require: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os(require).is_none(),
            "{test}: {require} is set but {program} is not on PATH"
        );
        // Straight to stderr: the harness swallows print!() output of passing tests,
        // and a skipped test should be visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: {program} is not installed (.ci/run installs it)"
        );
    }
    found
}

// ---- files ----

/// A fresh directory under the system's temp dir, removed with everything in it when
/// dropped.
/// The names in `dir` (files, links, directories), or none when it is not there.
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-test-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
