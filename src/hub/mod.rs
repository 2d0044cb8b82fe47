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
//! Its state is in rooms of its own: [`members`] (who is connected, under which
//! name), [`chat`] (chat rooms and what members and the API ask of them),
//! [`changes`] (applying what the backend changed), [`backend`] (what the hub keeps
//! of its backend) and [`relay`] (relay rooms). What is queued for whom during one
//! batch of events is the [`Post`]'s business.
//!
//! The backend is the other side of one seam, [`crate::store`]'s requests and
//! events: a single node's store writer, or a cluster node's bridge to Redis. The hub
//! does not know which; it has one way to join, rename, move, leave and post, and one
//! function that delivers a committed message.

mod backend;
mod changes;
mod chat;
mod idempotent;
mod members;
mod moderation;
mod post;
mod relay;

use crate::base::{ClientKey, ConnId};
pub(crate) use crate::chat::LeaveReason;
use crate::chat::{ChatError, ClientMessage, Since};
use crate::metrics::{self, Metrics};
use crate::outbox::Outbox;
use crate::store::{self, ApiAnswer, Change, Event};
use chat::ChatRooms;
use crossbeam_channel::{Receiver, Sender, select};
use members::{Members, Role};
pub(crate) use moderation::describe;
use post::Post;
use relay::RelayRooms;
use std::net::IpAddr;
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
        /// Where a reconnecting client left off (`?since=&epoch=`).
        since: Option<Since>,
        outbox: Outbox,
        /// The key its traffic can be watched with (the doors keep the door).
        wire: Option<String>,
        /// Its client (address, or IPv6 /64), for the per-client limits.
        client: ClientKey,
        /// Whether it signed in as an admin: kept per connection, on its own node.
        admin: bool,
        /// The session its cookie names, if any.
        session: Option<crate::base::SessionId>,
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
    /// A request to the HTTP API, from `ip`; the answer goes to `reply`.
    Api {
        ip: IpAddr,
        call: ApiCall,
        reply: Sender<ApiAnswer>,
    },
}

/// What an HTTP API request asks of the hub.
#[derive(Debug)]
pub(crate) enum ApiCall {
    /// `GET /api/rooms?after=NAME&limit=N`: a page of rooms by name.
    Rooms { after: Option<String>, limit: usize },
    /// `GET /api/rooms/{room}/messages`.
    Messages {
        room: String,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    },
    /// `DELETE /api/rooms/{room}/messages/{id}`, with the API token.
    Delete { room: String, id: u64 },
    /// `POST /api/rooms/{room}/clear`, with the API token.
    Clear { room: String },
    /// `POST /api/rooms/{room}/settings`, with the API token, validated.
    Settings {
        room: String,
        change: crate::chat::RoomChange,
    },
    /// `POST /api/rooms/{room}/mute`, with the API token, validated; `minutes` 0
    /// unmutes.
    Mute {
        room: String,
        name: String,
        minutes: u64,
    },
    /// `POST /api/rooms/{room}/kick`, with the API token, validated.
    Kick {
        room: String,
        name: String,
        reason: String,
    },
    /// `POST /api/rooms/{room}/messages`, validated.
    Post {
        room: String,
        from: String,
        text: String,
        /// Its `Idempotency-Key`, if it sent one.
        key: Option<String>,
        /// The file it shares, on disk already (`POST /api/rooms/{room}/files`).
        file: Option<crate::chat::FileRef>,
    },
}

/// The hub's own settings.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    /// The backend's epoch, told to every client in its `welcome`.
    pub epoch: String,
    /// This node's name in the backend's member keys.
    pub node: String,
    /// Whether relay traffic goes to other nodes through the backend.
    pub shares_relay: bool,
    /// How long a join may wait for the backend (`Config::handshake_timeout`, at
    /// least 2 s).
    pub join_timeout: std::time::Duration,
    /// HTTP API posts allowed per address: per second, and in one burst.
    pub api_rate: (u32, u32),
    /// Rooms with stored messages, at most (`Config::max_rooms`).
    pub max_rooms: usize,
    /// The rooms that have stored messages already.
    pub stored_rooms: Vec<String>,
    /// The moderation rules in force (kicks that have not run out).
    pub rules: Vec<store::Rule>,
    /// How long a kick keeps a member out of its room (`Config::kick_time`).
    pub kick_time: std::time::Duration,
    /// What every welcome tells a client to respect.
    pub limits: crate::chat::Limits,
}

