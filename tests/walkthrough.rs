//! docs/how-it-works.md tells the truth: its output blocks are what the binary prints
//! for the session the doc describes, its links lead somewhere, and it cites nothing
//! the reader does not have.
//!
//! The test runs the doc's own commands (the server with `--trace-plain`, then
//! `switchboard connect` for alice, then a second `connect` watching her wire),
//! types what the doc says to type (a picture, `/file docs/pixel.png`, among it), runs
//! the doc's `curl` commands for that picture, and compares every block marked
//! `<!-- walkthrough: NAME -->` with the lines the run printed, both sides normalised
//! the same way: times, ports, connection ids, masking keys, `Sec-WebSocket-Key` and
//! `-Accept`, the epoch, timestamps and the picture's file id vary from run to run;
//! nothing else may.
//!
//! A mismatch fails with a diff. To refresh the doc from a real run instead:
//!
//! ```sh
//! SWITCHBOARD_REGENERATE_DOCS=1 cargo test --test walkthrough
//! ```

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long any step of the session may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The port the doc's commands use; the test's real port is shown as this one.
const DOC_PORT: u16 = 3000;

/// The environment variable that makes the test rewrite the doc's blocks.
const REGENERATE: &str = "SWITCHBOARD_REGENERATE_DOCS";

/// The WebSocket GUID of RFC 6455 §1.3, as the doc's `openssl` check spells it out.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn doc_path() -> PathBuf {
    root().join("docs/how-it-works.md")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    // The doc's commands run with no RUST_LOG: the default filter.
    command.env_remove("RUST_LOG");
    // From the repository's root, as the reader does: `/file docs/pixel.png` is there.
    command.current_dir(root());
    command
}

// ---- processes and their output ----

/// The lines of one pipe, read on a thread of its own, kept as they come.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
    closed: bool,
}

impl Lines {
    fn of(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            closed: false,
        }
    }

    /// Waits for a line containing `needle`, and returns it.
    fn wait_for(&mut self, needle: &str, what: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{what}: no line with {needle:?} within {TIMEOUT:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Takes in every line until the pipe closes (the process exited), or until
    /// `limit` passed.
    fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.closed = true,
                Err(mpsc::RecvTimeoutError::Timeout) => return,
            }
        }
    }
}

/// A running `switchboard …`, killed when dropped.
struct Proc {
    running: Running,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut command = binary();
        command.args(args);
        Proc::start(command)
    }

    fn start(mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let stdout = Lines::of(child.stdout.take().expect("piped"));
        let stderr = Lines::of(child.stderr.take().expect("piped"));
        Proc {
            stdin: child.stdin.take(),
            running: Running(child),
            stdout,
            stderr,
        }
    }

    /// Types one line, as into a terminal.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Ctrl-D: ends the input; waits for the process to exit and takes in what it
    /// printed.
    fn ctrl_d(&mut self, what: &str) {
        self.stdin = None;
        let status = wait_exit(&mut self.running.0, TIMEOUT);
        assert!(status.is_some(), "{what} did not exit after Ctrl-D");
        self.stdout.finish(TIMEOUT);
        self.stderr.finish(TIMEOUT);
    }
}

/// Whether `line` starts with a time of day, `01:49:41.672 `: a trace line of
/// `--trace-plain`, or a line `connect` printed about a message.
fn is_timed(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 13
        && b[..12].iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            8 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
        && b[12] == b' '
}

/// What one run of the walkthrough printed.
#[derive(Debug)]
struct Run {
    /// The server's trace of alice's connection.
    server: Vec<String>,
    /// Alice's client: its trace, and how it ended.
    client: Vec<String>,
    /// What alice's client printed of the messages it received: one a line, whole.
    received: Vec<String>,
    /// The wire viewer's output: one event a line.
    wire: Vec<String>,
    /// A trace line as `--trace` prints it, with the log prefix.
    prefixed: Vec<String>,
    /// What each of the doc's `curl` commands printed, in the doc's order, its line
    /// ends without `\r` and its blank line dropped; `None` without curl.
    http: Option<Vec<Vec<String>>>,
    /// The server's real port, shown as [`DOC_PORT`].
    port: u16,
}

