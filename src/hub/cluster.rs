//! What the hub does differently on a cluster node.
//!
//! Shared state changes only when the bus says so: a local request (join, move,
//! rename, leave, a message) goes to the bridge, Redis makes the change and publishes
//! it, and every node, this one included, applies it when it comes back on the bus.
//! So every node holds the same rooms, names and messages in the same order, and a
//! member on another node is a member like any other, only without an outbox.
//!
//! A join (or a move) is published with the room's newest id at that moment: the
//! member's history is everything up to it, read by the bridge, and what the bus
//! brings after it is live. The welcome goes out once both the history and that
//! event are here, whichever comes first; the member's other news waits behind it.

use super::chat::{ChatRooms, now_ms};
use super::members::{Member, Members, Role, with_suffix};
use super::nodes::{Pending, pending};
use super::{LeaveReason, Post};
use crate::base::ConnId;
use crate::chat::Since;
use crate::chat::{self, ChatError, ChatLine, ClientMessage, ErrorCode, ServerMessage};
use crate::cluster::{Bus, Event, Present, Request};
use crate::store::Answer;
use std::collections::{HashMap, HashSet};
use std::mem;
use tungstenite::Message;

/// Name variants offered for a join: the name, then `name-2` up to this.
const NAME_VARIANTS: u64 = 50;
/// Requests a member may send before the cluster has named it; more get `error`.
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
    /// Whether `key` names a member of this node.
    pub(super) fn is_ours(&self, key: &str) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.ours(key).is_some())
    }

    /// A new member of ours asks the cluster for a name and its room's history.
    pub(super) fn cluster_join(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
        wanted: Option<String>,
        since: Option<Since>,
    ) {
        let seq = self.begin_load(post, id);
        let Some(cluster) = &self.cluster else {
            return;
        };
        let join = Request::Join {
            member: id,
            seq,
            names: offered(wanted),
            room: room.to_owned(),
            since,
        };
        if !cluster.ask(join) {
            self.join_failed(members, post, id);
        }
    }

    /// A member of ours moves to `room`, or asks for its own room's history again.
    pub(super) fn cluster_switch(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        room: &str,
    ) {
        let seq = self.begin_load(post, id);
        let Some(cluster) = &self.cluster else {
            return;
        };
        let switch = Request::Switch {
            member: id,
            seq,
            room: room.to_owned(),
        };
        if !cluster.ask(switch) {
            self.join_failed(members, post, id);
        }
    }

    /// Numbers a new load of member `id` and holds its news for the welcome, which
    /// waits for the join (or move) to come back on the bus, and for the history.
    fn begin_load(&mut self, post: &mut Post, id: ConnId) -> u64 {
        self.loads += 1;
        let seq = self.loads;
        post.hold(id, seq);
        if let Some(cluster) = &mut self.cluster {
            cluster.pending.insert(id, pending(seq));
        }
        seq
    }

    /// A member of ours asks for a new name; it is its once the bus says so.
    pub(super) fn cluster_rename(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        to: String,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if members.find(&to).is_some_and(|(owner, _)| owner != id) {
            let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
            return self.send_error(members, post, id, &error);
        }
        let key = chat::name_key(&to);
        if !cluster.ask(Request::Rename {
            member: id,
            to,
            key,
        }) {
            self.unavailable(members, post, id, "names cannot be changed now, try again");
        }
    }

    /// A member of ours is gone: it stays in its room, without an outbox, until the
    /// bus brings its leave to every node.
    pub(super) fn cluster_leave(
        &mut self,
        members: &mut Members,
        post: &mut Post,
        id: ConnId,
        reason: LeaveReason,
    ) {
        members.detach(id);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.pending.remove(&id);
        if !cluster.leave(id, reason.as_str()) {
            // The bridge is behind: gone here at once; the others hear it when the
            // bridge takes the leave.
            self.drop_member(members, post, id, reason.as_str());
        }
    }

    /// Sends a relay message of member `id` to the other nodes.
    pub(super) fn publish_relay(&self, members: &Members, id: ConnId, msg: &Message) {
        // A single node looks nothing up: this runs for every relay message.
        let Some(cluster) = &self.cluster else {
            return;
        };
        if let Some(Member {
            role: Role::Relay { room },
            ..
        }) = members.get(id)
        {
            let relay = Request::Relay {
                member: id,
                room: room.clone(),
                msg: msg.clone(),
            };
            // Relay is best effort, like the network it stands for.
            let _ = cluster.ask(relay);
        }
    }

    /// A request of a member that has no name yet waits for it; `Some` gives it back
    /// to be handled now.
    pub(super) fn cluster_early(
        &mut self,
        members: &Members,
        post: &mut Post,
        id: ConnId,
        msg: ClientMessage,
    ) -> Option<ClientMessage> {
        let Some(pending) = self
            .cluster
            .as_mut()
            .and_then(|c| c.pending.get_mut(&id))
            .filter(|p| !p.marked)
        else {
            return Some(msg);
        };
        if pending.early.len() < MAX_EARLY {
            pending.early.push(msg);
        } else {
            let error = ChatError::new(ErrorCode::RateLimited, "wait for the welcome");
            self.send_error(members, post, id, &error);
        }
        None
    }

    /// The history the bridge read for a member of ours.
    pub(super) fn cluster_loaded(&mut self, members: &Members, post: &mut Post, loaded: Answer) {
        let Answer::Loaded { member, seq, .. } = &loaded else {
            return;
        };
        let member = *member;
        let Some(pending) = self
            .cluster
            .as_mut()
            .and_then(|c| c.pending.get_mut(&member))
            .filter(|p| p.seq == *seq)
        else {
            return;
        };
        pending.loaded = Some(loaded);
        if pending.marked {
            self.welcome_now(members, post, member);
        }
    }

    /// Everything else the bridge says.
    pub(super) fn cluster_event(&mut self, members: &mut Members, post: &mut Post, event: Event) {
        if let Some(cluster) = &mut self.cluster {
            cluster.pay_owed();
        }
        match event {
            Event::Bus(bus) => self.bus(members, post, bus),
            Event::Relay { .. } => {}
            Event::Resubscribed | Event::Reconnected => self.resync(members),
            Event::NewEpoch(epoch) => self.new_epoch(members, epoch),
            Event::JoinFailed { member } => self.join_failed(members, post, member),
            Event::Failed { member, what } => self.unavailable(members, post, member, what),
            Event::NameTaken { member, to } => {
                let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
                self.send_error(members, post, member, &error);
            }
            Event::CatchUp { lines } => {
                for line in lines {
                    self.deliver_line(members, post, &line, true);
                }
            }
            Event::Presence(present) => self.presence(members, post, present),
        }
    }

    /// Applies one change from the bus.
    fn bus(&mut self, members: &mut Members, post: &mut Post, bus: Bus) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        match bus {
            // The hub's sign-in part takes these before they get here.
            Bus::EndSession { .. } => {}
            Bus::Msg { .. } => {
                if let Some(line) = bus.line() {
                    self.rooms_kept.kept(&line.room);
                    self.deliver_line(members, post, &line, false);
                }
            }
            Bus::Join {
                m,
                name,
                room,
                last,
                ts,
                restore,
            } => {
                let id = match cluster.ours(&m) {
                    Some(id) => match id.parse() {
                        Ok(id) if members.get(id).is_some() => id,
                        _ => return,
                    },
                    None if restore && cluster.remote.contains_key(&m) => return,
                    None => cluster.remote_id(&m),
                };
                let ours = cluster.ours(&m).is_some();
                let listed = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.members.contains(&id));
                if listed && (restore || !ours) {
                    // Known already (from the list of everyone at start, or from
                    // before Redis went away): no news.
                    return;
                }
                members.join_named(id, &name, &room);
                self.rooms.entry(room.clone()).or_default().members.push(id);
                self.announce_join(members, post, id, &room, &name, ts);
                if ours && !restore {
                    self.marked(members, post, id, last);
                }
            }
            Bus::Switch { m, room, last, ts } => {
                let Some(id) = cluster.id(&m) else {
                    return;
                };
                let ours = cluster.ours(&m).is_some();
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
            Bus::Leave { m, reason, .. } => {
                if let Some(id) = cluster.id(&m) {
                    self.drop_member(members, post, id, &reason);
                }
            }
            Bus::Rename { m, to, ts } => {
                let Some(id) = cluster.id(&m) else {
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
            Bus::Direct { to, json } => {
                if let (Some(_), Some(id)) = (cluster.ours(&to), cluster.id(&to)) {
                    post.deliver(members, id, Message::text(json));
                }
            }
        }
    }

    /// A member leaves its room, as the bus (or the lack of Redis) says.
    fn drop_member(&mut self, members: &mut Members, post: &mut Post, id: ConnId, reason: &str) {
        if let Some((name, room)) = members.chat_member(id) {
            let (name, room) = (name.to_owned(), room.to_owned());
            self.leave(members, post, id, &room, &name, reason);
        }
        if members.outbox(id).is_some() {
            // Still connected here (the cluster took this node for dead): it keeps
            // its connection, and the resync puts it back.
            members.unname(id);
        } else {
            members.remove(id);
            if let Some(cluster) = &mut self.cluster {
                cluster.forget(id);
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

    /// The join (or move) of a member of ours is back from the bus: messages after
    /// `last` are live for it.
    fn marked(&mut self, members: &mut Members, post: &mut Post, id: ConnId, last: u64) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.floors.insert(id, last);
        let Some(pending) = cluster.pending.get_mut(&id) else {
            return;
        };
        pending.marked = true;
        let early = mem::take(&mut pending.early);
        if pending.loaded.is_some() {
            self.welcome_now(members, post, id);
        }
        for msg in early {
            self.handle(members, post, id, msg);
        }
    }

    /// Sends member `id` its welcome, now that both its history and its join are here.
    fn welcome_now(&mut self, members: &Members, post: &mut Post, id: ConnId) {
        let pending = self.cluster.as_mut().and_then(|c| c.pending.remove(&id));
        if let Some(Pending {
            loaded: Some(loaded),
            ..
        }) = pending
        {
            self.welcome(members, post, loaded);
        }
    }

    /// A room's message, to its members here: once, and not to whom it was history.
    /// A message from the bus in its order is after every member's join; only a
    /// catch-up (or a member between its join and its welcome) needs looking at.
    fn deliver_line(
        &mut self,
        members: &Members,
        post: &mut Post,
        line: &ChatLine,
        catch_up: bool,
    ) {
        let (Some(cluster), Some(room)) = (&mut self.cluster, self.rooms.get(&line.room)) else {
            return;
        };
        let delivered = cluster.delivered.entry(line.room.clone()).or_insert(0);
        if line.id <= *delivered {
            return;
        }
        *delivered = line.id;
        let check = catch_up || !cluster.pending.is_empty();
        let msg = Message::text(chat::encode(line));
        for &id in &room.members {
            let skip = check
                && (cluster.is_muted(id)
                    || cluster
                        .floors
                        .get(&id)
                        .is_some_and(|&floor| line.id <= floor));
            if !skip {
                // A member of another node has no outbox: nothing is queued.
                post.deliver(members, id, msg.clone());
            }
        }
    }

    /// A join or move could not be made: the member is told, then asked to reconnect.
    fn join_failed(&mut self, members: &mut Members, post: &mut Post, id: ConnId) {
        if let Some(cluster) = &mut self.cluster {
            cluster.pending.remove(&id);
        }
        let unnamed = members
            .chat_member(id)
            .is_some_and(|(name, _)| name.is_empty());
        if unnamed && members.outbox(id).is_none() {
            // Gone before Redis ever heard of it: nothing to wait for.
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

    /// After a gap on the bus: ask for this node's members to be put back, for what
    /// each room missed, and for who is where now.
    fn resync(&self, members: &Members) {
        let Some(cluster) = &self.cluster else {
            return;
        };
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
            let after = cluster
                .delivered
                .get(room)
                .copied()
                .or_else(|| cluster.floors.get(id).copied())
                .unwrap_or(0);
            let entry = rooms.entry(room.clone()).or_insert(after);
            *entry = (*entry).max(after);
        }
        let resync = Request::Resync {
            epoch: self.epoch.clone(),
            members: ours,
            rooms: rooms.into_iter().collect(),
        };
        if !cluster.ask(resync) {
            log::debug!("hub: the bridge is busy; the next reconnection resyncs");
        }
    }

    /// Redis lost its data: ids start again, so every chat client here reconnects
    /// (it gets `resumed: false`), and nothing of the old cluster is kept.
    fn new_epoch(&mut self, members: &mut Members, epoch: String) {
        self.epoch = epoch;
        let chat: Vec<ConnId> = self
            .rooms
            .values()
            .flat_map(|room| room.members.iter().copied())
            .chain(self.cluster.iter().flat_map(|c| c.pending.keys().copied()))
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
        if let Some(cluster) = &mut self.cluster {
            cluster.pending.clear();
            cluster.floors.clear();
            cluster.delivered.clear();
            cluster.remote.clear();
            cluster.keys.clear();
        }
    }

    /// Who is in the cluster, after a gap: the members of other nodes are made to
    /// match, with the news told as joins, moves and leaves.
    fn presence(&mut self, members: &mut Members, post: &mut Post, present: Vec<Present>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let listed: HashSet<&str> = present.iter().map(|p| p.key.as_str()).collect();
        let gone: Vec<String> = cluster
            .remote
            .keys()
            .filter(|key| !listed.contains(key.as_str()))
            .cloned()
            .collect();
        let mut changes: Vec<Bus> = gone
            .into_iter()
            .map(|m| Bus::Leave {
                m,
                reason: "closed".into(),
                ts: now_ms(),
            })
            .collect();
        for p in present {
            if cluster.ours(&p.key).is_some() {
                continue;
            }
            let known = cluster
                .remote
                .get(&p.key)
                .and_then(|&id| members.chat_member(id));
            match known {
                None => changes.push(Bus::Join {
                    m: p.key,
                    name: p.name,
                    room: p.room,
                    last: 0,
                    ts: now_ms(),
                    restore: false,
                }),
                Some((name, room)) => {
                    if room != p.room {
                        changes.push(Bus::Switch {
                            m: p.key.clone(),
                            room: p.room,
                            last: 0,
                            ts: now_ms(),
                        });
                    }
                    if name != p.name {
                        changes.push(Bus::Rename {
                            m: p.key,
                            to: p.name,
                            ts: now_ms(),
                        });
                    }
                }
            }
        }
        for change in changes {
            self.bus(members, post, change);
        }
    }
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
