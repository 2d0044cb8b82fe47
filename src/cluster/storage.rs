//! Redis as the store: each room's messages in a stream (entry ids `{id}-0`), the
//! newest ids in a hash, the rooms in a sorted set, ended sessions in a hash. What
//! SQLite's queries are to a single node, these commands are to a cluster.

use super::{BUS, Bridge, ENDED, MODERATION, ROOMS};
use crate::base::{ConnId, SessionId};
use crate::chat::{ChatLine, FileRef, Since};
use crate::store::{
    self, Answer, ApiAnswer, Author, Event, MAX_PAGE, MAX_RESUME, NewMessage, Request, StoreError,
};
use crossbeam_channel::Sender;
use redis::{Connection, RedisResult};
use std::sync::Arc;
use std::time::Duration;

impl Bridge {
    /// Stores and publishes `messages` in one round trip, and answers with their ids,
    /// or with the failure for each when Redis did not take them. When the outcome is
    /// unknown (the batch went out and no reply came), each sender is told just that
    /// (`unconfirmed`), and the batch is sent again, with the same token, as soon as
    /// Redis answers: it is stored once, whether it was before or only then, and the
    /// room gets it from the bus. So a message refused is never delivered later, and
    /// one not confirmed is never stored twice.
    pub(super) fn append_all(&mut self, messages: Vec<NewMessage>, events: &Sender<Event>) {
        let Some(mut con) = self.con.take() else {
            let _ = events.send(Event::Answer(not_stored(messages)));
            return;
        };
        // What is in doubt goes first, so that a room's messages keep their order;
        // then a resync that waited for Redis.
        let ready =
            self.settle_in_doubt(&mut con, events)
                .and_then(|()| match self.resync.take() {
                    Some(resync) => self.resync(&mut con, &resync, events).inspect_err(|_| {
                        self.resync = Some(resync);
                    }),
                    None => Ok(()),
                });
        if let Err(e) = ready {
            self.lost(&e);
            let _ = events.send(Event::Answer(not_stored(messages)));
            return;
        }
        self.batches += 1;
        let token = format!("{}:{}", self.node, self.batches);
        match self.append_batch(&mut con, &token, &messages) {
            Ok(ids) => {
                let answer = outcomes(&mut con, messages, ids);
                self.con = Some(con);
                let _ = events.send(Event::Answer(answer));
            }
            Err(e) if outcome_unknown(&e) => {
                log::warn!(
                    "cluster: no answer from Redis for {} messages ({e}); their senders \
                     wait until it says whether it stored them",
                    messages.len()
                );
                self.lost(&e);
                let unconfirmed = messages
                    .iter()
                    .map(|m| (m.author.clone(), Err(StoreError::Unconfirmed)))
                    .collect();
                let _ = events.send(Event::Answer(Answer::Committed(unconfirmed)));
                self.in_doubt.push((token, messages));
            }
            Err(e) => {
                self.lost(&e);
                let _ = events.send(Event::Answer(not_stored(messages)));
            }
        }
    }

    /// Sends each batch whose outcome is unknown again, with its token, oldest first.
    /// Its senders were told already (chat members see it in the room); what became
    /// of it is told now, for the keys (`cid`, `Idempotency-Key`).
    pub(super) fn settle_in_doubt(
        &mut self,
        con: &mut Connection,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        while let Some((token, messages)) = self.in_doubt.first() {
            let ids = self.append_batch(con, token, messages)?;
            let (_, messages) = self.in_doubt.remove(0);
            log::info!(
                "cluster: Redis has the {} messages that were not confirmed",
                messages.len()
            );
            let answer = outcomes(con, messages, ids);
            let _ = events.send(Event::Answer(resolved(answer)));
        }
        Ok(())
    }

    /// Redis lost its data: what was not confirmed is not stored, and never will be.
    pub(super) fn drop_in_doubt(&mut self, events: &Sender<Event>) {
        for (_, messages) in self.in_doubt.drain(..) {
            let _ = events.send(Event::Answer(resolved(not_stored(messages))));
        }
    }

    /// One call of the append script for `messages`, as batch `token`.
    fn append_batch(
        &self,
        con: &mut Connection,
        token: &str,
        messages: &[NewMessage],
    ) -> RedisResult<Vec<i64>> {
        // One script for the batch: one reply, so one read's time-out bounds a stall.
        let mut append = self.scripts.append.prepare_invoke();
        append.arg(self.retain).arg(token);
        for msg in messages {
            append
                .key(stream(&msg.room))
                .arg(&msg.room)
                .arg(&msg.from)
                .arg(&msg.text)
                .arg(msg.ts)
                .arg(msg.via.unwrap_or(""))
                .arg(
                    msg.file
                        .as_ref()
                        .map(FileRef::to_stored)
                        .unwrap_or_default(),
                );
            match key_of(msg) {
                Some((key, kept)) => append.arg(key).arg(kept.as_secs()),
                None => append.arg("").arg(0),
            };
        }
        // Loads the script first if Redis forgot it (a restart, SCRIPT FLUSH).
        append.invoke(con)
    }

