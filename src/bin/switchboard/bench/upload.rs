//! `bench upload`: files shared in the chat, one after another: how fast their bytes
//! go from a client's binary messages to the server's disk and back as a message, and
//! how much the server's memory grows while it takes them.
//!
//! Two yardsticks run beside it, in the same run: the **baseline**, the same bytes in
//! the same pieces through a plain loopback socket into a file (synced, as the server
//! syncs a file before its message), alternating with the uploads so that both see the
//! same machine; and the **chat of another room**, a member there timing its own
//! messages round trip, first while nothing is uploaded, then during the uploads.

use super::proc::{ThreadTime, hwm_kib, rss_kib, threads_cpu_secs};
use super::{BoxError, connect, print_json};
use clap::Args;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Largest file this scenario sends, in MiB.
const MAX_MIB: usize = 1024;
/// Most uploads in one run.
const MAX_UPLOADS: usize = 100;
/// Longest an upload may take before the run gives up on it.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the other room's chat is timed before any upload.
const QUIET: Duration = Duration::from_secs(3);
/// Time between the other room's messages: within the default rate limit.
const PROBE_EVERY: Duration = Duration::from_millis(60);

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
    /// The same bytes through a plain socket into a synced file, per run.
    baseline_mb_per_sec: Vec<f64>,
    median_baseline_mb_per_sec: f64,
    /// Upload median over baseline median.
    ratio_to_baseline: f64,
    /// Another room's chat round trip, 99th percentile, in ms: with nothing uploaded,
    /// and during the uploads.
    other_room_p99_ms_quiet: f64,
    other_room_p99_ms_during: f64,
    other_room_samples: (usize, usize),
    /// CPU time per MiB, in ms: the server's (all its threads) against the baseline's
    /// receiver, and this generator's sending thread against the baseline's sender.
    /// Throughput on two cores is as much the sender's cost as the server's; these say
    /// whose it is.
    server_cpu_ms_per_mib: Option<f64>,
    baseline_receiver_cpu_ms_per_mib: f64,
    sender_cpu_ms_per_mib: f64,
    baseline_sender_cpu_ms_per_mib: f64,
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
    let probe = Probe::start(&args.url, &format!("{}-other", args.room))?;
    thread::sleep(QUIET);
    let quiet = probe.take();
    let rss_before = args.pid.and_then(rss_kib);
    let peak_before = args.pid.and_then(hwm_kib);
    let mut rates = Vec::with_capacity(args.uploads);
    let mut baseline = Vec::with_capacity(args.uploads);
    // One buffer of varied bytes, sent again and again: the generator allocates
    // nothing per upload. The last byte differs per upload, so that the server does
    // not store the same content once.
    let piece: Vec<u8> = (0..chunk).map(|i| (i * 31 % 251) as u8).collect();
    let mut during = Vec::new();
    let (mut server_cpu, mut sender_cpu) = (Some(0.0), 0.0);
    let (mut plain_receiver_cpu, mut plain_sender_cpu) = (0.0, 0.0);
    for n in 0..args.uploads {
        let plain = plain(&piece, size)?;
        baseline.push(plain.rate);
        plain_receiver_cpu += plain.receiver_cpu;
        plain_sender_cpu += plain.sender_cpu;
        probe.take();
        let server_before = args.pid.and_then(threads_cpu_secs);
        let sender_before = ThreadTime::now();
        rates.push(share(&mut ws, &piece, size, n)?);
        sender_cpu += ThreadTime::now().since(sender_before).cpu;
        let server_after = args.pid.and_then(threads_cpu_secs);
        server_cpu = server_cpu
            .zip(server_before.zip(server_after))
            .map(|(sum, (before, after))| sum + (after - before));
        during.extend(probe.take());
    }
    let mib = (args.uploads * args.mib) as f64;
    let per_mib = |secs: f64| (secs * 1000.0 / mib * 100.0).round() / 100.0;
    probe.stop();
    let peak_after = args.pid.and_then(hwm_kib);
    let median = median(&rates);
    let median_baseline = self::median(&baseline);
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    let report = UploadReport {
        scenario: "upload",
        mib: args.mib,
        uploads: args.uploads,
        mb_per_sec: rates.iter().map(|&r| round1(r)).collect(),
        median_mb_per_sec: round1(median),
        baseline_mb_per_sec: baseline.iter().map(|&r| round1(r)).collect(),
        median_baseline_mb_per_sec: round1(median_baseline),
        ratio_to_baseline: round2(median / median_baseline),
        other_room_p99_ms_quiet: round2(p99_ms(&quiet)),
        other_room_p99_ms_during: round2(p99_ms(&during)),
        other_room_samples: (quiet.len(), during.len()),
        server_cpu_ms_per_mib: server_cpu.filter(|_| args.pid.is_some()).map(per_mib),
        baseline_receiver_cpu_ms_per_mib: per_mib(plain_receiver_cpu),
        sender_cpu_ms_per_mib: per_mib(sender_cpu),
        baseline_sender_cpu_ms_per_mib: per_mib(plain_sender_cpu),
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
        println!(
            "  baseline (plain socket)   {:?}, median {} MB/s: upload is {}x",
            report.baseline_mb_per_sec, report.median_baseline_mb_per_sec, report.ratio_to_baseline
        );
        println!(
            "  other room's chat p99     {} ms quiet, {} ms during the uploads ({} and {} samples)",
            report.other_room_p99_ms_quiet,
            report.other_room_p99_ms_during,
            quiet.len(),
            during.len()
        );
        println!(
            "  CPU per MiB               server {} ms (baseline's receiver {} ms); sender {} ms \
             (baseline's {} ms)",
            report
                .server_cpu_ms_per_mib
                .map_or("?".to_owned(), |ms| ms.to_string()),
            report.baseline_receiver_cpu_ms_per_mib,
            report.sender_cpu_ms_per_mib,
            report.baseline_sender_cpu_ms_per_mib
        );
        match report.server_peak_growth_kib {
            Some(kib) => println!("  server peak memory grew   {kib} KiB"),
            None => println!("  (pass --pid to read the server's memory)"),
        }
    }
    Ok(())
}

