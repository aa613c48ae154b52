//! A weft host: the apps it serves, their workloads, the HTTP ingress, the embedded state store
//! and the control API.

pub use weft_api as api;
pub mod apps;
mod blobs;
pub mod ceilings;
mod connections;
pub mod control;
mod dashboard;
pub mod events;
mod ingress;
pub mod member;
mod prepare;
mod status;
mod store;
mod subscriptions;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use weft_capabilities::{Backends, CapabilityError, SecretStore};
use weft_manifest::{App, ManifestError};
use weft_runtime::{ExportServer, RemoteCall, Runtime, RuntimeError, Workload};

pub use api::{AppStatus, ComponentStatus, DeployOutcome, DeployRequest, HostStatus, Phase};
pub use blobs::{BlobError, BlobStore};
pub use ceilings::{AboveCeiling, Ceilings};
pub use ingress::{Forward, IngressRequest, LimitedBody, RouteTarget};
use ingress::{Ingress, RouteEntry};
pub use ingress::{IngressError, DEFAULT_MAX_REQUEST_BODY};
use prepare::Prepared;
pub use store::{StateStore, StoreError, StoredApp};
pub use subscriptions::ClaimTicks;
pub use weft_runtime::{default_memory_budget, drop_retired};

/// How to start a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub state_dir: PathBuf,
    /// Try the pooling allocator first (falls back to on-demand when it cannot reserve memory).
    pub pooling: bool,
    pub max_request_body: u64,
    /// Linear memory all guest instances together may hold, in bytes.
    pub memory_budget: u64,
    /// The most one component may ask for.
    pub ceilings: Ceilings,
    /// Versions kept per app (the current one among them); older ones and the components only
    /// they used are deleted.
    pub keep_versions: usize,
    /// Refuse an app whose manifest says anything weft would not act on (its warnings).
    pub strict: bool,
    /// Serve every app's routes on this address instead of the manifest's (several lattice
    /// hosts on one machine each take their own).
    pub http_address: Option<std::net::SocketAddr>,
    /// When set, every component must carry a signature by one of these keys; it is checked
    /// before the component is compiled.
    pub trusted_keys: Option<weft_signing::TrustedKeys>,
}

/// Why a host operation failed. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    AboveCeiling(#[from] AboveCeiling),
    #[error(
        "app `{app}` is deployed strictly (`weft up --strict` on this host, or the app's \
         `weft.dev/strict` annotation), and weft would not act on all the manifest says:\n  {}",
        warnings.join("\n  ")
    )]
    Strict { app: String, warnings: Vec<String> },
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
    #[error("app `{0}` is given more than once in one deploy; give each app once")]
    Repeated(String),
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
    #[error("{0}")]
    NoComponent(String),
    #[error("`{0}` is not a valid version; use letters, digits, `-`, `_` and `.`")]
    BadVersion(String),
    #[error("the call failed: {0}")]
    Call(String),
    #[error("{what} is refused: {reason} (this host runs with --require-signature)")]
    Unsigned {
        what: String,
        reason: weft_signing::SignatureError,
    },
}

impl HostError {
    /// Why `component` of `app` (whose status is `status`) cannot be called.
    pub fn no_component(app: &str, component: &str, status: &AppStatus) -> Self {
        let names: Vec<&str> = status.components.iter().map(|c| c.name.as_str()).collect();
        if names.contains(&component) {
            HostError::NoComponent(format!(
                "component `{component}` of app `{app}` exports no function to call (only WASI \
                 interfaces, such as an HTTP handler); `weft inspect {app}/{component}` shows \
                 its exports"
            ))
        } else {
            HostError::NoComponent(format!(
                "app `{app}` has no component `{component}`; its components: {}",
                names.join(", ")
            ))
        }
    }
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
    /// As stored, without its locked app (`app` is the one that runs here).
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

/// A deploy request checked against what runs and what is stored.
enum Admitted {
    /// This exact version serves already.
    Unchanged(DeployOutcome),
    /// A version to prepare, and the version it replaces.
    New {
        stored: Box<StoredApp>,
        app: Box<App>,
        previous: Option<String>,
    },
}

/// One prepared app of a batch, waiting to be stored and switched on.
struct Ready {
    /// Its place in the batch's requests.
    index: usize,
    stored: StoredApp,
    prepared: Prepared,
    previous: Option<String>,
}

/// The prepared apps of a batch deploy and the routes they claim.
#[derive(Default)]
struct Batch {
    ready: Vec<Ready>,
    /// Where each route of the batch's apps is served → the app that will serve it.
    claimed: std::collections::HashMap<ingress::RoutePlace, String>,
}

impl Batch {
    fn add(
        &mut self,
        index: usize,
        stored: StoredApp,
        prepared: Prepared,
        previous: Option<String>,
    ) {
        for route in &prepared.app.routes {
            self.claimed
                .insert(ingress::key_of(route), prepared.app.name.clone());
        }
        self.ready.push(Ready {
            index,
            stored,
            prepared,
            previous,
        });
    }

