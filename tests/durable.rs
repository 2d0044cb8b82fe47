//! Durable chat through the binary: `kill -9` in the middle of a burst loses
//! nothing anyone received, a broken store stops the server naming the file, and the
//! default data directory is where the banner says.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Starts the binary on `addr` with history in `data`, and waits until it answers.
fn serve(addr: SocketAddr, data: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", &addr.to_string(), "--no-tls", "--no-qr"])
        .arg("--data")
        .arg(data)
        .args(["--rate-limit", "10000", "--rate-burst", "10000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let running = Running(child);
    eventually(|| std::net::TcpStream::connect(addr).ok());
    running
}

/// Every message of `room`, oldest first, paged backwards with `history`.
fn whole_history(addr: SocketAddr, room: &str) -> Vec<(u64, String)> {
    let (mut ws, _) = chat(addr, room, Some("auditor"));
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut request = json!({"type": "history", "limit": 200});
        if let Some(before) = before {
            request["before"] = json!(before);
        }
        send_json(&mut ws, request);
        let page = next_of_type(&mut ws, "history");
        let messages: Vec<(u64, String)> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["id"].as_u64().unwrap(),
                    m["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        before = messages.first().map(|m| m.0);
        let more = page["more"] == true;
        all.splice(0..0, messages);
        if !more || before.is_none() {
            return all;
        }
    }
}

#[test]
fn kill_9_during_a_burst_loses_no_message_anyone_received() {
    let data = TempDir::new("kill9");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut server = serve(addr, data.path());
    let room = "burst";
    let stop = Arc::new(AtomicBool::new(false));
    // Four clients, each sending as fast as it can and recording what it receives.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = Arc::clone(&stop);
            let (mut ws, _) = chat(addr, room, Some(&format!("c{c}")));
            if let Ok(stream) = Ok::<_, ()>(ws.get_mut()) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
            }
            thread::spawn(move || {
                let mut sent = 0u64;
                let mut received: BTreeMap<u64, String> = BTreeMap::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && sent < 20_000 {
                    if !stop.load(Ordering::Relaxed) {
                        let text = format!("c{c}-{sent}");
                        if ws.send(Message::text(text)).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    match ws.read() {
                        Ok(Message::Text(t)) => {
                            let m: Value = serde_json::from_str(&t).unwrap();
                            if m["type"] == "message" {
                                let id = m["id"].as_u64().unwrap();
                                received.insert(id, m["text"].as_str().unwrap().to_owned());
                            }
                        }
                        Ok(_) => {}
                        Err(e) if timed_out(&e) => {}
                        Err(_) => break, // the server is gone
                    }
                }
                (sent, received)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    server.0.kill().expect("SIGKILL"); // kill -9, in the middle of the burst
    let _ = server.0.wait();
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut received: BTreeMap<u64, String> = BTreeMap::new();
    for client in clients {
        let (s, r) = client.join().expect("a client thread");
        sent += s;
        for (id, text) in r {
            if let Some(seen) = received.insert(id, text.clone()) {
                assert_eq!(seen, text, "two clients saw different texts under id {id}");
            }
        }
    }
    assert!(
        received.len() > 10,
        "the burst delivered almost nothing: {}",
        received.len()
    );

    let server = serve(addr, data.path());
    let history = whole_history(addr, room);
    let ids: Vec<u64> = history.iter().map(|m| m.0).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "history is in id order, each id once");
    let stored: BTreeMap<u64, String> = history.into_iter().collect();
    let lost: Vec<_> = received
        .iter()
        .filter(|(id, text)| stored.get(id) != Some(text))
        .collect();
    eprintln!(
        "kill -9: {sent} sent, {} received by some client, {} found after the restart",
        received.len(),
        stored.len()
    );
    assert!(lost.is_empty(), "received but not kept: {lost:?}");
    // Each client's messages are stored in the order it sent them.
    for c in 0..4 {
        let prefix = format!("c{c}-");
        let order: Vec<u64> = stored
            .values()
            .filter_map(|t| t.strip_prefix(&prefix)?.parse().ok())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "client {c} out of order"
        );
    }
    // No id is reused: the next message gets a new one.
    let (mut late, welcome) = chat(addr, room, Some("late"));
    let last = stored.keys().last().copied().unwrap_or(0);
    assert_eq!(welcome["last_id"].as_u64(), Some(last));
    say(&mut late, "after the crash");
    let next = next_of_type(&mut late, "message");
    assert!(next["id"].as_u64().unwrap() > last, "{next} reuses an id");
    drop(server);
}

#[test]
fn a_store_that_is_not_sqlite_stops_the_binary_naming_the_file() {
    let data = TempDir::new("not-sqlite");
    let file = data.path().join("chat.sqlite3");
    std::fs::write(
        &file,
        "a text file where the store should be; SQLite will not have it ".repeat(4),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--no-tls", "--no-qr"])
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("not a switchboard store"), "{stderr}");
}

#[test]
fn a_store_held_by_a_running_server_stops_the_second_naming_the_file() {
    let data = TempDir::new("held");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _first = serve(addr, data.path());
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--no-tls", "--no-qr"])
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("chat.sqlite3") && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn history_goes_to_the_xdg_data_home_by_default_and_the_banner_says_so() {
    let home = TempDir::new("xdg");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0", "--no-tls", "--no-qr"])
            .env("XDG_DATA_HOME", home.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let banner: BTreeSet<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("Press Ctrl-C"))
        .collect();
    let expected = home.path().join("switchboard").join("chat.sqlite3");
    assert!(
        banner.contains(&format!("Chat history is kept in {}.", expected.display())),
        "{banner:?}"
    );
    assert!(
        expected.is_file(),
        "the store was created at {}",
        expected.display()
    );
}

#[test]
fn no_persist_keeps_nothing_on_disk() {
    let home = TempDir::new("nopersist");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-tls",
            "--no-persist",
            "--data",
            "x",
        ])
        .env("XDG_DATA_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--data and --no-persist conflict"
    );
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--no-tls",
                "--no-qr",
                "--no-persist",
            ])
            .env("XDG_DATA_HOME", home.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let said_memory = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("Press Ctrl-C"))
        .any(|l| l.contains("kept in memory only"));
    assert!(said_memory);
    assert!(!home.path().join("switchboard").exists(), "nothing written");
}

#[test]
fn a_data_directory_others_can_read_is_warned_about_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let data = TempDir::new("open-dir");
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0", "--no-tls", "--no-qr"])
            .arg("--data")
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    // The warning comes before the server serves; a reader thread bounds the wait.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let warning = (0..50)
        .find_map(|_| {
            rx.recv_timeout(Duration::from_millis(200))
                .ok()
                .filter(|l| l.contains("readable by others"))
        })
        .expect("a warning about the data directory");
    assert!(
        warning.contains(&data.path().display().to_string()),
        "{warning}"
    );
    assert!(warning.contains("755"), "{warning}");
    // Its files are private all the same.
    let store = data.path().join("chat.sqlite3");
    // The warning comes first; the file a moment later.
    let mode = eventually(|| std::fs::metadata(&store).ok())
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
