//! Running the controller's placements on this host: the apps placed here run, the others are
//! routed to the hosts that run them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt as _;
use weft_lattice::{desired_apps, placements, AppRecord, LEASE_KEY};

use crate::api::DeployRequest;
use crate::{Forward, HostError, StoredApp};

use super::{Applied, Member, MemberError, RESYNC, RETRY_FAILED};

impl Member {
    /// Brings this host in line with the placements: runs what is placed here, routes the rest
    /// elsewhere, forgets what was undeployed.
    pub(super) async fn apply(self: &Arc<Self>) -> Result<(), MemberError> {
        let records = desired_apps(&self.kv).await?;
        let (_, placements) = placements(&self.kv).await?;
        *self
            .forwarder
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = placements.clone();
        let mut applied = self.applied.lock().await;
        let wanted: BTreeSet<String> = records.iter().map(|r| r.name.clone()).collect();
        for record in &records {
            let share = placements
                .apps
                .get(&record.name)
                .and_then(|p| p.hosts.get(&self.options.host_id).copied());
            match share {
                Some(share) => self.run_here(&mut applied, record, share).await,
                None => self.run_elsewhere(&mut applied, record).await,
            }
        }
        let local = self.host.app_names();
        let stale: Vec<String> = applied
            .keys()
            .chain(local.iter())
            .filter(|name| !wanted.contains(*name))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in stale {
            applied.remove(&name);
            self.stop_here(&name).await;
            self.host.forget_routes(&name);
            weft_metrics::forget_app(&name);
            tracing::info!(app = %name, "no longer in the lattice");
        }
        let inventory = self.inventory_of(&applied);
        *self.inventory.lock().unwrap_or_else(|e| e.into_inner()) = inventory;
        Ok(())
    }

    pub(super) async fn stop_here(&self, name: &str) {
        match self.host.undeploy(name).await {
            Ok(()) | Err(HostError::NotFound(_)) => {}
            Err(e) => tracing::warn!(app = %name, "cannot stop here: {e}"),
        }
    }

    pub(super) async fn run_here(
        self: &Arc<Self>,
        applied: &mut BTreeMap<String, Applied>,
        record: &AppRecord,
        share: u32,
    ) {
        if let Some(Applied::Here {
            version,
            share: s,
            failed,
            ..
        }) = applied.get(&record.name)
        {
            // A failed deploy is tried again now and then: what failed may have been passing
            // (NATS unreachable while fetching the component), and a lasting failure costs one
            // attempt per interval.
            let retry = failed
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() >= RETRY_FAILED);
            if *version == record.version && *s == share && !retry {
                return;
            }
        }
        let result = self.deploy_here(record, caps_for(record, share)).await;
        let serving = match applied.remove(&record.name) {
            Some(Applied::Here {
                serving: Some(task),
                ..
            }) if !task.is_finished() => Some(task),
            _ => None,
        };
        let (failed, serving) = match result {
            Ok(()) => {
                let serving = match serving {
                    Some(task) => Some(task),
                    None => self.serve_other_hosts(&record.name).await,
                };
                tracing::info!(app = %record.name, version = %record.version, share, "running here");
                (None, serving)
            }
            Err(e) => {
                tracing::error!(app = %record.name, version = %record.version, "cannot run here: {e}");
                (Some((e.to_string(), std::time::Instant::now())), serving)
            }
        };
        applied.insert(
            record.name.clone(),
            Applied::Here {
                version: record.version.clone(),
                share,
                failed,
                serving,
            },
        );
    }

    pub(super) async fn deploy_here(
        &self,
        record: &AppRecord,
        caps: BTreeMap<String, u32>,
    ) -> Result<(), MemberError> {
        for digest in record.images.values() {
            if self
                .host
                .blobs()
                .contains(digest)
                .map_err(HostError::from)?
            {
                continue;
            }
            let bytes = self.blobs.get(digest).await?.ok_or_else(|| {
                MemberError::Refused(format!(
                    "component {digest} is not in the lattice's blob store; deploy the app again"
                ))
            })?;
            let host = self.host.clone();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || host.blobs().put(&digest, &bytes))
                .await
                .map_err(|e| MemberError::Refused(e.to_string()))?
                .map_err(HostError::from)?;
        }
        self.host
            .deploy(DeployRequest {
                manifest: record.manifest.clone(),
                origin: record.origin.clone(),
                images: record.images.clone(),
                caps,
                version: Some(record.version.clone()),
            })
            .await?;
        Ok(())
    }

    pub(super) async fn run_elsewhere(
        &self,
        applied: &mut BTreeMap<String, Applied>,
        record: &AppRecord,
    ) {
        match applied.get(&record.name) {
            Some(Applied::Elsewhere { version }) if *version == record.version => return,
            Some(Applied::Here { .. }) | None => self.stop_here(&record.name).await,
            Some(Applied::Elsewhere { .. }) => {}
        }
        let stored = StoredApp::from(record);
        let via: Arc<dyn Forward> = self.forwarder.clone();
        match self.host.route_elsewhere(&stored, via) {
            Ok(()) => {
                applied.insert(
                    record.name.clone(),
                    Applied::Elsewhere {
                        version: record.version.clone(),
                    },
                );
            }
            Err(e) => {
                applied.remove(&record.name);
                tracing::warn!(app = %record.name, "cannot route it to other hosts: {e}");
            }
        }
    }
}

