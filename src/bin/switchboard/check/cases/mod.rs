//! The catalogue, and the engine that runs a case and grades it.
//!
//! Most cases are scripts in the shape of Autobahn|Testsuite's: frames to send (at
//! once, frame by frame, or chopped into small writes), pauses, then what the server
//! should have sent back (`expect`), and who should close and how. The grading
//! follows Autobahn's `Case.onConnectionLost`: the events received are compared
//! with the expected ones (`pass`) and the non-strict ones (`lenient`); then the
//! closing: the wrong side closing fails the case, an unclean close where a clean
//! one is required fails it, an unexpected close code makes it `lenient` (Autobahn's
//! WRONG CODE) or, for the close-handling cases that say so, fails it. Where Autobahn
//! shows a case's closing behaviour as failed, `check` fails the case too, so a case
//! passes only when Autobahn would show it green in both columns.
//!
//! The handshake cases (Autobahn has none) are functions of their own, in
//! `handshake.rs`.

mod close;
mod control;
mod fragmentation;
mod framing;
mod handshake;
mod limits;
mod reserved;
mod segmentation;
mod utf8;

use super::client::{Conn, End, Event, Target, show};
use super::report::{Outcome, Row, Verdict};
use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};
use switchboard::frame::{self, Header, Role};

thread_local! {
    /// The role `check` plays while cases are built: `Client` to grade a server
    /// (our frames masked), `Server` to grade a client (`--serve`: unmasked).
    static SIDE: Cell<Role> = const { Cell::new(Role::Client) };
}

/// The role `check` plays in the cases being built.
fn side() -> Role {
    SIDE.with(Cell::get)
}

/// Runs `f` with the cases built for playing `role`.
fn playing<T>(role: Role, f: impl FnOnce() -> T) -> T {
    let before = SIDE.with(|s| s.replace(role));
    let out = f();
    SIDE.with(|s| s.set(before));
    out
}

/// The rule as it reads for the side graded: `server` when grading a server.
fn side_rule(server: &str, client: &str) -> String {
    match side() {
        Role::Client => server.to_owned(),
        Role::Server => client.to_owned(),
    }
}

// The areas live with the report, which orders by them; the catalogue names them.
pub(crate) use super::report::Area;

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A handshake case: it dials, talks HTTP and grades the answer itself.
pub(crate) type Probe = fn(&Target, Duration) -> Outcome;

/// How a case runs.
pub(crate) enum Run {
    /// A script over one WebSocket connection.
    Script(Script),
    /// A script built when the case runs: the big cases' megabytes are not held
    /// for the whole run.
    Build(Box<dyn Fn() -> Script + Send + Sync>),
    /// A handshake case.
    Probe(Probe),
}

/// One case of the catalogue.
pub(crate) struct Case {
    /// Its id: the Autobahn|Testsuite id for a case that mirrors one.
    pub id: String,
    pub area: Area,
    /// The RFC 6455 section(s) it checks: `"§5.2"`.
    pub rfc: &'static str,
    /// Whether it mirrors the Autobahn|Testsuite case of the same id.
    pub autobahn: bool,
    /// What it does, in one line.
    pub title: String,
    /// The rule it checks, said so a student can act on it; ends every non-pass hint.
    pub rule: String,
    /// Moves megabytes: run on the lane for big cases, with more patience.
    pub big: bool,
    pub run: Run,
    /// The role `check` plays in it.
    pub side: Role,
}

impl Case {
    /// This case's line of the report: it came out as `outcome`, run from `started`.
    pub(crate) fn row(&self, outcome: Outcome, started: std::time::Instant) -> Row {
        Row {
            id: self.id.clone(),
            area: self.area.key(),
            rfc: self.rfc,
            autobahn: self.autobahn.then(|| self.id.clone()),
            title: self.title.clone(),
            verdict: outcome.verdict,
            observed: outcome.observed,
            hint: outcome.hint,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            area_order: self.area,
        }
    }

