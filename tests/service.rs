//! `deploy/switchboard.service`: systemd accepts it, it is hardened, and
//! its `ExecStart` line runs the real binary, which stops cleanly on the unit's
//! `KillSignal` well within its `TimeoutStopSec`, so the unit cannot drift from the
//! CLI unnoticed.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the unit expects the binary; replaced by the one cargo built.
const INSTALLED_BINARY: &str = "/usr/local/bin/switchboard";

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/switchboard.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_file()).expect("deploy/switchboard.service")
}

/// The value of `key=` in the unit (the last one, as systemd takes it for these).
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// The unit with the binary cargo built in place of the installed one, in `dir`.
fn unit_with_real_binary(dir: &Path) -> PathBuf {
    let unit = unit();
    assert!(
        unit.contains(INSTALLED_BINARY),
        "ExecStart no longer runs {INSTALLED_BINARY}"
    );
    let path = dir.join("switchboard.service");
    std::fs::write(
        &path,
        unit.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_switchboard")),
    )
    .unwrap();
    path
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let test = "systemd_analyze_verify_accepts_the_unit";
    let Some(analyze) = tool_or_skip(test, "systemd-analyze", "SWITCHBOARD_REQUIRE_TOOLS") else {
        return;
    };
    let dir = TempDir::new("unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(unit_with_real_binary(dir.path()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("switchboard.service"),
        "no complaint about the unit: {stderr}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let test = "systemd_analyze_security_rates_the_unit_ok";
    let Some(analyze) = tool_or_skip(test, "systemd-analyze", "SWITCHBOARD_REQUIRE_TOOLS") else {
        return;
    };
    let dir = TempDir::new("unit");
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_with_real_binary(dir.path()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for switchboard.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in {stdout}"));
    // systemd calls below 2.0 "OK", its best rating; a default unit scores 9.6.
    assert!(exposure < 2.0, "exposure {exposure}:\n{stdout}");
}

#[test]
fn the_unit_keeps_its_state_in_its_state_directory_as_a_dynamic_user() {
    let unit = unit();
    let exec = setting(&unit, "ExecStart").expect("an ExecStart");
    let state = setting(&unit, "StateDirectory").expect("a StateDirectory");
    assert!(
        exec.contains(&format!("--data /var/lib/{state} ")),
        "--data is the StateDirectory: {exec}"
    );
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(setting(&unit, key).as_deref(), Some(want), "{key}");
    }
    let files: u64 = setting(&unit, "LimitNOFILE").unwrap().parse().unwrap();
    assert!(
        files >= 2 * 10_000 + 32,
        "room for the default 10,000 connections"
    );
}

#[test]
fn the_units_exec_start_runs_the_binary_and_sigterm_stops_it_in_time() {
    let unit = unit();
    let exec = setting(&unit, "ExecStart").expect("an ExecStart");
    // Plain words only, so that splitting on spaces is what systemd does with it.
    assert!(
        !exec.contains(['"', '\'', '$', '%', '\\']),
        "ExecStart needs a real parser now: {exec}"
    );
    let data = TempDir::new("unit-data");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED_BINARY));
    let args: Vec<String> = words
        .map(|w| match w {
            // Its own port, and a data directory of its own.
            "127.0.0.1:3000" => "127.0.0.1:0".to_owned(),
            "/var/lib/switchboard" => data.path().display().to_string(),
            other => other.to_owned(),
        })
        .collect();
    assert!(
        args.iter().any(|a| a == "127.0.0.1:0"),
        "listens on {args:?}"
    );
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("http://") {
                let _ = tx.send(url.trim_end_matches('/').to_owned());
            }
        }
    });
    let url = match rx.recv_timeout(READ_TIMEOUT) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.0.kill();
            let mut stderr = String::new();
            use std::io::Read;
            let _ = child.0.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("the unit's flags did not start a server: {args:?}\n{stderr}");
        }
    };
    let addr: SocketAddr = url.parse().expect("a loopback address in the banner");
    assert_eq!(status(&get(addr, "/healthz")), 200);
    let (mut ws, _) = chat(addr, "lobby", Some("unit"));
    say(&mut ws, "kept in the state directory");
    next_of_type(&mut ws, "message");
    assert!(
        data.path().join("chat.sqlite3").is_file(),
        "history in --data"
    );

    let limit: u64 = setting(&unit, "TimeoutStopSec")
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec in seconds");
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        close_frame(&mut ws).map(|f| u16::from(f.code)),
        Some(1001),
        "clients are told the server is going away"
    );
    drop(ws);
    let status = wait_exit(&mut child.0, Duration::from_secs(limit))
        .expect("stopped within the unit's TimeoutStopSec");
    assert!(
        status.success(),
        "a clean exit, not a failure for Restart=: {status:?}"
    );
    // A client that never answers the Close costs the close timeout (5 s), and the
    // unit must allow for that with room to spare.
    assert!(
        limit >= 15,
        "TimeoutStopSec={limit}s leaves too little room"
    );
    assert!(started.elapsed() < Duration::from_secs(limit));
}
