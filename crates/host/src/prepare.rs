//! Preparing a deploy: every component of a locked app compiled, linked and wired to what it
//! was granted, its listeners bound, nothing visible to requests yet. One step per concern:
//! [`Host::resolve_source`] finds the code, [`Host::link`] the in-process component links,
//! [`Host::access`] the grants and HTTP policy, [`Host::serve`] the workloads and export
//! servers, [`Host::subscribe`] the message deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_capabilities::keyvalue::KEYVALUE;
use weft_capabilities::messaging::MESSAGING;
use weft_manifest::{App, Component};
use weft_runtime::{
    Access, EngineKind, Events, ExportServer, LoadedComponent, RemoteTarget, Workload,
};

use crate::ingress::{RouteEntry, RouteTarget};
use crate::{subscriptions, Host, HostError, Phase, RemoteLinks, StoredApp};

/// A deploy prepared and checked, not yet visible.
pub(crate) struct Prepared {
    pub(crate) app: App,
    pub(crate) workloads: BTreeMap<String, Arc<Workload>>,
    /// Components serving their exports to other hosts (in a lattice).
    pub(crate) exports: BTreeMap<String, Arc<ExportServer>>,
    pub(crate) routes: Vec<RouteEntry>,
    pub(crate) subscriptions: subscriptions::Pending,
    pub(crate) uses: BTreeMap<String, String>,
    pub(crate) compiled: u32,
}

/// What one component of the app runs as, and what it has been given so far.
struct Node<'a> {
    /// `component `x` of app `y``, for errors.
    what: String,
    /// As the app defines it (for a shared component: as its own app does, with this app's links).
    component: Component,
    /// The app whose grants the component holds: its own, or for a shared one the owner's.
    owner: String,
    loaded: LoadedComponent,
    app: &'a App,
    /// The version of `app` being prepared.
    version: &'a str,
}

impl Node<'_> {
    /// A meter for one of the component's workloads in this app at this version.
    fn meter(&self) -> weft_runtime::WorkloadMeter {
        weft_runtime::WorkloadMeter::new(weft_runtime::WorkloadLabels {
            app: self.app.name.clone(),
            version: self.version.to_string(),
            component: self.component.name.clone(),
        })
    }
}

/// The app being prepared, step by step.
#[derive(Default)]
struct Assembly {
    compiled: u32,
    workloads: BTreeMap<String, Arc<Workload>>,
    exports: BTreeMap<String, Arc<ExportServer>>,
    loaded: BTreeMap<String, LoadedComponent>,
    subscriptions: subscriptions::Pending,
    uses: BTreeMap<String, String>,
}

impl Host {
    /// Compiles and links every component of a stored app and binds its listeners; nothing is
    /// visible to requests yet.
    pub(crate) async fn prepare(
        &self,
        stored: &StoredApp,
        app: App,
    ) -> Result<Prepared, HostError> {
        self.ingress.check_conflicts(&app.name, &app.routes)?;
        self.prepare_checked(stored, app).await
    }

    /// `prepare` for an app whose routes are known not to clash (it serves them already).
    pub(crate) async fn prepare_checked(
        &self,
        stored: &StoredApp,
        mut app: App,
    ) -> Result<Prepared, HostError> {
        self.config.ceilings.fit(&mut app)?;
        if self.config.strict && !app.warnings.is_empty() {
            return Err(HostError::Strict {
                app: app.name.clone(),
                warnings: app.warnings.clone(),
            });
        }
        let remote = self.remote.get();
        let mut assembly = Assembly::default();
        let mut warnings = Vec::new();
        // Linked components first, so each source finds its targets' workloads ready.
        for declared in linked_first(&app.components) {
            // In a lattice another app's component that is only called through links runs with
            // its own app, wherever that is placed; calls reach it over NATS.
            if remote.is_some() && declared.shared.is_some() && called_only(&app, &declared.name) {
                continue;
            }
            let mut node = self
                .resolve_source(stored, &app, declared, &mut assembly)
                .await?;
            let engine = self.engine(&node, &assembly, remote);
            if let Some(kind) = engine.filter(|&kind| kind != node.loaded.code.kind()) {
                node.loaded = self
                    .load_for(&node.what, node.loaded.code.digest(), kind)
                    .await?;
            }
            let imports = node.loaded.code.imports();
            warnings.extend(weft_capabilities::secrets_warning(
                &node.what,
                &node.component,
                imports.iter().map(String::as_str),
            ));
            let access = self.access(&node, &assembly, remote, engine).await?;
            self.serve(&node, declared, &access, &mut assembly)?;
            self.subscribe(&node, &access, &mut assembly).await?;
            assembly
                .loaded
                .insert(node.component.name.clone(), node.loaded);
        }
        if !warnings.is_empty() && (self.config.strict || app.strict) {
            return Err(HostError::Strict {
                app: app.name.clone(),
                warnings,
            });
        }
        app.warnings.extend(warnings);
        self.ingress
            .ensure_listeners(app.routes.iter().map(|r| r.address))?;
        let routes = app
            .routes
            .iter()
            .map(|route| RouteEntry {
                route: route.clone(),
                target: RouteTarget::Local(assembly.workloads[&route.component].clone()),
            })
            .collect();
        Ok(Prepared {
            app,
            workloads: assembly.workloads,
            exports: assembly.exports,
            routes,
            subscriptions: assembly.subscriptions,
            uses: assembly.uses,
            compiled: assembly.compiled,
        })
    }

