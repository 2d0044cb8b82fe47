//! RFC 6455 conformance of the frame layer, byte by byte, against `/ws/echo`.
//!
//! No WebSocket library on this side: every client frame is built here, masked by
//! hand (§5.2, §5.3), and every server frame is parsed here, so a test controls each
//! bit that crosses the wire and checks each bit that comes back. Each protocol
//! error must be answered with a Close carrying the RFC code (§7.1.7, §7.4.1) and
//! the end of the TCP connection, and must leave another client, connected before,
//! untouched.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;
use switchboard::ServerHandle;

use switchboard::frame::{Decoder, RSV1, RSV2, RSV3, Role};

/// Reads exactly `buf.len()` bytes, failing the test on a timeout or an early end.
fn read_exact(stream: &mut TcpStream, buf: &mut [u8], what: &str) {
    if let Err(e) = stream.read_exact(buf) {
        panic!("reading {what}: {e}");
    }
}

/// Reads one server frame, with the library's decoder, and returns `(fin, opcode,
/// payload)`. Server frames must keep the header rules (§5.2): no mask (§5.1), no
/// RSV bit (nothing was negotiated), the minimal length form. The decoder reads only
/// what the header says, one frame at a time, so nothing after the frame is taken.
fn read_frame(stream: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut decoder = Decoder::new(16 << 20);
    let mut byte = [0u8; 1];
    let frame = loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => break frame,
            Ok(None) => {}
            Err(e) => panic!("not a frame: {e}"),
        }
        // A byte at a time until the header is known, then the rest in one read.
        let want = match decoder.peek_header() {
            Some(h) => (h.size() as u64 + h.len) as usize - decoder.pending().len(),
            None => 1,
        };
        let mut buf = vec![0u8; want.max(1)];
        let buf = if want <= 1 {
            &mut byte[..]
        } else {
            &mut buf[..]
        };
        read_exact(stream, buf, "a frame");
        decoder.feed(buf);
    };
    if let Some(broken) = frame.header.violation(Role::Server) {
        panic!("the server sent {broken}: {:?}", frame.header);
    }
    (frame.header.fin, frame.header.opcode, frame.payload)
}

/// Reads frames until a Close and returns its payload; other frames are skipped.
fn read_close(stream: &mut TcpStream) -> Vec<u8> {
    for _ in 0..1000 {
        let (fin, opcode, payload) = read_frame(stream);
        if opcode == CLOSE {
            assert!(fin, "a control frame is never fragmented (§5.5)");
            return payload;
        }
    }
    panic!("no Close frame in 1000 frames");
}

/// Asserts that the server ends the TCP connection: end of stream (or a reset), not
/// more bytes and not silence until the read timeout.
fn assert_tcp_ends(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("bytes after the Close: {:02x?}", &buf[..n]),
        Err(e) => panic!("the server kept the connection open after its Close: {e}"),
    }
}

/// Reads frames until a Close, asserts its status code, then that the TCP
/// connection ends (§7.1.1: the server closes it first).
fn expect_close(stream: &mut TcpStream, code: u16) {
    let payload = read_close(stream);
    assert!(
        payload.len() >= 2,
        "expected Close {code}, got a Close without a code: {payload:02x?}"
    );
    let got = u16::from_be_bytes([payload[0], payload[1]]);
    assert_eq!(
        got,
        code,
        "close code (reason {:?})",
        String::from_utf8_lossy(&payload[2..])
    );
    assert!(
        std::str::from_utf8(&payload[2..]).is_ok(),
        "the server's close reason is UTF-8 (§5.5.1)"
    );
    assert_tcp_ends(stream);
}

/// Asserts the next frame is a whole data message with this opcode and payload.
fn expect_message(stream: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let (fin, got_opcode, got) = read_frame(stream);
    assert!(fin, "the echo is one unfragmented frame");
    assert_eq!(got_opcode, opcode, "opcode");
    assert!(got == payload, "payload differs ({} bytes)", got.len());
}

/// Opens a WebSocket to `/ws/echo` by hand: the upgrade request, then the response
/// head read byte by byte, so no frame byte is consumed with it.
fn open(server: &ServerHandle) -> TcpStream {
    let stream = upgraded(server.local_addr(), "/ws/echo");
    stream.set_nodelay(true).unwrap();
    stream
}

/// Runs `case` on a raw connection to a server built by `config`, between two echo
/// round trips of a well-behaved client connected before it: whatever one peer
/// does, another is served.
fn check_with(
    config: impl FnOnce(switchboard::ServerBuilder) -> switchboard::ServerBuilder,
    case: impl FnOnce(&mut TcpStream),
) {
    let server = start_with(config);
    let mut bystander = connect(server.local_addr(), "/ws/echo");
    assert_echoes(&mut bystander, "before");
    let mut stream = open(&server);
    case(&mut stream);
    assert_echoes(&mut bystander, "after");
}

