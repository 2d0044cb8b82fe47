//! The files of a cluster, in Redis: every node serves every file, and a file outlives
//! the node it was posted on.
//!
//! A file posted on a node is on that node's disk first ([`crate::files`]); before its
//! message is stored, its bytes are copied to Redis (`switchboard:file:{id}`, one
//! string), so that the message never names a file the others cannot get. A node
//! asked for a file it does not have copies it from Redis to its own disk once, and
//! serves it from there (`Range`, `HEAD` and all). Redis thus holds every file's bytes
//! once per post: the total is bounded by `--max-files-bytes` (the oldest go first,
//! as on one node), and a file goes with its message when `--retain` trims it.
//!
//! Why Redis, and not the nodes fetching from each other: Redis is the one place
//! every node reaches already, and the one that outlives any node; a file kept on
//! two nodes would need the nodes to know and trust each other's addresses, and a
//! second copy to be made before the message, which is the same wait as Redis's.
//!
//! The copies run on a thread of their own with its own connection: a 100 MiB file
//! must never hold up the bridge, whose every message waits behind the one before.

use super::{TIMEOUT, open};
use crate::files::{FileError, Files, MirrorQueues, Mirrored};
use crossbeam_channel::select_biased;
use redis::{Connection, RedisResult, Script};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The bytes sent or read in one command: large enough for speed, small enough that
/// neither side holds much of a file in memory.
const CHUNK: usize = 1 << 20;
/// How long an upload to Redis not finished (its node died mid-copy) is kept.
const UPLOAD_TTL_SECS: u64 = 600;
/// How often an idle copier looks whether the server stops.
const POLL: Duration = Duration::from_millis(250);

/// Makes the copy in `KEYS[1]` (an upload) file `ARGV[1]` (`KEYS[2]`) of `ARGV[2]`
/// bytes, removing the oldest files while all together would take more than
/// `ARGV[3]` bytes. Returns 1, or 0 when even that leaves no room, or -1 when the
/// copy is missing or of another length (it expired, or a node's copy broke off).
pub(super) const FILE_KEEP: &str = r"
local size = tonumber(ARGV[2])
if redis.call('STRLEN', KEYS[1]) ~= size then
  redis.call('DEL', KEYS[1])
  return -1
end
local total = tonumber(redis.call('GET', 'switchboard:files:bytes') or 0)
while total + size > tonumber(ARGV[3]) do
  local oldest = redis.call('ZRANGE', 'switchboard:files', 0, 0)[1]
  if not oldest then
    redis.call('DEL', KEYS[1])
    return 0
  end
  total = total - drop_file(oldest)
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
redis.call('ZADD', 'switchboard:files', ARGV[4], ARGV[1])
redis.call('HSET', 'switchboard:files:size', ARGV[1], size)
redis.call('INCRBY', 'switchboard:files:bytes', size)
return 1
";

/// Lua that removes a file from Redis, for the scripts that need it: its bytes, its
/// place among the oldest, its share of the total. Returns the bytes freed.
pub(super) const DROP_FILE: &str = r"
local function drop_file(id)
  local size = redis.call('HGET', 'switchboard:files:size', id)
  if not size then return 0 end
  redis.call('DEL', 'switchboard:file:' .. id)
  redis.call('HDEL', 'switchboard:files:size', id)
  redis.call('ZREM', 'switchboard:files', id)
  redis.call('DECRBY', 'switchboard:files:bytes', size)
  return tonumber(size)
end
";

pub(super) fn file_key(id: &str) -> String {
    format!("switchboard:file:{id}")
}

/// The thread that copies files to and from Redis, until `stop`.
pub(crate) struct Copier {
    client: redis::Client,
    /// Weak: the files outlive no server; this thread must not keep them.
    files: Weak<Files>,
    con: Option<Connection>,
    keep: Script,
    stop: Arc<AtomicBool>,
}

impl Copier {
    pub(crate) fn new(client: redis::Client, files: &Arc<Files>, stop: Arc<AtomicBool>) -> Self {
        Copier {
            client,
            files: Arc::downgrade(files),
            con: None,
            keep: Script::new(&format!("{DROP_FILE}{FILE_KEEP}")),
            stop,
        }
    }

