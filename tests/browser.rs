//! The browser chat page at `/`, driven in real headless Chromium, and in WebKit.
//!
//! Each test starts a server on `127.0.0.1:0`, a `chromedriver`, and one fresh
//! Chromium per page (its own empty profile, so its own `localStorage`), then acts
//! like a person: it types a name into the join form, presses Enter in the message
//! box, clicks a member. It reads the page back through stable hooks
//! (`data-testid`, and `data-kind`/`data-from`/`data-mine` on each entry of `#log`)
//! and saves a screenshot of every page under `target/tmp/browser/`.
//!
//! The tests named `…_in_webkit` run the same test in WebKitGTK's MiniBrowser
//! (Safari's engine) under Xvfb, through `WebKitWebDriver`; the others need
//! Chromium's DevTools (a script before the page's own, emulated media or touch).
//! `page_meets_wcag_2_2_aa_in_every_state` runs axe-core (npm's `axe-core`) over
//! every state of the page.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`), or `WebKitWebDriver` and `Xvfb` (`webkit2gtk-driver`,
//! `xvfb`) for the WebKit tests, the browser tests say they were skipped and pass,
//! so `cargo test` works anywhere; `.ci/run` installs them and sets
//! `SWITCHBOARD_REQUIRE_BROWSER=1`, which turns a skip into a failure (and
//! `SWITCHBOARD_REQUIRE_TOOLS=1`, which does the same for a missing axe-core).
//!
//! `cargo test --test browser -- --ignored readme_screenshot` regenerates the
//! README's screenshots (`docs/screenshot*.png`: desktop and phone, light and dark),
//! and `-- --ignored wire_panel_screenshot` the Wire panel's, `docs/wire-panel.png`.

mod common;
#[path = "browser/webdriver.rs"]
mod webdriver;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::{Server, ServerHandle};
use tungstenite::client::IntoClientRequest;
use webdriver::{BACKSPACE, Driver, ENTER, ESCAPE, Engine, Session, TimedOut, WAIT};

/// The page as built into the binary.
const PAGE: &str = include_str!("../src/http/page.html");

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

/// A description of the page for failure messages: connection state and the log.
const DESCRIBE: &str = "return {
    url: location.href,
    status: document.querySelector('[data-testid=status]').dataset.state,
    title: document.title,
    members: [...document.querySelectorAll('[data-testid=members] .name')].map(n => n.textContent),
    rooms: [...document.querySelectorAll('[data-testid=rooms] button')].map(b => `${b.dataset.room} ${b.dataset.members}`),
    log: [...document.querySelectorAll('#log > li')].map(li =>
        `${li.dataset.kind} ${li.dataset.from || ''}: ${li.querySelector('[data-part=text]')?.textContent}`),
};";

/// A `chromedriver`, or `None` after saying why the browser tests cannot run here.
fn driver_or_skip(test: &str) -> Option<Driver> {
    driver_or_skip_in(test, Engine::Chromium)
}

/// A driver for `engine`, or `None` after saying why it cannot run here (a failure
/// instead when `SWITCHBOARD_REQUIRE_BROWSER` is set, as in CI).
fn driver_or_skip_in(test: &str, engine: Engine) -> Option<Driver> {
    let Some(why) = Driver::missing_engine(engine) else {
        return Some(Driver::start_engine(engine));
    };
    assert!(
        std::env::var_os("SWITCHBOARD_REQUIRE_BROWSER").is_none(),
        "{test}: SWITCHBOARD_REQUIRE_BROWSER is set but {why}"
    );
    // Straight to stderr: the test harness swallows print!() output of passing
    // tests, and a skipped test should be visible.
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
    None
}

/// One entry of a page's `#log`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    from: String,
    to: String,
    mine: bool,
    text: String,
}

/// One person's browser, showing the chat page.
struct Page {
    session: Session,
    who: &'static str,
}

impl Page {
    /// Opens `url` in a fresh browser and joins the chat as `name` through the join
    /// form, the way a first-time visitor does.
    fn join(driver: &Driver, url: &str, name: &'static str, size: (u32, u32)) -> Page {
        let page = Page::blank(driver, name, size);
        page.join_at(url);
        page
    }

    /// A fresh browser for `name` that has not loaded anything yet, for a test to
    /// prepare (permissions, scripts that run before the page's) before
    /// [`Page::join_at`].
    fn blank(driver: &Driver, name: &'static str, (w, h): (u32, u32)) -> Page {
        Page {
            session: driver.session(w, h),
            who: name,
        }
    }

    /// Opens `url` and joins the chat through the join form.
    fn join_at(&self, url: &str) {
        self.session.goto(url);
        self.wait(
            "the join form of a first visit",
            "!document.querySelector('[data-testid=join]').hidden",
            json!([]),
        );
        self.screenshot(&format!("join-{}.png", self.who));
        self.session
            .type_into("[data-testid=join-name]", &format!("{}{ENTER}", self.who));
        self.wait_online();
    }

    /// Runs `source` in every document this browser loads from now on, before the
    /// page's own scripts.
    fn before_scripts(&self, source: &str) {
        self.session.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        );
    }

    /// Polls the JavaScript `expression` until it is truthy. On a time-out it saves a
    /// screenshot and fails with what the page shows.
    fn wait(&self, what: &str, expression: &str, args: Value) -> Value {
        self.wait_up_to(WAIT, what, expression, args)
    }

    /// [`Page::wait`] with a time limit of its own.
    fn wait_up_to(&self, limit: Duration, what: &str, expression: &str, args: Value) -> Value {
        match self.session.wait(limit, expression, &args) {
            Ok(value) => value,
            Err(TimedOut) => {
                let state = self.session.execute(DESCRIBE, json!([]));
                let shot = self.save_screenshot(&format!("failed-{}.png", self.who));
                panic!(
                    "timed out after {limit:?} waiting for {what} on {}'s page ({}); it shows {state:#}",
                    self.who,
                    shot.display()
                );
            }
        }
    }

    /// Runs `script` (a function body) on the page and returns what it returns.
    fn run(&self, script: &str) -> Value {
        self.session.execute(script, json!([]))
    }

    fn wait_online(&self) {
        self.wait(
            "status online",
            "document.querySelector('[data-testid=status]').dataset.state === 'online'",
            json!([]),
        );
    }

    /// Types `text` into the message box and presses Enter.
    fn send(&self, text: &str) {
        self.session
            .type_into("[data-testid=text]", &format!("{text}{ENTER}"));
    }

    /// Types `text` into the message box and presses Send (a touch keyboard's Enter
    /// makes a new line).
    fn send_by_button(&self, text: &str) {
        self.session.type_into("[data-testid=text]", text);
        self.session.click("[data-testid=send]");
    }

    /// Every entry in the log, oldest first.
    fn entries(&self) -> Vec<Entry> {
        let list = self.session.execute(
            "return [...document.querySelectorAll('#log > li')].map(li => ({
                kind: li.dataset.kind, from: li.dataset.from || '', to: li.dataset.to || '',
                mine: li.dataset.mine === 'true',
                text: li.querySelector('[data-part=text]').textContent,
            }));",
            json!([]),
        );
        list.as_array()
            .expect("an array of entries")
            .iter()
            .map(|e| Entry {
                kind: e["kind"].as_str().unwrap_or_default().to_owned(),
                from: e["from"].as_str().unwrap_or_default().to_owned(),
                to: e["to"].as_str().unwrap_or_default().to_owned(),
                mine: e["mine"] == true,
                text: e["text"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// `(from, text)` of every room message in the log.
    fn messages(&self) -> Vec<(String, String)> {
        self.entries()
            .into_iter()
            .filter(|e| e.kind == "message")
            .map(|e| (e.from, e.text))
            .collect()
    }

    /// `(id, text)` of every room message in the log, in the order shown.
    fn numbered(&self) -> Vec<(u64, String)> {
        let list = self.run(
            "return [...document.querySelectorAll('#log > li[data-kind=message]')].map(li =>
                [Number(li.dataset.id), li.querySelector('[data-part=text]').textContent]);",
        );
        serde_json::from_value(list).expect("[id, text] pairs")
    }

    /// A data attribute of `#log`: `epoch`, `resumed` or `more`.
    fn log_says(&self, attribute: &str) -> String {
        let value = self.session.execute(
            "return document.querySelector('[data-testid=log]').dataset[arguments[0]] ?? null;",
            json!([attribute]),
        );
        value
            .as_str()
            .unwrap_or_else(|| panic!("#log has no data-{attribute} on {}'s page", self.who))
            .to_owned()
    }

    /// Waits for the connection status `state` (`online`, `reconnecting`, …), for at
    /// most `limit`.
    fn wait_status(&self, limit: Duration, state: &str) {
        self.wait_up_to(
            limit,
            &format!("status {state}"),
            "document.querySelector('[data-testid=status]').dataset.state === arguments[0]",
            json!([state]),
        );
    }

    /// Waits for an entry of `kind` whose text is exactly `text`.
    fn wait_entry(&self, kind: &str, text: &str) {
        self.wait(
            &format!("a {kind} entry {text:?}"),
            "[...document.querySelectorAll('#log > li')].some(li =>
                li.dataset.kind === arguments[0]
                && li.querySelector('[data-part=text]').textContent === arguments[1])",
            json!([kind, text]),
        );
    }

    /// Waits until the private conversation with `peer` is on screen and shows an
    /// entry whose text is exactly `text`.
    fn wait_private(&self, peer: &str, text: &str) {
        self.wait(
            &format!("the private message {text:?} in the conversation with {peer}"),
            "document.querySelector('[data-testid=app]').dataset.view === 'private'
             && document.querySelector('#title-peer').textContent === arguments[0]
             && [...document.querySelectorAll('[data-testid=dm-log] > li')].some(li =>
                li.dataset.kind === 'direct'
                && li.querySelector('[data-part=text]').textContent === arguments[1])",
            json!([peer, text]),
        );
    }

    /// `[peer, unread]` of each private conversation in the side panel, in order.
    fn conversations(&self) -> Value {
        self.run(
            "return [...document.querySelectorAll('[data-testid=convos] button[data-convo]')]
                .map(b => [b.dataset.convo,
                           Number(b.querySelector('[data-part=unread]')?.firstChild.textContent ?? 0)]);",
        )
    }

    /// Waits until the member list holds exactly `names`, in any order.
    fn wait_members(&self, names: &[&str]) {
        let mut want: Vec<&str> = names.to_vec();
        want.sort_unstable();
        self.wait(
            &format!("members {want:?}"),
            "JSON.stringify([...document.querySelectorAll('[data-testid=members] .name')]
                .map(n => n.textContent).sort()) === arguments[0]",
            json!([serde_json::to_string(&want).unwrap()]),
        );
    }

    /// Saves a screenshot as `target/tmp/browser/{file}`, unchecked.
    fn save_screenshot(&self, file: &str) -> PathBuf {
        let png = webdriver::base64_decode(&self.session.screenshot_base64());
        write_screenshot(file, &png)
    }

    /// Saves a screenshot as `target/tmp/browser/{file}` and checks it shows
    /// something: a valid PNG of the viewport with many colours, not one flat fill.
    fn screenshot(&self, file: &str) -> PathBuf {
        let encoded = self.session.screenshot_base64();
        let png = webdriver::base64_decode(&encoded);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{file} is a PNG");
        let path = write_screenshot(file, &png);

        // Let the browser decode the PNG (no image crate needed) and count colours
        // on a sample of pixels.
        let stats = self.session.execute_async(
            "const [b64, done] = arguments;
             const img = new Image();
             img.onerror = () => done(null);
             img.onload = () => {
                 const c = document.createElement('canvas');
                 c.width = img.naturalWidth; c.height = img.naturalHeight;
                 const g = c.getContext('2d');
                 g.drawImage(img, 0, 0);
                 const d = g.getImageData(0, 0, c.width, c.height).data;
                 const counts = new Map();
                 let n = 0;
                 for (let i = 0; i < d.length; i += 4 * 5, n++) {
                     const key = (d[i] >> 3) << 10 | (d[i + 1] >> 3) << 5 | d[i + 2] >> 3;
                     counts.set(key, (counts.get(key) || 0) + 1);
                 }
                 done({width: c.width, height: c.height, colours: counts.size,
                       dominant: Math.max(...counts.values()) / n,
                       viewport: [innerWidth, innerHeight]});
             };
             img.src = 'data:image/png;base64,' + b64;",
            json!([encoded]),
        );
        assert!(stats.is_object(), "{file} decodes as an image: {stats}");
        assert_eq!(
            json!([stats["width"], stats["height"]]),
            stats["viewport"],
            "{file} covers the viewport"
        );
        assert!(
            stats["colours"].as_u64() > Some(20) && stats["dominant"].as_f64() < Some(0.95),
            "{file} is not blank: {stats}"
        );
        path
    }
}

/// Writes `png` as `target/tmp/browser/{file}`.
fn write_screenshot(file: &str, png: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    let path = dir.join(file);
    std::fs::write(&path, png).expect("write the screenshot");
    path
}

/// Starts a server on `addr` again, retrying while the old socket lets go.
fn restart_on(addr: SocketAddr) -> ServerHandle {
    let deadline = Instant::now() + WAIT;
    loop {
        match Server::builder().listen(addr.to_string()).start() {
            Ok(server) => return server,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot listen on {addr} again: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Whether `GET /healthz` on `addr` answers 200 (within a second or two).
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// The `switchboard` binary serving plain http and ws on a loopback port, with its
/// history in a data directory. Dropping it kills it (SIGKILL) and reaps it, so a
/// failing test leaves no server behind.
struct Binary {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Binary {
    /// Starts the binary on `port` with `--data data` and waits until `/healthz`
    /// answers. A start that fails (the port not yet let go by a server just killed)
    /// is tried again, up to [`WAIT`]. Its output goes to `server.log` in `data`.
    fn start(port: u16, data: &Path) -> Binary {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = data.join("server.log");
        let deadline = Instant::now() + WAIT;
        loop {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open the server log");
            let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .arg("--listen")
                .arg(addr.to_string())
                .args(["--no-tls", "--no-qr", "--data"])
                .arg(data)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("the server log"))
                .stderr(out)
                .spawn()
                .expect("the switchboard binary runs");
            // The guard from here on: a panic below kills the child.
            let mut server = Binary {
                child,
                addr,
                log: log.clone(),
            };
            loop {
                if healthy(addr) {
                    return server;
                }
                if server
                    .child
                    .try_wait()
                    .expect("the server's status")
                    .is_some()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "switchboard on {addr} does not answer /healthz in {WAIT:?}; it said:\n{}",
                    server.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "switchboard on {addr} keeps exiting at start; it said:\n{}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed, for failure messages.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, as a crash or `kill -9` would, and reaps it.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets a test take a page's network away and give it back: while
/// Records the page's pending time-outs: `window.__timers` maps each one's id to the
/// name of the function it will run, until it runs or is cleared.
const TIMERS: &str = "(() => {
    const timers = new Map();
    window.__timers = timers;
    const set = window.setTimeout.bind(window), clear = window.clearTimeout.bind(window);
    window.setTimeout = (fn, ms, ...args) => {
        const id = set((...a) => { timers.delete(id); fn(...a); }, ms, ...args);
        timers.set(id, fn.name || 'anonymous');
        return id;
    };
    window.clearTimeout = (id) => { timers.delete(id); clear(id); };
})();";

/// `window.__network.down` is true, every WebSocket the page opens goes to a path
/// the server refuses, so the page stays offline and keeps retrying as it would
/// without a network. `window.__network.urls` records the URLs the page asked for.
const NETWORK_SWITCH: &str = "(() => {
    const Real = window.WebSocket;
    const network = { down: false, urls: [] };
    window.__network = network;
    window.WebSocket = class extends Real {
        constructor(url, protocols) {
            network.urls.push(String(url));
            super(network.down ? new URL('/offline', url).href : url, protocols);
        }
    };
})();";

/// Records every frame the page sends on a WebSocket in `window.__sent`.
const RECORD_SENT: &str = "(() => {
    const sent = [];
    window.__sent = sent;
    const realSend = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
        sent.push(String(data));
        return realSend.call(this, data);
    };
})();";

/// The `history` requests a page with [`RECORD_SENT`] has sent, in order.
const HISTORY_SENT: &str =
    "return window.__sent.map(s => { try { return JSON.parse(s); } catch { return null; } })
    .filter(r => r && r.type === 'history');";

/// Makes the page see what a server sends when its store fails, as if the disk had
/// (a real failure cannot be forced from here): its first own message whose text is
/// `window.__failText` comes back as the error `unavailable`; with
/// `window.__failWelcome` set, the next welcome comes without its history, as when
/// the store could not read it, followed by that error. `window.__sockets` holds the
/// page's sockets, for a test to close one as a network drop would.
const FAIL_STORE: &str = "(() => {
    const Real = window.WebSocket;
    const sockets = [];
    window.__sockets = sockets;
    window.__failText = null;
    window.__failWelcome = false;
    const error = (message) => new MessageEvent('message',
        {data: JSON.stringify({type: 'error', code: 'unavailable', message})});
    window.WebSocket = class extends Real {
        constructor(...args) {
            super(...args);
            sockets.push(this);
        }
        set onmessage(handler) {
            super.onmessage = (e) => {
                let m = null;
                try { m = JSON.parse(e.data); } catch { /* not JSON */ }
                if (m && m.type === 'message' && m.text === window.__failText) {
                    window.__failText = null;
                    return handler(error('the message could not be stored, so nobody got it; try again'));
                }
                if (m && m.type === 'welcome' && window.__failWelcome) {
                    window.__failWelcome = false;
                    const failed = {...m, history: [], last_id: 0, resumed: false};
                    handler(new MessageEvent('message', {data: JSON.stringify(failed)}));
                    return handler(error(\"the room's history cannot be read now\"));
                }
                return handler(e);
            };
        }
        get onmessage() { return super.onmessage; }
    };
})();";

/// The share panel's invite link (the text field).
const SHARE_LINK: &str = "document.querySelector('[data-testid=share-link]').dataset.link";

/// The text the share panel's QR `<img>` asks `/qr.svg` to draw, once the image has
/// loaded (`null` before).
const QR_TEXT: &str = "(() => {
    const img = document.querySelector('[data-testid=share-qr]');
    return img.complete && img.naturalWidth > 0 && !img.hidden
        ? new URL(img.src).searchParams.get('text') : null;
})()";

/// The room list: `[name, members]` of each entry, in the order shown.
const ROOM_LIST: &str =
    "JSON.stringify([...document.querySelectorAll('[data-testid=rooms] button')]
    .map(b => [b.querySelector('[data-part=name]').textContent,
               Number(b.querySelector('[data-part=count]').textContent)]))";

