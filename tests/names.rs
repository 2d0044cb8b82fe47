//! Names a person can trust: what a name shows is what it is. Invisible and
//! reordering characters are `bad_name`, names are compared in NFC, and a name that
//! looks like a connected member's is taken, in the URL, by `rename` and as an API
//! post's `from`. Through real sockets.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard::ServerHandle;

const TOKEN: &str = "t0ken-for-names";

/// Names nobody can read for what they are, each with what it hides.
const INVISIBLE: [(&str, &str); 6] = [
    ("a\u{200b}b", "a zero-width space"),
    ("\u{200b}", "nothing but a zero-width space"),
    (
        "\u{202e}ecila",
        "a right-to-left override: shows as \"alice\"",
    ),
    ("\u{feff}bob", "a byte order mark"),
    ("a\u{1b}b", "a control character"),
    ("a\u{2028}b", "a line separator"),
];

/// Look-alikes of "alice": case, a Cyrillic а, a fullwidth ａ.
const ALICES: [&str; 3] = ["\u{430}lice", "ALICE", "\u{ff41}lice"];

/// `s` percent-encoded for a query string, every byte but the unreserved ones.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Joins `room` asking for `name`, whatever its characters.
fn join_as(addr: std::net::SocketAddr, room: &str, name: &str) -> (Client, Value) {
    chat_url(addr, &format!("/ws/chat/{room}?name={}", pct(name)))
}

fn expect_error(ws: &mut Client, code: &str) {
    let msg = next_json(ws);
    assert_eq!(msg["type"], "error", "the next message is an error: {msg}");
    assert_eq!(msg["code"], code, "{msg}");
    assert!(msg["message"].is_string(), "{msg}");
}

fn is_guest(name: &Value) -> bool {
    name.as_str()
        .and_then(|n| n.strip_prefix("guest-"))
        .is_some_and(|n| n.parse::<u64>().is_ok())
}

/// `ws` says `text` and the next thing both it and `other` get is that message.
fn says_and_is_heard(ws: &mut Client, other: &mut Client, from: &Value, text: &str) {
    say(ws, text);
    for ws in [ws, other] {
        let msg = next_json(ws);
        assert_eq!(msg["type"], "message", "{msg}");
        assert_eq!((&msg["from"], msg["text"].as_str()), (from, Some(text)));
    }
}

#[test]
fn invisible_characters_in_the_url_get_a_guest_name_then_bad_name() {
    let server = start();
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "hall", Some("bob"));
    for (name, what) in INVISIBLE {
        let (mut ws, welcome) = join_as(addr, "hall", name);
        assert!(
            is_guest(&welcome["name"]),
            "{what}: got {}",
            welcome["name"]
        );
        expect_error(&mut ws, "bad_name");
        let join = next_json(&mut bob);
        assert_eq!(
            (&join["type"], &join["name"]),
            (&json!("join"), &welcome["name"]),
            "{what}: others see the guest name"
        );
        says_and_is_heard(&mut ws, &mut bob, &welcome["name"], "still here");
        close_politely(ws);
        assert_eq!(next_json(&mut bob)["type"], "leave", "{what}");
    }
}

#[test]
fn invisible_characters_by_rename_are_bad_name_and_the_name_stays() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "hall", Some("alice"));
    let (mut bob, _) = chat(addr, "hall", Some("bob"));
    next_of_type(&mut alice, "join");
    for (name, what) in INVISIBLE {
        send_json(&mut bob, json!({"type": "rename", "name": name}));
        expect_error(&mut bob, "bad_name");
        says_and_is_heard(&mut bob, &mut alice, &json!("bob"), what);
    }
}

#[test]
fn a_decomposed_name_is_welcomed_and_announced_in_nfc() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "cafe", Some("alice"));
    let (_rene, welcome) = join_as(addr, "cafe", "rene\u{301}");
    assert_eq!(welcome["name"], "ren\u{e9}");
    assert_eq!(welcome["members"], json!(["alice", "ren\u{e9}"]));
    assert_eq!(next_of_type(&mut alice, "join")["name"], "ren\u{e9}");
}

#[test]
fn a_decomposed_name_collides_with_the_composed_one_connected() {
    let server = start();
    let addr = server.local_addr();
    let (mut composed, _) = join_as(addr, "cafe", "\u{e9}");
    let (_second, welcome) = join_as(addr, "cafe", "e\u{301}");
    assert_eq!(
        welcome["name"], "\u{e9}-2",
        "taken: suffixed as a duplicate is"
    );
    let (mut bob, _) = chat(addr, "cafe", Some("bob"));
    for _ in 0..2 {
        next_of_type(&mut composed, "join");
    }
    send_json(&mut bob, json!({"type": "rename", "name": "e\u{301}"}));
    expect_error(&mut bob, "name_taken");
    says_and_is_heard(&mut bob, &mut composed, &json!("bob"), "still bob");
}

