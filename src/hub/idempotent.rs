//! `Idempotency-Key` on API posts and `cid` on chat messages: a script or a client
//! that retries a message it got no answer to (a `202`, `unconfirmed`, a timeout, a
//! dropped connection) sends the same key, and every message with that key in that
//! room is stored once; a retry is answered with the same message. One mechanism,
//! two namespaces (a `cid` is kept as `chat:{cid}`).
//!
//! The hub keeps each key for 24 hours, and at most [`MAX_KEYS`] (the oldest settled
//! ones go first): while its post is on its way to the store,
//! later posts with the key wait for the same answer; once stored, they get the
//! stored message at once; if the store failed, the key is forgotten (nothing was
//! posted, so a retry may post). Keys are kept by the node that took the post, in
//! memory; on a cluster the append script keeps them in Redis as well (a `cid` an
//! hour, an `Idempotency-Key` a day), so a retry through another node is not stored
//! twice either (the node is told it was stored before, `StoreError::AlreadyStored`).
//! A single node's store keeps each key with its message in the same way, so a retry
//! after a restart, or past the [`MAX_KEYS`] kept here, is not stored twice either.

use crate::base::ConnId;
use crate::chat::ChatLine;
use crate::store::ApiAnswer;
use crossbeam_channel::Sender;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a key is kept.
const KEPT: Duration = Duration::from_secs(24 * 3600);

/// Keys kept at most; past it, the oldest are forgotten first.
const MAX_KEYS: usize = 10_000;

/// A key, in its room.
pub(super) type Key = (String, String);

#[derive(Debug)]
enum Post {
    /// On its way to the store: the API requests and chat members that sent it again
    /// wait for the same answer. `in_doubt` once the store said it could not tell
    /// whether it stored it (`unconfirmed`): a chat retry is told so then, not kept
    /// waiting.
    Pending {
        api: Vec<Sender<ApiAnswer>>,
        chat: Vec<ConnId>,
        in_doubt: bool,
    },
    /// Stored as this.
    Done(Arc<ChatLine>),
}

impl Post {
    fn pending() -> Post {
        Post::Pending {
            api: Vec::new(),
            chat: Vec::new(),
            in_doubt: false,
        }
    }
}

/// What to do with a post that carries a key.
#[derive(Debug)]
pub(super) enum Seen {
    /// A new key: post it, then [`Keys::stored`] or [`Keys::failed`].
    New,
    /// Already posted or on its way: the answer was or will be sent.
    Answered,
}

/// What a chat message's `cid` finds.
#[derive(Debug)]
pub(super) enum Claim {
    /// Never seen (or long ago): the message goes to the store, its key pending.
    New,
    /// On its way to the store: the member gets the message once it is stored
    /// ([`Keys::stored`] names it).
    Waiting,
    /// The store could not tell whether it stored it: `unconfirmed`.
    InDoubt,
    /// Stored as this.
    Done(Arc<ChatLine>),
}

/// Every key of the last 24 hours (at most [`MAX_KEYS`]). Only the hub touches it.
#[derive(Debug, Default)]
pub(super) struct Keys {
    posts: HashMap<Key, (Instant, Post)>,
    /// The keys in the order they were taken, with when: the oldest is forgotten
    /// first, in constant time (a key taken again later has a newer entry here).
    order: VecDeque<(Instant, Key)>,
}

impl Keys {
    /// Takes a post with `key`, whose answer goes to `reply`.
    pub(super) fn take(&mut self, key: &Key, reply: &Sender<ApiAnswer>) -> Seen {
        let now = Instant::now();
        if let Some((since, post)) = self.posts.get_mut(key)
            && now.duration_since(*since) < KEPT
        {
            match post {
                Post::Pending { api, .. } => api.push(reply.clone()),
                Post::Done(line) => {
                    let _ = reply.send(ApiAnswer::Posted(Arc::clone(line)));
                }
            }
            return Seen::Answered;
        }
        self.fresh(key, now);
        Seen::New
    }

