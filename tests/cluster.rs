//! Several nodes on one real Redis behave as one server. Every test starts
//! its own `redis-server` on a free loopback port (see `common/redis.rs`) and two or
//! three `Server`s in this process on it.

mod common;

use common::redis::Redis;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::{Server, ServerHandle};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

/// A node of the cluster on `redis`, on an ephemeral loopback port.
fn node(redis: &Redis) -> ServerHandle {
    Server::builder()
        .listen("127.0.0.1:0")
        .redis(redis.url())
        .api_token("t0ken")
        .start()
        .expect("node starts")
}

/// The texts of room `room`'s newest messages, oldest first, read through the API of
/// the node at `addr`.
fn stored_texts(addr: SocketAddr, room: &str) -> Vec<String> {
    let page = get_with(
        addr,
        &format!("/api/rooms/{room}/messages"),
        "Authorization: Bearer t0ken\r\n",
    );
    let page: Value = serde_json::from_str(body(&page)).expect("JSON");
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

/// A node that reaches Redis through `link`, which the test can cut or hold.
fn node_through(link: &common::redis::Link) -> ServerHandle {
    Server::builder()
        .listen("127.0.0.1:0")
        .redis(link.url())
        .start()
        .expect("node starts")
}

/// Reads chat messages until `n` of type `message` came; returns them.
fn messages(ws: &mut Client, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages",
            out.len()
        );
        let msg = next_json(ws);
        if msg["type"] == "message" {
            out.push(msg);
        }
    }
    out
}

fn names(msg: &Value) -> Vec<String> {
    msg["members"]
        .as_array()
        .expect("a member list")
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn three_nodes_give_every_member_the_same_messages_in_the_same_order() {
    let Some(redis) = Redis::start("three_nodes_order") else {
        return;
    };
    let nodes: Vec<ServerHandle> = (0..3).map(|_| node(&redis)).collect();
    let mut clients: Vec<Client> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| chat(n.local_addr(), "town", Some(&format!("p{i}"))).0)
        .collect();
    // Everyone is in before anyone speaks: each sees the later joins.
    for (i, ws) in clients.iter_mut().enumerate() {
        for _ in i + 1..3 {
            next_of_type(ws, "join");
        }
    }
    // All at once, from every node.
    for round in 0..20 {
        for (i, ws) in clients.iter_mut().enumerate() {
            say(ws, &format!("{i}:{round}"));
        }
    }
    let seen: Vec<Vec<(u64, String)>> = clients
        .iter_mut()
        .map(|ws| {
            messages(ws, 60)
                .iter()
                .map(|m| {
                    let id = m["id"].as_u64().expect("an id");
                    (id, m["text"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        })
        .collect();
    assert_eq!(seen[0], seen[1], "node 1 saw node 0's order");
    assert_eq!(seen[0], seen[2], "node 2 saw node 0's order");
    let ids: Vec<u64> = seen[0].iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=60).collect::<Vec<_>>(),
        "ids from Redis, one room's run"
    );
    for i in 0..3 {
        let own: Vec<&String> = seen[0]
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.starts_with(&format!("{i}:")))
            .collect();
        let sent: Vec<String> = (0..20).map(|r| format!("{i}:{r}")).collect();
        assert_eq!(
            own,
            sent.iter().collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }
}

#[test]
fn names_are_unique_and_presence_spans_the_nodes() {
    let Some(redis) = Redis::start("names_and_presence") else {
        return;
    };
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    let (mut alice, welcome) = chat(a.local_addr(), "hall", Some("alice"));
    assert_eq!(welcome["name"], "alice");
    let (mut other, welcome) = chat(b.local_addr(), "hall", Some("Alice"));
    assert_eq!(
        welcome["name"], "Alice-2",
        "taken on node A, suffixed on node B"
    );
    assert_eq!(names(&welcome), ["alice", "Alice-2"]);
    let join = next_of_type(&mut alice, "join");
    assert_eq!(join["name"], "Alice-2");

    // Who is where, asked on a third node.
    let (mut carol, welcome) = chat(c.local_addr(), "kitchen", Some("carol"));
    assert_eq!(names(&welcome), ["carol"]);
    send_json(&mut carol, json!({"type": "rooms"}));
    let rooms = next_of_type(&mut carol, "rooms");
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "hall", "members": 2}, {"name": "kitchen", "members": 1}])
    );
    let api = body(&get_with(c.local_addr(), "/api/rooms", "")).to_owned();
    let api: Value = serde_json::from_str(&api).expect("JSON");
    assert_eq!(api["rooms"][0]["name"], "hall");
    assert_eq!(api["rooms"][0]["members"], 2);

    // A rename to a name taken on another node is refused; a free one is news there.
    send_json(&mut carol, json!({"type": "rename", "name": "ALICE"}));
    let error = next_of_type(&mut carol, "error");
    assert_eq!(error["code"], "name_taken");
    send_json(&mut other, json!({"type": "rename", "name": "bob"}));
    let rename = next_of_type(&mut alice, "rename");
    assert_eq!(
        (&rename["from"], &rename["to"]),
        (&json!("Alice-2"), &json!("bob"))
    );

    // Moving rooms and leaving are seen on the other nodes.
    send_json(&mut carol, json!({"type": "join", "room": "hall"}));
    let welcome = next_of_type(&mut carol, "welcome");
    assert_eq!(names(&welcome), ["alice", "bob", "carol"]);
    assert_eq!(next_of_type(&mut alice, "join")["name"], "carol");
    close_politely(other);
    let leave = next_of_type(&mut alice, "leave");
    assert_eq!(
        (&leave["name"], &leave["reason"]),
        (&json!("bob"), &json!("closed"))
    );
    assert_eq!(next_of_type(&mut carol, "leave")["name"], "bob");
    send_json(&mut alice, json!({"type": "members"}));
    assert_eq!(
        names(&next_of_type(&mut alice, "members")),
        ["alice", "carol"]
    );
    // The name is free again, on any node.
    let (_bob, welcome) = chat(c.local_addr(), "hall", Some("Bob"));
    assert_eq!(welcome["name"], "Bob");
}

