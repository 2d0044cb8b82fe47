//! Who is where on a single node, as its backend keeps it: what Redis's `names` and
//! `members` hashes are to a cluster, in memory. The store writer owns it, so a join,
//! a move, a new name and a leave are made in the same order as the messages around
//! them, and each join knows exactly which messages came before it.

use crate::base::ConnId;
use std::collections::HashMap;

/// A member's name, its key ([`crate::chat::name_key`]) and its room.
#[derive(Debug)]
struct Record {
    name: String,
    key: String,
    room: String,
}

/// The names in use and who holds them.
#[derive(Debug, Default)]
pub(super) struct Presence {
    members: HashMap<ConnId, Record>,
    /// A name's key → its holder.
    names: HashMap<String, ConnId>,
    /// The last `guest-N` handed out.
    guests: u64,
}

impl Presence {
    /// Member `member` joins `room` under the first free name of `offered` (name and
    /// key), else `guest-N`; the name it got.
    pub(super) fn join(
        &mut self,
        member: ConnId,
        offered: &[(String, String)],
        room: &str,
    ) -> String {
        self.leave(member);
        let free = offered
            .iter()
            .find(|(_, key)| !self.names.contains_key(key))
            .cloned();
        let (name, key) = free.unwrap_or_else(|| {
            loop {
                self.guests += 1;
                let name = format!("guest-{}", self.guests);
                let key = crate::chat::name_key(&name);
                if !self.names.contains_key(&key) {
                    break (name, key);
                }
            }
        });
        self.names.insert(key.clone(), member);
        let record = Record {
            name: name.clone(),
            key,
            room: room.to_owned(),
        };
        self.members.insert(member, record);
        name
    }

    /// Member `member` moves to `room`; `false` if it is not here.
    pub(super) fn switch(&mut self, member: ConnId, room: &str) -> bool {
        match self.members.get_mut(&member) {
            Some(record) => {
                room.clone_into(&mut record.room);
                true
            }
            None => false,
        }
    }

    /// Member `member` takes the name `to` (key `key`); `false` if someone else has
    /// it, or the member is not here.
    pub(super) fn rename(&mut self, member: ConnId, to: &str, key: &str) -> bool {
        if self.names.get(key).is_some_and(|&holder| holder != member) {
            return false;
        }
        let Some(record) = self.members.get_mut(&member) else {
            return false;
        };
        self.names.remove(&record.key);
        self.names.insert(key.to_owned(), member);
        to.clone_into(&mut record.name);
        key.clone_into(&mut record.key);
        true
    }

    /// Member `member` is gone, and its name free; `false` if it was not here.
    pub(super) fn leave(&mut self, member: ConnId) -> bool {
        let Some(record) = self.members.remove(&member) else {
            return false;
        };
        if self.names.get(&record.key) == Some(&member) {
            self.names.remove(&record.key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::name_key;

    fn offer(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), name_key(n)))
            .collect()
    }

    #[test]
    fn a_name_is_held_until_its_member_leaves_or_renames() {
        let mut presence = Presence::default();
        assert_eq!(presence.join(1, &offer(&["ann", "ann-2"]), "r"), "ann");
        assert_eq!(presence.join(2, &offer(&["Ann", "Ann-2"]), "r"), "Ann-2");
        assert_eq!(presence.join(3, &[], "r"), "guest-1");
        assert!(!presence.rename(3, "ANN", &name_key("ANN")), "held by 1");
        assert!(presence.rename(1, "bob", &name_key("bob")));
        assert!(presence.rename(3, "ANN", &name_key("ANN")), "free since");
        assert!(presence.leave(2));
        assert!(!presence.leave(2), "once");
        assert_eq!(presence.join(4, &offer(&["ann-2"]), "r"), "ann-2");
        assert!(presence.switch(4, "s"));
        assert!(!presence.switch(2, "s"), "gone");
    }
}
