//! Every host's view of the lattice's hosts, kept from their heartbeats.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::jetstream::LatticeError;
use crate::protocol::{Heartbeat, Subjects, HEARTBEAT_INTERVAL, MISSED_HEARTBEATS};

/// How long a host may stay silent before it counts as gone.
pub fn silence_limit() -> Duration {
    HEARTBEAT_INTERVAL * MISSED_HEARTBEATS
}

struct Seen {
    heartbeat: Heartbeat,
    at: Instant,
}

/// A host as the directory knows it.
#[derive(Debug, Clone)]
pub struct KnownHost {
    pub heartbeat: Heartbeat,
    /// Time since its last heartbeat arrived.
    pub silent_for: Duration,
    pub alive: bool,
}

/// The hosts heard from, by id; listens for as long as it lives.
pub struct Directory {
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Directory {
    /// Subscribes to the lattice's heartbeats.
    pub async fn listen(
        client: &async_nats::Client,
        subjects: &Subjects,
    ) -> Result<Self, LatticeError> {
        let mut subscriber =
            client
                .subscribe(subjects.heartbeat())
                .await
                .map_err(|e| LatticeError::Call {
                    url: String::new(),
                    what: "subscribe to heartbeats".into(),
                    reason: e.to_string(),
                })?;
        let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Some(message) = subscriber.next().await {
                    match serde_json::from_slice::<Heartbeat>(&message.payload) {
                        Ok(heartbeat) => {
                            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                            seen.insert(
                                heartbeat.host.clone(),
                                Seen {
                                    heartbeat,
                                    at: Instant::now(),
                                },
                            );
                        }
                        Err(e) => tracing::warn!("ignoring a malformed heartbeat: {e}"),
                    }
                }
            }
        });
        Ok(Directory {
            seen,
            started: Instant::now(),
            task,
        })
    }

    /// Every host heard from since this host started, alive or not.
    pub fn hosts(&self) -> Vec<KnownHost> {
        let limit = silence_limit();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.values()
            .map(|s| {
                let silent_for = s.at.elapsed();
                KnownHost {
                    heartbeat: s.heartbeat.clone(),
                    silent_for,
                    alive: silent_for < limit,
                }
            })
            .collect()
    }

    /// The hosts heard from within the silence limit.
    pub fn alive(&self) -> Vec<Heartbeat> {
        self.hosts()
            .into_iter()
            .filter(|h| h.alive)
            .map(|h| h.heartbeat)
            .collect()
    }

    /// Whether the directory has listened long enough to have heard from every live host.
    pub fn settled(&self) -> bool {
        self.started.elapsed() >= silence_limit()
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.task.abort();
    }
}
