//! The open-file limit. Every connection takes a file descriptor, and the
//! common soft limit (1024) is below the default `max_connections` plus
//! what the server itself needs. So the server raises its soft limit to
//! the hard one at startup, and lowers `max_connections` to what the limit
//! leaves room for, so that the connection over the limit gets a clear 503
//! at once instead of waiting in the listen queue until it times out.

/// Descriptors kept for everything that is not a session: the listener,
/// the data file, stdio, each worker's event loop, HTTP API requests, the
/// Kodi bridge, and the 503 answers themselves.
pub(crate) const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit in effect; `None` when there is no limit to respect.
#[cfg(unix)]
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(
                "cannot raise the open-file limit from {:?} to {:?}: {e}",
                limit.current,
                limit.maximum
            );
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(not(unix))]
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    None
}

/// The connections the server accepts: `max_connections`, or fewer if the
/// open-file limit leaves room for fewer (with a warning that says how to
/// get more).
pub(crate) fn connection_capacity(max_connections: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return max_connections;
    };
    let room = usize::try_from(open_files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if room >= max_connections {
        tracing::info!(
            "open-file limit {open_files}: room for max_connections ({max_connections}) connections"
        );
        return max_connections;
    }
    tracing::warn!(
        "max_connections is {max_connections}, but the open-file limit ({open_files}, \
         {RESERVED_FDS} kept for the server) leaves room for {room}: connections beyond {room} \
         are refused with 503. Raise the limit (ulimit -n, or LimitNOFILE= in a systemd unit) \
         or lower max_connections"
    );
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_the_smaller_of_the_setting_and_the_limit() {
        assert_eq!(connection_capacity(1024, None), 1024);
        assert_eq!(connection_capacity(1024, Some(1 << 20)), 1024);
        assert_eq!(connection_capacity(1024, Some(1024)), 960);
        assert_eq!(connection_capacity(1024, Some(10)), 0);
    }
}
