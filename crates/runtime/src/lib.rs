//! weft's runtime: one wasmtime engine per host, the compile cache, pre-instantiated workloads
//! and the per-request instance policy with its limits.

mod budget;
mod cache;
mod driven_body;
mod engine;
mod exports;
mod guest_log;
mod handler;
mod instance_body;
mod linked_http;
mod links;
mod long_running;
mod middleware;
mod read_ahead;
mod renew;
mod retire;
mod self_wake;
mod service;
mod state;
pub mod wave;
pub mod wire;
mod workload;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub use budget::{default_memory_budget, BudgetSpent, MemoryBudget};
pub use engine::{Allocator, EngineKind, EPOCH_TICK};
pub use exports::ExportServer;
pub use handler::{Event, EventHandler};
pub use links::{CallFailed, LinkTarget, Linked, RemoteCall, RemoteTarget};
pub use retire::drop_retired;
pub use state::{Access, AllowedHosts, InstanceState, MemoryLimitExceeded};
/// The error type of HTTP bodies crossing the host boundary.
pub use wasmtime_wasi_http::Error as HttpError;
pub use weft_api::digest_of;
pub use weft_capabilities::Grants;
pub use workload::{text_response, HttpPre, Workload, WorkloadBody};

use cache::CompileCache;
use engine::EpochTicker;
pub use weft_metrics::{WorkloadLabels, WorkloadMeter};

/// Why a component cannot be loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what} {reason}")]
    NotAComponent {
        what: String,
        reason: weft_api::NotAComponent,
    },
    #[error("{what} failed to compile: {reason}")]
    Compile { what: String, reason: String },
    #[error("{what} cannot be linked: {reason}")]
    Link { what: String, reason: String },
    #[error(
        "{what} is routed HTTP requests but exports neither `wasi:http/incoming-handler@0.2.x` \
         nor `wasi:http/handler@0.3.0`: {reason}"
    )]
    NoHttpHandler { what: String, reason: String },
    #[error(
        "{what} is subscribed to messages but exports neither \
         `wasmcloud:messaging/handler@0.2.0` nor `wasmcloud:messaging/incoming-handler@0.3.0`: {reason}"
    )]
    NoMessageHandler { what: String, reason: String },
    #[error(
        "{what} is linked to watch key-value keys but exports no `wasi:keyvalue/watcher@0.2.0-draft`: {reason}"
    )]
    NoKeyWatcher { what: String, reason: String },
    #[error(
        "{what} is linked to a schedule but exports no `weft:schedule/handler@0.1.0`: {reason}"
    )]
    NoScheduleHandler { what: String, reason: String },
    #[error(
        "{what} sets properties.concurrency, but it exports `wasi:http/incoming-handler@0.2.x`, \
         whose instances serve one request at a time; remove concurrency (properties.reuse \
         keeps instances warm), or build it for `wasi:http/handler@0.3.0`"
    )]
    ConcurrencyNeedsP3 { what: String },
    #[error(transparent)]
    NotGranted(weft_capabilities::CapabilityError),
    #[error("cannot set up the runtime: {0}")]
    Setup(String),
}

/// Compiled code, shared by every workload that runs the same component.
pub struct Code {
    component: Component,
    digest: String,
    /// The engine it was compiled for, whose linker links it.
    kind: EngineKind,
    /// Whether a fresh instance of it may be reset in place (`renew.rs`) as far as its bytes
    /// tell: WASI 0.2, and no `start` function in any core module (which wasmtime does not
    /// keep of a compiled component).
    resettable: bool,
    /// Whether `kind` is the engine the component picks itself, rather than one a link made it
    /// share with its linked components (see [`Runtime::load_for`]).
    natural: bool,
    /// Linked against the host's linker on first use and shared from then on, so a thousand apps
    /// running one component cost one link, not a thousand. Errors are kept as their reason.
    instance_pre: OnceLock<Result<InstancePre<InstanceState>, String>>,
    proxy_pre: OnceLock<Result<ProxyPre<InstanceState>, String>>,
    service_pre: OnceLock<Result<ServicePre<InstanceState>, String>>,
    /// The component as the handler of each kind of [`Events`], indexed by it.
    event_pres: [OnceLock<Result<handler::HandlerPre, String>>; 3],
}

