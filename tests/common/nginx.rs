//! A real nginx in front of switchboard nodes, running the repo's own
//! `deploy/nginx.conf`: what a user copies is what the tests exercise.
//!
//! [`Nginx::start`] takes the addresses of any number of nodes (a cluster test passes
//! two), puts the site file into a minimal main configuration of its own (pid, logs
//! and temp files in a fresh temp directory), replaces the site's ports, certificate
//! paths and upstream servers, and runs `nginx -g 'daemon off;'` on free loopback
//! ports until it is dropped. Without nginx installed it returns `None` after saying
//! the test was skipped, unless `SWITCHBOARD_REQUIRE_TOOLS` is set (`.ci/run` sets
//! it), and then the test fails.

use super::{TempDir, certs, free_port, tool_or_skip, wait_exit};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repo's nginx site, as a user copies it.
pub fn site_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf")
}

/// What a test may change in the site beyond its ports, certificates and upstreams.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replaces `proxy_read_timeout` (300 s in the file), whole seconds.
    pub read_timeout: Option<Duration>,
}

/// The ports nginx listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

/// `site` with the values that differ between a machine and a test replaced. Each
/// text replaced must be in the file exactly as the file's header comment lists it,
/// so that the tests cannot silently drift from what users copy.
pub fn substitute(site: &str, upstreams: &[SocketAddr], ports: Ports, options: &Options) -> String {
    assert!(
        !upstreams.is_empty(),
        "nginx needs at least one upstream node"
    );
    let servers: Vec<String> = upstreams.iter().map(|a| format!("server {a};")).collect();
    let certs = certs();
    let mut replacements = vec![
        (
            "listen 80;".to_owned(),
            format!("listen 127.0.0.1:{};", ports.http),
        ),
        // Tests talk to loopback only, over IPv4.
        ("listen [::]:80;".to_owned(), String::new()),
        (
            "listen 443 ssl;".to_owned(),
            format!("listen 127.0.0.1:{} ssl;", ports.https),
        ),
        ("listen [::]:443 ssl;".to_owned(), String::new()),
        ("server 127.0.0.1:3000;".to_owned(), servers.join("\n    ")),
        (
            "/etc/letsencrypt/live/chat.example.com/fullchain.pem".to_owned(),
            certs.join("localhost.pem").display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/chat.example.com/privkey.pem".to_owned(),
            certs.join("localhost-key.pem").display().to_string(),
        ),
    ];
    if let Some(timeout) = options.read_timeout {
        replacements.push((
            "proxy_read_timeout 300s;".to_owned(),
            format!("proxy_read_timeout {}s;", timeout.as_secs().max(1)),
        ));
    }
    let mut out = site.to_owned();
    for (from, to) in replacements {
        // Only in the configuration, never in its comments.
        let found = out
            .lines()
            .any(|line| !line.trim_start().starts_with('#') && line.contains(&from));
        assert!(found, "deploy/nginx.conf no longer contains {from:?}");
        out = out
            .lines()
            .map(|line| {
                if line.trim_start().starts_with('#') {
                    line.to_owned()
                } else {
                    line.replace(&from, &to)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    out
}

/// A running nginx; stopped (and its directory removed) when dropped.
pub struct Nginx {
    child: Child,
    ports: Ports,
    dir: TempDir,
}

impl Nginx {
    /// nginx in front of `upstreams`, with the site as it is; `None` if nginx is not
    /// installed (and not required).
    pub fn start(test: &str, upstreams: &[SocketAddr]) -> Option<Nginx> {
        Self::start_with(test, upstreams, &Options::default())
    }

    /// nginx in front of `upstreams`, with `options` applied to the site.
    pub fn start_with(test: &str, upstreams: &[SocketAddr], options: &Options) -> Option<Nginx> {
        let binary = tool_or_skip(test, "nginx", "SWITCHBOARD_REQUIRE_TOOLS")?;
        let site = std::fs::read_to_string(site_file()).expect("deploy/nginx.conf");
        // A free port can be taken by someone else before nginx binds it: try again
        // with others then.
        let mut last_error = String::new();
        for _ in 0..5 {
            let ports = Ports {
                http: free_port(),
                https: free_port(),
            };
            let dir = TempDir::new("nginx");
            let conf = substitute(&site, upstreams, ports, options);
            std::fs::write(dir.path().join("switchboard.conf"), conf).unwrap();
            std::fs::write(dir.path().join("nginx.conf"), main_config(dir.path())).unwrap();
            match run(&binary, dir, ports) {
                Ok(nginx) => return Some(nginx),
                Err(e) => last_error = e,
            }
        }
        panic!("{test}: nginx did not start: {last_error}");
    }

    /// Where nginx serves `http://` and `ws://`.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.http))
    }

    /// Where nginx serves `https://` and `wss://` (certificate: `certs/localhost.pem`).
    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.https))
    }

    /// nginx's error log so far, for a failing test to show.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops its workers, then exits.
        // A SIGKILL would leave the workers running, holding the ports.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if wait_exit(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The main configuration around the site: everything nginx writes goes to `dir`.
fn main_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         error_log {d}/error.log info;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/switchboard.conf;\n\
         }}\n"
    )
}

/// Starts nginx and waits until both ports accept.
fn run(binary: &Path, dir: TempDir, ports: Ports) -> Result<Nginx, String> {
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        // Before the configuration is read, nginx logs to its built-in path, which a
        // test may not write to.
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let mut nginx = Nginx { child, ports, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            return Err(format!("exited with {status}: {}", nginx.error_log()));
        }
        let up = |port| TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok();
        if up(ports.http) && up(ports.https) {
            return Ok(nginx);
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening after 10 s: {}", nginx.error_log()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
