//! The capabilities weft's host implements for guests: key-value, blobstore, messaging, config,
//! logging, secrets and link-name selection. One module per WIT package; inside a package, one
//! file per backend behind one trait, so a new backend is a new file.
//!
//! A component reaches a capability only through a link in its manifest: [`Grants`] holds what
//! one component was granted, and [`Grants::check_imports`] refuses, at deploy, a component that
//! imports a capability it has no link for.

pub mod blobstore;
mod bus;
mod config;
pub mod keyvalue;
mod logging;
pub mod messaging;
pub mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};
use weft_manifest::{CapabilityKind, Component, Grant, DEFAULT_LINK_NAME};

pub use secrets::SecretStore;

/// Host bindings generated from `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "weft:capabilities/host",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
            "wasmcloud:secrets/store.secret": crate::secrets::Secret,
            "wasmcloud:bus/lattice.call-target-interface": crate::bus::CallTargetInterface,
            "wasi:blobstore/container.container": crate::blobstore::Container,
            "wasi:blobstore/container.stream-object-names": crate::blobstore::ObjectNames,
            "wasi:blobstore/types.outgoing-value": crate::blobstore::OutgoingValue,
            "wasi:blobstore/types.incoming-value": crate::blobstore::IncomingValue,
        },
    });

    pub use wasi::*;
    pub use wasmcloud::*;
}

/// Bindings for calling a component's `wasmcloud:messaging/handler` export.
pub mod handler_bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "weft:capabilities/message-handler",
        exports: { default: async },
    });
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
        kind: CapabilityKind,
        namespace: &'static str,
        package: &'static str,
    },
    #[error(
        "{what} imports `{import}` but is granted no secrets; list them under properties.secrets"
    )]
    NoSecrets { what: String, import: String },
    #[error("{what}: {capability} ({backend}): {reason}")]
    Backend {
        what: String,
        capability: String,
        backend: String,
        reason: String,
    },
}

/// What one component was granted, shared by all its instances.
pub struct Grants {
    /// `app/component`, for log lines.
    pub workload: Arc<str>,
    /// The component's config: its named configs merged in order.
    pub config: BTreeMap<String, String>,
    pub keyvalue: BTreeMap<String, Arc<dyn keyvalue::KeyValueStore>>,
    pub blobstore: BTreeMap<String, Arc<dyn blobstore::BlobStore>>,
    pub messaging: BTreeMap<String, Arc<dyn messaging::Broker>>,
    pub secrets: BTreeMap<String, secrets::SecretSource>,
}

impl Grants {
    /// A component that was granted nothing (config and logging only).
    pub fn none(workload: &str) -> Self {
        Grants {
            workload: workload.into(),
            config: BTreeMap::new(),
            keyvalue: BTreeMap::new(),
            blobstore: BTreeMap::new(),
            messaging: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// Refuses a component that imports a capability it holds no link for, naming the import.
    /// Config, logging and `wasmcloud:bus` need no link: they reach nothing outside the component.
    pub fn check_imports<'a>(
        &self,
        what: &str,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), CapabilityError> {
        for import in imports {
            let needs = [
                (
                    "wasi:keyvalue/",
                    CapabilityKind::KeyValue,
                    self.keyvalue.is_empty(),
                ),
                (
                    "wasi:blobstore/",
                    CapabilityKind::Blobstore,
                    self.blobstore.is_empty(),
                ),
                (
                    "wasmcloud:messaging/",
                    CapabilityKind::Messaging,
                    self.messaging.is_empty(),
                ),
            ];
            if let Some((_, kind, _)) = needs
                .iter()
                .find(|(prefix, _, missing)| *missing && import.starts_with(prefix))
            {
                let (namespace, package, _) = kind.package();
                return Err(CapabilityError::NotGranted {
                    what: what.into(),
                    import: import.into(),
                    kind: *kind,
                    namespace,
                    package,
                });
            }
            if import.starts_with("wasmcloud:secrets/") && self.secrets.is_empty() {
                return Err(CapabilityError::NoSecrets {
                    what: what.into(),
                    import: import.into(),
                });
            }
        }
        Ok(())
    }
}

/// The backends of this host, shared by every app that names the same one: one redb file, one
/// Redis connection, one NATS connection each, however many components link to them.
pub struct Backends {
    state_dir: PathBuf,
    secrets: Arc<SecretStore>,
    keyvalue: std::sync::Mutex<HashMap<String, Arc<dyn keyvalue::KeyValueStore>>>,
    blobstore: std::sync::Mutex<HashMap<String, Arc<dyn blobstore::BlobStore>>>,
    messaging: std::sync::Mutex<HashMap<String, Arc<dyn messaging::Broker>>>,
}

impl Backends {
    /// Backends keeping their files under `state_dir`.
    pub fn new(state_dir: PathBuf, secrets: Arc<SecretStore>) -> Self {
        Backends {
            state_dir,
            secrets,
            keyvalue: Default::default(),
            blobstore: Default::default(),
            messaging: Default::default(),
        }
    }

