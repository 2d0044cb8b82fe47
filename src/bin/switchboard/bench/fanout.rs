//! `bench fanout`: 1 sender and N receivers in a relay room at a fixed rate, for
//! one-way latency.

use super::relay::{Fanout, FanoutReport};
use super::{BoxError, check_bounds, histogram};
use clap::Args;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Receivers in the room.
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// Messages per second from the sender.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Payload bytes per message (at least 16: sequence number and send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Milliseconds to wait after the last send before counting what is missing as lost.
    #[arg(long, default_value_t = 1000)]
    grace_ms: u64,
    /// Threads reading the receivers' sockets (epoll).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn fanout(args: &FanoutArgs) -> Result<(), BoxError> {
    check_bounds(args.receivers + 1, args.duration)?;
    if args.rate == 0 {
        return Err("a rate of at least 1 message per second, please".into());
    }
    let total = u64::from(args.rate) * args.duration;
    let mut run = Fanout::open(&args.url, args.receivers, args.threads, args.size)?;
    let room = Arc::clone(&run.room);
    // Message i is due at start + i / rate, whatever happened to message i - 1, so
    // scheduling delays do not add up; how late the sender ran is reported.
    let start = Instant::now();
    let give_up = start + Duration::from_secs(args.duration) + Duration::from_secs(2);
    let first_send_ns = room.now_ns();
    let mut lag = histogram();
    let mut sent = 0;
    let mut outcome = Ok(());
    while sent < total {
        let due = start
            + Duration::from_nanos(
                (u128::from(sent) * 1_000_000_000 / u128::from(args.rate)) as u64,
            );
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            thread::sleep(wait);
        } else if now > give_up {
            break;
        }
        let _ =
            lag.record((Instant::now().saturating_duration_since(due).as_nanos() as u64).max(1));
        if let Err(e) = run.send(sent) {
            outcome = Err(e);
            break;
        }
        sent += 1;
    }
    let last_send_ns = room.now_ns();
    room.finish(sent, Duration::from_millis(args.grace_ms));
    let totals = run.join()?;
    outcome?;
    let mut report = FanoutReport::new(
        "fanout",
        args.receivers,
        args.size,
        args.duration,
        (sent, first_send_ns, last_send_ns),
        &totals,
    );
    report.rate = Some(args.rate);
    report.unsent = Some(total - sent);
    report.sender_lag_p99_us = Some((lag.value_at_quantile(0.99) as f64 / 100.0).round() / 10.0);
    report.sender_lag_max_us = Some((lag.max() as f64 / 100.0).round() / 10.0);
    report.print(args.json)
}
