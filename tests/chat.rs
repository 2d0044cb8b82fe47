//! Chat protocol v1 on `/ws/chat`  through real sockets.
//!
//! Negative checks ("c never sees the direct message") use ordering rather than
//! sleeps: the hub handles events one at a time and each outbox is FIFO, so if a
//! later message is the next thing a client reads, nothing was delivered before it.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The next `message`, checked to be `text` from `from`.
fn expect_message(ws: &mut Client, from: &str, text: &str) -> Value {
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["from"], from, "sender of {msg}");
    assert_eq!(msg["text"], text, "text of {msg}");
    msg
}

/// The next `error`, checked to carry `code` and a human-readable message.
fn expect_error(ws: &mut Client, code: &str) -> Value {
    let msg = next_of_type(ws, "error");
    assert_eq!(msg["code"], code, "error code in {msg}");
    assert!(msg["message"].is_string(), "error has a message: {msg}");
    msg
}

/// The `text` of each message in a list (a welcome's `history`).
fn texts(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect()
}

/// Names in a `members` array.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|n| n.as_str().expect("a name"))
        .collect()
}

/// Sends `frame`, expects the error `code`, then checks the connection still carries
/// chat both ways.
fn error_then_still_works(frame: Message, code: &str) {
    let server = start();
    let addr = server.local_addr();
    let (mut a, _) = chat(addr, "errs", Some("alice"));
    a.send(frame).expect("send");
    expect_error(&mut a, code);
    say(&mut a, "still here");
    assert_eq!(next_json(&mut a)["text"], "still here");
}

fn is_guest(name: &Value) -> bool {
    name.as_str()
        .and_then(|n| n.strip_prefix("guest-"))
        .is_some_and(|n| n.parse::<u64>().is_ok())
}

#[test]
fn welcome_names_the_default_room_and_lists_members_including_self() {
    let server = start();
    let addr = server.local_addr();
    let (_alice, welcome) = chat_url(addr, "/ws/chat?name=alice");
    assert_eq!(welcome["name"], "alice");
    assert_eq!(welcome["room"], "lobby");
    assert_eq!(names(&welcome["members"]), ["alice"]);
    assert_eq!(welcome["history"], json!([]));

    // `/ws/chat` and `/ws/chat/lobby` are the same room.
    let (_bob, welcome) = chat(addr, "lobby", Some("bob"));
    assert_eq!(welcome["name"], "bob");
    assert_eq!(welcome["room"], "lobby");
    assert_eq!(names(&welcome["members"]), ["alice", "bob"]);
    assert!(welcome["history"].is_array());
}

#[test]
fn every_member_sees_every_message_in_the_same_order_with_the_same_ids() {
    let server = start();
    let addr = server.local_addr();
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|name| chat(addr, "trio", Some(name)).0)
        .collect();
    for round in 0..3 {
        for (i, ws) in clients.iter_mut().enumerate() {
            say(ws, &format!("round {round} from {i}"));
        }
    }
    let seen: Vec<Vec<Value>> = clients
        .iter_mut()
        .map(|ws| (0..9).map(|_| next_of_type(ws, "message")).collect())
        .collect();
    for msg in &seen[0] {
        assert_eq!(msg["room"], "trio");
        assert!(msg["from"].is_string(), "from in {msg}");
        assert!(msg["text"].is_string(), "text in {msg}");
        assert!(msg["ts"].as_u64().is_some_and(|ts| ts > 0), "ts in {msg}");
    }
    let ids: Vec<u64> = seen[0].iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let mut sent: Vec<&str> = seen[0]
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    sent.sort_unstable();
    assert_eq!(sent.len(), 9);
    sent.dedup();
    assert_eq!(sent.len(), 9, "all nine messages, none twice");
    let key = |m: &Value| (m["id"].clone(), m["from"].clone(), m["text"].clone());
    for other in &seen[1..] {
        assert_eq!(
            other.iter().map(key).collect::<Vec<_>>(),
            seen[0].iter().map(key).collect::<Vec<_>>(),
            "same messages, same order, same ids"
        );
    }
}

