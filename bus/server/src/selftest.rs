//! The self-test: set, get and subscribe on a reserved key, through a real
//! client over the real socket, as the old datastore did at startup; run
//! again on demand by `POST /v1/selftest` (the dashboard's button).

use crate::app::AppState;
use actix_web::{web, HttpResponse};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use ipcbus_client::{Client, ClientOptions, Event};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The reserved key the self-test writes (then deletes); on a backplane,
/// followed by `.<server id>`.
pub(crate) const SELFTEST_KEY: &str = "ipcbus.selftest";
/// How long the whole self-test may take.
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One self-test run's outcome and how long it took.
type Outcome = (String, Duration);

/// The run under way, if any. Everyone who asks for a self-test while one
/// runs gets that run's outcome: no queue of runs builds up however often
/// it is asked for, and two runs never write the key at once.
#[derive(Default)]
pub(crate) struct Runs(std::sync::Mutex<Option<Shared<BoxFuture<'static, Outcome>>>>);

/// Runs the self-test, or joins the run under way; records the outcome (as
/// `/health` and `ipcbus.sys.stats` show it) and returns it with how long
/// the run took.
pub(crate) async fn run(state: web::Data<AppState>) -> Outcome {
    let run = {
        let mut slot = state
            .selftest_runs
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(run) if run.peek().is_none() => run.clone(),
            _ => {
                // A task of its own: the run finishes (and deletes its key)
                // even if every request that waits for it goes away.
                let task = tokio::spawn(run_once(state.clone()));
                let run = async move {
                    task.await
                        .unwrap_or_else(|_| ("failed: the run stopped".to_owned(), Duration::ZERO))
                }
                .boxed()
                .shared();
                *slot = Some(run.clone());
                run
            }
        }
    };
    run.await
}

async fn run_once(state: web::Data<AppState>) -> Outcome {
    let started = Instant::now();
    let token = state.access.token().map(str::to_owned);
    let key = state.selftest_key.as_str();
    let outcome = match tokio::time::timeout(SELFTEST_TIMEOUT, check(state.addr, token, key)).await
    {
        Ok(Ok(())) => {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!("self-test passed in {ms:.1} ms (set, get, subscribe on {key})");
            "passed".to_owned()
        }
        Ok(Err(e)) => {
            tracing::error!("self-test FAILED: {e}");
            format!("failed: {e}")
        }
        Err(_) => {
            tracing::error!("self-test FAILED: no answer within {SELFTEST_TIMEOUT:?}");
            "failed: timeout".to_owned()
        }
    };
    state.set_selftest(outcome.clone());
    (outcome, started.elapsed())
}

/// `POST /v1/selftest`: runs the self-test now and answers its outcome,
/// `200 {"selftest":"passed","ms":…}`, or `503` with `"failed: <reason>"`.
pub(crate) async fn handler(state: web::Data<AppState>) -> HttpResponse {
    let (outcome, took) = run(state).await;
    let ms = (took.as_secs_f64() * 1e4).round() / 10.0;
    let body = serde_json::json!({ "selftest": outcome, "ms": ms });
    if outcome == "passed" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn check(addr: SocketAddr, token: Option<String>, key: &str) -> Result<(), String> {
    let url = format!("ws://{addr}/ws");
    let options = ClientOptions {
        token,
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&url, options)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut events = client
        .subscribe(key)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let rev = client
        .set(key, &nonce)
        .await
        .map_err(|e| format!("set: {e}"))?;
    let got: String = client.get(key).await.map_err(|e| format!("get: {e}"))?;
    if got != nonce {
        return Err(format!("get returned {got:?}, expected {nonce:?}"));
    }
    loop {
        match events.next().await {
            Some(Event::Value { rev: r, .. }) if r == rev => break,
            Some(_) => continue,
            None => return Err("subscription ended before the write arrived".to_owned()),
        }
    }
    client.del(key).await.map_err(|e| format!("del: {e}"))?;
    Ok(())
}
