//! Moderation: what a room's moderators (an admin, or a script with the API token)
//! do to it, and the standing rules it leaves.
//!
//! A kick closes a member (Close 4001 with the moderator's reason), tells the room,
//! and keeps the member out of the room for `Config::kick_time`: its name (by its
//! key, so a look-alike is out too), its session cookie and its address, each a
//! [`Rule`]. Rules are the backend's to keep (they survive a restart and reach every
//! node); the hub keeps a copy, in [`Moderation`], to decide a join without asking
//! anyone.
//! Only the node a member is connected to knows its session and address: a kick
//! asked elsewhere binds its name, and that node adds the rest ([`Action::Bar`]).
//!
//! This file holds the rules and the words; [`chat`](super::chat) asks for a kick and
//! refuses a kicked join, [`changes`](super::changes) carries out a kick made.

use crate::base::{ClientKey, ConnId, SessionId, now_ms};
use crate::chat::{self, ChatError, ErrorCode, RoomSettings};
use crate::metrics::{self, Metrics};
use crate::store::{Action, Moderated, Refusal, Rule};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The hub's copy of the rules in force, and what it needs to make new ones.
#[derive(Debug)]
pub(super) struct Moderation {
    /// `(room, key)` → `(value, until)`.
    rules: HashMap<(String, String), (String, u64)>,
    /// How long a kick keeps a member out.
    pub(super) kick_time: Duration,
    /// The session each chat member of this node signed in with, if any.
    pub(super) sessions: HashMap<ConnId, SessionId>,
    /// The settings of each room that has any (a copy of its `room` rule, read).
    settings: HashMap<String, RoomSettings>,
    /// When each member (by room and name key) last posted in a room in slow mode.
    last_posts: HashMap<(String, String), Instant>,
}

/// The rule that holds a room's settings.
pub(super) const ROOM_RULE: &str = "room";

/// How long a room's settings are kept: for as long as the room (a rule must end).
pub(super) const FOREVER: u64 = chat::MAX_ID;

/// Slow-mode timestamps kept before the old ones are forgotten.
const MAX_LAST_POSTS: usize = 4096;

/// A kick's rule on a name key.
pub(super) fn name_rule(name: &str) -> String {
    format!("kick:name:{}", chat::name_key(name))
}

pub(super) fn session_rule(session: &SessionId) -> String {
    format!("kick:session:{}", data_encoding::HEXLOWER.encode(session))
}

pub(super) fn address_rule(client: ClientKey) -> String {
    format!("kick:addr:{client}")
}

impl Moderation {
    pub(super) fn new(rules: Vec<Rule>, kick_time: Duration) -> Self {
        let mut moderation = Self {
            rules: HashMap::new(),
            kick_time,
            sessions: HashMap::new(),
            settings: HashMap::new(),
            last_posts: HashMap::new(),
        };
        moderation.apply(&rules);
        moderation
    }

    /// Takes in rules the backend kept: those with `until` 0 are taken away, and so
    /// is every rule run out (moderators make few; this keeps them few).
    pub(super) fn apply(&mut self, rules: &[Rule]) {
        let now = now_ms();
        self.rules.retain(|_, (_, until)| *until > now);
        for rule in rules {
            if rule.key == ROOM_RULE {
                match serde_json::from_str::<RoomSettings>(&rule.value) {
                    Ok(settings) if rule.until > now => {
                        self.settings.insert(rule.room.clone(), settings);
                    }
                    _ => {
                        self.settings.remove(&rule.room);
                    }
                }
            }
            let key = (rule.room.clone(), rule.key.clone());
            if rule.until > now {
                self.rules.insert(key, (rule.value.clone(), rule.until));
            } else {
                self.rules.remove(&key);
            }
        }
    }

    /// Whether rule `key` of `room` is in force.
    pub(super) fn has(&self, room: &str, key: &str) -> bool {
        self.rules.contains_key(&(room.to_owned(), key.to_owned()))
    }

    /// The settings of `room`.
    pub(super) fn settings(&self, room: &str) -> RoomSettings {
        self.settings.get(room).cloned().unwrap_or_default()
    }