/// Decodes the QR code in the PNG `png` (saved as `target/tmp/browser/{file}`) with
/// `zbarimg`; fails the test if it finds none.
fn decode_qr(zbarimg: &Path, png: &[u8], file: &str) -> String {
    let path = write_screenshot(file, png);
    let mut child = std::process::Command::new(zbarimg)
        .args(["--quiet", "--raw"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("zbarimg runs");
    let Some(exit) = wait_exit(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("zbarimg did not finish reading {} in 30 s", path.display());
    };
    let output = child.wait_with_output().expect("zbarimg's output");
    assert!(
        exit.success(),
        "zbarimg found no QR code in {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

/// What a plain client `ws` receives until the room message `text`: the events
/// before it, in order (the message itself excluded).
fn events_until_message(ws: &mut Client, text: &str) -> Vec<Value> {
    let mut before = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let event = next_json(ws);
        if event["type"] == "message" && event["text"] == text {
            return before;
        }
        before.push(event);
    }
    panic!("no message {text:?} in time; got {before:?}");
}

#[test]
fn page_is_served_self_contained_and_never_parses_text_as_html() {
    let server = start();
    let response = get(server.local_addr(), "/");
    assert_eq!(status(&response), 200);
    assert!(
        response.ends_with(PAGE),
        "GET / serves the page built from src/http/page.html"
    );
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "<script src",
        "<link rel=\"stylesheet\"",
        "@import",
    ] {
        assert!(!PAGE.contains(forbidden), "the page uses {forbidden}");
    }
    // No CDN: nothing is loaded from another host, so a LAN without internet works.
    for remote in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "src=\"//",
        "href=\"//",
    ] {
        assert!(!PAGE.contains(remote), "the page loads {remote}…");
    }
}

#[test]
fn two_pages_chat_in_one_room() {
    two_pages_chat_in_one_room_in(Engine::Chromium);
}

#[test]
fn two_pages_chat_in_one_room_in_webkit() {
    two_pages_chat_in_one_room_in(Engine::WebKit);
}

fn two_pages_chat_in_one_room_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("two_pages_chat_in_one_room", engine) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#e2e");

    // Alice on a desktop, then Bob on a phone; each sees the other.
    let alice = Page::join(&driver, &url, "alice", DESKTOP);
    alice.wait_entry(
        "system",
        "You joined #e2e as alice. Nobody else is here yet.",
    );
    let bob = Page::join(&driver, &url, "bob", PHONE);
    alice.wait_entry("system", "bob joined");
    bob.wait_entry("system", "You joined #e2e as bob. alice is here.");
    alice.wait_members(&["alice", "bob"]);
    bob.wait_members(&["alice", "bob"]);
    let hash = bob.session.execute("return location.hash;", json!([]));
    assert_eq!(hash, "#e2e", "the room is in the URL");
    let unlabelled = alice.session.execute(
        "return [...document.querySelectorAll('input, textarea')]
            .filter(f => f.labels.length === 0).map(f => f.id);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "every field has a label");
    // The routing hint a load balancer hashes (deploy/nginx.conf): set once per
    // browser, kept across reloads, never HttpOnly-protected data.
    let route = "return (document.cookie.match(/(?:^|; )switchboard_route=([0-9a-f]{16})/) || [])[1] || null;";
    let first = alice.session.execute(route, json!([]));
    assert!(
        first.is_string(),
        "the page set its routing cookie: {first}"
    );
    alice.session.execute("location.reload();", json!([]));
    alice.wait_online();
    assert_eq!(
        alice.session.execute(route, json!([])),
        first,
        "kept across reloads"
    );

    // On a phone the member list is a drawer behind the People button; Escape
    // closes it.
    bob.session.click("[data-testid=people-toggle]");
    let drawer = "getComputedStyle(document.querySelector('[data-testid=side]'))";
    bob.wait(
        "the people drawer open",
        &format!("{drawer}.visibility === 'visible' && {drawer}.transform === 'none'"),
        json!([]),
    );
    bob.screenshot("chat-bob-phone-people.png");
    bob.session
        .type_into("[data-testid=members] button[data-member=alice]", ESCAPE);
    bob.wait(
        "the people drawer closed",
        &format!("{drawer}.visibility === 'hidden'"),
        json!([]),
    );

    // Carol is a plain WebSocket client: a bystander for the direct messages.
    let (mut carol, _) = chat(addr, "e2e", Some("carol"));
    alice.wait_members(&["alice", "bob", "carol"]);
    bob.wait_entry("system", "carol joined");

    // Messages cross both ways, in order, with Enter to send.
    alice.send("hi bob");
    alice.send("how are you?");
    bob.wait_entry("message", "how are you?");
    bob.send("fine, thanks");
    alice.wait_entry("message", "fine, thanks");
    alice.send("great");
    bob.wait_entry("message", "great");
    let conversation: Vec<(String, String)> = [
        ("alice", "hi bob"),
        ("alice", "how are you?"),
        ("bob", "fine, thanks"),
        ("alice", "great"),
    ]
    .iter()
    .map(|(f, t)| (f.to_string(), t.to_string()))
    .collect();
    assert_eq!(alice.messages(), conversation, "alice's page");
    assert_eq!(bob.messages(), conversation, "bob's page");
    for (page, me) in [(&alice, "alice"), (&bob, "bob")] {
        for entry in page.entries().iter().filter(|e| e.kind == "message") {
            assert_eq!(
                entry.mine,
                entry.from == me,
                "own messages set apart: {entry:?}"
            );
        }
    }

    // A direct message from clicking a member (which opens the private
    // conversation with them), and one typed as /msg: each reaches its target and
    // the sender's copy, and carol sees neither.
    alice
        .session
        .click("[data-testid=members] button[data-member=bob]");
    alice.wait(
        "the private conversation with bob",
        "document.querySelector('[data-testid=app]').dataset.view === 'private'
         && document.activeElement === document.querySelector('[data-testid=text]')",
        json!([]),
    );
    alice.send("the door code is 4711");
    bob.wait_entry("direct", "the door code is 4711");
    alice.wait_private("bob", "the door code is 4711");
    alice.session.click("[data-testid=dm-back]");
    bob.send("/msg alice got it, thanks");
    alice.wait_entry("direct", "got it, thanks");
    bob.wait_entry("direct", "got it, thanks");
    let received = bob
        .entries()
        .into_iter()
        .find(|e| e.kind == "direct" && !e.mine)
        .expect("bob's page shows the direct message");
    assert_eq!(
        (received.from.as_str(), received.to.as_str()),
        ("alice", "bob")
    );
    alice.send("back to the room");
    let carol_saw = events_until_message(&mut carol, "back to the room");
    assert!(
        carol_saw.iter().all(|e| e["type"] != "direct"),
        "a direct message reached a bystander: {carol_saw:?}"
    );
    assert_eq!(
        carol_saw.iter().filter(|e| e["type"] == "message").count(),
        4,
        "carol got the room's messages: {carol_saw:?}"
    );

    // Markup in a message is text: no element is created and no script runs.
    let injection = "<img src=x onerror=alert(1)>";
    bob.send(injection);
    for page in [&alice, &bob] {
        page.wait_entry("message", injection);
        let elements = page.session.execute(
            "return document.querySelectorAll('#log img, #log script, #log [onerror]').length
                + [...document.querySelectorAll('#log [data-part=text]')]
                    .filter(t => t.textContent === arguments[0] && t.children.length > 0).length;",
            json!([injection]),
        );
        assert_eq!(elements, 0, "markup became elements on {}'s page", page.who);
    }
    // A script, had one been created, would have run by the time a later message
    // has made a full round trip.
    bob.send("still text");
    alice.wait_entry("message", "still text");
    for page in [&alice, &bob] {
        assert_eq!(
            page.session.alert_text(),
            None,
            "an alert opened on {}'s page",
            page.who
        );
    }

    // A rename shows in the other's member list.
    bob.send("/nick robert");
    alice.wait_entry("system", "bob is now robert");
    alice.wait_members(&["alice", "robert", "carol"]);
    bob.wait_entry("system", "You are now robert");

    // A departure too.
    close_politely(carol);
    alice.wait_entry("system", "carol left");
    alice.wait_members(&["alice", "robert"]);

    alice.screenshot("chat-alice-desktop.png");
    bob.screenshot("chat-bob-phone.png");
}

/// The issue's first defect: private messages vanished on a room switch. Each person
/// is a conversation of its own, with an unread count, that outlives room switches
/// and reconnects; each private message has a Reply action; someone in another room
/// can be written to without `/msg`; a message naming the reader is marked.
#[test]
fn private_conversations_outlive_room_switches_and_reconnects() {
    private_conversations_outlive_room_switches_and_reconnects_in(Engine::Chromium);
}

#[test]
fn private_conversations_outlive_room_switches_and_reconnects_in_webkit() {
    private_conversations_outlive_room_switches_and_reconnects_in(Engine::WebKit);
}

fn private_conversations_outlive_room_switches_and_reconnects_in(engine: Engine) {
    let test = "private_conversations_outlive_room_switches_and_reconnects";
    let Some(driver) = driver_or_skip_in(test, engine) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let alice = Page::join(&driver, &format!("http://{addr}/#alpha"), "alice", DESKTOP);
    let (mut bob, _) = chat(addr, "alpha", Some("bob"));
    let (mut carol, _) = chat(addr, "beta", Some("carol"));
    alice.wait_entry("system", "bob joined");

    // bob writes while alice is in #alpha: she sees it where she is, with a Reply
    // action, and bob is a conversation with one unread.
    send_json(
        &mut bob,
        json!({"type": "direct", "to": "alice", "text": "first secret"}),
    );
    alice.wait_entry("direct", "first secret");
    assert_eq!(alice.conversations(), json!([["bob", 1]]));
    let reply = alice.run(
        "const b = document.querySelector('#log > li[data-kind=direct] button[data-action=reply]');
         return b && [b.textContent, b.dataset.peer];",
    );
    assert_eq!(
        reply,
        json!(["Reply to bob", "bob"]),
        "a reply action, named for the sender"
    );

    // To #beta and a message there, then back: nothing is lost.
    alice.send("/join beta");
    alice.wait_entry("system", "You joined #beta as alice. carol is here.");
    send_json(
        &mut bob,
        json!({"type": "direct", "to": "alice", "text": "second secret"}),
    );
    alice.wait(
        "two unread from bob",
        "document.querySelector('[data-testid=convos] [data-convo=bob] [data-part=unread]')
            ?.firstChild.textContent === '2'",
        json!([]),
    );
    alice.send("/join alpha");
    alice.wait_entry("system", "You joined #alpha as alice. bob is here.");
    assert_eq!(
        alice.conversations(),
        json!([["bob", 2]]),
        "kept across room switches"
    );
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=title-unread]').hidden;"),
        false,
        "the title says private messages wait"
    );
    alice
        .session
        .click("[data-testid=convos] button[data-convo=bob]");
    alice.wait_private("bob", "first secret");
    alice.wait_private("bob", "second secret");
    assert_eq!(
        alice.conversations(),
        json!([["bob", 0]]),
        "read once opened"
    );
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=title-unread]').hidden;"),
        true
    );
    assert_eq!(
        alice.run(
            "const t = document.querySelector('#title-private');
             return [t.hidden, t.textContent, document.querySelector('#title-room').hidden];"
        ),
        json!([false, "Private conversation with bob private", true]),
        "the header names the person"
    );

    // Reply: what she types goes to bob alone.
    alice
        .session
        .click("[data-testid=dm-log] li[data-kind=direct] button[data-action=reply]");
    alice.send("got both");
    // bob's own copies of what he sent come first.
    let got = loop {
        let direct = next_of_type(&mut bob, "direct");
        if direct["from"] != "bob" {
            break direct;
        }
    };
    assert_eq!(
        (&got["from"], &got["to"], &got["text"]),
        (&json!("alice"), &json!("bob"), &json!("got both"))
    );
    alice.wait_private("bob", "got both");

    // carol is in another room: a name in the Private section reaches her.
    alice
        .session
        .type_into("[data-testid=convo-input]", &format!("carol{ENTER}"));
    alice.wait(
        "the conversation with carol",
        "document.querySelector('#title-peer').textContent === 'carol'",
        json!([]),
    );
    alice.send("hello from alpha");
    let got = next_of_type(&mut carol, "direct");
    assert_eq!(
        (&got["from"], &got["text"]),
        (&json!("alice"), &json!("hello from alpha"))
    );
    assert_eq!(alice.conversations(), json!([["bob", 0], ["carol", 0]]));

    // The server restarts: the page reconnects, and the conversations are still
    // there (bob comes back too, to mention her below).
    drop((bob, carol));
    server.shutdown();
    alice.wait_status(WAIT, "reconnecting");
    let _server = restart_on(addr);
    alice.wait_online();
    let (mut bob, _) = chat(addr, "alpha", Some("bob"));
    assert_eq!(
        alice.conversations(),
        json!([["bob", 0], ["carol", 0]]),
        "kept across reconnects"
    );
    alice
        .session
        .click("[data-testid=convos] button[data-convo=bob]");
    alice.wait_private("bob", "second secret");
    alice.wait_private("bob", "got both");
    alice.screenshot("private-conversation.png");

    // Back in the room: a message naming her is marked, one that merely contains her
    // name inside a word is not.
    alice.session.click("[data-testid=dm-back]");
    say(&mut bob, "alice, can you look at this?");
    say(&mut bob, "no malice meant");
    alice.wait_entry("message", "no malice meant");
    let marked = alice.run(
        "return [...document.querySelectorAll('#log > li[data-kind=message]')]
            .map(li => [li.querySelector('[data-part=text]').textContent, li.dataset.mention === 'true']);",
    );
    assert_eq!(
        marked,
        json!([
            ["alice, can you look at this?", true],
            ["no malice meant", false]
        ])
    );
}

/// The issue's stale and missing state: each thing the page says stops being said
/// when it stops being true, and nothing it is asked to do loses what was typed.
#[test]
fn page_state_tells_the_truth() {
    let Some(driver) = driver_or_skip("page_state_tells_the_truth") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "truth", Some("bob"));
    for n in 1..=40 {
        say(&mut bob, &format!("backlog {n}"));
    }
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.before_scripts(NETWORK_SWITCH);
    alice.before_scripts(FAIL_STORE);
    alice.join_at(&format!("http://{addr}/#truth"));
    alice.wait_entry("message", "backlog 40");
    let text = "document.querySelector('[data-testid=text]').value";
    let hint = "document.querySelector('#hint')";

    // A refused /msg and a refused /nick keep what was typed.
    alice.send("/msg nobody are you there?");
    alice.wait(
        "the refused private message back in the box",
        &format!("{text} === '/msg nobody are you there?'"),
        json!([]),
    );
    assert!(alice.entries().iter().any(|e| e.kind == "error"));
    alice.run("document.querySelector('[data-testid=text]').value = '';");
    alice.send("/nick bob");
    alice.wait(
        "the refused rename back in the box",
        &format!("{text} === '/nick bob'"),
        json!([]),
    );
    alice.run("document.querySelector('[data-testid=text]').value = '';");

    // Scrolled up, a join does not call for the "New messages" button; messages
    // do, and it counts them.
    // Two frames later the page has had its scroll event.
    let top = alice.session.execute_async(
        "const done = arguments[0];
         document.querySelector('#scroller').scrollTop = 0;
         requestAnimationFrame(() => requestAnimationFrame(() =>
             done(document.querySelector('#scroller').scrollTop)));",
        json!([]),
    );
    assert_eq!(top, 0, "scrolled up");
    let (carol, _) = chat(addr, "truth", Some("carol"));
    alice.wait_entry("system", "carol joined");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        alice.run("return document.querySelector('#jump').hidden;"),
        true,
        "no button for a join"
    );
    say(&mut bob, "news one");
    say(&mut bob, "news two");
    alice.wait(
        "the button counting two new messages",
        "!document.querySelector('#jump').hidden
         && document.querySelector('#jump').textContent === 'New messages ↓ (2)'",
        json!([]),
    );
    alice.session.click_at("#jump");
    alice.wait(
        "the button gone",
        "document.querySelector('#jump').hidden",
        json!([]),
    );
    drop(carol);

    // A follow-up (bob again, within minutes) shows its time only when pointed at
    // or focused.
    let time_of = |id: &str| {
        alice.run(&format!(
            "const t = document.querySelector('#log > li[data-id=\"42\"] time');
             const r = t.getBoundingClientRect();
             return [t.closest('li').classList.contains('cont'), getComputedStyle(t).opacity,
                     r.width > 10 && r.height > 5 && r.left >= 0, '{id}'];"
        ))
    };
    alice.session.hover("[data-testid=text]");
    assert_eq!(time_of("plain"), json!([true, "0", true, "plain"]));
    alice.session.hover("#log > li[data-id=\"42\"] .bubble");
    alice.wait(
        "the follow-up's time on hover",
        "getComputedStyle(document.querySelector('#log > li[data-id=\"42\"] time')).opacity === '1'",
        json!([]),
    );
    alice.session.hover("[data-testid=text]");
    alice.wait(
        "the time hidden again",
        "getComputedStyle(document.querySelector('#log > li[data-id=\"42\"] time')).opacity === '0'",
        json!([]),
    );
    alice
        .session
        .click("#log > li[data-id=\"42\"] [data-part=text]");
    alice.session.hover("[data-testid=text]");
    assert_eq!(
        time_of("focused"),
        json!([true, "1", true, "focused"]),
        "shown while focused"
    );

    // Offline, a message stays in the box with an error; back online, the error
    // goes by itself, and the message is still there to send.
    alice.run("window.__network.down = true; window.__sockets.at(-1).close();");
    alice.wait_status(WAIT, "reconnecting");
    alice.send("said while offline");
    alice.wait(
        "the offline error",
        &format!("{hint}.classList.contains('error') && {hint}.textContent.includes('offline')"),
        json!([]),
    );
    // The network back, and "Retry now" pressed unless the page already has.
    alice.run(
        "window.__network.down = false;
         const retry = document.querySelector('#retry');
         if (!retry.hidden) retry.click();",
    );
    alice.wait_online();
    alice.wait(
        "the offline error gone",
        &format!("!{hint}.classList.contains('error') && !{hint}.textContent.includes('offline')"),
        json!([]),
    );
    assert_eq!(alice.run(&format!("return {text};")), "said while offline");
    alice.send("");
    events_until_message(&mut bob, "said while offline");

    // A room that cannot be, in a link: the join card's own error.
    let visitor = Page::blank(&driver, "visitor", PHONE);
    visitor
        .session
        .goto(&format!("http://{addr}/#no%20spaces!"));
    visitor.wait(
        "the join card with the room's error",
        "!document.querySelector('[data-testid=join]').hidden
         && document.querySelector('#join-error').textContent === 'Room names are 1 to 64 letters, digits, _ . or -.'
         && document.querySelector('[data-testid=join-room]').getAttribute('aria-invalid') === 'true'
         && document.querySelector('[data-testid=join-room]').value === 'no spaces!'
         && document.activeElement === document.querySelector('[data-testid=join-room]')",
        json!([]),
    );
    // Behind the card, nothing pretends to connect.
    assert_eq!(
        visitor.run("return document.querySelector('[data-testid=status]').dataset.state;"),
        "idle"
    );
    visitor.run("document.querySelector('[data-testid=join-room]').value = 'fixed';");
    visitor
        .session
        .type_into("[data-testid=join-name]", &format!("vic{ENTER}"));
    visitor.wait_online();
    assert_eq!(visitor.run("return location.hash;"), "#fixed");
}

/// Whether the page fits `width` CSS pixels, at each of the phone widths the issue
/// names: `[innerWidth, whether nothing is wider than it, whether the room's name
/// shows whole]`, for [`phone_layout_holds_from_320_to_430_px`].
const FITS: &str = "const done = arguments[0];
    requestAnimationFrame(() => requestAnimationFrame(() => {
        const title = document.querySelector('#title-room');
        done([innerWidth, document.documentElement.scrollWidth <= innerWidth
                && document.body.scrollWidth <= innerWidth,
              title.hidden || title.scrollWidth <= title.clientWidth]);
    }));";

/// Where the share panel's link breaks into lines: its text as shown, and the
/// character before each break.
const LINK_LINES: &str = "const p = document.querySelector('[data-testid=share-link]');
    const range = document.createRange();
    const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
    const chars = [];
    while (walker.nextNode()) {
        const n = walker.currentNode;
        for (let i = 0; i < n.length; i++) {
            range.setStart(n, i); range.setEnd(n, i + 1);
            chars.push([n.data[i], Math.round(range.getClientRects()[0].top)]);
        }
    }
    const breaks = [];
    for (let i = 1; i < chars.length; i++) if (chars[i][1] > chars[i - 1][1]) breaks.push(chars[i - 1][0]);
    return {text: chars.map(c => c[0]).join(''), breaks, fits: p.scrollWidth <= p.clientWidth};";

/// The issue's phone: at 320, 390 and 430 px the room's name is the header and
/// nothing overflows, online or offline; a touch keyboard's Enter makes a new line;
/// rooms and renaming are reached from the title, not the People drawer; Share
/// offers the phone's share sheet and shows the link whole, broken only between
/// its parts.
#[test]
fn phone_layout_holds_from_320_to_430_px() {
    let Some(driver) = driver_or_skip("phone_layout_holds_from_320_to_430_px") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "lobby", Some("bob"));
    let alice = Page::blank(&driver, "alice", (320, 700));
    alice.session.touch(true);
    alice.before_scripts(NETWORK_SWITCH);
    alice.before_scripts(FAIL_STORE);
    alice.before_scripts(
        "navigator.share = (data) => { window.__shared = data; return Promise.resolve(); };",
    );
    alice.join_at(&format!("http://{addr}/#lobby"));
    assert_eq!(
        alice.run("return matchMedia('(pointer: coarse)').matches;"),
        true
    );
    let fits = |state: &str| {
        for width in [320, 390, 430] {
            alice.session.resize(width, 700);
            let seen = alice.session.execute_async(FITS, json!([]));
            assert_eq!(seen, json!([width, true, true]), "{state} at {width} px");
            alice.screenshot(&format!("phone-{state}-{width}.png"));
        }
    };
    fits("online");

    // Enter makes a new line; Send sends.
    alice.session.type_into(
        "[data-testid=text]",
        &format!("first line{ENTER}second line"),
    );
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=text]').value;"),
        "first line\nsecond line"
    );
    alice.session.click("[data-testid=send]");
    events_until_message(&mut bob, "first line\nsecond line");

    // The title opens rooms and renaming; the background is inert meanwhile, and
    // focus comes back to the title when the drawer closes.
    alice.session.resize(390, 700);
    alice.session.click("[data-testid=rooms-toggle]");
    let drawer_open =
        "getComputedStyle(document.querySelector('[data-testid=side]')).visibility === 'visible'";
    alice.wait(
        "the rooms drawer, with the room field focused",
        &format!(
            "{drawer_open} && document.activeElement === document.querySelector('[data-testid=room-input]')"
        ),
        json!([]),
    );
    assert_eq!(
        alice.run(
            "return [getComputedStyle(document.querySelector('[data-testid=members]').closest('section')).display,
                     document.querySelector('.chat').inert, document.querySelector('.topbar').inert];"
        ),
        json!(["none", true, true]),
        "only the rooms half, over an inert page"
    );
    alice.run("document.querySelector('[data-testid=name-input]').value = '';");
    alice
        .session
        .type_into("[data-testid=name-input]", &format!("alicia{ENTER}"));
    alice.wait_entry("system", "You are now alicia");
    alice.session.press(ESCAPE);
    alice.wait(
        "the drawer closed, focus back on the title",
        "getComputedStyle(document.querySelector('[data-testid=side]')).visibility === 'hidden'
         && document.activeElement === document.querySelector('[data-testid=rooms-toggle]')",
        json!([]),
    );
    alice.session.click("[data-testid=rooms-toggle]");
    alice.wait("the rooms drawer again", drawer_open, json!([]));
    alice.run("document.querySelector('[data-testid=room-input]').value = '';");
    alice
        .session
        .type_into("[data-testid=room-input]", &format!("busy{ENTER}"));
    alice.wait_entry(
        "system",
        "You joined #busy as alicia. Nobody else is here yet.",
    );
    alice.wait(
        "the drawer closed",
        "getComputedStyle(document.querySelector('[data-testid=side]')).visibility === 'hidden'",
        json!([]),
    );

    // Offline: a dot in the header and a thin strip under it, still within the width.
    alice.run("window.__network.down = true; window.__sockets.at(-1).close();");
    alice.wait_status(WAIT, "reconnecting");
    alice.wait(
        "the strip under the header",
        "!document.querySelector('[data-testid=strip]').hidden
         && document.querySelector('[data-testid=strip]').getBoundingClientRect().top
            >= document.querySelector('.topbar').getBoundingClientRect().bottom - 1",
        json!([]),
    );
    fits("offline");
    alice.run("window.__network.down = false; document.querySelector('#retry').click();");
    alice.wait_online();
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=strip]').hidden;"),
        true
    );

    // Share: the phone's share sheet, and the whole link, broken only between parts.
    let room = "busy-room-for-the-phone-layout-test";
    alice.session.resize(320, 700);
    alice.send_by_button(&format!("/join {room}"));
    alice.wait_entry(
        "system",
        &format!("You joined #{room} as alicia. Nobody else is here yet."),
    );
    alice.session.click("[data-testid=share-toggle]");
    alice.wait(
        "the share panel with the phone's share button",
        "document.querySelector('[data-testid=share]').open
         && !document.querySelector('[data-testid=share-native]').hidden",
        json!([]),
    );
    let link = format!("http://{addr}/#{room}");
    let lines = alice.run(LINK_LINES);
    assert_eq!(lines["text"], link.as_str(), "{lines}");
    assert_eq!(lines["fits"], true, "{lines}");
    let breaks = lines["breaks"].as_array().expect("breaks");
    assert!(
        !breaks.is_empty(),
        "the link is long enough to wrap: {lines}"
    );
    assert!(
        breaks
            .iter()
            .all(|b| ["/", ".", "#", "-", "?", "&", "="].contains(&b.as_str().unwrap_or(""))),
        "the link breaks only between its parts: {lines}"
    );
    alice.screenshot("phone-share-320.png");
    alice.session.click("[data-testid=share-native]");
    alice.wait(
        "the share sheet given the link",
        "window.__shared && window.__shared.url === arguments[0]",
        json!([link]),
    );
}

