//! `wss://` and `https://`: the TLS handshake in front of the same HTTP front and frame
//! loop, with a client that trusts only `certs/ca.pem`.

mod common;

use common::*;
use native_tls::TlsStream;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard::{Error, Server, ServerHandle};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type TlsClient = WebSocket<TlsStream<TcpStream>>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server with a plain and a TLS listener on ephemeral loopback ports, using the
/// certificate files from `certs/`.
fn start_tls() -> ServerHandle {
    start_with(|b| {
        b.tls_listen("127.0.0.1:0")
            .tls_identity(
                certs().join("localhost.pem"),
                certs().join("localhost-key.pem"),
            )
            .handshake_timeout(Duration::from_millis(500))
    })
}

fn wss(addr: SocketAddr, path: &str) -> TlsClient {
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, _) = tungstenite::client(url, tls(addr)).expect("WebSocket handshake over TLS");
    ws
}

fn tls_addr(server: &ServerHandle) -> SocketAddr {
    server.tls_local_addr().expect("a TLS listener")
}

#[test]
fn wss_echo_works_with_a_client_trusting_only_the_dev_ca() {
    let server = start_tls();
    let mut ws = wss(tls_addr(&server), "/ws/echo");
    assert_echoes(&mut ws, "over TLS");
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(next(&mut ws), Message::binary(big));
}

#[test]
fn many_messages_in_one_tls_write_are_all_answered() {
    // Many frames arrive in few TLS records: OpenSSL decrypts more than one frame at a
    // time, and the frame loop must not go to sleep with any of them unread.
    let server = start_tls();
    let mut ws = wss(tls_addr(&server), "/ws/echo");
    for n in 0..200 {
        ws.write(Message::text(n.to_string())).unwrap();
    }
    ws.flush().unwrap();
    for n in 0..200 {
        assert_eq!(next(&mut ws), Message::text(n.to_string()));
    }
}

#[test]
fn wss_chat_and_ws_chat_share_rooms() {
    let server = start_tls();
    let (mut plain, _) = chat(server.local_addr(), "mixed", Some("plain"));
    let mut secure = wss(tls_addr(&server), "/ws/chat/mixed?name=secure");
    let welcome = next_json(&mut secure);
    assert_eq!(welcome["members"], serde_json::json!(["plain", "secure"]));
    secure.send(Message::text("hello from wss")).unwrap();
    let msg = next_of_type(&mut plain, "message");
    assert_eq!(
        (msg["from"].as_str(), msg["text"].as_str()),
        (Some("secure"), Some("hello from wss"))
    );
    say(&mut plain, "hello from ws");
    loop {
        let m = next_json(&mut secure);
        if m["type"] == "message" && m["from"] == "plain" {
            assert_eq!(m["text"], "hello from ws");
            break;
        }
    }
}

#[test]
fn https_serves_the_page_and_healthz() {
    let server = start_tls();
    for (path, expect) in [("/", "text/html"), ("/healthz", "\"status\":\"ok\"")] {
        let mut stream = tls(tls_addr(&server));
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let response = read_to_close(&mut stream);
        assert_eq!(status(&response), 200);
        assert!(response.contains(expect), "{path}: {response}");
    }
}

#[test]
fn https_origin_of_the_page_itself_is_allowed() {
    let server = start_tls();
    let addr = tls_addr(&server);
    let mut stream = tls(addr);
    let host = format!("localhost:{}", addr.port());
    let request = upgrade_request("/ws/echo", &format!("Origin: https://{host}\r\n"))
        .replace("Host: localhost", &format!("Host: {host}"));
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert_eq!(status(&head), 101, "{head}");
}

#[test]
fn plain_http_to_the_tls_port_is_dropped_and_hurts_nobody() {
    let server = start_tls();
    let mut bystander = wss(tls_addr(&server), "/ws/echo");
    let response = raw(
        tls_addr(&server),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(
        !response.starts_with("HTTP/1.1 200"),
        "no page over plaintext: {response:?}"
    );
    let garbage = raw(
        tls_addr(&server),
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5],
    );
    assert!(garbage.is_empty() || !garbage.contains("HTTP"));
    assert_echoes(&mut bystander, "still fine");
    // The socket closes as the handshake fails, a moment before the count goes up.
    eventually(|| (handshake_failures(server.local_addr(), "tls") >= 2).then_some(()));
}

