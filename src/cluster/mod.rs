//! The cluster bridge: several nodes on one Redis are one chat.
//!
//! Redis is the store and the bus. Each room's messages are a Redis Stream, with ids
//! from Redis; every change to shared state (a message, a join, a name) is one Lua
//! script that also publishes the change on one channel, `switchboard:bus`, so every
//! node sees every change in the one order Redis made them in. Relay traffic goes on
//! `switchboard:relay`, as bytes.
//!
//! The hub never waits on the network: it hands [`Request`]s to the bridge thread
//! over a bounded channel with `try_send`, and hears back on channels of its own:
//! store-like [`Answer`]s, and [`Event`]s (the bus, in order, from the subscriber,
//! and what became of cluster requests). Both Redis connections belong to the bridge:
//! the commands are sent from its thread, the subscription is read by a thread of its
//! own ([`listen()`]), because a blocking read of a socket cannot also wait on a channel.
//!
//! Each node beats every second in `switchboard:nodes`; a node silent for
//! [`NODE_TTL`] has its members leave with reason `node_lost`, by whichever node
//! notices first. A node that loses Redis refuses what needs it (`unavailable`),
//! reconnects with backoff, and then catches up: the messages it missed, who came and
//! went, and its own members, in case it was taken for dead meanwhile.

mod listen;
mod scripts;

pub(crate) use listen::listen;

use crate::base::{ConnId, SessionId, now_ms};
use crate::chat::Since;
use crate::chat::{self, ChatLine};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{
    self, Answer, ApiAnswer, Change, Event, MAX_PAGE, MAX_RESUME, NewMessage, Present, Request,
    StoreError, member_key,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::{Connection, RedisResult, Script};
use serde::Deserialize;
use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Requests taken from the queue at once: a run of appends among them goes to Redis
/// in one round trip.
const MAX_BATCH: usize = 256;
/// The channel every change to shared chat state is published on.
const BUS: &str = "switchboard:bus";
/// Every room with messages, in a sorted set (all scores 0), for paging by name.
const ROOMS: &str = "switchboard:rooms";
/// Sessions ended by `POST /logout` (hex id → expiry, Unix seconds).
const ENDED: &str = "switchboard:ended_sessions";
/// The channel relay messages go on.
const RELAY: &str = "switchboard:relay";
/// How often a node says it is alive.
const BEAT: Duration = Duration::from_secs(1);
/// How long a node may be silent before its members are taken to be gone: five
/// missed beats, longer than the longest wait between reconnection attempts.
pub(crate) const NODE_TTL: Duration = Duration::from_secs(5);
/// The longest wait for Redis to connect or to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection attempts start this far apart and double up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A change to shared chat state as the scripts publish it on the bus: JSON, read
/// into a [`Change`] for the hub.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Bus {
    Msg {
        room: String,
        id: u64,
        from: String,
        text: String,
        ts: u64,
        #[serde(default)]
        via: String,
    },
    /// `last`: the room's newest id at the join; later messages have higher ids.
    Join {
        m: String,
        name: String,
        room: String,
        last: u64,
        ts: u64,
        /// Put back after Redis was away: news only to who did not know it.
        #[serde(default)]
        restore: bool,
    },
    Switch {
        m: String,
        room: String,
        last: u64,
        ts: u64,
    },
    Leave {
        m: String,
        reason: String,
        ts: u64,
    },
    Rename {
        m: String,
        to: String,
        ts: u64,
    },
    Direct {
        to: String,
        json: String,
    },
    /// A session was ended (`POST /logout`) on some node: its cookie is refused
    /// everywhere until `expires`.
    EndSession {
        id: String,
        expires: u64,
    },
}

impl Bus {
    /// The change, as the hub takes it; `None` for an ended session whose id does not
    /// parse.
    fn into_change(self) -> Option<Change> {
        Some(match self {
            Bus::Msg {
                room,
                id,
                from,
                text,
                ts,
                via,
            } => Change::Msg(Arc::new(ChatLine {
                id,
                room,
                from,
                text,
                ts,
                via: (via == "api").then_some("api"),
            })),
            Bus::Join {
                m,
                name,
                room,
                last,
                ts,
                restore,
            } => Change::Join {
                m,
                name,
                room,
                last,
                ts,
                restore,
            },
            Bus::Switch { m, room, last, ts } => Change::Switch { m, room, last, ts },
            Bus::Leave { m, reason, .. } => Change::Leave { m, reason },
            Bus::Rename { m, to, ts } => Change::Rename { m, to, ts },
            Bus::Direct { to, json } => Change::Direct { to, json },
            Bus::EndSession { id, expires } => {
                let id = data_encoding::HEXLOWER.decode(id.as_bytes()).ok()?;
                let id = SessionId::try_from(id.as_slice()).ok()?;
                Change::EndSession { id, expires }
            }
        })
    }
}

