//! weft's runtime: one wasmtime engine per host, the compile cache, pre-instantiated workloads
//! and the per-request instance policy with its limits.

mod cache;
mod engine;
mod state;
mod workload;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

pub use cache::digest_of;
pub use engine::{Allocator, EPOCH_TICK};
pub use state::{InstanceState, MemoryLimitExceeded};
/// The error type of HTTP bodies crossing the host boundary.
pub use wasmtime_wasi_http::Error as HttpError;
pub use workload::{text_response, Workload, WorkloadBody};

use cache::CompileCache;
use engine::EpochTicker;

/// Why a component cannot be loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} is not a WebAssembly file (it lacks the `\\0asm` header)")]
    NotWasm { what: String },
    #[error(
        "{what} is a core WebAssembly module, not a component; build it for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { what: String },
    #[error("{what} failed to compile: {reason}")]
    Compile { what: String, reason: String },
    #[error("{what} cannot be linked: {reason}")]
    Link { what: String, reason: String },
    #[error(
        "{what} is routed HTTP requests but exports no `wasi:http/incoming-handler@0.2.x`: {reason}"
    )]
    NoHttpHandler { what: String, reason: String },
    #[error("cannot set up the runtime: {0}")]
    Setup(String),
}

/// A compiled component and whether this load had to compile it.
pub struct LoadedComponent {
    pub component: Component,
    pub digest: String,
    pub compiled: bool,
}

/// The host's engine, linker, compile cache and counters.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: CompileCache,
    allocator: Allocator,
    compilations: AtomicU64,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the runtime with its compile cache under `cache_dir`.
    pub fn new(cache_dir: &Path, pooling: bool) -> Result<Arc<Self>, RuntimeError> {
        let setup = |e: &dyn std::fmt::Display| RuntimeError::Setup(e.to_string());
        let (engine, allocator) = engine::build_engine(pooling).map_err(|e| setup(&e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| setup(&e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| setup(&e))?;
        let cache = CompileCache::new(cache_dir, &engine).map_err(|e| setup(&e))?;
        let ticker = EpochTicker::start(&engine).map_err(|e| setup(&e))?;
        tracing::info!(%allocator, cache = %cache_dir.display(), "runtime ready");
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache,
            allocator,
            compilations: AtomicU64::new(0),
            _ticker: ticker,
        }))
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// How many components this runtime has compiled (cache misses) since it started.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Compiles `bytes`, or loads the compiled artifact from the cache when it is there.
    /// Blocking: call it off the async executor. `what` names the component in errors.
    pub fn load(&self, what: &str, bytes: &[u8]) -> Result<LoadedComponent, RuntimeError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(RuntimeError::NotWasm { what: what.into() });
        }
        if wasmparser::Parser::is_core_wasm(bytes) {
            return Err(RuntimeError::CoreModule { what: what.into() });
        }
        let digest = digest_of(bytes);
        let path = self.cache.path_for(&digest);
        if path.exists() {
            // SAFETY: the cache directory is private to this host and keyed by the engine's
            // compatibility hash; its files were written by `precompile_component` of an engine
            // with these exact settings. A file that fails to load is recompiled below.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(&self.engine, &path) };
            match cached {
                Ok(component) => {
                    tracing::debug!(%what, %digest, "compiled code loaded from cache");
                    return Ok(LoadedComponent {
                        component,
                        digest,
                        compiled: false,
                    });
                }
                Err(e) => tracing::warn!(%what, "cached code unusable ({e}); recompiling"),
            }
        }
        let started = std::time::Instant::now();
        let artifact =
            self.engine
                .precompile_component(bytes)
                .map_err(|e| RuntimeError::Compile {
                    what: what.into(),
                    reason: format!("{e:#}"),
                })?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.cache.store(&digest, &artifact) {
            tracing::warn!(%what, "cannot write the compile cache ({e}); continuing without it");
        }
        // SAFETY: `artifact` was produced just above by this engine's `precompile_component`.
        #[allow(unsafe_code)]
        let component =
            unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| {
                RuntimeError::Compile {
                    what: what.into(),
                    reason: format!("{e:#}"),
                }
            })?;
        tracing::info!(%what, %digest, elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        Ok(LoadedComponent {
            component,
            digest,
            compiled: true,
        })
    }

    /// Checks that every import of a loaded component is satisfied by what this host links.
    pub fn check_imports(&self, what: &str, loaded: &LoadedComponent) -> Result<(), RuntimeError> {
        self.instance_pre(what, loaded).map(|_| ())
    }

    fn instance_pre(
        &self,
        what: &str,
        loaded: &LoadedComponent,
    ) -> Result<wasmtime::component::InstancePre<InstanceState>, RuntimeError> {
        self.linker
            .instantiate_pre(&loaded.component)
            .map_err(|e| RuntimeError::Link {
                what: what.into(),
                reason: format!(
                    "{e:#}; weft provides WASI 0.2 (cli, clocks, filesystem, io, random, sockets) \
                     and wasi:http, other imports need a link to a capability or component"
                ),
            })
    }

    /// Links a loaded component as an HTTP workload: every import must be satisfied and the
    /// component must export `wasi:http/incoming-handler`.
    pub fn http_workload(
        self: &Arc<Self>,
        what: &str,
        loaded: &LoadedComponent,
        limits: weft_manifest::Limits,
    ) -> Result<Arc<Workload>, RuntimeError> {
        let pre = self.instance_pre(what, loaded)?;
        let proxy = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(|e| {
            RuntimeError::NoHttpHandler {
                what: what.into(),
                reason: format!("{e:#}"),
            }
        })?;
        Ok(Arc::new(Workload::new(
            self.clone(),
            what.to_string(),
            loaded.digest.clone(),
            proxy,
            limits,
        )))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[cfg(test)]
mod tests;
