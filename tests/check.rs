//! `switchboard check URL`, run as a user runs it (the built binary, `--json`),
//! against real servers on loopback: switchboard's own `/ws/echo`, which must pass
//! every case, and echo servers built here on raw sockets with the library's frame
//! code, each breaking one rule of RFC 6455. For each broken one, `check` must fail
//! exactly the cases that rule decides, with a hint naming the rule, and grade every
//! other case as it grades the correct server.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;
use switchboard::frame::{self, Header, Length};
use tungstenite::Message;

/// Runs `switchboard check` with `args`; its output, bounded in time by `--timeout`.
fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check")
        .args(args)
        .output()
        .expect("switchboard check runs")
}

/// Runs `check --json` against `url` and returns the exit code and the report.
fn report(url: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![url, "--json"];
    args.extend_from_slice(extra);
    let out = check(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json is JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// Case id → (verdict, hint).
fn verdicts(report: &Value) -> BTreeMap<String, (String, String)> {
    report["cases"]
        .as_array()
        .expect("a list of cases")
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_owned();
            (field("id"), (field("verdict"), field("hint")))
        })
        .collect()
}

fn failed(report: &Value) -> Vec<String> {
    verdicts(report)
        .into_iter()
        .filter(|(_, (verdict, _))| verdict == "fail")
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn switchboards_own_echo_passes_every_case() {
    let server = common::start_with(|b| b.max_message_size(16 << 20));
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let (code, report) = report(&url, &[]);
    let cases = report["cases"].as_array().expect("cases");
    assert!(cases.len() >= 150, "{} cases", cases.len());
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["summary"]["fail"], 0);
    assert_eq!(report["summary"]["total"], cases.len());
    // Every area, with Autobahn's cases among them, and a hint for each non-pass.
    for area in [
        "handshake",
        "framing",
        "masking",
        "control",
        "reserved",
        "fragmentation",
        "utf8",
        "closing",
        "limits",
        "segmentation",
    ] {
        assert!(cases.iter().any(|c| c["area"] == area), "no {area} case");
    }
    assert!(cases.iter().any(|c| c["autobahn"] == "6.4.3"));
    for c in cases {
        assert!(c["rfc"].as_str().is_some_and(|r| r.contains('§')), "{c}");
        if c["verdict"] != "pass" {
            assert!(
                c["hint"].as_str().is_some_and(|h| h.contains("RFC")),
                "a non-pass names the rule: {c}"
            );
        }
    }
    // tungstenite validates UTF-8 a frame at a time: failing in the middle of one
    // frame is Autobahn's NON-STRICT, and so it is here.
    let v = verdicts(&report);
    assert_eq!(v["6.4.3"].0, "lenient");
    assert_eq!(v["6.4.1"].0, "pass");
    assert_eq!(v["9.1.6"].0, "pass", "16 MiB in one frame");
}

#[test]
fn the_text_report_groups_by_area_and_ends_with_a_summary() {
    let server = common::start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let out = check(&[&url, "--cases", "2.*,7.13.*"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Control frames: ping and pong (§5.5): 12 of 12 pass"),
        "{text}"
    );
    assert!(text.contains("7.13.1   info"), "{text}");
    assert!(text.contains("[Autobahn 7.13.1]"), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("14 cases: 12 pass, 0 lenient, 2 info, 0 fail in "),
        "{last}"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_unreachable_server_is_exit_2() {
    let port = common::free_port();
    let out = check(&[&format!("ws://127.0.0.1:{port}/"), "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach"), "{err}");
}

// ---- echo servers that break one rule each ----

/// The one rule a test server breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// None: the baseline every other server is compared with.
    None,
    /// Text is echoed without checking it is UTF-8 (§8.1), close reasons too.
    NoUtf8Validation,
    /// A binary message is echoed as text (§5.6).
    BinaryAsText,
    /// Unmasked client frames are taken (§5.1).
    AcceptsUnmasked,
    /// A length of 126 is taken as the length, not as "16 bits follow" (§5.2).
    Len16As7,
    /// The close code is written back in the wrong byte order (§5.5.1).
    CloseCodeSwapped,
    /// RSV bits are ignored (§5.2).
    AcceptsRsv,
    /// A Ping makes it hang: no Pong, no Close, the socket left open (§5.5.2).
    HangsOnPing,
}

/// An echo server with `flaw`, on a loopback port, one thread per connection.
fn broken_echo(flaw: Flaw) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve(stream, flaw);
            });
        }
    });
    addr
}

