//! What a cluster node's hub keeps of the cluster: its bridge to Redis,
//! its members between join and welcome, and the members of other nodes by the
//! names Redis gives them. What the hub does with it is in `cluster`.

use crate::base::ConnId;
use crate::chat::ClientMessage;
use crate::cluster::{Request, member_key};
use crate::store::Answer;
use crossbeam_channel::Sender;
use std::collections::{HashMap, VecDeque};

/// Ids given to members of other nodes start here, far above this node's own.
const FIRST_REMOTE: ConnId = 1 << 62;

/// A member of ours between its join (or move) and its welcome.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) seq: u64,
    /// Its join came back on the bus: what the bus brings now is for it.
    pub(super) marked: bool,
    /// The history the bridge read for it.
    pub(super) loaded: Option<Answer>,
    /// What it asked before it had a name.
    pub(super) early: Vec<ClientMessage>,
}

/// What the hub keeps of the cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    node: String,
    bridge: Sender<Request>,
    /// The bridge thread is gone.
    gone: bool,
    pub(super) pending: HashMap<ConnId, Pending>,
    /// Per member of ours, the room's id at its join: older messages are in its
    /// welcome already.
    pub(super) floors: HashMap<ConnId, u64>,
    /// Per room with members, the newest id delivered: a message that comes twice
    /// (the bus and a catch-up) is delivered once.
    pub(super) delivered: HashMap<String, u64>,
    /// Members of other nodes: their name in Redis ↔ their id here.
    pub(super) remote: HashMap<String, ConnId>,
    pub(super) keys: HashMap<ConnId, String>,
    next_remote: ConnId,
    /// Leaves the bridge could not take when they happened (its queue was full):
    /// sent as soon as it can, at most one per connection there ever was.
    owed: VecDeque<(ConnId, &'static str)>,
}

impl Cluster {
    pub(super) fn new(node: String, bridge: Sender<Request>) -> Self {
        Self {
            node,
            bridge,
            gone: false,
            pending: HashMap::new(),
            floors: HashMap::new(),
            delivered: HashMap::new(),
            remote: HashMap::new(),
            keys: HashMap::new(),
            next_remote: FIRST_REMOTE,
            owed: VecDeque::new(),
        }
    }

    /// Queues a request for the bridge without waiting; `false` if it cannot take it.
    pub(super) fn ask(&self, request: Request) -> bool {
        !self.gone && self.bridge.try_send(request).is_ok()
    }

    /// Tells Redis that member `id` left, now or as soon as the bridge can take it;
    /// `false` when not now.
    pub(super) fn leave(&mut self, id: ConnId, reason: &'static str) -> bool {
        if self.gone {
            return false; // no bridge to tell any more
        }
        self.owed.push_back((id, reason));
        self.pay_owed();
        !self.owes(id)
    }

    /// Sends the leaves owed, oldest first, as far as the bridge takes them.
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

    /// The name in Redis of member `id`.
    pub(super) fn key(&self, id: ConnId) -> String {
        self.keys
            .get(&id)
            .cloned()
            .unwrap_or_else(|| member_key(&self.node, id))
    }

    pub(super) fn forget(&mut self, id: ConnId) {
        self.pending.remove(&id);
        self.floors.remove(&id);
        if let Some(key) = self.keys.remove(&id) {
            self.remote.remove(&key);
        }
    }

    pub(super) fn is_muted(&self, id: ConnId) -> bool {
        self.pending.get(&id).is_some_and(|p| !p.marked)
    }
}

pub(super) fn pending(seq: u64) -> Pending {
    Pending {
        seq,
        marked: false,
        loaded: None,
        early: Vec::new(),
    }
}