/// The session of the doc: alice joins, a viewer watches her wire, she types the
/// doc's lines one after another (each once the answer to the one before came),
/// then Ctrl-D; then the doc's `curl` commands ask for her picture.
fn run_walkthrough(curls: &[String]) -> Run {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(&[
        "--listen",
        &listen,
        "--no-tls",
        "--no-persist",
        "--trace-plain",
    ]);
    server
        .stdout
        .wait_for("Press Ctrl-C", "the server's banner");

    let url = format!("ws://127.0.0.1:{port}/ws/chat?name=alice");
    let mut alice = Proc::spawn(&["connect", &url, "--trace-plain"]);
    let welcome = alice
        .stdout
        .wait_for("\"type\":\"welcome\"", "alice's welcome");
    let json = welcome.split_once("< ").map(|(_, j)| j).unwrap_or_default();
    let welcome: serde_json::Value = serde_json::from_str(json).expect("a JSON welcome");
    let id = welcome["wire"]["id"].as_u64().expect("a wire id");
    let key = welcome["wire"]["key"].as_str().expect("a wire key");

    let wire_url = format!("ws://127.0.0.1:{port}/ws/wire/{id}");
    let protocols = format!("switchboard-wire,switchboard-wire.{key}");
    let mut viewer = Proc::spawn(&["connect", &wire_url, "--protocol", &protocols]);
    // The replayed handshake ends with the Accept: from here on it is live.
    viewer
        .stdout
        .wait_for("Sec-WebSocket-Accept", "the viewer's replay");

    let steps = [
        ("hi everyone".to_owned(), "\"text\":\"hi everyone\""),
        ("/ping are you there".to_owned(), "pong \"are you there\""),
        ("/binary 00ff10".to_owned(), "bad_file"),
        ("0".repeat(300), "\"id\":2"),
        (
            "/frag 3 Hello, fragments".to_owned(),
            "\"text\":\"Hello, fragments\"",
        ),
        (PICTURE_LINE.to_owned(), r#""name":"pixel.png""#),
    ];
    for (line, answer) in &steps {
        alice.type_line(line);
        alice.stdout.wait_for(answer, "alice's answer");
    }
    alice.ctrl_d("alice's client");
    // The watched connection ended: the server ends the viewer's stream.
    viewer
        .stdout
        .wait_for("\"event\":\"closed\"", "the end of alice's wire");
    viewer.ctrl_d("the wire viewer");

    let open = server
        .stderr
        .wait_for("<- GET /ws/chat?name=alice", "the server's trace of alice");
    let label = open
        .get(13..)
        .and_then(|rest| rest.split_once(" <- "))
        .map(|(label, _)| format!("{label} "))
        .expect("a trace label");
    server.stderr.wait_for(
        &format!("{label}TCP connection closed"),
        "the server's trace",
    );
    let server_lines = server
        .stderr
        .seen
        .iter()
        .filter(|l| is_timed(l) && l[13..].starts_with(&label))
        .cloned()
        .collect();
    let client = alice
        .stderr
        .seen
        .iter()
        .filter(|l| is_timed(l) || l.starts_with("closed: "))
        .cloned()
        .collect();
    let wire = viewer
        .stdout
        .seen
        .iter()
        .filter(|l| is_timed(l))
        .cloned()
        .collect();
    let received: Vec<String> = alice
        .stdout
        .seen
        .iter()
        .filter(|l| is_timed(l))
        .cloned()
        .collect();
    let file_id = received
        .iter()
        .find_map(|l| l.split_once(r#""file":{"id":""#))
        .and_then(|(_, rest)| rest.get(..FILE_ID_LEN))
        .expect("alice's picture came back with its id")
        .to_owned();
    // The server still serves the picture: alice left, her message stays.
    let http = tool_or_skip(
        "the_walkthroughs_output_is_what_the_binary_prints (its curl blocks)",
        "curl",
        "SWITCHBOARD_REQUIRE_TOOLS",
    )
    .map(|_| {
        curls
            .iter()
            .map(|command| run_shell(&as_run(command, port, &file_id)))
            .collect()
    });
    drop(server);

    Run {
        server: server_lines,
        client,
        received,
        wire,
        prefixed: prefixed_trace_line(),
        http,
        port,
    }
}

/// What alice types to share the doc's picture.
const PICTURE_LINE: &str = "/file docs/pixel.png";

/// A file id: 128 random bits as 32 hex digits.
const FILE_ID_LEN: usize = 32;

/// The doc's `curl` commands: the lines of its `sh` blocks that start with `curl `.
fn curl_commands(doc: &[&str]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in doc {
        let line = line.trim();
        if let Some(info) = line.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
        } else if in_sh && line.starts_with("curl ") {
            commands.push(line.to_owned());
        }
    }
    commands
}

/// A doc's command as the test runs it: against the real port, for the real file.
fn as_run(command: &str, port: u16, file_id: &str) -> String {
    let mut command = command.replace(
        &format!("127.0.0.1:{DOC_PORT}"),
        &format!("127.0.0.1:{port}"),
    );
    for shown in file_ids(&command.clone()) {
        command = command.replace(shown, file_id);
    }
    command
}

/// Runs `command` through `sh`, and returns the lines it printed (without `\r`, and
/// without blank lines: the one that ends an HTTP head).
fn run_shell(command: &str) -> Vec<String> {
    let mut sh = Command::new("sh");
    sh.args(["-c", command]).current_dir(root());
    let mut proc = Proc::start(sh);
    proc.stdin = None;
    let status = wait_exit(&mut proc.running.0, TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "`{command}` failed: {status:?}"
    );
    proc.stdout.finish(TIMEOUT);
    proc.stdout
        .seen
        .iter()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Every file id in `text`: 32 hex digits after `/files/`, `"id":"`, or the quote
/// of an `ETag` or `If-None-Match`.
fn file_ids(text: &str) -> Vec<&str> {
    let mut ids = Vec::new();
    for marker in ["/files/", r#""id":""#, r#"ETag: ""#, r#"If-None-Match: ""#] {
        for (at, _) in text.match_indices(marker) {
            let id = text.get(at + marker.len()..at + marker.len() + FILE_ID_LEN);
            if let Some(id) = id.filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit())) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The first trace line of a server started with `--trace`, as it prints it.
fn prefixed_trace_line() -> Vec<String> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(&["--listen", &listen, "--no-tls", "--no-persist", "--trace"]);
    server
        .stdout
        .wait_for("Press Ctrl-C", "the server's banner");
    let _tcp = tcp(format!("127.0.0.1:{port}").parse().expect("an address"));
    let line = server
        .stderr
        .wait_for("TCP connection open", "the --trace line");
    vec![line]
}

// ---- the doc's blocks ----

/// Where a block's lines come from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Server,
    Client,
    /// Alice's client's messages, as it prints them.
    Received,
    Wire,
    Prefixed,
    /// The output of the doc's `curl` command number N (from 0).
    Http(usize),
}

/// Which lines of a source a block shows.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// Every line containing all of these, in order.
    Each(Source, &'static [&'static str]),
    /// From the first line containing the first, to the next containing the second.
    Range(Source, &'static str, &'static str),
    /// Every line.
    All(Source),
}

