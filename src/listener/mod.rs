//! The accept loop: listening sockets in, one thread per connection out.
//!
//! One thread accepts on every listening socket of a server, so it alone owns the
//! counts of open connections ([`admission`]): no lock. Connection threads and
//! tickets talk back to it through one channel of [`Report`]s.
//!
//! Every connection has a thread of its own for as long as it lasts. When it ends,
//! its thread waits a while for the next connection instead of exiting: starting a
//! thread (a stack to map and zero, a kernel task to set up) costs more than a whole
//! WebSocket handshake, and a LAN's clients come and go in bursts. At most
//! [`MAX_IDLE`] threads wait, each for at most [`IDLE_KEEP`]; one that gives up
//! reports it, and the loop joins it (a finished thread nobody joins keeps its
//! stack).
//!
//! The loop sleeps in `poll(2)` on the listeners, the server's shutdown wake-up and
//! the "a report came" wake-up. On shutdown it stops accepting, then waits for every
//! connection to end and joins every thread.
//!
//! A thread that cannot be started (the system's thread limits: `threads-max`,
//! `pid_max`, a cgroup's `pids.max`, `RLIMIT_NPROC`) costs the connection, not the
//! server: the loop answers it `503` itself, without blocking on it, frees its seat,
//! and warns at most once a second ([`SpawnFailures`]).
//!
//! A connection thread runs the stages in the order a byte meets them: the TLS
//! handshake on a TLS listener ([`crate::tls`]), the trace tap when tracing is on
//! ([`crate::trace`]), then the HTTP front ([`crate::http`]), which may hand the
//! stream on to the frame loop.

mod admission;

use crate::base::Transport;
use crate::base::{ClientKey, ConnId, Context, Peer, Wake};
use crate::error::Error;
use crate::http::{self, Admission};
use crate::hub::HubEvent;
use crate::metrics::Rejection;
use crate::tls::{self, AcceptError};
use crate::trace::Traced;
use admission::{Counts, Ended, Ticket};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use rustix::event::{PollFd, PollFlags, poll};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack for a connection thread. The frame loop is shallow; 128 KiB leaves a wide
/// margin for logging and JSON while keeping thousands of threads cheap (only the
/// pages a thread touches become resident).
const CONN_STACK: usize = 128 * 1024;

/// A listening socket, and whether it speaks TLS.
#[derive(Debug)]
pub(crate) struct Listener {
    pub socket: TcpListener,
    pub secure: bool,
}

/// How long a connection thread with nothing to do waits for another connection.
const IDLE_KEEP: Duration = Duration::from_secs(10);

/// Connection threads that may wait for work at once; past this a thread whose
/// connection ended exits at once.
const MAX_IDLE: usize = 64;

/// What the accept loop hears from connections and threads.
#[derive(Debug)]
enum Report {
    /// A connection ended (sent by its [`Ticket`]).
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

/// A connection waiting for a thread.
struct Job {
    stream: TcpStream,
    peer: Peer,
    admission: Admission,
    ticket: Ticket,
}

/// The connection threads of a server: counted, reused, and joined as they exit.
struct Threads {
    counts: Counts,
    /// `Config::max_connections_per_ip`, for the seats of proxied connections.
    per_ip_limit: usize,
    threads: HashMap<u64, JoinHandle<()>>,
    next_thread: u64,
    /// Threads waiting for a job and not yet promised one.
    idle: Arc<AtomicUsize>,
    /// `None` once shutting down: waiting threads then see the channel closed.
    jobs_tx: Option<Sender<Job>>,
    jobs_rx: Receiver<Job>,
    reports_tx: Sender<Report>,
    reports_rx: Receiver<Report>,
    spawn_failures: SpawnFailures,
}

impl Threads {
    fn new(per_ip_limit: usize) -> Self {
        let (jobs_tx, jobs_rx) = unbounded();
        let (reports_tx, reports_rx) = unbounded();
        Self {
            counts: Counts::default(),
            per_ip_limit,
            threads: HashMap::new(),
            next_thread: 0,
            idle: Arc::new(AtomicUsize::new(0)),
            jobs_tx: Some(jobs_tx),
            jobs_rx,
            reports_tx,
            reports_rx,
            spawn_failures: SpawnFailures::default(),
        }
    }

