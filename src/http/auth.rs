//! Keeping strangers out (SPEC §11): with a password set, every WebSocket endpoint and
//! every `/api` read needs a session cookie from `POST /login`, or the password itself
//! as `Authorization: Bearer PASSWORD` (for wscat, websocat, scripts).
//!
//! A session cookie is `EXPIRY.MAC`: the expiry (Unix seconds) and an HMAC-SHA256 of
//! it under a random key the store keeps, so the server keeps no session table, a
//! cookie cannot be forged or extended, and it survives a restart on the same data
//! directory (without one, every start signs everyone out). Every comparison is
//! constant-time.

use super::request::Request;
use crate::base::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "switchboard_session";

/// How long a sign-in lasts: a working week on a LAN.
const SESSION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether `req` may use what the password guards: always, when there is none.
pub(crate) fn allows(req: &Request, ctx: &Context) -> bool {
    let Some(password) = &ctx.config.password else {
        return true;
    };
    if bearer(req).is_some_and(|offered| password.matches(offered.as_bytes())) {
        return true;
    }
    req.header_values("Cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .any(|c| c.name() == COOKIE && valid_session(c.value(), &ctx.session_key))
}

/// What an `Authorization: Bearer …` header offers, if there is one.
pub(crate) fn bearer(req: &Request) -> Option<&str> {
    req.header("Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The `Set-Cookie` value that signs a browser in: `HttpOnly` (no script reads it),
/// `SameSite=Strict` (no other site's page sends it), `Secure` over TLS.
pub(crate) fn session_cookie(ctx: &Context, secure: bool) -> String {
    let expires = now_secs() + SESSION.as_secs();
    let value = format!("{expires}.{}", hex(&mac(&ctx.session_key, expires)));
    let mut cookie = cookie::Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(SESSION.as_secs() as i64));
    if secure {
        cookie = cookie.secure(true);
    }
    cookie.build().to_string()
}

fn valid_session(value: &str, key: &[u8; 32]) -> bool {
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    if expires <= now_secs() {
        return false;
    }
    let Some(tag) = unhex(tag) else {
        return false;
    };
    let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    check.update(expires.to_string().as_bytes());
    check.verify_slice(&tag).is_ok()
}

fn mac(key: &[u8; 32], expires: u64) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(expires.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_and_cannot_be_forged() {
        let key = [7u8; 32];
        let expires = now_secs() + 60;
        let good = format!("{expires}.{}", hex(&mac(&key, expires)));
        assert!(valid_session(&good, &key));
        assert!(!valid_session(&good, &[8u8; 32]), "another server's key");
        let extended = format!("{}.{}", expires + 1, hex(&mac(&key, expires)));
        assert!(!valid_session(&extended, &key), "a changed expiry");
        let past = now_secs() - 1;
        assert!(!valid_session(
            &format!("{past}.{}", hex(&mac(&key, past))),
            &key
        ));
        for junk in ["", ".", "x.y", "1.zz", "99999999999999999999.00", "1.0"] {
            assert!(!valid_session(junk, &key), "{junk}");
        }
    }
}
