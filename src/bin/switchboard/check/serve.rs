//! `switchboard check --serve ADDR`: grade a WebSocket *client*. The catalogue runs
//! from the server's side (our frames unmasked, the client's checked for masks),
//! on the URLs of Autobahn|Testsuite's fuzzingserver, so a harness written for it
//! runs unchanged:
//!
//! - `/getCaseCount`: one text message, the number of cases;
//! - `/getCaseInfo?case=N`: one text message, `{"id": …, "description": …}`;
//! - `/runCase?case=N&agent=A`: case N (from 1) is played on this connection and
//!   its verdict kept for agent A; the client echoes every message it gets;
//! - `/getCaseStatus?case=N&agent=A`: `{"behavior": …}` for a case already run;
//! - `/updateReports?agent=A`: writes A's report, text and JSON, into the reports
//!   directory, and prints where.
//!
//! Each connection gets its own thread; the verdicts live in one map behind a lock,
//! held only to insert or to copy a report out.

use super::cases::{self, Case};
use super::client::Conn;
use super::report::{Report, Row, Verdict};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Verdicts so far, per agent, per case id.
type Results = Mutex<BTreeMap<String, BTreeMap<String, Row>>>;

struct Shared {
    /// Cases being played right now: a report waits for them (a client may ask for
    /// it while the server still grades the closing of its last case).
    playing: AtomicUsize,
    cases: Vec<Case>,
    results: Results,
    reports: PathBuf,
    timeout: Duration,
    started: Instant,
}