#[test]
fn join_is_announced_to_existing_members_but_not_to_the_joiner() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "presence", Some("alice"));
    let (mut bob, _) = chat(addr, "presence", Some("bob"));
    let join = next_json(&mut alice);
    assert_eq!(join["type"], "join");
    assert_eq!(join["room"], "presence");
    assert_eq!(join["name"], "bob");
    assert!(join["ts"].is_u64());
    say(&mut alice, "hi bob");
    // Bob's first message after the welcome is alice's, not his own join.
    let msg = next_json(&mut bob);
    assert_eq!(msg["type"], "message", "bob got {msg}");
    assert_eq!(msg["text"], "hi bob");
}

#[test]
fn normal_close_is_announced_as_leave_with_reason_closed() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "presence", Some("alice"));
    let (bob, _) = chat(addr, "presence", Some("bob"));
    close_politely(bob);
    let leave = next_of_type(&mut alice, "leave");
    assert_eq!(leave["room"], "presence");
    assert_eq!(leave["name"], "bob");
    assert_eq!(leave["reason"], "closed");
    assert!(leave["ts"].is_u64());
}

#[test]
fn newcomer_gets_earlier_messages_in_welcome_history_in_order() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "hist", Some("alice"));
    let sent = ["one", "two", "three", "four", "five"];
    for text in sent {
        say(&mut alice, text);
    }
    let ids: Vec<Value> = sent
        .iter()
        .map(|text| expect_message(&mut alice, "alice", text)["id"].clone())
        .collect();
    let (_bob, welcome) = chat(addr, "hist", Some("bob"));
    assert_eq!(texts(&welcome["history"]), sent);
    let history = welcome["history"].as_array().unwrap();
    for (line, id) in history.iter().zip(&ids) {
        assert_eq!(line["type"], "message");
        assert_eq!(line["from"], "alice");
        assert_eq!(line["room"], "hist");
        assert_eq!(&line["id"], id);
        assert!(line["ts"].is_u64());
    }
}

#[test]
fn history_keeps_only_the_configured_number_of_messages() {
    let server = start_with(|b| b.history(3));
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "hist", Some("alice"));
    let sent = ["one", "two", "three", "four", "five"];
    for text in sent {
        say(&mut alice, text);
    }
    for text in sent {
        expect_message(&mut alice, "alice", text);
    }
    let (_bob, welcome) = chat(addr, "hist", Some("bob"));
    assert_eq!(texts(&welcome["history"]), ["three", "four", "five"]);
}

#[test]
fn rename_is_broadcast_to_the_room() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "names", Some("alice"));
    let (mut bob, _) = chat(addr, "names", Some("bob"));
    send_json(&mut bob, json!({"type": "rename", "name": "robert"}));
    for ws in [&mut alice, &mut bob] {
        let rename = next_of_type(ws, "rename");
        assert_eq!(rename["room"], "names");
        assert_eq!(rename["from"], "bob");
        assert_eq!(rename["to"], "robert");
        assert!(rename["ts"].is_u64());
    }
    say(&mut bob, "new name");
    expect_message(&mut alice, "robert", "new name");
}

#[test]
fn rename_to_a_name_in_use_is_name_taken_and_the_connection_stays_usable() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "names", Some("alice"));
    let (mut bob, _) = chat(addr, "names", Some("bob"));
    send_json(&mut bob, json!({"type": "rename", "name": "alice"}));
    expect_error(&mut bob, "name_taken");
    // Names are unique regardless of case.
    send_json(&mut bob, json!({"type": "rename", "name": "ALICE"}));
    expect_error(&mut bob, "name_taken");
    say(&mut bob, "still bob");
    expect_message(&mut bob, "bob", "still bob");
    // Alice saw no rename, only bob's join and then his message.
    assert_eq!(next_json(&mut alice)["type"], "join");
    let msg = next_json(&mut alice);
    assert_eq!(
        (&msg["type"], &msg["from"]),
        (&json!("message"), &json!("bob"))
    );
}

