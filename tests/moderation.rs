//! Moderation through the API token (an admin on the chat socket comes with the admin
//! role): a kick closes the member with 4001 and its reason, tells the room, and keeps
//! the member's name, session and address out of the room for a while, across a
//! restart and on every node of a cluster. A member who is no admin asking for it gets
//! `forbidden`, and nothing changes.

mod common;

use common::redis::Redis;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::{Server, ServerBuilder, ServerHandle};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

const TOKEN: &str = "t0ken-for-tests";
const PASSWORD: &str = "class-of-2026";

/// Where the kicked member connects from, and where a bystander does.
const KICKED_IP: [u8; 4] = [127, 0, 0, 2];
const BYSTANDER_IP: [u8; 4] = [127, 0, 0, 3];
const ELSEWHERE_IP: [u8; 4] = [127, 0, 0, 4];

fn moderated(b: ServerBuilder) -> ServerBuilder {
    b.api_token(TOKEN).rate_per_sec(1000).rate_burst(1000)
}

/// A node of a cluster on `redis`.
fn node(redis: &Redis) -> ServerHandle {
    moderated(Server::builder().listen("127.0.0.1:0").redis(redis.url()))
        .start()
        .expect("node starts")
}

/// A chat client at `path`, connecting from `from` with extra request headers.
fn open_from(
    addr: SocketAddr,
    from: [u8; 4],
    path: &str,
    headers: &[(&'static str, &str)],
) -> Client {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("a header value"));
    }
    let (ws, _) = tungstenite::client(request, tcp_from(from, addr)).expect("handshake");
    ws
}