/// The bridge, connected, before its thread runs.
pub(crate) struct Bridge {
    client: redis::Client,
    /// As given (shown only through [`masked`]).
    url: String,
    con: Option<Connection>,
    /// This node's name in Redis: new for every start.
    node: String,
    epoch: String,
    session_key: [u8; 32],
    /// Sessions ended by `POST /logout` on any node, not yet expired.
    ended_sessions: Vec<(SessionId, u64)>,
    /// The rooms with messages when the node started.
    rooms: Vec<String>,
    retain: usize,
    history: usize,
    metrics: Arc<Metrics>,
    /// Set when the bridge ends, so that the subscriber ends too.
    stop: Arc<AtomicBool>,
    /// The wait before the next reconnection attempt.
    backoff: Duration,
    next_beat: Instant,
    /// Since when the current connection is up: a node does not reap others until it
    /// has been up for a [`NODE_TTL`], so that after Redis restarts, nodes that have
    /// not reconnected yet are not taken for dead.
    up_since: Instant,
    /// A resync that waits for Redis to be back.
    resync: Option<Request>,
    scripts: Scripts,
}

struct Scripts {
    append: Script,
    join: Script,
    /// What `join` needs to key a guest name, [`scripts::guest_keys`].
    guest_keys: Vec<String>,
    switch: Script,
    leave: Script,
    rename: Script,
    beat: Script,
    restore: Script,
    goodbye: Script,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .field("up", &self.con.is_some())
            .finish_non_exhaustive()
    }
}

/// `url` with its password, if any, masked: fit for a log line or an error.
pub(crate) fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

fn open(client: &redis::Client) -> RedisResult<Connection> {
    let con = client.get_connection_with_timeout(TIMEOUT)?;
    con.set_read_timeout(Some(TIMEOUT))?;
    con.set_write_timeout(Some(TIMEOUT))?;
    Ok(con)
}

/// The value of `key`, set to `fresh()` by whichever node asks first.
fn shared(con: &mut Connection, key: &str, fresh: String) -> RedisResult<String> {
    redis::cmd("SET").arg(key).arg(fresh).arg("NX").exec(con)?;
    redis::cmd("GET").arg(key).query(con)
}

