//! WASI 0.3 HTTP handlers (`wasi:http/handler@0.3.0`): one instance serves many requests at
//! once, up to the component's concurrency. A request goes to the live instance with the fewest
//! in flight that has room; a new instance starts when none has room, or while there are fewer
//! than one per core (so CPU-bound work spreads over them), up to the instance limit; past it a
//! request waits for room. Idle instances are reclaimed.
//!
//! Each instance is a task running its store's event loop (`Store::run_concurrent`), taking
//! requests from its own queue and calling the guest through wasmtime-wasi-http's `Prepared`.
//! (wasmtime-wasi-http's `ProxyHandler` starts a new instance whenever every instance is busy
//! for a moment, which gives a burst of I/O-bound requests one instance each.)

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::stream::{FuturesUnordered, StreamExt as _};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Accessor;
use wasmtime::AsContextMut as _;
use wasmtime_wasi_http::handler::{ExpirationError, Prepared, Proxy};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtxView, WasiHttpView};

use crate::instance_body::{InstanceBody, InstanceFailed};
use crate::state::{Access, InstanceState};
use crate::workload::{classify, Failure, WorkloadBody};
use crate::Runtime;

/// How often an idle instance looks again at whether it should go.
const RECHECK: Duration = Duration::from_secs(1);
/// Live WASI 0.3 instances on a host past which idle ones are not kept: half of what the
/// instance allocator holds, so thousands of apps that each served a request do not keep it
/// full.
const CROWDED: usize = 1000;
/// The longest a request waiting for room waits before it looks again.
const RETRY_AFTER: Duration = Duration::from_millis(2);
/// Past a request's timeout, how long its instance may still run before it is dropped with
/// every request on it.
const EXPIRY_GRACE: Duration = Duration::from_millis(100);
/// Set in [`Slot::load`] once an instance takes no more requests.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// What each request in flight on an instance that failed is told, before the reason.
const INSTANCE_FAILED: &str =
    "the instance serving it failed while the request was in flight (the next request gets a \
     new instance)";

/// A request for an instance, and where its answer goes.
type Job = (
    http::Request<WasiBody>,
    oneshot::Sender<wasmtime::Result<http::Response<WasiBody>>>,
);

/// The instances of one WASI 0.3 workload.
pub(crate) struct Service {
    pool: Arc<Pool>,
}

/// What every instance of the workload is made from, and the live ones.
struct Pool {
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
    meter: Arc<weft_metrics::WorkloadMeter>,
    live: Mutex<Vec<Arc<Slot>>>,
    /// Notified as each request ends: room for one waiting.
    room: Notify,
    /// Why an instance last failed, and when: what its requests in flight are told.
    last_failure: Mutex<Option<(Instant, String)>>,
    /// Set once the workload is replaced or removed: its idle instances go at once.
    retired: AtomicBool,
}

/// One live instance as requests see it.
struct Slot {
    /// Requests given to it and not yet answered, with [`CLOSED`] set once it takes no more.
    load: AtomicUsize,
    /// Requests given to it in its life.
    served: AtomicUsize,
    jobs: mpsc::UnboundedSender<Job>,
    /// Set if it fails, for the bodies still going out from it: its answers and the requests
    /// it sent (the store's outgoing policy holds the same record).
    failed: InstanceFailed,
}

