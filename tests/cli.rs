//! The `switchboard` binary: flags, the start-up banner, and a clean exit on SIGTERM.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The binary, logging warnings only, with its default data directory in a temp dir
/// of its own (`$XDG_DATA_HOME`), so no test touches the user's history or another's.
fn switchboard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env("RUST_LOG", "warn");
    cmd.env("XDG_DATA_HOME", data_home());
    cmd
}

/// A data home for one test run of the binary; left for the OS to clean (it holds
/// at most one small store).
fn data_home() -> std::path::PathBuf {
    let dir = TempDir::new("cli");
    let path = dir.path().to_owned();
    std::mem::forget(dir);
    path
}

#[test]
fn version_prints_the_crate_version() {
    let out = switchboard().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_every_serve_flag() {
    let out = switchboard().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--tls-listen",
        "--cert",
        "--key",
        "--no-tls",
        "--allow-origin",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-message-size",
        "--handshake-timeout",
        "--ping-interval",
        "--history",
        "--max-text-len",
        "--rate-limit",
        "--rate-burst",
        "--outbox-messages",
        "--outbox-bytes",
        "--trace",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn unknown_flag_fails_with_usage() {
    let out = switchboard().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn bad_key_file_is_a_clear_error_and_a_failure_exit() {
    let certs = certs();
    let out = switchboard()
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .arg("--cert")
        .arg(certs.join("localhost.pem"))
        .arg("--key")
        .arg(certs.join("no-such-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-key.pem") && stderr.contains("cannot read"),
        "stderr was {stderr:?}"
    );
}

#[test]
fn cert_without_key_is_a_usage_error() {
    let out = switchboard().args(["--cert", "x.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn port_in_use_is_a_clear_error_and_a_failure_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = switchboard()
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "stderr was {stderr:?}"
    );
}

#[test]
fn serve_prints_its_url_and_exits_cleanly_on_sigterm() {
    let mut child = Running(
        switchboard()
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner's first URL tells the real port.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = line.trim();
            if let Some(url) = line
                .strip_prefix("http://")
                .or(line.strip_prefix("https://"))
            {
                let _ = tx.send((
                    line.starts_with("https"),
                    url.trim_end_matches('/').to_owned(),
                ));
            }
        }
    });
    let (secure, url) = rx
        .recv_timeout(READ_TIMEOUT)
        .expect("an http URL in the banner");
    assert!(!secure, "the plain URL comes first");
    let addr: SocketAddr = url.parse().unwrap();
    let (secure, url) = rx
        .recv_timeout(READ_TIMEOUT)
        .expect("an https URL in the banner");
    assert!(
        secure && url.parse::<SocketAddr>().is_ok(),
        "then the TLS one: {url}"
    );
    let (mut ws, _) = chat(addr, "lobby", Some("cli"));

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(close_frame(&mut ws).map(|f| u16::from(f.code)), Some(1001));
    drop(ws);
    let status =
        wait_exit(&mut child.0, Duration::from_secs(20)).expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn bad_flag_values_name_the_flag_and_the_accepted_range() {
    let cases = [
        ("--ping-interval", "0", "at least 1 second"),
        ("--handshake-timeout", "0", "at least 1 second"),
        ("--max-connections", "0", "at least 1"),
        ("--max-connections-per-ip", "0", "at least 1"),
        ("--max-message-size", "0", "at least 1"),
        ("--max-text-len", "0", "at least 1"),
        ("--rate-limit", "0", "at least 1"),
        ("--rate-burst", "0", "at least 1"),
        ("--outbox-messages", "0", "at least 1"),
        ("--outbox-bytes", "0", "at least 1"),
        ("--ping-interval", "soon", "at least 1 second"),
        ("--max-connections", "-3", "at least 1"),
        ("--trust-proxy", "10.0.0.0/33", "address range"),
        ("--trust-proxy", "localhost", "address range"),
    ];
    for (flag, value, range) in cases {
        let out = switchboard()
            .args(["--listen", "127.0.0.1:0", "--no-tls"])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range),
            "{flag} {value}: the error names the flag and {range:?}: {stderr}"
        );
    }
}

/// What the server prints up to the end of its banner, read with a timeout.
fn read_banner(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Press Ctrl-C to stop.") {
                let _ = tx.send(banner);
                return;
            }
        }
    });
    rx.recv_timeout(READ_TIMEOUT).expect("a whole banner")
}