#[test]
fn page_reconnects_after_server_restart() {
    page_reconnects_after_server_restart_in(Engine::Chromium);
}

#[test]
fn page_reconnects_after_server_restart_in_webkit() {
    page_reconnects_after_server_restart_in(Engine::WebKit);
}

fn page_reconnects_after_server_restart_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("page_reconnects_after_server_restart", engine) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let dana = Page::join(&driver, &format!("http://{addr}/#restart"), "dana", DESKTOP);
    dana.send("before the restart");
    dana.wait_entry("message", "before the restart");

    server.shutdown();
    dana.wait(
        "status reconnecting",
        "document.querySelector('[data-testid=status]').dataset.state === 'reconnecting'",
        json!([]),
    );
    dana.wait_entry(
        "error",
        "The server went away (restarting or shutting down). Reconnecting…",
    );
    dana.screenshot("restart-offline.png");

    let started = Instant::now();
    let server = restart_on(addr);
    dana.wait_online();
    let took = started.elapsed();
    dana.wait_entry("system", "Back online.");
    assert!(took < WAIT, "reconnected in {took:?}");

    // The same room and name, and chat works both ways again.
    let (mut erin, welcome) = chat(addr, "restart", Some("erin"));
    assert_eq!(
        welcome["members"],
        json!(["dana", "erin"]),
        "dana is back in the room"
    );
    dana.wait_entry("system", "erin joined");
    dana.send("after the restart");
    let before = events_until_message(&mut erin, "after the restart");
    assert!(before.is_empty(), "erin got {before:?} first");
    say(&mut erin, "welcome back");
    dana.wait_entry("message", "welcome back");

    // The restarted server keeps its history in memory: a new store, whose ids
    // start again. The page says so and shows what that store has, each once; the
    // message from before is gone with the old store.
    dana.wait_entry(
        "system",
        "The server started with a new history: earlier messages are no longer there.",
    );
    assert_eq!(
        dana.messages(),
        [("dana", "after the restart"), ("erin", "welcome back")]
            .map(|(f, t)| (f.to_owned(), t.to_owned()))
    );
    assert_eq!(
        dana.numbered(),
        [(1, "after the restart"), (2, "welcome back")].map(|(id, t)| (id, t.to_owned()))
    );
    dana.screenshot("restart-back-online.png");
    drop(server);
}

#[test]
fn page_resumes_after_sigkill_and_restart_with_every_message_once() {
    let Some(driver) =
        driver_or_skip("page_resumes_after_sigkill_and_restart_with_every_message_once")
    else {
        return;
    };
    let data = TempDir::new("browser-resume");
    let port = free_port();
    let server = Binary::start(port, data.path());
    let addr = server.addr;
    let url = format!("http://{addr}/#durable");

    // Alice on a desktop and Bob on a phone talk; Bob's network can be cut.
    let alice = Page::join(&driver, &url, "alice", DESKTOP);
    let bob = Page::blank(&driver, "bob", PHONE);
    bob.before_scripts(NETWORK_SWITCH);
    bob.join_at(&url);
    alice.wait_entry("system", "bob joined");
    alice.send("one");
    bob.wait_entry("message", "one");
    bob.send("two");
    alice.wait_entry("message", "two");
    alice.send("three");
    bob.wait_entry("message", "three");
    let epoch = alice.log_says("epoch");
    assert!(!epoch.is_empty(), "the welcome names its store");
    assert_eq!(bob.log_says("epoch"), epoch);
    let before: Vec<(u64, String)> = [(1, "one"), (2, "two"), (3, "three")]
        .map(|(id, t)| (id, t.to_owned()))
        .to_vec();
    assert_eq!(alice.numbered(), before);
    assert_eq!(bob.numbered(), before);

    // Bob loses his network; the server is killed, and nothing is said for a moment.
    bob.run("window.__network.down = true;");
    server.kill();
    for page in [&alice, &bob] {
        page.wait_status(WAIT, "reconnecting");
        page.wait_entry("error", "Connection lost. Reconnecting…");
    }
    std::thread::sleep(Duration::from_millis(500));

    // The server comes back on the same port and data; alice reconnects by herself
    // (the backoff may be a few seconds by now) and resumes where she was.
    let server = Binary::start(port, data.path());
    alice.wait_status(Duration::from_secs(15), "online");
    alice.wait_entry("system", "Back online.");
    assert_eq!(alice.log_says("resumed"), "true", "alice resumed");
    assert_eq!(alice.numbered(), before, "alice's page after her resume");

    // While bob is still offline, carol (a plain client) and alice speak.
    let (mut carol, welcome) = chat(addr, "durable", Some("carol"));
    assert_eq!(
        welcome["epoch"],
        epoch.as_str(),
        "the same store after SIGKILL"
    );
    assert_eq!(welcome["last_id"], 3, "{welcome}");
    let kept: Vec<&str> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        kept,
        ["one", "two", "three"],
        "what was said survived SIGKILL"
    );
    say(&mut carol, "while bob was away");
    alice.wait_entry("message", "while bob was away");
    alice.send("bob missed this too");
    alice.wait_entry("message", "bob missed this too");
    assert_eq!(
        bob.run("return document.querySelector('[data-testid=status]').dataset.state;"),
        "reconnecting",
        "bob is still offline"
    );
    assert_eq!(bob.numbered(), before, "bob has not seen the new messages");

    // His network comes back: he asks for what came after the newest message he
    // shows, in the same store, and gets exactly that.
    bob.run("window.__network.down = false; window.dispatchEvent(new Event('online'));");
    bob.wait_status(Duration::from_secs(15), "online");
    bob.wait_entry("message", "bob missed this too");
    let asked = bob.run(
        "const u = new URL(document.querySelector('[data-testid=status]').dataset.url);
         return [u.pathname, u.searchParams.get('name'), u.searchParams.get('since'),
                 u.searchParams.get('epoch')];",
    );
    assert_eq!(asked, json!(["/ws/chat/durable", "bob", "3", epoch]));
    assert_eq!(bob.log_says("resumed"), "true", "bob resumed");

    // A message after the resume reaches everyone once too.
    bob.send("glad to be back");
    alice.wait_entry("message", "glad to be back");
    bob.wait_entry("message", "glad to be back");
    for text in [
        "while bob was away",
        "bob missed this too",
        "glad to be back",
    ] {
        assert_eq!(next_of_type(&mut carol, "message")["text"], text);
    }

    // Both pages show the same, complete conversation, each message once, in order.
    let want: Vec<(u64, String)> = [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (4, "while bob was away"),
        (5, "bob missed this too"),
        (6, "glad to be back"),
    ]
    .map(|(id, t)| (id, t.to_owned()))
    .to_vec();
    assert_eq!(alice.numbered(), want, "alice's page");
    assert_eq!(bob.numbered(), want, "bob's page");
    for page in [&alice, &bob] {
        let notes = page.entries();
        assert!(
            !notes
                .iter()
                .any(|e| e.text.starts_with("The server started with")
                    || e.text.starts_with("More happened while you were away")),
            "{}'s page did not resume: {notes:?}",
            page.who
        );
    }
    alice.screenshot("resume-alice-desktop.png");
    bob.screenshot("resume-bob-phone.png");
    drop(server);
}

#[test]
fn page_loads_older_messages_when_scrolled_to_the_top() {
    let Some(driver) = driver_or_skip("page_loads_older_messages_when_scrolled_to_the_top") else {
        return;
    };
    // 120 messages in a room before anyone opens the page, sent faster than the
    // default rate limit allows.
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut bot, _) = chat(addr, "archive", Some("archivist"));
    for n in 1..=120 {
        say(&mut bot, &format!("message {n}"));
    }
    events_until_message(&mut bot, "message 120");
    let all: Vec<(u64, String)> = (1..=120).map(|n| (n, format!("message {n}"))).collect();

    let page = Page::blank(&driver, "reader", DESKTOP);
    page.before_scripts(RECORD_SENT);
    page.join_at(&format!("http://{addr}/#archive"));
    page.wait_entry(
        "system",
        "You joined #archive as reader. archivist is here.",
    );
    assert_eq!(page.numbered(), all[70..], "the welcome's last 50");
    assert_eq!(
        page.run(HISTORY_SENT),
        json!([]),
        "nothing asked before scrolling"
    );
    assert_eq!(page.log_says("more"), "true");

    // Scrolling to the top asks once for the 50 before the oldest shown, however
    // many scroll events there are, and keeps what the reader looked at in place.
    let scroll_to_top = "const scroller = document.getElementById('scroller');
        scroller.scrollTop = 0;
        for (let i = 0; i < 5; i++) scroller.dispatchEvent(new Event('scroll'));
        return document.querySelector('#log > li[data-id=\"' + arguments[0] + '\"]')
            .getBoundingClientRect().top;";
    // Where message `id` is on screen now, against where it `was` (a scroll offset
    // is whole device pixels, so up to one pixel off).
    let stayed = |id: u64, was: Value| {
        let now = page.session.execute(
            "return document.querySelector('#log > li[data-id=\"' + arguments[0] + '\"]')
                .getBoundingClientRect().top;",
            json!([id]),
        );
        let moved = now.as_f64().expect("a position") - was.as_f64().expect("a position");
        assert!(
            moved.abs() <= 1.0,
            "message {id} moved by {moved} px on screen (from {was} to {now})"
        );
    };
    let count_is = |n: usize| {
        page.wait(
            &format!("{n} messages"),
            "document.querySelectorAll('#log > li[data-kind=message]').length === arguments[0]",
            json!([n]),
        );
    };
    let was = page.session.execute(scroll_to_top, json!([72]));
    count_is(100);
    stayed(72, was);
    assert_eq!(page.numbered(), all[20..]);
    assert_eq!(page.log_says("more"), "true");
    assert!(
        page.run("return document.getElementById('scroller').scrollTop;")
            .as_f64()
            > Some(500.0),
        "the older messages went in above the view"
    );

    // Again: the last 20, and the server says there are no more.
    let was = page.session.execute(scroll_to_top, json!([22]));
    count_is(120);
    page.wait(
        "no more to load",
        "document.querySelector('[data-testid=log]').dataset.more === 'false'",
        json!([]),
    );
    stayed(22, was);
    assert_eq!(page.numbered(), all, "every message once, in order");
    assert_eq!(
        page.run(HISTORY_SENT),
        json!([
            {"type": "history", "before": 71, "limit": 50},
            {"type": "history", "before": 21, "limit": 50},
        ]),
        "one request per page"
    );
    page.wait(
        "the loading note hidden",
        "document.querySelector('[data-testid=older]').hidden",
        json!([]),
    );
    page.screenshot("older-loaded.png");

    // At the start of the room, scrolling up asks for nothing more.
    // The page's scroll handler runs in the script's own step (it dispatches the
    // scroll events itself), so a request it made would already be counted.
    page.session.execute(scroll_to_top, json!([1]));
    assert_eq!(page.run(HISTORY_SENT).as_array().map(Vec::len), Some(2));
    assert_eq!(page.numbered(), all);

    // New messages still arrive at the end.
    say(&mut bot, "message 121");
    page.wait_entry("message", "message 121");
    assert_eq!(
        page.numbered().last(),
        Some(&(121, "message 121".to_owned()))
    );
}

#[test]
fn page_puts_a_message_the_server_could_not_store_back_in_the_box() {
    let Some(driver) =
        driver_or_skip("page_puts_a_message_the_server_could_not_store_back_in_the_box")
    else {
        return;
    };
    let server = start();
    let page = Page::blank(&driver, "fran", DESKTOP);
    page.before_scripts(FAIL_STORE);
    page.join_at(&format!("http://{}/#flaky", server.local_addr()));
    page.send("first, stored");
    page.wait_entry("message", "first, stored");

    page.run("window.__failText = 'lost on the way';");
    page.send("lost on the way");
    page.wait_entry(
        "error",
        "Not sent: the server could not store your message, so nobody got it. \
         It is back in the message box: press Enter to send it again.",
    );
    assert_eq!(
        page.run("return document.querySelector('[data-testid=text]').value;"),
        "lost on the way"
    );
    assert_eq!(
        page.numbered(),
        [(1, "first, stored".to_owned())],
        "an unstored message is not shown as sent"
    );

    // Enter sends it again; this time it is stored and shown, once.
    page.session.type_into("[data-testid=text]", ENTER);
    page.wait_entry("message", "lost on the way");
    let texts: Vec<String> = page.numbered().into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["first, stored", "lost on the way"]);
}

#[test]
fn page_holds_a_text_to_the_servers_own_limit() {
    page_holds_a_text_to_the_servers_own_limit_in(Engine::Chromium);
}

#[test]
fn page_holds_a_text_to_the_servers_own_limit_in_webkit() {
    page_holds_a_text_to_the_servers_own_limit_in(Engine::WebKit);
}

fn page_holds_a_text_to_the_servers_own_limit_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("page_holds_a_text_to_the_servers_own_limit", engine)
    else {
        return;
    };
    let server = start_with(|b| b.max_text_len(10));
    let page = Page::blank(&driver, "gil", DESKTOP);
    page.join_at(&format!("http://{}/#short", server.local_addr()));
    page.send("0123456789A");
    let hint = page.wait(
        "the hint about the limit",
        "document.querySelector('#hint').textContent",
        json!([]),
    );
    assert_eq!(
        hint,
        "That is 11 bytes; the limit is 10. Please shorten it."
    );
    assert_eq!(
        page.run("return document.querySelector('[data-testid=text]').value;"),
        "0123456789A",
        "kept in the box"
    );
    page.session.type_into("[data-testid=text]", BACKSPACE);
    page.session.type_into("[data-testid=text]", ENTER);
    page.wait_entry("message", "0123456789");
}

/// A file shared in the room (here by a script) shows on the page as its name and size,
/// a link that downloads exactly its bytes.
#[test]
fn page_shows_a_shared_file_as_a_link_to_its_bytes() {
    let Some(driver) = driver_or_skip_in(
        "page_shows_a_shared_file_as_a_link_to_its_bytes",
        Engine::Chromium,
    ) else {
        return;
    };
    let server = start_with(|b| b.api_token("t0ken"));
    let addr = server.local_addr();
    let page = Page::join(&driver, &format!("http://{addr}/#files"), "alice", DESKTOP);
    let (mut bob, _) = chat(addr, "files", Some("bob"));
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    send_json(
        &mut bob,
        json!({"type": "file", "name": "report v2.pdf", "mime": "application/pdf", "size": bytes.len()}),
    );
    bob.send(tungstenite::Message::binary(bytes.clone()))
        .expect("send");
    let sent = next_of_type(&mut bob, "message");
    page.wait(
        "the file's card",
        "document.querySelector('#log > li[data-kind=message] [data-file-kind=file] .file-name')
            ?.textContent === arguments[0]",
        json!(["report v2.pdf"]),
    );
    let link = page.run(
        "const a = document.querySelector('#log > li[data-kind=message] [data-file-kind=file] a');
         return fetch(a.href).then(r => r.arrayBuffer()).then(b => ({
             href: a.getAttribute('href'), download: a.download,
             size: a.querySelector('.file-size').textContent,
             bytes: b.byteLength, first: new Uint8Array(b)[1] }));",
    );
    assert_eq!(
        link,
        json!({"href": sent["file"]["url"], "download": "report v2.pdf",
               "size": "2.9 KiB", "bytes": 3000, "first": 1})
    );
}

#[test]
fn page_deletes_its_own_message_and_the_other_page_shows_it_deleted() {
    let Some(driver) = driver_or_skip_in(
        "page_deletes_its_own_message_and_the_other_page_shows_it_deleted",
        Engine::Chromium,
    ) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let alice = Page::join(&driver, &format!("http://{addr}/#del"), "alice", DESKTOP);
    let bob = Page::join(&driver, &format!("http://{addr}/#del"), "bob", PHONE);
    bob.send("not mine to delete");
    alice.wait_entry("message", "not mine to delete");
    alice.send("a password, oops");
    bob.wait_entry("message", "a password, oops");
    // Only one's own message offers Delete.
    let offered = alice.run(
        "return [...document.querySelectorAll('#log > li[data-kind=message]')].map(li =>
             [li.querySelector('[data-part=text]').textContent,
              !!li.querySelector('button[data-action=delete]')]);",
    );
    assert_eq!(
        offered,
        json!([["not mine to delete", false], ["a password, oops", true]])
    );
    // A tap on the message shows its Delete (as on a phone), and a click deletes it.
    let own = "#log > li[data-mine=true]";
    alice.session.click(&format!("{own} [data-part=text]"));
    let name = alice.run(&format!(
        "const b = document.querySelector('{own} button[data-action=delete]');
         return [b.textContent, getComputedStyle(b).opacity];"
    ));
    assert_eq!(name, json!(["Delete this message", "1"]));
    alice
        .session
        .click(&format!("{own} button[data-action=delete]"));
    for page in [&alice, &bob] {
        page.wait(
            "the message shown as deleted",
            "[...document.querySelectorAll('#log > li[data-kind=message]')].map(li =>
                 [li.dataset.deleted || '', li.querySelector('[data-part=text]').textContent]
             ).join('|') === arguments[0]",
            json!([",not mine to delete|true,message deleted"]),
        );
    }
    assert!(
        !bob.run("return document.body.textContent.includes('a password, oops');")
            .as_bool()
            .unwrap_or(true),
        "nothing of it is left on the other page"
    );
    // A newcomer's history shows the tombstone too.
    let carol = Page::join(&driver, &format!("http://{addr}/#del"), "carol", DESKTOP);
    carol.wait(
        "the tombstone in the history",
        "document.querySelector('#log > li[data-deleted=true] [data-part=text]')
             ?.textContent === 'message deleted'",
        json!([]),
    );
}

/// A moderation request to the API of `addr` with the token `t0ken`; its status.
fn moderate(addr: SocketAddr, path: &str, body: Value) -> u16 {
    let body = body.to_string();
    let answer = raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    status(&answer)
}

