//! The seam between the hub and its backend: what the hub asks of whoever keeps the
//! chat's messages and its shared state (who is where, under which name), and what it
//! hears back. The hub never touches the disk or the network. It sends [`Request`]s
//! over a bounded channel (with `try_send`: a full queue means the backend is behind,
//! and the hub answers `unavailable` instead of waiting) and gets [`Event`]s back on
//! one channel of its own.
//!
//! Shared state changes only on the backend's word: a join, a move, a new name, a
//! leave and every message are carried out by the backend, which then tells the hub
//! the [`Change`], in the one order it made them. The hub applies changes as they
//! come, whoever asked for them, so a room's members see the same things in the same
//! order whether they are all on this node or spread over a cluster.
//!
//! Two backends speak it: [`sqlite`], a single node's SQLite writer thread, which is
//! a cluster of one (it keeps the node's names in memory and answers every change at
//! once), and the cluster's Redis bridge (`crate::cluster`), where the change is a Lua
//! script's and comes back on the bus to every node.

use crate::base::{ConnId, SessionId};
use crate::chat::{ChatLine, FileRef, Since};
use crossbeam_channel::Sender;
use std::sync::Arc;
use tungstenite::Message;

mod presence;
mod sqlite;

pub(crate) use sqlite::{Location, Store, StoreConfig};

/// Requests queued for the backend before the hub gets `unavailable` (a few seconds of
/// a very busy server; either backend commits thousands a second), and events queued
/// for the hub before the backend waits for it.
pub(crate) const QUEUE: usize = 4096;

/// Most messages a resume (`?since=`) returns; more is treated as a gap.
pub(crate) const MAX_RESUME: usize = 1000;

pub(crate) use crate::chat::MAX_PAGE;

/// Who posted a message, and so who hears what became of it.
#[derive(Debug, Clone)]
pub(crate) enum Author {
    /// A chat member: told only if it fails (it sees its message in the room), and
    /// the message's `cid` in its room, if it gave one.
    Member {
        id: ConnId,
        key: Option<(String, String)>,
    },
    /// An HTTP API request, waiting on its connection thread for the answer, and
    /// its `Idempotency-Key` in its room, if it sent one.
    Api {
        reply: Sender<ApiAnswer>,
        key: Option<(String, String)>,
    },
}

/// A message to store, as the hub sent it.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub author: Author,
    pub room: String,
    pub from: String,
    pub text: String,
    pub ts: u64,
    /// `Some("api")` for a message posted through the HTTP API.
    pub via: Option<&'static str>,
    /// The file it shares, its bytes on disk already.
    pub file: Option<FileRef>,
}

impl NewMessage {
    /// The key it is stored once under in its room: `chat:{cid}` for a chat message
    /// with a `cid`, the `Idempotency-Key` of an API post; `None` without one.
    pub(crate) fn key(&self) -> Option<&str> {
        match &self.author {
            Author::Member { key, .. } | Author::Api { key, .. } => {
                key.as_ref().map(|(_, key)| key.as_str())
            }
        }
    }
}

/// Who asked for a message to be deleted, and so who hears how it went.
#[derive(Debug, Clone)]
pub(crate) enum Asker {
    /// A chat member; it sees the `deleted` in its room, and hears only a refusal.
    Member(ConnId),
    /// An HTTP API request, waiting on its connection thread.
    Api(Sender<ApiAnswer>),
}

/// A request to delete message `id` of `room`.
#[derive(Debug, Clone)]
pub(crate) struct Deletion {
    pub asker: Asker,
    pub room: String,
    pub id: u64,
    /// Who deletes it, as the room is told: the member's name, or `api`.
    pub by: String,
    /// Whether `by` may delete anyone's message; else only one sent under the name
    /// `by` from a chat client (not through the API).
    pub by_admin: bool,
}

/// A message deleted: the room is told, and its file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deleted {
    pub room: String,
    pub id: u64,
    pub by: String,
    /// The id of the file it shared, now removed: a cluster's nodes drop their copies.
    pub file: Option<String>,
}

/// Why a message was not deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No such message in the room, or it is deleted already.
    NotFound,
    /// Someone else's message, and the asker is no admin.
    Forbidden,
    /// The store could not do it.
    Failed,
}