impl Slot {
    /// Takes a request if it has room.
    fn reserve(&self, concurrency: usize, lifetime: usize) -> bool {
        let taken = self
            .load
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n & CLOSED == 0 && n < concurrency).then_some(n + 1)
            })
            .is_ok();
        if taken && self.served.fetch_add(1, Ordering::Relaxed) + 1 >= lifetime {
            self.close();
        }
        taken
    }

    fn in_flight(&self) -> usize {
        self.load.load(Ordering::Acquire) & !CLOSED
    }

    /// Takes no more requests; those it has finish.
    fn close(&self) {
        self.load.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Closes it if it has nothing in flight; whether it did.
    fn close_if_idle(&self) -> bool {
        self.load
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.load.load(Ordering::Acquire) == CLOSED
    }

    fn finished_one(&self) {
        self.load.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Epoch ticks a WASI 0.3 instance's guest has computed since the instance's event loop last
/// had control. Requests time out one by one in the loop, but a guest computing without
/// awaiting keeps the loop from running at all; past a timeout's worth of ticks the epoch
/// callback cuts the guest off, and the instance fails with every request on it.
pub(crate) struct Streak {
    ticks: AtomicU32,
    limit: u32,
}

/// How long a 0.3 guest running at an epoch tick has run since its event loop had control.
pub(crate) enum Tick {
    /// Since the last tick at most: it may just have been running as the tick came.
    Brief,
    /// A whole tick or more.
    Computing,
    /// Longer than a request's timeout.
    PastTimeout,
}

impl Streak {
    fn new(timeout: Duration) -> Self {
        let ticks = timeout.as_nanos() / crate::EPOCH_TICK.as_nanos().max(1);
        Streak {
            ticks: AtomicU32::new(0),
            limit: u32::try_from(ticks).unwrap_or(u32::MAX).max(1),
        }
    }

    /// Counts one tick with the guest running; how long it has now run without the loop.
    pub(crate) fn tick(&self) -> Tick {
        match self.ticks.fetch_add(1, Ordering::Relaxed) + 1 {
            n if n >= self.limit => Tick::PastTimeout,
            1 => Tick::Brief,
            _ => Tick::Computing,
        }
    }

    /// The event loop has control again.
    fn reset(&self) {
        self.ticks.store(0, Ordering::Relaxed);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Its instances hold the pool until they exit; idle ones now exit at their next look.
        self.pool.retired.store(true, Ordering::Relaxed);
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
            pool: Arc::new(Pool {
                runtime,
                name,
                pre,
                limits,
                access,
                concurrency,
                lifetime_requests: reuse.max_requests as usize,
                idle: reuse.idle,
                permits,
                meter,
                live: Mutex::default(),
                room: Notify::new(),
                last_failure: Mutex::default(),
                retired: AtomicBool::new(false),
            }),
        }
    }

    /// Live instances, busy or idle.
    pub(crate) fn instances(&self) -> usize {
        self.pool.live_lock().len()
    }

    /// Serves one request on an instance with room for it. What goes wrong is a [`Failure`]
    /// saying why.
    pub(crate) async fn serve<B>(
        &self,
        req: http::Request<B>,
    ) -> Result<http::Response<WorkloadBody>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pool = &self.pool;
        let timeout = pool.limits.timeout;
        let deadline = Instant::now() + timeout;
        let mut request =
            with_scheme_and_authority(req.map(|b| b.map_err(Into::into).boxed_unsync()));
        loop {
            let slot = match Pool::place(pool) {
                Some(slot) => slot,
                None if Instant::now() >= deadline => return Err(Failure::Full),
                None => {
                    let _ = tokio::time::timeout(RETRY_AFTER, pool.room.notified()).await;
                    continue;
                }
            };
            let (answer, answered) = oneshot::channel();
            match slot.jobs.send((request, answer)) {
                Ok(()) => return pool.answer(answered.await, &slot.failed).await,
                // The instance ended between taking the request and receiving it.
                Err(mpsc::error::SendError((back, _))) => {
                    slot.finished_one();
                    request = back;
                }
            }
        }
    }
}