const MAX: u64 = 16 << 20;

fn serve(mut s: TcpStream, flaw: Flaw) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_len = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                match upgrade(&req) {
                    Ok(accept) => s.write_all(
                        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes(),
                    )?,
                    Err(status) => {
                        s.write_all(format!("HTTP/1.1 {status}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())?;
                        return Ok(());
                    }
                }
                break len;
            }
            Ok(httparse::Status::Partial) if buf.len() < 8192 => {}
            _ => return Ok(()),
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    buf.drain(..head_len);
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let Some((h, size)) = header(&buf, flaw) else {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let broken = match h.violation(frame::Role::Client) {
            Some(frame::Violation::Unmasked) if flaw == Flaw::AcceptsUnmasked => None,
            Some(frame::Violation::Rsv(_)) if flaw == Flaw::AcceptsRsv => {
                Header { rsv: 0, ..h }.violation(frame::Role::Client)
            }
            Some(frame::Violation::NotMinimal(..)) => None,
            other => other,
        };
        if broken.is_some() {
            return fail(&mut s, 1002, flaw);
        }
        if h.len > MAX {
            return fail(&mut s, 1009, flaw);
        }
        let end = size + h.len as usize;
        while buf.len() < end {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut payload: Vec<u8> = buf.drain(..end).skip(size).collect();
        if let Some(key) = h.mask {
            frame::apply_mask(key, 0, &mut payload);
        }
        let utf8 = flaw != Flaw::NoUtf8Validation;
        match h.opcode {
            frame::PING if flaw == Flaw::HangsOnPing => {
                thread::sleep(Duration::from_secs(30));
                return Ok(());
            }
            frame::PING => send(&mut s, frame::PONG, &payload)?,
            frame::PONG => {}
            frame::CLOSE => {
                let reply = match payload.as_slice() {
                    [] => Vec::new(),
                    [_] => return fail(&mut s, 1002, flaw),
                    [a, b, reason @ ..] => {
                        let code = u16::from_be_bytes([*a, *b]);
                        if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                            return fail(&mut s, 1002, flaw);
                        }
                        if utf8 && std::str::from_utf8(reason).is_err() {
                            return fail(&mut s, 1007, flaw);
                        }
                        code_bytes(code, flaw).to_vec()
                    }
                };
                send(&mut s, frame::CLOSE, &reply)?;
                return end_tcp(&mut s);
            }
            frame::CONTINUATION => {
                let Some((opcode, so_far)) = message.as_mut() else {
                    return fail(&mut s, 1002, flaw);
                };
                so_far.extend_from_slice(&payload);
                if *opcode == frame::TEXT && utf8 && !could_be_utf8(so_far) {
                    return fail(&mut s, 1007, flaw);
                }
                if so_far.len() as u64 > MAX {
                    return fail(&mut s, 1009, flaw);
                }
                if let Some((opcode, whole)) = message.take_if(|_| h.fin)
                    && !echo(&mut s, opcode, &whole, flaw)?
                {
                    return Ok(());
                }
            }
            opcode => {
                if message.is_some() {
                    return fail(&mut s, 1002, flaw);
                }
                if opcode == frame::TEXT && utf8 && !could_be_utf8(&payload) {
                    return fail(&mut s, 1007, flaw);
                }
                if h.fin {
                    if !echo(&mut s, opcode, &payload, flaw)? {
                        return Ok(());
                    }
                } else {
                    message = Some((opcode, payload));
                }
            }
        }
    }
}

