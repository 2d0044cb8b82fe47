//! `bench chat-max`: C chat senders, each sending as fast as a window of messages it
//! has not yet seen come back allows, for the most messages per second the server's
//! store commits.
//!
//! A chat message reaches anyone, its sender included, only once the store has
//! committed it, so a sender's own message coming back is its acknowledgement, and
//! the time from send to that echo is a commit's latency as a client sees it. A
//! refusal (`unavailable`, `rate_limited`) frees its place in the window too.
//!
//! By default each sender has a room of its own. The store writes every room through
//! the one writer thread and commits whatever is queued, whatever the room, so rooms
//! do not change what is committed; sharing one room would add a fan-out (each sender
//! receiving every sender's messages, C times the deliveries) to what is measured,
//! and could get a sender closed as a slow consumer for not reading the others' fast
//! enough. `--shared-room` measures that case.

use super::chat::{self, Event, Refusals};
use super::proc::{ThreadTime, process_cpu_secs};
use super::{
    BoxError, Client, GeneratorCpu, HIST_MAX_NS, Percentiles, check_bounds, check_threads,
    histogram, is_would_block, print_json,
};
use clap::Args;
use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use serde::Serialize;
use std::io;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// Largest window: the store's queue (4,096 requests), past which one sender alone
/// gets `unavailable` by construction. (Past the server's `--outbox-messages`, 1,024
/// by default, a sender is closed with 1008 long before: the store may commit more
/// than that of its messages in one batch, and their echoes overflow its outbox.)
const MAX_WINDOW: u64 = 4096;
/// A sender filling its window reads what came back after this many messages.
const READ_EVERY: u64 = 32;

#[derive(Debug, Args)]
pub(crate) struct ChatMaxArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Senders, each in a room of its own unless --shared-room.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Messages each sender has sent but not yet seen come back (or refused), at most
    /// (more than the server's --outbox-messages gets a sender closed with 1008).
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Text bytes per message (at least the numbers it carries).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Every sender in one room: each then also receives every other sender's messages.
    #[arg(long)]
    shared_room: bool,
    /// Milliseconds to wait after the last send for messages still on their way back.
    #[arg(long, default_value_t = 1000)]
    grace_ms: u64,
    /// Threads driving the senders (epoll).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

/// One sender inside a sender thread.
struct Sender {
    ws: Client,
    /// Its index, which its messages carry.
    index: usize,
    next_seq: u64,
    /// Sent, and neither back nor refused yet.
    in_flight: u64,
    /// tungstenite holds bytes the socket would not take yet.
    unflushed: bool,
    open: bool,
    close_code: Option<CloseCode>,
}

/// What one sender thread saw.
struct Tally {
    latencies: Histogram<u64>,
    sent: u64,
    committed: u64,
    /// Other senders' messages received (a shared room only).
    others: u64,
    refusals: Refusals,
    unanswered: u64,
    closed: u64,
    closed_1008: u64,
    first_send_ns: u64,
    last_commit_ns: u64,
    time: ThreadTime,
}

#[derive(Debug, Serialize)]
struct ChatMaxReport {
    scenario: &'static str,
    senders: usize,
    shared_room: bool,
    window: u64,
    size: usize,
    duration_secs: u64,
    messages: u64,
    /// Messages that came back to their sender, so were committed.
    committed: u64,
    committed_per_sec: f64,
    /// Other senders' messages received, in a shared room.
    deliveries_from_others: u64,
    #[serde(flatten)]
    refusals: Refusals,
    /// Sent, and neither back nor refused by the end of the grace period.
    unanswered: u64,
    closed_senders: u64,
    closed_1008: u64,
    /// Send to echo.
    #[serde(flatten)]
    latency: Percentiles,
    #[serde(flatten)]
    cpu: GeneratorCpu,
}