    fn plain(
        id: impl Into<String>,
        area: Area,
        rfc: &'static str,
        title: impl Into<String>,
    ) -> CaseBuilder {
        CaseBuilder(Case {
            id: id.into(),
            area,
            rfc,
            autobahn: false,
            title: title.into(),
            rule: String::new(),
            big: false,
            run: Run::Probe(|_, _| Outcome::new(Verdict::Fail, "not set up", "")),
            side: side(),
        })
    }

    /// A case that mirrors Autobahn|Testsuite's case of the same id.
    fn autobahn(
        id: impl Into<String>,
        area: Area,
        rfc: &'static str,
        title: impl Into<String>,
    ) -> CaseBuilder {
        let mut b = Case::plain(id, area, rfc, title);
        b.0.autobahn = true;
        b
    }

    /// Runs the case against `target`, each wait bounded by `timeout`.
    pub fn run(&self, target: &Target, timeout: Duration) -> Outcome {
        let timeout = if self.big { timeout * 6 } else { timeout };
        let outcome = match &self.run {
            Run::Probe(probe) => probe(target, timeout),
            Run::Script(script) => script.run(target, timeout),
            Run::Build(build) => playing(self.side, build).run(target, timeout),
        };
        self.with_rule(outcome)
    }

    /// Runs the case on a connection a client opened (`--serve`).
    pub fn run_on(&self, conn: Conn, timeout: Duration) -> Outcome {
        let timeout = if self.big { timeout * 6 } else { timeout };
        let outcome = match &self.run {
            Run::Probe(_) => Outcome::new(Verdict::Info, "a server's case", ""),
            Run::Script(script) => script.run_on(conn, timeout),
            Run::Build(build) => playing(self.side, build).run_on(conn, timeout),
        };
        self.with_rule(outcome)
    }

    fn with_rule(&self, mut outcome: Outcome) -> Outcome {
        if outcome.verdict != Verdict::Pass && !self.rule.is_empty() {
            outcome.hint = match outcome.hint.is_empty() {
                true => self.rule.clone(),
                false => format!("{}; {}", outcome.hint, self.rule),
            };
        }
        outcome
    }
}

struct CaseBuilder(Case);

impl CaseBuilder {
    fn rule(mut self, rule: impl Into<String>) -> CaseBuilder {
        self.0.rule = rule.into();
        self
    }

    fn big(mut self) -> CaseBuilder {
        self.0.big = true;
        self
    }

    fn script(mut self, steps: Vec<Step>, expect: Expect) -> Case {
        self.0.run = Run::Script(Script { steps, expect });
        self.0
    }

    fn lazy(mut self, build: impl Fn() -> Script + Send + Sync + 'static) -> Case {
        self.0.run = Run::Build(Box::new(build));
        self.0
    }

    fn probe(mut self, probe: Probe) -> Case {
        self.0.run = Run::Probe(probe);
        self.0
    }
}

/// The cases that grade a client (`--serve`): every area but the handshake, with
/// our frames unmasked, as a server sends them.
pub(crate) fn client_catalogue() -> Vec<Case> {
    playing(Role::Server, || {
        let mut all = catalogue();
        all.retain(|c| !matches!(c.run, Run::Probe(_)));
        all
    })
}

/// The whole catalogue, in report order.
pub(crate) fn catalogue() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(handshake::cases());
    all.extend(framing::cases());
    all.extend(control::cases());
    all.extend(reserved::cases());
    all.extend(fragmentation::cases());
    all.extend(utf8::cases());
    all.extend(close::cases());
    all.extend(limits::cases());
    all.extend(segmentation::cases());
    all.sort_by_key(|c| c.area);
    all
}

/// Whether `id` matches the `--cases` pattern list: comma-separated globs where `*`
/// is any run of characters (`5.*,6.4.*`; `6.4.*` also matches `6.4`).
pub(crate) fn selected(id: &str, patterns: &[String]) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|p| glob(p, id) || p.strip_suffix(".*").is_some_and(|prefix| prefix == id))
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|at| rest.is_char_boundary(at) && glob(tail, &rest[at..]))
        }
    }
}

// ---- building frames ----

