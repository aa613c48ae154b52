//! Schedule ticks in a lattice: every host running a scheduled component wakes for each tick,
//! and the one whose compare-and-set moves the schedule's last tick forward handles it. No
//! leader is involved, so losing one neither doubles nor skips a tick; a host that dies after
//! claiming a tick loses that tick only.

use futures::future::BoxFuture;
use weft_lattice::{Kv, TICK_PREFIX};

use crate::ClaimTicks;

/// Claims ticks in the lattice's state bucket.
pub(super) struct LatticeTicks(pub(super) Kv);

/// The state-bucket key of a schedule: names reduced to the characters a key may hold.
fn tick_key([app, schedule, component]: [&str; 3]) -> String {
    let clean = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{TICK_PREFIX}{}.{}.{}",
        clean(app),
        clean(schedule),
        clean(component)
    )
}

impl ClaimTicks for LatticeTicks {
    fn claim(&self, schedule: [&str; 3], due_ms: u64) -> BoxFuture<'static, Result<bool, String>> {
        let kv = self.0.clone();
        let key = tick_key(schedule);
        Box::pin(async move {
            loop {
                let entry = kv.entry(&key).await.map_err(|e| e.to_string())?;
                let (last, revision) = match &entry {
                    Some(entry) => (
                        entry
                            .value
                            .as_ref()
                            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                            .unwrap_or(0),
                        entry.revision,
                    ),
                    None => (0, 0),
                };
                if last >= due_ms {
                    return Ok(false);
                }
                let value = due_ms.to_string().into();
                match kv.update(&key, value, revision).await {
                    Ok(Ok(_)) => return Ok(true),
                    // Another host wrote first: read what it claimed.
                    Ok(Err(_)) => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_hold_only_what_a_key_may() {
        assert_eq!(
            super::tick_key(["shop", "nightly.job", "a b"]),
            "tick.shop.nightly_job.a_b"
        );
    }
}
