//! What a request gets, decided without touching the socket: a plain HTTP answer
//! (the page, `/healthz`, `/metrics`), a refusal with its exact status, or an upgrade
//! to one of the WebSocket endpoints after the checks of RFC 6455 §4.2.

use super::request::{self, HeadError, Request};
use super::response::Response;
use crate::chat::Since;
use crate::chat::{self, ChatError};
use crate::config::Config;
use crate::connection::Endpoint;
use crate::metrics::{Metrics, Rejection};
use crate::wire;

/// The browser chat page, embedded so the binary is all a LAN needs.
const PAGE: &str = include_str!("page.html");

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Answer and close.
    Respond(Response),
    /// Refuse and close; counted and logged with its reason.
    Reject(Response, Rejection, String),
    /// Send the `101` and hand the connection to the frame loop.
    Upgrade(Endpoint, Response),
    /// An HTTP API request, which may have a body still to read.
    Api(super::api::Call),
    /// `POST /login`, with a body still to read.
    Login,
    /// `POST /logout`.
    Logout,
    /// `GET /info`, which says whether this request is signed in.
    Info,
    /// `GET /qr.svg`, drawn from the server's cache of its own links.
    Qr,
    /// `GET /files/{id}/{name}`: what follows `/files/`.
    File(String),
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

/// Decides what a request gets, from its head alone.
pub(crate) fn route(req: &Request, config: &Config, metrics: &Metrics) -> Routed {
    let (path, query) = req.path_and_query();
    if path == "/login" || path == "/logout" {
        return if req.method == "POST" {
            if path == "/login" {
                Routed::Login
            } else {
                Routed::Logout
            }
        } else {
            match reject(405, Rejection::MethodNotAllowed, format!("use POST {path}")) {
                Routed::Reject(resp, why, reason) => {
                    Routed::Reject(resp.header("Allow", "POST"), why, reason)
                }
                other => other,
            }
        };
    }
    if path == "/api" || path.starts_with("/api/") {
        return match super::api::route(&req.method, path, query) {
            Ok(call) => Routed::Api(call),
            Err(response) => Routed::Respond(response),
        };
    }
    // HEAD is answered wherever GET is, without the body (the front drops
    // it); it never upgrades, since RFC 6455 §4.1 makes the handshake a GET.
    if req.method != "GET" && req.method != "HEAD" {
        let routed = reject(
            405,
            Rejection::MethodNotAllowed,
            format!("method {} not allowed", req.method),
        );
        return match routed {
            Routed::Reject(resp, why, reason) => {
                Routed::Reject(resp.header("Allow", "GET, HEAD"), why, reason)
            }
            other => other,
        };
    }
    let endpoint = match path {
        "/" | "/index.html" => {
            return Routed::Respond(
                Response::new(200)
                    .header("Content-Security-Policy", page_policy())
                    .header("Referrer-Policy", "no-referrer")
                    .body("text/html; charset=utf-8", PAGE.as_bytes()),
            );
        }
        "/healthz" => {
            let (status, body) = metrics.health();
            return Routed::Respond(
                Response::new(status).body("application/json", body.into_bytes()),
            );
        }
        "/info" => return Routed::Info,
        "/qr.svg" => return Routed::Qr,
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
            } else if let Some(id) = path.strip_prefix("/ws/wire/") {
                // The key travels in Sec-WebSocket-Protocol, which proxies do not log;
                // one in the URL is refused even when right, to keep it out of
                // access logs. A malformed id or key is refused like a wrong one.
                let offered = wire::offered_key(req.header_values("Sec-WebSocket-Protocol"));
                match (id.parse(), offered) {
                    _ if request::query_param(query, "key").is_some() => {
                        return reject(
                            403,
                            Rejection::WireKey,
                            "the wire key goes in Sec-WebSocket-Protocol, never in the URL",
                        );
                    }
                    (Ok(id), Some(key)) => Endpoint::Wire { id, key },
                    _ => {
                        return reject(
                            403,
                            Rejection::WireKey,
                            "no such connection, or the wrong key",
                        );
                    }
                }
            } else if let Some(rest) = path.strip_prefix("/files/") {
                return Routed::File(rest.to_owned());
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

/// The page's Content-Security-Policy: its own inline script and style,
/// allowed by their SHA-256 hashes, and nothing else but connections and images from
/// this server; it cannot be framed (clickjacking). Computed once, from the page the
/// binary carries, so it always matches it.
fn page_policy() -> &'static str {
    static POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let hash = |tag: &str| {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            let body = PAGE
                .split_once(&open)
                .and_then(|(_, rest)| rest.split_once(&close))
                .map_or("", |(body, _)| body);
            use sha2::Digest;
            let digest = sha2::Sha256::digest(body.as_bytes());
            format!("'sha256-{}'", data_encoding::BASE64.encode(&digest))
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            hash("script"),
            hash("style")
        )
    });
    &POLICY
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
    // Both or neither: an id means nothing without the store it came from.
    let since = match (
        request::query_param(query, "since"),
        request::query_param(query, "epoch"),
    ) {
        // An id past any the store gives is no place to resume from.
        (Some(Some(id)), Some(Some(epoch))) => id
            .parse()
            .ok()
            .filter(|&id| id <= chat::MAX_ID)
            .map(|id| Since { id, epoch }),
        _ => None,
    };
    Endpoint::Chat {
        room: room.to_owned(),
        name,
        name_error,
        since,
        // Whose it is, the credentials say: `guard` sets it.
        admin: false,
        // The cookie's, once the guard has let the request in (`http::handle`).
        session: None,
    }
}

