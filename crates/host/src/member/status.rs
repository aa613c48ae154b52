//! What runs where: app and host statuses, heartbeats and control answers.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use weft_lattice::{
    desired_apps, now_ms, placements, AppRecord, Heartbeat, InventoryApp, InventoryComponent,
    LatticePhase, Placements, APP_PREFIX, HEARTBEAT_INTERVAL, VERSION_PREFIX,
};

use crate::api::{AppStatus, HostStatus, LatticeHost, LatticeInfo, Phase};
use crate::{HostError, StoredApp};

use super::{Applied, Member, MemberError};

impl Member {
    /// The desired apps and the controller's placements.
    pub async fn state_of_apps(&self) -> Result<(Vec<AppRecord>, Placements), MemberError> {
        let apps = desired_apps(&self.kv).await?;
        let (_, placements) = placements(&self.kv).await?;
        Ok((apps, placements))
    }

    /// What is true of every app of the lattice.
    pub async fn app_statuses(&self) -> Result<Vec<AppStatus>, MemberError> {
        let (records, placements) = self.state_of_apps().await?;
        let mut out = Vec::with_capacity(records.len());
        for record in &records {
            out.push(self.status_of(record, &placements).await?);
        }
        Ok(out)
    }

    /// What is true of one app of the lattice: its phase and reason, where it runs, what
    /// happened to it lately.
    pub async fn app_status(&self, name: &str) -> Result<AppStatus, MemberError> {
        let Some(value) = self.kv.get(&format!("{APP_PREFIX}{name}")).await? else {
            return Err(HostError::NotFound(name.to_string()).into());
        };
        let record: AppRecord = serde_json::from_slice(&value)
            .map_err(|e| MemberError::Refused(format!("unreadable record of `{name}`: {e}")))?;
        let (_, placements) = placements(&self.kv).await?;
        self.status_of(&record, &placements).await
    }

    pub(super) async fn status_of(
        &self,
        record: &AppRecord,
        placements: &Placements,
    ) -> Result<AppStatus, MemberError> {
        let placement = placements.apps.get(&record.name);
        let (phase, reason) = match placement {
            Some(p) if p.version == record.version => (
                match p.phase {
                    LatticePhase::Deploying => Phase::Deploying,
                    LatticePhase::Deployed => Phase::Deployed,
                    LatticePhase::Failed => Phase::Failed,
                    LatticePhase::Waiting => Phase::Waiting,
                },
                p.reason.clone(),
            ),
            _ => (
                Phase::Deploying,
                Some("waiting for the controller to place this version".into()),
            ),
        };
        let mut versions = Vec::new();
        let prefix = format!("{VERSION_PREFIX}{}.", record.name);
        for key in self.kv.keys(&prefix).await? {
            if let Some(version) = key
                .strip_prefix(&prefix)
                .and_then(|v| hex::decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
            {
                versions.push(version);
            }
        }
        let running_here = self
            .host
            .status(&record.name)
            .ok()
            .filter(|s| s.version == record.version);
        let components = match running_here {
            Some(s) => s.components,
            None => crate::status::planned_components(&self.host, &StoredApp::from(record)),
        };
        Ok(AppStatus {
            name: record.name.clone(),
            version: record.version.clone(),
            phase,
            reason,
            origin: record.origin.clone(),
            deployed_at: record.deployed_at,
            components,
            versions,
            dependents: BTreeMap::new(),
            uses: BTreeMap::new(),
            hosts: placement.map(|p| p.hosts.clone()).unwrap_or_default(),
            events: placement.map(|p| p.events.clone()).unwrap_or_default(),
            warnings: record
                .app
                .as_ref()
                .map(|app| app.warnings.clone())
                .unwrap_or_default(),
        })
    }

    /// This host's status, with its place in the lattice.
    pub fn host_status(&self) -> HostStatus {
        let mut status = self.host.host_status();
        status.lattice = Some(LatticeInfo {
            name: self.options.lattice.clone(),
            host: self.options.host_id.clone(),
            nats: weft_lattice::redact_credentials(&self.options.nats_url),
            leader: self
                .leadership
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .leader
                .clone(),
        });
        status
    }

    /// Every host heard from, with what it runs.
    pub fn lattice_hosts(&self) -> Vec<LatticeHost> {
        self.directory
            .hosts()
            .into_iter()
            .map(|h| lattice_host(h.heartbeat, h.alive, h.silent_for))
            .collect()
    }

    /// One host, asked over NATS for what it runs right now; the last heartbeat heard from it
    /// when it does not answer.
    pub async fn lattice_host(&self, id: &str) -> Result<LatticeHost, MemberError> {
        let asked = self
            .js
            .client()
            .request(self.subjects.control(id, "inventory"), Bytes::new())
            .await;
        if let Ok(reply) = asked {
            if let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&reply.payload) {
                return Ok(lattice_host(heartbeat, true, Duration::ZERO));
            }
        }
        self.directory
            .hosts()
            .into_iter()
            .find(|h| h.heartbeat.host == id)
            .map(|h| lattice_host(h.heartbeat, false, h.silent_for))
            .ok_or_else(|| {
                MemberError::Refused(format!(
                    "no host `{id}` in lattice `{}` (see `weft get hosts`)",
                    self.options.lattice
                ))
            })
    }

