//! weft's control API as its clients see it: the JSON types a host serves and the CLI reads,
//! where a host says its control API listens, and how components are addressed. Small on
//! purpose: a client depends on it without the runtime (wasmtime) or NATS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `POST /v1/apps`: deploy a manifest whose component images were uploaded beforehand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The manifest text.
    pub manifest: String,
    /// Where the manifest came from (a path), used in error messages.
    pub origin: String,
    /// Image reference as written in the manifest → sha256 of the uploaded component.
    pub images: BTreeMap<String, String>,
    /// Component → concurrent-instance cap overriding the manifest's (a lattice host's share).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caps: BTreeMap<String, u32>,
    /// The version to deploy as instead of the manifest's (`weft dev` derives one per build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `POST /v1/apps` with many deploys: applied in order, each on its own; the apps that pass are
/// stored and switched on together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployBatch {
    pub apps: Vec<DeployRequest>,
}

/// What a batch deploy did with each app, in the request's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub results: Vec<BatchResult>,
}

/// What became of one app of a batch deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchResult {
    Deployed(DeployOutcome),
    Refused {
        /// Where the refused manifest came from, as its request said.
        origin: String,
        /// The HTTP status a deploy of this app alone would have answered.
        status: u16,
        error: String,
    },
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub app: String,
    pub version: String,
    /// The version it replaced, if any.
    pub previous: Option<String>,
    /// Components compiled by this deploy (0 when every one came from the compile cache).
    pub compiled: u32,
    /// True when this exact version was already running and nothing changed.
    pub unchanged: bool,
    /// Apps using this app's components that were switched to this version.
    #[serde(default)]
    pub relinked: u32,
    /// Apps that could not be switched and stay on the previous version, with why.
    #[serde(default)]
    pub relink_failures: Vec<String>,
    /// What the manifest says that weft reads but does not act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Whether an app is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Deployed,
    Failed,
    /// In a lattice: placed, not yet running on every host it was placed on.
    Deploying,
    /// In a lattice: no host meets a placement requirement (the reason names it).
    Waiting,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Deployed => "deployed",
            Phase::Failed => "failed",
            Phase::Deploying => "deploying",
            Phase::Waiting => "waiting",
        })
    }
}

/// `GET /v1/apps/{name}` and each item of `GET /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub version: String,
    pub phase: Phase,
    /// Why the app is not serving, when it is not.
    pub reason: Option<String>,
    pub origin: String,
    pub deployed_at: u64,
    pub components: Vec<ComponentStatus>,
    /// Every stored version, oldest first.
    pub versions: Vec<String>,
    /// Apps using this app's components, and which version of this app each runs.
    #[serde(default)]
    pub dependents: BTreeMap<String, String>,
    /// Apps whose components this app uses, and the version of each in use.
    #[serde(default)]
    pub uses: BTreeMap<String, String>,
    /// In a lattice: host → its share of the app's instances.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, u32>,
    /// In a lattice: what happened to the app lately (placements, moves, host losses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// What the manifest says that weft reads but does not act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One component of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub image: String,
    pub digest: String,
    pub routes: Vec<String>,
    /// What else calls the component: its subscriptions, key watches and schedules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    pub max_memory: u64,
    pub timeout_ms: u64,
    pub max_instances: u32,
    pub active_instances: usize,
    /// Idle instances kept for reuse.
    pub warm_instances: usize,
    /// Fresh instances reset in place after they answered, ready for a request; None when
    /// the component's instances are not reset in place (a new one is made for each request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_instances: Option<usize>,
    /// The reuse policy, when the component opted in.
    pub reuse: Option<String>,
    /// What it runs on: its WASI generation and how its memory is reset (empty when it serves
    /// no requests here).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine: String,
}

/// `GET /v1/host`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    pub version: String,
    pub state_dir: String,
    pub allocator: String,
    /// Components compiled since this host started (compile-cache misses).
    pub compilations: u64,
    /// Linear memory all guest instances together may hold, in bytes (`--memory-budget`).
    #[serde(default)]
    pub memory_budget: u64,
    /// Linear memory the live guest instances hold now, in bytes.
    #[serde(default)]
    pub memory_in_use: u64,
    pub apps: usize,
    pub listeners: Vec<String>,
    /// The lattice this host belongs to, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lattice: Option<LatticeInfo>,
}

