//! Recent events of a host and its lattice, kept in memory for the dashboard and `/v1/events`:
//! deploys, undeploys, re-links of the fleet patch, refused deploys, hosts lost and joined.

use std::collections::VecDeque;
use std::sync::Mutex;

use weft_api::Event;

/// How many events are kept; older ones are dropped.
const KEPT: usize = 200;

/// The most recent events, oldest first.
#[derive(Default)]
pub struct Events {
    recent: Mutex<VecDeque<Event>>,
}

impl Events {
    /// Records an event of `kind` happening now.
    pub fn record(&self, kind: &str, text: impl Into<String>) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(Event {
            at_ms,
            kind: kind.to_string(),
            text: text.into(),
        });
    }

    /// The kept events, newest first.
    pub fn recent(&self) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_come_first_and_the_oldest_go() {
        let events = Events::default();
        for i in 0..KEPT + 5 {
            events.record("deployed", format!("app{i}"));
        }
        let recent = events.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].text, format!("app{}", KEPT + 4));
        assert_eq!(recent[KEPT - 1].text, "app5");
    }
}
