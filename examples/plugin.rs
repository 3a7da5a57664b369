//! A plugin started at any time: it shows the service's data at once, from
//! the bus's replay, then follows every change. No polling. When the bus
//! restarts, the client reconnects and the mirror catches up by itself.
//!
//! Run it (with the server and the `publisher` example running):
//!
//!     cargo run -p ipcbus-examples --bin plugin
//!
//! `IPCBUS_URL` picks the server (default `ws://127.0.0.1:9099/ws`).
//! `UPDATES=N` exits after N live updates (0: after showing the current state).

use ipcbus_client::Client;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Weather {
    city: String,
    temp_c: f64,
    scrape: u64,
}

#[tokio::main]
async fn main() -> Result<(), ipcbus_client::Error> {
    let url = std::env::var("IPCBUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:9099/ws".into());
    let updates: Option<u64> = std::env::var("UPDATES").ok().and_then(|n| n.parse().ok());
    let bus = Client::connect(&url).await?;
    // A local mirror of the service's keys: reads never leave the process.
    let weather = bus.watch("svc.weather.>").await?;
    weather.synced().await?;
    let mut shown: Option<Option<u64>> = None; // the rev shown, once anything was
    let mut updates_seen = 0;
    loop {
        // Taken before reading, so no change can slip in between.
        let changed = weather.changed();
        // Other keys under svc.weather change too; show only new weather.
        let rev = weather.get_raw("svc.weather.today").map(|e| e.rev);
        if shown != Some(rev) {
            match weather.get::<Weather>("svc.weather.today").transpose()? {
                Some(w) => println!("{}: {:.1} °C (scrape {})", w.city, w.temp_c, w.scrape),
                None => println!("no weather yet"),
            }
            if shown.is_some() {
                updates_seen += 1;
            }
            shown = Some(rev);
        }
        if updates.is_some_and(|n| updates_seen >= n) {
            return Ok(());
        }
        changed.await;
    }
}