#[test]
fn page_shows_a_clear_the_topic_a_lock_a_mute_and_why_it_was_removed() {
    let Some(driver) = driver_or_skip_in(
        "page_shows_a_clear_the_topic_a_lock_a_mute_and_why_it_was_removed",
        Engine::Chromium,
    ) else {
        return;
    };
    let server = start_with(|b| b.api_token("t0ken"));
    let addr = server.local_addr();
    let alice = Page::blank(&driver, "alice", DESKTOP);
    // Every chat socket the page opens, to see it does not go back after a kick.
    alice.before_scripts(
        "const Real = window.WebSocket;
         window.chatSockets = [];
         window.WebSocket = class extends Real {
           constructor(url, protocols) {
             super(url, protocols);
             if (String(url).includes('/ws/chat/')) window.chatSockets.push(String(url));
           }
         };",
    );
    alice.join_at(&format!("http://{addr}/#class"));
    // A cleared history goes from the page.
    alice.send("before the clear");
    alice.wait_entry("message", "before the clear");
    assert_eq!(moderate(addr, "/api/rooms/class/clear", json!({})), 200);
    alice.wait(
        "the history gone, and why",
        "document.querySelectorAll('#log > li[data-kind=message]').length === 0
         && [...document.querySelectorAll('#log > li')].some(li =>
             li.textContent.includes('history was cleared by api'))",
        json!([]),
    );
    let settings = json!({"topic": "Week 3: sockets", "locked": true});
    assert_eq!(moderate(addr, "/api/rooms/class/settings", settings), 200);
    alice.wait(
        "the topic and the lock",
        "((t, n) => !t.hidden && t.textContent === arguments[0]
             && !n.hidden && n.dataset.locked === 'true' && n.textContent.includes('locked'))(
             document.querySelector('[data-testid=topic]'),
             document.querySelector('[data-testid=room-notice]'))",
        json!(["Week 3: sockets"]),
    );
    // A post in the locked room is refused, and its text is back in the box.
    alice.send("may I?");
    alice.wait(
        "the refused text back in the box",
        "document.querySelector('[data-testid=text]').value === 'may I?'",
        json!([]),
    );
    alice.run("document.querySelector('[data-testid=text]').value = ''; return null;");
    assert_eq!(
        moderate(addr, "/api/rooms/class/settings", json!({"locked": false})),
        200
    );
    assert_eq!(
        moderate(
            addr,
            "/api/rooms/class/mute",
            json!({"name": "alice", "minutes": 5})
        ),
        200
    );
    alice.wait(
        "the mute, with its end",
        "(n => !n.hidden && n.dataset.locked === 'false' && n.dataset.muted === 'true'
             && n.textContent.includes('muted here until'))(
             document.querySelector('[data-testid=room-notice]'))",
        json!([]),
    );
    assert_eq!(
        moderate(
            addr,
            "/api/rooms/class/kick",
            json!({"name": "alice", "reason": "flooding"})
        ),
        200
    );
    alice.wait_status(WAIT, "removed");
    alice.wait(
        "why it was closed",
        "[...document.querySelectorAll('#log > li[data-kind=error]')].some(li =>
             li.textContent.includes('removed from #class by a moderator: flooding')
             && li.textContent.includes('come back after'))",
        json!([]),
    );
    // Another room takes it; the page never went back to the one it was removed from.
    alice.run("location.hash = '#other'; return null;");
    alice.wait_online();
    let sockets = alice.run("return window.chatSockets;");
    let sockets: Vec<String> = serde_json::from_value(sockets).expect("urls");
    assert_eq!(sockets.len(), 2, "{sockets:?}");
    assert!(sockets[1].contains("/ws/chat/other"), "{sockets:?}");
    alice.wait(
        "no topic or notice of the other room",
        "document.querySelector('[data-testid=topic]').hidden
             && document.querySelector('[data-testid=room-notice]').hidden",
        json!([]),
    );
}

#[test]
fn page_isolates_a_right_to_left_name_and_its_text() {
    page_isolates_a_right_to_left_name_and_its_text_in(Engine::Chromium);
}

#[test]
fn page_isolates_a_right_to_left_name_and_its_text_in_webkit() {
    page_isolates_a_right_to_left_name_and_its_text_in(Engine::WebKit);
}

fn page_isolates_a_right_to_left_name_and_its_text_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("page_isolates_a_right_to_left_name_and_its_text", engine)
    else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let page = Page::join(&driver, &format!("http://{addr}/#bidi"), "alice", DESKTOP);
    // "שרה" (Sara), percent-encoded: a name written right to left.
    let (mut sara, _) = chat_url(addr, "/ws/chat/bidi?name=%D7%A9%D7%A8%D7%94");
    page.wait_entry("system", "\u{5e9}\u{5e8}\u{5d4} joined");
    say(&mut sara, "\u{5e9}\u{5dc}\u{5d5}\u{5dd} 123");
    page.wait_entry("message", "\u{5e9}\u{5dc}\u{5d5}\u{5dd} 123");
    page.screenshot("bidi.png");
    // Where each piece of the name or the text sits: the innermost element holding
    // it, and whether that element is isolated from what is around it.
    let isolated = page.run(
        "const isolating = (node) => !!node && (node.tagName === 'BDI'
             || ['isolate', 'isolate-override', 'plaintext'].includes(getComputedStyle(node).unicodeBidi));
         const holder = (root, text) => [...root.querySelectorAll('*')].reverse()
             .find(n => n.textContent === text);
         const name = '\u{5e9}\u{5e8}\u{5d4}';
         const message = document.querySelector('#log > li[data-kind=message]');
         const joined = [...document.querySelectorAll('#log > li[data-kind=system]')]
             .find(li => li.textContent.includes(name));
         const member = holder(document.querySelector('[data-testid=members]'), name);
         const text = message.querySelector('[data-part=text]');
         return {
             from: isolating(holder(message.querySelector('.meta'), name)),
             text: isolating(text),
             text_dir: text.dir,
             joined: isolating(holder(joined, name)),
             member: isolating(member),
         };",
    );
    assert_eq!(
        isolated,
        json!({"from": true, "text": true, "text_dir": "auto", "joined": true, "member": true}),
        "every name and text the page shows is isolated"
    );
}

#[test]
fn page_keeps_its_messages_when_the_server_cannot_read_the_history() {
    let Some(driver) =
        driver_or_skip("page_keeps_its_messages_when_the_server_cannot_read_the_history")
    else {
        return;
    };
    let server = start();
    let page = Page::blank(&driver, "gus", DESKTOP);
    page.before_scripts(FAIL_STORE);
    page.join_at(&format!("http://{}/#shaky", server.local_addr()));
    page.send("kept one");
    page.send("kept two");
    page.wait_entry("message", "kept two");
    let shown: Vec<(u64, String)> = [(1, "kept one"), (2, "kept two")]
        .map(|(id, t)| (id, t.to_owned()))
        .to_vec();

    // The connection drops; on the way back the store cannot read the history.
    page.run("window.__failWelcome = true; window.__sockets.at(-1).close();");
    page.wait_entry("error", "the room's history cannot be read now");
    page.wait_online();
    assert_eq!(
        page.numbered(),
        shown,
        "an unreadable history wipes nothing"
    );
    assert!(
        !page
            .entries()
            .iter()
            .any(|e| e.text.starts_with("More happened while you were away")),
        "not taken for a gap"
    );

    // The next reconnect resumes from the newest message shown.
    page.run("window.__sockets.at(-1).close();");
    page.wait_entry("system", "Back online.");
    page.wait(
        "a resumed welcome",
        "document.querySelector('[data-testid=log]').dataset.resumed === 'true'
            && new URL(document.querySelector('[data-testid=status]').dataset.url)
                .searchParams.get('since') === '2'",
        json!([]),
    );
    page.send("and on");
    page.wait_entry("message", "and on");
    assert_eq!(page.numbered().len(), 3, "{:?}", page.numbered());
}

#[test]
fn page_over_https_connects_with_wss() {
    page_over_https_connects_with_wss_in(Engine::Chromium);
}

#[test]
fn page_over_https_connects_with_wss_in_webkit() {
    page_over_https_connects_with_wss_in(Engine::WebKit);
}

fn page_over_https_connects_with_wss_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("page_over_https_connects_with_wss", engine) else {
        return;
    };
    let server = start_with(|b| b.tls_listen("127.0.0.1:0"));
    let tls = server.tls_local_addr().expect("a TLS listener");
    let (mut plain, _) = chat(server.local_addr(), "secure", Some("plain"));

    let page = Page::join(&driver, &format!("https://{tls}/#secure"), "tess", DESKTOP);
    let url = page.session.execute(
        "return document.querySelector('[data-testid=status]').dataset.url;",
        json!([]),
    );
    assert_eq!(url, format!("wss://{tls}/ws/chat/secure?name=tess"));
    assert_eq!(next_of_type(&mut plain, "join")["name"], "tess");
    page.send("over TLS");
    assert_eq!(next_of_type(&mut plain, "message")["text"], "over TLS");
    page.screenshot("https.png");
}

#[test]
fn share_panel_on_loopback_invites_with_the_lan_address() {
    let test = "share_panel_on_loopback_invites_with_the_lan_address";
    let Some(driver) = driver_or_skip(test) else {
        return;
    };
    let zbarimg = tool_or_skip(test, "zbarimg", "SWITCHBOARD_REQUIRE_TOOLS");
    // Listed https first: a page opened over http shares the http address.
    let server = start_with(|b| {
        b.public_url("https://192.168.1.20:3443/")
            .public_url("http://192.168.1.20:3000/")
    });
    let port = server.local_addr().port();
    let invite = "http://192.168.1.20:3000/#plans";

    let alice = Page::join(
        &driver,
        &format!("http://127.0.0.1:{port}/#plans"),
        "alice",
        DESKTOP,
    );
    alice.session.click("[data-testid=share-toggle]");
    alice.wait(
        "the share panel open",
        "document.querySelector('[data-testid=share]').open",
        json!([]),
    );
    alice.wait(
        "the LAN invite link",
        &format!("{SHARE_LINK} === arguments[0]"),
        json!([invite]),
    );
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=share-note]').textContent;"),
        "You opened this page on this machine; people elsewhere use http://192.168.1.20:3000/"
    );
    assert_eq!(
        alice.run("return document.getElementById('invite').href;"),
        invite,
        "the side panel's invite link is the same"
    );
    alice.wait(
        "the QR code of the invite link",
        &format!("{QR_TEXT} === arguments[0]"),
        json!([invite]),
    );
    alice.screenshot("share-desktop.png");
    if let Some(zbarimg) = &zbarimg {
        let png = webdriver::base64_decode(
            &alice
                .session
                .element_screenshot_base64("[data-testid=share]"),
        );
        assert_eq!(decode_qr(zbarimg, &png, "share-panel-qr.png"), invite);
    }

    // Copy puts the link on the clipboard.
    alice.session.cdp(
        "Browser.grantPermissions",
        json!({"origin": format!("http://127.0.0.1:{port}"),
               "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}),
    );
    alice.session.click("[data-testid=share-copy]");
    alice.wait(
        "the copy confirmed",
        "document.querySelector('[data-testid=share-status]').textContent === 'Copied the link.'",
        json!([]),
    );
    let clipboard = alice.session.execute_async(
        "const done = arguments[0];
         navigator.clipboard.readText().then(done, e => done('error: ' + e));",
        json!([]),
    );
    assert_eq!(clipboard, invite, "the clipboard holds the invite link");

    // Escape closes the panel; the link and its QR code follow a change of room.
    alice.session.press(ESCAPE);
    alice.wait(
        "the share panel closed",
        "!document.querySelector('[data-testid=share]').open",
        json!([]),
    );
    alice.send("/join garden");
    alice.wait_entry(
        "system",
        "You joined #garden as alice. Nobody else is here yet.",
    );
    let moved = "http://192.168.1.20:3000/#garden";
    alice.wait(
        "the invite link of the new room",
        &format!("{SHARE_LINK} === arguments[0] && {QR_TEXT} === arguments[0]"),
        json!([moved]),
    );

    // On a phone in dark mode the panel fits the screen, is dark, and its code
    // still reads.
    let bob = Page::blank(&driver, "bob", PHONE);
    bob.session.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    bob.join_at(&format!("http://127.0.0.1:{port}/#garden"));
    bob.session.click("[data-testid=share-toggle]");
    bob.wait(
        "the phone's QR code",
        &format!("{QR_TEXT} === arguments[0]"),
        json!([moved]),
    );
    let fit = bob.run(
        "const r = document.querySelector('[data-testid=share]').getBoundingClientRect();
         const bg = getComputedStyle(document.querySelector('[data-testid=share]')).backgroundColor;
         const [red, green, blue] = bg.match(/\\d+/g).map(Number);
         return {inside: r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight,
                 dark: red + green + blue < 3 * 80, bg};",
    );
    assert_eq!(
        fit["inside"], true,
        "the panel fits a phone's screen: {fit}"
    );
    assert_eq!(fit["dark"], true, "the panel is dark in dark mode: {fit}");
    let shot = bob.screenshot("share-phone-dark.png");
    if let Some(zbarimg) = &zbarimg {
        let png = std::fs::read(&shot).expect("read the screenshot");
        assert_eq!(decode_qr(zbarimg, &png, "share-phone-dark-qr.png"), moved);
    }
}

#[test]
fn share_panel_without_an_address_to_share_offers_the_page_address() {
    let Some(driver) =
        driver_or_skip("share_panel_without_an_address_to_share_offers_the_page_address")
    else {
        return;
    };
    // An embedded server lists no addresses: on loopback the page says its link
    // only works on this machine.
    let server = start();
    let own = format!("http://{}/#solo", server.local_addr());
    let cara = Page::join(&driver, &own, "cara", DESKTOP);
    cara.session.click("[data-testid=share-toggle]");
    cara.wait(
        "the page's own invite link and its QR code",
        &format!("{SHARE_LINK} === arguments[0] && {QR_TEXT} === arguments[0]"),
        json!([own]),
    );
    cara.wait(
        "the note that the link only works here",
        "document.querySelector('[data-testid=share-note]').textContent
            .startsWith('You opened this page on this machine, so this link only works here.')",
        json!([]),
    );

    // A server from before /info: the page's own address, and chat works.
    let dirk = Page::blank(&driver, "dirk", DESKTOP);
    dirk.before_scripts(
        "const realFetch = window.fetch;
         window.fetch = (url, ...rest) => String(url).endsWith('/info')
             ? Promise.resolve(new Response('nothing at /info', {status: 404}))
             : realFetch(url, ...rest);",
    );
    dirk.join_at(&own);
    dirk.session.click("[data-testid=share-toggle]");
    dirk.wait(
        "the page's own invite link without /info",
        &format!("{SHARE_LINK} === arguments[0] && {QR_TEXT} === arguments[0]"),
        json!([own]),
    );
    dirk.session.press(ESCAPE);
    dirk.send("still chatting");
    cara.wait_entry("message", "still chatting");
}

#[test]
fn room_list_follows_joins_and_switches_rooms() {
    room_list_follows_joins_and_switches_rooms_in(Engine::Chromium);
}

#[test]
fn room_list_follows_joins_and_switches_rooms_in_webkit() {
    room_list_follows_joins_and_switches_rooms_in(Engine::WebKit);
}

fn room_list_follows_joins_and_switches_rooms_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("room_list_follows_joins_and_switches_rooms", engine)
    else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let alice = Page::join(&driver, &format!("http://{addr}/#home"), "alice", DESKTOP);
    let rooms_are = |rooms: Value, limit: Duration| {
        alice.wait_up_to(
            limit,
            &format!("the room list {rooms}"),
            &format!("{ROOM_LIST} === arguments[0]"),
            json!([rooms.to_string()]),
        );
    };
    rooms_are(json!([["home", 1]]), WAIT);

    // Someone joining alice's room: she is told, and the list follows at once.
    let (mut bob, _) = chat(addr, "home", Some("bob"));
    rooms_are(json!([["home", 2]]), WAIT);

    // Someone in another room: nobody in alice's room is told, so the list picks
    // it up on its next refresh, every ~10 s.
    let (_carol, _) = chat(addr, "other", Some("carol"));
    rooms_are(json!([["home", 2], ["other", 1]]), Duration::from_secs(15));

    // Bob moving over: busiest first.
    send_json(&mut bob, json!({"type": "join", "room": "other"}));
    rooms_are(json!([["other", 2], ["home", 1]]), WAIT);
    assert_eq!(
        alice.run(
            "return [...document.querySelectorAll('[data-testid=rooms] [aria-current=true]')]
                .map(b => b.dataset.room);"
        ),
        json!(["home"]),
        "alice's own room is marked"
    );
    alice.screenshot("rooms-desktop.png");

    // Clicking a room goes there, like /join.
    alice
        .session
        .click("[data-testid=rooms] button[data-room=other]");
    alice.wait_entry("system", "You joined #other as alice. 2 others are here.");
    assert_eq!(alice.run("return location.hash;"), "#other");
    assert_eq!(next_of_type(&mut bob, "join")["name"], "alice");
    rooms_are(json!([["other", 3]]), WAIT);
    assert_eq!(
        alice.run(
            "return [...document.querySelectorAll('[data-testid=rooms] [aria-current=true]')]
                .map(b => b.dataset.room);"
        ),
        json!(["other"])
    );
    say(&mut bob, "welcome over");
    alice.wait_entry("message", "welcome over");
}

/// Records what the page does with `Notification` instead of showing anything: every
/// notification constructed (`window.__notify.shown`) and each permission request
/// (`window.__notify.asked`). Until the page asks, permission reads as "default" (a
/// first visit); after, it is the browser's real answer.
const RECORD_NOTIFICATIONS: &str = "(() => {
    const Real = window.Notification;
    const record = { asked: 0, shown: [] };
    window.__notify = record;
    class Recorded {
        constructor(title, options = {}) { record.shown.push({ title, body: options.body }); }
        close() {}
        static get permission() { return record.asked ? Real.permission : 'default'; }
        static requestPermission() { record.asked += 1; return Real.requestPermission(); }
    }
    window.Notification = Recorded;
})();";

/// Makes the page believe its tab is in the background (`true`) or in front again.
fn set_hidden(page: &Page, hidden: bool) {
    page.session.execute(
        "if (arguments[0]) {
             Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
             Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
         } else {
             delete document.hidden;
             delete document.visibilityState;
         }
         document.dispatchEvent(new Event('visibilitychange'));",
        json!([hidden]),
    );
}

#[test]
fn hidden_tab_notifies_of_direct_messages_and_mentions() {
    let Some(driver) = driver_or_skip("hidden_tab_notifies_of_direct_messages_and_mentions") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.session.cdp(
        "Browser.grantPermissions",
        json!({"origin": format!("http://{addr}"), "permissions": ["notifications"]}),
    );
    alice.before_scripts(RECORD_NOTIFICATIONS);
    alice.join_at(&format!("http://{addr}/#news"));
    let shown = || alice.run("return window.__notify.shown;");

    // Nothing is asked on load, nor on joining: only the click asks, once.
    assert_eq!(alice.run("return window.__notify.asked;"), 0);
    assert_eq!(
        alice.run("return document.querySelector('[data-testid=notify-toggle]').ariaPressed;"),
        "false"
    );
    alice.session.click("[data-testid=notify-toggle]");
    alice.wait(
        "notifications turned on",
        "document.querySelector('[data-testid=notify-toggle]').ariaPressed === 'true'",
        json!([]),
    );
    assert_eq!(alice.run("return window.__notify.asked;"), 1);

    let (mut bob, _) = chat(addr, "news", Some("bob"));
    alice.wait_entry("system", "bob joined");
    set_hidden(&alice, true);

    // A private message and a mention (any case, with @) notify, titled by sender.
    send_json(
        &mut bob,
        json!({"type": "direct", "to": "alice", "text": "psst, lunch?"}),
    );
    say(&mut bob, "@Alice the build is green");
    alice.wait(
        "two notifications",
        "window.__notify.shown.length >= 2",
        json!([]),
    );
    assert_eq!(
        shown(),
        json!([
            {"title": "bob", "body": "psst, lunch?"},
            {"title": "bob", "body": "@Alice the build is green"},
        ])
    );
    let title = alice.run("return document.title;");
    assert!(
        title.as_str().is_some_and(|t| t.starts_with("(2) ")),
        "the title counts two unread: {title}"
    );

    // A message that does not mention her counts as unread but does not notify,
    // nor does her name inside another word.
    say(&mut bob, "no malice meant, the build is red");
    alice.wait(
        "three unread in the title",
        "document.title.startsWith('(3) ')",
        json!([]),
    );
    // Her own messages, even naming herself, neither notify nor count.
    alice.send("alice says hi");
    alice.send("/msg alice note to self");
    alice.wait_entry("direct", "note to self");
    assert_eq!(shown().as_array().map(Vec::len), Some(2), "{}", shown());
    assert!(
        alice
            .run("return document.title;")
            .as_str()
            .is_some_and(|t| t.starts_with("(3) ")),
        "own messages are not unread"
    );

    // Back in front: the count is gone, and nothing more notifies.
    set_hidden(&alice, false);
    alice.wait(
        "the title without a count",
        "document.title === '#news · switchboard'",
        json!([]),
    );
    send_json(
        &mut bob,
        json!({"type": "direct", "to": "alice", "text": "seen it?"}),
    );
    alice.wait_entry("direct", "seen it?");
    assert_eq!(shown().as_array().map(Vec::len), Some(2), "{}", shown());
    assert_eq!(alice.run("return window.__notify.asked;"), 1, "asked once");
}

// ---- a chat behind a password ----

/// The password of the guarded servers below.
const PASSWORD: &str = "open sesame";

/// A server that asks for [`PASSWORD`].
fn guarded() -> ServerHandle {
    start_with(|b| b.password(PASSWORD))
}

/// A guarded server on `addr` again, retrying while the old socket lets go. Every
/// start signs everyone out: the new server has a new key for its cookies.
fn restart_guarded_on(addr: SocketAddr) -> ServerHandle {
    let deadline = Instant::now() + WAIT;
    loop {
        match Server::builder()
            .listen(addr.to_string())
            .password(PASSWORD)
            .start()
        {
            Ok(server) => return server,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot listen on {addr} again: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A plain client in chat `room` as `name` that signs in with
/// `Authorization: Bearer PASSWORD`, as a script would; returns it and its welcome.
fn bearer_chat(addr: SocketAddr, room: &str, name: &str) -> (Client, Value) {
    let mut request = format!("ws://{addr}/ws/chat/{room}?name={name}")
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {PASSWORD}")
            .parse()
            .expect("a header value"),
    );
    let (mut ws, _) =
        tungstenite::client(request, tcp(addr)).expect("the password lets a client in");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "first message is the welcome");
    (ws, welcome)
}

/// The join card is up and asks for the password.
const ASKS_FOR_PASSWORD: &str = "!document.querySelector('[data-testid=join]').hidden
    && !document.querySelector('[data-testid=join-password-row]').hidden";

/// What of the chat a page shows or has asked the server for: its sockets (with
/// [`NETWORK_SWITCH`]), the log, members and rooms, the QR code, and every request
/// other than the page itself, `/info` and `/login`.
const CHAT_SHOWN: &str = "return {
    sockets: window.__network.urls,
    log: document.querySelectorAll('#log > li').length,
    members: document.querySelectorAll('[data-testid=members] li').length,
    rooms: document.querySelectorAll('[data-testid=rooms] li').length,
    qr: document.querySelector('[data-testid=share-qr]').getAttribute('src'),
    requested: performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
        .filter(p => p !== '/info' && p !== '/login'),
};";

