//! The data of one request's `Store`: WASI, wasi:http, the resource table and the limiter.
//! Each capability reaches its own part through its view trait, never the whole.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::Either;
use http_body_util::BodyExt;
use tracing::Instrument as _;

use crate::budget::{Charge, MemoryBudget};
use crate::guest_log::GuestLog;
use crate::instance_body::{InstanceBody, InstanceFailed};
use crate::Workload;

use weft_capabilities::{CapabilityCtx, CapabilityCtxView, CapabilityView, Grants};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::clocks::WasiClocksCtx;
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Per-instance store data.
pub struct InstanceState {
    wasi: WasiCtx,
    /// The instance's stdout (it shares its line budget with stderr), to restart that budget.
    log: GuestLog,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(crate) hooks: OutgoingPolicy,
    capabilities: CapabilityCtx,
    pub(crate) limiter: MemoryLimiter,
    /// Instances of linked components in this store, by the import name each serves.
    pub(crate) peers: std::collections::HashMap<String, wasmtime::component::Instance>,
    /// When the call running in this store is cut off (see [`crate::Runtime::limited_store`]).
    pub(crate) deadline: std::time::Instant,
    /// The running time after which the current call is marked long-running.
    pub(crate) long_running_after: std::time::Duration,
    /// Raised once the current call has run long enough to leave the shared threads.
    pub(crate) long_running: crate::long_running::LongRunning,
    /// In a store whose event loop serves many calls at once (WASI 0.3): how long its guest has
    /// computed since the loop last had control; the guest is cut off past the timeout.
    pub(crate) streak: Option<Arc<crate::service::Streak>>,
    /// Keeps the epochs advancing while this store exists.
    _awake: crate::engine::Awake,
}

impl InstanceState {
    /// A sandboxed WASI context: no environment, no files, no sockets; guest stdout and stderr
    /// become host log lines tagged with the workload, so a panicking guest's message is kept.
    pub(crate) fn new(
        workload: &Arc<str>,
        max_memory: u64,
        budget: &Arc<MemoryBudget>,
        access: &Access,
        awake: crate::engine::Awake,
    ) -> Self {
        let (stdout, stderr) = GuestLog::pair(workload);
        let log = stdout.clone();
        let wasi = WasiCtx::builder().stdout(stdout).stderr(stderr).build();
        InstanceState {
            wasi,
            log,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutgoingPolicy {
                workload: workload.clone(),
                failed: None,
                allowed: access.outgoing.clone(),
                local: access.local.clone(),
                next_handler: access.next_handler.clone(),
                to_next_handler: false,
                serve_apart: false,
            },
            capabilities: CapabilityCtx::new(access.grants.clone()),
            peers: Default::default(),
            limiter: MemoryLimiter::new(max_memory, budget),
            deadline: std::time::Instant::now(),
            long_running_after: std::time::Duration::ZERO,
            long_running: Default::default(),
            streak: None,
            _awake: awake,
        }
    }

    /// Makes this the state of a new instance again, for one reset in place (`renew.rs`): no
    /// resources, no link names chosen, no memory charged, new random generators, a full log
    /// budget; its clocks are
    /// restarted when it takes a request ([`Self::restart_clocks`]). What holds no instance's
    /// doing is kept as it is: the sandbox's environment and streams, the grants, the outgoing
    /// policy.
    pub(crate) fn renew(&mut self) {
        // First, so a last line the guest left without its newline is logged as the old
        // instance's (its stream is one of the resources).
        self.table = ResourceTable::new();
        self.log.restart();
        *self.wasi.random() = WasiRandomCtx::default();
        self.capabilities.renew();
        self.hooks.to_next_handler = false;
        self.hooks.serve_apart = false;
        self.peers.clear();
        self.streak = None;
        self.limiter.charge.release_all();
    }

