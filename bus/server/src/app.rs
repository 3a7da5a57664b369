//! The HTTP app and [`serve`].

use crate::auth::Access;
use crate::config::Config;
use crate::kodi::KodiStatus;
use crate::metrics::Metrics;
use crate::selftest;
use crate::sys::Sys;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use ipcbus_actors::{Registry, RegistryOptions, Store};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How long a graceful shutdown waits for connections to close.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Shared by every worker and session.
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) access: Access,
    /// Flips to true when the server shuts down; sessions then send a close frame.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Moves when this server's backplane lease ran out; sessions then
    /// close, so that their clients set their ephemeral keys again.
    pub(crate) leases_lost: watch::Receiver<u64>,
    session_ids: AtomicU64,
    selftest: Mutex<String>,
    /// The self-test run under way: they share their key, so one at a time.
    pub(crate) selftest_runs: selftest::Runs,
    /// Where the server listens; the self-test connects there.
    pub(crate) addr: SocketAddr,
    /// Who watches `ipcbus.sys.stats`, and every session's outbox.
    pub(crate) sys: Arc<Sys>,
    /// Sent in every `hello`. It lives with the data file; a new one (after
    /// a crash or with a new file) tells clients their `since` revs are void.
    pub(crate) store_id: String,
    /// The key the self-test writes: `ipcbus.selftest`, and on a backplane
    /// `ipcbus.selftest.<server id>`.
    pub(crate) selftest_key: String,
    /// The NATS backplane, when `backplane` is set (docs/scaling.md).
    pub(crate) backplane: Option<crate::backplane::NatsBackplane>,
    /// The Kodi bridge's connection, when `kodi` is set.
    pub(crate) kodi: Option<Arc<KodiStatus>>,
    /// What `/metrics` shows, beyond the registry's own counters.
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn set_selftest(&self, outcome: String) {
        *self.selftest.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
    }

    /// The last self-test's outcome, as `/health` shows it.
    pub(crate) fn selftest(&self) -> String {
        self.selftest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.registry.stats();
    let selftest = state.selftest();
    let trouble = state.registry.storage_trouble();
    let shared_down = state.backplane.as_ref().is_some_and(|b| !b.connected());
    let mut body = serde_json::json!({
        "status": if trouble.is_some() || shared_down { "degraded" } else { "ok" },
        "server": crate::SERVER_NAME,
        "sessions": stats.sessions.load(Ordering::Relaxed),
        "keys": stats.live_keys.load(Ordering::Relaxed),
        "rev": state.registry.last_rev(),
        "skipped": stats.skipped.load(Ordering::Relaxed),
        "overflows": stats.overflows.load(Ordering::Relaxed),
        "store": state.store_id,
        "selftest": selftest,
    });
    if let Some(kodi) = &state.kodi {
        body["kodi"] = kodi.as_str().into();
    }
    if let Some(backplane) = &state.backplane {
        // Down: writes fail with `unavailable`, reads serve the mirror.
        body["backplane"] = serde_json::json!({
            "status": if shared_down { "down" } else { "ok" },
            "bucket": backplane.bucket(),
            "server": backplane.node(),
        });
    }
    if let Some(why) = trouble {
        // Persisted writes fail with `storage` until the data file can be
        // written again; the store retries by itself.
        body["storage"] = (*why).into();
    }
    HttpResponse::Ok().json(body)
}

