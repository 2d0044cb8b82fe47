//! The tables of `README.md` and `docs/PROTOCOL.md`, each parsed from the Markdown and
//! compared with the code's own list, both ways: a status, close code, metric, error
//! code or error variant the code gains cannot go undocumented, and a documented one
//! the code dropped cannot stay in the docs. (The flag tables are compared with the
//! binary's `--help` in `tests/cli.rs`.)
//!
//! Where the code has no list of its own (the statuses a response is built with, the
//! variants of an enum), the list is read from the source, so that adding a call site
//! or a variant is enough to make the table wrong.

use std::collections::BTreeSet;

const README: &str = include_str!("../README.md");
const PROTOCOL: &str = include_str!("../docs/PROTOCOL.md");
const CARGO_TOML: &str = include_str!("../Cargo.toml");

/// The HTTP front, without the JSON API: its statuses are the README's refusal table.
const FRONT: [(&str, &str); 11] = [
    ("http/mod.rs", include_str!("http/mod.rs")),
    ("http/route.rs", include_str!("http/route.rs")),
    ("http/request.rs", include_str!("http/request.rs")),
    ("http/body.rs", include_str!("http/body.rs")),
    ("http/auth.rs", include_str!("http/auth.rs")),
    ("http/login.rs", include_str!("http/login.rs")),
    ("http/host.rs", include_str!("http/host.rs")),
    ("http/forwarded.rs", include_str!("http/forwarded.rs")),
    ("http/qr.rs", include_str!("http/qr.rs")),
    ("listener/pool.rs", include_str!("listener/pool.rs")),
    ("server.rs", include_str!("server.rs")),
];
const API: &str = include_str!("http/api.rs");
const HTTP_MOD: &str = include_str!("http/mod.rs");

/// What tungstenite itself answers a client's Close whose code RFC 6455 does not
/// allow (999, 1005, 1014, …): it queues the reply before the frame loop sees the
/// Close. `tests/conformance.rs` checks the bytes on the wire.
const TUNGSTENITE_BAD_CLOSE_ANSWER: (u16, &str) = (1002, "Protocol violation");

/// The rows of the one table of `doc` whose header row is `header` (compared after
/// trimming, so an indented table is found too): each row its cells, trimmed, `\|`
/// unescaped.
fn table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = doc.lines().map(str::trim).collect();
    let starts: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == header).collect();
    assert_eq!(
        starts.len(),
        1,
        "one table headed {header:?}, found {starts:?}"
    );
    let start = starts[0];
    assert!(
        lines.get(start + 1).is_some_and(|l| l.starts_with("| ---")),
        "the header {header:?} is followed by its separator row"
    );
    let width = cells(header).len();
    let rows: Vec<Vec<String>> = lines[start + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let row = cells(l);
            assert_eq!(row.len(), width, "cells of {l:?} under {header:?}");
            row
        })
        .collect();
    assert!(!rows.is_empty(), "the table headed {header:?} has rows");
    rows
}

/// The cells of one table row.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let inner = line
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
        .unwrap_or(line);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        let cell = out.last_mut().expect("never empty");
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => cell.push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The code spans (`` `…` ``) of a piece of Markdown.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The one code span a cell must be.
fn span(cell: &str) -> &str {
    match spans(cell)[..] {
        [one] if cell.starts_with('`') && cell.ends_with('`') => one,
        _ => panic!("the cell {cell:?} is one code span"),
    }
}

/// A status cell: `` `403` ``.
fn status(cell: &str) -> u16 {
    span(cell)
        .parse()
        .unwrap_or_else(|_| panic!("{cell:?} is a status"))
}

/// `source` without its unit tests.
fn without_tests(source: &str) -> &str {
    source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(source)
}

