//! The accept loop: listening sockets in, one named thread per connection out.
//!
//! One thread accepts on every listening socket of a server, so it alone keeps the
//! count of open connections, in total and per IP address: no lock. Each connection
//! thread carries a [`Ticket`] that reports back through a channel when the thread
//! ends, however it ends (even by panic), and wakes the loop, which then joins the
//! thread right away (a finished thread that nobody joins keeps its stack).
//!
//! The loop sleeps in `poll(2)` on the listeners, the server's shutdown wake-up and
//! the "a thread ended" wake-up. On shutdown it stops accepting, then waits for every
//! connection thread to report and joins it.

use crate::connection::{self, Admission, Peer};
use crate::hub::{ConnId, HubEvent};
use crate::metrics::{self, Rejection};
use crate::outbox::Wake;
use crate::server::Shared;
use crossbeam_channel::{Receiver, Sender, unbounded};
use rustix::event::{PollFd, PollFlags, poll};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack for a connection thread. The frame loop is shallow; 128 KiB leaves a wide
/// margin for logging and JSON while keeping thousands of threads cheap (only the
/// pages a thread touches become resident).
const CONN_STACK: usize = 128 * 1024;

/// Threads answering `503` at once, at most. Past this an over-limit connection is
/// closed without a word, so a flood cannot turn the refusals into a thread storm.
const MAX_REFUSERS: usize = 64;

/// A listening socket, and whether it speaks TLS.
#[derive(Debug)]
pub(crate) struct Listener {
    pub socket: TcpListener,
    pub secure: bool,
}

/// What a connection thread reports when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ended {
    id: ConnId,
    ip: IpAddr,
    admitted: bool,
}

/// Reports the end of a connection thread to the accept loop.
struct Ticket {
    ended: Ended,
    done: Sender<Ended>,
    shared: Arc<Shared>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        metrics::drop_one(&self.shared.metrics.connections);
        let _ = self.done.send(self.ended);
        self.shared.thread_ended.notify();
    }
}

