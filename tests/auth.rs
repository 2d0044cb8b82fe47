//! Keeping strangers out: with a password, every WebSocket endpoint and every
//! `/api` read needs a session cookie from `POST /login` or the password as a Bearer
//! token; the rest stays open; wrong passwords are limited per address.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use switchboard::ServerHandle;
use tungstenite::client::IntoClientRequest;

const PASSWORD: &str = "correct horse";

fn guarded() -> ServerHandle {
    start_with(|b| b.password(PASSWORD))
}

fn login(addr: SocketAddr, content_type: &str, body: &str) -> String {
    raw(
        addr,
        format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// The `name=value` of the session cookie a sign-in set.
fn session(response: &str) -> String {
    let set = header(response, "Set-Cookie").unwrap_or_else(|| panic!("a cookie in {response}"));
    set.split(';').next().unwrap().trim().to_owned()
}

/// Opens a WebSocket with extra request headers; the handshake's status on failure.
fn open_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, u16> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tungstenite::client(request, tcp(addr)) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::handshake::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

#[test]
fn every_websocket_endpoint_is_401_without_signing_in_and_others_are_unaffected() {
    let server = guarded();
    let addr = server.local_addr();
    let bearer = format!("Bearer {PASSWORD}");
    let mut member = open_with(addr, "/ws/echo", &[("Authorization", &bearer)]).expect("signed in");
    for path in ["/ws/chat", "/ws/chat/room", "/ws/relay/r", "/ws/echo"] {
        let response = raw(addr, upgrade_request(path, "").as_bytes());
        assert_eq!(status(&response), 401, "{path}: {response}");
        assert_eq!(header(&response, "WWW-Authenticate"), Some("Bearer"));
        assert_one_line_reason(&response);
    }
    assert_eq!(
        open_with(addr, "/ws/chat", &[("Authorization", "Bearer wrong")]).err(),
        Some(401)
    );
    assert_echoes(&mut member, "the signed-in client carries on");
    assert!(handshake_failures(addr, "unauthorized") >= 5);
}

#[test]
fn the_page_login_and_healthz_stay_open() {
    let server = guarded();
    let addr = server.local_addr();
    for path in ["/", "/healthz", "/info", "/metrics"] {
        assert_eq!(
            status(&get(addr, path)),
            200,
            "{path} (metrics: from loopback)"
        );
    }
    let info: Value = serde_json::from_str(body(&get(addr, "/info"))).unwrap();
    assert_eq!(
        (info["password"].as_bool(), info["signed_in"].as_bool()),
        (Some(true), Some(false))
    );
}

#[test]
fn a_form_login_gets_a_303_and_a_cookie_that_opens_the_chat() {
    let server = guarded();
    let addr = server.local_addr();
    let response = login(
        addr,
        "application/x-www-form-urlencoded",
        "password=correct+horse",
    );
    assert_eq!(status(&response), 303, "{response}");
    assert_eq!(header(&response, "Location"), Some("/"));
    let set = header(&response, "Set-Cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "not over plain http: {set}");
    let cookie = session(&response);
    let mut ws = open_with(addr, "/ws/chat/in?name=ann", &[("Cookie", &cookie)])
        .expect("the cookie opens it");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    let info = raw(
        addr,
        format!("GET /info HTTP/1.1\r\nHost: localhost\r\nCookie: other=1; {cookie}\r\n\r\n")
            .as_bytes(),
    );
    assert!(body(&info).contains(r#""signed_in":true"#), "{info}");
}

#[test]
fn a_json_login_gets_204_and_api_reads_need_it() {
    let server = guarded();
    let addr = server.local_addr();
    let denied = get(addr, "/api/rooms");
    assert_eq!(status(&denied), 401, "{denied}");
    assert!(
        body(&denied).contains(r#""error":"unauthorized""#),
        "{denied}"
    );
    let response = login(addr, "application/json", r#"{"password":"correct horse"}"#);
    assert_eq!(status(&response), 204, "{response}");
    assert_eq!(
        header(&response, "Content-Length"),
        None,
        "no body, no length on a 204"
    );
    let cookie = session(&response);
    let allowed = raw(
        addr,
        format!("GET /api/rooms HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&allowed), 200, "{allowed}");
}

#[test]
fn a_wrong_password_or_a_forged_cookie_is_401() {
    let server = guarded();
    let addr = server.local_addr();
    let response = login(addr, "application/json", r#"{"password":"wrong"}"#);
    assert_eq!(status(&response), 401);
    assert!(body(&response).contains("wrong password"), "{response}");
    assert!(header(&response, "Set-Cookie").is_none());
    let forged = "switchboard_session=99999999999.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_eq!(
        open_with(addr, "/ws/echo", &[("Cookie", forged)]).err(),
        Some(401)
    );
    // Another server's cookie means nothing here: each start has its own key.
    let other = guarded();
    let theirs = session(&login(
        other.local_addr(),
        "application/json",
        r#"{"password":"correct horse"}"#,
    ));
    assert_eq!(
        open_with(addr, "/ws/echo", &[("Cookie", &theirs)]).err(),
        Some(401)
    );
}

#[test]
fn wrong_passwords_are_limited_per_address_with_429() {
    let server = guarded();
    let addr = server.local_addr();
    for _ in 0..5 {
        assert_eq!(
            status(&login(addr, "application/json", r#"{"password":"guess"}"#)),
            401
        );
    }
    let limited = login(addr, "application/json", r#"{"password":"guess"}"#);
    assert_eq!(status(&limited), 429, "{limited}");
    assert!(header(&limited, "Retry-After").is_some());
    // Over the limit, even the right password waits: guessing gains nothing.
    let right = login(addr, "application/json", r#"{"password":"correct horse"}"#);
    assert_eq!(status(&right), 429);
}

#[test]
fn wrong_bearer_passwords_at_the_websocket_door_count_against_the_same_limit() {
    let server = guarded();
    let addr = server.local_addr();
    for _ in 0..5 {
        assert_eq!(
            open_with(addr, "/ws/echo", &[("Authorization", "Bearer guess")]).err(),
            Some(401)
        );
    }
    assert_eq!(
        open_with(addr, "/ws/echo", &[("Authorization", "Bearer guess")]).err(),
        Some(429)
    );
    assert_eq!(status(&get(addr, "/api/rooms")), 401, "no guess, no count");
    let limited = login(addr, "application/json", r#"{"password":"correct horse"}"#);
    assert_eq!(
        status(&limited),
        429,
        "the form door is closed too: {limited}"
    );
}

#[test]
fn a_sign_in_outlives_a_restart_on_the_same_data_dir() {
    let dir = TempDir::new("signed-in");
    let server = start_with(|b| b.password(PASSWORD).data_dir(dir.path()));
    let cookie = session(&login(
        server.local_addr(),
        "application/json",
        r#"{"password":"correct horse"}"#,
    ));
    server.shutdown();
    let server = start_with(|b| b.password(PASSWORD).data_dir(dir.path()));
    let mut ws = open_with(
        server.local_addr(),
        "/ws/chat?name=back",
        &[("Cookie", &cookie)],
    )
    .expect("still signed in");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
}

#[test]
fn login_without_a_password_set_is_404_and_get_login_is_405() {
    let server = start();
    let addr = server.local_addr();
    assert_eq!(
        status(&login(addr, "application/json", r#"{"password":"x"}"#)),
        404
    );
    let response = get(addr, "/login");
    assert_eq!(status(&response), 405);
    assert_eq!(header(&response, "Allow"), Some("POST"));
}
