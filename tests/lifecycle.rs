//! Backpressure, heartbeats and timeouts: what happens to clients that stall or vanish.

mod common;

use common::*;
use std::thread;
use std::time::Duration;
use tungstenite::Message;

#[test]
fn stalled_reader_is_closed_with_1008_while_a_fast_reader_gets_everything_in_order() {
    // Enough to fill the stalled client's socket buffers and then its 8 MiB outbox.
    const COUNT: u32 = 500;
    const SIZE: usize = 64 * 1024;
    let server = start();
    let addr = server.local_addr();
    let mut stalled = connect(addr, "/ws/relay/busy");
    let mut fast = connect(addr, "/ws/relay/busy");
    let mut sender = connect(addr, "/ws/relay/busy");

    let reader = thread::spawn(move || {
        for n in 0..COUNT {
            match next(&mut fast) {
                Message::Binary(b) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(b[..4], n.to_be_bytes(), "message {n} in order");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        fast
    });
    for n in 0..COUNT {
        let mut payload = vec![0u8; SIZE];
        payload[..4].copy_from_slice(&n.to_be_bytes());
        sender.send(Message::binary(payload)).unwrap();
    }
    let _fast = reader
        .join()
        .expect("the fast reader got all messages in order");
    eventually(|| (metric(addr, "switchboard_slow_consumer_drops_total") == 1).then_some(()));

    // The stalled client finally reads: whatever was already on its way, then 1008.
    assert_slow_consumer_close(&close_frame(&mut stalled).expect("a close frame"));
}

#[test]
fn quiet_client_is_pinged() {
    let server = start_with(|b| b.ping_interval(Duration::from_millis(200)));
    let mut ws = connect(server.local_addr(), "/ws/echo");
    // Three quiet intervals in a row: each brings a Ping, and answering it (tungstenite
    // sends the queued Pong at the start of the next read) keeps the connection alive
    // well past the point where an unanswered ping would have dropped it.
    for _ in 0..3 {
        match ws.read().expect("a ping before the read timeout") {
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.send(Message::text("alive")).unwrap();
    assert_eq!(next(&mut ws), Message::text("alive"));
}

#[test]
fn client_that_never_answers_pings_is_dropped_and_the_room_told_timeout() {
    let server = start_with(|b| b.ping_interval(Duration::from_millis(200)));
    let addr = server.local_addr();
    let (mut watcher, _) = chat(addr, "lobby", Some("watcher"));
    // A raw client that completes the handshake and then never reads or writes.
    let _silent = upgraded(addr, "/ws/chat/lobby?name=ghost");
    assert_eq!(next_of_type(&mut watcher, "join")["name"], "ghost");
    let leave = next_of_type(&mut watcher, "leave");
    assert_eq!(leave["name"], "ghost");
    assert_eq!(leave["reason"], "timeout");
    assert_eq!(metric(addr, "switchboard_ping_timeouts_total"), 1);
}

#[test]
fn a_client_that_vanishes_leaves_with_reason_closed() {
    let server = start();
    let addr = server.local_addr();
    let (mut watcher, _) = chat(addr, "lobby", Some("watcher"));
    let (gone, _) = chat(addr, "lobby", Some("gone"));
    assert_eq!(next_of_type(&mut watcher, "join")["name"], "gone");
    drop(gone); // TCP closed without a close handshake
    let leave = next_of_type(&mut watcher, "leave");
    assert_eq!(leave["name"], "gone");
    assert_eq!(leave["reason"], "closed");
}

#[test]
fn healthz_counts_connections_and_rooms() {
    let server = start();
    let addr = server.local_addr();
    let (_a, _) = chat(addr, "one", Some("a"));
    let _b = connect(addr, "/ws/relay/two");
    // The relay client's join is queued for the hub before its 101, but the gauge is
    // updated once the hub has handled it: a moment later.
    let health = eventually(|| {
        let health = healthz(addr);
        (health["rooms"] == 2).then_some(health)
    });
    assert_eq!(health["status"], "ok");
    // Two WebSockets plus the /healthz request itself.
    assert_eq!(health["connections"], 3);
}