    fn holds(&self, name: &str) -> bool {
        self.ready.iter().any(|r| r.prepared.app.name == name)
    }

    /// Whether `app` can only be prepared against this batch serving: it uses one of its apps'
    /// components, or one of its routes is served now by an app this batch replaces.
    fn must_serve_first(&self, app: &App, ingress: &Ingress) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        app.uses().iter().any(|used| self.holds(used))
            || matches!(
                ingress.check_conflicts(&app.name, &app.routes),
                Err(IngressError::Conflict { other, .. }) if self.holds(&other)
            )
    }

    /// Fails when an earlier app of this batch takes one of `app`'s routes.
    fn check_routes(&self, app: &App) -> Result<(), IngressError> {
        ingress::first_clash(&app.name, &app.routes, |place| self.claimed.get(place))
    }
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
    /// What happened lately, for the dashboard.
    events: events::Events,
    /// Set in a lattice: reaches other apps' components wherever they run.
    remote: std::sync::OnceLock<Arc<dyn RemoteLinks>>,
    /// Set in a lattice: which host handles each schedule tick. Alone, this host does.
    tick_claims: std::sync::OnceLock<Arc<dyn ClaimTicks>>,
    /// When this host started, in milliseconds since the epoch.
    started_at_ms: u64,
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

/// How long an uploaded component no stored version uses is kept: the time a deploy may take
/// between uploading it and storing the version that uses it.
const UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Deletes unused uploads once at start and then every [`UPLOAD_GRACE`], so those of refused
/// deploys do not pile up; off the async threads, and never in the way of a start.
async fn collect_garbage_now_and_then(host: std::sync::Weak<Host>) {
    let mut tick = tokio::time::interval(UPLOAD_GRACE);
    loop {
        tick.tick().await;
        let Some(host) = host.upgrade() else { return };
        let _ = tokio::task::spawn_blocking(move || host.collect_garbage()).await;
    }
}

/// Stored apps ordered so that an app whose components others use comes before them.
fn restore_order(apps: Vec<StoredApp>) -> Vec<StoredApp> {
    let uses: BTreeMap<String, BTreeSet<String>> = apps
        .iter()
        .map(|s| {
            let uses = s.locked().map(|app| app.uses()).unwrap_or_default();
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
        std::fs::create_dir_all(&config.state_dir)
            .and_then(|()| {
                // A dir made before (by hand, or by an older weft) is closed to others too.
                std::fs::set_permissions(
                    &config.state_dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                )
            })
            .map_err(|e| {
                HostError::Setup(format!(
                    "cannot create state dir {}: {e}",
                    config.state_dir.display()
                ))
            })?;
        let store = StateStore::open(&config.state_dir.join("state.redb"))?;
        let blobs = BlobStore::open(&config.state_dir.join("components"))?;
        let runtime = Runtime::new(
            &config.state_dir.join("compiled"),
            config.pooling,
            config.memory_budget,
        )?;
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
            events: events::Events::default(),
            remote: std::sync::OnceLock::new(),
            tick_claims: std::sync::OnceLock::new(),
            started_at_ms: now() * 1000,
        });
        // The host's own address is taken at start: bound lazily, another process (or an
        // outgoing connection's ephemeral port) could take it before the first app arrives.
        if let Some(address) = host.config.http_address {
            host.ingress
                .ensure_listeners([address])
                .map_err(|e| HostError::Setup(format!("{e}; pick another address with --http")))?;
        }
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
                            stored: stored.without_app(),
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
        tokio::spawn(collect_garbage_now_and_then(Arc::downgrade(&host)));
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
        let mut results = self.deploy_many(vec![request]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(HostError::Setup("a deploy gave no result".into())))
    }

