//! The cluster bridge: several nodes on one Redis are one chat.
//!
//! Redis is the store and the bus. Each room's messages are a Redis Stream, with ids
//! from Redis; every change to shared state (a message, a join, a name) is one Lua
//! script that also publishes the change on one channel, `switchboard:bus`, so every
//! node sees every change in the one order Redis made them in. Relay traffic goes on
//! `switchboard:relay`, as bytes.
//!
//! It is one of the two backends behind the hub's one seam ([`crate::store`]): the
//! hub never waits on the network, it hands [`Request`]s to the bridge thread over a
//! bounded channel with `try_send`, and hears back on one channel of its own:
//! answers from the bridge, changes from the bus in Redis's order. Both Redis
//! connections belong to the bridge: the commands are sent from its thread, the
//! subscription is read by a thread of its own ([`listen()`]), because a blocking read
//! of a socket cannot also wait on a channel.
//!
//! In rooms of their own: the bridge's loop ([`run`]: batches, heartbeat,
//! reconnection), Redis as the store ([`storage`]: streams, ids, pages) and who is
//! where ([`presence`]: joins, names, leaves, the resync after a gap); the Lua
//! scripts in [`scripts`], the subscriber in [`listen`](mod@listen).
//!
//! Each node beats every second in `switchboard:nodes`; a node silent for
//! [`NODE_TTL`] has its members leave with reason `node_lost`, by whichever node
//! notices first. A node that loses Redis refuses what needs it (`unavailable`),
//! reconnects with backoff, and then catches up: the messages it missed, who came and
//! went, and its own members, in case it was taken for dead meanwhile.

mod files;
mod listen;
mod presence;
mod run;
mod scripts;
mod storage;

use storage::{ended_sessions, rooms, rules};

pub(crate) use files::Copier;
pub(crate) use listen::{Subscription, listen};

use crate::base::SessionId;
use crate::chat::{ChatLine, FileRef};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{Change, NewMessage, Request};
use redis::{Connection, RedisResult, Script};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Requests taken from the queue at once: a run of appends among them goes to Redis
/// in one round trip.
const MAX_BATCH: usize = 256;
/// The channel every change to shared chat state is published on.
const BUS: &str = "switchboard:bus";
/// Every room with messages, in a sorted set (all scores 0), for paging by name.
const ROOMS: &str = "switchboard:rooms";
/// Sessions ended by `POST /logout` (hex id → expiry, Unix seconds).
const ENDED: &str = "switchboard:ended_sessions";
/// The moderation rules: `{room} {key}` → `{"room","key","value","until"}`, taken out
/// once run out (when a node starts).
const MODERATION: &str = "switchboard:moderation";
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
        /// The file it shares ([`FileRef::to_stored`]), or empty.
        #[serde(default)]
        file: String,
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
    /// A message was deleted; `file` is the id of the file it shared, or empty.
    Deleted {
        room: String,
        id: u64,
        by: String,
        #[serde(default)]
        file: String,
    },
    /// A moderator acted on a room ([`crate::store::Moderated`]).
    Moderated {
        room: String,
        by: String,
        action: crate::store::Action,
        #[serde(default)]
        rules: Vec<crate::store::Rule>,
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
                file,
            } => Change::Msg(Arc::new(ChatLine {
                id,
                room,
                from,
                text,
                ts,
                via: (via == "api").then_some("api"),
                file: FileRef::from_stored(&file),
                deleted: false,
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
            Bus::Deleted { room, id, by, file } => Change::Deleted(crate::store::Deleted {
                room,
                id,
                by,
                file: (!file.is_empty()).then_some(file),
            }),
            Bus::Moderated {
                room,
                by,
                action,
                rules,
            } => Change::Moderated(crate::store::Moderated {
                room,
                by,
                action,
                rules,
            }),
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
    /// The moderation rules in force when the node started.
    rules: Vec<crate::store::Rule>,
    /// The rooms with messages when the node started.
    rooms: Vec<String>,
    retain: usize,
    history: usize,
    metrics: Arc<Metrics>,
    /// Set when the bridge ends, so that the subscriber ends too.
    stop: Arc<AtomicBool>,
    /// Set by the subscriber while its subscription is up ([`listen()`]).
    subscribed: Arc<AtomicBool>,
    /// The wait before the next reconnection attempt.
    backoff: Duration,
    next_beat: Instant,
    /// Since when the current connection is up: a node does not reap others until it
    /// has been up for a [`NODE_TTL`], so that after Redis restarts, nodes that have
    /// not reconnected yet are not taken for dead.
    up_since: Instant,
    /// A resync that waits for Redis to be back.
    resync: Option<Request>,
    /// Batches of appends sent when Redis stopped answering: stored or not, nobody
    /// knows yet; their senders wait until Redis says (see `append_all`).
    in_doubt: Vec<(String, Vec<NewMessage>)>,
    /// Batches sent so far, to give each its token.
    batches: u64,
    scripts: Scripts,
}

struct Scripts {
    append: Script,
    delete: Script,
    clear: Script,
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
        let rules = rules(&mut con).map_err(|e| fail(format!("cannot be read ({e})")))?;
        let scripts = Scripts {
            append: Script::new(&format!("{}{}", files::DROP_FILE, scripts::APPEND)),
            delete: Script::new(&format!("{}{}", files::DROP_FILE, scripts::DELETE)),
            clear: Script::new(&format!("{}{}", files::DROP_FILE, scripts::CLEAR)),
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
            rules,
            rooms,
            retain: retain.max(1),
            history,
            metrics,
            stop: Arc::new(AtomicBool::new(false)),
            subscribed: Arc::new(AtomicBool::new(false)),
            backoff: MIN_BACKOFF,
            next_beat: Instant::now() + BEAT,
            up_since: Instant::now(),
            resync: None,
            in_doubt: Vec::new(),
            batches: 0,
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
    pub(crate) fn rules(&self) -> Vec<crate::store::Rule> {
        self.rules.clone()
    }

    /// Sessions ended by `POST /logout` on any node, not yet expired.
    pub(crate) fn ended_sessions(&self) -> Vec<(SessionId, u64)> {
        self.ended_sessions.clone()
    }

    /// A client of the same Redis, for the subscriber.
    pub(crate) fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// What the subscriber shares with the bridge ([`listen()`]), and the node's
    /// files, whose copies of deleted messages' files it removes.
    pub(crate) fn subscription(&self, files: &Arc<crate::files::Files>) -> Subscription {
        Subscription {
            stop: Arc::clone(&self.stop),
            subscribed: Arc::clone(&self.subscribed),
            metrics: Arc::clone(&self.metrics),
            files: Arc::downgrade(files),
        }
    }

    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }
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
        let deleted: Bus =
            serde_json::from_str(r#"{"k":"deleted","room":"r","id":3,"by":"ann","file":""}"#)
                .unwrap();
        let Some(Change::Deleted(deleted)) = deleted.into_change() else {
            panic!("a deletion");
        };
        assert_eq!((deleted.id, deleted.file), (3, None));
    }
}
