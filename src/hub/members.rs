//! Membership: who is connected to the hub, in which role, and under which name.
//!
//! Names are unique up to case and look-alikes, so they are kept in a map keyed by
//! [`chat::name_key`], the key a cluster reserves them under too; a name is free
//! again the moment its member leaves.

use crate::base::ConnId;
use crate::chat;
use crate::outbox::Outbox;
use std::collections::HashMap;

/// What a member does.
#[derive(Debug)]
pub(super) enum Role {
    /// A chat client: its name and its room.
    Chat { name: String, room: String },
    /// A relay client and its room.
    Relay { room: String },
}

#[derive(Debug)]
pub(super) struct Member {
    /// `None` for a member on another node, and for one of ours whose
    /// connection is gone while the cluster has not yet heard it leave.
    pub outbox: Option<Outbox>,
    pub role: Role,
    /// The key a chat member's traffic can be watched with.
    pub wire: Option<String>,
    /// Whether it signed in as an admin. Known for the members of this node only
    /// (an admin acts through its own connection); `false` for the rest.
    pub admin: bool,
}

/// Every member of the hub, and the names in use.
#[derive(Debug, Default)]
pub(super) struct Members {
    by_id: HashMap<ConnId, Member>,
    /// A name's key ([`chat::name_key`]) → its owner.
    names: HashMap<String, ConnId>,
}

impl Members {
    /// Adds a chat member of this node whose name the cluster has yet to give it; it
    /// is in no room's list and has no name until then.
    pub(super) fn join_unnamed(
        &mut self,
        id: ConnId,
        room: &str,
        outbox: Outbox,
        wire: Option<String>,
        admin: bool,
    ) {
        let role = Role::Chat {
            name: String::new(),
            room: room.to_owned(),
        };
        let outbox = Some(outbox);
        let member = Member {
            outbox,
            role,
            wire,
            admin,
        };
        self.by_id.insert(id, member);
    }

    /// Adds a chat member of another node, or names one of ours, as the cluster says:
    /// `name` is unique across the cluster already.
    pub(super) fn join_named(&mut self, id: ConnId, name: &str, room: &str) {
        self.unname(id);
        self.names.insert(chat::name_key(name), id);
        let role = Role::Chat {
            name: name.to_owned(),
            room: room.to_owned(),
        };
        match self.by_id.get_mut(&id) {
            Some(member) => member.role = role,
            None => {
                let (outbox, wire, admin) = (None, None, false);
                let member = Member {
                    outbox,
                    role,
                    wire,
                    admin,
                };
                self.by_id.insert(id, member);
            }
        }
    }

    /// Frees the name of chat member `id`, keeping the member.
    pub(super) fn unname(&mut self, id: ConnId) {
        if let Some(Member {
            role: Role::Chat { name, .. },
            ..
        }) = self.by_id.get(&id)
            && self.names.get(&chat::name_key(name)) == Some(&id)
        {
            self.names.remove(&chat::name_key(name));
        }
    }

    /// Takes chat member `id`'s name away (it keeps its room and its connection):
    /// the backend no longer knows it, and it will not get that name back.
    pub(super) fn clear_name(&mut self, id: ConnId) {
        self.unname(id);
        if let Some(Member {
            role: Role::Chat { name, .. },
            ..
        }) = self.by_id.get_mut(&id)
        {
            name.clear();
        }
    }

    /// Drops the outbox of member `id`: its connection is gone, but the cluster
    /// still counts it until its leave comes back on the bus.
    pub(super) fn detach(&mut self, id: ConnId) -> Option<Outbox> {
        let member = self.by_id.get_mut(&id)?;
        member.wire = None;
        member.outbox.take()
    }

    /// The outbox of member `id`, if it is connected here.
    pub(super) fn outbox(&self, id: ConnId) -> Option<&Outbox> {
        self.by_id.get(&id)?.outbox.as_ref()
    }

