//! weft's app manifest: wadm's OAM `Application` format, parsed and validated into an [`App`].
//!
//! Every error names where the problem is: the file, the component and the field.

pub mod raw;
mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::NamedConfig;
use raw::{RawComponent, RawLink, RawManifest, RawTrait};
pub use units::{parse_duration, parse_size};

/// The default listen address of an HTTP route that names none.
pub const DEFAULT_HTTP_ADDRESS: &str = "127.0.0.1:8080";
/// The default maximum linear memory of one instance.
pub const DEFAULT_MAX_MEMORY: u64 = 256 * 1024 * 1024;
/// The default execution timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of concurrent instances of one component.
pub const DEFAULT_MAX_INSTANCES: u32 = 100;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not a valid app manifest: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {location}: {message}")]
    Invalid {
        origin: String,
        location: String,
        message: String,
    },
}

impl App {
    /// How the app is placed in a lattice. An app is placed as one unit (its links stay
    /// in-process calls), so its components' scalers must agree on kind and spread rules; the
    /// app's instances are the largest any of them asks for. No scaler: spread evenly over every
    /// host.
    pub fn scaler(&self) -> Result<Scaler, String> {
        let mut scalers = self
            .components
            .iter()
            .filter_map(|c| c.scaler.as_ref().map(|s| (c.name.as_str(), s)));
        let Some((first_name, first)) = scalers.next() else {
            return Ok(Scaler {
                kind: ScalerKind::Spread,
                instances: self
                    .components
                    .iter()
                    .map(|c| c.limits.max_instances)
                    .max()
                    .unwrap_or(DEFAULT_MAX_INSTANCES),
                spread: Vec::new(),
            });
        };
        let mut scaler = first.clone();
        for (name, other) in scalers {
            if other.kind != first.kind || other.spread != first.spread {
                return Err(format!(
                    "components `{first_name}` and `{name}` ask for different placements; an app \
                     is placed as one unit in a lattice, so give them the same scaler kind and \
                     spread rules"
                ));
            }
            scaler.instances = scaler.instances.max(other.instances);
        }
        Ok(scaler)
    }

    /// The apps whose components this app uses by reference.
    pub fn uses(&self) -> BTreeSet<String> {
        self.components
            .iter()
            .filter_map(|c| c.shared.as_ref().map(|s| s.app.clone()))
            .collect()
    }
}

/// A validated application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// `metadata.annotations.version`, when the author gave one.
    pub version: Option<String>,
    pub components: Vec<Component>,
    pub capabilities: Vec<Capability>,
    pub routes: Vec<HttpRoute>,
    pub subscriptions: Vec<Subscription>,
}

/// A component node: a Wasm component to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// The image reference exactly as written in the manifest.
    pub image: String,
    pub limits: Limits,
    /// Warm reuse of instances, when the component opts in; fresh per request otherwise.
    pub reuse: Option<Reuse>,
    /// Hosts this component may call through `wasi:http/outgoing-handler`, granted by a link to
    /// an http-client capability; None when it has no such link.
    pub outgoing_http: Option<Vec<String>>,
    pub config: Vec<NamedConfig>,
    /// Links whose source is this component (its imports served by the target).
    pub links: Vec<Link>,
    /// Capabilities granted by this component's links, one per link.
    pub grants: Vec<Grant>,
    /// Secrets granted to this component.
    pub secrets: Vec<SecretGrant>,
    /// Components this one calls in-process over HTTP.
    pub http_links: Vec<HttpLink>,
    /// Components serving this one's imports of other interfaces, in-process.
    pub component_links: Vec<ComponentLink>,
    /// Set when the component is another app's, shared: its image, limits, secrets and config
    /// come from that app; this app adds only links. `image` is empty then.
    pub shared: Option<SharedRef>,
    /// How the component asks to be placed across a lattice's hosts, when it says.
    pub scaler: Option<Scaler>,
}

/// A `spreadscaler` or `daemonscaler` trait: where in a lattice a component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaler {
    pub kind: ScalerKind,
    /// Spread: concurrent instances across the lattice; daemon: on every matching host.
    pub instances: u32,
    pub spread: Vec<SpreadRule>,
}

/// Which scaler placed a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalerKind {
    /// `instances` split over the spread rules by weight, then over each rule's hosts.
    Spread,
    /// Every host matching any spread rule (every host when there is none).
    Daemon,
}

/// One weighted placement rule: hosts whose labels include every requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadRule {
    pub name: String,
    pub requirements: BTreeMap<String, String>,
    pub weight: u32,
}

impl SpreadRule {
    /// Whether a host with `labels` satisfies the rule.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The requirements as `k=v, …`, for messages.
    pub fn describe(&self) -> String {
        if self.requirements.is_empty() {
            return "no requirements".into();
        }
        self.requirements
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A component→component link for interfaces of the app's own: the source's imports of
/// `interfaces` (`namespace:package/interface`) are the target's exports, called in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentLink {
    pub target: String,
    pub interfaces: Vec<String>,
}

/// A component of another app, used by reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedRef {
    pub app: String,
    pub component: String,
}

