//! A host's membership of a lattice: it says it is alive (with what it runs), runs the apps the
//! controller placed on it, routes requests for the others to hosts that run them, and serves
//! the requests other hosts forward to it. Deploys through this host's control API go to the
//! lattice's state, not to this host alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use weft_lattice::{
    desired_apps, frame, now_ms, placements, unframe, version_key, AppRecord, CallHead, CallReply,
    Directory, Heartbeat, InventoryApp, InventoryComponent, JetStream, Kv, LatticeBlobs,
    LatticePhase, Leadership, Placements, RequestHead, ResponseHead, Subjects, APP_PREFIX,
    HEARTBEAT_INTERVAL, LEASE_KEY, VERSION_PREFIX,
};
use weft_runtime::{text_response, WorkloadBody};

use crate::api::{
    AppStatus, DeployOutcome, DeployRequest, HostStatus, LatticeHost, LatticeInfo, Phase,
};
use crate::{Forward, Host, HostError, IngressRequest, StoredApp};

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

/// The task taking an app's forwarded requests; dropping it stops them.
struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
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
        let js = JetStream::connect(&options.nats_url).await?;
        let subjects = Subjects::new(&options.lattice);
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
        tokio::spawn(heartbeats(Arc::downgrade(&member)));
        tokio::spawn(placement_loop(Arc::downgrade(&member)));
        tracing::info!(
            lattice = %member.options.lattice,
            host = %member.options.host_id,
            nats = %member.options.nats_url,
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
        let app =
            weft_manifest::parse(&stored.manifest, &stored.origin).map_err(HostError::from)?;
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

    /// The desired apps and the controller's placements.
    pub async fn state_of_apps(&self) -> Result<(Vec<AppRecord>, Placements), MemberError> {
        let apps = desired_apps(&self.kv).await?;
        let (_, placements) = placements(&self.kv).await?;
        Ok((apps, placements))
    }

    /// What is true of every app of the lattice.
    pub async fn app_statuses(&self) -> Result<Vec<AppStatus>, MemberError> {
        let (records, placements) = self.state_of_apps().await?;
        let mut out = Vec::with_capacity(records.len());
        for record in &records {
            out.push(self.status_of(record, &placements).await?);
        }
        Ok(out)
    }

    /// What is true of one app of the lattice: its phase and reason, where it runs, what
    /// happened to it lately.
    pub async fn app_status(&self, name: &str) -> Result<AppStatus, MemberError> {
        let Some(value) = self.kv.get(&format!("{APP_PREFIX}{name}")).await? else {
            return Err(HostError::NotFound(name.to_string()).into());
        };
        let record: AppRecord = serde_json::from_slice(&value)
            .map_err(|e| MemberError::Refused(format!("unreadable record of `{name}`: {e}")))?;
        let (_, placements) = placements(&self.kv).await?;
        self.status_of(&record, &placements).await
    }

    async fn status_of(
        &self,
        record: &AppRecord,
        placements: &Placements,
    ) -> Result<AppStatus, MemberError> {
        let placement = placements.apps.get(&record.name);
        let (phase, reason) = match placement {
            Some(p) if p.version == record.version => (
                match p.phase {
                    LatticePhase::Deploying => Phase::Deploying,
                    LatticePhase::Deployed => Phase::Deployed,
                    LatticePhase::Failed => Phase::Failed,
                    LatticePhase::Waiting => Phase::Waiting,
                },
                p.reason.clone(),
            ),
            _ => (
                Phase::Deploying,
                Some("waiting for the controller to place this version".into()),
            ),
        };
        let mut versions = Vec::new();
        let prefix = format!("{VERSION_PREFIX}{}.", record.name);
        for key in self.kv.keys(&prefix).await? {
            if let Some(version) = key
                .strip_prefix(&prefix)
                .and_then(|v| hex::decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
            {
                versions.push(version);
            }
        }
        let running_here = self
            .host
            .status(&record.name)
            .ok()
            .filter(|s| s.version == record.version);
        let components = match running_here {
            Some(s) => s.components,
            None => crate::planned_components(&self.host, &StoredApp::from(record)),
        };
        Ok(AppStatus {
            name: record.name.clone(),
            version: record.version.clone(),
            phase,
            reason,
            origin: record.origin.clone(),
            deployed_at: record.deployed_at,
            components,
            versions,
            dependents: BTreeMap::new(),
            uses: BTreeMap::new(),
            hosts: placement.map(|p| p.hosts.clone()).unwrap_or_default(),
            events: placement.map(|p| p.events.clone()).unwrap_or_default(),
        })
    }

    /// This host's status, with its place in the lattice.
    pub fn host_status(&self) -> HostStatus {
        let mut status = self.host.host_status();
        status.lattice = Some(LatticeInfo {
            name: self.options.lattice.clone(),
            host: self.options.host_id.clone(),
            nats: self.options.nats_url.clone(),
            leader: self
                .leadership
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .leader
                .clone(),
        });
        status
    }

    /// Every host heard from, with what it runs.
    pub fn lattice_hosts(&self) -> Vec<LatticeHost> {
        self.directory
            .hosts()
            .into_iter()
            .map(|h| lattice_host(h.heartbeat, h.alive, h.silent_for))
            .collect()
    }

    /// One host, asked over NATS for what it runs right now; the last heartbeat heard from it
    /// when it does not answer.
    pub async fn lattice_host(&self, id: &str) -> Result<LatticeHost, MemberError> {
        let asked = self
            .js
            .client()
            .request(self.subjects.control(id, "inventory"), Bytes::new())
            .await;
        if let Ok(reply) = asked {
            if let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&reply.payload) {
                return Ok(lattice_host(heartbeat, true, Duration::ZERO));
            }
        }
        self.directory
            .hosts()
            .into_iter()
            .find(|h| h.heartbeat.host == id)
            .map(|h| lattice_host(h.heartbeat, false, h.silent_for))
            .ok_or_else(|| {
                MemberError::Refused(format!(
                    "no host `{id}` in lattice `{}` (see `weft get hosts`)",
                    self.options.lattice
                ))
            })
    }

    /// Brings this host in line with the placements: runs what is placed here, routes the rest
    /// elsewhere, forgets what was undeployed.
    async fn apply(self: &Arc<Self>) -> Result<(), MemberError> {
        let records = desired_apps(&self.kv).await?;
        let (_, placements) = placements(&self.kv).await?;
        *self
            .forwarder
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = placements.clone();
        let mut applied = self.applied.lock().await;
        let wanted: BTreeSet<String> = records.iter().map(|r| r.name.clone()).collect();
        for record in &records {
            let share = placements
                .apps
                .get(&record.name)
                .and_then(|p| p.hosts.get(&self.options.host_id).copied());
            match share {
                Some(share) => self.run_here(&mut applied, record, share).await,
                None => self.run_elsewhere(&mut applied, record).await,
            }
        }
        let local = self.host.app_names();
        let stale: Vec<String> = applied
            .keys()
            .chain(local.iter())
            .filter(|name| !wanted.contains(*name))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in stale {
            applied.remove(&name);
            self.stop_here(&name).await;
            self.host.forget_routes(&name);
            tracing::info!(app = %name, "no longer in the lattice");
        }
        let inventory = self.inventory_of(&applied);
        *self.inventory.lock().unwrap_or_else(|e| e.into_inner()) = inventory;
        Ok(())
    }

    async fn stop_here(&self, name: &str) {
        match self.host.undeploy(name).await {
            Ok(()) | Err(HostError::NotFound(_)) => {}
            Err(e) => tracing::warn!(app = %name, "cannot stop here: {e}"),
        }
    }

    async fn run_here(
        self: &Arc<Self>,
        applied: &mut BTreeMap<String, Applied>,
        record: &AppRecord,
        share: u32,
    ) {
        if let Some(Applied::Here {
            version,
            share: s,
            failed,
            ..
        }) = applied.get(&record.name)
        {
            // A failed deploy is tried again now and then: what failed may have been passing
            // (NATS unreachable while fetching the component), and a lasting failure costs one
            // attempt per interval.
            let retry = failed
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() >= RETRY_FAILED);
            if *version == record.version && *s == share && !retry {
                return;
            }
        }
        let result = self.deploy_here(record, caps_for(record, share)).await;
        let serving = match applied.remove(&record.name) {
            Some(Applied::Here {
                serving: Some(task),
                ..
            }) if !task.0.is_finished() => Some(task),
            _ => None,
        };
        let (failed, serving) = match result {
            Ok(()) => {
                let serving = match serving {
                    Some(task) => Some(task),
                    None => self.serve_other_hosts(&record.name).await,
                };
                tracing::info!(app = %record.name, version = %record.version, share, "running here");
                (None, serving)
            }
            Err(e) => {
                tracing::error!(app = %record.name, version = %record.version, "cannot run here: {e}");
                (Some((e.to_string(), std::time::Instant::now())), serving)
            }
        };
        applied.insert(
            record.name.clone(),
            Applied::Here {
                version: record.version.clone(),
                share,
                failed,
                serving,
            },
        );
    }

    async fn deploy_here(
        &self,
        record: &AppRecord,
        caps: BTreeMap<String, u32>,
    ) -> Result<(), MemberError> {
        for digest in record.images.values() {
            if self
                .host
                .blobs()
                .contains(digest)
                .map_err(HostError::from)?
            {
                continue;
            }
            let bytes = self.blobs.get(digest).await?.ok_or_else(|| {
                MemberError::Refused(format!(
                    "component {digest} is not in the lattice's blob store; deploy the app again"
                ))
            })?;
            let host = self.host.clone();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || host.blobs().put(&digest, &bytes))
                .await
                .map_err(|e| MemberError::Refused(e.to_string()))?
                .map_err(HostError::from)?;
        }
        self.host
            .deploy(DeployRequest {
                manifest: record.manifest.clone(),
                origin: record.origin.clone(),
                images: record.images.clone(),
                caps,
            })
            .await?;
        Ok(())
    }

    async fn run_elsewhere(&self, applied: &mut BTreeMap<String, Applied>, record: &AppRecord) {
        match applied.get(&record.name) {
            Some(Applied::Elsewhere { version }) if *version == record.version => return,
            Some(Applied::Here { .. }) | None => self.stop_here(&record.name).await,
            Some(Applied::Elsewhere { .. }) => {}
        }
        let stored = StoredApp::from(record);
        let via: Arc<dyn Forward> = self.forwarder.clone();
        match self.host.route_elsewhere(&stored, via) {
            Ok(()) => {
                applied.insert(
                    record.name.clone(),
                    Applied::Elsewhere {
                        version: record.version.clone(),
                    },
                );
            }
            Err(e) => {
                applied.remove(&record.name);
                tracing::warn!(app = %record.name, "cannot route it to other hosts: {e}");
            }
        }
    }

    /// Takes this host's share of the app's forwarded requests.
    async fn serve_other_hosts(self: &Arc<Self>, app: &str) -> Option<Serving> {
        let subject = self.subjects.http(app, &self.options.host_id);
        let mut subscriber = match self.js.client().subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%subject, "cannot take forwarded requests: {e}");
                return None;
            }
        };
        let calls_subject = self.subjects.calls_of(app, &self.options.host_id);
        let mut calls = match self.js.client().subscribe(calls_subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(subject = %calls_subject, "cannot take calls: {e}");
                return None;
            }
        };
        let member = Arc::downgrade(self);
        let app: Arc<str> = app.into();
        Some(Serving(tokio::spawn(async move {
            loop {
                let (message, call) = tokio::select! {
                    Some(m) = subscriber.next() => (m, false),
                    Some(m) = calls.next() => (m, true),
                    else => return,
                };
                let Some(member) = member.upgrade() else {
                    return;
                };
                let app = app.clone();
                tokio::spawn(async move {
                    if call {
                        member.answer_call(&app, message).await
                    } else {
                        member.answer(&app, message).await
                    }
                });
            }
        })))
    }

    /// Serves one forwarded request on this host and replies with the whole response.
    async fn answer(&self, app: &str, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let response = match unframe::<RequestHead>(&message.payload) {
            Ok((head, body)) => self.serve_here(app, head, body).await,
            Err(e) => text_response(
                http::StatusCode::BAD_REQUEST,
                format!("malformed forwarded request: {e}"),
            ),
        };
        let (parts, body) = response.into_parts();
        let limit = self.forwarder.max_payload.saturating_sub(HEAD_ROOM);
        let framed = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(body) => frame(
                &ResponseHead {
                    status: parts.status.as_u16(),
                    headers: end_to_end(&parts.headers),
                },
                &body.to_bytes(),
            ),
            Err(e) => {
                let status = http::StatusCode::BAD_GATEWAY;
                let message = format!(
                    "app `{app}` on host {}: the response could not be carried back: {e} \
                     (at most {limit} bytes cross hosts)\n",
                    self.options.host_id
                );
                frame(
                    &ResponseHead {
                        status: status.as_u16(),
                        headers: vec![("content-type".into(), b"text/plain".to_vec())],
                    },
                    message.as_bytes(),
                )
            }
        };
        if let Err(e) = self.js.client().publish(reply, framed).await {
            tracing::warn!(%app, "cannot reply to a forwarded request: {e}");
        }
    }

    /// Runs one call to an export of a component of `app` here and replies with its results.
    async fn answer_call(&self, app: &str, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        // weft.<lattice>.rpc.call.<app>.<component>.<host>
        let component = message.subject.split('.').nth(5).unwrap_or_default();
        let result = match unframe::<CallHead>(&message.payload) {
            Ok((head, params)) => match self.host.export_server(app, component) {
                Some(server) => server.call(&head.interface, &head.function, &params).await,
                None => Err(format!(
                    "component `{component}` of app `{app}` exports nothing callable here"
                )),
            },
            Err(e) => Err(format!("malformed call: {e}")),
        };
        let framed = match result {
            Ok(results) => frame(&CallReply { error: None }, &results),
            Err(error) => frame(&CallReply { error: Some(error) }, &[]),
        };
        if let Err(e) = self.js.client().publish(reply, framed).await {
            tracing::warn!(%app, "cannot reply to a call: {e}");
        }
    }

    async fn serve_here(
        &self,
        app: &str,
        head: RequestHead,
        body: Bytes,
    ) -> http::Response<WorkloadBody> {
        let mut builder = http::Request::builder()
            .method(head.method.as_str())
            .uri(head.uri.as_str());
        for (name, value) in &head.headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        let body = Full::new(body).map_err(|never| -> weft_runtime::HttpError { match never {} });
        let req = match builder.body(body) {
            Ok(req) => req,
            Err(e) => {
                return text_response(
                    http::StatusCode::BAD_REQUEST,
                    format!("malformed forwarded request: {e}"),
                )
            }
        };
        let host = crate::ingress::request_host(req.headers());
        match self
            .host
            .local_workload(app, host.as_deref(), req.uri().path())
        {
            Some(workload) => workload.serve(req).await,
            None => text_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "app `{app}` no longer runs on host {}; try again",
                    self.options.host_id
                ),
            ),
        }
    }

    fn inventory_of(&self, applied: &BTreeMap<String, Applied>) -> Vec<InventoryApp> {
        let mut inventory = Vec::new();
        for (name, state) in applied {
            let Applied::Here {
                version, failed, ..
            } = state
            else {
                continue;
            };
            let status = self.host.status(name).ok();
            let running = status.as_ref().filter(|s| s.version == *version);
            let (phase, reason) = match (failed, running) {
                (Some((reason, _)), _) => ("failed", Some(reason.clone())),
                (None, Some(s)) if s.phase == Phase::Deployed => ("deployed", None),
                (None, Some(s)) => ("failed", s.reason.clone()),
                (None, None) => ("deploying", None),
            };
            inventory.push(InventoryApp {
                app: name.clone(),
                version: version.clone(),
                phase: phase.into(),
                reason,
                components: status
                    .map(|s| {
                        s.components
                            .into_iter()
                            .map(|c| InventoryComponent {
                                name: c.name,
                                max_instances: c.max_instances,
                                active_instances: c.active_instances,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        inventory
    }

    fn heartbeat(&self) -> Heartbeat {
        let leading = self
            .leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leading;
        let mut apps = self
            .inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Active instance counts move between placement rounds; report them as they are now.
        for app in &mut apps {
            let active = self.host.active_instances(&app.app);
            for component in &mut app.components {
                component.active_instances = active.get(&component.name).copied().unwrap_or(0);
            }
        }
        Heartbeat {
            host: self.options.host_id.clone(),
            labels: self.options.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            sent_at_ms: now_ms(),
            http: self.host.config.http_address.map(|a| format!("http://{a}")),
            control: self
                .control_url
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            leader: leading,
            apps,
        }
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
    }
}

/// Each component's cap on a host given `share` of the app's instances: its manifest cap in
/// the same proportion, at least one.
fn caps_for(record: &AppRecord, share: u32) -> BTreeMap<String, u32> {
    let Ok(app) = weft_manifest::parse(&record.manifest, &record.origin) else {
        return BTreeMap::new();
    };
    let total = app.scaler().map(|s| s.instances).unwrap_or(share).max(1);
    app.components
        .iter()
        .filter(|c| c.shared.is_none())
        .map(|c| {
            let cap =
                (u64::from(c.limits.max_instances) * u64::from(share)).div_ceil(u64::from(total));
            (c.name.clone(), cap.clamp(1, u64::from(u32::MAX)) as u32)
        })
        .collect()
}

fn lattice_host(heartbeat: Heartbeat, alive: bool, silent_for: Duration) -> LatticeHost {
    LatticeHost {
        id: heartbeat.host,
        labels: heartbeat.labels,
        alive,
        silent_ms: silent_for.as_millis() as u64,
        leader: heartbeat.leader,
        version: heartbeat.version,
        started_at_ms: heartbeat.started_at_ms,
        http: heartbeat.http,
        control: heartbeat.control,
        apps: heartbeat.apps,
    }
}

/// Answers control requests to this host (`inventory`) for as long as the member lives.
async fn answer_controls(member: Weak<Member>, mut requests: async_nats::Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(member) = member.upgrade() else {
            return;
        };
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let op = request.subject.rsplit('.').next().unwrap_or_default();
        let body = match op {
            "inventory" => serde_json::to_vec(&member.heartbeat()).unwrap_or_default(),
            other => serde_json::to_vec(&serde_json::json!({
                "error": format!("unknown control request `{other}`")
            }))
            .unwrap_or_default(),
        };
        if let Err(e) = member.js.client().publish(reply, body.into()).await {
            tracing::debug!("cannot answer a control request: {e}");
        }
    }
}

/// Says this host is alive once a heartbeat interval, for as long as the member lives.
async fn heartbeats(member: Weak<Member>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    loop {
        tick.tick().await;
        let Some(member) = member.upgrade() else {
            return;
        };
        let heartbeat = member.heartbeat();
        let body = serde_json::to_vec(&heartbeat).unwrap_or_default();
        if let Err(e) = member
            .js
            .client()
            .publish(member.subjects.heartbeat(), body.into())
            .await
        {
            tracing::warn!("cannot send a heartbeat: {e}");
        }
    }
}

/// Applies placements whenever the state bucket changes, and every few seconds regardless.
async fn placement_loop(member: Weak<Member>) {
    let watch = match member.upgrade() {
        Some(m) => m.kv.watch().await,
        None => return,
    };
    let mut watch = match watch {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the lattice state, polling instead: {e}");
            None
        }
    };
    loop {
        if let Some(member) = member.upgrade() {
            if let Err(e) = member.apply().await {
                tracing::warn!("cannot apply the lattice's placements: {e}");
            }
        } else {
            return;
        }
        let changed = async {
            match &mut watch {
                // The lease is renewed twice a second and changes nothing to apply.
                Some(w) => {
                    while let Some(m) = w.next().await {
                        if !m.subject.as_str().ends_with(&format!(".{LEASE_KEY}")) {
                            break;
                        }
                    }
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = changed => {
                // A deploy writes several keys; let them land before reading.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// The headers that describe the message itself, not one connection's framing of it (the
/// body crosses hosts whole, so its framing is the next connection's business).
fn end_to_end(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Forwards requests over NATS request/reply to a host running the app, picked in turn among
/// the live hosts the app is placed on.
struct NatsForward {
    client: async_nats::Client,
    subjects: Subjects,
    max_payload: usize,
    host_id: String,
    /// The placements as last applied.
    placements: Arc<Mutex<Placements>>,
    directory: Arc<Directory>,
    next: AtomicUsize,
}

/// Why a forwarded request got no reply from one host.
enum Missed {
    /// Nobody took it: it never ran, so another host may take it.
    NotDelivered,
    /// It may have run; the response says what is known.
    Failed(http::Response<WorkloadBody>),
}

impl NatsForward {
    /// The live hosts `app` is placed on, this host included, starting with the next in turn.
    fn candidates_with_self(&self, app: &str) -> Vec<String> {
        self.pick(app, true)
    }

    /// The live hosts other than this one `app` is placed on, starting with the next in turn.
    fn candidates(&self, app: &str) -> Vec<String> {
        self.pick(app, false)
    }

    fn pick(&self, app: &str, with_self: bool) -> Vec<String> {
        let alive: BTreeSet<String> = self.directory.alive().into_iter().map(|h| h.host).collect();
        let mut hosts: Vec<String> = self
            .placements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apps
            .get(app)
            .map(|p| {
                p.hosts
                    .keys()
                    .filter(|h| alive.contains(*h) && (with_self || **h != self.host_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if !hosts.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % hosts.len();
            hosts.rotate_left(start);
        }
        hosts
    }

    /// Sends the request to `host` and waits for its reply, giving up as soon as the host
    /// stops sending heartbeats.
    async fn send_to(
        &self,
        app: &str,
        host: &str,
        subject: String,
        payload: Bytes,
    ) -> Result<Bytes, Missed> {
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(FORWARD_TIMEOUT));
        let reply = self.client.send_request(subject, request);
        tokio::pin!(reply);
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        let result = loop {
            tokio::select! {
                result = &mut reply => break result,
                _ = check.tick() => {
                    if !self.directory.alive().iter().any(|h| h.host == host) {
                        return Err(Missed::Failed(text_response(
                            http::StatusCode::BAD_GATEWAY,
                            format!(
                                "host {host} running app `{app}` was lost while serving this \
                                 request; it may or may not have taken effect"
                            ),
                        )));
                    }
                }
            }
        };
        match result {
            Ok(reply) => Ok(reply.payload),
            Err(e) => {
                use async_nats::RequestErrorKind as Kind;
                Err(match e.kind() {
                    Kind::NoResponders => Missed::NotDelivered,
                    Kind::TimedOut => Missed::Failed(text_response(
                        http::StatusCode::GATEWAY_TIMEOUT,
                        format!("host {host} running app `{app}` did not answer in time"),
                    )),
                    _ => Missed::Failed(text_response(
                        http::StatusCode::BAD_GATEWAY,
                        format!("cannot reach host {host} running app `{app}`: {e}"),
                    )),
                })
            }
        }
    }
}

impl Forward for NatsForward {
    fn forward(
        self: Arc<Self>,
        app: &str,
        req: IngressRequest,
    ) -> BoxFuture<'static, http::Response<WorkloadBody>> {
        let this = self.clone();
        let limit = self.max_payload.saturating_sub(HEAD_ROOM);
        let app = app.to_string();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return text_response(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "app `{app}` runs on another host and this request cannot be carried \
                             there: {e} (at most {limit} bytes cross hosts)"
                        ),
                    )
                }
            };
            let head = RequestHead {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: end_to_end(&parts.headers),
            };
            let payload = frame(&head, &body);
            let mut reply = None;
            // A host that took no delivery never ran the request: the next one may.
            for host in this.candidates(&app) {
                let subject = this.subjects.http(&app, &host);
                match this.send_to(&app, &host, subject, payload.clone()).await {
                    Ok(payload) => {
                        reply = Some(payload);
                        break;
                    }
                    Err(Missed::NotDelivered) => continue,
                    Err(Missed::Failed(response)) => return response,
                }
            }
            let Some(reply) = reply else {
                return text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("no host runs app `{app}` right now; `weft app status {app}` says why"),
                );
            };
            match unframe::<ResponseHead>(&reply) {
                Ok((head, body)) => {
                    let mut response = http::Response::new(
                        Full::new(body)
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    );
                    *response.status_mut() = http::StatusCode::from_u16(head.status)
                        .unwrap_or(http::StatusCode::BAD_GATEWAY);
                    for (name, value) in head.headers {
                        if let (Ok(name), Ok(value)) = (
                            http::HeaderName::from_bytes(name.as_bytes()),
                            http::HeaderValue::from_bytes(&value),
                        ) {
                            response.headers_mut().append(name, value);
                        }
                    }
                    response
                }
                Err(e) => text_response(
                    http::StatusCode::BAD_GATEWAY,
                    format!("malformed reply from the host running app `{app}`: {e}"),
                ),
            }
        })
    }
}

/// Calls a component's exports on whichever live host runs its app.
struct NatsCall {
    forward: Arc<NatsForward>,
    app: String,
    component: String,
}

impl weft_runtime::RemoteCall for NatsCall {
    fn call(
        &self,
        interface: &str,
        function: &str,
        params: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let forward = self.forward.clone();
        let (app, component) = (self.app.clone(), self.component.clone());
        let head = CallHead {
            interface: interface.to_string(),
            function: function.to_string(),
        };
        Box::pin(async move {
            let payload = frame(&head, &params);
            let limit = forward.max_payload.saturating_sub(HEAD_ROOM);
            if payload.len() > limit {
                return Err(format!(
                    "the arguments take {} bytes; at most {limit} cross hosts",
                    payload.len()
                ));
            }
            // Every candidate of the app itself, this host included: the call goes to the app.
            for host in forward.candidates_with_self(&app) {
                let subject = forward.subjects.call(&app, &component, &host);
                match forward.send_to(&app, &host, subject, payload.clone()).await {
                    Ok(reply) => {
                        let (head, body) = unframe::<CallReply>(&reply)?;
                        return match head.error {
                            None => Ok(body.to_vec()),
                            Some(error) => Err(format!("host {host}: {error}")),
                        };
                    }
                    Err(Missed::NotDelivered) => continue,
                    Err(Missed::Failed(response)) => {
                        return Err(format!(
                            "host {host}: the call failed ({})",
                            response.status()
                        ))
                    }
                }
            }
            Err(format!(
                "no host runs app `{app}` right now; `weft app status {app}` says why"
            ))
        })
    }
}

/// This host's way to other apps' components: calls through the forwarder's choice of host.
struct RemoteCalls(Arc<NatsForward>);

impl crate::RemoteLinks for RemoteCalls {
    fn caller(&self, app: &str, component: &str) -> Arc<dyn weft_runtime::RemoteCall> {
        Arc::new(NatsCall {
            forward: self.0.clone(),
            app: app.to_string(),
            component: component.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instances: u32, other_cap: u32) -> AppRecord {
        AppRecord {
            name: "web".into(),
            version: "v1".into(),
            manifest: format!(
                r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {{ name: web }}
spec:
  components:
    - name: front
      type: component
      properties: {{ image: ./front.wasm }}
      traits:
        - type: spreadscaler
          properties: {{ instances: {instances} }}
    - name: back
      type: component
      properties: {{ image: ./back.wasm }}
      traits:
        - type: spreadscaler
          properties: {{ instances: {other_cap} }}
"#
            ),
            origin: "web.yaml".into(),
            images: BTreeMap::new(),
            deployed_at: 0,
        }
    }

    #[test]
    fn a_host_s_share_caps_each_component_in_proportion_at_least_one() {
        // The app's instances are the largest its components ask for: 6 here.
        let caps = caps_for(&record(6, 3), 2);
        assert_eq!(caps["front"], 2);
        assert_eq!(caps["back"], 1);
        let caps = caps_for(&record(6, 3), 6);
        assert_eq!((caps["front"], caps["back"]), (6, 3));
        let caps = caps_for(&record(100, 1), 1);
        assert_eq!((caps["front"], caps["back"]), (1, 1));
    }

    #[test]
    fn only_end_to_end_headers_cross_hosts() {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        headers.insert("connection", "keep-alive".parse().unwrap());
        headers.append("x-tag", "a".parse().unwrap());
        headers.append("x-tag", "b".parse().unwrap());
        let crossed = end_to_end(&headers);
        let names: Vec<&str> = crossed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-tag", "x-tag"]);
    }
}