/// The frame header at the start of `buf`, as this server reads it.
fn header(buf: &[u8], flaw: Flaw) -> Option<(Header, usize)> {
    let (h, size) = Header::parse(buf)?;
    if flaw == Flaw::Len16As7 && h.length == Length::Bits16 {
        // The classic slip: 126 read as the length, the extended length read as
        // the first bytes of the masking key.
        let key: [u8; 4] = buf.get(2..6)?.try_into().ok()?;
        let h = Header {
            len: 126,
            length: Length::Bits7,
            mask: h.mask.map(|_| key),
            ..h
        };
        return Some((h, 6));
    }
    Some((h, size))
}

fn could_be_utf8(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn code_bytes(code: u16, flaw: Flaw) -> [u8; 2] {
    match flaw {
        Flaw::CloseCodeSwapped => code.to_le_bytes(),
        _ => code.to_be_bytes(),
    }
}

/// Echoes a whole message; `false` when it failed the connection instead.
fn echo(s: &mut TcpStream, opcode: u8, payload: &[u8], flaw: Flaw) -> std::io::Result<bool> {
    if opcode == frame::TEXT
        && flaw != Flaw::NoUtf8Validation
        && std::str::from_utf8(payload).is_err()
    {
        fail(s, 1007, flaw)?;
        return Ok(false);
    }
    let opcode = match (opcode, flaw) {
        (frame::BINARY, Flaw::BinaryAsText) => frame::TEXT,
        _ => opcode,
    };
    send(s, opcode, payload)?;
    Ok(true)
}

fn send(s: &mut TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&frame::encode(
        &Header::new(opcode, payload.len() as u64),
        payload,
    ))
}

/// Fails the connection: a Close with `code`, then the end of TCP.
fn fail(s: &mut TcpStream, code: u16, flaw: Flaw) -> std::io::Result<()> {
    send(s, frame::CLOSE, &code_bytes(code, flaw))?;
    end_tcp(s)
}

/// Closes our side first (RFC 6455 §7.1.1), then reads what is left until the
/// client hangs up, so that unread bytes do not turn our FIN into a reset.
fn end_tcp(s: &mut TcpStream) -> std::io::Result<()> {
    s.shutdown(Shutdown::Write)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
}

/// The opening handshake's checks (RFC 6455 §4.2.1): the accept value, or the
/// status line of the refusal.
fn upgrade(req: &httparse::Request) -> Result<String, &'static str> {
    let get = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let has = |name: &str, token: &str| {
        get(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if req.method != Some("GET") {
        return Err("405 Method Not Allowed");
    }
    if req.version != Some(1) || get("Host").is_none() {
        return Err("400 Bad Request");
    }
    if !has("Upgrade", "websocket") || !has("Connection", "upgrade") {
        return Err("426 Upgrade Required");
    }
    if get("Sec-WebSocket-Version").as_deref() != Some("13") {
        return Err("426 Upgrade Required");
    }
    let key = get("Sec-WebSocket-Key").ok_or("400 Bad Request")?;
    match data_encoding::BASE64.decode(key.trim().as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(tungstenite::handshake::derive_accept_key(
            key.trim().as_bytes(),
        )),
        _ => Err("400 Bad Request"),
    }
}

/// Everything but the 9.1 to 9.6 megabyte cases: the flaws show without them.
const QUICK: &str = "0.*,1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.7.*,9.8.*";

/// The verdicts of the flawless test server on the quick cases, run once.
fn baseline() -> &'static BTreeMap<String, (String, String)> {
    static BASELINE: std::sync::OnceLock<BTreeMap<String, (String, String)>> =
        std::sync::OnceLock::new();
    BASELINE.get_or_init(|| {
        let url = format!("ws://{}/", broken_echo(Flaw::None));
        let baseline = verdicts(&report(&url, &["--cases", QUICK, "--timeout", "2"]).1);
        assert!(
            baseline.values().all(|(v, _)| v != "fail"),
            "the flawless test server passes: {baseline:#?}"
        );
        baseline
    })
}

