//! The system's thread limits: a connection thread that cannot be started is a `503`
//! and one warning, never a panic, a dead server or a stalled accept loop.
//!
//! Spawning is made to fail for real, on the binary: it is moved into a cgroup whose
//! `pids.max` leaves room for two more threads (cgroup v2, or the v1 `pids`
//! hierarchy), or, where no such cgroup can be made, it runs as `nobody` under an
//! `RLIMIT_NPROC` just above its own threads (the kernel does not enforce that limit
//! for root, and CI runs as root).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// What the server's warning says when it cannot start a connection thread.
const WARNING: &str = "cannot start a connection thread";

/// The uid and gid of `nobody`, for the `RLIMIT_NPROC` way.
const NOBODY: &str = "65534";

/// Threads `nobody` may add under `RLIMIT_NPROC`: the server's own (about five) and a
/// few connections.
const NPROC_ROOM: u64 = 12;

/// How the server is kept from starting more threads.
enum Confinement {
    /// A fresh `pids` cgroup, removed when dropped (after the server is gone).
    Cgroup(PathBuf),
    /// The server runs as `nobody`; its `RLIMIT_NPROC` is set once it runs.
    Nproc,
}

impl Confinement {
    /// A cgroup the test can create and limit, or else the `RLIMIT_NPROC` way if this
    /// process may switch users; `None` after saying why the test is skipped.
    fn find() -> Option<Confinement> {
        let name = format!("switchboard-test-threads-{}", std::process::id());
        // cgroup v2 with the pids controller on for children of the root; else the
        // v1 pids hierarchy.
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_has_pids = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
        let roots = [v2_has_pids.then(|| v2.to_owned()), Some(v2.join("pids"))];
        for root in roots.into_iter().flatten() {
            let dir = root.join(&name);
            if std::fs::create_dir(&dir).is_ok() {
                if dir.join("pids.max").is_file() {
                    return Some(Confinement::Cgroup(dir));
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
        let root = is_root();
        let tools = ["setpriv", "prlimit"].iter().all(|t| {
            tool_or_skip(
                "a_thread_that_cannot_start_is_a_503",
                t,
                "SWITCHBOARD_REQUIRE_TOOLS",
            )
            .is_some()
        });
        if root && tools {
            return Some(Confinement::Nproc);
        }
        let why = "no pids cgroup can be made here, and this test is not root (to run the \
                   server as nobody under RLIMIT_NPROC)";
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_TOOLS").is_none(),
            "a_thread_that_cannot_start_is_a_503: SWITCHBOARD_REQUIRE_TOOLS is set but {why}"
        );
        eprintln!("skipped a_thread_that_cannot_start_is_a_503: {why}");
        None
    }

    /// The command that starts the server under this confinement.
    fn command(&self) -> Command {
        let binary = env!("CARGO_BIN_EXE_switchboard");
        match self {
            Confinement::Cgroup(_) => Command::new(binary),
            Confinement::Nproc => {
                // Set before the server starts: raising another user's limit later
                // needs CAP_SYS_RESOURCE, which a container's root may lack. Room for
                // the server's own few threads and some connections, no more.
                let max = (tasks_of_uid(NOBODY) + NPROC_ROOM).to_string();
                let mut cmd = Command::new("setpriv");
                cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
                    .args(["prlimit", &format!("--nproc={max}:{max}"), "--"])
                    .arg(binary);
                cmd
            }
        }
    }

    /// Lets the running server `pid` start at most `room` more threads (the
    /// `RLIMIT_NPROC` way set its limit at start).
    fn limit(&self, pid: u32, room: u64) {
        if let Confinement::Cgroup(dir) = self {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .expect("the server moves into the cgroup");
            let current = read_number(&dir.join("pids.current"));
            std::fs::write(dir.join("pids.max"), (current + room).to_string())
                .expect("pids.max is set");
        }
    }
}

impl Drop for Confinement {
    fn drop(&mut self) {
        if let Confinement::Cgroup(dir) = self {
            // Empty once the server has exited; give it a moment to be reaped.
            for _ in 0..100 {
                if std::fs::remove_dir(&*dir).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether this process runs as root, from `/proc/self/status` (`Uid: real …`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

/// Tasks (threads) whose real uid is `uid`, across the system: what `RLIMIT_NPROC`
/// counts.
fn tasks_of_uid(uid: &str) -> u64 {
    let mut n = 0;
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        for task in std::fs::read_dir(process.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let real = std::fs::read_to_string(task.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|ids| ids.split_whitespace().next().map(str::to_owned))
                });
            n += u64::from(real.as_deref() == Some(uid));
        }
    }
    n
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("a number in {}", path.display()))
}

/// The lines the server writes to stderr, as they come.
fn lines_of(stderr: std::process::ChildStderr) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Every line that came within `wait`.
fn drain(lines: &Receiver<String>, seen: &mut Vec<String>, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        seen.push(line);
    }
}

#[test]
fn a_thread_that_cannot_start_is_a_503() {
    let Some(confinement) = Confinement::find() else {
        return;
    };
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = Running(
        confinement
            .command()
            .args(["--listen", &addr.to_string(), "--no-tls", "--no-persist"])
            .args(["--no-qr", "--max-connections", "1000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts"),
    );
    let stderr = lines_of(server.0.stderr.take().expect("stderr piped"));
    eventually(|| std::net::TcpStream::connect(addr).ok());
    assert_eq!(status(&get(addr, "/healthz")), 200);
    // Room for two more threads; the thread that answered /healthz waits for the
    // next connection, so three or so clients get in before a thread cannot start.
    confinement.limit(server.0.id(), 2);

    let mut held = Vec::new();
    let refused = loop {
        assert!(
            held.len() < 50,
            "every connection got a thread: not confined"
        );
        let (head, stream) = handshake(addr, upgrade_request("/ws/echo", ""));
        if !head.starts_with("HTTP/1.1 101 ") {
            break head;
        }
        let mut ws = client_on(stream);
        assert_echoes(&mut ws, "held");
        held.push(ws);
    };
    assert!(!held.is_empty(), "no connection got in before the limit");
    assert!(
        refused.starts_with("HTTP/1.1 503 "),
        "after {} connections: {refused:?}",
        held.len()
    );
    assert_eq!(header(&refused, "Retry-After"), Some("1"), "{refused}");
    assert_eq!(header(&refused, "Connection"), Some("close"), "{refused}");

    // Those already in are unaffected, and the server lives on.
    for ws in &mut held {
        assert_echoes(ws, "still here");
    }
    assert!(
        server.0.try_wait().expect("the server's status").is_none(),
        "the server died"
    );

    // Their threads, once free, take new connections: no new thread is needed.
    let before = held.len();
    for ws in held {
        close_politely(ws);
    }
    let mut again = eventually(|| {
        let (head, stream) = handshake(addr, upgrade_request("/ws/echo", ""));
        (status(&head) == 101).then(|| client_on(stream))
    });
    assert_echoes(&mut again, "back");
    close_politely(again);
    assert!(
        handshake_failures(addr, "server_full") >= 1,
        "the refusal is counted"
    );

    // One warning, saying how many were refused.
    let mut seen = Vec::new();
    drain(&stderr, &mut seen, Duration::from_millis(300));
    let warnings: Vec<_> = seen.iter().filter(|l| l.contains(WARNING)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "after {before} held connections, stderr: {seen:#?}"
    );
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("1 connection(s) refused"),
        "{}",
        warnings[0]
    );
    assert!(
        !seen.iter().any(|l| l.contains("panicked")),
        "stderr: {seen:#?}"
    );
}