impl Pool {
    fn live_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live instance that took the request, or a new one started for it; None when every
    /// instance is full and no more may start.
    fn place(pool: &Arc<Pool>) -> Option<Arc<Slot>> {
        let mut live = pool.live_lock();
        let least = live
            .iter()
            .filter(|s| s.load.load(Ordering::Acquire) & CLOSED == 0)
            .min_by_key(|s| s.in_flight())
            .cloned();
        let spread = live.len() < parallelism();
        if let Some(slot) = &least {
            let busy = slot.in_flight() > 0;
            if !(busy && spread && pool.permits.available_permits() > 0)
                && slot.reserve(pool.concurrency, pool.lifetime_requests)
            {
                return Some(slot.clone());
            }
        }
        let permit = pool.permits.clone().try_acquire_owned().ok()?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            load: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            jobs,
            failed: InstanceFailed::default(),
        });
        slot.reserve(pool.concurrency, pool.lifetime_requests);
        live.push(slot.clone());
        tokio::spawn(Pool::run_instance(
            pool.clone(),
            slot.clone(),
            queue,
            permit,
        ));
        Some(slot)
    }

    /// What the request is answered, from what its instance (whose failure `failed` records)
    /// sent back.
    async fn answer(
        &self,
        sent: Result<wasmtime::Result<http::Response<WasiBody>>, oneshot::Canceled>,
        failed: &InstanceFailed,
    ) -> Result<http::Response<WorkloadBody>, Failure> {
        let timeout = self.limits.timeout;
        match sent {
            Ok(Ok(response)) => {
                let response = response.map(|body| {
                    InstanceBody::new(body, failed.clone(), self.name.clone(), "answer")
                        .boxed_unsync()
                });
                match crate::read_ahead::read_ahead(response).await {
                    Ok(response) => Ok(response),
                    // Nothing of the answer has gone out yet, so it can still say why.
                    Err(_) if failed.get() => Err(self.instance_failure().await),
                    Err(error) => Err(Failure::Trap(format!(
                        "the guest failed its answer's body before it was sent: {error}"
                    ))),
                }
            }
            Ok(Err(error)) if error.is::<ExpirationError>() => Err(Failure::Timeout(timeout)),
            Ok(Err(error)) => Err(classify(error, timeout)),
            Err(oneshot::Canceled) => Err(self.instance_failure().await),
        }
    }

    /// What a request in flight on an instance that failed is told: why it failed, which the
    /// instance records as it goes.
    async fn instance_failure(&self) -> Failure {
        let mut reason = self.recent_failure();
        for _ in 0..100 {
            if reason.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            reason = self.recent_failure();
        }
        Failure::Trap(match reason {
            Some(reason) => format!("{INSTANCE_FAILED}: {reason}"),
            None => INSTANCE_FAILED.into(),
        })
    }

    /// Why an instance of this workload failed within the last second, if one did.
    fn recent_failure(&self) -> Option<String> {
        let last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(when, _)| when.elapsed() < Duration::from_secs(1))
            .map(|(_, reason)| reason.clone())
    }

    fn record_failure(&self, reason: String) {
        tracing::warn!(workload = %self.name, %reason, "instance dropped with the requests in flight on it");
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), reason));
    }

    /// How long an idle instance is kept: `idle`; not at all once the workload is retired or
    /// the host crowded.
    fn idle_allowance(&self) -> Duration {
        if self.retired.load(Ordering::Relaxed)
            || self.runtime.live_p3.load(Ordering::Relaxed) >= CROWDED
        {
            Duration::ZERO
        } else {
            self.idle
        }
    }

    /// One instance: instantiates it, serves what its queue brings until it is idle long
    /// enough, has served its lifetime, or fails; then leaves the live list.
    async fn run_instance(
        pool: Arc<Pool>,
        slot: Arc<Slot>,
        mut queue: mpsc::UnboundedReceiver<Job>,
        permit: OwnedSemaphorePermit,
    ) {
        let _permit = permit;
        let _live = pool.meter.instance(true);
        pool.runtime.live_p3.fetch_add(1, Ordering::Relaxed);
        let outcome = pool.instance_life(&slot, &mut queue).await;
        slot.close();
        pool.live_lock().retain(|s| !Arc::ptr_eq(s, &slot));
        pool.runtime.live_p3.fetch_sub(1, Ordering::Relaxed);
        if let Err(reason) = outcome {
            pool.record_failure(reason.clone());
            // Requests that reached its queue but never started are told too.
            queue.close();
            while let Ok((_, answer)) = queue.try_recv() {
                let _ = answer.send(Err(wasmtime::format_err!("{INSTANCE_FAILED}: {reason}")));
            }
        }
        pool.room.notify_waiters();
    }

    /// Instantiates and serves; the reason when the instance failed.
    async fn instance_life(
        &self,
        slot: &Arc<Slot>,
        queue: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), String> {
        let timeout = self.limits.timeout;
        let mut store = self.runtime.limited_store(
            self.pre.instance_pre().engine(),
            &self.name,
            &self.limits,
            &self.access,
        );
        // Requests time out one by one in the event loop, and a guest computing past a timeout
        // without awaiting is cut off by its streak, which the epoch callback then goes by
        // instead of a deadline of the store's own.
        let streak = Arc::new(Streak::new(timeout));
        let state = store.data_mut();
        state.streak = Some(streak.clone());
        state.hooks.serve_apart = true;
        // Its outgoing requests' bodies watch the same record as its answers.
        state.hooks.failed = Some(slot.failed.clone());
        store.set_epoch_deadline(1);
        let instantiate = async {
            for peer in self.access.linked.iter().flat_map(|l| &l.peers) {
                let instance = peer.pre.instantiate_async(&mut store).await?;
                for interface in &peer.interfaces {
                    store.data_mut().peers.insert(interface.clone(), instance);
                }
            }
            self.pre.instantiate_async(&mut store).await
        };
        let proxy = match tokio::time::timeout(timeout, instantiate).await {
            Ok(Ok(service)) => Proxy::P3(service),
            Ok(Err(e)) => return Err(format!("cannot start an instance: {e:#}")),
            Err(_) => {
                return Err(format!(
                    "instantiation ran past the execution timeout of {timeout:?}"
                ))
            }
        };
        let served = crate::self_wake::repoll_self_wakes(store.run_concurrent(async |accessor| {
            let mut serving = std::pin::pin!(self.serve_queue(accessor, &proxy, slot, queue));
            std::future::poll_fn(|cx| {
                streak.reset();
                std::future::Future::poll(serving.as_mut(), cx)
            })
            .await
        }))
        .await;
        let outcome = match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(error) => Err(classify(error, timeout).to_string()),
        };
        if outcome.is_err() {
            // Before the store goes: its going ends the bodies still streaming from it.
            slot.failed.set();
        }
        drop(store);
        outcome
    }

    /// The instance's event loop: starts each request its queue brings, answers each as the
    /// guest responds, and returns once it should go (an error when it failed).
    async fn serve_queue(
        &self,
        accessor: &Accessor<InstanceState>,
        proxy: &Proxy,
        slot: &Slot,
        queue: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), String> {
        let timeout = self.limits.timeout;
        let view: fn(&mut InstanceState) -> WasiHttpCtxView<'_> =
            <InstanceState as WasiHttpView>::http;
        let mut calls = FuturesUnordered::new();
        let mut idle_since = Instant::now();
        // When a request on it ran out of time: the instance takes no more, and goes once the
        // rest finish or that request's guest code has had its grace.
        let mut expired_at: Option<Instant> = None;
        loop {
            let idle = calls.is_empty();
            let idle_until = idle_since + self.idle_allowance();
            let look_again = Instant::now() + RECHECK;
            tokio::select! {
                biased;
                Some(done) = calls.next(), if !calls.is_empty() => {
                    slot.finished_one();
                    self.room.notify_one();
                    match done {
                        Ok(true) => {}
                        Ok(false) => {
                            slot.close();
                            expired_at.get_or_insert_with(Instant::now);
                        }
                        Err(error) => return Err(classify(error, timeout).to_string()),
                    }
                    if calls.is_empty() {
                        idle_since = Instant::now();
                    }
                }
                Some((request, answer)) = queue.recv() => {
                    let prepared = accessor.with(|mut store| {
                        Prepared::new(store.as_context_mut(), proxy, request, view, answer)
                    });
                    match prepared {
                        Ok(call) => calls.push(call.run(accessor, tokio::time::sleep(timeout))),
                        // Its answer went with it: the request hears the instance failed.
                        Err(e) => {
                            slot.finished_one();
                            tracing::warn!(workload = %self.name, "request refused: {e:#}");
                        }
                    }
                }
                _ = tokio::time::sleep_until(
                    (expired_at.unwrap_or(idle_since) + timeout + EXPIRY_GRACE).into()
                ), if expired_at.is_some() => {
                    return Err(format!(
                        "a request ran past its execution timeout of {timeout:?} and the guest \
                         did not end it"
                    ));
                }
                _ = tokio::time::sleep_until(idle_until.min(look_again).into()), if idle => {
                    let quiet = std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx));
                    let done_streaming =
                        futures::FutureExt::now_or_never(quiet).is_some();
                    let ends = (Instant::now() >= idle_since + self.idle_allowance()
                        || slot.load.load(Ordering::Acquire) & CLOSED != 0)
                        && done_streaming;
                    if ends && slot.close_if_idle() {
                        return Ok(());
                    }
                }
            }
        }
    }
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

/// How many instances requests spread over before any takes a second: one per core.
fn parallelism() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_tells_a_brief_run_from_computing_and_from_a_run_past_the_timeout() {
        let streak = Streak::new(crate::EPOCH_TICK * 3);
        assert!(matches!(streak.tick(), Tick::Brief));
        assert!(matches!(streak.tick(), Tick::Computing));
        assert!(matches!(streak.tick(), Tick::PastTimeout));
        streak.reset();
        assert!(matches!(streak.tick(), Tick::Brief), "the loop had control");
        // A timeout under one tick still leaves the guest that tick.
        let short = Streak::new(Duration::from_micros(10));
        assert!(matches!(short.tick(), Tick::PastTimeout));
    }
}
