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
    /// On its way to the store; these answers wait for it.
    Pending(Vec<Sender<ApiAnswer>>),
    /// Stored as this.
    Done(Arc<ChatLine>),
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
    /// On its way to the store, or not confirmed yet.
    Pending,
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
                Post::Pending(waiting) => waiting.push(reply.clone()),
                Post::Done(line) => {
                    let _ = reply.send(ApiAnswer::Posted(Arc::clone(line)));
                }
            }
            return Seen::Answered;
        }
        self.fresh(key, now);
        Seen::New
    }

    /// Looks up a chat message's key; a new one is kept as pending from now on.
    pub(super) fn claim(&mut self, key: &Key) -> Claim {
        let now = Instant::now();
        if let Some((since, post)) = self.posts.get(key)
            && now.duration_since(*since) < KEPT
        {
            return match post {
                Post::Pending(_) => Claim::Pending,
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
        self.posts
            .insert(key.clone(), (now, Post::Pending(Vec::new())));
        self.order.push_back((now, key.clone()));
    }

    /// The post with `key` was stored as `line`: whoever waits gets it, and so will
    /// every later post with the key.
    pub(super) fn stored(&mut self, key: &Key, line: &Arc<ChatLine>) {
        if let Some((_, post)) = self.posts.get_mut(key) {
            if let Post::Pending(waiting) = post {
                for reply in waiting.drain(..) {
                    let _ = reply.send(ApiAnswer::Posted(Arc::clone(line)));
                }
            }
            *post = Post::Done(Arc::clone(line));
        }
    }

    /// The post with `key` was not stored: whoever waits is told, and the key is
    /// forgotten, so that a retry may post.
    pub(super) fn failed(&mut self, key: &Key) {
        if let Some((_, Post::Pending(waiting))) = self.posts.remove(key) {
            for reply in waiting {
                let _ = reply.send(ApiAnswer::Unavailable);
            }
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
        assert!(matches!(keys.claim(&key(0)), Claim::New)); // left waiting
        for n in 1..MAX_KEYS {
            assert!(matches!(keys.claim(&key(n)), Claim::New));
            keys.stored(&key(n), &line(n as u64));
        }
        assert!(matches!(keys.claim(&key(MAX_KEYS)), Claim::New));
        assert_eq!(keys.posts.len(), MAX_KEYS, "bounded");
        assert!(
            matches!(keys.claim(&key(0)), Claim::Pending),
            "waiting: kept"
        );
        assert!(
            matches!(keys.claim(&key(2)), Claim::Done(l) if l.id == 2),
            "the next oldest is kept"
        );
        assert!(
            matches!(keys.claim(&key(1)), Claim::New),
            "the oldest settled went"
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
