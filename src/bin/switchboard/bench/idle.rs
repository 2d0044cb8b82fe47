//! `bench idle`: K connections opened and held, the server's memory and CPU while
//! idle watched from `/proc`.

use super::proc::{rss_kib, threads_cpu_secs};
use super::{BoxError, check_bounds, connect, print_json};
use crate::limits::raise_open_file_limit;
use clap::Args;
use serde::Serialize;
use std::thread;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// The endpoint every connection opens; `{i}` becomes the connection's number
    /// (for example `/ws/chat/idle-{i}`: chat connections, each in a room of its own).
    #[arg(long, default_value = "/ws/echo")]
    path: String,
    /// Connections to open and hold (at most 15,000).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold them, measuring.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The server's process id, to read its memory and CPU time from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct IdleReport {
    scenario: &'static str,
    path: String,
    connections: usize,
    held: usize,
    open_file_limit: Option<u64>,
    idle_secs: u64,
    server_cpu_secs: Option<f64>,
    rss_kib_per_conn: Option<f64>,
}

pub(super) fn idle(args: &IdleArgs) -> Result<(), BoxError> {
    check_bounds(args.connections, args.duration)?;
    if !args.path.starts_with('/') {
        return Err("a --path that starts with /, please".into());
    }
    let (open_file_limit, _) = raise_open_file_limit();
    let rss_before = args.pid.and_then(rss_kib);
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        match connect(&args.url, &args.path.replace("{i}", &i.to_string())) {
            Ok(ws) => held.push(ws),
            Err(e) => {
                eprintln!("connection {i} failed, holding the {i} opened: {e}");
                break;
            }
        }
    }
    // Let the server settle after the burst of handshakes before measuring.
    thread::sleep(Duration::from_secs(1));
    let rss_after = args.pid.and_then(rss_kib);
    let cpu_before = args.pid.and_then(threads_cpu_secs);
    thread::sleep(Duration::from_secs(args.duration));
    let cpu_after = args.pid.and_then(threads_cpu_secs);
    let round4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let report = IdleReport {
        scenario: "idle",
        path: args.path.clone(),
        connections: args.connections,
        held: held.len(),
        open_file_limit,
        idle_secs: args.duration,
        server_cpu_secs: cpu_before.zip(cpu_after).map(|(a, b)| round4(b - a)),
        rss_kib_per_conn: rss_before
            .zip(rss_after)
            .map(|(a, b)| round4(b.saturating_sub(a) as f64 / held.len().max(1) as f64)),
    };
    if args.json {
        print_json(&report)?;
    } else {
        let fmt = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.4}"));
        println!(
            "idle: {} of {} connections to {} held for {} s (open-file limit {})",
            report.held,
            report.connections,
            report.path,
            report.idle_secs,
            open_file_limit.map_or("unlimited".to_owned(), |n| n.to_string())
        );
        println!(
            "  server CPU over the idle window  {} s",
            fmt(report.server_cpu_secs)
        );
        println!(
            "  server resident memory per conn  {} KiB",
            fmt(report.rss_kib_per_conn)
        );
        if args.pid.is_none() {
            println!("  (pass --pid to read the server's CPU and memory)");
        }
    }
    Ok(())
}