    /// Looks up the key of member `id`'s chat message; a new one is kept as pending
    /// from now on.
    pub(super) fn claim(&mut self, key: &Key, id: ConnId) -> Claim {
        let now = Instant::now();
        if let Some((since, post)) = self.posts.get_mut(key)
            && now.duration_since(*since) < KEPT
        {
            return match post {
                Post::Pending { in_doubt: true, .. } => Claim::InDoubt,
                Post::Pending { chat, .. } => {
                    chat.push(id);
                    Claim::Waiting
                }
                Post::Done(line) => Claim::Done(Arc::clone(line)),
            };
        }
        self.fresh(key, now);
        Claim::New
    }

    /// Keeps `key` as pending, within the bound on how many keys are kept: what
    /// expired goes, and past the bound the oldest that is not waiting for the store.
    fn fresh(&mut self, key: &Key, now: Instant) {
        let mut turns = self.order.len();
        while let Some((taken, oldest)) = self.order.pop_front() {
            let current = self.posts.get(&oldest).filter(|(since, _)| *since == taken);
            let Some((_, post)) = current else {
                continue; // taken again since, or forgotten: a stale entry
            };
            let expired = now.duration_since(taken) >= KEPT;
            let full = self.posts.len() >= MAX_KEYS;
            if expired || (full && matches!(post, Post::Done(_))) {
                self.posts.remove(&oldest);
                continue;
            }
            if full && turns > 0 {
                // Still waiting for the store: kept, behind the others.
                turns -= 1;
                self.order.push_back((taken, oldest));
                continue;
            }
            self.order.push_front((taken, oldest));
            break;
        }
        self.posts.insert(key.clone(), (now, Post::pending()));
        self.order.push_back((now, key.clone()));
    }

    /// The post with `key` was stored as `line`: whoever waits gets it, and so will
    /// every later post with the key. The chat members that wait are returned, for
    /// the hub to answer.
    pub(super) fn stored(&mut self, key: &Key, line: &Arc<ChatLine>) -> Vec<ConnId> {
        let Some((_, post)) = self.posts.get_mut(key) else {
            return Vec::new();
        };
        match std::mem::replace(post, Post::Done(Arc::clone(line))) {
            Post::Pending { api, chat, .. } => {
                for reply in api {
                    let _ = reply.send(ApiAnswer::Posted(Arc::clone(line)));
                }
                chat
            }
            Post::Done(_) => Vec::new(),
        }
    }

    /// Message `id` of `room` was deleted: a retry of its post gets its tombstone, never
    /// its text. Rare, so a look at every key is cheap enough.
    pub(super) fn deleted(&mut self, room: &str, id: u64) {
        for ((key_room, _), (_, post)) in &mut self.posts {
            if let Post::Done(line) = post
                && key_room == room
                && line.id == id
            {
                *line = Arc::new(ChatLine::tombstone(id, room.to_owned(), line.ts));
            }
        }
    }

    /// The history of `room` was emptied up to `through`: a retry of a post in it gets
    /// its tombstone, never its text.
    pub(super) fn cleared(&mut self, room: &str, through: u64) {
        for ((key_room, _), (_, post)) in &mut self.posts {
            if let Post::Done(line) = post
                && key_room == room
                && line.id <= through
            {
                *line = Arc::new(ChatLine::tombstone(line.id, room.to_owned(), line.ts));
            }
        }
    }

    /// The post with `key` was not stored: whoever waits is told (the chat members
    /// returned, for the hub to tell), and the key is forgotten, so that a retry may
    /// post.
    pub(super) fn failed(&mut self, key: &Key) -> Vec<ConnId> {
        match self.posts.remove(key) {
            Some((_, Post::Pending { api, chat, .. })) => {
                for reply in api {
                    let _ = reply.send(ApiAnswer::Unavailable);
                }
                chat
            }
            _ => Vec::new(),
        }
    }

