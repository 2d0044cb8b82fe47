//! The hub → client path: a bounded queue plus a wake-up the connection thread can
//! sleep on together with its socket.
//!
//! A connection thread blocks in `poll(2)` on two descriptors: its socket and an
//! `eventfd` (a kernel counter that reads as "readable" once written). The hub puts a
//! message in the queue and writes the eventfd only when the queue went from "seen" to
//! "has news", so a thread asleep on a busy room is woken once per batch, not once per
//! message. The queue is bounded in messages and in bytes; a full queue is the hub's
//! signal that this client is a slow consumer (backpressure).
//!
//! A connection costs two file descriptors: the socket and the eventfd.

use crate::base::Wake;
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tungstenite::Message;

/// What both ends of one outbox share.
#[derive(Debug)]
struct Shared {
    wake: Wake,
    /// Payload bytes queued and not yet taken by the connection thread.
    queued_bytes: AtomicUsize,
    /// Messages queued and not yet taken.
    queued_messages: AtomicUsize,
    /// Messages for this client the hub holds back for now (behind its welcome, or
    /// behind its requests at the store): not queued yet, but counted as if they
    /// were, so that a client that asks faster than it is answered is pushed back.
    held: AtomicUsize,
    max_bytes: usize,
    /// Set by the hub when it evicted this client as a slow consumer.
    evicted: AtomicBool,
    /// Set by the hub when the client should reconnect (see [`Outbox::reconnect`]).
    reconnect: AtomicBool,
    /// Set by the hub when a moderator kicked the client: the reason its Close
    /// carries (see [`Outbox::kick`]).
    kicked: OnceLock<String>,
    /// Set by the hub when what this client sends is piling up in someone else's
    /// outbox: the client should pause reading for a moment (relay backpressure).
    throttled: AtomicBool,
    /// Set by the only sender of a wire viewer's outbox when nothing more will come:
    /// the connection it watched has ended.
    finished: AtomicBool,
    max_messages: usize,
}

impl Shared {
    fn is_congested(&self) -> bool {
        (self.queued_messages.load(Ordering::Acquire) + self.held.load(Ordering::Acquire)) * 2
            > self.max_messages
            || self.queued_bytes.load(Ordering::Acquire) * 2 > self.max_bytes
    }
}

/// The hub's end of one client's outbox.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: Sender<Message>,
    shared: Arc<Shared>,
}

/// A wake-up owed to a connection thread whose outbox just got news.
#[derive(Debug)]
#[must_use = "the connection thread sleeps until the owed wake-up is given"]
pub(crate) struct Owed(Arc<Shared>);

impl Owed {
    /// Wakes the thread.
    pub(crate) fn give(self) {
        self.0.wake.signal();
    }
}

/// Wakes a connection thread that has news outside its outbox; it holds nothing else of
/// the outbox, so it keeps no queue open.
#[derive(Debug)]
pub(crate) struct Waker(Arc<Shared>);

impl Waker {
    pub(crate) fn wake(&self) {
        self.0.wake.notify();
    }
}

/// The connection thread's end of its outbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: Receiver<Message>,
    shared: Arc<Shared>,
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The client is not keeping up: it is a slow consumer.
    Full,
    /// The connection thread has ended; its `Leave` is on the way to the hub.
    Gone,
}

/// Creates an outbox holding at most `max_messages` messages and `max_bytes` bytes.
pub(crate) fn outbox(max_messages: usize, max_bytes: usize) -> io::Result<(Outbox, Inbox)> {
    // Unbounded underneath, bounded by the counts above: crossbeam's bounded channel
    // allocates and touches all its slots up front (about 40 KiB for 1,024), while the
    // list flavour grows with what is actually queued. Thousands of idle clients
    // have empty outboxes.
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        wake: Wake::new()?,
        queued_bytes: AtomicUsize::new(0),
        queued_messages: AtomicUsize::new(0),
        held: AtomicUsize::new(0),
        max_bytes,
        evicted: AtomicBool::new(false),
        reconnect: AtomicBool::new(false),
        kicked: OnceLock::new(),
        throttled: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        max_messages: max_messages.max(1),
    });
    Ok((
        Outbox {
            tx,
            shared: Arc::clone(&shared),
        },
        Inbox { rx, shared },
    ))
}

