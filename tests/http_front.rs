//! The HTTP front through real sockets: the plain endpoints, every way an opening
//! handshake can be refused (RFC 6455 §4.2), the origin and subprotocol
//! rules, and the connection caps.
//!
//! Broken input is sent as raw bytes, so the test controls every byte of the head.
//! Where a refusal is cheap to pair with it, an echo client connected beforehand
//! proves that one peer's bad request touches nobody else.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};
use switchboard::ServerHandle;

/// Short, so the timeout tests stay fast; long enough for a loaded CI machine to
/// finish a well-formed handshake well inside it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// An opening handshake request, built header by header so that a test can break
/// exactly one thing about it.
struct Upgrade {
    target: String,
    version: &'static str,
    headers: Vec<(String, String)>,
}

impl Upgrade {
    /// A valid upgrade to `target`, with the RFC 6455 §1.3 example key.
    fn to(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            version: "HTTP/1.1",
            headers: [
                ("Host", "localhost"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", EXAMPLE_KEY),
                ("Sec-WebSocket-Version", "13"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    /// Adds a header line (after any of the same name).
    fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Drops every header line called `name`.
    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the value of `name`.
    fn set(self, name: &str, value: &str) -> Self {
        self.without(name).with(name, value)
    }

    fn http_version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// The request head on the wire.
    fn head(&self) -> String {
        let mut out = format!("GET {} {}\r\n", self.target, self.version);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out
    }
}

/// Tries a full WebSocket handshake; `None` if the server refused it.
fn try_connect(addr: SocketAddr, path: &str) -> Option<Client> {
    tungstenite::client(format!("ws://{addr}{path}"), tcp(addr))
        .ok()
        .map(|(ws, _)| ws)
}

// ---- the plain HTTP endpoints ----

#[test]
fn root_serves_the_html_page() {
    let server = start();
    let response = get(server.local_addr(), "/");
    assert_eq!(status(&response), 200);
    let content_type = header(&response, "Content-Type").expect("a Content-Type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body(&response).to_ascii_lowercase().contains("<html"));
}

#[test]
fn healthz_answers_json_with_status_connections_rooms_and_uptime() {
    let server = start();
    let response = get(server.local_addr(), "/healthz");
    assert_eq!(status(&response), 200);
    let content_type = header(&response, "Content-Type").expect("a Content-Type");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let health: Value = serde_json::from_str(body(&response)).expect("JSON body");
    assert_eq!(health["status"], "ok");
    assert!(health["connections"].is_u64(), "{health}");
    assert!(health["rooms"].is_u64(), "{health}");
    let uptime = health
        .as_object()
        .unwrap()
        .iter()
        .find(|(key, _)| key.starts_with("uptime"))
        .unwrap_or_else(|| panic!("no uptime field in {health}"));
    assert!(uptime.1.is_number(), "{health}");
}

#[test]
fn healthz_counts_open_connections_and_rooms() {
    let server = start();
    let addr = server.local_addr();
    let _echo = connect(addr, "/ws/echo");
    let _relay = connect(addr, "/ws/relay/health");
    // Two WebSockets plus the connection asking.
    let health = eventually(|| {
        let health = healthz(addr);
        (health["connections"] == 3 && health["rooms"] == 1).then_some(health)
    });
    assert_eq!(health["status"], "ok");
}

#[test]
fn metrics_answers_prometheus_text() {
    let server = start();
    let response = get(server.local_addr(), "/metrics");
    assert_eq!(status(&response), 200);
    let content_type = header(&response, "Content-Type").expect("a Content-Type");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = body(&response);
    for line in [
        "# TYPE switchboard_open_connections gauge",
        "# TYPE switchboard_messages_in_total counter",
        "# TYPE switchboard_handshake_failures_total counter",
        "switchboard_handshake_failures_total{reason=\"not_found\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    for name in [
        "switchboard_open_connections",
        "switchboard_open_websockets",
        "switchboard_messages_in_total",
        "switchboard_messages_out_total",
        "switchboard_bytes_in_total",
        "switchboard_bytes_out_total",
        "switchboard_slow_consumer_drops_total",
    ] {
        metric(server.local_addr(), name);
    }
}

/// The exposition is checked by Prometheus' own parser and linter, with some traffic
/// counted first so that every family has a value.
#[test]
fn metrics_pass_promtool_check() {
    let Some(promtool) = tool_or_skip(
        "metrics_pass_promtool_check",
        "promtool",
        "SWITCHBOARD_REQUIRE_TOOLS",
    ) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let mut ws = connect(addr, "/ws/echo");
    assert_echoes(&mut ws, "count me");
    get(addr, "/nope");
    let text = body(&get(addr, "/metrics")).to_owned();
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("a pipe")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let status = wait_exit(&mut check, Duration::from_secs(30)).expect("promtool finishes");
    let output = check.wait_with_output().expect("promtool's output");
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "promtool check metrics: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool has remarks: {said}");
}

/// Under OpenMetrics a counter `x_total` is the family `x`, so no gauge may be named
/// `x` beside it (Python's prometheus_client would merge the two).
#[test]
fn no_gauge_shares_a_name_with_a_counter_family() {
    let server = start();
    let text = body(&get(server.local_addr(), "/metrics")).to_owned();
    let typed: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (name, kind) in &typed {
        if *kind == "counter" {
            let family = name.strip_suffix("_total").expect("counters end in _total");
            assert!(
                !typed.iter().any(|(n, _)| *n == family),
                "{family} is both a counter family and a metric of its own"
            );
        }
    }
}

#[test]
fn metrics_count_echoed_messages() {
    let server = start();
    let addr = server.local_addr();
    let before_in = metric(addr, "switchboard_messages_in_total");
    let before_out = metric(addr, "switchboard_messages_out_total");
    let mut ws = connect(addr, "/ws/echo");
    assert_echoes(&mut ws, "count me");
    assert_eq!(metric(addr, "switchboard_messages_in_total"), before_in + 1);
    assert_eq!(
        eventually(|| {
            let out = metric(addr, "switchboard_messages_out_total");
            (out > before_out).then_some(out)
        }),
        before_out + 1
    );
}

#[test]
fn metrics_count_a_not_found_as_a_handshake_failure() {
    let server = start();
    let addr = server.local_addr();
    let before = handshake_failures(addr, "not_found");
    assert_eq!(status(&get(addr, "/nowhere")), 404);
    assert_eq!(handshake_failures(addr, "not_found"), before + 1);
}

#[test]
fn metrics_count_each_refusal_under_its_reason() {
    let server = start_with(|b| b.handshake_timeout(HANDSHAKE_TIMEOUT));
    let addr = server.local_addr();
    let cases = [
        (
            "POST / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
        (
            "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            426,
            "upgrade_required",
        ),
        (
            Upgrade::to("/ws/echo")
                .set("Sec-WebSocket-Version", "8")
                .head(),
            426,
            "bad_version",
        ),
        (
            Upgrade::to("/ws/echo").without("Sec-WebSocket-Key").head(),
            400,
            "bad_request",
        ),
        (
            Upgrade::to("/ws/echo")
                .with("Origin", "http://evil.example")
                .head(),
            403,
            "forbidden_origin",
        ),
        (
            Upgrade::to("/ws/echo")
                .with("X-Filler", &"a".repeat(9000))
                .head(),
            431,
            "head_too_large",
        ),
        ("GET / HTTP/1.1\r\nHo".to_owned(), 408, "timeout"),
    ];
    for (request, code, reason) in cases {
        let before = handshake_failures(addr, reason);
        assert_eq!(status(&raw(addr, request.as_bytes())), code, "{reason}");
        assert_eq!(handshake_failures(addr, reason), before + 1, "{reason}");
    }
}

// ---- routing ----

#[test]
fn unknown_path_is_404() {
    assert_refused("GET /no/such/page HTTP/1.1\r\nHost: localhost\r\n\r\n", 404);
}

#[test]
fn upgrade_to_unknown_websocket_path_is_404() {
    let server = start();
    let response = answer_beside_bystander(&server, Upgrade::to("/ws/nope").head());
    assert_eq!(status(&response), 404);
}

#[test]
fn post_is_405_with_allow_get_and_head() {
    let server = start();
    let response = answer_beside_bystander(
        &server,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&response), 405);
    assert_eq!(header(&response, "Allow"), Some("GET, HEAD"));
}

/// Uptime monitors probe with HEAD: it gets what GET gets, head only (RFC 9110 §9.3.2).
#[test]
fn head_is_answered_like_get_without_the_body() {
    let server = start();
    let addr = server.local_addr();
    for path in ["/", "/healthz", "/metrics"] {
        let got = get(addr, path);
        let head = raw(
            addr,
            format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&head), 200, "{path}");
        assert_eq!(
            header(&head, "Content-Type"),
            header(&got, "Content-Type"),
            "{path}"
        );
        let length: usize = header(&head, "Content-Length")
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no Content-Length in {head:?}"));
        assert!(length > 0, "{path}: the length of the GET body");
        assert_eq!(body(&head), "", "{path}: no body");
    }
    // Where GET is refused, HEAD is refused the same way, and never upgrades.
    let head = raw(
        addr,
        Upgrade::to("/ws/echo")
            .head()
            .replacen("GET", "HEAD", 1)
            .as_bytes(),
    );
    assert_eq!(status(&head), 426);
    assert_eq!(body(&head), "");
    let head = raw(addr, b"HEAD /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status(&head), 404);
    assert_eq!(body(&head), "");
}

#[test]
fn websocket_endpoint_without_upgrade_is_426_with_version_13() {
    let server = start();
    let response =
        answer_beside_bystander(&server, "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status(&response), 426);
    assert_eq!(header(&response, "Sec-WebSocket-Version"), Some("13"));
    // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
    assert!(
        header(&response, "Upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );
}

// ---- the opening handshake ----

#[test]
fn websocket_version_8_is_426_with_version_13() {
    let server = start();
    let request = Upgrade::to("/ws/echo").set("Sec-WebSocket-Version", "8");
    let response = answer_beside_bystander(&server, request.head());
    assert_eq!(status(&response), 426);
    assert_eq!(header(&response, "Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn missing_key_is_400() {
    let request = Upgrade::to("/ws/echo").without("Sec-WebSocket-Key");
    assert_refused(&request.head(), 400);
}

#[test]
fn key_of_wrong_length_is_400() {
    // "abc": base64 that decodes to 3 bytes, not 16.
    let request = Upgrade::to("/ws/echo").set("Sec-WebSocket-Key", "YWJj");
    assert_refused(&request.head(), 400);
}

#[test]
fn key_that_is_not_base64_is_400() {
    let request = Upgrade::to("/ws/echo").set("Sec-WebSocket-Key", "not base64 at all!!!!!==");
    assert_refused(&request.head(), 400);
}

#[test]
fn duplicate_key_is_400() {
    let request = Upgrade::to("/ws/echo").with("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==");
    assert_refused(&request.head(), 400);
}

#[test]
fn missing_host_is_400() {
    let request = Upgrade::to("/ws/echo").without("Host");
    assert_refused(&request.head(), 400);
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let request = Upgrade::to("/ws/echo").set("Connection", "keep-alive");
    assert_refused(&request.head(), 400);
}

#[test]
fn http_1_0_upgrade_is_400() {
    let request = Upgrade::to("/ws/echo").http_version("HTTP/1.0");
    assert_refused(&request.head(), 400);
}

#[test]
fn bad_relay_room_name_is_400() {
    assert_refused(&Upgrade::to("/ws/relay/bad%20room").head(), 400);
}

#[test]
fn bad_chat_room_name_is_400() {
    assert_refused(&Upgrade::to("/ws/chat/bad%20room").head(), 400);
}

#[test]
fn switching_protocols_carries_the_rfc_example_accept_key() {
    let server = start();
    let (head, _stream) = handshake(server.local_addr(), Upgrade::to("/ws/echo").head());
    assert_eq!(status(&head), 101);
    // RFC 6455 §1.3: the example key and its accept value.
    assert_eq!(header(&head, "Sec-WebSocket-Accept"), Some(EXAMPLE_ACCEPT));
}

#[test]
fn switching_protocols_names_the_websocket_upgrade() {
    let server = start();
    let (head, _stream) = handshake(server.local_addr(), Upgrade::to("/ws/echo").head());
    assert_eq!(status(&head), 101);
    assert!(
        header(&head, "Upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );
    assert!(
        header(&head, "Connection")
            .unwrap()
            .eq_ignore_ascii_case("upgrade")
    );
}

#[test]
fn connection_token_list_with_upgrade_is_accepted() {
    let server = start();
    let request = Upgrade::to("/ws/echo").set("Connection", "keep-alive, Upgrade");
    let (head, stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
    assert_echoes(&mut client_on(stream), "token list");
}

#[test]
fn header_names_are_case_insensitive() {
    let server = start();
    let request = "GET /ws/echo HTTP/1.1\r\nhost: localhost\r\nUPGRADE: websocket\r\n\
                   connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   SeC-WeBsOcKeT-VeRsIoN: 13\r\n\r\n";
    let (head, stream) = handshake(server.local_addr(), request);
    assert_eq!(status(&head), 101);
    assert_echoes(&mut client_on(stream), "any case");
}

#[test]
fn upgrade_and_connection_values_are_case_insensitive() {
    let server = start();
    let request = Upgrade::to("/ws/echo")
        .set("Upgrade", "WebSocket")
        .set("Connection", "UPGRADE");
    let (head, _stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
}

#[test]
fn absolute_form_target_is_accepted() {
    let server = start();
    let (head, stream) = handshake(
        server.local_addr(),
        Upgrade::to("ws://localhost/ws/echo").head(),
    );
    assert_eq!(status(&head), 101);
    assert_echoes(&mut client_on(stream), "absolute");
}

#[test]
fn request_head_over_8_kib_is_431() {
    let server = start();
    let request = Upgrade::to("/ws/echo").with("X-Filler", &"a".repeat(9 * 1024));
    let response = answer_beside_bystander(&server, request.head());
    assert_eq!(status(&response), 431);
}

#[test]
fn request_head_just_under_8_kib_is_served() {
    let server = start();
    let filler = "a".repeat(8 * 1024 - 200);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Filler: {filler}\r\n\r\n");
    assert!(request.len() < 8 * 1024);
    assert_eq!(status(&raw(server.local_addr(), request.as_bytes())), 200);
}

#[test]
fn partial_head_then_silence_is_408_after_the_handshake_timeout() {
    let server = start_with(|b| b.handshake_timeout(HANDSHAKE_TIMEOUT));
    let mut bystander = connect(server.local_addr(), "/ws/echo");
    let mut stream = tcp(server.local_addr());
    let started = Instant::now();
    stream
        .write_all(b"GET /ws/echo HTTP/1.1\r\nHost: loc")
        .unwrap();
    let response = read_to_close(&mut stream);
    let waited = started.elapsed();
    assert_eq!(status(&response), 408);
    assert!(
        waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(50),
        "{waited:?}"
    );
    assert!(waited < READ_TIMEOUT - Duration::from_secs(1), "{waited:?}");
    assert_echoes(&mut bystander, "unaffected by the slow one");
}

#[test]
fn head_trickled_forever_is_408_at_the_handshake_timeout() {
    let server = start_with(|b| b.handshake_timeout(HANDSHAKE_TIMEOUT));
    let mut stream = tcp(server.local_addr());
    stream.set_nodelay(true).unwrap();
    let started = Instant::now();
    // A byte every 50 ms never finishes a head: the deadline is for the whole head,
    // not for each read.
    let mut filler = "GET / HTTP/1.1\r\nX: "
        .bytes()
        .chain(std::iter::repeat(b'a'));
    while started.elapsed() < HANDSHAKE_TIMEOUT * 3 {
        let byte = filler.next().unwrap();
        if stream.write_all(&[byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 1];
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        if stream.peek(&mut buf).is_ok() {
            break;
        }
    }
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let response = read_to_close(&mut stream);
    let waited = started.elapsed();
    assert_eq!(status(&response), 408);
    assert!(waited < HANDSHAKE_TIMEOUT * 2, "{waited:?}");
}

#[test]
fn silent_connection_is_closed_without_a_response_after_the_handshake_timeout() {
    let server = start_with(|b| b.handshake_timeout(HANDSHAKE_TIMEOUT));
    let mut stream = tcp(server.local_addr());
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf);
    let waited = started.elapsed();
    assert!(matches!(read, Ok(0)), "closed without a byte, got {read:?}");
    assert!(
        waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(50),
        "{waited:?}"
    );
}

#[test]
fn head_split_across_many_small_writes_is_accepted() {
    let server = start();
    let mut stream = tcp(server.local_addr());
    stream.set_nodelay(true).unwrap();
    let request = Upgrade::to("/ws/echo").head();
    for piece in request.as_bytes().chunks(5) {
        stream.write_all(piece).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let head = read_head(&mut stream);
    assert_eq!(status(&head), 101);
    assert_echoes(&mut client_on(stream), "slowly");
}

#[test]
fn frame_pipelined_after_the_head_reaches_the_frame_parser() {
    let server = start();
    let mut stream = tcp(server.local_addr());
    let mut bytes = Upgrade::to("/ws/echo").head().into_bytes();
    bytes.extend(masked(TEXT, b"hello"));
    stream.write_all(&bytes).unwrap();
    let head = read_head(&mut stream);
    assert_eq!(status(&head), 101);
    // An unmasked server text frame: FIN + text, length 5, payload.
    let mut echo = [0u8; 7];
    stream.read_exact(&mut echo).expect("the echo");
    assert_eq!(&echo, b"\x81\x05hello");
}

// ---- origin policy ----

#[test]
fn no_origin_is_accepted() {
    let server = start();
    let (head, _stream) = handshake(server.local_addr(), Upgrade::to("/ws/echo").head());
    assert_eq!(status(&head), 101);
}

#[test]
fn origin_matching_host_is_accepted() {
    let server = start();
    let port = server.local_addr().port();
    let request = Upgrade::to("/ws/echo")
        .set("Host", &format!("localhost:{port}"))
        .with("Origin", &format!("http://localhost:{port}"));
    let (head, _stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
}

#[test]
fn origin_on_another_port_of_the_host_is_403() {
    let server = start();
    let port = server.local_addr().port();
    let request = Upgrade::to("/ws/echo")
        .set("Host", &format!("localhost:{port}"))
        .with(
            "Origin",
            &format!("http://localhost:{}", port.wrapping_add(1)),
        );
    let response = answer_beside_bystander(&server, request.head());
    assert_eq!(status(&response), 403);
}

#[test]
fn foreign_origin_is_403() {
    let request = Upgrade::to("/ws/echo").with("Origin", "http://evil.example");
    assert_refused(&request.head(), 403);
}

#[test]
fn allowed_foreign_origin_is_accepted() {
    let server = start_with(|b| b.allow_origin("http://evil.example"));
    let request = Upgrade::to("/ws/echo").with("Origin", "http://evil.example");
    let (head, _stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
}

#[test]
fn allow_origin_lists_only_what_it_names() {
    let server = start_with(|b| b.allow_origin("http://friend.example"));
    let request = Upgrade::to("/ws/echo").with("Origin", "http://evil.example");
    assert_eq!(
        status(&raw(server.local_addr(), request.head().as_bytes())),
        403
    );
}

#[test]
fn allow_origin_star_allows_every_origin() {
    let server = start_with(|b| b.allow_origin("*"));
    for origin in ["http://evil.example", "https://other.example:8443", "null"] {
        let request = Upgrade::to("/ws/echo").with("Origin", origin);
        let (head, _stream) = handshake(server.local_addr(), request.head());
        assert_eq!(status(&head), 101, "{origin}");
    }
}

// ---- subprotocols ----

#[test]
fn chat_selects_chat_v1_when_offered() {
    let server = start();
    let request = Upgrade::to("/ws/chat").with("Sec-WebSocket-Protocol", "foo, chat.v1");
    let (head, _stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), Some("chat.v1"));
}

#[test]
fn chat_with_only_unknown_subprotocols_succeeds_without_selecting_one() {
    let server = start();
    let request = Upgrade::to("/ws/chat").with("Sec-WebSocket-Protocol", "foo");
    let (head, _stream) = handshake(server.local_addr(), request.head());
    assert_eq!(status(&head), 101);
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), None);
}

// ---- connection caps ----

/// Holds two echo clients, checks that a third upgrade gets `503`, and that the two
/// still echo afterwards.
fn assert_third_is_refused(server: &ServerHandle) {
    let addr = server.local_addr();
    let mut first = connect(addr, "/ws/echo");
    let mut second = connect(addr, "/ws/echo");
    assert_echoes(&mut first, "one");
    assert_echoes(&mut second, "two");
    let response = raw(addr, Upgrade::to("/ws/echo").head().as_bytes());
    assert_eq!(status(&response), 503);
    assert_one_line_reason(&response);
    assert_echoes(&mut first, "one, still");
    assert_echoes(&mut second, "two, still");
}

/// Holds two echo clients, closes one, and checks that a new client gets its slot.
fn assert_freed_slot_is_reused(server: &ServerHandle) {
    let addr = server.local_addr();
    let first = connect(addr, "/ws/echo");
    let mut second = connect(addr, "/ws/echo");
    assert_echoes(&mut second, "two");
    close_politely(first);
    let mut third = eventually(|| try_connect(addr, "/ws/echo"));
    assert_echoes(&mut third, "three");
    assert_echoes(&mut second, "two, still");
}

#[test]
fn max_connections_refuses_the_next_upgrade_with_503() {
    assert_third_is_refused(&start_with(|b| b.max_connections(2)));
}

#[test]
fn max_connections_frees_a_slot_when_a_client_leaves() {
    assert_freed_slot_is_reused(&start_with(|b| b.max_connections(2)));
}

#[test]
fn max_connections_per_ip_refuses_the_next_upgrade_with_503() {
    assert_third_is_refused(&start_with(|b| b.max_connections_per_ip(2)));
}

#[test]
fn max_connections_per_ip_frees_a_slot_when_a_client_leaves() {
    assert_freed_slot_is_reused(&start_with(|b| b.max_connections_per_ip(2)));
}

#[test]
fn server_full_refusals_are_counted() {
    let server = start_with(|b| b.max_connections(1));
    let addr = server.local_addr();
    let held = connect(addr, "/ws/echo");
    let response = raw(addr, Upgrade::to("/ws/echo").head().as_bytes());
    assert_eq!(status(&response), 503);
    let mut refused = 1;
    close_politely(held);
    // /metrics itself needs the one slot; a 503 while it is still taken counts too.
    let counted = eventually(|| {
        let counted = try_metric(addr, &failure_metric("server_full"));
        if counted.is_none() {
            refused += 1;
        }
        counted
    });
    assert_eq!(counted, refused, "server_full refusals counted");
}

#[test]
fn every_answer_says_nosniff() {
    let server = start();
    let addr = server.local_addr();
    for path in ["/", "/healthz", "/metrics", "/info", "/nowhere", "/ws/echo"] {
        let response = get(addr, path);
        assert_eq!(
            header(&response, "X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

/// The page runs only its own inline script and style, allowed by hash,
/// talks only to this server, and cannot be framed.
#[test]
fn the_page_allows_only_its_own_script_and_style_by_hash() {
    use sha2::Digest;
    let server = start();
    let response = get(server.local_addr(), "/");
    let policy = header(&response, "Content-Security-Policy").expect("a CSP");
    let page = body(&response);
    let hash = |tag: &str| {
        let inner = page
            .split_once(&format!("<{tag}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .map(|(inner, _)| inner)
            .unwrap_or_else(|| panic!("a <{tag}> in the page"));
        let digest = sha2::Sha256::digest(inner.as_bytes());
        format!("'sha256-{}'", data_encoding::BASE64.encode(&digest))
    };
    for directive in [
        "default-src 'none'".to_owned(),
        format!("script-src {}", hash("script")),
        format!("style-src {}", hash("style")),
        "connect-src 'self'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
    ] {
        assert!(
            policy.split(';').any(|d| d.trim() == directive),
            "{directive} in {policy}"
        );
    }
    assert_eq!(header(&response, "Referrer-Policy"), Some("no-referrer"));
}
