//! The capabilities weft's host implements for guests: key-value, blobstore, messaging, config,
//! logging, secrets and link-name selection. One module per WIT package; inside a package, one
//! file per backend behind one trait, so a new backend is a new file.
//!
//! A component reaches a capability only through a link in its manifest: [`Grants`] holds what
//! one component was granted, and [`Grants::check_imports`] refuses, at deploy, a component that
//! imports a capability it has no link for.

pub mod blobstore;
mod bus;
pub mod catalog;
mod config;
pub mod http_client;
pub mod http_server;
pub mod keyvalue;
mod logging;
pub mod messaging;
pub mod provides;
mod redis_server;
pub mod schedule;
pub mod secrets;
pub mod settings;
pub mod sql;
mod sqlite_file;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};
use weft_manifest::{Component, Grant, DEFAULT_LINK_NAME};

pub use catalog::{
    catalog, Backend, BackendError, Backends, Capability, Erased, Kind, Placement, CAPABILITIES,
};
pub use secrets::SecretStore;

/// Host bindings generated from `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "weft:capabilities/host",
        // `tracing`: a span per capability call, which weft's trace export names and sends.
        imports: { default: async | trappable | tracing },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
            "wasmcloud:secrets/store.secret": crate::secrets::Secret,
            "wasmcloud:bus/lattice.call-target-interface": crate::bus::CallTargetInterface,
            "wasmcloud:messaging/types.client": crate::messaging::v0_3::Client,
            "wasmcloud:messaging/types.message": crate::messaging::v0_3::Envelope,
            "wasmcloud:messaging/request-reply.request-options": crate::messaging::v0_3::RequestOptions,
            "wasi:blobstore/container.container": crate::blobstore::Container,
            "wasi:blobstore/container.stream-object-names": crate::blobstore::ObjectNames,
            "wasi:blobstore/types.outgoing-value": crate::blobstore::OutgoingValue,
            "wasi:blobstore/types.incoming-value": crate::blobstore::IncomingValue,
            "fermyon:spin/sqlite.connection": crate::sql::Connection,
        },
    });

    pub use wasi::*;
    pub use wasmcloud::*;
}

/// Bindings for calling a component's `wasmcloud:messaging/handler@0.2.0` or
/// `incoming-handler@0.3.0` export.
pub mod handler_bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "weft:capabilities/message-handler",
        exports: { default: async },
    });

    mod incoming {
        wasmtime::component::bindgen!({
            path: "wit",
            world: "weft:capabilities/incoming-handler",
            exports: { default: async },
            with: { "wasmcloud:messaging/types": crate::bindings::messaging0_3_0::types },
        });
    }
    pub use incoming::{IncomingHandler, IncomingHandlerPre};

    mod watcher {
        wasmtime::component::bindgen!({
            path: "wit",
            world: "weft:capabilities/key-watcher",
            exports: { default: async },
            with: { "wasi:keyvalue/store": crate::bindings::keyvalue::store },
        });
    }
    pub use watcher::{KeyWatcher, KeyWatcherPre};

    mod scheduled {
        wasmtime::component::bindgen!({
            path: "wit",
            world: "weft:capabilities/scheduled",
            exports: { default: async },
        });
    }
    pub use scheduled::exports::weft::schedule::handler::Tick;
    pub use scheduled::{Scheduled, ScheduledPre};
}

/// Why a capability cannot be granted or served.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error(
        "{what} imports `{import}` but has no link granting it; add a link from the component \
         to a {kind} capability (namespace: {namespace}, package: {package})"
    )]
    NotGranted {
        what: String,
        import: String,
        kind: &'static str,
        namespace: &'static str,
        package: &'static str,
    },
    #[error("{what}: {capability} ({backend}): {source}")]
    Backend {
        what: String,
        capability: String,
        backend: String,
        source: BackendError,
    },
    #[error("{what}: `{kind}` is not a capability this host provides")]
    UnknownKind { what: String, kind: String },
}

/// What one component was granted, shared by all its instances.
pub struct Grants {
    /// `app/component`, for log lines.
    pub workload: Arc<str>,
    /// The component's config: its named configs merged in order.
    pub config: BTreeMap<String, String>,
    /// Capability name → link name → the backend, an `Arc` of the capability's backend trait.
    pub granted: HashMap<&'static str, BTreeMap<String, Erased>>,
    /// Capability name → link name → the name of its backend (`redis`, `nats`…), for metrics.
    pub backend_names: HashMap<&'static str, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, secrets::SecretSource>,
    /// Interfaces (`namespace:package/interface`) whose types events hand the component, which
    /// it may import with no link (see [`Grants::hand`]).
    pub handed: Vec<String>,
}

