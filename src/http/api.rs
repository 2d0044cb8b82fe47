//! The HTTP API: rooms and their messages as JSON, and server push, a
//! message posted into a room by a script with one `curl`.
//!
//! The request is read and checked here, on the connection thread: the route, the
//! token (compared in constant time), the content type, the body (bounded, read under
//! the handshake deadline). Then it goes to the hub as an event like any chat
//! request, and this thread waits (bounded) for the answer on a channel of its own.
//! A posted message is stored and delivered like a chat client's, marked
//! `"via":"api"`.

use super::body::{self, BodyError, Pieces};
use super::multipart::{self, FormError};
use super::request::{self, HeadError, Request};
use super::response::{Response, error};
use crate::base::{self, Context, Peer, Transport};
use crate::chat::{self, ChatLine};
use crate::connection::Lines;
use crate::doors;
use crate::files::{FileError, Upload};
use crate::hub::{ApiCall, HubEvent};
use crate::store::{ApiAnswer, MAX_PAGE};
use crossbeam_channel::Sender;
use serde_json::json;
use std::time::Instant;

/// Rooms in one page of `GET /api/rooms` unless `?limit=` says otherwise, and at
/// most: a page is cheap to build and to send whatever the number of rooms.
const ROOMS_PAGE: usize = 100;
const MAX_ROOMS_PAGE: usize = 1000;

/// Largest body a post may have: a whole chat text in JSON with room to spare.
const MAX_BODY: usize = 64 * 1024;

/// An API request, routed: a read, ready for the hub, or a post whose body is still
/// to be read and checked.
#[derive(Debug)]
pub(crate) enum Call {
    Read(ApiCall),
    Post {
        room: String,
    },
    /// `POST /api/rooms/{room}/files?name=…`: the body is the file, or a form with
    /// it (whose part may name it).
    PostFile {
        room: String,
        name: Option<String>,
    },
    /// `DELETE /api/rooms/{room}/messages/{id}`: moderation, with the API token.
    Delete {
        room: String,
        id: u64,
    },
    /// `POST /api/rooms/{room}/kick`: moderation, with the API token; the body
    /// names who and why.
    Kick {
        room: String,
    },
    /// `POST /api/rooms/{room}/mute`: the body names who and for how long.
    Mute {
        room: String,
    },
    /// `POST /api/rooms/{room}/settings`: the body says what changes.
    Settings {
        room: String,
    },
    /// `POST /api/rooms/{room}/clear`: no body.
    Clear {
        room: String,
    },
}

impl Call {
    /// Whether it changes the chat (posts or deletes: guarded by the API token, not
    /// the password).
    pub(crate) fn is_post(&self) -> bool {
        matches!(
            self,
            Call::Post { .. }
                | Call::PostFile { .. }
                | Call::Delete { .. }
                | Call::Kick { .. }
                | Call::Mute { .. }
                | Call::Settings { .. }
                | Call::Clear { .. }
        )
    }
}

fn json_response(status: u16, value: &serde_json::Value) -> Response {
    Response::new(status).body("application/json", value.to_string().into_bytes())
}

