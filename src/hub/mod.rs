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
//!
//! Its state is in three rooms of its own: [`members`] (who is connected, under which
//! name), [`chat`] (chat rooms, numbering, history) and [`relay`] (relay rooms). What
//! is queued for whom during one batch of events is the [`Post`]'s business.

mod chat;
mod members;
mod relay;

use crate::base::ConnId;
use crate::chat::{ChatError, ClientMessage};
use crate::metrics::{self, Metrics};
use crate::outbox::{Outbox, Owed, SendError};
use chat::ChatRooms;
use crossbeam_channel::Receiver;
use members::{Members, Role};
use relay::RelayRooms;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tungstenite::Message;

/// Events handled before the threads with news are woken (see [`Hub::run`]).
const MAX_BATCH: usize = 32;

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
    /// The `reason` of the `leave` event (docs/PROTOCOL.md).
    pub(crate) fn as_str(self) -> &'static str {
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

/// What was queued for whom while handling the current batch of events.
#[derive(Debug, Default)]
struct Post {
    /// Members whose outbox overflowed while handling the current event.
    overflowed: Vec<ConnId>,
    /// Wake-ups owed to connection threads, given at the end of a batch.
    owed: Vec<Owed>,
}

impl Post {
    /// Queues `msg` for member `id`, without ever blocking. A full outbox marks the
    /// member for eviction once the current event is handled.
    fn deliver(&mut self, members: &Members, id: ConnId, msg: Message) {
        let Some(member) = members.get(id) else {
            return;
        };
        match member.outbox.try_queue(msg) {
            Ok(Some(wake)) => self.owed.push(wake),
            Ok(None) => {}
            Err(SendError::Full) if !self.overflowed.contains(&id) => self.overflowed.push(id),
            // `Gone` needs nothing: the member's `Leave` is already queued behind us.
            Err(_) => {}
        }
    }

    /// Wakes every connection thread that got news.
    fn wake_all(&mut self) {
        for owed in self.owed.drain(..) {
            owed.give();
        }
    }
}

/// All shared state. Only the hub thread ever touches it.
#[derive(Debug)]
pub(crate) struct Hub {
    metrics: Arc<Metrics>,
    members: Members,
    chat: ChatRooms,
    relay: RelayRooms,
    post: Post,
}

impl Hub {
    pub(crate) fn new(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            chat: ChatRooms::new(config.history, Arc::clone(&metrics)),
            metrics,
            members: Members::default(),
            relay: RelayRooms::default(),
            post: Post::default(),
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
            self.post.wake_all();
        }
        log::debug!("hub: every connection is gone, stopping");
    }

    /// Handles one event and wakes whoever got news.
    #[cfg(test)]
    pub(crate) fn handle(&mut self, event: HubEvent) {
        self.apply(event);
        self.post.wake_all();
    }

    /// Handles one event, including evicting whoever could not keep up with it.
    fn apply(&mut self, event: HubEvent) {
        let Hub {
            members,
            chat,
            relay,
            post,
            ..
        } = self;
        match event {
            HubEvent::JoinChat {
                id,
                room,
                name,
                name_error,
                outbox,
            } => {
                members.join_chat(id, name, &room, outbox);
                chat.enter(members, post, id, &room);
                if let Some(error) = name_error {
                    chat.send_error(members, post, id, &error);
                }
            }
            HubEvent::JoinRelay { id, room, outbox } => {
                members.join_relay(id, &room, outbox);
                relay.enter(id, &room);
            }
            HubEvent::Chat { id, msg } => chat.handle(members, post, id, msg),
            HubEvent::Relay { id, msg } => relay.forward(members, post, id, msg),
            HubEvent::Reply { id, msg } => post.deliver(members, id, msg),
            HubEvent::Leave { id, reason } => self.remove(id, reason),
        }
        while let Some(id) = self.post.overflowed.pop() {
            if let Some(member) = self.members.get(id) {
                // Logged by the connection thread, not here: a log line can block on
                // a full stderr, and the hub must never block.
                member.outbox.evict();
                metrics::bump(&self.metrics.slow_consumer_drops);
                self.remove(id, LeaveReason::SlowConsumer);
            }
        }
        let rooms = self.chat.len() + self.relay.len();
        self.metrics.rooms.store(rooms as u64, Ordering::Relaxed);
    }

    /// Forgets a member entirely, and tells its chat room why it left.
    fn remove(&mut self, id: ConnId, reason: LeaveReason) {
        let Some(member) = self.members.remove(id) else {
            return;
        };
        match member.role {
            Role::Chat { name, room } => {
                self.chat
                    .leave(&self.members, &mut self.post, id, &room, &name, reason)
            }
            Role::Relay { room } => self.relay.leave(id, &room),
        }
    }
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
        assert!(hub.members.get(2).is_none());
        assert!(hub.members.get(1).is_some());
        assert!(!fast.is_evicted());
    }
}