/// Whether a message sent under `from` (through `via`) is `by`'s to delete: the name
/// it was sent under is the member's name now, and it came from a chat client (a
/// script's post is never a member's own, whatever name it gave).
pub(crate) fn may_delete(by_admin: bool, by: &str, from: &str, via: Option<&str>) -> bool {
    by_admin || (from == by && via.is_none_or(str::is_empty))
}

/// One standing moderation rule of a room, kept until `until` (ms since the epoch):
/// `key` is what it binds (`kick:name:{name key}`, `kick:session:{hex}`,
/// `kick:addr:{client}`, `mute:{name key}`, `room`: its settings, `cleared`: the newest id a clear took),
/// `value` what it says (a kick's reason). Kept by the backend
/// so that it survives a restart and reaches every node; the hub keeps a copy to
/// decide with, without asking.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rule {
    pub room: String,
    pub key: String,
    #[serde(default)]
    pub value: String,
    /// When it ends; `0` takes the rule away.
    pub until: u64,
}

/// What a moderator did, as the room is told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "a", rename_all = "snake_case")]
pub(crate) enum Action {
    /// Member `name` is closed (Close 4001 with `reason`) and may not come back into
    /// the room before `until`.
    Kick {
        name: String,
        reason: String,
        until: u64,
    },
    /// Member `name` may read but not post in the room before `until`.
    Mute { name: String, until: u64 },
    /// Member `name` may post again.
    Unmute { name: String },
    /// The room's settings are now these.
    Room {
        #[serde(flatten)]
        settings: crate::chat::RoomSettings,
    },
    /// The room's history is gone: every message up to `through` (its newest id),
    /// and the files they shared (`files`, their ids, for every node to drop its copy).
    /// Asked for with both empty: the backend fills them in. Ids go on from `through`.
    Clear {
        #[serde(default)]
        through: u64,
        #[serde(default)]
        files: Vec<String>,
    },
    /// More of what a kick binds (the kicked member's session and address, which only
    /// the node it is connected to knows): nobody is told.
    Bar,
}

/// A moderation request: the backend keeps `rules` (and takes away those with
/// `until` 0), then tells every node a [`Change::Moderated`], and the asker an
/// [`Answer::Moderation`].
#[derive(Debug, Clone)]
pub(crate) struct Moderation {
    /// Who hears how it went; `None` for the hub's own follow-up (a [`Action::Bar`]).
    pub asker: Option<Asker>,
    pub room: String,
    /// Who did it, as the room is told: an admin's name, or `api`.
    pub by: String,
    pub action: Action,
    pub rules: Vec<Rule>,
}

/// A moderation made: what every node's hub applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moderated {
    pub room: String,
    pub by: String,
    pub action: Action,
    pub rules: Vec<Rule>,
}

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RoomSummary {
    pub name: String,
    pub members: usize,
    pub last_id: u64,
}

/// What an HTTP API request gets back, on its own channel.
#[derive(Debug)]
pub(crate) enum ApiAnswer {
    /// The message was stored (and delivered) as this.
    Posted(Arc<ChatLine>),
    /// `GET /api/rooms`: a page of rooms, and whether more follow.
    Rooms { rooms: Vec<RoomSummary>, more: bool },
    /// The post would start a room past `Config::max_rooms`: why.
    TooManyRooms(String),
    /// `GET /api/rooms/{room}/messages`.
    Messages {
        room: String,
        messages: Vec<Arc<ChatLine>>,
        more: bool,
    },
    /// Too many posts from this address.
    RateLimited,
    /// The post is in, and not confirmed yet: it reaches the room once the backend
    /// answers again.
    Accepted,
    /// The post's `from` is a connected member's name, or looks like one.
    NameTaken,
    /// The store could not do it.
    Unavailable,
    /// `DELETE /api/rooms/{room}/messages/{id}`: done, and the room told.
    Deleted(Deleted),
    /// No such message (or it is deleted already); no such member in the room.
    NotFound,
    /// A moderation action was taken, and the room told.
    Moderated(Moderated),
}

