//! `POST /login` (SPEC §11): the password, as an HTML form sends it (`password=…`) or
//! as JSON (`{"password":…}`), in exchange for a session cookie.
//!
//! A right password gets `204` (JSON) or `303` to `/` (a form), with the cookie; a
//! wrong one `401`. Failed attempts are limited per address by the hub (`429` with
//! `Retry-After` past the limit, right password or not), and the password is compared
//! in constant time. Neither the password nor the cookie is ever logged.

use super::api::error;
use super::auth;
use super::body;
use super::request::{self, Request};
use super::response::Response;
use crate::base::{Context, Peer, Transport};
use crate::hub::{HubEvent, LoginAttempt};
use crossbeam_channel::Sender;
use std::time::Instant;

/// Largest sign-in body.
const MAX_BODY: usize = 4096;

/// Seconds to wait after too many wrong passwords (one more try comes back in that).
pub(crate) const RETRY_AFTER: &str = "12";

/// Whether the address of `peer` may try a password now.
fn may_try(peer: Peer, ctx: &Context, hub: &Sender<HubEvent>) -> bool {
    let (may, answer) = crossbeam_channel::bounded(1);
    let attempt = LoginAttempt::May(may);
    hub.send(HubEvent::Login {
        ip: peer.addr.ip(),
        attempt,
    })
    .is_ok()
        && answer
            .recv_timeout(ctx.config.handshake_timeout)
            .unwrap_or(false)
}

/// Counts a wrong password from `peer`; `false` when its address was already over
/// the limit (then nothing is counted: the attempt is simply refused).
pub(crate) fn spend(peer: Peer, ctx: &Context, hub: &Sender<HubEvent>) -> bool {
    if !may_try(peer, ctx, hub) {
        return false;
    }
    let _ = hub.send(HubEvent::Login {
        ip: peer.addr.ip(),
        attempt: LoginAttempt::Failed,
    });
    true
}

/// Checks a sign-in and answers it; the caller writes the response.
pub(crate) fn serve<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    peer: Peer,
    deadline: Instant,
    ctx: &Context,
    hub: &Sender<HubEvent>,
) -> Response {
    let Some(password) = &ctx.config.password else {
        return error(404, "not_found", "this server has no password: just open /");
    };
    if !may_try(peer, ctx, hub) {
        return error(
            429,
            "rate_limited",
            "too many wrong passwords: wait a little",
        )
        .header("Retry-After", RETRY_AFTER);
    }
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let Ok(body) = body::read(stream, rest, req, MAX_BODY, deadline, wait) else {
        return error(400, "bad_request", "the sign-in could not be read");
    };
    let form = !req
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/json"));
    let offered = if form {
        std::str::from_utf8(&body)
            .ok()
            .and_then(|body| request::query_param(Some(body), "password"))
            .flatten()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("password")?.as_str().map(str::to_owned))
    };
    let Some(offered) = offered else {
        return error(
            400,
            "missing_field",
            "send the password as password=… or {\"password\":…}",
        );
    };
    if !password.matches(offered.as_bytes()) {
        let _ = hub.send(HubEvent::Login {
            ip: peer.addr.ip(),
            attempt: LoginAttempt::Failed,
        });
        return error(401, "wrong_password", "wrong password");
    }
    let cookie = auth::session_cookie(ctx, peer.secure);
    if form {
        Response::new(303)
            .header("Location", "/")
            .header("Set-Cookie", cookie)
    } else {
        Response::new(204).header("Set-Cookie", cookie)
    }
}