fn payload_len(msg: &Message) -> usize {
    msg.len()
}

impl Outbox {
    /// Queues a message without ever blocking, and wakes the connection thread.
    #[cfg(test)]
    pub(crate) fn try_send(&self, msg: Message) -> Result<(), SendError> {
        if let Some(owed) = self.try_queue(msg)? {
            owed.give();
        }
        Ok(())
    }

    /// Queues a message without ever blocking, and without waking the connection
    /// thread yet: if it needs waking, the returned [`Owed`] does it when given. The
    /// hub gives all it owes once per batch of events, so a busy room wakes a
    /// thread once for many messages.
    ///
    /// `Err(SendError::Full)` means the client has fallen too far behind; the hub then evicts it
    /// with [`Outbox::evict`]. Messages already queued are not taken back.
    pub(crate) fn try_queue(&self, msg: Message) -> Result<Option<Owed>, SendError> {
        let len = payload_len(&msg);
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        // A single message larger than the byte bound still goes through an empty
        // queue, so a big message never makes a fast client look slow.
        // The hub is the only sender, so check-then-add cannot overshoot.
        if (queued > 0 && queued + len > self.shared.max_bytes)
            || self.shared.queued_messages.load(Ordering::Acquire) >= self.shared.max_messages
        {
            return Err(SendError::Full);
        }
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.shared.queued_messages.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(msg) {
            Ok(()) => Ok(self
                .shared
                .wake
                .claim()
                .then(|| Owed(Arc::clone(&self.shared)))),
            Err(_) => {
                // Unbounded: the only failure is that the receiver is gone.
                self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.shared.queued_messages.fetch_sub(1, Ordering::AcqRel);
                Err(SendError::Gone)
            }
        }
    }

    /// Whether the outbox is more than half full, by messages or by bytes: the client
    /// is falling behind, and whoever feeds it should slow down.
    pub(crate) fn is_congested(&self) -> bool {
        self.shared.is_congested()
    }

    /// Counts one more message the hub holds back for this client; `false` when that
    /// would make more than the outbox's bound, held and queued together.
    pub(crate) fn hold_one(&self) -> bool {
        let held = self.shared.held.load(Ordering::Acquire);
        if held + self.shared.queued_messages.load(Ordering::Acquire) >= self.shared.max_messages {
            return false;
        }
        self.shared.held.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// `n` held messages are being queued now (or dropped with their member). A
    /// connection thread that stopped reading because its outbox was congested must
    /// hear that it no longer is, even when nothing new is queued for it: the
    /// [`Owed`] returned, when given, wakes it.
    pub(crate) fn unhold(&self, n: usize) -> Option<Owed> {
        let was = self.shared.is_congested();
        let _ = self
            .shared
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
        (was && !self.shared.is_congested() && self.shared.wake.claim())
            .then(|| Owed(Arc::clone(&self.shared)))
    }

    /// Asks this client's connection thread to pause reading from its socket for a
    /// moment, because what it sends is piling up in another client's outbox.
    pub(crate) fn throttle(&self) {
        self.shared.throttled.store(true, Ordering::Release);
    }

    /// Tells the connection thread that the hub has evicted its client as a slow
    /// consumer: it closes the WebSocket with 1008 and hangs up. The hub has already
    /// forgotten the member, so nothing more is queued.
    pub(crate) fn evict(&self) {
        self.shared.evicted.store(true, Ordering::Release);
        self.shared.wake.notify();
    }

    /// How to wake the connection thread with nothing queued, from another thread
    /// (it has news elsewhere: a wire viewer at its door).
    pub(crate) fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.shared))
    }

    /// Nothing more will be queued: once what is queued is sent, the connection
    /// thread closes normally (a wire viewer whose connection ended).
    pub(crate) fn finish(&self) {
        self.shared.finished.store(true, Ordering::Release);
        self.shared.wake.notify();
    }

    /// Tells the connection thread to close with 1012 (service restart): what the
    /// client knows no longer matches the server (the cluster's Redis lost its data,
    /// or the node could not put the member back), and a reconnect sets it right.
    pub(crate) fn reconnect(&self) {
        self.shared.reconnect.store(true, Ordering::Release);
        self.shared.wake.notify();
    }
}