    pub(super) fn store(
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
            Request::Moderate(moderation) => {
                let (mut action, mut rules) = (moderation.action.clone(), moderation.rules.clone());
                if let store::Action::Clear { through, files } = &mut action {
                    let dropped: Vec<String> = self
                        .scripts
                        .clear
                        .key(stream(&moderation.room))
                        .key(tombstones(&moderation.room))
                        .arg(&moderation.room)
                        .invoke(con)?;
                    let mut dropped = dropped.into_iter();
                    *through = dropped.next().and_then(|id| id.parse().ok()).unwrap_or(0);
                    *files = dropped.collect();
                    // Redis keeps the id counter: no rule is needed for ids to go on.
                    rules = Vec::new();
                }
                // The rules and the news together: a node that hears of a kick finds
                // it kept, and one that starts later reads it.
                let moderated = store::Moderated {
                    room: moderation.room.clone(),
                    by: moderation.by.clone(),
                    action,
                    rules,
                };
                let mut pipe = redis::pipe();
                pipe.atomic();
                for rule in &moderated.rules {
                    let field = format!("{} {}", rule.room, rule.key);
                    if rule.until == 0 {
                        pipe.cmd("HDEL").arg(MODERATION).arg(field).ignore();
                    } else {
                        let value = serde_json::to_string(rule).unwrap_or_default();
                        pipe.cmd("HSET")
                            .arg(MODERATION)
                            .arg(field)
                            .arg(value)
                            .ignore();
                    }
                }
                let news = serde_json::json!({
                    "k": "moderated",
                    "room": moderated.room,
                    "by": moderated.by,
                    "action": moderated.action,
                    "rules": moderated.rules,
                });
                pipe.cmd("PUBLISH").arg(BUS).arg(news.to_string()).ignore();
                pipe.exec(con)?;
                // The room hears it from the bus, before this answer.
                let _ = events.send(Event::Answer(Answer::Moderation {
                    asker: moderation.asker.clone(),
                    outcome: Ok(moderated),
                }));
            }
            // `serve` hands appends to `append_all`.
            Request::Append(_) => {}
            Request::Delete(deletion) => {
                let (done, file): (i64, String) = self
                    .scripts
                    .delete
                    .key(stream(&deletion.room))
                    .key(tombstones(&deletion.room))
                    .arg(&deletion.room)
                    .arg(deletion.id)
                    .arg(&deletion.by)
                    .arg(u8::from(deletion.by_admin))
                    .invoke(con)?;
                // The room hears it from the bus, before this answer: Redis published
                // it before it replied.
                let outcome = match done {
                    1 => Ok(store::Deleted {
                        room: deletion.room.clone(),
                        id: deletion.id,
                        by: deletion.by.clone(),
                        file: (!file.is_empty()).then_some(file),
                    }),
                    0 => Err(store::Refusal::NotFound),
                    _ => Err(store::Refusal::Forbidden),
                };
                let _ = events.send(Event::Answer(Answer::Deletion {
                    asker: deletion.asker.clone(),
                    outcome,
                }));
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

    /// The history for a welcome, up to the room's id `last` at the join: what came
    /// after `since` when the client can resume, else the newest `history`.
    pub(super) fn history(
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
}

/// Every room with messages; the sorted set of them is made from the ids when a
/// database written by an older switchboard lacks it.
pub(super) fn rooms(con: &mut Connection) -> RedisResult<Vec<String>> {
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

/// The moderation rules in force; those run out are taken out on the way.
pub(super) fn rules(con: &mut Connection) -> RedisResult<Vec<store::Rule>> {
    let all: Vec<(String, String)> = redis::cmd("HGETALL").arg(MODERATION).query(con)?;
    let now = crate::base::now_ms();
    let mut rules = Vec::new();
    for (field, value) in all {
        match serde_json::from_str::<store::Rule>(&value) {
            Ok(rule) if rule.until > now => rules.push(rule),
            _ => redis::cmd("HDEL").arg(MODERATION).arg(&field).exec(con)?,
        }
    }
    Ok(rules)
}

/// The sessions ended on any node that are not yet expired; the expired ones are
/// forgotten on the way.
pub(super) fn ended_sessions(con: &mut Connection) -> RedisResult<Vec<(SessionId, u64)>> {
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

/// How long Redis keeps a chat message's `cid`: long enough for any reconnection, short
/// enough that one key per message (the page gives each one) cannot fill Redis.
const CID_KEPT: Duration = Duration::from_secs(3600);
/// How long Redis keeps an API post's `Idempotency-Key`, as the node does.
const API_KEY_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The Redis key that stores a message once per its key (`cid`, `Idempotency-Key`),
/// and how long it is kept; `None` for a message without one.
fn key_of(msg: &NewMessage) -> Option<(String, Duration)> {
    let (key, kept) = match &msg.author {
        Author::Member { key, .. } => (key.as_ref()?, CID_KEPT),
        Author::Api { key, .. } => (key.as_ref()?, API_KEY_KEPT),
    };
    // A room's name holds no `:`, so room and key cannot run into each other.
    Some((format!("switchboard:key:{}:{}", key.0, key.1), kept))
}

/// What the append script said of each message: stored with this id, or stored before
/// under its key (the id negated), the message as it was stored then.
fn outcomes(con: &mut Connection, messages: Vec<NewMessage>, ids: Vec<i64>) -> Answer {
    let lines = messages.into_iter().zip(ids).map(|(msg, id)| {
        let fresh = id >= 0;
        let id = id.unsigned_abs();
        let line = Arc::new(ChatLine {
            id,
            room: msg.room,
            from: msg.from,
            text: msg.text,
            ts: msg.ts,
            via: msg.via,
            file: msg.file,
            deleted: false,
        });
        if fresh {
            return (msg.author, Ok(line));
        }
        // As it was stored, if it is still kept; else as it was sent again.
        let at = format!("{id}-0");
        let before = range(con, "XRANGE", &line.room, &at, &at, 1)
            .ok()
            .and_then(|mut found| found.pop())
            .unwrap_or(line);
        (msg.author, Err(StoreError::AlreadyStored(before)))
    });
    Answer::Committed(lines.collect())
}

/// What became of messages answered `Unconfirmed` before: their senders were
/// answered already, their keys learn it now.
fn resolved(answer: Answer) -> Answer {
    match answer {
        Answer::Committed(lines) => Answer::Resolved(lines),
        other => other,
    }
}

/// Whether Redis may have run what was sent: the reply did not come (a time-out, a
/// connection dropped), as opposed to an answer that says it failed.
fn outcome_unknown(e: &redis::RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped()
}

/// The answer to a run of appends Redis did not take: the failure for each.
pub(super) fn not_stored(messages: Vec<NewMessage>) -> Answer {
    let failed = messages
        .into_iter()
        .map(|m| (m.author, Err(StoreError::Failed)));
    Answer::Committed(failed.collect())
}

pub(super) fn loaded(
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
pub(super) fn stream(room: &str) -> String {
    format!("switchboard:room:{room}")
}

/// The hash of `room`'s tombstones: id of a deleted message → who deleted it.
pub(super) fn tombstones(room: &str) -> String {
    format!("switchboard:deleted:{room}")
}

/// Up to `count` messages of `room` by `XRANGE` or `XREVRANGE` from `start` to `end`,
/// the deleted ones as tombstones.
pub(super) fn range(
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
    let mut lines: Vec<ChatLine> = entries
        .into_iter()
        .filter_map(|(id, fields)| entry(room, &id, &fields))
        .collect();
    mark_deleted(con, room, &mut lines)?;
    mark_expired(con, &mut lines)?;
    Ok(lines.into_iter().map(Arc::new).collect())
}

/// Makes the deleted ones of `lines` tombstones: a stream entry cannot be edited, so
/// every read of one applies the room's tombstones (one round trip per read).
fn mark_deleted(con: &mut Connection, room: &str, lines: &mut [ChatLine]) -> RedisResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let ids: Vec<u64> = lines.iter().map(|line| line.id).collect();
    let deleted: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(tombstones(room))
        .arg(&ids)
        .query(con)?;
    for (line, deleted) in lines.iter_mut().zip(deleted) {
        if deleted.is_some() {
            *line = ChatLine::tombstone(line.id, line.room.clone(), line.ts);
        }
    }
    Ok(())
}

/// Marks the files Redis no longer has (past the total, the oldest go) as expired: the
/// message stays and says so, as on a single node.
fn mark_expired(con: &mut Connection, lines: &mut [ChatLine]) -> RedisResult<()> {
    let mut files: Vec<&mut FileRef> = lines
        .iter_mut()
        .filter_map(|line| line.file.as_mut())
        .filter(|file| !file.expired)
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let mut exists = redis::pipe();
    for file in &files {
        exists.cmd("EXISTS").arg(super::files::file_key(&file.id));
    }
    let found: Vec<bool> = exists.query(con)?;
    for (file, found) in files.iter_mut().zip(found) {
        file.expired = !found;
    }
    Ok(())
}

/// A stream entry `{id}-0` with fields `f`, `t`, `ts`, `v` (and `file`) as a message.
pub(super) fn entry(room: &str, id: &str, fields: &[String]) -> Option<ChatLine> {
    let id = id.split_once('-')?.0.parse().ok()?;
    let mut line = ChatLine {
        id,
        room: room.to_owned(),
        from: String::new(),
        text: String::new(),
        ts: 0,
        via: None,
        file: None,
        deleted: false,
    };
    for pair in fields.chunks_exact(2) {
        let [field, value] = pair else { continue };
        match field.as_str() {
            "f" => line.from.clone_from(value),
            "t" => line.text.clone_from(value),
            "ts" => line.ts = value.parse().unwrap_or(0),
            "v" if value == "api" => line.via = Some("api"),
            "file" => line.file = FileRef::from_stored(value),
            _ => {}
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

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
