//! Keeping strangers out: with a password set, every WebSocket endpoint and every
//! `/api` read needs a session cookie from `POST /login`, or the password itself as
//! `Authorization: Bearer PASSWORD` (for wscat, websocat, scripts).
//!
//! **One budget for every guess.** Whatever checks a secret — a Bearer header on any
//! endpoint, `/login`, `/info`, the API token — hands the guess to the doors'
//! thread ([`crate::doors`]), which spends from the client's budget and compares in one step ([`judge`]). Past five
//! wrong tries every check is `Locked` (`429`), right secret or not, so no door tells
//! a right guess from a wrong one outside the budget, and requests sent in parallel
//! cannot outrun it.
//!
//! **Sessions.** A cookie is `ID.EXPIRY.MAC`: 128 random bits, the expiry (Unix
//! seconds), and an HMAC-SHA256 of both under a key derived from the store's random
//! key *and the password*. So a cookie cannot be forged or extended, it survives a
//! restart on the same data directory, a new password ends every session made under
//! the old one, and an expiry further out than the server would issue is refused.
//! `POST /logout` ends one session server-side: the doors remember its id until it
//! would have expired (the backend keeps that list across restarts and nodes).
//! Every comparison is constant-time.

use super::request::Request;
use crate::base::{ClientKey, Context, Peer, SessionId, unix_now};
use crate::doors::{self, Secret, SignIn, Verdict};
use crossbeam_channel::Sender;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "switchboard_session";

/// How long a sign-in lasts: a working week on a LAN.
const SESSION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Clock skew forgiven on a cookie's expiry (between the nodes of a cluster, say).
const SKEW_SECS: u64 = 60;

/// Seconds to wait after too many wrong guesses (one more try comes back in that).
pub(crate) const RETRY_AFTER: &str = "12";

/// The answer to a client whose budget is spent: `429`, with when to try again.
pub(crate) fn locked() -> super::response::Response {
    super::response::error(
        429,
        "rate_limited",
        "too many wrong passwords from this address: wait a little",
    )
    .header("Retry-After", RETRY_AFTER)
}

/// What a request may do once its credentials were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No password is set: everything is open.
    Open,
    /// A good session cookie, or the right password as Bearer.
    SignedIn,
    /// No credentials, or wrong ones (then a try was spent).
    Anonymous,
    /// The client's budget is spent: nothing was compared.
    Locked,
}

impl Access {
    /// Whether what the password guards is open to this request.
    pub(crate) fn allowed(self) -> bool {
        matches!(self, Access::Open | Access::SignedIn)
    }
}

/// A session, as its cookie names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    pub id: SessionId,
    pub expires: u64,
}