/// What the hub asks of the backend.
#[derive(Debug)]
pub(crate) enum Request {
    /// Store a chat message and give it the room's next id; it reaches the room as a
    /// [`Change::Msg`], its author hears of it in [`Answer::Committed`].
    Append(NewMessage),
    /// A chat member joins: the first free of `names` (name and its key,
    /// [`crate::chat::name_key`]), else a guest name; told as a [`Change::Join`], its
    /// history (after `since` when it can resume) as an [`Answer::Loaded`].
    Join {
        member: ConnId,
        seq: u64,
        names: Vec<(String, String)>,
        room: String,
        since: Option<Since>,
    },
    /// A member moves to `room`, or asks for its own room's history again.
    Switch {
        member: ConnId,
        seq: u64,
        room: String,
    },
    Leave {
        member: ConnId,
        reason: &'static str,
    },
    /// A member takes the name `to`, reserved under `key` ([`crate::chat::name_key`]).
    Rename {
        member: ConnId,
        to: String,
        key: String,
    },
    /// A direct message (its JSON as the client gets it) for a member the hub has no
    /// outbox for.
    Direct {
        from: ConnId,
        to: String,
        json: String,
    },
    /// A relay message from `member` to the rest of `room` on the other nodes.
    Relay {
        member: ConnId,
        room: String,
        msg: Message,
    },
    /// After a gap in the changes: put this node's members (id, name, room) back, then
    /// send what each room missed since the id given, and who is where now. Only for
    /// the `epoch` the hub knew: members of a lost epoch are not put back.
    Resync {
        epoch: String,
        members: Vec<(ConnId, String, String)>,
        rooms: Vec<(String, u64)>,
    },
    /// A page of older messages (`history` request).
    Page {
        member: ConnId,
        room: String,
        before: Option<u64>,
        limit: usize,
    },
    /// `GET /api/rooms`: a page of rooms by name after `after`, with people (the
    /// first `limit + 1` of them after `after`, counted by the hub) or messages.
    Rooms {
        members: Vec<(String, usize)>,
        after: Option<String>,
        limit: usize,
        reply: Sender<ApiAnswer>,
    },
    /// Remember that a session was ended (`POST /logout`) until its cookie would
    /// have expired anyway (Unix seconds), and tell every node.
    EndSession { id: SessionId, expires: u64 },
    /// `GET /api/rooms/{room}/messages`.
    Messages {
        room: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
        reply: Sender<ApiAnswer>,
    },
    /// Delete a message: its text and file go, a tombstone keeps its id; the room is
    /// told as a [`Change::Deleted`], the asker hears in [`Answer::Deletion`].
    Delete(Deletion),
    /// Keep moderation rules, and tell every node what was done
    /// ([`Change::Moderated`]).
    Moderate(Moderation),
}

/// Why a message was not stored.
#[derive(Debug, Clone)]
pub(crate) enum StoreError {
    /// The commit failed (disk full, I/O error); nothing of the batch was stored.
    Failed,
    /// The batch went out and no answer came: the backend stores it once as soon as
    /// it answers again (and tells the API's waiting keys then).
    Unconfirmed,
    /// Its key (a chat `cid`, an `Idempotency-Key`) was stored already, as this (on
    /// a cluster, by any node): nothing was stored again, and only its author hears.
    AlreadyStored(Arc<ChatLine>),
}

/// What became of the hub's requests.
#[derive(Debug)]
pub(crate) enum Answer {
    /// One batch of `Append`s, in order: each stored with its id, or not at all.
    Committed(Vec<(Author, Result<Arc<ChatLine>, StoreError>)>),
    /// What became, after all, of messages answered `Unconfirmed` before: for their
    /// keys (`cid`, `Idempotency-Key`) and the API's waiting threads; the room gets
    /// a stored one as a change like any other.
    Resolved(Vec<(Author, Result<Arc<ChatLine>, StoreError>)>),
    /// The history for a member's welcome, after its `Join` or `Switch`.
    Loaded {
        member: ConnId,
        seq: u64,
        room: String,
        history: Vec<Arc<ChatLine>>,
        last_id: u64,
        resumed: bool,
        /// The read failed: the history is empty, and the client is told.
        failed: bool,
    },
    /// What became of a `Delete`, after its change (if it was made).
    Deletion {
        asker: Asker,
        outcome: Result<Deleted, Refusal>,
    },
    /// What became of a `Moderate`, after its change (if it was made).
    Moderation {
        asker: Option<Asker>,
        outcome: Result<Moderated, Refusal>,
    },
    /// The answer to a `Page`.
    Page {
        member: ConnId,
        room: String,
        messages: Vec<Arc<ChatLine>>,
        more: bool,
        failed: bool,
    },
}

