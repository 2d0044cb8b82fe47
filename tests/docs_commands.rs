//! Every shell command in the docs runs as written, or the docs say why it cannot.
//!
//! The README, every `docs/*.md` and `certs/README.md` are read at test time. Each
//! ```sh (and ```python) block is either run by a test below, taken from the Markdown
//! line for line with only its addresses, ports and paths replaced, or marked in the
//! Markdown on the line before it with `<!-- not run by the tests: REASON -->`. The
//! walk at the top fails on a block that is neither, so a new command cannot go
//! untested and unexplained, and on a block the [`RUN`] registry names that is gone.
//!
//! The commands run through `sh` in a temp `HOME`, with the binary cargo built first
//! on `PATH` as `switchboard`; `cargo run --release --` is that binary too.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;

/// The blocks a test runs: the file, the block's first command line (exactly, comment
/// dropped), and the test that runs it.
const RUN: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "cargo run --release",
        "readme_start_line_serves_http_https_and_keeps_history_in_home",
    ),
    (
        "README.md",
        "switchboard connect 'ws://127.0.0.1:3000/ws/chat?name=alice'",
        "readme_connect_line_chats_both_ways_and_ends_cleanly, \
         readme_connect_line_echoes_over_tls_trusting_the_dev_ca_and_traces, \
         readme_connect_line_in_a_pipe_echoes_and_exits_0",
    ),
    (
        "README.md",
        "websocat -E --linemode-strip-newlines 'ws://127.0.0.1:3000/ws/chat?name=alice'",
        "clients.rs: websocat_chats_with_the_readme_command_and_exits_when_the_server_stops, \
         wscat_chats_with_the_readme_command",
    ),
    (
        "README.md",
        "import json",
        "readme_python_chat_example_chats",
    ),
    (
        "README.md",
        "websocat --insecure wss://localhost:3443/ws/echo",
        "readme_and_certs_websocat_insecure_line_echoes_over_tls, \
         readme_and_certs_curl_line_verifies_with_the_dev_ca",
    ),
    (
        "README.md",
        "import ssl",
        "readme_python_tls_example_echoes",
    ),
    (
        "README.md",
        "mkdir -p ~/.config && (umask 077; head -c 24 /dev/urandom | base64 > ~/.config/switchboard-token)",
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        "TOKEN=$(cat ~/.config/switchboard-token)",
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        "mkdir -p ~/.config && (umask 077; echo 'correct horse battery' > ~/.config/switchboard-password)",
        "readme_password_file_server_and_websocat_with_the_password",
    ),
    (
        "README.md",
        "mkdir -p ~/.config && (umask 077; echo 'staple battery horse' > ~/.config/switchboard-admin-password)",
        "readme_admin_password_file_makes_an_admin",
    ),
    (
        "README.md",
        "websocat -E --linemode-strip-newlines 'ws://127.0.0.1:3000/ws/chat?name=alice' -H 'Authorization: Bearer correct horse battery'",
        "readme_password_file_server_and_websocat_with_the_password",
    ),
    (
        "README.md",
        "switchboard --redis redis://10.0.0.5:6379/0",
        "readme_redis_line_joins_the_cluster",
    ),
    (
        "docs/how-it-works.md",
        "cargo run --release -- --no-tls --no-persist --trace-plain",
        "how_it_works_trace_commands_and_wire_viewer_show_the_bytes",
    ),
    (
        "docs/how-it-works.md",
        // The key changes whenever the walkthrough's output is regenerated.
        "printf '%s' '…",
        "how_it_works_accept_key_by_hand_gives_the_value_shown",
    ),
    (
        "docs/how-it-works.md",
        "cargo run --release -- connect ws://127.0.0.1:3000/ws/wire/1 --protocol switchboard-wire,switchboard-wire.KEY",
        "how_it_works_trace_commands_and_wire_viewer_show_the_bytes",
    ),
    // The picture's id changes whenever the walkthrough's output is regenerated.
    (
        "docs/how-it-works.md",
        "curl -I http://127.0.0.1:3000/files/…",
        "walkthrough.rs: the_walkthroughs_output_is_what_the_binary_prints",
    ),
    (
        "docs/how-it-works.md",
        "curl -I -H 'Range: bytes=0-7' http://127.0.0.1:3000/files/…",
        "walkthrough.rs: the_walkthroughs_output_is_what_the_binary_prints",
    ),
    (
        "docs/how-it-works.md",
        "curl -I -H 'If-None-Match: …",
        "walkthrough.rs: the_walkthroughs_output_is_what_the_binary_prints",
    ),
    (
        "certs/README.md",
        "certs/generate.sh 192.168.1.20 mybox.local",
        "certs_lan_certificate_commands_make_a_set_the_server_serves",
    ),
];

/// Commands written inline in prose (in backticks) that talk to a server or run the
/// binary: the file, the span (spaces and line ends folded to one space), and the test.
const INLINE_RUN: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "switchboard connect --help",
        "readme_connect_help_runs",
    ),
    (
        "certs/README.md",
        "websocat --insecure wss://localhost:3443/ws/echo",
        "readme_and_certs_websocat_insecure_line_echoes_over_tls",
    ),
    (
        "certs/README.md",
        "curl --cacert certs/ca.pem https://localhost:3443/healthz",
        "readme_and_certs_curl_line_verifies_with_the_dev_ca",
    ),
    (
        "README.md",
        FILE_POST,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        FORM_POST,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        API_DELETE,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        API_KICK,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        API_MUTE,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        API_SETTINGS,
        "readme_token_file_server_and_curl_post_a_message",
    ),
    (
        "README.md",
        API_CLEAR,
        "readme_token_file_server_and_curl_post_a_message",
    ),
];

