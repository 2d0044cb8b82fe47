//! `switchboard bench`: every scenario runs end to end against a real server for about
//! a second and reports sane figures. A smoke test, not a measurement: the numbers
//! live in BENCHMARKS.md, never in assertions about speed.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

/// Runs one scenario with `--json` and returns its JSON line.
fn bench(url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--url", url, "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout}"));
    serde_json::from_str(line).unwrap()
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

#[test]
fn every_bench_scenario_runs_and_reports() {
    let server = start_with(|b| b.max_connections_per_ip(1000));
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
}