#[test]
fn look_alikes_of_a_connected_name_are_taken_at_join() {
    let server = start();
    let addr = server.local_addr();
    let (_alice, _) = chat(addr, "hall", Some("alice"));
    let mut kept = Vec::new();
    for (n, name) in ALICES.into_iter().enumerate() {
        let (ws, welcome) = join_as(addr, "hall", name);
        assert_eq!(welcome["name"], format!("{name}-{}", n + 2), "{name:?}");
        kept.push(ws);
    }
}

#[test]
fn look_alikes_of_a_connected_name_are_taken_by_rename() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "hall", Some("alice"));
    let (mut bob, _) = chat(addr, "hall", Some("bob"));
    next_of_type(&mut alice, "join");
    for name in ALICES {
        send_json(&mut bob, json!({"type": "rename", "name": name}));
        expect_error(&mut bob, "name_taken");
        says_and_is_heard(&mut bob, &mut alice, &json!("bob"), name);
    }
}

// ---- the HTTP API's `from` ----

fn post_from(server: &ServerHandle, from: Option<&str>) -> String {
    let body = match from {
        Some(from) => json!({"text": "deploy done", "from": from}),
        None => json!({"text": "deploy done"}),
    }
    .to_string();
    raw(
        server.local_addr(),
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn assert_api_error(response: &str, status_code: u16, code: &str) {
    assert_eq!(status(response), status_code, "{response}");
    let body: Value = serde_json::from_str(body(response)).expect("a JSON body");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[test]
fn an_api_post_cannot_speak_as_a_connected_member_or_a_look_alike() {
    let server = start_with(|b| b.api_token(TOKEN));
    let (mut alice, _) = chat(server.local_addr(), "ops", Some("alice"));
    for from in ["alice", "Alice", "\u{430}lice", "\u{ff41}lice"] {
        assert_api_error(&post_from(&server, Some(from)), 409, "name_taken");
    }
    for (from, _) in INVISIBLE {
        assert_api_error(&post_from(&server, Some(from)), 400, "bad_name");
    }
    let response = post_from(&server, Some("ci-bot"));
    assert_eq!(status(&response), 201, "{response}");
    let msg = next_json(&mut alice);
    assert_eq!(
        (&msg["type"], &msg["from"]),
        (&json!("message"), &json!("ci-bot")),
        "the refused posts never reached alice"
    );
}

#[test]
fn a_member_called_api_does_not_stop_posts_that_name_nobody() {
    let server = start_with(|b| b.api_token(TOKEN));
    let (mut api, _) = chat(server.local_addr(), "ops", Some("api"));
    let response = post_from(&server, None);
    assert_eq!(status(&response), 201, "{response}");
    let msg = next_json(&mut api);
    assert_eq!((&msg["from"], &msg["via"]), (&json!("api"), &json!("api")));
    assert_api_error(&post_from(&server, Some("API")), 409, "name_taken");
}

#[test]
fn a_guest_is_never_given_a_look_alike_of_a_connected_name() {
    let server = start();
    let addr = server.local_addr();
    let (_lookalike, _) = chat(addr, "hall", Some("guest-l"));
    let (_guest, welcome) = chat(addr, "hall", None);
    assert_eq!(welcome["name"], "guest-2", "guest-1 looks like guest-l");
}

// ---- a cluster ----

fn node(redis: &common::redis::Redis) -> ServerHandle {
    start_with(|b| b.redis(redis.url()))
}

#[test]
fn look_alikes_are_taken_across_a_cluster() {
    let Some(redis) = common::redis::Redis::start("look_alikes_across_a_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (_alice, _) = chat(a.local_addr(), "hall", Some("alice"));
    let (_l, _) = chat(a.local_addr(), "hall", Some("guest-l"));
    let (mut other, welcome) = join_as(b.local_addr(), "hall", "\u{430}lice");
    assert_eq!(welcome["name"], "\u{430}lice-2", "taken on node A");
    send_json(
        &mut other,
        json!({"type": "rename", "name": "\u{ff41}lice"}),
    );
    expect_error(&mut other, "name_taken");
    let (_guest, welcome) = chat(b.local_addr(), "hall", None);
    assert_eq!(welcome["name"], "guest-2", "guest-1 looks like guest-l");
}