pub(super) fn chat_max(args: &ChatMaxArgs) -> Result<(), BoxError> {
    check_bounds(args.senders, args.duration)?;
    check_threads(args.threads)?;
    if args.window == 0 || args.window > MAX_WINDOW {
        return Err(format!("a window between 1 and {MAX_WINDOW}, please").into());
    }
    let threads = args.threads.min(args.senders);
    let mut groups: Vec<Vec<Sender>> = (0..threads).map(|_| vec![]).collect();
    for index in 0..args.senders {
        let room = if args.shared_room {
            format!("bench-{}", std::process::id())
        } else {
            format!("bench-{}-{index}", std::process::id())
        };
        let ws = chat::join(&args.url, &room, &format!("tx-{index}"))
            .map_err(|e| format!("sender {index}: {e}"))?;
        groups[index % threads].push(Sender {
            ws,
            index,
            next_seq: 0,
            in_flight: 0,
            unflushed: false,
            open: true,
            close_code: None,
        });
    }
    let process_before = process_cpu_secs();
    let epoch = Instant::now();
    let end = epoch + Duration::from_secs(args.duration);
    let grace = Duration::from_millis(args.grace_ms);
    let (window, size) = (args.window, args.size);
    let handles = groups
        .into_iter()
        .enumerate()
        .map(|(slot, group)| {
            thread::Builder::new()
                .name(format!("bench-chat-{slot}"))
                .spawn(move || send_loop(group, epoch, end, grace, window, size))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut total = Tally::new();
    total.first_send_ns = u64::MAX;
    let mut busiest = ThreadTime::default();
    for handle in handles {
        let t = handle.join().map_err(|_| "a sender thread panicked")??;
        total.latencies.add(&t.latencies)?;
        total.sent += t.sent;
        total.committed += t.committed;
        total.others += t.others;
        total.refusals.add(t.refusals);
        total.unanswered += t.unanswered;
        total.closed += t.closed;
        total.closed_1008 += t.closed_1008;
        total.first_send_ns = total.first_send_ns.min(t.first_send_ns);
        total.last_commit_ns = total.last_commit_ns.max(t.last_commit_ns);
        busiest = busiest.max(t.time);
    }
    // From the first send to the last message back: the span the store was committing.
    let span = total.last_commit_ns.saturating_sub(total.first_send_ns) as f64 / 1e9;
    let report = ChatMaxReport {
        scenario: "chat-max",
        senders: args.senders,
        shared_room: args.shared_room,
        window: args.window,
        size: args.size,
        duration_secs: args.duration,
        messages: total.sent,
        committed: total.committed,
        committed_per_sec: if span > 0.0 {
            (total.committed as f64 / span).round()
        } else {
            0.0
        },
        deliveries_from_others: total.others,
        refusals: total.refusals,
        unanswered: total.unanswered,
        closed_senders: total.closed,
        closed_1008: total.closed_1008,
        latency: Percentiles::of(&total.latencies),
        cpu: GeneratorCpu::new(
            process_cpu_secs() - process_before,
            busiest,
            epoch.elapsed().as_secs_f64(),
        ),
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "chat-max: {} senders in {}, window {} each, for {} s, {} B",
            args.senders,
            if args.shared_room {
                "one room"
            } else {
                "a room each"
            },
            args.window,
            args.duration,
            args.size
        );
        println!(
            "  committed    {} of {} sent ({:.0}/s), {} unanswered at the end",
            report.committed, report.messages, report.committed_per_sec, report.unanswered
        );
        println!("  refused      {}", report.refusals.line());
        if args.shared_room {
            println!(
                "  from others  {} deliveries",
                report.deliveries_from_others
            );
        }
        if report.closed_senders > 0 {
            println!(
                "  closed       {} senders ({} with 1008)",
                report.closed_senders, report.closed_1008
            );
        }
        println!("  send->echo us {}", report.latency.line());
        println!("  generator    {}", report.cpu.line());
    }
    report.refusals.warn(args.json);
    report.cpu.warn(args.json);
    Ok(())
}

impl Tally {
    fn new() -> Self {
        Self {
            latencies: histogram(),
            sent: 0,
            committed: 0,
            others: 0,
            refusals: Refusals::default(),
            unanswered: 0,
            closed: 0,
            closed_1008: 0,
            first_send_ns: 0,
            last_commit_ns: 0,
            time: ThreadTime::default(),
        }
    }
}

impl Sender {
    /// Sends until the window is full or the socket would take no more, reading what
    /// came back every few messages: a client that only writes while its window is
    /// large lets the server's queue for it fill (and gets closed with 1008).
    fn fill(&mut self, epoch: Instant, window: u64, size: usize, tally: &mut Tally) {
        while self.open && !self.unflushed && self.in_flight < window {
            if self.next_seq % READ_EVERY == READ_EVERY - 1 {
                self.read(epoch, tally);
            }
            let sent_ns = epoch.elapsed().as_nanos() as u64;
            if tally.sent == 0 {
                tally.first_send_ns = sent_ns;
            }
            let msg = chat::message(self.index, self.next_seq, sent_ns, size);
            match self.ws.send(msg) {
                Ok(()) => {}
                // Taken, but not yet written: flushed when the socket can take more.
                Err(e) if is_would_block(&e) => self.unflushed = true,
                Err(_) => return self.lost(tally),
            }
            self.next_seq += 1;
            self.in_flight += 1;
            tally.sent += 1;
        }
    }

    /// The connection is gone (closed by the server, or broken).
    fn lost(&mut self, tally: &mut Tally) {
        self.open = false;
        tally.closed += 1;
        if self.close_code == Some(CloseCode::Policy) {
            tally.closed_1008 += 1;
        }
    }

    /// Reads until the socket would block, counting what came back.
    fn read(&mut self, epoch: Instant, tally: &mut Tally) {
        while self.open {
            let text = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(frame)) => {
                    self.close_code = frame.map(|f| f.code);
                    continue;
                }
                Ok(_) => continue,
                Err(e) if is_would_block(&e) => return,
                Err(_) => return self.lost(tally),
            };
            match chat::event(&text) {
                Event::Measured {
                    sender, sent_ns, ..
                } if sender == self.index => {
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    let _ = tally
                        .latencies
                        .record(now_ns.saturating_sub(sent_ns).clamp(1, HIST_MAX_NS));
                    tally.committed += 1;
                    tally.last_commit_ns = now_ns;
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                Event::Measured { .. } => tally.others += 1,
                Event::Refused(why) => {
                    tally.refusals.count(why);
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                Event::Welcome | Event::Other => {}
            }
        }
    }
}

fn send_loop(
    mut senders: Vec<Sender>,
    epoch: Instant,
    end: Instant,
    grace: Duration,
    window: u64,
    size: usize,
) -> io::Result<Tally> {
    let time_before = ThreadTime::now();
    let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let mut tally = Tally::new();
    for (i, s) in senders.iter().enumerate() {
        s.ws.get_ref().set_nonblocking(true)?;
        epoll::add(
            &epoll,
            s.ws.get_ref(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN
                | epoll::EventFlags::OUT
                | epoll::EventFlags::RDHUP
                | epoll::EventFlags::ET,
        )?;
    }
    for s in &mut senders {
        s.fill(epoch, window, size, &mut tally);
    }
    let give_up = end + grace;
    let mut events = Vec::with_capacity(64);
    loop {
        let now = Instant::now();
        let waiting: u64 = senders.iter().filter(|s| s.open).map(|s| s.in_flight).sum();
        if now >= give_up || (now >= end && waiting == 0) {
            tally.unanswered = waiting;
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
        let sending = Instant::now() < end;
        for event in &events {
            let data = event.data;
            let s = &mut senders[data.u64() as usize];
            if !s.open {
                continue;
            }
            if s.unflushed {
                match s.ws.flush() {
                    Ok(()) => s.unflushed = false,
                    Err(e) if is_would_block(&e) => {}
                    Err(_) => s.lost(&mut tally),
                }
            }
            s.read(epoch, &mut tally);
            if sending {
                s.fill(epoch, window, size, &mut tally);
            }
            if !s.open {
                let _ = epoll::delete(&epoll, s.ws.get_ref());
            }
        }
    }
    tally.time = ThreadTime::now().since(time_before);
    Ok(tally)
}