/// The password field's `error` line.
const PASSWORD_ERROR: &str =
    "document.querySelector('[data-testid=join-password-error]').textContent";

impl Page {
    /// Waits for the join card to ask for the password.
    fn wait_password_prompt(&self) {
        self.wait(
            "the join card asking for the password",
            ASKS_FOR_PASSWORD,
            json!([]),
        );
    }

    /// Opens `url`, waits for the password prompt, and signs in as `self.who` with
    /// `password`, the way a person would: a name, the password, Enter.
    fn sign_in_at(&self, url: &str, password: &str) {
        self.session.goto(url);
        self.wait_password_prompt();
        self.session.type_into("[data-testid=join-name]", self.who);
        self.session
            .type_into("[data-testid=join-password]", &format!("{password}{ENTER}"));
        self.wait_online();
    }

    /// The names of this browser's cookies for the page's origin (HttpOnly ones too,
    /// which the page's scripts cannot see).
    /// The names of the browser's cookies for `url`, sorted.
    fn cookie_names(&self, url: &str) -> Vec<String> {
        let cookies = self
            .session
            .cdp("Network.getCookies", json!({ "urls": [url] }));
        let mut names: Vec<String> = cookies["cookies"]
            .as_array()
            .expect("a list of cookies")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn password_page_signs_in_and_chats() {
    let Some(driver) = driver_or_skip("password_page_signs_in_and_chats") else {
        return;
    };
    let server = guarded();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#locked");
    let (mut carol, _) = bearer_chat(addr, "locked", "carol");
    say(&mut carol, "said before anyone signed in");
    assert_eq!(next_of_type(&mut carol, "message")["id"], 1, "stored");

    // The join card asks for a password, and nothing of the chat is there: no
    // socket, no history, no people, no rooms, no QR code, nothing asked for.
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.before_scripts(NETWORK_SWITCH);
    alice.session.goto(&url);
    alice.wait_password_prompt();
    assert_eq!(
        alice.run(
            "const f = document.querySelector('[data-testid=join-password]');
             return {type: f.type, autocomplete: f.autocomplete, disabled: f.disabled,
                     shown: f.getClientRects().length > 0, label: f.labels[0]?.textContent,
                     focused: document.activeElement === document.querySelector('[data-testid=join-name]')};"
        ),
        json!({"type": "password", "autocomplete": "current-password", "disabled": false,
               "shown": true, "label": "Password", "focused": true}),
        "the password field"
    );
    let nothing =
        json!({"sockets": [], "log": 0, "members": 0, "rooms": 0, "qr": null, "requested": []});
    assert_eq!(alice.run(CHAT_SHOWN), nothing, "before signing in");
    assert_eq!(
        alice.run("return document.body.innerText.includes('said before anyone signed in');"),
        false
    );
    alice.screenshot("password-join.png");

    // A wrong password: "wrong password" beside the field, which is cleared; the
    // name and room stay; still no socket.
    alice.session.type_into("[data-testid=join-name]", "alice");
    alice
        .session
        .type_into("[data-testid=join-password]", &format!("not it{ENTER}"));
    let said = alice.wait(
        "the wrong password to be refused",
        &format!("{PASSWORD_ERROR}.toLowerCase().includes('wrong password') && {PASSWORD_ERROR}"),
        json!([]),
    );
    assert_eq!(said, "Wrong password.");
    assert_eq!(
        alice.run(
            "const v = (id) => document.querySelector(`[data-testid=${id}]`).value;
             return {name: v('join-name'), room: v('join-room'), password: v('join-password'),
                     invalid: document.querySelector('[data-testid=join-password]').getAttribute('aria-invalid'),
                     focused: document.activeElement.dataset.testid,
                     join: !document.querySelector('[data-testid=join]').hidden};"
        ),
        json!({"name": "alice", "room": "locked", "password": "", "invalid": "true",
               "focused": "join-password", "join": true})
    );
    // The refusal was handled (the field says so); a socket opened by mistake would
    // have been opened in the same step, before this script could run.
    assert_eq!(alice.run(CHAT_SHOWN), nothing, "after a wrong password");
    alice.screenshot("password-wrong.png");

    // The right one: one socket, after signing in, and the chat as usual.
    alice
        .session
        .type_into("[data-testid=join-password]", &format!("{PASSWORD}{ENTER}"));
    alice.wait_online();
    alice.wait_entry("system", "You joined #locked as alice. carol is here.");
    alice.wait_entry("message", "said before anyone signed in");
    assert_eq!(next_of_type(&mut carol, "join")["name"], "alice");
    let sockets = alice.run("return window.__network.urls;");
    assert_eq!(
        sockets,
        json!([format!("ws://{addr}/ws/chat/locked?name=alice")]),
        "one socket, opened after signing in"
    );
    alice.send("hello carol");
    let before = events_until_message(&mut carol, "hello carol");
    assert!(before.is_empty(), "carol got {before:?} first");
    say(&mut carol, "hi alice");
    alice.wait_entry("message", "hi alice");
    alice.wait_members(&["alice", "carol"]);
    assert_eq!(
        alice.messages(),
        [
            ("carol", "said before anyone signed in"),
            ("alice", "hello carol"),
            ("carol", "hi alice"),
        ]
        .map(|(f, t)| (f.to_owned(), t.to_owned()))
    );

    // Signed in by an HttpOnly cookie; the password is nowhere the page keeps things.
    // The session (HttpOnly, from the server) and the page's routing hint.
    assert_eq!(
        alice.cookie_names(&url),
        ["switchboard_route", "switchboard_session"]
    );
    let kept = alice.run(
        "return [location.href, document.cookie, JSON.stringify({...localStorage}),
                 JSON.stringify({...sessionStorage}),
                 document.querySelector('[data-testid=join-password]').value].join(' ');",
    );
    assert!(
        !kept.as_str().unwrap_or_default().contains(PASSWORD),
        "the password is kept somewhere: {kept}"
    );
    alice.screenshot("password-signed-in.png");
}

#[test]
fn sign_out_ends_the_session_on_the_server_and_asks_for_the_password_again() {
    let Some(driver) =
        driver_or_skip("sign_out_ends_the_session_on_the_server_and_asks_for_the_password_again")
    else {
        return;
    };
    let server = guarded();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#lobby");
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.sign_in_at(&url, PASSWORD);
    let cookies = alice
        .session
        .cdp("Network.getCookies", json!({ "urls": [url] }));
    let session = cookies["cookies"]
        .as_array()
        .expect("a list of cookies")
        .iter()
        .find(|c| c["name"] == "switchboard_session")
        .and_then(|c| c["value"].as_str())
        .map(|value| format!("switchboard_session={value}"))
        .expect("a session cookie");
    alice.session.click("[data-testid=sign-out]");
    // The form's answer loads the page anew: wait through the navigation.
    alice.wait(
        "the page, loaded again, asking for the password",
        "document.readyState === 'complete' && !!document.querySelector('[data-testid=join-password-row]')
         && !document.querySelector('[data-testid=join]').hidden
         && !document.querySelector('[data-testid=join-password-row]').hidden",
        json!([]),
    );
    assert_eq!(alice.cookie_names(&url), ["switchboard_route"]);
    // The cookie is refused by the server, not only forgotten by the browser.
    let request = upgrade_request("/ws/chat", &format!("Cookie: {session}\r\n"))
        .replace("Host: localhost:3000", "Host: localhost");
    let (head, _) = handshake(addr, request);
    assert_eq!(status(&head), 401, "{head}");
}

#[test]
fn without_the_password_a_second_browser_context_cannot_open_the_websocket() {
    let Some(driver) =
        driver_or_skip("without_the_password_a_second_browser_context_cannot_open_the_websocket")
    else {
        return;
    };
    let server = guarded();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#locked");
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.sign_in_at(&url, PASSWORD);
    let (mut carol, _) = bearer_chat(addr, "locked", "carol");
    alice.wait_entry("system", "carol joined");

    // Another browser, with a profile of its own: a phone in dark mode. It has no
    // cookie, so it gets the password prompt, laid out for the small dark screen.
    let mallory = Page::blank(&driver, "mallory", PHONE);
    mallory.session.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    mallory.session.goto(&url);
    mallory.wait_password_prompt();
    // The session (HttpOnly, from the server) and the page's routing hint.
    assert_eq!(
        alice.cookie_names(&url),
        ["switchboard_route", "switchboard_session"]
    );
    assert_eq!(
        mallory.cookie_names(&url),
        ["switchboard_route"],
        "no session shared: only its own routing hint"
    );
    assert_eq!(
        mallory.run(
            "const f = document.querySelector('[data-testid=join-password]').getBoundingClientRect();
             return {fits: f.left >= 0 && f.right <= innerWidth,
                     scrolls: document.documentElement.scrollWidth > innerWidth,
                     panel: getComputedStyle(document.querySelector('[data-testid=join-form]')).backgroundColor,
                     log: document.querySelectorAll('#log > li').length};"
        ),
        json!({"fits": true, "scrolls": false, "panel": "rgb(22, 26, 32)", "log": 0}),
        "the password card on a dark phone"
    );
    mallory.screenshot("password-phone-dark.png");

    // Guessing: five wrong passwords, then the server makes this address wait, and
    // the page says so (and does not ask again before the wait is over).
    mallory
        .session
        .type_into("[data-testid=join-name]", "mallory");
    let guess = |n: usize| {
        mallory
            .run("document.querySelector('[data-testid=join-password-error]').textContent = '';");
        mallory
            .session
            .type_into("[data-testid=join-password]", &format!("guess {n}{ENTER}"));
        mallory.wait(
            &format!("the answer to guess {n}"),
            PASSWORD_ERROR,
            json!([]),
        )
    };
    for n in 1..=5 {
        assert_eq!(guess(n), "Wrong password.", "guess {n}");
    }
    let wait = "Too many wrong passwords. Wait 12 s, then try again.";
    assert_eq!(guess(6), wait);
    // Join is disabled meanwhile and counts the wait down on itself.
    let join = "(() => { const b = document.querySelector('[data-testid=join-submit]');
                         return b.disabled && b.textContent; })()";
    let first = mallory.wait("Join disabled with a countdown", join, json!([]));
    assert!(
        first
            .as_str()
            .is_some_and(|t| t == "Wait 12 s" || t == "Wait 11 s"),
        "{first}"
    );
    mallory.wait_up_to(
        Duration::from_secs(3),
        "the countdown going down",
        &format!("(t => t && t !== arguments[0] && /^Wait \\d+ s$/.test(t))({join})"),
        json!([first]),
    );
    // Enter in the password field asks nothing while Join is disabled.
    mallory
        .session
        .type_into("[data-testid=join-password]", &format!("guess 7{ENTER}"));
    std::thread::sleep(Duration::from_millis(500));
    // A request's timing entry is added when its answer has been read to the end,
    // which may come a moment after the page showed the answer: wait for the sixth.
    assert_eq!(
        mallory.wait(
            "the sixth sign-in's timing entry",
            "(n => n >= 6 && n)(performance.getEntriesByType('resource')
                .filter(e => new URL(e.name).pathname === '/login').length)",
            json!([]),
        ),
        6,
        "the seventh try waited instead of asking"
    );
    mallory.screenshot("password-rate-limited.png");

    // A socket opened by script, past the page: refused, never open.
    for path in ["/ws/chat", "/ws/chat/locked?name=mallory"] {
        let events = mallory.session.execute_async(
            "const [url, done] = arguments;
             const events = [];
             const ws = new WebSocket(url);
             ws.onopen = () => events.push('open');
             ws.onmessage = (e) => events.push('message ' + e.data);
             ws.onerror = () => events.push('error');
             ws.onclose = () => { events.push('close'); done(events); };
             setTimeout(() => done(events.concat('no close in 5 s')), 5000);",
            json!([format!("ws://{addr}{path}")]),
        );
        assert_eq!(events, json!(["error", "close"]), "{path}");
    }

    // Alice and carol chat on, and never hear of mallory.
    alice.send("still here");
    let before = events_until_message(&mut carol, "still here");
    assert!(before.is_empty(), "carol got {before:?} first");
    say(&mut carol, "me too");
    alice.wait_entry("message", "me too");
    alice.wait_members(&["alice", "carol"]);
    assert!(
        !alice.entries().iter().any(|e| e.text.contains("mallory")),
        "alice heard of mallory: {:?}",
        alice.entries()
    );
    assert!(
        handshake_failures(addr, "unauthorized") >= 2,
        "the server refused mallory's sockets"
    );
}

#[test]
fn page_asks_for_the_password_again_after_a_restart_signs_it_out() {
    let Some(driver) =
        driver_or_skip("page_asks_for_the_password_again_after_a_restart_signs_it_out")
    else {
        return;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let server = restart_guarded_on(addr);
    let url = format!("http://{addr}/#locked");
    let dana = Page::blank(&driver, "dana", DESKTOP);
    dana.before_scripts(NETWORK_SWITCH);
    dana.before_scripts(TIMERS);
    dana.sign_in_at(&url, PASSWORD);
    dana.send("before the restart");
    dana.wait_entry("message", "before the restart");

    // A new start, a new key: the page's cookie no longer counts. It asks for the
    // password again instead of knocking on the door for ever.
    server.shutdown();
    dana.wait_status(WAIT, "reconnecting");
    let retry_scheduled = "[...window.__timers.values()].includes('connect')";
    dana.wait("a retry scheduled", retry_scheduled, json!([]));
    let server = restart_guarded_on(addr);
    dana.wait_up_to(
        2 * WAIT,
        "the password prompt after the restart",
        ASKS_FOR_PASSWORD,
        json!([]),
    );
    dana.wait_status(WAIT, "signed-out");
    assert_eq!(
        dana.run(
            "return {name: document.querySelector('[data-testid=join-name]').value,
                     focused: document.activeElement.dataset.testid,
                     lede: document.querySelector('[data-testid=join-lede]').textContent};"
        ),
        json!({"name": "dana", "focused": "join-password",
               "lede": "You were signed out, perhaps because the server restarted. Enter the password to carry on."})
    );
    dana.wait_entry(
        "error",
        "Signed out: the server asks for the password again.",
    );
    // Nothing is left that would open a socket: no retry is scheduled (as one was
    // while the server was away, above), and the browser saying it is online again,
    // which makes an offline page reconnect at once, opens none either.
    let tries = || dana.run("return window.__network.urls.length;");
    let asked = tries();
    assert_eq!(
        dana.run(&format!("return {retry_scheduled};")),
        json!(false),
        "a retry is still scheduled while signed out"
    );
    dana.run("window.dispatchEvent(new Event('online'));");
    assert_eq!(tries(), asked, "no socket while signed out");
    dana.screenshot("password-signed-out.png");

    // Signed in again, the page carries on where it was.
    dana.session
        .type_into("[data-testid=join-password]", &format!("{PASSWORD}{ENTER}"));
    dana.wait_online();
    dana.wait_entry("system", "Back online.");
    let (mut erin, welcome) = bearer_chat(addr, "locked", "erin");
    assert_eq!(welcome["members"], json!(["dana", "erin"]));
    dana.send("after the restart");
    let before = events_until_message(&mut erin, "after the restart");
    assert!(before.is_empty(), "erin got {before:?} first");
    say(&mut erin, "welcome back");
    dana.wait_entry("message", "welcome back");
    drop(server);
}

/// The frame rows of the Wire panel: `[dir, opcode, masked, len, len_bits, text]`.
fn wire_frames(page: &Page) -> Vec<Value> {
    let rows = page.run(
        "return [...document.querySelectorAll('[data-testid=wire-log] [data-testid=wire-frame]')]
            .map(li => [li.dataset.dir, li.dataset.opcode, li.dataset.masked,
                        Number(li.dataset.len), Number(li.dataset.lenBits), li.textContent]);",
    );
    rows.as_array().cloned().unwrap_or_default()
}

/// The issue's "done when": on a phone, the Wire panel shows the page's own
/// handshake, then a 200-character message as a masked frame with a 16-bit length;
/// rejoining shows the closing handshake.
#[test]
fn wire_panel_shows_the_page_its_own_frames() {
    wire_panel_shows_the_page_its_own_frames_in(Engine::Chromium);
}

#[test]
fn wire_panel_shows_the_page_its_own_frames_in_webkit() {
    wire_panel_shows_the_page_its_own_frames_in(Engine::WebKit);
}

fn wire_panel_shows_the_page_its_own_frames_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("wire_panel_shows_the_page_its_own_frames", engine) else {
        return;
    };
    // Pings after a second of quiet, for the panel to show the browser's pongs.
    let server = start_with(|b| b.ping_interval(Duration::from_secs(1)));
    let addr = server.local_addr();
    let page = Page::join(&driver, &format!("http://{addr}/#lab"), "Ada", PHONE);
    page.session.click("[data-testid=wire-toggle]");
    page.wait(
        "the handshake in the Wire panel",
        "[...document.querySelectorAll('[data-testid=wire-http]')].some(li =>
            li.textContent.includes('Sec-WebSocket-Accept:'))
         && [...document.querySelectorAll('[data-testid=wire-http]')].some(li =>
            li.textContent.includes('Sec-WebSocket-Key:'))",
        json!([]),
    );
    let text = "x".repeat(200);
    page.send(&text);
    // The page sends it as JSON: 200 characters of text make a 228-byte payload.
    page.wait(
        "the 200-character message as a frame",
        "[...document.querySelectorAll('[data-testid=wire-frame]')].some(li =>
            li.dataset.dir === 'in' && Number(li.dataset.len) > 200 && li.dataset.lenBits === '16')",
        json!([]),
    );
    let frames = wire_frames(&page);
    let sent = frames
        .iter()
        .find(|f| {
            f[0] == "in" && f[1] == "TEXT" && f[5].as_str().unwrap_or("").contains("xxxxxxxx")
        })
        .unwrap_or_else(|| panic!("no frame of the message: {frames:#?}"));
    assert_eq!(sent[2], "1", "the browser masks what it sends: {sent}");
    assert!(sent[5].as_str().unwrap().contains("MASK=1"), "{sent}");
    assert!(sent[5].as_str().unwrap().contains("key="), "{sent}");
    assert_eq!(
        sent[4], 16,
        "a payload over 125 bytes takes the 16-bit length: {sent}"
    );
    let len = sent[3].as_u64().unwrap();
    assert_eq!(
        len,
        json!({"type": "message", "text": text, "cid": "0".repeat(24)})
            .to_string()
            .len() as u64,
        "the page sends the message as JSON, with its cid: {sent}"
    );
    // What comes back: unmasked, 16-bit too.
    page.wait(
        "the message coming back",
        "[...document.querySelectorAll('[data-testid=wire-frame]')].some(li =>
            li.dataset.dir === 'out' && li.dataset.masked === '0' && li.dataset.lenBits === '16')",
        json!([]),
    );
    page.wait(
        "the server's ping and the browser's pong",
        "(() => {
            const f = [...document.querySelectorAll('[data-testid=wire-frame]')];
            return f.some(li => li.dataset.dir === 'out' && li.dataset.opcode === 'PING' && li.dataset.masked === '0')
                && f.some(li => li.dataset.dir === 'in' && li.dataset.opcode === 'PONG' && li.dataset.masked === '1');
         })()",
        json!([]),
    );
    // The legend names every field with its section.
    page.run("document.querySelector('[data-testid=wire-legend]').open = true;");
    let legend =
        page.run("return document.querySelector('[data-testid=wire-legend]').textContent;");
    for needle in [
        "FIN", "RSV", "opcode", "MASK", "key", "16-bit", "64-bit", "§5.2", "§5.3",
    ] {
        assert!(
            legend.as_str().unwrap().contains(needle),
            "legend lacks {needle}"
        );
    }
    // It fits the phone: nothing wider than the screen.
    let overflow = page.run(
        "const w = document.querySelector('[data-testid=wire]');
         return [w.scrollWidth <= w.clientWidth + 1, document.documentElement.scrollWidth <= innerWidth + 1];",
    );
    assert_eq!(overflow, json!([true, true]), "the panel fits 390 px");
    page.screenshot("wire-phone.png");

    // Rejoining closes with a closing handshake, then watches the new connection.
    page.session.click("[data-testid=wire-rejoin]");
    page.wait(
        "the closing handshake",
        "(() => {
            const f = [...document.querySelectorAll('[data-testid=wire-frame]')];
            return f.some(li => li.dataset.dir === 'in' && li.dataset.opcode === 'CLOSE' && li.dataset.masked === '1')
                && f.some(li => li.dataset.dir === 'out' && li.dataset.opcode === 'CLOSE');
         })()",
        json!([]),
    );
    page.wait_online();
    // A rejoin asked for is not a failure come right.
    page.wait_entry("system", "Rejoined on a new connection.");
    assert!(
        !page
            .entries()
            .iter()
            .any(|e| e.text == "Back online." || e.kind == "error"),
        "{:?}",
        page.entries()
    );
    page.wait(
        "the new connection's handshake",
        "[...document.querySelectorAll('[data-testid=wire-note]')].filter(li =>
            li.textContent.includes('watching')).length === 2",
        json!([]),
    );
}