/// An HTTP request with extra header lines; the whole answer.
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn direct_messages_relay_and_the_api_reach_every_node() {
    let Some(redis) = Redis::start("direct_relay_api") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(a.local_addr(), "ops", Some("ann"));
    let (mut ben, _) = chat(b.local_addr(), "lobby", Some("ben"));

    send_json(
        &mut ann,
        json!({"type": "direct", "to": "BEN", "text": "psst"}),
    );
    let direct = next_of_type(&mut ben, "direct");
    assert_eq!(
        (&direct["from"], &direct["to"], &direct["text"]),
        (&json!("ann"), &json!("ben"), &json!("psst"))
    );
    assert_eq!(
        next_of_type(&mut ann, "direct")["text"],
        "psst",
        "the sender's copy"
    );
    send_json(
        &mut ben,
        json!({"type": "direct", "to": "nobody", "text": "?"}),
    );
    assert_eq!(next_of_type(&mut ben, "error")["code"], "no_such_user");

    // Relay: binary payloads intact across nodes, and not echoed to the sender.
    let mut r1 = connect(a.local_addr(), "/ws/relay/pipe");
    let mut r2 = connect(b.local_addr(), "/ws/relay/pipe");
    let mut r3 = connect(b.local_addr(), "/ws/relay/pipe");
    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    // Relay has no welcome to wait for: a join reaches its node's hub just after the
    // handshake, with nothing to order it before traffic from another node. Wait
    // until r1's messages reach both.
    relay_reaches(&mut r1, &mut [&mut r2, &mut r3]);
    let deadline = Instant::now() + Duration::from_secs(5);
    r1.send(Message::binary(payload.clone())).expect("send");
    let got = next(&mut r2);
    assert_eq!(
        got,
        Message::binary(payload.clone()),
        "binary intact on node B"
    );
    assert_eq!(next(&mut r3), Message::binary(payload.clone()));
    r2.send(Message::text("back")).expect("send");
    assert_eq!(next(&mut r1), Message::text("back"));
    assert_eq!(next(&mut r3), Message::text("back"));
    assert!(Instant::now() < deadline);

    // POST on node B reaches ann on node A, stored once, via the API.
    let (mut ann2, _) = chat(b.local_addr(), "ops", Some("ann2"));
    let post = "deploy finished";
    let answer = raw(
        b.local_addr(),
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{post}",
            post.len()
        )
        .as_bytes(),
    );
    assert_eq!(status(&answer), 201, "{answer}");
    for ws in [&mut ann, &mut ann2] {
        let msg = next_of_type(ws, "message");
        assert_eq!((&msg["text"], &msg["via"]), (&json!(post), &json!("api")));
    }
    let page = get_with(a.local_addr(), "/api/rooms/ops/messages", "");
    let page: Value = serde_json::from_str(body(&page)).expect("JSON");
    assert_eq!(page["messages"][0]["text"], post, "readable on node A too");
}

/// Waits until relay messages from `from` reach every one of `to`: probes until each
/// has one, then sends a marker and reads each up to it, so nothing is left unread.
fn relay_reaches(from: &mut Client, to: &mut [&mut Client]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reached = vec![false; to.len()];
    for ws in to.iter_mut() {
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
    }
    while reached.contains(&false) {
        assert!(Instant::now() < deadline, "relay never reached {reached:?}");
        from.send(Message::text("probe")).expect("send");
        for (ws, reached) in to.iter_mut().zip(&mut reached) {
            match ws.read() {
                Ok(Message::Text(_)) => *reached = true,
                Ok(_) => {}
                Err(e) if timed_out(&e) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }
    from.send(Message::text("reached")).expect("send");
    for ws in to.iter_mut() {
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        while next(ws) != Message::text("reached") {}
    }
}

/// `POST /api/rooms/ops/messages` with `text` at `addr`, with more `headers`; the
/// whole answer.
fn api_post_with(addr: SocketAddr, headers: &str, text: &str) -> String {
    raw(
        addr,
        format!(
            "POST /api/rooms/ops/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\n\
             Content-Type: text/plain\r\n{headers}Content-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    )
}

fn api_post(addr: SocketAddr, text: &str) -> String {
    api_post_with(addr, "", text)
}

#[test]
fn a_post_not_confirmed_in_time_is_202_and_its_keyed_retry_posts_nothing_twice() {
    let Some(redis) = Redis::start("api_202") else {
        return;
    };
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .redis(redis.url())
        .api_token("t0ken")
        .handshake_timeout(Duration::from_secs(1))
        .start()
        .expect("node starts");
    let addr = server.local_addr();
    assert_eq!(status(&api_post(addr, "first")), 201);
    let (mut alice, _) = chat(addr, "ops", Some("alice"));
    redis.pause();
    let keyed = "Idempotency-Key: deploy-42\r\n";
    let answer = api_post_with(addr, keyed, "unconfirmed");
    redis.resume();
    assert_eq!(status(&answer), 202, "{answer}");
    assert!(body(&answer).contains("do not send it again"), "{answer}");
    // A script that retries anyway, with its key, gets the one message there is.
    let retry = api_post_with(addr, keyed, "unconfirmed");
    assert_eq!(status(&retry), 201, "{retry}");
    // Whatever became of it, it is in the room at most once, and the same for all:
    // what alice got before a later message is what the room keeps.
    say(&mut alice, "after");
    let mut seen = 0;
    loop {
        let msg = next_of_type(&mut alice, "message");
        if msg["text"] == "after" {
            break;
        }
        if msg["text"] == "unconfirmed" {
            seen += 1;
        }
    }
    let history: Value =
        serde_json::from_str(body(&get_with(addr, "/api/rooms/ops/messages", ""))).expect("JSON");
    let stored = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["text"] == "unconfirmed")
        .count();
    assert_eq!(stored, 1, "posted once: {history}");
    assert_eq!(seen, stored, "alice got what the room keeps");
}

#[test]
fn resume_and_scroll_back_work_on_any_node() {
    let Some(redis) = Redis::start("resume_any_node") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut talker, _) = chat(a.local_addr(), "r", Some("talker"));
    let (mut reader, welcome) = chat(b.local_addr(), "r", Some("reader"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    for i in 1..=5 {
        say(&mut talker, &format!("m{i}"));
    }
    let got = messages(&mut reader, 5);
    let seen = got[1]["id"].as_u64().expect("an id");
    drop(reader);
    for i in 6..=7 {
        say(&mut talker, &format!("m{i}"));
    }
    messages(&mut talker, 7);

    // Back on the other node, from message 2: exactly 3..7, resumed.
    let (mut back, welcome) = chat_url(
        a.local_addr(),
        &format!("/ws/chat/r?name=reader&since={seen}&epoch={epoch}"),
    );
    assert_eq!(welcome["resumed"], true);
    assert_eq!(
        welcome["epoch"],
        epoch.as_str(),
        "one epoch for the whole cluster"
    );
    let texts: Vec<&str> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(welcome["last_id"], 7);
    // Nothing twice: the next message is the next id.
    say(&mut talker, "m8");
    assert_eq!(next_of_type(&mut back, "message")["id"], 8);

    // Scroll-back on node B.
    let (mut scroller, _) = chat(b.local_addr(), "r", Some("scroller"));
    send_json(
        &mut scroller,
        json!({"type": "history", "before": 4, "limit": 2}),
    );
    let page = next_of_type(&mut scroller, "history");
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [2, 3]);
    assert_eq!(page["more"], true);
}

#[test]
fn redis_out_of_reach_at_start_fails_naming_the_url() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let error = Server::builder()
        .listen("127.0.0.1:0")
        .redis(&url)
        .start()
        .expect_err("no Redis there");
    assert!(error.to_string().contains(&url), "{error}");
    let error = Server::builder()
        .listen("127.0.0.1:0")
        .redis("redis://:s3cret@127.0.0.1:1/0")
        .start()
        .expect_err("no Redis there");
    assert!(
        !error.to_string().contains("s3cret"),
        "password shown: {error}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--no-tls", "--redis", &url])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "{stderr}");
}