/// Every status `source` builds a response with: the first argument of
/// `Response::new`, `Response::text`, `api::error`, `reject`, `json_response`, a
/// `(status, Rejection::…)` pair, and a status line written out by hand.
fn statuses_in(source: &str) -> BTreeSet<u16> {
    let source = without_tests(source);
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices('(') {
        let callee = source[..at]
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let Some((status, rest)) = leading_status(&source[at + 1..]) else {
            continue;
        };
        let call = matches!(
            callee,
            "new" | "text" | "error" | "reject" | "json_response"
        ) && (rest.starts_with(',') || rest.starts_with(')'));
        let refusal = callee.is_empty()
            && rest
                .strip_prefix(',')
                .is_some_and(|r| r.trim_start().starts_with("Rejection::"));
        if call || refusal {
            found.insert(status);
        }
    }
    for (at, _) in source.match_indices("HTTP/1.1 ") {
        if let Some((status, _)) = leading_status(&source[at + "HTTP/1.1 ".len()..]) {
            found.insert(status);
        }
    }
    found
}

/// A three-digit status at the start of `text` (after blanks), and what follows it
/// (from its next non-blank character).
fn leading_status(text: &str) -> Option<(u16, &str)> {
    let text = text.trim_start();
    let digits = text.get(..3)?;
    let rest = &text[3..];
    if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let status: u16 = digits.parse().ok()?;
    (100..600)
        .contains(&status)
        .then(|| (status, rest.trim_start()))
}

/// Every `(status, code)` that `source` answers with `error(status, "code", …)`.
fn api_errors_in(source: &str) -> BTreeSet<(u16, String)> {
    let source = without_tests(source);
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("error(") {
        let Some((status, rest)) = leading_status(&source[at + "error(".len()..]) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(',') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        if let Some((code, _)) = rest.split_once('"') {
            found.insert((status, code.to_owned()));
        }
    }
    found
}

/// The variant names of the enum `source` declares with the line `declaration`.
fn variants(source: &str, declaration: &str) -> Vec<String> {
    let body = source
        .split_once(&format!("{declaration}\n"))
        .and_then(|(_, rest)| rest.split_once("\n}\n"))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("no `{declaration}` in the source"));
    body.lines()
        .filter_map(|line| line.strip_prefix("    "))
        .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|line| {
            line.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        })
        .collect()
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items
}

#[test]
fn the_chat_error_table_is_every_error_code() {
    use crate::chat::ErrorCode;
    let names: Vec<String> = ErrorCode::ALL.iter().map(|c| format!("{c:?}")).collect();
    assert_eq!(
        sorted(&names),
        sorted(&variants(
            include_str!("chat.rs"),
            "pub(crate) enum ErrorCode {"
        )),
        "ErrorCode::ALL holds every variant"
    );
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| serde_json::to_value(c).map_or_else(|e| e.to_string(), |v| v.to_string()))
        .map(|json| json.trim_matches('"').to_owned())
        .collect();
    let documented: Vec<String> = table(PROTOCOL, "| `code` | when |")
        .iter()
        .map(|row| span(&row[0]).to_owned())
        .collect();
    assert_eq!(
        sorted(&documented),
        sorted(&codes),
        "docs/PROTOCOL.md, Errors"
    );
}

#[test]
fn the_api_table_is_every_api_status_and_error_code() {
    let mut sent = api_errors_in(API);
    // The guard answers an `/api` read without the password itself.
    sent.extend(api_errors_in(HTTP_MOD));
    let mut documented = BTreeSet::new();
    for row in table(PROTOCOL, "| status | `error` | when |") {
        let status = status(&row[0]);
        for code in spans(&row[1]) {
            assert!(
                documented.insert((status, code.to_owned())),
                "{status} {code} twice"
            );
        }
    }
    assert_eq!(documented, sent, "docs/PROTOCOL.md, HTTP API");
}