#[test]
fn members_list_shows_the_new_name_after_rename() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "names", Some("alice"));
    let (_bob, _) = chat(addr, "names", Some("bob"));
    send_json(&mut alice, json!({"type": "rename", "name": "alicia"}));
    next_of_type(&mut alice, "rename");
    send_json(&mut alice, json!({"type": "members"}));
    let members = next_of_type(&mut alice, "members");
    assert_eq!(names(&members["members"]), ["alicia", "bob"]);
    let (_carol, welcome) = chat(addr, "names", Some("carol"));
    assert_eq!(names(&welcome["members"]), ["alicia", "bob", "carol"]);
}

#[test]
fn duplicate_name_on_join_gets_a_numeric_suffix_regardless_of_case() {
    let server = start();
    let addr = server.local_addr();
    let (_a1, w1) = chat(addr, "dup", Some("alice"));
    // Another room: names are unique per server, not per room.
    let (_a2, w2) = chat(addr, "elsewhere", Some("alice"));
    let (_a3, w3) = chat(addr, "dup", Some("Alice"));
    assert_eq!(w1["name"], "alice");
    assert_eq!(w2["name"], "alice-2");
    assert_eq!(w3["name"], "Alice-3");
    assert_eq!(names(&w3["members"]), ["alice", "Alice-3"]);
}

#[test]
fn no_name_gets_a_guest_name() {
    let server = start();
    let addr = server.local_addr();
    let (_g1, w1) = chat(addr, "guests", None);
    let (_g2, w2) = chat(addr, "guests", None);
    assert!(is_guest(&w1["name"]), "guest-N, got {}", w1["name"]);
    assert!(is_guest(&w2["name"]), "guest-N, got {}", w2["name"]);
    assert_ne!(w1["name"], w2["name"]);
}

#[test]
fn direct_reaches_the_target_with_a_copy_to_the_sender_and_nobody_else() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "dm", Some("alice"));
    let (mut bob, _) = chat(addr, "dm", Some("bob"));
    let (mut carol, _) = chat(addr, "dm", Some("carol"));
    send_json(
        &mut alice,
        json!({"type": "direct", "to": "bob", "text": "psst"}),
    );
    for ws in [&mut bob, &mut alice] {
        let direct = next_of_type(ws, "direct");
        assert_eq!(direct["from"], "alice");
        assert_eq!(direct["to"], "bob");
        assert_eq!(direct["text"], "psst");
        assert!(direct["ts"].is_u64());
    }
    say(&mut alice, "public");
    // Carol joined last, so she has seen nothing yet: the next thing she reads is the
    // public message, which the hub handled after the direct one.
    let msg = next_json(&mut carol);
    assert_eq!(msg["type"], "message", "carol got {msg}");
    assert_eq!(msg["text"], "public");
}

#[test]
fn direct_reaches_a_user_in_another_room() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "here", Some("alice"));
    let (mut bob, _) = chat(addr, "there", Some("bob"));
    send_json(
        &mut alice,
        json!({"type": "direct", "to": "bob", "text": "across rooms"}),
    );
    let direct = next_json(&mut bob);
    assert_eq!(direct["type"], "direct");
    assert_eq!(direct["from"], "alice");
    assert_eq!(direct["text"], "across rooms");
    assert_eq!(next_json(&mut alice)["type"], "direct", "sender's copy");
}

#[test]
fn direct_to_an_unknown_name_is_no_such_user() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "dm", Some("alice"));
    send_json(
        &mut alice,
        json!({"type": "direct", "to": "nobody", "text": "hello?"}),
    );
    expect_error(&mut alice, "no_such_user");
    say(&mut alice, "still here");
    expect_message(&mut alice, "alice", "still here");
}

#[test]
fn bad_json_is_an_error_and_the_connection_keeps_working() {
    error_then_still_works(Message::text("{nope"), "bad_json");
}

