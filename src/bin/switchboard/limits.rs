//! Raising the soft limit on open files, for the server and for the load generator.

use rustix::process::{Resource, getrlimit, setrlimit};

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
