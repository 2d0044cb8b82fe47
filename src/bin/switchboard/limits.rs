//! Raising the soft limit on open files, for the server and for the load generator,
//! and telling how many connections the system's limits on threads allow.

use rustix::process::{Resource, getrlimit, getuid, setrlimit};
use std::path::{Path, PathBuf};

/// Raises this process's soft limit on open files to the hard limit (many systems
/// start programs at 1,024), and returns the soft limit in force afterwards (`None`:
/// unlimited), with the reason it could not be raised, if it could not.
pub(crate) fn raise_open_file_limit() -> (Option<u64>, Option<rustix::io::Errno>) {
    let mut limit = getrlimit(Resource::Nofile);
    let mut error = None;
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            error = Some(e);
            limit = getrlimit(Resource::Nofile);
        }
    }
    (limit.current, error)
}

/// Raises the open-file limit for a server of `max_connections`, and logs what it
/// allows: each connection costs two descriptors (its socket and its wake-up eventfd),
/// and a soft limit of 1,024 would cap the server near 500 clients.
pub(crate) fn raise_for_server(max_connections: usize) {
    let (current, error) = raise_open_file_limit();
    if let Some(e) = error {
        log::warn!("cannot raise the open-file limit: {e}");
    }
    // Leave a few descriptors for listeners, logging and the like.
    let allowed = current.map_or(usize::MAX, |n| (n.saturating_sub(32) / 2) as usize);
    // A shortfall of a few descriptors (the hard limit is often a round 20,000 or
    // 65,536) is not worth a warning; a real one is.
    if allowed < max_connections / 10 * 9 {
        log::warn!(
            "the open-file limit ({}) allows about {allowed} connections, fewer than --max-connections {max_connections}",
            current.unwrap_or(0)
        );
    } else {
        log::info!("the open-file limit allows about {allowed} connections (2 descriptors each)");
    }
}

/// Threads the server runs besides one per connection (the main thread, the accept
/// loop, the hub, the store or the cluster's, signals: about six), with room to spare.
/// Idle connection threads are no extra: the next connection takes one.
const OWN_THREADS: u64 = 16;

/// One of the system's limits on new threads, and how many more it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadLimit {
    /// What to call it in the log line, with how to raise it in the README.
    name: String,
    /// Threads it allows beyond those that exist now.
    room: u64,
}

/// Logs how many connections the system's thread limits allow: each connection has a
/// thread of its own, so the tightest of `threads-max`, `pid_max`, the cgroup's
/// `pids.max` and `RLIMIT_NPROC` caps the server, which then answers `503`.
pub(crate) fn report_thread_limit(max_connections: usize) {
    let Some(tightest) = thread_limits().into_iter().min_by_key(|l| l.room) else {
        log::info!("no limit on threads found: connections are limited by --max-connections");
        return;
    };
    let allowed = tightest.room.saturating_sub(OWN_THREADS);
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    let name = &tightest.name;
    if allowed < max_connections / 10 * 9 {
        log::warn!(
            "the thread limits allow about {allowed} connections (one thread each; {name} binds), \
             fewer than --max-connections {max_connections}; past that, clients get 503"
        );
    } else {
        log::info!(
            "the thread limits allow about {allowed} connections (one thread each; {name} binds)"
        );
    }
}

/// Every limit on new threads that applies to this process.
fn thread_limits() -> Vec<ThreadLimit> {
    let mut limits = Vec::new();
    // Both count every task of the system: whatever runs already is taken off.
    let in_use = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| tasks_in_use(&s))
        .unwrap_or(0);
    for (file, name) in [
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
    ] {
        if let Some(max) = read_number(Path::new(file)) {
            limits.push(ThreadLimit {
                name: format!("{name} ({max})"),
                room: max.saturating_sub(in_use),
            });
        }
    }
    if let Ok(cgroups) = std::fs::read_to_string("/proc/self/cgroup") {
        for dir in pids_cgroup_dirs(&cgroups, Path::new("/sys/fs/cgroup")) {
            limits.extend(cgroup_limit(&dir));
        }
    }
    // RLIMIT_NPROC counts every thread of every process of this user, and the kernel
    // does not enforce it for root.
    if !getuid().is_root()
        && let Some(max) = getrlimit(Resource::Nproc).current
    {
        limits.push(ThreadLimit {
            name: format!("RLIMIT_NPROC ({max}, for all of this user's processes)"),
            room: max,
        });
    }
    limits
}

/// The number of tasks on the system, from `/proc/loadavg` (`0.00 0.01 0.05 1/234 5678`).
fn tasks_in_use(loadavg: &str) -> Option<u64> {
    let running_and_total = loadavg.split_whitespace().nth(3)?;
    running_and_total.split_once('/')?.1.parse().ok()
}

/// The directories of this process's `pids` cgroup and of every cgroup above it, which
/// all limit it, from `/proc/self/cgroup`: cgroup v2's `0::/PATH` under `root`, or the
/// v1 `pids` hierarchy's `N:pids:/PATH` under `root/pids`.
fn pids_cgroup_dirs(proc_self_cgroup: &str, root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let base = if controllers.is_empty() {
            root.to_owned()
        } else if controllers.split(',').any(|c| c == "pids") {
            root.join("pids")
        } else {
            continue;
        };
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            dirs.push(dir.clone());
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    dirs
}

/// The room a cgroup's `pids.max` leaves (`pids.max` minus `pids.current`); `None` when
/// it has no such file or says `max`.
fn cgroup_limit(dir: &Path) -> Option<ThreadLimit> {
    let max = read_number(&dir.join("pids.max"))?;
    let current = read_number(&dir.join("pids.current")).unwrap_or(0);
    Some(ThreadLimit {
        name: format!("{}/pids.max ({max})", dir.display()),
        room: max.saturating_sub(current),
    })
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_count_comes_from_loadavg() {
        assert_eq!(tasks_in_use("0.00 0.01 0.05 1/234 5678\n"), Some(234));
        assert_eq!(tasks_in_use("garbage"), None);
    }

    #[test]
    fn a_v2_cgroup_and_every_one_above_it_limit_the_process() {
        let dirs = pids_cgroup_dirs("0::/system.slice/switchboard.service\n", Path::new("/cg"));
        assert_eq!(
            dirs,
            [
                "/cg/system.slice/switchboard.service",
                "/cg/system.slice",
                "/cg"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_v1_pids_hierarchy_is_found_among_the_others() {
        let cgroups = "9:name=systemd:/\n8:pids:/box\n4:memory:/other\n0::/\n";
        let dirs = pids_cgroup_dirs(cgroups, Path::new("/cg"));
        assert_eq!(dirs, ["/cg/pids/box", "/cg/pids", "/cg"].map(PathBuf::from));
    }

    #[test]
    fn a_cgroup_limit_is_what_is_left_of_pids_max() {
        let dir = std::env::temp_dir().join(format!("switchboard-pids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pids.max"), "max\n").unwrap();
        std::fs::write(dir.join("pids.current"), "7\n").unwrap();
        assert_eq!(cgroup_limit(&dir), None, "max is no limit");
        std::fs::write(dir.join("pids.max"), "100\n").unwrap();
        assert_eq!(cgroup_limit(&dir).map(|l| l.room), Some(93));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