#[test]
fn unknown_type_is_an_error_and_the_connection_keeps_working() {
    error_then_still_works(Message::text(r#"{"type":"dance"}"#), "unknown_type");
}

#[test]
fn missing_field_is_an_error_and_the_connection_keeps_working() {
    error_then_still_works(Message::text(r#"{"type":"message"}"#), "missing_field");
}

#[test]
fn binary_frame_with_no_file_announced_is_bad_file_and_the_connection_stays_open() {
    error_then_still_works(Message::binary(vec![1, 2, 3]), "bad_file");
}

#[test]
fn messages_stay_in_their_room() {
    let server = start();
    let addr = server.local_addr();
    let (mut a, _) = chat(addr, "a", Some("alice"));
    let (mut b, _) = chat(addr, "b", Some("bob"));
    say(&mut a, "for room a");
    expect_message(&mut a, "alice", "for room a");
    say(&mut b, "for room b");
    let msg = next_json(&mut b);
    assert_eq!(msg["text"], "for room b", "bob got {msg}");
    assert_eq!(msg["room"], "b");
}

#[test]
fn join_switches_room_with_a_new_welcome_leave_switched_and_join() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "a", Some("alice"));
    let (mut bob, _) = chat(addr, "a", Some("bob"));
    let (mut carol, _) = chat(addr, "b", Some("carol"));
    say(&mut carol, "b's history");
    expect_message(&mut carol, "carol", "b's history");

    send_json(&mut bob, json!({"type": "join", "room": "b"}));
    let welcome = next_of_type(&mut bob, "welcome");
    assert_eq!(welcome["name"], "bob");
    assert_eq!(welcome["room"], "b");
    assert_eq!(names(&welcome["members"]), ["carol", "bob"]);
    assert_eq!(texts(&welcome["history"]), ["b's history"]);

    let leave = next_of_type(&mut alice, "leave");
    assert_eq!(leave["room"], "a");
    assert_eq!(leave["name"], "bob");
    assert_eq!(leave["reason"], "switched");
    let join = next_json(&mut carol);
    assert_eq!(join["type"], "join");
    assert_eq!(join["room"], "b");
    assert_eq!(join["name"], "bob");

    // Bob now talks in b, and a no longer hears him.
    say(&mut bob, "hello b");
    expect_message(&mut carol, "bob", "hello b");
    say(&mut alice, "only a");
    let msg = next_json(&mut alice);
    assert_eq!(msg["text"], "only a", "alice got {msg}");
}

#[test]
fn join_with_a_bad_room_name_is_bad_room() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "a", Some("alice"));
    send_json(&mut alice, json!({"type": "join", "room": "no spaces"}));
    expect_error(&mut alice, "bad_room");
    say(&mut alice, "still in a");
    let msg = expect_message(&mut alice, "alice", "still in a");
    assert_eq!(msg["room"], "a");
}

#[test]
fn plain_text_frame_is_a_message() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "plain", Some("alice"));
    alice.send(Message::text("hello")).expect("send");
    let msg = expect_message(&mut alice, "alice", "hello");
    assert_eq!(msg["room"], "plain");
}

#[test]
fn plain_text_line_arrives_without_its_line_end() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "lines", Some("alice"));
    let (mut bob, _) = chat(addr, "lines", Some("bob"));
    // What websocat sends for a typed line, then what a Windows client would.
    alice.send(Message::text("hi\n")).expect("send");
    expect_message(&mut bob, "alice", "hi");
    alice.send(Message::text("there\r\n")).expect("send");
    expect_message(&mut bob, "alice", "there");
    // Only the one line end goes: the rest of the text is the sender's.
    alice.send(Message::text("two\nlines\n\n")).expect("send");
    expect_message(&mut bob, "alice", "two\nlines\n");
    // And the history a newcomer gets is the same.
    let (_carol, welcome) = chat(addr, "lines", Some("carol"));
    assert_eq!(welcome["history"][0]["text"], "hi");
}