    /// Whether member `name` may post in `room` now: not in a locked room, not sooner
    /// than slow mode allows (an admin may, always). A post let through counts for
    /// slow mode.
    pub(super) fn may_post(
        &mut self,
        room: &str,
        name: &str,
        admin: bool,
        now: Instant,
    ) -> Result<(), ChatError> {
        let Some(settings) = self.settings.get(room) else {
            return Ok(());
        };
        if admin {
            return Ok(());
        }
        if settings.locked {
            return Err(ChatError::new(
                ErrorCode::Locked,
                format!("{room} is locked: only its moderators post for now"),
            ));
        }
        if settings.slow_secs == 0 {
            return Ok(());
        }
        let every = Duration::from_secs(settings.slow_secs);
        let key = (room.to_owned(), chat::name_key(name));
        if let Some(&last) = self.last_posts.get(&key) {
            let since = now.saturating_duration_since(last);
            if since < every {
                let wait = (every - since).as_secs_f64().ceil() as u64;
                return Err(ChatError::new(
                    ErrorCode::SlowMode,
                    format!(
                        "{room} is in slow mode: one post every {} s",
                        settings.slow_secs
                    ),
                )
                .retry_after(wait.max(1)));
            }
        }
        if self.last_posts.len() >= MAX_LAST_POSTS {
            let oldest = Duration::from_secs(chat::MAX_SLOW_SECS);
            self.last_posts
                .retain(|_, last| now.saturating_duration_since(*last) < oldest);
        }
        self.last_posts.insert(key, now);
        Ok(())
    }

    /// Until when member `name` is muted in `room`, if it is.
    pub(super) fn muted(&self, room: &str, name: &str) -> Option<u64> {
        self.mute_of(room, name).map(|(_, until)| until)
    }

    /// Who muted member `name` in `room`, and until when, if it is muted.
    pub(super) fn mute_of(&self, room: &str, name: &str) -> Option<(&str, u64)> {
        let now = now_ms();
        self.rules
            .get(&(room.to_owned(), mute_rule(name)))
            .filter(|(_, until)| *until > now)
            .map(|(by, until)| (by.as_str(), *until))
    }

    /// The kick that keeps a member out of `room`, if one does: its reason and end.
    /// A member is out if its session, its address or the name it asks for is.
    pub(super) fn kicked(
        &self,
        room: &str,
        name: Option<&str>,
        session: Option<&SessionId>,
        client: Option<ClientKey>,
    ) -> Option<(&str, u64)> {
        let now = now_ms();
        let keys = [
            name.map(name_rule),
            session.map(session_rule),
            client.map(address_rule),
        ];
        keys.into_iter()
            .flatten()
            .filter_map(|key| self.rules.get(&(room.to_owned(), key)))
            .filter(|(_, until)| *until > now)
            .max_by_key(|(_, until)| *until)
            .map(|(reason, until)| (reason.as_str(), *until))
    }
}

/// A mute's rule on a name key.
pub(super) fn mute_rule(name: &str) -> String {
    format!("mute:{}", chat::name_key(name))
}

/// The `error` a kicked member gets when it tries to come back.
pub(super) fn kicked_error(room: &str, reason: &str, until: u64) -> ChatError {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    ChatError::new(
        ErrorCode::Kicked,
        format!("you were kicked from {room}{why}; you may come back later"),
    )
    .until(until)
}

/// What a kicked member's Close says when the moderator gave no reason (the close
/// codes' table says it too).
pub(super) const NO_REASON: &str = "kicked";

/// The `error` a muted member gets for a post.
pub(super) fn muted_error(room: &str, until: u64) -> ChatError {
    ChatError::new(
        ErrorCode::Muted,
        format!("you are muted in {room}: you can read, and post again later"),
    )
    .until(until)
}

/// The `error` a member gets for a moderation refused.
pub(super) fn refusal_error(refusal: Refusal) -> ChatError {
    match refusal {
        Refusal::NotFound => ChatError::new(
            ErrorCode::NotFound,
            "there is nobody of that name in this room",
        ),
        Refusal::Forbidden => forbidden(),
        Refusal::Failed => ChatError::new(ErrorCode::Unavailable, "that cannot be done now"),
    }
}

/// The `error` a member who is no admin gets for a moderator's request.
pub(super) fn forbidden() -> ChatError {
    ChatError::new(ErrorCode::Forbidden, "only an admin may do that")
}

/// Counts an action taken in `/metrics`.
pub(super) fn count(metrics: &Metrics, action: &Action) {
    match action {
        Action::Kick { .. } => metrics::bump(&metrics.kicks),
        Action::Mute { .. } => metrics::bump(&metrics.mutes),
        Action::Unmute { .. } => metrics::bump(&metrics.unmutes),
        Action::Room { .. } => metrics::bump(&metrics.room_settings),
        Action::Clear { .. } => metrics::bump(&metrics.clears),
        // Part of a kick, counted there.
        Action::Bar => {}
    }
}

