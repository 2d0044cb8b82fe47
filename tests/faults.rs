//! Three nodes on one real Redis, a dozen clients chatting through them, and one fault
//! at a time, driven the way real networks and machines produce it: Redis stalled
//! (`SIGSTOP`), Redis restarted with clients reconnecting through it, a node frozen
//! (`SIGSTOP`) past the heartbeat's TTL, a node whose link to Redis holds its bytes past
//! the TTL and then delivers them. Each test then checks, over every client and every
//! node, the promises a cluster makes:
//!
//! - nothing a sender saw stored is lost, and each is stored under the id it was given;
//! - nothing refused (`unavailable`) is ever stored or delivered;
//! - no message is stored twice, however often its sender retried it;
//! - no client misses an id without being told (`resumed:false`, or `1012`);
//! - every connection attempt is answered: a `welcome`, or an error and a close, never
//!   a `101` followed by silence;
//! - at the end each name has one holder, whom a direct message reaches, and every
//!   node's view of the room is the same.
//!
//! Each test prints its counts (`--nocapture`), so that what a fault did can be read.

mod common;

use common::redis::{Link, Redis};
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

const ROOM: &str = "r";
const TOKEN: &str = "t0ken";
/// Clients per node.
const PER_NODE: usize = 4;
/// Longer than the heartbeat's TTL (5 s): long enough to be taken for dead.
const PAST_TTL: Duration = Duration::from_secs(8);
/// A connection attempt that got its `101` and nothing within this long is a hang:
/// a join completes or fails within the handshake timeout (10 s).
const HANG: Duration = Duration::from_secs(13);
/// How long an impatient client waits for an answer before it gives up on its node.
const IMPATIENCE: Duration = Duration::from_secs(4);
/// Time between a client's messages.
const PACE: Duration = Duration::from_millis(150);

// ---- the cluster ----

/// A node: the binary, so that it can be frozen, its log in a file.
struct Node {
    process: Running,
    addr: SocketAddr,
}

impl Node {
    fn start(redis_url: &str, dir: &TempDir, n: usize) -> Node {
        let log = std::fs::File::create(dir.path().join(format!("node{n}.log"))).expect("a log");
        let (mut command, addr) = binary_command();
        command
            .args(["--redis", redis_url])
            .env("SWITCHBOARD_API_TOKEN", TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("FAULTS_LOG").unwrap_or("info".into()),
            )
            .stderr(log);
        Node {
            process: serving(command, addr),
            addr,
        }
    }

    fn signal(&self, which: &str) {
        let sent = Command::new("kill")
            .args([which, &self.process.0.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {which}");
    }
}

/// A GET that gives up after 3 s (a stalled node must not stall the test), with the
/// token; the whole answer, or `None`.
fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).ok()?;
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).ok()?;
    Some(answer)
}

/// Whether the node says it is up (`/healthz` 200), or `None` when it does not answer.
fn healthy(addr: SocketAddr) -> Option<bool> {
    fetch(addr, "/healthz").map(|answer| status(&answer) == 200)
}

/// How many members the node at `addr` counts in the room.
fn members_count(addr: SocketAddr) -> Option<u64> {
    let answer = fetch(addr, "/api/rooms")?;
    let rooms: Value = serde_json::from_str(body(&answer)).ok()?;
    rooms["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == ROOM)
        .and_then(|r| r["members"].as_u64())
}

/// Every message the node at `addr` has in the room, oldest first, as (id, text).
fn stored(addr: SocketAddr) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/rooms/{ROOM}/messages?after={after}&limit=200");
        let page = fetch(addr, &path).expect("the node answers");
        let page: Value = serde_json::from_str(body(&page)).expect("a JSON page");
        for m in page["messages"].as_array().expect("messages") {
            let id = m["id"].as_u64().expect("an id");
            all.push((id, m["text"].as_str().unwrap_or_default().to_owned()));
            after = id;
        }
        if page["more"] != true {
            return all;
        }
    }
}

// ---- a client ----

