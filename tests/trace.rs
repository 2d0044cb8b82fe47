//! `--trace`: a scripted session through a real server, and the decoded lines it logs;
//! and what no log line of the server may carry, at any level: a secret, or a peer's
//! control and bidi characters unescaped.

mod common;

use common::*;
use std::io::Write;
use std::sync::Mutex;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Collects every line the server's code logs in this test process, at every level
/// (the trace's lines as they are, the others after their level and target).
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target().starts_with("switchboard")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if record.target() == switchboard::trace::TARGET {
            record.args().to_string()
        } else {
            format!("{} {}: {}", record.level(), record.target(), record.args())
        };
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Installs the capture, once for the whole test process.
fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

#[test]
fn trace_shows_heads_and_every_frame_decoded() {
    capture();
    let server = start_with(|b| b.trace(true));
    let mut ws = connect(server.local_addr(), "/ws/echo");
    let port = ws.get_ref().local_addr().unwrap().port();
    ws.send(Message::text("Hello")).unwrap();
    assert_eq!(next(&mut ws), Message::text("Hello"));
    for len in [125usize, 126, 70_000] {
        ws.send(Message::binary(vec![0xab; len])).unwrap();
        assert_eq!(next(&mut ws), Message::binary(vec![0xab; len]));
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    assert!(close_frame(&mut ws).is_some());
    drop(ws);

    // The server writes its last frame before we read it, so the trace is complete
    // once the close reply arrived; wait for the lines to be logged all the same.
    // Only this connection's lines: the other tests of this process trace too.
    let lines = eventually(|| {
        let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
        lines
            .iter()
            .any(|l| l.contains("-> frame") && l.contains("CLOSE(0x8)"))
            .then_some(lines)
    });
    let has = |needle: &[&str]| lines.iter().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        has(&["<- GET /ws/echo HTTP/1.1"]),
        "request line: {lines:#?}"
    );
    assert!(has(&["<- Sec-WebSocket-Version: 13"]));
    assert!(has(&["-> HTTP/1.1 101 Switching Protocols"]));
    assert!(has(&["-> Sec-WebSocket-Accept: "]));
    assert!(has(&[
        "<- frame FIN=1 RSV=000 TEXT(0x1) MASK=1 key=",
        "len=5 (7-bit) \"Hello\""
    ]));
    assert!(has(&[
        "-> frame FIN=1 RSV=000 TEXT(0x1) MASK=0 len=5 (7-bit) \"Hello\""
    ]));
    assert!(has(&[
        "<- frame",
        "BINARY(0x2) MASK=1",
        "len=125 (7-bit)",
        "[ab ab"
    ]));
    assert!(has(&["<- frame", "BINARY(0x2)", "len=126 (16-bit)"]));
    assert!(has(&["<- frame", "BINARY(0x2)", "len=70000 (64-bit)"]));
    assert!(has(&[
        "-> frame",
        "BINARY(0x2) MASK=0",
        "len=70000 (64-bit)"
    ]));
    assert!(has(&[
        "<- frame",
        "CLOSE(0x8) MASK=1",
        "code=1000 reason=\"done\""
    ]));
    assert!(has(&["-> frame", "CLOSE(0x8) MASK=0", "code=1000"]));
}

#[test]
fn trace_never_shows_a_token_or_a_cookie() {
    capture();
    let token = "tr4ce-secret-token";
    let server = start_with(|b| b.trace(true).api_token(token));
    let response = raw(
        server.local_addr(),
        format!(
            "POST /api/rooms/traced/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Cookie: session=cookie-secret-value\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
        .as_bytes(),
    );
    assert_eq!(status(&response), 201, "{response}");
    let lines = eventually(|| {
        let lines = CAPTURE.0.lock().unwrap().clone();
        lines
            .iter()
            .any(|l| l.contains("<- POST /api/rooms/traced/messages"))
            .then_some(lines)
    });
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("<- Authorization: Bearer [redacted]")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("<- Cookie: [redacted]")),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(
            !line.contains(token) && !line.contains("cookie-secret-value"),
            "a secret in the trace: {line}"
        );
    }
}

/// The trace lines of the connection from local `port`.
fn lines_of(lines: &[String], port: u16) -> Vec<String> {
    let tag = format!(":{port} ");
    lines.iter().filter(|l| l.contains(&tag)).cloned().collect()
}

#[test]
fn trace_says_when_a_connection_opens_and_who_closed_it() {
    capture();
    let server = start_with(|b| b.trace(true));
    // The client hangs up first: its FIN comes first.
    let stream = tcp(server.local_addr());
    let port = stream.local_addr().unwrap().port();
    drop(stream);
    let lines = eventually(|| {
        let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
        lines
            .iter()
            .any(|l| l.contains("TCP connection closed"))
            .then_some(lines)
    });
    assert!(lines[0].ends_with("TCP connection open"), "{lines:#?}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with("TCP connection closed by the peer (its FIN came first)"),
        "{lines:#?}"
    );

    // After a closing handshake the server closes the TCP connection (RFC 6455 §7.1.1).
    let mut ws = connect(server.local_addr(), "/ws/echo");
    let port = ws.get_ref().local_addr().unwrap().port();
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    assert!(close_frame(&mut ws).is_some());
    let lines = eventually(|| {
        let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
        lines
            .iter()
            .any(|l| l.contains("TCP connection closed"))
            .then_some(lines)
    });
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with("TCP connection closed by us"),
        "{lines:#?}"
    );
}