/// Open connections, as the accept loop counts them.
#[derive(Default)]
struct Counts {
    admitted: usize,
    refusing: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Counts {
    fn ended(&mut self, Ended { ip, admitted, .. }: Ended) {
        if !admitted {
            self.refusing -= 1;
            return;
        }
        self.admitted -= 1;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    fn total(&self) -> usize {
        self.admitted + self.refusing
    }
}

/// The connection threads of a server: counted, and joined as they end.
struct Threads {
    counts: Counts,
    running: HashMap<ConnId, JoinHandle<()>>,
    done_tx: Sender<Ended>,
    done_rx: Receiver<Ended>,
}

impl Threads {
    fn new() -> Self {
        let (done_tx, done_rx) = unbounded();
        Self {
            counts: Counts::default(),
            running: HashMap::new(),
            done_tx,
            done_rx,
        }
    }

    /// Joins every thread that has reported its end.
    fn reap(&mut self) {
        while let Ok(ended) = self.done_rx.try_recv() {
            self.end(ended);
        }
    }

    fn end(&mut self, ended: Ended) {
        self.counts.ended(ended);
        // The ticket is the last thing the thread drops, so this join is immediate.
        if let Some(thread) = self.running.remove(&ended.id)
            && thread.join().is_err()
        {
            log::error!("conn {}: its thread panicked", ended.id);
        }
    }

    /// Waits for every thread to end, and joins it.
    fn drain(&mut self, shared: &Shared) {
        let config = &shared.config;
        // Everything a thread can be doing is bounded by these; the margin covers
        // lingering.
        let limit = config.handshake_timeout.max(config.close_timeout) + Duration::from_secs(5);
        let deadline = Instant::now() + limit;
        while self.counts.total() > 0 {
            match self.done_rx.recv_deadline(deadline) {
                Ok(ended) => self.end(ended),
                Err(_) => {
                    log::warn!(
                        "{} connection threads did not end in {limit:?}",
                        self.counts.total()
                    );
                    return;
                }
            }
        }
    }
}

/// Accepts until shutdown, then waits for every connection thread to end.
pub(crate) fn accept_loop(listeners: Vec<Listener>, shared: Arc<Shared>, hub: Sender<HubEvent>) {
    let mut threads = Threads::new();
    let mut next_id = 0u64;
    for listener in &listeners {
        if let Err(e) = listener.socket.set_nonblocking(true) {
            log::error!("cannot make listener non-blocking: {e}");
            return;
        }
    }
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
        threads.reap();
        for index in ready {
            let Some(listener) = listeners.get(index) else {
                continue;
            };
            loop {
                match listener.socket.accept() {
                    Ok((stream, addr)) => {
                        threads.reap();
                        next_id += 1;
                        let peer = Peer {
                            id: next_id,
                            addr,
                            secure: listener.secure,
                        };
                        admit(stream, peer, &mut threads, &shared, &hub);
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
    drop(hub);
    threads.drain(&shared);
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

fn admit(
    stream: TcpStream,
    peer: Peer,
    threads: &mut Threads,
    shared: &Arc<Shared>,
    hub: &Sender<HubEvent>,
) {
    let config = &shared.config;
    let counts = &mut threads.counts;
    let ip = peer.addr.ip();
    let per_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
    let admission =
        if counts.admitted >= config.max_connections || per_ip >= config.max_connections_per_ip {
            if counts.refusing >= MAX_REFUSERS {
                shared.metrics.reject(Rejection::ServerFull);
                log::debug!(
                    "conn {} {}: full and too busy refusing, dropped",
                    peer.id,
                    peer.addr
                );
                return;
            }
            counts.refusing += 1;
            Admission::Full
        } else {
            counts.admitted += 1;
            *counts.per_ip.entry(ip).or_insert(0) += 1;
            Admission::Admit
        };
    metrics::bump(&shared.metrics.connections_total);
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let ended = Ended {
        id: peer.id,
        ip,
        admitted: admission == Admission::Admit,
    };
    let ticket = Ticket {
        ended,
        done: threads.done_tx.clone(),
        shared: Arc::clone(shared),
    };
    let _ = stream.set_nodelay(true);
    let hub = hub.clone();
    let spawned = thread::Builder::new()
        .name(format!("conn-{}", peer.id))
        .stack_size(CONN_STACK)
        .spawn(move || {
            // Dropped in reverse: the hub sender first, the ticket last, so that when the
            // accept loop hears of the end this thread holds nothing any more.
            let ticket = ticket;
            let hub = hub;
            connection::handle(stream, peer, admission, &ticket.shared, &hub);
        });
    match spawned {
        Ok(thread) => {
            threads.running.insert(peer.id, thread);
        }
        // The closure, ticket included, was dropped: its end is already reported.
        Err(e) => log::warn!("conn {} {}: cannot start a thread: {e}", peer.id, peer.addr),
    }
}

/// Binds one listening address, with a readable error.
pub(crate) fn bind(addr: &str) -> Result<TcpListener, crate::Error> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| crate::Error::BadAddress {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(crate::Error::BadAddress {
            addr: addr.to_owned(),
            reason: "resolves to nothing".into(),
        });
    }
    TcpListener::bind(&addrs[..]).map_err(|source| crate::Error::Bind {
        addr: addr.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn ticket_reports_the_end_even_when_the_thread_panics() {
        let shared = Arc::new(Shared::new(Config::default(), None).unwrap());
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let (done, ended) = unbounded();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let report = Ended {
            id: 1,
            ip,
            admitted: true,
        };
        let ticket = Ticket {
            ended: report,
            done,
            shared: Arc::clone(&shared),
        };
        let outcome = thread::spawn(move || {
            let _ticket = ticket;
            panic!("a bug in a connection thread");
        })
        .join();
        assert!(outcome.is_err());
        assert_eq!(ended.try_recv(), Ok(report));
        assert_eq!(metrics::get(&shared.metrics.connections), 0);
        assert!(
            shared.thread_ended.is_notified(),
            "the accept loop is woken to join it"
        );
    }

    #[test]
    fn counts_free_the_slot_of_an_ended_connection() {
        let mut counts = Counts::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        counts.admitted = 1;
        counts.per_ip.insert(ip, 1);
        counts.refusing = 1;
        counts.ended(Ended {
            id: 1,
            ip,
            admitted: true,
        });
        counts.ended(Ended {
            id: 2,
            ip,
            admitted: false,
        });
        assert_eq!(counts.total(), 0);
        assert!(
            counts.per_ip.is_empty(),
            "no entry is kept for an IP with no connection"
        );
    }
}
