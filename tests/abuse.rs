//! Hostile clients: floods of messages, of connections and of big frames, and a
//! client that never reads. Each test shows the abuser is contained (rate limit,
//! TCP backpressure, connection cap, slow-consumer eviction, bounded memory) and that
//! another client, at the same time, is served normally.
//!
//! The floods are pre-built masked frames written in one go from a raw socket, so
//! the test sends as fast as the kernel takes bytes, not as fast as a client library
//! would. The tests run one at a time: they measure the resident memory of this
//! process (the server runs in it) and would skew each other's floods and timings.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Upgrades a raw socket to `path`. Returns the socket to write hand-made frames on,
/// and a tungstenite client on a clone of it that the test only ever reads from.
fn raw_ws(addr: SocketAddr, path: &str) -> (TcpStream, Client) {
    let stream = upgraded(addr, path);
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let reader =
        WebSocket::from_raw_socket(stream.try_clone().unwrap(), Role::Client, Some(config));
    (stream, reader)
}

/// Resident memory of this process (server included), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

#[test]
fn ten_thousand_chat_messages_are_rate_limited_and_the_room_still_talks() {
    const FLOOD: usize = 10_000;
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "flood", Some("bob"));
    let (mut mallory_tx, mut mallory) = raw_ws(addr, "/ws/chat/flood?name=mallory");
    assert_eq!(next_json(&mut mallory)["type"], "welcome");
    assert_eq!(next_of_type(&mut bob, "join")["name"], "mallory");

    let flood: Vec<u8> = (0..FLOOD)
        .flat_map(|i| masked(TEXT, format!("m{i}").as_bytes()))
        .collect();
    let started = Instant::now();
    // Mallory reads her answers while she floods, as a real client would: one per
    // message, a `rate_limited` error or her own message coming back from the room.
    let answers = thread::spawn(move || {
        let (mut delivered, mut limited) = (0usize, 0usize);
        while delivered + limited < FLOOD {
            let msg = next_json(&mut mallory);
            match (msg["type"].as_str(), msg["code"].as_str()) {
                (Some("message"), _) => delivered += 1,
                (Some("error"), Some("rate_limited")) => limited += 1,
                _ => panic!("unexpected {msg}"),
            }
        }
        (mallory, delivered, limited)
    });
    mallory_tx.write_all(&flood).expect("the flood is taken");
    let (mut mallory, delivered, limited) = answers.join().expect("every message answered");
    let elapsed = started.elapsed();

    // Everything the hub let through is in Bob's queue before his own message.
    say(&mut bob, "bob here");
    let mut seen = 0;
    loop {
        let msg = next_of_type(&mut bob, "message");
        match msg["from"].as_str() {
            Some("mallory") => seen += 1,
            Some("bob") => break,
            _ => panic!("unexpected {msg}"),
        }
    }
    let allowed = 41 + (20.0 * elapsed.as_secs_f64()).ceil() as usize;
    assert_eq!(seen, delivered, "Bob sees exactly what was let through");
    assert!(
        seen <= allowed,
        "{seen} flood messages reached Bob in {elapsed:?}"
    );
    assert!(limited >= FLOOD - allowed, "only {limited} were limited");
    assert_eq!(next_of_type(&mut mallory, "message")["from"], "bob");

    // Mallory's connection survived: once the bucket refills, she is heard again.
    thread::sleep(Duration::from_millis(150));
    mallory_tx.write_all(&masked(TEXT, b"still here")).unwrap();
    let msg = next_of_type(&mut bob, "message");
    assert_eq!(
        (&msg["from"], &msg["text"]),
        (&"mallory".into(), &"still here".into())
    );
}

/// What a relay reader got from a flood.
struct FloodOutcome {
    /// Messages received, all in order with no gap.
    delivered: u32,
    /// The Close that ended the reading early, if one did.
    close: Option<tungstenite::protocol::CloseFrame>,
    /// The flooder's socket, still open.
    flooder: TcpStream,
}

