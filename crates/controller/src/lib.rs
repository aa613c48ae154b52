//! The lattice's controller. Every host runs one; the one holding the leader lease reconciles
//! the desired apps (JetStream KV) against the live hosts (heartbeats) into the placement
//! document, which every host applies to itself.

pub mod scaler;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_lattice::{
    desired_apps, now_ms, placements, AppPlacement, AppRecord, Directory, Heartbeat, Kv,
    LatticeError, LatticePhase, Leadership, Lease, LeaseState, Placements, Subjects,
    PLACEMENTS_KEY,
};

use scaler::{place, HostView};
use weft_manifest::Scaler;

/// How often the controller runs a round (lease, then reconcile when leading).
pub const ROUND: Duration = Duration::from_millis(500);
/// How long the lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// Events kept per app.
const EVENTS_KEPT: usize = 10;

/// A desired app and the placement its manifest asks for (or why it cannot be placed).
#[derive(Debug, Clone)]
pub struct Desired {
    pub record: AppRecord,
    pub scaler: Result<Scaler, Unplaceable>,
}

/// Why a desired app cannot be placed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unplaceable {
    #[error("{0}")]
    Manifest(Arc<weft_manifest::ManifestError>),
    #[error("{0}")]
    Conflict(#[from] weft_manifest::ScalerConflict),
}

impl Desired {
    /// Reads the scaler from the record's locked app (or its manifest, for an older record).
    pub fn new(record: AppRecord) -> Self {
        let scaler = match &record.app {
            Some(app) => app.scaler().map_err(Unplaceable::from),
            None => weft_manifest::parse(&record.manifest, &record.origin)
                .map_err(|e| Unplaceable::Manifest(Arc::new(e)))
                .and_then(|manifest| Ok(manifest.scaler()?)),
        };
        Desired { record, scaler }
    }
}

/// The inputs of one reconcile.
pub struct World<'a> {
    pub apps: &'a [Desired],
    pub hosts: &'a [Heartbeat],
    /// Hosts that were alive last round and are not now.
    pub lost: &'a BTreeSet<String>,
    /// Hosts alive now that were not last round.
    pub joined: &'a BTreeSet<String>,
    pub time: String,
}

/// Computes the placement document for `world` from the previous one: where each app goes,
/// its phase and reason from what hosts report, and an event for every move.
pub fn reconcile(previous: &Placements, world: &World<'_>) -> BTreeMap<String, AppPlacement> {
    let views: Vec<HostView> = world
        .hosts
        .iter()
        .map(|h| HostView {
            id: h.host.clone(),
            labels: h.labels.clone(),
        })
        .collect();
    let mut out = BTreeMap::new();
    for Desired { record, scaler } in world.apps {
        let before = previous.apps.get(&record.name);
        let mut events = before.map(|b| b.events.clone()).unwrap_or_default();
        let (hosts, waiting) = match scaler {
            Ok(scaler) => {
                let placed = place(scaler, &views);
                (placed.hosts, placed.waiting)
            }
            Err(reason) => {
                out.insert(
                    record.name.clone(),
                    AppPlacement {
                        version: record.version.clone(),
                        hosts: BTreeMap::new(),
                        phase: LatticePhase::Failed,
                        reason: Some(reason.to_string()),
                        events,
                    },
                );
                continue;
            }
        };
        let old_hosts: BTreeSet<&String> =
            before.map(|b| b.hosts.keys().collect()).unwrap_or_default();
        let new_hosts: BTreeSet<&String> = hosts.keys().collect();
        if before.is_none_or(|b| b.version != record.version) {
            events.push(format!(
                "{}: version {} placed on {}",
                world.time,
                record.version,
                list(&new_hosts)
            ));
        } else if old_hosts != new_hosts {
            let lost: Vec<&str> = old_hosts
                .difference(&new_hosts)
                .filter(|h| world.lost.contains(h.as_str()))
                .map(|h| h.as_str())
                .collect();
            let joined: Vec<&str> = new_hosts
                .difference(&old_hosts)
                .filter(|h| world.joined.contains(h.as_str()))
                .map(|h| h.as_str())
                .collect();
            let mut why = String::new();
            if !lost.is_empty() {
                why.push_str(&format!("host {} lost; ", lost.join(", ")));
            }
            if !joined.is_empty() {
                why.push_str(&format!("host {} joined; ", joined.join(", ")));
            }
            events.push(format!(
                "{}: {why}moved from {} to {}",
                world.time,
                list(&old_hosts),
                list(&new_hosts)
            ));
        }
        let drop = events.len().saturating_sub(EVENTS_KEPT);
        events.drain(..drop);
        let (phase, reason) = phase(record, &hosts, waiting, world.hosts);
        out.insert(
            record.name.clone(),
            AppPlacement {
                version: record.version.clone(),
                hosts,
                phase,
                reason,
                events,
            },
        );
    }
    out
}

