//! The opening handshake (RFC 6455 §4): what a well-formed upgrade gets, and what a
//! malformed one must not get. Autobahn|Testsuite has no such cases; each of these
//! talks HTTP itself and grades the answer.

use super::super::client::{Conn, Response, exchange_head, new_key};
use super::*;

/// The RFC's own example (§1.3): this key must be answered with this accept value.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub(super) fn cases() -> Vec<Case> {
    let upgrade = |n: u32, title: &str, rule: &str, probe: Probe| {
        Case::plain(format!("0.1.{n}"), Area::Handshake, "§4.2", title)
            .rule(rule)
            .probe(probe)
    };
    let refuse = |n: u32, title: &str, rule: &str, probe: Probe| {
        Case::plain(format!("0.2.{n}"), Area::Handshake, "§4.2.1", title)
            .rule(rule)
            .probe(probe)
    };
    vec![
        upgrade(
            1,
            "a well-formed upgrade gets 101 and the right Sec-WebSocket-Accept",
            "answer 101 with Upgrade: websocket, Connection: Upgrade and Sec-WebSocket-Accept = base64(SHA-1(key + \"258EAFA5-E914-47DA-95CA-C5AB0DC85B11\")): RFC 6455 §4.2.2",
            |t, d| accepts(t, d, &new_key(), "", None),
        ),
        upgrade(
            2,
            "the RFC's sample key gets the RFC's accept value",
            "the key dGhlIHNhbXBsZSBub25jZQ== is answered with s3pPLMBiTxaQ9kYGzzhZRbK+xOo= (RFC 6455 §1.3, §4.2.2)",
            |t, d| accepts(t, d, SAMPLE_KEY, "", None),
        ),
        upgrade(
            3,
            "header names in lower case",
            "header names are case-insensitive (RFC 7230 §3.2), so `upgrade: websocket` is an upgrade: RFC 6455 §4.2.1",
            |t, d| {
                let key = new_key();
                let request = format!(
                    "GET {} HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n",
                    t.path, t.host_header
                );
                raw_accepts(t, d, &request, &key, None)
            },
        ),
        upgrade(
            4,
            "Upgrade: WebSocket in mixed case, Connection: keep-alive, Upgrade",
            "the Upgrade value is case-insensitive and Connection is a token list: look for the `upgrade` token in it: RFC 6455 §4.2.1, items 3 and 4",
            |t, d| {
                let key = new_key();
                let request = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    t.path, t.host_header
                );
                raw_accepts(t, d, &request, &key, None)
            },
        ),
        upgrade(
            5,
            "the request sent one byte per write",
            "read the request until its blank line, whatever the reads bring: RFC 6455 §4.2.1, RFC 7230 §3",
            |t, d| {
                let key = new_key();
                raw_accepts(t, d, &t.request(&key, ""), &key, Some(1))
            },
        ),
        upgrade(
            6,
            "an unknown subprotocol offered: no Sec-WebSocket-Protocol in the answer",
            "select a subprotocol only from those the client offered, or none: RFC 6455 §4.2.2, item 5.5",
            |t, d| {
                offer(
                    t,
                    d,
                    "Sec-WebSocket-Protocol: x-switchboard-check\r\n",
                    "Sec-WebSocket-Protocol",
                    "x-switchboard-check",
                )
            },
        ),
        upgrade(
            7,
            "an unknown extension offered: no such extension in the answer",
            "accept only extensions the client offered and the server implements: RFC 6455 §4.2.2, item 5.6, §9.1",
            |t, d| {
                offer(
                    t,
                    d,
                    "Sec-WebSocket-Extensions: x-switchboard-check\r\n",
                    "Sec-WebSocket-Extensions",
                    "x-switchboard-check",
                )
            },
        ),
        upgrade(
            8,
            "the 101 is followed by frames on the same connection",
            "after the 101 the connection carries frames: the server reads the next bytes as a frame: RFC 6455 §4.2.2, §5",
            echo_after_upgrade,
        ),
        refuse(
            1,
            "Sec-WebSocket-Version: 25, a version nobody speaks (the RFC's own example)",
            "answer a version the server does not speak with 426 Upgrade Required and `Sec-WebSocket-Version: 13`: RFC 6455 §4.2.2, §4.4",
            wrong_version,
        ),
        refuse(
            2,
            "no Sec-WebSocket-Version",
            "Sec-WebSocket-Version: 13 is required; refuse the upgrade without it (400 or 426): RFC 6455 §4.2.1, item 6",
            |t, d| refused(t, d, &without(t, "Sec-WebSocket-Version")),
        ),
        refuse(
            3,
            "no Sec-WebSocket-Key",
            "Sec-WebSocket-Key is required; refuse the upgrade without it (400): RFC 6455 §4.2.1, item 5",
            |t, d| refused(t, d, &without(t, "Sec-WebSocket-Key")),
        ),
        refuse(
            4,
            "a Sec-WebSocket-Key that is not 16 bytes in base64",
            "the key base64-decodes to exactly 16 bytes; refuse any other (400): RFC 6455 §4.2.1, item 5",
            |t, d| refused(t, d, &t.request("c2hvcnQ=", "")),
        ),
        refuse(
            5,
            "no Upgrade header",
            "without `Upgrade: websocket` it is not an upgrade: do not answer 101 (400 or 426): RFC 6455 §4.2.1, item 3",
            |t, d| refused(t, d, &without(t, "Upgrade")),
        ),
        refuse(
            6,
            "Connection: keep-alive, without the upgrade token",
            "without the `upgrade` token in Connection it is not an upgrade: do not answer 101: RFC 6455 §4.2.1, item 4",
            |t, d| {
                refused(
                    t,
                    d,
                    &t.request(&new_key(), "")
                        .replace("Connection: Upgrade", "Connection: keep-alive"),
                )
            },
        ),
        refuse(
            7,
            "POST instead of GET",
            "the opening handshake is a GET: refuse any other method (405 or 400): RFC 6455 §4.2.1, item 1",
            |t, d| refused(t, d, &t.request(&new_key(), "").replacen("GET", "POST", 1)),
        ),
        refuse(
            8,
            "HTTP/1.0",
            "the opening handshake is HTTP/1.1 or later: refuse HTTP/1.0 (400): RFC 6455 §4.2.1, item 1",
            |t, d| {
                refused(
                    t,
                    d,
                    &t.request(&new_key(), "")
                        .replacen("HTTP/1.1", "HTTP/1.0", 1),
                )
            },
        ),
        refuse(
            9,
            "no Host header",
            "Host is required; refuse the upgrade without it (400): RFC 6455 §4.2.1, item 2, RFC 7230 §5.4",
            |t, d| refused(t, d, &without(t, "Host")),
        ),
    ]
}

