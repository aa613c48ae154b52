//! How capabilities declare themselves to the manifest, and the lock step that resolves an app's
//! capability nodes and links against them.
//!
//! The manifest crate knows no capability by name: each capability (a module of
//! `weft-capabilities`) implements [`CapabilitySpec`], saying which images name it, what a link
//! from a component to it grants, and what a link from it to a component delivers. [`lock`]
//! asks each one in turn, once per deploy; the [`App`] it returns is what travels.

use std::collections::BTreeSet;

use crate::model::{
    App, Capability, Component, Grant, HttpRoute, KeyWatch, Link, Manifest, NamedConfig, Schedule,
    Settings, Subscription,
};
use crate::ManifestError;

/// Why a capability refused a link or its config. `at` narrows the location (a config key, a
/// config block) below the link the error is reported on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    pub at: Option<String>,
    pub message: String,
}

impl SpecError {
    /// An error about the link as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        SpecError {
            at: None,
            message: message.into(),
        }
    }

    /// An error about one part of the link, e.g. `config route`.
    pub fn at(at: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            at: Some(at.into()),
            message: message.into(),
        }
    }
}

/// A link between a component and a capability node, as a capability sees it.
pub struct CapabilityLink<'a> {
    /// The component at the other end.
    pub component: &'a str,
    pub link: &'a Link,
    pub node: &'a Capability,
    /// Whether the other end is a component (links from a node may name any node).
    pub to_component: bool,
}

impl CapabilityLink<'_> {
    /// The node's config, then the link's: the capability's end, then the component's (later
    /// wins, so a component's link config overrides what the node sets).
    pub fn merged_config(&self) -> Settings {
        let (capability_end, component_end) = if self.link.target == self.component {
            (&self.link.source_config, &self.link.target_config)
        } else {
            (&self.link.target_config, &self.link.source_config)
        };
        merge(
            self.node
                .config
                .iter()
                .chain(capability_end)
                .chain(component_end),
        )
    }

    /// The link's name, or `default`.
    pub fn link_name(&self) -> String {
        self.link
            .name
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_LINK_NAME.to_string())
    }
}

/// What a link from a component to a capability grants.
pub enum Granted {
    /// Imports of a WIT package, served by a backend under the link's name.
    Interfaces(Grant),
    /// `wasi:http/outgoing-handler`, limited to `hosts`; `lenient` says why a wasmCloud
    /// provider's looser default was applied, for the deploy's warnings.
    OutgoingHttp {
        hosts: Vec<String>,
        lenient: Option<String>,
    },
}

/// What a link from a capability to a component makes the host do.
pub enum Delivered {
    /// Route HTTP requests to the component.
    Route(HttpRoute),
    /// Deliver messages to the component's handler.
    Subscription(Subscription),
    /// Deliver key changes to the component's watcher.
    Watch(KeyWatch),
    /// Call the component's schedule handler at each tick.
    Schedule(Schedule),
}

/// One capability as the manifest sees it. Implemented once per capability, in its own module.
pub trait CapabilitySpec: Send + Sync {
    /// The name in `weft:<name>` and in messages, e.g. `keyvalue`.
    fn name(&self) -> &'static str;

    /// Image names it answers to (without registry or tag: `keyvalue-redis`), each with the
    /// backend it picks. The first is the capability's own name.
    fn images(&self) -> Vec<(&'static str, &'static str)>;

    /// Checks the node's own config; returns the backend it picks.
    fn check_node(&self, node: &Capability) -> Result<String, SpecError> {
        Ok(node.backend.clone())
    }

    /// What a link from a component to this capability grants.
    fn grant(&self, link: &CapabilityLink<'_>) -> Result<Granted, SpecError> {
        let _ = link;
        Err(SpecError::new(format!(
            "a {} is not granted by a link from a component",
            self.name()
        )))
    }

    /// What a link from this capability to a component delivers.
    fn deliver(&self, link: &CapabilityLink<'_>) -> Result<Delivered, SpecError> {
        let _ = link;
        Err(SpecError::new(format!(
            "a {} is granted by a link from a component to it, not from it",
            self.name()
        )))
    }
}

/// Every capability a host provides.
pub type Catalog = [&'static dyn CapabilitySpec];

/// Merges named configs in order; a later block's key wins.
pub fn merge<'a>(configs: impl Iterator<Item = &'a NamedConfig>) -> Settings {
    let mut merged = Settings::new();
    for config in configs {
        merged.extend(
            config
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    merged
}

/// The capability an image names, and the backend it picks: `weft:<name>`, or a wasmCloud
/// provider image (`ghcr.io/wasmcloud/keyvalue-redis:0.28`) by its last path segment.
pub fn resolve_image<'c>(
    catalog: &'c Catalog,
    image: &str,
) -> Option<(&'c dyn CapabilitySpec, &'static str)> {
    let name = image_name(image);
    catalog.iter().find_map(|spec| {
        spec.images()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, backend)| (*spec, backend))
    })
}