/// The masking key of frames built into the catalogue; `Conn` masks its own Close
/// and Pong frames with keys of its own.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as the side we play sends it: masked from a client, not from a server.
fn f(header: Header, payload: &[u8]) -> Vec<u8> {
    keyed(header, KEY, payload)
}

/// A frame masked with `key` when we play the client.
fn keyed(header: Header, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    match side() {
        Role::Client => frame::encode(&header.masked(key), payload),
        Role::Server => frame::encode(&header, payload),
    }
}

/// A frame masked the wrong way for the side we play: unmasked from a client,
/// masked from a server (RFC 6455 §5.1).
fn wrongly_masked(header: Header, payload: &[u8]) -> Vec<u8> {
    match side() {
        Role::Client => frame::encode(&header, payload),
        Role::Server => frame::encode(&header.masked(KEY), payload),
    }
}

/// A final masked frame of `opcode`.
fn whole(opcode: u8, payload: &[u8]) -> Vec<u8> {
    f(Header::new(opcode, payload.len() as u64), payload)
}

/// A masked frame of `opcode` with FIN as given.
fn part(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    f(Header::new(opcode, payload.len() as u64).fin(fin), payload)
}

/// A Close payload.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// `pattern` repeated to `len` bytes (Autobahn's `payload_len`).
fn repeat(pattern: &[u8], len: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(len).collect()
}

fn text(payload: &[u8]) -> Event {
    Event::Message {
        binary: false,
        payload: payload.to_vec(),
    }
}

fn binary(payload: &[u8]) -> Event {
    Event::Message {
        binary: true,
        payload: payload.to_vec(),
    }
}

fn pong(payload: &[u8]) -> Event {
    Event::Pong(payload.to_vec())
}

// ---- scripts ----

/// How the bytes of a step go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chop {
    /// In one write.
    All,
    /// One write per frame, with a short wait after each (Autobahn's `sync`): one
    /// TCP segment each.
    Frames,
    /// Writes of this many bytes (Autobahn's `chopsize`).
    Bytes(usize),
}

/// One step of a script.
pub(crate) enum Step {
    /// Frames, already encoded.
    Send(Vec<Vec<u8>>, Chop),
    /// Wait, reading; the connection still open afterwards is the event
    /// `Timeout(label)`, and a closed one ends the script.
    Pause(Duration, &'static str),
    /// A Close from us, with any code (`None`: empty) and reason.
    Close(Option<u16>, Vec<u8>),
    /// A Close from us with this payload, whatever it is (a one-byte one, say).
    CloseRaw(Vec<u8>),
    /// Frames and then our Close (with this payload), all in one write.
    SendThenClose(Vec<Vec<u8>>, Vec<u8>),
    /// Wait, reading, recording nothing.
    Wait(Duration),
    /// `count` messages of `opcode`, each sent when the last one's echo came back.
    RoundTrips {
        opcode: u8,
        payload: Vec<u8>,
        count: usize,
    },
}

fn send(frames: Vec<Vec<u8>>) -> Step {
    Step::Send(frames, Chop::All)
}

/// What a script expects, in Autobahn's terms.
pub(crate) struct Expect {
    /// The events of a pass.
    ok: Vec<Event>,
    /// The events of a non-strict pass.
    lenient: Option<Vec<Event>>,
    /// We close (after the events), rather than the server failing the connection.
    by_us: bool,
    /// The close codes the server's Close may carry (an empty Close is fine too).
    codes: Vec<u16>,
    /// The closing handshake must complete (both Close frames).
    clean: bool,
    /// A close code not in `codes` fails the case (Autobahn's 7.x cases).
    wrong_code_fails: bool,
    /// Informational: the RFC leaves the behaviour open.
    info: bool,
    /// The server failing the connection instead is information, not a failure.
    refusal_info: bool,
    /// What a `lenient` verdict says.
    lenient_hint: &'static str,
}

impl Expect {
    /// The server sends `events`; then we close with 1000 and the closing handshake
    /// completes cleanly.
    fn echo(events: Vec<Event>) -> Expect {
        Expect {
            ok: events,
            lenient: None,
            by_us: true,
            codes: vec![1000],
            clean: true,
            wrong_code_fails: false,
            info: false,
            refusal_info: false,
            lenient_hint: LENIENT,
        }
    }