    /// Hands `job` to a waiting thread, or starts one.
    fn run(&mut self, job: Job, shared: &Arc<Context>, hub: &Sender<HubEvent>) {
        // Taking one off the idle count promises that a waiting thread will take
        // the job: a waiting thread only gives up after taking itself off the count.
        if let Some(jobs) = &self.jobs_tx
            && take_one(&self.idle)
        {
            // Cannot fail: we hold a receiver. Were it to, the dropped job's ticket
            // would still report the connection's end.
            let _ = jobs.send(job);
            return;
        }
        self.next_thread += 1;
        let id = self.next_thread;
        let worker = Worker {
            id,
            jobs: self.jobs_rx.clone(),
            idle: Arc::clone(&self.idle),
            reports: self.reports_tx.clone(),
            shared: Arc::clone(shared),
            hub: hub.clone(),
        };
        // The job goes to the thread only once it runs, so that a thread that cannot
        // be started leaves the connection here, to be refused.
        let (first_tx, first_rx) = crossbeam_channel::bounded(1);
        match thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(CONN_STACK)
            .spawn(move || worker.run(first_rx))
        {
            Ok(thread) => {
                self.threads.insert(id, thread);
                // Cannot fail: the thread holds the receiver until it has the job.
                let _ = first_tx.send(job);
            }
            Err(e) => {
                shared.metrics.reject(Rejection::ServerFull);
                self.spawn_failures.failed(&e, Instant::now());
                refuse_without_thread(job);
            }
        }
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
            Report::ThreadExited(id) => {
                // The report is the last thing the thread does, so this join is
                // immediate.
                if let Some(thread) = self.threads.remove(&id)
                    && thread.join().is_err()
                {
                    log::error!("connection thread {id} panicked");
                }
            }
        }
    }

