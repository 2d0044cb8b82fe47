//! Chat rooms, and what members and the API ask of them.
//!
//! [`ChatRooms`] is defined here with the requests: a member joins, moves, renames,
//! posts, asks for history, writes to someone, leaves; the API posts and reads. Each
//! request that changes shared state goes to the backend, and nothing changes until
//! the backend says so: [`changes`](super::changes) adds the methods that apply what
//! it says. That file may call the methods here (a change can release requests that
//! waited for it); this file calls none of its (`tests/layers.rs` checks it).
//!
//! A room's messages live in the backend. A message goes to the backend first and
//! reaches the room only once the backend says it is committed, with its id; the
//! backend makes changes in one order, so every member sees a room's messages in the
//! same order with the same numbers.

use super::backend::{Backend, Early, pending};
use super::idempotent::{self, Key};
use super::members::{Members, with_suffix};
use super::moderation::{self, Moderation};
use super::{LeaveReason, Post};
use crate::base::RateLimit;
use crate::base::{ClientKey, ConnId, now_ms};
use crate::chat::{
    self, ChatError, ChatLine, ClientMessage, ErrorCode, RoomInfo, ServerMessage, Since,
};
use crate::hub::ApiCall;
use crate::metrics::{self, Metrics};
use crate::store::{self, Action, ApiAnswer, Asker, Author, NewMessage, Refusal, Request, Rule};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use tungstenite::Message;

#[derive(Debug, Default)]
pub(super) struct ChatRoom {
    /// In order of arrival, which is the order of the member list.
    pub(super) members: Vec<ConnId>,
}

/// Every chat room with people in it. An empty room is forgotten: its messages are
/// in the backend.
#[derive(Debug)]
pub(super) struct ChatRooms {
    pub(super) rooms: HashMap<String, ChatRoom>,
    /// The backend, and what the hub keeps of it.
    pub(super) backend: Backend,
    /// The backend's epoch, for every welcome.
    pub(super) epoch: String,
    /// Numbers each member's loads, so that a stale answer is told from the latest.
    pub(super) loads: u64,
    /// API posts allowed per client (address, or IPv6 /64), and each one's bucket.
    api_rate: (u32, u32),
    api_buckets: HashMap<ClientKey, RateLimit>,
    /// Which rooms have stored messages, and how many new ones each client may start.
    pub(super) rooms_kept: RoomsKept,
    /// What every welcome tells a client to respect.
    pub(super) limits: chat::Limits,
    /// The `Idempotency-Key`s of API posts, for 24 hours.
    pub(super) keys: idempotent::Keys,
    /// Kicks in force, and what a new one needs.
    pub(super) moderation: Moderation,
    pub(super) metrics: Arc<Metrics>,
}

/// New rooms one client may start at once, and then one every this many seconds: a
/// teacher setting up a class's rooms is not slowed, a script is.
const NEW_ROOMS_BURST: u32 = 20;
const NEW_ROOM_EVERY_SECS: f64 = 3.0;

/// The bound on stored state: rooms with messages are kept until their messages
/// expire, which they never do on their own, so their number is capped, and so is how
/// fast one client may add to it.
#[derive(Debug)]
pub(super) struct RoomsKept {
    /// Rooms with stored messages (or a message on its way to the store).
    names: HashSet<String>,
    max: usize,
    /// Each chat member's client (address, or IPv6 /64).
    pub(super) clients: HashMap<ConnId, ClientKey>,
    budgets: HashMap<ClientKey, RateLimit>,
}

impl RoomsKept {
    pub(super) fn new(max: usize, names: Vec<String>) -> Self {
        Self {
            names: names.into_iter().collect(),
            max,
            clients: HashMap::new(),
            budgets: HashMap::new(),
        }
    }

