//! Keeping strangers out: with a password set, every WebSocket endpoint and every
//! `/api` read needs a session cookie from `POST /login`, or the password itself as
//! `Authorization: Bearer PASSWORD` (for wscat, websocat, scripts). With an admin
//! password set too (or alone), signing in with it the same ways makes an admin
//! ([`Access::Admin`]), who may go wherever a member may.
//!
//! **One budget for every guess.** Whatever checks a secret — a Bearer header on any
//! endpoint, `/login`, `/info`, the API token — hands the guess to the doors'
//! thread ([`crate::doors`]), which spends from the client's budget and compares in
//! one step ([`judge`]); a door that takes the password or the admin password has one
//! guess compared with both, for one try. Past five wrong tries every check is
//! `Locked` (`429`), right secret or not, so no door tells a right guess from a wrong
//! one outside the budget, and requests sent in parallel cannot outrun it.
//!
//! **Sessions.** A cookie is `ID.EXPIRY.ROLE.MAC`: 128 random bits, the expiry (Unix
//! seconds), `member` or `admin`, and an HMAC-SHA256 of the three under a key derived
//! from the store's random key *and the password* (for a member) or *the admin
//! password* (for an admin). So a cookie cannot be forged, extended or raised to
//! admin, it survives a restart on the same data directory, a new password ends every
//! session made under the old one (a new admin password every admin session), and an
//! expiry further out than the server would issue is refused. `POST /logout` ends one
//! session server-side: the doors remember its id until it would have expired (the
//! backend keeps that list across restarts and nodes). Every comparison is
//! constant-time.

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

/// The secrets a sign-in (`/login`, or a Bearer header where people come in) may
/// carry: judged together, one try per guess.
pub(crate) const PASSWORDS: &[Secret] = &[Secret::Password, Secret::AdminPassword];

/// What a request may do once its credentials were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No password is set: everything is open (and this request is no admin).
    Open,
    /// A good member session cookie, or the right password as Bearer.
    Member,
    /// A good admin session cookie, or the right admin password as Bearer.
    Admin,
    /// No credentials, or wrong ones (then a try was spent).
    Anonymous,
    /// The client's budget is spent: nothing was compared.
    Locked,
}

impl Access {
    /// Whether what the password guards is open to this request.
    pub(crate) fn allowed(self) -> bool {
        matches!(self, Access::Open | Access::Member | Access::Admin)
    }

    /// Whether this request is an admin's (an admin session or the admin password
    /// as Bearer): what moderation asks. The API token, which may moderate through
    /// the API, is the API's to judge: it passes `[Secret::ApiToken,
    /// Secret::AdminPassword]` to [`judge`] and is told which one it was.
    pub(crate) fn is_admin(self) -> bool {
        self == Access::Admin
    }
}

/// Who a session cookie signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Member,
    Admin,
}

impl Role {
    /// How the cookie spells it, inside what its MAC covers.
    fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// A session, as its cookie names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    pub id: SessionId,
    pub expires: u64,
    pub role: Role,
}

/// Whether anyone signs in here: a password or an admin password is set.
pub(crate) fn signs_in(ctx: &Context) -> bool {
    ctx.config.password.is_some() || ctx.config.admin_password.is_some()
}

