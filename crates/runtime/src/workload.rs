//! A workload: one component pre-instantiated for HTTP, under its limits (concurrent instances,
//! memory, execution time). A WASI 0.2 handler gets a fresh instance per request (or a warm one
//! when it opts in); a WASI 0.3 handler's instances serve many requests at once (`service.rs`).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::{oneshot, Semaphore};
use tracing::Instrument as _;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::driven_body::DrivenBody;
use crate::long_running::{CallRecord, Demotable, Pace};
use crate::renew::{Finishing, Resettable, Retiring};
use crate::service::Service;
use crate::state::{Access, InstanceState, MemoryLimitExceeded};
use crate::{Code, Runtime};

/// The body type of every response weft sends.
pub type WorkloadBody = HyperOutgoingBody;

/// A component ready to serve HTTP requests.
pub struct Workload {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    code: Arc<Code>,
    handler: Handler,
    limits: weft_manifest::Limits,
    reuse: Option<weft_manifest::Reuse>,
    access: Access,
    permits: Arc<Semaphore>,
    /// Idle instances kept for reuse, most recently used last.
    warm: Mutex<Vec<WarmInstance>>,
    /// Where to find a fresh instance's exports when it is reset in place (`renew.rs`); None
    /// when its instances are not.
    resets: Option<ProxyIndices>,
    /// Fresh instances reset in place, ready for a request.
    renewed: crate::renew::Pool,
    /// Set when wasmtime found an instance of it it cannot reset in place (`renew.rs`); from
    /// then on each request gets a new instance.
    reset_refused: std::sync::atomic::AtomicBool,
    /// How long its requests usually run, to tell one that runs long.
    pace: Arc<Pace>,
    meter: Arc<weft_metrics::WorkloadMeter>,
}

/// Which `wasi:http` a component exports, pre-instantiated.
pub enum HttpPre {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2(ProxyPre<InstanceState>),
    /// `wasi:http/handler@0.3.0`.
    P3(ServicePre<InstanceState>),
}

/// How a workload's requests reach its instances.
enum Handler {
    /// One request per instance.
    P2(ProxyPre<InstanceState>),
    /// Many requests per instance.
    P3(Service),
}

/// An instance that finished a request cleanly and may serve another.
struct WarmInstance {
    store: Store<InstanceState>,
    proxy: Proxy,
    served: u32,
    idle_since: Instant,
}

/// Why a request's instance failed.
pub(crate) enum Failure {
    Timeout(Duration),
    Memory(String),
    /// The host's memory budget is spent: not the guest's fault, worth a retry.
    Busy(String),
    Trap(String),
    /// Every instance is full and no more may start before the request's timeout.
    Full,
}

