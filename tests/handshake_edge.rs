//! Edge cases of the opening handshake (RFC 6455 §4.1, §4.2) that `http_front.rs`
//! does not already cover, or covers from another angle: unusual but legal heads
//! that must be accepted, malformed ones that must be refused with the exact status,
//! heads that arrive slowly or never end, and bytes that follow the head.
//!
//! Each request is raw bytes, so the test controls every byte; where the answer is
//! a refusal, an echo client connected beforehand proves nobody else noticed.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};
use switchboard::ServerHandle;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// Asserts `request` upgrades with the right accept key, and the socket then echoes.
fn assert_upgrades(server: &ServerHandle, request: &[u8]) {
    let (head, stream) = handshake(server.local_addr(), request);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Accept"), Some(EXAMPLE_ACCEPT));
    assert_echoes(&mut client_on(stream), "upgraded");
}

/// Asserts the server's side ends: a Close with `code`, then the end of the stream.
fn assert_closed_with(ws: &mut Client, code: CloseCode) {
    let close = close_frame(ws).expect("a Close frame before the end");
    assert_eq!(close.code, code, "reason {:?}", close.reason);
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {}
        // Our automatic reply may cross the server's hang-up.
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        other => panic!("the connection should end after the Close, got {other:?}"),
    }
}

// ---- unusual heads that are legal ----