impl Component {
    /// The components this one links to (over HTTP or an interface of the app's own).
    pub fn link_targets(&self) -> impl Iterator<Item = &str> {
        self.http_links
            .iter()
            .map(|l| l.target.as_str())
            .chain(self.component_links.iter().map(|l| l.target.as_str()))
    }
}

/// A component→component link for `wasi:http/incoming-handler`: the source's outgoing requests
/// to `http://{authority}/…` are served in-process by `target`, without touching the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLink {
    /// The link's name, or the target's when the link names none.
    pub authority: String,
    pub target: String,
}

/// A capability granted to a component by one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: CapabilityKind,
    /// The capability node the link targets.
    pub capability: String,
    /// The link's name; `default` unless the manifest names it.
    pub link_name: String,
    /// Which implementation serves it, e.g. `redis` for key-value.
    pub backend: String,
    /// The capability node's config, then the link's config over it.
    pub settings: BTreeMap<String, String>,
}

/// The link name of a link that names none, as in wasmCloud.
pub const DEFAULT_LINK_NAME: &str = "default";

/// A secret a component may read: it asks for `name`, weft reads `key` from its secret store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    pub name: String,
    pub key: String,
}

/// A messaging subscription: messages on `subjects` go to `component`'s handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub component: String,
    pub capability: String,
    pub backend: String,
    pub settings: BTreeMap<String, String>,
    pub subjects: Vec<String>,
}

/// Per-workload limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_memory: u64,
    pub timeout: Duration,
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// How a component's instances are reused across requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    pub max_requests: u32,
    pub idle: Duration,
}

/// Requests one reused instance serves by default before it is replaced.
pub const DEFAULT_REUSE_REQUESTS: u32 = 10_000;
/// How long an idle reused instance is kept by default.
pub const DEFAULT_REUSE_IDLE: Duration = Duration::from_secs(30);

/// An edge of the app graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    pub name: Option<String>,
    pub source_config: Vec<NamedConfig>,
    pub target_config: Vec<NamedConfig>,
}

/// A capability node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub name: String,
    pub kind: CapabilityKind,
    /// The implementation chosen by the image or the `backend` config key.
    pub backend: String,
    pub config: Vec<NamedConfig>,
}

/// The capabilities this weft provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityKind {
    /// HTTP ingress: links from it to components' `wasi:http/incoming-handler` become routes.
    HttpServer,
    /// Outgoing HTTP: a link from a component to it grants `wasi:http/outgoing-handler`, limited
    /// to the hosts in the link's `allowed_hosts` config.
    HttpClient,
    /// `wasi:keyvalue/{store,atomics,batch}`.
    KeyValue,
    /// `wasi:blobstore/{blobstore,container,types}`.
    Blobstore,
    /// `wasmcloud:messaging`: `consumer` granted by a link to it, `handler` called by a link
    /// from it carrying `subscriptions`.
    Messaging,
}

impl std::fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CapabilityKind::HttpServer => "http-server",
            CapabilityKind::HttpClient => "http-client",
            CapabilityKind::KeyValue => "keyvalue",
            CapabilityKind::Blobstore => "blobstore",
            CapabilityKind::Messaging => "messaging",
        })
    }
}

impl CapabilityKind {
    /// Recognises a capability image: `weft:<name>` or the wasmCloud provider image it replaces.
    pub fn from_image(image: &str) -> Option<(Self, &'static str)> {
        let name =
            image.strip_prefix("weft:").unwrap_or_else(|| {
                let without_tag = image.rsplit_once(':').map_or(image, |(repo, tag)| {
                    if tag.contains('/') {
                        image
                    } else {
                        repo
                    }
                });
                without_tag.rsplit('/').next().unwrap_or(without_tag)
            });
        Self::from_image_name(name)
    }

    /// The kind and default backend a capability image name (without registry or tag) stands for.
    fn from_image_name(name: &str) -> Option<(Self, &'static str)> {
        Some(match name {
            "http-server" | "httpserver" => (CapabilityKind::HttpServer, "hyper"),
            "http-client" | "httpclient" => (CapabilityKind::HttpClient, "hyper"),
            "keyvalue" => (CapabilityKind::KeyValue, "memory"),
            "keyvalue-redis" => (CapabilityKind::KeyValue, "redis"),
            "keyvalue-nats" => (CapabilityKind::KeyValue, "nats"),
            "keyvalue-file" | "keyvalue-redb" => (CapabilityKind::KeyValue, "file"),
            "blobstore" => (CapabilityKind::Blobstore, "memory"),
            "blobstore-fs" | "blobstore-filesystem" => (CapabilityKind::Blobstore, "filesystem"),
            "messaging" => (CapabilityKind::Messaging, "in-process"),
            "messaging-nats" => (CapabilityKind::Messaging, "nats"),
            _ => return None,
        })
    }