/// Joins `path` from `from`; its welcome.
fn join_from(
    addr: SocketAddr,
    from: [u8; 4],
    path: &str,
    headers: &[(&'static str, &str)],
) -> (Client, Value) {
    let mut ws = open_from(addr, from, path, headers);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// Asserts that a join at `path` from `from` is refused as kicked: an `error`
/// `kicked` with `until` and no welcome, then Close 4001.
fn assert_kept_out(addr: SocketAddr, from: [u8; 4], path: &str, headers: &[(&'static str, &str)]) {
    let mut ws = open_from(addr, from, path, headers);
    let first = next_json(&mut ws);
    assert_eq!(first["type"], "error", "no welcome for {path}: {first}");
    assert_eq!(first["code"], "kicked", "{first}");
    assert!(first["until"].as_u64().is_some(), "{first}");
    let close = closed_by_server(&mut ws);
    assert_eq!(close.code, CloseCode::from(4001), "{close:?}");
}

/// The Close the server sends, answered at once (tungstenite queues its answer until
/// the next write), so that the server sees the member go now.
fn closed_by_server(ws: &mut Client) -> CloseFrame {
    let close = close_frame(ws).expect("a Close");
    let _ = ws.flush();
    close
}

/// Whether a join at `path` from `from` is refused as kicked (else it is let in).
fn kept_out(addr: SocketAddr, from: [u8; 4], path: &str) -> bool {
    let mut ws = open_from(addr, from, path, &[]);
    next_json(&mut ws)["code"] == "kicked"
}

/// A `POST` to the API with a JSON body and `extra` header lines, answered in full.
fn post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> String {
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// Kicks `name` out of `room` through the API; the answer's body.
fn kick(addr: SocketAddr, room: &str, name: &str, reason: &str) -> Value {
    let request = json!({"name": name, "reason": reason}).to_string();
    let answer = post(
        addr,
        &format!("/api/rooms/{room}/kick"),
        &bearer(),
        &request,
    );
    assert_eq!(status(&answer), 200, "{answer}");
    serde_json::from_str(body(&answer)).expect("JSON")
}

const KICKS: &str = "switchboard_moderation_actions_total{action=\"kick\"}";

#[test]
fn a_kick_closes_the_member_with_4001_and_its_reason_and_tells_the_room() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = join_from(addr, KICKED_IP, "/ws/chat/r?name=ann", &[]);
    let (mut bob, _) = join_from(addr, BYSTANDER_IP, "/ws/chat/r?name=bob", &[]);
    next_of_type(&mut ann, "join");
    // Longer than a Close frame holds, with a character across the cut.
    let reason = format!("{}é and more", "x".repeat(122));
    let answer = kick(addr, "r", "Ann", &reason);
    let until = answer["until"].as_u64().expect("an until");
    assert_eq!(
        answer,
        json!({"type": "kicked", "room": "r", "name": "ann", "by": "api", "reason": reason,
               "until": until})
    );
    assert_eq!(next_of_type(&mut bob, "kicked"), answer, "the room is told");
    assert_eq!(next_of_type(&mut ann, "kicked"), answer, "the member too");
    let close = closed_by_server(&mut ann);
    assert_eq!(close.code, CloseCode::from(4001));
    assert_eq!(
        close.reason.as_str(),
        "x".repeat(122),
        "cut to 123 bytes at a character boundary"
    );
    let left = next_of_type(&mut bob, "leave");
    assert_eq!(
        (&left["name"], &left["reason"]),
        (&json!("ann"), &json!("kicked"))
    );
    assert_eq!(metric(addr, KICKS), 1);
    // The bystander stays, and the room goes on.
    say(&mut bob, "on we go");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "on we go");
}

#[test]
fn a_kicked_member_is_kept_out_by_name_session_and_address() {
    let server = start_with(|b| moderated(b).password(PASSWORD));
    let addr = server.local_addr();
    let signed_in = post(
        addr,
        "/login",
        "",
        &json!({"password": PASSWORD}).to_string(),
    );
    let cookie = header(&signed_in, "Set-Cookie")
        .unwrap_or_else(|| panic!("a cookie in {signed_in}"))
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let password = format!("Bearer {PASSWORD}");
    let (mut ann, _) = join_from(
        addr,
        KICKED_IP,
        "/ws/chat/r?name=ann",
        &[("Cookie", &cookie)],
    );
    let (mut bob, _) = join_from(
        addr,
        BYSTANDER_IP,
        "/ws/chat/r?name=bob",
        &[("Authorization", &password)],
    );
    next_of_type(&mut ann, "join");
    kick(addr, "r", "ann", "");
    assert_eq!(
        Some(closed_by_server(&mut ann)).map(|c| (c.code, c.reason.to_string())),
        Some((CloseCode::from(4001), "kicked".to_owned()))
    );
    next_of_type(&mut bob, "leave");
    let by_password = [("Authorization", password.as_str())];
    // The name (by its key: a look-alike too), from elsewhere, without the cookie.
    assert_kept_out(addr, ELSEWHERE_IP, "/ws/chat/r?name=ANN", &by_password);
    // The cookie, under another name, from elsewhere.
    assert_kept_out(
        addr,
        ELSEWHERE_IP,
        "/ws/chat/r?name=zed",
        &[("Cookie", &cookie)],
    );
    // The address, under another name, without the cookie.
    assert_kept_out(addr, KICKED_IP, "/ws/chat/r?name=zed", &by_password);
    // Refused joins told nobody anything: the bystander's next news is its own.
    say(&mut bob, "still here");
    assert_eq!(next_json(&mut bob)["text"], "still here");
    // A bystander from another address joins; the kicked member may join another room.
    join_from(addr, BYSTANDER_IP, "/ws/chat/r?name=carol", &by_password);
    let (mut elsewhere, _) = join_from(
        addr,
        KICKED_IP,
        "/ws/chat/other?name=ann",
        &[("Cookie", &cookie)],
    );
    // …but cannot move into the room it was kicked from, and stays where it is.
    send_json(&mut elsewhere, json!({"type": "join", "room": "r"}));
    let refused = next_json(&mut elsewhere);
    assert_eq!(refused["code"], "kicked", "{refused}");
    say(&mut elsewhere, "here");
    assert_eq!(next_json(&mut elsewhere)["room"], "other");
}

#[test]
fn a_kicked_member_comes_back_once_the_kick_runs_out() {
    let server = start_with(|b| moderated(b).kick_time(Duration::from_millis(300)));
    let addr = server.local_addr();
    let (mut ann, _) = join_from(addr, KICKED_IP, "/ws/chat/r?name=ann", &[]);
    let answer = kick(addr, "r", "ann", "");
    closed_by_server(&mut ann);
    eventually(|| {
        let mut ws = open_from(addr, KICKED_IP, "/ws/chat/r?name=ann", &[]);
        let first = next_json(&mut ws);
        (first["type"] == "welcome").then_some(())
    });
    assert!(
        answer["until"].as_u64() <= Some(unix_ms()),
        "not before the kick's end"
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn a_kick_survives_a_restart() {
    let dir = TempDir::new("kick_restart");
    let durable = |dir: &TempDir| start_with(|b| moderated(b).data_dir(dir.path()));
    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, _) = join_from(addr, KICKED_IP, "/ws/chat/r?name=ann", &[]);
    kick(addr, "r", "ann", "spam");
    assert_eq!(closed_by_server(&mut ann).code, CloseCode::from(4001));
    drop(ann);
    server.shutdown();

    let server = durable(&dir);
    let addr = server.local_addr();
    assert_kept_out(addr, ELSEWHERE_IP, "/ws/chat/r?name=ann", &[]);
    assert_kept_out(addr, KICKED_IP, "/ws/chat/r?name=zed", &[]);
    join_from(addr, BYSTANDER_IP, "/ws/chat/r?name=bob", &[]);
}

#[test]
fn a_kick_on_one_node_closes_the_member_on_another_and_keeps_it_out_of_both() {
    let Some(redis) = Redis::start("kick_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = join_from(b.local_addr(), KICKED_IP, "/ws/chat/r?name=ann", &[]);
    let (mut bob, _) = join_from(a.local_addr(), BYSTANDER_IP, "/ws/chat/r?name=bob", &[]);
    next_of_type(&mut ann, "join");
    let answer = kick(a.local_addr(), "r", "ann", "off topic");
    assert_eq!(next_of_type(&mut bob, "kicked"), answer);
    let close = closed_by_server(&mut ann);
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::from(4001), "off topic")
    );
    assert_eq!(next_of_type(&mut bob, "leave")["reason"], "kicked");
    for node in [&a, &b] {
        assert_kept_out(node.local_addr(), ELSEWHERE_IP, "/ws/chat/r?name=ann", &[]);
    }
    // Only node b knew the member's address: it binds it on every node.
    for node in [&a, &b] {
        eventually(|| kept_out(node.local_addr(), KICKED_IP, "/ws/chat/r?name=zed").then_some(()));
    }
    assert_eq!(
        metric(a.local_addr(), KICKS),
        1,
        "counted where it was asked"
    );
    assert_eq!(metric(b.local_addr(), KICKS), 0);
    // A node started later reads the kick from Redis.
    let c = node(&redis);
    assert_kept_out(c.local_addr(), KICKED_IP, "/ws/chat/r?name=zed", &[]);
}

#[test]
fn a_members_kick_is_forbidden_and_changes_nothing() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    send_json(
        &mut bob,
        json!({"type": "kick", "name": "ann", "reason": "mine"}),
    );
    let refused = next_json(&mut bob);
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // Also for a name that is not there: a member learns nothing from it.
    send_json(&mut bob, json!({"type": "kick", "name": "nobody"}));
    assert_eq!(next_json(&mut bob)["code"], "forbidden");
    send_json(&mut bob, json!({"type": "kick"}));
    assert_eq!(next_json(&mut bob)["code"], "missing_field");
    say(&mut bob, "sorry");
    for ws in [&mut ann, &mut bob] {
        let next = next_json(ws);
        assert_eq!(next["text"], "sorry", "{next}");
    }
    assert_eq!(metric(addr, KICKS), 0, "a refusal is no action");
    let (_ann_again, _) = chat(addr, "r", Some("ann2"));
}

#[test]
fn the_kick_api_answers_bad_requests_with_exact_statuses() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (_bob, _) = chat(addr, "elsewhere", Some("bob"));
    let path = "/api/rooms/r/kick";
    let ann_body = r#"{"name":"ann"}"#;
    let long = format!(r#"{{"name":"ann","reason":"{}"}}"#, "x".repeat(201));
    let cases: [(&str, String, &str, u16, &str); 8] = [
        ("no token", String::new(), ann_body, 401, "unauthorized"),
        (
            "a wrong token",
            "Authorization: Bearer nope\r\n".into(),
            ann_body,
            401,
            "unauthorized",
        ),
        ("not JSON", bearer(), "ann", 400, "bad_json"),
        (
            "no name",
            bearer(),
            r#"{"reason":"x"}"#,
            400,
            "missing_field",
        ),
        (
            "a bad name",
            bearer(),
            r#"{"name":"a\u0007"}"#,
            400,
            "bad_name",
        ),
        ("a reason too long", bearer(), &long, 400, "bad_request"),
        (
            "nobody of that name",
            bearer(),
            r#"{"name":"zed"}"#,
            404,
            "not_found",
        ),
        (
            "someone in another room",
            bearer(),
            r#"{"name":"bob"}"#,
            404,
            "not_found",
        ),
    ];
    for (what, extra, request, code, error) in cases {
        let answer = post(addr, path, &extra, request);
        assert_eq!(status(&answer), code, "{what}: {answer}");
        let json: Value = serde_json::from_str(body(&answer)).expect("JSON");
        assert_eq!(json["error"], error, "{what}: {answer}");
    }
    let get = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{}\r\n", bearer()).as_bytes(),
    );
    assert_eq!(status(&get), 405, "{get}");
    let unset = start();
    let answer = post(unset.local_addr(), path, &bearer(), ann_body);
    assert_eq!(status(&answer), 403, "no token set: {answer}");
    // Nothing happened to ann.
    say(&mut ann, "still here");
    assert_eq!(next_of_type(&mut ann, "message")["text"], "still here");
    assert_eq!(metric(addr, KICKS), 0);
}

/// Mutes `name` in `room` for `minutes` (0 unmutes) through the API; the answer.
fn mute(addr: SocketAddr, room: &str, name: &str, minutes: u64) -> String {
    let request = json!({"name": name, "minutes": minutes}).to_string();
    post(
        addr,
        &format!("/api/rooms/{room}/mute"),
        &bearer(),
        &request,
    )
}

/// The answer's JSON body, asserting its status.
fn answered(answer: &str, code: u16) -> Value {
    assert_eq!(status(answer), code, "{answer}");
    serde_json::from_str(body(answer)).expect("JSON")
}

const MUTES: &str = "switchboard_moderation_actions_total{action=\"mute\"}";
const UNMUTES: &str = "switchboard_moderation_actions_total{action=\"unmute\"}";

/// Asserts that every kind of post from `ws` gets `error` `muted` with `until`.
fn assert_muted(ws: &mut Client, until: u64) {
    say(ws, "let me talk");
    send_json(ws, json!({"type": "direct", "to": "bob", "text": "psst"}));
    send_json(
        ws,
        json!({"type": "file", "name": "a.txt", "mime": "text/plain", "size": 3}),
    );
    ws.send(tungstenite::Message::binary(b"abc".to_vec()))
        .expect("send");
    for _ in 0..3 {
        let refused = next_json(ws);
        assert_eq!(
            (&refused["code"], &refused["until"]),
            (&json!("muted"), &json!(until)),
            "{refused}"
        );
    }
}

#[test]
fn a_muted_member_reads_but_every_post_is_refused_until_unmuted_even_after_a_restart() {
    let dir = TempDir::new("mute");
    let durable = |dir: &TempDir| start_with(|b| moderated(b).data_dir(dir.path()));
    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let told = answered(&mute(addr, "r", "ANN", 5), 200);
    let until = told["until"].as_u64().expect("an until");
    assert_eq!(
        told,
        json!({"type": "muted", "room": "r", "name": "ann", "by": "api", "until": until})
    );
    assert!(until > unix_ms() + 4 * 60_000, "five minutes: {until}");
    assert_eq!(next_json(&mut ann), told, "the member is told");
    assert_muted(&mut ann, until);
    // The room is not told, and the member still reads.
    say(&mut bob, "quiet please");
    assert_eq!(
        next_json(&mut bob)["text"],
        "quiet please",
        "nothing else first"
    );
    assert_eq!(next_json(&mut ann)["text"], "quiet please");
    assert_eq!(metric(addr, MUTES), 1);
    drop((ann, bob));
    server.shutdown();

    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    assert_eq!(next_json(&mut ann), told, "told right after its welcome");
    let (_bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    assert_muted(&mut ann, until);
    // In another room it talks.
    send_json(&mut ann, json!({"type": "join", "room": "other"}));
    next_of_type(&mut ann, "welcome");
    say(&mut ann, "elsewhere");
    assert_eq!(next_json(&mut ann)["text"], "elsewhere");
    send_json(&mut ann, json!({"type": "join", "room": "r"}));
    next_of_type(&mut ann, "welcome");
    let unmuted = answered(&mute(addr, "r", "ann", 0), 200);
    assert_eq!(
        unmuted,
        json!({"type": "unmuted", "room": "r", "name": "ann", "by": "api"})
    );
    assert_eq!(next_of_type(&mut ann, "unmuted"), unmuted);
    say(&mut ann, "thanks");
    assert_eq!(next_of_type(&mut ann, "message")["text"], "thanks");
    assert_eq!(metric(addr, UNMUTES), 1);
    // Unmuted already: nobody of that name is muted.
    assert_eq!(
        answered(&mute(addr, "r", "ann", 0), 404)["error"],
        "not_found"
    );
}

#[test]
fn a_mute_on_one_node_holds_on_another() {
    let Some(redis) = Redis::start("mute_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(b.local_addr(), "r", Some("ann"));
    let (mut bob, _) = chat(a.local_addr(), "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let told = answered(&mute(a.local_addr(), "r", "ann", 10), 200);
    assert_eq!(next_json(&mut ann), told);
    let until = told["until"].as_u64().expect("an until");
    assert_muted(&mut ann, until);
    say(&mut bob, "heard");
    assert_eq!(next_json(&mut bob)["text"], "heard", "the room is not told");
    assert_eq!(next_json(&mut ann)["text"], "heard");
    // Unmuted on the other node.
    answered(&mute(b.local_addr(), "r", "ann", 0), 200);
    next_of_type(&mut ann, "unmuted");
    say(&mut ann, "back");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "back");
}

#[test]
fn a_members_mute_is_forbidden_and_bad_mutes_are_refused_with_exact_codes() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    for (request, code) in [
        (
            json!({"type": "mute", "name": "ann", "minutes": 5}),
            "forbidden",
        ),
        (json!({"type": "unmute", "name": "ann"}), "forbidden"),
        (
            json!({"type": "mute", "name": "ann", "minutes": 0}),
            "bad_request",
        ),
        (
            json!({"type": "mute", "name": "ann", "minutes": 100_000}),
            "bad_request",
        ),
        (json!({"type": "mute", "name": "ann"}), "missing_field"),
    ] {
        send_json(&mut bob, request.clone());
        assert_eq!(next_json(&mut bob)["code"], code, "{request}");
    }
    for (request, code, error) in [
        (json!({"name": "ann"}), 400, "missing_field"),
        (
            json!({"name": "ann", "minutes": 100_000}),
            400,
            "bad_request",
        ),
        (json!({"name": "ann", "minutes": -1}), 400, "bad_json"),
        (json!({"name": "zed", "minutes": 5}), 404, "not_found"),
        (json!({"name": "ann", "minutes": 0}), 404, "not_found"),
    ] {
        let answer = post(addr, "/api/rooms/r/mute", &bearer(), &request.to_string());
        assert_eq!(answered(&answer, code)["error"], error, "{request}");
    }
    let answer = post(
        addr,
        "/api/rooms/r/mute",
        "",
        r#"{"name":"ann","minutes":5}"#,
    );
    assert_eq!(status(&answer), 401, "{answer}");
    // Nothing changed: ann talks.
    say(&mut ann, "still talking");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "still talking");
    assert_eq!(metric(addr, MUTES), 0);
}

/// Changes `room`'s settings through the API; the answer.
fn settings(addr: SocketAddr, room: &str, change: Value) -> String {
    post(
        addr,
        &format!("/api/rooms/{room}/settings"),
        &bearer(),
        &change.to_string(),
    )
}

const ROOM_CHANGES: &str = "switchboard_moderation_actions_total{action=\"room\"}";

#[test]
fn a_locked_room_refuses_a_members_post_and_takes_the_tokens() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let told = answered(&settings(addr, "r", json!({"locked": true})), 200);
    assert_eq!(
        told,
        json!({"type": "room", "room": "r", "by": "api", "locked": true, "slow_secs": 0,
               "topic": ""})
    );
    for ws in [&mut ann, &mut bob] {
        assert_eq!(next_json(ws), told, "the room is told");
    }
    say(&mut ann, "can I?");
    let refused = next_json(&mut ann);
    assert_eq!(refused["code"], "locked", "{refused}");
    // An announcement through the API goes in.
    let posted = post(
        addr,
        "/api/rooms/r/messages",
        &bearer(),
        r#"{"text":"exam starts now"}"#,
    );
    assert_eq!(status(&posted), 201, "{posted}");
    for ws in [&mut ann, &mut bob] {
        assert_eq!(
            next_json(ws)["text"],
            "exam starts now",
            "nothing else first"
        );
    }
    // Unlocked, the member posts again.
    answered(&settings(addr, "r", json!({"locked": false})), 200);
    next_of_type(&mut ann, "room");
    say(&mut ann, "now?");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "now?");
    assert_eq!(metric(addr, ROOM_CHANGES), 2);
}

