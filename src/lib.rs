//! # switchboard
//!
//! A WebSocket server (RFC 6455) for people on a LAN, people teaching synchronous
//! networking, and people writing integration tests. It is a thread-per-connection,
//! blocking server: easy to read, and fast enough to carry thousands of clients.
//!
//! ## The path a byte takes
//!
//! - [`listener`](crate) — binds, accepts, counts connections, spawns one named thread
//!   per client;
//! - `http` — reads the request head and decides: a page, a rejection with its exact
//!   status, or an upgrade to a WebSocket endpoint;
//! - `connection` — the frame loop, generic over the stream, that sleeps on the socket
//!   and the client's outbox at once;
//! - `hub` — one thread that owns every room, name and history, fed by channels;
//! - `outbox` — the bounded queue (plus wake-up) from the hub back to each client;
//! - `chat` — the JSON chat protocol.
//!
//! ## Starting a server in a test
//!
//! ```
//! use std::net::TcpStream;
//! use tungstenite::Message;
//!
//! let server = switchboard::Server::builder().listen("127.0.0.1:0").start()?;
//! let addr = server.local_addr();
//!
//! let stream = TcpStream::connect(addr)?;
//! let (mut ws, _response) = tungstenite::client(format!("ws://{addr}/ws/echo"), stream)
//!     .expect("handshake");
//! ws.send(Message::text("hello"))?;
//! assert_eq!(ws.read()?, Message::text("hello"));
//!
//! drop(ws);
//! server.shutdown(); // Close 1001 to every client, every thread joined
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Nothing is global: a test process can run as many servers as it likes.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod base;
mod chat;
mod config;
mod connection;
mod error;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod listener;
mod metrics;
mod outbox;
mod server;
mod tls;
pub mod trace;

pub use config::{Config, DEFAULT_LISTEN, Identity};
pub use error::{Error, Result};
pub use server::{Server, ServerBuilder, ServerHandle};
