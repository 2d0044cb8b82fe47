//! Deleting a message: a member deletes its own (`{"type":"delete","id":N}`), the API
//! token any (`DELETE /api/rooms/{room}/messages/{id}`). The room is told
//! (`deleted`), and the message becomes a tombstone everywhere it is read: a welcome's
//! history, a `history` page, a resume, `GET …/messages`; its file goes. On one node
//! across a restart, and on every node of a cluster (each test starts its own
//! `redis-server`).

mod common;

use common::redis::Redis;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use switchboard::{Server, ServerHandle};
use tungstenite::Message;

const TOKEN: &str = "t0ken-for-tests";

fn durable(dir: &TempDir) -> ServerHandle {
    start_with(|b| {
        b.data_dir(dir.path())
            .api_token(TOKEN)
            .rate_per_sec(1000)
            .rate_burst(1000)
    })
}

/// A node of a cluster on `redis`.
fn node(redis: &Redis) -> ServerHandle {
    Server::builder()
        .listen("127.0.0.1:0")
        .redis(redis.url())
        .api_token(TOKEN)
        .rate_per_sec(1000)
        .rate_burst(1000)
        .start()
        .expect("node starts")
}

/// Says `text` and waits for it to come back stored; returns its id.
fn said(ws: &mut Client, text: &str) -> u64 {
    say(ws, text);
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["text"], text);
    msg["id"].as_u64().expect("an id")
}

fn delete(ws: &mut Client, id: u64) {
    send_json(ws, json!({"type": "delete", "id": id}));
}

/// An HTTP request with `extra` header lines, answered in full.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> String {
    raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: 0\r\n\r\n")
            .as_bytes(),
    )
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// `GET /api/rooms/{room}/messages`, its messages.
fn api_messages(addr: SocketAddr, room: &str) -> Vec<Value> {
    let answer = request(addr, "GET", &format!("/api/rooms/{room}/messages"), "");
    assert_eq!(status(&answer), 200, "{answer}");
    let page: Value = serde_json::from_str(body(&answer)).expect("JSON");
    page["messages"].as_array().expect("messages").clone()
}

/// The message with `id` in a list of them.
fn with_id(list: &Value, id: u64) -> Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("message {id} in {list}"))
        .clone()
}

/// Asserts that `msg` is the tombstone of message `id` of `room`: its id, room and
/// time, and nothing of who or what.
fn assert_tombstone(msg: &Value, id: u64, room: &str) {
    assert_eq!(msg["type"], "message", "{msg}");
    assert_eq!(msg["id"], id, "{msg}");
    assert_eq!(msg["room"], room, "{msg}");
    assert_eq!(msg["deleted"], true, "{msg}");
    assert!(msg["ts"].as_u64().is_some(), "{msg}");
    for gone in ["from", "text", "file", "via"] {
        assert!(msg.get(gone).is_none(), "{gone} is gone: {msg}");
    }
}

/// The `history` page before `before`, as `ws` gets it.
fn page(ws: &mut Client, before: u64) -> Value {
    send_json(ws, json!({"type": "history", "before": before}));
    next_of_type(ws, "history")["messages"].clone()
}