/// Runs the binary under `script`, which gives it a pseudo-terminal as stdout, until
/// its banner is complete; returns what it printed.
fn banner_in_a_terminal(extra: &[&str]) -> Option<String> {
    let script = tool_or_skip(
        "banner_in_a_terminal",
        "script",
        "SWITCHBOARD_REQUIRE_TOOLS",
    )?;
    let mut command = vec![
        env!("CARGO_BIN_EXE_switchboard").to_owned(),
        "--listen".into(),
        "0.0.0.0:0".into(),
        "--no-tls".into(),
    ];
    command.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Running(
        Command::new(script)
            .args([
                "--quiet",
                "--return",
                "--command",
                &command.join(" "),
                "/dev/null",
            ])
            .env("RUST_LOG", "warn")
            .env("XDG_DATA_HOME", data_home())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let banner = read_banner(&mut child.0);
    Some(banner)
}

/// The QR code drawn with half-block characters between the share line and "Also
/// here:", as a PBM image (light glyphs are light modules), scaled up for a reader.
fn qr_as_pbm(banner: &str) -> Option<String> {
    let lines: Vec<&str> = banner
        .lines()
        .skip_while(|l| !l.starts_with("Share this address"))
        .skip(2)
        .take_while(|l| !l.starts_with("Also here:"))
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let width = lines.first()?.chars().count();
    const SCALE: usize = 4;
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in &lines {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            // Drawn = light, as terminals are usually dark.
            let (t, b) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            top.push(!t);
            bottom.push(!b);
        }
        rows.push(top);
        rows.push(bottom);
    }
    let mut pbm = format!("P1\n{} {}\n", width * SCALE, rows.len() * SCALE);
    for row in &rows {
        let line: String = row
            .iter()
            .flat_map(|&black| std::iter::repeat_n(if black { "1 " } else { "0 " }, SCALE))
            .collect();
        for _ in 0..SCALE {
            pbm.push_str(&line);
            pbm.push('\n');
        }
    }
    Some(pbm)
}

