//! The HTTP front: bytes in, and out either an answer, a refusal with its exact
//! status, or an upgrade to a WebSocket endpoint (RFC 6455 §4.2).
//!
//! [`serve`] reads the request head under the handshake timeout ([`request`]), asks
//! [`route`] what the request gets (a pure decision, unit-tested without sockets), and
//! then answers and closes, or registers the client with the hub, sends the `101` and
//! hands the stream to the frame loop ([`crate::connection`]). Everything here is
//! generic over [`Transport`], so TLS adds a handshake in front and nothing else.

mod api;
mod body;
pub(crate) mod request;
pub(crate) mod response;
mod route;

use crate::base::{self, Context, Interest, Peer, Transport};
use crate::connection::{self, Endpoint, JoinError};
use crate::hub::HubEvent;
use crate::metrics::{self, Rejection};
use crossbeam_channel::Sender;
pub(crate) use request::HeadError;
pub(crate) use response::Response;
pub(crate) use route::{Routed, head_error_response, route};
use std::time::{Duration, Instant};

/// How long to keep reading after answering a plain HTTP request, so that the answer
/// is not lost to a reset (see [`base::linger`]).
const HTTP_LINGER: Duration = Duration::from_secs(1);

/// What the accept loop decided before the request was even read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Serve the request.
    Admit,
    /// Read the request, then answer `503`: too many connections.
    Full,
}

/// Serves one connection whose transport is ready.
pub(crate) fn serve<S: Transport>(
    mut stream: S,
    peer: Peer,
    admission: Admission,
    deadline: Instant,
    shared: &Context,
    hub: &Sender<HubEvent>,
) {
    let config = &shared.config;
    // Bound every blocking write of the handshake too: a client that never reads
    // must not hold the thread past the handshake timeout.
    let _ = stream.set_write_timeout(Some(config.handshake_timeout));
    let head = request::read_head(&mut stream, deadline, |s, deadline| {
        wait_for_bytes(s, deadline, shared)
    });
    let (req, rest) = match head {
        Ok(head) => head,
        Err(err) => return refuse_head(stream, peer, &err, shared),
    };
    if admission == Admission::Full {
        let reason = "server full, try again later";
        return reject(
            stream,
            peer,
            Response::text(503, reason).header("Retry-After", "1"),
            Rejection::ServerFull,
            reason,
            shared,
        );
    }
    // RFC 9110 §9.3.2: HEAD is GET without the body.
    let head_only = |response: Response| {
        if req.method == "HEAD" {
            response.head_only()
        } else {
            response
        }
    };
    match route(&req, config, &shared.metrics) {
        Routed::Respond(response) => {
            let response = head_only(response);
            metrics::bump(&shared.metrics.http_requests_total);
            log::debug!(
                "conn {} {}: {} {} -> {}",
                peer.id,
                peer.addr,
                req.method,
                req.target,
                response.status
            );
            respond(stream, &response, shared);
        }
        Routed::Reject(response, why, reason) => {
            reject(stream, peer, head_only(response), why, &reason, shared)
        }
        Routed::Upgrade(endpoint, response) => {
            upgrade(stream, rest, endpoint, response, peer, shared, hub)
        }
        Routed::Api(call) => {
            metrics::bump(&shared.metrics.http_requests_total);
            let ip = peer.addr.ip();
            let response = api::serve(&mut stream, (&req, rest), call, ip, deadline, shared, hub);
            log::debug!(
                "conn {} {}: {} {} -> {}",
                peer.id,
                peer.addr,
                req.method,
                req.target,
                response.status
            );
            respond(stream, &head_only(response), shared);
        }
    }
}

/// Joins the hub, sends the `101`, and runs the session.
fn upgrade<S: Transport>(
    mut stream: S,
    rest: Vec<u8>,
    endpoint: Endpoint,
    response: Response,
    peer: Peer,
    shared: &Context,
    hub: &Sender<HubEvent>,
) {
    log::debug!("conn {} {}: websocket {endpoint:?}", peer.id, peer.addr);
    let joined = match connection::join(endpoint, peer, shared, hub) {
        Ok(joined) => joined,
        Err(e) => {
            let reason = match e {
                JoinError::Overloaded(e) => format!("server overloaded: {e}"),
                JoinError::ShuttingDown => "server shutting down".to_owned(),
            };
            let response = Response::text(503, &reason).header("Retry-After", "1");
            return reject(
                stream,
                peer,
                response,
                Rejection::ServerFull,
                &reason,
                shared,
            );
        }
    };
    if stream
        .write_all(&response.to_bytes())
        .and_then(|()| stream.flush())
        .is_err()
    {
        shared.metrics.reject(Rejection::Io);
        return;
    }
    connection::run(stream, rest, joined, peer, shared, hub);
}

/// Sleeps until the stream may have bytes for the request head.
pub(super) fn wait_for_bytes<S: Transport>(
    stream: &mut S,
    deadline: Instant,
    shared: &Context,
) -> Result<(), HeadError> {
    if stream.has_buffered() {
        return Ok(());
    }
    let woken = base::wait(
        stream.socket(),
        Interest::READ,
        [&shared.shutdown],
        Some(deadline),
    )
    .map_err(HeadError::Io)?;
    if woken.fired(&shared.shutdown) {
        Err(HeadError::Shutdown)
    } else if woken.readable {
        Ok(())
    } else {
        Err(HeadError::Timeout { partial: false })
    }
}

fn refuse_head<S: Transport>(stream: S, peer: Peer, err: &HeadError, shared: &Context) {
    if let Some((response, why, reason)) = head_error_response(err) {
        return reject(stream, peer, response, why, &reason, shared);
    }
    let (why, what) = match err {
        HeadError::Timeout { .. } => (
            Rejection::Timeout,
            "no request before the handshake timeout".to_owned(),
        ),
        HeadError::Closed { partial: true } => (
            Rejection::Io,
            "closed in the middle of the request".to_owned(),
        ),
        HeadError::Io(e) => (Rejection::Io, format!("read failed: {e}")),
        _ => return,
    };
    shared.metrics.reject(why);
    log::debug!("conn {} {}: {what}", peer.id, peer.addr);
}

fn reject<S: Transport>(
    stream: S,
    peer: Peer,
    response: Response,
    why: Rejection,
    reason: &str,
    shared: &Context,
) {
    shared.metrics.reject(why);
    log::info!(
        "conn {} {}: {} {reason}",
        peer.id,
        peer.addr,
        response.status
    );
    respond(stream, &response, shared);
}

fn respond<S: Transport>(mut stream: S, response: &Response, shared: &Context) {
    if stream.write_all(&response.to_bytes()).is_ok() {
        base::linger(&mut stream, Instant::now() + HTTP_LINGER, &shared.shutdown);
    }
}