/// What a request for a path under `/api/` is, or the error it gets.
pub(crate) fn route(method: &str, path: &str, query: Option<&str>) -> Result<Call, Response> {
    let read = method == "GET" || method == "HEAD";
    let not_allowed = |allow: &'static str| {
        error(405, "method_not_allowed", format!("{path} takes {allow}")).header("Allow", allow)
    };
    if path == "/api/rooms" {
        if !read {
            return Err(not_allowed("GET, HEAD"));
        }
        let limit = match request::query_param(query, "limit") {
            None => ROOMS_PAGE,
            Some(Some(n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_ROOMS_PAGE).contains(&n) => n,
                _ => {
                    return Err(error(
                        400,
                        "bad_request",
                        format!("limit is 1 to {MAX_ROOMS_PAGE}"),
                    ));
                }
            },
            Some(None) => return Err(error(400, "bad_request", "limit is not valid")),
        };
        let after = match request::query_param(query, "after") {
            None => None,
            Some(Some(name)) => Some(
                chat::valid_room(&name)
                    .map_err(|e| error(400, "bad_request", format!("after: {}", e.message)))?,
            ),
            Some(None) => return Err(error(400, "bad_request", "after is not valid")),
        };
        return Ok(Call::Read(ApiCall::Rooms { after, limit }));
    }
    if let Some(room) = path
        .strip_prefix("/api/rooms/")
        .and_then(|rest| rest.strip_suffix("/files"))
    {
        let room = chat::valid_room(room).map_err(|e| error(404, "bad_room", e.message))?;
        if method != "POST" {
            return Err(not_allowed("POST"));
        }
        let name = match request::query_param(query, "name") {
            Some(Some(name)) => {
                Some(chat::valid_file_name(&name).map_err(|e| error(400, "bad_file", e.message))?)
            }
            Some(None) => return Err(error(400, "bad_file", "name is not valid")),
            None => None,
        };
        return Ok(Call::PostFile { room, name });
    }
    // Moderation: `POST /api/rooms/{room}/{action}`.
    if let Some((room, action)) = path
        .strip_prefix("/api/rooms/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, action)| matches!(*action, "kick" | "mute" | "settings" | "clear"))
    {
        let room = chat::valid_room(room).map_err(|e| error(404, "bad_room", e.message))?;
        if method != "POST" {
            return Err(not_allowed("POST"));
        }
        return Ok(match action {
            "kick" => Call::Kick { room },
            "mute" => Call::Mute { room },
            "settings" => Call::Settings { room },
            _ => Call::Clear { room },
        });
    }
    if let Some((room, id)) = path
        .strip_prefix("/api/rooms/")
        .and_then(|rest| rest.split_once("/messages/"))
    {
        let room = chat::valid_room(room).map_err(|e| error(404, "bad_room", e.message))?;
        // Only a number names a message: anything else names nothing.
        let id = id
            .parse::<u64>()
            .ok()
            .filter(|&id| id <= chat::MAX_ID)
            .ok_or_else(|| error(404, "not_found", format!("nothing at {path}")))?;
        if method != "DELETE" {
            return Err(not_allowed("DELETE"));
        }
        return Ok(Call::Delete { room, id });
    }
    let Some(room) = path
        .strip_prefix("/api/rooms/")
        .and_then(|rest| rest.strip_suffix("/messages"))
    else {
        return Err(error(404, "not_found", format!("nothing at {path}")));
    };
    let room = chat::valid_room(room).map_err(|e| error(404, "bad_room", e.message))?;
    match method {
        "POST" => Ok(Call::Post { room }),
        _ if read => {
            let number = |key| match request::query_param(query, key) {
                None => Ok(None),
                Some(Some(v)) => match v.parse::<u64>() {
                    Ok(n) if n <= chat::MAX_ID => Ok(Some(n)),
                    Ok(_) => Err(error(
                        400,
                        "bad_request",
                        format!("{key} is at most {}", chat::MAX_ID),
                    )),
                    Err(_) => Err(error(
                        400,
                        "bad_request",
                        format!("{key} must be a whole number"),
                    )),
                },
                Some(None) => Err(error(400, "bad_request", format!("{key} is not valid"))),
            };
            let limit = number("limit")?.map_or(50, |n| n as usize);
            if limit == 0 || limit > MAX_PAGE {
                return Err(error(
                    400,
                    "bad_request",
                    format!("limit is 1 to {MAX_PAGE}"),
                ));
            }
            Ok(Call::Read(ApiCall::Messages {
                room,
                before: number("before")?,
                after: number("after")?,
                limit,
            }))
        }
        _ => Err(not_allowed("GET, HEAD, POST")),
    }
}

