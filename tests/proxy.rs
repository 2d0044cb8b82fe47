//! Behind a real nginx running `deploy/nginx.conf`: every endpoint passes
//! through, TLS ends at nginx, idle connections live on because of the server's
//! pings, and with `--trust-proxy` the client nginx names is the one limits and the
//! Origin check see, while anyone else's forwarding headers change nothing.
//!
//! Clients that must be told apart connect from different loopback addresses
//! (127.0.0.2, 127.0.0.3, …, all of 127.0.0.0/8 is this machine); nginx itself
//! connects to the server from 127.0.0.1, the one trusted address.

mod common;

use common::nginx::{Nginx, Options};
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard::{Error, Server, ServerBuilder, ServerHandle};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Where nginx connects from, and so the one proxy the servers here trust.
const NGINX_PEER: &str = "127.0.0.1/32";

/// A server that trusts nginx, and nginx in front of it; `None` if nginx is missing.
fn behind_nginx(test: &str) -> Option<(ServerHandle, Nginx)> {
    behind_nginx_with(test, |b| b, &Options::default())
}

fn behind_nginx_with(
    test: &str,
    f: impl FnOnce(ServerBuilder) -> ServerBuilder,
    options: &Options,
) -> Option<(ServerHandle, Nginx)> {
    let server = start_with(|b| f(b.trust_proxy(NGINX_PEER)));
    let nginx = Nginx::start_with(test, &[server.local_addr()], options)?;
    Some((server, nginx))
}

/// An upgrade to `/ws/echo` at `addr` from `from`, with `extra` headers; returns the
/// response head and the stream, which holds the connection while it lives.
fn upgrade_from(from: [u8; 4], addr: SocketAddr, extra: &str) -> (String, TcpStream) {
    let mut stream = tcp_from(from, addr);
    stream
        .write_all(upgrade_request("/ws/echo", extra).as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    (head, stream)
}

/// A WebSocket through nginx (a plain `ws://` to it).
fn ws(nginx: &Nginx, path: &str) -> Client {
    let addr = nginx.http_addr();
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}{path}"), tcp(addr)).expect("handshake via nginx");
    assert_eq!(response.status(), 101);
    ws
}

