//! Entry points for the fuzz targets in `fuzz/`. Not part of the supported API: they
//! exist so that `cargo fuzz` can reach the code that reads untrusted bytes.

use crate::base::{Context, Peer};
use crate::config::Config;
use crate::http::{self, Admission};
use crate::hub::{Hub, HubConfig, HubEvent};
use crossbeam_channel::Sender;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Parses `data` as a request head and routes it, as the HTTP front does.
pub fn http_head(data: &[u8]) {
    if let Ok(crate::http::request::Parsed::Complete(req, _)) = crate::http::request::parse(data) {
        let config = Config::default();
        let _ = crate::http::route(&req, &config, &crate::metrics::Metrics::new());
    }
}

/// Decodes `data` as a chat client's text frame.
pub fn chat_decode(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::chat::decode(text, 4096);
    }
}

/// A server's shared state and hub, made once per fuzzing process.
fn server() -> &'static (Arc<Context>, Sender<HubEvent>) {
    static SERVER: OnceLock<(Arc<Context>, Sender<HubEvent>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let config = Config {
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let shared = Arc::new(Context::new(config, None).expect("an eventfd"));
        let (tx, rx) = crossbeam_channel::bounded(256);
        let hub = Hub::new(HubConfig { history: 50 }, Arc::clone(&shared.metrics));
        thread::spawn(move || hub.run(rx));
        (shared, tx)
    })
}

/// Runs a whole connection, handshake then frames, with `data` as everything the
/// client sends, over a Unix socket pair: the same code as a real connection, no
/// network.
pub fn connection(data: &[u8]) {
    static IDS: AtomicU64 = AtomicU64::new(0);
    // More than the pair's buffer would block this single-threaded harness.
    let data = &data[..data.len().min(60_000)];
    let (shared, hub) = server();
    let Ok((server_end, mut client_end)) = UnixStream::pair() else {
        return;
    };
    // The client's bytes, then end-of-stream. Responses stay in the pair's buffer,
    // which is larger than anything a small input can make the server send.
    if client_end.write_all(data).is_err() || client_end.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let peer = Peer {
        id: IDS.fetch_add(1, Ordering::Relaxed),
        addr: "127.0.0.1:9".parse().expect("a literal address"),
        secure: false,
    };
    let deadline = Instant::now() + shared.config.handshake_timeout;
    http::serve(server_end, peer, Admission::Admit, deadline, shared, hub);
}