#[test]
fn the_refusal_table_is_every_status_the_front_refuses_with() {
    let sent: BTreeSet<u16> = FRONT
        .iter()
        .flat_map(|(_, source)| statuses_in(source))
        .filter(|&s| s >= 400)
        .collect();
    let rows = table(README, "| status | when |");
    let documented: BTreeSet<u16> = rows.iter().map(|row| status(&row[0])).collect();
    assert_eq!(documented.len(), rows.len(), "one row per status");
    assert_eq!(documented, sent, "README, the refusal table");
}

#[test]
fn every_status_sent_has_its_reason_phrase() {
    let known: BTreeSet<u16> = crate::http::response::STATUSES
        .iter()
        .map(|(s, _)| *s)
        .collect();
    for (file, source) in FRONT.iter().chain([&("http/api.rs", API)]) {
        for status in statuses_in(source) {
            assert!(
                known.contains(&status),
                "{file} answers {status}, which has no reason phrase in http/response.rs"
            );
        }
    }
    let line = crate::http::response::Response::new(421).to_bytes();
    assert!(line.starts_with(b"HTTP/1.1 421 Misdirected Request\r\n"));
    // Every status documented anywhere is one the server knows how to send.
    for status in table(README, "| status | when |")
        .iter()
        .chain(&table(PROTOCOL, "| status | `error` | when |"))
        .map(|row| status(&row[0]))
    {
        assert!(known.contains(&status), "{status} is documented, not known");
    }
}