#[test]
fn a_stalled_tls_handshake_is_cut_at_the_handshake_timeout() {
    let server = start_tls();
    let mut bystander = wss(tls_addr(&server), "/ws/echo");
    // The first bytes of a ClientHello record, then nothing.
    let mut stalled = tcp(tls_addr(&server));
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // The server hangs up at its 500 ms handshake timeout, well before our 5 s read
    // timeout; a read that times out instead fails here.
    let mut buf = [0u8; 64];
    match stalled.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection closed, got {n} bytes"),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "the server did not cut the stalled handshake"
        ),
    }
    assert_echoes(&mut bystander, "unaffected");
}

#[test]
fn shutdown_sends_1001_over_tls_too() {
    let server = start_tls();
    let ws = wss(tls_addr(&server), "/ws/echo");
    let reader = std::thread::spawn(move || answer_close(ws));
    server.shutdown();
    assert_eq!(reader.join().unwrap(), Some(CloseCode::Away));
}

fn start_error(cert: PathBuf, key: PathBuf) -> Error {
    Server::builder()
        .listen("127.0.0.1:0")
        .tls_listen("127.0.0.1:0")
        .tls_identity(cert, key)
        .start()
        .expect_err("the server must not start")
}

fn certificate_error(err: &Error) -> (PathBuf, String) {
    match err {
        Error::Certificate { path, problem, .. } => (path.clone(), problem.clone()),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn missing_certificate_file_is_named() {
    let missing = certs().join("no-such-cert.pem");
    let err = start_error(missing.clone(), certs().join("localhost-key.pem"));
    let (path, reason) = certificate_error(&err);
    assert_eq!(path, missing);
    assert!(reason.contains("cannot read"), "{reason}");
    assert!(err.to_string().contains("no-such-cert.pem"), "{err}");
}

#[test]
fn missing_key_file_is_named() {
    let missing = certs().join("no-such-key.pem");
    let (path, _) = certificate_error(&start_error(certs().join("localhost.pem"), missing.clone()));
    assert_eq!(path, missing);
}

#[test]
fn certificate_that_is_not_pem_is_named() {
    // A key file is readable but is no certificate.
    let not_a_cert = fixture("unrelated-key.pem");
    let (path, reason) = certificate_error(&start_error(
        not_a_cert.clone(),
        certs().join("localhost-key.pem"),
    ));
    assert_eq!(path, not_a_cert);
    assert!(reason.contains("certificate"), "{reason}");
}

#[test]
fn key_that_is_not_pem_is_named() {
    let not_a_key = certs().join("localhost.pem");
    let (path, reason) = certificate_error(&start_error(
        certs().join("localhost.pem"),
        not_a_key.clone(),
    ));
    assert_eq!(path, not_a_key);
    assert!(reason.contains("PKCS#8"), "{reason}");
}

#[test]
fn key_in_sec1_form_gets_a_conversion_hint() {
    let key = fixture("sec1-key.pem");
    let (path, reason) =
        certificate_error(&start_error(certs().join("localhost.pem"), key.clone()));
    assert_eq!(path, key);
    assert!(reason.contains("openssl pkcs8 -topk8"), "{reason}");
}

#[test]
fn key_that_does_not_match_the_certificate_is_named() {
    let key = fixture("unrelated-key.pem");
    let (path, reason) =
        certificate_error(&start_error(certs().join("localhost.pem"), key.clone()));
    assert_eq!(path, key);
    assert!(reason.contains("matching key"), "{reason}");
}

#[test]
fn tls_port_in_use_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .tls_listen(addr.clone())
        .start()
        .expect_err("port in use");
    assert!(
        matches!(&err, Error::Bind { addr: a, .. } if *a == addr),
        "{err:?}"
    );
}

#[test]
fn the_built_in_development_certificate_is_the_default() {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let mut ws = wss(tls_addr(&server), "/ws/echo");
    assert_echoes(&mut ws, "dev cert");
}

/// Over https the session cookie is `Secure`, so a browser never sends it
/// over plain http.
#[test]
fn a_sign_in_over_https_sets_a_secure_cookie() {
    let server = start_with(|b| {
        b.tls_listen("127.0.0.1:0")
            .tls_identity(
                certs().join("localhost.pem"),
                certs().join("localhost-key.pem"),
            )
            .password("over tls")
    });
    let body = r#"{"password":"over tls"}"#;
    let mut stream = tls(tls_addr(&server));
    stream
        .write_all(
            format!(
                "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let response = read_to_close(&mut stream);
    assert_eq!(status(&response), 204, "{response}");
    let cookie = header(&response, "Set-Cookie").expect("a cookie");
    assert!(cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
}

// ---- protocol versions, as outside clients see them ----

/// What `openssl s_client` printed (stdout and stderr) after one handshake with the
/// TLS listener of `server`, forced to the protocol `version` (`-tls1_3`, `-tls1_2`…),
/// or `None` if the test was skipped for want of `openssl`.
fn s_client(test: &str, server: &ServerHandle, version: &str) -> Option<String> {
    let openssl = tool_or_skip(test, "openssl", "SWITCHBOARD_REQUIRE_TOOLS")?;
    let port = tls_addr(server).port().to_string();
    let ca = certs().join("ca.pem");
    let out = std::process::Command::new("timeout")
        .arg("10")
        .arg(openssl)
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(ca)
        .arg(version)
        // Security level 0, so that this client really offers TLS 1.0 and 1.1 (its
        // own defaults would refuse them before saying a word) and it is the server
        // that says no.
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client runs");
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The protocol `s_client` says it negotiated (`New, TLSv1.3, Cipher is …`), or
/// `None` when the handshake failed (`New, (NONE), Cipher is (NONE)`).
fn negotiated(output: &str) -> Option<&str> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("New, "))
        .and_then(|rest| rest.split(',').next())
        .filter(|v| v.starts_with("TLS"))
}

#[test]
fn openssl_s_client_negotiates_tls_1_3() {
    let server = start_tls();
    let Some(out) = s_client("openssl_s_client_negotiates_tls_1_3", &server, "-tls1_3") else {
        return;
    };
    assert_eq!(negotiated(&out), Some("TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
}

#[test]
fn openssl_s_client_limited_to_tls_1_2_still_gets_in() {
    let server = start_tls();
    let Some(out) = s_client(
        "openssl_s_client_limited_to_tls_1_2_still_gets_in",
        &server,
        "-tls1_2",
    ) else {
        return;
    };
    assert_eq!(negotiated(&out), Some("TLSv1.2"), "{out}");
}

#[test]
fn tls_1_1_and_1_0_are_refused_and_hurt_nobody() {
    let server = start_tls();
    let mut bystander = wss(tls_addr(&server), "/ws/echo");
    for version in ["-tls1_1", "-tls1"] {
        let Some(out) = s_client(
            "tls_1_1_and_1_0_are_refused_and_hurt_nobody",
            &server,
            version,
        ) else {
            return;
        };
        assert_eq!(negotiated(&out), None, "{version}: {out}");
        // Alert 70, protocol_version (RFC 8446 §6.2), from the server: the client did
        // offer the old version.
        assert!(out.contains("alert number 70"), "{version}: {out}");
    }
    assert_echoes(&mut bystander, "still fine");
}

#[test]
fn a_default_python_ssl_client_negotiates_tls_1_3() {
    let test = "a_default_python_ssl_client_negotiates_tls_1_3";
    let Some(python) = tool_or_skip(test, "python3", "SWITCHBOARD_REQUIRE_TOOLS") else {
        return;
    };
    let server = start_tls();
    let script = "import socket, ssl, sys\n\
                  context = ssl.create_default_context(cafile=sys.argv[1])\n\
                  raw = socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=5)\n\
                  with context.wrap_socket(raw, server_hostname='localhost') as tls:\n\
                  \x20   print(tls.version())\n";
    let out = std::process::Command::new("timeout")
        .arg("10")
        .arg(python)
        .args(["-c", script])
        .arg(certs().join("ca.pem"))
        .arg(tls_addr(&server).port().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "TLSv1.3",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_embedder_that_asks_for_tls_only_gets_no_plaintext_listener() {
    let server = Server::builder()
        .tls_listen("127.0.0.1:0")
        .start()
        .expect("a TLS-only server starts");
    assert_eq!(
        server.local_addrs(),
        &[] as &[SocketAddr],
        "no plain listener"
    );
    let addr = tls_addr(&server);
    assert_eq!(server.local_addr(), addr, "its address is the TLS one");
    let mut ws = wss(addr, "/ws/echo");
    ws.send(Message::text("only over TLS")).unwrap();
    assert_eq!(next(&mut ws), Message::text("only over TLS"));
}
