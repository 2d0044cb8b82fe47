//! The bridge's subscriber: reads the bus and the relay channel, in Redis's order,
//! and hands each event to the hub. It blocks only on its own socket, and on the hub's
//! bounded events channel; Redis drops a subscriber that falls far behind, and the
//! catch-up after the reconnection makes up for it.

use super::{BUS, Bus, MAX_BACKOFF, MIN_BACKOFF, RELAY, open};
use crate::files::Files;
use crate::store::Change;
use crate::store::Event;
use crossbeam_channel::Sender;
use redis::{Msg, RedisResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tungstenite::Message;

/// What the subscriber shares with the bridge.
pub(crate) struct Subscription {
    /// Set when the bridge ends: the subscriber ends too.
    pub stop: Arc<AtomicBool>,
    /// Set by the subscriber while its subscription is up.
    pub subscribed: Arc<AtomicBool>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This node's copies of the files: a deleted message's goes when the news comes.
    /// Weak: the files outlive no server.
    pub files: Weak<Files>,
}

/// How often a quiet subscriber looks whether it should end.
const POLL: Duration = Duration::from_millis(250);

/// Subscribes, tells `ready` whether the first subscription worked, then reads until
/// `stop` (or the hub is gone), resubscribing with backoff whenever Redis goes away.
///
/// `subscribed` says whether the subscription is up: the bridge changes nothing in
/// Redis while it is not, since the change's news would not come back.
pub(crate) fn listen(
    client: redis::Client,
    events: Sender<Event>,
    subscription: Subscription,
    ready: Sender<RedisResult<()>>,
) {
    let Subscription {
        stop,
        subscribed,
        metrics,
        files,
    } = subscription;
    let mut ready = Some(ready);
    let mut backoff = MIN_BACKOFF;
    while !stop.load(Ordering::Acquire) {
        let outcome = session(&client, (&events, &files), (&stop, &subscribed), &mut ready);
        subscribed.store(false, Ordering::Release);
        match outcome {
            Ok(()) => return,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(e));
                    return;
                }
                crate::metrics::bump(&metrics.redis_errors);
                log::warn!("cluster: subscription lost ({e}); resubscribing");
            }
        }
        let mut slept = Duration::ZERO;
        while slept < backoff && !stop.load(Ordering::Acquire) {
            std::thread::sleep(POLL.min(backoff));
            slept += POLL.min(backoff);
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription, until it fails (`Err`) or the subscriber is to end (`Ok`).
fn session(
    client: &redis::Client,
    (events, files): (&Sender<Event>, &Weak<Files>),
    (stop, subscribed): (&AtomicBool, &AtomicBool),
    ready: &mut Option<Sender<RedisResult<()>>>,
) -> RedisResult<()> {
    let mut con = open(client)?;
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe(&[BUS, RELAY])?;
    pubsub.set_read_timeout(Some(POLL))?;
    subscribed.store(true, Ordering::Release);
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Ok(()));
        }
        None => {
            log::info!("cluster: subscription back; catching up on what it missed");
            if events.send(Event::Resubscribed).is_err() {
                return Ok(());
            }
        }
    }
    while !stop.load(Ordering::Acquire) {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let event = decode(&msg);
        // Whichever node it was posted on, no node may serve it any more: Redis has
        // dropped its bytes, and this drops this node's copy.
        if let Some(Event::Change(Change::Deleted(deleted))) = &event
            && let (Some(file), Some(files)) = (&deleted.file, files.upgrade())
        {
            files.remove(file);
        }
        // So do a cleared room's files.
        if let Some(Event::Change(Change::Moderated(moderated))) = &event
            && let crate::store::Action::Clear { files: cleared, .. } = &moderated.action
            && let Some(files) = files.upgrade()
        {
            for file in cleared {
                files.remove(file);
            }
        }
        if let Some(event) = event
            && events.send(event).is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// The event a published message carries; `None` for one that is not ours.
fn decode(msg: &Msg) -> Option<Event> {
    let payload = msg.get_payload_bytes();
    match msg.get_channel_name() {
        BUS => match serde_json::from_slice::<Bus>(payload) {
            Ok(bus) => bus.into_change().map(Event::Change),
            Err(e) => {
                log::debug!("cluster: ignoring a bus message that does not parse: {e}");
                None
            }
        },
        RELAY => relay_event(payload),
        _ => None,
    }
}

/// A relay message on the wire: `{member} {room} {t|b}\n` and the payload as it is.
pub(super) fn relay_payload(from: &str, room: &str, msg: &Message) -> Vec<u8> {
    let (kind, data): (&str, &[u8]) = match msg {
        Message::Text(text) => ("t", text.as_bytes()),
        Message::Binary(data) => ("b", data),
        _ => ("b", &[]),
    };
    let mut out = format!("{from} {room} {kind}\n").into_bytes();
    out.extend_from_slice(data);
    out
}

fn relay_event(payload: &[u8]) -> Option<Event> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let (head, data) = (payload.get(..newline)?, payload.get(newline + 1..)?);
    let head = std::str::from_utf8(head).ok()?;
    let mut parts = head.split(' ');
    let (from, room, kind) = (parts.next()?, parts.next()?, parts.next()?);
    let msg = match kind {
        "t" => Message::text(std::str::from_utf8(data).ok()?),
        _ => Message::binary(data.to_vec()),
    };
    Some(Event::Relay {
        from: from.to_owned(),
        room: room.to_owned(),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_payloads_keep_their_bytes() {
        let data = vec![0u8, 10, 255, b' ', b'\n'];
        let wire = relay_payload("n1.4", "r", &Message::binary(data.clone()));
        let Some(Event::Relay { from, room, msg }) = relay_event(&wire) else {
            panic!("not a relay event");
        };
        assert_eq!((from.as_str(), room.as_str()), ("n1.4", "r"));
        assert_eq!(msg.into_data().to_vec(), data);
        let wire = relay_payload("n1.4", "r", &Message::text("héllo"));
        assert!(
            matches!(relay_event(&wire), Some(Event::Relay { msg: Message::Text(t), .. }) if t.as_str() == "héllo")
        );
        assert!(relay_event(b"no newline").is_none());
    }
}