impl Pick {
    fn source(&self) -> Source {
        match *self {
            Each(source, _) | Range(source, _, _) | All(source) => source,
        }
    }
}

use Pick::{All, Each, Range};
use Source::{Client, Http, Prefixed, Received, Server, Wire};

/// The PNG signature (its first 8 bytes), as a trace shows a binary payload.
const PNG_HEX: &str = "[89 50 4e 47 0d 0a 1a 0a";

/// Every block of the doc, by its marker's name, and what it shows.
const BLOCKS: &[(&str, &[Pick])] = &[
    ("open", &[Each(Server, &["TCP connection open"])]),
    ("prefix", &[Each(Prefixed, &["TCP connection open"])]),
    (
        "request-client",
        &[Range(Client, "-> GET ", "-> Sec-WebSocket-Key")],
    ),
    (
        "request-server",
        &[Range(Server, "<- GET ", "<- Sec-WebSocket-Key")],
    ),
    (
        "response",
        &[Range(Server, "-> HTTP/1.1 101", "-> Sec-WebSocket-Accept")],
    ),
    ("welcome", &[Each(Server, &["-> frame", "welcome"])]),
    (
        "hi",
        &[
            Each(Client, &["-> frame", "\"hi everyone\""]),
            Each(Server, &["<- frame", "\"hi everyone\""]),
        ],
    ),
    ("zeros", &[Each(Server, &["frame", "\"000000"])]),
    ("frag", &[Range(Server, "\"Hello,\"", "Hello, fragments")]),
    (
        "ping",
        &[
            Each(Client, &["-> frame", "PING(0x9)", "are you there"]),
            Each(Server, &["-> frame", "PONG(0xa)", "are you there"]),
        ],
    ),
    (
        "echo",
        &[Each(Server, &["-> frame", r#"\"text\":\"hi everyone"#])],
    ),
    (
        "close-client",
        &[Range(
            Client,
            "-> frame FIN=1 RSV=000 CLOSE",
            "closed: code=",
        )],
    ),
    (
        "close-server",
        &[Range(
            Server,
            "<- frame FIN=1 RSV=000 CLOSE",
            "TCP connection closed",
        )],
    ),
    (
        "wire",
        &[
            Each(Wire, &[r#""line":"GET "#]),
            Each(Wire, &["Sec-WebSocket-Key: "]),
            Each(Wire, &["Sec-WebSocket-Accept: "]),
            Each(Wire, &[r#""preview":"hi everyone""#]),
            Each(Wire, &[r#""dir":"out""#, r#"\"text\":\"hi everyone"#]),
            Each(Wire, &[r#""opcode":"CLOSE""#]),
            Each(Wire, &[r#""event":"closed""#]),
        ],
    ),
    (
        "file-announce",
        &[
            Each(Client, &["-> frame", r#"\"type\":\"file\""#]),
            Each(Server, &["<- frame", r#"\"type\":\"file\""#]),
        ],
    ),
    (
        "file-bytes",
        &[
            Each(Client, &["-> frame", "BINARY(0x2)", PNG_HEX]),
            Each(Server, &["<- frame", "BINARY(0x2)", PNG_HEX]),
        ],
    ),
    (
        "file-message",
        &[
            Each(Server, &["-> frame", r#"\"file\":{"#]),
            Each(Received, &[r#""file":{"#]),
        ],
    ),
    ("file-head", &[All(Http(0))]),
    (
        "file-range",
        &[
            Each(Http(1), &["HTTP/1.1 "]),
            Each(Http(1), &["Content-Range: "]),
            Each(Http(1), &["Content-Length: "]),
        ],
    ),
    ("file-304", &[All(Http(2))]),
];

impl Run {
    fn source(&self, source: Source) -> &[String] {
        match source {
            Server => &self.server,
            Client => &self.client,
            Received => &self.received,
            Wire => &self.wire,
            Prefixed => &self.prefixed,
            Http(n) => self
                .http
                .as_ref()
                .and_then(|outputs| outputs.get(n))
                .map_or(&[], Vec::as_slice),
        }
    }

    /// Whether the run has the lines `picks` show: not the curl output without curl.
    fn has(&self, picks: &[Pick]) -> bool {
        self.http.is_some() || !picks.iter().any(|p| matches!(p.source(), Http(_)))
    }

    /// The lines block `name` shows, as the run printed them (the server's port
    /// shown as the doc's).
    fn block(&self, name: &str, picks: &[Pick]) -> Vec<String> {
        let mut out = Vec::new();
        for pick in picks {
            let found: Vec<&String> = match *pick {
                Each(source, needles) => self
                    .source(source)
                    .iter()
                    .filter(|l| needles.iter().all(|n| l.contains(n)))
                    .collect(),
                Range(source, from, to) => {
                    let lines = self.source(source);
                    let start = lines.iter().position(|l| l.contains(from));
                    let end = start.and_then(|s| {
                        lines[s..]
                            .iter()
                            .position(|l| l.contains(to))
                            .map(|e| s + e)
                    });
                    match (start, end) {
                        (Some(s), Some(e)) => lines[s..=e].iter().collect(),
                        _ => Vec::new(),
                    }
                }
                All(source) => self.source(source).iter().collect(),
            };
            assert!(
                !found.is_empty(),
                "block {name}: the run printed nothing for {pick:?}; it printed:\n{self:#?}"
            );
            out.extend(found.into_iter().map(|l| self.as_documented(l)));
        }
        out
    }

    /// `line` with the server's real port shown as the doc's.
    fn as_documented(&self, line: &str) -> String {
        let real = format!("127.0.0.1:{}", self.port);
        let mut out = String::new();
        let mut rest = line;
        while let Some(at) = rest.find(&real) {
            let after = &rest[at + real.len()..];
            out.push_str(&rest[..at]);
            if after.starts_with(|c: char| c.is_ascii_digit()) {
                out.push_str(&real);
            } else {
                out.push_str(&format!("127.0.0.1:{DOC_PORT}"));
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

/// Which characters belong to a varying part.
type Keep = fn(char) -> bool;

/// Replaces what follows each `marker` (the characters `keep` accepts) with `with`.
fn blank_after(line: &str, marker: &str, keep: Keep, with: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        let after = &rest[at + marker.len()..];
        let end = after.find(|c: char| !keep(c)).unwrap_or(after.len());
        out.push_str(with);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A line with everything that varies from run to run replaced by a placeholder.
fn normalise(line: &str) -> String {
    let digit = |c: char| c.is_ascii_digit();
    let hex = |c: char| c.is_ascii_hexdigit();
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let stamp = |c: char| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z');
    let mut line = if is_timed(line) {
        format!("<time>{}", &line[12..])
    } else if line.starts_with('[') {
        // The log prefix: `[2026-12-02T01:49:41.672Z INFO  switchboard::trace]`.
        let end = line
            .find(|c: char| c != '[' && !stamp(c))
            .unwrap_or(line.len());
        format!("[<stamp>{}", &line[end..])
    } else {
        line.to_owned()
    };
    let rules: [(&str, Keep, &str); 14] = [
        ("conn ", digit, "<id>"),
        ("127.0.0.1:", digit, "<port>"),
        ("key=", hex, "<mask>"),
        (r#""key":""#, hex, "<mask>"),
        ("Sec-WebSocket-Key: ", base64, "<key>"),
        ("Sec-WebSocket-Accept: ", base64, "<accept>"),
        (r#"epoch\":\""#, hex, "<epoch>"),
        (r#"ts\":"#, digit, "<ts>"),
        (r#""ts":"#, digit, "<ts>"),
        (r#""t":"#, digit, "<t>"),
        ("/files/", hex, "<file>"),
        (r#""id":""#, hex, "<file>"),
        (r#"ETag: ""#, hex, "<file>"),
        (r#"If-None-Match: ""#, hex, "<file>"),
    ];
    for (marker, keep, with) in rules {
        line = blank_after(&line, marker, keep, with);
    }
    line
}

/// A marked block of the doc: its name and the range of its lines (between the
/// fences) in the doc's lines.
struct Marked {
    name: String,
    lines: std::ops::Range<usize>,
}

const MARKER: &str = "<!-- walkthrough: ";

/// Every `<!-- walkthrough: NAME -->` block of the doc.
fn marked_blocks(doc: &[&str]) -> Vec<Marked> {
    let mut blocks = Vec::new();
    for (i, line) in doc.iter().enumerate() {
        let Some(name) = line.strip_prefix(MARKER) else {
            continue;
        };
        let name = name.trim_end().trim_end_matches("-->").trim();
        assert_eq!(
            doc.get(i + 1).map(|l| l.trim_end()),
            Some("```"),
            "the walkthrough block {name} must start right below its marker"
        );
        let start = i + 2;
        let len = doc[start..]
            .iter()
            .position(|l| l.trim_end() == "```")
            .unwrap_or_else(|| panic!("the walkthrough block {name} is never closed"));
        blocks.push(Marked {
            name: name.to_owned(),
            lines: start..start + len,
        });
    }
    blocks
}

/// The value after `marker` in the first of `lines` that has it.
fn value_after<'a>(lines: &[&'a str], marker: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.split_once(marker).map(|(_, v)| v.trim()))
}

#[test]
fn the_walkthroughs_output_is_what_the_binary_prints() {
    let path = doc_path();
    let text = std::fs::read_to_string(&path).expect("docs/how-it-works.md");
    let doc: Vec<&str> = text.lines().collect();
    let curls = curl_commands(&doc);
    assert_eq!(
        curls.len(),
        3,
        "the doc asks for the picture three times: {curls:?}"
    );
    let run = run_walkthrough(&curls);
    let marked = marked_blocks(&doc);
    for (name, _) in BLOCKS {
        let n = marked.iter().filter(|m| m.name == *name).count();
        assert_eq!(n, 1, "docs/how-it-works.md marks block {name} {n} times");
    }
    for m in &marked {
        assert!(
            BLOCKS.iter().any(|(name, _)| *name == m.name),
            "docs/how-it-works.md marks a block {} this test does not know",
            m.name
        );
    }
    let fresh: Vec<(&Marked, Vec<String>)> = marked
        .iter()
        .filter_map(|m| {
            let picks = BLOCKS
                .iter()
                .find(|(name, _)| *name == m.name)
                .map(|(_, picks)| *picks)
                .unwrap_or_default();
            run.has(picks).then(|| (m, run.block(&m.name, picks)))
        })
        .collect();

    if std::env::var_os(REGENERATE).is_some() {
        assert_eq!(fresh.len(), marked.len(), "{REGENERATE} needs curl");
        return regenerate(&path, &doc, &fresh);
    }

    let mut diff = String::new();
    for (m, lines) in &fresh {
        let old: Vec<String> = doc[m.lines.clone()].iter().map(|l| normalise(l)).collect();
        let new: Vec<String> = lines.iter().map(|l| normalise(l)).collect();
        if old == new {
            continue;
        }
        diff.push_str(&format!("block {} (- the doc, + the run):\n", m.name));
        for i in 0..old.len().max(new.len()) {
            match (old.get(i), new.get(i)) {
                (Some(o), Some(n)) if o == n => diff.push_str(&format!("  {o}\n")),
                (o, n) => {
                    if let Some(o) = o {
                        diff.push_str(&format!("- {o}\n"));
                    }
                    if let Some(n) = n {
                        diff.push_str(&format!("+ {n}\n"));
                    }
                }
            }
        }
    }
    assert!(
        diff.is_empty(),
        "docs/how-it-works.md no longer shows what the binary prints; \
         refresh it with `{REGENERATE}=1 cargo test --test walkthrough`:\n{diff}"
    );
    check_accept_example(&doc, &marked);
    check_one_picture(&text);
}

/// The picture has one id throughout the doc: in alice's message, the commands that
/// ask for it, and the `ETag` they get back. (The comparison blanks file ids, which
/// vary from run to run; this keeps the doc's own consistent.)
fn check_one_picture(text: &str) {
    let ids = file_ids(text);
    assert!(ids.len() >= 5, "the doc shows the picture's id: {ids:?}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the doc shows the picture under more than one id: {ids:?}"
    );
}

/// The doc's `openssl` check hashes the key its trace shows, and the answer it
/// promises is the trace's `Sec-WebSocket-Accept`.
fn check_accept_example(doc: &[&str], marked: &[Marked]) {
    let block = |name: &str| -> Vec<&str> {
        let m = marked.iter().find(|m| m.name == name).expect("marked");
        doc[m.lines.clone()].to_vec()
    };
    let key = value_after(&block("request-client"), "Sec-WebSocket-Key: ").expect("a key");
    let accept = value_after(&block("response"), "Sec-WebSocket-Accept: ").expect("an accept");
    assert_eq!(
        tungstenite::handshake::derive_accept_key(key.as_bytes()),
        accept,
        "the doc's Sec-WebSocket-Accept is not derived from its key"
    );
    let text = doc.join("\n");
    assert!(
        text.contains(&format!("'{key}{GUID}'")),
        "the openssl check hashes another key than the trace's {key}"
    );
    assert!(
        text.contains(&format!("# {accept}")),
        "the openssl check promises another answer than the trace's {accept}"
    );
}

/// Rewrites every marked block with what the run printed, and the key and accept
/// the prose quotes with the run's.
fn regenerate(path: &Path, doc: &[&str], fresh: &[(&Marked, Vec<String>)]) {
    let swaps: Vec<(String, String)> = [
        ("request-client", "Sec-WebSocket-Key: "),
        ("response", "Sec-WebSocket-Accept: "),
    ]
    .iter()
    .filter_map(|(name, marker)| {
        let (m, lines) = fresh.iter().find(|(m, _)| m.name == *name)?;
        let old = value_after(&doc[m.lines.clone()], marker)?;
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let new = value_after(&lines, marker)?;
        Some((old.to_owned(), new.to_owned()))
    })
    .chain(picture_id_swap(doc, fresh))
    .collect();
    let mut out: Vec<String> = Vec::new();
    let mut at = 0;
    for (m, lines) in fresh {
        out.extend(doc[at..m.lines.start].iter().map(|l| l.to_string()));
        out.extend(lines.iter().cloned());
        at = m.lines.end;
    }
    out.extend(doc[at..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    text.push('\n');
    for (old, new) in swaps {
        text = text.replace(&old, &new);
    }
    std::fs::write(path, text).expect("docs/how-it-works.md rewritten");
    let _ = writeln!(
        std::io::stderr(),
        "{REGENERATE}: rewrote {} blocks of {}",
        fresh.len(),
        path.display()
    );
}

/// The picture's id as the doc shows it, and as the run made it.
fn picture_id_swap(doc: &[&str], fresh: &[(&Marked, Vec<String>)]) -> Option<(String, String)> {
    let (m, lines) = fresh.iter().find(|(m, _)| m.name == "file-message")?;
    let old = doc[m.lines.clone()]
        .iter()
        .find_map(|l| file_ids(l).first().copied())?;
    let new = lines.iter().find_map(|l| file_ids(l).first().copied())?;
    Some((old.to_owned(), new.to_owned()))
}

// ---- what the doc may cite ----

/// The doc's Markdown links to relative paths: `(text, target)`.
fn relative_links(text: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let before = &rest[..at];
        let label = before.rfind('[').map(|s| &before[s + 1..]).unwrap_or("");
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = &after[..end];
        if !target.contains("://") && !target.starts_with("mailto:") {
            links.push((label.to_owned(), target.to_owned()));
        }
        rest = &after[end..];
    }
    links
}

/// GitHub's anchor of a heading: lowercase, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_link_of_the_walkthrough_leads_to_what_it_names() {
    let path = doc_path();
    let text = std::fs::read_to_string(&path).expect("docs/how-it-works.md");
    let dir = path.parent().expect("docs/");
    let links = relative_links(&text);
    assert!(
        links.len() > 10,
        "the walkthrough links the code it follows"
    );
    for (label, target) in links {
        let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
        let linked = if file.is_empty() {
            path.clone()
        } else {
            dir.join(file)
        };
        assert!(
            linked.exists(),
            "[{label}]({target}): {} does not exist",
            linked.display()
        );
        let body = || std::fs::read_to_string(&linked).unwrap_or_default();
        if !fragment.is_empty() {
            let headings: Vec<String> = body()
                .lines()
                .filter(|l| l.starts_with('#'))
                .map(|l| anchor(l.trim_start_matches('#')))
                .collect();
            assert!(
                headings.iter().any(|h| h == fragment),
                "[{label}]({target}): no heading has the anchor #{fragment}"
            );
        }
        // `[`Stages::run`](../src/listener/dispatch.rs)`: that file defines `run`.
        let code = label.trim_matches('`').trim_end_matches("()");
        let name = code.rsplit("::").next().unwrap_or(code);
        let is_item = label.starts_with('`')
            && file.ends_with(".rs")
            && !name.is_empty()
            && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if is_item {
            let body = body();
            let defined = ["fn", "struct", "enum", "trait", "const", "type"]
                .iter()
                .any(|kind| {
                    body.match_indices(&format!("{kind} {name}"))
                        .any(|(at, m)| {
                            let next = body[at + m.len()..].chars().next();
                            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        })
                });
            assert!(defined, "[{label}]({target}): {file} defines no {name}");
        }
    }
}

#[test]
fn normalising_keeps_what_is_fixed_and_blanks_what_varies() {
    let a = r#"01:49:44.177 conn 1 127.0.0.1:54038 tcp <- frame FIN=1 RSV=000 PING(0x9) MASK=1 key=1c560263 len=25 (7-bit) "between""#;
    let b = r#"05:43:51.678 conn 12 127.0.0.1:47842 tcp <- frame FIN=1 RSV=000 PING(0x9) MASK=1 key=4ae38f5a len=25 (7-bit) "between""#;
    assert_eq!(normalise(a), normalise(b));
    let c = b.replace("len=25", "len=26");
    assert_ne!(normalise(a), normalise(&c), "a length is no detail");
    let welcome = r#"01:49:41.673 conn 1 127.0.0.1:54038 tcp -> frame len=193 (16-bit) "{\"epoch\":\"3bcc95"…"#;
    assert!(normalise(welcome).ends_with(r#""{\"epoch\":\"<epoch>"…"#));
    assert_eq!(
        normalise("[2026-12-02T01:49:41.672Z INFO  switchboard::trace] conn 1"),
        "[<stamp> INFO  switchboard::trace] conn <id>"
    );
    assert_ne!(
        normalise("[2026-12-02T01:49:41.672Z INFO switchboard::trace] x"),
        normalise("[2026-12-02T01:49:41.672Z INFO  switchboard::trace] x"),
        "the prefix's spacing is the binary's, not a detail"
    );
}

#[test]
fn a_pictures_id_is_blanked_and_its_commands_ask_for_the_real_one() {
    let picture = |id: &str| {
        format!(
            r#"01:49:44.177 < {{"type":"message","id":4,"ts":1796686766377,"file":{{"id":"{id}","size":76,"url":"/files/{id}/pixel.png"}}}}"#
        )
    };
    let one = picture("06fd8313d3033bb2826cccc6e787419c");
    let other = picture("d1130dea4d6dfdb37c704e6904e9f65a");
    assert_eq!(normalise(&one), normalise(&other), "a file id varies");
    assert_ne!(
        normalise(&one),
        normalise(&one.replace(r#""size":76"#, r#""size":77"#)),
        "a file's size is no detail"
    );
    assert_eq!(
        normalise(r#"ETag: "06fd8313d3033bb2826cccc6e787419c""#),
        r#"ETag: "<file>""#
    );
    assert_eq!(
        as_run(
            r#"curl -I -H 'If-None-Match: "06fd8313d3033bb2826cccc6e787419c"' http://127.0.0.1:3000/files/06fd8313d3033bb2826cccc6e787419c/pixel.png"#,
            40000,
            "d1130dea4d6dfdb37c704e6904e9f65a"
        ),
        r#"curl -I -H 'If-None-Match: "d1130dea4d6dfdb37c704e6904e9f65a"' http://127.0.0.1:40000/files/d1130dea4d6dfdb37c704e6904e9f65a/pixel.png"#
    );
}