#[test]
fn slow_mode_lets_each_member_post_once_per_period() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    answered(&settings(addr, "r", json!({"slow_secs": 60})), 200);
    next_of_type(&mut ann, "room");
    next_of_type(&mut bob, "room");
    say(&mut ann, "one");
    assert_eq!(next_json(&mut ann)["text"], "one");
    std::thread::sleep(Duration::from_millis(100));
    say(&mut ann, "two");
    let refused = next_json(&mut ann);
    assert_eq!(refused["code"], "slow_mode", "{refused}");
    let wait = refused["retry_after"].as_u64().expect("a retry_after");
    assert!((1..=60).contains(&wait), "{refused}");
    // Each member has its own period; a reconnect does not start a new one.
    assert_eq!(next_json(&mut bob)["text"], "one");
    say(&mut bob, "mine");
    assert_eq!(next_json(&mut bob)["text"], "mine");
    close_politely(ann);
    let mut ann = eventually(|| {
        let (ws, welcome) = chat(addr, "r", Some("ann"));
        (welcome["name"] == "ann").then_some(ws)
    });
    say(&mut ann, "three");
    assert_eq!(next_json(&mut ann)["code"], "slow_mode");
}

#[test]
fn the_topic_and_settings_are_in_a_newcomers_welcome_after_a_restart() {
    let dir = TempDir::new("room_settings");
    let durable = |dir: &TempDir| start_with(|b| moderated(b).data_dir(dir.path()));
    let server = durable(&dir);
    let addr = server.local_addr();
    let (_, welcome) = chat(addr, "r", Some("ann"));
    assert_eq!(
        (&welcome["topic"], &welcome["locked"], &welcome["slow_secs"]),
        (&json!(""), &json!(false), &json!(0)),
        "{welcome}"
    );
    answered(
        &settings(
            addr,
            "r",
            json!({"topic": " Week 3: sockets ", "slow_secs": 5}),
        ),
        200,
    );
    // Absent fields stay as they are.
    let told = answered(&settings(addr, "r", json!({"locked": true})), 200);
    assert_eq!(
        (&told["topic"], &told["slow_secs"], &told["locked"]),
        (&json!("Week 3: sockets"), &json!(5), &json!(true))
    );
    server.shutdown();

    let server = durable(&dir);
    let (_, welcome) = chat(server.local_addr(), "r", Some("bob"));
    assert_eq!(
        (&welcome["topic"], &welcome["locked"], &welcome["slow_secs"]),
        (&json!("Week 3: sockets"), &json!(true), &json!(5)),
        "{welcome}"
    );
    let (_, elsewhere) = chat(server.local_addr(), "other", Some("carol"));
    assert_eq!(elsewhere["topic"], "", "another room's own");
}

