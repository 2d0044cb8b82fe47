//! `bench fanout`: 1 sender and N receivers in a relay room at a fixed rate, for
//! one-way latency. The paced sender is [`paced`], which `chat-fanout` shares.

use super::room::{Fanout, FanoutReport, RoomArgs, Wire};
use super::{BoxError, histogram};
use clap::Args;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    /// Messages per second from the sender.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    #[command(flatten)]
    room: RoomArgs,
}

pub(super) fn fanout(args: &FanoutArgs) -> Result<(), BoxError> {
    paced("fanout", Wire::Relay, &args.room, args.rate)?.print(args.room.json)
}

/// Runs a room whose sender sends `rate` messages a second for the run's duration.
pub(super) fn paced(
    scenario: &'static str,
    wire: Wire,
    args: &RoomArgs,
    rate: u32,
) -> Result<FanoutReport, BoxError> {
    args.check()?;
    if rate == 0 {
        return Err("a rate of at least 1 message per second, please".into());
    }
    let total = u64::from(rate) * args.duration;
    let mut run = Fanout::open(args, wire)?;
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
            + Duration::from_nanos((u128::from(sent) * 1_000_000_000 / u128::from(rate)) as u64);
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
        scenario,
        wire,
        args,
        (sent, first_send_ns, last_send_ns),
        &totals,
    );
    report.rate = Some(rate);
    report.unsent = Some(total - sent);
    report.sender_lag_p99_us = Some((lag.value_at_quantile(0.99) as f64 / 100.0).round() / 10.0);
    report.sender_lag_max_us = Some((lag.max() as f64 / 100.0).round() / 10.0);
    Ok(report)
}
