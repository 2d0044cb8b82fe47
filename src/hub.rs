//! The hub: one thread that owns every room, member, name and message history.
//!
//! Connection threads send it [`HubEvent`]s over one crossbeam channel; it answers by
//! putting messages in each client's [`Outbox`]. Because one thread owns all chat
//! state, there is no lock around it, and every member of a room sees that room's
//! messages in the same order: the order the hub handled them in.
//!
//! The hub never blocks on a client. It only ever uses `try_send` on an outbox, and a
//! full outbox makes that client a slow consumer: it is evicted (the connection thread
//! is told to close with 1008) and everyone else carries on.
//!
//! The hub ends when every sender of events has been dropped: the accept loops and all
//! connection threads are gone, so nobody can want anything from it any more.

use crate::base::ConnId;
use crate::chat::{self, ChatError, ChatLine, ClientMessage, ErrorCode, ServerMessage};
use crate::metrics::{self, Metrics};
use crate::outbox::{Outbox, Owed, SendError};
use crossbeam_channel::Receiver;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use tungstenite::Message;

/// Events handled before the threads with news are woken (see [`Hub::run`]).
const MAX_BATCH: usize = 32;

/// Empty chat rooms kept for their history, at most. Past this the room emptied
/// longest ago is forgotten, so creating rooms cannot grow memory without bound.
const MAX_IDLE_ROOMS: usize = 1024;

/// What a connection thread tells the hub.
#[derive(Debug)]
pub(crate) enum HubEvent {
    /// A chat client finished its handshake.
    JoinChat {
        id: ConnId,
        room: String,
        /// The validated name from `?name=`, if any.
        name: Option<String>,
        /// Why the requested name was refused, to report after the welcome.
        name_error: Option<ChatError>,
        outbox: Outbox,
    },
    /// A relay client finished its handshake.
    JoinRelay {
        id: ConnId,
        room: String,
        outbox: Outbox,
    },
    /// A decoded, validated request from a chat client.
    Chat { id: ConnId, msg: ClientMessage },
    /// A text or binary message to forward to the rest of a relay room.
    Relay { id: ConnId, msg: Message },
    /// An answer the connection thread worked out itself (an `error` about the
    /// client's own input), sent through the hub so that it reaches the client after
    /// the answers to everything the client sent before.
    Reply { id: ConnId, msg: Message },
    /// The connection is gone.
    Leave { id: ConnId, reason: LeaveReason },
}

/// Why a member left, as shown in the `leave` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaveReason {
    /// The client closed the connection.
    Closed,
    /// The client stopped answering pings.
    Timeout,
    /// The client broke the protocol or the connection failed.
    Error,
    /// The server is shutting down.
    Shutdown,
    /// The client moved to another room (`join`).
    Switched,
    /// The client did not read fast enough and was evicted (Close 1008).
    SlowConsumer,
}

impl LeaveReason {
    fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Error => "error",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::Switched => "switched",
            LeaveReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// The hub's own settings.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub history: usize,
}

#[derive(Debug)]
enum Role {
    Chat { name: String, room: String },
    Relay { room: String },
}

#[derive(Debug)]
struct Member {
    outbox: Outbox,
    role: Role,
}

#[derive(Debug, Default)]
struct ChatRoom {
    /// In order of arrival, which is the order of the member list.
    members: Vec<ConnId>,
    next_id: u64,
    history: VecDeque<Arc<ChatLine>>,
}

/// All shared state. Only the hub thread ever touches it.
#[derive(Debug)]
pub(crate) struct Hub {
    config: HubConfig,
    metrics: Arc<Metrics>,
    members: HashMap<ConnId, Member>,
    /// Lower-cased name → its owner; names are unique regardless of case.
    names: HashMap<String, ConnId>,
    chat_rooms: HashMap<String, ChatRoom>,
    /// Empty chat rooms kept for their history, oldest first.
    idle_rooms: VecDeque<String>,
    relay_rooms: HashMap<String, Vec<ConnId>>,
    guests: u64,
    /// Members whose outbox overflowed while handling the current event.
    overflowed: Vec<ConnId>,
    /// Wake-ups owed to connection threads, given at the end of a batch.
    owed: Vec<Owed>,
}

