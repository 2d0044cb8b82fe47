//! The files and pictures people share in the chat: their bytes on disk, streamed there
//! by the connection thread that receives them, never whole in memory and never through
//! the hub.
//!
//! Under the files directory (`files/` in `--data`, or a directory of its own in the
//! system's temporary directory, removed at exit, without one):
//!
//! - `tmp/{random}.part`: an upload on its way. It is removed when the upload fails or
//!   its sender goes, and at start-up (what a crash left behind): a file is never
//!   half-visible.
//! - `blobs/{hash}`: each content once, however often it is posted, named by its
//!   BLAKE3 hash (older files, by their SHA-256: a name is only ever compared with
//!   itself, so both live side by side).
//! - `ids/{id}`: one hard link to its blob per posted file, named by the file's random
//!   128-bit id. `GET /files/{id}/…` opens it: no lookup, no lock, no hub. The
//!   filesystem counts the links, so a blob's bytes go when its last file goes.
//!
//! A file is linked under its id (and synced) before the message that names it is
//! stored; an id no stored message names (a crash in between, a message the store
//! refused) is removed by [`Files::keep_only`] at start-up.
//!
//! In a cluster, the disk of one node is not enough: the node may die, and the others
//! must serve its files too. A [`Mirror`] (Redis, on a thread of its own) then takes
//! each file's bytes before its message is stored, and gives them to a node that is
//! asked for a file it does not have yet: this directory is that node's copy.

use crossbeam_channel::{Sender, bounded};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An upload is synced to disk every this many bytes: the store syncs every commit,
/// and waits behind whatever the disk has queued, so the queue is kept short.
const SYNC_EVERY: u64 = 1 << 20;

/// Length of a file id: 32 hex digits, 128 random bits.
pub(crate) const ID_LEN: usize = 32;

/// Where shared files live, and how big they may be.
#[derive(Debug)]
pub(crate) struct Files {
    root: PathBuf,
    /// Removed when the server stops: a directory of its own in the temporary one.
    temporary: bool,
    /// Largest file, in bytes.
    pub max_file_size: u64,
    /// Most bytes all files together may take.
    pub max_total: u64,
    /// The bytes all files take now: each content counted once.
    used: AtomicU64,
    /// The bytes announced by uploads on their way: together they stay within
    /// `max_total`, so many connections uploading at once cannot fill the disk.
    reserved: AtomicU64,
    /// Where a cluster keeps every file, set once its bridge is up.
    mirror: OnceLock<Mirror>,
}

/// The way to the thread that keeps files where every node reaches them (in a
/// cluster: Redis). It is asked from the thread that has the file, or wants it, and
/// that thread waits for the answer: the connection that uploaded it, the HTTP request
/// that asks for it; never the hub.
#[derive(Debug, Clone)]
pub(crate) struct Mirror {
    /// Files posted here, to be kept: a queue of their own, served first, so that
    /// requests for files (anyone may ask for any id) never crowd them out.
    puts: Sender<Mirrored>,
    fetches: Sender<Mirrored>,
}

/// The two queues a mirror's thread serves: puts first, then fetches.
pub(crate) struct MirrorQueues {
    pub puts: crossbeam_channel::Receiver<Mirrored>,
    pub fetches: crossbeam_channel::Receiver<Mirrored>,
}

/// What the mirror's thread is asked.
#[derive(Debug)]
pub(crate) enum Mirrored {
    /// Keep the bytes of the file posted here as `id` (`size` bytes): answered once
    /// they are safe, or why not.
    Put {
        id: String,
        size: u64,
        reply: Sender<Result<(), FileError>>,
    },
    /// Bring file `id` here, if it exists: answered `true` once it is here.
    Fetch { id: String, reply: Sender<bool> },
}

