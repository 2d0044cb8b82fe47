//! The HTTP front: what a request asks for, and whether it may become a WebSocket.
//!
//! Every connection starts here. The request head is read (see [`request`]), then
//! [`route`] decides, without touching the socket, between a plain HTTP answer
//! (the page, `/healthz`, `/metrics`, or a rejection with its exact status) and an
//! upgrade to one of the WebSocket endpoints (RFC 6455 §4.2).

pub(crate) mod request;
pub(crate) mod response;

use crate::chat::{self, ChatError};
use crate::config::Config;
use crate::metrics::{Metrics, Rejection};
pub(crate) use request::{HeadError, Request};
pub(crate) use response::Response;

/// The browser chat page, embedded so the binary is all a LAN needs.
const PAGE: &str = include_str!("page.html");

/// A WebSocket endpoint, with what its URL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/ws/chat[/{room}]`: the JSON chat protocol.
    Chat {
        room: String,
        name: Option<String>,
        name_error: Option<ChatError>,
    },
    /// `/ws/relay/{room}`: raw forwarding to the rest of the room.
    Relay { room: String },
    /// `/ws/echo`: everything straight back.
    Echo,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Answer and close.
    Respond(Response),
    /// Refuse and close; counted and logged with its reason.
    Reject(Response, Rejection, String),
    /// Send the `101` and hand the connection to the frame loop.
    Upgrade(Endpoint, Response),
}

fn reject(status: u16, why: Rejection, reason: impl Into<String>) -> Routed {
    let reason = reason.into();
    Routed::Reject(Response::text(status, &reason), why, reason)
}

/// The response for a request head that could not be read, if one is owed.
pub(crate) fn head_error_response(err: &HeadError) -> Option<(Response, Rejection, String)> {
    let (status, why, reason) = match err {
        HeadError::TooLarge => (
            431,
            Rejection::HeadTooLarge,
            "request head over 8 KiB or 64 header lines".to_owned(),
        ),
        HeadError::Malformed(why) => (400, Rejection::BadRequest, why.clone()),
        // RFC 9110 §15.5.9: 408 only makes sense if the client started a request.
        HeadError::Timeout { partial: true } => (
            408,
            Rejection::Timeout,
            "request head not finished in time".to_owned(),
        ),
        _ => return None,
    };
    Some((Response::text(status, &reason), why, reason))
}

/// Decides what a request gets. `secure` says whether it came over TLS.
pub(crate) fn route(req: &Request, config: &Config, metrics: &Metrics) -> Routed {
    if req.method != "GET" {
        let routed = reject(
            405,
            Rejection::MethodNotAllowed,
            format!("method {} not allowed", req.method),
        );
        return match routed {
            Routed::Reject(resp, why, reason) => {
                Routed::Reject(resp.header("Allow", "GET"), why, reason)
            }
            other => other,
        };
    }
    let (path, query) = req.path_and_query();
    let endpoint = match path {
        "/" | "/index.html" => {
            return Routed::Respond(
                Response::new(200).body("text/html; charset=utf-8", PAGE.as_bytes()),
            );
        }
        "/healthz" => {
            return Routed::Respond(
                Response::new(200).body("application/json", metrics.health_json().into_bytes()),
            );
        }
        "/metrics" => {
            return Routed::Respond(Response::new(200).body(
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.prometheus().into_bytes(),
            ));
        }
        "/ws/echo" => Endpoint::Echo,
        "/ws/chat" => chat_endpoint(chat::DEFAULT_ROOM, query),
        _ => {
            if let Some(room) = path.strip_prefix("/ws/chat/") {
                match chat::valid_room(room) {
                    Ok(room) => chat_endpoint(&room, query),
                    Err(e) => return reject(400, Rejection::BadRequest, e.message),
                }
            } else if let Some(room) = path.strip_prefix("/ws/relay/") {
                match chat::valid_room(room) {
                    Ok(room) => Endpoint::Relay { room },
                    Err(e) => return reject(400, Rejection::BadRequest, e.message),
                }
            } else {
                return reject(404, Rejection::NotFound, format!("nothing at {path}"));
            }
        }
    };
    upgrade(req, config, endpoint)
}

fn chat_endpoint(room: &str, query: Option<&str>) -> Endpoint {
    let (name, name_error) = match request::query_param(query, "name") {
        None => (None, None),
        Some(None) => (
            None,
            Some(ChatError::new(
                chat::ErrorCode::BadName,
                "the name in the URL is not valid UTF-8",
            )),
        ),
        Some(Some(raw)) => match chat::valid_name(&raw) {
            Ok(name) => (Some(name), None),
            Err(e) => (None, Some(e)),
        },
    };
    Endpoint::Chat {
        room: room.to_owned(),
        name,
        name_error,
    }
}