/// The README's post of a file with curl.
const FILE_POST: &str = "curl --data-binary @graph.png -H 'Content-Type: image/png' -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:3000/api/rooms/ops/files?name=graph.png'";

/// The README's post of a file as a form, with curl.
const FORM_POST: &str = "curl -F file=@graph.png -F 'text=nightly build' -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:3000/api/rooms/ops/files";

/// The README's deletion of a message with curl.
const API_DELETE: &str = "curl -X DELETE -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:3000/api/rooms/ops/messages/43";

/// The README's kick with curl.
const API_KICK: &str = "curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"name\":\"mallory\",\"reason\":\"flooding\"}' http://127.0.0.1:3000/api/rooms/ops/kick";

/// The README's mute with curl.
const API_MUTE: &str = "curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"name\":\"mallory\",\"minutes\":10}' http://127.0.0.1:3000/api/rooms/ops/mute";

/// The README's room settings with curl.
const API_SETTINGS: &str = "curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{\"locked\":true,\"slow_secs\":30,\"topic\":\"Week 3: sockets\"}' http://127.0.0.1:3000/api/rooms/ops/settings";

/// The README's clear with curl.
const API_CLEAR: &str =
    "curl -X POST -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:3000/api/rooms/ops/clear";

/// Inline spans that start like a command but are not one, and why.
const INLINE_NOT_COMMANDS: &[(&str, &str, &str)] = &[
    (
        "docs/PROTOCOL.md",
        "curl -d",
        "names curl's flag to say what body it sends",
    ),
    (
        "docs/PROTOCOL.md",
        "curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'",
        "names the flags that send a file as the body; the README's whole command is run",
    ),
    (
        "docs/PROTOCOL.md",
        "curl -F file=@cat.jpg -F text=hello",
        "names the flags that send a file as a form; the README's whole command is run",
    ),
];

/// The marker of a block the tests cannot run, on the line before it.
const MARKER: (&str, &str) = ("<!-- not run by the tests: ", "-->");

/// Fenced blocks in these languages hold commands.
const COMMAND_LANGUAGES: &[&str] = &["sh", "bash", "shell", "console", "python", "py"];

/// Inline spans starting with one of these are commands that talk to a server or run
/// the binary.
const INLINE_COMMANDS: &[&str] = &[
    "curl ",
    "websocat ",
    "wscat ",
    "switchboard connect ",
    "switchboard --",
    "python3 ",
];

