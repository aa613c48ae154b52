//! The validated app: what a manifest means once parsed, checked and locked against the
//! capabilities a host provides. It serialises, so a locked app travels (state store, NATS)
//! instead of being parsed again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::raw::NamedConfig;

/// The default maximum linear memory of one instance.
pub const DEFAULT_MAX_MEMORY: u64 = 256 * 1024 * 1024;
/// The default execution timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of concurrent instances of one component.
pub const DEFAULT_MAX_INSTANCES: u32 = 100;
/// The most linear memory one instance may be given: what the host's instance allocator
/// reserves for one memory, so a larger limit could not be honoured.
pub const MEMORY_CEILING: u64 = 1 << 30;
/// The longest execution timeout a request may be given.
pub const TIMEOUT_CEILING: Duration = Duration::from_secs(60 * 60);
/// The most concurrent instances of one component on one host: the instance allocator holds
/// 2000 component instances for all apps together.
pub const INSTANCES_CEILING: u32 = 1000;
/// Requests one instance of a WASI 0.3 component serves at once by default.
pub const DEFAULT_CONCURRENCY: u32 = 100;
/// The most requests one instance may serve at once.
pub const CONCURRENCY_CEILING: u32 = 10_000;
/// Requests one reused instance serves by default before it is replaced.
pub const DEFAULT_REUSE_REQUESTS: u32 = 10_000;
/// How long an idle reused instance is kept by default.
pub const DEFAULT_REUSE_IDLE: Duration = Duration::from_secs(30);
/// The link name of a link that names none, as in wasmCloud.
pub const DEFAULT_LINK_NAME: &str = "default";

/// Merged config of a capability grant or delivery: the node's config, then the link's over it.
pub type Settings = BTreeMap<String, String>;

/// A manifest that parsed and passed every check that needs no knowledge of capabilities.
/// [`crate::lock`] turns it into an [`App`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Where the text came from (a path), for errors.
    pub origin: String,
    pub name: String,
    /// `metadata.annotations.version`, when the author gave one.
    pub version: Option<String>,
    /// Component nodes; their `grants` and `outgoing_http` are empty until locked.
    pub components: Vec<Component>,
    /// Capability nodes as written.
    pub capabilities: Vec<CapabilityNode>,
    /// What the manifest says that weft reads but does not act on.
    pub warnings: Vec<String>,
    /// `metadata.annotations`.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A capability node as written: its image and config, and the links from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityNode {
    pub name: String,
    pub image: String,
    pub config: Vec<NamedConfig>,
    /// Links from this node to components, with the trait index each came from.
    pub links: Vec<(usize, Link)>,
}

/// A validated application, locked against a host's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    /// `metadata.annotations.version`, when the author gave one.
    pub version: Option<String>,
    pub components: Vec<Component>,
    pub capabilities: Vec<Capability>,
    pub routes: Vec<HttpRoute>,
    pub subscriptions: Vec<Subscription>,
    /// Key-value keys whose changes go to a component's `wasi:keyvalue/watcher` export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<KeyWatch>,
    /// Schedules whose ticks go to a component's `weft:schedule/handler` export.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// The manifest asks for a strict deploy (`weft.dev/strict`): what would be a warning,
    /// here or on the host, refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// What the manifest says that weft reads but does not act on; shown with the deploy and
    /// in status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A component node: a Wasm component to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// How its image is built (`properties.build`), for `--build` and `weft dev`; the client's
    /// business only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStep>,
}

/// `properties.build`: a command that builds the component's image, with any toolchain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStep {
    /// Run by `sh -c`.
    pub command: String,
    /// Where it runs, relative to the manifest's directory (default: that directory).
    pub workdir: Option<String>,
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

/// A `spreadscaler` or `daemonscaler` trait: where in a lattice a component runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaler {
    pub kind: ScalerKind,
    /// Spread: concurrent instances across the lattice; daemon: on every matching host.
    pub instances: u32,
    pub spread: Vec<SpreadRule>,
}

/// Which scaler placed a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalerKind {
    /// `instances` split over the spread rules by weight, then over each rule's hosts.
    Spread,
    /// Every host matching any spread rule (every host when there is none).
    Daemon,
}

/// One weighted placement rule: hosts whose labels include every requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentLink {
    pub target: String,
    pub interfaces: Vec<String>,
}

