//! Clients nobody here wrote, driven with the README's exact commands: what a user
//! types is what is tested. wscat comes from npm and websocat from crates.io; `.ci/run`
//! installs both.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;
use switchboard::ServerHandle;

/// The README's command line that starts with `program`, with its comment dropped.
fn readme_command(program: &str) -> String {
    let readme = include_str!("../README.md");
    readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{program} ")) && l.contains("/ws/chat"))
        .map(|l| l.split(" #").next().unwrap_or(l).trim().to_owned())
        .unwrap_or_else(|| panic!("no {program} command in the README"))
}

/// A client program running in a shell, its stdout read line by line.
struct Program {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Program {
    /// Runs `command` with the README's address replaced by `addr`.
    fn start(command: &str, addr: SocketAddr) -> Program {
        let command = command.replace("127.0.0.1:3000", &addr.to_string());
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the client starts");
        let stdout = child.stdout.take().expect("a pipe");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Program {
            child,
            stdin,
            lines,
        }
    }

    /// Types a line, as a user would.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("the client reads its input");
        stdin.flush().expect("flush");
    }

    /// The next JSON object the client printed whose `type` is `kind`.
    fn next_of_type(&self, kind: &str) -> serde_json::Value {
        loop {
            let line = self
                .lines
                .recv_timeout(READ_TIMEOUT)
                .unwrap_or_else(|_| panic!("no {kind} printed in time"));
            // wscat puts its prompt ("> ") in front of what it prints.
            let Some(start) = line.find('{') else {
                continue;
            };
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line[start..])
                && value["type"] == kind
            {
                return value;
            }
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One chat both ways between `program`, started with the README's command, and a
/// client of ours in the same room; the program's lines arrive without line ends.
fn chats_both_ways(program: &str, require: &str) -> Option<(ServerHandle, Program)> {
    let test = format!("{program}_chats_with_the_readme_command");
    tool_or_skip(&test, program, require)?;
    let command = readme_command(program);
    let server = start();
    let addr = server.local_addr();
    let room = command
        .split("/ws/chat/")
        .nth(1)
        .and_then(|rest| rest.split('?').next())
        .unwrap_or("lobby");
    let (mut ours, _) = chat(addr, room, Some("ours"));
    let mut theirs = Program::start(&command, addr);
    let welcome = theirs.next_of_type("welcome");
    let name = welcome["name"].as_str().expect("a name").to_owned();
    assert_eq!(next_of_type(&mut ours, "join")["name"], name.as_str());

    theirs.type_line("hello from the terminal");
    let message = next_of_type(&mut ours, "message");
    assert_eq!(message["from"], name.as_str());
    assert_eq!(
        message["text"], "hello from the terminal",
        "the line arrives without its line end"
    );
    say(&mut ours, "hello back");
    let echoed = theirs.next_of_type("message");
    assert_eq!(echoed["text"], "hello from the terminal");
    let back = theirs.next_of_type("message");
    assert_eq!(
        (back["from"].as_str(), back["text"].as_str()),
        (Some("ours"), Some("hello back"))
    );
    Some((server, theirs))
}

#[test]
fn wscat_chats_with_the_readme_command() {
    let Some((_server, mut wscat)) = chats_both_ways("wscat", "SWITCHBOARD_REQUIRE_TOOLS") else {
        return;
    };
    // End of input ends the session.
    drop(wscat.stdin.take());
    assert!(
        wait_exit(&mut wscat.child, Duration::from_secs(10)).is_some(),
        "wscat exits when its input ends"
    );
}

#[test]
fn websocat_chats_with_the_readme_command_and_exits_when_the_server_stops() {
    let Some((server, mut websocat)) = chats_both_ways("websocat", "SWITCHBOARD_REQUIRE_TOOLS")
    else {
        return;
    };
    // -E: the server's Close (Ctrl-C, here shutdown) ends websocat, input still open.
    server.shutdown();
    let status = wait_exit(&mut websocat.child, Duration::from_secs(10))
        .expect("websocat exits when the server closes the connection");
    assert!(status.success(), "{status:?}");
}