/// How a client treats a node that stops answering.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Temper {
    /// Waits as long as its connection is open.
    Patient,
    /// After [`IMPATIENCE`] without an answer, goes to another node, as a page whose
    /// pings go unanswered would; and reconnects at once when told to `churn`.
    Impatient,
}

/// What the harness tells every client.
struct Orders {
    nodes: Vec<SocketAddr>,
    /// Stop sending; finish what is on its way.
    stop: AtomicBool,
    /// Impatient clients close and reconnect every 0.2 s (clients going through a
    /// restart of Redis, reconnecting as fast as they are told to).
    churn: AtomicBool,
}

/// Everything one client saw.
#[derive(Debug, Default)]
struct Seen {
    wanted: String,
    /// The name it holds now.
    name: String,
    /// Every message it sent, by text (its cid is its text).
    sent: Vec<String>,
    /// Its own messages it saw stored, text → id.
    acked: HashMap<String, u64>,
    /// Answered `unavailable` and not followed by a close: refused for good.
    refused: Vec<String>,
    unconfirmed: usize,
    /// Sent again with the same cid after no answer, `unconfirmed` or a lost connection.
    retries: usize,
    /// Every message it received, on any connection, as (id, text).
    received: Vec<(u64, String)>,
    attempts: usize,
    welcomes: usize,
    /// Connection attempts answered with an error and a close before any welcome.
    refusals: usize,
    /// Connection attempts that got no `101` (a frozen node, a node that is gone).
    unanswered: usize,
    /// Attempts that got a `101` and then nothing: must stay 0.
    hangs: usize,
    /// Times it was told it may have missed something: `resumed:false` after a
    /// resume, or an error and `1012` during a session.
    told: usize,
    /// Closes during a session, with their codes.
    closes: Vec<u16>,
    /// The longest it waited for an answer to a message on a connection that lived.
    longest_wait: Duration,
    /// Gaps or repeats nobody told it about: must stay empty.
    silent: Vec<String>,
}

struct Chatter {
    seen: Seen,
    /// What its texts (and cids) start with: its own, unlike its name, which a
    /// newcomer may ask for too.
    tag: String,
    temper: Temper,
    node: usize,
    ws: Option<Client>,
    epoch: Option<String>,
    /// The last id it has of the room; 0 before its first welcome.
    last: u64,
    /// Its message on its way, until it sees it stored or refused.
    pending: Option<Pending>,
    next_send: Instant,
    count: usize,
    connected_at: Instant,
}

struct Pending {
    text: String,
    /// When it went out on this connection; `None`: not yet.
    sent_at: Option<Instant>,
    /// When to send it again after `unconfirmed`.
    resend_at: Option<Instant>,
    /// When an `unavailable` came for it: followed by a close within a moment, it was
    /// the close's reason, and the message's fate is unknown.
    unavailable_at: Option<Instant>,
    times: usize,
}

impl Pending {
    fn new(text: String) -> Pending {
        Pending {
            text,
            sent_at: None,
            resend_at: None,
            unavailable_at: None,
            times: 0,
        }
    }
}

impl Chatter {
    fn new(name: String, tag: String, node: usize, temper: Temper) -> Chatter {
        Chatter {
            tag,
            seen: Seen {
                wanted: name,
                ..Seen::default()
            },
            temper,
            node,
            ws: None,
            epoch: None,
            last: 0,
            pending: None,
            next_send: Instant::now(),
            count: 0,
            connected_at: Instant::now(),
        }
    }

    /// Chats until told to stop and nothing is on its way (or 30 s more have passed).
    fn run(mut self, orders: &Orders) -> Chatter {
        let mut stop_deadline = None;
        loop {
            if orders.stop.load(Ordering::SeqCst) {
                let deadline =
                    *stop_deadline.get_or_insert(Instant::now() + Duration::from_secs(30));
                if self.ws.is_some() && self.pending.is_none() || Instant::now() > deadline {
                    return self;
                }
            }
            if self.ws.is_none() {
                self.join(orders);
                continue;
            }
            if self.temper == Temper::Impatient
                && orders.churn.load(Ordering::SeqCst)
                && self.connected_at.elapsed() > Duration::from_millis(200)
            {
                self.ws = None;
                continue;
            }
            self.send_next(orders);
            self.read_one();
        }
    }