/// One raw relay client writes `count` tiny numbered messages in a single write
/// while a tungstenite client in the same room reads as fast as it can, and a pair of
/// clients in another room talk meanwhile. Asserts the reader gets a gap-free, ordered
/// run of messages, ended only by the flood's end or by a Close.
fn relay_flood(addr: SocketAddr, count: u32) -> FloodOutcome {
    let mut reader = connect(addr, "/ws/relay/flood");
    let (mut flooder, _) = raw_ws(addr, "/ws/relay/flood");
    // Membership is settled once a message from the room went through.
    let mut probe = connect(addr, "/ws/relay/flood");
    probe.send(Message::text("ready")).unwrap();
    assert_eq!(next(&mut reader), Message::text("ready"));
    drop(probe);
    let mut calm = connect(addr, "/ws/relay/calm");
    let mut calm_peer = connect(addr, "/ws/relay/calm");

    let flood: Vec<u8> = (0..count)
        .flat_map(|n| {
            let mut payload = n.to_be_bytes().to_vec();
            payload.extend_from_slice(b"0123456789ab");
            masked(BINARY, &payload)
        })
        .collect();
    let writer = thread::spawn(move || {
        flooder.write_all(&flood).expect("the flood is taken");
        flooder
    });
    let other_room = thread::spawn(move || {
        let started = Instant::now();
        calm.send(Message::text("unbothered")).unwrap();
        assert_eq!(next(&mut calm_peer), Message::text("unbothered"));
        started.elapsed()
    });
    let (mut delivered, mut close) = (0, None);
    while delivered < count {
        match next(&mut reader) {
            Message::Binary(b) => {
                assert_eq!(b.len(), 16);
                assert_eq!(
                    b[..4],
                    delivered.to_be_bytes(),
                    "message {delivered} in order"
                );
                delivered += 1;
            }
            Message::Close(frame) => {
                close = frame;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let flooder = writer.join().unwrap();
    let latency = other_room.join().expect("the other room talks");
    assert!(
        latency < Duration::from_secs(1),
        "the other room waited {latency:?}"
    );
    FloodOutcome {
        delivered,
        close,
        flooder,
    }
}

#[test]
fn relay_flood_arrives_in_order_while_other_rooms_talk_and_the_flooder_stays_connected() {
    const FLOOD: u32 = 10_000;
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let mut outcome = relay_flood(addr, FLOOD);
    // What the server guarantees to a reader: every message, in order, or, if its
    // queue overflows, an ordered prefix and then Close 1008 (see the ignored
    // `relay_flood_reaches_a_normal_reader_whole_and_in_order`).
    if let Some(close) = &outcome.close {
        assert_slow_consumer_close(close);
    } else {
        assert_eq!(outcome.delivered, FLOOD);
    }
    // Flooding is not a protocol error: the flooder is still a member of its room.
    // (Once the flood, the probe and the other room's message are all in, so that
    // the newcomer gets only what follows.)
    eventually(|| {
        (try_metric(addr, "switchboard_messages_in_total")? >= u64::from(FLOOD) + 2).then_some(())
    });
    let mut newcomer = connect(addr, "/ws/relay/flood");
    outcome
        .flooder
        .write_all(&masked(TEXT, b"still here"))
        .unwrap();
    assert_eq!(next(&mut newcomer), Message::text("still here"));
}

#[test]
fn relay_flood_reaches_a_normal_reader_whole_and_in_order() {
    const FLOOD: u32 = 10_000;
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let outcome = relay_flood(addr, FLOOD);
    assert_eq!(
        (outcome.delivered, outcome.close),
        (FLOOD, None),
        "the reader was cut off"
    );
    assert_eq!(
        try_metric(addr, "switchboard_slow_consumer_drops_total"),
        Some(0)
    );
}

#[test]
fn connection_flood_is_capped_per_ip_while_an_earlier_client_keeps_echoing() {
    const CAP: usize = 50;
    const FLOOD: usize = 300;
    let _serial = serial();
    let server = start_with(|b| b.max_connections_per_ip(CAP));
    let addr = server.local_addr();
    let mut good = connect(addr, "/ws/echo");
    assert_echoes(&mut good, "before");

    let request = upgrade_request("/ws/echo", "");
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
                // A refused connection may be closed before the request is written.
                let _ = stream.write_all(request.as_bytes());
                flood.push(stream);
            }
            Err(e) => panic!("connect refused by the kernel: {e}"),
        }
    }
    assert_eq!(flood.len(), FLOOD, "the flood was slower than 5 s");
    let (mut upgraded, mut refused, mut hung_up) = (0, 0, 0);
    for stream in &mut flood {
        let head = read_head(stream);
        if head.is_empty() {
            hung_up += 1; // over the cap and past the refusers' limit: closed silently
        } else {
            match status(&head) {
                101 => upgraded += 1,
                503 => refused += 1,
                other => panic!("unexpected status {other}: {head}"),
            }
        }
    }
    assert_eq!(upgraded, CAP - 1, "the cap, less the good client's slot");
    assert!(refused >= 1, "no 503 at all ({hung_up} hung up)");
    assert_eq!(refused + hung_up, FLOOD - (CAP - 1));
    assert_echoes(&mut good, "during");

    drop(flood);
    eventually(|| {
        // The good client and the `/metrics` request itself.
        (try_metric(addr, "switchboard_open_connections") == Some(2)).then_some(())
    });
    assert_eq!(try_metric(addr, "switchboard_open_websockets"), Some(1));
    assert_echoes(&mut good, "after");
}

#[test]
fn fifty_one_mib_messages_are_echoed_intact_in_bounded_memory() {
    const COUNT: usize = 50;
    const SIZE: usize = 1 << 20; // the default limit, exactly
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let mut bystander = connect(addr, "/ws/echo");
    let (mut tx, mut rx) = raw_ws(addr, "/ws/echo");
    let payload = |i: usize| -> Vec<u8> { (0..SIZE).map(|j| (i * 7 + j / 4096) as u8).collect() };
    let before = rss_kib();

    let writer = thread::spawn(move || {
        for i in 0..COUNT {
            tx.write_all(&masked(BINARY, &payload(i))).expect("sent");
            thread::sleep(Duration::from_millis(3));
        }
        tx
    });
    let mut peak = before;
    for i in 0..COUNT {
        match next(&mut rx) {
            Message::Binary(b) => assert!(b[..] == payload(i)[..], "message {i} intact"),
            other => panic!("message {i}: unexpected {other:?}"),
        }
        peak = peak.max(rss_kib());
    }
    let _tx = writer.join().unwrap();
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(growth_mib < 200, "resident memory grew by {growth_mib} MiB");
    assert_echoes(&mut bystander, "unaffected");
}

