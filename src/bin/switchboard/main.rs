//! The `switchboard` binary: flags in, a running server out, exit code at the end.
//!
//! Only the wiring lives here. Each subcommand is a module: [`serve`] (the default),
//! [`connect`], [`bench`] and [`check`]; [`banner`] and [`limits`] serve `serve`.

mod banner;
mod bench;
mod check;
mod connect;
mod limits;
mod serve;

use clap::{Parser, Subcommand};
use std::error::Error;
use std::process::ExitCode;

/// A WebSocket chat, relay and echo server for the LAN, for teaching, and for tests.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default). Boxed: its flags outweigh every other
    /// subcommand's several times over.
    Serve(Box<serve::ServeArgs>),
    /// Generate load against a WebSocket server and measure it.
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
    /// Talk to a WebSocket server: stdin lines out as messages, messages in to stdout.
    Connect(connect::ConnectArgs),
    /// Grade a WebSocket server's echo endpoint against RFC 6455, case by case.
    Check(check::CheckArgs),
}

/// Exit status 0 when the subcommand succeeded, 1 when it could not start or failed;
/// clap exits with 2 by itself for flags it cannot parse. `connect` has exit codes of
/// its own, for how the connection ended.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let trace_plain = match &cli.command {
        Some(Command::Serve(args)) => args.trace_plain(),
        Some(Command::Connect(args)) => args.trace_plain(),
        Some(Command::Bench { .. } | Command::Check(_)) => false,
        None => cli.serve.trace_plain(),
    };
    start_logging(trace_plain);
    let result = match cli.command {
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Bench { scenario }) => bench::run(scenario),
        Some(Command::Connect(args)) => return connect::run(args),
        Some(Command::Check(args)) => return check::run(args),
        None => serve::run(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {}", error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Log lines to stderr with millisecond timestamps (a trace is read frame by frame).
/// With `trace_plain`, trace lines are just the time of day and the line:
/// `01:27:29.123 conn 1 127.0.0.1:51234 tcp <- GET /ws/chat HTTP/1.1`.
fn start_logging(trace_plain: bool) {
    use std::io::Write as _;
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_timestamp_millis();
    // tungstenite's `trace` level prints every frame's payload, the `welcome` with its
    // wire key among them: not unless asked for by name (`RUST_LOG=tungstenite=trace`).
    // Only when the filter would let it through: a filter set here is a level of its
    // own, and would turn tungstenite up past the default `info`.
    if std::env::var("RUST_LOG")
        .is_ok_and(|filter| filter.contains("trace") && !filter.contains("tungstenite"))
    {
        builder.filter_module("tungstenite", log::LevelFilter::Debug);
    }
    if trace_plain {
        builder.format(|buf, record| {
            let stamp = buf.timestamp_millis().to_string();
            if record.target() == switchboard::trace::TARGET {
                // RFC 3339, `2026-12-02T01:27:29.123Z`: the time of day is enough.
                let time = stamp.get(11..23).unwrap_or(&stamp);
                writeln!(buf, "{time} {}", record.args())
            } else {
                let (level, target) = (record.level(), record.target());
                writeln!(buf, "[{stamp} {level} {target}] {}", record.args())
            }
        });
    }
    builder.init();
}

/// `e`, then `: {source}` for each error in its source chain, so that the cause is
/// printed once: a source whose text the error before it already contains (because
/// its `Display` repeats the source) is skipped, and so are repeats further down.
fn error_chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut previous = out.clone();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !previous.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        previous = text;
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::fmt;

    /// An error with a message and an optional source, displayed with or without it.
    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
        repeats_source: bool,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.source {
                Some(source) if self.repeats_source => write!(f, "{}: {source}", self.text),
                _ => f.write_str(self.text),
            }
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source.as_deref().map(|s| s as _)
        }
    }

    fn chain(texts: &[&'static str], repeats_source: bool) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |source, &text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                    repeats_source,
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn sources_are_appended_when_the_message_leaves_them_out() {
        let e = chain(
            &["cannot start", "cannot bind 0.0.0.0:3000", "in use"],
            false,
        );
        assert_eq!(
            error_chain(&e),
            "cannot start: cannot bind 0.0.0.0:3000: in use"
        );
    }

    #[test]
    fn sources_the_message_repeats_are_printed_once() {
        let e = chain(
            &["cannot start", "cannot bind 0.0.0.0:3000", "in use"],
            true,
        );
        assert_eq!(
            error_chain(&e),
            "cannot start: cannot bind 0.0.0.0:3000: in use"
        );
    }

    #[test]
    fn an_error_without_a_source_is_just_its_message() {
        assert_eq!(
            error_chain(&chain(&["no such file"], false)),
            "no such file"
        );
    }
}