/// Checks the opening handshake (RFC 6455 §4.2.1) and builds the `101`.
fn upgrade(req: &Request, config: &Config, endpoint: Endpoint) -> Routed {
    if !req.has_token("Upgrade", "websocket") {
        let routed = reject(
            426,
            Rejection::UpgradeRequired,
            "this endpoint speaks WebSocket only",
        );
        return with_upgrade_headers(routed);
    }
    if req.version < 1 {
        return reject(
            400,
            Rejection::BadRequest,
            "a WebSocket handshake needs HTTP/1.1",
        );
    }
    if !req.has_token("Connection", "upgrade") {
        return reject(
            400,
            Rejection::BadRequest,
            "the Connection header must include Upgrade",
        );
    }
    let host = match single(req, "Host") {
        Ok(host) => host,
        Err(e) => return reject(400, Rejection::BadRequest, e),
    };
    match single(req, "Sec-WebSocket-Version") {
        Ok("13") => {}
        Ok(other) => {
            let routed = reject(
                426,
                Rejection::BadVersion,
                format!("WebSocket version {other:?} is not supported, use 13"),
            );
            return with_upgrade_headers(routed);
        }
        Err(e) => return reject(400, Rejection::BadRequest, e),
    }
    let key = match single(req, "Sec-WebSocket-Key") {
        Ok(key) if is_valid_key(key) => key,
        Ok(_) => {
            return reject(
                400,
                Rejection::BadRequest,
                "Sec-WebSocket-Key must be 16 bytes in base64",
            );
        }
        Err(e) => return reject(400, Rejection::BadRequest, e),
    };
    if let Some(origin) = req.header("Origin")
        && !origin_allowed(origin, host, &config.allow_origins)
    {
        return reject(
            403,
            Rejection::Forbidden,
            format!("origin {origin} is not allowed"),
        );
    }
    let mut response = Response::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header(
            "Sec-WebSocket-Accept",
            tungstenite::handshake::derive_accept_key(key.as_bytes()),
        );
    if matches!(endpoint, Endpoint::Chat { .. })
        && req.has_token("Sec-WebSocket-Protocol", chat::SUBPROTOCOL)
    {
        response = response.header("Sec-WebSocket-Protocol", chat::SUBPROTOCOL);
    }
    Routed::Upgrade(endpoint, response)
}

fn with_upgrade_headers(routed: Routed) -> Routed {
    match routed {
        Routed::Reject(resp, why, reason) => Routed::Reject(
            resp.header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", "13"),
            why,
            reason,
        ),
        other => other,
    }
}

/// The value of a header that must appear exactly once.
fn single<'a>(req: &'a Request, name: &'a str) -> Result<&'a str, String> {
    match req.header_values(name).count() {
        0 => Err(format!("missing {name} header")),
        1 => req
            .header(name)
            .ok_or_else(|| format!("{name} header is not text")),
        _ => Err(format!("more than one {name} header")),
    }
}

/// Whether `key` is base64 for exactly 16 bytes (RFC 6455 §4.1): 22 significant
/// characters, `==` padding, and no stray bits in the last character.
fn is_valid_key(key: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = key.as_bytes();
    let Some((body, pad)) = bytes.split_at_checked(22) else {
        return false;
    };
    let value = |c: &u8| ALPHABET.iter().position(|a| a == c);
    pad == b"=="
        && body.iter().all(|c| value(c).is_some())
        && body.last().and_then(value).is_some_and(|v| v & 0x0f == 0)
}

/// The origin policy (SPEC §3): same host:port as the request, or listed.
fn origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let normal = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a)
    };
    normal(authority) == normal(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_sixteen_bytes_of_base64() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZR=="), "stray low bits");
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!is_valid_key("YWJj"));
        assert!(!is_valid_key(""));
    }

    #[test]
    fn origin_must_match_host_or_list() {
        assert!(origin_allowed(
            "http://127.0.0.1:3000",
            "127.0.0.1:3000",
            &[]
        ));
        assert!(origin_allowed("http://Example.com", "example.com:80", &[]));
        assert!(origin_allowed("https://example.com", "example.com", &[]));
        assert!(!origin_allowed("http://evil.com", "example.com", &[]));
        assert!(!origin_allowed(
            "http://example.com:3001",
            "example.com:3000",
            &[]
        ));
        assert!(!origin_allowed("null", "example.com", &[]));
        assert!(origin_allowed(
            "http://evil.com",
            "example.com",
            &["http://evil.com/".into()]
        ));
        assert!(origin_allowed("null", "example.com", &["*".into()]));
    }
}
