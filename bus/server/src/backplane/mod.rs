//! The NATS backplane: several servers share one keyspace through a NATS
//! JetStream key-value bucket (docs/scaling.md). Being built in slices;
//! today: the mapping of keys to subjects.

// Used by the parts still to come (docs/scaling.md §10).
#[allow(dead_code)]
pub(crate) mod subject;