#[test]
fn chat_through_nginx_reaches_every_member() {
    let Some((_server, nginx)) = behind_nginx("chat_through_nginx_reaches_every_member") else {
        return;
    };
    let mut alice = ws(&nginx, "/ws/chat/proxied?name=alice");
    assert_eq!(next_json(&mut alice)["type"], "welcome");
    let mut bob = ws(&nginx, "/ws/chat/proxied?name=bob");
    assert_eq!(next_json(&mut bob)["type"], "welcome");
    assert_eq!(next_of_type(&mut alice, "join")["name"], "bob");
    say(&mut alice, "through the proxy");
    let got = next_of_type(&mut bob, "message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["text"], "through the proxy");
}

#[test]
fn relay_through_nginx_forwards_frames_verbatim() {
    let Some((_server, nginx)) = behind_nginx("relay_through_nginx_forwards_frames_verbatim")
    else {
        return;
    };
    let mut a = ws(&nginx, "/ws/relay/proxied");
    let mut b = ws(&nginx, "/ws/relay/proxied");
    // The relay only forwards to members it has: wait until both have joined.
    let deadline = Instant::now() + READ_TIMEOUT;
    let payload = vec![0u8, 1, 2, 254, 255];
    loop {
        a.send(Message::binary(payload.clone())).unwrap();
        b.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match b.read() {
            Ok(Message::Binary(got)) => {
                assert_eq!(got.as_ref(), payload.as_slice());
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("relay through nginx: {e}"),
        }
        assert!(Instant::now() < deadline, "nothing relayed through nginx");
    }
    b.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    b.send(Message::text("back")).unwrap();
    assert_eq!(next(&mut a), Message::text("back"));
}

#[test]
fn echo_of_one_mebibyte_through_nginx() {
    let Some((_server, nginx)) = behind_nginx("echo_of_one_mebibyte_through_nginx") else {
        return;
    };
    let mut client = ws(&nginx, "/ws/echo");
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    client.send(Message::binary(big.clone())).unwrap();
    match next(&mut client) {
        Message::Binary(got) => assert!(got.as_ref() == big.as_slice(), "the same 1 MiB back"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
}

#[test]
fn ping_through_nginx_is_answered_with_its_pong() {
    let Some((_server, nginx)) = behind_nginx("ping_through_nginx_is_answered_with_its_pong")
    else {
        return;
    };
    let mut client = ws(&nginx, "/ws/echo");
    client
        .send(Message::Ping(b"anyone there?".to_vec().into()))
        .unwrap();
    loop {
        match client.read().expect("the pong") {
            Message::Pong(payload) => {
                assert_eq!(payload.as_ref(), b"anyone there?");
                break;
            }
            Message::Ping(_) => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }
}

#[test]
fn a_clean_close_keeps_its_code_through_nginx() {
    let Some((_server, nginx)) = behind_nginx("a_clean_close_keeps_its_code_through_nginx") else {
        return;
    };
    let mut client = ws(&nginx, "/ws/echo");
    assert_echoes(&mut client, "before the close");
    client
        .close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "done here".into(),
        }))
        .unwrap();
    let answer = close_frame(&mut client).expect("the server's Close, through nginx");
    assert_eq!(answer.code, CloseCode::from(4000), "{answer:?}");
}

#[test]
fn the_page_over_https_at_nginx_and_wss_to_a_plain_upstream() {
    let Some((server, nginx)) =
        behind_nginx("the_page_over_https_at_nginx_and_wss_to_a_plain_upstream")
    else {
        return;
    };
    assert!(
        server.tls_local_addr().is_none(),
        "the node itself has no TLS"
    );
    let port = nginx.https_addr().port();
    let mut page = tls(nginx.https_addr());
    write!(
        page,
        "GET / HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let response = read_to_close(&mut page);
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.contains("<html"), "the chat page");

    // The page's own script would connect like this: wss to the same host and port,
    // with its https origin, which the server sees only through nginx's headers.
    let url = format!("wss://localhost:{port}/ws/chat/secure?name=carol");
    let request = tungstenite::ClientRequestBuilder::new(url.parse().unwrap())
        .with_header("Origin", format!("https://localhost:{port}"));
    let (mut chat, response) =
        tungstenite::client(request, tls(nginx.https_addr())).expect("wss through nginx");
    assert_eq!(response.status(), 101);
    assert_eq!(next_json(&mut chat)["type"], "welcome");
    say(&mut chat, "over wss");
    assert_eq!(next_of_type(&mut chat, "message")["text"], "over wss");
}

#[test]
fn an_idle_connection_outlives_proxy_read_timeout_because_of_the_pings() {
    let test = "an_idle_connection_outlives_proxy_read_timeout_because_of_the_pings";
    let options = Options {
        read_timeout: Some(Duration::from_secs(2)),
    };
    let Some((_server, nginx)) =
        behind_nginx_with(test, |b| b.ping_interval(Duration::from_secs(1)), &options)
    else {
        return;
    };
    let mut client = ws(&nginx, "/ws/echo");
    // Send nothing for three proxy timeouts; only read, which answers the pings.
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let idle_until = Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    while Instant::now() < idle_until {
        match client.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the idle connection was cut after {pings} pings: {e}"),
        }
    }
    assert!(pings >= 3, "the server pinged: {pings}");
    client
        .get_mut()
        .set_read_timeout(Some(READ_TIMEOUT))
        .unwrap();
    assert_echoes(&mut client, "still here");
}

/// The other side of the test above: without pings within `proxy_read_timeout`,
/// nginx does cut an idle connection, so the substituted timeout is really in force.
#[test]
fn without_pings_in_time_nginx_cuts_an_idle_connection() {
    let test = "without_pings_in_time_nginx_cuts_an_idle_connection";
    let options = Options {
        read_timeout: Some(Duration::from_secs(1)),
    };
    let Some((_server, nginx)) =
        behind_nginx_with(test, |b| b.ping_interval(Duration::from_secs(30)), &options)
    else {
        return;
    };
    let mut client = ws(&nginx, "/ws/echo");
    let started = Instant::now();
    let outcome = client.read();
    assert!(
        !matches!(outcome, Ok(Message::Text(_) | Message::Binary(_))),
        "{outcome:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited < READ_TIMEOUT - Duration::from_secs(1),
        "nginx closed it at its timeout, not the test's: {waited:?} {outcome:?}"
    );
}

#[test]
fn the_per_ip_limit_applies_to_each_forwarded_client() {
    let test = "the_per_ip_limit_applies_to_each_forwarded_client";
    let Some((_server, nginx)) =
        behind_nginx_with(test, |b| b.max_connections_per_ip(1), &Options::default())
    else {
        return;
    };
    let at = nginx.http_addr();
    let (head, alice) = upgrade_from([127, 0, 0, 2], at, "");
    assert_eq!(status(&head), 101, "alice's first: {head}");
    let (head, _) = upgrade_from([127, 0, 0, 2], at, "");
    assert_eq!(status(&head), 503, "alice's second: {head}");
    let (head, _bob) = upgrade_from([127, 0, 0, 3], at, "");
    assert_eq!(status(&head), 101, "bob has a slot of his own: {head}");
    // A header of her own that names someone else does not get alice a second slot:
    // nginx appends her real address, the rightmost one, and drops her Forwarded.
    let spoof = "X-Forwarded-For: 10.9.9.9\r\nForwarded: for=10.9.9.8\r\n";
    let (head, _) = upgrade_from([127, 0, 0, 2], at, spoof);
    assert_eq!(status(&head), 503, "alice, claiming to be another: {head}");
    // Her slot is hers until her connection ends, then free again.
    drop(alice);
    eventually(|| {
        let (head, stream) = upgrade_from([127, 0, 0, 2], at, "");
        (status(&head) == 101).then_some(stream)
    });
}

#[test]
fn a_direct_client_sending_forwarding_headers_is_limited_by_its_own_address() {
    let server = start_with(|b| b.trust_proxy(NGINX_PEER).max_connections_per_ip(1));
    let at = server.local_addr();
    let (head, _first) = upgrade_from(
        [127, 0, 0, 4],
        at,
        "X-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.2\r\n",
    );
    assert_eq!(status(&head), 101, "{head}");
    for spoof in [
        "X-Forwarded-For: 10.0.0.3\r\n",
        "Forwarded: for=10.0.0.4\r\n",
        "X-Forwarded-For: 10.0.0.5\r\nForwarded: for=\"[2001:db8::5]\"\r\n",
    ] {
        let (head, _) = upgrade_from([127, 0, 0, 4], at, spoof);
        assert_eq!(status(&head), 503, "{spoof}: {head}");
    }
    let (head, _other) = upgrade_from([127, 0, 0, 5], at, "");
    assert_eq!(
        status(&head),
        101,
        "another address is not affected: {head}"
    );
}

#[test]
fn the_sign_in_limit_applies_to_each_forwarded_client() {
    let test = "the_sign_in_limit_applies_to_each_forwarded_client";
    let Some((_server, nginx)) =
        behind_nginx_with(test, |b| b.password("sesame"), &Options::default())
    else {
        return;
    };
    let login = |from| {
        let mut stream = tcp_from(from, nginx.http_addr());
        let body = "password=wrong";
        write!(
            stream,
            "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        status(&read_to_close(&mut stream))
    };
    let mut statuses: Vec<u16> = (0..6).map(|_| login([127, 0, 0, 6])).collect();
    assert_eq!(
        statuses.pop(),
        Some(429),
        "mallory is limited: {statuses:?}"
    );
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(login([127, 0, 0, 7]), 401, "not everyone behind the proxy");
}

#[test]
fn the_api_post_limit_applies_to_each_forwarded_client() {
    let test = "the_api_post_limit_applies_to_each_forwarded_client";
    let limited = |b: ServerBuilder| b.api_token("ci-token").api_rate(1);
    let Some((_server, nginx)) = behind_nginx_with(test, limited, &Options::default()) else {
        return;
    };
    let post = |from| {
        let mut stream = tcp_from(from, nginx.http_addr());
        let body = "build passed";
        write!(
            stream,
            "POST /api/rooms/ci/messages HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Authorization: Bearer ci-token\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        status(&read_to_close(&mut stream))
    };
    let ci: Vec<u16> = (0..3).map(|_| post([127, 0, 0, 12])).collect();
    assert_eq!(ci, [201, 201, 429], "one client's burst");
    assert_eq!(post([127, 0, 0, 13]), 201, "another client has its own");
}

#[test]
fn the_origin_check_uses_the_forwarded_host_and_scheme() {
    let Some((_server, nginx)) =
        behind_nginx("the_origin_check_uses_the_forwarded_host_and_scheme")
    else {
        return;
    };
    let at = nginx.http_addr();
    let port = at.port();
    let with_origin = |origin: &str| {
        let request = format!(
            "GET /ws/echo HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {EXAMPLE_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        );
        let (head, _) = handshake(at, request);
        status(&head)
    };
    assert_eq!(with_origin(&format!("http://localhost:{port}")), 101);
    assert_eq!(
        with_origin(&format!("https://localhost:{port}")),
        403,
        "the browser's page was http at nginx"
    );
    assert_eq!(with_origin("http://evil.example"), 403);
}

#[test]
fn graceful_shutdown_sends_1001_through_nginx() {
    let Some((server, nginx)) = behind_nginx("graceful_shutdown_sends_1001_through_nginx") else {
        return;
    };
    let mut client = ws(&nginx, "/ws/chat/closing?name=dave");
    assert_eq!(next_json(&mut client)["type"], "welcome");
    let stopping = std::thread::spawn(move || server.shutdown());
    let close = close_frame(&mut client).expect("the server's Close, through nginx");
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    drop(client);
    stopping.join().unwrap();
}

#[test]
fn a_bad_trust_proxy_range_is_refused_naming_the_setting() {
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .trust_proxy("10.0.0.0/33")
        .start()
        .expect_err("a bad range");
    assert!(
        matches!(&err, Error::BadConfig { setting, .. } if *setting == "trust_proxy"),
        "{err}"
    );
    assert!(err.to_string().contains("trust_proxy"), "{err}");
}

#[test]
fn forwarding_headers_change_nothing_without_trust_proxy() {
    // No proxy trusted: the client named in the headers is ignored, and so is the
    // host, so an Origin matching only the forwarded host is refused.
    let server = start_with(|b| b.max_connections_per_ip(1));
    let at = server.local_addr();
    let extra = "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\n\
                 X-Forwarded-Proto: https\r\nOrigin: https://evil.example\r\n";
    // From an address of its own: the refused connection holds its slot until the
    // server has finished with it.
    let (head, _) = upgrade_from([127, 0, 0, 11], at, extra);
    assert_eq!(status(&head), 403, "{head}");
    let (head, _held) = upgrade_from([127, 0, 0, 8], at, "X-Forwarded-For: 10.0.0.1\r\n");
    assert_eq!(status(&head), 101, "{head}");
    let (head, _) = upgrade_from([127, 0, 0, 8], at, "X-Forwarded-For: 10.0.0.2\r\n");
    assert_eq!(status(&head), 503, "{head}");
}

/// Collects the server's log lines in this test process, with their target.
struct Capture(std::sync::Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target().starts_with("switchboard")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = (record.target().to_owned(), record.args().to_string());
            self.0.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));

#[test]
fn logs_and_trace_name_the_forwarded_client() {
    let test = "logs_and_trace_name_the_forwarded_client";
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let Some((_server, nginx)) = behind_nginx_with(test, |b| b.trace(true), &Options::default())
    else {
        return;
    };
    let stream = tcp_from([127, 0, 0, 9], nginx.http_addr());
    let url = format!("ws://{}/ws/echo", nginx.http_addr());
    let (mut client, _) = tungstenite::client(url, stream).expect("handshake via nginx");
    assert_echoes(&mut client, "who am I");
    close_politely(client);
    let lines = CAPTURE.0.lock().unwrap().clone();
    let ours: Vec<&(String, String)> = lines
        .iter()
        .filter(|(_, line)| line.contains(" 127.0.0.9:0"))
        .collect();
    assert!(
        ours.iter()
            .any(|(target, line)| target == switchboard::trace::TARGET
                && line.contains(" via 127.0.0.1:")
                && line.contains("who am I")),
        "the frames are traced under the client's address: {lines:#?}"
    );
    assert!(
        ours.iter()
            .any(|(target, line)| target != switchboard::trace::TARGET
                && line.contains("forwarded by 127.0.0.1:")),
        "a log line ties the client to the proxy's connection: {lines:#?}"
    );
}

#[test]
fn the_origin_check_believes_only_a_trusted_proxys_host_and_scheme() {
    let server = start_with(|b| b.trust_proxy(NGINX_PEER).allow_host("chat.example.com"));
    let at = server.local_addr();
    let upgrade = |from, extra: &str| {
        let request = format!(
            "GET /ws/echo HTTP/1.1\r\nHost: 10.0.0.11:3000\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {EXAMPLE_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let mut stream = tcp_from(from, at);
        stream.write_all(request.as_bytes()).unwrap();
        status(&read_head(&mut stream))
    };
    let forwarded = "X-Forwarded-Host: chat.example.com\r\nX-Forwarded-Proto: https\r\n";
    let page = "Origin: https://chat.example.com\r\n";
    let nginx = [127, 0, 0, 1];
    assert_eq!(upgrade(nginx, &format!("{forwarded}{page}")), 101);
    assert_eq!(
        upgrade(
            nginx,
            &format!("{forwarded}Origin: http://chat.example.com\r\n")
        ),
        403,
        "an http page is another origin than the https one the proxy served"
    );
    // nginx writes X-Forwarded-*: a Forwarded header is a client's, and says nothing.
    let rfc7239 = "Forwarded: for=192.0.2.1;proto=https;host=chat.example.com\r\n";
    assert_eq!(upgrade(nginx, &format!("{rfc7239}{page}")), 403);
    assert_eq!(
        upgrade([127, 0, 0, 10], &format!("{forwarded}{page}")),
        403,
        "from anyone else the headers are ignored, and Host is 10.0.0.11:3000"
    );
}

#[test]
fn a_sign_in_over_https_at_the_proxy_gets_a_secure_cookie() {
    let server = start_with(|b| {
        b.trust_proxy(NGINX_PEER)
            .password("sesame")
            .allow_host("chat.example.com")
    });
    let login = |proto: &str| {
        let body = r#"{"password":"sesame"}"#;
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: chat.example.com\r\nX-Forwarded-Proto: {proto}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = raw(server.local_addr(), request.as_bytes());
        assert_eq!(status(&response), 204, "{response}");
        header(&response, "Set-Cookie")
            .unwrap_or_default()
            .to_owned()
    };
    assert!(login("https").contains("Secure"), "https at the proxy");
    assert!(!login("http").contains("Secure"), "plain http at the proxy");
}

/// Two nodes of one cluster behind one nginx: clients spread over both by
/// the repo's upstream are one chat, and when a node stops, its clients
/// come back through nginx to the other and resume.
#[test]
fn two_nodes_on_one_redis_behind_one_nginx_are_one_chat() {
    let Some(redis) = common::redis::Redis::start("two_nodes_behind_nginx") else {
        return;
    };
    let node = || {
        start_with(|b| {
            b.trust_proxy(NGINX_PEER)
                .redis(redis.url())
                .close_timeout(Duration::from_secs(1))
        })
    };
    let (a, b) = (node(), node());
    let Some(nginx) = Nginx::start("two_nodes_behind_nginx", &[a.local_addr(), b.local_addr()])
    else {
        return;
    };
    // nginx spreads clients without the page's cookie by address and port: join
    // until both nodes hold some (each new one lands on either with even odds).
    let on = |n: &ServerHandle| metric(n.local_addr(), "switchboard_open_websockets");
    let mut clients = Vec::new();
    let mut wires = Vec::new();
    let mut epoch = String::new();
    while clients.len() < 4 || on(&a) == 0 || on(&b) == 0 {
        assert!(clients.len() < 24, "nginx sent every client to one node");
        let i = clients.len();
        let mut ws = ws(&nginx, &format!("/ws/chat/floor?name=user{i}"));
        let welcome = next_json(&mut ws);
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["name"], format!("user{i}"));
        welcome["epoch"]
            .as_str()
            .unwrap_or_default()
            .clone_into(&mut epoch);
        clients.push(ws);
        wires.push(welcome);
    }
    let n = clients.len();
    for (i, ws) in clients.iter_mut().enumerate() {
        for _ in i + 1..n {
            next_of_type(ws, "join");
        }
    }
    say(&mut clients[0], "one chat");
    let mut last = 0;
    for ws in &mut clients {
        let msg = next_of_type(ws, "message");
        assert_eq!(msg["text"], "one chat");
        last = msg["id"].as_u64().expect("an id");
    }
    send_json(&mut clients[3], serde_json::json!({"type": "members"}));
    let members = next_of_type(&mut clients[3], "members");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(n));

    // Which node holds whom: only its own node opens a connection's wire door.
    let on_a: Vec<bool> = wires
        .iter()
        .map(|welcome| {
            let addr = a.local_addr();
            tungstenite::client(wire_request(&format!("ws://{addr}"), welcome), tcp(addr)).is_ok()
        })
        .collect();
    let gone = on_a.iter().filter(|&&on| on).count();
    assert!(gone >= 1 && gone < n, "{on_a:?}");

    // Node A stops: its clients get 1001 through nginx, the others see them leave.
    a.shutdown();
    for (i, ws) in clients.iter_mut().enumerate() {
        if on_a[i] {
            let close = close_frame(ws).unwrap_or_else(|| panic!("client {i}: no Close"));
            assert_eq!(close.code, CloseCode::Away, "client {i}");
        } else {
            for _ in 0..gone {
                let leave = next_of_type(ws, "leave");
                assert_eq!(leave["reason"], "shutdown", "client {i}: {leave}");
            }
        }
    }
    let survivors: Vec<usize> = (0..n).filter(|&i| !on_a[i]).collect();
    say(&mut clients[survivors[0]], "still here");
    for &i in &survivors {
        assert_eq!(
            next_of_type(&mut clients[i], "message")["text"],
            "still here"
        );
    }
    // Back through nginx, on node B: resumed, with exactly what was missed.
    let mut back = ws(
        &nginx,
        &format!("/ws/chat/floor?name=user0&since={last}&epoch={epoch}"),
    );
    let welcome = next_json(&mut back);
    assert_eq!(welcome["resumed"], true);
    let texts: Vec<&str> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["still here"]);
}

/// A WebSocket through nginx that carries the page's routing cookie.
fn ws_routed(nginx: &Nginx, path: &str, route: &str) -> Result<Client, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let addr = nginx.http_addr();
    let request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a request");
    ws_routed_request(nginx, request, route)
}