impl Hub {
    pub(crate) fn new(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            members: HashMap::new(),
            names: HashMap::new(),
            chat_rooms: HashMap::new(),
            idle_rooms: VecDeque::new(),
            relay_rooms: HashMap::new(),
            guests: 0,
            overflowed: Vec::new(),
            owed: Vec::new(),
        }
    }

    /// Handles events until every sender is gone.
    ///
    /// Events are taken in batches of whatever is already queued (up to
    /// [`MAX_BATCH`]), and the connection threads with news are woken once at the
    /// end of each batch. When the hub keeps up, a batch is one event and nothing
    /// waits; when it falls behind, each wake-up carries many messages, which is
    /// what lets a busy room catch up.
    pub(crate) fn run(mut self, events: Receiver<HubEvent>) {
        while let Ok(first) = events.recv() {
            self.apply(first);
            for event in events.try_iter().take(MAX_BATCH - 1) {
                self.apply(event);
            }
            self.wake_owed();
        }
        log::debug!("hub: every connection is gone, stopping");
    }

    /// Handles one event and wakes whoever got news.
    #[cfg(test)]
    pub(crate) fn handle(&mut self, event: HubEvent) {
        self.apply(event);
        self.wake_owed();
    }

    fn wake_owed(&mut self) {
        for owed in self.owed.drain(..) {
            owed.give();
        }
    }

    /// Handles one event, including evicting whoever could not keep up with it.
    fn apply(&mut self, event: HubEvent) {
        match event {
            HubEvent::JoinChat {
                id,
                room,
                name,
                name_error,
                outbox,
            } => {
                let name = self.unique_name(name);
                self.names.insert(name.to_lowercase(), id);
                self.members.insert(
                    id,
                    Member {
                        outbox,
                        role: Role::Chat {
                            name,
                            room: room.clone(),
                        },
                    },
                );
                self.enter_chat_room(id, &room);
                if let Some(error) = name_error {
                    self.send_error(id, &error);
                }
            }
            HubEvent::JoinRelay { id, room, outbox } => {
                self.members.insert(
                    id,
                    Member {
                        outbox,
                        role: Role::Relay { room: room.clone() },
                    },
                );
                self.relay_rooms.entry(room).or_default().push(id);
            }
            HubEvent::Chat { id, msg } => self.chat(id, msg),
            HubEvent::Relay { id, msg } => self.relay(id, msg),
            HubEvent::Reply { id, msg } => self.deliver(id, msg),
            HubEvent::Leave { id, reason } => self.remove(id, reason),
        }
        while let Some(id) = self.overflowed.pop() {
            if let Some(member) = self.members.get(&id) {
                // Logged by the connection thread, not here: a log line can block on
                // a full stderr, and the hub must never block.
                member.outbox.evict();
                metrics::bump(&self.metrics.slow_consumer_drops);
                self.remove(id, LeaveReason::SlowConsumer);
            }
        }
        let rooms = self.chat_rooms.len() + self.relay_rooms.len();
        self.metrics.rooms.store(rooms as u64, Ordering::Relaxed);
    }

    fn chat(&mut self, id: ConnId, msg: ClientMessage) {
        let Some(Member {
            role: Role::Chat { name, room },
            ..
        }) = self.members.get(&id)
        else {
            return;
        };
        let (name, room) = (name.clone(), room.clone());
        match msg {
            ClientMessage::Message { text } => self.say(&room, name, text),
            ClientMessage::Direct { to, text } => self.direct(id, &name, &to, &text),
            ClientMessage::Rename { name: to } => self.rename(id, &room, &name, to),
            ClientMessage::Join { room: to } if to == room => self.welcome(id),
            ClientMessage::Join { room: to } => {
                self.leave_chat_room(id, &room, &name, LeaveReason::Switched);
                if let Some(Member {
                    role: Role::Chat { room, .. },
                    ..
                }) = self.members.get_mut(&id)
                {
                    room.clone_from(&to);
                }
                self.enter_chat_room(id, &to);
            }
            ClientMessage::Members => {
                let members = self.member_names(&room);
                let json = chat::encode(&ServerMessage::Members {
                    room: &room,
                    members,
                });
                self.deliver(id, Message::text(json));
            }
        }
    }

    fn say(&mut self, room_name: &str, from: String, text: String) {
        let Some(room) = self.chat_rooms.get_mut(room_name) else {
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
        if self.config.history > 0 {
            if room.history.len() == self.config.history {
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
        self.broadcast(room_name, None, &json);
    }

    fn direct(&mut self, id: ConnId, from: &str, to: &str, text: &str) {
        let Some(&target) = self.names.get(&to.to_lowercase()) else {
            let error = ChatError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {to} is connected"),
            );
            return self.send_error(id, &error);
        };
        let Some(Member {
            role: Role::Chat { name: to, .. },
            ..
        }) = self.members.get(&target)
        else {
            return;
        };
        let json = chat::encode(&ServerMessage::Direct {
            from,
            to,
            text,
            ts: now_ms(),
        });
        let msg = Message::text(json);
        self.deliver(target, msg.clone());
        if target != id {
            self.deliver(id, msg);
        }
    }

    fn rename(&mut self, id: ConnId, room: &str, from: &str, to: String) {
        let key = to.to_lowercase();
        if self.names.get(&key).is_some_and(|&owner| owner != id) {
            let error = ChatError::new(ErrorCode::NameTaken, format!("{to} is already taken"));
            return self.send_error(id, &error);
        }
        self.names.remove(&from.to_lowercase());
        self.names.insert(key, id);
        if let Some(Member {
            role: Role::Chat { name, .. },
            ..
        }) = self.members.get_mut(&id)
        {
            name.clone_from(&to);
        }
        let json = chat::encode(&ServerMessage::Rename {
            room,
            from,
            to: &to,
            ts: now_ms(),
        });
        self.broadcast(room, None, &Message::text(json));
    }

    /// Forwards a relay message to the rest of the room. If a recipient's outbox is
    /// more than half full, the sender is asked to pause: a burst from one member
    /// turns into TCP backpressure on that member, instead of evicting readers that
    /// are merely a few milliseconds behind.
    fn relay(&mut self, id: ConnId, msg: Message) {
        let Some(Member {
            role: Role::Relay { room },
            outbox: sender,
        }) = self.members.get(&id)
        else {
            return;
        };
        let Some(members) = self.relay_rooms.get(room) else {
            return;
        };
        let mut congested = false;
        for &other in members {
            if other != id {
                Self::try_deliver(
                    &self.members,
                    &mut self.overflowed,
                    &mut self.owed,
                    other,
                    msg.clone(),
                );
                congested |= self
                    .members
                    .get(&other)
                    .is_some_and(|m| m.outbox.is_congested());
            }
        }
        if congested {
            sender.throttle();
        }
    }

    /// Puts `id` into a chat room: welcome to it, `join` to everyone else.
    fn enter_chat_room(&mut self, id: ConnId, room_name: &str) {
        let room = self.chat_rooms.entry(room_name.to_owned()).or_default();
        if room.members.is_empty() {
            self.idle_rooms.retain(|r| r != room_name);
        }
        room.members.push(id);
        self.welcome(id);
        if let Some(Member {
            role: Role::Chat { name, .. },
            ..
        }) = self.members.get(&id)
        {
            let json = chat::encode(&ServerMessage::Join {
                room: room_name,
                name,
                ts: now_ms(),
            });
            self.broadcast(room_name, Some(id), &Message::text(json));
        }
    }

    fn welcome(&mut self, id: ConnId) {
        let Some(Member {
            role: Role::Chat { name, room },
            ..
        }) = self.members.get(&id)
        else {
            return;
        };
        let history = self
            .chat_rooms
            .get(room)
            .map(|r| r.history.iter().map(|l| &**l).collect());
        let json = chat::encode(&ServerMessage::Welcome {
            name,
            room,
            members: self.member_names(room),
            history: history.unwrap_or_default(),
        });
        self.deliver(id, Message::text(json));
    }

    /// Takes `id` out of a chat room and tells the others why.
    fn leave_chat_room(&mut self, id: ConnId, room_name: &str, name: &str, reason: LeaveReason) {
        let Some(room) = self.chat_rooms.get_mut(room_name) else {
            return;
        };
        room.members.retain(|&m| m != id);
        if room.members.is_empty() {
            if room.history.is_empty() {
                self.chat_rooms.remove(room_name);
            } else {
                self.idle_rooms.push_back(room_name.to_owned());
                if self.idle_rooms.len() > MAX_IDLE_ROOMS
                    && let Some(oldest) = self.idle_rooms.pop_front()
                {
                    self.chat_rooms.remove(&oldest);
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
        self.broadcast(room_name, None, &Message::text(json));
    }

    /// Forgets a member entirely.
    fn remove(&mut self, id: ConnId, reason: LeaveReason) {
        let Some(member) = self.members.remove(&id) else {
            return;
        };
        match member.role {
            Role::Chat { name, room } => {
                self.names.remove(&name.to_lowercase());
                self.leave_chat_room(id, &room, &name, reason);
            }
            Role::Relay { room } => {
                if let Some(members) = self.relay_rooms.get_mut(&room) {
                    members.retain(|&m| m != id);
                    if members.is_empty() {
                        self.relay_rooms.remove(&room);
                    }
                }
            }
        }
    }

    fn member_names(&self, room: &str) -> Vec<&str> {
        let Some(room) = self.chat_rooms.get(room) else {
            return Vec::new();
        };
        room.members
            .iter()
            .filter_map(|id| match self.members.get(id) {
                Some(Member {
                    role: Role::Chat { name, .. },
                    ..
                }) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// A name nobody has: the wanted one, else it with `-2`, `-3`, …; `guest-N` when
    /// none was asked for.
    fn unique_name(&mut self, wanted: Option<String>) -> String {
        let taken =
            |names: &HashMap<String, ConnId>, n: &str| names.contains_key(&n.to_lowercase());
        match wanted {
            Some(base) if !taken(&self.names, &base) => base,
            Some(base) => (2u64..)
                .map(|n| with_suffix(&base, n))
                .find(|n| !taken(&self.names, n))
                .unwrap_or(base),
            None => loop {
                self.guests += 1;
                let name = format!("guest-{}", self.guests);
                if !taken(&self.names, &name) {
                    break name;
                }
            },
        }
    }

    fn broadcast(&mut self, room: &str, except: Option<ConnId>, msg: &Message) {
        let Some(room) = self.chat_rooms.get(room) else {
            return;
        };
        for &id in &room.members {
            if Some(id) != except {
                Self::try_deliver(
                    &self.members,
                    &mut self.overflowed,
                    &mut self.owed,
                    id,
                    msg.clone(),
                );
            }
        }
    }

    fn send_error(&mut self, id: ConnId, error: &ChatError) {
        metrics::bump(&self.metrics.chat_errors);
        self.deliver(id, Message::text(error.to_json()));
    }

    fn deliver(&mut self, id: ConnId, msg: Message) {
        Self::try_deliver(&self.members, &mut self.overflowed, &mut self.owed, id, msg);
    }

    fn try_deliver(
        members: &HashMap<ConnId, Member>,
        overflowed: &mut Vec<ConnId>,
        owed: &mut Vec<Owed>,
        id: ConnId,
        msg: Message,
    ) {
        let Some(member) = members.get(&id) else {
            return;
        };
        match member.outbox.try_queue(msg) {
            Ok(Some(wake)) => owed.push(wake),
            Ok(None) => {}
            Err(SendError::Full) if !overflowed.contains(&id) => overflowed.push(id),
            // `Gone` needs nothing: the member's `Leave` is already queued behind us.
            Err(_) => {}
        }
    }
}

/// `base-n`, shortening `base` so the result stays a valid name.
fn with_suffix(base: &str, n: u64) -> String {
    let suffix = format!("-{n}");
    let keep = chat::MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    let base: String = base.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Inbox, outbox};

    fn hub() -> Hub {
        Hub::new(HubConfig { history: 2 }, Arc::new(Metrics::new()))
    }

    fn join(hub: &mut Hub, id: ConnId, room: &str, name: &str) -> Inbox {
        let (tx, rx) = outbox(8, 1 << 20).unwrap();
        hub.handle(HubEvent::JoinChat {
            id,
            room: room.into(),
            name: Some(name.into()),
            name_error: None,
            outbox: tx,
        });
        rx
    }

    fn drain(rx: &Inbox) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn duplicate_names_get_a_suffix_case_insensitively() {
        let mut hub = hub();
        let _a = join(&mut hub, 1, "lobby", "alice");
        let b = join(&mut hub, 2, "lobby", "Alice");
        assert_eq!(drain(&b)[0]["name"], "Alice-2");
        assert_eq!(
            with_suffix(&"x".repeat(32), 10),
            format!("{}-10", "x".repeat(29))
        );
    }

    #[test]
    fn history_keeps_the_last_n() {
        let mut hub = hub();
        let a = join(&mut hub, 1, "lobby", "a");
        for text in ["1", "2", "3"] {
            hub.handle(HubEvent::Chat {
                id: 1,
                msg: ClientMessage::Message { text: text.into() },
            });
        }
        drain(&a);
        hub.handle(HubEvent::Leave {
            id: 1,
            reason: LeaveReason::Closed,
        });
        let b = join(&mut hub, 2, "lobby", "b");
        let welcome = &drain(&b)[0];
        let texts: Vec<_> = welcome["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, ["2", "3"]);
        assert_eq!(welcome["history"][1]["id"], 3);
    }

    #[test]
    fn a_member_whose_thread_ended_is_not_called_slow() {
        let mut hub = hub();
        let a = join(&mut hub, 1, "lobby", "a");
        let b = join(&mut hub, 2, "lobby", "b");
        drop(b); // the thread ended; its Leave has not reached the hub yet
        hub.handle(HubEvent::Chat {
            id: 1,
            msg: ClientMessage::Message { text: "hi".into() },
        });
        hub.handle(HubEvent::Leave {
            id: 2,
            reason: LeaveReason::Closed,
        });
        let leave = drain(&a)
            .into_iter()
            .find(|m| m["type"] == "leave")
            .unwrap();
        assert_eq!(leave["reason"], "closed");
        assert_eq!(metrics::get(&hub.metrics.slow_consumer_drops), 0);
    }

    #[test]
    fn full_outbox_evicts_only_that_member() {
        let mut hub = hub();
        let fast = join(&mut hub, 1, "lobby", "fast");
        let slow = join(&mut hub, 2, "lobby", "slow");
        for i in 0..20 {
            hub.handle(HubEvent::Chat {
                id: 1,
                msg: ClientMessage::Message {
                    text: i.to_string(),
                },
            });
            drain(&fast);
        }
        assert!(slow.is_evicted());
        assert!(!hub.members.contains_key(&2));
        assert!(hub.members.contains_key(&1));
        assert!(!fast.is_evicted());
    }
}