    /// The server fails the connection, with one of `codes` or by dropping TCP.
    fn fail(codes: &[u16]) -> Expect {
        Expect {
            ok: Vec::new(),
            lenient: None,
            by_us: false,
            codes: codes.to_vec(),
            clean: false,
            wrong_code_fails: false,
            info: false,
            refusal_info: false,
            lenient_hint: LENIENT,
        }
    }

    /// We start the closing handshake (the script sends the Close); the server
    /// answers with one of `codes`; a wrong code fails the case.
    fn closing(codes: &[u16], clean: bool) -> Expect {
        Expect {
            ok: Vec::new(),
            lenient: None,
            by_us: true,
            codes: codes.to_vec(),
            clean,
            wrong_code_fails: true,
            info: false,
            refusal_info: false,
            lenient_hint: LENIENT,
        }
    }

    /// The events before the server fails the connection.
    fn after(mut self, events: Vec<Event>) -> Expect {
        self.ok = events;
        self
    }

    /// A close code not in `codes` fails the case.
    fn wrong_code_fails(mut self) -> Expect {
        self.wrong_code_fails = true;
        self
    }

    /// These events are a non-strict pass, which `hint` explains.
    fn or_lenient_because(mut self, events: Vec<Event>, hint: &'static str) -> Expect {
        self.lenient = Some(events);
        self.lenient_hint = hint;
        self
    }

    fn informational(mut self) -> Expect {
        self.info = true;
        self
    }

    /// The server refusing what was sent (failing the connection before answering)
    /// is information: the RFC lets a receiver take it or not.
    fn refusal_is_info(mut self) -> Expect {
        self.refusal_info = true;
        self
    }
}

fn script(steps: Vec<Step>, expect: Expect) -> Script {
    Script { steps, expect }
}

/// What a `lenient` verdict says unless the case says better.
const LENIENT: &str = "allowed by the RFC, but a stricter server does better";

/// The non-strict pass of a case with a good message before a bad frame: the bad
/// frame failed the connection before the good message was answered.
const IN_ORDER: &str = "the valid message before the bad frame was not echoed: handle frames in the order they come, then fail the connection";

/// A script: steps, then the expectation.
pub(crate) struct Script {
    steps: Vec<Step>,
    expect: Expect,
}

/// How the closing went, in Autobahn's terms.
enum Closing {
    Ok,
    /// The wrong side closed.
    WrongSide(String),
    /// Not clean where clean is required.
    Unclean(String),
    /// A close code not expected.
    WrongCode(u16),
    /// The server left TCP open after the closing handshake.
    DroppedByUs,
}

impl Script {
    fn run(&self, target: &Target, timeout: Duration) -> Outcome {
        match target.open(timeout) {
            Ok(conn) => self.run_on(conn, timeout),
            Err(e) => Outcome::new(
                Verdict::Fail,
                format!("the opening handshake failed: {e}"),
                "fix the opening handshake first (see the handshake cases)",
            ),
        }
    }

    fn run_on(&self, mut conn: Conn, timeout: Duration) -> Outcome {
        self.play(&mut conn, timeout);
        let expect = &self.expect;
        if expect.by_us {
            let deadline = Instant::now() + timeout;
            conn.pump(deadline, |c| {
                c.server_close.is_some() || settled(&c.events, expect)
            });
            if conn.server_close.is_none() && conn.end.is_none() {
                conn.close(expect.codes.first().copied(), b"");
            }
        } else {
            // The server should fail the connection: its Close (answered) or TCP's end.
            let deadline = Instant::now() + timeout;
            conn.pump(deadline, |c| c.server_close.is_some() || c.end.is_some());
            if conn.server_close.is_none() && conn.end.is_none() {
                // Autobahn's killAfter: the server never failed it; we close.
                conn.close(Some(1000), b"");
            }
        }
        conn.finish();
        let outcome = self.grade(&conn, timeout);
        match conn.role() {
            Role::Client => outcome,
            Role::Server => Outcome {
                observed: of_client(&outcome.observed),
                hint: of_client(&outcome.hint),
                ..outcome
            },
        }
    }

