//! The one list of capabilities this host provides, and the generic shape of a capability kind
//! served by pluggable backends (key-value, blobstore, messaging).
//!
//! A kind is a [`Kind`] value in its own module: its WIT package, its backends and, when links
//! from it deliver to components, a [`Delivery`]. A backend is a [`Backend`] value in its own
//! file, listed on one line of its kind's `BACKENDS`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use weft_manifest::{
    CapabilityLink, CapabilitySpec, Catalog, Delivered, Grant, Granted, Settings, SpecError,
};

use crate::{http_client, http_server, settings};

/// A live backend with its type erased, as [`crate::Grants`] and [`Backends`] hold it.
pub type Erased = Arc<dyn Any + Send + Sync>;

/// Why a backend could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<settings::ConfigError> for BackendError {
    fn from(e: settings::ConfigError) -> Self {
        BackendError(e.0)
    }
}

/// A grant resolved to the identity of its backend and how to create it when it is new.
pub type Opener<S> = (
    String,
    Box<dyn FnOnce() -> Result<Arc<S>, BackendError> + Send>,
);

/// Where a backend lives: the app that declared it and the host's state directory.
pub struct Placement<'a> {
    pub app: &'a str,
    pub state_dir: &'a std::path::Path,
}

/// A capability as the host runs it: what the manifest needs ([`CapabilitySpec`]) and, for a
/// capability whose imports a grant unlocks, how to open what a grant names.
pub trait Capability: CapabilitySpec {
    /// The WIT package (`namespace`, `package`) a component may import only with a link to this
    /// capability; None when the host serves the imports some other way (HTTP).
    fn gated_package(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Opens (or shares) the backend `grant` names.
    fn open(
        &self,
        backends: &Backends,
        at: &Placement<'_>,
        grant: &Grant,
    ) -> Result<Erased, BackendError> {
        let _ = (backends, at);
        Err(BackendError(format!(
            "{} grants nothing a backend serves (capability `{}`)",
            self.name(),
            grant.capability
        )))
    }
}

/// Every capability this host provides. Adding a kind is a module and one line here.
pub static CAPABILITIES: &[&dyn Capability] = &[
    &http_server::HTTP_SERVER,
    &http_client::HTTP_CLIENT,
    &crate::keyvalue::KEYVALUE,
    &crate::blobstore::BLOBSTORE,
    &crate::messaging::MESSAGING,
    &crate::schedule::SCHEDULE,
    &crate::sql::SQL,
    &crate::sql::POSTGRES,
];

/// [`CAPABILITIES`] as the manifest's lock step takes them.
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Vec<&'static dyn CapabilitySpec>> = LazyLock::new(|| {
        CAPABILITIES
            .iter()
            .map(|c| *c as &'static dyn CapabilitySpec)
            .collect()
    });
    &CATALOG
}

/// The capability named `kind`.
pub fn capability(kind: &str) -> Option<&'static dyn Capability> {
    CAPABILITIES.iter().copied().find(|c| c.name() == kind)
}

/// The backends of this host, shared by every app that names the same one: one redb file, one
/// Redis connection, one NATS connection each, however many components link to them.
pub struct Backends {
    pub(crate) state_dir: std::path::PathBuf,
    pub(crate) secrets: Arc<crate::SecretStore>,
    /// `kind:identity` → the backend, an `Arc<S>` of its kind's backend trait.
    open: Mutex<HashMap<String, Erased>>,
}

