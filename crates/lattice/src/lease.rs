//! The leader lease: one key of the state bucket naming its holder and when the lease expires.
//! Taking, renewing and handing it over are compare-and-set writes, so two hosts can never both
//! believe they hold it past one renewal, and a host that was paused past the TTL finds its
//! renewal refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jetstream::{Kv, LatticeError};
use crate::protocol::LEASE_KEY;

/// The lease's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    /// Counts leaderships: every new holder takes the next term.
    pub term: u64,
    pub expires_at_ms: u64,
}

/// What this host is after a lease round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This host holds the lease for `term`.
    Leader { term: u64 },
    /// Another host holds it (None: nobody, and this host could not take it this round).
    Follower { holder: Option<String> },
}

/// One host's side of the lease.
pub struct Lease {
    kv: Kv,
    holder: String,
    ttl: Duration,
    /// The revision of the lease this host last wrote, while it believes it leads.
    held: Option<(u64, u64)>,
}

impl Lease {
    /// `holder`'s view of the lease in `kv`, expiring `ttl` after each renewal.
    pub fn new(kv: Kv, holder: &str, ttl: Duration) -> Self {
        Lease {
            kv,
            holder: holder.to_string(),
            ttl,
            held: None,
        }
    }

    /// Renews the lease this host holds, or takes it when it is free, expired or held by this
    /// host's identity before a restart. Every write is a compare-and-set on the revision read.
    pub async fn round(&mut self, now_ms: u64) -> Result<LeaseState, LatticeError> {
        let entry = self.kv.entry(LEASE_KEY).await?;
        let (revision, record) = match &entry {
            None => (0, None),
            Some(e) => (
                e.revision,
                e.value
                    .as_ref()
                    .and_then(|v| serde_json::from_slice::<LeaseRecord>(v).ok()),
            ),
        };
        let term = match &record {
            Some(r) if r.holder == self.holder => {
                if let Some((held_revision, _)) = self.held {
                    if held_revision != revision {
                        tracing::warn!(
                            "leader lease moved on without this host (revision {revision}, \
                             expected {held_revision})"
                        );
                    }
                }
                r.term
            }
            Some(r) if r.expires_at_ms > now_ms => {
                if self.held.take().is_some() {
                    tracing::warn!(leader = %r.holder, term = r.term, "lost the leader lease");
                }
                return Ok(LeaseState::Follower {
                    holder: Some(r.holder.clone()),
                });
            }
            Some(r) => r.term + 1,
            None => 1,
        };
        let next = LeaseRecord {
            holder: self.holder.clone(),
            term,
            expires_at_ms: now_ms + self.ttl.as_millis() as u64,
        };
        let body = serde_json::to_vec(&next).unwrap_or_default();
        match self.kv.update(LEASE_KEY, body.into(), revision).await? {
            Ok(new_revision) => {
                if self.held.is_none_or(|(_, t)| t != term) {
                    tracing::info!(term, "took the leader lease");
                }
                self.held = Some((new_revision, term));
                Ok(LeaseState::Leader { term })
            }
            Err(_) => {
                if self.held.take().is_some() {
                    tracing::warn!(
                        "leader lease compare-and-set failed: another host took it; stepping down"
                    );
                }
                Ok(LeaseState::Follower { holder: None })
            }
        }
    }

    /// Gives the lease up (on a clean shutdown) so another host takes over without waiting for
    /// the TTL; does nothing unless this host still holds the revision it wrote.
    pub async fn release(&mut self) -> Result<(), LatticeError> {
        let Some((revision, term)) = self.held.take() else {
            return Ok(());
        };
        let expired = LeaseRecord {
            holder: self.holder.clone(),
            term,
            expires_at_ms: 0,
        };
        let body = serde_json::to_vec(&expired).unwrap_or_default();
        let _ = self.kv.update(LEASE_KEY, body.into(), revision).await?;
        Ok(())
    }
}