    /// Serves the requests one by one, a file to keep before a file asked for, until
    /// the server stops.
    pub(crate) fn run(mut self, queues: MirrorQueues) {
        while !self.stop.load(Ordering::Acquire) {
            let request = select_biased! {
                recv(queues.puts) -> request => request,
                recv(queues.fetches) -> request => request,
                default(POLL) => continue,
            };
            let Ok(request) = request else {
                return;
            };
            let Some(files) = self.files.upgrade() else {
                return;
            };
            match request {
                Mirrored::Put { id, size, reply } => {
                    let outcome = self.put(&files, &id, size);
                    let _ = reply.send(outcome);
                }
                Mirrored::Fetch { id, reply } => {
                    let here = files.has(&id) || self.fetch(&files, &id);
                    let _ = reply.send(here);
                }
            }
        }
    }

    /// Copies file `id` (`size` bytes, here) to Redis.
    fn put(&mut self, files: &Files, id: &str, size: u64) -> Result<(), FileError> {
        let Some(mut file) = files.open_here(id) else {
            return Err(FileError::Bad("the file is gone"));
        };
        let max_total = files.max_total;
        let outcome = (|| -> Result<i64, FileError> {
            let upload = format!("switchboard:upload:{id}");
            let con =
                connection(&self.client, &mut self.con).map_err(|_| FileError::Unavailable)?;
            redis::cmd("DEL")
                .arg(&upload)
                .exec(con)
                .map_err(|_| FileError::Unavailable)?;
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let n = read_full(&mut file, &mut chunk)?;
                if n == 0 {
                    break;
                }
                let data = chunk.get(..n).unwrap_or_default();
                redis::pipe()
                    .cmd("APPEND")
                    .arg(&upload)
                    .arg(data)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&upload)
                    .arg(UPLOAD_TTL_SECS)
                    .ignore()
                    .exec(con)
                    .map_err(|_| FileError::Unavailable)?;
            }
            self.keep
                .key(&upload)
                .key(file_key(id))
                .arg(id)
                .arg(size)
                .arg(max_total)
                .arg(crate::base::now_ms())
                .invoke(con)
                .map_err(|_| FileError::Unavailable)
        })();
        match outcome {
            Ok(1) => Ok(()),
            Ok(0) => Err(FileError::Full),
            Ok(_) => Err(FileError::Unavailable),
            Err(e) => {
                if matches!(e, FileError::Unavailable) {
                    self.con = None;
                    log::warn!("cluster: a file could not be copied to Redis; its sender is told");
                }
                Err(e)
            }
        }
    }

    /// Copies file `id` from Redis to this node; `false` when Redis has no such file
    /// (or cannot be reached, or there is no room here).
    fn fetch(&mut self, files: &Arc<Files>, id: &str) -> bool {
        let key = file_key(id);
        let outcome = (|| -> RedisResult<bool> {
            let con = connection(&self.client, &mut self.con)?;
            let size: u64 = redis::cmd("STRLEN").arg(&key).query(con)?;
            if size == 0 {
                return Ok(false);
            }
            let Ok(mut upload) = files.begin(size) else {
                return Ok(false);
            };
            let mut at = 0u64;
            while at < size {
                let end = (at + CHUNK as u64).min(size) - 1;
                let bytes: Vec<u8> = redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(at)
                    .arg(end)
                    .query(con)?;
                // Gone meanwhile (expired, trimmed): the copy is dropped unfinished.
                if bytes.is_empty() || upload.write(&bytes).is_err() {
                    return Ok(false);
                }
                at += bytes.len() as u64;
            }
            let here = upload.finish_as(id).is_ok();
            if here {
                files.trim_copies(id);
            }
            Ok(here)
        })();
        outcome.unwrap_or_else(|e| {
            self.con = None;
            log::warn!("cluster: a file could not be read from Redis ({e})");
            false
        })
    }
}

/// The copier's connection, opened again if the last one failed.
fn connection<'c>(
    client: &redis::Client,
    slot: &'c mut Option<Connection>,
) -> RedisResult<&'c mut Connection> {
    let con = match slot.take() {
        Some(con) => con,
        None => {
            let con = open(client)?;
            // A chunk is a megabyte: more than the bridge's read time-out allows for on
            // a slow link, so a little longer.
            con.set_read_timeout(Some(TIMEOUT * 5))?;
            con.set_write_timeout(Some(TIMEOUT * 5))?;
            con
        }
    };
    Ok(slot.insert(con))
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> Result<usize, FileError> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..)
        && !rest.is_empty()
    {
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
