//! A workload: one component pre-instantiated for HTTP, served with a fresh instance per request
//! under its limits (concurrent instances, memory, execution time).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::{oneshot, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use crate::engine::ticks_for;
use crate::state::{InstanceState, MemoryLimitExceeded};
use crate::Runtime;

/// The body type of every response weft sends.
pub type WorkloadBody = HyperOutgoingBody;

/// A component ready to serve HTTP requests.
pub struct Workload {
    runtime: Arc<Runtime>,
    name: String,
    digest: String,
    pre: ProxyPre<InstanceState>,
    limits: weft_manifest::Limits,
    permits: Arc<Semaphore>,
}

/// Why a request's instance failed.
enum Failure {
    Timeout(Duration),
    Memory(String),
    Trap(String),
}

impl Workload {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: String,
        digest: String,
        pre: ProxyPre<InstanceState>,
        limits: weft_manifest::Limits,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_instances as usize));
        Workload {
            runtime,
            name,
            digest,
            pre,
            limits,
            permits,
        }
    }

    /// The name this workload was created under (`app/component`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component it runs.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its limits.
    pub fn limits(&self) -> weft_manifest::Limits {
        self.limits
    }

    /// Instances running right now.
    pub fn active_instances(&self) -> usize {
        self.limits.max_instances as usize - self.permits.available_permits()
    }

    /// Serves one request with a fresh instance. Never fails: a guest failure becomes a 5xx
    /// response with a short reason, and only this request is affected.
    pub async fn serve<B>(self: &Arc<Self>, req: http::Request<B>) -> http::Response<WorkloadBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let timeout = self.limits.timeout;
        let permit = match tokio::time::timeout(timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                return text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} is at its limit of {} concurrent instances; try again later",
                        self.name, self.limits.max_instances
                    ),
                )
            }
        };

        let mut store = Store::new(
            self.runtime.engine(),
            InstanceState::new(self.limits.max_memory),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(ticks_for(timeout));
        store.epoch_deadline_trap();

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

        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            // The permit lives as long as the instance, which may outlive the response headers
            // while it streams the body.
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(classify(e, timeout)),
                Err(_) => Err(Failure::Timeout(timeout)),
            }
        });

        let name = &self.name;
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                tracing::warn!(workload = %name, ?code, "guest answered with an error code");
                text_response(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{name} failed: {code:?}"),
                )
            }
            Err(_) => {
                let failure = match task.await {
                    Ok(Err(failure)) => failure,
                    Ok(Ok(())) => {
                        Failure::Trap("the guest returned without sending a response".into())
                    }
                    Err(join) => Failure::Trap(format!("the instance task failed: {join}")),
                };
                failure_response(name, failure)
            }
        }
    }
}

fn classify(error: wasmtime::Error, timeout: Duration) -> Failure {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return Failure::Memory(limit.to_string());
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Failure::Timeout(timeout),
        Some(trap) => Failure::Trap(format!("guest trapped: {trap}")),
        None => Failure::Trap(format!("{error:#}")),
    }
}

fn failure_response(name: &str, failure: Failure) -> http::Response<WorkloadBody> {
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