/// What woke the hub.
enum Next {
    Event(Option<HubEvent>),
    Backend(Option<Event>),
    /// A second went by: joins the backend never finished are given up.
    Tick,
}

/// How often the hub looks for joins that waited too long.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// All shared state. Only the hub thread ever touches it.
#[derive(Debug)]
pub(crate) struct Hub {
    metrics: Arc<Metrics>,
    members: Members,
    chat: ChatRooms,
    relay: RelayRooms,
    post: Post,
    /// Told of the sessions the backend says were ended.
    doors: Sender<crate::doors::Request>,
}

impl Hub {
    /// A hub whose chat rooms keep their messages, and their shared state, in the
    /// backend that takes `requests`.
    pub(crate) fn new(
        config: HubConfig,
        metrics: Arc<Metrics>,
        requests: Sender<store::Request>,
        doors: Sender<crate::doors::Request>,
    ) -> Self {
        Self {
            chat: ChatRooms::new(
                config.epoch,
                backend::Backend::new(
                    config.node,
                    requests,
                    config.shares_relay,
                    config.join_timeout,
                ),
                config.api_rate,
                chat::RoomsKept::new(config.max_rooms, config.stored_rooms),
                (
                    config.limits,
                    moderation::Moderation::new(config.rules, config.kick_time),
                ),
                Arc::clone(&metrics),
            ),
            metrics,
            members: Members::default(),
            relay: RelayRooms::default(),
            post: Post::default(),
            doors,
        }
    }

    /// Handles events until every sender is gone.
    ///
    /// Events are taken in batches of whatever is already queued (up to
    /// [`MAX_BATCH`]), and the connection threads with news are woken once at the
    /// end of each batch. When the hub keeps up, a batch is one event and nothing
    /// waits; when it falls behind, each wake-up carries many messages, which is
    /// what lets a busy room catch up.
    ///
    /// The backend's events come on a channel of their own, so that the backend's
    /// senders do not keep the hub alive: the hub ends when the connections' events
    /// channel closes, and its own sender to the backend goes with it.
    pub(crate) fn run(mut self, events: Receiver<HubEvent>, backend: Receiver<Event>) {
        let gone = crossbeam_channel::never();
        let mut backend = Some(backend);
        let ticks = crossbeam_channel::tick(TICK);
        loop {
            let next = select! {
                recv(events) -> event => Next::Event(event.ok()),
                recv(backend.as_ref().unwrap_or(&gone)) -> event => Next::Backend(event.ok()),
                recv(ticks) -> _ => Next::Tick,
            };
            match next {
                Next::Event(Some(event)) => self.apply(event),
                Next::Event(None) => break,
                Next::Backend(Some(event)) => self.backend(event),
                Next::Backend(None) => {
                    // The backend's threads ended early (one panicked): from now on
                    // what needs it gets `unavailable`.
                    backend = None;
                    self.chat.backend_gone();
                }
                Next::Tick => self.expire(std::time::Instant::now()),
            }
            for _ in 0..MAX_BATCH - 1 {
                if let Some(event) = backend.as_ref().and_then(|b| b.try_recv().ok()) {
                    self.backend(event);
                } else if let Ok(event) = events.try_recv() {
                    self.apply(event);
                } else {
                    break;
                }
            }
            self.post.wake_all();
        }
        log::debug!("hub: every connection is gone, stopping");
    }

    /// Gives up the joins the backend did not finish in time.
    fn expire(&mut self, now: std::time::Instant) {
        let Hub {
            members,
            chat,
            post,
            ..
        } = self;
        chat.expire(members, post, now);
        self.evict_overflowed();
    }

