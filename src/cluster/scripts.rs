//! The Lua scripts that change shared state. Redis runs each one atomically, so every
//! step that must not interleave with another node's (an id and its message, a name
//! and its owner, a join and the room's newest id) is one script, and its event is
//! published from inside it: the order of the events on the bus is the order of the
//! changes.
//!
//! Keys (all under `switchboard:`): `epoch` and `session_key` (strings), `ids` (hash:
//! room → newest id), `rooms` (sorted set of the rooms in `ids`, for paging by name),
//! `room:{room}` (a stream per room, entry ids `{id}-0`), `names`
//! (hash: a name's key, [`chat::name_key`] → member), `members` (hash: member →
//! `{name,lower,room}`, `lower` being the name's key),
//! `nodes` (sorted set: node → last heartbeat, ms), `node:{node}` (set of members),
//! `deleted:{room}` (hash: id of a deleted message of the room → who deleted it),
//! `moderation` (hash: `{room} {key}` → a moderation rule as JSON, written with its
//! news in one `MULTI` by the bridge, not by a script: nothing else it must not
//! interleave with; [`CLEAR`]'s news says how far it cleared, so a message that
//! comes between the script and its news is told apart by its id).
//! A member is `{node}.{connection id}`.

use crate::chat;

/// Gives each message of a batch its room's next id, keeps it (trimmed to `retain`)
/// and publishes it, in order; returns the ids. One script for the whole batch, so a
/// batch is one reply to wait for: a stalled Redis costs one read's time-out, however
/// many messages were in flight.
///
/// A batch is stored once, whatever happens to the reply: its ids are kept under the
/// batch's token for an hour, and the same batch sent again (the bridge does when the
/// reply never came) gets them back without storing anything twice. A message is
/// stored once per key too (a chat `cid`, an `Idempotency-Key`, whichever node it
/// came through, for as many seconds as given): one whose key was stored before is
/// not stored again, and its id comes back negated. The files of the messages trimmed
/// away are removed (`drop_file`, [`super::files::DROP_FILE`], comes before this
/// script). KEYS: each message's room
/// stream. ARGV: retain, the batch's token, then for each message room, from, text,
/// ts, via, its file (or empty), its key (or empty) and how long to keep the key.
pub(super) const APPEND: &str = r"
local done = 'switchboard:batch:' .. ARGV[2]
local stored = redis.call('GET', done)
if stored then return cjson.decode(stored) end
local ids = {}
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 8
  local room, from, text, ts, via, file, key, ttl = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
    ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  local before = false
  if key ~= '' then before = redis.call('GET', key) end
  if before then
    ids[i] = -tonumber(before)
  else
    local id = redis.call('HINCRBY', 'switchboard:ids', room, 1)
    if id == 1 then redis.call('ZADD', 'switchboard:rooms', 0, room) end
    -- The files of the messages the trim below removes go with them, and so do
    -- their tombstones.
    local excess = redis.call('XLEN', KEYS[i]) - tonumber(ARGV[1]) + 1
    if excess > 0 then
      for _, entry in ipairs(redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', excess)) do
        redis.call('HDEL', 'switchboard:deleted:' .. room, string.match(entry[1], '^%d+'))
        local fields = entry[2]
        for f = 1, #fields - 1, 2 do
          if fields[f] == 'file' then
            local ok, old = pcall(cjson.decode, fields[f + 1])
            if ok and type(old) == 'table' and type(old.id) == 'string' then drop_file(old.id) end
          end
        end
      end
    end
    if file == '' then
      redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[1], id .. '-0',
        'f', from, 't', text, 'ts', ts, 'v', via)
    else
      redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[1], id .. '-0',
        'f', from, 't', text, 'ts', ts, 'v', via, 'file', file)
    end
    redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'msg', room = room, id = id,
      from = from, text = text, ts = tonumber(ts), via = via, file = file}))
    if key ~= '' then redis.call('SET', key, id, 'EX', ttl) end
    ids[i] = id
  end
end
redis.call('SET', done, cjson.encode(ids), 'EX', 3600)
return ids
";

/// Deletes a message: a tombstone in the room's `deleted` hash (a stream entry cannot
/// be edited: every read applies the tombstones), its file dropped from Redis, and
/// the `deleted` change published. Returns `{1, file id or ''}` when done, `{0, ''}`
/// when there is no such message (or it is deleted already), `{-1, ''}` when it is
/// not the asker's. The message is the asker's when it was sent under its name from a
/// chat client ([`crate::store::may_delete`]). KEYS: the room's stream, its tombstones.
/// ARGV: room, id, by, 1 for an admin (else 0).
pub(super) const DELETE: &str = r"
local id = ARGV[2]
local found = redis.call('XRANGE', KEYS[1], id .. '-0', id .. '-0')
if #found == 0 or redis.call('HEXISTS', KEYS[2], id) == 1 then return {0, ''} end
local from, via, file = '', '', ''
local fields = found[1][2]
for f = 1, #fields - 1, 2 do
  if fields[f] == 'f' then from = fields[f + 1]
  elseif fields[f] == 'v' then via = fields[f + 1]
  elseif fields[f] == 'file' then file = fields[f + 1] end
