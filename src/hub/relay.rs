//! Relay rooms: every text or binary message goes, as it is, to every *other* member
//! of the room. No envelope, no history, no names.

use super::Post;
use super::members::{Member, Members, Role};
use crate::base::ConnId;
use crate::outbox::Outbox;
use std::collections::HashMap;
use tungstenite::Message;

/// Every relay room of the server: room name → its members, in order of arrival.
#[derive(Debug, Default)]
pub(super) struct RelayRooms {
    rooms: HashMap<String, Vec<ConnId>>,
}

impl RelayRooms {
    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }

    pub(super) fn enter(&mut self, id: ConnId, room: &str) {
        self.rooms.entry(room.to_owned()).or_default().push(id);
    }

    pub(super) fn leave(&mut self, id: ConnId, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.retain(|&m| m != id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// Delivers a message from a member on another node to everyone in `room` here.
    pub(super) fn deliver(&self, members: &Members, post: &mut Post, room: &str, msg: &Message) {
        for &id in self.rooms.get(room).into_iter().flatten() {
            post.deliver(members, id, msg.clone());
        }
    }

    /// Forwards a message from `id` to the rest of its room. If a recipient's outbox
    /// is more than half full, the sender is asked to pause: a burst from one member
    /// turns into TCP backpressure on that member, instead of evicting readers that
    /// are merely a few milliseconds behind.
    pub(super) fn forward(&self, members: &Members, post: &mut Post, id: ConnId, msg: Message) {
        let Some(Member {
            role: Role::Relay { room },
            outbox: Some(sender),
            ..
        }) = members.get(id)
        else {
            return;
        };
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        let mut congested = false;
        for &other in room.iter().filter(|&&other| other != id) {
            post.deliver(members, other, msg.clone());
            congested |= members.outbox(other).is_some_and(Outbox::is_congested);
        }
        if congested {
            sender.throttle();
        }
    }
}
