//! A small synchronous WebDriver client: just what the browser tests need.
//!
//! It speaks the W3C WebDriver protocol (JSON over HTTP/1.1) to a driver it starts
//! on a free loopback port, one short `Connection: close` request per command, over
//! a plain `std::net::TcpStream`. That keeps the tests free of an async runtime and
//! of extra dependencies, in the same blocking style as the server itself.
//!
//! Two engines: Chromium, headless, through one `chromedriver` for every window;
//! and WebKit (Safari's engine, as WebKitGTK's MiniBrowser), through Debian's
//! `WebKitWebDriver`, which drives one window at a time, so each [`Session`] gets its
//! own, all on one Xvfb display the [`Driver`] starts (WebKitGTK has no headless
//! mode). What only Chromium has (its DevTools protocol, [`Session::cdp`]) says so
//! when asked of WebKit.
//!
//! Every wait is bounded: a command has a socket timeout, and [`Session::wait`]
//! polls the page against a deadline.

use serde_json::{Value, json};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Debian's `chromium` package.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a condition on the page may take to come true.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long one WebDriver command may take (starting a browser is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The key WebDriver uses for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's code for the Enter key, for [`Session::type_into`].
pub const ENTER: &str = "\u{E007}";
/// The Backspace key, for [`Session::type_into`].
pub const BACKSPACE: &str = "\u{E003}";
/// WebDriver's code for the Escape key.
pub const ESCAPE: &str = "\u{E00C}";

/// Debian's `webkit2gtk-driver` package.
pub const WEBKIT_DRIVER: &str = "/usr/bin/WebKitWebDriver";
/// Debian's `xvfb` package: an X server without a screen, for WebKitGTK.
pub const XVFB: &str = "/usr/bin/Xvfb";

/// The browser engine a [`Driver`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Headless Chromium through `chromedriver`.
    Chromium,
    /// WebKitGTK's MiniBrowser through `WebKitWebDriver`, on Xvfb.
    WebKit,
}

/// WebKitGTK's MiniBrowser, which Debian keeps under the architecture's lib dir.
fn minibrowser() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?;
    lib.flatten()
        .flat_map(|dir| {
            ["webkit2gtk-4.1", "webkit2gtk-4.0"].map(|v| dir.path().join(v).join("MiniBrowser"))
        })
        .find(|path| path.is_file())
}

