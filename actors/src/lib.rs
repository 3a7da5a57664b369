//! The actors of ipcbus: one [`KeyActor`] per key, the [`Registry`] that finds
//! them and holds the pattern index, and the per-session [`Outbox`] that fan-out
//! writes into, with the slow-subscriber policy. Actix only; no sockets.
//!
//! # Layout
//! - [`update`]: [`Update`], one write of one key, shared by every delivery of it.
//! - [`outbox`]: [`Outbox`], a session's bounded, conflating output queue.
//! - [`key_actor`]: [`KeyActor`], which owns one key.
//! - [`messages`]: what a key actor takes (`Set`, `Get`, `Del`, `Attach`, `Detach`, `Release`) and [`ReplyTo`].
//! - [`passive`]: [`Passive`], a key at rest without an actor, and [`KeyMessage`], what such a key answers itself.
//! - [`registry`]: [`Registry`], the key map, the ordered key index, the rev counter, and the walks of wildcard subscriptions.
//! - [`store`]: [`Store`], persisted keys in a redb file, written in batches by one thread.
//! - `hold`: a key actor's output held back until its persisted write is on disk.
//! - [`backplane`]: the [`Backplane`] trait, a store shared with other servers
//!   (docs/scaling.md), and [`Mirror`], a write its feed brings in; `through`:
//!   how a key actor writes through it.
//!
//! # How a write flows
//! A session calls [`Registry::send`] with a `Set`. The registry hands it to the
//! key's actor, which takes the next store-wide rev, keeps the value as an
//! [`Update`], and pushes one [`Out::Event`] into the [`Outbox`] of each
//! subscriber. An outbox wakes its session once per batch, not once per event,
//! so fan-out costs no actor message per delivery.

pub mod backplane;
mod hold;
pub mod key_actor;
pub mod messages;
pub mod outbox;
pub mod passive;
pub mod registry;
pub mod store;
mod through;
pub mod update;

pub use backplane::{Backplane, Mirror};
pub use key_actor::KeyActor;
pub use messages::{Attach, Del, Detach, Get, Release, ReplyTo, Set, Subscriber};
pub use outbox::{Done, Out, Outbox, OutboxConfig};
pub use passive::{KeyMessage, Passive};
pub use registry::{Registry, RegistryOptions, Stats};
pub use store::{Store, StoreError};
pub use update::{Update, Written};
