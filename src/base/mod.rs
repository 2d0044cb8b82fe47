//! The primitives every stage of the data path stands on, importing nothing above
//! them: the wake-up a thread sleeps on ([`Wake`]), the byte stream the HTTP front and
//! the frame loop are written over ([`Transport`], with [`wait`] and [`linger`]), and
//! the server context every thread reads ([`Context`]).

mod client;
mod context;
mod random;
mod rate;
mod transport;
mod wake;

pub(crate) use crate::escape::escape;
pub(crate) use client::ClientKey;
#[cfg(test)]
pub(crate) use context::own_names;
pub(crate) use context::{ConnId, Context, ContextParts, Peer, READ_BUFFER, name_of};
pub(crate) use random::{key_bytes, new_epoch, random_hex32};
pub(crate) use rate::RateLimit;
pub(crate) use transport::{Interest, Transport, linger, wait};
pub(crate) use wake::Wake;

/// A sign-in session's identity: 128 random bits, carried in its cookie.
pub(crate) type SessionId = [u8; 16];

/// Seconds since the Unix epoch by the system clock (0 if it is set before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, in milliseconds since the Unix epoch: the time stamps of chat events.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
