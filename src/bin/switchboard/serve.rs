//! `switchboard` and `switchboard serve`: the flags, the [`Config`] they make, and the
//! loop that runs the server until SIGINT or SIGTERM.

use crate::{banner, limits};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use switchboard::{Config, Identity, ProxyHeader, Server};

/// The flags of `switchboard serve`, also taken by `switchboard` alone.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address for ws:// and http://.
    #[arg(long, value_name = "ADDR", value_parser = host_port, default_value = "0.0.0.0:3000")]
    listen: String,
    /// Address for wss:// and https://.
    #[arg(long, value_name = "ADDR", value_parser = host_port, default_value = "0.0.0.0:3443")]
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
    /// A DNS name the server answers to besides localhost, this machine's names and
    /// the share URLs' (the public name behind a proxy); repeat it for more. IP
    /// addresses always work; other names get 421.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
    /// Connections open at once, in total; more get 503.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Connections open at once from one IP address; more get 503.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = Config::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Rooms with stored messages, at most; a message that would start another gets
    /// the error too_many_rooms.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = Config::default().max_rooms)]
    max_rooms: usize,
    /// Largest message or frame accepted; larger ones close the connection with 1009.
    #[arg(long, value_name = "BYTES", value_parser = at_least_one::<usize>, default_value_t = Config::default().max_message_size)]
    max_message_size: usize,
    /// Largest file a member may share; a larger one gets file_too_large before any
    /// byte is sent.
    #[arg(long, value_name = "BYTES", value_parser = at_least_one::<u64>, default_value_t = Config::default().max_file_size)]
    max_file_size: u64,
    /// Most bytes all shared files may take; past it the oldest go (their messages
    /// stay, and say so). Default: 10 GiB or a tenth of the free disk, whichever is less.
    #[arg(long, value_name = "BYTES", value_parser = at_least_one::<u64>)]
    max_files_bytes: Option<u64>,
    /// Seconds a client has to send its request head.
    #[arg(long, value_name = "SECS", value_parser = at_least_one_second, default_value_t = Config::default().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Seconds of silence before a Ping, and again before the client is dropped.
    #[arg(long, value_name = "SECS", value_parser = at_least_one_second, default_value_t = Config::default().ping_interval.as_secs())]
    ping_interval: u64,
    /// Chat messages a newcomer's welcome carries.
    #[arg(long, value_name = "N", default_value_t = Config::default().history)]
    history: usize,
    /// Where chat history is kept (file chat.sqlite3, created if missing) [default:
    /// $XDG_DATA_HOME/switchboard, else ~/.local/share/switchboard].
    #[arg(long, value_name = "DIR", conflicts_with = "no_persist")]
    data: Option<PathBuf>,
    /// Keep chat history in memory only: it is gone when the server stops.
    #[arg(long)]
    no_persist: bool,
    /// Join a cluster: several nodes on this Redis are one chat, and Redis keeps the
    /// history instead of --data (e.g. redis://127.0.0.1:6379/0); or set
    /// SWITCHBOARD_REDIS, which keeps a Redis password off the command line.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data", "no_persist"])]
    redis: Option<String>,
    /// The newest chat messages kept per room; older ones are deleted.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = Config::default().retain)]
    retain: usize,
    /// Longest chat text in bytes; longer gets the error text_too_long.
    #[arg(long, value_name = "BYTES", value_parser = at_least_one::<usize>, default_value_t = Config::default().max_text_len)]
    max_text_len: usize,
    /// Chat messages per second a connection may send, sustained.
    #[arg(long, value_name = "N", value_parser = at_least_one::<u32>, default_value_t = Config::default().rate_per_sec)]
    rate_limit: u32,
    /// Chat messages a connection may send in one burst.
    #[arg(long, value_name = "N", value_parser = at_least_one::<u32>, default_value_t = Config::default().rate_burst)]
    rate_burst: u32,
    /// Posts to the HTTP API one address may make per second, sustained (bursts of
    /// twice as many); more get 429.
    #[arg(long, value_name = "N", value_parser = at_least_one::<u32>, default_value_t = Config::default().api_rate)]
    api_rate: u32,
    /// Minutes a kicked member (its session, name and address) may not come back
    /// into the room it was kicked from.
    #[arg(long, value_name = "MINUTES", value_parser = at_least_one::<u64>, default_value_t = Config::default().kick_time.as_secs() / 60)]
    kick_minutes: u64,
    /// Messages queued for one client before it is closed as a slow consumer (1008).
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = Config::default().outbox_messages)]
    outbox_messages: usize,
    /// Bytes queued for one client before it is closed as a slow consumer (1008).
    #[arg(long, value_name = "BYTES", value_parser = at_least_one::<usize>, default_value_t = Config::default().outbox_bytes)]
    outbox_bytes: usize,
    /// Log every request and every message crossing the wire.
    #[arg(long)]
    trace: bool,
    /// Like --trace, with the trace lines printed plainly (time, then the line) instead
    /// of behind the log prefix: easier to read on a projector.
    #[arg(long)]
    trace_plain: bool,
    /// A file holding the token that the API's posts and deletes need (as
    /// `Authorization: Bearer TOKEN`); or set SWITCHBOARD_API_TOKEN. Never on the
    /// command line, where every user of the machine could read it.
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,
    /// A file holding the password that keeps strangers out of the chat; or set
    /// SWITCHBOARD_PASSWORD. Never on the command line.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// A file holding the admin password: signing in with it makes an admin (the
    /// chat's welcome says "role":"admin"); or set SWITCHBOARD_ADMIN_PASSWORD. Never on
    /// the command line. Must differ from the password; works without one too.
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// Serve /metrics to everyone even while a password is set (by default only to
    /// this machine then).
    #[arg(long)]
    metrics_public: bool,
    /// Believe the forwarding headers (see --proxy-header) of peers in this address
    /// range (e.g. 127.0.0.1/32 for nginx on this machine); repeat it for more.
    #[arg(long = "trust-proxy", value_name = "CIDR", value_parser = cidr)]
    trust_proxy: Vec<String>,
    /// The forwarding header the --trust-proxy proxies write; the other is ignored.
    /// nginx writes X-Forwarded-For/-Proto/-Host.
    #[arg(long, value_name = "HEADER", value_enum, default_value_t = ProxyHeaderArg::XForwarded)]
    proxy_header: ProxyHeaderArg,
    /// Do not print the QR code of the address to share (it is printed only when
    /// stdout is a terminal anyway).
    #[arg(long)]
    no_qr: bool,
}