#[test]
fn the_scan_finds_every_kind_of_status_site() {
    let source = r#"
        Response::text(503, reason).header("Retry-After", "1"),
        return reject(
            405,
            Rejection::MethodNotAllowed,
        HeadError::TooLarge => (
            431,
            Rejection::HeadTooLarge,
        let _ = stream.write(b"HTTP/1.1 418 Teapot\r\n");
        json_response(201, &value)
        error(409, "name_taken", "taken")
        Duration::from_secs(100), vec![0; 256], Response::new(status), (1024, x)
    "#;
    assert_eq!(
        statuses_in(source),
        BTreeSet::from([201, 405, 409, 418, 431, 503])
    );
    assert_eq!(
        api_errors_in(source),
        BTreeSet::from([(409, "name_taken".to_owned())])
    );
}

/// The `(code, reason text)` rows of a close-code table.
fn close_rows(doc: &str, header: &str) -> BTreeSet<(u16, String)> {
    table(doc, header)
        .iter()
        .map(|row| {
            let code = row[0]
                .parse()
                .unwrap_or_else(|_| panic!("{:?} is a close code", row[0]));
            (code, span(&row[1]).to_owned())
        })
        .collect()
}

#[test]
fn the_close_code_tables_are_every_close_the_server_sends() {
    use crate::connection::{SENT_CLOSE_CODES, close_reason_text};
    let source = without_tests(include_str!("connection/mod.rs"));
    // By variant: `Library(4001)` is listed as `Library`.
    let listed: BTreeSet<String> = SENT_CLOSE_CODES
        .iter()
        .map(|c| {
            format!("{c:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for (at, _) in source.match_indices("CloseCode::") {
        let name: String = source[at + "CloseCode::".len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(
            listed.contains(&name),
            "connection/mod.rs sends CloseCode::{name}, missing from SENT_CLOSE_CODES"
        );
    }
    let mut sent: BTreeSet<(u16, String)> = SENT_CLOSE_CODES
        .iter()
        .map(|&c| (u16::from(c), close_reason_text(c).to_owned()))
        .collect();
    let (code, reason) = TUNGSTENITE_BAD_CLOSE_ANSWER;
    sent.insert((code, reason.to_owned()));
    assert_eq!(
        close_rows(README, "| code | reason text | why |"),
        sent,
        "README, close codes"
    );
    assert_eq!(
        close_rows(PROTOCOL, "| code | reason text | when |"),
        sent,
        "docs/PROTOCOL.md, close codes"
    );
}

#[test]
fn the_metrics_tables_are_what_metrics_prints() {
    let metrics = crate::metrics::Metrics::new();
    // A cluster node prints everything a single server does, and the Redis figures.
    metrics
        .clustered
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let out = metrics.prometheus();
    let printed: BTreeSet<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let documented: BTreeSet<(String, String)> =
        table(README, "| metric | type | what it counts |")
            .iter()
            .map(|row| {
                let name = span(&row[0]);
                let name = name.split_once('{').map_or(name, |(name, _)| name);
                (name.to_owned(), row[1].clone())
            })
            .collect();
    assert_eq!(documented, printed, "README, the metrics table");

    let reasons: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("switchboard_handshake_failures_total{reason=\""))
        .filter_map(|l| l.split_once('"'))
        .map(|(reason, _)| reason)
        .collect();
    let rows = table(README, "| `reason` label | when |");
    let documented: BTreeSet<&str> = rows.iter().map(|row| span(&row[0])).collect();
    assert_eq!(documented, reasons, "README, the reason label table");
}

/// `doc` with every run of whitespace made one space, so that a sentence is found
/// wherever its lines break.
fn prose(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_embedding_section_names_every_error_variant() {
    let readme = prose(README);
    let (_, rest) = readme
        .split_once("fails with `switchboard::Error`:")
        .expect("the README says what start() fails with");
    let (list, _) = rest.split_once("with the cause").expect("end of the list");
    let documented: Vec<String> = spans(list).into_iter().map(str::to_owned).collect();
    assert_eq!(
        sorted(&documented),
        sorted(&variants(include_str!("error.rs"), "pub enum Error {")),
        "README, Embedding as a library"
    );
}

#[test]
fn the_embedding_section_names_every_dependency_the_cli_feature_brings() {
    let features = CARGO_TOML
        .split_once("\ncli = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("Cargo.toml has a cli feature");
    let deps: Vec<String> = features
        .split(',')
        .filter_map(|f| f.trim().trim_matches('"').strip_prefix("dep:"))
        .map(str::to_owned)
        .collect();
    let readme = prose(README);
    let (_, rest) = readme
        .split_once("default-features = false }` leaves out the")
        .expect("the README says what default-features = false leaves out");
    let list = rest
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list)
        .expect("a list in parentheses");
    let documented: Vec<String> = list.split(',').map(|d| d.trim().to_owned()).collect();
    assert_eq!(
        sorted(&documented),
        sorted(&deps),
        "README, default-features"
    );
}

#[test]
fn the_leave_reason_table_is_every_reason_a_leave_can_give() {
    // `as_str`'s match is exhaustive, so its arms are every variant's reason.
    let chat = without_tests(include_str!("chat.rs"));
    let (_, arms) = chat
        .split_once("pub(crate) fn as_str(self) -> &'static str {")
        .expect("LeaveReason::as_str");
    let (arms, _) = arms.split_once("\n    }\n").expect("the end of as_str");
    let mut sent: BTreeSet<String> = arms
        .split("LeaveReason::")
        .skip(1)
        .filter_map(|arm| arm.split('"').nth(1))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        sent.len(),
        variants(chat, "pub(crate) enum LeaveReason {").len(),
        "one reason per variant"
    );
    // A cluster node's members are also forgotten by the Redis scripts.
    let scripts = include_str!("cluster/scripts.rs");
    for (at, _) in scripts.match_indices("forget(key, '") {
        let rest = &scripts[at + "forget(key, '".len()..];
        if let Some((reason, _)) = rest.split_once('\'') {
            sent.insert(reason.to_owned());
        }
    }
    let documented: BTreeSet<String> = table(PROTOCOL, "| `reason` | when |")
        .iter()
        .map(|row| span(&row[0]).to_owned())
        .collect();
    assert_eq!(documented, sent, "docs/PROTOCOL.md, leave reasons");
}

/// `n` with a comma every three digits, as the tables write it: `10,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` bytes as the tables write a size: `8 MiB`, `8 KiB`.
fn size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n.is_multiple_of(1024) => format!("{} KiB", n >> 10),
        n => thousands(n),
    }
}

#[test]
fn the_limits_tables_give_the_config_defaults() {
    let c = crate::config::Config::default();
    let ping = c.ping_interval.as_secs();
    let budget = format!(
        "{}, then one every {} s",
        crate::doors::signin::BURST,
        crate::doors::signin::EVERY_SECS
    );
    // Each row's first words, and what its default cell must hold. A row the list
    // does not know fails the test, so a new limit gets a value to check.
    let ends = format!(
        "{}, then one every {} s",
        crate::doors::signin::END_BURST,
        crate::doors::signin::END_EVERY_SECS
    );
    let readme: [(&str, String); 13] = [
        (
            "connections",
            format!(
                "{} / {}",
                thousands(c.max_connections),
                c.max_connections_per_ip
            ),
        ),
        (
            "request head",
            format!(
                "{}, within {} s",
                size(crate::head::MAX_HEAD),
                c.handshake_timeout.as_secs()
            ),
        ),
        ("message or frame", size(c.max_message_size)),
        (
            "chat text",
            format!(
                "{} ({} bytes of UTF-8)",
                size(c.max_text_len),
                thousands(c.max_text_len)
            ),
        ),
        (
            "chat requests",
            format!("{} per second, bursts of {}", c.rate_per_sec, c.rate_burst),
        ),
        ("wrong passwords", budget.clone()),
        ("a `POST /login` body", String::new()),
        ("sessions ended", ends),
        ("rooms with stored messages", thousands(c.max_rooms)),
        ("new rooms started", String::new()),
        ("`GET /api/rooms` page", String::new()),
        (
            "outbox",
            format!(
                "{} messages or {}",
                thousands(c.outbox_messages),
                size(c.outbox_bytes)
            ),
        ),
        ("silence", format!("{ping} s, then Ping; {ping} s more")),
    ];
    let rows = table(README, "| limit | default | when exceeded |");
    assert_eq!(rows.len(), readme.len(), "README, limits: a row per entry");
    for (row, (start, default)) in rows.iter().zip(&readme) {
        assert!(row[0].starts_with(start), "README limits row {row:?}");
        // An empty value: the limit is a constant of its module, not a setting.
        assert!(
            row[1].starts_with(default.as_str()),
            "README limits {row:?}"
        );
    }

    let protocol: [(&str, String); 6] = [
        (
            "chat text",
            format!("{} bytes of UTF-8", thousands(c.max_text_len)),
        ),
        (
            "name",
            format!("{} characters", crate::chat::MAX_NAME_CHARS),
        ),
        (
            "room name",
            format!("{} characters", crate::chat::MAX_ROOM_LEN),
        ),
        (
            "chat requests",
            format!(
                "{} per second sustained, bursts of {}",
                c.rate_per_sec, c.rate_burst
            ),
        ),
        ("one message or frame", size(c.max_message_size)),
        (
            "outbox",
            format!(
                "{} messages or {}",
                thousands(c.outbox_messages),
                size(c.outbox_bytes)
            ),
        ),
    ];
    let rows = table(PROTOCOL, "| what | limit | over it |");
    assert_eq!(rows.len(), protocol.len(), "PROTOCOL, limits: a row each");
    for (row, (start, limit)) in rows.iter().zip(&protocol) {
        assert!(row[0].starts_with(start), "PROTOCOL limits row {row:?}");
        assert!(
            row[1].starts_with(limit.as_str()),
            "PROTOCOL limits {row:?}"
        );
    }
}

#[test]
fn thousands_and_sizes_read_as_the_tables_write_them() {
    assert_eq!(thousands(10_000), "10,000");
    assert_eq!(thousands(256), "256");
    assert_eq!(thousands(100_000), "100,000");
    assert_eq!(size(8 << 20), "8 MiB");
    assert_eq!(size(8 * 1024), "8 KiB");
}
