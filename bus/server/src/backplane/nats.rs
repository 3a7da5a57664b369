//! `NatsBackplane`: the connection to NATS, the bucket, and writes
//! (docs/scaling.md §5). Writes are JetStream publishes to the bucket's
//! subjects with headers (the expected last sequence, `Nats-TTL`, the
//! owner of an ephemeral key), so every write answers with its sequence:
//! the rev the protocol hands out.

use super::config::BackplaneConfig;
use super::feed::LEASES;
use super::subject::key_subject;
use anyhow::bail;
use async_nats::header::{
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MARKER_REASON, NATS_MESSAGE_TTL,
};
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, StorageType, Stream};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, kv};
use async_nats::{ConnectOptions, HeaderMap, HeaderValue};
use bytes::Bytes;
use ipcbus_actors::backplane::{Backplane, Expect, Pending, Put, WriteError};
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The oldest nats-server with per-message TTL and delete markers.
const MIN_VERSION: (u64, u64) = (2, 11);
/// Headers a write may carry, beyond the value: what `max_payload` must
/// leave room for.
pub(crate) const HEADER_ROOM: usize = 4096;
/// The header that marks a key's operation (`DEL`, `PURGE`), as NATS KV has it.
pub(crate) const KV_OPERATION: &str = "KV-Operation";
/// The header that names the server an ephemeral key belongs to.
pub(crate) const OWNER: &str = "Ipcbus-Owner";
/// How often a write retries after finding a deleted key where it expected
/// none (`if_rev: 0`), before it reports the conflict.
const CREATE_TRIES: usize = 3;
/// How often a lookup after a refused write asks again while it still
/// finds what the write expected (waiting 1, 2, … ms: about 0.2 s in all).
const STALE_TRIES: u64 = 20;
/// How long the marker NATS writes when a value's TTL runs out stays in
/// the bucket. A feed that is away longer (its connection lost, its
/// consumer recreated) would miss the deletion, so it is long: an hour.
const MARKER_TTL: Duration = Duration::from_secs(3600);
/// How long a write waits before it tries again when no stream answered.
const NO_STREAM_PAUSE: Duration = Duration::from_millis(50);

/// Why the backplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// NATS, or its JetStream, does not answer (yet): worth trying again.
    #[error("{0:#}")]
    Unreachable(anyhow::Error),
    /// NATS answers, but cannot be used as it is (too old, a bucket made
    /// without per-message TTL): trying again will not help.
    #[error("{0:#}")]
    Unusable(anyhow::Error),
}

/// The connection to NATS and the bucket that holds the keys.
#[derive(Debug, Clone)]
pub struct NatsBackplane {
    js: jetstream::Context,
    stream: Stream,
    /// `$KV.<bucket>.`
    prefix: String,
    store_id: String,
    /// When the bucket's stream was created, in ns since the epoch: tells
    /// it from one deleted and made again under the same name.
    created: i128,
    /// Set once the bucket is no longer the one this server mirrors:
    /// nothing more is written to it (`fence`).
    fenced: Arc<AtomicBool>,
    node: String,
    max_payload: usize,
    write_timeout: Duration,
    /// The highest sequence NATS acknowledged to this server: the feed's
    /// watchdog (follow.rs) knows by it that the feed has stalled.
    acked: Arc<watch::Sender<u64>>,
}

