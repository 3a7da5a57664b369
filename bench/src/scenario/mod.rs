//! The scenarios of the side-by-side comparison, each written once over
//! the load generator's traits (`crate::load`).
//!
//! # Layout
//! - `throughput`: (a), (b), (c): sustained lossless deliveries/s.
//! - `latency`: (d): publish-to-delivery latency at a fixed rate.
//! - `fresh`: (e): many new clients get one key's current value.
//! - `stall`: (g): a subscriber that stops reading, beside a healthy one.
//! - `durable`: (h): writes acknowledged once on disk, ipcbus and Redis.

pub(crate) mod durable;
pub(crate) mod fresh;
pub(crate) mod latency;
pub(crate) mod stall;
pub(crate) mod throughput;
