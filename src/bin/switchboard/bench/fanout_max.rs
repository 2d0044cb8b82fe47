//! `bench fanout-max`: 1 sender and N receivers in a relay room, sending as fast as
//! a window of unacknowledged messages allows, for deliveries per second.

use super::BoxError;
use super::room::{ACK_RING, Fanout, FanoutReport, RoomArgs, Wire};
use clap::Args;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub(crate) struct FanoutMaxArgs {
    /// Messages sent but not yet received by every receiver, at most.
    #[arg(long, default_value_t = 64)]
    window: u64,
    #[command(flatten)]
    room: RoomArgs,
}

pub(super) fn fanout_max(args: &FanoutMaxArgs) -> Result<(), BoxError> {
    let room_args = &args.room;
    room_args.check()?;
    if args.window == 0 || args.window >= ACK_RING as u64 / 2 {
        return Err(format!("a window between 1 and {}, please", ACK_RING / 2 - 1).into());
    }
    let mut run = Fanout::open(room_args, Wire::Relay)?;
    let room = Arc::clone(&run.room);
    let end = Instant::now() + Duration::from_secs(room_args.duration);
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
    room.finish(sent, Duration::from_millis(room_args.grace_ms));
    let totals = run.join()?;
    outcome?;
    let mut report = FanoutReport::new(
        "fanout-max",
        Wire::Relay,
        room_args,
        (sent, first_send_ns, last_send_ns),
        &totals,
    );
    report.window = Some(args.window);
    report.print(room_args.json)
}