/// Rectangles the Wire tests compare: `[top, right, bottom, left]` of the Wire
/// panel, the message box, the Send button and the last room message, and the
/// viewport's `[width, height]`.
const WIRE_LAYOUT: &str = "const done = arguments[0];
    requestAnimationFrame(() => requestAnimationFrame(() => {
        const box = (el) => { const r = el.getBoundingClientRect(); return [r.top, r.right, r.bottom, r.left].map(Math.round); };
        const last = [...document.querySelectorAll('#log > li[data-kind=message]')].at(-1);
        done({wire: box(document.querySelector('[data-testid=wire]')),
              composer: box(document.querySelector('[data-testid=composer]')),
              send: box(document.querySelector('[data-testid=send]')),
              last: box(last), scroller: box(document.querySelector('#scroller')),
              viewport: [innerWidth, innerHeight],
              fits: document.documentElement.scrollWidth <= innerWidth,
              focus_inside: document.querySelector('[data-testid=wire]').contains(document.activeElement)});
    }));";

/// Whether the last room message shows whole between the top of the conversation
/// and the message box.
const LAST_IN_VIEW: &str = "(() => {
    const last = [...document.querySelectorAll('#log > li[data-kind=message]')].at(-1).getBoundingClientRect();
    const box = document.querySelector('[data-testid=composer]').getBoundingClientRect();
    const top = document.querySelector('#scroller').getBoundingClientRect().top;
    return last.bottom <= box.top + 1 && last.top >= top;
})()";

/// The issue's Wire panel hid what it explains. On a desktop it now sits beside the
/// chat, which narrows; on a phone it is a sheet under it that can be resized
/// (dragged or with the arrow keys) but always leaves the message box and the last
/// messages in view. Focus goes into it on opening and back on closing.
#[test]
fn wire_panel_sits_beside_the_chat_not_over_it() {
    wire_panel_sits_beside_the_chat_not_over_it_in(Engine::Chromium);
}

#[test]
fn wire_panel_sits_beside_the_chat_not_over_it_in_webkit() {
    wire_panel_sits_beside_the_chat_not_over_it_in(Engine::WebKit);
}

fn wire_panel_sits_beside_the_chat_not_over_it_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in("wire_panel_sits_beside_the_chat_not_over_it", engine)
    else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    for (size, label) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
        let page = Page::join(
            &driver,
            &format!("http://{addr}/#dock-{label}"),
            "Ada",
            size,
        );
        for n in 1..=12 {
            page.send(&format!("line {n}"));
        }
        page.wait_entry("message", "line 12");
        page.session.click("[data-testid=wire-toggle]");
        let seen = page.session.execute_async(WIRE_LAYOUT, json!([]));
        let at = |part: &str, side: usize| seen[part][side].as_i64().expect("a number");
        assert_eq!(seen["fits"], true, "{label}: {seen}");
        assert_eq!(
            seen["focus_inside"], true,
            "{label}: focus moved into the panel: {seen}"
        );
        let (width, height) = (
            seen["viewport"][0].as_i64().unwrap(),
            seen["viewport"][1].as_i64().unwrap(),
        );
        if label == "desktop" {
            // Beside: the box, Send and the last message end where the panel begins.
            for part in ["composer", "send", "last"] {
                assert!(
                    at(part, 1) <= at("wire", 3),
                    "{label}: {part} under the panel: {seen}"
                );
            }
            assert!(at("wire", 1) <= width, "{seen}");
        } else {
            // Under: the sheet starts below the box, and the last message shows
            // above the box.
            assert!(at("wire", 0) >= at("composer", 2) - 1, "{label}: {seen}");
            assert!(at("composer", 2) <= height, "{seen}");
            // The page keeps the bottom in view as the sheet takes room (a frame or
            // two after the layout changed).
            page.wait(
                "the last message in view above the box",
                LAST_IN_VIEW,
                json!([]),
            );
            // Dragged up as far as a finger can, it still leaves both in view.
            let before = at("wire", 2) - at("wire", 0);
            let grip = page.run(
                "const r = document.querySelector('[data-testid=wire-grip]').getBoundingClientRect();
                 return Math.round(r.top + r.height / 2);",
            );
            let to_top = 10 - grip.as_i64().expect("the grip's middle") as i32;
            page.session
                .drag_vertically("[data-testid=wire-grip]", to_top);
            let dragged = page.session.execute_async(WIRE_LAYOUT, json!([]));
            let after = dragged["wire"][2].as_i64().unwrap() - dragged["wire"][0].as_i64().unwrap();
            assert!(
                after > before + 100,
                "the sheet grew: {before} → {after}: {dragged}"
            );
            assert!(
                dragged["wire"][0].as_i64() >= dragged["composer"][2].as_i64().map(|b| b - 1),
                "{dragged}"
            );
            page.wait("the last message still in view", LAST_IN_VIEW, json!([]));
            page.screenshot("wire-sheet-tall.png");
            // The keyboard does the same: down makes it smaller.
            page.run("document.querySelector('[data-testid=wire-grip]').focus();");
            page.session.press("\u{E015}"); // ArrowDown
            page.session.press("\u{E015}");
            let smaller = page.session.execute_async(WIRE_LAYOUT, json!([]));
            let now = smaller["wire"][2].as_i64().unwrap() - smaller["wire"][0].as_i64().unwrap();
            assert!(now < after - 100, "arrow keys shrink it: {after} → {now}");
        }
        page.screenshot(&format!("wire-{label}-docked.png"));
        // The chat is usable meanwhile: a message sent with the panel open.
        page.send("still here");
        page.wait_entry("message", "still here");
        page.session.press(ESCAPE);
        page.wait(
            "the panel closed and focus on its toggle",
            "document.querySelector('[data-testid=wire]').hidden
             && document.activeElement === document.querySelector('[data-testid=wire-toggle]')",
            json!([]),
        );
    }
}

#[test]
#[ignore = "writes docs/wire-panel.png; run by hand after changing the panel"]
fn wire_panel_screenshot() {
    let Some(driver) = driver_or_skip("wire_panel_screenshot") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let page = Page::join(&driver, &format!("http://{addr}/#lab"), "Ada", PHONE);
    page.session.click("[data-testid=wire-toggle]");
    page.send("hello, wire");
    page.send(&"A long message takes the 16-bit length. ".repeat(5));
    page.wait(
        "the long message",
        "[...document.querySelectorAll('[data-testid=wire-frame]')].some(li =>
            li.dataset.dir === 'out' && li.dataset.lenBits === '16')",
        json!([]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let shot = page.screenshot("wire-panel.png");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/wire-panel.png");
    std::fs::copy(&shot, &docs).expect("copy the screenshot to docs/");
}

/// Regenerates the README's screenshots: a desktop page in the middle of a realistic
/// conversation and a phone that just joined it, each light and dark
/// (`docs/screenshot.png`, `screenshot-dark.png`, `screenshot-phone.png`,
/// `screenshot-phone-dark.png`). Run it by hand after changing the page's look.
#[test]
#[ignore = "writes docs/screenshot*.png; run by hand after changing the page"]
fn readme_screenshot() {
    let Some(driver) = driver_or_skip("readme_screenshot") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let say = |ws: &mut Client, text: &str| {
        common::say(ws, text);
        std::thread::sleep(Duration::from_millis(30));
    };
    let (mut lena, _) = chat(addr, "office", Some("Lena"));
    let (mut tom, _) = chat(addr, "office", Some("Tom"));
    let (mut jonas, _) = chat(addr, "office", Some("Jonas"));
    say(
        &mut lena,
        "Morning! The printer on the 2nd floor works again",
    );
    say(&mut tom, "finally, thanks Lena");
    say(&mut jonas, "Is anyone using the big meeting room at 11?");
    say(&mut lena, "Not me, go ahead");
    say(
        &mut tom,
        "All yours. Slides from yesterday are on http://fileserver.lan/demo",
    );

    let page = Page::join(&driver, &format!("http://{addr}/#office"), "Alex", DESKTOP);
    page.wait_members(&["Alex", "Lena", "Tom", "Jonas"]);
    say(
        &mut jonas,
        "Great, booked it. Alex, can you bring the HDMI adapter?",
    );
    page.wait_entry(
        "message",
        "Great, booked it. Alex, can you bring the HDMI adapter?",
    );
    page.send("Sure, I'll bring it along");
    page.send("and coffee for everyone");
    page.wait_entry("message", "and coffee for everyone");
    send_json(
        &mut lena,
        json!({"type": "direct", "to": "Alex", "text": "Lunch at 12:30 later?"}),
    );
    page.wait_entry("direct", "Lunch at 12:30 later?");
    say(&mut tom, "You're the best");
    page.wait_entry("message", "You're the best");
    page.session
        .type_into("[data-testid=text]", "/msg Lena sounds good, see you then");
    page.session
        .execute("document.activeElement.blur();", json!([]));
    page.session
        .execute("document.activeElement.blur();", json!([]));
    // Mia on her phone, new in the room: she sees what was said, with her name marked.
    let mia = Page::join(&driver, &format!("http://{addr}/#office"), "Mia", PHONE);
    say(
        &mut lena,
        "Mia, welcome to the office chat! Ask anything here.",
    );
    mia.wait_entry(
        "message",
        "Mia, welcome to the office chat! Ask anything here.",
    );
    page.wait_entry(
        "message",
        "Mia, welcome to the office chat! Ask anything here.",
    );
    mia.send("Thanks Lena! Where do I find the coffee?");
    page.wait_entry("message", "Thanks Lena! Where do I find the coffee?");
    mia.session
        .execute("document.activeElement.blur();", json!([]));
    std::thread::sleep(Duration::from_millis(300));
    // Light and dark, desktop and phone: each written to docs/ for the README.
    for scheme in ["light", "dark"] {
        for (shown, name) in [(&page, "screenshot"), (&mia, "screenshot-phone")] {
            shown.session.cdp(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            );
            std::thread::sleep(Duration::from_millis(300));
            let file = if scheme == "light" {
                format!("{name}.png")
            } else {
                format!("{name}-dark.png")
            };
            let shot = shown.screenshot(&format!("readme-{file}"));
            let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(&file);
            std::fs::copy(&shot, &docs).expect("copy the screenshot to docs/");
        }
    }
}

/// Two pages on two nodes of one cluster are in one room: each sees the
/// other arrive, talk and leave, as on one server.
#[test]
fn pages_on_two_cluster_nodes_chat_in_one_room() {
    let Some(driver) = driver_or_skip("pages_on_two_cluster_nodes_chat_in_one_room") else {
        return;
    };
    let Some(redis) = common::redis::Redis::start("pages_on_two_nodes") else {
        return;
    };
    let node = || start_with(|b| b.redis(redis.url()));
    let (a, b) = (node(), node());
    let alice = Page::join(
        &driver,
        &format!("http://{}/#across", a.local_addr()),
        "alice",
        DESKTOP,
    );
    alice.wait_entry(
        "system",
        "You joined #across as alice. Nobody else is here yet.",
    );
    let bob = Page::join(
        &driver,
        &format!("http://{}/#across", b.local_addr()),
        "bob",
        PHONE,
    );
    bob.wait_entry("system", "You joined #across as bob. alice is here.");
    alice.wait_entry("system", "bob joined");
    alice.send("hello from node A");
    bob.wait_entry("message", "hello from node A");
    bob.send("and back from node B");
    alice.wait_entry("message", "and back from node B");
    let expected = [
        ("alice", "hello from node A"),
        ("bob", "and back from node B"),
    ]
    .map(|(f, t)| (f.to_owned(), t.to_owned()));
    assert_eq!(alice.messages(), expected);
    assert_eq!(
        bob.messages(),
        expected,
        "the same messages in the same order"
    );
    drop(bob);
    alice.wait_entry("system", "bob left");
}

/// A message on its way when the cluster's Redis stalls: the page says it is not
/// confirmed yet and does not put it back in the box (sent again, it would be there
/// twice), then shows it, once, when Redis answers again.
#[test]
fn page_waits_for_a_message_the_store_did_not_confirm_and_shows_it_once() {
    let Some(driver) =
        driver_or_skip("page_waits_for_a_message_the_store_did_not_confirm_and_shows_it_once")
    else {
        return;
    };
    let Some(redis) = common::redis::Redis::start("page_unconfirmed") else {
        return;
    };
    let node = start_with(|b| b.redis(redis.url()));
    let page = Page::blank(&driver, "hal", DESKTOP);
    page.join_at(&format!("http://{}/#stall", node.local_addr()));
    page.send("first");
    page.wait_entry("message", "first");
    let unconfirmed = "Not confirmed yet: the server's store did not answer. Your message \
                       will appear here once it does; there is no need to send it again.";
    let not_sent = "Not sent: the server could not store your message, so nobody got it. \
                    It is back in the message box: press Enter to send it again.";
    // A heartbeat that goes out before the message finds the stall first, and the
    // message is refused instead, which is right too: then the test tries again.
    let mut tries = 0;
    let text = loop {
        tries += 1;
        assert!(tries <= 5, "no message was on its way in 5 stalls");
        let text = format!("in flight {tries}");
        redis.pause();
        page.send(&text);
        let said = page.wait(
            "the message refused or not confirmed",
            "(() => {
                 const said = [...document.querySelectorAll('#log > li')]
                     .map(li => li.querySelector('[data-part=text]')?.textContent);
                 const answers = said.filter(t => t === arguments[0] || t === arguments[1]);
                 return answers.length >= arguments[2] ? answers.at(-1) : null;
             })()",
            json!([unconfirmed, not_sent, tries]),
        );
        if said == unconfirmed {
            break text;
        }
        page.run("document.querySelector('[data-testid=text]').value = '';");
        redis.resume();
        let deadline = Instant::now() + WAIT;
        while status(&get(node.local_addr(), "/healthz")) != 200 {
            assert!(Instant::now() < deadline, "the node is not back");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(
        page.run("return document.querySelector('[data-testid=text]').value;"),
        "",
        "not put back to be sent twice"
    );
    redis.resume();
    page.wait_up_to(
        2 * WAIT,
        "the unconfirmed message, once Redis answers",
        "[...document.querySelectorAll('#log > li')].some(li =>
             li.dataset.kind === 'message' && li.textContent.includes(arguments[0]))",
        json!([text]),
    );
    let texts: Vec<String> = page.numbered().into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["first".to_owned(), text]);
}

// ---- accessibility: WCAG 2.2 AA ----

/// axe-core's browser build (`axe.min.js`, from npm's `axe-core`, which `.ci/run`
/// installs globally), or `None` after saying why the audit cannot run here.
fn axe_or_skip(test: &str) -> Option<String> {
    let mut places = Vec::new();
    if let Ok(mut npm) = Command::new("npm")
        .args(["root", "-g"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        if wait_exit(&mut npm, Duration::from_secs(30)).is_some_and(|exit| exit.success()) {
            let mut root = String::new();
            if let Some(mut out) = npm.stdout.take() {
                let _ = out.read_to_string(&mut root);
            }
            places.push(PathBuf::from(root.trim()).join("axe-core/axe.min.js"));
        } else {
            let _ = npm.kill();
            let _ = npm.wait();
        }
    }
    places.extend(
        ["/usr/lib/node_modules", "/usr/local/lib/node_modules"]
            .map(|dir| Path::new(dir).join("axe-core/axe.min.js")),
    );
    if let Some(found) = places.iter().find(|p| p.is_file()) {
        return Some(std::fs::read_to_string(found).expect("read axe.min.js"));
    }
    assert!(
        std::env::var_os("SWITCHBOARD_REQUIRE_TOOLS").is_none(),
        "{test}: SWITCHBOARD_REQUIRE_TOOLS is set but axe-core is not installed (npm install -g axe-core)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: axe-core is not installed (.ci/run installs it)"
    );
    None
}

/// The contrast ratios (WCAG 2.x relative luminance) of the focus ring (on the
/// message box, focused) and of a field's border (the name field, not focused),
/// each against the page's background and its panels' colour.
const CONTRASTS: &str = "const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = (c) => {
        const [r, g, b] = rgb(c).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return Math.round((x + 0.05) / (y + 0.05) * 100) / 100; };
    const text = document.querySelector('[data-testid=text]');
    text.focus();
    const ring = getComputedStyle(text).outlineColor;
    text.blur();
    const border = getComputedStyle(document.querySelector('[data-testid=name-input]')).borderTopColor;
    const panel = getComputedStyle(document.querySelector('.composer')).backgroundColor;
    const bg = getComputedStyle(document.body).backgroundColor;
    return {'focus ring on the panel': ratio(ring, panel), 'focus ring on the background': ratio(ring, bg),
            'field border on the panel': ratio(border, panel), 'field border on the background': ratio(border, bg)};";

/// The WCAG 2.0, 2.1 and 2.2 rules of levels A and AA, as axe-core tags them.
const WCAG_22_AA: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// Runs axe-core over the page as it is now, once in the light colour scheme and
/// once in the dark one (Chromium emulates each), and adds each violation,
/// described, to `found`.
fn audit(page: &Page, axe: &str, state: &str, found: &mut Vec<String>) {
    for scheme in ["light", "dark"] {
        page.session.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
        audit_as_it_is(page, axe, &format!("{state} {scheme}"), found);
    }
    page.session.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
}

/// Runs axe-core over the page as it is now, in the scheme it has, and adds each
/// violation, described, to `found`.
fn audit_as_it_is(page: &Page, axe: &str, state: &str, found: &mut Vec<String>) {
    if page.run("return typeof window.axe;") != "object" {
        // Through WebDriver, not a <script>: the page's own policy admits no other
        // script, and the test must not need it to.
        page.session.execute(axe, json!([]));
    }
    let violations = page.session.execute_async(
        "const [tags, done] = arguments;
         requestAnimationFrame(() => requestAnimationFrame(() =>
           axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
             .then(r => done(r.violations.map(v => `${v.id} (${v.impact}): ${v.help}\\n` +
                 v.nodes.map(n => `      ${n.target.join(' ')}: ${(n.failureSummary || '').replace(/\\s+/g, ' ')}`)
                   .join('\\n'))),
                   e => done(['axe failed: ' + e]))));",
        json!([WCAG_22_AA]),
    );
    let size = page.run("return `${innerWidth}x${innerHeight}`;");
    for v in violations.as_array().cloned().unwrap_or_default() {
        found.push(format!(
            "{} {state} {size}: {}",
            page.who,
            v.as_str().unwrap_or_default()
        ));
    }
}