/// [`check_with`] on a server with default settings.
fn check(case: impl FnOnce(&mut TcpStream)) {
    check_with(|b| b, case)
}

/// Sends `bytes` in one write and expects them to fail the connection with `code`.
fn fails_with(bytes: &[u8], code: u16) {
    check(|s| {
        s.write_all(bytes).unwrap();
        expect_close(s, code);
    });
}

// ---- §5.1, §5.2: framing errors ----

#[test]
fn unmasked_client_frame_is_1002() {
    fails_with(&frame(true, 0, TEXT, false, b"hello"), 1002);
}

#[test]
fn rsv1_set_is_1002() {
    fails_with(&frame(true, RSV1, TEXT, true, b"hello"), 1002);
}

#[test]
fn rsv2_set_is_1002() {
    fails_with(&frame(true, RSV2, TEXT, true, b"hello"), 1002);
}

#[test]
fn rsv3_set_is_1002() {
    fails_with(&frame(true, RSV3, TEXT, true, b"hello"), 1002);
}

macro_rules! reserved_opcodes_are_1002 {
    ($($name:ident: $opcode:expr,)*) => {$(
        #[test]
        fn $name() {
            fails_with(&frame(true, 0, $opcode, true, b"x"), 1002);
        }
    )*};
}

reserved_opcodes_are_1002! {
    reserved_opcode_3_is_1002: 0x3,
    reserved_opcode_4_is_1002: 0x4,
    reserved_opcode_5_is_1002: 0x5,
    reserved_opcode_6_is_1002: 0x6,
    reserved_opcode_7_is_1002: 0x7,
    reserved_opcode_11_is_1002: 0xB,
    reserved_opcode_12_is_1002: 0xC,
    reserved_opcode_13_is_1002: 0xD,
    reserved_opcode_14_is_1002: 0xE,
    reserved_opcode_15_is_1002: 0xF,
}

#[test]
fn length_with_the_64_bit_top_bit_set_is_1002() {
    // §5.2: "the most significant bit MUST be 0". The header alone is enough.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    bytes.extend_from_slice(&MASK);
    bytes.extend_from_slice(b"hello");
    fails_with(&bytes, 1002);
}

// ---- §5.4, §5.5: fragmentation and control frames ----

#[test]
fn control_frame_payload_over_125_bytes_is_1002() {
    fails_with(&masked(PING, &[b'p'; 126]), 1002);
}

#[test]
fn fragmented_ping_is_1002() {
    fails_with(&frame(false, 0, PING, true, b"half a ping"), 1002);
}

#[test]
fn continuation_without_a_message_started_is_1002() {
    fails_with(&masked(CONTINUATION, b"orphan"), 1002);
}

#[test]
fn text_frame_inside_an_unfinished_fragmented_message_is_1002() {
    let mut bytes = frame(false, 0, TEXT, true, b"first half");
    bytes.extend(masked(TEXT, b"a new message"));
    fails_with(&bytes, 1002);
}

#[test]
fn binary_frame_inside_an_unfinished_fragmented_message_is_1002() {
    let mut bytes = frame(false, 0, BINARY, true, b"first half");
    bytes.extend(masked(BINARY, b"a new message"));
    fails_with(&bytes, 1002);
}

#[test]
fn ping_interleaved_in_a_fragmented_message_gets_its_pong_first_then_the_whole_message() {
    check(|s| {
        // §5.4: control frames MAY be injected in the middle of a fragmented message.
        let mut bytes = frame(false, 0, TEXT, true, b"Hel");
        bytes.extend(masked(PING, b"in between"));
        bytes.extend(frame(false, 0, CONTINUATION, true, b"lo, "));
        bytes.extend(frame(true, 0, CONTINUATION, true, b"world"));
        s.write_all(&bytes).unwrap();
        let (fin, opcode, payload) = read_frame(s);
        assert_eq!((fin, opcode), (true, PONG), "the Pong comes first");
        assert_eq!(payload, b"in between", "§5.5.3: the Ping's payload");
        expect_message(s, TEXT, b"Hello, world");
    });
}

// ---- §8.1: UTF-8 ----

#[test]
fn invalid_utf8_in_a_whole_text_message_is_1007() {
    fails_with(&masked(TEXT, b"caf\xc3\x28"), 1007);
}

#[test]
fn invalid_utf8_split_across_fragments_is_1007() {
    // "€" is E2 82 AC: the first fragment ends mid-character, which is fine until
    // the second one goes on with a byte that cannot continue it.
    let mut bytes = frame(false, 0, TEXT, true, b"price: \xe2\x82");
    bytes.extend(frame(true, 0, CONTINUATION, true, b"\x28 not a euro"));
    fails_with(&bytes, 1007);
}

