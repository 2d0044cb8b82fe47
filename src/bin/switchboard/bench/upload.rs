//! `bench upload`: files shared in the chat, one after another: how fast their bytes
//! go from a client's binary messages to the server's disk and back as a message, and
//! how much the server's memory grows while it takes them.

use super::proc::{hwm_kib, rss_kib};
use super::{BoxError, connect, print_json};
use clap::Args;
use serde::Serialize;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Largest file this scenario sends, in MiB.
const MAX_MIB: usize = 1024;
/// Most uploads in one run.
const MAX_UPLOADS: usize = 100;
/// Longest an upload may take before the run gives up on it.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// Server base URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// The chat room the files are shared in.
    #[arg(long, default_value = "bench-upload")]
    room: String,
    /// Size of each file, in MiB (at most 1,024; the server's --max-file-size must allow it).
    #[arg(long, default_value_t = 64)]
    mib: usize,
    /// Files to send, one after another (at most 100).
    #[arg(long, default_value_t = 3)]
    uploads: usize,
    /// Bytes per binary message, in KiB (within the server's --max-message-size).
    #[arg(long, default_value_t = 1024)]
    chunk_kib: usize,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct UploadReport {
    scenario: &'static str,
    mib: usize,
    uploads: usize,
    /// Megabytes (10^6 bytes) a second, announcement to stored message, per upload.
    mb_per_sec: Vec<f64>,
    median_mb_per_sec: f64,
    /// How much the server's peak resident memory grew over the run.
    server_peak_growth_kib: Option<u64>,
    server_rss_before_kib: Option<u64>,
}

pub(super) fn upload(args: &UploadArgs) -> Result<(), BoxError> {
    if args.mib == 0 || args.mib > MAX_MIB {
        return Err(format!("between 1 and {MAX_MIB} MiB, please").into());
    }
    if args.uploads == 0 || args.uploads > MAX_UPLOADS {
        return Err(format!("between 1 and {MAX_UPLOADS} uploads, please").into());
    }
    let chunk = args.chunk_kib.clamp(1, 16 * 1024) * 1024;
    let size = args.mib << 20;
    let mut ws = connect(&args.url, &format!("/ws/chat/{}?name=uploader", args.room))?;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(1)))?;
    let rss_before = args.pid.and_then(rss_kib);
    let peak_before = args.pid.and_then(hwm_kib);
    let mut rates = Vec::with_capacity(args.uploads);
    // One buffer of varied bytes, sent again and again: the generator allocates
    // nothing per upload. The last byte differs per upload, so that the server does
    // not store the same content once.
    let mut piece: Vec<u8> = (0..chunk).map(|i| (i * 31 % 251) as u8).collect();
    for n in 0..args.uploads {
        let name = format!("bench-{n}.bin");
        let announce = serde_json::json!({
            "type": "file", "name": name, "mime": "application/octet-stream", "size": size
        });
        let start = Instant::now();
        ws.send(Message::text(announce.to_string()))?;
        let mut sent = 0;
        while sent < size {
            let len = chunk.min(size - sent);
            if sent + len == size
                && let Some(last) = piece.get_mut(len - 1)
            {
                *last = n as u8;
            }
            ws.write(Message::binary(piece[..len].to_vec()))?;
            sent += len;
        }
        ws.flush()?;
        loop {
            if start.elapsed() > UPLOAD_TIMEOUT {
                return Err(format!("upload {n} got no message in {UPLOAD_TIMEOUT:?}").into());
            }
            let text = match ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let msg: serde_json::Value = serde_json::from_str(&text)?;
            if msg["type"] == "error" {
                return Err(format!("upload {n}: {msg}").into());
            }
            if msg["type"] == "message" && msg["file"]["name"] == name.as_str() {
                break;
            }
        }
        rates.push(size as f64 / 1e6 / start.elapsed().as_secs_f64());
    }
    let peak_after = args.pid.and_then(hwm_kib);
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let report = UploadReport {
        scenario: "upload",
        mib: args.mib,
        uploads: args.uploads,
        mb_per_sec: rates.iter().map(|&r| round1(r)).collect(),
        median_mb_per_sec: round1(median),
        server_peak_growth_kib: peak_before
            .zip(peak_after)
            .map(|(a, b)| b.saturating_sub(a)),
        server_rss_before_kib: rss_before,
    };
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "upload: {} files of {} MiB to room {}",
            args.uploads, args.mib, args.room
        );
        println!("  MB/s each                 {:?}", report.mb_per_sec);
        println!(
            "  median                    {} MB/s",
            report.median_mb_per_sec
        );
        match report.server_peak_growth_kib {
            Some(kib) => println!("  server peak memory grew   {kib} KiB"),
            None => println!("  (pass --pid to read the server's memory)"),
        }
    }
    Ok(())
}