/// How long a command that should finish by itself may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files whose commands are checked, relative to the repository: the README,
/// every `docs/*.md` (a new one is walked too), `certs/README.md`.
fn doc_files() -> Vec<String> {
    let mut files = vec!["README.md".to_owned(), "certs/README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read_doc(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

// ---- the Markdown ----

/// One fenced block: where it starts, its language, its lines, and its marker's reason.
struct Block {
    file: String,
    line: usize,
    language: String,
    body: Vec<String>,
    marker: Option<String>,
}

impl Block {
    fn holds_commands(&self) -> bool {
        COMMAND_LANGUAGES.contains(&self.language.as_str())
    }

    /// The commands, one per entry: continuation lines joined, comments dropped; a
    /// Python block is one program (its lines as they are).
    fn commands(&self) -> Vec<String> {
        if self.language.starts_with("py") {
            return vec![self.body.join("\n")];
        }
        let mut commands = Vec::new();
        let mut pending = String::new();
        for line in &self.body {
            let line = line.trim();
            if let Some(start) = line.strip_suffix('\\') {
                pending.push_str(start.trim());
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let command = strip_comment(&pending).trim().to_owned();
            pending.clear();
            if !command.is_empty() {
                commands.push(command);
            }
        }
        commands
    }

    /// What the registry knows the block by: its first command line, or a Python
    /// block's first line.
    fn key(&self) -> String {
        if self.language.starts_with("py") {
            return self
                .body
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_owned();
        }
        self.commands().into_iter().next().unwrap_or_default()
    }
}

/// A shell line without its comment: a `#` outside quotes at the start or after a
/// space.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

/// Every fenced block of `file`.
fn blocks(file: &str) -> Vec<Block> {
    let text = read_doc(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let marker = i
            .checked_sub(1)
            .map(|before| lines[before].trim())
            .and_then(|before| before.strip_prefix(MARKER.0)?.strip_suffix(MARKER.1))
            .map(|reason| reason.trim().to_owned());
        let start = i;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push(lines[i].to_owned());
            i += 1;
        }
        blocks.push(Block {
            file: file.to_owned(),
            line: start + 1,
            language: info.split_whitespace().next().unwrap_or("").to_owned(),
            body,
            marker,
        });
        i += 1;
    }
    blocks
}

/// Whether a block whose key is `key` is the one registered as `first` (a `first`
/// ending in `…` names the blocks that start with what comes before it).
fn is_block(key: &str, first: &str) -> bool {
    match first.strip_suffix('…') {
        Some(start) => key.starts_with(start),
        None => key == first,
    }
}

/// The block of `file` whose key is `first`; fails the test when it is gone.
fn block(file: &str, first: &str) -> Block {
    blocks(file)
        .into_iter()
        .find(|b| b.holds_commands() && is_block(&b.key(), first))
        .unwrap_or_else(|| panic!("{file} has no block starting with {first:?} any more"))
}

/// The inline code spans of `file` outside fenced blocks, their white space folded.
fn inline_spans(file: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in read_doc(file).lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut spans = Vec::new();
    // Paragraphs: a code span never crosses a blank line.
    for paragraph in prose.split("\n\n") {
        let mut parts = paragraph.split('`');
        parts.next();
        while let (Some(span), Some(_)) = (parts.next(), parts.next()) {
            spans.push(span.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    spans
}

/// The inline span of `file` that is `span`; fails the test when it is gone.
fn inline(file: &str, span: &str) -> String {
    inline_spans(file)
        .into_iter()
        .find(|s| s == span)
        .unwrap_or_else(|| panic!("{file} no longer says `{span}`"))
}

#[test]
fn every_command_block_in_the_docs_is_run_by_a_test_or_says_why_not() {
    let tests = [
        include_str!("docs_commands.rs"),
        include_str!("clients.rs"),
        include_str!("walkthrough.rs"),
    ]
    .concat();
    let mut problems = Vec::new();
    // Per file: commands run, commands in marked blocks.
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut found = Vec::new();
    for file in doc_files() {
        let count = counts.entry(file.clone()).or_default();
        let mut marked_blocks = 0;
        for block in blocks(&file) {
            if !block.holds_commands() {
                if block.marker.is_some() {
                    problems.push(format!(
                        "{file}:{}: a marker before a ```{} block, which holds no commands",
                        block.line, block.language
                    ));
                }
                continue;
            }
            let key = block.key();
            let registered = RUN.iter().any(|&(f, k, _)| f == file && is_block(&key, k));
            let commands = block.commands().len();
            match (&block.marker, registered) {
                (None, false) => problems.push(format!(
                    "{file}:{}: no test runs this ```{} block and no `{}REASON {}` line \
                     before it says why not: {key}",
                    block.line, block.language, MARKER.0, MARKER.1
                )),
                (Some(_), true) => problems.push(format!(
                    "{file}:{}: marked as not run, yet a test runs it: {key}",
                    block.line
                )),
                (Some(reason), false) if reason.is_empty() => {
                    problems.push(format!("{file}:{}: the marker gives no reason", block.line))
                }
                (Some(_), false) => {
                    marked_blocks += 1;
                    count.1 += commands;
                }
                (None, true) => {
                    found.push((block.file.clone(), key));
                    count.0 += commands;
                }
            }
        }
        let markers = read_doc(&file)
            .lines()
            .filter(|l| l.trim().starts_with(MARKER.0))
            .count();
        if markers != marked_blocks {
            problems.push(format!(
                "{file}: {markers} markers but {marked_blocks} marked blocks: a marker must be \
                 the line right before its block"
            ));
        }
        for span in inline_spans(&file) {
            if !INLINE_COMMANDS.iter().any(|c| span.starts_with(c)) {
                continue;
            }
            if INLINE_RUN.iter().any(|&(f, s, _)| f == file && s == span) {
                count.0 += 1;
            } else if !INLINE_NOT_COMMANDS
                .iter()
                .any(|&(f, s, _)| f == file && s == span)
            {
                problems.push(format!(
                    "{file}: no test runs the inline command `{span}` (add it to INLINE_RUN)"
                ));
            }
        }
    }
    for &(file, key, test) in RUN {
        if !found.iter().any(|(f, k)| f == file && is_block(k, key)) {
            problems.push(format!(
                "{file}: the block {key:?} that {test} runs is gone or marked"
            ));
        }
    }
    for &(file, span, test) in INLINE_RUN.iter().chain(INLINE_NOT_COMMANDS) {
        if !inline_spans(file).iter().any(|s| s == span) {
            problems.push(format!("{file}: the inline `{span}` ({test}) is gone"));
        }
    }
    for &(_, _, names) in RUN.iter().chain(INLINE_RUN) {
        for name in names.split(", ") {
            let name = name.rsplit(": ").next().unwrap_or(name);
            if !tests.contains(&format!("fn {name}(")) {
                problems.push(format!(
                    "the registry names a test that is not there: {name}"
                ));
            }
        }
    }
    // The count the issue asks for, on stderr (the harness keeps print!() of passing
    // tests to itself).
    for (file, (run, marked)) in &counts {
        let _ = writeln!(
            std::io::stderr(),
            "{file}: {run} commands run by tests, {marked} in blocks marked not runnable"
        );
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_walk_reads_blocks_markers_comments_and_continuations() {
    assert_eq!(strip_comment("echo a # b"), "echo a ");
    assert_eq!(strip_comment("echo 'a # b'"), "echo 'a # b'");
    assert_eq!(strip_comment("curl http://h/#top"), "curl http://h/#top");
    assert_eq!(strip_comment("# all of it"), "");
    let block = Block {
        file: "x.md".into(),
        line: 1,
        language: "sh".into(),
        body: vec![
            "# a comment".into(),
            "printf a \\".into(),
            "  | base64   # YQ==".into(),
            "".into(),
            "echo b".into(),
        ],
        marker: None,
    };
    assert_eq!(block.commands(), ["printf a | base64", "echo b"]);
    assert_eq!(block.key(), "printf a | base64");
}

// ---- running the commands ----

/// Where the docs' commands run: a temp `HOME` (so `~/.config` and the default data
/// directory are the test's own), the binary first on `PATH` as `switchboard`, the
/// repository as the working directory unless told otherwise.
struct Shell {
    home: TempDir,
    bin: TempDir,
    cwd: PathBuf,
}

impl Shell {
    fn new(label: &str) -> Shell {
        let bin = TempDir::new(&format!("{label}-bin"));
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_switchboard"),
            bin.path().join("switchboard"),
        )
        .expect("a switchboard link");
        Shell {
            home: TempDir::new(&format!("{label}-home")),
            bin,
            cwd: root().to_owned(),
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// `sh -c script`, with this shell's environment and none of the server's own
    /// variables from outside.
    fn command(&self, script: &str) -> Command {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(self.bin.path().to_owned()).chain(std::env::split_paths(&path)),
        )
        .expect("a PATH");
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .current_dir(&self.cwd)
            .env("HOME", self.home())
            .env("PATH", path);
        for var in [
            "XDG_DATA_HOME",
            "XDG_CONFIG_HOME",
            "RUST_LOG",
            "SWITCHBOARD_API_TOKEN",
            "SWITCHBOARD_PASSWORD",
            "SWITCHBOARD_ADMIN_PASSWORD",
            "SWITCHBOARD_REDIS",
        ] {
            command.env_remove(var);
        }
        command
    }

    /// Runs `script`, any number of lines, to its end (at most [`COMMAND_TIMEOUT`]),
    /// stdin empty.
    fn run(&self, script: &str) -> Finished {
        self.spawn(script, script).finish()
    }

    /// Starts one command with its input, output and errors piped; `sh` hands its
    /// process over to it, so that dropping the [`Program`] kills the command itself.
    fn start(&self, command: &str) -> Program {
        self.spawn(&format!("exec {command}"), command)
    }

    fn spawn(&self, script: &str, shown: &str) -> Program {
        self.spawn_command(self.command(script), shown)
    }

    fn spawn_command(&self, mut command: Command, shown: &str) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh starts");
        let stdout = lines(child.stdout.take().expect("a pipe"));
        let stderr = lines(child.stderr.take().expect("a pipe"));
        Program {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            script: shown.to_owned(),
        }
    }

    /// Starts a server with a doc's start line: `cargo run --release --` is the built
    /// binary, and a line that names no address gets free loopback ports for the
    /// addresses it would have by default. Returns once it answers `/healthz`.
    fn serve(&self, line: &str) -> Served {
        let mut line = as_built(line);
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        assert!(
            !line.contains("--listen"),
            "a doc start line with its own address: {line}"
        );
        line.push_str(&format!(" --listen {http}"));
        let tls = (!line.contains("--no-tls")).then(|| {
            let tls = SocketAddr::from(([127, 0, 0, 1], free_port()));
            line.push_str(&format!(" --tls-listen {tls}"));
            tls
        });
        let mut program = self.start(&line);
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while std::net::TcpStream::connect(http).is_err() {
            if let Some(status) = program.child.try_wait().expect("the server's status") {
                panic!("`{line}` exited with {status}: {}", program.drain_stderr());
            }
            assert!(Instant::now() < deadline, "`{line}` is not serving in time");
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(status(&get(http, "/healthz")), 200, "`{line}` serves");
        Served { program, http, tls }
    }
}

/// A doc's `cargo run --release -- ARGS` as the binary cargo built: `switchboard ARGS`.
fn as_built(line: &str) -> String {
    match line.strip_prefix("cargo run --release") {
        Some(rest) => format!(
            "switchboard{}",
            rest.strip_prefix(" --").unwrap_or(rest).trim_end()
        ),
        None => line.to_owned(),
    }
}

/// `command` with the docs' addresses (`127.0.0.1:3000`, `HOST:3000`,
/// `localhost:3443`) replaced by the test server's.
fn at(command: &str, http: SocketAddr, tls: Option<SocketAddr>) -> String {
    let mut command = command
        .replace("127.0.0.1:3000", &http.to_string())
        .replace("HOST:3000", &http.to_string());
    if let Some(tls) = tls {
        command = command.replace("localhost:3443", &format!("localhost:{}", tls.port()));
    }
    command
}

/// A server started from a doc's line, killed when dropped.
struct Served {
    program: Program,
    http: SocketAddr,
    tls: Option<SocketAddr>,
}

/// Lines from a pipe, read on a thread of their own.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// How a command ended, and what it printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// Fails the test with everything the command printed unless it exited 0.
    fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "`{what}` exited with {}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// A command running in `sh`, killed when dropped.
struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    script: String,
}

impl Program {
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("the command reads its input");
        stdin.flush().expect("flush");
    }

    /// The next stdout line containing `needle`; fails the test with what the
    /// command printed on both if none comes in time.
    fn wait_stdout(&self, needle: &str) -> String {
        wait_line(&self.stdout, needle).unwrap_or_else(|seen| {
            panic!(
                "no {needle:?} on the stdout of `{}` in time; it printed:\n{seen}\nand on \
                 stderr:\n{}",
                self.script,
                self.drain_stderr()
            )
        })
    }

    /// The next stderr line containing `needle`.
    fn wait_stderr(&self, needle: &str) -> String {
        wait_line(&self.stderr, needle).unwrap_or_else(|seen| {
            panic!(
                "no {needle:?} on the stderr of `{}` in time; it printed:\n{seen}",
                self.script
            )
        })
    }

    fn drain_stderr(&self) -> String {
        let mut out = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Waits for the end of the command, its input closed, for at most
    /// [`COMMAND_TIMEOUT`].
    fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let status = wait_exit(&mut self.child, COMMAND_TIMEOUT)
            .unwrap_or_else(|| panic!("`{}` did not end in time", self.script));
        let collect = |rx: &Receiver<String>| {
            let mut out = String::new();
            while let Ok(line) = rx.recv_timeout(READ_TIMEOUT) {
                out.push_str(&line);
                out.push('\n');
            }
            out
        };
        Finished {
            status,
            stdout: collect(&self.stdout),
            stderr: collect(&self.stderr),
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next line from `rx` containing `needle`, within the read timeout (twice it:
/// a debug binary starting up under load is slow); else the lines that came instead.
fn wait_line(rx: &Receiver<String>, needle: &str) -> Result<String, String> {
    let deadline = Instant::now() + 2 * READ_TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => return Err(seen),
        }
    }
}

/// The JSON object on a line `switchboard connect` printed (`HH:MM:SS.mmm < {…}`).
fn json_on(line: &str) -> serde_json::Value {
    let start = line
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {line:?}"));
    serde_json::from_str(&line[start..]).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// A server of this process on loopback, with TLS on a port of its own too.
fn server_with_tls() -> (switchboard::ServerHandle, SocketAddr, SocketAddr) {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let (http, tls) = (
        server.local_addr(),
        server.tls_local_addr().expect("a TLS listener"),
    );
    (server, http, tls)
}

/// Whether Python's `websockets` (11 or later: its synchronous client) is there; if
/// not, says the test was skipped, or fails it where `.ci/run` installs it.
fn python_websockets_or_skip(test: &str) -> bool {
    if tool_or_skip(test, "python3", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return false;
    }
    let found = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_TOOLS").is_none(),
            "{test}: SWITCHBOARD_REQUIRE_TOOLS is set but Python's websockets (11+) is missing"
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: Python's websockets package (11 or later) is not installed \
             (.ci/run installs it)"
        );
    }
    found
}

/// Runs a README Python example: the block in a file, run unbuffered (so that each
/// print arrives as it happens) from the repository. With the real `HOME`: the
/// examples use none of it, and Python finds packages installed with `--user` there.
fn python(shell: &Shell, program: &str) -> Program {
    let file = shell.home().join("example.py");
    std::fs::write(&file, program).expect("the example in a file");
    let command = format!("python3 -u '{}'", file.display());
    let mut sh = shell.command(&format!("exec {command}"));
    if let Some(home) = std::env::var_os("HOME") {
        sh.env("HOME", home);
    }
    shell.spawn_command(sh, &command)
}

// ---- the README ----

#[test]
fn readme_start_line_serves_http_https_and_keeps_history_in_home() {
    let shell = Shell::new("start");
    let lines = block("README.md", "cargo run --release").commands();
    assert_eq!(lines, ["cargo run --release"]);
    let served = shell.serve(&lines[0]);
    let (mut ws, _) = chat(served.http, "lobby", Some("first"));
    say(&mut ws, "kept");
    next_of_type(&mut ws, "message");
    let tls = served.tls.expect("TLS by default");
    let mut stream = tls_to(tls, &certs().join("ca.pem"));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(status(&read_to_close(&mut stream)), 200, "https too");
    // "by default ~/.local/share/switchboard"
    let store = shell.home().join(".local/share/switchboard/chat.sqlite3");
    assert!(store.is_file(), "history in {}", store.display());
}

/// A TLS connection to `addr` trusting only the CA in `ca`, checking `localhost`.
fn tls_to(addr: SocketAddr, ca: &Path) -> native_tls::TlsStream<std::net::TcpStream> {
    let ca = std::fs::read(ca).expect("a CA file");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&ca).expect("PEM"))
        .disable_built_in_roots(true)
        .build()
        .expect("a connector");
    connector
        .connect("localhost", tcp(addr))
        .expect("a TLS handshake the CA vouches for")
}

/// The README's `switchboard connect` lines: the chat, the TLS echo, the script.
fn connect_lines() -> Vec<String> {
    let lines = block(
        "README.md",
        "switchboard connect 'ws://127.0.0.1:3000/ws/chat?name=alice'",
    )
    .commands();
    assert_eq!(lines.len(), 3, "{lines:?}");
    lines
}

#[test]
fn readme_connect_line_chats_both_ways_and_ends_cleanly() {
    let line = &connect_lines()[0];
    let shell = Shell::new("connect-chat");
    let server = start();
    let http = server.local_addr();
    let (mut ours, _) = chat(http, "lobby", Some("ours"));
    let mut alice = shell.start(&at(line, http, None));
    assert_eq!(json_on(&alice.wait_stdout("welcome"))["name"], "alice");
    alice.type_line("hello from connect");
    let message = next_of_type(&mut ours, "message");
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("alice"), Some("hello from connect"))
    );
    say(&mut ours, "hello back");
    alice.wait_stdout("hello back");
    // End of input closes with 1000: exit 0.
    alice.finish().assert_success(line);
}

#[test]
fn readme_connect_line_echoes_over_tls_trusting_the_dev_ca_and_traces() {
    let line = &connect_lines()[1];
    let shell = Shell::new("connect-tls");
    let (_server, http, tls) = server_with_tls();
    let mut echo = shell.start(&at(line, http, Some(tls)));
    echo.type_line("over tls");
    echo.wait_stdout("over tls");
    echo.wait_stderr("client -> frame FIN=1 RSV=000 TEXT(0x1) MASK=1");
    echo.finish().assert_success(line);
}

#[test]
fn readme_connect_line_in_a_pipe_echoes_and_exits_0() {
    let line = &connect_lines()[2];
    let shell = Shell::new("connect-pipe");
    let server = start();
    let script = shell.run(&at(line, server.local_addr(), None));
    script.assert_success(line);
    assert!(script.stdout.contains("< hello"), "{}", script.stdout);
}

#[test]
fn readme_connect_help_runs() {
    let shell = Shell::new("help");
    let help = shell.run(&inline("README.md", "switchboard connect --help"));
    help.assert_success("switchboard connect --help");
    assert!(
        help.stdout.contains("Usage: switchboard connect"),
        "{}",
        help.stdout
    );
}

/// The README's TLS lines, which certs/README.md repeats inline word for word.
fn tls_lines() -> Vec<String> {
    let lines = block(
        "README.md",
        "websocat --insecure wss://localhost:3443/ws/echo",
    )
    .commands();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(&inline("certs/README.md", line), line);
    }
    lines
}

#[test]
fn readme_and_certs_websocat_insecure_line_echoes_over_tls() {
    let test = "readme_and_certs_websocat_insecure_line_echoes_over_tls";
    let line = &tls_lines()[0];
    if tool_or_skip(test, "websocat", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let shell = Shell::new("websocat-tls");
    let (_server, http, tls) = server_with_tls();
    let mut websocat = shell.start(&at(line, http, Some(tls)));
    websocat.type_line("skip verification");
    websocat.wait_stdout("skip verification");
}

#[test]
fn readme_and_certs_curl_line_verifies_with_the_dev_ca() {
    let test = "readme_and_certs_curl_line_verifies_with_the_dev_ca";
    let line = &tls_lines()[1];
    if tool_or_skip(test, "curl", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let shell = Shell::new("curl-tls");
    let (_server, http, tls) = server_with_tls();
    let curl = shell.run(&at(line, http, Some(tls)));
    curl.assert_success(line);
    let health: serde_json::Value = serde_json::from_str(&curl.stdout).expect("JSON");
    assert_eq!(health["status"], "ok", "{}", curl.stdout);
}

#[test]
fn readme_python_chat_example_chats() {
    let test = "readme_python_chat_example_chats";
    if !python_websockets_or_skip(test) {
        return;
    }
    let shell = Shell::new("python");
    let program = &block("README.md", "import json").commands()[0];
    let server = start();
    let http = server.local_addr();
    let (mut ours, _) = chat(http, "lobby", Some("ours"));
    let py = python(&shell, &at(program, http, None));
    py.wait_stdout("I am py in lobby with");
    let message = next_of_type(&mut ours, "message");
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("py"), Some("hello from Python"))
    );
    say(&mut ours, "hello back");
    py.wait_stdout("ours: hello back");
    // Until the connection closes: the server's shutdown ends the loop.
    close_politely(ours);
    server.shutdown();
    py.finish().assert_success("the README's Python example");
}

#[test]
fn readme_python_tls_example_echoes() {
    let test = "readme_python_tls_example_echoes";
    if !python_websockets_or_skip(test) {
        return;
    }
    let shell = Shell::new("python-tls");
    let program = &block("README.md", "import ssl").commands()[0];
    let (_server, http, tls) = server_with_tls();
    let end = python(&shell, &at(program, http, Some(tls))).finish();
    end.assert_success("the README's Python TLS example");
    assert_eq!(end.stdout.trim(), "hello over TLS");
}

#[test]
fn readme_token_file_server_and_curl_post_a_message() {
    let test = "readme_token_file_server_and_curl_post_a_message";
    let shell = Shell::new("token");
    let lines = block(
        "README.md",
        "mkdir -p ~/.config && (umask 077; head -c 24 /dev/urandom | base64 > ~/.config/switchboard-token)",
    )
    .commands();
    let (start_line, setup) = lines.split_last().expect("commands");
    assert!(
        start_line.starts_with("switchboard --api-token-file "),
        "{start_line}"
    );
    // A fresh account: no ~/.config yet.
    shell
        .run(&setup.join("\n"))
        .assert_success(&setup.join("; "));
    let token_file = shell.home().join(".config/switchboard-token");
    let token = std::fs::read_to_string(&token_file).expect("the token file");
    assert_eq!(
        token.trim().len(),
        32,
        "24 random bytes in base64: {token:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the token is its owner's alone: {mode:o}");

    let served = shell.serve(start_line);
    let (mut ops, _) = chat(served.http, "ops", Some("watcher"));
    if tool_or_skip(test, "curl", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let post = block("README.md", "TOKEN=$(cat ~/.config/switchboard-token)").commands();
    let post = at(&post.join("\n"), served.http, None);
    let answer = shell.run(&post);
    answer.assert_success(&post);
    let stored: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    for (key, value) in [
        ("room", "ops"),
        ("from", "api"),
        ("text", "deploy finished"),
        ("via", "api"),
    ] {
        assert_eq!(stored[key], value, "{key} in {}", answer.stdout);
    }
    let seen = next_of_type(&mut ops, "message");
    assert_eq!(
        (seen["text"].as_str(), seen["id"].clone()),
        (Some("deploy finished"), stored["id"].clone())
    );

    // A file goes the same way: the README's command, run from where the file is.
    let mut picture = b"\x89PNG\r\n\x1a\n".to_vec();
    picture.extend((0..5000u32).map(|i| (i % 251) as u8));
    std::fs::write(shell.home().join("graph.png"), &picture).expect("a picture");
    let post = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\ncd ~\n{}",
        at(&inline("README.md", FILE_POST), served.http, None)
    );
    let answer = shell.run(&post);
    answer.assert_success(&post);
    let stored: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(
        (&stored["file"]["name"], &stored["file"]["size"]),
        (
            &serde_json::json!("graph.png"),
            &serde_json::json!(picture.len())
        ),
        "{}",
        answer.stdout
    );
    assert_eq!(next_of_type(&mut ops, "message")["file"], stored["file"]);

    // And as a form: named and typed by its part, with a caption.
    let post = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\ncd ~\n{}",
        at(&inline("README.md", FORM_POST), served.http, None)
    );
    let answer = shell.run(&post);
    answer.assert_success(&post);
    let stored: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(
        (
            &stored["text"],
            &stored["file"]["name"],
            &stored["file"]["mime"],
            &stored["file"]["size"]
        ),
        (
            &serde_json::json!("nightly build"),
            &serde_json::json!("graph.png"),
            &serde_json::json!("image/png"),
            &serde_json::json!(picture.len())
        ),
        "{}",
        answer.stdout
    );
    let seen = next_of_type(&mut ops, "message");
    assert_eq!(
        (&seen["file"], &seen["text"]),
        (&stored["file"], &stored["text"])
    );

    // The token deletes: the README's command, for the form's message.
    let id = stored["id"].as_u64().expect("an id");
    let delete = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\n{}",
        at(&inline("README.md", API_DELETE), served.http, None)
            .replace("/messages/43", &format!("/messages/{id}"))
    );
    let answer = shell.run(&delete);
    answer.assert_success(&delete);
    let told = serde_json::json!({"type": "deleted", "room": "ops", "id": id, "by": "api"});
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer.stdout).expect("JSON"),
        told,
        "{}",
        answer.stdout
    );
    assert_eq!(next_of_type(&mut ops, "deleted"), told);
    // Who did what to which message, in the log (never the token).
    let logged = served
        .program
        .wait_stderr(&format!("deleted message {id} of room ops (by api)"));
    assert!(!logged.contains(token.trim()), "{logged}");

    // The token mutes: the README's command, for a member of ops.
    let (mut mallory, _) = chat(served.http, "ops", Some("mallory"));
    next_of_type(&mut ops, "join");
    let mute = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\n{}",
        at(&inline("README.md", API_MUTE), served.http, None)
    );
    let answer = shell.run(&mute);
    answer.assert_success(&mute);
    let told: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(
        next_of_type(&mut mallory, "muted"),
        told,
        "{}",
        answer.stdout
    );
    mallory
        .send(tungstenite::Message::text("hello?"))
        .expect("send");
    assert_eq!(next_of_type(&mut mallory, "error")["code"], "muted");

    // The token kicks: the README's command, for a member of ops.
    let kick = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\n{}",
        at(&inline("README.md", API_KICK), served.http, None)
    );
    let answer = shell.run(&kick);
    answer.assert_success(&kick);
    let told: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(
        (&told["type"], &told["name"], &told["reason"]),
        (
            &serde_json::json!("kicked"),
            &serde_json::json!("mallory"),
            &serde_json::json!("flooding")
        ),
        "{}",
        answer.stdout
    );
    assert_eq!(next_of_type(&mut ops, "kicked"), told);
    let close = close_frame(&mut mallory).expect("a Close");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4001, "flooding")
    );
    let logged = served
        .program
        .wait_stderr("api kicked mallory from room ops (flooding)");
    assert!(!logged.contains(token.trim()), "{logged}");

    // The token sets the room: the README's command.
    let set = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\n{}",
        at(&inline("README.md", API_SETTINGS), served.http, None)
    );
    let answer = shell.run(&set);
    answer.assert_success(&set);
    let told: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(next_of_type(&mut ops, "room"), told, "{}", answer.stdout);
    // From another address than mallory's, which the kick keeps out of ops.
    let (mut newcomer, _) = tungstenite::client(
        format!("ws://{}/ws/chat/ops?name=newcomer", served.http),
        tcp_from([127, 0, 0, 5], served.http),
    )
    .expect("handshake");
    let welcome = next_json(&mut newcomer);
    assert_eq!(
        (&welcome["topic"], &welcome["locked"], &welcome["slow_secs"]),
        (
            &serde_json::json!("Week 3: sockets"),
            &serde_json::json!(true),
            &serde_json::json!(30)
        )
    );

    // The token clears the room: the README's command.
    let cleared = format!(
        "TOKEN=$(cat ~/.config/switchboard-token)\n{}",
        at(&inline("README.md", API_CLEAR), served.http, None)
    );
    let answer = shell.run(&cleared);
    answer.assert_success(&cleared);
    let told: serde_json::Value = serde_json::from_str(&answer.stdout).expect("JSON");
    assert_eq!(told["type"], "cleared", "{}", answer.stdout);
    assert_eq!(next_of_type(&mut ops, "cleared"), told);
    let page = get(served.http, "/api/rooms/ops/messages");
    assert!(
        page.contains("\"messages\":[]"),
        "the history is empty: {page}"
    );
}

