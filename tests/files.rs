//! Files and pictures in the chat: announced with a `file` request, their bytes sent as
//! binary messages, stored on disk, and served back over HTTP exactly.

mod common;

use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use switchboard::ServerHandle;
use tungstenite::Message;

/// A PNG's signature, then `n` more bytes that vary: a picture, as far as its bytes go.
fn png(n: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..n).map(|i| (i * 7 % 251) as u8));
    bytes
}

/// Announces `bytes` as `name` and sends them in binary messages of `chunk` bytes.
fn send_file(ws: &mut Client, name: &str, mime: &str, bytes: &[u8], chunk: usize) {
    let announce = json!({"type": "file", "name": name, "mime": mime, "size": bytes.len()});
    send_json(ws, announce);
    for piece in bytes.chunks(chunk.max(1)) {
        ws.send(Message::binary(piece.to_vec())).expect("send");
    }
}

/// Sends a file and returns the room's message about it, as its sender sees it.
fn shared(ws: &mut Client, name: &str, mime: &str, bytes: &[u8]) -> Value {
    send_file(ws, name, mime, bytes, 64 * 1024);
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["file"]["name"], name, "{msg}");
    msg
}

/// A GET (or another method) of `path` with `extra` header lines; the whole answer as
/// bytes.
fn fetch(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = tcp(addr);
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("an answer");
    answer
}

/// The head of an answer as text, and its body.
fn split(answer: &[u8]) -> (String, Vec<u8>) {
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    (
        String::from_utf8_lossy(&answer[..at + 2]).into_owned(),
        answer[at + 4..].to_vec(),
    )
}

fn with_files(
    f: impl FnOnce(switchboard::ServerBuilder) -> switchboard::ServerBuilder,
) -> ServerHandle {
    start_with(|b| f(b.rate_per_sec(1000).rate_burst(1000)))
}

#[test]
fn a_picture_sent_on_the_chat_socket_reaches_the_room_and_comes_back_byte_for_byte() {
    let server = with_files(|b| b);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    // Several binary messages, the last one short.
    let bytes = png(300_000);
    send_file(&mut ann, "cat picture.png", "image/png", &bytes, 100_000);
    let got = next_of_type(&mut bob, "message");
    let file = &got["file"];
    assert_eq!(
        (&file["name"], &file["mime"], &file["size"]),
        (
            &json!("cat picture.png"),
            &json!("image/png"),
            &json!(bytes.len())
        )
    );
    let id = file["id"].as_str().expect("an id");
    assert_eq!(id.len(), 32, "128 random bits: {id}");
    assert_eq!(file["url"], format!("/files/{id}/cat%20picture.png"));
    assert_eq!(next_of_type(&mut ann, "message")["id"], got["id"]);
    let url = file["url"].as_str().expect("a url");

    let (head, body) = split(&fetch(addr, "GET", url, ""));
    assert_eq!(status(&head), 200, "{head}");
    assert!(body == bytes, "the bytes back exactly");
    for (name, value) in [
        ("Content-Type", "image/png".to_owned()),
        ("Content-Length", bytes.len().to_string()),
        ("ETag", format!("\"{id}\"")),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Accept-Ranges", "bytes".to_owned()),
    ] {
        assert_eq!(header(&head, name), Some(value.as_str()), "{name}: {head}");
    }
    assert!(
        header(&head, "Cache-Control")
            .is_some_and(|c| c.contains("private") && c.contains("immutable"))
    );
    assert!(header(&head, "Content-Disposition").is_some_and(|d| d.starts_with("inline")));

    // HEAD: the same head, no body.
    let (head_only, empty) = split(&fetch(addr, "HEAD", url, ""));
    assert_eq!(status(&head_only), 200);
    assert_eq!(
        header(&head_only, "Content-Length"),
        Some(bytes.len().to_string().as_str())
    );
    assert!(empty.is_empty());

    // Ranges: a middle slice, the last bytes, one past the end.
    let (head, body) = split(&fetch(addr, "GET", url, "Range: bytes=1000-1999\r\n"));
    assert_eq!(status(&head), 206, "{head}");
    assert_eq!(
        header(&head, "Content-Range"),
        Some(format!("bytes 1000-1999/{}", bytes.len()).as_str())
    );
    assert!(body == bytes[1000..2000]);
    let (head, body) = split(&fetch(addr, "GET", url, "Range: bytes=-5\r\n"));
    assert_eq!(status(&head), 206);
    assert!(body == bytes[bytes.len() - 5..]);
    let past = format!("Range: bytes={}-\r\n", bytes.len());
    let (head, _) = split(&fetch(addr, "GET", url, &past));
    assert_eq!(status(&head), 416, "{head}");
    assert_eq!(
        header(&head, "Content-Range"),
        Some(format!("bytes */{}", bytes.len()).as_str())
    );
    // A cache that has it asks again: not modified.
    let (head, body) = split(&fetch(
        addr,
        "GET",
        url,
        &format!("If-None-Match: \"{id}\"\r\n"),
    ));
    assert_eq!(status(&head), 304, "{head}");
    assert!(body.is_empty());
    // Ids that are not there, or not ids at all.
    for path in [
        "/files/0123456789abcdef0123456789abcdef/x.png".to_owned(),
        format!("/files/{}/x", &id[..31]),
        "/files/../chat.sqlite3".to_owned(),
    ] {
        let (head, _) = split(&fetch(addr, "GET", &path, ""));
        assert_eq!(status(&head), 404, "{path}: {head}");
    }
}