impl Backends {
    /// Backends keeping their files under `state_dir`.
    pub fn new(state_dir: std::path::PathBuf, secrets: Arc<crate::SecretStore>) -> Self {
        Backends {
            state_dir,
            secrets,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The secret store.
    pub fn secrets(&self) -> &Arc<crate::SecretStore> {
        &self.secrets
    }

    /// Where `app`'s backends live.
    pub(crate) fn placement<'a>(&'a self, app: &'a str) -> Placement<'a> {
        Placement {
            app,
            state_dir: &self.state_dir,
        }
    }
}

/// One implementation of a kind, e.g. Redis for key-value.
pub struct Backend<S: ?Sized + 'static> {
    /// The name the `backend` config key picks it by.
    pub name: &'static str,
    /// wasmCloud provider images (last path segment) that stand for it, e.g. `keyvalue-redis`.
    pub images: &'static [&'static str],
    /// Checks settings against the backend's typed config.
    pub check: fn(&Settings) -> Result<(), settings::ConfigError>,
    /// Says what identifies the backend a grant names, and how to create it.
    pub open: fn(&Placement<'_>, &Grant) -> Result<Opener<S>, BackendError>,
}

/// Declares a kind's backends, the default first: one module per backend (its file beside the
/// kind's `mod.rs`, exporting `BACKEND`) and the kind's `BACKENDS` list. Adding a backend is its
/// file and its name here.
macro_rules! backends {
    ($store:ty: $($backend:ident),+ $(,)?) => {
        $(mod $backend;)+

        /// This kind's backends, the default first.
        const BACKENDS: &[$crate::catalog::Backend<$store>] = &[$($backend::BACKEND),+];
    };
}
pub(crate) use backends;

/// Checks settings against config type `C`; a backend's `check`.
pub fn check_config<C: serde::de::DeserializeOwned>(
    settings: &Settings,
) -> Result<(), settings::ConfigError> {
    settings::typed::<C>(settings).map(|_| ())
}

/// What a link from a kind's node to a component delivers.
pub struct Delivery {
    /// The interfaces of the kind's package the component may export, one of which it must
    /// (e.g. `handler`, and 0.3's `incoming-handler`); the first is the one messages name.
    pub exports: &'static [&'static str],
    /// Interfaces of the package whose types the delivery hands the component (a bucket, a
    /// message): it may import them with no link to the capability.
    pub handed: &'static [&'static str],
    /// Said when the target is not a component.
    pub not_a_component: &'static str,
    /// Turns the link, its backend and its settings (kind keys included) into the delivery.
    pub make: fn(&CapabilityLink<'_>, &str, Settings) -> Result<Delivered, SpecError>,
}

/// A capability kind served by backends behind the trait `S`.
pub struct Kind<S: ?Sized + 'static> {
    /// The name in `weft:<name>` and in messages.
    pub name: &'static str,
    pub namespace: &'static str,
    pub package: &'static str,
    /// The interfaces of the package a link to it may name.
    pub interfaces: &'static [&'static str],
    /// Config keys of the kind itself, not of a backend (messaging's `subscriptions`).
    pub own_keys: &'static [&'static str],
    /// The first is the default.
    pub backends: &'static [Backend<S>],
    pub delivery: Option<Delivery>,
}

impl<S: ?Sized + Send + Sync + 'static> Kind<S> {
    /// Splits merged settings into the backend they pick (`default` unless a `backend` key
    /// says), the backend's settings and the kind's own, checking the backend's against its
    /// typed config.
    fn resolve(
        &self,
        default: &str,
        mut merged: Settings,
    ) -> Result<(&Backend<S>, Settings, Settings), SpecError> {
        let chosen = merged
            .remove("backend")
            .unwrap_or_else(|| default.to_string());
        let backend = self
            .backends
            .iter()
            .find(|b| b.name == chosen)
            .ok_or_else(|| {
                let names: Vec<&str> = self.backends.iter().map(|b| b.name).collect();
                SpecError::at(
                    "config backend",
                    format!(
                        "`{chosen}` is not a {} backend; available: {}",
                        self.name,
                        names.join(", ")
                    ),
                )
            })?;
        let own: Settings = merged
            .iter()
            .filter(|(k, _)| self.own_keys.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        merged.retain(|k, _| !self.own_keys.contains(&k.as_str()));
        settings::check_secret_references(&merged)
            .and_then(|()| (backend.check)(&merged))
            .map_err(|e| {
                SpecError::new(format!("a {} ({}) config: {e}", self.name, backend.name))
            })?;
        Ok((backend, merged, own))
    }

    /// Opens (or shares) the backend `grant` names, typed.
    pub fn open_typed(
        &self,
        backends: &Backends,
        at: &Placement<'_>,
        grant: &Grant,
    ) -> Result<Arc<S>, BackendError> {
        let backend = self
            .backends
            .iter()
            .find(|b| b.name == grant.backend)
            .ok_or_else(|| {
                BackendError(format!(
                    "`{}` is not a {} backend",
                    grant.backend, self.name
                ))
            })?;
        let revealed = settings::reveal_secret_references(&grant.settings, &backends.secrets)?;
        let grant = &Grant {
            settings: revealed,
            ..grant.clone()
        };
        let (identity, create) = (backend.open)(at, grant)?;
        let key = format!("{}:{identity}", self.name);
        let mut open = backends.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = open.get(&key).and_then(|e| e.downcast_ref::<Arc<S>>()) {
            return Ok(existing.clone());
        }
        let created = create()?;
        open.insert(key, Arc::new(created.clone()));
        Ok(created)
    }

    /// The `namespace:package/{a,b}` a link to this kind may name, for messages.
    fn describe(&self) -> String {
        format!(
            "{}:{}/{{{}}}",
            self.namespace,
            self.package,
            self.interfaces.join(",")
        )
    }
}