    /// Deploys many apps in order, each checked and prepared as [`deploy`](Self::deploy) does,
    /// with one result per request in the same order. Those that pass are stored in one
    /// transaction and switched on with one route-table swap per listener; an app that fails
    /// costs only itself. An app that uses a component of an app earlier in the batch, or takes
    /// a route an earlier one gives up, is prepared once that app is serving.
    pub async fn deploy_many(
        &self,
        requests: Vec<DeployRequest>,
    ) -> Vec<Result<DeployOutcome, HostError>> {
        let _guard = self.deploy_lock.lock().await;
        let mut results: Vec<Option<Result<DeployOutcome, HostError>>> =
            std::iter::repeat_with(|| None)
                .take(requests.len())
                .collect();
        let mut names = std::collections::HashSet::new();
        let mut batch = Batch::default();
        for (index, request) in requests.into_iter().enumerate() {
            // Thousands of apps prepared in a row must not hold this worker from the requests
            // queued behind them.
            if index % 32 == 31 {
                tokio::task::yield_now().await;
            }
            let (stored, app, previous) = match self.admit(request, &mut names) {
                Ok(Admitted::New {
                    stored,
                    app,
                    previous,
                }) => (*stored, *app, previous),
                Ok(Admitted::Unchanged(outcome)) => {
                    results[index] = Some(Ok(outcome));
                    continue;
                }
                Err(e) => {
                    results[index] = Some(Err(e));
                    continue;
                }
            };
            if batch.must_serve_first(&app, &self.ingress) {
                self.switch_on(std::mem::take(&mut batch), &mut results)
                    .await;
            }
            if let Err(e) = batch.check_routes(&app) {
                results[index] = Some(Err(e.into()));
                continue;
            }
            let name = app.name.clone();
            let version = stored.version.clone();
            match self.prepare(&stored, app).await {
                Ok(prepared) => batch.add(index, stored, prepared, previous),
                Err(e) => {
                    self.events
                        .record("refused", format!("{name} {version} not deployed: {e}"));
                    results[index] = Some(Err(e));
                }
            }
        }
        self.switch_on(batch, &mut results).await;
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(HostError::Setup("a deploy gave no result".into()))))
            .collect()
    }

    /// What a deploy request is before it is prepared: the version running already, or a new
    /// one that does not clash with a stored version of the same name.
    fn admit(
        &self,
        request: DeployRequest,
        names: &mut std::collections::HashSet<String>,
    ) -> Result<Admitted, HostError> {
        let (stored, app) = self.stored_of(request)?;
        if !names.insert(app.name.clone()) {
            return Err(HostError::Repeated(app.name));
        }
        let version = stored.version.clone();
        let previous = self.apps_lock().get(&app.name).map(|e| {
            let same = e.stored.manifest == stored.manifest
                && e.stored.images == stored.images
                && e.stored.caps == stored.caps;
            let warnings = e.app.as_ref().map(|a| a.warnings.clone());
            (e.stored.version.clone(), same, e.phase, warnings)
        });
        if let Some((running, same, phase, warnings)) = &previous {
            if *running == version && *same && *phase == Phase::Deployed {
                return Ok(Admitted::Unchanged(DeployOutcome {
                    app: app.name,
                    version,
                    previous: Some(running.clone()),
                    compiled: 0,
                    unchanged: true,
                    relinked: 0,
                    relink_failures: Vec::new(),
                    // The running version's, host-side warnings included.
                    warnings: warnings.clone().unwrap_or(app.warnings),
                }));
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
        Ok(Admitted::New {
            stored: Box::new(stored),
            app: Box::new(app),
            previous: previous.map(|p| p.0),
        })
    }

    /// Stores a batch of prepared apps in one transaction and switches them on together, then
    /// re-links the apps that use them; fills in each one's result.
    async fn switch_on(
        &self,
        batch: Batch,
        results: &mut [Option<Result<DeployOutcome, HostError>>],
    ) {
        if batch.ready.is_empty() {
            return;
        }
        let stored: Vec<&StoredApp> = batch.ready.iter().map(|r| &r.stored).collect();
        let dropped = match self
            .store
            .put_current_many(&stored, self.config.keep_versions)
        {
            Ok(dropped) => dropped,
            Err(e) => {
                for ready in batch.ready {
                    results[ready.index] = Some(Err(e.clone().into()));
                }
                return;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.ready.len());
        let mut switched = Vec::with_capacity(batch.ready.len());
        for ready in batch.ready {
            let name = ready.prepared.app.name.clone();
            tracing::info!(app = %name, version = %ready.stored.version, compiled = ready.prepared.compiled, "deployed");
            outcomes.push((
                ready.index,
                DeployOutcome {
                    app: name,
                    version: ready.stored.version.clone(),
                    previous: ready.previous,
                    compiled: ready.prepared.compiled,
                    unchanged: false,
                    relinked: 0,
                    relink_failures: Vec::new(),
                    warnings: ready.prepared.app.warnings.clone(),
                },
            ));
            switched.push((ready.stored, ready.prepared));
        }
        self.activate_many(switched);
        // Only dropped versions can leave components unused on the deploy path; uploads of
        // refused deploys are left to the periodic sweep.
        if dropped > 0 {
            self.collect_garbage();
        }
        self.events.record(
            "deployed",
            match outcomes.as_slice() {
                [(_, one)] => format!("{} {} deployed", one.app, one.version),
                many => format!(
                    "{} apps deployed: {}{}",
                    many.len(),
                    many.iter()
                        .take(5)
                        .map(|(_, o)| format!("{} {}", o.app, o.version))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if many.len() > 5 { ", …" } else { "" }
                ),
            },
        );
        let used: BTreeSet<String> = self
            .apps_lock()
            .values()
            .flat_map(|e| e.uses.keys().cloned())
            .collect();
        for (index, mut outcome) in outcomes {
            if used.contains(&outcome.app) {
                let (relinked, failures) = self.relink_dependents(&outcome.app).await;
                self.record_relinks(&outcome, relinked, &failures);
                outcome.relinked = relinked;
                outcome.relink_failures = failures;
            }
            results[index] = Some(Ok(outcome));
        }
    }

    /// Tells the log and the dashboard how re-linking the users of a deployed app went.
    fn record_relinks(&self, deployed: &DeployOutcome, relinked: u32, failures: &[String]) {
        if relinked == 0 && failures.is_empty() {
            return;
        }
        let (name, version) = (&deployed.app, &deployed.version);
        self.events.record(
            "relinked",
            format!(
                "{relinked} apps re-linked to {name} {version}{}",
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(", {} left on the previous version", failures.len())
                }
            ),
        );
        tracing::info!(app = %name, relinked, failed = failures.len(), "dependents re-linked");
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
        let mut app = stored.locked()?;
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
        let app = weft_manifest::parse_app(
            &request.manifest,
            &request.origin,
            weft_capabilities::catalog(),
        )?;
        if let Some(version) = &request.version {
            if !weft_manifest::is_valid_name(version) {
                return Err(HostError::BadVersion(version.clone()));
            }
        }
        let version = request
            .version
            .clone()
            .or_else(|| app.version.clone())
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
            app: Some(app),
        };
        let app = self.app_of(&stored)?;
        Ok((stored, app))
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
                    stored: stored.without_app(),
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

    /// Makes this host share schedule ticks with others (in a lattice); set before any deploy.
    pub fn set_tick_claims(&self, claims: Arc<dyn ClaimTicks>) {
        let _ = self.tick_claims.set(claims);
    }

    /// Who decides which host handles a tick.
    pub(crate) fn tick_claims(&self) -> Arc<dyn ClaimTicks> {
        self.tick_claims
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(subscriptions::Alone))
    }

    /// The server of `component`'s exports in `app`, when it runs here.
    pub fn export_server(&self, app: &str, component: &str) -> Option<Arc<ExportServer>> {
        self.apps_lock().get(app)?.exports.get(component).cloned()
    }

    /// Calls the export at `path` of `component` of `app` with WAVE arguments; returns the
    /// results in WAVE.
    pub async fn call(
        &self,
        app: &str,
        component: &str,
        path: &str,
        args: &[String],
    ) -> Result<Vec<String>, HostError> {
        let Some(server) = self.export_server(app, component) else {
            let status = self.status(app)?;
            return Err(HostError::no_component(app, component, &status));
        };
        server
            .call_wave(path, args)
            .await
            .map_err(|weft_runtime::CallFailed(e)| HostError::Call(e))
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

    /// What happened lately on this host (and, in a lattice, to its hosts).
    pub fn events(&self) -> &events::Events {
        &self.events
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
        self.collect_garbage();
        tracing::info!(app = %name, "undeployed");
        self.events
            .record("undeployed", format!("{name} undeployed"));
        Ok(())
    }

    /// Deletes the uploaded components no kept version of any app uses (after
    /// [`UPLOAD_GRACE`]); a failure is logged, never a deploy's error.
    fn collect_garbage(&self) {
        let deleted = self
            .store
            .referenced_digests()
            .map_err(HostError::from)
            .and_then(|keep| Ok(self.blobs.retain(&keep, UPLOAD_GRACE)?));
        match deleted {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted components no kept version uses"),
            Err(e) => tracing::warn!("cannot delete unused components: {e}"),
        }
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
}