#[test]
fn an_own_delete_is_told_to_the_room_and_leaves_a_tombstone_after_a_restart() {
    let dir = TempDir::new("delete_own");
    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, welcome) = chat(addr, "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let first = said(&mut ann, "keep me");
    let secret = said(&mut ann, "a secret said by mistake");
    let last = said(&mut ann, "after it");
    for _ in 0..3 {
        next_of_type(&mut bob, "message");
    }
    delete(&mut ann, secret);
    let told = next_of_type(&mut bob, "deleted");
    assert_eq!(
        told,
        json!({"type": "deleted", "room": "r", "id": secret, "by": "ann"})
    );
    assert_eq!(next_of_type(&mut ann, "deleted"), told, "the deleter too");
    // The next message comes after the deletion, in the room's order.
    say(&mut bob, "next");
    assert_eq!(next_json(&mut ann)["text"], "next");
    drop((ann, bob));
    server.shutdown();
    // Gone from the bytes of the store, not only hidden.
    for file in ["chat.sqlite3", "chat.sqlite3-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !contains(&bytes, b"said by mistake"),
            "the text is in {file}"
        );
    }

    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut carol, welcome) = chat(addr, "r", Some("carol"));
    assert_tombstone(&with_id(&welcome["history"], secret), secret, "r");
    assert_eq!(with_id(&welcome["history"], first)["text"], "keep me");
    assert_eq!(with_id(&welcome["history"], last)["text"], "after it");
    let ids: Vec<u64> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4], "the sequence is whole");
    assert_tombstone(&with_id(&page(&mut carol, 4), secret), secret, "r");
    let (_back, resumed) = chat_url(addr, &format!("/ws/chat/r?since={first}&epoch={epoch}"));
    assert_eq!(resumed["resumed"], true);
    assert_tombstone(&with_id(&resumed["history"], secret), secret, "r");
    let listed = api_messages(addr, "r");
    assert_tombstone(&listed[1], secret, "r");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn someone_elses_message_is_forbidden_and_nobody_hears_of_it() {
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    let (mut eve, _) = chat(addr, "r", Some("eve"));
    next_of_type(&mut ann, "join");
    next_of_type(&mut ann, "join");
    next_of_type(&mut bob, "join");
    let id = said(&mut ann, "mine");
    next_of_type(&mut bob, "message");
    next_of_type(&mut eve, "message");
    delete(&mut eve, id);
    let error = next_json(&mut eve);
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "forbidden", "{error}");
    delete(&mut eve, 99);
    assert_eq!(next_json(&mut eve)["code"], "not_found");
    // Nothing changed: the bystanders' next news is the next message, and the message
    // is whole.
    say(&mut eve, "sorry");
    for ws in [&mut ann, &mut bob] {
        let next = next_json(ws);
        assert_eq!(next["type"], "message", "{next}");
        assert_eq!(next["text"], "sorry");
    }
    assert_eq!(api_messages(addr, "r")[0]["text"], "mine");
    let counted = "switchboard_moderation_actions_total{action=\"delete\"}";
    assert_eq!(metric(addr, counted), 0, "a refusal is no action");
    // Deleted once; the second time there is nothing to delete.
    delete(&mut ann, id);
    next_of_type(&mut ann, "deleted");
    delete(&mut ann, id);
    assert_eq!(next_json(&mut ann)["code"], "not_found");
    assert_eq!(metric(addr, counted), 1);
}

#[test]
fn a_message_sent_under_a_name_given_up_is_no_longer_its_senders() {
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let (mut ann, _) = chat(server.local_addr(), "r", Some("ann"));
    let id = said(&mut ann, "as ann");
    send_json(&mut ann, json!({"type": "rename", "name": "anna"}));
    next_of_type(&mut ann, "rename");
    delete(&mut ann, id);
    assert_eq!(next_json(&mut ann)["code"], "forbidden");
}

/// Announces `bytes` as `name` and returns the room's message about it.
fn share(ws: &mut Client, name: &str, bytes: &[u8]) -> Value {
    let announce = json!({"type": "file", "name": name, "mime": "application/octet-stream",
                          "size": bytes.len()});
    send_json(ws, announce);
    ws.send(Message::binary(bytes.to_vec())).expect("send");
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["file"]["name"], name, "{msg}");
    msg
}

#[test]
fn a_deleted_file_message_takes_its_file_from_disk_and_http() {
    let dir = TempDir::new("delete_file");
    let server = durable(&dir);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let msg = share(&mut ann, "notes.txt", b"private notes");
    let url = msg["file"]["url"].as_str().expect("a url").to_owned();
    let file_id = msg["file"]["id"].as_str().expect("an id").to_owned();
    assert_eq!(status(&request(addr, "GET", &url, "")), 200);
    assert!(entries(&dir.path().join("files/ids")).contains(&file_id));
    delete(&mut ann, msg["id"].as_u64().expect("an id"));
    next_of_type(&mut ann, "deleted");
    assert_eq!(status(&request(addr, "GET", &url, "")), 404);
    assert!(entries(&dir.path().join("files/ids")).is_empty());
    assert!(entries(&dir.path().join("files/blobs")).is_empty());
    assert_tombstone(&api_messages(addr, "r")[0], 1, "r");
}

