//! `switchboard bench`: a load generator for any WebSocket server with `/ws/relay/{room}`
//! and `/ws/echo` endpoints.
//!
//! Every scenario is bounded in count and time and talks only to the URL it is given.
//! Latencies are one-way for the relay scenarios (sender and receivers live in this
//! process and share a clock) and round trips for echo; they go into HDR histograms.
//! A relayed message not received by the end of sending plus a grace period is
//! counted lost, never hidden.
//!
//! The generator must not be what is measured. A relay receiver therefore costs no
//! thread of its own: the receivers are non-blocking sockets shared by one or two
//! threads, each asleep in `epoll` until some socket has bytes, then reading every
//! complete message tungstenite can decode until the socket would block. Under load
//! one `read` then fetches many frames, so the generator gets cheaper per message just
//! when the server is busiest. Each scenario reports the generator's own CPU use and
//! says so when it comes near a full core.

use crate::limits::raise_open_file_limit;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use serde::Serialize;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message, WebSocket};

/// Most connections one scenario opens, so a typo cannot exhaust the machine.
const MAX_CLIENTS: usize = 15_000;
/// Longest run of any scenario.
const MAX_DURATION: u64 = 600;
/// Most threads for the non-blocking clients: the point is that there are few.
const MAX_THREADS: usize = 8;
/// Sequence number of a probe: a message that proves a receiver is in the room before
/// the measured messages start. Never counted.
const PROBE: u64 = u64::MAX;
/// Messages the fanout-max acknowledgement ring tracks at once (a power of two, far
/// above any useful window).
const ACK_RING: usize = 1 << 16;
/// Share of a core at which the generator says it may be the bottleneck.
const SATURATED: f64 = 0.8;
/// Share of the run a generator thread may wait for a CPU before it says so.
const STARVED: f64 = 0.2;
/// Highest latency a histogram records, in nanoseconds.
const HIST_MAX_NS: u64 = 60_000_000_000;

#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// 1 sender and N receivers in a relay room at a fixed rate: one-way latency.
    Fanout(FanoutArgs),
    /// 1 sender and N receivers in a relay room, sending as fast as a window of
    /// unacknowledged messages allows: deliveries per second.
    FanoutMax(FanoutMaxArgs),
    /// C clients doing send-and-wait round trips on /ws/echo.
    Echo(EchoArgs),
    /// K connections opened and held: the server's memory and CPU while idle.
    Idle(IdleArgs),
    /// C clients in parallel, each opening, handshaking and closing in a loop.
    ConnectRate(ConnectArgs),
}

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

#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Clients, each with one message in flight at a time.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Threads driving the clients when there is more than one (epoll).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Connections to open and hold (at most 15,000).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold them, measuring.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The server's process id, to read its memory and CPU time from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Server base URL, `ws://` or `wss://`.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// For wss://: trust this PEM CA certificate (instead of the system's).
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// For wss://: accept any certificate.
    #[arg(long)]
    insecure: bool,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

type BoxError = Box<dyn std::error::Error>;

