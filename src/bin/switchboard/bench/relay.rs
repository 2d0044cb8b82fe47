//! The relay room both fanout scenarios use: one paced or windowed sender, the
//! receivers on a few epoll threads.

use super::proc::{ThreadTime, process_cpu_secs};
use super::{
    BoxError, Client, GeneratorCpu, HIST_MAX_NS, Percentiles, check_threads, connect, histogram,
    is_would_block, print_json,
};
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

/// Sequence number of a probe: a message that proves a receiver is in the room before
/// the measured messages start. Never counted.
const PROBE: u64 = u64::MAX;
/// Messages the fanout-max acknowledgement ring tracks at once (a power of two, far
/// above any useful window).
pub(super) const ACK_RING: usize = 1 << 16;

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
pub(super) struct Fanout {
    pub(super) room: Arc<Room>,
    sender: Client,
    threads: Vec<thread::JoinHandle<io::Result<Tally>>>,
    receivers: usize,
    size: usize,
    process_cpu_before: f64,
}

/// What a whole relay run saw.
pub(super) struct FanoutTotals {
    latencies: Histogram<u64>,
    delivered: u64,
    out_of_order: u64,
    closed: u64,
    last_delivery_ns: u64,
    busiest_thread: ThreadTime,
    process_cpu_secs: f64,
}

impl Fanout {
    pub(super) fn open(
        url: &str,
        receivers: usize,
        threads: usize,
        size: usize,
    ) -> Result<Self, BoxError> {
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
    pub(super) fn send(&mut self, seq: u64) -> Result<(), BoxError> {
        let mut payload = vec![0u8; self.size];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..16].copy_from_slice(&self.room.now_ns().to_be_bytes());
        self.sender.send(Message::binary(payload))?;
        Ok(())
    }

    pub(super) fn join(self) -> Result<FanoutTotals, BoxError> {
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

    pub(super) fn print(&self, json: bool) -> Result<(), BoxError> {
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
}
