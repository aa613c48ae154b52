//! The manifest as written: wadm's OAM `Application`, field for field, before validation.
//!
//! Every struct reads what wadm's schema allows. A field weft does not know is kept in the
//! struct's `unknown` map rather than refused, so validation can name it in a warning: a wadm
//! manifest deploys as it is, and its author learns what weft did not act on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Fields of one mapping that weft does not read, by name.
pub type Unknown = BTreeMap<String, serde_json::Value>;

/// A whole manifest file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// `metadata`: the app's name and annotations (`version`, `description`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Metadata {
    pub name: String,
    /// An annotation written with no value (`homepage:`) reads as empty, as wasmCloud's own
    /// example manifests have them.
    #[serde(default, deserialize_with = "blank_as_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "blank_as_empty")]
    pub labels: BTreeMap<String, String>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

fn blank_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map: BTreeMap<String, Option<String>> = Deserialize::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `spec`: the nodes of the app graph.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Spec {
    pub components: Vec<RawComponent>,
    /// wadm's policies (secret backends and the like): read, and warned about, not acted on.
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// One of wadm's `spec.policies`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawPolicy {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// One node: a component or a capability.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawComponent {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub traits: Vec<RawTrait>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// A node's `properties`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// Requests one instance of a WASI 0.3 component serves at once (an extension).
    pub concurrency: Option<u32>,
    /// Secrets granted to this component, by the name it asks for them under.
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    /// A component shared from another app (wadm's shared components), instead of an image.
    pub application: Option<RawSharedRef>,
    /// How the image is built (an extension, as Spin's `[component.build]`).
    pub build: Option<RawBuild>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// `properties.build`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub command: Option<String>,
    pub workdir: Option<String>,
}

/// `properties.application`: the app and component a shared component comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawSharedRef {
    pub name: String,
    pub component: String,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// One entry of `properties.secrets`, as wadm writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawSecret {
    /// The name the component passes to `wasmcloud:secrets/store.get`.
    pub name: String,
    pub properties: RawSecretProperties,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// Where a secret comes from: `key` in weft's secret store (set with `weft secret put`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RawSecretProperties {
    pub key: String,
    /// wadm's secret policy name; weft has one secret store, so only its name is accepted.
    pub policy: Option<String>,
    pub field: Option<String>,
    pub version: Option<String>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
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
pub struct NamedConfig {
    pub name: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
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
    Link(Box<RawLink>),
}

/// Properties of `spreadscaler` and `daemonscaler`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Scaler {
    pub instances: u32,
    #[serde(default)]
    pub spread: Vec<Spread>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// One weighted placement rule of a scaler.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Spread {
    pub name: String,
    #[serde(default)]
    pub requirements: BTreeMap<String, String>,
    pub weight: Option<u32>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// Properties of a `link` trait.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawLink {
    pub target: LinkTarget,
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    /// The link name (wasmCloud's `name`), for components that link one interface twice.
    pub name: Option<String>,
    pub source: Option<LinkEnd>,
    /// wadm's older form of `source.config`.
    #[serde(default)]
    pub source_config: Vec<NamedConfig>,
    /// wadm's older form of `target.config`.
    #[serde(default)]
    pub target_config: Vec<NamedConfig>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
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
pub struct LinkTargetSpec {
    pub name: String,
    #[serde(default)]
    pub config: Vec<NamedConfig>,
    /// Secrets handed to the target over the link; weft's capabilities take `secret:KEY`
    /// config values instead.
    #[serde(default)]
    pub secrets: Vec<serde_json::Value>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
}

/// Link config carried on the source end.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LinkEnd {
    /// wadm 0.13+ names the source end; weft knows the source as the component the link is on.
    pub name: Option<String>,
    #[serde(default)]
    pub config: Vec<NamedConfig>,
    /// Secrets handed over the link; see [`LinkTargetSpec::secrets`].
    #[serde(default)]
    pub secrets: Vec<serde_json::Value>,
    /// Fields weft does not read (warned about at validation).
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: Unknown,
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

impl RawManifest {
    /// Where the manifest has fields weft does not read, e.g. `component `x`: properties.foo`.
    pub fn unread_fields(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut note = |at: &str, unknown: &Unknown| {
            found.extend(unknown.keys().map(|key| format!("{at}{key}")));
        };
        note("", &self.unknown);
        note("metadata.", &self.metadata.unknown);
        note("spec.", &self.spec.unknown);
        for node in &self.spec.components {
            let at = format!("component `{}`: ", node.name);
            note(&at, &node.unknown);
            let properties = &node.properties;
            note(&format!("{at}properties."), &properties.unknown);
            if let Some(shared) = &properties.application {
                note(&format!("{at}properties.application."), &shared.unknown);
            }
            for config in &properties.config {
                note(
                    &format!("{at}properties.config `{}`: ", config.name),
                    &config.unknown,
                );
            }
            for secret in &properties.secrets {
                let at = format!("{at}properties.secrets `{}`: ", secret.name);
                note(&at, &secret.unknown);
                note(&format!("{at}properties."), &secret.properties.unknown);
            }
            for (i, t) in node.traits.iter().enumerate() {
                let at = format!("{at}traits[{i}].properties.");
                match t {
                    RawTrait::Spreadscaler(s) | RawTrait::Daemonscaler(s) => {
                        note(&at, &s.unknown);
                        for spread in &s.spread {
                            note(&format!("{at}spread `{}`: ", spread.name), &spread.unknown);
                        }
                    }
                    RawTrait::Link(link) => {
                        note(&at, &link.unknown);
                        if let LinkTarget::Full(target) = &link.target {
                            note(&format!("{at}target."), &target.unknown);
                        }
                        if let Some(source) = &link.source {
                            note(&format!("{at}source."), &source.unknown);
                        }
                    }
                }
            }
        }
        found
    }
}