    fn join(&mut self, orders: &Orders) {
        self.seen.attempts += 1;
        let addr = orders.nodes[self.node];
        let mut path = format!("/ws/chat/{ROOM}?name={}", self.seen.wanted);
        if let Some(epoch) = &self.epoch {
            path += &format!("&since={}&epoch={epoch}", self.last);
        }
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.set_write_timeout(Some(Duration::from_secs(3)))?;
            Ok(s)
        });
        let handshake = stream.map_err(|e| e.to_string()).and_then(|s| {
            tungstenite::client(format!("ws://{addr}{path}"), s).map_err(|e| e.to_string())
        });
        let mut ws = match handshake {
            Ok((ws, _)) => ws,
            Err(_) => {
                self.seen.unanswered += 1;
                self.next_node(orders);
                thread::sleep(Duration::from_millis(200));
                return;
            }
        };
        let first = first_message(&mut ws, HANG);
        match first {
            Some(msg) if msg["type"] == "welcome" => {
                // From now on, reads wait only a moment: the client also has to send.
                let _ = ws
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_millis(50)));
                self.welcome(ws, &msg)
            }
            Some(msg) if msg["type"] == "error" => {
                self.seen.refusals += 1;
                thread::sleep(Duration::from_millis(200));
            }
            Some(other) => self
                .seen
                .silent
                .push(format!("first message not a welcome: {other}")),
            None => {
                self.seen.hangs += 1;
                self.next_node(orders);
            }
        }
    }

    fn next_node(&mut self, orders: &Orders) {
        self.node = (self.node + 1) % orders.nodes.len();
    }

    fn welcome(&mut self, ws: Client, welcome: &Value) {
        self.seen.welcomes += 1;
        self.seen.name = welcome["name"].as_str().unwrap_or_default().to_owned();
        let epoch = welcome["epoch"].as_str().map(str::to_owned);
        let resuming = self.epoch.is_some();
        let history: Vec<(u64, String)> = welcome["history"]
            .as_array()
            .map(|h| h.iter().map(id_and_text).collect())
            .unwrap_or_default();
        if welcome["resumed"] == true {
            if epoch != self.epoch {
                self.seen
                    .silent
                    .push(format!("resumed across epochs: {welcome}"));
            }
            for (id, text) in history {
                self.message(id, text);
            }
        } else {
            if resuming {
                self.seen.told += 1;
            }
            // A fresh start: what it shows is replaced by the recent history.
            self.last = welcome["last_id"].as_u64().unwrap_or(0);
            for (id, text) in history {
                self.see(id, text);
            }
        }
        self.epoch = epoch;
        self.connected_at = Instant::now();
        if let Some(pending) = &mut self.pending {
            // Its message got no answer before the connection went: sent again, with
            // its cid, on the new connection.
            pending.sent_at = None;
            pending.resend_at = None;
            pending.unavailable_at = None;
        }
        self.ws = Some(ws);
    }

    /// A message in order: the next id after the last it has.
    fn message(&mut self, id: u64, text: String) {
        if self.last != 0 && id != self.last + 1 {
            self.seen.silent.push(format!(
                "{}: got id {id} after {} ({text})",
                self.seen.wanted, self.last
            ));
        }
        self.last = self.last.max(id);
        if let Some(pending) = &self.pending
            && pending.text == text
        {
            if pending.unavailable_at.is_some() {
                self.seen
                    .silent
                    .push(format!("{text} answered unavailable, then stored as {id}"));
            }
            self.answered();
            self.seen.acked.insert(text.clone(), id);
            self.pending = None;
            self.next_send = Instant::now() + PACE;
        }
        self.see(id, text);
    }

    /// Its message was answered: how long that took.
    fn answered(&mut self) {
        if let Some(at) = self.pending.as_ref().and_then(|p| p.sent_at) {
            self.seen.longest_wait = self.seen.longest_wait.max(at.elapsed());
        }
    }

    fn see(&mut self, id: u64, text: String) {
        self.seen.received.push((id, text));
    }

    /// Sends its message on its way when it is due: a new one at its pace, or the one
    /// with no answer yet, again with its cid (after `unconfirmed`, on a new
    /// connection, or now and then while the node says nothing).
    fn send_next(&mut self, orders: &Orders) {
        let now = Instant::now();
        let Some(pending) = &mut self.pending else {
            if !orders.stop.load(Ordering::SeqCst) && now >= self.next_send {
                self.count += 1;
                let text = format!("{}-{}", self.tag, self.count);
                self.seen.sent.push(text.clone());
                self.pending = Some(Pending::new(text));
            }
            return;
        };
        if let Some(at) = pending.unavailable_at {
            if at.elapsed() > Duration::from_millis(500) {
                // No close followed: the message was refused, for good.
                self.seen.refused.push(pending.text.clone());
                self.pending = None;
                self.next_send = now + PACE;
            }
            return;
        }
        let due = match (pending.sent_at, pending.resend_at) {
            (None, _) => true,
            (_, Some(at)) => now >= at,
            (Some(at), None) => {
                let waited = at.elapsed();
                if waited > IMPATIENCE && self.temper == Temper::Impatient {
                    self.ws = None;
                    self.next_node(orders);
                    return;
                }
                waited > IMPATIENCE * 3
            }
        };
        if !due {
            return;
        }
        if pending.times > 0 {
            self.seen.retries += 1;
        }
        pending.times += 1;
        pending.sent_at = Some(now);
        pending.resend_at = None;
        let request = json!({"type": "message", "text": pending.text, "cid": pending.text});
        let sent = self
            .ws
            .as_mut()
            .is_some_and(|ws| ws.send(Message::text(request.to_string())).is_ok());
        if !sent {
            self.lost(None);
        }
    }

    /// Reads what came within a short while, and acts on it.
    fn read_one(&mut self) {
        let Some(ws) = self.ws.as_mut() else { return };
        let msg = match ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(frame)) => {
                self.lost(frame.map(|f| u16::from(f.code)));
                return;
            }
            Ok(_) => return,
            Err(e) if timed_out(&e) => return,
            Err(_) => {
                self.lost(None);
                return;
            }
        };
        let Ok(msg) = serde_json::from_str::<Value>(&msg) else {
            self.seen.silent.push(format!("not JSON: {msg}"));
            return;
        };
        match msg["type"].as_str() {
            Some("message") => {
                let (id, text) = id_and_text(&msg);
                self.message(id, text);
            }
            Some("error") => match msg["code"].as_str() {
                Some("unconfirmed") => {
                    self.answered();
                    self.seen.unconfirmed += 1;
                    if let Some(pending) = &mut self.pending {
                        // Asked again after a while, with its cid, as the page does.
                        pending.resend_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                Some("unavailable") => {
                    self.answered();
                    if let Some(pending) = &mut self.pending
                        && pending.unavailable_at.is_none()
                    {
                        pending.unavailable_at = Some(Instant::now());
                    }
                }
                _ => self.seen.silent.push(format!("unexpected error: {msg}")),
            },
            Some("welcome") => self.seen.silent.push(format!("a second welcome: {msg}")),
            _ => {}
        }
    }

    /// The connection ended: told, if it was closed with 1012 (or 1001 by a node
    /// shutting down).
    fn lost(&mut self, code: Option<u16>) {
        if let Some(code) = code {
            self.seen.closes.push(code);
            if code == 1012 {
                self.seen.told += 1;
            }
        }
        if let Some(pending) = &mut self.pending {
            // An `unavailable` that came just before a close was the close's reason:
            // the message's fate is unknown, so it is sent again on the next connection.
            pending.unavailable_at = None;
        }
        self.ws = None;
    }
}

