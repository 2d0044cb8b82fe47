//! # switchboard
//!
//! A WebSocket server (RFC 6455) for people on a LAN, people teaching synchronous
//! networking, and people writing integration tests. It is a thread-per-connection,
//! blocking server: easy to read, and fast enough to carry thousands of clients.
//!
//! This page is a tutorial for the third group: running a real server inside your
//! tests. Every example below is a test that runs on each `cargo test`.
//!
//! - [Starting a server in a test](#starting-a-server-in-a-test)
//! - [Talking to each endpoint](#talking-to-each-endpoint)
//! - [`wss://` in a test](#wss-in-a-test)
//! - [Shutting down with clients still connected](#shutting-down-with-clients-still-connected)
//! - [Seeing the trace in a test](#seeing-the-trace-in-a-test)
//!
//! The binary's own code (flags, the `connect` client, the `bench` load generator) sits
//! behind the default `cli` feature; an embedder can depend on
//! `switchboard = { version = "…", default-features = false }` and build none of it.
//!
//! ## Starting a server in a test
//!
//! [`Server::builder`] configures a server, [`ServerBuilder::start`] binds and starts
//! its threads, and the [`ServerHandle`] it returns tells the real address. Listen on
//! `127.0.0.1:0` and the operating system picks a free port, so tests never clash and
//! many servers can run in one process: nothing is global.
//!
//! ```
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use tungstenite::Message;
//!
//! let server = switchboard::Server::builder().listen("127.0.0.1:0").start()?;
//! let addr = server.local_addr();
//!
//! let stream = TcpStream::connect(addr)?;
//! // A bug should fail the test, not hang it.
//! stream.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let (mut ws, _response) = tungstenite::client(format!("ws://{addr}/ws/echo"), stream)?;
//! ws.send(Message::text("hello"))?;
//! assert_eq!(ws.read()?, Message::text("hello"));
//!
//! drop(ws);
//! server.shutdown(); // Close 1001 to every client, every thread joined
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every setting of the binary is a [`Config`] field with a setter of the same name;
//! the builder has the same setters, or takes a whole config with
//! [`Server::with_config`]. [`Server::from_listener`] serves on a `TcpListener` you
//! bound yourself.
//!
//! ## Talking to each endpoint
//!
//! `/ws/chat` (room `lobby`) and `/ws/chat/{room}` speak the JSON chat protocol: the
//! first message is always a `welcome`, then the room's messages, joins and leaves.
//! `/ws/relay/{room}` forwards each message as it is to every *other* member, and
//! `/ws/echo` sends it back. `docs/PROTOCOL.md` in the repository describes every
//! message and field.
//!
//! ```
//! use serde_json::Value;
//! use std::net::{SocketAddr, TcpStream};
//! use std::time::Duration;
//! use tungstenite::{Message, WebSocket};
//!
//! type Client = WebSocket<TcpStream>;
//!
//! fn open(addr: SocketAddr, path: &str) -> Result<Client, Box<dyn std::error::Error>> {
//!     let stream = TcpStream::connect(addr)?;
//!     stream.set_read_timeout(Some(Duration::from_secs(5)))?;
//!     Ok(tungstenite::client(format!("ws://{addr}{path}"), stream)?.0)
//! }
//!
//! /// The next JSON message of a type, skipping the others.
//! fn next(ws: &mut Client, kind: &str) -> Result<Value, Box<dyn std::error::Error>> {
//!     loop {
//!         let value: Value = serde_json::from_str(ws.read()?.to_text()?)?;
//!         if value["type"] == kind {
//!             return Ok(value);
//!         }
//!     }
//! }
//!
//! let server = switchboard::Server::builder().listen("127.0.0.1:0").start()?;
//! let addr = server.local_addr();
//!
//! // Chat: a welcome first, then what the room says, with the sender's name.
//! let mut alice = open(addr, "/ws/chat/rust?name=alice")?;
//! assert_eq!(next(&mut alice, "welcome")?["members"], serde_json::json!(["alice"]));
//! let mut bob = open(addr, "/ws/chat/rust?name=bob")?;
//! next(&mut bob, "welcome")?;
//! bob.send(Message::text(r#"{"type":"message","text":"hi"}"#))?;
//! let message = next(&mut alice, "message")?;
//! assert_eq!((message["from"].as_str(), message["text"].as_str()), (Some("bob"), Some("hi")));
//!
//! // Relay: bytes as they are, to everyone else in the room.
//! let mut a = open(addr, "/ws/relay/pipe")?;
//! let mut b = open(addr, "/ws/relay/pipe")?;
//! a.send(Message::binary(vec![0, 159, 146, 150]))?;
//! assert_eq!(b.read()?, Message::binary(vec![0, 159, 146, 150]));
//!
//! // Echo: straight back.
//! let mut echo = open(addr, "/ws/echo")?;
//! echo.send(Message::text("ping?"))?;
//! assert_eq!(echo.read()?, Message::text("ping?"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## `wss://` in a test
//!
//! [`ServerBuilder::tls_listen`] serves every endpoint over TLS too, with the built-in
//! development certificate unless [`ServerBuilder::tls_identity`] names your own. That
//! certificate is valid for `localhost`, `127.0.0.1` and `::1`, and signed by the
//! development CA in the repository's `certs/ca.pem`, which a test's client trusts:
//!
//! ```
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use tungstenite::Message;
//!
//! let server = switchboard::Server::builder()
//!     .listen("127.0.0.1:0")
//!     .tls_listen("127.0.0.1:0")
//!     .start()?;
//! let addr = server.tls_local_addr().expect("a TLS listener");
//!
//! let ca = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/ca.pem"))?;
//! let connector = native_tls::TlsConnector::builder()
//!     .add_root_certificate(native_tls::Certificate::from_pem(&ca)?)
//!     .build()?;
//! let tcp = TcpStream::connect(addr)?;
//! tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let tls = connector.connect("localhost", tcp)?;
//! let url = format!("wss://localhost:{}/ws/echo", addr.port());
//! let (mut ws, _response) = tungstenite::client(url, tls)?;
//! ws.send(Message::text("over TLS"))?;
//! assert_eq!(ws.read()?, Message::text("over TLS"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Shutting down with clients still connected
//!
//! [`ServerHandle::shutdown`] (or dropping the handle) stops accepting, sends every
//! client a Close with code 1001, waits for their replies, and returns once every
//! thread of the server has ended. A client that never answers is waited for up to
//! [`Config::close_timeout`](field@Config::close_timeout), 5 s by default: set it
//! lower in tests that leave clients hanging.
//!
//! ```
//! use std::net::TcpStream;
//! use std::time::{Duration, Instant};
//! use tungstenite::protocol::frame::coding::CloseCode;
//! use tungstenite::Message;
//!
//! let server = switchboard::Server::builder()
//!     .listen("127.0.0.1:0")
//!     .close_timeout(Duration::from_millis(200))
//!     .start()?;
//! let stream = TcpStream::connect(server.local_addr())?;
//! stream.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let url = format!("ws://{}/ws/echo", server.local_addr());
//! let (mut ws, _response) = tungstenite::client(url, stream)?;
//!
//! // This client reads nothing while the server shuts down.
//! let started = Instant::now();
//! server.shutdown();
//! assert!(started.elapsed() < Duration::from_secs(2), "the close timeout bounds it");
//!
//! // The Close was sent all the same, and says why.
//! let Message::Close(Some(frame)) = ws.read()? else { panic!("expected a Close") };
//! assert_eq!(frame.code, CloseCode::Away);
//! assert_eq!(frame.reason, "server shutting down");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Seeing the trace in a test
//!
//! With [`ServerBuilder::trace`], the server logs every connection's HTTP head and
//! every frame both ways, decoded from the bytes on the wire ([`trace`]). The lines go
//! through the [`log`](https://docs.rs/log) crate at `info` under the target
//! [`trace::TARGET`], so a test sees them only once a logger is installed:
//! `env_logger::builder().is_test(true).try_init()` prints them with the test's
//! output, and a logger of your own can collect them to assert on:
//!
//! ```
//! use std::net::TcpStream;
//! use std::sync::Mutex;
//! use std::time::Duration;
//! use tungstenite::Message;
//!
//! /// Keeps every trace line.
//! struct Collect(Mutex<Vec<String>>);
//!
//! impl log::Log for Collect {
//!     fn enabled(&self, meta: &log::Metadata) -> bool {
//!         meta.target() == switchboard::trace::TARGET
//!     }
//!     fn log(&self, record: &log::Record) {
//!         if self.enabled(record.metadata()) {
//!             self.0.lock().unwrap().push(record.args().to_string());
//!         }
//!     }
//!     fn flush(&self) {}
//! }
//!
//! static LINES: Collect = Collect(Mutex::new(Vec::new()));
//! log::set_logger(&LINES)?;
//! log::set_max_level(log::LevelFilter::Info);
//!
//! let server = switchboard::Server::builder().listen("127.0.0.1:0").trace(true).start()?;
//! let stream = TcpStream::connect(server.local_addr())?;
//! stream.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let url = format!("ws://{}/ws/echo", server.local_addr());
//! let (mut ws, _response) = tungstenite::client(url, stream)?;
//! ws.send(Message::text("traced"))?;
//! ws.read()?;
//! drop(ws);
//! server.shutdown();
//!
//! let lines = LINES.0.lock().unwrap();
//! assert!(lines.iter().any(|l| l.contains("HTTP/1.1 101 Switching Protocols")));
//! // The client's frame, as it crossed the wire: masked, with its key.
//! assert!(lines.iter().any(|l| l.contains("TEXT") && l.contains("MASK=1")), "{lines:#?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod base;
mod chat;
mod cidr;
mod cluster;
mod config;
mod connection;
#[cfg(test)]
mod doc_tables;
mod doors;
mod error;
mod escape;
mod files;
pub mod frame;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod http;
mod hub;
mod listener;
mod metrics;
mod outbox;
mod server;
mod store;
mod tls;
pub mod trace;
mod wire;

pub use config::{Config, DEFAULT_LISTEN, Identity, ProxyHeader, Secret};
pub use error::{Error, Result};
pub use server::{Server, ServerBuilder, ServerHandle};
