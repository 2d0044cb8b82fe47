//! `bench chat-fanout`: 1 sender and N receivers in a chat room at a fixed rate, for
//! one-way latency through the server's store.
//!
//! It is `fanout` over `/ws/chat/{room}`: every message is stored (committed) before
//! the room gets it, so the latency includes the commit. The sender hears its own
//! messages back and reads them, and counts what the server refused: `unavailable`
//! (the store's queue was full, nobody got the message) and `rate_limited` (the
//! server's per-connection limit, which a measurement should raise out of the way).

use super::BoxError;
use super::fanout::paced;
use super::room::{RoomArgs, Wire};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct ChatFanoutArgs {
    /// Messages per second from the sender (the server allows 20 a second per client
    /// unless started with a higher --rate-limit and --rate-burst).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    #[command(flatten)]
    room: RoomArgs,
}

pub(super) fn chat_fanout(args: &ChatFanoutArgs) -> Result<(), BoxError> {
    paced("chat-fanout", Wire::Chat, &args.room, args.rate)?.print(args.room.json)
}
