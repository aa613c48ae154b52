//! The `wasi:http/handler@0.3.0` import of a WASI 0.3 middleware: `handle` passes the request
//! to the next handler in the chain, the component its `handler` link names, in-process. It is
//! wasi:http's own `client.send` with the destination fixed by the link instead of the URL, so
//! bodies stream both ways exactly as they do for outgoing requests.

use wasmtime::component::{Accessor, Linker, Resource};
use wasmtime_wasi_http::p3::bindings::http::client::HostWithStore;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{Request, Response};
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};

use crate::state::InstanceState;

/// The import's name, as a middleware component imports it.
pub(crate) const HANDLER_IMPORT: &str = "wasi:http/handler@0.3.0";

/// Links `wasi:http/handler@0.3.0#handle` for every component; which component it reaches is
/// decided per store by its `handler` link.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    linker.instance(HANDLER_IMPORT)?.func_wrap_concurrent(
        "handle",
        |accessor: &Accessor<InstanceState>, (request,): (Resource<Request>,)| {
            Box::pin(async move {
                // `send` hands the request to the store's hooks in its first step, before it
                // first awaits, so the mark set here is read by this request and no other.
                accessor.with(|mut store| store.data_mut().hooks.to_next_handler = true);
                let http = accessor.with_getter::<WasiHttp>(<InstanceState as WasiHttpView>::http);
                let sent = <WasiHttp as HostWithStore<InstanceState>>::send(&http, request).await;
                accessor.with(|mut store| store.data_mut().hooks.to_next_handler = false);
                let answer: Result<Resource<Response>, ErrorCode> = match sent {
                    Ok(response) => Ok(response),
                    Err(error) => Err(error.downcast()?),
                };
                Ok((answer,))
            })
        },
    )
}
