//! Chat protocol v1: the JSON spoken on `/ws/chat`.
//!
//! This module is pure: it turns a client's text frame into a [`ClientMessage`] (or the
//! [`ChatError`] to send back), and server events into JSON. Decoding runs on the
//! connection thread, so the hub only ever sees well-formed, validated requests.

use serde::{Deserialize, Serialize};
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// Longest display name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 32;
/// Most characters a name can have in any form canonically equivalent to a valid
/// one: NFC composes at most four characters into one. Anything longer is no name,
/// and is turned away before the work of normalising or keying it.
pub(crate) const MAX_NAME_INPUT_CHARS: usize = 4 * MAX_NAME_CHARS;
/// Longest room name, in bytes (all ASCII).
pub(crate) const MAX_ROOM_LEN: usize = 64;
/// The room a chat client lands in when the URL names none.
pub(crate) const DEFAULT_ROOM: &str = "lobby";
/// Who an HTTP API post is from when it names nobody. A member may have this name
/// too: the post is marked `via: api`, and a member must not be able to stop every
/// script that posts without a `from`.
pub(crate) const API_SENDER: &str = "api";
/// The subprotocol this module speaks.
pub(crate) const SUBPROTOCOL: &str = "chat.v1";

/// A request from a chat client, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// Say something to the current room; `cid`, the client's own id for it, makes a
    /// retry safe: a message with a `cid` already used in the room is not stored again.
    /// With a `file`, the text is its caption (it may be empty), and the file is on
    /// disk already: the connection thread took its bytes.
    Message {
        text: String,
        cid: Option<String>,
        file: Option<FileRef>,
    },
    /// A file's bytes follow as binary messages: the connection thread takes them
    /// (this never reaches the hub), then sends a [`ClientMessage::Message`] with the file.
    File(FileAnnounce),
    /// Say something to one user, wherever they are.
    Direct { to: String, text: String },
    /// Change display name.
    Rename { name: String },
    /// Leave the current room for another.
    Join { room: String },
    /// Ask for the current room's member list.
    Members,
    /// Ask which chat rooms have people in them.
    Rooms,
    /// Ask for older messages of the current room (scroll-back).
    History { before: Option<u64>, limit: usize },
    /// Delete message `id` of the current room: one's own, or any as an admin.
    Delete { id: u64 },
    /// Close member `name` of the current room with `reason` and keep it out of the
    /// room for a while (admins).
    Kick { name: String, reason: String },
    /// Let member `name` of the current room read but not post for `minutes` (admins).
    Mute { name: String, minutes: u64 },
    /// Let member `name` of the current room post again (admins).
    Unmute { name: String },
    /// Change the current room's settings: what is `Some` changes (admins).
    Room(RoomChange),
    /// Empty the current room's history (admins).
    Clear,
}

/// A change to a room's settings: `None` leaves that one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoomChange {
    pub locked: Option<bool>,
    pub slow_secs: Option<u64>,
    pub topic: Option<String>,
}

/// A room's settings, as every `welcome` and `room` event say them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoomSettings {
    /// Only admins (and the API token) may post.
    #[serde(default)]
    pub locked: bool,
    /// Each member may post once per this many seconds; 0: as often as the rate limit
    /// allows.
    #[serde(default)]
    pub slow_secs: u64,
    /// Shown to everyone; may be empty.
    #[serde(default)]
    pub topic: String,
}

impl RoomSettings {
    /// These settings with `change` made.
    pub(crate) fn with(&self, change: RoomChange) -> RoomSettings {
        RoomSettings {
            locked: change.locked.unwrap_or(self.locked),
            slow_secs: change.slow_secs.unwrap_or(self.slow_secs),
            topic: change.topic.unwrap_or_else(|| self.topic.clone()),
        }
    }
}

/// The longest slow mode, in seconds: an hour between posts.
pub(crate) const MAX_SLOW_SECS: u64 = 3600;

/// The longest topic, in characters.
pub(crate) const MAX_TOPIC_CHARS: usize = 200;

/// Checks a change of room settings: a slow mode of 0 to [`MAX_SLOW_SECS`], a topic of
/// at most [`MAX_TOPIC_CHARS`] characters with nothing invisible (empty clears it); at
/// least one of them, or `locked`.
pub(crate) fn valid_room_change(
    locked: Option<bool>,
    slow_secs: Option<u64>,
    topic: Option<String>,
) -> Result<RoomChange, ChatError> {
    if locked.is_none() && slow_secs.is_none() && topic.is_none() {
        return Err(ChatError::new(
            ErrorCode::MissingField,
            "room needs \"locked\", \"slow_secs\" or \"topic\"",
        ));
    }
    if slow_secs.is_some_and(|s| s > MAX_SLOW_SECS) {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("slow_secs is 0 to {MAX_SLOW_SECS}"),
        ));
    }
    let topic = topic
        .map(|topic| valid_line(topic, MAX_TOPIC_CHARS, "a topic"))
        .transpose()?;
    Ok(RoomChange {
        locked,
        slow_secs,
        topic,
    })
}