impl NatsBackplane {
    /// Connects, checks the server's version, and opens the bucket
    /// (creating it, as docs/scaling.md §2 says, if it does not exist).
    /// `node` is this server's id, the owner of its ephemeral keys.
    pub async fn connect(
        config: &BackplaneConfig,
        node: &str,
    ) -> Result<NatsBackplane, ConnectError> {
        let mut options = ConnectOptions::new()
            .name(format!("ipcbus {node}"))
            .connection_timeout(config.write_timeout());
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let servers = config.servers.join(",");
        let client = match options.connect(config.servers.as_slice()).await {
            Ok(client) => client,
            Err(e) if refused(&e) => {
                return Err(ConnectError::Unusable(anyhow::anyhow!(
                    "NATS at {servers} refused the credentials ({e}): check `token`, or `user` \
                     and `password`, in [backplane] (docs/scaling.md §2)"
                )))
            }
            Err(e) if tls_failed(&e) => {
                return Err(ConnectError::Unusable(anyhow::anyhow!(
                    "TLS with NATS at {servers} failed ({e}): check `tls_ca` (the CA that \
                     signed the NATS servers' certificates), and `tls_cert`/`tls_key` if \
                     NATS verifies its clients, in [backplane] (docs/scaling.md §2)"
                )))
            }
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("cannot reach NATS at {servers}"));
                return Err(ConnectError::Unreachable(e));
            }
        };
        let info = client.server_info();
        check_version(&info.version).map_err(ConnectError::Unusable)?;
        let mut js = jetstream::new(client);
        js.set_timeout(config.write_timeout());
        let store = open_bucket(&js, config).await?;
        let stream = store.stream;
        let created = stream.cached_info().created.unix_timestamp_nanos();
        Ok(NatsBackplane {
            prefix: format!("$KV.{}.", config.bucket),
            store_id: format!("nats:{}:{created}", config.bucket),
            created,
            fenced: Arc::default(),
            node: node.to_owned(),
            max_payload: info.max_payload,
            write_timeout: config.write_timeout(),
            acked: Arc::new(watch::Sender::new(0)),
            js,
            stream,
        })
    }

    /// Names the bucket's store: the same on every server of the bucket,
    /// another when the bucket is created again (`hello.store`).
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Whether the bucket is still the one this server mirrors: `None`
    /// when NATS does not say (it does not answer, or has no quorum).
    pub async fn check_bucket(&self) -> Option<Bucket> {
        let name = self.stream.cached_info().config.name.clone();
        match self.js.get_stream(name).await {
            Ok(stream) if stream.cached_info().created.unix_timestamp_nanos() == self.created => {
                Some(Bucket::Same)
            }
            Ok(_) => Some(Bucket::Replaced),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Some(Bucket::Gone)
                }
                _ => None,
            },
        }
    }

    /// Takes no more writes: the bucket was deleted or made again under
    /// this server, whose revs and mirror are of the old one, and a write
    /// expecting an old rev could match a message of the new bucket.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::Release);
    }

    /// This server's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the connection to NATS is up (async-nats reconnects by
    /// itself while it is not).
    pub fn connected(&self) -> bool {
        self.js.client().connection_state() == async_nats::connection::State::Connected
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        self.prefix.trim_start_matches("$KV.").trim_end_matches('.')
    }

    /// The largest value the NATS servers take with our headers.
    pub fn max_value_bytes(&self) -> usize {
        self.max_payload.saturating_sub(HEADER_ROOM)
    }

    /// The bucket's stream, for the feed.
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The highest sequence NATS has acknowledged to this server, as it
    /// moves: a write, a deletion, the lease.
    pub(crate) fn acked(&self) -> watch::Receiver<u64> {
        self.acked.subscribe()
    }

    /// `$KV.<bucket>.`, the prefix of every subject of the bucket.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes a value; returns its rev. `live` is the rev of the key's
    /// value as the caller's mirror has it (0: none); it saves a round trip
    /// when it is right, and changes nothing when it is stale. The whole
    /// write, lookups and retries included, takes at most the write
    /// timeout.
    pub async fn put(&self, key: &str, put: Put, live: u64) -> Result<u64, WriteError> {
        self.within(self.put_steps(key, put, live)).await
    }

    /// Deletes a key's value; returns the rev of the deletion. With
    /// `if_rev`, only if the key's value is at that rev; without, whatever
    /// rev it has. `live` and the timeout as for [`Self::put`].
    pub async fn delete(
        &self,
        key: &str,
        if_rev: Option<u64>,
        live: u64,
    ) -> Result<u64, WriteError> {
        self.within(self.delete_steps(key, if_rev, live)).await
    }

    async fn within<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, WriteError>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(outcome) => outcome,
            Err(_) => Err(WriteError::Unavailable(format!(
                "no answer within write_timeout_ms ({} ms)",
                self.write_timeout.as_millis()
            ))),
        }
    }

    async fn put_steps(&self, key: &str, put: Put, live: u64) -> Result<u64, WriteError> {
        let subject = format!("{}{}", self.prefix, key_subject(key));
        let mut expected = match put.expect {
            Expect::Any => None,
            Expect::Rev(rev) => Some(self.value_at(&subject, rev, live).await?),
            Expect::Absent => Some(0),
        };
        for _ in 0..CREATE_TRIES {
            let mut headers = HeaderMap::new();
            if let Some(rev) = expected {
                headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, HeaderValue::from(rev));
            }
            if let Some(ttl) = put.ttl_ms {
                headers.insert(NATS_MESSAGE_TTL, format!("{}ms", ttl.max(1000)).as_str());
            }
            if put.ephemeral {
                headers.insert(OWNER, self.node.as_str());
            }
            match self.publish(&subject, headers, put.value.clone()).await {
                Err(Conflict) => {
                    let last = self.last_but(&subject, expected.unwrap_or(0)).await?;
                    match (put.expect, last) {
                        // A deleted key has no value: expect its marker instead.
                        (Expect::Absent, Last::Marker(seq)) => expected = Some(seq),
                        _ => {
                            return Err(WriteError::Conflict {
                                current: last.rev(),
                            })
                        }
                    }
                }
                other => return other.map_err(Into::into),
            }
        }
        Err(WriteError::Conflict { current: 0 })
    }

    async fn delete_steps(
        &self,
        key: &str,
        if_rev: Option<u64>,
        live: u64,
    ) -> Result<u64, WriteError> {
        let subject = format!("{}{}", self.prefix, key_subject(key));
        let mut expected = match if_rev {
            // A key without a value is not found, whatever `if_rev` says.
            Some(rev) => match self.value_at(&subject, rev, live).await {
                Err(WriteError::Conflict { current: 0 }) => return Err(WriteError::NotFound),
                other => other?,
            },
            None if live != 0 => live,
            None => self.last(&subject).await?.rev(),
        };
        for _ in 0..CREATE_TRIES {
            if expected == 0 {
                return Err(WriteError::NotFound);
            }
            let mut headers = marker_headers();
            headers.insert(
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                HeaderValue::from(expected),
            );
            match self.publish(&subject, headers, Bytes::new()).await {
                Err(Conflict) => match (self.last_but(&subject, expected).await?.rev(), if_rev) {
                    (0, _) => return Err(WriteError::NotFound),
                    (current, Some(_)) => return Err(WriteError::Conflict { current }),
                    (current, None) => expected = current,
                },
                other => return other.map_err(Into::into),
            }
        }
        Err(WriteError::Unavailable("the key kept changing".to_owned()))
    }

    /// Writes this server's lease, `n.<server id>`, to run out after `ttl`
    /// unless written again (docs/scaling.md §6); returns its sequence.
    /// `after` is the sequence of this server's last lease write (0: none
    /// yet), which the write expects to find: a marker, or nothing, there
    /// instead means the lease ran out meanwhile, and sets `ran_out`
    /// (which the caller keeps until a write succeeds, so that a write
    /// that finds it and then times out does not lose the finding).
    ///
    /// Every lease write carries the expected sequence, zero-padded, so
    /// all have one size: a bucket that is full (and discards new
    /// messages) still takes a message that is no larger than the one it
    /// replaces.
    pub async fn write_lease(
        &self,
        ttl: Duration,
        after: u64,
        ran_out: &mut bool,
    ) -> Result<u64, WriteError> {
        self.within(async {
            let subject = format!("{}{LEASES}{}", self.prefix, self.node);
            let ttl = format!("{}ms", ttl.as_millis().max(1000));
            let mut expected = after;
            for _ in 0..CREATE_TRIES {
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_TTL, ttl.as_str());
                let padded = format!("{expected:020}");
                headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, padded.as_str());
                match self.publish(&subject, headers, Bytes::new()).await {
                    Ok(seq) => return Ok(seq),
                    Err(Conflict) => match self.last_but(&subject, expected).await? {
                        // A write that timed out landed after all: the lease lives.
                        Last::Value(seq) => expected = seq,
                        Last::Marker(seq) => {
                            *ran_out = true;
                            expected = seq;
                        }
                        Last::None => {
                            // Gone with its marker (after an hour), if there was one.
                            *ran_out |= after != 0;
                            expected = 0;
                        }
                    },
                    Err(other) => return Err(other.into()),
                }
            }
            Err(WriteError::Unavailable(
                "the lease kept changing".to_owned(),
            ))
        })
        .await
    }

    /// Removes this server's lease at once (a clean shutdown, after its
    /// sessions have deleted their ephemeral keys).
    pub async fn drop_lease(&self) -> Result<u64, WriteError> {
        let subject = format!("{}{LEASES}{}", self.prefix, self.node);
        self.publish(&subject, marker_headers(), Bytes::new())
            .await
            .map_err(Into::into)
    }

    /// Publishes and waits for the bucket's acknowledgement. While no
    /// stream answers (a new leader being elected, a bucket just created
    /// whose subjects have not reached this NATS server yet) nothing was
    /// stored, so it tries again, up to the write timeout; a publish that
    /// got no answer is not tried again: it may have been stored.
    async fn publish(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<u64, PublishFailure> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(PublishFailure::Refused(
                "the bucket is no longer the one this server mirrors; it is stopping".to_owned(),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            let sent = self
                .js
                .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => {
                    self.acked.send_if_modified(|highest| {
                        let higher = ack.sequence > *highest;
                        *highest = (*highest).max(ack.sequence);
                        higher
                    });
                    return Ok(ack.sequence);
                }
                Err(e) if matches!(e.kind(), PublishErrorKind::StreamNotFound) => {
                    if tokio::time::Instant::now() + NO_STREAM_PAUSE > deadline {
                        return Err(PublishFailure::Other(format!("{e} (no quorum?)")));
                    }
                    tokio::time::sleep(NO_STREAM_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `rev`, if it is the rev of the key's value; else the conflict. The
    /// bucket compares an expected sequence with the key's last message,
    /// deletion markers included, while `if_rev` names a value: a marker's
    /// sequence must not match. A value's rev the mirror shows is one (no
    /// two messages share a sequence); another is looked up.
    async fn value_at(&self, subject: &str, rev: u64, live: u64) -> Result<u64, WriteError> {
        if rev == live && rev != 0 {
            return Ok(rev);
        }
        match self.last(subject).await? {
            Last::Value(current) if current == rev => Ok(rev),
            last => Err(WriteError::Conflict {
                current: last.rev(),
            }),
        }
    }

    /// The last message of a subject, after a write that expected `seq`
    /// there found another. The leader refuses a write as soon as another
    /// write of the key is on its way to the replicas, but shows it only
    /// once committed: while the lookup still finds `seq`, it asks again.
    async fn last_but(&self, subject: &str, seq: u64) -> Result<Last, WriteError> {
        for attempt in 1..=STALE_TRIES {
            let last = self.last(subject).await?;
            if last.seq() != seq {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(attempt)).await;
        }
        Err(WriteError::Unavailable(
            "the key's last write did not become visible".to_owned(),
        ))
    }

    /// The last message of a subject.
    async fn last(&self, subject: &str) -> Result<Last, WriteError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) if is_marker(&message.headers) => Ok(Last::Marker(message.sequence)),
            Ok(message) => Ok(Last::Value(message.sequence)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(Last::None),
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }
}

impl Backplane for NatsBackplane {
    fn put(&self, key: Arc<str>, put: Put, live: u64) -> Pending {
        let me = self.clone();
        Box::pin(async move { NatsBackplane::put(&me, &key, put, live).await })
    }

    fn delete(&self, key: Arc<str>, if_rev: Option<u64>, live: u64) -> Pending {
        let me = self.clone();
        Box::pin(async move { NatsBackplane::delete(&me, &key, if_rev, live).await })
    }
}

/// What became of the bucket a server mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// It is there, the same.
    Same,
    /// It was deleted.
    Gone,
    /// It was deleted and made again: its sequences, the revs, start over.
    Replaced,
}

/// A key's last message.
#[derive(Debug, Clone, Copy)]
enum Last {
    None,
    Marker(u64),
    Value(u64),
}

impl Last {
    /// The message's sequence (0: none).
    fn seq(self) -> u64 {
        match self {
            Last::None => 0,
            Last::Marker(seq) | Last::Value(seq) => seq,
        }
    }

    /// The key's rev as the protocol sees it: 0 when it has no value.
    fn rev(self) -> u64 {
        match self {
            Last::Value(rev) => rev,
            Last::None | Last::Marker(_) => 0,
        }
    }
}

/// Why a publish failed: the expected sequence did not match, JetStream
/// answered that it did not store the message, or no answer.
enum PublishFailure {
    Conflict,
    Refused(String),
    Other(String),
}
use PublishFailure::Conflict;

impl From<async_nats::jetstream::context::PublishError> for PublishFailure {
    fn from(e: async_nats::jetstream::context::PublishError) -> Self {
        let answer = e
            .source()
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
        match (e.kind(), answer) {
            (PublishErrorKind::WrongLastSequence, _) => Conflict,
            // 10164: the same mismatch, as newer servers also report it.
            (_, Some(j)) if j.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT => {
                Conflict
            }
            (_, Some(j)) if not_stored(j) => PublishFailure::Refused(e.to_string()),
            _ => PublishFailure::Other(e.to_string()),
        }
    }
}

impl From<PublishFailure> for WriteError {
    fn from(e: PublishFailure) -> Self {
        match e {
            // Callers handle a conflict before converting.
            Conflict => WriteError::Conflict { current: 0 },
            PublishFailure::Refused(why) => WriteError::Refused(why),
            PublishFailure::Other(why) => WriteError::Unavailable(why),
        }
    }
}

/// Whether JetStream's answer says the message was not stored: it is over
/// one of the stream's limits (checked before anything is stored, the same
/// way on every replica). Other answers (a store that was closing, for
/// one, which can come after the write was committed) may hide a stored
/// write, and are taken as no answer.
fn not_stored(answer: &async_nats::jetstream::Error) -> bool {
    /// 10054: message size exceeds maximum allowed; 10023: insufficient
    /// resources.
    const OVER_LIMITS: [u64; 2] = [10054, 10023];
    let code = answer.error_code().0;
    let text = answer.to_string();
    // 10077: "maximum bytes/messages (per subject) exceeded"; the same
    // code also says that the store was closing.
    OVER_LIMITS.contains(&code) || (code == 10077 && text.contains("maximum"))
}

/// The headers of a deletion this server writes: `DEL`, as NATS KV has
/// it, and a TTL as long as the markers NATS writes itself, so that the
/// markers of deleted keys leave the bucket too (NATS then writes one
/// more marker, which lasts as long, and no other).
fn marker_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(KV_OPERATION, "DEL");
    let ttl = format!("{}s", MARKER_TTL.as_secs());
    headers.insert(NATS_MESSAGE_TTL, ttl.as_str());
    headers
}

/// Whether a message is a deletion: a `del`/purge, or a marker NATS wrote
/// when a message's TTL ran out.
pub(crate) fn is_marker(headers: &HeaderMap) -> bool {
    headers.get(KV_OPERATION).is_some() || headers.get(NATS_MARKER_REASON).is_some()
}

/// Whether NATS refused the connection's credentials: trying again with
/// the same ones will not help.
fn refused(e: &async_nats::ConnectError) -> bool {
    use async_nats::ConnectErrorKind::{Authentication, AuthorizationViolation};
    matches!(e.kind(), Authentication | AuthorizationViolation)
}

/// Whether TLS failed as TLS (a certificate not trusted, or refused by the
/// other side), not for the network under it: trying again will not help.
fn tls_failed(e: &async_nats::ConnectError) -> bool {
    if e.kind() == async_nats::ConnectErrorKind::Tls {
        return true;
    }
    let mut source = e.source();
    while let Some(cause) = source {
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(cause, |inner| inner as &(dyn std::error::Error + 'static));
        if inner.is::<rustls::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn check_version(version: &str) -> anyhow::Result<()> {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        bail!(
            "nats-server {version} is too old for the backplane: it needs {}.{} or newer \
             (per-message TTL and delete markers); see docs/scaling.md",
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(())
}

/// Opens the bucket, or creates it with the settings of docs/scaling.md §2.
async fn open_bucket(
    js: &jetstream::Context,
    config: &BackplaneConfig,
) -> Result<kv::Store, ConnectError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        let info = store.stream.cached_info();
        let markers = info.config.subject_delete_marker_ttl;
        if !info.config.allow_message_ttl || markers.is_none_or(|m| m < MARKER_TTL) {
            return Err(ConnectError::Unusable(anyhow::anyhow!(
                "the bucket {:?} was made without per-message TTL, or with delete \
                 markers that last less than {} s; ipcbus needs both (create it with \
                 `nats kv add --marker-ttl {}s`, or let ipcbus create it)",
                config.bucket,
                MARKER_TTL.as_secs(),
                MARKER_TTL.as_secs()
            )));
        }
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: config.bucket.clone(),
            description: "ipcbus keys (docs/scaling.md)".to_owned(),
            history: 1,
            storage: StorageType::File,
            num_replicas: config.replicas,
            limit_markers: Some(MARKER_TTL),
            ..Default::default()
        })
        .await;
    let e = match created {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    // Another server may have created it meanwhile.
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let why = format!("cannot create the bucket {:?}: {e}", config.bucket);
    // More replicas than the cluster has servers: trying again will not help.
    let text = e.to_string();
    if text.contains("replicas") || text.contains("insufficient resources") {
        return Err(ConnectError::Unusable(anyhow::anyhow!(
            "{why} (replicas = {}: set it to at most the number of NATS servers \
             with JetStream, 1 for a single server)",
            config.replicas
        )));
    }
    Err(ConnectError::Unreachable(anyhow::anyhow!(why)))
}
