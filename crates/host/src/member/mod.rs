//! A host's membership of a lattice: it says it is alive (with what it runs), runs the apps the
//! controller placed on it, routes requests for the others to hosts that run them, and serves
//! the requests other hosts forward to it. Deploys through this host's control API go to the
//! lattice's state, not to this host alone.
//!
//! One file per concern: `apply` runs the placements here, `forward` carries HTTP requests
//! between hosts, `calls` carries component-link calls, `status` answers what runs where,
//! `ticks` decides which host handles each schedule tick.

mod apply;
mod calls;
mod forward;
mod status;
mod ticks;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use weft_lattice::{
    now_ms, version_key, AppRecord, Directory, InventoryApp, JetStream, Kv, LatticeBlobs,
    Leadership, Subjects, APP_PREFIX,
};

use crate::api::{DeployOutcome, DeployRequest};
use crate::{Host, HostError, StoredApp};

use apply::placement_loop;
use calls::RemoteCalls;
use forward::NatsForward;
use status::{answer_controls, heartbeats};

/// How often a host re-reads the placements even when it heard of no change.
const RESYNC: Duration = Duration::from_secs(2);
/// How long a host waits before trying again to run an app it failed to run.
const RETRY_FAILED: Duration = Duration::from_secs(30);
/// How long a forwarded request may take, end to end.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a forwarded request in flight checks that its host is still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(250);
/// Room left in a NATS message for the frame's head.
const HEAD_ROOM: usize = 16 * 1024;

/// How a host joins a lattice.
#[derive(Debug, Clone)]
pub struct LatticeOptions {
    pub nats_url: String,
    /// How to authenticate to NATS.
    pub nats_auth: weft_lattice::NatsAuth,
    pub lattice: String,
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
}

/// What this host did with one app of the lattice.
enum Applied {
    /// Runs here with this share of the app's instances; `failed` (why, and since when) when
    /// the deploy was refused.
    Here {
        version: String,
        share: u32,
        failed: Option<(String, std::time::Instant)>,
        serving: Option<Serving>,
    },
    /// Routed to other hosts.
    Elsewhere { version: String },
}

