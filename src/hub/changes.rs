//! How shared chat state changes: on the backend's word, whichever backend it is.
//!
//! A local request that changes shared state (join, move, rename, leave, a message)
//! goes to the backend, which makes the change and tells it back as a [`Change`];
//! the hub applies every change when it comes, its own members' and (on a cluster)
//! other nodes' alike. So every node holds the same rooms, names and messages in the
//! same order, and a member on another node is a member like any other, only without
//! an outbox. A single node's backend is a cluster of one: the same changes, from the
//! store writer, at once.
//!
//! A join (or a move) comes back with the room's newest id at that moment: the
//! member's history is everything up to it, read by the backend, and what comes after
//! it is live. The welcome goes out once both the history and that change are here,
//! whichever comes first; the member's other news waits behind it.
//!
//! Every committed message reaches a room's members here through one function,
//! [`ChatRooms::deliver`], encoded to JSON once, the same bytes queued for every
//! member. A member's `welcome` carries history, which the backend reads; until it
//! comes back the member's other news is held (see `Post`), so the welcome is
//! always first.

use super::backend::{Early, Pending};
use super::chat::ChatRooms;
use super::members::{Members, Role};
use super::moderation;
use super::{LeaveReason, Post};
use crate::base::{ConnId, now_ms};
use crate::chat::{self, ChatError, ChatLine, ErrorCode, ServerMessage};
use crate::metrics;
use crate::store::{
    self, Action, Answer, ApiAnswer, Asker, Author, Change, Deleted, Event, Moderated, Present,
    Refusal, Request, Rule, StoreError,
};
use std::collections::{HashMap, HashSet};
use std::mem;
use std::sync::Arc;
use std::time::Instant;
use tungstenite::Message;

impl ChatRooms {
    /// The history the backend read for a member of ours.
    pub(super) fn loaded(&mut self, members: &Members, post: &mut Post, loaded: Answer) {
        let Answer::Loaded { member, seq, .. } = &loaded else {
            return;
        };
        let member = *member;
        let Some(pending) = self
            .backend
            .pending
            .get_mut(&member)
            .filter(|p| p.seq == *seq)
        else {
            return;
        };
        pending.loaded = Some(loaded);
        if pending.marked {
            self.welcome_now(members, post, member);
        }
    }

    /// Carries out what the backend answered.
    pub(super) fn answer(&mut self, members: &Members, post: &mut Post, answer: Answer) {
        match answer {
            Answer::Committed(lines) => {
                // The messages reach their rooms as changes; here their authors hear
                // what became of them.
                for (author, line) in lines {
                    self.committed(members, post, author, line);
                }
            }
            Answer::Resolved(lines) => {
                // Their authors were told `unconfirmed` already; their keys learn now.
                for (author, line) in lines {
                    let key = match &author {
                        Author::Member { key, .. } | Author::Api { key, .. } => key.as_ref(),
                    };
                    if let Some(key) = key {
                        match &line {
                            Ok(line) | Err(StoreError::AlreadyStored(line)) => {
                                self.key_stored(members, post, key, line);
                            }
                            Err(_) => self.key_failed(members, post, key),
                        }
                    }
                }
            }
            loaded @ Answer::Loaded { .. } => self.loaded(members, post, loaded),
            Answer::Deletion { asker, outcome } => self.deletion(members, post, asker, outcome),
            Answer::Moderation { asker, outcome } => {
                self.moderation_answer(members, post, asker, outcome);
            }
            Answer::Page {
                member,
                room,
                messages,
                more,
                failed,
            } => {
                // Ahead of what waited behind it: the page answers an earlier request.
                let json = if failed {
                    metrics::bump(&self.metrics.store_errors);
                    let error =
                        ChatError::new(ErrorCode::Unavailable, "older messages cannot be read now");
                    error.to_json()
                } else {
                    chat::encode(&ServerMessage::History {
                        room: &room,
                        messages: messages.iter().map(|l| &**l).collect(),
                        more,
                    })
                };
                post.deliver_answer(members, member, Message::text(json));
                post.settle(members, member);
            }
        }
    }