/// The longest mute, in minutes: a week. A longer one is `bad_request`.
pub(crate) const MAX_MUTE_MINUTES: u64 = 7 * 24 * 60;

/// A mute's length: 1 to [`MAX_MUTE_MINUTES`] minutes.
pub(crate) fn valid_minutes(minutes: u64) -> Result<u64, ChatError> {
    if (1..=MAX_MUTE_MINUTES).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("minutes is 1 to {MAX_MUTE_MINUTES}"),
        ))
    }
}

/// The longest reason a kick may give, in characters: a line a person reads.
pub(crate) const MAX_REASON_CHARS: usize = 200;

/// The longest reason a Close frame carries, in bytes (RFC 6455 §5.5: a control
/// frame's payload is at most 125 bytes, two of them the code).
pub(crate) const MAX_CLOSE_REASON: usize = 123;

/// `reason` cut to fit a Close frame, at a character boundary.
pub(crate) fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Messages a `history` request gets when it names no `limit`.
pub(crate) const DEFAULT_PAGE: usize = 50;

/// Most messages one page of history holds, in the chat and in the HTTP API alike.
pub(crate) const MAX_PAGE: usize = 200;

/// The largest message id a client may name: ids are stored as signed 64-bit
/// integers. A larger one is `bad_request` (`400`), never a store error.
pub(crate) const MAX_ID: u64 = i64::MAX as u64;

/// The machine-readable part of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    BadJson,
    UnknownType,
    MissingField,
    NoSuchUser,
    TextTooLong,
    BadName,
    NameTaken,
    BadRoom,
    RateLimited,
    /// Binary data with no file announced, more bytes than announced, or a file
    /// announcement that is not valid (a bad name, type or size).
    BadFile,
    /// A file over the largest file size: refused before any byte.
    FileTooLarge,
    /// No room is left for the file.
    StorageFull,
    /// A number out of range, or another request that can never be served.
    BadRequest,
    /// The server keeps as many rooms as it may: a new one cannot be started.
    TooManyRooms,
    /// The store could not keep the message (or read the history): nothing was sent.
    Unavailable,
    /// The store did not answer whether it kept the message: it reaches the room
    /// once the store answers again (if it kept nothing, then), so it must not be sent
    /// again.
    Unconfirmed,
    /// The request is not the member's to make: deleting someone else's message.
    Forbidden,
    /// No such message in the room (or it is deleted already), or no such member.
    NotFound,
    /// The member was kicked from the room and may not come back before `until`.
    Kicked,
    /// The member is muted in the room: it reads, but may not post before `until`.
    Muted,
    /// The room is locked: only admins (and the API) post.
    Locked,
    /// The room is in slow mode: the member may post again in `retry_after` seconds.
    SlowMode,
}

impl ErrorCode {
    /// Every code, for the error table of docs/PROTOCOL.md (`src/doc_tables.rs`
    /// checks the table against this list, and this list against the enum).
    #[cfg(test)]
    pub(crate) const ALL: [ErrorCode; 22] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::NoSuchUser,
        ErrorCode::TextTooLong,
        ErrorCode::BadName,
        ErrorCode::NameTaken,
        ErrorCode::BadRoom,
        ErrorCode::RateLimited,
        ErrorCode::BadFile,
        ErrorCode::FileTooLarge,
        ErrorCode::StorageFull,
        ErrorCode::BadRequest,
        ErrorCode::TooManyRooms,
        ErrorCode::Unavailable,
        ErrorCode::Unconfirmed,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Kicked,
        ErrorCode::Muted,
        ErrorCode::Locked,
        ErrorCode::SlowMode,
    ];
}

/// An error to report to the client; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatError {
    pub code: ErrorCode,
    pub message: String,
    /// Until when (ms since the epoch) it holds, for a refusal that ends: `kicked`.
    pub until: Option<u64>,
    /// In how many seconds a retry may work: `slow_mode`.
    pub retry_after: Option<u64>,
}

