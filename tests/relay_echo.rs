//! `/ws/relay/{room}` and `/ws/echo` through real sockets.

mod common;

use common::*;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// Joins a relay room. The server registers a member before it sends the `101`, so a
/// message sent by anyone after this returns reaches it.
fn relay(addr: std::net::SocketAddr, room: &str) -> Client {
    connect(addr, &format!("/ws/relay/{room}"))
}

#[test]
fn relay_forwards_text_and_binary_verbatim_with_the_same_opcode() {
    let server = start();
    let addr = server.local_addr();
    let mut a = relay(addr, "r1");
    let mut b = relay(addr, "r1");
    a.send(Message::text("{\"not\": \"wrapped\"}")).unwrap();
    assert_eq!(next(&mut b), Message::text("{\"not\": \"wrapped\"}"));
    let bytes: Vec<u8> = (0..=255).collect();
    a.send(Message::binary(bytes.clone())).unwrap();
    assert_eq!(next(&mut b), Message::binary(bytes));
}

#[test]
fn relay_does_not_echo_to_the_sender() {
    let server = start();
    let addr = server.local_addr();
    let mut a = relay(addr, "r2");
    let mut b = relay(addr, "r2");
    a.send(Message::text("one")).unwrap();
    b.send(Message::text("two")).unwrap();
    // a's next message is b's, not its own "one".
    assert_eq!(next(&mut a), Message::text("two"));
    assert_eq!(next(&mut b), Message::text("one"));
}

#[test]
fn relay_rooms_are_isolated() {
    let server = start();
    let addr = server.local_addr();
    let mut a = relay(addr, "left");
    let mut b = relay(addr, "right");
    let mut a2 = relay(addr, "left");
    b.send(Message::text("for the right room")).unwrap();
    a.send(Message::text("for the left room")).unwrap();
    assert_eq!(next(&mut a2), Message::text("for the left room"));
    // b is alone in its room: the next thing it sees must not be the left room's.
    b.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(b.read().is_err(), "nothing crosses rooms");
}

#[test]
fn relay_reaches_every_other_member_in_order() {
    let server = start();
    let addr = server.local_addr();
    let mut sender = relay(addr, "fan");
    let mut receivers: Vec<Client> = (0..5).map(|_| relay(addr, "fan")).collect();
    for n in 0..100 {
        sender.send(Message::text(n.to_string())).unwrap();
    }
    for r in &mut receivers {
        for n in 0..100 {
            assert_eq!(next(r), Message::text(n.to_string()));
        }
    }
}

#[test]
fn echo_returns_text_and_binary() {
    let server = start();
    let mut ws = connect(server.local_addr(), "/ws/echo");
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(next(&mut ws), Message::text("héllo"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(next(&mut ws), Message::binary(vec![0u8, 1, 2, 255]));
}

#[test]
fn echo_returns_a_512_kib_message_intact() {
    let server = start();
    let mut ws = connect(server.local_addr(), "/ws/echo");
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(next(&mut ws), Message::binary(big));
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let server = start();
    let mut ws = connect(server.local_addr(), "/ws/echo");
    ws.send(Message::Ping(b"are you there"[..].into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn client_close_is_answered_with_the_same_code() {
    let server = start();
    let mut ws = connect(server.local_addr(), "/ws/echo");
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let reply = close_frame(&mut ws).expect("a close reply");
    assert_eq!(reply.code, CloseCode::Normal);
    // After the close handshake the server ends the TCP connection.
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)
    ));
}

#[test]
fn message_over_the_limit_closes_with_1009_and_spares_others() {
    let server = start_with(|b| b.max_message_size(64 * 1024));
    let addr = server.local_addr();
    let mut bystander = connect(addr, "/ws/echo");
    let mut ws = connect(addr, "/ws/echo");
    ws.send(Message::binary(vec![7u8; 64 * 1024])).unwrap();
    assert_eq!(
        next(&mut ws),
        Message::binary(vec![7u8; 64 * 1024]),
        "at the limit is fine"
    );
    ws.send(Message::binary(vec![7u8; 64 * 1024 + 1])).unwrap();
    let close = close_frame(&mut ws).expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_echoes(&mut bystander, "still here");
}

#[test]
fn default_limit_is_one_mebibyte() {
    let server = start();
    let mut ws = connect(server.local_addr(), "/ws/echo");
    ws.send(Message::binary(vec![1u8; (1 << 20) + 1])).unwrap();
    assert_eq!(
        close_frame(&mut ws).expect("a close frame").code,
        CloseCode::Size
    );
}