#[test]
fn rooms_request_lists_rooms_with_people_busiest_first() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "quiet", Some("alice"));
    let _b = chat(addr, "busy", Some("bob"));
    let _c = chat(addr, "busy", Some("carol"));
    let (mut dave, _) = chat(addr, "gone", Some("dave"));
    say(&mut dave, "leaves history behind");
    next_of_type(&mut dave, "message");
    dave.close(None).expect("close");
    // Asked until the hub has seen dave leave.
    let rooms = eventually(|| {
        send_json(&mut alice, serde_json::json!({"type": "rooms"}));
        let answer = next_of_type(&mut alice, "rooms");
        let rooms = answer["rooms"].clone();
        (rooms.as_array().map(Vec::len) == Some(2)).then_some(rooms)
    });
    assert_eq!(
        rooms,
        serde_json::json!([
            {"name": "busy", "members": 2},
            {"name": "quiet", "members": 1},
        ]),
        "an empty room is not listed, even with history"
    );
}

#[test]
fn text_over_4_kib_is_text_too_long() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "long", Some("alice"));
    say(&mut alice, &"x".repeat(4097));
    expect_error(&mut alice, "text_too_long");
    say(&mut alice, "short");
    expect_message(&mut alice, "alice", "short");
}

#[test]
fn text_of_exactly_4096_bytes_is_accepted() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "long", Some("alice"));
    let text = "x".repeat(4096);
    say(&mut alice, &text);
    let msg = next_json(&mut alice);
    assert_eq!(msg["type"], "message", "got {msg}");
    assert_eq!(msg["text"], text);
}

#[test]
fn message_burst_is_rate_limited_without_closing_or_affecting_others() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "flood", Some("alice"));
    let (mut bob, _) = chat(addr, "flood", Some("bob"));
    assert_eq!(next_json(&mut alice)["type"], "join");

    let started = Instant::now();
    for i in 0..100 {
        alice.send(Message::text(format!("m{i}"))).expect("send");
    }
    let (mut delivered, mut limited) = (Vec::new(), 0);
    while delivered.len() + limited < 100 {
        let msg = next_json(&mut alice);
        match msg["type"].as_str() {
            Some("message") => delivered.push(msg["text"].as_str().unwrap().to_owned()),
            Some("error") if msg["code"] == "rate_limited" => limited += 1,
            _ => panic!("unexpected {msg}"),
        }
    }
    // Burst 40, then 20 a second: whatever time the burst took buys a few more.
    let refill = (20.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(limited >= 1, "no rate_limited error in 100 messages");
    assert!(
        delivered.len() <= 41 + refill,
        "{} delivered in a burst",
        delivered.len()
    );
    let first: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    assert_eq!(delivered[..40], first, "the first 40 fit in the burst");

    // Bob saw exactly what was delivered, and can still talk at full rate.
    for text in &delivered {
        expect_message(&mut bob, "alice", text);
    }
    say(&mut bob, "bob is fine");
    let msg = next_json(&mut bob);
    assert_eq!(
        (&msg["from"], &msg["text"]),
        (&json!("bob"), &json!("bob is fine"))
    );
    expect_message(&mut alice, "bob", "bob is fine");

    // Alice's connection is still open: once a token comes back, she is heard again.
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        say(&mut alice, "after the flood");
        let msg = next_json(&mut alice);
        if msg["type"] == "message" {
            assert_eq!(msg["text"], "after the flood");
            break;
        }
        assert_eq!(msg["code"], "rate_limited", "got {msg}");
        assert!(Instant::now() < deadline, "never allowed to talk again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn members_request_lists_the_room() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "club", Some("alice"));
    let (_bob, _) = chat(addr, "club", Some("bob"));
    let (_carol, _) = chat(addr, "other", Some("carol"));
    send_json(&mut alice, json!({"type": "members"}));
    let members = next_of_type(&mut alice, "members");
    assert_eq!(members["room"], "club");
    assert_eq!(names(&members["members"]), ["alice", "bob"]);
}

#[test]
fn too_long_name_in_query_gets_a_guest_name_then_bad_name() {
    let server = start();
    let addr = server.local_addr();
    let (mut ws, welcome) = chat(addr, "q", Some(&"n".repeat(40)));
    assert!(
        is_guest(&welcome["name"]),
        "guest-N, got {}",
        welcome["name"]
    );
    expect_error(&mut ws, "bad_name");
}

#[test]
fn control_character_in_query_name_gets_a_guest_name_then_bad_name() {
    let server = start();
    let addr = server.local_addr();
    let (mut ws, welcome) = chat(addr, "q", Some("bell%07"));
    assert!(
        is_guest(&welcome["name"]),
        "guest-N, got {}",
        welcome["name"]
    );
    let error = next_json(&mut ws);
    assert_eq!(error["type"], "error", "right after the welcome");
    assert_eq!(error["code"], "bad_name");
}

#[test]
fn html_in_text_is_delivered_verbatim() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "html", Some("alice"));
    let (mut bob, _) = chat(addr, "html", Some("bob"));
    let html = r#"<script>alert("x")</script> <b>bold</b> &amp; <img src=x onerror=y>"#;
    say(&mut alice, html);
    expect_message(&mut bob, "alice", html);
    expect_message(&mut alice, "alice", html);
}

