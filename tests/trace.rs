//! `--trace`: a scripted session through a real server, and the decoded lines it logs.

mod common;

use common::*;
use std::sync::Mutex;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Collects every `switchboard::trace` line logged in this test process.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == switchboard::trace::TARGET
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Installs the capture, once for the whole test process.
fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Info);
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
    let mut viewer = connect(server.local_addr(), &format!("/ws/wire/{id}?key={key}"));
    let port = viewer.get_ref().local_addr().unwrap().port();
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
        all.iter()
            .any(|l| l.contains(&format!("<- GET /ws/wire/{id}?key=[redacted] HTTP/1.1"))),
        "{all:#?}"
    );
}