fn id_and_text(msg: &Value) -> (u64, String) {
    (
        msg["id"].as_u64().unwrap_or(0),
        msg["text"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The first JSON message within `limit`, or `None` when nothing came (or the
/// connection ended without one).
fn first_message(ws: &mut Client, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) => return None,
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => return None,
        }
    }
    None
}

// ---- the run ----

/// The cluster, its clients, and what the fault did to them.
struct Run {
    label: &'static str,
    redis: Redis,
    /// Before `dir`, so that the logs are still there when it speaks.
    _logs: LogsOnFailure,
    _dir: TempDir,
    nodes: Vec<Node>,
    link: Option<Link>,
    orders: Arc<Orders>,
    chatters: Vec<thread::JoinHandle<Chatter>>,
}

impl Run {
    /// Three nodes (the first through a [`Link`] when `linked`) and [`PER_NODE`] clients
    /// on each, half of them patient, chatting.
    fn start(label: &'static str, linked: bool) -> Option<Run> {
        let redis = Redis::start(label)?;
        let dir = TempDir::new(label);
        let link = linked.then(|| Link::to(&redis));
        let nodes: Vec<Node> = (0..3)
            .map(|n| {
                let url = match (&link, n) {
                    (Some(link), 0) => link.url(),
                    _ => redis.url(),
                };
                Node::start(&url, &dir, n)
            })
            .collect();
        let orders = Arc::new(Orders {
            nodes: nodes.iter().map(|n| n.addr).collect(),
            stop: AtomicBool::new(false),
            churn: AtomicBool::new(false),
        });
        let mut run = Run {
            label,
            redis,
            _logs: LogsOnFailure(dir.path().to_owned()),
            _dir: dir,
            nodes,
            link,
            orders,
            chatters: Vec::new(),
        };
        for i in 0..run.nodes.len() * PER_NODE {
            run.add(&format!("c{i}"), i / PER_NODE, temper(i));
        }
        // Everyone in, and a few messages each, before the fault.
        let everyone = Some((run.nodes.len() * PER_NODE) as u64);
        let all_in = within(Duration::from_secs(20), || {
            run.nodes.iter().all(|n| members_count(n.addr) == everyone)
        });
        let counts: Vec<_> = run.nodes.iter().map(|n| members_count(n.addr)).collect();
        if all_in.is_none() {
            for n in 0..3 {
                let mut probe = connect(run.nodes[n].addr, "/ws/chat/r?name=probe");
                let _ = probe
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(5)));
                eprintln!("node{n} view: {:?}", members_view(&mut probe));
            }
        }
        assert!(
            all_in.is_some(),
            "{label}: everyone in, by every node: {counts:?}"
        );
        thread::sleep(Duration::from_secs(2));
        Some(run)
    }

    /// One more client, asking for `name` on node `node`.
    fn add(&mut self, name: &str, node: usize, temper: Temper) {
        let tag = format!("t{}", self.chatters.len());
        let chatter = Chatter::new(name.to_owned(), tag, node, temper);
        let orders = Arc::clone(&self.orders);
        self.chatters
            .push(thread::spawn(move || chatter.run(&orders)));
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Lets the cluster settle after the fault, stops the clients, and checks every
    /// promise over all of them; prints the counts.
    fn finish(self, extra: &str) -> Totals {
        thread::sleep(Duration::from_secs(4));
        self.orders.stop.store(true, Ordering::SeqCst);
        let chatters: Vec<Chatter> = self
            .chatters
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect();
        let addrs: Vec<SocketAddr> = self.nodes.iter().map(|n| n.addr).collect();
        let mut chatters = chatters;
        for c in &mut chatters {
            assert!(
                c.ws.is_some(),
                "{}: {} never got back in: {:?}",
                self.label,
                c.seen.wanted,
                c.seen
            );
        }

        // The store: the same on every node, each message once.
        let store = stored(addrs[0]);
        for addr in &addrs[1..] {
            assert_eq!(
                stored(*addr),
                store,
                "{}: every node reads one store",
                self.label
            );
        }
        let by_text: BTreeMap<&str, Vec<u64>> =
            store.iter().fold(BTreeMap::new(), |mut m, (id, text)| {
                m.entry(text.as_str()).or_insert_with(Vec::new).push(*id);
                m
            });
        let twice: Vec<_> = by_text.iter().filter(|(_, ids)| ids.len() > 1).collect();
        let ids: Vec<u64> = store.iter().map(|(id, _)| *id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let store_map: HashMap<u64, &str> = store.iter().map(|(id, t)| (*id, t.as_str())).collect();

        let mut lost = Vec::new();
        let mut refused_stored = Vec::new();
        let mut refused_delivered = Vec::new();
        let mut wrong = Vec::new();
        let mut silent = Vec::new();
        let delivered: BTreeSet<&str> = chatters
            .iter()
            .flat_map(|c| c.seen.received.iter().map(|(_, t)| t.as_str()))
            .collect();
        for c in &chatters {
            for (text, id) in &c.seen.acked {
                if by_text.get(text.as_str()) != Some(&vec![*id]) {
                    lost.push(format!("{text} as {id}"));
                }
            }
            for text in &c.seen.refused {
                if by_text.contains_key(text.as_str()) {
                    refused_stored.push(text.clone());
                }
                if delivered.contains(text.as_str()) {
                    refused_delivered.push(text.clone());
                }
            }
            for (id, text) in &c.seen.received {
                if store_map.get(id) != Some(&text.as_str()) {
                    wrong.push(format!("{}: {id} {text}", c.seen.wanted));
                }
            }
            silent.extend(c.seen.silent.iter().cloned());
        }

        // Every view of the room the same, each name held once; a direct message
        // reaches its one holder.
        let mut holders: Vec<String> = chatters.iter().map(|c| c.seen.name.clone()).collect();
        holders.sort();
        let mut once = holders.clone();
        once.dedup();
        assert_eq!(once, holders, "{}: one holder per name", self.label);
        let mut views = Vec::new();
        let agreed = within(Duration::from_secs(10), || {
            views = chatters
                .iter_mut()
                .filter_map(|c| c.ws.as_mut().map(members_view))
                .collect();
            views.iter().all(|v| *v == holders)
        });
        assert!(
            agreed.is_some(),
            "{}: every view of the room is who holds a name: {holders:?}, seen: {views:#?}",
            self.label
        );
        let mut misdirected = Vec::new();
        for i in 0..chatters.len() {
            let to = chatters[i].seen.name.clone();
            let from = (i + PER_NODE) % chatters.len();
            let text = format!("for {to}");
            if let Some(ws) = chatters[from].ws.as_mut() {
                send_json(ws, json!({"type": "direct", "to": to, "text": text}));
            }
        }
        for c in &mut chatters {
            let Some(ws) = c.ws.as_mut() else { continue };
            let mine = format!("for {}", c.seen.name);
            let mut got = Vec::new();
            // Every direct was sent before any is read: once its own came, whatever
            // else was meant for it is there too.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match ws.read() {
                    Ok(Message::Text(t)) => {
                        let msg: Value = serde_json::from_str(&t).unwrap_or_default();
                        // Not the copy of the one it sent itself.
                        if msg["type"] == "direct" && msg["from"] != c.seen.name.as_str() {
                            got.push(msg["text"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                    Err(e) if timed_out(&e) => {
                        if !got.is_empty() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            if got != [mine.clone()] {
                misdirected.push(format!("{} got {got:?}", c.seen.name));
            }
        }

        let sum = |f: fn(&Seen) -> usize| chatters.iter().map(|c| f(&c.seen)).sum::<usize>();
        eprintln!(
            "{}: {} clients on 3 nodes; {} messages sent, {} stored, {} acknowledged, \
             {} refused, {} answered unconfirmed, {} sent again with their cid; \
             {} connection attempts: {} welcomes, {} refused with a reason, {} unanswered \
             (node frozen or away), {} hung after 101; told to resume {} times; \
             lost {}, refused but stored {}, refused but delivered {}, stored twice {}, \
             wrong ids {}, silent gaps {}, misdirected {}; longest wait for an answer \
             {:?}{extra}",
            self.label,
            chatters.len(),
            sum(|s| s.sent.len()),
            store.len(),
            sum(|s| s.acked.len()),
            sum(|s| s.refused.len()),
            sum(|s| s.unconfirmed),
            sum(|s| s.retries),
            sum(|s| s.attempts),
            sum(|s| s.welcomes),
            sum(|s| s.refusals),
            sum(|s| s.unanswered),
            sum(|s| s.hangs),
            sum(|s| s.told),
            lost.len(),
            refused_stored.len(),
            refused_delivered.len(),
            twice.len(),
            wrong.len(),
            silent.len(),
            misdirected.len(),
            chatters
                .iter()
                .map(|c| c.seen.longest_wait)
                .max()
                .unwrap_or_default(),
        );
        assert!(
            lost.is_empty(),
            "{}: acknowledged, then lost: {lost:?}",
            self.label
        );
        assert!(
            refused_stored.is_empty(),
            "{}: refused, yet stored: {refused_stored:?}",
            self.label
        );
        assert!(
            refused_delivered.is_empty(),
            "{}: refused, yet delivered: {refused_delivered:?}",
            self.label
        );
        assert!(twice.is_empty(), "{}: stored twice: {twice:?}", self.label);
        assert_eq!(ids, sorted, "{}: ids in order, each once", self.label);
        assert!(
            wrong.is_empty(),
            "{}: received what was not stored: {wrong:?}",
            self.label
        );
        assert!(
            silent.is_empty(),
            "{}: silent gaps or oddities: {silent:#?}",
            self.label
        );
        assert_eq!(sum(|s| s.hangs), 0, "{}: a join left hanging", self.label);
        assert!(
            misdirected.is_empty(),
            "{}: directs: {misdirected:?}",
            self.label
        );
        Totals {
            longest_wait: chatters
                .iter()
                .map(|c| c.seen.longest_wait)
                .max()
                .unwrap_or_default(),
            refusals: sum(|s| s.refusals),
            told: sum(|s| s.told),
        }
    }
}

/// What a fault test checks beyond the promises every fault keeps.
struct Totals {
    longest_wait: Duration,
    refusals: usize,
    told: usize,
}

/// Prints the end of each node's log when the test fails: what the nodes said of the
/// fault is the first thing to read.
struct LogsOnFailure(std::path::PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        for n in 0..3 {
            let log = std::fs::read_to_string(self.0.join(format!("node{n}.log")));
            let log = log.unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- node{n} (last {} lines) ----\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Half the clients are patient: `c0`, `c2`, …
fn temper(i: usize) -> Temper {
    if i.is_multiple_of(2) {
        Temper::Patient
    } else {
        Temper::Impatient
    }
}

/// The member list a node gives its client, sorted.
fn members_view(ws: &mut Client) -> Vec<String> {
    send_json(ws, json!({"type": "members"}));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let msg: Value = serde_json::from_str(&t).unwrap_or_default();
                if msg["type"] == "members" {
                    let mut names: Vec<String> = msg["members"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .filter_map(|n| n.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    names.sort();
                    return names;
                }
            }
            Err(e) if timed_out(&e) => {}
            _ => break,
        }
    }
    Vec::new()
}

/// Waits until `check` holds for every node, for at most `limit`; how long it took.
fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

// ---- the faults ----

/// Redis stalls (`SIGSTOP`) longer than the TTL, then goes on. Messages on their way
/// are answered by what became of them; every node's health says so within seconds.
#[test]
fn redis_stalled() {
    let Some(run) = Run::start("redis_stalled", false) else {
        return;
    };
    run.redis.pause();
    let addrs = run.addrs();
    let down = within(Duration::from_secs(6), || {
        addrs.iter().all(|a| healthy(*a) == Some(false))
    });
    thread::sleep(PAST_TTL.saturating_sub(down.unwrap_or_default()));
    run.redis.resume();
    let up = within(Duration::from_secs(15), || {
        addrs.iter().all(|a| healthy(*a) == Some(true))
    });
    assert!(
        down.is_some(),
        "every node's /healthz says 503 within 6 s of the stall"
    );
    assert!(up.is_some(), "and 200 once Redis goes on");
    let extra = format!("; every /healthz 503 after {:?}", down.unwrap_or_default());
    let totals = run.finish(&extra);
    // No sender waits out the stall for an answer: it hears within a round trip's
    // deadline whether its message was stored, refused, or is on its way.
    assert!(
        totals.longest_wait < Duration::from_secs(6),
        "a sender waited {:?}",
        totals.longest_wait
    );
}

/// Redis is killed, and started again on its files a few seconds later, while clients
/// reconnect every 0.2 s through it: every attempt is answered, a welcome or a reason
/// and a close, and no join is left waiting for news that did not come.
#[test]
fn redis_restarted() {
    let Some(mut run) = Run::start("redis_restarted", false) else {
        return;
    };
    let addrs = run.addrs();
    run.orders.churn.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_secs(1));
    run.redis.kill();
    let down = within(Duration::from_secs(6), || {
        addrs.iter().all(|a| healthy(*a) == Some(false))
    });
    thread::sleep(Duration::from_secs(3));
    run.redis.restart(true);
    let up = within(Duration::from_secs(15), || {
        addrs.iter().all(|a| healthy(*a) == Some(true))
    });
    // Through the moment each node says Redis is back, and after it.
    thread::sleep(Duration::from_secs(2));
    run.orders.churn.store(false, Ordering::SeqCst);
    assert!(
        down.is_some(),
        "every node's /healthz says 503 once Redis is gone"
    );
    assert!(up.is_some(), "and 200 once it is back");
    let totals = run.finish("");
    assert!(
        totals.refusals > 0,
        "some attempts landed while Redis was away"
    );
}

/// A node is frozen (`SIGSTOP`) past the TTL: the others take it for dead, and
/// newcomers take its patient members' names. When it thaws, the old holders are
/// told and closed with 1012; each name has one holder, whom a direct reaches.
#[test]
fn node_frozen() {
    let Some(mut run) = Run::start("node_frozen", false) else {
        return;
    };
    let frozen = 2;
    let survivor = run.nodes[0].addr;
    run.nodes[frozen].signal("-STOP");
    let before = Some((run.nodes.len() * PER_NODE) as u64);
    let reaped = within(Duration::from_secs(15), || {
        members_count(survivor).is_some_and(|n| Some(n + PER_NODE as u64 / 2) <= before)
    });
    assert!(
        reaped.is_some(),
        "the frozen node's members are taken for gone"
    );
    // Its patient members' names, taken by newcomers on a survivor.
    for i in (frozen * PER_NODE..(frozen + 1) * PER_NODE).filter(|i| i.is_multiple_of(2)) {
        run.add(&format!("c{i}"), 0, Temper::Patient);
    }
    thread::sleep(PAST_TTL.saturating_sub(reaped.unwrap_or_default()));
    run.nodes[frozen].signal("-CONT");
    let totals = run.finish(&format!("; reaped after {:?}", reaped.unwrap_or_default()));
    assert!(
        totals.told >= PER_NODE / 2,
        "the old holders of the names taken were told"
    );
}

/// A node's link to Redis holds its bytes (both ways, nothing lost) past the TTL,
/// then delivers them: the others took it for dead meanwhile, and it learns so from
/// the backlog. None of its clients misses an id without being told.
#[test]
fn node_link_held() {
    let Some(run) = Run::start("node_link_held", true) else {
        return;
    };
    let Some(link) = &run.link else { return };
    link.hold();
    thread::sleep(PAST_TTL);
    link.release();
    let _ = run.finish("");
}
