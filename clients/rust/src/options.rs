//! `ClientOptions`, `SetOptions` and `SubscribeOptions`: how a client
//! connects, waits, stores and subscribes.

use std::time::Duration;

/// Connection settings. Build them with `..ClientOptions::default()`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Socket read buffer per connection. Small by default: tungstenite's
    /// 128 KiB default costs that much per idle connection.
    pub read_buffer_bytes: usize,
    /// Requests queued for the connection before callers wait: while the
    /// bus is away, calls queue here; once it is full, further callers wait
    /// for room, and that wait counts against their `timeout` like any other.
    pub request_capacity: usize,
    /// Events buffered per subscription before each key keeps only its
    /// newest waiting event (see [`crate::Subscription`]).
    pub subscription_capacity: usize,
    /// Largest message accepted from the server.
    pub max_message_bytes: usize,
    /// The access token, sent as `Authorization: Bearer`. When `None`, the
    /// client uses `$IPCBUS_TOKEN` or the token file the local server wrote
    /// (see `ipcbus_protocol::auth`), if there is one, looked up again at
    /// every (re)connect so that a rewritten token file is picked up.
    pub token: Option<String>,
    /// How long one call may take, the wait for a connection included;
    /// then it fails with [`crate::Error::Unavailable`].
    pub timeout: Duration,
    /// How long the first connect keeps trying; `None`: [`Self::timeout`].
    pub connect_timeout: Option<Duration>,
    /// Connect with one attempt, and return its error as it is (for
    /// one-shot tools such as the CLI).
    pub fail_fast: bool,
    /// Reconnect when the connection is lost (with backoff, for as long as
    /// the client lives). When false, a lost connection closes the client.
    pub reconnect: bool,
    /// A connection on which nothing arrives for this long is taken for
    /// dead and replaced (the server pings every 10 s by default, so a
    /// live one is never this quiet). This is what notices a network that
    /// went away without closing anything.
    pub idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            read_buffer_bytes: 16 << 10,
            request_capacity: 1024,
            subscription_capacity: 4096,
            max_message_bytes: 16 << 20,
            token: None,
            timeout: Duration::from_secs(5),
            connect_timeout: None,
            fail_fast: false,
            reconnect: true,
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// How a `set` stores its value; see [`crate::Client::set_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Write only if the key's current rev is this (0: only if absent).
    pub if_rev: Option<u64>,
    /// Write the value to disk before the server acknowledges it, so it
    /// survives a restart or a crash of the server.
    pub persist: bool,
    /// Delete the key when this connection ends (a "last will"). The
    /// client sets the key again after a reconnect, before it counts as
    /// open, unless another client wrote it meanwhile.
    pub ephemeral: bool,
    /// Delete the key after this long.
    pub ttl: Option<Duration>,
}

/// How a subscription is made; see [`crate::Client::subscribe_with`].
///
/// ```no_run
/// # async fn demo(client: ipcbus_client::Client) -> Result<(), ipcbus_client::Error> {
/// use ipcbus_client::SubscribeOptions;
/// let options = SubscribeOptions { meta: true, ..SubscribeOptions::default() };
/// let mut sub = client.subscribe_with("svc.>", options).await?;
/// while let Some((event, meta)) = sub.next_with_meta().await {
///     println!("{:?}: {meta:?}", event.key());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Replay only keys whose rev is above this (and held deletions as
    /// [`crate::Event::Deleted`]); see [`crate::Client::subscribe_since`].
    pub since: Option<u64>,
    /// Ask the server for the [`crate::Meta`] of every value event: the
    /// write's age and options (protocol.md §4). Read it with
    /// [`crate::Subscription::next_with_meta`] or
    /// [`crate::Subscription::with_meta`]. Asked for again when the
    /// subscription is made again after a reconnect.
    pub meta: bool,
}
