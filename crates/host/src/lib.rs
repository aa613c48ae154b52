//! A weft host: the apps it serves, their workloads, the HTTP ingress, the embedded state store
//! and the control API.

pub mod api;
mod blobs;
pub mod control;
mod ingress;
pub mod lattice;
mod store;
mod subscriptions;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use weft_capabilities::{Backends, CapabilityError, SecretStore};
use weft_manifest::{App, ManifestError};
use weft_runtime::{
    ExportServer, LoadedComponent, RemoteCall, RemoteTarget, Runtime, RuntimeError, Workload,
};

pub use api::{AppStatus, ComponentStatus, DeployOutcome, DeployRequest, HostStatus, Phase};
pub use blobs::{BlobError, BlobStore};
pub use ingress::{Forward, IngressRequest, LimitedBody, RouteTarget};
use ingress::{Ingress, RouteEntry};
pub use ingress::{IngressError, DEFAULT_MAX_REQUEST_BODY};
pub use store::{StateStore, StoreError, StoredApp};

/// How to start a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub state_dir: PathBuf,
    /// Try the pooling allocator first (falls back to on-demand when it cannot reserve memory).
    pub pooling: bool,
    pub max_request_body: u64,
    /// Serve every app's routes on this address instead of the manifest's (several lattice
    /// hosts on one machine each take their own).
    pub http_address: Option<std::net::SocketAddr>,
}

/// Why a host operation failed. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Ingress(#[from] IngressError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    Secrets(#[from] weft_capabilities::secrets::SecretError),
    #[error("{what}: cannot subscribe to `{subject}`: {reason}")]
    Subscribe {
        what: String,
        subject: String,
        reason: String,
    },
    #[error("`{0}` is not a valid secret key; use letters, digits, `-`, `_` and `.`, starting with a letter or digit")]
    SecretKey(String),
    #[error("no secret with key `{0}` (see `weft secret list`)")]
    SecretNotFound(String),
    #[error("component `{component}`: image `{image}` was not uploaded with the deploy")]
    MissingImage { component: String, image: String },
    #[error(
        "version {version} of app `{app}` is already deployed with different content; \
         change metadata.annotations.version to deploy the change"
    )]
    VersionConflict { app: String, version: String },
    #[error("no app named `{0}` is deployed (see `weft app list`)")]
    NotFound(String),
    #[error("{what} uses component `{component}` of app `{app}`, but {reason}")]
    SharedUnavailable {
        what: String,
        app: String,
        component: String,
        reason: String,
    },
    #[error(
        "{what} links to `{target}`, which serves it in the caller's instance: such a target \
         cannot hold capability links, secrets, links of its own or be shared yet"
    )]
    LinkTarget { what: String, target: String },
    #[error("app `{app}` is used by {}: undeploy or change them first", dependents.join(", "))]
    InUse {
        app: String,
        dependents: Vec<String>,
    },
    #[error("cannot start the host: {0}")]
    Setup(String),
}

impl HostError {
    /// Whether the caller's input caused the failure (as opposed to the host).
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            HostError::Store(_)
                | HostError::Setup(_)
                | HostError::Secrets(_)
                | HostError::Blob(BlobError::Io { .. })
        )
    }
}

/// What the host knows of one app.
struct AppEntry {
    stored: StoredApp,
    phase: Phase,
    reason: Option<String>,
    app: Option<App>,
    workloads: BTreeMap<String, Arc<Workload>>,
    exports: BTreeMap<String, Arc<ExportServer>>,
    /// Message deliveries of the running version; dropping it stops them.
    _subscriptions: subscriptions::Running,
    /// Apps whose components this one uses, and the version of each it runs with.
    uses: BTreeMap<String, String>,
}

/// A running host.
pub struct Host {
    config: HostConfig,
    runtime: Arc<Runtime>,
    store: StateStore,
    blobs: BlobStore,
    backends: Backends,
    ingress: Ingress,
    apps: Mutex<BTreeMap<String, AppEntry>>,
    /// Deploys and undeploys run one at a time so each sees the state the previous one left.
    deploy_lock: tokio::sync::Mutex<()>,
    /// Set in a lattice: reaches other apps' components wherever they run.
    remote: std::sync::OnceLock<Arc<dyn RemoteLinks>>,
}