end
if ARGV[4] ~= '1' and (from ~= ARGV[3] or via ~= '') then return {-1, ''} end
redis.call('HSET', KEYS[2], id, ARGV[3])
local dropped = ''
if file ~= '' then
  local ok, f = pcall(cjson.decode, file)
  if ok and type(f) == 'table' and type(f.id) == 'string' then
    drop_file(f.id)
    dropped = f.id
  end
end
redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'deleted', room = ARGV[1],
  id = tonumber(id), by = ARGV[3], file = dropped}))
return {1, dropped}
";

/// Empties a room's history: every entry of its stream goes, with the files they
/// shared and the room's tombstones; its id counter stays, so ids go on. Returns the
/// room's newest id (as text) and the ids of the files dropped. KEYS: the room's
/// stream, its tombstones. ARGV: room.
pub(super) const CLEAR: &str = r"
local dropped = {tostring(tonumber(redis.call('HGET', 'switchboard:ids', ARGV[1]) or '0'))}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for f = 1, #fields - 1, 2 do
    if fields[f] == 'file' then
      local ok, file = pcall(cjson.decode, fields[f + 1])
      if ok and type(file) == 'table' and type(file.id) == 'string' then
        drop_file(file.id)
        table.insert(dropped, file.id)
      end
    end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return dropped
";

/// A member joins: the first free of the names offered (pairs of name and key),
/// else `guest-N`. Returns the name and the room's newest id, which splits the
/// room's messages into those before the join (its history) and those after
/// (delivered live). ARGV: member, room, ts, node, the key of `guest-`, the keys of
/// the digits 0 to 9 ([`guest_keys`]), then name, key, name, key, ….
pub(super) const JOIN: &str = r"
local name, lower
for i = 16, #ARGV, 2 do
  if redis.call('HSETNX', 'switchboard:names', ARGV[i + 1], ARGV[1]) == 1 then
    name, lower = ARGV[i], ARGV[i + 1]
    break
  end
end
if not name then
  local digits = {}
  for d = 0, 9 do digits[tostring(d)] = ARGV[6 + d] end
  repeat
    local n = tostring(redis.call('INCR', 'switchboard:guests'))
    name = 'guest-' .. n
    lower = ARGV[5] .. (string.gsub(n, '%d', digits))
  until redis.call('HSETNX', 'switchboard:names', lower, ARGV[1]) == 1
end
redis.call('HSET', 'switchboard:members', ARGV[1],
  cjson.encode({name = name, lower = lower, room = ARGV[2]}))
redis.call('SADD', 'switchboard:node:' .. ARGV[4], ARGV[1])
local last = tonumber(redis.call('HGET', 'switchboard:ids', ARGV[2]) or 0)
redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'join', m = ARGV[1], name = name,
  room = ARGV[2], last = last, ts = tonumber(ARGV[3])}))
return {name, last}
";

/// The keys [`JOIN`] builds a `guest-N`'s key from, as Lua cannot compute one: the
/// key of `guest-`, then those of the digits 0 to 9. For these ASCII characters a
/// key is made character by character, so the key of `guest-N` is the first followed
/// by the keys of N's digits (a test below checks it).
pub(super) fn guest_keys() -> Vec<String> {
    std::iter::once(chat::name_key("guest-"))
        .chain((0..10).map(|d| chat::name_key(&d.to_string())))
        .collect()
}

/// A member moves to a room (or asks for its own room again): returns the room's
/// newest id, or -1 for a member Redis does not know. ARGV: member, room, ts.
pub(super) const SWITCH: &str = r"
local rec = redis.call('HGET', 'switchboard:members', ARGV[1])
if not rec then return -1 end
rec = cjson.decode(rec)
rec.room = ARGV[2]
redis.call('HSET', 'switchboard:members', ARGV[1], cjson.encode(rec))
local last = tonumber(redis.call('HGET', 'switchboard:ids', ARGV[2]) or 0)
redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'switch', m = ARGV[1],
  room = ARGV[2], last = last, ts = tonumber(ARGV[3])}))
return last
";

/// Forgets a member and frees its name. The function `forget` is shared by the
/// scripts that remove members.
const FORGET: &str = r"
local function forget(key, reason, ts)
  local rec = redis.call('HGET', 'switchboard:members', key)
  if not rec then return 0 end
  rec = cjson.decode(rec)
  if redis.call('HGET', 'switchboard:names', rec.lower) == key then
    redis.call('HDEL', 'switchboard:names', rec.lower)
  end
  redis.call('HDEL', 'switchboard:members', key)
  redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'leave', m = key,
    reason = reason, ts = ts}))
  return 1
end
";

/// A member left. ARGV: member, reason, ts, node.
pub(super) fn leave() -> String {
    format!(
        "{FORGET}
redis.call('SREM', 'switchboard:node:' .. ARGV[4], ARGV[1])
if forget(ARGV[1], ARGV[2], tonumber(ARGV[3])) == 0 then
  -- Reaped while its node could not reach Redis: the others heard of it then, and
  -- its own node hears it now.
  redis.call('PUBLISH', 'switchboard:bus', cjson.encode({{k = 'leave', m = ARGV[1],
    reason = ARGV[2], ts = tonumber(ARGV[3])}}))
end
return 1
"
    )
}

