//! The manifest as written: wadm's OAM `Application`, field for field, before validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole manifest file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// `metadata`: the app's name and annotations (`version`, `description`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `spec`: the nodes of the app graph.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub components: Vec<RawComponent>,
    /// wadm's policies (secret backends and the like); carried, not interpreted yet.
    #[serde(default)]
    pub policies: Vec<BTreeMap<String, String>>,
}

/// One node: a component or a capability.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub traits: Vec<RawTrait>,
}

/// A node's `properties`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    pub image: Option<String>,
    /// wadm's optional stable identifier; accepted for compatibility.
    pub id: Option<String>,
    #[serde(default)]
    pub config: Vec<NamedConfig>,
    /// weft's per-workload limits (an extension to wadm's format).
    pub limits: Option<RawLimits>,
    /// Opt-in warm instance reuse (an extension to wadm's format).
    pub reuse: Option<RawReuse>,
    /// Secrets granted to this component, by the name it asks for them under.
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    /// A component shared from another app (wadm's shared components), instead of an image.
    pub application: Option<RawSharedRef>,
}

/// `properties.application`: the app and component a shared component comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSharedRef {
    pub name: String,
    pub component: String,
}

/// One entry of `properties.secrets`, as wadm writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    /// The name the component passes to `wasmcloud:secrets/store.get`.
    pub name: String,
    pub properties: RawSecretProperties,
}

/// Where a secret comes from: `key` in weft's secret store (set with `weft secret put`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretProperties {
    pub key: String,
    /// wadm's secret policy name; weft has one secret store, so only its name is accepted.
    pub policy: Option<String>,
    pub field: Option<String>,
    pub version: Option<String>,
}

/// `properties.reuse`: serve many requests from one instance, for components whose author
/// declares that safe (no state leaks between requests that matters).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReuse {
    /// Requests one instance serves before it is replaced.
    pub requests: Option<u32>,
    /// How long an unused instance is kept, e.g. `30s`.
    pub idle: Option<String>,
}

/// A named block of string properties, as wadm's `config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedConfig {
    pub name: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `properties.limits`: human-readable sizes and durations.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Maximum linear memory of one instance, e.g. `64MiB`.
    pub memory: Option<String>,
    /// Maximum wall time of one request, e.g. `5s` or `250ms`.
    pub timeout: Option<String>,
}

/// A trait attached to a node: scaling or a link.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", content = "properties", rename_all = "lowercase")]
pub enum RawTrait {
    Spreadscaler(Scaler),
    Daemonscaler(Scaler),
    Link(RawLink),
}

/// Properties of `spreadscaler` and `daemonscaler`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    pub instances: u32,
    #[serde(default)]
    pub spread: Vec<Spread>,
}

/// One weighted placement rule of a scaler.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    pub name: String,
    #[serde(default)]
    pub requirements: BTreeMap<String, String>,
    pub weight: Option<u32>,
}

/// Properties of a `link` trait.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub target: LinkTarget,
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    /// The link name (wasmCloud's `name`), for components that link one interface twice.
    pub name: Option<String>,
    pub source: Option<LinkEnd>,
}

/// A link's target: wadm accepts either a bare component name or an object.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum LinkTarget {
    Name(String),
    Full(LinkTargetSpec),
}

/// The object form of a link target.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTargetSpec {
    pub name: String,
    #[serde(default)]
    pub config: Vec<NamedConfig>,
}

/// Link config carried on the source end.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEnd {
    #[serde(default)]
    pub config: Vec<NamedConfig>,
}

impl LinkTarget {
    /// The name of the node the link points at.
    pub fn name(&self) -> &str {
        match self {
            LinkTarget::Name(name) => name,
            LinkTarget::Full(spec) => &spec.name,
        }
    }
}