    /// Sends a member its welcome with the history `loaded` holds (unless it is in
    /// another room by now): first of all, then what was held for it, then
    /// `unavailable` if the history could not be read.
    pub(super) fn welcome(&self, members: &Members, post: &mut Post, loaded: Answer) {
        let Answer::Loaded {
            member,
            room,
            history,
            last_id,
            resumed,
            failed,
            ..
        } = loaded
        else {
            return;
        };
        let Some((name, current)) = members.chat_member(member) else {
            return;
        };
        if current != room {
            return;
        }
        let role = if members.is_admin(member) {
            chat::Role::Admin
        } else {
            chat::Role::Member
        };
        let json = chat::encode(&ServerMessage::Welcome {
            name,
            room: &room,
            role,
            members: self.names(members, &room),
            history: history.iter().map(|l| &**l).collect(),
            epoch: &self.epoch,
            last_id,
            resumed,
            wire: members.wire(member),
            limits: self.limits,
            settings: self.moderation.settings(&room),
        });
        post.release(members, member, Message::text(json));
        // A muted member that comes back is told at once, not at its first post.
        if let Some((by, until)) = self.moderation.mute_of(&room, name) {
            let json = chat::encode(&ServerMessage::Muted {
                room: &room,
                name,
                by,
                until,
            });
            post.deliver(members, member, Message::text(json));
        }
        if failed {
            self.unavailable(
                members,
                post,
                member,
                "the room's history cannot be read now",
            );
        }
    }

    /// Gives up the joins (and moves) the backend has not finished in the time
    /// allowed: their members are told and asked to reconnect.
    pub(super) fn expire(&mut self, members: &mut Members, post: &mut Post, now: Instant) {
        for id in self.backend.overdue(now) {
            self.give_up(members, post, id);
        }
    }

    /// Gives up member `id`'s join (or move), which the backend may have made all the
    /// same: it is told to forget the member, and the member to reconnect.
    fn give_up(&mut self, members: &mut Members, post: &mut Post, id: ConnId) {
        self.backend.leave(id, LeaveReason::Closed.as_str());
        self.join_failed(members, post, id);
    }

    /// Tells the author of one message what became of it.
    fn committed(
        &mut self,
        members: &Members,
        post: &mut Post,
        author: Author,
        line: Result<Arc<ChatLine>, StoreError>,
    ) {
        match (author, line) {
            (Author::Member { id, key }, Ok(line)) => {
                if let Some(key) = &key {
                    self.key_stored(members, post, key, &line);
                }
                post.settle(members, id);
            }
            (Author::Member { id, key }, Err(StoreError::Failed)) => {
                if let Some(key) = &key {
                    self.key_failed(members, post, key);
                }
                let why = "the message could not be stored, so nobody got it; try again";
                self.unavailable(members, post, id, why);
                post.settle(members, id);
            }
            // In, not confirmed: the backend says later what became of it (its key
            // stays pending until then), and the room sees it then.
            (Author::Member { id, key }, Err(StoreError::Unconfirmed)) => {
                metrics::bump(&self.metrics.store_errors);
                if let Some(key) = &key {
                    self.key_in_doubt(members, post, key);
                }
                self.send_error(members, post, id, &super::chat::unconfirmed());
                post.settle(members, id);
            }
            // The HTTP thread may have given up waiting; the message is delivered all
            // the same.
            (Author::Api { reply, key }, Ok(line)) => {
                if let Some(key) = &key {
                    self.key_stored(members, post, key, &line);
                }
                let _ = reply.send(ApiAnswer::Posted(line));
            }
            (Author::Api { reply, key }, Err(StoreError::Failed)) => {
                metrics::bump(&self.metrics.store_errors);
                if let Some(key) = &key {
                    self.key_failed(members, post, key);
                }
                let _ = reply.send(ApiAnswer::Unavailable);
            }
            (Author::Api { reply, key }, Err(StoreError::Unconfirmed)) => {
                metrics::bump(&self.metrics.store_errors);
                if let Some(key) = &key {
                    self.key_in_doubt(members, post, key);
                }
                let _ = reply.send(ApiAnswer::Accepted);
            }
            // Sent again under a key that was stored before (through another node,
            // say): nothing was stored or published; its author gets the first.
            (Author::Member { id, key }, Err(StoreError::AlreadyStored(line))) => {
                if let Some(key) = &key {
                    self.key_stored(members, post, key, &line);
                }
                post.deliver_answer(members, id, Message::text(chat::encode(&*line)));
                post.settle(members, id);
            }
            (Author::Api { reply, key }, Err(StoreError::AlreadyStored(line))) => {
                if let Some(key) = &key {
                    self.key_stored(members, post, key, &line);
                }
                let _ = reply.send(ApiAnswer::Posted(line));
            }
        }
    }

