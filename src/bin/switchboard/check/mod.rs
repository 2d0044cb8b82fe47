//! `switchboard check`: grade a WebSocket server against RFC 6455, case by case,
//! with a hint a student can act on for every case that does not pass.
//!
//! - [`cases`]: the catalogue, by area (one file each), and the engine that runs a
//!   case and grades it the way Autobahn|Testsuite grades the case it mirrors.
//! - [`client`]: the raw socket driver, built on the library's
//!   [`frame`](switchboard::frame) module, which the project's own conformance tests
//!   and trace decoder use too.
//! - [`report`]: verdicts, the text report and `--json`.
//! - [`serve`]: `--serve ADDR`, the same cases from the server's side, to grade a
//!   client on Autobahn's fuzzingserver URLs.
//!
//! Cases are independent (one connection each), so they run on a pool of threads;
//! the big ones (megabytes each) run one at a time on a lane of their own, beside
//! the pool, so that memory stays bounded. Every wait has a deadline (`--timeout`),
//! so a server that hangs costs seconds per case, not minutes.

mod cases;
mod client;
mod report;
mod serve;

use clap::Args;
use crossbeam_channel::unbounded;
use report::{Outcome, Report, Row, Verdict};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The flags of `switchboard check`.
#[derive(Debug, Args)]
#[command(after_help = "\
URL is an echo endpoint of the server under test: every text and binary message
sent to it comes back unchanged (switchboard's own is /ws/echo). The limits cases
send messages up to 16 MiB: switchboard takes 1 MiB by default, so grade it with
`switchboard --max-message-size 16777216`.

With --serve ADDR it grades a client instead: it listens on ADDR and serves the
cases from the server's side on Autobahn|Testsuite's fuzzingserver URLs
(/getCaseCount, /getCaseInfo?case=N, /runCase?case=N&agent=A,
/updateReports?agent=A), so a client harness written for Autobahn runs
unchanged; /updateReports writes that agent's report into --reports DIR.

Exit status:
  0  no case failed (lenient and info are not failures)
  1  some case failed
  2  the server could not be reached, or a bad command line")]
pub(crate) struct CheckArgs {
    /// The echo endpoint to grade: ws://HOST[:PORT]/PATH or wss://…
    #[arg(
        value_name = "URL",
        required_unless_present = "serve",
        conflicts_with = "serve"
    )]
    url: Option<String>,
    /// Grade clients instead: serve the cases on ADDR (e.g. 127.0.0.1:9001), on
    /// Autobahn's fuzzingserver URLs, until stopped.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// With --serve: where /updateReports writes each agent's report.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "reports/clients",
        requires = "serve"
    )]
    reports: PathBuf,
    /// Write the whole report as JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Run only these cases: comma-separated ids or globs, e.g. `5.*,6.4.*`.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    cases: Vec<String>,
    /// How long any one wait of a case may take, in seconds (the 9.x cases, which
    /// move megabytes, get six times as long).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    timeout: f64,
    /// How many cases run at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    jobs: usize,
    /// List passing cases in the text report too.
    #[arg(long, short)]
    verbose: bool,
    /// Print the catalogue (id, area, RFC section, Autobahn case, title) and exit.
    #[arg(long)]
    list: bool,
    /// For wss://: also trust this PEM CA certificate.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// For wss://: accept any certificate. For testing only.
    #[arg(long)]
    insecure: bool,
}

/// Runs `switchboard check`.
pub(crate) fn run(args: CheckArgs) -> ExitCode {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        eprintln!("switchboard check: --timeout must be between 0 and 600 seconds");
        return ExitCode::from(2);
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    if let Some(addr) = &args.serve {
        return serve::run(addr, args.reports.clone(), &args.cases, timeout);
    }
    let url = args.url.clone().unwrap_or_default();
    let all = cases::catalogue();
    let chosen: Vec<&cases::Case> = all
        .iter()
        .filter(|c| cases::selected(&c.id, &args.cases))
        .collect();
    if args.list {
        for c in &chosen {
            let mirror = if c.autobahn { c.id.as_str() } else { "-" };
            println!(
                "{:<8} {:<14} {:<14} {:<8} {}",
                c.id,
                c.area.key(),
                c.rfc,
                mirror,
                c.title
            );
        }
        return ExitCode::SUCCESS;
    }
    if chosen.is_empty() {
        eprintln!(
            "switchboard check: no case matches --cases {}",
            args.cases.join(",")
        );
        return ExitCode::from(2);
    }
    let target = match client::Target::parse(&url, args.ca.as_deref(), args.insecure) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("switchboard check: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = target.dial(timeout) {
        eprintln!("switchboard check: cannot reach {url}: {e}");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let rows = run_all(&target, &chosen, timeout, args.jobs.max(1));
    let report = Report::new(url, rows, started.elapsed());
    let out = if args.json {
        report.json() + "\n"
    } else {
        report.text(args.verbose)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    if report.summary.fail > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `chosen` on `jobs` threads plus one lane for the big cases, showing
/// progress on stderr when it is a terminal.
fn run_all(
    target: &client::Target,
    chosen: &[&cases::Case],
    timeout: Duration,
    jobs: usize,
) -> Vec<Row> {
    let (small, big): (Vec<&cases::Case>, Vec<&cases::Case>) = chosen.iter().partition(|c| !c.big);
    let (small_tx, small_rx) = unbounded();
    let (big_tx, big_rx) = unbounded();
    for c in small {
        let _ = small_tx.send(c);
    }
    for c in big {
        let _ = big_tx.send(c);
    }
    drop((small_tx, big_tx));
    let (done_tx, done_rx) = unbounded::<Row>();
    let total = chosen.len();
    let progress = std::io::stderr().is_terminal();
    std::thread::scope(|scope| {
        for rx in std::iter::repeat_n(&small_rx, jobs).chain([&big_rx]) {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for case in rx.iter() {
                    let started = Instant::now();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        case.run(target, timeout)
                    }))
                    .unwrap_or_else(|_| {
                        Outcome::new(
                            Verdict::Fail,
                            "the check itself failed on this case",
                            "a bug in switchboard check: please report it",
                        )
                    });
                    let row = case.row(outcome, started);
                    if done_tx.send(row).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut rows = Vec::with_capacity(total);
        let mut failed = 0;
        for row in done_rx.iter() {
            failed += usize::from(row.verdict == Verdict::Fail);
            rows.push(row);
            if progress {
                let last = rows.last().map_or("", |r| r.id.as_str());
                eprint!(
                    "\r\x1b[2K[{}/{total}] {failed} failed, last {last}",
                    rows.len()
                );
            }
        }
        if progress {
            eprint!("\r\x1b[2K");
        }
        rows
    })
}
