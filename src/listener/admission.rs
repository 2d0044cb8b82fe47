//! Admission: who gets in, counted by the accept loop alone.
//!
//! Only the accept thread touches [`Counts`], so the counts of open connections, in
//! total and per client, need no lock. A client is an IPv4 address or an IPv6 /64
//! ([`ClientKey`]), since one machine may pick any address in its /64. Each connection
//! carries a [`Ticket`] that reports back through the loop's channel when the
//! connection ends, however it ends (even by panic), and wakes the loop.
//!
//! Behind a reverse proxy every client has the proxy's address, so a connection from
//! a trusted proxy (`--trust-proxy`) is counted in the total only, and takes its
//! per-IP seat later, when its request head has named the client: the connection
//! thread asks the loop ([`Report::Seat`], through the [`Seat`] it was given) and
//! waits for the answer. The counts keep which address each such connection sits
//! under, and free that seat when the connection's end is reported, which always
//! comes after the request (one thread sends both, in order, on one channel): no seat
//! can be taken twice or left behind.

use super::Report;
use crate::base::{ClientKey, ConnId, Context, Peer};
use crate::http::{Admission, Seat};
use crate::metrics::{self, Rejection};
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Threads answering `503` at once, at most. Past this an over-limit connection is
/// closed without a word, so a flood cannot turn the refusals into a thread storm.
const MAX_REFUSERS: usize = 64;

/// What a connection thread reports when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ended {
    id: ConnId,
    /// The client it was counted under at accept; `None` for one from a trusted
    /// proxy, whose seat (if it took one) the counts remember.
    ip: Option<ClientKey>,
    admitted: bool,
}

/// Reports the end of a connection to the accept loop when dropped.
pub(super) struct Ticket {
    ended: Ended,
    done: Sender<Report>,
    shared: Arc<Context>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        metrics::drop_one(&self.shared.metrics.connections);
        let _ = self.done.send(Report::Ended(self.ended));
        self.shared.thread_ended.notify();
    }
}

/// Open connections, as the accept loop counts them.
#[derive(Default)]
pub(super) struct Counts {
    admitted: usize,
    refusing: usize,
    per_ip: HashMap<ClientKey, usize>,
    /// Connections from trusted proxies that took a seat, and the client they took
    /// it under.
    seated: HashMap<ConnId, ClientKey>,
}

impl Counts {
    /// Counts connection `peer` in and decides what it gets, with the ticket that
    /// will count it out; `None` when it is to be closed without a word.
    pub(super) fn admit(
        &mut self,
        peer: &Peer,
        shared: &Arc<Context>,
        reports: &Sender<Report>,
    ) -> Option<(Admission, Ticket)> {
        let config = &shared.config;
        let ip = peer.addr.ip().to_canonical();
        // A proxy carries many clients: its own address is no limit on them.
        let proxied = !shared.trusted.is_empty() && shared.trusted.contains(ip);
        let key = ClientKey::of(ip);
        let per_ip = self.per_ip.get(&key).copied().unwrap_or(0);
        let admission = if self.admitted >= config.max_connections
            || (!proxied && per_ip >= config.max_connections_per_ip)
        {
            if self.refusing >= MAX_REFUSERS {
                shared.metrics.reject(Rejection::ServerFull);
                log::debug!(
                    "conn {} {}: full and too busy refusing, dropped",
                    peer.id,
                    peer.addr
                );
                return None;
            }
            self.refusing += 1;
            Admission::Full
        } else if proxied {
            self.admitted += 1;
            Admission::Proxied(seat(peer.id, reports.clone(), shared))
        } else {
            self.admitted += 1;
            *self.per_ip.entry(key).or_insert(0) += 1;
            Admission::Admit
        };
        metrics::bump(&shared.metrics.connections_total);
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let ended = Ended {
            id: peer.id,
            ip: matches!(admission, Admission::Admit).then_some(key),
            admitted: !matches!(admission, Admission::Full),
        };
        let ticket = Ticket {
            ended,
            done: reports.clone(),
            shared: Arc::clone(shared),
        };
        Some((admission, ticket))
    }

