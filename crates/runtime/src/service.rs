//! WASI 0.3 HTTP handlers (`wasi:http/handler@0.3.0`): one instance serves many requests at
//! once, up to the component's concurrency; more instances start when every live one is full
//! (or, for CPU-bound bursts, up to one per core), up to its instance limit; idle ones are
//! reclaimed. wasmtime-wasi-http's `ProxyHandler` runs each instance's event loop; this module
//! decides when instances start, how long requests and idle instances live, and what a request
//! is told when its instance fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::WasiHttpView;

use crate::state::{Access, InstanceState};
use crate::workload::{classify, Failure, WorkloadBody};
use crate::Runtime;

/// How often an instance's expiry is looked at again, whatever its deadline.
const RECHECK: Duration = Duration::from_secs(1);
/// Live WASI 0.3 instances on a host past which idle ones are not kept: half of what the
/// instance allocator holds, so thousands of apps that each served a request do not keep it
/// full.
const CROWDED: usize = 1000;

/// Past a request's timeout, how long its instance may still take to hand back control before
/// it is dropped with every request on it.
const EXPIRY_GRACE: Duration = Duration::from_millis(100);

/// The instances of one WASI 0.3 workload.
pub(crate) struct Service {
    handler: ProxyHandler<Pool>,
}

/// What every instance of the workload is made from, and how many run.
pub(crate) struct Pool {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    pre: ServicePre<InstanceState>,
    limits: weft_manifest::Limits,
    access: Access,
    /// Requests one instance serves at once.
    concurrency: usize,
    /// Requests one instance serves in its life before it is replaced.
    lifetime_requests: usize,
    /// How long an instance with nothing to do is kept.
    idle: Duration,
    /// The workload's instance limit, shared with its count of active instances.
    permits: Arc<Semaphore>,
    load: Arc<Load>,
    meter: Arc<weft_metrics::WorkloadMeter>,
}

/// Live instances and the requests in flight on them.
struct Load {
    instances: AtomicUsize,
    in_flight: AtomicUsize,
    /// Why an instance last failed, and when: what its requests in flight are told.
    last_failure: std::sync::Mutex<Option<(Instant, String)>>,
    /// Live WASI 0.3 instances of every workload on the host.
    on_host: Arc<AtomicUsize>,
    /// Set once the workload is replaced or removed: its idle instances go at once.
    retired: std::sync::atomic::AtomicBool,
}

impl Load {
    fn new(on_host: Arc<AtomicUsize>) -> Self {
        Load {
            instances: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_failure: Default::default(),
            on_host,
            retired: Default::default(),
        }
    }

    /// How long an idle instance is kept: `idle`, or not at all on a crowded host.
    fn idle_allowance(&self, idle: Duration) -> Duration {
        if self.on_host.load(Ordering::Relaxed) >= CROWDED {
            Duration::ZERO
        } else {
            idle
        }
    }

    /// Why an instance of this workload failed within the last second, if one did.
    fn recent_failure(&self) -> Option<String> {
        let last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(when, _)| when.elapsed() < Duration::from_secs(1))
            .map(|(_, reason)| reason.clone())
    }
}

/// No new instance: live ones have room, they are only busy for the moment.
#[derive(Debug, thiserror::Error)]
#[error("every instance is busy; the request waits for one")]
struct Saturated;

/// No new instance: the workload is at its instance limit.
#[derive(Debug, thiserror::Error)]
#[error("at its instance limit")]
struct AtInstanceLimit;

impl Drop for Service {
    fn drop(&mut self) {
        // Its workers hold the handler until they exit; idle ones now exit at their next look.
        self.handler
            .state()
            .load
            .retired
            .store(true, Ordering::Relaxed);
    }
}