#[test]
fn a_wire_viewer_is_not_traced_and_its_key_never_logged() {
    capture();
    let server = start_with(|b| b.trace(true));
    let (mut chat, welcome) = chat(server.local_addr(), "traced", Some("wa"));
    let (id, key) = (
        &welcome["wire"]["id"],
        welcome["wire"]["key"].as_str().unwrap(),
    );
    let offer = format!("Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.{key}\r\n");
    let (head, stream) = handshake(
        server.local_addr(),
        upgrade_request(&format!("/ws/wire/{id}"), &offer),
    );
    assert_eq!(status(&head), 101, "{head}");
    let port = stream.local_addr().unwrap().port();
    let mut viewer = client_on(stream);
    say(&mut chat, "watched");
    assert_eq!(next_of_type(&mut chat, "message")["text"], "watched");
    // The viewer gets its frames; none of its own traffic is logged after its head.
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !matches!(next(&mut viewer), Message::Text(t) if t.contains("watched")) {
        assert!(std::time::Instant::now() < deadline);
    }
    let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("a wire viewer: not traced further")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("frame")), "{lines:#?}");
    let all = CAPTURE.0.lock().unwrap().clone();
    assert!(all.iter().all(|l| !l.contains(key)), "the key in the trace");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!("<- GET /ws/wire/{id} HTTP/1.1"))),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l
            .ends_with("<- Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.[redacted]")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("-> Sec-WebSocket-Protocol: switchboard-wire")),
        "{lines:#?}"
    );
}

#[test]
fn a_wire_key_in_the_url_is_refused_and_never_logged() {
    capture();
    let server = start_with(|b| b.trace(true));
    let (_chat, welcome) = chat(server.local_addr(), "traced", Some("wu"));
    let (id, key) = (
        &welcome["wire"]["id"],
        welcome["wire"]["key"].as_str().unwrap(),
    );
    let (head, stream) = handshake(
        server.local_addr(),
        upgrade_request(&format!("/ws/wire/{id}?key={key}"), ""),
    );
    assert_eq!(status(&head), 403, "{head}");
    let port = stream.local_addr().unwrap().port();
    let lines = eventually(|| {
        let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
        lines
            .iter()
            .any(|l| l.contains("-> HTTP/1.1 403"))
            .then_some(lines)
    });
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!("<- GET /ws/wire/{id}?key=[redacted] HTTP/1.1"))),
        "{lines:#?}"
    );
    let all = CAPTURE.0.lock().unwrap().clone();
    assert!(
        all.iter().all(|l| !l.contains(key)),
        "the key in a log line"
    );
}

/// A head with bare `\n` line ends, which the server's parser reads: every line of
/// it is traced as the parser split it, and neither secret reaches any log line.
#[test]
fn a_bare_lf_head_is_traced_line_by_line_and_its_secrets_reach_no_log() {
    capture();
    let password = "s3cret-pw";
    let cookie = "c00kie-s3cret";
    let server = start_with(|b| b.trace(true).password(password));
    let request = format!(
        "GET /ws/echo HTTP/1.1\nHost: localhost\nX-A: 1\nAuthorization: Bearer {password}\n\
         Cookie: switchboard_session={cookie}\nUpgrade: websocket\nConnection: Upgrade\n\
         Sec-WebSocket-Key: {EXAMPLE_KEY}\nSec-WebSocket-Version: 13\n\n"
    );
    let (head, stream) = handshake(server.local_addr(), request);
    assert_eq!(status(&head), 101, "{head}");
    let port = stream.local_addr().unwrap().port();
    let mut ws = client_on(stream);
    ws.send(Message::text("after a bare-LF head")).unwrap();
    assert_eq!(next(&mut ws), Message::text("after a bare-LF head"));
    let lines = eventually(|| {
        let lines = lines_of(&CAPTURE.0.lock().unwrap(), port);
        lines
            .iter()
            .any(|l| l.contains("-> frame") && l.contains("after a bare-LF head"))
            .then_some(lines)
    });
    for expected in [
        "<- GET /ws/echo HTTP/1.1",
        "<- X-A: 1",
        "<- Authorization: Bearer [redacted]",
        "<- Cookie: [redacted]",
        "<- Sec-WebSocket-Version: 13",
        "-> HTTP/1.1 101 Switching Protocols",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(expected)),
            "{expected}: {lines:#?}"
        );
    }
    let all = CAPTURE.0.lock().unwrap().clone();
    for line in &all {
        assert!(
            !line.contains(password) && !line.contains(cookie),
            "a secret in a log line: {line}"
        );
    }
}