    /// The backends a manifest may choose with the `backend` config key.
    pub fn backends(self) -> &'static [&'static str] {
        match self {
            CapabilityKind::HttpServer | CapabilityKind::HttpClient => &["hyper"],
            CapabilityKind::KeyValue => &["memory", "file", "redis", "nats"],
            CapabilityKind::Blobstore => &["memory", "filesystem"],
            CapabilityKind::Messaging => &["in-process", "nats"],
        }
    }

    /// The WIT package a component links to reach this capability, and its interfaces.
    pub fn package(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            CapabilityKind::HttpServer => ("wasi", "http", &["incoming-handler"]),
            CapabilityKind::HttpClient => ("wasi", "http", &["outgoing-handler"]),
            CapabilityKind::KeyValue => ("wasi", "keyvalue", &["store", "atomics", "batch"]),
            CapabilityKind::Blobstore => {
                ("wasi", "blobstore", &["blobstore", "container", "types"])
            }
            CapabilityKind::Messaging => ("wasmcloud", "messaging", &["consumer", "types"]),
        }
    }

    /// The names a manifest may use, for error messages.
    pub const KNOWN: &'static str = "weft:http-server, weft:http-client, weft:keyvalue, \
        weft:blobstore, weft:messaging (or the wasmCloud providers ghcr.io/wasmcloud/http-server, \
        http-client, keyvalue-redis, keyvalue-nats, blobstore-fs, messaging-nats)";
}

/// An HTTP route: requests to `address` (and `host`, when set) under `path` go to `component`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpRoute {
    pub component: String,
    pub address: SocketAddr,
    pub host: Option<String>,
    pub path: String,
}

/// How a component image is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A file on this machine (a `file://` URL or a path relative to the manifest).
    File(PathBuf),
    /// An OCI reference such as `ghcr.io/org/app:1.0`.
    Oci(String),
}

/// Classifies an image reference, resolving relative paths against `base_dir`.
pub fn image_source(image: &str, base_dir: &Path) -> ImageSource {
    if let Some(path) = image.strip_prefix("file://") {
        return ImageSource::File(base_dir.join(path));
    }
    let looks_like_path = image.starts_with('.')
        || image.starts_with('/')
        || image.ends_with(".wasm")
        || !image.contains('/');
    if looks_like_path {
        ImageSource::File(base_dir.join(image))
    } else {
        ImageSource::Oci(image.to_string())
    }
}

/// Reads and validates a manifest file.
pub fn load(path: &Path) -> Result<App, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates manifest text; `origin` names the text's source in errors.
pub fn parse(text: &str, origin: &str) -> Result<App, ManifestError> {
    let raw: RawManifest = serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    validate(raw, origin)
}

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn err(&self, location: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            origin: self.origin.to_string(),
            location: location.into(),
            message: message.into(),
        }
    }
}

fn validate(raw: RawManifest, origin: &str) -> Result<App, ManifestError> {
    let v = Validator { origin };
    if raw.api_version != "core.oam.dev/v1beta1" {
        return Err(v.err(
            "apiVersion",
            format!(
                "`{}` is not supported; use `core.oam.dev/v1beta1`",
                raw.api_version
            ),
        ));
    }
    if raw.kind != "Application" {
        return Err(v.err(
            "kind",
            format!("`{}` is not supported; use `Application`", raw.kind),
        ));
    }
    check_name(&v, "metadata.name", &raw.metadata.name)?;
    let version = raw.metadata.annotations.get("version").cloned();
    if let Some(version) = &version {
        if version.is_empty() || version.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(v.err(
                "metadata.annotations.version",
                format!("`{version}` is not a usable version; use something like v1.2.0"),
            ));
        }
    }
    if raw.spec.components.is_empty() {
        return Err(v.err("spec.components", "the app has no components"));
    }

    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    for node in &raw.spec.components {
        let at = format!("component `{}`", node.name);
        check_name(&v, &format!("{at}: name"), &node.name)?;
        if kinds.insert(&node.name, &node.kind).is_some() {
            return Err(v.err(
                at,
                "the name is used by two components; names must be unique",
            ));
        }
    }

    let mut components = Vec::new();
    let mut capabilities = Vec::new();
    let mut routes = Vec::new();
    let mut subscriptions = Vec::new();
    for node in &raw.spec.components {
        match node.kind.as_str() {
            "component" => components.push(component(&v, node, &kinds)?),
            "capability" => {
                let (capability, node_routes, node_subscriptions) = capability(&v, node, &kinds)?;
                capabilities.push(capability);
                routes.extend(node_routes);
                subscriptions.extend(node_subscriptions);
            }
            other => {
                return Err(v.err(
                    format!("component `{}`: type", node.name),
                    format!("`{other}` is not a node type; use `component` or `capability`"),
                ))
            }
        }
    }

    for component in &mut components {
        grant(&v, component, &capabilities)?;
        if let Some(shared) = &component.shared {
            if !component.grants.is_empty() || component.outgoing_http.is_some() {
                return Err(v.err(
                    format!("component `{}`", component.name),
                    format!(
                        "a shared component's capabilities are granted by its own app `{}`; \
                         link it here only to components",
                        shared.app
                    ),
                ));
            }
        }
    }
    check_http_link_cycles(&v, &components)?;

    let mut seen = BTreeSet::new();
    for route in &routes {
        if !seen.insert((route.address, route.host.clone(), route.path.clone())) {
            return Err(v.err(
                format!("component `{}`", route.component),
                format!(
                    "route {}{} on {} is declared twice",
                    route.host.as_deref().unwrap_or(""),
                    route.path,
                    route.address
                ),
            ));
        }
    }
    routes.sort();

    Ok(App {
        name: raw.metadata.name,
        version,
        components,
        capabilities,
        routes,
        subscriptions,
    })
}