/// Shares one file of `size` bytes (`piece` over and over, its last byte made `n`);
/// its MB/s, from the announcement to the stored message.
fn share(ws: &mut super::Client, piece: &[u8], size: usize, n: usize) -> Result<f64, BoxError> {
    let chunk = piece.len();
    let name = format!("bench-{n}.bin");
    let announce = serde_json::json!({
        "type": "file", "name": name, "mime": "application/octet-stream", "size": size
    });
    let start = Instant::now();
    ws.send(Message::text(announce.to_string()))?;
    // The same bytes each time, shared rather than copied (the generator should cost
    // less than the server); the last piece is the one that differs per upload.
    let whole = tungstenite::Bytes::copy_from_slice(piece);
    let mut sent = 0;
    while sent < size {
        let len = chunk.min(size - sent);
        let data = if sent + len == size {
            let mut last = piece[..len].to_vec();
            if let Some(byte) = last.last_mut() {
                *byte = n as u8;
            }
            tungstenite::Bytes::from(last)
        } else if len == chunk {
            whole.clone()
        } else {
            whole.slice(..len)
        };
        ws.write(Message::binary(data))?;
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
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        let msg: serde_json::Value = serde_json::from_str(&text)?;
        if msg["type"] == "error" {
            return Err(format!("upload {n}: {msg}").into());
        }
        if msg["type"] == "message" && msg["file"]["name"] == name.as_str() {
            return Ok(size as f64 / 1e6 / start.elapsed().as_secs_f64());
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One run of the baseline: its MB/s, and the CPU seconds of its two threads.
struct Plain {
    rate: f64,
    receiver_cpu: f64,
    sender_cpu: f64,
}

/// The baseline: `size` bytes, `piece` at a time, through a plain loopback socket to a
/// thread that writes them to a file and syncs it.
fn plain(piece: &[u8], size: usize) -> Result<Plain, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let path = std::env::temp_dir().join(format!(
        "switchboard-bench-baseline-{}.bin",
        std::process::id()
    ));
    let target = path.clone();
    let receiver = thread::spawn(move || -> std::io::Result<f64> {
        let (mut stream, _) = listener.accept()?;
        let cpu = ThreadTime::now();
        stream.set_read_timeout(Some(UPLOAD_TIMEOUT))?;
        let mut file = std::fs::File::create(&target)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < size {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(buf.get(..n).unwrap_or_default())?;
            got += n;
        }
        file.sync_all()?;
        // The answer, as the server's message is one.
        stream.write_all(b"k")?;
        Ok(ThreadTime::now().since(cpu).cpu)
    });
    let sender = ThreadTime::now();
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(UPLOAD_TIMEOUT))?;
    let mut sent = 0;
    while sent < size {
        let len = piece.len().min(size - sent);
        stream.write_all(&piece[..len])?;
        sent += len;
    }
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer)?;
    let rate = size as f64 / 1e6 / start.elapsed().as_secs_f64();
    let sender_cpu = ThreadTime::now().since(sender).cpu;
    let joined = receiver.join();
    let _ = std::fs::remove_file(&path);
    match joined {
        Ok(Ok(receiver_cpu)) => Ok(Plain {
            rate,
            receiver_cpu,
            sender_cpu,
        }),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err("the baseline's receiver failed".into()),
    }
}

/// A member of another room timing its own messages' round trips, on a thread.
struct Probe {
    stop: Arc<AtomicBool>,
    samples: crossbeam_channel::Receiver<Duration>,
    thread: thread::JoinHandle<()>,
}

impl Probe {
    fn start(url: &str, room: &str) -> Result<Probe, BoxError> {
        let mut ws = connect(url, &format!("/ws/chat/{room}?name=probe"))?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, samples) = crossbeam_channel::unbounded();
        let done = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::Acquire) {
                n += 1;
                let text = format!("probe {n}");
                let start = Instant::now();
                let msg = serde_json::json!({"type": "message", "text": text});
                if ws.send(Message::text(msg.to_string())).is_err() {
                    return;
                }
                // Its own message back from the room: one round trip through the hub.
                loop {
                    match ws.read() {
                        Ok(Message::Text(t)) if t.contains(&text) => break,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                let _ = tx.send(start.elapsed());
                thread::sleep(PROBE_EVERY);
            }
        });
        Ok(Probe {
            stop,
            samples,
            thread,
        })
    }

    /// The round trips timed since the last call.
    fn take(&self) -> Vec<Duration> {
        self.samples.try_iter().collect()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The 99th percentile of `samples`, in milliseconds (0 without any).
fn p99_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