/// The well-formed request without header `name`.
fn without(t: &Target, name: &str) -> String {
    let request = t.request(&new_key(), "");
    let prefix = format!("{name}:");
    request
        .split("\r\n")
        .filter(|line| !line.starts_with(&prefix))
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn exchange(
    t: &Target,
    d: Duration,
    request: &str,
    chop: Option<usize>,
) -> Result<(Response, Conn), String> {
    let mut stream = t.dial(d)?;
    let (response, rest) = exchange_head(&mut stream, request.as_bytes(), chop, d)?;
    Ok((response, Conn::after_handshake(stream, rest, d)))
}

fn accepts(t: &Target, d: Duration, key: &str, extra: &str, chop: Option<usize>) -> Outcome {
    raw_accepts(t, d, &t.request(key, extra), key, chop)
}

fn raw_accepts(t: &Target, d: Duration, request: &str, key: &str, chop: Option<usize>) -> Outcome {
    match exchange(t, d, request, chop) {
        Err(e) => Outcome::new(Verdict::Fail, e.clone(), ""),
        Ok((response, mut conn)) => {
            let seen = format!("{} {}", response.status, accept_of(&response));
            let outcome = match response.upgrade_problem(key) {
                Some(problem) => Outcome::new(Verdict::Fail, seen, problem),
                None => Outcome::new(Verdict::Pass, seen, ""),
            };
            conn.close(Some(1000), b"");
            conn.finish();
            outcome
        }
    }
}

fn accept_of(r: &Response) -> String {
    match r.header("Sec-WebSocket-Accept") {
        Some(a) => format!("with Sec-WebSocket-Accept {a}"),
        None => "without Sec-WebSocket-Accept".to_owned(),
    }
}

fn offer(t: &Target, d: Duration, extra: &str, header: &str, offered: &str) -> Outcome {
    let key = new_key();
    match exchange(t, d, &t.request(&key, extra), None) {
        Err(e) => Outcome::new(Verdict::Fail, e.clone(), ""),
        Ok((response, mut conn)) => {
            let outcome = if let Some(problem) = response.upgrade_problem(&key) {
                Outcome::new(Verdict::Fail, format!("{}", response.status), problem)
            } else {
                match response.header(header) {
                    None => Outcome::new(Verdict::Pass, format!("101 without {header}"), ""),
                    Some(v)
                        if v.split(',').all(|p| {
                            p.trim()
                                .split(';')
                                .next()
                                .is_some_and(|n| n.trim() == offered)
                        }) =>
                    {
                        Outcome::new(
                            Verdict::Lenient,
                            format!("101 with {header}: {v}"),
                            "the server accepted something it cannot know",
                        )
                    }
                    Some(v) => Outcome::new(
                        Verdict::Fail,
                        format!("101 with {header}: {v}"),
                        format!("the answer names {v:?}, which the client never offered"),
                    ),
                }
            };
            conn.close(Some(1000), b"");
            conn.finish();
            outcome
        }
    }
}

fn echo_after_upgrade(t: &Target, d: Duration) -> Outcome {
    let mut conn = match t.open(d) {
        Ok(conn) => conn,
        Err(e) => return Outcome::new(Verdict::Fail, e.clone(), e),
    };
    let hello = whole(frame::TEXT, b"right after the 101");
    conn.send(&hello);
    let deadline = Instant::now() + d;
    conn.pump(deadline, |c| !c.events.is_empty());
    let outcome = match conn.events.first() {
        Some(Event::Message {
            binary: false,
            payload,
        }) if payload == b"right after the 101" => {
            Outcome::new(Verdict::Pass, "the first message was echoed", "")
        }
        Some(other) => Outcome::new(
            Verdict::Fail,
            format!("received {other}"),
            "the echo differs",
        ),
        None => Outcome::new(
            Verdict::Fail,
            "no echo",
            format!("nothing within {:.0} s", d.as_secs_f64()),
        ),
    };
    conn.close(Some(1000), b"");
    conn.finish();
    outcome
}

fn wrong_version(t: &Target, d: Duration) -> Outcome {
    let request = t
        .request(&new_key(), "")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 25");
    match exchange(t, d, &request, None) {
        Err(e) => Outcome::new(
            Verdict::Lenient,
            e,
            "answer with an HTTP error instead of closing",
        ),
        Ok((r, mut conn)) => {
            let versions = r.header("Sec-WebSocket-Version").map(str::to_owned);
            let seen = format!(
                "{} {}",
                r.status,
                versions
                    .as_deref()
                    .map_or("without Sec-WebSocket-Version".to_owned(), |v| format!(
                        "with Sec-WebSocket-Version: {v}"
                    ))
            );
            let has_13 = versions
                .as_deref()
                .is_some_and(|v| v.split(',').any(|x| x.trim() == "13"));
            let outcome = match r.status {
                101 => Outcome::new(
                    Verdict::Fail,
                    seen,
                    "the server upgraded a request for version 25",
                ),
                426 if has_13 => Outcome::new(Verdict::Pass, seen, ""),
                400..=499 if has_13 => {
                    Outcome::new(Verdict::Lenient, seen, "426 Upgrade Required says it best")
                }
                _ => Outcome::new(
                    Verdict::Lenient,
                    seen,
                    "refused, but without saying which version the server speaks",
                ),
            };
            if r.status == 101 {
                conn.close(Some(1000), b"");
                conn.finish();
            }
            outcome
        }
    }
}

fn refused(t: &Target, d: Duration, request: &str) -> Outcome {
    match exchange(t, d, request, None) {
        Err(e) => Outcome::new(
            Verdict::Lenient,
            e,
            "refuse with an HTTP error status (400) that tells the client why",
        ),
        Ok((r, mut conn)) => {
            let seen = format!("{}", r.status);
            let outcome = match r.status {
                101 => Outcome::new(
                    Verdict::Fail,
                    "101 Switching Protocols",
                    "the server upgraded a request it must refuse",
                ),
                400..=499 => Outcome::new(Verdict::Pass, seen, ""),
                _ => Outcome::new(
                    Verdict::Lenient,
                    seen,
                    "refuse with a 4xx status: the request is at fault",
                ),
            };
            if r.status == 101 {
                conn.close(Some(1000), b"");
                conn.finish();
            }
            // A refusal may keep HTTP alive: hang up rather than wait.
            outcome
        }
    }
}
