//! `switchboard bench`: a load generator for any WebSocket server with `/ws/relay/{room}`
//! and `/ws/echo` endpoints.
//!
//! Every scenario is bounded in count and time and talks only to the URL it is given.
//! Latencies are one-way (sender and receivers live in this process and share a
//! clock) and go into HDR histograms; a message not received by the end of the run
//! plus a grace period is counted lost, never hidden.

use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Most connections one scenario opens, so a typo cannot exhaust the machine.
const MAX_CLIENTS: usize = 15_000;
/// Longest run of any scenario.
const MAX_DURATION: u64 = 600;

#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// 1 sender and N receivers in a relay room at a fixed rate: one-way latency.
    Fanout(FanoutArgs),
    /// K connections opened and held: the server's memory and CPU while idle.
    Idle(IdleArgs),
    /// C clients in parallel, each opening, handshaking and closing in a loop.
    ConnectRate(ConnectArgs),
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
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// Connections to open and hold.
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

pub(crate) fn run(scenario: Scenario) -> Result<(), Box<dyn std::error::Error>> {
    match scenario {
        Scenario::Fanout(args) => fanout(&args),
        Scenario::Idle(args) => idle(&args),
        Scenario::ConnectRate(args) => connect_rate(&args),
    }
}

type Client = WebSocket<TcpStream>;

fn connect(base: &str, path: &str) -> io::Result<Client> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let authority = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .trim_end_matches('/');
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URL resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    let (ws, _) = tungstenite::client(url, stream).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(ws)
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

/// What one receiver saw.
struct Received {
    latencies: Histogram<u64>,
    count: u64,
    out_of_order: u64,
}

fn fanout(args: &FanoutArgs) -> Result<(), Box<dyn std::error::Error>> {
    check_bounds(args.receivers + 1, args.duration)?;
    let size = args.size.max(16);
    let total = args.rate as u64 * args.duration;
    let room = format!("bench-{}", std::process::id());
    let path = format!("/ws/relay/{room}");
    let mut receivers = Vec::with_capacity(args.receivers);
    for _ in 0..args.receivers {
        receivers.push(connect(&args.url, &path)?);
    }
    let mut sender = connect(&args.url, &path)?;
    let epoch = Instant::now();
    let grace = Duration::from_secs(2);
    let end = epoch + Duration::from_secs(args.duration) + grace;
    let cpu_before = own_cpu_secs();

    let handles: Vec<_> = receivers
        .into_iter()
        .map(|ws| thread::spawn(move || receive(ws, total, epoch, end)))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut payload = vec![0u8; size];
    for seq in 0..total {
        let due = epoch + interval.mul_f64(seq as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        let sent_ns = epoch.elapsed().as_nanos() as u64;
        payload[8..16].copy_from_slice(&sent_ns.to_be_bytes());
        sender.send(Message::binary(payload.clone()))?;
    }
    let send_secs = epoch.elapsed().as_secs_f64();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut delivered, mut out_of_order) = (0u64, 0u64);
    for handle in handles {
        let r = handle.join().map_err(|_| "a receiver panicked")??;
        all.add(&r.latencies)?;
        delivered += r.count;
        out_of_order += r.out_of_order;
    }
    let expected = total * args.receivers as u64;
    let lost = expected.saturating_sub(delivered);
    let cpu = own_cpu_secs() - cpu_before;
    let wall = epoch.elapsed().as_secs_f64();
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        println!(
            r#"{{"scenario":"fanout","receivers":{},"rate":{},"messages":{total},"deliveries":{delivered},"deliveries_per_sec":{:.0},"lost":{lost},"out_of_order":{out_of_order},"p50_us":{:.1},"p90_us":{:.1},"p99_us":{:.1},"p999_us":{:.1},"max_us":{:.1},"generator_cpu_share":{:.2}}}"#,
            args.receivers,
            args.rate,
            delivered as f64 / send_secs,
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            all.max() as f64 / 1000.0,
            cpu / wall
        );
    } else {
        println!(
            "fanout: 1 sender -> {} receivers, {} msg/s for {} s, {size} B",
            args.receivers, args.rate, args.duration
        );
        println!(
            "  deliveries   {delivered} of {expected} ({:.0}/s)",
            delivered as f64 / send_secs
        );
        println!("  lost         {lost}");
        println!("  out of order {out_of_order}");
        println!(
            "  latency us   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            all.max() as f64 / 1000.0
        );
    }
    warn_if_saturated(cpu, wall);
    Ok(())
}