impl ChatError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            until: None,
            retry_after: None,
        }
    }

    /// The same error, saying in how many seconds a retry may work.
    pub(crate) fn retry_after(self, secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    /// The same error, saying until when it holds.
    pub(crate) fn until(self, until: u64) -> Self {
        Self {
            until: Some(until),
            ..self
        }
    }

    /// The `error` message as JSON text.
    pub(crate) fn to_json(&self) -> String {
        encode(&ServerMessage::Error {
            code: self.code,
            message: &self.message,
            until: self.until,
            retry_after: self.retry_after,
        })
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// The wire shape of a client request, before validation. Every field is optional so
/// that a missing one becomes `missing_field`, not `bad_json`.
#[derive(Deserialize)]
struct RawRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    to: Option<String>,
    name: Option<String>,
    room: Option<String>,
    before: Option<u64>,
    limit: Option<u64>,
    cid: Option<String>,
    mime: Option<String>,
    size: Option<u64>,
    id: Option<u64>,
    reason: Option<String>,
    minutes: Option<u64>,
    locked: Option<bool>,
    slow_secs: Option<u64>,
    topic: Option<String>,
}

/// The longest `cid` a client may give a message.
pub(crate) const MAX_CID_LEN: usize = 64;

/// Decodes one text frame from a chat client.
///
/// A frame that does not start with `{` is plain text to the current room, so that
/// people typing into `websocat` or `wscat` can just chat. Line-oriented clients send
/// the line with its end (`websocat` does, unless told otherwise), so one trailing
/// `\n` or `\r\n` is not part of the text.
pub(crate) fn decode(frame: &str, max_text_len: usize) -> Result<ClientMessage, ChatError> {
    if !frame.trim_start().starts_with('{') {
        let line = match frame.strip_suffix('\n') {
            Some(line) => line.strip_suffix('\r').unwrap_or(line),
            None => frame,
        };
        return Ok(ClientMessage::Message {
            text: valid_text(line.to_owned(), max_text_len)?,
            cid: None,
            file: None,
        });
    }
    let raw: RawRequest = serde_json::from_str(frame)
        .map_err(|e| ChatError::new(ErrorCode::BadJson, format!("not a valid request: {e}")))?;
    let kind = raw
        .kind
        .ok_or_else(|| ChatError::new(ErrorCode::MissingField, "missing field \"type\""))?;
    let field = |value: Option<String>, name: &str| {
        value.ok_or_else(|| {
            ChatError::new(
                ErrorCode::MissingField,
                format!("{kind} needs a \"{name}\" field"),
            )
        })
    };
    match kind.as_str() {
        "message" => Ok(ClientMessage::Message {
            text: valid_text(field(raw.text, "text")?, max_text_len)?,
            cid: raw.cid.map(valid_cid).transpose()?,
            file: None,
        }),
        "file" => {
            let name = valid_file_name(&field(raw.name, "name")?)?;
            let mime = valid_mime(&field(raw.mime, "mime")?)?;
            let size = raw.size.ok_or_else(|| {
                ChatError::new(ErrorCode::MissingField, "file needs a \"size\" field")
            })?;
            let text = raw.text.unwrap_or_default();
            if text.len() > max_text_len {
                return Err(ChatError::new(
                    ErrorCode::TextTooLong,
                    format!(
                        "text is {} bytes, the limit is {max_len}",
                        text.len(),
                        max_len = max_text_len
                    ),
                ));
            }
            Ok(ClientMessage::File(FileAnnounce {
                name,
                mime,
                size,
                text,
                cid: raw.cid.map(valid_cid).transpose()?,
            }))
        }
        "direct" => {
            let to = field(raw.to, "to")?;
            let text = valid_text(field(raw.text, "text")?, max_text_len)?;
            Ok(ClientMessage::Direct { to, text })
        }
        "rename" => Ok(ClientMessage::Rename {
            name: valid_name(&field(raw.name, "name")?)?,
        }),
        "join" => Ok(ClientMessage::Join {
            room: valid_room(&field(raw.room, "room")?)?,
        }),
        "members" => Ok(ClientMessage::Members),
        "rooms" => Ok(ClientMessage::Rooms),
        // The same bounds as the HTTP API's, with the same answer past them.
        "history" => {
            if raw.before.is_some_and(|before| before > MAX_ID) {
                return Err(ChatError::new(
                    ErrorCode::BadRequest,
                    format!("before is at most {MAX_ID}"),
                ));
            }
            let limit = match raw.limit {
                None => DEFAULT_PAGE,
                Some(n) if (1..=MAX_PAGE as u64).contains(&n) => n as usize,
                Some(_) => {
                    return Err(ChatError::new(
                        ErrorCode::BadRequest,
                        format!("limit is 1 to {MAX_PAGE}"),
                    ));
                }
            };
            Ok(ClientMessage::History {
                before: raw.before,
                limit,
            })
        }
        "delete" => match raw.id {
            None => Err(ChatError::new(
                ErrorCode::MissingField,
                "delete needs an \"id\" field",
            )),
            Some(id) if id > MAX_ID => Err(ChatError::new(
                ErrorCode::BadRequest,
                format!("id is at most {MAX_ID}"),
            )),
            Some(id) => Ok(ClientMessage::Delete { id }),
        },
        "kick" => Ok(ClientMessage::Kick {
            name: valid_name(&field(raw.name, "name")?)?,
            reason: valid_reason(raw.reason.unwrap_or_default())?,
        }),
        "mute" => Ok(ClientMessage::Mute {
            name: valid_name(&field(raw.name, "name")?)?,
            minutes: valid_minutes(raw.minutes.ok_or_else(|| {
                ChatError::new(ErrorCode::MissingField, "mute needs a \"minutes\" field")
            })?)?,
        }),
        "room" => Ok(ClientMessage::Room(valid_room_change(
            raw.locked,
            raw.slow_secs,
            raw.topic,
        )?)),
        "clear" => Ok(ClientMessage::Clear),
        "unmute" => Ok(ClientMessage::Unmute {
            name: valid_name(&field(raw.name, "name")?)?,
        }),
        other => Err(ChatError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {:?}", truncate(other, 64)),
        )),
    }
}