impl Bridge {
    /// Connects to the Redis at `url`, or says why it cannot (naming the URL).
    pub(crate) fn connect(
        url: &str,
        retain: usize,
        history: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Bridge, Error> {
        let fail = |problem: String| Error::Redis {
            url: masked(url),
            problem,
        };
        let client =
            redis::Client::open(url).map_err(|e| fail(format!("not a Redis URL ({e})")))?;
        let mut con = open(&client).map_err(|e| fail(format!("cannot connect ({e})")))?;
        let key = crate::base::random_hex32().map_err(|e| fail(format!("no randomness ({e})")))?;
        let (epoch, key) = shared(&mut con, "switchboard:epoch", crate::base::new_epoch())
            .and_then(|epoch| Ok((epoch, shared(&mut con, "switchboard:session_key", key)?)))
            .map_err(|e| fail(format!("cannot be used ({e})")))?;
        let session_key = crate::base::key_bytes(&key).ok_or_else(|| {
            fail("holds a switchboard:session_key that is not 64 hex digits".into())
        })?;
        let ended_sessions =
            ended_sessions(&mut con).map_err(|e| fail(format!("cannot be read ({e})")))?;
        let rooms = rooms(&mut con).map_err(|e| fail(format!("cannot be read ({e})")))?;
        let scripts = Scripts {
            append: Script::new(scripts::APPEND),
            join: Script::new(scripts::JOIN),
            guest_keys: scripts::guest_keys(),
            switch: Script::new(scripts::SWITCH),
            leave: Script::new(&scripts::leave()),
            rename: Script::new(scripts::RENAME),
            beat: Script::new(&scripts::beat()),
            restore: Script::new(&scripts::restore()),
            goodbye: Script::new(&scripts::goodbye()),
        };
        let mut bridge = Bridge {
            client,
            url: url.to_owned(),
            con: None,
            node: crate::base::new_epoch(),
            epoch,
            session_key,
            ended_sessions,
            rooms,
            retain: retain.max(1),
            history,
            metrics,
            stop: Arc::new(AtomicBool::new(false)),
            backoff: MIN_BACKOFF,
            next_beat: Instant::now() + BEAT,
            up_since: Instant::now(),
            resync: None,
            scripts,
        };
        bridge
            .heartbeat(&mut con)
            .map_err(|e| fail(format!("cannot be used ({e})")))?;
        bridge.con = Some(con);
        bridge.metrics.clustered.store(true, Ordering::Relaxed);
        bridge.metrics.redis_up.store(1, Ordering::Relaxed);
        log::info!(
            "cluster: node {} on Redis {} (epoch {})",
            bridge.node,
            masked(url),
            bridge.epoch
        );
        Ok(bridge)
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn session_key(&self) -> [u8; 32] {
        self.session_key
    }

    /// The rooms that have messages, as Redis lists them at the start.
    pub(crate) fn rooms(&self) -> Vec<String> {
        self.rooms.clone()
    }

    /// The sessions ended on any node whose cookies would still be good.
    pub(crate) fn ended_sessions(&self) -> Vec<(SessionId, u64)> {
        self.ended_sessions.clone()
    }

    /// A client of the same Redis, for the subscriber.
    pub(crate) fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The flag that tells the subscriber to end.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Serves requests until the hub is gone, beating every second meanwhile; then
    /// takes the node out of the cluster and stops the subscriber.
    pub(crate) fn run(mut self, requests: Receiver<Request>, events: Sender<Event>) {
        loop {
            let wait = self.next_beat.saturating_duration_since(Instant::now());
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    batch.extend(requests.try_iter().take(MAX_BATCH - 1));
                    self.serve_all(batch, &events);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= self.next_beat {
                self.tick(&events);
            }
        }
        if let Some(con) = self.con.as_mut() {
            let goodbye = self
                .scripts
                .goodbye
                .arg(&self.node)
                .arg(now_ms())
                .invoke::<i64>(con);
            if let Err(e) = goodbye {
                log::warn!(
                    "cluster: could not say goodbye ({e}); the others will time this node out"
                );
            }
        }
        self.stop.store(true, Ordering::Release);
        log::debug!("cluster: node {} left", self.node);
    }

    /// The heartbeat, or a reconnection attempt while Redis is away.
    fn tick(&mut self, events: &Sender<Event>) {
        let Some(mut con) = self.con.take() else {
            self.reconnect(events);
            return;
        };
        self.next_beat = Instant::now() + BEAT;
        match self.heartbeat(&mut con) {
            Ok(true) => self.con = Some(con),
            Ok(false) => {
                // Redis had forgotten this node: the others took it for dead, or
                // its data is gone (a FLUSHDB, say), which the epoch tells.
                log::warn!("cluster: Redis had forgotten this node; putting its members back");
                match shared(&mut con, "switchboard:epoch", crate::base::new_epoch()) {
                    Ok(epoch) => {
                        self.con = Some(con);
                        self.rejoined(epoch, events);
                    }
                    Err(e) => self.lost(&e),
                }
            }
            Err(e) => self.lost(&e),
        }
    }

    /// Beats; `false` when Redis did not know this node.
    fn heartbeat(&self, con: &mut Connection) -> RedisResult<bool> {
        let reap = self.up_since.elapsed() >= NODE_TTL;
        let known: i64 = self
            .scripts
            .beat
            .arg(&self.node)
            .arg(NODE_TTL.as_millis() as u64)
            .arg(if reap { "1" } else { "0" })
            .invoke(con)?;
        Ok(known == 1)
    }

    fn lost(&mut self, e: &redis::RedisError) {
        self.con = None;
        self.metrics.redis_up.store(0, Ordering::Relaxed);
        crate::metrics::bump(&self.metrics.redis_errors);
        log::warn!("cluster: lost Redis ({e}); refusing chat messages until it is back");
        self.backoff = MIN_BACKOFF;
        self.next_beat = Instant::now() + self.backoff;
    }

    fn reconnect(&mut self, events: &Sender<Event>) {
        let attempt = open(&self.client).and_then(|mut con| {
            let epoch = shared(&mut con, "switchboard:epoch", crate::base::new_epoch())?;
            Ok((con, epoch))
        });
        match attempt {
            Ok((con, epoch)) => {
                log::info!("cluster: Redis is back");
                self.con = Some(con);
                self.up_since = Instant::now();
                self.next_beat = Instant::now();
                self.metrics.redis_up.store(1, Ordering::Relaxed);
                self.rejoined(epoch, events);
            }
            Err(e) => {
                log::debug!("cluster: Redis still away ({e})");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.next_beat = Instant::now() + self.backoff;
            }
        }
    }

    /// Tells the hub what to set right now that Redis answers again: everything, if
    /// `epoch` says Redis lost its data; else what it missed.
    fn rejoined(&mut self, epoch: String, events: &Sender<Event>) {
        if epoch == self.epoch {
            let _ = events.send(Event::Reconnected);
            return;
        }
        log::warn!(
            "cluster: Redis lost its data (epoch {} is now {epoch})",
            self.epoch
        );
        self.epoch.clone_from(&epoch);
        self.resync = None;
        let _ = events.send(Event::NewEpoch(epoch));
    }

    /// Carries out a batch in order: each run of appends in one round trip (a
    /// pipeline of scripts, which Redis runs one after another), the rest one by one.
    fn serve_all(&mut self, batch: Vec<Request>, events: &Sender<Event>) {
        let mut appends = Vec::new();
        for request in batch {
            match request {
                Request::Append(msg) => appends.push(msg),
                other => {
                    if !appends.is_empty() {
                        self.append_all(mem::take(&mut appends), events);
                    }
                    self.serve(other, events);
                }
            }
        }
        if !appends.is_empty() {
            self.append_all(appends, events);
        }
    }

    /// Stores and publishes `messages` in one round trip, and answers with their ids
    /// (or, if Redis failed, with the failure for each).
    fn append_all(&mut self, messages: Vec<NewMessage>, events: &Sender<Event>) {
        let stored = match self.con.take() {
            Some(mut con) => match self.pipeline_appends(&mut con, &messages, events) {
                Ok(ids) => {
                    self.con = Some(con);
                    Some(ids)
                }
                Err(e) => {
                    self.lost(&e);
                    None
                }
            },
            None => None,
        };
        let _ = events.send(Event::Answer(committed(messages, stored)));
    }

    fn pipeline_appends(
        &mut self,
        con: &mut Connection,
        messages: &[NewMessage],
        events: &Sender<Event>,
    ) -> RedisResult<Vec<u64>> {
        if let Some(resync) = self.resync.take()
            && let Err(e) = self.resync(con, &resync, events)
        {
            self.resync = Some(resync);
            return Err(e);
        }
        let mut pipe = redis::pipe();
        for msg in messages {
            pipe.cmd("EVALSHA")
                .arg(self.scripts.append.get_hash())
                .arg(1)
                .arg(stream(&msg.room))
                .arg(&msg.room)
                .arg(self.retain)
                .arg(&msg.from)
                .arg(&msg.text)
                .arg(msg.ts)
                .arg(msg.via.unwrap_or(""));
        }
        match pipe.query(con) {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis forgot the script (a restart, SCRIPT FLUSH): nothing of the
                // pipeline ran, so it runs again once the script is back.
                self.scripts.append.prepare_invoke().load(con)?;
                pipe.query(con)
            }
            result => result,
        }
    }

    /// Carries out one request; when Redis is away, says so to whoever waits.
    fn serve(&mut self, request: Request, events: &Sender<Event>) {
        let Some(mut con) = self.con.take() else {
            return self.refuse(request, events);
        };
        match self.carry_out(&mut con, &request, events) {
            Ok(()) => self.con = Some(con),
            Err(e) => {
                self.lost(&e);
                self.refuse(request, events);
            }
        }
    }

    /// Tells whoever waits for `request` that it cannot be done now.
    fn refuse(&mut self, request: Request, events: &Sender<Event>) {
        let _ = match request {
            Request::Join { member, .. } | Request::Switch { member, .. } => {
                events.send(Event::JoinFailed { member })
            }
            Request::Rename { member, .. } => events.send(Event::Failed {
                member,
                what: "names cannot be changed now, try again",
            }),
            Request::Direct { from, .. } => events.send(Event::Failed {
                member: from,
                what: "the direct message could not be sent, try again",
            }),
            // Put right by the next resync.
            Request::Leave { .. } | Request::Relay { .. } => Ok(()),
            resync @ Request::Resync { .. } => {
                self.resync = Some(resync);
                Ok(())
            }
            // The node that ended it refuses the cookie all the same until it restarts.
            Request::EndSession { .. } => Ok(()),
            Request::Append(msg) => events.send(Event::Answer(Answer::Committed(vec![(
                msg.author,
                Err(StoreError::Failed),
            )]))),
            Request::Page { member, room, .. } => events.send(Event::Answer(Answer::Page {
                member,
                room,
                messages: Vec::new(),
                more: false,
                failed: true,
            })),
            Request::Rooms { reply, .. } | Request::Messages { reply, .. } => {
                let _ = reply.send(ApiAnswer::Unavailable);
                Ok(())
            }
        };
    }

    /// Carries out `request` (after a resync that waited for Redis, if any).
    fn carry_out(
        &mut self,
        con: &mut Connection,
        request: &Request,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        if let Some(resync) = self.resync.take()
            && let Err(e) = self.resync(con, &resync, events)
        {
            self.resync = Some(resync);
            return Err(e);
        }
        match request {
            Request::Join {
                member,
                seq,
                names,
                room,
                since,
            } => self.join(con, *member, *seq, names, room, since.clone(), events),
            Request::Switch { member, seq, room } => self.switch(con, *member, *seq, room, events),
            Request::Leave { member, reason } => self.leave(con, *member, reason),
            Request::Rename { member, to, key } => self.rename(con, *member, to, key, events),
            Request::Direct { to, json, .. } => direct(con, to, json),
            Request::Relay { member, room, msg } => self.relay(con, *member, room, msg),
            Request::Resync { .. } => self.resync(con, request, events),
            store => self.store(con, store, events),
        }
    }

    fn store(
        &mut self,
        con: &mut Connection,
        request: &Request,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        match request {
            Request::EndSession { id, expires } => {
                // Kept in a hash until it expires, and told to every node's hub.
                let id = data_encoding::HEXLOWER.encode(id);
                let news = serde_json::json!({"k": "end_session", "id": id, "expires": expires});
                redis::pipe()
                    .cmd("HSET")
                    .arg(ENDED)
                    .arg(&id)
                    .arg(*expires)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(BUS)
                    .arg(news.to_string())
                    .ignore()
                    .exec(con)?;
            }
            Request::Append(msg) => {
                // Appends come through `append_all`; one alone is a run of one.
                let ids = self.pipeline_appends(con, std::slice::from_ref(msg), events)?;
                let _ = events.send(Event::Answer(committed(vec![msg.clone()], Some(ids))));
            }
            Request::Page {
                member,
                room,
                before,
                limit,
            } => {
                let limit = (*limit).clamp(1, MAX_PAGE);
                let end = before.map_or("+".to_owned(), |b| format!("({b}-0"));
                let mut messages = range(con, "XREVRANGE", room, &end, "-", limit + 1)?;
                let more = messages.len() > limit;
                messages.truncate(limit);
                messages.reverse();
                let _ = events.send(Event::Answer(Answer::Page {
                    member: *member,
                    room: room.clone(),
                    messages,
                    more,
                    failed: false,
                }));
            }
            Request::Rooms {
                members,
                after,
                limit,
                reply,
            } => {
                // A range of the sorted set of rooms, then their newest ids: the
                // page's cost, whatever the number of rooms.
                let from = after.as_ref().map_or("-".to_owned(), |a| format!("({a}"));
                let names: Vec<String> = redis::cmd("ZRANGEBYLEX")
                    .arg(ROOMS)
                    .arg(from)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit + 1)
                    .query(con)?;
                let ids: Vec<Option<u64>> = if names.is_empty() {
                    Vec::new()
                } else {
                    redis::cmd("HMGET")
                        .arg("switchboard:ids")
                        .arg(&names)
                        .query(con)?
                };
                let stored = names
                    .into_iter()
                    .zip(ids)
                    .map(|(name, id)| (name, id.unwrap_or(0)))
                    .collect();
                let (rooms, more) = store::page_of_rooms(stored, members.clone(), *limit);
                let _ = reply.send(ApiAnswer::Rooms { rooms, more });
            }
            Request::Messages {
                room,
                before,
                after,
                limit,
                reply,
            } => {
                let limit = (*limit).clamp(1, MAX_PAGE);
                let end = before.map_or("+".to_owned(), |b| format!("({b}-0"));
                let mut messages = match after {
                    Some(after) => {
                        range(con, "XRANGE", room, &format!("({after}-0"), &end, limit + 1)?
                    }
                    None => range(con, "XREVRANGE", room, &end, "-", limit + 1)?,
                };
                let more = messages.len() > limit;
                messages.truncate(limit);
                if after.is_none() {
                    messages.reverse();
                }
                let _ = reply.send(ApiAnswer::Messages {
                    room: room.clone(),
                    messages,
                    more,
                });
            }
            // Who is where: `carry_out` takes these.
            Request::Join { .. }
            | Request::Switch { .. }
            | Request::Leave { .. }
            | Request::Rename { .. }
            | Request::Direct { .. }
            | Request::Relay { .. }
            | Request::Resync { .. } => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        con: &mut Connection,
        member: ConnId,
        seq: u64,
        names: &[(String, String)],
        room: &str,
        since: Option<Since>,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let mut join = self.scripts.join.prepare_invoke();
        join.arg(member_key(&self.node, member))
            .arg(room)
            .arg(now_ms())
            .arg(&self.node)
            .arg(&self.scripts.guest_keys);
        for (name, key) in names {
            join.arg(name).arg(key);
        }
        let (_name, last): (String, u64) = join.invoke(con)?;
        let (history, resumed) = self.history(con, room, since, last)?;
        let _ = events.send(Event::Answer(loaded(
            member, seq, room, history, last, resumed,
        )));
        Ok(())
    }

    fn switch(
        &mut self,
        con: &mut Connection,
        member: ConnId,
        seq: u64,
        room: &str,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let last: i64 = self
            .scripts
            .switch
            .arg(member_key(&self.node, member))
            .arg(room)
            .arg(now_ms())
            .invoke(con)?;
        let Ok(last) = u64::try_from(last) else {
            // Redis does not know the member (it was away): the next resync puts it
            // back; until then it cannot move.
            let _ = events.send(Event::JoinFailed { member });
            return Ok(());
        };
        let (history, resumed) = self.history(con, room, None, last)?;
        let _ = events.send(Event::Answer(loaded(
            member, seq, room, history, last, resumed,
        )));
        Ok(())
    }

    fn leave(&self, con: &mut Connection, member: ConnId, reason: &str) -> RedisResult<()> {
        self.scripts
            .leave
            .arg(member_key(&self.node, member))
            .arg(reason)
            .arg(now_ms())
            .arg(&self.node)
            .invoke::<i64>(con)
            .map(drop)
    }

    /// Member `member` takes the name `to` (key `key`), unless someone has it.
    fn rename(
        &self,
        con: &mut Connection,
        member: ConnId,
        to: &str,
        key: &str,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let done: i64 = self
            .scripts
            .rename
            .arg(member_key(&self.node, member))
            .arg(to)
            .arg(key)
            .arg(now_ms())
            .invoke(con)?;
        if done == 0 {
            let to = to.to_owned();
            let _ = events.send(Event::NameTaken { member, to });
        }
        Ok(())
    }

    /// A relay message of member `member` to its room on every node.
    fn relay(
        &self,
        con: &mut Connection,
        member: ConnId,
        room: &str,
        msg: &Message,
    ) -> RedisResult<()> {
        let from = member_key(&self.node, member);
        redis::cmd("PUBLISH")
            .arg(RELAY)
            .arg(listen::relay_payload(&from, room, msg))
            .exec(con)
    }

    /// The history for a welcome, up to the room's id `last` at the join: what came
    /// after `since` when the client can resume, else the newest `history`.
    fn history(
        &self,
        con: &mut Connection,
        room: &str,
        since: Option<Since>,
        last: u64,
    ) -> RedisResult<(Vec<Arc<ChatLine>>, bool)> {
        let end = format!("{last}-0");
        if let Some(since) = since.filter(|s| s.epoch == self.epoch && s.id <= last) {
            let oldest = range(con, "XRANGE", room, "-", "+", 1)?;
            // Every message after `since` must still be here, and not too many.
            if oldest.first().is_none_or(|o| o.id <= since.id + 1) {
                let start = format!("({}-0", since.id);
                let missed = range(con, "XRANGE", room, &start, &end, MAX_RESUME + 1)?;
                if missed.len() <= MAX_RESUME {
                    return Ok((missed, true));
                }
            }
        }
        if self.history == 0 {
            return Ok((Vec::new(), false));
        }
        let mut recent = range(con, "XREVRANGE", room, &end, "-", self.history)?;
        recent.reverse();
        Ok((recent, false))
    }

    /// After a gap: this node's members back into Redis, then what each room missed
    /// and who is where now.
    fn resync(
        &mut self,
        con: &mut Connection,
        request: &Request,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let Request::Resync {
            epoch,
            members,
            rooms,
        } = request
        else {
            return Ok(());
        };
        if *epoch != self.epoch {
            return Ok(());
        }
        let mut restore = self.scripts.restore.prepare_invoke();
        restore.arg(&self.node).arg(now_ms());
        for (id, name, room) in members {
            restore
                .arg(member_key(&self.node, *id))
                .arg(name)
                .arg(chat::name_key(name))
                .arg(room);
        }
        restore.invoke::<i64>(con)?;
        for (room, after) in rooms {
            let start = format!("({after}-0");
            let lines = range(con, "XRANGE", room, &start, "+", MAX_RESUME)?;
            if !lines.is_empty() {
                let _ = events.send(Event::CatchUp { lines });
            }
        }
        let _ = events.send(Event::Presence(present(con)?));
        Ok(())
    }

    /// Tells the hub who is in the cluster already, before it serves anyone: call it
    /// once the subscriber listens, so that every later change reaches the hub too.
    pub(crate) fn introduce(&mut self, events: &Sender<Event>) -> Result<(), Error> {
        let Some(con) = self.con.as_mut() else {
            return Ok(());
        };
        let everyone = present(con).map_err(|e| Error::Redis {
            url: masked(&self.url),
            problem: format!("cannot be read ({e})"),
        })?;
        let _ = events.send(Event::Presence(everyone));
        Ok(())
    }
}

/// A direct message for member `to`, on the bus to whichever node has it.
fn direct(con: &mut Connection, to: &str, json: &str) -> RedisResult<()> {
    let payload = serde_json::json!({"k": "direct", "to": to, "json": json});
    redis::cmd("PUBLISH")
        .arg(BUS)
        .arg(payload.to_string())
        .exec(con)
}

/// Every room with messages; the sorted set of them is made from the ids when a
/// database written by an older switchboard lacks it.
fn rooms(con: &mut Connection) -> RedisResult<Vec<String>> {
    let rooms: Vec<String> = redis::cmd("HKEYS").arg("switchboard:ids").query(con)?;
    let listed: usize = redis::cmd("ZCARD").arg(ROOMS).query(con)?;
    if listed < rooms.len() {
        let mut add = redis::cmd("ZADD");
        add.arg(ROOMS);
        for room in &rooms {
            add.arg(0).arg(room);
        }
        add.exec(con)?;
    }
    Ok(rooms)
}

/// The sessions ended on any node that are not yet expired; the expired ones are
/// forgotten on the way.
fn ended_sessions(con: &mut Connection) -> RedisResult<Vec<(SessionId, u64)>> {
    let all: Vec<(String, u64)> = redis::cmd("HGETALL").arg(ENDED).query(con)?;
    let now = crate::base::unix_now();
    let mut ended = Vec::new();
    for (id, expires) in all {
        let parsed = data_encoding::HEXLOWER
            .decode(id.as_bytes())
            .ok()
            .and_then(|bytes| SessionId::try_from(bytes.as_slice()).ok());
        match parsed {
            Some(session) if expires > now => ended.push((session, expires)),
            _ => redis::cmd("HDEL").arg(ENDED).arg(&id).exec(con)?,
        }
    }
    Ok(ended)
}

/// Everyone Redis lists as in the cluster.
fn present(con: &mut Connection) -> RedisResult<Vec<Present>> {
    let all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("switchboard:members")
        .query(con)?;
    Ok(all
        .into_iter()
        .filter_map(|(key, record)| {
            let record: Record = serde_json::from_str(&record).ok()?;
            Some(Present {
                key,
                name: record.name,
                room: record.room,
            })
        })
        .collect())
}

/// A member's record in `switchboard:members`.
#[derive(Deserialize)]
struct Record {
    name: String,
    room: String,
}

/// The answer to a run of appends: each message with its id, or, when Redis did
/// not take them (`None`), the failure for each.
fn committed(messages: Vec<NewMessage>, ids: Option<Vec<u64>>) -> Answer {
    let Some(ids) = ids else {
        let failed = messages
            .into_iter()
            .map(|m| (m.author, Err(StoreError::Failed)));
        return Answer::Committed(failed.collect());
    };
    let lines = messages.into_iter().zip(ids).map(|(msg, id)| {
        let line = Arc::new(ChatLine {
            id,
            room: msg.room,
            from: msg.from,
            text: msg.text,
            ts: msg.ts,
            via: msg.via,
        });
        (msg.author, Ok(line))
    });
    Answer::Committed(lines.collect())
}

fn loaded(
    member: ConnId,
    seq: u64,
    room: &str,
    history: Vec<Arc<ChatLine>>,
    last_id: u64,
    resumed: bool,
) -> Answer {
    Answer::Loaded {
        member,
        seq,
        room: room.to_owned(),
        history,
        last_id,
        resumed,
        failed: false,
    }
}

/// The stream of `room`.
fn stream(room: &str) -> String {
    format!("switchboard:room:{room}")
}

/// Up to `count` messages of `room` by `XRANGE` or `XREVRANGE` from `start` to `end`.
fn range(
    con: &mut Connection,
    command: &str,
    room: &str,
    start: &str,
    end: &str,
    count: usize,
) -> RedisResult<Vec<Arc<ChatLine>>> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd(command)
        .arg(stream(room))
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query(con)?;
    Ok(entries
        .into_iter()
        .filter_map(|(id, fields)| entry(room, &id, &fields))
        .map(Arc::new)
        .collect())
}