    pub(super) fn inventory_of(&self, applied: &BTreeMap<String, Applied>) -> Vec<InventoryApp> {
        let mut inventory = Vec::new();
        for (name, state) in applied {
            let Applied::Here {
                version, failed, ..
            } = state
            else {
                continue;
            };
            let status = self.host.status(name).ok();
            let running = status.as_ref().filter(|s| s.version == *version);
            let (phase, reason) = match (failed, running) {
                (Some((reason, _)), _) => ("failed", Some(reason.clone())),
                (None, Some(s)) if s.phase == Phase::Deployed => ("deployed", None),
                (None, Some(s)) => ("failed", s.reason.clone()),
                (None, None) => ("deploying", None),
            };
            inventory.push(InventoryApp {
                app: name.clone(),
                version: version.clone(),
                phase: phase.into(),
                reason,
                components: status
                    .map(|s| {
                        s.components
                            .into_iter()
                            .map(InventoryComponent::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        inventory
    }

    pub(super) fn heartbeat(&self) -> Heartbeat {
        let leading = self
            .leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leading;
        let mut apps = self
            .inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Active instance counts move between placement rounds; report them as they are now.
        for app in &mut apps {
            let active = self.host.active_instances(&app.app);
            for component in &mut app.components {
                component.active_instances = active.get(&component.name).copied().unwrap_or(0);
            }
        }
        Heartbeat {
            host: self.options.host_id.clone(),
            labels: self.options.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            sent_at_ms: now_ms(),
            http: self.host.config.http_address.map(|a| format!("http://{a}")),
            control: self
                .control_url
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            leader: leading,
            apps,
        }
    }
}

pub(super) fn lattice_host(heartbeat: Heartbeat, alive: bool, silent_for: Duration) -> LatticeHost {
    LatticeHost {
        id: heartbeat.host,
        labels: heartbeat.labels,
        alive,
        silent_ms: silent_for.as_millis() as u64,
        leader: heartbeat.leader,
        version: heartbeat.version,
        started_at_ms: heartbeat.started_at_ms,
        http: heartbeat.http,
        control: heartbeat.control,
        apps: heartbeat.apps,
    }
}

/// Answers control requests to this host (`inventory`) for as long as the member lives.
pub(super) async fn answer_controls(member: Weak<Member>, mut requests: async_nats::Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(member) = member.upgrade() else {
            return;
        };
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let op = request.subject.rsplit('.').next().unwrap_or_default();
        let body = match op {
            "inventory" => serde_json::to_vec(&member.heartbeat()).unwrap_or_default(),
            other => serde_json::to_vec(&serde_json::json!({
                "error": format!("unknown control request `{other}`")
            }))
            .unwrap_or_default(),
        };
        if let Err(e) = member.js.client().publish(reply, body.into()).await {
            tracing::debug!("cannot answer a control request: {e}");
        }
    }
}

/// Says this host is alive once a heartbeat interval, for as long as the member lives.
pub(super) async fn heartbeats(member: Weak<Member>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tick.tick().await;
        let Some(member) = member.upgrade() else {
            return;
        };
        let heartbeat = member.heartbeat();
        let body = serde_json::to_vec(&heartbeat).unwrap_or_default();
        if let Err(e) = member
            .js
            .client()
            .publish(member.subjects.heartbeat(), body.into())
            .await
        {
            tracing::warn!("cannot send a heartbeat: {e}");
        }
    }
}
