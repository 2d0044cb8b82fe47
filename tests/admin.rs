//! Who is an admin: whoever signs in with the admin password (`POST /login`, or
//! `Authorization: Bearer` on any request). The chat `welcome` says so
//! (`"role":"admin"`), the cookie carries the role under its MAC, and every guess at
//! the admin password spends from the one budget the password and the API token
//! share: one try per guess, whichever secret it was meant for.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use switchboard::ServerHandle;
use tungstenite::client::IntoClientRequest;

const PASSWORD: &str = "correct horse";
const ADMIN: &str = "staple battery";

fn both() -> ServerHandle {
    start_with(|b| b.password(PASSWORD).admin_password(ADMIN))
}

fn login_request(password: &str) -> String {
    let body = format!(r#"{{"password":"{password}"}}"#);
    format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Signs in at `addr` with `password` and returns the `name=value` of the cookie.
fn sign_in(addr: SocketAddr, password: &str) -> String {
    let response = raw(addr, login_request(password).as_bytes());
    assert_eq!(status(&response), 204, "{response}");
    let set = header(&response, "Set-Cookie").unwrap_or_else(|| panic!("a cookie in {response}"));
    set.split(';').next().unwrap_or_default().trim().to_owned()
}

/// Opens `/ws/chat` from the loopback address `from` with one extra header, and
/// returns its welcome, or the handshake's status when it is refused.
fn welcome_from(
    from: [u8; 4],
    addr: SocketAddr,
    header: Option<(&str, &str)>,
) -> Result<Value, u16> {
    let mut request = format!("ws://{addr}/ws/chat")
        .into_client_request()
        .unwrap();
    if let Some((name, value)) = header {
        let name: tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tungstenite::client(request, tcp_from(from, addr)) {
        Ok((mut ws, _)) => Ok(next_of_type(&mut ws, "welcome")),
        Err(tungstenite::handshake::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

fn welcome_with(addr: SocketAddr, header: Option<(&str, &str)>) -> Result<Value, u16> {
    welcome_from([127, 0, 0, 1], addr, header)
}

/// The role the chat's welcome gives a connection carrying `header`.
fn role_with(addr: SocketAddr, header: Option<(&str, &str)>) -> Value {
    match welcome_with(addr, header) {
        Ok(welcome) => welcome["role"].clone(),
        Err(status) => panic!("refused with {status}"),
    }
}

#[test]
fn an_admin_sign_in_gives_a_cookie_whose_chat_welcome_says_admin() {
    let server = both();
    let addr = server.local_addr();
    let admin = sign_in(addr, ADMIN);
    let member = sign_in(addr, PASSWORD);
    assert_eq!(role_with(addr, Some(("Cookie", &admin))), "admin");
    assert_eq!(role_with(addr, Some(("Cookie", &member))), "member");
    assert_eq!(welcome_with(addr, None).err(), Some(401), "nobody else");
    assert_eq!(metric(addr, "switchboard_admin_signins_total"), 1);
}

#[test]
fn the_admin_password_as_bearer_opens_the_chat_as_admin_and_the_api() {
    let server = both();
    let addr = server.local_addr();
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(role_with(addr, Some(("Authorization", &bearer))), "admin");
    let member = format!("Bearer {PASSWORD}");
    assert_eq!(role_with(addr, Some(("Authorization", &member))), "member");
    let read = raw(
        addr,
        format!("GET /api/rooms HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&read), 200, "{read}");
    // Each request with it is a sign-in: the chat's and the API read's.
    assert_eq!(metric(addr, "switchboard_admin_signins_total"), 2);
}

#[test]
fn a_cookie_with_its_role_flipped_is_refused_like_a_bad_one() {
    let server = both();
    let addr = server.local_addr();
    let member = sign_in(addr, PASSWORD);
    assert!(
        member.contains(".member."),
        "the role is in the cookie: {member}"
    );
    let raised = member.replacen(".member.", ".admin.", 1);
    assert_eq!(
        welcome_with(addr, Some(("Cookie", &raised))).err(),
        Some(401)
    );
    let admin = sign_in(addr, ADMIN);
    let lowered = admin.replacen(".admin.", ".member.", 1);
    assert_eq!(
        welcome_with(addr, Some(("Cookie", &lowered))).err(),
        Some(401)
    );
    // A forged cookie is judged like none: it spends nothing, and the real ones work.
    for _ in 0..8 {
        assert_eq!(
            welcome_with(addr, Some(("Cookie", &raised))).err(),
            Some(401)
        );
    }
    assert_eq!(role_with(addr, Some(("Cookie", &admin))), "admin");
    assert_eq!(role_with(addr, Some(("Cookie", &member))), "member");
}

#[test]
fn logout_ends_an_admin_session() {
    let server = both();
    let addr = server.local_addr();
    let admin = sign_in(addr, ADMIN);
    assert_eq!(role_with(addr, Some(("Cookie", &admin))), "admin");
    let out = raw(
        addr,
        format!(
            "POST /logout HTTP/1.1\r\nHost: localhost\r\nCookie: {admin}\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status(&out), 204, "{out}");
    assert_eq!(
        welcome_with(addr, Some(("Cookie", &admin))).err(),
        Some(401)
    );
}

#[test]
fn a_new_admin_password_ends_admin_sessions_and_no_member_ones() {
    let data = TempDir::new("admin-restart");
    let with = |admin: &str| {
        let dir = data.path().to_owned();
        start_with(move |b| b.password(PASSWORD).admin_password(admin).data_dir(dir))
    };
    let server = with(ADMIN);
    let admin = sign_in(server.local_addr(), ADMIN);
    let member = sign_in(server.local_addr(), PASSWORD);
    server.shutdown();
    let same = with(ADMIN);
    assert_eq!(
        role_with(same.local_addr(), Some(("Cookie", &admin))),
        "admin"
    );
    same.shutdown();
    let changed = with("another admin password");
    let addr = changed.local_addr();
    assert_eq!(
        welcome_with(addr, Some(("Cookie", &admin))).err(),
        Some(401)
    );
    assert_eq!(role_with(addr, Some(("Cookie", &member))), "member");
}

/// Sends every request at once, each on its own connection from `from`, and reads
/// every answer.
fn all_at_once(from: [u8; 4], addr: SocketAddr, requests: Vec<String>) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut stream = tcp_from(from, addr);
                barrier.wait();
                stream.write_all(request.as_bytes()).expect("send");
                status(&read_to_close(&mut stream))
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client thread"))
        .collect()
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|&&c| c == code).count()
}

#[test]
fn admin_and_member_guesses_share_the_five_tries_of_one_address() {
    let server = both();
    let addr = server.local_addr();
    let from = [127, 0, 0, 2];
    // Wrong guesses of both kinds, at /login and as Bearer on the chat, all at once.
    let bearer_chat = |guess: &str| {
        upgrade_request("/ws/chat", &format!("Authorization: Bearer {guess}\r\n"))
            .replace("Host: localhost:3000", "Host: localhost")
    };
    let requests: Vec<String> = (0..24)
        .map(|i| match i % 3 {
            0 => login_request(&format!("admin guess {i}")),
            1 => login_request(&format!("member guess {i}")),
            _ => bearer_chat(&format!("guess {i}")),
        })
        .collect();
    let codes = all_at_once(from, addr, requests);
    assert_eq!(count(&codes, 401), 5, "five guesses judged: {codes:?}");
    assert_eq!(count(&codes, 429), 19, "{codes:?}");
    // The right admin password too, every way in.
    let login = raw_from(from, addr, &login_request(ADMIN));
    assert_eq!(status(&login), 429, "{login}");
    let bearer = format!("Bearer {ADMIN}");
    let chat = welcome_from(from, addr, Some(("Authorization", &bearer)));
    assert_eq!(chat.err(), Some(429));
    // Another address is unaffected.
    let theirs = welcome_from([127, 0, 0, 3], addr, Some(("Authorization", &bearer)));
    assert_eq!(theirs.map(|w| w["role"].clone()).ok(), Some("admin".into()));
    assert_eq!(
        status(&raw_from([127, 0, 0, 3], addr, &login_request(PASSWORD))),
        204
    );
}

fn raw_from(from: [u8; 4], addr: SocketAddr, request: &str) -> String {
    let mut stream = tcp_from(from, addr);
    stream.write_all(request.as_bytes()).expect("send");
    read_to_close(&mut stream)
}

#[test]
fn one_guess_is_one_try_though_compared_with_both_passwords() {
    let server = both();
    let addr = server.local_addr();
    let from = [127, 0, 0, 4];
    let codes: Vec<u16> = (0..5)
        .map(|i| status(&raw_from(from, addr, &login_request(&format!("no{i}")))))
        .collect();
    assert_eq!(codes, [401; 5], "five guesses, five tries, not ten");
    assert_eq!(status(&raw_from(from, addr, &login_request("no"))), 429);
}

#[test]
fn without_an_admin_password_nobody_is_admin() {
    let server = start_with(|b| b.password(PASSWORD));
    let addr = server.local_addr();
    let member = format!("Bearer {PASSWORD}");
    assert_eq!(role_with(addr, Some(("Authorization", &member))), "member");
    let cookie = sign_in(addr, PASSWORD);
    assert_eq!(role_with(addr, Some(("Cookie", &cookie))), "member");
    let open = start();
    assert_eq!(role_with(open.local_addr(), None), "member");
    assert_eq!(metric(addr, "switchboard_admin_signins_total"), 0);
}

#[test]
fn an_admin_password_alone_lets_members_in_freely_and_still_makes_an_admin() {
    let server = start_with(|b| b.admin_password(ADMIN));
    let addr = server.local_addr();
    assert_eq!(role_with(addr, None), "member", "members come in freely");
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(role_with(addr, Some(("Authorization", &bearer))), "admin");
    let cookie = sign_in(addr, ADMIN);
    assert_eq!(role_with(addr, Some(("Cookie", &cookie))), "admin");
    // A wrong guess still lets a member in, and still spends from the budget.
    let from = [127, 0, 0, 5];
    for i in 0..5 {
        let wrong = format!("Bearer wrong{i}");
        let welcome = welcome_from(from, addr, Some(("Authorization", &wrong)));
        assert_eq!(
            welcome.map(|w| w["role"].clone()).ok(),
            Some("member".into())
        );
    }
    let locked = welcome_from(from, addr, Some(("Authorization", &bearer)));
    assert_eq!(
        locked.err(),
        Some(429),
        "the right one too, past the budget"
    );
    assert_eq!(status(&raw_from(from, addr, &login_request(ADMIN))), 429);
    let wrong = raw(addr, login_request("wrong").as_bytes());
    assert_eq!(status(&wrong), 401, "{wrong}");
}

/// Runs `command` to its end, killing it if it is still running after 20 s (a server
/// that started when it should not have): its exit code and what it wrote to stderr.
fn exit_of(mut command: Command) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Running(
        command
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs"),
    );
    let status = wait_exit(&mut child.0, Duration::from_secs(20));
    let _ = child.0.kill();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn equal_passwords_refuse_to_start_naming_both_flags() {
    let dir = TempDir::new("admin-equal");
    let file = |name: &str, secret: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{secret}\n")).expect("write");
        path
    };
    let password = file("password", PASSWORD);
    let admin = file("admin", PASSWORD);
    let (mut command, _) = binary_command();
    command
        .arg("--no-persist")
        .arg("--password-file")
        .arg(&password)
        .arg("--admin-password-file")
        .arg(&admin)
        .env_remove("SWITCHBOARD_PASSWORD")
        .env_remove("SWITCHBOARD_ADMIN_PASSWORD");
    let (code, stderr) = exit_of(command);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--admin-password-file") && stderr.contains("--password-file"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "never the password: {stderr}");
    // The same through the environment.
    let (mut command, _) = binary_command();
    command
        .arg("--no-persist")
        .env("SWITCHBOARD_PASSWORD", PASSWORD)
        .env("SWITCHBOARD_ADMIN_PASSWORD", PASSWORD);
    let (code, stderr) = exit_of(command);
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn an_admin_sign_in_is_logged_without_the_password() {
    let (mut command, addr) = binary_command();
    command
        .arg("--no-persist")
        .env_remove("SWITCHBOARD_PASSWORD")
        .env("SWITCHBOARD_ADMIN_PASSWORD", ADMIN)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let mut running = serving(command, addr);
    let stderr = running.0.stderr.take().expect("a pipe");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let cookie = sign_in(addr, ADMIN);
    assert_eq!(role_with(addr, Some(("Cookie", &cookie))), "admin");
    let mut seen = Vec::new();
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no sign-in line in {seen:#?}"));
        if line.contains("signed in as admin") {
            break line;
        }
        seen.push(line);
    };
    assert!(line.contains("127.0.0.1"), "{line}");
    let _ = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status();
    let _ = wait_exit(&mut running.0, Duration::from_secs(20));
    let rest: Vec<String> = rx.try_iter().collect();
    for line in seen.iter().chain(&rest).chain([&line]) {
        assert!(!line.contains(ADMIN), "a secret in the log: {line}");
        assert!(!line.contains(&cookie), "a cookie in the log: {line}");
    }
}
