//! Reading the lattice's shared state: desired apps and the placement document.

use crate::jetstream::{Kv, LatticeError};
use crate::protocol::{AppRecord, Placements, APP_PREFIX, PLACEMENTS_KEY};

/// The desired apps in the state bucket.
pub async fn desired_apps(kv: &Kv) -> Result<Vec<AppRecord>, LatticeError> {
    let mut apps = Vec::new();
    for (key, value) in kv.values(APP_PREFIX).await? {
        match serde_json::from_slice::<AppRecord>(&value) {
            Ok(record) => apps.push(record),
            Err(e) => tracing::warn!(%key, "ignoring an unreadable app record: {e}"),
        }
    }
    Ok(apps)
}

/// The placement document and its revision (0 when never written).
pub async fn placements(kv: &Kv) -> Result<(u64, Placements), LatticeError> {
    Ok(match kv.entry(PLACEMENTS_KEY).await? {
        Some(entry) => (
            entry.revision,
            entry
                .value
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default(),
        ),
        None => (0, Placements::default()),
    })
}

/// What this host's controller knows of the leadership, for heartbeats and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leading: bool,
    pub term: u64,
    pub leader: Option<String>,
}