/// Checks the opening handshake (RFC 6455 §4.2.1) and builds the `101`.
fn upgrade(req: &Request, config: &Config, endpoint: Endpoint) -> Routed {
    if req.method == "HEAD" || !req.has_token("Upgrade", "websocket") {
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
        && !origin_allowed(origin, host, req.forwarded_secure, &config.allow_origins)
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
    // RFC 6455 §4.2.2: one of the protocols the client offered, or none.
    let selected = match endpoint {
        Endpoint::Chat { .. } => chat::SUBPROTOCOL,
        Endpoint::Wire { .. } => wire::SUBPROTOCOL,
        _ => "",
    };
    if !selected.is_empty() && req.has_token("Sec-WebSocket-Protocol", selected) {
        response = response.header("Sec-WebSocket-Protocol", selected);
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

/// Whether `origin` is one of `allowed` (`--allow-origin`; `*` is every origin).
pub(super) fn origin_listed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The origin policy: same host:port as the request, or listed. `secure`
/// is the scheme the client used, when a trusted proxy said: then the
/// origin's scheme must be that one too.
pub(super) fn origin_allowed(
    origin: &str,
    host: &str,
    secure: Option<bool>,
    allowed: &[String],
) -> bool {
    if origin_listed(origin, allowed) {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let (default_port, https) = match scheme.to_ascii_lowercase().as_str() {
        "http" => (":80", false),
        "https" => (":443", true),
        _ => return false,
    };
    if secure.is_some_and(|secure| secure != https) {
        return false;
    }
    let normal = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a)
    };
    normal(authority) == normal(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parsed, parse};

    fn routed(head: &str) -> Routed {
        let Ok(Parsed::Complete(req, _)) = parse(head.as_bytes()) else {
            panic!("no complete head in {head:?}");
        };
        route(&req, &Config::default(), &Metrics::new())
    }

    fn upgrade_head(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:3000\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    /// The status and `Rejection` of a refusal.
    fn refusal(routed: Routed) -> (u16, Rejection, Response) {
        match routed {
            Routed::Reject(response, why, _) => (response.status, why, response),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn endpoint(routed: Routed) -> (Endpoint, Response) {
        match routed {
            Routed::Upgrade(endpoint, response) => (endpoint, response),
            other => panic!("expected an upgrade, got {other:?}"),
        }
    }

    fn has_header(response: &Response, name: &str, value: &str) -> bool {
        let bytes = response.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("{name}: {value}")))
    }

    #[test]
    fn plain_pages_are_answered() {
        for path in ["/", "/index.html", "/healthz", "/metrics"] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            match routed(&head) {
                Routed::Respond(response) => assert_eq!(response.status, 200, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let (status, why, response) = refusal(routed("POST / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!((status, why), (405, Rejection::MethodNotAllowed));
        assert!(has_header(&response, "Allow", "GET, HEAD"));
    }

    #[test]
    fn head_is_routed_like_get_but_never_upgrades() {
        match routed("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n") {
            Routed::Respond(response) => assert_eq!(response.status, 200),
            other => panic!("{other:?}"),
        }
        let head = upgrade_head("/ws/echo", "").replacen("GET", "HEAD", 1);
        let (status, why, _) = refusal(routed(&head));
        assert_eq!((status, why), (426, Rejection::UpgradeRequired));
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in ["/nope", "/ws/relay", "/ws/chatroom"] {
            let (status, why, _) = refusal(routed(&upgrade_head(path, "")));
            assert_eq!((status, why), (404, Rejection::NotFound), "{path}");
        }
    }

    #[test]
    fn websocket_paths_without_upgrade_are_426_naming_version_13() {
        let (status, why, response) = refusal(routed("GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!((status, why), (426, Rejection::UpgradeRequired));
        assert!(has_header(&response, "Sec-WebSocket-Version", "13"));
    }

    #[test]
    fn each_endpoint_is_reached_with_its_room() {
        let (chat, _) = endpoint(routed(&upgrade_head("/ws/chat", "")));
        assert!(
            matches!(chat, Endpoint::Chat { ref room, name: None, name_error: None, since: None, .. } if room == "lobby")
        );
        let (chat, _) = endpoint(routed(&upgrade_head("/ws/chat/rust?name=al%20ice", "")));
        assert!(
            matches!(chat, Endpoint::Chat { ref room, name: Some(ref n), .. } if room == "rust" && n == "al ice")
        );
        let (resume, _) = endpoint(routed(&upgrade_head("/ws/chat?since=41&epoch=e1", "")));
        assert!(
            matches!(resume, Endpoint::Chat { since: Some(Since { id: 41, ref epoch }), .. } if epoch == "e1")
        );
        let (half, _) = endpoint(routed(&upgrade_head("/ws/chat?since=41", "")));
        assert!(
            matches!(half, Endpoint::Chat { since: None, .. }),
            "no epoch, no resume"
        );
        let (relay, _) = endpoint(routed(&upgrade_head("/ws/relay/r1", "")));
        assert_eq!(relay, Endpoint::Relay { room: "r1".into() });
        let (echo, response) = endpoint(routed(&upgrade_head("/ws/echo", "")));
        assert_eq!(echo, Endpoint::Echo);
        assert!(has_header(
            &response,
            "Sec-WebSocket-Accept",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ));
    }

    #[test]
    fn a_bad_name_still_upgrades_and_is_reported_after_the_welcome() {
        let (chat, _) = endpoint(routed(&upgrade_head("/ws/chat?name=%07", "")));
        assert!(matches!(
            chat,
            Endpoint::Chat {
                name: None,
                name_error: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn bad_handshakes_get_their_exact_status() {
        let cases = [
            (upgrade_head("/ws/relay/", ""), 400, Rejection::BadRequest),
            (
                upgrade_head("/ws/chat/bad%20room", ""),
                400,
                Rejection::BadRequest,
            ),
            (
                upgrade_head("/ws/echo", "")
                    .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 12"),
                426,
                Rejection::BadVersion,
            ),
            (
                upgrade_head("/ws/echo", "")
                    .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
                Rejection::BadRequest,
            ),
            (
                upgrade_head("/ws/echo", "").replace("keep-alive, Upgrade", "keep-alive"),
                400,
                Rejection::BadRequest,
            ),
            (
                upgrade_head("/ws/echo", "").replace("HTTP/1.1", "HTTP/1.0"),
                400,
                Rejection::BadRequest,
            ),
            (
                upgrade_head("/ws/echo", "Host: again\r\n"),
                400,
                Rejection::BadRequest,
            ),
            (
                upgrade_head("/ws/echo", "Origin: http://evil.example\r\n"),
                403,
                Rejection::Forbidden,
            ),
        ];
        for (head, status, why) in cases {
            let (got, got_why, _) = refusal(routed(&head));
            assert_eq!((got, got_why), (status, why), "{head}");
        }
    }

    #[test]
    fn same_origin_browsers_are_let_in() {
        let (endpoint, _) = endpoint(routed(&upgrade_head(
            "/ws/echo",
            "Origin: http://localhost:3000\r\n",
        )));
        assert_eq!(endpoint, Endpoint::Echo);
    }

    #[test]
    fn chat_v1_is_selected_only_on_the_chat_endpoint() {
        let offer = "Sec-WebSocket-Protocol: other, chat.v1\r\n";
        let (_, chat) = endpoint(routed(&upgrade_head("/ws/chat", offer)));
        assert!(has_header(&chat, "Sec-WebSocket-Protocol", "chat.v1"));
        let (_, echo) = endpoint(routed(&upgrade_head("/ws/echo", offer)));
        assert!(!String::from_utf8_lossy(&echo.to_bytes()).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn the_wire_key_travels_as_a_subprotocol_never_in_the_url() {
        let offer = "Sec-WebSocket-Protocol: switchboard-wire, switchboard-wire.00ff\r\n";
        let (wire, response) = endpoint(routed(&upgrade_head("/ws/wire/7", offer)));
        assert!(matches!(wire, Endpoint::Wire { id: 7, ref key } if key.0 == "00ff"));
        assert!(has_header(
            &response,
            "Sec-WebSocket-Protocol",
            "switchboard-wire"
        ));
        assert!(!String::from_utf8_lossy(&response.to_bytes()).contains("00ff"));
        for (path, extra) in [
            ("/ws/wire/7?key=00ff", offer),
            ("/ws/wire/7?key=00ff", ""),
            ("/ws/wire/7", ""),
            ("/ws/wire/7", "Sec-WebSocket-Protocol: switchboard-wire\r\n"),
            ("/ws/wire/x", offer),
        ] {
            let (status, why, _) = refusal(routed(&upgrade_head(path, extra)));
            assert_eq!((status, why), (403, Rejection::WireKey), "{path} {extra}");
        }
    }

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
            None,
            &[]
        ));
        assert!(origin_allowed(
            "http://Example.com",
            "example.com:80",
            None,
            &[]
        ));
        assert!(origin_allowed(
            "https://example.com",
            "example.com",
            None,
            &[]
        ));
        assert!(!origin_allowed("http://evil.com", "example.com", None, &[]));
        assert!(!origin_allowed(
            "http://example.com:3001",
            "example.com:3000",
            None,
            &[]
        ));
        assert!(!origin_allowed("null", "example.com", None, &[]));
        assert!(origin_allowed(
            "http://evil.com",
            "example.com",
            None,
            &["http://evil.com/".into()]
        ));
        assert!(origin_allowed("null", "example.com", None, &["*".into()]));
        // Behind a proxy that said how the page was loaded, the scheme counts too.
        assert!(origin_allowed(
            "https://example.com",
            "example.com",
            Some(true),
            &[]
        ));
        assert!(!origin_allowed(
            "http://example.com:8080",
            "example.com:8080",
            Some(true),
            &[]
        ));
        assert!(!origin_allowed(
            "https://example.com:8080",
            "example.com:8080",
            Some(false),
            &[]
        ));
        assert!(origin_allowed(
            "http://example.com:8080",
            "example.com:8080",
            Some(false),
            &[]
        ));
    }
}
