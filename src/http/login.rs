//! `POST /login` and `POST /logout`: the password, as an HTML form sends it
//! (`password=…`) or as JSON (`{"password":…}`), in exchange for a session cookie,
//! and the session ended again.
//!
//! A right password gets `204` (JSON) or `303` to `/` (a form), with the cookie: a
//! member's for the password, an admin's for the admin password (one guess is
//! compared with both, for one try); a wrong one `401`. A client whose budget is spent is refused before its body is
//! read, and the guess is judged by the doors within the budget ([`auth::judge`]), so
//! sign-ins sent in parallel get no more tries than sent one by one: past the budget,
//! `429` with `Retry-After`, right password or not.
//! The body is at most 1 KiB. Neither the password nor the cookie is ever logged.

use super::auth;
use super::body;
use super::request::{self, Request};
use super::response::{Response, error};
use crate::base::{ClientKey, Context, Peer, Transport};
use crate::doors::{self, Secret, SignIn, Verdict};
use auth::Role;
use crossbeam_channel::Sender;
use std::time::Instant;

/// Largest sign-in body: a form with a long password fits, a flood does not.
const MAX_BODY: usize = 1024;

/// Checks a sign-in and answers it; the caller writes the response.
pub(crate) fn serve<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    peer: Peer,
    deadline: Instant,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Response {
    if !auth::signs_in(ctx) {
        return error(404, "not_found", "this server has no password: just open /");
    }
    if !auth::may_try(peer, ctx, doors) {
        return auth::locked();
    }
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let Ok(body) = body::read(stream, rest, req, MAX_BODY, deadline, wait) else {
        return error(
            400,
            "bad_request",
            format!("the sign-in could not be read (at most {MAX_BODY} bytes)"),
        );
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
    let role = match auth::judge(peer, auth::PASSWORDS, &offered, ctx, doors) {
        Verdict::Right(Secret::AdminPassword) => Role::Admin,
        Verdict::Right(_) => Role::Member,
        Verdict::Wrong => return error(401, "wrong_password", "wrong password"),
        Verdict::Locked => return auth::locked(),
    };
    let Some(cookie) = auth::new_session(ctx, role, peer.secure) else {
        return error(503, "unavailable", "no randomness for a session: try again");
    };
    if role == Role::Admin {
        auth::admin_signed_in(peer, ctx);
    }
    signed_in_or_out(form, cookie)
}

/// Ends the session of the cookie `req` carries, if any, and tells the browser to
/// forget it. Answered the same whether there was one: `204`, or `303` to `/` for a
/// form (a page's sign-out button).
pub(crate) fn logout(
    req: &Request,
    peer: Peer,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Response {
    if !auth::signs_in(ctx) {
        return error(
            404,
            "not_found",
            "this server has no password: nothing to end",
        );
    }
    if let Some(session) = auth::session(req, ctx) {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let asked = doors.send(doors::Request::SignIn(SignIn::End {
            id: session.id,
            expires: session.expires,
            client: ClientKey::of(peer.addr.ip()),
            reply,
        }));
        let ended = asked.is_ok()
            && answer
                .recv_timeout(ctx.config.handshake_timeout)
                .unwrap_or(false);
        if !ended {
            // The cookie stays good: say so, rather than pretend it was ended.
            return error(
                429,
                "rate_limited",
                "too many sign-outs from this address: wait a little, then sign out again",
            )
            .header("Retry-After", "3");
        }
    }
    let form = req
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    signed_in_or_out(form, auth::cleared_cookie(peer.secure))
}

fn signed_in_or_out(form: bool, cookie: String) -> Response {
    if form {
        Response::new(303)
            .header("Location", "/")
            .header("Set-Cookie", cookie)
    } else {
        Response::new(204).header("Set-Cookie", cookie)
    }
}