    /// Handles what the backend says: answers to the hub's requests, and the changes
    /// it made, in its order.
    fn backend(&mut self, event: Event) {
        let Hub {
            members,
            chat,
            relay,
            post,
            ..
        } = self;
        match event {
            Event::Change(Change::EndSession { id, expires }) => {
                // Best effort, as the hub never waits: a node that misses it refuses
                // the cookie once it restarts and reads the backend's list.
                let ended = crate::doors::Request::SessionEnded { id, expires };
                let _ = self.doors.try_send(ended);
            }
            Event::Relay { from, room, msg } => {
                if chat.backend.ours(&from).is_none() {
                    relay.deliver(members, post, &room, &msg);
                }
            }
            event => chat.backend_event(members, post, event),
        }
        self.evict_overflowed();
    }

    /// Handles one event, leaving what it asked of the store unanswered.
    #[cfg(test)]
    pub(crate) fn apply_only(&mut self, event: HubEvent) {
        self.apply(event);
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
                since,
                outbox,
                wire,
                client,
                admin,
                session,
            } => {
                chat.rooms_kept.clients.insert(id, client);
                if let Some(session) = session {
                    chat.moderation.sessions.insert(id, session);
                }
                members.join_unnamed(id, &room, outbox, wire, admin);
                if chat.refuse_kicked(members, post, id, &room, name.as_deref()) {
                    // Closed with 4001 once told: its leave forgets it, unnamed.
                } else {
                    chat.join(members, post, id, &room, name, since);
                    if let Some(error) = name_error {
                        chat.send_error(members, post, id, &error);
                    }
                }
            }
            HubEvent::JoinRelay { id, room, outbox } => {
                members.join_relay(id, &room, outbox);
                relay.enter(id, &room);
            }
            HubEvent::Chat { id, msg } => chat.handle(members, post, id, msg),
            HubEvent::Relay { id, msg } => {
                chat.backend.publish_relay(members, id, &msg);
                relay.forward(members, post, id, msg);
            }
            HubEvent::Reply { id, msg } => chat.reply(members, post, id, msg),
            HubEvent::Leave { id, reason } => self.remove(id, reason),
            HubEvent::Api { ip, call, reply } => chat.api(members, ip, call, reply),
        }
        self.evict_overflowed();
    }

    /// Evicts every member whose outbox overflowed, as a slow consumer.
    fn evict_overflowed(&mut self) {
        while let Some(id) = self.post.overflowed.pop() {
            if let Some(outbox) = self.members.outbox(id) {
                // Logged by the connection thread, not here: a log line can block on
                // a full stderr, and the hub must never block.
                outbox.evict();
                metrics::bump(&self.metrics.slow_consumer_drops);
                self.remove(id, LeaveReason::SlowConsumer);
            }
        }
        let rooms = self.chat.len() + self.relay.len();
        self.metrics.rooms.store(rooms as u64, Ordering::Relaxed);
    }

    /// Forgets a member entirely, and tells its chat room why it left.
    fn remove(&mut self, id: ConnId, reason: LeaveReason) {
        self.chat.rooms_kept.clients.remove(&id);
        self.chat.moderation.sessions.remove(&id);
        self.post.held.remove(&id);
        self.post.waiting.remove(&id);
        match self.members.get(id) {
            // It leaves when the backend says so (on a cluster, on every node at
            // once); a member already leaving (evicted, then its thread ended) is not
            // told twice.
            Some(members::Member {
                role: Role::Chat { .. },
                outbox,
                ..
            }) if outbox.is_some() => {
                self.chat
                    .member_left(&mut self.members, &mut self.post, id, reason);
            }
            Some(members::Member {
                role: Role::Relay { room },
                ..
            }) => {
                self.relay.leave(id, room);
                self.members.remove(id);
            }
            Some(_) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Inbox, outbox};
    use crate::store::{Location, Store, StoreConfig};

    /// A hub and its store, run step by step on the test's thread.
    struct TestHub {
        hub: Hub,
        store: Store,
        requests: Receiver<store::Request>,
        events_tx: Sender<Event>,
        events: Receiver<Event>,
    }

    impl TestHub {
        /// Handles `event`, then everything it asked of the store, to the end.
        fn handle(&mut self, event: HubEvent) {
            self.hub.handle(event);
            self.settle();
        }

        /// Lets the store answer everything asked so far, in order.
        fn settle(&mut self) {
            loop {
                let batch: Vec<_> = self.requests.try_iter().collect();
                if batch.is_empty() {
                    return;
                }
                assert!(self.store.serve(batch, &self.events_tx));
                for event in self.events.try_iter() {
                    self.hub.backend(event);
                }
                self.hub.post.wake_all();
            }
        }
    }

    fn hub() -> TestHub {
        let store = Store::open(StoreConfig {
            location: Location::Memory,
            retain: 100,
            history: 2,
            files: crate::files::Files::open(None, 1 << 20, 1 << 30).unwrap(),
        })
        .unwrap();
        let (store_tx, requests) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let config = test_config(store.epoch(), store.node());
        TestHub {
            hub: Hub::new(config, Arc::new(Metrics::new()), store_tx, no_doors()),
            store,
            requests,
            events_tx,
            events,
        }
    }

    /// Doors nobody serves: the hub only ever tells them of ended sessions.
    fn no_doors() -> Sender<crate::doors::Request> {
        crossbeam_channel::unbounded().0
    }

    /// The hub's settings in these tests: the defaults, `epoch` and `node`.
    fn test_config(epoch: &str, node: &str) -> HubConfig {
        HubConfig {
            epoch: epoch.to_owned(),
            node: node.to_owned(),
            shares_relay: false,
            join_timeout: std::time::Duration::from_secs(10),
            api_rate: (20, 40),
            max_rooms: 10_000,
            stored_rooms: Vec::new(),
            rules: Vec::new(),
            kick_time: std::time::Duration::from_secs(600),
            limits: crate::chat::Limits {
                max_text_len: 4096,
                max_message_size: 1 << 20,
                max_file_size: 100 << 20,
            },
        }
    }

    fn join(hub: &mut TestHub, id: ConnId, room: &str, name: &str) -> Inbox {
        let (tx, rx) = outbox(8, 1 << 20).unwrap();
        hub.handle(HubEvent::JoinChat {
            id,
            client: ClientKey::of("127.0.0.1".parse().unwrap()),
            session: None,
            room: room.into(),
            name: Some(name.into()),
            name_error: None,
            since: None,
            outbox: tx,
            wire: None,
            admin: false,
        });
        rx
    }

    fn drain(rx: &Inbox) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap())
            .collect()
    }

    /// The welcome's history is read while the client already talks: its welcome still
    /// comes first, and its answers keep the order of its requests.
    #[test]
    fn welcome_first_and_answers_in_order_while_the_store_is_busy() {
        let mut hub = hub();
        let (tx, rx) = outbox(16, 1 << 20).unwrap();
        hub.hub.apply_only(HubEvent::JoinChat {
            id: 1,
            client: ClientKey::of([127, 0, 0, 1].into()),
            session: None,
            room: "r".into(),
            name: Some("quick".into()),
            name_error: None,
            since: None,
            outbox: tx,
            wire: None,
            admin: false,
        });
        hub.hub.apply_only(HubEvent::Chat {
            id: 1,
            msg: ClientMessage::Message {
                text: "hi".into(),
                cid: None,
                file: None,
            },
        });
        hub.hub.apply_only(HubEvent::Chat {
            id: 1,
            msg: ClientMessage::Members,
        });
        hub.hub.apply_only(HubEvent::Reply {
            id: 1,
            msg: Message::text(r#"{"type":"error","code":"bad_json","message":"x"}"#),
        });
        assert!(rx.try_recv().is_none(), "nothing before the welcome");
        hub.settle();
        let kinds: Vec<String> = drain(&rx)
            .iter()
            .map(|m| m["type"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(kinds, ["welcome", "message", "members", "error"]);
    }

    #[test]
    fn duplicate_names_get_a_suffix_case_insensitively() {
        let mut hub = hub();
        let _a = join(&mut hub, 1, "lobby", "alice");
        let b = join(&mut hub, 2, "lobby", "Alice");
        assert_eq!(drain(&b)[0]["name"], "Alice-2");
    }

    /// Names are the backend's to give: a free variant of one taken up to case or
    /// look-alikes, a guest number nobody holds, and no taking someone's name.
    #[test]
    fn names_are_unique_up_to_case_and_look_alikes_and_guests_skip_names_in_use() {
        let mut hub = hub();
        let _a = join(&mut hub, 1, "lobby", "alice");
        let b = join(&mut hub, 2, "lobby", "\u{430}lice");
        assert_eq!(drain(&b)[0]["name"], "\u{430}lice-2");
        hub.handle(HubEvent::Chat {
            id: 2,
            msg: ClientMessage::Rename {
                name: "ALICE".into(),
            },
        });
        assert_eq!(drain(&b)[0]["code"], "name_taken");
        let _c = join(&mut hub, 3, "lobby", "guest-1");
        let (tx, d) = outbox(8, 1 << 20).unwrap();
        hub.handle(HubEvent::JoinChat {
            id: 4,
            client: ClientKey::of("127.0.0.1".parse().unwrap()),
            session: None,
            room: "lobby".into(),
            name: None,
            name_error: None,
            since: None,
            outbox: tx,
            wire: None,
            admin: false,
        });
        assert_eq!(drain(&d)[0]["name"], "guest-2");
    }

    #[test]
    fn history_keeps_the_last_n() {
        let mut hub = hub();
        let a = join(&mut hub, 1, "lobby", "a");
        for text in ["1", "2", "3"] {
            hub.handle(HubEvent::Chat {
                id: 1,
                msg: ClientMessage::Message {
                    text: text.into(),
                    cid: None,
                    file: None,
                },
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
            msg: ClientMessage::Message {
                text: "hi".into(),
                cid: None,
                file: None,
            },
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
        assert_eq!(metrics::get(&hub.hub.metrics.slow_consumer_drops), 0);
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
                    cid: None,
                    file: None,
                },
            });
            drain(&fast);
        }
        assert!(slow.is_evicted());
        assert!(hub.hub.members.get(2).is_none());
        assert!(hub.hub.members.get(1).is_some());
        assert!(!fast.is_evicted());
    }

    /// A member whose join never reached the backend (its queue was full) is gone
    /// for good when its connection ends: nothing of it is kept, and nobody hears a
    /// leave of a member that never joined.
    #[test]
    fn a_member_whose_join_failed_leaves_nothing_behind() {
        use crate::store::Request;
        let (bridge, requests) = crossbeam_channel::bounded(1);
        let config = test_config("e", "n");
        let mut hub = Hub::new(config, Arc::new(Metrics::new()), bridge, no_doors());
        let ann = join_quietly(&mut hub, 1);
        welcome_as_backend(&mut hub, &requests);
        assert_eq!(drain(&ann)[0]["type"], "welcome");
        let _bob = join_quietly(&mut hub, 2); // fills the backend's queue
        let carl = join_quietly(&mut hub, 3); // finds it full
        let told: Vec<_> = drain(&carl)
            .into_iter()
            .map(|m| m["code"].clone())
            .collect();
        assert_eq!(told, [serde_json::json!("unavailable")]);
        hub.handle(HubEvent::Leave {
            id: 3,
            reason: LeaveReason::Closed,
        });
        assert!(hub.members.get(3).is_none(), "nothing of carl is kept");
        let heard = drain(&ann);
        assert!(heard.is_empty(), "ann hears no leave: {heard:?}");
        let queued: Vec<Request> = requests.try_iter().collect();
        assert!(
            matches!(queued.as_slice(), [Request::Join { member: 2, .. }]),
            "only bob's join, no leave for carl: {queued:?}"
        );
    }

    /// A hub on a backend that takes requests and never answers them.
    fn silent_backend() -> (Hub, Receiver<store::Request>) {
        let (bridge, requests) = crossbeam_channel::unbounded();
        let config = test_config("e", "n");
        let hub = Hub::new(config, Arc::new(Metrics::new()), bridge, no_doors());
        (hub, requests)
    }

    /// Answers the join the backend was asked for first as a backend would: the change
    /// that names the member, then its history (none).
    fn welcome_as_backend(hub: &mut Hub, requests: &Receiver<store::Request>) {
        let Ok(store::Request::Join {
            member,
            seq,
            room,
            names,
            ..
        }) = requests.try_recv()
        else {
            panic!("a join for the backend");
        };
        let name = names
            .first()
            .map_or_else(String::new, |(name, _)| name.clone());
        hub.backend(Event::Change(Change::Join {
            m: format!("n.{member}"),
            name,
            room: room.clone(),
            last: 0,
            ts: 1,
            restore: false,
        }));
        hub.backend(Event::Answer(store::Answer::Loaded {
            member,
            seq,
            room,
            history: Vec::new(),
            last_id: 0,
            resumed: false,
            failed: false,
        }));
        hub.post.wake_all();
    }

    /// Joins member `id` (named `m{id}`) to room `r`, leaving its join unanswered.
    fn join_quietly(hub: &mut Hub, id: ConnId) -> Inbox {
        let (tx, rx) = outbox(16, 1 << 20).unwrap();
        hub.handle(HubEvent::JoinChat {
            id,
            client: ClientKey::of([127, 0, 0, 1].into()),
            session: None,
            room: "r".into(),
            name: Some(format!("m{id}")),
            name_error: None,
            since: None,
            outbox: tx,
            wire: None,
            admin: false,
        });
        rx
    }

    /// A join whose news never comes (the backend lost it) is given up once the
    /// handshake's time is over: the client is told and asked to reconnect, and is
    /// not kept waiting for ever.
    #[test]
    fn a_join_the_backend_never_finishes_is_given_up_in_time() {
        let (mut hub, requests) = silent_backend();
        let rx = join_quietly(&mut hub, 1);
        hub.expire(std::time::Instant::now());
        hub.post.wake_all();
        assert!(drain(&rx).is_empty(), "still in time");
        hub.expire(std::time::Instant::now() + std::time::Duration::from_secs(11));
        hub.post.wake_all();
        let told = drain(&rx);
        assert_eq!(told[0]["code"], "unavailable", "{told:?}");
        assert!(rx.must_reconnect());
        // The backend may have made the join all the same: it is told to forget it.
        let asked: Vec<store::Request> = requests.try_iter().collect();
        assert!(
            matches!(
                asked.as_slice(),
                [
                    store::Request::Join { member: 1, .. },
                    store::Request::Leave { member: 1, .. }
                ]
            ),
            "{asked:?}"
        );
    }

    /// A subscription that broke lost the news of the joins waiting for it: they are
    /// given up at once, and a member already named is left alone.
    #[test]
    fn a_broken_subscription_fails_the_joins_waiting_for_news() {
        let (mut hub, requests) = silent_backend();
        let ann = join_quietly(&mut hub, 1);
        welcome_as_backend(&mut hub, &requests);
        let bob = join_quietly(&mut hub, 2);
        hub.backend(Event::Resubscribed);
        hub.post.wake_all();
        assert_eq!(drain(&ann)[0]["type"], "welcome");
        assert!(!ann.must_reconnect());
        assert_eq!(drain(&bob)[0]["code"], "unavailable");
        assert!(bob.must_reconnect());
    }

    /// A hub whose backend's queue is full keeps the leave and sends it as soon as the
    /// backend takes requests again.
    #[test]
    fn a_leave_the_bridge_cannot_take_yet_is_sent_later() {
        use crate::store::Request;
        let (bridge, requests) = crossbeam_channel::bounded(2);
        let config = test_config("e", "n");
        let mut hub = Hub::new(config, Arc::new(Metrics::new()), bridge, no_doors());
        let rx = join_quietly(&mut hub, 1);
        welcome_as_backend(&mut hub, &requests);
        assert_eq!(drain(&rx)[0]["type"], "welcome");
        // Two messages fill the bridge's queue; the leave finds no room.
        for text in ["one", "two"] {
            hub.handle(HubEvent::Chat {
                id: 1,
                msg: ClientMessage::Message {
                    text: text.into(),
                    cid: None,
                    file: None,
                },
            });
        }
        hub.handle(HubEvent::Leave {
            id: 1,
            reason: LeaveReason::Closed,
        });
        assert!(hub.members.get(1).is_none(), "gone here at once");
        let queued: Vec<Request> = requests.try_iter().collect();
        assert_eq!(queued.len(), 2, "the two appends, no leave");
        // The next news from the bridge finds room: the leave goes.
        hub.backend(Event::Presence(Vec::new()));
        match requests.try_recv() {
            Ok(Request::Leave { member: 1, reason }) => assert_eq!(reason, "closed"),
            other => panic!("expected the owed leave, got {other:?}"),
        }
    }
}