/// Runs the quick cases against a server with `flaw` and asserts that exactly
/// `expected` fail (ids, or prefixes ending in `.`), every failure's hint contains
/// `hint`, and every other case gets the verdict the flawless server gets.
fn assert_fails_exactly(flaw: Flaw, expected: &[&str], hint: &str) {
    assert_fails(flaw, expected, hint, false);
}

/// [`assert_fails_exactly`], where with `lenient_elsewhere` the other cases may also
/// be `lenient` (a flaw in every closing handshake shows in every case).
fn assert_fails(flaw: Flaw, expected: &[&str], hint: &str, lenient_elsewhere: bool) {
    let baseline = baseline();
    let (code, report) = report(
        &format!("ws://{}/", broken_echo(flaw)),
        &["--cases", QUICK, "--timeout", "1"],
    );
    let got = verdicts(&report);
    let is_expected = |id: &str| {
        expected
            .iter()
            .any(|e| id == *e || (e.ends_with('.') && id.starts_with(e)))
    };
    let mut wrong = Vec::new();
    for (id, (verdict, case_hint)) in &got {
        if is_expected(id) {
            if verdict != "fail" {
                wrong.push(format!("{id} should fail, got {verdict}"));
            } else if !case_hint.contains(hint) {
                wrong.push(format!("{id}'s hint does not say {hint:?}: {case_hint}"));
            }
        } else if lenient_elsewhere && verdict == "lenient" {
        } else if baseline.get(id).map(|b| &b.0) != Some(verdict) {
            wrong.push(format!(
                "{id} is {verdict} ({case_hint}), {:?} without the flaw",
                baseline.get(id)
            ));
        }
    }
    assert!(wrong.is_empty(), "{flaw:?}:\n{}", wrong.join("\n"));
    assert_eq!(code, 1, "some case failed: exit 1");
}

#[test]
fn no_utf8_validation_fails_the_invalid_utf8_cases() {
    // Every invalid sequence of 6.x (and the close reason of 7.5.1), nothing else.
    let invalid = [
        "6.3.", "6.4.", "6.6.1", "6.6.3", "6.6.4", "6.6.6", "6.6.8", "6.6.10", "6.8.", "6.10.",
        "6.11.5", "6.12.", "6.13.", "6.14.", "6.15.", "6.16.", "6.17.", "6.18.", "6.19.", "6.20.",
        "6.21.", "7.5.1",
    ];
    assert_fails_exactly(Flaw::NoUtf8Validation, &invalid, "§8.1");
}

#[test]
fn binary_echoed_as_text_fails_the_binary_cases() {
    let binary = [
        "1.2.", "1.3.1", "1.3.2", "1.3.3", "1.3.4", "1.4.7", "5.21", "8.2.", "8.3.1", "8.3.2",
        "9.8.",
    ];
    assert_fails_exactly(
        Flaw::BinaryAsText,
        &binary,
        "a binary message came back as text",
    );
}

#[test]
fn unmasked_frames_accepted_fails_the_masking_cases() {
    assert_fails_exactly(
        Flaw::AcceptsUnmasked,
        &["1.4.1", "1.4.2", "1.4.3", "1.4.4"],
        "RFC 6455 §5.1",
    );
}

#[test]
fn a_16_bit_length_read_as_7_bit_fails_the_16_bit_cases() {
    // Every case that sends a frame with a 16-bit length and expects it read.
    let sixteen = [
        "1.1.3", "1.1.4", "1.1.5", "1.1.6", "1.2.3", "1.2.4", "1.2.5", "1.2.6", "1.3.1", "1.3.4",
        "1.3.6", "8.1.2", "8.2.", "8.3.1", "9.7.4", "9.7.5", "9.7.6", "9.8.4", "9.8.5", "9.8.6",
    ];
    assert_fails_exactly(Flaw::Len16As7, &sixteen, "RFC 6455 §5.2, Payload length");
}