/// Only the four picture formats, known by their bytes, are ever shown inline: an HTML
/// page or an SVG (which can carry script) is a download, whatever it was called.
#[test]
fn html_and_svg_are_never_served_inline_whatever_they_claim_to_be() {
    let server = with_files(|b| b);
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let html = b"<html><script>alert(document.cookie)</script></html>";
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    for (name, mime, bytes) in [
        ("page.html", "text/html", &html[..]),
        ("drawing.svg", "image/svg+xml", &svg[..]),
        ("fake.png", "image/png", &html[..]),
    ] {
        let msg = shared(&mut ann, name, mime, bytes);
        let url = msg["file"]["url"].as_str().expect("a url");
        let (head, body) = split(&fetch(addr, "GET", url, ""));
        assert_eq!(status(&head), 200);
        assert_eq!(
            header(&head, "Content-Type"),
            Some("application/octet-stream"),
            "{name}"
        );
        assert!(
            header(&head, "Content-Disposition").is_some_and(|d| d.starts_with("attachment")),
            "{name}: {head}"
        );
        assert!(header(&head, "Content-Security-Policy").is_some_and(|c| c.contains("sandbox")));
        assert_eq!(header(&head, "X-Content-Type-Options"), Some("nosniff"));
        assert!(body == bytes);
    }
}

/// Each way a file can be refused gets its own error, the connection stays open, and
/// the room sees nothing of it.
#[test]
fn a_file_refused_gets_its_error_and_posts_nothing() {
    let server = with_files(|b| b.max_file_size(1000).max_files_bytes(1500));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    let error = |ws: &mut Client| next_of_type(ws, "error")["code"].clone();

    // Too large: refused before any byte is sent.
    send_json(
        &mut ann,
        json!({"type": "file", "name": "big.bin", "mime": "", "size": 1001}),
    );
    assert_eq!(error(&mut ann), "file_too_large");
    // Bytes nobody announced.
    ann.send(Message::binary(vec![1, 2, 3])).expect("send");
    assert_eq!(error(&mut ann), "bad_file");
    // More bytes than announced: the file is dropped.
    send_json(
        &mut ann,
        json!({"type": "file", "name": "a.bin", "mime": "", "size": 4}),
    );
    ann.send(Message::binary(vec![0; 6])).expect("send");
    assert_eq!(error(&mut ann), "bad_file");
    // A name that is a path, a type that is not one.
    for bad in [
        json!({"type": "file", "name": "../../etc/passwd", "mime": "", "size": 1}),
        json!({"type": "file", "name": "x", "mime": "not a type", "size": 1}),
        json!({"type": "file", "name": "", "mime": "", "size": 1}),
    ] {
        send_json(&mut ann, bad);
        assert_eq!(error(&mut ann), "bad_file");
    }
    // No size: missing.
    send_json(&mut ann, json!({"type": "file", "name": "x", "mime": ""}));
    assert_eq!(error(&mut ann), "missing_field");

    // Ann's connection still works, and Bob hears her next message, nothing before it.
    say(&mut ann, "still here");
    let next = next_of_type(&mut bob, "message");
    assert_eq!(
        (&next["text"], &next["id"]),
        (&json!("still here"), &json!(1))
    );

    // Within the size, but over what all files together may take: storage_full.
    let server = with_files(|b| b.max_file_size(2000).max_files_bytes(1500));
    let (mut cat, _) = chat(server.local_addr(), "r", Some("cat"));
    send_json(
        &mut cat,
        json!({"type": "file", "name": "x.bin", "mime": "", "size": 1600}),
    );
    assert_eq!(error(&mut cat), "storage_full");
}

/// Chat messages sent while a file's bytes are still coming wait behind it: the room
/// gets the file, then them, in the order they were sent.
#[test]
fn messages_sent_during_a_file_follow_it() {
    let server = with_files(|b| b);
    let (mut ann, _) = chat(server.local_addr(), "r", Some("ann"));
    let bytes = png(10_000);
    send_json(
        &mut ann,
        json!({"type": "file", "name": "a.png", "mime": "image/png", "size": bytes.len(), "text": "look"}),
    );
    ann.send(Message::binary(bytes[..5000].to_vec()))
        .expect("send");
    say(&mut ann, "after the file");
    ann.send(Message::binary(bytes[5000..].to_vec()))
        .expect("send");
    let first = next_of_type(&mut ann, "message");
    assert_eq!(
        (&first["text"], &first["file"]["name"]),
        (&json!("look"), &json!("a.png"))
    );
    assert_eq!(next_of_type(&mut ann, "message")["text"], "after the file");
}