impl Workload {
    // Each argument is a distinct part the workload owns; only `http_workload` calls this.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: String,
        code: Arc<Code>,
        pre: HttpPre,
        limits: weft_manifest::Limits,
        reuse: Option<weft_manifest::Reuse>,
        access: Access,
        meter: weft_metrics::WorkloadMeter,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_instances as usize));
        let name: Arc<str> = name.into();
        let meter = Arc::new(meter);
        // A fresh 0.2 instance alone in its store, of a component with no `start` function,
        // is reset in place after it answers rather than dropped (`renew.rs`).
        let resets = match &pre {
            HttpPre::P2(pre) if reuse.is_none() && access.linked.is_none() && code.resettable() => {
                ProxyIndices::new(pre.instance_pre()).ok()
            }
            _ => None,
        };
        let handler = match pre {
            HttpPre::P2(pre) => Handler::P2(pre),
            HttpPre::P3(pre) => Handler::P3(Service::new(
                runtime.clone(),
                name.clone(),
                pre,
                limits,
                reuse,
                access.clone(),
                permits.clone(),
                meter.clone(),
            )),
        };
        Workload {
            runtime,
            name,
            code,
            handler,
            limits,
            reuse,
            access,
            permits,
            warm: Mutex::default(),
            resets,
            renewed: Default::default(),
            reset_refused: Default::default(),
            pace: Arc::default(),
            meter,
        }
    }

    fn warm_lock(&self) -> std::sync::MutexGuard<'_, Vec<WarmInstance>> {
        self.warm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool with instances idle past the reuse policy dropped; None when reuse is off.
    fn pruned_pool(&self) -> Option<std::sync::MutexGuard<'_, Vec<WarmInstance>>> {
        let reuse = self.reuse?;
        let mut warm = self.warm_lock();
        let now = Instant::now();
        warm.retain(|w| now.duration_since(w.idle_since) < reuse.idle);
        Some(warm)
    }

    /// A warm instance to serve the next request, if reuse is on and one is idle.
    fn take_warm(&self) -> Option<WarmInstance> {
        self.pruned_pool()?.pop()
    }

    /// Drops warm instances idle longer than the reuse policy allows, and fresh ones kept reset
    /// longer than `renew::IDLE`; returns how many warm ones remain.
    pub fn reclaim_idle(&self) -> usize {
        self.renewed.prune();
        self.pruned_pool().map_or(0, |warm| warm.len())
    }

    /// Where to find the exports of a fresh instance it resets in place, while it does.
    fn resetting_with(&self) -> Option<&ProxyIndices> {
        self.resets.as_ref().filter(|_| {
            !self
                .reset_refused
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Stops resetting its instances in place, for good: wasmtime found state in one that a
    /// reset could not put back.
    fn refuse_resets(&self) {
        if !self
            .reset_refused
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(
                workload = %self.name,
                "its instances hold state a reset in place cannot put back: each request gets a new one"
            );
        }
    }

    /// Whether its fresh instances are reset in place.
    fn resetting(&self) -> bool {
        self.resetting_with().is_some()
    }

    /// Its fresh instances reset in place.
    pub(crate) fn renewed(&self) -> &crate::renew::Pool {
        &self.renewed
    }

    /// The host's memory budget its instances are charged to.
    pub(crate) fn memory_budget(&self) -> &crate::MemoryBudget {
        self.runtime.memory_budget()
    }

    /// Lets go of an instance that answered cleanly: back to the warm pool when reuse is on
    /// and it has not served its quota; else reset in place once the answer is out when it can
    /// be, or dropped then (`retire.rs`).
    fn finish(
        self: &Arc<Self>,
        store: Store<InstanceState>,
        proxy: Proxy,
        served: u32,
        reset: Option<Resettable>,
    ) {
        if let Some(reuse) = self.reuse {
            let served = served + 1;
            if served < reuse.max_requests {
                return self.warm_lock().push(WarmInstance {
                    store,
                    proxy,
                    served,
                    idle_since: Instant::now(),
                });
            }
        }
        match reset {
            Some(reset) => crate::retire::retire(Retiring {
                workload: self.clone(),
                finishing: Some(Finishing {
                    store,
                    proxy,
                    reset,
                }),
            }),
            None => crate::retire::retire(store),
        }
    }

    /// Idle instances kept warm right now (for a WASI 0.3 handler: live instances, busy or
    /// idle, since each serves many requests).
    pub fn warm_instances(&self) -> usize {
        match &self.handler {
            Handler::P2(_) => self.warm_lock().len(),
            Handler::P3(service) => service.instances(),
        }
    }

    /// Fresh instances reset in place and ready for a request; None when its instances are
    /// not reset in place (`renew.rs`).
    pub fn reset_instances(&self) -> Option<usize> {
        self.resetting().then(|| self.renewed.prune())
    }

    /// Whether it serves WASI 0.3 (`wasi:http/handler@0.3.0`), many requests per instance.
    pub fn is_p3(&self) -> bool {
        matches!(self.handler, Handler::P3(_))
    }

    /// The name this workload was created under (`app/component`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component it runs.
    pub fn digest(&self) -> &str {
        self.code.digest()
    }

    /// The engine it runs on.
    pub fn engine(&self) -> crate::EngineKind {
        self.code.kind()
    }

    /// Its limits.
    pub fn limits(&self) -> weft_manifest::Limits {
        self.limits
    }

    /// Instances running right now (holding a slot of its instance limit).
    pub fn active_instances(&self) -> usize {
        self.limits.max_instances as usize - self.permits.available_permits()
    }

    /// Its metrics.
    pub fn meter(&self) -> &weft_metrics::WorkloadMeter {
        &self.meter
    }

    /// Serves one request with a fresh instance. Never fails: a guest failure becomes a 5xx
    /// response with a short reason, and only this request is affected.
    pub async fn serve<B>(self: &Arc<Self>, req: http::Request<B>) -> http::Response<WorkloadBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let labels = self.meter.labels();
        let span =
            weft_telemetry::guest_span("guest", &labels.app, &labels.version, &labels.component);
        let response = self.serve_unmetered(req).instrument(span.clone()).await;
        let status = response.status();
        self.meter.request(status.as_u16(), started.elapsed());
        if status.is_server_error() {
            weft_telemetry::record_error(&span, &format_args!("answered {status}"));
        }
        response
    }

    async fn serve_unmetered<B>(
        self: &Arc<Self>,
        req: http::Request<B>,
    ) -> http::Response<WorkloadBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Moved into the instance's future, which may outlive this call while it streams.
        let pre = match &self.handler {
            Handler::P2(pre) => pre.clone(),
            Handler::P3(service) => {
                return match service.serve(req).await {
                    Ok(response) => response,
                    Err(failure) => self.failed(failure),
                }
            }
        };
        let timeout = self.limits.timeout;
        let permit = match tokio::time::timeout(timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                self.meter.error(weft_metrics::Cause::InstanceLimit);
                return text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} is at its limit of {} concurrent instances; try again later",
                        self.name, self.limits.max_instances
                    ),
                );
            }
        };

        // A warm instance (reuse), a fresh one reset in place, or a new store to instantiate in;
        // `ready` is the instance's exports, requests served and what resets it, when it has one.
        let (mut store, ready, fresh) = if let Some(warm) = self.take_warm() {
            (warm.store, Some((warm.proxy, warm.served, None)), false)
        } else if let Some(renewed) = self.renewed.take() {
            let ready = (renewed.proxy, 0, Some(renewed.reset));
            (renewed.store, Some(ready), true)
        } else {
            let store = self.runtime.limited_store(
                self.code.component.engine(),
                &self.name,
                &self.limits,
                &self.access,
            );
            (store, None, true)
        };
        let long_running = crate::restart_deadline(&mut store, timeout, &self.pace);

        let (sender, receiver) = oneshot::channel();
        let resources = (|| -> wasmtime::Result<_> {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, req)?;
            let out = http.new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let (req, out) = match resources {
            Ok(pair) => pair,
            Err(e) => {
                return text_response(
                    http::StatusCode::BAD_REQUEST,
                    format!("request refused: {e}"),
                )
            }
        };

        let workload = self.clone();
        let live = self.meter.instance(fresh);
        let mut record = CallRecord::new(&self.pace, &long_running);
        let mut instance = Demotable::new(
            async move {
                // The permit lives as long as the instance, which may outlive the response headers
                // while it streams the body.
                let _permit = permit;
                let _live = live;
                let run = async {
                    let (proxy, served, reset) = match ready {
                        Some(ready) => ready,
                        None => {
                            // Linked components first: the source's imports call into them.
                            for peer in workload.access.linked.iter().flat_map(|l| &l.peers) {
                                let instance = peer.pre.instantiate_async(&mut store).await?;
                                for interface in &peer.interfaces {
                                    store.data_mut().peers.insert(interface.clone(), instance);
                                }
                            }
                            match workload.resetting_with() {
                                // Its state right after instantiation is what a reset puts back.
                                Some(indices) => {
                                    let instance =
                                        pre.instance_pre().instantiate_async(&mut store).await?;
                                    let proxy = indices.load(&mut store, &instance)?;
                                    let reset = instance
                                        .reset_point(&store)
                                        .map(|point| Resettable { instance, point });
                                    if reset.is_none() {
                                        workload.refuse_resets();
                                    }
                                    (proxy, 0, reset)
                                }
                                None => (pre.instantiate_async(&mut store).await?, 0, None),
                            }
                        }
                    };
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await?;
                    wasmtime::Result::<_>::Ok((proxy, served, reset))
                };
                match tokio::time::timeout(timeout, run).await {
                    Ok(Ok((proxy, served, reset))) => {
                        record.clean();
                        // Counted before the instance can serve (and reset the clock for)
                        // another request.
                        drop(record);
                        // Only an instance that finished cleanly is reused or reset; a trapped
                        // one is dropped.
                        workload.finish(store, proxy, served, reset);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(classify(e, timeout)),
                    Err(_) => Err(Failure::Timeout(timeout)),
                }
            },
            long_running,
        );

        // The guest runs on this connection's task until its response headers are ready, so a
        // request does not hop threads; only a guest still streaming its body is handed to a
        // task of its own. Headers are polled first: once set, the response goes out.
        let mut receiver = receiver;
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(response) = Pin::new(&mut receiver).poll(cx) {
                return Poll::Ready(Ok(response));
            }
            if let Poll::Ready(finished) = Pin::new(&mut instance).poll(cx) {
                return Poll::Ready(Err(finished));
            }
            // The guest usually sets its response during the turn it just had and then waits
            // for its body to be read. Looking again takes the response in this same poll:
            // otherwise the task would go back through the scheduler first (its own wake
            // counts as a yield) and wake an idle worker thread, before the answer is written.
            Pin::new(&mut receiver).poll(cx).map(Ok)
        })
        .await;
        let response = match outcome {
            Ok(Err(_closed)) => {
                // The sender went away without a response: the instance failed before setting one.
                return self.failed(failure_of(instance.await));
            }
            // The guest goes on writing its body as the connection reads it, on the same task;
            // the capability calls it makes meanwhile stay in its trace.
            Ok(Ok(Ok(response))) => Ok(Ok(response.map(|body| {
                DrivenBody::new(body, instance, self.name.clone(), tracing::Span::current())
                    .boxed_unsync()
            }))),
            Ok(response) => {
                tokio::spawn(instance.instrument(tracing::Span::current()));
                response
            }
            // The instance ended first: it set the response on its way out (and failed after,
            // or not), or it failed without one.
            Err(finished) => match (receiver.try_recv(), finished) {
                (Ok(response), Ok(())) => Ok(response),
                (Ok(Ok(response)), Err(failure)) => Ok(Ok(response.map(|body| {
                    let failed = std::future::ready(Err(failure));
                    DrivenBody::new(body, failed, self.name.clone(), tracing::Span::current())
                        .boxed_unsync()
                }))),
                (Ok(response), Err(_)) => Ok(response),
                (Err(_), finished) => return self.failed(failure_of(finished)),
            },
        };

        let name = &self.name;
        match response {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                self.meter.error(weft_metrics::Cause::Trap);
                tracing::warn!(workload = %name, ?code, "guest answered with an error code");
                text_response(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{name} failed: {code:?}"),
                )
            }
            Err(_) => self.failed(Failure::Trap(
                "the guest dropped its response unsent".into(),
            )),
        }
    }
}

