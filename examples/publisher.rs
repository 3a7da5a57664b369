//! A background service that gathers slow data and publishes it.
//!
//! Run it (with `cargo run --release -p ipcbus -- serve` running):
//!
//!     cargo run -p ipcbus-examples --bin publisher
//!
//! It publishes `svc.weather.today` after each (simulated, slow) scrape,
//! marks itself online at `svc.weather.online` (ephemeral: the bus deletes
//! it if the service dies), and scrapes again at once when someone sets
//! `svc.weather.refresh` (see the `hotkey` example). It never polls:
//! refresh requests are pushed to it. It keeps running when the bus
//! restarts: the client reconnects, its subscription and its online flag
//! carry on, and a scrape the bus could not take is reported and skipped.
//! `IPCBUS_URL` picks the server (default `ws://127.0.0.1:9099/ws`);
//! `SCRAPES=N` stops after N scrapes.

use futures_util::StreamExt;
use ipcbus_client::{Client, Error, Event, SetOptions};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the pretend scrape takes.
const SCRAPE_TIME: Duration = Duration::from_millis(300);
/// How often the service scrapes on its own.
const PERIOD: Duration = Duration::from_secs(30);

#[derive(Serialize)]
struct Weather {
    city: &'static str,
    temp_c: f64,
    scraped_at: u64,
    scrape: u64,
}

async fn scrape(n: u64) -> Weather {
    tokio::time::sleep(SCRAPE_TIME).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Weather {
        city: "Oslo",
        temp_c: -3.0 + (n % 7) as f64 * 0.5,
        scraped_at: now.as_secs(),
        scrape: n,
    }
}

#[tokio::main]
async fn main() -> Result<(), ipcbus_client::Error> {
    let url = std::env::var("IPCBUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:9099/ws".into());
    let limit: Option<u64> = std::env::var("SCRAPES").ok().and_then(|n| n.parse().ok());
    let bus = Client::connect(&url).await?;
    let mut refresh = bus.subscribe("svc.weather.refresh").await?;
    // A refresh request left from before this service started is not one for it.
    while let Some(event) = refresh.next().await {
        if event == Event::Synced {
            break;
        }
    }
    let online = SetOptions {
        ephemeral: true,
        ..SetOptions::default()
    };
    bus.set_with("svc.weather.online", &true, online).await?;
    // The first tick is a period away: the first scrape happens right here.
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + PERIOD, PERIOD);
    for n in 1.. {
        match bus.set("svc.weather.today", &scrape(n).await).await {
            Ok(rev) => println!("published scrape {n} as rev {rev}"),
            // The bus was away for longer than the call timeout, or went
            // away under the write: the next scrape replaces this one anyway.
            Err(e @ Error::Unavailable { .. }) => eprintln!("scrape {n} not published: {e}"),
            Err(e) => return Err(e),
        }
        if limit.is_some_and(|l| n >= l) {
            break;
        }
        // Wait for the timer or a refresh request, whichever comes first.
        loop {
            tokio::select! {
                _ = timer.tick() => break,
                ev = refresh.next() => match ev {
                    Some(Event::Value { .. }) => break,
                    Some(_) => continue,
                    None => return Ok(()), // the client was closed
                },
            }
        }
    }
    bus.set("svc.weather.online", &false).await?;
    Ok(())
}
