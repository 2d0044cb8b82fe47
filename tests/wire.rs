//! The wire, live: `/ws/wire/{id}` streams a chat connection's own traffic, decoded
//! from the bytes, to whoever offers the key from its `welcome` as the subprotocol
//! `switchboard-wire.KEY` (never in the URL, which proxies log).

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The masking key of the hand-built frames, as the wire stream writes it.
const MASK_HEX: &str = "37fa213d";

/// A chat client on a raw socket (so that the test writes its frames byte for byte),
/// and its welcome.
fn chat_raw(addr: SocketAddr, extra: &str) -> (Client, Value) {
    let (head, stream) = handshake(addr, upgrade_request("/ws/chat?name=ann", extra));
    assert_eq!(status(&head), 101, "{head}");
    let mut ws = client_on(stream);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    (ws, welcome)
}

/// The id and key of the wire stream the welcome points at.
fn wire_of(welcome: &Value) -> (u64, String) {
    let wire = &welcome["wire"];
    let (id, key) = (wire["id"].as_u64().unwrap(), wire["key"].as_str().unwrap());
    assert_eq!(key.len(), 32, "128 random bits in hex: {key}");
    (id, key.to_owned())
}

/// The header line that offers `key` as a page does.
fn offer(key: &str) -> String {
    format!("Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.{key}\r\n")
}

/// The upgrade request of a viewer of the wire stream the welcome points at, with
/// `extra` header lines.
fn watch_request(welcome: &Value, extra: &str) -> String {
    let (id, key) = wire_of(welcome);
    upgrade_request(
        &format!("/ws/wire/{id}"),
        &format!("{}{extra}", offer(&key)),
    )
}

/// A viewer of the wire stream the welcome points at: the server picks the plain
/// `switchboard-wire`, so its `101` never holds the key.
fn watch(addr: SocketAddr, welcome: &Value) -> Client {
    let (head, stream) = handshake(addr, watch_request(welcome, ""));
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(
        header(&head, "Sec-WebSocket-Protocol"),
        Some("switchboard-wire")
    );
    assert!(
        !head.contains(&wire_of(welcome).1),
        "the key echoed: {head}"
    );
    client_on(stream)
}

/// Reads wire events until `done` says the last one came.
fn events_until(viewer: &mut Client, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut events = Vec::new();
    while Instant::now() < deadline {
        let event = next_json(viewer);
        let last = done(&event);
        events.push(event);
        if last {
            return events;
        }
    }
    panic!("the wire stream never finished: {events:#?}");
}

fn frames<'a>(events: &'a [Value], dir: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "frame" && e["dir"] == dir)
        .collect()
}