/// Longest file name, in bytes.
pub(crate) const MAX_FILE_NAME: usize = 255;

/// A file's name as its sender gave it: 1 to 255 bytes, no path (`/`, `\`), no control
/// characters, not `.` or `..`. It is shown to people and offered as the name to save
/// the file under, never used as a path on the server.
pub(crate) fn valid_file_name(name: &str) -> Result<String, ChatError> {
    let bad = name.is_empty()
        || name.len() > MAX_FILE_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if bad {
        return Err(ChatError::new(
            ErrorCode::BadFile,
            format!(
                "a file name is 1 to {MAX_FILE_NAME} bytes, without / \\ or control characters"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// A media type as `type/subtype` (parameters dropped), lowercase; what a browser
/// would not understand is `application/octet-stream`. It only labels the file:
/// how it is served is decided by its bytes.
pub(crate) fn valid_mime(mime: &str) -> Result<String, ChatError> {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => Ok(essence),
        _ if essence.is_empty() => Ok("application/octet-stream".to_owned()),
        _ => Err(ChatError::new(
            ErrorCode::BadFile,
            "mime is a media type such as image/png",
        )),
    }
}

/// A message's `cid`: 1–64 characters from `A-Z a-z 0-9 . _ : -`.
fn valid_cid(cid: String) -> Result<String, ChatError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || ".:_-".contains(c);
    if cid.is_empty() || cid.len() > MAX_CID_LEN || !cid.chars().all(fine) {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("cid must be 1 to {MAX_CID_LEN} characters from A-Z a-z 0-9 . _ : -"),
        ));
    }
    Ok(cid)
}

fn valid_text(text: String, max_len: usize) -> Result<String, ChatError> {
    if text.len() > max_len {
        return Err(ChatError::new(
            ErrorCode::TextTooLong,
            format!("text is {} bytes, the limit is {max_len}", text.len()),
        ));
    }
    if text.trim().is_empty() {
        return Err(ChatError::new(ErrorCode::MissingField, "text is empty"));
    }
    Ok(text)
}

/// A moderator's reason: up to [`MAX_REASON_CHARS`] characters, trimmed, nothing
/// invisible (it is shown to the room and in the kicked member's Close frame).
pub(crate) fn valid_reason(reason: String) -> Result<String, ChatError> {
    valid_line(reason, MAX_REASON_CHARS, "a reason")
}

/// One line a person reads (a reason, a topic): up to `max` characters, trimmed, in
/// NFC, nothing invisible; `what` names it in the error.
fn valid_line(line: String, max: usize, what: &str) -> Result<String, ChatError> {
    let line = line.trim();
    if line.chars().nth(max).is_some() {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("{what} has at most {max} characters"),
        ));
    }
    if line.chars().any(crate::escape::needs_escape) {
        return Err(ChatError::new(
            ErrorCode::BadRequest,
            format!("{what} has no control, formatting or separator characters"),
        ));
    }
    Ok(line.nfc().collect())
}

