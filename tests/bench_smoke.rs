//! `switchboard bench`: every scenario runs end to end against a real server for about
//! a second and reports sane figures. A smoke test, not a measurement: the numbers
//! live in BENCHMARKS.md, never in assertions about speed.

mod common;

use common::*;
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest one scenario may take. Each runs for about a second, so one still running
/// after this hangs, and would otherwise hang the test run with it.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs one scenario with `--json` and returns its JSON line.
fn bench(url: &str, args: &[&str]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--url", url, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are read on threads, so that a child with much to say never blocks on
    // a full pipe while we wait for it.
    let stdout = read_on_a_thread(child.stdout.take().unwrap());
    let stderr = read_on_a_thread(child.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bench {args:?} still running after {} s, killed: {}",
                DEADLINE.as_secs(),
                stderr.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "bench {args:?} failed: {stdout} {stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// All of `pipe`, as text, once the child closes it.
fn read_on_a_thread(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

#[test]
fn every_bench_scenario_runs_and_reports() {
    // The chat scenarios send faster than the default 20 messages a second.
    let server = start_with(|b| {
        b.max_connections_per_ip(1000)
            .rate_per_sec(100_000)
            .rate_burst(100_000)
    });
    let url = format!("ws://{}", server.local_addr());

    let fanout = bench(
        &url,
        &[
            "fanout",
            "--receivers",
            "5",
            "--rate",
            "200",
            "--duration",
            "1",
            "--grace-ms",
            "500",
        ],
    );
    assert_eq!(number(&fanout, "lost"), 0.0, "{fanout}");
    assert_eq!(
        number(&fanout, "deliveries"),
        5.0 * number(&fanout, "messages")
    );
    assert!(number(&fanout, "p99_us") > 0.0);

    let max = bench(
        &url,
        &[
            "fanout-max",
            "--receivers",
            "5",
            "--window",
            "8",
            "--duration",
            "1",
            "--grace-ms",
            "500",
        ],
    );
    assert!(number(&max, "deliveries_per_sec") > 0.0, "{max}");

    let echo = bench(&url, &["echo", "--clients", "2", "--duration", "1"]);
    assert!(number(&echo, "round_trips_per_sec") > 0.0, "{echo}");

    let connect = bench(
        &url,
        &["connect-rate", "--parallel", "2", "--duration", "1"],
    );
    assert!(number(&connect, "handshakes_per_sec") > 0.0, "{connect}");
    assert_eq!(number(&connect, "failed"), 0.0);

    let idle = bench(&url, &["idle", "--connections", "20", "--duration", "1"]);
    assert_eq!(number(&idle, "held"), 20.0, "{idle}");

    let chat_idle = bench(
        &url,
        &[
            "idle",
            "--path",
            "/ws/chat/idle-{i}",
            "--connections",
            "20",
            "--duration",
            "1",
        ],
    );
    assert_eq!(number(&chat_idle, "held"), 20.0, "{chat_idle}");
}

#[test]
fn chat_bench_scenarios_run_and_report() {
    // An in-memory store: the same code as on disk, without the disk.
    let server = start_with(|b| {
        b.max_connections_per_ip(1000)
            .rate_per_sec(100_000)
            .rate_burst(100_000)
    });
    let url = format!("ws://{}", server.local_addr());

    let fanout = bench(
        &url,
        &[
            "chat-fanout",
            "--receivers",
            "5",
            "--rate",
            "200",
            "--duration",
            "1",
            "--grace-ms",
            "500",
        ],
    );
    assert_eq!(number(&fanout, "lost"), 0.0, "{fanout}");
    assert_eq!(
        number(&fanout, "deliveries"),
        5.0 * number(&fanout, "messages")
    );
    assert_eq!(number(&fanout, "unavailable"), 0.0, "{fanout}");
    assert_eq!(number(&fanout, "rate_limited"), 0.0, "{fanout}");
    assert_eq!(number(&fanout, "out_of_order"), 0.0, "{fanout}");
    assert!(number(&fanout, "p99_us") > 0.0);

    let max = bench(
        &url,
        &[
            "chat-max",
            "--senders",
            "2",
            "--window",
            "16",
            "--duration",
            "1",
            "--grace-ms",
            "500",
        ],
    );
    assert!(number(&max, "committed_per_sec") > 0.0, "{max}");
    assert_eq!(number(&max, "committed"), number(&max, "messages"), "{max}");
    assert_eq!(number(&max, "unanswered"), 0.0, "{max}");
    assert!(number(&max, "p50_us") > 0.0);

    // The server's rate limit is told apart from the store.
    let limited = start_with(|b| b.rate_per_sec(5).rate_burst(5));
    let limited_url = format!("ws://{}", limited.local_addr());
    let max = bench(
        &limited_url,
        &[
            "chat-max",
            "--senders",
            "1",
            "--window",
            "4",
            "--duration",
            "1",
        ],
    );
    assert!(number(&max, "rate_limited") > 0.0, "{max}");
    assert_eq!(number(&max, "unavailable"), 0.0, "{max}");
}

#[test]
fn the_upload_scenario_shares_files_and_reports_their_speed() {
    let dir = TempDir::new("bench_upload");
    let server = start_with(|b| b.data_dir(dir.path()));
    let url = format!("ws://{}", server.local_addr());
    let pid = std::process::id().to_string();
    let report = bench(
        &url,
        &["upload", "--mib", "2", "--uploads", "2", "--pid", &pid],
    );
    assert_eq!(number(&report, "uploads"), 2.0, "{report}");
    assert!(number(&report, "median_mb_per_sec") > 0.0, "{report}");
    assert_eq!(report["mb_per_sec"].as_array().map(Vec::len), Some(2));
    // The yardsticks beside it: a plain socket into a file, and another room's chat
    // timed before and during the uploads.
    assert_eq!(
        report["baseline_mb_per_sec"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(number(&report, "ratio_to_baseline") > 0.0, "{report}");
    assert!(number(&report, "other_room_p99_ms_quiet") > 0.0, "{report}");
    assert!(
        report["other_room_samples"][0].as_u64() > Some(5),
        "{report}"
    );
    // Two files of different bytes: both on disk.
    let blobs = std::fs::read_dir(dir.path().join("files/blobs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 2);
}