/// A peer's bidi override and escape character reach the log only as `\u{…}`: in the
/// trace's lines and in the refusal's log line alike.
#[test]
fn control_and_bidi_characters_from_a_peer_are_logged_escaped() {
    capture();
    let server = start_with(|b| b.trace(true));
    // A raw U+202E in a header and in the Origin (refused, and the refusal names it),
    // and its percent-encoding in the path.
    let bidi = upgrade_request(
        "/ws/echo?x=%E2%80%AE",
        "X-Bidi: \u{202e}ecila\r\nOrigin: http://\u{202e}evil.example\r\n",
    );
    let (head, stream) = handshake(server.local_addr(), bidi);
    assert_eq!(status(&head), 403, "{head}");
    let bidi_port = stream.local_addr().unwrap().port();
    // A raw ESC in a header: malformed, refused with 400.
    let mut esc = tcp(server.local_addr());
    let esc_port = esc.local_addr().unwrap().port();
    esc.write_all(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nX-Esc: a\x1b[2Jb\r\n\r\n")
        .unwrap();
    assert_eq!(status(&read_to_close(&mut esc)), 400);

    let lines = eventually(|| {
        let all = CAPTURE.0.lock().unwrap().clone();
        let done = |port| {
            lines_of(&all, port)
                .iter()
                .any(|l| l.contains("TCP connection closed"))
        };
        (done(bidi_port) && done(esc_port)).then_some(all)
    });
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("<- GET /ws/echo?x=%E2%80%AE HTTP/1.1"), "{lines:#?}");
    assert!(has("<- X-Bidi: \\u{202e}ecila"), "{lines:#?}");
    assert!(
        has("origin http://\\u{202e}evil.example is not allowed"),
        "the refusal's log line: {lines:#?}"
    );
    assert!(has("<- X-Esc: a\\u{1b}[2Jb"), "{lines:#?}");
    for line in &lines {
        assert!(
            !line.contains('\u{202e}') && !line.contains('\x1b'),
            "a raw control character in a log line: {line:?}"
        );
    }
}

/// The binary with `RUST_LOG=trace` and `--trace`, its stderr read whole once it
/// stopped: neither a password, a cookie nor a wire key is anywhere in it, at any
/// level and from any crate (tungstenite's own trace prints every frame's payload,
/// the `welcome` with its wire key among them).
#[test]
fn the_binary_logs_no_secret_even_at_trace_level() {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--listen",
            &addr.to_string(),
            "--no-tls",
            "--no-persist",
            "--no-qr",
        ])
        .args(["--trace", "--password-file", "/dev/stdin"])
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Running(child);
    let password = "s3cret-pw";
    let mut stdin = server.0.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    eventually(|| std::net::TcpStream::connect(addr).ok());

    let cookie = "c00kie-s3cret";
    let request = format!(
        "GET /ws/chat?name=ann HTTP/1.1\nHost: localhost\nAuthorization: Bearer {password}\n\
         Cookie: switchboard_session={cookie}\nUpgrade: websocket\nConnection: Upgrade\n\
         Sec-WebSocket-Key: {EXAMPLE_KEY}\nSec-WebSocket-Version: 13\n\n"
    );
    let (head, stream) = handshake(addr, request);
    assert_eq!(status(&head), 101, "{head}");
    let mut ws = client_on(stream);
    let welcome = next_json(&mut ws);
    let (id, key) = (
        &welcome["wire"]["id"],
        welcome["wire"]["key"].as_str().unwrap().to_owned(),
    );
    let offer = format!(
        "Authorization: Bearer {password}\r\n\
         Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.{key}\r\n"
    );
    let (head, stream) = handshake(addr, upgrade_request(&format!("/ws/wire/{id}"), &offer));
    assert_eq!(status(&head), 101, "{head}");
    let mut viewer = client_on(stream);
    say(&mut ws, "watched");
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !matches!(next(&mut viewer), Message::Text(t) if t.contains("watched")) {
        assert!(std::time::Instant::now() < deadline);
    }
    let (head, _) = handshake(
        addr,
        upgrade_request(&format!("/ws/wire/{id}?key={key}"), &offer),
    );
    assert_eq!(status(&head), 403, "{head}");
    drop((ws, viewer));

    let _ = server.0.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("<- GET /ws/chat?name=ann HTTP/1.1"), "{log}");
    assert!(log.contains("<- Authorization: Bearer [redacted]"), "{log}");
    for secret in [password, cookie, &key] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn the_hub_writes_no_log_line_per_message_even_at_trace_level() {
    capture();
    let server = start();
    let addr = server.local_addr();
    let room = format!("quiet-hub-{}", addr.port());
    let (mut alice, _) = chat(addr, &room, Some("alice"));
    let (mut bob, _) = chat(addr, &room, Some("bob"));
    for i in 0..30 {
        say(&mut alice, &format!("message {i}"));
    }
    for i in 0..30 {
        assert_eq!(
            next_of_type(&mut bob, "message")["text"],
            format!("message {i}")
        );
    }
    let hub_lines: Vec<String> = CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("switchboard::hub") && l.contains(&room))
        .cloned()
        .collect();
    assert!(
        hub_lines.is_empty(),
        "the hub logged per message: {hub_lines:#?}"
    );
}
