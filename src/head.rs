//! An HTTP/1.x head as the server reads it, and what of it may be shown.
//!
//! One parser ([`parse`], httparse with the server's limits) for everything that
//! reads a head: the HTTP front, and the trace and the wire stream, which must split a
//! head into lines exactly where the server does (bare-LF heads included), or a
//! secret hidden behind a bare `\n` would reach a log. One redaction ([`redact`]) for
//! everything that shows a head's values. It sits at the bottom of the crate, below
//! the trace, which both the front and the connections' streams stand on.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Largest request head we read; a longer one gets `431`.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most header lines we parse; more gets `431` too.
pub(crate) const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent (origin-form `/path?q` or absolute-form).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the client spoke https to a trusted proxy in front of us, when that
    /// proxy said; `None` otherwise.
    pub forwarded_secure: Option<bool>,
}

impl Request {
    /// Every value of the header `name` (case-insensitive), in order.
    pub(crate) fn header_values<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The value of header `name` if it appears once, as text.
    pub(crate) fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let mut values = self.header_values(name);
        let first = values.next()?;
        std::str::from_utf8(first).ok().map(str::trim)
    }

    /// Whether `name` holds `token` in its comma-separated list (case-insensitive),
    /// across every occurrence of the header (RFC 9110 §5.3).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The path part of the target, for origin-form or absolute-form
    /// (`GET ws://host/ws/chat`, RFC 9112 §3.2.2).
    pub(crate) fn path_and_query(&self) -> (&str, Option<&str>) {
        let mut target = self.target.as_str();
        if let Some(scheme_end) = target.find("://") {
            let rest = &target[scheme_end + 3..];
            target = rest.find('/').map_or("/", |i| &rest[i..]);
        }
        match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        }
    }
}

/// What might be parsed so far.
pub(crate) enum Parsed {
    /// A whole head, and how many bytes of the buffer it took.
    Complete(Request, usize),
    Partial,
}

/// Why a head is refused for good, before any more bytes come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Longer than [`MAX_HEAD`], or more than [`MAX_HEADERS`] header lines.
    TooLarge,
    /// The bytes are not an HTTP request, and why.
    Malformed(String),
}

/// Parses the bytes received so far.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, Refused> {
    // On the heap: 2 KiB of stack touched once would stay resident for the whole
    // life of every connection thread.
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
            else {
                return Err(Refused::Malformed("incomplete request line".into()));
            };
            let headers = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect();
            let request = Request {
                method: method.to_owned(),
                target: target.to_owned(),
                version,
                headers,
                forwarded_secure: None,
            };
            Ok(Parsed::Complete(request, len))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(Refused::TooLarge),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(Refused::TooLarge),
        Err(e) => Err(Refused::Malformed(format!("malformed request: {e}"))),
    }
}

/// Where a value of an HTTP head stood: the request target, or a header's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    /// The request target (`/ws/chat?name=ann`).
    Target,
    /// The value of the header of this name.
    Header(&'a str),
}

/// The one redaction of the crate: what a head's value may show wherever it goes (the
/// trace, the wire stream's replay, a log line).
///
/// - `Authorization` and `Proxy-Authorization`: the scheme stays (`Bearer
///   [redacted]`), since it says how a client signed in without saying with what.
/// - `Cookie` and `Set-Cookie`: `[redacted]`.
/// - `Sec-WebSocket-Protocol`: the wire key a viewer offers
///   (`switchboard-wire.[redacted]`).
/// - A target's query, and a `Referer` or `Location` URL: the values of `key=`,
///   `password=` and `token=`.
pub(crate) fn redact<'a>(field: Field<'_>, value: &'a str) -> Cow<'a, str> {
    const SCHEMES: [&str; 7] = [
        "Basic",
        "Bearer",
        "Digest",
        "Negotiate",
        "NTLM",
        "Token",
        "HOBA",
    ];
    let name = match field {
        Field::Target => return redact_query(value),
        Field::Header(name) => name.trim(),
    };
    let is = |header: &str| name.eq_ignore_ascii_case(header);
    if is("authorization") || is("proxy-authorization") {
        let scheme = value
            .split_once(' ')
            .and_then(|(scheme, _)| SCHEMES.iter().find(|s| s.eq_ignore_ascii_case(scheme)));
        match scheme {
            Some(scheme) => format!("{scheme} {REDACTED}").into(),
            None => REDACTED.into(),
        }
    } else if is("cookie") || is("set-cookie") {
        REDACTED.into()
    } else if is("sec-websocket-protocol") {
        redact_wire_key(value)
    } else if is("referer") || is("location") || is("content-location") {
        redact_query(value)
    } else {
        value.into()
    }
}

const REDACTED: &str = "[redacted]";

/// How a wire viewer offers its key in `Sec-WebSocket-Protocol`:
/// `switchboard-wire.KEY` (the wire stream's business, named here so that the
/// redaction knows it).
pub(crate) const WIRE_KEY_PREFIX: &str = "switchboard-wire.";

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 3] = ["key", "password", "token"];

/// `/ws/wire/3?x=1&key=00ff` → `/ws/wire/3?x=1&key=[redacted]`.
fn redact_query(target: &str) -> Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let end = |s: &str| s.find(['&', ';', '#', ' ']).unwrap_or(s.len());
    let secret = |param: &str| {
        param
            .split_once('=')
            .is_some_and(|(name, _)| SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)))
    };
    // Cheap first look: most targets have no secret at all.
    let params = || {
        let mut rest = query;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let at = end(rest);
            let (param, tail) = rest.split_at(at);
            let sep = tail.chars().next();
            rest = tail
                .get(sep.map_or(0, char::len_utf8)..)
                .unwrap_or_default();
            Some((param, sep))
        })
    };
    if !params().any(|(param, _)| secret(param)) {
        return target.into();
    }
    let mut out = format!("{path}?");
    for (param, sep) in params() {
        match param.split_once('=') {
            Some((name, _)) if secret(param) => {
                let _ = write!(out, "{name}={REDACTED}");
            }
            _ => out.push_str(param),
        }
        if let Some(sep) = sep {
            out.push(sep);
        }
    }
    out.into()
}

/// `switchboard-wire, switchboard-wire.KEY` → `switchboard-wire,
/// switchboard-wire.[redacted]`.
fn redact_wire_key(offer: &str) -> Cow<'_, str> {
    let prefix = WIRE_KEY_PREFIX;
    let keyed = |token: &str| {
        token
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if !offer.split(',').any(|t| keyed(t.trim())) {
        return offer.into();
    }
    offer
        .split(',')
        .map(|t| {
            let t = t.trim();
            if keyed(t) {
                format!("{prefix}{REDACTED}")
            } else {
                t.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_redacted_and_the_rest_borrowed() {
        let target = |t| redact(Field::Target, t).into_owned();
        assert_eq!(target("/ws/chat"), "/ws/chat");
        assert_eq!(
            target("/ws/wire/3?x=1&key=00ff"),
            "/ws/wire/3?x=1&key=[redacted]"
        );
        assert_eq!(
            target("/login?Password=pw;token=t&name=a"),
            "/login?Password=[redacted];token=[redacted]&name=a"
        );
        assert_eq!(target("/?monkey=1&key"), "/?monkey=1&key");
        assert!(matches!(redact(Field::Target, "/?a=1"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_bare_lf_head_is_a_head() {
        let Ok(Parsed::Complete(req, len)) = parse(b"GET / HTTP/1.1\nX-A: 1\nCookie: c\n\nrest")
        else {
            panic!("a bare-LF head parses");
        };
        assert_eq!(len, 33);
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.header("cookie"), Some("c"));
    }
}