/// Whether `name` is usable as an app, node or secret-key name: letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit, at most 128 bytes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_name(v: &Validator<'_>, location: &str, name: &str) -> Result<(), ManifestError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(v.err(
            location,
            format!(
                "`{name}` is not a valid name; use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
            ),
        ))
    }
}

fn component(
    v: &Validator<'_>,
    node: &RawComponent,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Component, ManifestError> {
    let at = format!("component `{}`", node.name);
    if let Some(shared) = &node.properties.application {
        return shared_component(v, node, shared, kinds);
    }
    let image = node
        .properties
        .image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            v.err(
                format!("{at}: properties.image"),
                "missing; give the path of the built .wasm (e.g. ./build/app.wasm), or \
                 `application: {name, component}` to use another app's component",
            )
        })?;
    if image.starts_with("weft:") {
        return Err(v.err(
            format!("{at}: properties.image"),
            format!("`{image}` names a built-in capability; declare it with `type: capability`"),
        ));
    }

    let mut limits = Limits::default();
    if let Some(raw) = &node.properties.limits {
        if let Some(memory) = &raw.memory {
            limits.max_memory = parse_size(memory)
                .map_err(|m| v.err(format!("{at}: properties.limits.memory"), m))?;
            if limits.max_memory < 64 * 1024 {
                return Err(v.err(
                    format!("{at}: properties.limits.memory"),
                    "must be at least 64KiB, one Wasm page",
                ));
            }
        }
        if let Some(timeout) = &raw.timeout {
            limits.timeout = parse_duration(timeout)
                .map_err(|m| v.err(format!("{at}: properties.limits.timeout"), m))?;
        }
    }

    let reuse = match &node.properties.reuse {
        None => None,
        Some(raw) => {
            let max_requests = raw.requests.unwrap_or(DEFAULT_REUSE_REQUESTS);
            if max_requests == 0 {
                return Err(v.err(
                    format!("{at}: properties.reuse.requests"),
                    "must be at least 1",
                ));
            }
            let idle = match &raw.idle {
                Some(idle) => parse_duration(idle)
                    .map_err(|m| v.err(format!("{at}: properties.reuse.idle"), m))?,
                None => DEFAULT_REUSE_IDLE,
            };
            Some(Reuse { max_requests, idle })
        }
    };

    let mut links = Vec::new();
    let mut scaler = None;
    for (i, t) in node.traits.iter().enumerate() {
        let field = format!("{at}: traits[{i}]");
        match t {
            RawTrait::Spreadscaler(s) | RawTrait::Daemonscaler(s) => {
                if scaler.is_some() {
                    return Err(v.err(field, "a component takes one scaler trait"));
                }
                if s.instances == 0 {
                    return Err(v.err(
                        format!("{field}.properties.instances"),
                        "must be at least 1",
                    ));
                }
                limits.max_instances = s.instances;
                let kind = match t {
                    RawTrait::Daemonscaler(_) => ScalerKind::Daemon,
                    _ => ScalerKind::Spread,
                };
                scaler = Some(check_scaler(v, &field, kind, s)?);
            }
            RawTrait::Link(link) => links.push(check_link(v, &field, link, kinds)?),
        }
    }

    Ok(Component {
        name: node.name.clone(),
        image,
        limits,
        reuse,
        outgoing_http: None,
        config: node.properties.config.clone(),
        links,
        grants: Vec::new(),
        secrets: secrets(v, &at, &node.properties.secrets)?,
        http_links: Vec::new(),
        component_links: Vec::new(),
        shared: None,
        scaler,
    })
}