/// Answers an API request; the caller writes the response.
pub(crate) fn serve<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    call: Call,
    peer: Peer,
    deadline: Instant,
    ctx: &Context,
    lines: &Lines,
) -> Response {
    let ip = peer.addr.ip();
    let call = match call {
        Call::Read(read) => read,
        Call::Post { room } => match post(
            stream,
            (req, rest),
            room,
            (peer, deadline),
            ctx,
            &lines.doors,
        ) {
            Ok(call) => call,
            Err(response) => return response,
        },
        Call::PostFile { room, name } => {
            match post_file(stream, (req, rest), (room, name), peer, ctx, &lines.doors) {
                Ok(call) => call,
                Err(response) => return response,
            }
        }
        Call::Delete { room, id } => {
            if let Err(response) = authorize(req, (peer, MODERATOR), ctx, &lines.doors) {
                return response;
            }
            ApiCall::Delete { room, id }
        }
        Call::Kick { room } => {
            match moderation(stream, (req, rest), (peer, deadline), ctx, &lines.doors) {
                Ok(Moderation { name, reason, .. }) => ApiCall::Kick { room, name, reason },
                Err(response) => return response,
            }
        }
        Call::Clear { room } => {
            if let Err(response) = authorize(req, (peer, MODERATOR), ctx, &lines.doors) {
                return response;
            }
            ApiCall::Clear { room }
        }
        Call::Settings { room } => {
            let body = (stream, (req, rest));
            match settings(body, (peer, deadline), ctx, &lines.doors) {
                Ok(change) => ApiCall::Settings { room, change },
                Err(response) => return response,
            }
        }
        Call::Mute { room } => {
            match moderation(stream, (req, rest), (peer, deadline), ctx, &lines.doors) {
                Ok(Moderation {
                    name,
                    minutes: Some(minutes),
                    ..
                }) => ApiCall::Mute {
                    room,
                    name,
                    minutes,
                },
                Ok(_) => {
                    return error(400, "missing_field", "a mute needs \"minutes\" (0 unmutes)");
                }
                Err(response) => return response,
            }
        }
    };
    let posting = matches!(call, ApiCall::Post { .. });
    // The store may still carry these out once it answers.
    let deleting = matches!(
        call,
        ApiCall::Delete { .. }
            | ApiCall::Kick { .. }
            | ApiCall::Mute { .. }
            | ApiCall::Settings { .. }
            | ApiCall::Clear { .. }
    );
    let not_found = match &call {
        ApiCall::Delete { .. } => {
            "there is no such message in this room (or it is deleted already)"
        }
        ApiCall::Mute { minutes: 0, .. } => "nobody of that name is muted in this room",
        _ => "there is nobody of that name in this room",
    };
    let (reply, answer) = crossbeam_channel::bounded(1);
    let event = HubEvent::Api { ip, call, reply };
    if lines.hub.send(event).is_err() {
        return error(503, "unavailable", "the server is shutting down");
    }
    let timeout = ctx.config.handshake_timeout;
    match answer.recv_timeout(timeout) {
        // The hub has the post and may still store and deliver it: saying `503`
        // ("nothing was posted") would make a script that retries post it twice.
        Err(_) | Ok(ApiAnswer::Accepted) if posting => json_response(
            202,
            &json!({
                "status": "accepted",
                "message": "the post is in but not yet confirmed: it may still reach the \
                            room, so do not send it again",
            }),
        ),
        // The store may still carry it out: `503` would be a lie.
        Err(_) if deleting => json_response(
            202,
            &json!({
                "status": "accepted",
                "message": "it is on its way but not yet confirmed",
            }),
        ),
        Ok(ApiAnswer::Posted(line)) => json_response(201, &message_json(&line)),
        Ok(ApiAnswer::Deleted(deleted)) => {
            log::info!(
                "conn {} {}: deleted message {} of room {} (by {})",
                peer.id,
                peer.addr,
                deleted.id,
                deleted.room,
                deleted.by
            );
            json_response(
                200,
                &json!({"type": "deleted", "room": deleted.room, "id": deleted.id, "by": deleted.by}),
            )
        }
        Ok(ApiAnswer::NotFound) => error(404, "not_found", not_found),
        Ok(ApiAnswer::Moderated(moderated)) => {
            log::info!(
                "conn {} {}: {}",
                peer.id,
                peer.addr,
                crate::hub::describe(&moderated)
            );
            json_response(200, &moderated_json(&moderated))
        }
        Ok(ApiAnswer::Rooms { rooms, more }) => {
            json_response(200, &json!({ "rooms": rooms, "more": more }))
        }
        Ok(ApiAnswer::Messages {
            room,
            messages,
            more,
        }) => {
            let messages: Vec<_> = messages.iter().map(|l| message_json(l)).collect();
            json_response(
                200,
                &json!({"room": room, "messages": messages, "more": more}),
            )
        }
        Ok(ApiAnswer::RateLimited) => error(
            429,
            "rate_limited",
            format!(
                "slow down: at most {} posts a second from one address",
                ctx.config.rate_per_sec
            ),
        )
        .header("Retry-After", "1"),
        Ok(ApiAnswer::TooManyRooms(why)) => error(403, "too_many_rooms", why),
        Ok(ApiAnswer::NameTaken) => error(
            409,
            "name_taken",
            "a member connected now has that name, or one that looks like it: \
             pick another \"from\"",
        ),
        Ok(ApiAnswer::Unavailable | ApiAnswer::Accepted) | Err(_) => error(
            503,
            "unavailable",
            "the store cannot do it now; nothing was posted, try again",
        )
        .header("Retry-After", "1"),
    }
}