#[test]
fn readme_password_file_server_and_websocat_with_the_password() {
    let test = "readme_password_file_server_and_websocat_with_the_password";
    let shell = Shell::new("password");
    let lines = block(
        "README.md",
        "mkdir -p ~/.config && (umask 077; echo 'correct horse battery' > ~/.config/switchboard-password)",
    )
    .commands();
    let (start_line, setup) = lines.split_last().expect("commands");
    // A fresh account: no ~/.config yet.
    shell
        .run(&setup.join("\n"))
        .assert_success(&setup.join("; "));
    let served = shell.serve(start_line);
    let addr = served.http;

    // Without the password: 401, and a member with it is unaffected.
    let mut request = format!("ws://{addr}/ws/chat?name=ours")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        "Bearer correct horse battery".parse().unwrap(),
    );
    let (mut ours, _) =
        tungstenite::client(request, tcp(addr)).expect("the password opens the chat");
    next_of_type(&mut ours, "welcome");
    let (head, _) = handshake(addr, upgrade_request("/ws/chat", ""));
    assert_eq!(status(&head), 401, "{head}");

    if tool_or_skip(test, "websocat", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let line = block(
        "README.md",
        "websocat -E --linemode-strip-newlines 'ws://127.0.0.1:3000/ws/chat?name=alice' -H 'Authorization: Bearer correct horse battery'",
    )
    .commands();
    let mut websocat = shell.start(&at(&line[0], addr, None));
    assert_eq!(json_on(&websocat.wait_stdout("welcome"))["name"], "alice");
    websocat.type_line("let in");
    let message = next_of_type(&mut ours, "message");
    assert_eq!(
        (message["from"].as_str(), message["text"].as_str()),
        (Some("alice"), Some("let in"))
    );
}