/// Checks a display name (1–32 characters, nothing invisible, trimmed) and
/// returns it trimmed and in NFC, the form every welcome and event carries: `e` with a
/// combining acute and a precomposed `é` are one name.
///
/// A name is read by people, so a character that shows nothing or rearranges what
/// follows it is refused: controls (Cc), formatting characters such as zero-width
/// spaces and joiners, bidi overrides and isolates or the BOM (Cf), and line and
/// paragraph separators (Zl, Zp). `\u{202e}ecila` would show as "alice".
pub(crate) fn valid_name(name: &str) -> Result<String, ChatError> {
    let name = name.trim();
    let too_long = name.chars().nth(MAX_NAME_INPUT_CHARS).is_some();
    let name: String = if too_long {
        String::new()
    } else {
        name.nfc().collect()
    };
    let chars = name.chars().count();
    if too_long || chars == 0 || chars > MAX_NAME_CHARS {
        return Err(ChatError::new(
            ErrorCode::BadName,
            format!("a name has 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|&c| crate::escape::needs_escape(c)) {
        return Err(ChatError::new(
            ErrorCode::BadName,
            format!(
                "a name has no control, formatting or separator characters (U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(name)
}

/// The key under which a name is unique, on one node and across a cluster: two names
/// a person could take for each other share it. It is the UTS #39 confusable skeleton
/// of the lower-cased name, lower-cased again: "Alice", "alice", "аlice" (Cyrillic а)
/// and "ａlice" (fullwidth) are one name, and so are "bob" and "b0b".
///
/// Lower-casing comes first because the skeleton is case-sensitive ("I" looks like
/// "l", "i" does not); the skeleton's own output may hold capitals ("0" → "O").
pub(crate) fn name_key(name: &str) -> String {
    let lower = name.to_lowercase();
    unicode_security::skeleton(&lower)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Checks a room name (1–64 of `[A-Za-z0-9_.-]`).
pub(crate) fn valid_room(room: &str) -> Result<String, ChatError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(room.to_owned())
    } else {
        Err(ChatError::new(
            ErrorCode::BadRoom,
            format!("a room name has 1 to {MAX_ROOM_LEN} of A-Z a-z 0-9 _ . -"),
        ))
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The limits a client must respect, as every `welcome` and `GET /info` say them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Limits {
    /// Longest chat text, in bytes of UTF-8 (`--max-text-len`).
    pub max_text_len: usize,
    /// Largest message or frame on any endpoint, in bytes (`--max-message-size`).
    pub max_message_size: usize,
    /// Largest shared file, in bytes (`--max-file-size`): a page refuses a bigger one
    /// before sending a byte.
    pub max_file_size: u64,
}

/// Where a reconnecting client left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Since {
    pub id: u64,
    pub epoch: String,
}

/// Why a member left, as shown in the `leave` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaveReason {
    /// The client closed the connection.
    Closed,
    /// The client stopped answering pings.
    Timeout,
    /// The client broke the protocol or the connection failed.
    Error,
    /// The server is shutting down.
    Shutdown,
    /// The client moved to another room (`join`).
    Switched,
    /// The client did not read fast enough and was evicted (Close 1008).
    SlowConsumer,
    /// A moderator kicked the member (Close 4001).
    Kicked,
}

impl LeaveReason {
    /// The `reason` of the `leave` event (docs/PROTOCOL.md).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Error => "error",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::Switched => "switched",
            LeaveReason::SlowConsumer => "slow_consumer",
            LeaveReason::Kicked => "kicked",
        }
    }
}

/// One chat message as stored in history and sent to a room: a `message` event. A
/// deleted one is a tombstone: its id and time stay, so that histories keep whole
/// sequences, and nothing else of it is kept or shown
/// (`{"type":"message","id":N,"room":…,"deleted":true,"ts":…}`).
#[derive(Debug, Clone)]
pub(crate) struct ChatLine {
    pub id: u64,
    pub room: String,
    pub from: String,
    pub text: String,
    pub ts: u64,
    /// How it was posted, when not from a chat client: `api`.
    pub via: Option<&'static str>,
    /// The file it shares, if it shares one.
    pub file: Option<FileRef>,
    /// Deleted: `from`, `text`, `via` and `file` are empty and never shown.
    pub deleted: bool,
}

impl ChatLine {
    /// The tombstone of message `id` of `room`, sent at `ts`.
    pub(crate) fn tombstone(id: u64, room: String, ts: u64) -> ChatLine {
        ChatLine {
            id,
            room,
            from: String::new(),
            text: String::new(),
            ts,
            via: None,
            file: None,
            deleted: true,
        }
    }
}

impl Serialize for ChatLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut line = serializer.serialize_struct("message", 8)?;
        line.serialize_field("type", "message")?;
        line.serialize_field("id", &self.id)?;
        line.serialize_field("room", &self.room)?;
        if self.deleted {
            line.serialize_field("deleted", &true)?;
            line.serialize_field("ts", &self.ts)?;
            return line.end();
        }
        line.serialize_field("from", &self.from)?;
        line.serialize_field("text", &self.text)?;
        line.serialize_field("ts", &self.ts)?;
        if let Some(via) = self.via {
            line.serialize_field("via", via)?;
        }
        if let Some(file) = &self.file {
            line.serialize_field("file", file)?;
        }
        line.end()
    }
}

/// A `file` announcement: what is coming, before its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileAnnounce {
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// The caption; may be empty.
    pub text: String,
    pub cid: Option<String>,
}

/// A file a message shares: `"file":{"id","name","mime","size","url"}`, with
/// `"width"` and `"height"` when it is a picture, and `"expired":true` once its bytes
/// are gone (the message stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRef {
    /// Random, 128 bits, as 32 hex digits: the file's address, never guessable.
    pub id: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Width and height in pixels, when the bytes are a picture served inline
    /// ([`crate::files::picture_size`]): a page lays it out before it loads.
    pub picture: Option<(u32, u32)>,
    pub expired: bool,
}

impl FileRef {
    /// Where it is served: `/files/{id}/{name}`, the name percent-encoded.
    pub(crate) fn url(&self) -> String {
        let mut url = format!("/files/{}/", self.id);
        for b in self.name.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url
    }
}

/// A file as a store keeps it beside its message (Redis, in one field).
#[derive(Serialize, Deserialize)]
struct StoredFile {
    id: String,
    name: String,
    mime: String,
    size: u64,
    // Absent in what was stored before pictures had a size.
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    expired: bool,
}

impl FileRef {
    /// The file as one JSON field, for a store.
    pub(crate) fn to_stored(&self) -> String {
        let mut file = serde_json::json!({"id": self.id, "name": self.name, "mime": self.mime, "size": self.size});
        if let Some((width, height)) = self.picture {
            file["width"] = width.into();
            file["height"] = height.into();
        }
        if self.expired {
            file["expired"] = true.into();
        }
        file.to_string()
    }

