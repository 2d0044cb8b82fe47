//! The thread pool: a thread of its own for every connection, kept a while after.
//!
//! Every connection has a thread of its own for as long as it lasts. When it ends,
//! its thread waits a while for the next connection instead of exiting: starting a
//! thread (a stack to map and zero, a kernel task to set up) costs more than a whole
//! WebSocket handshake, and a LAN's clients come and go in bursts. At most
//! [`MAX_IDLE`] threads wait, each for at most [`IDLE_KEEP`], on one job channel
//! (tiny-http's `util/task_pool.rs` is the model); one that gives up reports it
//! ([`Report::ThreadExited`]), and the accept loop has the pool join it (a finished
//! thread nobody joins keeps its stack).
//!
//! Only the accept thread holds the [`Pool`]: it hands out jobs and joins threads,
//! and never waits on a connection.
//!
//! A thread that cannot be started (the system's thread limits: `threads-max`,
//! `pid_max`, a cgroup's `pids.max`, `RLIMIT_NPROC`) costs the connection, not the
//! server: the pool answers it `503` itself, without blocking on it, and warns at
//! most once a second ([`SpawnFailures`]); dropping the job's ticket frees its seat.

use super::Report;
use super::admission::Ticket;
use super::dispatch::{Accepted, Stages};
use crate::metrics::Rejection;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack for a connection thread. The frame loop is shallow; 128 KiB leaves a wide
/// margin for logging and JSON while keeping thousands of threads cheap (only the
/// pages a thread touches become resident).
const CONN_STACK: usize = 128 * 1024;

/// How long a connection thread with nothing to do waits for another connection.
const IDLE_KEEP: Duration = Duration::from_secs(10);

/// Connection threads that may wait for work at once; past this a thread whose
/// connection ended exits at once.
const MAX_IDLE: usize = 64;

/// A connection waiting for a thread, and the ticket that counts it out once the
/// thread is done with it.
pub(super) struct Job {
    pub accepted: Accepted,
    pub ticket: Ticket,
}

/// The connection threads of a server: started, reused, and joined as they exit.
pub(super) struct Pool {
    threads: HashMap<u64, JoinHandle<()>>,
    next_thread: u64,
    /// Threads waiting for a job and not yet promised one.
    idle: Arc<AtomicUsize>,
    /// `None` once shutting down: waiting threads then see the channel closed.
    jobs_tx: Option<Sender<Job>>,
    jobs_rx: Receiver<Job>,
    /// Where a thread reports its exit.
    reports: Sender<Report>,
    spawn_failures: SpawnFailures,
    /// What every thread serves with.
    stages: Stages,
}

impl Pool {
    /// A pool with no thread yet, whose threads run connections through `stages`
    /// and report their exit to `reports`.
    pub(super) fn new(stages: Stages, reports: Sender<Report>) -> Self {
        let (jobs_tx, jobs_rx) = unbounded();
        Self {
            threads: HashMap::new(),
            next_thread: 0,
            idle: Arc::new(AtomicUsize::new(0)),
            jobs_tx: Some(jobs_tx),
            jobs_rx,
            reports,
            spawn_failures: SpawnFailures::default(),
            stages,
        }
    }

    /// Hands `job` to a waiting thread, or starts one.
    pub(super) fn run(&mut self, job: Job) {
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
        let worker = self.worker(id);
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
                self.stages.shared.metrics.reject(Rejection::ServerFull);
                self.spawn_failures.failed(&e, Instant::now());
                refuse_without_thread(job);
            }
        }
    }

    fn worker(&self, id: u64) -> Worker {
        Worker {
            id,
            jobs: self.jobs_rx.clone(),
            idle: Arc::clone(&self.idle),
            reports: self.reports.clone(),
            stages: self.stages.clone(),
        }
    }

    /// Joins thread `id`, which reported its exit.
    pub(super) fn exited(&mut self, id: u64) {
        // The report is the last thing the thread does, so this join is immediate.
        if let Some(thread) = self.threads.remove(&id)
            && thread.join().is_err()
        {
            log::error!("connection thread {id} panicked");
        }
    }

    /// Takes no more jobs: waiting threads wake up and exit, and busy ones exit as
    /// soon as their connection ends.
    pub(super) fn close(&mut self) {
        self.jobs_tx = None;
    }

    /// The names of the threads not joined yet, sorted.
    pub(super) fn running(&self) -> Vec<String> {
        let mut names: Vec<_> = self.threads.keys().map(|id| format!("conn-{id}")).collect();
        names.sort();
        names
    }

    /// Whether every thread has been joined.
    pub(super) fn is_empty(&self) -> bool {
        self.threads.is_empty()
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
    let Accepted {
        mut stream, peer, ..
    } = job.accepted;
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
    stages: Stages,
}

impl Worker {
    fn run(self, first: Receiver<Job>) {
        let mut next = first.recv().ok();
        // Not kept for the thread's life: this channel is a few hundred bytes.
        drop(first);
        while let Some(Job { accepted, ticket }) = next.take() {
            self.stages.run(accepted);
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
        self.stages.shared.thread_ended.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::{Context, Peer};
    use crate::config::Config;
    use crate::listener::admission::Counts;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_thread_waits_for_the_next_connection_then_gives_up_its_place() {
        let shared = Arc::new(Context::for_config(Config::default()).unwrap());
        let (hub, _events) = unbounded();
        let (doors, _requests) = unbounded();
        let (reports_tx, reports_rx) = unbounded();
        let stages = Stages {
            shared: Arc::clone(&shared),
            lines: crate::connection::Lines { hub, doors },
        };
        let mut pool = Pool::new(stages, reports_tx.clone());
        let worker = pool.worker(9);
        let waiting = thread::spawn(move || {
            let job = worker.wait_for_work();
            (worker, job.is_some())
        });
        // The loop sees it idle, promises it the next connection and sends it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !take_one(&pool.idle) {
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
            .admit(&peer, &shared, &reports_tx)
            .unwrap();
        let accepted = Accepted {
            stream,
            peer,
            admission,
            deadline: Instant::now(),
        };
        let job = Job { accepted, ticket };
        pool.jobs_tx.as_ref().unwrap().send(job).unwrap();
        let (worker, got_job) = waiting.join().unwrap();
        assert!(
            got_job,
            "the promised connection reached the waiting thread"
        );
        assert_eq!(pool.idle.load(Ordering::Relaxed), 0);
        // Shutting down closes the channel: a waiting thread leaves at once.
        pool.close();
        assert!(worker.wait_for_work().is_none());
        drop(worker);
        assert!(matches!(
            reports_rx.try_iter().last(),
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