/// A scaler's spread rules: unique names, weights of at least 1 (1 when not given).
fn check_scaler(
    v: &Validator<'_>,
    field: &str,
    kind: ScalerKind,
    raw: &raw::Scaler,
) -> Result<Scaler, ManifestError> {
    let mut spread = Vec::with_capacity(raw.spread.len());
    for (i, rule) in raw.spread.iter().enumerate() {
        let at = format!("{field}.properties.spread[{i}]");
        if spread.iter().any(|r: &SpreadRule| r.name == rule.name) {
            return Err(v.err(at, format!("a second spread rule named `{}`", rule.name)));
        }
        let weight = rule.weight.unwrap_or(1);
        if weight == 0 {
            return Err(v.err(format!("{at}.weight"), "must be at least 1"));
        }
        spread.push(SpreadRule {
            name: rule.name.clone(),
            requirements: rule.requirements.clone(),
            weight,
        });
    }
    Ok(Scaler {
        kind,
        instances: raw.instances,
        spread,
    })
}

/// A component node that names another app's component: it may carry links, nothing else.
fn shared_component(
    v: &Validator<'_>,
    node: &RawComponent,
    shared: &raw::RawSharedRef,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Component, ManifestError> {
    let at = format!("component `{}`", node.name);
    let p = &node.properties;
    if p.image.is_some()
        || p.limits.is_some()
        || p.reuse.is_some()
        || !p.secrets.is_empty()
        || !p.config.is_empty()
    {
        return Err(v.err(
            format!("{at}: properties"),
            format!(
                "a shared component takes its image, limits, secrets and config from app `{}`; \
                 give only `application` here (and links as traits)",
                shared.name
            ),
        ));
    }
    check_name(
        v,
        &format!("{at}: properties.application.name"),
        &shared.name,
    )?;
    check_name(
        v,
        &format!("{at}: properties.application.component"),
        &shared.component,
    )?;
    let mut links = Vec::new();
    for (i, t) in node.traits.iter().enumerate() {
        let field = format!("{at}: traits[{i}]");
        match t {
            RawTrait::Link(link) => links.push(check_link(v, &field, link, kinds)?),
            _ => {
                return Err(v.err(
                    field,
                    "a shared component is scaled by the app that owns it; remove this trait",
                ))
            }
        }
    }
    Ok(Component {
        name: node.name.clone(),
        image: String::new(),
        limits: Limits::default(),
        reuse: None,
        outgoing_http: None,
        config: Vec::new(),
        links,
        grants: Vec::new(),
        secrets: Vec::new(),
        http_links: Vec::new(),
        component_links: Vec::new(),
        shared: Some(SharedRef {
            app: shared.name.clone(),
            component: shared.component.clone(),
        }),
        scaler: None,
    })
}

fn check_link(
    v: &Validator<'_>,
    field: &str,
    link: &RawLink,
    kinds: &BTreeMap<&str, &str>,
) -> Result<Link, ManifestError> {
    let target = link.target.name();
    if !kinds.contains_key(target) {
        let known: Vec<&str> = kinds.keys().copied().collect();
        return Err(v.err(
            format!("{field}.properties.target"),
            format!(
                "links to `{target}`, which is not in this app (its nodes: {})",
                known.join(", ")
            ),
        ));
    }
    if link.namespace.is_empty() || link.package.is_empty() || link.interfaces.is_empty() {
        return Err(v.err(
            field,
            "a link needs `namespace`, `package` and at least one interface",
        ));
    }
    let target_config = match &link.target {
        raw::LinkTarget::Name(_) => Vec::new(),
        raw::LinkTarget::Full(spec) => spec.config.clone(),
    };
    Ok(Link {
        target: target.to_string(),
        namespace: link.namespace.clone(),
        package: link.package.clone(),
        interfaces: link.interfaces.clone(),
        name: link.name.clone(),
        source_config: link
            .source
            .as_ref()
            .map(|s| s.config.clone())
            .unwrap_or_default(),
        target_config,
    })
}

/// Turns a component's links into the capabilities they grant, refusing links weft cannot serve.
fn grant(
    v: &Validator<'_>,
    component: &mut Component,
    capabilities: &[Capability],
) -> Result<(), ManifestError> {
    let at = format!("component `{}`", component.name);
    for link in &component.links {
        let interface = format!(
            "{}:{}/{}",
            link.namespace,
            link.package,
            link.interfaces.join(",")
        );
        let Some(capability) = capabilities.iter().find(|c| c.name == link.target) else {
            let is_http = link.namespace == "wasi"
                && link.package == "http"
                && link.interfaces.iter().all(|i| i == "incoming-handler");
            if link.target == component.name {
                return Err(v.err(
                    format!("{at}: link to `{}`", link.target),
                    "a component cannot link to itself",
                ));
            }
            if !is_http {
                if link.namespace == "wasi" {
                    return Err(v.err(
                        format!("{at}: link to `{}`", link.target),
                        format!(
                            "`{interface}` is served by weft itself or by capabilities, not by \
                             another component"
                        ),
                    ));
                }
                component.component_links.push(ComponentLink {
                    target: link.target.clone(),
                    interfaces: link
                        .interfaces
                        .iter()
                        .map(|i| format!("{}:{}/{i}", link.namespace, link.package))
                        .collect(),
                });
                continue;
            }
            if link.target == component.name {
                return Err(v.err(
                    format!("{at}: link to `{}`", link.target),
                    "a component cannot link to itself",
                ));
            }
            let authority = link.name.clone().unwrap_or_else(|| link.target.clone());
            if component
                .http_links
                .iter()
                .any(|l| l.authority == authority)
            {
                return Err(v.err(
                    format!("{at}: link to `{}`", link.target),
                    format!("two component links answer on `http://{authority}/`; give them different `name:`s"),
                ));
            }
            component.http_links.push(HttpLink {
                authority,
                target: link.target.clone(),
            });
            continue;
        };
        match capability.kind {
            CapabilityKind::HttpClient => {
                let is_outgoing = link.namespace == "wasi"
                    && link.package == "http"
                    && link.interfaces.iter().all(|i| i == "outgoing-handler");
                if !is_outgoing {
                    return Err(v.err(
                        format!("{at}: link to `{}`", link.target),
                        format!("an http-client link grants `wasi:http/outgoing-handler`, not `{interface}`"),
                    ));
                }
                let hosts = allowed_hosts(v, &at, link)?;
                component.outgoing_http = Some(hosts);
            }
            CapabilityKind::HttpServer => {
                return Err(v.err(
                    format!("{at}: link to `{}`", link.target),
                    "http-server routes requests to components: put the link on the capability, \
                     targeting the component",
                ))
            }
            kind @ (CapabilityKind::KeyValue
            | CapabilityKind::Blobstore
            | CapabilityKind::Messaging) => {
                let field = format!("{at}: link to `{}`", link.target);
                let (namespace, package, interfaces) = kind.package();
                let fits = link.namespace == namespace
                    && link.package == package
                    && link
                        .interfaces
                        .iter()
                        .all(|i| interfaces.contains(&i.as_str()));
                if !fits {
                    return Err(v.err(
                        field,
                        format!(
                            "a {kind} link grants `{namespace}:{package}/{{{}}}`, not `{interface}`",
                            interfaces.join(",")
                        ),
                    ));
                }
                let link_name = link
                    .name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LINK_NAME.to_string());
                let clash = component
                    .grants
                    .iter()
                    .any(|g| g.kind == kind && g.link_name == link_name);
                if clash {
                    return Err(v.err(
                        field,
                        format!(
                            "a second {kind} link named `{link_name}`; give each link to the same \
                             interface its own `name:` and pick one at runtime with \
                             wasmcloud:bus/lattice set-link-name"
                        ),
                    ));
                }
                let settings = settings(
                    v,
                    &field,
                    kind,
                    capability
                        .config
                        .iter()
                        .chain(&link.target_config)
                        .chain(&link.source_config),
                )?;
                component.grants.push(Grant {
                    kind,
                    capability: capability.name.clone(),
                    link_name,
                    backend: backend_of(capability, &settings),
                    settings,
                });
            }
        }
    }
    Ok(())
}