/// A moderation as the room was told it.
fn moderated_json(moderated: &crate::store::Moderated) -> serde_json::Value {
    use crate::store::Action;
    match &moderated.action {
        Action::Kick {
            name,
            reason,
            until,
        } => json!({
            "type": "kicked",
            "room": moderated.room,
            "name": name,
            "by": moderated.by,
            "reason": reason,
            "until": until,
        }),
        Action::Mute { name, until } => json!({
            "type": "muted",
            "room": moderated.room,
            "name": name,
            "by": moderated.by,
            "until": until,
        }),
        Action::Unmute { name } => json!({
            "type": "unmuted",
            "room": moderated.room,
            "name": name,
            "by": moderated.by,
        }),
        Action::Room { settings } => json!({
            "type": "room",
            "room": moderated.room,
            "by": moderated.by,
            "locked": settings.locked,
            "slow_secs": settings.slow_secs,
            "topic": settings.topic,
        }),
        Action::Clear { through, .. } => json!({
            "type": "cleared",
            "room": moderated.room,
            "by": moderated.by,
            "through": through,
        }),
        Action::Bar => json!({"type": "barred", "room": moderated.room}),
    }
}

/// A moderation's body: `{"name":…,"reason":…,"minutes":…}`, small.
#[derive(Debug)]
struct Moderation {
    name: String,
    reason: String,
    /// A mute's length; 0 unmutes.
    minutes: Option<u64>,
}

/// Largest body of a moderation request: a name and a reason, with room to spare.
const MAX_MODERATION_BODY: usize = 4096;