/// Looks at the credentials of `req`: a good, unended session cookie first (no
/// budget: its MAC cannot be guessed), then a Bearer password or admin password,
/// judged within the budget of `peer`. Without a password, a request that is not an
/// admin's is `Open`.
pub(crate) fn check(
    req: &Request,
    peer: Peer,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Access {
    if !signs_in(ctx) {
        return Access::Open;
    }
    let not_signed_in = if ctx.config.password.is_some() {
        Access::Anonymous
    } else {
        Access::Open
    };
    if let Some(session) = session(req, ctx)
        && !ended(session.id, ctx, doors)
    {
        return match session.role {
            Role::Member => Access::Member,
            Role::Admin => Access::Admin,
        };
    }
    let Some(offered) = bearer(req) else {
        return not_signed_in;
    };
    match judge(peer, PASSWORDS, offered, ctx, doors) {
        Verdict::Right(Secret::AdminPassword) => {
            admin_signed_in(peer, ctx);
            Access::Admin
        }
        Verdict::Right(_) => Access::Member,
        Verdict::Wrong => not_signed_in,
        Verdict::Locked => Access::Locked,
    }
}

/// Counts and logs a sign-in with the admin password (never the password itself).
pub(crate) fn admin_signed_in(peer: Peer, ctx: &Context) {
    crate::metrics::bump(&ctx.metrics.admin_signins);
    log::info!("conn {} {}: signed in as admin", peer.id, peer.addr);
}

/// Has the doors judge `offered` against each secret of `accepts` within the budget
/// of `peer`'s client: spending and comparing are one step there, one try for the
/// guess. `Locked` when they do not answer in time (the safe side).
pub(crate) fn judge(
    peer: Peer,
    accepts: &'static [Secret],
    offered: &str,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Verdict {
    let client = ClientKey::of(peer.addr.ip());
    let (reply, answer) = crossbeam_channel::bounded(1);
    let asked = doors.send(doors::Request::SignIn(SignIn::Judge {
        client,
        accepts,
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
/// is the doors' to say.
pub(crate) fn session(req: &Request, ctx: &Context) -> Option<Session> {
    let keys = Keys {
        member: &ctx.session_key,
        admin: ctx.admin_session_key.as_ref(),
    };
    req.header_values("Cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == COOKIE)
        .find_map(|c| valid_session(c.value(), keys, unix_now()))
}

/// The keys cookies are signed with, one per role.
#[derive(Debug, Clone, Copy)]
struct Keys<'a> {
    member: &'a [u8; 32],
    /// `None` without an admin password: no admin cookie is good.
    admin: Option<&'a [u8; 32]>,
}

impl<'a> Keys<'a> {
    fn of(self, role: Role) -> Option<&'a [u8; 32]> {
        match role {
            Role::Member => Some(self.member),
            Role::Admin => self.admin,
        }
    }
}

/// The key member session cookies are signed with: the store's random key bound to
/// the password, so that a new password ends every session of the old one.
pub(crate) fn signing_key(stored: &[u8; 32], password: Option<&crate::config::Secret>) -> [u8; 32] {
    let Some(password) = password else {
        return *stored;
    };
    derive_key(stored, b"switchboard session key\0", password)
}

/// The key admin session cookies are signed with: the store's random key bound to the
/// admin password (and labelled apart from the members' key), so that a new admin
/// password ends every admin session, and a new password none of them.
pub(crate) fn admin_signing_key(stored: &[u8; 32], admin: &crate::config::Secret) -> [u8; 32] {
    derive_key(stored, b"switchboard admin session key\0", admin)
}

fn derive_key(stored: &[u8; 32], label: &[u8], secret: &crate::config::Secret) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(stored).expect("any key length");
    mac.update(label);
    secret.feed(|bytes| mac.update(bytes));
    mac.finalize().into_bytes().into()
}

/// A new session for `role`: the `Set-Cookie` value that signs a browser in —
/// `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
/// it), `Secure` over TLS. `None` without randomness, or for an admin without an
/// admin password.
pub(crate) fn new_session(ctx: &Context, role: Role, secure: bool) -> Option<String> {
    let key = match role {
        Role::Member => &ctx.session_key,
        Role::Admin => ctx.admin_session_key.as_ref()?,
    };
    let mut id = SessionId::default();
    getrandom::fill(&mut id).ok()?;
    let expires = unix_now() + SESSION.as_secs();
    let value = cookie_value(key, &id, expires, role);
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

fn cookie_value(key: &[u8; 32], id: &SessionId, expires: u64, role: Role) -> String {
    let signed = format!(
        "{}.{expires}.{}",
        data_encoding::HEXLOWER.encode(id),
        role.as_str()
    );
    let tag = data_encoding::HEXLOWER.encode(&mac(key, &signed));
    format!("{signed}.{tag}")
}

fn valid_session(value: &str, keys: Keys<'_>, now: u64) -> Option<Session> {
    let mut parts = value.split('.');
    let (id_hex, expires, role, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id_hex.len() != 32 {
        return None;
    }
    let role = match role {
        "member" => Role::Member,
        "admin" => Role::Admin,
        _ => return None,
    };
    // Each role its own key: a member's MAC is no good for an admin's cookie.
    let key = keys.of(role)?;
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
    // What the MAC covers: the id, the expiry and the role.
    let signed = format!("{id_hex}.{expires}.{}", role.as_str());
    let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    check.update(signed.as_bytes());
    check.verify_slice(&tag).ok()?;
    Some(Session { id, expires, role })
}

fn mac(key: &[u8; 32], signed: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn a_session_is_valid_until_it_expires_and_cannot_be_forged_or_extended() {
        let key = [7u8; 32];
        let keys = Keys {
            member: &key,
            admin: None,
        };
        let now = unix_now();
        let id = [9u8; 16];
        let good = cookie_value(&key, &id, now + 60, Role::Member);
        assert_eq!(
            valid_session(&good, keys, now),
            Some(Session {
                id,
                expires: now + 60,
                role: Role::Member,
            })
        );
        let other = Keys {
            member: &[8u8; 32],
            admin: None,
        };
        assert_eq!(valid_session(&good, other, now), None, "another key");
        assert_eq!(valid_session(&good, keys, now + 61), None, "expired");
        let far = cookie_value(&key, &id, now + 10 * 365 * 24 * 3600, Role::Member);
        assert_eq!(valid_session(&far, keys, now), None, "a ten-year cookie");
        let (id_hex, rest) = good.split_once('.').unwrap();
        let (_, tag) = rest.split_once(".member.").unwrap();
        let extended = format!("{id_hex}.{}.member.{tag}", now + 61);
        assert_eq!(
            valid_session(&extended, keys, now),
            None,
            "a changed expiry"
        );
        for junk in [
            "",
            ".",
            "x.y.z",
            "1.zz",
            "a.b.c.d",
            "a.b.c.d.e",
            "99999999999999999999.00",
        ] {
            assert_eq!(valid_session(junk, keys, now), None, "{junk}");
        }
    }

    #[test]
    fn a_member_cookie_cannot_be_raised_to_admin() {
        let (member_key, admin_key) = ([7u8; 32], [8u8; 32]);
        let keys = Keys {
            member: &member_key,
            admin: Some(&admin_key),
        };
        let now = unix_now();
        let member = cookie_value(&member_key, &[9u8; 16], now + 60, Role::Member);
        let raised = member.replacen(".member.", ".admin.", 1);
        assert_eq!(valid_session(&raised, keys, now), None);
        let admin = cookie_value(&admin_key, &[9u8; 16], now + 60, Role::Admin);
        let session = valid_session(&admin, keys, now).map(|s| s.role);
        assert_eq!(session, Some(Role::Admin));
        let no_admin = Keys {
            admin: None,
            ..keys
        };
        assert_eq!(
            valid_session(&admin, no_admin, now),
            None,
            "no admin password, no admin"
        );
        // Signed under the members' key, an admin cookie is still no good.
        let forged = cookie_value(&member_key, &[9u8; 16], now + 60, Role::Admin);
        assert_eq!(valid_session(&forged, keys, now), None);
    }

    #[test]
    fn the_signing_key_depends_on_the_password() {
        let stored = [1u8; 32];
        let a = signing_key(&stored, Some(&Secret::new("correct horse")));
        let b = signing_key(&stored, Some(&Secret::new("battery staple")));
        assert_ne!(a, b);
        assert_eq!(a, signing_key(&stored, Some(&Secret::new("correct horse"))));
        assert_ne!(a, stored);
        let admin = admin_signing_key(&stored, &Secret::new("correct horse"));
        assert_ne!(admin, a, "the admin key is labelled apart");
        assert_ne!(admin, admin_signing_key(&stored, &Secret::new("other")));
    }
}