    /// Step 1: the component's code, its own or (shared) its owner's, compiled or from memory.
    async fn resolve_source<'a>(
        &self,
        stored: &'a StoredApp,
        app: &'a App,
        declared: &Component,
        assembly: &mut Assembly,
    ) -> Result<Node<'a>, HostError> {
        let what = format!("component `{}` of app `{}`", declared.name, app.name);
        let (component, digest, owner) = match &declared.shared {
            None => {
                let digest =
                    stored
                        .images
                        .get(&declared.image)
                        .ok_or_else(|| HostError::MissingImage {
                            component: declared.name.clone(),
                            image: declared.image.clone(),
                        })?;
                (declared.clone(), digest.clone(), app.name.clone())
            }
            Some(shared) => {
                let (component, digest, version) = self.resolve_shared(&what, declared, shared)?;
                assembly.uses.insert(shared.app.clone(), version);
                (component, digest, shared.app.clone())
            }
        };
        let loaded = self.load(&what, &digest).await?;
        assembly.compiled += u32::from(loaded.compiled);
        Ok(Node {
            what,
            component,
            owner,
            loaded,
            app,
            version: &stored.version,
        })
    }

    /// Step 2: what the component may reach: its component links (in-process, or over NATS to
    /// another app's component elsewhere), its capability grants, its outgoing-HTTP policy and
    /// the components it calls over HTTP in-process.
    async fn access(
        &self,
        node: &Node<'_>,
        assembly: &Assembly,
        remote: Option<&Arc<dyn RemoteLinks>>,
        engine: Option<EngineKind>,
    ) -> Result<Access, HostError> {
        let component = &node.component;
        let mut grants = self.backends.grants_for(&node.owner, component)?;
        if node
            .app
            .watches
            .iter()
            .any(|w| w.component == component.name)
        {
            grants.hand(&KEYVALUE);
        }
        if node
            .app
            .subscriptions
            .iter()
            .any(|s| s.component == component.name)
        {
            grants.hand(&MESSAGING);
        }
        Ok(Access {
            linked: self.link(node, assembly, remote, engine).await?,
            outgoing: component
                .outgoing_http
                .clone()
                .map(|hosts| Arc::new(weft_runtime::AllowedHosts::new(hosts))),
            // A shared component's own capabilities belong to the app that owns it.
            grants: Arc::new(grants),
            local: Arc::new(
                component
                    .http_links
                    .iter()
                    .map(|l| (l.authority.clone(), assembly.workloads[&l.target].clone()))
                    .collect(),
            ),
            next_handler: component
                .http_links
                .iter()
                .find(|l| l.handler)
                .map(|l| assembly.workloads[&l.target].clone()),
        })
    }

    /// The engine the component runs on when it is not its own: that of its link group (see
    /// `link_engine`), or the plain engine for a reused instance of a large image. The large-image
    /// engine keeps up to 16 MiB of a slot's pages resident so that a fresh instance per request
    /// is reset in place; a reused instance is reset once, when it retires, and the heap it grew
    /// over thousands of requests would stay resident in the slot, for every later fresh
    /// instance to copy back at each reset (bench/RESULTS.md, ninth stop).
    fn engine(
        &self,
        node: &Node<'_>,
        assembly: &Assembly,
        remote: Option<&Arc<dyn RemoteLinks>>,
    ) -> Option<EngineKind> {
        let linked = self.link_engine(node, assembly, remote);
        let kind = linked.unwrap_or_else(|| node.loaded.code.kind());
        if kind == EngineKind::LargeImage && node.component.reuse.is_some() {
            return Some(EngineKind::Plain);
        }
        linked
    }

    /// The engine that the component and the targets of its in-process links run on, in one
    /// store: the large-image one when any of them needs it, so that an interpreter linked to
    /// a small component keeps its fast reset. None without such links, or when they span WASI
    /// generations (the link itself refuses that, naming both).
    fn link_engine(
        &self,
        node: &Node<'_>,
        assembly: &Assembly,
        remote: Option<&Arc<dyn RemoteLinks>>,
    ) -> Option<EngineKind> {
        let source = node.loaded.code.kind();
        let kinds: Vec<EngineKind> = node
            .component
            .component_links
            .iter()
            .filter(|link| remote.is_none() || !self.reached_remotely(node, &link.target))
            .filter_map(|link| assembly.loaded.get(&link.target))
            .map(|loaded| loaded.code.kind())
            .collect();
        if kinds.is_empty() || kinds.iter().any(|k| k.generation() != source.generation()) {
            return None;
        }
        if source == EngineKind::LargeImage || kinds.contains(&EngineKind::LargeImage) {
            Some(EngineKind::LargeImage)
        } else {
            Some(source)
        }
    }

    /// Whether link target `target` of `node`'s app runs with its own app elsewhere.
    fn reached_remotely(&self, node: &Node<'_>, target: &str) -> bool {
        node.app
            .components
            .iter()
            .any(|c| c.name == target && c.shared.is_some())
    }

    /// The component's links to interfaces of other components, composed into its code. Local
    /// targets are loaded for `engine`, the one the source runs on.
    async fn link(
        &self,
        node: &Node<'_>,
        assembly: &Assembly,
        remote: Option<&Arc<dyn RemoteLinks>>,
        engine: Option<EngineKind>,
    ) -> Result<Option<Arc<weft_runtime::Linked>>, HostError> {
        let component = &node.component;
        if component.component_links.is_empty() {
            return Ok(None);
        }
        let mut locals = Vec::new();
        let mut remotes = Vec::new();
        for link in &component.component_links {
            let declared = node.app.components.iter().find(|c| c.name == link.target);
            if let (Some(remote), Some(shared)) = (remote, declared.and_then(|c| c.shared.as_ref()))
            {
                remotes.push(RemoteTarget {
                    name: &link.target,
                    interfaces: &link.interfaces,
                    via: remote.caller(&shared.app, &shared.component),
                });
                continue;
            }
            let target = declared
                .filter(|c| {
                    c.grants.is_empty()
                        && c.secrets.is_empty()
                        && c.http_links.is_empty()
                        && c.component_links.is_empty()
                        && c.shared.is_none()
                })
                .ok_or_else(|| HostError::LinkTarget {
                    what: node.what.clone(),
                    target: link.target.clone(),
                })?;
            let mut loaded = assembly.loaded[&target.name].clone();
            if let Some(kind) = engine.filter(|&kind| kind != loaded.code.kind()) {
                let what = format!("component `{}` of app `{}`", target.name, node.app.name);
                loaded = self.load_for(&what, loaded.code.digest(), kind).await?;
            }
            locals.push((target, loaded, &link.interfaces));
        }
        let targets: Vec<_> = locals
            .iter()
            .map(|(target, loaded, interfaces)| weft_runtime::LinkTarget {
                name: &target.name,
                loaded,
                interfaces,
            })
            .collect();
        Ok(Some(self.runtime.link_components(
            &node.what,
            &node.loaded,
            &targets,
            &remotes,
        )?))
    }

    /// Step 3: an HTTP workload when requests reach the component (a route or an HTTP link),
    /// an import check otherwise; an export server for calls from other hosts and `weft call`.
    fn serve(
        &self,
        node: &Node<'_>,
        declared: &Component,
        access: &Access,
        assembly: &mut Assembly,
    ) -> Result<(), HostError> {
        let component = &node.component;
        let app = node.app;
        let routed = app.routes.iter().any(|r| r.component == component.name)
            || app
                .components
                .iter()
                .any(|c| c.http_links.iter().any(|l| l.target == component.name));
        if routed {
            let workload = self.runtime.http_workload(
                &node.what,
                &node.loaded,
                component.limits,
                component.reuse,
                access.clone(),
                node.meter(),
            )?;
            assembly.workloads.insert(component.name.clone(), workload);
        } else {
            self.runtime
                .check_imports(&node.what, &node.loaded, access)?;
        }
        let exports_own = !node.loaded.code.own_exports().is_empty();
        if declared.shared.is_none() && exports_own {
            let server = self.runtime.export_server(
                &node.what,
                &node.loaded,
                component.limits,
                access.clone(),
            )?;
            assembly.exports.insert(component.name.clone(), server);
        }
        Ok(())
    }

    /// Step 4: the subjects delivered to the component's message handler, the key changes to
    /// its watcher, the ticks of its schedules to its schedule handler.
    async fn subscribe(
        &self,
        node: &Node<'_>,
        access: &Access,
        assembly: &mut Assembly,
    ) -> Result<(), HostError> {
        let component = &node.component;
        let app = node.app;
        let failed = |subject: String, reason: &dyn std::fmt::Display| HostError::Subscribe {
            what: node.what.clone(),
            subject,
            reason: reason.to_string(),
        };
        let handler_of = |events| {
            self.runtime.event_handler(
                &node.what,
                &node.loaded,
                component.limits,
                access.clone(),
                events,
                node.meter(),
            )
        };
        for subscription in app
            .subscriptions
            .iter()
            .filter(|s| s.component == component.name)
        {
            let handler = handler_of(Events::Messages)?;
            let broker = self
                .backends
                .broker_for(&app.name, subscription)
                .map_err(|e| failed(subscription.subjects.join(","), &e))?;
            for subject in &subscription.subjects {
                let feed = broker
                    .subscribe(subject)
                    .await
                    .map_err(|e| failed(subject.clone(), &e))?;
                assembly
                    .subscriptions
                    .add(subject.clone(), feed, broker.clone(), handler.clone());
            }
        }
        for watch in app.watches.iter().filter(|w| w.component == component.name) {
            let keys = || [watch.on_set.clone(), watch.on_delete.clone()].concat();
            let handler = handler_of(Events::KeyChanges)?;
            let store = self
                .backends
                .store_for(&app.name, watch)
                .map_err(|e| failed(keys().join(","), &e))?;
            let changes = store
                .watch("", &keys())
                .await
                .map_err(|e| failed(keys().join(","), &e))?;
            assembly
                .subscriptions
                .add_watch(watch.clone(), changes, store, handler);
        }
        for schedule in app
            .schedules
            .iter()
            .filter(|s| s.component == component.name)
        {
            let handler = handler_of(Events::Ticks)?;
            assembly.subscriptions.add_schedule(
                &app.name,
                schedule.clone(),
                self.tick_claims(),
                handler,
            );
        }
        Ok(())
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

    pub(crate) async fn load(
        &self,
        what: &str,
        digest: &str,
    ) -> Result<LoadedComponent, HostError> {
        // Code already in memory needs no read, hash or compile: re-linking thousands of apps to
        // a new harness costs a lookup per app.
        if let Some(loaded) = self.runtime.loaded(digest) {
            return Ok(loaded);
        }
        self.compile(what, digest, None).await
    }

    /// The component with `digest` compiled for engine `kind` (see `link_engine`).
    async fn load_for(
        &self,
        what: &str,
        digest: &str,
        kind: EngineKind,
    ) -> Result<LoadedComponent, HostError> {
        // As for `load`: a redeploy of a link group reads, hashes and loads nothing again.
        if let Some(loaded) = self.runtime.loaded_for(digest, kind) {
            return Ok(loaded);
        }
        self.compile(what, digest, Some(kind)).await
    }

    /// Reads the stored component, checks its signature when the host trusts only signed ones,
    /// and compiles it (or finds it compiled) for `engine`, or for its own engine when None.
    async fn compile(
        &self,
        what: &str,
        digest: &str,
        engine: Option<EngineKind>,
    ) -> Result<LoadedComponent, HostError> {
        let bytes = self.blobs.get(digest)?;
        if let Some(trusted) = &self.config.trusted_keys {
            let signer = trusted
                .verify(&bytes)
                .map_err(|reason| HostError::Unsigned {
                    what: what.to_string(),
                    reason,
                })?;
            tracing::debug!(%what, key = %signer, "signature verified");
        }
        let runtime = self.runtime.clone();
        let what = what.to_string();
        tokio::task::spawn_blocking(move || match engine {
            None => runtime.load(&what, &bytes),
            Some(kind) => runtime.load_for(&what, &bytes, kind),
        })
        .await
        .map_err(|e| HostError::Setup(format!("compiler task failed: {e}")))?
        .map_err(HostError::from)
    }
}

/// Whether component `name` of `app` is reached only through component links (no route, no
/// HTTP link, no subscription, watch or schedule).
fn called_only(app: &App, name: &str) -> bool {
    !app.routes.iter().any(|r| r.component == name)
        && !app.subscriptions.iter().any(|s| s.component == name)
        && !app.watches.iter().any(|w| w.component == name)
        && !app.schedules.iter().any(|s| s.component == name)
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
