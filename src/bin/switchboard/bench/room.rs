//! The room every fanout scenario uses: one paced or windowed sender, the receivers on
//! a few epoll threads. The room is a relay room (`fanout`, `fanout-max`) or a chat
//! room (`chat-fanout`); [`Wire`] is all that differs between them.

use super::chat::{self, Event, Refusals};
use super::proc::{ThreadTime, process_cpu_secs};
use super::{
    BoxError, Client, GeneratorCpu, HIST_MAX_NS, Percentiles, check_bounds, check_threads, connect,
    histogram, is_would_block, print_json,
};
use clap::Args;
use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use serde::Serialize;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// Sequence number of a probe: a message that proves a receiver is in the room before
/// the measured messages start. Never counted.
const PROBE: u64 = u64::MAX;
/// Messages the fanout-max acknowledgement ring tracks at once (a power of two, far
/// above any useful window).
pub(super) const ACK_RING: usize = 1 << 16;
/// Longest the sender waits for the server to take a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The flags every fanout scenario takes.
#[derive(Debug, Args)]
pub(crate) struct RoomArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    pub(super) url: String,
    /// Where the sender connects instead, e.g. another node of a cluster on the same
    /// Redis (`--redis`): the latency then includes the trip through Redis.
    #[arg(long, value_name = "URL")]
    pub(super) sender_url: Option<String>,
    /// Receivers in the room.
    #[arg(long, default_value_t = 100)]
    pub(super) receivers: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub(super) duration: u64,
    /// Payload bytes per message (at least 16 for relay: sequence number and send
    /// time; for chat, the text, at least the numbers it carries).
    #[arg(long, default_value_t = 64)]
    pub(super) size: usize,
    /// Milliseconds to wait after the last send before counting what is missing as lost.
    #[arg(long, default_value_t = 1000)]
    pub(super) grace_ms: u64,
    /// Threads reading the receivers' sockets (epoll).
    #[arg(long, default_value_t = 1)]
    pub(super) threads: usize,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

impl RoomArgs {
    pub(super) fn check(&self) -> Result<(), String> {
        check_bounds(self.receivers + 1, self.duration)?;
        check_threads(self.threads)
    }
}

/// What a room speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// `/ws/relay/{room}`: binary frames, forwarded to everyone but the sender.
    Relay,
    /// `/ws/chat/{room}`: chat messages, stored, then delivered to everyone.
    Chat,
}

impl Wire {
    /// Measured message `seq`, sent at `sent_ns`, of at least `size` bytes.
    fn message(self, seq: u64, sent_ns: u64, size: usize) -> Message {
        match self {
            Wire::Relay => {
                let mut payload = vec![0u8; size.max(16)];
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                payload[8..16].copy_from_slice(&sent_ns.to_be_bytes());
                Message::binary(payload)
            }
            Wire::Chat => chat::message(0, seq, sent_ns, size),
        }
    }

