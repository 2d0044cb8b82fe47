//! The primitives every stage of the data path stands on, importing nothing above
//! them: the wake-up a thread sleeps on ([`Wake`]), the byte stream the HTTP front and
//! the frame loop are written over ([`Transport`], with [`wait`] and [`linger`]), and
//! the server context every thread reads ([`Context`]).

mod client;
mod context;
mod rate;
mod transport;
mod wake;

pub(crate) use crate::escape::escape;
pub(crate) use client::ClientKey;
pub(crate) use context::{ConnId, Context, Peer};
pub(crate) use rate::RateLimit;
pub(crate) use transport::{Interest, Transport, linger, wait};
pub(crate) use wake::Wake;