/// Serves the client cases on `addr` until the process is stopped.
pub(crate) fn run(
    addr: &str,
    reports: PathBuf,
    selection: &[String],
    timeout: Duration,
) -> ExitCode {
    let cases: Vec<Case> = cases::client_catalogue()
        .into_iter()
        .filter(|c| cases::selected(&c.id, selection))
        .collect();
    if cases.is_empty() {
        eprintln!(
            "switchboard check: no case matches --cases {}",
            selection.join(",")
        );
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("switchboard check: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_owned(), |a| a.to_string());
    println!(
        "switchboard check: grading clients on ws://{local}/ ({} cases); reports go to {}",
        cases.len(),
        reports.display()
    );
    let _ = std::io::stdout().flush();
    let shared = Arc::new(Shared {
        playing: AtomicUsize::new(0),
        cases,
        results: Mutex::new(BTreeMap::new()),
        reports,
        timeout,
        started: Instant::now(),
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("check-serve".to_owned())
            .spawn(move || serve(stream, &shared));
        if let Err(e) = spawned {
            eprintln!("switchboard check: cannot start a thread: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// What the client asked for, and what was wrong with how it asked.
struct Request {
    path: String,
    query: BTreeMap<String, String>,
    /// Rules of RFC 6455 §4.1 the request broke.
    problems: Vec<String>,
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(shared.timeout));
    let Some((request, key, rest)) = read_request(&mut stream) else {
        return;
    };
    let Some(key) = key else {
        let _ = stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut conn = Conn::server(stream, rest, shared.timeout);
    let number = |name: &str| {
        request
            .query
            .get(name)
            .and_then(|n| n.parse::<usize>().ok())
    };
    let case = number("case")
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| shared.cases.get(i));
    let agent = request
        .query
        .get("agent")
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    match request.path.as_str() {
        "/getCaseCount" => reply(conn, &shared.cases.len().to_string()),
        "/getCaseInfo" => match case {
            Some(c) => reply(
                conn,
                &serde_json::json!({"id": c.id, "description": c.title}).to_string(),
            ),
            None => refuse(conn, "no such case"),
        },
        "/getCaseStatus" => {
            let behaviour = case.and_then(|c| {
                let results = shared.results.lock().ok()?;
                results
                    .get(&agent)?
                    .get(&c.id)
                    .map(|row| behaviour(row.verdict))
            });
            match behaviour {
                Some(b) => reply(conn, &serde_json::json!({ "behavior": b }).to_string()),
                None => refuse(conn, "no such case run for this agent"),
            }
        }
        "/runCase" => match case {
            Some(c) => {
                shared.playing.fetch_add(1, Ordering::SeqCst);
                run_case(c, conn, &request, &agent, shared);
                shared.playing.fetch_sub(1, Ordering::SeqCst);
            }
            None => refuse(conn, "no such case"),
        },
        "/updateReports" => {
            // Bounded: the longest a case can take, twice over.
            let deadline = Instant::now() + shared.timeout * 30;
            while shared.playing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            let written = write_report(shared, &agent);
            match written {
                Ok(path) => println!(
                    "switchboard check: report for agent {agent:?}: {}",
                    path.display()
                ),
                Err(e) => {
                    eprintln!("switchboard check: cannot write the report for {agent:?}: {e}")
                }
            }
            conn.close(Some(1000), b"");
            conn.finish();
        }
        _ => refuse(conn, "unknown path"),
    }
}

fn run_case(case: &Case, conn: Conn, request: &Request, agent: &str, shared: &Shared) {
    let started = Instant::now();
    let mut outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        case.run_on(conn, shared.timeout)
    }))
    .unwrap_or_else(|_| {
        super::report::Outcome::new(
            Verdict::Fail,
            "the check itself failed",
            "a bug in switchboard check: please report it",
        )
    });
    if let Some(problem) = request.problems.first() {
        outcome.verdict = Verdict::Fail;
        outcome.hint = format!("the opening handshake: {problem}");
    }
    let row = case.row(outcome, started);
    if let Ok(mut results) = shared.results.lock() {
        results
            .entry(agent.to_owned())
            .or_default()
            .insert(row.id.clone(), row);
    }
}

/// Autobahn's name for a verdict, as `/getCaseStatus` reports it.
fn behaviour(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "OK",
        Verdict::Lenient => "NON-STRICT",
        Verdict::Info => "INFORMATIONAL",
        Verdict::Fail => "FAILED",
    }
}

/// One text message, then a clean close.
fn reply(mut conn: Conn, text: &str) {
    let bytes = conn.frame(
        switchboard::frame::Header::new(switchboard::frame::TEXT, text.len() as u64),
        text.as_bytes(),
    );
    conn.send(&bytes);
    conn.close(Some(1000), b"");
    conn.finish();
}

fn refuse(mut conn: Conn, why: &str) {
    conn.close(Some(1008), why.as_bytes());
    conn.finish();
}

/// Writes `agent`'s report as `<agent>.json` and `<agent>.txt`; returns the text one.
fn write_report(shared: &Shared, agent: &str) -> std::io::Result<PathBuf> {
    let rows: Vec<Row> = shared
        .results
        .lock()
        .map(|r| {
            r.get(agent)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let report = Report::new(
        format!("--serve, agent {agent}"),
        rows,
        shared.started.elapsed(),
    );
    std::fs::create_dir_all(&shared.reports)?;
    let name: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if name.is_empty() || name.starts_with('.') {
        format!("agent{name}")
    } else {
        name
    };
    let base = Path::new(&shared.reports).join(name);
    write_whole(&base.with_extension("json"), &(report.json() + "\n"))?;
    let text = base.with_extension("txt");
    write_whole(&text, &report.text(false))?;
    Ok(text)
}

/// Writes `path` whole or not at all: a reader never sees half a report.
fn write_whole(path: &Path, contents: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents)?;
    std::fs::rename(&partial, path)
}

/// Reads the request head; returns it, the client's key when it is a proper one,
/// and the bytes after the head.
fn read_request(stream: &mut TcpStream) -> Option<(Request, Option<String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let (request, key) = judge(&req);
                return Some((request, key, buf.get(len..).unwrap_or_default().to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => {}
            _ => return None,
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// The request's path and query, what it breaks of RFC 6455 §4.1, and its key if
/// that is 16 bytes in base64.
fn judge(req: &httparse::Request) -> (Request, Option<String>) {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let has = |name: &str, token: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| {
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .any(|t| t == token)
    };
    let mut problems = Vec::new();
    if req.method != Some("GET") {
        problems.push("the method must be GET: RFC 6455 §4.1, item 2".to_owned());
    }
    if req.version != Some(1) {
        problems.push("the request must be HTTP/1.1: RFC 6455 §4.1, item 2".to_owned());
    }
    if header("Host").is_none() {
        problems.push("a Host header is required: RFC 6455 §4.1, item 4".to_owned());
    }
    if !has("Upgrade", "websocket") {
        problems.push("`Upgrade: websocket` is required: RFC 6455 §4.1, item 5".to_owned());
    }
    if !has("Connection", "upgrade") {
        problems.push("Connection must hold the `Upgrade` token: RFC 6455 §4.1, item 6".to_owned());
    }
    if header("Sec-WebSocket-Version").as_deref() != Some("13") {
        problems.push("`Sec-WebSocket-Version: 13` is required: RFC 6455 §4.1, item 9".to_owned());
    }
    let key = header("Sec-WebSocket-Key").filter(|k| {
        data_encoding::BASE64
            .decode(k.as_bytes())
            .is_ok_and(|nonce| nonce.len() == 16)
    });
    if key.is_none() {
        problems.push(
            "Sec-WebSocket-Key must be 16 random bytes in base64: RFC 6455 §4.1, item 7".to_owned(),
        );
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), unescape(v)))
        .collect();
    (
        Request {
            path: path.to_owned(),
            query,
            problems,
        },
        key,
    )
}

/// A query value with `%XX` and `+` decoded (agent names such as `My%20Client`).
fn unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