/// Why an instance that ended without a response failed.
fn failure_of(finished: Result<(), Failure>) -> Failure {
    finished
        .err()
        .unwrap_or_else(|| Failure::Trap("the guest returned without sending a response".into()))
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(timeout) => write!(f, "exceeded its execution timeout of {timeout:?}"),
            Failure::Memory(reason) | Failure::Busy(reason) | Failure::Trap(reason) => {
                f.write_str(reason)
            }
            Failure::Full => f.write_str("every instance is full"),
        }
    }
}

pub(crate) fn classify(error: wasmtime::Error, timeout: Duration) -> Failure {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return Failure::Memory(limit.to_string());
    }
    if let Some(spent) = error.downcast_ref::<crate::BudgetSpent>() {
        return Failure::Busy(spent.to_string());
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Failure::Timeout(timeout),
        Some(trap) => Failure::Trap(format!("guest trapped: {trap}")),
        None => Failure::Trap(format!("{error:#}")),
    }
}

impl Workload {
    /// The response for a request whose instance failed, counted by cause.
    fn failed(&self, failure: Failure) -> http::Response<WorkloadBody> {
        self.meter.error(match failure {
            Failure::Timeout(_) => weft_metrics::Cause::Timeout,
            Failure::Memory(_) => weft_metrics::Cause::Memory,
            Failure::Busy(_) => weft_metrics::Cause::HostMemory,
            Failure::Trap(_) => weft_metrics::Cause::Trap,
            Failure::Full => weft_metrics::Cause::InstanceLimit,
        });
        failure_response(&self.name, &self.limits, failure)
    }
}

