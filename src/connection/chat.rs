//! The chat endpoint's policy, applied on the connection thread before anything
//! reaches the hub: binary frames are refused, requests are rate-limited, and text is
//! decoded and validated.
//!
//! It runs here, not in the hub, so that the one hub thread never parses JSON or
//! counts tokens for thousands of clients. Its answers about bad input still go
//! *through* the hub ([`HubEvent::Reply`]), so a client gets every answer in the
//! order of its requests.

use crate::base::{ConnId, RateLimit};
use crate::chat::{self, ChatError, ErrorCode};
use crate::config::Config;
use crate::hub::HubEvent;
use crate::metrics::{Metrics, bump};
use tungstenite::Message;

/// What a chat connection holds between messages.
pub(super) struct ChatPolicy {
    rate: RateLimit,
    rate_per_sec: u32,
    max_text_len: usize,
}

impl ChatPolicy {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            rate: RateLimit::new(config.rate_per_sec, config.rate_burst),
            rate_per_sec: config.rate_per_sec,
            max_text_len: config.max_text_len,
        }
    }

    /// What the hub hears about a text or binary message from client `id`: the
    /// decoded request, or an `error` to send back to it.
    pub(super) fn on_message(&mut self, id: ConnId, msg: Message, metrics: &Metrics) -> HubEvent {
        let decoded = match msg {
            Message::Text(text) if self.rate.allow() => chat::decode(&text, self.max_text_len),
            Message::Text(_) => Err(ChatError::new(
                ErrorCode::RateLimited,
                format!("slow down: at most {} messages a second", self.rate_per_sec),
            )),
            _ => Err(ChatError::new(
                ErrorCode::BinaryNotSupported,
                "this endpoint takes text frames of JSON",
            )),
        };
        match decoded {
            Ok(msg) => HubEvent::Chat { id, msg },
            Err(error) => {
                bump(&metrics.chat_errors);
                HubEvent::Reply {
                    id,
                    msg: Message::text(error.to_json()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_bad_json_become_error_replies() {
        let metrics = Metrics::new();
        let mut policy = ChatPolicy::new(&Config::default());
        for msg in [Message::binary(vec![1, 2]), Message::text("{nope")] {
            let HubEvent::Reply { id: 3, msg } = policy.on_message(3, msg, &metrics) else {
                panic!("expected an error reply");
            };
            assert!(msg.to_text().unwrap().contains(r#""type":"error""#));
        }
        assert!(matches!(
            policy.on_message(3, Message::text("hi"), &metrics),
            HubEvent::Chat { id: 3, .. }
        ));
    }
}