#[test]
fn a_close_code_in_the_wrong_byte_order_fails_the_close_code_cases() {
    let closing = [
        "5.24", "7.1.1", "7.1.2", "7.1.3", "7.1.4", "7.1.5", "7.3.2", "7.3.3", "7.3.4", "7.3.5",
        "7.3.6", "7.5.1", "7.7.", "7.9.", "7.14.4", "8.3.3",
    ];
    // Elsewhere an unexpected code is Autobahn's WRONG CODE: lenient, not failed.
    assert_fails(
        Flaw::CloseCodeSwapped,
        &closing,
        "the server's Close carried",
        true,
    );
}

#[test]
fn reserved_bits_accepted_fails_the_rsv_cases() {
    // Not 3.7: an RSV bit on an empty Close, answered with an empty Close, passes,
    // as in Autobahn (no close code is a code it accepts).
    let rsv = ["3.1", "3.2", "3.3", "3.4", "3.5", "3.6"];
    assert_fails_exactly(Flaw::AcceptsRsv, &rsv, "RSV bit");
}

#[test]
fn a_server_that_hangs_on_a_ping_fails_the_ping_cases_in_seconds() {
    let pings = [
        "2.1", "2.2", "2.3", "2.4", "2.6", "2.9", "2.10", "2.11", "2.12", "5.6", "5.7", "5.8",
        "5.19", "5.20",
    ];
    assert_fails_exactly(Flaw::HangsOnPing, &pings, "the server hangs");
}

#[test]
fn wss_is_checked_too() {
    let server = common::start_with(|b| b.tls_listen("127.0.0.1:0"));
    let port = server.tls_local_addr().expect("a TLS listener").port();
    let ca = common::certs().join("ca.pem");
    let url = format!("wss://localhost:{port}/ws/echo");
    let (code, report) = report(
        &url,
        &[
            "--ca",
            ca.to_str().expect("a UTF-8 path"),
            "--cases",
            "1.1.*,2.*,5.*",
        ],
    );
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(report["summary"]["total"], 8 + 12 + 24);
    assert_eq!(code, 0);
}

// ---- --serve: grading clients ----

/// `switchboard check --serve` on a free port, serving `cases`, writing reports
/// into `reports`; killed when dropped.
fn serve_cases(cases: &str, reports: &std::path::Path) -> (common::Running, String) {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "check",
            "--serve",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "2",
            "--cases",
            cases,
        ])
        .arg("--reports")
        .arg(reports)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("check --serve starts");
    let running = common::Running(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    common::eventually(|| TcpStream::connect(addr).ok());
    (running, format!("ws://127.0.0.1:{port}"))
}

