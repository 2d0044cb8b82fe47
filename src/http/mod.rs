//! The HTTP front: bytes in, and out either an answer, a refusal with its exact
//! status, or an upgrade to a WebSocket endpoint (RFC 6455 §4.2).
//!
//! [`serve`] reads the request head under the handshake timeout ([`request`]), asks
//! [`route()`] what the request gets (a pure decision, unit-tested without sockets), and
//! then answers and closes, or registers the client with the hub, sends the `101` and
//! hands the stream to the frame loop ([`crate::connection`]). Everything here is
//! generic over [`Transport`], so TLS adds a handshake in front and nothing else.

mod api;
mod auth;
mod body;
mod files;
mod forwarded;
mod host;
mod login;
mod multipart;
mod qr;
pub(crate) mod request;
pub(crate) mod response;
mod route;

use crate::base::{self, Context, Interest, Peer, Transport};
use crate::connection::Lines;
use crate::connection::{self, Endpoint, JoinError};
use crate::doors;
use crate::metrics::{self, Rejection};
use crate::wire::Tap;
pub(crate) use auth::{admin_signing_key, signing_key};
use crossbeam_channel::Sender;
pub(crate) use request::{HeadError, Request};
pub(crate) use response::Response;
pub(crate) use route::{Routed, head_error_response, route};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long to keep reading after answering a plain HTTP request, so that the answer
/// is not lost to a reset (see [`base::linger`]).
const HTTP_LINGER: Duration = Duration::from_secs(1);

/// What the accept loop decided before the request was even read.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Serve the request.
    Admit,
    /// Read the request, then answer `503`: too many connections.
    Full,
    /// From a trusted proxy, which carries many clients: counted in the total only.
    /// Once the head names the client, its address takes a seat of its own, or the
    /// request gets `503` like any client over its limit.
    Proxied(Seat),
}

/// Asks the accept loop, which alone keeps the counts, to count a proxied connection
/// against its client's address: `true` if that address had room (then the slot is
/// its until the connection ends), `false` if not or if no answer came by the
/// deadline. The one call from here up into the accept loop: `tests/layers.rs`
/// says why it is allowed.
pub(crate) struct Seat(pub Box<dyn FnOnce(IpAddr, Instant) -> bool + Send>);

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seat")
    }
}

