//! Chat rooms (SPEC §4): who is in each, the room's message numbering, its history,
//! and what each chat request does.
//!
//! A room's `id`s are assigned here, in the one hub thread, so every member sees a
//! room's messages in the same order with the same numbers. A message is encoded to
//! JSON once and the same bytes are queued for every member.

use super::members::Members;
use super::{LeaveReason, Post};
use crate::base::ConnId;
use crate::chat::{self, ChatError, ChatLine, ClientMessage, ErrorCode, RoomInfo, ServerMessage};
use crate::metrics::{self, Metrics};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tungstenite::Message;

/// Empty chat rooms kept for their history, at most. Past this the room emptied
/// longest ago is forgotten, so creating rooms cannot grow memory without bound.
const MAX_IDLE_ROOMS: usize = 1024;

#[derive(Debug, Default)]
struct ChatRoom {
    /// In order of arrival, which is the order of the member list.
    members: Vec<ConnId>,
    next_id: u64,
    history: VecDeque<Arc<ChatLine>>,
}

/// Every chat room of the server.
#[derive(Debug)]
pub(super) struct ChatRooms {
    rooms: HashMap<String, ChatRoom>,
    /// Empty rooms kept for their history, emptied longest ago first.
    idle: VecDeque<String>,
    /// Messages each room keeps for newcomers.
    history: usize,
    metrics: Arc<Metrics>,
}

impl ChatRooms {
    pub(super) fn new(history: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            rooms: HashMap::new(),
            idle: VecDeque::new(),
            history,
            metrics,
        }
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
        let Some((name, room)) = members.chat_member(id) else {
            return;
        };
        let (name, room) = (name.to_owned(), room.to_owned());
        match msg {
            ClientMessage::Message { text } => self.say(members, post, &room, name, text),
            ClientMessage::Direct { to, text } => self.direct(members, post, id, &to, &text),
            ClientMessage::Rename { name: to } => self.rename(members, post, id, &room, &name, to),
            ClientMessage::Join { room: to } if to == room => self.welcome(members, post, id),
            ClientMessage::Join { room: to } => {
                self.leave(members, post, id, &room, &name, LeaveReason::Switched);
                members.move_to(id, &to);
                self.enter(members, post, id, &to);
            }
            ClientMessage::Members => {
                let json = chat::encode(&ServerMessage::Members {
                    room: &room,
                    members: self.names(members, &room),
                });
                post.deliver(members, id, Message::text(json));
            }
            ClientMessage::Rooms => {
                let json = chat::encode(&ServerMessage::Rooms { rooms: self.list() });
                post.deliver(members, id, Message::text(json));
            }
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

    /// Puts `id` into a room: welcome to it, `join` to everyone else.
    pub(super) fn enter(&mut self, members: &Members, post: &mut Post, id: ConnId, name: &str) {
        let room = self.rooms.entry(name.to_owned()).or_default();
        if room.members.is_empty() {
            self.idle.retain(|r| r != name);
        }
        room.members.push(id);
        self.welcome(members, post, id);
        if let Some((member, _)) = members.chat_member(id) {
            let json = chat::encode(&ServerMessage::Join {
                room: name,
                name: member,
                ts: now_ms(),
            });
            self.broadcast(members, post, name, Some(id), &Message::text(json));
        }
    }

    /// Takes `id` (called `name`) out of room `room_name` and tells the others why.
    pub(super) fn leave(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        room_name: &str,
        name: &str,
        reason: LeaveReason,
    ) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        room.members.retain(|&m| m != id);
        if room.members.is_empty() {
            if room.history.is_empty() {
                self.rooms.remove(room_name);
            } else {
                self.idle.push_back(room_name.to_owned());
                if self.idle.len() > MAX_IDLE_ROOMS
                    && let Some(oldest) = self.idle.pop_front()
                {
                    self.rooms.remove(&oldest);
                }
            }
            return;
        }
        let json = chat::encode(&ServerMessage::Leave {
            room: room_name,
            name,
            reason: reason.as_str(),
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

    fn say(
        &mut self,
        members: &Members,
        post: &mut Post,
        room_name: &str,
        from: String,
        text: String,
    ) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        room.next_id += 1;
        let line = Arc::new(ChatLine {
            id: room.next_id,
            room: room_name.to_owned(),
            from,
            text,
            ts: now_ms(),
        });
        if self.history > 0 {
            if room.history.len() == self.history {
                room.history.pop_front();
            }
            room.history.push_back(Arc::clone(&line));
        }
        log::debug!(
            "hub: {room_name} #{} from {}: encoded once, queued for {} members",
            line.id,
            line.from,
            room.members.len()
        );
        let json = Message::text(chat::encode(&*line));
        self.broadcast(members, post, room_name, None, &json);
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
        post.deliver(members, target, msg.clone());
        if target != id {
            post.deliver(members, id, msg);
        }
    }

    fn rename(
        &self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
        from: &str,
        to: String,
    ) {
        if members.rename(id, &to).is_err() {
            let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
            return self.send_error(members, post, id, &error);
        }
        let json = chat::encode(&ServerMessage::Rename {
            room,
            from,
            to: &to,
            ts: now_ms(),
        });
        self.broadcast(members, post, room, None, &Message::text(json));
    }

    /// The `welcome` for member `id`: its name, room, the members, and the history.
    fn welcome(&self, members: &Members, post: &mut Post, id: ConnId) {
        let Some((name, room)) = members.chat_member(id) else {
            return;
        };
        let history = self
            .rooms
            .get(room)
            .map(|r| r.history.iter().map(|l| &**l).collect());
        let json = chat::encode(&ServerMessage::Welcome {
            name,
            room,
            members: self.names(members, room),
            history: history.unwrap_or_default(),
        });
        post.deliver(members, id, Message::text(json));
    }

    /// The names of a room's members, in order of arrival.
    fn names<'m>(&self, members: &'m Members, room: &str) -> Vec<&'m str> {
        let Some(room) = self.rooms.get(room) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|&id| members.chat_member(id).map(|(name, _)| name))
            .collect()
    }

    fn broadcast(
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