/// How many requests of each kind may wait for the mirror's thread; more are refused
/// at once (a fetch as "no such file").
const MIRROR_QUEUE: usize = 64;
/// How long a file's copy may take, beyond its bytes at [`MIRROR_RATE`].
const MIRROR_WAIT: Duration = Duration::from_secs(10);
/// The slowest a copy to or from the mirror may go, in bytes per second, before its
/// waiter gives up: far below loopback or a LAN.
const MIRROR_RATE: u64 = 10 << 20;

impl Mirror {
    /// A mirror, and the requests its thread is to serve.
    pub(crate) fn new() -> (Mirror, MirrorQueues) {
        let (puts, puts_rx) = bounded(MIRROR_QUEUE);
        let (fetches, fetches_rx) = bounded(MIRROR_QUEUE);
        let queues = MirrorQueues {
            puts: puts_rx,
            fetches: fetches_rx,
        };
        (Mirror { puts, fetches }, queues)
    }

    fn put(&self, id: &str, size: u64) -> Result<(), FileError> {
        let (reply, answer) = bounded(1);
        let request = Mirrored::Put {
            id: id.to_owned(),
            size,
            reply,
        };
        if self.puts.try_send(request).is_err() {
            return Err(FileError::Unavailable);
        }
        answer
            .recv_timeout(MIRROR_WAIT + Duration::from_secs(size / MIRROR_RATE))
            .unwrap_or(Err(FileError::Unavailable))
    }

    fn fetch(&self, id: &str) -> bool {
        let (reply, answer) = bounded(1);
        let request = Mirrored::Fetch {
            id: id.to_owned(),
            reply,
        };
        // The size is not known here: long enough for the largest file allowed.
        self.fetches.try_send(request).is_ok()
            && answer.recv_timeout(MIRROR_WAIT * 6).unwrap_or(false)
    }
}

/// Why an upload cannot go on.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Over the largest file size.
    TooLarge,
    /// More bytes than announced, or bytes nobody announced.
    Bad(&'static str),
    /// No room left for it.
    Full,
    /// Where a cluster keeps files did not take it (Redis is away or too slow).
    Unavailable,
    /// The disk said no.
    Io(io::Error),
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            // ENOSPC
            FileError::Full
        } else {
            FileError::Io(e)
        }
    }
}