/// Checks a room settings request: the token, its body, and the change.
fn settings<S: Transport>(
    (stream, (req, rest)): (&mut S, (&Request, Vec<u8>)),
    (peer, deadline): (Peer, Instant),
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<chat::RoomChange, Response> {
    #[derive(serde::Deserialize)]
    struct Raw {
        locked: Option<bool>,
        slow_secs: Option<u64>,
        topic: Option<String>,
    }
    let raw: Raw = moderation_body(stream, (req, rest), (peer, deadline), ctx, doors)?;
    chat::valid_room_change(raw.locked, raw.slow_secs, raw.topic).map_err(|e| {
        let code = if e.code == chat::ErrorCode::MissingField {
            "missing_field"
        } else {
            "bad_request"
        };
        error(400, code, e.message)
    })
}

/// Checks a kick's or a mute's request: the token, its body, the name, the reason and
/// the minutes.
fn moderation<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    (peer, deadline): (Peer, Instant),
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<Moderation, Response> {
    #[derive(serde::Deserialize)]
    struct Raw {
        name: Option<String>,
        reason: Option<String>,
        minutes: Option<u64>,
    }
    let raw: Raw = moderation_body(stream, (req, rest), (peer, deadline), ctx, doors)?;
    let name = raw
        .name
        .ok_or_else(|| error(400, "missing_field", "it needs a \"name\""))?;
    let name = chat::valid_name(&name).map_err(|e| error(400, "bad_name", e.message))?;
    let reason = chat::valid_reason(raw.reason.unwrap_or_default())
        .map_err(|e| error(400, "bad_request", e.message))?;
    let minutes = match raw.minutes {
        Some(0) => Some(0),
        Some(n) => Some(chat::valid_minutes(n).map_err(|e| error(400, "bad_request", e.message))?),
        None => None,
    };
    Ok(Moderation {
        name,
        reason,
        minutes,
    })
}

/// Reads a moderation request's JSON body, once the token is checked (within the
/// client's budget of guesses). `curl -d` sends it as a form: it is read as JSON all
/// the same.
fn moderation_body<S: Transport, T: serde::de::DeserializeOwned>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    (peer, deadline): (Peer, Instant),
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<T, Response> {
    authorize(req, (peer, MODERATOR), ctx, doors)?;
    let content_type = media_type(req);
    if !matches!(
        content_type.as_str(),
        "application/json" | "application/x-www-form-urlencoded" | ""
    ) {
        return Err(error(
            415,
            "unsupported_media_type",
            format!(
                "{} is not taken: send application/json",
                base::escape(&content_type)
            ),
        ));
    }
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let body =
        body::read(stream, rest, req, MAX_MODERATION_BODY, deadline, wait).map_err(
            |e| match e {
                BodyError::TooLarge => error(
                    413,
                    "too_large",
                    format!("a body is at most {MAX_MODERATION_BODY} bytes"),
                ),
                BodyError::Malformed(why) => error(400, "bad_request", why),
                BodyError::Head(HeadError::Timeout { .. }) => {
                    error(408, "timeout", "the body did not arrive in time")
                }
                BodyError::Head(_) => error(400, "bad_request", "the body ended early"),
            },
        )?;
    serde_json::from_slice(&body)
        .map_err(|e| error(400, "bad_json", format!("not a valid request: {e}")))
}

/// A stored message as JSON, exactly as chat clients get it.
fn message_json(line: &ChatLine) -> serde_json::Value {
    serde_json::to_value(line).unwrap_or_default()
}

/// Longest `Idempotency-Key`: a UUID fits six times over.
const MAX_KEY_LEN: usize = 255;

/// The post's `Idempotency-Key`, if it sent one: every post with the same key in the
/// same room is posted once and answered with the same message (for 24 hours).
fn idempotency_key(req: &Request) -> Result<Option<String>, Response> {
    let bad = || {
        error(
            400,
            "bad_request",
            format!(
                "Idempotency-Key is one value of 1 to {MAX_KEY_LEN} printable ASCII characters"
            ),
        )
    };
    match req.header_values("Idempotency-Key").count() {
        0 => return Ok(None),
        1 => {}
        _ => return Err(bad()),
    }
    let key = req.header("Idempotency-Key").ok_or_else(bad)?.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// The API token's check, within the client's budget of guesses (like the password):
/// the guess is judged against each secret of `accepts` for one try, and the right
/// one is returned. Posting takes the token alone; what may also take an admin's
/// word (moderation) passes `[Secret::ApiToken, Secret::AdminPassword]` and asks the
/// session with `auth::check(…).is_admin()`.
fn authorize(
    req: &Request,
    (peer, accepts): (Peer, &'static [doors::Secret]),
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<doors::Secret, Response> {
    let configured = accepts.iter().any(|secret| match secret {
        doors::Secret::ApiToken => ctx.config.api_token.is_some(),
        doors::Secret::AdminPassword => ctx.config.admin_password.is_some(),
        doors::Secret::Password => ctx.config.password.is_some(),
    });
    if !configured {
        return Err(error(
            403,
            "forbidden",
            "posting is off: start the server with --api-token-file FILE or \
             SWITCHBOARD_API_TOKEN set, and send Authorization: Bearer TOKEN",
        ));
    }
    let Some(offered) = super::auth::bearer(req) else {
        return Err(error(
            401,
            "unauthorized",
            "send Authorization: Bearer TOKEN with the right token",
        )
        .header("WWW-Authenticate", "Bearer"));
    };
    match super::auth::judge(peer, accepts, offered, ctx, doors) {
        doors::Verdict::Right(secret) => Ok(secret),
        doors::Verdict::Locked => Err(super::auth::locked()),
        doors::Verdict::Wrong => Err(error(
            401,
            "unauthorized",
            "send Authorization: Bearer TOKEN with the right token",
        )
        .header("WWW-Authenticate", "Bearer")),
    }
}

/// What a post takes: the API token.
const POSTER: &[doors::Secret] = &[doors::Secret::ApiToken];
/// The request's media type, lowercase, without its parameters (`""` without one).
fn media_type(req: &Request) -> String {
    req.header("Content-Type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Who may moderate through the API: a script with the token, or an admin with the
/// admin password as its Bearer.
const MODERATOR: &[doors::Secret] = &[doors::Secret::ApiToken, doors::Secret::AdminPassword];

/// Checks a post: token (within the client's budget of guesses, like the
/// password), content type, body, text and sender name.
fn post<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    room: String,
    (peer, deadline): (Peer, Instant),
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<ApiCall, Response> {
    authorize(req, (peer, POSTER), ctx, doors)?;
    let key = idempotency_key(req)?;
    let content_type = media_type(req);
    let json = match content_type.as_str() {
        "application/json" => true,
        // What `curl -d` sends: the body is the text, as it is.
        "text/plain" | "application/x-www-form-urlencoded" | "" => false,
        other => {
            return Err(error(
                415,
                "unsupported_media_type",
                format!("{other} is not taken: send application/json or text/plain"),
            ));
        }
    };
    if req.has_token("Expect", "100-continue") {
        // curl waits a second for this before a large body.
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let body = body::read(stream, rest, req, MAX_BODY, deadline, wait).map_err(|e| match e {
        BodyError::TooLarge => error(
            413,
            "too_large",
            format!("a body is at most {MAX_BODY} bytes"),
        ),
        BodyError::Malformed(why) => error(400, "bad_request", why),
        BodyError::Head(HeadError::Timeout { .. }) => {
            error(408, "timeout", "the body did not arrive in time")
        }
        BodyError::Head(_) => error(400, "bad_request", "the body ended early"),
    })?;
    let Ok(body) = String::from_utf8(body) else {
        return Err(error(400, "bad_body", "the body is not UTF-8"));
    };
    let (text, from) = if json {
        #[derive(serde::Deserialize)]
        struct Post {
            text: Option<String>,
            from: Option<String>,
        }
        let post: Post = serde_json::from_str(&body)
            .map_err(|e| error(400, "bad_json", format!("not a valid post: {e}")))?;
        let text = post
            .text
            .ok_or_else(|| error(400, "missing_field", "a post needs a \"text\""))?;
        (text, post.from)
    } else {
        (body, None)
    };
    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
    if text.trim().is_empty() {
        return Err(error(400, "missing_field", "the text is empty"));
    }
    let limit = ctx.config.max_text_len;
    if text.len() > limit {
        return Err(error(
            413,
            "text_too_long",
            format!("text is {} bytes, the limit is {limit}", text.len()),
        ));
    }
    let from = match from {
        Some(name) => chat::valid_name(&name).map_err(|e| error(400, "bad_name", e.message))?,
        None => chat::API_SENDER.to_owned(),
    };
    Ok(ApiCall::Post {
        room,
        from,
        text,
        key,
        file: None,
    })
}

/// Takes a posted file: token and key as for a message, then the body, its
/// `Content-Length` bytes streamed to disk as they come: the file itself (named by
/// `?name=`, typed by `Content-Type`), or a `multipart/form-data` form with it. The
/// caption is `?text=`, or the form's `text` part.
fn post_file<S: Transport>(
    stream: &mut S,
    (req, rest): (&Request, Vec<u8>),
    (room, name): (String, Option<String>),
    peer: Peer,
    ctx: &Context,
    doors: &Sender<doors::Request>,
) -> Result<ApiCall, Response> {
    authorize(req, (peer, POSTER), ctx, doors)?;
    let key = idempotency_key(req)?;
    let content_type = req.header("Content-Type").unwrap_or("");
    let essence = media_type(req);
    let form = match essence.as_str() {
        "multipart/form-data" => {
            Some(multipart::boundary(content_type).map_err(|why| error(400, "bad_request", why))?)
        }
        other if other.starts_with("multipart/") => {
            return Err(error(
                415,
                "unsupported_media_type",
                format!(
                    "{} is not taken: send multipart/form-data (curl -F file=@cat.jpg), \
                     or the file itself as the body",
                    base::escape(other)
                ),
            ));
        }
        _ => None,
    };
    let (_, query) = req.path_and_query();
    let text = match request::query_param(query, "text") {
        None => None,
        Some(Some(text)) if text.len() <= ctx.config.max_text_len => Some(text),
        Some(Some(_)) => return Err(error(413, "text_too_long", "the caption is too long")),
        Some(None) => return Err(error(400, "bad_request", "text is not valid")),
    };
    let size = content_length(req)?;
    let body = (req, rest, size);
    let posted = match form {
        None => raw_file(stream, body, name, text, ctx)?,
        Some(boundary) => form_file(stream, body, &boundary, (name, text), ctx)?,
    };
    let size = posted.upload.len();
    let picture = posted.upload.picture_size();
    let file_id = posted.upload.finish().map_err(|e| file_error(e, ctx))?;
    Ok(ApiCall::Post {
        room,
        from: chat::API_SENDER.to_owned(),
        text: posted.text,
        key,
        file: Some(chat::FileRef {
            id: file_id,
            name: posted.name,
            mime: posted.mime,
            size,
            picture,
            expired: false,
        }),
    })
}

/// A posted file's bytes, all on disk but not yet committed, and what it is.
struct Posted {
    upload: Upload,
    name: String,
    mime: String,
    text: String,
}

/// Reads a file sent as the body itself: `size` bytes, named by the query, typed by
/// the request's `Content-Type`.
fn raw_file<S: Transport>(
    stream: &mut S,
    (req, rest, size): (&Request, Vec<u8>, u64),
    name: Option<String>,
    text: Option<String>,
    ctx: &Context,
) -> Result<Posted, Response> {
    let Some(name) = name else {
        return Err(error(400, "bad_file", "name the file: ?name=cat.jpg"));
    };
    let mime = chat::valid_mime(req.header("Content-Type").unwrap_or(""))
        .map_err(|e| error(400, "bad_file", e.message))?;
    let mut upload = ctx.files.begin(size).map_err(|e| file_error(e, ctx))?;
    go_on(stream, req);
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let mut body = Pieces::new(stream, rest, size, ctx.config.handshake_timeout, wait);
    while let Some(piece) = body.next().map_err(body_error)? {
        upload.write(piece).map_err(|e| file_error(e, ctx))?;
    }
    Ok(Posted {
        upload,
        name,
        mime,
        text: text.unwrap_or_default(),
    })
}

/// Reads a file sent in a `multipart/form-data` form of `size` bytes; the query's
/// name and caption, when given, win over the parts'.
fn form_file<S: Transport>(
    stream: &mut S,
    (req, rest, size): (&Request, Vec<u8>, u64),
    boundary: &str,
    (name, text): (Option<String>, Option<String>),
    ctx: &Context,
) -> Result<Posted, Response> {
    let most = ctx
        .files
        .max_file_size
        .saturating_add(multipart::overhead(ctx.config.max_text_len));
    if size > most {
        return Err(file_error(FileError::TooLarge, ctx));
    }
    let mut upload = ctx
        .files
        .begin_at_most(size)
        .map_err(|e| file_error(e, ctx))?;
    go_on(stream, req);
    let wait = |s: &mut S, deadline| super::wait_for_bytes(s, deadline, ctx);
    let body = Pieces::new(stream, rest, size, ctx.config.handshake_timeout, wait);
    let given = multipart::Given {
        name,
        text,
        max_text_len: ctx.config.max_text_len,
    };
    let form = multipart::read(body, boundary, &mut upload, &given).map_err(|e| match e {
        FormError::File(e) => file_error(e, ctx),
        FormError::Body(e) => body_error(e),
        FormError::Bad(code, why) => error(400, code, why),
        FormError::TextTooLong => error(413, "text_too_long", "the caption is too long"),
    })?;
    Ok(Posted {
        upload,
        name: form.name,
        mime: form.mime,
        text: form.text,
    })
}

/// The body's announced length: a file comes with one, never chunked, so that its
/// room is reserved before any byte of it is read.
fn content_length(req: &Request) -> Result<u64, Response> {
    let refused = || {
        error(
            411,
            "length_required",
            "send the file with a Content-Length",
        )
    };
    if req.has_token("Transfer-Encoding", "chunked") {
        return Err(refused());
    }
    match req
        .header("Content-Length")
        .map(|v| v.trim().parse::<u64>())
    {
        Some(Ok(size)) if req.header_values("Content-Length").count() == 1 => Ok(size),
        _ => Err(refused()),
    }
}

/// Tells a client waiting for it (curl does, a second, before a large body) to send
/// the body: everything that could refuse it before a byte is read has passed.
fn go_on<S: Transport>(stream: &mut S, req: &Request) {
    if req.has_token("Expect", "100-continue") {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}

/// The answer to a file's body that did not come whole.
fn body_error(e: BodyError) -> Response {
    match e {
        BodyError::Head(HeadError::Timeout { .. }) => {
            error(408, "timeout", "the file stopped coming")
        }
        _ => error(400, "bad_request", "the body ended early"),
    }
}

/// The answer to a file that cannot be taken.
fn file_error(e: FileError, ctx: &Context) -> Response {
    match e {
        FileError::TooLarge => error(
            413,
            "file_too_large",
            format!("a file is at most {} bytes", ctx.files.max_file_size),
        ),
        FileError::Bad(why) => error(400, "bad_file", why),
        FileError::Full => error(507, "storage_full", "there is no room for this file"),
        FileError::Unavailable => error(
            503,
            "unavailable",
            "the file could not be shared with the other servers; nothing was posted, try again",
        )
        .header("Retry-After", "1"),
        FileError::Io(e) => {
            log::warn!("files: cannot store a posted file: {e}");
            error(507, "storage_full", "the file could not be stored")
        }
    }
}