impl<S: ?Sized + Send + Sync + 'static> CapabilitySpec for Kind<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn images(&self) -> Vec<(&'static str, &'static str)> {
        let mut images = vec![(self.name, self.backends[0].name)];
        for backend in self.backends {
            images.extend(backend.images.iter().map(|image| (*image, backend.name)));
        }
        images
    }

    fn check_node(&self, node: &weft_manifest::Capability) -> Result<String, SpecError> {
        let merged = weft_manifest::merge(node.config.iter());
        let (backend, _, _) = self.resolve(&node.backend, merged)?;
        Ok(backend.name.to_string())
    }

    fn grant(&self, link: &CapabilityLink<'_>) -> Result<Granted, SpecError> {
        if !link
            .link
            .is_within(self.namespace, self.package, self.interfaces)
        {
            return Err(SpecError::new(format!(
                "a {} link grants `{}`, not `{}`",
                self.name,
                self.describe(),
                link.link.describe()
            )));
        }
        let (backend, settings, _) = self.resolve(&link.node.backend, link.merged_config())?;
        Ok(Granted::Interfaces(Grant {
            kind: self.name.to_string(),
            capability: link.node.name.clone(),
            link_name: link.link_name(),
            backend: backend.name.to_string(),
            settings,
        }))
    }

    fn deliver(&self, link: &CapabilityLink<'_>) -> Result<Delivered, SpecError> {
        let Some(delivery) = &self.delivery else {
            return Err(SpecError::new(format!(
                "a {} is granted by a link from a component to it, not from it",
                self.name
            )));
        };
        check_delivery(
            link,
            (self.namespace, self.package, delivery.exports),
            delivery.not_a_component,
            &format!("a {} link to a component delivers to", self.name),
        )?;
        let (backend, mut settings, own) =
            self.resolve(&link.node.backend, link.merged_config())?;
        settings.extend(own);
        (delivery.make)(link, backend.name, settings)
    }
}

impl<S: ?Sized + Send + Sync + 'static> Capability for Kind<S> {
    fn gated_package(&self) -> Option<(&'static str, &'static str)> {
        Some((self.namespace, self.package))
    }

    fn open(
        &self,
        backends: &Backends,
        at: &Placement<'_>,
        grant: &Grant,
    ) -> Result<Erased, BackendError> {
        Ok(Arc::new(self.open_typed(backends, at, grant)?))
    }
}

/// Checks a link from a capability leads to a component exporting `ns:pkg/export`.
pub(crate) fn check_delivery(
    link: &CapabilityLink<'_>,
    (namespace, package, exports): (&str, &str, &[&str]),
    not_a_component: &str,
    link_kind: &str,
) -> Result<(), SpecError> {
    if !link.to_component {
        return Err(SpecError::at(
            "properties.target",
            format!("`{}` is not a component; {not_a_component}", link.component),
        ));
    }
    if !link.link.is_within(namespace, package, exports) {
        return Err(SpecError::new(format!(
            "{link_kind} `{namespace}:{package}/{}`, not `{}`",
            exports.join("` or `"),
            link.link.describe()
        )));
    }
    Ok(())
}

/// The config of a backend that takes no keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}