    /// Whether `client` may post to `room`: always to a room that has messages; to a
    /// new one while there are fewer than the maximum, within the client's budget.
    pub(super) fn admit(&mut self, room: &str, client: Option<ClientKey>) -> Result<(), ChatError> {
        if self.names.contains(room) {
            return Ok(());
        }
        if self.names.len() >= self.max {
            return Err(ChatError::new(
                ErrorCode::TooManyRooms,
                format!(
                    "this server keeps at most {} rooms with messages: post in one of them",
                    self.max
                ),
            ));
        }
        if let Some(client) = client {
            if self.budgets.len() >= 4096 {
                self.budgets.retain(|_, budget| !budget.is_full());
            }
            let budget = self
                .budgets
                .entry(client)
                .or_insert_with(|| RateLimit::every(NEW_ROOM_EVERY_SECS, NEW_ROOMS_BURST));
            if !budget.allow() {
                return Err(ChatError::new(
                    ErrorCode::RateLimited,
                    "new rooms are started too fast from this address: wait a little",
                ));
            }
        }
        self.names.insert(room.to_owned());
        Ok(())
    }

    /// A room got messages (on another node of the cluster, say).
    pub(super) fn kept(&mut self, room: &str) {
        if !self.names.contains(room) {
            self.names.insert(room.to_owned());
        }
    }
}

/// Name variants offered for a join: the name, then `name-2` up to this.
const NAME_VARIANTS: u64 = 50;
/// Requests a member may send before the backend has named it; more get `error`.
const MAX_EARLY: usize = 64;

/// The names a join offers: the one asked for and variants of it, with their keys
/// ([`chat::name_key`]); none for a guest.
fn offered(wanted: Option<String>) -> Vec<(String, String)> {
    let Some(base) = wanted else {
        return Vec::new();
    };
    let variants = (2..=NAME_VARIANTS).map(|n| with_suffix(&base, n));
    std::iter::once(base.clone())
        .chain(variants)
        .map(|name| {
            let key = chat::name_key(&name);
            (name, key)
        })
        .collect()
}