impl Grants {
    /// A component that was granted nothing (config and logging only).
    pub fn none(workload: &str) -> Self {
        Grants {
            workload: workload.into(),
            config: BTreeMap::new(),
            granted: HashMap::new(),
            backend_names: HashMap::new(),
            secrets: BTreeMap::new(),
            handed: Vec::new(),
        }
    }

    /// Lets the component import the interfaces whose types the events of `kind` hand it (a
    /// watched key's bucket, a delivered message): it is delivered such events. Using them to
    /// reach the capability (opening a bucket, publishing) still needs a link.
    pub fn hand<S: ?Sized>(&mut self, kind: &Kind<S>) {
        let handed = kind.delivery.as_ref().map_or(&[][..], |d| d.handed);
        for interface in handed {
            self.handed
                .push(format!("{}:{}/{interface}", kind.namespace, kind.package));
        }
    }

    /// Refuses a component that imports a capability it holds no link for, naming the import.
    /// Config, logging and `wasmcloud:bus` need no link: they reach nothing outside the component;
    /// nor do secrets, which answer not-found for any name not granted (see [`secrets_warning`]).
    pub fn check_imports<'a>(
        &self,
        what: &str,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), CapabilityError> {
        for import in imports {
            let unversioned = import.split('@').next().unwrap_or(import);
            if self.handed.iter().any(|h| h == unversioned) {
                continue;
            }
            for capability in CAPABILITIES {
                let Some((namespace, package)) = capability.gated_package() else {
                    continue;
                };
                let gated = import
                    .strip_prefix(namespace)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(|rest| rest.strip_prefix(package))
                    .is_some_and(|rest| rest.starts_with('/'));
                if gated && !self.granted.contains_key(capability.name()) {
                    return Err(CapabilityError::NotGranted {
                        what: what.into(),
                        import: import.into(),
                        kind: capability.name(),
                        namespace,
                        package,
                    });
                }
            }
        }
        Ok(())
    }
}

/// What a deploy says of a component that imports `wasmcloud:secrets` but is granted none: it
/// is served as wasmCloud serves it (every secret not found), unless the deploy is strict.
pub fn secrets_warning<'a>(
    what: &str,
    component: &Component,
    imports: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let import = imports
        .into_iter()
        .find(|i| i.starts_with("wasmcloud:secrets/"))?;
    component.secrets.is_empty().then(|| {
        format!(
            "{what} imports `{import}` but is granted no secrets: every secret it asks for is \
             not found, as on wasmCloud; list them under properties.secrets"
        )
    })
}

impl Backends {
    /// Resolves what `component` of `app` was granted into live backends. Connections to servers
    /// are made on first use, so a deploy does not wait on (or fail for) a server that is down.
    pub fn grants_for(&self, app: &str, component: &Component) -> Result<Grants, CapabilityError> {
        let workload = format!("{app}/{}", component.name);
        let mut grants = Grants::none(&workload);
        grants.config = weft_manifest::merge(component.config.iter());
        let at = self.placement(app);
        for grant in &component.grants {
            let capability =
                catalog::capability(&grant.kind).ok_or_else(|| CapabilityError::UnknownKind {
                    what: workload.clone(),
                    kind: grant.kind.clone(),
                })?;
            let backend =
                capability
                    .open(self, &at, grant)
                    .map_err(|source| CapabilityError::Backend {
                        what: workload.clone(),
                        capability: grant.capability.clone(),
                        backend: grant.backend.clone(),
                        source,
                    })?;
            grants
                .granted
                .entry(capability.name())
                .or_default()
                .insert(grant.link_name.clone(), backend);
            grants
                .backend_names
                .entry(capability.name())
                .or_default()
                .insert(grant.link_name.clone(), grant.backend.clone());
        }
        for secret in &component.secrets {
            grants.secrets.insert(
                secret.name.clone(),
                secrets::SecretSource::new(self.secrets.clone(), secret.key.clone()),
            );
        }
        Ok(grants)
    }

    /// The broker a subscription's messages come from.
    pub fn broker_for(
        &self,
        app: &str,
        subscription: &weft_manifest::Subscription,
    ) -> Result<Arc<dyn messaging::Broker>, BackendError> {
        let grant = Grant {
            kind: subscription.kind.clone(),
            capability: subscription.capability.clone(),
            link_name: DEFAULT_LINK_NAME.into(),
            backend: subscription.backend.clone(),
            settings: subscription.settings.clone(),
        };
        messaging::MESSAGING.open_typed(self, &self.placement(app), &grant)
    }

