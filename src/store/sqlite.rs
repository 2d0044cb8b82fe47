//! A single node's store: every chat room's messages, kept in SQLite and owned by
//! one thread, the store writer. The writer takes whatever requests are queued as
//! one batch and commits every message in it in one transaction (group commit), then
//! answers in the order it was asked. Because a message is delivered to its room only once its answer says
//! it was committed, a message anyone received survives `kill -9`.
//!
//! Ids are assigned here, per room, in the order the hub sent the messages, which is
//! the order it delivers them in. A batch that fails to commit gives its ids back:
//! nobody ever saw them.
//!
//! It is also the single node's backend for who is where (see [`super::presence`]): a
//! cluster of one, which carries out a join, a move, a new name or a leave as it
//! comes, between the messages before and after it, and tells the hub the change.
//!
//! Without a data directory the same code runs on an in-memory SQLite database, so a
//! test or `--no-persist` behaves exactly like the durable server, minus the file.
//!
//! The file is opened with an exclusive lock (WAL journal, `locking_mode=EXCLUSIVE`),
//! so a second server on the same directory stops at start instead of interleaving
//! ids. The schema's version is SQLite's `user_version`; older files are migrated.

use super::presence::Presence;
use super::{
    Answer, ApiAnswer, Change, Event, MAX_PAGE, MAX_RESUME, NewMessage, QUEUE, Request, Since,
    StoreError, member_key, page_of_rooms,
};
use crate::base::{ConnId, SessionId, key_bytes, new_epoch, now_ms, random_hex32};
use crate::chat::{ChatLine, FileRef, MAX_ID};
use crate::error::Error;
use crate::files::Files;
use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema this build writes. 1: messages; 2: messages record `via` (who posted
/// through what: `api` for the HTTP API, nothing for a chat client); … 7: a message
/// may be deleted, a tombstone (see [`migrate`]); 8: moderation rules (kicks).
const SCHEMA_VERSION: i64 = 8;

/// The store file's name in the data directory.
const FILE_NAME: &str = "chat.sqlite3";

/// Messages deleted per room per batch when enforcing retention, so that a big
/// backlog (a lowered `--retain`) is worked off without stalling commits.
const RETENTION_CHUNK: u64 = 1000;
/// Files expired at most after one batch: the rest wait for the next.
const MAX_EXPIRED_AT_ONCE: usize = 1000;
/// How long a message's key (its `cid` or `Idempotency-Key`) keeps a retry from being
/// stored again: as long as the hub keeps it, and across restarts.
const KEY_KEPT: Duration = Duration::from_secs(24 * 3600);

/// The single node's name in member keys ([`member_key`]).
const NODE: &str = "local";

/// How long a commit waits for a lock before it fails. The file is ours alone, so
/// this only matters if the disk stalls.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the messages live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// An in-memory database, gone with the process.
    Memory,
    /// `chat.sqlite3` in this directory (created if missing).
    Dir(PathBuf),
}

/// The store's settings.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    pub location: Location,
    /// Newest messages kept per room.
    pub retain: usize,
    /// Messages in a plain `welcome`.
    pub history: usize,
    /// The shared files: a message's file goes when the message does.
    pub files: Arc<Files>,
}

