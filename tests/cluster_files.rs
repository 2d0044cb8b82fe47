//! Files in a cluster: a file posted on any node is served by every node, outlives the
//! node it was posted on, and costs Redis its bytes once, within the total allowed.
//! Every test starts its own `redis-server` on a free loopback port.

mod common;

use common::redis::Redis;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use switchboard::{Server, ServerHandle};
use tungstenite::Message;

/// A node of the cluster on `redis`, with `f` applied to its settings.
fn node_with(
    redis: &Redis,
    f: impl FnOnce(switchboard::ServerBuilder) -> switchboard::ServerBuilder,
) -> ServerHandle {
    f(Server::builder()
        .listen("127.0.0.1:0")
        .redis(redis.url())
        .rate_per_sec(1000)
        .rate_burst(1000))
    .start()
    .expect("node starts")
}

/// Bytes that vary, so that a piece out of place shows.
fn varied(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Announces `bytes` as `name`, sends them in binary messages of 64 KiB, and returns
/// the room's message about it as its sender sees it.
fn share(ws: &mut Client, name: &str, bytes: &[u8]) -> Value {
    let announce = json!({"type": "file", "name": name, "mime": "application/octet-stream",
                          "size": bytes.len()});
    send_json(ws, announce);
    for piece in bytes.chunks(64 * 1024) {
        ws.send(Message::binary(piece.to_vec())).expect("send");
    }
    next_of_type(ws, "message")
}

/// The whole answer to `GET path` (with `extra` header lines), as its head and body.
fn fetch(addr: SocketAddr, path: &str, extra: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = tcp(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("an answer");
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let body = answer.split_off(at + 4);
    (String::from_utf8_lossy(&answer).into_owned(), body)
}

/// A file posted on a node that is then killed (`kill -9`) is served, whole and by
/// range, by the node that stayed and by one started after: Redis has it.
#[test]
fn a_file_outlives_the_node_it_was_posted_on() {
    let Some(redis) = Redis::start("file_outlives") else {
        return;
    };
    let port = free_port();
    let posting: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", &posting.to_string(), "--no-tls", "--no-qr"])
        .args(["--redis", &redis.url(), "--rate-limit", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut posting_node = Running(child);
    eventually(|| std::net::TcpStream::connect(posting).ok());
    let staying = node_with(&redis, |b| b);
    let (mut ann, _) = chat(posting, "f", Some("ann"));
    let (mut ben, _) = chat(staying.local_addr(), "f", Some("ben"));
    // More than one of the copier's chunks, and not a whole number of them.
    let bytes = varied(3 * 1024 * 1024 + 5);
    let sent = share(&mut ann, "build.bin", &bytes);
    let got = next_of_type(&mut ben, "message");
    assert_eq!(got["file"], sent["file"], "{got}");
    let url = sent["file"]["url"].as_str().expect("a url").to_owned();
    let id = sent["file"]["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        redis.command(&["STRLEN", &format!("switchboard:file:{id}")]),
        format!(":{}", bytes.len()),
        "Redis holds the bytes once"
    );

    posting_node.0.kill().expect("kill -9");
    let _ = posting_node.0.wait();

    let (head, body) = fetch(staying.local_addr(), &url, "");
    assert_eq!(status(&head), 200, "{head}");
    assert!(
        body == bytes,
        "the bytes back exactly ({} of {})",
        body.len(),
        bytes.len()
    );
    let (head, body) = fetch(
        staying.local_addr(),
        &url,
        "Range: bytes=1048570-1048580\r\n",
    );
    assert_eq!(status(&head), 206, "{head}");
    assert_eq!(body, bytes[1_048_570..=1_048_580]);

    let later = node_with(&redis, |b| b);
    let (head, body) = fetch(later.local_addr(), &url, "");
    assert_eq!(status(&head), 200, "{head}");
    assert!(body == bytes, "a node started later serves it too");
    // A file nobody posted is not found, on any node.
    let (head, _) = fetch(
        later.local_addr(),
        &format!("/files/{}/x", "0".repeat(32)),
        "",
    );
    assert_eq!(status(&head), 404, "{head}");
}

/// What Redis holds of file `id`: its length (0 when it has none).
fn held(redis: &Redis, id: &Value) -> String {
    let id = id.as_str().expect("a file id");
    redis.command(&["STRLEN", &format!("switchboard:file:{id}")])
}

/// Redis holds the files within `--max-files-bytes`, the oldest going first, and a
/// file goes from Redis with its message when `--retain` trims it.
#[test]
fn redis_keeps_files_within_the_total_and_drops_them_with_their_messages() {
    let Some(redis) = Redis::start("files_total") else {
        return;
    };
    let dir = TempDir::new("files_total");
    let data = dir.path().to_path_buf();
    let server = node_with(&redis, |b| {
        b.retain(4).max_files_bytes(250_000).data_dir(data)
    });
    let (mut ann, _) = chat(server.local_addr(), "f", Some("ann"));
    let a = share(&mut ann, "a.bin", &varied(100_000));
    let b = share(&mut ann, "b.bin", &varied(100_001));
    assert_eq!(held(&redis, &a["file"]["id"]), ":100000");
    let c = share(&mut ann, "c.bin", &varied(100_002));
    assert_eq!(held(&redis, &a["file"]["id"]), ":0", "the oldest went");
    assert_eq!(held(&redis, &b["file"]["id"]), ":100001");
    assert_eq!(held(&redis, &c["file"]["id"]), ":100002");
    // This node's disk is a copy of Redis, within the total too: a's copy went.
    let mut here: Vec<String> = std::fs::read_dir(dir.path().join("files/ids"))
        .expect("the files' directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    here.sort();
    let mut kept = vec![
        b["file"]["id"].as_str().unwrap_or_default().to_owned(),
        c["file"]["id"].as_str().unwrap_or_default().to_owned(),
    ];
    kept.sort();
    assert_eq!(here, kept);
    let url = a["file"]["url"].as_str().expect("a url");
    let (head, _) = fetch(server.local_addr(), url, "");
    assert_eq!(status(&head), 404, "expired everywhere: {head}");
    // Its message stays, and says so; the others' do not.
    let (_, welcome) = chat(server.local_addr(), "f", Some("cy"));
    let history = welcome["history"].as_array().expect("history");
    let expired: Vec<(&Value, &Value)> = history
        .iter()
        .map(|m| (&m["file"]["name"], &m["file"]["expired"]))
        .collect();
    assert_eq!(
        expired,
        [
            (&json!("a.bin"), &json!(true)),
            (&json!("b.bin"), &Value::Null),
            (&json!("c.bin"), &Value::Null)
        ],
        "{welcome}"
    );
    assert_eq!(
        redis.command(&["GET", "switchboard:files:bytes"]),
        "$6",
        "200003 bytes: a six-digit count"
    );
    // Too large for the total even alone: refused, nothing posted.
    let big = share_refused(&mut ann, &varied(250_001));
    assert_eq!(big["code"], "storage_full", "{big}");

    // Four messages kept (1 to 3 share a, b, c): the fifth pushes a out, the sixth b,
    // the seventh c.
    for (text, gone) in [
        ("one", None),
        ("two", None),
        ("three", Some(&b)),
        ("four", Some(&c)),
    ] {
        say(&mut ann, text);
        next_of_type(&mut ann, "message");
        if let Some(gone) = gone {
            assert_eq!(
                held(&redis, &gone["file"]["id"]),
                ":0",
                "trimmed with its message"
            );
        }
    }
    assert_eq!(held(&redis, &c["file"]["id"]), ":0");
    assert_eq!(redis.command(&["GET", "switchboard:files:bytes"]), "$1");
    assert_eq!(redis.command(&["HLEN", "switchboard:files:size"]), ":0");
}

/// Sends a file that is to be refused; returns the error.
fn share_refused(ws: &mut Client, bytes: &[u8]) -> Value {
    let announce = json!({"type": "file", "name": "x.bin", "mime": "application/octet-stream",
                          "size": bytes.len()});
    send_json(ws, announce);
    for piece in bytes.chunks(64 * 1024) {
        // The server may refuse before the last piece: what it then reads is refused
        // again, which is fine.
        if ws.send(Message::binary(piece.to_vec())).is_err() {
            break;
        }
    }
    next_of_type(ws, "error")
}

/// When Redis cannot take a file, its sender is told `unavailable` and nothing is
/// posted: a message never names a file the other nodes could not serve.
#[test]
fn a_file_redis_cannot_take_is_refused_and_posts_nothing() {
    let Some(mut redis) = Redis::start("files_no_redis") else {
        return;
    };
    let server = node_with(&redis, |b| b);
    let (mut ann, _) = chat(server.local_addr(), "f", Some("ann"));
    redis.kill();
    let refused = share_refused(&mut ann, &varied(70_000));
    assert_eq!(refused["code"], "unavailable", "{refused}");
    redis.restart(true);
    // Once Redis is back, the next file goes through, and the refused one never came.
    let sent = eventually(|| {
        let msg = share_any(&mut ann, &varied(1000));
        (msg["type"] == "message").then_some(msg)
    });
    assert_eq!(sent["id"], 1, "the first message of the room: {sent}");
}

/// Sends a file; returns the first message or error that answers it.
fn share_any(ws: &mut Client, bytes: &[u8]) -> Value {
    let announce = json!({"type": "file", "name": "x.bin", "mime": "application/octet-stream",
                          "size": bytes.len()});
    send_json(ws, announce);
    ws.send(Message::binary(bytes.to_vec())).expect("send");
    loop {
        let msg = next_json(ws);
        if msg["type"] == "message" || msg["type"] == "error" {
            return msg;
        }
    }
}

/// A file a script posts through the API of one node is served by another, and the
/// room on that node gets its message.
#[test]
fn a_file_posted_through_the_api_of_one_node_is_served_by_another() {
    use std::io::{Read, Write};
    let Some(redis) = Redis::start("files_api") else {
        return;
    };
    let one = node_with(&redis, |b| b.api_token("t0ken"));
    let other = node_with(&redis, |b| b);
    let (mut watcher, _) = chat(other.local_addr(), "ops", Some("watcher"));
    let bytes = varied(200_000);
    let mut stream = tcp(one.local_addr());
    let head = format!(
        "POST /api/rooms/ops/files?name=dump.bin HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer t0ken\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    stream.write_all(head.as_bytes()).expect("head sent");
    stream.write_all(&bytes).expect("body sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    assert_eq!(status(&answer), 201, "{answer}");
    let got = next_of_type(&mut watcher, "message");
    let url = got["file"]["url"].as_str().expect("a url");
    let (head, body) = fetch(other.local_addr(), url, "");
    assert_eq!(status(&head), 200, "{head}");
    assert!(body == bytes, "the bytes back exactly");
}

/// Anyone may ask any node for any file id, and a node that lacks one asks Redis. A
/// crowd asking for ids nobody posted, in parallel from several addresses while Redis
/// is slow (stopped for a moment), fills the queue of such requests: they get
/// `404`s, and a file posted meanwhile still waits its turn and is kept and shared.
#[test]
fn asking_for_files_nobody_posted_never_crowds_out_a_file_being_posted() {
    use std::io::{Read, Write};
    let Some(redis) = Redis::start("files_crowd") else {
        return;
    };
    let server = node_with(&redis, |b| b);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "f", Some("ann"));
    redis.pause();
    let crowd: Vec<_> = (0..96u8)
        .map(|i| {
            std::thread::spawn(move || {
                let id = format!("{:032x}", u32::from(i) + 1);
                let mut s = tcp_from([127, 0, 0, 2 + i % 8], addr);
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                let request = format!(
                    "GET /files/{id}/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(request.as_bytes());
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                status(&answer)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bytes = varied(500_000);
    let announce = json!({"type": "file", "name": "mid-crowd.bin", "size": bytes.len(),
                          "mime": "application/octet-stream"});
    send_json(&mut ann, announce);
    for piece in bytes.chunks(64 * 1024) {
        ann.send(Message::binary(piece.to_vec())).expect("send");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    redis.resume();
    let sent = eventually(|| {
        let msg = next_json(&mut ann);
        (msg["type"] == "message" || msg["type"] == "error").then_some(msg)
    });
    assert_eq!(sent["type"], "message", "the file was kept: {sent}");
    let statuses: Vec<u16> = crowd
        .into_iter()
        .map(|t| t.join().expect("a crowd thread"))
        .collect();
    assert!(
        statuses.iter().all(|&s| s == 404),
        "every made-up id is not found: {statuses:?}"
    );
    assert_eq!(
        held(&redis, &sent["file"]["id"]),
        format!(":{}", bytes.len())
    );
}