/// Refuses component links that lead back to where they started: a request would loop forever.
fn check_http_link_cycles(
    v: &Validator<'_>,
    components: &[Component],
) -> Result<(), ManifestError> {
    let links = |name: &str| -> Vec<&str> {
        components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.link_targets().collect())
            .unwrap_or_default()
    };
    for start in components {
        let mut frontier: Vec<Vec<&str>> = vec![vec![start.name.as_str()]];
        while let Some(trail) = frontier.pop() {
            let last = *trail.last().unwrap_or(&"");
            for next in links(last) {
                if next == start.name {
                    return Err(v.err(
                        format!("component `{}`", start.name),
                        format!(
                            "component links form a loop: {} → {next}",
                            trail.join(" → ")
                        ),
                    ));
                }
                if !trail.contains(&next) {
                    let mut longer = trail.clone();
                    longer.push(next);
                    frontier.push(longer);
                }
            }
        }
    }
    Ok(())
}

/// The config keys each capability understands, so a typo is an error, not a silent default.
fn known_keys(kind: CapabilityKind) -> &'static [&'static str] {
    match kind {
        CapabilityKind::KeyValue => &["backend", "url", "path", "bucket"],
        CapabilityKind::Blobstore => &["backend", "root"],
        CapabilityKind::Messaging => &["backend", "url", "subscriptions"],
        CapabilityKind::HttpServer | CapabilityKind::HttpClient => &[],
    }
}

/// Merges named configs in order (later wins), refusing keys the capability does not know and
/// a backend it does not have.
fn settings<'a>(
    v: &Validator<'_>,
    field: &str,
    kind: CapabilityKind,
    configs: impl Iterator<Item = &'a NamedConfig>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let known = known_keys(kind);
    let mut merged = BTreeMap::new();
    for config in configs {
        for (key, value) in &config.properties {
            if !known.contains(&key.as_str()) {
                return Err(v.err(
                    format!("{field}: config `{}`", config.name),
                    format!("unknown key `{key}`; a {kind} takes: {}", known.join(", ")),
                ));
            }
            merged.insert(key.clone(), value.clone());
        }
    }
    if let Some(backend) = merged.get("backend") {
        if !kind.backends().contains(&backend.as_str()) {
            return Err(v.err(
                format!("{field}: config backend"),
                format!(
                    "`{backend}` is not a {kind} backend; available: {}",
                    kind.backends().join(", ")
                ),
            ));
        }
    }
    Ok(merged)
}