    /// The key-value store a watch's changes come from: the one the app's components use.
    pub fn store_for(
        &self,
        app: &str,
        watch: &weft_manifest::KeyWatch,
    ) -> Result<Arc<dyn keyvalue::KeyValueStore>, BackendError> {
        let grant = Grant {
            kind: keyvalue::KEYVALUE.name.to_string(),
            capability: watch.capability.clone(),
            link_name: DEFAULT_LINK_NAME.into(),
            backend: watch.backend.clone(),
            settings: watch.settings.clone(),
        };
        keyvalue::KEYVALUE.open_typed(self, &self.placement(app), &grant)
    }
}

/// Per-instance capability state: the grants and the link names the guest picked.
pub struct CapabilityCtx {
    grants: Arc<Grants>,
    /// `namespace:package` → the link name `set-link-name` chose for it.
    link_names: HashMap<String, String>,
}

impl CapabilityCtx {
    /// State for one instance of a component holding `grants`.
    pub fn new(grants: Arc<Grants>) -> Self {
        CapabilityCtx {
            grants,
            link_names: HashMap::new(),
        }
    }

    /// Forgets what the instance chose (its link names), as for a new instance of the same
    /// component: for one reset in place.
    pub fn renew(&mut self) {
        self.link_names.clear();
    }

    /// The backend of `kind` under the link named `name`, or a message naming the links there
    /// are, for the guest.
    fn linked_as<S: ?Sized + Send + Sync + 'static>(
        &self,
        kind: &Kind<S>,
        name: &str,
    ) -> Result<Arc<S>, String> {
        let links = self.grants.granted.get(kind.name);
        links
            .and_then(|links| links.get(name))
            .and_then(|backend| backend.downcast_ref::<Arc<S>>())
            .cloned()
            .ok_or_else(|| no_link(&format!("{}:{}", kind.namespace, kind.package), name, links))
    }

    /// The link name in force for `namespace:package`; found without building the key, since
    /// every capability call asks and the map is almost always empty.
    fn link_name(&self, namespace: &str, package: &str) -> &str {
        self.link_names
            .iter()
            .find(|(key, _)| {
                key.strip_prefix(namespace)
                    .and_then(|rest| rest.strip_prefix(':'))
                    == Some(package)
            })
            .map_or(DEFAULT_LINK_NAME, |(_, name)| name.as_str())
    }

    /// The backend of `kind` under the link name in force, or a message naming the links there
    /// are, for the guest.
    fn linked<S: ?Sized + Send + Sync + 'static>(&self, kind: &Kind<S>) -> Result<Arc<S>, String> {
        self.linked_as(kind, self.link_name(kind.namespace, kind.package))
    }

    /// Counts a guest's call of `metered`'s capability, under the backend of the link in force
    /// (`host` for what the host serves itself, `ungranted` for a call with no link, which fails).
    fn count_call(&self, metered: &Metered) {
        if !weft_metrics::enabled() {
            return;
        }
        let backend = match metered.linked_by {
            None => "host",
            Some((namespace, package)) => {
                let link = self.link_name(namespace, package);
                self.grants
                    .backend_names
                    .get(metered.capability)
                    .and_then(|links| links.get(link))
                    .map_or("ungranted", String::as_str)
            }
        };
        weft_metrics::capability_call(metered.capability, backend);
    }
}