impl Files {
    /// The files under `data` (its `files/` folder), or, without it, in a directory of
    /// their own that goes when the server stops. Removes what a crash left half-written.
    pub(crate) fn open(
        data: Option<&Path>,
        max_file_size: u64,
        max_total: u64,
    ) -> io::Result<Arc<Files>> {
        let (root, temporary) = match data {
            Some(data) => (data.join("files"), false),
            None => {
                let name = format!("switchboard-files-{}-{}", std::process::id(), random_id()?);
                (std::env::temp_dir().join(name), true)
            }
        };
        for dir in ["tmp", "blobs", "ids"] {
            private_dir(&root.join(dir))?;
        }
        for entry in fs::read_dir(root.join("tmp"))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let used = fs::read_dir(root.join("blobs"))?
            .flatten()
            .filter_map(|entry| entry.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(Arc::new(Files {
            root,
            temporary,
            max_file_size,
            max_total,
            used: AtomicU64::new(used),
            reserved: AtomicU64::new(0),
            mirror: OnceLock::new(),
        }))
    }

    /// From now on every file posted here is handed to `mirror` before its message is
    /// stored, and a file asked for that is not here is looked for there.
    pub(crate) fn mirror_to(&self, mirror: Mirror) {
        let _ = self.mirror.set(mirror);
    }

    /// Starts an upload of exactly `size` bytes.
    pub(crate) fn begin(self: &Arc<Self>, size: u64) -> Result<Upload, FileError> {
        if size > self.max_file_size {
            return Err(FileError::TooLarge);
        }
        self.start(Size::Exactly(size))
    }

    /// Starts an upload whose size is known only at its end, and is at most `bound`
    /// (the body it comes in): what may be needed, up to the largest file, is
    /// reserved now, before any byte is read.
    pub(crate) fn begin_at_most(self: &Arc<Self>, bound: u64) -> Result<Upload, FileError> {
        self.start(Size::AtMost(bound.min(self.max_file_size)))
    }

    fn start(self: &Arc<Self>, size: Size) -> Result<Upload, FileError> {
        let reserved = size.bound();
        let reserve = |taken: u64| taken.checked_add(reserved).filter(|&t| t <= self.max_total);
        if self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, reserve)
            .is_err()
        {
            return Err(FileError::Full);
        }
        let name = random_id().inspect_err(|_| self.unreserve(reserved))?;
        let path = self.root.join("tmp").join(format!("{name}.part"));
        // Readable by this user only, like the store: a file shared behind a password
        // is as private as the messages.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .inspect_err(|_| self.unreserve(reserved))?
        };
        Ok(Upload {
            files: Arc::clone(self),
            file: Some(file),
            path,
            hasher: blake3::Hasher::new(),
            size,
            written: 0,
            unsynced: 0,
        })
    }

    /// The file posted as `id`, to be read; `None` when there is none (a malformed id
    /// included: it never reaches the filesystem).
    /// In a cluster, a file posted on another node is brought here first.
    pub(crate) fn open_id(&self, id: &str) -> Option<File> {
        if !is_id(id) {
            return None;
        }
        self.open_here(id).or_else(|| {
            let mirror = self.mirror.get()?;
            mirror.fetch(id).then(|| self.open_here(id))?
        })
    }

    /// The file posted as `id`, if it is on this node's disk.
    pub(crate) fn open_here(&self, id: &str) -> Option<File> {
        if !is_id(id) {
            return None;
        }
        File::open(self.root.join("ids").join(id)).ok()
    }

    /// Whether file `id` is here.
    pub(crate) fn has(&self, id: &str) -> bool {
        is_id(id) && self.root.join("ids").join(id).exists()
    }

    /// Removes file `id`, and its bytes if no other file has them.
    pub(crate) fn remove(&self, id: &str) {
        if !is_id(id) {
            return;
        }
        let _ = fs::remove_file(self.root.join("ids").join(id));
        self.drop_unlinked_blobs();
    }

    /// Removes every file but those in `kept` (the ids stored messages name), and the
    /// bytes no file has any more.
    pub(crate) fn keep_only(&self, kept: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("ids"))?.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|id| kept.contains(id)) {
                let _ = fs::remove_file(entry.path());
                removed += 1;
            }
        }
        self.drop_unlinked_blobs();
        Ok(removed)
    }

    fn unreserve(&self, size: u64) {
        let _ = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(size))
            });
    }

    /// Whether all files together take more than they may: the oldest should go.
    pub(crate) fn over_quota(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.max_total
    }

    /// In a cluster, this disk is a copy of what Redis holds: while all files here take
    /// more than they may, the oldest copies go (any node can bring them back), never
    /// `keep`, the one just made.
    pub(crate) fn trim_copies(&self, keep: &str) {
        if self.mirror.get().is_none() || !self.over_quota() {
            return;
        }
        let Ok(entries) = fs::read_dir(self.root.join("ids")) else {
            return;
        };
        use std::os::unix::fs::MetadataExt;
        let mut copies: Vec<(std::time::SystemTime, PathBuf, u64)> = entries
            .flatten()
            .filter(|entry| entry.file_name() != keep)
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                // Its last file (the blob and this link): removing it frees its bytes.
                let frees = if meta.nlink() <= 2 { meta.len() } else { 0 };
                Some((meta.modified().ok()?, entry.path(), frees))
            })
            .collect();
        copies.sort();
        let mut over = self
            .used
            .load(Ordering::Relaxed)
            .saturating_sub(self.max_total);
        for (_, path, frees) in copies {
            if over == 0 {
                break;
            }
            if fs::remove_file(path).is_ok() {
                over = over.saturating_sub(frees);
            }
        }
        self.drop_unlinked_blobs();
    }

    /// Removes the blobs only `blobs/` links to: no file has their bytes any more.
    fn drop_unlinked_blobs(&self) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = fs::read_dir(self.root.join("blobs")) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.nlink() <= 1 && fs::remove_file(entry.path()).is_ok() {
                self.used.fetch_sub(
                    meta.len().min(self.used.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// The default for all files together: 10 GiB, or a tenth of the free space where they
/// go, whichever is less.
pub(crate) fn default_total(data: Option<&Path>) -> u64 {
    const TEN_GIB: u64 = 10 << 30;
    let dir = data.map_or_else(std::env::temp_dir, Path::to_path_buf);
    rustix::fs::statvfs(&dir)
        .map(|fs| (fs.f_bavail.saturating_mul(fs.f_frsize) / 10).min(TEN_GIB))
        .unwrap_or(TEN_GIB)
}

/// 128 random bits as 32 hex digits: a file's id, an upload's part name.
fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// Whether `id` looks like a file id: 32 lowercase hex digits.
fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How big an upload says it is: what its bytes are checked against, and what it
/// holds reserved of the total while it comes.
#[derive(Debug, Clone, Copy)]
enum Size {
    /// Announced before the bytes (a chat `file` request, a raw body): fewer or more
    /// is an error.
    Exactly(u64),
    /// Known at the end (a file part in a form): at most this, which is within the
    /// largest file.
    AtMost(u64),
}

impl Size {
    fn bound(self) -> u64 {
        match self {
            Size::Exactly(n) | Size::AtMost(n) => n,
        }
    }
}

/// One file on its way in: written to `tmp/` as it comes, hashed as it goes.
/// Dropped before [`Upload::finish`], it leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Upload {
    files: Arc<Files>,
    file: Option<File>,
    path: PathBuf,
    hasher: blake3::Hasher,
    size: Size,
    written: u64,
    /// Bytes written since the file was last synced.
    unsynced: u64,
}

impl Upload {
    /// Appends the next bytes; more than announced is [`FileError::Bad`], more than
    /// an upload of a size known at its end may have is [`FileError::TooLarge`].
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        let fits = u64::try_from(bytes.len())
            .ok()
            .and_then(|n| self.written.checked_add(n))
            .filter(|&total| total <= self.size.bound());
        let Some(total) = fits else {
            return Err(match self.size {
                Size::Exactly(_) => FileError::Bad("more bytes than the file announced"),
                Size::AtMost(_) => FileError::TooLarge,
            });
        };
        let Some(file) = self.file.as_mut() else {
            return Err(FileError::Bad("the file is complete"));
        };
        file.write_all(bytes)?;
        // Synced a megabyte at a time, not all at the end: a large file's bytes
        // then never stand between the disk and the store's next commit (whose sync
        // would wait behind them), and the last sync is short.
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            file.sync_data()?;
            self.unsynced = 0;
        }
        self.hasher.update(bytes);
        self.written = total;
        Ok(())
    }

    /// Whether every announced byte is in (an upload of a size known at its end is
    /// complete when its sender says so, by finishing it).
    pub(crate) fn is_complete(&self) -> bool {
        match self.size {
            Size::Exactly(n) => self.written == n,
            Size::AtMost(_) => true,
        }
    }

    /// The bytes written so far: the file's size once it is complete.
    pub(crate) fn len(&self) -> u64 {
        self.written
    }

    /// The width and height of the file when it is a picture a browser may show inline
    /// ([`picture_type`]) and its header says them; `None` otherwise. Only the first
    /// [`PICTURE_HEAD`] bytes are read, whatever the header claims.
    pub(crate) fn picture_size(&self) -> Option<(u32, u32)> {
        use std::io::Read;
        let mut head = Vec::new();
        File::open(&self.path)
            .ok()?
            .take(PICTURE_HEAD)
            .read_to_end(&mut head)
            .ok()?;
        picture_size(&head)
    }

    /// Makes the complete file durable and gives it its id: synced, its bytes under
    /// their hash (once, however often posted), linked under a new random id, and in a
    /// cluster handed to the mirror. Only then may a message name it.
    pub(crate) fn finish(self) -> Result<String, FileError> {
        let id = random_id()?;
        let files = Arc::clone(&self.files);
        let size = self.written;
        self.finish_as(&id)?;
        if let Some(mirror) = files.mirror.get() {
            if let Err(e) = mirror.put(&id, size) {
                files.remove(&id);
                return Err(e);
            }
            files.trim_copies(&id);
        }
        Ok(id)
    }

    /// Makes the complete file durable as file `id` (a file another node posted, when
    /// it is brought here).
    pub(crate) fn finish_as(mut self, id: &str) -> Result<(), FileError> {
        if !self.is_complete() {
            return Err(FileError::Bad("fewer bytes than the file announced"));
        }
        let Some(file) = self.file.take() else {
            return Err(FileError::Bad("the file is complete"));
        };
        file.sync_all()?;
        drop(file);
        let hash = self.hasher.finalize().to_hex();
        let blob = self.files.root.join("blobs").join(hash.as_str());
        match fs::hard_link(&self.path, &blob) {
            Ok(()) => {
                self.files.used.fetch_add(self.written, Ordering::Relaxed);
            }
            // The same bytes were posted before: this copy is not needed.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        match fs::hard_link(&blob, self.files.root.join("ids").join(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        sync_dir(&self.files.root.join("blobs"))?;
        sync_dir(&self.files.root.join("ids"))?;
        let _ = fs::remove_file(&self.path);
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Finished or not, the part file goes: its bytes are linked or abandoned.
        let _ = fs::remove_file(&self.path);
        self.files.unreserve(self.size.bound());
    }
}

/// Creates `dir` (and its parents) readable by this user only.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes the names in `dir` durable (a link is in the directory, not in the file).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How much of a picture is read for its width and height: a JPEG may carry a few
/// 64 KiB segments (EXIF, a colour profile) before the one that says its size.
const PICTURE_HEAD: u64 = 256 * 1024;

/// The width and height a picture's first bytes say (both at least 1), when it is one
/// of [`picture_type`]'s; `None` for anything else, or a header that does not add up.
pub(crate) fn picture_size(head: &[u8]) -> Option<(u32, u32)> {
    picture_type(head)?;
    let size = imagesize::blob_size(head).ok()?;
    let width = u32::try_from(size.width).ok().filter(|&w| w > 0)?;
    let height = u32::try_from(size.height).ok().filter(|&h| h > 0)?;
    Some((width, height))
}

/// What a file's first bytes say it is, when it is a picture a browser may show
/// inline: PNG, JPEG, GIF or WebP. Anything else (SVG and HTML among them) is `None`:
/// served as a download, whatever its sender called it.
pub(crate) fn picture_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Arc<Files> {
        Files::open(None, 1 << 20, 1 << 30).unwrap()
    }

    #[test]
    fn a_file_is_stored_once_per_content_and_served_by_id() {
        let files = files();
        let post = |bytes: &[u8]| {
            let mut up = files.begin(bytes.len() as u64).unwrap();
            up.write(bytes).unwrap();
            up.finish().unwrap()
        };
        let (a, b) = (post(b"same"), post(b"same"));
        assert_ne!(a, b, "every post has an id of its own");
        assert_eq!(fs::read_dir(files.root.join("blobs")).unwrap().count(), 1);
        let mut read = String::new();
        io::Read::read_to_string(&mut files.open_id(&a).unwrap(), &mut read).unwrap();
        assert_eq!(read, "same");
        files.remove(&a);
        assert!(files.open_id(&a).is_none());
        assert_eq!(fs::read_dir(files.root.join("blobs")).unwrap().count(), 1);
        files.remove(&b);
        assert_eq!(fs::read_dir(files.root.join("blobs")).unwrap().count(), 0);
    }

    #[test]
    fn an_unfinished_upload_leaves_nothing() {
        let files = files();
        let mut up = files.begin(10).unwrap();
        up.write(b"12345").unwrap();
        assert!(matches!(up.write(b"123456"), Err(FileError::Bad(_))));
        drop(up);
        assert_eq!(fs::read_dir(files.root.join("tmp")).unwrap().count(), 0);
        assert!(matches!(files.begin(2 << 20), Err(FileError::TooLarge)));
    }

    #[test]
    fn uploads_on_their_way_together_stay_within_the_total() {
        let files = Files::open(None, 600, 1000).unwrap();
        let first = files.begin(600).unwrap();
        assert!(
            matches!(files.begin(600), Err(FileError::Full)),
            "1,200 > 1,000"
        );
        let small = files.begin(400).unwrap();
        drop(first);
        let again = files.begin(600).unwrap();
        drop((small, again));
        assert_eq!(files.reserved.load(Ordering::Relaxed), 0, "all given back");
    }

    #[test]
    fn an_upload_of_unknown_size_reserves_its_bound_and_may_end_short() {
        let files = Files::open(None, 600, 1000).unwrap();
        let mut up = files.begin_at_most(5000).unwrap();
        assert_eq!(
            files.reserved.load(Ordering::Relaxed),
            600,
            "at most a file"
        );
        assert!(matches!(files.begin(600), Err(FileError::Full)));
        up.write(b"abc").unwrap();
        assert!(matches!(up.write(&[0; 598]), Err(FileError::TooLarge)));
        assert_eq!(up.len(), 3);
        let id = up.finish().unwrap();
        assert_eq!(files.reserved.load(Ordering::Relaxed), 0);
        let mut read = String::new();
        io::Read::read_to_string(&mut files.open_id(&id).unwrap(), &mut read).unwrap();
        assert_eq!(read, "abc");
    }

    #[test]
    fn ids_that_are_not_ids_never_reach_the_disk() {
        let files = files();
        for id in [
            "../../etc/passwd",
            "",
            "ABCDEF0123456789abcdef0123456789",
            "x",
        ] {
            assert!(files.open_id(id).is_none(), "{id}");
        }
    }

    /// A 3×2 PNG, whole: signature, IHDR, IDAT, IEND.
    const PNG_3X2: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0x12,
        0x16, 0xf1, 0x4d, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0x00, 0x41, 0x0c, 0x70, 0x16, 0x00, 0x41, 0xd2, 0x05, 0xfb, 0x87, 0xf0, 0xb9,
        0x48, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn a_pictures_size_comes_from_its_header_and_a_lying_one_gives_none() {
        assert_eq!(picture_size(PNG_3X2), Some((3, 2)));
        // Every cut of the header, and garbage after a picture's signature: no size, no
        // panic.
        for n in 0..PNG_3X2.len() {
            let _ = picture_size(&PNG_3X2[..n]);
        }
        assert_eq!(picture_size(&PNG_3X2[..12]), None);
        let mut zero = PNG_3X2.to_vec();
        zero[16..20].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(picture_size(&zero), None, "a width of 0 is no picture");
        for head in [
            &b"\xff\xd8\xff\xe0\xff\xff\xff\xff"[..],
            b"\xff\xd8\xff",
            b"GIF89a",
            b"RIFF\xff\xff\xff\xffWEBPVP8X",
            b"RIFF\0\0\0\0WEBPVP8 \xff\xff\xff\xff",
        ] {
            let _ = picture_size(head);
        }
        // Not one of the four: no size, whatever the bytes after.
        assert_eq!(picture_size(b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0"), None);
        assert_eq!(picture_size(b"<svg width='3' height='2'/>"), None);
    }

    #[test]
    fn only_the_four_picture_types_are_pictures() {
        assert_eq!(picture_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(picture_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(picture_type(b"<svg xmlns="), None);
        assert_eq!(picture_type(b"<html>"), None);
        assert_eq!(picture_type(b""), None);
    }
}
