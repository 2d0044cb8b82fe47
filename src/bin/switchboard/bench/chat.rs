//! What the chat scenarios say on `/ws/chat/{room}`: the text of a measured message,
//! the events that come back, and a client that has had its `welcome`.
//!
//! A measured message is an ordinary chat message whose text starts with three
//! numbers: its sequence number, its send time (nanoseconds from the run's epoch) and
//! the index of its sender, padded with `x` to the requested size. Every member of the
//! room, the sender included, gets it back as a `message` event once the server has
//! stored it.

use super::{Client, connect};
use serde::Deserialize;
use serde::Serialize;
use std::borrow::Cow;
use std::io;
use std::time::Duration;
use tungstenite::Message;

/// How long a chat client may wait for its `welcome`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(5);

/// The `message` request for measured message `seq` of sender `sender`, sent at
/// `sent_ns`, its text padded to at least `size` bytes.
pub(super) fn message(sender: usize, seq: u64, sent_ns: u64, size: usize) -> Message {
    let mut text = format!("{seq} {sent_ns} {sender} ");
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    // Digits, spaces and `x` need no escaping in JSON.
    Message::text(format!(r#"{{"type":"message","text":"{text}"}}"#))
}

/// What a chat client was told, as far as the scenarios care.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// A measured message, as stored and delivered to the room.
    Measured {
        sender: usize,
        seq: u64,
        sent_ns: u64,
    },
    /// The server refused one of our requests.
    Refused(Refusal),
    Welcome,
    /// Anything else: joins, leaves, messages from people who are not us.
    Other,
}

/// Why the server refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The store is behind (its queue is full) or failed: nobody got the message.
    Unavailable,
    /// Faster than the server's `--rate-limit`.
    RateLimited,
    /// Any other error code.
    Other,
}

/// The fields of a server event the scenarios read; the rest are skipped.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// Reads one text frame from the server.
pub(super) fn event(frame: &str) -> Event {
    let Ok(raw) = serde_json::from_str::<RawEvent<'_>>(frame) else {
        return Event::Other;
    };
    match &*raw.kind {
        "message" => raw
            .text
            .and_then(|text| measured(&text))
            .unwrap_or(Event::Other),
        "error" => Event::Refused(match raw.code.as_deref() {
            Some("unavailable") => Refusal::Unavailable,
            Some("rate_limited") => Refusal::RateLimited,
            _ => Refusal::Other,
        }),
        "welcome" => Event::Welcome,
        _ => Event::Other,
    }
}

fn measured(text: &str) -> Option<Event> {
    let mut numbers = text.split(' ');
    let mut next = || numbers.next()?.parse::<u64>().ok();
    let (seq, sent_ns, sender) = (next()?, next()?, next()?);
    Some(Event::Measured {
        sender: usize::try_from(sender).ok()?,
        seq,
        sent_ns,
    })
}

/// A client in chat room `room` under `name` that has had its `welcome`, so that what
/// it sends next reaches it back as `message` events (before the welcome, the
/// server puts the room's news in the welcome's history instead).
pub(super) fn join(url: &str, room: &str, name: &str) -> io::Result<Client> {
    let mut ws = connect(url, &format!("/ws/chat/{room}?name={name}"))?;
    ws.get_ref().set_read_timeout(Some(WELCOME_TIMEOUT))?;
    loop {
        match ws.read() {
            Ok(Message::Text(text)) if event(&text) == Event::Welcome => break,
            Ok(_) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "no welcome from /ws/chat/{room} ({e}); is this a chat endpoint?"
                )));
            }
        }
    }
    ws.get_ref().set_read_timeout(None)?;
    Ok(ws)
}

/// The server's refusals of one client's messages.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Refusals {
    /// `unavailable`: the store could not take the message; nobody got it.
    pub(super) unavailable: u64,
    /// `rate_limited`: the server's rate limit, not the store, refused it.
    pub(super) rate_limited: u64,
    /// Any other error.
    pub(super) other_errors: u64,
}

impl Refusals {
    pub(super) fn count(&mut self, why: Refusal) {
        match why {
            Refusal::Unavailable => self.unavailable += 1,
            Refusal::RateLimited => self.rate_limited += 1,
            Refusal::Other => self.other_errors += 1,
        }
    }

    pub(super) fn add(&mut self, other: Self) {
        self.unavailable += other.unavailable;
        self.rate_limited += other.rate_limited;
        self.other_errors += other.other_errors;
    }

    pub(super) fn line(&self) -> String {
        format!(
            "{} unavailable, {} rate-limited, {} other errors",
            self.unavailable, self.rate_limited, self.other_errors
        )
    }

    /// Prints a note when the server's rate limit, not its store, shaped the run.
    pub(super) fn warn(&self, json: bool) {
        if self.rate_limited > 0 {
            let note = format!(
                "note: the server refused {} messages as rate-limited; start it with a higher \
                 --rate-limit and --rate-burst to measure the store",
                self.rate_limited
            );
            if json {
                eprintln!("{note}");
            } else {
                println!("  {note}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_message_reads_back() {
        let Message::Text(request) = message(3, 7, 123_456, 40) else {
            panic!("a chat message is text");
        };
        let text = serde_json::from_str::<serde_json::Value>(&request).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(text.len(), 40);
        let delivered = serde_json::json!({
            "type": "message", "id": 1, "room": "r", "from": "tx", "text": text, "ts": 5
        });
        assert_eq!(
            event(&delivered.to_string()),
            Event::Measured {
                sender: 3,
                seq: 7,
                sent_ns: 123_456
            }
        );
    }

    #[test]
    fn errors_and_other_events_are_told_apart() {
        let error = |code: &str| event(&format!(r#"{{"type":"error","code":"{code}"}}"#));
        assert_eq!(error("unavailable"), Event::Refused(Refusal::Unavailable));
        assert_eq!(error("rate_limited"), Event::Refused(Refusal::RateLimited));
        assert_eq!(error("bad_json"), Event::Refused(Refusal::Other));
        assert_eq!(
            event(r#"{"type":"message","text":"hello there"}"#),
            Event::Other
        );
        assert_eq!(
            event(r#"{"type":"welcome","history":[{"type":"message"}],"members":[]}"#),
            Event::Welcome
        );
        assert_eq!(event("not json"), Event::Other);
    }
}