/// Serves one connection whose transport is ready.
pub(crate) fn serve<S: Transport>(
    stream: S,
    peer: Peer,
    admission: Admission,
    deadline: Instant,
    shared: &Context,
    lines: &Lines,
) {
    let config = &shared.config;
    // Through the wire tap until the head is done: a chat session keeps it.
    let mut stream = Tap::new(stream);
    // Bound every blocking write of the handshake too: a client that never reads
    // must not hold the thread past the handshake timeout.
    let _ = stream.set_write_timeout(Some(config.handshake_timeout));
    let head = request::read_head(&mut stream, deadline, |s, deadline| {
        wait_for_bytes(s, deadline, shared)
    });
    let (mut req, rest) = match head {
        Ok(head) => head,
        Err(err) => return refuse_head(stream, peer, &err, shared),
    };
    // From here on, behind a trusted proxy, the peer is the client it names.
    let peer = forwarded::client_of(&mut stream, &mut req, peer, shared);
    let full = match admission {
        Admission::Admit => false,
        Admission::Full => true,
        Admission::Proxied(Seat(take)) => !take(peer.addr.ip(), deadline),
    };
    if full {
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
    let routed = guard(
        route(&req, config, &shared.metrics),
        &req,
        peer,
        shared,
        &lines.doors,
    );
    match routed {
        Routed::Qr => match qr::serve(&req, req.path_and_query().1, shared) {
            Ok(response) => answer(stream, &req, peer, head_only(response), shared),
            Err((response, why, reason)) => {
                reject(stream, peer, head_only(response), why, &reason, shared)
            }
        },
        // The guard answers it; should it not, the safe answer.
        Routed::Info => respond(stream, &head_only(info(shared, false)), shared),
        Routed::Login => {
            metrics::bump(&shared.metrics.http_requests_total);
            let response = login::serve(
                &mut stream,
                (&req, rest),
                peer,
                deadline,
                shared,
                &lines.doors,
            );
            log::info!(
                "conn {} {}: sign-in -> {}",
                peer.id,
                peer.addr,
                response.status
            );
            respond(stream, &response, shared);
        }
        Routed::Logout => {
            metrics::bump(&shared.metrics.http_requests_total);
            let response = login::logout(&req, peer, shared, &lines.doors);
            log::info!(
                "conn {} {}: sign-out -> {}",
                peer.id,
                peer.addr,
                response.status
            );
            respond(stream, &response, shared);
        }
        Routed::File(rest) => {
            let served = files::answer(&req, &rest, &shared.files);
            metrics::bump(&shared.metrics.http_requests_total);
            log::debug!(
                "conn {} {}: {} /files/… -> {}",
                peer.id,
                peer.addr,
                base::escape(&req.method),
                served.response.status
            );
            if served.send(&mut stream, req.method == "HEAD").is_ok() {
                base::linger(&mut stream, Instant::now() + HTTP_LINGER, &shared.shutdown);
            }
        }
        Routed::Respond(response) => answer(stream, &req, peer, head_only(response), shared),
        Routed::Reject(response, why, reason) => {
            reject(stream, peer, head_only(response), why, &reason, shared)
        }
        Routed::Upgrade(mut endpoint, response) => {
            if let Endpoint::Chat { session, .. } = &mut endpoint {
                *session = auth::session(&req, shared).map(|s| s.id);
            }
            // The session may last for days: the head is not kept for it.
            drop(req);
            upgrade(stream, rest, endpoint, response, peer, shared, lines)
        }
        Routed::Api(call) => {
            let response = api::serve(
                &mut stream,
                (&req, rest),
                call,
                peer,
                deadline,
                shared,
                lines,
            );
            answer(stream, &req, peer, head_only(response), shared);
        }
    }
}

/// Answers a plain HTTP request, counted and logged.
fn answer<S: Transport>(stream: S, req: &Request, peer: Peer, response: Response, ctx: &Context) {
    metrics::bump(&ctx.metrics.http_requests_total);
    log::debug!(
        "conn {} {}: {} {} -> {}",
        peer.id,
        peer.addr,
        base::escape(&req.method),
        base::escape(crate::head::redact(crate::head::Field::Target, &req.target)),
        response.status
    );
    respond(stream, &response, ctx);
}

/// What every request must pass before it is served, in this order:
///
/// 1. **Its name** ([`host`]): a `Host` that is a DNS name this server does not
///    answer to is `421` (DNS rebinding), on every endpoint but `/healthz`.
/// 2. **Its origin**: a state-changing request (`POST /login`, `/logout`, an `/api`
///    post) from a browser page of another origin is `403`, before any budget is
///    spent (cross-site request forgery: any page a member opens could otherwise
///    lock them out, or sign them out).
/// 3. **Its credentials**, with a password set: every WebSocket endpoint and every
///    `/api` read need a session or the password ([`auth::check`]): `401` without,
///    `429` while the client's budget is spent. `/info` says whether the request is
///    signed in, within the same budget. `/metrics` answers only loopback unless told
///    `metrics_public`. Posting to the API has its own token, checked by the API.
///    With an admin password set (with a password or without), the same check says
///    whether a chat connection is an admin's ([`admit`]).
fn guard(
    routed: Routed,
    req: &Request,
    peer: Peer,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Routed {
    let (path, _) = req.path_and_query();
    if path != "/healthz" && !host::allowed(req.header("Host"), &ctx.own_names) {
        let reason = "this server does not answer to that name (start it with --allow-host NAME)";
        return Routed::Reject(
            Response::text(421, reason),
            Rejection::UnknownHost,
            reason.to_owned(),
        );
    }
    let changes_state = matches!(&routed, Routed::Login | Routed::Logout)
        || matches!(&routed, Routed::Api(call) if call.is_post());
    if changes_state && cross_site(req, &ctx.config) {
        let reason = "cross-site request refused: post from this server's own page";
        return Routed::Reject(
            Response::text(403, reason),
            Rejection::Forbidden,
            reason.to_owned(),
        );
    }
    if ctx.config.password.is_none() {
        // Open to all: only an admin's chat connection needs telling apart.
        return match routed {
            Routed::Info => Routed::Respond(info(ctx, true)),
            Routed::Upgrade(Endpoint::Chat { .. }, _) if auth::signs_in(ctx) => {
                admit(routed, auth::check(req, peer, ctx, doors), ctx)
            }
            other => other,
        };
    }
    let needs_access = matches!(
        &routed,
        Routed::Upgrade(..) | Routed::Info | Routed::File(_)
    ) || matches!(&routed, Routed::Api(call) if !call.is_post());
    if needs_access {
        return admit(routed, auth::check(req, peer, ctx, doors), ctx);
    }
    match routed {
        Routed::Respond(_) if path == "/metrics" && !ctx.config.metrics_public && !peer.local => {
            let reason =
                "metrics are for this machine only while a password is set (--metrics-public)";
            Routed::Reject(
                Response::text(403, reason),
                Rejection::Forbidden,
                reason.to_owned(),
            )
        }
        other => other,
    }
}

/// What a request that needs access gets, given its `access`: a chat connection
/// learns here whether it is an admin's.
fn admit(routed: Routed, access: auth::Access, ctx: &Context) -> Routed {
    match (routed, access) {
        (_, auth::Access::Locked) => {
            let response = auth::locked();
            Routed::Reject(
                response,
                Rejection::Unauthorized,
                "too many wrong passwords from this address".to_owned(),
            )
        }
        (Routed::Info, access) => Routed::Respond(info(ctx, access.allowed())),
        (Routed::Upgrade(mut endpoint, response), access) if access.allowed() => {
            if let Endpoint::Chat { admin, .. } = &mut endpoint {
                *admin = access.is_admin();
            }
            Routed::Upgrade(endpoint, response)
        }
        (routed, access) if access.allowed() => routed,
        (Routed::Api(_), _) => Routed::Respond(
            response::error(
                401,
                "unauthorized",
                "sign in first: POST /login, or Authorization: Bearer PASSWORD",
            )
            .header("WWW-Authenticate", "Bearer"),
        ),
        _ => {
            let reason =
                "this chat needs a password: sign in at / or send Authorization: Bearer PASSWORD";
            Routed::Reject(
                Response::text(401, reason).header("WWW-Authenticate", "Bearer"),
                Rejection::Unauthorized,
                reason.to_owned(),
            )
        }
    }
}

/// Whether `req` comes from a browser page of another origin than this server's
/// (or a listed `--allow-origin`). Browsers say so in `Sec-Fetch-Site`, whatever the
/// page's referrer policy; without it, `Origin` decides (`null`, which a page with
/// `Referrer-Policy: no-referrer` or a sandbox sends, is not this server). A request
/// with neither (curl, a script) is not a browser's cross-site request.
fn cross_site(req: &Request, config: &crate::config::Config) -> bool {
    let origin = req.header("Origin");
    let host = req.header("Host").unwrap_or_default();
    match req.header("Sec-Fetch-Site") {
        Some(site) if site.trim().eq_ignore_ascii_case("same-origin") => false,
        // Another site: only one listed with --allow-origin may post.
        Some(_) => !origin.is_some_and(|o| route::origin_listed(o, &config.allow_origins)),
        None => origin.is_some_and(|o| {
            !route::origin_allowed(o, host, req.forwarded_secure, &config.allow_origins)
        }),
    }
}

/// `GET /info`: the version, the addresses to share, the limits a client must
/// respect, and whether a password guards the chat and this request is signed in,
/// so that the page knows what to show.
fn info(ctx: &Context, signed_in: bool) -> Response {
    let info = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "urls": ctx.config.public_urls,
        "password": ctx.config.password.is_some(),
        // Whether anyone can sign in as an admin: the page then offers it.
        "admin": ctx.config.admin_password.is_some(),
        "signed_in": signed_in,
        "limits": ctx.config.limits(),
    });
    Response::new(200).body("application/json", info.to_string().into_bytes())
}