#[test]
fn all_uppercase_header_names_and_values_are_101() {
    let request = format!(
        "GET /ws/echo HTTP/1.1\r\nHOST: LOCALHOST\r\nUPGRADE: WEBSOCKET\r\nCONNECTION: UPGRADE\r\n\
         SEC-WEBSOCKET-KEY: {EXAMPLE_KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    );
    assert_upgrades(&start(), request.as_bytes());
}

#[test]
fn all_lowercase_header_names_and_values_are_101() {
    let request = format!(
        "GET /ws/echo HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-key: {EXAMPLE_KEY}\r\nsec-websocket-version: 13\r\n\r\n"
    );
    assert_upgrades(&start(), request.as_bytes());
}

#[test]
fn connection_upgrade_on_a_second_header_line_is_101() {
    // RFC 9110 §5.3: repeated list headers are one list.
    let request = format!(
        "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: keep-alive\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {EXAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_upgrades(&start(), request.as_bytes());
}

#[test]
fn connection_token_list_without_spaces_is_101() {
    let request = format!(
        "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: keep-alive,Upgrade\r\n\
         Sec-WebSocket-Key: {EXAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_upgrades(&start(), request.as_bytes());
}

#[test]
fn absolute_form_with_port_and_query_to_chat_is_101_and_keeps_the_name() {
    let server = start();
    let addr = server.local_addr();
    let request = upgrade_request(&format!("ws://{addr}/ws/chat/abs?name=alice"), "");
    let (head, stream) = handshake(addr, request.as_bytes());
    assert_eq!(status(&head), 101, "{head}");
    let mut ws = client_on(stream);
    let welcome = next_json(&mut ws);
    assert_eq!(
        (&welcome["type"], &welcome["name"], &welcome["room"]),
        (&"welcome".into(), &"alice".into(), &"abs".into())
    );
}

#[test]
fn head_written_one_byte_per_write_is_101() {
    let server = start();
    let mut stream = tcp(server.local_addr());
    stream.set_nodelay(true).unwrap();
    for byte in upgrade_request("/ws/echo", "").bytes() {
        stream.write_all(&[byte]).unwrap();
        thread::sleep(Duration::from_micros(300));
    }
    let head = read_head(&mut stream);
    assert_eq!(status(&head), 101, "{head}");
    assert_echoes(&mut client_on(stream), "one byte at a time");
}

// ---- malformed heads ----

#[test]
fn http_2_request_line_is_400() {
    let request = upgrade_request("/ws/echo", "").replacen("HTTP/1.1", "HTTP/2.0", 1);
    assert_refused(&request, 400);
}

#[test]
fn http_1_0_upgrade_to_chat_is_400() {
    let request = upgrade_request("/ws/chat", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_refused(&request, 400);
}

#[test]
fn two_host_headers_are_400() {
    assert_refused(&upgrade_request("/ws/echo", "Host: elsewhere\r\n"), 400);
}

#[test]
fn identical_duplicate_keys_are_400() {
    assert_refused(
        &upgrade_request("/ws/echo", &format!("Sec-WebSocket-Key: {EXAMPLE_KEY}\r\n")),
        400,
    );
}

/// The standard request with the key replaced by `key`.
fn with_key(key: &str) -> String {
    upgrade_request("/ws/echo", "").replace(EXAMPLE_KEY, key)
}

#[test]
fn key_of_15_bytes_is_400() {
    // 15 bytes: 20 base64 characters, no padding.
    assert_refused(&with_key("AAECAwQFBgcICQoLDA0O"), 400);
}

#[test]
fn key_of_17_bytes_is_400() {
    // 17 bytes: 24 base64 characters with one `=`, the same length as a good key.
    assert_refused(&with_key("AAECAwQFBgcICQoLDA0ODxA="), 400);
}

#[test]
fn unpadded_16_byte_key_is_400() {
    // RFC 6455 §4.1 asks for base64 (RFC 4648 §4), which pads: 22 characters + `==`.
    assert_refused(&with_key("dGhlIHNhbXBsZSBub25jZQ"), 400);
}

#[test]
fn version_8_on_chat_is_426_naming_13() {
    let request = upgrade_request("/ws/chat", "").replace("Version: 13", "Version: 8");
    let response = assert_refused(&request, 426);
    assert_eq!(header(&response, "Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn two_version_headers_are_400() {
    assert_refused(
        &upgrade_request("/ws/echo", "Sec-WebSocket-Version: 13\r\n"),
        400,
    );
}

// ---- heads that never end ----

#[test]
fn head_that_never_ends_is_431_as_soon_as_it_passes_8_kib() {
    // Default 10 s handshake timeout: the answer must come from the size, not the clock.
    let server = start();
    let mut bystander = connect(server.local_addr(), "/ws/echo");
    let mut stream = tcp(server.local_addr());
    let started = Instant::now();
    stream
        .write_all(b"GET /ws/echo HTTP/1.1\r\nX-Endless: ")
        .unwrap();
    for _ in 0..9 {
        // The server stops reading after 8 KiB + 1: a write may fail once it answers.
        if stream.write_all(&[b'a'; 1024]).is_err() {
            break;
        }
    }
    let response = read_to_close(&mut stream);
    assert_eq!(status(&response), 431, "{response}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered late");
    assert_echoes(&mut bystander, "unaffected");
}

#[test]
fn sixty_five_header_lines_are_431() {
    let extra: String = (0..60).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let request = upgrade_request("/ws/echo", &extra);
    assert_eq!(request.matches("\r\n").count() - 2, 65, "65 header lines");
    assert!(
        request.len() < 4096,
        "small: refused for its lines, not its size"
    );
    assert_refused(&request, 431);
}

#[test]
fn slowloris_is_cut_at_the_handshake_timeout_while_another_client_is_served() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let server = start_with(|b| b.handshake_timeout(TIMEOUT));
    let addr = server.local_addr();
    let started = Instant::now();
    let slowloris = thread::spawn(move || {
        let mut stream = tcp(addr);
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let head = upgrade_request("/ws/echo", &format!("X-Pad: {}\r\n", "a".repeat(100)));
        let mut peek = [0u8; 1];
        // One byte every 100 ms: the head would take 30 s; the deadline is for all of it.
        for byte in head.bytes() {
            if started.elapsed() > TIMEOUT * 3 || stream.write_all(&[byte]).is_err() {
                break;
            }
            match stream.peek(&mut peek) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                _ => break, // an answer, or the end of the connection
            }
        }
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        (read_to_close(&mut stream), started.elapsed())
    });

    thread::sleep(Duration::from_millis(300));
    let meanwhile = Instant::now();
    let mut other = connect(addr, "/ws/echo");
    assert_echoes(&mut other, "not held up");
    assert!(
        meanwhile.elapsed() < Duration::from_millis(500),
        "the other client waited {:?}",
        meanwhile.elapsed()
    );
    assert!(
        started.elapsed() < TIMEOUT,
        "served while the slowloris was still on"
    );

    let (response, cut) = slowloris.join().unwrap();
    assert_eq!(status(&response), 408, "{response:?}");
    assert!(
        cut >= TIMEOUT - Duration::from_millis(50) && cut < TIMEOUT * 2,
        "cut after {cut:?}"
    );
    assert_echoes(&mut other, "still served");
}

// ---- bytes after the head ----

#[test]
fn body_that_is_not_a_frame_is_read_as_one_and_closed_with_1002() {
    // There is no request body in a WebSocket handshake: whatever follows the head is
    // frame bytes. `{` is FIN=0 RSV=111 opcode 0xB (reserved), `}` is length 125
    // unmasked; the reserved opcode fails the connection from the header alone.
    let server = start();
    let mut bystander = connect(server.local_addr(), "/ws/echo");
    let mut request = upgrade_request("/ws/echo", "Content-Length: 2\r\n").into_bytes();
    request.extend_from_slice(b"{}");
    let (head, stream) = handshake(server.local_addr(), &request);
    assert_eq!(status(&head), 101, "{head}");
    assert_closed_with(&mut client_on(stream), CloseCode::Protocol);
    assert_echoes(&mut bystander, "unaffected");
}

#[test]
fn body_hello_is_the_start_of_a_frame_that_fails_once_complete() {
    // `h` (0x68) is FIN=0 RSV1+RSV2 opcode 8, `e` (0x65) is length 101 unmasked: a
    // frame header whose payload has not arrived. The server waits for it, as for any
    // frame, and fails the connection once it is whole.
    let server = start();
    let mut bystander = connect(server.local_addr(), "/ws/echo");
    let mut request = upgrade_request("/ws/echo", "Content-Length: 5\r\n").into_bytes();
    request.extend_from_slice(b"hello");
    let (head, mut stream) = handshake(server.local_addr(), &request);
    assert_eq!(status(&head), 101, "{head}");

    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the server should wait for the rest of the frame: {other:?}"),
    }
    assert_echoes(&mut bystander, "unaffected while it waits");

    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.write_all(&[b'!'; 98]).unwrap();
    assert_closed_with(&mut client_on(stream), CloseCode::Protocol);
    assert_echoes(&mut bystander, "unaffected after");
}

#[test]
fn ping_messages_and_close_pipelined_with_the_head_are_answered_in_order() {
    let server = start();
    let mut bytes = upgrade_request("/ws/echo", "").into_bytes();
    bytes.extend(masked(PING, b"first"));
    bytes.extend(masked(TEXT, b"one"));
    bytes.extend(masked(BINARY, &[2, 2]));
    bytes.extend(masked(CLOSE, &close_payload(1000, b"")));
    let (head, stream) = handshake(server.local_addr(), &bytes);
    assert_eq!(status(&head), 101, "{head}");
    let mut ws = client_on(stream);
    assert_eq!(ws.read().unwrap(), Message::Pong(b"first"[..].into()));
    assert_eq!(ws.read().unwrap(), Message::text("one"));
    assert_eq!(ws.read().unwrap(), Message::binary(vec![2u8, 2]));
    assert_closed_with(&mut ws, CloseCode::Normal);
}
