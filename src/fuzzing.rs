//! Entry points for the fuzz targets in `fuzz/`, built only for them (`cargo fuzz`
//! sets `--cfg fuzzing`) and for this crate's own tests, which replay every committed
//! corpus and regression input. Not part of the library's API.
//!
//! Each input gets a server state of its own, so what one input does (a room's
//! history, a name taken) cannot change what the next one does: a crash or a hang the
//! fuzzer finds reproduces from its artifact alone.

use crate::base::{Context, Peer};
use crate::config::Config;
use crate::connection::Lines;
use crate::doors::Doors;
use crate::http::{self, Admission};
use crate::hub::{Hub, HubConfig};
use crate::store::{self, Location, Store, StoreConfig};
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Parses `data` as a request head and routes it, as the HTTP front does.
pub fn http_head(data: &[u8]) {
    if let Ok(http::request::Parsed::Complete(req, _)) = http::request::parse(data) {
        let config = Config::default();
        let _ = http::route(&req, &config, &crate::metrics::Metrics::new());
    }
}

/// Decodes `data` as a chat client's text frame.
pub fn chat_decode(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::chat::decode(text, 4096);
    }
}

/// Runs a whole connection, handshake then frames, with `data` as everything the
/// client sends, over a Unix socket pair: the same code as a real connection, with a
/// fresh hub, and no network.
pub fn connection(data: &[u8]) {
    let config = Config::default()
        .max_message_size(64 * 1024)
        .handshake_timeout(Duration::from_secs(2))
        .close_timeout(Duration::from_secs(1));
    let Ok(ctx) = Context::for_config(config) else {
        return;
    };
    let Ok((server_end, client_end)) = UnixStream::pair() else {
        return;
    };
    let Ok(files) = crate::files::Files::open(None, 1 << 20, 1 << 30) else {
        return;
    };
    let Ok(store) = Store::open(StoreConfig {
        location: Location::Memory,
        retain: 1000,
        history: 50,
        files,
    }) else {
        return;
    };
    let (store_tx, store_rx) = crossbeam_channel::bounded(store::QUEUE);
    let (events_tx, events_rx) = crossbeam_channel::bounded(store::QUEUE);
    let (hub_tx, hub_rx) = crossbeam_channel::bounded(256);
    let config = HubConfig {
        epoch: store.epoch().to_owned(),
        node: store.node().to_owned(),
        shares_relay: false,
        join_timeout: ctx.config.handshake_timeout,
        api_rate: (20, 40),
        max_rooms: 10_000,
        stored_rooms: Vec::new(),
        rules: Vec::new(),
        kick_time: ctx.config.kick_time,
        limits: ctx.config.limits(),
    };
    let doors = Doors::new(
        Default::default(),
        Vec::new(),
        store_tx.clone(),
        Arc::clone(&ctx.metrics),
    );
    let (doors_tx, doors_rx) = crossbeam_channel::bounded(crate::doors::QUEUE);
    let hub = Hub::new(config, Arc::clone(&ctx.metrics), store_tx, doors_tx.clone());
    let Ok(doors_thread) = thread::Builder::new().spawn(move || doors.run(doors_rx)) else {
        return;
    };
    let Ok(store_thread) = thread::Builder::new().spawn(move || store.run(store_rx, events_tx))
    else {
        return;
    };
    let Ok(hub_thread) = thread::Builder::new().spawn(move || hub.run(hub_rx, events_rx)) else {
        return;
    };
    // The client: sends everything, says it is done, and reads every answer, so the
    // server never blocks on a full socket buffer however much it has to say.
    let data = data.to_vec();
    let client = thread::Builder::new().spawn(move || {
        let mut client_end = client_end;
        if client_end.write_all(&data).is_ok() {
            let _ = client_end.shutdown(Shutdown::Write);
        }
        let _ = std::io::copy(&mut client_end, &mut std::io::sink());
    });
    let peer = Peer {
        id: 1,
        addr: "127.0.0.1:9".parse().expect("a literal address"),
        secure: false,
        local: true,
    };
    let deadline = Instant::now() + ctx.config.handshake_timeout;
    let lines = Lines {
        hub: hub_tx,
        doors: doors_tx,
    };
    http::serve(server_end, peer, Admission::Admit, deadline, &ctx, &lines);
    drop(lines);
    let _ = hub_thread.join();
    let _ = doors_thread.join();
    let _ = store_thread.join();
    if let Ok(client) = client {
        let _ = client.join();
    }
}

#[cfg(test)]
mod tests {
    //! Every input in the fuzzers' committed corpora (`fuzz/corpus/`) and every crash
    //! they ever found (`fuzz/regressions/`) goes through its target again on every
    //! test run, so a fixed crash stays fixed without the fuzzer.

    use super::*;
    use std::path::Path;

    fn run_all(target: &str, f: fn(&[u8])) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let started = Instant::now();
        let mut count = 0;
        for dir in [
            root.join("corpus").join(target),
            root.join("regressions").join(target),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).unwrap();
                f(&data);
                count += 1;
            }
        }
        assert!(count > 0, "no inputs for {target}");
        eprintln!("{target}: {count} inputs in {:?}", started.elapsed());
    }

    #[test]
    fn http_head_corpus_runs_clean() {
        run_all("http_head", http_head);
    }

    #[test]
    fn chat_decode_corpus_runs_clean() {
        run_all("chat_decode", chat_decode);
    }

    #[test]
    fn connection_corpus_runs_clean() {
        run_all("connection", connection);
    }

    /// Thirteen inputs that once hung the harness: with one hub for every input, a
    /// room's history grew until the welcome outgrew the socket pair's buffer, and
    /// the harness never read. Each input now has its own hub and a reading client.
    #[test]
    fn inputs_cannot_affect_each_other_or_hang_on_a_full_buffer() {
        let post = |text: String| {
            let payload = format!(r#"{{"type":"message","text":"{text}"}}"#);
            let mut input = upgrade("/ws/chat/r");
            input.extend(masked_text(payload.as_bytes()));
            input
        };
        let started = Instant::now();
        for _ in 0..12 {
            connection(&post("\\u0001".repeat(3921 / 6)));
        }
        let mut many = post("x".into());
        for _ in 0..562 {
            many.extend(masked_text(b"{}"));
        }
        connection(&many);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the inputs took {:?}: something waited for a timeout",
            started.elapsed()
        );
    }

    /// A valid upgrade request for `path`.
    fn upgrade(path: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes()
    }

    fn masked_text(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x81];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        // A zero masking key leaves the payload as it is.
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_connection_answers_its_client_in_full() {
        // The reading client is what lets a big answer out: an echo of 60,000 bytes
        // is more than a socket pair's buffer holds alongside the request.
        let mut input =
            b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec();
        for _ in 0..5 {
            input.extend(masked_text(&[b'a'; 60_000]));
        }
        let started = Instant::now();
        connection(&input);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
