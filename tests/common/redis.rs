//! A real `redis-server` for the cluster tests: on a free loopback port,
//! its files in a temp dir, stopped (and restarted, with or without its data) by the
//! test, killed when dropped.

use super::{TempDir, free_port, tool_or_skip};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    program: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// Set in CI, where `.ci/run` installs redis-server: missing, the test fails.
const REQUIRE: &str = "SWITCHBOARD_REQUIRE_TOOLS";

impl Redis {
    /// A Redis with an append-only file synced on every write, so that a kill keeps
    /// everything it acknowledged; `None` (the test skips) when it is not installed.
    pub fn start(test: &str) -> Option<Redis> {
        let program = tool_or_skip(test, "redis-server", REQUIRE)?;
        let port = free_port();
        let mut redis = Redis {
            program,
            port,
            dir: TempDir::new("redis"),
            child: None,
        };
        redis.run();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL): what it acknowledged is in its append-only file.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it where it stands (SIGSTOP): connections stay open and nothing is
    /// answered, as when a Redis stalls; [`Redis::resume`] lets it go on.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused Redis go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(child) = &self.child {
            let sent = Command::new("kill")
                .args([which, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success(), "kill {which} {}", child.id());
        }
    }

    /// Starts it again on the same port: with its data, or from an empty directory.
    pub fn restart(&mut self, keep_data: bool) {
        self.kill();
        if !keep_data {
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                } else if path.extension().is_none_or(|e| e != "log") {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        self.run();
    }

    fn run(&mut self) {
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Empties the database while Redis keeps running (`FLUSHDB`).
    pub fn flush(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = [0u8; 5];
        s.write_all(b"FLUSHDB\r\n").expect("FLUSHDB sent");
        s.read_exact(&mut answer).expect("FLUSHDB answered");
        assert_eq!(&answer, b"+OK\r\n");
    }

    /// Runs one command on its own connection; returns the first line of the reply
    /// (`:3`, `+OK`, `$5`, …).
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        s.write_all(request.as_bytes()).expect("command sent");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            s.read_exact(&mut byte).expect("command answered");
            line.push(byte[0]);
        }
        String::from_utf8_lossy(&line).trim_end().to_owned()
    }

    /// Closes every subscriber's connection (`CLIENT KILL TYPE pubsub`): what a node
    /// sees when its subscription breaks while its commands still go through.
    pub fn kill_subscribers(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        s.write_all(b"CLIENT KILL TYPE pubsub\r\n")
            .expect("CLIENT KILL sent");
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).expect("CLIENT KILL answered");
        assert_eq!(&answer, b":", "an integer reply");
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP forwarder between one node and Redis that the test can cut and heal: a
/// network partition of that node alone.
pub struct Link {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// While set, bytes are held, in both directions, and delivered once it is not:
    /// a link that is slow, not broken (a paused VM, a congested network).
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Link {
    /// Forwards connections on a free loopback port to `redis`.
    pub fn to(redis: &Redis) -> Link {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let target = redis.port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (open2, held2, streams2) = (Arc::clone(&open), Arc::clone(&held), Arc::clone(&streams));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !open2.load(Ordering::Acquire) {
                    continue; // dropped: refused in effect
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = streams2.lock().unwrap_or_else(|p| p.into_inner());
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let held = Arc::clone(&held2);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match std::io::Read::read(&mut from, &mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // Bounded: a held link is let go by the test, or in 60 s.
                            let until = std::time::Instant::now() + Duration::from_secs(60);
                            while held.load(Ordering::Acquire) && std::time::Instant::now() < until
                            {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                list.push(client);
                list.push(server);
            }
        });
        Link {
            port,
            open,
            held,
            streams,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Cuts every connection through the link and turns new ones away.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Release);
        let mut list = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for stream in list.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Holds every byte on its way through the link, both ways, without breaking a
    /// connection: what a paused VM or a congested network does.
    pub fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Delivers what was held, and lets bytes flow again.
    pub fn release(&self) {
        self.held.store(false, std::sync::atomic::Ordering::Release);
    }
}
