//! The `switchboard` binary: flags, the start-up banner, and a clean exit on SIGTERM.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

fn switchboard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

#[test]
fn version_prints_the_crate_version() {
    let out = switchboard().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_serve_flag() {
    let out = switchboard().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--tls-listen",
        "--cert",
        "--key",
        "--no-tls",
        "--allow-origin",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-message-size",
        "--handshake-timeout",
        "--ping-interval",
        "--history",
        "--max-text-len",
        "--rate-limit",
        "--rate-burst",
        "--outbox-messages",
        "--outbox-bytes",
        "--trace",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn unknown_flag_fails_with_usage() {
    let out = switchboard().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn bad_key_file_is_a_clear_error_and_a_failure_exit() {
    let certs = certs();
    let out = switchboard()
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .arg("--cert")
        .arg(certs.join("localhost.pem"))
        .arg("--key")
        .arg(certs.join("no-such-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-key.pem") && stderr.contains("cannot read"),
        "stderr was {stderr:?}"
    );
}

#[test]
fn cert_without_key_is_a_usage_error() {
    let out = switchboard().args(["--cert", "x.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn port_in_use_is_a_clear_error_and_a_failure_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = switchboard()
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "stderr was {stderr:?}"
    );
}

/// Kills the child if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_prints_its_url_and_exits_cleanly_on_sigterm() {
    let mut child = Running(
        switchboard()
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner's first URL tells the real port.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = line.trim();
            if let Some(url) = line
                .strip_prefix("http://")
                .or(line.strip_prefix("https://"))
            {
                let _ = tx.send((
                    line.starts_with("https"),
                    url.trim_end_matches('/').to_owned(),
                ));
            }
        }
    });
    let (secure, url) = rx
        .recv_timeout(READ_TIMEOUT)
        .expect("an http URL in the banner");
    assert!(!secure, "the plain URL comes first");
    let addr: SocketAddr = url.parse().unwrap();
    let (secure, url) = rx
        .recv_timeout(READ_TIMEOUT)
        .expect("an https URL in the banner");
    assert!(
        secure && url.parse::<SocketAddr>().is_ok(),
        "then the TLS one: {url}"
    );
    let (mut ws, _) = chat(addr, "lobby", Some("cli"));

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(close_frame(&mut ws).map(|f| u16::from(f.code)), Some(1001));
    drop(ws);
    let status =
        wait_exit(&mut child.0, Duration::from_secs(20)).expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
