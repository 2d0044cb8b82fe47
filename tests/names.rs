//! Names a person can trust: what a name shows is what it is. Invisible and
//! reordering characters are `bad_name`, and names are in NFC. Through real sockets.

mod common;

use common::*;
use serde_json::{Value, json};

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
