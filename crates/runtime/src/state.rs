//! The data of one request's `Store`: WASI, wasi:http, the resource table and the limiter.
//! Each capability reaches its own part through its view trait, never the whole.

use std::future::Future;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Per-instance store data.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutgoingPolicy,
    pub(crate) limiter: MemoryLimiter,
}

impl InstanceState {
    /// A sandboxed WASI context: no environment, no files, no sockets; guest stdout and stderr go
    /// to the host's so a panicking guest's message is not lost.
    pub(crate) fn new(max_memory: u64) -> Self {
        let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
        InstanceState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutgoingPolicy,
            limiter: MemoryLimiter::new(max_memory),
        }
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

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing HTTP is a capability granted by a link; with no link granted, every request is
/// refused with `HTTP-request-denied`, which the guest sees as an error it can handle.
pub struct OutgoingPolicy;

impl WasiHttpHooks for OutgoingPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<HyperOutgoingBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "outgoing HTTP refused: the component has no outgoing-handler link");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The error a guest's store fails with when it grows memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (the guest asked for {desired} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub desired: u64,
}

/// Caps the linear memory of all instances in one store at the workload's limit.
pub(crate) struct MemoryLimiter {
    max_memory: u64,
}

impl MemoryLimiter {
    fn new(max_memory: u64) -> Self {
        MemoryLimiter { max_memory }
    }
}

/// Tables beyond this many elements are refused: far above what real guests use, far below what
/// would let one guest exhaust the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_memory {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.max_memory,
                desired: desired as u64,
            }));
        }
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
