//! `bench connect-rate`: C clients in parallel, each opening, handshaking and closing
//! in a loop.

use super::proc::{ThreadTime, process_cpu_secs};
use super::{BoxError, GeneratorCpu, authority, check_bounds, histogram, print_json, resolve};
use clap::Args;
use serde::Serialize;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::WebSocket;

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
pub(super) fn connect_rate(args: &ConnectArgs) -> Result<(), BoxError> {
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