impl ChatRooms {
    pub(super) fn new(
        epoch: String,
        backend: Backend,
        api_rate: (u32, u32),
        rooms_kept: RoomsKept,
        (limits, moderation): (chat::Limits, Moderation),
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            rooms: HashMap::new(),
            backend,
            epoch,
            loads: 0,
            api_rate,
            api_buckets: HashMap::new(),
            rooms_kept,
            limits,
            keys: idempotent::Keys::default(),
            moderation,
            metrics,
        }
    }

    /// Carries out an HTTP API request: reads go to the backend, which answers the
    /// waiting HTTP thread itself; a post is rate-limited per address, then stored and
    /// delivered like a chat message, marked `via: api`; it may not speak under a
    /// connected member's name, nor one that looks like it.
    pub(super) fn api(
        &mut self,
        members: &Members,
        ip: IpAddr,
        call: ApiCall,
        reply: Sender<ApiAnswer>,
    ) {
        let request = match call {
            ApiCall::Rooms { after, limit } => {
                // Only what can be on the page: the first rooms with people after
                // `after`, by name; the backend adds the rooms with messages.
                let mut members: Vec<(String, usize)> = self
                    .rooms
                    .iter()
                    .filter(|(name, room)| {
                        !room.members.is_empty()
                            && after.as_deref().is_none_or(|after| name.as_str() > after)
                    })
                    .map(|(name, room)| (name.clone(), room.members.len()))
                    .collect();
                members.sort_unstable();
                members.truncate(limit + 1);
                store::Request::Rooms {
                    members,
                    after,
                    limit,
                    reply: reply.clone(),
                }
            }
            ApiCall::Messages {
                room,
                before,
                after,
                limit,
            } => store::Request::Messages {
                room,
                before,
                after,
                limit,
                reply: reply.clone(),
            },
            // The API token moderates: any message, as `api`.
            ApiCall::Delete { room, id } => store::Request::Delete(store::Deletion {
                asker: store::Asker::Api(reply.clone()),
                room,
                id,
                by: chat::API_SENDER.to_owned(),
                by_admin: true,
            }),
            ApiCall::Kick { room, name, reason } => {
                let asker = store::Asker::Api(reply.clone());
                let by = chat::API_SENDER.to_owned();
                match self.kick_request(members, asker, (room, by), (&name, reason)) {
                    Ok(request) => request,
                    Err(_) => {
                        let _ = reply.send(ApiAnswer::NotFound);
                        return;
                    }
                }
            }
            ApiCall::Clear { room } => {
                let by = chat::API_SENDER.to_owned();
                clear_request(store::Asker::Api(reply.clone()), (room, by))
            }
            ApiCall::Settings { room, change } => {
                let by = chat::API_SENDER.to_owned();
                self.room_request(store::Asker::Api(reply.clone()), (room, by), change)
            }
            ApiCall::Mute {
                room,
                name,
                minutes,
            } => {
                let asker = store::Asker::Api(reply.clone());
                let by = chat::API_SENDER.to_owned();
                match self.mute_request(members, asker, (room, by), &name, minutes) {
                    Ok(request) => request,
                    Err(_) => {
                        let _ = reply.send(ApiAnswer::NotFound);
                        return;
                    }
                }
            }
            ApiCall::Post {
                room,
                from,
                text,
                key,
                file,
            } => {
                if self.api_buckets.len() > 4096 {
                    // Forget the addresses that have not posted lately: bounded memory.
                    self.api_buckets.retain(|_, bucket| !bucket.is_full());
                }
                let (rate, burst) = self.api_rate;
                let bucket = self
                    .api_buckets
                    .entry(ClientKey::of(ip))
                    .or_insert_with(|| RateLimit::new(rate, burst));
                if !bucket.allow() {
                    let _ = reply.send(ApiAnswer::RateLimited);
                    return;
                }
                if from != chat::API_SENDER && members.find(&from).is_some() {
                    let _ = reply.send(ApiAnswer::NameTaken);
                    return;
                }
                match self.rooms_kept.admit(&room, Some(ClientKey::of(ip))) {
                    Ok(()) => {}
                    Err(e) if e.code == ErrorCode::TooManyRooms => {
                        let _ = reply.send(ApiAnswer::TooManyRooms(e.message));
                        return;
                    }
                    Err(_) => {
                        let _ = reply.send(ApiAnswer::RateLimited);
                        return;
                    }
                }
                let key = key.map(|key| (room.clone(), key));
                if let Some(key) = &key
                    && let idempotent::Seen::Answered = self.keys.take(key, &reply)
                {
                    return;
                }
                store::Request::Append(NewMessage {
                    author: Author::Api {
                        reply: reply.clone(),
                        key,
                    },
                    room,
                    from,
                    text,
                    ts: now_ms(),
                    via: Some("api"),
                    file,
                })
            }
        };
        if !self.ask(request) {
            metrics::bump(&self.metrics.store_errors);
            let _ = reply.send(ApiAnswer::Unavailable);
        }
    }

    /// The backend's threads are gone: every later request that needs it is
    /// `unavailable`.
    pub(super) fn backend_gone(&mut self) {
        self.backend.gone();
    }

    /// Queues a request for the backend without waiting; `false` when it cannot take
    /// it (it is behind, or gone).
    fn ask(&self, request: store::Request) -> bool {
        self.backend.ask(request)
    }

    pub(super) fn unavailable(&self, members: &Members, post: &mut Post, id: ConnId, what: &str) {
        metrics::bump(&self.metrics.store_errors);
        let error = ChatError::new(ErrorCode::Unavailable, what);
        self.send_error(members, post, id, &error);
    }

    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Carries out a request from chat member `id`.
    pub(super) fn handle(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        msg: ClientMessage,
    ) {
        let Some(msg) = self.early(members, post, id, msg) else {
            return;
        };
        let Some((name, room)) = members.chat_member(id) else {
            return;
        };
        let (name, room) = (name.to_owned(), room.to_owned());
        match msg {
            ClientMessage::Message { .. } | ClientMessage::Direct { .. }
                if let Some(until) = self.moderation.muted(&room, &name) =>
            {
                // A file's bytes are on disk already: like any refused file, it goes
                // when the store next starts.
                self.send_error(members, post, id, &moderation::muted_error(&room, until));
            }
            ClientMessage::Message { text, cid, file } => {
                let admin = is_admin(members, id);
                let now = std::time::Instant::now();
                if let Err(error) = self.moderation.may_post(&room, &name, admin, now) {
                    return self.send_error(members, post, id, &error);
                }
                let client = self.rooms_kept.clients.get(&id).copied();
                if let Err(error) = self.rooms_kept.admit(&room, client) {
                    return self.send_error(members, post, id, &error);
                }
                // A `cid` seen in this room already: not stored again. The sender is
                // told what became of the first.
                let key = cid.map(|cid| (room.clone(), format!("chat:{cid}")));
                if let Some(key) = &key {
                    match self.keys.claim(key, id) {
                        idempotent::Claim::New => {}
                        // Answered with the first once it is stored.
                        idempotent::Claim::Waiting => return post.begin(members, id),
                        idempotent::Claim::InDoubt => {
                            return self.send_error(members, post, id, &unconfirmed());
                        }
                        idempotent::Claim::Done(line) => {
                            return post.deliver(members, id, Message::text(chat::encode(&*line)));
                        }
                    }
                }
                let msg = NewMessage {
                    author: Author::Member {
                        id,
                        key: key.clone(),
                    },
                    room,
                    from: name,
                    text,
                    ts: now_ms(),
                    via: None,
                    file,
                };
                if self.ask(store::Request::Append(msg)) {
                    post.begin(members, id);
                } else {
                    if let Some(key) = &key {
                        self.key_failed(members, post, key);
                    }
                    self.unavailable(
                        members,
                        post,
                        id,
                        "the message could not be stored, try again",
                    );
                }
            }
            ClientMessage::Direct { to, text } => self.direct(members, post, id, &to, &text),
            ClientMessage::Rename { name: to } => self.rename(members, post, id, to),
            ClientMessage::Join { room: to } => {
                let client = self.rooms_kept.clients.get(&id).copied();
                let session = self.moderation.sessions.get(&id);
                // Another room is fine; the one it was kicked from is not, yet. It
                // stays where it is.
                if let Some((reason, until)) =
                    self.moderation.kicked(&to, Some(&name), session, client)
                {
                    let error = moderation::kicked_error(&to, reason, until);
                    return self.send_error(members, post, id, &error);
                }
                self.switch(members, post, id, &to);
            }
            ClientMessage::History { before, limit } => {
                let page = store::Request::Page {
                    member: id,
                    room,
                    before,
                    limit: limit.min(store::MAX_PAGE),
                };
                if self.ask(page) {
                    post.begin(members, id);
                } else {
                    self.unavailable(members, post, id, "older messages cannot be read now");
                }
            }
            ClientMessage::Members => {
                let json = chat::encode(&ServerMessage::Members {
                    room: &room,
                    members: self.names(members, &room),
                });
                post.deliver(members, id, Message::text(json));
            }
            ClientMessage::Delete { id: message } => {
                let delete = store::Request::Delete(store::Deletion {
                    asker: store::Asker::Member(id),
                    room,
                    id: message,
                    by: name,
                    by_admin: is_admin(members, id),
                });
                if self.ask(delete) {
                    post.begin(members, id);
                } else {
                    self.unavailable(members, post, id, "the message cannot be deleted now");
                }
            }
            ClientMessage::Kick {
                name: target,
                reason,
            } => {
                if !is_admin(members, id) {
                    return self.send_error(members, post, id, &moderation::forbidden());
                }
                let asker = store::Asker::Member(id);
                match self.kick_request(members, asker, (room, name), (&target, reason)) {
                    Ok(request) => {
                        if self.ask(request) {
                            post.begin(members, id);
                        } else {
                            self.unavailable(members, post, id, "the kick cannot be made now");
                        }
                    }
                    Err(refusal) => {
                        self.send_error(members, post, id, &moderation::refusal_error(refusal));
                    }
                }
            }
            ClientMessage::Mute { .. }
            | ClientMessage::Unmute { .. }
            | ClientMessage::Room(_)
            | ClientMessage::Clear
                if !is_admin(members, id) =>
            {
                self.send_error(members, post, id, &moderation::forbidden());
            }
            ClientMessage::Mute {
                name: target,
                minutes,
            } => {
                let asker = Asker::Member(id);
                let made = self.mute_request(members, asker, (room, name), &target, minutes);
                self.moderate(members, post, id, made);
            }
            ClientMessage::Clear => {
                let made = clear_request(Asker::Member(id), (room, name));
                self.moderate(members, post, id, Ok(made));
            }
            ClientMessage::Room(change) => {
                let made = self.room_request(Asker::Member(id), (room, name), change);
                self.moderate(members, post, id, Ok(made));
            }
            ClientMessage::Unmute { name: target } => {
                let asker = Asker::Member(id);
                let made = self.mute_request(members, asker, (room, name), &target, 0);
                self.moderate(members, post, id, made);
            }
            // Taken by the connection thread, which sends a `Message` with the file.
            ClientMessage::File(_) => {}
            ClientMessage::Rooms => {
                let json = chat::encode(&ServerMessage::Rooms { rooms: self.list() });
                post.deliver(members, id, Message::text(json));
            }
        }
    }

    /// Whether member `id` of ours, joining `room` under `name`, is kept out by a
    /// kick: if so it is told why (an `error` `kicked` with `until`, no welcome) and
    /// closed with 4001.
    pub(super) fn refuse_kicked(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
        name: Option<&str>,
    ) -> bool {
        let client = self.rooms_kept.clients.get(&id).copied();
        let session = self.moderation.sessions.get(&id);
        let Some((reason, until)) = self.moderation.kicked(room, name, session, client) else {
            return false;
        };
        let error = moderation::kicked_error(room, reason, until);
        let close = if reason.is_empty() {
            moderation::NO_REASON
        } else {
            reason
        };
        post.deliver(members, id, Message::text(error.to_json()));
        if let Some(outbox) = members.outbox(id) {
            outbox.kick(close);
        }
        true
    }

    /// A request to kick `name` out of `room`, made by `by`: the rules to keep, or
    /// why not. The name, always; the session and address too when the member is
    /// connected here.
    pub(super) fn kick_request(
        &self,
        members: &Members,
        asker: Asker,
        (room, by): (String, String),
        (name, reason): (&str, String),
    ) -> Result<store::Request, Refusal> {
        let (target, spelled) = members.find(name).ok_or(Refusal::NotFound)?;
        if members.chat_member(target).is_none_or(|(_, r)| r != room) {
            return Err(Refusal::NotFound);
        }
        let until = now_ms().saturating_add(self.moderation.kick_time.as_millis() as u64);
        let rule = |key: String| Rule {
            room: room.clone(),
            key,
            value: reason.clone(),
            until,
        };
        let mut rules = vec![rule(moderation::name_rule(spelled))];
        if members.outbox(target).is_some() {
            rules.extend(
                self.moderation
                    .sessions
                    .get(&target)
                    .map(moderation::session_rule)
                    .map(rule),
            );
            rules.extend(
                self.rooms_kept
                    .clients
                    .get(&target)
                    .copied()
                    .map(moderation::address_rule)
                    .map(rule),
            );
        }
        Ok(store::Request::Moderate(store::Moderation {
            asker: Some(asker),
            room,
            by,
            action: Action::Kick {
                name: spelled.to_owned(),
                reason,
                until,
            },
            rules,
        }))
    }

    /// Asks the backend for a moderation member `id` made, or tells it why not.
    fn moderate(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        made: Result<store::Request, Refusal>,
    ) {
        match made {
            Ok(request) => {
                if self.ask(request) {
                    post.begin(members, id);
                } else {
                    self.unavailable(members, post, id, "that cannot be done now");
                }
            }
            Err(refusal) => {
                self.send_error(members, post, id, &moderation::refusal_error(refusal));
            }
        }
    }

    /// A request to change the settings of `room`, made by `by`: the whole settings,
    /// kept for as long as the room (taken away when back to the defaults).
    pub(super) fn room_request(
        &self,
        asker: Asker,
        (room, by): (String, String),
        change: chat::RoomChange,
    ) -> store::Request {
        let settings = self.moderation.settings(&room).with(change);
        let value = serde_json::to_string(&settings).unwrap_or_default();
        let until = if settings == chat::RoomSettings::default() {
            0
        } else {
            moderation::FOREVER
        };
        store::Request::Moderate(store::Moderation {
            asker: Some(asker),
            rules: vec![Rule {
                room: room.clone(),
                key: moderation::ROOM_RULE.to_owned(),
                value,
                until,
            }],
            room,
            by,
            action: Action::Room { settings },
        })
    }

    /// A request to mute `name` in `room` for `minutes` (0: to unmute it), made by
    /// `by`. Only a member of the room is muted; only a muted one unmuted.
    pub(super) fn mute_request(
        &self,
        members: &Members,
        asker: Asker,
        (room, by): (String, String),
        name: &str,
        minutes: u64,
    ) -> Result<store::Request, Refusal> {
        let (action, until) = if minutes == 0 {
            if self.moderation.muted(&room, name).is_none() {
                return Err(Refusal::NotFound);
            }
            let spelled = members.find(name).map_or(name, |(_, spelled)| spelled);
            let name = spelled.to_owned();
            (Action::Unmute { name }, 0)
        } else {
            let (target, spelled) = members.find(name).ok_or(Refusal::NotFound)?;
            if members.chat_member(target).is_none_or(|(_, r)| r != room) {
                return Err(Refusal::NotFound);
            }
            let until = now_ms().saturating_add(minutes.saturating_mul(60_000));
            let name = spelled.to_owned();
            (Action::Mute { name, until }, until)
        };
        let key = match &action {
            Action::Mute { name, .. } | Action::Unmute { name } => moderation::mute_rule(name),
            _ => return Err(Refusal::Failed),
        };
        Ok(store::Request::Moderate(store::Moderation {
            asker: Some(asker),
            // Who muted it, for the member's next welcome.
            rules: vec![Rule {
                room: room.clone(),
                key,
                value: by.clone(),
                until,
            }],
            room,
            by,
            action,
        }))
    }

    /// A new member of ours asks the backend for a name and its room's history.
    pub(super) fn join(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
        wanted: Option<String>,
        since: Option<Since>,
    ) {
        let seq = self.begin_load(post, id);
        let join = Request::Join {
            member: id,
            seq,
            names: offered(wanted),
            room: room.to_owned(),
            since,
        };
        if !self.backend.ask(join) {
            self.join_failed(members, post, id);
        }
    }

    /// A member of ours moves to `room`, or asks for its own room's history again.
    pub(super) fn switch(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
    ) {
        let seq = self.begin_load(post, id);
        let switch = Request::Switch {
            member: id,
            seq,
            room: room.to_owned(),
        };
        if !self.backend.ask(switch) {
            self.join_failed(members, post, id);
        }
    }

    /// Numbers a new load of member `id` and holds its news for the welcome, which
    /// waits for the join (or move) to come back on the bus, and for the history.
    fn begin_load(&mut self, post: &mut Post, id: ConnId) -> u64 {
        self.loads += 1;
        let seq = self.loads;
        post.hold(id);
        self.backend.pending.insert(id, pending(seq));
        seq
    }

    /// A member of ours asks for a new name; it is its once the backend says so.
    pub(super) fn rename(&mut self, members: &Members, post: &mut Post, id: ConnId, to: String) {
        if members.find(&to).is_some_and(|(owner, _)| owner != id) {
            let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
            return self.send_error(members, post, id, &error);
        }
        let key = chat::name_key(&to);
        if !self.backend.ask(Request::Rename {
            member: id,
            to,
            key,
        }) {
            self.unavailable(members, post, id, "names cannot be changed now, try again");
        }
    }

    /// Key `key` was stored as `line`: the members that sent it again meanwhile get it.
    pub(super) fn key_stored(
        &mut self,
        members: &Members,
        post: &mut Post,
        key: &Key,
        line: &Arc<ChatLine>,
    ) {
        for id in self.keys.stored(key, line) {
            post.deliver_answer(members, id, Message::text(chat::encode(&**line)));
            post.settle(members, id);
        }
    }

    /// Key `key` was not stored: the members that sent it again meanwhile are told.
    pub(super) fn key_failed(&mut self, members: &Members, post: &mut Post, key: &Key) {
        for id in self.keys.failed(key) {
            let why = "the message could not be stored, so nobody got it; try again";
            self.unavailable(members, post, id, why);
            post.settle(members, id);
        }
    }

    /// Nobody can tell yet whether key `key` was stored: the members that sent it
    /// again meanwhile hear `unconfirmed`, and so will later ones.
    pub(super) fn key_in_doubt(&mut self, members: &Members, post: &mut Post, key: &Key) {
        for id in self.keys.in_doubt(key) {
            self.send_error(members, post, id, &unconfirmed());
            post.settle(members, id);
        }
    }

    /// A member of ours is gone: it stays in its room, without an outbox, until the
    /// backend tells its leave (on a cluster, to every node).
    pub(super) fn member_left(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        reason: LeaveReason,
    ) {
        members.detach(id);
        let asked = self.backend.pending.remove(&id).is_some();
        let named = members
            .chat_member(id)
            .is_some_and(|(name, _)| !name.is_empty());
        if !asked && !named {
            // Its join never reached the backend, or failed there: nobody else ever
            // heard of it, and no leave will come back for it.
            members.remove(id);
            self.backend.forget(id);
            return;
        }
        if !self.backend.leave(id, reason.as_str()) {
            // The backend is behind: gone here at once; the others hear it when the
            // backend takes the leave.
            self.drop_member(members, post, id, reason.as_str());
        }
    }

    /// A request of a member that has no name yet waits for it; `Some` gives it back
    /// to be handled now.
    pub(super) fn early(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        msg: ClientMessage,
    ) -> Option<ClientMessage> {
        let Some(pending) = self.backend.pending.get_mut(&id).filter(|p| !p.marked) else {
            return Some(msg);
        };
        if pending.early.len() < MAX_EARLY {
            pending.early.push(Early::Request(msg));
        } else {
            let error = ChatError::new(ErrorCode::RateLimited, "wait for the welcome");
            self.send_error(members, post, id, &error);
        }
        None
    }

    /// A reply to member `id`'s own input, behind the answers to what it asked
    /// before: it waits with its requests if they wait for its name.
    pub(super) fn reply(&mut self, members: &Members, post: &mut Post, id: ConnId, msg: Message) {
        match self.backend.pending.get_mut(&id).filter(|p| !p.marked) {
            Some(pending) if pending.early.len() < MAX_EARLY => {
                pending.early.push(Early::Reply(msg));
            }
            _ => post.deliver(members, id, msg),
        }
    }

    /// A member leaves its room, as the backend (or its absence) says.
    pub(super) fn drop_member(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        reason: &str,
    ) {
        if let Some((name, room)) = members.chat_member(id) {
            let (name, room) = (name.to_owned(), room.to_owned());
            self.leave(members, post, id, &room, &name, reason);
        }
        if members.outbox(id).is_some() {
            // Still connected here: the others took this node for dead while it could
            // not hear them, and what they said meanwhile may not all reach this
            // member in order. It reconnects and resumes from the store, which has
            // everything: a gap it is not told of is never left.
            members.clear_name(id);
            self.backend.forget(id);
            let why = "this server lost touch with the others for a while: reconnect to get \
                       what you missed";
            self.send_off(members, post, id, why);
        } else {
            members.remove(id);
            self.backend.forget(id);
        }
    }

    /// Tells member `id` why in an `unavailable` error, and closes it with 1012, so
    /// that it reconnects (and resumes where it was).
    pub(super) fn send_off(&self, members: &Members, post: &mut Post, id: ConnId, why: &str) {
        let error = ChatError::new(ErrorCode::Unavailable, why);
        post.deliver(members, id, Message::text(error.to_json()));
        if let Some(outbox) = members.outbox(id) {
            outbox.reconnect();
        }
    }

    /// A join or move could not be made: the member is told, then asked to reconnect.
    pub(super) fn join_failed(&mut self, members: &mut Members, post: &mut Post, id: ConnId) {
        self.backend.pending.remove(&id);
        let unnamed = members
            .chat_member(id)
            .is_some_and(|(name, _)| name.is_empty());
        if unnamed && members.outbox(id).is_none() {
            // Gone before the backend ever heard of it: nothing to wait for.
            members.remove(id);
            return;
        }
        let error = ChatError::new(
            ErrorCode::Unavailable,
            "the chat cannot be joined now; reconnect in a moment",
        );
        post.release(members, id, Message::text(error.to_json()));
        if let Some(outbox) = members.outbox(id) {
            outbox.reconnect();
        }
    }

    /// The rooms with people in them, busiest first, then by name.
    fn list(&self) -> Vec<RoomInfo<'_>> {
        let mut rooms: Vec<RoomInfo<'_>> = self
            .rooms
            .iter()
            .filter(|(_, room)| !room.members.is_empty())
            .map(|(name, room)| RoomInfo {
                name,
                members: room.members.len(),
            })
            .collect();
        rooms.sort_by(|a, b| b.members.cmp(&a.members).then(a.name.cmp(b.name)));
        rooms
    }

    /// Takes `id` (called `name`) out of room `room_name` and tells the others why.
    pub(super) fn leave(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        room_name: &str,
        name: &str,
        reason: &str,
    ) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let Some(at) = room.members.iter().position(|&m| m == id) else {
            // Never announced here (its join had not come back): nobody to tell.
            return;
        };
        room.members.remove(at);
        if room.members.is_empty() {
            self.rooms.remove(room_name);
            self.backend.room_gone(room_name);
            return;
        }
        let json = chat::encode(&ServerMessage::Leave {
            room: room_name,
            name,
            reason,
            ts: now_ms(),
        });
        self.broadcast(members, post, room_name, None, &Message::text(json));
    }

    /// Sends an `error` to member `id`.
    pub(super) fn send_error(
        &self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        error: &ChatError,
    ) {
        metrics::bump(&self.metrics.chat_errors);
        post.deliver(members, id, Message::text(error.to_json()));
    }

    /// `direct` goes to the named user, wherever it is, with a copy to the sender.
    fn direct(&self, members: &Members, post: &mut Post, id: ConnId, to: &str, text: &str) {
        let Some((from, _)) = members.chat_member(id) else {
            return;
        };
        let Some((target, to)) = members.find(to) else {
            let error = ChatError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {to} is connected"),
            );
            return self.send_error(members, post, id, &error);
        };
        let json = chat::encode(&ServerMessage::Direct {
            from,
            to,
            text,
            ts: now_ms(),
        });
        let msg = Message::text(json);
        if members.outbox(target).is_none() {
            // On another node (or leaving): the backend takes it there.
            let to = self.backend.key(target);
            let json = msg.to_text().unwrap_or_default().to_owned();
            let direct = store::Request::Direct { from: id, to, json };
            if !self.ask(direct) {
                let error = ChatError::new(
                    ErrorCode::Unavailable,
                    "the direct message could not be sent, try again",
                );
                return self.send_error(members, post, id, &error);
            }
        } else {
            post.deliver(members, target, msg.clone());
        }
        if target != id {
            post.deliver(members, id, msg);
        }
    }

    /// The names of a room's members, in order of arrival.
    pub(super) fn names<'m>(&self, members: &'m Members, room: &str) -> Vec<&'m str> {
        let Some(room) = self.rooms.get(room) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|&id| members.chat_member(id).map(|(name, _)| name))
            .collect()
    }

    pub(super) fn broadcast(
        &self,
        members: &Members,
        post: &mut Post,
        room: &str,
        except: Option<ConnId>,
        msg: &Message,
    ) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        for &id in &room.members {
            if Some(id) != except {
                post.deliver(members, id, msg.clone());
            }
        }
    }
}

/// A request to empty `room`'s history, made by `by`; the backend says how far.
fn clear_request(asker: Asker, (room, by): (String, String)) -> store::Request {
    store::Request::Moderate(store::Moderation {
        asker: Some(asker),
        room,
        by,
        action: Action::Clear {
            through: 0,
            files: Vec::new(),
        },
        rules: Vec::new(),
    })
}

/// Whether chat member `id` is an admin (it signed in as one): may delete anyone's
/// message, kick, mute, set the room and clear it.
fn is_admin(members: &Members, id: ConnId) -> bool {
    members.is_admin(id)
}

/// The error for a message the store has not confirmed (or not yet: it is on its way).
pub(super) fn unconfirmed() -> ChatError {
    ChatError::new(
        ErrorCode::Unconfirmed,
        "the store has not said yet whether it kept this message: it reaches the room once \
         the store answers again; do not send it again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_offers_the_name_then_numbered_variants_in_lower_case_too() {
        let names = offered(Some("Ann".into()));
        assert_eq!(names[0], ("Ann".into(), "ann".into()));
        assert_eq!(names[1], ("Ann-2".into(), "ann-2".into()));
        assert_eq!(names.len() as u64, NAME_VARIANTS);
        assert!(offered(None).is_empty());
    }
}
