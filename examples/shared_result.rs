//! Several processes need the same slow, I/O-bound result: it is gathered
//! once, by whichever process claims it first, and every process watches it.
//!
//! Run it several times at once (with the server running):
//!
//!     for i in 1 2 3; do cargo run -q -p ipcbus-examples --bin shared_result & done; wait
//!
//! Each prints the result; exactly one says it gathered it. The claim is a
//! compare-and-set on `shared.forecast.claim` (rev 0: only if nobody claimed).
//! `IPCBUS_URL` picks the server (default `ws://127.0.0.1:9099/ws`).

use ipcbus_client::{Client, ErrorCode};
use std::time::Duration;

const KEY: &str = "shared.forecast";

async fn gather() -> Vec<&'static str> {
    tokio::time::sleep(Duration::from_millis(500)).await; // the slow part, done once
    vec!["sun", "rain", "sun"]
}

#[tokio::main]
async fn main() -> Result<(), ipcbus_client::Error> {
    let url = std::env::var("IPCBUS_URL").unwrap_or_else(|_| "ws://127.0.0.1:9099/ws".into());
    let bus = Client::connect(&url).await?;
    let result = bus.watch(KEY).await?;
    let role = match bus
        .set_if(&format!("{KEY}.claim"), &std::process::id(), 0)
        .await
    {
        Ok(_) => {
            bus.set(KEY, &gather().await).await?;
            "gathered"
        }
        Err(e) if e.code() == Some(ErrorCode::RevMismatch) => "shared",
        Err(e) => return Err(e),
    };
    result.synced().await?;
    loop {
        let changed = result.changed();
        if let Some(days) = result.get::<Vec<String>>(KEY) {
            println!("{role} {:?}", days?);
            return Ok(());
        }
        changed.await;
    }
}