    /// The store could not tell whether it stored the post with `key`: later retries
    /// are told so at once; the chat members that wait are returned, to be told now.
    pub(super) fn in_doubt(&mut self, key: &Key) -> Vec<ConnId> {
        match self.posts.get_mut(key) {
            Some((_, Post::Pending { chat, in_doubt, .. })) => {
                *in_doubt = true;
                std::mem::take(chat)
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u64) -> Arc<ChatLine> {
        Arc::new(ChatLine {
            id,
            room: "r".into(),
            from: "ci".into(),
            text: "t".into(),
            ts: 0,
            via: Some("api"),
            file: None,
            deleted: false,
        })
    }

    #[test]
    fn a_key_is_posted_once_and_everyone_gets_the_same_message() {
        let mut keys = Keys::default();
        let key = ("r".to_owned(), "k1".to_owned());
        let (first, first_rx) = crossbeam_channel::unbounded();
        let (second, second_rx) = crossbeam_channel::unbounded();
        assert!(matches!(keys.take(&key, &first), Seen::New));
        assert!(matches!(keys.take(&key, &second), Seen::Answered));
        keys.stored(&key, &line(7));
        assert!(matches!(second_rx.try_recv(), Ok(ApiAnswer::Posted(l)) if l.id == 7));
        assert!(
            first_rx.try_recv().is_err(),
            "the first is answered by the store's path"
        );
        let (third, third_rx) = crossbeam_channel::unbounded();
        assert!(matches!(keys.take(&key, &third), Seen::Answered));
        assert!(matches!(third_rx.try_recv(), Ok(ApiAnswer::Posted(l)) if l.id == 7));
        let other = ("other-room".to_owned(), "k1".to_owned());
        assert!(matches!(keys.take(&other, &third), Seen::New), "per room");
    }

    #[test]
    fn past_the_bound_the_oldest_settled_key_goes_first_and_a_waiting_one_stays() {
        let mut keys = Keys::default();
        let key = |n: usize| ("r".to_owned(), format!("k{n}"));
        assert!(matches!(keys.claim(&key(0), 1), Claim::New)); // left waiting
        for n in 1..MAX_KEYS {
            assert!(matches!(keys.claim(&key(n), 1), Claim::New));
            keys.stored(&key(n), &line(n as u64));
        }
        assert!(matches!(keys.claim(&key(MAX_KEYS), 1), Claim::New));
        assert_eq!(keys.posts.len(), MAX_KEYS, "bounded");
        assert!(
            matches!(keys.claim(&key(0), 2), Claim::Waiting),
            "waiting: kept"
        );
        assert!(
            matches!(keys.claim(&key(2), 1), Claim::Done(l) if l.id == 2),
            "the next oldest is kept"
        );
        assert!(
            matches!(keys.claim(&key(1), 1), Claim::New),
            "the oldest settled went"
        );
    }

    #[test]
    fn a_chat_retry_waits_for_the_first_unless_the_store_cannot_tell() {
        let mut keys = Keys::default();
        let key = ("r".to_owned(), "chat:c".to_owned());
        assert!(matches!(keys.claim(&key, 1), Claim::New));
        assert!(matches!(keys.claim(&key, 2), Claim::Waiting));
        assert_eq!(
            keys.stored(&key, &line(4)),
            [2],
            "the waiting member is named"
        );
        assert!(matches!(keys.claim(&key, 3), Claim::Done(l) if l.id == 4));
        let doubt = ("r".to_owned(), "chat:d".to_owned());
        assert!(matches!(keys.claim(&doubt, 1), Claim::New));
        assert!(matches!(keys.claim(&doubt, 2), Claim::Waiting));
        assert_eq!(keys.in_doubt(&doubt), [2]);
        assert!(matches!(keys.claim(&doubt, 3), Claim::InDoubt));
        assert!(keys.failed(&doubt).is_empty());
        assert!(
            matches!(keys.claim(&doubt, 3), Claim::New),
            "forgotten: may post"
        );
    }

    #[test]
    fn a_failed_post_forgets_its_key() {
        let mut keys = Keys::default();
        let key = ("r".to_owned(), "k".to_owned());
        let (a, _) = crossbeam_channel::unbounded();
        let (b, b_rx) = crossbeam_channel::unbounded();
        assert!(matches!(keys.take(&key, &a), Seen::New));
        assert!(matches!(keys.take(&key, &b), Seen::Answered));
        keys.failed(&key);
        assert!(matches!(b_rx.try_recv(), Ok(ApiAnswer::Unavailable)));
        assert!(matches!(keys.take(&key, &a), Seen::New));
    }
}
