//! Durable chat through the library: history kept across a restart in a
//! data directory, resume without gaps or duplicates, scroll-back, retention, what is
//! not stored, and a store that fails at run time and recovers.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use switchboard::{Error, Server, ServerHandle};
use tungstenite::Message;

fn durable(dir: &TempDir) -> ServerHandle {
    start_with(|b| b.data_dir(dir.path()).rate_per_sec(1000).rate_burst(1000))
}

/// `(id, text)` of every message in a JSON list.
fn ids_and_texts(list: &Value) -> Vec<(u64, String)> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().expect("an id"),
                m["text"].as_str().expect("a text").to_owned(),
            )
        })
        .collect()
}

/// Says `text` and waits for it to come back stored; returns its id.
fn said(ws: &mut Client, text: &str) -> u64 {
    say(ws, text);
    let msg = next_of_type(ws, "message");
    assert_eq!(msg["text"], text);
    msg["id"].as_u64().expect("an id")
}

#[test]
fn history_and_ids_survive_a_restart_on_the_same_data_dir() {
    let dir = TempDir::new("restart");
    let server = durable(&dir);
    assert_eq!(
        server.store_path(),
        Some(dir.path().join("chat.sqlite3").as_path())
    );
    let (mut alice, welcome) = chat(server.local_addr(), "keep", Some("alice"));
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["last_id"], 0);
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let ids: Vec<u64> = ["one", "two", "three"]
        .iter()
        .map(|t| said(&mut alice, t))
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    drop(alice);
    server.shutdown();

    let server = durable(&dir);
    let (mut bob, welcome) = chat(server.local_addr(), "keep", Some("bob"));
    assert_eq!(
        ids_and_texts(&welcome["history"]),
        [(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    assert_eq!(
        welcome["epoch"],
        epoch.as_str(),
        "the same store, the same epoch"
    );
    assert_eq!(welcome["last_id"], 3);
    assert_eq!(said(&mut bob, "four"), 4, "ids go on, never reused");
}

#[test]
fn without_a_data_dir_every_start_is_a_new_epoch() {
    let a = start();
    let b = start();
    let (_x, wa) = chat(a.local_addr(), "lobby", None);
    let (_y, wb) = chat(b.local_addr(), "lobby", None);
    assert_ne!(wa["epoch"], wb["epoch"]);
    assert_eq!(a.store_path(), None);
}

#[test]
fn resume_gives_exactly_the_missed_messages() {
    let server = start();
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "resume", Some("alice"));
    let seen = said(&mut alice, "seen");
    let (_bob, welcome) = chat(addr, "resume", Some("bob"));
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let missed: Vec<(u64, String)> = ["m1", "m2", "m3"]
        .iter()
        .map(|t| (said(&mut alice, t), t.to_string()))
        .collect();
    let (_back, welcome) = chat_url(
        addr,
        &format!("/ws/chat/resume?name=bob2&since={seen}&epoch={epoch}"),
    );
    assert_eq!(welcome["resumed"], true);
    assert_eq!(ids_and_texts(&welcome["history"]), missed);
    assert_eq!(welcome["last_id"], missed[2].0);

    // Nothing missed: an empty, resumed history.
    let last = missed[2].0;
    let (_up_to_date, welcome) = chat_url(
        addr,
        &format!("/ws/chat/resume?name=bob3&since={last}&epoch={epoch}"),
    );
    assert_eq!(
        (welcome["resumed"].clone(), welcome["history"].clone()),
        (json!(true), json!([]))
    );

    // Another store's ids mean nothing here: the usual history, not resumed.
    let (_stranger, welcome) = chat_url(
        addr,
        &format!("/ws/chat/resume?name=bob4&since={seen}&epoch=somewhere-else"),
    );
    assert_eq!(welcome["resumed"], false);
    assert_eq!(ids_and_texts(&welcome["history"]).len(), 4);
}

#[test]
fn a_gap_beyond_what_is_retained_is_not_resumed() {
    let server = start_with(|b| b.retain(3).rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut alice, welcome) = chat(addr, "gap", Some("alice"));
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let first = said(&mut alice, "1");
    for text in ["2", "3", "4", "5"] {
        said(&mut alice, text);
    }
    // 2 was deleted by retention: a client that saw only 1 cannot be caught up.
    let (_late, welcome) = chat_url(
        addr,
        &format!("/ws/chat/gap?name=late&since={first}&epoch={epoch}"),
    );
    assert_eq!(welcome["resumed"], false);
    assert_eq!(
        ids_and_texts(&welcome["history"]),
        [(3, "3".into()), (4, "4".into()), (5, "5".into())],
        "only the newest 3 are kept"
    );
}

#[test]
fn history_pages_backwards_oldest_first_with_more() {
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "pages", Some("alice"));
    for i in 1..=7 {
        said(&mut alice, &format!("m{i}"));
    }
    send_json(
        &mut alice,
        json!({"type": "history", "before": 6, "limit": 3}),
    );
    let page = next_of_type(&mut alice, "history");
    assert_eq!(page["room"], "pages");
    assert_eq!(
        ids_and_texts(&page["messages"]),
        [(3, "m3".into()), (4, "m4".into()), (5, "m5".into())]
    );
    assert_eq!(page["more"], true);
    send_json(
        &mut alice,
        json!({"type": "history", "before": 3, "limit": 3}),
    );
    let page = next_of_type(&mut alice, "history");
    assert_eq!(
        ids_and_texts(&page["messages"]),
        [(1, "m1".into()), (2, "m2".into())]
    );
    assert_eq!(page["more"], false);
    // No `before`: the newest page.
    send_json(&mut alice, json!({"type": "history", "limit": 2}));
    let page = next_of_type(&mut alice, "history");
    assert_eq!(
        ids_and_texts(&page["messages"]),
        [(6, "m6".into()), (7, "m7".into())]
    );
}

