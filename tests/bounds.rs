//! Bounded state: one address cannot grow the store without bound. Rooms with stored
//! messages are capped (`--max-rooms`), new rooms per client are rate-limited, `GET
//! /api/rooms` is paged, and out-of-range numbers are `bad_request` / `400`, never a
//! store error.

mod common;

use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;

fn post(addr: SocketAddr, from: [u8; 4], room: &str, text: &str) -> String {
    let request = format!(
        "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    let mut stream = tcp_from(from, addr);
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    read_to_close(&mut stream)
}

fn json_of(response: &str) -> Value {
    serde_json::from_str(body(response)).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// The names of a `GET /api/rooms` page, in order.
fn room_names(page: &Value) -> Vec<&str> {
    page["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect()
}

/// The error a chat client gets for `request`, or its first message otherwise.
fn answer_to(ws: &mut Client, request: Value) -> Value {
    send_json(ws, request);
    next_json(ws)
}

#[test]
fn past_max_rooms_a_new_room_is_too_many_and_old_rooms_still_work() {
    let server = start_with(|b| b.max_rooms(3).api_token("t0ken").api_rate(1000));
    let addr = server.local_addr();
    for room in ["r1", "r2", "r3"] {
        assert_eq!(status(&post(addr, [127, 0, 0, 1], room, "hi")), 201);
    }
    let refused = post(addr, [127, 0, 0, 1], "r4", "hi");
    assert_eq!(status(&refused), 403, "{refused}");
    assert_eq!(json_of(&refused)["error"], "too_many_rooms");
    // Another address cannot either: the cap is the server's.
    assert_eq!(status(&post(addr, [127, 0, 0, 2], "r5", "hi")), 403);
    // A chat member in a new room is told, and stays connected.
    let (mut alice, _) = chat(addr, "r6", Some("alice"));
    say(&mut alice, "hello");
    let error = next_of_type(&mut alice, "error");
    assert_eq!(error["code"], "too_many_rooms", "{error}");
    send_json(&mut alice, json!({"type": "join", "room": "r1"}));
    let welcome = next_of_type(&mut alice, "welcome");
    assert_eq!(welcome["room"], "r1");
    say(&mut alice, "old rooms still take messages");
    assert_eq!(
        next_of_type(&mut alice, "message")["text"],
        "old rooms still take messages"
    );
    assert_eq!(status(&post(addr, [127, 0, 0, 1], "r2", "still fine")), 201);
}

#[test]
fn one_address_starts_new_rooms_slowly_and_others_are_unaffected() {
    let server = start_with(|b| b.api_token("t0ken").api_rate(1000));
    let addr = server.local_addr();
    // Many at once, the way a script would.
    let threads: Vec<_> = (0..60)
        .map(|i| {
            std::thread::spawn(move || {
                let r = post(addr, [127, 0, 0, 3], &format!("flood{i}"), "x");
                if status(&r) != 201 {
                    eprintln!("{r}");
                }
                status(&r)
            })
        })
        .collect();
    let codes: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("a poster"))
        .collect();
    let created = codes.iter().filter(|&&c| c == 201).count();
    let limited = codes.iter().filter(|&&c| c == 429).count();
    assert_eq!(created + limited, 60, "{codes:?}");
    assert!(
        (20..=21).contains(&created),
        "a burst of 20 new rooms: {codes:?}"
    );
    // The same address may still post to a room it already has.
    let started = codes
        .iter()
        .position(|&c| c == 201)
        .expect("a room started");
    let again = post(addr, [127, 0, 0, 3], &format!("flood{started}"), "again");
    assert_eq!(status(&again), 201, "{again}");
    // Another address, and a chat member elsewhere, start rooms as usual.
    assert_eq!(status(&post(addr, [127, 0, 0, 4], "mine", "x")), 201);
    let (mut bob, _) = chat(addr, "bobs-room", Some("bob"));
    say(&mut bob, "hello");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "hello");
}

#[test]
fn rooms_are_listed_by_name_a_page_at_a_time() {
    let server = start_with(|b| b.api_token("t0ken").api_rate(1000));
    let addr = server.local_addr();
    let names: Vec<String> = (0..15).map(|i| format!("room{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Each from its own address: new rooms are limited per address.
        let from = [127, 0, 1, i as u8 + 1];
        assert_eq!(status(&post(addr, from, name, "x")), 201);
    }
    let (_carol, _) = chat(addr, "room07", Some("carol"));
    let (_dave, _) = chat(addr, "zzz-people-only", Some("dave"));
    let first = json_of(&get(addr, "/api/rooms?limit=10"));
    let listed = room_names(&first);
    assert_eq!(
        listed,
        names[..10].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(first["more"], true);
    assert_eq!(
        first["rooms"][7],
        json!({"name": "room07", "members": 1, "last_id": 1})
    );
    let rest = json_of(&get(addr, "/api/rooms?limit=10&after=room09"));
    let listed = room_names(&rest);
    assert_eq!(
        listed,
        [
            "room10",
            "room11",
            "room12",
            "room13",
            "room14",
            "zzz-people-only"
        ]
    );
    assert_eq!(rest["more"], false);
    let all = json_of(&get(addr, "/api/rooms"));
    assert_eq!(
        all["rooms"].as_array().map(Vec::len),
        Some(16),
        "default page: 100"
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=no%20spaces",
        "limit=99999999999999999999",
    ] {
        let response = get(addr, &format!("/api/rooms?{bad}"));
        assert_eq!(status(&response), 400, "{bad}: {response}");
        assert_eq!(json_of(&response)["error"], "bad_request");
    }
    assert_eq!(status(&get(addr, "/api/rooms?limit=1000")), 200);
}

#[test]
fn out_of_range_numbers_are_bad_requests_never_store_errors() {
    let server = start_with(|b| b.api_token("t0ken"));
    let addr = server.local_addr();
    assert_eq!(status(&post(addr, [127, 0, 0, 1], "nums", "one")), 201);
    let (mut alice, _) = chat(addr, "nums", Some("alice"));
    for request in [
        json!({"type": "history", "before": 9_223_372_036_854_775_808u64}),
        json!({"type": "history", "before": u64::MAX}),
        json!({"type": "history", "limit": 0}),
        json!({"type": "history", "limit": 201}),
    ] {
        let answer = answer_to(&mut alice, request.clone());
        assert_eq!(answer["type"], "error", "{request}: {answer}");
        assert_eq!(answer["code"], "bad_request", "{request}: {answer}");
    }
    let fine = answer_to(
        &mut alice,
        json!({"type": "history", "before": 9_223_372_036_854_775_807u64, "limit": 200}),
    );
    assert_eq!(fine["type"], "history", "{fine}");
    for query in [
        "before=9223372036854775808",
        "after=18446744073709551615",
        "before=18446744073709551616",
        "limit=0",
    ] {
        let response = get(addr, &format!("/api/rooms/nums/messages?{query}"));
        assert_eq!(status(&response), 400, "{query}: {response}");
        assert_eq!(json_of(&response)["error"], "bad_request");
    }
    // A resume from an id past any the store gives is a fresh welcome, not a failure.
    let (_, welcome) = chat_url(
        addr,
        "/ws/chat/nums?name=bob&since=9223372036854775808&epoch=x",
    );
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(metric(addr, "switchboard_store_errors_total"), 0);
    say(&mut alice, "still here");
    assert_eq!(next_of_type(&mut alice, "message")["text"], "still here");
}