/// Who did what to whom, for the log (escaped: names and reasons are a peer's).
pub(crate) fn describe(moderated: &Moderated) -> String {
    let by = crate::base::escape(&moderated.by);
    match &moderated.action {
        Action::Kick { name, reason, .. } => format!(
            "{by} kicked {} from room {} ({})",
            crate::base::escape(name),
            moderated.room,
            crate::base::escape(reason)
        ),
        Action::Mute { name, until } => format!(
            "{by} muted {} in room {} until {until}",
            crate::base::escape(name),
            moderated.room
        ),
        Action::Unmute { name } => format!(
            "{by} unmuted {} in room {}",
            crate::base::escape(name),
            moderated.room
        ),
        Action::Room { settings } => format!(
            "{by} set room {}: locked {}, slow mode {} s, topic \"{}\"",
            moderated.room,
            settings.locked,
            settings.slow_secs,
            crate::base::escape(&settings.topic)
        ),
        Action::Clear { through, files } => format!(
            "{by} cleared room {} (messages up to {through}, {} files)",
            moderated.room,
            files.len()
        ),
        Action::Bar => format!("{by} barred a kicked member from room {}", moderated.room),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_binds_its_name_session_and_address_until_it_runs_out() {
        let until = now_ms() + 60_000;
        let rule = |key: String| Rule {
            room: "r".into(),
            key,
            value: "spam".into(),
            until,
        };
        let session = [7; 16];
        let client = ClientKey::of([127, 0, 0, 2].into());
        let mut moderation = Moderation::new(
            vec![
                rule(name_rule("Ann")),
                rule(session_rule(&session)),
                rule(address_rule(client)),
            ],
            Duration::from_secs(60),
        );
        let other = ClientKey::of([127, 0, 0, 3].into());
        assert_eq!(
            moderation.kicked("r", Some("ann"), None, None),
            Some(("spam", until)),
            "by the name's key"
        );
        assert!(moderation.kicked("r", None, Some(&session), None).is_some());
        assert!(
            moderation
                .kicked("r", Some("bob"), None, Some(client))
                .is_some()
        );
        assert!(
            moderation
                .kicked("r", Some("bob"), None, Some(other))
                .is_none()
        );
        assert!(
            moderation
                .kicked("elsewhere", Some("ann"), None, None)
                .is_none()
        );
        moderation.apply(&[Rule {
            until: 0,
            ..rule(name_rule("ann"))
        }]);
        assert!(moderation.kicked("r", Some("ann"), None, None).is_none());
        let ran_out = Moderation::new(
            vec![Rule {
                until: now_ms() - 1,
                ..rule(name_rule("ann"))
            }],
            Duration::from_secs(60),
        );
        assert!(ran_out.kicked("r", Some("ann"), None, None).is_none());
    }

    #[test]
    fn a_locked_room_takes_admins_and_slow_mode_spaces_each_members_posts() {
        let room = |settings: &RoomSettings| Rule {
            room: "r".into(),
            key: ROOM_RULE.into(),
            value: serde_json::to_string(settings).unwrap(),
            until: FOREVER,
        };
        let locked = RoomSettings {
            locked: true,
            ..RoomSettings::default()
        };
        let mut moderation = Moderation::new(vec![room(&locked)], Duration::from_secs(60));
        let now = Instant::now();
        let code = |r: Result<(), ChatError>| r.map_err(|e| (e.code, e.retry_after));
        assert_eq!(
            code(moderation.may_post("r", "ann", false, now)),
            Err((ErrorCode::Locked, None))
        );
        assert_eq!(code(moderation.may_post("r", "ann", true, now)), Ok(()));
        assert_eq!(
            code(moderation.may_post("other", "ann", false, now)),
            Ok(())
        );
        let slow = RoomSettings {
            slow_secs: 10,
            ..RoomSettings::default()
        };
        moderation.apply(&[room(&slow)]);
        assert_eq!(code(moderation.may_post("r", "ann", false, now)), Ok(()));
        let soon = now + Duration::from_millis(2500);
        assert_eq!(
            code(moderation.may_post("r", "ANN", false, soon)),
            Err((ErrorCode::SlowMode, Some(8))),
            "the same name's key, 7.5 s to wait"
        );
        assert_eq!(code(moderation.may_post("r", "bob", false, soon)), Ok(()));
        let later = now + Duration::from_secs(10);
        assert_eq!(code(moderation.may_post("r", "ann", false, later)), Ok(()));
        moderation.apply(&[Rule {
            until: 0,
            ..room(&slow)
        }]);
        assert_eq!(moderation.settings("r"), RoomSettings::default());
    }

    #[test]
    fn a_mute_holds_in_its_room_under_the_names_key_until_it_runs_out() {
        let until = now_ms() + 60_000;
        let mute = |until| Rule {
            room: "r".into(),
            key: mute_rule("Ann"),
            value: String::new(),
            until,
        };
        let mut moderation = Moderation::new(vec![mute(until)], Duration::from_secs(60));
        assert_eq!(moderation.muted("r", "ANN"), Some(until));
        assert_eq!(moderation.muted("other", "ann"), None);
        moderation.apply(&[mute(now_ms() - 1)]);
        assert_eq!(moderation.muted("r", "ann"), None, "run out");
    }
}
