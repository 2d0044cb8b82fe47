//! The store's contract: what the hub asks of whoever keeps the chat's messages,
//! and what it hears back. The hub never touches the disk or the network. It sends
//! [`Request`]s over a bounded channel (with `try_send`: a full queue means the store
//! is behind, and the hub answers `unavailable` instead of waiting) and gets
//! [`Answer`]s back on a channel of its own, in the order it asked.
//!
//! Two backends speak it: [`sqlite`], a single node's SQLite writer thread, and the
//! cluster's Redis bridge (`crate::cluster`), which takes the same requests.

use crate::base::{ConnId, SessionId};
use crate::chat::{ChatLine, Since};
use crossbeam_channel::Sender;
use std::sync::Arc;

mod sqlite;

pub(crate) use sqlite::{Location, Store, StoreConfig};

/// Requests queued for the writer before the hub gets `unavailable` (a few seconds of
/// a very busy server; the writer commits thousands a second).
pub(crate) const QUEUE: usize = 4096;

/// Most messages a resume (`?since=`) returns; more is treated as a gap.
pub(crate) const MAX_RESUME: usize = 1000;

pub(crate) use crate::chat::MAX_PAGE;

/// Who posted a message, and so who hears what became of it.
#[derive(Debug, Clone)]
pub(crate) enum Author {
    /// A chat member: told only if it fails (it sees its message in the room).
    Member(ConnId),
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
    /// The post's `from` is a connected member's name, or looks like one.
    NameTaken,
    /// The store could not do it.
    Unavailable,
}

/// What the hub asks of the store.
#[derive(Debug)]
pub(crate) enum Request {
    /// Store a chat message and give it the room's next id.
    Append(NewMessage),
    /// The history for a `welcome`: the messages after `since` when the client can
    /// resume, else the last `history`. `seq` tells this load from a later one.
    Load {
        member: ConnId,
        seq: u64,
        room: String,
        since: Option<Since>,
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
    /// have expired anyway (Unix seconds).
    EndSession { id: SessionId, expires: u64 },
    /// `GET /api/rooms/{room}/messages`.
    Messages {
        room: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
        reply: Sender<ApiAnswer>,
    },
}

/// Why a message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreError {
    /// The commit failed (disk full, I/O error); nothing of the batch was stored.
    Failed,
}

/// What the store tells the hub, in the order it was asked.
#[derive(Debug)]
pub(crate) enum Answer {
    /// One batch of `Append`s, in order: each stored with its id, or not at all.
    Committed(Vec<(Author, Result<Arc<ChatLine>, StoreError>)>),
    /// The answer to a `Load`.
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
    /// The answer to a `Page`.
    Page {
        member: ConnId,
        room: String,
        messages: Vec<Arc<ChatLine>>,
        more: bool,
        failed: bool,
    },
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
