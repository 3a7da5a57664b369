//! A hotkey script, run once: it asks the weather service to refresh now.
//! The service reacts within milliseconds, because the request is pushed to it.
//!
//! Run it (with the server and the `publisher` example running):
//!
//!     cargo run -p ipcbus-examples --bin hotkey
//!
//! `IPCBUS_URL` picks the server (default `ws://127.0.0.1:9099/ws`).

use ipcbus_client::Client;
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> Result<(), ipcbus_client::Error> {
    let url = std::env::var("IPCBUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:9099/ws".into());
    let bus = Client::connect(&url).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let rev = bus
        .set("svc.weather.refresh", &now.as_millis().to_string())
        .await?;
    println!("refresh requested (rev {rev})");
    Ok(())
}
