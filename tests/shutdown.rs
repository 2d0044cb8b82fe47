//! Graceful shutdown. Each test checks the process's threads, so this file has one
//! test per concern and they run one at a time (see `common::serial`).

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;

/// Names of this process's threads that belong to a server.
fn server_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            let name = name.trim().to_owned();
            if name.starts_with("conn-") || name == "hub" || name == "accept" {
                names.push(name);
            }
        }
    }
    names
}

/// Asserts that no server thread is left. `pthread_join` returns when the thread has
/// finished, a moment before the kernel drops it from `/proc/self/task`, so allow
/// that moment.
fn assert_no_server_threads() {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = server_threads();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "server threads left: {left:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` on a thread and fails the test if it has not returned after `limit`: a
/// hang detector, not a speed test.
fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit).expect("finished instead of hanging");
}

#[test]
fn shutdown_sends_1001_to_every_client_and_joins_every_thread() {
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let clients = vec![
        connect(addr, "/ws/echo"),
        connect(addr, "/ws/relay/r"),
        chat(addr, "lobby", Some("a")).0,
        chat(addr, "other", Some("b")).0,
    ];
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| thread::spawn(move || answer_close(ws)))
        .collect();
    assert!(
        server_threads().len() >= 6,
        "accept, hub and four connection threads run"
    );

    within(Duration::from_secs(20), move || server.shutdown());

    for reader in readers {
        assert_eq!(reader.join().unwrap(), Some(CloseCode::Away));
    }
    assert_no_server_threads();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn shutdown_does_not_wait_for_a_client_stuck_in_its_handshake() {
    let _serial = serial();
    // A handshake timeout far longer than the hang detector below.
    let server = start_with(|b| b.handshake_timeout(Duration::from_secs(120)));
    let mut slow = tcp(server.local_addr());
    slow.write_all(b"GET /ws/echo HTTP/1.1\r\nHost: loc")
        .unwrap();
    let mut idle = tcp(server.local_addr());
    idle.flush().unwrap();
    thread::sleep(Duration::from_millis(100));
    within(Duration::from_secs(20), move || server.shutdown());
    assert_no_server_threads();
}

/// The `close_timeout` under test: far enough from the 5 s default to tell them apart.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts a server with `close_timeout` set to [`CLOSE_TIMEOUT`], opens a client with
/// `open` that then never reads or answers again, and asserts that `shutdown()` waited
/// that long for the client's Close reply, and no longer, before it gave up.
fn assert_shutdown_gives_up_after_the_close_timeout(open: impl FnOnce(SocketAddr) -> Client) {
    let server = start_with(|b| b.close_timeout(CLOSE_TIMEOUT));
    let mut mute = open(server.local_addr());
    let started = Instant::now();
    within(Duration::from_secs(20), move || server.shutdown());
    let took = started.elapsed();
    assert!(
        took >= CLOSE_TIMEOUT - Duration::from_millis(50),
        "shutdown took {took:?}: it did not wait {CLOSE_TIMEOUT:?} for the Close reply"
    );
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?}: close_timeout {CLOSE_TIMEOUT:?} was not honoured"
    );
    assert_no_server_threads();
    // What it waited for: the client was sent a Close 1001, which it never read.
    assert_eq!(
        close_frame(&mut mute).map(|f| f.code),
        Some(CloseCode::Away)
    );
}

#[test]
fn shutdown_gives_up_on_a_mute_echo_client_after_the_close_timeout() {
    let _serial = serial();
    // Handshake done, then this client never reads again.
    assert_shutdown_gives_up_after_the_close_timeout(|addr| connect(addr, "/ws/echo"));
}

#[test]
fn shutdown_gives_up_on_a_mute_chat_member_after_the_close_timeout() {
    let _serial = serial();
    // In the room (its welcome read), then this client never reads again.
    assert_shutdown_gives_up_after_the_close_timeout(|addr| chat(addr, "lobby", Some("mute")).0);
}

#[test]
fn dropping_the_handle_shuts_down_too() {
    let _serial = serial();
    let server = start();
    let addr = server.local_addr();
    let ws = connect(addr, "/ws/echo");
    let reader = thread::spawn(move || answer_close(ws));
    within(Duration::from_secs(20), move || drop(server));
    assert_eq!(reader.join().unwrap(), Some(CloseCode::Away));
    assert_no_server_threads();
}

#[test]
fn many_servers_run_side_by_side_in_one_process() {
    let _serial = serial();
    let a = start();
    let b = start();
    assert_ne!(a.local_addr(), b.local_addr());
    let (mut on_a, _) = chat(a.local_addr(), "lobby", Some("same-name"));
    let (on_b, welcome) = chat(b.local_addr(), "lobby", Some("same-name"));
    assert_eq!(welcome["name"], "same-name", "names are per server");
    assert_eq!(
        welcome["members"].as_array().unwrap().len(),
        1,
        "rooms are per server"
    );
    let reader = thread::spawn(move || answer_close(on_b));
    b.shutdown();
    assert_eq!(reader.join().unwrap(), Some(CloseCode::Away));
    say(&mut on_a, "a lives on");
    assert_eq!(next_of_type(&mut on_a, "message")["text"], "a lives on");
}
