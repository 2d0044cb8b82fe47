//! Who is where in the cluster: joins, moves, names and leaves as Lua scripts that
//! publish each change on the bus; a direct or relay message for another node; and,
//! after a gap, this node's members put back and everyone listed again.

use super::storage::{loaded, range};
use super::{BUS, Bridge, RELAY, listen, masked};
use crate::base::{ConnId, now_ms};
use crate::chat::{self, Since};
use crate::error::Error;
use crate::store::{Event, MAX_RESUME, Present, Request, member_key};
use crossbeam_channel::Sender;
use redis::{Connection, RedisResult};
use serde::Deserialize;
use tungstenite::Message;

impl Bridge {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        con: &mut Connection,
        member: ConnId,
        seq: u64,
        names: &[(String, String)],
        room: &str,
        since: Option<Since>,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let mut join = self.scripts.join.prepare_invoke();
        join.arg(member_key(&self.node, member))
            .arg(room)
            .arg(now_ms())
            .arg(&self.node)
            .arg(&self.scripts.guest_keys);
        for (name, key) in names {
            join.arg(name).arg(key);
        }
        let (_name, last): (String, u64) = join.invoke(con)?;
        let (history, resumed) = self.history(con, room, since, last)?;
        let _ = events.send(Event::Answer(loaded(
            member, seq, room, history, last, resumed,
        )));
        Ok(())
    }

    pub(super) fn switch(
        &mut self,
        con: &mut Connection,
        member: ConnId,
        seq: u64,
        room: &str,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let last: i64 = self
            .scripts
            .switch
            .arg(member_key(&self.node, member))
            .arg(room)
            .arg(now_ms())
            .invoke(con)?;
        let Ok(last) = u64::try_from(last) else {
            // Redis does not know the member (it was away): the next resync puts it
            // back; until then it cannot move.
            let _ = events.send(Event::JoinFailed { member });
            return Ok(());
        };
        let (history, resumed) = self.history(con, room, None, last)?;
        let _ = events.send(Event::Answer(loaded(
            member, seq, room, history, last, resumed,
        )));
        Ok(())
    }

    pub(super) fn leave(
        &self,
        con: &mut Connection,
        member: ConnId,
        reason: &str,
    ) -> RedisResult<()> {
        self.scripts
            .leave
            .arg(member_key(&self.node, member))
            .arg(reason)
            .arg(now_ms())
            .arg(&self.node)
            .invoke::<i64>(con)
            .map(drop)
    }

    /// Member `member` takes the name `to` (key `key`), unless someone has it.
    pub(super) fn rename(
        &self,
        con: &mut Connection,
        member: ConnId,
        to: &str,
        key: &str,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let done: i64 = self
            .scripts
            .rename
            .arg(member_key(&self.node, member))
            .arg(to)
            .arg(key)
            .arg(now_ms())
            .invoke(con)?;
        if done == 0 {
            let to = to.to_owned();
            let _ = events.send(Event::NameTaken { member, to });
        }
        Ok(())
    }

    /// A relay message of member `member` to its room on every node.
    pub(super) fn relay(
        &self,
        con: &mut Connection,
        member: ConnId,
        room: &str,
        msg: &Message,
    ) -> RedisResult<()> {
        let from = member_key(&self.node, member);
        redis::cmd("PUBLISH")
            .arg(RELAY)
            .arg(listen::relay_payload(&from, room, msg))
            .exec(con)
    }

    /// After a gap: this node's members back into Redis, then what each room missed
    /// and who is where now.
    pub(super) fn resync(
        &mut self,
        con: &mut Connection,
        request: &Request,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        let Request::Resync {
            epoch,
            members,
            rooms,
        } = request
        else {
            return Ok(());
        };
        if *epoch != self.epoch {
            return Ok(());
        }
        let mut restore = self.scripts.restore.prepare_invoke();
        restore.arg(&self.node).arg(now_ms());
        for (id, name, room) in members {
            restore
                .arg(member_key(&self.node, *id))
                .arg(name)
                .arg(chat::name_key(name))
                .arg(room);
        }
        // A member whose name someone else took meanwhile is not put back: a name
        // has one holder. It is told to reconnect, and gets a name of its own.
        let displaced: Vec<String> = restore.invoke(con)?;
        let displaced: Vec<ConnId> = displaced
            .iter()
            .filter_map(|key| key.strip_prefix(self.node.as_str())?.strip_prefix('.'))
            .filter_map(|id| id.parse().ok())
            .collect();
        if !displaced.is_empty() {
            log::warn!(
                "cluster: {} members of this node lost their names to others while it \
                 was cut off; they are asked to reconnect",
                displaced.len()
            );
            let _ = events.send(Event::Displaced(displaced));
        }
        for (room, after) in rooms {
            let start = format!("({after}-0");
            let lines = range(con, "XRANGE", room, &start, "+", MAX_RESUME)?;
            if !lines.is_empty() {
                let _ = events.send(Event::CatchUp { lines });
            }
        }
        let _ = events.send(Event::Presence(present(con)?));
        Ok(())
    }

    /// Tells the hub who is in the cluster already, before it serves anyone: call it
    /// once the subscriber listens, so that every later change reaches the hub too.
    pub(crate) fn introduce(&mut self, events: &Sender<Event>) -> Result<(), Error> {
        let Some(con) = self.con.as_mut() else {
            return Ok(());
        };
        let everyone = present(con).map_err(|e| Error::Redis {
            url: masked(&self.url),
            problem: format!("cannot be read ({e})"),
        })?;
        let _ = events.send(Event::Presence(everyone));
        Ok(())
    }
}

/// A direct message for member `to`, on the bus to whichever node has it.
pub(super) fn direct(con: &mut Connection, to: &str, json: &str) -> RedisResult<()> {
    let payload = serde_json::json!({"k": "direct", "to": to, "json": json});
    redis::cmd("PUBLISH")
        .arg(BUS)
        .arg(payload.to_string())
        .exec(con)
}

/// Everyone Redis lists as in the cluster.
pub(super) fn present(con: &mut Connection) -> RedisResult<Vec<Present>> {
    let all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("switchboard:members")
        .query(con)?;
    Ok(all
        .into_iter()
        .filter_map(|(key, record)| {
            let record: Record = serde_json::from_str(&record).ok()?;
            Some(Present {
                key,
                name: record.name,
                room: record.room,
            })
        })
        .collect())
}

/// A member's record in `switchboard:members`.
#[derive(Deserialize)]
struct Record {
    name: String,
    room: String,
}