/// A sender that goes mid-file posts nothing, and leaves no bytes behind.
#[test]
fn a_sender_that_drops_mid_file_posts_nothing_and_leaves_nothing() {
    let dir = TempDir::new("files_drop");
    let server = with_files(|b| b.data_dir(dir.path()));
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    {
        let (mut ann, _) = chat(addr, "r", Some("ann"));
        send_json(
            &mut ann,
            json!({"type": "file", "name": "half.bin", "mime": "", "size": 100_000}),
        );
        ann.send(Message::binary(vec![7; 50_000])).expect("send");
        // The part is on disk while it comes.
        eventually(|| (entries(&dir.path().join("files/tmp")).len() == 1).then_some(()));
    }
    assert_eq!(next_of_type(&mut bob, "leave")["name"], "ann");
    eventually(|| {
        entries(&dir.path().join("files/tmp"))
            .is_empty()
            .then_some(())
    });
    assert!(entries(&dir.path().join("files/ids")).is_empty());
    say(&mut bob, "next");
    assert_eq!(
        next_of_type(&mut bob, "message")["id"],
        1,
        "nothing was posted"
    );
}

/// The binary on a data directory, so that it can be killed.
fn binary(dir: &Path) -> (Running, SocketAddr) {
    let (mut command, addr) = binary_command();
    command.arg("--data").arg(dir);
    (serving(command, addr), addr)
}

/// `kill -9` in the middle of an upload: after the restart nothing of it is visible
/// and nothing of it is left; `kill -9` after one: the message and its file are both
/// there.
#[test]
fn kill_9_mid_upload_leaves_nothing_and_after_it_keeps_both() {
    let dir = TempDir::new("files_kill");
    let bytes = png(200_000);
    let (mut server, addr) = binary(dir.path());
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let done = shared(&mut ann, "kept.png", "image/png", &bytes);
    send_json(
        &mut ann,
        json!({"type": "file", "name": "cut.bin", "mime": "", "size": 1_000_000}),
    );
    ann.send(Message::binary(vec![1; 400_000])).expect("send");
    eventually(|| (entries(&dir.path().join("files/tmp")).len() == 1).then_some(()));
    let _ = server.0.kill();
    let _ = server.0.wait();
    drop(ann);

    let (_server, addr) = binary(dir.path());
    assert!(
        entries(&dir.path().join("files/tmp")).is_empty(),
        "the part is gone"
    );
    assert_eq!(
        entries(&dir.path().join("files/ids")).len(),
        1,
        "the finished one stays"
    );
    let (_, welcome) = chat(addr, "r", Some("bob"));
    let history = welcome["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{welcome}");
    assert_eq!(history[0]["file"], done["file"]);
    let url = done["file"]["url"].as_str().expect("a url");
    let (head, body) = split(&fetch(addr, "GET", url, ""));
    assert_eq!(status(&head), 200);
    assert!(body == bytes);
}

/// A file goes when its message does (`--retain`); the same picture posted twice is
/// stored once, and stays while a message still shares it.
#[test]
fn files_go_with_their_messages_and_the_same_bytes_are_stored_once() {
    let dir = TempDir::new("files_retain");
    let server = with_files(|b| b.data_dir(dir.path()).retain(2));
    let (mut ann, _) = chat(server.local_addr(), "r", Some("ann"));
    let bytes = png(5000);
    let first = shared(&mut ann, "a.png", "image/png", &bytes);
    let second = shared(&mut ann, "b.png", "image/png", &bytes);
    assert_ne!(first["file"]["id"], second["file"]["id"]);
    assert_eq!(
        entries(&dir.path().join("files/blobs")).len(),
        1,
        "stored once"
    );
    assert_eq!(entries(&dir.path().join("files/ids")).len(), 2);
    // A third message pushes the first out of the room's two.
    say(&mut ann, "third");
    next_of_type(&mut ann, "message");
    let url = |m: &Value| m["file"]["url"].as_str().unwrap_or_default().to_owned();
    eventually(|| {
        let (head, _) = split(&fetch(server.local_addr(), "GET", &url(&first), ""));
        (status(&head) == 404).then_some(())
    });
    let (head, body) = split(&fetch(server.local_addr(), "GET", &url(&second), ""));
    assert_eq!(status(&head), 200);
    assert!(body == bytes, "the bytes stay for the message still kept");
    assert_eq!(entries(&dir.path().join("files/blobs")).len(), 1);
}