fn list(hosts: &BTreeSet<&String>) -> String {
    if hosts.is_empty() {
        "no host".into()
    } else {
        hosts
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What is true of an app: a host failing it wins, then a requirement nobody meets, then hosts
/// still starting it.
fn phase(
    record: &AppRecord,
    placed: &BTreeMap<String, u32>,
    waiting: Option<String>,
    hosts: &[Heartbeat],
) -> (LatticePhase, Option<String>) {
    let mut starting = Vec::new();
    for host in placed.keys() {
        let running = hosts
            .iter()
            .find(|h| &h.host == host)
            .and_then(|h| h.apps.iter().find(|a| a.app == record.name));
        match running {
            Some(a) if a.version == record.version && a.phase == "failed" => {
                return (
                    LatticePhase::Failed,
                    Some(format!(
                        "host {host}: {}",
                        a.reason.clone().unwrap_or_default()
                    )),
                );
            }
            Some(a) if a.version == record.version && a.phase == "deployed" => {}
            _ => starting.push(host.as_str()),
        }
    }
    if let Some(waiting) = waiting {
        return (LatticePhase::Waiting, Some(waiting));
    }
    if starting.is_empty() {
        (LatticePhase::Deployed, None)
    } else {
        (
            LatticePhase::Deploying,
            Some(format!("starting on {}", starting.join(", "))),
        )
    }
}

/// One host's controller.
pub struct Controller {
    kv: Kv,
    lease: Lease,
    host: String,
    subjects: Subjects,
    client: async_nats::Client,
    directory: Arc<Directory>,
    leadership: Arc<Mutex<Leadership>>,
    /// Hosts alive at the last round this host led.
    known: Option<BTreeSet<String>>,
    /// Each desired app as last read, so a version's manifest is parsed once, not every round.
    desired: Vec<Desired>,
}

impl Controller {
    /// A controller for `host`, electing through `kv` and reporting to `leadership`.
    pub fn new(
        kv: Kv,
        host: &str,
        subjects: Subjects,
        client: async_nats::Client,
        directory: Arc<Directory>,
        leadership: Arc<Mutex<Leadership>>,
    ) -> Self {
        Controller {
            lease: Lease::new(kv.clone(), host, LEASE_TTL),
            kv,
            host: host.to_string(),
            subjects,
            client,
            directory,
            leadership,
            known: None,
            desired: Vec::new(),
        }
    }

    /// Runs rounds until `stop` resolves, then gives up the lease.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!("controller round failed: {e}");
            }
        }
        if let Err(e) = self.lease.release().await {
            tracing::warn!("could not release the leader lease: {e}");
        }
    }

    fn set_leadership(&self, leadership: Leadership) {
        *self.leadership.lock().unwrap_or_else(|e| e.into_inner()) = leadership;
    }

    async fn round(&mut self) -> Result<(), LatticeError> {
        let term = match self.lease.round(now_ms()).await? {
            LeaseState::Leader { term } => term,
            LeaseState::Follower { holder } => {
                self.known = None;
                self.set_leadership(Leadership {
                    leading: false,
                    term: 0,
                    leader: holder,
                });
                return Ok(());
            }
        };
        self.set_leadership(Leadership {
            leading: true,
            term,
            leader: Some(self.host.clone()),
        });
        // A host just started has not heard every live host yet; placing now would move apps
        // off hosts it merely has not heard from.
        if !self.directory.settled() {
            return Ok(());
        }
        let (revision, previous) = placements(&self.kv).await?;
        if previous.term > term {
            tracing::warn!(
                term,
                newer = previous.term,
                "placements were written by a newer leader; not reconciling"
            );
            return Ok(());
        }
        let hosts = self.directory.alive();
        let alive: BTreeSet<String> = hosts.iter().map(|h| h.host.clone()).collect();
        let lost: BTreeSet<String> = match &self.known {
            Some(known) => known.difference(&alive).cloned().collect(),
            // Taking over: the hosts the previous leader placed on and nobody hears are lost.
            None => previous
                .apps
                .values()
                .flat_map(|a| a.hosts.keys())
                .filter(|h| !alive.contains(*h))
                .cloned()
                .collect(),
        };
        let joined: BTreeSet<String> = match &self.known {
            Some(known) => alive.difference(known).cloned().collect(),
            None => BTreeSet::new(),
        };
        for host in &lost {
            tracing::warn!(%host, "host lost (no heartbeat)");
            self.publish("host_lost", serde_json::json!({ "host": host }))
                .await;
        }
        for host in &joined {
            tracing::info!(%host, "host joined");
            self.publish("host_joined", serde_json::json!({ "host": host }))
                .await;
        }
        self.known = Some(alive);
        let records = desired_apps(&self.kv).await?;
        let mut known: BTreeMap<String, Desired> = std::mem::take(&mut self.desired)
            .into_iter()
            .map(|d| (d.record.name.clone(), d))
            .collect();
        self.desired = records
            .into_iter()
            .map(|record| {
                known
                    .remove(&record.name)
                    .filter(|d| d.record == record)
                    .unwrap_or_else(|| Desired::new(record))
            })
            .collect();
        let world = World {
            apps: &self.desired,
            hosts: &hosts,
            lost: &lost,
            joined: &joined,
            time: time_of_day(now_ms()),
        };
        let next = Placements {
            term,
            leader: self.host.clone(),
            apps: reconcile(&previous, &world),
        };
        if next == previous {
            return Ok(());
        }
        let body = serde_json::to_vec(&next).unwrap_or_default();
        match self.kv.update(PLACEMENTS_KEY, body.into(), revision).await? {
            Ok(_) => {
                for (app, placement) in &next.apps {
                    if previous.apps.get(app) != Some(placement) {
                        tracing::info!(%app, phase = %placement.phase, hosts = ?placement.hosts, "placed");
                    }
                }
                self.publish("placed", serde_json::json!({ "term": term }))
                    .await;
            }
            Err(_) => tracing::warn!(
                term,
                "placements compare-and-set failed: another leader wrote them; this host is stale and steps down"
            ),
        }
        Ok(())
    }

    async fn publish(&self, kind: &str, body: serde_json::Value) {
        if let Err(e) = self
            .client
            .publish(self.subjects.event(kind), body.to_string().into())
            .await
        {
            tracing::debug!("cannot publish event {kind}: {e}");
        }
    }
}

