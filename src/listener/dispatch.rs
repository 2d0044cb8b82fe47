//! Stage dispatch: what a connection thread does with an accepted connection.
//!
//! It runs the stages in the order a byte meets them: the TLS handshake on a TLS
//! listener ([`crate::tls`]), the trace tap when tracing is on ([`crate::trace`]),
//! then the HTTP front ([`crate::http`]), which may hand the stream on to the frame
//! loop. Each stage wraps the stream and passes the same [`Accepted`] on, so what
//! the accept loop decided travels as one value down to the HTTP front.

use crate::base::{Context, Peer, Transport};
use crate::connection::Lines;
use crate::http::{self, Admission};
use crate::metrics::Rejection;
use crate::tls::{self, AcceptError};
use crate::trace::Traced;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

/// A connection the accept loop let in, over the stream of the stage it has reached.
#[derive(Debug)]
pub(super) struct Accepted<S = TcpStream> {
    pub stream: S,
    pub peer: Peer,
    /// What the accept loop decided before the request was read.
    pub admission: Admission,
    /// One deadline, from the accept on, covers the TLS handshake and the request
    /// head.
    pub deadline: Instant,
}

impl<S> Accepted<S> {
    /// The stream, taken out for a stage to wrap, and the rest of the connection.
    fn take_stream(self) -> (S, Accepted<()>) {
        let Accepted {
            stream,
            peer,
            admission,
            deadline,
        } = self;
        let rest = Accepted {
            stream: (),
            peer,
            admission,
            deadline,
        };
        (stream, rest)
    }
}

impl Accepted<()> {
    /// The connection over `stream`, the stream as the last stage wrapped it.
    fn over<S>(self, stream: S) -> Accepted<S> {
        let Accepted {
            peer,
            admission,
            deadline,
            ..
        } = self;
        Accepted {
            stream,
            peer,
            admission,
            deadline,
        }
    }
}

/// What every connection thread serves with: the server's context, and the hub and
/// the doors.
#[derive(Clone)]
pub(super) struct Stages {
    pub shared: Arc<Context>,
    pub lines: Lines,
}

impl Stages {
    /// Runs one connection to its end: TLS first when it came in on a TLS listener,
    /// then HTTP and maybe a WebSocket session.
    pub(super) fn run(&self, conn: Accepted) {
        let shared = &self.shared;
        let Some(acceptor) = shared.tls.as_ref().filter(|_| conn.peer.secure) else {
            return self.serve(conn);
        };
        let (tcp, conn) = conn.take_stream();
        match tls::accept(acceptor, tcp, conn.deadline, &shared.shutdown) {
            Ok(stream) => self.serve(conn.over(stream)),
            Err(AcceptError::Shutdown) => {}
            Err(e) => {
                // Plain HTTP to the TLS port, scanners, stalled clients: not worth
                // more than a debug line, and nobody else notices.
                shared.metrics.reject(Rejection::Tls);
                let peer = conn.peer;
                log::debug!("conn {} {}: TLS handshake failed: {e}", peer.id, peer.addr);
            }
        }
    }

    /// Serves the connection with the HTTP front, through the trace tap when tracing
    /// is on.
    fn serve<S: Transport>(&self, conn: Accepted<S>) {
        let Stages { shared, lines } = self;
        let Accepted {
            stream,
            peer,
            admission,
            deadline,
        } = conn;
        if shared.config.trace {
            let scheme = if peer.secure { "tls" } else { "tcp" };
            let label = format!("conn {} {} {scheme}", peer.id, peer.addr);
            let stream = Traced::new(stream, label);
            http::serve(stream, peer, admission, deadline, shared, lines);
        } else {
            http::serve(stream, peer, admission, deadline, shared, lines);
        }
    }
}