    /// A file from [`FileRef::to_stored`]'s field; `None` for an empty or broken one.
    pub(crate) fn from_stored(field: &str) -> Option<FileRef> {
        let StoredFile {
            id,
            name,
            mime,
            size,
            width,
            height,
            expired,
        } = serde_json::from_str(field).ok()?;
        Some(FileRef {
            id,
            name,
            mime,
            size,
            picture: width.zip(height),
            expired,
        })
    }
}

impl Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut file = serializer.serialize_struct("file", 8)?;
        file.serialize_field("id", &self.id)?;
        file.serialize_field("name", &self.name)?;
        file.serialize_field("mime", &self.mime)?;
        file.serialize_field("size", &self.size)?;
        file.serialize_field("url", &self.url())?;
        if let Some((width, height)) = self.picture {
            file.serialize_field("width", &width)?;
            file.serialize_field("height", &height)?;
        } else {
            file.skip_field("width")?;
            file.skip_field("height")?;
        }
        if self.expired {
            file.serialize_field("expired", &true)?;
        } else {
            file.skip_field("expired")?;
        }
        file.end()
    }
}

/// One entry of a `rooms` answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct RoomInfo<'a> {
    pub name: &'a str,
    pub members: usize,
}

/// `"wire":{"id":N,"key":"…"}`: `GET /ws/wire/{id}?key=…` streams the connection's
/// traffic.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct WireRef<'a> {
    pub id: u64,
    pub key: &'a str,
}

/// What a chat client may do, as its `welcome` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Everyone who is not an admin.
    Member,
    /// Signed in with the admin password.
    Admin,
}