/// A member takes a new name, unless someone else has it: 1 done, 0 taken, -1 an
/// unknown member. ARGV: member, name, its key, ts.
pub(super) const RENAME: &str = r"
local rec = redis.call('HGET', 'switchboard:members', ARGV[1])
if not rec then return -1 end
local owner = redis.call('HGET', 'switchboard:names', ARGV[3])
if owner and owner ~= ARGV[1] then return 0 end
rec = cjson.decode(rec)
if rec.lower ~= ARGV[3] then redis.call('HDEL', 'switchboard:names', rec.lower) end
redis.call('HSET', 'switchboard:names', ARGV[3], ARGV[1])
rec.name, rec.lower = ARGV[2], ARGV[3]
redis.call('HSET', 'switchboard:members', ARGV[1], cjson.encode(rec))
redis.call('PUBLISH', 'switchboard:bus', cjson.encode({k = 'rename', m = ARGV[1],
  to = ARGV[2], ts = tonumber(ARGV[4])}))
return 1
";

/// This node's heartbeat, by Redis's clock; with `reap` 1, every node silent for
/// longer than `ttl` ms has its members leave with reason `node_lost`. Returns `1` if
/// Redis knew this node, `0` if it did not (its data was lost, or the node was reaped
/// while it could not reach Redis), then each node it reaped and how many members it
/// had. ARGV: node, ttl, reap.
pub(super) fn beat() -> String {
    format!(
        "{FORGET}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', 'switchboard:nodes', ARGV[1])
redis.call('ZADD', 'switchboard:nodes', now, ARGV[1])
local answer = {{known and '1' or '0'}}
if ARGV[3] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', 'switchboard:nodes', '-inf',
    now - tonumber(ARGV[2]))
  for _, node in ipairs(dead) do
    local set = 'switchboard:node:' .. node
    local members = redis.call('SMEMBERS', set)
    for _, key in ipairs(members) do
      forget(key, 'node_lost', now)
    end
    redis.call('DEL', set)
    redis.call('ZREM', 'switchboard:nodes', node)
    table.insert(answer, node)
    table.insert(answer, tostring(#members))
  end
end
return answer
"
    )
}

/// Makes Redis's list of this node's members what the node says it is, after Redis
/// was out of reach: who left meanwhile leaves now, who is missing (the node was
/// reaped, or Redis lost its data) joins again (`restore`, not shown as news to the
/// node's own members). ARGV: node, ts, then member, name, key, room for each.
pub(super) fn restore() -> String {
    format!(
        "{FORGET}
local set = 'switchboard:node:' .. ARGV[1]
local ts = tonumber(ARGV[2])
local keep = {{}}
for i = 3, #ARGV, 4 do keep[ARGV[i]] = true end
for _, key in ipairs(redis.call('SMEMBERS', set)) do
  if not keep[key] then
    forget(key, 'closed', ts)
    redis.call('SREM', set, key)
  end
end
local displaced = {{}}
for i = 3, #ARGV, 4 do
  local key, name, lower, room = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if not redis.call('HGET', 'switchboard:members', key) then
    local holder = redis.call('HGET', 'switchboard:names', lower)
    if holder and holder ~= key then
      table.insert(displaced, key)
    else
      redis.call('HSET', 'switchboard:names', lower, key)
      redis.call('HSET', 'switchboard:members', key,
        cjson.encode({{name = name, lower = lower, room = room}}))
      redis.call('SADD', set, key)
      local last = tonumber(redis.call('HGET', 'switchboard:ids', room) or 0)
      redis.call('PUBLISH', 'switchboard:bus', cjson.encode({{k = 'join', m = key,
        name = name, room = room, last = last, ts = ts, restore = true}}))
    end
  end
end
return displaced
"
    )
}

/// A node that stops cleanly leaves the list of nodes; members of it that Redis
/// still lists (their leave was lost on the way) leave now, reason `shutdown`.
/// ARGV: node, ts.
pub(super) fn goodbye() -> String {
    format!(
        "{FORGET}
local set = 'switchboard:node:' .. ARGV[1]
for _, key in ipairs(redis.call('SMEMBERS', set)) do
  forget(key, 'shutdown', tonumber(ARGV[2]))
end
redis.call('DEL', set)
redis.call('ZREM', 'switchboard:nodes', ARGV[1])
return 1
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the join script does with [`guest_keys`], in Rust.
    fn lua_guest_key(n: u64) -> String {
        let keys = guest_keys();
        let mut key = keys[0].clone();
        for d in n.to_string().bytes() {
            key.push_str(&keys[usize::from(d - b'0') + 1]);
        }
        key
    }

    #[test]
    fn a_guest_is_keyed_in_lua_as_in_rust() {
        for n in (0..2000).chain([9_876_543_210, u64::MAX]) {
            assert_eq!(
                lua_guest_key(n),
                chat::name_key(&format!("guest-{n}")),
                "{n}"
            );
        }
    }
}