/// A node started as the binary, so that it can be killed with SIGKILL.
fn binary_node(redis: &Redis) -> (std::process::Child, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", &addr.to_string(), "--no-tls", "--no-qr"])
        .args(["--redis", &redis.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    eventually(|| std::net::TcpStream::connect(addr).ok());
    (child, addr)
}

/// A node as the binary, its warnings and errors written to `log`.
fn binary_node_logging_to(
    redis: &Redis,
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let file = std::fs::File::create(log).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", &addr.to_string(), "--no-tls", "--no-qr"])
        .args(["--redis", &redis.url()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("the binary starts");
    eventually(|| std::net::TcpStream::connect(addr).ok());
    (child, addr)
}

#[test]
fn a_killed_node_s_members_leave_as_node_lost_and_nothing_received_is_lost() {
    let Some(redis) = Redis::start("node_lost") else {
        return;
    };
    let survivor = node(&redis);
    let (mut child, doomed) = binary_node(&redis);
    let (mut watcher, _) = chat(survivor.local_addr(), "r", Some("watcher"));
    let (mut victim, _) = chat(doomed, "r", Some("victim"));
    assert_eq!(next_of_type(&mut watcher, "join")["name"], "victim");
    for i in 0..10 {
        say(&mut victim, &format!("v{i}"));
    }
    let received = messages(&mut watcher, 10);

    let killed = Instant::now();
    let _ = child.kill();
    let _ = child.wait();
    let leave = next_of_type_within(&mut watcher, "leave", Duration::from_secs(15));
    let took = killed.elapsed();
    assert_eq!(
        (&leave["name"], &leave["reason"]),
        (&json!("victim"), &json!("node_lost"))
    );
    assert!(took < Duration::from_secs(8), "node loss took {took:?}");
    eprintln!("node_lost after {} ms", took.as_millis());

    // Everything anyone received is in the history, on the node still up.
    let (_, welcome) = chat(survivor.local_addr(), "r", Some("late"));
    let kept: Vec<&Value> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .collect();
    assert_eq!(kept.len(), received.len());
    for (kept, got) in kept.iter().zip(&received) {
        assert_eq!((&kept["id"], &kept["text"]), (&got["id"], &got["text"]));
    }
    // And the name is free again.
    let (_, welcome) = chat(survivor.local_addr(), "r", Some("victim"));
    assert_eq!(welcome["name"], "victim");
}

/// Like [`next_of_type`], waiting up to `limit` in reads of [`READ_TIMEOUT`] at most.
fn next_of_type_within(ws: &mut Client, kind: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        assert!(Instant::now() < deadline, "no {kind} within {limit:?}");
        match ws.read() {
            Ok(Message::Text(t)) => {
                let msg: Value = serde_json::from_str(&t).expect("JSON");
                if msg["type"] == kind {
                    return msg;
                }
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn redis_lost_and_back_with_its_data_refuses_then_resumes_without_gaps() {
    let Some(mut redis) = Redis::start("redis_restart_aof") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, welcome) = chat(a.local_addr(), "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let (mut ben, _) = chat(b.local_addr(), "r", Some("ben"));
    next_of_type(&mut ann, "join");
    say(&mut ann, "before");
    let before = messages(&mut ben, 1);
    messages(&mut ann, 1);
    let last_seen = before[0]["id"].as_u64().expect("an id");

    redis.kill();
    // Clients stay connected; a message is refused, never delivered on one node only.
    // One on its way as Redis died gets no answer until Redis says what became of it.
    let (refused, in_doubt) = probe_until_refused(&mut ann, "during");
    assert_eq!(metric(a.local_addr(), "switchboard_redis_up"), 0);
    assert!(metric(a.local_addr(), "switchboard_redis_errors_total") >= 1);
    // A load balancer's health check sends new clients elsewhere meanwhile.
    let health = get(a.local_addr(), "/healthz");
    assert_eq!(status(&health), 503, "{health}");
    let health: Value = serde_json::from_str(body(&health)).expect("JSON");
    assert_eq!(
        (&health["status"], &health["redis"]),
        (&json!("redis_down"), &json!("down"))
    );
    assert_echoes_chat(&mut ben);

    redis.restart(true);
    eventually(|| (metric(a.local_addr(), "switchboard_redis_up") == 1).then_some(()));
    eventually(|| (metric(b.local_addr(), "switchboard_redis_up") == 1).then_some(()));
    let health = get(a.local_addr(), "/healthz");
    assert_eq!(status(&health), 200, "{health}");
    assert!(body(&health).contains(r#""redis":"up""#), "{health}");
    // Back: messages flow again between the nodes, ids continue.
    let after = eventually(|| {
        say(&mut ann, "after");
        loop {
            let msg = next_json(&mut ann);
            let text = msg["text"].as_str().unwrap_or_default().to_owned();
            match msg["type"].as_str() {
                Some("message") if text == "after" => return Some(msg),
                Some("message") if refused.contains(&text) => {
                    panic!("refused, then delivered: {msg}")
                }
                Some("error") => return None,
                _ => {}
            }
        }
    });
    // Ben gets what was not confirmed (stored once Redis was back), then "after".
    let got = loop {
        let got = next_of_type(&mut ben, "message");
        let text = got["text"].as_str().unwrap_or_default().to_owned();
        if text == "after" {
            break got;
        }
        assert!(
            in_doubt.contains(&text),
            "only what was not confirmed: {got}"
        );
    };
    assert_eq!(got["id"], after["id"]);
    // A client that resumes gets exactly what it missed: no gaps, no duplicates. A
    // node just back may still refuse a join with `unavailable` (and 1012) while it
    // puts its members back; a client tries again, as the page does.
    let welcome = eventually(|| {
        let mut ws = connect(
            b.local_addr(),
            &format!("/ws/chat/r?name=cy&since={last_seen}&epoch={epoch}"),
        );
        let first = next_json(&mut ws);
        match first["type"].as_str() {
            Some("welcome") => Some(first),
            Some("error") => {
                assert_eq!(first["code"], "unavailable", "{first}");
                None
            }
            _ => panic!("first message is the welcome or unavailable: {first}"),
        }
    });
    assert_eq!(welcome["resumed"], true);
    let texts: Vec<&str> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect();
    // What was in doubt is there once if Redis stored it, what was refused never.
    assert!(
        texts
            .iter()
            .all(|t| *t == "after" || in_doubt.iter().any(|d| d == t)),
        "{texts:?}"
    );
    for doubt in &in_doubt {
        assert!(
            texts.iter().filter(|t| *t == doubt).count() <= 1,
            "{texts:?}"
        );
    }
    assert!(texts.contains(&"after"));
    assert_eq!(welcome["history"][0]["id"], last_seen + 1, "no gap");
}

/// Sends messages from `ws`, a new text each time, until one is refused with
/// `unavailable`: the texts refused, and those not confirmed (`unconfirmed`, or no
/// answer yet: stored once if Redis keeps them when it answers again).
fn probe_until_refused(ws: &mut Client, prefix: &str) -> (Vec<String>, Vec<String>) {
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let (mut refused, mut in_doubt) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in 0.. {
        assert!(Instant::now() < deadline, "nothing refused in 15 s");
        let text = format!("{prefix}{n}");
        say(ws, &text);
        let answer = loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let msg: Value = serde_json::from_str(&t).expect("JSON");
                    assert_ne!(msg["text"], text.as_str(), "delivered while Redis was away");
                    if msg["type"] == "error" {
                        break Some(msg);
                    }
                }
                Ok(_) => {}
                Err(e) if timed_out(&e) => break None,
                Err(e) => panic!("read failed: {e}"),
            }
        };
        match answer {
            Some(error) if error["code"] == "unconfirmed" => in_doubt.push(text),
            Some(error) => {
                assert_eq!(error["code"], "unavailable", "{error}");
                refused.push(text);
                break;
            }
            None => in_doubt.push(text),
        }
    }
    ws.get_mut()
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    (refused, in_doubt)
}

/// The client is still served by its node: `members` is answered from memory.
fn assert_echoes_chat(ws: &mut Client) {
    send_json(ws, json!({"type": "members"}));
    next_of_type(ws, "members");
}

#[test]
fn redis_restarted_empty_starts_a_new_epoch_and_clients_are_told_to_refresh() {
    let Some(mut redis) = Redis::start("redis_restart_empty") else {
        return;
    };
    let a = node(&redis);
    let (mut ann, welcome) = chat(a.local_addr(), "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    say(&mut ann, "one");
    let id = messages(&mut ann, 1)[0]["id"].as_u64().expect("an id");

    redis.restart(false);
    // The node sees the new epoch and asks its clients to reconnect (1012).
    let close = eventually(|| match ann.read() {
        Ok(Message::Close(frame)) => Some(frame),
        Ok(_) => None,
        Err(e) => panic!("expected a close, got {e}"),
    });
    assert_eq!(
        close.map(|f| u16::from(f.code)),
        Some(1012),
        "service restart: reconnect"
    );
    let (_, welcome) = eventually(|| {
        let (ws, welcome) = chat_url(
            a.local_addr(),
            &format!("/ws/chat/r?name=ann&since={id}&epoch={epoch}"),
        );
        (welcome["epoch"] != epoch.as_str()).then_some((ws, welcome))
    });
    assert_eq!(welcome["resumed"], false, "a new epoch: refresh");
    assert_eq!(welcome["name"], "ann");
}

#[test]
fn the_binary_takes_its_redis_url_from_the_environment_too() {
    let Some(redis) = Redis::start("redis_from_env") else {
        return;
    };
    let peer = node(&redis);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let data = TempDir::new("redis-env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", &addr.to_string(), "--no-tls", "--no-qr"])
        .env("SWITCHBOARD_REDIS", redis.url())
        .env("XDG_DATA_HOME", data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    eventually(|| std::net::TcpStream::connect(addr).ok());
    let (mut here, _) = chat(peer.local_addr(), "r", Some("here"));
    let (_there, welcome) = chat(addr, "r", Some("there"));
    assert_eq!(
        names(&welcome),
        ["here", "there"],
        "one chat with the other node"
    );
    assert_eq!(next_of_type(&mut here, "join")["name"], "there");
    assert!(
        std::fs::read_dir(data.path()).map_or(true, |mut d| d.next().is_none()),
        "no SQLite store beside Redis"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_cluster_node_shows_a_member_its_own_wire() {
    let Some(redis) = Redis::start("cluster_wire") else {
        return;
    };
    let a = node(&redis);
    let (mut ann, welcome) = chat(a.local_addr(), "r", Some("ann"));
    let mut viewer = watch_wire(a.local_addr(), &welcome);
    let first = next_json(&mut viewer);
    assert_eq!(
        (&first["kind"], &first["dir"]),
        (&json!("http"), &json!("in"))
    );
    say(&mut ann, "watched");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no frame of the message");
        let event = next_json(&mut viewer);
        if event["kind"] == "frame" && event["dir"] == "in" && event["masked"] == true {
            assert_eq!(event["opcode"], "TEXT");
            break;
        }
    }
}

/// The welcome's history ends where the live messages begin, for members joining on
/// one node while another node's member keeps talking: no gap, nothing twice.
#[test]
fn joining_while_another_node_talks_gives_no_gap_and_no_duplicate() {
    let Some(redis) = Redis::start("join_during_flood") else {
        return;
    };
    let fast = |b: switchboard::ServerBuilder| {
        b.listen("127.0.0.1:0")
            .redis(redis.url())
            .rate_per_sec(10_000)
            .rate_burst(10_000)
            .start()
            .expect("node starts")
    };
    let (a, b) = (fast(Server::builder()), fast(Server::builder()));
    let (mut talker, _) = chat(a.local_addr(), "busy", Some("talker"));
    // The talker talks until every reader is in, then 50 more.
    let joined = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let all_in = std::sync::Arc::clone(&joined);
    let sender = std::thread::spawn(move || {
        let (mut sent, mut after) = (0usize, 0);
        while after < 50 && sent < 20_000 {
            say(&mut talker, &format!("t{sent}"));
            sent += 1;
            if all_in.load(std::sync::atomic::Ordering::Acquire) {
                after += 1;
            }
            if sent % 20 == 0 {
                // Read what came back, so the talker is never a slow consumer.
                messages(&mut talker, 20);
            }
        }
        messages(&mut talker, sent % 20);
        sent
    });
    let mut readers = Vec::new();
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(10));
        readers.push(chat(b.local_addr(), "busy", Some(&format!("r{i}"))));
    }
    joined.store(true, std::sync::atomic::Ordering::Release);
    let total = sender.join().expect("the talker") as u64;
    for (i, (ws, welcome)) in readers.iter_mut().enumerate() {
        let mut ids: Vec<u64> = welcome["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .collect();
        let last = welcome["last_id"].as_u64().expect("last_id");
        assert!(
            ids.last().is_none_or(|&l| l == last),
            "reader {i}: history ends at last_id"
        );
        assert!(last < total, "reader {i} joined while the talker talked");
        let live = usize::try_from(total - last).expect("a count");
        ids.extend(messages(ws, live).iter().filter_map(|m| m["id"].as_u64()));
        let first = ids.first().copied().unwrap_or(1);
        let expected: Vec<u64> = (first..=total).collect();
        assert_eq!(ids, expected, "reader {i}: every id once, in order");
    }
}

/// A node cut off from Redis for longer than the heartbeat's TTL is taken for dead
/// by the others (its members leave, `node_lost`), keeps its clients meanwhile, and
/// when the link heals puts them back: the others see them join again, and chat
/// goes on both ways.
#[test]
fn a_node_cut_off_from_redis_is_taken_for_dead_then_comes_back_with_its_members() {
    let Some(redis) = Redis::start("partitioned_node") else {
        return;
    };
    let link = common::redis::Link::to(&redis);
    let cut_off = node_through(&link);
    let other = node(&redis);
    let (mut ann, _) = chat(cut_off.local_addr(), "r", Some("ann"));
    let (mut ben, _) = chat(other.local_addr(), "r", Some("ben"));
    assert_eq!(next_of_type(&mut ann, "join")["name"], "ben");

    link.cut();
    let leave = next_of_type_within(&mut ben, "leave", Duration::from_secs(15));
    assert_eq!(
        (&leave["name"], &leave["reason"]),
        (&json!("ann"), &json!("node_lost"))
    );
    // Ann is still connected to her node, which answers from what it knows.
    send_json(&mut ann, json!({"type": "members"}));
    next_of_type(&mut ann, "members");

    link.heal();
    let join = next_of_type_within(&mut ben, "join", Duration::from_secs(15));
    assert_eq!(join["name"], "ann", "put back by her node");
    send_json(&mut ben, json!({"type": "members"}));
    assert_eq!(names(&next_of_type(&mut ben, "members")), ["ben", "ann"]);
    let sent = eventually(|| {
        say(&mut ann, "back");
        loop {
            let msg = next_json(&mut ann);
            match msg["type"].as_str() {
                Some("message") if msg["text"] == "back" => return Some(msg),
                Some("error") => return None,
                _ => {}
            }
        }
    });
    let got = next_of_type(&mut ben, "message");
    assert_eq!((&got["text"], &got["id"]), (&json!("back"), &sent["id"]));
    say(&mut ben, "welcome back");
    let mut texts = Vec::new();
    while texts.last().is_none_or(|t| t != "welcome back") {
        let msg = next_of_type(&mut ann, "message");
        texts.push(msg["text"].as_str().unwrap_or_default().to_owned());
    }
}

#[test]
fn joining_while_redis_is_away_is_refused_with_a_reason_then_1012() {
    let Some(mut redis) = Redis::start("join_without_redis") else {
        return;
    };
    let a = node(&redis);
    let (mut ann, _) = chat(a.local_addr(), "r", Some("ann"));
    redis.kill();
    probe_until_refused(&mut ann, "probe");
    let mut late = connect(a.local_addr(), "/ws/chat/r?name=late");
    let error = next_json(&mut late);
    assert_eq!(
        (&error["type"], &error["code"]),
        (&json!("error"), &json!("unavailable"))
    );
    let close = close_frame(&mut late).expect("a close frame");
    assert_eq!(u16::from(close.code), 1012, "reconnect, please");
    // The member already in is not disturbed.
    send_json(&mut ann, json!({"type": "members"}));
    assert_eq!(names(&next_of_type(&mut ann, "members")), ["ann"]);
}

/// A node frozen longer than the heartbeat's TTL is taken for dead, and its members'
/// names are free; when it thaws, a member whose name someone else took meanwhile is
/// not put back: it is told why and closed with 1012, and the name has one holder,
/// whom a direct message reaches.
#[test]
fn a_name_taken_while_its_node_was_frozen_stays_with_its_new_holder() {
    let Some(redis) = Redis::start("frozen_node") else {
        return;
    };
    // The survivor is the binary, so that its log can be read: it says it reaped.
    let dir = TempDir::new("frozen_node");
    let log = dir.path().join("survivor.log");
    let (survivor, b) = binary_node_logging_to(&redis, &log);
    let _survivor = Running(survivor);
    let (child, a) = binary_node(&redis);
    let child = Running(child);
    let pid = child.0.id().to_string();
    let signal = |sig: &str| {
        let done = Command::new("kill").args([sig, &pid]).status();
        assert!(done.is_ok_and(|s| s.success()), "kill {sig}");
    };
    let (mut old, _) = chat(a, "r", Some("alice"));
    let (mut kept, _) = chat(a, "r", Some("kept"));
    let (mut bob, _) = chat(b, "r", Some("bob"));
    signal("-STOP");
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let leave = next_of_type_within(&mut bob, "leave", Duration::from_secs(15));
        assert_eq!(leave["reason"], "node_lost", "{leave}");
        gone.push(leave["name"].as_str().unwrap_or_default().to_owned());
    }
    let (mut new, welcome) = chat(b, "r", Some("alice"));
    assert_eq!(
        welcome["name"], "alice",
        "free while its node is taken for dead"
    );
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("taken for dead, its 2 members left (node_lost)"),
        "the survivor logs the reaping: {said}"
    );
    signal("-CONT");
    // The old holder is told, and asked to reconnect.
    let error = next_of_type_within(&mut old, "error", Duration::from_secs(15));
    assert_eq!(error["code"], "unavailable", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("name"),
        "{error}"
    );
    let close = close_frame(&mut old).expect("a close frame");
    assert_eq!(u16::from(close.code), 1012);
    // Whoever was not displaced is back, and every node lists one alice.
    for ws in [&mut bob, &mut kept] {
        eventually(|| {
            send_json(ws, json!({"type": "members"}));
            let mut seen = names(&next_of_type(ws, "members"));
            seen.sort();
            (seen == ["alice", "bob", "kept"]).then_some(())
        });
    }
    // A direct message to alice, from either node, reaches the one holder. (The
    // thawed node may still refuse one with a reason while it settles: then again.)
    for ws in [&mut bob, &mut kept] {
        eventually(|| {
            send_json(
                ws,
                json!({"type": "direct", "to": "alice", "text": "for alice"}),
            );
            loop {
                let answer = next_json(ws);
                match answer["type"].as_str() {
                    Some("direct") => break,
                    Some("error") => {
                        assert_eq!(answer["code"], "unavailable", "{answer}");
                        return None;
                    }
                    _ => {}
                }
            }
            Some(())
        });
        let got = next_of_type(&mut new, "direct");
        assert_eq!(got["text"], "for alice", "{got}");
    }
    drop(child);
}

/// A node whose subscription is down while its commands still go through changes
/// nothing in Redis (the news of the change would not come back): it says Redis is
/// down, refuses joins and messages with a reason, and is back only once both of its
/// connections are.
#[test]
fn a_node_is_up_only_while_both_its_redis_connections_are() {
    use std::io::{Read, Write};
    let Some(redis) = Redis::start("half_up") else {
        return;
    };
    let a = node(&redis);
    let addr = a.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", redis.port())).expect("redis");
    admin
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut command = |line: &str| -> String {
        admin
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("sent");
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            admin.read_exact(&mut byte).expect("a reply");
            reply.push(byte[0]);
        }
        String::from_utf8_lossy(&reply).trim_end().to_owned()
    };
    // No new connection is let in, and the subscriber's is closed: it cannot come
    // back, while the node's command connection goes on working.
    assert_eq!(command("CONFIG SET maxclients 1"), "+OK");
    assert!(command("CLIENT KILL TYPE pubsub").starts_with(':'));
    eventually(|| (status(&get(addr, "/healthz")) == 503).then_some(()));
    let mut late = connect(addr, "/ws/chat/r?name=late");
    let first = next_json(&mut late);
    assert_eq!(first["code"], "unavailable", "{first}");
    let close = close_frame(&mut late).expect("a close frame");
    assert_eq!(u16::from(close.code), 1012);
    say(&mut ann, "while half up");
    let refused = next_of_type(&mut ann, "error");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    // Let connections in again: the subscription comes back, and so does the node.
    assert_eq!(command("CONFIG SET maxclients 10000"), "+OK");
    eventually(|| (status(&get(addr, "/healthz")) == 200).then_some(()));
    let (_late, welcome) = eventually(|| {
        let mut ws = connect(addr, "/ws/chat/r?name=late");
        let first = next_json(&mut ws);
        (first["type"] == "welcome").then_some((ws, first))
    });
    assert_eq!(welcome["name"], "late");
    say(&mut ann, "after");
    let got = next_of_type(&mut ann, "message");
    assert_eq!(got["text"], "after", "and never the refused one: {got}");
}

/// A message on its way when Redis stalls is not refused and then delivered: its
/// sender is told it is not confirmed yet, and once Redis answers, it reaches the
/// room, the sender too, once, and the history. A message sent while the node knows
/// Redis is away is refused, and never shows up.
#[test]
fn a_message_in_flight_when_redis_stalls_is_answered_by_what_became_of_it() {
    let Some(redis) = Redis::start("in_doubt") else {
        return;
    };
    let a = node(&redis);
    let addr = a.local_addr();
    let (mut ann, _) = chat(addr, "r", Some("ann"));
    let (mut bob, _) = chat(addr, "r", Some("bob"));
    say(&mut ann, "first");
    for ws in [&mut ann, &mut bob] {
        assert_eq!(next_of_type(ws, "message")["text"], "first");
    }
    // The bridge's read times out after 2 s: not refused, not confirmed. (When a
    // heartbeat happens to go out first, it finds the stall first, and the message
    // is refused, which is right too: then the test tries again.)
    let mut tries = 0;
    let (in_flight, text) = loop {
        tries += 1;
        assert!(tries <= 5, "no message was on its way in 5 stalls");
        let text = format!("in flight {tries}");
        let in_flight = json!({"type": "message", "text": text, "cid": format!("f-{tries}")});
        redis.pause();
        send_json(&mut ann, in_flight.clone());
        let answer = next_of_type(&mut ann, "error");
        if answer["code"] == "unconfirmed" {
            break (in_flight, text);
        }
        assert_eq!(answer["code"], "unavailable", "{answer}");
        redis.resume();
        eventually(|| (status(&get(addr, "/healthz")) == 200).then_some(()));
    };
    // Sent again with its cid, as a client that lost its connection would: still on
    // its way, not a second message.
    send_json(&mut ann, in_flight.clone());
    let again = next_of_type(&mut ann, "error");
    assert_eq!(again["code"], "unconfirmed", "{again}");
    // By now the node knows Redis is away: this one is refused, for good.
    say(&mut bob, "refused");
    let refused = next_of_type(&mut bob, "error");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    redis.resume();
    let texts = |ws: &mut Client| {
        let got = next_of_type_within(ws, "message", Duration::from_secs(10));
        got["text"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(texts(&mut ann), text);
    assert_eq!(texts(&mut bob), text);
    // Nothing after it: the refused message never comes, nor a second copy.
    eventually(|| (status(&get(addr, "/healthz")) == 200).then_some(()));
    say(&mut ann, "after");
    assert_eq!(texts(&mut ann), "after");
    assert_eq!(texts(&mut bob), "after");
    // Now that Redis said what became of it, a retry is answered with it, and stores
    // nothing.
    send_json(&mut ann, in_flight);
    assert_eq!(texts(&mut ann), text);
    let stored = stored_texts(addr, "r");
    assert_eq!(stored, ["first", text.as_str(), "after"]);
}

/// A node whose link to Redis is held (bytes delayed, not lost: a paused VM, a
/// congested network) longer than the heartbeat's TTL is taken for dead; when the
/// link lets go, it reads what it missed, its own members' leaves among it. None of
/// its clients silently misses an id: each gets every message in order, or is told
/// (`unavailable`, 1012) and resumes from the store without a gap.
#[test]
fn a_node_whose_link_was_held_leaves_no_client_a_silent_gap() {
    let Some(redis) = Redis::start("held_link") else {
        return;
    };
    let link = common::redis::Link::to(&redis);
    let slow = node_through(&link);
    let other = node(&redis);
    let (mut ann, welcome) = chat(slow.local_addr(), "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let (mut ben, _) = chat(other.local_addr(), "r", Some("ben"));
    assert_eq!(next_of_type(&mut ann, "join")["name"], "ben");
    say(&mut ben, "before");
    let mut seen = vec![
        next_of_type(&mut ann, "message")["id"]
            .as_u64()
            .expect("an id"),
    ];

    link.hold();
    let leave = next_of_type_within(&mut ben, "leave", Duration::from_secs(15));
    assert_eq!(leave["reason"], "node_lost", "{leave}");
    let mut sent = Vec::new();
    for i in 0..20 {
        say(&mut ben, &format!("while held {i}"));
        sent.push(
            next_of_type(&mut ben, "message")["id"]
                .as_u64()
                .expect("an id"),
        );
    }
    link.release();

    // Ann gets each of them in order, or is told to reconnect before any gap.
    let told = loop {
        let msg = next_json(&mut ann);
        match msg["type"].as_str() {
            Some("message") => {
                let id = msg["id"].as_u64().expect("an id");
                assert_eq!(id, seen.last().copied().unwrap_or(0) + 1, "a gap: {msg}");
                seen.push(id);
                if seen.last() == sent.last() {
                    break false;
                }
            }
            Some("error") => {
                assert_eq!(msg["code"], "unavailable", "{msg}");
                let close = close_frame(&mut ann).expect("a close frame");
                assert_eq!(u16::from(close.code), 1012);
                break true;
            }
            _ => {}
        }
    };
    eprintln!("told to reconnect: {told}; got in order: {}", seen.len());
    if told {
        // It resumes from where it was, on either node, and gets the rest.
        let last = seen.last().copied().unwrap_or(0);
        let welcome = eventually(|| {
            let mut ws = connect(
                other.local_addr(),
                &format!("/ws/chat/r?name=ann&since={last}&epoch={epoch}"),
            );
            let first = next_json(&mut ws);
            (first["type"] == "welcome").then_some(first)
        });
        assert_eq!(welcome["resumed"], true, "{welcome}");
        for msg in welcome["history"].as_array().expect("history") {
            seen.push(msg["id"].as_u64().expect("an id"));
        }
    }
    let first = seen.first().copied().unwrap_or(0);
    let whole: Vec<u64> = (first..=sent.last().copied().unwrap_or(0)).collect();
    assert_eq!(
        seen, whole,
        "every id once, in order (told to reconnect: {told})"
    );
}

/// A message whose news never reached a node (stored in Redis, its publication lost,
/// as when Redis dies between the two) leaves no silent hole: the next message of the
/// room finds it missing, and the node's members of that room are told to reconnect
/// instead of getting it past the hole; they resume and get both, in order. Another
/// room's member is untouched.
#[test]
fn a_message_whose_news_was_lost_is_not_skipped_silently() {
    let Some(redis) = Redis::start("lost_news") else {
        return;
    };
    let server = node(&redis);
    let addr = server.local_addr();
    let (mut ann, welcome) = chat(addr, "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    let (mut ben, _) = chat(addr, "r", Some("ben"));
    let (mut cy, _) = chat(addr, "s", Some("cy"));
    say(&mut ben, "one");
    assert_eq!(next_of_type(&mut ann, "message")["id"], 1);
    assert_eq!(next_of_type(&mut ben, "message")["id"], 1);

    // Stored as the append script stores it, but never published.
    assert_eq!(
        redis.command(&["HINCRBY", "switchboard:ids", "r", "1"]),
        ":2"
    );
    let added = redis.command(&[
        "XADD",
        "switchboard:room:r",
        "2-0",
        "f",
        "ghost",
        "t",
        "lost news",
        "ts",
        "1",
        "v",
        "",
    ]);
    assert!(added.starts_with('$'), "XADD answered {added}");

    say(&mut ben, "three");
    for ws in [&mut ann, &mut ben] {
        let msg = next_json(ws);
        assert_eq!(
            msg["type"], "error",
            "told, not given id 3 past the hole: {msg}"
        );
        assert_eq!(msg["code"], "unavailable", "{msg}");
        let close = close_frame(ws).expect("a close frame");
        assert_eq!(u16::from(close.code), 1012);
    }
    let (mut ann, welcome) = chat_url(addr, &format!("/ws/chat/r?name=ann&since=1&epoch={epoch}"));
    assert_eq!(welcome["resumed"], true, "{welcome}");
    let history: Vec<(u64, String)> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap_or(0),
                m["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [(2, "lost news".to_owned()), (3, "three".to_owned())],
        "{welcome}"
    );
    // Both rooms go on as before.
    say(&mut ann, "four");
    assert_eq!(next_of_type(&mut ann, "message")["id"], 4);
    say(&mut cy, "elsewhere");
    assert_eq!(next_of_type(&mut cy, "message")["text"], "elsewhere");
}

/// A message sent again with its cid through another node (the client lost its node
/// and came back on another) is not stored again: Redis keeps the key, whichever node
/// it came through, and the sender gets the message stored the first time.
#[test]
fn a_cid_holds_across_nodes() {
    let Some(redis) = Redis::start("cid_across") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut watcher, _) = chat(b.local_addr(), "r", Some("watcher"));
    let once = json!({"type": "message", "text": "once", "cid": "k-42"});
    let first = {
        let (mut ann, _) = chat(a.local_addr(), "r", Some("ann"));
        send_json(&mut ann, once.clone());
        next_of_type(&mut ann, "message")
    };
    assert_eq!(next_of_type(&mut watcher, "message")["id"], first["id"]);
    // Ann comes back on node B and sends it again.
    let (mut ann, _) = eventually(|| {
        let (ws, welcome) = chat(b.local_addr(), "r", Some("ann"));
        (welcome["name"] == "ann").then_some((ws, welcome))
    });
    send_json(&mut ann, once);
    let again = next_of_type(&mut ann, "message");
    assert_eq!(
        (&again["id"], &again["text"]),
        (&first["id"], &first["text"])
    );
    // The watcher hears the next message, not a second "once"; the history has one.
    say(&mut ann, "next");
    assert_eq!(next_of_type(&mut watcher, "message")["text"], "next");
    let stored = stored_texts(a.local_addr(), "r");
    assert_eq!(stored, ["once", "next"]);
}

/// A stalled Redis shows in every node's health within seconds, however many messages
/// each node had on their way to it: a batch is one reply to wait for, so one read's
/// time-out, not one per message.
#[test]
fn a_stalled_redis_shows_in_every_node_s_health_within_seconds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(redis) = Redis::start("stall_health") else {
        return;
    };
    let nodes = [node(&redis), node(&redis), node(&redis)];
    let stop = Arc::new(AtomicBool::new(false));
    let (busy_tx, busy) = crossbeam_channel::unbounded();
    // A busy sender on each node: bursts of 50 messages, its answers read between
    // bursts, for at most 30 s.
    let senders: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let (addr, stop, busy_tx) = (node.local_addr(), Arc::clone(&stop), busy_tx.clone());
            std::thread::spawn(move || {
                let (mut ws, _) = chat(addr, "busy", Some(&format!("sender{n}")));
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_millis(5)))
                    .expect("timeout");
                let end = Instant::now() + Duration::from_secs(30);
                let mut told = false;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    for i in 0..50 {
                        if ws.send(Message::text(format!("m{i}"))).is_err() {
                            return;
                        }
                    }
                    loop {
                        match ws.read() {
                            Ok(_) if !told => {
                                told = true;
                                let _ = busy_tx.send(());
                            }
                            Ok(_) => {}
                            Err(e) if timed_out(&e) => break,
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect();
    for _ in &nodes {
        busy.recv_timeout(Duration::from_secs(10))
            .expect("every sender is answered");
    }
    redis.pause();
    let paused = Instant::now();
    let mut noticed = Vec::new();
    for node in &nodes {
        while status(&get(node.local_addr(), "/healthz")) != 503 {
            assert!(
                paused.elapsed() < Duration::from_secs(20),
                "a node still says it is healthy 20 s into the stall"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        noticed.push(paused.elapsed());
    }
    redis.resume();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let _ = sender.join();
    }
    println!("the nodes said redis_down after {noticed:?}");
    let last = noticed.iter().max().copied().unwrap_or_default();
    assert!(
        last < Duration::from_secs(5),
        "health followed Redis after {last:?}"
    );
    for node in &nodes {
        eventually(|| (status(&get(node.local_addr(), "/healthz")) == 200).then_some(()));
    }
}

/// A join whose news is lost (the node's subscription broke just as it joined) is
/// answered all the same, at once: refused with a reason and 1012, or welcomed;
/// never left waiting. And then every join is welcomed again.
#[test]
fn a_join_while_the_subscription_is_down_is_answered_never_left_waiting() {
    let Some(redis) = Redis::start("join_news_lost") else {
        return;
    };
    let (a, b) = (node(&redis), node(&redis));
    let (mut ann, _) = chat(a.local_addr(), "r", Some("ann"));
    let (mut bo, _) = chat(b.local_addr(), "r", Some("bo"));
    let mut refused = 0;
    for round in 0..5 {
        redis.kill_subscribers();
        let mut late = connect(a.local_addr(), &format!("/ws/chat/r?name=late{round}"));
        // Read with the tests' read timeout, far below the handshake timeout: a join
        // must not wait for news that is not coming.
        let first = next_json(&mut late);
        match first["type"].as_str() {
            Some("welcome") => {}
            Some("error") => {
                assert_eq!(first["code"], "unavailable", "{first}");
                let close = close_frame(&mut late).expect("a close frame");
                assert_eq!(u16::from(close.code), 1012, "reconnect, please");
                refused += 1;
            }
            _ => panic!("round {round}: {first}"),
        }
    }
    println!("{refused} of 5 joins refused while the subscription was down");
    // Once the subscription is back, joins are welcomed, and see each other.
    let (_zed, welcome) = eventually(|| {
        let mut ws = connect(a.local_addr(), "/ws/chat/r?name=zed");
        let first = next_json(&mut ws);
        (first["type"] == "welcome").then_some((ws, first))
    });
    assert!(names(&welcome).contains(&"ann".to_owned()), "{welcome}");
    // Nobody given up holds a name anywhere: both nodes list the three alone.
    for ws in [&mut ann, &mut bo] {
        eventually(|| {
            send_json(ws, json!({"type": "members"}));
            let mut seen = names(&next_of_type(ws, "members"));
            seen.sort();
            (seen == ["ann", "bo", "zed"]).then_some(())
        });
    }
}

/// Behind a load balancer the next request may reach any node: a sign-in on one is
/// good on all (the cookie key is the cluster's, kept in Redis).
#[test]
fn a_sign_in_on_one_node_is_good_on_every_node() {
    let Some(redis) = Redis::start("sign_in_across") else {
        return;
    };
    let node = || {
        Server::builder()
            .listen("127.0.0.1:0")
            .redis(redis.url())
            .password("open sesame")
            .start()
            .expect("node starts")
    };
    let (a, b) = (node(), node());
    let body = "password=open+sesame";
    let answer = raw(
        a.local_addr(),
        format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status(&answer), 303, "{answer}");
    let cookie = header(&answer, "Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let rooms = |addr, cookie: &str| {
        status(&get_with(
            addr,
            "/api/rooms",
            &format!("Cookie: {cookie}\r\n"),
        ))
    };
    assert_eq!(
        rooms(b.local_addr(), &cookie),
        200,
        "signed in on node B too"
    );
    assert_eq!(rooms(b.local_addr(), "switchboard_session=0.forged"), 401);
    assert_eq!(rooms(a.local_addr(), &cookie), 200);
}

/// A node that joins a running cluster knows who is there already: its first
/// member's welcome lists them, and their names are taken.
#[test]
fn a_node_started_later_knows_who_is_already_there() {
    let Some(redis) = Redis::start("late_node") else {
        return;
    };
    let early = node(&redis);
    let (mut ann, _) = chat(early.local_addr(), "r", Some("ann"));
    let (_cy, _) = chat(early.local_addr(), "elsewhere", Some("cy"));
    let late = node(&redis);
    let (mut bob, welcome) = chat(late.local_addr(), "r", Some("bob"));
    assert_eq!(names(&welcome), ["ann", "bob"]);
    assert_eq!(next_of_type(&mut ann, "join")["name"], "bob");
    let (_, welcome) = chat(late.local_addr(), "r", Some("ann"));
    assert_eq!(welcome["name"], "ann-2", "taken on the other node");
    send_json(&mut bob, json!({"type": "rooms"}));
    let rooms = next_of_type(&mut bob, "rooms");
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "r", "members": 3}, {"name": "elsewhere", "members": 1}])
    );
}

/// Redis emptied under a running cluster (`FLUSHDB`, no restart): the heartbeat finds
/// the node forgotten and the epoch new, and the clients are told to refresh.
#[test]
fn redis_emptied_while_running_is_a_new_epoch_too() {
    let Some(redis) = Redis::start("redis_flushed") else {
        return;
    };
    let a = node(&redis);
    let (mut ann, welcome) = chat(a.local_addr(), "r", Some("ann"));
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    redis.flush();
    let close = loop {
        match ann.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("expected a close, got {e}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1012));
    let (_, welcome) = chat(a.local_addr(), "r", Some("ann"));
    assert_ne!(welcome["epoch"], epoch.as_str());
    assert_eq!(welcome["name"], "ann");
}

/// After Redis is emptied, each node finds out on its own heartbeat: the clients of
/// the first to know are back before the others have started over. Every node still
/// knows every member once they are all back, and a direct message reaches any.
#[test]
fn after_redis_is_emptied_every_node_knows_every_member_again() {
    let Some(redis) = Redis::start("redis_flushed_three") else {
        return;
    };
    let nodes = [node(&redis), node(&redis), node(&redis)];
    let names = ["ann", "ben", "cy"];
    let mut clients: Vec<Client> = nodes
        .iter()
        .zip(names)
        .map(|(node, name)| chat(node.local_addr(), "r", Some(name)).0)
        .collect();
    redis.flush();
    // Each is closed with 1012 and comes straight back, as the page does.
    for (i, ws) in clients.iter_mut().enumerate() {
        let close = close_frame(ws).expect("a close frame");
        assert_eq!(u16::from(close.code), 1012);
        *ws = chat(nodes[i].local_addr(), "r", Some(names[i])).0;
    }
    for ws in &mut clients {
        eventually(|| {
            send_json(ws, json!({"type": "members"}));
            let mut seen = self::names(&next_of_type(ws, "members"));
            seen.sort();
            (seen == ["ann", "ben", "cy"]).then_some(())
        });
    }
    send_json(
        &mut clients[0],
        json!({"type": "direct", "to": "cy", "text": "still here?"}),
    );
    assert_eq!(
        next_of_type(&mut clients[2], "direct")["text"],
        "still here?"
    );
}

#[test]
fn an_admin_is_an_admin_on_every_node_and_the_role_is_per_connection() {
    let Some(redis) = Redis::start("admin_role") else {
        return;
    };
    let guarded = || {
        Server::builder()
            .listen("127.0.0.1:0")
            .redis(redis.url())
            .password("pw")
            .admin_password("admin pw")
            .start()
            .expect("node starts")
    };
    let (a, b) = (guarded(), guarded());
    let body = r#"{"password":"admin pw"}"#;
    let login = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let signed_in = raw(a.local_addr(), login.as_bytes());
    assert_eq!(status(&signed_in), 204, "{signed_in}");
    let cookie = header(&signed_in, "Set-Cookie")
        .and_then(|c| c.split(';').next())
        .expect("a cookie")
        .to_owned();
    // Signed in on node A, an admin on node B: the nodes share the signing key.
    let open = |addr: SocketAddr, header: &'static str, value: &str| {
        let mut request = format!("ws://{addr}/ws/chat/hall")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(header, value.parse().unwrap());
        let (mut ws, _) = tungstenite::client(request, tcp(addr)).expect("signed in");
        let welcome = next_of_type(&mut ws, "welcome");
        (ws, welcome)
    };
    let (mut admin, welcome) = open(b.local_addr(), "Cookie", &cookie);
    assert_eq!(welcome["role"], "admin");
    let (_member, welcome) = open(a.local_addr(), "Authorization", "Bearer pw");
    assert_eq!(welcome["role"], "member");
    // Still an admin in the next room's welcome.
    send_json(&mut admin, json!({"type": "join", "room": "stage"}));
    assert_eq!(next_of_type(&mut admin, "welcome")["role"], "admin");
}
