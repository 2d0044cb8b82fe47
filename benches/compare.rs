//! Switchboard side by side with a tokio-tungstenite baseline (issue 5).
//!
//! `cargo bench --bench compare` starts two servers as separate processes on
//! `127.0.0.1:0`: the `switchboard` binary, and this same executable re-run with
//! `--baseline-server`, which serves `/ws/echo` and `/ws/relay/{room}` the way a Rust
//! user would write it with tokio and tokio-tungstenite. It then runs every scenario
//! of `switchboard bench … --json` against each, alternating (switchboard, baseline,
//! switchboard, baseline, …) so that drift in a noisy machine falls on both sides,
//! and prints the medians, the ratio switchboard / baseline, and a Markdown table for
//! `BENCHMARKS.md`.
//!
//! ```text
//! cargo bench --bench compare                    # every scenario, 3 runs each
//! cargo bench --bench compare -- --quick         # 1 short run each: does it work?
//! cargo bench --bench compare -- --only fanout   # scenarios whose name starts so
//! cargo bench --bench compare -- --runs 5
//! ```
//!
//! The `idle` scenario gets a fresh pair of servers for every run: a process that
//! already served other scenarios reuses freed memory, which hides the cost of a
//! connection. Before each run the runner waits for both servers to go quiet, so one
//! side's backlog from the previous run does not land on the other side's figures.
//!
//! `cargo test --all-targets` runs this executable without `--bench`; it then does
//! nothing, so the test run never turns into a benchmark.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SWITCHBOARD: &str = env!("CARGO_BIN_EXE_switchboard");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        let addr = args.get(i + 1).map_or("127.0.0.1:0", String::as_str);
        return match baseline::serve(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("baseline server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("compare: a benchmark, not a test; run it with `cargo bench --bench compare`");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo bench --bench compare -- [--quick] [--runs N] [--only NAME]...
  --quick      one short run of each scenario, to check that everything works
  --runs N     runs per server and scenario (default 3)
  --only NAME  only scenarios whose name starts with NAME (repeatable, or a,b,c)";

struct Options {
    quick: bool,
    runs: usize,
    only: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            quick: false,
            runs: 0,
            only: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "--quick" => options.quick = true,
                "--runs" => {
                    options.runs = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--runs needs a number above 0")?;
                }
                "--only" => {
                    let names = args.next().ok_or("--only needs a scenario name")?;
                    options
                        .only
                        .extend(names.split(',').map(|n| n.trim().to_owned()));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if options.runs == 0 {
            options.runs = if options.quick { 1 } else { 3 };
        }
        Ok(options)
    }
}

/// Lower or higher is better.
#[derive(Clone, Copy)]
enum Goal {
    Lower,
    Higher,
}

/// One figure of a scenario's JSON line that goes into the comparison.
struct Figure {
    key: &'static str,
    label: &'static str,
    goal: Goal,
}

const fn fig(key: &'static str, label: &'static str, goal: Goal) -> Figure {
    Figure { key, label, goal }
}

const FANOUT_FIGURES: &[Figure] = &[
    fig("p50_us", "latency p50 (µs)", Goal::Lower),
    fig("p99_us", "latency p99 (µs)", Goal::Lower),
    fig("p999_us", "latency p99.9 (µs)", Goal::Lower),
    fig("max_us", "latency max (µs)", Goal::Lower),
    fig("lost", "lost deliveries", Goal::Lower),
    fig("deliveries_per_sec", "deliveries/s", Goal::Higher),
    fig(
        "closed_receivers",
        "receivers closed by the server",
        Goal::Lower,
    ),
    fig(
        "sender_lag_p99_us",
        "sender behind schedule p99 (µs)",
        Goal::Lower,
    ),
    fig("generator_cpu_share", "generator CPU (cores)", Goal::Lower),
    fig(
        "generator_wait_share",
        "generator waiting for a CPU (share)",
        Goal::Lower,
    ),
];

const FANOUT_MAX_FIGURES: &[Figure] = &[
    fig("deliveries_per_sec", "deliveries/s", Goal::Higher),
    fig("p50_us", "latency p50 (µs)", Goal::Lower),
    fig("p99_us", "latency p99 (µs)", Goal::Lower),
    fig("lost", "lost deliveries", Goal::Lower),
    fig(
        "closed_receivers",
        "receivers closed by the server",
        Goal::Lower,
    ),
    fig("generator_cpu_share", "generator CPU (cores)", Goal::Lower),
    fig(
        "generator_wait_share",
        "generator waiting for a CPU (share)",
        Goal::Lower,
    ),
];

const ECHO_FIGURES: &[Figure] = &[
    fig("round_trips_per_sec", "round trips/s", Goal::Higher),
    fig("p50_us", "RTT p50 (µs)", Goal::Lower),
    fig("p99_us", "RTT p99 (µs)", Goal::Lower),
    fig("generator_cpu_share", "generator CPU (cores)", Goal::Lower),
    fig(
        "generator_wait_share",
        "generator waiting for a CPU (share)",
        Goal::Lower,
    ),
];

const CONNECT_FIGURES: &[Figure] = &[
    fig("handshakes_per_sec", "handshakes/s", Goal::Higher),
    fig("p99_ms", "cycle p99 (ms)", Goal::Lower),
    fig("failed", "failed", Goal::Lower),
    fig("generator_cpu_share", "generator CPU (cores)", Goal::Lower),
    fig(
        "generator_wait_share",
        "generator waiting for a CPU (share)",
        Goal::Lower,
    ),
];

const IDLE_FIGURES: &[Figure] = &[
    fig("held", "connections held", Goal::Higher),
    fig(
        "server_cpu_secs",
        "server CPU over the idle window (s)",
        Goal::Lower,
    ),
    fig(
        "rss_kib_per_conn",
        "resident memory per connection (KiB)",
        Goal::Lower,
    ),
];

/// One scenario with its sizes, as the issue's targets give them.
struct Case {
    name: &'static str,
    title: &'static str,
    /// `switchboard bench` arguments, without `--url` and `--json`.
    args: Vec<String>,
    figures: &'static [Figure],
    /// Gets fresh servers for every run and passes `--pid`.
    fresh_servers: bool,
}

fn cases(quick: bool) -> Vec<Case> {
    let secs = |full: u64, short: u64| if quick { short } else { full }.to_string();
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let with = |mut a: Vec<String>, more: &[String]| {
        a.extend_from_slice(more);
        a
    };
    vec![
        Case {
            name: "fanout-100",
            title: "fanout, 1 → 100 receivers, 1,000 msg/s, 64 B",
            args: with(
                args(&["fanout", "--receivers", "100", "--rate", "1000"]),
                &["--duration".into(), secs(10, 2)],
            ),
            figures: FANOUT_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "fanout-1000",
            title: "fanout, 1 → 1,000 receivers, 1,000 msg/s, 64 B",
            args: with(
                args(&["fanout", "--receivers", "1000", "--rate", "1000"]),
                &["--duration".into(), secs(10, 2)],
            ),
            figures: FANOUT_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "fanout-max-100",
            title: "fanout-max, 1 → 100 receivers, window 64, 64 B",
            args: with(
                args(&["fanout-max", "--receivers", "100", "--window", "64"]),
                &["--duration".into(), secs(10, 2)],
            ),
            figures: FANOUT_MAX_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "echo-1",
            title: "echo, 1 client, 32 B",
            args: with(
                args(&["echo", "--clients", "1", "--size", "32"]),
                &["--duration".into(), secs(10, 2)],
            ),
            figures: ECHO_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "echo-32",
            title: "echo, 32 clients, 32 B",
            args: with(
                args(&["echo", "--clients", "32", "--size", "32"]),
                &["--duration".into(), secs(10, 2)],
            ),
            figures: ECHO_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "connect-rate-8",
            title: "connect-rate, 8 parallel, ws://",
            args: with(
                args(&["connect-rate", "--parallel", "8"]),
                &["--duration".into(), secs(5, 1)],
            ),
            figures: CONNECT_FIGURES,
            fresh_servers: false,
        },
        Case {
            name: "idle-9000",
            title: "idle, 9,000 connections, fresh server",
            args: with(
                args(&["idle", "--connections", "9000"]),
                &["--duration".into(), secs(10, 1)],
            ),
            figures: IDLE_FIGURES,
            fresh_servers: true,
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Switchboard,
    Baseline,
}

impl Side {
    const BOTH: [Side; 2] = [Side::Switchboard, Side::Baseline];

    fn name(self) -> &'static str {
        match self {
            Side::Switchboard => "switchboard",
            Side::Baseline => "baseline",
        }
    }
}

/// A server process, killed when dropped (also when the runner fails half-way).
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(side: Side) -> Result<Self, String> {
        let mut cmd = match side {
            Side::Switchboard => {
                let mut cmd = Command::new(SWITCHBOARD);
                // --no-persist: the relay and echo scenarios store nothing, and a
                // fresh server for `idle` must not find the long-lived one holding
                // the default data directory (nor write into the user's).
                cmd.args([
                    "--listen",
                    "127.0.0.1:0",
                    "--no-tls",
                    "--no-persist",
                    "--max-connections-per-ip",
                    "20000",
                ]);
                cmd
            }
            Side::Baseline => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut cmd = Command::new(exe);
                cmd.args(["--baseline-server", "127.0.0.1:0"]);
                cmd
            }
        };
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {} server: {e}", side.name()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Both servers print their address on stdout: the switchboard banner has
        // `http://ADDR/`, the baseline `listening on ADDR`.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                let addr = line
                    .split_once("http://")
                    .map(|(_, rest)| rest.trim_end_matches('/'))
                    .or_else(|| line.strip_prefix("listening on "))
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                    break;
                }
            }
            // Keep draining, so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        server.addr = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("the {} server printed no address", side.name()))?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU ticks (1/100 s) a process has used.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Waits (at most 10 s) until the servers use under a tenth of a core, so work left
/// over from the previous run does not count against the next.
fn settle(pids: &[u32]) {
    let give_up = Instant::now() + Duration::from_secs(10);
    let total = || pids.iter().filter_map(|&p| cpu_ticks(p)).sum::<u64>();
    let mut before = total();
    while Instant::now() < give_up {
        thread::sleep(Duration::from_millis(200));
        let now = total();
        if now - before < 2 {
            return;
        }
        before = now;
    }
}

/// Runs one `switchboard bench` process and returns its JSON line.
fn run_bench(case: &Case, server: &ServerProcess) -> Result<Value, String> {
    let mut cmd = Command::new(SWITCHBOARD);
    cmd.arg("bench")
        .args(&case.args)
        .args(["--url", &server.url(), "--json"]);
    if case.fresh_servers {
        cmd.args(["--pid", &server.pid().to_string()]);
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start switchboard bench: {e}"))?;
    // Its notes on stderr are in the JSON too, and summed up per scenario; its errors
    // go into ours.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    // Every scenario bounds itself; this is for a generator stuck on a dead server.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out after 90 s".into());
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "switchboard bench failed ({status}): {}",
            err.trim()
        ));
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("switchboard bench printed no JSON")?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON from switchboard bench: {e}"))
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn values(runs: &[Value], key: &str) -> Vec<f64> {
    runs.iter().filter_map(|r| r.get(key)?.as_f64()).collect()
}

fn show(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 1000.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn ratio(sb: Option<f64>, bl: Option<f64>) -> Option<f64> {
    match (sb, bl) {
        (Some(s), Some(b)) if b != 0.0 => Some(s / b),
        (Some(0.0), Some(_)) => Some(1.0),
        _ => None,
    }
}

/// The results of one case: every run's JSON, per side.
struct Results<'a> {
    case: &'a Case,
    runs: [Vec<Value>; 2],
}

impl Results<'_> {
    fn median(&self, side: Side, key: &str) -> Option<f64> {
        median(&mut values(&self.runs[side as usize], key))
    }

    fn print(&self) {
        println!();
        println!("== {} ({}) ==", self.case.name, self.case.title);
        println!(
            "{:<38} {:>13} {:>13} {:>8}  runs (switchboard | baseline)",
            "median", "switchboard", "baseline", "sb/bl"
        );
        for f in self.case.figures {
            let (sb, bl) = (
                self.median(Side::Switchboard, f.key),
                self.median(Side::Baseline, f.key),
            );
            let runs = |side: Side| {
                values(&self.runs[side as usize], f.key)
                    .into_iter()
                    .map(|v| show(Some(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let goal = match f.goal {
                Goal::Lower => "↓",
                Goal::Higher => "↑",
            };
            println!(
                "{:<38} {:>13} {:>13} {:>8}  {} | {}",
                format!("{} {goal}", f.label),
                show(sb),
                show(bl),
                ratio(sb, bl).map_or("–".into(), |r| format!("{r:.2}")),
                runs(Side::Switchboard),
                runs(Side::Baseline)
            );
        }
        for side in Side::BOTH {
            let runs = &self.runs[side as usize];
            let saturated = runs
                .iter()
                .filter(|r| r.get("generator_saturated") == Some(&Value::Bool(true)))
                .count();
            if saturated > 0 {
                println!(
                    "note: against {}, the generator came near a full core in {saturated} of {} runs",
                    side.name(),
                    runs.len()
                );
            }
            let starved = runs
                .iter()
                .filter(|r| {
                    r.get("generator_wait_share")
                        .and_then(Value::as_f64)
                        .is_some_and(|w| w >= 0.2)
                })
                .count();
            if starved > 0 {
                println!(
                    "note: against {}, a generator thread waited for a CPU over 20% of the time \
                     in {starved} of {} runs",
                    side.name(),
                    runs.len()
                );
            }
        }
    }

    fn markdown_rows(&self, out: &mut String) {
        for f in self.case.figures {
            let (sb, bl) = (
                self.median(Side::Switchboard, f.key),
                self.median(Side::Baseline, f.key),
            );
            let better = match f.goal {
                Goal::Lower => "lower is better",
                Goal::Higher => "higher is better",
            };
            out.push_str(&format!(
                "| {} | {} ({better}) | {} | {} | **{}** | {} + {} |\n",
                self.case.title,
                f.label,
                show(sb),
                show(bl),
                ratio(sb, bl).map_or("–".into(), |r| format!("{r:.2}")),
                self.runs[0].len(),
                self.runs[1].len()
            ));
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let cases: Vec<Case> = cases(options.quick)
        .into_iter()
        .filter(|c| options.only.is_empty() || options.only.iter().any(|o| c.name.starts_with(o)))
        .collect();
    if cases.is_empty() {
        return Err(format!(
            "no scenario matches --only {}; the names are: {}",
            options.only.join(","),
            cases_names()
        ));
    }
    println!(
        "compare: {} scenario(s), {} run(s) per server, alternating; machine: {} cores, Linux {}",
        cases.len(),
        options.runs,
        thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let needs_long_lived = cases.iter().any(|c| !c.fresh_servers);
    let long_lived = if needs_long_lived {
        let sb = ServerProcess::start(Side::Switchboard)?;
        let bl = ServerProcess::start(Side::Baseline)?;
        println!(
            "switchboard on {} (pid {}), baseline on {} (pid {})",
            sb.addr,
            sb.pid(),
            bl.addr,
            bl.pid()
        );
        Some([sb, bl])
    } else {
        None
    };
    let mut all = Vec::new();
    for case in &cases {
        let mut results = Results {
            case,
            runs: [Vec::new(), Vec::new()],
        };
        for round in 1..=options.runs {
            for side in Side::BOTH {
                let fresh;
                let server = match (&long_lived, case.fresh_servers) {
                    (Some(servers), false) => &servers[side as usize],
                    _ => {
                        fresh = ServerProcess::start(side)?;
                        &fresh
                    }
                };
                let mut pids: Vec<u32> = long_lived
                    .iter()
                    .flatten()
                    .map(ServerProcess::pid)
                    .collect();
                if !pids.contains(&server.pid()) {
                    pids.push(server.pid());
                }
                settle(&pids);
                let started = Instant::now();
                match run_bench(case, server) {
                    Ok(json) => {
                        println!(
                            "{} {} run {round}: {} ({:.1} s)",
                            case.name,
                            side.name(),
                            summary(case, &json),
                            started.elapsed().as_secs_f64()
                        );
                        results.runs[side as usize].push(json);
                    }
                    Err(e) => println!("{} {} run {round}: failed: {e}", case.name, side.name()),
                }
            }
        }
        results.print();
        all.push(results);
    }
    let mut md = String::from(
        "| scenario | figure | switchboard | tokio-tungstenite | switchboard / baseline | runs |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for results in &all {
        results.markdown_rows(&mut md);
    }
    println!("\nMarkdown for BENCHMARKS.md (medians):\n");
    print!("{md}");
    Ok(())
}

fn cases_names() -> String {
    cases(true)
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The case's figures from one run, on one line.
fn summary(case: &Case, json: &Value) -> String {
    case.figures
        .iter()
        .filter_map(|f| Some(format!("{} {}", f.key, show(json.get(f.key)?.as_f64()))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The baseline: what a Rust user would write with tokio and tokio-tungstenite.
///
/// A multi-thread runtime with two workers (the cores of the reference machine), a
/// task per connection, tungstenite's default configuration. `/ws/echo` sends every
/// text or binary message back; `/ws/relay/{room}` forwards them to the room's other
/// members through a bounded channel per member, fed by a room registry behind a
/// `std::sync::Mutex` (held only for `try_send`s, never across an `.await`). A member
/// whose channel is full is dropped from the room, and its writer task then closes
/// the connection: the same slow-consumer policy, with the same queue length, as
/// switchboard's outbox.
mod baseline {
    use futures_util::{SinkExt, StreamExt};
    use std::collections::HashMap;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::{Message, http};

    /// Messages queued for one relay member, as switchboard's default outbox.
    const OUTBOX: usize = 1024;

    type Rooms = Arc<Mutex<HashMap<String, HashMap<u64, mpsc::Sender<Message>>>>>;

    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    pub fn serve(addr: &str) -> io::Result<()> {
        raise_open_file_limit();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let listener = TcpListener::bind(addr).await?;
            println!("listening on {}", listener.local_addr()?);
            let rooms = Rooms::default();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait instead of spinning.
                        eprintln!("baseline: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream, Arc::clone(&rooms)));
            }
        })
    }

    /// As switchboard does at start: the soft open-file limit up to the hard one.
    fn raise_open_file_limit() {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }

    async fn handle(stream: TcpStream, rooms: Rooms) {
        let mut path = String::new();
        // The error type is tungstenite's `Callback` signature, not ours to shrink.
        #[allow(clippy::result_large_err)]
        let route = |request: &Request, response: Response| {
            let p = request.uri().path();
            if p == "/ws/echo" || p.strip_prefix("/ws/relay/").is_some_and(|r| !r.is_empty()) {
                path = p.to_owned();
                Ok(response)
            } else {
                let mut not_found = ErrorResponse::new(Some("not found".into()));
                *not_found.status_mut() = http::StatusCode::NOT_FOUND;
                Err(not_found)
            }
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, route).await else {
            return;
        };
        match path.strip_prefix("/ws/relay/") {
            Some(room) => relay(ws, room.to_owned(), rooms).await,
            None => echo(ws).await,
        }
    }

    async fn echo(mut ws: WebSocketStream<TcpStream>) {
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    }

    async fn relay(ws: WebSocketStream<TcpStream>, room: String, rooms: Rooms) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(OUTBOX);
        rooms
            .lock()
            .expect("room registry")
            .entry(room.clone())
            .or_default()
            .insert(id, tx);
        let (mut sink, mut stream) = ws.split();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        while let Some(Ok(msg)) = stream.next().await {
            if !(msg.is_text() || msg.is_binary()) {
                continue;
            }
            let mut rooms = rooms.lock().expect("room registry");
            if let Some(members) = rooms.get_mut(&room) {
                // Full: a slow consumer, dropped. Closed: already gone.
                members.retain(|&other, tx| other == id || tx.try_send(msg.clone()).is_ok());
            }
        }
        {
            let mut rooms = rooms.lock().expect("room registry");
            if let Some(members) = rooms.get_mut(&room) {
                members.remove(&id);
                if members.is_empty() {
                    rooms.remove(&room);
                }
            }
        }
        let _ = writer.await;
    }
}
