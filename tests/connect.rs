//! `switchboard connect`: the client binary driven through pipes, against a server in
//! this process. Every wait is bounded, and a client left running is killed.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// How long the client may take to connect, answer, or exit.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running `switchboard connect`, its output read line by line on two threads.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    out: Vec<String>,
    err: Vec<String>,
}

/// How a client ended, and everything it printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Client {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_with_log(args, "warn")
    }

    fn spawn_with_log(args: &[&str], rust_log: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("connect")
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Ends the client's input, as Ctrl-D or the end of a pipe would.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line containing `needle` and returns it.
    fn wait_stdout(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.out.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stdout line with {needle:?}; {}", self.seen()),
            }
        }
    }

    /// What the client printed so far, for a failure message.
    fn seen(&mut self) -> String {
        self.out.extend(self.stdout.try_iter());
        self.err.extend(self.stderr.try_iter());
        format!("stdout: {:?}; stderr: {:?}", self.out, self.err)
    }

    /// Waits for the client to exit and collects the rest of its output.
    fn finish(mut self) -> Finished {
        let Some(status) = wait_exit(&mut self.child, TIMEOUT) else {
            panic!("the client did not exit in time; {}", self.seen());
        };
        // The pipes close when the process is gone: read them to the end.
        for (rx, seen) in [(&self.stdout, &mut self.out), (&self.stderr, &mut self.err)] {
            loop {
                match rx.recv_timeout(TIMEOUT) {
                    Ok(line) => seen.push(line),
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => panic!("output pipe still open"),
                }
            }
        }
        Finished {
            status,
            stdout: self.out.join("\n"),
            stderr: self.err.join("\n"),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines from `pipe`, read on their own thread until it closes.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs a client with `input` as its whole stdin.
fn run_piped(args: &[&str], input: &str) -> Finished {
    let mut client = Client::spawn(args);
    client.write(input);
    client.close_stdin();
    client.finish()
}

/// `HH:MM:SS.mmm < …`
fn is_message_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 15
        && [0, 1, 3, 4, 6, 7, 9, 10, 11]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
        && &line[12..15] == " < "
}

fn ca_pem() -> String {
    certs().join("ca.pem").display().to_string()
}

#[test]
fn piped_lines_are_echoed_and_end_of_input_closes_cleanly() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let done = run_piped(&[&url], "hello\n/binary 00ff10\n/ping hi\n");
    assert!(done.stdout.contains("< hello"), "{}", done.stdout);
    assert!(
        done.stdout.contains("< [binary 3 bytes] 00 ff 10"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains(r#"< pong "hi""#), "{}", done.stdout);
    assert!(
        done.stdout.lines().all(is_message_line),
        "one timestamped message per line: {}",
        done.stdout
    );
    assert!(
        done.stderr.contains(r#"closed: code=1000 reason="""#),
        "{}",
        done.stderr
    );
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn bad_commands_are_reported_and_the_session_goes_on() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let done = run_piped(&[&url], "/nope\n/binary 0g\n//slash\nstill here\n");
    assert!(
        done.stderr.contains("unknown command /nope"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("/binary: 'g' is not a hex digit"),
        "{}",
        done.stderr
    );
    assert!(done.stdout.contains("< /slash"), "{}", done.stdout);
    assert!(done.stdout.contains("< still here"), "{}", done.stdout);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn chat_messages_go_both_ways_between_the_cli_and_another_client() {
    let server = start();
    let addr = server.local_addr();
    let (mut other, _) = chat(addr, "cli-room", Some("tester"));
    let url = format!("ws://{addr}/ws/chat/cli-room?name=cli");
    let mut client = Client::spawn(&["--protocol", "chat.v1", &url]);
    client.wait_stdout(r#""type":"welcome""#);

    client.write("hello from the cli\n");
    let msg = next_of_type(&mut other, "message");
    assert_eq!(msg["from"], "cli");
    assert_eq!(msg["text"], "hello from the cli");

    other.send(Message::text("hi cli")).unwrap();
    let line = client.wait_stdout(r#""text":"hi cli""#);
    assert!(line.contains(r#""from":"tester""#), "{line}");

    client.close_stdin();
    let done = client.finish();
    assert!(
        done.stderr.contains("(subprotocol chat.v1)"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("closed: code=1000"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(0));
}

/// `/file PATH` shares a file in the chat: the room gets a message with the file, and
/// the server serves its bytes back exactly.
#[test]
fn file_shares_a_file_that_the_room_gets_and_the_server_serves() {
    let server = start();
    let addr = server.local_addr();
    let (mut other, _) = chat(addr, "cli-room", Some("tester"));
    let dir = TempDir::new("connect_file");
    let path = dir.path().join("notes v2.txt");
    // Over one binary message of 1 MiB: two of them.
    let bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let url = format!("ws://{addr}/ws/chat/cli-room?name=cli");
    let mut client = Client::spawn(&[&url]);
    client.wait_stdout(r#""type":"welcome""#);
    client.write(&format!("/file {}\n", path.display()));
    let msg = next_of_type(&mut other, "message");
    assert_eq!(
        (
            &msg["from"],
            &msg["file"]["name"],
            &msg["file"]["mime"],
            &msg["file"]["size"]
        ),
        (
            &serde_json::json!("cli"),
            &serde_json::json!("notes v2.txt"),
            &serde_json::json!("text/plain"),
            &serde_json::json!(bytes.len())
        )
    );
    let url = msg["file"]["url"].as_str().expect("a url");
    let answer = {
        use std::io::{Read, Write};
        let mut stream = tcp(addr);
        write!(stream, "GET {url} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    };
    assert!(answer.ends_with(&bytes), "the bytes back exactly");
    client.close_stdin();
    assert_eq!(client.finish().status.code(), Some(0));
}

#[test]
fn close_with_another_code_is_reported_and_exits_3() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let mut client = Client::spawn(&[&url]);
    // stdin stays open: the /close alone ends the session.
    client.write("/close 4000 bye\n");
    let done = client.finish();
    assert!(
        done.stderr.contains(r#"closed: code=4000 reason="bye""#),
        "{}",
        done.stderr
    );
    assert_eq!(done.status.code(), Some(3));
}

#[test]
fn server_shutdown_is_a_clean_close_with_1001() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let mut client = Client::spawn(&[&url]);
    client.write("are you there\n");
    client.wait_stdout("< are you there");
    server.shutdown();
    let done = client.finish();
    assert!(done.stderr.contains("closed: code=1001"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn trace_shows_the_handshake_and_masked_client_frames() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let mut client = Client::spawn_with_log(&["--trace", &url], "switchboard::trace=info");
    client.write("traced\n");
    client.close_stdin();
    let done = client.finish();
    let trace = &done.stderr;
    assert!(trace.contains("client -> GET /ws/echo HTTP/1.1"), "{trace}");
    assert!(trace.contains("client <- HTTP/1.1 101"), "{trace}");
    assert!(
        trace
            .lines()
            .any(|l| l.contains("-> frame") && l.contains("TEXT(0x1) MASK=1")),
        "our frames are masked: {trace}"
    );
    assert!(
        trace
            .lines()
            .any(|l| l.contains("<- frame") && l.contains("MASK=0") && l.contains("\"traced\"")),
        "the server's are not: {trace}"
    );
    assert_eq!(done.status.code(), Some(0));
}

/// `/frag 3 …`: one message in three frames, each masked with its own key, a ping
/// between each two; the server answers the pings in the middle and echoes the
/// message whole. `--trace-plain` prints the trace lines behind the time of day only.
#[test]
fn frag_sends_one_message_in_n_frames_with_pings_between() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let mut client = Client::spawn_with_log(&["--trace-plain", &url], "switchboard::trace=info");
    client.write("/frag 3 hello wörld\n");
    client.wait_stdout("< hello wörld");
    client.close_stdin();
    let done = client.finish();
    let sent: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.contains("client -> frame") && !l.contains("CLOSE"))
        .collect();
    let expected = [
        ("FIN=0 RSV=000 TEXT(0x1) MASK=1", "len=4 (7-bit) \"hell\""),
        (
            "FIN=1 RSV=000 PING(0x9) MASK=1",
            "\"between fragments 1 and 2\"",
        ),
        (
            "FIN=0 RSV=000 CONTINUATION(0x0) MASK=1",
            "len=5 (7-bit) \"o wö\"",
        ),
        (
            "FIN=1 RSV=000 PING(0x9) MASK=1",
            "\"between fragments 2 and 3\"",
        ),
        (
            "FIN=1 RSV=000 CONTINUATION(0x0) MASK=1",
            "len=3 (7-bit) \"rld\"",
        ),
    ];
    assert_eq!(sent.len(), expected.len(), "{}", done.stderr);
    for (line, (head, tail)) in sent.iter().zip(expected) {
        assert!(line.contains(head) && line.contains(tail), "{line}");
        // `HH:MM:SS.mmm client -> …`: no log prefix.
        assert_eq!(&line[2..3], ":", "{line}");
        assert_eq!(&line[8..9], ".", "{line}");
        assert!(!line.contains("INFO"), "{line}");
    }
    let keys: std::collections::HashSet<&str> = sent
        .iter()
        .filter_map(|l| l.split("key=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(
        keys.len(),
        5,
        "a fresh masking key for every frame: {sent:#?}"
    );
    let pongs = done
        .stderr
        .lines()
        .filter(|l| l.contains("client <- frame") && l.contains("PONG(0xa) MASK=0"))
        .count();
    assert_eq!(pongs, 2, "{}", done.stderr);
    assert!(
        done.stderr
            .lines()
            .any(|l| l.contains("client <- frame FIN=1 RSV=000 TEXT(0x1) MASK=0 len=12")),
        "echoed whole: {}",
        done.stderr
    );
    assert_eq!(done.status.code(), Some(0));
}

#[test]
fn header_and_origin_flags_go_into_the_request() {
    let server = start_with(|b| b.allow_origin("http://example.test"));
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let args = [
        "--trace",
        "--header",
        "X-Request-Id: 42",
        "--origin",
        "http://example.test",
        &url,
    ];
    let mut client = Client::spawn_with_log(&args, "switchboard::trace=info");
    client.close_stdin();
    let done = client.finish();
    assert!(
        done.stderr.contains("-> x-request-id: 42"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("-> Origin: http://example.test"),
        "{}",
        done.stderr
    );
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn a_refused_handshake_exits_1_with_the_status() {
    let server = start();
    let url = format!("ws://{}/ws/echo", server.local_addr());
    let done = run_piped(&["--origin", "http://evil.test", &url], "");
    assert!(done.stderr.contains("HTTP 403"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(1));
}

#[test]
fn wss_works_with_the_development_ca() {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let port = server.tls_local_addr().expect("a TLS listener").port();
    let url = format!("wss://localhost:{port}/ws/echo");
    let done = run_piped(&["--ca", &ca_pem(), &url], "over TLS\n");
    assert!(done.stdout.contains("< over TLS"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn wss_without_the_ca_fails_the_certificate_check() {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let port = server.tls_local_addr().expect("a TLS listener").port();
    let url = format!("wss://localhost:{port}/ws/echo");
    let done = run_piped(&[&url], "");
    assert!(done.stderr.contains("TLS handshake"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(1));
}

#[test]
fn wss_insecure_accepts_any_certificate() {
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let addr = server.tls_local_addr().expect("a TLS listener");
    // An IP address the certificate does not name, signed by a CA nobody trusts.
    let url = format!("wss://{addr}/ws/echo");
    let done = run_piped(&["--insecure", &url], "anyway\n");
    assert!(done.stdout.contains("< anyway"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
}

#[test]
fn nothing_listening_exits_1_with_a_clear_message() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws/echo");
    let done = run_piped(&[&url], "");
    assert!(
        done.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("refused"), "{}", done.stderr);
    assert_eq!(done.status.code(), Some(1));
}