/// The task taking an app's forwarded requests and calls; dropping it stops new deliveries,
/// and those already delivered still get their answer, so no caller waits out its timeout.
struct Serving {
    task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Serving {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Why a lattice operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Lattice(#[from] weft_lattice::LatticeError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("`{0}` is not a valid {1}; use letters, digits, `-` and `_` (at most 64)")]
    Name(String, &'static str),
    #[error("{0}")]
    Refused(String),
}

/// This host, as a member of a lattice.
pub struct Member {
    host: Arc<Host>,
    options: LatticeOptions,
    js: JetStream,
    kv: Kv,
    blobs: LatticeBlobs,
    subjects: Subjects,
    directory: Arc<Directory>,
    leadership: Arc<Mutex<Leadership>>,
    started_at_ms: u64,
    applied: tokio::sync::Mutex<BTreeMap<String, Applied>>,
    /// The last inventory reported, for heartbeats (kept apart from `applied`, which is held
    /// across deploys).
    inventory: Mutex<Vec<InventoryApp>>,
    forwarder: Arc<NatsForward>,
    /// The control API's URL, once it listens (shown to other hosts).
    control_url: Mutex<Option<String>>,
}

impl Member {
    /// Connects to NATS and joins the lattice: heartbeats, placements and forwarded requests
    /// start at once and stop when the member is dropped.
    pub async fn join(host: Arc<Host>, options: LatticeOptions) -> Result<Arc<Self>, MemberError> {
        if !weft_lattice::is_valid_token(&options.lattice) {
            return Err(MemberError::Name(options.lattice.clone(), "lattice name"));
        }
        if !weft_lattice::is_valid_token(&options.host_id) {
            return Err(MemberError::Name(options.host_id.clone(), "host id"));
        }
        let subjects = Subjects::new(&options.lattice);
        // Replies arrive under the lattice's own subjects, so a NATS user allowed only
        // `weft.<lattice>.>` and the lattice's streams can do everything a host does.
        let js = JetStream::connect_with_inbox(
            &options.nats_url,
            &options.nats_auth,
            Some(&subjects.inbox_prefix()),
        )
        .await?;
        let kv = js.kv(&subjects.state_bucket()).await?;
        let blobs = LatticeBlobs::open(&js, &options.lattice).await?;
        let directory = Arc::new(Directory::listen(js.client(), &subjects).await?);
        let max_payload = js.client().server_info().max_payload;
        let forwarder = Arc::new(NatsForward {
            client: js.client().clone(),
            subjects: subjects.clone(),
            max_payload,
            host_id: options.host_id.clone(),
            placements: Arc::default(),
            directory: directory.clone(),
            next: AtomicUsize::new(0),
        });
        host.set_remote_links(Arc::new(RemoteCalls(forwarder.clone())));
        host.set_tick_claims(Arc::new(ticks::LatticeTicks(kv.clone())));
        let member = Arc::new(Member {
            host,
            options,
            js,
            kv,
            blobs,
            subjects,
            directory,
            leadership: Arc::default(),
            started_at_ms: now_ms(),
            applied: tokio::sync::Mutex::default(),
            inventory: Mutex::default(),
            forwarder,
            control_url: Mutex::default(),
        });
        let controls = member
            .js
            .client()
            .subscribe(member.subjects.controls_of(&member.options.host_id))
            .await
            .map_err(|e| MemberError::Refused(format!("cannot take control requests: {e}")))?;
        tokio::spawn(answer_controls(Arc::downgrade(&member), controls));
        let mut hosts_seen = Vec::new();
        for kind in ["host_lost", "host_joined"] {
            let subject = member.subjects.event(kind);
            match member.js.client().subscribe(subject.clone()).await {
                Ok(subscriber) => hosts_seen.push(subscriber),
                Err(e) => tracing::warn!(%subject, "cannot follow the lattice's events: {e}"),
            }
        }
        tokio::spawn(record_host_events(
            Arc::downgrade(&member.host),
            futures::stream::select_all(hosts_seen),
        ));
        tokio::spawn(heartbeats(Arc::downgrade(&member)));
        tokio::spawn(placement_loop(Arc::downgrade(&member)));
        tracing::info!(
            lattice = %member.options.lattice,
            host = %member.options.host_id,
            nats = %weft_lattice::redact_credentials(&member.options.nats_url),
            auth = %member.options.nats_auth.describe(),
            "joined the lattice"
        );
        Ok(member)
    }

    /// The NATS connection, for the controller.
    pub fn jetstream(&self) -> &JetStream {
        &self.js
    }

    /// The lattice's state bucket.
    pub fn state(&self) -> &Kv {
        &self.kv
    }

    /// The lattice's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The hosts this member hears from.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.clone()
    }

    /// Where the controller reports leadership, for heartbeats and status.
    pub fn leadership(&self) -> Arc<Mutex<Leadership>> {
        self.leadership.clone()
    }

    /// Tells other hosts where this host's control API listens.
    pub fn set_control_url(&self, url: String) {
        *self.control_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url);
    }

    /// This host's id.
    pub fn id(&self) -> &str {
        &self.options.host_id
    }

    /// Deploys to the lattice: checked on this host exactly as a local deploy would be, its
    /// components copied to the lattice's blob store, then recorded as the app's desired
    /// version for the controller to place.
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, MemberError> {
        let (stored, compiled) = self.host.check(request).await?;
        let app = stored.locked().map_err(HostError::from)?;
        app.scaler()
            .map_err(|e| MemberError::Refused(format!("{}: {e}", stored.origin)))?;
        let key = format!("{APP_PREFIX}{}", stored.name);
        let current = self.kv.entry(&key).await?;
        let previous: Option<AppRecord> = current
            .as_ref()
            .and_then(|e| e.value.as_ref())
            .and_then(|v| serde_json::from_slice(v).ok());
        let record = AppRecord::from(&stored);
        let same = |old: &AppRecord| old.manifest == record.manifest && old.images == record.images;
        if let Some(old) = &previous {
            if old.version == record.version && same(old) {
                return Ok(outcome(&record, Some(old.version.clone()), 0, true));
            }
        }
        let version_key = version_key(&record.name, &record.version);
        if let Some(old) = self.kv.get(&version_key).await? {
            if serde_json::from_slice::<AppRecord>(&old).is_ok_and(|old| !same(&old)) {
                return Err(HostError::VersionConflict {
                    app: record.name.clone(),
                    version: record.version.clone(),
                }
                .into());
            }
        }
        for digest in record.images.values() {
            if !self.blobs.contains(digest).await? {
                let bytes = self.host.blobs().get(digest).map_err(HostError::from)?;
                self.blobs.put(digest, &bytes).await?;
            }
        }
        let body: Bytes = serde_json::to_vec(&record).unwrap_or_default().into();
        self.kv.put(&version_key, body.clone()).await?;
        // Two deploys of one app at once: the second finds the revision moved and says so,
        // instead of silently replacing what the first wrote.
        let expected = current.map_or(0, |e| e.revision);
        if self.kv.update(&key, body, expected).await?.is_err() {
            return Err(MemberError::Refused(format!(
                "app `{}` was changed by another deploy meanwhile; run the deploy again",
                record.name
            )));
        }
        tracing::info!(app = %record.name, version = %record.version, "deployed to the lattice");
        Ok(outcome(
            &record,
            previous.map(|p| p.version),
            compiled,
            false,
        ))
    }

    /// Removes an app from the lattice; every host stops running and routing it.
    pub async fn undeploy(&self, name: &str) -> Result<(), MemberError> {
        let key = format!("{APP_PREFIX}{name}");
        if self.kv.get(&key).await?.is_none() {
            return Err(HostError::NotFound(name.to_string()).into());
        }
        self.kv.delete(&key).await?;
        tracing::info!(app = %name, "undeployed from the lattice");
        Ok(())
    }
}

/// The host id kept in the state dir, so a restarted host rejoins as itself: `given` when set
/// (and remembered), else the one remembered, else a new one.
pub fn host_id(state_dir: &std::path::Path, given: Option<&str>) -> Result<String, MemberError> {
    let path = state_dir.join("host-id");
    let id = match given {
        Some(id) => id.to_string(),
        None => match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
            _ => format!("host-{}", hex::encode(rand::random::<[u8; 4]>())),
        },
    };
    if !weft_lattice::is_valid_token(&id) {
        return Err(MemberError::Name(id, "host id"));
    }
    std::fs::write(&path, &id)
        .map_err(|e| MemberError::Refused(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

/// A lattice app record as this host's store keeps an app (no caps: the whole app).
impl From<&AppRecord> for StoredApp {
    fn from(record: &AppRecord) -> Self {
        StoredApp {
            name: record.name.clone(),
            version: record.version.clone(),
            manifest: record.manifest.clone(),
            origin: record.origin.clone(),
            images: record.images.clone(),
            deployed_at: record.deployed_at,
            caps: BTreeMap::new(),
            app: record.app.clone(),
        }
    }
}

/// What the lattice stores of a version checked on this host.
impl From<&StoredApp> for AppRecord {
    fn from(stored: &StoredApp) -> Self {
        AppRecord {
            name: stored.name.clone(),
            version: stored.version.clone(),
            manifest: stored.manifest.clone(),
            origin: stored.origin.clone(),
            images: stored.images.clone(),
            deployed_at: stored.deployed_at,
            app: stored.app.clone(),
        }
    }
}

fn outcome(
    record: &AppRecord,
    previous: Option<String>,
    compiled: u32,
    unchanged: bool,
) -> DeployOutcome {
    DeployOutcome {
        app: record.name.clone(),
        version: record.version.clone(),
        previous,
        compiled,
        unchanged,
        relinked: 0,
        relink_failures: Vec::new(),
        warnings: record
            .app
            .as_ref()
            .map(|app| app.warnings.clone())
            .unwrap_or_default(),
    }
}

/// Records the leader's word that a host was lost or joined in the host's recent events.
async fn record_host_events(
    host: std::sync::Weak<Host>,
    mut events: impl futures::Stream<Item = async_nats::Message> + Unpin,
) {
    use futures::StreamExt as _;
    while let Some(message) = events.next().await {
        let Some(host) = host.upgrade() else { return };
        let kind = message.subject.rsplit('.').next().unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
        let who = body["host"].as_str().unwrap_or("?");
        let text = match kind {
            "host_lost" => format!("host {who} lost (no heartbeat)"),
            _ => format!("host {who} joined"),
        };
        host.events().record(kind, text);
    }
}