fn failure_response(
    name: &str,
    limits: &weft_manifest::Limits,
    failure: Failure,
) -> http::Response<WorkloadBody> {
    match failure {
        Failure::Timeout(timeout) => {
            tracing::warn!(workload = %name, ?timeout, "request cut off at its execution timeout");
            text_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} exceeded its execution timeout of {timeout:?}"),
            )
        }
        Failure::Memory(reason) => {
            tracing::warn!(workload = %name, %reason, "request failed: memory limit");
            text_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("{name} failed: {reason}"),
            )
        }
        Failure::Busy(reason) => {
            tracing::warn!(workload = %name, %reason, "request refused: host memory budget");
            let mut response = text_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} cannot run now: {reason}"),
            );
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            response
        }
        Failure::Full => text_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{name} is at its limit of {} instances serving {} requests each; try again later",
                limits.max_instances,
                limits
                    .concurrency
                    .unwrap_or(weft_manifest::DEFAULT_CONCURRENCY)
            ),
        ),
        Failure::Trap(reason) => {
            tracing::warn!(workload = %name, %reason, "request failed");
            text_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("{name} failed: {reason}"),
            )
        }
    }
}

/// A short plain-text response, used for every answer weft gives on a guest's behalf.
pub fn text_response(
    status: http::StatusCode,
    message: impl Into<String>,
) -> http::Response<WorkloadBody> {
    let mut body = message.into();
    body.push('\n');
    let mut response = http::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