pub(crate) fn run(scenario: Scenario) -> Result<(), BoxError> {
    // Many systems start programs at 1,024 open files, too few for a thousand
    // receivers.
    raise_open_file_limit();
    match scenario {
        Scenario::Fanout(args) => fanout(&args),
        Scenario::FanoutMax(args) => fanout_max(&args),
        Scenario::Echo(args) => echo(&args),
        Scenario::Idle(args) => idle(&args),
        Scenario::ConnectRate(args) => connect_rate(&args),
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

// ---------------------------------------------------------------------------------
// Relay room: one paced or windowed sender, receivers on a few epoll threads.
// ---------------------------------------------------------------------------------

/// What the sender and the receiver threads share.
struct Room {
    /// The clock every timestamp counts from, in nanoseconds.
    epoch: Instant,
    /// Measured messages sent; final once `stop_at_ns` is set.
    sent: AtomicU64,
    /// When receivers stop waiting (last send plus grace); `u64::MAX` while sending.
    stop_at_ns: AtomicU64,
    /// Receivers that have heard a probe, so are surely in the room.
    probed: AtomicUsize,
    /// Per receiver thread: every message below this was received by all its receivers.
    acked: Vec<AtomicU64>,
    /// Woken when `acked` moves, for the windowed sender.
    sender: Thread,
}

impl Room {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn min_acked(&self) -> u64 {
        self.acked
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Sending is over: receivers finish when they have everything or `grace` passes.
    fn finish(&self, sent: u64, grace: Duration) {
        self.sent.store(sent, Ordering::Release);
        let stop = self.now_ns() + grace.as_nanos() as u64;
        self.stop_at_ns.store(stop, Ordering::Release);
    }
}

/// One receiver's state inside a receiver thread.
struct Receiver {
    ws: Client,
    last_seq: Option<u64>,
    probed: bool,
    open: bool,
}

/// What one receiver thread saw.
struct Tally {
    latencies: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    closed: u64,
    last_delivery_ns: u64,
    time: ThreadTime,
}

/// Counts, per message, how many of this thread's receivers have it, and advances the
/// acknowledged mark past messages every one of them has.
struct AckRing {
    reached: Vec<u32>,
    acked: u64,
    members: u32,
}

impl AckRing {
    fn new(members: usize) -> Self {
        Self {
            reached: vec![0; ACK_RING],
            acked: 0,
            members: members as u32,
        }
    }

    fn record(&mut self, seq: u64) {
        if seq >= self.acked && seq - self.acked < ACK_RING as u64 {
            self.reached[seq as usize % ACK_RING] += 1;
        }
        while self.reached[self.acked as usize % ACK_RING] == self.members {
            self.reached[self.acked as usize % ACK_RING] = 0;
            self.acked += 1;
        }
    }
}

fn receive_loop(sockets: Vec<Client>, room: &Room, slot: usize) -> io::Result<Tally> {
    let time_before = ThreadTime::now();
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut receivers = Vec::with_capacity(sockets.len());
    for (i, ws) in sockets.into_iter().enumerate() {
        ws.get_ref().set_nonblocking(true)?;
        // Edge-triggered: every wake-up reads until the socket would block anyway.
        epoll::add(
            &epoll,
            ws.get_ref(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET,
        )?;
        receivers.push(Receiver {
            ws,
            last_seq: None,
            probed: false,
            open: true,
        });
    }
    let members = receivers.len() as u64;
    let mut ring = AckRing::new(receivers.len());
    let mut tally = Tally {
        latencies: histogram(),
        delivered: 0,
        out_of_order: 0,
        closed: 0,
        last_delivery_ns: 0,
        time: ThreadTime::default(),
    };
    let mut events = Vec::with_capacity(256);
    loop {
        let stop_at = room.stop_at_ns.load(Ordering::Acquire);
        let now = room.now_ns();
        if now >= stop_at
            || (stop_at != u64::MAX
                && tally.delivered >= room.sent.load(Ordering::Acquire) * members)
        {
            break;
        }
        let wait_ns = stop_at.saturating_sub(now).min(10_000_000);
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: wait_ns as _,
        };
        events.clear();
        match epoll::wait(&epoll, spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let data = event.data;
            let r = &mut receivers[data.u64() as usize];
            if !r.open {
                continue;
            }
            loop {
                let data = match r.ws.read() {
                    Ok(Message::Binary(data)) => data,
                    Ok(_) => continue,
                    Err(e) if is_would_block(&e) => break,
                    Err(_) => {
                        r.open = false;
                        tally.closed += 1;
                        let _ = epoll::delete(&epoll, r.ws.get_ref());
                        break;
                    }
                };
                let (Some(seq), Some(sent_ns)) = (be_u64(&data, 0), be_u64(&data, 8)) else {
                    continue;
                };
                if seq == PROBE {
                    if !r.probed {
                        r.probed = true;
                        room.probed.fetch_add(1, Ordering::AcqRel);
                    }
                    continue;
                }
                let now_ns = room.now_ns();
                if r.last_seq.is_some_and(|last| seq <= last) {
                    tally.out_of_order += 1;
                }
                r.last_seq = Some(seq);
                tally.delivered += 1;
                tally.last_delivery_ns = now_ns;
                let _ = tally
                    .latencies
                    .record(now_ns.saturating_sub(sent_ns).clamp(1, HIST_MAX_NS));
                ring.record(seq);
            }
        }
        if ring.acked != room.acked[slot].load(Ordering::Relaxed) {
            room.acked[slot].store(ring.acked, Ordering::Release);
            room.sender.unpark();
        }
    }
    tally.time = ThreadTime::now().since(time_before);
    Ok(tally)
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// A relay room with receivers listening on their threads and the sender connected,
/// every receiver proven to be in the room.
struct Fanout {
    room: Arc<Room>,
    sender: Client,
    threads: Vec<thread::JoinHandle<io::Result<Tally>>>,
    receivers: usize,
    size: usize,
    process_cpu_before: f64,
}

/// What a whole relay run saw.
struct FanoutTotals {
    latencies: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    closed: u64,
    last_delivery_ns: u64,
    busiest_thread: ThreadTime,
    process_cpu_secs: f64,
}

impl Fanout {
    fn open(url: &str, receivers: usize, threads: usize, size: usize) -> Result<Self, BoxError> {
        check_threads(threads)?;
        let path = format!("/ws/relay/bench-{}", std::process::id());
        let mut groups: Vec<Vec<Client>> = (0..threads.min(receivers)).map(|_| vec![]).collect();
        for i in 0..receivers {
            let ws = connect(url, &path).map_err(|e| format!("receiver {i}: {e}"))?;
            let n = groups.len();
            groups[i % n].push(ws);
        }
        let sender = connect(url, &path).map_err(|e| format!("sender: {e}"))?;
        sender
            .get_ref()
            .set_write_timeout(Some(Duration::from_secs(5)))?;
        let room = Arc::new(Room {
            epoch: Instant::now(),
            sent: AtomicU64::new(0),
            stop_at_ns: AtomicU64::new(u64::MAX),
            probed: AtomicUsize::new(0),
            acked: groups.iter().map(|_| AtomicU64::new(0)).collect(),
            sender: thread::current(),
        });
        let process_cpu_before = process_cpu_secs();
        let handles = groups
            .into_iter()
            .enumerate()
            .map(|(slot, sockets)| {
                let room = Arc::clone(&room);
                thread::Builder::new()
                    .name(format!("bench-rx-{slot}"))
                    .spawn(move || receive_loop(sockets, &room, slot))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut fanout = Self {
            room,
            sender,
            threads: handles,
            receivers,
            size: size.max(16),
            process_cpu_before,
        };
        if let Err(e) = fanout.probe() {
            fanout.room.finish(0, Duration::ZERO);
            let _ = fanout.join();
            return Err(e);
        }
        Ok(fanout)
    }

    /// Sends probes until every receiver has heard one: a server may add a member to
    /// its room a moment after the handshake, and a message sent before would be lost
    /// for reasons that have nothing to do with load.
    fn probe(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.room.probed.load(Ordering::Acquire) < self.receivers {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {} receivers heard the sender within 5 s; is this a relay endpoint?",
                    self.room.probed.load(Ordering::Acquire),
                    self.receivers
                )
                .into());
            }
            self.send(PROBE)?;
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Sends message `seq`, stamped with the time just before the write.
    fn send(&mut self, seq: u64) -> Result<(), BoxError> {
        let mut payload = vec![0u8; self.size];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..16].copy_from_slice(&self.room.now_ns().to_be_bytes());
        self.sender.send(Message::binary(payload))?;
        Ok(())
    }

    fn join(self) -> Result<FanoutTotals, BoxError> {
        let mut totals = FanoutTotals {
            latencies: histogram(),
            delivered: 0,
            out_of_order: 0,
            closed: 0,
            last_delivery_ns: 0,
            busiest_thread: ThreadTime::default(),
            process_cpu_secs: 0.0,
        };
        for handle in self.threads {
            let t = handle.join().map_err(|_| "a receiver thread panicked")??;
            totals.latencies.add(&t.latencies)?;
            totals.delivered += t.delivered;
            totals.out_of_order += t.out_of_order;
            totals.closed += t.closed;
            totals.last_delivery_ns = totals.last_delivery_ns.max(t.last_delivery_ns);
            totals.busiest_thread = totals.busiest_thread.max(t.time);
        }
        totals.process_cpu_secs = process_cpu_secs() - self.process_cpu_before;
        Ok(totals)
    }
}

#[derive(Debug, Serialize)]
struct FanoutReport {
    scenario: &'static str,
    receivers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<u64>,
    size: usize,
    duration_secs: u64,
    messages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsent: Option<u64>,
    messages_per_sec: f64,
    expected: u64,
    deliveries: u64,
    deliveries_per_sec: f64,
    lost: u64,
    out_of_order: u64,
    closed_receivers: u64,
    #[serde(flatten)]
    latency: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_lag_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_lag_max_us: Option<f64>,
    #[serde(flatten)]
    cpu: GeneratorCpu,
}

impl FanoutReport {
    fn new(
        scenario: &'static str,
        receivers: usize,
        size: usize,
        duration: u64,
        (sent, first_send_ns, last_send_ns): (u64, u64, u64),
        totals: &FanoutTotals,
    ) -> Self {
        let expected = sent * receivers as u64;
        let send_secs = (last_send_ns.saturating_sub(first_send_ns)) as f64 / 1e9;
        // From the first send to the last delivery: the span the server was delivering.
        let deliver_secs = (totals.last_delivery_ns.saturating_sub(first_send_ns)) as f64 / 1e9;
        let per_sec = |n: u64, secs: f64| {
            if secs > 0.0 {
                (n as f64 / secs).round()
            } else {
                0.0
            }
        };
        let wall =
            (totals.last_delivery_ns.max(last_send_ns)).saturating_sub(first_send_ns) as f64 / 1e9;
        Self {
            scenario,
            receivers,
            rate: None,
            window: None,
            size: size.max(16),
            duration_secs: duration,
            messages: sent,
            unsent: None,
            messages_per_sec: per_sec(sent, send_secs),
            expected,
            deliveries: totals.delivered,
            deliveries_per_sec: per_sec(totals.delivered, deliver_secs),
            lost: expected.saturating_sub(totals.delivered),
            out_of_order: totals.out_of_order,
            closed_receivers: totals.closed,
            latency: Percentiles::of(&totals.latencies),
            sender_lag_p99_us: None,
            sender_lag_max_us: None,
            cpu: GeneratorCpu::new(totals.process_cpu_secs, totals.busiest_thread, wall),
        }
    }

    fn print(&self, json: bool) -> Result<(), BoxError> {
        if json {
            print_json(self)?;
        } else {
            match (self.rate, self.window) {
                (Some(rate), _) => println!(
                    "fanout: 1 sender -> {} receivers, {rate} msg/s for {} s, {} B",
                    self.receivers, self.duration_secs, self.size
                ),
                (_, window) => println!(
                    "fanout-max: 1 sender -> {} receivers, window {} for {} s, {} B",
                    self.receivers,
                    window.unwrap_or_default(),
                    self.duration_secs,
                    self.size
                ),
            }
            println!(
                "  messages     {} sent ({:.0}/s){}",
                self.messages,
                self.messages_per_sec,
                self.unsent
                    .filter(|&n| n > 0)
                    .map_or(String::new(), |n| format!(", {n} not sent in time"))
            );
            println!(
                "  deliveries   {} of {} ({:.0}/s)",
                self.deliveries, self.expected, self.deliveries_per_sec
            );
            println!("  lost         {}", self.lost);
            println!("  out of order {}", self.out_of_order);
            if self.closed_receivers > 0 {
                println!("  closed       {} receivers", self.closed_receivers);
            }
            println!("  latency us   {}", self.latency.line());
            if let (Some(p99), Some(max)) = (self.sender_lag_p99_us, self.sender_lag_max_us) {
                println!("  sender lag   p99 {p99:.1} us  max {max:.1} us (behind schedule)");
            }
            println!("  generator    {}", self.cpu.line());
        }
        self.cpu.warn(json);
        Ok(())
    }
}

fn fanout(args: &FanoutArgs) -> Result<(), BoxError> {
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

fn fanout_max(args: &FanoutMaxArgs) -> Result<(), BoxError> {
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

// ---------------------------------------------------------------------------------
// Echo: send and wait, C clients.
// ---------------------------------------------------------------------------------

/// What echo clients saw.
struct EchoTally {
    rtts: Histogram<u64>,
    round_trips: u64,
    unanswered: u64,
    wrong: u64,
    time: ThreadTime,
}

impl EchoTally {
    fn new() -> Self {
        Self {
            rtts: histogram(),
            round_trips: 0,
            unanswered: 0,
            wrong: 0,
            time: ThreadTime::default(),
        }
    }
}

#[derive(Debug, Serialize)]
struct EchoReport {
    scenario: &'static str,
    clients: usize,
    size: usize,
    duration_secs: u64,
    round_trips: u64,
    round_trips_per_sec: f64,
    unanswered: u64,
    wrong_replies: u64,
    #[serde(flatten)]
    latency: Percentiles,
    #[serde(flatten)]
    cpu: GeneratorCpu,
}

fn echo(args: &EchoArgs) -> Result<(), BoxError> {
    check_bounds(args.clients, args.duration)?;
    check_threads(args.threads)?;
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        clients.push(connect(&args.url, "/ws/echo").map_err(|e| format!("client {i}: {e}"))?);
    }
    let payload = Bytes::from(vec![b'x'; args.size]);
    let process_before = process_cpu_secs();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let mut tally = EchoTally::new();
    let mut busiest = ThreadTime::default();
    if args.clients == 1 {
        // One client: a blocking socket is the shortest path, one write and one read.
        let ws = clients.pop().expect("one client");
        tally = echo_blocking(ws, &payload, end)?;
        busiest = tally.time;
    } else {
        let threads = args.threads.min(args.clients);
        let mut groups: Vec<Vec<Client>> = (0..threads).map(|_| vec![]).collect();
        for (i, ws) in clients.into_iter().enumerate() {
            groups[i % threads].push(ws);
        }
        let handles = groups
            .into_iter()
            .enumerate()
            .map(|(slot, group)| {
                let payload = payload.clone();
                thread::Builder::new()
                    .name(format!("bench-echo-{slot}"))
                    .spawn(move || echo_loop(group, &payload, end))
            })
            .collect::<io::Result<Vec<_>>>()?;
        for handle in handles {
            let t = handle.join().map_err(|_| "an echo thread panicked")??;
            tally.rtts.add(&t.rtts)?;
            tally.round_trips += t.round_trips;
            tally.unanswered += t.unanswered;
            tally.wrong += t.wrong;
            busiest = busiest.max(t.time);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let report = EchoReport {
        scenario: "echo",
        clients: args.clients,
        size: args.size,
        duration_secs: args.duration,
        round_trips: tally.round_trips,
        round_trips_per_sec: (tally.round_trips as f64 / args.duration as f64).round(),
        unanswered: tally.unanswered,
        wrong_replies: tally.wrong,
        latency: Percentiles::of(&tally.rtts),
        cpu: GeneratorCpu::new(process_cpu_secs() - process_before, busiest, wall),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "echo: {} client{}, {} B, for {} s against {}",
            args.clients,
            if args.clients == 1 { "" } else { "s" },
            args.size,
            args.duration,
            args.url
        );
        println!(
            "  round trips  {} ({:.0}/s), {} unanswered at the end, {} wrong",
            report.round_trips, report.round_trips_per_sec, report.unanswered, report.wrong_replies
        );
        println!("  RTT us       {}", report.latency.line());
        println!("  generator    {}", report.cpu.line());
    }
    report.cpu.warn(args.json);
    Ok(())
}

fn echo_blocking(mut ws: Client, payload: &Bytes, end: Instant) -> Result<EchoTally, BoxError> {
    let time_before = ThreadTime::now();
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tally = EchoTally::new();
    while Instant::now() < end {
        let began = Instant::now();
        ws.send(Message::Binary(payload.clone()))?;
        let reply = loop {
            match ws.read()? {
                Message::Binary(data) => break data,
                Message::Text(text) => break Bytes::from(text),
                _ => {}
            }
        };
        let _ = tally
            .rtts
            .record((began.elapsed().as_nanos() as u64).clamp(1, HIST_MAX_NS));
        tally.round_trips += 1;
        if reply.len() != payload.len() {
            tally.wrong += 1;
        }
    }
    tally.time = ThreadTime::now().since(time_before);
    Ok(tally)
}

/// One echo client inside an echo thread.
struct EchoClient {
    ws: Client,
    /// When the message in flight was sent, if one is.
    in_flight: Option<Instant>,
    /// tungstenite holds bytes the socket would not take yet.
    unflushed: bool,
    open: bool,
}

impl EchoClient {
    fn send(&mut self, payload: &Bytes) -> Result<(), tungstenite::Error> {
        self.in_flight = Some(Instant::now());
        match self.ws.send(Message::Binary(payload.clone())) {
            Err(e) if is_would_block(&e) => {
                self.unflushed = true;
                Ok(())
            }
            other => other,
        }
    }
}

fn echo_loop(sockets: Vec<Client>, payload: &Bytes, end: Instant) -> io::Result<EchoTally> {
    let time_before = ThreadTime::now();
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut clients = Vec::with_capacity(sockets.len());
    let mut tally = EchoTally::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        ws.get_ref().set_nonblocking(true)?;
        epoll::add(
            &epoll,
            ws.get_ref(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN
                | epoll::EventFlags::OUT
                | epoll::EventFlags::RDHUP
                | epoll::EventFlags::ET,
        )?;
        let mut client = EchoClient {
            ws,
            in_flight: None,
            unflushed: false,
            open: true,
        };
        if client.send(payload).is_err() {
            client.open = false;
        }
        clients.push(client);
    }
    // Replies still on their way at the end get a short grace before counting as
    // unanswered.
    let give_up = end + Duration::from_secs(1);
    let mut events = Vec::with_capacity(64);
    loop {
        let now = Instant::now();
        let waiting = clients
            .iter()
            .filter(|c| c.open && c.in_flight.is_some())
            .count();
        if now >= give_up || (now >= end && waiting == 0) {
            tally.unanswered = waiting as u64;
            break;
        }
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        events.clear();
        match epoll::wait(&epoll, spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let data = event.data;
            let c = &mut clients[data.u64() as usize];
            if !c.open {
                continue;
            }
            if c.unflushed {
                match c.ws.flush() {
                    Ok(()) => c.unflushed = false,
                    Err(e) if is_would_block(&e) => {}
                    Err(_) => c.open = false,
                }
            }
            while c.open {
                let reply = match c.ws.read() {
                    Ok(Message::Binary(data)) => data,
                    Ok(Message::Text(text)) => Bytes::from(text),
                    Ok(_) => continue,
                    Err(e) if is_would_block(&e) => break,
                    Err(_) => {
                        c.open = false;
                        break;
                    }
                };
                let Some(sent) = c.in_flight.take() else {
                    tally.wrong += 1;
                    continue;
                };
                let _ = tally
                    .rtts
                    .record((sent.elapsed().as_nanos() as u64).clamp(1, HIST_MAX_NS));
                tally.round_trips += 1;
                if reply.len() != payload.len() {
                    tally.wrong += 1;
                }
                if Instant::now() < end && c.send(payload).is_err() {
                    c.open = false;
                }
            }
            if !c.open {
                let _ = epoll::delete(&epoll, c.ws.get_ref());
            }
        }
    }
    tally.time = ThreadTime::now().since(time_before);
    Ok(tally)
}

// ---------------------------------------------------------------------------------
// Idle: many connections held, the server watched from /proc.
// ---------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct IdleReport {
    scenario: &'static str,
    connections: usize,
    held: usize,
    open_file_limit: Option<u64>,
    idle_secs: u64,
    server_cpu_secs: Option<f64>,
    rss_kib_per_conn: Option<f64>,
}

fn idle(args: &IdleArgs) -> Result<(), BoxError> {
    check_bounds(args.connections, args.duration)?;
    let (open_file_limit, _) = raise_open_file_limit();
    let rss_before = args.pid.and_then(rss_kib);
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        match connect(&args.url, "/ws/echo") {
            Ok(ws) => held.push(ws),
            Err(e) => {
                eprintln!("connection {i} failed, holding the {i} opened: {e}");
                break;
            }
        }
    }
    // Let the server settle after the burst of handshakes before measuring.
    thread::sleep(Duration::from_secs(1));
    let rss_after = args.pid.and_then(rss_kib);
    let cpu_before = args.pid.and_then(threads_cpu_secs);
    thread::sleep(Duration::from_secs(args.duration));
    let cpu_after = args.pid.and_then(threads_cpu_secs);
    let round4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
    let report = IdleReport {
        scenario: "idle",
        connections: args.connections,
        held: held.len(),
        open_file_limit,
        idle_secs: args.duration,
        server_cpu_secs: cpu_before.zip(cpu_after).map(|(a, b)| round4(b - a)),
        rss_kib_per_conn: rss_before
            .zip(rss_after)
            .map(|(a, b)| round4(b.saturating_sub(a) as f64 / held.len().max(1) as f64)),
    };
    if args.json {
        print_json(&report)?;
    } else {
        let fmt = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.4}"));
        println!(
            "idle: {} of {} connections held for {} s (open-file limit {})",
            report.held,
            report.connections,
            report.idle_secs,
            open_file_limit.map_or("unlimited".to_owned(), |n| n.to_string())
        );
        println!(
            "  server CPU over the idle window  {} s",
            fmt(report.server_cpu_secs)
        );
        println!(
            "  server resident memory per conn  {} KiB",
            fmt(report.rss_kib_per_conn)
        );
        if args.pid.is_none() {
            println!("  (pass --pid to read the server's CPU and memory)");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Connect rate: open, handshake, close, in a loop.
// ---------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ConnectReport {
    scenario: &'static str,
    secure: bool,
    parallel: usize,
    handshakes: u64,
    failed: u64,
    handshakes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    #[serde(flatten)]
    cpu: GeneratorCpu,
}

/// Opens, handshakes and closes WebSockets in a loop on `parallel` threads.
fn connect_rate(args: &ConnectArgs) -> Result<(), BoxError> {
    check_bounds(args.parallel, args.duration)?;
    let secure = args.url.starts_with("wss://");
    let connector = if secure {
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(ca) = &args.ca {
            builder.add_root_certificate(native_tls::Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        builder.danger_accept_invalid_certs(args.insecure);
        Some(builder.build()?)
    } else {
        None
    };
    let authority = authority(&args.url).to_owned();
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let addr = resolve(&args.url)?;
    let url = format!("{}/ws/echo", args.url.trim_end_matches('/'));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let cpu_before = process_cpu_secs();
    let workers: Vec<_> = (0..args.parallel)
        .map(|_| {
            let (connector, url, host) = (connector.clone(), url.clone(), host.clone());
            thread::spawn(move || {
                let time_before = ThreadTime::now();
                let (mut done, mut failed) = (0u64, 0u64);
                let mut latencies = histogram();
                while Instant::now() < end {
                    let began = Instant::now();
                    match cycle(addr, &url, &host, connector.as_ref()) {
                        Ok(()) => {
                            done += 1;
                            let _ = latencies.record((began.elapsed().as_nanos() as u64).max(1));
                        }
                        Err(_) => failed += 1,
                    }
                }
                (
                    done,
                    failed,
                    latencies,
                    ThreadTime::now().since(time_before),
                )
            })
        })
        .collect();
    let (mut done, mut failed, mut busiest) = (0u64, 0u64, ThreadTime::default());
    let mut all = histogram();
    for worker in workers {
        let (d, f, h, time) = worker.join().map_err(|_| "a worker panicked")?;
        done += d;
        failed += f;
        busiest = busiest.max(time);
        all.add(&h)?;
    }
    let wall = start.elapsed().as_secs_f64();
    let ms = |q: f64| (all.value_at_quantile(q) as f64 / 10_000.0).round() / 100.0;
    let report = ConnectReport {
        scenario: "connect-rate",
        secure,
        parallel: args.parallel,
        handshakes: done,
        failed,
        handshakes_per_sec: (done as f64 / wall).round(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        cpu: GeneratorCpu::new(process_cpu_secs() - cpu_before, busiest, wall),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "connect-rate: {} parallel clients for {} s against {}",
            args.parallel, args.duration, args.url
        );
        println!(
            "  handshakes   {done} ({:.0}/s), {failed} failed",
            report.handshakes_per_sec
        );
        println!(
            "  cycle ms     p50 {:.2}  p99 {:.2}",
            report.p50_ms, report.p99_ms
        );
        println!("  generator    {}", report.cpu.line());
    }
    report.cpu.warn(args.json);
    Ok(())
}

/// One connect, (TLS,) WebSocket handshake, close handshake.
fn cycle(
    addr: SocketAddr,
    url: &str,
    host: &str,
    tls: Option<&native_tls::TlsConnector>,
) -> Result<(), BoxError> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(connector) => {
            close_cleanly(tungstenite::client(url, connector.connect(host, tcp)?)?.0)
        }
        None => close_cleanly(tungstenite::client(url, tcp)?.0),
    }
}

fn close_cleanly<S: io::Read + io::Write>(mut ws: WebSocket<S>) -> Result<(), BoxError> {
    ws.close(None)?;
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------
// CPU and memory from /proc.
// ---------------------------------------------------------------------------------

/// This process's CPU time (user + system, threads that ended included), in seconds.
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // USER_HZ is 100 on every Linux ABI.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// A thread's time on a CPU and time runnable but waiting for one, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadTime {
    cpu: f64,
    wait: f64,
}

impl ThreadTime {
    /// The calling thread's, to the nanosecond, from its schedstat ("time on CPU,
    /// time waiting on a run queue, time slices").
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut ns = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().map_or(0.0, |n| n as f64 / 1e9));
        Self {
            cpu: ns.next().unwrap_or(0.0),
            wait: ns.next().unwrap_or(0.0),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            cpu: self.cpu - before.cpu,
            wait: self.wait - before.wait,
        }
    }

    /// The worst of two threads on each count.
    fn max(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.max(other.cpu),
            wait: self.wait.max(other.wait),
        }
    }
}

/// CPU time of a process's live threads, to the nanosecond, from each thread's
/// schedstat. (Threads that ended are missing, so use it over windows where none do.)
fn threads_cpu_secs(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may end between listing and reading: it then counts for nothing.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// A process's resident memory from /proc, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_ring_advances_only_when_every_member_has_a_message() {
        let mut ring = AckRing::new(2);
        ring.record(0);
        assert_eq!(ring.acked, 0);
        ring.record(1);
        ring.record(1);
        assert_eq!(ring.acked, 0, "message 0 is still missing at one member");
        ring.record(0);
        assert_eq!(ring.acked, 2);
    }

    #[test]
    fn authority_drops_scheme_and_path() {
        assert_eq!(authority("ws://127.0.0.1:3000/"), "127.0.0.1:3000");
        assert_eq!(authority("wss://localhost:3443/x"), "localhost:3443");
        assert_eq!(authority("127.0.0.1:9"), "127.0.0.1:9");
    }
}