/// Looks at the credentials of `req`: a good, unended session cookie first (no
/// budget: its MAC cannot be guessed), then a Bearer password, judged within the
/// budget of `peer`.
pub(crate) fn check(
    req: &Request,
    peer: Peer,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Access {
    if ctx.config.password.is_none() {
        return Access::Open;
    }
    if session(req, ctx).is_some_and(|s| !ended(s.id, ctx, doors)) {
        return Access::SignedIn;
    }
    let Some(offered) = bearer(req) else {
        return Access::Anonymous;
    };
    match judge(peer, Secret::Password, offered, ctx, doors) {
        Verdict::Right => Access::SignedIn,
        Verdict::Wrong => Access::Anonymous,
        Verdict::Locked => Access::Locked,
    }
}

/// Has the doors judge `offered` against `secret` within the budget of `peer`'s
/// client: spending and comparing are one step there. `Locked` when they do not
/// answer in time (the safe side).
pub(crate) fn judge(
    peer: Peer,
    secret: Secret,
    offered: &str,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Verdict {
    let client = ClientKey::of(peer.addr.ip());
    let (reply, answer) = crossbeam_channel::bounded(1);
    let asked = doors.send(doors::Request::SignIn(SignIn::Judge {
        client,
        secret,
        offered: crate::config::Secret::new(offered),
        reply,
    }));
    if asked.is_err() {
        return Verdict::Locked;
    }
    answer
        .recv_timeout(ctx.config.handshake_timeout)
        .unwrap_or(Verdict::Locked)
}

/// Whether `peer`'s client has a try left, taking none: asked before a body is read,
/// so that a locked-out client costs no more than its head.
pub(crate) fn may_try(peer: Peer, ctx: &Context, doors: &Sender<doors::Request>) -> bool {
    let client = ClientKey::of(peer.addr.ip());
    let (reply, answer) = crossbeam_channel::bounded(1);
    doors
        .send(doors::Request::SignIn(SignIn::May { client, reply }))
        .is_ok()
        && answer
            .recv_timeout(ctx.config.handshake_timeout)
            .unwrap_or(false)
}

/// Whether session `id` was ended; `true` when the doors cannot say (the safe side).
fn ended(id: SessionId, ctx: &Context, doors: &Sender<doors::Request>) -> bool {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if doors
        .send(doors::Request::SignIn(SignIn::Ended { id, reply }))
        .is_err()
    {
        return true;
    }
    answer
        .recv_timeout(ctx.config.handshake_timeout)
        .unwrap_or(true)
}

/// What an `Authorization: Bearer …` header offers, if there is one.
pub(crate) fn bearer(req: &Request) -> Option<&str> {
    req.header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The first well-signed, unexpired session cookie of `req`. Whether it was ended
/// is the hub's to say.
pub(crate) fn session(req: &Request, ctx: &Context) -> Option<Session> {
    req.header_values("Cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == COOKIE)
        .find_map(|c| valid_session(c.value(), &ctx.session_key, unix_now()))
}

/// The key session cookies are signed with: the store's random key bound to the
/// password, so that a new password ends every session of the old one.
pub(crate) fn signing_key(stored: &[u8; 32], password: Option<&crate::config::Secret>) -> [u8; 32] {
    let Some(password) = password else {
        return *stored;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(stored).expect("any key length");
    mac.update(b"switchboard session key\0");
    password.feed(|bytes| mac.update(bytes));
    mac.finalize().into_bytes().into()
}

/// A new session: its id, and the `Set-Cookie` value that signs a browser in —
/// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
/// it), `Secure` over TLS.
pub(crate) fn new_session(ctx: &Context, secure: bool) -> Option<String> {
    let mut id = SessionId::default();
    getrandom::fill(&mut id).ok()?;
    let expires = unix_now() + SESSION.as_secs();
    let value = cookie_value(&ctx.session_key, &id, expires);
    let cookie = cookie::Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(SESSION.as_secs() as i64));
    Some(cookie.build().to_string())
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub(crate) fn cleared_cookie(secure: bool) -> String {
    cookie::Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

fn cookie_value(key: &[u8; 32], id: &SessionId, expires: u64) -> String {
    let id = data_encoding::HEXLOWER.encode(id);
    let tag = data_encoding::HEXLOWER.encode(&mac(key, &id, expires));
    format!("{id}.{expires}.{tag}")
}

fn valid_session(value: &str, key: &[u8; 32], now: u64) -> Option<Session> {
    let mut parts = value.split('.');
    let (id_hex, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id_hex.len() != 32 {
        return None;
    }
    let expires = expires.parse::<u64>().ok()?;
    // Never further out than this server would issue one, nor expired.
    if expires <= now || expires > now + SESSION.as_secs() + SKEW_SECS {
        return None;
    }
    let id = SessionId::try_from(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(id_hex.as_bytes())
            .ok()?
            .as_slice(),
    )
    .ok()?;
    let tag = data_encoding::HEXLOWER_PERMISSIVE
        .decode(tag.as_bytes())
        .ok()?;
    let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    check.update(format!("{id_hex}.{expires}").as_bytes());
    check.verify_slice(&tag).ok()?;
    Some(Session { id, expires })
}

fn mac(key: &[u8; 32], id_hex: &str, expires: u64) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id_hex}.{expires}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn a_session_is_valid_until_it_expires_and_cannot_be_forged_or_extended() {
        let key = [7u8; 32];
        let now = unix_now();
        let id = [9u8; 16];
        let good = cookie_value(&key, &id, now + 60);
        assert_eq!(
            valid_session(&good, &key, now),
            Some(Session {
                id,
                expires: now + 60
            })
        );
        assert_eq!(valid_session(&good, &[8u8; 32], now), None, "another key");
        assert_eq!(valid_session(&good, &key, now + 61), None, "expired");
        let far = cookie_value(&key, &id, now + 10 * 365 * 24 * 3600);
        assert_eq!(valid_session(&far, &key, now), None, "a ten-year cookie");
        let (id_hex, rest) = good.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let extended = format!("{id_hex}.{}.{tag}", now + 61);
        assert_eq!(
            valid_session(&extended, &key, now),
            None,
            "a changed expiry"
        );
        for junk in [
            "",
            ".",
            "x.y.z",
            "1.zz",
            "a.b.c.d",
            "99999999999999999999.00",
        ] {
            assert_eq!(valid_session(junk, &key, now), None, "{junk}");
        }
    }

    #[test]
    fn the_signing_key_depends_on_the_password() {
        let stored = [1u8; 32];
        let a = signing_key(&stored, Some(&Secret::new("correct horse")));
        let b = signing_key(&stored, Some(&Secret::new("battery staple")));
        assert_ne!(a, b);
        assert_eq!(a, signing_key(&stored, Some(&Secret::new("correct horse"))));
        assert_ne!(a, stored);
    }
}