#[test]
fn readme_admin_password_file_makes_an_admin() {
    let shell = Shell::new("admin");
    // The password's file, as the section before says, then the admin's.
    let password = block(
        "README.md",
        "mkdir -p ~/.config && (umask 077; echo 'correct horse battery' > ~/.config/switchboard-password)",
    )
    .commands();
    let lines = block(
        "README.md",
        "mkdir -p ~/.config && (umask 077; echo 'staple battery horse' > ~/.config/switchboard-admin-password)",
    )
    .commands();
    let (start_line, setup) = lines.split_last().expect("commands");
    let setup = [&password[0], &setup[0]];
    shell
        .run(&setup.map(String::as_str).join("\n"))
        .assert_success(&setup.map(String::as_str).join("; "));
    let served = shell.serve(start_line);
    let addr = served.http;
    let role = |secret: &str| {
        let mut request = format!("ws://{addr}/ws/chat")
            .into_client_request()
            .unwrap();
        let bearer = format!("Bearer {secret}");
        request
            .headers_mut()
            .insert("Authorization", bearer.parse().unwrap());
        let (mut ws, _) = tungstenite::client(request, tcp(addr)).expect("signed in");
        next_of_type(&mut ws, "welcome")["role"].clone()
    };
    assert_eq!(role("staple battery horse"), "admin");
    assert_eq!(role("correct horse battery"), "member");
}