    /// Starts the monotonic clock from now, as a new instance's does: one that started when
    /// the instance was reset would tell the guest how long ago the request before it ended.
    pub(crate) fn restart_clocks(&mut self) {
        *self.wasi.clocks() = WasiClocksCtx::default();
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl CapabilityView for InstanceState {
    fn capabilities(&mut self) -> CapabilityCtxView<'_> {
        CapabilityCtxView {
            ctx: &mut self.capabilities,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What one component may reach: hosts over outgoing HTTP and the capabilities its links grant.
#[derive(Clone)]
pub struct Access {
    pub outgoing: Option<Arc<AllowedHosts>>,
    pub grants: Arc<Grants>,
    /// Components linked to this one, by the authority they answer on (`http://inner/`).
    pub local: Arc<BTreeMap<String, Arc<Workload>>>,
    /// Components serving this one's imports in-process, when it has such links.
    pub linked: Option<Arc<crate::links::Linked>>,
    /// For a WASI 0.3 middleware: the component its `wasi:http/handler` import passes
    /// requests to.
    pub next_handler: Option<Arc<Workload>>,
}

impl Access {
    /// Access to the capabilities in `grants` and nothing else.
    pub fn grants_only(grants: Arc<Grants>) -> Self {
        Access {
            outgoing: None,
            grants,
            local: Arc::default(),
            linked: None,
            next_handler: None,
        }
    }
}

/// The hosts a component may call, from its http-client link: `host`, `host:port`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// An allow-list from the manifest's entries (already lowercased).
    pub fn new(hosts: Vec<String>) -> Self {
        AllowedHosts(hosts)
    }

    /// Whether a request to `uri` may go out: an entry with a port must match host and port
    /// (the scheme's default port when the URI names none), one without a port the host alone.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        self.0.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => h == host && p.parse() == Ok(port),
                _ => *entry == host,
            }
        })
    }
}

/// Outgoing HTTP is a capability granted by a link to an http-client: requests to hosts on its
/// allow-list go out; anything else, and everything from a component with no such link, is
/// refused with `HTTP-request-denied`, an error the guest sees and can handle.
pub struct OutgoingPolicy {
    workload: Arc<str>,
    /// For a WASI 0.3 instance, whose store serves many requests and may fail with requests in
    /// flight: the record of its failure, which the bodies of the requests it sends watch. (A
    /// 0.2 guest's requests go from tasks its store aborts as it goes; the one that outlives
    /// it, an in-process target that answered before it read the body, is not watched.)
    pub(crate) failed: Option<InstanceFailed>,
    allowed: Option<Arc<AllowedHosts>>,
    local: Arc<BTreeMap<String, Arc<Workload>>>,
    next_handler: Option<Arc<Workload>>,
    /// Set by a middleware's `wasi:http/handler.handle` for the one request it sends through
    /// here (see `middleware.rs`): that request goes to `next_handler`, whatever its authority.
    pub(crate) to_next_handler: bool,
    /// Set for a WASI 0.3 store: its host calls run inside its own event loop, where another
    /// store's guest (an in-process target) cannot run, so a target is served on a task of its
    /// own.
    pub(crate) serve_apart: bool,
}

impl OutgoingPolicy {
    /// The linked component a request to `authority` goes to, if any: the next handler for the
    /// one request a middleware passes on, else the component linked under that authority.
    pub(crate) fn local_target(&mut self, authority: Option<&str>) -> Option<Arc<Workload>> {
        std::mem::take(&mut self.to_next_handler)
            .then(|| self.next_handler.clone())
            .flatten()
            .or_else(|| self.local.get(authority?).cloned())
    }
}

/// Writes a WASI 0.2 guest may have in flight on an outgoing body before it waits for the
/// other side to read. A small answer is usually written in a few pieces (`writeln!` makes one
/// per argument): with wasi:http's default of one, the guest stopped at its third piece and
/// waited for the connection to take the first, so every request paid a second turn of its
/// instance and a timer. With sixteen, such an answer is written and the instance is finished
/// in one turn (bench/RESULTS.md, thirteenth stop).
const BODY_BUFFER_CHUNKS: usize = 16;
/// The largest single write to an outgoing body (what `check-write` offers). Together with
/// [`BODY_BUFFER_CHUNKS`] it bounds what one answer holds in the host for a slow reader: 17
/// writes of 64 KiB, about 1 MiB, where wasi:http's defaults (two of 1 MiB) allowed 2 MiB.
const BODY_CHUNK_SIZE: usize = 64 * 1024;