/// An image's name without registry, path or tag (`keyvalue-redis`), or `weft:`'s own name.
fn image_name(image: &str) -> &str {
    image.strip_prefix("weft:").unwrap_or_else(|| {
        let without_tag =
            image.rsplit_once(':').map_or(
                image,
                |(repo, tag)| {
                    if tag.contains('/') {
                        image
                    } else {
                        repo
                    }
                },
            );
        without_tag.rsplit('/').next().unwrap_or(without_tag)
    })
}

/// wasmCloud's first-party providers (1.x) that weft has no counterpart for: what each is, and
/// what weft offers instead. The others (http-server, http-client, keyvalue-redis, keyvalue-nats,
/// messaging-nats, blobstore-fs, blobstore-nats) map to weft capabilities.
const WITHOUT_COUNTERPART: &[(&str, &str, &str)] = &[
    (
        "blobstore-s3",
        "S3 blobstore provider",
        "weft:blobstore keeps objects in memory, a directory (backend: filesystem) or NATS object stores (backend: nats)",
    ),
    (
        "blobstore-azure",
        "Azure blobstore provider",
        "weft:blobstore keeps objects in memory, a directory (backend: filesystem) or NATS object stores (backend: nats)",
    ),
    (
        "keyvalue-vault",
        "Vault key-value provider",
        "keep secrets in weft's encrypted store (properties.secrets, `weft secret put`) and \
         key-value on weft:keyvalue (memory, file, sqlite, redis, nats)",
    ),
    (
        "messaging-kafka",
        "Kafka messaging provider",
        "weft:messaging runs in-process, on NATS or on Redis pub/sub",
    ),
    (
        "wadm",
        "wadm status provider",
        "app status is in `weft app status` and the control API",
    ),
    (
        "lattice-controller",
        "lattice controller provider",
        "the control API and `weft` CLI manage hosts and apps",
    ),
];

/// Why `image` is refused: a wasmCloud provider weft has no counterpart for, named with what
/// weft offers instead, or an image weft does not know, with the ones it does.
fn unknown_image(catalog: &Catalog, image: &str) -> String {
    let name = image_name(image);
    match WITHOUT_COUNTERPART.iter().find(|(n, _, _)| *n == name) {
        Some((_, what, instead)) => {
            format!("`{image}` is wasmCloud's {what}, which weft has no counterpart for: {instead}")
        }
        None => format!(
            "`{image}` is not a capability this weft provides; available: {}",
            known_images(catalog)
        ),
    }
}

/// The names a manifest may use, for error messages.
pub fn known_images(catalog: &Catalog) -> String {
    let own: Vec<String> = catalog
        .iter()
        .map(|s| format!("weft:{}", s.name()))
        .collect();
    let providers: Vec<&str> = catalog
        .iter()
        .flat_map(|s| s.images().into_iter().skip(1).map(|(n, _)| n))
        .collect();
    format!(
        "{} (or the wasmCloud providers ghcr.io/wasmcloud/{})",
        own.join(", "),
        providers.join(", ")
    )
}