/// Past `--max-files-bytes` the oldest files go; their messages stay, and say so.
#[test]
fn past_the_total_the_oldest_files_expire_and_their_messages_say_so() {
    let server = with_files(|b| b.max_file_size(4000).max_files_bytes(10_000));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let posted: Vec<Value> = (0..3)
        .map(|i| {
            let mut bytes = png(3900);
            bytes.push(i);
            shared(&mut ann, &format!("{i}.png"), "image/png", &bytes)
        })
        .collect();
    // 3 × 3,909 bytes is over 10,000: the first went.
    let url = |m: &Value| m["file"]["url"].as_str().unwrap_or_default().to_owned();
    let (head, _) = split(&fetch(addr, "GET", &url(&posted[0]), ""));
    assert_eq!(status(&head), 404, "{head}");
    for kept in &posted[1..] {
        let (head, _) = split(&fetch(addr, "GET", &url(kept), ""));
        assert_eq!(status(&head), 200);
    }
    let (_, welcome) = chat(addr, "r", Some("bob"));
    let history = welcome["history"].as_array().expect("history");
    assert_eq!(history.len(), 3, "the messages stay");
    assert_eq!(history[0]["file"]["expired"], true, "{}", history[0]);
    assert!(history[1]["file"].get("expired").is_none());
}

/// With a password, a file is for those signed in, like the chat.
#[test]
fn files_need_the_password_when_there_is_one() {
    let server = with_files(|b| b.password("hunter2hunter2"));
    let addr = server.local_addr();
    let (mut ann, _) = chat_url_with(
        addr,
        "/ws/chat/r?name=ann",
        "Authorization: Bearer hunter2hunter2\r\n",
    );
    let msg = shared(&mut ann, "p.png", "image/png", &png(100));
    let url = msg["file"]["url"].as_str().expect("a url");
    let (head, _) = split(&fetch(addr, "GET", url, ""));
    assert_eq!(status(&head), 401, "{head}");
    let (head, body) = split(&fetch(
        addr,
        "GET",
        url,
        "Authorization: Bearer hunter2hunter2\r\n",
    ));
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body.len(), 108);
}

/// A chat connection opened with extra request headers; its welcome.
fn chat_url_with(addr: SocketAddr, path: &str, extra: &str) -> (Client, Value) {
    let request = upgrade_request(path, extra);
    let (head, stream) = handshake(addr, request);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut ws = client_on(stream);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    (ws, welcome)
}

/// A POST of `body` to `path` with `Content-Type: mime` and `extra` header lines; the
/// answer's head and body.
fn post_raw(
    addr: SocketAddr,
    path: &str,
    mime: &str,
    body: &[u8],
    extra: &str,
) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = tcp(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {mime}\r\n\
         Content-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head sent");
    // A refusal may come before the whole body is sent, and the server close.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    split(&answer)
}

/// A script posts a file as the raw body (`curl --data-binary @x.png -H 'Content-Type:
/// image/png'`): `201` and the message, which the room gets like any other.
#[test]
fn a_script_posts_a_file_as_the_raw_body() {
    let server = with_files(|b| b.api_token("t0ken").max_file_size(200_000));
    let addr = server.local_addr();
    let (mut watcher, _) = chat(addr, "ops", Some("watcher"));
    let bytes = png(150_000);
    let token = "Authorization: Bearer t0ken\r\n";
    let path = "/api/rooms/ops/files?name=build%20graph.png&text=nightly";
    let (head, body) = post_raw(addr, path, "image/png", &bytes, token);
    assert_eq!(status(&head), 201, "{head}");
    let posted: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        (
            &posted["via"],
            &posted["text"],
            &posted["file"]["name"],
            &posted["file"]["size"]
        ),
        (
            &json!("api"),
            &json!("nightly"),
            &json!("build graph.png"),
            &json!(bytes.len())
        )
    );
    let got = next_of_type(&mut watcher, "message");
    assert_eq!(got["file"], posted["file"]);
    let url = posted["file"]["url"].as_str().expect("a url");
    let (head, served) = split(&fetch(addr, "GET", url, ""));
    assert_eq!(status(&head), 200);
    assert!(served == bytes);

    // Each refusal with its status, and nothing posted.
    let refusals = [
        (path, "image/png", &bytes[..], "", 401, "unauthorized"),
        (
            "/api/rooms/ops/files",
            "image/png",
            &bytes[..],
            token,
            400,
            "bad_file",
        ),
        (
            "/api/rooms/ops/files?name=..",
            "image/png",
            &bytes[..],
            token,
            400,
            "bad_file",
        ),
        (
            path,
            "multipart/mixed; boundary=x",
            &bytes[..],
            token,
            415,
            "unsupported_media_type",
        ),
    ];
    for (path, mime, body, extra, code, error) in refusals {
        let (head, body) = post_raw(addr, path, mime, body, extra);
        assert_eq!(status(&head), code, "{path} {mime}: {head}");
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["error"], error, "{answer}");
    }
    let big = png(200_000);
    let (head, body) = post_raw(addr, path, "image/png", &big, token);
    assert_eq!(status(&head), 413, "{head}");
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["error"], "file_too_large");
    say(&mut watcher, "after");
    assert_eq!(
        next_of_type(&mut watcher, "message")["id"],
        2,
        "nothing else was posted"
    );
}