/// `--proxy-header`, as clap spells it: `x-forwarded` or `forwarded`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ProxyHeaderArg {
    /// X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host.
    XForwarded,
    /// Forwarded (RFC 7239).
    Forwarded,
}

/// A count that must be at least 1, for clap: the error names the flag and the range.
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(value: &str) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        Ok(_) => Err("must be at least 1".to_owned()),
        Err(_) => Err("must be a whole number, at least 1".to_owned()),
    }
}

/// An address range (`10.0.0.0/8`, `::1/128`) or one address, as the library takes
/// it; checked here so that clap names the flag and exits 2 like for any bad value.
fn cidr(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.parse::<ipnet::IpNet>().is_ok() || value.parse::<std::net::IpAddr>().is_ok() {
        Ok(value.to_owned())
    } else {
        Err("must be an address range such as 10.0.0.0/8, ::1/128 or 127.0.0.1".to_owned())
    }
}

/// A listening address, `HOST:PORT`: an IP address and port, or a host name and port
/// (resolved when the server starts, where a name that resolves to nothing is a
/// start-up failure). Checked here, the way the standard library splits it, so that a
/// value with no port or a bad one is a usage error that names the flag (exit 2).
fn host_port(value: &str) -> Result<String, String> {
    const FORM: &str = "must be HOST:PORT, e.g. 0.0.0.0:3000, [::]:3000 or localhost:3000";
    if value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(value.to_owned());
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => port
            .parse::<u16>()
            .map(|_| value.to_owned())
            .map_err(|_| format!("{FORM} (the port is 0 to 65535)")),
        _ => Err(FORM.to_owned()),
    }
}

/// Whole seconds, at least 1.
fn at_least_one_second(value: &str) -> Result<u64, String> {
    at_least_one::<u64>(value).map_err(|_| "must be at least 1 second (a whole number)".to_owned())
}

/// A secret from its file flag or its environment variable, if either is set. A
/// file's last line end is not part of it; an empty secret is refused. Its value is
/// never printed.
fn secret(file: Option<&std::path::Path>, flag: &str, var: &str) -> Result<Option<String>, String> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?,
        None => match std::env::var(var) {
            Ok(value) => value,
            Err(_) => return Ok(None),
        },
    };
    let value = value.trim_end_matches(['\n', '\r']).to_owned();
    if value.trim().is_empty() {
        return Err(format!("{flag} (or {var}) holds nothing"));
    }
    Ok(Some(value))
}

/// `$XDG_DATA_HOME/switchboard`, else `~/.local/share/switchboard` (the XDG Base
/// Directory default); `None` with neither variable set.
fn default_data_dir() -> Option<PathBuf> {
    let non_empty = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_DATA_HOME")
        .or_else(|| non_empty("HOME").map(|home| home.join(".local").join("share")))
        .map(|data| data.join("switchboard"))
}