/// Each component's cap on a host given `share` of the app's instances: its manifest cap in
/// the same proportion, at least one.
pub(super) fn caps_for(record: &AppRecord, share: u32) -> BTreeMap<String, u32> {
    let app = match &record.app {
        Some(app) => app.clone(),
        None => match weft_manifest::parse_app(
            &record.manifest,
            &record.origin,
            weft_capabilities::catalog(),
        ) {
            Ok(app) => app,
            Err(_) => return BTreeMap::new(),
        },
    };
    let total = app.scaler().map(|s| s.instances).unwrap_or(share).max(1);
    app.components
        .iter()
        .filter(|c| c.shared.is_none())
        .map(|c| {
            let cap =
                (u64::from(c.limits.max_instances) * u64::from(share)).div_ceil(u64::from(total));
            (c.name.clone(), cap.clamp(1, u64::from(u32::MAX)) as u32)
        })
        .collect()
}

/// Applies placements whenever the state bucket changes, and every few seconds regardless.
pub(super) async fn placement_loop(member: Weak<Member>) {
    let watch = match member.upgrade() {
        Some(m) => m.kv.watch().await,
        None => return,
    };
    let mut watch = match watch {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the lattice state, polling instead: {e}");
            None
        }
    };
    loop {
        if let Some(member) = member.upgrade() {
            if let Err(e) = member.apply().await {
                tracing::warn!("cannot apply the lattice's placements: {e}");
            }
        } else {
            return;
        }
        let changed = async {
            match &mut watch {
                // The lease is renewed twice a second and changes nothing to apply.
                Some(w) => {
                    while let Some(m) = w.next().await {
                        if !m.subject.as_str().ends_with(&format!(".{LEASE_KEY}")) {
                            break;
                        }
                    }
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = changed => {
                // A deploy writes several keys; let them land before reading.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instances: u32, other_cap: u32) -> AppRecord {
        AppRecord {
            name: "web".into(),
            version: "v1".into(),
            manifest: format!(
                r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: web }}
spec:
  components:
    - name: front
      type: component
      properties: {{ image: ./front.wasm }}
      traits:
        - type: spreadscaler
          properties: {{ instances: {instances} }}
    - name: back
      type: component
      properties: {{ image: ./back.wasm }}
      traits:
        - type: spreadscaler
          properties: {{ instances: {other_cap} }}
"#
            ),
            origin: "web.yaml".into(),
            images: BTreeMap::new(),
            deployed_at: 0,
            app: None,
        }
    }

    #[test]
    fn a_host_s_share_caps_each_component_in_proportion_at_least_one() {
        // The app's instances are the largest its components ask for: 6 here.
        let caps = caps_for(&record(6, 3), 2);
        assert_eq!(caps["front"], 2);
        assert_eq!(caps["back"], 1);
        let caps = caps_for(&record(6, 3), 6);
        assert_eq!((caps["front"], caps["back"]), (6, 3));
        let caps = caps_for(&record(100, 1), 1);
        assert_eq!((caps["front"], caps["back"]), (1, 1));
    }
}