    /// Tells who asked for a deletion how it went (the room heard of one made as a
    /// change already); a deletion made is logged and counted here, on the node that
    /// asked for it, once however many nodes tell their rooms.
    fn deletion(
        &mut self,
        members: &Members,
        post: &mut Post,
        asker: Asker,
        outcome: Result<Deleted, Refusal>,
    ) {
        if outcome.is_ok() {
            metrics::bump(&self.metrics.deletes);
        }
        match (asker, outcome) {
            (Asker::Member(id), Ok(deleted)) => {
                // Rare, and only of a member's own messages (or an admin's doing): a
                // log line here cannot be made to flood.
                let client = self.rooms_kept.clients.get(&id);
                log::info!(
                    "conn {id} {}: deleted message {} of room {} (by {})",
                    client.map_or_else(|| "?".to_owned(), ToString::to_string),
                    deleted.id,
                    deleted.room,
                    crate::base::escape(&deleted.by)
                );
                post.settle(members, id);
            }
            (Asker::Member(id), Err(refusal)) => {
                let error = match refusal {
                    Refusal::NotFound => ChatError::new(
                        ErrorCode::NotFound,
                        "there is no such message in this room (or it is deleted already)",
                    ),
                    Refusal::Forbidden => ChatError::new(
                        ErrorCode::Forbidden,
                        "only your own messages can be deleted",
                    ),
                    Refusal::Failed => {
                        metrics::bump(&self.metrics.store_errors);
                        ChatError::new(ErrorCode::Unavailable, "the message cannot be deleted now")
                    }
                };
                post.deliver_answer(members, id, Message::text(error.to_json()));
                metrics::bump(&self.metrics.chat_errors);
                post.settle(members, id);
            }
            (Asker::Api(reply), outcome) => {
                let answer = match outcome {
                    Ok(deleted) => ApiAnswer::Deleted(deleted),
                    Err(Refusal::NotFound) => ApiAnswer::NotFound,
                    // The API token may delete anything.
                    Err(Refusal::Forbidden | Refusal::Failed) => {
                        metrics::bump(&self.metrics.store_errors);
                        ApiAnswer::Unavailable
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Applies a moderation the backend made: its rules, then what it does to the
    /// room and to our members in it.
    pub(super) fn moderated(&mut self, members: &Members, post: &mut Post, moderated: Moderated) {
        self.moderation.apply(&moderated.rules);
        let Moderated {
            room, by, action, ..
        } = moderated;
        match action {
            Action::Kick {
                name,
                reason,
                until,
            } => {
                let json = chat::encode(&ServerMessage::Kicked {
                    room: &room,
                    name: &name,
                    by: &by,
                    reason: &reason,
                    until,
                });
                let msg = Message::text(json);
                if let Some(people) = self.rooms.get(&room) {
                    for &id in &people.members {
                        post.deliver_answer(members, id, msg.clone());
                    }
                }
                let Some((target, _)) = members.find(&name) else {
                    return;
                };
                let Some(outbox) = members.outbox(target) else {
                    return;
                };
                if members.chat_member(target).is_none_or(|(_, r)| r != room) {
                    return;
                }
                outbox.kick(if reason.is_empty() {
                    moderation::NO_REASON
                } else {
                    &reason
                });
                // What only this node knows of the member binds it too, everywhere.
                let rule = |key: String| Rule {
                    room: room.clone(),
                    key,
                    value: reason.clone(),
                    until,
                };
                let rules: Vec<Rule> = [
                    self.moderation
                        .sessions
                        .get(&target)
                        .map(moderation::session_rule),
                    self.rooms_kept
                        .clients
                        .get(&target)
                        .copied()
                        .map(moderation::address_rule),
                ]
                .into_iter()
                .flatten()
                .filter(|key| !self.moderation.has(&room, key))
                .map(rule)
                .collect();
                if !rules.is_empty() {
                    let bar = store::Request::Moderate(store::Moderation {
                        asker: None,
                        room,
                        by,
                        action: Action::Bar,
                        rules,
                    });
                    // Best effort: the name is bound already.
                    let _ = self.backend.ask(bar);
                }
            }
            Action::Mute { name, until } => {
                // To the member alone: the room is not told.
                let json = chat::encode(&ServerMessage::Muted {
                    room: &room,
                    name: &name,
                    by: &by,
                    until,
                });
                self.tell_member(members, post, &room, &name, Message::text(json));
            }
            Action::Unmute { name } => {
                let json = chat::encode(&ServerMessage::Unmuted {
                    room: &room,
                    name: &name,
                    by: &by,
                });
                self.tell_member(members, post, &room, &name, Message::text(json));
            }
            Action::Clear { through, .. } => {
                self.keys.cleared(&room, through);
                let json = chat::encode(&ServerMessage::Cleared {
                    room: &room,
                    by: &by,
                    through,
                });
                let msg = Message::text(json);
                if let Some(people) = self.rooms.get(&room) {
                    for &id in &people.members {
                        post.deliver_answer(members, id, msg.clone());
                    }
                }
            }
            Action::Room { settings } => {
                let json = chat::encode(&ServerMessage::Room {
                    room: &room,
                    by: &by,
                    settings: &settings,
                });
                let msg = Message::text(json);
                if let Some(people) = self.rooms.get(&room) {
                    for &id in &people.members {
                        post.deliver_answer(members, id, msg.clone());
                    }
                }
            }
            Action::Bar => {}
        }
    }

    /// Sends `msg` to member `name` of `room`, if it is connected here.
    fn tell_member(
        &self,
        members: &Members,
        post: &mut Post,
        room: &str,
        name: &str,
        msg: Message,
    ) {
        if let Some((id, _)) = members.find(name)
            && members.outbox(id).is_some()
            && members.chat_member(id).is_some_and(|(_, r)| r == room)
        {
            post.deliver_answer(members, id, msg);
        }
    }

    /// Tells who asked for a moderation how it went (the room heard of it as a change
    /// already); an action taken is logged and counted here, on the node that asked
    /// for it, once however many nodes tell their rooms.
    pub(super) fn moderation_answer(
        &mut self,
        members: &Members,
        post: &mut Post,
        asker: Option<Asker>,
        outcome: Result<Moderated, Refusal>,
    ) {
        if let Ok(moderated) = &outcome {
            moderation::count(&self.metrics, &moderated.action);
        }
        match (asker, outcome) {
            (None, _) => {}
            (Some(Asker::Member(id)), Ok(moderated)) => {
                let client = self.rooms_kept.clients.get(&id);
                log::info!(
                    "conn {id} {}: {}",
                    client.map_or_else(|| "?".to_owned(), ToString::to_string),
                    moderation::describe(&moderated)
                );
                post.settle(members, id);
            }
            (Some(Asker::Member(id)), Err(refusal)) => {
                let error = moderation::refusal_error(refusal);
                if refusal == Refusal::Failed {
                    metrics::bump(&self.metrics.store_errors);
                }
                post.deliver_answer(members, id, Message::text(error.to_json()));
                metrics::bump(&self.metrics.chat_errors);
                post.settle(members, id);
            }
            (Some(Asker::Api(reply)), outcome) => {
                let answer = match outcome {
                    Ok(moderated) => ApiAnswer::Moderated(moderated),
                    Err(Refusal::NotFound) => ApiAnswer::NotFound,
                    Err(Refusal::Forbidden | Refusal::Failed) => {
                        metrics::bump(&self.metrics.store_errors);
                        ApiAnswer::Unavailable
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }
    /// Everything the backend says but a relay message.
    pub(super) fn backend_event(&mut self, members: &mut Members, post: &mut Post, event: Event) {
        self.backend.pay_owed();
        match event {
            Event::Answer(answer) => self.answer(members, post, answer),
            Event::Change(change) => self.change(members, post, change),
            Event::Relay { .. } => {}
            Event::Resubscribed => {
                // What was published meanwhile is lost, the changes that would have
                // named the members waiting for one among it: they join again.
                for id in self.backend.unmarked() {
                    self.give_up(members, post, id);
                }
                self.resync(members);
            }
            Event::Reconnected => self.resync(members),
            Event::NewEpoch(epoch) => self.new_epoch(members, epoch),
            Event::JoinFailed { member } => self.join_failed(members, post, member),
            Event::Failed { member, what } => self.unavailable(members, post, member, what),
            Event::NameTaken { member, to } => {
                let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
                self.send_error(members, post, member, &error);
            }
            Event::CatchUp { lines } => {
                for line in lines {
                    self.deliver(members, post, &line, true);
                }
            }
            Event::Presence(present) => self.presence(members, post, present),
            Event::Displaced(ids) => {
                for id in ids {
                    self.displaced(members, post, id);
                }
            }
        }
    }

    /// Applies one change the backend made.
    fn change(&mut self, members: &mut Members, post: &mut Post, change: Change) {
        let backend = &mut self.backend;
        match change {
            // The hub hands these to the doors before they get here.
            Change::EndSession { .. } => {}
            Change::Msg(line) => {
                self.rooms_kept.kept(&line.room);
                self.deliver(members, post, &line, false);
            }
            Change::Deleted(deleted) => {
                self.keys.deleted(&deleted.room, deleted.id);
                // Like a message: news that answers nothing else a member waits for.
                let json = chat::encode(&ServerMessage::Deleted {
                    room: &deleted.room,
                    id: deleted.id,
                    by: &deleted.by,
                });
                let msg = Message::text(json);
                if let Some(room) = self.rooms.get(&deleted.room) {
                    for &id in &room.members {
                        post.deliver_answer(members, id, msg.clone());
                    }
                }
            }
            Change::Moderated(moderated) => self.moderated(members, post, moderated),
            Change::Join {
                m,
                name,
                room,
                last,
                ts,
                restore,
            } => {
                let id = match backend.ours(&m) {
                    Some(id) => match id.parse() {
                        Ok(id) if members.get(id).is_some() => id,
                        Ok(id) => {
                            // Put back by a resync asked for before it went: the
                            // others list it now, so it leaves again, everywhere.
                            backend.leave(id, LeaveReason::Closed.as_str());
                            return;
                        }
                        Err(_) => return,
                    },
                    None if restore && backend.remote.contains_key(&m) => return,
                    None => backend.remote_id(&m),
                };
                let ours = backend.ours(&m).is_some();
                let listed = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.members.contains(&id));
                if listed && (restore || !ours) {
                    // Known already (from the list of everyone at start, or from
                    // before the backend went away): no news.
                    return;
                }
                members.join_named(id, &name, &room);
                self.rooms.entry(room.clone()).or_default().members.push(id);
                self.announce_join(members, post, id, &room, &name, ts);
                if ours && !restore {
                    self.marked(members, post, id, last);
                }
            }
            Change::Switch { m, room, last, ts } => {
                let Some(id) = backend.id(&m) else {
                    return;
                };
                let ours = backend.ours(&m).is_some();
                let Some((name, old)) = members.chat_member(id) else {
                    return;
                };
                let (name, old) = (name.to_owned(), old.to_owned());
                if old != room {
                    self.leave(
                        members,
                        post,
                        id,
                        &old,
                        &name,
                        LeaveReason::Switched.as_str(),
                    );
                    members.move_to(id, &room);
                    self.rooms.entry(room.clone()).or_default().members.push(id);
                    self.announce_join(members, post, id, &room, &name, ts);
                }
                if ours {
                    self.marked(members, post, id, last);
                }
            }
            Change::Leave { m, reason } => {
                if let Some(id) = backend.id(&m) {
                    self.drop_member(members, post, id, &reason);
                }
            }
            Change::Rename { m, to, ts } => {
                let Some(id) = backend.id(&m) else {
                    return;
                };
                let Some((from, room)) = members.chat_member(id) else {
                    return;
                };
                let (from, room) = (from.to_owned(), room.to_owned());
                members.join_named(id, &to, &room);
                let json = chat::encode(&ServerMessage::Rename {
                    room: &room,
                    from: &from,
                    to: &to,
                    ts,
                });
                self.broadcast(members, post, &room, None, &Message::text(json));
            }
            Change::Direct { to, json } => {
                if let (Some(_), Some(id)) = (backend.ours(&to), backend.id(&to)) {
                    post.deliver(members, id, Message::text(json));
                }
            }
        }
    }

    fn announce_join(
        &self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
        name: &str,
        ts: u64,
    ) {
        let json = chat::encode(&ServerMessage::Join { room, name, ts });
        self.broadcast(members, post, room, Some(id), &Message::text(json));
    }

    /// The join (or move) of a member of ours is back from the backend: messages
    /// after `last` are live for it.
    fn marked(&mut self, members: &mut Members, post: &mut Post, id: ConnId, last: u64) {
        let backend = &mut self.backend;
        backend.floors.insert(id, last);
        let Some(pending) = backend.pending.get_mut(&id) else {
            return;
        };
        pending.marked = true;
        let early = mem::take(&mut pending.early);
        if pending.loaded.is_some() {
            self.welcome_now(members, post, id);
        }
        for early in early {
            match early {
                Early::Request(msg) => self.handle(members, post, id, msg),
                Early::Reply(msg) => post.deliver(members, id, msg),
            }
        }
    }

    /// Sends member `id` its welcome, now that both its history and its join are here.
    fn welcome_now(&mut self, members: &Members, post: &mut Post, id: ConnId) {
        let pending = self.backend.pending.remove(&id);
        if let Some(Pending {
            loaded: Some(loaded),
            ..
        }) = pending
        {
            self.welcome(members, post, loaded);
        }
    }

    /// A committed message, to its room's members here: once, and not to whom it was
    /// history. The only way a message reaches a room, whichever backend committed
    /// it. A message that comes live, in its order, is after every member's join;
    /// only a catch-up (or a member between its join and its welcome) needs looking at.
    ///
    /// A room's ids follow one another. One that comes after a hole (its news was lost
    /// while the subscription was down, and came neither live nor in time in the
    /// catch-up) is not delivered past it: each member who lacks the missing ones is
    /// told to reconnect, and resumes from the store, which has them all, in order.
    ///
    /// Nothing is logged here: this runs for every message, and a log line can block
    /// on a full stderr, the hub with it.
    fn deliver(&mut self, members: &Members, post: &mut Post, line: &ChatLine, catch_up: bool) {
        let Some(room) = self.rooms.get(&line.room) else {
            return;
        };
        let backend = &mut self.backend;
        let delivered = backend.delivered.entry(line.room.clone()).or_insert(0);
        if line.id <= *delivered {
            return;
        }
        // The newest this node had of the room before; 0 when it had none yet.
        let before = mem::replace(delivered, line.id);
        let hole = before != 0 && line.id > before + 1;
        let mut lacking = Vec::new();
        let check = catch_up || hole || !backend.pending.is_empty() || !backend.missed.is_empty();
        let msg = Message::text(chat::encode(line));
        for &id in &room.members {
            // Usually nothing to look at: a live message in order, nobody joining.
            if check {
                let floor = backend.floors.get(&id).copied();
                if backend.is_muted(id)
                    || backend.missed.contains(&id)
                    || floor.is_some_and(|floor| line.id <= floor)
                {
                    continue;
                }
                if hole
                    && floor.is_none_or(|floor| floor + 1 < line.id)
                    && members.outbox(id).is_some()
                {
                    lacking.push(id);
                    continue;
                }
            }
            // A member of another node has no outbox: nothing is queued.
            post.deliver_answer(members, id, msg.clone());
        }
        for id in lacking {
            self.backend.missed.insert(id);
            let why = "this server missed some of the room's messages: reconnect to get them";
            self.send_off(members, post, id, why);
        }
    }

    /// After a gap in the changes: ask for this node's members to be put back, for
    /// what each room missed, and for who is where now.
    fn resync(&self, members: &Members) {
        let backend = &self.backend;
        let ours: Vec<(ConnId, String, String)> = members
            .local()
            .filter_map(|(id, role)| match role {
                Role::Chat { name, room } if !name.is_empty() => {
                    Some((id, name.clone(), room.clone()))
                }
                _ => None,
            })
            .collect();
        let mut rooms: HashMap<String, u64> = HashMap::new();
        for (id, _, room) in &ours {
            let after = backend
                .delivered
                .get(room)
                .copied()
                .or_else(|| backend.floors.get(id).copied())
                .unwrap_or(0);
            let entry = rooms.entry(room.clone()).or_insert(after);
            *entry = (*entry).max(after);
        }
        let resync = Request::Resync {
            epoch: self.epoch.clone(),
            members: ours,
            rooms: rooms.into_iter().collect(),
        };
        if !backend.ask(resync) {
            log::debug!("hub: the backend is busy; the next reconnection resyncs");
        }
    }

    /// The backend lost its data: ids start again, so every chat client here reconnects
    /// (it gets `resumed: false`), and nothing of the old cluster is kept.
    fn new_epoch(&mut self, members: &mut Members, epoch: String) {
        self.epoch = epoch;
        let chat: Vec<ConnId> = self
            .rooms
            .values()
            .flat_map(|room| room.members.iter().copied())
            .chain(self.backend.pending.keys().copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for id in chat {
            if let Some(outbox) = members.outbox(id) {
                outbox.reconnect();
            }
            members.remove(id);
        }
        self.rooms.clear();
        let backend = &mut self.backend;
        backend.pending.clear();
        backend.floors.clear();
        backend.delivered.clear();
        backend.missed.clear();
        backend.remote.clear();
        backend.keys.clear();
        // Other nodes may have found out first, and their members be back already:
        // ask who is there now (nobody of ours to put back).
        self.resync(members);
    }

    /// Member `id` was not put back after a gap: its name is someone else's now. It
    /// leaves its room here, and is told why and asked to reconnect.
    fn displaced(&mut self, members: &mut Members, post: &mut Post, id: ConnId) {
        if let Some((name, room)) = members.chat_member(id) {
            let (name, room) = (name.to_owned(), room.to_owned());
            self.leave(
                members,
                post,
                id,
                &room,
                &name,
                LeaveReason::Closed.as_str(),
            );
        }
        members.clear_name(id);
        self.backend.forget(id);
        let why = "while this server was cut off, someone else took your name: reconnect to get \
                   one";
        self.send_off(members, post, id, why);
    }

    /// Who is in the cluster, after a gap: the members of other nodes are made to
    /// match, with the news told as joins, moves and leaves.
    fn presence(&mut self, members: &mut Members, post: &mut Post, present: Vec<Present>) {
        let backend = &self.backend;
        let listed: HashSet<&str> = present.iter().map(|p| p.key.as_str()).collect();
        let gone: Vec<String> = backend
            .remote
            .keys()
            .filter(|key| !listed.contains(key.as_str()))
            .cloned()
            .collect();
        // Members of ours who disconnected while the news of their leave could be lost
        // (the subscription was down when it went out): Redis has them no more.
        let departed = self
            .rooms
            .values()
            .flat_map(|room| room.members.iter().copied())
            .filter(|&id| !backend.keys.contains_key(&id) && members.outbox(id).is_none())
            .map(|id| backend.key(id))
            .filter(|key| !listed.contains(key.as_str()));
        let mut changes: Vec<Change> = gone
            .into_iter()
            .chain(departed)
            .map(|m| Change::Leave {
                m,
                reason: "closed".into(),
            })
            .collect();
        for p in present {
            if backend.ours(&p.key).is_some() {
                continue;
            }
            let known = backend
                .remote
                .get(&p.key)
                .and_then(|&id| members.chat_member(id));
            match known {
                None => changes.push(Change::Join {
                    m: p.key,
                    name: p.name,
                    room: p.room,
                    last: 0,
                    ts: now_ms(),
                    restore: false,
                }),
                Some((name, room)) => {
                    if room != p.room {
                        changes.push(Change::Switch {
                            m: p.key.clone(),
                            room: p.room,
                            last: 0,
                            ts: now_ms(),
                        });
                    }
                    if name != p.name {
                        changes.push(Change::Rename {
                            m: p.key,
                            to: p.name,
                            ts: now_ms(),
                        });
                    }
                }
            }
        }
        for change in changes {
            self.change(members, post, change);
        }
    }
}