/// A stream entry `{id}-0` with fields `f`, `t`, `ts`, `v` as a message.
fn entry(room: &str, id: &str, fields: &[String]) -> Option<ChatLine> {
    let id = id.split_once('-')?.0.parse().ok()?;
    let mut line = ChatLine {
        id,
        room: room.to_owned(),
        from: String::new(),
        text: String::new(),
        ts: 0,
        via: None,
    };
    for pair in fields.chunks_exact(2) {
        let [field, value] = pair else { continue };
        match field.as_str() {
            "f" => line.from.clone_from(value),
            "t" => line.text.clone_from(value),
            "ts" => line.ts = value.parse().unwrap_or(0),
            "v" if value == "api" => line.via = Some("api"),
            _ => {}
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_a_url() {
        assert_eq!(
            masked("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(masked("redis://user:pw@host/1"), "redis://user:***@host/1");
        assert_eq!(masked("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn bus_events_parse_as_the_scripts_publish_them() {
        let msg: Bus = serde_json::from_str(
            r#"{"k":"msg","room":"lobby","id":7,"from":"ann","text":"hi\/there","ts":1764640000123,"via":""}"#,
        )
        .unwrap();
        let Some(Change::Msg(line)) = msg.into_change() else {
            panic!("a message");
        };
        assert_eq!(
            (line.id, line.text.as_str(), line.via),
            (7, "hi/there", None)
        );
        let join: Bus = serde_json::from_str(
            r#"{"k":"join","m":"ab.3","name":"bo","room":"r","last":0,"ts":1}"#,
        )
        .unwrap();
        assert!(matches!(join, Bus::Join { restore: false, .. }));
    }

    #[test]
    fn stream_entries_become_messages() {
        let fields: Vec<String> = ["f", "ann", "t", "hello", "ts", "5", "v", "api"]
            .map(String::from)
            .to_vec();
        let line = entry("r", "12-0", &fields).unwrap();
        assert_eq!(
            (line.id, line.from.as_str(), line.via),
            (12, "ann", Some("api"))
        );
        assert!(entry("r", "junk", &fields).is_none());
    }
}