/// Uploads on their way reserve their announced size: twelve clients from six
/// addresses announce 200 kB each at once, with 1 MB allowed for all files; five are
/// taken, the seven others get `storage_full` before they send a byte more, and a
/// bystander in another room chats on.
#[test]
fn uploads_announced_at_once_from_many_addresses_stay_within_the_total() {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;
    let dir = TempDir::new("files_reserve");
    let server = with_files(|b| b.data_dir(dir.path()).max_files_bytes(1_000_000));
    let addr = server.local_addr();
    let (mut bystander, _) = chat(addr, "elsewhere", Some("bystander"));
    let clients = 12;
    let announced = Arc::new(Barrier::new(clients));
    let answered = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (announced, answered) = (Arc::clone(&announced), Arc::clone(&answered));
            std::thread::spawn(move || {
                let stream = tcp_from([127, 0, 0, 2 + (i % 6) as u8], addr);
                let url = format!("ws://{addr}/ws/chat/up?name=u{i}");
                let (mut ws, _) = tungstenite::client(url, stream).expect("handshake");
                assert_eq!(next_json(&mut ws)["type"], "welcome");
                // Bytes of its own: the same bytes would be stored once.
                let mut bytes = png(200_000 - 8);
                if let Some(last) = bytes.last_mut() {
                    *last = i as u8;
                }
                announced.wait();
                send_json(
                    &mut ws,
                    json!({"type": "file", "name": format!("f{i}.png"), "mime": "image/png",
                           "size": bytes.len()}),
                );
                // A refusal comes at once; a reservation says nothing.
                let _ = ws.get_ref().set_read_timeout(Some(Duration::from_secs(1)));
                let refused = loop {
                    match ws.read() {
                        Ok(Message::Text(t)) => {
                            let msg: Value = serde_json::from_str(&t).expect("JSON");
                            if msg["type"] == "error" {
                                break Some(msg["code"].as_str().unwrap_or("").to_owned());
                            }
                        }
                        Ok(_) => {}
                        Err(e) if timed_out(&e) => break None,
                        Err(e) => panic!("u{i}: {e}"),
                    }
                };
                answered.wait();
                if let Some(code) = refused {
                    return code;
                }
                let _ = ws.get_ref().set_read_timeout(Some(READ_TIMEOUT));
                for piece in bytes.chunks(64 * 1024) {
                    ws.send(Message::binary(piece.to_vec())).expect("send");
                }
                let msg = next_of_type(&mut ws, "message");
                assert_eq!(msg["file"]["size"], 200_000, "{msg}");
                "stored".to_owned()
            })
        })
        .collect();
    let mut outcomes: Vec<String> = threads
        .into_iter()
        .map(|t| t.join().expect("a client"))
        .collect();
    outcomes.sort();
    let mut expected = vec!["storage_full".to_owned(); 7];
    expected.extend(vec!["stored".to_owned(); 5]);
    assert_eq!(outcomes, expected);
    let on_disk: u64 = std::fs::read_dir(dir.path().join("files/blobs"))
        .expect("blobs")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(on_disk, 1_000_000, "five files of 200 kB");
    assert!(entries(&dir.path().join("files/tmp")).is_empty());
    say(&mut bystander, "still here");
    assert_eq!(
        next_of_type(&mut bystander, "message")["text"],
        "still here"
    );
}

/// The boundary the tests' forms use.
const B: &str = "form-boundary-7MA4YWxk";

/// A `multipart/form-data` body: each part its name, the rest of its
/// `Content-Disposition` and any header lines after it, and its bytes.
fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, extra, bytes) in parts {
        body.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={B}")
}

/// Runs the real curl with `args` (and `-s`), from `dir`; its standard output.
fn curl(dir: &Path, args: &[&str]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl runs");
    let status = wait_exit(&mut child, std::time::Duration::from_secs(30));
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out).expect("curl's output");
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(status.is_some_and(|s| s.success()), "curl {args:?}: {out}");
    out
}