#[test]
fn the_api_token_deletes_any_message_and_nothing_else_does() {
    let server = start_with(|b| b.api_token(TOKEN).rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let id = said(&mut ann, "spam");
    next_of_type(&mut bob, "message");
    let path = format!("/api/rooms/r/messages/{id}");

    let without = request(addr, "DELETE", &path, "");
    assert_eq!(status(&without), 401, "{without}");
    let wrong = request(addr, "DELETE", &path, "Authorization: Bearer nope\r\n");
    assert_eq!(status(&wrong), 401, "{wrong}");
    let missing = request(addr, "DELETE", "/api/rooms/r/messages/99", &bearer());
    assert_eq!(status(&missing), 404, "{missing}");
    let other_room = request(
        addr,
        "DELETE",
        &format!("/api/rooms/s/messages/{id}"),
        &bearer(),
    );
    assert_eq!(status(&other_room), 404, "{other_room}");
    let not_a_number = request(addr, "DELETE", "/api/rooms/r/messages/x", &bearer());
    assert_eq!(status(&not_a_number), 404, "{not_a_number}");
    let get = request(addr, "GET", &path, &bearer());
    assert_eq!(status(&get), 405, "{get}");
    assert_eq!(header(&get, "Allow"), Some("DELETE"));
    assert_eq!(
        api_messages(addr, "r")[0]["text"],
        "spam",
        "nothing changed"
    );
    assert_eq!(
        metric(
            addr,
            "switchboard_moderation_actions_total{action=\"delete\"}"
        ),
        0
    );

    let done = request(addr, "DELETE", &path, &bearer());
    assert_eq!(status(&done), 200, "{done}");
    let told = json!({"type": "deleted", "room": "r", "id": id, "by": "api"});
    assert_eq!(
        serde_json::from_str::<Value>(body(&done)).expect("JSON"),
        told
    );
    assert_eq!(next_of_type(&mut bob, "deleted"), told);
    assert_eq!(next_of_type(&mut ann, "deleted"), told);
    assert_tombstone(&api_messages(addr, "r")[0], id, "r");
    assert_eq!(
        status(&request(addr, "DELETE", &path, &bearer())),
        404,
        "once"
    );
    assert_eq!(
        metric(
            addr,
            "switchboard_moderation_actions_total{action=\"delete\"}"
        ),
        1
    );
}

#[test]
fn without_a_token_the_api_deletes_nothing() {
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let id = said(&mut ann, "kept");
    let answer = request(
        addr,
        "DELETE",
        &format!("/api/rooms/r/messages/{id}"),
        &bearer(),
    );
    assert_eq!(status(&answer), 403, "{answer}");
    assert_eq!(api_messages(addr, "r")[0]["text"], "kept");
}

#[test]
fn a_delete_on_one_node_is_seen_on_every_node() {
    let Some(redis) = Redis::start("delete_cluster") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, welcome) = chat(a.local_addr(), "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let (mut bob, _) = chat(b.local_addr(), "r", Some("bob"));
    next_of_type(&mut ann, "join");
    let first = said(&mut ann, "hello");
    let secret = said(&mut ann, "oops");
    said(&mut ann, "after");
    for _ in 0..3 {
        next_of_type(&mut bob, "message");
    }
    delete(&mut ann, secret);
    let told = json!({"type": "deleted", "room": "r", "id": secret, "by": "ann"});
    assert_eq!(next_of_type(&mut bob, "deleted"), told, "on the other node");
    assert_eq!(next_of_type(&mut ann, "deleted"), told);
    // Someone else's, from the other node: refused, and nobody hears of it.
    delete(&mut bob, first);
    assert_eq!(next_json(&mut bob)["code"], "forbidden");
    say(&mut bob, "next");
    assert_eq!(next_json(&mut ann)["text"], "next");

    let other = b.local_addr();
    let (mut carol, welcome) = chat(other, "r", Some("carol"));
    assert_tombstone(&with_id(&welcome["history"], secret), secret, "r");
    assert_eq!(with_id(&welcome["history"], first)["text"], "hello");
    assert_tombstone(&with_id(&page(&mut carol, 4), secret), secret, "r");
    let (_back, resumed) = chat_url(other, &format!("/ws/chat/r?since={first}&epoch={epoch}"));
    assert_eq!(resumed["resumed"], true);
    assert_tombstone(&with_id(&resumed["history"], secret), secret, "r");
    assert_tombstone(&api_messages(other, "r")[1], secret, "r");
    assert_eq!(
        api_messages(other, "r")[0]["from"],
        "ann",
        "the others are whole"
    );
}

#[test]
fn a_deleted_file_is_gone_from_every_node_and_from_redis() {
    let Some(redis) = Redis::start("delete_cluster_file") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(a.local_addr(), "r", Some("ann"));
    let msg = share(&mut ann, "notes.txt", b"private notes");
    let url = msg["file"]["url"].as_str().expect("a url").to_owned();
    let file_id = msg["file"]["id"].as_str().expect("an id").to_owned();
    // Node B fetched a copy of its own.
    assert_eq!(status(&request(b.local_addr(), "GET", &url, "")), 200);
    let path = format!("/api/rooms/r/messages/{}", msg["id"]);
    assert_eq!(
        status(&request(b.local_addr(), "DELETE", &path, &bearer())),
        200
    );
    next_of_type(&mut ann, "deleted");
    for node in [&a, &b] {
        let addr = node.local_addr();
        eventually(|| (status(&request(addr, "GET", &url, "")) == 404).then_some(()));
    }
    let key = format!("switchboard:file:{file_id}");
    assert_eq!(redis.command(&["EXISTS", &key]).trim(), ":0");
}

#[test]
fn a_tombstone_goes_from_redis_with_its_trimmed_entry() {
    let Some(redis) = Redis::start("delete_cluster_trim") else {
        return;
    };
    let node = Server::builder()
        .listen("127.0.0.1:0")
        .redis(redis.url())
        .retain(2)
        .rate_per_sec(1000)
        .rate_burst(1000)
        .start()
        .expect("node starts");
    let (mut ann, _) = chat(node.local_addr(), "r", Some("ann"));
    let first = said(&mut ann, "one");
    delete(&mut ann, first);
    next_of_type(&mut ann, "deleted");
    let kept = || redis.command(&["HLEN", "switchboard:deleted:r"]);
    assert_eq!(kept().trim(), ":1");
    said(&mut ann, "two");
    assert_eq!(kept().trim(), ":1", "its entry is still kept");
    said(&mut ann, "three");
    assert_eq!(
        kept().trim(),
        ":0",
        "trimmed with its entry: the hash stays bounded"
    );
}

/// An admin (signed in with the admin password, here as its Bearer) deletes anyone's
/// message on the chat socket, and through the API with the admin password; the room
/// is told who did it. A member beside it still may not.
#[test]
fn an_admin_deletes_anyones_message_on_the_socket_and_through_the_api() {
    use tungstenite::client::IntoClientRequest;
    const ADMIN: &str = "staple battery";
    let server = start_with(|b| b.admin_password(ADMIN).rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let mut upgrade = format!("ws://{addr}/ws/chat/r?name=teacher")
        .into_client_request()
        .expect("a request");
    let bearer = format!("Bearer {ADMIN}").parse().expect("a header value");
    upgrade.headers_mut().insert("Authorization", bearer);
    let (mut teacher, _) = tungstenite::client(upgrade, tcp(addr)).expect("handshake");
    let welcome = next_of_type(&mut teacher, "welcome");
    assert_eq!(welcome["role"], "admin", "{welcome}");
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    let first = said(&mut ann, "first");
    let second = said(&mut ann, "second");
    delete(&mut bob, first);
    assert_eq!(next_of_type(&mut bob, "error")["code"], "forbidden");

    delete(&mut teacher, first);
    for ws in [&mut ann, &mut bob, &mut teacher] {
        let told = next_of_type(ws, "deleted");
        assert_eq!(
            (&told["id"], &told["by"]),
            (&json!(first), &json!("teacher"))
        );
    }
    let answer = request(
        addr,
        "DELETE",
        &format!("/api/rooms/r/messages/{second}"),
        &format!("Authorization: Bearer {ADMIN}\r\n"),
    );
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(next_of_type(&mut ann, "deleted")["id"], second);
    let wrong = request(
        addr,
        "DELETE",
        &format!("/api/rooms/r/messages/{second}"),
        "Authorization: Bearer not the admin password\r\n",
    );
    assert_eq!(status(&wrong), 401, "{wrong}");
}
