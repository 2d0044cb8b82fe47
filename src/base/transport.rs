//! What the connection code needs from a byte stream, and how it sleeps on one.
//!
//! The HTTP front and the frame loop are written once, over [`Transport`]: plain TCP,
//! TLS on top of TCP, the trace tap on top of either, or a Unix socket pair in the
//! fuzzer. Sleeping is always `poll(2)` on the socket underneath plus wake-up
//! descriptors, which works the same under a TLS stream as long as nothing decrypted
//! is left buffered above the socket — hence [`Transport::has_buffered`].

use super::Wake;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
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

    /// Stops any trace tap in the stack from logging this connection (a wire viewer's
    /// own traffic is not traced).
    fn untrace(&mut self) {}

    /// Names the connection anew in whatever this stream logs (only the trace tap
    /// logs), once the request head said who the client behind a proxy is.
    fn relabel(&mut self, _label: String) {}
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
        self.shutting_down();
        self.get_mut().shutdown_write()
    }

    fn untrace(&mut self) {
        self.mute();
        self.get_mut().untrace();
    }

    fn relabel(&mut self, label: String) {
        self.set_label(label);
    }
}

/// What a [`wait`] waits for on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interest {
    /// Wake when the socket has bytes to read (or is closed).
    pub read: bool,
    /// Wake when the socket can take more bytes.
    pub write: bool,
}

impl Interest {
    /// Bytes to read.
    pub(crate) const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// Room to write.
    pub(crate) const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
}

/// What woke a [`wait`]. All false when the deadline passed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Woken {
    /// The socket is readable (or closed, or in error: a read will tell).
    pub readable: bool,
    /// The socket is writable (or in error).
    pub writable: bool,
    /// The descriptors of the wake-ups that fired.
    fired: [Option<RawFd>; MAX_WAKES],
}

impl Woken {
    /// Whether `wake` fired.
    pub(crate) fn fired(&self, wake: &Wake) -> bool {
        let fd = wake.as_fd().as_raw_fd();
        self.fired.contains(&Some(fd))
    }
}

/// Wake-ups one [`wait`] sleeps on, at most: a connection thread's outbox and the
/// server's shutdown.
const MAX_WAKES: usize = 2;

/// Blocks until the socket is ready for `interest`, one of `wakes` fires, or
/// `deadline` passes. At most [`MAX_WAKES`] wake-ups; more are ignored.
pub(crate) fn wait<'w>(
    socket: BorrowedFd<'_>,
    interest: Interest,
    wakes: impl IntoIterator<Item = &'w Wake>,
    deadline: Option<Instant>,
) -> io::Result<Woken> {
    let mut flags = PollFlags::empty();
    if interest.read {
        flags |= PollFlags::IN;
    }
    if interest.write {
        flags |= PollFlags::OUT;
    }
    let mut fds: [PollFd<'_>; 1 + MAX_WAKES] =
        [(); 1 + MAX_WAKES].map(|()| PollFd::from_borrowed_fd(socket, PollFlags::empty()));
    fds[0] = PollFd::from_borrowed_fd(socket, flags);
    let mut n = 1;
    for (fd, wake) in fds[1..].iter_mut().zip(wakes) {
        *fd = PollFd::new(wake, PollFlags::IN);
        n += 1;
    }
    let fds = &mut fds[..n];
    let timeout = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
    match poll(fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Woken::default()),
        Err(e) => return Err(e.into()),
    }
    let socket = fds[0].revents();
    let trouble = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
    let mut woken = Woken {
        readable: socket.intersects(PollFlags::IN | trouble),
        writable: socket.intersects(PollFlags::OUT | trouble),
        fired: [None; MAX_WAKES],
    };
    for (slot, fd) in woken.fired.iter_mut().zip(&fds[1..]) {
        if !fd.revents().is_empty() {
            *slot = Some(fd.as_fd().as_raw_fd());
        }
    }
    Ok(woken)
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
        match wait(stream.socket(), Interest::READ, [shutdown], Some(deadline)) {
            Ok(w) if w.readable => {}
            _ => return,
        }
    }
}
