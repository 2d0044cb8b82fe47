//! The `switchboard` binary: flags in, a running server out, exit code at the end.

mod bench;
mod connect;

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::{Config, Identity, Server, ServerHandle, TlsConfig};

/// A WebSocket chat, relay and echo server for the LAN, for teaching, and for tests.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Generate load against a WebSocket server and measure it.
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// Talk to a WebSocket server: stdin lines out as messages, messages in to stdout.
    Connect(connect::ConnectArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address for ws:// and http://.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3000")]
    listen: String,
    /// Address for wss:// and https://.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3443")]
    tls_listen: String,
    /// PEM certificate chain for TLS (default: the built-in development certificate,
    /// valid for localhost only).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PKCS#8 PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Serve plain ws:// and http:// only.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    no_tls: bool,
    /// A browser origin allowed besides the page's own; repeat it for more, `*` for all.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Connections open at once, in total; more get 503.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Connections open at once from one IP address; more get 503.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Largest message or frame accepted; larger ones close the connection with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_message_size)]
    max_message_size: usize,
    /// Seconds a client has to send its request head.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Seconds of silence before a Ping, and again before the client is dropped.
    #[arg(long, value_name = "SECS", default_value_t = Config::default().ping_interval.as_secs())]
    ping_interval: u64,
    /// Chat messages each room remembers for newcomers.
    #[arg(long, value_name = "N", default_value_t = Config::default().history)]
    history: usize,
    /// Longest chat text in bytes; longer gets the error text_too_long.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_text_len)]
    max_text_len: usize,
    /// Chat messages per second a connection may send, sustained.
    #[arg(long, value_name = "N", default_value_t = Config::default().rate_per_sec)]
    rate_limit: u32,
    /// Chat messages a connection may send in one burst.
    #[arg(long, value_name = "N", default_value_t = Config::default().rate_burst)]
    rate_burst: u32,
    /// Messages queued for one client before it is closed as a slow consumer (1008).
    #[arg(long, value_name = "N", default_value_t = Config::default().outbox_messages)]
    outbox_messages: usize,
    /// Bytes queued for one client before it is closed as a slow consumer (1008).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().outbox_bytes)]
    outbox_bytes: usize,
    /// Log every request and every message crossing the wire.
    #[arg(long)]
    trace: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Bench { scenario }) => bench::run(scenario),
        Some(Command::Connect(args)) => return connect::run(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.listen = vec![args.listen];
    config.allow_origins = args.allow_origin;
    config.max_connections = args.max_connections;
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.max_message_size = args.max_message_size;
    config.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    config.ping_interval = Duration::from_secs(args.ping_interval);
    config.history = args.history;
    config.max_text_len = args.max_text_len;
    config.rate_per_sec = args.rate_limit;
    config.rate_burst = args.rate_burst;
    config.outbox_messages = args.outbox_messages;
    config.outbox_bytes = args.outbox_bytes;
    config.trace = args.trace;
    let development_cert = args.cert.is_none();
    if !args.no_tls {
        let identity = match (args.cert, args.key) {
            (Some(cert), Some(key)) => Identity::Files { cert, key },
            _ => Identity::Development,
        };
        config.tls = Some(TlsConfig::new(args.tls_listen, identity));
    }

    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })?;
    raise_open_file_limit(config.max_connections);
    let server = Server::builder().config(config).start()?;
    print_banner(&server, development_cert);
    // Wait for SIGINT or SIGTERM; a closed channel cannot happen while the handler lives.
    let _ = stop_rx.recv();
    server.shutdown();
    log::info!("bye");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: each connection costs two
/// descriptors (its socket and its wake-up eventfd), and many systems start programs
/// with a soft limit of 1,024, which would cap the server near 500 clients.
fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            log::warn!("cannot raise the open-file limit: {e}");
            limit = getrlimit(Resource::Nofile);
        }
    }
    // Leave a few descriptors for listeners, logging and the like.
    let allowed = limit
        .current
        .map_or(usize::MAX, |n| (n.saturating_sub(32) / 2) as usize);
    // A shortfall of a few descriptors (the hard limit is often a round 20,000 or
    // 65,536) is not worth a warning; a real one is.
    if allowed < max_connections / 10 * 9 {
        log::warn!(
            "the open-file limit ({}) allows about {allowed} connections, fewer than --max-connections {max_connections}",
            limit.current.unwrap_or(0)
        );
    } else {
        log::info!("the open-file limit allows about {allowed} connections (2 descriptors each)");
    }
}

/// Tells people where to point their browser, LAN addresses included.
fn print_banner(server: &ServerHandle, development_cert: bool) {
    println!(
        "switchboard {} is running. Open one of these in a browser:",
        env!("CARGO_PKG_VERSION")
    );
    let schemes = [
        ("http", "ws", server.local_addrs()),
        ("https", "wss", server.tls_local_addrs()),
    ];
    for (http, _, addrs) in &schemes {
        for addr in addrs.iter().flat_map(|&a| reachable_addrs(a)) {
            println!("  {http}://{addr}/");
        }
    }
    for (_, ws, addrs) in &schemes {
        // The last reachable address: a LAN address when there is one.
        if let Some(addr) = addrs.first().and_then(|&a| reachable_addrs(a).pop()) {
            println!("WebSocket: {ws}://{addr}/ws/chat, /ws/relay/{{room}}, /ws/echo");
        }
    }
    if development_cert && !server.tls_local_addrs().is_empty() {
        println!(
            "TLS uses the built-in development certificate (localhost only; trust certs/ca.pem, \
             or pass --cert and --key)."
        );
    }
    println!("Press Ctrl-C to stop.");
}

/// The addresses someone could type to reach `addr`: itself, or for a wildcard
/// address, loopback plus every address of this machine's interfaces.
fn reachable_addrs(addr: SocketAddr) -> Vec<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let want_v6 = addr.is_ipv6();
    let mut out = vec![SocketAddr::new(
        if want_v6 {
            "::1".parse().ok()
        } else {
            "127.0.0.1".parse().ok()
        }
        .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        addr.port(),
    )];
    if let Ok(interfaces) = if_addrs::get_if_addrs() {
        for iface in interfaces {
            let ip = iface.ip();
            let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
            if !ip.is_loopback() && !link_local_v6 && (ip.is_ipv4() || want_v6) {
                out.push(SocketAddr::new(ip, addr.port()));
            }
        }
    }
    out
}