    /// Every member connected here, with its role.
    pub(super) fn local(&self) -> impl Iterator<Item = (ConnId, &Role)> {
        self.by_id
            .iter()
            .filter(|(_, m)| m.outbox.is_some())
            .map(|(&id, m)| (id, &m.role))
    }

    /// Adds a relay member.
    pub(super) fn join_relay(&mut self, id: ConnId, room: &str, outbox: Outbox) {
        let role = Role::Relay {
            room: room.to_owned(),
        };
        let (outbox, wire, admin) = (Some(outbox), None, false);
        let member = Member {
            outbox,
            role,
            wire,
            admin,
        };
        self.by_id.insert(id, member);
    }

    /// Where chat member `id`'s traffic can be watched, for its `welcome`.
    pub(super) fn wire(&self, id: ConnId) -> Option<chat::WireRef<'_>> {
        let key = self.by_id.get(&id)?.wire.as_deref()?;
        Some(chat::WireRef { id, key })
    }

    /// Whether member `id` is an admin of this node's (what moderation asks).
    pub(super) fn is_admin(&self, id: ConnId) -> bool {
        self.by_id.get(&id).is_some_and(|m| m.admin)
    }

    pub(super) fn get(&self, id: ConnId) -> Option<&Member> {
        self.by_id.get(&id)
    }

    /// The name and room of chat member `id`.
    pub(super) fn chat_member(&self, id: ConnId) -> Option<(&str, &str)> {
        match self.by_id.get(&id)?.role {
            Role::Chat {
                ref name, ref room, ..
            } => Some((name, room)),
            Role::Relay { .. } => None,
        }
    }

    /// The chat member called `name`, or a name that looks like it, with its name as
    /// spelled.
    pub(super) fn find(&self, name: &str) -> Option<(ConnId, &str)> {
        // A peer's `to` may be a megabyte long: keying it would stall the hub.
        if name.chars().nth(chat::MAX_NAME_INPUT_CHARS).is_some() {
            return None;
        }
        let id = *self.names.get(&chat::name_key(name))?;
        let (name, _) = self.chat_member(id)?;
        Some((id, name))
    }

    /// Moves chat member `id` to `room`.
    pub(super) fn move_to(&mut self, id: ConnId, to: &str) {
        if let Some(Member {
            role: Role::Chat { room, .. },
            ..
        }) = self.by_id.get_mut(&id)
        {
            to.clone_into(room);
        }
    }

    /// Forgets member `id`, freeing its name.
    pub(super) fn remove(&mut self, id: ConnId) -> Option<Member> {
        self.unname(id);
        self.by_id.remove(&id)
    }
}

/// `base-n`, shortening `base` so the result stays a valid name.
pub(super) fn with_suffix(base: &str, n: u64) -> String {
    let suffix = format!("-{n}");
    let keep = chat::MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    let base: String = base.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_regardless_of_case_and_look_alikes() {
        let mut members = Members::default();
        members.join_named(1, "alice", "lobby");
        assert_eq!(members.find("\u{430}LICE"), Some((1, "alice")));
        assert_eq!(members.find("\u{ff41}lice"), Some((1, "alice")));
        let decomposed = "\u{3b1}\u{313}\u{300}\u{345}".repeat(chat::MAX_NAME_CHARS);
        members.join_named(4, &decomposed, "lobby");
        assert!(
            members.find(&decomposed).is_some(),
            "a name in NFD is found"
        );
        assert_eq!(members.find(&"a".repeat(1 << 20)), None);
        assert_eq!(
            with_suffix(&"x".repeat(32), 10),
            format!("{}-10", "x".repeat(29))
        );
    }

    #[test]
    fn a_name_is_free_again_once_its_member_leaves_or_renames() {
        let mut members = Members::default();
        members.join_named(1, "bob", "lobby");
        members.join_named(1, "robert", "lobby");
        assert_eq!(members.find("bob"), None, "freed by the new name");
        members.remove(1);
        assert_eq!(members.find("robert"), None, "freed by leaving");
    }
}