    /// Waits for every connection to end and every thread to exit, and joins them.
    ///
    /// It never gives up: a thread left running would outlive the server that
    /// promised to stop it. Everything a thread does is bounded (the handshake
    /// timeout, the close timeout, lingering), so this only takes long if there is a
    /// bug; then a warning says which threads are late.
    fn drain(mut self, ctx: &Context) {
        // Without a sender left, waiting threads wake up and exit, and busy ones
        // exit as soon as their connection ends.
        self.jobs_tx = None;
        let config = &ctx.config;
        let limit = config.close_timeout + Duration::from_secs(5);
        let mut warn_at = Some(Instant::now() + limit);
        while !self.threads.is_empty() || self.counts.total() > 0 {
            let report = match warn_at {
                Some(at) => self.reports_rx.recv_deadline(at).ok(),
                None => self.reports_rx.recv().ok(),
            };
            match report {
                Some(report) => self.take(report),
                None if warn_at.take().is_some() => {
                    let mut late: Vec<_> =
                        self.threads.keys().map(|id| format!("conn-{id}")).collect();
                    late.sort();
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

/// Takes one off `n` unless it is zero; whether it did.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
        .is_ok()
}

/// The answer to a connection no thread could be started for.
const NO_THREAD_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 29\r\n\
Connection: close\r\n\
\r\n\
server full, try again later\n";

/// Answers `job`'s client on the accept thread, which must never wait on a socket:
/// one non-blocking write of a `503` that fits any socket buffer, then the close.
/// Dropping the job's ticket frees its seat.
///
/// A TLS client would need a handshake first, which could block: it is only closed.
fn refuse_without_thread(job: Job) {
    let Job {
        mut stream, peer, ..
    } = job;
    if peer.secure || stream.set_nonblocking(true).is_err() {
        return;
    }
    // Whatever of the request already came is read and dropped (without waiting for
    // more), so that closing does not turn into a reset that could destroy the
    // answer before the client reads it.
    let mut scratch = [0u8; 1024];
    for _ in 0..8 {
        match stream.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = stream.write(NO_THREAD_RESPONSE);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The connections refused for want of a thread, for a warning at most once a second:
/// a system out of threads would otherwise log a line for every client that tries.
#[derive(Debug, Default)]
struct SpawnFailures {
    /// Refused since the last warning.
    unreported: u64,
    /// When the last warning went out.
    warned_at: Option<Instant>,
}

impl SpawnFailures {
    const EVERY: Duration = Duration::from_secs(1);

    /// Counts one refusal, and warns if the last warning is more than a second old.
    /// Refusals within the second are told in the next warning.
    fn failed(&mut self, e: &io::Error, now: Instant) {
        self.unreported += 1;
        if self
            .warned_at
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            return;
        }
        log::warn!(
            "cannot start a connection thread: {e} (a limit on threads or processes?); \
             {} connection(s) refused with 503 since the last such warning",
            self.unreported
        );
        self.unreported = 0;
        self.warned_at = Some(now);
    }
}

/// A connection thread: runs connections until none comes for a while.
struct Worker {
    id: u64,
    jobs: Receiver<Job>,
    idle: Arc<AtomicUsize>,
    reports: Sender<Report>,
    shared: Arc<Context>,
    hub: Sender<HubEvent>,
}

impl Worker {
    fn run(self, first: Receiver<Job>) {
        let mut next = first.recv().ok();
        while let Some(Job {
            stream,
            peer,
            admission,
            ticket,
        }) = next.take()
        {
            handle(stream, peer, admission, &self.shared, &self.hub);
            drop(ticket);
            next = self.wait_for_work();
        }
    }

    /// The next job, or `None` when this thread should exit.
    fn wait_for_work(&self) -> Option<Job> {
        let joined = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IDLE).then_some(n + 1)
            });
        if joined.is_err() {
            return None;
        }
        loop {
            match self.jobs.recv_timeout(IDLE_KEEP) {
                Ok(job) => return Some(job),
                // Leave only if no job was promised to us meanwhile.
                Err(RecvTimeoutError::Timeout) if take_one(&self.idle) => return None,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl Drop for Worker {
    /// Reports the exit, however the thread ends (even by panic).
    fn drop(&mut self) {
        let _ = self.reports.send(Report::ThreadExited(self.id));
        self.shared.thread_ended.notify();
    }
}

/// Runs one connection to its end: TLS first when it came in on a TLS listener, then
/// HTTP and maybe a WebSocket session.
fn handle(
    tcp: TcpStream,
    peer: Peer,
    admission: Admission,
    shared: &Context,
    hub: &Sender<HubEvent>,
) {
    // One deadline covers the TLS handshake and the request head.
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let Some(acceptor) = shared.tls.as_ref().filter(|_| peer.secure) else {
        return traced_or_not(tcp, peer, admission, deadline, shared, hub);
    };
    match tls::accept(acceptor, tcp, deadline, &shared.shutdown) {
        Ok(stream) => traced_or_not(stream, peer, admission, deadline, shared, hub),
        Err(AcceptError::Shutdown) => {}
        Err(e) => {
            // Plain HTTP to the TLS port, scanners, stalled clients: not worth more
            // than a debug line, and nobody else notices.
            shared.metrics.reject(Rejection::Tls);
            log::debug!("conn {} {}: TLS handshake failed: {e}", peer.id, peer.addr);
        }
    }
}

/// Serves the connection, through the trace tap when tracing is on.
fn traced_or_not<S: Transport>(
    stream: S,
    peer: Peer,
    admission: Admission,
    deadline: Instant,
    shared: &Context,
    hub: &Sender<HubEvent>,
) {
    if shared.config.trace {
        let scheme = if peer.secure { "tls" } else { "tcp" };
        let label = format!("conn {} {} {scheme}", peer.id, peer.addr);
        http::serve(
            Traced::new(stream, label),
            peer,
            admission,
            deadline,
            shared,
            hub,
        );
    } else {
        http::serve(stream, peer, admission, deadline, shared, hub);
    }
}

/// Accepts until shutdown, then waits for every connection thread to end.
pub(crate) fn accept_loop(listeners: Vec<Listener>, shared: Arc<Context>, hub: Sender<HubEvent>) {
    // `start` made every listener non-blocking before it spawned this thread.
    let mut threads = Threads::new(shared.config.max_connections_per_ip);
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
                            local: addr.ip().to_canonical().is_loopback(),
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

/// Counts the connection in and hands it to a thread.
fn admit(
    stream: TcpStream,
    peer: Peer,
    threads: &mut Threads,
    shared: &Arc<Context>,
    hub: &Sender<HubEvent>,
) {
    let Some((admission, ticket)) = threads.counts.admit(&peer, shared, &threads.reports_tx) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    threads.run(
        Job {
            stream,
            peer,
            admission,
            ticket,
        },
        shared,
        hub,
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_thread_waits_for_the_next_connection_then_gives_up_its_place() {
        let shared = Arc::new(Context::new(Config::default(), None).unwrap());
        let (hub, _events) = unbounded();
        let mut threads = Threads::new(256);
        let worker = Worker {
            id: 9,
            jobs: threads.jobs_rx.clone(),
            idle: Arc::clone(&threads.idle),
            reports: threads.reports_tx.clone(),
            shared: Arc::clone(&shared),
            hub,
        };
        let waiting = thread::spawn(move || {
            let job = worker.wait_for_work();
            (worker, job.is_some())
        });
        // The loop sees it idle, promises it the next connection and sends it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !take_one(&threads.idle) {
            assert!(Instant::now() < deadline, "the thread never became idle");
            thread::yield_now();
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, addr) = listener.accept().unwrap();
        let peer = Peer {
            id: 5,
            addr,
            secure: false,
            local: true,
        };
        let (admission, ticket) = Counts::default()
            .admit(&peer, &shared, &threads.reports_tx)
            .unwrap();
        let job = Job {
            stream,
            peer,
            admission,
            ticket,
        };
        threads.jobs_tx.as_ref().unwrap().send(job).unwrap();
        let (worker, got_job) = waiting.join().unwrap();
        assert!(
            got_job,
            "the promised connection reached the waiting thread"
        );
        assert_eq!(threads.idle.load(Ordering::Relaxed), 0);
        // Shutting down closes the channel: a waiting thread leaves at once.
        threads.jobs_tx = None;
        assert!(worker.wait_for_work().is_none());
        drop(worker);
        assert!(matches!(
            threads.reports_rx.try_iter().last(),
            Some(Report::ThreadExited(9))
        ));
    }

    #[test]
    fn the_no_thread_answer_is_a_whole_503_with_retry_after() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(NO_THREAD_RESPONSE).unwrap() else {
            panic!("a whole head");
        };
        assert_eq!(response.code, Some(503));
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(header("Retry-After"), Some("1"));
        assert_eq!(header("Connection"), Some("close"));
        let body = NO_THREAD_RESPONSE.len() - head;
        assert_eq!(header("Content-Length"), Some(body.to_string().as_str()));
    }

    #[test]
    fn spawn_failures_warn_at_most_once_a_second_and_count_the_rest() {
        let mut failures = SpawnFailures::default();
        let e = io::Error::from(io::ErrorKind::WouldBlock);
        let start = Instant::now();
        failures.failed(&e, start);
        assert_eq!(failures.unreported, 0, "the first one is told at once");
        for ms in [1, 200, 999] {
            failures.failed(&e, start + Duration::from_millis(ms));
        }
        assert_eq!(failures.unreported, 3, "kept for the next warning");
        failures.failed(&e, start + Duration::from_millis(1000));
        assert_eq!(failures.unreported, 0, "told, with the one that came now");
        assert_eq!(
            failures.warned_at,
            Some(start + Duration::from_millis(1000))
        );
    }
}