    /// Runs the steps; stops sending once the server has closed.
    fn play(&self, conn: &mut Conn, timeout: Duration) {
        for step in &self.steps {
            if conn.server_close.is_some() || conn.end.is_some() || conn.violation.is_some() {
                return;
            }
            match step {
                Step::Send(frames, Chop::All) => conn.send(&frames.concat()),
                Step::Send(frames, Chop::Frames) => {
                    for frame in frames {
                        conn.send(frame);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                Step::Send(frames, Chop::Bytes(n)) => conn.send_chopped(&frames.concat(), *n),
                Step::Pause(wait, label) => {
                    let deadline = Instant::now() + *wait;
                    conn.pump(deadline, |c| c.server_close.is_some() || c.end.is_some());
                    if conn.server_close.is_some() || conn.end.is_some() {
                        return;
                    }
                    conn.events.push(Event::Timeout(label));
                }
                Step::Close(code, reason) => conn.close(*code, reason),
                Step::CloseRaw(payload) => conn.close_with(payload.clone()),
                Step::SendThenClose(frames, payload) => {
                    conn.close_after(&frames.concat(), payload.clone())
                }
                Step::Wait(wait) => {
                    let deadline = Instant::now() + *wait;
                    conn.pump(deadline, |c| c.server_close.is_some() || c.end.is_some());
                }
                Step::RoundTrips {
                    opcode,
                    payload,
                    count,
                } => {
                    for _ in 0..*count {
                        let before = conn.events.len();
                        let bytes = conn.frame(Header::new(*opcode, payload.len() as u64), payload);
                        conn.send(&bytes);
                        let deadline = Instant::now() + timeout;
                        let came = conn.pump(deadline, |c| c.events.len() > before);
                        let same = conn.events.last().is_some_and(|e| {
                            *e == Event::Message {
                                binary: *opcode == frame::BINARY,
                                payload: payload.clone(),
                            }
                        });
                        if !came || !same {
                            return;
                        }
                    }
                }
            }
            // Whatever arrived meanwhile is taken now, as Autobahn's reactor would.
            conn.pump(Instant::now(), |_| false);
        }
    }

    fn grade(&self, conn: &Conn, timeout: Duration) -> Outcome {
        let e = &self.expect;
        let observed = observed(conn);
        if let Some(broken) = &conn.violation {
            return Outcome::new(Verdict::Fail, observed, broken.clone());
        }
        let behaviour = if conn.events == e.ok {
            Verdict::Pass
        } else if e.lenient.as_ref().is_some_and(|l| conn.events == *l) {
            Verdict::Lenient
        } else {
            Verdict::Fail
        };
        let closing = self.closing(conn);
        if e.info {
            return Outcome::new(Verdict::Info, observed, "");
        }
        if e.refusal_info && conn.events.is_empty() && matches!(closing, Closing::WrongSide(_)) {
            return Outcome::new(
                Verdict::Info,
                observed,
                "the server refused it; the RFC allows a receiver to",
            );
        }
        if behaviour == Verdict::Fail {
            return Outcome::new(Verdict::Fail, observed, diagnose(conn, e, timeout));
        }
        match closing {
            Closing::WrongSide(why) | Closing::Unclean(why) => {
                Outcome::new(Verdict::Fail, observed, why)
            }
            Closing::WrongCode(code) => {
                let why = format!(
                    "the server's Close carried {code}, expected {}",
                    codes(&e.codes)
                );
                match e.wrong_code_fails {
                    true => Outcome::new(Verdict::Fail, observed, why),
                    false => Outcome::new(Verdict::Lenient, observed, why),
                }
            }
            Closing::DroppedByUs => Outcome::new(
                Verdict::Lenient,
                observed,
                "after the closing handshake the server left TCP open; RFC 6455 §7.1.1: \
                 the server should close the TCP connection first",
            ),
            Closing::Ok if behaviour == Verdict::Lenient => {
                Outcome::new(Verdict::Lenient, observed, e.lenient_hint)
            }
            Closing::Ok => Outcome::new(Verdict::Pass, observed, ""),
        }
    }

    fn closing(&self, conn: &Conn) -> Closing {
        let e = &self.expect;
        let server_first = !conn.closed_by_us
            && (conn.server_close.is_some()
                || matches!(conn.end, Some(End::ByServer | End::Reset)));
        if e.by_us && server_first {
            let how = match conn.close_code() {
                Some(code) => format!(
                    "the server closed the connection ({code}) where it should have gone on"
                ),
                None if conn.server_close.is_some() => {
                    "the server closed the connection where it should have gone on".to_owned()
                }
                None => {
                    "the server dropped the TCP connection where it should have gone on".to_owned()
                }
            };
            return Closing::WrongSide(how);
        }
        if !e.by_us && !server_first {
            return Closing::WrongSide(
                "the server did not fail the connection: no Close and no end of TCP".to_owned(),
            );
        }
        let handshake_done = conn.server_close.is_some() && conn.sent_close;
        if e.clean && !handshake_done {
            return Closing::Unclean(match conn.server_close {
                None => "the server never answered our Close with its own (RFC 6455 §5.5.1: \
                         an endpoint that receives a Close sends a Close in response)"
                    .to_owned(),
                Some(_) => "the closing handshake did not complete".to_owned(),
            });
        }
        if let Some(code) = conn.close_code().filter(|code| !e.codes.contains(code)) {
            return Closing::WrongCode(code);
        }
        if conn.end == Some(End::ByUs) && conn.role() == Role::Client {
            return Closing::DroppedByUs;
        }
        Closing::Ok
    }
}

/// A diagnosis written of a server, said of the client graded instead.
fn of_client(text: &str) -> String {
    text.replace("the server", "the client")
        .replace("TCP closed by the client", "TCP closed by the client first")
}

/// Whether the events so far settle the case: they equal an expected list, or can
/// no longer become one.
fn settled(events: &[Event], e: &Expect) -> bool {
    let lists = std::iter::once(&e.ok).chain(e.lenient.as_ref());
    let mut any_prefix = false;
    for list in lists {
        if events == list.as_slice() {
            return true;
        }
        any_prefix |= list.starts_with(events);
    }
    !any_prefix
}

fn codes(codes: &[u16]) -> String {
    let list: Vec<String> = codes.iter().map(u16::to_string).collect();
    match list.len() {
        0 => "none".to_owned(),
        1 => list.concat(),
        _ => format!("one of {}", list.join(", ")),
    }
}

/// What happened, in one line.
fn observed(conn: &Conn) -> String {
    let mut parts = Vec::new();
    let pauses: Vec<&str> = conn
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Timeout(label) => Some(*label),
            _ => None,
        })
        .collect();
    if !pauses.is_empty() {
        parts.push(format!("still open after pause {}", pauses.join(" and ")));
    }
    let n = conn
        .events
        .iter()
        .filter(|e| !matches!(e, Event::Timeout(_)))
        .count();
    match n {
        0 => parts.push("nothing received".to_owned()),
        _ => {
            let shown: Vec<String> = conn
                .events
                .iter()
                .filter(|e| !matches!(e, Event::Timeout(_)))
                .take(3)
                .map(ToString::to_string)
                .collect();
            let more = if n > 3 {
                format!(" and {} more", n - 3)
            } else {
                String::new()
            };
            parts.push(format!("received {}{more}", shown.join(", ")));
        }
    }
    let who = if conn.closed_by_us {
        "in reply to ours"
    } else {
        "first"
    };
    match &conn.server_close {
        Some((Some(code), reason)) if reason.is_empty() => {
            parts.push(format!("the server sent Close {code} {who}"))
        }
        Some((Some(code), reason)) => parts.push(format!(
            "the server sent Close {code} {} {who}",
            show(reason, true)
        )),
        Some((None, _)) => parts.push(format!("the server sent an empty Close {who}")),
        None => parts.push("no Close from the server".to_owned()),
    }
    parts.push(
        match conn.end {
            Some(End::ByServer) => "TCP closed by the server",
            Some(End::Reset) => "TCP reset by the server",
            Some(End::ByUs) | None if conn.role() == Role::Server => "TCP closed by us, the server",
            Some(End::ByUs) | None => "TCP left open: we dropped it",
        }
        .to_owned(),
    );
    parts.join("; ")
}

/// Why the events differ from the expected ones, in one line.
fn diagnose(conn: &Conn, e: &Expect, timeout: Duration) -> String {
    let got: Vec<&Event> = conn
        .events
        .iter()
        .filter(|e| !matches!(e, Event::Timeout(_)))
        .collect();
    let want: Vec<&Event> =
        e.ok.iter()
            .filter(|e| !matches!(e, Event::Timeout(_)))
            .collect();
    if want.is_empty() {
        if let Some(first) = got.first() {
            return format!(
                "the server answered with {first} where it should have failed the connection"
            );
        }
        return "the connection stayed open too long".to_owned();
    }
    for (i, w) in want.iter().enumerate() {
        let Some(g) = got.get(i) else {
            let waited = timeout.as_secs_f64();
            // A missing echo of a 126..65535-byte message: the one whose frame had
            // the 16-bit length, a classic place to slip.
            let sixteen = match w {
                Event::Message { payload, .. } if (126..=65535).contains(&payload.len()) => {
                    " (it came in a frame with a 16-bit length: 126, then 2 bytes of \
                     length; read them: RFC 6455 §5.2, Payload length)"
                }
                _ => "",
            };
            return match (conn.server_close.as_ref(), conn.end) {
                (Some((Some(code), _)), _) => {
                    format!("the server closed with {code} before sending {w}{sixteen}")
                }
                (Some(_), _) => format!("the server closed before sending {w}{sixteen}"),
                (None, Some(End::ByServer | End::Reset)) => {
                    format!("the server dropped the connection before sending {w}{sixteen}")
                }
                _ => format!("nothing within {waited:.0} s where {w} was due: the server hangs"),
            };
        };
        if g != w {
            return match (w, g) {
                (
                    Event::Message { binary: true, .. },
                    Event::Message { binary: false, .. },
                ) => "a binary message came back as text: an echo keeps the opcode (0x2), RFC 6455 §5.6".to_owned(),
                (
                    Event::Message { binary: false, .. },
                    Event::Message { binary: true, .. },
                ) => "a text message came back as binary: an echo keeps the opcode (0x1), RFC 6455 §5.6".to_owned(),
                (Event::Message { payload: want, .. }, Event::Message { payload: got, .. })
                    if got.len() == 126 && (126..=65535).contains(&want.len()) =>
                {
                    format!(
                        "126 bytes came back for {} sent: the server read a 16-bit length as 7-bit: RFC 6455 §5.2, Payload length",
                        want.len()
                    )
                }
                (Event::Message { payload: want, .. }, Event::Message { payload: got, .. })
                    if got.len() == 127 && want.len() > 65535 =>
                {
                    format!(
                        "127 bytes came back for {} sent: the server read a 64-bit length as 7-bit: RFC 6455 §5.2, Payload length",
                        want.len()
                    )
                }
                (Event::Message { payload: want, .. }, Event::Message { payload: got, .. }) => {
                    let at = want.iter().zip(got.iter()).take_while(|(a, b)| a == b).count();
                    format!(
                        "the echo differs: {} bytes back for {} sent, first difference at byte {at}",
                        got.len(),
                        want.len()
                    )
                }
                (Event::Pong(_), Event::Pong(got)) => {
                    format!("the Pong carried {} instead of the Ping's payload", show(got, true))
                }
                (w, g) => format!("expected {w}, got {g}"),
            };
        }
    }
    match got.get(want.len()) {
        Some(extra) => format!("unexpected {extra} after the expected answer"),
        None => "the events differ from the expected ones".to_owned(),
    }
}