/// `curl -F file=@…`: `201` and the stored message, exactly as for a raw body: the
/// name and type from the part, the caption from a `text` part, the bytes back
/// exactly; the query's `name` and `text` win over the parts'.
#[test]
fn curl_f_posts_a_file_as_a_form() {
    let test = "curl_f_posts_a_file_as_a_form";
    if tool_or_skip(test, "curl", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let dir = TempDir::new("files_form");
    let server = with_files(|b| {
        b.api_token("t0ken")
            .data_dir(dir.path().join("data"))
            .max_file_size(4 << 20)
    });
    let addr = server.local_addr();
    let (mut watcher, _) = chat(addr, "ops", Some("watcher"));
    let url = format!("http://{addr}/api/rooms/ops/files");
    let token = "Authorization: Bearer t0ken";
    // Over a MiB: curl waits for `100 Continue` before the body.
    let picture = png(3 << 20);
    std::fs::write(dir.path().join("build graph.png"), &picture).expect("a picture");
    let answer = curl(
        dir.path(),
        &[
            "-F",
            "file=@build graph.png",
            "-F",
            "text=nightly é",
            "-H",
            token,
            &url,
        ],
    );
    let posted: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        (
            &posted["via"],
            &posted["text"],
            &posted["file"]["name"],
            &posted["file"]["mime"],
            &posted["file"]["size"]
        ),
        (
            &json!("api"),
            &json!("nightly é"),
            &json!("build graph.png"),
            &json!("image/png"),
            &json!(picture.len())
        ),
        "{answer}"
    );
    assert_eq!(
        next_of_type(&mut watcher, "message")["file"],
        posted["file"]
    );
    let (head, served) = split(&fetch(
        addr,
        "GET",
        posted["file"]["url"].as_str().unwrap(),
        "",
    ));
    assert_eq!(status(&head), 200, "{head}");
    assert!(served == picture, "the bytes back exactly");

    // A type of the sender's choosing, no caption, and the status line itself.
    std::fs::write(dir.path().join("notes.bin"), b"\x00\x01 notes").expect("a file");
    let answer = curl(
        dir.path(),
        &[
            "-w",
            "\n%{http_code}",
            "-F",
            "file=@notes.bin;type=application/x-notes",
            "-H",
            token,
            &url,
        ],
    );
    let (json, code) = answer.rsplit_once('\n').expect("a status");
    assert_eq!(code, "201", "{answer}");
    let posted: Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(
        (
            &posted["text"],
            &posted["file"]["mime"],
            &posted["file"]["size"]
        ),
        (&json!(""), &json!("application/x-notes"), &json!(8))
    );
    next_of_type(&mut watcher, "message");

    // The query names it and captions it, over the parts.
    let answer = curl(
        dir.path(),
        &[
            "-F",
            "file=@notes.bin",
            "-F",
            "text=from the part",
            "-H",
            token,
            &format!("{url}?name=renamed.txt&text=from%20the%20query"),
        ],
    );
    let posted: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        (&posted["text"], &posted["file"]["name"]),
        (&json!("from the query"), &json!("renamed.txt"))
    );
    next_of_type(&mut watcher, "message");
    assert!(entries(&dir.path().join("data/files/tmp")).is_empty());
}

/// A refused form: what it is, its `Content-Type`, its body, extra header lines, and
/// the status and error it gets.
type BadForm<'a> = (&'a str, String, Vec<u8>, &'a str, u16, &'a str);