impl Outbox {
    /// Tells the connection thread that a moderator kicked its client: once what is
    /// queued is sent (the `kicked` news first), it closes with 4001 and `reason`
    /// (cut to what a Close frame holds).
    pub(crate) fn kick(&self, reason: &str) {
        let _ = self
            .shared
            .kicked
            .set(crate::chat::close_reason(reason).to_owned());
        self.shared.wake.notify();
    }
}

impl Inbox {
    /// The reason of a kick, if the hub kicked this client (see [`Outbox::kick`]).
    pub(crate) fn kicked(&self) -> Option<&str> {
        self.shared.kicked.get().map(String::as_str)
    }

    /// The descriptor that turns readable when there is news.
    pub(crate) fn wake(&self) -> &Wake {
        &self.shared.wake
    }

    /// Whether the hub asked the client to reconnect (see [`Outbox::reconnect`]).
    pub(crate) fn must_reconnect(&self) -> bool {
        self.shared.reconnect.load(Ordering::Acquire)
    }

    /// Takes the next queued message, if any.
    pub(crate) fn try_recv(&self) -> Option<Message> {
        let msg = self.rx.try_recv().ok()?;
        self.shared
            .queued_bytes
            .fetch_sub(payload_len(&msg), Ordering::AcqRel);
        self.shared.queued_messages.fetch_sub(1, Ordering::AcqRel);
        Some(msg)
    }

    /// See [`Outbox::is_congested`].
    pub(crate) fn is_congested(&self) -> bool {
        self.shared.is_congested()
    }

    /// Whether the hub asked this client to pause; clears the request.
    pub(crate) fn take_throttle(&self) -> bool {
        self.shared.throttled.swap(false, Ordering::AcqRel)
    }

    /// Whether everything was queued and taken (see [`Outbox::finish`]).
    pub(crate) fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire) && self.rx.is_empty()
    }

    /// Whether the hub evicted this client (see [`Outbox::evict`]).
    pub(crate) fn is_evicted(&self) -> bool {
        self.shared.evicted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::{PollFd, PollFlags, poll};

    fn readable(wake: &Wake) -> bool {
        let mut fds = [PollFd::new(wake, PollFlags::IN)];
        poll(
            &mut fds,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn first_message_wakes_and_clear_resets() {
        let (tx, rx) = outbox(4, 1024).unwrap();
        assert!(!readable(rx.wake()));
        tx.try_send(Message::text("a")).unwrap();
        tx.try_send(Message::text("b")).unwrap();
        assert!(readable(rx.wake()));
        rx.wake().clear();
        assert!(!readable(rx.wake()));
        assert_eq!(rx.try_recv(), Some(Message::text("a")));
        tx.try_send(Message::text("c")).unwrap();
        assert!(readable(rx.wake()), "news after a clear wakes again");
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let (tx, rx) = outbox(2, 10).unwrap();
        tx.try_send(Message::text("12345")).unwrap();
        tx.try_send(Message::text("12345")).unwrap();
        assert_eq!(tx.try_send(Message::text("1")), Err(SendError::Full));
        rx.try_recv().unwrap();
        assert_eq!(
            tx.try_send(Message::text("123456")),
            Err(SendError::Full),
            "bytes bound"
        );
        tx.try_send(Message::text("12345")).unwrap();
    }

    #[test]
    fn eviction_is_seen_and_wakes_the_thread() {
        let (tx, rx) = outbox(1, 10).unwrap();
        assert!(!rx.is_evicted());
        tx.evict();
        assert!(rx.is_evicted());
        assert!(readable(rx.wake()));
    }
}