/// Why a component has no link named `name` to `package`, naming the links it has.
fn no_link(package: &str, name: &str, links: Option<&BTreeMap<String, Erased>>) -> String {
    match links.filter(|links| !links.is_empty()) {
        Some(links) => format!(
            "no {package} link named `{name}`; this component's links: {}",
            links
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("{package} is not granted to this component: it has no link to it"),
    }
}

/// A store's access to its capability state and resource table.
pub struct CapabilityCtxView<'a> {
    pub ctx: &'a mut CapabilityCtx,
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data of any instance that may use capabilities.
pub trait CapabilityView: Send {
    fn capabilities(&mut self) -> CapabilityCtxView<'_>;
}

struct HasCapabilities;

impl HasData for HasCapabilities {
    type Data<'a> = CapabilityCtxView<'a>;
}

/// How the calls of one capability's interfaces are counted: under its name, and by the backend
/// of the link that `namespace:package`'s link name selects (none: the host serves it).
struct Metered {
    capability: &'static str,
    linked_by: Option<(&'static str, &'static str)>,
}

/// The counted capabilities, indexed by the const parameter of [`counted_view`].
const METERED: [Metered; 8] = [
    Metered {
        capability: "keyvalue",
        linked_by: Some(("wasi", "keyvalue")),
    },
    Metered {
        capability: "config",
        linked_by: None,
    },
    Metered {
        capability: "logging",
        linked_by: None,
    },
    Metered {
        capability: "secrets",
        linked_by: None,
    },
    Metered {
        capability: "blobstore",
        linked_by: Some(("wasi", "blobstore")),
    },
    Metered {
        capability: "messaging",
        linked_by: Some(("wasmcloud", "messaging")),
    },
    Metered {
        capability: "sql",
        linked_by: Some(("fermyon", "spin")),
    },
    Metered {
        capability: "postgres",
        linked_by: Some(("wasmcloud", "postgres")),
    },
];

/// The view of one host-function call (resource drops included) of capability `C`, counted.
/// wasmtime calls the getter once per call, so this is where every call passes.
fn counted_view<T: CapabilityView, const C: usize>(t: &mut T) -> CapabilityCtxView<'_> {
    let view = t.capabilities();
    view.ctx.count_call(&METERED[C]);
    view
}

/// Adds every capability interface to `linker`. What an instance may actually reach is decided
/// by its [`Grants`].
pub fn add_to_linker<T: CapabilityView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn view<T: CapabilityView>(t: &mut T) -> CapabilityCtxView<'_> {
        t.capabilities()
    }
    type Getter<T> = fn(&mut T) -> CapabilityCtxView<'_>;
    let keyvalue = counted_view::<T, 0> as Getter<T>;
    let config = counted_view::<T, 1> as Getter<T>;
    let logging = counted_view::<T, 2> as Getter<T>;
    let secrets = counted_view::<T, 3> as Getter<T>;
    let blobstore = counted_view::<T, 4> as Getter<T>;
    let messaging = counted_view::<T, 5> as Getter<T>;
    let sql = counted_view::<T, 6> as Getter<T>;
    let postgres = counted_view::<T, 7> as Getter<T>;
    // Choosing a link name is no capability call.
    let bus = view::<T> as Getter<T>;
    use bindings as b;
    b::keyvalue::store::add_to_linker::<T, HasCapabilities>(linker, keyvalue)?;
    b::keyvalue::atomics::add_to_linker::<T, HasCapabilities>(linker, keyvalue)?;
    b::keyvalue::batch::add_to_linker::<T, HasCapabilities>(linker, keyvalue)?;
    b::config::store::add_to_linker::<T, HasCapabilities>(linker, config)?;
    b::config::runtime::add_to_linker::<T, HasCapabilities>(linker, config)?;
    b::logging::logging::add_to_linker::<T, HasCapabilities>(linker, logging)?;
    b::secrets::store::add_to_linker::<T, HasCapabilities>(linker, secrets)?;
    b::secrets::reveal::add_to_linker::<T, HasCapabilities>(linker, secrets)?;
    b::bus1_0_0::lattice::add_to_linker::<T, HasCapabilities>(linker, bus)?;
    b::bus2_0_0::lattice::add_to_linker::<T, HasCapabilities>(linker, bus)?;
    b::blobstore::types::add_to_linker::<T, HasCapabilities>(linker, blobstore)?;
    b::blobstore::container::add_to_linker::<T, HasCapabilities>(linker, blobstore)?;
    b::blobstore::blobstore::add_to_linker::<T, HasCapabilities>(linker, blobstore)?;
    b::messaging0_2_0::types::add_to_linker::<T, HasCapabilities>(linker, messaging)?;
    b::messaging0_2_0::consumer::add_to_linker::<T, HasCapabilities>(linker, messaging)?;
    b::messaging0_3_0::types::add_to_linker::<T, HasCapabilities>(linker, messaging)?;
    b::messaging0_3_0::producer::add_to_linker::<T, HasCapabilities>(linker, messaging)?;
    b::messaging0_3_0::request_reply::add_to_linker::<T, HasCapabilities>(linker, messaging)?;
    b::fermyon::spin::sqlite::add_to_linker::<T, HasCapabilities>(linker, sql)?;
    b::postgres::types::add_to_linker::<T, HasCapabilities>(linker, postgres)?;
    b::postgres::query::add_to_linker::<T, HasCapabilities>(linker, postgres)?;
    b::postgres::prepared::add_to_linker::<T, HasCapabilities>(linker, postgres)?;
    Ok(())
}