#[test]
fn utf8_character_split_across_fragments_is_echoed_whole() {
    check(|s| {
        let mut bytes = frame(false, 0, TEXT, true, b"price: \xe2\x82");
        bytes.extend(frame(true, 0, CONTINUATION, true, b"\xac 5"));
        s.write_all(&bytes).unwrap();
        expect_message(s, TEXT, "price: € 5".as_bytes());
    });
}

#[test]
fn invalid_utf8_in_a_close_reason_is_1007() {
    fails_with(&masked(CLOSE, &close_payload(1000, b"bye \xff\xfe")), 1007);
}

// ---- §5.5.1, §7.4: closing ----

#[test]
fn close_with_a_one_byte_payload_is_1002() {
    fails_with(&masked(CLOSE, &[0x03]), 1002);
}

#[test]
fn empty_close_is_answered_with_an_empty_close_or_1000() {
    check(|s| {
        s.write_all(&masked(CLOSE, b"")).unwrap();
        let payload = read_close(s);
        assert!(
            payload.is_empty() || payload[..2] == 1000u16.to_be_bytes(),
            "reply to an empty Close: {payload:02x?}"
        );
        assert_tcp_ends(s);
    });
}

macro_rules! invalid_close_codes_are_1002 {
    ($($name:ident: $code:expr,)*) => {$(
        #[test]
        fn $name() {
            fails_with(&masked(CLOSE, &close_payload($code, b"")), 1002);
        }
    )*};
}

// §7.4.1, §7.4.2: never sent on the wire (1005, 1006, 1015), unassigned (1004,
// 1016-2999), or out of range (0-999).
invalid_close_codes_are_1002! {
    close_code_0_is_answered_with_1002: 0,
    close_code_999_is_answered_with_1002: 999,
    close_code_1004_is_answered_with_1002: 1004,
    close_code_1005_is_answered_with_1002: 1005,
    close_code_1006_is_answered_with_1002: 1006,
    close_code_1015_is_answered_with_1002: 1015,
    close_code_1016_is_answered_with_1002: 1016,
    close_code_2999_is_answered_with_1002: 2999,
}

/// A Close with a code the RFC allows is echoed with the same code (§5.5.1).
fn close_code_is_echoed(code: u16) {
    check(|s| {
        s.write_all(&masked(CLOSE, &close_payload(code, b"bye")))
            .unwrap();
        expect_close(s, code);
    });
}

macro_rules! valid_close_codes_are_echoed {
    ($($name:ident: $code:expr,)*) => {$(
        #[test]
        fn $name() {
            close_code_is_echoed($code);
        }
    )*};
}

valid_close_codes_are_echoed! {
    close_code_1000_is_echoed: 1000,
    close_code_1001_is_echoed: 1001,
    close_code_1002_is_echoed: 1002,
    close_code_1003_is_echoed: 1003,
    close_code_1007_is_echoed: 1007,
    close_code_1011_is_echoed: 1011,
    close_code_3000_is_echoed: 3000,
    close_code_4999_is_echoed: 4999,
}

/// 1014 ("Bad Gateway") was registered with IANA after RFC 6455. Stock tungstenite
/// (0.30) treats it as invalid and answers it with 1002; upstream issue
/// snapview/tungstenite-rs#502. This test goes through the library exactly as an
/// embedder's server would (no `[patch]`), and pins down what every switchboard does
/// today, so that a tungstenite release that accepts 1014 shows up here.
#[test]
fn close_code_1014_is_answered_with_1002_as_stock_tungstenite_does() {
    check(|s| {
        s.write_all(&masked(CLOSE, &close_payload(1014, b"bye")))
            .unwrap();
        expect_close(s, 1002);
    });
}

// ---- the reason texts are the documented ones ----

/// Reads the server's Close, asserts the TCP connection ends after it, and returns
/// its code and reason.
fn close_code_and_reason(stream: &mut TcpStream) -> (u16, String) {
    let payload = read_close(stream);
    assert!(payload.len() >= 2, "a Close with a code: {payload:02x?}");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    assert_tcp_ends(stream);
    (code, reason)
}

/// Asserts that the close-code tables of the README and docs/PROTOCOL.md both have
/// the row `| code | `reason` | …`.
fn assert_documented(code: u16, reason: &str) {
    let row = format!("| {code} | `{reason}` |");
    for (name, doc) in [
        ("README.md", include_str!("../README.md")),
        ("docs/PROTOCOL.md", include_str!("../docs/PROTOCOL.md")),
    ] {
        assert!(
            doc.lines().any(|line| line.trim_start().starts_with(&row)),
            "{name} has no close-code row {row:?}"
        );
    }
}