#[test]
fn answers_come_in_request_order_even_for_errors_found_on_the_connection() {
    let server = start();
    let (mut ws, _) = chat(server.local_addr(), "order", Some("asker"));
    // The message needs the hub; the two errors do not. They still come after it.
    send_json(&mut ws, json!({"type": "members"}));
    say(&mut ws, "first");
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    ws.send(Message::text("{nope")).unwrap();
    let kinds: Vec<String> = (0..4)
        .map(|_| {
            let m = next_json(&mut ws);
            match m["type"].as_str() {
                Some("error") => format!("error {}", m["code"].as_str().unwrap_or("")),
                Some(other) => other.to_owned(),
                None => panic!("no type in {m}"),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["members", "message", "error bad_file", "error bad_json"]
    );
}

#[test]
fn the_welcome_and_info_carry_the_servers_limits() {
    let server = start_with(|b| {
        b.max_text_len(100)
            .max_message_size(5000)
            .max_file_size(70_000)
    });
    let (_alice, welcome) = chat(server.local_addr(), "lobby", Some("alice"));
    let limits =
        serde_json::json!({"max_text_len": 100, "max_message_size": 5000, "max_file_size": 70_000});
    assert_eq!(welcome["limits"], limits);
    let info: serde_json::Value =
        serde_json::from_str(body(&get(server.local_addr(), "/info"))).expect("JSON");
    assert_eq!(info["limits"], limits);
}

/// A message with a `cid` is stored once, however often it is sent: a retry gets the
/// message stored the first time, and nobody else hears it twice. The same `cid` in
/// another room is another message, and a bad one is `bad_request`.
#[test]
fn a_message_sent_again_with_its_cid_is_stored_once() {
    let server = start();
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    let once = json!({"type": "message", "text": "once", "cid": "m-1"});
    send_json(&mut ann, once.clone());
    let first = next_of_type(&mut ann, "message");
    assert_eq!(next_of_type(&mut bob, "message")["id"], first["id"]);
    // The retry (after a lost connection, say) is answered with the first.
    send_json(&mut ann, once.clone());
    let again = next_of_type(&mut ann, "message");
    assert_eq!(
        (&again["id"], &again["text"]),
        (&first["id"], &json!("once"))
    );
    // Bob hears the next message, not a second "once".
    say(&mut ann, "next");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "next");
    send_json(&mut ann, json!({"type": "members"}));
    next_of_type(&mut ann, "members");
    // Another room: another message. A bad cid: refused, and nothing stored.
    send_json(&mut ann, json!({"type": "join", "room": "s"}));
    next_of_type(&mut ann, "welcome");
    send_json(&mut ann, once);
    assert_eq!(next_of_type(&mut ann, "message")["id"], 1, "per room");
    send_json(
        &mut ann,
        json!({"type": "message", "text": "bad", "cid": "not ok"}),
    );
    assert_eq!(next_of_type(&mut ann, "error")["code"], "bad_request");
    let page = get(addr, "/api/rooms/r/messages");
    let page: Value = serde_json::from_str(body(&page)).expect("JSON");
    assert_eq!(texts(&page["messages"]), ["once", "next"]);
}
