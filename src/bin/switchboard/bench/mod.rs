//! `switchboard bench`: a load generator for any WebSocket server with `/ws/relay/{room}`
//! and `/ws/echo` endpoints, and for switchboard's chat (`/ws/chat/{room}`).
//!
//! Every scenario is bounded in count and time and talks only to the URL it is given.
//! Latencies are one-way for the fanout scenarios (sender and receivers live in this
//! process and share a clock), round trips for echo, and send to echo for a chat
//! sender's own message; they go into HDR histograms. A message not received by the
//! end of sending plus a grace period is counted lost, never hidden.
//!
//! The generator must not be what is measured. A relay receiver therefore costs no
//! thread of its own: the receivers are non-blocking sockets shared by one or two
//! threads, each asleep in `epoll` until some socket has bytes, then reading every
//! complete message tungstenite can decode until the socket would block. Under load
//! one `read` then fetches many frames, so the generator gets cheaper per message just
//! when the server is busiest. Each scenario reports the generator's own CPU use and
//! says so when it comes near a full core.
//!
//! One file per scenario; [`room`] is the room the three fanout scenarios share (relay
//! or chat), [`chat`] what the chat scenarios say and hear, [`proc`] reads CPU and
//! memory figures from `/proc`, and this file holds what every scenario uses: the
//! bounds, the clients, the histograms and the report pieces.

mod chat;
mod chat_fanout;
mod chat_max;
mod connect_rate;
mod echo;
mod fanout;
mod fanout_max;
mod idle;
mod proc;
mod room;
mod upload;

use crate::limits::raise_open_file_limit;
use clap::Subcommand;
use hdrhistogram::Histogram;
use proc::ThreadTime;
use serde::Serialize;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::WebSocket;
use tungstenite::protocol::WebSocketConfig;

/// Most connections one scenario opens, so a typo cannot exhaust the machine.
const MAX_CLIENTS: usize = 15_000;
/// Longest run of any scenario.
const MAX_DURATION: u64 = 600;
/// Most threads for the non-blocking clients: the point is that there are few.
const MAX_THREADS: usize = 8;
/// Share of a core at which the generator says it may be the bottleneck.
const SATURATED: f64 = 0.8;
/// Share of the run a generator thread may wait for a CPU before it says so.
const STARVED: f64 = 0.2;
/// Highest latency a histogram records, in nanoseconds.
const HIST_MAX_NS: u64 = 60_000_000_000;

#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// 1 sender and N receivers in a relay room at a fixed rate: one-way latency.
    Fanout(fanout::FanoutArgs),
    /// 1 sender and N receivers in a relay room, sending as fast as a window of
    /// unacknowledged messages allows: deliveries per second.
    FanoutMax(fanout_max::FanoutMaxArgs),
    /// 1 sender and N receivers in a chat room at a fixed rate: one-way latency, each
    /// message stored before it is delivered.
    ChatFanout(chat_fanout::ChatFanoutArgs),
    /// C chat senders, each sending as fast as a window of messages not yet back
    /// allows: messages committed per second.
    ChatMax(chat_max::ChatMaxArgs),
    /// C clients doing send-and-wait round trips on /ws/echo.
    Echo(echo::EchoArgs),
    /// K connections opened and held (echo, or any --path): the server's memory and
    /// CPU while idle.
    Idle(idle::IdleArgs),
    /// C clients in parallel, each opening, handshaking and closing in a loop.
    ConnectRate(connect_rate::ConnectArgs),
    /// Files shared in a chat room one after another: MB/s from the first binary
    /// message to the stored message, and the server's memory meanwhile.
    Upload(upload::UploadArgs),
}

type BoxError = Box<dyn std::error::Error>;

pub(crate) fn run(scenario: Scenario) -> Result<(), BoxError> {
    // Many systems start programs at 1,024 open files, too few for a thousand
    // receivers.
    raise_open_file_limit();
    match scenario {
        Scenario::Fanout(args) => fanout::fanout(&args),
        Scenario::FanoutMax(args) => fanout_max::fanout_max(&args),
        Scenario::ChatFanout(args) => chat_fanout::chat_fanout(&args),
        Scenario::ChatMax(args) => chat_max::chat_max(&args),
        Scenario::Echo(args) => echo::echo(&args),
        Scenario::Idle(args) => idle::idle(&args),
        Scenario::ConnectRate(args) => connect_rate::connect_rate(&args),
        Scenario::Upload(args) => upload::upload(&args),
    }
}