/// An open store, before its thread runs.
pub(crate) struct Store {
    db: Connection,
    config: StoreConfig,
    epoch: String,
    session_key: [u8; 32],
    /// Sessions ended by `POST /logout` whose cookies have not expired yet.
    ended_sessions: Vec<(SessionId, u64)>,
    /// The moderation rules in force when the store was opened.
    rules: Vec<super::Rule>,
    /// Each room's newest id, committed.
    /// Sorted, so that a page of `GET /api/rooms` is a range.
    last_ids: std::collections::BTreeMap<String, u64>,
    path: Option<PathBuf>,
    /// Who is where, under which name.
    presence: Presence,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating, migrating) the store, or says what is wrong with its file.
    pub(crate) fn open(config: StoreConfig) -> Result<Store, Error> {
        let (db, path) = match &config.location {
            Location::Memory => (
                Connection::open_in_memory().map_err(|e| store_error(None, "cannot open", e))?,
                None,
            ),
            Location::Dir(dir) => {
                private_dir(dir).map_err(|e| Error::Store {
                    path: dir.clone(),
                    problem: "cannot create the data directory".into(),
                    source: Some(Box::new(e)),
                })?;
                let path = dir.join(FILE_NAME);
                private_files(&path).map_err(|e| Error::Store {
                    path: path.clone(),
                    problem: "cannot make it private (0600)".into(),
                    source: Some(Box::new(e)),
                })?;
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let db = Connection::open_with_flags(&path, flags)
                    .map_err(|e| store_error(Some(&path), "cannot open it", e))?;
                (db, Some(path))
            }
        };
        let at = path.as_deref();
        // Refused at once, not after rusqlite's default 5 s, when another server
        // holds the file.
        db.busy_timeout(Duration::ZERO)
            .map_err(|e| store_error(at, "cannot set it up", e))?;
        if path.is_some() {
            // Exclusive: the lock is taken by the first write below and held until the
            // process ends, so a second server on the same file is refused, not
            // interleaved. WAL: a commit appends, which is what group commit wants.
            // FULL: each commit reaches the disk before the hub hears of it, so a
            // power cut loses no more than a crash does; group commit pays it once
            // per batch.
            let text = |row: &rusqlite::Row<'_>| row.get::<_, String>(0);
            db.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", text)
                .and_then(|_| db.pragma_update_and_check(None, "journal_mode", "WAL", text))
                .and_then(|_| db.pragma_update(None, "synchronous", "FULL"))
                .map_err(|e| store_error(at, "is not a switchboard store (SQLite)", e))?;
        }
        // A deleted message's text is overwritten, not only unlinked: deleted means
        // gone from the file's bytes too. FAST: only where it costs no extra I/O,
        // which is where an erased row was (its page is written anyway).
        db.pragma_update(None, "secure_delete", "FAST")
            .map_err(|e| store_error(at, "cannot set it up", e))?;
        let version: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| store_error(at, "is not a switchboard store (SQLite)", e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Store {
                path: path.clone().unwrap_or_default(),
                problem: format!(
                    "was written by a newer switchboard (schema {version}, this one knows {SCHEMA_VERSION})"
                ),
                source: None,
            });
        }
        migrate(&db, version).map_err(|e| store_error(at, "cannot be set up", e))?;
        db.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store_error(at, "cannot set it up", e))?;
        let epoch =
            meta(&db, "epoch", new_epoch).map_err(|e| store_error(at, "cannot be read", e))?;
        // Signs session cookies: kept with the history, so that a restart
        // on the same data directory keeps everyone signed in.
        let fresh = random_hex32()?;
        let session_key = meta(&db, "session_key", || fresh)
            .map_err(|e| store_error(at, "cannot be read", e))
            .and_then(|hex| {
                key_bytes(&hex).ok_or_else(|| Error::Store {
                    path: path.clone().unwrap_or_default(),
                    problem: "holds a broken session key".into(),
                    source: None,
                })
            })?;
        let last_ids = last_ids(&db).map_err(|e| store_error(at, "cannot be read", e))?;
        // A file no message names (a crash between the upload and its message, a
        // message refused) goes now.
        let named = file_ids(&db, "", MAX_ID).map_err(|e| store_error(at, "cannot be read", e))?;
        match config.files.keep_only(&named.into_iter().collect()) {
            Ok(0) => {}
            Ok(n) => log::info!("store: removed {n} files no message names"),
            Err(e) => log::warn!("store: cannot look for files no message names: {e}"),
        }
        let ended_sessions =
            ended_sessions(&db).map_err(|e| store_error(at, "cannot be read", e))?;
        let rules = rules(&db).map_err(|e| store_error(at, "cannot be read", e))?;
        // A cleared room has no messages left to say its newest id: its rule does, so
        // that ids go on from there.
        let mut last_ids = last_ids;
        for rule in rules.iter().filter(|rule| rule.key == CLEARED) {
            let through = rule.value.parse().unwrap_or(0);
            let last = last_ids.entry(rule.room.clone()).or_insert(0);
            *last = (*last).max(through);
        }
        Ok(Store {
            db,
            config,
            epoch,
            session_key,
            ended_sessions,
            rules,
            last_ids,
            path,
            presence: Presence::default(),
        })
    }

    /// This node's name in member keys.
    pub(crate) fn node(&self) -> &'static str {
        NODE
    }

    /// The rooms that have messages.
    pub(crate) fn room_names(&self) -> Vec<String> {
        self.last_ids.keys().cloned().collect()
    }

    /// The sessions ended by `POST /logout` that are not yet expired.
    pub(crate) fn ended_sessions(&self) -> Vec<(SessionId, u64)> {
        self.ended_sessions.clone()
    }

    /// The moderation rules in force (kicks that have not run out).
    pub(crate) fn rules(&self) -> Vec<super::Rule> {
        self.rules.clone()
    }

    /// Keeps the rules of a moderation (takes away those with `until` 0), in one
    /// transaction: a kick binds its name, session and address together or not at all.
    fn moderate(&mut self, rules: &[super::Rule]) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        for rule in rules {
            if rule.until == 0 {
                tx.execute(
                    "DELETE FROM moderation WHERE room = ?1 AND key = ?2",
                    params![rule.room, rule.key],
                )?;
            } else {
                keep_rule(&tx, rule)?;
            }
        }
        tx.commit()
    }

    /// Empties `room`'s history: its messages go (tombstones too), and so do their
    /// files, once the rows are gone; the room's newest id is kept as a rule, in the
    /// same transaction, so that ids go on from it after a restart. Returns that id
    /// and the files' ids.
    fn clear(&mut self, room: &str) -> rusqlite::Result<(u64, Vec<String>)> {
        let through = self.last_id(room);
        let files = file_ids(&self.db, room, MAX_ID)?;
        let rule = cleared_rule(room, through);
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM messages WHERE room = ?1", [room])?;
        keep_rule(&tx, &rule)?;
        tx.commit()?;
        // An upload's id is that upload's alone: no other message names it.
        for file in &files {
            self.config.files.remove(file);
        }
        Ok((through, files))
    }

    /// Remembers that session `id` was ended. A failure is logged: that session stays
    /// refused on this run, but a restart would forget it.
    fn end_session(&mut self, id: SessionId, expires: u64) {
        let ended = self.db.execute(
            "INSERT OR REPLACE INTO ended_sessions (id, expires) VALUES (?1, ?2)",
            rusqlite::params![id.as_slice(), i64::try_from(expires).unwrap_or(i64::MAX)],
        );
        if let Err(e) = ended {
            log::warn!("store: an ended session could not be written down: {e}");
        }
    }

    /// The key that signs session cookies: the same for as long as the store lives.
    pub(crate) fn session_key(&self) -> [u8; 32] {
        self.session_key
    }

    /// The string that names this store's history.
    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The file, when there is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Serves requests until the channel closes, then commits what is left and ends.
    pub(crate) fn run(mut self, requests: Receiver<Request>, events: Sender<Event>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            batch.extend(requests.try_iter().take(QUEUE));
            if !self.serve(batch, &events) {
                break;
            }
        }
    }

    /// Serves one batch in order: runs of appends are committed together, everything
    /// in between sees every append before it. `false` once nobody listens any more.
    pub(crate) fn serve(&mut self, batch: Vec<Request>, events: &Sender<Event>) -> bool {
        let mut appends = Vec::new();
        for request in batch {
            match request {
                Request::Append(msg) => appends.push(msg),
                other => {
                    if !appends.is_empty() && !self.commit(std::mem::take(&mut appends), events) {
                        return false;
                    }
                    if !self.carry_out(other, events) {
                        return false;
                    }
                }
            }
        }
        appends.is_empty() || self.commit(appends, events)
    }

    /// Carries out one request other than an append. `false` once nobody listens.
    fn carry_out(&mut self, request: Request, events: &Sender<Event>) -> bool {
        let mut news = Vec::new();
        match request {
            Request::Join {
                member,
                seq,
                names,
                room,
                since,
            } => {
                let name = self.presence.join(member, &names, &room);
                let last = self.last_id(&room);
                news.push(Event::Change(Change::Join {
                    m: member_key(NODE, member),
                    name,
                    room: room.clone(),
                    last,
                    ts: now_ms(),
                    restore: false,
                }));
                news.push(Event::Answer(self.load(member, seq, room, since)));
            }
            Request::Switch { member, seq, room } => {
                if self.presence.switch(member, &room) {
                    news.push(Event::Change(Change::Switch {
                        m: member_key(NODE, member),
                        room: room.clone(),
                        last: self.last_id(&room),
                        ts: now_ms(),
                    }));
                    news.push(Event::Answer(self.load(member, seq, room, None)));
                } else {
                    news.push(Event::JoinFailed { member });
                }
            }
            Request::Leave { member, reason } => {
                if self.presence.leave(member) {
                    news.push(Event::Change(Change::Leave {
                        m: member_key(NODE, member),
                        reason: reason.to_owned(),
                    }));
                }
            }
            Request::Rename { member, to, key } => {
                if self.presence.rename(member, &to, &key) {
                    news.push(Event::Change(Change::Rename {
                        m: member_key(NODE, member),
                        to,
                        ts: now_ms(),
                    }));
                } else {
                    news.push(Event::NameTaken { member, to });
                }
            }
            Request::Direct { to, json, .. } => {
                news.push(Event::Change(Change::Direct { to, json }))
            }
            // Nobody else to tell, and no gap to make up for: one node is all there is.
            Request::Relay { .. } | Request::Resync { .. } => {}
            Request::Page {
                member,
                room,
                before,
                limit,
            } => news.push(Event::Answer(self.page(member, room, before, limit))),
            // Answered straight to the waiting HTTP thread; one that gave up waiting
            // is no reason to stop.
            Request::Rooms {
                members,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.rooms(members, after, limit));
            }
            Request::Messages {
                room,
                before,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.messages(room, before, after, limit));
            }
            Request::EndSession { id, expires } => {
                self.end_session(id, expires);
                news.push(Event::Change(Change::EndSession { id, expires }));
            }
            Request::Append(msg) => return self.commit(vec![msg], events),
            Request::Delete(deletion) => {
                let asker = deletion.asker.clone();
                let outcome = self.delete(deletion);
                if let Ok(deleted) = &outcome {
                    news.push(Event::Change(Change::Deleted(deleted.clone())));
                }
                news.push(Event::Answer(Answer::Deletion { asker, outcome }));
            }
            Request::Moderate(moderation) => {
                let super::Moderation {
                    asker,
                    room,
                    by,
                    mut action,
                    mut rules,
                } = moderation;
                let kept = if let super::Action::Clear { through, files } = &mut action {
                    self.clear(&room).map(|(last, dropped)| {
                        (*through, *files) = (last, dropped);
                        rules = vec![cleared_rule(&room, last)];
                    })
                } else {
                    self.moderate(&rules)
                };
                let outcome = match kept {
                    Ok(()) => {
                        let moderated = super::Moderated {
                            room,
                            by,
                            action,
                            rules,
                        };
                        news.push(Event::Change(Change::Moderated(moderated.clone())));
                        Ok(moderated)
                    }
                    Err(e) => {
                        log::warn!("store: a moderation of room {room} was not kept: {e}");
                        Err(super::Refusal::Failed)
                    }
                };
                news.push(Event::Answer(Answer::Moderation { asker, outcome }));
            }
        }
        news.into_iter().all(|event| events.send(event).is_ok())
    }

    /// Deletes a message, if it is there and the asker's to delete: its row keeps
    /// the id and time, nothing else; its file goes from the disk once the row says
    /// so (unless another message names the same file).
    fn delete(&mut self, deletion: super::Deletion) -> Result<super::Deleted, super::Refusal> {
        use super::Refusal;
        let super::Deletion {
            room,
            id,
            by,
            by_admin,
            ..
        } = deletion;
        let found = self
            .db
            .query_row(
                "SELECT sender, via, file FROM messages WHERE room = ?1 AND id = ?2 \
                 AND deleted = 0",
                params![room, id.min(MAX_ID)],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional();
        let (from, via, file) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Refusal::NotFound),
            Err(e) => {
                log::warn!("store: cannot read message {id} of {room} to delete it: {e}");
                return Err(Refusal::Failed);
            }
        };
        if !super::may_delete(by_admin, &by, &from, via.as_deref()) {
            return Err(Refusal::Forbidden);
        }
        let erased = self.db.execute(
            "UPDATE messages SET sender = '', text = '', via = NULL, file = NULL, deleted = 1 \
             WHERE room = ?1 AND id = ?2",
            params![room, id],
        );
        if let Err(e) = erased {
            log::warn!("store: cannot delete message {id} of {room}: {e}");
            return Err(Refusal::Failed);
        }
        let file = file.as_deref().and_then(FileRef::from_stored).map(|f| f.id);
        if let Some(file) = &file {
            // A file id is one upload's; this only guards against a store that names it
            // twice.
            let named_elsewhere = self
                .db
                .query_row(
                    "SELECT 1 FROM messages WHERE file IS NOT NULL \
                     AND json_extract(file, '$.id') = ?1 LIMIT 1",
                    [file],
                    |_| Ok(()),
                )
                .optional();
            match named_elsewhere {
                Ok(None) => self.config.files.remove(file),
                Ok(Some(())) => {}
                Err(e) => log::warn!("store: the file of a deleted message is kept: {e}"),
            }
        }
        Ok(super::Deleted { room, id, by, file })
    }

    /// The newest id of `room`, committed.
    fn last_id(&self, room: &str) -> u64 {
        self.last_ids.get(room).copied().unwrap_or(0)
    }

    /// Stores `messages` in one transaction and answers with their ids.
    /// Each stored message goes to its room as a [`Change::Msg`], then its author hears
    /// what became of it.
    fn commit(&mut self, messages: Vec<NewMessage>, events: &Sender<Event>) -> bool {
        // A message whose key was stored before, even before a restart, is answered
        // with the message stored then, and not stored again.
        let mut again = Vec::new();
        let messages: Vec<NewMessage> = messages
            .into_iter()
            .filter_map(|m| match self.stored_under_key(&m) {
                Some(line) => {
                    // Its file came again too: the first one is the one kept.
                    if let Some(file) = &m.file {
                        self.config.files.remove(&file.id);
                    }
                    again.push((m.author, Err(StoreError::AlreadyStored(line))));
                    None
                }
                None => Some(m),
            })
            .collect();
        // Each room's id before this batch, to give the ids back if it fails.
        let mut before: Vec<(String, u64)> = Vec::new();
        let lines: Vec<Arc<ChatLine>> = messages
            .iter()
            .map(|m| {
                let id = self.last_ids.entry(m.room.clone()).or_insert(0);
                if !before.iter().any(|(room, _)| *room == m.room) {
                    before.push((m.room.clone(), *id));
                }
                *id += 1;
                Arc::new(ChatLine {
                    id: *id,
                    room: m.room.clone(),
                    from: m.from.clone(),
                    text: m.text.clone(),
                    ts: m.ts,
                    via: m.via,
                    file: m.file.clone(),
                    deleted: false,
                })
            })
            .collect();
        let keys: Vec<Option<&str>> = messages.iter().map(NewMessage::key).collect();
        let stored = self.insert(&lines, &keys);
        let answer: Vec<_> = match stored {
            Ok(()) => {
                self.enforce_retention(&lines);
                if lines.iter().any(|l| l.file.is_some()) {
                    self.expire_files();
                }
                messages
                    .iter()
                    .zip(lines)
                    .map(|(m, line)| (m.author.clone(), Ok(line)))
                    .collect()
            }
            Err(e) => {
                for (room, id) in before {
                    self.last_ids.insert(room, id);
                }
                log::warn!(
                    "store: {} messages not stored, their senders are told: {e}",
                    messages.len()
                );
                for file in messages.iter().filter_map(|m| m.file.as_ref()) {
                    self.config.files.remove(&file.id);
                }
                messages
                    .iter()
                    .map(|m| (m.author.clone(), Err(StoreError::Failed)))
                    .collect()
            }
        };
        let answer: Vec<_> = answer.into_iter().chain(again).collect();
        let delivered = answer.iter().all(|(_, line)| match line {
            Ok(line) => events
                .send(Event::Change(Change::Msg(Arc::clone(line))))
                .is_ok(),
            Err(_) => true,
        });
        delivered
            && events
                .send(Event::Answer(Answer::Committed(answer)))
                .is_ok()
    }

    /// While all files together take more than they may, the oldest go; their messages
    /// stay, and say so (`"expired":true`). A file being uploaded was checked against
    /// the limit alone, so this never reaches the files of the batch just stored.
    fn expire_files(&mut self) {
        let mut expired = 0;
        while self.config.files.over_quota() && expired < MAX_EXPIRED_AT_ONCE {
            let oldest = self
                .db
                .query_row(OLDEST_LIVE_FILE, [], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, u64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .optional();
            let Ok(Some((room, id, file))) = oldest else {
                return;
            };
            let Some(mut file) = FileRef::from_stored(&file) else {
                return;
            };
            file.expired = true;
            let marked = self.db.execute(
                "UPDATE messages SET file = ?1 WHERE room = ?2 AND id = ?3",
                params![file.to_stored(), room, id],
            );
            if let Err(e) = marked {
                log::warn!("store: cannot expire a file: {e}");
                return;
            }
            self.config.files.remove(&file.id);
            expired += 1;
        }
        if expired > 0 {
            log::info!(
                "store: the {expired} oldest files expired, to keep within --max-files-bytes"
            );
        }
    }

    /// The message stored under `msg`'s key (its `cid` or `Idempotency-Key`) in its
    /// room within [`KEY_KEPT`], if there is one and it is still kept.
    fn stored_under_key(&self, msg: &NewMessage) -> Option<Arc<ChatLine>> {
        let key = msg.key()?;
        let since = now_ms().saturating_sub(KEY_KEPT.as_millis() as u64);
        let found = self
            .db
            .prepare_cached(
                "SELECT id, sender, text, ts, via, file, deleted FROM messages \
                 WHERE room = ?1 AND key = ?2 AND ts >= ?3 LIMIT 1",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![msg.room, key, since], |row| line(&msg.room, row))
                    .optional()
            });
        match found {
            Ok(found) => found,
            Err(e) => {
                // The insert that follows will most likely fail and say so.
                log::warn!("store: cannot look up a message's key: {e}");
                None
            }
        }
    }

    fn insert(&mut self, lines: &[Arc<ChatLine>], keys: &[Option<&str>]) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (room, id, sender, text, ts, via, key, file) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (line, key) in lines.iter().zip(keys) {
                let file = line.file.as_ref().map(FileRef::to_stored);
                insert.execute(params![
                    line.room, line.id, line.from, line.text, line.ts, line.via, key, file
                ])?;
            }
        }
        tx.commit()
    }

    /// Deletes, a chunk at a time, what is older than the newest `retain` of each room
    /// the batch wrote to. A failure only delays it to the next batch.
    fn enforce_retention(&mut self, lines: &[Arc<ChatLine>]) {
        let retain = self.config.retain as u64;
        let mut rooms: Vec<&str> = lines.iter().map(|l| l.room.as_str()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        for room in rooms {
            let last = self.last_ids.get(room).copied().unwrap_or(0);
            let Some(cutoff) = last.checked_sub(retain) else {
                continue;
            };
            let oldest: Option<u64> = self
                .db
                .query_row(
                    "SELECT MIN(id) FROM messages WHERE room = ?1",
                    [room],
                    |row| row.get(0),
                )
                .unwrap_or(None);
            let Some(oldest) = oldest.filter(|&o| o <= cutoff) else {
                continue;
            };
            let upto = cutoff.min(oldest + RETENTION_CHUNK - 1);
            // Their files go with them, once the messages are gone for sure.
            let files = file_ids(&self.db, room, upto);
            let deleted = self.db.execute(
                "DELETE FROM messages WHERE room = ?1 AND id <= ?2",
                params![room, upto],
            );
            match (deleted, files) {
                (Ok(_), Ok(files)) => {
                    for file in files {
                        self.config.files.remove(&file);
                    }
                }
                (Ok(_), Err(e)) => log::warn!("store: files of {room} kept past retention: {e}"),
                (Err(e), _) => log::warn!("store: retention of {room} delayed: {e}"),
            }
        }
    }

    fn load(&self, member: ConnId, seq: u64, room: String, since: Option<Since>) -> Answer {
        let last_id = self.last_ids.get(&room).copied().unwrap_or(0);
        let result = (|| -> rusqlite::Result<(Vec<Arc<ChatLine>>, bool)> {
            if let Some(since) = since.filter(|s| s.epoch == self.epoch && s.id <= last_id) {
                let oldest: Option<u64> = self.db.query_row(
                    "SELECT MIN(id) FROM messages WHERE room = ?1",
                    [&room],
                    |row| row.get(0),
                )?;
                // Every message after `since` must still be here, and not too many.
                let kept = oldest.is_none_or(|o| o <= since.id + 1);
                if kept {
                    let missed = self.select(
                        "SELECT id, sender, text, ts, via, file, deleted FROM messages WHERE room = ?1 AND id > ?2 \
                         ORDER BY id LIMIT ?3",
                        &room,
                        since.id,
                        MAX_RESUME + 1,
                    )?;
                    if missed.len() <= MAX_RESUME {
                        return Ok((missed, true));
                    }
                }
            }
            let mut recent = self.select(
                "SELECT id, sender, text, ts, via, file, deleted FROM messages WHERE room = ?1 AND id <= ?2 \
                 ORDER BY id DESC LIMIT ?3",
                &room,
                u64::MAX >> 1,
                self.config.history,
            )?;
            recent.reverse();
            Ok((recent, false))
        })();
        let (history, resumed, failed) = match result {
            Ok((history, resumed)) => (history, resumed, false),
            Err(e) => {
                log::warn!("store: history of {room} unavailable: {e}");
                (Vec::new(), false, true)
            }
        };
        Answer::Loaded {
            member,
            seq,
            room,
            history,
            last_id,
            resumed,
            failed,
        }
    }

    fn page(&self, member: ConnId, room: String, before: Option<u64>, limit: usize) -> Answer {
        let before = before.unwrap_or(u64::MAX >> 1);
        let limit = limit.clamp(1, MAX_PAGE);
        let result = self.select(
            "SELECT id, sender, text, ts, via, file, deleted FROM messages WHERE room = ?1 AND id < ?2 \
             ORDER BY id DESC LIMIT ?3",
            &room,
            before,
            limit + 1,
        );
        let (mut messages, failed) = match result {
            Ok(messages) => (messages, false),
            Err(e) => {
                log::warn!("store: older messages of {room} unavailable: {e}");
                (Vec::new(), true)
            }
        };
        let more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Answer::Page {
            member,
            room,
            messages,
            more,
            failed,
        }
    }

    /// A page of rooms with people in them or messages kept, with their newest id:
    /// a range of the sorted ids, so its cost is the page's, not the store's.
    fn rooms(
        &self,
        members: Vec<(String, usize)>,
        after: Option<String>,
        limit: usize,
    ) -> ApiAnswer {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let stored = self
            .last_ids
            .range((from, Bound::Unbounded))
            .take(limit + 1)
            .map(|(name, &id)| (name.clone(), id))
            .collect();
        let (rooms, more) = page_of_rooms(stored, members, limit);
        ApiAnswer::Rooms { rooms, more }
    }

    /// Messages of `room` between `after` and `before` (both exclusive), oldest first:
    /// the oldest ones after `after` when it is given, else the newest before `before`.
    fn messages(
        &self,
        room: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> ApiAnswer {
        let limit = limit.clamp(1, MAX_PAGE);
        let before = before.unwrap_or(u64::MAX >> 1);
        let result = match after {
            Some(after) => self
                .select_between(&room, after, before, limit + 1, true)
                .map(|mut m| {
                    let more = m.len() > limit;
                    m.truncate(limit);
                    (m, more)
                }),
            None => self
                .select_between(&room, 0, before, limit + 1, false)
                .map(|mut m| {
                    let more = m.len() > limit;
                    m.truncate(limit);
                    m.reverse();
                    (m, more)
                }),
        };
        match result {
            Ok((messages, more)) => ApiAnswer::Messages {
                room,
                messages,
                more,
            },
            Err(e) => {
                log::warn!("store: messages of {room} unavailable: {e}");
                ApiAnswer::Unavailable
            }
        }
    }

    fn select_between(
        &self,
        room: &str,
        after: u64,
        before: u64,
        limit: usize,
        oldest_first: bool,
    ) -> rusqlite::Result<Vec<Arc<ChatLine>>> {
        let sql = if oldest_first {
            "SELECT id, sender, text, ts, via, file, deleted FROM messages WHERE room = ?1 AND id > ?2 \
             AND id < ?3 ORDER BY id LIMIT ?4"
        } else {
            "SELECT id, sender, text, ts, via, file, deleted FROM messages WHERE room = ?1 AND id > ?2 \
             AND id < ?3 ORDER BY id DESC LIMIT ?4"
        };
        let mut statement = self.db.prepare_cached(sql)?;
        let rows = statement.query_map(params![room, after, before, limit as u64], |row| {
            line(room, row)
        })?;
        rows.collect()
    }

    /// Runs a query of `(id, sender, text, ts, via, file, deleted)` rows with parameters (room, id,
    /// limit).
    fn select(
        &self,
        sql: &str,
        room: &str,
        id: u64,
        limit: usize,
    ) -> rusqlite::Result<Vec<Arc<ChatLine>>> {
        let mut statement = self.db.prepare_cached(sql)?;
        let rows = statement.query_map(params![room, id, limit as u64], |row| line(room, row))?;
        rows.collect()
    }
}

/// The ids of the files that messages up to `upto` name: of room `room`, or of every
/// room when `room` is empty.
fn file_ids(db: &Connection, room: &str, upto: u64) -> rusqlite::Result<Vec<String>> {
    let mut select = db.prepare_cached(
        "SELECT file FROM messages WHERE file IS NOT NULL AND (?1 = '' OR room = ?1) \
         AND id <= ?2",
    )?;
    let rows = select.query_map(params![room, upto.min(MAX_ID)], |row| {
        row.get::<_, String>(0)
    })?;
    let mut ids = Vec::new();
    for file in rows {
        if let Some(file) = FileRef::from_stored(&file?) {
            ids.push(file.id);
        }
    }
    Ok(ids)
}

/// A message from a row of `(id, sender, text, ts, via, file, deleted)`.
fn line(room: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<Arc<ChatLine>> {
    if row.get::<_, bool>(6)? {
        return Ok(Arc::new(ChatLine::tombstone(
            row.get(0)?,
            room.to_owned(),
            row.get(3)?,
        )));
    }
    let via: Option<String> = row.get(4)?;
    let file: Option<String> = row.get(5)?;
    Ok(Arc::new(ChatLine {
        id: row.get(0)?,
        room: room.to_owned(),
        from: row.get(1)?,
        text: row.get(2)?,
        ts: row.get(3)?,
        via: via.filter(|v| v == "api").map(|_| "api"),
        file: file.as_deref().and_then(FileRef::from_stored),
        deleted: false,
    }))
}

/// The oldest message whose file has not expired: the condition is the one of the
/// index `messages_with_live_files`, word for word, so that SQLite reads the index and
/// not every message.
const OLDEST_LIVE_FILE: &str = "SELECT room, id, file FROM messages WHERE file IS NOT NULL \
     AND file NOT LIKE '%\"expired\":true%' ORDER BY ts, id LIMIT 1";

/// Keeps moderation rule `rule`, replacing the one of its room and key.
fn keep_rule(tx: &rusqlite::Transaction<'_>, rule: &super::Rule) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO moderation (room, key, value, until) VALUES (?1, ?2, ?3, ?4)",
        params![
            rule.room,
            rule.key,
            rule.value,
            i64::try_from(rule.until).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

/// Brings a file of schema `version` up to [`SCHEMA_VERSION`], in one transaction.
fn migrate(db: &Connection, version: i64) -> rusqlite::Result<()> {
    // BEGIN IMMEDIATE takes the write lock now, so that a file in use by another
    // server is refused here, even when there is nothing to migrate.
    db.execute_batch("BEGIN IMMEDIATE")?;
    let steps = || -> rusqlite::Result<()> {
        if version < 1 {
            db.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE messages (
                     room TEXT NOT NULL,
                     id INTEGER NOT NULL,
                     sender TEXT NOT NULL,
                     text TEXT NOT NULL,
                     ts INTEGER NOT NULL,
                     PRIMARY KEY (room, id)
                 ) WITHOUT ROWID;",
            )?;
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', ?1)",
                [new_epoch()],
            )?;
        }
        if version < 2 {
            db.execute_batch("ALTER TABLE messages ADD COLUMN via TEXT;")?;
        }
        if version < 3 {
            db.execute_batch(
                "CREATE TABLE ended_sessions (id BLOB PRIMARY KEY, expires INTEGER NOT NULL);",
            )?;
        }
        if version < 4 {
            // A message's `cid` or `Idempotency-Key`, so that a retry after a restart
            // is not stored twice.
            db.execute_batch(
                "ALTER TABLE messages ADD COLUMN key TEXT;
                 CREATE INDEX messages_by_key ON messages (room, key) WHERE key IS NOT NULL;",
            )?;
        }
        if version < 5 {
            // The file a message shares, as one JSON field ([`FileRef::to_stored`]).
            db.execute_batch("ALTER TABLE messages ADD COLUMN file TEXT;")?;
        }
        if version < 6 {
            // The oldest file not yet expired, found without reading every message:
            // the query in `expire_files` has this index's condition, word for word.
            db.execute_batch(
                "CREATE INDEX messages_with_live_files ON messages (ts, id) \
                 WHERE file IS NOT NULL AND file NOT LIKE '%\"expired\":true%';",
            )?;
        }
        if version < 7 {
            // A deleted message keeps its row, with nothing in it but its id and time:
            // a tombstone, so that histories keep whole sequences.
            db.execute_batch(
                "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        if version < 8 {
            // Moderation rules (a kick binds a name, a session and an address to a
            // room) until they run out, so that a restart does not lift them.
            db.execute_batch(
                "CREATE TABLE moderation (
                     room TEXT NOT NULL,
                     key TEXT NOT NULL,
                     value TEXT NOT NULL,
                     until INTEGER NOT NULL,
                     PRIMARY KEY (room, key)
                 ) WITHOUT ROWID;",
            )?;
        }
        db.pragma_update(None, "user_version", SCHEMA_VERSION)
    };
    match steps() {
        Ok(()) => db.execute_batch("COMMIT"),
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Creates the data directory readable by this user only (`0700`): it holds the key
/// that signs session cookies, which must be no more readable than the password
/// file. A directory that already exists keeps its mode (the deployer chose it), but
/// one that others may read gets a warning naming it.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "the data directory {} is readable by others (mode {:o}): chmod 700 it, it holds \
             the key that signs sign-in cookies",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Makes the store file and SQLite's companions (`-wal`, `-shm`, which SQLite
/// creates with the store file's mode) readable and writable by this user only.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The sessions ended before now that would still be good: expired ones are deleted.
fn ended_sessions(db: &Connection) -> rusqlite::Result<Vec<(SessionId, u64)>> {
    let now = crate::base::unix_now();
    db.execute(
        "DELETE FROM ended_sessions WHERE expires <= ?1",
        [now as i64],
    )?;
    let mut query = db.prepare("SELECT id, expires FROM ended_sessions")?;
    let rows = query.query_map([], |row| {
        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut ended = Vec::new();
    for row in rows {
        let (id, expires) = row?;
        if let Ok(id) = SessionId::try_from(id.as_slice()) {
            ended.push((id, u64::try_from(expires).unwrap_or(0)));
        }
    }
    Ok(ended)
}

/// The rule that keeps a cleared room's newest id.
const CLEARED: &str = "cleared";

/// The rule saying `room` was cleared through id `through`, kept for as long as the
/// store.
fn cleared_rule(room: &str, through: u64) -> super::Rule {
    super::Rule {
        room: room.to_owned(),
        key: CLEARED.to_owned(),
        value: through.to_string(),
        until: MAX_ID,
    }
}

/// The moderation rules not yet run out: the others are deleted.
fn rules(db: &Connection) -> rusqlite::Result<Vec<super::Rule>> {
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    db.execute("DELETE FROM moderation WHERE until <= ?1", [now])?;
    let mut query = db.prepare("SELECT room, key, value, until FROM moderation")?;
    let rows = query.query_map([], |row| {
        Ok(super::Rule {
            room: row.get(0)?,
            key: row.get(1)?,
            value: row.get(2)?,
            until: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
        })
    })?;
    rows.collect()
}

/// The value of `key` in the store's `meta` table, set to `fresh` if it has none.
fn meta(db: &Connection, key: &str, fresh: impl FnOnce() -> String) -> rusqlite::Result<String> {
    let value: Option<String> = db
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?;
    match value {
        Some(value) => Ok(value),
        None => {
            let value = fresh();
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                [key, &value],
            )?;
            Ok(value)
        }
    }
}

fn last_ids(db: &Connection) -> rusqlite::Result<std::collections::BTreeMap<String, u64>> {
    let mut statement = db.prepare("SELECT room, MAX(id) FROM messages GROUP BY room")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// A store error; `problem` unless SQLite says more precisely what is wrong.
fn store_error(path: Option<&Path>, problem: &str, e: rusqlite::Error) -> Error {
    let problem = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            "is in use by another running server"
        }
        Some(rusqlite::ErrorCode::NotADatabase) => "is not a switchboard store (SQLite)",
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied) => {
            "cannot be opened"
        }
        _ => problem,
    };
    Error::Store {
        path: path.map(Path::to_owned).unwrap_or_default(),
        problem: problem.to_owned(),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Author;

    fn memory() -> Store {
        Store::open(StoreConfig {
            location: Location::Memory,
            retain: 3,
            history: 2,
            files: crate::files::Files::open(None, 1 << 20, 1 << 30).unwrap(),
        })
        .unwrap()
    }

    #[test]
    fn the_oldest_live_file_is_found_through_its_index() {
        let store = memory();
        let plan: String = store
            .db
            .query_row(
                &format!("EXPLAIN QUERY PLAN {OLDEST_LIVE_FILE}"),
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert_eq!(plan, "SCAN messages USING INDEX messages_with_live_files");
    }

    fn append(store: &mut Store, room: &str, text: &str) -> Arc<ChatLine> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let msg = NewMessage {
            author: Author::Member { id: 1, key: None },
            room: room.into(),
            from: "a".into(),
            text: text.into(),
            ts: 0,
            via: None,
            file: None,
        };
        assert!(store.serve(vec![Request::Append(msg)], &tx));
        let committed = rx.try_iter().find_map(|event| match event {
            Event::Answer(Answer::Committed(mut lines)) => Some(lines.remove(0).1.unwrap()),
            _ => None,
        });
        committed.expect("the message, committed")
    }

    #[test]
    fn ids_count_per_room_and_retention_keeps_the_newest() {
        let mut store = memory();
        for i in 1..=5 {
            assert_eq!(append(&mut store, "r", &i.to_string()).id, i);
        }
        assert_eq!(append(&mut store, "other", "x").id, 1);
        let Answer::Page { messages, more, .. } = store.page(1, "r".into(), None, 10) else {
            panic!()
        };
        let ids: Vec<u64> = messages.iter().map(|l| l.id).collect();
        assert_eq!(ids, [3, 4, 5], "retain 3");
        assert!(!more);
    }

    #[test]
    fn resume_returns_exactly_what_was_missed_or_says_it_cannot() {
        let mut store = memory();
        for i in 1..=3 {
            append(&mut store, "r", &i.to_string());
        }
        let epoch = store.epoch().to_owned();
        let load = |store: &Store, since: Option<Since>| match store.load(1, 0, "r".into(), since) {
            Answer::Loaded {
                history, resumed, ..
            } => (history.iter().map(|l| l.id).collect::<Vec<_>>(), resumed),
            other => panic!("{other:?}"),
        };
        let since = |id| {
            Some(Since {
                id,
                epoch: epoch.clone(),
            })
        };
        assert_eq!(load(&store, since(1)), (vec![2, 3], true));
        assert_eq!(load(&store, since(3)), (vec![], true));
        assert_eq!(load(&store, None), (vec![2, 3], false), "history 2");
        let other_epoch = Some(Since {
            id: 1,
            epoch: "other".into(),
        });
        assert_eq!(load(&store, other_epoch), (vec![2, 3], false));
        assert_eq!(
            load(&store, since(9)),
            (vec![2, 3], false),
            "ahead of the room"
        );
        append(&mut store, "r", "4");
        append(&mut store, "r", "5");
        // Retention (3) dropped 1 and 2: a client that saw only 1 has a gap.
        assert_eq!(load(&store, since(1)), (vec![4, 5], false));
    }
}
