//! `Idempotency-Key` on API posts: a script that retries a post it got no answer to
//! (a `202`, a timeout, a dropped connection) sends the same key, and every post with
//! that key in that room is posted once and answered with the same message.
//!
//! The hub keeps each key for 24 hours: while its post is on its way to the store,
//! later posts with the key wait for the same answer; once stored, they get the
//! stored message at once; if the store failed, the key is forgotten (nothing was
//! posted, so a retry may post). Keys are kept by the node that took the post, in
//! memory: a retry that reaches another node of a cluster, or comes after a restart,
//! is a new post.

use crate::chat::ChatLine;
use crate::store::ApiAnswer;
use crossbeam_channel::Sender;
use std::collections::HashMap;
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

/// Every key of the last 24 hours. Only the hub touches it.
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

#[derive(Debug, Default)]
pub(super) struct Keys(HashMap<Key, (Instant, Post)>);

impl Keys {
    /// Takes a post with `key`, whose answer goes to `reply`.
    pub(super) fn take(&mut self, key: &Key, reply: &Sender<ApiAnswer>) -> Seen {
        let now = Instant::now();
        if let Some((since, post)) = self.0.get_mut(key)
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
        if let Some((since, post)) = self.0.get(key)
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

    /// Keeps `key` as pending, within the bound on how many keys are kept.
    fn fresh(&mut self, key: &Key, now: Instant) {
        if self.0.len() >= MAX_KEYS {
            self.0
                .retain(|_, (since, _)| now.duration_since(*since) < KEPT);
        }
        if self.0.len() >= MAX_KEYS {
            let oldest = self
                .0
                .iter()
                .filter(|(_, (_, post))| matches!(post, Post::Done(_)))
                .min_by_key(|(_, (since, _))| *since)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(key.clone(), (now, Post::Pending(Vec::new())));
    }

    /// The post with `key` was stored as `line`: whoever waits gets it, and so will
    /// every later post with the key.
    pub(super) fn stored(&mut self, key: &Key, line: &Arc<ChatLine>) {
        if let Some((_, post)) = self.0.get_mut(key) {
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
        if let Some((_, Post::Pending(waiting))) = self.0.remove(key) {
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