/// `HH:MM:SS` UTC of a timestamp, for events.
pub fn time_of_day(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_lattice::InventoryApp;

    fn record() -> AppRecord {
        AppRecord {
            name: "web".into(),
            version: "v1".into(),
            manifest: r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: web, annotations: { version: v1 } }
spec:
  components:
    - name: web
      type: component
      properties: { image: ./web.wasm }
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread: [{ name: east, requirements: { zone: a } }]
"#
            .into(),
            origin: "web.yaml".into(),
            images: Default::default(),
            deployed_at: 0,
            app: None,
        }
    }

    fn host(id: &str, zone: &str, running: Option<(&str, Option<&str>)>) -> Heartbeat {
        Heartbeat {
            host: id.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            version: "0".into(),
            started_at_ms: 0,
            sent_at_ms: 0,
            http: None,
            control: None,
            leader: false,
            apps: running
                .map(|(phase, reason)| InventoryApp {
                    app: "web".into(),
                    version: "v1".into(),
                    phase: phase.into(),
                    reason: reason.map(str::to_string),
                    components: Vec::new(),
                })
                .into_iter()
                .collect(),
        }
    }

    fn world<'a>(
        apps: &'a [Desired],
        hosts: &'a [Heartbeat],
        lost: &'a BTreeSet<String>,
        joined: &'a BTreeSet<String>,
    ) -> World<'a> {
        World {
            apps,
            hosts,
            lost,
            joined,
            time: "00:00:00".into(),
        }
    }

    #[test]
    fn a_lost_host_s_app_moves_and_the_move_says_why() {
        let apps = [Desired::new(record())];
        let none = BTreeSet::new();
        let hosts = [
            host("h1", "a", Some(("deployed", None))),
            host("h2", "a", None),
        ];
        let first = Placements {
            apps: reconcile(&Placements::default(), &world(&apps, &hosts, &none, &none)),
            ..Default::default()
        };
        let web = &first.apps["web"];
        assert_eq!(web.hosts, [("h1".to_string(), 1)].into());
        assert_eq!(web.phase, LatticePhase::Deployed);
        assert!(
            web.events[0].contains("version v1 placed on h1"),
            "{:?}",
            web.events
        );

        let lost: BTreeSet<String> = ["h1".to_string()].into();
        let hosts = [host("h2", "a", None)];
        let second = reconcile(&first, &world(&apps, &hosts, &lost, &none));
        let web = &second["web"];
        assert_eq!(web.hosts, [("h2".to_string(), 1)].into());
        assert_eq!(web.phase, LatticePhase::Deploying);
        assert!(
            web.events[1].contains("host h1 lost; moved from h1 to h2"),
            "{:?}",
            web.events
        );
    }

    #[test]
    fn a_host_failing_the_app_makes_it_failed_with_the_host_s_reason() {
        let apps = [Desired::new(record())];
        let none = BTreeSet::new();
        let hosts = [host(
            "h1",
            "a",
            Some(("failed", Some("imports cannot be satisfied"))),
        )];
        let placed = reconcile(&Placements::default(), &world(&apps, &hosts, &none, &none));
        let web = &placed["web"];
        assert_eq!(web.phase, LatticePhase::Failed);
        assert_eq!(
            web.reason.as_deref(),
            Some("host h1: imports cannot be satisfied")
        );
        let hosts = [host("h1", "b", None)];
        let placed = reconcile(&Placements::default(), &world(&apps, &hosts, &none, &none));
        assert_eq!(placed["web"].phase, LatticePhase::Waiting);
        assert!(placed["web"].reason.as_ref().unwrap().contains("zone=a"));
    }
}