/// Joins the hub, sends the `101`, and runs the session.
fn upgrade<S: Transport>(
    mut stream: Tap<S>,
    rest: Vec<u8>,
    endpoint: Endpoint,
    response: Response,
    peer: Peer,
    shared: &Context,
    lines: &Lines,
) {
    use std::io::Write as _;
    log::debug!("conn {} {}: websocket {endpoint:?}", peer.id, peer.addr);
    let joined = match connection::join(endpoint, peer, shared, lines) {
        Ok(joined) => joined,
        Err(e) => {
            let reason = match e {
                JoinError::Overloaded(e) => format!("server overloaded: {e}"),
                JoinError::ShuttingDown => "server shutting down".to_owned(),
                JoinError::Forbidden => {
                    let reason = "no such connection, or the wrong key";
                    let response = Response::text(403, reason);
                    return reject(stream, peer, response, Rejection::WireKey, reason, shared);
                }
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
    let sent = stream
        .write_all(&response.to_bytes())
        .and_then(|()| stream.flush());
    drop(response);
    if sent.is_err() {
        shared.metrics.reject(Rejection::Io);
        return;
    }
    connection::run(stream, rest, joined, peer, shared, &lines.hub);
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
    log::debug!("conn {} {}: {}", peer.id, peer.addr, base::escape(what));
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
        "conn {} {}: {} {}",
        peer.id,
        peer.addr,
        response.status,
        base::escape(reason)
    );
    respond(stream, &response, shared);
}

fn respond<S: Transport>(mut stream: S, response: &Response, shared: &Context) {
    if stream.write_all(&response.to_bytes()).is_ok() {
        base::linger(&mut stream, Instant::now() + HTTP_LINGER, &shared.shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::http::request::{Parsed, parse};

    fn request(head: &str) -> Request {
        match parse(head.as_bytes()) {
            Ok(Parsed::Complete(req, _)) => req,
            _ => panic!("no head"),
        }
    }

    #[test]
    fn another_site_may_post_only_when_its_origin_is_listed() {
        let post = |extra: &str| {
            request(&format!(
                "POST /login HTTP/1.1\r\nHost: localhost:3000\r\n{extra}\r\n"
            ))
        };
        let plain = Config::default();
        let listed = Config::default().allow_origin("http://laptop.local:8080");
        let from = |origin: &str| format!("Origin: {origin}\r\nSec-Fetch-Site: cross-site\r\n");
        assert!(cross_site(&post(&from("http://evil.example")), &plain));
        assert!(
            cross_site(&post(&from("http://")), &plain),
            "no host is no match"
        );
        assert!(cross_site(&post(&from("http://localhost:3000")), &plain));
        assert!(!cross_site(
            &post(&from("http://laptop.local:8080")),
            &listed
        ));
        assert!(!cross_site(
            &post("Origin: null\r\nSec-Fetch-Site: same-origin\r\n"),
            &plain
        ));
        assert!(!cross_site(
            &post("Origin: http://localhost:3000\r\n"),
            &plain
        ));
        assert!(cross_site(&post("Origin: null\r\n"), &plain));
        assert!(
            !cross_site(&post(""), &plain),
            "curl and scripts send no Origin"
        );
    }

    /// Tests only ever talk to loopback, so the one rule that depends on the client's
    /// address is checked here, with made-up peers.
    #[test]
    fn metrics_are_for_loopback_only_while_a_password_is_set() {
        let peer = |addr: &str| {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            Peer {
                id: 1,
                addr,
                secure: false,
                local: addr.ip().to_canonical().is_loopback(),
            }
        };
        let req = request("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let status = |config: Config, from: &str| {
            let ctx = Context::for_config(config).unwrap();
            let (doors, _requests) = crossbeam_channel::unbounded();
            let routed = route(&req, &ctx.config, &ctx.metrics);
            let peer = match from.strip_prefix("not local ") {
                Some(from) => Peer {
                    local: false,
                    ..peer(from)
                },
                None => peer(from),
            };
            match guard(routed, &req, peer, &ctx, &doors) {
                Routed::Respond(r) | Routed::Reject(r, ..) => r.status,
                other => panic!("{other:?}"),
            }
        };
        let guarded = || Config::default().password("pw");
        assert_eq!(status(guarded(), "192.168.1.7:5000"), 403);
        assert_eq!(status(guarded(), "127.0.0.1:5000"), 200);
        assert_eq!(status(guarded(), "[::1]:5000"), 200);
        assert_eq!(status(guarded(), "[::ffff:127.0.0.1]:5000"), 200);
        // A proxy here that could not name its client: counted as the proxy, but
        // not let in as this machine.
        assert_eq!(status(guarded(), "not local 127.0.0.1:5000"), 403);
        assert_eq!(
            status(guarded().metrics_public(true), "192.168.1.7:5000"),
            200
        );
        assert_eq!(
            status(Config::default(), "192.168.1.7:5000"),
            200,
            "no password: open"
        );
    }
}