/// Each bad form gets its status and a reason, before a byte is read wherever it can
/// be: nothing is posted, a bystander in the room hears nothing, the server answers
/// the next client, and nothing is left in `files/tmp`.
#[test]
fn a_bad_form_gets_its_status_and_posts_nothing() {
    use std::io::{Read, Write};
    let dir = TempDir::new("files_bad_form");
    let server = with_files(|b| {
        b.api_token("t0ken")
            .data_dir(dir.path())
            .max_file_size(10_000)
            .max_text_len(100)
    });
    let addr = server.local_addr();
    let (mut bystander, _) = chat(addr, "ops", Some("bystander"));
    let path = "/api/rooms/ops/files";
    let token = "Authorization: Bearer t0ken\r\n";
    let file = png(1000);
    let mixed = "multipart/mixed; boundary=x".to_owned();
    let no_boundary = "multipart/form-data".to_owned();
    let long = format!("; filename=\"a.png\"\r\nX-Padding: {}", "p".repeat(5000));
    let too_big = png(12_000);
    let cases: Vec<BadForm> = vec![
        (
            "no token",
            form_type(),
            form(&[("file", "; filename=\"a.png\"", &file)]),
            "",
            401,
            "unauthorized",
        ),
        (
            "no file part",
            form_type(),
            form(&[("text", "", b"hello")]),
            token,
            400,
            "bad_request",
        ),
        (
            "two file parts",
            form_type(),
            form(&[
                ("file", "; filename=\"a.png\"", &file),
                ("file", "; filename=\"b.png\"", &file),
            ]),
            token,
            400,
            "bad_request",
        ),
        (
            "another boundary than announced",
            form_type(),
            form(&[("file", "; filename=\"a.png\"", &file)])
                .into_iter()
                .map(|b| if b == b'7' { b'8' } else { b })
                .collect(),
            token,
            400,
            "bad_request",
        ),
        (
            "no closing boundary",
            form_type(),
            {
                let mut cut = form(&[("file", "; filename=\"a.png\"", &file)]);
                cut.truncate(cut.len() - B.len() - 8);
                cut
            },
            token,
            400,
            "bad_request",
        ),
        (
            "no boundary at all",
            no_boundary,
            form(&[("file", "; filename=\"a.png\"", &file)]),
            token,
            400,
            "bad_request",
        ),
        (
            "a part header of 5 KiB",
            form_type(),
            form(&[("file", long.as_str(), &file)]),
            token,
            400,
            "bad_request",
        ),
        (
            "two hundred tiny parts",
            form_type(),
            form(&vec![("text", "", &b"x"[..]); 200]),
            token,
            400,
            "bad_request",
        ),
        (
            "no file name anywhere",
            form_type(),
            form(&[("file", "", &file)]),
            token,
            400,
            "bad_file",
        ),
        (
            "a file name that is a path",
            form_type(),
            form(&[("file", "; filename=\"../../etc/passwd\"", &file)]),
            token,
            400,
            "bad_file",
        ),
        (
            "a caption longer than a chat text",
            form_type(),
            form(&[
                ("file", "; filename=\"a.png\"", &file),
                ("text", "", &[b'a'; 101]),
            ]),
            token,
            413,
            "text_too_long",
        ),
        (
            "a file part over the largest file",
            form_type(),
            form(&[("file", "; filename=\"big.png\"", &too_big)]),
            token,
            413,
            "file_too_large",
        ),
        (
            "another multipart type",
            mixed,
            form(&[("file", "; filename=\"a.png\"", &file)]),
            token,
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, mime, body, extra, code, error) in cases {
        let (head, body) = post_raw(addr, path, &mime, &body, extra);
        assert_eq!(status(&head), code, "{what}: {head}");
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["error"], error, "{what}: {answer}");
        let reason = answer["message"].as_str().expect("a reason");
        assert!(
            !reason.is_empty() && !reason.contains('\n'),
            "{what}: {reason}"
        );
    }

    // Framing refused before any byte of the body is sent: chunked, no length, a
    // length past the largest file and what a form adds to it.
    for (what, framing, code) in [
        ("chunked", "Transfer-Encoding: chunked\r\n".to_owned(), 411),
        ("no length", String::new(), 411),
        ("too long", "Content-Length: 1000000\r\n".to_owned(), 413),
    ] {
        let mut stream = tcp(addr);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\n{framing}{token}\r\n",
            form_type()
        );
        stream.write_all(head.as_bytes()).expect("head sent");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let (head, _) = split(&answer);
        assert_eq!(status(&head), code, "{what}: {head}");
    }

    // A part header that never ends: refused once the server holds a little of it,
    // not when (or if) the rest of the body comes.
    let big = with_files(|b| b.api_token("t0ken").max_file_size(1 << 20));
    let mut stream = tcp(big.local_addr());
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\n\
         Content-Length: 1000000\r\n{token}\r\n\
         --{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"",
        form_type()
    )
    .into_bytes();
    request.resize(request.len() + 200_000, b'a');
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (head, body) = split(&answer);
    assert_eq!(status(&head), 400, "{head}");
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")),
        "{answer}"
    );

    // The bystander heard nothing before its own next message; the server still
    // answers; nothing is left half-written.
    say(&mut bystander, "after");
    assert_eq!(next_of_type(&mut bystander, "message")["id"], 1);
    assert_eq!(healthz(addr)["status"], "ok");
    eventually(|| {
        entries(&dir.path().join("files/tmp"))
            .is_empty()
            .then_some(())
    });
    assert!(entries(&dir.path().join("files/ids")).is_empty());
}