/// A change to shared chat state, as the backend made it. `m` names a member as
/// [`member_key`] does.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A stored message, with its id.
    Msg(Arc<ChatLine>),
    /// `last`: the room's newest id at the join; later messages have higher ids.
    Join {
        m: String,
        name: String,
        room: String,
        last: u64,
        ts: u64,
        /// Put back after the backend was away: news only to who did not know it.
        restore: bool,
    },
    Switch {
        m: String,
        room: String,
        last: u64,
        ts: u64,
    },
    /// Told with the time each node applies it.
    Leave {
        m: String,
        reason: String,
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
        id: SessionId,
        expires: u64,
    },
    /// A message was deleted: in its room's order, after the message itself.
    Deleted(Deleted),
    /// A moderator acted on a room: its rules change, and the room is told.
    Moderated(Moderated),
}

/// A member as the backend lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Present {
    pub key: String,
    pub name: String,
    pub room: String,
}

/// What the backend tells the hub.
#[derive(Debug)]
pub(crate) enum Event {
    /// What became of a request, in the order asked.
    Answer(Answer),
    /// A change, in the one order the backend made them.
    Change(Change),
    /// A relay message from member `from` (on another node, or this one).
    Relay {
        from: String,
        room: String,
        msg: Message,
    },
    /// The changes were interrupted and are back: what happened meanwhile was missed.
    Resubscribed,
    /// The backend is reachable again after an outage, or had forgotten this node.
    Reconnected,
    /// The backend lost its data: a new epoch, and nobody's ids mean anything any
    /// more.
    NewEpoch(String),
    /// A member's join or move could not be made (the backend is away).
    JoinFailed { member: ConnId },
    /// A member's request could not be carried out; `what` says which.
    Failed { member: ConnId, what: &'static str },
    /// The name a member asked for is someone else's.
    NameTaken { member: ConnId, to: String },
    /// What a room missed during a gap in the changes.
    CatchUp { lines: Vec<Arc<ChatLine>> },
    /// Everyone there is, after a gap.
    Presence(Vec<Present>),
    /// Members of this node that could not be put back after a gap: someone else
    /// holds their names now.
    Displaced(Vec<ConnId>),
}

/// How the backend names member `id` of node `node`: `{node}.{id}`.
pub(crate) fn member_key(node: &str, id: ConnId) -> String {
    format!("{node}.{id}")
}

/// `GET /api/rooms`: one page, by name, of the rooms with messages (`stored`: name
/// and newest id) or people (`members`: name and count), both sorted by name and
/// starting after the same cursor; the first `limit`, and whether more follow.
pub(crate) fn page_of_rooms(
    stored: Vec<(String, u64)>,
    members: Vec<(String, usize)>,
    limit: usize,
) -> (Vec<RoomSummary>, bool) {
    let mut rooms: std::collections::BTreeMap<String, RoomSummary> = stored
        .into_iter()
        .map(|(name, last_id)| {
            let summary = RoomSummary {
                name: name.clone(),
                members: 0,
                last_id,
            };
            (name, summary)
        })
        .collect();
    for (name, count) in members {
        rooms
            .entry(name.clone())
            .or_insert(RoomSummary {
                name,
                members: 0,
                last_id: 0,
            })
            .members = count;
    }
    let more = rooms.len() > limit;
    (rooms.into_values().take(limit).collect(), more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_deletes_only_what_it_sent_from_the_chat_under_its_name() {
        assert!(may_delete(false, "ann", "ann", None));
        assert!(!may_delete(false, "ann", "bob", None));
        assert!(
            !may_delete(false, "ann", "ann", Some("api")),
            "a script's post"
        );
        assert!(may_delete(true, "api", "ann", None));
        assert!(may_delete(true, "api", "ci", Some("api")));
    }
}