type Client = WebSocket<TcpStream>;

/// The generator's clients read in 32 KiB chunks: big enough that a backlog of small
/// frames comes in one `read`, small enough that 15,000 idle clients stay cheap
/// (tungstenite's default is 128 KiB).
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(32 * 1024)
}

fn connect(base: &str, path: &str) -> io::Result<Client> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let stream = TcpStream::connect_timeout(&resolve(base)?, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    let (ws, _) = tungstenite::client::client_with_config(url, stream, Some(client_config()))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(ws)
}

/// The authority of a `ws://host:port` URL, without path.
fn authority(base: &str) -> &str {
    base.split("://")
        .nth(1)
        .unwrap_or(base)
        .split('/')
        .next()
        .unwrap_or_default()
}

fn resolve(base: &str) -> io::Result<SocketAddr> {
    authority(base)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URL resolves to nothing"))
}

fn check_bounds(clients: usize, duration: u64) -> Result<(), String> {
    if clients == 0 || clients > MAX_CLIENTS {
        return Err(format!("between 1 and {MAX_CLIENTS} connections, please"));
    }
    if duration == 0 || duration > MAX_DURATION {
        return Err(format!("between 1 and {MAX_DURATION} seconds, please"));
    }
    Ok(())
}

fn check_threads(threads: usize) -> Result<(), String> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(format!("between 1 and {MAX_THREADS} threads, please"));
    }
    Ok(())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
struct Percentiles {
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
        Self {
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: (h.max() as f64 / 100.0).round() / 10.0,
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

/// How much CPU the generator itself used over a run.
#[derive(Debug, Serialize)]
struct GeneratorCpu {
    /// The whole generator process, in cores (1.0 = one core busy all the time).
    generator_cpu_share: f64,
    /// The busiest of the generator's working threads, in cores.
    generator_busiest_thread_share: f64,
    /// The longest any working thread sat runnable but waiting for a CPU, as a share
    /// of the run: what the generator lost to the server's threads (or anything else)
    /// on a shared machine, which its CPU use cannot show.
    generator_wait_share: f64,
    /// Either of the two came near a full core: the figures may be the generator's.
    generator_saturated: bool,
}

impl GeneratorCpu {
    fn new(process_secs: f64, threads: ThreadTime, wall: f64) -> Self {
        let share = |s: f64| {
            if wall > 0.0 {
                (s / wall * 100.0).round() / 100.0
            } else {
                0.0
            }
        };
        let (process, thread) = (share(process_secs), share(threads.cpu));
        Self {
            generator_cpu_share: process,
            generator_busiest_thread_share: thread,
            generator_wait_share: share(threads.wait),
            generator_saturated: process >= SATURATED || thread >= SATURATED,
        }
    }

    /// Prints the warning, if there is one: on stdout with the table, on stderr with
    /// JSON (whose one line carries `generator_saturated` as well).
    fn warn(&self, json: bool) {
        let mut notes = Vec::new();
        if self.generator_saturated {
            notes.push(format!(
                "note: the generator used {:.0}% of a core (its busiest thread {:.0}%); \
                 it may be the bottleneck",
                100.0 * self.generator_cpu_share,
                100.0 * self.generator_busiest_thread_share
            ));
        }
        if self.generator_wait_share >= STARVED {
            notes.push(format!(
                "note: a generator thread waited for a CPU {:.0}% of the time; \
                 the figures include that wait",
                100.0 * self.generator_wait_share
            ));
        }
        for note in notes {
            if json {
                eprintln!("{note}");
            } else {
                println!("  {note}");
            }
        }
    }

    fn line(&self) -> String {
        format!(
            "{:.2} cores, busiest thread {:.2}, waiting for a CPU {:.0}% of the time",
            self.generator_cpu_share,
            self.generator_busiest_thread_share,
            100.0 * self.generator_wait_share
        )
    }
}

fn print_json<T: Serialize>(report: &T) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_drops_scheme_and_path() {
        assert_eq!(authority("ws://127.0.0.1:3000/"), "127.0.0.1:3000");
        assert_eq!(authority("wss://localhost:3443/x"), "localhost:3443");
        assert_eq!(authority("127.0.0.1:9"), "127.0.0.1:9");
    }
}