/// The flag that sets a [`Config`] field, for an error the library found.
fn flag_for(setting: &str) -> String {
    match setting {
        "rate_per_sec" => "--rate-limit".to_owned(),
        "data_dir" => "--data".to_owned(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

impl ServeArgs {
    /// Whether trace lines are printed without the log prefix (`--trace-plain`).
    pub(crate) fn trace_plain(&self) -> bool {
        self.trace_plain
    }

    /// The library's configuration these flags describe.
    fn into_config(self) -> Config {
        let mut config = Config::default().listen(&self.listen);
        config.allow_origins = self.allow_origin;
        config.allow_hosts = self.allow_host;
        config.max_connections = self.max_connections;
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.max_rooms = self.max_rooms;
        config.max_message_size = self.max_message_size;
        config.max_file_size = self.max_file_size;
        config.max_files_bytes = self.max_files_bytes;
        config.handshake_timeout = Duration::from_secs(self.handshake_timeout);
        config.ping_interval = Duration::from_secs(self.ping_interval);
        config.history = self.history;
        config.retain = self.retain;
        if self.redis.is_some() {
            config.redis = self.redis;
        } else if !self.no_persist {
            config.data_dir = self.data.or_else(default_data_dir);
        }
        config.max_text_len = self.max_text_len;
        config.rate_per_sec = self.rate_limit;
        config.rate_burst = self.rate_burst;
        config.api_rate = self.api_rate;
        config.kick_time = Duration::from_secs(self.kick_minutes.saturating_mul(60));
        config.outbox_messages = self.outbox_messages;
        config.outbox_bytes = self.outbox_bytes;
        config.trace = self.trace || self.trace_plain;
        config.metrics_public = self.metrics_public;
        config.trust_proxies = self.trust_proxy;
        config.proxy_header = match self.proxy_header {
            ProxyHeaderArg::XForwarded => ProxyHeader::XForwarded,
            ProxyHeaderArg::Forwarded => ProxyHeader::Forwarded,
        };
        config.public_urls = banner::lan_urls("http", &self.listen);
        if !self.no_tls {
            config
                .public_urls
                .extend(banner::lan_urls("https", &self.tls_listen));
            config.tls_listen.push(self.tls_listen);
            if let (Some(cert), Some(key)) = (self.cert, self.key) {
                config.tls_identity = Identity::Files { cert, key };
            }
        }
        config
    }
}

/// Starts the server, prints the banner, and shuts down cleanly on SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let qr = !args.no_qr;
    let token = secret(
        args.api_token_file.as_deref(),
        "--api-token-file",
        "SWITCHBOARD_API_TOKEN",
    )?;
    let password = secret(
        args.password_file.as_deref(),
        "--password-file",
        "SWITCHBOARD_PASSWORD",
    )?;
    let admin_password = secret(
        args.admin_password_file.as_deref(),
        "--admin-password-file",
        "SWITCHBOARD_ADMIN_PASSWORD",
    )?;
    let mut config = args.into_config();
    if config.redis.is_none()
        && let Ok(url) = std::env::var("SWITCHBOARD_REDIS")
        && !url.trim().is_empty()
    {
        config.redis = Some(url.trim().to_owned());
        config.data_dir = None;
    }
    config.api_token = token.map(switchboard::Secret::new);
    config.password = password.map(switchboard::Secret::new);
    config.admin_password = admin_password.map(switchboard::Secret::new);
    let development_cert =
        !config.tls_listen.is_empty() && config.tls_identity == Identity::Development;
    let cluster = config.redis.is_some();

    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })?;
    limits::raise_for_server(config.max_connections);
    limits::report_thread_limit(config.max_connections);
    let server =
        Server::with_config(config)
            .start()
            .map_err(|e| -> Box<dyn std::error::Error> {
                match e {
                    switchboard::Error::BadConfig {
                        setting: "admin_password",
                        ..
                    } => "--admin-password-file (or SWITCHBOARD_ADMIN_PASSWORD) must hold \
                          another password than --password-file (or SWITCHBOARD_PASSWORD): \
                          whoever knows the password would be an admin"
                        .into(),
                    // Named as the user named it: by its flag.
                    switchboard::Error::BadConfig { setting, problem } => {
                        format!("{} {problem}", flag_for(setting)).into()
                    }
                    other => Box::new(other),
                }
            })?;
    let options = banner::Options {
        development_cert,
        qr,
        cluster,
    };
    banner::print(&server, &options);
    // Wait for SIGINT or SIGTERM; a closed channel cannot happen while the handler lives.
    let _ = stop_rx.recv();
    server.shutdown();
    log::info!("bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_takes_addresses_and_names_with_a_port() {
        for ok in [
            "0.0.0.0:3000",
            "[::]:3000",
            "[::1]:0",
            "localhost:3000",
            "chat.example.org:80",
        ] {
            assert_eq!(host_port(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn host_port_refuses_a_missing_or_bad_port() {
        for bad in [
            "nonsense",
            "127.0.0.1",
            "::1",
            ":3000",
            "localhost:",
            "localhost:65536",
            "localhost:-1",
            "[::1]:",
            "[::1]:70000",
            "",
        ] {
            let error = host_port(bad).expect_err(bad);
            assert!(error.contains("HOST:PORT"), "{bad}: {error}");
        }
    }
}
