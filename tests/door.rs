//! The door holds against a script: one budget for every password and token check,
//! reserved before anything is read or compared; sessions that end (a new password,
//! `POST /logout`); no cross-site sign-ins; no DNS rebinding; bodies read in linear
//! time. Every limit is tried the way an attacker would: many requests at once, from
//! several loopback addresses.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use switchboard::ServerHandle;

const PASSWORD: &str = "correct horse";

fn guarded() -> ServerHandle {
    start_with(|b| b.password(PASSWORD))
}

/// Sends `request` from the loopback address `from` and reads the whole answer.
fn raw_from(from: [u8; 4], addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tcp_from(from, addr);
    stream.write_all(request).expect("send");
    read_to_close(&mut stream)
}

fn login_request(password: &str, extra: &str) -> String {
    let body = format!(r#"{{"password":"{password}"}}"#);
    format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn bearer_get(path: &str, secret: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {secret}\r\n\r\n")
}

fn upgrade_with(path: &str, extra: &str) -> String {
    upgrade_request(path, extra).replace("Host: localhost:3000", "Host: localhost")
}

/// The `name=value` of the session cookie a response set.
fn cookie_of(response: &str) -> String {
    let set = header(response, "Set-Cookie").unwrap_or_else(|| panic!("a cookie in {response}"));
    set.split(';').next().unwrap_or_default().trim().to_owned()
}

fn statuses(responses: &[String]) -> Vec<u16> {
    responses.iter().map(|r| status(r)).collect()
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|&&s| s == code).count()
}

/// Sends every request at once, each on its own connection from `from`: all heads
/// first, then, once every head is in, all bodies (`split` bytes from the end).
fn all_at_once(
    from: [u8; 4],
    addr: SocketAddr,
    requests: Vec<String>,
    split: usize,
) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut stream = tcp_from(from, addr);
                let cut = request.len().saturating_sub(split);
                stream.write_all(&request.as_bytes()[..cut]).expect("head");
                barrier.wait();
                std::thread::sleep(Duration::from_millis(50));
                let _ = stream.write_all(&request.as_bytes()[cut..]);
                read_to_close(&mut stream)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client thread"))
        .collect()
}