fn backend_of(capability: &Capability, settings: &BTreeMap<String, String>) -> String {
    settings
        .get("backend")
        .cloned()
        .unwrap_or_else(|| capability.backend.clone())
}

fn secrets(
    v: &Validator<'_>,
    at: &str,
    raw: &[raw::RawSecret],
) -> Result<Vec<SecretGrant>, ManifestError> {
    let mut grants: Vec<SecretGrant> = Vec::new();
    for (i, secret) in raw.iter().enumerate() {
        let field = format!("{at}: properties.secrets[{i}]");
        check_secret_key(v, &field, &secret.properties.key)?;
        if secret.name.is_empty() {
            return Err(v.err(
                field,
                "a secret needs a `name`, the name the component asks for",
            ));
        }
        if grants.iter().any(|g| g.name == secret.name) {
            return Err(v.err(field, format!("secret `{}` is granted twice", secret.name)));
        }
        if let Some(policy) = &secret.properties.policy {
            if policy != "weft" {
                return Err(v.err(
                    format!("{field}.properties.policy"),
                    format!("`{policy}`: weft reads secrets from its own store; use `policy: weft` or leave it out"),
                ));
            }
        }
        if secret.properties.field.is_some() || secret.properties.version.is_some() {
            return Err(v.err(
                field,
                "`field` and `version` select parts of an external secret backend's entries; \
                 weft's store keeps one value per key, so name the key alone",
            ));
        }
        grants.push(SecretGrant {
            name: secret.name.clone(),
            key: secret.properties.key.clone(),
        });
    }
    Ok(grants)
}

fn check_secret_key(v: &Validator<'_>, field: &str, key: &str) -> Result<(), ManifestError> {
    check_name(v, &format!("{field}.properties.key"), key)
}

/// The `allowed_hosts` of an outgoing-HTTP link: comma-separated `host` or `host:port`, or `*`.
fn allowed_hosts(v: &Validator<'_>, at: &str, link: &Link) -> Result<Vec<String>, ManifestError> {
    let mut hosts = Vec::new();
    for config in link.source_config.iter().chain(&link.target_config) {
        for (key, value) in &config.properties {
            if key != "allowed_hosts" {
                return Err(v.err(
                    format!("{at}: link to `{}`: config `{}`", link.target, config.name),
                    format!("unknown key `{key}`; known keys: allowed_hosts"),
                ));
            }
            hosts.extend(
                value
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty()),
            );
        }
    }
    if hosts.is_empty() {
        return Err(v.err(
            format!("{at}: link to `{}`", link.target),
            "name the hosts it may call in the link's config: allowed_hosts: \"api.example.com,127.0.0.1:8081\" (or \"*\")",
        ));
    }
    Ok(hosts)
}