/// A component of another app, used by reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SharedRef {
    pub app: String,
    pub component: String,
}

/// A component→component link for `wasi:http/incoming-handler` (or 0.3's `handler`): the
/// source's outgoing requests to `http://{authority}/…` are served in-process by `target`,
/// without touching the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpLink {
    /// The link's name, or the target's when the link names none.
    pub authority: String,
    pub target: String,
    /// The link names `handler`: the source is a WASI 0.3 middleware, and `target` serves its
    /// `wasi:http/handler` import (the next handler in the chain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handler: bool,
}

/// A capability granted to a component by one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The capability's name in its catalog, e.g. `keyvalue`.
    pub kind: String,
    /// The capability node the link targets.
    pub capability: String,
    /// The link's name; `default` unless the manifest names it.
    pub link_name: String,
    /// Which implementation serves it, e.g. `redis` for key-value.
    pub backend: String,
    /// The capability node's config, then the link's config over it (checked by the backend).
    pub settings: Settings,
}

/// A secret a component may read: it asks for `name`, weft reads `key` from its secret store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretGrant {
    pub name: String,
    pub key: String,
}

/// A messaging subscription: messages on `subjects` go to `component`'s handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub component: String,
    pub capability: String,
    /// The capability's name in its catalog, e.g. `messaging`.
    pub kind: String,
    pub backend: String,
    pub settings: Settings,
    pub subjects: Vec<String>,
}

/// Changes to keys of a key-value capability's bucket (the one `open("")` gives), delivered to `component`'s `watcher` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWatch {
    pub component: String,
    pub capability: String,
    pub backend: String,
    pub settings: Settings,
    /// Keys whose writes call `on-set`.
    pub on_set: Vec<String>,
    /// Keys whose deletion calls `on-delete`.
    pub on_delete: Vec<String>,
}

/// A schedule: its ticks call `component`'s `weft:schedule/handler` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub component: String,
    /// The `weft:schedule` node the link comes from; ticks carry its name.
    pub capability: String,
    pub when: When,
}

/// When a schedule ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// At every multiple of the interval since the Unix epoch, so every host agrees on a tick.
    Every(Duration),
    /// At the times a cron expression (five fields, or six with seconds first) matches, in UTC.
    Cron(String),
}

/// Per-workload limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_memory: u64,
    pub timeout: Duration,
    pub max_instances: u32,
    /// Requests one instance of a WASI 0.3 component serves at once (`properties.concurrency`);
    /// None means [`DEFAULT_CONCURRENCY`]. A WASI 0.2 component serves one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Which limits the manifest states; the others are defaults, which a host whose ceilings
    /// are lower lowers to them instead of refusing the app.
    #[serde(default)]
    pub stated: StatedLimits,
}

/// Which of a component's limits its manifest states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatedLimits {
    pub memory: bool,
    pub timeout: bool,
    pub instances: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_instances: DEFAULT_MAX_INSTANCES,
            concurrency: None,
            stated: StatedLimits::default(),
        }
    }
}

/// How a component's instances are reused across requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reuse {
    pub max_requests: u32,
    pub idle: Duration,
}

/// An edge of the app graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub target: String,
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    pub name: Option<String>,
    pub source_config: Vec<NamedConfig>,
    pub target_config: Vec<NamedConfig>,
}

impl Link {
    /// `namespace:package/a,b`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{}",
            self.namespace,
            self.package,
            self.interfaces.join(",")
        )
    }

    /// Whether the link names `namespace:package` and only interfaces among `interfaces`.
    pub fn is_within(&self, namespace: &str, package: &str, interfaces: &[&str]) -> bool {
        self.namespace == namespace
            && self.package == package
            && self
                .interfaces
                .iter()
                .all(|i| interfaces.contains(&i.as_str()))
    }
}

/// A capability node, resolved to the capability that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    /// The capability's name in its catalog, e.g. `keyvalue`.
    pub kind: String,
    /// The implementation chosen by the image or the `backend` config key.
    pub backend: String,
    pub config: Vec<NamedConfig>,
    /// The wasmCloud provider image the node names, when it names one rather than `weft:…`:
    /// weft then behaves as that provider does where weft's own default is stricter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// An HTTP route: requests to `address` (and `host`, when set) under `path` go to `component`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HttpRoute {
    pub component: String,
    pub address: SocketAddr,
    pub host: Option<String>,
    pub path: String,
}