#[test]
fn the_wire_stream_replays_the_handshake_then_shows_every_frame_as_sent() {
    let server = start_with(|b| b.max_text_len(100_000));
    let addr = server.local_addr();
    let (mut ws, welcome) = chat_raw(addr, "Cookie: session=s3cret\r\n");
    let mut viewer = watch(addr, &welcome);

    // First the handshake, replayed as the bytes said it, secrets redacted.
    let head = events_until(&mut viewer, |e| {
        e["dir"] == "out"
            && e["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("Sec-WebSocket-Accept"))
    });
    let lines: Vec<(&str, &str)> = head
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "http");
            assert!(
                e["t"].as_u64().unwrap() > 1_700_000_000_000,
                "ms timestamps"
            );
            (e["dir"].as_str().unwrap(), e["line"].as_str().unwrap())
        })
        .collect();
    assert_eq!(lines[0], ("in", "GET /ws/chat?name=ann HTTP/1.1"));
    assert!(lines.contains(&("in", &*format!("Sec-WebSocket-Key: {EXAMPLE_KEY}"))));
    assert!(lines.contains(&("in", "Cookie: [redacted]")), "{lines:?}");
    assert!(lines.contains(&("out", "HTTP/1.1 101 Switching Protocols")));
    assert!(lines.contains(&("out", &*format!("Sec-WebSocket-Accept: {EXAMPLE_ACCEPT}"))));
    assert!(!format!("{head:?}").contains("s3cret"));

    // Then, live: the three length encodings, a fragmented message with a ping in
    // the middle, and the closing handshake.
    let short = r#"{"type":"message","text":"hi"}"#.to_owned();
    let medium = format!(r#"{{"type":"message","text":"{}"}}"#, "m".repeat(200));
    let long = format!(r#"{{"type":"message","text":"{}"}}"#, "l".repeat(70_000));
    let first = br#"{"type":"message","#;
    let rest = br#""text":"fragmented"}"#;
    let sent: Vec<Vec<u8>> = vec![
        masked(TEXT, short.as_bytes()),
        masked(TEXT, medium.as_bytes()),
        masked(TEXT, long.as_bytes()),
        frame(false, 0, TEXT, true, first),
        masked(PING, b"mid"),
        frame(true, 0, CONTINUATION, true, rest),
    ];
    for bytes in &sent {
        ws.get_mut().write_all(bytes).unwrap();
    }
    // The Close only once the last message is back: after a Close, nothing more.
    while next_of_type(&mut ws, "message")["text"] != "fragmented" {}
    ws.get_mut()
        .write_all(&masked(CLOSE, &close_payload(1000, b"bye")))
        .unwrap();
    let events = events_until(&mut viewer, |e| e["kind"] == "tcp");
    let tcp = events.last().unwrap();
    assert_eq!(tcp["event"], "closed");

    let ins = frames(&events, "in");
    let expected = [
        (true, "TEXT", 1, short.len(), 7),
        (true, "TEXT", 1, medium.len(), 16),
        (true, "TEXT", 1, long.len(), 64),
        (false, "TEXT", 1, first.len(), 7),
        (true, "PING", 9, 3, 7),
        (true, "CONTINUATION", 0, rest.len(), 7),
        (true, "CLOSE", 8, 5, 7),
    ];
    assert_eq!(ins.len(), expected.len(), "{ins:#?}");
    for (event, (fin, opcode, op, len, bits)) in ins.iter().zip(expected) {
        assert_eq!(event["fin"], fin, "{event}");
        assert_eq!(event["rsv"], "000");
        assert_eq!(event["opcode"], opcode, "{event}");
        assert_eq!(event["op"], op);
        assert_eq!(event["masked"], true);
        assert_eq!(event["key"], MASK_HEX);
        assert_eq!(event["len"], len, "{event}");
        assert_eq!(event["len_bits"], bits, "{event}");
    }
    assert_eq!(
        ins[0]["preview"], short,
        "a short payload is shown whole, unmasked"
    );
    assert!(
        ins[2]["preview"].as_str().unwrap().len() < 200,
        "a long one is cut"
    );
    assert_eq!(ins[2]["truncated"], true);
    assert_eq!(ins[4]["preview"], "mid");
    assert_eq!(ins[6]["close_code"], 1000);
    assert_eq!(ins[6]["close_reason"], "bye");

    let outs = frames(&events, "out");
    assert!(
        outs.iter()
            .all(|e| e["masked"] == false && e["key"].is_null())
    );
    let pong = outs
        .iter()
        .position(|e| e["opcode"] == "PONG")
        .expect("a pong");
    assert_eq!(outs[pong]["preview"], "mid", "the pong echoes the ping");
    let texts: Vec<&str> = outs
        .iter()
        .filter(|e| e["opcode"] == "TEXT")
        .map(|e| e["preview"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains(r#""text":"fragmented""#)));
    let medium_back = outs
        .iter()
        .find(|e| e["preview"].as_str().unwrap().contains("mmmm"))
        .expect("the 200-character message came back");
    assert_eq!(medium_back["len_bits"], 16);
    let close = outs.last().unwrap();
    assert_eq!(close["opcode"], "CLOSE", "the server's Close answers last");
    assert_eq!(close["close_code"], 1000);

    // The viewer's own stream ends with the connection it watched.
    let closed = close_frame(&mut viewer).expect("a Close");
    assert_eq!(u16::from(closed.code), 1000);
}

#[test]
fn a_wrong_key_or_unknown_id_is_refused_with_403_and_the_chat_carries_on() {
    let server = start();
    let addr = server.local_addr();
    let (mut ws, welcome) = chat(addr, "lobby", Some("bo"));
    let (id, key) = wire_of(&welcome);
    // The key with its last digit changed.
    let last = if key.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &key[..31]);
    let cases = [
        (format!("/ws/wire/{id}"), offer(&wrong)),
        (format!("/ws/wire/{id}"), offer("")),
        (format!("/ws/wire/{id}"), String::new()),
        (
            format!("/ws/wire/{id}"),
            "Sec-WebSocket-Protocol: switchboard-wire\r\n".to_owned(),
        ),
        (format!("/ws/wire/{}", id + 1000), offer(&key)),
        ("/ws/wire/nope".to_owned(), offer(&key)),
    ];
    for (path, extra) in &cases {
        let (head, _stream) = handshake(addr, upgrade_request(path, extra));
        assert_eq!(status(&head), 403, "{path} {extra}: {head}");
    }
    // Counted as what they are: wrong wire keys, not a foreign Origin.
    assert_eq!(handshake_failures(addr, "wire_key"), cases.len() as u64);
    assert_eq!(handshake_failures(addr, "forbidden_origin"), 0);
    say(&mut ws, "still here");
    assert_eq!(next_of_type(&mut ws, "message")["text"], "still here");
}

#[test]
fn a_key_in_the_url_is_refused_even_when_right() {
    let server = start();
    let addr = server.local_addr();
    let (mut ws, welcome) = chat(addr, "lobby", Some("cy"));
    let (id, key) = wire_of(&welcome);
    for extra in [String::new(), offer(&key)] {
        let (head, _stream) = handshake(
            addr,
            upgrade_request(&format!("/ws/wire/{id}?key={key}"), &extra),
        );
        assert_eq!(status(&head), 403, "{extra}: {head}");
        assert!(!head.contains(&key), "{head}");
    }
    assert_eq!(handshake_failures(addr, "wire_key"), 2);
    // The same key, offered as a subprotocol, opens the stream.
    let mut viewer = watch(addr, &welcome);
    say(&mut ws, "seen");
    assert_eq!(next_of_type(&mut ws, "message")["text"], "seen");
    let deadline = Instant::now() + READ_TIMEOUT;
    while !matches!(next(&mut viewer), Message::Text(t) if t.contains("seen")) {
        assert!(
            Instant::now() < deadline,
            "the viewer never saw the message"
        );
    }
}

#[test]
fn with_a_password_the_wire_needs_the_same_sign_in() {
    let server = start_with(|b| b.password("pw"));
    let addr = server.local_addr();
    let (head, stream) = handshake(
        addr,
        upgrade_request("/ws/chat", "Authorization: Bearer pw\r\n"),
    );
    assert_eq!(status(&head), 101);
    let mut ws = client_on(stream);
    let welcome = next_json(&mut ws);
    let (head, _stream) = handshake(addr, watch_request(&welcome, ""));
    assert_eq!(status(&head), 401, "{head}");
    let (head, _stream) = handshake(
        addr,
        watch_request(&welcome, "Authorization: Bearer pw\r\n"),
    );
    assert_eq!(status(&head), 101, "{head}");
}

#[test]
fn a_viewer_that_never_reads_never_slows_its_connection() {
    const FLOOD: usize = 20_000;
    let server = start();
    let addr = server.local_addr();
    let (mut ws, welcome) = chat(addr, "lobby", Some("busy"));
    // A viewer that upgrades and then reads nothing at all.
    let (head, stuck) = handshake(addr, watch_request(&welcome, ""));
    assert_eq!(status(&head), 101);

    // Pings are answered by the server without the chat's rate limit: 40,000 events
    // of ~400 bytes, far more than the viewer's queue and socket buffers hold.
    let started = Instant::now();
    let ping = [b'p'; 125];
    for _ in 0..FLOOD {
        ws.send(Message::Ping(ping.to_vec().into())).unwrap();
    }
    let mut pongs = 0;
    while pongs < FLOOD {
        if let Message::Pong(_) = ws.read().expect("a pong") {
            pongs += 1;
        }
    }
    let flood = started.elapsed();
    let started = Instant::now();
    say(&mut ws, "still quick");
    assert_eq!(next_of_type(&mut ws, "message")["text"], "still quick");
    let round_trip = started.elapsed();
    assert!(
        flood < Duration::from_secs(20) && round_trip < Duration::from_secs(1),
        "the chat connection was held up: {flood:?} for the pings, {round_trip:?} for a message"
    );

    // Now the viewer reads: after what fitted, it is told how many events it lost,
    // in one notice per run of losses; it adds them up until the notices stop.
    let (tx, rx) = mpsc::channel();
    let noticed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let first_notice = std::sync::Arc::clone(&noticed);
    let reader = std::thread::spawn(move || {
        let mut viewer = client_on(stuck);
        let _ = viewer
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(500)));
        let mut lost = 0;
        let deadline = Instant::now() + 3 * READ_TIMEOUT;
        while Instant::now() < deadline {
            match viewer.read() {
                Ok(Message::Text(t)) => {
                    let event: Value = serde_json::from_str(&t).unwrap();
                    if event["kind"] == "dropped" {
                        lost += event["count"].as_u64().unwrap();
                        first_notice.store(true, std::sync::atomic::Ordering::Release);
                    }
                }
                Ok(_) => {}
                // Quiet for half a second once it has caught up: that is all.
                Err(_) if lost > 0 => break,
                Err(e) if timed_out(&e) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(lost);
    });
    // A notice goes out with the next event that finds room: keep making some until
    // the first notice came, and a few after, then let the viewer fall quiet.
    let deadline = Instant::now() + 4 * READ_TIMEOUT;
    let mut after = 0;
    let dropped = loop {
        assert!(Instant::now() < deadline, "no dropped notice");
        if after < 5 {
            ws.send(Message::Ping(b"more".to_vec().into())).unwrap();
            if noticed.load(std::sync::atomic::Ordering::Acquire) {
                after += 1;
            }
        }
        if let Ok(count) = rx.recv_timeout(Duration::from_millis(50)) {
            break count;
        }
    };
    eprintln!("the viewer was told it lost {dropped} events");
    assert!(
        dropped > 1000,
        "many of the 40,000 events were lost: {dropped}"
    );
    reader.join().unwrap();
    let _ = TcpStream::shutdown(ws.get_ref(), std::net::Shutdown::Both);
}