/// A host's place in its lattice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatticeInfo {
    pub name: String,
    pub host: String,
    pub nats: String,
    /// The host holding the leader lease, as far as this host knows.
    pub leader: Option<String>,
}

/// `GET /v1/hosts`: one host of the lattice as this host hears it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatticeHost {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub alive: bool,
    /// Milliseconds since its last heartbeat arrived.
    pub silent_ms: u64,
    pub leader: bool,
    pub version: String,
    pub started_at_ms: u64,
    pub http: Option<String>,
    pub control: Option<String>,
    pub apps: Vec<InventoryApp>,
}

/// `POST /v1/apps/{app}/components/{component}/call`: an export and its arguments in WAVE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRequest {
    /// `interface.function` (e.g. `example:greet/greeter.greet`), or a top-level function.
    pub function: String,
    /// One WAVE text per parameter.
    #[serde(default)]
    pub args: Vec<String>,
}

/// What a call returned: each result in WAVE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallResult {
    pub results: Vec<String>,
}

/// The body of every error the control API returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `<state dir>/control.json`: where a running host's control API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlEndpoint {
    pub url: String,
    pub pid: u32,
}

/// One app as a host runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryApp {
    pub app: String,
    pub version: String,
    /// `deployed` or `failed`.
    pub phase: String,
    pub reason: Option<String>,
    pub components: Vec<InventoryComponent>,
}

/// Something that happened on a host or in its lattice: a deploy, an undeploy, a re-link of
/// the fleet patch, a refused deploy, a host lost or joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// `deployed`, `undeployed`, `relinked`, `refused`, `host_lost`, `host_joined`, `placed`.
    pub kind: String,
    /// What happened, in a sentence.
    pub text: String,
}

/// One component of an app as a host runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryComponent {
    pub name: String,
    pub max_instances: u32,
    pub active_instances: usize,
}

impl From<ComponentStatus> for InventoryComponent {
    fn from(c: ComponentStatus) -> Self {
        InventoryComponent {
            name: c.name,
            max_instances: c.max_instances,
            active_instances: c.active_instances,
        }
    }
}

/// The file telling clients where a host's control API listens.
pub fn endpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.json")
}

/// The file holding a host's control API token.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control-token")
}

/// Why bytes cannot be a WebAssembly component; reads as the end of a sentence naming them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAComponent {
    #[error("is not a WebAssembly file (it lacks the `\\0asm` header)")]
    NotWasm,
    #[error(
        "is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
}

/// Checks the header of `bytes` before they are sent, stored or compiled: a component starts
/// with `\0asm` and the component layer; anything else is refused here, naming what it is.
pub fn check_component(bytes: &[u8]) -> Result<(), NotAComponent> {
    if !bytes.starts_with(b"\0asm") {
        return Err(NotAComponent::NotWasm);
    }
    match bytes.get(4..8) {
        Some([_, _, 1, 0]) => Ok(()),
        Some([1, 0, 0, 0]) => Err(NotAComponent::CoreModule),
        _ => Err(NotAComponent::NotWasm),
    }
}

/// A component whose largest core module initialises more data than this has a large memory
/// image: weft keeps more of its dirtied pages resident between fresh instances (an engine of its
/// own).
pub const LARGE_IMAGE_BYTES: u64 = 4 << 20;

/// Bytes of data the component's largest core module puts in its memories at instantiation
/// (active data segments): what a fresh instance's memory image holds. Nested modules are
/// counted one by one; an unparsable component counts as empty (its compile error says why).
pub fn largest_data_image(bytes: &[u8]) -> u64 {
    use wasmparser::{Encoding, Payload};
    let (mut largest, mut current) = (0u64, 0u64);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::Version {
                encoding: Encoding::Module,
                ..
            }) => current = 0,
            Ok(Payload::DataSection(reader)) => {
                for data in reader.into_iter().flatten() {
                    if matches!(data.kind, wasmparser::DataKind::Active { .. }) {
                        current += data.data.len() as u64;
                    }
                }
            }
            Ok(Payload::End(_)) => largest = largest.max(current),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    largest
}

/// How a component is addressed when uploaded and in a deploy: the sha256 of its bytes, in hex.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
