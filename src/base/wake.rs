//! A wake-up one thread gives and another sleeps on, together with its socket.
//!
//! An `eventfd` is a kernel counter that reads as "readable" once written, so a
//! thread in `poll(2)` wakes for it exactly as for bytes on a socket. The hub wakes
//! connection threads with it, shutdown wakes every thread with it, and a connection
//! thread that ends wakes the accept loop with it.

use rustix::event::{EventfdFlags, eventfd};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// A wake-up flag a thread can `poll(2)` on: an `eventfd` that turns readable when
/// [`Wake::notify`] is called and stays readable until [`Wake::clear`].
#[derive(Debug)]
pub(crate) struct Wake {
    fd: OwnedFd,
    /// Set once notified and until cleared, so that repeated notifications cost no
    /// system call.
    pending: AtomicBool,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Self {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    /// Makes the descriptor readable, unless it already is.
    pub(crate) fn notify(&self) {
        if self.claim() {
            self.signal();
        }
    }

    /// Marks a notification as due; `true` when the caller must now [`Wake::signal`]
    /// (nobody else has since the last clear).
    pub(crate) fn claim(&self) -> bool {
        !self.pending.swap(true, Ordering::SeqCst)
    }

    /// Makes the descriptor readable.
    pub(crate) fn signal(&self) {
        // Writing 1 to an eventfd only fails if the counter would overflow, which one
        // writer per clear cannot do.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Whether [`Wake::notify`] was called since the last [`Wake::clear`]. A wake-up
    /// that is never cleared works as a one-way, level-triggered "it happened" flag.
    pub(crate) fn is_notified(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Makes the descriptor unreadable again. Call it *before* looking for the news
    /// it announced: a notification that races with the look is then never lost, at
    /// worst it causes one extra wake-up.
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 8];
        // Fails with EAGAIN when nothing was written, which is fine.
        let _ = rustix::io::read(&self.fd, &mut buf);
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl AsFd for Wake {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