#[test]
fn room_settings_on_one_node_hold_on_another() {
    let Some(redis) = Redis::start("room_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(b.local_addr(), "r", Some("ann"));
    let told = answered(
        &settings(
            a.local_addr(),
            "r",
            json!({"locked": true, "topic": "quiet"}),
        ),
        200,
    );
    assert_eq!(next_json(&mut ann), told);
    say(&mut ann, "hello?");
    assert_eq!(next_json(&mut ann)["code"], "locked");
    let (_, welcome) = chat(b.local_addr(), "r", Some("bob"));
    assert_eq!(welcome["topic"], "quiet");
    let c = node(&redis);
    let (_, welcome) = chat(c.local_addr(), "r", Some("carol"));
    assert_eq!(
        (&welcome["topic"], &welcome["locked"]),
        (&json!("quiet"), &json!(true)),
        "a node started later reads them"
    );
}

#[test]
fn a_members_room_change_is_forbidden_and_bad_settings_are_refused_with_exact_codes() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    for (request, code) in [
        (json!({"type": "room", "locked": true}), "forbidden"),
        (json!({"type": "room"}), "missing_field"),
        (json!({"type": "room", "slow_secs": 3601}), "bad_request"),
        (
            json!({"type": "room", "topic": "x".repeat(201)}),
            "bad_request",
        ),
    ] {
        send_json(&mut ann, request.clone());
        assert_eq!(next_json(&mut ann)["code"], code, "{request}");
    }
    for (change, code, error) in [
        (json!({}), 400, "missing_field"),
        (json!({"slow_secs": 3601}), 400, "bad_request"),
        (json!({"topic": "x".repeat(201)}), 400, "bad_request"),
        (json!({"topic": "a\u{202e}b"}), 400, "bad_request"),
        (json!({"locked": "yes"}), 400, "bad_json"),
    ] {
        assert_eq!(
            answered(&settings(addr, "r", change.clone()), code)["error"],
            error,
            "{change}"
        );
    }
    let answer = post(addr, "/api/rooms/r/settings", "", r#"{"locked":true}"#);
    assert_eq!(status(&answer), 401, "{answer}");
    say(&mut ann, "unlocked still");
    assert_eq!(next_json(&mut ann)["text"], "unlocked still");
    let (_, welcome) = chat(addr, "r", Some("bob"));
    assert_eq!(welcome["locked"], false);
    assert_eq!(metric(addr, ROOM_CHANGES), 0);
}

/// Announces `bytes` as `name` from `ws` and returns the room's message about it.
fn share(ws: &mut Client, name: &str, bytes: &[u8]) -> Value {
    let announce = json!({"type": "file", "name": name, "mime": "application/octet-stream",
                          "size": bytes.len()});
    send_json(ws, announce);
    ws.send(tungstenite::Message::binary(bytes.to_vec()))
        .expect("send");
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["file"]["name"], name, "{msg}");
    msg
}

