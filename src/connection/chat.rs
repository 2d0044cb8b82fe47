//! The chat endpoint's policy, applied on the connection thread before anything
//! reaches the hub: requests are rate-limited, text is decoded and validated, and a
//! shared file's bytes (binary messages after a `file` announcement) are streamed to
//! disk.
//!
//! It runs here, not in the hub, so that the one hub thread never parses JSON, counts
//! tokens or touches a file's bytes for thousands of clients. Its answers about bad
//! input still go *through* the hub ([`HubEvent::Reply`]), so a client gets every
//! answer in the order of its requests.

use crate::base::{ConnId, RateLimit};
use crate::chat::{self, ChatError, ClientMessage, ErrorCode, FileAnnounce, FileRef};
use crate::config::Config;
use crate::files::{FileError, Files, Upload};
use crate::hub::HubEvent;
use crate::metrics::{Metrics, bump};
use std::collections::VecDeque;
use std::sync::Arc;
use tungstenite::Message;

/// Text messages that may wait behind a file whose bytes are still coming; past it,
/// `rate_limited`.
const MAX_WAITING: usize = 32;

/// What a chat connection holds between messages.
pub(super) struct ChatPolicy {
    rate: RateLimit,
    rate_per_sec: u32,
    max_text_len: usize,
    files: Arc<Files>,
    /// The file whose bytes are coming, and what its message will say.
    upload: Option<(Upload, FileAnnounce)>,
    /// Text messages that came while a file's bytes were on their way: handled, in
    /// order, once the file is in.
    waiting: VecDeque<String>,
}

impl ChatPolicy {
    pub(super) fn new(config: &Config, files: &Arc<Files>) -> Self {
        Self {
            rate: RateLimit::new(config.rate_per_sec, config.rate_burst),
            rate_per_sec: config.rate_per_sec,
            max_text_len: config.max_text_len,
            files: Arc::clone(files),
            upload: None,
            waiting: VecDeque::new(),
        }
    }

    /// What the hub hears about a text or binary message from client `id`: a request,
    /// an `error` to send back to it, or nothing yet (a file's bytes, or a message
    /// that waits behind them).
    pub(super) fn on_message(
        &mut self,
        id: ConnId,
        msg: Message,
        metrics: &Metrics,
    ) -> Option<HubEvent> {
        let event = match msg {
            Message::Binary(bytes) => self.on_bytes(id, &bytes),
            Message::Text(text) if self.upload.is_some() => {
                if self.waiting.len() < MAX_WAITING {
                    self.waiting.push_back(text.as_str().to_owned());
                    return None;
                }
                Some(error(
                    id,
                    ErrorCode::RateLimited,
                    "wait for your file to finish".into(),
                ))
            }
            Message::Text(text) => self.on_text(id, &text),
            _ => None,
        };
        if let Some(HubEvent::Reply { .. }) = event {
            bump(&metrics.chat_errors);
        }
        event
    }

    /// The next message that waited behind a file, once the file is in (or failed);
    /// `None` while a file is still coming, or when nothing waits.
    pub(super) fn next_waiting(&mut self, id: ConnId, metrics: &Metrics) -> Option<HubEvent> {
        while self.upload.is_none() {
            let text = self.waiting.pop_front()?;
            let event = self.on_text(id, &text);
            if let Some(HubEvent::Reply { .. }) = event {
                bump(&metrics.chat_errors);
            }
            if event.is_some() {
                return event;
            }
        }
        None
    }

    fn on_text(&mut self, id: ConnId, text: &str) -> Option<HubEvent> {
        if !self.rate.allow() {
            let why = format!("slow down: at most {} messages a second", self.rate_per_sec);
            return Some(error(id, ErrorCode::RateLimited, why));
        }
        match chat::decode(text, self.max_text_len) {
            Ok(ClientMessage::File(announce)) => self.begin(id, announce),
            Ok(msg) => Some(HubEvent::Chat { id, msg }),
            Err(e) => Some(reply(id, &e)),
        }
    }

    /// A file is announced: its bytes go to disk as they come.
    fn begin(&mut self, id: ConnId, announce: FileAnnounce) -> Option<HubEvent> {
        match self.files.begin(announce.size) {
            Ok(upload) => {
                self.upload = Some((upload, announce));
                self.complete_if_done(id)
            }
            Err(e) => Some(file_error(id, e, &self.files)),
        }
    }