impl Service {
    // Each argument is a part of the workload the pool needs; only `Workload::new` calls this.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: Arc<str>,
        pre: ServicePre<InstanceState>,
        limits: weft_manifest::Limits,
        reuse: Option<weft_manifest::Reuse>,
        access: Access,
        permits: Arc<Semaphore>,
        meter: Arc<weft_metrics::WorkloadMeter>,
    ) -> Self {
        let concurrency = limits
            .concurrency
            .unwrap_or(weft_manifest::DEFAULT_CONCURRENCY) as usize;
        let reuse = reuse.unwrap_or(weft_manifest::Reuse {
            max_requests: weft_manifest::DEFAULT_REUSE_REQUESTS,
            idle: weft_manifest::DEFAULT_REUSE_IDLE,
        });
        Service {
            handler: ProxyHandler::new(Pool {
                name,
                pre,
                limits,
                access,
                concurrency,
                lifetime_requests: reuse.max_requests as usize,
                idle: reuse.idle,
                permits,
                load: Arc::new(Load::new(runtime.live_p3.clone())),
                runtime,
                meter,
            }),
        }
    }

    /// Live instances, busy or idle.
    pub(crate) fn instances(&self) -> usize {
        self.handler.state().load.instances.load(Ordering::Relaxed)
    }

    /// Serves one request on an instance with room for it. Never fails: what goes wrong becomes
    /// a 5xx response saying why.
    pub(crate) async fn serve<B>(
        &self,
        req: http::Request<B>,
    ) -> Result<http::Response<WorkloadBody>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pool = self.handler.state();
        let timeout = pool.limits.timeout;
        let deadline = Instant::now() + timeout;
        let mut request =
            with_scheme_and_authority(req.map(|b| b.map_err(Into::into).boxed_unsync()));
        let mut attempts = 0u32;
        loop {
            let error = match self.handler.handle((), request).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let error = match error.downcast::<InstantiationError<()>>() {
                Ok(refused) => refused,
                Err(error) if error.is::<TrapOrPanicError>() => {
                    // The instance's requests hear of its end before its worker records why;
                    // the worker does so right after, on its own thread.
                    let mut reason = pool.load.recent_failure();
                    for _ in 0..100 {
                        if reason.is_some() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        reason = pool.load.recent_failure();
                    }
                    return Err(Failure::Trap(match reason {
                        Some(reason) => format!("{INSTANCE_FAILED}: {reason}"),
                        None => INSTANCE_FAILED.into(),
                    }));
                }
                Err(error) => return Err(request_failure(error, timeout)),
            };
            // Worth waiting for: an instance with room, or a slot of the host's instance pool,
            // which idle instances give back.
            let waits = error.error.is::<Saturated>()
                || error.error.is::<AtInstanceLimit>()
                || error.error.is::<wasmtime::PoolConcurrencyLimitError>();
            if !waits {
                return Err(Failure::Trap(format!(
                    "cannot start an instance: {:#}",
                    error.error
                )));
            }
            if Instant::now() >= deadline {
                return Err(Failure::Full);
            }
            request = error
                .request
                .into_inner()
                .unwrap_or_else(|e| e.into_inner());
            // A busy instance frees up within microseconds; a full one when a request ends.
            attempts += 1;
            if attempts < 4 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// What each request in flight on an instance that failed is told, before the reason.
const INSTANCE_FAILED: &str =
    "the instance serving it failed while the request was in flight (the next request gets a \
     new instance)";

/// What a request whose call failed is told.
fn request_failure(error: wasmtime::Error, timeout: Duration) -> Failure {
    if error.is::<ExpirationError>() {
        return Failure::Timeout(timeout);
    }
    classify(error, timeout)
}

/// wasi:http 0.3 hands a handler the request's scheme and authority; an incoming request's URI
/// carries only its path, so they come from the connection (plain HTTP) and the Host header.
fn with_scheme_and_authority<B>(req: http::Request<B>) -> http::Request<B> {
    if req.uri().scheme().is_some() {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    if let Some(authority) = authority {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    http::Request::from_parts(parts, body)
}

/// How many instances a burst of CPU-bound requests may spread over: one per core.
fn parallelism() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl HandlerState for Pool {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        // The handler asks for an instance whenever none is ready to take a request: either all
        // are full, or they are running guest code right now. Only the first is worth a new
        // instance beyond one per core; the second passes in microseconds.
        // The slot is taken before instantiating, so that a burst cannot start several.
        let slot = InstanceSlot::reserve(&self.load, |instances, in_flight| {
            instances < parallelism() || in_flight >= instances * self.concurrency
        })
        .ok_or(Saturated)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| AtInstanceLimit)?;
        let mut store = self
            .runtime
            .limited_store(&self.name, &self.limits, &self.access);
        {
            // Requests time out one by one (`on_request_start`); the store itself never does.
            let state = store.data_mut();
            state.deadline = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
            state.long_running_after = Duration::MAX;
            state.hooks.serve_apart = true;
        }
        store.set_epoch_deadline(1);
        let live = self.meter.instance(true);
        let instantiate = async {
            for peer in self.access.linked.iter().flat_map(|l| &l.peers) {
                let instance = peer.pre.instantiate_async(&mut store).await?;
                for interface in &peer.interfaces {
                    store.data_mut().peers.insert(interface.clone(), instance);
                }
            }
            self.pre.instantiate_async(&mut store).await
        };
        let service = match tokio::time::timeout(self.limits.timeout, instantiate).await {
            Ok(service) => service?,
            Err(_) => wasmtime::bail!(
                "instantiation ran past the execution timeout of {:?}",
                self.limits.timeout
            ),
        };
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiry {
                timeout: self.limits.timeout,
                idle: self.idle,
                load: self.load.clone(),
                timer: None,
            },
            state: Worker {
                name: self.name.clone(),
                timeout: self.limits.timeout,
                concurrency: self.concurrency,
                lifetime_requests: self.lifetime_requests,
                load: self.load.clone(),
                _slot: slot,
                _permit: permit,
                _live: live,
            },
        })
    }
}

