//! What a host says about its apps: their phases, components and instances, and itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weft_manifest::{App, When};
use weft_runtime::Workload;

use crate::api::{AppStatus, ComponentStatus, HostStatus};
use crate::{Host, HostError, StoredApp};

impl Host {
    /// The instances running now of each component of `app` that serves requests here.
    pub fn active_instances(&self, app: &str) -> BTreeMap<String, usize> {
        self.apps_lock()
            .get(app)
            .map(|e| {
                e.workloads
                    .iter()
                    .map(|(name, w)| (name.clone(), w.active_instances()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of the apps this host runs.
    pub fn app_names(&self) -> BTreeSet<String> {
        self.apps_lock().keys().cloned().collect()
    }

    /// The status of every app, by name.
    pub fn list(&self) -> Result<Vec<AppStatus>, HostError> {
        let names: Vec<String> = self.apps_lock().keys().cloned().collect();
        // An app undeployed between the two reads (a lattice moving it away) is simply gone,
        // not a failure of the listing.
        names
            .iter()
            .map(|n| self.status(n))
            .filter(|s| !matches!(s, Err(HostError::NotFound(_))))
            .collect()
    }

    /// The status of one app.
    pub fn status(&self, name: &str) -> Result<AppStatus, HostError> {
        let versions = self
            .store
            .versions(name)?
            .into_iter()
            .map(|v| v.version)
            .collect();
        let apps = self.apps_lock();
        let entry = apps
            .get(name)
            .ok_or_else(|| HostError::NotFound(name.to_string()))?;
        let components = entry
            .app
            .iter()
            .flat_map(|app| component_statuses(app, &entry.stored, &entry.workloads))
            .collect();
        Ok(AppStatus {
            name: entry.stored.name.clone(),
            version: entry.stored.version.clone(),
            phase: entry.phase,
            reason: entry.reason.clone(),
            origin: entry.stored.origin.clone(),
            deployed_at: entry.stored.deployed_at,
            components,
            versions,
            dependents: apps
                .values()
                .filter_map(|e| Some((e.stored.name.clone(), e.uses.get(name)?.clone())))
                .collect(),
            uses: entry.uses.clone(),
            hosts: BTreeMap::new(),
            events: Vec::new(),
            warnings: entry
                .app
                .as_ref()
                .map(|app| app.warnings.clone())
                .unwrap_or_default(),
        })
    }

    /// A summary of the host.
    pub fn host_status(&self) -> HostStatus {
        HostStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            state_dir: self.config.state_dir.display().to_string(),
            allocator: self.runtime.allocator().to_string(),
            compilations: self.runtime.compilations(),
            memory_budget: self.runtime.memory_budget().limit(),
            memory_in_use: self.runtime.memory_budget().used(),
            apps: self.apps_lock().len(),
            listeners: self
                .ingress
                .addresses()
                .iter()
                .map(|a| format!("http://{a}"))
                .collect(),
            lattice: None,
        }
    }
}

impl Host {
    /// This host as `weft get hosts` shows a lattice's: the only one, alive and leading.
    pub fn as_lattice_host(&self, id: &str, control: Option<String>) -> weft_api::LatticeHost {
        let apps = self
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|app| weft_api::InventoryApp {
                app: app.name,
                version: app.version,
                phase: app.phase.to_string(),
                reason: app.reason,
                components: app.components.into_iter().map(Into::into).collect(),
            })
            .collect();
        weft_api::LatticeHost {
            id: id.to_string(),
            labels: Default::default(),
            alive: true,
            silent_ms: 0,
            leader: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            http: self
                .ingress
                .addresses()
                .first()
                .map(|a| format!("http://{a}")),
            control,
            apps,
        }
    }
}

/// What status shows of each component of `app`: routes, limits, and the instances of its
/// workload on this host (none when it does not run here).
fn component_statuses(
    app: &App,
    stored: &StoredApp,
    workloads: &BTreeMap<String, Arc<Workload>>,
) -> Vec<ComponentStatus> {
    app.components
        .iter()
        .map(|c| {
            let routes = app
                .routes
                .iter()
                .filter(|r| r.component == c.name)
                .map(|r| match &r.host {
                    Some(host) => format!("http://{}{} (host {host})", r.address, r.path),
                    None => format!("http://{}{}", r.address, r.path),
                })
                .collect();
            let workload = workloads.get(&c.name);
            let subscriptions = app.subscriptions.iter().filter(|s| s.component == c.name);
            let watches = app.watches.iter().filter(|w| w.component == c.name);
            let schedules = app.schedules.iter().filter(|s| s.component == c.name);
            let events = subscriptions
                .map(|s| {
                    format!(
                        "messages on {} from `{}` ({})",
                        s.subjects.join(", "),
                        s.capability,
                        s.backend
                    )
                })
                .chain(watches.map(|w| {
                    let keys = w.on_set.iter().map(|k| format!("SET@{k}"));
                    let keys = keys.chain(w.on_delete.iter().map(|k| format!("DEL@{k}")));
                    format!(
                        "key changes {} in `{}` ({})",
                        keys.collect::<Vec<_>>().join(","),
                        w.capability,
                        w.backend
                    )
                }))
                .chain(schedules.map(|s| match &s.when {
                    When::Every(every) => format!("schedule `{}`: every {every:?}", s.capability),
                    When::Cron(cron) => format!("schedule `{}`: cron {cron} (UTC)", s.capability),
                }))
                .collect();
            ComponentStatus {
                name: c.name.clone(),
                image: match &c.shared {
                    Some(s) => format!("{}/{} (shared)", s.app, s.component),
                    None => c.image.clone(),
                },
                digest: stored
                    .images
                    .get(&c.image)
                    .cloned()
                    .or_else(|| workload.map(|w| w.digest().to_string()))
                    .unwrap_or_default(),
                routes,
                events,
                max_memory: c.limits.max_memory,
                timeout_ms: c.limits.timeout.as_millis() as u64,
                max_instances: c.limits.max_instances,
                active_instances: workload.map_or(0, |w| w.active_instances()),
                warm_instances: workload.map_or(0, |w| w.warm_instances()),
                reset_instances: workload.and_then(|w| w.reset_instances()),
                engine: workload.map_or_else(String::new, |w| w.engine().describe().to_string()),
                reuse: c.reuse.map(|r| {
                    format!(
                        "up to {} requests per instance, idle {:?}",
                        r.max_requests, r.idle
                    )
                }),
            }
        })
        .collect()
}

/// The component statuses of an app as this host would run it, with nothing running.
pub fn planned_components(host: &Host, stored: &StoredApp) -> Vec<ComponentStatus> {
    host.app_of(stored)
        .map(|app| component_statuses(&app, stored, &BTreeMap::new()))
        .unwrap_or_default()
}