#[test]
fn direct_messages_are_not_stored() {
    let dir = TempDir::new("direct");
    let server = durable(&dir);
    let (mut alice, _) = chat(server.local_addr(), "dm", Some("alice"));
    let (_bob, _) = chat(server.local_addr(), "dm", Some("bob"));
    send_json(
        &mut alice,
        json!({"type": "direct", "to": "bob", "text": "psst"}),
    );
    assert_eq!(next_of_type(&mut alice, "direct")["text"], "psst");
    said(&mut alice, "public");
    drop(alice);
    server.shutdown();
    let server = durable(&dir);
    let (_carol, welcome) = chat(server.local_addr(), "dm", Some("carol"));
    assert_eq!(ids_and_texts(&welcome["history"]), [(1, "public".into())]);
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_naming_the_file() {
    let dir = TempDir::new("twice");
    let _first = durable(&dir);
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .expect_err("the store is in use");
    let Error::Store { path, problem, .. } = &err else {
        panic!("expected a store error, got {err:?}");
    };
    assert_eq!(path, &dir.path().join("chat.sqlite3"));
    assert!(problem.contains("in use"), "{problem}");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_naming_it() {
    let dir = TempDir::new("garbage");
    std::fs::write(dir.path().join("chat.sqlite3"), b"these are not the bytes of a database, just text, long enough to be read as a header by SQLite itself").unwrap();
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .expect_err("not SQLite");
    assert!(
        matches!(&err, Error::Store { path, .. } if path.ends_with("chat.sqlite3")),
        "{err:?}"
    );
    assert!(err.to_string().contains("chat.sqlite3"), "{err}");
}

#[test]
fn a_store_that_cannot_be_read_is_refused_naming_it() {
    // Root reads every file, so unreadable is made the one way that works for root
    // too: something that is not a file stands where the store should be.
    let dir = TempDir::new("unreadable");
    std::fs::create_dir(dir.path().join("chat.sqlite3")).unwrap();
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .expect_err("a directory is no store");
    assert!(
        matches!(&err, Error::Store { path, .. } if path.ends_with("chat.sqlite3")),
        "{err:?}"
    );
}

#[test]
fn a_store_from_a_newer_version_is_refused() {
    let dir = TempDir::new("newer");
    {
        let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
        db.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .expect_err("a newer schema");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A post with `Idempotency-Key: key`; the answer.
fn post_keyed(addr: std::net::SocketAddr, key: &str, text: &str) -> String {
    raw(
        addr,
        format!(
            "POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer t0ken\r\nContent-Type: text/plain\r\n\
             Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    )
}

/// A client that sent a message and lost the server before it saw the answer sends
/// it again, with its `cid`, once the server is back; a script retries its post with
/// its `Idempotency-Key`. Neither is stored twice: the store keeps the keys, so a
/// restart forgets none of them, and each retry is answered with what was stored.
#[test]
fn a_retry_after_a_restart_is_not_stored_twice() {
    let dir = TempDir::new("keys_restart");
    let keyed = |dir: &TempDir| start_with(|b| b.data_dir(dir.path()).api_token("t0ken"));
    let once = json!({"type": "message", "text": "once", "cid": "c-1"});
    let server = keyed(&dir);
    let (mut ann, _) = chat(server.local_addr(), "lobby", Some("ann"));
    send_json(&mut ann, once.clone());
    let first = next_of_type(&mut ann, "message");
    let posted = post_keyed(server.local_addr(), "k-1", "posted once");
    assert_eq!(status(&posted), 201, "{posted}");
    let posted: Value = serde_json::from_str(body(&posted)).expect("JSON");
    drop(ann);
    server.shutdown();

    let server = keyed(&dir);
    let (mut ann, _) = chat(server.local_addr(), "lobby", Some("ann"));
    send_json(&mut ann, once);
    let again = next_of_type(&mut ann, "message");
    assert_eq!(
        (&again["id"], &again["text"]),
        (&first["id"], &json!("once"))
    );
    let reposted = post_keyed(server.local_addr(), "k-1", "posted once");
    assert_eq!(status(&reposted), 201, "{reposted}");
    let reposted: Value = serde_json::from_str(body(&reposted)).expect("JSON");
    assert_eq!(reposted["id"], posted["id"]);
    // The same cid in another room is another message.
    let (mut elsewhere, _) = chat(server.local_addr(), "other", Some("bob"));
    send_json(
        &mut elsewhere,
        json!({"type": "message", "text": "once", "cid": "c-1"}),
    );
    assert_eq!(next_of_type(&mut elsewhere, "message")["id"], 1);
    assert_eq!(said(&mut ann, "next"), 3);
    let (_, welcome) = chat(server.local_addr(), "lobby", Some("cat"));
    assert_eq!(
        ids_and_texts(&welcome["history"]),
        [
            (1, "once".into()),
            (2, "posted once".into()),
            (3, "next".into())
        ]
    );
}

#[test]
fn a_version_1_store_is_upgraded_and_keeps_its_messages() {
    let dir = TempDir::new("v1");
    {
        // The first schema switchboard wrote, as a file of that version has it.
        let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
        db.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('epoch', 'old-epoch');
             CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL,
                 sender TEXT NOT NULL, text TEXT NOT NULL, ts INTEGER NOT NULL,
                 PRIMARY KEY (room, id)) WITHOUT ROWID;
             INSERT INTO messages VALUES ('lobby', 1, 'ann', 'from v1', 1700000000000);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let server = durable(&dir);
    let (mut bob, welcome) = chat(server.local_addr(), "lobby", Some("bob"));
    assert_eq!(welcome["epoch"], "old-epoch");
    assert_eq!(ids_and_texts(&welcome["history"]), [(1, "from v1".into())]);
    assert_eq!(said(&mut bob, "from v2"), 2);
    // A message of the old file can be deleted like a new one.
    send_json(&mut bob, json!({"type": "delete", "id": 2}));
    next_of_type(&mut bob, "deleted");
    drop(bob);
    server.shutdown();
    let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
    let version: i64 = db
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(
        version, 8,
        "messages (v1), their `via` (v2), ended sessions (v3), their keys (v4), files (v5), \
         the index of files not expired (v6), tombstones (v7), moderation rules (v8)"
    );
    let rules: i64 = db
        .query_row("SELECT COUNT(*) FROM moderation", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        rules, 0,
        "an upgraded store has the moderation table, empty"
    );
    let deleted: Vec<(i64, bool)> = db
        .prepare("SELECT id, deleted FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(deleted, [(1, false), (2, true)]);
    let indexed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_with_live_files'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 1);
    let ended: i64 = db
        .query_row("SELECT COUNT(*) FROM ended_sessions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(ended, 0);
}

/// A tiny tmpfs of its own, unmounted on drop: the only way to make a disk fill up on
/// purpose. Needs root (CI runs as root); skipped elsewhere.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(test: &str, kib: usize) -> Option<SmallDisk> {
        let dir = TempDir::new("disk");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var_os("SWITCHBOARD_REQUIRE_TOOLS").is_none(),
                "{test}: cannot mount a tmpfs (CI runs as root)"
            );
            eprintln!("skipped {test}: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_messages_delivers_none_of_them_and_recovers() {
    let Some(disk) = SmallDisk::mount(
        "a_full_disk_refuses_messages_delivers_none_of_them_and_recovers",
        512,
    ) else {
        return;
    };
    let server = start_with(|b| {
        b.data_dir(disk.dir.path())
            .rate_per_sec(10_000)
            .rate_burst(10_000)
            .max_text_len(4096)
    });
    let addr = server.local_addr();
    let (mut alice, _) = chat(addr, "full", Some("alice"));
    let (mut bob, _) = chat(addr, "full", Some("bob"));
    // Fill the disk with another file until the store's next commit cannot fit.
    let filler = disk.dir.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &block).is_ok() {}
    drop(file);
    let text = "x".repeat(4000);
    let mut refused = 0;
    let mut stored = Vec::new();
    for _ in 0..64 {
        say(&mut alice, &text);
        let answer = loop {
            let m = next_json(&mut alice);
            if m["type"] == "message" || m["type"] == "error" {
                break m;
            }
        };
        if answer["type"] == "error" {
            assert_eq!(answer["code"], "unavailable", "{answer}");
            refused += 1;
            if refused >= 3 {
                break;
            }
        } else {
            stored.push(answer["id"].as_u64().unwrap());
        }
    }
    assert!(
        refused >= 3,
        "the full disk refused nothing ({} stored)",
        stored.len()
    );
    assert!(metric(addr, "switchboard_store_errors_total") >= 3);
    // Bob got exactly the stored messages, none of the refused ones.
    let mut got = Vec::new();
    while got.len() < stored.len() {
        let m = next_of_type(&mut bob, "message");
        got.push(m["id"].as_u64().unwrap());
    }
    assert_eq!(got, stored);
    // Room again: the next message is stored and delivered, with the next id.
    std::fs::remove_file(&filler).unwrap();
    let next = eventually(|| {
        say(&mut alice, "back");
        let m = loop {
            let m = next_json(&mut alice);
            if m["type"] == "message" || m["type"] == "error" {
                break m;
            }
        };
        (m["type"] == "message").then_some(m)
    });
    let expected = stored.last().copied().unwrap_or(0) + 1;
    assert_eq!(next["id"], expected, "the refused messages used no ids");
    let m = next_of_type(&mut bob, "message");
    assert_eq!(
        (m["id"].as_u64(), m["text"].as_str()),
        (Some(expected), Some("back"))
    );
    // Bob saw no refused message in between: the next one he got is this one.
    drop((alice, bob));
    server.shutdown();
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn welcome_is_still_first_when_requests_race_it() {
    // A client that asks before its welcome arrives still gets the welcome first.
    let server = start();
    let addr = server.local_addr();
    let mut ws = connect(addr, "/ws/chat/race?name=quick");
    ws.send(Message::text(r#"{"type":"members"}"#)).unwrap();
    ws.send(Message::text("hello")).unwrap();
    let kinds: Vec<String> = (0..3)
        .map(|_| next_json(&mut ws)["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(kinds, ["welcome", "members", "message"]);
}
