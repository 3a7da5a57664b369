//! `State`: where the client's connection stands, published on a
//! `tokio::sync::watch` channel (see [`crate::Client::state`]).

use std::fmt;

/// What the connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// The first connect is under way.
    Connecting,
    /// Connected; calls go straight out.
    Open,
    /// The connection was lost and the client is trying again; calls wait.
    Reconnecting,
    /// For good: closed by the program, every `Client` dropped, the first
    /// connect gave up, or the connection was lost with reconnect off.
    Closed,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Connecting => "connecting",
            StateKind::Open => "open",
            StateKind::Reconnecting => "reconnecting",
            StateKind::Closed => "closed",
        })
    }
}

/// The connection's state and why it is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Connecting, open, reconnecting or closed.
    pub kind: StateKind,
    /// Why: the URL connected to, why the connection was lost, the last
    /// attempt's error, or "closed by the client".
    pub reason: String,
}

impl State {
    pub(crate) fn new(kind: StateKind, reason: impl Into<String>) -> State {
        State {
            kind,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}