/// Says `text` from `ws` and waits for it to come back stored; its id.
fn said(ws: &mut Client, text: &str) -> u64 {
    say(ws, text);
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["text"], text, "{msg}");
    msg["id"].as_u64().expect("an id")
}

/// A plain GET of `path`, its status.
fn get_status(addr: SocketAddr, path: &str) -> u16 {
    status(&get(addr, path))
}

/// `GET /api/rooms/{room}/messages`, its messages.
fn api_messages(addr: SocketAddr, room: &str) -> Vec<Value> {
    let page = answered(&get(addr, &format!("/api/rooms/{room}/messages")), 200);
    page["messages"].as_array().expect("messages").clone()
}

fn clear(addr: SocketAddr, room: &str) -> String {
    post(addr, &format!("/api/rooms/{room}/clear"), &bearer(), "")
}

const CLEARS: &str = "switchboard_moderation_actions_total{action=\"clear\"}";

#[test]
fn clear_empties_history_and_files_and_ids_go_on_after_a_restart() {
    let dir = TempDir::new("clear");
    let durable = |dir: &TempDir| start_with(|b| moderated(b).data_dir(dir.path()));
    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    said(&mut ann, "one");
    let url = share(&mut ann, "notes.txt", b"private notes")["file"]["url"]
        .as_str()
        .expect("a url")
        .to_owned();
    said(&mut ann, "three");
    let keyed = format!("{}Idempotency-Key: k1\r\n", bearer());
    let posted = post(
        addr,
        "/api/rooms/r/messages",
        &keyed,
        r#"{"text":"secret plan"}"#,
    );
    let last = answered(&posted, 201)["id"].as_u64().expect("an id");
    next_of_type(&mut ann, "message");
    assert_eq!(get_status(addr, &url), 200);
    let (_, elsewhere) = chat(addr, "other", Some("carol"));
    assert_eq!(elsewhere["last_id"], 0);
    let told = answered(&clear(addr, "r"), 200);
    assert_eq!(
        told,
        json!({"type": "cleared", "room": "r", "by": "api", "through": last})
    );
    for ws in [&mut ann, &mut bob] {
        assert_eq!(next_of_type(ws, "cleared"), told);
    }
    assert_eq!(get_status(addr, &url), 404, "the file goes too");
    // A script's retry gets no text back.
    let retried = post(
        addr,
        "/api/rooms/r/messages",
        &keyed,
        r#"{"text":"secret plan"}"#,
    );
    assert!(!retried.contains("secret plan"), "{retried}");
    assert!(api_messages(addr, "r").is_empty());
    let (_, welcome) = chat(addr, "r", Some("dan"));
    assert_eq!(welcome["history"], json!([]), "{welcome}");
    assert_eq!(welcome["last_id"], last);
    assert_eq!(said(&mut ann, "after"), last + 1, "ids go on");
    assert_eq!(metric(addr, CLEARS), 1);
    drop((ann, bob));
    server.shutdown();

    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut erin, welcome) = chat(addr, "r", Some("erin"));
    let history: Vec<&str> = welcome["history"]
        .as_array()
        .expect("a history")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(history, ["after"]);
    assert_eq!(
        said(&mut erin, "later"),
        last + 2,
        "ids go on after a restart"
    );
    // Cleared again, with nothing but ids left: they still go on.
    answered(&clear(addr, "r"), 200);
    drop(erin);
    server.shutdown();
    let server = durable(&dir);
    let (mut fay, welcome) = chat(server.local_addr(), "r", Some("fay"));
    assert_eq!(welcome["history"], json!([]));
    assert_eq!(said(&mut fay, "again"), last + 3);
}

