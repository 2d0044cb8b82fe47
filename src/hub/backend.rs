//! What the hub keeps of its backend (the store writer of a single node, or the
//! bridge to Redis of a cluster node): the channel to it, its members between join
//! and welcome, what was delivered where, and the members of other nodes by the names
//! the backend gives them. What the hub does with it is in `changes`.

use super::members::{Member, Members, Role};
use crate::base::ConnId;
use crate::chat::ClientMessage;
use crate::store::{Answer, Request, member_key};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Ids given to members of other nodes start here, far above this node's own.
const FIRST_REMOTE: ConnId = 1 << 62;

/// A member of ours between its join (or move) and its welcome.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) seq: u64,
    /// When the backend was asked: past [`Backend::answer_within`], the join failed.
    asked: Instant,
    /// Its join came back as a change: the changes that follow are for it.
    pub(super) marked: bool,
    /// The history the backend read for it.
    pub(super) loaded: Option<Answer>,
    /// What it asked before it had a name, and the replies to its input meanwhile.
    pub(super) early: Vec<Early>,
}

/// What waits for a member's name, in the order it came.
#[derive(Debug)]
pub(super) enum Early {
    /// A request, carried out once the member has its name.
    Request(ClientMessage),
    /// A reply its connection thread worked out, sent after the answers to the
    /// requests before it.
    Reply(tungstenite::Message),
}

/// What the hub keeps of its backend.
#[derive(Debug)]
pub(super) struct Backend {
    /// This node's name in member keys.
    node: String,
    requests: Sender<Request>,
    /// Whether relay traffic goes to other nodes (a cluster's backend carries it).
    pub(super) shares_relay: bool,
    /// How long a join (or a move) may wait for the backend's change and history
    /// before it is given up: news can be lost (a subscription that broke), and a
    /// client must never wait for ever.
    answer_within: Duration,
    /// The backend's thread is gone.
    gone: bool,
    pub(super) pending: HashMap<ConnId, Pending>,
    /// Per member of ours, the room's id at its join: older messages are in its
    /// welcome already.
    pub(super) floors: HashMap<ConnId, u64>,
    /// Per room with members, the newest id delivered: a message that comes twice
    /// (live and in a catch-up) is delivered once.
    pub(super) delivered: HashMap<String, u64>,
    /// Members of ours told to reconnect because their room's messages reached this
    /// node with a hole: nothing more is delivered to them before they go.
    pub(super) missed: HashSet<ConnId>,
    /// Members of other nodes: their name in the backend ↔ their id here.
    pub(super) remote: HashMap<String, ConnId>,
    pub(super) keys: HashMap<ConnId, String>,
    next_remote: ConnId,
    /// Leaves the backend could not take when they happened (its queue was full):
    /// sent as soon as it can, at most one per connection there ever was.
    owed: VecDeque<(ConnId, &'static str)>,
}

impl Backend {
    pub(super) fn new(
        node: String,
        requests: Sender<Request>,
        shares_relay: bool,
        answer_within: Duration,
    ) -> Self {
        Self {
            node,
            requests,
            shares_relay,
            answer_within,
            gone: false,
            pending: HashMap::new(),
            floors: HashMap::new(),
            delivered: HashMap::new(),
            missed: HashSet::new(),
            remote: HashMap::new(),
            keys: HashMap::new(),
            next_remote: FIRST_REMOTE,
            owed: VecDeque::new(),
        }
    }

    /// Queues a request for the backend without waiting; `false` if it cannot take it
    /// (it is behind, or gone).
    pub(super) fn ask(&self, request: Request) -> bool {
        !self.gone && self.requests.try_send(request).is_ok()
    }

    /// Sends a relay message of member `id` to the other nodes, if the backend has any
    /// (on a single node, relay rooms are the hub's alone).
    pub(super) fn publish_relay(&self, members: &Members, id: ConnId, msg: &Message) {
        // A single node looks nothing up: this runs for every relay message.
        if !self.shares_relay {
            return;
        }
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
            let _ = self.ask(relay);
        }
    }

    /// Tells the backend that member `id` left, now or as soon as the backend can take it;
    /// `false` when not now.
    pub(super) fn leave(&mut self, id: ConnId, reason: &'static str) -> bool {
        if self.gone {
            return false; // no backend to tell any more
        }
        self.owed.push_back((id, reason));
        self.pay_owed();
        !self.owes(id)
    }

    /// Sends the leaves owed, oldest first, as far as the backend takes them.
    pub(super) fn pay_owed(&mut self) {
        while let Some(&(member, reason)) = self.owed.front() {
            if !self.ask(Request::Leave { member, reason }) {
                return;
            }
            self.owed.pop_front();
        }
    }

    /// Whether a leave is still owed for member `id`.
    fn owes(&self, id: ConnId) -> bool {
        self.owed.iter().any(|&(owed, _)| owed == id)
    }

    pub(super) fn gone(&mut self) {
        self.gone = true;
    }

    /// A room nobody is in any more.
    pub(super) fn room_gone(&mut self, room: &str) {
        self.delivered.remove(room);
    }

    pub(super) fn ours<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.node.as_str())?.strip_prefix('.')
    }

    /// The id here of the member `key` names, if it is known.
    pub(super) fn id(&self, key: &str) -> Option<ConnId> {
        match self.ours(key) {
            Some(id) => id.parse().ok(),
            None => self.remote.get(key).copied(),
        }
    }

    /// The id of a member of another node, new if it was not known.
    pub(super) fn remote_id(&mut self, key: &str) -> ConnId {
        if let Some(&id) = self.remote.get(key) {
            return id;
        }
        let id = self.next_remote;
        self.next_remote += 1;
        self.remote.insert(key.to_owned(), id);
        self.keys.insert(id, key.to_owned());
        id
    }

    /// The backend's name of member `id`.
    pub(super) fn key(&self, id: ConnId) -> String {
        self.keys
            .get(&id)
            .cloned()
            .unwrap_or_else(|| member_key(&self.node, id))
    }

    pub(super) fn forget(&mut self, id: ConnId) {
        self.pending.remove(&id);
        self.floors.remove(&id);
        self.missed.remove(&id);
        if let Some(key) = self.keys.remove(&id) {
            self.remote.remove(&key);
        }
    }

    /// The members whose join (or move) has waited longer than it may at `now`.
    pub(super) fn overdue(&self, now: Instant) -> Vec<ConnId> {
        self.pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.asked) > self.answer_within)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The members whose join (or move) has not come back as a change yet.
    pub(super) fn unmarked(&self) -> Vec<ConnId> {
        self.pending
            .iter()
            .filter(|(_, p)| !p.marked)
            .map(|(&id, _)| id)
            .collect()
    }

    pub(super) fn is_muted(&self, id: ConnId) -> bool {
        self.pending.get(&id).is_some_and(|p| !p.marked)
    }
}

pub(super) fn pending(seq: u64) -> Pending {
    Pending {
        seq,
        asked: Instant::now(),
        marked: false,
        loaded: None,
        early: Vec::new(),
    }
}