type SendResult = Result<
    (
        http::Response<HyperOutgoingBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        // Called from the guest's own call, so the current span is its invocation; the request
        // itself runs on a task of its own and carries the span there.
        let span = weft_telemetry::http_client_span(request.method(), request.uri());
        weft_telemetry::inject_http(&span, request.headers_mut());
        // A linked component answers in-process: the request never touches the network, and the
        // link itself is the grant, so the allow-list does not apply.
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        if let Some(failed) = &self.failed {
            let (workload, failed) = (self.workload.clone(), failed.clone());
            request = request.map(|body| {
                InstanceBody::new(body, failed, workload, "request body").boxed_unsync()
            });
        }
        if let Some(target) = self.local_target(authority.as_deref()) {
            let served = async move { target.serve(request).await }.instrument(span);
            let serving = if self.serve_apart {
                let task = tokio::spawn(served);
                Either::Right(async move {
                    task.await.map_err(|e| {
                        wasmtime_wasi_http::Error::InternalError(Some(format!(
                            "the linked component's task failed: {e}"
                        )))
                    })
                })
            } else {
                Either::Left(async move { Ok(served.await) })
            };
            return Box::new(async move {
                let response = serving.await?;
                Ok((
                    response,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let allowed = self
            .allowed
            .as_ref()
            .is_some_and(|hosts| hosts.allows(request.uri()));
        if !allowed {
            tracing::warn!(
                uri = %request.uri(),
                "outgoing HTTP refused: the host is not in allowed_hosts of the component's http-client link"
            );
            weft_telemetry::record_error(&span, &"refused: the host is not in allowed_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(
            async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            }
            .instrument(span),
        )
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_SIZE
    }
}

/// The error a guest's store fails with when it grows memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (the guest asked for {desired} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub desired: u64,
}

/// Caps each linear memory of one store at the workload's limit, and charges what they hold to
/// the host's memory budget.
pub(crate) struct MemoryLimiter {
    max_memory: u64,
    charge: Charge,
}

impl MemoryLimiter {
    fn new(max_memory: u64, budget: &Arc<MemoryBudget>) -> Self {
        MemoryLimiter {
            max_memory,
            charge: Charge::new(budget.clone()),
        }
    }

    /// Charges memories that already hold `bytes`: those of an instance reset in place, whose
    /// new state starts with nothing charged.
    pub(crate) fn charge_existing(&mut self, bytes: usize) -> Result<(), crate::BudgetSpent> {
        self.charge.grow(0, bytes)
    }
}

/// Tables beyond this many elements are refused: far above what real guests use, far below what
/// would let one guest exhaust the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.max_memory,
                desired: desired as u64,
            }));
        }
        self.charge.grow(current, desired)?;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::AllowedHosts;

    fn allows(entries: &[&str], uri: &str) -> bool {
        AllowedHosts::new(entries.iter().map(|e| e.to_string()).collect())
            .allows(&uri.parse().unwrap())
    }

    #[test]
    fn allow_list_matches_host_and_port() {
        assert!(allows(&["127.0.0.1:8081"], "http://127.0.0.1:8081/x"));
        assert!(!allows(&["127.0.0.1:8081"], "http://127.0.0.1:8082/x"));
        assert!(allows(&["api.example.com"], "https://API.example.com/x"));
        assert!(allows(
            &["api.example.com:443"],
            "https://api.example.com/x"
        ));
        assert!(!allows(
            &["api.example.com:443"],
            "http://api.example.com/x"
        ));
        assert!(!allows(&["example.com"], "http://api.example.com/"));
        assert!(allows(&["*"], "http://anything:1/"));
        assert!(!allows(&[], "http://127.0.0.1/"));
    }
}