/// Reaches a component of another app wherever in the lattice it runs.
pub trait RemoteLinks: Send + Sync {
    /// A caller of `component` of `app`.
    fn caller(&self, app: &str, component: &str) -> Arc<dyn RemoteCall>;
}

/// Drops warm instances that sat idle past their reuse policy, once a second, for as long as the
/// host lives; an idle app's memory goes back without waiting for its next request.
async fn reclaim_idle_instances(host: std::sync::Weak<Host>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(host) = host.upgrade() else { return };
        let workloads: Vec<Arc<Workload>> = host
            .apps_lock()
            .values()
            .flat_map(|app| app.workloads.values().cloned())
            .collect();
        for workload in workloads {
            workload.reclaim_idle();
        }
    }
}

/// A deploy prepared and checked, not yet visible.
struct Prepared {
    app: App,
    workloads: BTreeMap<String, Arc<Workload>>,
    /// Components serving their exports to other hosts (in a lattice).
    exports: BTreeMap<String, Arc<ExportServer>>,
    routes: Vec<RouteEntry>,
    subscriptions: subscriptions::Pending,
    uses: BTreeMap<String, String>,
    compiled: u32,
}

/// Stored apps ordered so that an app whose components others use comes before them.
fn restore_order(apps: Vec<StoredApp>) -> Vec<StoredApp> {
    let uses: BTreeMap<String, BTreeSet<String>> = apps
        .iter()
        .map(|s| {
            let uses = weft_manifest::parse(&s.manifest, &s.origin)
                .map(|app| app.uses())
                .unwrap_or_default();
            (s.name.clone(), uses)
        })
        .collect();
    fn visit(
        name: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        for used in uses.get(name).into_iter().flatten() {
            visit(used, uses, seen, order);
        }
        order.push(name.to_string());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for name in uses.keys() {
        visit(name, &uses, &mut seen, &mut order);
    }
    let mut by_name: BTreeMap<String, StoredApp> =
        apps.into_iter().map(|s| (s.name.clone(), s)).collect();
    order.iter().filter_map(|n| by_name.remove(n)).collect()
}

/// Whether component `name` of `app` is reached only through component links (no route, no
/// HTTP link, no subscription).
fn called_only(app: &App, name: &str) -> bool {
    !app.routes.iter().any(|r| r.component == name)
        && !app.subscriptions.iter().any(|s| s.component == name)
        && !app
            .components
            .iter()
            .any(|c| c.http_links.iter().any(|l| l.target == name))
}

/// Components ordered so that every target of a component link comes before its sources (the
/// manifest has refused loops already).
fn linked_first(components: &[weft_manifest::Component]) -> Vec<&weft_manifest::Component> {
    fn visit<'a>(
        component: &'a weft_manifest::Component,
        all: &'a [weft_manifest::Component],
        ordered: &mut Vec<&'a weft_manifest::Component>,
    ) {
        if ordered.iter().any(|c| c.name == component.name) {
            return;
        }
        for name in component.link_targets() {
            if let Some(target) = all.iter().find(|c| c.name == name) {
                visit(target, all, ordered);
            }
        }
        ordered.push(component);
    }
    let mut ordered = Vec::with_capacity(components.len());
    for component in components {
        visit(component, components, &mut ordered);
    }
    ordered
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The version of a manifest that names none: a digest of its text and its component bytes.
fn content_version(manifest: &str, images: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(manifest.as_bytes());
    for (image, digest) in images {
        hasher.update(image.as_bytes());
        hasher.update(digest.as_bytes());
    }
    format!("sha-{}", &hex::encode(hasher.finalize())[..12])
}

impl Host {
    /// Opens the state dir, starts the runtime and serves every app stored there.
    pub async fn start(config: HostConfig) -> Result<Arc<Self>, HostError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            HostError::Setup(format!(
                "cannot create state dir {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let store = StateStore::open(&config.state_dir.join("state.redb"))?;
        let blobs = BlobStore::open(&config.state_dir.join("components"))?;
        let runtime = Runtime::new(&config.state_dir.join("compiled"), config.pooling)?;
        let backends = Backends::new(
            config.state_dir.clone(),
            SecretStore::open(&config.state_dir)?,
        );
        let host = Arc::new(Host {
            backends,
            ingress: Ingress::new(config.max_request_body),
            config,
            runtime,
            store,
            blobs,
            apps: Mutex::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
            remote: std::sync::OnceLock::new(),
        });
        for stored in restore_order(host.store.current_apps()?) {
            let _guard = host.deploy_lock.lock().await;
            let name = stored.name.clone();
            let prepared = match host.app_of(&stored) {
                Ok(app) => host.prepare(&stored, app).await,
                Err(e) => Err(e.into()),
            };
            match prepared {
                Ok(prepared) => {
                    host.activate(stored, prepared);
                    tracing::info!(app = %name, "restored from the state store");
                }
                Err(e) => {
                    tracing::error!(app = %name, "cannot restore: {e}");
                    host.apps_lock().insert(
                        name,
                        AppEntry {
                            stored,
                            phase: Phase::Failed,
                            reason: Some(e.to_string()),
                            app: None,
                            workloads: BTreeMap::new(),
                            exports: BTreeMap::new(),
                            _subscriptions: Default::default(),
                            uses: BTreeMap::new(),
                        },
                    );
                }
            }
        }
        tokio::spawn(reclaim_idle_instances(Arc::downgrade(&host)));
        Ok(host)
    }

    fn apps_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AppEntry>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The content-addressed store of uploaded components.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The state dir this host keeps its data in.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    /// Sets the secret `key` (read by components granted it) to `value`.
    pub fn put_secret(&self, key: &str, value: Vec<u8>) -> Result<(), HostError> {
        if !weft_manifest::is_valid_name(key) {
            return Err(HostError::SecretKey(key.to_string()));
        }
        let value = weft_capabilities::secrets::SecretValue::from_bytes(value);
        self.backends.secrets().put(key, &value)?;
        tracing::info!(secret = %key, "secret set");
        Ok(())
    }

    /// The keys of the secret store; values are never listed.
    pub fn secret_keys(&self) -> Result<Vec<String>, HostError> {
        Ok(self.backends.secrets().keys()?)
    }

    /// Removes the secret `key`.
    pub fn delete_secret(&self, key: &str) -> Result<(), HostError> {
        if self.backends.secrets().delete(key)? {
            tracing::info!(secret = %key, "secret deleted");
            Ok(())
        } else {
            Err(HostError::SecretNotFound(key.to_string()))
        }
    }

    /// Components compiled since start (compile-cache misses).
    pub fn compilations(&self) -> u64 {
        self.runtime.compilations()
    }

    /// Validates, compiles and links a deploy, then switches the app to it atomically. On any
    /// error the running version, the stored state and every other app are untouched.
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, HostError> {
        let (stored, app) = self.stored_of(request)?;
        let version = stored.version.clone();
        let _guard = self.deploy_lock.lock().await;
        let previous = self.apps_lock().get(&app.name).map(|e| {
            let same = e.stored.manifest == stored.manifest
                && e.stored.images == stored.images
                && e.stored.caps == stored.caps;
            (e.stored.version.clone(), same, e.phase)
        });
        if let Some((running, same, phase)) = &previous {
            if *running == version && *same && *phase == Phase::Deployed {
                return Ok(DeployOutcome {
                    app: app.name,
                    version,
                    previous: Some(running.clone()),
                    compiled: 0,
                    unchanged: true,
                    relinked: 0,
                    relink_failures: Vec::new(),
                });
            }
        }
        if let Some(old) = self.store.version(&app.name, &version)? {
            if old.manifest != stored.manifest || old.images != stored.images {
                return Err(HostError::VersionConflict {
                    app: app.name,
                    version,
                });
            }
        }

        let name = app.name.clone();
        let prepared = self.prepare(&stored, app).await?;
        let compiled = prepared.compiled;
        self.store.put_current(&stored)?;
        self.activate(stored, prepared);
        tracing::info!(app = %name, %version, compiled, "deployed");
        let (relinked, relink_failures) = self.relink_dependents(&name).await;
        if relinked > 0 || !relink_failures.is_empty() {
            tracing::info!(app = %name, relinked, failed = relink_failures.len(), "dependents re-linked");
        }
        Ok(DeployOutcome {
            app: name,
            version,
            previous: previous.map(|p| p.0),
            compiled,
            unchanged: false,
            relinked,
            relink_failures,
        })
    }

    /// Checks a deploy as `deploy` would (manifest, images, compilation, imports against
    /// grants, route clashes) without running or storing it; returns what would be stored and
    /// how many components it compiled.
    pub async fn check(&self, request: DeployRequest) -> Result<(StoredApp, u32), HostError> {
        let (stored, app) = self.stored_of(request)?;
        let prepared = self.prepare(&stored, app).await?;
        Ok((stored, prepared.compiled))
    }

    /// The app a stored version describes, as this host runs it: its routes on the host's
    /// address when it has one, its instance caps applied.
    pub fn app_of(&self, stored: &StoredApp) -> Result<App, ManifestError> {
        let mut app = weft_manifest::parse(&stored.manifest, &stored.origin)?;
        if let Some(address) = self.config.http_address {
            for route in &mut app.routes {
                route.address = address;
            }
        }
        for component in &mut app.components {
            if let Some(cap) = stored.caps.get(&component.name) {
                component.limits.max_instances = *cap;
            }
        }
        Ok(app)
    }

    /// What a deploy request would store, and its app.
    fn stored_of(&self, request: DeployRequest) -> Result<(StoredApp, App), HostError> {
        let app = weft_manifest::parse(&request.manifest, &request.origin)?;
        let version = app
            .version
            .clone()
            .unwrap_or_else(|| content_version(&request.manifest, &request.images));
        // Only the images this manifest uses are part of its identity.
        let images: BTreeMap<String, String> = app
            .components
            .iter()
            .filter(|c| c.shared.is_none())
            .map(|c| match request.images.get(&c.image) {
                Some(digest) => Ok((c.image.clone(), digest.clone())),
                None => Err(HostError::MissingImage {
                    component: c.name.clone(),
                    image: c.image.clone(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let stored = StoredApp {
            name: app.name.clone(),
            version,
            manifest: request.manifest,
            origin: request.origin,
            images,
            deployed_at: now(),
            caps: request.caps,
        };
        let app = self.app_of(&stored)?;
        Ok((stored, app))
    }

    /// Compiles and links every component of a stored app and binds its listeners; nothing is
    /// visible to requests yet.
    async fn prepare(&self, stored: &StoredApp, app: App) -> Result<Prepared, HostError> {
        self.ingress.check_conflicts(&app.name, &app.routes)?;
        self.prepare_checked(stored, app).await
    }

    /// `prepare` for an app whose routes are known not to clash (it serves them already).
    async fn prepare_checked(&self, stored: &StoredApp, app: App) -> Result<Prepared, HostError> {
        let mut compiled = 0;
        let mut workloads: BTreeMap<String, Arc<Workload>> = BTreeMap::new();
        let mut exports: BTreeMap<String, Arc<ExportServer>> = BTreeMap::new();
        let remote = self.remote.get();
        let mut subscriptions = subscriptions::Pending::new();
        let mut uses = BTreeMap::new();
        let mut loaded_by_name: BTreeMap<String, LoadedComponent> = BTreeMap::new();
        // Linked components first, so each source finds its targets' workloads ready.
        for node in linked_first(&app.components) {
            let what = format!("component `{}` of app `{}`", node.name, app.name);
            // In a lattice another app's component that is only called through links runs with
            // its own app, wherever that is placed; calls reach it over NATS.
            if remote.is_some() && node.shared.is_some() && called_only(&app, &node.name) {
                continue;
            }
            let (component, digest, owner) = match &node.shared {
                None => {
                    let digest =
                        stored
                            .images
                            .get(&node.image)
                            .ok_or_else(|| HostError::MissingImage {
                                component: node.name.clone(),
                                image: node.image.clone(),
                            })?;
                    (node.clone(), digest.clone(), app.name.clone())
                }
                Some(shared) => {
                    let (component, digest, version) = self.resolve_shared(&what, node, shared)?;
                    uses.insert(shared.app.clone(), version);
                    (component, digest, shared.app.clone())
                }
            };
            let component = &component;
            let loaded = self.load(&what, &digest).await?;
            compiled += u32::from(loaded.compiled);
            let linked = if component.component_links.is_empty() {
                None
            } else {
                let mut targets = Vec::new();
                let mut remotes = Vec::new();
                for link in &component.component_links {
                    let shared_target = app
                        .components
                        .iter()
                        .find(|c| c.name == link.target)
                        .and_then(|c| c.shared.as_ref());
                    if let (Some(remote), Some(shared)) = (remote, shared_target) {
                        remotes.push(RemoteTarget {
                            name: &link.target,
                            interfaces: &link.interfaces,
                            via: remote.caller(&shared.app, &shared.component),
                        });
                        continue;
                    }
                    let target = app
                        .components
                        .iter()
                        .find(|c| c.name == link.target)
                        .filter(|c| {
                            c.grants.is_empty()
                                && c.secrets.is_empty()
                                && c.http_links.is_empty()
                                && c.component_links.is_empty()
                                && c.shared.is_none()
                        })
                        .ok_or_else(|| HostError::LinkTarget {
                            what: what.clone(),
                            target: link.target.clone(),
                        })?;
                    targets.push(weft_runtime::LinkTarget {
                        name: &target.name,
                        loaded: &loaded_by_name[&target.name],
                        interfaces: &link.interfaces,
                    });
                }
                Some(
                    self.runtime
                        .link_components(&what, &loaded, &targets, &remotes)?,
                )
            };
            let access = weft_runtime::Access {
                linked,
                outgoing: component
                    .outgoing_http
                    .clone()
                    .map(|hosts| Arc::new(weft_runtime::AllowedHosts::new(hosts))),
                // A shared component's own capabilities belong to the app that owns it.
                grants: Arc::new(self.backends.grants_for(&owner, component)?),
                local: Arc::new(
                    component
                        .http_links
                        .iter()
                        .map(|l| (l.authority.clone(), workloads[&l.target].clone()))
                        .collect(),
                ),
            };
            let routed = app.routes.iter().any(|r| r.component == component.name)
                || app
                    .components
                    .iter()
                    .any(|c| c.http_links.iter().any(|l| l.target == component.name));
            if routed {
                let workload = self.runtime.http_workload(
                    &what,
                    &loaded,
                    component.limits,
                    component.reuse,
                    access.clone(),
                )?;
                workloads.insert(component.name.clone(), workload);
            } else {
                self.runtime.check_imports(&what, &loaded, &access)?;
            }
            if remote.is_some() && node.shared.is_none() && !loaded.code.own_exports().is_empty() {
                let server =
                    self.runtime
                        .export_server(&what, &loaded, component.limits, access.clone())?;
                exports.insert(component.name.clone(), server);
            }
            loaded_by_name.insert(component.name.clone(), loaded.clone());
            for subscription in app
                .subscriptions
                .iter()
                .filter(|s| s.component == component.name)
            {
                let handler = self.runtime.message_handler(
                    &what,
                    &loaded,
                    component.limits,
                    access.clone(),
                )?;
                let broker =
                    self.backends
                        .broker_for(&app.name, subscription)
                        .map_err(|reason| HostError::Subscribe {
                            what: what.clone(),
                            subject: subscription.subjects.join(","),
                            reason,
                        })?;
                for subject in &subscription.subjects {
                    let feed =
                        broker
                            .subscribe(subject)
                            .await
                            .map_err(|reason| HostError::Subscribe {
                                what: what.clone(),
                                subject: subject.clone(),
                                reason,
                            })?;
                    subscriptions.add(subject.clone(), feed, handler.clone());
                }
            }
        }
        self.ingress
            .ensure_listeners(app.routes.iter().map(|r| r.address))?;
        let routes = app
            .routes
            .iter()
            .map(|route| RouteEntry {
                route: route.clone(),
                target: RouteTarget::Local(workloads[&route.component].clone()),
            })
            .collect();
        Ok(Prepared {
            app,
            workloads,
            exports,
            routes,
            subscriptions,
            uses,
            compiled,
        })
    }

    /// The component `node` names in another app, as that app's running version defines it, with
    /// `node`'s links; its digest; and that app's version.
    fn resolve_shared(
        &self,
        what: &str,
        node: &weft_manifest::Component,
        shared: &weft_manifest::SharedRef,
    ) -> Result<(weft_manifest::Component, String, String), HostError> {
        let unavailable = |reason: String| HostError::SharedUnavailable {
            what: what.to_string(),
            app: shared.app.clone(),
            component: shared.component.clone(),
            reason,
        };
        let apps = self.apps_lock();
        let entry = apps.get(&shared.app).ok_or_else(|| {
            unavailable(format!(
                "no app `{}` is deployed; deploy it first",
                shared.app
            ))
        })?;
        let owner = entry
            .app
            .as_ref()
            .filter(|_| entry.phase == Phase::Deployed)
            .ok_or_else(|| unavailable(format!("app `{}` is not serving", shared.app)))?;
        let original = owner
            .components
            .iter()
            .find(|c| c.name == shared.component)
            .ok_or_else(|| {
                let names: Vec<&str> = owner.components.iter().map(|c| c.name.as_str()).collect();
                unavailable(format!(
                    "it has no such component (its components: {})",
                    names.join(", ")
                ))
            })?;
        if original.shared.is_some() {
            return Err(unavailable(
                "that component is itself shared from another app".into(),
            ));
        }
        let digest = entry
            .stored
            .images
            .get(&original.image)
            .cloned()
            .ok_or_else(|| unavailable("its image is missing from the store".into()))?;
        let mut component = original.clone();
        component.name = node.name.clone();
        component.http_links = node.http_links.clone();
        component.links = node.links.clone();
        Ok((component, digest, entry.stored.version.clone()))
    }

    /// Re-links every app that uses a component of `platform` to its running version, one app
    /// at a time; an app that fails stays on what it ran, with the failure recorded.
    async fn relink_dependents(&self, platform: &str) -> (u32, Vec<String>) {
        let dependents: Vec<(StoredApp, App)> = self
            .apps_lock()
            .values()
            .filter(|e| e.uses.contains_key(platform))
            .filter_map(|e| Some((e.stored.clone(), e.app.clone()?)))
            .collect();
        let mut ready = Vec::with_capacity(dependents.len());
        let mut failures = Vec::new();
        for (stored, app) in dependents {
            let name = app.name.clone();
            match self.prepare_checked(&stored, app).await {
                Ok(prepared) => ready.push((stored, prepared)),
                Err(e) => {
                    tracing::warn!(app = %name, %platform, "cannot re-link: {e}");
                    if let Some(entry) = self.apps_lock().get_mut(&name) {
                        entry.reason = Some(format!("still on the previous `{platform}`: {e}"));
                    }
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        // Every app switches in the same instant; each request runs wholly on the chain it
        // started on, old or new.
        let relinked = ready.len() as u32;
        self.activate_many(ready);
        (relinked, failures)
    }

    async fn load(&self, what: &str, digest: &str) -> Result<LoadedComponent, HostError> {
        // Code already in memory needs no read, hash or compile: re-linking thousands of apps to
        // a new harness costs a lookup per app.
        if let Some(loaded) = self.runtime.loaded(digest) {
            return Ok(loaded);
        }
        let bytes = self.blobs.get(digest)?;
        let runtime = self.runtime.clone();
        let what = what.to_string();
        tokio::task::spawn_blocking(move || runtime.load(&what, &bytes))
            .await
            .map_err(|e| HostError::Setup(format!("compiler task failed: {e}")))?
            .map_err(HostError::from)
    }

    fn activate(&self, stored: StoredApp, prepared: Prepared) {
        self.activate_many(vec![(stored, prepared)]);
    }

    /// Switches many apps at once: one route-table swap per listener, however many apps.
    fn activate_many(&self, batch: Vec<(StoredApp, Prepared)>) {
        let mut routes = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (stored, prepared) in batch {
            let name = prepared.app.name.clone();
            routes.push((name.clone(), prepared.routes));
            entries.push((
                name,
                AppEntry {
                    stored,
                    phase: Phase::Deployed,
                    reason: None,
                    app: Some(prepared.app),
                    workloads: prepared.workloads,
                    exports: prepared.exports,
                    _subscriptions: prepared.subscriptions.start(),
                    uses: prepared.uses,
                },
            ));
        }
        self.ingress.set_routes_of(routes);
        self.apps_lock().extend(entries);
    }

    /// Routes `stored`'s requests to other hosts through `via`: the app does not run here.
    pub fn route_elsewhere(
        &self,
        stored: &StoredApp,
        via: Arc<dyn Forward>,
    ) -> Result<(), HostError> {
        let app = self.app_of(stored)?;
        self.ingress.check_conflicts(&app.name, &app.routes)?;
        self.ingress
            .ensure_listeners(app.routes.iter().map(|r| r.address))?;
        let name: Arc<str> = app.name.as_str().into();
        let entries = app
            .routes
            .into_iter()
            .map(|route| RouteEntry {
                route,
                target: RouteTarget::Remote {
                    app: name.clone(),
                    via: via.clone(),
                },
            })
            .collect();
        self.ingress.set_app_routes(&app.name, entries);
        Ok(())
    }

    /// Lets this host call other apps' components wherever they run (set once, on joining a
    /// lattice, before any app is deployed through it).
    pub fn set_remote_links(&self, remote: Arc<dyn RemoteLinks>) {
        let _ = self.remote.set(remote);
    }

    /// The server of `component`'s exports in `app`, when it runs here.
    pub fn export_server(&self, app: &str, component: &str) -> Option<Arc<ExportServer>> {
        self.apps_lock().get(app)?.exports.get(component).cloned()
    }

    /// Drops every route of `app` (local or elsewhere).
    pub fn forget_routes(&self, app: &str) {
        self.ingress.set_app_routes(app, Vec::new());
    }

    /// The workload of `app` serving `path` for `host` here, when the app runs on this host.
    pub fn local_workload(
        &self,
        app: &str,
        host: Option<&str>,
        path: &str,
    ) -> Option<Arc<Workload>> {
        self.ingress.local_workload(app, host, path)
    }

    /// Stops serving an app and forgets it and its stored versions.
    pub async fn undeploy(&self, name: &str) -> Result<(), HostError> {
        let _guard = self.deploy_lock.lock().await;
        if !self.apps_lock().contains_key(name) {
            return Err(HostError::NotFound(name.to_string()));
        }
        let dependents: Vec<String> = self
            .apps_lock()
            .values()
            .filter(|e| e.uses.contains_key(name))
            .map(|e| e.stored.name.clone())
            .collect();
        if !dependents.is_empty() {
            return Err(HostError::InUse {
                app: name.to_string(),
                dependents,
            });
        }
        self.store.remove(name)?;
        self.ingress.set_app_routes(name, Vec::new());
        self.apps_lock().remove(name);
        tracing::info!(app = %name, "undeployed");
        Ok(())
    }

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
        names.iter().map(|n| self.status(n)).collect()
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
        })
    }

    /// Stops taking new connections and waits, up to `grace`, for the requests in flight to
    /// finish; returns how many were still running when it gave up.
    pub async fn drain(&self, grace: std::time::Duration) -> usize {
        self.ingress.stop_accepting();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let active: usize = self
                .apps_lock()
                .values()
                .flat_map(|app| app.workloads.values())
                .map(|w| w.active_instances())
                .sum();
            if active == 0 || tokio::time::Instant::now() >= deadline {
                return active;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A summary of the host.
    pub fn host_status(&self) -> HostStatus {
        HostStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            state_dir: self.config.state_dir.display().to_string(),
            allocator: self.runtime.allocator().to_string(),
            compilations: self.runtime.compilations(),
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
                max_memory: c.limits.max_memory,
                timeout_ms: c.limits.timeout.as_millis() as u64,
                max_instances: c.limits.max_instances,
                active_instances: workload.map_or(0, |w| w.active_instances()),
                warm_instances: workload.map_or(0, |w| w.warm_instances()),
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