#[test]
fn clear_on_one_node_empties_the_room_on_every_node() {
    let Some(redis) = Redis::start("clear_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(a.local_addr(), "r", Some("ann"));
    let (mut bob, _) = chat(b.local_addr(), "r", Some("bob"));
    next_of_type(&mut ann, "join");
    said(&mut ann, "one");
    let msg = share(&mut ann, "notes.txt", b"private notes");
    let url = msg["file"]["url"].as_str().expect("a url").to_owned();
    let last = msg["id"].as_u64().expect("an id");
    assert_eq!(get_status(b.local_addr(), &url), 200, "node b has a copy");
    let told = answered(&clear(b.local_addr(), "r"), 200);
    assert_eq!(told["through"], last);
    assert_eq!(next_of_type(&mut ann, "cleared"), told);
    assert_eq!(next_of_type(&mut bob, "cleared"), told);
    for node in [&a, &b] {
        let addr = node.local_addr();
        eventually(|| (get_status(addr, &url) == 404).then_some(()));
        assert!(api_messages(addr, "r").is_empty());
        let (_, welcome) = chat(addr, "r", None);
        assert_eq!(welcome["history"], json!([]), "{welcome}");
    }
    assert_eq!(said(&mut bob, "after"), last + 1, "ids go on");
}

#[test]
fn a_members_clear_is_forbidden_and_keeps_the_history() {
    let server = start_with(moderated);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    said(&mut ann, "keep me");
    send_json(&mut ann, json!({"type": "clear"}));
    assert_eq!(next_json(&mut ann)["code"], "forbidden");
    assert_eq!(api_messages(addr, "r").len(), 1);
    let answer = post(addr, "/api/rooms/r/clear", "", "");
    assert_eq!(status(&answer), 401, "{answer}");
    let answer = get(addr, "/api/rooms/r/clear");
    assert_eq!(status(&answer), 405, "{answer}");
    assert_eq!(api_messages(addr, "r").len(), 1);
    assert_eq!(metric(addr, CLEARS), 0);
}

/// An admin (signed in with the admin password, here as its Bearer) moderates from the
/// chat socket: sets the room, mutes and unmutes, kicks, and clears; each reaches the
/// room as the API's does, and is counted.
#[test]
fn an_admin_moderates_from_the_chat_socket() {
    const ADMIN: &str = "staple battery";
    let server = start_with(|b| moderated(b).admin_password(ADMIN));
    let addr = server.local_addr();
    let bearer = format!("Bearer {ADMIN}");
    let (mut teacher, welcome) = join_from(
        addr,
        BYSTANDER_IP,
        "/ws/chat/class?name=teacher",
        &[("Authorization", &bearer)],
    );
    assert_eq!(welcome["role"], "admin", "{welcome}");
    let (mut ann, _) = join_from(addr, KICKED_IP, "/ws/chat/class?name=ann", &[]);
    let (mut bob, _) = join_from(addr, ELSEWHERE_IP, "/ws/chat/class?name=bob", &[]);
    next_of_type(&mut teacher, "join");
    next_of_type(&mut teacher, "join");

    send_json(
        &mut teacher,
        json!({"type": "room", "topic": "Week 3: sockets", "locked": true}),
    );
    let room = next_of_type(&mut bob, "room");
    assert_eq!(
        (&room["topic"], &room["locked"], &room["by"]),
        (&json!("Week 3: sockets"), &json!(true), &json!("teacher"))
    );
    say(&mut bob, "may I?");
    assert_eq!(next_of_type(&mut bob, "error")["code"], "locked");
    say(&mut teacher, "announcement");
    assert_eq!(next_of_type(&mut bob, "message")["text"], "announcement");
    assert_eq!(
        next_of_type(&mut teacher, "message")["text"],
        "announcement"
    );
    send_json(&mut teacher, json!({"type": "room", "locked": false}));
    next_of_type(&mut bob, "room");

    send_json(
        &mut teacher,
        json!({"type": "mute", "name": "bob", "minutes": 5}),
    );
    assert!(next_of_type(&mut bob, "muted")["until"].as_u64().is_some());
    say(&mut bob, "hello?");
    assert_eq!(next_of_type(&mut bob, "error")["code"], "muted");
    send_json(&mut teacher, json!({"type": "unmute", "name": "bob"}));
    next_of_type(&mut bob, "unmuted");
    say(&mut bob, "back");
    assert_eq!(next_of_type(&mut teacher, "message")["text"], "back");

    send_json(
        &mut teacher,
        json!({"type": "kick", "name": "ann", "reason": "flooding"}),
    );
    let kicked = next_of_type(&mut bob, "kicked");
    assert_eq!(
        (&kicked["name"], &kicked["by"]),
        (&json!("ann"), &json!("teacher"))
    );
    assert_eq!(closed_by_server(&mut ann).code, CloseCode::from(4001));
    assert_kept_out(addr, KICKED_IP, "/ws/chat/class?name=ann", &[]);

    send_json(&mut teacher, json!({"type": "clear"}));
    assert_eq!(next_of_type(&mut bob, "cleared")["by"], "teacher");
    let (_, newcomer) = join_from(addr, ELSEWHERE_IP, "/ws/chat/class?name=cy", &[]);
    assert_eq!(newcomer["history"], json!([]), "{newcomer}");
    assert_eq!(newcomer["topic"], "Week 3: sockets");
    assert_eq!(metric(addr, KICKS), 1);
}