    /// The sequence number and send time of a measured message (or a probe).
    fn measured(self, msg: &Message) -> Option<(u64, u64)> {
        match (self, msg) {
            (Wire::Relay, Message::Binary(data)) => Some((be_u64(data, 0)?, be_u64(data, 8)?)),
            (Wire::Chat, Message::Text(text)) => match chat::event(text) {
                Event::Measured { seq, sent_ns, .. } => Some((seq, sent_ns)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the sender and the receiver threads share.
pub(super) struct Room {
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
    pub(super) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub(super) fn min_acked(&self) -> u64 {
        self.acked
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Sending is over: receivers finish when they have everything or `grace` passes.
    pub(super) fn finish(&self, sent: u64, grace: Duration) {
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
    /// The code of the server's Close frame, if it sent one.
    close_code: Option<CloseCode>,
}

/// What one receiver thread saw.
struct Tally {
    latencies: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    closed: u64,
    /// Closed by the server with 1008: evicted as a slow consumer.
    closed_1008: u64,
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

fn receive_loop(sockets: Vec<Client>, wire: Wire, room: &Room, slot: usize) -> io::Result<Tally> {
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
            close_code: None,
        });
    }
    let members = receivers.len() as u64;
    let mut ring = AckRing::new(receivers.len());
    let mut tally = Tally {
        latencies: histogram(),
        delivered: 0,
        out_of_order: 0,
        closed: 0,
        closed_1008: 0,
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
                let msg = match r.ws.read() {
                    Ok(Message::Close(frame)) => {
                        r.close_code = frame.map(|f| f.code);
                        continue;
                    }
                    Ok(msg) => msg,
                    Err(e) if is_would_block(&e) => break,
                    Err(_) => {
                        r.open = false;
                        tally.closed += 1;
                        if r.close_code == Some(CloseCode::Policy) {
                            tally.closed_1008 += 1;
                        }
                        let _ = epoll::delete(&epoll, r.ws.get_ref());
                        break;
                    }
                };
                let Some((seq, sent_ns)) = wire.measured(&msg) else {
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

/// A room with receivers listening on their threads and the sender connected, every
/// receiver proven to be in the room.
pub(super) struct Fanout {
    pub(super) room: Arc<Room>,
    wire: Wire,
    sender: Client,
    /// What the server refused of the sender's chat messages.
    refusals: Refusals,
    threads: Vec<thread::JoinHandle<io::Result<Tally>>>,
    receivers: usize,
    size: usize,
    process_cpu_before: f64,
}

/// What a whole run saw.
pub(super) struct FanoutTotals {
    latencies: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    closed: u64,
    closed_1008: u64,
    last_delivery_ns: u64,
    refusals: Refusals,
    busiest_thread: ThreadTime,
    process_cpu_secs: f64,
}

impl Fanout {
    pub(super) fn open(args: &RoomArgs, wire: Wire) -> Result<Self, BoxError> {
        let room_name = format!("bench-{}", std::process::id());
        let join_at = |url: &str, name: &str| match wire {
            Wire::Relay => connect(url, &format!("/ws/relay/{room_name}")),
            Wire::Chat => chat::join(url, &room_name, name),
        };
        let join = |name: &str| join_at(&args.url, name);
        let mut groups: Vec<Vec<Client>> = (0..args.threads.min(args.receivers))
            .map(|_| vec![])
            .collect();
        for i in 0..args.receivers {
            let ws = join(&format!("rx-{i}")).map_err(|e| format!("receiver {i}: {e}"))?;
            let n = groups.len();
            groups[i % n].push(ws);
        }
        let sender_url = args.sender_url.as_deref().unwrap_or(&args.url);
        let sender = join_at(sender_url, "tx").map_err(|e| format!("sender: {e}"))?;
        match wire {
            Wire::Relay => sender.get_ref().set_write_timeout(Some(SEND_TIMEOUT))?,
            // A chat sender hears back every message it sends, and must read it, or
            // the server closes it as a slow consumer: it is non-blocking, and reads
            // what came back whenever it sends.
            Wire::Chat => sender.get_ref().set_nonblocking(true)?,
        }
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
                    .spawn(move || receive_loop(sockets, wire, &room, slot))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut fanout = Self {
            room,
            wire,
            sender,
            refusals: Refusals::default(),
            threads: handles,
            receivers: args.receivers,
            size: args.size,
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
                    "only {} of {} receivers heard the sender within 5 s ({}); is this a {} endpoint?",
                    self.room.probed.load(Ordering::Acquire),
                    self.receivers,
                    self.refusals.line(),
                    match self.wire {
                        Wire::Relay => "relay",
                        Wire::Chat => "chat",
                    }
                )
                .into());
            }
            self.send(PROBE)?;
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Sends message `seq`, stamped with the time just before the write.
    pub(super) fn send(&mut self, seq: u64) -> Result<(), BoxError> {
        let msg = self.wire.message(seq, self.room.now_ns(), self.size);
        match self.wire {
            Wire::Relay => self.sender.send(msg)?,
            Wire::Chat => self.send_chat(msg)?,
        }
        Ok(())
    }

    /// Sends on the non-blocking chat sender, reading what came back meanwhile.
    fn send_chat(&mut self, msg: Message) -> Result<(), BoxError> {
        // A message the socket would not take yet stays in tungstenite's buffer.
        let mut unflushed = match self.sender.send(msg) {
            Ok(()) => false,
            Err(e) if is_would_block(&e) => true,
            Err(e) => return Err(e.into()),
        };
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            self.read_sender()?;
            if !unflushed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the server took nothing from the sender for 5 s".into());
            }
            thread::sleep(Duration::from_millis(1));
            unflushed = match self.sender.flush() {
                Ok(()) => false,
                Err(e) if is_would_block(&e) => true,
                Err(e) => return Err(e.into()),
            };
        }
    }

    /// Reads everything the chat sender has been sent: its own messages back, and the
    /// server's refusals, which are counted.
    fn read_sender(&mut self) -> Result<(), BoxError> {
        let mut close_code = None;
        loop {
            match self.sender.read() {
                Ok(Message::Text(text)) => {
                    if let Event::Refused(why) = chat::event(&text) {
                        self.refusals.count(why);
                    }
                }
                Ok(Message::Close(frame)) => close_code = frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(e) if is_would_block(&e) => return Ok(()),
                Err(e) => {
                    return Err(format!(
                        "the server closed the sender (close code {}): {e}",
                        close_code.map_or("none".to_owned(), |c| c.to_string())
                    )
                    .into());
                }
            }
        }
    }

    pub(super) fn join(mut self) -> Result<FanoutTotals, BoxError> {
        // Refusals of the last messages come after the last send: the chat sender
        // keeps reading until the receivers are done.
        let mut outcome = Ok(());
        if self.wire == Wire::Chat {
            while !self.threads.iter().all(thread::JoinHandle::is_finished) {
                if let Err(e) = self.read_sender() {
                    outcome = Err(e);
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        let mut totals = FanoutTotals {
            latencies: histogram(),
            delivered: 0,
            out_of_order: 0,
            closed: 0,
            closed_1008: 0,
            last_delivery_ns: 0,
            refusals: self.refusals,
            busiest_thread: ThreadTime::default(),
            process_cpu_secs: 0.0,
        };
        for handle in self.threads {
            let t = handle.join().map_err(|_| "a receiver thread panicked")??;
            totals.latencies.add(&t.latencies)?;
            totals.delivered += t.delivered;
            totals.out_of_order += t.out_of_order;
            totals.closed += t.closed;
            totals.closed_1008 += t.closed_1008;
            totals.last_delivery_ns = totals.last_delivery_ns.max(t.last_delivery_ns);
            totals.busiest_thread = totals.busiest_thread.max(t.time);
        }
        totals.process_cpu_secs = process_cpu_secs() - self.process_cpu_before;
        outcome.map(|()| totals)
    }
}

#[derive(Debug, Serialize)]
pub(super) struct FanoutReport {
    scenario: &'static str,
    receivers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) window: Option<u64>,
    size: usize,
    duration_secs: u64,
    messages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) unsent: Option<u64>,
    messages_per_sec: f64,
    expected: u64,
    deliveries: u64,
    deliveries_per_sec: f64,
    lost: u64,
    out_of_order: u64,
    closed_receivers: u64,
    /// Of those, closed with 1008: the server's slow-consumer eviction.
    closed_1008: u64,
    /// What the server refused of the sender's messages (chat only).
    #[serde(flatten)]
    refusals: Option<Refusals>,
    #[serde(flatten)]
    latency: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sender_lag_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sender_lag_max_us: Option<f64>,
    #[serde(flatten)]
    cpu: GeneratorCpu,
}

impl FanoutReport {
    pub(super) fn new(
        scenario: &'static str,
        wire: Wire,
        args: &RoomArgs,
        (sent, first_send_ns, last_send_ns): (u64, u64, u64),
        totals: &FanoutTotals,
    ) -> Self {
        let expected = sent * args.receivers as u64;
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
            receivers: args.receivers,
            rate: None,
            window: None,
            size: match wire {
                Wire::Relay => args.size.max(16),
                Wire::Chat => args.size,
            },
            duration_secs: args.duration,
            messages: sent,
            unsent: None,
            messages_per_sec: per_sec(sent, send_secs),
            expected,
            deliveries: totals.delivered,
            deliveries_per_sec: per_sec(totals.delivered, deliver_secs),
            lost: expected.saturating_sub(totals.delivered),
            out_of_order: totals.out_of_order,
            closed_receivers: totals.closed,
            closed_1008: totals.closed_1008,
            refusals: (wire == Wire::Chat).then_some(totals.refusals),
            latency: Percentiles::of(&totals.latencies),
            sender_lag_p99_us: None,
            sender_lag_max_us: None,
            cpu: GeneratorCpu::new(totals.process_cpu_secs, totals.busiest_thread, wall),
        }
    }

    pub(super) fn print(&self, json: bool) -> Result<(), BoxError> {
        if json {
            print_json(self)?;
        } else {
            let pace = match (self.rate, self.window) {
                (Some(rate), _) => format!("{rate} msg/s"),
                (_, window) => format!("window {}", window.unwrap_or_default()),
            };
            println!(
                "{}: 1 sender -> {} receivers, {pace} for {} s, {} B",
                self.scenario, self.receivers, self.duration_secs, self.size
            );
            println!(
                "  messages     {} sent ({:.0}/s){}",
                self.messages,
                self.messages_per_sec,
                self.unsent
                    .filter(|&n| n > 0)
                    .map_or(String::new(), |n| format!(", {n} not sent in time"))
            );
            if let Some(refusals) = &self.refusals {
                println!("  refused      {}", refusals.line());
            }
            println!(
                "  deliveries   {} of {} ({:.0}/s)",
                self.deliveries, self.expected, self.deliveries_per_sec
            );
            println!("  lost         {}", self.lost);
            println!("  out of order {}", self.out_of_order);
            if self.closed_receivers > 0 {
                println!(
                    "  closed       {} receivers ({} with 1008)",
                    self.closed_receivers, self.closed_1008
                );
            }
            println!("  latency us   {}", self.latency.line());
            if let (Some(p99), Some(max)) = (self.sender_lag_p99_us, self.sender_lag_max_us) {
                println!("  sender lag   p99 {p99:.1} us  max {max:.1} us (behind schedule)");
            }
            println!("  generator    {}", self.cpu.line());
        }
        if let Some(refusals) = &self.refusals {
            refusals.warn(json);
        }
        self.cpu.warn(json);
        Ok(())
    }
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
    fn each_wire_reads_back_what_it_sends() {
        for wire in [Wire::Relay, Wire::Chat] {
            assert_eq!(wire.measured(&wire.message(5, 99, 64)), Some((5, 99)));
        }
        let relay = Wire::Relay.message(5, 99, 64);
        assert_eq!(Wire::Chat.measured(&relay), None);
    }
}