/// A free loopback port, for a driver to listen on. Another process could take it
/// before the driver does; that fails the driver's start, loudly.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until the driver on `port` says it is ready for a new session.
fn wait_ready(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((200, status)) = request(port, "GET", "/status", None)
            && status["value"]["ready"] == true
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} on port {port} not ready in {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running driver (`chromedriver`, or the Xvfb display WebKit's drivers use),
/// killed when dropped.
pub struct Driver {
    engine: Engine,
    child: Child,
    /// chromedriver's port; unused for WebKit, whose sessions each start a driver.
    port: u16,
    /// The X display Xvfb serves, for WebKit.
    display: String,
}

impl Driver {
    /// Why `engine` cannot run here, if it cannot.
    pub fn missing_engine(engine: Engine) -> Option<String> {
        match engine {
            Engine::Chromium => Driver::missing(),
            Engine::WebKit => {
                let why = "(Debian: apt-get install webkit2gtk-driver xvfb)";
                [WEBKIT_DRIVER, XVFB]
                    .into_iter()
                    .find(|path| !Path::new(path).exists())
                    .map(|path| format!("{path} not found {why}"))
                    .or_else(|| {
                        minibrowser()
                            .is_none()
                            .then(|| format!("WebKitGTK's MiniBrowser not found {why}"))
                    })
            }
        }
    }

    /// Starts what `engine` needs: chromedriver, or an Xvfb display for WebKit.
    pub fn start_engine(engine: Engine) -> Driver {
        match engine {
            Engine::Chromium => Driver::start(),
            Engine::WebKit => Driver::start_xvfb(),
        }
    }

    /// Starts Xvfb on a display number it picks itself (`-displayfd`: it writes the
    /// number once it accepts connections).
    fn start_xvfb() -> Driver {
        let mut child = Command::new(XVFB)
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1600x1200x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {XVFB}: {e}"));
        let mut out = child.stdout.take().expect("Xvfb's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = out.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                said.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&said).trim().to_owned());
        });
        let number = rx.recv_timeout(WAIT).ok().filter(|n| !n.is_empty());
        let Some(number) = number else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Xvfb did not say its display number in {WAIT:?}");
        };
        Driver {
            engine: Engine::WebKit,
            child,
            port: 0,
            display: format!(":{number}"),
        }
    }

    /// Why the browser tests cannot run here, if they cannot: Chromium or
    /// chromedriver is not installed.
    pub fn missing() -> Option<String> {
        [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .find(|path| !Path::new(path).exists())
            .map(|path| {
                format!("{path} not found (Debian: apt-get install chromium chromium-driver)")
            })
    }

    /// Starts `chromedriver` on a free loopback port and waits until it is ready.
    pub fn start() -> Driver {
        // Ask the OS for a free port, then hand it to chromedriver. Another process
        // could take it in between; that would fail the start below, loudly.
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let driver = Driver {
            engine: Engine::Chromium,
            child,
            port,
            display: String::new(),
        };
        wait_ready(port, "chromedriver");
        driver
    }

    /// Opens a fresh browser window with its own empty profile, with a viewport of
    /// `width` × `height` CSS pixels (WebKit: a window that size, as near as GTK
    /// allows; MiniBrowser windows are never narrower than about 450 px).
    pub fn session(&self, width: u32, height: u32) -> Session {
        match self.engine {
            Engine::Chromium => self.chromium_session(width, height),
            Engine::WebKit => self.webkit_session(width, height, false),
        }
    }

    /// A WebKit window whose system colour scheme is dark (MiniBrowser's
    /// `--dark-mode`), for what Chromium emulates through DevTools.
    pub fn dark_webkit_session(&self, width: u32, height: u32) -> Session {
        assert_eq!(
            self.engine,
            Engine::WebKit,
            "Chromium emulates the scheme instead"
        );
        self.webkit_session(width, height, true)
    }

    /// A MiniBrowser window with a WebKitWebDriver of its own (it drives one at a
    /// time). Automation sessions keep their cookies and storage to themselves.
    fn webkit_session(&self, width: u32, height: u32, dark: bool) -> Session {
        let port = free_port();
        let child = Command::new(WEBKIT_DRIVER)
            .arg(format!("--port={port}"))
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {WEBKIT_DRIVER}: {e}"));
        // The guard from here on: a panic below kills the driver.
        let mut session = Session {
            port,
            id: String::new(),
            profile: None,
            engine: Engine::WebKit,
            driver: Some(child),
        };
        wait_ready(port, "WebKitWebDriver");
        let binary = minibrowser().expect("MiniBrowser (checked by missing_engine)");
        let mut args = vec!["--automation"];
        if dark {
            args.push("--dark-mode");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "acceptInsecureCerts": true,
            "unhandledPromptBehavior": "ignore",
            "webkitgtk:browserOptions": {"binary": binary, "args": args},
        }}});
        let value = command(port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("cannot start MiniBrowser: {e}"));
        session.id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_owned();
        session.resize(width, height);
        session
    }

    /// A fresh headless Chromium with its own empty profile.
    fn chromium_session(&self, width: u32, height: u32) -> Session {
        static PROFILES: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "switchboard-browser-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(), // tests often run as root in a container
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The TLS test serves the built-in development certificate.
            "acceptInsecureCerts": true,
            // Leave an alert open so a test can see that one was raised.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = command(self.port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_owned();
        let session = Session {
            port: self.port,
            id,
            profile: Some(profile),
            engine: Engine::Chromium,
            driver: None,
        };
        // `--window-size` sizes the window, not the page: set the viewport itself.
        // Narrow viewports are emulated as a phone (mobile viewport rules).
        session.resize(width, height);
        session
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A condition on the page did not come true in time.
#[derive(Debug)]
pub struct TimedOut;

/// One browser window, closed (and its profile deleted, and its own driver
/// stopped) when dropped.
pub struct Session {
    port: u16,
    id: String,
    profile: Option<PathBuf>,
    engine: Engine,
    /// WebKit's driver for this window alone.
    driver: Option<Child>,
}

impl Session {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        command(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver (Chromium only).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        assert_eq!(
            self.engine,
            Engine::Chromium,
            "{cmd}: the DevTools protocol is Chromium's; this test cannot run in WebKit"
        );
        self.must(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// Sets the viewport to `width` × `height` CSS pixels, emulated as a phone
    /// (touch-sized layout rules) below 600 px, as [`Driver::session`] does.
    pub fn resize(&self, width: u32, height: u32) {
        if self.engine == Engine::WebKit {
            // The window, not the viewport: WebDriver has no other way (§11.8.2).
            self.must(
                "POST",
                "/window/rect",
                Some(json!({"width": width, "height": height})),
            );
            return;
        }
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
    }

    /// Makes the page's pointer a finger (`(pointer: coarse)`, touch events), as on
    /// a phone, or a mouse again.
    pub fn touch(&self, on: bool) {
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": on, "maxTouchPoints": if on { 5 } else { 1 }}),
        );
    }

    /// Loads `url` and waits for the page to finish loading.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it
    /// returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script`, which must call its last argument with the result.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `expression` (a JavaScript expression that may use `arguments`, which
    /// holds `args`) until it is truthy and returns its value, or gives up after
    /// `limit` ([`WAIT`], unless the page acts on a timer of its own).
    pub fn wait(&self, limit: Duration, expression: &str, args: &Value) -> Result<Value, TimedOut> {
        let script = format!("return ({expression});");
        let deadline = Instant::now() + limit;
        loop {
            let value = self.execute(&script, args.clone());
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(TimedOut);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.must(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element reference for {css}: {found}"))
            .to_owned()
    }

    /// Types `text` into the element `css` with real key events (see [`ENTER`]).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.must(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element `css` like a user would.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.must("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Moves the mouse to the middle of the element `css`, as a person pointing at
    /// it (`:hover` then applies).
    pub fn hover(&self, css: &str) {
        let origin = self.origin(css);
        self.pointer(
            "mouse",
            json!([{"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0}]),
        );
    }

    /// Presses the mouse on the middle of the element `css`, moves it by `dy` CSS
    /// pixels (down when positive) in a few steps, and lets go: a drag.
    pub fn drag_vertically(&self, css: &str, dy: i32) {
        let origin = self.origin(css);
        self.pointer(
            "mouse",
            json!([
                {"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerMove", "duration": 100, "origin": "pointer", "x": 0, "y": dy / 2},
                {"type": "pointerMove", "duration": 100, "origin": "pointer", "x": 0, "y": dy - dy / 2},
                {"type": "pointerUp", "button": 0},
            ]),
        );
    }

    /// Clicks the middle of the element `css` with the mouse, through the actions
    /// API (where [`Session::click`]'s checks refuse an element over a scrolling
    /// region, a person can still click it).
    pub fn click_at(&self, css: &str) {
        let origin = self.origin(css);
        self.pointer(
            "mouse",
            json!([
                {"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ]),
        );
    }

    /// Presses and releases `key` (a character, or a code like [`ESCAPE`]) on
    /// whatever has the focus, as a keyboard would.
    pub fn press(&self, key: &str) {
        let source = json!({"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
        ]});
        self.must("POST", "/actions", Some(json!({ "actions": [source] })));
    }

    /// The element `css` as a WebDriver actions origin.
    fn origin(&self, css: &str) -> Value {
        let mut origin = serde_json::Map::new();
        origin.insert(ELEMENT_KEY.to_owned(), Value::String(self.element(css)));
        Value::Object(origin)
    }

    /// Performs one input source's `actions` (W3C WebDriver §17.5), then releases
    /// whatever is still pressed.
    fn pointer(&self, id: &str, actions: Value) {
        let source = json!({
            "type": "pointer", "id": id, "parameters": {"pointerType": "mouse"}, "actions": actions,
        });
        self.must("POST", "/actions", Some(json!({ "actions": [source] })));
        self.must("DELETE", "/actions", None);
    }

    /// The text of an open `alert`/`confirm`/`prompt`, if there is one.
    pub fn alert_text(&self) -> Option<String> {
        match self.cmd("GET", "/alert/text", None) {
            Ok(text) => Some(text.as_str().unwrap_or_default().to_owned()),
            Err(e) if e.contains("no such alert") => None,
            Err(e) => panic!("WebDriver GET /alert/text: {e}"),
        }
    }

    /// A PNG of the viewport, base64-encoded as WebDriver sends it.
    pub fn screenshot_base64(&self) -> String {
        let encoded = self.must("GET", "/screenshot", None);
        encoded
            .as_str()
            .expect("screenshot is a base64 string")
            .to_owned()
    }

    /// A PNG of just the element `css` (scrolled into view), base64-encoded.
    pub fn element_screenshot_base64(&self, css: &str) -> String {
        let id = self.element(css);
        let encoded = self.must("GET", &format!("/element/{id}/screenshot"), None);
        encoded
            .as_str()
            .expect("screenshot is a base64 string")
            .to_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = self.cmd("DELETE", "", None);
        }
        if let Some(profile) = &self.profile {
            let _ = std::fs::remove_dir_all(profile);
        }
        if let Some(driver) = &mut self.driver {
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

/// Sends one WebDriver command and returns its `value`, or the WebDriver error.
fn command(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let (status, reply) =
        request(port, method, path, body).map_err(|e| format!("chromedriver: {e}"))?;
    if status == 200 {
        Ok(reply["value"].clone())
    } else {
        let value = &reply["value"];
        Err(format!(
            "{status} {}: {}",
            value["error"].as_str().unwrap_or("?"),
            value["message"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
        ))
    }
}

/// One HTTP/1.1 exchange with chromedriver: the status and the JSON body.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // chromedriver keeps the connection open despite `Connection: close`, so the
    // body ends where its Content-Length (or the last chunk) says, not at EOF.
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut read_more = |raw: &mut Vec<u8>| -> io::Result<()> {
        match stream.read(&mut buf)? {
            0 => Err(bad("connection closed early")),
            n => {
                raw.extend_from_slice(&buf[..n]);
                Ok(())
            }
        }
    };
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        read_more(&mut raw)?;
    };
    let reply_head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = reply_head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let header = |name: &str| {
        reply_head.lines().find_map(|line| {
            Some(
                line.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .to_owned(),
            )
        })
    };
    let payload = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&raw[split + 4..]) {
                break body;
            }
            read_more(&mut raw)?;
        }
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no Content-Length"))?;
        while raw.len() < split + 4 + len {
            read_more(&mut raw)?;
        }
        raw[split + 4..split + 4 + len].to_vec()
    };
    let json = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload).map_err(|e| bad(&e.to_string()))?
    };
    Ok((status, json))
}

/// Undoes `Transfer-Encoding: chunked` (RFC 9112 §7.1).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Decodes standard base64 (RFC 4648 §4), as WebDriver sends screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(sextet(c)) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_round_trips_known_values() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
        b"abcde"
    );
}