    fn on_bytes(&mut self, id: ConnId, bytes: &[u8]) -> Option<HubEvent> {
        let Some((upload, _)) = self.upload.as_mut() else {
            // Each costs an error reply: counted like any request.
            if !self.rate.allow() {
                return None;
            }
            let why = "binary data needs a file announcement first: {\"type\":\"file\",…}";
            return Some(error(id, ErrorCode::BadFile, why.into()));
        };
        if let Err(e) = upload.write(bytes) {
            // The part written so far goes with the upload.
            self.upload = None;
            return Some(file_error(id, e, &self.files));
        }
        self.complete_if_done(id)
    }

    /// Once every announced byte is in: the file made durable, and its message on its
    /// way to the hub.
    fn complete_if_done(&mut self, id: ConnId) -> Option<HubEvent> {
        if !self.upload.as_ref().is_some_and(|(up, _)| up.is_complete()) {
            return None;
        }
        let (upload, announce) = self.upload.take()?;
        let picture = upload.picture_size();
        match upload.finish() {
            Ok(file_id) => {
                let FileAnnounce {
                    name,
                    mime,
                    size,
                    text,
                    cid,
                } = announce;
                let file = FileRef {
                    id: file_id,
                    name,
                    mime,
                    size,
                    picture,
                    expired: false,
                };
                let msg = ClientMessage::Message {
                    text,
                    cid,
                    file: Some(file),
                };
                Some(HubEvent::Chat { id, msg })
            }
            Err(e) => Some(file_error(id, e, &self.files)),
        }
    }
}

fn reply(id: ConnId, error: &ChatError) -> HubEvent {
    HubEvent::Reply {
        id,
        msg: Message::text(error.to_json()),
    }
}

fn error(id: ConnId, code: ErrorCode, why: String) -> HubEvent {
    reply(id, &ChatError::new(code, why))
}

/// The `error` a failed upload gets.
fn file_error(id: ConnId, e: FileError, files: &Files) -> HubEvent {
    match e {
        FileError::TooLarge => error(
            id,
            ErrorCode::FileTooLarge,
            format!("a file is at most {} bytes", files.max_file_size),
        ),
        FileError::Bad(why) => error(id, ErrorCode::BadFile, why.into()),
        FileError::Full => error(
            id,
            ErrorCode::StorageFull,
            "there is no room for this file".into(),
        ),
        FileError::Unavailable => error(
            id,
            ErrorCode::Unavailable,
            "the file could not be shared with the other servers, so nobody got it; try again"
                .into(),
        ),
        FileError::Io(e) => {
            log::warn!("files: cannot store a file: {e}");
            error(
                id,
                ErrorCode::StorageFull,
                "the file could not be stored".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_binary_and_bad_json_become_error_replies() {
        let metrics = Metrics::new();
        let files = Files::open(None, 1 << 20, 1 << 30).unwrap();
        let mut policy = ChatPolicy::new(&Config::default(), &files);
        for msg in [Message::binary(vec![1, 2]), Message::text("{nope")] {
            let Some(HubEvent::Reply { id: 3, msg }) = policy.on_message(3, msg, &metrics) else {
                panic!("expected an error reply");
            };
            assert!(msg.to_text().unwrap().contains(r#""type":"error""#));
        }
        assert!(matches!(
            policy.on_message(3, Message::text("hi"), &metrics),
            Some(HubEvent::Chat { id: 3, .. })
        ));
    }

    #[test]
    fn text_waits_behind_a_file_then_follows_it() {
        let metrics = Metrics::new();
        let files = Files::open(None, 1 << 20, 1 << 30).unwrap();
        let mut policy = ChatPolicy::new(&Config::default(), &files);
        let announce = r#"{"type":"file","name":"a.txt","mime":"text/plain","size":4}"#;
        assert!(
            policy
                .on_message(1, Message::text(announce), &metrics)
                .is_none()
        );
        assert!(
            policy
                .on_message(1, Message::text("after"), &metrics)
                .is_none()
        );
        assert!(policy.next_waiting(1, &metrics).is_none(), "the file first");
        let Some(HubEvent::Chat {
            msg: ClientMessage::Message {
                file: Some(file), ..
            },
            ..
        }) = policy.on_message(1, Message::binary(b"abcd".to_vec()), &metrics)
        else {
            panic!("the file's message");
        };
        assert_eq!((file.name.as_str(), file.size), ("a.txt", 4));
        let Some(HubEvent::Chat {
            msg: ClientMessage::Message { text, .. },
            ..
        }) = policy.next_waiting(1, &metrics)
        else {
            panic!("then the text");
        };
        assert_eq!(text, "after");
    }
}