/// The audit in WebKit (Safari's engine): its own layout and rendering, in a light
/// wide window and a dark narrow one (MiniBrowser's `--dark-mode`), through the
/// chat, a private conversation, Share, the Wire panel and the offline strip.
#[test]
fn page_meets_wcag_2_2_aa_in_webkit() {
    let test = "page_meets_wcag_2_2_aa_in_webkit";
    let Some(driver) = driver_or_skip_in(test, Engine::WebKit) else {
        return;
    };
    let Some(axe) = axe_or_skip(test) else {
        return;
    };
    let mut found = Vec::new();
    // Light wide and dark narrow: both schemes and both layouts, in two windows.
    for (dark, size, who) in [(false, DESKTOP, "wide-light"), (true, PHONE, "narrow-dark")] {
        let server = start();
        let addr = server.local_addr();
        let (mut bob, _) = chat(addr, "audit", Some("bob"));
        let session = if dark {
            driver.dark_webkit_session(size.0, size.1)
        } else {
            driver.session(size.0, size.1)
        };
        let page = Page { session, who };
        assert_eq!(
            page.run("return matchMedia('(prefers-color-scheme: dark)').matches;"),
            dark,
            "{who}: the window's scheme"
        );
        page.join_at(&format!("http://{addr}/#audit"));
        say(&mut bob, &format!("{who}, can you read this?"));
        send_json(
            &mut bob,
            json!({"type": "direct", "to": who, "text": "a private word"}),
        );
        page.wait_entry("direct", "a private word");
        audit_as_it_is(&page, &axe, "chat", &mut found);
        page.session.click("#log [data-action=reply]");
        page.wait_private("bob", "a private word");
        audit_as_it_is(&page, &axe, "private conversation", &mut found);
        page.session.click("[data-testid=dm-back]");
        page.session.click("[data-testid=share-toggle]");
        page.wait(
            "the share panel",
            "document.querySelector('[data-testid=share]').open",
            json!([]),
        );
        audit_as_it_is(&page, &axe, "share", &mut found);
        page.session.press(ESCAPE);
        page.session.click("[data-testid=wire-toggle]");
        page.wait(
            "the wire panel with the handshake",
            "document.querySelectorAll('[data-testid=wire-http]').length > 3",
            json!([]),
        );
        audit_as_it_is(&page, &axe, "wire", &mut found);
        page.session.click("[data-testid=wire-close]");
        drop(bob);
        server.shutdown();
        page.wait_status(WAIT, "reconnecting");
        audit_as_it_is(&page, &axe, "offline", &mut found);
        assert_eq!(
            page.run("return document.documentElement.scrollWidth <= innerWidth;"),
            true,
            "{who}: nothing overflows offline"
        );
    }
    assert!(
        found.is_empty(),
        "{} WCAG 2.2 AA violations in WebKit:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The issue's "done when": axe-core finds no WCAG 2.2 A or AA violation in any
/// state of the page (join card, chat, private conversation, share, wire, offline,
/// the drawers, the password card), at desktop and phone size, light and dark. Each
/// panel that opens takes the focus, and gives it back when it closes.
#[test]
fn page_meets_wcag_2_2_aa_in_every_state() {
    let test = "page_meets_wcag_2_2_aa_in_every_state";
    let Some(driver) = driver_or_skip(test) else {
        return;
    };
    let Some(axe) = axe_or_skip(test) else {
        return;
    };
    let mut found = Vec::new();
    // Files over 1 MiB are refused: the audit sees a refused upload's row.
    let server = start_with(|b| b.max_file_size(1 << 20));
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "audit", Some("bob"));
    say(&mut bob, "Welcome! The agenda is on http://wiki.lan/agenda");
    say(&mut bob, "and coffee is in the kitchen");
    say(&mut bob, "the door code is 1234");
    // The audit sees a deleted message among the others.
    send_json(&mut bob, json!({"type": "delete", "id": 3}));
    for (size, who) in [(DESKTOP, "desk"), (PHONE, "phone")] {
        let page = Page::blank(&driver, who, size);
        page.before_scripts(NETWORK_SWITCH);
        page.before_scripts(FAIL_STORE);
        page.session.goto(&format!("http://{addr}/#audit"));
        page.wait(
            "the join card",
            "!document.querySelector('[data-testid=join]').hidden",
            json!([]),
        );
        audit(&page, &axe, "join card", &mut found);
        page.session
            .type_into("[data-testid=join-name]", &format!("{who}{ENTER}"));
        page.wait_online();
        say(&mut bob, &format!("{who}, can you read this?"));
        send_json(
            &mut bob,
            json!({"type": "direct", "to": who, "text": "a private word"}),
        );
        page.wait_entry("direct", "a private word");
        page.send("yes, loud and clear");
        page.wait_entry("message", "yes, loud and clear");
        page.wait(
            "a deleted message, and Delete shown on one's own",
            "document.querySelector('#log > li[data-deleted=true]')
             && document.querySelector('#log > li[data-mine=true] button[data-action=delete]')",
            json!([]),
        );
        page.run("document.querySelector('#log > li[data-mine=true]').focus();");
        audit(&page, &axe, "chat", &mut found);

        // Files: a picture and a document shared, an upload refused, files dragged in.
        let picture = draw_png(&page, 640, 400);
        let pdf = b"%PDF-1.4\n%%EOF\n".repeat(100);
        for (name, mime, bytes) in [
            ("whiteboard.png", "image/png", &picture),
            ("agenda.pdf", "application/pdf", &pdf),
        ] {
            send_json(
                &mut bob,
                json!({"type": "file", "name": name, "mime": mime, "size": bytes.len()}),
            );
            bob.send(tungstenite::Message::binary(bytes.clone()))
                .expect("send");
        }
        page.wait(
            "the picture and the card",
            "document.querySelector('#log [data-file-kind=picture] img')?.complete
             && document.querySelector('#log [data-file-kind=file]')",
            json!([]),
        );
        page.run(
            "const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array(2 << 20)], 'too big.zip', { type: 'application/zip' }));
             const text = document.querySelector('[data-testid=text]');
             text.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
             document.querySelector('#scroller').dispatchEvent(
                 new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));",
        );
        page.wait(
            "the refused upload and the drop target",
            "document.querySelector('[data-testid=upload][data-state=failed]')
             && !document.querySelector('[data-testid=drop]').hidden",
            json!([]),
        );
        for scheme in ["dark", "light"] {
            page.session.cdp(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            );
            audit(&page, &axe, &format!("files, {scheme}"), &mut found);
            page.save_screenshot(&format!("audit-files-{who}-{scheme}.png"));
        }
        page.run(
            "const dt = new DataTransfer();
             dt.items.add(new File(['x'], 'x.txt'));
             document.querySelector('#scroller').dispatchEvent(
                 new DragEvent('dragleave', { dataTransfer: dt, bubbles: true, cancelable: true }));
             document.querySelector('[data-testid=upload] [data-action=cancel]').click();",
        );
        page.wait(
            "the drop target and the row gone",
            "document.querySelector('[data-testid=drop]').hidden
             && document.querySelector('[data-testid=uploads]').hidden",
            json!([]),
        );
        // What axe does not measure: the focus ring and the fields' borders against
        // the panels around them, 3:1 at least (WCAG 1.4.11), in both schemes.
        for scheme in ["light", "dark"] {
            page.session.cdp(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            );
            let ratios = page.run(CONTRASTS);
            for (what, ratio) in ratios.as_object().expect("ratios") {
                if ratio.as_f64() < Some(3.0) {
                    found.push(format!("{who} {scheme}: {what} has a contrast of {ratio}"));
                }
            }
        }
        page.session.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
        );

        if who == "phone" {
            page.session.click("[data-testid=people-toggle]");
        }
        page.session
            .click("[data-testid=members] button[data-member=bob]");
        page.wait_private("bob", "a private word");
        page.send("thanks");
        page.wait_private("bob", "thanks");
        audit(&page, &axe, "private conversation", &mut found);
        page.session.click("[data-testid=dm-back]");

        page.session.click("[data-testid=share-toggle]");
        page.wait(
            "the share panel, focused",
            "document.querySelector('[data-testid=share]').open
             && document.querySelector('[data-testid=share]').contains(document.activeElement)",
            json!([]),
        );
        audit(&page, &axe, "share", &mut found);
        page.session.press(ESCAPE);
        page.wait(
            "the share panel closed, focus back on Share",
            "!document.querySelector('[data-testid=share]').open
             && document.activeElement === document.querySelector('[data-testid=share-toggle]')",
            json!([]),
        );

        page.session.click("[data-testid=wire-toggle]");
        page.wait(
            "the wire panel with the handshake",
            "document.querySelectorAll('[data-testid=wire-http]').length > 3",
            json!([]),
        );
        audit(&page, &axe, "wire", &mut found);
        page.session.click("[data-testid=wire-close]");

        if who == "phone" {
            page.session.click("[data-testid=people-toggle]");
            page.wait(
                "the people drawer, focused",
                "document.querySelector('[data-testid=side]').contains(document.activeElement)
                 && document.querySelector('.chat').inert",
                json!([]),
            );
            audit(&page, &axe, "people drawer", &mut found);
            page.session.press(ESCAPE);
            page.wait(
                "focus back on People",
                "document.activeElement === document.querySelector('[data-testid=people-toggle]')",
                json!([]),
            );
            page.session.click("[data-testid=rooms-toggle]");
            page.wait(
                "the rooms drawer, focused",
                "document.activeElement === document.querySelector('[data-testid=room-input]')",
                json!([]),
            );
            audit(&page, &axe, "rooms drawer", &mut found);
            page.session.press(ESCAPE);
        }

        page.run(
            "window.__network.down = true;
             window.__sockets.filter(s => s.url.includes('/ws/chat/')).at(-1).close();",
        );
        page.wait_status(WAIT, "reconnecting");
        page.session
            .type_into("[data-testid=text]", &format!("lost words{ENTER}"));
        audit(&page, &axe, "offline", &mut found);
        page.run("window.__network.down = false;");
    }

    // The password card, asking and after a wrong password.
    let guarded = guarded();
    let url = format!("http://{}/#audit", guarded.local_addr());
    for (size, who) in [(DESKTOP, "desk-pw"), (PHONE, "phone-pw")] {
        let page = Page::blank(&driver, who, size);
        page.session.goto(&url);
        page.wait_password_prompt();
        audit(&page, &axe, "password card", &mut found);
        page.session.type_into("[data-testid=join-name]", who);
        page.session
            .type_into("[data-testid=join-password]", &format!("wrong{ENTER}"));
        page.wait("the wrong password said", PASSWORD_ERROR, json!([]));
        audit(&page, &axe, "password card, wrong password", &mut found);
    }
    assert!(
        found.is_empty(),
        "{} WCAG 2.2 AA violations:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// Records what the page's live regions (`aria-live`, `role=status|alert|log`) come
/// to say, as `[region id, text]` in `window.__live`, the way a screen reader would
/// hear them: each change of a region's text, empty ones left out.
const RECORD_LIVE: &str = "(() => {
    const heard = [];
    window.__live = heard;
    const live = '[aria-live], [role=status], [role=alert], [role=log]';
    const observer = new MutationObserver((changes) => {
        for (const c of changes) {
            const node = c.target.nodeType === 1 ? c.target : c.target.parentElement;
            const region = node && node.closest(live);
            if (!region) continue;
            const said = region.textContent.trim();
            const last = heard[heard.length - 1];
            if (said && !(last && last[0] === region.id && last[1] === said)) heard.push([region.id, said]);
        }
    });
    // From when the page has been built: its first text is there to be read, not news.
    document.addEventListener('DOMContentLoaded', () =>
        observer.observe(document, {subtree: true, childList: true, characterData: true}));
})();";