#[test]
fn reader_that_never_reads_is_closed_with_1008_in_bounded_memory_while_others_get_everything() {
    const SIZE: usize = 16 * 1024;
    const MAX: u32 = 3000; // 48 MiB: far more than the stalled socket and outbox hold
    const WINDOW: u32 = 4;
    let _serial = serial();
    let server = start_with(|b| b.outbox_limits(64, 256 * 1024));
    let addr = server.local_addr();
    let mut stalled = connect(addr, "/ws/relay/stall");
    let mut fast = connect(addr, "/ws/relay/stall");
    let mut sender = connect(addr, "/ws/relay/stall");
    sender.send(Message::text("ready")).unwrap();
    assert_eq!(next(&mut fast), Message::text("ready"));
    assert_eq!(next(&mut stalled), Message::text("ready"));
    let before = rss_kib();

    let received = Arc::new(AtomicU32::new(0));
    let progress = Arc::clone(&received);
    let reader = thread::spawn(move || {
        let mut n = 0u32;
        loop {
            match next(&mut fast) {
                Message::Binary(b) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(b[..4], n.to_be_bytes(), "message {n} in order");
                    n += 1;
                    progress.store(n, Ordering::Release);
                }
                Message::Text(t) if t.as_str() == "end" => return (fast, n),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0u32;
    let mut evicted_at = None;
    let mut peak = before;
    while sent < MAX && started.elapsed() < Duration::from_secs(15) {
        let mut payload = vec![0u8; SIZE];
        payload[..4].copy_from_slice(&sent.to_be_bytes());
        // The room talks at the pace of its live readers: the fast one is never more
        // than a few messages (well under its 256 KiB outbox) behind. The stalled one
        // falls behind without bound.
        while sent - received.load(Ordering::Acquire) > WINDOW {
            if reader.is_finished() {
                // It can only have stopped by failing: show why.
                match reader.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(_) => panic!("the fast reader stopped early"),
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "fast reader stuck"
            );
            thread::sleep(Duration::from_micros(200));
        }
        sender.send(Message::binary(payload)).unwrap();
        sent += 1;
        if sent.is_multiple_of(32) {
            peak = peak.max(rss_kib());
            match evicted_at {
                Some(at) if sent >= at + 64 => break,
                Some(_) => {}
                None => {
                    if metric(addr, "switchboard_slow_consumer_drops_total") == 1 {
                        evicted_at = Some(sent);
                    }
                }
            }
        }
    }
    let evicted_at = evicted_at.expect("the stalled client was never evicted");
    sender.send(Message::text("end")).unwrap();
    let (_fast, got) = reader
        .join()
        .expect("the fast reader got everything in order");
    assert_eq!(got, sent, "every message reached the fast reader");

    // The stalled client finally reads: what was already on its way, then 1008.
    assert_slow_consumer_close(&close_frame(&mut stalled).expect("a Close frame"));
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 64,
        "resident memory grew by {growth_mib} MiB (evicted after {evicted_at} messages)"
    );
}

/// A client may have far more messages at the store than its outbox holds: the store
/// commits them in big batches and all their echoes come back at once. It is pushed
/// back by TCP while its requests are in flight, never closed as a slow consumer
/// while it reads.
#[test]
fn thousands_of_messages_in_flight_from_a_reading_client_are_all_echoed_without_1008() {
    const SENT: usize = 5_000;
    let _serial = serial();
    let server = start_with(|b| b.rate_per_sec(1_000_000).rate_burst(1_000_000));
    let addr = server.local_addr();
    let (mut tx, mut rx) = raw_ws(addr, "/ws/chat/inflight?name=fast");
    assert_eq!(next_json(&mut rx)["type"], "welcome");
    let reader = thread::spawn(move || {
        let mut echoed = 0;
        while echoed < SENT {
            match rx.read() {
                Ok(Message::Text(t)) => {
                    let m: serde_json::Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(m["type"], "message", "{m}");
                    echoed += 1;
                }
                Ok(Message::Close(frame)) => panic!("closed after {echoed}: {frame:?}"),
                Ok(_) => {}
                Err(e) => panic!("after {echoed} echoes: {e}"),
            }
        }
        echoed
    });
    let flood: Vec<u8> = (0..SENT)
        .flat_map(|i| masked(TEXT, format!("m{i}").as_bytes()))
        .collect();
    tx.write_all(&flood)
        .expect("the server takes them all, at its pace");
    assert_eq!(reader.join().expect("every message echoed"), SENT);
    assert_eq!(metric(addr, "switchboard_slow_consumer_drops_total"), 0);
}