    /// Counts out a connection whose end was reported, and frees its seat.
    pub(super) fn ended(&mut self, Ended { id, ip, admitted }: Ended) {
        if !admitted {
            self.refusing -= 1;
            return;
        }
        self.admitted -= 1;
        let Some(ip) = ip.or_else(|| self.seated.remove(&id)) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Open connections, admitted or being refused.
    pub(super) fn total(&self) -> usize {
        self.admitted + self.refusing
    }

    /// Seats proxied connection `id` under its client `ip`, if that client has fewer
    /// than `limit` connections.
    pub(super) fn seat(&mut self, id: ConnId, ip: ClientKey, limit: usize) -> bool {
        let n = self.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= limit || self.seated.contains_key(&id) {
            return false;
        }
        self.per_ip.insert(ip, n + 1);
        self.seated.insert(id, ip);
        true
    }
}

/// How the thread of proxied connection `id` asks for its client's seat: through the
/// same channel its end will be reported on, so the loop always sees the request
/// first, then wakes the loop.
fn seat(id: ConnId, reports: Sender<Report>, shared: &Arc<Context>) -> Seat {
    let shared = Arc::clone(shared);
    Seat(Box::new(move |ip, deadline| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let ip = ClientKey::of(ip);
        if reports.send(Report::Seat { id, ip, reply }).is_err() {
            return false;
        }
        shared.thread_ended.notify();
        answer.recv_deadline(deadline).unwrap_or(false)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crossbeam_channel::unbounded;
    use std::net::IpAddr;
    use std::thread;

    #[test]
    fn ticket_reports_the_end_even_when_the_thread_panics() {
        let shared = Arc::new(Context::for_config(Config::default()).unwrap());
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let (done, ended) = unbounded();
        let ip = ClientKey::of(IpAddr::from([127, 0, 0, 1]));
        let report = Ended {
            id: 1,
            ip: Some(ip),
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
        assert!(matches!(ended.try_recv(), Ok(Report::Ended(r)) if r == report));
        assert_eq!(metrics::get(&shared.metrics.connections), 0);
        assert!(
            shared.thread_ended.is_notified(),
            "the accept loop is woken to join it"
        );
    }

    #[test]
    fn counts_free_the_slot_of_an_ended_connection() {
        let mut counts = Counts::default();
        let ip = ClientKey::of(IpAddr::from([10, 0, 0, 1]));
        counts.admitted = 1;
        counts.per_ip.insert(ip, 1);
        counts.refusing = 1;
        counts.ended(Ended {
            id: 1,
            ip: Some(ip),
            admitted: true,
        });
        counts.ended(Ended {
            id: 2,
            ip: Some(ip),
            admitted: false,
        });
        assert_eq!(counts.total(), 0);
        assert!(
            counts.per_ip.is_empty(),
            "no entry is kept for an IP with no connection"
        );
    }

    #[test]
    fn a_proxied_connection_holds_its_clients_seat_until_it_ends() {
        let mut counts = Counts::default();
        let alice = ClientKey::of(IpAddr::from([203, 0, 113, 1]));
        let bob = ClientKey::of(IpAddr::from([203, 0, 113, 2]));
        let proxied = |id| Ended {
            id,
            ip: None,
            admitted: true,
        };
        counts.admitted = 4;
        assert!(counts.seat(1, alice, 1));
        assert!(!counts.seat(2, alice, 1), "alice is at her limit");
        assert!(counts.seat(3, bob, 1), "bob has a limit of his own");
        assert!(!counts.seat(1, bob, 1), "one connection, one seat");
        // 2 was refused, and 4 ended before its head named anyone: no seat to free.
        for id in [2, 4] {
            counts.ended(proxied(id));
        }
        assert_eq!(counts.per_ip.get(&alice), Some(&1));
        counts.ended(proxied(1));
        counts.ended(proxied(3));
        assert_eq!(counts.total(), 0);
        assert!(counts.per_ip.is_empty() && counts.seated.is_empty());
        assert!(counts.seat(5, alice, 1), "alice's seat is free again");
    }
}
