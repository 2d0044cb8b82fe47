//! CPU and memory from `/proc`: the generator's own, and the server's given its pid.

/// This process's CPU time (user + system, threads that ended included), in seconds.
pub(super) fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // USER_HZ is 100 on every Linux ABI.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// A thread's time on a CPU and time runnable but waiting for one, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ThreadTime {
    pub(super) cpu: f64,
    pub(super) wait: f64,
}

impl ThreadTime {
    /// The calling thread's, to the nanosecond, from its schedstat ("time on CPU,
    /// time waiting on a run queue, time slices").
    pub(super) fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut ns = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().map_or(0.0, |n| n as f64 / 1e9));
        Self {
            cpu: ns.next().unwrap_or(0.0),
            wait: ns.next().unwrap_or(0.0),
        }
    }

    pub(super) fn since(self, before: Self) -> Self {
        Self {
            cpu: self.cpu - before.cpu,
            wait: self.wait - before.wait,
        }
    }

    /// The worst of two threads on each count.
    pub(super) fn max(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.max(other.cpu),
            wait: self.wait.max(other.wait),
        }
    }
}

/// CPU time of a process's live threads, to the nanosecond, from each thread's
/// schedstat. (Threads that ended are missing, so use it over windows where none do.)
pub(super) fn threads_cpu_secs(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        // A thread may end between listing and reading: it then counts for nothing.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// A process's resident memory from /proc, in KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A process's peak resident memory so far (`VmHWM`), in KiB.
pub(super) fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// One `… kB` line of `/proc/{pid}/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}
