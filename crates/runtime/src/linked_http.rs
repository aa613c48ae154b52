//! `wasi:http/outgoing-handler@0.2`'s `handle` for a request to a linked component (a harness
//! calling its `inner`): the linked component is started right here, on the caller's own task,
//! and a response it gives without waiting on anything (a hello's, most answers' headers) is
//! handed back already complete. wasi-http's own `handle` sends every request from a task of its
//! own and makes the caller wait for that task, so each hop cost two task switches and a wakeup
//! across threads. Requests to anything else still go through wasi-http's `handle`, and so through
//! [`crate::state::OutgoingPolicy`]'s allow-list.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use http_body_util::BodyExt as _;
use tracing::Instrument as _;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler::Host as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Method, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::p2::HttpResult;
use wasmtime_wasi_http::WasiHttpView as _;

use crate::state::InstanceState;

/// The interface wasi-http's 0.2 bindings link; guests importing an older 0.2 version reach it
/// too.
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

type Answer = wasmtime::Result<(Result<Resource<HostFutureIncomingResponse>, ErrorCode>,)>;

/// Replaces wasi-http's `handle` in `linker` (which must already hold it). Only for an engine
/// whose stores run one call at a time: there, a host call may run another store's guest.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = linker
        .instance(OUTGOING_HANDLER)
        .and_then(|mut instance| instance.func_wrap("handle", handle));
    linker.allow_shadowing(false);
    added
}

fn handle(
    mut store: StoreContextMut<'_, InstanceState>,
    (request, options): (
        Resource<HostOutgoingRequest>,
        Option<Resource<wasmtime_wasi_http::RequestOptions>>,
    ),
) -> Answer {
    let state = store.data_mut();
    let authority = state.http().table.get(&request)?.authority.clone();
    let Some(target) = state.hooks.local_target(authority.as_deref()) else {
        return answer(state.http().handle(request, options));
    };
    let request = match build(state, request) {
        Ok(request) => request,
        Err(code) => return Ok((Err(code),)),
    };
    let mut request = request;
    let span = weft_telemetry::http_client_span(request.method(), request.uri());
    weft_telemetry::inject_http(&span, request.headers_mut());
    let mut serving = Box::pin(async move { target.serve(request).await }.instrument(span));
    // One step now, on this task: a linked component that answers without waiting is done
    // here. One that waits (on the request body the caller has yet to write, say) goes on on a
    // task of its own, which polls it again at once, so nothing it waits on is missed.
    let future = match serving
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(response) => HostFutureIncomingResponse::Ready(Ok((response, finished()))),
        Poll::Pending => {
            HostFutureIncomingResponse::Pending(wasmtime_wasi::runtime::spawn(async move {
                Ok((serving.await, finished()))
            }))
        }
    };
    Ok((Ok(state.http().table.push(future)?),))
}

/// The "connection" task wasi-http keeps beside a response: a linked component has none (its
/// body streams from its own instance's task), so an empty one that is already done.
fn finished() -> wasmtime_wasi::runtime::AbortOnDropJoinHandle<()> {
    wasmtime_wasi::runtime::spawn(async {})
}

/// wasi-http's answer as the guest sees it: an error code it can handle, or a trap.
fn answer(result: HttpResult<Resource<HostFutureIncomingResponse>>) -> Answer {
    match result {
        Ok(future) => Ok((Ok(future),)),
        Err(error) => Ok((Err(error.downcast()?),)),
    }
}

/// The guest's outgoing request as an `http::Request`, checked as wasi-http checks it.
fn build(
    state: &mut InstanceState,
    request: Resource<HostOutgoingRequest>,
) -> Result<http::Request<HyperOutgoingBody>, ErrorCode> {
    let request = state
        .http()
        .table
        .delete(request)
        .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?;
    let declared_length = match request.headers.get(http::header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    ErrorCode::InternalError(Some(
                        "the content-length header is not a number".into(),
                    ))
                })?,
        ),
    };
    if request.body.is_none() && declared_length.is_some_and(|n| n != 0) {
        return Err(ErrorCode::HttpRequestBodySize(Some(0)));
    }
    let method = match request.method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes())
            .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?,
    };
    let scheme = match request.scheme {
        None | Some(Scheme::Https) => http::uri::Scheme::HTTPS,
        Some(Scheme::Http) => http::uri::Scheme::HTTP,
        Some(Scheme::Other(_)) => return Err(ErrorCode::HttpProtocolError),
    };
    let authority = request.authority.unwrap_or_default();
    let mut uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str());
    if let Some(path) = request.path_with_query {
        uri = uri.path_and_query(path);
    }
    let mut builder = http::Request::builder()
        .method(method)
        .uri(
            uri.build()
                .map_err(wasmtime_wasi_http::p2::http_request_error)?,
        )
        .header(http::header::HOST, authority.as_str());
    for (name, value) in request.headers.iter() {
        builder = builder.header(name, value);
    }
    let body = request.body.unwrap_or_else(|| {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    });
    builder
        .body(body)
        .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
}