/// One instance's bookkeeping; dropped with it.
pub(crate) struct Worker {
    name: Arc<str>,
    timeout: Duration,
    concurrency: usize,
    lifetime_requests: usize,
    load: Arc<Load>,
    _slot: InstanceSlot,
    _permit: OwnedSemaphorePermit,
    _live: Option<weft_metrics::LiveInstance>,
}

/// Counts a live instance (or one starting) until dropped.
struct InstanceSlot(Arc<Load>);

impl InstanceSlot {
    /// A slot, when `may_start(instances, in_flight)` allows one more instance.
    fn reserve(load: &Arc<Load>, may_start: impl Fn(usize, usize) -> bool) -> Option<Self> {
        let in_flight = load.in_flight.load(Ordering::Relaxed);
        load.instances
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |instances| {
                may_start(instances, in_flight).then_some(instances + 1)
            })
            .ok()?;
        load.on_host.fetch_add(1, Ordering::Relaxed);
        Some(InstanceSlot(load.clone()))
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.instances.fetch_sub(1, Ordering::AcqRel);
        self.0.on_host.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request in flight until dropped (when it responds, expires or its instance fails).
struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.lifetime_requests {
            ShouldAccept::Never
        } else if concurrent < self.concurrency {
            ShouldAccept::Yes
        } else {
            ShouldAccept::No
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        self.load.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(self.load.clone());
        let timeout = self.timeout;
        Box::pin(async move {
            let _in_flight = in_flight;
            tokio::time::sleep(timeout).await;
        })
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            let reason = classify(error, self.timeout).to_string();
            tracing::warn!(workload = %self.name, %reason, "instance dropped with the requests in flight on it");
            *self
                .load
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), reason));
        }
        drop(store);
    }
}

/// When an instance goes: a request on it far past its timeout (the guest never yielded), or
/// nothing to do for the idle time (shorter when the host is crowded, at once when its workload
/// was replaced or removed).
pub(crate) struct Expiry {
    timeout: Duration,
    idle: Duration,
    load: Arc<Load>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let at = match status {
                WorkerStatus::Idle if this.load.retired.load(Ordering::Relaxed) => {
                    return Poll::Ready(())
                }
                WorkerStatus::Idle => start + this.load.idle_allowance(this.idle),
                WorkerStatus::Requests | WorkerStatus::PostReturn => {
                    start + this.timeout + EXPIRY_GRACE
                }
            };
            let now = Instant::now();
            if now >= at {
                return Poll::Ready(());
            }
            // Looked at again at least every RECHECK: the workload may be retired or the host
            // fill up in the meantime.
            let wake = tokio::time::Instant::from(at.min(now + RECHECK));
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake)));
            if timer.is_elapsed() || timer.deadline() > wake {
                timer.as_mut().reset(wake);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