#[test]
fn banner_in_a_terminal_shows_the_share_address_first_with_its_qr_code() {
    let Some(banner) = banner_in_a_terminal(&[]) else {
        return;
    };
    if banner.contains("no LAN address to share") {
        let _ = writeln!(
            std::io::stderr(),
            "skipped the QR check: this machine has no LAN address\n{banner}"
        );
        return;
    }
    let share = banner
        .lines()
        .skip_while(|l| !l.starts_with("Share this address"))
        .nth(1)
        .map(|l| l.trim().to_owned())
        .expect("the address to share, on the line after the heading");
    assert!(
        share.starts_with("http://") && !share.contains("127.0.0.1"),
        "{banner}"
    );
    let pbm = qr_as_pbm(&banner).expect("a QR code under the share address");
    let file = std::env::temp_dir().join(format!("switchboard-banner-{}.pbm", std::process::id()));
    std::fs::write(&file, pbm).unwrap();
    let Some(zbarimg) = tool_or_skip(
        "banner_in_a_terminal_shows_the_share_address_first_with_its_qr_code",
        "zbarimg",
        "SWITCHBOARD_REQUIRE_TOOLS",
    ) else {
        return;
    };
    let out = Command::new(zbarimg)
        .args(["--quiet", "--raw"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "zbarimg read no QR code in\n{banner}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), share);
    // The LAN address comes first; loopback follows, for this machine only.
    let also: Vec<&str> = banner
        .lines()
        .skip_while(|l| !l.starts_with("Also here:"))
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("http"))
        .collect();
    assert!(also.iter().any(|u| u.contains("127.0.0.1")), "{banner}");
}

#[test]
fn no_qr_turns_the_qr_code_off() {
    let Some(banner) = banner_in_a_terminal(&["--no-qr"]) else {
        return;
    };
    assert!(!banner.contains('█'), "no QR code with --no-qr:\n{banner}");
}

#[test]
fn banner_to_a_pipe_has_no_qr_code() {
    let mut child = Running(
        switchboard()
            .args(["--listen", "0.0.0.0:0", "--no-tls"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let banner = read_banner(&mut child.0);
    assert!(!banner.contains('█'), "no QR code into a pipe:\n{banner}");
    assert!(banner.contains("http://127.0.0.1:"), "{banner}");
}

// ---- the README's flag table and connect paragraph are what --help says ----

const README: &str = include_str!("../README.md");

/// The binary's help for `args` (`--help`, `connect --help`), read with a timeout.
fn help(args: &[&str]) -> String {
    let child = switchboard()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("--help answers within 30 s")
        .unwrap();
    assert!(out.status.success(), "{args:?} exits 0");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The options of a clap help text: each long flag (`--listen`, or `-h` when it
/// has no long form) and its `[default: …]`, if it shows one.
fn help_options(help: &str) -> Vec<(String, Option<String>)> {
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (2..=6).contains(&indent) && trimmed.starts_with('-') {
            let long = trimmed
                .split([',', ' '])
                .map(str::trim)
                .find(|word| word.starts_with("--"))
                .unwrap_or_default();
            options.push((long.to_owned(), None));
        } else if let Some((_, default)) = trimmed.split_once("[default: ")
            && let Some(last) = options.last_mut()
        {
            let default = default.split(']').next().unwrap_or_default();
            last.1 = Some(default.to_owned());
        }
    }
    options
}

/// The code spans (`` `…` ``) of a piece of Markdown.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The README's flag table: each flag named in the first column, with the first
/// code span of the default column, if any.
fn readme_flags() -> Vec<(String, String)> {
    let header = "| flag | default | what it does |";
    let (_, rest) = README.split_once(header).expect("the README's flag table");
    let mut flags = Vec::new();
    for row in rest.lines().skip(2).take_while(|l| l.starts_with('|')) {
        // A `\|` inside a cell is no cell border.
        let row = row.replace("\\|", "\u{0}");
        let cells: Vec<&str> = row.trim().trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 3, "a flag row: {row}");
        let default = cells[1].trim();
        for span in spans(cells[0]) {
            let flag = span.split_whitespace().next().unwrap_or_default();
            if flag.starts_with("--") {
                flags.push((flag.to_owned(), default.to_owned()));
            }
        }
    }
    flags
}

#[test]
fn the_readme_flag_table_is_every_flag_of_help_with_its_default() {
    let options = help_options(&help(&["--help"]));
    assert!(options.len() > 20, "parsed the help: {options:?}");
    let documented = readme_flags();
    let names = |list: Vec<&String>| {
        let mut list: Vec<String> = list.into_iter().cloned().collect();
        list.sort();
        list
    };
    assert_eq!(
        names(documented.iter().map(|(flag, _)| flag).collect()),
        names(options.iter().map(|(flag, _)| flag).collect()),
        "README flag table vs switchboard --help"
    );
    for (flag, default) in &options {
        let Some((_, cell)) = documented.iter().find(|(f, _)| f == flag) else {
            continue;
        };
        match default {
            // `1048576` (1 MiB), or a computed default written out in spans.
            Some(default) => assert!(
                spans(cell).first() == Some(&default.as_str()) || cell.replace('`', "") == *default,
                "README gives {flag} the default {cell}, --help {default}"
            ),
            None if ["--help", "--version"].contains(&flag.as_str()) => {}
            // No default (off, none) or one the binary picks (the development
            // certificate): never a value --help does not show.
            None => assert!(
                !cell.starts_with('`'),
                "README gives {flag} the default {cell}, --help none"
            ),
        }
    }
}

/// The `/commands` of a text: `/binary HEX` is `binary`, `//text` is `/`.
fn commands<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = items
        .filter(|item| *item != "/")
        .filter_map(|item| item.strip_prefix('/'))
        .map(|rest| match rest.strip_prefix('/') {
            Some(_) => "/".to_owned(),
            None => rest
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_readme_connect_commands_and_flags_are_what_connect_help_lists() {
    let help = help(&["connect", "--help"]);
    let readme = README.split_whitespace().collect::<Vec<_>>().join(" ");
    let (_, paragraph) = readme
        .split_once("Lines you type are sent as text;")
        .expect("the README's connect paragraph");
    let (paragraph, _) = paragraph
        .split_once("see `switchboard connect --help`")
        .expect("the end of the connect paragraph");

    let (_, input) = help.split_once("Input (stdin)").expect("the input section");
    let (input, _) = input.split_once("\n\n").unwrap_or((input, ""));
    let listed = commands(input.lines().map(str::trim_start));
    let documented = commands(spans(paragraph).into_iter());
    assert!(listed.contains(&"frag".to_owned()), "{listed:?}");
    assert_eq!(
        documented, listed,
        "README connect commands vs connect --help"
    );

    let mut flags: Vec<String> = help_options(&help)
        .into_iter()
        .map(|(flag, _)| flag)
        .filter(|flag| flag != "--help")
        .collect();
    flags.sort();
    let (_, named) = paragraph.split_once("Flags:").expect("the flags sentence");
    let mut documented: Vec<String> = spans(named)
        .into_iter()
        .filter_map(|span| span.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    documented.sort();
    assert_eq!(documented, flags, "README connect flags vs connect --help");
}

#[test]
fn an_address_without_a_port_or_with_a_bad_one_is_a_usage_error() {
    // The README: flags that cannot be parsed exit 2, with clap's message naming the
    // flag. A host name is a fine address (it is resolved at start); a value with no
    // port, or a port that is not one, is no address at all.
    let cases = [
        ("--listen", "nonsense"),
        ("--listen", "127.0.0.1"),
        ("--listen", "localhost:99999"),
        ("--listen", "localhost:http"),
        ("--listen", ":3000"),
        ("--listen", "::1"),
        ("--tls-listen", "nonsense"),
        ("--tls-listen", "[::1]:"),
    ];
    for (flag, value) in cases {
        let out = switchboard()
            .arg(format!("{flag}={value}"))
            .args(["--no-persist", "--no-qr"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("HOST:PORT"),
            "{flag} {value}: the error names the flag and the form: {stderr}"
        );
    }
}

#[test]
fn a_host_name_with_a_port_is_an_address() {
    // Resolved at start, as before: `localhost:PORT` serves.
    let port = free_port();
    let mut child = Running(
        switchboard()
            .args(["--listen", &format!("localhost:{port}"), "--no-tls"])
            .args(["--no-persist", "--no-qr"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(|| std::net::TcpStream::connect(addr).ok());
    assert_eq!(healthz(addr)["status"], "ok");
    assert!(child.0.try_wait().unwrap().is_none(), "still serving");
}

#[test]
fn the_door_flags_reach_the_server() {
    // --allow-host, --max-rooms and --api-rate, as a deployer types them.
    let port = free_port();
    let mut child = Running(
        switchboard()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-tls"])
            .args(["--no-persist", "--no-qr"])
            .args(["--allow-host", "chat.example.org"])
            .args(["--max-rooms", "1", "--api-rate", "1"])
            .env("SWITCHBOARD_API_TOKEN", "t0ken")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(|| std::net::TcpStream::connect(addr).ok());
    let page = |host: &str| {
        status(&raw(
            addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
        ))
    };
    assert_eq!(page("chat.example.org"), 200);
    assert_eq!(page("rebind.example"), 421);
    let post = |room: &str| {
        raw(
            addr,
            format!(
                "POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer t0ken\r\nContent-Length: 2\r\n\r\nhi"
            )
            .as_bytes(),
        )
    };
    assert_eq!(status(&post("first")), 201);
    let second = post("second");
    assert_eq!(status(&second), 403, "one room at most: {second}");
    assert!(second.contains("too_many_rooms"), "{second}");
    // One post a second, bursts of two: the third within the second is refused.
    assert_eq!(status(&post("first")), 429);
    assert!(child.0.try_wait().unwrap().is_none(), "still serving");
}
