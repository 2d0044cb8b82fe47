//! What the hub owes connection threads while it handles a batch of events: the
//! messages for each member's outbox, in the order the member must see them (a
//! welcome before anything else of its room, answers before what waits behind them),
//! the wake-ups to give once the batch is done, and who overflowed.

use super::members::Members;
use crate::base::ConnId;
use crate::outbox::{Outbox, Owed, SendError};
use std::collections::HashMap;
use tungstenite::Message;

/// What was queued for whom while handling the current batch of events.
#[derive(Debug, Default)]
pub(super) struct Post {
    /// Members whose outbox overflowed while handling the current event.
    pub(super) overflowed: Vec<ConnId>,
    /// Wake-ups owed to connection threads, given at the end of a batch.
    pub(super) owed: Vec<Owed>,
    /// Members waiting for their `welcome` (its history is being read): what is for
    /// them meanwhile waits here, since the welcome must come first.
    pub(super) held: HashMap<ConnId, Vec<Message>>,
    /// Members with requests at the backend (a message to commit, a page to read), and
    /// what else is for them meanwhile: it waits behind the answers, so that a client
    /// gets its answers in the order of its requests.
    pub(super) waiting: HashMap<ConnId, (usize, Vec<Message>)>,
}

impl Post {
    /// Queues `msg` for member `id`, without ever blocking. A full outbox marks the
    /// member for eviction once the current event is handled.
    pub(super) fn deliver(&mut self, members: &Members, id: ConnId, msg: Message) {
        // The common case, and every relay delivery: nobody is held at all.
        if self.held.is_empty() && self.waiting.is_empty() {
            return self.send(members, id, msg);
        }
        let queue = match (self.held.get_mut(&id), self.waiting.get_mut(&id)) {
            (Some(held), _) => held,
            (None, Some((_, waiting))) => waiting,
            (None, None) => return self.send(members, id, msg),
        };
        // Counted against the client's outbox, which makes its thread stop reading
        // requests while the hub holds too much for it; past the bound it is a slow
        // consumer like any other.
        if members.outbox(id).is_some_and(Outbox::hold_one) {
            queue.push(msg);
        } else if !self.overflowed.contains(&id) {
            self.overflowed.push(id);
        }
    }

    /// Queues messages that were held for `id`, no longer counted as held.
    pub(super) fn unhold(&mut self, members: &Members, id: ConnId, messages: Vec<Message>) {
        if let Some(owed) = members.outbox(id).and_then(|o| o.unhold(messages.len())) {
            self.owed.push(owed);
        }
        for msg in messages {
            self.deliver(members, id, msg);
        }
    }

    /// The backend's answer to a request of member `id`, or a committed message of its
    /// room (which answers the member's own post, and is news nothing else waits for):
    /// ahead of what waits behind the member's requests, never ahead of a pending
    /// welcome.
    pub(super) fn deliver_answer(&mut self, members: &Members, id: ConnId, msg: Message) {
        // The common case, once per member of a room for every message: nobody is
        // held, so no lookup.
        if self.held.is_empty() {
            return self.send(members, id, msg);
        }
        match self.held.get_mut(&id) {
            Some(_) => self.deliver(members, id, msg),
            None => self.send(members, id, msg),
        }
    }

    /// Member `id` has one more request at the backend.
    ///
    /// The answer will be queued for the member all at once (a batch of commits can
    /// hold a thousand of one client's messages), so a request at the backend counts
    /// against its outbox like a message held for it: a client with many requests in
    /// flight is pushed back by TCP before its own answers could overflow it.
    pub(super) fn begin(&mut self, members: &Members, id: ConnId) {
        self.waiting.entry(id).or_default().0 += 1;
        let counted = members.outbox(id).is_some_and(Outbox::hold_one);
        if !counted && !self.overflowed.contains(&id) {
            self.overflowed.push(id);
        }
    }

    /// One of member `id`'s requests at the backend was answered (the answer itself is
    /// already queued); with none left, what waited behind them goes out.
    pub(super) fn settle(&mut self, members: &Members, id: ConnId) {
        let Some((count, _)) = self.waiting.get_mut(&id) else {
            return;
        };
        if let Some(owed) = members.outbox(id).and_then(|o| o.unhold(1)) {
            self.owed.push(owed);
        }
        *count = count.saturating_sub(1);
        if *count == 0
            && let Some((_, waited)) = self.waiting.remove(&id)
        {
            self.unhold(members, id, waited);
        }
    }

    /// Holds what is for `id` until [`Post::release`].
    pub(super) fn hold(&mut self, id: ConnId) {
        self.held.entry(id).or_default();
    }

    /// Sends member `id` its welcome, first of all, then what was held for it (behind
    /// its requests still at the backend, if any). Nothing is held for it any more.
    pub(super) fn release(&mut self, members: &Members, id: ConnId, welcome: Message) {
        let held = self.held.remove(&id).unwrap_or_default();
        self.send(members, id, welcome);
        self.unhold(members, id, held);
    }

    fn send(&mut self, members: &Members, id: ConnId, msg: Message) {
        let Some(outbox) = members.outbox(id) else {
            return;
        };
        match outbox.try_queue(msg) {
            Ok(Some(wake)) => self.owed.push(wake),
            Ok(None) => {}
            Err(SendError::Full) if !self.overflowed.contains(&id) => self.overflowed.push(id),
            // `Gone` needs nothing: the member's `Leave` is already queued behind us.
            Err(_) => {}
        }
    }

    /// Wakes every connection thread that got news.
    pub(super) fn wake_all(&mut self) {
        for owed in self.owed.drain(..) {
            owed.give();
        }
    }
}