/// A client's Close with a code no Close may carry is answered by tungstenite
/// itself, before the frame loop sees it: 1002 with tungstenite's own reason text,
/// which the tables must say.
#[test]
fn a_forbidden_close_code_is_answered_with_the_documented_1002_reason() {
    for code in [999, 1005, 1014] {
        check(|s| {
            s.write_all(&masked(CLOSE, &close_payload(code, b"bye")))
                .unwrap();
            let (got, reason) = close_code_and_reason(s);
            assert_eq!(
                (got, reason.as_str()),
                (1002, "Protocol violation"),
                "{code}"
            );
            assert_documented(got, &reason);
        });
    }
}

/// The server's own Close frames carry the reason text the tables give each code.
#[test]
fn the_server_closes_with_the_documented_reasons() {
    let too_big = masked(BINARY, &vec![0u8; (1 << 20) + 1]);
    for (bytes, code) in [
        (frame(true, 0, TEXT, false, b"hello"), 1002),
        (masked(TEXT, b"caf\xc3\x28"), 1007),
        (too_big, 1009),
    ] {
        check(|s| {
            s.write_all(&bytes).unwrap();
            let (got, reason) = close_code_and_reason(s);
            assert_eq!(got, code, "reason {reason:?}");
            assert_documented(got, &reason);
        });
    }
}

// ---- the stream is a stream: frames are not writes ----

#[test]
fn frame_delivered_one_byte_at_a_time_is_echoed() {
    check(|s| {
        // 130 bytes: the 16-bit length form, so the length itself is split too.
        let payload: Vec<u8> = (0..130u8).map(|i| b'a' + i % 26).collect();
        for byte in masked(TEXT, &payload) {
            s.write_all(&[byte]).unwrap();
            thread::sleep(Duration::from_micros(500));
        }
        expect_message(s, TEXT, &payload);
    });
}

#[test]
fn many_frames_in_one_write_are_all_echoed_in_order() {
    check(|s| {
        let messages: Vec<(u8, Vec<u8>)> = (0..200u32)
            .map(|i| match i % 3 {
                0 => (TEXT, format!("message {i}").into_bytes()),
                1 => (BINARY, i.to_be_bytes().to_vec()),
                _ => (TEXT, vec![b'x'; 126 + i as usize]),
            })
            .collect();
        let bytes: Vec<u8> = messages
            .iter()
            .flat_map(|(opcode, payload)| masked(*opcode, payload))
            .collect();
        s.write_all(&bytes).unwrap();
        for (opcode, payload) in &messages {
            expect_message(s, *opcode, payload);
        }
    });
}

#[test]
fn message_with_a_64_bit_length_is_echoed() {
    check(|s| {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = masked(BINARY, &payload);
        assert_eq!(bytes[1], 0x80 | 127, "the 64-bit length form");
        s.write_all(&bytes).unwrap();
        expect_message(s, BINARY, &payload);
    });
}

// ---- §10.4: limits ----

/// A small limit keeps the oversized cases fast.
const LIMIT: usize = 1024;

#[test]
fn message_over_the_limit_in_one_frame_is_1009() {
    check_with(
        |b| b.max_message_size(LIMIT),
        |s| {
            s.write_all(&masked(BINARY, &[7u8; LIMIT + 1])).unwrap();
            expect_close(s, 1009);
        },
    );
}

#[test]
fn message_over_the_limit_in_many_small_fragments_is_1009() {
    check_with(
        |b| b.max_message_size(LIMIT),
        |s| {
            // 11 fragments of 100 bytes: each one is small, the message is not.
            let mut bytes = frame(false, 0, BINARY, true, &[1u8; 100]);
            for _ in 0..9 {
                bytes.extend(frame(false, 0, CONTINUATION, true, &[1u8; 100]));
            }
            bytes.extend(frame(true, 0, CONTINUATION, true, &[1u8; 100]));
            s.write_all(&bytes).unwrap();
            expect_close(s, 1009);
        },
    );
}

#[test]
fn message_at_the_limit_in_small_fragments_is_echoed_whole() {
    check_with(
        |b| b.max_message_size(LIMIT),
        |s| {
            let mut bytes = frame(false, 0, BINARY, true, &[1u8; 256]);
            bytes.extend(frame(false, 0, CONTINUATION, true, &[2u8; 256]));
            bytes.extend(frame(false, 0, CONTINUATION, true, &[3u8; 256]));
            bytes.extend(frame(true, 0, CONTINUATION, true, &[4u8; 256]));
            s.write_all(&bytes).unwrap();
            let expected: Vec<u8> = (1..=4u8).flat_map(|b| [b; 256]).collect();
            expect_message(s, BINARY, &expected);
        },
    );
}