fn receive(mut ws: Client, total: u64, epoch: Instant, end: Instant) -> Result<Received, String> {
    let mut r = Received {
        latencies: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
        count: 0,
        out_of_order: 0,
    };
    let mut last: Option<u64> = None;
    while r.count < total {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = ws.get_mut().set_read_timeout(Some(left));
        let msg = match ws.read() {
            Ok(msg) => msg,
            Err(_) => break,
        };
        let Message::Binary(data) = msg else { continue };
        let now_ns = epoch.elapsed().as_nanos() as u64;
        let (Some(seq), Some(sent)) = (be_u64(&data, 0), be_u64(&data, 8)) else {
            continue;
        };
        if last.is_some_and(|l| seq <= l) {
            r.out_of_order += 1;
        }
        last = Some(seq);
        r.count += 1;
        let _ = r.latencies.record(now_ns.saturating_sub(sent).max(1));
    }
    Ok(r)
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn idle(args: &IdleArgs) -> Result<(), Box<dyn std::error::Error>> {
    check_bounds(args.connections, args.duration)?;
    let rss_before = args.pid.and_then(rss_kib);
    let mut held = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        match connect(&args.url, "/ws/echo") {
            Ok(ws) => held.push(ws),
            Err(e) => {
                eprintln!("connection {i} failed: {e}");
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
    let cpu = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    let per_conn = rss_before
        .zip(rss_after)
        .map(|(a, b)| (b.saturating_sub(a)) as f64 / held.len().max(1) as f64);
    let fmt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.4}"));
    if args.json {
        println!(
            r#"{{"scenario":"idle","connections":{},"held":{},"idle_secs":{},"server_cpu_secs":{},"rss_kib_per_conn":{}}}"#,
            args.connections,
            held.len(),
            args.duration,
            fmt(cpu),
            fmt(per_conn)
        );
    } else {
        println!(
            "idle: {} of {} connections held for {} s",
            held.len(),
            args.connections,
            args.duration
        );
        println!("  server CPU over the idle window  {} s", fmt(cpu));
        println!("  server resident memory per conn  {} KiB", fmt(per_conn));
    }
    Ok(())
}

/// This process's CPU time (user + system), in seconds.
fn own_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// A process's CPU time (user + system) from /proc, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_sec())
}

/// CPU time of a process's live threads, to the nanosecond, from each thread's
/// schedstat. (Threads that ended are missing, so use it over windows where none do.)
fn threads_cpu_secs(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

fn clock_ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux ABI rustix supports.
    100.0
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

fn warn_if_saturated(cpu: f64, wall: f64) {
    if wall > 0.0 && cpu / wall > 0.8 {
        println!(
            "  note: the generator itself used {:.0}% of a core; it may be the bottleneck",
            100.0 * cpu / wall
        );
    }
}

/// Opens, handshakes and closes WebSockets in a loop on `parallel` threads.
fn connect_rate(args: &ConnectArgs) -> Result<(), Box<dyn std::error::Error>> {
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
    let authority = args
        .url
        .split("://")
        .nth(1)
        .unwrap_or(&args.url)
        .trim_end_matches('/')
        .to_owned();
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or("the URL resolves to nothing")?;
    let url = format!("{}/ws/echo", args.url.trim_end_matches('/'));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let cpu_before = own_cpu_secs();
    let workers: Vec<_> = (0..args.parallel)
        .map(|_| {
            let (connector, url, host) = (connector.clone(), url.clone(), host.clone());
            thread::spawn(move || {
                let (mut done, mut failed) = (0u64, 0u64);
                let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
                while Instant::now() < end {
                    let began = Instant::now();
                    match cycle(addr, &url, &host, connector.as_ref()) {
                        Ok(()) => {
                            done += 1;
                            if let Some(h) = latencies.as_mut() {
                                let _ = h.record(began.elapsed().as_nanos() as u64);
                            }
                        }
                        Err(_) => failed += 1,
                    }
                }
                (done, failed, latencies)
            })
        })
        .collect();
    let (mut done, mut failed) = (0u64, 0u64);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for worker in workers {
        let (d, f, h) = worker.join().map_err(|_| "a worker panicked")?;
        done += d;
        failed += f;
        if let Some(h) = h {
            all.add(&h)?;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = own_cpu_secs() - cpu_before;
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1e6;
    if args.json {
        println!(
            r#"{{"scenario":"connect-rate","secure":{secure},"parallel":{},"handshakes":{done},"failed":{failed},"handshakes_per_sec":{:.0},"p50_ms":{:.2},"p99_ms":{:.2},"generator_cpu_share":{:.2}}}"#,
            args.parallel,
            done as f64 / wall,
            ms(0.5),
            ms(0.99),
            cpu / wall
        );
    } else {
        println!(
            "connect-rate: {} parallel clients for {} s against {}",
            args.parallel, args.duration, args.url
        );
        println!(
            "  handshakes   {done} ({:.0}/s), {failed} failed",
            done as f64 / wall
        );
        println!("  cycle ms     p50 {:.2}  p99 {:.2}", ms(0.5), ms(0.99));
    }
    warn_if_saturated(cpu, wall);
    Ok(())
}

/// One connect, (TLS,) WebSocket handshake, close handshake.
fn cycle(
    addr: std::net::SocketAddr,
    url: &str,
    host: &str,
    tls: Option<&native_tls::TlsConnector>,
) -> Result<(), Box<dyn std::error::Error>> {
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

fn close_cleanly<S: io::Read + io::Write>(
    mut ws: WebSocket<S>,
) -> Result<(), Box<dyn std::error::Error>> {
    ws.close(None)?;
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
