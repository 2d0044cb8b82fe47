//! The doors: who may come in, decided by one thread of its own, away from the chat.
//!
//! It owns the sign-in budget of every client and the sessions that were ended
//! ([`signin`]), and the wire doors of the connections that can be watched. The HTTP
//! front and the connection threads ask it over a bounded channel and wait for its
//! answer, which comes at once: it never blocks on anything but its own channel. One
//! thread, one request at a time, is what makes a guess's spending and comparing one
//! step, so forty guesses sent at once get no more than the budget holds.
//!
//! A session ended here is also the backend's business (it keeps the list across
//! restarts and, on a cluster, tells the other nodes): the doors hand it on with
//! `try_send`, and the hub hands back the sessions other nodes ended.

pub(crate) mod signin;

use crate::base::{ConnId, SessionId};
use crate::metrics::{self, Metrics};
use crate::outbox::Outbox;
use crate::store;
use crate::wire::{Door, Key};
use crossbeam_channel::{Receiver, Sender};
use signin::SignIns;
pub(crate) use signin::{Secret, Secrets, SignIn, Verdict};
use std::collections::HashMap;
use std::sync::Arc;

/// Requests queued for the doors before a sender waits: every HTTP request with a
/// secret and every chat connection asks once or twice, and each answer is a hash
/// lookup or a constant-time comparison.
pub(crate) const QUEUE: usize = 1024;

/// What the doors are asked.
#[derive(Debug)]
pub(crate) enum Request {
    /// The sign-in budget and the ended sessions.
    SignIn(SignIn),
    /// The backend says a session was ended (on another node, or here).
    SessionEnded { id: SessionId, expires: u64 },
    /// Connection `id` can be watched through `door` from now on.
    Open { id: ConnId, door: Door },
    /// Connection `id` is gone.
    Close { id: ConnId },
    /// A wire viewer asks to watch connection `id` with `key`; `reply` says whether it
    /// was let in.
    Watch {
        id: ConnId,
        key: Key,
        viewer: Outbox,
        reply: Sender<bool>,
    },
}

/// The doors' state, before its thread runs.
#[derive(Debug)]
pub(crate) struct Doors {
    signins: SignIns,
    /// The connections that can be watched.
    wire: HashMap<ConnId, Door>,
    /// Where an ended session goes to be kept.
    backend: Sender<store::Request>,
    metrics: Arc<Metrics>,
}

impl Doors {
    /// Doors that compare guesses with `secrets`, refuse the sessions in `ended`
    /// (with their expiry), and hand sessions ended here to `backend`.
    pub(crate) fn new(
        secrets: Secrets,
        ended: Vec<(SessionId, u64)>,
        backend: Sender<store::Request>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            signins: SignIns::new(secrets, ended),
            wire: HashMap::new(),
            backend,
            metrics,
        }
    }

    /// Serves requests until every sender is gone.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        for request in requests {
            self.handle(request);
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::SignIn(request) => {
                if let Some((id, expires)) = self.signins.handle(request) {
                    // Refused here at once; the backend keeps it and tells the other
                    // nodes. If it cannot take it now, this node still refuses the
                    // cookie until it restarts.
                    let end = store::Request::EndSession { id, expires };
                    if self.backend.try_send(end).is_err() {
                        metrics::bump(&self.metrics.store_errors);
                    }
                }
            }
            Request::SessionEnded { id, expires } => self.signins.end(id, expires),
            Request::Open { id, door } => {
                self.wire.insert(id, door);
            }
            Request::Close { id } => {
                self.wire.remove(&id);
            }
            Request::Watch {
                id,
                key,
                viewer,
                reply,
            } => {
                // The key is compared in constant time; a wrong one and an unknown id
                // get the same answer.
                let door = self.wire.get(&id);
                let let_in = door.is_some_and(|d| d.opens_with(&key) && d.let_in(viewer));
                let _ = reply.send(let_in);
            }
        }
    }
}
