//! `bench fanout-max`: 1 sender and N receivers in a relay room, sending as fast as
//! a window of unacknowledged messages allows, for deliveries per second.

use super::relay::{ACK_RING, Fanout, FanoutReport};
use super::{BoxError, check_bounds};
use clap::Args;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct FanoutMaxArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Receivers in the room.
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// Messages sent but not yet received by every receiver, at most.
    #[arg(long, default_value_t = 64)]
    window: u64,
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

pub(super) fn fanout_max(args: &FanoutMaxArgs) -> Result<(), BoxError> {
    check_bounds(args.receivers + 1, args.duration)?;
    if args.window == 0 || args.window >= ACK_RING as u64 / 2 {
        return Err(format!("a window between 1 and {}, please", ACK_RING / 2 - 1).into());
    }
    let mut run = Fanout::open(&args.url, args.receivers, args.threads, args.size)?;
    let room = Arc::clone(&run.room);
    let end = Instant::now() + Duration::from_secs(args.duration);
    let first_send_ns = room.now_ns();
    let mut sent = 0;
    let mut outcome = Ok(());
    while Instant::now() < end {
        if sent - room.min_acked() >= args.window {
            // The receiver threads unpark us when the slowest receiver moves on.
            thread::park_timeout(Duration::from_millis(1));
            continue;
        }
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
        "fanout-max",
        args.receivers,
        args.size,
        args.duration,
        (sent, first_send_ns, last_send_ns),
        &totals,
    );
    report.window = Some(args.window);
    report.print(args.json)
}