/// What an event handler is called with, each kind through its own export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Messages: `wasmcloud:messaging/handler@0.2.0` or `incoming-handler@0.3.0`.
    Messages = 0,
    /// Key-value changes: `wasi:keyvalue/watcher`.
    KeyChanges = 1,
    /// A schedule's ticks: `weft:schedule/handler`.
    Ticks = 2,
}

impl Code {
    /// Whether a fresh instance of it may be reset in place, as far as its bytes tell.
    pub(crate) fn resettable(&self) -> bool {
        self.resettable
    }

    /// Every interface the component imports.
    pub fn imports(&self) -> Vec<String> {
        let engine = self.component.engine();
        self.component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The interfaces the component exports other than WASI's: what other components may call.
    pub fn own_exports(&self) -> Vec<String> {
        let engine = self.component.engine();
        self.component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !name.starts_with("wasi:"))
            .collect()
    }

    /// The sha256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The engine it runs on.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Whether it exports WASI 0.3's `wasi:http/handler` (rather than 0.2's incoming-handler).
    pub fn exports_p3_handler(&self) -> bool {
        let engine = self.component.engine();
        self.component
            .component_type()
            .exports(engine)
            .any(|(name, _)| name.starts_with("wasi:http/handler@0.3"))
    }
}

/// A compiled component and whether this load had to compile it.
#[derive(Clone)]
pub struct LoadedComponent {
    pub code: Arc<Code>,
    pub compiled: bool,
}

/// One engine with what compiles and links for it.
struct EngineSide {
    engine: Engine,
    /// WASI and wasi:http. Outgoing HTTP is linked for everyone, because every component built
    /// for the `wasi:http/proxy` world imports it (componentize-py's always do); what a
    /// component may reach is decided per request by its http-client link.
    linker: Linker<InstanceState>,
    cache: CompileCache,
    allocator: Allocator,
}

impl EngineSide {
    fn new(cache_dir: &Path, pooling: bool, kind: EngineKind) -> Result<Self, RuntimeError> {
        let setup = |e: &dyn std::fmt::Display| RuntimeError::Setup(e.to_string());
        let (engine, allocator) = engine::build_engine(pooling, kind).map_err(|e| setup(&e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| setup(&e))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| setup(&e))?;
        if kind != EngineKind::Concurrent {
            linked_http::add_to_linker(&mut linker).map_err(|e| setup(&e))?;
        }
        if kind == EngineKind::Concurrent {
            // WASI 0.3 beside 0.2: their interfaces are versioned apart, so one linker serves
            // both; only a concurrent engine can run 0.3's.
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(|e| setup(&e))?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(|e| setup(&e))?;
            middleware::add_to_linker(&mut linker).map_err(|e| setup(&e))?;
        }
        weft_capabilities::add_to_linker(&mut linker).map_err(|e| setup(&e))?;
        let cache = CompileCache::new(cache_dir, &engine).map_err(|e| setup(&e))?;
        Ok(EngineSide {
            engine,
            linker,
            cache,
            allocator,
        })
    }
}

/// The host's engines, linkers, compile caches and counters.
pub struct Runtime {
    plain: EngineSide,
    large_image: EngineSide,
    concurrent: EngineSide,
    compilations: AtomicU64,
    /// Code in use, by digest and engine: a thousand apps running one component share one copy.
    live: Mutex<HashMap<(String, EngineKind), Weak<Code>>>,
    /// What all guest instances together may hold.
    budget: Arc<MemoryBudget>,
    /// Live instances of WASI 0.3 workloads, which outlive requests: idle ones are reclaimed
    /// sooner when there are many.
    pub(crate) live_p3: Arc<std::sync::atomic::AtomicUsize>,
    ticker: EpochTicker,
}