/// Everything the server sends to a chat client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage<'a> {
    Welcome {
        name: &'a str,
        room: &'a str,
        /// An admin's connection or a member's.
        role: Role,
        members: Vec<&'a str>,
        history: Vec<&'a ChatLine>,
        /// Names the store the ids belong to.
        epoch: &'a str,
        /// The room's newest id.
        last_id: u64,
        /// `history` is exactly what the client missed since `?since=`.
        resumed: bool,
        /// Where this connection's own traffic can be watched.
        #[serde(skip_serializing_if = "Option::is_none")]
        wire: Option<WireRef<'a>>,
        /// What this server accepts, so that a client never hard-codes it.
        limits: Limits,
        /// The room's `topic`, and whether it is `locked` or in slow mode.
        #[serde(flatten)]
        settings: RoomSettings,
    },
    History {
        room: &'a str,
        messages: Vec<&'a ChatLine>,
        more: bool,
    },
    Join {
        room: &'a str,
        name: &'a str,
        ts: u64,
    },
    Leave {
        room: &'a str,
        name: &'a str,
        reason: &'a str,
        ts: u64,
    },
    Rename {
        room: &'a str,
        from: &'a str,
        to: &'a str,
        ts: u64,
    },
    Direct {
        from: &'a str,
        to: &'a str,
        text: &'a str,
        ts: u64,
    },
    Members {
        room: &'a str,
        members: Vec<&'a str>,
    },
    Rooms {
        rooms: Vec<RoomInfo<'a>>,
    },
    /// Message `id` of `room` was deleted, by `by`.
    Deleted {
        room: &'a str,
        id: u64,
        by: &'a str,
    },
    /// Member `name` was kicked from `room` by `by`, and may not come back before
    /// `until` (ms since the epoch).
    Kicked {
        room: &'a str,
        name: &'a str,
        by: &'a str,
        reason: &'a str,
        until: u64,
    },
    /// To the member alone: it is muted in `room` until `until` (ms since the
    /// epoch), by `by`.
    Muted {
        room: &'a str,
        name: &'a str,
        by: &'a str,
        until: u64,
    },
    /// To the member alone: it may post in `room` again.
    Unmuted {
        room: &'a str,
        name: &'a str,
        by: &'a str,
    },
    /// The history of `room` was emptied by `by`: every message up to `through`.
    Cleared {
        room: &'a str,
        by: &'a str,
        through: u64,
    },
    /// The settings of `room` changed, by `by`: all of them, as they are now.
    Room {
        room: &'a str,
        by: &'a str,
        #[serde(flatten)]
        settings: &'a RoomSettings,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

/// Encodes a server message (a [`ServerMessage`] or a [`ChatLine`]) as JSON text.
pub(crate) fn encode(msg: &impl Serialize) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no
    // floats, no custom Serialize impls that error.
    serde_json::to_string(msg).unwrap_or_else(|e| {
        log::error!("cannot encode chat message: {e}");
        String::from(r#"{"type":"error","code":"bad_json","message":"internal error"}"#)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_message() {
        assert_eq!(
            decode("hello there", 4096),
            Ok(ClientMessage::Message {
                text: "hello there".into(),
                cid: None,
                file: None,
            })
        );
    }

    #[test]
    fn a_message_may_carry_a_cid_of_a_few_safe_characters() {
        let cid = |frame: &str| match decode(frame, 4096) {
            Ok(ClientMessage::Message { cid, .. }) => Ok(cid),
            Err(e) => Err(e.code),
            other => panic!("{other:?}"),
        };
        assert_eq!(cid(r#"{"type":"message","text":"hi"}"#), Ok(None));
        assert_eq!(
            cid(r#"{"type":"message","text":"hi","cid":"a1-b2_c3.d4:e5"}"#),
            Ok(Some("a1-b2_c3.d4:e5".into()))
        );
        for bad in ["", "with space", "é", &"x".repeat(MAX_CID_LEN + 1)] {
            let frame = serde_json::json!({"type": "message", "text": "hi", "cid": bad});
            assert_eq!(
                cid(&frame.to_string()),
                Err(ErrorCode::BadRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plain_text_loses_one_line_end_only() {
        let text = |s: &str| match decode(s, 4096) {
            Ok(ClientMessage::Message { text, .. }) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(text("hi\n"), "hi");
        assert_eq!(text("hi\r\n"), "hi");
        assert_eq!(text("two\nlines\n\n"), "two\nlines\n");
        assert_eq!(text("hi\r"), "hi\r", "a lone CR is not a line end");
        assert_eq!(
            decode("\n", 4096).unwrap_err().code,
            ErrorCode::MissingField,
            "an empty line is an empty text"
        );
    }

    #[test]
    fn json_message_decodes() {
        assert_eq!(
            decode(r#"{"type":"direct","to":"bob","text":"psst"}"#, 4096),
            Ok(ClientMessage::Direct {
                to: "bob".into(),
                text: "psst".into()
            })
        );
        assert_eq!(
            decode(r#"{"type":"members"}"#, 4096),
            Ok(ClientMessage::Members)
        );
        assert_eq!(
            decode(r#"{"type":"rooms"}"#, 4096),
            Ok(ClientMessage::Rooms)
        );
    }

    #[test]
    fn errors_have_their_codes() {
        let code = |s: &str| decode(s, 10).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"text":"x"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"message"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"message","text":5}"#), ErrorCode::BadJson);
        assert_eq!(
            code(r#"{"type":"message","text":"01234567890"}"#),
            ErrorCode::TextTooLong
        );
        assert_eq!(
            code(r#"{"type":"rename","name":"a\u0007b"}"#),
            ErrorCode::BadName
        );
        assert_eq!(
            code(r#"{"type":"join","room":"no spaces"}"#),
            ErrorCode::BadRoom
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name("  alice "), Ok("alice".into()));
        assert!(valid_name("   ").is_err());
        assert!(valid_name(&"é".repeat(32)).is_ok());
        assert!(valid_name(&"é".repeat(33)).is_err());
        assert_eq!(
            valid_name(&"a".repeat(1 << 20)).unwrap_err().code,
            ErrorCode::BadName
        );
    }

    #[test]
    fn names_with_invisible_or_reordering_characters_are_bad() {
        for name in [
            "a\u{200b}b",    // zero-width space
            "\u{200b}",      // nothing but one
            "a\u{200d}b",    // zero-width joiner
            "\u{202e}ecila", // right-to-left override: shows as "alice"
            "a\u{2066}b",    // left-to-right isolate
            "\u{feff}bob",   // byte order mark
            "a\u{0007}b",    // control
            "a\u{0085}b",    // next line, a C1 control
            "a\u{2028}b",    // line separator
            "a\u{2029}b",    // paragraph separator
        ] {
            let error = valid_name(name).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadName, "{name:?}");
        }
        assert_eq!(
            valid_name("\u{05d0}\u{05d1}"),
            Ok("\u{05d0}\u{05d1}".into()),
            "RTL letters are fine"
        );
        assert_eq!(valid_name("a b"), Ok("a b".into()));
    }

    #[test]
    fn names_come_out_in_nfc() {
        assert_eq!(valid_name(" e\u{301} "), Ok("\u{e9}".into()));
        assert_eq!(
            valid_name(&"e\u{301}".repeat(32)),
            Ok("\u{e9}".repeat(32)),
            "counted once composed"
        );
    }

    #[test]
    fn look_alike_names_share_a_key() {
        let alice = name_key("alice");
        for name in [
            "Alice",
            "ALICE",
            "\u{430}lice",         // Cyrillic а
            "\u{ff41}lice",        // fullwidth a
            "\u{ff21}\u{ff2c}ICE", // fullwidth A L
            "alice\u{fe0f}",       // a variation selector shows nothing
        ] {
            assert_eq!(name_key(name), alice, "{name:?}");
        }
        assert_eq!(name_key("\u{e9}"), name_key("e\u{301}"));
        assert_eq!(name_key("b0b"), name_key("BOB"));
        assert_ne!(name_key("alice"), name_key("alina"));
        assert_ne!(name_key("bob"), name_key("rob"));
    }

    #[test]
    fn rooms_use_a_small_alphabet() {
        assert!(valid_room("rust-lang_2.0").is_ok());
        assert!(valid_room("").is_err());
        assert!(valid_room(&"a".repeat(65)).is_err());
        assert!(valid_room("café").is_err());
    }

    #[test]
    fn welcome_history_items_are_message_objects() {
        let line = ChatLine {
            id: 1,
            room: "lobby".into(),
            from: "a".into(),
            text: "hi".into(),
            ts: 5,
            via: None,
            file: None,
            deleted: false,
        };
        let json = encode(&ServerMessage::Welcome {
            name: "a",
            room: "lobby",
            role: Role::Member,
            members: vec!["a"],
            history: vec![&line],
            epoch: "e1",
            last_id: 1,
            resumed: false,
            wire: None,
            limits: Limits {
                max_text_len: 4096,
                max_message_size: 1 << 20,
                max_file_size: 100 << 20,
            },
            settings: RoomSettings::default(),
        });
        assert_eq!(
            json,
            r#"{"type":"welcome","name":"a","room":"lobby","role":"member","members":["a"],"history":[{"type":"message","id":1,"room":"lobby","from":"a","text":"hi","ts":5}],"epoch":"e1","last_id":1,"resumed":false,"limits":{"max_text_len":4096,"max_message_size":1048576,"max_file_size":104857600},"locked":false,"slow_secs":0,"topic":""}"#
        );
        assert_eq!(
            encode(&line),
            r#"{"type":"message","id":1,"room":"lobby","from":"a","text":"hi","ts":5}"#
        );
        assert_eq!(
            encode(&ChatLine::tombstone(1, "lobby".into(), 5)),
            r#"{"type":"message","id":1,"room":"lobby","deleted":true,"ts":5}"#,
            "a tombstone says nothing of who or what"
        );
    }

    #[test]
    fn a_kick_names_a_member_and_a_mute_its_minutes() {
        let code = |s: &str| decode(s, 10).map_err(|e| e.code);
        assert_eq!(
            code(r#"{"type":"kick","name":"ann","reason":" spam "}"#),
            Ok(ClientMessage::Kick {
                name: "ann".into(),
                reason: "spam".into()
            })
        );
        assert_eq!(code(r#"{"type":"kick"}"#), Err(ErrorCode::MissingField));
        let long = format!(
            r#"{{"type":"kick","name":"a","reason":"{}"}}"#,
            "é".repeat(201)
        );
        assert_eq!(code(&long), Err(ErrorCode::BadRequest));
        assert_eq!(
            code(r#"{"type":"mute","name":"ann","minutes":5}"#),
            Ok(ClientMessage::Mute {
                name: "ann".into(),
                minutes: 5
            })
        );
        for minutes in [0, MAX_MUTE_MINUTES + 1] {
            let frame = format!(r#"{{"type":"mute","name":"ann","minutes":{minutes}}}"#);
            assert_eq!(code(&frame), Err(ErrorCode::BadRequest));
        }
        assert_eq!(
            code(r#"{"type":"unmute","name":"ann"}"#),
            Ok(ClientMessage::Unmute { name: "ann".into() })
        );
    }

    #[test]
    fn a_close_reason_is_cut_at_a_character_boundary() {
        assert_eq!(close_reason("short"), "short");
        let long = format!("{}é", "x".repeat(122));
        assert_eq!(close_reason(&long), "x".repeat(122));
        assert_eq!(close_reason(&"é".repeat(100)).len(), 122);
    }

    #[test]
    fn a_delete_names_an_id() {
        let code = |s: &str| decode(s, 10).map_err(|e| e.code);
        assert_eq!(
            code(r#"{"type":"delete","id":7}"#),
            Ok(ClientMessage::Delete { id: 7 })
        );
        assert_eq!(code(r#"{"type":"delete"}"#), Err(ErrorCode::MissingField));
        assert_eq!(
            code(r#"{"type":"delete","id":-1}"#),
            Err(ErrorCode::BadJson)
        );
        assert_eq!(
            code(&format!(r#"{{"type":"delete","id":{}}}"#, MAX_ID + 1)),
            Err(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn a_files_picture_size_is_stored_and_old_stored_files_still_read() {
        let file = FileRef {
            id: "0".repeat(32),
            name: "a.png".into(),
            mime: "image/png".into(),
            size: 73,
            picture: Some((3, 2)),
            expired: false,
        };
        assert_eq!(FileRef::from_stored(&file.to_stored()), Some(file.clone()));
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!((&json["width"], &json["height"]), (&3.into(), &2.into()));
        let old = r#"{"id":"00000000000000000000000000000000","name":"a.png","mime":"image/png","size":73}"#;
        let read = FileRef::from_stored(old).expect("an old stored file");
        assert_eq!(read.picture, None);
        let json = serde_json::to_value(&read).unwrap();
        assert!(
            json.get("width").is_none() && json.get("height").is_none(),
            "{json}"
        );
    }
}
