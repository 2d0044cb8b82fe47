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

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
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
            "multipart/form-data; boundary=x",
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
