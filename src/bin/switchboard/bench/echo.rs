//! `bench echo`: C clients doing send-and-wait round trips on `/ws/echo`.

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
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::{Bytes, Message};

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

pub(super) fn echo(args: &EchoArgs) -> Result<(), BoxError> {
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