    /// The secret store.
    pub fn secrets(&self) -> &Arc<SecretStore> {
        &self.secrets
    }

    /// Resolves what `component` of `app` was granted into live backends. Connections to servers
    /// are made on first use, so a deploy does not wait on (or fail for) a server that is down.
    pub fn grants_for(&self, app: &str, component: &Component) -> Result<Grants, CapabilityError> {
        let workload = format!("{app}/{}", component.name);
        let mut grants = Grants::none(&workload);
        for config in &component.config {
            grants.config.extend(
                config
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        for grant in &component.grants {
            let err = |reason: String| CapabilityError::Backend {
                what: workload.clone(),
                capability: grant.capability.clone(),
                backend: grant.backend.clone(),
                reason,
            };
            let at = Placement {
                app,
                state_dir: &self.state_dir,
            };
            match grant.kind {
                CapabilityKind::KeyValue => {
                    let store = shared(&self.keyvalue, &at, grant, keyvalue::open).map_err(err)?;
                    grants.keyvalue.insert(grant.link_name.clone(), store);
                }
                CapabilityKind::Blobstore => {
                    let store =
                        shared(&self.blobstore, &at, grant, blobstore::open).map_err(err)?;
                    grants.blobstore.insert(grant.link_name.clone(), store);
                }
                CapabilityKind::Messaging => {
                    let broker =
                        shared(&self.messaging, &at, grant, messaging::open).map_err(err)?;
                    grants.messaging.insert(grant.link_name.clone(), broker);
                }
                CapabilityKind::HttpServer | CapabilityKind::HttpClient => {}
            }
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
    ) -> Result<Arc<dyn messaging::Broker>, String> {
        let grant = Grant {
            kind: CapabilityKind::Messaging,
            capability: subscription.capability.clone(),
            link_name: DEFAULT_LINK_NAME.into(),
            backend: subscription.backend.clone(),
            settings: subscription.settings.clone(),
        };
        let at = Placement {
            app,
            state_dir: &self.state_dir,
        };
        shared(&self.messaging, &at, &grant, messaging::open)
    }
}

/// A grant resolved to the identity of its backend and how to create it when it is new.
pub(crate) type Opener<B> = (String, Box<dyn FnOnce() -> Result<Arc<B>, String>>);

/// A grant's config value for `key`, or `default`.
pub(crate) fn setting(grant: &Grant, key: &str, default: &str) -> String {
    grant
        .settings
        .get(key)
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// Where a backend lives: the app that declared it and the host's state directory.
pub struct Placement<'a> {
    pub app: &'a str,
    pub state_dir: &'a std::path::Path,
}

/// One backend per identity: `open` says what identifies the backend a grant names (a file path,
/// a server URL, an app's in-memory store), and the first grant to name it creates it.
fn shared<B: ?Sized>(
    map: &std::sync::Mutex<HashMap<String, Arc<B>>>,
    at: &Placement<'_>,
    grant: &Grant,
    open: impl Fn(&Placement<'_>, &Grant) -> Result<Opener<B>, String>,
) -> Result<Arc<B>, String> {
    let (identity, create) = open(at, grant)?;
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = map.get(&identity) {
        return Ok(existing.clone());
    }
    let backend = create()?;
    map.insert(identity, backend.clone());
    Ok(backend)
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

    /// The link name in force for `namespace:package`.
    fn link_name(&self, package: &str) -> &str {
        self.link_names
            .get(package)
            .map_or(DEFAULT_LINK_NAME, String::as_str)
    }

    /// The grant for `namespace:package` under the link name in force, or an error naming the
    /// links there are.
    fn linked<'a, B: ?Sized>(
        &self,
        package: &str,
        links: &'a BTreeMap<String, Arc<B>>,
    ) -> Result<&'a Arc<B>, String> {
        let name = self.link_name(package);
        links.get(name).ok_or_else(|| {
            let names: Vec<&str> = links.keys().map(String::as_str).collect();
            if names.is_empty() {
                format!("{package} is not granted to this component: it has no link to it")
            } else {
                format!(
                    "no {package} link named `{name}`; this component's links: {}",
                    names.join(", ")
                )
            }
        })
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

/// Adds every capability interface to `linker`. What an instance may actually reach is decided
/// by its [`Grants`].
pub fn add_to_linker<T: CapabilityView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn view<T: CapabilityView>(t: &mut T) -> CapabilityCtxView<'_> {
        t.capabilities()
    }
    let view = view::<T> as fn(&mut T) -> CapabilityCtxView<'_>;
    use bindings as b;
    b::keyvalue::store::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::keyvalue::atomics::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::keyvalue::batch::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::config::store::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::config::runtime::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::logging::logging::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::secrets::store::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::secrets::reveal::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::bus::lattice::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::blobstore::types::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::blobstore::container::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::blobstore::blobstore::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::messaging::types::add_to_linker::<T, HasCapabilities>(linker, view)?;
    b::messaging::consumer::add_to_linker::<T, HasCapabilities>(linker, view)?;
    Ok(())
}