/// Forms posted in parallel from several addresses, each announcing a file as large
/// as allowed and then stalling: the server keeps answering others, the reservations
/// keep the total within `--max-files-bytes` (the ones past it get `507` at once),
/// the stalled ones time out (`408`), and nothing is left on disk.
#[test]
fn stalled_forms_in_parallel_stay_within_the_total() {
    use std::io::{Read, Write};
    let dir = TempDir::new("files_stalled_forms");
    let server = with_files(|b| {
        b.api_token("t0ken")
            .data_dir(dir.path())
            .max_file_size(100_000)
            .max_files_bytes(250_000)
            .handshake_timeout(std::time::Duration::from_secs(2))
    });
    let addr = server.local_addr();
    let (mut bystander, _) = chat(addr, "ops", Some("bystander"));
    let head = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.bin\"\r\n\r\n"
    );
    let streams: Vec<_> = (2..10u8)
        .map(|last| {
            let mut stream = tcp_from([127, 0, 0, last], addr);
            let request = format!(
                "POST /api/rooms/ops/files HTTP/1.1\r\nHost: localhost\r\n\
                 Content-Type: {}\r\nContent-Length: 100500\r\n\
                 Authorization: Bearer t0ken\r\n\r\n{head}",
                form_type()
            );
            stream.write_all(request.as_bytes()).expect("head sent");
            stream.write_all(&[7; 1000]).expect("a first piece");
            stream
        })
        .collect();
    let answers: Vec<_> = std::thread::scope(|scope| {
        let waiting: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                scope.spawn(move || {
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    status(&split(&answer).0)
                })
            })
            .collect();
        // Two hold their reservation and stall; meanwhile the server answers.
        eventually(|| (entries(&dir.path().join("files/tmp")).len() == 2).then_some(()));
        assert_eq!(healthz(addr)["status"], "ok");
        say(&mut bystander, "still here");
        assert_eq!(
            next_of_type(&mut bystander, "message")["text"],
            "still here"
        );
        waiting
            .into_iter()
            .map(|t| t.join().expect("a status"))
            .collect()
    });
    let count = |code| answers.iter().filter(|&&s| s == code).count();
    assert_eq!((count(507), count(408)), (6, 2), "{answers:?}");
    eventually(|| {
        entries(&dir.path().join("files/tmp"))
            .is_empty()
            .then_some(())
    });
    // The reservations are given back: a real file fits again.
    let (head, _) = post_raw(
        addr,
        "/api/rooms/ops/files",
        &form_type(),
        &form(&[("file", "; filename=\"a.png\"", &png(90_000))]),
        "Authorization: Bearer t0ken\r\n",
    );
    assert_eq!(status(&head), 201, "{head}");
}

/// A whole 3×2 PNG (signature, IHDR, IDAT, IEND), as a browser would decode it.
const PNG_3X2: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0x12, 0x16, 0xf1,
    0x4d, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x41, 0x0c, 0x70, 0x16, 0x00, 0x41, 0xd2, 0x05, 0xfb, 0x87, 0xf0, 0xb9, 0x48, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// `[width, height]` of a message's file, `null` where absent.
fn dimensions(msg: &Value) -> Value {
    json!([msg["file"].get("width"), msg["file"].get("height")])
}

/// A picture's message says its width and height (read from its bytes, on the chat
/// socket and through the API alike), so a page can lay it out before it loads; a
/// file that is not a picture, whatever its name and type say, says neither; and the
/// history keeps them.
#[test]
fn a_picture_carries_its_width_and_height_and_other_files_do_not() {
    let server = with_files(|b| b.api_token("t0ken"));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));

    send_file(&mut ann, "dot.png", "image/png", PNG_3X2, 10);
    let picture = next_of_type(&mut bob, "message");
    assert_eq!(dimensions(&picture), json!([3, 2]), "{picture}");
    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";
    send_file(&mut ann, "notes.pdf", "application/pdf", pdf, 1 << 16);
    let document = next_of_type(&mut bob, "message");
    assert_eq!(dimensions(&document), json!([null, null]), "{document}");
    // Named and typed as a PNG, but its bytes are not one: no size.
    send_file(
        &mut ann,
        "fake.png",
        "image/png",
        b"<svg width='3' height='2'/>",
        1 << 16,
    );
    let fake = next_of_type(&mut bob, "message");
    assert_eq!(fake["file"]["name"], "fake.png");
    assert_eq!(dimensions(&fake), json!([null, null]), "{fake}");
    // A PNG's signature with a header that says nothing sensible: no size either.
    let mut lying = PNG_3X2.to_vec();
    lying.truncate(20);
    send_file(&mut ann, "cut.png", "image/png", &lying, 1 << 16);
    assert_eq!(
        dimensions(&next_of_type(&mut bob, "message")),
        json!([null, null])
    );

    // Through the API: a 5×4 GIF.
    let gif = b"GIF89a\x05\x00\x04\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x05\x00\x04\x00\x00\x02\x04\x84\x8f\xa9\x0b\x00;";
    let (head, body) = post_raw(
        addr,
        "/api/rooms/r/files?name=wave.gif",
        "image/gif",
        gif,
        "Authorization: Bearer t0ken\r\n",
    );
    assert_eq!(status(&head), 201, "{head}");
    let posted: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(dimensions(&posted), json!([5, 4]), "{posted}");
    assert_eq!(next_of_type(&mut bob, "message")["file"], posted["file"]);

    // Someone who comes later finds them in the history, sizes and all.
    let (_carol, welcome) = chat(addr, "r", Some("carol"));
    let history: Vec<Value> = welcome["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|m| {
            json!([
                m["file"]["name"],
                m["file"].get("width"),
                m["file"].get("height")
            ])
        })
        .collect();
    assert_eq!(
        history,
        [
            json!(["dot.png", 3, 2]),
            json!(["notes.pdf", null, null]),
            json!(["fake.png", null, null]),
            json!(["cut.png", null, null]),
            json!(["wave.gif", 5, 4]),
        ]
    );
}