fn capability(
    v: &Validator<'_>,
    node: &RawComponent,
    kinds: &BTreeMap<&str, &str>,
) -> Result<(Capability, Vec<HttpRoute>, Vec<Subscription>), ManifestError> {
    let at = format!("component `{}`", node.name);
    let image = node.properties.image.as_deref().unwrap_or_default();
    let (kind, default_backend) = CapabilityKind::from_image(image).ok_or_else(|| {
        v.err(
            format!("{at}: properties.image"),
            format!(
                "`{image}` is not a capability this weft provides; available: {}",
                CapabilityKind::KNOWN
            ),
        )
    })?;
    if node.properties.limits.is_some() || node.properties.reuse.is_some() {
        return Err(v.err(
            format!("{at}: properties"),
            "limits and reuse apply to components, not capabilities",
        ));
    }
    if !node.properties.secrets.is_empty() {
        return Err(v.err(
            format!("{at}: properties.secrets"),
            "secrets are granted to components, not capabilities",
        ));
    }
    let mut capability = Capability {
        name: node.name.clone(),
        kind,
        backend: default_backend.to_string(),
        config: node.properties.config.clone(),
    };
    if !known_keys(kind).is_empty() {
        let own = settings(
            v,
            &format!("{at}: properties"),
            kind,
            capability.config.iter(),
        )?;
        capability.backend = backend_of(&capability, &own);
    }

    let mut routes = Vec::new();
    let mut subscriptions = Vec::new();
    for (i, t) in node.traits.iter().enumerate() {
        let field = format!("{at}: traits[{i}]");
        let RawTrait::Link(link) = t else {
            return Err(v.err(
                field,
                "a capability is not scaled; remove this scaler trait",
            ));
        };
        let link = check_link(v, &field, link, kinds)?;
        let interface = format!(
            "{}:{}/{}",
            link.namespace,
            link.package,
            link.interfaces.join(",")
        );
        match kind {
            CapabilityKind::HttpServer => {
                let delivery = Delivery {
                    export: ("wasi", "http", "incoming-handler"),
                    not_a_component: "HTTP routes lead to components",
                    link_kind: "an http-server link serves",
                };
                delivery.check(v, &field, &link, kinds, &interface)?;
                routes.push(http_route(v, &field, &link)?);
            }
            CapabilityKind::Messaging => {
                let delivery = Delivery {
                    export: ("wasmcloud", "messaging", "handler"),
                    not_a_component: "messages are delivered to components",
                    link_kind: "a messaging link to a component delivers to",
                };
                delivery.check(v, &field, &link, kinds, &interface)?;
                let settings = settings(
                    v,
                    &field,
                    kind,
                    capability
                        .config
                        .iter()
                        .chain(&link.source_config)
                        .chain(&link.target_config),
                )?;
                let subjects: Vec<String> = settings
                    .get("subscriptions")
                    .map(|s| {
                        s.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                if subjects.is_empty() {
                    return Err(v.err(
                        field,
                        "name the subjects to deliver in the link's source config: \
                         subscriptions: \"orders.*,audit.>\"",
                    ));
                }
                if let Some(bad) = subjects.iter().find(|s| !valid_subject(s)) {
                    return Err(v.err(
                        format!("{field}: config subscriptions"),
                        format!("`{bad}` is not a subject: use dot-separated tokens, `*` for one token, `>` last for the rest"),
                    ));
                }
                subscriptions.push(Subscription {
                    component: link.target.clone(),
                    capability: node.name.clone(),
                    backend: backend_of(&capability, &settings),
                    settings,
                    subjects,
                });
            }
            CapabilityKind::HttpClient | CapabilityKind::KeyValue | CapabilityKind::Blobstore => {
                return Err(v.err(
                    field,
                    format!("a {kind} is granted by a link from a component to it, not from it"),
                ))
            }
        }
    }
    Ok((capability, routes, subscriptions))
}

/// What a link from a capability to a component must lead to: a component exporting `export`.
struct Delivery {
    export: (&'static str, &'static str, &'static str),
    not_a_component: &'static str,
    link_kind: &'static str,
}

impl Delivery {
    fn check(
        &self,
        v: &Validator<'_>,
        field: &str,
        link: &Link,
        kinds: &BTreeMap<&str, &str>,
        interface: &str,
    ) -> Result<(), ManifestError> {
        if kinds.get(link.target.as_str()) != Some(&"component") {
            return Err(v.err(
                format!("{field}.properties.target"),
                format!(
                    "`{}` is not a component; {}",
                    link.target, self.not_a_component
                ),
            ));
        }
        let (namespace, package, export) = self.export;
        let fits = link.namespace == namespace
            && link.package == package
            && link.interfaces.iter().all(|i| i == export);
        if !fits {
            return Err(v.err(
                field,
                format!(
                    "{} `{namespace}:{package}/{export}`, not `{interface}`",
                    self.link_kind
                ),
            ));
        }
        Ok(())
    }
}

/// A NATS-style subject: non-empty dot-separated tokens without spaces; `>` only last.
pub fn valid_subject(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.chars().any(char::is_whitespace)
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !t.contains(['*', '>']))
    })
}

fn http_route(v: &Validator<'_>, field: &str, link: &Link) -> Result<HttpRoute, ManifestError> {
    let mut address = DEFAULT_HTTP_ADDRESS.to_string();
    let mut host = None;
    let mut path = "/".to_string();
    for config in &link.source_config {
        for (key, value) in &config.properties {
            match key.as_str() {
                "address" => address = value.clone(),
                "host" => host = Some(value.to_ascii_lowercase()),
                "path" => path = value.clone(),
                // wasmCloud's http-server uses routing_mode to choose path or host routing; weft
                // routes on both at once, so the key is accepted and has nothing to decide.
                "routing_mode" => {}
                other => {
                    return Err(v.err(
                        format!("{field}.properties.source.config `{}`", config.name),
                        format!("unknown key `{other}`; known keys: address, host, path"),
                    ))
                }
            }
        }
    }
    let address: SocketAddr = address.parse().map_err(|_| {
        v.err(
            format!("{field}.properties.source.config address"),
            format!("`{address}` is not an IP:port address such as 127.0.0.1:8080"),
        )
    })?;
    if !path.starts_with('/') {
        return Err(v.err(
            format!("{field}.properties.source.config path"),
            format!("`{path}` must start with `/`"),
        ));
    }
    if path.len() > 1 {
        path = path.trim_end_matches('/').to_string();
    }
    Ok(HttpRoute {
        component: link.target.clone(),
        address,
        host,
        path,
    })
}

#[cfg(test)]
mod tests;