/// Socket options for every connection: no Nagle delay, and a bound on how
/// long a peer may stall. A session whose client stopped reading is never
/// polled again (its actor runs only when its socket can take data), so its
/// own heartbeat cannot end it; the kernel can, through TCP_USER_TIMEOUT,
/// which also covers a zero receive window.
fn tune(tcp: &actix_web::rt::net::TcpStream, stall_timeout: Duration) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!("cannot set TCP_NODELAY: {e}");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(stall_timeout)) {
        tracing::warn!("cannot set TCP_USER_TIMEOUT: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stall_timeout;
}

/// Runs the bus on an already-bound listener until `shutdown` resolves, then
/// closes every session with a close frame (1001) and stops. Must be called
/// inside an actix system (`actix_web::rt::System`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    config.validate().map_err(std::io::Error::other)?;
    let data_dir = config.data_dir().map_err(std::io::Error::other)?;
    crate::private::secure_dir(&data_dir).map_err(std::io::Error::other)?;
    // An existing data file must be ours too (a new one is made 0600 by the store).
    crate::private::secure_file(&data_dir.join(ipcbus_actors::store::DATA_FILE))
        .map_err(std::io::Error::other)?;
    let mut config = config;
    let open_files = crate::fds::raise_open_file_limit();
    config.max_connections = crate::fds::connection_capacity(config.max_connections, open_files);
    let access = Access::from_config(&config, &data_dir).map_err(std::io::Error::other)?;
    let mut shutdown = std::pin::pin!(shutdown);
    // This server's id: the owner of its ephemeral keys on a backplane.
    let node = uuid::Uuid::new_v4().simple().to_string();
    let backplane = match &config.backplane {
        None => None,
        Some(settings) => {
            tracing::info!(
                "backplane: connecting to NATS at {}",
                settings.servers.join(",")
            );
            tokio::select! {
                connected = crate::backplane::connect(settings, &node) => {
                    Some(connected.map_err(std::io::Error::other)?)
                }
                () = &mut shutdown => return Ok(()),
            }
        }
    };
    let options = RegistryOptions {
        max_keys: config.max_keys,
        persist_all: config.persist_all,
    };
    let (registry, store, store_id) = match &backplane {
        Some(backplane) => {
            let fits = backplane.max_value_bytes();
            if config.max_value_bytes > fits {
                tracing::warn!(
                    "backplane: NATS takes messages up to {} bytes, so max_value_bytes is {fits}, \
                     not {} (raise max_payload in the NATS configuration; docs/scaling.md)",
                    fits + crate::backplane::nats::HEADER_ROOM,
                    config.max_value_bytes
                );
                config.max_value_bytes = fits;
            }
            let shared: Arc<dyn ipcbus_actors::Backplane> = Arc::new(backplane.clone());
            let registry = Registry::with_backplane(shared, options);
            (registry, None, backplane.store_id().to_owned())
        }
        None => {
            let (store, registry, store_id) = open_store(&data_dir, options)?;
            (registry, Some(store), store_id)
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // Moves when this server's backplane lease ran out (`keep_lease`).
    let (lost_tx, lost_rx) = watch::channel(0u64);
    let mut first_lease = 0;
    if let (Some(backplane), Some(settings)) = (&backplane, &config.backplane) {
        // Before any session can set an ephemeral key: a server starting
        // meanwhile would take the key of a server without a lease for an
        // orphan.
        if settings.lease_ttl() < settings.write_timeout() * 2 {
            tracing::warn!(
                "backplane: lease_ttl_ms ({}) is less than twice write_timeout_ms ({}): a NATS \
                 that is slow to answer can let this server's lease run out, and the others \
                 then delete its sessions' ephemeral keys (docs/scaling.md §6)",
                settings.lease_ttl_ms,
                settings.write_timeout_ms
            );
        }
        let first = first_lease_write(backplane, settings.lease_ttl());
        tokio::select! {
            seq = first => first_lease = seq,
            () = &mut shutdown => return Ok(()),
        }
    }
    let follow = match &backplane {
        Some(backplane) => tokio::select! {
            follow = start_feed(backplane, &registry, first_lease, stop_rx.clone(), lost_rx.clone()) => Some(follow),
            () = &mut shutdown => return Ok(()),
        },
        None => None,
    };
    let kodi = config
        .kodi
        .as_ref()
        .map(|_| Arc::new(KodiStatus::default()));
    let metrics = Arc::new(Metrics::new(
        registry.clone(),
        kodi.clone(),
        backplane.clone(),
    ));
    if let Some(store) = &store {
        store.on_commit(metrics.commit_hook());
    }
    let state = web::Data::new(AppState {
        registry,
        config: config.clone(),
        access,
        shutdown: stop_rx,
        leases_lost: lost_rx,
        session_ids: AtomicU64::new(0),
        store_id,
        selftest_key: match &backplane {
            // Servers of one bucket must not overwrite each other's.
            Some(_) => format!("{}.{node}", selftest::SELFTEST_KEY),
            None => selftest::SELFTEST_KEY.to_owned(),
        },
        kodi: kodi.clone(),
        backplane: backplane.clone(),
        metrics,
        selftest_runs: selftest::Runs::default(),
        addr,
        sys: Arc::default(),
        selftest: Mutex::new(
            if config.selftest {
                "pending"
            } else {
                "disabled"
            }
            .to_owned(),
        ),
    });
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let stall_timeout = Duration::from_millis(config.stall_timeout_ms);
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            // Inner: CORS for listed origins; outer: the guard, which
            // runs first (origin, token).
            .wrap(app_state.access.cors())
            .wrap(middleware::from_fn(crate::auth::guard))
            .route("/ws", web::get().to(crate::ws::upgrade))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(crate::metrics::handler))
            .route("/v1/selftest", web::post().to(crate::selftest::handler))
            .configure(crate::ui::routes)
            .route("/v1/keys", web::get().to(crate::http::keys))
            .service(
                // A resource, so that other methods get 405 with an Allow header.
                web::resource("/v1/keys/{key:.*}")
                    .route(web::get().to(crate::http::get))
                    .route(web::put().to(crate::http::put))
                    .route(web::delete().to(crate::http::delete)),
            )
    })
    .on_connect(move |conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            tune(tcp, stall_timeout);
        }
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);
    tracing::info!(%addr, workers, "ipcbus listening; WebSocket at ws://{addr}/ws");
    tracing::info!("dashboard: {}", crate::ui::url(addr, state.access.token()));
    if config.selftest {
        actix_web::rt::spawn(selftest::run(state.clone()));
    }
    // Idle (one atomic load a second) until someone watches; ends at shutdown.
    let stats = actix_web::rt::spawn(crate::sys::publish_stats(state.clone()));
    // After the registry exists; it stops when `stop_tx` flips.
    let bridge = match (&config.kodi, kodi) {
        (Some(url), Some(status)) => Some(actix_web::rt::spawn(crate::kodi::run(
            url.clone(),
            state.registry.clone(),
            status,
            state.shutdown.clone(),
        ))),
        _ => None,
    };
    let mut lease = backplane
        .as_ref()
        .zip(config.backplane.as_ref())
        .map(|(b, settings)| {
            tokio::spawn(crate::backplane::lease::keep_lease(
                b.clone(),
                settings.lease_ttl(),
                first_lease,
                lost_tx,
            ))
        });
    // Until told to stop, or until the bucket is no longer the one this
    // server mirrors (`keep_lease`).
    let failed = match lease.as_mut() {
        Some(keeping) => tokio::select! {
            () = &mut shutdown => None,
            ended = keeping => Some(ended.unwrap_or_else(anyhow::Error::new)),
        },
        None => {
            shutdown.await;
            None
        }
    };
    if let Some(e) = &failed {
        tracing::error!("{e:#}");
        lease = None;
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = stats.await;
    if let Some(bridge) = bridge {
        let _ = bridge.await;
    }
    handle.stop(true).await;
    let result = running.await.map_err(std::io::Error::other)?;
    if let Some(follow) = follow {
        let _ = follow.await;
    }
    if let (Some(lease), Some(backplane)) = (lease, &backplane) {
        // Gone at once: the others need not wait for it to run out.
        lease.abort();
        if let Err(e) = backplane.drop_lease().await {
            tracing::warn!("backplane: cannot remove this server's lease: {e}");
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    match failed {
        Some(e) => Err(std::io::Error::other(e)),
        None => result,
    }
}

/// Writes this server's lease for the first time, trying again every
/// second until it is stored: serving without one, a server starting
/// meanwhile would take this server's ephemeral keys for orphans.
async fn first_lease_write(backplane: &crate::backplane::NatsBackplane, ttl: Duration) -> u64 {
    every_second_until_ok("write this server's lease", || async {
        backplane.write_lease(ttl, 0, &mut false).await
    })
    .await
}

/// Runs `attempt` until it succeeds, a second apart; the first failure is
/// logged (`cannot <what> yet`), the others not.
async fn every_second_until_ok<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut warned = false;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) if !warned => {
                tracing::warn!("backplane: cannot {what} yet: {e:#}; trying again");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Opens the data file and takes in what it holds.
fn open_store(
    data_dir: &std::path::Path,
    options: RegistryOptions,
) -> std::io::Result<(Store, Registry, String)> {
    let (store, restored) = Store::open(data_dir).map_err(std::io::Error::other)?;
    if !restored.clean {
        tracing::warn!(
            "the last run did not shut down cleanly; the store gets a new id, so clients replay instead of resuming"
        );
    }
    tracing::info!(
        keys = restored.keys.len(),
        rev = restored.rev,
        "store {} opened",
        data_dir.join(ipcbus_actors::store::DATA_FILE).display()
    );
    let registry = Registry::with_store(store.clone(), options);
    registry.restore(restored.keys);
    Ok((store, registry, restored.store_id))
}

/// Loads the mirror from the bucket (before the server answers anyone,
/// so no client sees it half loaded), up to this server's `first_lease`
/// write at least, then follows the bucket until `stop`.
/// A feed that cannot start or load (NATS busy electing a leader, or too
/// slow to answer within `write_timeout_ms`) is tried again every second,
/// as the first lease write is: changes applied by a failed try are
/// skipped by the key actors when the next one replays them, and its keys
/// that the next one does not bring are forgotten.
async fn start_feed(
    backplane: &crate::backplane::NatsBackplane,
    registry: &Registry,
    first_lease: u64,
    stop: watch::Receiver<bool>,
    lost: watch::Receiver<u64>,
) -> actix_web::rt::task::JoinHandle<()> {
    let (follower, feed) = every_second_until_ok("load the mirror", || async {
        let mut follower = crate::backplane::Follower::new(registry.clone(), backplane.clone());
        let mut feed = crate::backplane::Feed::start(backplane).await?;
        follower.catch_up(&mut feed, first_lease).await?;
        anyhow::Ok((follower, feed))
    })
    .await;
    tracing::info!(
        store = backplane.store_id(),
        node = backplane.node(),
        "backplane: mirror of the bucket loaded"
    );
    actix_web::rt::spawn(follower.run(feed, stop, lost))
}