/// [`ws_routed`] for a request already made (a wire viewer's, with its subprotocols).
fn ws_routed_request(
    nginx: &Nginx,
    mut request: tungstenite::handshake::client::Request,
    route: &str,
) -> Result<Client, tungstenite::Error> {
    let addr = nginx.http_addr();
    let cookie = format!("switchboard_route={route}")
        .parse()
        .expect("a header");
    request.headers_mut().insert("Cookie", cookie);
    tungstenite::client(request, tcp(addr))
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })
}

/// With several nodes behind the repo's nginx, a browser's Wire panel reaches the
/// node that holds its chat (the page's `switchboard_route` cookie picks the node),
/// while browsers still spread over the nodes.
#[test]
fn behind_nginx_each_browsers_wire_reaches_the_node_of_its_chat() {
    let Some(redis) = common::redis::Redis::start("wire_behind_nginx") else {
        return;
    };
    let node = || start_with(|b| b.trust_proxy(NGINX_PEER).redis(redis.url()));
    let (a, b) = (node(), node());
    let Some(nginx) = Nginx::start("wire_behind_nginx", &[a.local_addr(), b.local_addr()]) else {
        return;
    };
    let mut chats = Vec::new();
    for i in 0..16 {
        let route = format!("{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
        let mut chat = ws_routed(&nginx, &format!("/ws/chat/class?name=s{i}"), &route)
            .expect("chat through nginx");
        let welcome = next_of_type(&mut chat, "welcome");
        let base = format!("ws://{}", nginx.http_addr());
        let mut wire = ws_routed_request(&nginx, wire_request(&base, &welcome), &route)
            .unwrap_or_else(|e| panic!("browser {i}: the wire reached another node: {e}"));
        assert_eq!(
            next_json(&mut wire)["kind"],
            "http",
            "browser {i}: the replay"
        );
        chats.push((chat, wire));
    }
    let on = |n: &ServerHandle| metric(n.local_addr(), "switchboard_open_websockets");
    assert!(on(&a) >= 2 && on(&b) >= 2, "a: {}, b: {}", on(&a), on(&b));
}
