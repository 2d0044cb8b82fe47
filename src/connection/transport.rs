//! What the connection code needs from a byte stream, and how it sleeps on one.
//!
//! The HTTP front and the frame loop are written once, over [`Transport`]: plain TCP,
//! TLS on top of TCP, the trace tap on top of either, or a Unix socket pair in the
//! fuzzer. Sleeping is always `poll(2)` on the socket underneath plus wake-up
//! descriptors, which works the same under a TLS stream as long as nothing decrypted
//! is left buffered above the socket — hence [`Transport::has_buffered`].

use crate::outbox::Wake;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A stream the connection thread can speak HTTP and WebSocket over.
pub(crate) trait Transport: Read + Write + Send {
    /// The socket underneath, to poll on.
    fn socket(&self) -> BorrowedFd<'_>;

    /// Switches the socket between blocking (handshake) and non-blocking (frame loop).
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;

    /// Bounds blocking writes (the handshake phase).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Whether bytes are already readable without touching the socket (a TLS layer's
    /// decrypted buffer). `poll` on the socket would not see them.
    fn has_buffered(&self) -> bool {
        false
    }

    /// Ends our direction of the stream (TCP FIN; TLS close_notify first).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn socket(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// A Unix socket pair stands in for a TCP connection in the fuzzer: the same code
/// runs, with no network.
impl Transport for UnixStream {
    fn socket(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixStream::set_nonblocking(self, on)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The trace tap is transparent: it only watches the bytes.
impl<S: Transport> Transport for crate::trace::Traced<S> {
    fn socket(&self) -> BorrowedFd<'_> {
        self.get_ref().socket()
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.get_ref().set_nonblocking(on)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_write_timeout(timeout)
    }

    fn has_buffered(&self) -> bool {
        self.get_ref().has_buffered()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.get_mut().shutdown_write()
    }
}

/// What woke a [`wait`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Woken {
    /// The socket is readable (or closed, or in error: a read will tell).
    pub readable: bool,
    /// The socket is writable (or in error).
    pub writable: bool,
    /// The first wake-up descriptor fired.
    pub wake: bool,
    /// The second wake-up descriptor fired.
    pub wake2: bool,
}

/// Blocks until the socket is ready for `want_read`/`want_write`, a wake-up fires, or
/// `deadline` passes (then everything in [`Woken`] is false).
pub(crate) fn wait(
    socket: BorrowedFd<'_>,
    want_read: bool,
    want_write: bool,
    wakes: [Option<&Wake>; 2],
    deadline: Option<Instant>,
) -> io::Result<Woken> {
    let mut flags = PollFlags::empty();
    if want_read {
        flags |= PollFlags::IN;
    }
    if want_write {
        flags |= PollFlags::OUT;
    }
    let mut fds: [PollFd<'_>; 3] = [
        PollFd::from_borrowed_fd(socket, flags),
        PollFd::from_borrowed_fd(socket, PollFlags::empty()),
        PollFd::from_borrowed_fd(socket, PollFlags::empty()),
    ];
    let mut slots = [None, None];
    let mut n = 1;
    for (slot, wake) in wakes.iter().enumerate() {
        if let Some(wake) = wake {
            fds[n] = PollFd::new(*wake, PollFlags::IN);
            slots[slot] = Some(n);
            n += 1;
        }
    }
    let timeout = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
    match poll(&mut fds[..n], timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Woken::default()),
        Err(e) => return Err(e.into()),
    }
    let socket = fds[0].revents();
    let trouble = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
    let fired = |slot: Option<usize>| slot.is_some_and(|i| !fds[i].revents().is_empty());
    Ok(Woken {
        readable: socket.intersects(PollFlags::IN | trouble),
        writable: socket.intersects(PollFlags::OUT | trouble),
        wake: fired(slots[0]),
        wake2: fired(slots[1]),
    })
}

fn timespec(d: Duration) -> Timespec {
    // Round up so that a wait never ends a hair before its deadline and spins.
    let d = d + Duration::from_nanos(999_999);
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_millis()) * 1_000_000,
    }
}

/// Closes a connection politely: our side ends, then we read and discard whatever the
/// peer still sends until it closes too or `deadline` passes.
///
/// Closing a socket with unread bytes in it makes the kernel send a reset, which can
/// destroy the response or Close frame we just wrote before the peer reads it. Reading
/// to end-of-stream first avoids that.
pub(crate) fn linger<S: Transport>(stream: &mut S, deadline: Instant, shutdown: &Wake) {
    let _ = stream.flush();
    let _ = stream.shutdown_write();
    let _ = stream.set_nonblocking(true);
    let mut scratch = [0u8; 1024];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        if Instant::now() >= deadline {
            return;
        }
        match wait(
            stream.socket(),
            true,
            false,
            [Some(shutdown), None],
            Some(deadline),
        ) {
            Ok(w) if w.readable => {}
            _ => return,
        }
    }
}