/// Resolves a manifest's capability nodes and the links touching them against `catalog`: what
/// each component is granted, the routes and subscriptions. Done once per deploy.
pub fn lock(manifest: Manifest, catalog: &Catalog) -> Result<App, ManifestError> {
    let origin = manifest.origin.clone();
    let err = |location: String, e: SpecError| ManifestError::Invalid {
        origin: origin.clone(),
        location: match e.at {
            Some(at) if at.starts_with("properties") => format!("{location}.{at}"),
            Some(at) => format!("{location}: {at}"),
            None => location,
        },
        message: e.message,
    };
    let component_names: BTreeSet<&str> = manifest
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();

    let mut capabilities = Vec::new();
    let mut routes = Vec::new();
    let mut subscriptions = Vec::new();
    let mut watches = Vec::new();
    let mut schedules = Vec::new();
    let mut unheeded = Vec::new();
    for node in &manifest.capabilities {
        let at = format!("component `{}`", node.name);
        let (spec, backend) = resolve_image(catalog, &node.image).ok_or_else(|| {
            err(
                format!("{at}: properties.image"),
                SpecError::new(unknown_image(catalog, &node.image)),
            )
        })?;
        let mut capability = Capability {
            name: node.name.clone(),
            kind: spec.name().to_string(),
            backend: backend.to_string(),
            config: node.config.clone(),
            provider: (!node.image.starts_with("weft:")).then(|| node.image.clone()),
        };
        capability.backend = spec
            .check_node(&capability)
            .map_err(|e| err(format!("{at}: properties"), e))?;
        for (i, link) in &node.links {
            let delivered = spec
                .deliver(&CapabilityLink {
                    component: &link.target,
                    link,
                    node: &capability,
                    to_component: component_names.contains(link.target.as_str()),
                })
                .map_err(|e| err(format!("{at}: traits[{i}]"), e))?;
            match delivered {
                Delivered::Route(route) => routes.push(route),
                Delivered::Subscription(subscription) => subscriptions.push(subscription),
                Delivered::Watch(watch) => {
                    if watch.on_set.is_empty() && watch.on_delete.is_empty() {
                        unheeded.push(format!(
                            "{at}: traits[{i}]: the watcher link names no keys, so no change is \
                             delivered; name them in its config: watch: \"SET@key,DEL@key\""
                        ));
                    }
                    watches.push(watch)
                }
                Delivered::Schedule(schedule) => schedules.push(schedule),
            }
        }
        capabilities.push((spec, capability));
    }

    let mut warnings = manifest.warnings;
    warnings.extend(unheeded);
    let mut components = manifest.components;
    for component in &mut components {
        warnings.extend(grant(component, &capabilities, &err)?);
    }
    let strict = strict(&manifest.annotations);
    if strict && !warnings.is_empty() {
        return Err(ManifestError::Invalid {
            origin: origin.clone(),
            location: format!("metadata.annotations.{STRICT_ANNOTATION}"),
            message: format!(
                "the app asks for a strict deploy, and weft would not act on all it says:\n  {}",
                warnings.join("\n  ")
            ),
        });
    }

    let mut seen = BTreeSet::new();
    for route in &routes {
        if !seen.insert((route.address, route.host.clone(), route.path.clone())) {
            return Err(ManifestError::Invalid {
                origin: origin.clone(),
                location: format!("component `{}`", route.component),
                message: format!(
                    "route {}{} on {} is declared twice",
                    route.host.as_deref().unwrap_or(""),
                    route.path,
                    route.address
                ),
            });
        }
    }
    routes.sort();

    Ok(App {
        name: manifest.name,
        version: manifest.version,
        components,
        capabilities: capabilities.into_iter().map(|(_, c)| c).collect(),
        routes,
        subscriptions,
        watches,
        schedules,
        strict,
        warnings,
    })
}

/// The annotation with which an app refuses to deploy with warnings: `"true"`.
pub const STRICT_ANNOTATION: &str = "weft.dev/strict";

fn strict(annotations: &std::collections::BTreeMap<String, String>) -> bool {
    annotations
        .get(STRICT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Asks the capability behind each of `component`'s links to capability nodes what it grants.
fn grant(
    component: &mut Component,
    capabilities: &[(&dyn CapabilitySpec, Capability)],
    err: &impl Fn(String, SpecError) -> ManifestError,
) -> Result<Vec<String>, ManifestError> {
    let at = format!("component `{}`", component.name);
    let mut warnings = Vec::new();
    for link in &component.links {
        let Some((spec, node)) = capabilities.iter().find(|(_, c)| c.name == link.target) else {
            continue;
        };
        let field = format!("{at}: link to `{}`", link.target);
        let granted = spec
            .grant(&CapabilityLink {
                component: &component.name,
                link,
                node,
                to_component: true,
            })
            .map_err(|e| err(field.clone(), e))?;
        match granted {
            Granted::Interfaces(grant) => {
                let clash = component
                    .grants
                    .iter()
                    .any(|g| g.kind == grant.kind && g.link_name == grant.link_name);
                if clash {
                    return Err(err(
                        field,
                        SpecError::new(format!(
                            "a second {} link named `{}`; give each link to the same \
                             interface its own `name:` and pick one at runtime with \
                             wasmcloud:bus/lattice set-link-name",
                            grant.kind, grant.link_name
                        )),
                    ));
                }
                component.grants.push(grant);
            }
            Granted::OutgoingHttp { hosts, lenient } => {
                warnings.extend(lenient.map(|why| format!("{field}: {why}")));
                component.outgoing_http = Some(hosts);
            }
        }
    }
    if let Some(shared) = &component.shared {
        if !component.grants.is_empty() || component.outgoing_http.is_some() {
            return Err(err(
                at,
                SpecError::new(format!(
                    "a shared component's capabilities are granted by its own app `{}`; \
                     link it here only to components",
                    shared.app
                )),
            ));
        }
    }
    Ok(warnings)
}
