//! The lattice: hosts sharing one NATS account and lattice name. This crate holds the protocol
//! (subjects, heartbeats, placements, forwarded requests) and its NATS transport (JetStream
//! key-value, a chunked blob store, the leader lease); it knows nothing of wasm or HTTP serving.

pub mod auth;
pub mod blobs;
pub mod directory;
pub mod jetstream;
pub mod lease;
pub mod objects;
pub mod protocol;
pub mod state;

pub use auth::{NatsAuth, NatsAuthError, Secret};
pub use blobs::LatticeBlobs;
pub use directory::{Directory, KnownHost};
pub use jetstream::{redact_credentials, Cas, CasFailed, Entry, JetStream, Kv, LatticeError};
pub use lease::{Lease, LeaseRecord, LeaseState};
pub use objects::{ObjectInfo, ObjectStore};
pub use protocol::*;
pub use state::{desired_apps, placements, Leadership};
pub use weft_api::{InventoryApp, InventoryComponent};

/// Whether `name` can be a lattice name or host id: one NATS subject token of letters, digits,
/// `-` and `_`.
pub fn is_valid_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