#[test]
fn readme_redis_line_joins_the_cluster() {
    let test = "readme_redis_line_joins_the_cluster";
    let Some(redis) = redis::Redis::start(test) else {
        return;
    };
    let shell = Shell::new("redis");
    let line = &block("README.md", "switchboard --redis redis://10.0.0.5:6379/0").commands()[0];
    let line = line.replace("10.0.0.5:6379", &format!("127.0.0.1:{}", redis.port()));
    let served = shell.serve(&line);
    let health = eventually(|| {
        let health = healthz(served.http);
        (health["redis"] == "up").then_some(health)
    });
    assert_eq!(health["status"], "ok");
    let (mut ws, _) = chat(served.http, "lobby", Some("node"));
    say(&mut ws, "through redis");
    assert_eq!(next_of_type(&mut ws, "message")["text"], "through redis");
}

// ---- docs/how-it-works.md ----

#[test]
fn how_it_works_trace_commands_and_wire_viewer_show_the_bytes() {
    let shell = Shell::new("trace");
    let lines = block(
        "docs/how-it-works.md",
        "cargo run --release -- --no-tls --no-persist --trace-plain",
    )
    .commands();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let served = shell.serve(&lines[0]);
    let addr = served.http;
    let server = &served.program;

    let mut alice = shell.start(&at(&as_built(&lines[1]), addr, None));
    alice.wait_stderr("client -> GET /ws/chat?name=alice HTTP/1.1");
    server.wait_stderr("tcp <- GET /ws/chat?name=alice HTTP/1.1");
    let welcome = json_on(&alice.wait_stdout("welcome"));

    // The wire viewer of the same text, with the id and key of alice's welcome.
    let viewer = block(
        "docs/how-it-works.md",
        "cargo run --release -- connect ws://127.0.0.1:3000/ws/wire/1 --protocol switchboard-wire,switchboard-wire.KEY",
    )
    .commands();
    let viewer = at(&as_built(&viewer[0]), addr, None)
        .replace("/ws/wire/1", &format!("/ws/wire/{}", welcome["wire"]["id"]))
        .replace(
            "switchboard-wire.KEY",
            &format!(
                "switchboard-wire.{}",
                welcome["wire"]["key"].as_str().expect("a key")
            ),
        );
    let viewer = shell.start(&viewer);
    viewer.wait_stdout(r#""line":"GET /ws/chat?name=alice HTTP/1.1""#);

    alice.type_line("hi everyone");
    server.wait_stderr(r#"tcp <- frame FIN=1 RSV=000 TEXT(0x1) MASK=1"#);
    alice.wait_stderr(r#"client -> frame FIN=1 RSV=000 TEXT(0x1) MASK=1"#);
    viewer.wait_stdout(r#""preview":"hi everyone""#);
    alice.finish().assert_success(&lines[1]);
}

#[test]
fn how_it_works_accept_key_by_hand_gives_the_value_shown() {
    let test = "how_it_works_accept_key_by_hand_gives_the_value_shown";
    if tool_or_skip(test, "openssl", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let block = block("docs/how-it-works.md", "printf '%s' '…");
    let shown = block
        .body
        .iter()
        .find_map(|l| l.split_once("# ").map(|(_, value)| value.trim().to_owned()))
        .expect("the value in the comment");
    let shell = Shell::new("accept");
    let end = shell.run(&block.commands()[0]);
    end.assert_success(&block.commands()[0]);
    assert_eq!(end.stdout.trim(), shown);
    // And it is the value the trace above it shows the server answering with.
    assert!(read_doc("docs/how-it-works.md").contains(&format!("Sec-WebSocket-Accept: {shown}")));
}

// ---- certs/README.md ----

#[test]
fn certs_lan_certificate_commands_make_a_set_the_server_serves() {
    let test = "certs_lan_certificate_commands_make_a_set_the_server_serves";
    if tool_or_skip(test, "openssl", "SWITCHBOARD_REQUIRE_TOOLS").is_none() {
        return;
    }
    let lines = block(
        "certs/README.md",
        "certs/generate.sh 192.168.1.20 mybox.local",
    )
    .commands();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // Run on a copy all the same: a fault in the script must not touch the committed set.
    let mut shell = Shell::new("certs");
    let checkout = TempDir::new("certs-checkout");
    std::fs::create_dir(checkout.path().join("certs")).unwrap();
    std::fs::copy(
        certs().join("generate.sh"),
        checkout.path().join("certs/generate.sh"),
    )
    .unwrap();
    shell.cwd = checkout.path().to_owned();
    let committed = std::fs::read(certs().join("ca.pem")).unwrap();

    shell.run(&lines[0]).assert_success(&lines[0]);
    let made = checkout.path().join("certs").join("generated");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(made.join("localhost.pem"))
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&text.stdout);
    for name in [
        "DNS:localhost",
        "IP Address:192.168.1.20",
        "DNS:mybox.local",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }

    let served = shell.serve(&lines[1]);
    let mut stream = tls_to(served.tls.expect("TLS"), &made.join("ca.pem"));
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        status(&read_to_close(&mut stream)),
        200,
        "served with the new set"
    );
    assert_eq!(
        std::fs::read(certs().join("ca.pem")).unwrap(),
        committed,
        "the committed CA is untouched"
    );
}