impl Runtime {
    /// Builds the runtime with its compile cache under `cache_dir`, its guests together held
    /// to `memory_budget` bytes of linear memory.
    pub fn new(
        cache_dir: &Path,
        pooling: bool,
        memory_budget: u64,
    ) -> Result<Arc<Self>, RuntimeError> {
        let plain = EngineSide::new(cache_dir, pooling, EngineKind::Plain)?;
        let large_image = EngineSide::new(cache_dir, pooling, EngineKind::LargeImage)?;
        let concurrent = EngineSide::new(cache_dir, pooling, EngineKind::Concurrent)?;
        let ticker = EpochTicker::start(&[&plain.engine, &large_image.engine, &concurrent.engine])
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        tracing::info!(
            allocator = %plain.allocator,
            large_image_allocator = %large_image.allocator,
            concurrent_allocator = %concurrent.allocator,
            cache = %cache_dir.display(),
            "runtime ready"
        );
        Ok(Arc::new(Runtime {
            plain,
            large_image,
            concurrent,
            compilations: AtomicU64::new(0),
            live: Mutex::default(),
            budget: MemoryBudget::new(memory_budget),
            live_p3: Arc::default(),
            ticker,
        }))
    }

    /// The memory budget of all guest instances, and how much of it they hold.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The instance allocator in use (for WASI 0.2 components; the other engines have pools of
    /// their own and fall back on their own).
    pub fn allocator(&self) -> Allocator {
        self.plain.allocator
    }

    fn side(&self, kind: EngineKind) -> &EngineSide {
        match kind {
            EngineKind::Plain => &self.plain,
            EngineKind::LargeImage => &self.large_image,
            EngineKind::Concurrent => &self.concurrent,
        }
    }

    /// How many components this runtime has compiled (cache misses) since it started.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The component with this digest, when some workload already holds its compiled code for
    /// the engine it picks itself.
    pub fn loaded(&self, digest: &str) -> Option<LoadedComponent> {
        self.held(digest, None)
    }

    /// Like [`Runtime::loaded`], for engine `kind` (see [`Runtime::load_for`]).
    pub fn loaded_for(&self, digest: &str, kind: EngineKind) -> Option<LoadedComponent> {
        self.held(digest, Some(kind))
    }

