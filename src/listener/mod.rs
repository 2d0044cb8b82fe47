//! The accept loop: listening sockets in, one thread per connection out.
//!
//! One thread accepts on every listening socket of a server. It alone owns the
//! counts of open connections ([`admission`]), so they need no lock, and the
//! connection threads ([`pool`]), so it alone starts and joins them. Tickets,
//! proxied connections asking for a seat and exiting threads all talk back to it on
//! one channel of [`Report`]s.
//!
//! The loop sleeps in `poll(2)` on the listeners, the server's shutdown wake-up and
//! the "a report came" wake-up. On shutdown it stops accepting, then waits for every
//! connection to end and joins every thread.
//!
//! What the loop decided travels with the connection as one [`Accepted`] value to
//! its thread, which runs it through the stages ([`dispatch`]): TLS, the trace tap,
//! the HTTP front.

mod admission;
mod dispatch;
mod pool;

use crate::base::{ClientKey, ConnId, Context, Peer, Wake};
use crate::connection::Lines;
use crate::error::Error;
use admission::{Counts, Ended};
use crossbeam_channel::{Receiver, Sender, unbounded};
use dispatch::{Accepted, Stages};
use pool::{Job, Pool};
use rustix::event::{PollFd, PollFlags, poll};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A listening socket, and whether it speaks TLS.
#[derive(Debug)]
pub(crate) struct Listener {
    pub socket: TcpListener,
    pub secure: bool,
}

/// What the accept loop hears from connections and threads.
#[derive(Debug)]
enum Report {
    /// A connection ended (sent by its [`admission::Ticket`]).
    Ended(Ended),
    /// A connection from a trusted proxy asks to be counted under its client's
    /// address; the answer says whether it had room.
    Seat {
        id: ConnId,
        ip: ClientKey,
        reply: Sender<bool>,
    },
    /// A thread is about to exit and can be joined.
    ThreadExited(u64),
}

/// The accept loop's own state: the counts, the threads, and the channel both
/// report on.
struct Accepting {
    counts: Counts,
    /// `Config::max_connections_per_ip`, for the seats of proxied connections.
    per_ip_limit: usize,
    pool: Pool,
    reports_tx: Sender<Report>,
    reports_rx: Receiver<Report>,
}

impl Accepting {
    fn new(shared: &Arc<Context>, lines: Lines) -> Self {
        let (reports_tx, reports_rx) = unbounded();
        Self {
            counts: Counts::default(),
            per_ip_limit: shared.config.max_connections_per_ip,
            pool: Pool::new(
                Stages {
                    shared: Arc::clone(shared),
                    lines,
                },
                reports_tx.clone(),
            ),
            reports_tx,
            reports_rx,
        }
    }

    /// Counts the connection in and hands it to a thread.
    fn admit(&mut self, stream: TcpStream, peer: Peer, shared: &Arc<Context>) {
        let Some((admission, ticket)) = self.counts.admit(&peer, shared, &self.reports_tx) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let accepted = Accepted {
            stream,
            peer,
            admission,
            deadline: Instant::now() + shared.config.handshake_timeout,
        };
        self.pool.run(Job { accepted, ticket });
    }

    /// Takes in every report that came.
    fn reap(&mut self) {
        while let Ok(report) = self.reports_rx.try_recv() {
            self.take(report);
        }
    }

    fn take(&mut self, report: Report) {
        match report {
            Report::Ended(ended) => self.counts.ended(ended),
            Report::Seat { id, ip, reply } => {
                let seated = self.counts.seat(id, ip, self.per_ip_limit);
                // Bounded by one and sent once: never blocks. A thread that gave up
                // waiting still has its seat, freed when its end is reported.
                let _ = reply.try_send(seated);
            }
            Report::ThreadExited(id) => self.pool.exited(id),
        }
    }

    /// Waits for every connection to end and every thread to exit, and joins them.
    ///
    /// It never gives up: a thread left running would outlive the server that
    /// promised to stop it. Everything a thread does is bounded (the handshake
    /// timeout, the close timeout, lingering), so this only takes long if there is a
    /// bug; then a warning says which threads are late.
    fn drain(mut self, ctx: &Context) {
        self.pool.close();
        let limit = ctx.config.close_timeout + Duration::from_secs(5);
        let mut warn_at = Some(Instant::now() + limit);
        while !self.pool.is_empty() || self.counts.total() > 0 {
            let report = match warn_at {
                Some(at) => self.reports_rx.recv_deadline(at).ok(),
                None => self.reports_rx.recv().ok(),
            };
            match report {
                Some(report) => self.take(report),
                None if warn_at.take().is_some() => {
                    let late = self.pool.running();
                    log::warn!(
                        "shutdown: {} connection threads still running after {limit:?}, still waiting: {}",
                        late.len(),
                        late.join(", ")
                    );
                }
                // Cannot happen: this thread holds a sender of the reports.
                None => return,
            }
        }
    }
}

/// Accepts until shutdown, then waits for every connection thread to end.
pub(crate) fn accept_loop(listeners: Vec<Listener>, shared: Arc<Context>, lines: Lines) {
    // `start` made every listener non-blocking before it spawned this thread.
    let mut accepting = Accepting::new(&shared, lines.clone());
    let mut next_id = 0u64;
    while !shared.shutdown.is_notified() {
        let ready = match wait_for_listeners(&listeners, &shared.shutdown, &shared.thread_ended) {
            Ok(ready) => ready,
            Err(e) => {
                log::error!("accept loop cannot poll: {e}");
                break;
            }
        };
        // Clear before reaping, so that an end reported meanwhile wakes us again.
        shared.thread_ended.clear();
        accepting.reap();
        for index in ready {
            let Some(listener) = listeners.get(index) else {
                continue;
            };
            loop {
                match listener.socket.accept() {
                    Ok((stream, addr)) => {
                        accepting.reap();
                        next_id += 1;
                        let peer = Peer {
                            id: next_id,
                            addr,
                            secure: listener.secure,
                            local: addr.ip().to_canonical().is_loopback(),
                        };
                        accepting.admit(stream, peer, &shared);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Out of file descriptors, most likely: back off instead of
                        // spinning on a listener that stays readable.
                        log::warn!("accept failed: {e}");
                        thread::sleep(Duration::from_millis(50));
                        break;
                    }
                }
            }
        }
    }
    drop(listeners);
    drop(lines);
    accepting.drain(&shared);
}

/// The indexes of the listeners with a connection waiting. Also returns when the
/// server shuts down or a connection thread ended.
fn wait_for_listeners(
    listeners: &[Listener],
    shutdown: &Wake,
    thread_ended: &Wake,
) -> io::Result<Vec<usize>> {
    let mut fds: Vec<PollFd<'_>> = listeners
        .iter()
        .map(|l| PollFd::new(&l.socket, PollFlags::IN))
        .collect();
    fds.push(PollFd::new(shutdown, PollFlags::IN));
    fds.push(PollFd::new(thread_ended, PollFlags::IN));
    match poll(&mut fds, None) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fds[..listeners.len()]
        .iter()
        .enumerate()
        .filter(|(_, fd)| !fd.revents().is_empty())
        .map(|(i, _)| i)
        .collect())
}

/// Binds one listening address, with a readable error.
pub(crate) fn bind(addr: &str) -> Result<TcpListener, Error> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| Error::BadAddress {
            addr: addr.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::BadAddress {
            addr: addr.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "it resolves to no address"),
        });
    }
    TcpListener::bind(&addrs[..]).map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })
}