/// The case loop of tungstenite's `examples/autobahn-client.rs`, as it is there,
/// with `echo` deciding what goes back for each message.
fn autobahn_client(base: &str, agent: &str, echo: fn(Message) -> Message) -> u32 {
    let (mut socket, _) =
        tungstenite::connect(format!("{base}/getCaseCount")).expect("getCaseCount");
    let count: u32 = socket
        .read()
        .expect("the count")
        .into_text()
        .expect("text")
        .as_str()
        .parse()
        .expect("a number");
    let _ = socket.close(None);
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let (mut socket, _) = tungstenite::connect(url).expect("runCase");
        // Not in the example: a bound on every read, so a bug fails the test.
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
            tcp.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("a timeout");
        }
        loop {
            match socket.read() {
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    if socket.send(echo(msg)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let (mut socket, _) =
        tungstenite::connect(format!("{base}/updateReports?agent={agent}")).expect("updateReports");
    let _ = socket.close(None);
    while socket.read().is_ok() {}
    count
}

/// The agent's JSON report, once `/updateReports` has written it.
fn agent_report(reports: &std::path::Path, agent: &str) -> Value {
    let path = reports.join(format!("{agent}.json"));
    let text = common::eventually(|| std::fs::read_to_string(&path).ok());
    serde_json::from_str(&text).expect("the report is JSON")
}

#[test]
fn serve_grades_tungstenites_client_on_autobahns_urls() {
    let reports = common::TempDir::new("check-reports");
    let (_serve, base) = serve_cases(QUICK, reports.path());
    let count = autobahn_client(&base, "Tungstenite", |msg| msg);
    let report = agent_report(reports.path(), "Tungstenite");
    assert!(count >= 150, "{count} cases");
    assert_eq!(
        report["summary"]["total"], count,
        "every case is in the report"
    );
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert!(reports.path().join("Tungstenite.txt").is_file());
    // The text report is the same as a server's.
    let (mut socket, _) =
        tungstenite::connect(format!("{base}/getCaseInfo?case=1")).expect("getCaseInfo");
    let info: Value =
        serde_json::from_str(socket.read().expect("info").to_text().expect("text")).expect("JSON");
    assert_eq!(info["id"], "1.1.1");
}

#[test]
fn serve_fails_a_client_that_echoes_binary_as_text_on_the_binary_cases() {
    let reports = common::TempDir::new("check-reports");
    let (_serve, base) = serve_cases(QUICK, reports.path());
    autobahn_client(&base, "broken", |msg| match msg {
        Message::Binary(b) => Message::text(String::from_utf8_lossy(&b).into_owned()),
        other => other,
    });
    let report = agent_report(reports.path(), "broken");
    let binary = [
        "1.2.1", "1.2.2", "1.2.3", "1.2.4", "1.2.5", "1.2.6", "1.2.7", "1.2.8", "1.3.1", "1.3.2",
        "1.3.3", "1.3.4", "1.4.7", "5.21", "8.2.1", "8.2.2", "8.2.3", "8.2.4", "8.3.1", "8.3.2",
        "9.8.1", "9.8.2", "9.8.3", "9.8.4", "9.8.5", "9.8.6",
    ];
    assert_eq!(failed(&report), binary, "{report:#}");
    for (id, (_, hint)) in verdicts(&report) {
        if binary.contains(&id.as_str()) {
            assert!(
                hint.contains("a binary message came back as text"),
                "{id}: {hint}"
            );
        }
    }
}

#[test]
fn serve_grades_switchboard_connect_on_the_cases_it_can_play() {
    // `connect` prints what it gets instead of echoing it: the cases where a client
    // answers pings, fails the connection on bad frames, and closes cleanly.
    let cases = "2.1,2.2,2.3,2.4,2.5,2.6,3.1,3.5,4.1.1,4.2.1,5.1,5.2,6.3.1,7.3.1,7.3.3,7.7.*,7.9.1";
    let reports = common::TempDir::new("check-reports");
    let (_serve, base) = serve_cases(cases, reports.path());
    let (mut socket, _) =
        tungstenite::connect(format!("{base}/getCaseCount")).expect("getCaseCount");
    let count: u32 = socket
        .read()
        .expect("the count")
        .to_text()
        .expect("text")
        .parse()
        .expect("a number");
    for case in 1..=count {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "connect",
                &format!("{base}/runCase?case={case}&agent=connect"),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("connect starts");
        // stdin stays open (its end would make connect close first) until it exits.
        let status = common::wait_exit(&mut child, Duration::from_secs(20));
        if status.is_none() {
            let _ = child.kill();
            panic!("connect did not end case {case}");
        }
    }
    let (mut socket, _) =
        tungstenite::connect(format!("{base}/updateReports?agent=connect")).expect("updateReports");
    let _ = socket.close(None);
    while socket.read().is_ok() {}
    let report = agent_report(reports.path(), "connect");
    assert_eq!(report["summary"]["total"], count);
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
}