    fn held(&self, digest: &str, wanted: Option<EngineKind>) -> Option<LoadedComponent> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        held_in(&live, digest, wanted).map(|code| LoadedComponent {
            code,
            compiled: false,
        })
    }

    /// Compiles `bytes` for the engine it needs, or loads the compiled artifact from the cache
    /// when it is there. Blocking: call it off the async executor. `what` names the component
    /// in errors.
    pub fn load(&self, what: &str, bytes: &[u8]) -> Result<LoadedComponent, RuntimeError> {
        self.load_on(what, bytes, None)
    }

    /// Like [`Runtime::load`], for engine `kind`: components linked in one store must share
    /// an engine, so a small component linked to a large-image one runs on the large-image
    /// engine too (and the other way round).
    pub fn load_for(
        &self,
        what: &str,
        bytes: &[u8],
        kind: EngineKind,
    ) -> Result<LoadedComponent, RuntimeError> {
        self.load_on(what, bytes, Some(kind))
    }

    fn load_on(
        &self,
        what: &str,
        bytes: &[u8],
        wanted: Option<EngineKind>,
    ) -> Result<LoadedComponent, RuntimeError> {
        weft_api::check_component(bytes).map_err(|reason| RuntimeError::NotAComponent {
            what: what.into(),
            reason,
        })?;
        let digest = digest_of(bytes);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, code| code.strong_count() > 0);
        if let Some(code) = held_in(&live, &digest, wanted) {
            weft_metrics::component_loaded(false);
            return Ok(LoadedComponent {
                code,
                compiled: false,
            });
        }
        // Compiling under the lock means two deploys of one new component compile it once.
        let (component, kind, compiled) = self.load_uncached(what, bytes, &digest, wanted)?;
        weft_metrics::component_loaded(compiled);
        let code = Arc::new(Code {
            component,
            digest,
            resettable: kind != EngineKind::Concurrent && engine::no_start_function(bytes),
            kind,
            // A WASI 0.3 component asked for another engine still got its own.
            natural: wanted != Some(kind),
            instance_pre: Default::default(),
            proxy_pre: Default::default(),
            service_pre: Default::default(),
            event_pres: Default::default(),
        });
        live.insert((code.digest.clone(), kind), Arc::downgrade(&code));
        Ok(LoadedComponent { code, compiled })
    }

    fn load_uncached(
        &self,
        what: &str,
        bytes: &[u8],
        digest: &str,
        wanted: Option<EngineKind>,
    ) -> Result<(Component, EngineKind, bool), RuntimeError> {
        // A cached artifact says which engine compiled it, sparing the validation that tells.
        // Only WASI 0.3 components are compiled for the concurrent engine; a WASI 0.2 one may be
        // cached for both of the others (see `load_for`), and its image tells which is its own.
        let look_in = wanted.or_else(|| {
            let concurrent = self.side(EngineKind::Concurrent).cache.path_for(digest);
            (!concurrent.exists()).then(|| EngineKind::by_image(bytes))
        });
        for kind in EngineKind::ALL {
            if look_in.is_some_and(|look_in| look_in != kind) {
                continue;
            }
            let side = self.side(kind);
            let path = side.cache.path_for(digest);
            if !path.exists() {
                continue;
            }
            // SAFETY: the cache directory is private to this host and keyed by the engine's
            // compatibility hash; its files were written by `precompile_component` of an engine
            // with these exact settings. A file that fails to load is recompiled below.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(&side.engine, &path) };
            match cached {
                Ok(component) => {
                    tracing::debug!(%what, %digest, ?kind, "compiled code loaded from cache");
                    return Ok((component, kind, false));
                }
                Err(e) => tracing::warn!(%what, "cached code unusable ({e}); recompiling"),
            }
        }
        let started = std::time::Instant::now();
        let natural = EngineKind::of(bytes);
        // A WASI 0.3 component runs on its engine whatever a link wants: the link refuses it.
        let kind = match wanted {
            Some(wanted) if natural != EngineKind::Concurrent => wanted,
            _ => natural,
        };
        let side = self.side(kind);
        let artifact =
            side.engine
                .precompile_component(bytes)
                .map_err(|e| RuntimeError::Compile {
                    what: what.into(),
                    reason: format!("{e:#}"),
                })?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = side.cache.store(digest, &artifact) {
            tracing::warn!(%what, "cannot write the compile cache ({e}); continuing without it");
        }
        // SAFETY: `artifact` was produced just above by this engine's `precompile_component`.
        #[allow(unsafe_code)]
        let component =
            unsafe { Component::deserialize(&side.engine, &artifact) }.map_err(|e| {
                RuntimeError::Compile {
                    what: what.into(),
                    reason: format!("{e:#}"),
                }
            })?;
        tracing::info!(%what, %digest, ?kind, elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        Ok((component, kind, true))
    }

    /// Checks that every import of a loaded component is satisfied by what this host links (or,
    /// for a component with links to others, by them) and that each capability it imports was
    /// granted to it.
    pub fn check_imports(
        &self,
        what: &str,
        loaded: &LoadedComponent,
        access: &Access,
    ) -> Result<(), RuntimeError> {
        if access.linked.is_none() {
            self.instance_pre(what, loaded)?;
        }
        let imports = loaded.code.imports();
        access
            .grants
            .check_imports(what, imports.iter().map(String::as_str))
            .map_err(RuntimeError::NotGranted)
    }

    fn instance_pre(
        &self,
        what: &str,
        loaded: &LoadedComponent,
    ) -> Result<InstancePre<InstanceState>, RuntimeError> {
        let code = &loaded.code;
        code.instance_pre
            .get_or_init(|| {
                self.side(code.kind)
                    .linker
                    .instantiate_pre(&code.component)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|reason| RuntimeError::Link {
                what: what.into(),
                reason: format!("{reason}; {}", provided_to(code.kind)),
            })
    }

    /// Links a loaded component as an HTTP workload: every import must be satisfied and the
    /// component must export `wasi:http/incoming-handler`.
    pub fn http_workload(
        self: &Arc<Self>,
        what: &str,
        loaded: &LoadedComponent,
        limits: weft_manifest::Limits,
        reuse: Option<weft_manifest::Reuse>,
        access: Access,
        meter: WorkloadMeter,
    ) -> Result<Arc<Workload>, RuntimeError> {
        self.check_imports(what, loaded, &access)?;
        // Checked where it serves: a platform app may own a middleware it never serves itself.
        if access.next_handler.is_none()
            && loaded
                .code
                .imports()
                .iter()
                .any(|i| i == middleware::HANDLER_IMPORT)
        {
            return Err(RuntimeError::Link {
                what: what.into(),
                reason: format!(
                    "it imports `{}`, so it is a middleware, but no link names the next \
                     handler: add a link from it with namespace wasi, package http, \
                     interfaces [handler], targeting the component it passes requests to",
                    middleware::HANDLER_IMPORT
                ),
            });
        }
        let p3 = loaded.code.exports_p3_handler();
        if !p3 && limits.concurrency.is_some() {
            return Err(RuntimeError::ConcurrencyNeedsP3 { what: what.into() });
        }
        let reason = |e: wasmtime::Error| format!("{e:#}");
        let pre = match &access.linked {
            // Linked to peers: its own linker, its own pre-instantiation.
            Some(linked) if p3 => ServicePre::new(linked.pre.clone())
                .map(HttpPre::P3)
                .map_err(reason),
            Some(linked) => ProxyPre::new(linked.pre.clone())
                .map(HttpPre::P2)
                .map_err(reason),
            None => {
                let pre = self.instance_pre(what, loaded)?;
                let code = &loaded.code;
                if p3 {
                    code.service_pre
                        .get_or_init(|| ServicePre::new(pre).map_err(reason))
                        .clone()
                        .map(HttpPre::P3)
                } else {
                    code.proxy_pre
                        .get_or_init(|| ProxyPre::new(pre).map_err(reason))
                        .clone()
                        .map(HttpPre::P2)
                }
            }
        }
        .map_err(|reason| RuntimeError::NoHttpHandler {
            what: what.into(),
            reason,
        })?;
        Ok(Arc::new(Workload::new(
            self.clone(),
            what.to_string(),
            loaded.code.clone(),
            pre,
            limits,
            reuse,
            access,
            meter,
        )))
    }

    /// Links a loaded component as the handler of `events`: every import must be satisfied and
    /// the component must export the interface those events go to.
    pub fn event_handler(
        self: &Arc<Self>,
        what: &str,
        loaded: &LoadedComponent,
        limits: weft_manifest::Limits,
        access: Access,
        events: Events,
        meter: WorkloadMeter,
    ) -> Result<Arc<EventHandler>, RuntimeError> {
        self.check_imports(what, loaded, &access)?;
        let pre = self.instance_pre(what, loaded)?;
        let make: fn(_) -> _ = match events {
            Events::Messages => handler::HandlerPre::messages,
            Events::KeyChanges => handler::HandlerPre::watcher,
            Events::Ticks => handler::HandlerPre::schedule,
        };
        let handler = loaded.code.event_pres[events as usize]
            .get_or_init(|| make(pre))
            .clone()
            .map_err(|reason| {
                let what = what.to_string();
                match events {
                    Events::Messages => RuntimeError::NoMessageHandler { what, reason },
                    Events::KeyChanges => RuntimeError::NoKeyWatcher { what, reason },
                    Events::Ticks => RuntimeError::NoScheduleHandler { what, reason },
                }
            })?;
        Ok(Arc::new(EventHandler::new(
            self.clone(),
            what.to_string(),
            handler,
            limits,
            access,
            meter,
        )))
    }

    /// A store of `engine` for one call of `name`: its memory limit, and its timeout. At every epoch tick
    /// a running guest yields to the async runtime, so a busy guest shares its worker thread
    /// with every other request instead of holding it; a call that keeps running is marked
    /// long-running (see [`long_running`]); once the timeout has passed, the guest traps at the
    /// next tick.
    pub(crate) fn limited_store(
        &self,
        engine: &Engine,
        name: &Arc<str>,
        limits: &weft_manifest::Limits,
        access: &Access,
    ) -> wasmtime::Store<InstanceState> {
        // Nothing granted beyond `access`, nothing charged yet.
        let state = InstanceState::new(
            name,
            limits.max_memory,
            &self.budget,
            access,
            self.ticker.awake(),
        );
        let mut store = wasmtime::Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            // A store with an event loop (WASI 0.3): its requests time out in the loop, and the
            // streak covers a guest that keeps the loop from running; no deadline of its own.
            if let Some(streak) = &state.streak {
                match streak.tick() {
                    service::Tick::PastTimeout => return Ok(wasmtime::UpdateDeadline::Interrupt),
                    // Only a guest that has computed a whole tick makes its event loop give the
                    // thread up; one merely running as the tick came lets it poll on.
                    service::Tick::Computing => self_wake::note_preemption(),
                    service::Tick::Brief => {}
                }
                return Ok(wasmtime::UpdateDeadline::Yield(1));
            }
            if std::time::Instant::now() >= state.deadline {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            if state.long_running.ran() >= state.long_running_after {
                state.long_running.mark();
            }
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        store
    }
}

/// Gives the next call in `store` its whole `timeout`, from now (a reused instance too), and
/// returns the clock its epoch callback reads to tell, by `pace`, when the call runs long.
pub(crate) fn restart_deadline(
    store: &mut wasmtime::Store<InstanceState>,
    timeout: std::time::Duration,
    pace: &long_running::Pace,
) -> long_running::LongRunning {
    let state = store.data_mut();
    state.deadline = std::time::Instant::now() + timeout;
    state.long_running_after = pace.budget();
    // In place: the store's last call (a reused instance's) has ended, so no one else reads it.
    state.long_running.reset();
    let flag = state.long_running.clone();
    store.set_epoch_deadline(1);
    flag
}

/// The live code of `digest` for engine `wanted`, or for its own engine when None.
fn held_in(
    live: &HashMap<(String, EngineKind), Weak<Code>>,
    digest: &str,
    wanted: Option<EngineKind>,
) -> Option<Arc<Code>> {
    let mut key = (digest.to_string(), EngineKind::Plain);
    EngineKind::ALL.iter().find_map(|&kind| {
        key.1 = kind;
        let code = live.get(&key)?.upgrade()?;
        wanted
            .map_or(code.natural, |wanted| wanted == kind)
            .then_some(code)
    })
}

#[cfg(test)]
mod tests;

/// What weft links for a component of this kind, for an error naming an import it lacks: a WASI
/// 0.2 component is linked without the WASI 0.3 interfaces, so naming them to it would mislead.
fn provided_to(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Plain | EngineKind::LargeImage => {
            "to a WASI 0.2 component weft provides WASI 0.2 (cli, clocks, filesystem, io, random, \
             sockets), wasi:http, wasi:keyvalue, wasi:blobstore, wasi:config, wasi:logging, \
             wasmcloud:messaging, wasmcloud:secrets and wasmcloud:bus (a component that imports \
             WASI 0.3 interfaces must be built for WASI 0.3 throughout)"
        }
        EngineKind::Concurrent => {
            "to a WASI 0.3 component weft provides WASI 0.3.0 (cli, clocks, filesystem, random, \
             sockets, http), WASI 0.2, wasi:http, wasi:keyvalue, wasi:blobstore, wasi:config, \
             wasi:logging, wasmcloud:messaging, wasmcloud:secrets and wasmcloud:bus"
        }
    }
}