/// The issue's live regions read out a page of history on joining, another on each
/// "load older", and the hint on every key. Now a screen reader hears a new
/// message, once, and not history nor typing. And every text a person wrote has
/// `dir="auto"`; a name cut short has a tooltip with all of it.
#[test]
fn screen_readers_hear_new_messages_only_and_names_keep_their_direction() {
    let test = "screen_readers_hear_new_messages_only_and_names_keep_their_direction";
    let Some(driver) = driver_or_skip(test) else {
        return;
    };
    let server = start_with(|b| b.rate_per_sec(1000).rate_burst(1000));
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "live", Some("bob"));
    for n in 1..=60 {
        say(&mut bob, &format!("old {n}"));
    }
    events_until_message(&mut bob, "old 60");
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.before_scripts(RECORD_LIVE);
    alice.join_at(&format!("http://{addr}/#live"));
    alice.wait_entry("message", "old 60");
    // Scrolled to the top, the page loads the ten it did not get on joining.
    alice.run("document.querySelector('#scroller').scrollTop = 0;");
    alice.wait(
        "the older messages",
        "document.querySelectorAll('#log > li[data-kind=message]').length === 60",
        json!([]),
    );
    alice
        .session
        .type_into("[data-testid=text]", "typing, letter by letter");
    alice.session.type_into("[data-testid=text]", BACKSPACE);
    let heard = |page: &Page| {
        page.run("return window.__live.filter(([region]) => region !== 'status-text');")
    };
    assert_eq!(
        heard(&alice),
        json!([]),
        "history and typing are not read out"
    );

    say(&mut bob, "fresh news");
    send_json(
        &mut bob,
        json!({"type": "direct", "to": "alice", "text": "psst"}),
    );
    alice.wait_entry("direct", "psst");
    alice.wait(
        "both announced",
        "window.__live.filter(([region]) => region === 'announce').length === 2",
        json!([]),
    );
    assert_eq!(
        heard(&alice),
        json!([
            ["announce", "bob: fresh news"],
            ["announce", "Private message from bob: psst"]
        ])
    );

    // A right-to-left name and its text, and a name too long for the side panel.
    let (mut sara, _) = chat_url(addr, "/ws/chat/live?name=%D7%A9%D7%A8%D7%94");
    say(&mut sara, "\u{5e9}\u{5dc}\u{5d5}\u{5dd}.");
    let long = "Maximiliane-Wilhelmina-Schmidt-K";
    let (_max, _) = chat(addr, "live", Some(long));
    alice.wait_members(&["alice", "bob", "\u{5e9}\u{5e8}\u{5d4}", long]);
    alice.wait_entry("message", "\u{5e9}\u{5dc}\u{5d5}\u{5dd}.");
    alice
        .session
        .click("[data-testid=members] button[data-member=bob]");
    alice.wait_private("bob", "psst");
    alice.session.click("[data-testid=dm-back]");
    let undirected = alice.run(
        "return [...document.querySelectorAll(`#log > li.msg [data-part=text], bdi, [data-part=name],
                  #room-name, #intro-room, #title-peer, #dm-peer, textarea,
                  input:not([type=password]):not([type=hidden]):not([type=file])`)]
            .filter(e => e.getAttribute('dir') !== 'auto').map(e => e.outerHTML.slice(0, 100));",
    );
    assert_eq!(
        undirected,
        json!([]),
        "every text a person wrote has dir=auto"
    );
    let cut = alice.session.execute(
        "const n = document.querySelector(`[data-testid=members] button[data-member='${arguments[0]}'] .name`);
         return [n.scrollWidth > n.clientWidth, n.title];",
        json!([long]),
    );
    assert_eq!(cut, json!([true, long]), "a name cut short has a tooltip");
}

// ---- files and pictures ------------------------------------------------------

/// A `w`×`h` PNG (a sky, a sun, a hill) drawn by `page`'s browser: the picture a
/// person would pick, made without an image library.
fn draw_png(page: &Page, w: u32, h: u32) -> Vec<u8> {
    let data = page.session.execute(
        "const [w, h] = arguments;
         const c = document.createElement('canvas');
         c.width = w; c.height = h;
         const g = c.getContext('2d');
         const sky = g.createLinearGradient(0, 0, 0, h);
         sky.addColorStop(0, '#ffb86b'); sky.addColorStop(1, '#6b5bd6');
         g.fillStyle = sky; g.fillRect(0, 0, w, h);
         g.fillStyle = '#ffe27a'; g.beginPath(); g.arc(w * 0.7, h * 0.5, h * 0.2, 0, 7); g.fill();
         g.fillStyle = '#2b2340'; g.fillRect(0, h * 0.75, w, h * 0.25);
         return c.toDataURL('image/png').split(',')[1];",
        json!([w, h]),
    );
    webdriver::base64_decode(data.as_str().expect("a data URL"))
}

/// Records, for each picture that appears in the log, its box as inserted (before a
/// byte of it can have loaded) and once loaded: `window.pictures`.
const RECORD_PICTURES: &str = "window.pictures = [];
    new MutationObserver((changes) => {
        for (const change of changes) for (const node of change.addedNodes) {
            if (!(node instanceof Element)) continue;
            for (const img of node.querySelectorAll('img')) {
                const seen = { name: img.alt, width: img.getAttribute('width'), height: img.getAttribute('height'),
                               lazy: img.loading, src: img.getAttribute('src'),
                               link: img.closest('a')?.getAttribute('href'),
                               before: img.getBoundingClientRect().height, complete: img.complete };
                window.pictures.push(seen);
                img.addEventListener('load', () => {
                    seen.after = img.getBoundingClientRect().height;
                    seen.shownWidth = img.getBoundingClientRect().width;
                    seen.natural = [img.naturalWidth, img.naturalHeight];
                });
            }
        }
    }).observe(document.querySelector('#log'), { childList: true, subtree: true });";

/// The bytes at `url` as fetched by `page`, base64-decoded back here.
fn fetched(page: &Page, url: &str) -> Vec<u8> {
    let data = page.session.execute_async(
        "const [url, done] = arguments;
         fetch(url).then(r => r.blob()).then(b => {
             const reader = new FileReader();
             reader.onload = () => done(reader.result.split(',')[1] || '');
             reader.readAsDataURL(b);
         }, () => done(null));",
        json!([url]),
    );
    webdriver::base64_decode(data.as_str().expect("the bytes"))
}

/// A picture attached from disk on one page shows inline on the other: its width and
/// height are set before it loads (its box does not change when it does), it is
/// scaled to fit, lazy, named, a link to the full picture, and its bytes are the
/// file's. The sender's Wire panel shows the binary frame, its first bytes in hex.
#[test]
fn page_attaches_a_picture_from_disk_and_others_see_it_inline() {
    page_attaches_a_picture_from_disk_and_others_see_it_inline_in(Engine::Chromium);
}

#[test]
fn page_attaches_a_picture_from_disk_and_others_see_it_inline_in_webkit() {
    page_attaches_a_picture_from_disk_and_others_see_it_inline_in(Engine::WebKit);
}

fn page_attaches_a_picture_from_disk_and_others_see_it_inline_in(engine: Engine) {
    let Some(driver) = driver_or_skip_in(
        "page_attaches_a_picture_from_disk_and_others_see_it_inline",
        engine,
    ) else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#pics");
    let alice = Page::join(&driver, &url, "alice", DESKTOP);
    let bob = Page::join(&driver, &url, "bob", DESKTOP);
    bob.run(RECORD_PICTURES);
    alice.session.click("[data-testid=wire-toggle]");
    alice.wait(
        "the Wire panel watching",
        "document.querySelectorAll('[data-testid=wire-http]').length > 0",
        json!([]),
    );

    let dir = TempDir::new("browser_picture");
    let png = draw_png(&alice, 1200, 800);
    let path = dir.path().join("sunset over the hill.png");
    std::fs::write(&path, &png).expect("write the picture");
    alice
        .session
        .type_into("[data-testid=file-input]", path.to_str().expect("a path"));

    let seen = bob.wait(
        "the picture, loaded",
        "window.pictures.length && window.pictures[0].after !== undefined && window.pictures[0]",
        json!([]),
    );
    assert_eq!(
        json!([
            seen["name"],
            seen["width"],
            seen["height"],
            seen["lazy"],
            seen["natural"]
        ]),
        json!([
            "sunset over the hill.png",
            "1200",
            "800",
            "lazy",
            [1200, 800]
        ]),
        "{seen}"
    );
    let (before, after) = (
        seen["before"].as_f64().unwrap_or(0.0),
        seen["after"].as_f64().unwrap_or(-1.0),
    );
    assert!(before > 0.0, "laid out at its size before loading: {seen}");
    assert!(
        (before - after).abs() < 0.5,
        "no jump when it loads: {seen}"
    );
    let shown = seen["shownWidth"].as_f64().unwrap_or(0.0);
    assert!(
        shown > 0.0 && shown < 1200.0 && (after / shown - 800.0 / 1200.0).abs() < 0.01,
        "scaled down to fit, keeping its ratio: {seen}"
    );
    let src = seen["src"].as_str().expect("a src");
    assert_eq!(seen["link"], src, "a click opens the full picture: {seen}");
    assert!(
        fetched(&bob, src) == png,
        "the bytes behind it are the file's"
    );
    // The sender sees it too, and its row is gone.
    alice.wait(
        "her own picture, and no upload row left",
        "document.querySelector('#log li[data-mine=true] [data-file-kind=picture] img')
         && !document.querySelector('[data-testid=upload]')
         && document.querySelector('[data-testid=uploads]').hidden",
        json!([]),
    );
    // On the wire: the picture as a masked binary frame, the PNG signature in hex.
    let frames = wire_frames(&alice);
    let binary = frames
        .iter()
        .find(|f| f[0] == "in" && f[1] == "BINARY")
        .unwrap_or_else(|| panic!("no binary frame: {frames:#?}"));
    assert_eq!(binary[2], "1", "masked: {binary}");
    let shown = binary[5].as_str().unwrap_or_default();
    assert!(
        shown.contains("89 50 4e 47 0d 0a 1a 0a") && shown.contains("BINARY (0x2)"),
        "{binary}"
    );
    bob.screenshot(&format!("files-picture-{engine:?}.png").to_lowercase());
}

/// A picture pasted into the message box is sent and shows; a PDF dropped on the
/// conversation (the drop target shows while dragging) reaches the other page as a
/// card whose link downloads exactly its bytes. On a phone, light and dark.
#[test]
fn page_sends_a_pasted_picture_and_a_dropped_pdf() {
    let Some(driver) = driver_or_skip("page_sends_a_pasted_picture_and_a_dropped_pdf") else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let url = format!("http://{addr}/#desk");
    let alice = Page::join(&driver, &url, "alice", DESKTOP);
    let bob = Page::join(&driver, &url, "bob", PHONE);
    // A phone can take a photo; a desktop without a touch screen is not offered one.
    let camera = "const input = document.querySelector('[data-testid=camera-input]');
        return [document.querySelector('[data-testid=attach]').hidden,
                document.querySelector('[data-testid=camera]').hidden,
                input.accept, input.getAttribute('capture'), input.multiple,
                document.querySelector('[data-testid=file-input]').multiple];";
    assert_eq!(
        bob.run(camera),
        json!([false, false, "image/*", "environment", false, true])
    );
    assert_eq!(alice.run(camera)[1], true, "no camera button on a desktop");

    // Paste: a screenshot on the clipboard, no text.
    let pasted = alice.run(
        "const c = document.createElement('canvas');
         c.width = 300; c.height = 150;
         const g = c.getContext('2d');
         g.fillStyle = '#2f5bd3'; g.fillRect(0, 0, 300, 150);
         g.fillStyle = '#ffd166'; g.fillRect(30, 30, 120, 90);
         return new Promise((done) => c.toBlob((blob) => {
             const dt = new DataTransfer();
             dt.items.add(new File([blob], 'image.png', { type: 'image/png' }));
             const text = document.querySelector('[data-testid=text]');
             text.focus();
             const paste = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
             text.dispatchEvent(paste);
             done({ handled: paste.defaultPrevented, size: blob.size, box: text.value });
         }, 'image/png'));",
    );
    assert_eq!(pasted["handled"], true, "{pasted}");
    assert_eq!(
        pasted["box"], "",
        "a picture does not go in the box: {pasted}"
    );
    let picture = bob.wait(
        "the pasted picture",
        "(() => { const img = document.querySelector('#log [data-file-kind=picture] img');
                  return img && img.complete && img.naturalWidth
                      && [img.alt, img.getAttribute('width'), img.getAttribute('height'), img.naturalWidth]; })()",
        json!([]),
    );
    assert_eq!(picture, json!(["image.png", "300", "150", 300]));

    // Drop: a PDF dragged in from the desktop.
    let pdf: Vec<u8> = b"%PDF-1.4\n"
        .iter()
        .copied()
        .chain((0..150_000u32).map(|i| (i * 31 % 253) as u8))
        .collect();
    let dragged = alice.run(&format!(
        "const bytes = Uint8Array.from(atob('{}'), (c) => c.charCodeAt(0));
         const dt = new DataTransfer();
         dt.items.add(new File([bytes], 'minutes 2026-12.pdf', {{ type: 'application/pdf' }}));
         const target = document.querySelector('#scroller');
         const fire = (type) => {{
             const e = new DragEvent(type, {{ dataTransfer: dt, bubbles: true, cancelable: true }});
             target.dispatchEvent(e);
             return e.defaultPrevented;
         }};
         const entered = fire('dragenter'), over = fire('dragover');
         const drop = document.querySelector('[data-testid=drop]');
         const shown = !drop.hidden && drop.getBoundingClientRect().height > 0 && drop.textContent.trim();
         const dropped = fire('drop');
         return {{ entered, over, shown, dropped, after: drop.hidden }};",
        data_encoding::BASE64.encode(&pdf)
    ));
    assert_eq!(
        dragged,
        json!({"entered": true, "over": true, "shown": "Drop files to share them in #desk",
               "dropped": true, "after": true})
    );
    let card = bob.wait(
        "the PDF's card",
        "(() => { const a = document.querySelector('#log [data-file-kind=file] a');
                  return a && { name: a.querySelector('.file-name').textContent,
                                size: a.querySelector('.file-size').textContent,
                                download: a.download, href: a.getAttribute('href') }; })()",
        json!([]),
    );
    assert_eq!(
        json!([card["name"], card["size"], card["download"]]),
        json!(["minutes 2026-12.pdf", "146.5 KiB", "minutes 2026-12.pdf"]),
        "{card}"
    );
    let href = card["href"].as_str().expect("a link");
    assert!(
        fetched(&bob, href) == pdf,
        "the download is the file, byte for byte"
    );
    alice.wait(
        "both sent",
        "document.querySelectorAll('#log li[data-mine=true] [data-part=file]').length === 2
         && document.querySelector('[data-testid=uploads]').hidden",
        json!([]),
    );
    bob.run("document.activeElement.blur();");
    // On a phone, light and dark: both fit the screen.
    for scheme in ["light", "dark"] {
        bob.session.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
        let fits = bob.run(
            "const img = document.querySelector('#log [data-file-kind=picture] img').getBoundingClientRect();
             const card = document.querySelector('#log [data-file-kind=file] a').getBoundingClientRect();
             return [img.right <= innerWidth, card.right <= innerWidth,
                     document.documentElement.scrollWidth <= innerWidth + 1];",
        );
        assert_eq!(fits, json!([true, true, true]), "{scheme}");
        let file = if scheme == "light" {
            "files-phone.png"
        } else {
            "files-phone-dark.png"
        };
        bob.screenshot(file);
    }
}

/// Clicks Cancel on the upload row once its bar is past 0 and short of the end
/// (recording where), after typing a message meanwhile: `window.cancelled`.
const CANCEL_HALF_WAY: &str = "window.cancelled = null;
    const timer = setInterval(() => {
        const row = document.querySelector('[data-testid=upload]');
        const bar = row && row.querySelector('progress');
        if (!bar || row.dataset.state !== 'sending' || !(bar.value > 0) || bar.value >= bar.max) return;
        clearInterval(timer);
        const text = document.querySelector('[data-testid=text]');
        text.value = 'typed while it went';
        document.querySelector('[data-testid=send]').click();
        window.cancelled = { value: bar.value, max: bar.max, box: text.value };
        row.querySelector('[data-action=cancel]').click();
        window.cancelled.rowGone = !document.querySelector('[data-testid=upload]');
    }, 1);";

/// Cancel half-way through an 8 MiB upload posts nothing: nobody in the room gets a
/// message with a file, and the server keeps none of its bytes. The page is back
/// online by itself, shows every message once, and what was typed during the upload
/// is sent, once.
#[test]
fn page_cancels_an_upload_half_way_and_nothing_is_posted() {
    let Some(driver) = driver_or_skip("page_cancels_an_upload_half_way_and_nothing_is_posted")
    else {
        return;
    };
    let data = TempDir::new("browser_cancel");
    let server = start_with(|b| b.data_dir(data.path()));
    let addr = server.local_addr();
    let (mut carol, _) = chat(addr, "big", Some("carol"));
    let alice = Page::join(&driver, &format!("http://{addr}/#big"), "alice", DESKTOP);
    alice.send("before the file");
    alice.wait_entry("message", "before the file");

    let dir = TempDir::new("browser_cancel_file");
    let path = dir.path().join("backup.bin");
    let mut state = 0x2545_f491_u32;
    let bytes: Vec<u8> = (0..8 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    std::fs::write(&path, &bytes).expect("write the file");
    alice.run(CANCEL_HALF_WAY);
    alice
        .session
        .type_into("[data-testid=file-input]", path.to_str().expect("a path"));
    let cancelled = alice.wait("the cancel", "window.cancelled", json!([]));
    assert_eq!(
        json!([cancelled["max"], cancelled["box"], cancelled["rowGone"]]),
        json!([8 << 20, "", true]),
        "cancelled mid-way, the text sent from the box: {cancelled}"
    );
    // Back on a new connection, and the message typed meanwhile arrives.
    alice.wait_entry("message", "typed while it went");
    alice.wait_online();
    alice.send("after the cancel");
    alice.wait_entry("message", "after the cancel");
    let mut seen = events_until_message(&mut carol, "after the cancel");
    seen.retain(|e| e["type"] == "message");
    let texts: Vec<&Value> = seen.iter().map(|m| &m["text"]).collect();
    assert_eq!(
        texts,
        ["before the file", "typed while it went"],
        "nothing else posted: {seen:?}"
    );
    assert!(seen.iter().all(|m| m.get("file").is_none()), "{seen:?}");
    // The server kept none of the bytes.
    for folder in ["tmp", "ids", "blobs"] {
        eventually(|| {
            entries(&data.path().join("files").join(folder))
                .is_empty()
                .then_some(())
        });
    }
    // Every message once, nothing on the page that the room does not have.
    assert_eq!(
        alice.messages(),
        [
            ("alice".to_owned(), "before the file".to_owned()),
            ("alice".to_owned(), "typed while it went".to_owned()),
            ("alice".to_owned(), "after the cancel".to_owned()),
        ]
    );
    assert!(
        !alice.entries().iter().any(|e| e.kind == "error"),
        "{:?}",
        alice.entries()
    );
}

/// An upload's binary frames, however many, take one row of the Wire panel (with
/// their count), showing the first frame's opcode 2 and its bytes in hex: the panel
/// stays readable, and what came before the upload stays in it.
#[test]
fn wire_panel_shows_an_uploads_binary_frames_in_one_row() {
    let Some(driver) = driver_or_skip("wire_panel_shows_an_uploads_binary_frames_in_one_row")
    else {
        return;
    };
    let server = start();
    let addr = server.local_addr();
    let page = Page::join(&driver, &format!("http://{addr}/#lab"), "Ada", DESKTOP);
    page.session.click("[data-testid=wire-toggle]");
    page.send("before the file");
    page.wait(
        "the message on the wire",
        "[...document.querySelectorAll('[data-testid=wire-frame]')].some(li =>
            li.dataset.dir === 'out' && li.textContent.includes('before the file'))",
        json!([]),
    );
    let dir = TempDir::new("browser_wire_file");
    let path = dir.path().join("one mebibyte.bin");
    let bytes: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&path, &bytes).expect("write the file");
    let rows_before = page.run("return document.querySelectorAll('#wire-log > li').length;");
    page.session
        .type_into("[data-testid=file-input]", path.to_str().expect("a path"));
    page.wait(
        "the file in the room",
        "document.querySelector('#log li[data-mine=true] [data-file-kind=file]')",
        json!([]),
    );
    let run = page.wait(
        "the upload's frames on the wire, counted",
        "(() => { const rows = [...document.querySelectorAll('[data-testid=wire-frame]')]
                      .filter(li => li.dataset.dir === 'in' && li.dataset.opcode === 'BINARY');
                  return rows.length === 1 && document.querySelector('#wire-log > li:last-child')
                      && { frames: Number(rows[0].dataset.frames || 1), text: rows[0].textContent }; })()",
        json!([]),
    );
    let text = run["text"].as_str().unwrap_or_default();
    let first = bytes[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("BINARY (0x2)") && text.contains(&first) && text.contains("MASK=1"),
        "opcode 2, masked, its first bytes in hex: {run}"
    );
    let frames = run["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 4 && text.contains(&format!("{} more", frames - 1)),
        "1 MiB in 256 KiB messages is at least 4 frames, counted in the row: {run}"
    );
    let rows_after = page.run("return document.querySelectorAll('#wire-log > li').length;");
    assert!(
        rows_after.as_u64() < rows_before.as_u64().map(|n| n + 10),
        "a few rows for the whole upload ({rows_before} before, {rows_after} after)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "wire: a 1 MiB upload from Chromium made {frames} frames"
    );
}

/// A connection that drops in the middle of a file: the page sends the file again,
/// whole, once it is back, and the room gets it once, byte for byte.
#[test]
fn page_sends_a_file_again_after_a_drop_mid_way_and_the_room_gets_it_once() {
    let test = "page_sends_a_file_again_after_a_drop_mid_way_and_the_room_gets_it_once";
    let Some(driver) = driver_or_skip(test) else {
        return;
    };
    let data = TempDir::new("browser_drop_mid_file");
    let server = start_with(|b| b.data_dir(data.path()));
    let addr = server.local_addr();
    let (mut carol, _) = chat(addr, "big", Some("carol"));
    let alice = Page::blank(&driver, "alice", DESKTOP);
    alice.before_scripts(FAIL_STORE);
    alice.join_at(&format!("http://{addr}/#big"));
    let dir = TempDir::new("browser_drop_mid_file_src");
    let path = dir.path().join("video.bin");
    let bytes: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 23) as u8)
        .collect();
    std::fs::write(&path, &bytes).expect("write the file");
    // The network drops once the bar has moved.
    alice.run(
        "window.dropped = null;
         const timer = setInterval(() => {
             const row = document.querySelector('[data-testid=upload]');
             const bar = row && row.querySelector('progress');
             if (!bar || row.dataset.state !== 'sending' || !(bar.value > 0) || bar.value >= bar.max) return;
             clearInterval(timer);
             window.dropped = bar.value;
             window.__sockets.filter(s => s.url.includes('/ws/chat/')).at(-1).close();
         }, 1);",
    );
    alice
        .session
        .type_into("[data-testid=file-input]", path.to_str().expect("a path"));
    alice.wait("the drop", "window.dropped", json!([]));
    alice.wait(
        "the file in the room, and no upload left",
        "document.querySelector('#log li[data-mine=true] [data-file-kind=file]')
         && document.querySelector('[data-testid=uploads]').hidden",
        json!([]),
    );
    alice.send("after the file");
    let mut seen = events_until_message(&mut carol, "after the file");
    seen.retain(|e| e["type"] == "message");
    assert_eq!(seen.len(), 1, "the file, once: {seen:?}");
    assert_eq!(seen[0]["file"]["size"], bytes.len(), "{seen:?}");
    let url = seen[0]["file"]["url"].as_str().expect("a url");
    assert!(
        fetched(&alice, url) == bytes,
        "the whole file, byte for byte"
    );
    assert_eq!(
        alice
            .run("return document.querySelectorAll('#log li[data-kind=message] [data-part=file]').length;"),
        1,
        "shown once"
    );
}

/// A picture whose bytes the server no longer keeps says so in words, with neither a
/// picture nor a link; the pictures still kept show inline.
#[test]
fn page_says_a_file_expired_in_words() {
    let Some(driver) = driver_or_skip("page_says_a_file_expired_in_words") else {
        return;
    };
    let painter = Page::blank(&driver, "painter", DESKTOP);
    let pictures: Vec<Vec<u8>> = (0..3).map(|i| draw_png(&painter, 40 + i, 30)).collect();
    let total: usize = pictures.iter().map(Vec::len).sum();
    // One byte short of all three: the oldest goes when the third comes.
    let server = start_with(|b| b.max_files_bytes(total as u64 - 1));
    let addr = server.local_addr();
    let (mut ann, _) = chat(addr, "album", Some("ann"));
    for (i, bytes) in pictures.iter().enumerate() {
        send_json(
            &mut ann,
            json!({"type": "file", "name": format!("{i}.png"), "mime": "image/png", "size": bytes.len()}),
        );
        ann.send(tungstenite::Message::binary(bytes.clone()))
            .expect("send");
        next_of_type(&mut ann, "message");
    }
    let page = Page::join(&driver, &format!("http://{addr}/#album"), "bob", DESKTOP);
    let shown = page.wait(
        "three files, the first expired",
        "(() => { const files = [...document.querySelectorAll('#log [data-part=file]')];
                  return files.length === 3 && files.map(f => [f.dataset.fileKind,
                      f.textContent.trim(), !!f.querySelector('a, img')]); })()",
        json!([]),
    );
    assert_eq!(
        json!([shown[0][0], shown[0][2], shown[1], shown[2]]),
        json!([
            "expired",
            false,
            ["picture", "", true],
            ["picture", "", true]
        ]),
        "{shown}"
    );
    let words = shown[0][1].as_str().unwrap_or_default();
    assert!(
        words.starts_with("0.png") && words.ends_with("expired: no longer on the server"),
        "{shown}"
    );
}

/// A page signed in with the admin password offers Delete on everyone's messages: the
/// teacher deletes a student's message, the student's client is told who did it, and
/// the page shows it deleted. A member's page offers Delete on its own only.
#[test]
fn an_admin_page_deletes_a_members_message() {
    let Some(driver) = driver_or_skip("an_admin_page_deletes_a_members_message") else {
        return;
    };
    const ADMIN: &str = "staple battery";
    let server = start_with(|b| b.password(PASSWORD).admin_password(ADMIN));
    let addr = server.local_addr();
    let teacher = Page::blank(&driver, "teacher", DESKTOP);
    teacher.session.goto(&format!("http://{addr}/#class"));
    teacher.wait_password_prompt();
    teacher
        .session
        .type_into("[data-testid=join-name]", "teacher");
    teacher
        .session
        .type_into("[data-testid=join-password]", &format!("{ADMIN}{ENTER}"));
    teacher.wait_online();
    assert_eq!(teacher.run("return document.body.dataset.role;"), "admin");
    let (mut student, _) = bearer_chat(addr, "class", "student");
    say(&mut student, "something rude");
    let id = next_of_type(&mut student, "message")["id"].clone();
    teacher.wait_entry("message", "something rude");
    let row = format!("#log > li[data-kind=message][data-id='{id}']");
    teacher.session.click(&format!("{row} [data-part=text]"));
    teacher
        .session
        .click(&format!("{row} button[data-action=delete]"));
    let told = next_of_type(&mut student, "deleted");
    assert_eq!((&told["id"], &told["by"]), (&id, &json!("teacher")));
    teacher.wait(
        "the message shown as deleted",
        &format!(
            "document.querySelector(\"{row}\")?.querySelector('[data-part=text]').textContent === 'message deleted'"
        ),
        json!([]),
    );
}

/// With only an admin password set, members come in freely and the page offers to sign
/// in as an admin: a wrong password is refused in words; the right one brings the
/// same room back on a new connection as an admin, and the form goes.
#[test]
fn a_page_signs_in_as_admin_where_members_need_no_password() {
    let Some(driver) = driver_or_skip("a_page_signs_in_as_admin_where_members_need_no_password")
    else {
        return;
    };
    const ADMIN: &str = "staple battery";
    let server = start_with(|b| b.admin_password(ADMIN));
    let addr = server.local_addr();
    let teacher = Page::join(
        &driver,
        &format!("http://{addr}/#class"),
        "teacher",
        DESKTOP,
    );
    assert_eq!(teacher.run("return document.body.dataset.role;"), "member");
    teacher.wait(
        "the admin sign-in offered",
        "!document.querySelector('[data-testid=admin-form]').hidden",
        json!([]),
    );
    teacher.screenshot("admin-signin.png");
    teacher
        .session
        .type_into("[data-testid=admin-password]", &format!("not it{ENTER}"));
    teacher.wait(
        "the wrong password refused",
        "document.querySelector('[data-testid=admin-error]').textContent === 'Wrong password.'",
        json!([]),
    );
    teacher
        .session
        .type_into("[data-testid=admin-password]", &format!("{ADMIN}{ENTER}"));
    teacher.wait(
        "the page an admin's",
        "document.body.dataset.role === 'admin' && document.querySelector('[data-testid=admin-form]').hidden",
        json!([]),
    );
    let (mut student, _) = chat(addr, "class", Some("student"));
    say(&mut student, "hello");
    teacher.wait_entry("message", "hello");
    let offered = teacher.run(
        "return !!document.querySelector('#log > li[data-kind=message] button[data-action=delete]');",
    );
    assert_eq!(offered, true, "an admin may delete the student's message");
}

/// An admin's page moderates from its side panel: it sets the room's topic and locks
/// it, mutes a member and kicks one from the People list; the kicked member's page
/// says why it was closed and does not come back.
#[test]
fn an_admin_page_kicks_and_mutes_and_sets_the_room() {
    let Some(driver) = driver_or_skip("an_admin_page_kicks_and_mutes_and_sets_the_room") else {
        return;
    };
    const ADMIN: &str = "staple battery";
    let server = start_with(|b| b.admin_password(ADMIN));
    let addr = server.local_addr();
    let url = format!("http://{addr}/#class");
    let teacher = Page::join(&driver, &url, "teacher", DESKTOP);
    teacher
        .session
        .type_into("[data-testid=admin-password]", &format!("{ADMIN}{ENTER}"));
    teacher.wait(
        "the page an admin's",
        "document.body.dataset.role === 'admin'",
        json!([]),
    );
    let student = Page::join(&driver, &url, "student", PHONE);
    let (mut bob, _) = chat(addr, "class", Some("bob"));
    teacher.wait(
        "the people's moderation buttons",
        "document.querySelectorAll('#members button[data-mod]').length === 4",
        json!([]),
    );
    assert_eq!(
        student.run("return document.querySelectorAll('#members button[data-mod]').length;"),
        0,
        "a member's page has none"
    );

    teacher.session.type_into(
        "[data-testid=topic-input]",
        &format!("Week 3: sockets{ENTER}"),
    );
    assert_eq!(next_of_type(&mut bob, "room")["topic"], "Week 3: sockets");
    teacher.session.click("[data-testid=lock-toggle]");
    assert_eq!(next_of_type(&mut bob, "room")["locked"], true);
    teacher.wait(
        "the lock shown as on",
        "document.querySelector('[data-testid=lock-toggle]').getAttribute('aria-pressed') === 'true'",
        json!([]),
    );

    teacher
        .session
        .click("#members button[data-mod=mute][data-name=bob]");
    assert!(next_of_type(&mut bob, "muted")["until"].as_u64().is_some());

    teacher.run("window.confirm = () => true; return true;");
    teacher
        .session
        .click("#members button[data-mod=kick][data-name=student]");
    let kicked = next_of_type(&mut bob, "kicked");
    assert_eq!(
        (&kicked["name"], &kicked["by"]),
        (&json!("student"), &json!("teacher"))
    );
    student.wait(
        "the kicked page to say why",
        "document.body.innerText.includes('You were removed from #class by teacher')",
        json!([]),
    );
    teacher.screenshot("admin-moderates.png");
}

/// An admin's page meets WCAG 2.2 AA too: its Mute and Kick beside each person, the
/// room's settings and the admin sign-in, at both sizes and in both schemes (the
/// phone's in its drawers).
#[test]
fn an_admin_page_meets_wcag_2_2_aa() {
    let test = "an_admin_page_meets_wcag_2_2_aa";
    let Some(driver) = driver_or_skip(test) else {
        return;
    };
    let Some(axe) = axe_or_skip(test) else {
        return;
    };
    const ADMIN: &str = "staple battery";
    let mut found = Vec::new();
    let server = start_with(|b| b.admin_password(ADMIN));
    let addr = server.local_addr();
    let (mut bob, _) = chat(addr, "class", Some("bob"));
    say(&mut bob, "hello, teacher");
    for (size, who) in [(DESKTOP, "desk"), (PHONE, "phone")] {
        let page = Page::join(&driver, &format!("http://{addr}/#class"), who, size);
        if who == "desk" {
            audit(&page, &axe, "admin sign-in offered", &mut found);
        }
        // Signed in through the side panel's form (on a phone it is in the drawer).
        page.session.execute(
            "const [password] = arguments;
             document.querySelector('[data-testid=admin-password]').value = password;
             document.querySelector('[data-testid=admin-form]').requestSubmit();",
            json!([ADMIN]),
        );
        page.wait(
            "the page an admin's, with its menus",
            "document.body.dataset.role === 'admin'
             && document.querySelector('#members button[data-mod=kick]')
             && !document.querySelector('[data-testid=mod-panel]').hidden",
            json!([]),
        );
        if who == "desk" {
            audit(&page, &axe, "admin chat", &mut found);
        } else {
            page.session.click("[data-testid=people-toggle]");
            page.wait(
                "the people drawer, focused",
                "document.querySelector('[data-testid=side]').contains(document.activeElement)",
                json!([]),
            );
            audit(&page, &axe, "admin people drawer", &mut found);
            page.session.press(ESCAPE);
            page.session.click("[data-testid=rooms-toggle]");
            page.wait(
                "the rooms drawer, focused",
                "document.activeElement === document.querySelector('[data-testid=room-input]')",
                json!([]),
            );
            audit(&page, &axe, "admin rooms drawer", &mut found);
            page.session.press(ESCAPE);
        }
    }
    assert!(
        found.is_empty(),
        "WCAG 2.2 AA violations:\n{}",
        found.join("\n")
    );
}