#[test]
fn info_is_no_password_oracle_its_guesses_spend_the_one_budget() {
    let server = guarded();
    let addr = server.local_addr();
    let guesses: Vec<String> = (0..20)
        .map(|i| bearer_get("/info", &format!("guess-{i}")))
        .chain([bearer_get("/info", PASSWORD)])
        .collect();
    let answers = all_at_once([127, 0, 0, 1], addr, guesses, 0);
    let codes = statuses(&answers);
    // Five wrong guesses are judged (and the right one, if it came before them):
    // the rest are 429, whatever they carry.
    let judged: Vec<&String> = answers.iter().filter(|r| status(r) == 200).collect();
    let wrong = judged
        .iter()
        .filter(|r| body(r).contains(r#""signed_in":false"#))
        .count();
    assert_eq!(wrong, 5, "five wrong guesses judged: {codes:?}");
    assert!(judged.len() <= 6, "{codes:?}");
    assert_eq!(count(&codes, 429) + judged.len(), 21, "{codes:?}");
    // The budget is one for every door: the form and the Bearer header are spent too.
    let right = raw(addr, login_request(PASSWORD, "").as_bytes());
    assert_eq!(status(&right), 429, "{right}");
    let api = raw(addr, bearer_get("/api/rooms", PASSWORD).as_bytes());
    assert_eq!(status(&api), 429, "{api}");
    let (head, _) = handshake(
        addr,
        upgrade_with("/ws/echo", &format!("Authorization: Bearer {PASSWORD}\r\n")),
    );
    assert_eq!(status(&head), 429, "{head}");
    // Another address has its own budget, and /info without a guess still answers.
    let theirs = raw_from(
        [127, 0, 0, 2],
        addr,
        bearer_get("/info", PASSWORD).as_bytes(),
    );
    assert_eq!(status(&theirs), 200);
    assert!(body(&theirs).contains(r#""signed_in":true"#), "{theirs}");
    let plain = get(addr, "/info");
    assert!(body(&plain).contains(r#""signed_in":false"#), "{plain}");
}

#[test]
fn a_locked_out_client_cannot_tell_the_right_bearer_from_a_wrong_one() {
    let server = guarded();
    let addr = server.local_addr();
    let from = [127, 0, 0, 3];
    let wrong: Vec<u16> = (0..8)
        .map(|i| {
            status(&raw_from(
                from,
                addr,
                bearer_get("/api/rooms", &format!("no{i}")).as_bytes(),
            ))
        })
        .collect();
    assert_eq!(wrong, [401, 401, 401, 401, 401, 429, 429, 429]);
    let right = raw_from(from, addr, bearer_get("/api/rooms", PASSWORD).as_bytes());
    assert_eq!(status(&right), 429, "the right one too: {right}");
    assert!(header(&right, "Retry-After").is_some());
    let mut stream = tcp_from(from, addr);
    stream
        .write_all(
            upgrade_with("/ws/chat", &format!("Authorization: Bearer {PASSWORD}\r\n")).as_bytes(),
        )
        .unwrap();
    assert_eq!(status(&read_head(&mut stream)), 429);
}

#[test]
fn forty_sign_ins_at_once_get_five_wrong_guesses_judged_and_no_more() {
    let server = guarded();
    let addr = server.local_addr();
    let mut requests: Vec<String> = (0..39)
        .map(|i| login_request(&format!("guess{i}"), ""))
        .collect();
    requests.push(login_request(PASSWORD, ""));
    // Heads first, then the bodies: the budget must be taken before a body is read.
    let answers = all_at_once([127, 0, 0, 4], addr, requests, 20);
    let codes = statuses(&answers);
    assert_eq!(
        count(&codes, 401),
        5,
        "five wrong guesses judged: {codes:?}"
    );
    assert!(count(&codes, 204) <= 1, "{codes:?}");
    assert_eq!(
        count(&codes, 401) + count(&codes, 204) + count(&codes, 429),
        40,
        "{codes:?}"
    );
}

#[test]
fn the_api_token_shares_the_budget() {
    let server = start_with(|b| b.password(PASSWORD).api_token("t0ken"));
    let addr = server.local_addr();
    let post = |token: &str| {
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
    };
    let requests: Vec<String> = (0..30).map(|i| post(&format!("bad{i}"))).collect();
    let codes = statuses(&all_at_once([127, 0, 0, 5], addr, requests, 0));
    assert_eq!(count(&codes, 401), 5, "{codes:?}");
    assert_eq!(count(&codes, 429), 25, "{codes:?}");
    assert_eq!(
        status(&raw_from([127, 0, 0, 5], addr, post("t0ken").as_bytes())),
        429
    );
    assert_eq!(
        status(&raw_from([127, 0, 0, 6], addr, post("t0ken").as_bytes())),
        201
    );
}

#[test]
fn a_right_password_costs_no_budget() {
    let server = guarded();
    let addr = server.local_addr();
    for _ in 0..12 {
        let response = raw(addr, login_request(PASSWORD, "").as_bytes());
        assert_eq!(status(&response), 204, "{response}");
    }
}

/// Signs in at `addr` and returns the cookie.
fn sign_in(addr: SocketAddr) -> String {
    let response = raw(addr, login_request(PASSWORD, "").as_bytes());
    assert_eq!(status(&response), 204, "{response}");
    cookie_of(&response)
}

/// The status of a chat handshake that carries `cookie`.
fn chat_with(addr: SocketAddr, cookie: &str) -> u16 {
    let (head, _) = handshake(
        addr,
        upgrade_with("/ws/chat", &format!("Cookie: {cookie}\r\n")),
    );
    status(&head)
}

#[test]
fn a_session_survives_a_restart_but_not_a_new_password() {
    let data = TempDir::new("door-password");
    let with = |password: &str| {
        let dir = data.path().to_owned();
        start_with(move |b| b.password(password).data_dir(dir))
    };
    let server = with(PASSWORD);
    let cookie = sign_in(server.local_addr());
    assert_eq!(chat_with(server.local_addr(), &cookie), 101);
    server.shutdown();
    let again = with(PASSWORD);
    assert_eq!(
        chat_with(again.local_addr(), &cookie),
        101,
        "same password: still in"
    );
    again.shutdown();
    let changed = with("a new password");
    assert_eq!(
        chat_with(changed.local_addr(), &cookie),
        401,
        "a new password ends it"
    );
}

#[test]
fn logout_ends_the_session_on_the_server_even_across_a_restart() {
    let data = TempDir::new("door-logout");
    let dir = data.path().to_owned();
    let server = start_with(|b| b.password(PASSWORD).data_dir(dir.clone()));
    let addr = server.local_addr();
    let cookie = sign_in(addr);
    let other = sign_in(addr);
    assert_eq!(chat_with(addr, &cookie), 101);
    let out = raw(
        addr,
        format!("POST /logout HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&out), 204, "{out}");
    let cleared = header(&out, "Set-Cookie").unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(chat_with(addr, &cookie), 401, "the same cookie is refused");
    assert_eq!(chat_with(addr, &other), 101, "another session is not ended");
    server.shutdown();
    let again = start_with(|b| b.password(PASSWORD).data_dir(dir));
    assert_eq!(
        chat_with(again.local_addr(), &cookie),
        401,
        "still ended after a restart"
    );
    assert_eq!(chat_with(again.local_addr(), &other), 101);
}

#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = TempDir::new("door-mode");
    let dir = parent.path().join("data");
    let server = start_with(|b| b.data_dir(dir.clone()));
    let (mut alice, _) = chat(server.local_addr(), "lobby", Some("alice"));
    say(&mut alice, "hello");
    let _ = next_of_type(&mut alice, "message");
    // A shared file too: its bytes are as private as the messages.
    send_json(
        &mut alice,
        serde_json::json!({"type": "file", "name": "a.txt", "mime": "text/plain", "size": 2}),
    );
    alice
        .send(tungstenite::Message::binary(b"hi".to_vec()))
        .expect("send");
    assert!(next_of_type(&mut alice, "message")["file"].is_object());
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    // Every directory 0700, every file 0600, all the way down.
    let mut files = 0;
    let mut dirs = vec![dir.clone()];
    while let Some(dir) = dirs.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 4,
        "the store, its write-ahead log, and the file twice linked"
    );
}

#[test]
fn cross_site_posts_are_403_and_cost_no_budget() {
    let server = start_with(|b| b.password(PASSWORD).api_token("t0ken"));
    let addr = server.local_addr();
    let evil = "Origin: http://evil.example\r\n";
    for _ in 0..10 {
        let response = raw(addr, login_request("guess", evil).as_bytes());
        assert_eq!(status(&response), 403, "{response}");
    }
    let logout = raw(
        addr,
        format!("POST /logout HTTP/1.1\r\nHost: localhost\r\n{evil}Content-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&logout), 403);
    let post = raw(
        addr,
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\n{evil}\
             Authorization: Bearer t0ken\r\nContent-Length: 2\r\n\r\nhi"
        )
        .as_bytes(),
    );
    assert_eq!(status(&post), 403);
    // What a browser says of the page that sent it wins over an Origin that looks
    // right, and `null` (a sandboxed or no-referrer page elsewhere) is not us.
    for extra in [
        "Origin: http://localhost\r\nSec-Fetch-Site: cross-site\r\n",
        "Origin: http://localhost\r\nSec-Fetch-Site: same-site\r\n",
        "Origin: null\r\n",
    ] {
        let response = raw(addr, login_request("guess", extra).as_bytes());
        assert_eq!(status(&response), 403, "{extra}: {response}");
    }
    // None of that was spent: the page's own sign-in still works, first time; a form
    // on a page with no-referrer sends Origin null, and Sec-Fetch-Site vouches for it.
    let form = raw(
        addr,
        login_request("guess", "Origin: null\r\nSec-Fetch-Site: same-origin\r\n").as_bytes(),
    );
    assert_eq!(status(&form), 401, "{form}");
    let own = format!("Origin: http://{}\r\n", "localhost");
    let response = raw(addr, login_request(PASSWORD, &own).as_bytes());
    assert_eq!(status(&response), 204, "{response}");
}

#[test]
fn a_rebinding_host_is_refused_except_for_health_and_allowed_names_pass() {
    let server = start();
    let addr = server.local_addr();
    let rebind = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: rebind.example:{port}\r\nOrigin: http://rebind.example:{port}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {EXAMPLE_KEY}\r\n\r\n",
            port = addr.port()
        )
    };
    for path in ["/ws/chat", "/ws/echo", "/", "/info", "/api/rooms"] {
        let response = answer_beside_bystander(&server, rebind(path));
        assert_eq!(status(&response), 421, "{path}: {response}");
    }
    let health = raw(addr, rebind("/healthz").as_bytes());
    assert_eq!(status(&health), 200);
    assert_eq!(handshake_failures(addr, "unknown_host"), 5);
    let by_address = format!("Host: 127.0.0.1:{}\r\n", addr.port());
    let (head, _) = handshake(
        addr,
        upgrade_request("/ws/echo", "").replace("Host: localhost:3000\r\n", &by_address),
    );
    assert_eq!(status(&head), 101, "an IP literal is always fine");
    let allowed = start_with(|b| b.allow_host("rebind.example"));
    let response = raw(
        allowed.local_addr(),
        rebind("/ws/echo")
            .replace(
                &addr.port().to_string(),
                &allowed.local_addr().port().to_string(),
            )
            .as_bytes(),
    );
    assert_eq!(status(&response), 101, "{response}");
}

/// User plus system CPU time of this process so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_sec = 100; // USER_HZ on Linux
    Duration::from_millis(ticks * 1000 / per_sec)
}

#[test]
fn a_chunk_bomb_costs_the_server_next_to_nothing() {
    let server = guarded();
    let addr = server.local_addr();
    let chunk = format!("1;{}\r\na\r\n", "e".repeat(1000));
    let bomb = chunk.repeat(4095);
    let head = "POST /login HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
                Content-Type: application/json\r\n\r\n";
    let before = cpu_time();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                let mut stream = tcp(addr);
                let _ = stream.write_all(head.as_bytes());
                // Written in small pieces, as a slow attacker would.
                for piece in bomb.as_bytes().chunks(997).take(400) {
                    if stream.write_all(piece).is_err() {
                        break;
                    }
                }
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    for thread in threads {
        let answer = thread.join().expect("a bomber");
        assert_eq!(status(&answer), 400, "{answer:.200}");
    }
    // This process is the server and the clients: whatever the clients cost is in
    // the figure too, so the bound is generous; the bomb used to cost 8 s each.
    let spent = cpu_time() - before;
    assert!(
        spent < Duration::from_millis(1500),
        "the bombs cost {spent:?} of CPU"
    );
    let (head, _) = handshake(
        addr,
        upgrade_with("/ws/echo", &format!("Authorization: Bearer {PASSWORD}\r\n")),
    );
    assert_eq!(status(&head), 101, "and the door still works");
}

#[test]
fn a_sign_in_body_over_one_kib_is_refused_unjudged() {
    let server = guarded();
    let addr = server.local_addr();
    let long = "x".repeat(1100);
    for _ in 0..8 {
        let response = raw(addr, login_request(&long, "").as_bytes());
        assert_eq!(status(&response), 400, "{response}");
    }
    let response = raw(addr, login_request(PASSWORD, "").as_bytes());
    assert_eq!(
        status(&response),
        204,
        "nothing was judged, nothing spent: {response}"
    );
}

/// `POST /logout` with `cookie` from the loopback address `from`.
fn logout_from(from: [u8; 4], addr: SocketAddr, cookie: &str) -> String {
    raw_from(
        from,
        addr,
        format!("POST /logout HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn one_address_ends_sessions_at_a_bounded_rate_and_says_so() {
    let server = guarded();
    let addr = server.local_addr();
    let from = [127, 0, 0, 7];
    let cookies: Vec<String> = (0..21).map(|_| sign_in(addr)).collect();
    // Every ended session is remembered until it expires: a script that signs in and
    // out in a loop must not grow that list without bound.
    let answers: Vec<u16> = cookies
        .iter()
        .map(|c| status(&logout_from(from, addr, c)))
        .collect();
    assert_eq!(answers[..20], [204; 20], "{answers:?}");
    let refused = logout_from(from, addr, &cookies[20]);
    assert_eq!(status(&refused), 429, "{refused}");
    assert!(header(&refused, "Retry-After").is_some());
    assert_eq!(
        chat_with(addr, &cookies[20]),
        101,
        "not ended, and the answer said so"
    );
    assert_eq!(chat_with(addr, &cookies[0]), 401, "the ended ones are");
    // Ending one again costs nothing; another address ends its own.
    assert_eq!(status(&logout_from(from, addr, &cookies[0])), 204);
    assert_eq!(
        status(&logout_from([127, 0, 0, 8], addr, &cookies[20])),
        204
    );
    assert_eq!(chat_with(addr, &cookies[20]), 401);
}
