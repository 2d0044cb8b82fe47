//! The HTTP API: posting into a room from a script, reading rooms and
//! messages, and the exact status of every refusal, through real sockets and curl.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::ServerHandle;

const TOKEN: &str = "t0ken-for-tests";

fn with_token() -> ServerHandle {
    start_with(|b| b.api_token(TOKEN))
}

/// A request with a body, answered in full.
fn send(server: &ServerHandle, method: &str, path: &str, headers: &str, body: &str) -> String {
    raw(
        server.local_addr(),
        format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn post(server: &ServerHandle, room: &str, content_type: &str, body: &str) -> String {
    let headers = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: {content_type}\r\n");
    send(
        server,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        &headers,
        body,
    )
}

/// The JSON body of a response.
fn json_body(response: &str) -> Value {
    serde_json::from_str(body(response)).unwrap_or_else(|_| panic!("JSON in {response}"))
}

/// Asserts the status and the `error` code of an API refusal.
fn assert_api_error(response: &str, status_code: u16, code: &str) {
    assert_eq!(status(response), status_code, "{response}");
    assert_eq!(header(response, "Content-Type"), Some("application/json"));
    let body = json_body(response);
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[test]
fn curl_as_the_readme_writes_it_reaches_every_member_of_the_room() {
    let Some(curl) = tool_or_skip(
        "curl_as_the_readme_writes_it",
        "curl",
        "SWITCHBOARD_REQUIRE_TOOLS",
    ) else {
        return;
    };
    let readme = include_str!("../README.md");
    let command = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl ") && l.contains("/api/rooms/") && l.contains(" -d "))
        .expect("a curl -d command in the README")
        .to_owned();
    let server = with_token();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "ops", Some("alice"));
    let (mut bob, _) = chat(addr, "ops", Some("bob"));
    let command = command
        .replace("http://HOST:3000", &format!("http://{addr}"))
        .replacen("curl", &curl.display().to_string(), 1);
    let out = Command::new("sh")
        .args(["-c", &command])
        .env("TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value =
        serde_json::from_slice(&out.stdout).expect("curl prints the stored message");
    for ws in [&mut alice, &mut bob] {
        let msg = next_of_type(ws, "message");
        assert_eq!(msg["text"], "deploy finished");
        assert_eq!(msg["via"], "api");
        assert_eq!(msg["from"], "api");
        assert_eq!(msg["id"], printed["id"]);
    }
}

#[test]
fn a_json_post_is_201_with_the_stored_message_and_joins_the_history() {
    let server = with_token();
    let addr = server.local_addr();
    let (mut member, _) = chat(addr, "ci", Some("dev"));
    say(&mut member, "before");
    next_of_type(&mut member, "message");
    let response = post(
        &server,
        "ci",
        "application/json",
        r#"{"text":"build 7 passed","from":"ci-bot"}"#,
    );
    assert_eq!(status(&response), 201, "{response}");
    let stored = json_body(&response);
    assert_eq!(
        (
            stored["id"].as_u64(),
            stored["from"].as_str(),
            stored["via"].as_str()
        ),
        (Some(2), Some("ci-bot"), Some("api"))
    );
    assert_eq!(next_of_type(&mut member, "message"), stored);
    let (_late, welcome) = chat(addr, "ci", Some("late"));
    assert_eq!(
        welcome["history"][1], stored,
        "in the history like any message"
    );
    // A chat client's own messages carry no `via`.
    assert!(welcome["history"][0].get("via").is_none());
}

#[test]
fn a_chunked_post_works_too() {
    let server = with_token();
    let (mut member, _) = chat(server.local_addr(), "chunks", Some("m"));
    let request = format!(
        "POST /api/rooms/chunks/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    );
    let response = raw(server.local_addr(), request.as_bytes());
    assert_eq!(status(&response), 201, "{response}");
    assert_eq!(next_of_type(&mut member, "message")["text"], "hello world");
}

#[test]
fn posting_without_a_configured_token_is_403_saying_how_to_set_one() {
    let server = start();
    let response = answer_beside_bystander(
        &server,
        "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_api_error(&response, 403, "forbidden");
    assert!(body(&response).contains("--api-token-file"), "{response}");
}

#[test]
fn a_missing_or_wrong_token_is_401() {
    let server = with_token();
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic dTpw\r\n",
    ] {
        let response = send(&server, "POST", "/api/rooms/ops/messages", auth, "hi");
        assert_api_error(&response, 401, "unauthorized");
        assert_eq!(header(&response, "WWW-Authenticate"), Some("Bearer"));
    }
}

#[test]
fn refusals_have_their_exact_status_and_nothing_is_delivered() {
    let server = start_with(|b| b.api_token(TOKEN).max_text_len(100));
    let addr = server.local_addr();
    let (mut member, _) = chat(addr, "ops", Some("watcher"));
    let cases = [
        (
            post(&server, "bad%20room", "text/plain", "x"),
            404,
            "bad_room",
        ),
        (
            post(&server, "ops", "application/xml", "<x/>"),
            415,
            "unsupported_media_type",
        ),
        (
            post(&server, "ops", "application/json", "{nope"),
            400,
            "bad_json",
        ),
        (
            post(&server, "ops", "application/json", r#"{"from":"x"}"#),
            400,
            "missing_field",
        ),
        (
            post(
                &server,
                "ops",
                "application/json",
                r#"{"text":"x","from":"\u0007"}"#,
            ),
            400,
            "bad_name",
        ),
        (post(&server, "ops", "text/plain", ""), 400, "missing_field"),
        (
            post(&server, "ops", "text/plain", &"y".repeat(101)),
            413,
            "text_too_long",
        ),
        (
            send(&server, "GET", "/api/nothing", "", ""),
            404,
            "not_found",
        ),
        (
            send(&server, "DELETE", "/api/rooms/ops/messages", "", ""),
            405,
            "method_not_allowed",
        ),
    ];
    for (response, code, error) in &cases {
        assert_api_error(response, *code, error);
    }
    // A body larger than any post may be is refused before it is read.
    let response = raw(
        addr,
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: text/plain\r\nContent-Length: 70000\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_api_error(&response, 413, "too_large");
    // None of them reached the room: the next message the member sees is this one.
    say(&mut member, "still here");
    assert_eq!(next_of_type(&mut member, "message")["text"], "still here");
}

#[test]
fn posts_beyond_the_rate_limit_are_429_with_retry_after() {
    let server = start_with(|b| b.api_token(TOKEN).api_rate(1));
    for _ in 0..2 {
        assert_eq!(status(&post(&server, "r", "text/plain", "ok")), 201);
    }
    let response = post(&server, "r", "text/plain", "one too many");
    assert_api_error(&response, 429, "rate_limited");
    assert_eq!(header(&response, "Retry-After"), Some("1"));
}

#[test]
fn the_chat_rate_limit_does_not_limit_posts_the_api_rate_does() {
    let chat_only = start_with(|b| b.api_token(TOKEN).rate_per_sec(1).rate_burst(1));
    for i in 0..6 {
        let response = post(&chat_only, "r", "text/plain", &format!("post {i}"));
        assert_eq!(status(&response), 201, "{response}");
    }
    let api = start_with(|b| b.api_token(TOKEN).api_rate(2));
    let codes: Vec<u16> = (0..6)
        .map(|i| status(&post(&api, "r", "text/plain", &format!("post {i}"))))
        .collect();
    assert_eq!(
        codes,
        [201, 201, 201, 201, 429, 429],
        "2 a second, bursts of 4"
    );
}

#[test]
fn a_body_that_lies_about_its_length_is_408_and_holds_nothing_up() {
    let server = start_with(|b| b.api_token(TOKEN).handshake_timeout(Duration::from_secs(1)));
    let addr = server.local_addr();
    let mut liar = tcp(addr);
    liar.write_all(
        format!(
            "POST /api/rooms/r/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b"
        )
        .as_bytes(),
    )
    .unwrap();
    // Meanwhile others are served.
    let mut bystander = connect(addr, "/ws/echo");
    assert_echoes(&mut bystander, "not held up");
    let started = Instant::now();
    let mut response = String::new();
    let _ = liar.read_to_string(&mut response);
    assert_api_error(&response, 408, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut at the deadline"
    );
}

#[test]
fn rooms_lists_rooms_with_people_or_messages_and_their_last_id() {
    let server = with_token();
    let addr = server.local_addr();
    let (_a, _) = chat(addr, "busy", Some("a"));
    let (_b, _) = chat(addr, "busy", Some("b"));
    assert_eq!(status(&post(&server, "quiet", "text/plain", "one")), 201);
    assert_eq!(status(&post(&server, "quiet", "text/plain", "two")), 201);
    let response = get(addr, "/api/rooms");
    assert_eq!(status(&response), 200);
    assert_eq!(
        json_body(&response),
        json!({"rooms": [
            {"name": "busy", "members": 2, "last_id": 0},
            {"name": "quiet", "members": 0, "last_id": 2},
        ], "more": false})
    );
}

#[test]
fn messages_page_with_before_after_and_limit() {
    let server = with_token();
    for i in 1..=5 {
        assert_eq!(
            status(&post(&server, "log", "text/plain", &format!("m{i}"))),
            201
        );
    }
    let texts = |query: &str| {
        let response = get(
            server.local_addr(),
            &format!("/api/rooms/log/messages{query}"),
        );
        assert_eq!(status(&response), 200, "{response}");
        let body = json_body(&response);
        let texts: Vec<String> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        (texts, body["more"].as_bool().unwrap())
    };
    assert_eq!(
        texts(""),
        (
            vec![
                "m1".into(),
                "m2".into(),
                "m3".into(),
                "m4".into(),
                "m5".into()
            ],
            false
        )
    );
    assert_eq!(texts("?limit=2"), (vec!["m4".into(), "m5".into()], true));
    assert_eq!(
        texts("?before=4&limit=2"),
        (vec!["m2".into(), "m3".into()], true)
    );
    assert_eq!(texts("?after=3"), (vec!["m4".into(), "m5".into()], false));
    assert_eq!(
        texts("?after=1&before=4"),
        (vec!["m2".into(), "m3".into()], false)
    );
    assert_api_error(
        &get(server.local_addr(), "/api/rooms/log/messages?limit=201"),
        400,
        "bad_request",
    );
    assert_api_error(
        &get(server.local_addr(), "/api/rooms/log/messages?before=x"),
        400,
        "bad_request",
    );
}

/// A post with an `Idempotency-Key`.
fn post_keyed(server: &ServerHandle, room: &str, key: &str, text: &str) -> String {
    let headers = format!(
        "Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nIdempotency-Key: {key}\r\n"
    );
    send(
        server,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        &headers,
        text,
    )
}

#[test]
fn posts_with_one_idempotency_key_are_posted_once_and_answered_alike() {
    let server = with_token();
    let addr = server.local_addr();
    let (mut member, _) = chat(addr, "ci", Some("watcher"));
    // Retries one after another, and at once, as a script that lost its answers would.
    let first = post_keyed(&server, "ci", "build-7", "build 7 passed");
    assert_eq!(status(&first), 201, "{first}");
    let again = post_keyed(&server, "ci", "build-7", "build 7 passed");
    assert_eq!(json_body(&again), json_body(&first), "the same message");
    let server = std::sync::Arc::new(server);
    let at_once: Vec<_> = (0..10)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            std::thread::spawn(move || post_keyed(&server, "ci", "build-8", "build 8 passed"))
        })
        .collect();
    let answers: Vec<Value> = at_once
        .into_iter()
        .map(|t| json_body(&t.join().expect("a poster")))
        .collect();
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // The same key in another room is another post.
    let elsewhere = post_keyed(&server, "other", "build-7", "build 7 passed");
    assert_eq!(json_body(&elsewhere)["room"], "other");
    say(&mut member, "end");
    let mut got = Vec::new();
    loop {
        let msg = next_of_type(&mut member, "message");
        if msg["text"] == "end" {
            break;
        }
        got.push(msg["text"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(got, ["build 7 passed", "build 8 passed"], "each once");
    // Gone before the server, which would otherwise wait for its Close.
    drop(member);
}

#[test]
fn a_bad_idempotency_key_is_400_and_posts_nothing() {
    let server = with_token();
    let (mut member, _) = chat(server.local_addr(), "ci", Some("watcher"));
    let long = "k".repeat(256);
    for key in [long.as_str(), "tab\there", "é"] {
        let response = post_keyed(&server, "ci", key, "not posted");
        assert_api_error(&response, 400, "bad_request");
    }
    let headers =
        format!("Authorization: Bearer {TOKEN}\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n");
    let twice = send(
        &server,
        "POST",
        "/api/rooms/ci/messages",
        &headers,
        "not posted",
    );
    assert_api_error(&twice, 400, "bad_request");
    say(&mut member, "only this");
    assert_eq!(next_of_type(&mut member, "message")["text"], "only this");
}
